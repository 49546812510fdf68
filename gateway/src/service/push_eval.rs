//! Push-rule evaluation: which events notify a user, and which highlight (mentions).
//!
//! `/sync` uses it for `unread_notifications` (`notification_count`, `highlight_count`), so the
//! badges follow the user's push rules: reactions, edits, notices and membership changes do not
//! count with the default rules, and mentions highlight. The room's power levels are given to
//! the evaluator, so an `@room` mention highlights when its sender may notify the room
//! (`notifications.room`, 50 by default).

use std::collections::BTreeMap;

use ruma::{
    power_levels::NotificationPowerLevels,
    push::{PushConditionPowerLevelsCtx, PushConditionRoomCtx, Ruleset},
    room_version_rules::{AuthorizationRules, RoomPowerLevelsRules},
    serde::Raw,
    Int, OwnedUserId, RoomId, UInt, UserId,
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

/// The parts of `m.room.power_levels` content that push conditions read. Fields that do not
/// parse take their spec defaults (the event passed the auth rules, so they rarely will not).
fn power_levels_ctx(content: &serde_json::Value) -> PushConditionPowerLevelsCtx {
    let users: BTreeMap<OwnedUserId, Int> = content
        .get("users")
        .and_then(|u| serde_json::from_value(u.clone()).ok())
        .unwrap_or_default();
    let users_default = content
        .get("users_default")
        .and_then(|d| serde_json::from_value(d.clone()).ok())
        .unwrap_or_default();
    let notifications: NotificationPowerLevels = content
        .get("notifications")
        .and_then(|n| serde_json::from_value(n.clone()).ok())
        .unwrap_or_default();
    // Room versions 10 and 11 give creators no special power (version 12 would).
    let rules = RoomPowerLevelsRules::new(&AuthorizationRules::V11, []);
    PushConditionPowerLevelsCtx::new(users, users_default, notifications, rules)
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
        let ctx = match gw
            .rooms
            .state_content(room, "m.room.power_levels", "")?
            .map(|c| power_levels_ctx(&c))
        {
            Some(levels) => ctx.with_power_levels(levels),
            None => ctx,
        };
        Ok(Self { rules, ctx })
    }

    /// The verdict on an event given as JSON (a PDU or a client event). An edit
    /// (`m.replace` with `m.new_content`) is judged as the edited content, unless the rule it
    /// matches as itself is `.m.rule.suppress_edits` (on by default: edits stay silent).
    pub fn evaluate(&self, event: &RawJsonValue) -> Verdict {
        let raw: Raw<()> = Raw::from_json(event.to_owned());
        if let Some(edited) = edited_content(event) {
            let matched = futures::executor::block_on(self.rules.get_match(&raw, &self.ctx));
            if matched.is_none_or(|r| r.rule_id() != SUPPRESS_EDITS) {
                if let Ok(edited) = RawJsonValue::from_string(edited.to_string()) {
                    return self.verdict(&Raw::from_json(edited));
                }
            }
        }
        self.verdict(&raw)
    }

    fn verdict(&self, raw: &Raw<()>) -> Verdict {
        let actions = futures::executor::block_on(self.rules.get_actions(raw, &self.ctx));
        Verdict {
            notify: actions.iter().any(|a| a.should_notify()),
            highlight: actions.iter().any(|a| a.is_highlight()),
        }
    }
}

/// The default rule that keeps edits from notifying.
const SUPPRESS_EDITS: &str = ".m.rule.suppress_edits";

