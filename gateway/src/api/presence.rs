//! Presence: `GET/PUT /presence/{userId}/status`.
//!
//! Presence is off by default (`presence = false`): it tells everyone sharing a room when a
//! user is at their keyboard, and sending it to other gateways would make a gateway's mixnet
//! traffic follow its users' activity. The endpoints still answer so that clients work: a user
//! may set their own status (kept in memory only) and reads it back; everyone else reads as
//! `offline`. With `presence = true`, others' set statuses are returned as well (local users
//! only; presence is not replicated between gateways).

use std::sync::Arc;

use axum::{extract::State, Router};
use ruma::{
    api::client::presence::{get_presence::v3 as get, set_presence::v3 as set},
    presence::PresenceState,
};

use super::{add, profile, Ruma, RumaResponse, RumaResult};
use crate::{error::ApiError, service::Gateway};

async fn get_presence(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<get::Request>,
) -> RumaResult<get::Response> {
    let caller = req.caller()?;
    let user = &req.body.user_id;
    if profile::lookup(&gw, &caller.user_id, user)?.is_none() {
        return Err(ApiError::not_found("Unknown user"));
    }
    let visible = gw.config.presence || caller.user_id == *user;
    let status = if visible { gw.presence.get(user) } else { None };
    let res = match status {
        Some(s) => {
            let mut res = get::Response::new(s.presence.clone());
            res.status_msg = s.status_msg.clone();
            res.last_active_ago = Some(s.age());
            res.currently_active = Some(s.presence == PresenceState::Online);
            res
        }
        None => get::Response::new(PresenceState::Offline),
    };
    Ok(RumaResponse(res))
}

async fn set_presence(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<set::Request>,
) -> RumaResult<set::Response> {
    let caller = req.caller()?;
    if caller.user_id != req.body.user_id {
        return Err(ApiError::forbidden(
            "You cannot set another user's presence",
        ));
    }
    if req.body.status_msg.as_ref().is_some_and(|m| m.len() > 1024) {
        return Err(ApiError::invalid_param("Status message is too long"));
    }
    gw.presence.set(
        &caller.user_id,
        req.body.presence.clone(),
        req.body.status_msg.clone(),
    );
    Ok(RumaResponse(set::Response::new()))
}

pub(super) fn routes(r: Router<Arc<Gateway>>) -> Router<Arc<Gateway>> {
    let r = add::<get::Request, _, _>(r, get_presence);
    add::<set::Request, _, _>(r, set_presence)
}

#[cfg(test)]
mod tests {
    use crate::testkit::{enc, kit, kit_with};
    use http::{Method, StatusCode};
    use serde_json::json;

    #[tokio::test]
    async fn presence_off_by_default() {
        let k = kit();
        assert!(!k.gw.config.presence);
        let (alice, token) = k.user("alice").await;
        let (_, bob_token) = k.user("bob").await;
        let uri = format!("/_matrix/client/v3/presence/{}/status", enc(alice.as_str()));

        let (status, body) = k.call(Method::GET, &uri, Some(&token), None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({"presence": "offline"}));

        let (status, _) = k
            .call(
                Method::PUT,
                &uri,
                Some(&token),
                Some(json!({"presence": "online", "status_msg": "hi"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        // Alice sees her own status; Bob sees offline.
        let (_, body) = k.call(Method::GET, &uri, Some(&token), None).await;
        assert_eq!(body["presence"], "online");
        assert_eq!(body["status_msg"], "hi");
        let (_, body) = k.call(Method::GET, &uri, Some(&bob_token), None).await;
        assert_eq!(body, json!({"presence": "offline"}));

        // Someone else's status: 403. Unknown user: 404.
        let (status, body) = k
            .call(
                Method::PUT,
                &uri,
                Some(&bob_token),
                Some(json!({"presence": "online"})),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(body["errcode"], "M_FORBIDDEN");
        let (status, body) = k
            .call(
                Method::GET,
                "/_matrix/client/v3/presence/%40ghost%3Aexample.org/status",
                Some(&token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["errcode"], "M_NOT_FOUND");
    }

    #[tokio::test]
    async fn presence_on_shares_status() {
        let k = kit_with(|c| c.presence = true);
        let (alice, token) = k.user("alice").await;
        let (_, bob_token) = k.user("bob").await;
        let uri = format!("/_matrix/client/v3/presence/{}/status", enc(alice.as_str()));
        k.call(
            Method::PUT,
            &uri,
            Some(&token),
            Some(json!({"presence": "unavailable"})),
        )
        .await;
        let (_, body) = k.call(Method::GET, &uri, Some(&bob_token), None).await;
        assert_eq!(body["presence"], "unavailable");
    }
}
