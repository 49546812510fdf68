//! matrix-sdk end to end: an edit and a thread survive a reload (a new device with an empty
//! store, after a gateway restart) through bundled aggregations, `/relations` and `/threads`.

mod common;

use common::{json_of, login, register, sync_once, wait_room};
use matrix_sdk::{
    deserialized_responses::ThreadSummaryStatus,
    room::{IncludeRelations, ListThreadsOptions, MessagesOptions, RelationsOptions},
    ruma::{
        api::client::room::create_room::v3 as create_room,
        events::{relation::RelationType, room::message::RoomMessageEventContent},
        uint,
    },
};
use mixgate_tests::{within, TestGateway};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_and_threads_survive_a_reload() {
    let mut gw = TestGateway::start().await;
    let url = gw.url();
    let alice = register(&url, "alice", "alice-password").await;
    let bob = register(&url, "bob", "bob-password").await;
    let mut request = create_room::Request::new();
    request.preset = Some(create_room::RoomPreset::PublicChat);
    let room = within(20, "createRoom", alice.create_room(request))
        .await
        .expect("createRoom");
    let bob_room = within(20, "join", bob.join_room_by_id(room.room_id()))
        .await
        .expect("join");

    let original = within(
        20,
        "send",
        room.send(RoomMessageEventContent::text_plain("helo wrld")),
    )
    .await
    .expect("send")
    .response
    .event_id;
    let edit = json!({
        "msgtype": "m.text",
        "body": "* hello world",
        "m.new_content": { "msgtype": "m.text", "body": "hello world" },
        "m.relates_to": { "rel_type": "m.replace", "event_id": original },
    });
    let edit_id = within(20, "edit", room.send_raw("m.room.message", edit))
        .await
        .expect("send edit")
        .response
        .event_id;
    let reply = json!({
        "msgtype": "m.text",
        "body": "threaded answer",
        "m.relates_to": { "rel_type": "m.thread", "event_id": original,
                          "is_falling_back": true, "m.in_reply_to": { "event_id": original } },
    });
    let reply_id = within(
        20,
        "thread reply",
        bob_room.send_raw("m.room.message", reply),
    )
    .await
    .expect("send reply")
    .response
    .event_id;
    let reaction = json!({ "m.relates_to": { "rel_type": "m.annotation", "event_id": original, "key": "👍" } });
    within(20, "react", bob_room.send_raw("m.reaction", reaction))
        .await
        .expect("react");

    // Reload: the gateway restarts and Alice comes back on a new device with an empty store.
    gw.restart().await;
    let alice2 = login(&gw.url(), "alice", "alice-password").await;
    sync_once(&alice2, 0).await;
    let room2 = wait_room(&alice2, room.room_id(), 20).await;

    // /event: the edit and the thread summary are bundled with the original.
    let ev = within(20, "/event", room2.event(&original, None))
        .await
        .expect("fetch original");
    let j = json_of(&ev);
    let relations = &j["unsigned"]["m.relations"];
    assert_eq!(
        relations["m.replace"]["content"]["m.new_content"]["body"], "hello world",
        "{j}"
    );
    assert_eq!(relations["m.replace"]["event_id"], edit_id.as_str());
    match &ev.thread_summary {
        ThreadSummaryStatus::Some(summary) => {
            assert_eq!(summary.num_replies, 1);
            assert_eq!(summary.latest_reply.as_ref(), Some(&reply_id));
        }
        other => panic!("no bundled thread summary: {other:?}"),
    }

    // /messages: the same aggregations on the original in the history.
    let mut options = MessagesOptions::backward();
    options.limit = uint!(50);
    let page = within(20, "messages", room2.messages(options))
        .await
        .expect("messages");
    let served = page
        .chunk
        .iter()
        .map(json_of)
        .find(|e| e["event_id"] == original.as_str())
        .expect("original in /messages");
    assert_eq!(
        served["unsigned"]["m.relations"]["m.replace"]["content"]["m.new_content"]["body"],
        "hello world"
    );

    // /relations: every relation, then only the reactions.
    let all = within(
        20,
        "relations",
        room2.relations(original.clone(), RelationsOptions::default()),
    )
    .await
    .expect("relations");
    assert_eq!(all.chunk.len(), 3, "edit, reply and reaction");
    let reactions = within(
        20,
        "reactions",
        room2.relations(
            original.clone(),
            RelationsOptions {
                include_relations: IncludeRelations::RelationsOfType(RelationType::Annotation),
                ..Default::default()
            },
        ),
    )
    .await
    .expect("reactions");
    assert_eq!(reactions.chunk.len(), 1);
    assert_eq!(
        json_of(&reactions.chunk[0])["content"]["m.relates_to"]["key"],
        "👍"
    );

    // /threads: the original is the one thread root.
    let threads = within(
        20,
        "threads",
        room2.list_threads(ListThreadsOptions::default()),
    )
    .await
    .expect("threads");
    let roots: Vec<_> = threads.chunk.iter().filter_map(|e| e.event_id()).collect();
    assert_eq!(roots, vec![original.clone()]);
}
