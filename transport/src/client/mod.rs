//! The client library a gateway embeds: Poisson send schedule (a real packet when one is
//! queued, loop cover otherwise) plus a loop-cover stream, constant-rate mailbox polling,
//! per-layer path selection, fragmentation with parity, SURB-ACKs, retransmission on fresh
//! paths, end-to-end confirmation with whole-message retransmission from a durable outbox,
//! receiver duplicate suppression, and request/response over reply blocks.

mod engine;
mod fragment;
mod outbox;
mod outbox_store;
mod request;
mod stats;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

pub use fragment::{
    fragment, Added, FragError, Kind, MsgId, Reassembler, CHUNK, MAX_CONTENT, MAX_MESSAGE,
};
pub use outbox::{Durable, MemoryOutbox, Outbox, OutboxEntry, OutboxError, RequestEntry};
pub use outbox_store::{StorageOutbox, RECEIVED_RETENTION_MS};
pub use request::RequestHandle;
pub use stats::ClientStats;

use crate::directory::DirectoryError;
use crate::link::LinkConfig;
use crate::packet::{MailboxId, NodeId, Surb};

/// Where a gateway can be reached: its provider, its mailbox there, and its end-to-end key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Address {
    /// The provider holding the mailbox.
    #[serde(with = "crate::directory::hexser")]
    pub provider: NodeId,
    /// The mailbox id.
    #[serde(with = "crate::directory::hexser")]
    pub mailbox: MailboxId,
    /// X25519 key for the end-to-end payload layer.
    #[serde(with = "crate::directory::hexser")]
    pub key: [u8; 32],
}

/// Client configuration.
#[derive(Clone)]
pub struct ClientConfig {
    /// Directory address.
    pub directory: SocketAddr,
    /// Other authorities' addresses, tried in order when `directory` is down or serves a
    /// document that does not verify.
    pub fallback_directories: Vec<SocketAddr>,
    /// Trusted authority keys.
    pub authorities: Vec<[u8; 32]>,
    /// Signatures required.
    pub threshold: usize,
    /// Provider to use (`None`: chosen from the document by the link key).
    pub provider: Option<NodeId>,
    /// Connect here instead of the provider's published address (tests: a capturing proxy).
    pub provider_address_override: Option<String>,
    /// Noise static key seed (determines the mailbox).
    pub link_seed: [u8; 32],
    /// End-to-end X25519 key seed.
    pub e2e_seed: [u8; 32],
    /// Link timing.
    pub link: LinkConfig,
    /// Retransmissions per fragment before giving up.
    pub max_retries: u32,
    /// Transmissions of a whole message without an end-to-end confirmation before it is
    /// `Failed` (each with a fresh reply block and fresh paths, the wait doubling each time).
    pub max_sends: u32,
    /// Added to the expected round trip before a fragment is retransmitted.
    pub ack_slack: Duration,
    /// Directory refresh interval.
    pub refresh: Duration,
    /// Durable state: a [`StorageOutbox`] for a gateway (the default, [`MemoryOutbox`], loses
    /// unconfirmed messages on a restart).
    pub outbox: Arc<dyn Outbox>,
    /// `true`: a message is confirmed to its sender as soon as it is complete (simple, but a
    /// crash before the application stored it loses it). `false`: the application calls
    /// [`Client::confirm`] after storing it; until then neither the provider nor the sender
    /// forgets it, so it arrives again after a crash (at-least-once, deduplicated by id
    /// otherwise).
    pub auto_confirm: bool,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("directory", &self.directory)
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// Defaults for everything but the directory, its keys and the client's seeds.
    pub fn new(
        directory: SocketAddr,
        authorities: Vec<[u8; 32]>,
        link_seed: [u8; 32],
        e2e_seed: [u8; 32],
    ) -> Self {
        ClientConfig {
            directory,
            fallback_directories: Vec::new(),
            authorities,
            threshold: 1,
            provider: None,
            provider_address_override: None,
            link_seed,
            e2e_seed,
            link: LinkConfig::default(),
            max_retries: 8,
            max_sends: 8,
            ack_slack: Duration::from_secs(2),
            refresh: Duration::from_secs(60),
            outbox: Arc::new(MemoryOutbox::default()),
            auto_confirm: true,
        }
    }
}

