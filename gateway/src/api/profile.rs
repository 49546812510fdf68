//! Profiles: display names and avatars.
//!
//! Lookups need an access token (the spec lets a server decline to disclose profiles; this one
//! does not tell strangers who has an account). Local users' profiles live in their account
//! record. A user of another gateway has no record here; their profile is read from their
//! `m.room.member` join event in a room the *requester* is joined to (404 otherwise), so a
//! lookup never reveals rooms the requester is not in. Changing one's own profile also sends a
//! new join event (same content, new `displayname`/`avatar_url`) into every joined room, as
//! Matrix clients show room-specific names from member events.

use std::sync::Arc;

use axum::{extract::State, Json, Router};
use http::request::Parts;
use ruma::{
    api::client::profile::{
        get_avatar_url::v3 as get_avatar, get_display_name::v3 as get_name,
        get_profile::v3 as get_profile, set_avatar_url::v3 as set_avatar,
        set_display_name::v3 as set_name,
    },
    UserId,
};
use serde_json::{json, Map, Value};

use super::{add, authenticate, Ruma, RumaResponse, RumaResult};
use crate::{
    error::{ApiError, ApiResult},
    service::Gateway,
};

/// A profile: display name and avatar URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    /// Display name.
    pub displayname: Option<String>,
    /// Avatar `mxc://` URI.
    pub avatar_url: Option<String>,
}

impl Profile {
    /// The JSON body of `GET /profile/{userId}` (absent fields left out).
    fn to_json(&self) -> Value {
        let mut map = Map::new();
        if let Some(n) = &self.displayname {
            map.insert("displayname".into(), json!(n));
        }
        if let Some(a) = &self.avatar_url {
            map.insert("avatar_url".into(), json!(a));
        }
        Value::Object(map)
    }
}

/// The profile of `user` as `requester` may see it: a local account that is not deactivated,
/// or a user joined to a room `requester` is joined to.
pub fn lookup(gw: &Gateway, requester: &UserId, user: &UserId) -> ApiResult<Option<Profile>> {
    if user.server_name() == gw.server_name() {
        return Ok(gw
            .users
            .get(user)?
            .filter(|r| !r.deactivated)
            .map(|r| Profile {
                displayname: r.displayname,
                avatar_url: r.avatar_url,
            }));
    }
    for room in gw.rooms.joined_rooms(requester)? {
        if gw.rooms.membership(&room, user)?.as_deref() != Some("join") {
            continue;
        }
        if let Some(content) = gw
            .rooms
            .state_content(&room, "m.room.member", user.as_str())?
        {
            let field = |k: &str| content.get(k).and_then(Value::as_str).map(str::to_owned);
            return Ok(Some(Profile {
                displayname: field("displayname"),
                avatar_url: field("avatar_url"),
            }));
        }
    }
    Ok(None)
}

/// The profile of `user` for an authenticated request (401 without a token, 404 if unknown).
/// A user of another gateway that no shared room shows is asked of their gateway, which
/// answers only if a user of this gateway shares a room with them.
async fn known(gw: &Gateway, parts: &Parts, user: &UserId) -> ApiResult<Profile> {
    let caller = authenticate(gw, parts, true)?
        .ok_or_else(|| ApiError::missing_token("Missing access token"))?;
    if let Some(profile) = lookup(gw, &caller.user_id, user)? {
        return Ok(profile);
    }
    if user.server_name() == gw.server_name() {
        if !gw.users.exists(user)? && gw.appservices.query_user(user).await {
            if let Some(profile) = lookup(gw, &caller.user_id, user)? {
                return Ok(profile);
            }
        }
        return Err(ApiError::not_found("Profile not found"));
    }
    let remote = gw.remote.profile(user).await?;
    let field = |k: &str| remote.get(k).and_then(Value::as_str).map(str::to_owned);
    Ok(Profile {
        displayname: field("displayname"),
        avatar_url: field("avatar_url"),
    })
}

