//! User directory search.
//!
//! Who can be found (a privacy gateway must not let any account enumerate its users):
//! - every user, local or on another gateway, who shares a joined room with the searcher;
//! - an active local account whose exact user id is the search term;
//! - every active local account, only if the operator sets `user_directory_search_all`.
//!
//! Users of other gateways that the searcher shares no room with are never searchable: the
//! gateway knows them only from rooms, and listing them would reveal other people's
//! memberships. The search term matches the user id or display name, case-insensitively, as a
//! substring. Results are sorted by user id and cut at `limit` (default 10, at most 50), with
//! `limited` set when more matched.

use std::{collections::BTreeMap, sync::Arc};

use axum::{extract::State, Router};
use ruma::{
    api::client::user_directory::search_users::v3 as search, OwnedMxcUri, OwnedUserId, UserId,
};
use serde_json::Value;

use super::{add, Ruma, RumaResponse, RumaResult};
use crate::{error::ApiResult, service::Gateway};

/// Largest number of results returned.
const MAX_LIMIT: usize = 50;

/// A directory entry: display name and avatar.
type Entry = (Option<String>, Option<String>);

/// Everyone `searcher` may find with `term` (lowercased), with their profile.
fn candidates(
    gw: &Gateway,
    searcher: &UserId,
    term: &str,
) -> ApiResult<BTreeMap<OwnedUserId, Entry>> {
    let mut out = BTreeMap::new();
    if gw.config.user_directory_search_all {
        for (user, record) in gw.users.all()? {
            if !record.deactivated {
                out.insert(user, (record.displayname, record.avatar_url));
            }
        }
    } else if let Ok(exact) = UserId::parse(term) {
        if let Some(record) = gw.users.get(&exact)?.filter(|r| !r.deactivated) {
            out.insert(exact, (record.displayname, record.avatar_url));
        }
    }
    for room in gw.rooms.joined_rooms(searcher)? {
        for (user, member) in gw.rooms.members(&room)? {
            if member.membership != "join" || out.contains_key(&user) {
                continue;
            }
            let content = gw
                .rooms
                .state_content(&room, "m.room.member", user.as_str())?
                .unwrap_or(Value::Null);
            let field = |k: &str| content.get(k).and_then(Value::as_str).map(str::to_owned);
            out.insert(user, (field("displayname"), field("avatar_url")));
        }
    }
    Ok(out)
}

async fn search_users(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<search::Request>,
) -> RumaResult<search::Response> {
    let caller = req.caller()?;
    let term = req.body.search_term.trim().to_lowercase();
    let limit = usize::try_from(u64::from(req.body.limit))
        .unwrap_or(MAX_LIMIT)
        .min(MAX_LIMIT);
    let mut results = Vec::new();
    let mut limited = false;
    for (user, (name, avatar)) in candidates(&gw, &caller.user_id, &term)? {
        let matches = user.as_str().to_lowercase().contains(&term)
            || name
                .as_deref()
                .is_some_and(|n| n.to_lowercase().contains(&term));
        if !matches {
            continue;
        }
        if results.len() == limit {
            limited = true;
            break;
        }
        let mut u = search::User::new(user);
        u.display_name = name;
        u.avatar_url = avatar.map(OwnedMxcUri::from);
        results.push(u);
    }
    Ok(RumaResponse(search::Response::new(results, limited)))
}

pub(super) fn routes(r: Router<Arc<Gateway>>) -> Router<Arc<Gateway>> {
    add::<search::Request, _, _>(r, search_users)
}

#[cfg(test)]
mod tests {
    use crate::testkit::kit_with;
    use http::{Method, StatusCode};
    use ruma::UserId;
    use serde_json::json;

    #[tokio::test]
    async fn search_local_and_shared_room_users() {
        // The operator's wider mode: every local account is searchable.
        let k = kit_with(|c| c.user_directory_search_all = true);
        let (alice, token) = k.user("alice").await;
        let _ = k.user("alfred").await;
        let (_, bob_token) = k.user("bob").await;
        let room = k.room(&alice).await;
        let remote = UserId::parse("@alpha:other.example").expect("id");
        k.join(&room, &remote).await;
        let remote2 = UserId::parse("@alien:other.example").expect("id");
        let room2 = k
            .room(&UserId::parse("@carol:example.org").expect("id"))
            .await;
        k.join(&room2, &remote2).await;

        let uri = "/_matrix/client/v3/user_directory/search";
        let (status, body) = k
            .call(
                Method::POST,
                uri,
                Some(&token),
                Some(json!({"search_term": "AL"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let ids: Vec<&str> = body["results"]
            .as_array()
            .expect("results")
            .iter()
            .filter_map(|r| r["user_id"].as_str())
            .collect();
        // Local alice and alfred, remote alpha (shares a room); not alien (no shared room).
        assert_eq!(
            ids,
            vec![
                "@alfred:example.org",
                "@alice:example.org",
                "@alpha:other.example"
            ]
        );
        assert_eq!(body["limited"], false);

        // Bob shares no room with alpha.
        let (_, body) = k
            .call(
                Method::POST,
                uri,
                Some(&bob_token),
                Some(json!({"search_term": "alpha"})),
            )
            .await;
        assert_eq!(body["results"], json!([]));

        // Limit and the limited flag; display names match too.
        let (_, body) = k
            .call(
                Method::POST,
                uri,
                Some(&token),
                Some(json!({"search_term": "al", "limit": 1})),
            )
            .await;
        assert_eq!(body["results"].as_array().map(Vec::len), Some(1));
        assert_eq!(body["limited"], true);
        let (status, _) = k
            .call(Method::POST, uri, None, Some(json!({"search_term": "al"})))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
}
