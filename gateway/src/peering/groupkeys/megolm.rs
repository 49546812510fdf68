//! Megolm epochs: this gateway's outbound session per room, and the inbound sessions it
//! received from other gateways.
//!
//! The sender keeps, with its outbound session, an inbound copy from index 0 so it can share
//! the epoch from the index each reader is entitled to (a reader that lost its key asks
//! again); both go when the epoch ends. A receiver keeps its inbound session only from the
//! lowest index it has not decrypted: each decrypted index is remembered until the session can
//! be advanced past it, so a second copy of a message (a replay) is refused, and messages that
//! arrive out of order (the mixnet does not keep order) still decrypt. An index that never
//! comes holds the session back for at most [`MAX_AHEAD`] later messages.

use std::collections::{BTreeMap, BTreeSet};

use base64::{engine::general_purpose::STANDARD_NO_PAD as B64, Engine};
use ruma::{OwnedRoomId, OwnedServerName, RoomId, ServerName};
use serde::{Deserialize, Serialize};
use storage::{Batch, Table};
use vodozemac::megolm::{
    DecryptionError, ExportedSessionKey, GroupSession, GroupSessionPickle, InboundGroupSession,
    InboundGroupSessionPickle, MegolmMessage, SessionConfig,
};

use super::{
    policy::{decide, Decision, EpochFacts, Rotation},
    GroupKeys, KeyError,
};

/// Decrypted indexes a receiver remembers above its lowest missing one before it gives the
/// missing one up.
pub const MAX_AHEAD: usize = 256;

#[derive(Serialize, Deserialize)]
struct OutboundEpoch {
    session: GroupSessionPickle,
    own: InboundGroupSessionPickle,
    facts: EpochFacts,
    /// The first index each reader may decrypt.
    shared: BTreeMap<OwnedServerName, u32>,
}

#[derive(Serialize, Deserialize)]
struct InboundEpoch {
    room_id: OwnedRoomId,
    session: InboundGroupSessionPickle,
    received_ms: u64,
    /// Decrypted indexes at or above the session's first known index.
    seen: BTreeSet<u32>,
}

fn outbound() -> Table<OutboundEpoch> {
    Table::new("gk_outbound")
}

fn inbound() -> Table<InboundEpoch> {
    Table::new("gk_inbound")
}

fn inbound_key(origin: &ServerName, session_id: &str) -> Vec<u8> {
    storage::key(&[origin.as_bytes(), session_id.as_bytes()])
}

/// A room key for one gateway (sent under Olm, or in an answer to its key request).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomKeyShare {
    /// The room.
    pub room_id: OwnedRoomId,
    /// The session (the epoch).
    pub session_id: String,
    /// The session exported from the first index the receiver may read (base64).
    pub session_key: String,
}

/// One encryption: the ciphertext and the shares to deliver before it.
#[derive(Debug)]
pub struct Sealing {
    /// The epoch it is under.
    pub session_id: String,
    /// The Megolm message (base64).
    pub ciphertext: String,
    /// Keys to send (under Olm) before the ciphertext: to every reader of a new epoch, or to
    /// the readers new to this one.
    pub shares: Vec<(OwnedServerName, RoomKeyShare)>,
    /// Why a new epoch started, if one did.
    pub rotated: Option<Rotation>,
}

fn exported(own: &mut InboundGroupSession, index: u32) -> Result<String, KeyError> {
    own.export_at(index)
        .map(|k| k.to_base64())
        .ok_or_else(|| KeyError::Storage("epoch cannot be exported at that index".into()))
}