/// Which profile field a change sets.
#[derive(Debug, Clone, Copy)]
pub enum Field {
    /// `displayname`.
    DisplayName,
    /// `avatar_url`.
    AvatarUrl,
}

impl Field {
    fn key(self) -> &'static str {
        match self {
            Self::DisplayName => "displayname",
            Self::AvatarUrl => "avatar_url",
        }
    }
}

/// Sets one field of `user`'s own profile, then updates their member event in each joined
/// room (failures there are logged; the profile change stands).
pub async fn set_field(
    gw: &Gateway,
    caller: &UserId,
    user: &UserId,
    field: Field,
    value: Option<String>,
) -> ApiResult<()> {
    if caller != user {
        return Err(ApiError::forbidden(
            "You cannot change another user's profile",
        ));
    }
    let value = value.filter(|v| !v.is_empty());
    if value.as_ref().is_some_and(|v| v.len() > 1024) {
        return Err(ApiError::invalid_param("Profile field is too long"));
    }
    let mut record = gw
        .users
        .get(user)?
        .ok_or_else(|| ApiError::not_found("Unknown user"))?;
    match field {
        Field::DisplayName => record.displayname = value.clone(),
        Field::AvatarUrl => record.avatar_url = value.clone(),
    }
    gw.users.save(user, &record).await?;
    for room in gw.rooms.joined_rooms(user)? {
        let mut content = gw
            .rooms
            .state_content(&room, "m.room.member", user.as_str())?
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({ "membership": "join" }));
        if let Some(map) = content.as_object_mut() {
            // Only meaningful on the original join into a restricted room.
            map.remove("join_authorised_via_users_server");
            match &value {
                Some(v) => map.insert(field.key().to_owned(), json!(v)),
                None => map.remove(field.key()),
            };
        }
        let sender = user.to_owned();
        let result = gw
            .rooms
            .write(&room, None, |txn| {
                txn.append(
                    &sender,
                    "m.room.member",
                    Some(sender.as_str()),
                    content,
                    None,
                )
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(room = %room, user = %user, error = %e, "profile update not sent to room");
        }
    }
    Ok(())
}

async fn profile(
    State(gw): State<Arc<Gateway>>,
    parts: Parts,
    req: Ruma<get_profile::Request>,
) -> ApiResult<Json<Value>> {
    Ok(Json(known(&gw, &parts, &req.body.user_id).await?.to_json()))
}

async fn display_name(
    State(gw): State<Arc<Gateway>>,
    parts: Parts,
    req: Ruma<get_name::Request>,
) -> ApiResult<Json<Value>> {
    let p = known(&gw, &parts, &req.body.user_id).await?;
    Ok(Json(match p.displayname {
        Some(n) => json!({ "displayname": n }),
        None => json!({}),
    }))
}

async fn avatar_url(
    State(gw): State<Arc<Gateway>>,
    parts: Parts,
    req: Ruma<get_avatar::Request>,
) -> ApiResult<Json<Value>> {
    let p = known(&gw, &parts, &req.body.user_id).await?;
    Ok(Json(match p.avatar_url {
        Some(a) => json!({ "avatar_url": a }),
        None => json!({}),
    }))
}

async fn set_display_name(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<set_name::Request>,
) -> RumaResult<set_name::Response> {
    let caller = req.caller()?;
    set_field(
        &gw,
        &caller.user_id,
        &req.body.user_id,
        Field::DisplayName,
        req.body.displayname.clone(),
    )
    .await?;
    Ok(RumaResponse(set_name::Response::new()))
}

async fn set_avatar_url(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<set_avatar::Request>,
) -> RumaResult<set_avatar::Response> {
    let caller = req.caller()?;
    set_field(
        &gw,
        &caller.user_id,
        &req.body.user_id,
        Field::AvatarUrl,
        req.body.avatar_url.as_ref().map(|u| u.to_string()),
    )
    .await?;
    Ok(RumaResponse(set_avatar::Response::new()))
}

