//! Ephemeral events in transactions (MSC2409, `receive_ephemeral`): typing notifications and
//! public read receipts of the rooms where one of the service's users is joined.
//!
//! A service whose registration sets `receive_ephemeral: true` (or MSC2409's
//! `de.sorunome.msc2409.push_ephemeral`) gets, after the events of each wake-up, one more
//! transaction with `"events": []` and the changes since its ephemeral cursor (a stream
//! position stored in the same batch as the transaction) under both `ephemeral` and
//! `de.sorunome.msc2409.ephemeral`, each event carrying its `room_id`. The rooms are found
//! from the service's registered users, so the cost of a wake-up grows with the number of
//! users on the gateway; it is only paid by services that asked. Rooms matched only by the
//! room namespace, presence, and private receipts are not sent.
//!
//! With `org.matrix.msc3202: true` as well, the same transaction carries the to-device
//! messages waiting for the devices of the service's users (MSC4203: `to_device` and
//! `de.sorunome.msc2409.to_device`, each with `to_user_id` and `to_device_id`); they leave
//! the device inboxes in the batch that stores the transaction, so they are delivered once,
//! to the service, and no longer through `/sync` of that device.

use std::collections::BTreeSet;

use ruma::OwnedRoomId;
use serde_json::{json, Value};
use storage::{Batch, Table};

use super::AppService;
use crate::{error::ApiResult, service::Gateway};

fn cursors() -> Table<u64> {
    Table::new("as_ephemeral_cursor")
}

/// The service's ephemeral cursor (`None` until its task first ran).
pub fn cursor(gw: &Gateway, service: &AppService) -> ApiResult<Option<u64>> {
    Ok(cursors().get(&gw.db, service.id().as_bytes())?)
}

/// Rooms where a user of the service is joined.
fn rooms(gw: &Gateway, service: &AppService) -> ApiResult<BTreeSet<OwnedRoomId>> {
    let mut rooms = BTreeSet::new();
    for (user, _) in gw.users.all()? {
        if service.owns_user(&user) {
            rooms.extend(gw.rooms.joined_rooms(&user)?);
        }
    }
    Ok(rooms)
}

/// Typing and receipt changes after `since` in the service's rooms, each with its `room_id`.
pub fn collect(gw: &Gateway, service: &AppService, since: u64) -> ApiResult<Vec<Value>> {
    let mut out = Vec::new();
    for room in rooms(gw, service)? {
        let typing = gw.ephemeral.typing_event(&room, since);
        // As the service's own user sees them: others' private receipts stay out.
        let receipts = gw.ephemeral.receipt_event(&room, since, &service.sender)?;
        for mut ev in typing.into_iter().chain(receipts) {
            ev["room_id"] = json!(room);
            out.push(ev);
        }
    }
    Ok(out)
}

/// Most to-device messages in one transaction.
const MAX_TO_DEVICE: usize = 100;

/// To-device messages waiting for the devices of the service's users (MSC4203), taken out
/// of their inboxes in `batch`.
fn drain_to_device(gw: &Gateway, service: &AppService, batch: &mut Batch) -> ApiResult<Vec<Value>> {
    let mut out = Vec::new();
    for (user, _) in gw.users.all()? {
        if !service.owns_user(&user) {
            continue;
        }
        for (device, _) in gw.users.devices(&user)? {
            let room = MAX_TO_DEVICE.saturating_sub(out.len());
            if room == 0 {
                return Ok(out);
            }
            out.extend(
                gw.to_device
                    .drain_into(batch, &user, device.as_str(), room)?,
            );
        }
    }
    Ok(out)
}

/// Queues a transaction with the ephemeral events since the service's cursor, if it asked
/// for them and there are any, and (with `org.matrix.msc3202`) the to-device messages of its
/// users' devices; the cursor moves and the messages leave the inboxes in the same batch.
pub async fn fan_out(gw: &Gateway, service: &AppService) -> ApiResult<()> {
    if !service.reg.raw.receive_ephemeral {
        return Ok(());
    }
    let now = gw.stream.current();
    let id = service.id().as_bytes();
    let mut batch = Batch::new();
    match cursors().get(&gw.db, id)? {
        // First run: start from now.
        None => {}
        Some(since) if since >= now => return Ok(()),
        Some(since) => {
            let edus = collect(gw, service, since)?;
            let to_device = if service.reg.raw.msc3202 {
                drain_to_device(gw, service, &mut batch)?
            } else {
                Vec::new()
            };
            if !edus.is_empty() || !to_device.is_empty() {
                let mut body = json!({ "events": [] });
                if !edus.is_empty() {
                    body["ephemeral"] = json!(edus);
                    body["de.sorunome.msc2409.ephemeral"] = json!(edus);
                }
                if !to_device.is_empty() {
                    body["to_device"] = json!(to_device);
                    body["de.sorunome.msc2409.to_device"] = json!(to_device);
                }
                super::txn::queue(gw, &mut batch, service, body)?;
            }
        }
    }
    cursors().put(&mut batch, id, &now)?;
    gw.db.apply(batch)?;
    gw.db.flush().await?;
    Ok(())
}