/// For an edit, the event as push rules judge it: its `content` replaced by `m.new_content`.
fn edited_content(event: &RawJsonValue) -> Option<serde_json::Value> {
    let mut ev: serde_json::Value = serde_json::from_str(event.get()).ok()?;
    let content = ev.get("content")?;
    if content.pointer("/m.relates_to/rel_type")?.as_str()? != "m.replace" {
        return None;
    }
    let new = content.get("m.new_content")?.clone();
    if !new.is_object() {
        return None;
    }
    ev["content"] = new;
    Some(ev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::kit;
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
    async fn room_mentions_highlight_only_from_senders_allowed_to_notify() {
        let k = kit();
        let (alice, _) = k.user("alice").await;
        let (bob, _) = k.user("bob").await;
        let (carol, _) = k.user("carol").await;
        let room = k.room(&alice).await;
        k.join(&room, &bob).await;
        k.join(&room, &carol).await;
        let at_room = |sender: &UserId| {
            json!({
                "type": "m.room.message", "sender": sender, "room_id": room,
                "content": {"msgtype": "m.text", "body": "@room hello",
                            "m.mentions": {"room": true}},
            })
        };
        // No power levels in the room: nobody may notify it.
        let eval = PushEvaluator::for_room(&k.gw, &alice, &room).expect("evaluator");
        let v = eval.evaluate(&to_raw_value(&at_room(&carol)).expect("raw"));
        assert!(v.notify && !v.highlight, "{v:?}");
        let levels =
            json!({"users": {alice.as_str(): 100, carol.as_str(): 50}, "users_default": 0});
        let a = alice.clone();
        k.gw.rooms
            .write(&room, None, move |txn| {
                txn.append(&a, "m.room.power_levels", Some(""), levels, None)
            })
            .await
            .expect("power levels");
        let eval = PushEvaluator::for_room(&k.gw, &alice, &room).expect("evaluator");
        let carol_v = eval.evaluate(&to_raw_value(&at_room(&carol)).expect("raw"));
        assert_eq!(
            carol_v,
            Verdict {
                notify: true,
                highlight: true
            }
        );
        let bob_v = eval.evaluate(&to_raw_value(&at_room(&bob)).expect("raw"));
        assert!(bob_v.notify && !bob_v.highlight, "{bob_v:?}");
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
    async fn edits_are_judged_as_their_new_content_unless_suppressed() {
        let k = kit();
        let (alice, _) = k.user("alice").await;
        let (bob, _) = k.user("bob").await;
        let room = k.room(&alice).await;
        k.join(&room, &bob).await;
        let edit = |body: &str, new_body: &str| {
            to_raw_value(&json!({
                "type": "m.room.message", "sender": bob, "room_id": room,
                "content": {
                    "msgtype": "m.text", "body": body,
                    "m.new_content": {"msgtype": "m.text", "body": new_body,
                                      "m.mentions": {"user_ids": [alice]}},
                    "m.relates_to": {"rel_type": "m.replace", "event_id": "$orig"},
                },
            }))
            .expect("raw")
        };
        // With the default rules edits stay silent, mention or not.
        let eval = PushEvaluator::for_room(&k.gw, &alice, &room).expect("evaluator");
        assert_eq!(eval.evaluate(&edit("* hi", "hi")), Verdict::default());
        // Without `.m.rule.suppress_edits`, the new content is what the rules see: the
        // mention in `m.new_content` highlights.
        k.gw.account_data
            .update_push_rules(&alice, |r| {
                r.set_enabled(ruma::push::RuleKind::Override, SUPPRESS_EDITS, false)
                    .map_err(|_| crate::error::ApiError::not_found("rule"))
            })
            .await
            .expect("update");
        let eval = PushEvaluator::for_room(&k.gw, &alice, &room).expect("evaluator");
        let v = eval.evaluate(&edit("* hi", "hi"));
        assert!(v.notify && v.highlight, "{v:?}");
        // A keyword rule that highlights: in the fallback body only, it does not count; in
        // the new content, it does.
        k.gw.account_data
            .update_push_rules(&alice, |r| {
                r.insert(
                    ruma::push::NewPushRule::Content(ruma::push::NewPatternedPushRule::new(
                        "tea".into(),
                        "tea".into(),
                        vec![
                            ruma::push::Action::Notify,
                            ruma::push::Action::SetTweak(ruma::push::Tweak::Highlight(
                                ruma::push::HighlightTweakValue::Yes,
                            )),
                        ],
                    )),
                    None,
                    None,
                )
                .map_err(|_| crate::error::ApiError::not_found("rule"))
            })
            .await
            .expect("update");
        let eval = PushEvaluator::for_room(&k.gw, &alice, &room).expect("evaluator");
        let keyword = |body: &str, new_body: &str| {
            to_raw_value(&json!({
                "type": "m.room.message", "sender": bob, "room_id": room,
                "content": {
                    "msgtype": "m.text", "body": body,
                    "m.new_content": {"msgtype": "m.text", "body": new_body},
                    "m.relates_to": {"rel_type": "m.replace", "event_id": "$orig"},
                },
            }))
            .expect("raw")
        };
        let v = eval.evaluate(&keyword("* tea", "coffee"));
        assert!(v.notify && !v.highlight, "{v:?}");
        let v = eval.evaluate(&keyword("* coffee", "tea"));
        assert!(v.notify && v.highlight, "{v:?}");
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
