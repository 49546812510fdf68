//! Media uploaded on other gateways: fetched over the mixnet on first use (through the
//! `Remote` port), verified against what the uploading gateway announced (size and SHA-256),
//! and cached here with a size bound, oldest fetched evicted first.
//!
//! A gateway serves its media only to gateways with a member in a room the uploader is in
//! (`peering::media`), so a file travels only where it was shared.

use ruma::ServerName;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use storage::{key, Batch, RawTable, Table};

use super::{media::MediaMeta, users::now_ms, Gateway};
use crate::error::{ApiError, ApiResult};

/// Bytes of remote media kept at most; the oldest fetched files go first.
pub const CACHE_BYTES: u64 = 256 * 1024 * 1024;

/// Largest remote file fetched (at the mixnet's constant rate a larger one would take hours).
pub const MAX_REMOTE_FILE: u64 = 16 * 1024 * 1024;

/// What the uploading gateway announces about a file before sending it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Announced {
    /// MIME type given by the uploader.
    pub content_type: Option<String>,
    /// File name given by the uploader.
    pub filename: Option<String>,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the bytes, lowercase hex.
    pub sha256: String,
}

impl Announced {
    /// Whether `data` is what was announced.
    pub fn matches(&self, data: &[u8]) -> bool {
        data.len() as u64 == self.size
            && data_encoding::HEXLOWER.encode(&Sha256::digest(data)) == self.sha256
    }

    /// The announcement of a local file.
    pub fn of(meta: &MediaMeta, data: &[u8]) -> Self {
        Self {
            content_type: meta.content_type.clone(),
            filename: meta.filename.clone(),
            size: data.len() as u64,
            sha256: data_encoding::HEXLOWER.encode(&Sha256::digest(data)),
        }
    }
}

/// A cached remote file's record.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Cached {
    announced: Announced,
    uploader: ruma::OwnedUserId,
    fetched_ts: u64,
}

fn meta_table() -> Table<Cached> {
    Table::new("remote_media_meta")
}

fn content_table() -> RawTable {
    RawTable::new("remote_media_content")
}

fn cache_key(server: &ServerName, id: &str) -> Vec<u8> {
    key(&[server.as_bytes(), id.as_bytes()])
}

/// The key thumbnails of a remote file are cached under (never a local media id, which has
/// no `:`).
pub fn thumbnail_key(server: &ServerName, id: &str) -> String {
    format!("{server}:{id}")
}

/// A remote file, from the cache or fetched now.
pub async fn load(gw: &Gateway, server: &ServerName, id: &str) -> ApiResult<(MediaMeta, Vec<u8>)> {
    let k = cache_key(server, id);
    if let (Some(c), Some(data)) = (
        meta_table().get(&gw.db, &k)?,
        content_table().get(&gw.db, &k)?,
    ) {
        if c.announced.matches(&data) {
            return Ok((meta_of(&c, &data), data));
        }
    }
    let (announced, uploader, data) = gw.remote.media(server, id).await?;
    if !announced.matches(&data) {
        return Err(ApiError::not_found(
            "The remote media does not match what its gateway announced",
        ));
    }
    let cached = Cached {
        announced,
        uploader,
        fetched_ts: now_ms(),
    };
    evict_for(gw, data.len() as u64)?;
    let mut batch = Batch::new();
    meta_table().put(&mut batch, &k, &cached)?;
    content_table().put(&mut batch, &k, data.clone());
    gw.db.apply(batch)?;
    Ok((meta_of(&cached, &data), data))
}

fn meta_of(c: &Cached, data: &[u8]) -> MediaMeta {
    MediaMeta {
        content_type: c.announced.content_type.clone(),
        filename: c.announced.filename.clone(),
        uploader: c.uploader.clone(),
        size: data.len() as u64,
        created_ts: c.fetched_ts,
        chunks: 1,
    }
}

/// Evicts the oldest fetched files until `incoming` more bytes fit under [`CACHE_BYTES`].
fn evict_for(gw: &Gateway, incoming: u64) -> ApiResult<()> {
    let mut entries = meta_table().scan_prefix(&gw.db, b"")?;
    let mut total: u64 = entries.iter().map(|(_, c)| c.announced.size).sum();
    if total + incoming <= CACHE_BYTES {
        return Ok(());
    }
    entries.sort_by_key(|(_, c)| c.fetched_ts);
    let mut batch = Batch::new();
    for (k, c) in entries {
        if total + incoming <= CACHE_BYTES {
            break;
        }
        meta_table().delete(&mut batch, &k);
        content_table().delete(&mut batch, &k);
        total = total.saturating_sub(c.announced.size);
    }
    gw.db.apply(batch)?;
    Ok(())
}
