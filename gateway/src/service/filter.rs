//! Event filters (the spec's `EventFilter` / `RoomEventFilter`), applied to JSON filters.
//!
//! Filters arrive as stored JSON, inline JSON in `/sync?filter=`, or ruma types (serialised to
//! JSON first), so one evaluator over `serde_json::Value` serves all of them.

use serde_json::Value;

/// Whether `pattern` (with `*` wildcards) matches `value`.
pub fn glob(pattern: &str, value: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == value;
    }
    let mut rest = value;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

fn list(filter: &Value, field: &str) -> Option<Vec<String>> {
    filter.get(field).and_then(Value::as_array).map(|a| {
        a.iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    })
}

/// A compiled event filter; the default lets everything through.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    types: Option<Vec<String>>,
    not_types: Vec<String>,
    senders: Option<Vec<String>>,
    not_senders: Vec<String>,
    rooms: Option<Vec<String>>,
    not_rooms: Vec<String>,
    /// Maximum number of events to return.
    pub limit: Option<usize>,
    /// Whether only the members of senders in the returned events are sent (lazy loading).
    pub lazy_load_members: bool,
    /// Whether unread counts are split by thread (`unread_thread_notifications`).
    pub unread_thread_notifications: bool,
}

impl EventFilter {
    /// Reads a filter object (missing or non-object: no filtering).
    pub fn from_json(filter: Option<&Value>) -> Self {
        let Some(f) = filter.filter(|f| f.is_object()) else {
            return Self::default();
        };
        Self {
            types: list(f, "types"),
            not_types: list(f, "not_types").unwrap_or_default(),
            senders: list(f, "senders"),
            not_senders: list(f, "not_senders").unwrap_or_default(),
            rooms: list(f, "rooms"),
            not_rooms: list(f, "not_rooms").unwrap_or_default(),
            limit: f.get("limit").and_then(Value::as_u64).map(|l| l as usize),
            lazy_load_members: f
                .get("lazy_load_members")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            unread_thread_notifications: f
                .get("unread_thread_notifications")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        }
    }

    /// Whether an event of `event_type` from `sender` passes.
    pub fn allows(&self, event_type: &str, sender: Option<&str>) -> bool {
        if self.not_types.iter().any(|p| glob(p, event_type)) {
            return false;
        }
        if let Some(types) = &self.types {
            if !types.iter().any(|p| glob(p, event_type)) {
                return false;
            }
        }
        if let Some(sender) = sender {
            if self.not_senders.iter().any(|s| s == sender) {
                return false;
            }
            if let Some(senders) = &self.senders {
                if !senders.iter().any(|s| s == sender) {
                    return false;
                }
            }
        }
        true
    }

    /// Whether events of `room` pass the room lists.
    pub fn allows_room(&self, room: &str) -> bool {
        !self.not_rooms.iter().any(|r| r == room)
            && self
                .rooms
                .as_ref()
                .is_none_or(|rooms| rooms.iter().any(|r| r == room))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn globs() {
        assert!(glob("m.room.*", "m.room.message"));
        assert!(!glob("m.room.*", "m.call.invite"));
        assert!(glob("*", "x"));
        assert!(glob("a*c", "abbbc"));
        assert!(glob("exact", "exact"));
    }

    #[test]
    fn filter_types_senders_rooms() {
        let f = EventFilter::from_json(Some(&json!({
            "types": ["m.room.*"], "not_types": ["m.room.member"], "not_senders": ["@b:x"],
            "rooms": ["!a:x"], "limit": 5, "lazy_load_members": true
        })));
        assert!(f.allows("m.room.message", Some("@a:x")));
        assert!(!f.allows("m.room.member", Some("@a:x")));
        assert!(!f.allows("m.room.message", Some("@b:x")));
        assert!(!f.allows("m.typing", None));
        assert!(f.allows_room("!a:x") && !f.allows_room("!b:x"));
        assert_eq!(f.limit, Some(5));
        assert!(f.lazy_load_members);
        assert!(EventFilter::from_json(None).allows("anything", None));
    }
}
