//! When an epoch ends: the rotation rules, as a pure function of what the epoch was made for
//! and what the room is now (no I/O, no clock of its own).

use std::collections::BTreeSet;

use ruma::OwnedServerName;
use serde::{Deserialize, Serialize};

/// Limits of epochs and of what is kept (config `[group_keys]`; see `gateway/README.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeyPolicy {
    /// Events an outbound epoch encrypts before a new one starts.
    pub rotation_messages: u32,
    /// Seconds an outbound epoch is used before a new one starts.
    pub rotation_secs: u64,
    /// Seconds a received epoch, an Olm session or a handed-out one-time key is kept.
    pub retention_secs: u64,
    /// Seconds an undecryptable message waits for its key before it is dropped and counted.
    pub pending_secs: u64,
    /// Seconds an undecryptable message waits before its sender is asked for the key.
    pub ask_after_secs: u64,
}

impl Default for KeyPolicy {
    fn default() -> Self {
        Self {
            rotation_messages: 100,
            rotation_secs: 3600,
            retention_secs: 3 * 3600,
            pending_secs: 1800,
            ask_after_secs: 5,
        }
    }
}

impl KeyPolicy {
    /// Checks the limits; the error names the key and what it must be.
    pub fn check(&self) -> Result<(), String> {
        if !(1..=10_000).contains(&self.rotation_messages) {
            return Err("group_keys.rotation_messages must be 1 to 10000".into());
        }
        if !(60..=7 * 24 * 3600).contains(&self.rotation_secs) {
            return Err("group_keys.rotation_secs must be 60 to 604800".into());
        }
        if self.retention_secs < self.rotation_secs + 600 {
            return Err(
                "group_keys.retention_secs must be at least rotation_secs + 600 (a receiver \
                 must keep an epoch for as long as its sender may still use it, plus delivery)"
                    .into(),
            );
        }
        if self.retention_secs > 7 * 24 * 3600 {
            return Err("group_keys.retention_secs must be at most 604800 (7 days)".into());
        }
        if self.pending_secs == 0 || self.pending_secs > self.retention_secs {
            return Err("group_keys.pending_secs must be 1 to retention_secs".into());
        }
        if self.ask_after_secs >= self.pending_secs {
            return Err("group_keys.ask_after_secs must be below pending_secs".into());
        }
        Ok(())
    }

    /// [`Self::rotation_secs`] in milliseconds.
    pub fn rotation_ms(&self) -> u64 {
        self.rotation_secs.saturating_mul(1000)
    }

    /// [`Self::retention_secs`] in milliseconds.
    pub fn retention_ms(&self) -> u64 {
        self.retention_secs.saturating_mul(1000)
    }
}

/// What an outbound epoch was made for, and how far it got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochFacts {
    /// Gateways that may read it (those it was shared with, this one excluded).
    pub readers: BTreeSet<OwnedServerName>,
    /// The room's history visibility when it started.
    pub visibility: String,
    /// When it started (ms).
    pub created_ms: u64,
    /// Events it encrypted.
    pub events: u32,
}

/// Why a new epoch starts (a counter label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// The room had no epoch yet.
    First,
    /// A gateway that could read the epoch may no longer read the room.
    ReaderLeft,
    /// A gateway joined while history visibility keeps the past from joiners.
    JoinerMustNotReadPast,
    /// History visibility changed.
    VisibilityChanged,
    /// The epoch encrypted its maximum of events.
    MessageLimit,
    /// The epoch is older than its maximum age.
    AgeLimit,
}

impl Rotation {
    /// A short label for counters and logs.
    pub fn label(self) -> &'static str {
        match self {
            Rotation::First => "first",
            Rotation::ReaderLeft => "reader_left",
            Rotation::JoinerMustNotReadPast => "joiner",
            Rotation::VisibilityChanged => "visibility",
            Rotation::MessageLimit => "messages",
            Rotation::AgeLimit => "age",
        }
    }
}

/// What to do before encrypting for `readers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Keep the epoch; share it first with these new readers (from the current index, so
    /// they cannot read what it encrypted before).
    Keep(BTreeSet<OwnedServerName>),
    /// Start a new epoch, shared with every reader.
    Rotate(Rotation),
}

