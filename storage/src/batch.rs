//! Atomic write batches.

/// One write in a [`Batch`].
#[derive(Debug, Clone)]
pub(crate) enum Op {
    Insert(Vec<u8>, Vec<u8>),
    Remove(Vec<u8>),
}

/// A set of writes applied atomically by [`crate::Db::apply`]: either all become visible (and,
/// after a flush, durable) or none does.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    pub(crate) ops: Vec<Op>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues an insert of a full (table-prefixed) key.
    pub(crate) fn insert_raw(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push(Op::Insert(key, value));
    }

    /// Queues a removal of a full (table-prefixed) key.
    pub(crate) fn remove_raw(&mut self, key: Vec<u8>) {
        self.ops.push(Op::Remove(key));
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Number of queued writes.
    pub fn len(&self) -> usize {
        self.ops.len()
    }
}
