//! The sender's side of the per-hop key agreement, made cheap with precomputed tables.
//!
//! A sender agrees one secret per hop: `s = X25519(e, P)` with a fresh ephemeral `e` and the
//! hop's public key `P`. `P` is a node's mix key, fixed for a whole epoch, or a recipient's
//! long-term key, so the sender can precompute a fixed-base table for `P` once (about 1 ms,
//! 30 KiB) and then compute `e·P` with table look-ups instead of a Montgomery ladder: 12 µs
//! instead of 26 µs on the reference machine. The points of a whole packet (and its SURB-ACK)
//! are then converted to X25519's u-coordinate with one batched field inversion.
//!
//! The result is bit-for-bit the X25519 function of RFC 7748: the table multiplies by the
//! clamped scalar itself (not reduced mod ℓ), so any torsion component of `P` is cleared exactly
//! as the ladder clears it, and `P`'s sign does not matter because `u(−Q) = u(Q)`. The wire
//! format does not change; a test checks table results against the ladder.
//!
//! Keys the table path cannot take are refused rather than worked around: a u-coordinate that
//! is not on the curve (the ladder would silently compute on the twist) or a point of small
//! order (the shared secret would be fixed). Honest keys are never either.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use curve25519_dalek::edwards::{EdwardsBasepointTable, EdwardsPoint};
use curve25519_dalek::montgomery::MontgomeryPoint;
use curve25519_dalek::traits::BasepointTable;

use super::crypto::{SecretKey, KEY_LEN};
use super::PacketError;

/// How many public keys' tables a [`KeyTables`] keeps (about 30 KiB each, so at most ≈ 4 MiB).
/// A client uses the current epoch's mix and provider keys plus its peers' keys. When the cache
/// is full, a table unused for [`STALE_AFTER`] (an old epoch's key) makes room; otherwise the
/// extra key is agreed with by ladder, so a network larger than the cache never thrashes it.
pub const DEFAULT_TABLE_CAPACITY: usize = 128;

/// A table unused this long may be replaced when the cache is full.
pub const STALE_AFTER: Duration = Duration::from_secs(15 * 60);

/// A cached table and when it was last used.
struct Entry {
    table: Arc<KeyTable>,
    last_used: Instant,
}

/// A precomputed fixed-base table for one public key.
struct KeyTable(EdwardsBasepointTable);

impl KeyTable {
    fn new(public: &[u8; KEY_LEN]) -> Result<Self, PacketError> {
        Ok(KeyTable(EdwardsBasepointTable::create(&lift(public)?)))
    }
}

/// The Edwards point of an X25519 public key, if it is one a sender will encrypt to: on the
/// curve (not the twist) and not of small order.
fn lift(public: &[u8; KEY_LEN]) -> Result<EdwardsPoint, PacketError> {
    let point = MontgomeryPoint(*public)
        .to_edwards(0)
        .ok_or(PacketError::BadKey)?;
    if point.is_small_order() {
        return Err(PacketError::BadKey);
    }
    Ok(point)
}

/// Whether senders accept `public` as a hop or recipient key (see [`KeyTables`]); the
/// directory refuses mix keys that fail this, since no client could route through them.
pub fn is_valid_public_key(public: &[u8; KEY_LEN]) -> bool {
    lift(public).is_ok()
}

/// A bounded cache of fixed-base tables for the public keys a sender encrypts to.
///
/// Share one per sender (it is `Sync`); building a table costs about as much as 40 agreements,
/// so the cache pays off from the second packet through a node.
pub struct KeyTables {
    capacity: usize,
    stale_after: Duration,
    tables: Mutex<HashMap<[u8; KEY_LEN], Entry>>,
}

impl std::fmt::Debug for KeyTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyTables")
            .field("capacity", &self.capacity)
            .field("cached", &self.len())
            .finish()
    }
}

impl Default for KeyTables {
    fn default() -> Self {
        Self::new(DEFAULT_TABLE_CAPACITY)
    }
}

