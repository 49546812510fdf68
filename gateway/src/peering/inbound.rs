//! The inbound loop: decode, authenticate, store, then confirm.
//!
//! Durable messages (`Txn`, `Invite`) are handled one at a time in arrival order and confirmed
//! to the network only after what they carried is stored (or refused for good), so a crash
//! before that brings them again and event ids absorb the repeat. Requests are answered on
//! their own tasks, so a slow one never holds up the rooms.
//!
//! Whatever is malformed, forged, for another gateway, too old, or from a gateway with no
//! member in the room is dropped with a counter and a log line; none of it reaches a client.

use std::sync::Arc;

use ruma::{
    events::TimelineEventType, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, RoomId,
    ServerName, UserId,
};
use serde::Deserialize;

use super::{
    handshake,
    net::{Inbound, PeerInbox, Reply, MAX_MESSAGE},
    wire::{self, Body, Envelope, RawPdu},
    Peer,
};
use crate::{
    error::ApiResult,
    service::keys::federated,
    service::rooms::{
        ingest::{verify_pdu, IncomingPdu, Ingested},
        RemoteInvite,
    },
};

/// Messages older than this are refused (replays of old traffic).
const MAX_AGE_MS: u64 = 30 * 24 * 3600 * 1000;

/// Runs the inbound loop until the network stops.
pub async fn run(peer: Arc<Peer>, mut inbox: Box<dyn PeerInbox>) {
    while let Some(msg) = inbox.next().await {
        peer.stats.received();
        handle(&peer, msg).await;
    }
    tracing::info!("peering: network stopped");
}

async fn handle(peer: &Arc<Peer>, msg: Inbound) {
    let Inbound { id, bytes, reply } = msg;
    let envelope = match decode(peer, &bytes) {
        Some(e) => e,
        None => {
            // It will never become valid: confirm it so the sender stops resending.
            if reply.is_none() {
                peer.net.confirm(id);
            }
            return;
        }
    };
    match reply {
        Some(reply) => {
            let peer = peer.clone();
            tokio::spawn(async move { answer(&peer, envelope, reply).await });
        }
        None => match store(peer, envelope).await {
            Ok(()) => peer.net.confirm(id),
            // Not stored (storage failure): leave it unconfirmed, it comes again.
            Err(e) => tracing::warn!("peering: message not stored: {}", e.message),
        },
    }
}

fn decode(peer: &Peer, bytes: &[u8]) -> Option<Envelope> {
    let envelope = match wire::decode(peer.gw.server_name(), bytes) {
        Ok(e) => e,
        Err(e) => {
            tracing::info!("peering: dropped a message: {e}");
            peer.stats.dropped(e.label());
            return None;
        }
    };
    let now = u64::from(MilliSecondsSinceUnixEpoch::now().get());
    if now.saturating_sub(envelope.ts) > MAX_AGE_MS {
        tracing::info!(origin = %envelope.origin, "peering: dropped a stale message");
        peer.stats.dropped("stale");
        return None;
    }
    Some(envelope)
}

/// Stores what a durable message carries. Room traffic arrives sealed under the origin's
/// epoch, what is for this gateway alone under Olm; anything else is refused.
async fn store(peer: &Peer, envelope: Envelope) -> ApiResult<()> {
    let origin = envelope.origin;
    match envelope.body {
        Body::Sealed {
            session_id,
            ciphertext,
        } => super::seal::receive(peer, &origin, &session_id, &ciphertext).await,
        Body::Olm { message } => super::olm_channel::receive(peer, &origin, message).await,
        Body::OlmReset {} => {
            tracing::info!(origin = %origin, "peering: peer lost our Olm session; starting anew");
            peer.stats.note("olm_reset");
            peer.keys
                .forget_olm_sessions(&origin)
                .await
                .map_err(|e| crate::error::ApiError::internal(format!("olm: {e}")))
        }
        other => {
            tracing::info!(origin = %origin, "peering: dropped an unencrypted {}", kind_label(&other));
            peer.stats.dropped(match other {
                Body::Txn { .. } | Body::Invite { .. } => "unsealed",
                ref o => kind_label(o),
            });
            Ok(())
        }
    }
}

#[derive(Deserialize)]
struct RoomOf {
    room_id: OwnedRoomId,
}

/// Verifies PDUs of one room sent by `origin`; refused ones are counted and dropped.
pub(super) fn verify_all(
    peer: &Peer,
    origin: &ServerName,
    room: &RoomId,
    pdus: Vec<RawPdu>,
) -> Vec<IncomingPdu> {
    let Ok(rules) = peer.gw.rooms.rules_of(room) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for raw in pdus {
        match verify_pdu(&rules, room, &raw) {
            Ok(p) => out.push(p),
            Err(e) => {
                tracing::info!(origin = %origin, room = %room, "peering: PDU refused: {e}");
                peer.stats.dropped(e.label());
            }
        }
    }
    out
}

