//! The database handle: sled on disk, or a memory-only map.

use std::{
    collections::BTreeMap,
    ops::Bound,
    path::Path,
    sync::{Arc, RwLock},
};

use crate::{batch::Op, flusher::Flusher, migrations, Batch, Result};

/// sled's page cache budget. sled's default (1 GiB) lets a small gateway's resident memory grow
/// with its database; the hot set of a gateway (current state, recent timeline, tokens) is small.
const CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// Where the data lives.
#[derive(Clone)]
enum Backend {
    /// On disk, in one sled tree, with its group-commit flusher.
    Sled(sled::Db, Arc<Flusher>),
    /// In memory only; gone when the process exits.
    Memory(Arc<RwLock<BTreeMap<Vec<u8>, Vec<u8>>>>),
}

/// A handle on the whole keyspace. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    backend: Backend,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.backend {
            Backend::Sled(..) => "sled",
            Backend::Memory(_) => "memory",
        };
        f.debug_struct("Db").field("backend", &kind).finish()
    }
}

/// The smallest byte string greater than every string starting with `prefix`, if one exists.
fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The key bounds of a scan under `prefix` starting at `start`.
fn scan_bounds(
    prefix: &[u8],
    start: Option<&[u8]>,
    backwards: bool,
) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let prefix_end = match prefix_successor(prefix) {
        Some(end) => Bound::Excluded(end),
        None => Bound::Unbounded,
    };
    match (start, backwards) {
        (None, _) => (Bound::Included(prefix.to_vec()), prefix_end),
        (Some(s), false) => (Bound::Included(s.max(prefix).to_vec()), prefix_end),
        (Some(s), true) => (
            Bound::Included(prefix.to_vec()),
            Bound::Excluded(s.to_vec()),
        ),
    }
}

impl Db {
    /// Opens (or creates) the on-disk database in `dir` and runs pending migrations.
    pub fn open(dir: &Path) -> Result<Self> {
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(CACHE_BYTES)
            .open()?;
        let flusher = Arc::new(Flusher::start(db.clone())?);
        let db = Self {
            backend: Backend::Sled(db, flusher),
        };
        migrations::run(&db)?;
        Ok(db)
    }

    /// A fresh memory-only database (nothing is written to disk).
    pub fn memory() -> Result<Self> {
        let db = Self {
            backend: Backend::Memory(Arc::default()),
        };
        migrations::run(&db)?;
        Ok(db)
    }

    /// Whether this database keeps nothing on disk.
    pub fn is_memory(&self) -> bool {
        matches!(self.backend, Backend::Memory(_))
    }

