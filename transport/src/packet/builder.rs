//! A sender's packet builder: the same packets as [`create_forward`] and [`create_surb`], built
//! with the fixed-base tables of [`KeyTables`] and one batched inversion per packet.
//!
//! [`create_forward`]: super::create_forward
//! [`create_surb`]: super::create_surb

use rand::{CryptoRng, RngCore};

use super::crypto::{SecretKey, KEY_LEN};
use super::kem::{KeyTables, DEFAULT_TABLE_CAPACITY};
use super::routing::MailboxId;
use super::sphinx::{assemble_forward, forward_pairs, ForwardSecrets, Packet, RouteHop};
use super::surb::{assemble_surb, Surb, SurbRandomness, SurbSecret};
use super::PacketError;

/// Where a packet's acknowledgement travels: the route back and the sender's own mailbox.
#[derive(Debug, Clone, Copy)]
pub struct AckRoute<'a> {
    /// The reply block's route (mix layers, then the sender's provider).
    pub route: &'a [RouteHop],
    /// The sender's mailbox at the last hop of `route`.
    pub mailbox: &'a MailboxId,
}

/// Builds packets for one sender, keeping a table per public key it encrypts to.
#[derive(Debug)]
pub struct PacketBuilder {
    tables: KeyTables,
}

impl Default for PacketBuilder {
    fn default() -> Self {
        Self::new(DEFAULT_TABLE_CAPACITY)
    }
}

impl PacketBuilder {
    /// A builder that caches at most `capacity` key tables.
    pub fn new(capacity: usize) -> Self {
        PacketBuilder {
            tables: KeyTables::new(capacity),
        }
    }

    /// The key tables, e.g. to prepare the keys of a new directory document ahead of use.
    pub fn tables(&self) -> &KeyTables {
        &self.tables
    }

    /// A forward packet, as [`super::create_forward`].
    pub fn forward<R: RngCore + CryptoRng>(
        &self,
        rng: &mut R,
        route: &[RouteHop],
        mailbox: &MailboxId,
        recipient: &[u8; KEY_LEN],
        ack: Option<&Surb>,
        body: &[u8],
    ) -> Result<Packet, PacketError> {
        let secrets = ForwardSecrets::random(rng, route.len());
        let shared = self
            .tables
            .agree_all(&forward_pairs(route, recipient, &secrets)?)?;
        assemble_forward(route, mailbox, recipient, ack, body, &secrets, &shared)
    }

    /// A reply block, as [`super::create_surb`].
    pub fn surb<R: RngCore + CryptoRng>(
        &self,
        rng: &mut R,
        route: &[RouteHop],
        mailbox: &MailboxId,
    ) -> Result<(Surb, SurbSecret), PacketError> {
        let r = SurbRandomness::random(rng, route.len());
        let pairs: Vec<_> = r.eph.iter().zip(route.iter().map(|h| &h.public)).collect();
        let shared = self.tables.agree_all(&pairs)?;
        assemble_surb(route, mailbox, &r.eph, r.id, r.seed, &shared)
    }

    /// A forward packet carrying its own SURB-ACK over `back`, with fresh randomness: what a
    /// client sends for every fragment and every loop. Returns the packet and the secret that
    /// recognises the acknowledgement.
    pub fn forward_acked<R: RngCore + CryptoRng>(
        &self,
        rng: &mut R,
        route: &[RouteHop],
        mailbox: &MailboxId,
        recipient: &[u8; KEY_LEN],
        back: AckRoute<'_>,
        body: &[u8],
    ) -> Result<(Packet, SurbSecret), PacketError> {
        let ack = SurbRandomness::random(rng, back.route.len());
        let fwd = ForwardSecrets::random(rng, route.len());
        self.forward_acked_with(route, mailbox, recipient, back, body, &fwd, &ack)
    }

    /// [`Self::forward_acked`] with explicit randomness; the agreements of the packet and its
    /// reply block share one batched inversion.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_acked_with(
        &self,
        route: &[RouteHop],
        mailbox: &MailboxId,
        recipient: &[u8; KEY_LEN],
        back: AckRoute<'_>,
        body: &[u8],
        fwd: &ForwardSecrets,
        ack: &SurbRandomness,
    ) -> Result<(Packet, SurbSecret), PacketError> {
        if ack.eph.len() != back.route.len() {
            return Err(PacketError::BadRoute(back.route.len()));
        }
        let mut pairs: Vec<(&SecretKey, &[u8; KEY_LEN])> = ack
            .eph
            .iter()
            .zip(back.route.iter().map(|h| &h.public))
            .collect();
        let n_back = pairs.len();
        pairs.extend(forward_pairs(route, recipient, fwd)?);
        let shared = self.tables.agree_all(&pairs)?;
        let (surb, secret) = assemble_surb(
            back.route,
            back.mailbox,
            &ack.eph,
            ack.id,
            ack.seed,
            &shared[..n_back],
        )?;
        let packet = assemble_forward(
            route,
            mailbox,
            recipient,
            Some(&surb),
            body,
            fwd,
            &shared[n_back..],
        )?;
        Ok((packet, secret))
    }
}
