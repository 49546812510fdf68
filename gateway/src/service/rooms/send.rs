//! Sending an event from a local client: transaction-id idempotence, identifier limits,
//! redaction rights, and membership events routed through [`super::membership`].

use ruma::{OwnedEventId, RoomId, UserId};
use serde_json::Value;

use super::{limits, membership, RoomTxn};
use crate::{
    error::{ApiError, ApiResult},
    service::{caller::Caller, Gateway},
};

/// Appends an event from `caller`, idempotent per `(device, txn_id)` when one is given.
///
/// `m.room.member` events go through [`membership::from_state_event`], so the generic state
/// endpoint obeys the same rules as `/join`, `/invite`, `/kick`, ...; `m.room.create` cannot be
/// sent at all.
pub async fn send_event(
    gw: &Gateway,
    caller: &Caller,
    room: &RoomId,
    kind: &str,
    state_key: Option<&str>,
    content: Value,
    txn_id: Option<&str>,
) -> ApiResult<OwnedEventId> {
    limits::check_event_identifiers(kind, state_key)?;
    if let Some(txn) = txn_id {
        if let Some(existing) =
            gw.rooms
                .txn_event(&caller.user_id, caller.device_id.as_str(), txn)?
        {
            return Ok(existing);
        }
    }
    if gw.rooms.meta(room)?.is_none() {
        return Err(ApiError::forbidden("Unknown room or not a member"));
    }
    match (kind, state_key) {
        ("m.room.create", _) => {
            return Err(ApiError::forbidden("m.room.create cannot be sent"));
        }
        ("m.room.member", Some(target)) => {
            return membership::from_state_event(gw, &caller.user_id, room, target, content).await;
        }
        ("m.room.member", None) => {
            return Err(ApiError::bad_json(
                "m.room.member is a state event: use the state endpoint",
            ));
        }
        _ => {}
    }
    let (event_id, _) = gw
        .rooms
        .write(room, None, |t| {
            if let Some(txn) = txn_id {
                // Checked again under the write lock: concurrent retries must not duplicate.
                if let Some(existing) =
                    gw.rooms
                        .txn_event(&caller.user_id, caller.device_id.as_str(), txn)?
                {
                    return Ok(existing);
                }
            }
            let txn_ref = txn_id.map(|t| (&*caller.user_id, caller.device_id.as_str(), t));
            if kind == "m.room.redaction" {
                check_redaction(t, &caller.user_id, &content)?;
            }
            Ok(
                t.append(&caller.user_id, kind, state_key, content, txn_ref)?
                    .event_id,
            )
        })
        .await?;
    Ok(event_id)
}

/// Only the original sender or someone with the `redact` power level may redact an event, and
/// only an event of the same room.
pub fn check_redaction(t: &RoomTxn<'_>, sender: &UserId, content: &Value) -> ApiResult<()> {
    let target = content
        .get("redacts")
        .and_then(Value::as_str)
        .and_then(|s| ruma::EventId::parse(s).ok())
        .ok_or_else(|| ApiError::bad_json("Redaction without a valid `redacts`"))?;
    let Some((target_pdu, _)) = t.pdu(&target)? else {
        return Err(ApiError::not_found("Unknown event"));
    };
    if target_pdu.room_id != t.room_id() {
        return Err(ApiError::not_found("Unknown event"));
    }
    if target_pdu.sender != sender && t.power_level(sender)? < t.required_level("redact", 50)? {
        return Err(ApiError::forbidden("You may not redact this event"));
    }
    Ok(())
}
