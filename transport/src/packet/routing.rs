//! Per-hop routing commands carried inside the encrypted header.

use super::crypto::{KEY_LEN, MAC_LEN};
use super::PacketError;

/// Length of a node identifier or mailbox identifier.
pub const ID_LEN: usize = 16;
/// Length of one encoded routing command (one hop's slice of the header).
pub const HOP_LEN: usize = 1 + ID_LEN + 4 + KEY_LEN + MAC_LEN;

/// A 16-byte node identifier (BLAKE3 of the node's identity key, truncated).
pub type NodeId = [u8; ID_LEN];
/// A 16-byte mailbox identifier at a provider.
pub type MailboxId = [u8; ID_LEN];

const CMD_RELAY: u8 = 1;
const CMD_DELIVER: u8 = 2;

/// Flag in a deliver command: the payload starts with an acknowledgement reply block.
pub const FLAG_ACK: u8 = 1;

/// What one hop must do with the packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoutingCommand {
    /// Hold for `delay_us` microseconds, then send to `next` with the given header head.
    Relay {
        /// The next node.
        next: NodeId,
        /// Sender-chosen delay at this hop, in microseconds.
        delay_us: u32,
        /// The next hop's ephemeral public key.
        alpha: [u8; KEY_LEN],
        /// The next hop's header MAC.
        mac: [u8; MAC_LEN],
    },
    /// This is the last hop: store the payload in `mailbox`.
    Deliver {
        /// The mailbox (at this provider) or the node's own id for loop cover.
        mailbox: MailboxId,
        /// Flags, e.g. [`FLAG_ACK`].
        flags: u8,
        /// Identifier the recipient uses to find the reply-block secrets (random otherwise).
        surb_id: [u8; ID_LEN],
    },
}

impl RoutingCommand {
    /// Encodes into exactly [`HOP_LEN`] bytes.
    pub fn encode(&self) -> [u8; HOP_LEN] {
        let mut b = [0u8; HOP_LEN];
        match self {
            RoutingCommand::Relay {
                next,
                delay_us,
                alpha,
                mac,
            } => {
                b[0] = CMD_RELAY;
                b[1..17].copy_from_slice(next);
                b[17..21].copy_from_slice(&delay_us.to_be_bytes());
                b[21..53].copy_from_slice(alpha);
                b[53..69].copy_from_slice(mac);
            }
            RoutingCommand::Deliver {
                mailbox,
                flags,
                surb_id,
            } => {
                b[0] = CMD_DELIVER;
                b[1..17].copy_from_slice(mailbox);
                b[17] = *flags;
                b[21..37].copy_from_slice(surb_id);
            }
        }
        b
    }

    /// Decodes a command; unknown commands and non-zero reserved bytes are refused.
    pub fn decode(b: &[u8]) -> Result<Self, PacketError> {
        if b.len() < HOP_LEN {
            return Err(PacketError::BadRouting);
        }
        let id = |r: std::ops::Range<usize>| -> [u8; ID_LEN] {
            let mut o = [0u8; ID_LEN];
            o.copy_from_slice(&b[r]);
            o
        };
        let key = |r: std::ops::Range<usize>| -> [u8; KEY_LEN] {
            let mut o = [0u8; KEY_LEN];
            o.copy_from_slice(&b[r]);
            o
        };
        match b[0] {
            CMD_RELAY => Ok(RoutingCommand::Relay {
                next: id(1..17),
                delay_us: u32::from_be_bytes([b[17], b[18], b[19], b[20]]),
                alpha: key(21..53),
                mac: id(53..69),
            }),
            CMD_DELIVER => {
                if b[18..21] != [0, 0, 0]
                    || b[17] & !FLAG_ACK != 0
                    || b[37..HOP_LEN].iter().any(|x| *x != 0)
                {
                    return Err(PacketError::BadRouting);
                }
                Ok(RoutingCommand::Deliver {
                    mailbox: id(1..17),
                    flags: b[17],
                    surb_id: id(21..37),
                })
            }
            _ => Err(PacketError::BadRouting),
        }
    }
}
