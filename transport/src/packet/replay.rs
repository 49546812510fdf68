//! The per-epoch replay filter: a Bloom filter over 16-byte replay tags.
//!
//! Tags are outputs of the key schedule, so they are already uniform: the filter uses double
//! hashing on the tag's two 64-bit halves instead of hashing again.

use super::crypto::TAG_LEN;

/// A Bloom filter sized for an expected number of tags and false-positive rate.
#[derive(Debug, Clone)]
pub struct ReplayFilter {
    bits: Vec<u64>,
    nbits: u64,
    k: u32,
    inserted: u64,
}

impl ReplayFilter {
    /// A filter for `expected` tags at false-positive rate `fpr` (e.g. 1e-6).
    pub fn new(expected: u64, fpr: f64) -> Self {
        let expected = expected.max(1024) as f64;
        let fpr = fpr.clamp(1e-12, 0.5);
        let ln2 = std::f64::consts::LN_2;
        let nbits = (-(expected * fpr.ln()) / (ln2 * ln2)).ceil().max(64.0) as u64;
        let k = ((nbits as f64 / expected) * ln2).round().clamp(1.0, 32.0) as u32;
        let words = nbits.div_ceil(64);
        ReplayFilter {
            bits: vec![0; words as usize],
            nbits: words * 64,
            k,
            inserted: 0,
        }
    }

    /// Records `tag`; returns `true` if it was (probably) not seen before.
    pub fn check_and_insert(&mut self, tag: &[u8; TAG_LEN]) -> bool {
        let mut a = [0u8; 8];
        a.copy_from_slice(&tag[..8]);
        let mut b = [0u8; 8];
        b.copy_from_slice(&tag[8..]);
        let h1 = u64::from_le_bytes(a);
        let h2 = u64::from_le_bytes(b) | 1;
        let mut fresh = false;
        for i in 0..u64::from(self.k) {
            let bit = h1.wrapping_add(i.wrapping_mul(h2)) % self.nbits;
            let (w, m) = ((bit / 64) as usize, 1u64 << (bit % 64));
            if self.bits[w] & m == 0 {
                fresh = true;
                self.bits[w] |= m;
            }
        }
        if fresh {
            self.inserted += 1;
        }
        fresh
    }

    /// Forgets everything (called when the mix key changes with the epoch).
    pub fn reset(&mut self) {
        self.bits.iter_mut().for_each(|w| *w = 0);
        self.inserted = 0;
    }

    /// Number of distinct tags recorded.
    pub fn len(&self) -> u64 {
        self.inserted
    }

    /// Whether nothing has been recorded.
    pub fn is_empty(&self) -> bool {
        self.inserted == 0
    }

    /// Memory used by the bit array, in bytes.
    pub fn size_bytes(&self) -> usize {
        self.bits.len() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_repeats_and_resets() {
        let mut f = ReplayFilter::new(10_000, 1e-6);
        let mut fp = 0;
        for i in 0..10_000u32 {
            let t = *blake3::hash(&i.to_le_bytes()).as_bytes();
            let mut tag = [0u8; TAG_LEN];
            tag.copy_from_slice(&t[..TAG_LEN]);
            if !f.check_and_insert(&tag) {
                fp += 1;
            }
            assert!(!f.check_and_insert(&tag));
        }
        assert!(fp <= 2, "false positives {fp}");
        f.reset();
        assert!(f.is_empty());
    }
}
