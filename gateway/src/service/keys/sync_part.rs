//! The end-to-end encryption part of a `/sync` response, in one call.

use std::collections::BTreeMap;

use ruma::{OwnedUserId, UserId};
use serde_json::{json, Value};

use crate::{error::ApiResult, service::Gateway};

/// Most to-device messages in one sync response.
pub const TO_DEVICE_LIMIT: usize = 100;

/// The E2EE fields of a `/sync` response covering `(since, upto]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct E2eeSync {
    /// `to_device.events`.
    pub to_device: Vec<Value>,
    /// `device_lists.changed`: the caller and users sharing a room with the caller whose
    /// device lists changed (empty on an initial sync: clients query everyone then).
    pub changed: Vec<OwnedUserId>,
    /// `device_one_time_keys_count`.
    pub one_time_key_counts: BTreeMap<String, u64>,
    /// `device_unused_fallback_key_types`.
    pub unused_fallback_key_types: Vec<String>,
}

impl E2eeSync {
    /// Whether a long-polling sync should return now for this.
    pub fn has_news(&self) -> bool {
        !self.to_device.is_empty() || !self.changed.is_empty()
    }

    /// Writes the fields into a `/v3/sync` response body (`device_lists.left` stays as is).
    pub fn write_into(&self, body: &mut Value) {
        body["to_device"] = json!({ "events": self.to_device });
        body["device_lists"]["changed"] = json!(self.changed);
        if body["device_lists"].get("left").is_none() {
            body["device_lists"]["left"] = json!([]);
        }
        body["device_one_time_keys_count"] = json!(self.one_time_key_counts);
        body["device_unused_fallback_key_types"] = json!(self.unused_fallback_key_types);
    }
}

/// Gathers the E2EE part of a sync of `user`'s `device` for `(since, upto]` (`since` is
/// `None` on an initial sync). Takes the device's to-device messages (see
/// [`crate::service::to_device::ToDevice::take_for_sync`]): call it once per response, with
/// `upto` the position of the response's `next_batch`.
pub fn e2ee_sync(
    gw: &Gateway,
    user: &UserId,
    device: &str,
    since: Option<u64>,
    upto: u64,
) -> ApiResult<E2eeSync> {
    let from = since.unwrap_or(0);
    let to_device = gw
        .to_device
        .take_for_sync(user, device, from, upto, TO_DEVICE_LIMIT)?;
    let mut changed = Vec::new();
    if let Some(since) = since {
        for other in gw.keys.changed_users(since, upto)? {
            if other == user || gw.rooms.share_a_room(user, &other)? {
                changed.push(other);
            }
        }
    }
    Ok(E2eeSync {
        to_device,
        changed,
        one_time_key_counts: gw.keys.one_time_key_counts(user, device)?,
        unused_fallback_key_types: gw.keys.unused_fallback_key_types(user, device)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        api::e2ee_testing::{gateway, user},
        service::{
            keys::KeysUpload,
            to_device::{Messages, Recipient},
        },
    };

    #[tokio::test]
    async fn gathers_messages_changes_and_counts() {
        let (gw, _) = gateway();
        user(&gw, "alice", "A1").await;
        user(&gw, "bob", "B1").await;
        let alice = ruma::user_id!("@alice:test.local");
        let bob = ruma::user_id!("@bob:test.local");
        let initial = e2ee_sync(&gw, alice, "A1", None, gw.stream.current()).expect("sync");
        assert!(!initial.has_news());
        assert_eq!(initial.one_time_key_counts["signed_curve25519"], 0);
        let since = gw.stream.current();

        gw.keys
            .upload(
                alice,
                "A1",
                KeysUpload {
                    device_keys: Some(json!({"user_id": alice, "device_id": "A1",
                        "algorithms": [], "keys": {"ed25519:A1": "k"}})),
                    fallback_keys: BTreeMap::from([(
                        "signed_curve25519:F".to_owned(),
                        json!({"key": "f", "fallback": true}),
                    )]),
                    ..Default::default()
                },
            )
            .await
            .expect("upload");
        gw.keys.record_change(bob).await.expect("bob changes");
        let messages: Messages = BTreeMap::from([(
            alice.to_owned(),
            BTreeMap::from([(Recipient::AllDevices, json!({"x": 1}))]),
        )]);
        gw.to_device
            .send(
                &gw.users,
                gw.server_name(),
                bob,
                "B1",
                "t",
                "m.x",
                &messages,
            )
            .await
            .expect("send");
        let upto = gw.stream.current();
        let part = e2ee_sync(&gw, alice, "A1", Some(since), upto).expect("sync");
        assert!(part.has_news());
        assert_eq!(part.to_device.len(), 1);
        // Bob shares no room with Alice: only her own change is reported.
        assert_eq!(part.changed, vec![alice.to_owned()]);
        assert_eq!(part.unused_fallback_key_types, vec!["signed_curve25519"]);
        let mut body = json!({"device_lists": {"left": []}});
        part.write_into(&mut body);
        assert_eq!(body["to_device"]["events"][0]["content"]["x"], 1);
        assert_eq!(body["device_one_time_keys_count"]["signed_curve25519"], 0);
        assert_eq!(body["device_lists"]["changed"][0], "@alice:test.local");

        // The next sync acknowledges the messages.
        let next = e2ee_sync(&gw, alice, "A1", Some(upto), upto).expect("sync");
        assert!(!next.has_news());
        assert_eq!(gw.to_device.pending_count(alice, "A1").expect("n"), 0);
    }
}
