//! Errors of the storage layer.

/// Result type of the storage layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong when reading or writing a store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The on-disk database failed (I/O, corruption).
    #[error("database error: {0}")]
    Sled(#[from] sled::Error),
    /// Making writes durable failed.
    #[error("flush failed: {0}")]
    Flush(String),
    /// The flusher thread could not be started.
    #[error("cannot start the flusher thread: {0}")]
    Thread(#[from] std::io::Error),
    /// A stored value could not be encoded or decoded.
    #[error("stored value in table `{table}` is not valid: {source}")]
    Codec {
        /// The table the value belongs to.
        table: &'static str,
        /// The serde error.
        source: serde_json::Error,
    },
    /// The stored schema is newer than this binary understands.
    #[error("database schema version {found} is newer than the supported version {supported}")]
    SchemaTooNew {
        /// Version found on disk.
        found: u64,
        /// Newest version this build knows.
        supported: u64,
    },
}
