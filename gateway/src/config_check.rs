//! `mixgate config check FILE`: validates any role's config file without starting the role
//! (no listener is bound, no key file is created, no data folder is opened).

use std::path::{Path, PathBuf};

use transport::{
    config::{ConfigError as NodeConfigError, DirectoryFile, NodeFile},
    directory::Role,
};

use crate::config::{ConfigError, GatewayConfig};

/// The role a config file is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ConfigRole {
    /// `mixgate gateway --config` (`gateway.toml`).
    Gateway,
    /// `mixgate mixnode --config` (`mixnode.toml`, `role = "mix"`).
    Mixnode,
    /// `mixgate provider --config` (`provider.toml`, `role = "provider"`).
    Provider,
    /// `mixgate directory --config` (`directory.toml`).
    Directory,
}

impl ConfigRole {
    /// The subcommand name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Gateway => "gateway",
            Self::Mixnode => "mixnode",
            Self::Provider => "provider",
            Self::Directory => "directory",
        }
    }
}

/// Why a file does not check out. Every message names the file and, where there is one, the
/// key and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// A gateway file problem.
    #[error(transparent)]
    Gateway(#[from] ConfigError),
    /// A node or directory file problem.
    #[error(transparent)]
    Node(#[from] NodeConfigError),
    /// The file is for another role than `--role` says.
    #[error("{file}: key `role`: expected {expected} for `mixgate {command}`, found {found}")]
    WrongRole {
        /// The file.
        file: PathBuf,
        /// What `--role` asks for.
        expected: &'static str,
        /// The subcommand.
        command: &'static str,
        /// What the file says.
        found: String,
    },
    /// An application-service registration file the gateway config lists cannot be read.
    #[error("{file}: key `appservices`: cannot read {registration}: {source}")]
    Appservice {
        /// The config file.
        file: PathBuf,
        /// The registration file.
        registration: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Guesses the role from the file's keys: `role` makes a node file, directory-only keys
/// (`params`, `peers`, `grace_secs`, `allowed`, or `key_file` without `role`) a directory file,
/// anything else a gateway file.
pub fn detect(file: &Path) -> Result<ConfigRole, CheckError> {
    let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
        file: file.to_owned(),
        source,
    })?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Parse {
        file: file.to_owned(),
        message: e.to_string(),
    })?;
    Ok(match table.get("role").and_then(|v| v.as_str()) {
        Some("provider") => ConfigRole::Provider,
        Some(_) => ConfigRole::Mixnode,
        None if ["params", "peers", "grace_secs", "allowed", "key_file"]
            .iter()
            .any(|k| table.contains_key(*k)) =>
        {
            ConfigRole::Directory
        }
        None => ConfigRole::Gateway,
    })
}

/// Checks `file` as `role` (detected when `None`); returns the role checked.
pub fn check(file: &Path, role: Option<ConfigRole>) -> Result<ConfigRole, CheckError> {
    let role = match role {
        Some(r) => r,
        None => detect(file)?,
    };
    match role {
        ConfigRole::Gateway => {
            let config = GatewayConfig::from_file(file)?;
            for registration in &config.appservices {
                std::fs::metadata(registration).map_err(|source| CheckError::Appservice {
                    file: file.to_owned(),
                    registration: registration.clone(),
                    source,
                })?;
            }
        }
        ConfigRole::Mixnode | ConfigRole::Provider => {
            let node = NodeFile::check(file)?;
            let (ok, expected) = match role {
                ConfigRole::Mixnode => (matches!(node.role, Role::Mix { .. }), "\"mix\""),
                _ => (matches!(node.role, Role::Provider), "\"provider\""),
            };
            if !ok {
                return Err(CheckError::WrongRole {
                    file: file.to_owned(),
                    expected,
                    command: role.name(),
                    found: format!("{:?}", node.role),
                });
            }
        }
        ConfigRole::Directory => {
            DirectoryFile::check(file)?;
        }
    }
    Ok(role)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../config")
            .join(name)
    }

    #[test]
    fn the_example_configs_check_and_their_roles_are_detected() {
        for (file, role) in [
            ("gateway.toml", ConfigRole::Gateway),
            ("mixnode.toml", ConfigRole::Mixnode),
            ("provider.toml", ConfigRole::Provider),
            ("directory.toml", ConfigRole::Directory),
        ] {
            let got = check(&example(file), None);
            assert_eq!(got.ok(), Some(role), "{file}");
            assert_eq!(check(&example(file), Some(role)).ok(), Some(role), "{file}");
        }
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        let dir = tempfile::tempdir().expect("temp");
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).expect("write");
            p
        };
        let gw = write(
            "gw.toml",
            "listen = \"127.0.0.1:8008\"\nmax_upload_bytes = 0\n",
        );
        let e = check(&gw, None).expect_err("refused").to_string();
        assert!(
            e.contains("gw.toml") && e.contains("max_upload_bytes"),
            "{e}"
        );
        let gw = write("gw2.toml", "metrics_listen = \"not an address\"\n");
        let e = check(&gw, None).expect_err("refused").to_string();
        assert!(
            e.contains("gw2.toml") && e.contains("metrics_listen"),
            "{e}"
        );
        let auth = "ab".repeat(32);
        let mix = write(
            "mix.toml",
            &format!(
                "listen = \"127.0.0.1:9000\"\nkey_file = \"{}\"\nrole = \"mix\"\nlayer = 7\n\
                 directory = \"127.0.0.1:9100\"\nauthorities = [\"{auth}\"]\n",
                dir.path().join("k").display()
            ),
        );
        let e = check(&mix, None).expect_err("refused").to_string();
        assert!(e.contains("mix.toml") && e.contains("layer"), "{e}");
        assert!(!dir.path().join("k").exists(), "no key file created");
        let fixed = write(
            "mix2.toml",
            &std::fs::read_to_string(&mix)
                .expect("read")
                .replace("layer = 7", "layer = 2"),
        );
        assert_eq!(check(&fixed, None).ok(), Some(ConfigRole::Mixnode));
        let e = check(&fixed, Some(ConfigRole::Provider))
            .expect_err("refused")
            .to_string();
        assert!(e.contains("mix2.toml") && e.contains("`role`"), "{e}");
        let d = write(
            "dir.toml",
            "listen = \"127.0.0.1:7000\"\nkey_file = \"/nonexistent/k\"\nthreshold = 0\n",
        );
        let e = check(&d, None).expect_err("refused").to_string();
        assert!(e.contains("dir.toml") && e.contains("threshold"), "{e}");
    }
}
