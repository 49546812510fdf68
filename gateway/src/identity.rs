//! The gateway's identity: an Ed25519 key whose public half *is* the server name.
//!
//! The server name is the lowercase, unpadded base32 (RFC 4648) of the 32-byte public key:
//! 52 characters of `a-z2-7`, a valid DNS label and Matrix server name. Any gateway can verify a
//! PDU's signature from the sender's server name alone, with no key server.

use std::path::Path;

use ruma::{serde::Base64, signatures::Ed25519KeyPair, OwnedServerName, ServerName};

/// The key id under which PDUs are signed.
pub const KEY_VERSION: &str = "mixgate";

/// A gateway's signing key and server name.
pub struct Identity {
    keypair: Ed25519KeyPair,
    /// The same key as `keypair`, for signing what is not a Matrix object (the directory
    /// descriptor) and deriving the transport seeds.
    signing_key: ed25519_dalek::SigningKey,
    server_name: OwnedServerName,
    /// Whether the server name is derived from the key (false for a configured local name).
    key_derived: bool,
}

/// Problems loading or creating the identity key.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The key file could not be read or written.
    #[error("identity key file {path}: {source}")]
    Io {
        /// The key file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The key file does not hold a PKCS#8 Ed25519 key.
    #[error("identity key file {path}: not a valid Ed25519 PKCS#8 key: {message}")]
    BadKey {
        /// The key file.
        path: String,
        /// Why.
        message: String,
    },
}

/// The server name derived from an Ed25519 public key.
pub fn server_name_for_key(public_key: &[u8; 32]) -> OwnedServerName {
    let name = data_encoding::BASE32_NOPAD
        .encode(public_key)
        .to_ascii_lowercase();
    ServerName::parse(name).expect("base32 of 32 bytes is a valid server name")
}

/// The public key a key-derived server name stands for, if it is one.
pub fn key_for_server_name(name: &ServerName) -> Option<[u8; 32]> {
    let s = name.as_str();
    if s.len() != 52 {
        return None;
    }
    let bytes = data_encoding::BASE32_NOPAD
        .decode(s.to_ascii_uppercase().as_bytes())
        .ok()?;
    bytes.try_into().ok()
}

impl Identity {
    /// A fresh random identity (memory-only gateways and tests).
    pub fn generate(local_name: Option<&str>) -> Result<Self, IdentityError> {
        let der = Ed25519KeyPair::generate();
        Self::from_der(&der, "<generated>", local_name)
    }

    /// Loads `dir/identity.key`, creating it on first start.
    pub fn load_or_create(dir: &Path, local_name: Option<&str>) -> Result<Self, IdentityError> {
        let path = dir.join("identity.key");
        let shown = path.display().to_string();
        let io = |source| IdentityError::Io {
            path: shown.clone(),
            source,
        };
        let der = match std::fs::read(&path) {
            Ok(der) => der,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).map_err(io)?;
                let der = Ed25519KeyPair::generate();
                write_private(&path, &der).map_err(io)?;
                der.to_vec()
            }
            Err(e) => return Err(io(e)),
        };
        Self::from_der(&der, &shown, local_name)
    }

    fn from_der(der: &[u8], path: &str, local_name: Option<&str>) -> Result<Self, IdentityError> {
        let keypair = Ed25519KeyPair::from_der(der, KEY_VERSION.to_owned()).map_err(|e| {
            IdentityError::BadKey {
                path: path.to_owned(),
                message: e.to_string(),
            }
        })?;
        let signing_key = signing_key_from_der(der, &keypair.public_key()).ok_or_else(|| {
            IdentityError::BadKey {
                path: path.to_owned(),
                message: "no Ed25519 seed matching the public key".to_owned(),
            }
        })?;
        let derived = server_name_for_key(&keypair.public_key());
        let (server_name, key_derived) = match local_name {
            Some(name) => (
                ServerName::parse(name).map_err(|e| IdentityError::BadKey {
                    path: path.to_owned(),
                    message: format!("server name {name}: {e}"),
                })?,
                false,
            ),
            None => (derived, true),
        };
        Ok(Self {
            keypair,
            signing_key,
            server_name,
            key_derived,
        })
    }

    /// The signing key pair.
    pub fn keypair(&self) -> &Ed25519KeyPair {
        &self.keypair
    }

    /// The identity key as an `ed25519-dalek` key: signs the gateway's directory descriptor
    /// and seeds its transport keys (`peering::net::mixnet`).
    pub fn signing_key(&self) -> &ed25519_dalek::SigningKey {
        &self.signing_key
    }

    /// The Matrix server name of this gateway.
    pub fn server_name(&self) -> &ServerName {
        &self.server_name
    }

    /// Whether the server name is the key-derived one.
    pub fn is_key_derived(&self) -> bool {
        self.key_derived
    }

    /// The public key, base64-encoded as in Matrix key maps.
    pub fn public_key_base64(&self) -> Base64 {
        Base64::new(self.keypair.public_key().to_vec())
    }
}

/// The 32-byte Ed25519 seed inside a PKCS#8 document (v1 or v2: the private key is the
/// OCTET STRING `04 20 <seed>` wrapped in the OCTET STRING `04 22`), checked against the
/// public key ruma parsed from the same document.
fn signing_key_from_der(der: &[u8], public: &[u8; 32]) -> Option<ed25519_dalek::SigningKey> {
    const PREFIX: [u8; 4] = [0x04, 0x22, 0x04, 0x20];
    let at = der.windows(PREFIX.len()).position(|w| w == PREFIX)? + PREFIX.len();
    let seed: [u8; 32] = der.get(at..at + 32)?.try_into().ok()?;
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    (key.verifying_key().as_bytes() == public).then_some(key)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_name_is_key_and_roundtrips() {
        let id = Identity::generate(None).expect("generate");
        let name = id.server_name();
        assert_eq!(name.as_str().len(), 52);
        assert!(name
            .as_str()
            .chars()
            .all(|c| c.is_ascii_lowercase() || ('2'..='7').contains(&c)));
        assert_eq!(key_for_server_name(name), Some(id.keypair().public_key()));
    }

    #[test]
    fn signing_key_is_the_identity_key() {
        let id = Identity::generate(None).expect("generate");
        assert_eq!(
            id.signing_key().verifying_key().to_bytes(),
            id.keypair().public_key()
        );
    }

    #[test]
    fn key_file_is_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = Identity::load_or_create(dir.path(), None).expect("create");
        let b = Identity::load_or_create(dir.path(), None).expect("load");
        assert_eq!(a.server_name(), b.server_name());
    }
}