/// Client errors.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Directory unavailable or its document refused.
    #[error("directory: {0}")]
    Directory(#[from] DirectoryError),
    /// No usable provider or layer in the document.
    #[error("topology: {0}")]
    Topology(&'static str),
    /// Message too large or otherwise unsendable.
    #[error("message: {0}")]
    Message(#[from] FragError),
    /// A response did not fit in the reply blocks, or they were used up.
    #[error("not enough reply blocks")]
    NoReplyBlocks,
    /// No response arrived in time.
    #[error("timed out")]
    Timeout,
    /// The client stopped.
    #[error("client stopped")]
    Stopped,
    /// The outbox could not record the message (nothing was sent).
    #[error("outbox: {0}")]
    Outbox(#[from] OutboxError),
}

/// Final outcome of a `send`. Until it is known the message stays in the outbox and is
/// resent after a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The recipient confirmed the whole message end to end: it reassembled it and recorded
    /// its id (with `auto_confirm = false`, after its application called
    /// [`Client::confirm`]). A provider's acknowledgement alone never yields this.
    Delivered,
    /// Not confirmed: the recipient's provider could not store it within the fragment retry
    /// budget, or `max_sends` transmissions went unconfirmed. The message may still arrive
    /// (for example to a recipient offline for longer than the retries), but at most once.
    Failed,
}

/// A handle on a sent message.
#[derive(Debug)]
pub struct SendHandle {
    /// The message id.
    pub id: MsgId,
    rx: oneshot::Receiver<Outcome>,
}

impl SendHandle {
    /// Waits for the outcome (`Failed` if the client stopped first; the message then stays
    /// in the outbox).
    pub async fn outcome(self) -> Outcome {
        self.rx.await.unwrap_or(Outcome::Failed)
    }
}

/// Lets the receiver of a request answer it.
#[derive(Debug)]
pub struct ReplyToken {
    pub(crate) id: MsgId,
    pub(crate) surbs: Vec<Surb>,
}

/// A received message.
#[derive(Debug)]
pub struct Received {
    /// Message id (duplicates are suppressed by it).
    pub id: MsgId,
    /// The bytes.
    pub bytes: Vec<u8>,
    /// Present for requests: answer with [`Client::respond`].
    pub reply: Option<ReplyToken>,
}

/// A running client. Dropping it stops all its tasks.
///
/// Sending needs `&self` and receiving `&mut self`; an application with many senders and one
/// receiving loop calls [`Client::split`] to get a cloneable [`ClientSender`] and a
/// [`ClientReceiver`].
pub struct Client {
    sender: ClientSender,
    incoming: mpsc::Receiver<Received>,
    resumed: Vec<SendHandle>,
    resumed_requests: Vec<RequestHandle>,
}

/// Keeps a client's tasks alive while any half of it exists (dropping the last one aborts
/// them all).
struct Tasks {
    _set: std::sync::Mutex<JoinSet<()>>,
}

/// The sending half of a [`Client`] (see [`Client::split`]): sends, requests, responses,
/// confirmations and the directory document. Cheap to clone; the client runs while any clone
/// or the [`ClientReceiver`] exists.
#[derive(Clone)]
pub struct ClientSender {
    engine: Arc<engine::Engine>,
    _tasks: Arc<Tasks>,
}

/// The receiving half of a [`Client`] (see [`Client::split`]): received messages in arrival
/// order.
pub struct ClientReceiver {
    incoming: mpsc::Receiver<Received>,
    _tasks: Arc<Tasks>,
}

impl std::fmt::Debug for ClientSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSender")
            .field("address", &self.engine.address)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ClientReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientReceiver").finish_non_exhaustive()
    }
}

impl ClientReceiver {
    /// The next received message; `None` once the client has stopped.
    pub async fn recv(&mut self) -> Option<Received> {
        self.incoming.recv().await
    }
}

impl Client {
    /// Fetches the directory, connects to the provider and starts the schedules.
    pub async fn start(cfg: ClientConfig) -> Result<Client, ClientError> {
        let s = engine::Engine::start(cfg).await?;
        Ok(Client {
            sender: ClientSender {
                engine: s.engine,
                _tasks: Arc::new(Tasks {
                    _set: std::sync::Mutex::new(s.tasks),
                }),
            },
            incoming: s.incoming,
            resumed: s.resumed,
            resumed_requests: s.resumed_requests,
        })
    }

    /// Splits the client into a cloneable sending half and the receiving half, like tokio's
    /// `TcpStream::into_split`. Take the resumed handles ([`Client::take_resumed`],
    /// [`Client::take_resumed_requests`]) first: they are dropped here (which does not cancel
    /// their messages). The client keeps running until both halves (and every clone of the
    /// sender) are dropped.
    pub fn split(self) -> (ClientSender, ClientReceiver) {
        let receiver = ClientReceiver {
            incoming: self.incoming,
            _tasks: Arc::clone(&self.sender._tasks),
        };
        (self.sender, receiver)
    }

    /// Handles of the messages found in the outbox at start and sent again (oldest first);
    /// later calls return nothing.
    pub fn take_resumed(&mut self) -> Vec<SendHandle> {
        std::mem::take(&mut self.resumed)
    }

    /// Handles of the requests found in the outbox at start, still within their wait, and
    /// re-issued under new ids with fresh reply blocks; later calls return nothing.
    pub fn take_resumed_requests(&mut self) -> Vec<RequestHandle> {
        std::mem::take(&mut self.resumed_requests)
    }

