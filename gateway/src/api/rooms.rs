//! Room creation, membership, member lists, aliases and the room directory.

use std::sync::Arc;

use axum::{extract::State, Json, Router};
use ruma::{
    api::client::{
        alias::{
            create_alias::v3 as create_alias, delete_alias::v3 as delete_alias,
            get_alias::v3 as get_alias,
        },
        directory::{
            get_public_rooms::v3 as public_rooms,
            get_public_rooms_filtered::v3 as public_rooms_filtered,
            get_room_visibility::v3 as get_visibility, set_room_visibility::v3 as set_visibility,
        },
        knock::knock_room::v3 as knock_room,
        membership::{
            ban_user::v3 as ban, forget_room::v3 as forget, get_member_events::v3 as members,
            invite_user::v3 as invite, join_room_by_id::v3 as join_by_id,
            join_room_by_id_or_alias::v3 as join_by_alias, joined_members::v3 as joined_members,
            joined_rooms::v3 as joined_rooms, kick_user::v3 as kick, leave_room::v3 as leave,
            unban_user::v3 as unban,
        },
        room::{aliases::v3 as room_aliases, create_room::v3 as create_room, Visibility},
    },
    OwnedRoomId, RoomId,
};
use serde_json::{json, Map, Value};

use super::{add, Ruma, RumaResponse, RumaResult};
use crate::{
    error::{ApiError, ApiResult},
    service::{
        appservice,
        rooms::{limits, membership, CreateRoom},
        Gateway,
    },
};

async fn create(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<create_room::Request>,
) -> RumaResult<create_room::Response> {
    let caller = req.caller()?.clone();
    let body = req.body;
    let preset = match (&body.preset, &body.visibility) {
        (Some(p), _) => p.as_str().to_owned(),
        (None, Visibility::Public) => "public_chat".to_owned(),
        (None, _) => "private_chat".to_owned(),
    };
    if !matches!(
        preset.as_str(),
        "private_chat" | "trusted_private_chat" | "public_chat"
    ) {
        return Err(ApiError::bad_json(format!("Unknown preset {preset}")));
    }
    let creation_content = match &body.creation_content {
        Some(raw) => serde_json::from_str::<Map<String, Value>>(raw.json().get())?,
        None => Map::new(),
    };
    let power_level_override = match &body.power_level_content_override {
        Some(raw) => Some(serde_json::from_str::<Map<String, Value>>(
            raw.json().get(),
        )?),
        None => None,
    };
    let mut initial_state = Vec::new();
    for raw in &body.initial_state {
        let ev: Value = serde_json::from_str(raw.json().get())?;
        let ty = ev
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::bad_json("initial_state event without type"))?;
        let sk = ev.get("state_key").and_then(Value::as_str).unwrap_or("");
        limits::check_event_identifiers(ty, Some(sk))?;
        let content = ev.get("content").cloned().unwrap_or_else(|| json!({}));
        initial_state.push((ty.to_owned(), sk.to_owned(), content));
    }
    let alias = match &body.room_alias_name {
        Some(local) => {
            let alias = ruma::RoomAliasId::parse(format!("#{local}:{}", gw.server_name()))
                .map_err(|e| ApiError::invalid_param(format!("Invalid alias: {e}")))?;
            gw.appservices
                .check_alias(&alias, caller.appservice.as_deref())?;
            if gw.rooms.resolve_alias(&alias)?.is_some() {
                return Err(ApiError::room_in_use("Room alias already taken"));
            }
            Some(alias)
        }
        None => None,
    };
    for invitee in &body.invite {
        membership::check_invitee(&gw, invitee).await?;
    }
    let profile = gw.users.get(&caller.user_id)?;
    let spec = CreateRoom {
        preset,
        version: body.room_version.clone(),
        creation_content,
        power_level_override,
        initial_state,
        name: body.name.clone(),
        topic: body.topic.clone(),
        alias: alias.as_ref().map(|a| a.to_string()),
        invite: body.invite.clone(),
        is_direct: body.is_direct,
        creator_profile: profile
            .map(|p| (p.displayname, p.avatar_url))
            .unwrap_or_default(),
    };
    let room_id = gw.rooms.create(&caller.user_id, spec).await?;
    if let Some(alias) = alias {
        gw.rooms
            .create_alias_as(&caller.user_id, &alias, &room_id)
            .await?;
    }
    if body.visibility == Visibility::Public {
        gw.rooms.set_public(&room_id, true).await?;
    }
    Ok(RumaResponse(create_room::Response::new(room_id)))
}

