//! To-device messages: per-device inboxes in the global stream, with delivery acknowledged by
//! the client's next sync.
//!
//! `PUT /sendToDevice` stores one message per recipient device at its own stream position (so
//! `/sync` wakes and delivers them in order) and remembers the sender's transaction id, so a
//! retried request stores nothing twice. [`ToDevice::take_for_sync`] returns a device's oldest
//! pending messages and remembers which response (its `to` token) carried them; when the device
//! later syncs with a `since` at or past that token, the messages are deleted. A retried sync
//! with an older `since` gets them again, and messages cut off by the limit stay pending.

use std::{collections::BTreeMap, sync::Arc};

use ruma::{OwnedDeviceId, OwnedUserId, ServerName, UserId};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use storage::{key, u64_be, u64_from_be, Batch, Db, Table};

use super::{limits, stream::Stream, users::Users};
use crate::error::ApiResult;

/// A stored to-device message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct StoredMessage {
    #[serde(rename = "type")]
    kind: String,
    sender: OwnedUserId,
    content: Value,
}

/// The last sync response that carried messages to a device: its `to` token and the position
/// of the last message in it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Delivered {
    token: u64,
    upto: u64,
}

/// Which devices of a recipient a message is for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Recipient {
    /// One device.
    Device(OwnedDeviceId),
    /// Every device of the user (`*`).
    AllDevices,
}

/// Messages of one `/sendToDevice` request: user → devices → content.
pub type Messages = BTreeMap<OwnedUserId, BTreeMap<Recipient, Value>>;

/// The to-device store. Reachable as `gw.to_device`.
pub struct ToDevice {
    db: Db,
    stream: Arc<Stream>,
    /// `(user, device, position)` → message.
    inbox: Table<StoredMessage>,
    /// `(sender, sender device, txn id)` → position of the send.
    txns: Table<u64>,
    /// `(user, device)` → last delivery.
    delivered: Table<Delivered>,
}

fn device_key(user: &UserId, device: &str) -> Vec<u8> {
    key(&[user.as_bytes(), device.as_bytes()])
}

fn inbox_prefix(user: &UserId, device: &str) -> Vec<u8> {
    let mut p = device_key(user, device);
    p.push(0xff);
    p
}

impl ToDevice {
    /// Opens the to-device tables.
    pub fn new(db: Db, stream: Arc<Stream>) -> Self {
        Self {
            db,
            stream,
            inbox: Table::new("to_device_inbox"),
            txns: Table::new("to_device_txns"),
            delivered: Table::new("to_device_delivered"),
        }
    }

    /// Stores the messages of one `/sendToDevice` request by `sender`'s device, once per
    /// transaction id: a repeated `txn_id` stores nothing and returns `false`. Messages for
    /// `*` go to every device of the user; messages to unknown devices are dropped. Users of
    /// other servers are not reachable yet (peering carries EDUs later) and are skipped.
    #[allow(clippy::too_many_arguments)]
    pub async fn send(
        &self,
        users: &Users,
        server_name: &ServerName,
        sender: &UserId,
        sender_device: &str,
        txn_id: &str,
        event_type: &str,
        messages: &Messages,
    ) -> ApiResult<bool> {
        let txn_key = key(&[
            sender.as_bytes(),
            sender_device.as_bytes(),
            txn_id.as_bytes(),
        ]);
        if self.txns.get(&self.db, &txn_key)?.is_some() {
            return Ok(false);
        }
        for content in messages.values().flat_map(BTreeMap::values) {
            limits::check_size(
                "A to-device message",
                content,
                limits::MAX_TO_DEVICE_CONTENT_BYTES,
            )?;
        }
        let mut deliveries: Vec<(OwnedUserId, OwnedDeviceId, Value)> = Vec::new();
        for (user, targets) in messages {
            if user.server_name() != server_name {
                tracing::debug!(recipient = %user, "to-device message for a remote user skipped");
                continue;
            }
            let devices: Vec<OwnedDeviceId> =
                users.devices(user)?.into_iter().map(|(d, _)| d).collect();
            for (target, content) in targets {
                match target {
                    Recipient::AllDevices => {
                        for d in &devices {
                            deliveries.push((user.clone(), d.clone(), content.clone()));
                        }
                    }
                    Recipient::Device(d) if devices.contains(d) => {
                        deliveries.push((user.clone(), d.clone(), content.clone()));
                    }
                    Recipient::Device(d) => {
                        tracing::debug!(recipient = %user, device = %d, "to-device message for an unknown device dropped");
                    }
                }
            }
        }
        let (stored, _) = self
            .stream
            .commit(|positions, batch| {
                if self.txns.get(&self.db, &txn_key)?.is_some() {
                    return Ok(false);
                }
                let mut last = self.stream.current();
                let mut queued: BTreeMap<(&UserId, &str), usize> = BTreeMap::new();
                for (user, device, content) in &deliveries {
                    // A full inbox takes nothing more until its device syncs (as for an
                    // unknown device, the message is dropped for that device only).
                    let n = match queued.entry((user, device.as_str())) {
                        std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                        std::collections::btree_map::Entry::Vacant(e) => {
                            e.insert(self.queued_up_to_cap(user, device.as_str())?)
                        }
                    };
                    if *n >= limits::MAX_TO_DEVICE_QUEUE {
                        tracing::warn!(recipient = %user, device = %device, "to-device inbox full; message dropped");
                        continue;
                    }
                    *n += 1;
                    last = positions.next();
                    let mut k = inbox_prefix(user, device.as_str());
                    k.extend_from_slice(&u64_be(last));
                    let msg = StoredMessage {
                        kind: event_type.to_owned(),
                        sender: sender.to_owned(),
                        content: content.clone(),
                    };
                    self.inbox.put(batch, &k, &msg)?;
                }
                self.txns.put(batch, &txn_key, &last)?;
                Ok(true)
            })
            .await?;
        Ok(stored)
    }

