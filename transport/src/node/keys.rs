//! Per-epoch mix keys and their replay filters. Keys live only in memory; a key and its
//! filter are dropped together when the epoch is past its grace period.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use crate::packet::{process, PacketError, Processed, ReplayFilter, SecretKey};

/// The mix keys of one node: previous (grace), current and next epoch.
#[derive(Debug)]
pub struct EpochKeys {
    keys: RwLock<BTreeMap<u64, Arc<SecretKey>>>,
    filters: Mutex<BTreeMap<u64, ReplayFilter>>,
    capacity: u64,
}

impl EpochKeys {
    /// Keys for `epoch` and `epoch + 1`; each replay filter sized for `capacity` tags.
    pub fn new(epoch: u64, capacity: u64) -> Self {
        let k = EpochKeys {
            keys: RwLock::new(BTreeMap::new()),
            filters: Mutex::new(BTreeMap::new()),
            capacity,
        };
        k.rotate(epoch);
        k
    }

    /// Makes sure keys exist for `epoch` and `epoch + 1` and forgets keys (and their replay
    /// filters) older than `epoch - 1`.
    pub fn rotate(&self, epoch: u64) {
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        let mut filters = self.filters.lock().unwrap_or_else(|p| p.into_inner());
        for e in [epoch, epoch + 1] {
            keys.entry(e)
                .or_insert_with(|| Arc::new(SecretKey::random()));
            filters
                .entry(e)
                .or_insert_with(|| ReplayFilter::new(self.capacity, 1e-6));
        }
        let keep = epoch.saturating_sub(1);
        keys.retain(|e, _| *e >= keep);
        filters.retain(|e, _| *e >= keep);
    }

    /// Public key for an epoch, if held.
    pub fn public(&self, epoch: u64) -> Option<[u8; 32]> {
        self.keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&epoch)
            .map(|k| k.public())
    }

    /// (epoch, public key) for every held key.
    pub fn publics(&self) -> Vec<(u64, [u8; 32])> {
        self.keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(e, k)| (*e, k.public()))
            .collect()
    }

    /// Processes a packet with the key of `epoch`, then the previous epoch's (packets still in
    /// flight), then, only if `near_end`, the next epoch's (senders whose clock is slightly
    /// ahead). A forged packet thus costs at most two DHs for most of an epoch.
    pub fn process(
        &self,
        epoch: u64,
        near_end: bool,
        bytes: &[u8],
    ) -> Result<Processed, PacketError> {
        let order: Vec<(u64, Arc<SecretKey>)> = {
            let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
            let mut wanted = vec![epoch, epoch.saturating_sub(1)];
            if near_end {
                wanted.push(epoch + 1);
            }
            wanted.dedup();
            wanted
                .into_iter()
                .filter_map(|e| keys.get(&e).map(|k| (e, k.clone())))
                .collect()
        };
        let mut last = PacketError::BadMac;
        for (e, k) in order {
            let r = process(&k, bytes, &mut |t| {
                let mut f = self.filters.lock().unwrap_or_else(|p| p.into_inner());
                f.get_mut(&e).is_some_and(|f| f.check_and_insert(t))
            });
            match r {
                Err(PacketError::BadMac) => last = PacketError::BadMac,
                other => return other,
            }
        }
        Err(last)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::packet::{create_forward, RouteHop};

    fn packet_for(public: [u8; 32]) -> Vec<u8> {
        let route = [RouteHop {
            id: [1; 16],
            public,
            delay_us: 0,
        }];
        let r = SecretKey::random().public();
        create_forward(&mut rand::thread_rng(), &route, &[2; 16], &r, None, b"x")
            .unwrap()
            .as_bytes()
            .to_vec()
    }

    #[test]
    fn rotation_keeps_grace_key_then_forgets_it() {
        let k = EpochKeys::new(10, 1000);
        let p10 = packet_for(k.public(10).unwrap());
        let p11 = packet_for(k.public(11).unwrap());
        assert!(k.process(10, false, &p10).is_ok());
        assert_eq!(k.process(10, false, &p10).unwrap_err(), PacketError::Replay);
        // Next epoch: the old key still works for packets in flight (grace), new ones too.
        k.rotate(11);
        assert!(k.process(11, false, &p11).is_ok());
        assert_eq!(k.process(11, false, &p10).unwrap_err(), PacketError::Replay);
        assert!(k.public(12).is_some());
        // Two epochs later the key and its replay filter are gone: old packets cannot be processed.
        k.rotate(12);
        k.rotate(13);
        assert!(k.public(10).is_none());
        assert_eq!(k.process(13, false, &p10).unwrap_err(), PacketError::BadMac);
    }
}
