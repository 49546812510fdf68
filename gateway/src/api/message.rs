//! Sending and reading events: send, state, redact, messages, context, event, typing, receipts.

use std::sync::Arc;

use axum::{
    extract::State,
    routing::{get, put},
    Json, Router,
};
use ruma::{
    api::client::{
        context::get_context::v3 as context,
        message::{get_message_events::v3 as messages, send_message_event::v3 as send},
        read_marker::set_read_marker::v3 as read_marker,
        receipt::create_receipt::v3 as receipt,
        redact::redact_event::v3 as redact,
        room::get_room_event::v3 as get_event,
        state::{
            get_state_event_for_key::v3 as get_state, get_state_events::v3 as all_state,
            send_state_event::v3 as send_state,
        },
        typing::create_typing_event::v3 as typing,
    },
    api::Direction,
    OwnedEventId, RoomId, UserId,
};
use serde_json::{json, Value};

use super::{add, Ruma, RumaResponse, RumaResult};
use crate::{
    error::{ApiError, ApiResult},
    service::{
        filter::EventFilter,
        history,
        relations::{client_event, Viewer},
        rooms::{markers::set_marker, send::send_event, Pdu, StoredPdu},
        Gateway,
    },
};

fn content_of(raw: &serde_json::value::RawValue) -> ApiResult<Value> {
    let v: Value = serde_json::from_str(raw.get())?;
    if !v.is_object() {
        return Err(ApiError::bad_json("Event content must be an object"));
    }
    Ok(v)
}

async fn send_message(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<send::Request>,
) -> RumaResult<send::Response> {
    let caller = req.caller()?;
    let b = &req.body;
    let content = content_of(b.body.json())?;
    let kind = b.event_type.to_string();
    let event_id = send_event(
        &gw,
        caller,
        &b.room_id,
        &kind,
        None,
        content,
        Some(b.txn_id.as_str()),
    )
    .await?;
    Ok(RumaResponse(send::Response::new(event_id)))
}

async fn put_state(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<send_state::Request>,
) -> RumaResult<send_state::Response> {
    let caller = req.caller()?;
    let b = &req.body;
    let content = content_of(b.body.json())?;
    let kind = b.event_type.to_string();
    // Unchanged state is not sent again (Element re-sends e.g. its own member event).
    if let Some((pdu, _)) = gw.rooms.state_pdu(&b.room_id, &kind, &b.state_key)? {
        if pdu.sender == caller.user_id && pdu.content_value() == content {
            return Ok(RumaResponse(send_state::Response::new(pdu.event_id)));
        }
    }
    let event_id = send_event(
        &gw,
        caller,
        &b.room_id,
        &kind,
        Some(&b.state_key),
        content,
        None,
    )
    .await?;
    Ok(RumaResponse(send_state::Response::new(event_id)))
}

/// Fails unless the user may read the room's current state.
fn require_can_read_state(gw: &Gateway, room: &RoomId, user: &UserId) -> ApiResult<()> {
    if gw.rooms.meta(room)?.is_none() {
        return Err(ApiError::forbidden("Unknown room or not a member"));
    }
    match gw.rooms.membership(room, user)?.as_deref() {
        Some("join") => Ok(()),
        _ if gw.rooms.can_see(room, user, u64::MAX)? => Ok(()),
        _ => Err(ApiError::forbidden("You are not a member of this room")),
    }
}

async fn get_state_event(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<get_state::Request>,
) -> ApiResult<Json<Value>> {
    let caller = req.caller()?;
    let b = &req.body;
    require_can_read_state(&gw, &b.room_id, &caller.user_id)?;
    let (pdu, stored) = gw
        .rooms
        .state_pdu(&b.room_id, &b.event_type.to_string(), &b.state_key)?
        .ok_or_else(|| ApiError::not_found("No such state event"))?;
    let format_event = req.json.is_none()
        && matches!(
            b.format,
            ruma::api::client::state::get_state_event_for_key::v3::StateEventFormat::Event
        );
    Ok(Json(if format_event {
        pdu.to_client_event(&stored, None)
    } else {
        pdu.content_value()
    }))
}

async fn get_all_state(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<all_state::Request>,
) -> ApiResult<Json<Value>> {
    let caller = req.caller()?;
    require_can_read_state(&gw, &req.body.room_id, &caller.user_id)?;
    let mut events = Vec::new();
    for (_, entry) in gw.rooms.current_state(&req.body.room_id)? {
        if let Some((pdu, stored)) = gw.rooms.get_pdu(&entry.event_id)? {
            events.push(pdu.to_client_event(&stored, None));
        }
    }
    Ok(Json(Value::Array(events)))
}