    /// The to-device messages for `/sync` of a device, as `{"type","sender","content"}`
    /// objects in stream order.
    ///
    /// First deletes the messages that an earlier response delivered, if `since` shows the
    /// client received that response (it is at or past that response's `to`); then returns up
    /// to `limit` of the oldest pending messages at positions `<= to`, which are normally those
    /// in `(since, to]` (older ones appear only when an earlier response was cut off by
    /// `limit`, or was lost and the client retries with the same `since`).
    ///
    /// `to` must be the position the response's `next_batch` token stands for (or lower), and
    /// a response must carry what one call returned.
    pub fn take_for_sync(
        &self,
        user_id: &UserId,
        device_id: &str,
        since: u64,
        to: u64,
        limit: usize,
    ) -> ApiResult<Vec<Value>> {
        let dkey = device_key(user_id, device_id);
        let prefix = inbox_prefix(user_id, device_id);
        let mut batch = Batch::new();
        let mut acknowledged = None;
        if let Some(last) = self.delivered.get(&self.db, &dkey)? {
            if since >= last.token {
                for (k, _) in self.inbox.raw().scan_prefix(&self.db, &prefix)? {
                    match u64_from_be(&k) {
                        Some(pos) if pos <= last.upto => self.inbox.delete(&mut batch, &k),
                        _ => break,
                    }
                }
                self.delivered.delete(&mut batch, &dkey);
                acknowledged = Some(last.upto);
            }
        }
        // Entries deleted above stay readable until the batch is applied: start after them.
        let start = acknowledged.map_or(0, |p| p.saturating_add(1));
        let mut out = Vec::new();
        let mut upto = None;
        let mut bytes = 0;
        if limit > 0 {
            for (k, msg) in self
                .inbox
                .range(&self.db, &prefix, &u64_be(start), false, limit)?
            {
                let Some(pos) = u64_from_be(&k) else { continue };
                if pos > to {
                    break;
                }
                let event =
                    json!({ "type": msg.kind, "sender": msg.sender, "content": msg.content });
                // One response carries a bounded amount; the rest waits for the next sync.
                bytes += limits::json_size(&event);
                if bytes > limits::MAX_TO_DEVICE_SYNC_BYTES && !out.is_empty() {
                    break;
                }
                upto = Some(pos);
                out.push(event);
            }
        }
        if let Some(upto) = upto {
            self.delivered
                .put(&mut batch, &dkey, &Delivered { token: to, upto })?;
        }
        if !batch.is_empty() {
            // Not flushed: losing this write only means delivering the messages again.
            self.db.apply(batch)?;
        }
        Ok(out)
    }

