//! Fixed-size link frames: every frame carries one packet-sized body, whatever its kind.

use crate::packet::{NodeId, ID_LEN, PACKET_SIZE};
use thiserror::Error;

/// Plaintext length of a frame: kind byte ‖ next hop ‖ body.
pub const FRAME_PLAIN: usize = 1 + ID_LEN + PACKET_SIZE;
/// Length of the AEAD tag added by the Noise transport.
pub const TAG: usize = 16;
/// Length of every frame on the wire.
pub const FRAME_WIRE: usize = FRAME_PLAIN + TAG;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// A Sphinx packet for the receiver to process.
    Packet = 0,
    /// A mailbox poll (client → provider); the body is ignored.
    Poll = 1,
    /// One answer to a poll (provider → client): a stored delivery or a dummy.
    Mailbox = 2,
    /// The sender switches to a new key after this frame.
    Rekey = 3,
    /// Link padding with no content.
    Padding = 4,
    /// A packet a gateway hands to its provider for injection towards `next` (the first mix);
    /// the provider relays it without a layer of its own.
    Submit = 5,
}

/// Why bytes were not a valid frame.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Wrong plaintext length.
    #[error("frame has wrong length {0}")]
    WrongLength(usize),
    /// Unknown kind byte.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
}

/// A decoded frame.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    /// The kind.
    pub kind: FrameKind,
    /// Next hop for [`FrameKind::Submit`] (zero otherwise).
    pub next: NodeId,
    /// The body, always [`PACKET_SIZE`] bytes.
    pub body: Box<[u8; PACKET_SIZE]>,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Frame({:?})", self.kind)
    }
}

impl Frame {
    /// A frame whose body is `data` padded with zeros (`data` longer than a body is cut).
    pub fn new(kind: FrameKind, data: &[u8]) -> Self {
        let mut body = Box::new([0u8; PACKET_SIZE]);
        let n = data.len().min(PACKET_SIZE);
        body[..n].copy_from_slice(&data[..n]);
        Frame {
            kind,
            next: [0; ID_LEN],
            body,
        }
    }

    /// A [`FrameKind::Submit`] frame: `packet` to be injected towards `next`.
    pub fn submit(next: NodeId, packet: &[u8]) -> Self {
        let mut f = Frame::new(FrameKind::Submit, packet);
        f.next = next;
        f
    }

    /// Encodes into [`FRAME_PLAIN`] bytes.
    pub fn encode(&self, out: &mut [u8; FRAME_PLAIN]) {
        out[0] = self.kind as u8;
        out[1..1 + ID_LEN].copy_from_slice(&self.next);
        out[1 + ID_LEN..].copy_from_slice(&self.body[..]);
    }

    /// Decodes [`FRAME_PLAIN`] bytes.
    pub fn decode(b: &[u8]) -> Result<Self, FrameError> {
        if b.len() != FRAME_PLAIN {
            return Err(FrameError::WrongLength(b.len()));
        }
        let kind = match b[0] {
            0 => FrameKind::Packet,
            1 => FrameKind::Poll,
            2 => FrameKind::Mailbox,
            3 => FrameKind::Rekey,
            4 => FrameKind::Padding,
            5 => FrameKind::Submit,
            k => return Err(FrameError::UnknownKind(k)),
        };
        let mut next = [0u8; ID_LEN];
        next.copy_from_slice(&b[1..1 + ID_LEN]);
        let mut body = Box::new([0u8; PACKET_SIZE]);
        body.copy_from_slice(&b[1 + ID_LEN..]);
        Ok(Frame { kind, next, body })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn decode_never_panics(b in proptest::collection::vec(any::<u8>(), 0..FRAME_PLAIN + 4)) {
            if let Ok(f) = Frame::decode(&b) {
                let mut out = [0u8; FRAME_PLAIN];
                f.encode(&mut out);
                prop_assert_eq!(&out[..], &b[..]);
            }
        }
    }
}
