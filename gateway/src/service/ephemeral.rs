//! Typing notifications (memory only) and read receipts (stored), both ordered on the stream.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use storage::{key, Db, Table};

use super::{stream::Stream, users::now_ms};
use crate::error::ApiResult;

/// The fully-read marker, stored beside receipts but sent as room account data.
const FULLY_READ: &str = "m.fully_read";

/// Longest typing timeout honoured.
const MAX_TYPING: Duration = Duration::from_secs(120);

#[derive(Default)]
struct RoomTyping {
    users: HashMap<OwnedUserId, Instant>,
    pos: u64,
}

/// A stored read receipt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Receipt {
    /// The event read up to.
    pub event_id: OwnedEventId,
    /// When (ms since epoch).
    pub ts: u64,
    /// Thread id, if a threaded receipt.
    pub thread_id: Option<String>,
    /// Stream position.
    pub pos: u64,
}

/// Typing and receipts.
pub struct Ephemeral {
    db: Db,
    stream: Arc<Stream>,
    typing: Mutex<HashMap<OwnedRoomId, RoomTyping>>,
    receipts: Table<Receipt>,
}

impl Ephemeral {
    /// Opens the receipt table.
    pub fn new(db: Db, stream: Arc<Stream>) -> Self {
        Self {
            db,
            stream,
            typing: Mutex::default(),
            receipts: Table::new("receipts"),
        }
    }

    /// Sets or clears `user`'s typing flag in `room`. When a timeout is given, the flag is
    /// cleared (and syncing clients told) once it passes.
    pub async fn set_typing(
        self: &Arc<Self>,
        room: &RoomId,
        user: &UserId,
        timeout: Option<Duration>,
    ) -> ApiResult<()> {
        let until = timeout.map(|t| Instant::now() + t.min(MAX_TYPING));
        self.update_typing(room, user, until).await?;
        if let Some(t) = timeout {
            let this = self.clone();
            let (room, user) = (room.to_owned(), user.to_owned());
            tokio::spawn(async move {
                tokio::time::sleep(t.min(MAX_TYPING)).await;
                let expired = {
                    let typing = this.typing.lock().unwrap_or_else(|e| e.into_inner());
                    typing
                        .get(&room)
                        .and_then(|r| r.users.get(&user))
                        .is_some_and(|until| *until <= Instant::now())
                };
                if expired {
                    if let Err(e) = this.update_typing(&room, &user, None).await {
                        tracing::warn!(error = %e, "typing expiry failed");
                    }
                }
            });
        }
        Ok(())
    }

    async fn update_typing(
        &self,
        room: &RoomId,
        user: &UserId,
        until: Option<Instant>,
    ) -> ApiResult<()> {
        self.stream
            .commit(|positions, _| {
                let pos = positions.next();
                let mut typing = self.typing.lock().unwrap_or_else(|e| e.into_inner());
                let entry = typing.entry(room.to_owned()).or_default();
                match until {
                    Some(t) => {
                        entry.users.insert(user.to_owned(), t);
                    }
                    None => {
                        entry.users.remove(user);
                    }
                }
                entry.pos = pos;
                Ok(())
            })
            .await?;
        Ok(())
    }

    /// The `m.typing` event for `room` if it changed after `since`.
    pub fn typing_event(&self, room: &RoomId, since: u64) -> Option<Value> {
        let typing = self.typing.lock().unwrap_or_else(|e| e.into_inner());
        let entry = typing.get(room)?;
        if entry.pos <= since {
            return None;
        }
        let now = Instant::now();
        let users: Vec<&OwnedUserId> = entry
            .users
            .iter()
            .filter(|(_, t)| **t > now)
            .map(|(u, _)| u)
            .collect();
        Some(json!({ "type": "m.typing", "content": { "user_ids": users } }))
    }

    /// Stores a receipt of `kind` (`m.read` or `m.read.private`).
    pub async fn set_receipt(
        &self,
        room: &RoomId,
        user: &UserId,
        kind: &str,
        event_id: &ruma::EventId,
        thread_id: Option<String>,
    ) -> ApiResult<()> {
        let thread_key = thread_id.clone().unwrap_or_default();
        self.stream
            .commit(|positions, batch| {
                let receipt = Receipt {
                    event_id: event_id.to_owned(),
                    ts: now_ms(),
                    thread_id,
                    pos: positions.next(),
                };
                self.receipts.put(
                    batch,
                    &key(&[
                        room.as_bytes(),
                        kind.as_bytes(),
                        user.as_bytes(),
                        thread_key.as_bytes(),
                    ]),
                    &receipt,
                )?;
                Ok(())
            })
            .await?;
        Ok(())
    }