/// Ingests PDUs of one room from `origin`, fetching missing parents from it first.
pub async fn ingest_from(
    peer: &Peer,
    origin: &ServerName,
    room: &RoomId,
    pdus: Vec<RawPdu>,
) -> ApiResult<()> {
    if peer.gw.rooms.meta(room)?.is_none() {
        peer.stats.dropped("unknown_room");
        tracing::info!(origin = %origin, room = %room, "peering: PDUs for a room this gateway is not in");
        return Ok(());
    }
    let incoming: Vec<IncomingPdu> = verify_all(peer, origin, room, pdus)
        .into_iter()
        .filter(|p| {
            // Only a gateway with a member in the room may send its events (its own users'
            // events, e.g. a join, always).
            let entitled = p.pdu.sender.server_name() == origin
                || peer.gw.rooms.server_in_room(room, origin).unwrap_or(false);
            if !entitled {
                peer.stats.dropped("not_in_room");
            }
            entitled
        })
        .collect();
    if incoming.is_empty() {
        return Ok(());
    }
    let outcomes = peer
        .gw
        .rooms
        .ingest(room, None, incoming.clone(), false)
        .await?;
    let mut missing_for: Vec<OwnedEventId> = Vec::new();
    for (id, outcome) in &outcomes {
        count(peer, outcome);
        if let Ingested::Missing(_) = outcome {
            missing_for.push(id.clone());
        }
    }
    if missing_for.is_empty() {
        return Ok(());
    }
    // Fetch from the origin what lies between our extremities and these events; whatever
    // stays missing is accepted across the gap.
    let held = incoming
        .into_iter()
        .filter(|p| missing_for.contains(&p.event_id))
        .collect();
    super::catchup::fill(peer, origin, room, held).await?;
    Ok(())
}

/// Counts what became of one ingested event.
pub(super) fn count(peer: &Peer, outcome: &Ingested) {
    match outcome {
        Ingested::Accepted => peer.stats.accepted(),
        Ingested::SoftFailed => peer.stats.dropped("soft_failed"),
        Ingested::Rejected(r) => peer.stats.dropped(r.label()),
        Ingested::Duplicate | Ingested::Missing(_) => {}
    }
}

/// An invite of a local user into a room on other gateways (it arrives under Olm).
pub(super) async fn invite(
    peer: &Peer,
    origin: &ServerName,
    room_version: ruma::RoomVersionId,
    event: RawPdu,
    invite_state: Vec<serde_json::Value>,
) -> ApiResult<()> {
    let Ok(rules) = crate::service::rooms::rules_for(&room_version) else {
        peer.stats.dropped("room_version");
        return Ok(());
    };
    let room: OwnedRoomId = match serde_json::from_str::<RoomOf>(event.get()) {
        Ok(r) => r.room_id,
        Err(_) => {
            peer.stats.dropped("malformed");
            return Ok(());
        }
    };
    let incoming = match verify_pdu(&rules, &room, &event) {
        Ok(p) => p,
        Err(e) => {
            peer.stats.dropped(e.label());
            return Ok(());
        }
    };
    let pdu = &incoming.pdu;
    let invitee = pdu.state_key.as_deref().and_then(|k| UserId::parse(k).ok());
    let valid = pdu.kind == TimelineEventType::RoomMember
        && pdu.sender.server_name() == origin
        && pdu.content_value()["membership"] == "invite";
    let Some(invitee) = invitee.filter(|u| valid && u.server_name() == peer.gw.server_name())
    else {
        peer.stats.dropped("bad_invite");
        return Ok(());
    };
    if !peer.gw.users.exists(&invitee)? {
        peer.stats.dropped("unknown_user");
        return Ok(());
    }
    if peer.gw.rooms.meta(&room)?.is_some() {
        // This gateway is in the room already: the invite is an ordinary event.
        return ingest_from(peer, origin, &room, vec![event]).await;
    }
    // Stripped state is shown as the inviter describes it; keep only well-formed entries.
    let invite_state = invite_state
        .into_iter()
        .filter(|e| e["type"].is_string() && e["state_key"].is_string() && e["content"].is_object())
        .take(50)
        .collect();
    peer.gw
        .rooms
        .store_remote_invite(
            &invitee,
            &room,
            RemoteInvite {
                room_version,
                event: incoming.json,
                event_id: incoming.event_id,
                invite_state,
            },
        )
        .await
}

