//! The payload wide-block cipher: LIONESS over ChaCha20 and keyed BLAKE3.
//!
//! The block is split into `L` (32 bytes) and `R` (the rest). Encryption is four Feistel rounds:
//! `R ^= S(L^k1); L ^= H_k2(R); R ^= S(L^k3); L ^= H_k4(R)`, where `S` is the ChaCha20
//! keystream under a 32-byte key and `H` is keyed BLAKE3. Any change to any bit of the block
//! randomises the whole block on decryption, which is what defeats tagging attacks.

use super::crypto::xor_stream;

const L_LEN: usize = 32;

fn stream_round(l: &[u8], k: &[u8; 32], r: &mut [u8]) {
    let mut key = [0u8; 32];
    for i in 0..32 {
        key[i] = l[i] ^ k[i];
    }
    xor_stream(&key, r);
}

fn hash_round(r: &[u8], k: &[u8; 32], l: &mut [u8]) {
    let h = blake3::keyed_hash(k, r);
    for (a, b) in l.iter_mut().zip(h.as_bytes()) {
        *a ^= b;
    }
}

/// Encrypts `block` in place (length must exceed 32 bytes).
pub fn encrypt(keys: &[[u8; 32]; 4], block: &mut [u8]) {
    let (l, r) = block.split_at_mut(L_LEN);
    stream_round(l, &keys[0], r);
    hash_round(r, &keys[1], l);
    stream_round(l, &keys[2], r);
    hash_round(r, &keys[3], l);
}

/// Decrypts `block` in place; the inverse of [`encrypt`].
pub fn decrypt(keys: &[[u8; 32]; 4], block: &mut [u8]) {
    let (l, r) = block.split_at_mut(L_LEN);
    hash_round(r, &keys[3], l);
    stream_round(l, &keys[2], r);
    hash_round(r, &keys[1], l);
    stream_round(l, &keys[0], r);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_diffusion() {
        let keys = [[1u8; 32], [2u8; 32], [3u8; 32], [4u8; 32]];
        let orig: Vec<u8> = (0..2064u32).map(|i| i as u8).collect();
        let mut b = orig.clone();
        encrypt(&keys, &mut b);
        assert_ne!(b, orig);
        let mut t = b.clone();
        decrypt(&keys, &mut b);
        assert_eq!(b, orig);
        // Flip one bit of the ciphertext: decryption garbles everything.
        t[1000] ^= 1;
        decrypt(&keys, &mut t);
        let same = t.iter().zip(&orig).filter(|(a, b)| a == b).count();
        assert!(same < 64, "{same} bytes survived a one-bit change");
    }
}