/// Decides whether the epoch `current` may encrypt an event for `readers` (the gateways the
/// event goes to) in a room whose history visibility is now `visibility`.
pub fn decide(
    current: Option<&EpochFacts>,
    readers: &BTreeSet<OwnedServerName>,
    visibility: &str,
    now_ms: u64,
    policy: &KeyPolicy,
) -> Decision {
    let Some(epoch) = current else {
        return Decision::Rotate(Rotation::First);
    };
    if !epoch.readers.is_subset(readers) {
        return Decision::Rotate(Rotation::ReaderLeft);
    }
    if epoch.visibility != visibility {
        return Decision::Rotate(Rotation::VisibilityChanged);
    }
    if epoch.events >= policy.rotation_messages {
        return Decision::Rotate(Rotation::MessageLimit);
    }
    if now_ms.saturating_sub(epoch.created_ms) >= policy.rotation_ms() {
        return Decision::Rotate(Rotation::AgeLimit);
    }
    let joiners: BTreeSet<OwnedServerName> = readers.difference(&epoch.readers).cloned().collect();
    let past_hidden = matches!(visibility, "joined" | "invited");
    if !joiners.is_empty() && past_hidden && epoch.events > 0 {
        return Decision::Rotate(Rotation::JoinerMustNotReadPast);
    }
    Decision::Keep(joiners)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servers(names: &[&str]) -> BTreeSet<OwnedServerName> {
        names
            .iter()
            .map(|n| OwnedServerName::try_from(*n).expect("name"))
            .collect()
    }

    fn epoch(readers: &[&str], visibility: &str, events: u32) -> EpochFacts {
        EpochFacts {
            readers: servers(readers),
            visibility: visibility.into(),
            created_ms: 1_000,
            events,
        }
    }

    #[test]
    fn rotation_rules() {
        let p = KeyPolicy::default();
        let now = 2_000;
        let e = epoch(&["b", "c"], "shared", 3);
        assert_eq!(
            decide(None, &servers(&["b"]), "shared", now, &p),
            Decision::Rotate(Rotation::First)
        );
        // Same readers: keep, nothing to share.
        assert_eq!(
            decide(Some(&e), &servers(&["b", "c"]), "shared", now, &p),
            Decision::Keep(BTreeSet::new())
        );
        // A reader left (kick, ban, leave of its last member).
        assert_eq!(
            decide(Some(&e), &servers(&["b"]), "shared", now, &p),
            Decision::Rotate(Rotation::ReaderLeft)
        );
        // A joiner under shared visibility gets the epoch from its current index.
        assert_eq!(
            decide(Some(&e), &servers(&["b", "c", "d"]), "shared", now, &p),
            Decision::Keep(servers(&["d"]))
        );
        // Under joined or invited visibility a joiner starts a new epoch...
        let j = epoch(&["b", "c"], "joined", 3);
        assert_eq!(
            decide(Some(&j), &servers(&["b", "c", "d"]), "joined", now, &p),
            Decision::Rotate(Rotation::JoinerMustNotReadPast)
        );
        // ...unless the epoch encrypted nothing yet.
        let fresh = epoch(&["b", "c"], "invited", 0);
        assert_eq!(
            decide(Some(&fresh), &servers(&["b", "c", "d"]), "invited", now, &p),
            Decision::Keep(servers(&["d"]))
        );
        assert_eq!(
            decide(Some(&e), &servers(&["b", "c"]), "joined", now, &p),
            Decision::Rotate(Rotation::VisibilityChanged)
        );
        let full = epoch(&["b"], "shared", p.rotation_messages);
        assert_eq!(
            decide(Some(&full), &servers(&["b"]), "shared", now, &p),
            Decision::Rotate(Rotation::MessageLimit)
        );
        assert_eq!(
            decide(
                Some(&e),
                &servers(&["b", "c"]),
                "shared",
                1_000 + p.rotation_ms(),
                &p
            ),
            Decision::Rotate(Rotation::AgeLimit)
        );
    }

    #[test]
    fn policy_limits_are_checked() {
        assert!(KeyPolicy::default().check().is_ok());
        let short = KeyPolicy {
            retention_secs: 3600,
            ..KeyPolicy::default()
        };
        assert!(short.check().unwrap_err().contains("retention_secs"));
        let zero = KeyPolicy {
            rotation_messages: 0,
            ..KeyPolicy::default()
        };
        assert!(zero.check().unwrap_err().contains("rotation_messages"));
    }
}