async fn redact_event(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<redact::Request>,
) -> RumaResult<redact::Response> {
    let caller = req.caller()?;
    let b = &req.body;
    let mut content = json!({ "redacts": b.event_id });
    if let Some(reason) = &b.reason {
        content["reason"] = json!(reason);
    }
    let event_id = send_event(
        &gw,
        caller,
        &b.room_id,
        "m.room.redaction",
        None,
        content,
        Some(b.txn_id.as_str()),
    )
    .await?;
    Ok(RumaResponse(redact::Response::new(event_id)))
}

/// Parses a pagination token (a stream position).
pub(crate) fn parse_token(token: Option<&str>) -> ApiResult<Option<u64>> {
    match token {
        None => Ok(None),
        Some(t) => t
            .trim_start_matches(['s', 't'])
            .parse()
            .map(Some)
            .map_err(|_| ApiError::invalid_param("Invalid pagination token")),
    }
}

/// Member events of the senders of `events`, for lazy loading.
pub(crate) fn lazy_members(gw: &Gateway, room: &RoomId, events: &[Pdu]) -> ApiResult<Vec<Value>> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for pdu in events {
        if seen.insert(pdu.sender.clone()) {
            if let Some((m, stored)) =
                gw.rooms
                    .state_pdu(room, "m.room.member", pdu.sender.as_str())?
            {
                out.push(m.to_client_event(&stored, None));
            }
        }
    }
    Ok(out)
}

/// Where a `/messages` token points: the gateway's own timeline (a stream position) or the
/// history fetched from other gateways before it (`b` and a sequence number, see
/// `service::history`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PageToken {
    Timeline(u64),
    History(u64),
}

fn parse_page_token(token: Option<&str>) -> ApiResult<Option<PageToken>> {
    match token {
        Some(t) if t.starts_with('b') => t[1..]
            .parse()
            .map(|seq| Some(PageToken::History(seq)))
            .map_err(|_| ApiError::invalid_param("Invalid pagination token")),
        other => Ok(parse_token(other)?.map(PageToken::Timeline)),
    }
}

