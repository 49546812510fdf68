//! Room deletions in the background (Synapse's v2 room deletion API): each gets a
//! `delete_id`, runs as a tokio task, and its status is kept in storage (`room_deletions`),
//! so it can still be read after a restart. A deletion that was scheduled or running when the
//! process stopped is not resumed: its status reads `failed` ("interrupted by a restart"),
//! and the admin can send the request again.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use ruma::{OwnedRoomId, OwnedUserId, RoomId};
use serde::{Deserialize, Serialize};
use storage::{Batch, Table};

use super::shutdown::{check, delete_room, DeleteRoom, ShutdownRoom};
use crate::{
    error::{ApiError, ApiResult},
    service::Gateway,
};

/// Where a deletion stands.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Accepted, not started.
    Scheduled,
    /// Running.
    Active,
    /// Done.
    Complete,
    /// Stopped with an error.
    Failed,
}

/// One deletion as `…/delete_status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeleteStatus {
    /// Its id.
    pub delete_id: String,
    /// The room being deleted.
    pub room_id: OwnedRoomId,
    /// Where it stands.
    pub status: Phase,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What the shutdown did so far.
    pub shutdown_room: ShutdownRoom,
}

fn table() -> Table<DeleteStatus> {
    Table::new("room_deletions")
}

/// Deletions running in this process: delete id → room (memory only; see the module docs).
#[derive(Debug, Default)]
pub struct Running {
    jobs: Mutex<HashMap<String, OwnedRoomId>>,
}

impl Running {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, OwnedRoomId>> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn save(gw: &Gateway, status: &DeleteStatus) -> ApiResult<()> {
    let mut b = Batch::new();
    table().put(&mut b, status.delete_id.as_bytes(), status)?;
    gw.db.apply(b)?;
    gw.db.flush().await?;
    Ok(())
}

/// Checks the request (as [`check`] does: 404 for an unknown room unless it is to be
/// blocked), refuses a second deletion of a room while one runs (400), records it as
/// `scheduled` and starts it in the background. Returns its delete id.
pub async fn schedule(
    gw: Arc<Gateway>,
    admin: OwnedUserId,
    room: OwnedRoomId,
    req: DeleteRoom,
) -> ApiResult<String> {
    check(&gw, &room, &req)?;
    let delete_id = crate::service::users::random_string(16);
    {
        let mut jobs = gw.deletions.lock();
        if jobs.values().any(|r| *r == room) {
            return Err(ApiError::bad_request(format!(
                "A deletion of {room} is already in progress"
            )));
        }
        jobs.insert(delete_id.clone(), room.clone());
    }
    let mut status = DeleteStatus {
        delete_id: delete_id.clone(),
        room_id: room.clone(),
        status: Phase::Scheduled,
        error: None,
        shutdown_room: ShutdownRoom::default(),
    };
    if let Err(e) = save(&gw, &status).await {
        gw.deletions.lock().remove(&delete_id);
        return Err(e);
    }
    tokio::spawn(async move {
        status.status = Phase::Active;
        if let Err(e) = save(&gw, &status).await {
            tracing::warn!(room = %room, "deletion status not saved: {}", e.message);
        }
        let mut result = ShutdownRoom::default();
        let outcome = delete_room(&gw, &admin, &room, &req, &mut result).await;
        status.shutdown_room = result;
        match outcome {
            Ok(()) => status.status = Phase::Complete,
            Err(e) => {
                tracing::warn!(room = %room, "room deletion failed: {}", e.message);
                status.status = Phase::Failed;
                status.error = Some(e.message);
            }
        }
        if let Err(e) = save(&gw, &status).await {
            tracing::warn!(room = %room, "deletion status not saved: {}", e.message);
        }
        gw.deletions.lock().remove(&status.delete_id);
    });
    Ok(delete_id)
}

/// A stored status as it reads now: unfinished but not running here means interrupted.
fn current(gw: &Gateway, mut status: DeleteStatus) -> DeleteStatus {
    let unfinished = matches!(status.status, Phase::Scheduled | Phase::Active);
    if unfinished && !gw.deletions.lock().contains_key(&status.delete_id) {
        status.status = Phase::Failed;
        status.error = Some("interrupted by a restart".into());
    }
    status
}

/// One deletion by id; 404 `M_NOT_FOUND` for an unknown id.
pub fn by_id(gw: &Gateway, delete_id: &str) -> ApiResult<DeleteStatus> {
    let status = table()
        .get(&gw.db, delete_id.as_bytes())?
        .ok_or_else(|| ApiError::not_found("No deletion with this id"))?;
    Ok(current(gw, status))
}

/// Every deletion of a room, in id order; 404 `M_NOT_FOUND` if there was none.
pub fn by_room(gw: &Gateway, room: &RoomId) -> ApiResult<Vec<DeleteStatus>> {
    let found: Vec<DeleteStatus> = table()
        .scan_prefix(&gw.db, b"")?
        .into_iter()
        .map(|(_, s)| s)
        .filter(|s| s.room_id == room)
        .map(|s| current(gw, s))
        .collect();
    if found.is_empty() {
        return Err(ApiError::not_found("No deletion of this room"));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unfinished_deletion_not_running_here_reads_as_interrupted() {
        let k = crate::testkit::kit();
        let room = ruma::RoomId::parse("!r:example.org").expect("room id");
        for (id, phase) in [("a", Phase::Active), ("b", Phase::Complete)] {
            save(
                &k.gw,
                &DeleteStatus {
                    delete_id: id.into(),
                    room_id: room.clone(),
                    status: phase,
                    error: None,
                    shutdown_room: ShutdownRoom::default(),
                },
            )
            .await
            .expect("save");
        }
        let a = by_id(&k.gw, "a").expect("a");
        assert_eq!(
            (a.status, a.error.as_deref()),
            (Phase::Failed, Some("interrupted by a restart"))
        );
        assert_eq!(by_id(&k.gw, "b").expect("b").status, Phase::Complete);
        // While it runs here, it reads as stored.
        k.gw.deletions.lock().insert("a".into(), room.clone());
        assert_eq!(by_id(&k.gw, "a").expect("a").status, Phase::Active);
        assert_eq!(by_room(&k.gw, &room).expect("room").len(), 2);
    }
}
