//! Answers under a key used once: every request carries a fresh Curve25519 key, and the
//! answer is encrypted to it with a fresh key of the answering gateway (vodozemac ECIES:
//! X25519, HKDF-SHA256, ChaCha20-Poly1305). Both secrets live only for the exchange, so a
//! captured answer (history, state, a room key, a one-time key) stays closed to whoever later
//! seizes either gateway. The signed envelopes around both messages authenticate the keys.
//!
//! Payloads (the plaintext of answers, and of Olm and Megolm messages) are compressed bodies:
//! compression must come before encryption, since ciphertext does not compress.

use vodozemac::ecies::{Ecies, InitialMessage};

use super::{compress, wire::Body};

/// Domain separation of the answer channel.
const INFO: &str = "mixgate-peering-answer-v1";

/// A compressed body, the plaintext of every encrypted peering payload.
pub fn encode_payload(body: &Body) -> Vec<u8> {
    // Serialising our own plain data types cannot fail.
    compress::compress(&serde_json::to_vec(body).unwrap_or_default())
}

/// Reads what [`encode_payload`] made.
pub fn decode_payload(bytes: &[u8]) -> Result<Body, String> {
    let json = compress::decompress(bytes)?;
    serde_json::from_slice(&json).map_err(|e| e.to_string())
}

/// The asking side of one exchange.
pub struct Asker {
    ecies: Ecies,
}

impl Asker {
    /// A fresh key for one request.
    pub fn new() -> Self {
        Self {
            ecies: Ecies::with_info(INFO),
        }
    }

    /// Wraps `request` with this exchange's key.
    pub fn wrap(&self, request: Body) -> Body {
        Body::Asking {
            reply_key: self.ecies.public_key().to_base64(),
            request: Box::new(request),
        }
    }

    /// Opens the answer (consumes the key).
    pub fn open(self, ciphertext: &str) -> Result<Body, String> {
        let message = InitialMessage::decode(ciphertext).map_err(|e| e.to_string())?;
        let opened = self
            .ecies
            .establish_inbound_channel(&message)
            .map_err(|e| e.to_string())?;
        decode_payload(&opened.message)
    }
}

impl Default for Asker {
    fn default() -> Self {
        Self::new()
    }
}

/// Encrypts `answer` to a request's reply key.
pub fn seal_answer(reply_key: &str, answer: &Body) -> Result<Body, String> {
    let key = vodozemac::Curve25519PublicKey::from_base64(reply_key).map_err(|e| e.to_string())?;
    let sealed = Ecies::with_info(INFO)
        .establish_outbound_channel(key, &encode_payload(answer))
        .map_err(|e| e.to_string())?;
    Ok(Body::Answer {
        ciphertext: sealed.message.encode(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_opens_only_with_its_request_key() {
        let asker = Asker::new();
        let Body::Asking { reply_key, .. } = asker.wrap(Body::ClaimOlmKey {}) else {
            panic!("wrapped");
        };
        let answer = Body::Error {
            errcode: "M_X".into(),
            error: "secret words".into(),
        };
        let Body::Answer { ciphertext } = seal_answer(&reply_key, &answer).expect("seal") else {
            panic!("answer");
        };
        assert!(!ciphertext.contains("secret"));
        // Another exchange's key cannot open it.
        assert!(Asker::new().open(&ciphertext).is_err());
        match asker.open(&ciphertext).expect("opens") {
            Body::Error { error, .. } => assert_eq!(error, "secret words"),
            other => panic!("{other:?}"),
        }
        assert!(seal_answer("not a key", &answer).is_err());
        assert!(Asker::new().open("garbage|x").is_err());
    }
}
