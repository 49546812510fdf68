//! Catching up with a room's other gateways.
//!
//! Two things leave a gateway without events it should have: sends that outlived the
//! providers' mailboxes or the sender's retries (a gateway down for a day), and the mixnet's
//! reordering (an event arrives before its parents). Both end here:
//! - [`fill`] fetches from one peer what lies between this gateway's forward extremities and
//!   events it holds whose parents it lacks: `MissingEvents` pages walking back along
//!   `prev_events` until every parent is known (or a bound is reached), then ingests the lot
//!   in one room write, in depth order, so parents go in before children and an event id
//!   already stored is a duplicate, never shown twice.
//! - [`run`] asks member gateways for their forward extremities (`RoomHeads`) at start and
//!   every [`PeeringOptions::catchup_every`], and fills from a gateway that has heads this one
//!   lacks. A gateway that was down longer than the mailboxes keep mail thus gets everything
//!   it missed, in DAG order, within one round of coming back.
//!
//! A gap larger than [`MAX_FILL`] events is accepted as a gap: the newest events are shown
//! and the ones before them are not fetched (see `gateway/README.md`, *Peering*).

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use ruma::{OwnedEventId, RoomId, ServerName};

use super::{
    inbound::{count, verify_all},
    wire::Body,
    Peer,
};
use crate::{error::ApiResult, service::rooms::ingest::IncomingPdu};

/// Events asked for per `MissingEvents` page (the answer keeps what fits one message).
const PAGE: u32 = 100;

/// Events fetched at most to close one gap.
pub const MAX_FILL: usize = 5_000;

/// Events named as `latest` in one page request.
const MAX_LATEST: usize = 20;

/// Timing of peering: when and how often it compares a room's extremities with other
/// gateways, the clock group keys are timed by, and how often key maintenance runs.
#[derive(Clone)]
pub struct PeeringOptions {
    /// First comparison after start (the network has found its peers by then).
    pub catchup_first: Duration,
    /// Comparisons after that.
    pub catchup_every: Duration,
    /// The clock of epochs, retention and waiting messages (tests drive it by hand).
    pub clock: std::sync::Arc<dyn crate::service::clock::Clock>,
    /// How often key maintenance runs (key requests for waiting messages; expiry every 30).
    pub keys_tick: Duration,
}

impl Default for PeeringOptions {
    fn default() -> Self {
        Self {
            catchup_first: Duration::from_secs(5),
            catchup_every: Duration::from_secs(30 * 60),
            clock: std::sync::Arc::new(crate::service::clock::SystemClock),
            keys_tick: Duration::from_secs(1),
        }
    }
}

impl std::fmt::Debug for PeeringOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeeringOptions")
            .field("catchup_first", &self.catchup_first)
            .field("catchup_every", &self.catchup_every)
            .field("keys_tick", &self.keys_tick)
            .finish()
    }
}

/// What a fill achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Filled {
    /// Events fetched from the peer.
    pub fetched: usize,
    /// Whether every parent became known (else the rest was accepted across a gap).
    pub complete: bool,
}

/// Ids of `events` with a parent neither among them nor stored, lowest first.
fn frontier(peer: &Peer, events: &HashMap<OwnedEventId, IncomingPdu>) -> Vec<OwnedEventId> {
    let mut out: Vec<(u64, OwnedEventId)> = events
        .values()
        .filter(|e| {
            e.pdu.prev_events.iter().any(|p| {
                !events.contains_key(p) && !matches!(peer.gw.rooms.get_pdu(p), Ok(Some(_)))
            })
        })
        .map(|e| (u64::from(e.pdu.depth), e.event_id.clone()))
        .collect();
    out.sort();
    out.into_iter().map(|(_, id)| id).collect()
}

