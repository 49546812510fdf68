//! Server-side search (`POST /search`, `room_events`) over message bodies, room names and
//! topics of the rooms a user is in, each result checked against history visibility.
//!
//! The index ([`record`], written with each accepted event through
//! [`crate::service::derived`]) maps `(room, word, position)` to the event. A query's words
//! are looked up per room and intersected; each candidate is then re-read and re-checked
//! (still visible to the searcher, text still there after a redaction, `keys` and `filter`).
//! Encrypted rooms are searched by clients: their events carry no plaintext here.

mod index;
pub mod query;

pub use index::{record, words};
pub use query::{search, Order, SearchQuery};

#[cfg(test)]
mod tests;
