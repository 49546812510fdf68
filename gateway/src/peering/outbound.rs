//! The outbound sender: every event this gateway signs reaches every gateway of the room.
//!
//! The room store keeps an index of the accepted events this gateway signed, by stream
//! position, written in the same batch as the event (a transactional outbox). This loop reads it
//! after a durable cursor, groups events per destination gateway into `Txn` messages of at most
//! the transport's message size, and advances the cursor once the network has them durably.
//! An invite of a user whose gateway is not in the room goes as an `Invite` with the room's
//! stripped state. A send that fails (a peer not in the directory yet) is kept in a durable
//! retry table and tried again.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use ruma::{events::TimelineEventType, OwnedRoomId, OwnedServerName, ServerName, UserId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use storage::{key, u64_be, Batch, Table};

use super::{
    net::MAX_MESSAGE,
    wire::{Body, Edu, RawPdu},
    Peer,
};
use crate::{error::ApiResult, service::users::random_string};

/// Events read per round.
const BATCH_EVENTS: usize = 200;

/// Bytes of PDUs per `Txn` (the envelope and signature take the rest of a message).
const TXN_PAYLOAD: usize = MAX_MESSAGE - 2048;

/// How often failed sends are tried again.
const RETRY_EVERY: Duration = Duration::from_secs(5);

/// Tries before a failed send is given up (about a day at [`RETRY_EVERY`]).
const MAX_TRIES: u32 = 17_280;

fn cursor_table() -> Table<u64> {
    Table::new("peering_cursor")
}

fn retry_table() -> Table<Retry> {
    Table::new("peering_retry")
}

const CURSOR_KEY: &[u8] = b"outbound";

/// The stream position up to which this gateway's events have been sent (0: none yet).
pub fn sent_up_to(db: &storage::Db) -> ApiResult<u64> {
    Ok(cursor_table().get(db, CURSOR_KEY)?.unwrap_or(0))
}

/// A message the network did not take yet.
#[derive(Serialize, Deserialize)]
struct Retry {
    to: OwnedServerName,
    body: Body,
    tries: u32,
    /// The body is still to be encrypted under Olm when it goes.
    #[serde(default)]
    olm: bool,
}

