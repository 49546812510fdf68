//! Building and processing packets: the KEM-style Sphinx header and the layered payload.

use rand::{CryptoRng, RngCore};

use super::crypto::{ct_eq, header_mac, xor_stream, HopKeys, SecretKey, KEY_LEN, MAC_LEN, TAG_LEN};
use super::kem::agree_each;
use super::lioness;
use super::routing::{MailboxId, NodeId, RoutingCommand, FLAG_ACK, HOP_LEN, ID_LEN};
use super::surb::{Surb, SURB_SIZE};
use super::PacketError;

/// The packet format version this implementation writes and accepts.
pub const VERSION: u8 = 1;
/// The most hops a header can carry.
pub const MAX_HOPS: usize = 5;
/// Length of the encrypted routing information β.
pub const BETA_LEN: usize = MAX_HOPS * HOP_LEN;
/// Header length: version ‖ α ‖ γ ‖ β.
pub const HEADER_SIZE: usize = 1 + KEY_LEN + MAC_LEN + BETA_LEN;
/// Payload length (the wide block).
pub const PAYLOAD_SIZE: usize = 2048;
/// Total length of every packet on every link.
pub const PACKET_SIZE: usize = HEADER_SIZE + PAYLOAD_SIZE;
/// Length of the all-zero integrity prefixes.
pub const ZERO_LEN: usize = 16;
/// Length of the end-to-end sealed part of a forward payload.
const E2E_LEN: usize = PAYLOAD_SIZE - ZERO_LEN - SURB_SIZE;
/// User bytes in a forward packet.
pub const BODY_SIZE: usize = E2E_LEN - ZERO_LEN;
/// User bytes in a packet sent on a reply block.
pub const REPLY_BODY_SIZE: usize = PAYLOAD_SIZE - ZERO_LEN;

/// One hop of a route as the sender sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteHop {
    /// The node's identifier.
    pub id: NodeId,
    /// The node's mix public key for the current epoch.
    pub public: [u8; KEY_LEN],
    /// The delay this node must hold the packet before forwarding it (ignored at the last hop).
    pub delay_us: u32,
}

/// A packet of exactly [`PACKET_SIZE`] bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Packet(Box<[u8; PACKET_SIZE]>);

impl std::fmt::Debug for Packet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Packet(v{}, {} bytes)", self.0[0], PACKET_SIZE)
    }
}

impl Packet {
    /// Parses a packet: checks length and version only (the rest needs the hop key).
    pub fn from_slice(b: &[u8]) -> Result<Self, PacketError> {
        if b.len() != PACKET_SIZE {
            return Err(PacketError::WrongLength(b.len()));
        }
        if b[0] != VERSION {
            return Err(PacketError::WrongVersion(b[0]));
        }
        let mut p = Box::new([0u8; PACKET_SIZE]);
        p.copy_from_slice(b);
        Ok(Packet(p))
    }

    /// The wire bytes.
    pub fn as_bytes(&self) -> &[u8; PACKET_SIZE] {
        &self.0
    }
}

/// What the last hop hands to a mailbox: the fully unwrapped payload and the recipient fields.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Delivered {
    /// Flags from the deliver command ([`FLAG_ACK`]).
    pub flags: u8,
    /// Reply-block id (random for forward packets).
    pub surb_id: [u8; ID_LEN],
    /// The last hop's ephemeral key, which the recipient's end-to-end layer reuses.
    pub recipient_alpha: [u8; KEY_LEN],
    /// The payload after the last hop's layer.
    pub payload: Box<[u8; PAYLOAD_SIZE]>,
}

/// Length of a serialised [`Delivered`].
pub const DELIVERED_SIZE: usize = 1 + ID_LEN + KEY_LEN + PAYLOAD_SIZE;

