//! Primitive operations: X25519, the per-hop key schedule, the header stream cipher and MAC.

use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, X25519};
use chacha20::cipher::{KeyIvInit, StreamCipher};
use chacha20::ChaCha20;
use zeroize::Zeroize;

use super::PacketError;

/// Length of an X25519 key or shared secret.
pub const KEY_LEN: usize = 32;
/// Length of the truncated header MAC.
pub const MAC_LEN: usize = 16;
/// Length of the per-hop replay tag.
pub const TAG_LEN: usize = 16;

const KDF_CONTEXT: &str = "mixgate sphinx v1 2026-11 hop key schedule";
const MAC_CONTEXT: &str = "mixgate sphinx v1 2026-11 header mac";

/// An X25519 secret key, kept both as bytes and as a pre-parsed key for fast agreement.
pub struct SecretKey {
    bytes: [u8; KEY_LEN],
    parsed: PrivateKey,
    public: [u8; KEY_LEN],
}

impl SecretKey {
    /// Builds a key from 32 secret bytes (clamping happens inside X25519).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        // X25519 accepts every 32-byte string as a secret key, so parsing cannot fail; parsing
        // also computes the public key (one fixed-base multiplication).
        #[allow(clippy::expect_used)]
        let parsed = PrivateKey::from_private_key(&X25519, &bytes).expect("x25519 secret");
        let mut public = [0u8; KEY_LEN];
        #[allow(clippy::expect_used)]
        public.copy_from_slice(parsed.compute_public_key().expect("x25519 public").as_ref());
        Self {
            bytes,
            parsed,
            public,
        }
    }

    /// A fresh random key from the operating system's generator.
    pub fn random() -> Self {
        let mut b = [0u8; KEY_LEN];
        rand::Rng::fill(&mut rand::rngs::OsRng, &mut b[..]);
        Self::from_bytes(b)
    }

    /// The public key.
    pub fn public(&self) -> [u8; KEY_LEN] {
        self.public
    }

    /// The raw secret bytes (for persisting node keys).
    pub fn to_bytes(&self) -> [u8; KEY_LEN] {
        self.bytes
    }

    /// X25519 with a peer public key; refuses the all-zero output of low-order points.
    pub fn dh(&self, peer: &[u8; KEY_LEN]) -> Result<[u8; KEY_LEN], PacketError> {
        let out = agreement::agree(
            &self.parsed,
            UnparsedPublicKey::new(&X25519, peer),
            PacketError::BadKey,
            |s| {
                let mut o = [0u8; KEY_LEN];
                o.copy_from_slice(s);
                Ok(o)
            },
        )?;
        if out == [0u8; KEY_LEN] {
            return Err(PacketError::BadKey);
        }
        Ok(out)
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SecretKey(public={})",
            data_encoding::HEXLOWER.encode(&self.public)
        )
    }
}

/// The keys one hop derives from its shared secret.
#[derive(Clone)]
pub struct HopKeys {
    /// ChaCha20 key for the routing-information stream.
    pub header: [u8; 32],
    /// BLAKE3 key for the header MAC.
    pub mac: [u8; 32],
    /// The four wide-block-cipher keys for the payload.
    pub payload: [[u8; 32]; 4],
    /// The replay tag that identifies this packet at this hop.
    pub tag: [u8; TAG_LEN],
}

impl Drop for HopKeys {
    fn drop(&mut self) {
        self.header.zeroize();
        self.mac.zeroize();
        self.payload.zeroize();
    }
}

impl HopKeys {
    /// Key schedule: BLAKE3-derive_key(context, s ‖ α ‖ node public key), read as an XOF.
    pub fn derive(shared: &[u8; 32], alpha: &[u8; 32], node_public: &[u8; 32]) -> Self {
        let mut h = blake3::Hasher::new_derive_key(KDF_CONTEXT);
        h.update(shared);
        h.update(alpha);
        h.update(node_public);
        let mut out = [0u8; 32 * 6 + TAG_LEN];
        h.finalize_xof().fill(&mut out);
        let mut k = HopKeys {
            header: [0; 32],
            mac: [0; 32],
            payload: [[0; 32]; 4],
            tag: [0; TAG_LEN],
        };
        k.header.copy_from_slice(&out[0..32]);
        k.mac.copy_from_slice(&out[32..64]);
        for (i, p) in k.payload.iter_mut().enumerate() {
            p.copy_from_slice(&out[64 + 32 * i..96 + 32 * i]);
        }
        k.tag.copy_from_slice(&out[192..192 + TAG_LEN]);
        out.zeroize();
        k
    }

    /// Payload keys derived from a single 32-byte seed (reply-block and end-to-end layers).
    pub fn payload_from_seed(seed: &[u8; 32]) -> [[u8; 32]; 4] {
        let mut h = blake3::Hasher::new_derive_key("mixgate sphinx v1 2026-11 payload seed");
        h.update(seed);
        let mut out = [[0u8; 32]; 4];
        let mut r = h.finalize_xof();
        for o in out.iter_mut() {
            r.fill(o);
        }
        out
    }
}

/// XORs ChaCha20(key, nonce 0) keystream into `buf`.
pub fn xor_stream(key: &[u8; 32], buf: &mut [u8]) {
    let mut c = ChaCha20::new(key.into(), &[0u8; 12].into());
    c.apply_keystream(buf);
}

/// The header MAC: BLAKE3 keyed hash over version ‖ α ‖ β, truncated to [`MAC_LEN`].
pub fn header_mac(key: &[u8; 32], version: u8, alpha: &[u8; 32], beta: &[u8]) -> [u8; MAC_LEN] {
    let mut h = blake3::Hasher::new_keyed(key);
    h.update(MAC_CONTEXT.as_bytes());
    h.update(&[version]);
    h.update(alpha);
    h.update(beta);
    let mut out = [0u8; MAC_LEN];
    out.copy_from_slice(&h.finalize().as_bytes()[..MAC_LEN]);
    out
}

/// Constant-time equality of two byte strings of equal length.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut d = 0u8;
    for (x, y) in a.iter().zip(b) {
        d |= x ^ y;
    }
    d == 0
}
