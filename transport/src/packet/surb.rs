//! Single-use reply blocks (SURBs).

use rand::{CryptoRng, RngCore};

use super::crypto::{ct_eq, HopKeys, SecretKey, KEY_LEN};
use super::kem::agree_each;
use super::lioness;
use super::routing::{MailboxId, NodeId, RoutingCommand, ID_LEN};
use super::sphinx::{
    build_header, HopSecret, Packet, RouteHop, HEADER_SIZE, PACKET_SIZE, PAYLOAD_SIZE,
    REPLY_BODY_SIZE, ZERO_LEN,
};
use super::PacketError;

/// Serialised size of a [`Surb`]: first hop ‖ header ‖ payload seed.
pub const SURB_SIZE: usize = ID_LEN + HEADER_SIZE + 32;

/// A reply block handed to someone else: they can send one packet back without learning where
/// it goes.
#[derive(Clone, PartialEq, Eq)]
pub struct Surb {
    /// Where the replier must inject the packet.
    pub first_hop: NodeId,
    header: [u8; HEADER_SIZE],
    seed: [u8; 32],
}

impl std::fmt::Debug for Surb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Surb(first_hop={})",
            data_encoding::HEXLOWER.encode(&self.first_hop)
        )
    }
}

/// What the creator of a reply block keeps to decode the reply.
pub struct SurbSecret {
    /// The id that comes back in the deliver command.
    pub id: [u8; ID_LEN],
    hops: Vec<[[u8; 32]; 4]>,
    seed: [[u8; 32]; 4],
}

impl std::fmt::Debug for SurbSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SurbSecret(id={})",
            data_encoding::HEXLOWER.encode(&self.id)
        )
    }
}

impl Surb {
    /// Serialises to [`SURB_SIZE`] bytes.
    pub fn to_bytes(&self) -> [u8; SURB_SIZE] {
        let mut b = [0u8; SURB_SIZE];
        b[..ID_LEN].copy_from_slice(&self.first_hop);
        b[ID_LEN..ID_LEN + HEADER_SIZE].copy_from_slice(&self.header);
        b[ID_LEN + HEADER_SIZE..].copy_from_slice(&self.seed);
        b
    }

    /// Parses [`SURB_SIZE`] bytes.
    pub fn from_bytes(b: &[u8]) -> Result<Self, PacketError> {
        if b.len() != SURB_SIZE {
            return Err(PacketError::WrongLength(b.len()));
        }
        let mut s = Surb {
            first_hop: [0; ID_LEN],
            header: [0; HEADER_SIZE],
            seed: [0; 32],
        };
        s.first_hop.copy_from_slice(&b[..ID_LEN]);
        s.header.copy_from_slice(&b[ID_LEN..ID_LEN + HEADER_SIZE]);
        s.seed.copy_from_slice(&b[ID_LEN + HEADER_SIZE..]);
        Ok(s)
    }

    /// Uses the block: wraps `body` (at most [`REPLY_BODY_SIZE`]) into a packet for `first_hop`.
    pub fn into_packet(self, body: &[u8]) -> Result<(NodeId, Packet), PacketError> {
        if body.len() > REPLY_BODY_SIZE {
            return Err(PacketError::BodyTooLong(body.len()));
        }
        let mut payload = [0u8; PAYLOAD_SIZE];
        payload[ZERO_LEN..ZERO_LEN + body.len()].copy_from_slice(body);
        lioness::encrypt(&HopKeys::payload_from_seed(&self.seed), &mut payload);
        let mut b = vec![0u8; PACKET_SIZE];
        b[..HEADER_SIZE].copy_from_slice(&self.header);
        b[HEADER_SIZE..].copy_from_slice(&payload);
        Ok((self.first_hop, Packet::from_slice(&b)?))
    }
}

impl SurbSecret {
    /// Decodes a reply's delivered payload into its body; fails if it was tampered with.
    pub fn open(
        &self,
        payload: &[u8; PAYLOAD_SIZE],
    ) -> Result<Box<[u8; REPLY_BODY_SIZE]>, PacketError> {
        let mut y = *payload;
        for k in self.hops.iter().rev() {
            lioness::encrypt(k, &mut y);
        }
        lioness::decrypt(&self.seed, &mut y);
        if !ct_eq(&y[..ZERO_LEN], &[0u8; ZERO_LEN]) {
            return Err(PacketError::BadPayload);
        }
        let mut body = Box::new([0u8; REPLY_BODY_SIZE]);
        body.copy_from_slice(&y[ZERO_LEN..]);
        Ok(body)
    }
}

/// Builds a reply block over `route` delivering to `mailbox`, with explicit randomness.
pub fn create_surb_with(
    route: &[RouteHop],
    mailbox: &MailboxId,
    eph: &[SecretKey],
    id: [u8; ID_LEN],
    seed: [u8; 32],
) -> Result<(Surb, SurbSecret), PacketError> {
    let pairs: Vec<_> = eph.iter().zip(route.iter().map(|r| &r.public)).collect();
    let shared = agree_each(&pairs)?;
    assemble_surb(route, mailbox, eph, id, seed, &shared)
}

/// Builds a reply block from each hop's agreed secret (`shared[i]` for `eph[i]` and hop `i`).
pub(crate) fn assemble_surb(
    route: &[RouteHop],
    mailbox: &MailboxId,
    eph: &[SecretKey],
    id: [u8; ID_LEN],
    seed: [u8; 32],
    shared: &[[u8; KEY_LEN]],
) -> Result<(Surb, SurbSecret), PacketError> {
    if eph.len() != route.len() || shared.len() != route.len() {
        return Err(PacketError::BadRoute(route.len()));
    }
    let last = RoutingCommand::Deliver {
        mailbox: *mailbox,
        flags: 0,
        surb_id: id,
    };
    let hops = HopSecret::zip(eph, shared);
    let (header, keys) = build_header(route, &last, &hops)?;
    let surb = Surb {
        first_hop: route[0].id,
        header,
        seed,
    };
    let secret = SurbSecret {
        id,
        hops: keys.iter().map(|k| k.payload).collect(),
        seed: HopKeys::payload_from_seed(&seed),
    };
    Ok((surb, secret))
}

/// Explicit randomness for building a reply block.
pub struct SurbRandomness {
    /// One ephemeral key per hop.
    pub eph: Vec<SecretKey>,
    /// The id that comes back in the deliver command.
    pub id: [u8; ID_LEN],
    /// The seed of the replier's payload layer.
    pub seed: [u8; 32],
}

impl SurbRandomness {
    /// Fresh randomness for a route of `n` hops.
    pub fn random<R: RngCore + CryptoRng>(rng: &mut R, n: usize) -> Self {
        let eph: Vec<SecretKey> = (0..n)
            .map(|_| {
                let mut b = [0u8; 32];
                rng.fill_bytes(&mut b);
                SecretKey::from_bytes(b)
            })
            .collect();
        let mut id = [0u8; ID_LEN];
        rng.fill_bytes(&mut id);
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        SurbRandomness { eph, id, seed }
    }
}

/// Builds a reply block with fresh randomness; see [`create_surb_with`].
pub fn create_surb<R: RngCore + CryptoRng>(
    rng: &mut R,
    route: &[RouteHop],
    mailbox: &MailboxId,
) -> Result<(Surb, SurbSecret), PacketError> {
    let r = SurbRandomness::random(rng, route.len());
    create_surb_with(route, mailbox, &r.eph, r.id, r.seed)
}