    /// Whether [`ToDevice::take_for_sync`] with this `since` would return something now:
    /// messages not yet acknowledged by `since`, including ones at positions `<= since` that a
    /// lost or limit-cut response left behind. A long-polling `/sync` whose stream position has
    /// not moved past `since` should still answer at once when this is true, or those messages
    /// wait for the poll's timeout.
    pub fn has_undelivered(
        &self,
        user_id: &UserId,
        device_id: &str,
        since: u64,
    ) -> ApiResult<bool> {
        let acknowledged = self
            .delivered
            .get(&self.db, &device_key(user_id, device_id))?
            .filter(|last| since >= last.token)
            .map(|last| last.upto);
        let start = acknowledged.map_or(0, |p| p.saturating_add(1));
        let prefix = inbox_prefix(user_id, device_id);
        Ok(!self
            .inbox
            .raw()
            .range(&self.db, &prefix, &u64_be(start), false, 1)?
            .is_empty())
    }

    /// Takes up to `limit` of the oldest messages waiting for a device, for an application
    /// service that receives its users' to-device messages in transactions (MSC4203): each
    /// comes with `to_user_id` and `to_device_id`, and its deletion (with the device's
    /// delivery record) is queued into `batch`, written with the transaction that carries it.
    pub fn drain_into(
        &self,
        batch: &mut Batch,
        user_id: &UserId,
        device_id: &str,
        limit: usize,
    ) -> ApiResult<Vec<Value>> {
        let prefix = inbox_prefix(user_id, device_id);
        let mut out = Vec::new();
        for (k, msg) in self.inbox.range(&self.db, &prefix, &[], false, limit)? {
            out.push(json!({
                "type": msg.kind, "sender": msg.sender, "content": msg.content,
                "to_user_id": user_id, "to_device_id": device_id,
            }));
            self.inbox.delete(batch, &k);
        }
        if !out.is_empty() {
            self.delivered
                .delete(batch, &device_key(user_id, device_id));
        }
        Ok(out)
    }

    /// Messages waiting for a device, counted up to [`limits::MAX_TO_DEVICE_QUEUE`].
    fn queued_up_to_cap(&self, user_id: &UserId, device_id: &str) -> ApiResult<usize> {
        Ok(self
            .inbox
            .raw()
            .range(
                &self.db,
                &inbox_prefix(user_id, device_id),
                &[],
                false,
                limits::MAX_TO_DEVICE_QUEUE,
            )?
            .len())
    }

    /// Number of messages waiting for a device (delivered but unacknowledged ones included).
    pub fn pending_count(&self, user_id: &UserId, device_id: &str) -> ApiResult<usize> {
        Ok(self
            .inbox
            .raw()
            .scan_prefix(&self.db, &inbox_prefix(user_id, device_id))?
            .len())
    }

