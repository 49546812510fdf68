//! Ephemeral data for other gateways (typing, read receipts, to-device messages): a durable
//! queue that peering's sender reads, like the index of signed events for PDUs.
//!
//! The services only say what happened and for whom; they know nothing of peering. Device-list
//! updates need no queue: peering reads the key change log itself.

use std::{collections::BTreeMap, sync::Arc};

use ruma::{OwnedEventId, OwnedRoomId, OwnedServerName, OwnedUserId, RoomId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use storage::{u64_be, Db, Table};

use super::{
    to_device::{Messages, Recipient},
    Gateway, Stream,
};
use crate::error::ApiResult;

/// Ephemeral data units, as they travel between gateways (part of the wire format).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "edu_type")]
pub enum Edu {
    /// A user started or stopped typing.
    #[serde(rename = "m.typing")]
    Typing {
        /// The room.
        room_id: OwnedRoomId,
        /// The user (of the origin).
        user_id: OwnedUserId,
        /// Whether they type.
        typing: bool,
    },
    /// A read receipt.
    #[serde(rename = "m.receipt")]
    Receipt {
        /// The room.
        room_id: OwnedRoomId,
        /// The user (of the origin).
        user_id: OwnedUserId,
        /// The event read.
        event_id: OwnedEventId,
        /// The thread, if the receipt is threaded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        thread_id: Option<String>,
        /// When (ms since the epoch).
        ts: u64,
    },
    /// To-device messages for users of the destination.
    #[serde(rename = "m.direct_to_device")]
    ToDevice {
        /// The sender (of the origin).
        sender: OwnedUserId,
        /// Event type.
        #[serde(rename = "type")]
        kind: String,
        /// Unique per sender: a repeat is dropped.
        message_id: String,
        /// User → device id (or `*`) → content.
        messages: BTreeMap<OwnedUserId, BTreeMap<String, Value>>,
    },
    /// A user's devices or cross-signing keys changed: ask again.
    #[serde(rename = "m.device_list_update")]
    DeviceListUpdate {
        /// The user (of the origin).
        user_id: OwnedUserId,
    },
}

/// One queued EDU.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueuedEdu {
    /// The gateway it is for.
    pub destination: OwnedServerName,
    /// What it says.
    pub edu: Edu,
}

/// The queue of EDUs for other gateways, keyed by stream position and a sequence number.
pub struct EduQueue {
    db: Db,
    stream: Arc<Stream>,
    table: Table<QueuedEdu>,
}

impl EduQueue {
    /// Opens the queue.
    pub fn new(db: Db, stream: Arc<Stream>) -> Self {
        Self {
            db,
            stream,
            table: Table::new("outgoing_edus"),
        }
    }

    /// Queues EDUs durably, in order.
    pub async fn push(&self, items: Vec<(OwnedServerName, Edu)>) -> ApiResult<()> {
        if items.is_empty() {
            return Ok(());
        }
        self.stream
            .commit(|positions, batch| {
                let pos = positions.next();
                for (seq, (destination, edu)) in items.into_iter().enumerate() {
                    let mut k = u64_be(pos).to_vec();
                    k.extend_from_slice(&(seq as u32).to_be_bytes());
                    self.table.put(batch, &k, &QueuedEdu { destination, edu })?;
                }
                Ok(())
            })
            .await?;
        Ok(())
    }

    /// Up to `limit` queued EDUs after the key `after` (empty: from the start), with their keys.
    pub fn after(&self, after: &[u8], limit: usize) -> ApiResult<Vec<(Vec<u8>, QueuedEdu)>> {
        let mut from = after.to_vec();
        if !from.is_empty() {
            from.push(0);
        }
        let raw = self.table.raw().range(&self.db, b"", &from, false, limit)?;
        let mut out = Vec::with_capacity(raw.len());
        for (k, v) in raw {
            match serde_json::from_slice::<QueuedEdu>(&v) {
                Ok(edu) => out.push((k, edu)),
                Err(e) => tracing::warn!("unreadable queued EDU skipped: {e}"),
            }
        }
        Ok(out)
    }

    /// Deletes EDUs up to and including the key `upto` (they were handed to the network).
    pub async fn remove_upto(&self, upto: &[u8]) -> ApiResult<()> {
        let mut batch = storage::Batch::new();
        for (k, _) in self
            .table
            .raw()
            .range(&self.db, b"", b"", false, usize::MAX)?
        {
            if k.as_slice() > upto {
                break;
            }
            self.table.delete(&mut batch, &k);
        }
        self.db.apply(batch)?;
        self.db.flush().await?;
        Ok(())
    }
}

/// Tells the other gateways of `room` that `user` types (or stopped).
pub async fn typing(gw: &Gateway, room: &RoomId, user: &UserId, typing: bool) -> ApiResult<()> {
    let servers = gw.rooms.member_servers(room)?;
    gw.edus
        .push(
            servers
                .into_iter()
                .map(|s| {
                    (
                        s,
                        Edu::Typing {
                            room_id: room.to_owned(),
                            user_id: user.to_owned(),
                            typing,
                        },
                    )
                })
                .collect(),
        )
        .await
}

/// Tells the other gateways of `room` that `user` read up to `event_id` (public receipts only).
pub async fn receipt(
    gw: &Gateway,
    room: &RoomId,
    user: &UserId,
    event_id: &ruma::EventId,
    thread_id: Option<String>,
) -> ApiResult<()> {
    let servers = gw.rooms.member_servers(room)?;
    let ts = super::users::now_ms();
    gw.edus
        .push(
            servers
                .into_iter()
                .map(|s| {
                    (
                        s,
                        Edu::Receipt {
                            room_id: room.to_owned(),
                            user_id: user.to_owned(),
                            event_id: event_id.to_owned(),
                            thread_id: thread_id.clone(),
                            ts,
                        },
                    )
                })
                .collect(),
        )
        .await
}

/// Queues the to-device messages of one `/sendToDevice` for users of other gateways. The
/// message id is derived from the sender's device and transaction id, so a retried request
/// is recognised by the receiving gateway.
pub async fn to_device(
    gw: &Gateway,
    sender: &UserId,
    sender_device: &str,
    txn_id: &str,
    kind: &str,
    messages: &Messages,
) -> ApiResult<()> {
    let mut per_server: BTreeMap<OwnedServerName, BTreeMap<OwnedUserId, BTreeMap<String, Value>>> =
        BTreeMap::new();
    for (user, targets) in messages {
        if user.server_name() == gw.server_name() {
            continue;
        }
        let entry = per_server
            .entry(user.server_name().to_owned())
            .or_default()
            .entry(user.clone())
            .or_default();
        for (recipient, content) in targets {
            let device = match recipient {
                Recipient::AllDevices => "*".to_owned(),
                Recipient::Device(d) => d.to_string(),
            };
            entry.insert(device, content.clone());
        }
    }
    let digest = {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        for part in [sender.as_str(), sender_device, txn_id] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        data_encoding::BASE32_NOPAD.encode(&h.finalize()[..15])
    };
    gw.edus
        .push(
            per_server
                .into_iter()
                .map(|(server, messages)| {
                    (
                        server,
                        Edu::ToDevice {
                            sender: sender.to_owned(),
                            kind: kind.to_owned(),
                            message_id: digest.clone(),
                            messages,
                        },
                    )
                })
                .collect(),
        )
        .await
}
