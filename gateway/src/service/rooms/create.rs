//! Room creation: the event sequence of `/createRoom` with presets.

use ruma::{OwnedRoomId, OwnedUserId, RoomId, RoomVersionId, UserId};
use serde_json::{json, Map, Value};

use super::Rooms;
use crate::error::{ApiError, ApiResult};

/// Everything `/createRoom` can ask for, already validated by the API layer.
#[derive(Debug, Clone, Default)]
pub struct CreateRoom {
    /// `private_chat`, `trusted_private_chat` or `public_chat`.
    pub preset: String,
    /// Room version (default [`super::DEFAULT_ROOM_VERSION`]).
    pub version: Option<RoomVersionId>,
    /// Extra `m.room.create` content.
    pub creation_content: Map<String, Value>,
    /// Fields merged over the default power levels.
    pub power_level_override: Option<Map<String, Value>>,
    /// `(type, state_key, content)` of initial state events.
    pub initial_state: Vec<(String, String, Value)>,
    /// Room name.
    pub name: Option<String>,
    /// Room topic.
    pub topic: Option<String>,
    /// Canonical alias to set (already reserved by the caller).
    pub alias: Option<String>,
    /// Users to invite.
    pub invite: Vec<OwnedUserId>,
    /// Whether invites are for a direct chat.
    pub is_direct: bool,
    /// The creator's display name and avatar for their member event.
    pub creator_profile: (Option<String>, Option<String>),
}

/// A fresh room id on this gateway.
pub fn new_room_id(server: &ruma::ServerName) -> ApiResult<OwnedRoomId> {
    RoomId::parse(format!(
        "!{}:{}",
        crate::service::users::random_string(18),
        server
    ))
    .map_err(|e| ApiError::internal(e.to_string()))
}

fn default_power_levels(creator: &UserId, spec: &CreateRoom) -> Value {
    let mut users = Map::new();
    users.insert(creator.to_string(), json!(100));
    if spec.preset == "trusted_private_chat" {
        for invitee in &spec.invite {
            users.insert(invitee.to_string(), json!(100));
        }
    }
    let mut pl = json!({
        "users": users,
        "users_default": 0,
        "events": {
            "m.room.name": 50,
            "m.room.power_levels": 100,
            "m.room.history_visibility": 100,
            "m.room.canonical_alias": 50,
            "m.room.avatar": 50,
            "m.room.tombstone": 100,
            "m.room.server_acl": 100,
            "m.room.encryption": 100,
        },
        "events_default": 0,
        "state_default": 50,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        "invite": 0,
        "notifications": { "room": 50 },
    });
    if let (Some(over), Value::Object(map)) = (&spec.power_level_override, &mut pl) {
        for (k, v) in over {
            map.insert(k.clone(), v.clone());
        }
    }
    pl
}

impl Rooms {
    /// Creates a room with `creator` as its first member; returns its id.
    pub async fn create(&self, creator: &UserId, spec: CreateRoom) -> ApiResult<OwnedRoomId> {
        let version = spec.version.clone().unwrap_or(super::DEFAULT_ROOM_VERSION);
        let rules = super::rules_for(&version)?;
        let room_id = new_room_id(self.identity().server_name())?;
        let creator = creator.to_owned();
        let (room, _) = self
            .write(&room_id, Some(version.clone()), |txn| {
                let mut create = spec.creation_content.clone();
                create.insert("room_version".into(), json!(version.as_str()));
                // Before v11 the auth rules need `creator`; from v11 the sender is the creator.
                if rules.authorization.use_room_create_sender {
                    create.remove("creator");
                } else {
                    create.insert("creator".into(), json!(creator));
                }
                txn.append(
                    &creator,
                    "m.room.create",
                    Some(""),
                    Value::Object(create),
                    None,
                )?;
                let mut member = json!({ "membership": "join" });
                if let Some(name) = &spec.creator_profile.0 {
                    member["displayname"] = json!(name);
                }
                if let Some(avatar) = &spec.creator_profile.1 {
                    member["avatar_url"] = json!(avatar);
                }
                txn.append(
                    &creator,
                    "m.room.member",
                    Some(creator.as_str()),
                    member,
                    None,
                )?;
                txn.append(
                    &creator,
                    "m.room.power_levels",
                    Some(""),
                    default_power_levels(&creator, &spec),
                    None,
                )?;
                if let Some(alias) = &spec.alias {
                    txn.append(
                        &creator,
                        "m.room.canonical_alias",
                        Some(""),
                        json!({ "alias": alias }),
                        None,
                    )?;
                }
                let public = spec.preset == "public_chat";
                let join_rule = if public { "public" } else { "invite" };
                txn.append(
                    &creator,
                    "m.room.join_rules",
                    Some(""),
                    json!({ "join_rule": join_rule }),
                    None,
                )?;
                txn.append(
                    &creator,
                    "m.room.history_visibility",
                    Some(""),
                    json!({ "history_visibility": "shared" }),
                    None,
                )?;
                let guest = if public { "forbidden" } else { "can_join" };
                txn.append(
                    &creator,
                    "m.room.guest_access",
                    Some(""),
                    json!({ "guest_access": guest }),
                    None,
                )?;
                for (ty, sk, content) in &spec.initial_state {
                    if ty == "m.room.create" || ty == "m.room.member" {
                        return Err(ApiError::bad_json(format!(
                            "initial_state may not contain {ty}"
                        )));
                    }
                    txn.append(&creator, ty, Some(sk), content.clone(), None)?;
                }
                if let Some(name) = &spec.name {
                    txn.append(
                        &creator,
                        "m.room.name",
                        Some(""),
                        json!({ "name": name }),
                        None,
                    )?;
                }
                if let Some(topic) = &spec.topic {
                    txn.append(
                        &creator,
                        "m.room.topic",
                        Some(""),
                        json!({ "topic": topic }),
                        None,
                    )?;
                }
                for invitee in &spec.invite {
                    let mut content = json!({ "membership": "invite" });
                    if spec.is_direct {
                        content["is_direct"] = json!(true);
                    }
                    txn.append(
                        &creator,
                        "m.room.member",
                        Some(invitee.as_str()),
                        content,
                        None,
                    )?;
                }
                Ok(txn.room_id().to_owned())
            })
            .await?;
        Ok(room)
    }
}
