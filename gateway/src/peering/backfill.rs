//! Backfill over the mixnet: history older than what a gateway holds, asked of member
//! gateways when a client pages back past the start of the room's timeline here.
//!
//! - **Asking** ([`fetch`]): the room's backfill frontier (`service::rooms::backfill`) goes
//!   to one member gateway after another, each with a bounded wait ([`PEER_WAIT`]), until one
//!   answers with events; they are verified like any PDU (format, signature, hashes, room) and
//!   stored with the readers the answering gateway named. A page never waits on one slow peer
//!   for longer than that bound, and a peer that answers garbage is skipped and counted.
//! - **Answering** ([`answer`]): only a gateway with a member in the room is answered; events
//!   go whole when one of its users may read them and redacted otherwise
//!   ([`crate::service::rooms::ServerView`]), each with the indexes of the asker's users who may
//!   read it, together with their auth chain, trimmed to one message.

use std::time::Duration;

use ruma::{OwnedEventId, OwnedUserId, RoomId, ServerName};

use super::{
    handshake::require_member,
    wire::{Body, RawPdu},
    Peer,
};
use crate::{
    error::ApiResult,
    service::rooms::{
        backfill::Fetched,
        ingest::{verify_pdu, IncomingPdu},
    },
};

/// Events asked for per request.
pub const PAGE: u32 = 50;

/// Most events in one answer.
const MAX_PAGE: usize = 100;

/// How long one peer is waited for.
pub const PEER_WAIT: Duration = Duration::from_secs(8);

/// Peers asked per fetch, one after another.
const MAX_PEERS: usize = 2;

/// Bytes of PDUs in one answer (the envelope and the reader lists take the rest).
const ANSWER_BUDGET: usize = super::net::MAX_MESSAGE - 6 * 1024;

/// Asks member gateways for `room`'s history before what this gateway holds and stores it.
/// Returns how many events were added (0: nothing older, or no peer answered in time).
pub async fn fetch(peer: &Peer, room: &RoomId) -> ApiResult<usize> {
    let mut from = peer.gw.rooms.backfill_frontier(room)?;
    if from.is_empty() {
        return Ok(0);
    }
    from.truncate(20);
    let servers = peer.gw.rooms.member_servers(room)?;
    for server in servers.iter().take(MAX_PEERS) {
        let answer = peer
            .ask_within(
                server,
                Body::Backfill {
                    room_id: room.to_owned(),
                    from: from.clone(),
                    limit: PAGE,
                },
                &[PEER_WAIT],
            )
            .await;
        match answer {
            Ok(Body::History {
                pdus,
                auth,
                users,
                readers,
            }) => match accept(peer, server, room, pdus, auth, users, readers) {
                Some((auth, events)) if !events.is_empty() => {
                    return peer.gw.rooms.store_backfill(room, auth, events).await;
                }
                Some(_) => {}
                None => {
                    tracing::info!(peer = %server, room = %room, "peering: bad history answer");
                    peer.stats.dropped("bad_answer");
                }
            },
            Ok(_) => peer.stats.dropped("bad_answer"),
            Err(e) => {
                tracing::info!(peer = %server, room = %room, "peering: history not fetched: {e}");
            }
        }
    }
    Ok(0)
}

/// Checks and verifies a `History` answer; `None` if it is malformed as a whole. Single
/// events that fail verification are dropped and counted.
pub(crate) fn accept(
    peer: &Peer,
    from: &ServerName,
    room: &RoomId,
    pdus: Vec<RawPdu>,
    auth: Vec<RawPdu>,
    users: Vec<OwnedUserId>,
    readers: Vec<Vec<u16>>,
) -> Option<(Vec<IncomingPdu>, Vec<Fetched>)> {
    if pdus.len() > MAX_PAGE || readers.len() != pdus.len() {
        return None;
    }
    let me = peer.gw.server_name();
    let rules = peer.gw.rooms.rules_of(room).ok()?;
    let mut events = Vec::new();
    for (raw, idx) in pdus.iter().zip(readers) {
        let mut who = Vec::new();
        for i in idx {
            // Readers are this gateway's own users, named by index.
            let user = users.get(usize::from(i))?;
            if user.server_name() != me {
                return None;
            }
            who.push(user.clone());
        }
        let pdu = match verify_pdu(&rules, room, raw) {
            Ok(p) => p,
            Err(e) => {
                tracing::info!(peer = %from, room = %room, "peering: history event refused: {e}");
                peer.stats.dropped(e.label());
                continue;
            }
        };
        events.push(Fetched { pdu, readers: who });
    }
    let auth = auth
        .iter()
        .filter_map(|raw| verify_pdu(&rules, room, raw).ok())
        .collect();
    Some((auth, events))
}

/// Answers `Backfill` (see the module documentation).
pub fn answer(
    peer: &Peer,
    origin: &ServerName,
    room: &RoomId,
    from: &[OwnedEventId],
    limit: u32,
) -> ApiResult<Body> {
    require_member(peer, origin, room)?;
    let limit = (limit as usize).min(MAX_PAGE);
    let view = peer.gw.rooms.server_view(room, origin)?;
    let mut events = peer
        .gw
        .rooms
        .history_before(room, &from[..from.len().min(20)], limit)?;
    loop {
        let ids: Vec<OwnedEventId> = events.iter().map(|(p, _)| p.event_id.clone()).collect();
        let mut pdus = Vec::with_capacity(events.len());
        let mut readers = Vec::with_capacity(events.len());
        for (_, stored) in &events {
            pdus.push(view.pdu(stored)?);
            readers.push(view.readers(stored.pos)?);
        }
        let auth = peer
            .gw
            .rooms
            .auth_events_for(&ids)?
            .iter()
            .map(|s| view.pdu(s))
            .collect::<ApiResult<Vec<_>>>()?;
        let size: usize = pdus.iter().chain(&auth).map(|p| p.get().len() + 1).sum();
        if size <= ANSWER_BUDGET || events.len() <= 1 {
            return Ok(Body::History {
                pdus,
                auth,
                users: view.users().to_vec(),
                readers,
            });
        }
        // Too big for one message: answer the newer half (the asker asks again).
        events.truncate(events.len() / 2);
    }
}
