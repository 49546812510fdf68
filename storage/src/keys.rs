//! Helpers for building ordered byte keys.

/// Separator between key parts. `0xff` never occurs in UTF-8 text, so string parts cannot
/// collide with it.
pub const SEP: u8 = 0xff;

/// Joins key parts with the [`SEP`] byte: `key(&[a, b])` is `a 0xff b`.
pub fn key(parts: &[&[u8]]) -> Vec<u8> {
    let len = parts.iter().map(|p| p.len() + 1).sum();
    let mut out = Vec::with_capacity(len);
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push(SEP);
        }
        out.extend_from_slice(part);
    }
    out
}

/// Big-endian bytes of `n`, so numeric order equals byte order.
pub fn u64_be(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

/// Reads a big-endian `u64` from the last 8 bytes of `bytes`, if there are 8.
pub fn u64_from_be(bytes: &[u8]) -> Option<u64> {
    let start = bytes.len().checked_sub(8)?;
    let arr: [u8; 8] = bytes[start..].try_into().ok()?;
    Some(u64::from_be_bytes(arr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_joins_with_separator() {
        assert_eq!(key(&[b"a", b"bc"]), b"a\xffbc".to_vec());
        assert_eq!(key(&[b"a"]), b"a".to_vec());
    }

    #[test]
    fn be_roundtrip_and_order() {
        assert_eq!(u64_from_be(&u64_be(42)), Some(42));
        assert!(u64_be(255) < u64_be(256));
        assert_eq!(u64_from_be(b"short"), None);
    }
}
