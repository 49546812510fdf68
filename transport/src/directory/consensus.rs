//! Several directory authorities that must agree.
//!
//! Each authority publishes a signed **vote** for an epoch: the node descriptors and gateway
//! entries it accepted and its traffic parameters. An authority fetches its peers' votes and,
//! once it holds `threshold` valid votes (its own included), computes the **consensus**
//! document: every descriptor and entry that appears, byte for byte, in at least `threshold`
//! votes, and the parameters at least `threshold` votes share. The computation is
//! deterministic, so authorities that hold the same votes produce the same document text; each
//! signs it and collects its peers' signatures over that exact text. Clients keep verifying
//! as before: `threshold` distinct trusted signatures over one document.
//!
//! One rogue authority therefore cannot add a node (it would appear in one vote only), cannot
//! drop one (the others still reach the threshold) and cannot change the parameters. Signed
//! registrations and gateway entries are forwarded between authorities, so a node may register
//! with any one of them.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::document::{
    AuthoritySignature, DirectoryError, Document, GatewayEntry, NodeDescriptor, SignedDocument,
    DOCUMENT_VERSION,
};

const VOTE_CONTEXT: &[u8] = b"mixgate directory vote v1\n";

/// What one authority saw for one epoch: the document it would publish alone (the
/// descriptors and gateway entries it accepted, its window and parameters).
pub type Vote = Document;

/// A vote as sent between authorities: its exact JSON text and the voter's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedVote {
    /// The vote's JSON text.
    pub vote: String,
    /// The voting authority's key.
    #[serde(with = "super::hexser")]
    pub authority: [u8; 32],
    /// Its signature over the context and the text.
    #[serde(with = "super::hexser")]
    pub signature: [u8; 64],
}

fn vote_bytes(text: &str) -> Vec<u8> {
    let mut m = VOTE_CONTEXT.to_vec();
    m.extend_from_slice(text.as_bytes());
    m
}

impl SignedVote {
    /// Serialises and signs a vote.
    pub fn sign(vote: &Vote, key: &SigningKey) -> Result<Self, DirectoryError> {
        let text =
            serde_json::to_string(vote).map_err(|e| DirectoryError::Malformed(e.to_string()))?;
        Ok(SignedVote {
            signature: key.sign(&vote_bytes(&text)).to_bytes(),
            authority: key.verifying_key().to_bytes(),
            vote: text,
        })
    }

    /// Checks that `authority` signed it and that it is a vote on `epoch`.
    pub fn verify(&self, authority: &[u8; 32], epoch: u64) -> Result<Vote, DirectoryError> {
        if &self.authority != authority {
            return Err(DirectoryError::Signatures {
                valid: 0,
                needed: 1,
            });
        }
        let vk = VerifyingKey::from_bytes(authority)
            .map_err(|_| DirectoryError::Malformed("authority key".into()))?;
        vk.verify(
            &vote_bytes(&self.vote),
            &Signature::from_bytes(&self.signature),
        )
        .map_err(|_| DirectoryError::Signatures {
            valid: 0,
            needed: 1,
        })?;
        let vote: Vote = serde_json::from_str(&self.vote)
            .map_err(|e| DirectoryError::Malformed(e.to_string()))?;
        if vote.version != DOCUMENT_VERSION {
            return Err(DirectoryError::WrongVersion(vote.version));
        }
        if vote.epoch != epoch {
            return Err(DirectoryError::Malformed("vote for another epoch".into()));
        }
        Ok(vote)
    }
}

/// Items that appear identically in at least `threshold` of `lists`, in the order of the
/// first list they appear in, deduplicated (each list counts once per item).
fn agreed<T: PartialEq + Clone>(lists: &[&[T]], threshold: usize) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for list in lists {
        for item in list.iter() {
            if out.contains(item) {
                continue;
            }
            let n = lists.iter().filter(|l| l.contains(item)).count();
            if n >= threshold {
                out.push(item.clone());
            }
        }
    }
    out
}

/// The consensus of `votes` (all on one epoch, from distinct authorities): `None` when fewer
/// than `threshold` votes are given or no `threshold` of them agree on the validity window and
/// the parameters.
pub fn combine(votes: &[Vote], threshold: usize) -> Option<Document> {
    let threshold = threshold.max(1);
    if votes.len() < threshold {
        return None;
    }
    // The frame (window and parameters) that at least `threshold` votes share.
    let frame = votes.iter().find(|v| {
        votes
            .iter()
            .filter(|w| {
                w.valid_from_ms == v.valid_from_ms
                    && w.valid_until_ms == v.valid_until_ms
                    && w.params == v.params
            })
            .count()
            >= threshold
    })?;
    let node_lists: Vec<&[NodeDescriptor]> = votes.iter().map(|v| v.nodes.as_slice()).collect();
    let mut nodes = agreed(&node_lists, threshold);
    nodes.sort_by_key(|n| n.id);
    // Two descriptors for one id (an identity that changed its address between votes) would
    // both qualify only if each had `threshold` votes; keep the first, deterministically.
    nodes.dedup_by_key(|n| n.id);
    let gw_lists: Vec<&[GatewayEntry]> = votes.iter().map(|v| v.gateways.as_slice()).collect();
    let mut gateways = agreed(&gw_lists, threshold);
    gateways.sort_by(|a, b| {
        (a.identity, &a.descriptor, a.signature).cmp(&(b.identity, &b.descriptor, b.signature))
    });
    gateways.dedup_by_key(|g| g.identity);
    Some(Document {
        version: DOCUMENT_VERSION,
        epoch: frame.epoch,
        valid_from_ms: frame.valid_from_ms,
        valid_until_ms: frame.valid_until_ms,
        params: frame.params.clone(),
        nodes,
        gateways,
    })
}