    pub(crate) fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match &self.backend {
            Backend::Sled(db, _) => Ok(db.get(key)?.map(|v| v.to_vec())),
            Backend::Memory(map) => Ok(map
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(key)
                .cloned()),
        }
    }

    pub(crate) fn scan_raw(
        &self,
        prefix: &[u8],
        start: Option<&[u8]>,
        backwards: bool,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let bounds = scan_bounds(prefix, start, backwards);
        match &self.backend {
            Backend::Sled(db, _) => {
                let iter = db.range::<Vec<u8>, _>(bounds);
                let iter: Box<dyn Iterator<Item = _>> = if backwards {
                    Box::new(iter.rev())
                } else {
                    Box::new(iter)
                };
                let mut out = Vec::new();
                for item in iter.take(limit) {
                    let (k, v) = item?;
                    out.push((k.to_vec(), v.to_vec()));
                }
                Ok(out)
            }
            Backend::Memory(map) => {
                let map = map.read().unwrap_or_else(|e| e.into_inner());
                let iter = map.range::<Vec<u8>, _>(bounds);
                let iter: Box<dyn Iterator<Item = _>> = if backwards {
                    Box::new(iter.rev())
                } else {
                    Box::new(iter)
                };
                Ok(iter
                    .take(limit)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect())
            }
        }
    }

    /// How many keys start with `prefix` (walks them without copying values).
    pub(crate) fn count_raw(&self, prefix: &[u8]) -> Result<u64> {
        let bounds = scan_bounds(prefix, None, false);
        match &self.backend {
            Backend::Sled(db, _) => {
                let mut n = 0u64;
                for item in db.range::<Vec<u8>, _>(bounds) {
                    item?;
                    n += 1;
                }
                Ok(n)
            }
            Backend::Memory(map) => {
                let map = map.read().unwrap_or_else(|e| e.into_inner());
                Ok(map.range::<Vec<u8>, _>(bounds).count() as u64)
            }
        }
    }

    /// Every key and value of the whole keyspace, keys with their table prefix (`name 0x00`).
    /// Walks and copies everything: meant for audits and tests, not for serving requests.
    pub fn dump(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.scan_raw(b"", None, false, usize::MAX)
    }

    /// Applies every write of `batch` atomically.
    pub fn apply(&self, batch: Batch) -> Result<()> {
        match &self.backend {
            Backend::Sled(db, _) => {
                let mut sled_batch = sled::Batch::default();
                for op in batch.ops {
                    match op {
                        Op::Insert(k, v) => sled_batch.insert(k, v),
                        Op::Remove(k) => sled_batch.remove(k),
                    }
                }
                db.apply_batch(sled_batch)?;
            }
            Backend::Memory(map) => {
                let mut map = map.write().unwrap_or_else(|e| e.into_inner());
                for op in batch.ops {
                    match op {
                        Op::Insert(k, v) => {
                            map.insert(k, v);
                        }
                        Op::Remove(k) => {
                            map.remove(&k);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Makes every applied batch durable. Concurrent callers share one fsync (group commit).
    pub async fn flush(&self) -> Result<()> {
        if let Backend::Sled(_, flusher) = &self.backend {
            flusher.flush().await?;
        }
        Ok(())
    }

    /// Blocking variant of [`Db::flush`], for shutdown and command-line tools.
    pub fn flush_blocking(&self) -> Result<()> {
        if let Backend::Sled(db, _) = &self.backend {
            db.flush()?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{Error, RawTable, Table};

    /// Opens `dir` again right after its handle dropped. sled's own flusher thread lets go of
    /// the file lock a moment after the handle drops (a process restart never sees this), so
    /// a lock error is tried again for up to 5 s; any other result is returned as it is.
    pub(crate) fn reopen(dir: &std::path::Path) -> Result<Db> {
        let mut last = Db::open(dir);
        for _ in 0..250 {
            match &last {
                Err(Error::Sled(e)) if e.to_string().contains("lock") => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    last = Db::open(dir);
                }
                _ => break,
            }
        }
        last
    }

    fn both() -> Vec<(Db, tempfile::TempDir)> {
        let dir = tempfile::tempdir().expect("tempdir");
        let disk = Db::open(dir.path()).expect("open");
        let dir2 = tempfile::tempdir().expect("tempdir");
        vec![(disk, dir), (Db::memory().expect("memory"), dir2)]
    }

    #[test]
    fn put_get_delete() {
        for (db, _dir) in both() {
            let t: Table<String> = Table::new("t");
            let mut b = Batch::new();
            t.put(&mut b, b"k", &"v".to_owned()).expect("put");
            db.apply(b).expect("apply");
            assert_eq!(t.get(&db, b"k").expect("get"), Some("v".to_owned()));
            let mut b = Batch::new();
            t.delete(&mut b, b"k");
            db.apply(b).expect("apply");
            assert_eq!(t.get(&db, b"k").expect("get"), None);
        }
    }

    #[test]
    fn tables_do_not_overlap_and_ranges_work() {
        for (db, _dir) in both() {
            let a = RawTable::new("a");
            let ab = RawTable::new("ab");
            let mut b = Batch::new();
            for i in 0u64..10 {
                a.put(
                    &mut b,
                    &crate::key(&[b"room", &i.to_be_bytes()]),
                    vec![i as u8],
                );
            }
            a.put(&mut b, b"room2", vec![99]);
            ab.put(&mut b, b"x", vec![1]);
            db.apply(b).expect("apply");
            let mut prefix = b"room".to_vec();
            prefix.push(crate::keys::SEP);
            assert_eq!(a.scan_prefix(&db, &prefix).expect("scan").len(), 10);
            assert_eq!(a.scan_prefix(&db, b"").expect("scan").len(), 11);
            let back = a
                .range(&db, &prefix, &5u64.to_be_bytes(), true, 3)
                .expect("range");
            let vals: Vec<u8> = back.iter().map(|(_, v)| v[0]).collect();
            assert_eq!(vals, vec![4, 3, 2]);
            let fwd = a
                .range(&db, &prefix, &5u64.to_be_bytes(), false, 3)
                .expect("range");
            let vals: Vec<u8> = fwd.iter().map(|(_, v)| v[0]).collect();
            assert_eq!(vals, vec![5, 6, 7]);
            let all_back = a.range(&db, &prefix, &[0xff; 9], true, 100).expect("range");
            assert_eq!(all_back.len(), 10);
        }
    }

    #[test]
    fn survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t: Table<u64> = Table::new("n");
        {
            let db = Db::open(dir.path()).expect("open");
            let mut b = Batch::new();
            t.put(&mut b, b"x", &7).expect("put");
            db.apply(b).expect("apply");
            db.flush_blocking().expect("flush");
        }
        let db = reopen(dir.path()).expect("reopen");
        assert_eq!(t.get(&db, b"x").expect("get"), Some(7));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_flushes_complete_and_persist() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t: Table<u64> = Table::new("n");
        {
            let db = Db::open(dir.path()).expect("open");
            let mut tasks = Vec::new();
            for i in 0..32u64 {
                let (db, t) = (db.clone(), t.clone());
                tasks.push(tokio::spawn(async move {
                    for j in 0..20u64 {
                        let mut b = Batch::new();
                        t.put(
                            &mut b,
                            &crate::key(&[&i.to_be_bytes(), &j.to_be_bytes()]),
                            &j,
                        )
                        .expect("put");
                        db.apply(b).expect("apply");
                        db.flush().await.expect("flush");
                    }
                }));
            }
            for task in tasks {
                task.await.expect("task");
            }
        }
        let db = reopen(dir.path()).expect("reopen");
        assert_eq!(t.scan_prefix(&db, b"").expect("scan").len(), 32 * 20);
    }

    #[test]
    fn successor() {
        assert_eq!(prefix_successor(b"a"), Some(b"b".to_vec()));
        assert_eq!(prefix_successor(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_successor(&[0xff]), None);
    }
}
