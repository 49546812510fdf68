//! Peering: the second front door, beside `api/`. Other gateways reach this gateway's rooms
//! through it, over the mixnet only; it calls the same services the CS API calls and is never
//! imported by them.
//!
//! - [`outbound`]: a stream consumer that sends every event this gateway signs to the gateways
//!   of the room's members, after a durable cursor.
//! - [`inbound`]: decodes and authenticates each message, hands PDUs to the rooms' ingest door,
//!   and confirms a message only once what it carried is stored; answers requests.
//! - [`handshake`]: joining and leaving rooms that live on other gateways.
//! - [`remote`]: the handle the services use to reach other gateways
//!   (`service::rooms::remote::Remote`), and the worker that carries out its commands.
//! - [`wire`]: the versioned, signed message format.
//!
//! Peering holds the whole `Arc<Gateway>` (a departure from the proposed narrow handles,
//! recorded in `gateway/README.md`); services reach peering only through the `Remote` port, a
//! command channel, so there is no reference cycle.

pub mod backfill;
pub mod catchup;
pub mod compress;
pub mod edu;
pub mod groupkeys;
pub mod handshake;
pub mod inbound;
pub mod media;
pub mod net;
pub mod olm_channel;
pub mod outbound;
pub mod remote;
pub mod reply_seal;
pub mod seal;
pub mod stats;
#[cfg(test)]
mod tests;
pub mod wire;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use ruma::{MilliSecondsSinceUnixEpoch, ServerName};

use crate::service::Gateway;
pub use catchup::PeeringOptions;
use groupkeys::GroupKeys;
pub use groupkeys::KeyPolicy;
use net::{NetError, PeerInbox, PeerNet, MAX_MESSAGE};
pub use remote::{channel, Commands, RemoteHandle};
use ruma::OwnedServerName;
pub use stats::PeeringStats;
use wire::{Body, Envelope};

/// How long a request waits for its answer, over all its attempts.
pub const REQUEST_WAIT: Duration = Duration::from_secs(30);

/// How long each attempt of a request waits before it is asked again with fresh reply
/// blocks (they add up to [`REQUEST_WAIT`]). An answer rides reply blocks without
/// acknowledgements, so one lost packet of it (a mix or a link dropping under overload)
/// loses the answer; asking again is cheap, and every request peering makes can be answered
/// twice without harm (a second `SendMembership` finds its event a duplicate, a second
/// key claim only uses one more one-time key).
const ATTEMPT_WAITS: [Duration; 2] = [Duration::from_secs(12), Duration::from_secs(18)];
const _: () =
    assert!(ATTEMPT_WAITS[0].as_secs() + ATTEMPT_WAITS[1].as_secs() == REQUEST_WAIT.as_secs());

/// Reply capacity asked for answers known to be small (a membership template, an alias, a
/// profile): every byte of capacity is reply blocks the asker must send along, so asking for
/// a whole message costs a join about 16 extra packets.
const SMALL_ANSWER: usize = 8 * 1024;

/// Reply capacity asked for a media chunk: a chunk of 40 KiB that does not compress comes to
/// about 42 KiB on the wire (base64 twice, each time taken back by the compression), so a
/// quarter of a whole message's reply blocks are saved on every chunk.
const MEDIA_ANSWER: usize = 48 * 1024;
const _: () = assert!(media::CHUNK + 8 * 1024 <= MEDIA_ANSWER);

/// What every part of peering shares.
pub struct Peer {
    /// The gateway whose rooms are shared.
    pub gw: Arc<Gateway>,
    /// The network to other gateways.
    pub net: Arc<dyn PeerNet>,
    /// Counters.
    pub stats: Arc<PeeringStats>,
    /// Timing of catch-up.
    pub options: PeeringOptions,
    /// Olm sessions and Megolm epochs with other gateways.
    pub keys: Arc<GroupKeys>,
    /// When a one-time key claim last failed, per peer (sends back off).
    claim_failures: Mutex<HashMap<OwnedServerName, Instant>>,
    /// When an `OlmReset` was last sent, per peer.
    resets_sent: Mutex<HashMap<OwnedServerName, Instant>>,
    /// Tests only: every envelope this gateway encrypted, as its plaintext JSON.
    #[cfg(test)]
    pub(crate) tap: Mutex<Option<Vec<Vec<u8>>>>,
}

/// A request that got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    /// The network failed (unknown peer, timeout, stopped).
    #[error(transparent)]
    Net(#[from] NetError),
    /// The answer did not decode or came from someone else.
    #[error("bad answer: {0}")]
    BadAnswer(String),
    /// The peer refused.
    #[error("{errcode}: {error}")]
    Refused {
        /// Its error code.
        errcode: String,
        /// Its reason.
        error: String,
    },
}

impl Peer {
    fn envelope(&self, to: &ServerName, body: Body) -> Envelope {
        Envelope {
            origin: self.gw.server_name().to_owned(),
            destination: to.to_owned(),
            ts: u64::from(MilliSecondsSinceUnixEpoch::now().get()),
            body,
        }
    }