async fn join_id(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<join_by_id::Request>,
) -> RumaResult<join_by_id::Response> {
    let caller = req.caller()?;
    let b = &req.body;
    membership::join(&gw, &caller.user_id, &b.room_id, b.reason.as_deref()).await?;
    Ok(RumaResponse(join_by_id::Response::new(b.room_id.clone())))
}

async fn join_alias(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<join_by_alias::Request>,
) -> RumaResult<join_by_alias::Response> {
    let caller = req.caller()?;
    let mut via = req.body.via.clone();
    let room_id: OwnedRoomId = match <&RoomId>::try_from(&*req.body.room_id_or_alias) {
        Ok(id) => id.to_owned(),
        Err(alias) if alias.server_name() != gw.server_name() => {
            let (room, servers) = gw.remote.resolve_alias(alias).await?;
            via.extend(servers);
            room
        }
        Err(alias) => appservice::query::resolve_alias(&gw, alias)
            .await?
            .ok_or_else(|| ApiError::not_found("Unknown room alias"))?,
    };
    membership::join_via(
        &gw,
        &caller.user_id,
        &room_id,
        req.body.reason.as_deref(),
        &via,
    )
    .await?;
    Ok(RumaResponse(join_by_alias::Response::new(room_id)))
}

async fn knock(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<knock_room::Request>,
) -> RumaResult<knock_room::Response> {
    let caller = req.caller()?;
    let room_id: OwnedRoomId = match <&RoomId>::try_from(&*req.body.room_id_or_alias) {
        Ok(id) => id.to_owned(),
        Err(alias) => appservice::query::resolve_alias(&gw, alias)
            .await?
            .ok_or_else(|| ApiError::not_found("Unknown room alias"))?,
    };
    membership::knock(&gw, &caller.user_id, &room_id, req.body.reason.as_deref()).await?;
    Ok(RumaResponse(knock_room::Response::new(room_id)))
}

async fn invite_user(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<invite::Request>,
) -> RumaResult<invite::Response> {
    let caller = req.caller()?;
    let invite::InvitationRecipient::UserId(recipient) = &req.body.recipient else {
        return Err(ApiError::forbidden("Third-party invites are not supported"));
    };
    membership::invite(
        &gw,
        &caller.user_id,
        &req.body.room_id,
        &recipient.user_id,
        recipient.reason.as_deref(),
    )
    .await?;
    Ok(RumaResponse(invite::Response::new()))
}

async fn leave_room(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<leave::Request>,
) -> RumaResult<leave::Response> {
    let caller = req.caller()?;
    let b = &req.body;
    membership::leave(&gw, &caller.user_id, &b.room_id, b.reason.as_deref()).await?;
    Ok(RumaResponse(leave::Response::new()))
}

async fn forget_room(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<forget::Request>,
) -> RumaResult<forget::Response> {
    let caller = req.caller()?;
    match gw
        .rooms
        .membership(&req.body.room_id, &caller.user_id)?
        .as_deref()
    {
        Some("join") => return Err(ApiError::bad_request("Leave the room before forgetting it")),
        None => return Err(ApiError::not_found("You are not in this room")),
        _ => gw.rooms.forget(&req.body.room_id, &caller.user_id).await?,
    }
    Ok(RumaResponse(forget::Response::new()))
}

async fn kick_user(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<kick::Request>,
) -> RumaResult<kick::Response> {
    let caller = req.caller()?;
    let b = &req.body;
    membership::kick(
        &gw,
        &caller.user_id,
        &b.room_id,
        &b.user_id,
        b.reason.as_deref(),
    )
    .await?;
    Ok(RumaResponse(kick::Response::new()))
}

async fn ban_user(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<ban::Request>,
) -> RumaResult<ban::Response> {
    let caller = req.caller()?;
    let b = &req.body;
    membership::ban(
        &gw,
        &caller.user_id,
        &b.room_id,
        &b.user_id,
        b.reason.as_deref(),
    )
    .await?;
    Ok(RumaResponse(ban::Response::new()))
}

async fn unban_user(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<unban::Request>,
) -> RumaResult<unban::Response> {
    let caller = req.caller()?;
    let b = &req.body;
    membership::unban(
        &gw,
        &caller.user_id,
        &b.room_id,
        &b.user_id,
        b.reason.as_deref(),
    )
    .await?;
    Ok(RumaResponse(unban::Response::new()))
}

async fn list_joined_rooms(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<joined_rooms::Request>,
) -> RumaResult<joined_rooms::Response> {
    let caller = req.caller()?;
    Ok(RumaResponse(joined_rooms::Response::new(
        gw.rooms.joined_rooms(&caller.user_id)?,
    )))
}

