//! Media (content repository): uploaded files and their metadata.
//!
//! A file is stored in 1 MiB chunks under `(media id, chunk index)` in the `media_content`
//! table, with a [`MediaMeta`] record in `media_meta`, all in one atomic batch, flushed before
//! the upload is acknowledged. Media ids are 24 random alphanumerics from the OS RNG.
//!
//! Asynchronous uploads (`POST /_matrix/media/v1/create`, then `PUT …/upload/{server}/{id}`)
//! first reserve an id for the uploader in `media_pending`; a reservation expires after
//! [`PENDING_TTL_MS`] and a user may hold at most [`MAX_PENDING_PER_USER`] at a time.
//!
//! Media is not syncable, so it does not go through the stream.

use bytes::Bytes;
use ruma::{OwnedUserId, UserId};
use serde::{Deserialize, Serialize};
use storage::{key, u64_be, Batch, Db, RawTable, Table};

use super::{
    thumbnail::{Size, Thumbnail},
    users::{now_ms, random_string},
};
use crate::error::{ApiError, ApiResult};

/// Bytes per stored chunk.
pub const CHUNK_BYTES: usize = 1024 * 1024;
/// How long a reserved media id stays usable.
pub const PENDING_TTL_MS: u64 = 24 * 60 * 60 * 1000;
/// Reservations a user may hold at once.
pub const MAX_PENDING_PER_USER: usize = 50;
/// Length of generated media ids.
const ID_LEN: usize = 24;

/// What is known about a stored file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MediaMeta {
    /// MIME type given by the uploader.
    pub content_type: Option<String>,
    /// File name given by the uploader.
    pub filename: Option<String>,
    /// Who uploaded it.
    pub uploader: OwnedUserId,
    /// Size in bytes.
    pub size: u64,
    /// Upload time, ms since the epoch.
    pub created_ts: u64,
    /// Number of stored chunks.
    pub chunks: u64,
}

/// A reserved media id waiting for its upload.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    uploader: OwnedUserId,
    expires_ts: u64,
}

/// The state of a media id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaState {
    /// Never created (or its reservation expired).
    Missing,
    /// Reserved but not yet uploaded.
    Pending,
    /// Uploaded.
    Ready(MediaMeta),
}

/// A file to store.
#[derive(Debug, Clone)]
pub struct Upload {
    /// MIME type from the request's `Content-Type`.
    pub content_type: Option<String>,
    /// File name from the `filename` query parameter.
    pub filename: Option<String>,
    /// The bytes.
    pub data: Bytes,
}

/// The media store.
pub struct Media {
    db: Db,
    meta: Table<MediaMeta>,
    content: RawTable,
    pending: Table<Pending>,
    /// media id, size key → cached thumbnail (see [`Thumbnail::to_bytes`]).
    thumbs: RawTable,
    /// Bounds concurrent thumbnail decoding (CPU and memory).
    thumb_permits: tokio::sync::Semaphore,
}

/// Thumbnails decoded at the same time.
pub const CONCURRENT_THUMBNAILS: usize = 2;