async fn get_messages(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<messages::Request>,
) -> ApiResult<Json<Value>> {
    let caller = req.caller()?;
    let b = &req.body;
    let room = &b.room_id;
    if gw.rooms.membership(room, &caller.user_id)?.is_none()
        && !gw.rooms.can_see(room, &caller.user_id, u64::MAX)?
    {
        return Err(ApiError::forbidden("You are not a member of this room"));
    }
    let filter = EventFilter::from_json(Some(&serde_json::to_value(&b.filter)?));
    let limit = (u64::from(b.limit) as usize).clamp(1, 1000);
    let backwards = b.dir == Direction::Backward;
    let from = parse_page_token(b.from.as_deref())?;
    let to = parse_token(b.to.as_deref())?;
    let viewer = Viewer::new(&caller.user_id, caller.device_id.as_str());
    let mut chunk = Vec::new();
    let mut pdus: Vec<Pdu> = Vec::new();
    let mut push = |pdu: Pdu, stored: &StoredPdu, chunk: &mut Vec<Value>| -> ApiResult<()> {
        if filter.allows(pdu.kind.to_string().as_str(), Some(pdu.sender.as_str())) {
            chunk.push(client_event(&gw, viewer, &pdu, stored)?);
            pdus.push(pdu);
        }
        Ok(())
    };
    // Forwards from fetched history: its newer part first, then the timeline from its start.
    let mut timeline_from = match from {
        Some(PageToken::Timeline(pos)) => Some(pos),
        None if backwards => Some(gw.stream.current()),
        None => Some(0),
        Some(PageToken::History(_)) if backwards => None,
        Some(PageToken::History(seq)) => {
            let page = history::newer(&gw, room, &caller.user_id, seq, limit)?;
            let cursor = page.next;
            for (pdu, stored) in page.events {
                push(pdu, &stored, &mut chunk)?;
            }
            if page.at_end && chunk.len() < limit {
                Some(0)
            } else {
                let start = b.from.clone().unwrap_or_default();
                return Ok(Json(json!({
                    "start": start, "chunk": chunk, "state": [], "end": format!("b{cursor}"),
                })));
            }
        }
    };
    let mut end: Option<String> = None;
    let mut into_history = matches!(from, Some(PageToken::History(_)));
    if let Some(start) = timeline_from.take() {
        let mut cursor = start;
        let mut exhausted = false;
        // Scan in pages until `limit` visible events are found or the room's timeline ends.
        'scan: while chunk.len() < limit {
            let page = gw.rooms.timeline(room, cursor, backwards, limit * 2)?;
            if page.is_empty() {
                exhausted = true;
                break;
            }
            for (pos, event_id) in page {
                let past_to = to.is_some_and(|to| if backwards { pos <= to } else { pos > to });
                if past_to {
                    exhausted = true;
                    break 'scan;
                }
                cursor = if backwards { pos - 1 } else { pos };
                if !gw.rooms.can_see(room, &caller.user_id, pos)? {
                    continue;
                }
                let Some((pdu, stored)) = gw.rooms.get_pdu(&event_id)? else {
                    continue;
                };
                push(pdu, &stored, &mut chunk)?;
                if chunk.len() == limit {
                    break 'scan;
                }
            }
        }
        let at_end = exhausted || (backwards && cursor == 0);
        // Backwards past the timeline's start (not stopped by `to`): on into older history.
        into_history = backwards && at_end && to.is_none();
        if !at_end {
            end = Some(cursor.to_string());
        }
    }
    if into_history && chunk.len() < limit {
        let after = match from {
            Some(PageToken::History(seq)) => seq,
            _ => 0,
        };
        let page = history::older(&gw, room, &caller.user_id, after, limit - chunk.len()).await?;
        for (pdu, stored) in page.events {
            push(pdu, &stored, &mut chunk)?;
        }
        if !page.at_end {
            end = Some(format!("b{}", page.next));
        }
    } else if into_history {
        // The page filled up exactly at the timeline's start: older history comes next.
        end = Some("b0".to_owned());
    }
    let state = if filter.lazy_load_members {
        lazy_members(&gw, room, &pdus)?
    } else {
        Vec::new()
    };
    let start = match from {
        Some(PageToken::History(seq)) => format!("b{seq}"),
        Some(PageToken::Timeline(pos)) => pos.to_string(),
        None if backwards => gw.stream.current().to_string(),
        None => "0".to_owned(),
    };
    let mut body = json!({ "start": start, "chunk": chunk, "state": state });
    if let Some(end) = end.filter(|_| !body["chunk"].as_array().is_some_and(Vec::is_empty)) {
        body["end"] = json!(end);
    }
    Ok(Json(body))
}

async fn get_context(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<context::Request>,
) -> ApiResult<Json<Value>> {
    let caller = req.caller()?;
    let b = &req.body;
    let room = &b.room_id;
    let (pdu, stored) = gw
        .rooms
        .get_pdu(&b.event_id)?
        .filter(|(p, _)| p.room_id == *room)
        .ok_or_else(|| ApiError::not_found("Unknown event"))?;
    if !gw.rooms.can_see(room, &caller.user_id, stored.pos)? {
        return Err(ApiError::not_found("Unknown event"));
    }
    let viewer = Viewer::new(&caller.user_id, caller.device_id.as_str());
    let limit = (u64::from(b.limit) as usize).min(100);
    let half = limit.div_ceil(2);
    let collect =
        |entries: Vec<(u64, OwnedEventId)>| -> ApiResult<(Vec<Value>, Vec<Pdu>, Option<u64>)> {
            let mut out = Vec::new();
            let mut pdus = Vec::new();
            let mut last = None;
            for (pos, id) in entries {
                last = Some(pos);
                if !gw.rooms.can_see(room, &caller.user_id, pos)? {
                    continue;
                }
                if let Some((p, s)) = gw.rooms.get_pdu(&id)? {
                    out.push(client_event(&gw, viewer, &p, &s)?);
                    pdus.push(p);
                }
            }
            Ok((out, pdus, last))
        };
    let (before, before_pdus, first) =
        collect(gw.rooms.timeline(room, stored.pos - 1, true, half)?)?;
    let (after, after_pdus, last) = collect(gw.rooms.timeline(room, stored.pos, false, half)?)?;
    let mut all = before_pdus;
    all.push(pdu.clone());
    all.extend(after_pdus);
    let state = lazy_members(&gw, room, &all)?;
    Ok(Json(json!({
        "event": client_event(&gw, viewer, &pdu, &stored)?,
        "events_before": before,
        "events_after": after,
        "start": first.map(|p| p - 1).unwrap_or(stored.pos - 1).to_string(),
        "end": last.unwrap_or(stored.pos).to_string(),
        "state": state,
    })))
}

