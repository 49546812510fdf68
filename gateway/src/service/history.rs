//! Reading a room's history past the start of its timeline on this gateway: the events
//! fetched from other gateways (`rooms::backfill`), read in pages, newest first, fetched on
//! demand through the `Remote` port when the stored ones run out.

use ruma::{RoomId, UserId};

use super::{
    rooms::{backfill::BackfillEntry, Pdu, StoredPdu},
    Gateway,
};
use crate::error::ApiResult;

/// Remote fetches one page may trigger.
const MAX_FETCHES: usize = 3;

/// One page of fetched history.
pub struct HistoryPage {
    /// Events the viewer may see, in the order paged.
    pub events: Vec<(Pdu, StoredPdu)>,
    /// Sequence number of the last entry read (where the next page starts).
    pub next: u64,
    /// Whether the page reached the end in its direction: nothing older exists or can be
    /// fetched now (backwards), or the timeline's start (forwards).
    pub at_end: bool,
}

/// Up to `limit` events of `room`'s fetched history after sequence number `after` (0: from
/// the start of the timeline) that `viewer` may see.
pub async fn older(
    gw: &Gateway,
    room: &RoomId,
    viewer: &UserId,
    after: u64,
    limit: usize,
) -> ApiResult<HistoryPage> {
    let mut events = Vec::new();
    let mut cursor = after;
    let mut fetches = 0;
    loop {
        let page = gw.rooms.backfill_page(room, cursor, false, limit * 2)?;
        if page.is_empty() {
            let more = !gw.rooms.backfill_frontier(room)?.is_empty();
            if more && fetches < MAX_FETCHES {
                fetches += 1;
                match gw.remote.backfill(room).await {
                    Ok(n) if n > 0 => continue,
                    Ok(_) => {}
                    Err(e) => tracing::debug!(room = %room, "history not fetched: {}", e.message),
                }
            }
            // Nothing more now: the page ends here. With events, the client may page on and
            // the fetch is tried again; an empty page ends its paging.
            let at_end = !more || events.is_empty();
            return Ok(HistoryPage {
                events,
                next: cursor,
                at_end,
            });
        }
        if take_readable(gw, page, viewer, limit, &mut events, &mut cursor)? {
            return Ok(HistoryPage {
                events,
                next: cursor,
                at_end: false,
            });
        }
    }
}

/// Up to `limit` events of fetched history before sequence number `before` (towards the
/// timeline's start), oldest first, that `viewer` may see.
pub fn newer(
    gw: &Gateway,
    room: &RoomId,
    viewer: &UserId,
    before: u64,
    limit: usize,
) -> ApiResult<HistoryPage> {
    let mut events = Vec::new();
    let mut cursor = before;
    loop {
        let page = gw.rooms.backfill_page(room, cursor, true, limit * 2)?;
        if page.is_empty() {
            return Ok(HistoryPage {
                events,
                next: cursor,
                at_end: true,
            });
        }
        if take_readable(gw, page, viewer, limit, &mut events, &mut cursor)? {
            return Ok(HistoryPage {
                events,
                next: cursor,
                at_end: cursor <= 1,
            });
        }
    }
}

/// Appends the entries of `page` that `viewer` may see to `events`, moving `cursor` along,
/// until `events` holds `limit`; returns whether it does.
fn take_readable(
    gw: &Gateway,
    page: Vec<(u64, BackfillEntry)>,
    viewer: &UserId,
    limit: usize,
    events: &mut Vec<(Pdu, StoredPdu)>,
    cursor: &mut u64,
) -> ApiResult<bool> {
    for (seq, entry) in page {
        *cursor = seq;
        if !entry.readers.iter().any(|u| u == viewer) {
            continue;
        }
        if let Some(found) = gw.rooms.get_pdu(&entry.event_id)? {
            events.push(found);
        }
        if events.len() == limit {
            return Ok(true);
        }
    }
    Ok(false)
}
