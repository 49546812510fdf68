//! The global stream: one ordered counter for everything `/sync` reports.
//!
//! Every change a client may sync (a PDU, a membership, account data, a receipt, a to-device
//! message, a key change, typing) is committed through [`Stream::commit`], which
//! - takes the single write lock,
//! - hands the builder the next position and a batch,
//! - applies the batch (and the new counter) atomically,
//! - publishes the position to waiting `/sync` calls only after the batch is visible,
//! - and makes it durable before the caller acknowledges.
//!
//! Because positions are published in order and only once stored, a `since` token can never pass
//! an event that is not yet readable: no event is skipped or repeated under concurrent sends.

use std::sync::atomic::{AtomicU64, Ordering};

use storage::{Batch, Db, Table};
use tokio::sync::{watch, Mutex};

use crate::error::ApiResult;

const COUNTER_KEY: &[u8] = b"stream_position";

/// Hands out consecutive stream positions inside one [`Stream::commit`].
pub struct Positions {
    last: u64,
}

impl Positions {
    /// The next unused position.
    #[allow(clippy::should_implement_trait)] // not an iterator: positions are never exhausted
    pub fn next(&mut self) -> u64 {
        self.last += 1;
        self.last
    }
}

/// The global stream of syncable changes.
pub struct Stream {
    db: Db,
    counter: Table<u64>,
    write_lock: Mutex<()>,
    published: AtomicU64,
    notify: watch::Sender<u64>,
}

impl Stream {
    /// Loads the last committed position.
    pub fn open(db: Db) -> storage::Result<Self> {
        let counter = Table::new("stream");
        let current = counter.get(&db, COUNTER_KEY)?.unwrap_or(0);
        let (notify, _) = watch::channel(current);
        Ok(Self {
            db,
            counter,
            write_lock: Mutex::new(()),
            published: AtomicU64::new(current),
            notify,
        })
    }

    /// The newest position whose changes are readable.
    pub fn current(&self) -> u64 {
        self.published.load(Ordering::Acquire)
    }

    /// A receiver woken whenever the position advances.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.notify.subscribe()
    }

    /// Commits the writes `build` makes at the next position, durably.
    ///
    /// `build` runs under the write lock, so it sees every earlier commit and no concurrent one:
    /// it may read current state and decide (authorise an event, pick `prev_events`). If it
    /// fails, nothing is written and the position does not advance.
    pub async fn commit<T>(
        &self,
        build: impl FnOnce(&mut Positions, &mut Batch) -> ApiResult<T>,
    ) -> ApiResult<(T, u64)> {
        let (value, pos) = {
            let _guard = self.write_lock.lock().await;
            let mut positions = Positions {
                last: self.current(),
            };
            let mut batch = Batch::new();
            let value = build(&mut positions, &mut batch)?;
            let pos = positions.last;
            self.counter.put(&mut batch, COUNTER_KEY, &pos)?;
            self.db.apply(batch)?;
            self.published.store(pos, Ordering::Release);
            (value, pos)
        };
        // Readers may see the change before it is durable; the writer's caller is only told
        // after the flush, so nothing acknowledged can be lost.
        self.notify.send_replace(pos);
        self.db.flush().await?;
        Ok((value, pos))
    }

    /// Runs `read` under the write lock (for decisions that must not race commits).
    pub async fn with_lock<T>(&self, read: impl FnOnce() -> T) -> T {
        let _guard = self.write_lock.lock().await;
        read()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn positions_advance_and_failures_write_nothing() {
        let db = Db::memory().expect("db");
        let stream = Stream::open(db.clone()).expect("open");
        let t: Table<u64> = Table::new("x");
        let ((), p1) = stream
            .commit(|pos, b| {
                t.put(b, b"a", &pos.next())?;
                Ok(())
            })
            .await
            .expect("commit");
        assert_eq!(p1, 1);
        let r: ApiResult<((), u64)> = stream
            .commit(|pos, b| {
                t.put(b, b"b", &pos.next())?;
                Err(crate::error::ApiError::forbidden("no"))
            })
            .await;
        assert!(r.is_err());
        assert_eq!(stream.current(), 1);
        assert_eq!(t.get(&db, b"b").expect("get"), None);
        let reopened = Stream::open(db).expect("reopen");
        assert_eq!(reopened.current(), 1);
    }
}
