//! History older than what this gateway holds ("backfill").
//!
//! A gateway that joins a room through another holds the room from its join on; what came
//! before lives on the other gateways. Paging back past the start of its timeline, it asks
//! them for the events before the ones it holds and keeps them here:
//! - **Asking side.** Per room, the fetched events in the order they are read, newest first
//!   (`room_backfill`: room, seq → [`BackfillEntry`]; seq 1 is the event just before the
//!   timeline's start), with the local users each may be shown to, as the answering gateway
//!   computed them (it holds the memberships and history visibility at each event; the asker
//!   does not). The *frontier* is the set of events whose ancestors are still to be fetched;
//!   it is empty once the room's create event is reached. Fetched events are stored as
//!   outliers, auth-checked against their auth events (which the answer carries): they are
//!   history, never part of the room's current state or of `/sync`.
//! - **Answering side.** [`Rooms::history_before`] walks `prev_events` back from the events
//!   asked for, newest first, and [`Rooms::auth_events_for`] adds what authorises them.
//!
//! Gaps in the middle of the timeline (catch-up that hit its bound) are not backfilled.

use std::collections::{BinaryHeap, HashSet};

use ruma::{EventId, OwnedEventId, OwnedUserId, RoomId};
use serde::{Deserialize, Serialize};
use storage::{key, u64_be, u64_from_be};

use super::{
    ingest::{IncomingPdu, Ingested},
    sep_prefix,
    state::auth_chain,
    EventStatus, Pdu, Rooms, StoredPdu,
};
use crate::error::ApiResult;

/// One fetched event of history, in reading order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BackfillEntry {
    /// The event.
    pub event_id: OwnedEventId,
    /// Local users who may see it (the answering gateway's verdict under history visibility).
    pub readers: Vec<OwnedUserId>,
}

/// Where fetching history of a room stands.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct BackfillMeta {
    /// The next sequence number (one more than the oldest entry's).
    next_seq: u64,
    /// Events whose ancestors are still to be fetched (empty: nothing older exists).
    frontier: Vec<OwnedEventId>,
}

/// An event of history as it arrived from a peer, with its readers among local users.
pub struct Fetched {
    /// The verified event.
    pub pdu: IncomingPdu,
    /// Local users who may see it.
    pub readers: Vec<OwnedUserId>,
}

impl Rooms {
    fn held_in_timeline(&self, id: &EventId) -> ApiResult<bool> {
        Ok(self
            .get_pdu(id)?
            .is_some_and(|(_, s)| s.status == EventStatus::Accepted))
    }

    fn backfilled(&self, room: &RoomId, id: &EventId) -> ApiResult<bool> {
        Ok(self
            .t
            .backfill_index
            .get(&self.db, &key(&[room.as_bytes(), id.as_bytes()]))?
            .is_some())
    }

    fn backfill_meta(&self, room: &RoomId) -> ApiResult<BackfillMeta> {
        if let Some(meta) = self.t.backfill_meta.get(&self.db, room.as_bytes())? {
            return Ok(meta);
        }
        // Not asked yet: the frontier is the first timeline event's parents this gateway
        // does not hold (none in a room created here: its first event is the create event).
        let first = self.timeline(room, 0, false, 1)?;
        let mut frontier = Vec::new();
        if let Some((_, id)) = first.first() {
            if let Some((pdu, _)) = self.get_pdu(id)? {
                for prev in &pdu.prev_events {
                    if !self.held_in_timeline(prev)? {
                        frontier.push(prev.clone());
                    }
                }
            }
        }
        Ok(BackfillMeta {
            next_seq: 1,
            frontier,
        })
    }

    /// Events whose ancestors are still to be fetched; empty when the room's history is
    /// complete here.
    pub fn backfill_frontier(&self, room: &RoomId) -> ApiResult<Vec<OwnedEventId>> {
        Ok(self.backfill_meta(room)?.frontier)
    }

    /// Up to `limit` fetched events after sequence number `after` in reading order (older and
    /// older), or before it when `newer` (towards the timeline's start).
    pub fn backfill_page(
        &self,
        room: &RoomId,
        after: u64,
        newer: bool,
        limit: usize,
    ) -> ApiResult<Vec<(u64, BackfillEntry)>> {
        let prefix = sep_prefix(room.as_bytes());
        let from = if newer {
            u64_be(after).to_vec()
        } else {
            match after.checked_add(1) {
                Some(s) => u64_be(s).to_vec(),
                None => return Ok(Vec::new()),
            }
        };
        Ok(self
            .t
            .backfill
            .range(&self.db, &prefix, &from, newer, limit)?
            .into_iter()
            .filter_map(|(k, v)| Some((u64_from_be(&k)?, v)))
            .collect())
    }

