//! mixgate's gateway: a Matrix homeserver whose federation is a mixnet.
//!
//! Layers, one way: [`api`] (axum handlers, ruma request types, Matrix errors) calls
//! [`service`] (business logic) which uses the typed stores of the `storage` crate.

pub mod admin_client;
pub mod api;
pub mod client_addr;
pub mod config;
pub mod config_check;
pub mod error;
pub mod http_limits;
pub mod identity;
pub mod metrics;
pub mod peering;
pub mod roles;
pub mod serve;
pub mod service;
pub mod shutdown;
#[cfg(test)]
pub(crate) mod testkit;
pub mod up;
