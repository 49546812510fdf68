//! ML-KEM-1024 (FIPS 203) as the KEM of the hybrid post-quantum Noise links.
//!
//! snow 0.10 knows one KEM, round-3 Kyber1024 (`pqcrypto-kyber`, which predates the final
//! standard). Its `hfs` machinery is generic, though: the KEM is looked up through a
//! [`CryptoResolver`]. [`MlKemResolver`] answers that lookup with RustCrypto's `ml-kem`
//! (pure Rust, FIPS 203 final) and leaves every other primitive to snow's own resolvers.
//!
//! snow's pattern parser only accepts the name `Kyber1024`, so [`noise_params`] parses that
//! pattern and then renames it: the protocol name hashed into the handshake is
//! [`super::NOISE_PARAMS_PQ`] (`…+MLKEM1024…`), so a peer still running Kyber cannot
//! complete a handshake with an ML-KEM one by accident. ML-KEM-1024 keeps Kyber1024's sizes
//! (1 568-byte encapsulation key and ciphertext, 32-byte shared secret).

use ml_kem::{
    Decapsulate, DecapsulationKey, Encapsulate, EncapsulationKey, FromSeed, KeyExport, MlKem1024,
    Seed, TryKeyInit,
};
use snow::params::{DHChoice, HashChoice, KemChoice, NoiseParams};
use snow::resolvers::{CryptoResolver, DefaultResolver, FallbackResolver, RingResolver};
use snow::types::{Cipher, Dh, Hash, Kem, Random};

/// ML-KEM-1024 encapsulation key (public) length.
pub const ML_KEM_1024_PUB: usize = 1568;
/// ML-KEM-1024 ciphertext length.
pub const ML_KEM_1024_CT: usize = 1568;
const SHARED: usize = 32;

/// The pattern snow parses; its KEM slot is then resolved to ML-KEM-1024 and the name
/// replaced by [`super::NOISE_PARAMS_PQ`].
const SNOW_PATTERN_PQ: &str = "Noise_IKhfs_25519+Kyber1024_AESGCM_SHA256";

/// The Noise parameters of a link: classical, or hybrid with ML-KEM-1024.
pub fn noise_params(pq: bool) -> NoiseParams {
    // Both strings are fixed, valid patterns; parsing cannot fail.
    #[allow(clippy::expect_used)]
    if pq {
        let mut p: NoiseParams = SNOW_PATTERN_PQ.parse().expect("noise params");
        p.name = super::NOISE_PARAMS_PQ.to_string();
        p
    } else {
        super::NOISE_PARAMS.parse().expect("noise params")
    }
}

/// A snow handshake builder for a link: [`noise_params`] with the [`MlKemResolver`] in front
/// of snow's ring and default resolvers.
pub fn noise_builder<'a>(pq: bool) -> snow::Builder<'a> {
    snow::Builder::with_resolver(
        noise_params(pq),
        Box::new(FallbackResolver::new(
            Box::new(MlKemResolver),
            Box::new(FallbackResolver::new(
                Box::new(RingResolver),
                Box::new(DefaultResolver),
            )),
        )),
    )
}

/// Resolves the KEM slot to ML-KEM-1024 and nothing else.
#[derive(Debug, Default, Clone, Copy)]
pub struct MlKemResolver;

impl CryptoResolver for MlKemResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        None
    }

    fn resolve_dh(&self, _: &DHChoice) -> Option<Box<dyn Dh>> {
        None
    }

    fn resolve_hash(&self, _: &HashChoice) -> Option<Box<dyn Hash>> {
        None
    }

    fn resolve_cipher(&self, _: &snow::params::CipherChoice) -> Option<Box<dyn Cipher>> {
        None
    }

    fn resolve_kem(&self, choice: &KemChoice) -> Option<Box<dyn Kem>> {
        match choice {
            KemChoice::Kyber1024 => Some(Box::new(MlKem1024Kem::default())),
        }
    }
}

/// One side's ML-KEM-1024 state in a handshake: the decapsulation key once generated.
#[derive(Default)]
pub struct MlKem1024Kem {
    keys: Option<(DecapsulationKey<MlKem1024>, Vec<u8>)>,
}

