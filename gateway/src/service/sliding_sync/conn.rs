//! Per-connection state of sliding sync: the sticky parameters, and for each recent `pos`
//! what the client has been sent, so a retried request (same `pos`) gets the same deltas.
//!
//! Memory only: after a restart every `pos` is unknown and clients start over, which MSC4186
//! provides for (`M_UNKNOWN_POS`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use ruma::{OwnedRoomId, OwnedUserId};

use super::request::{ListFilters, RoomConfig, SlidingRequest};

/// Snapshots kept per connection (the newest `pos` and a few before it, for retries).
const SNAPSHOTS: usize = 3;
/// Connections kept per device; the least recently used goes first.
const CONNS_PER_DEVICE: usize = 8;
/// Connections kept in all.
const CONNS_TOTAL: usize = 20_000;

/// Which connection: user, device and the client's `conn_id`.
pub type ConnKey = (OwnedUserId, String, String);

/// What was sent about one room on a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentRoom {
    /// The stream position the room was last brought up to.
    pub upto: u64,
    /// The unread counts last sent (notifications, highlights).
    pub unread: (u64, u64),
    /// The membership the room was last sent with, and its position.
    pub membership: (String, u64),
}

/// What a connection had been sent as of one `pos`.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The stream position the response stood at (0: nothing sent yet).
    pub upto: u64,
    /// Rooms sent so far.
    pub rooms: HashMap<OwnedRoomId, SentRoom>,
    /// The count last sent for each list.
    pub counts: BTreeMap<String, usize>,
}

/// One list's sticky parameters.
#[derive(Debug, Clone, Default)]
pub struct ListState {
    /// What to send about each room.
    pub config: RoomConfig,
    /// Which rooms the list holds.
    pub filters: ListFilters,
}

/// Which extensions are on (sticky).
#[derive(Debug, Clone, Copy, Default)]
pub struct Extensions {
    /// To-device messages.
    pub to_device: bool,
    /// Device lists and key counts.
    pub e2ee: bool,
    /// Account data.
    pub account_data: bool,
    /// Read receipts.
    pub receipts: bool,
    /// Typing.
    pub typing: bool,
}

/// The parameters in force for one request: sticky ones merged with the request's.
#[derive(Debug, Clone, Default)]
pub struct Params {
    /// Lists with this request's ranges.
    pub lists: BTreeMap<String, (ListState, Vec<(u64, u64)>)>,
    /// Room subscriptions.
    pub subscriptions: BTreeMap<OwnedRoomId, RoomConfig>,
    /// Extensions.
    pub extensions: Extensions,
}

#[derive(Debug, Default)]
struct Conn {
    lists: BTreeMap<String, ListState>,
    subscriptions: BTreeMap<OwnedRoomId, RoomConfig>,
    extensions: Extensions,
    snapshots: VecDeque<(String, Snapshot)>,
    counter: u64,
    last_used: u64,
}

/// The `pos` a request named is not known (expired, or from before a restart).
#[derive(Debug, Clone, Copy)]
pub struct UnknownPos;

/// All sliding sync connections of the gateway.
#[derive(Debug, Default)]
pub struct Connections {
    conns: Mutex<HashMap<ConnKey, Conn>>,
    clock: std::sync::atomic::AtomicU64,
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ConnKey, Conn>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a request: finds the snapshot of `pos` (none: a new connection, state reset),
    /// merges the request's sticky parameters, and returns the parameters in force with the
    /// snapshot to compute deltas against.
    pub fn begin(
        &self,
        key: &ConnKey,
        pos: Option<&str>,
        req: &SlidingRequest,
    ) -> Result<(Params, Snapshot), UnknownPos> {
        let tick = self
            .clock
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut conns = self.lock();
        let base = match pos {
            None => {
                conns.insert(key.clone(), Conn::default());
                Snapshot::default()
            }
            Some(p) => conns
                .get(key)
                .and_then(|c| c.snapshots.iter().find(|(q, _)| q == p))
                .map(|(_, s)| s.clone())
                .ok_or(UnknownPos)?,
        };
        let conn = conns.entry(key.clone()).or_default();
        conn.last_used = tick;
        for (name, l) in &req.lists {
            let state = conn.lists.entry(name.clone()).or_default();
            state.config = state.config.updated(&l.details);
            if let Some(f) = &l.filters {
                state.filters = f.clone();
            }
        }
        for (room, c) in &req.room_subscriptions {
            let merged = conn
                .subscriptions
                .get(room)
                .map_or_else(|| c.clone(), |old| old.updated(c));
            conn.subscriptions.insert(room.clone(), merged);
        }
        let e = &req.extensions;
        let ext = &mut conn.extensions;
        if let Some(on) = e.to_device.as_ref().and_then(|t| t.enabled) {
            ext.to_device = on;
        }
        for (flag, toggle) in [
            (&mut ext.e2ee, &e.e2ee),
            (&mut ext.account_data, &e.account_data),
            (&mut ext.receipts, &e.receipts),
            (&mut ext.typing, &e.typing),
        ] {
            if let Some(on) = toggle.as_ref().and_then(|t| t.enabled) {
                *flag = on;
            }
        }
        // Lists the request does not mention are not sent this time (ranges are not sticky).
        let lists = req
            .lists
            .iter()
            .filter_map(|(name, l)| {
                conn.lists
                    .get(name)
                    .map(|s| (name.clone(), (s.clone(), l.ranges.clone())))
            })
            .collect();
        let params = Params {
            lists,
            subscriptions: conn.subscriptions.clone(),
            extensions: conn.extensions,
        };
        Self::evict(&mut conns, key);
        Ok((params, base))
    }

    /// Records what a response sent; returns its `pos`.
    pub fn commit(&self, key: &ConnKey, snapshot: Snapshot) -> String {
        let mut conns = self.lock();
        let conn = conns.entry(key.clone()).or_default();
        conn.counter += 1;
        let pos = format!("{}_{}", snapshot.upto, conn.counter);
        conn.snapshots.push_back((pos.clone(), snapshot));
        while conn.snapshots.len() > SNAPSHOTS {
            conn.snapshots.pop_front();
        }
        pos
    }

    /// Keeps the number of connections bounded, per device and in all.
    fn evict(conns: &mut HashMap<ConnKey, Conn>, keep: &ConnKey) {
        let same_device: Vec<(ConnKey, u64)> = conns
            .iter()
            .filter(|(k, _)| k.0 == keep.0 && k.1 == keep.1)
            .map(|(k, c)| (k.clone(), c.last_used))
            .collect();
        if same_device.len() > CONNS_PER_DEVICE {
            if let Some((oldest, _)) = same_device
                .iter()
                .filter(|(k, _)| k != keep)
                .min_by_key(|(_, t)| *t)
            {
                conns.remove(oldest);
            }
        }
        if conns.len() > CONNS_TOTAL {
            let oldest = conns
                .iter()
                .filter(|(k, _)| *k != keep)
                .min_by_key(|(_, c)| c.last_used)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                conns.remove(&k);
            }
        }
    }
}
