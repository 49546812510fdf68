//! Olm between gateways: this gateway's account and its pairwise sessions.
//!
//! - The account's Curve25519 identity key is published in the gateway's descriptor (signed
//!   with its Ed25519 server key) and returned with every one-time key it hands out, inside a
//!   signed answer; so a peer learns it authenticated by the server name alone.
//! - One-time keys are made on demand, one per claim (a claim is a request over the mixnet
//!   answered while this gateway is online), so they never run out and none waits published
//!   for long. A key handed out and never used is deleted after the retention window. There
//!   are no fallback keys: a peer that cannot claim (this gateway is offline) sends its room
//!   keys later, or this gateway asks for them when it returns (see `pending`).
//! - Sessions: at most [`MAX_SESSIONS`] per peer, newest used first for sending, all tried for
//!   receiving; a session unused for the retention window is deleted.

use base64::{engine::general_purpose::STANDARD_NO_PAD as B64, Engine};
use ruma::{OwnedServerName, ServerName};
use serde::{Deserialize, Serialize};
use storage::{Batch, Table};
use vodozemac::{
    olm::{Account, AccountPickle, OlmMessage, Session, SessionConfig, SessionPickle},
    Curve25519PublicKey,
};

use super::{GroupKeys, KeyError};

/// Olm sessions kept per peer.
const MAX_SESSIONS: usize = 3;

const ACCOUNT_KEY: &[u8] = b"account";

#[derive(Serialize, Deserialize)]
struct AccountRecord {
    account: AccountPickle,
    /// One-time keys handed out and not used yet, with when.
    handed_out: Vec<(String, u64)>,
}

#[derive(Serialize, Deserialize)]
struct SessionRecord {
    session: SessionPickle,
    created_ms: u64,
    used_ms: u64,
}

fn accounts() -> Table<AccountRecord> {
    Table::new("gk_olm_account")
}

fn sessions() -> Table<Vec<SessionRecord>> {
    Table::new("gk_olm_sessions")
}

/// An Olm message for the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OlmCiphertext {
    /// The sender's Curve25519 identity key (base64).
    pub identity_key: String,
    /// 0: pre-key message (starts a session), 1: normal.
    pub kind: u8,
    /// The message (base64).
    pub body: String,
}

fn key_from(b64: &str) -> Result<Curve25519PublicKey, KeyError> {
    Curve25519PublicKey::from_base64(b64).map_err(|e| KeyError::Forged(format!("key: {e}")))
}

/// A session with when it was made and last used.
type Live = (Session, u64, u64);

impl GroupKeys {
    fn live_sessions(&self, peer: &ServerName) -> Result<Vec<Live>, KeyError> {
        Ok(sessions()
            .get(&self.db, peer.as_bytes())?
            .unwrap_or_default()
            .into_iter()
            .map(|r| (Session::from_pickle(r.session), r.created_ms, r.used_ms))
            .collect())
    }

    async fn save_sessions(&self, peer: &ServerName, list: Vec<Live>) -> Result<(), KeyError> {
        let records: Vec<SessionRecord> = list
            .into_iter()
            .map(|(s, created_ms, used_ms)| SessionRecord {
                session: s.pickle(),
                created_ms,
                used_ms,
            })
            .collect();
        let mut batch = Batch::new();
        sessions().put(&mut batch, peer.as_bytes(), &records)?;
        self.apply(batch).await
    }

    fn load_account(&self) -> Result<AccountRecord, KeyError> {
        if let Some(r) = accounts().get(&self.db, ACCOUNT_KEY)? {
            return Ok(r);
        }
        // First use: the account is made and stored at once, so its identity never changes.
        let mut batch = Batch::new();
        self.save_account(&mut batch, &Account::new(), Vec::new());
        self.db.apply(batch)?;
        accounts()
            .get(&self.db, ACCOUNT_KEY)?
            .ok_or_else(|| KeyError::Storage("account not stored".into()))
    }