    /// Deletes a device's inbox, delivery record and sent transaction ids.
    pub async fn delete_device(&self, user_id: &UserId, device_id: &str) -> ApiResult<()> {
        let dkey = device_key(user_id, device_id);
        let prefix = inbox_prefix(user_id, device_id);
        let mut batch = Batch::new();
        for (k, _) in self.inbox.raw().scan_prefix(&self.db, &prefix)? {
            self.inbox.delete(&mut batch, &k);
        }
        for (k, _) in self.txns.raw().scan_prefix(&self.db, &prefix)? {
            self.txns.delete(&mut batch, &k);
        }
        self.delivered.delete(&mut batch, &dkey);
        self.db.apply(batch)?;
        self.db.flush().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use ruma::{server_name, user_id};

    use super::*;

    struct Fixture {
        td: ToDevice,
        users: Users,
        stream: Arc<Stream>,
    }

    async fn fixture() -> Fixture {
        let db = Db::memory().expect("db");
        let stream = Arc::new(Stream::open(db.clone()).expect("stream"));
        let users = Users::new(db.clone());
        for d in ["B1", "B2"] {
            users
                .create_device(user_id!("@b:x"), Some(d.into()), None, None)
                .await
                .expect("device");
        }
        Fixture {
            td: ToDevice::new(db, stream.clone()),
            users,
            stream,
        }
    }

    fn to(device: Recipient, n: u64) -> Messages {
        BTreeMap::from([(
            user_id!("@b:x").to_owned(),
            BTreeMap::from([(device, json!({ "n": n }))]),
        )])
    }

    async fn send(f: &Fixture, txn: &str, m: &Messages) -> bool {
        f.td.send(
            &f.users,
            server_name!("x"),
            user_id!("@a:x"),
            "A1",
            txn,
            "m.test",
            m,
        )
        .await
        .expect("send")
    }

    #[tokio::test]
    async fn idempotent_per_txn_and_fan_out_to_all_devices() {
        let f = fixture().await;
        let b = user_id!("@b:x");
        assert!(send(&f, "t1", &to(Recipient::AllDevices, 1)).await);
        assert!(!send(&f, "t1", &to(Recipient::AllDevices, 1)).await);
        assert_eq!(f.td.pending_count(b, "B1").expect("n"), 1);
        assert_eq!(f.td.pending_count(b, "B2").expect("n"), 1);
        assert!(send(&f, "t2", &to(Recipient::Device("B2".into()), 2)).await);
        assert!(send(&f, "t3", &to(Recipient::Device("NOPE".into()), 3)).await);
        assert_eq!(f.td.pending_count(b, "B1").expect("n"), 1);
        assert_eq!(f.td.pending_count(b, "B2").expect("n"), 2);
        let msgs =
            f.td.take_for_sync(b, "B2", 0, f.stream.current(), 10)
                .expect("take");
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0]["type"], "m.test");
        assert_eq!(msgs[0]["sender"], "@a:x");
        assert_eq!(msgs[0]["content"]["n"], 1);
        assert_eq!(msgs[1]["content"]["n"], 2);
    }

    #[tokio::test]
    async fn deleted_after_acknowledgement_and_redelivered_on_retry() {
        let f = fixture().await;
        let b = user_id!("@b:x");
        send(&f, "t1", &to(Recipient::Device("B1".into()), 1)).await;
        let t1 = f.stream.current();
        let first = f.td.take_for_sync(b, "B1", 0, t1, 10).expect("take");
        assert_eq!(first.len(), 1);
        // The response was lost: the client retries with the same since, and must not wait.
        assert!(f.td.has_undelivered(b, "B1", 0).expect("h"));
        let again = f.td.take_for_sync(b, "B1", 0, t1, 10).expect("take");
        assert_eq!(again, first);
        send(&f, "t2", &to(Recipient::Device("B1".into()), 2)).await;
        let t2 = f.stream.current();
        // Next sync with since = t1 acknowledges message 1 and gets message 2.
        let next = f.td.take_for_sync(b, "B1", t1, t2, 10).expect("take");
        assert_eq!(next.len(), 1);
        assert_eq!(next[0]["content"]["n"], 2);
        assert_eq!(f.td.pending_count(b, "B1").expect("n"), 1);
        let none = f.td.take_for_sync(b, "B1", t2, t2, 10).expect("take");
        assert!(none.is_empty());
        assert_eq!(f.td.pending_count(b, "B1").expect("n"), 0);
    }

    #[tokio::test]
    async fn limit_keeps_the_rest_for_the_next_sync() {
        let f = fixture().await;
        let b = user_id!("@b:x");
        for n in 0..5 {
            send(&f, &format!("t{n}"), &to(Recipient::Device("B1".into()), n)).await;
        }
        let t = f.stream.current();
        let mut got = Vec::new();
        let mut since = 0;
        for _ in 0..4 {
            // Until all are delivered, a sync at `since == t` must not wait.
            assert_eq!(
                f.td.has_undelivered(b, "B1", since).expect("h"),
                got.len() < 5
            );
            let batch = f.td.take_for_sync(b, "B1", since, t, 2).expect("take");
            got.extend(
                batch
                    .into_iter()
                    .map(|m| m["content"]["n"].as_u64().expect("n")),
            );
            since = t;
        }
        assert_eq!(got, vec![0, 1, 2, 3, 4]);
        assert!(!f.td.has_undelivered(b, "B1", t).expect("h"));
        assert_eq!(f.td.pending_count(b, "B1").expect("n"), 0);
        // Messages after `to` wait for a later response.
        send(&f, "late", &to(Recipient::Device("B1".into()), 9)).await;
        assert!(f
            .td
            .take_for_sync(b, "B1", t, t, 10)
            .expect("take")
            .is_empty());
    }

    #[tokio::test]
    async fn remote_users_skipped_and_device_deletion_clears_inbox() {
        let f = fixture().await;
        let b = user_id!("@b:x");
        let remote: Messages = BTreeMap::from([(
            user_id!("@c:elsewhere").to_owned(),
            BTreeMap::from([(Recipient::AllDevices, json!({}))]),
        )]);
        assert!(send(&f, "r", &remote).await);
        send(&f, "t1", &to(Recipient::AllDevices, 1)).await;
        f.td.delete_device(b, "B1").await.expect("delete");
        assert_eq!(f.td.pending_count(b, "B1").expect("n"), 0);
        assert_eq!(f.td.pending_count(b, "B2").expect("n"), 1);
    }
}
