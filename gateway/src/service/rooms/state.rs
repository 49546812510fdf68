//! State at each event: numbered state groups stored as deltas, and state resolution.
//!
//! Every stored PDU records the group of the room state before it and after it. Events that do
//! not change state share their parent's group, so a group is written only for a state event
//! or where forks merge. A group is a delta over a parent group; every [`SNAPSHOT_EVERY`]
//! links (or when the delta is large) a full snapshot is written, so reading a state walks a
//! short chain. Groups are immutable: they are cached once read.
//!
//! Where the DAG forks, the state before an event with several parents (and the room's current
//! state with several forward extremities) is ruma's state resolution v2 over the parents'
//! states.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex},
};

use ruma::{
    events::StateEventType,
    room_version_rules::RoomVersionRules,
    state_res::{self, utils::event_id_set::EventIdSet},
    EventId, OwnedEventId,
};
use serde::{Deserialize, Serialize};
use storage::{u64_be, Batch, Db, Table};

use super::Pdu;
use crate::error::{ApiError, ApiResult};

/// A room state: `(event type, state key) → event id`.
pub type StateMap = BTreeMap<(String, String), OwnedEventId>;

/// Every this many delta links a full snapshot is written.
pub const SNAPSHOT_EVERY: u32 = 16;

/// Most groups kept parsed in memory.
const CACHE_GROUPS: usize = 512;

/// One stored group: a delta over `parent`, or a snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredGroup {
    /// The group this one changes; `None` for a snapshot.
    pub parent: Option<u64>,
    /// Links to the nearest snapshot (0 for a snapshot).
    pub chain: u32,
    /// Entries this group sets (a snapshot: all of them).
    pub set: Vec<(String, String, OwnedEventId)>,
}

/// The state-group tables and cache.
pub(crate) struct StateGroups {
    groups: Table<StoredGroup>,
    counter: Table<u64>,
    cache: Mutex<HashMap<u64, (Arc<StateMap>, u32)>>,
}

const COUNTER_KEY: &[u8] = b"state_group";