async fn get_members(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<members::Request>,
) -> ApiResult<Json<Value>> {
    let caller = req.caller()?;
    let room = &req.body.room_id;
    let horizon = gw
        .rooms
        .member_list_horizon(room, &caller.user_id)?
        .ok_or_else(|| ApiError::forbidden("You are not a member of this room"))?;
    let at = super::message::parse_token(req.body.at.as_deref())?.unwrap_or(u64::MAX);
    let want = req.body.membership.as_ref().map(|m| m.as_str().to_owned());
    let not = req
        .body
        .not_membership
        .as_ref()
        .map(|m| m.as_str().to_owned());
    let mut chunk = Vec::new();
    for (_, entry) in gw.rooms.members_at(room, horizon.min(at))? {
        if want.as_ref().is_some_and(|w| *w != entry.membership)
            || not.as_ref().is_some_and(|n| *n == entry.membership)
        {
            continue;
        }
        if let Some((pdu, stored)) = gw.rooms.get_pdu(&entry.event_id)? {
            chunk.push(pdu.to_client_event(&stored, None));
        }
    }
    Ok(Json(json!({ "chunk": chunk })))
}

async fn get_joined_members(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<joined_members::Request>,
) -> ApiResult<Json<Value>> {
    let caller = req.caller()?;
    let room = &req.body.room_id;
    // The spec: the current members only, for current members only.
    gw.rooms.require_joined(room, &caller.user_id)?;
    let mut joined = Map::new();
    for (user, entry) in gw.rooms.members(room)? {
        if entry.membership != "join" {
            continue;
        }
        let content = gw
            .rooms
            .state_content(room, "m.room.member", user.as_str())?
            .unwrap_or_default();
        joined.insert(
            user.to_string(),
            json!({ "display_name": content.get("displayname"), "avatar_url": content.get("avatar_url") }),
        );
    }
    Ok(Json(json!({ "joined": joined })))
}

async fn put_alias(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<create_alias::Request>,
) -> RumaResult<create_alias::Response> {
    let caller = req.caller()?;
    gw.appservices
        .check_alias(&req.body.room_alias, caller.appservice.as_deref())?;
    gw.rooms
        .create_alias_as(&caller.user_id, &req.body.room_alias, &req.body.room_id)
        .await?;
    Ok(RumaResponse(create_alias::Response::new()))
}

async fn resolve_alias(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<get_alias::Request>,
) -> RumaResult<get_alias::Response> {
    let alias = &req.body.room_alias;
    if alias.server_name() != gw.server_name() {
        let (room, servers) = gw.remote.resolve_alias(alias).await?;
        return Ok(RumaResponse(get_alias::Response::new(room, servers)));
    }
    let room = appservice::query::resolve_alias(&gw, alias)
        .await?
        .ok_or_else(|| ApiError::not_found("Unknown room alias"))?;
    let mut servers = vec![gw.server_name().to_owned()];
    servers.extend(gw.rooms.member_servers(&room)?);
    Ok(RumaResponse(get_alias::Response::new(room, servers)))
}

async fn remove_alias(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<delete_alias::Request>,
) -> RumaResult<delete_alias::Response> {
    let caller = req.caller()?;
    gw.rooms
        .delete_alias_as(&caller.user_id, &req.body.room_alias)
        .await?;
    Ok(RumaResponse(delete_alias::Response::new()))
}

async fn list_aliases(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<room_aliases::Request>,
) -> RumaResult<room_aliases::Response> {
    let caller = req.caller()?;
    // Current aliases are current state: members and world-readable rooms only, and server
    // admins (synadm's `user deactivate` lists a user's rooms by alias).
    if gw
        .rooms
        .member_list_horizon(&req.body.room_id, &caller.user_id)?
        != Some(u64::MAX)
        && !crate::service::admin::is_admin(&gw, &caller.user_id)?
    {
        return Err(ApiError::forbidden("You are not a member of this room"));
    }
    Ok(RumaResponse(room_aliases::Response::new(
        gw.rooms.aliases_of(&req.body.room_id)?,
    )))
}

async fn get_room_visibility(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<get_visibility::Request>,
) -> RumaResult<get_visibility::Response> {
    if gw.rooms.meta(&req.body.room_id)?.is_none() {
        return Err(ApiError::not_found("Unknown room"));
    }
    let v = if gw.rooms.is_public(&req.body.room_id)? {
        Visibility::Public
    } else {
        Visibility::Private
    };
    Ok(RumaResponse(get_visibility::Response::new(v)))
}

async fn set_room_visibility(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<set_visibility::Request>,
) -> RumaResult<set_visibility::Response> {
    let caller = req.caller()?;
    let public = req.body.visibility == Visibility::Public;
    gw.rooms
        .set_public_as(&caller.user_id, &req.body.room_id, public)
        .await?;
    Ok(RumaResponse(set_visibility::Response::new()))
}

