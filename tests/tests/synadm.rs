//! The real `synadm` (PyPI, installed by `.ci/run` in `target/ops-venv`) administers a running
//! gateway through the Synapse admin API: users (list, details, modify, deactivate, which
//! also lists the user's rooms by alias), registration tokens (new, list, details, update,
//! delete), rooms (list, details, members) and room deletion (v2 with block, a new room
//! and delete-status; block-status and unblock; v1 with purge). The admin account is made with
//! `mixgate admin create-user --admin` on the stopped gateway's data first.

use mixgate_tests::{
    ops::{synadm, synadm_config},
    Http, Options, TestGateway,
};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synadm_administers_users_tokens_and_rooms() {
    let dir = TestGateway::temp_dir();
    let root_id = TestGateway::admin_in(
        dir.path(),
        &[
            "create-user",
            "root",
            "--password",
            "root-password",
            "--admin",
        ],
    );
    let home = tempfile::tempdir().expect("synadm home");
    let gw = TestGateway::start_in(dir, Options::default()).await;
    let server = root_id.split_once(':').expect("a user id").1.to_owned();
    let root = gw
        .http()
        .login("root", "root-password")
        .await
        .expect("login")
        .ok();
    let token = root["access_token"].as_str().expect("token").to_owned();
    let alice = gw.http().register_ok("alice", "password-of-alice").await;
    let bob = gw.http().register_ok("bob", "password-of-bob").await;
    let alice_http = Http::new(gw.url()).as_user(&alice);
    let room = alice_http
        .create_room(&json!({"name": "Plans", "room_alias_name": "plans", "preset": "public_chat"}))
        .await
        .expect("createRoom");
    Http::new(gw.url())
        .as_user(&bob)
        .join(&room)
        .await
        .expect("join")
        .ok();
    let cfg = synadm_config(home.path(), &gw.url(), &root_id, &token, &server);
    let run = |args: &[&str]| synadm(&cfg, home.path(), args);

    let version = run(&["version"]);
    assert!(
        version.to_string().contains("mixgate"),
        "server version: {version}"
    );

    // Users: list, details, modify, deactivate.
    let list = run(&["user", "list"]);
    let names: Vec<&str> = list["users"]
        .as_array()
        .expect("users")
        .iter()
        .filter_map(|u| u["name"].as_str())
        .collect();
    assert_eq!(names.len(), 3, "{list}");
    assert!(names.contains(&alice.user_id.as_str()) && names.contains(&root_id.as_str()));
    let details = run(&["user", "details", &alice.user_id]);
    assert_eq!(details["name"], alice.user_id);
    assert_eq!(details["admin"], false);
    let modified = run(&[
        "user",
        "modify",
        &alice.user_id,
        "--display-name",
        "Alice A.",
        "--admin",
    ]);
    assert_eq!(modified["displayname"], "Alice A.", "{modified}");
    assert_eq!(modified["admin"], true);
    let admins = run(&["user", "list", "--admins"]);
    assert_eq!(admins["total"], 2, "{admins}");
    let deactivated = run(&["user", "deactivate", &bob.user_id]);
    assert_eq!(
        deactivated["id_server_unbind_result"], "success",
        "{deactivated}"
    );
    let bob_now = run(&["user", "details", &bob.user_id]);
    assert_eq!(bob_now["deactivated"], true);
    let login = gw
        .http()
        .login("bob", "password-of-bob")
        .await
        .expect("login");
    assert_eq!(
        login.status, 403,
        "a deactivated account cannot log in: {:?}",
        login.body
    );

    // Registration tokens: new, list, details, update, delete.
    let made = run(&[
        "regtok",
        "new",
        "--token",
        "invite-1",
        "--uses-allowed",
        "2",
    ]);
    assert_eq!(made["token"], "invite-1", "{made}");
    assert_eq!(made["uses_allowed"], 2);
    let tokens = run(&["regtok", "list"]);
    assert!(tokens.to_string().contains("invite-1"), "{tokens}");
    let updated = run(&["regtok", "update", "invite-1", "--uses-allowed", "5"]);
    assert_eq!(updated["uses_allowed"], 5, "{updated}");
    let shown = run(&["regtok", "details", "invite-1"]);
    assert_eq!(
        (shown["uses_allowed"].clone(), shown["completed"].clone()),
        (json!(5), json!(0))
    );
    let deleted = run(&["regtok", "delete", "invite-1"]);
    assert!(
        deleted.to_string().contains("successfully deleted"),
        "{deleted}"
    );
    let gone = run(&["regtok", "list"]);
    assert!(!gone.to_string().contains("invite-1"), "{gone}");

    // Rooms: list (with a search term) and details, members.
    let rooms = run(&["room", "list"]);
    assert_eq!(rooms["total_rooms"], 1, "{rooms}");
    assert_eq!(rooms["rooms"][0]["room_id"], room);
    assert_eq!(rooms["rooms"][0]["name"], "Plans");
    let searched = run(&["room", "list", "--name", "plan"]);
    assert_eq!(searched["total_rooms"], 1, "{searched}");
    let none = run(&["room", "list", "--name", "nothing-like-this"]);
    assert_eq!(none["total_rooms"], 0, "{none}");
    let details = run(&["room", "details", &room]);
    assert_eq!(
        details["canonical_alias"],
        format!("#plans:{server}"),
        "{details}"
    );
    assert_eq!(
        details["joined_local_members"], 1,
        "bob left when deactivated: {details}"
    );
    assert_eq!(details["creator"], alice.user_id);
    let members = run(&["room", "members", &room]);
    assert_eq!(members["members"], json!([alice.user_id]), "{members}");

    // Room deletion, v2 (the default, in the background) with block and a new room for the
    // members, then its status by delete id and by room.
    let doomed = alice_http
        .create_room(&json!({"name": "Doomed", "room_alias_name": "doomed"}))
        .await
        .expect("createRoom");
    let started = run(&[
        "room",
        "delete",
        &doomed,
        "--block",
        "-u",
        "moderator",
        "-n",
        "Moved",
        "-m",
        "This room was closed.",
    ]);
    let delete_id = started["delete_id"]
        .as_str()
        .unwrap_or_else(|| panic!("a delete_id: {started}"))
        .to_owned();
    let mut status = json!(null);
    for _ in 0..200 {
        status = run(&["room", "delete-status", "--delete-id", &delete_id]);
        if status["status"] == "complete" || status["status"] == "failed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status["status"], "complete", "{status}");
    assert_eq!(
        status["shutdown_room"]["kicked_users"],
        json!([alice.user_id]),
        "{status}"
    );
    assert_eq!(
        status["shutdown_room"]["local_aliases"],
        json!([format!("#doomed:{server}")])
    );
    let new_room = status["shutdown_room"]["new_room_id"]
        .as_str()
        .expect("a new room")
        .to_owned();
    let by_room = run(&["room", "delete-status", "--room-id", &doomed]);
    assert_eq!(by_room["results"][0]["delete_id"], delete_id, "{by_room}");
    let rejoin = alice_http.join(&doomed).await.expect("join");
    assert_eq!(rejoin.status, 403, "a blocked room: {:?}", rejoin.body);
    let blocked = run(&["room", "block-status", &doomed]);
    assert_eq!(
        (blocked["block"].clone(), blocked["user_id"].clone()),
        (json!(true), json!(root_id)),
        "{blocked}"
    );
    let lifted = run(&["room", "block", &doomed, "--unblock"]);
    assert_eq!(lifted["block"], false, "{lifted}");
    let blocked = run(&["room", "block-status", &doomed]);
    assert_eq!(blocked["block"], false, "{blocked}");
    let moved = run(&["room", "members", &new_room]);
    assert!(
        moved.to_string().contains(&alice.user_id),
        "alice is in the new room: {moved}"
    );

    // v1 (synchronous) on the first room: purged.
    let deleted = run(&["room", "delete", &room, "--v1"]);
    assert_eq!(deleted["kicked_users"], json!([alice.user_id]), "{deleted}");
    let rooms = run(&["room", "list"]);
    let ids: Vec<&str> = rooms["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .filter_map(|r| r["room_id"].as_str())
        .collect();
    assert_eq!(ids, vec![new_room.as_str()], "{rooms}");
}