impl GroupKeys {
    /// Encrypts `plaintext` (carrying `events` events) for `readers` (the other gateways it
    /// goes to) in `room`, whose history visibility is `visibility`, starting a new epoch
    /// first if the rules say so.
    pub async fn seal(
        &self,
        room: &RoomId,
        readers: &BTreeSet<OwnedServerName>,
        visibility: &str,
        events: u32,
        plaintext: &[u8],
    ) -> Result<Sealing, KeyError> {
        let _guard = self.lock.lock().await;
        let now = self.now_ms();
        let current = outbound().get(&self.db, room.as_bytes())?;
        let decision = decide(
            current.as_ref().map(|e| &e.facts),
            readers,
            visibility,
            now,
            &self.policy,
        );
        let (mut epoch, new_readers, rotated) = match (decision, current) {
            (Decision::Keep(joiners), Some(epoch)) => (epoch, joiners, None),
            (decision, _) => {
                let why = match decision {
                    Decision::Rotate(why) => why,
                    Decision::Keep(_) => Rotation::First,
                };
                let session = GroupSession::new(SessionConfig::version_1());
                let own =
                    InboundGroupSession::new(&session.session_key(), SessionConfig::version_1());
                let epoch = OutboundEpoch {
                    session: session.pickle(),
                    own: own.pickle(),
                    facts: EpochFacts {
                        readers: BTreeSet::new(),
                        visibility: visibility.to_owned(),
                        created_ms: now,
                        events: 0,
                    },
                    shared: BTreeMap::new(),
                };
                (epoch, readers.clone(), Some(why))
            }
        };
        let mut session = GroupSession::from_pickle(epoch.session);
        let mut own = InboundGroupSession::from_pickle(epoch.own);
        let index = session.message_index();
        let session_id = session.session_id();
        let mut shares = Vec::new();
        for reader in new_readers {
            let share = RoomKeyShare {
                room_id: room.to_owned(),
                session_id: session_id.clone(),
                session_key: exported(&mut own, index)?,
            };
            epoch.shared.insert(reader.clone(), index);
            epoch.facts.readers.insert(reader.clone());
            shares.push((reader, share));
        }
        let message = session.encrypt(plaintext);
        epoch.facts.events = epoch.facts.events.saturating_add(events);
        let record = OutboundEpoch {
            session: session.pickle(),
            own: own.pickle(),
            facts: epoch.facts,
            shared: epoch.shared,
        };
        let mut batch = Batch::new();
        outbound().put(&mut batch, room.as_bytes(), &record)?;
        self.apply(batch).await?;
        Ok(Sealing {
            session_id,
            ciphertext: B64.encode(message.to_bytes()),
            shares,
            rotated,
        })
    }

    /// The key of epoch `session_id` for `requester`, from the first index it may read, if
    /// the epoch is still this gateway's current one in its room and was shared with it. The
    /// caller checks that the requester is still in the room.
    pub async fn reshare(
        &self,
        requester: &ServerName,
        session_id: &str,
    ) -> Result<RoomKeyShare, KeyError> {
        let _guard = self.lock.lock().await;
        for (room, epoch) in outbound().scan_prefix(&self.db, b"")? {
            let session = GroupSession::from_pickle(epoch.session);
            if session.session_id() != session_id {
                continue;
            }
            let Some(&index) = epoch.shared.get(requester) else {
                return Err(KeyError::NotEntitled);
            };
            let room_id = std::str::from_utf8(&room)
                .ok()
                .and_then(|r| OwnedRoomId::try_from(r).ok())
                .ok_or_else(|| KeyError::Storage("room key".into()))?;
            let mut own = InboundGroupSession::from_pickle(epoch.own);
            return Ok(RoomKeyShare {
                room_id,
                session_id: session_id.to_owned(),
                session_key: exported(&mut own, index)?,
            });
        }
        Err(KeyError::UnknownSession)
    }

    /// Stores a room key `origin` shared. The caller has checked that `origin` and this
    /// gateway are in the room. A share that reaches back further than the one held replaces
    /// it; otherwise the one held stays (it may be advanced already).
    pub async fn accept_share(
        &self,
        origin: &ServerName,
        share: &RoomKeyShare,
    ) -> Result<(), KeyError> {
        let _guard = self.lock.lock().await;
        let key = ExportedSessionKey::from_base64(&share.session_key)
            .map_err(|e| KeyError::Forged(format!("session key: {e}")))?;
        let session = InboundGroupSession::import(&key, SessionConfig::version_1());
        if session.session_id() != share.session_id {
            return Err(KeyError::Forged("session id does not match its key".into()));
        }
        let k = inbound_key(origin, &share.session_id);
        let seen = match inbound().get(&self.db, &k)? {
            Some(held) => {
                let held_first = InboundGroupSession::from_pickle(held.session).first_known_index();
                if held.room_id != share.room_id {
                    return Err(KeyError::Forged("session moved to another room".into()));
                }
                if session.first_known_index() >= held_first {
                    return Ok(());
                }
                held.seen
            }
            None => BTreeSet::new(),
        };
        let record = InboundEpoch {
            room_id: share.room_id.clone(),
            session: session.pickle(),
            received_ms: self.now_ms(),
            seen,
        };
        let mut batch = Batch::new();
        inbound().put(&mut batch, &k, &record)?;
        self.apply(batch).await
    }

    /// Decrypts a Megolm message `origin` sent under `session_id`: its room and plaintext.
    pub async fn open(
        &self,
        origin: &ServerName,
        session_id: &str,
        ciphertext: &str,
    ) -> Result<(OwnedRoomId, Vec<u8>), KeyError> {
        let _guard = self.lock.lock().await;
        let k = inbound_key(origin, session_id);
        let Some(mut epoch) = inbound().get(&self.db, &k)? else {
            return Err(KeyError::UnknownSession);
        };
        let bytes = B64
            .decode(ciphertext)
            .map_err(|e| KeyError::Forged(format!("base64: {e}")))?;
        let message =
            MegolmMessage::from_bytes(&bytes).map_err(|e| KeyError::Forged(e.to_string()))?;
        let index = message.message_index();
        if epoch.seen.contains(&index) {
            return Err(KeyError::Replay);
        }
        let mut session = InboundGroupSession::from_pickle(epoch.session);
        let plain = match session.decrypt(&message) {
            Ok(d) => d.plaintext,
            Err(DecryptionError::UnknownMessageIndex(..)) => return Err(KeyError::Replay),
            Err(e) => return Err(KeyError::Forged(e.to_string())),
        };
        epoch.seen.insert(index);
        advance(&mut session, &mut epoch.seen);
        epoch.session = session.pickle();
        let room = epoch.room_id.clone();
        let mut batch = Batch::new();
        inbound().put(&mut batch, &k, &epoch)?;
        self.apply(batch).await?;
        Ok((room, plain))
    }

