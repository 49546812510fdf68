//! Power levels read from a room's current state, outside a write transaction (for rules the
//! auth rules do not cover: aliases, the room directory).

use ruma::{RoomId, UserId};
use serde_json::Value;

use super::Rooms;
use crate::error::ApiResult;

impl Rooms {
    /// `user`'s power level under the room's current `m.room.power_levels` (without one, the
    /// creator has 100 and everyone else 0).
    pub fn user_power(&self, room: &RoomId, user: &UserId) -> ApiResult<i64> {
        match self.state_content(room, "m.room.power_levels", "")? {
            Some(pl) => Ok(pl
                .get("users")
                .and_then(|u| u.get(user.as_str()))
                .and_then(Value::as_i64)
                .or_else(|| pl.get("users_default").and_then(Value::as_i64))
                .unwrap_or(0)),
            None => {
                let creator = self
                    .state_pdu(room, "m.room.create", "")?
                    .map(|(p, _)| p.sender);
                Ok(if creator.as_deref() == Some(user) {
                    100
                } else {
                    0
                })
            }
        }
    }

    /// Whether `user` is joined to `room` with the power to send the state event `kind`
    /// (`events[kind]`, else `state_default`: 50, or 0 without a power-levels event).
    pub fn may_send_state(&self, room: &RoomId, user: &UserId, kind: &str) -> ApiResult<bool> {
        if self.membership(room, user)?.as_deref() != Some("join") {
            return Ok(false);
        }
        let needed = match self.state_content(room, "m.room.power_levels", "")? {
            Some(pl) => pl
                .get("events")
                .and_then(|e| e.get(kind))
                .and_then(Value::as_i64)
                .or_else(|| pl.get("state_default").and_then(Value::as_i64))
                .unwrap_or(50),
            None => 0,
        };
        Ok(self.user_power(room, user)? >= needed)
    }
}
