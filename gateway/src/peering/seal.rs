//! Room traffic under epochs: what this gateway sends into a room is sealed once under its
//! current Megolm session for the room; what arrives sealed is opened, or held until its key
//! comes (and the key asked for); key requests from other gateways are answered; and a
//! maintenance task deletes what the retention window says is over.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use ruma::{OwnedRoomId, OwnedServerName, RoomId, ServerName};

use super::{
    groupkeys::{megolm::RoomKeyShare, KeyError},
    olm_channel,
    reply_seal::{decode_payload, encode_payload},
    wire::{Body, Edu, RawPdu},
    Peer,
};
use crate::error::{ApiError, ApiResult};

/// Maintenance rounds between two expiry passes.
const EXPIRE_EVERY_TICKS: u32 = 30;

/// The room's history visibility now (`shared` when unset).
pub fn visibility(peer: &Peer, room: &RoomId) -> String {
    peer.gw
        .rooms
        .state_content(room, "m.room.history_visibility", "")
        .ok()
        .flatten()
        .and_then(|c| c.get("history_visibility")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| "shared".to_owned())
}

/// Seals `pdus` and `edus` of `room` for `readers` (the gateways they go to) and delivers the
/// one ciphertext to `to` (a subset of `readers`, usually all of them), after sharing the
/// epoch's key with those that need it.
pub async fn send_room(
    peer: &Peer,
    room: &RoomId,
    readers: &BTreeSet<OwnedServerName>,
    to: &BTreeSet<OwnedServerName>,
    pdus: Vec<RawPdu>,
    edus: Vec<Edu>,
) -> ApiResult<()> {
    if to.is_empty() || (pdus.is_empty() && edus.is_empty()) {
        return Ok(());
    }
    let events = u32::try_from(pdus.len() + edus.len()).unwrap_or(u32::MAX);
    let txn = Body::Txn {
        id: crate::service::users::random_string(16),
        pdus,
        edus,
    };
    for dest in to {
        peer.tap(dest, &txn);
    }
    let plaintext = encode_payload(&txn);
    let vis = visibility(peer, room);
    let sealing = peer
        .keys
        .seal(room, readers, &vis, events, &plaintext)
        .await
        .map_err(|e| ApiError::internal(format!("sealing: {e}")))?;
    if let Some(why) = sealing.rotated {
        tracing::debug!(room = %room, "peering: new epoch ({})", why.label());
        peer.stats.rotated(why.label());
    }
    // All at once: a claim to an unreachable reader waits its bound once, not once per reader.
    futures::future::join_all(
        sealing
            .shares
            .into_iter()
            .map(
                |(reader, share)| async move { olm_channel::share_key(peer, &reader, share).await },
            ),
    )
    .await;
    for dest in to {
        let body = Body::Sealed {
            session_id: sealing.session_id.clone(),
            ciphertext: sealing.ciphertext.clone(),
        };
        super::outbound::deliver(peer, dest, body).await?;
    }
    Ok(())
}

/// Handles a sealed message from `origin`.
pub async fn receive(
    peer: &Peer,
    origin: &ServerName,
    session_id: &str,
    ciphertext: &str,
) -> ApiResult<()> {
    match peer.keys.open(origin, session_id, ciphertext).await {
        Ok((room, plain)) => deliver_plain(peer, origin, &room, &plain).await,
        Err(KeyError::UnknownSession) => {
            match peer.keys.hold(origin, session_id, ciphertext).await {
                Ok(true) => {
                    tracing::debug!(origin = %origin, "peering: sealed message held for its key");
                    peer.stats.note("held_for_key");
                }
                Ok(false) => {
                    tracing::info!(origin = %origin, "peering: too many messages wait for keys");
                    peer.stats.dropped("held_full");
                }
                Err(e) => return Err(ApiError::internal(format!("holding: {e}"))),
            }
            Ok(())
        }
        Err(KeyError::Storage(e)) => Err(ApiError::internal(format!("keys: {e}"))),
        Err(e) => {
            tracing::info!(origin = %origin, "peering: sealed message dropped: {e}");
            peer.stats.dropped(e.label());
            Ok(())
        }
    }
}

/// Hands what a sealed message carried to the rooms: only PDUs and EDUs of the session's
/// room (anything else is dropped and counted).
async fn deliver_plain(
    peer: &Peer,
    origin: &ServerName,
    room: &OwnedRoomId,
    plain: &[u8],
) -> ApiResult<()> {
    let (pdus, edus) = match decode_payload(plain) {
        Ok(Body::Txn { pdus, edus, .. }) => (pdus, edus),
        Ok(_) | Err(_) => {
            peer.stats.dropped("malformed");
            return Ok(());
        }
    };
    let mut mine = Vec::new();
    for pdu in pdus {
        match serde_json::from_str::<RoomOf>(pdu.get()) {
            Ok(r) if r.room_id == *room => mine.push(pdu),
            _ => peer.stats.dropped("room_mismatch"),
        }
    }
    if !mine.is_empty() {
        super::inbound::ingest_from(peer, origin, room, mine).await?;
    }
    for edu in edus {
        let of_room = match &edu {
            Edu::Typing { room_id, .. } | Edu::Receipt { room_id, .. } => room_id == room,
            _ => false,
        };
        if of_room {
            super::edu::apply(peer, origin, edu).await?;
        } else {
            peer.stats.dropped("room_mismatch");
        }
    }
    Ok(())
}

#[derive(serde::Deserialize)]
struct RoomOf {
    room_id: OwnedRoomId,
}