/// Adds to `mine` the signatures of `theirs` that are over the same text, by trusted
/// authorities not yet present, and valid. Returns how many were added.
pub fn merge_signatures(
    mine: &mut SignedDocument,
    theirs: &SignedDocument,
    trusted: &[[u8; 32]],
) -> usize {
    if mine.document != theirs.document {
        return 0;
    }
    let msg = super::document::signed_bytes(&mine.document);
    let mut added = 0;
    for s in &theirs.signatures {
        if !trusted.contains(&s.authority)
            || mine.signatures.iter().any(|m| m.authority == s.authority)
        {
            continue;
        }
        let Ok(vk) = VerifyingKey::from_bytes(&s.authority) else {
            continue;
        };
        if vk
            .verify(&msg, &Signature::from_bytes(&s.signature))
            .is_ok()
        {
            mine.signatures.push(AuthoritySignature {
                authority: s.authority,
                signature: s.signature,
            });
            added += 1;
        }
    }
    added
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::directory::{node_id, Role, TrafficParams};

    fn node(i: u8) -> NodeDescriptor {
        NodeDescriptor {
            id: node_id(&[i; 32]),
            identity: [i; 32],
            role: Role::Mix { layer: i % 3 + 1 },
            address: format!("127.0.0.1:{}", 9000 + u16::from(i)),
            link_key: [i; 32],
            mix_key: [i; 32],
        }
    }

    fn vote(nodes: &[u8]) -> Vote {
        Vote {
            version: DOCUMENT_VERSION,
            epoch: 5,
            valid_from_ms: 5000,
            valid_until_ms: 6100,
            params: TrafficParams::default(),
            nodes: nodes.iter().map(|i| node(*i)).collect(),
            gateways: vec![],
        }
    }

    #[test]
    fn a_node_needs_threshold_votes() {
        // Node 9 is in one vote only (a rogue authority's), node 3 in two of three.
        let votes = [vote(&[1, 2, 3]), vote(&[1, 2]), vote(&[1, 2, 3, 9])];
        let doc = combine(&votes, 2).unwrap();
        let ids: Vec<_> = doc.nodes.iter().map(|n| n.identity[0]).collect();
        let mut want = vec![1, 2, 3];
        want.sort_by_key(|i| node_id(&[*i; 32]));
        assert_eq!(ids, want);
        // The same votes in another order give the same document text.
        let other = [votes[2].clone(), votes[0].clone(), votes[1].clone()];
        assert_eq!(
            serde_json::to_string(&combine(&other, 2).unwrap()).unwrap(),
            serde_json::to_string(&doc).unwrap()
        );
        assert!(combine(&votes[..1], 2).is_none());
    }

    #[test]
    fn parameters_need_threshold_agreement() {
        let mut odd = vote(&[1]);
        odd.params.mu_ms = 1.0;
        let mut odd2 = vote(&[1]);
        odd2.params.mu_ms = 2.0;
        assert!(combine(&[vote(&[1]), odd.clone(), odd2], 2).is_none());
        let doc = combine(&[vote(&[1]), odd, vote(&[1])], 2).unwrap();
        assert_eq!(doc.params, TrafficParams::default());
    }

    #[test]
    fn votes_and_signatures_are_checked() {
        let a = SigningKey::from_bytes(&[1; 32]);
        let b = SigningKey::from_bytes(&[2; 32]);
        let sv = SignedVote::sign(&vote(&[1]), &a).unwrap();
        assert!(sv.verify(&a.verifying_key().to_bytes(), 5).is_ok());
        assert!(sv.verify(&b.verifying_key().to_bytes(), 5).is_err());
        assert!(sv.verify(&a.verifying_key().to_bytes(), 6).is_err());
        let mut forged = sv.clone();
        forged.vote = forged.vote.replace("9001", "9002");
        assert!(forged.verify(&a.verifying_key().to_bytes(), 5).is_err());

        let doc = combine(&[vote(&[1])], 1).unwrap();
        let trusted = [a.verifying_key().to_bytes(), b.verifying_key().to_bytes()];
        let mut mine = SignedDocument::sign(&doc, &a).unwrap();
        let theirs = SignedDocument::sign(&doc, &b).unwrap();
        assert_eq!(merge_signatures(&mut mine, &theirs, &trusted), 1);
        assert_eq!(merge_signatures(&mut mine, &theirs, &trusted), 0);
        assert!(mine.verify(&trusted, 2, 5500).is_ok());
        // A signature over other text, or by an untrusted key, is not taken.
        let other = SignedDocument::sign(&combine(&[vote(&[2])], 1).unwrap(), &b).unwrap();
        let mut fresh = SignedDocument::sign(&doc, &a).unwrap();
        assert_eq!(merge_signatures(&mut fresh, &other, &trusted), 0);
        let evil = SignedDocument::sign(&doc, &SigningKey::from_bytes(&[3; 32])).unwrap();
        assert_eq!(merge_signatures(&mut fresh, &evil, &trusted), 0);
    }
}
