//! Messages ↔ fragments with XOR parity (one parity fragment per group of up to 8), and the
//! receiver's reassembly with duplicate suppression.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::packet::BODY_SIZE;

/// A message identifier (random, chosen by the sender).
pub type MsgId = [u8; 16];
/// Fragment header length.
pub const FRAG_HEADER: usize = 24;
/// Message bytes per fragment.
pub const CHUNK: usize = BODY_SIZE - FRAG_HEADER;
/// Data fragments per parity fragment.
pub const GROUP: usize = 8;
/// Largest message an application may send.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Most data fragments in a message.
pub const MAX_DATA: usize = MAX_MESSAGE.div_ceil(CHUNK);
/// Largest fragmented content: a message plus what travels with it (message id and
/// confirmation reply block) still fits in [`MAX_DATA`] fragments.
pub const MAX_CONTENT: usize = MAX_DATA * CHUNK;

/// What a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Plain data.
    Data = 0,
    /// A request carrying reply blocks.
    Request = 1,
    /// A response sent on reply blocks.
    Response = 2,
    /// Loop cover (discarded on arrival).
    Loop = 3,
    /// An end-to-end confirmation, sent on the reply block a data message carried.
    Confirm = 4,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            0 => Kind::Data,
            1 => Kind::Request,
            2 => Kind::Response,
            3 => Kind::Loop,
            4 => Kind::Confirm,
            _ => return None,
        })
    }
}

/// Why a fragment was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FragError {
    /// Bad header fields or length.
    #[error("malformed fragment")]
    Malformed,
    /// Message larger than [`MAX_MESSAGE`] (content larger than [`MAX_CONTENT`]).
    #[error("message too large")]
    TooLarge,
}

/// Number of parity fragments for `k` data fragments.
pub fn parity_count(k: usize) -> usize {
    k.div_ceil(GROUP)
}

/// Splits `msg` into data and parity fragments of `FRAG_HEADER + CHUNK` bytes each.
pub fn fragment(id: &MsgId, kind: Kind, msg: &[u8]) -> Result<Vec<Vec<u8>>, FragError> {
    if msg.len() > MAX_CONTENT {
        return Err(FragError::TooLarge);
    }
    let k = msg.len().div_ceil(CHUNK).max(1);
    let p = parity_count(k);
    let mut chunks: Vec<Vec<u8>> = (0..k)
        .map(|i| {
            let mut c = vec![0u8; CHUNK];
            let s = i * CHUNK;
            let e = (s + CHUNK).min(msg.len());
            if s < e {
                c[..e - s].copy_from_slice(&msg[s..e]);
            }
            c
        })
        .collect();
    for g in 0..p {
        let mut par = vec![0u8; CHUNK];
        for c in chunks.iter().take(((g + 1) * GROUP).min(k)).skip(g * GROUP) {
            par.iter_mut().zip(c).for_each(|(a, b)| *a ^= b);
        }
        chunks.push(par);
    }
    Ok(chunks
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let mut f = Vec::with_capacity(FRAG_HEADER + CHUNK);
            f.extend_from_slice(id);
            f.extend_from_slice(&[kind as u8, i as u8, k as u8, p as u8]);
            f.extend_from_slice(&(msg.len() as u32).to_be_bytes());
            f.extend_from_slice(&c);
            f
        })
        .collect())
}

/// A parsed fragment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragHeader {
    /// Message id.
    pub id: MsgId,
    /// Message kind.
    pub kind: Kind,
    /// Fragment index (data first, then parity).
    pub index: usize,
    /// Data fragments.
    pub k: usize,
    /// Parity fragments.
    pub p: usize,
    /// Message length.
    pub len: usize,
}

/// Parses and validates a fragment header.
pub fn parse_header(f: &[u8]) -> Result<FragHeader, FragError> {
    if f.len() < FRAG_HEADER + CHUNK {
        return Err(FragError::Malformed);
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&f[..16]);
    let kind = Kind::from_u8(f[16]).ok_or(FragError::Malformed)?;
    let (index, k, p) = (f[17] as usize, f[18] as usize, f[19] as usize);
    let len = u32::from_be_bytes([f[20], f[21], f[22], f[23]]) as usize;
    if k == 0 || k > MAX_DATA || p != parity_count(k) || index >= k + p || len > k * CHUNK {
        return Err(FragError::Malformed);
    }
    if len.div_ceil(CHUNK).max(1) != k {
        return Err(FragError::Malformed);
    }
    Ok(FragHeader {
        id,
        kind,
        index,
        k,
        p,
        len,
    })
}

struct Partial {
    h: FragHeader,
    chunks: Vec<Option<Vec<u8>>>,
    created: Instant,
}

