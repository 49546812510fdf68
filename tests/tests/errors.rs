//! Raw-HTTP error cases: every failure is a Matrix error body with the spec's status and code.

use mixgate_tests::{within, Options, TestGateway};
use serde_json::{json, Value};

/// A gateway with one registered user (`alice`) and a raw client holding her token.
async fn with_alice() -> (
    TestGateway,
    mixgate_tests::Http,
    mixgate_tests::http::Account,
) {
    let gw = TestGateway::start().await;
    let anon = gw.http();
    let alice = anon.register_ok("alice", "secret-password").await;
    let http = anon.as_user(&alice);
    (gw, http, alice)
}

#[tokio::test]
async fn versions_snapshot() {
    let gw = TestGateway::start().await;
    let body = gw
        .http()
        .get("/_matrix/client/versions")
        .await
        .unwrap()
        .ok();
    let versions = body["versions"].as_array().expect("versions array");
    assert!(versions.iter().any(|v| v == "v1.11"), "{body}");
    insta::assert_json_snapshot!("versions", body);
}

#[tokio::test]
async fn unknown_endpoint_is_unrecognized() {
    let gw = TestGateway::start().await;
    let http = gw.http();
    let r = http
        .get("/_matrix/client/v3/no_such_endpoint")
        .await
        .unwrap();
    r.expect_error(404, "M_UNRECOGNIZED");
    insta::assert_json_snapshot!("unrecognized_error_body", r.body);
    let r = http
        .post("/_matrix/client/v3/frobnicate/widgets", &json!({}))
        .await
        .unwrap();
    r.expect_error(404, "M_UNRECOGNIZED");
    // A known path with the wrong method: 405 M_UNRECOGNIZED (spec: unsupported method).
    let r = http
        .request(reqwest::Method::DELETE, "/_matrix/client/v3/login", None)
        .await
        .unwrap();
    r.expect_error(405, "M_UNRECOGNIZED");
}

#[tokio::test]
async fn not_json_and_bad_json() {
    let (_gw, http, _alice) = with_alice().await;
    let r = http
        .request_raw(
            reqwest::Method::POST,
            "/_matrix/client/v3/login",
            "application/json",
            b"{this is not json".to_vec(),
        )
        .await
        .unwrap();
    r.expect_error(400, "M_NOT_JSON");
    // Valid JSON, but not an object.
    let r = http
        .request_raw(
            reqwest::Method::POST,
            "/_matrix/client/v3/createRoom",
            "application/json",
            b"[1, 2, 3]".to_vec(),
        )
        .await
        .unwrap();
    r.expect_error(400, "M_BAD_JSON");
    // An object with a field of the wrong type.
    let r = http
        .post("/_matrix/client/v3/createRoom", &json!({ "preset": 42 }))
        .await
        .unwrap();
    r.expect_error(400, "M_BAD_JSON");
    let r = http
        .post(
            "/_matrix/client/v3/login",
            &json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": 5 }, "password": [] }),
        )
        .await
        .unwrap();
    r.expect_error(400, "M_BAD_JSON");
}

#[tokio::test]
async fn missing_and_unknown_token() {
    let (gw, http, alice) = with_alice().await;
    let anon = gw.http();
    let r = anon.get("/_matrix/client/v3/account/whoami").await.unwrap();
    r.expect_error(401, "M_MISSING_TOKEN");
    let r = anon
        .with_token("not-a-real-token")
        .get("/_matrix/client/v3/account/whoami")
        .await
        .unwrap();
    r.expect_error(401, "M_UNKNOWN_TOKEN");
    let r = anon
        .with_token("not-a-real-token")
        .get("/_matrix/client/v3/sync?timeout=0")
        .await
        .unwrap();
    r.expect_error(401, "M_UNKNOWN_TOKEN");
    // The real token works, in the header...
    let body = http
        .get("/_matrix/client/v3/account/whoami")
        .await
        .unwrap()
        .ok();
    assert_eq!(body["user_id"], alice.user_id.as_str());
    assert_eq!(body["device_id"], alice.device_id.as_str());
    // ...and in the query string (matrix-nio sends it there).
    let body = anon
        .get(&format!(
            "/_matrix/client/v3/account/whoami?access_token={}",
            alice.access_token
        ))
        .await
        .unwrap()
        .ok();
    assert_eq!(body["user_id"], alice.user_id.as_str());
    // After logout the token is unknown.
    http.post("/_matrix/client/v3/logout", &json!({}))
        .await
        .unwrap()
        .ok();
    let r = http.get("/_matrix/client/v3/account/whoami").await.unwrap();
    r.expect_error(401, "M_UNKNOWN_TOKEN");
}

