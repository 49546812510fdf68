//! The body of `POST /_matrix/push/v1/notify`.
//!
//! Only the `event_id_only` form is ever sent: event id, room id, unread count and the
//! device, never the sender, the event type or the content. A push gateway is a third party
//! (Sygnal run by the app's vendor, then Apple or Google): what it learns, mixgate was built
//! to hide, and Element fetches the event itself with the event id. The `format` a pusher asked
//! for is therefore ignored.

use serde_json::{json, Map, Value};

use super::queue::Job;

/// The notification for `job` to the pusher stored as `pusher` (the JSON its client set).
pub fn body(job: &Job, pusher: &Value) -> Value {
    let mut data: Map<String, Value> = pusher
        .get("data")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    // The URL is ours to use, not the device's business.
    data.remove("url");
    data.insert("format".into(), json!("event_id_only"));
    let mut tweaks = Map::new();
    if job.highlight {
        tweaks.insert("highlight".into(), json!(true));
    }
    json!({
        "notification": {
            "event_id": job.event_id,
            "room_id": job.room_id,
            "prio": if job.highlight { "high" } else { "low" },
            "counts": { "unread": job.unread },
            "devices": [{
                "app_id": job.app_id,
                "pushkey": job.pushkey,
                "pushkey_ts": pusher.get("pushkey_ts").cloned().unwrap_or(json!(0)),
                "data": data,
                "tweaks": tweaks,
            }],
        }
    })
}
