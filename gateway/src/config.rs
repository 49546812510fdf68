//! Gateway configuration: a TOML file, command-line overrides, and embedded defaults.
//!
//! Every error names the file, the key and what was expected (see [`ConfigError`]).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

/// Who may create accounts through `/register`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RegistrationMode {
    /// Anyone may register (local demo, tests).
    Open,
    /// Registration needs a token made by `mixgate admin create-registration-token`.
    Token,
    /// Nobody may register; operators create accounts with `mixgate admin create-user`.
    Closed,
}

/// The whole gateway configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Address the client-server API listens on.
    pub listen: SocketAddr,
    /// Folder for the database and the identity key.
    pub data_dir: PathBuf,
    /// Keep everything in memory only (no disk traces; everything is lost on exit).
    pub memory_only: bool,
    /// A human server name for a purely local gateway; by default the name is derived from the
    /// gateway's key.
    pub server_name: Option<String>,
    /// Registration policy.
    pub registration: RegistrationMode,
    /// Largest request body accepted, in bytes (media uploads included).
    pub max_request_bytes: usize,
    /// Largest media upload, in bytes.
    pub max_upload_bytes: usize,
    /// Login and registration attempts allowed per client address per minute.
    pub auth_attempts_per_minute: u32,
    /// Whether presence is tracked and shared (off: it leaks who is online).
    pub presence: bool,
    /// Shortest password accepted at registration and on a password change (400
    /// `M_WEAK_PASSWORD` below it).
    pub min_password_length: usize,
    /// Whether `/user_directory/search` lists every local account. Off (default): only users
    /// sharing a room with the searcher, plus an exact user-id match.
    pub user_directory_search_all: bool,
    /// Hosts (names or IP addresses) push gateways may be on although they are loopback or
    /// private, e.g. a local push gateway or tests; plain `http` is allowed for them.
    pub push_allowed_private_hosts: Vec<String>,
    /// Reverse proxies (IP addresses or `address/prefix` ranges) whose `X-Forwarded-For`
    /// header gives the client's address; any other peer's header is ignored.
    pub trusted_proxies: Vec<String>,
    /// Seconds a client has to send a request's headers before the connection is closed.
    pub header_read_timeout_secs: u64,
    /// Most open connections from one client address (more are closed at once).
    pub max_connections_per_ip: usize,
    /// The mixnet this gateway joins (`[network]`); without it the gateway runs alone.
    pub network: Option<NetworkConfig>,
    /// Whether served events carry bundled aggregations (`unsigned.m.relations`: edits,
    /// threads, references). On by default; `false` exists to measure their cost, and makes
    /// Element show the original text of edited messages after a reload.
    pub bundled_aggregations: bool,
    /// Application-service registration files (YAML), added to by `--appservice FILE`.
    pub appservices: Vec<PathBuf>,
    /// Group keys between gateways (`[group_keys]`): epoch rotation and retention.
    pub group_keys: crate::peering::groupkeys::KeyPolicy,
    /// Address of the Prometheus metrics and status-page listener (`--metrics`); off unless
    /// set. Keep it on loopback or behind your own authentication.
    pub metrics_listen: Option<SocketAddr>,
    /// The file this config was read from (for error messages; not a key).
    #[serde(skip)]
    pub file: Option<PathBuf>,
}

/// The mixnet a gateway joins: the `[network]` table of `gateway.toml`, or a whole file of
/// the same keys (`mixgate gateway --network FILE`; `mixgate up` writes one).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// Directory authority addresses, tried in order.
    pub directories: Vec<SocketAddr>,
    /// The authorities' Ed25519 keys (64 hex characters each): documents must be signed by
    /// `threshold` of them.
    pub authorities: Vec<AuthorityKey>,
    /// Distinct authority signatures a directory document needs (default: a strict majority
    /// of `authorities`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<usize>,
}

/// A directory authority's Ed25519 key, written as 64 hex characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthorityKey(pub [u8; 32]);

impl Serialize for AuthorityKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&data_encoding::HEXLOWER.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for AuthorityKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        data_encoding::HEXLOWER_PERMISSIVE
            .decode(text.as_bytes())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .map(AuthorityKey)
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "expected an authority key of 64 hex characters, found {text:?}"
                ))
            })
    }
}