/// One entry of the public room directory.
fn public_room_chunk(gw: &Gateway, room: &RoomId) -> ApiResult<Value> {
    let content = |ty: &str, field: &str| -> ApiResult<Option<Value>> {
        Ok(gw
            .rooms
            .state_content(room, ty, "")?
            .and_then(|c| c.get(field).cloned()))
    };
    let joined = gw
        .rooms
        .members(room)?
        .into_iter()
        .filter(|(_, m)| m.membership == "join")
        .count();
    Ok(json!({
        "room_id": room,
        "name": content("m.room.name", "name")?,
        "topic": content("m.room.topic", "topic")?,
        "canonical_alias": content("m.room.canonical_alias", "alias")?,
        "avatar_url": content("m.room.avatar", "url")?,
        "num_joined_members": joined,
        "world_readable": content("m.room.history_visibility", "history_visibility")? == Some(json!("world_readable")),
        "guest_can_join": content("m.room.guest_access", "guest_access")? == Some(json!("can_join")),
        "join_rule": content("m.room.join_rules", "join_rule")?,
    }))
}

fn public_rooms_page(
    gw: &Gateway,
    term: Option<&str>,
    limit: Option<usize>,
    since: Option<&str>,
) -> ApiResult<Value> {
    let mut chunk = Vec::new();
    for room in gw.rooms.public_rooms()? {
        let entry = public_room_chunk(gw, &room)?;
        if let Some(term) = term {
            let term = term.to_lowercase();
            let hay = format!(
                "{} {} {}",
                entry["name"], entry["topic"], entry["canonical_alias"]
            )
            .to_lowercase();
            if !hay.contains(&term) {
                continue;
            }
        }
        chunk.push(entry);
    }
    chunk.sort_by(|a, b| {
        b["num_joined_members"]
            .as_u64()
            .cmp(&a["num_joined_members"].as_u64())
    });
    let total = chunk.len();
    let start: usize = since.and_then(|s| s.parse().ok()).unwrap_or(0).min(total);
    let limit = limit.unwrap_or(total).max(1);
    let end = (start + limit).min(total);
    let mut body = json!({ "chunk": chunk[start..end], "total_room_count_estimate": total });
    if end < total {
        body["next_batch"] = json!(end.to_string());
    }
    if start > 0 {
        body["prev_batch"] = json!(start.saturating_sub(limit).to_string());
    }
    Ok(body)
}

async fn get_public(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<public_rooms::Request>,
) -> ApiResult<Json<Value>> {
    let limit = req.body.limit.map(|l| u64::from(l) as usize);
    Ok(Json(public_rooms_page(
        &gw,
        None,
        limit,
        req.body.since.as_deref(),
    )?))
}

async fn post_public(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<public_rooms_filtered::Request>,
) -> ApiResult<Json<Value>> {
    let limit = req.body.limit.map(|l| u64::from(l) as usize);
    let term = req.body.filter.generic_search_term.as_deref();
    Ok(Json(public_rooms_page(
        &gw,
        term,
        limit,
        req.body.since.as_deref(),
    )?))
}

pub(super) fn routes(r: Router<Arc<Gateway>>) -> Router<Arc<Gateway>> {
    let r = add::<create_room::Request, _, _>(r, create);
    let r = add::<join_by_id::Request, _, _>(r, join_id);
    let r = add::<join_by_alias::Request, _, _>(r, join_alias);
    let r = add::<invite::Request, _, _>(r, invite_user);
    let r = add::<knock_room::Request, _, _>(r, knock);
    let r = add::<leave::Request, _, _>(r, leave_room);
    let r = add::<forget::Request, _, _>(r, forget_room);
    let r = add::<kick::Request, _, _>(r, kick_user);
    let r = add::<ban::Request, _, _>(r, ban_user);
    let r = add::<unban::Request, _, _>(r, unban_user);
    let r = add::<joined_rooms::Request, _, _>(r, list_joined_rooms);
    let r = add::<members::Request, _, _>(r, get_members);
    let r = add::<joined_members::Request, _, _>(r, get_joined_members);
    let r = add::<create_alias::Request, _, _>(r, put_alias);
    let r = add::<get_alias::Request, _, _>(r, resolve_alias);
    let r = add::<delete_alias::Request, _, _>(r, remove_alias);
    let r = add::<room_aliases::Request, _, _>(r, list_aliases);
    let r = add::<get_visibility::Request, _, _>(r, get_room_visibility);
    let r = add::<set_visibility::Request, _, _>(r, set_room_visibility);
    let r = add::<public_rooms::Request, _, _>(r, get_public);
    add::<public_rooms_filtered::Request, _, _>(r, post_public)
}