#[tokio::test]
async fn forbidden_outside_a_room() {
    let (gw, alice, _) = with_alice().await;
    let bob = gw.http().register_ok("bob", "secret-password").await;
    let bob = gw.http().as_user(&bob);
    let room = alice
        .create_room(&json!({ "preset": "private_chat", "name": "secret" }))
        .await
        .expect("createRoom");
    let sent = alice
        .send_text(&room, "t1", "for alice only")
        .await
        .unwrap()
        .ok();
    let event_id = sent["event_id"].as_str().expect("event_id").to_owned();
    // Sending into a room Bob is not in.
    let r = bob.send_text(&room, "t1", "let me in").await.unwrap();
    r.expect_error(403, "M_FORBIDDEN");
    // Reading a room Bob is not in.
    let r = bob.messages(&room, None, "b", 10).await.unwrap();
    r.expect_error(403, "M_FORBIDDEN");
    let r = bob
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/event/{}",
            mixgate_tests::http::enc(&room),
            mixgate_tests::http::enc(&event_id)
        ))
        .await
        .unwrap();
    assert!(
        matches!(
            (r.status, r.errcode()),
            (403, "M_FORBIDDEN") | (404, "M_NOT_FOUND")
        ),
        "reading an event of a foreign room: {} {}",
        r.status,
        r.body
    );
    let r = bob
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/state",
            mixgate_tests::http::enc(&room)
        ))
        .await
        .unwrap();
    r.expect_error(403, "M_FORBIDDEN");
    // Joining a private (invite-only) room without an invite.
    let r = bob.join(&room).await.unwrap();
    r.expect_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn body_over_limit_is_too_large() {
    let gw = TestGateway::start_with(Options {
        config: "auth_attempts_per_minute = 10000\nmax_request_bytes = 100000\n".into(),
        ..Options::default()
    })
    .await;
    let http = gw.http();
    let big = json!({ "type": "m.login.password", "password": "x".repeat(200_000) });
    let r = http.post("/_matrix/client/v3/login", &big).await.unwrap();
    r.expect_error(413, "M_TOO_LARGE");
}

#[tokio::test]
async fn event_over_64k_is_too_large() {
    // The spec caps a PDU at 65536 bytes; a bigger message must be refused with M_TOO_LARGE.
    let (_gw, http, _) = with_alice().await;
    let room = http.create_room(&json!({})).await.expect("createRoom");
    let r = http
        .send_text(&room, "big", &"y".repeat(70_000))
        .await
        .unwrap();
    r.expect_error(413, "M_TOO_LARGE");
}

#[tokio::test]
async fn login_rate_limit() {
    // Default config: 30 login/registration attempts per address per minute.
    let gw = TestGateway::start_with(Options {
        config: String::new(),
        ..Options::default()
    })
    .await;
    let http = gw.http();
    http.register_ok("carol", "secret-password").await;
    let mut limited = None;
    within(30, "login attempts", async {
        for _ in 0..40 {
            let r = http.login("carol", "wrong-password").await.unwrap();
            if r.status == 429 {
                limited = Some(r);
                break;
            }
            r.expect_error(403, "M_FORBIDDEN");
        }
    })
    .await;
    let r = limited.expect("no 429 after 40 logins from one address");
    r.expect_error(429, "M_LIMIT_EXCEEDED");
    let retry = r.body["retry_after_ms"].as_u64().expect("retry_after_ms");
    assert!(retry > 0 && retry <= 60_000, "retry_after_ms = {retry}");
    // Even the right password is refused while limited.
    let r = http.login("carol", "secret-password").await.unwrap();
    r.expect_error(429, "M_LIMIT_EXCEEDED");
}