    fn save_account(&self, batch: &mut Batch, account: &Account, handed_out: Vec<(String, u64)>) {
        let record = AccountRecord {
            account: account.pickle(),
            handed_out,
        };
        // Our own pickle always serialises.
        let _ = accounts().put(batch, ACCOUNT_KEY, &record);
    }

    /// This gateway's Olm identity key (base64), creating the account on first use.
    pub async fn olm_identity(&self) -> Result<String, KeyError> {
        let _guard = self.lock.lock().await;
        let record = self.load_account()?;
        let account = Account::from_pickle(record.account);
        let key = account.curve25519_key().to_base64();
        let mut batch = Batch::new();
        self.save_account(&mut batch, &account, record.handed_out);
        self.apply(batch).await?;
        Ok(key)
    }

    /// Makes one one-time key for a peer that claims it: `(identity key, one-time key)`.
    pub async fn hand_out_one_time_key(&self) -> Result<(String, String), KeyError> {
        let _guard = self.lock.lock().await;
        let record = self.load_account()?;
        let mut account = Account::from_pickle(record.account);
        let made = account.generate_one_time_keys(1);
        account.mark_keys_as_published();
        let key = made
            .created
            .first()
            .ok_or_else(|| KeyError::Storage("no one-time key made".into()))?
            .to_base64();
        let mut handed_out = record.handed_out;
        handed_out.push((key.clone(), self.now_ms()));
        let identity = account.curve25519_key().to_base64();
        let mut batch = Batch::new();
        self.save_account(&mut batch, &account, handed_out);
        self.apply(batch).await?;
        Ok((identity, key))
    }

    /// Whether this gateway holds an Olm session with `peer`.
    pub async fn has_olm_session(&self, peer: &ServerName) -> Result<bool, KeyError> {
        let _guard = self.lock.lock().await;
        Ok(!sessions()
            .get(&self.db, peer.as_bytes())?
            .unwrap_or_default()
            .is_empty())
    }

    /// Starts an Olm session with `peer` from the identity and one-time key it handed out.
    pub async fn create_olm_session(
        &self,
        peer: &ServerName,
        identity_key: &str,
        one_time_key: &str,
    ) -> Result<(), KeyError> {
        let _guard = self.lock.lock().await;
        let account = Account::from_pickle(self.load_account()?.account);
        let session = account
            .create_outbound_session(
                SessionConfig::version_1(),
                key_from(identity_key)?,
                key_from(one_time_key)?,
            )
            .map_err(|e| KeyError::Forged(format!("one-time key: {e}")))?;
        let now = self.now_ms();
        self.store_session(peer, session, now).await
    }

    async fn store_session(
        &self,
        peer: &ServerName,
        session: Session,
        now: u64,
    ) -> Result<(), KeyError> {
        let mut list = self.live_sessions(peer)?;
        list.insert(0, (session, now, now));
        list.truncate(MAX_SESSIONS);
        self.save_sessions(peer, list).await
    }

    /// Encrypts `plaintext` for `peer` under the newest session with it.
    pub async fn olm_encrypt(
        &self,
        peer: &ServerName,
        plaintext: &[u8],
    ) -> Result<OlmCiphertext, KeyError> {
        let _guard = self.lock.lock().await;
        let mut list = self.live_sessions(peer)?;
        let Some(first) = list.first_mut() else {
            return Err(KeyError::NoOlmSession);
        };
        let message = first
            .0
            .encrypt(plaintext)
            .map_err(|e| KeyError::Forged(format!("olm encrypt: {e}")))?;
        first.2 = self.now_ms();
        let identity = Account::from_pickle(self.load_account()?.account)
            .curve25519_key()
            .to_base64();
        self.save_sessions(peer, list).await?;
        let (kind, body) = message.to_parts();
        Ok(OlmCiphertext {
            identity_key: identity,
            kind: u8::from(kind != 0),
            body: B64.encode(body),
        })
    }

