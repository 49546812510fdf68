//! Membership changes: join, invite, leave, kick, ban, unban and knock, and the member events a
//! client sends through the generic state endpoint.
//!
//! Every membership change a client asks for goes through [`change`] (the dedicated endpoints
//! call the named wrappers), so one set of rules applies whichever endpoint was used:
//! - a client never asserts `join_authorised_via_users_server`: it is stripped from client
//!   content, and for a `restricted` / `knock_restricted` room the gateway checks the allow list
//!   itself and names a local joined member who may invite ([`authorise_restricted_join`]);
//! - one may only join, leave or knock for oneself; invite, kick, ban and unban target others;
//! - the room's auth rules (ruma's `state_res`) then judge the event as for any other.
//!
//! A room this gateway does not hold (an invite from another gateway, a room id or alias of
//! another gateway) is joined or left through the `Remote` port (peering).

use ruma::{OwnedEventId, OwnedServerName, OwnedUserId, RoomId, UserId};
use serde_json::{json, Map, Value};

use crate::{
    error::{ApiError, ApiResult},
    service::Gateway,
};

/// The field only the resident server may set on a join into a restricted room.
pub const AUTHORISED_VIA: &str = "join_authorised_via_users_server";

/// Invitees must be known here (an application service whose namespace holds an unknown one
/// is asked first) or belong to another gateway.
pub async fn check_invitee(gw: &Gateway, user: &UserId) -> ApiResult<()> {
    if user.server_name() == gw.server_name()
        && !crate::service::appservice::query::user_exists(gw, user).await?
    {
        return Err(ApiError::not_found(format!("Unknown user {user}")));
    }
    Ok(())
}

/// Joins `user` to `room` (a no-op when already joined).
pub async fn join(
    gw: &Gateway,
    user: &UserId,
    room: &RoomId,
    reason: Option<&str>,
) -> ApiResult<()> {
    join_via(gw, user, room, reason, &[]).await
}

/// Gateways to ask about a room this gateway does not hold: those the client named, the
/// inviter's, and the one in the room id.
fn remote_candidates(
    gw: &Gateway,
    user: &UserId,
    room: &RoomId,
    via: &[OwnedServerName],
) -> ApiResult<Vec<OwnedServerName>> {
    let mut servers: Vec<OwnedServerName> = Vec::new();
    if let Some(invite) = gw.rooms.remote_invite(user, room)? {
        if let Ok(pdu) = super::Pdu::parse(invite.event_id.clone(), &invite.event) {
            servers.push(pdu.sender.server_name().to_owned());
        }
    }
    servers.extend(via.iter().cloned());
    if let Some(server) = room.server_name() {
        servers.push(server.to_owned());
    }
    let mut seen = std::collections::HashSet::new();
    servers.retain(|s| s != gw.server_name() && seen.insert(s.clone()));
    Ok(servers)
}

/// Joins `user` to `room`, through the gateways `via` when the room lives elsewhere.
pub async fn join_via(
    gw: &Gateway,
    user: &UserId,
    room: &RoomId,
    reason: Option<&str>,
    via: &[OwnedServerName],
) -> ApiResult<()> {
    // Whether the room is held here or joined through another gateway.
    gw.rooms.refuse_blocked(room)?;
    if gw.rooms.meta(room)?.is_none() {
        let servers = remote_candidates(gw, user, room, via)?;
        if servers.is_empty() {
            return Err(ApiError::not_found("Unknown room"));
        }
        return gw.remote.join(room, servers, user).await;
    }
    if gw.rooms.membership(room, user)?.as_deref() == Some("join") {
        return Ok(());
    }
    change(gw, room, user, user, "join", extra(reason)).await?;
    Ok(())
}

/// `sender` invites `target` into `room`.
pub async fn invite(
    gw: &Gateway,
    sender: &UserId,
    room: &RoomId,
    target: &UserId,
    reason: Option<&str>,
) -> ApiResult<()> {
    change(gw, room, sender, target, "invite", extra(reason)).await?;
    Ok(())
}