    /// Stores the user's `m.fully_read` marker (delivered as room account data).
    pub async fn set_fully_read(
        &self,
        room: &RoomId,
        user: &UserId,
        event_id: &ruma::EventId,
    ) -> ApiResult<()> {
        self.set_receipt(room, user, FULLY_READ, event_id, None)
            .await
    }

    /// The `m.fully_read` account data event of `user` in `room` if it changed after `since`.
    pub fn fully_read_event(
        &self,
        room: &RoomId,
        user: &UserId,
        since: u64,
    ) -> ApiResult<Option<Value>> {
        let r = self.receipts.get(
            &self.db,
            &key(&[room.as_bytes(), FULLY_READ.as_bytes(), user.as_bytes(), b""]),
        )?;
        Ok(r.filter(|r| r.pos > since)
            .map(|r| json!({ "type": FULLY_READ, "content": { "event_id": r.event_id } })))
    }

    /// The user's own latest `m.read` (or private) receipt in a room.
    pub fn own_receipt(&self, room: &RoomId, user: &UserId) -> ApiResult<Option<Receipt>> {
        let mut best: Option<Receipt> = None;
        for kind in ["m.read", "m.read.private"] {
            if let Some(r) = self.receipts.get(
                &self.db,
                &key(&[room.as_bytes(), kind.as_bytes(), user.as_bytes(), b""]),
            )? {
                if best.as_ref().is_none_or(|b| b.pos < r.pos) {
                    best = Some(r);
                }
            }
        }
        Ok(best)
    }

    /// The user's own latest `m.read` (or private) receipt in a room for one thread: `main`
    /// for the main timeline, a thread root's event id for a thread.
    pub fn own_thread_receipt(
        &self,
        room: &RoomId,
        user: &UserId,
        thread: &str,
    ) -> ApiResult<Option<Receipt>> {
        let mut best: Option<Receipt> = None;
        for kind in ["m.read", "m.read.private"] {
            if let Some(r) = self.receipts.get(
                &self.db,
                &key(&[
                    room.as_bytes(),
                    kind.as_bytes(),
                    user.as_bytes(),
                    thread.as_bytes(),
                ]),
            )? {
                if best.as_ref().is_none_or(|b| b.pos < r.pos) {
                    best = Some(r);
                }
            }
        }
        Ok(best)
    }

    /// The `m.receipt` event with receipts of `room` changed after `since`, as `viewer` may
    /// see them (private receipts only their own).
    pub fn receipt_event(
        &self,
        room: &RoomId,
        since: u64,
        viewer: &UserId,
    ) -> ApiResult<Option<Value>> {
        let mut prefix = room.as_bytes().to_vec();
        prefix.push(0xff);
        let mut content: Map<String, Value> = Map::new();
        for (k, r) in self.receipts.scan_prefix(&self.db, &prefix)? {
            if r.pos <= since {
                continue;
            }
            let parts: Vec<&[u8]> = k[prefix.len()..].split(|b| *b == 0xff).collect();
            let (Some(kind), Some(user)) = (parts.first(), parts.get(1)) else {
                continue;
            };
            let (Ok(kind), Ok(user)) = (std::str::from_utf8(kind), std::str::from_utf8(user))
            else {
                continue;
            };
            if kind == FULLY_READ || (kind == "m.read.private" && user != viewer.as_str()) {
                continue;
            }
            let mut receipt = json!({ "ts": r.ts });
            if let Some(t) = &r.thread_id {
                receipt["thread_id"] = json!(t);
            }
            let by_event = content
                .entry(r.event_id.to_string())
                .or_insert_with(|| json!({}));
            by_event[kind][user] = receipt;
        }
        if content.is_empty() {
            return Ok(None);
        }
        Ok(Some(json!({ "type": "m.receipt", "content": content })))
    }
}