/// Fetches from `from` the ancestors of `held` this gateway lacks and ingests them together
/// with `held` (see the module documentation).
pub async fn fill(
    peer: &Peer,
    from: &ServerName,
    room: &RoomId,
    held: Vec<IncomingPdu>,
) -> ApiResult<Filled> {
    let mut events: HashMap<OwnedEventId, IncomingPdu> =
        held.into_iter().map(|e| (e.event_id.clone(), e)).collect();
    let held_ids: HashSet<OwnedEventId> = events.keys().cloned().collect();
    let mut wanted = frontier(peer, &events);
    while !wanted.is_empty() && events.len() - held_ids.len() < MAX_FILL {
        wanted.truncate(MAX_LATEST);
        let answer = peer
            .ask(
                from,
                Body::MissingEvents {
                    room_id: room.to_owned(),
                    earliest: peer.gw.rooms.heads(room)?,
                    latest: wanted.clone(),
                    limit: PAGE,
                },
            )
            .await;
        let pdus = match answer {
            Ok(Body::Events { pdus }) if pdus.len() <= PAGE as usize => pdus,
            Ok(_) => {
                tracing::info!(peer = %from, room = %room, "peering: bad missing-events answer");
                peer.stats.dropped("bad_answer");
                break;
            }
            Err(e) => {
                tracing::info!(peer = %from, room = %room, "peering: missing events not fetched: {e}");
                break;
            }
        };
        let before = events.len();
        for e in verify_all(peer, from, room, pdus) {
            events.entry(e.event_id.clone()).or_insert(e);
        }
        if events.len() == before {
            break;
        }
        wanted = frontier(peer, &events);
    }
    let complete = wanted.is_empty();
    let fetched = events.len() - held_ids.len();
    if !complete {
        tracing::info!(peer = %from, room = %room, fetched, "peering: gap accepted");
        peer.stats.dropped("gap_accepted");
    }
    let outcomes = peer
        .gw
        .rooms
        .ingest(room, None, events.into_values().collect(), true)
        .await?;
    for (_, outcome) in &outcomes {
        count(peer, outcome);
    }
    Ok(Filled { fetched, complete })
}

/// Compares extremities with member gateways until the gateway stops (see the module
/// documentation).
pub async fn run(peer: std::sync::Arc<Peer>) {
    tokio::time::sleep(peer.options.catchup_first).await;
    for round in 0usize.. {
        if let Err(e) = catch_up_all(&peer, round).await {
            tracing::warn!("peering: catch-up round failed: {}", e.message);
        }
        tokio::time::sleep(peer.options.catchup_every).await;
    }
}

/// One round over every room with a local member joined.
async fn catch_up_all(peer: &Peer, round: usize) -> ApiResult<()> {
    let me = peer.gw.server_name();
    for room in peer.gw.rooms.all_rooms()? {
        let members = peer.gw.rooms.members(&room)?;
        let here = members
            .iter()
            .any(|(u, m)| u.server_name() == me && m.membership == "join");
        let servers: Vec<_> = peer.gw.rooms.member_servers(&room)?.into_iter().collect();
        if !here || servers.is_empty() {
            continue;
        }
        // One gateway per room and round, a different one each round.
        let from = &servers[round % servers.len()];
        if let Err(e) = catch_up(peer, from, &room).await {
            tracing::info!(peer = %from, room = %room, "peering: catch-up failed: {}", e.message);
        }
    }
    Ok(())
}

/// Asks `from` for its extremities of `room` and fills what this gateway lacks.
pub async fn catch_up(peer: &Peer, from: &ServerName, room: &RoomId) -> ApiResult<Filled> {
    let none = Filled {
        fetched: 0,
        complete: true,
    };
    let pdus = match peer
        .ask(
            from,
            Body::RoomHeads {
                room_id: room.to_owned(),
            },
        )
        .await
    {
        Ok(Body::Heads { pdus }) if pdus.len() <= MAX_LATEST * 5 => pdus,
        Ok(_) => {
            peer.stats.dropped("bad_answer");
            return Ok(none);
        }
        Err(e) => {
            tracing::debug!(peer = %from, room = %room, "peering: heads not fetched: {e}");
            return Ok(none);
        }
    };
    let unknown: Vec<IncomingPdu> = verify_all(peer, from, room, pdus)
        .into_iter()
        .filter(|e| !matches!(peer.gw.rooms.get_pdu(&e.event_id), Ok(Some(_))))
        .collect();
    if unknown.is_empty() {
        return Ok(none);
    }
    tracing::info!(peer = %from, room = %room, heads = unknown.len(), "peering: catching up");
    let mut filled = fill(peer, from, room, unknown.clone()).await?;
    filled.fetched += unknown.len();
    Ok(filled)
}
