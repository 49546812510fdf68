//! The search index: `(room, term, pos) → event id` for every word of a message body, room
//! name or topic, written with the event. Encrypted events have no searchable text (their
//! clients search them).

use std::collections::BTreeSet;

use ruma::{OwnedEventId, RoomId};
use serde_json::Value;
use storage::{key, u64_be, u64_from_be, Batch, Db, RawTable};

use crate::{error::ApiResult, service::rooms::Pdu};

/// Longest indexed word, in bytes (longer words are not indexed).
pub const MAX_TERM_BYTES: usize = 64;
/// Most distinct words indexed per event.
pub const MAX_TERMS_PER_EVENT: usize = 1024;

fn table() -> RawTable {
    RawTable::new("search_terms")
}

/// The searchable fields: `content.body` of messages, `content.name` and `content.topic` of
/// room names and topics, as `(key, text)`.
pub fn searchable_text(pdu: &Pdu) -> Vec<(&'static str, String)> {
    let field = match pdu.kind.to_string().as_str() {
        "m.room.message" => ("content.body", "body"),
        "m.room.name" => ("content.name", "name"),
        "m.room.topic" => ("content.topic", "topic"),
        _ => return Vec::new(),
    };
    match pdu.content_value().get(field.1).and_then(Value::as_str) {
        Some(text) if !text.is_empty() => vec![(field.0, text.to_owned())],
        _ => Vec::new(),
    }
}

/// Lower-case words (runs of letters and digits) of `text`, in order, repeats included.
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty() && w.len() <= MAX_TERM_BYTES)
        .map(str::to_lowercase)
}

/// Indexes the searchable words of `pdu` (accepted at `pos`) into `batch`.
pub fn record(batch: &mut Batch, pdu: &Pdu, pos: u64) {
    let mut terms = BTreeSet::new();
    for (_, text) in searchable_text(pdu) {
        for w in words(&text) {
            if terms.len() >= MAX_TERMS_PER_EVENT {
                break;
            }
            terms.insert(w);
        }
    }
    let t = table();
    for term in terms {
        t.put(
            batch,
            &key(&[pdu.room_id.as_bytes(), term.as_bytes(), &u64_be(pos)]),
            pdu.event_id.as_bytes().to_vec(),
        );
    }
}

/// Events of `room` holding the word `term` (`exact`) or a word starting with it:
/// `(pos, event id)`.
pub fn lookup(
    db: &Db,
    room: &RoomId,
    term: &str,
    exact: bool,
) -> ApiResult<Vec<(u64, OwnedEventId)>> {
    let mut p = room.as_bytes().to_vec();
    p.push(0xff);
    p.extend_from_slice(term.as_bytes());
    if exact {
        p.push(0xff);
    }
    Ok(table()
        .scan_prefix(db, &p)?
        .into_iter()
        .filter_map(|(k, v)| {
            let pos = u64_from_be(&k)?;
            let id = ruma::EventId::parse(String::from_utf8(v).ok()?).ok()?;
            Some((pos, id))
        })
        .collect())
}
