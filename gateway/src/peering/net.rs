//! The one seam between peering and whatever carries bytes between gateways.
//!
//! Peering speaks to other gateways by server name only. [`PeerNet`] sends (durably) and asks
//! (request/response over reply blocks, so the responder never learns the asker's address);
//! [`PeerInbox`] hands received messages to the inbound loop, which confirms each one with
//! [`PeerNet::confirm`] only after what it carried is stored.
//!
//! Two implementations: `mixnet` (the real transport client; the only module of the gateway
//! that imports `transport`) and [`memory`] (an in-process hub for tests that run many
//! gateways without sockets).

pub mod memory;
pub mod mixnet;

use std::{future::Future, pin::Pin, time::Duration};

use ruma::{OwnedServerName, ServerName};

/// A boxed, sendable future (the traits below are object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Largest message one `send` or `request` may carry (the transport's message limit).
pub const MAX_MESSAGE: usize = 64 * 1024;

/// Why the network could not carry a message.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The peer has no descriptor in the directory (or is not known to the hub).
    #[error("unknown peer {0}")]
    UnknownPeer(OwnedServerName),
    /// The message is larger than [`MAX_MESSAGE`].
    #[error("message of {0} bytes exceeds the transport limit")]
    TooLarge(usize),
    /// No response arrived within the wait.
    #[error("no response in time")]
    Timeout,
    /// The network has stopped.
    #[error("network stopped")]
    Stopped,
    /// Any other transport failure.
    #[error("transport: {0}")]
    Transport(String),
}

/// Identifies a received message until it is confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InboundId(pub [u8; 16]);

/// Answers one request (consumed by answering).
pub struct Reply(Box<dyn FnOnce(Vec<u8>) -> Result<(), NetError> + Send>);

impl Reply {
    /// Wraps the network's way of answering.
    pub fn new(answer: impl FnOnce(Vec<u8>) -> Result<(), NetError> + Send + 'static) -> Self {
        Self(Box::new(answer))
    }

    /// Sends the response on the request's reply blocks.
    pub fn send(self, bytes: Vec<u8>) -> Result<(), NetError> {
        (self.0)(bytes)
    }
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reply")
    }
}

/// A message from another gateway. The network does not say who sent it: the sender is
/// authenticated by the signed envelope inside `bytes`.
#[derive(Debug)]
pub struct Inbound {
    /// Confirm with this id once what the message carried is stored.
    pub id: InboundId,
    /// The message.
    pub bytes: Vec<u8>,
    /// Present for requests: the way to answer.
    pub reply: Option<Reply>,
}

/// What peering needs from a network. Production: the mixnet; tests: an in-process hub.
pub trait PeerNet: Send + Sync + 'static {
    /// Queues `bytes` (at most [`MAX_MESSAGE`]) for the gateway `to`. When this returns `Ok`
    /// the message is durable (it survives a restart of this gateway) and will be retried
    /// until the recipient confirms it.
    fn send<'a>(
        &'a self,
        to: &'a ServerName,
        bytes: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), NetError>>;

    /// Sends a request carrying reply blocks for a response of up to `max_response` bytes and
    /// waits up to `wait` for it. The responder never learns this gateway's address.
    fn request<'a>(
        &'a self,
        to: &'a ServerName,
        bytes: Vec<u8>,
        max_response: usize,
        wait: Duration,
    ) -> BoxFuture<'a, Result<Vec<u8>, NetError>>;

    /// Confirms a received message: it is stored, so the sender may forget it.
    fn confirm(&self, id: InboundId);

    /// The Olm identity key `peer` published (signed) where this network lists gateways, if
    /// it lists any (the in-memory hub does not).
    fn olm_identity(&self, _peer: &ServerName) -> Option<String> {
        None
    }
}

/// The receiving half, owned by the inbound loop alone.
pub trait PeerInbox: Send + 'static {
    /// The next received message; `None` once the network has stopped.
    fn next(&mut self) -> BoxFuture<'_, Option<Inbound>>;
}
