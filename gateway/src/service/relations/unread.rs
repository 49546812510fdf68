//! Thread-aware unread counts (`unread_thread_notifications` in a sync filter).
//!
//! With the split, `unread_notifications` counts the main timeline only (events not in a
//! thread, thread roots included) and `unread_thread_notifications` maps each thread root to
//! the counts of its replies. Receipts follow the spec: an unthreaded receipt reads
//! everything up to its event; a receipt with `thread_id: "main"` reads the main timeline and
//! one with a root's id reads that thread. The user's own event in a timeline or thread means
//! everything before it there was read. Counted by the user's push rules, over the newest
//! [`SCAN`] events, as the unsplit counts are.

use std::collections::{BTreeMap, HashMap, HashSet};

use ruma::{OwnedEventId, RoomId, UserId};
use serde_json::{json, Value};

use super::index::{relation_of, THREAD};
use crate::{
    error::ApiResult,
    service::{push_eval::PushEvaluator, Gateway},
};

/// Most events scanned back.
pub const SCAN: usize = 100;

/// Unread counts split between the main timeline and threads.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitCounts {
    /// `{notification_count, highlight_count}` of the main timeline.
    pub main: Value,
    /// Thread root → `{notification_count, highlight_count}`, threads with unread events only.
    pub threads: Value,
}

fn receipt_pos(
    gw: &Gateway,
    receipt: Option<crate::service::ephemeral::Receipt>,
) -> ApiResult<u64> {
    Ok(match receipt {
        Some(r) => gw
            .rooms
            .get_pdu(&r.event_id)?
            .map(|(_, s)| s.pos)
            .unwrap_or(0),
        None => 0,
    })
}

/// The split unread counts of `user` in `room` up to stream position `upto`.
pub fn thread_counts(
    gw: &Gateway,
    room: &RoomId,
    user: &UserId,
    upto: u64,
) -> ApiResult<SplitCounts> {
    let unthreaded = receipt_pos(gw, gw.ephemeral.own_receipt(room, user)?)?;
    let main_read = unthreaded.max(receipt_pos(
        gw,
        gw.ephemeral.own_thread_receipt(room, user, "main")?,
    )?);
    let mut thread_read: HashMap<OwnedEventId, u64> = HashMap::new();
    let mut closed: HashSet<Option<OwnedEventId>> = HashSet::new();
    let mut counts: BTreeMap<Option<OwnedEventId>, (u64, u64)> = BTreeMap::new();
    let mut eval = None;
    for (pos, id) in gw.rooms.timeline(room, upto, true, SCAN)? {
        if pos <= unthreaded {
            break;
        }
        let Some((pdu, stored)) = gw.rooms.get_pdu(&id)? else {
            continue;
        };
        let thread = relation_of(&pdu)
            .filter(|r| r.rel_type == THREAD)
            .map(|r| r.event_id);
        if closed.contains(&thread) {
            continue;
        }
        let read = match &thread {
            None => main_read,
            Some(root) => match thread_read.get(root) {
                Some(p) => *p,
                None => {
                    let p = unthreaded.max(receipt_pos(
                        gw,
                        gw.ephemeral.own_thread_receipt(room, user, root.as_str())?,
                    )?);
                    thread_read.insert(root.clone(), p);
                    p
                }
            },
        };
        if pos <= read || pdu.sender == user {
            closed.insert(thread);
            continue;
        }
        if eval.is_none() {
            eval = Some(PushEvaluator::for_room(gw, user, room)?);
        }
        if let Some(eval) = &eval {
            let verdict = eval.evaluate(&stored.json);
            let entry = counts.entry(thread).or_default();
            entry.0 += u64::from(verdict.notify);
            entry.1 += u64::from(verdict.highlight);
        }
    }
    let body = |(n, h): (u64, u64)| json!({ "notification_count": n.min(99), "highlight_count": h.min(99) });
    let main = body(counts.remove(&None).unwrap_or_default());
    let threads: serde_json::Map<String, Value> = counts
        .into_iter()
        .filter(|(_, c)| c.0 > 0 || c.1 > 0)
        .filter_map(|(root, c)| Some((root?.to_string(), body(c))))
        .collect();
    Ok(SplitCounts {
        main,
        threads: Value::Object(threads),
    })
}