impl Delivered {
    /// Serialises to [`DELIVERED_SIZE`] bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(DELIVERED_SIZE);
        v.push(self.flags);
        v.extend_from_slice(&self.surb_id);
        v.extend_from_slice(&self.recipient_alpha);
        v.extend_from_slice(&self.payload[..]);
        v
    }

    /// Parses [`DELIVERED_SIZE`] bytes (longer input: the rest is ignored padding).
    pub fn from_bytes(b: &[u8]) -> Result<Self, PacketError> {
        if b.len() < DELIVERED_SIZE {
            return Err(PacketError::WrongLength(b.len()));
        }
        let mut surb_id = [0u8; ID_LEN];
        surb_id.copy_from_slice(&b[1..17]);
        let mut recipient_alpha = [0u8; KEY_LEN];
        recipient_alpha.copy_from_slice(&b[17..49]);
        let mut payload = Box::new([0u8; PAYLOAD_SIZE]);
        payload.copy_from_slice(&b[49..DELIVERED_SIZE]);
        Ok(Delivered {
            flags: b[0],
            surb_id,
            recipient_alpha,
            payload,
        })
    }

    /// For a forward packet with an acknowledgement: checks the integrity prefix (tagging
    /// makes it fail) and returns the acknowledgement reply block to send after storing.
    pub fn take_ack(&self) -> Result<Option<Surb>, PacketError> {
        if self.flags & FLAG_ACK == 0 {
            return Ok(None);
        }
        if !ct_eq(&self.payload[..ZERO_LEN], &[0u8; ZERO_LEN]) {
            return Err(PacketError::BadPayload);
        }
        Surb::from_bytes(&self.payload[ZERO_LEN..ZERO_LEN + SURB_SIZE]).map(Some)
    }

    /// Opens a forward packet's end-to-end layer with the recipient's key; returns the body.
    pub fn open_forward(&self, recipient: &SecretKey) -> Result<Box<[u8; BODY_SIZE]>, PacketError> {
        if !ct_eq(&self.payload[..ZERO_LEN], &[0u8; ZERO_LEN]) {
            return Err(PacketError::BadPayload);
        }
        let s = recipient.dh(&self.recipient_alpha)?;
        let k = HopKeys::derive(&s, &self.recipient_alpha, &recipient.public());
        let mut e2e = self.payload[ZERO_LEN + SURB_SIZE..].to_vec();
        lioness::decrypt(&k.payload, &mut e2e);
        if !ct_eq(&e2e[..ZERO_LEN], &[0u8; ZERO_LEN]) {
            return Err(PacketError::BadPayload);
        }
        let mut body = Box::new([0u8; BODY_SIZE]);
        body.copy_from_slice(&e2e[ZERO_LEN..]);
        Ok(body)
    }
}

/// The outcome of processing one layer at a node.
#[derive(Debug)]
pub enum Processed {
    /// Hold for `delay_us`, then send `packet` to `next`.
    Relay {
        /// Next hop.
        next: NodeId,
        /// Sender-chosen delay in microseconds.
        delay_us: u32,
        /// The re-encrypted packet for the next hop.
        packet: Packet,
    },
    /// Last hop: store in `mailbox`.
    Deliver {
        /// Target mailbox (or the node's own id for its loop cover).
        mailbox: MailboxId,
        /// What to store.
        delivered: Delivered,
    },
}

/// One hop's half of the key agreement, computed before the header is built.
pub(crate) struct HopSecret {
    /// The ephemeral public key the hop sees (α).
    pub alpha: [u8; KEY_LEN],
    /// X25519 of the ephemeral secret and the hop's public key.
    pub shared: [u8; KEY_LEN],
}

impl HopSecret {
    /// Pairs each hop's ephemeral key with the secret agreed for it.
    pub(crate) fn zip(eph: &[SecretKey], shared: &[[u8; KEY_LEN]]) -> Vec<HopSecret> {
        eph.iter()
            .zip(shared)
            .map(|(e, s)| HopSecret {
                alpha: e.public(),
                shared: *s,
            })
            .collect()
    }
}