/// `user` leaves `room` (or rejects an invite, or withdraws a knock). Leaving a room one has
/// already left is a no-op; never having been in it is 404.
pub async fn leave(
    gw: &Gateway,
    user: &UserId,
    room: &RoomId,
    reason: Option<&str>,
) -> ApiResult<()> {
    if gw.rooms.meta(room)?.is_none() && gw.rooms.remote_invite(user, room)?.is_some() {
        // Rejecting an invite into a room on other gateways: tell them if they can be
        // reached, and drop the invite here either way.
        let servers = remote_candidates(gw, user, room, &[])?;
        if let Err(e) = gw.remote.leave(room, servers, user).await {
            tracing::info!(room = %room, "invite rejected here only: {}", e.message);
        }
        return gw.rooms.drop_remote_invite(user, room).await;
    }
    match gw.rooms.membership(room, user)?.as_deref() {
        Some("join" | "invite" | "knock") => {
            change(gw, room, user, user, "leave", extra(reason)).await?;
            Ok(())
        }
        Some(_) => Ok(()),
        None => Err(ApiError::not_found("You are not in this room")),
    }
}

/// `sender` kicks `target` out of `room`.
pub async fn kick(
    gw: &Gateway,
    sender: &UserId,
    room: &RoomId,
    target: &UserId,
    reason: Option<&str>,
) -> ApiResult<()> {
    change(gw, room, sender, target, "leave", extra(reason)).await?;
    Ok(())
}

/// `sender` bans `target` from `room`.
pub async fn ban(
    gw: &Gateway,
    sender: &UserId,
    room: &RoomId,
    target: &UserId,
    reason: Option<&str>,
) -> ApiResult<()> {
    change(gw, room, sender, target, "ban", extra(reason)).await?;
    Ok(())
}

/// `sender` lifts the ban of `target` in `room`.
pub async fn unban(
    gw: &Gateway,
    sender: &UserId,
    room: &RoomId,
    target: &UserId,
    reason: Option<&str>,
) -> ApiResult<()> {
    if gw.rooms.membership(room, target)?.as_deref() != Some("ban") {
        return Err(ApiError::forbidden("The user is not banned"));
    }
    change(gw, room, sender, target, "leave", extra(reason)).await?;
    Ok(())
}

/// `user` knocks on `room`.
pub async fn knock(
    gw: &Gateway,
    user: &UserId,
    room: &RoomId,
    reason: Option<&str>,
) -> ApiResult<()> {
    change(gw, room, user, user, "knock", extra(reason)).await?;
    Ok(())
}

fn extra(reason: Option<&str>) -> Map<String, Value> {
    let mut m = Map::new();
    if let Some(reason) = reason {
        m.insert("reason".into(), json!(reason));
    }
    m
}

/// A member event sent through `PUT /rooms/{room}/state/m.room.member/{target}`: `content`
/// is the client's, its `membership` says which change it is. Returns the event id.
pub async fn from_state_event(
    gw: &Gateway,
    sender: &UserId,
    room: &RoomId,
    target: &str,
    content: Value,
) -> ApiResult<OwnedEventId> {
    let target = UserId::parse(target)
        .map_err(|_| ApiError::bad_json("The state key of m.room.member must be a user id"))?;
    let Value::Object(content) = content else {
        return Err(ApiError::bad_json("Event content must be an object"));
    };
    let membership = content
        .get("membership")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_json("m.room.member without a valid `membership`"))?
        .to_owned();
    change(gw, room, sender, &target, &membership, content).await
}

