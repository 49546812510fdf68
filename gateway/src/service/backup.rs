//! Server-side key backup (`/room_keys`): versions with their algorithm, and the encrypted
//! room keys of each version.
//!
//! A user's versions are numbered 1, 2, … and never reused; the current one is the newest not
//! deleted. Keys may only be uploaded to the current version (else `M_WRONG_ROOM_KEYS_VERSION`).
//! Each version keeps a key count and an etag that changes whenever its keys change. When a
//! key for a session is uploaded again, the better one is kept (verified, then lower first
//! message index, then fewer forwards), as the spec says.

use std::collections::BTreeMap;

use http::StatusCode;
use ruma::UserId;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use storage::{key, u64_be, u64_from_be, Batch, Db, Table};
use tokio::sync::Mutex;

use crate::error::{ApiError, ApiResult};

/// Room keys of a backup: room → session → key data.
pub type RoomKeys = BTreeMap<String, BTreeMap<String, Value>>;

/// A stored backup version.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct VersionRecord {
    /// `{"algorithm": …, "auth_data": …}` as the client sent it.
    algorithm: Value,
    /// Keys stored under this version.
    count: u64,
    /// Bumped whenever keys change.
    etag: u64,
}

/// What `GET /room_keys/version[/{version}]` reports.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupInfo {
    /// The version.
    pub version: String,
    /// `{"algorithm": …, "auth_data": …}`.
    pub algorithm: Value,
    /// Number of keys stored.
    pub count: u64,
    /// Changes whenever keys change.
    pub etag: String,
}

/// Count and etag after a change to a version's keys.
#[derive(Debug, Clone, PartialEq)]
pub struct KeysChanged {
    /// The new etag.
    pub etag: String,
    /// Keys now stored.
    pub count: u64,
}

/// The backup store. Reachable as `gw.backup`.
pub struct Backup {
    db: Db,
    /// `(user, version)` → version record.
    versions: Table<VersionRecord>,
    /// `user` → last version number handed out.
    last_version: Table<u64>,
    /// `(user, version, room, session)` → key data.
    keys: Table<Value>,
    lock: Mutex<()>,
}

/// The version number of a version string; unknown strings name no version.
fn parse_version(version: &str) -> ApiResult<u64> {
    version
        .parse::<u64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| ApiError::not_found("Unknown backup version"))
}

fn prefix_of(parts: &[&[u8]]) -> Vec<u8> {
    let mut p = key(parts);
    p.push(0xff);
    p
}