    /// This client's address.
    pub fn address(&self) -> Address {
        self.sender.address()
    }

    /// The directory document in use (refreshed periodically): nodes, parameters and the
    /// published gateway descriptors.
    pub fn document(&self) -> Arc<crate::directory::Document> {
        self.sender.document()
    }

    /// Fetches the directory document now instead of waiting for the next periodic refresh
    /// (for example when a peer's descriptor is not in the current one yet).
    pub async fn refresh_document(&self) -> Result<Arc<crate::directory::Document>, ClientError> {
        self.sender.refresh_document().await
    }

    /// Counters.
    pub fn stats(&self) -> Arc<ClientStats> {
        self.sender.stats()
    }

    /// Delivery latency of confirmed messages (from `send` to the end-to-end confirmation).
    pub fn delivery_latency(&self) -> Arc<crate::latency::LatencyHistogram> {
        self.sender.delivery_latency()
    }

    /// Queues a message (up to 64 KiB) for `to`. It is durable in the outbox when this
    /// returns; the handle reports the [`Outcome`].
    pub async fn send(&self, to: &Address, bytes: Vec<u8>) -> Result<SendHandle, ClientError> {
        self.sender.send(to, bytes).await
    }

    /// The next received message.
    pub async fn recv(&mut self) -> Option<Received> {
        self.incoming.recv().await
    }

    /// Sends a request carrying reply blocks for a response of up to `max_response` bytes and
    /// waits up to `wait` for the response.
    pub async fn request(
        &self,
        to: &Address,
        bytes: Vec<u8>,
        max_response: usize,
        wait: Duration,
    ) -> Result<Vec<u8>, ClientError> {
        self.sender.request(to, bytes, max_response, wait).await
    }

    /// Sends a request like [`Client::request`] and returns once it is durable in the outbox;
    /// the handle gives the response. If the client restarts within `wait`, the request is
    /// re-issued ([`Client::take_resumed_requests`]).
    pub async fn send_request(
        &self,
        to: &Address,
        bytes: Vec<u8>,
        max_response: usize,
        wait: Duration,
    ) -> Result<RequestHandle, ClientError> {
        self.sender
            .send_request(to, bytes, max_response, wait)
            .await
    }

    /// Confirms that a received message is stored (only with `auto_confirm = false`): records
    /// its id as received (durably), lets the provider forget its packets and confirms it to
    /// the sender.
    pub fn confirm(&self, id: MsgId) {
        self.sender.confirm(id);
    }

    /// Answers a request on the reply blocks it carried.
    pub fn respond(&self, token: ReplyToken, bytes: Vec<u8>) -> Result<(), ClientError> {
        self.sender.respond(token, bytes)
    }
}

impl ClientSender {
    /// This client's address.
    pub fn address(&self) -> Address {
        self.engine.address.clone()
    }

    /// The directory document in use (see [`Client::document`]).
    pub fn document(&self) -> Arc<crate::directory::Document> {
        self.engine.current_document()
    }

    /// Fetches the directory document now (see [`Client::refresh_document`]).
    pub async fn refresh_document(&self) -> Result<Arc<crate::directory::Document>, ClientError> {
        self.engine.refresh_once().await
    }

    /// Counters.
    pub fn stats(&self) -> Arc<ClientStats> {
        self.engine.stats.clone()
    }

    /// Delivery latency of confirmed messages (see [`Client::delivery_latency`]).
    pub fn delivery_latency(&self) -> Arc<crate::latency::LatencyHistogram> {
        self.engine.latency.clone()
    }

    /// Queues a message (see [`Client::send`]).
    pub async fn send(&self, to: &Address, bytes: Vec<u8>) -> Result<SendHandle, ClientError> {
        self.engine.send(to, bytes).await
    }

    /// Sends a request and waits for its response (see [`Client::request`]).
    pub async fn request(
        &self,
        to: &Address,
        bytes: Vec<u8>,
        max_response: usize,
        wait: Duration,
    ) -> Result<Vec<u8>, ClientError> {
        self.send_request(to, bytes, max_response, wait)
            .await?
            .response()
            .await
    }

    /// Sends a durable request (see [`Client::send_request`]).
    pub async fn send_request(
        &self,
        to: &Address,
        bytes: Vec<u8>,
        max_response: usize,
        wait: Duration,
    ) -> Result<RequestHandle, ClientError> {
        self.engine
            .send_request(to, bytes, max_response, wait)
            .await
    }

    /// Confirms a received message (see [`Client::confirm`]).
    pub fn confirm(&self, id: MsgId) {
        self.engine.confirm(id);
    }

    /// Answers a request (see [`Client::respond`]).
    pub fn respond(&self, token: ReplyToken, bytes: Vec<u8>) -> Result<(), ClientError> {
        self.engine.respond(token, bytes)
    }
}