async fn get_room_event(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<get_event::Request>,
) -> ApiResult<Json<Value>> {
    let caller = req.caller()?;
    let b = &req.body;
    let (pdu, stored) = gw
        .rooms
        .get_pdu(&b.event_id)?
        .filter(|(p, _)| p.room_id == b.room_id)
        .ok_or_else(|| ApiError::not_found("Unknown event"))?;
    if !gw.rooms.can_see(&b.room_id, &caller.user_id, stored.pos)? {
        return Err(ApiError::not_found("Unknown event"));
    }
    Ok(Json(client_event(
        &gw,
        Viewer::new(&caller.user_id, caller.device_id.as_str()),
        &pdu,
        &stored,
    )?))
}

async fn set_typing(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<typing::Request>,
) -> RumaResult<typing::Response> {
    let caller = req.caller()?;
    let b = &req.body;
    if b.user_id != caller.user_id {
        return Err(ApiError::forbidden(
            "You may only set your own typing state",
        ));
    }
    gw.rooms.require_joined(&b.room_id, &caller.user_id)?;
    let timeout = match &b.state {
        typing::Typing::Yes(info) => Some(info.timeout),
        typing::Typing::No => None,
    };
    gw.ephemeral
        .set_typing(&b.room_id, &caller.user_id, timeout)
        .await?;
    crate::service::edus::typing(&gw, &b.room_id, &caller.user_id, timeout.is_some()).await?;
    Ok(RumaResponse(typing::Response::new()))
}

async fn post_receipt(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<receipt::Request>,
) -> RumaResult<receipt::Response> {
    let caller = req.caller()?;
    let b = &req.body;
    let kind = b.receipt_type.to_string();
    let thread = serde_json::to_value(&b.thread)?.as_str().map(str::to_owned);
    set_marker(&gw, &b.room_id, &caller.user_id, &kind, &b.event_id, thread).await?;
    Ok(RumaResponse(receipt::Response::new()))
}

async fn post_read_markers(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<read_marker::Request>,
) -> RumaResult<read_marker::Response> {
    let caller = req.caller()?;
    let b = &req.body;
    gw.rooms.require_joined(&b.room_id, &caller.user_id)?;
    if let Some(e) = &b.fully_read {
        set_marker(&gw, &b.room_id, &caller.user_id, "m.fully_read", e, None).await?;
    }
    if let Some(e) = &b.read_receipt {
        set_marker(&gw, &b.room_id, &caller.user_id, "m.read", e, None).await?;
    }
    if let Some(e) = &b.private_read_receipt {
        set_marker(&gw, &b.room_id, &caller.user_id, "m.read.private", e, None).await?;
    }
    Ok(RumaResponse(read_marker::Response::new()))
}

pub(super) fn routes(r: Router<Arc<Gateway>>) -> Router<Arc<Gateway>> {
    let r = add::<send::Request, _, _>(r, send_message);
    let r = add::<send_state::Request, _, _>(r, put_state);
    let r = add::<get_state::Request, _, _>(r, get_state_event);
    // The empty state key, with and without a trailing slash.
    let r = r
        .route(
            "/_matrix/client/v3/rooms/{room_id}/state/{event_type}/",
            get(get_state_event).put(put_state),
        )
        .route(
            "/_matrix/client/v3/rooms/{room_id}/state/{event_type}",
            get(get_state_event).put(put_state),
        )
        .route(
            "/_matrix/client/r0/rooms/{room_id}/state/{event_type}/",
            get(get_state_event).merge(put(put_state)),
        );
    let r = add::<all_state::Request, _, _>(r, get_all_state);
    let r = add::<redact::Request, _, _>(r, redact_event);
    let r = add::<messages::Request, _, _>(r, get_messages);
    let r = add::<context::Request, _, _>(r, get_context);
    let r = add::<get_event::Request, _, _>(r, get_room_event);
    let r = add::<typing::Request, _, _>(r, set_typing);
    let r = add::<receipt::Request, _, _>(r, post_receipt);
    add::<read_marker::Request, _, _>(r, post_read_markers)
}