pub(super) fn routes(r: Router<Arc<Gateway>>) -> Router<Arc<Gateway>> {
    let r = add::<get_profile::Request, _, _>(r, profile);
    let r = add::<get_name::Request, _, _>(r, display_name);
    let r = add::<get_avatar::Request, _, _>(r, avatar_url);
    let r = add::<set_name::Request, _, _>(r, set_display_name);
    add::<set_avatar::Request, _, _>(r, set_avatar_url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{enc, kit};
    use http::{Method, StatusCode};

    #[tokio::test]
    async fn get_and_set_profile() {
        let k = kit();
        let (alice, token) = k.user("alice").await;
        let (bob, bob_token) = k.user("bob").await;
        let room = k.room(&alice).await;
        let uri = format!("/_matrix/client/v3/profile/{}", enc(alice.as_str()));

        let (status, body) = k.call(Method::GET, &uri, Some(&bob_token), None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({"displayname": "alice"}));
        let (status, body) = k.call(Method::GET, &uri, None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["errcode"], "M_MISSING_TOKEN");

        let (status, _) = k
            .call(
                Method::PUT,
                &format!("{uri}/displayname"),
                Some(&token),
                Some(json!({"displayname": "Alice A."})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = k
            .call(
                Method::PUT,
                &format!("{uri}/avatar_url"),
                Some(&token),
                Some(json!({"avatar_url": "mxc://example.org/abc"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (_, body) = k.call(Method::GET, &uri, Some(&token), None).await;
        assert_eq!(
            body,
            json!({"displayname": "Alice A.", "avatar_url": "mxc://example.org/abc"})
        );
        let (_, body) = k
            .call(
                Method::GET,
                &format!("{uri}/displayname"),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(body, json!({"displayname": "Alice A."}));
        let (_, body) = k
            .call(
                Method::GET,
                &format!("{uri}/avatar_url"),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(body, json!({"avatar_url": "mxc://example.org/abc"}));

        // The member event in the joined room carries the new profile.
        let member =
            k.gw.rooms
                .state_content(&room, "m.room.member", alice.as_str())
                .expect("state")
                .expect("member");
        assert_eq!(member["membership"], "join");
        assert_eq!(member["displayname"], "Alice A.");
        assert_eq!(member["avatar_url"], "mxc://example.org/abc");

        // Someone else's profile: 403.
        let (status, body) = k
            .call(
                Method::PUT,
                &format!("{uri}/displayname"),
                Some(&bob_token),
                Some(json!({"displayname": "mallory"})),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(body["errcode"], "M_FORBIDDEN");
        let (status, _) = k
            .call(
                Method::PUT,
                &format!(
                    "/_matrix/client/v3/profile/{}/displayname",
                    enc(bob.as_str())
                ),
                Some(&bob_token),
                Some(json!({"displayname": "Bob"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn unknown_users_are_404() {
        let k = kit();
        let (_, token) = k.user("alice").await;
        for user in ["@nobody:example.org", "@far:other.example"] {
            let (status, body) = k
                .call(
                    Method::GET,
                    &format!("/_matrix/client/v3/profile/{}", enc(user)),
                    Some(&token),
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{user}");
            assert_eq!(body["errcode"], "M_NOT_FOUND");
        }
    }

    #[tokio::test]
    async fn remote_profile_comes_from_member_event() {
        let k = kit();
        let (alice, _) = k.user("alice").await;
        let room = k.room(&alice).await;
        let remote = UserId::parse("@zoe:other.example").expect("id");
        k.join(&room, &remote).await;
        let p = lookup(&k.gw, &alice, &remote)
            .expect("lookup")
            .expect("known");
        assert_eq!(p.displayname.as_deref(), Some("zoe"));
        // Someone not in that room cannot learn about zoe through it.
        let (bob, _) = k.user("bob").await;
        assert_eq!(lookup(&k.gw, &bob, &remote).expect("lookup"), None);
    }
}
