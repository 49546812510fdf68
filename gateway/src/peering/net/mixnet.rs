//! The real network: [`PeerNet`] and [`PeerInbox`] over the mixnet's transport client. This
//! is the only file of the gateway that imports `transport`.
//!
//! - **Keys.** The transport's link seed (which fixes the mailbox) and end-to-end seed are
//!   derived from the gateway's Ed25519 identity key (SHA-256 of a context and the key's
//!   seed), so they survive restarts exactly as long as the server name does, need no file of
//!   their own, and a memory-only gateway (fresh identity) gets fresh ones.
//! - **Durability.** The client runs on a [`StorageOutbox`] in the gateway's own
//!   [`storage::Db`]: `send` returns once the message is in it, and after a restart the
//!   client sends everything unconfirmed again. It runs with `auto_confirm = false`: a
//!   message is confirmed to its sender only when peering calls [`PeerNet::confirm`] after
//!   storing what it carried, so a crash in between makes it arrive again.
//! - **Requests** are confirmed to the transport as soon as they arrive (the response is
//!   their confirmation; a crash loses only the response, which the asker's wait bounds).
//! - **Descriptor.** The gateway publishes `{"version":1,"address":<transport address>}`
//!   signed with its identity key (whose public key *is* its server name) at start and every
//!   [`MixnetOptions::republish`]. A peer is found by server name → public key → the
//!   document's entry → its address; if it is not listed yet, the document is fetched again a
//!   bounded number of times before the send fails with [`NetError::UnknownPeer`].
//! - **Split client.** `transport::client::Client::split` gives the cloneable sending half
//!   (here, in [`MixnetNet`]) and the receiving half (in [`MixnetInbox`]).
//! - **Order.** Like any mixnet, this one does not keep messages in send order (each packet
//!   waits a random delay at each layer): peering orders by the PDU DAG, not by arrival.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use ruma::{OwnedServerName, ServerName};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use storage::Db;
use tokio::{sync::Mutex, task::JoinHandle, time::Instant};
use transport::{
    client::{
        Address, Client, ClientConfig, ClientError, ClientReceiver, ClientSender, Outcome,
        SendHandle, StorageOutbox,
    },
    directory::{publish_gateway, GatewayEntry},
};

use super::{BoxFuture, Inbound, InboundId, NetError, PeerInbox, PeerNet, Reply, MAX_MESSAGE};
use crate::{config::NetworkConfig, identity::Identity};

// Peering's limit is the transport's.
const _: () = assert!(MAX_MESSAGE == transport::client::MAX_MESSAGE);

/// Version of the descriptor this gateway publishes in the directory.
const DESCRIPTOR_VERSION: u32 = 1;

/// What a gateway publishes about itself in the directory (as the entry's descriptor text,
/// signed with its identity key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// Format version ([`DESCRIPTOR_VERSION`]).
    pub version: u32,
    /// Where its mailbox is and its end-to-end key.
    pub address: Address,
    /// Its Olm identity key (Curve25519, base64), signed with the rest of the descriptor by
    /// the server key; peers check the identity key a one-time key claim returns against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub olm_key: Option<String>,
}

/// Timing of the mixnet adapter.
#[derive(Debug, Clone)]
pub struct MixnetOptions {
    /// How often the descriptor is published again (the directory lists it for 24 epochs
    /// after the last publication).
    pub republish: Duration,
    /// How often the transport client fetches the directory document by itself.
    pub refresh: Duration,
    /// Extra document fetches when a peer is not listed, before a send fails.
    pub lookup_refreshes: u32,
    /// Pause between those fetches.
    pub lookup_pause: Duration,
    /// How long start-up retries publishing the descriptor before it goes on in the background.
    pub publish_wait: Duration,
    /// The Olm identity key to publish in the descriptor.
    pub olm_key: Option<String>,
}

impl Default for MixnetOptions {
    fn default() -> Self {
        Self {
            republish: Duration::from_secs(600),
            refresh: Duration::from_secs(60),
            lookup_refreshes: 3,
            lookup_pause: Duration::from_millis(500),
            publish_wait: Duration::from_secs(10),
            olm_key: None,
        }
    }
}

/// Why the mixnet could not be joined.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The durable outbox could not be opened in the gateway's store.
    #[error("transport outbox: {0}")]
    Outbox(String),
    /// The transport client could not start (directory unreachable or refused, topology
    /// incomplete).
    #[error("mixnet client: {0}")]
    Client(#[from] ClientError),
}

/// Derives one of the transport's 32-byte seeds from the identity key.
fn derive_seed(identity: &Identity, purpose: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"mixgate gateway transport seed v1\n");
    h.update(purpose.as_bytes());
    h.update([0]);
    h.update(identity.signing_key().as_bytes());
    h.finalize().into()
}