    /// Decrypts an Olm message from `peer`: with a session held, or by starting one from a
    /// pre-key message (which uses up the one-time key it names).
    pub async fn olm_decrypt(
        &self,
        peer: &ServerName,
        message: &OlmCiphertext,
    ) -> Result<Vec<u8>, KeyError> {
        let _guard = self.lock.lock().await;
        let bytes = B64
            .decode(&message.body)
            .map_err(|e| KeyError::Forged(format!("base64: {e}")))?;
        let parsed = OlmMessage::from_parts(usize::from(message.kind), &bytes)
            .map_err(|e| KeyError::Forged(format!("olm message: {e}")))?;
        let their_identity = key_from(&message.identity_key)?;
        let now = self.now_ms();
        let mut list = self.live_sessions(peer)?;
        let mut plain = None;
        for (session, _, used) in list.iter_mut() {
            if let Ok(p) = session.decrypt(&parsed) {
                *used = now;
                plain = Some(p);
                break;
            }
        }
        if let Some(plain) = plain {
            self.save_sessions(peer, list).await?;
            return Ok(plain);
        }
        let OlmMessage::PreKey(pre_key) = &parsed else {
            return Err(KeyError::OlmUndecryptable);
        };
        let record = self.load_account()?;
        let mut account = Account::from_pickle(record.account);
        let created = account
            .create_inbound_session(SessionConfig::version_1(), their_identity, pre_key)
            .map_err(|_| KeyError::OlmUndecryptable)?;
        let used = pre_key.one_time_key().to_base64();
        let handed_out = record
            .handed_out
            .into_iter()
            .filter(|(k, _)| *k != used)
            .collect();
        let mut batch = Batch::new();
        self.save_account(&mut batch, &account, handed_out);
        self.apply(batch).await?;
        self.store_session(peer, created.session, now).await?;
        Ok(created.plaintext)
    }

    /// Forgets every Olm session with `peer` (it said it cannot decrypt ours: the next message
    /// starts a new one).
    pub async fn forget_olm_sessions(&self, peer: &ServerName) -> Result<(), KeyError> {
        let _guard = self.lock.lock().await;
        let mut batch = Batch::new();
        sessions().delete(&mut batch, peer.as_bytes());
        self.apply(batch).await
    }

    /// Deletes idle sessions and stale one-time keys; `(sessions, keys)` deleted.
    pub(super) fn expire_olm(&self, now: u64) -> Result<(usize, usize), KeyError> {
        let horizon = now.saturating_sub(self.policy.retention_ms());
        let mut batch = Batch::new();
        let mut gone_sessions = 0;
        for (peer, mut list) in sessions().scan_prefix(&self.db, b"")? {
            let before = list.len();
            list.retain(|r| r.used_ms >= horizon);
            gone_sessions += before - list.len();
            if list.is_empty() {
                sessions().delete(&mut batch, &peer);
            } else if list.len() != before {
                sessions().put(&mut batch, &peer, &list)?;
            }
        }
        let mut gone_keys = 0;
        if let Some(record) = accounts().get(&self.db, ACCOUNT_KEY)? {
            let mut account = Account::from_pickle(record.account);
            let mut kept = Vec::new();
            for (key, at) in record.handed_out {
                if at >= horizon {
                    kept.push((key, at));
                } else if let Ok(k) = Curve25519PublicKey::from_base64(&key) {
                    if account.remove_one_time_key(k).is_some() {
                        gone_keys += 1;
                    }
                }
            }
            self.save_account(&mut batch, &account, kept);
        }
        self.db.apply(batch)?;
        Ok((gone_sessions, gone_keys))
    }

    /// Peers this gateway holds Olm sessions with.
    pub async fn olm_peers(&self) -> Result<Vec<OwnedServerName>, KeyError> {
        let _guard = self.lock.lock().await;
        Ok(sessions()
            .scan_prefix(&self.db, b"")?
            .into_iter()
            .filter_map(|(k, _)| {
                std::str::from_utf8(&k)
                    .ok()
                    .and_then(|s| OwnedServerName::try_from(s).ok())
            })
            .collect())
    }
}