/// Builds a header for `route` ending in `last` (a deliver command), from each hop's agreed
/// secret. Returns the header and every hop's keys.
pub(crate) fn build_header(
    route: &[RouteHop],
    last: &RoutingCommand,
    hops: &[HopSecret],
) -> Result<([u8; HEADER_SIZE], Vec<HopKeys>), PacketError> {
    let n = route.len();
    if n == 0 || n > MAX_HOPS || hops.len() != n {
        return Err(PacketError::BadRoute(n));
    }
    let alphas: Vec<[u8; KEY_LEN]> = hops.iter().map(|h| h.alpha).collect();
    let keys: Vec<HopKeys> = route
        .iter()
        .zip(hops)
        .map(|(r, h)| HopKeys::derive(&h.shared, &h.alpha, &r.public))
        .collect();
    // Each hop's header keystream, computed once: it encrypts that hop's β and, past β's end,
    // is what the hop appends when it shifts β (the filler).
    let streams: Vec<[u8; BETA_LEN + HOP_LEN]> = keys
        .iter()
        .map(|k| {
            let mut stream = [0u8; BETA_LEN + HOP_LEN];
            xor_stream(&k.header, &mut stream);
            stream
        })
        .collect();
    // Filler: the bytes that hops 0..n-2 append to β as they shift it.
    let mut filler: Vec<u8> = Vec::with_capacity(n * HOP_LEN);
    for (j, stream) in streams.iter().enumerate().take(n - 1) {
        filler.extend_from_slice(&[0u8; HOP_LEN]);
        let start = BETA_LEN - j * HOP_LEN;
        for (f, s) in filler.iter_mut().zip(&stream[start..]) {
            *f ^= s;
        }
    }
    let mut beta = [0u8; BETA_LEN];
    beta[..HOP_LEN].copy_from_slice(&last.encode());
    let plen = BETA_LEN - (n - 1) * HOP_LEN;
    xor_in(&mut beta[..plen], &streams[n - 1]);
    beta[plen..].copy_from_slice(&filler);
    let mut mac = header_mac(&keys[n - 1].mac, VERSION, &alphas[n - 1], &beta);
    for i in (0..n - 1).rev() {
        let block = RoutingCommand::Relay {
            next: route[i + 1].id,
            delay_us: route[i].delay_us,
            alpha: alphas[i + 1],
            mac,
        }
        .encode();
        beta.copy_within(..BETA_LEN - HOP_LEN, HOP_LEN);
        beta[..HOP_LEN].copy_from_slice(&block);
        xor_in(&mut beta, &streams[i]);
        mac = header_mac(&keys[i].mac, VERSION, &alphas[i], &beta);
    }
    let mut h = [0u8; HEADER_SIZE];
    h[0] = VERSION;
    h[1..33].copy_from_slice(&alphas[0]);
    h[33..49].copy_from_slice(&mac);
    h[49..].copy_from_slice(&beta);
    Ok((h, keys))
}

/// XORs the start of `stream` into `buf`.
fn xor_in(buf: &mut [u8], stream: &[u8]) {
    for (b, s) in buf.iter_mut().zip(stream) {
        *b ^= s;
    }
}

/// Explicit randomness for building a forward packet (used by test vectors).
pub struct ForwardSecrets {
    /// One ephemeral key per hop (the last one also keys the recipient's layer).
    pub hops: Vec<SecretKey>,
    /// The random id placed in the deliver command.
    pub surb_id: [u8; ID_LEN],
}

impl ForwardSecrets {
    /// Fresh randomness for a route of `n` hops.
    pub fn random<R: RngCore + CryptoRng>(rng: &mut R, n: usize) -> Self {
        let key = |rng: &mut R| {
            let mut b = [0u8; 32];
            rng.fill_bytes(&mut b);
            SecretKey::from_bytes(b)
        };
        let hops = (0..n).map(|_| key(rng)).collect();
        let mut surb_id = [0u8; ID_LEN];
        rng.fill_bytes(&mut surb_id);
        ForwardSecrets { hops, surb_id }
    }
}

/// Builds a forward packet to `mailbox` at the last hop of `route`, end-to-end encrypted to
/// `recipient` (an X25519 public key), carrying `ack` for the last hop to send after storing.
pub fn create_forward_with(
    route: &[RouteHop],
    mailbox: &MailboxId,
    recipient: &[u8; KEY_LEN],
    ack: Option<&Surb>,
    body: &[u8],
    secrets: &ForwardSecrets,
) -> Result<Packet, PacketError> {
    let shared = agree_each(&forward_pairs(route, recipient, secrets)?)?;
    assemble_forward(route, mailbox, recipient, ack, body, secrets, &shared)
}

/// The agreements a forward packet needs: one per hop, then the recipient's (which reuses the
/// last hop's ephemeral: one key, two recipients).
pub(crate) fn forward_pairs<'a>(
    route: &'a [RouteHop],
    recipient: &'a [u8; KEY_LEN],
    secrets: &'a ForwardSecrets,
) -> Result<Vec<(&'a SecretKey, &'a [u8; KEY_LEN])>, PacketError> {
    let n = route.len();
    if n == 0 || n > MAX_HOPS || secrets.hops.len() != n {
        return Err(PacketError::BadRoute(n));
    }
    let mut pairs: Vec<_> = secrets
        .hops
        .iter()
        .zip(route.iter().map(|r| &r.public))
        .collect();
    pairs.push((&secrets.hops[n - 1], recipient));
    Ok(pairs)
}

