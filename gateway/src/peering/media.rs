//! Media of other gateways over the mixnet: `QueryMedia` (what the uploading gateway
//! announces: size, SHA-256, type, name) then `FetchMedia` per chunk, a few at a time.
//!
//! The uploading gateway answers only a gateway with a member in a room its uploader is in:
//! a file goes where it was shared, not to whoever learns its URI. The asker checks every
//! chunk's index and size, and the whole file against the announcement
//! (`service::remote_media`), before anything is cached or shown.

use base64::Engine;
use ruma::{OwnedUserId, ServerName};

use super::{wire::Body, Peer};
use crate::{
    error::{ApiError, ApiResult},
    service::{media::id_is_valid, remote_media::Announced, remote_media::MAX_REMOTE_FILE},
};

/// Raw bytes per chunk: base64 of it, in one envelope, stays inside one message.
pub const CHUNK: usize = 40 * 1024;

/// Chunks asked for at the same time.
const PARALLEL: usize = 2;

/// How long one chunk's answer is waited for, per attempt: a chunk is about 20 packets the
/// uploading gateway sends at its constant rate behind whatever else it sends, so this is
/// generous; an early retry would only make it send the chunk twice.
const CHUNK_WAITS: [std::time::Duration; 2] = [
    std::time::Duration::from_secs(45),
    std::time::Duration::from_secs(45),
];

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD_NO_PAD;

/// The file and its uploader, if `origin` may have it.
fn shared_file(
    peer: &Peer,
    origin: &ServerName,
    media_id: &str,
) -> ApiResult<(crate::service::media::MediaMeta, Vec<u8>)> {
    let unknown = || ApiError::not_found("Unknown media");
    if !id_is_valid(media_id) {
        return Err(unknown());
    }
    let (meta, data) = peer.gw.media.get(media_id)?.ok_or_else(unknown)?;
    for room in peer.gw.rooms.joined_rooms(&meta.uploader)? {
        if peer.gw.rooms.server_in_room(&room, origin)? {
            return Ok((meta, data));
        }
    }
    // The same answer as for a file that does not exist: the asker learns nothing.
    Err(unknown())
}

/// Answers `QueryMedia`.
pub fn answer_query(peer: &Peer, origin: &ServerName, media_id: &str) -> ApiResult<Body> {
    let (meta, data) = shared_file(peer, origin, media_id)?;
    Ok(Body::MediaInfo {
        announced: Announced::of(&meta, &data),
        uploader: meta.uploader,
        chunk_size: CHUNK as u32,
    })
}

/// Answers `FetchMedia`.
pub fn answer_fetch(
    peer: &Peer,
    origin: &ServerName,
    media_id: &str,
    index: u32,
) -> ApiResult<Body> {
    let (_, data) = shared_file(peer, origin, media_id)?;
    let start = (index as usize).saturating_mul(CHUNK);
    if start >= data.len() && !(index == 0 && data.is_empty()) {
        return Err(ApiError::not_found("No such chunk"));
    }
    let end = (start + CHUNK).min(data.len());
    Ok(Body::MediaChunk {
        index,
        data: B64.encode(&data[start..end]),
    })
}

/// Fetches file `media_id` of `server`: its announcement, uploader and bytes.
pub async fn fetch(
    peer: &Peer,
    server: &ServerName,
    media_id: &str,
) -> ApiResult<(Announced, OwnedUserId, Vec<u8>)> {
    let unreachable = |e: super::AskError| match e {
        super::AskError::Refused { error, .. } => ApiError::not_found(error),
        other => ApiError::not_found(format!("The media's gateway did not answer: {other}")),
    };
    if !id_is_valid(media_id) {
        return Err(ApiError::not_found("Unknown media"));
    }
    let info = peer
        .ask(
            server,
            Body::QueryMedia {
                media_id: media_id.to_owned(),
            },
        )
        .await
        .map_err(unreachable)?;
    let Body::MediaInfo {
        announced,
        uploader,
        chunk_size,
    } = info
    else {
        peer.stats.dropped("bad_answer");
        return Err(ApiError::not_found(
            "The media's gateway answered something else",
        ));
    };
    if announced.size > MAX_REMOTE_FILE {
        return Err(ApiError::new(
            http::StatusCode::PAYLOAD_TOO_LARGE,
            "M_TOO_LARGE",
            "The remote file is too large to fetch over the mixnet",
        ));
    }
    if chunk_size as usize != CHUNK || uploader.server_name() != server {
        peer.stats.dropped("bad_answer");
        return Err(ApiError::not_found(
            "The media's gateway announced nonsense",
        ));
    }
    let size = announced.size as usize;
    let count = size.div_ceil(CHUNK).max(1);
    let mut data = vec![0u8; size];
    let indexes: Vec<u32> = (0..count as u32).collect();
    for batch in indexes.chunks(PARALLEL) {
        let answers = futures::future::join_all(batch.iter().map(|&index| {
            peer.ask_within(
                server,
                Body::FetchMedia {
                    media_id: media_id.to_owned(),
                    index,
                },
                &CHUNK_WAITS,
            )
        }))
        .await;
        for (&index, answer) in batch.iter().zip(answers) {
            let Body::MediaChunk {
                index: got,
                data: b64,
            } = answer.map_err(unreachable)?
            else {
                peer.stats.dropped("bad_answer");
                return Err(ApiError::not_found(
                    "The media's gateway answered something else",
                ));
            };
            let start = index as usize * CHUNK;
            let want = (start + CHUNK).min(size) - start.min(size);
            let bytes = B64.decode(b64.as_bytes()).ok().filter(|b| b.len() == want);
            match (got == index, bytes) {
                (true, Some(bytes)) => data[start..start + want].copy_from_slice(&bytes),
                _ => {
                    peer.stats.dropped("media_chunk");
                    return Err(ApiError::not_found("A media chunk did not match"));
                }
            }
        }
    }
    Ok((announced, uploader, data))
}
