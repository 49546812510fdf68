//! The signed directory document: nodes, layers, keys, addresses and traffic parameters.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::packet::{NodeId, PACKET_SIZE};

/// Version of the document format.
pub const DOCUMENT_VERSION: u32 = 1;
/// Number of mix layers between providers.
pub const MIX_LAYERS: u8 = 3;

/// Why a document or registration was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DirectoryError {
    /// Bytes that are not a document.
    #[error("malformed document: {0}")]
    Malformed(String),
    /// A document format version this node does not speak.
    #[error("unsupported document version {0}")]
    WrongVersion(u32),
    /// Fewer valid signatures from trusted authorities than required.
    #[error("not enough valid signatures ({valid} of {needed})")]
    Signatures {
        /// Valid signatures by distinct trusted authorities.
        valid: usize,
        /// The threshold.
        needed: usize,
    },
    /// The document is not valid now.
    #[error("document for epoch {epoch} not valid at {now_ms} ms")]
    Expired {
        /// Its epoch.
        epoch: u64,
        /// The time it was checked.
        now_ms: u64,
    },
    /// A registration whose signature or id does not match its identity key.
    #[error("bad registration: {0}")]
    BadRegistration(&'static str),
    /// Network or protocol failure talking to a directory.
    #[error("directory i/o: {0}")]
    Io(String),
}

/// What a node does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// A mix in layer 1..=3.
    Mix {
        /// The layer.
        layer: u8,
    },
    /// A provider: entry, exit and mailbox.
    Provider,
}

/// One node as listed in a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeDescriptor {
    /// Identifier: BLAKE3 of the identity key, first 16 bytes.
    #[serde(with = "super::hexser")]
    pub id: NodeId,
    /// Ed25519 identity key.
    #[serde(with = "super::hexser")]
    pub identity: [u8; 32],
    /// Role and layer.
    pub role: Role,
    /// `host:port` of the Noise listener.
    pub address: String,
    /// Noise static key for links.
    #[serde(with = "super::hexser")]
    pub link_key: [u8; 32],
    /// Mix (Sphinx) public key for this document's epoch.
    #[serde(with = "super::hexser")]
    pub mix_key: [u8; 32],
}

/// Traffic parameters every client and node must use, so that all look alike.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrafficParams {
    /// Client send stream rate λ (packets/s): a real packet if queued, loop cover otherwise.
    pub lambda_per_s: f64,
    /// Client loop-cover stream rate (packets/s).
    pub loop_per_s: f64,
    /// Mix node loop-cover rate (packets/s).
    pub mix_loop_per_s: f64,
    /// Mean per-hop delay μ at each mix layer, in milliseconds (exponential).
    pub mu_ms: f64,
    /// Packet size on every link (must equal this build's [`PACKET_SIZE`]).
    pub packet_size: u32,
    /// Mailbox polls per second.
    pub poll_per_s: f64,
    /// Answers per poll (padded with dummies).
    pub poll_batch: u32,
    /// Every link speaks the hybrid post-quantum Noise pattern
    /// ([`crate::link::NOISE_PARAMS_PQ`]) instead of the classical one. Absent in older
    /// documents (classical).
    #[serde(default)]
    pub pq_links: bool,
}

impl Default for TrafficParams {
    fn default() -> Self {
        TrafficParams {
            lambda_per_s: 4.0,
            loop_per_s: 0.5,
            mix_loop_per_s: 1.0,
            mu_ms: 50.0,
            packet_size: PACKET_SIZE as u32,
            poll_per_s: 2.0,
            poll_batch: 8,
            pq_links: false,
        }
    }
}

impl TrafficParams {
    /// Packets per second that come back to an idle client's mailbox: every cover packet and
    /// every loop returns together with its acknowledgement.
    pub fn idle_return_rate(&self) -> f64 {
        2.0 * (self.lambda_per_s + self.loop_per_s)
    }

    /// Packets per second a client can drain from its mailbox.
    pub fn poll_capacity(&self) -> f64 {
        self.poll_per_s * f64::from(self.poll_batch)
    }

    /// Refuses parameters under which a client's own cover would fill its mailbox faster
    /// than it polls it (messages would then wait behind an ever-growing queue).
    pub fn check(&self) -> Result<(), DirectoryError> {
        let ok = self.lambda_per_s > 0.0
            && self.loop_per_s >= 0.0
            && self.mu_ms >= 0.0
            && self.poll_per_s > 0.0
            && self.poll_capacity() >= 1.25 * self.idle_return_rate();
        if ok {
            Ok(())
        } else {
            Err(DirectoryError::Malformed(
                "traffic parameters: poll capacity must exceed 1.25 × 2(λ + loop)".into(),
            ))
        }
    }
}

