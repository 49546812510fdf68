//! Push-rule evaluation: which events notify a user, and which highlight (mentions).
//!
//! `/sync` uses it for `unread_notifications` (`notification_count`, `highlight_count`), so the
//! badges follow the user's push rules: reactions, edits, notices and membership changes do not
//! count with the default rules, and mentions highlight. Power levels are not given to the
//! evaluator, so `@room` mentions (which depend on the sender's notification power level)
//! notify but never highlight.

use ruma::{
    push::{PushConditionRoomCtx, Ruleset},
    serde::Raw,
    OwnedUserId, RoomId, UInt, UserId,
};
use serde_json::value::RawValue as RawJsonValue;

use super::Gateway;
use crate::error::ApiResult;

/// What push rules say about one event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Verdict {
    /// The event notifies the user.
    pub notify: bool,
    /// The event is highlighted (a mention).
    pub highlight: bool,
}

/// One user's push rules in the context of one room.
pub struct PushEvaluator {
    rules: Ruleset,
    ctx: PushConditionRoomCtx,
}

impl PushEvaluator {
    /// The evaluator for `user` in `room`: their rules, the room's joined member count and the
    /// user's display name in the room.
    pub fn for_room(gw: &Gateway, user: &UserId, room: &RoomId) -> ApiResult<Self> {
        let rules = gw.account_data.push_rules(user)?;
        let joined = gw
            .rooms
            .members(room)?
            .into_iter()
            .filter(|(_, m)| m.membership == "join")
            .count();
        let display_name = gw
            .rooms
            .state_content(room, "m.room.member", user.as_str())?
            .and_then(|c| {
                c.get("displayname")
                    .and_then(|d| d.as_str())
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| user.localpart().to_owned());
        let ctx = PushConditionRoomCtx::new(
            room.to_owned(),
            UInt::try_from(joined).unwrap_or(UInt::MAX),
            OwnedUserId::from(user),
            display_name,
        );
        Ok(Self { rules, ctx })
    }

    /// The verdict on an event given as JSON (a PDU or a client event).
    pub fn evaluate(&self, event: &RawJsonValue) -> Verdict {
        let raw: Raw<()> = Raw::from_json(event.to_owned());
        let actions = futures::executor::block_on(self.rules.get_actions(&raw, &self.ctx));
        Verdict {
            notify: actions.iter().any(|a| a.should_notify()),
            highlight: actions.iter().any(|a| a.is_highlight()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::testkit::kit;
    use serde_json::{json, value::to_raw_value};

    #[tokio::test]
    async fn default_rules_notify_messages_and_highlight_mentions() {
        let k = kit();
        let (alice, _) = k.user("alice").await;
        let (bob, _) = k.user("bob").await;
        let room = k.room(&alice).await;
        k.join(&room, &bob).await;
        let eval = PushEvaluator::for_room(&k.gw, &alice, &room).expect("evaluator");
        let ev = |v: serde_json::Value| eval.evaluate(&to_raw_value(&v).expect("raw"));

        let msg = ev(json!({
            "type": "m.room.message", "sender": bob, "room_id": room,
            "content": {"msgtype": "m.text", "body": "hello"},
        }));
        assert_eq!(
            msg,
            Verdict {
                notify: true,
                highlight: false
            }
        );

        let mention = ev(json!({
            "type": "m.room.message", "sender": bob, "room_id": room,
            "content": {"msgtype": "m.text", "body": "hi alice",
                        "m.mentions": {"user_ids": [alice]}},
        }));
        assert_eq!(
            mention,
            Verdict {
                notify: true,
                highlight: true
            }
        );

        let reaction = ev(json!({
            "type": "m.reaction", "sender": bob, "room_id": room,
            "content": {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$x", "key": "👍"}},
        }));
        assert!(!reaction.notify);

        let notice = ev(json!({
            "type": "m.room.message", "sender": bob, "room_id": room,
            "content": {"msgtype": "m.notice", "body": "bot says"},
        }));
        assert!(!notice.notify);

        // One's own messages never notify.
        let own = ev(json!({
            "type": "m.room.message", "sender": alice, "room_id": room,
            "content": {"msgtype": "m.text", "body": "me"},
        }));
        assert_eq!(own, Verdict::default());
    }

    #[tokio::test]
    async fn disabled_rule_stops_notifying() {
        let k = kit();
        let (alice, _) = k.user("alice").await;
        let (bob, _) = k.user("bob").await;
        let room = k.room(&alice).await;
        k.join(&room, &bob).await;
        k.gw.account_data
            .update_push_rules(&alice, |r| {
                r.set_enabled(ruma::push::RuleKind::Override, ".m.rule.master", true)
                    .map_err(|_| crate::error::ApiError::not_found("rule"))
            })
            .await
            .expect("update");
        let eval = PushEvaluator::for_room(&k.gw, &alice, &room).expect("evaluator");
        let v = eval.evaluate(
            &to_raw_value(&json!({
                "type": "m.room.message", "sender": bob, "room_id": room,
                "content": {"msgtype": "m.text", "body": "hello"},
            }))
            .expect("raw"),
        );
        assert!(!v.notify);
    }

    #[tokio::test]
    async fn sync_badges_follow_push_rules() {
        let k = kit();
        let (alice, token) = k.user("alice").await;
        let (bob, _) = k.user("bob").await;
        let room = k.room(&alice).await;
        k.join(&room, &bob).await;
        let send = |content: serde_json::Value, kind: &'static str| {
            let (gw, room, bob) = (k.gw.clone(), room.clone(), bob.clone());
            async move {
                gw.rooms
                    .write(&room, None, |txn| {
                        txn.append(&bob, kind, None, content, None)
                    })
                    .await
                    .expect("send");
            }
        };
        send(
            json!({"msgtype": "m.text", "body": "hello"}),
            "m.room.message",
        )
        .await;
        send(
            json!({"msgtype": "m.text", "body": "alice?", "m.mentions": {"user_ids": [alice]}}),
            "m.room.message",
        )
        .await;
        send(
            json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": "$x", "key": "+1"}}),
            "m.reaction",
        )
        .await;
        let (status, body) = k
            .call(
                http::Method::GET,
                "/_matrix/client/v3/sync?timeout=0",
                Some(&token),
                None,
            )
            .await;
        assert_eq!(status, http::StatusCode::OK);
        assert_eq!(
            body["rooms"]["join"][room.as_str()]["unread_notifications"],
            json!({"notification_count": 2, "highlight_count": 1}),
            "{body}"
        );
    }
}