impl NetworkConfig {
    /// Reads a network file (`mixgate gateway --network FILE`, `DIR/network.toml` of
    /// `mixgate up`): the keys of the `[network]` table at the top level.
    pub fn from_file(file: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.to_owned(),
            source,
        })?;
        let network: Self = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            file: file.to_owned(),
            message: e.to_string(),
        })?;
        network.validate(file, "")?;
        Ok(network)
    }

    /// The signature threshold in force: the configured one or a strict majority.
    pub fn threshold(&self) -> usize {
        self.threshold.unwrap_or(self.authorities.len() / 2 + 1)
    }

    /// Checks values that parse but cannot work; `prefix` is `network.` inside `gateway.toml`.
    fn validate(&self, file: &Path, prefix: &str) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, expected, found: String| ConfigError::Invalid {
            file: file.to_owned(),
            key: if prefix.is_empty() {
                key
            } else {
                match key {
                    "directories" => "network.directories",
                    "authorities" => "network.authorities",
                    _ => "network.threshold",
                }
            },
            expected,
            found,
        };
        if self.directories.is_empty() {
            return Err(invalid(
                "directories",
                "at least one directory address (\"host:port\")",
                "an empty list".into(),
            ));
        }
        if self.authorities.is_empty() {
            return Err(invalid(
                "authorities",
                "at least one authority key (64 hex characters)",
                "an empty list".into(),
            ));
        }
        let threshold = self.threshold();
        if threshold == 0 || threshold > self.authorities.len() {
            return Err(invalid(
                "threshold",
                "between 1 and the number of authorities",
                threshold.to_string(),
            ));
        }
        Ok(())
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8008)),
            data_dir: PathBuf::from("mixgate-data"),
            memory_only: false,
            server_name: None,
            registration: RegistrationMode::Token,
            max_request_bytes: 60 * 1024 * 1024,
            max_upload_bytes: 50 * 1024 * 1024,
            auth_attempts_per_minute: 30,
            presence: false,
            min_password_length: 8,
            user_directory_search_all: false,
            push_allowed_private_hosts: Vec::new(),
            trusted_proxies: Vec::new(),
            header_read_timeout_secs: 30,
            max_connections_per_ip: 64,
            network: None,
            bundled_aggregations: true,
            group_keys: Default::default(),
            appservices: Vec::new(),
            metrics_listen: None,
            file: None,
        }
    }
}

/// A configuration that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read config file: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A key has a bad value or the TOML is malformed.
    #[error("{file}: {message}")]
    Parse {
        /// The file.
        file: PathBuf,
        /// The parser's message, which names the key and the expected type.
        message: String,
    },
    /// A key parsed but its value is not acceptable.
    #[error("{file}: key `{key}`: expected {expected}, found {found}")]
    Invalid {
        /// The file (or `<command line>`).
        file: PathBuf,
        /// The key.
        key: &'static str,
        /// What was expected.
        expected: &'static str,
        /// What was found.
        found: String,
    },
}

