//! The bodies of poll frames (with acknowledgements of earlier answers) and poll answers.

/// Most acknowledgements carried by one poll.
pub const MAX_POLL_ACKS: usize = 256;

/// Encodes a poll body: count (u16 BE) ‖ item ids (u64 BE); at most [`MAX_POLL_ACKS`].
pub fn encode_poll(acks: &[u64]) -> Vec<u8> {
    let n = acks.len().min(MAX_POLL_ACKS);
    let mut v = Vec::with_capacity(2 + 8 * n);
    v.extend_from_slice(&(n as u16).to_be_bytes());
    for id in &acks[..n] {
        v.extend_from_slice(&id.to_be_bytes());
    }
    v
}

/// Decodes a poll body (malformed counts are clamped to what fits).
pub fn decode_poll(body: &[u8]) -> Vec<u64> {
    let Some(c) = body.get(..2) else {
        return vec![];
    };
    let n = usize::from(u16::from_be_bytes([c[0], c[1]])).min(MAX_POLL_ACKS);
    body[2..]
        .chunks_exact(8)
        .take(n)
        .map(|c| u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect()
}

/// Encodes a poll answer carrying a stored item.
pub fn encode_answer(id: u64, item: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(9 + item.len());
    v.push(1);
    v.extend_from_slice(&id.to_be_bytes());
    v.extend_from_slice(item);
    v
}

/// The dummy answer (padding up to the constant count).
pub fn dummy_answer() -> Vec<u8> {
    vec![0]
}

/// Decodes an answer: `Some((id, item bytes))` for a real one, `None` for a dummy.
pub fn decode_answer(body: &[u8]) -> Option<(u64, &[u8])> {
    if body.first() != Some(&1) || body.len() < 9 {
        return None;
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&body[1..9]);
    Some((u64::from_be_bytes(id), &body[9..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn poll_roundtrip_and_garbage(ids in proptest::collection::vec(any::<u64>(), 0..300), junk in proptest::collection::vec(any::<u8>(), 0..100)) {
            let d = decode_poll(&encode_poll(&ids));
            prop_assert_eq!(&d[..], &ids[..ids.len().min(MAX_POLL_ACKS)]);
            let _ = decode_poll(&junk);
            let _ = decode_answer(&junk);
        }
    }
}
