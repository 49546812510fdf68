//! Purging a room: removing everything this gateway stores about it (the second half of
//! Synapse's room deletion; the first, kicking the members, is in `service::admin::shutdown`).
//!
//! What goes, by how each table is keyed:
//! - keyed by room first (`room 0xff …` or the room id alone): `timeline`, `room_state`,
//!   `room_members`, `membership_history`, `visibility_history`, `room_backfill`,
//!   `room_backfill_index`, `thread_activity`, `search_terms`, `receipts` (receipts and
//!   `m.fully_read` markers), `room_heads`, `rooms`, `room_directory`, `room_backfill_meta`;
//! - keyed by user, then room: `user_rooms`, `remote_invites`, `account_data` (per-room
//!   account data and tags), and `account_data_changes` entries that name the room;
//! - keyed by event: the room's events in `pdus` (found by their `room_id`, so outliers,
//!   rejected and backfilled events go too), `relations` of those events, and `txn_ids`,
//!   `outgoing_pdus` and `event_feed` entries naming them; the `state_groups` its events and
//!   head point at (with their parents);
//! - by value: `room_aliases` pointing at the room and their `room_alias_creators`;
//! - peering's group keys of the room: this gateway's epoch in `gk_outbound` and other
//!   gateways' sessions in `gk_inbound` (messages held for a key, `gk_pending`, name no room
//!   and expire by themselves).
//!
//! Memory: parsed events and unread counts of the room are dropped. Sliding-sync connections
//! forget the room when their lists next omit it. The block list (`blocked_rooms`) and
//! deletion statuses are kept on purpose.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use ruma::RoomId;
use serde::Deserialize;
use storage::{u64_be, Batch, RawTable};

use crate::{error::ApiResult, service::Gateway};

/// Most removals applied in one batch.
const BATCH_OPS: usize = 2_000;

/// What a purge removed: entries per table.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PurgeReport {
    /// Table name → entries removed (tables with none are left out).
    pub removed: BTreeMap<&'static str, u64>,
}

impl PurgeReport {
    /// Entries removed in all tables.
    pub fn total(&self) -> u64 {
        self.removed.values().sum()
    }
}

/// Removals queued table by table, applied in bounded batches.
struct Sweep<'a> {
    gw: &'a Gateway,
    batch: Batch,
    report: PurgeReport,
}

impl Sweep<'_> {
    fn remove(&mut self, table: &RawTable, key: &[u8]) -> ApiResult<()> {
        table.delete(&mut self.batch, key);
        *self.report.removed.entry(table.name()).or_default() += 1;
        if self.batch.len() >= BATCH_OPS {
            self.gw.db.apply(std::mem::take(&mut self.batch))?;
        }
        Ok(())
    }

    /// Every entry of `table` whose key is `room` or starts with `room 0xff`.
    fn room_keyed(&mut self, table: &RawTable, room: &RoomId) -> ApiResult<()> {
        if table.get(&self.gw.db, room.as_bytes())?.is_some() {
            self.remove(table, room.as_bytes())?;
        }
        let prefix = sep(room.as_bytes());
        for (k, _) in table.scan_prefix(&self.gw.db, &prefix)? {
            self.remove(table, &k)?;
        }
        Ok(())
    }

    /// Every entry of `table` whose key's second part (after the first `0xff`) is `room`.
    fn second_part(&mut self, table: &RawTable, room: &RoomId) -> ApiResult<()> {
        for (k, _) in table.scan_prefix(&self.gw.db, b"")? {
            let mut parts = k.split(|b| *b == 0xff);
            parts.next();
            if parts.next() == Some(room.as_bytes()) {
                self.remove(table, &k)?;
            }
        }
        Ok(())
    }

    /// Every entry of `table` whose raw value is one of `events`.
    fn value_in(&mut self, table: &RawTable, events: &HashSet<Vec<u8>>) -> ApiResult<()> {
        for (k, v) in table.scan_prefix(&self.gw.db, b"")? {
            if events.contains(&v) {
                self.remove(table, &k)?;
            }
        }
        Ok(())
    }

    async fn finish(self) -> ApiResult<PurgeReport> {
        if !self.batch.is_empty() {
            self.gw.db.apply(self.batch)?;
        }
        self.gw.db.flush().await?;
        Ok(self.report)
    }
}

fn sep(part: &[u8]) -> Vec<u8> {
    let mut p = part.to_vec();
    p.push(0xff);
    p
}

/// The room of a stored event (or of a group-key session).
#[derive(Deserialize)]
struct EventRoom {
    room_id: String,
}

