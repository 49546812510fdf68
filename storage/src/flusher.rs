//! Group commit: one thread makes sled durable for every waiting writer.
//!
//! sled 0.34's own `flush_async` deadlocks when many flushes run at once (seen under ten
//! concurrent senders: every sled I/O thread parked). Instead, writers queue a request on a
//! channel; a single thread takes everything queued, runs one blocking `flush`, and answers all
//! of them. A request queued after a batch was applied is answered only by a flush that began
//! after it was dequeued, so every writer's data is durable when its answer arrives, and
//! concurrent writers share fsyncs.

use std::sync::mpsc;

use tokio::sync::oneshot;

use crate::{Error, Result};

type Waiter = oneshot::Sender<std::result::Result<(), String>>;

/// Handle on the flusher thread of one sled database.
#[derive(Debug)]
pub(crate) struct Flusher {
    tx: Option<mpsc::Sender<Waiter>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Flusher {
    /// Starts the flusher thread for `db`; it ends when the last handle is dropped.
    pub(crate) fn start(db: sled::Db) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Waiter>();
        let thread = std::thread::Builder::new()
            .name("storage-flusher".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut waiters = vec![first];
                    while let Ok(more) = rx.try_recv() {
                        waiters.push(more);
                    }
                    let result = db.flush().map(|_| ()).map_err(|e| e.to_string());
                    if let Err(e) = &result {
                        tracing::error!(error = %e, "flush failed");
                    }
                    for w in waiters {
                        let _ = w.send(result.clone());
                    }
                }
            })?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Waits until everything applied before this call is durable.
    pub(crate) async fn flush(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .as_ref()
            .ok_or_else(|| Error::Flush("flusher thread stopped".into()))?
            .send(tx)
            .map_err(|_| Error::Flush("flusher thread stopped".into()))?;
        rx.await
            .map_err(|_| Error::Flush("flusher thread stopped".into()))?
            .map_err(Error::Flush)
    }
}

impl Drop for Flusher {
    /// Stops the thread and waits for it, so the database (and its file lock) is released when
    /// the last handle goes away.
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
