//! The port through which room use cases reach other gateways (implemented by peering).
//!
//! `service/` never imports `peering/`: a gateway is assembled with an `Arc<dyn Remote>`, the
//! peering layer's handle when it runs on a network, [`NoRemote`] when it runs alone.

use std::collections::BTreeMap;

use ruma::{OwnedRoomId, OwnedServerName, OwnedUserId, RoomAliasId, RoomId, ServerName, UserId};
use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// What room and key use cases need from other gateways.
pub trait Remote: Send + Sync {
    /// Joins `user` (local) to a room this gateway is not in, through one of `via`.
    fn join<'a>(
        &'a self,
        room: &'a RoomId,
        via: Vec<OwnedServerName>,
        user: &'a UserId,
    ) -> BoxFuture<'a, ApiResult<()>>;

    /// Leaves (or rejects an invite to) a room this gateway is not in, through one of `via`.
    fn leave<'a>(
        &'a self,
        room: &'a RoomId,
        via: Vec<OwnedServerName>,
        user: &'a UserId,
    ) -> BoxFuture<'a, ApiResult<()>>;

    /// Resolves an alias of another gateway: the room and gateways to join through.
    fn resolve_alias<'a>(
        &'a self,
        alias: &'a RoomAliasId,
    ) -> BoxFuture<'a, ApiResult<(OwnedRoomId, Vec<OwnedServerName>)>>;

    /// Fetches history of `room` older than what this gateway holds from member gateways and
    /// stores it (`rooms::backfill`); returns how many events were added (0: nothing older,
    /// or no gateway answered within a bounded wait).
    fn backfill<'a>(&'a self, room: &'a RoomId) -> BoxFuture<'a, ApiResult<usize>>;

    /// A file uploaded on `server`: what that gateway announced about it, its uploader, and
    /// the bytes (fetched in chunks; the caller checks them against the announcement).
    fn media<'a>(
        &'a self,
        server: &'a ServerName,
        media_id: &'a str,
    ) -> BoxFuture<'a, ApiResult<RemoteFile>>;

    /// A remote user's profile (`displayname`, `avatar_url`).
    fn profile<'a>(&'a self, user: &'a UserId) -> BoxFuture<'a, ApiResult<Value>>;

    /// Whether every event this gateway signed at or before stream position `pos` has gone
    /// out to the other gateways of its room (peering's outbound cursor passed it).
    fn sent_past(&self, pos: u64) -> BoxFuture<'_, ApiResult<bool>>;

    /// Device and cross-signing keys of users of `server` (`/keys/query` for them):
    /// `{device_keys, master_keys, self_signing_keys}`.
    fn query_keys<'a>(
        &'a self,
        server: &'a ServerName,
        wanted: BTreeMap<OwnedUserId, Vec<String>>,
    ) -> BoxFuture<'a, ApiResult<Value>>;

    /// Claims one-time keys of users of `server`: user → device → `{key id: key}`.
    fn claim_keys<'a>(
        &'a self,
        server: &'a ServerName,
        wanted: BTreeMap<OwnedUserId, BTreeMap<String, String>>,
    ) -> BoxFuture<'a, ApiResult<Value>>;
}

/// A file of another gateway: what it announced, the uploader, the bytes.
pub type RemoteFile = (
    crate::service::remote_media::Announced,
    OwnedUserId,
    Vec<u8>,
);

/// A gateway on its own: every remote operation fails with a clear error.
pub struct NoRemote;

fn alone<T>() -> ApiResult<T> {
    Err(ApiError::not_found(
        "This gateway runs alone (no network): other gateways cannot be reached",
    ))
}

impl Remote for NoRemote {
    fn join<'a>(
        &'a self,
        _: &'a RoomId,
        _: Vec<OwnedServerName>,
        _: &'a UserId,
    ) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async { alone() })
    }

    fn leave<'a>(
        &'a self,
        _: &'a RoomId,
        _: Vec<OwnedServerName>,
        _: &'a UserId,
    ) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async { alone() })
    }

    fn resolve_alias<'a>(
        &'a self,
        _: &'a RoomAliasId,
    ) -> BoxFuture<'a, ApiResult<(OwnedRoomId, Vec<OwnedServerName>)>> {
        Box::pin(async { alone() })
    }

    fn backfill<'a>(&'a self, _: &'a RoomId) -> BoxFuture<'a, ApiResult<usize>> {
        // Alone, a gateway holds every room it is in from its start.
        Box::pin(async { Ok(0) })
    }

    fn media<'a>(&'a self, _: &'a ServerName, _: &'a str) -> BoxFuture<'a, ApiResult<RemoteFile>> {
        Box::pin(async { alone() })
    }

    fn profile<'a>(&'a self, _: &'a UserId) -> BoxFuture<'a, ApiResult<Value>> {
        Box::pin(async { alone() })
    }

    fn sent_past(&self, _: u64) -> BoxFuture<'_, ApiResult<bool>> {
        // Alone, nothing waits to go out.
        Box::pin(async { Ok(true) })
    }

    fn query_keys<'a>(
        &'a self,
        _: &'a ServerName,
        _: BTreeMap<OwnedUserId, Vec<String>>,
    ) -> BoxFuture<'a, ApiResult<Value>> {
        Box::pin(async { alone() })
    }

    fn claim_keys<'a>(
        &'a self,
        _: &'a ServerName,
        _: BTreeMap<OwnedUserId, BTreeMap<String, String>>,
    ) -> BoxFuture<'a, ApiResult<Value>> {
        Box::pin(async { alone() })
    }
}
