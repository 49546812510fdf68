//! Messages for one gateway under Olm: room key shares, EDUs that are not of a room
//! (to-device messages, device-list updates) and invites.
//!
//! Sending claims a one-time key of the peer first when no session is held (a request the
//! peer answers while online). If the peer cannot be reached, the message waits in the retry
//! table, in plaintext, in this gateway's own store (where the EDU queue held it before) and
//! is encrypted when it goes; room key shares do not wait there (the receiver asks for the
//! key instead, so no old epoch outlives its rotation in a queue).
//!
//! A message that no session decrypts means the receiver lost the session: it forgets its
//! own sessions with the sender and tells the sender (`OlmReset`), whose next message starts
//! a new session from a fresh one-time key.

use std::time::{Duration, Instant};

use ruma::{OwnedRoomId, ServerName};

use super::{
    groupkeys::{megolm::RoomKeyShare, olm::OlmCiphertext, KeyError},
    reply_seal::{decode_payload, encode_payload},
    wire::{Body, RawPdu},
    Peer,
};
use crate::error::ApiResult;

/// How long a one-time key claim waits for its answer, per attempt: an answer rides reply
/// blocks without acknowledgements, so a lost packet loses it and one more attempt is cheap.
const CLAIM_WAITS: [Duration; 2] = [Duration::from_secs(5), Duration::from_secs(7)];

/// After a failed claim, how long sends to that peer wait before claiming again.
const CLAIM_BACKOFF: Duration = Duration::from_secs(10);

/// Least time between two `OlmReset` notices to one peer.
const RESET_EVERY: Duration = Duration::from_secs(60);

/// Why an Olm message could not go now.
#[derive(Debug)]
pub enum OlmSendError {
    /// No session and no one-time key could be claimed (the peer is unreachable).
    NoSession,
    /// The network or the store failed.
    Failed(String),
}

/// Encrypts `body` for `to` (claiming a one-time key first if needed) and sends it.
pub async fn try_send(peer: &Peer, to: &ServerName, body: &Body) -> Result<(), OlmSendError> {
    ensure_session(peer, to).await?;
    peer.tap(to, body);
    let message = peer
        .keys
        .olm_encrypt(to, &encode_payload(body))
        .await
        .map_err(|e| OlmSendError::Failed(e.to_string()))?;
    peer.send(to, Body::Olm { message })
        .await
        .map_err(|e| OlmSendError::Failed(e.to_string()))
}

async fn ensure_session(peer: &Peer, to: &ServerName) -> Result<(), OlmSendError> {
    if peer
        .keys
        .has_olm_session(to)
        .await
        .map_err(|e| OlmSendError::Failed(e.to_string()))?
    {
        return Ok(());
    }
    {
        let backoff = peer
            .claim_failures
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if backoff
            .get(to)
            .is_some_and(|at| at.elapsed() < CLAIM_BACKOFF)
        {
            return Err(OlmSendError::NoSession);
        }
    }
    let answer = peer
        .ask_within(to, Body::ClaimOlmKey {}, &CLAIM_WAITS)
        .await;
    let created = match answer {
        Ok(Body::OlmKey {
            identity_key,
            one_time_key,
        }) => match peer.net.olm_identity(to) {
            Some(published) if published != identity_key => {
                peer.stats.dropped("olm_identity_mismatch");
                Err("the claimed identity key is not the one its descriptor names".to_owned())
            }
            _ => peer
                .keys
                .create_olm_session(to, &identity_key, &one_time_key)
                .await
                .map_err(|e| e.to_string()),
        },
        Ok(_) => Err("unexpected answer".to_owned()),
        Err(e) => Err(e.to_string()),
    };
    match created {
        Ok(()) => {
            tracing::debug!(peer = %to, "peering: Olm session made from a claimed key");
            peer.claim_failures
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(to);
            Ok(())
        }
        Err(e) => {
            tracing::info!(peer = %to, "peering: no Olm session ({e})");
            peer.stats.dropped("olm_claim_failed");
            peer.claim_failures
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(to.to_owned(), Instant::now());
            Err(OlmSendError::NoSession)
        }
    }
}

/// Shares a room key with `to` under Olm, with a membership event of ours so a receiver
/// that does not know yet that this gateway is in the room can check it. Not kept for retry:
/// a receiver without the key asks for it.
pub async fn share_key(peer: &Peer, to: &ServerName, share: RoomKeyShare) {
    let membership = our_membership(peer, &share.room_id);
    let body = Body::RoomKey { share, membership };
    if let Err(e) = try_send(peer, to, &body).await {
        tracing::info!(peer = %to, "peering: room key not shared now ({e:?}); it will be asked for");
        peer.stats.dropped("share_deferred_to_request");
    }
}

/// The membership event of one of this gateway's joined users in `room`.
fn our_membership(peer: &Peer, room: &OwnedRoomId) -> Option<RawPdu> {
    let me = peer.gw.server_name();
    let members = peer.gw.rooms.members(room).ok()?;
    let user = members
        .into_iter()
        .find(|(u, m)| u.server_name() == me && m.membership == "join")?
        .0;
    let (_, stored) = peer
        .gw
        .rooms
        .state_pdu(room, "m.room.member", user.as_str())
        .ok()??;
    Some(stored.json)
}

/// Handles an Olm message from `origin`.
pub async fn receive(peer: &Peer, origin: &ServerName, message: OlmCiphertext) -> ApiResult<()> {
    let plain = match peer.keys.olm_decrypt(origin, &message).await {
        Ok(p) => p,
        Err(KeyError::Storage(e)) => {
            return Err(crate::error::ApiError::internal(format!("olm store: {e}")))
        }
        Err(e) => {
            tracing::info!(origin = %origin, "peering: Olm message dropped: {e}");
            peer.stats.dropped(e.label());
            if e == KeyError::OlmUndecryptable {
                reset(peer, origin).await;
            }
            return Ok(());
        }
    };
    let body = match decode_payload(&plain) {
        Ok(b) => b,
        Err(e) => {
            tracing::info!(origin = %origin, "peering: Olm payload malformed: {e}");
            peer.stats.dropped("malformed");
            return Ok(());
        }
    };
    match body {
        Body::RoomKey { share, membership } => {
            super::seal::accept_key(peer, origin, share, membership).await
        }
        Body::Txn { pdus, edus, .. } if pdus.is_empty() => {
            for edu in edus {
                super::edu::apply(peer, origin, edu).await?;
            }
            Ok(())
        }
        Body::Invite {
            room_version,
            event,
            invite_state,
        } => super::inbound::invite(peer, origin, room_version, event, invite_state).await,
        _ => {
            peer.stats.dropped("olm_unexpected");
            Ok(())
        }
    }
}

/// Our sessions with `origin` are broken: forget them and ask it to start anew.
async fn reset(peer: &Peer, origin: &ServerName) {
    {
        let mut sent = peer.resets_sent.lock().unwrap_or_else(|e| e.into_inner());
        if sent
            .get(origin)
            .is_some_and(|at| at.elapsed() < RESET_EVERY)
        {
            return;
        }
        sent.insert(origin.to_owned(), Instant::now());
    }
    if let Err(e) = peer.keys.forget_olm_sessions(origin).await {
        tracing::warn!("peering: forgetting Olm sessions: {e}");
    }
    if let Err(e) = super::outbound::deliver(peer, origin, Body::OlmReset {}).await {
        tracing::info!(origin = %origin, "peering: OlmReset not sent: {}", e.message);
    }
}
