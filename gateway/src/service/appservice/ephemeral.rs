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

/// Queues a transaction with the ephemeral events since the service's cursor, if it asked
/// for them and there are any; the cursor moves in the same batch.
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
            if !edus.is_empty() {
                super::txn::queue(
                    gw,
                    &mut batch,
                    service,
                    json!({
                        "events": [],
                        "ephemeral": edus,
                        "de.sorunome.msc2409.ephemeral": edus,
                    }),
                )?;
            }
        }
    }
    cursors().put(&mut batch, id, &now)?;
    gw.db.apply(batch)?;
    gw.db.flush().await?;
    Ok(())
}