impl GatewayConfig {
    /// Reads `file`, with defaults for every key it leaves out.
    pub fn from_file(file: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.to_owned(),
            source,
        })?;
        let mut config = Self::from_toml(&text, file)?;
        config.file = Some(file.to_owned());
        Ok(config)
    }

    /// Parses TOML text; `file` is only used in error messages.
    pub fn from_toml(text: &str, file: &Path) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|e| ConfigError::Parse {
            file: file.to_owned(),
            message: e.to_string(),
        })?;
        config.validate(file)?;
        Ok(config)
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self, file: &Path) -> Result<(), ConfigError> {
        let invalid = |key, expected, found: String| ConfigError::Invalid {
            file: file.to_owned(),
            key,
            expected,
            found,
        };
        if self.max_upload_bytes == 0 {
            return Err(invalid(
                "max_upload_bytes",
                "a positive number of bytes",
                "0".into(),
            ));
        }
        if self.max_request_bytes < 64 * 1024 {
            return Err(invalid(
                "max_request_bytes",
                "at least 65536 bytes",
                self.max_request_bytes.to_string(),
            ));
        }
        if self.auth_attempts_per_minute == 0 {
            return Err(invalid(
                "auth_attempts_per_minute",
                "at least 1",
                "0".into(),
            ));
        }
        if self.header_read_timeout_secs == 0 {
            return Err(invalid(
                "header_read_timeout_secs",
                "at least 1",
                "0".into(),
            ));
        }
        if self.max_connections_per_ip == 0 {
            return Err(invalid("max_connections_per_ip", "at least 1", "0".into()));
        }
        if let Err(what) = self.group_keys.check() {
            return Err(invalid("group_keys", "limits that fit together", what));
        }
        for proxy in &self.trusted_proxies {
            if crate::client_addr::AddrRange::parse(proxy).is_none() {
                return Err(invalid(
                    "trusted_proxies",
                    "IP addresses or address/prefix ranges",
                    proxy.clone(),
                ));
            }
        }
        if let Some(network) = &self.network {
            network.validate(file, "network.")?;
        }
        if let Some(name) = &self.server_name {
            if ruma::ServerName::parse(name).is_err() {
                return Err(invalid(
                    "server_name",
                    "a valid Matrix server name",
                    name.clone(),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c = GatewayConfig::from_toml("", Path::new("g.toml")).expect("parse");
        assert_eq!(c.registration, RegistrationMode::Token);
        assert_eq!(c.listen.port(), 8008);
    }

    #[test]
    fn errors_name_file_and_key() {
        let err = GatewayConfig::from_toml("registration = \"maybe\"", Path::new("g.toml"))
            .expect_err("bad value");
        let msg = err.to_string();
        assert!(
            msg.contains("g.toml") && msg.contains("registration"),
            "{msg}"
        );
        let err = GatewayConfig::from_toml("lisen = \"x\"", Path::new("g.toml"))
            .expect_err("unknown key");
        assert!(err.to_string().contains("lisen"));
        let err = GatewayConfig::from_toml("max_upload_bytes = 0", Path::new("g.toml"))
            .expect_err("zero");
        assert!(err.to_string().contains("max_upload_bytes"));
    }
}

#[cfg(test)]
mod network_tests {
    use super::*;

    const KEY: &str = "1111111111111111111111111111111111111111111111111111111111111111";

    #[test]
    fn network_table_and_file_parse() {
        let text =
            format!("[network]\ndirectories = [\"127.0.0.1:7000\"]\nauthorities = [\"{KEY}\"]\n");
        let c = GatewayConfig::from_toml(&text, Path::new("g.toml")).expect("parse");
        let n = c.network.expect("network");
        assert_eq!(n.threshold(), 1);
        assert_eq!(n.authorities, vec![AuthorityKey([0x11; 32])]);
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("network.toml");
        std::fs::write(&file, toml::to_string(&n).expect("serialize")).expect("write");
        assert_eq!(NetworkConfig::from_file(&file).expect("read back"), n);
    }

    #[test]
    fn network_errors_name_file_and_key() {
        let bad_key = "[network]\ndirectories = [\"127.0.0.1:7000\"]\nauthorities = [\"abc\"]\n";
        let msg = GatewayConfig::from_toml(bad_key, Path::new("g.toml"))
            .expect_err("short key")
            .to_string();
        assert!(
            msg.contains("g.toml") && msg.contains("authorities") && msg.contains("64 hex"),
            "{msg}"
        );
        let empty = format!("[network]\ndirectories = []\nauthorities = [\"{KEY}\"]\n");
        let msg = GatewayConfig::from_toml(&empty, Path::new("g.toml"))
            .expect_err("no directory")
            .to_string();
        assert!(msg.contains("network.directories"), "{msg}");
        let high = format!(
            "directories = [\"127.0.0.1:7000\"]\nauthorities = [\"{KEY}\"]\nthreshold = 2\n"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("net.toml");
        std::fs::write(&file, high).expect("write");
        let msg = NetworkConfig::from_file(&file)
            .expect_err("threshold")
            .to_string();
        assert!(
            msg.contains("net.toml") && msg.contains("`threshold`"),
            "{msg}"
        );
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    #[test]
    fn example_config_parses_to_defaults() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../config/gateway.toml"
        ));
        let c = GatewayConfig::from_file(path).expect("example config parses");
        let d = GatewayConfig::default();
        assert_eq!(c.listen, d.listen);
        assert_eq!(c.registration, d.registration);
        assert_eq!(c.max_upload_bytes, d.max_upload_bytes);
        assert_eq!(c.max_request_bytes, d.max_request_bytes);
    }
}