    /// Deletes received epochs older than the retention window; how many.
    pub(super) fn expire_inbound(&self, now: u64) -> Result<usize, KeyError> {
        let horizon = now.saturating_sub(self.policy.retention_ms());
        let mut batch = Batch::new();
        let mut gone = 0;
        for (k, epoch) in inbound().scan_prefix(&self.db, b"")? {
            if epoch.received_ms < horizon {
                inbound().delete(&mut batch, &k);
                gone += 1;
            }
        }
        self.db.apply(batch)?;
        Ok(gone)
    }

    /// Deletes this gateway's epochs that are past their age limit (a quiet room's epoch
    /// would only be replaced at its next message; until then it need not be kept); how many.
    pub(super) fn expire_outbound(&self, now: u64) -> Result<usize, KeyError> {
        let mut batch = Batch::new();
        let mut gone = 0;
        for (k, epoch) in outbound().scan_prefix(&self.db, b"")? {
            if now.saturating_sub(epoch.facts.created_ms) >= self.policy.rotation_ms() {
                outbound().delete(&mut batch, &k);
                gone += 1;
            }
        }
        self.db.apply(batch)?;
        Ok(gone)
    }

    /// Ends this gateway's epoch in `room` (it left the room): the session is deleted.
    pub async fn end_epoch(&self, room: &RoomId) -> Result<(), KeyError> {
        let _guard = self.lock.lock().await;
        let mut batch = Batch::new();
        outbound().delete(&mut batch, room.as_bytes());
        self.apply(batch).await
    }

    /// The id of this gateway's current epoch in `room`.
    pub async fn current_epoch(&self, room: &RoomId) -> Result<Option<String>, KeyError> {
        let _guard = self.lock.lock().await;
        Ok(outbound()
            .get(&self.db, room.as_bytes())?
            .map(|e| GroupSession::from_pickle(e.session).session_id()))
    }

    /// Received epochs held: `(origin key, session id, room, first known index)`.
    pub async fn received_epochs(&self) -> Result<Vec<(String, OwnedRoomId, u32)>, KeyError> {
        let _guard = self.lock.lock().await;
        Ok(inbound()
            .scan_prefix(&self.db, b"")?
            .into_iter()
            .map(|(k, e)| {
                let id = String::from_utf8_lossy(&k).replace('\0', " ");
                let first = InboundGroupSession::from_pickle(e.session).first_known_index();
                (id, e.room_id, first)
            })
            .collect())
    }
}

/// Advances `session` past every index decrypted without a gap below it; if too many wait
/// above a gap, the gap is given up.
fn advance(session: &mut InboundGroupSession, seen: &mut BTreeSet<u32>) {
    let mut low = session.first_known_index();
    loop {
        while seen.remove(&low) {
            low = low.saturating_add(1);
        }
        if seen.len() <= MAX_AHEAD {
            break;
        }
        // Give up the lowest missing index: jump to the lowest decrypted one above it.
        match seen.first() {
            Some(&next) => low = next,
            None => break,
        }
    }
    session.advance_to(low);
}

/// Tests only: whether any session this store holds (received, or its own outbound copies)
/// decrypts `ciphertext`, without advancing or saving anything.
#[cfg(test)]
pub(crate) fn decrypt_with_every_held_session(
    keys: &GroupKeys,
    ciphertext: &str,
) -> Result<bool, KeyError> {
    let bytes = B64
        .decode(ciphertext)
        .map_err(|e| KeyError::Forged(e.to_string()))?;
    let message = MegolmMessage::from_bytes(&bytes).map_err(|e| KeyError::Forged(e.to_string()))?;
    for (_, epoch) in inbound().scan_prefix(&keys.db, b"")? {
        let mut session = InboundGroupSession::from_pickle(epoch.session);
        if session.decrypt(&message).is_ok() {
            return Ok(true);
        }
    }
    for (_, epoch) in outbound().scan_prefix(&keys.db, b"")? {
        let mut session = InboundGroupSession::from_pickle(epoch.own);
        if session.decrypt(&message).is_ok() {
            return Ok(true);
        }
    }
    Ok(false)
}