/// The content of a directory document for one epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    /// [`DOCUMENT_VERSION`].
    pub version: u32,
    /// The epoch number.
    pub epoch: u64,
    /// Start of validity (unix ms).
    pub valid_from_ms: u64,
    /// End of validity (unix ms), including a grace period.
    pub valid_until_ms: u64,
    /// Traffic parameters.
    pub params: TrafficParams,
    /// All nodes.
    pub nodes: Vec<NodeDescriptor>,
    /// Published gateway descriptors (opaque to the transport, signed by each gateway).
    #[serde(default)]
    pub gateways: Vec<GatewayEntry>,
}

/// A gateway's self-signed descriptor as listed in the document. The content (its transport
/// [`crate::client::Address`], Olm keys, ...) is defined by the gateway; the directory only checks
/// the signature and lists it, so every gateway downloads every descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayEntry {
    /// The gateway's Ed25519 identity key.
    #[serde(with = "super::hexser")]
    pub identity: [u8; 32],
    /// The descriptor text (JSON chosen by the gateway).
    pub descriptor: String,
    /// Signature by `identity` over the context and the descriptor text.
    #[serde(with = "super::hexser")]
    pub signature: [u8; 64],
}

const GATEWAY_CONTEXT: &[u8] = b"mixgate gateway descriptor v1\n";

/// Largest descriptor text accepted.
pub const MAX_DESCRIPTOR: usize = 8 * 1024;

impl GatewayEntry {
    /// Signs a descriptor with the gateway's identity key.
    pub fn sign(descriptor: String, key: &SigningKey) -> Self {
        let mut m = GATEWAY_CONTEXT.to_vec();
        m.extend_from_slice(descriptor.as_bytes());
        GatewayEntry {
            identity: key.verifying_key().to_bytes(),
            signature: key.sign(&m).to_bytes(),
            descriptor,
        }
    }

    /// Checks size and signature.
    pub fn verify(&self) -> Result<(), DirectoryError> {
        if self.descriptor.len() > MAX_DESCRIPTOR {
            return Err(DirectoryError::BadRegistration("descriptor too large"));
        }
        let vk = VerifyingKey::from_bytes(&self.identity)
            .map_err(|_| DirectoryError::BadRegistration("identity key"))?;
        let mut m = GATEWAY_CONTEXT.to_vec();
        m.extend_from_slice(self.descriptor.as_bytes());
        vk.verify(&m, &Signature::from_bytes(&self.signature))
            .map_err(|_| DirectoryError::BadRegistration("signature"))
    }
}

impl Document {
    /// Mixes of one layer.
    pub fn layer(&self, layer: u8) -> impl Iterator<Item = &NodeDescriptor> {
        self.nodes
            .iter()
            .filter(move |n| n.role == Role::Mix { layer })
    }

    /// All providers.
    pub fn providers(&self) -> impl Iterator<Item = &NodeDescriptor> {
        self.nodes.iter().filter(|n| n.role == Role::Provider)
    }

    /// Looks a node up by id.
    pub fn node(&self, id: &NodeId) -> Option<&NodeDescriptor> {
        self.nodes.iter().find(|n| &n.id == id)
    }

    /// A gateway's descriptor by identity key.
    pub fn gateway(&self, identity: &[u8; 32]) -> Option<&GatewayEntry> {
        self.gateways.iter().find(|g| &g.identity == identity)
    }

    /// Looks a node up by its link key.
    pub fn node_by_link_key(&self, key: &[u8; 32]) -> Option<&NodeDescriptor> {
        self.nodes.iter().find(|n| &n.link_key == key)
    }
}

/// One authority's signature over the document bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthoritySignature {
    /// The authority's Ed25519 key.
    #[serde(with = "super::hexser")]
    pub authority: [u8; 32],
    /// Signature over the exact `document` string bytes.
    #[serde(with = "super::hexser")]
    pub signature: [u8; 64],
}

/// A document as published: its exact JSON text plus any number of authority signatures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedDocument {
    /// The document's JSON text (signed byte for byte; no canonicalisation needed).
    pub document: String,
    /// Signatures, one per authority.
    pub signatures: Vec<AuthoritySignature>,
}

const SIGN_CONTEXT: &[u8] = b"mixgate directory document v1\n";

pub(crate) fn signed_bytes(doc: &str) -> Vec<u8> {
    let mut m = SIGN_CONTEXT.to_vec();
    m.extend_from_slice(doc.as_bytes());
    m
}

impl SignedDocument {
    /// Serialises and signs `doc` with one authority.
    pub fn sign(doc: &Document, key: &SigningKey) -> Result<Self, DirectoryError> {
        let document =
            serde_json::to_string(doc).map_err(|e| DirectoryError::Malformed(e.to_string()))?;
        let mut s = SignedDocument {
            document,
            signatures: vec![],
        };
        s.add_signature(key);
        Ok(s)
    }

    /// Adds another authority's signature.
    pub fn add_signature(&mut self, key: &SigningKey) {
        let sig = key.sign(&signed_bytes(&self.document));
        self.signatures.push(AuthoritySignature {
            authority: key.verifying_key().to_bytes(),
            signature: sig.to_bytes(),
        });
    }