/// Answers one request, encrypted to the key the request carries.
async fn answer(peer: &Peer, envelope: Envelope, reply: Reply) {
    let origin = envelope.origin.clone();
    let Body::Asking { reply_key, request } = envelope.body else {
        // Without a key the answer could not be sealed: refuse (the refusal holds nothing).
        peer.stats.dropped("request_without_key");
        let body = Body::Error {
            errcode: "M_UNRECOGNIZED".into(),
            error: "requests must carry a reply key".into(),
        };
        let bytes = peer.encode(&origin, body);
        if let Err(e) = reply.send(bytes) {
            tracing::info!(origin = %origin, "peering: answer not sent: {e}");
        }
        return;
    };
    let inner = Envelope {
        body: *request,
        ..envelope
    };
    let body = match respond(peer, inner).await {
        Ok(body) => body,
        Err(e) => Body::Error {
            errcode: e.errcode.to_owned(),
            error: e.message,
        },
    };
    if let Body::Error { errcode, .. } = &body {
        tracing::info!(origin = %origin, errcode, "peering: request refused");
        peer.stats.dropped("request_refused");
    }
    peer.tap(&origin, &body);
    let sealed = |body: &Body| match super::reply_seal::seal_answer(&reply_key, body) {
        Ok(b) => b,
        Err(e) => Body::Error {
            errcode: "M_BAD_JSON".into(),
            error: format!("bad reply key: {e}"),
        },
    };
    let mut bytes = peer.encode(&origin, sealed(&body));
    if bytes.len() > MAX_MESSAGE {
        bytes = peer.encode(
            &origin,
            sealed(&Body::Error {
                errcode: "M_TOO_LARGE".into(),
                error: "the answer does not fit one message".into(),
            }),
        );
    }
    peer.stats.sent(bytes.len());
    if let Err(e) = reply.send(bytes) {
        tracing::info!(origin = %origin, "peering: answer not sent: {e}");
    }
}

async fn respond(peer: &Peer, envelope: Envelope) -> ApiResult<Body> {
    let origin = envelope.origin;
    match envelope.body {
        Body::MakeMembership {
            room_id,
            user_id,
            membership,
        } => handshake::make_membership(peer, &origin, &room_id, &user_id, &membership).await,
        Body::SendMembership { room_id, event } => {
            handshake::send_membership(peer, &origin, &room_id, event).await
        }
        Body::MissingEvents {
            room_id,
            earliest,
            latest,
            limit,
        } => handshake::missing_events(peer, &origin, &room_id, &earliest, &latest, limit),
        Body::RoomHeads { room_id } => handshake::room_heads(peer, &origin, &room_id),
        Body::QueryMedia { media_id } => super::media::answer_query(peer, &origin, &media_id),
        Body::FetchMedia { media_id, index } => {
            super::media::answer_fetch(peer, &origin, &media_id, index)
        }
        Body::Backfill {
            room_id,
            from,
            limit,
        } => super::backfill::answer(peer, &origin, &room_id, &from, limit),
        Body::QueryAlias { alias } => handshake::query_alias(peer, &alias),
        Body::QueryProfile { user_id } => handshake::query_profile(peer, &origin, &user_id),
        Body::QueryKeys { device_keys } => Ok(Body::Keys {
            body: federated::answer_query(&peer.gw, &origin, &device_keys)?,
        }),
        Body::ClaimKeys { one_time_keys } => Ok(Body::Claimed {
            body: federated::answer_claim(&peer.gw, &origin, &one_time_keys).await?,
        }),
        Body::ClaimOlmKey {} => super::seal::answer_claim(peer, &origin).await,
        Body::KeyRequest { session_id } => {
            super::seal::answer_key_request(peer, &origin, &session_id).await
        }
        other => Err(crate::error::ApiError::unrecognized(format!(
            "not a request: {}",
            kind_label(&other)
        ))),
    }
}

fn kind_label(body: &Body) -> &'static str {
    match body {
        Body::Txn { .. } => "txn",
        Body::Invite { .. } => "invite",
        Body::MakeMembership { .. } => "make_membership",
        Body::MembershipTemplate { .. } => "membership_template",
        Body::SendMembership { .. } => "send_membership",
        Body::JoinedState { .. } => "joined_state",
        Body::MissingEvents { .. } => "missing_events",
        Body::Events { .. } => "events",
        Body::RoomHeads { .. } => "room_heads",
        Body::QueryMedia { .. } => "query_media",
        Body::MediaInfo { .. } => "media_info",
        Body::FetchMedia { .. } => "fetch_media",
        Body::MediaChunk { .. } => "media_chunk",
        Body::Backfill { .. } => "backfill",
        Body::History { .. } => "history",
        Body::Heads { .. } => "heads",
        Body::QueryAlias { .. } => "query_alias",
        Body::Alias { .. } => "alias",
        Body::QueryProfile { .. } => "query_profile",
        Body::Profile { .. } => "profile",
        Body::QueryKeys { .. } => "query_keys",
        Body::Keys { .. } => "keys",
        Body::ClaimKeys { .. } => "claim_keys",
        Body::Claimed { .. } => "claimed",
        Body::Sealed { .. } => "sealed",
        Body::Olm { .. } => "olm",
        Body::OlmReset { .. } => "olm_reset",
        Body::ClaimOlmKey { .. } => "claim_olm_key",
        Body::OlmKey { .. } => "olm_key",
        Body::KeyRequest { .. } => "key_request",
        Body::RoomKey { .. } => "room_key",
        Body::Asking { .. } => "asking",
        Body::Answer { .. } => "answer",
        Body::Error { .. } => "error",
    }
}