/// Whether `id` could be a media id (alphanumerics, `-` and `_`), so that bad path input never
/// reaches storage keys.
pub fn id_is_valid(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 255
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Media {
    /// Opens the media tables.
    pub fn new(db: Db) -> Self {
        Self {
            db,
            meta: Table::new("media_meta"),
            content: RawTable::new("media_content"),
            pending: Table::new("media_pending"),
            thumbs: RawTable::new("media_thumbnails"),
            thumb_permits: tokio::sync::Semaphore::new(CONCURRENT_THUMBNAILS),
        }
    }

    /// Every stored file of `uploader`, newest first (walks the metadata table: admin API).
    pub fn uploaded_by(&self, uploader: &UserId) -> ApiResult<Vec<(String, MediaMeta)>> {
        let mut all: Vec<(String, MediaMeta)> = self
            .meta
            .scan_prefix(&self.db, b"")?
            .into_iter()
            .filter(|(_, m)| m.uploader == uploader)
            .filter_map(|(k, m)| Some((String::from_utf8(k).ok()?, m)))
            .collect();
        all.sort_by(|a, b| b.1.created_ts.cmp(&a.1.created_ts).then(a.0.cmp(&b.0)));
        Ok(all)
    }

    /// Deletes a stored file with its chunks and thumbnails; whether it existed.
    pub async fn delete(&self, id: &str) -> ApiResult<bool> {
        let Some(meta) = self.meta.get(&self.db, id.as_bytes())? else {
            return Ok(false);
        };
        let mut b = Batch::new();
        for i in 0..meta.chunks {
            self.content
                .delete(&mut b, &key(&[id.as_bytes(), &u64_be(i)]));
        }
        for (k, _) in self
            .thumbs
            .scan_prefix(&self.db, &key(&[id.as_bytes(), b""]))?
        {
            self.thumbs.delete(&mut b, &k);
        }
        self.meta.delete(&mut b, id.as_bytes());
        self.db.apply(b)?;
        self.db.flush().await?;
        Ok(true)
    }

    /// Stores a new file and returns its media id.
    pub async fn create(&self, uploader: &UserId, upload: Upload) -> ApiResult<String> {
        let id = random_string(ID_LEN);
        let mut batch = Batch::new();
        self.write(&mut batch, &id, uploader, upload)?;
        self.db.apply(batch)?;
        self.db.flush().await?;
        tracing::debug!(media_id = %id, uploader = %uploader, "media stored");
        Ok(id)
    }

    /// Reserves a media id for a later upload by `uploader`; returns it and its expiry (ms).
    pub async fn reserve(&self, uploader: &UserId) -> ApiResult<(String, u64)> {
        let now = now_ms();
        let mut b = Batch::new();
        let mut held = 0;
        for (id, p) in self.pending.scan_prefix(&self.db, b"")? {
            if p.expires_ts <= now {
                // Expired reservations are dropped here; nobody can use them any more.
                self.pending.delete(&mut b, &id);
            } else if p.uploader == uploader {
                held += 1;
            }
        }
        if held >= MAX_PENDING_PER_USER {
            return Err(ApiError::limit_exceeded(60_000));
        }
        let id = random_string(ID_LEN);
        let expires_ts = now + PENDING_TTL_MS;
        self.pending.put(
            &mut b,
            id.as_bytes(),
            &Pending {
                uploader: uploader.to_owned(),
                expires_ts,
            },
        )?;
        self.db.apply(b)?;
        self.db.flush().await?;
        Ok((id, expires_ts))
    }

    /// Uploads the content of a reserved id. Fails with 403 if `uploader` did not reserve it,
    /// 409 `M_CANNOT_OVERWRITE_MEDIA` if it already has content, 404 if it is unknown.
    pub async fn upload_reserved(
        &self,
        uploader: &UserId,
        id: &str,
        upload: Upload,
    ) -> ApiResult<()> {
        match self.state(id)? {
            MediaState::Missing => return Err(ApiError::not_found("Unknown media id")),
            MediaState::Ready(_) => {
                return Err(ApiError::new(
                    http::StatusCode::CONFLICT,
                    "M_CANNOT_OVERWRITE_MEDIA",
                    "Media already uploaded",
                ))
            }
            MediaState::Pending => {}
        }
        let pending = self
            .pending
            .get(&self.db, id.as_bytes())?
            .ok_or_else(|| ApiError::not_found("Unknown media id"))?;
        if pending.uploader != uploader {
            return Err(ApiError::forbidden(
                "This media id was reserved by another user",
            ));
        }
        let mut batch = Batch::new();
        self.pending.delete(&mut batch, id.as_bytes());
        self.write(&mut batch, id, uploader, upload)?;
        self.db.apply(batch)?;
        self.db.flush().await?;
        Ok(())
    }

    fn write(
        &self,
        batch: &mut Batch,
        id: &str,
        uploader: &UserId,
        upload: Upload,
    ) -> ApiResult<()> {
        let chunks = upload.data.chunks(CHUNK_BYTES);
        let count = chunks.len() as u64;
        for (i, chunk) in chunks.enumerate() {
            self.content.put(
                batch,
                &key(&[id.as_bytes(), &u64_be(i as u64)]),
                chunk.to_vec(),
            );
        }
        let meta = MediaMeta {
            content_type: upload.content_type,
            filename: upload.filename,
            uploader: uploader.to_owned(),
            size: upload.data.len() as u64,
            created_ts: now_ms(),
            chunks: count,
        };
        self.meta.put(batch, id.as_bytes(), &meta)?;
        Ok(())
    }

    /// Whether a media id is unknown, reserved or uploaded.
    pub fn state(&self, id: &str) -> ApiResult<MediaState> {
        if !id_is_valid(id) {
            return Ok(MediaState::Missing);
        }
        if let Some(meta) = self.meta.get(&self.db, id.as_bytes())? {
            return Ok(MediaState::Ready(meta));
        }
        Ok(match self.pending.get(&self.db, id.as_bytes())? {
            Some(p) if p.expires_ts > now_ms() => MediaState::Pending,
            _ => MediaState::Missing,
        })
    }

    /// A cached thumbnail of `id` at `size`.
    pub fn cached_thumbnail(&self, id: &str, size: &Size) -> ApiResult<Option<Thumbnail>> {
        Ok(self
            .thumbs
            .get(&self.db, &key(&[id.as_bytes(), size.key().as_bytes()]))?
            .and_then(|b| Thumbnail::from_bytes(&b)))
    }

    /// Waits for a turn to make a thumbnail (at most [`CONCURRENT_THUMBNAILS`] at once).
    pub async fn thumbnail_permit(&self) -> ApiResult<tokio::sync::SemaphorePermit<'_>> {
        self.thumb_permits
            .acquire()
            .await
            .map_err(|_| ApiError::internal("thumbnailer closed"))
    }

    /// Caches a thumbnail (not flushed: it can always be made again).
    pub fn store_thumbnail(&self, id: &str, size: &Size, thumb: &Thumbnail) -> ApiResult<()> {
        let mut b = Batch::new();
        self.thumbs.put(
            &mut b,
            &key(&[id.as_bytes(), size.key().as_bytes()]),
            thumb.to_bytes(),
        );
        self.db.apply(b)?;
        Ok(())
    }

    /// The metadata and bytes of an uploaded file.
    pub fn get(&self, id: &str) -> ApiResult<Option<(MediaMeta, Vec<u8>)>> {
        let MediaState::Ready(meta) = self.state(id)? else {
            return Ok(None);
        };
        let mut data = Vec::with_capacity(usize::try_from(meta.size).unwrap_or(0));
        for i in 0..meta.chunks {
            let chunk = self
                .content
                .get(&self.db, &key(&[id.as_bytes(), &u64_be(i)]))?
                .ok_or_else(|| {
                    tracing::error!(media_id = %id, chunk = i, "media chunk missing");
                    ApiError::internal("Stored media is incomplete")
                })?;
            data.extend_from_slice(&chunk);
        }
        Ok(Some((meta, data)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruma::user_id;

    fn upload(data: Vec<u8>) -> Upload {
        Upload {
            content_type: Some("image/png".into()),
            filename: Some("a.png".into()),
            data: Bytes::from(data),
        }
    }

    #[tokio::test]
    async fn chunked_round_trip() {
        let media = Media::new(Db::memory().expect("db"));
        let alice = user_id!("@alice:example.org");
        let data: Vec<u8> = (0..(CHUNK_BYTES * 2 + 17))
            .map(|i| (i % 251) as u8)
            .collect();
        let id = media
            .create(alice, upload(data.clone()))
            .await
            .expect("create");
        assert!(id_is_valid(&id) && id.len() == ID_LEN);
        let (meta, got) = media.get(&id).expect("get").expect("present");
        assert_eq!(got, data);
        assert_eq!(meta.chunks, 3);
        assert_eq!(meta.size, data.len() as u64);
        assert_eq!(meta.uploader, alice);
        assert_eq!(media.get("unknown").expect("get"), None);
        assert_eq!(media.state("../etc").expect("state"), MediaState::Missing);
    }

    #[tokio::test]
    async fn empty_file_is_stored() {
        let media = Media::new(Db::memory().expect("db"));
        let id = media
            .create(user_id!("@a:example.org"), upload(Vec::new()))
            .await
            .expect("create");
        let (meta, got) = media.get(&id).expect("get").expect("present");
        assert!(got.is_empty());
        assert_eq!(meta.chunks, 0);
    }

    #[tokio::test]
    async fn reserved_upload_rules() {
        let media = Media::new(Db::memory().expect("db"));
        let alice = user_id!("@alice:example.org");
        let (id, _) = media.reserve(alice).await.expect("reserve");
        assert_eq!(media.state(&id).expect("state"), MediaState::Pending);
        let err = media
            .upload_reserved(user_id!("@bob:example.org"), &id, upload(vec![1]))
            .await
            .expect_err("not bob's");
        assert_eq!(err.errcode, "M_FORBIDDEN");
        for _ in 1..MAX_PENDING_PER_USER {
            media.reserve(alice).await.expect("reserve");
        }
        let err = media.reserve(alice).await.expect_err("too many");
        assert_eq!(err.errcode, "M_LIMIT_EXCEEDED");
        media
            .upload_reserved(alice, &id, upload(vec![1, 2]))
            .await
            .expect("upload");
        let err = media
            .upload_reserved(alice, &id, upload(vec![3]))
            .await
            .expect_err("twice");
        assert_eq!(err.errcode, "M_CANNOT_OVERWRITE_MEDIA");
        assert_eq!(media.get(&id).expect("get").expect("ready").1, vec![1, 2]);
        let err = media
            .upload_reserved(alice, "nope", upload(vec![3]))
            .await
            .expect_err("unknown");
        assert_eq!(err.errcode, "M_NOT_FOUND");
    }
}