/// Removes everything this gateway stores about `room` (see the module docs) and reports the
/// entries removed per table. Local members should have left first: their clients see the
/// room vanish otherwise. Purging a room that is not stored removes nothing.
pub async fn purge(gw: &Gateway, room: &RoomId) -> ApiResult<PurgeReport> {
    let rooms = &gw.rooms;
    let t = &rooms.t;
    let db = &gw.db;

    // The room's events, with the state groups they point at.
    let mut events: HashSet<Vec<u8>> = HashSet::new();
    let mut groups: BTreeSet<u64> = BTreeSet::new();
    for (id, stored) in t.pdus.scan_prefix(db, b"")? {
        let in_room = serde_json::from_str::<EventRoom>(stored.json.get())
            .is_ok_and(|e| e.room_id == room.as_str());
        if in_room {
            groups.extend(stored.state_before);
            groups.extend(stored.state_after);
            events.insert(id);
        }
    }
    if let Some(heads) = t.heads.get(db, room.as_bytes())? {
        groups.extend(heads.state_group);
    }
    let groups_table = rooms.groups.table();
    let mut pending: Vec<u64> = groups.iter().copied().collect();
    while let Some(id) = pending.pop() {
        if let Some(parent) = groups_table.get(db, &u64_be(id))?.and_then(|g| g.parent) {
            if groups.insert(parent) {
                pending.push(parent);
            }
        }
    }
    let aliases = rooms.aliases_of(room)?;

    let mut sweep = Sweep {
        gw,
        batch: Batch::new(),
        report: PurgeReport::default(),
    };
    for table in [
        &t.timeline,
        t.state.raw(),
        t.members.raw(),
        t.membership_history.raw(),
        t.visibility_history.raw(),
        t.backfill.raw(),
        &t.backfill_index,
        t.heads.raw(),
        t.meta.raw(),
        t.directory.raw(),
        t.backfill_meta.raw(),
        &RawTable::new("thread_activity"),
        &RawTable::new("search_terms"),
        &RawTable::new("receipts"),
        // Peering's outbound group-key epoch of the room (named here: service/ does not
        // import peering/).
        &RawTable::new("gk_outbound"),
    ] {
        sweep.room_keyed(table, room)?;
    }
    // Peering's inbound group-key sessions of the room, from other gateways.
    let inbound = RawTable::new("gk_inbound");
    for (k, v) in inbound.scan_prefix(db, b"")? {
        if serde_json::from_slice::<EventRoom>(&v).is_ok_and(|e| e.room_id == room.as_str()) {
            sweep.remove(&inbound, &k)?;
        }
    }
    for table in [
        t.user_rooms.raw(),
        t.remote_invites.raw(),
        &RawTable::new("account_data"),
    ] {
        sweep.second_part(table, room)?;
    }
    let changes = RawTable::new("account_data_changes");
    for (k, v) in changes.scan_prefix(db, b"")? {
        #[derive(Deserialize)]
        struct Change {
            room: Option<String>,
        }
        let names_room = serde_json::from_slice::<Change>(&v)
            .is_ok_and(|c| c.room.as_deref() == Some(room.as_str()));
        if names_room {
            sweep.remove(&changes, &k)?;
        }
    }
    for table in [&t.txns, &t.outgoing, &RawTable::new("event_feed")] {
        sweep.value_in(table, &events)?;
    }
    let relations = RawTable::new("relations");
    for (k, v) in relations.scan_prefix(db, b"")? {
        #[derive(Deserialize)]
        struct Child {
            event_id: String,
        }
        let parent = k.split(|b| *b == 0xff).next().unwrap_or_default();
        let child_in_room = serde_json::from_slice::<Child>(&v)
            .is_ok_and(|c| events.contains(c.event_id.as_bytes()));
        if events.contains(parent) || child_in_room {
            sweep.remove(&relations, &k)?;
        }
    }
    let creators = RawTable::new("room_alias_creators");
    for alias in &aliases {
        sweep.remove(t.aliases.raw(), alias.as_bytes())?;
        if creators.get(db, alias.as_bytes())?.is_some() {
            sweep.remove(&creators, alias.as_bytes())?;
        }
    }
    for id in &groups {
        if groups_table.get(db, &u64_be(*id))?.is_some() {
            sweep.remove(groups_table.raw(), &u64_be(*id))?;
        }
    }
    for id in &events {
        sweep.remove(t.pdus.raw(), id)?;
    }
    let report = sweep.finish().await?;

    for id in &events {
        if let Ok(id) = ruma::EventId::parse(String::from_utf8_lossy(id).as_ref()) {
            rooms.evict(&id);
        }
    }
    gw.unread.forget_room(room);
    tracing::info!(room = %room, removed = report.total(), "room purged");
    Ok(report)
}