#[cfg(test)]
mod tests {
    use http::{Method, StatusCode};
    use serde_json::{json, Value};

    use crate::testkit::{enc, kit};

    /// The joined-room section of `body` for `room`.
    fn room_of<'a>(body: &'a Value, room: &str) -> &'a Value {
        &body["rooms"]["join"][room]
    }

    #[tokio::test]
    async fn typing_and_receipts_reach_the_other_member() {
        let k = kit();
        let (alice, a) = k.user("alice").await;
        let (bob, b) = k.user("bob").await;
        let room = k.room(&alice).await;
        k.join(&room, &bob).await;
        let r = enc(room.as_str());
        let (_, first) = k
            .call(Method::GET, "/_matrix/client/v3/sync", Some(&b), None)
            .await;
        let since = first["next_batch"].as_str().expect("token").to_owned();

        let (status, _) = k
            .call(
                Method::PUT,
                &format!(
                    "/_matrix/client/v3/rooms/{r}/typing/{}",
                    enc(alice.as_str())
                ),
                Some(&a),
                Some(json!({"typing": true, "timeout": 30000})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        // Nobody may set another user's typing state.
        let (status, body) = k
            .call(
                Method::PUT,
                &format!(
                    "/_matrix/client/v3/rooms/{r}/typing/{}",
                    enc(alice.as_str())
                ),
                Some(&b),
                Some(json!({"typing": true, "timeout": 30000})),
            )
            .await;
        assert_eq!(
            (status, body["errcode"].as_str()),
            (StatusCode::FORBIDDEN, Some("M_FORBIDDEN"))
        );

        let (_, sent) = k
            .call(
                Method::PUT,
                &format!("/_matrix/client/v3/rooms/{r}/send/m.room.message/t1"),
                Some(&a),
                Some(json!({"msgtype": "m.text", "body": "hi"})),
            )
            .await;
        let event_id = sent["event_id"].as_str().expect("event id").to_owned();
        let (status, _) = k
            .call(
                Method::POST,
                &format!(
                    "/_matrix/client/v3/rooms/{r}/receipt/m.read/{}",
                    enc(&event_id)
                ),
                Some(&a),
                Some(json!({})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        // A private receipt of alice must not reach bob.
        let (status, _) = k
            .call(
                Method::POST,
                &format!(
                    "/_matrix/client/v3/rooms/{r}/receipt/m.read.private/{}",
                    enc(&event_id)
                ),
                Some(&a),
                Some(json!({})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);

        let (_, body) = k
            .call(
                Method::GET,
                &format!("/_matrix/client/v3/sync?since={since}&timeout=0"),
                Some(&b),
                None,
            )
            .await;
        let ephemeral = room_of(&body, room.as_str())["ephemeral"]["events"]
            .as_array()
            .expect("ephemeral")
            .clone();
        let typing = ephemeral
            .iter()
            .find(|e| e["type"] == "m.typing")
            .expect("typing event");
        assert_eq!(typing["content"]["user_ids"], json!([alice]));
        let receipt = ephemeral
            .iter()
            .find(|e| e["type"] == "m.receipt")
            .expect("receipt event");
        assert!(receipt["content"][&event_id]["m.read"][alice.as_str()]["ts"].is_u64());
        assert!(
            receipt["content"][&event_id]
                .get("m.read.private")
                .is_none(),
            "private receipt leaked: {receipt}"
        );
        // Bob has one unread message from alice.
        assert_eq!(
            room_of(&body, room.as_str())["unread_notifications"]["notification_count"],
            json!(1)
        );

        // Alice stops typing: bob's next sync says nobody is.
        let next = body["next_batch"].as_str().expect("token").to_owned();
        k.call(
            Method::PUT,
            &format!(
                "/_matrix/client/v3/rooms/{r}/typing/{}",
                enc(alice.as_str())
            ),
            Some(&a),
            Some(json!({"typing": false})),
        )
        .await;
        let (_, body) = k
            .call(
                Method::GET,
                &format!("/_matrix/client/v3/sync?since={next}&timeout=0"),
                Some(&b),
                None,
            )
            .await;
        let ephemeral = &room_of(&body, room.as_str())["ephemeral"]["events"];
        let typing = ephemeral
            .as_array()
            .and_then(|e| e.iter().find(|e| e["type"] == "m.typing"))
            .expect("typing");
        assert_eq!(typing["content"]["user_ids"], json!([]));
    }

    #[tokio::test]
    async fn kick_ban_unban_follow_power_levels() {
        let k = kit();
        let (_alice, a) = k.user("alice").await;
        let (bob, b) = k.user("bob").await;
        let (carol, c) = k.user("carol").await;
        let (_, created) = k
            .call(
                Method::POST,
                "/_matrix/client/v3/createRoom",
                Some(&a),
                Some(json!({"preset": "public_chat"})),
            )
            .await;
        let room = created["room_id"].as_str().expect("room").to_owned();
        let r = enc(&room);
        for t in [&b, &c] {
            let (status, _) = k
                .call(
                    Method::POST,
                    &format!("/_matrix/client/v3/join/{r}"),
                    Some(t),
                    Some(json!({})),
                )
                .await;
            assert_eq!(status, StatusCode::OK);
        }
        // Bob (power 0) may not kick carol.
        let (status, body) = k
            .call(
                Method::POST,
                &format!("/_matrix/client/v3/rooms/{r}/kick"),
                Some(&b),
                Some(json!({"user_id": carol, "reason": "no"})),
            )
            .await;
        assert_eq!(
            (status, body["errcode"].as_str()),
            (StatusCode::FORBIDDEN, Some("M_FORBIDDEN"))
        );
        // Alice (creator, 100) kicks bob, then bans carol; carol cannot rejoin until unbanned.
        let (status, _) = k
            .call(
                Method::POST,
                &format!("/_matrix/client/v3/rooms/{r}/kick"),
                Some(&a),
                Some(json!({"user_id": bob})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = k
            .call(
                Method::POST,
                &format!("/_matrix/client/v3/rooms/{r}/ban"),
                Some(&a),
                Some(json!({"user_id": carol})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = k
            .call(
                Method::POST,
                &format!("/_matrix/client/v3/join/{r}"),
                Some(&c),
                Some(json!({})),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        // A kicked user may rejoin a public room.
        let (status, _) = k
            .call(
                Method::POST,
                &format!("/_matrix/client/v3/join/{r}"),
                Some(&b),
                Some(json!({})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = k
            .call(
                Method::POST,
                &format!("/_matrix/client/v3/rooms/{r}/unban"),
                Some(&a),
                Some(json!({"user_id": carol})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = k
            .call(
                Method::POST,
                &format!("/_matrix/client/v3/join/{r}"),
                Some(&c),
                Some(json!({})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        // Bob may not change the power levels; alice raises bob and then he may kick.
        let (_, pl) = k
            .call(
                Method::GET,
                &format!("/_matrix/client/v3/rooms/{r}/state/m.room.power_levels/"),
                Some(&a),
                None,
            )
            .await;
        let mut raised = pl.clone();
        raised["users"][bob.as_str()] = json!(50);
        let (status, _) = k
            .call(
                Method::PUT,
                &format!("/_matrix/client/v3/rooms/{r}/state/m.room.power_levels/"),
                Some(&b),
                Some(raised.clone()),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = k
            .call(
                Method::PUT,
                &format!("/_matrix/client/v3/rooms/{r}/state/m.room.power_levels/"),
                Some(&a),
                Some(raised),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = k
            .call(
                Method::POST,
                &format!("/_matrix/client/v3/rooms/{r}/kick"),
                Some(&b),
                Some(json!({"user_id": carol})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (_, members) = k
            .call(
                Method::GET,
                &format!("/_matrix/client/v3/rooms/{r}/joined_members"),
                Some(&a),
                None,
            )
            .await;
        let joined: Vec<&String> = members["joined"]
            .as_object()
            .expect("joined")
            .keys()
            .collect();
        assert_eq!(joined.len(), 2, "{members}");
        assert!(!members["joined"]
            .as_object()
            .expect("joined")
            .contains_key(carol.as_str()));
        // Topic and name changes show up in the state.
        let (status, _) = k
            .call(
                Method::PUT,
                &format!("/_matrix/client/v3/rooms/{r}/state/m.room.topic/"),
                Some(&a),
                Some(json!({"topic": "t"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (_, topic) = k
            .call(
                Method::GET,
                &format!("/_matrix/client/v3/rooms/{r}/state/m.room.topic/"),
                Some(&b),
                None,
            )
            .await;
        assert_eq!(topic, json!({"topic": "t"}));
    }
}
