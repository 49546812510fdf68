//! Compression of peering messages (wire format v2): zstd with a dictionary trained on
//! peering traffic, versioned and committed (`peering/dict/peering-v1.zdict`).
//!
//! A dictionary holds what every message repeats (field names, event types, the envelope's
//! shape, common words), so even a message of one event compresses well. It is trained by
//! `cargo test -p gateway --lib train_peering_dictionary -- --ignored` from the traffic of a
//! scripted conversation between in-memory gateways (see `peering/tests/corpus.rs`); a new
//! dictionary is a new wire version, since both ends must hold the same one.
//!
//! Decompression is bounded ([`MAX_DECOMPRESSED`]) and happens only after the origin's
//! signature over the compressed bytes has verified.

/// The dictionary of wire format v2.
const DICTIONARY_V1: &[u8] = include_bytes!("dict/peering-v1.zdict");

/// zstd level: messages are small, so a high level costs little time.
const LEVEL: i32 = 12;

/// Most bytes a message may decompress to.
pub const MAX_DECOMPRESSED: usize = 4 * 1024 * 1024;

/// The dictionary prepared for compression once (a constant derived from the committed bytes:
/// preparing it costs about a millisecond, far more than compressing one message with it).
static ENCODER: std::sync::LazyLock<zstd::dict::EncoderDictionary<'static>> =
    std::sync::LazyLock::new(|| zstd::dict::EncoderDictionary::copy(DICTIONARY_V1, LEVEL));

/// The dictionary prepared for decompression once.
static DECODER: std::sync::LazyLock<zstd::dict::DecoderDictionary<'static>> =
    std::sync::LazyLock::new(|| zstd::dict::DecoderDictionary::copy(DICTIONARY_V1));

/// Compresses `bytes` with the dictionary.
pub fn compress(bytes: &[u8]) -> Vec<u8> {
    zstd::bulk::Compressor::with_prepared_dictionary(&ENCODER)
        .and_then(|mut c| c.compress(bytes))
        // zstd fails only on allocation failure or a bad dictionary (a build error the tests
        // catch); an empty message then fails to decode at the other end, never silently.
        .unwrap_or_default()
}

/// Decompresses what [`compress`] made, up to [`MAX_DECOMPRESSED`] bytes.
pub fn decompress(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut d =
        zstd::bulk::Decompressor::with_prepared_dictionary(&DECODER).map_err(|e| e.to_string())?;
    d.decompress(bytes, MAX_DECOMPRESSED)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bounded() {
        let text = br#"{"origin":"a","body":{"txn":{"pdus":[]}}}"#.repeat(20);
        let packed = compress(&text);
        assert!(!packed.is_empty() && packed.len() < text.len());
        assert_eq!(decompress(&packed).expect("decompresses"), text);
        assert!(decompress(b"not zstd").is_err());
        // A bomb: more than the bound once decompressed.
        let bomb = compress(&vec![0u8; MAX_DECOMPRESSED + 1]);
        assert!(decompress(&bomb).is_err());
    }
}
