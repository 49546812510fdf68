//! File configuration for the `mixgate mixnode`, `mixgate provider` and `mixgate directory`
//! subcommands: TOML files whose errors name the file, the key and what was expected, and key
//! files (the only thing these roles keep on disk).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::directory::{majority, DirectoryConfig, PeerAuthority, Role, TrafficParams};
use crate::node::NodeConfig;

/// A configuration problem, naming the file and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not valid (TOML syntax, unknown key, wrong type, bad value).
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Which key and what was expected.
        message: String,
    },
}

fn invalid(path: &Path, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Reads a 32-byte secret seed from `path`, or creates one (mode 0600) if it does not exist.
pub fn load_or_create_seed(path: &Path) -> Result<[u8; 32], ConfigError> {
    let io = |source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::read(path) {
        Ok(b) => b
            .try_into()
            .map_err(|_| invalid(path, "key file must hold exactly 32 bytes")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            rand::Rng::fill(&mut rand::rngs::OsRng, &mut seed[..]);
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts.open(path).map_err(io)?;
            std::io::Write::write_all(&mut f, &seed).map_err(io)?;
            Ok(seed)
        }
        Err(e) => Err(io(e)),
    }
}

fn parse_key(path: &Path, key: &str, hex: &str) -> Result<[u8; 32], ConfigError> {
    data_encoding::HEXLOWER_PERMISSIVE
        .decode(hex.as_bytes())
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| {
            invalid(
                path,
                format!("{key}: expected 64 hex characters (an Ed25519 public key)"),
            )
        })
}

fn read_toml<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| invalid(path, e.to_string()))
}

/// Only the `metrics_listen` key of a role's file (every other key is ignored here).
#[derive(Deserialize)]
struct MetricsKey {
    metrics_listen: Option<SocketAddr>,
}

/// The `metrics_listen` address of a node or directory file, if set (errors name the file
/// and the key).
pub fn metrics_listen(path: &Path) -> Result<Option<SocketAddr>, ConfigError> {
    let k: MetricsKey = read_toml(path)?;
    Ok(k.metrics_listen)
}

/// The role a node file describes.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RoleName {
    /// A mix node (needs `layer`).
    Mix,
    /// A provider.
    Provider,
}

/// `mixnode.toml` / `provider.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeFile {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Address to publish, if different (`host:port`).
    pub public_address: Option<String>,
    /// File holding the identity seed (created if missing).
    pub key_file: PathBuf,
    /// `mix` or `provider`.
    pub role: RoleName,
    /// Mix layer 1..=3 (mixes only).
    pub layer: Option<u8>,
    /// Directory address.
    pub directory: SocketAddr,
    /// Other authorities' addresses, tried in order when `directory` fails (default none).
    pub fallback_directories: Option<Vec<SocketAddr>>,
    /// Trusted authority keys, hex.
    pub authorities: Vec<String>,
    /// Signatures required (default 1).
    pub threshold: Option<usize>,
    /// Epoch length in seconds (default 3600; must match the directory).
    pub epoch_secs: Option<u64>,
    /// Address of the metrics and status listener (default: none); read by the binary with
    /// [`metrics_listen`].
    pub metrics_listen: Option<SocketAddr>,
}