    /// Verifies: at least `threshold` distinct trusted authorities signed, the version is
    /// known, the parameters match this build, and `now_ms` is inside the validity window.
    pub fn verify(
        &self,
        authorities: &[[u8; 32]],
        threshold: usize,
        now_ms: u64,
    ) -> Result<Document, DirectoryError> {
        let msg = signed_bytes(&self.document);
        let mut seen: Vec<[u8; 32]> = vec![];
        for s in &self.signatures {
            if !authorities.contains(&s.authority) || seen.contains(&s.authority) {
                continue;
            }
            let Ok(vk) = VerifyingKey::from_bytes(&s.authority) else {
                continue;
            };
            if vk
                .verify(&msg, &Signature::from_bytes(&s.signature))
                .is_ok()
            {
                seen.push(s.authority);
            }
        }
        let needed = threshold.max(1);
        if seen.len() < needed {
            return Err(DirectoryError::Signatures {
                valid: seen.len(),
                needed,
            });
        }
        let doc: Document = serde_json::from_str(&self.document)
            .map_err(|e| DirectoryError::Malformed(e.to_string()))?;
        if doc.version != DOCUMENT_VERSION {
            return Err(DirectoryError::WrongVersion(doc.version));
        }
        doc.params.check()?;
        if doc.params.packet_size as usize != PACKET_SIZE {
            return Err(DirectoryError::Malformed(
                "packet size differs from this build".into(),
            ));
        }
        if now_ms < doc.valid_from_ms || now_ms >= doc.valid_until_ms {
            return Err(DirectoryError::Expired {
                epoch: doc.epoch,
                now_ms,
            });
        }
        Ok(doc)
    }
}

/// A mix key announced for one epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochKey {
    /// The epoch.
    pub epoch: u64,
    /// The X25519 public key.
    #[serde(with = "super::hexser")]
    pub key: [u8; 32],
}

/// What a node sends to register: its descriptor fields and mix keys for upcoming epochs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// Ed25519 identity key.
    #[serde(with = "super::hexser")]
    pub identity: [u8; 32],
    /// Role and layer.
    pub role: Role,
    /// `host:port` of the Noise listener.
    pub address: String,
    /// Noise static key.
    #[serde(with = "super::hexser")]
    pub link_key: [u8; 32],
    /// Mix keys for the current and next epochs.
    pub mix_keys: Vec<EpochKey>,
}

/// A registration signed by the node's identity key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedRegistration {
    /// The registration's JSON text.
    pub registration: String,
    /// Signature by the identity key.
    #[serde(with = "super::hexser")]
    pub signature: [u8; 64],
}

const REG_CONTEXT: &[u8] = b"mixgate node registration v1\n";

/// The node id for an identity key.
pub fn node_id(identity: &[u8; 32]) -> NodeId {
    let mut id = [0u8; 16];
    id.copy_from_slice(&blake3::hash(identity).as_bytes()[..16]);
    id
}

impl SignedRegistration {
    /// Signs a registration with the node identity key.
    pub fn sign(reg: &Registration, key: &SigningKey) -> Result<Self, DirectoryError> {
        let registration =
            serde_json::to_string(reg).map_err(|e| DirectoryError::Malformed(e.to_string()))?;
        let mut m = REG_CONTEXT.to_vec();
        m.extend_from_slice(registration.as_bytes());
        Ok(SignedRegistration {
            signature: key.sign(&m).to_bytes(),
            registration,
        })
    }

    /// Checks the signature against the identity key inside.
    pub fn verify(&self) -> Result<Registration, DirectoryError> {
        let reg: Registration = serde_json::from_str(&self.registration)
            .map_err(|_| DirectoryError::BadRegistration("malformed"))?;
        let vk = VerifyingKey::from_bytes(&reg.identity)
            .map_err(|_| DirectoryError::BadRegistration("identity key"))?;
        let mut m = REG_CONTEXT.to_vec();
        m.extend_from_slice(self.registration.as_bytes());
        vk.verify(&m, &Signature::from_bytes(&self.signature))
            .map_err(|_| DirectoryError::BadRegistration("signature"))?;
        if let Role::Mix { layer } = reg.role {
            if layer == 0 || layer > MIX_LAYERS {
                return Err(DirectoryError::BadRegistration("layer"));
            }
        }
        if reg
            .mix_keys
            .iter()
            .any(|k| !crate::packet::is_valid_public_key(&k.key))
        {
            return Err(DirectoryError::BadRegistration("mix key"));
        }
        Ok(reg)
    }
}

/// The mailbox id of a gateway at its provider, derived from its link key (so only the
/// holder of that key can poll it).
pub fn mailbox_id(link_key: &[u8; 32]) -> crate::packet::MailboxId {
    let mut id = [0u8; 16];
    id.copy_from_slice(&blake3::derive_key("mixgate mailbox id v1", link_key)[..16]);
    id
}
