//! Tables: named key prefixes with typed or raw values.

use std::marker::PhantomData;

use serde::{de::DeserializeOwned, Serialize};

use crate::{Batch, Db, Error, Result};

/// Prefix of a table's keys: its name and a `0x00` byte.
fn table_prefix(name: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(name.len() + 1);
    p.extend_from_slice(name.as_bytes());
    p.push(0);
    p
}

/// A table whose values are raw bytes.
#[derive(Debug, Clone)]
pub struct RawTable {
    name: &'static str,
    prefix: Vec<u8>,
}

impl RawTable {
    /// The table called `name` (names must not contain `0x00`).
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            prefix: table_prefix(name),
        }
    }

    /// The table's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    fn full(&self, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + key.len());
        k.extend_from_slice(&self.prefix);
        k.extend_from_slice(key);
        k
    }

    /// Reads one value.
    pub fn get(&self, db: &Db, key: &[u8]) -> Result<Option<Vec<u8>>> {
        db.get_raw(&self.full(key))
    }

    /// Queues an insert into `batch`.
    pub fn put(&self, batch: &mut Batch, key: &[u8], value: Vec<u8>) {
        batch.insert_raw(self.full(key), value);
    }

    /// Queues a removal into `batch`.
    pub fn delete(&self, batch: &mut Batch, key: &[u8]) {
        batch.remove_raw(self.full(key));
    }

    /// How many entries the table holds (walks its keys: O(entries), meant for metrics).
    pub fn count(&self, db: &Db) -> Result<u64> {
        db.count_raw(&self.prefix)
    }

    /// All entries whose key starts with `prefix`, in key order, keys without the table prefix.
    pub fn scan_prefix(&self, db: &Db, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let strip = self.prefix.len();
        Ok(db
            .scan_raw(&self.full(prefix), None, false, usize::MAX)?
            .into_iter()
            .map(|(k, v)| (k[strip..].to_vec(), v))
            .collect())
    }

    /// Up to `limit` entries under `prefix` with keys in `[prefix+from, …)` (forwards) or
    /// `(…, prefix+from)` (backwards, newest first). Keys are returned without the table prefix.
    pub fn range(
        &self,
        db: &Db,
        prefix: &[u8],
        from: &[u8],
        backwards: bool,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let strip = self.prefix.len();
        let mut start = self.full(prefix);
        start.extend_from_slice(from);
        Ok(db
            .scan_raw(&self.full(prefix), Some(&start), backwards, limit)?
            .into_iter()
            .map(|(k, v)| (k[strip..].to_vec(), v))
            .collect())
    }
}

/// A table whose values are `V`, stored as JSON.
#[derive(Debug, Clone)]
pub struct Table<V> {
    raw: RawTable,
    _value: PhantomData<fn() -> V>,
}

impl<V: Serialize + DeserializeOwned> Table<V> {
    /// The table called `name`.
    pub fn new(name: &'static str) -> Self {
        Self {
            raw: RawTable::new(name),
            _value: PhantomData,
        }
    }

    /// The untyped view of this table.
    pub fn raw(&self) -> &RawTable {
        &self.raw
    }

    /// How many entries the table holds (see [`RawTable::count`]).
    pub fn count(&self, db: &Db) -> Result<u64> {
        self.raw.count(db)
    }

    fn decode(&self, bytes: &[u8]) -> Result<V> {
        serde_json::from_slice(bytes).map_err(|source| Error::Codec {
            table: self.raw.name,
            source,
        })
    }

    /// Reads and decodes one value.
    pub fn get(&self, db: &Db, key: &[u8]) -> Result<Option<V>> {
        self.raw.get(db, key)?.map(|b| self.decode(&b)).transpose()
    }

    /// Queues an insert of `value` into `batch`.
    pub fn put(&self, batch: &mut Batch, key: &[u8], value: &V) -> Result<()> {
        let bytes = serde_json::to_vec(value).map_err(|source| Error::Codec {
            table: self.raw.name,
            source,
        })?;
        self.raw.put(batch, key, bytes);
        Ok(())
    }

    /// Queues a removal into `batch`.
    pub fn delete(&self, batch: &mut Batch, key: &[u8]) {
        self.raw.delete(batch, key);
    }

    /// All decoded entries under `prefix`, in key order.
    pub fn scan_prefix(&self, db: &Db, prefix: &[u8]) -> Result<Vec<(Vec<u8>, V)>> {
        self.raw
            .scan_prefix(db, prefix)?
            .into_iter()
            .map(|(k, v)| Ok((k, self.decode(&v)?)))
            .collect()
    }

    /// Decoded entries of [`RawTable::range`].
    pub fn range(
        &self,
        db: &Db,
        prefix: &[u8],
        from: &[u8],
        backwards: bool,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, V)>> {
        self.raw
            .range(db, prefix, from, backwards, limit)?
            .into_iter()
            .map(|(k, v)| Ok((k, self.decode(&v)?)))
            .collect()
    }
}