impl StateGroups {
    pub fn new() -> Self {
        Self {
            groups: Table::new("state_groups"),
            counter: Table::new("state_group_counter"),
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (Arc<StateMap>, u32)>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The table of stored groups (for a purge).
    pub(crate) fn table(&self) -> &Table<StoredGroup> {
        &self.groups
    }

    /// The last group id handed out.
    pub fn last_id(&self, db: &Db) -> ApiResult<u64> {
        Ok(self.counter.get(db, COUNTER_KEY)?.unwrap_or(0))
    }

    /// Records the last group id handed out.
    pub fn put_last_id(&self, batch: &mut Batch, id: u64) -> ApiResult<()> {
        Ok(self.counter.put(batch, COUNTER_KEY, &id)?)
    }

    /// The state of group `id` and its chain length. `pending` holds groups written by the open
    /// transaction but not applied yet.
    pub fn load(
        &self,
        db: &Db,
        id: u64,
        pending: &HashMap<u64, (Arc<StateMap>, u32)>,
    ) -> ApiResult<(Arc<StateMap>, u32)> {
        if let Some(hit) = pending.get(&id) {
            return Ok(hit.clone());
        }
        if let Some(hit) = self.cache().get(&id) {
            return Ok(hit.clone());
        }
        // Walk to the snapshot, then apply the deltas forwards.
        let mut chain = Vec::new();
        let mut next = Some(id);
        let mut base: Option<Arc<StateMap>> = None;
        while let Some(gid) = next {
            if let Some((map, _)) = self.cache().get(&gid) {
                base = Some(map.clone());
                break;
            }
            let group = self
                .groups
                .get(db, &u64_be(gid))?
                .ok_or_else(|| ApiError::internal(format!("state group {gid} is missing")))?;
            next = group.parent;
            chain.push(group);
            if chain.len() > (SNAPSHOT_EVERY as usize) * 4 {
                return Err(ApiError::internal("state group chain too long"));
            }
        }
        let mut map = base.map(|m| (*m).clone()).unwrap_or_default();
        let depth = chain.first().map_or(0, |g| g.chain);
        for group in chain.into_iter().rev() {
            for (ty, sk, id) in group.set {
                map.insert((ty, sk), id);
            }
        }
        let map = Arc::new(map);
        let mut cache = self.cache();
        if cache.len() >= CACHE_GROUPS {
            cache.clear();
        }
        cache.insert(id, (map.clone(), depth));
        Ok((map, depth))
    }

    /// Writes a new group holding `state`, as a delta over `base` when that is short, and
    /// returns its parsed form for `pending`.
    pub fn write(
        &self,
        batch: &mut Batch,
        id: u64,
        base: Option<(u64, &StateMap, u32)>,
        state: StateMap,
    ) -> ApiResult<(Arc<StateMap>, u32)> {
        let delta = base.and_then(|(base_id, base_map, chain)| {
            // A delta can only add or replace entries: state never loses a key.
            if chain + 1 >= SNAPSHOT_EVERY || base_map.keys().any(|k| !state.contains_key(k)) {
                return None;
            }
            let set: Vec<_> = state
                .iter()
                .filter(|(k, v)| base_map.get(*k) != Some(*v))
                .map(|((ty, sk), id)| (ty.clone(), sk.clone(), id.clone()))
                .collect();
            (set.len() * 2 <= state.len().max(8)).then_some(StoredGroup {
                parent: Some(base_id),
                chain: chain + 1,
                set,
            })
        });
        let group = delta.unwrap_or_else(|| StoredGroup {
            parent: None,
            chain: 0,
            set: state
                .iter()
                .map(|((ty, sk), id)| (ty.clone(), sk.clone(), id.clone()))
                .collect(),
        });
        let chain = group.chain;
        self.groups.put(batch, &u64_be(id), &group)?;
        Ok((Arc::new(state), chain))
    }
}

/// Resolves several states of one room into one with state resolution v2. `fetch` reads any
/// event of the room (including ones of the open transaction).
pub fn resolve(
    rules: &RoomVersionRules,
    states: &[Arc<StateMap>],
    fetch: &dyn Fn(&EventId) -> Option<Pdu>,
) -> ApiResult<StateMap> {
    match states {
        [] => return Ok(StateMap::new()),
        [one] => return Ok((**one).clone()),
        _ => {}
    }
    if states.iter().all(|s| **s == *states[0]) {
        return Ok((*states[0]).clone());
    }
    let maps: Vec<state_res::StateMap<OwnedEventId>> = states
        .iter()
        .map(|s| {
            s.iter()
                .map(|((ty, sk), id)| ((StateEventType::from(ty.as_str()), sk.clone()), id.clone()))
                .collect()
        })
        .collect();
    let auth_chains: Vec<EventIdSet<OwnedEventId>> = states
        .iter()
        .map(|s| auth_chain(s.values(), fetch))
        .collect();
    let state_res_rules = rules
        .state_res
        .v2_rules()
        .ok_or_else(|| ApiError::internal("room version without state resolution v2"))?;
    let resolved = state_res::resolve(
        &rules.authorization,
        state_res_rules,
        &maps,
        auth_chains,
        |id| fetch(id),
        |_| None,
    )
    .map_err(|e| ApiError::internal(format!("state resolution failed: {e}")))?;
    Ok(resolved
        .into_iter()
        .map(|((ty, sk), id)| ((ty.to_string(), sk), id))
        .collect())
}

/// The full auth chain of some events (their auth events, recursively; not the events).
pub fn auth_chain<'a>(
    events: impl Iterator<Item = &'a OwnedEventId>,
    fetch: &dyn Fn(&EventId) -> Option<Pdu>,
) -> EventIdSet<OwnedEventId> {
    let mut seen = HashSet::new();
    let mut todo: Vec<OwnedEventId> = Vec::new();
    for id in events {
        if let Some(pdu) = fetch(id) {
            todo.extend(pdu.auth_events.iter().cloned());
        }
    }
    while let Some(id) = todo.pop() {
        if !seen.insert(id.clone()) {
            continue;
        }
        if let Some(pdu) = fetch(&id) {
            todo.extend(
                pdu.auth_events
                    .iter()
                    .filter(|a| !seen.contains(*a))
                    .cloned(),
            );
        }
    }
    seen.into_iter().collect()
}
