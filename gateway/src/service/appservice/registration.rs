//! Application-service registration files (the spec's YAML format), read and checked.
//!
//! A file that does not parse, a namespace regex that does not compile, an empty token, a
//! duplicate id or token, or exclusive namespaces of two services that overlap is a
//! [`ConfigError`] naming the file and the key. Overlap between two regexes is undecidable in
//! general; the check catches identical patterns and a pattern that matches an example user
//! or alias written from the other pattern (`.*` → nothing, `.+` → `x`, escapes dropped),
//! which covers the usual `@_bridge_.*:server` forms.

use std::path::{Path, PathBuf};

use regex::Regex;
use serde::Deserialize;

use crate::config::ConfigError;

/// One namespace entry.
#[derive(Debug, Clone, Deserialize)]
pub struct NamespaceEntry {
    /// Whether only this service may use what matches.
    #[serde(default)]
    pub exclusive: bool,
    /// The pattern (matched from the start of the id, like Synapse).
    pub regex: String,
}

/// The three namespaces.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Namespaces {
    /// User ids.
    #[serde(default)]
    pub users: Vec<NamespaceEntry>,
    /// Room aliases.
    #[serde(default)]
    pub aliases: Vec<NamespaceEntry>,
    /// Room ids.
    #[serde(default)]
    pub rooms: Vec<NamespaceEntry>,
}

/// A registration file as written.
#[derive(Debug, Clone, Deserialize)]
pub struct RegistrationFile {
    /// Unique id of the service.
    pub id: String,
    /// Where the service listens (`null`: it receives nothing).
    #[serde(default)]
    pub url: Option<String>,
    /// The token the service uses towards the gateway.
    pub as_token: String,
    /// The token the gateway uses towards the service.
    pub hs_token: String,
    /// Localpart of the service's own user.
    pub sender_localpart: String,
    /// What the service is interested in.
    #[serde(default)]
    pub namespaces: Namespaces,
    /// Whether the service's requests are rate-limited.
    #[serde(default)]
    pub rate_limited: Option<bool>,
    /// Third-party protocols.
    #[serde(default)]
    pub protocols: Option<Vec<String>>,
    /// Whether transactions carry typing and receipts (MSC2409).
    #[serde(default, alias = "de.sorunome.msc2409.push_ephemeral")]
    pub receive_ephemeral: bool,
    /// Whether transactions carry the to-device messages of the service's users (MSC4203,
    /// with `receive_ephemeral`): MSC3202's `org.matrix.msc3202` flag.
    #[serde(default, rename = "org.matrix.msc3202")]
    pub msc3202: bool,
}

/// A compiled namespace entry.
#[derive(Debug, Clone)]
pub struct Namespace {
    /// Whether it is exclusive.
    pub exclusive: bool,
    /// The compiled pattern, anchored at the start.
    pub regex: Regex,
    /// The pattern as written.
    pub source: String,
}

impl Namespace {
    /// Whether `id` is in this namespace.
    pub fn matches(&self, id: &str) -> bool {
        self.regex.is_match(id)
    }
}

/// A checked registration.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The file it came from.
    pub file: PathBuf,
    /// As written.
    pub raw: RegistrationFile,
    /// Compiled user namespaces.
    pub users: Vec<Namespace>,
    /// Compiled alias namespaces.
    pub aliases: Vec<Namespace>,
    /// Compiled room namespaces.
    pub rooms: Vec<Namespace>,
}

fn invalid(file: &Path, key: &'static str, expected: &'static str, found: String) -> ConfigError {
    ConfigError::Invalid {
        file: file.to_owned(),
        key,
        expected,
        found,
    }
}

fn compile(
    file: &Path,
    key: &'static str,
    entries: &[NamespaceEntry],
) -> Result<Vec<Namespace>, ConfigError> {
    entries
        .iter()
        .map(|e| {
            Regex::new(&format!("^(?:{})", e.regex))
                .map(|regex| Namespace {
                    exclusive: e.exclusive,
                    regex,
                    source: e.regex.clone(),
                })
                .map_err(|err| {
                    invalid(
                        file,
                        key,
                        "a valid regular expression",
                        format!("{:?}: {err}", e.regex),
                    )
                })
        })
        .collect()
}

impl Registration {
    /// Reads and checks one file.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.to_owned(),
            source,
        })?;
        Self::parse(&text, file)
    }

    /// Parses and checks YAML text; `file` is only used in error messages.
    pub fn parse(text: &str, file: &Path) -> Result<Self, ConfigError> {
        let raw: RegistrationFile = serde_yaml::from_str(text).map_err(|e| ConfigError::Parse {
            file: file.to_owned(),
            message: format!("not a valid application-service registration: {e}"),
        })?;
        for (key, value) in [
            ("id", &raw.id),
            ("as_token", &raw.as_token),
            ("hs_token", &raw.hs_token),
            ("sender_localpart", &raw.sender_localpart),
        ] {
            if value.trim().is_empty() {
                return Err(invalid(
                    file,
                    key,
                    "a non-empty string",
                    "an empty string".into(),
                ));
            }
        }
        if let Some(url) = &raw.url {
            if url::Url::parse(url)
                .map(|u| u.scheme() != "http" && u.scheme() != "https")
                .unwrap_or(true)
            {
                return Err(invalid(
                    file,
                    "url",
                    "an http(s) URL or null",
                    format!("{url:?}"),
                ));
            }
        }
        Ok(Self {
            users: compile(file, "namespaces.users", &raw.namespaces.users)?,
            aliases: compile(file, "namespaces.aliases", &raw.namespaces.aliases)?,
            rooms: compile(file, "namespaces.rooms", &raw.namespaces.rooms)?,
            file: file.to_owned(),
            raw,
        })
    }
}

/// An example id written from a pattern, for the overlap check.
fn example(pattern: &str) -> String {
    pattern
        .trim_start_matches('^')
        .trim_end_matches('$')
        .replace(".*", "")
        .replace(".+", "x")
        .replace('\\', "")
}

fn overlap(a: &Namespace, b: &Namespace) -> bool {
    a.source == b.source || a.matches(&example(&b.source)) || b.matches(&example(&a.source))
}

/// Checks a set of registrations against each other: unique ids and tokens, no overlapping
/// exclusive namespaces. The error names the later file.
pub fn check_all(regs: &[Registration]) -> Result<(), ConfigError> {
    for (i, b) in regs.iter().enumerate() {
        for a in &regs[..i] {
            if a.raw.id == b.raw.id {
                return Err(invalid(
                    &b.file,
                    "id",
                    "an id no other registration uses",
                    b.raw.id.clone(),
                ));
            }
            if a.raw.as_token == b.raw.as_token {
                return Err(invalid(
                    &b.file,
                    "as_token",
                    "a token no other registration uses",
                    "a duplicate".into(),
                ));
            }
            for (key, xs, ys) in [
                ("namespaces.users", &a.users, &b.users),
                ("namespaces.aliases", &a.aliases, &b.aliases),
                ("namespaces.rooms", &a.rooms, &b.rooms),
            ] {
                for x in xs {
                    for y in ys {
                        if (x.exclusive || y.exclusive) && overlap(x, y) {
                            return Err(invalid(
                                &b.file,
                                key,
                                "exclusive namespaces that no other registration overlaps",
                                format!(
                                    "{:?} overlaps {:?} of {}",
                                    y.source,
                                    x.source,
                                    a.file.display()
                                ),
                            ));
                        }
                    }
                }
            }
        }
    }
    Ok(())
}