/// Whether the uploaded key data `new` should replace the stored `old`.
fn is_better(new: &Value, old: &Value) -> bool {
    let verified = |v: &Value| {
        v.get("is_verified")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    let num = |v: &Value, f: &str| v.get(f).and_then(Value::as_u64).unwrap_or(u64::MAX);
    if verified(new) != verified(old) {
        return verified(new);
    }
    let (nf, of) = (
        num(new, "first_message_index"),
        num(old, "first_message_index"),
    );
    if nf != of {
        return nf < of;
    }
    num(new, "forwarded_count") < num(old, "forwarded_count")
}

/// 403 `M_WRONG_ROOM_KEYS_VERSION` naming the current version.
fn wrong_version(current: u64) -> ApiError {
    let mut e = ApiError::new(
        StatusCode::FORBIDDEN,
        "M_WRONG_ROOM_KEYS_VERSION",
        "Wrong backup version",
    );
    e.extra = Some(json!({ "current_version": current.to_string() }));
    e
}

/// Checks an uploaded `{"algorithm", "auth_data"}` body.
fn check_algorithm(body: &Value) -> ApiResult<Value> {
    let algorithm = body.get("algorithm").and_then(Value::as_str);
    let auth_data = body.get("auth_data").filter(|a| a.is_object());
    match (algorithm, auth_data) {
        (Some(alg), Some(auth)) => Ok(json!({ "algorithm": alg, "auth_data": auth })),
        _ => Err(ApiError::bad_json(
            "A backup needs an algorithm and an auth_data object",
        )),
    }
}

impl Backup {
    /// Opens the backup tables.
    pub fn new(db: Db) -> Self {
        Self {
            db,
            versions: Table::new("backup_versions"),
            last_version: Table::new("backup_last_version"),
            keys: Table::new("backup_keys"),
            lock: Mutex::new(()),
        }
    }

    fn record(&self, user: &UserId, version: u64) -> ApiResult<Option<VersionRecord>> {
        Ok(self
            .versions
            .get(&self.db, &key(&[user.as_bytes(), &u64_be(version)]))?)
    }

    fn existing(&self, user: &UserId, version: &str) -> ApiResult<(u64, VersionRecord)> {
        let v = parse_version(version)?;
        let record = self
            .record(user, v)?
            .ok_or_else(|| ApiError::not_found("Unknown backup version"))?;
        Ok((v, record))
    }

    /// The newest existing version number, if any.
    fn current(&self, user: &UserId) -> ApiResult<Option<u64>> {
        let prefix = prefix_of(&[user.as_bytes()]);
        Ok(self
            .versions
            .raw()
            .range(&self.db, &prefix, &[0xff; 9], true, 1)?
            .first()
            .and_then(|(k, _)| u64_from_be(k)))
    }

    async fn save(&self, batch: Batch) -> ApiResult<()> {
        self.db.apply(batch)?;
        self.db.flush().await?;
        Ok(())
    }

    /// Creates a new backup version, which becomes the current one.
    pub async fn create_version(&self, user: &UserId, body: &Value) -> ApiResult<String> {
        super::limits::check_size(
            "A backup version",
            body,
            super::limits::MAX_BACKUP_OBJECT_BYTES,
        )?;
        let algorithm = check_algorithm(body)?;
        let _guard = self.lock.lock().await;
        let v = self
            .last_version
            .get(&self.db, user.as_bytes())?
            .unwrap_or(0)
            + 1;
        let mut batch = Batch::new();
        self.last_version.put(&mut batch, user.as_bytes(), &v)?;
        self.versions.put(
            &mut batch,
            &key(&[user.as_bytes(), &u64_be(v)]),
            &VersionRecord {
                algorithm,
                count: 0,
                etag: 0,
            },
        )?;
        self.save(batch).await?;
        Ok(v.to_string())
    }

    /// The current version, or `None` when the user has no backup (answer 404 `M_NOT_FOUND`).
    pub fn latest(&self, user: &UserId) -> ApiResult<Option<BackupInfo>> {
        match self.current(user)? {
            Some(v) => self.info(user, &v.to_string()),
            None => Ok(None),
        }
    }

    /// One version, or `None` if it does not exist.
    pub fn info(&self, user: &UserId, version: &str) -> ApiResult<Option<BackupInfo>> {
        let Ok(v) = parse_version(version) else {
            return Ok(None);
        };
        Ok(self.record(user, v)?.map(|r| BackupInfo {
            version: v.to_string(),
            algorithm: r.algorithm,
            count: r.count,
            etag: r.etag.to_string(),
        }))
    }

    /// Replaces the `auth_data` of a version; the algorithm (and a `version` in the body, if
    /// given) must match.
    pub async fn update_version(
        &self,
        user: &UserId,
        version: &str,
        body: &Value,
    ) -> ApiResult<()> {
        super::limits::check_size(
            "A backup version",
            body,
            super::limits::MAX_BACKUP_OBJECT_BYTES,
        )?;
        let algorithm = check_algorithm(body)?;
        let _guard = self.lock.lock().await;
        let (v, mut record) = self.existing(user, version)?;
        if let Some(named) = body.get("version") {
            if named.as_str() != Some(version) {
                return Err(ApiError::invalid_param(
                    "The version in the body does not match the path",
                ));
            }
        }
        if record.algorithm.get("algorithm") != algorithm.get("algorithm") {
            return Err(ApiError::invalid_param(
                "The algorithm of a backup version cannot change",
            ));
        }
        record.algorithm = algorithm;
        let mut batch = Batch::new();
        self.versions
            .put(&mut batch, &key(&[user.as_bytes(), &u64_be(v)]), &record)?;
        self.save(batch).await
    }

    /// Deletes a version and all its keys.
    pub async fn delete_version(&self, user: &UserId, version: &str) -> ApiResult<()> {
        let _guard = self.lock.lock().await;
        let (v, _) = self.existing(user, version)?;
        let mut batch = Batch::new();
        self.versions
            .delete(&mut batch, &key(&[user.as_bytes(), &u64_be(v)]));
        let prefix = prefix_of(&[user.as_bytes(), &u64_be(v)]);
        for (k, _) in self.keys.raw().scan_prefix(&self.db, &prefix)? {
            self.keys.delete(&mut batch, &k);
        }
        self.save(batch).await
    }

    /// Stores uploaded keys in the current version `version`, keeping the better key where
    /// one is already stored.
    pub async fn add_keys(
        &self,
        user: &UserId,
        version: &str,
        rooms: &RoomKeys,
    ) -> ApiResult<KeysChanged> {
        let _guard = self.lock.lock().await;
        let current = self
            .current(user)?
            .ok_or_else(|| ApiError::not_found("No backup version exists"))?;
        let v = version.parse::<u64>().map_err(|_| wrong_version(current))?;
        if v != current {
            return Err(wrong_version(current));
        }
        let (_, mut record) = self.existing(user, version)?;
        let mut batch = Batch::new();
        let mut changed = false;
        for (room, sessions) in rooms {
            for (session, data) in sessions {
                if !data.is_object() {
                    return Err(ApiError::bad_json("Key data must be an object"));
                }
                super::limits::check_size(
                    "A backed-up key",
                    data,
                    super::limits::MAX_BACKUP_OBJECT_BYTES,
                )?;
                let k = key(&[
                    user.as_bytes(),
                    &u64_be(v),
                    room.as_bytes(),
                    session.as_bytes(),
                ]);
                match self.keys.get(&self.db, &k)? {
                    Some(old) if !is_better(data, &old) => continue,
                    Some(_) => {}
                    None => record.count += 1,
                }
                self.keys.put(&mut batch, &k, data)?;
                changed = true;
            }
        }
        if changed {
            record.etag += 1;
            self.versions
                .put(&mut batch, &key(&[user.as_bytes(), &u64_be(v)]), &record)?;
            self.save(batch).await?;
        }
        Ok(KeysChanged {
            etag: record.etag.to_string(),
            count: record.count,
        })
    }

    /// Stored keys of a version: all of them, one room's, or one session's.
    pub fn get_keys(
        &self,
        user: &UserId,
        version: &str,
        room: Option<&str>,
        session: Option<&str>,
    ) -> ApiResult<RoomKeys> {
        let (v, _) = self.existing(user, version)?;
        let vb = u64_be(v);
        let mut parts: Vec<&[u8]> = vec![user.as_bytes(), &vb];
        if let Some(room) = room {
            parts.push(room.as_bytes());
            if let Some(session) = session {
                parts.push(session.as_bytes());
            }
        }
        let mut out = RoomKeys::new();
        let entries = if session.is_some() {
            let k = key(&parts);
            self.keys
                .get(&self.db, &k)?
                .map(|v| vec![(k, v)])
                .unwrap_or_default()
        } else {
            self.keys.scan_prefix(&self.db, &prefix_of(&parts))?
        };
        let base = prefix_of(&[user.as_bytes(), &vb]).len();
        for (k, data) in entries {
            let rest = &k[base..];
            let mut split = rest.splitn(2, |b| *b == 0xff);
            let (Some(r), Some(s)) = (split.next(), split.next()) else {
                continue;
            };
            let (Ok(r), Ok(s)) = (std::str::from_utf8(r), std::str::from_utf8(s)) else {
                continue;
            };
            out.entry(r.to_owned())
                .or_default()
                .insert(s.to_owned(), data);
        }
        Ok(out)
    }

    /// Deletes stored keys of a version: all of them, one room's, or one session's.
    pub async fn delete_keys(
        &self,
        user: &UserId,
        version: &str,
        room: Option<&str>,
        session: Option<&str>,
    ) -> ApiResult<KeysChanged> {
        let _guard = self.lock.lock().await;
        let found = self.get_keys(user, version, room, session)?;
        let (v, mut record) = self.existing(user, version)?;
        let mut batch = Batch::new();
        let mut removed = 0u64;
        for (r, sessions) in &found {
            for s in sessions.keys() {
                self.keys.delete(
                    &mut batch,
                    &key(&[user.as_bytes(), &u64_be(v), r.as_bytes(), s.as_bytes()]),
                );
                removed += 1;
            }
        }
        if removed > 0 {
            record.count = record.count.saturating_sub(removed);
            record.etag += 1;
            self.versions
                .put(&mut batch, &key(&[user.as_bytes(), &u64_be(v)]), &record)?;
            self.save(batch).await?;
        }
        Ok(KeysChanged {
            etag: record.etag.to_string(),
            count: record.count,
        })
    }
}

#[cfg(test)]
mod tests {
    use ruma::user_id;

    use super::*;

    fn algo(pk: &str) -> Value {
        json!({"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": {"public_key": pk, "signatures": {}}})
    }

    fn data(idx: u64, fwd: u64, verified: bool) -> Value {
        json!({"first_message_index": idx, "forwarded_count": fwd, "is_verified": verified,
               "session_data": {"ephemeral": "e", "ciphertext": format!("c{idx}{fwd}{verified}"), "mac": "m"}})
    }

    fn one(room: &str, session: &str, d: Value) -> RoomKeys {
        BTreeMap::from([(room.to_owned(), BTreeMap::from([(session.to_owned(), d)]))])
    }

    #[tokio::test]
    async fn no_backup_is_none_and_versions_advance() {
        let b = Backup::new(Db::memory().expect("db"));
        let u = user_id!("@a:x");
        assert_eq!(b.latest(u).expect("latest"), None);
        assert_eq!(b.info(u, "1").expect("info"), None);
        assert_eq!(b.info(u, "junk").expect("info"), None);
        let v1 = b.create_version(u, &algo("pk1")).await.expect("create");
        let v2 = b.create_version(u, &algo("pk2")).await.expect("create");
        assert_eq!((v1.as_str(), v2.as_str()), ("1", "2"));
        let latest = b.latest(u).expect("latest").expect("some");
        assert_eq!(latest.version, "2");
        assert_eq!(latest.algorithm["auth_data"]["public_key"], "pk2");
        b.delete_version(u, "2").await.expect("delete");
        assert_eq!(b.latest(u).expect("latest").expect("some").version, "1");
        // Numbers are not reused.
        assert_eq!(b.create_version(u, &algo("pk3")).await.expect("c"), "3");
        assert_eq!(
            b.delete_version(u, "2").await.expect_err("gone").errcode,
            "M_NOT_FOUND"
        );
        assert_eq!(
            b.create_version(u, &json!({"algorithm": "x"}))
                .await
                .expect_err("no auth_data")
                .errcode,
            "M_BAD_JSON"
        );
    }

    #[tokio::test]
    async fn keys_go_only_to_the_current_version_and_better_keys_win() {
        let b = Backup::new(Db::memory().expect("db"));
        let u = user_id!("@a:x");
        let err = b
            .add_keys(u, "1", &one("!r:x", "s", data(0, 0, false)))
            .await
            .expect_err("no backup");
        assert_eq!(err.errcode, "M_NOT_FOUND");
        b.create_version(u, &algo("pk1")).await.expect("create");
        b.create_version(u, &algo("pk2")).await.expect("create");
        let err = b
            .add_keys(u, "1", &one("!r:x", "s", data(0, 0, false)))
            .await
            .expect_err("old version");
        assert_eq!(err.errcode, "M_WRONG_ROOM_KEYS_VERSION");
        assert_eq!(err.status, StatusCode::FORBIDDEN);
        assert_eq!(err.body()["current_version"], "2");

        let r1 = b
            .add_keys(u, "2", &one("!r:x", "s", data(5, 0, false)))
            .await
            .expect("add");
        assert_eq!(r1.count, 1);
        // Worse key: ignored, etag unchanged.
        let r2 = b
            .add_keys(u, "2", &one("!r:x", "s", data(9, 0, false)))
            .await
            .expect("add");
        assert_eq!(r2, r1);
        // Better index wins; verified beats unverified whatever the index.
        b.add_keys(u, "2", &one("!r:x", "s", data(2, 0, false)))
            .await
            .expect("add");
        assert_eq!(
            b.get_keys(u, "2", Some("!r:x"), Some("s")).expect("get")["!r:x"]["s"]
                ["first_message_index"],
            2
        );
        let r3 = b
            .add_keys(u, "2", &one("!r:x", "s", data(7, 0, true)))
            .await
            .expect("add");
        assert_eq!(r3.count, 1);
        assert_ne!(r3.etag, r1.etag);
        b.add_keys(u, "2", &one("!r:y", "t", data(0, 0, false)))
            .await
            .expect("add");
        assert_eq!(b.latest(u).expect("l").expect("s").count, 2);
        assert_eq!(b.get_keys(u, "2", None, None).expect("all").len(), 2);
        assert!(b
            .get_keys(u, "2", Some("!none:x"), None)
            .expect("room")
            .is_empty());
        let del = b
            .delete_keys(u, "2", Some("!r:x"), None)
            .await
            .expect("delete");
        assert_eq!(del.count, 1);
        let del = b.delete_keys(u, "2", None, None).await.expect("delete");
        assert_eq!(del.count, 0);
        assert!(b.get_keys(u, "2", None, None).expect("all").is_empty());
    }

    #[tokio::test]
    async fn update_keeps_algorithm() {
        let b = Backup::new(Db::memory().expect("db"));
        let u = user_id!("@a:x");
        b.create_version(u, &algo("pk1")).await.expect("create");
        let mut new = algo("pk1");
        new["auth_data"]["signatures"] = json!({"@a:x": {"ed25519:D": "s"}});
        new["version"] = json!("1");
        b.update_version(u, "1", &new).await.expect("update");
        assert_eq!(
            b.info(u, "1").expect("i").expect("s").algorithm["auth_data"]["signatures"]["@a:x"]
                ["ed25519:D"],
            "s"
        );
        let mut other = algo("pk1");
        other["algorithm"] = json!("m.other");
        assert_eq!(
            b.update_version(u, "1", &other)
                .await
                .expect_err("alg")
                .errcode,
            "M_INVALID_PARAM"
        );
        new["version"] = json!("2");
        assert!(b.update_version(u, "1", &new).await.is_err());
        assert_eq!(
            b.update_version(u, "5", &algo("pk"))
                .await
                .expect_err("404")
                .errcode,
            "M_NOT_FOUND"
        );
    }
}
