//! Account data (global and per room), room tags, push rules, filters and pushers.
//!
//! Account data is syncable: every write goes through [`Stream::commit`] and takes one stream
//! position. Per user, a change index `(user, pos) → (room, type)` holds exactly one entry per
//! `(room, type)`: the position of its newest write (older entries are deleted in the same
//! batch). [`AccountData::changes`] therefore returns each changed entry once, with its current
//! content. An entry changed again after `to` is left out of `(since, to]` and reported by the
//! next sync, so nothing is lost.
//!
//! Push rules live in global account data `m.push_rules` (`{"global": Ruleset}`); when the user
//! never changed them, the server defaults are served (and delivered in an initial sync).
//! Filters and pushers are not syncable and are written with plain batches.

use std::{collections::BTreeMap, sync::Arc};

use ruma::{push::Ruleset, OwnedRoomId, RoomId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use storage::{key, u64_be, u64_from_be, Batch, Db, Table};

use super::{limits, stream::Stream, users::random_string};
use crate::error::{ApiError, ApiResult};

/// The account data type holding push rules.
pub const PUSH_RULES: &str = "m.push_rules";
/// The room account data type holding room tags.
pub const TAGS: &str = "m.tag";

/// One stored account data entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    /// The content as the client gave it.
    content: Value,
    /// Stream position of the write.
    pos: u64,
}

/// What changed at a stream position.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ChangeRef {
    /// The room, for room account data.
    room: Option<OwnedRoomId>,
    /// The account data type.
    kind: String,
}

/// Account data changes of one user: global `{type, content}` events and room events by room.
pub type Changes = (Vec<Value>, BTreeMap<OwnedRoomId, Vec<Value>>);

/// The account data store.
pub struct AccountData {
    db: Db,
    stream: Arc<Stream>,
    /// user, room (empty for global), type → entry.
    data: Table<Entry>,
    /// user, pos → what changed there (newest write of each entry only).
    changes: Table<ChangeRef>,
    /// user, filter id → filter JSON as uploaded.
    filters: Table<Value>,
    /// user, app id, pushkey → pusher JSON as uploaded.
    pushers: Table<Value>,
}

fn user_prefix(user: &UserId) -> Vec<u8> {
    let mut p = user.as_bytes().to_vec();
    p.push(0xff);
    p
}

fn data_key(user: &UserId, room: Option<&RoomId>, kind: &str) -> Vec<u8> {
    key(&[
        user.as_bytes(),
        room.map(|r| r.as_bytes()).unwrap_or(b""),
        kind.as_bytes(),
    ])
}

/// The account data event clients see: `{"type", "content"}`.
fn event(kind: &str, content: Value) -> Value {
    json!({ "type": kind, "content": content })
}

impl AccountData {
    /// Opens the account data tables.
    pub fn new(db: Db, stream: Arc<Stream>) -> Self {
        Self {
            db,
            stream,
            data: Table::new("account_data"),
            changes: Table::new("account_data_changes"),
            filters: Table::new("filters"),
            pushers: Table::new("pushers"),
        }
    }

    /// The stored content of an entry (`room` `None`: global account data).
    pub fn get(
        &self,
        user: &UserId,
        room: Option<&RoomId>,
        kind: &str,
    ) -> ApiResult<Option<Value>> {
        Ok(self
            .data
            .get(&self.db, &data_key(user, room, kind))?
            .map(|e| e.content))
    }

    /// Replaces an entry's content. Returns the stream position of the write.
    pub async fn set(
        &self,
        user: &UserId,
        room: Option<&RoomId>,
        kind: &str,
        content: Value,
    ) -> ApiResult<u64> {
        self.update(user, room, kind, |_| Ok(content)).await
    }