/// Stores a room key from `origin` (under Olm or in an answer) and opens what waited for it.
pub async fn accept_key(
    peer: &Peer,
    origin: &ServerName,
    share: RoomKeyShare,
    membership: Option<RawPdu>,
) -> ApiResult<()> {
    let room = share.room_id.clone();
    if peer.gw.rooms.meta(&room)?.is_none() {
        tracing::info!(origin = %origin, room = %room, "peering: key for a room this gateway is not in");
        peer.stats.dropped("key_share_unknown_room");
        return Ok(());
    }
    if !peer.gw.rooms.server_in_room(&room, origin)? {
        // It may have joined by an event this gateway has not seen: the event came along.
        if let Some(event) = membership {
            super::inbound::ingest_from(peer, origin, &room, vec![event]).await?;
        }
        if !peer.gw.rooms.server_in_room(&room, origin)? {
            tracing::info!(origin = %origin, room = %room, "peering: key from a gateway not in the room");
            peer.stats.dropped("key_share_not_in_room");
            return Ok(());
        }
    }
    match peer.keys.accept_share(origin, &share).await {
        Ok(()) => peer.stats.note("key_accepted"),
        Err(KeyError::Storage(e)) => return Err(ApiError::internal(format!("keys: {e}"))),
        Err(e) => {
            tracing::info!(origin = %origin, "peering: room key refused: {e}");
            peer.stats.dropped(e.label());
            return Ok(());
        }
    }
    let held = peer
        .keys
        .take_held(origin, &share.session_id)
        .await
        .map_err(|e| ApiError::internal(format!("keys: {e}")))?;
    for ciphertext in held {
        receive(peer, origin, &share.session_id, &ciphertext).await?;
    }
    Ok(())
}

/// Answers a key request: the epoch from where the asker may read, if it is still a member
/// gateway of the room and was a reader of the epoch.
pub async fn answer_key_request(
    peer: &Peer,
    origin: &ServerName,
    session_id: &str,
) -> ApiResult<Body> {
    if peer.keys.admit_request(origin).is_err() {
        peer.stats.dropped("key_request_flood");
        return Err(ApiError::limit_exceeded(60_000));
    }
    let share = match peer.keys.reshare(origin, session_id).await {
        Ok(s) => s,
        Err(KeyError::UnknownSession) => {
            return Err(ApiError::not_found("no such current epoch"));
        }
        Err(KeyError::Storage(e)) => return Err(ApiError::internal(format!("keys: {e}"))),
        Err(e) => {
            peer.stats.dropped(e.label());
            return Err(ApiError::forbidden("not a reader of that epoch"));
        }
    };
    if !peer.gw.rooms.server_in_room(&share.room_id, origin)? {
        peer.stats.dropped("key_not_entitled");
        return Err(ApiError::forbidden("not in the room"));
    }
    Ok(Body::RoomKey {
        share,
        membership: None,
    })
}

/// Answers a one-time key claim.
pub async fn answer_claim(peer: &Peer, origin: &ServerName) -> ApiResult<Body> {
    if peer.keys.admit_request(origin).is_err() {
        peer.stats.dropped("key_request_flood");
        return Err(ApiError::limit_exceeded(60_000));
    }
    let (identity_key, one_time_key) = peer
        .keys
        .hand_out_one_time_key()
        .await
        .map_err(|e| ApiError::internal(format!("olm: {e}")))?;
    Ok(Body::OlmKey {
        identity_key,
        one_time_key,
    })
}

/// Runs maintenance every `tick`: asks for keys messages have waited for, and deletes what
/// the retention window says is over.
pub async fn maintain(peer: Arc<Peer>, tick: Duration) {
    let mut rounds: u32 = 0;
    loop {
        tokio::time::sleep(tick).await;
        rounds = rounds.wrapping_add(1);
        match peer.keys.due_requests().await {
            Ok(due) => {
                for w in due {
                    let peer = peer.clone();
                    tokio::spawn(async move { ask_key(&peer, &w.origin, &w.session_id).await });
                }
            }
            Err(e) => tracing::warn!("peering keys: {e}"),
        }
        if rounds.is_multiple_of(EXPIRE_EVERY_TICKS) {
            expire(&peer).await;
        }
    }
}

/// Deletes what the retention window says is over, and counts it.
pub async fn expire(peer: &Peer) {
    match peer.keys.expire().await {
        Ok(gone) => {
            for _ in 0..gone.pending {
                peer.stats.dropped("undecryptable_expired");
            }
            if gone.epochs + gone.own_epochs + gone.olm_sessions + gone.one_time_keys + gone.pending
                > 0
            {
                tracing::debug!(?gone, "peering: keys expired");
            }
        }
        Err(e) => tracing::warn!("peering keys expiry: {e}"),
    }
}

async fn ask_key(peer: &Peer, origin: &ServerName, session_id: &str) {
    let answer = peer
        .ask(
            origin,
            Body::KeyRequest {
                session_id: session_id.to_owned(),
            },
        )
        .await;
    match answer {
        Ok(Body::RoomKey { share, .. }) if share.session_id == session_id => {
            tracing::debug!(origin = %origin, "peering: key recovered by request");
            peer.stats.note("key_recovered");
            if let Err(e) = accept_key(peer, origin, share, None).await {
                tracing::warn!("peering: recovered key not stored: {}", e.message);
            }
        }
        Ok(_) => peer.stats.dropped("bad_answer"),
        Err(e) => tracing::info!(origin = %origin, "peering: key request unanswered: {e}"),
    }
}
