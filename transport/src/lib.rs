//! mixgate transport: the padded mixnet that replaces Matrix federation.
//!
//! Modules: [`packet`] (the onion format), and the network roles built on it.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]

mod counters;

pub mod client;
pub mod config;
pub mod directory;
pub mod latency;
pub mod link;
pub mod local;
pub mod node;
pub mod packet;
pub mod util;