fn map_error(err: ClientError, len: usize) -> NetError {
    match err {
        ClientError::Message(_) if len > MAX_MESSAGE => NetError::TooLarge(len),
        ClientError::NoReplyBlocks => NetError::TooLarge(len),
        ClientError::Timeout => NetError::Timeout,
        ClientError::Stopped => NetError::Stopped,
        other => NetError::Transport(other.to_string()),
    }
}

/// Logs a message that ended unconfirmed (it may still arrive; peering's scrollback makes up
/// for a lost one).
fn watch(handle: SendHandle, to: Option<OwnedServerName>) {
    tokio::spawn(async move {
        if handle.outcome().await == Outcome::Failed {
            tracing::debug!(peer = ?to, "message to a peer gateway not confirmed");
        }
    });
}

/// One gateway's sending half on the mixnet.
pub struct MixnetNet {
    sender: ClientSender,
    directories: Vec<SocketAddr>,
    options: MixnetOptions,
    /// When the document was last fetched for a lookup (one fetch at a time).
    last_lookup_refresh: Mutex<Option<Instant>>,
    publisher: JoinHandle<()>,
}

impl Drop for MixnetNet {
    fn drop(&mut self) {
        self.publisher.abort();
    }
}

/// One gateway's receiving half on the mixnet.
pub struct MixnetInbox {
    receiver: ClientReceiver,
    sender: ClientSender,
}

impl MixnetNet {
    /// Joins the mixnet `network` describes as the gateway `identity`, with its durable
    /// outbox in `db`, and publishes the gateway's descriptor.
    pub async fn start(
        identity: &Identity,
        db: Db,
        network: &NetworkConfig,
        options: MixnetOptions,
    ) -> Result<(Arc<Self>, MixnetInbox), JoinError> {
        let (first, fallback) = match network.directories.split_first() {
            Some((first, rest)) => (*first, rest.to_vec()),
            // Validated configs always have one; an empty list finds no document.
            None => (SocketAddr::from(([127, 0, 0, 1], 0)), vec![]),
        };
        let authorities = network.authorities.iter().map(|k| k.0).collect();
        let mut cfg = ClientConfig::new(
            first,
            authorities,
            derive_seed(identity, "link"),
            derive_seed(identity, "e2e"),
        );
        cfg.fallback_directories = fallback;
        cfg.threshold = network.threshold();
        cfg.refresh = options.refresh;
        cfg.auto_confirm = false;
        cfg.outbox =
            Arc::new(StorageOutbox::open(db).map_err(|e| JoinError::Outbox(e.to_string()))?);
        let mut client = Client::start(cfg).await?;
        let resumed = client.take_resumed();
        if !resumed.is_empty() {
            tracing::info!(
                count = resumed.len(),
                "sending unconfirmed peer messages again"
            );
        }
        for handle in resumed {
            watch(handle, None);
        }
        // Requests re-issued after a restart have no waiting caller any more; their
        // responses are dropped.
        drop(client.take_resumed_requests());
        let address = client.address();
        let (sender, receiver) = client.split();
        let entry = Arc::new(GatewayEntry::sign(
            serde_json::to_string(&Descriptor {
                version: DESCRIPTOR_VERSION,
                address,
                olm_key: options.olm_key.clone(),
            })
            .map_err(|e| JoinError::Outbox(e.to_string()))?,
            identity.signing_key(),
        ));
        let directories = network.directories.clone();
        publish_until(&directories, &entry, options.publish_wait).await;
        let publisher = tokio::spawn(republish(directories.clone(), entry, options.republish));
        tracing::info!(
            server_name = %identity.server_name(),
            directories = ?directories,
            "joined the mixnet"
        );
        let net = Arc::new(Self {
            sender: sender.clone(),
            directories,
            options,
            last_lookup_refresh: Mutex::new(None),
            publisher,
        });
        Ok((net, MixnetInbox { receiver, sender }))
    }

    /// This gateway's transport address (what its descriptor says).
    pub fn address(&self) -> Address {
        self.sender.address()
    }

    /// The transport client's counters (read by the metrics endpoint).
    pub fn client_stats(&self) -> Arc<transport::client::ClientStats> {
        self.sender.stats()
    }

    /// The transport client's delivery latency (read by the metrics endpoint).
    pub fn delivery_latency(&self) -> Arc<transport::latency::LatencyHistogram> {
        self.sender.delivery_latency()
    }

    /// The directory addresses this gateway uses.
    pub fn directories(&self) -> &[SocketAddr] {
        &self.directories
    }

    /// Whether `peer` is listed in the current directory document (no fetch).
    pub fn knows(&self, peer: &ServerName) -> bool {
        self.listed(peer).is_some()
    }

    /// The address `peer` published, from the current document.
    fn listed(&self, peer: &ServerName) -> Option<Address> {
        self.descriptor(peer).map(|d| d.address)
    }