/// Checks a key file without creating it: a missing file is fine (it is created on first
/// start), an existing one must hold 32 bytes. Returns a placeholder seed.
pub fn check_seed(path: &Path) -> Result<[u8; 32], ConfigError> {
    match std::fs::metadata(path) {
        Ok(m) if m.len() == 32 => Ok([0; 32]),
        Ok(_) => Err(invalid(path, "key file must hold exactly 32 bytes")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok([0; 32]),
        Err(source) => Err(ConfigError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

impl NodeFile {
    /// Reads and checks a node file; creates the key file on first use.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        Self::load_with(path, load_or_create_seed)
    }

    /// Checks a node file as [`load`](Self::load) does, without creating the key file.
    pub fn check(path: &Path) -> Result<NodeConfig, ConfigError> {
        Self::load_with(path, check_seed)
    }

    fn load_with(
        path: &Path,
        seed_of: fn(&Path) -> Result<[u8; 32], ConfigError>,
    ) -> Result<NodeConfig, ConfigError> {
        let f: NodeFile = read_toml(path)?;
        let role = match (f.role, f.layer) {
            (RoleName::Mix, Some(l @ 1..=3)) => Role::Mix { layer: l },
            (RoleName::Mix, _) => return Err(invalid(path, "layer: expected 1, 2 or 3 for a mix")),
            (RoleName::Provider, None) => Role::Provider,
            (RoleName::Provider, Some(_)) => {
                return Err(invalid(path, "layer: not allowed for a provider"))
            }
        };
        if f.authorities.is_empty() {
            return Err(invalid(path, "authorities: expected at least one key"));
        }
        let authorities = f
            .authorities
            .iter()
            .map(|a| parse_key(path, "authorities", a))
            .collect::<Result<Vec<_>, _>>()?;
        let authorities_len = authorities.len();
        let seed = seed_of(&f.key_file)?;
        let mut c = NodeConfig::new(f.listen, role, seed, f.directory, authorities);
        c.public_address = f.public_address;
        c.fallback_directories = f.fallback_directories.unwrap_or_default();
        let threshold = f.threshold.unwrap_or(1);
        if threshold == 0 || threshold > authorities_len {
            return Err(invalid(
                path,
                format!("threshold: expected 1 to {authorities_len} (the number of authorities), got {threshold}"),
            ));
        }
        c.threshold = threshold;
        c.epoch_ms = f.epoch_secs.unwrap_or(3600).max(1) * 1000;
        Ok(c)
    }
}

/// `directory.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryFile {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// File holding the authority's seed (created if missing).
    pub key_file: PathBuf,
    /// Epoch length in seconds (default 3600).
    pub epoch_secs: Option<u64>,
    /// Grace after an epoch in seconds (default 600).
    pub grace_secs: Option<u64>,
    /// Identity keys allowed to register, hex (default: anyone).
    pub allowed: Option<Vec<String>>,
    /// Traffic parameters (default: [`TrafficParams::default`]).
    pub params: Option<TrafficParams>,
    /// The other authorities to agree with (default: none, this one signs alone).
    pub peers: Option<Vec<PeerFile>>,
    /// Votes a node needs and signatures a document gets (default: a majority of all
    /// authorities).
    pub threshold: Option<usize>,
    /// Address of the metrics and status listener (default: none); read by the binary with
    /// [`metrics_listen`].
    pub metrics_listen: Option<SocketAddr>,
}

/// One `[[peers]]` entry of `directory.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerFile {
    /// The peer authority's service address.
    pub address: SocketAddr,
    /// Its authority key, hex.
    pub key: String,
}

impl DirectoryFile {
    /// Reads and checks a directory file; creates the key file on first use.
    pub fn load(path: &Path) -> Result<DirectoryConfig, ConfigError> {
        Self::load_with(path, load_or_create_seed)
    }

    /// Checks a directory file as [`load`](Self::load) does, without creating the key file.
    pub fn check(path: &Path) -> Result<DirectoryConfig, ConfigError> {
        Self::load_with(path, check_seed)
    }

    fn load_with(
        path: &Path,
        seed_of: fn(&Path) -> Result<[u8; 32], ConfigError>,
    ) -> Result<DirectoryConfig, ConfigError> {
        let f: DirectoryFile = read_toml(path)?;
        let params = f.params.unwrap_or_default();
        params
            .check()
            .map_err(|e| invalid(path, format!("params: {e}")))?;
        let allowed = match f.allowed {
            None => None,
            Some(v) => Some(
                v.iter()
                    .map(|a| parse_key(path, "allowed", a))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let peers = f
            .peers
            .unwrap_or_default()
            .iter()
            .map(|p| {
                Ok(PeerAuthority {
                    address: p.address,
                    key: parse_key(path, "peers.key", &p.key)?,
                })
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let authorities = peers.len() + 1;
        let threshold = f.threshold.unwrap_or_else(|| majority(authorities));
        if threshold == 0 || threshold > authorities {
            return Err(invalid(
                path,
                format!(
                    "threshold: expected 1 to {authorities} (the authorities: this one and its peers), got {threshold}"
                ),
            ));
        }
        Ok(DirectoryConfig {
            listen: f.listen,
            authority_seed: seed_of(&f.key_file)?,
            params,
            epoch_ms: f.epoch_secs.unwrap_or(3600).max(1) * 1000,
            grace_ms: Duration::from_secs(f.grace_secs.unwrap_or(600)).as_millis() as u64,
            allowed,
            peers,
            threshold,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// The documented example files in `config/` parse (key files redirected).
    #[test]
    fn example_files_parse() {
        let d = std::env::temp_dir().join(format!("mixgate-examples-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
        for name in ["mixnode.toml", "provider.toml", "directory.toml"] {
            let text = std::fs::read_to_string(root.join(name)).unwrap();
            let key = d.join(format!("{name}.key"));
            let text: String = text
                .lines()
                .map(|l| {
                    if l.starts_with("key_file") {
                        format!("key_file = \"{}\"", key.display())
                    } else {
                        l.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n");
            let p = write(&d, name, &text);
            if name == "directory.toml" {
                let c = DirectoryFile::load(&p).unwrap();
                assert_eq!(c.params, TrafficParams::default());
                assert_eq!(c.allowed, Some(vec![]));
            } else {
                let c = NodeFile::load(&p).unwrap();
                assert_eq!(c.epoch_ms, 3_600_000);
            }
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn node_and_directory_files() {
        let d = std::env::temp_dir().join(format!("mixgate-config-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let key = d.join("node.key");
        let _ = std::fs::remove_file(&key);
        let auth = "ab".repeat(32);
        let good = format!(
            "listen = \"127.0.0.1:9000\"\nkey_file = \"{}\"\nrole = \"mix\"\nlayer = 2\ndirectory = \"127.0.0.1:9100\"\nauthorities = [\"{auth}\"]\n",
            key.display()
        );
        let c = NodeFile::load(&write(&d, "mix.toml", &good)).unwrap();
        assert_eq!(c.role, Role::Mix { layer: 2 });
        // The key file was created and is reused.
        let c2 = NodeFile::load(&write(&d, "mix.toml", &good)).unwrap();
        assert_eq!(c.identity_seed, c2.identity_seed);
        // Errors name the file and the key.
        let e = NodeFile::load(&write(
            &d,
            "bad.toml",
            &good.replace("layer = 2", "layer = 7"),
        ))
        .unwrap_err();
        assert!(
            e.to_string().contains("bad.toml") && e.to_string().contains("layer"),
            "{e}"
        );
        let e = NodeFile::load(&write(&d, "bad.toml", &format!("{good}colour = 1\n"))).unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
        let e = NodeFile::load(&write(&d, "bad.toml", &good.replace(&auth, "xyz"))).unwrap_err();
        assert!(e.to_string().contains("authorities"), "{e}");
        let dkey = d.join("dir.key");
        let _ = std::fs::remove_file(&dkey);
        let dir = format!(
            "listen = \"127.0.0.1:9100\"\nkey_file = \"{}\"\n[params]\nlambda_per_s = 4.0\nloop_per_s = 0.5\nmix_loop_per_s = 1.0\nmu_ms = 50.0\npacket_size = 2442\npoll_per_s = 1.0\npoll_batch = 2\n",
            dkey.display()
        );
        let e = DirectoryFile::load(&write(&d, "dir.toml", &dir)).unwrap_err();
        assert!(e.to_string().contains("params"), "{e}");
        let ok = DirectoryFile::load(&write(
            &d,
            "dir.toml",
            &dir.replace("poll_batch = 2", "poll_batch = 12"),
        ))
        .unwrap();
        assert_eq!(ok.epoch_ms, 3_600_000);
        assert_eq!((ok.peers.len(), ok.threshold), (0, 1));
        // Two peers: the threshold defaults to a majority of three.
        let peer = |port: u16, k: &str| {
            format!("[[peers]]\naddress = \"127.0.0.1:{port}\"\nkey = \"{k}\"\n")
        };
        let with_peers = format!(
            "{}{}{}",
            dir.replace("poll_batch = 2", "poll_batch = 12"),
            peer(9101, &"cd".repeat(32)),
            peer(9102, &"ef".repeat(32))
        );
        let c = DirectoryFile::load(&write(&d, "dir.toml", &with_peers)).unwrap();
        assert_eq!(c.peers.len(), 2);
        assert_eq!(c.peers[1].key, [0xef; 32]);
        assert_eq!(c.threshold, 2);
        let four = with_peers.replace("[params]", "threshold = 4\n[params]");
        let e = DirectoryFile::load(&write(&d, "dir.toml", &four)).unwrap_err();
        assert!(e.to_string().contains("threshold: expected 1 to 3"), "{e}");
        let bad_key = with_peers.replace(&"ef".repeat(32), "nothex");
        let e = DirectoryFile::load(&write(&d, "dir.toml", &bad_key)).unwrap_err();
        assert!(e.to_string().contains("peers.key"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
