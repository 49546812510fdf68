//! Room deletion through the admin API: kick and purge, moving members into a new room, the
//! status of background deletions, and bad requests (blocking: `room_block_tests.rs`). (Auth errors of these paths
//! are in `tests.rs`, with every other admin path.)

use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{json, Value};

use super::tests::{assert_err, setup};
use crate::testkit::{enc, Kit};

/// Alice's room (`#den`, published in the directory) with Bob joined, a message, a thread
/// reply, a receipt, a tag and a read marker by Bob. Returns the room id and Bob's token.
pub(super) async fn busy_room(k: &Kit, alice: &str) -> (String, String) {
    let (_, bob) = k.user("bob").await;
    let (status, created) = k
        .call(
            Method::POST,
            "/_matrix/client/v3/createRoom",
            Some(alice),
            Some(json!({"room_alias_name": "den", "preset": "public_chat",
                        "visibility": "public", "name": "Den"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let room = created["room_id"].as_str().expect("room id").to_owned();
    let r = enc(&room);
    let (status, joined) = k
        .call(
            Method::POST,
            &format!("/_matrix/client/v3/rooms/{r}/join"),
            Some(&bob),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{joined}");
    let (_, sent) = k
        .call(
            Method::PUT,
            &format!("/_matrix/client/v3/rooms/{r}/send/m.room.message/t1"),
            Some(alice),
            Some(json!({"msgtype": "m.text", "body": "pineapple pizza"})),
        )
        .await;
    let root = sent["event_id"].as_str().expect("event id").to_owned();
    let (status, reply) = k
        .call(
            Method::PUT,
            &format!("/_matrix/client/v3/rooms/{r}/send/m.room.message/t2"),
            Some(&bob),
            Some(json!({"msgtype": "m.text", "body": "pineapple reply",
                        "m.relates_to": {"rel_type": "m.thread", "event_id": root}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let e = enc(&root);
    for (method, path, body) in [
        (
            Method::POST,
            format!("/_matrix/client/v3/rooms/{r}/receipt/m.read/{e}"),
            json!({}),
        ),
        (
            Method::POST,
            format!("/_matrix/client/v3/rooms/{r}/read_markers"),
            json!({"m.fully_read": root}),
        ),
        (
            Method::PUT,
            format!(
                "/_matrix/client/v3/user/{}/rooms/{r}/tags/u.work",
                enc("@bob:example.org")
            ),
            json!({"order": 0.5}),
        ),
        (
            Method::PUT,
            format!(
                "/_matrix/client/v3/user/{}/rooms/{r}/account_data/org.example.note",
                enc("@bob:example.org")
            ),
            json!({"note": "x"}),
        ),
    ] {
        let (status, got) = k.call(method, &path, Some(&bob), Some(body)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {got}");
    }
    (room, bob)
}

/// Polls a deletion until it finished; its status object.
async fn finished(k: &Kit, root: &str, delete_id: &str) -> Value {
    let path = format!("/_synapse/admin/v2/rooms/delete_status/{delete_id}");
    for _ in 0..400 {
        let (status, body) = k.call(Method::GET, &path, Some(root), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if matches!(body["status"].as_str(), Some("complete" | "failed")) {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("deletion {delete_id} did not finish");
}

/// Deletes `room` with `body` through v2 and waits for the end; the status object.
pub(super) async fn delete(k: &Kit, root: &str, room: &str, body: Value) -> Value {
    let (status, started) = k
        .call(
            Method::DELETE,
            &format!("/_synapse/admin/v2/rooms/{}", enc(room)),
            Some(root),
            Some(body),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{started}");
    let id = started["delete_id"].as_str().expect("delete_id").to_owned();
    finished(k, root, &id).await
}

/// Every stored entry whose key or value mentions `needle`: `(table, key)`.
fn mentions(k: &Kit, needle: &str) -> Vec<(String, String)> {
    let needle = needle.as_bytes();
    let has = |hay: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    k.gw.db
        .dump()
        .expect("dump")
        .into_iter()
        .filter(|(key, value)| has(key) || has(value))
        .map(|(key, _)| {
            let split = key.iter().position(|b| *b == 0).unwrap_or(key.len());
            (
                String::from_utf8_lossy(&key[..split]).into_owned(),
                String::from_utf8_lossy(&key[split..]).into_owned(),
            )
        })
        .collect()
}

/// Ids of the stored events of `room` (keys of `pdus` whose event names the room).
fn room_events(k: &Kit, room: &str) -> Vec<String> {
    mentions(k, room)
        .into_iter()
        .filter(|(table, _)| table == "pdus")
        .map(|(_, key)| key.trim_start_matches('\0').to_owned())
        .collect()
}

/// Entries still mentioning any of `events` (relations, transaction ids, the outgoing
/// queue, the event feed and state groups name events, not rooms).
fn mentioning_events(k: &Kit, events: &[String]) -> Vec<(String, String)> {
    events.iter().flat_map(|e| mentions(k, e)).collect()
}

async fn sync(k: &Kit, token: &str, since: Option<&str>) -> Value {
    let path = match since {
        Some(s) => format!("/_matrix/client/v3/sync?timeout=0&since={s}"),
        None => "/_matrix/client/v3/sync?timeout=0".into(),
    };
    let (status, body) = k.call(Method::GET, &path, Some(token), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[tokio::test]
async fn an_admin_deletes_a_room_members_see_the_leave_and_the_purge_leaves_nothing() {
    let (k, root, alice) = setup().await;
    let (room, bob) = busy_room(&k, &alice).await;
    assert!(
        mentions(&k, &room).len() > 20,
        "the room is stored: {:?}",
        mentions(&k, &room)
    );
    let events = room_events(&k, &room);
    assert!(events.len() > 8, "{events:?}");
    assert!(!mentioning_events(&k, &events).is_empty());
    let before = sync(&k, &bob, None).await;
    let since = before["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();

    // Shut down without purging: members leave, the alias and directory entry go.
    let done = delete(&k, &root, &room, json!({"purge": false})).await;
    assert_eq!(done["status"], "complete", "{done}");
    assert_eq!(
        done["shutdown_room"]["kicked_users"],
        json!(["@alice:example.org", "@bob:example.org"])
    );
    assert_eq!(
        done["shutdown_room"]["local_aliases"],
        json!(["#den:example.org"])
    );
    let after = sync(&k, &bob, Some(&since)).await;
    let left = &after["rooms"]["leave"][&room];
    let leave_event = left["timeline"]["events"]
        .as_array()
        .expect("a timeline in the leave section")
        .iter()
        .find(|e| e["type"] == "m.room.member" && e["state_key"] == "@bob:example.org");
    assert_eq!(
        leave_event.map(|e| e["content"]["membership"].clone()),
        Some(json!("leave")),
        "{after}"
    );
    let (_, public) = k
        .call(
            Method::GET,
            "/_matrix/client/v3/publicRooms",
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(public["chunk"], json!([]), "{public}");

    // Now purge (default body): nothing of the room is left.
    let done = delete(&k, &root, &room, json!({})).await;
    assert_eq!(done["status"], "complete", "{done}");
    assert_eq!(done["shutdown_room"]["kicked_users"], json!([]));
    let got = k
        .call(
            Method::GET,
            &format!("/_synapse/admin/v1/rooms/{}", enc(&room)),
            Some(&root),
            None,
        )
        .await;
    assert_err(got, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let (_, list) = k
        .call(Method::GET, "/_synapse/admin/v1/rooms", Some(&root), None)
        .await;
    assert_eq!(list["total_rooms"], 0, "{list}");
    let left_over: Vec<_> = mentions(&k, &room)
        .into_iter()
        .filter(|(table, _)| table != "room_deletions")
        .collect();
    assert_eq!(left_over, Vec::<(String, String)>::new());
    assert_eq!(
        mentioning_events(&k, &events),
        Vec::<(String, String)>::new()
    );
    for token in [&alice, &bob] {
        let fresh = sync(&k, token, None).await;
        assert!(!fresh.to_string().contains(&room), "{fresh}");
    }
    let (status, found) = k
        .call(
            Method::POST,
            "/_matrix/client/v3/search",
            Some(&bob),
            Some(json!({"search_categories": {"room_events": {"search_term": "pineapple"}}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(
        found["search_categories"]["room_events"]["count"], 0,
        "{found}"
    );
}

#[tokio::test]
async fn one_call_kicks_and_purges() {
    let (k, root, alice) = setup().await;
    let (room, _) = busy_room(&k, &alice).await;
    let events = room_events(&k, &room);
    let (status, result) = k
        .call(
            Method::DELETE,
            &format!("/_synapse/admin/v1/rooms/{}", enc(&room)),
            Some(&root),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{result}");
    assert_eq!(
        result,
        json!({
            "kicked_users": ["@alice:example.org", "@bob:example.org"],
            "failed_to_kick_users": [],
            "local_aliases": ["#den:example.org"],
            "new_room_id": null,
        })
    );
    assert_eq!(mentions(&k, &room), Vec::<(String, String)>::new());
    assert_eq!(
        mentioning_events(&k, &events),
        Vec::<(String, String)>::new()
    );
    assert!(k.gw.rooms.all_rooms().expect("rooms").is_empty());
}

#[tokio::test]
async fn kicked_members_are_moved_into_a_new_room_with_the_message() {
    let (k, root, alice) = setup().await;
    let (room, bob) = busy_room(&k, &alice).await;
    let done = delete(
        &k,
        &root,
        &room,
        json!({"new_room_user_id": "@moderator:example.org", "room_name": "Moved",
               "message": "This room was closed."}),
    )
    .await;
    assert_eq!(done["status"], "complete", "{done}");
    let new_room = done["shutdown_room"]["new_room_id"]
        .as_str()
        .expect("a new room")
        .to_owned();
    assert_eq!(
        done["shutdown_room"]["kicked_users"],
        json!(["@alice:example.org", "@bob:example.org"])
    );
    let (_, details) = k
        .call(
            Method::GET,
            &format!("/_synapse/admin/v1/rooms/{}", enc(&new_room)),
            Some(&root),
            None,
        )
        .await;
    assert_eq!(details["name"], "Moved", "{details}");
    assert_eq!(details["creator"], "@moderator:example.org");
    assert_eq!(details["joined_local_members"], 3, "{details}");
    // The alias now leads to the new room.
    let (_, resolved) = k
        .call(
            Method::GET,
            &format!(
                "/_matrix/client/v3/directory/room/{}",
                enc("#den:example.org")
            ),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(resolved["room_id"], new_room, "{resolved}");
    let (status, messages) = k
        .call(
            Method::GET,
            &format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50",
                enc(&new_room)
            ),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{messages}");
    let notice = messages["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .find(|e| e["type"] == "m.room.message")
        .map(|e| (e["sender"].clone(), e["content"]["body"].clone()));
    assert_eq!(
        notice,
        Some((
            json!("@moderator:example.org"),
            json!("This room was closed.")
        ))
    );
    assert_eq!(mentions(&k, &room).len(), 1, "only the status is left");
}

#[tokio::test]
async fn delete_status_by_room_and_by_id() {
    let (k, root, alice) = setup().await;
    let (room, _) = busy_room(&k, &alice).await;
    let done = delete(&k, &root, &room, json!({"purge": false})).await;
    let id = done["delete_id"].as_str().expect("delete_id").to_owned();
    let (status, by_room) = k
        .call(
            Method::GET,
            &format!("/_synapse/admin/v2/rooms/{}/delete_status", enc(&room)),
            Some(&root),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{by_room}");
    assert_eq!(by_room["results"], json!([done.clone()]));
    assert_eq!(done["room_id"], room);
    insta::assert_json_snapshot!("room_delete_status", by_room, {
        ".results[].delete_id" => "[delete_id]",
        ".results[].room_id" => "[room_id]",
    });
    assert_eq!(id.len(), 16);
    for path in [
        "/_synapse/admin/v2/rooms/delete_status/no-such-id".to_owned(),
        format!(
            "/_synapse/admin/v2/rooms/{}/delete_status",
            enc("!never:example.org")
        ),
    ] {
        let got = k.call(Method::GET, &path, Some(&root), None).await;
        assert_err(got, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    }
}

#[tokio::test]
async fn bad_deletion_requests_are_refused_and_change_nothing() {
    let (k, root, alice) = setup().await;
    let (room, _) = busy_room(&k, &alice).await;
    let stored = mentions(&k, &room).len();
    for version in ["v1", "v2"] {
        let path = format!("/_synapse/admin/{version}/rooms/{}", enc(&room));
        for body in [
            json!({"block": "yes"}),
            json!({"purge": 1}),
            json!({"new_room_user_id": "not a user"}),
            json!(["block"]),
        ] {
            let got = k.call(Method::DELETE, &path, Some(&root), Some(body)).await;
            assert_err(got, StatusCode::BAD_REQUEST, "M_BAD_JSON");
        }
        let got = k
            .call(
                Method::DELETE,
                &path,
                Some(&root),
                Some(json!({"new_room_user_id": "@mod:elsewhere.org"})),
            )
            .await;
        assert_err(got, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
        let unknown = format!(
            "/_synapse/admin/{version}/rooms/{}",
            enc("!nope:example.org")
        );
        let got = k
            .call(Method::DELETE, &unknown, Some(&root), Some(json!({})))
            .await;
        assert_err(got, StatusCode::NOT_FOUND, "M_NOT_FOUND");
        let garbage = format!("/_synapse/admin/{version}/rooms/{}", enc("garbage"));
        let got = k
            .call(Method::DELETE, &garbage, Some(&root), Some(json!({})))
            .await;
        assert_err(got, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    }
    assert_eq!(mentions(&k, &room).len(), stored);
    assert!(k
        .gw
        .rooms
        .blocked(&ruma::RoomId::parse("!nope:example.org").expect("id"))
        .expect("read")
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_waiting_while_the_room_is_deleted_gets_the_leave_before_the_purge() {
    let (k, root, alice) = setup().await;
    let (room, bob) = busy_room(&k, &alice).await;
    let since = sync(&k, &bob, None).await["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();
    let k = std::sync::Arc::new(k);
    let waiting = {
        let (k, bob, room_id) = (k.clone(), bob.clone(), room.clone());
        // As a client does: sync again with each `next_batch` until the room is left.
        tokio::spawn(async move {
            let mut since = since;
            let mut last = (StatusCode::OK, Value::Null);
            for _ in 0..10 {
                let path = format!("/_matrix/client/v3/sync?timeout=5000&since={since}");
                last = k.call(Method::GET, &path, Some(&bob), None).await;
                let left = last.1["rooms"]["leave"].get(&room_id).is_some();
                match last.1["next_batch"].as_str() {
                    Some(next) if last.0 == StatusCode::OK && !left => since = next.to_owned(),
                    _ => break,
                }
            }
            last
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, result) = k
        .call(
            Method::DELETE,
            &format!("/_synapse/admin/v1/rooms/{}", enc(&room)),
            Some(&root),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{result}");
    let (status, body) = waiting.await.expect("sync task");
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["rooms"]["leave"].get(&room).is_some(),
        "the waiting sync answers with the leave: {body}"
    );
    assert_eq!(mentions(&k, &room), Vec::<(String, String)>::new());
}