#[tokio::test]
async fn user_in_use_and_invalid_username() {
    let gw = TestGateway::start().await;
    let http = gw.http();
    http.register_ok("dave", "secret-password").await;
    let r = http.register("dave", "another-password").await.unwrap();
    r.expect_error(400, "M_USER_IN_USE");
    let r = http
        .get("/_matrix/client/v3/register/available?username=dave")
        .await
        .unwrap();
    r.expect_error(400, "M_USER_IN_USE");
    let r = http
        .get("/_matrix/client/v3/register/available?username=erin")
        .await
        .unwrap();
    assert_eq!(r.ok()["available"], true);
    for bad in ["has space", "sm:ile", "q\"uote", "😀"] {
        let r = http.register(bad, "secret-password").await.unwrap();
        r.expect_error(400, "M_INVALID_USERNAME");
    }
}

#[tokio::test]
async fn registration_needs_uia() {
    let gw = TestGateway::start().await;
    let http = gw.http();
    let r = http
        .post(
            "/_matrix/client/v3/register",
            &json!({ "username": "frank", "password": "secret-password" }),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 401, "{}", r.body);
    let flows = r.body["flows"].as_array().expect("flows");
    assert!(
        flows
            .iter()
            .any(|f| f["stages"] == json!(["m.login.dummy"])),
        "{}",
        r.body
    );
    assert!(r.body["session"].is_string(), "{}", r.body);
    // Logging in as a registered user works with the password chosen.
    http.register_ok("frank", "secret-password").await;
    let body = http.login("frank", "secret-password").await.unwrap().ok();
    assert!(body["access_token"].is_string());
    assert!(body["user_id"].as_str().unwrap().starts_with("@frank:"));
    let r = http.login("frank", "nope").await.unwrap();
    r.expect_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn registration_token_mode() {
    let dir = TestGateway::temp_dir();
    let token = TestGateway::admin_in(dir.path(), &["create-registration-token", "--uses", "1"]);
    assert!(
        !token.is_empty() && !token.contains(char::is_whitespace),
        "{token:?}"
    );
    let gw = TestGateway::start_in(
        dir,
        Options {
            registration: mixgate_tests::Registration::Token,
            ..Options::default()
        },
    )
    .await;
    let http = gw.http();
    let register = |auth: Value| {
        let http = http.clone();
        async move {
            http.post(
                "/_matrix/client/v3/register",
                &json!({ "username": "gina", "password": "secret-password", "auth": auth }),
            )
            .await
            .unwrap()
        }
    };
    // No auth: a challenge offering the token stage.
    let r = http
        .post(
            "/_matrix/client/v3/register",
            &json!({ "username": "gina", "password": "secret-password" }),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(
        r.body["flows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["stages"] == json!(["m.login.registration_token"])),
        "{}",
        r.body
    );
    let session = r.body["session"].clone();
    // m.login.dummy is not enough in token mode.
    let r = register(json!({ "type": "m.login.dummy", "session": session })).await;
    assert_eq!(r.status, 401, "{}", r.body);
    // A wrong token is refused.
    let r = register(
        json!({ "type": "m.login.registration_token", "token": "wrong", "session": session }),
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.body);
    // The right one works, once.
    let r = register(
        json!({ "type": "m.login.registration_token", "token": token, "session": session }),
    )
    .await;
    let body = r.ok();
    assert!(body["user_id"].as_str().unwrap().starts_with("@gina:"));
    let r = http
        .post(
            "/_matrix/client/v3/register",
            &json!({ "username": "hank", "password": "secret-password",
                     "auth": { "type": "m.login.registration_token", "token": token } }),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 401, "a one-use token was used twice: {}", r.body);
}

#[tokio::test]
async fn registration_token_validity_endpoint() {
    let dir = TestGateway::temp_dir();
    let token = TestGateway::admin_in(dir.path(), &["create-registration-token"]);
    let gw = TestGateway::start_in(
        dir,
        Options {
            registration: mixgate_tests::Registration::Token,
            ..Options::default()
        },
    )
    .await;
    let http = gw.http();
    let path = "/_matrix/client/v1/register/m.login.registration_token/validity?token=";
    let body = http.get(&format!("{path}{token}")).await.unwrap().ok();
    assert_eq!(body["valid"], true, "{body}");
    let body = http.get(&format!("{path}nope")).await.unwrap().ok();
    assert_eq!(body["valid"], false, "{body}");
}

#[tokio::test]
async fn registration_closed_mode() {
    let gw = TestGateway::start_with(Options {
        registration: mixgate_tests::Registration::Closed,
        ..Options::default()
    })
    .await;
    let r = gw.http().register("ivan", "secret-password").await.unwrap();
    r.expect_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn missing_filter_is_not_found() {
    let (_gw, http, alice) = with_alice().await;
    let user = mixgate_tests::http::enc(&alice.user_id);
    let r = http
        .get(&format!("/_matrix/client/v3/user/{user}/filter/99999"))
        .await
        .unwrap();
    r.expect_error(404, "M_NOT_FOUND");
    // And a stored filter comes back as stored.
    let filter = json!({ "room": { "timeline": { "limit": 7 } } });
    let body = http
        .post(&format!("/_matrix/client/v3/user/{user}/filter"), &filter)
        .await
        .unwrap()
        .ok();
    let id = body["filter_id"].as_str().expect("filter_id").to_owned();
    let body = http
        .get(&format!("/_matrix/client/v3/user/{user}/filter/{id}"))
        .await
        .unwrap()
        .ok();
    assert_eq!(body["room"]["timeline"]["limit"], 7, "{body}");
}

#[tokio::test]
async fn cors_preflight() {
    let gw = TestGateway::start().await;
    let client = gw.http().client().clone();
    for (path, method) in [
        ("/_matrix/client/v3/login", "POST"),
        ("/_matrix/client/v3/sync", "GET"),
        (
            "/_matrix/client/v3/rooms/%21a%3Ab/send/m.room.message/t1",
            "PUT",
        ),
        ("/.well-known/matrix/client", "GET"),
    ] {
        let res = client
            .request(reqwest::Method::OPTIONS, format!("{}{path}", gw.url()))
            .header("Origin", "http://app.example")
            .header("Access-Control-Request-Method", method)
            .header(
                "Access-Control-Request-Headers",
                "authorization, content-type",
            )
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{path}: {}", res.status());
        let h = res.headers();
        let get = |k: &str| {
            h.get(k)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_ascii_lowercase()
        };
        let origin = get("access-control-allow-origin");
        assert!(
            origin == "*" || origin == "http://app.example",
            "{path}: allow-origin {origin:?}"
        );
        let methods = get("access-control-allow-methods");
        assert!(
            methods == "*" || methods.contains(&method.to_ascii_lowercase()),
            "{path}: allow-methods {methods:?}"
        );
        let headers = get("access-control-allow-headers");
        assert!(
            headers == "*" || headers.contains("authorization"),
            "{path}: allow-headers {headers:?}"
        );
    }
    // The actual requests carry the header too.
    let res = client
        .get(format!("{}/.well-known/matrix/client", gw.url()))
        .header("Origin", "http://app.example")
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    assert!(res.headers().contains_key("access-control-allow-origin"));
    let body: Value = res.json().await.unwrap();
    assert!(body["m.homeserver"]["base_url"].is_string(), "{body}");
    let res = client
        .get(format!("{}/_matrix/client/v3/no_such", gw.url()))
        .header("Origin", "http://app.example")
        .send()
        .await
        .unwrap();
    assert!(
        res.headers().contains_key("access-control-allow-origin"),
        "error responses need CORS headers too"
    );
}