/// Builds a forward packet from the agreed secrets of [`forward_pairs`] (same order).
pub(crate) fn assemble_forward(
    route: &[RouteHop],
    mailbox: &MailboxId,
    recipient: &[u8; KEY_LEN],
    ack: Option<&Surb>,
    body: &[u8],
    secrets: &ForwardSecrets,
    shared: &[[u8; KEY_LEN]],
) -> Result<Packet, PacketError> {
    if body.len() > BODY_SIZE {
        return Err(PacketError::BodyTooLong(body.len()));
    }
    let n = route.len();
    if shared.len() != n + 1 || secrets.hops.len() != n {
        return Err(PacketError::BadRoute(n));
    }
    let last = RoutingCommand::Deliver {
        mailbox: *mailbox,
        flags: if ack.is_some() { FLAG_ACK } else { 0 },
        surb_id: secrets.surb_id,
    };
    let hops = HopSecret::zip(&secrets.hops, shared);
    let (header, keys) = build_header(route, &last, &hops)?;
    let mut p = Box::new([0u8; PACKET_SIZE]);
    p[..HEADER_SIZE].copy_from_slice(&header);
    let payload = &mut p[HEADER_SIZE..];
    if let Some(a) = ack {
        payload[ZERO_LEN..ZERO_LEN + SURB_SIZE].copy_from_slice(&a.to_bytes());
    }
    let e2e = &mut payload[ZERO_LEN + SURB_SIZE..];
    e2e[ZERO_LEN..ZERO_LEN + body.len()].copy_from_slice(body);
    let rk = HopKeys::derive(&shared[n], &hops[n - 1].alpha, recipient);
    lioness::encrypt(&rk.payload, e2e);
    for k in keys.iter().rev() {
        lioness::encrypt(&k.payload, payload);
    }
    Ok(Packet(p))
}

/// Builds a forward packet with fresh randomness; see [`create_forward_with`].
pub fn create_forward<R: RngCore + CryptoRng>(
    rng: &mut R,
    route: &[RouteHop],
    mailbox: &MailboxId,
    recipient: &[u8; KEY_LEN],
    ack: Option<&Surb>,
    body: &[u8],
) -> Result<Packet, PacketError> {
    let s = ForwardSecrets::random(rng, route.len());
    create_forward_with(route, mailbox, recipient, ack, body, &s)
}

/// Processes one layer with the node's mix key.
///
/// Order: length/version, DH, key schedule, MAC, then `replay_fresh(tag)` (which must record
/// the tag and return `false` if it was already seen), then the routing command and payload.
pub fn process(
    key: &SecretKey,
    bytes: &[u8],
    replay_fresh: &mut dyn FnMut(&[u8; TAG_LEN]) -> bool,
) -> Result<Processed, PacketError> {
    if bytes.len() != PACKET_SIZE {
        return Err(PacketError::WrongLength(bytes.len()));
    }
    if bytes[0] != VERSION {
        return Err(PacketError::WrongVersion(bytes[0]));
    }
    let mut alpha = [0u8; KEY_LEN];
    alpha.copy_from_slice(&bytes[1..33]);
    let beta = &bytes[49..HEADER_SIZE];
    let s = key.dh(&alpha)?;
    let k = HopKeys::derive(&s, &alpha, &key.public());
    if !ct_eq(&header_mac(&k.mac, VERSION, &alpha, beta), &bytes[33..49]) {
        return Err(PacketError::BadMac);
    }
    if !replay_fresh(&k.tag) {
        return Err(PacketError::Replay);
    }
    let mut ext = [0u8; BETA_LEN + HOP_LEN];
    ext[..BETA_LEN].copy_from_slice(beta);
    xor_stream(&k.header, &mut ext);
    let cmd = RoutingCommand::decode(&ext[..HOP_LEN])?;
    let mut payload = Box::new([0u8; PAYLOAD_SIZE]);
    payload.copy_from_slice(&bytes[HEADER_SIZE..]);
    lioness::decrypt(&k.payload, &mut payload[..]);
    match cmd {
        RoutingCommand::Relay {
            next,
            delay_us,
            alpha,
            mac,
        } => {
            let mut p = Box::new([0u8; PACKET_SIZE]);
            p[0] = VERSION;
            p[1..33].copy_from_slice(&alpha);
            p[33..49].copy_from_slice(&mac);
            p[49..HEADER_SIZE].copy_from_slice(&ext[HOP_LEN..]);
            p[HEADER_SIZE..].copy_from_slice(&payload[..]);
            Ok(Processed::Relay {
                next,
                delay_us,
                packet: Packet(p),
            })
        }
        RoutingCommand::Deliver {
            mailbox,
            flags,
            surb_id,
        } => Ok(Processed::Deliver {
            mailbox,
            delivered: Delivered {
                flags,
                surb_id,
                recipient_alpha: alpha,
                payload,
            },
        }),
    }
}