    /// Stores history fetched from a peer: `auth` (events that authorise it) and `events`
    /// (newest first) as outliers, each event auth-checked against its auth events; those
    /// accepted join the room's history in reading order. Returns how many were added.
    pub async fn store_backfill(
        &self,
        room: &RoomId,
        mut auth: Vec<IncomingPdu>,
        mut events: Vec<Fetched>,
    ) -> ApiResult<usize> {
        auth.sort_by_key(|p| u64::from(p.pdu.depth));
        events.sort_by_key(|e| std::cmp::Reverse(u64::from(e.pdu.pdu.depth)));
        let (added, _) = self
            .write(room, None, |txn| {
                for a in &auth {
                    txn.ingest_outlier(a)?;
                }
                let mut meta = self.backfill_meta(room)?;
                let mut got: HashSet<OwnedEventId> = HashSet::new();
                let mut added = 0;
                for e in &events {
                    let id = &e.pdu.event_id;
                    if !got.insert(id.clone())
                        || self.held_in_timeline(id)?
                        || self.backfilled(room, id)?
                    {
                        continue;
                    }
                    match txn.ingest_outlier(&e.pdu)? {
                        Ingested::Accepted | Ingested::Duplicate => {}
                        _ => continue,
                    }
                    if txn
                        .pdu(id)?
                        .is_some_and(|(_, s)| s.status == EventStatus::Rejected)
                    {
                        continue;
                    }
                    let seq = meta.next_seq;
                    meta.next_seq += 1;
                    let entry = BackfillEntry {
                        event_id: id.clone(),
                        readers: e.readers.clone(),
                    };
                    let batch = txn.batch();
                    self.t.backfill.put(
                        batch,
                        &[sep_prefix(room.as_bytes()), u64_be(seq).to_vec()].concat(),
                        &entry,
                    )?;
                    self.t.backfill_index.put(
                        batch,
                        &key(&[room.as_bytes(), id.as_bytes()]),
                        u64_be(seq).to_vec(),
                    );
                    added += 1;
                }
                // The new frontier: parents of what arrived that are neither held nor
                // arrived, plus the old frontier's events that did not arrive.
                let mut frontier: Vec<OwnedEventId> = meta
                    .frontier
                    .iter()
                    .filter(|id| !got.contains(*id))
                    .cloned()
                    .collect();
                for e in &events {
                    for prev in &e.pdu.pdu.prev_events {
                        if !got.contains(prev)
                            && !frontier.contains(prev)
                            && !self.held_in_timeline(prev)?
                            && !self.backfilled(room, prev)?
                        {
                            frontier.push(prev.clone());
                        }
                    }
                }
                meta.frontier = frontier;
                self.t
                    .backfill_meta
                    .put(txn.batch(), room.as_bytes(), &meta)?;
                Ok(added)
            })
            .await?;
        Ok(added)
    }

    /// Accepted events of `room` from `from` (included) back along `prev_events`, at most
    /// `limit`, newest first (by depth).
    pub fn history_before(
        &self,
        room: &RoomId,
        from: &[OwnedEventId],
        limit: usize,
    ) -> ApiResult<Vec<(Pdu, StoredPdu)>> {
        let mut queue: BinaryHeap<(u64, OwnedEventId)> = BinaryHeap::new();
        let mut seen: HashSet<OwnedEventId> = HashSet::new();
        let mut out = Vec::new();
        for id in from {
            if seen.insert(id.clone()) {
                if let Some((pdu, _)) = self.get_pdu(id)? {
                    queue.push((u64::from(pdu.depth), id.clone()));
                }
            }
        }
        while let Some((_, id)) = queue.pop() {
            if out.len() >= limit {
                break;
            }
            let Some((pdu, stored)) = self.get_pdu(&id)? else {
                continue;
            };
            if pdu.room_id != room || stored.status == EventStatus::Rejected {
                continue;
            }
            for prev in &pdu.prev_events {
                if seen.insert(prev.clone()) {
                    if let Some((p, _)) = self.get_pdu(prev)? {
                        queue.push((u64::from(p.depth), prev.clone()));
                    }
                }
            }
            out.push((pdu, stored));
        }
        Ok(out)
    }

    /// The auth chain of `events`, without the events themselves.
    pub fn auth_events_for(&self, events: &[OwnedEventId]) -> ApiResult<Vec<StoredPdu>> {
        let own: HashSet<&OwnedEventId> = events.iter().collect();
        let fetch = |id: &EventId| self.get_pdu(id).ok().flatten().map(|(p, _)| p);
        let mut out = Vec::new();
        for id in auth_chain(events.iter(), &fetch).iter() {
            if own.contains(id) {
                continue;
            }
            if let Some((_, s)) = self.get_pdu(id)? {
                out.push(s);
            }
        }
        Ok(out)
    }
}