/// Runs the sender until the gateway's stream closes.
pub async fn run(peer: Arc<Peer>) {
    let mut changes = peer.gw.stream.subscribe();
    loop {
        match round(&peer).await {
            Ok(true) => continue,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!("peering outbound: {}", e.message);
                tokio::time::sleep(RETRY_EVERY).await;
            }
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
}

/// Consecutive events of a room that go to the same gateways.
type Run = (BTreeSet<OwnedServerName>, Vec<RawPdu>);

/// Sends what follows the cursor; `true` if there may be more. Each room's events go sealed
/// under this gateway's epoch for the room, in runs that share their destinations (so a kick
/// still reaches the kicked gateway under the epoch it holds, and what follows goes under a
/// new one); invites of users whose gateway is not in the room go under Olm.
async fn round(peer: &Peer) -> ApiResult<bool> {
    let db = &peer.gw.db;
    let cursor = cursor_table().get(db, CURSOR_KEY)?.unwrap_or(0);
    let events = peer.gw.rooms.outgoing_after(cursor, BATCH_EVENTS)?;
    let Some((last, _)) = events.last().cloned() else {
        return Ok(false);
    };
    // Per room, in order: runs of events with the same destinations.
    let mut runs: BTreeMap<OwnedRoomId, Vec<Run>> = BTreeMap::new();
    let mut invites = Vec::new();
    for (_, id) in &events {
        let Some((pdu, stored)) = peer.gw.rooms.get_pdu(id)? else {
            continue;
        };
        if !stored.status.is_accepted() {
            continue;
        }
        let invitee = invited_user(&pdu.kind, pdu.state_key.as_deref(), &pdu.content_value());
        let mut dests = BTreeSet::new();
        for dest in peer
            .gw
            .rooms
            .destinations(&pdu.room_id, &pdu.kind, pdu.state_key.as_deref())?
        {
            // The invitee's gateway is not in the room: it gets the invite with stripped state.
            let separate_invite = invitee.as_ref().is_some_and(|u| u.server_name() == dest)
                && !joined_server(peer, &pdu.room_id, &dest)?;
            if separate_invite {
                let invitee = invitee.clone().unwrap_or_else(|| pdu.sender.clone());
                let state = crate::service::sync::invited_room(&peer.gw, &invitee, &pdu.room_id)?;
                let mut invite_state: Vec<Value> = state["invite_state"]["events"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                invite_state.retain(|e| e["state_key"] != Value::String(invitee.to_string()));
                invite_state.push(pdu.to_stripped_state());
                if let Some(meta) = peer.gw.rooms.meta(&pdu.room_id)? {
                    invites.push((
                        dest.clone(),
                        Body::Invite {
                            room_version: meta.version,
                            event: stored.json.clone(),
                            invite_state,
                        },
                    ));
                }
                continue;
            }
            dests.insert(dest);
        }
        if dests.is_empty() {
            continue;
        }
        let room_runs = runs.entry(pdu.room_id.clone()).or_default();
        match room_runs.last_mut() {
            Some((d, pdus)) if *d == dests => pdus.push(stored.json.clone()),
            _ => room_runs.push((dests, vec![stored.json.clone()])),
        }
    }
    for (dest, body) in invites {
        deliver_olm(peer, &dest, body).await?;
    }
    for (room, room_runs) in runs {
        for (dests, pdus) in room_runs {
            for chunk in chunks(pdus) {
                super::seal::send_room(peer, &room, &dests, &dests, chunk, Vec::new()).await?;
            }
        }
    }
    let mut batch = Batch::new();
    cursor_table().put(&mut batch, CURSOR_KEY, &last)?;
    db.apply(batch)?;
    db.flush().await?;
    Ok(events.len() == BATCH_EVENTS)
}

/// The user a membership event invites, if it is an invite.
fn invited_user(
    kind: &TimelineEventType,
    state_key: Option<&str>,
    content: &Value,
) -> Option<ruma::OwnedUserId> {
    if *kind != TimelineEventType::RoomMember || content["membership"] != "invite" {
        return None;
    }
    UserId::parse(state_key?).ok()
}

/// Whether `server` has a joined member in the room.
fn joined_server(peer: &Peer, room: &ruma::RoomId, server: &ServerName) -> ApiResult<bool> {
    Ok(peer
        .gw
        .rooms
        .members(room)?
        .into_iter()
        .any(|(u, m)| u.server_name() == server && m.membership == "join"))
}

/// Splits PDUs into groups that fit one message each.
fn chunks(pdus: Vec<RawPdu>) -> Vec<Vec<RawPdu>> {
    let mut out: Vec<Vec<RawPdu>> = Vec::new();
    let mut size = 0;
    for pdu in pdus {
        let len = pdu.get().len() + 1;
        if out.is_empty() || size + len > TXN_PAYLOAD {
            out.push(Vec::new());
            size = 0;
        }
        size += len;
        if let Some(last) = out.last_mut() {
            last.push(pdu);
        }
    }
    out
}

/// Runs the EDU sender: queued typing, receipts and to-device messages, and device-list
/// updates of local users (read from the key change log after a durable cursor).
pub async fn run_edus(peer: Arc<Peer>) {
    let mut changes = peer.gw.stream.subscribe();
    loop {
        if let Err(e) = edu_round(&peer).await {
            tracing::warn!("peering EDUs: {}", e.message);
            tokio::time::sleep(RETRY_EVERY).await;
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
}

const DEVICE_LISTS_KEY: &[u8] = b"device_lists";

async fn edu_round(peer: &Peer) -> ApiResult<()> {
    let gw = &peer.gw;
    let mut per_dest: BTreeMap<OwnedServerName, Vec<Edu>> = BTreeMap::new();
    let queued = gw.edus.after(b"", 1000)?;
    for (_, item) in &queued {
        per_dest
            .entry(item.destination.clone())
            .or_default()
            .push(item.edu.clone());
    }
    let from = cursor_table().get(&gw.db, DEVICE_LISTS_KEY)?.unwrap_or(0);
    let to = gw.stream.current();
    for user in gw.keys.changed_users(from, to)? {
        if user.server_name() != gw.server_name() {
            continue;
        }
        let mut servers = std::collections::BTreeSet::new();
        for room in gw.rooms.joined_rooms(&user)? {
            servers.extend(gw.rooms.member_servers(&room)?);
        }
        for server in servers {
            per_dest
                .entry(server)
                .or_default()
                .push(Edu::DeviceListUpdate {
                    user_id: user.clone(),
                });
        }
    }
    // Destinations are served concurrently: a peer that is away (its one-time key claim waits
    // up to 12 s) does not hold up typing, receipts and to-device messages for the others.
    let rounds = per_dest
        .into_iter()
        .map(|(dest, edus)| send_edus_to(peer, dest, edus));
    let first_error = futures::future::join_all(rounds)
        .await
        .into_iter()
        .find_map(Result::err);
    if let Some(e) = first_error {
        return Err(e);
    }
    if let Some((last, _)) = queued.last() {
        gw.edus.remove_upto(last).await?;
    }
    if to > from {
        let mut batch = Batch::new();
        cursor_table().put(&mut batch, DEVICE_LISTS_KEY, &to)?;
        gw.db.apply(batch)?;
        gw.db.flush().await?;
    }
    Ok(())
}

/// Sends one destination's EDUs: typing and receipts sealed under their room's epoch, the
/// rest under Olm.
async fn send_edus_to(peer: &Peer, dest: OwnedServerName, edus: Vec<Edu>) -> ApiResult<()> {
    let gw = &peer.gw;
    let mut of_rooms: BTreeMap<OwnedRoomId, Vec<Edu>> = BTreeMap::new();
    let mut for_gateway = Vec::new();
    for edu in edus {
        match &edu {
            Edu::Typing { room_id, .. } | Edu::Receipt { room_id, .. } => {
                of_rooms.entry(room_id.clone()).or_default().push(edu)
            }
            _ => for_gateway.push(edu),
        }
    }
    for (room, edus) in of_rooms {
        let readers = gw.rooms.member_servers(&room)?;
        if !readers.contains(&dest) {
            peer.stats.dropped("edu_not_reader");
            continue;
        }
        let to = BTreeSet::from([dest.clone()]);
        for chunk in edu_chunks(edus) {
            super::seal::send_room(peer, &room, &readers, &to, Vec::new(), chunk).await?;
        }
    }
    for chunk in edu_chunks(for_gateway) {
        let body = Body::Txn {
            id: random_string(16),
            pdus: Vec::new(),
            edus: chunk,
        };
        deliver_olm(peer, &dest, body).await?;
    }
    Ok(())
}

/// Splits EDUs into groups that fit one message each.
fn edu_chunks(edus: Vec<Edu>) -> Vec<Vec<Edu>> {
    let mut out: Vec<Vec<Edu>> = Vec::new();
    let mut size = 0;
    for edu in edus {
        let len = serde_json::to_vec(&edu).map_or(0, |v| v.len()) + 1;
        if out.is_empty() || size + len > TXN_PAYLOAD {
            out.push(Vec::new());
            size = 0;
        }
        size += len;
        if let Some(last) = out.last_mut() {
            last.push(edu);
        }
    }
    out
}

/// Sends now, or keeps the message for [`retry`] if the network cannot take it yet.
pub async fn deliver(peer: &Peer, to: &ServerName, body: Body) -> ApiResult<()> {
    match peer.send(to, body.clone()).await {
        Ok(()) => Ok(()),
        Err(e) => {
            tracing::info!(peer = %to, "peering: send failed ({e}); will retry");
            defer(peer, to, body, false).await
        }
    }
}

/// Sends `body` to `to` under Olm now, or keeps it (in plaintext, in this gateway's store) to
/// be encrypted and sent by [`retry`] once a session can be made.
pub async fn deliver_olm(peer: &Peer, to: &ServerName, body: Body) -> ApiResult<()> {
    match super::olm_channel::try_send(peer, to, &body).await {
        Ok(()) => Ok(()),
        Err(e) => {
            tracing::info!(peer = %to, "peering: Olm send deferred ({e:?})");
            defer(peer, to, body, true).await
        }
    }
}

/// Keeps a message in the durable retry table (`olm`: to be encrypted when it goes).
async fn defer(peer: &Peer, to: &ServerName, body: Body, olm: bool) -> ApiResult<()> {
    peer.stats.dropped("send_deferred");
    let mut batch = Batch::new();
    let id = random_string(12);
    retry_table().put(
        &mut batch,
        &key(&[to.as_bytes(), &u64_be(now_ms()), id.as_bytes()]),
        &Retry {
            to: to.to_owned(),
            body,
            tries: 1,
            olm,
        },
    )?;
    peer.gw.db.apply(batch)?;
    peer.gw.db.flush().await?;
    Ok(())
}

fn now_ms() -> u64 {
    u64::from(ruma::MilliSecondsSinceUnixEpoch::now().get())
}

/// Tries deferred sends again, oldest first, until each goes through or runs out of tries.
pub async fn retry(peer: Arc<Peer>) {
    loop {
        tokio::time::sleep(RETRY_EVERY).await;
        let entries = match retry_table().scan_prefix(&peer.gw.db, b"") {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("peering retry table: {e}");
                continue;
            }
        };
        for (k, mut entry) in entries {
            let mut batch = Batch::new();
            let sent = if entry.olm {
                super::olm_channel::try_send(&peer, &entry.to, &entry.body)
                    .await
                    .map_err(|e| format!("{e:?}"))
            } else {
                peer.send(&entry.to, entry.body.clone())
                    .await
                    .map_err(|e| e.to_string())
            };
            match sent {
                Ok(()) => retry_table().delete(&mut batch, &k),
                Err(_) if entry.tries >= MAX_TRIES => {
                    tracing::warn!(peer = %entry.to, "peering: giving up a message");
                    peer.stats.dropped("send_failed");
                    retry_table().delete(&mut batch, &k);
                }
                Err(_) => {
                    entry.tries += 1;
                    if retry_table().put(&mut batch, &k, &entry).is_err() {
                        continue;
                    }
                }
            }
            if let Err(e) = peer.gw.db.apply(batch) {
                tracing::warn!("peering retry table: {e}");
            }
        }
    }
}