    /// Reads, changes and writes an entry atomically with respect to other writes: `f` gets
    /// the current content (if any) and returns the new one. Returns the stream position.
    pub async fn update(
        &self,
        user: &UserId,
        room: Option<&RoomId>,
        kind: &str,
        f: impl FnOnce(Option<Value>) -> ApiResult<Value>,
    ) -> ApiResult<u64> {
        if !kind_is_valid(kind) {
            return Err(ApiError::invalid_param("Invalid account data type"));
        }
        let dkey = data_key(user, room, kind);
        let ((), pos) = self
            .stream
            .commit(|positions, batch| {
                let old = self.data.get(&self.db, &dkey)?;
                let content = f(old.as_ref().map(|e| e.content.clone()))?;
                if !content.is_object() {
                    return Err(ApiError::bad_json("Account data must be a JSON object"));
                }
                limits::check_size("Account data", &content, limits::MAX_ACCOUNT_DATA_BYTES)?;
                let pos = positions.next();
                if let Some(old) = old {
                    self.changes
                        .delete(batch, &key(&[user.as_bytes(), &u64_be(old.pos)]));
                }
                self.data.put(batch, &dkey, &Entry { content, pos })?;
                self.changes.put(
                    batch,
                    &key(&[user.as_bytes(), &u64_be(pos)]),
                    &ChangeRef {
                        room: room.map(ToOwned::to_owned),
                        kind: kind.to_owned(),
                    },
                )?;
                Ok(())
            })
            .await?;
        Ok(pos)
    }

    /// Account data of `user` whose newest write is at a position in `(since, to]`
    /// (`since == 0`: everything), as `{type, content}` events: global ones, and room ones by
    /// room. With `since == 0` the default push rules are included when the user has none.
    pub fn changes(&self, user: &UserId, since: u64, to: u64) -> ApiResult<Changes> {
        let mut global = Vec::new();
        let mut rooms: BTreeMap<OwnedRoomId, Vec<Value>> = BTreeMap::new();
        let Some(start) = since.checked_add(1) else {
            return Ok((global, rooms));
        };
        let prefix = user_prefix(user);
        let entries = self
            .changes
            .range(&self.db, &prefix, &u64_be(start), false, usize::MAX)?;
        let mut saw_push_rules = false;
        for (k, change) in entries {
            let Some(pos) = u64_from_be(&k) else { continue };
            if pos > to {
                break;
            }
            let Some(content) = self.get(user, change.room.as_deref(), &change.kind)? else {
                continue;
            };
            match change.room {
                Some(room) => rooms
                    .entry(room)
                    .or_default()
                    .push(event(&change.kind, content)),
                None => {
                    saw_push_rules |= change.kind == PUSH_RULES;
                    global.push(event(&change.kind, content));
                }
            }
        }
        if since == 0 && !saw_push_rules && self.get(user, None, PUSH_RULES)?.is_none() {
            global.push(event(
                PUSH_RULES,
                json!({ "global": ruleset_json(&Ruleset::server_default(user)) }),
            ));
        }
        Ok((global, rooms))
    }

    /// Room account data of `user` in `room` whose newest write is in `(since, to]`
    /// (`since == 0`: all of it), as `{type, content}` events. Cheaper than [`Self::changes`]
    /// when a caller walks rooms one by one.
    pub fn room_changes(
        &self,
        user: &UserId,
        room: &RoomId,
        since: u64,
        to: u64,
    ) -> ApiResult<Vec<Value>> {
        let mut prefix = key(&[user.as_bytes(), room.as_bytes()]);
        prefix.push(0xff);
        Ok(self
            .data
            .scan_prefix(&self.db, &prefix)?
            .into_iter()
            .filter(|(_, e)| e.pos > since && e.pos <= to)
            .filter_map(|(k, e)| {
                let kind = String::from_utf8(k[prefix.len()..].to_vec()).ok()?;
                Some(event(&kind, e.content))
            })
            .collect())
    }

    /// The user's push rules: stored ones merged with the current server defaults.
    pub fn push_rules(&self, user: &UserId) -> ApiResult<Ruleset> {
        Ok(stored_ruleset(user, self.get(user, None, PUSH_RULES)?))
    }

    /// Changes the user's push rules with `f` and stores the result as `m.push_rules`.
    pub async fn update_push_rules<T>(
        &self,
        user: &UserId,
        f: impl FnOnce(&mut Ruleset) -> ApiResult<T>,
    ) -> ApiResult<T> {
        let mut out = None;
        self.update(user, None, PUSH_RULES, |old| {
            let mut rules = stored_ruleset(user, old);
            out = Some(f(&mut rules)?);
            Ok(json!({ "global": ruleset_json(&rules) }))
        })
        .await?;
        out.ok_or_else(|| ApiError::internal("push rule update did not run"))
    }