    /// The descriptor `peer` published, from the current document.
    fn descriptor(&self, peer: &ServerName) -> Option<Descriptor> {
        let key = crate::identity::key_for_server_name(peer)?;
        let doc = self.sender.document();
        let entry = doc.gateway(&key)?;
        if entry.verify().is_err() {
            tracing::warn!(%peer, "directory lists a gateway entry with a bad signature");
            return None;
        }
        match serde_json::from_str::<Descriptor>(&entry.descriptor) {
            Ok(d) if d.version == DESCRIPTOR_VERSION => Some(d),
            _ => {
                tracing::debug!(%peer, "peer descriptor in an unknown format");
                None
            }
        }
    }

    /// Finds `peer`'s address, fetching the document again (a bounded number of times) while
    /// it is not listed.
    async fn lookup(&self, peer: &ServerName) -> Result<Address, NetError> {
        let unknown = || NetError::UnknownPeer(peer.to_owned());
        if crate::identity::key_for_server_name(peer).is_none() {
            return Err(unknown());
        }
        let started = Instant::now();
        for attempt in 0..=self.options.lookup_refreshes {
            if let Some(address) = self.listed(peer) {
                return Ok(address);
            }
            if attempt == self.options.lookup_refreshes {
                break;
            }
            if attempt > 0 {
                tokio::time::sleep(self.options.lookup_pause).await;
            }
            let mut last = self.last_lookup_refresh.lock().await;
            // Another lookup fetched the document while this one waited: look again first.
            if last.is_some_and(|t| t > started) && attempt == 0 {
                drop(last);
                continue;
            }
            if let Err(e) = self.sender.refresh_document().await {
                tracing::debug!("directory fetch for a peer lookup failed: {e}");
            }
            *last = Some(Instant::now());
        }
        Err(unknown())
    }
}

impl PeerNet for MixnetNet {
    fn olm_identity(&self, peer: &ServerName) -> Option<String> {
        self.descriptor(peer).and_then(|d| d.olm_key)
    }

    fn send<'a>(
        &'a self,
        to: &'a ServerName,
        bytes: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), NetError>> {
        Box::pin(async move {
            let len = bytes.len();
            if len > MAX_MESSAGE {
                return Err(NetError::TooLarge(len));
            }
            let address = self.lookup(to).await?;
            let handle = self
                .sender
                .send(&address, bytes)
                .await
                .map_err(|e| map_error(e, len))?;
            watch(handle, Some(to.to_owned()));
            Ok(())
        })
    }

    fn request<'a>(
        &'a self,
        to: &'a ServerName,
        bytes: Vec<u8>,
        max_response: usize,
        wait: Duration,
    ) -> BoxFuture<'a, Result<Vec<u8>, NetError>> {
        Box::pin(async move {
            let len = bytes.len();
            if len > MAX_MESSAGE {
                return Err(NetError::TooLarge(len));
            }
            let address = self.lookup(to).await?;
            self.sender
                .request(&address, bytes, max_response.min(MAX_MESSAGE), wait)
                .await
                .map_err(|e| map_error(e, len))
        })
    }

    fn confirm(&self, id: InboundId) {
        self.sender.confirm(id.0);
    }
}

impl PeerInbox for MixnetInbox {
    fn next(&mut self) -> BoxFuture<'_, Option<Inbound>> {
        Box::pin(async move {
            let received = self.receiver.recv().await?;
            let reply = received.reply.map(|token| {
                // A request is confirmed at once: its response is what the asker waits for.
                self.sender.confirm(received.id);
                let sender = self.sender.clone();
                Reply::new(move |bytes| {
                    let len = bytes.len();
                    sender.respond(token, bytes).map_err(|e| map_error(e, len))
                })
            });
            Some(Inbound {
                id: InboundId(received.id),
                bytes: received.bytes,
                reply,
            })
        })
    }
}

/// Publishes `entry`, retrying for up to `wait` (the directory may still be starting).
async fn publish_until(directories: &[SocketAddr], entry: &GatewayEntry, wait: Duration) {
    let deadline = Instant::now() + wait;
    loop {
        match publish_once(directories, entry).await {
            Ok(()) => return,
            Err(e) if Instant::now() >= deadline => {
                tracing::warn!("descriptor not published yet (retrying in the background): {e}");
                return;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Publishes `entry` with the first directory that accepts it.
async fn publish_once(directories: &[SocketAddr], entry: &GatewayEntry) -> Result<(), String> {
    let mut last = String::from("no directory configured");
    for addr in directories {
        match publish_gateway(*addr, entry).await {
            Ok(()) => return Ok(()),
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(last)
}

/// Publishes `entry` again every `every` (sooner after a failure), for as long as the gateway
/// runs.
async fn republish(directories: Vec<SocketAddr>, entry: Arc<GatewayEntry>, every: Duration) {
    let retry = every.min(Duration::from_secs(5));
    let mut pause = every;
    loop {
        tokio::time::sleep(pause).await;
        pause = match publish_once(&directories, &entry).await {
            Ok(()) => every,
            Err(e) => {
                tracing::debug!("descriptor republication failed: {e}");
                retry
            }
        };
    }
}

#[cfg(test)]
mod room_tests;
#[cfg(test)]
mod tests;
