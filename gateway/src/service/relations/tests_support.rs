//! Helpers shared by tests of served events.

use serde_json::{json, Value};

/// Replaces what changes from run to run (ids, timestamps, ages) so bodies can be snapshotted.
pub(crate) fn stable(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                match k.as_str() {
                    "event_id" | "room_id" => *val = json!("[id]"),
                    "origin_server_ts" | "age" => *val = json!(0),
                    "next_batch" => *val = json!("[token]"),
                    "transaction_id" => *val = json!("[txn]"),
                    _ => stable(val),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(stable),
        _ => {}
    }
}