    /// Stores a filter exactly as given and returns its new id.
    pub async fn create_filter(&self, user: &UserId, filter: &Value) -> ApiResult<String> {
        limits::check_size("A filter", filter, limits::MAX_FILTER_BYTES)?;
        let id = random_string(12);
        let mut b = Batch::new();
        self.filters
            .put(&mut b, &key(&[user.as_bytes(), id.as_bytes()]), filter)?;
        self.db.apply(b)?;
        self.db.flush().await?;
        Ok(id)
    }

    /// A filter the user uploaded, as uploaded.
    pub fn filter(&self, user: &UserId, filter_id: &str) -> ApiResult<Option<Value>> {
        Ok(self
            .filters
            .get(&self.db, &key(&[user.as_bytes(), filter_id.as_bytes()]))?)
    }

    /// Stores (or replaces) a pusher of `user`.
    pub async fn set_pusher(
        &self,
        user: &UserId,
        app_id: &str,
        pushkey: &str,
        pusher: &Value,
    ) -> ApiResult<()> {
        limits::check_size("A pusher", pusher, limits::MAX_PUSHER_BYTES)?;
        let mut b = Batch::new();
        self.pushers.put(
            &mut b,
            &key(&[user.as_bytes(), app_id.as_bytes(), pushkey.as_bytes()]),
            pusher,
        )?;
        self.db.apply(b)?;
        self.db.flush().await?;
        Ok(())
    }

    /// Removes a pusher of `user` (no error if there is none).
    pub async fn delete_pusher(&self, user: &UserId, app_id: &str, pushkey: &str) -> ApiResult<()> {
        let mut b = Batch::new();
        self.pushers.delete(
            &mut b,
            &key(&[user.as_bytes(), app_id.as_bytes(), pushkey.as_bytes()]),
        );
        self.db.apply(b)?;
        self.db.flush().await?;
        Ok(())
    }

    /// Every pusher of `user`.
    pub fn pushers(&self, user: &UserId) -> ApiResult<Vec<Value>> {
        Ok(self
            .pushers
            .scan_prefix(&self.db, &user_prefix(user))?
            .into_iter()
            .map(|(_, v)| v)
            .collect())
    }
}

/// The client form of a ruleset: ruma leaves out empty kinds, but clients (and Synapse) expect
/// all five arrays.
pub fn ruleset_json(rules: &Ruleset) -> Value {
    let mut value = serde_json::to_value(rules).unwrap_or_else(|_| json!({}));
    if let Some(map) = value.as_object_mut() {
        for kind in ["override", "content", "room", "sender", "underride"] {
            map.entry(kind).or_insert_with(|| json!([]));
        }
    }
    value
}

/// Account data types are non-empty, bounded and printable.
fn kind_is_valid(kind: &str) -> bool {
    !kind.is_empty() && kind.len() <= 255 && !kind.chars().any(char::is_control)
}

