//! Peering: the second front door, beside `api/`. Other gateways reach this gateway's rooms
//! through it, over the mixnet only; it calls the same services the CS API calls and is never
//! imported by them.

pub mod net;

use std::sync::Arc;

use crate::service::Gateway;
use net::{PeerInbox, PeerNet};

/// Starts peering for `gateway` on a network: the outbound sender and the inbound loop run as
/// background tasks for as long as the runtime does.
pub fn spawn(gateway: Arc<Gateway>, net: Arc<dyn PeerNet>, mut inbox: Box<dyn PeerInbox>) {
    // The room exchange lands here next; until then received messages are confirmed and
    // dropped with a log line, so a peer's outbox does not grow.
    let _ = gateway;
    tokio::spawn(async move {
        while let Some(msg) = inbox.next().await {
            tracing::debug!(bytes = msg.bytes.len(), "peer message not handled yet");
            net.confirm(msg.id);
        }
    });
}
