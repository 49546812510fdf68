//! Typed, versioned key-value storage for mixgate.
//!
//! One [`Db`] holds every table of a process in a single ordered keyspace, either on disk
//! ([sled]) or in memory only (for gateways that must leave no disk traces). A table is a key
//! prefix; a [`Table`] gives typed (serde JSON) access to one. Writes go through a [`Batch`] that is
//! applied atomically, so a multi-table update (an event, its indexes and the stream counter) is
//! never half-visible and never half-durable. [`Db::flush`] makes applied batches durable; callers
//! flush before they acknowledge a write to a client.
//!
//! The schema version is stored in the `meta` table and checked at start-up
//! ([`Db::open`] runs [`migrations`]).

mod batch;
mod db;
mod error;
mod flusher;
mod keys;
pub mod migrations;
mod table;

pub use batch::Batch;
pub use db::Db;
pub use error::{Error, Result};
pub use keys::{key, u64_be, u64_from_be};
pub use table::{RawTable, Table};