/// Parses stored `m.push_rules` content, falling back to the defaults, and merges in the
/// current server-default rules (keeping the user's enabled/actions changes).
fn stored_ruleset(user: &UserId, content: Option<Value>) -> Ruleset {
    let defaults = Ruleset::server_default(user);
    let stored = content
        .and_then(|c| c.get("global").cloned())
        .and_then(|g| match serde_json::from_value::<Ruleset>(g) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(user = %user, error = %e, "stored push rules unreadable; using defaults");
                None
            }
        });
    match stored {
        Some(mut rules) => {
            rules.update_with_server_default(defaults);
            rules
        }
        None => defaults,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruma::{room_id, user_id};

    fn store() -> AccountData {
        let db = Db::memory().expect("db");
        let stream = Arc::new(Stream::open(db.clone()).expect("stream"));
        AccountData::new(db, stream)
    }

    #[tokio::test]
    async fn changes_report_each_entry_once_with_current_content() {
        let ad = store();
        let alice = user_id!("@alice:example.org");
        let room = room_id!("!r:example.org");
        let p0 = ad
            .set(alice, None, "x.first", json!({}))
            .await
            .expect("set");
        let p1 = ad
            .set(alice, None, "m.direct", json!({"a": 1}))
            .await
            .expect("set");
        let p2 = ad
            .set(alice, Some(room), "m.tag", json!({"tags": {}}))
            .await
            .expect("set");
        let p3 = ad
            .set(alice, None, "m.direct", json!({"a": 2}))
            .await
            .expect("set");
        assert!(p0 < p1 && p1 < p2 && p2 < p3);

        let (global, rooms) = ad.changes(alice, 0, p3).expect("changes");
        // x.first, m.direct once (newest), plus default push rules.
        assert_eq!(global.len(), 3);
        assert_eq!(global[0], json!({"type": "x.first", "content": {}}));
        assert_eq!(global[1], json!({"type": "m.direct", "content": {"a": 2}}));
        assert_eq!(global[2]["type"], PUSH_RULES);
        assert!(global[2]["content"]["global"]["content"].is_array());
        assert_eq!(
            rooms[room],
            vec![json!({"type": "m.tag", "content": {"tags": {}}})]
        );

        // Incremental: only what changed after p2.
        let (global, rooms) = ad.changes(alice, p2, p3).expect("changes");
        assert_eq!(
            global,
            vec![json!({"type": "m.direct", "content": {"a": 2}})]
        );
        assert!(rooms.is_empty());

        // Window that ends before the rewrite: m.direct moved past it, so it is not repeated.
        let (global, rooms) = ad.changes(alice, p0, p2).expect("changes");
        assert!(global.is_empty());
        assert_eq!(rooms.len(), 1);

        // Per room.
        assert_eq!(ad.room_changes(alice, room, 0, p3).expect("room").len(), 1);
        assert!(ad
            .room_changes(alice, room, p2, p3)
            .expect("room")
            .is_empty());
        assert!(ad
            .room_changes(alice, room_id!("!other:example.org"), 0, p3)
            .expect("room")
            .is_empty());

        // Other users see nothing of alice's data.
        let (global, rooms) = ad
            .changes(user_id!("@bob:example.org"), p1, p3)
            .expect("changes");
        assert!(global.is_empty() && rooms.is_empty());
    }

    #[tokio::test]
    async fn push_rules_default_then_stored() {
        let ad = store();
        let alice = user_id!("@alice:example.org");
        let rules = ad.push_rules(alice).expect("rules");
        assert!(rules
            .get(ruma::push::RuleKind::Override, ".m.rule.master")
            .is_some());
        ad.update_push_rules(alice, |r| {
            r.set_enabled(ruma::push::RuleKind::Override, ".m.rule.master", true)
                .map_err(|_| ApiError::not_found("no rule"))
        })
        .await
        .expect("update");
        let rules = ad.push_rules(alice).expect("rules");
        let master = rules
            .get(ruma::push::RuleKind::Override, ".m.rule.master")
            .expect("master");
        assert!(master.enabled());
        // Stored now, so an initial sync carries the stored rules once.
        let (global, _) = ad.changes(alice, 0, u64::MAX).expect("changes");
        assert_eq!(global.iter().filter(|e| e["type"] == PUSH_RULES).count(), 1);
    }

    #[tokio::test]
    async fn filters_and_pushers_round_trip() {
        let ad = store();
        let alice = user_id!("@alice:example.org");
        let f = json!({"room": {"timeline": {"limit": 10}}});
        let id = ad.create_filter(alice, &f).await.expect("filter");
        assert_eq!(ad.filter(alice, &id).expect("get"), Some(f));
        assert_eq!(
            ad.filter(user_id!("@bob:example.org"), &id).expect("get"),
            None
        );
        assert_eq!(ad.filter(alice, "nope").expect("get"), None);

        ad.set_pusher(alice, "app", "key", &json!({"app_id": "app"}))
            .await
            .expect("pusher");
        assert_eq!(ad.pushers(alice).expect("list").len(), 1);
        ad.delete_pusher(alice, "app", "key").await.expect("delete");
        assert!(ad.pushers(alice).expect("list").is_empty());
    }

    #[tokio::test]
    async fn non_object_content_is_refused() {
        let ad = store();
        let err = ad
            .set(user_id!("@a:example.org"), None, "x", json!([1]))
            .await
            .expect_err("array");
        assert_eq!(err.errcode, "M_BAD_JSON");
    }
}
