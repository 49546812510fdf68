//! Presence: the status users set, kept in memory only.
//!
//! Presence is off by default (`presence = false` in the config) because it tells anyone
//! sharing a room when a user is online, and replicating it to other gateways would make the
//! gateway's traffic depend on its users' activity. The endpoints still answer: a user may set
//! and read their own status; with presence off, everyone else reads as `offline`.

use std::{
    collections::HashMap,
    sync::RwLock,
    time::{Duration, Instant},
};

use ruma::{presence::PresenceState, OwnedUserId, UserId};

/// A user's last set status.
#[derive(Debug, Clone)]
pub struct Status {
    /// `online`, `offline` or `unavailable`.
    pub presence: PresenceState,
    /// Free-text status message.
    pub status_msg: Option<String>,
    /// When it was set.
    pub set_at: Instant,
}

impl Status {
    /// Time since the status was set.
    pub fn age(&self) -> Duration {
        self.set_at.elapsed()
    }
}

/// In-memory presence statuses.
#[derive(Debug, Default)]
pub struct Presence {
    statuses: RwLock<HashMap<OwnedUserId, Status>>,
}

impl Presence {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `user`'s status.
    pub fn set(&self, user: &UserId, presence: PresenceState, status_msg: Option<String>) {
        let status = Status {
            presence,
            status_msg,
            set_at: Instant::now(),
        };
        self.statuses
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(user.to_owned(), status);
    }

    /// `user`'s last set status.
    pub fn get(&self, user: &UserId) -> Option<Status> {
        self.statuses
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(user)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruma::user_id;

    #[test]
    fn set_then_get() {
        let p = Presence::new();
        let alice = user_id!("@alice:example.org");
        assert!(p.get(alice).is_none());
        p.set(alice, PresenceState::Unavailable, Some("lunch".into()));
        let s = p.get(alice).expect("set");
        assert_eq!(s.presence, PresenceState::Unavailable);
        assert_eq!(s.status_msg.as_deref(), Some("lunch"));
    }
}