impl KeyTables {
    /// An empty cache holding at most `capacity` tables (at least one).
    pub fn new(capacity: usize) -> Self {
        Self::with_staleness(capacity, STALE_AFTER)
    }

    /// An empty cache of at most `capacity` tables in which a table unused for `stale_after`
    /// may be replaced.
    pub fn with_staleness(capacity: usize, stale_after: Duration) -> Self {
        KeyTables {
            capacity: capacity.max(1),
            stale_after,
            tables: Mutex::new(HashMap::new()),
        }
    }

    /// How many tables are cached now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no table is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Builds (or keeps) the table for `public` ahead of use, e.g. when a new directory
    /// document arrives, so the first packet of an epoch does not pay for it (if the cache has
    /// room: see [`DEFAULT_TABLE_CAPACITY`]).
    pub fn prepare(&self, public: &[u8; KEY_LEN]) -> Result<(), PacketError> {
        self.table(public).map(|_| ())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; KEY_LEN], Entry>> {
        // A panic while holding the lock cannot leave the map inconsistent (inserts are
        // single calls), so a poisoned lock is still usable.
        self.tables
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The table for `public`, built if there is room; `None` when the cache is full of tables
    /// in use (the caller falls back to the ladder). Invalid keys are refused either way.
    fn table(&self, public: &[u8; KEY_LEN]) -> Result<Option<Arc<KeyTable>>, PacketError> {
        let now = Instant::now();
        {
            let mut map = self.lock();
            if let Some(e) = map.get_mut(public) {
                e.last_used = now;
                return Ok(Some(Arc::clone(&e.table)));
            }
            if map.len() >= self.capacity && !self.evict_stale(&mut map, now) {
                lift(public)?;
                return Ok(None);
            }
        }
        // Built outside the lock: another sender thread is not held up for a millisecond.
        let table = Arc::new(KeyTable::new(public)?);
        let mut map = self.lock();
        if map.len() >= self.capacity && !self.evict_stale(&mut map, now) {
            return Ok(Some(table));
        }
        map.insert(
            *public,
            Entry {
                table: Arc::clone(&table),
                last_used: now,
            },
        );
        Ok(Some(table))
    }

    /// Removes the least recently used table if it is stale; whether one was removed.
    fn evict_stale(&self, map: &mut HashMap<[u8; KEY_LEN], Entry>, now: Instant) -> bool {
        let oldest = map
            .iter()
            .min_by_key(|(_, e)| e.last_used)
            .filter(|(_, e)| now.duration_since(e.last_used) >= self.stale_after)
            .map(|(k, _)| *k);
        oldest.is_some_and(|k| map.remove(&k).is_some())
    }

    /// X25519 of each `(ephemeral secret, public key)` pair, equal to [`SecretKey::dh`] on each,
    /// with one batched inversion for all the pairs that have a table.
    pub fn agree_all(
        &self,
        pairs: &[(&SecretKey, &[u8; KEY_LEN])],
    ) -> Result<Vec<[u8; KEY_LEN]>, PacketError> {
        let mut out = vec![[0u8; KEY_LEN]; pairs.len()];
        let mut points: Vec<EdwardsPoint> = Vec::with_capacity(pairs.len());
        let mut by_table: Vec<usize> = Vec::with_capacity(pairs.len());
        for (i, (secret, public)) in pairs.iter().enumerate() {
            match self.table(public)? {
                Some(table) => {
                    points.push(table.0.mul_base_clamped(secret.to_bytes()));
                    by_table.push(i);
                }
                None => out[i] = secret.dh(public)?,
            }
        }
        for (i, u) in by_table
            .into_iter()
            .zip(EdwardsPoint::to_montgomery_batch(&points))
        {
            out[i] = u.to_bytes();
        }
        // Unreachable with the keys `table` accepts; kept so a degenerate secret can never be
        // used as a key.
        if out.iter().any(|s| s == &[0u8; KEY_LEN]) {
            return Err(PacketError::BadKey);
        }
        Ok(out)
    }
}

/// X25519 of each pair with the ladder (no precomputation): for one-off packets and for
/// checking [`KeyTables::agree_all`].
pub fn agree_each(
    pairs: &[(&SecretKey, &[u8; KEY_LEN])],
) -> Result<Vec<[u8; KEY_LEN]>, PacketError> {
    pairs.iter().map(|(s, p)| s.dh(p)).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tables_match_the_ladder() {
        let tables = KeyTables::new(4);
        let nodes: Vec<SecretKey> = (0..6).map(|_| SecretKey::random()).collect();
        let eph: Vec<SecretKey> = (0..6).map(|_| SecretKey::random()).collect();
        let pubs: Vec<[u8; 32]> = nodes.iter().map(SecretKey::public).collect();
        let pairs: Vec<_> = eph.iter().zip(&pubs).collect();
        let pairs: Vec<(&SecretKey, &[u8; 32])> = pairs.into_iter().collect();
        assert_eq!(
            tables.agree_all(&pairs).unwrap(),
            agree_each(&pairs).unwrap()
        );
        // Six keys through a cache of four: four were tabulated, the other two went by ladder,
        // and the answers are right either way.
        assert_eq!(tables.len(), 4);
        // And the node side agrees too.
        for ((e, n), s) in eph.iter().zip(&nodes).zip(agree_each(&pairs).unwrap()) {
            assert_eq!(n.dh(&e.public()).unwrap(), s);
        }
    }

    #[test]
    fn stale_tables_make_room_for_new_keys() {
        // Everything is stale at once: each new key replaces the least recently used one.
        let tables = KeyTables::with_staleness(2, Duration::ZERO);
        let e = SecretKey::random();
        let keys: Vec<[u8; 32]> = (0..3).map(|_| SecretKey::random().public()).collect();
        for k in &keys {
            assert_eq!(tables.agree_all(&[(&e, k)]).unwrap()[0], e.dh(k).unwrap());
        }
        assert_eq!(tables.len(), 2);
        let map = tables.lock();
        assert!(!map.contains_key(&keys[0]) && map.contains_key(&keys[2]));
    }

    #[test]
    fn torsion_component_is_cleared_like_the_ladder() {
        // P + T for a point T of order 8: X25519 ignores T because clamped scalars are
        // multiples of 8; the table must too.
        use curve25519_dalek::constants::EIGHT_TORSION;
        let node = SecretKey::random();
        let p = MontgomeryPoint(node.public()).to_edwards(0).unwrap() + EIGHT_TORSION[1];
        let mixed = p.to_montgomery().to_bytes();
        let e = SecretKey::random();
        let tables = KeyTables::default();
        let via_table = tables.agree_all(&[(&e, &mixed)]).unwrap();
        assert_eq!(via_table[0], e.dh(&mixed).unwrap());
        assert_eq!(via_table[0], e.dh(&node.public()).unwrap());
    }

    #[test]
    fn bad_keys_are_refused() {
        let tables = KeyTables::default();
        let e = SecretKey::random();
        // Small order: the all-zero u and u = 1.
        let zero = [0u8; 32];
        assert_eq!(tables.agree_all(&[(&e, &zero)]), Err(PacketError::BadKey));
        let mut one = [0u8; 32];
        one[0] = 1;
        assert_eq!(tables.agree_all(&[(&e, &one)]), Err(PacketError::BadKey));
        // u = 2 is on the twist, not on the curve.
        let mut two = [0u8; 32];
        two[0] = 2;
        assert_eq!(tables.agree_all(&[(&e, &two)]), Err(PacketError::BadKey));
        assert!(tables.is_empty());
        assert!(!is_valid_public_key(&two));
        assert!(is_valid_public_key(&e.public()));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn any_secret_agrees_with_the_ladder(e in any::<[u8; 32]>(), n in any::<[u8; 32]>()) {
            let tables = KeyTables::default();
            let e = SecretKey::from_bytes(e);
            let node = SecretKey::from_bytes(n).public();
            prop_assert_eq!(tables.agree_all(&[(&e, &node)]).unwrap()[0], e.dh(&node).unwrap());
        }
    }
}