/// Applies one membership change after checking who may ask for it; `content` carries the
/// client's extra fields (`reason`, `displayname`, `is_direct`, ...). Every membership change
/// a client requests ends here.
pub async fn change(
    gw: &Gateway,
    room: &RoomId,
    sender: &UserId,
    target: &UserId,
    membership: &str,
    mut content: Map<String, Value>,
) -> ApiResult<OwnedEventId> {
    if matches!(membership, "join" | "invite" | "knock") {
        gw.rooms.refuse_blocked(room)?;
    }
    if gw.rooms.meta(room)?.is_none() {
        return Err(ApiError::not_found("Unknown room"));
    }
    // Only this gateway decides who vouches for a restricted join.
    content.remove(AUTHORISED_VIA);
    content.insert("membership".into(), json!(membership));
    let current = gw.rooms.membership(room, target)?;
    let own = sender == target;
    match (membership, own) {
        ("join" | "knock", false) => {
            return Err(ApiError::forbidden(format!(
                "You cannot {membership} for another user"
            )))
        }
        ("join", true) | ("invite", true) => {
            // A self-invite is refused by the auth rules; a new join shows the profile.
            let joined = current.as_deref() == Some("join");
            if let Some(profile) = gw.users.get(target)?.filter(|_| !joined) {
                for (key, value) in [
                    ("displayname", profile.displayname),
                    ("avatar_url", profile.avatar_url),
                ] {
                    if let (Some(v), false) = (value, content.contains_key(key)) {
                        content.insert(key.into(), json!(v));
                    }
                }
            }
        }
        ("invite", false) => {
            // Joined first: only members make the gateway ask a service about an invitee.
            gw.rooms.require_joined(room, sender)?;
            check_invitee(gw, target).await?;
        }
        ("leave", false) if current.is_none() => {
            return Err(ApiError::forbidden("The user is not in this room"));
        }
        ("leave" | "ban" | "knock", _) => {}
        (other, _) => {
            return Err(ApiError::bad_json(format!("Unknown membership {other}")));
        }
    }
    let candidates = if membership == "join" && current.as_deref() != Some("join") {
        local_joined(gw, room)?
    } else {
        Vec::new()
    };
    let (event_id, _) = gw
        .rooms
        .write(room, None, |txn| {
            if membership == "join" {
                let prev = txn.state_content("m.room.member", target.as_str())?;
                let prev_membership = prev
                    .as_ref()
                    .and_then(|c| c.get("membership"))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                // Keep `is_direct` of the invite when joining, as clients expect.
                if prev.as_ref().and_then(|c| c.get("is_direct")) == Some(&json!(true)) {
                    content.insert("is_direct".into(), json!(true));
                }
                if !matches!(prev_membership.as_deref(), Some("join" | "invite")) {
                    if let Some(via) = authorise_restricted_join(gw, txn, target, &candidates)? {
                        content.insert(AUTHORISED_VIA.into(), json!(via));
                    }
                }
            }
            Ok(txn
                .append(
                    sender,
                    "m.room.member",
                    Some(target.as_str()),
                    Value::Object(content),
                    None,
                )?
                .event_id)
        })
        .await?;
    Ok(event_id)
}

/// Users of this gateway joined to `room` (who could vouch for a restricted join).
pub fn local_joined(gw: &Gateway, room: &RoomId) -> ApiResult<Vec<OwnedUserId>> {
    Ok(gw
        .rooms
        .members(room)?
        .into_iter()
        .filter(|(u, m)| m.membership == "join" && u.server_name() == gw.server_name())
        .map(|(u, _)| u)
        .collect())
}

/// For a join of `user` (not invited, not joined) into a `restricted` or `knock_restricted`
/// room: checks the join rule's allow list (the user is joined to one of the allowed rooms on
/// this gateway) and returns a member of `candidates` still joined with the power to invite,
/// to be named in `join_authorised_via_users_server`. `Ok(None)` for other join rules (the auth
/// rules decide); 403 when the user does not qualify or nobody here can vouch.
pub fn authorise_restricted_join(
    gw: &Gateway,
    txn: &super::RoomTxn<'_>,
    user: &UserId,
    candidates: &[OwnedUserId],
) -> ApiResult<Option<OwnedUserId>> {
    let rules = txn.state_content("m.room.join_rules", "")?;
    let rule = rules
        .as_ref()
        .and_then(|r| r.get("join_rule"))
        .and_then(Value::as_str);
    if !matches!(rule, Some("restricted" | "knock_restricted")) {
        return Ok(None);
    }
    let allowed = rules
        .as_ref()
        .and_then(|r| r.get("allow"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| c.get("type").and_then(Value::as_str) == Some("m.room_membership"))
        .filter_map(|c| c.get("room_id").and_then(Value::as_str))
        .filter_map(|r| RoomId::parse(r).ok());
    let mut qualifies = false;
    for allowed_room in allowed {
        if gw.rooms.membership(&allowed_room, user)?.as_deref() == Some("join") {
            qualifies = true;
            break;
        }
    }
    if !qualifies {
        return Err(ApiError::forbidden(
            "You are not invited to this room and not in any room it allows",
        ));
    }
    let needed = txn.required_level("invite", 0)?;
    for candidate in candidates {
        if txn.membership(candidate)?.as_deref() == Some("join")
            && txn.power_level(candidate)? >= needed
        {
            return Ok(Some(candidate.clone()));
        }
    }
    Err(ApiError::forbidden(
        "No member of this room on this gateway can authorise your join",
    ))
}
