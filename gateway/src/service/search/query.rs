//! Running a `room_events` search for a user.

use std::collections::{BTreeSet, HashMap};

use ruma::{OwnedEventId, OwnedRoomId, RoomId, UserId};
use serde_json::{json, Map, Value};

use super::index::{lookup, searchable_text, words};
use crate::{
    error::{ApiError, ApiResult},
    service::{
        filter::EventFilter,
        relations::{client_event, Viewer},
        rooms::{Pdu, StoredPdu},
        Gateway,
    },
};

/// Words shorter than this match only whole words; longer ones also match words they start.
pub const PREFIX_MIN_CHARS: usize = 3;
/// Results per page when the filter gives no limit.
pub const DEFAULT_LIMIT: usize = 10;
/// Largest page.
pub const MAX_LIMIT: usize = 100;
/// Most context events on either side.
pub const MAX_CONTEXT: usize = 20;
/// Most query words used.
pub const MAX_QUERY_TERMS: usize = 16;

/// Result order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Best match first (then newest).
    Rank,
    /// Newest first.
    Recent,
}

/// A `room_events` search.
#[derive(Debug, Clone)]
pub struct SearchQuery {
    /// The words to find (every one must match).
    pub term: String,
    /// Fields searched (`content.body`, `content.name`, `content.topic`); all when empty.
    pub keys: Vec<String>,
    /// The `filter` (rooms, senders, types, limit).
    pub filter: EventFilter,
    /// Order of the results.
    pub order: Order,
    /// Context events before and after each result, and whether senders' profiles come too.
    pub context: Option<(usize, usize, bool)>,
    /// Whether the current state of the rooms with results comes too.
    pub include_state: bool,
    /// The `next_batch` of a previous page.
    pub next_batch: Option<String>,
}

struct Hit {
    pos: u64,
    rank: f64,
    pdu: Pdu,
    stored: StoredPdu,
}

/// Where the next page starts: after a rank-ordered offset, or below a stream position.
fn parse_batch(token: Option<&str>, order: Order) -> ApiResult<Option<u64>> {
    let bad = || ApiError::invalid_param("Invalid next_batch token");
    match token {
        None => Ok(None),
        Some(t) => {
            let (tag, n) = t.split_at(t.find(|c: char| c.is_ascii_digit()).ok_or_else(bad)?);
            let n: u64 = n.parse().map_err(|_| bad())?;
            match (tag, order) {
                ("k", Order::Rank) | ("r", Order::Recent) => Ok(Some(n)),
                _ => Err(bad()),
            }
        }
    }
}

/// Runs `q` for `viewer` over the rooms they have a membership in, each event checked
/// against history visibility. Returns the `room_events` object of the response.
pub fn search(gw: &Gateway, viewer: Viewer<'_>, q: &SearchQuery) -> ApiResult<Value> {
    let user = viewer.user;
    let after = parse_batch(q.next_batch.as_deref(), q.order)?;
    let terms: Vec<String> = {
        let mut seen = BTreeSet::new();
        words(&q.term)
            .filter(|w| seen.insert(w.clone()))
            .take(MAX_QUERY_TERMS)
            .collect()
    };
    let limit = q.filter.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let mut hits: Vec<Hit> = Vec::new();
    let mut highlights = BTreeSet::new();
    if !terms.is_empty() {
        for (room, _) in gw.rooms.user_rooms(user)? {
            if !q.filter.allows_room(room.as_str()) {
                continue;
            }
            room_hits(gw, user, &room, &terms, q, &mut hits, &mut highlights)?;
        }
    }
    match q.order {
        Order::Recent => hits.sort_by_key(|h| std::cmp::Reverse(h.pos)),
        Order::Rank => hits.sort_by(|a, b| {
            b.rank
                .partial_cmp(&a.rank)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(b.pos.cmp(&a.pos))
        }),
    }
    let count = hits.len();
    let (skip, page): (usize, Vec<Hit>) = match (q.order, after) {
        (Order::Rank, Some(offset)) => {
            let skip = usize::try_from(offset).unwrap_or(usize::MAX);
            (skip, hits.into_iter().skip(skip).take(limit + 1).collect())
        }
        (Order::Recent, Some(below)) => (
            0,
            hits.into_iter()
                .filter(|h| h.pos < below)
                .take(limit + 1)
                .collect(),
        ),
        (_, None) => (0, hits.into_iter().take(limit + 1).collect()),
    };
    let more = page.len() > limit;
    let page = &page[..page.len().min(limit)];
    let mut results = Vec::with_capacity(page.len());
    let mut rooms_seen: BTreeSet<OwnedRoomId> = BTreeSet::new();
    for hit in page {
        rooms_seen.insert(hit.pdu.room_id.clone());
        let mut result = json!({
            "rank": hit.rank,
            "result": client_event(gw, viewer, &hit.pdu, &hit.stored)?,
        });
        if let Some((before, after, profile)) = q.context {
            result["context"] = context(gw, viewer, hit, before, after, profile)?;
        }
        results.push(result);
    }
    let mut body = json!({
        "count": count,
        "highlights": highlights.into_iter().collect::<Vec<_>>(),
        "results": results,
    });
    if let (true, Some(last)) = (more, page.last()) {
        body["next_batch"] = json!(match q.order {
            Order::Rank => format!("k{}", skip + limit),
            Order::Recent => format!("r{}", last.pos),
        });
    }
    if q.include_state {
        let mut state = Map::new();
        for room in rooms_seen {
            let mut events = Vec::new();
            for (_, entry) in gw.rooms.current_state(&room)? {
                if let Some((pdu, stored)) = gw.rooms.get_pdu(&entry.event_id)? {
                    events.push(pdu.to_client_event(&stored, None));
                }
            }
            state.insert(room.to_string(), Value::Array(events));
        }
        body["state"] = Value::Object(state);
    }
    Ok(body)
}

