//! The bodies of poll frames (with acknowledgements and receipts of earlier answers) and poll
//! answers.

use crate::packet::PACKET_SIZE;

/// Most acknowledgements carried by one poll.
pub const MAX_POLL_ACKS: usize = 256;

/// Most receipts carried by one poll: what the body has left after the acknowledgements
/// (48 with the current packet size).
pub const MAX_POLL_RECEIPTS: usize = (PACKET_SIZE - 4 - 8 * MAX_POLL_ACKS) / 8;

/// What a poll tells the provider about the answers the gateway got so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollBody {
    /// Items the gateway is done with: the provider forgets them.
    pub acks: Vec<u64>,
    /// Items the gateway received but holds unacknowledged on purpose (fragments of a message
    /// not yet complete or not yet confirmed): the provider stops re-offering them on the
    /// short lease and keeps them under the long one, so that only answers that were really
    /// lost come back soon.
    pub receipts: Vec<u64>,
}

fn put_ids(v: &mut Vec<u8>, ids: &[u64]) {
    v.extend_from_slice(&(ids.len() as u16).to_be_bytes());
    for id in ids {
        v.extend_from_slice(&id.to_be_bytes());
    }
}

/// Reads `count (u16 BE) ‖ ids (u64 BE)` at `at`, at most `max` ids (a larger count is
/// clamped to `max` and to what the body holds); returns the ids and where the list ends.
fn get_ids(body: &[u8], at: usize, max: usize) -> (Vec<u64>, usize) {
    let Some(c) = body.get(at..at + 2) else {
        return (vec![], body.len());
    };
    let n = usize::from(u16::from_be_bytes([c[0], c[1]])).min(max);
    let ids: Vec<u64> = body[at + 2..]
        .chunks_exact(8)
        .take(n)
        .map(|c| u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect();
    let end = at + 2 + 8 * ids.len();
    (ids, end)
}

/// Encodes a poll body: `count (u16 BE) ‖ acknowledged item ids (u64 BE)` then `count ‖
/// received-and-held item ids`; at most [`MAX_POLL_ACKS`] and [`MAX_POLL_RECEIPTS`] (the
/// rest is cut: the caller keeps what did not fit for the next poll). A body that ends after
/// the acknowledgements (the zero padding of the frame reads as no receipts) is the format
/// before receipts existed.
pub fn encode_poll(acks: &[u64], receipts: &[u64]) -> Vec<u8> {
    let acks = &acks[..acks.len().min(MAX_POLL_ACKS)];
    let receipts = &receipts[..receipts.len().min(MAX_POLL_RECEIPTS)];
    let mut v = Vec::with_capacity(4 + 8 * (acks.len() + receipts.len()));
    put_ids(&mut v, acks);
    put_ids(&mut v, receipts);
    v
}

/// Decodes a poll body (malformed counts are clamped to what fits).
pub fn decode_poll(body: &[u8]) -> PollBody {
    let (acks, end) = get_ids(body, 0, MAX_POLL_ACKS);
    let (receipts, _) = get_ids(body, end, MAX_POLL_RECEIPTS);
    PollBody { acks, receipts }
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
        fn poll_roundtrip_and_garbage(
            acks in proptest::collection::vec(any::<u64>(), 0..300),
            receipts in proptest::collection::vec(any::<u64>(), 0..60),
            junk in proptest::collection::vec(any::<u8>(), 0..3000),
        ) {
            let body = encode_poll(&acks, &receipts);
            // It always fits a frame body, whatever was asked.
            prop_assert!(body.len() <= PACKET_SIZE);
            // What a frame carries: the body padded with zeros.
            let mut framed = body.clone();
            framed.resize(PACKET_SIZE, 0);
            let d = decode_poll(&framed);
            prop_assert_eq!(&d.acks[..], &acks[..acks.len().min(MAX_POLL_ACKS)]);
            prop_assert_eq!(&d.receipts[..], &receipts[..receipts.len().min(MAX_POLL_RECEIPTS)]);
            let _ = decode_poll(&junk);
            let _ = decode_answer(&junk);
        }
    }

    #[test]
    fn a_poll_without_receipts_reads_as_before() {
        // The format before receipts: the acknowledgements, then the frame's zero padding.
        let mut old = vec![0, 2];
        old.extend_from_slice(&7u64.to_be_bytes());
        old.extend_from_slice(&9u64.to_be_bytes());
        old.resize(PACKET_SIZE, 0);
        assert_eq!(
            decode_poll(&old),
            PollBody {
                acks: vec![7, 9],
                receipts: vec![]
            }
        );
        assert_eq!(MAX_POLL_RECEIPTS, 48);
    }

    #[test]
    fn poll_body_bytes() {
        // Committed vector: acks [1, 2], receipts [0x0102030405060708].
        let b = encode_poll(&[1, 2], &[0x0102_0304_0506_0708]);
        let want: [u8; 28] = [
            0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, // 2 acks
            0, 1, 1, 2, 3, 4, 5, 6, 7, 8, // 1 receipt
        ];
        assert_eq!(b[..], want[..]);
    }
}