impl Partial {
    fn try_complete(&mut self) -> Option<Vec<u8>> {
        let (k, p) = (self.h.k, self.h.p);
        for g in 0..p {
            let range = g * GROUP..((g + 1) * GROUP).min(k);
            let missing: Vec<usize> = range
                .clone()
                .filter(|i| self.chunks[*i].is_none())
                .collect();
            match missing.len() {
                0 => {}
                1 => {
                    let par = self.chunks[k + g].clone()?;
                    let mut c = par;
                    for i in range.filter(|i| *i != missing[0]) {
                        let other = self.chunks[i].as_ref()?;
                        c.iter_mut().zip(other).for_each(|(a, b)| *a ^= b);
                    }
                    self.chunks[missing[0]] = Some(c);
                }
                _ => return None,
            }
        }
        let mut out = Vec::with_capacity(k * CHUNK);
        for c in self.chunks.iter().take(k) {
            out.extend_from_slice(c.as_ref()?);
        }
        out.truncate(self.h.len);
        Some(out)
    }
}

/// Outcome of adding a fragment.
#[derive(Debug, PartialEq, Eq)]
pub enum Added {
    /// More fragments needed.
    Pending,
    /// The message is complete.
    Complete(FragHeader, Vec<u8>),
    /// The message was already delivered (duplicate suppressed).
    Duplicate,
}

/// Reassembles messages; remembers recently completed ids to suppress duplicates.
pub struct Reassembler {
    partial: HashMap<(MsgId, Kind), Partial>,
    done: HashSet<(MsgId, Kind)>,
    order: VecDeque<(MsgId, Kind)>,
    max_done: usize,
    max_partial: usize,
    max_age: Duration,
}

impl Default for Reassembler {
    fn default() -> Self {
        Reassembler {
            partial: HashMap::new(),
            done: HashSet::new(),
            order: VecDeque::new(),
            max_done: 100_000,
            max_partial: 1024,
            max_age: Duration::from_secs(600),
        }
    }
}

impl Reassembler {
    /// Adds one fragment.
    pub fn add(&mut self, f: &[u8]) -> Result<Added, FragError> {
        let h = parse_header(f)?;
        let key = (h.id, h.kind);
        if self.done.contains(&key) {
            return Ok(Added::Duplicate);
        }
        let max_age = self.max_age;
        self.partial.retain(|_, p| p.created.elapsed() < max_age);
        if !self.partial.contains_key(&key) && self.partial.len() >= self.max_partial {
            return Err(FragError::TooLarge);
        }
        let part = self.partial.entry(key).or_insert_with(|| Partial {
            h,
            chunks: vec![None; h.k + h.p],
            created: Instant::now(),
        });
        if part.h.k != h.k || part.h.len != h.len {
            return Err(FragError::Malformed);
        }
        if part.chunks[h.index].is_some() {
            return Ok(Added::Pending);
        }
        part.chunks[h.index] = Some(f[FRAG_HEADER..FRAG_HEADER + CHUNK].to_vec());
        match part.try_complete() {
            None => Ok(Added::Pending),
            Some(msg) => {
                self.partial.remove(&key);
                self.done.insert(key);
                self.order.push_back(key);
                while self.order.len() > self.max_done {
                    if let Some(old) = self.order.pop_front() {
                        self.done.remove(&old);
                    }
                }
                Ok(Added::Complete(h, msg))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn any_single_loss_per_group_is_repaired() {
        for len in [
            0usize,
            1,
            CHUNK,
            CHUNK + 1,
            20_000,
            MAX_MESSAGE,
            MAX_CONTENT,
        ] {
            let msg: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let frags = fragment(&[1; 16], Kind::Data, &msg).unwrap();
            for lost in 0..frags.len() {
                let mut r = Reassembler::default();
                let mut got = None;
                for (i, f) in frags.iter().enumerate() {
                    if i == lost {
                        continue;
                    }
                    if let Added::Complete(_, m) = r.add(f).unwrap() {
                        got = Some(m);
                    }
                }
                assert_eq!(got.as_deref(), Some(&msg[..]), "len {len} lost {lost}");
                assert_eq!(r.add(&frags[lost]).unwrap(), Added::Duplicate);
            }
        }
        assert_eq!(
            fragment(&[1; 16], Kind::Data, &vec![0; MAX_CONTENT + 1]),
            Err(FragError::TooLarge)
        );
    }

    proptest! {
        #[test]
        fn parser_never_panics(b in proptest::collection::vec(any::<u8>(), 0..FRAG_HEADER + CHUNK + 2)) {
            let mut r = Reassembler::default();
            let _ = r.add(&b);
        }
    }
}