/// The matching events of one room: each query word must match a word of the event's text
/// (a whole word, or the start of one for words of [`PREFIX_MIN_CHARS`] or more).
#[allow(clippy::too_many_arguments)]
fn room_hits(
    gw: &Gateway,
    user: &UserId,
    room: &RoomId,
    terms: &[String],
    q: &SearchQuery,
    hits: &mut Vec<Hit>,
    highlights: &mut BTreeSet<String>,
) -> ApiResult<()> {
    // Candidates: events the index lists for every term.
    let mut candidates: Option<HashMap<OwnedEventId, u64>> = None;
    for term in terms {
        let found: HashMap<OwnedEventId, u64> =
            lookup(&gw.db, room, term, term.chars().count() < PREFIX_MIN_CHARS)?
                .into_iter()
                .map(|(pos, id)| (id, pos))
                .collect();
        candidates = Some(match candidates {
            None => found,
            Some(prev) => prev
                .into_iter()
                .filter(|(id, _)| found.contains_key(id))
                .collect(),
        });
        if candidates.as_ref().is_some_and(HashMap::is_empty) {
            return Ok(());
        }
    }
    for (id, pos) in candidates.unwrap_or_default() {
        let Some((pdu, stored)) = gw.rooms.get_visible_pdu(&id)? else {
            continue;
        };
        if !q
            .filter
            .allows(pdu.kind.to_string().as_str(), Some(pdu.sender.as_str()))
        {
            continue;
        }
        if !gw.rooms.can_see(room, user, pos)? {
            continue;
        }
        // Re-check against the stored text: a redaction empties it, `keys` narrows it.
        let mut event_words = Vec::new();
        for (key, text) in searchable_text(&pdu) {
            if q.keys.is_empty() || q.keys.iter().any(|k| k == key) {
                event_words.extend(words(&text));
            }
        }
        let matches = |term: &str, w: &str| {
            w == term || (term.chars().count() >= PREFIX_MIN_CHARS && w.starts_with(term))
        };
        if !terms
            .iter()
            .all(|t| event_words.iter().any(|w| matches(t, w)))
        {
            continue;
        }
        let matched = event_words
            .iter()
            .filter(|w| terms.iter().any(|t| matches(t, w)))
            .count();
        for w in &event_words {
            if terms.iter().any(|t| matches(t, w)) {
                highlights.insert(w.clone());
            }
        }
        // Matched words over the square root of the text's length: short, dense hits first.
        let rank = matched as f64 / (event_words.len().max(1) as f64).sqrt();
        hits.push(Hit {
            pos,
            rank,
            pdu,
            stored,
        });
    }
    Ok(())
}

/// `events_before`, `events_after`, `start`, `end` and `profile_info` around a result.
fn context(
    gw: &Gateway,
    viewer: Viewer<'_>,
    hit: &Hit,
    before: usize,
    after: usize,
    profile: bool,
) -> ApiResult<Value> {
    let room = &hit.pdu.room_id;
    let collect = |entries: Vec<(u64, OwnedEventId)>| -> ApiResult<(Vec<Value>, Vec<Pdu>)> {
        let mut out = Vec::new();
        let mut pdus = Vec::new();
        for (pos, id) in entries {
            if !gw.rooms.can_see(room, viewer.user, pos)? {
                continue;
            }
            if let Some((p, s)) = gw.rooms.get_visible_pdu(&id)? {
                out.push(client_event(gw, viewer, &p, &s)?);
                pdus.push(p);
            }
        }
        Ok((out, pdus))
    };
    let before_entries = gw
        .rooms
        .timeline(room, hit.pos - 1, true, before.min(MAX_CONTEXT))?;
    let after_entries = gw
        .rooms
        .timeline(room, hit.pos, false, after.min(MAX_CONTEXT))?;
    let start = before_entries.last().map_or(hit.pos - 1, |(p, _)| p - 1);
    let end = after_entries.last().map_or(hit.pos, |(p, _)| *p);
    let (events_before, pdus_before) = collect(before_entries)?;
    let (events_after, pdus_after) = collect(after_entries)?;
    let mut ctx = json!({
        "events_before": events_before,
        "events_after": events_after,
        "start": start.to_string(),
        "end": end.to_string(),
    });
    if profile {
        let mut info = Map::new();
        for pdu in pdus_before
            .iter()
            .chain(std::iter::once(&hit.pdu))
            .chain(pdus_after.iter())
        {
            if info.contains_key(pdu.sender.as_str()) {
                continue;
            }
            let member = gw
                .rooms
                .state_content(room, "m.room.member", pdu.sender.as_str())?
                .unwrap_or(Value::Null);
            let mut p = Map::new();
            for field in ["displayname", "avatar_url"] {
                if let Some(v) = member.get(field).filter(|v| v.is_string()) {
                    p.insert(field.into(), v.clone());
                }
            }
            info.insert(pdu.sender.to_string(), Value::Object(p));
        }
        ctx["profile_info"] = Value::Object(info);
    }
    Ok(ctx)
}