    /// Tests only: keeps the plaintext of an envelope about to be encrypted (what the wire
    /// would carry without group keys), for the compression measurements.
    pub(crate) fn tap(&self, _to: &ServerName, _body: &Body) {
        #[cfg(test)]
        if let Some(samples) = self.tap.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            let envelope = self.envelope(_to, _body.clone());
            samples.push(serde_json::to_vec(&envelope).unwrap_or_default());
        }
    }

    /// Encodes and signs `body` for `to`.
    pub fn encode(&self, to: &ServerName, body: Body) -> Vec<u8> {
        wire::encode(&self.gw.identity, &self.envelope(to, body))
    }

    /// Sends `body` to `to` durably.
    pub async fn send(&self, to: &ServerName, body: Body) -> Result<(), NetError> {
        let bytes = self.encode(to, body);
        self.stats.sent(bytes.len());
        self.net.send(to, bytes).await
    }

    /// Asks `to` and returns its answer (an `Error` answer becomes [`AskError::Refused`]),
    /// asking again once if no answer comes.
    pub async fn ask(&self, to: &ServerName, body: Body) -> Result<Body, AskError> {
        self.ask_within(to, body, &ATTEMPT_WAITS).await
    }

    /// [`Peer::ask`] with one attempt per entry of `waits`, each waiting that long.
    pub async fn ask_within(
        &self,
        to: &ServerName,
        body: Body,
        waits: &[Duration],
    ) -> Result<Body, AskError> {
        let small = matches!(
            body,
            Body::MakeMembership { .. }
                | Body::QueryAlias { .. }
                | Body::QueryProfile { .. }
                | Body::RoomHeads { .. }
                | Body::QueryMedia { .. }
                | Body::ClaimOlmKey { .. }
                | Body::KeyRequest { .. }
        );
        let capacity = match body {
            _ if small => SMALL_ANSWER,
            Body::FetchMedia { .. } => MEDIA_ANSWER,
            _ => MAX_MESSAGE,
        };
        let mut attempt = 0;
        let (answer, asker) = loop {
            let asker = reply_seal::Asker::new();
            let bytes = self.encode(to, asker.wrap(body.clone()));
            self.stats.sent(bytes.len());
            let wait = waits.get(attempt).copied().unwrap_or(REQUEST_WAIT);
            match self.net.request(to, bytes, capacity, wait).await {
                Err(NetError::Timeout) if attempt + 1 < waits.len() => {
                    tracing::debug!(peer = %to, "request unanswered; asking again");
                    attempt += 1;
                }
                other => break (other?, asker),
            }
        };
        let envelope = wire::decode(self.gw.server_name(), &answer)
            .map_err(|e| AskError::BadAnswer(e.to_string()))?;
        if envelope.origin != to {
            return Err(AskError::BadAnswer(format!(
                "answer signed by {} instead of {to}",
                envelope.origin
            )));
        }
        let body = match envelope.body {
            Body::Answer { ciphertext } => asker.open(&ciphertext).map_err(AskError::BadAnswer)?,
            // A refusal of the request's form itself comes unencrypted (it holds nothing).
            err @ Body::Error { .. } => err,
            _ => return Err(AskError::BadAnswer("unencrypted answer".into())),
        };
        match body {
            Body::Error { errcode, error } => Err(AskError::Refused { errcode, error }),
            body => Ok(body),
        }
    }
}

/// Starts peering for `gateway` on a network: the outbound sender, the inbound loop and the
/// worker for the services' remote commands run as background tasks. Returns the counters.
pub fn spawn(
    gateway: Arc<Gateway>,
    net: Arc<dyn PeerNet>,
    inbox: Box<dyn PeerInbox>,
    commands: Commands,
) -> Arc<PeeringStats> {
    spawn_with(gateway, net, inbox, commands, PeeringOptions::default())
}

/// [`spawn`] with other catch-up timing.
pub fn spawn_with(
    gateway: Arc<Gateway>,
    net: Arc<dyn PeerNet>,
    inbox: Box<dyn PeerInbox>,
    commands: Commands,
    options: PeeringOptions,
) -> Arc<PeeringStats> {
    spawn_peer(gateway, net, inbox, commands, options)
        .stats
        .clone()
}

/// [`spawn_with`], returning the whole peering state (tests look at its keys).
pub(crate) fn spawn_peer(
    gateway: Arc<Gateway>,
    net: Arc<dyn PeerNet>,
    inbox: Box<dyn PeerInbox>,
    commands: Commands,
    options: PeeringOptions,
) -> Arc<Peer> {
    let peer = start(gateway, net, options);
    tokio::spawn(catchup::run(peer.clone()));
    tokio::spawn(outbound::run(peer.clone()));
    tokio::spawn(outbound::run_edus(peer.clone()));
    tokio::spawn(outbound::retry(peer.clone()));
    tokio::spawn(seal::maintain(peer.clone(), peer.options.keys_tick));
    tokio::spawn(inbound::run(peer.clone(), inbox));
    tokio::spawn(remote::serve(peer.clone(), commands));
    peer
}

/// The shared peering state of `gateway` (its tasks not started yet).
pub(crate) fn start(
    gateway: Arc<Gateway>,
    net: Arc<dyn PeerNet>,
    options: PeeringOptions,
) -> Arc<Peer> {
    let keys = Arc::new(GroupKeys::new(
        gateway.db.clone(),
        options.clock.clone(),
        gateway.config.group_keys.clone(),
    ));
    Arc::new(Peer {
        gw: gateway,
        net,
        stats: Arc::new(PeeringStats::default()),
        options,
        keys,
        claim_failures: Mutex::default(),
        resets_sent: Mutex::default(),
        #[cfg(test)]
        tap: Mutex::default(),
    })
}