impl Kem for MlKem1024Kem {
    fn name(&self) -> &'static str {
        "MLKEM1024"
    }

    fn pub_len(&self) -> usize {
        ML_KEM_1024_PUB
    }

    fn ciphertext_len(&self) -> usize {
        ML_KEM_1024_CT
    }

    fn shared_secret_len(&self) -> usize {
        SHARED
    }

    fn generate(&mut self, rng: &mut dyn Random) {
        let mut seed = Seed::default();
        // snow's trait gives no way to report a failing RNG here; an all-zero seed would be
        // fatal, so a failure aborts the handshake's thread like snow's own KEM does.
        #[allow(clippy::expect_used)]
        rng.try_fill_bytes(&mut seed).expect("random seed");
        let (dk, ek) = MlKem1024::from_seed(&seed);
        self.keys = Some((dk, ek.to_bytes().to_vec()));
    }

    fn pubkey(&self) -> &[u8] {
        self.keys
            .as_ref()
            .map(|(_, ek)| ek.as_slice())
            .unwrap_or(&[])
    }

    fn encapsulate(
        &self,
        pubkey: &[u8],
        shared_secret_out: &mut [u8],
        ciphertext_out: &mut [u8],
    ) -> Result<(usize, usize), snow::Error> {
        if shared_secret_out.len() < SHARED || ciphertext_out.len() < ML_KEM_1024_CT {
            return Err(snow::Error::Kem);
        }
        let ek =
            EncapsulationKey::<MlKem1024>::new_from_slice(pubkey).map_err(|_| snow::Error::Kem)?;
        let (ct, ss) = ek.encapsulate();
        shared_secret_out[..SHARED].copy_from_slice(&ss);
        ciphertext_out[..ML_KEM_1024_CT].copy_from_slice(&ct);
        Ok((SHARED, ML_KEM_1024_CT))
    }

    fn decapsulate(
        &self,
        ciphertext: &[u8],
        shared_secret_out: &mut [u8],
    ) -> Result<usize, snow::Error> {
        let (dk, _) = self.keys.as_ref().ok_or(snow::Error::Kem)?;
        if shared_secret_out.len() < SHARED {
            return Err(snow::Error::Kem);
        }
        let ss = dk
            .decapsulate_slice(ciphertext)
            .map_err(|_| snow::Error::Kem)?;
        shared_secret_out[..SHARED].copy_from_slice(&ss);
        Ok(SHARED)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    struct Os;
    impl Random for Os {
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, dest);
            Ok(())
        }
    }

    #[test]
    fn encapsulated_secret_decapsulates_to_the_same_bytes() {
        let mut a = MlKem1024Kem::default();
        a.generate(&mut Os);
        assert_eq!(a.pubkey().len(), ML_KEM_1024_PUB);
        let b = MlKem1024Kem::default();
        let (mut ss1, mut ct) = ([0u8; 32], vec![0u8; ML_KEM_1024_CT]);
        assert_eq!(
            b.encapsulate(a.pubkey(), &mut ss1, &mut ct).unwrap(),
            (32, ML_KEM_1024_CT)
        );
        let mut ss2 = [0u8; 32];
        a.decapsulate(&ct, &mut ss2).unwrap();
        assert_eq!(ss1, ss2);
        // A flipped ciphertext bit gives another secret (implicit rejection), never the same.
        ct[7] ^= 1;
        let mut ss3 = [0u8; 32];
        a.decapsulate(&ct, &mut ss3).unwrap();
        assert_ne!(ss1, ss3);
        // Wrong lengths are errors, not panics.
        assert!(a.decapsulate(&ct[..100], &mut ss3).is_err());
        assert!(b.encapsulate(&[0u8; 10], &mut ss1, &mut ct).is_err());
    }

    #[test]
    fn the_hybrid_pattern_is_named_for_ml_kem() {
        let p = noise_params(true);
        assert_eq!(p.name, "Noise_IKhfs_25519+MLKEM1024_AESGCM_SHA256");
        assert!(p.kem.is_some());
        assert_eq!(noise_params(false).name, super::super::NOISE_PARAMS);
    }
}
