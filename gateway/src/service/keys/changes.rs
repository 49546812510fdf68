//! The device-list change log: which users' keys changed at which stream positions.

use std::collections::BTreeSet;

use ruma::{OwnedUserId, UserId};
use storage::{u64_be, u64_from_be};

use super::Keys;
use crate::error::ApiResult;

impl Keys {
    /// Every user whose device list changed at a stream position in `(since, to]`, each once,
    /// in user-id order. `/sync` and `/keys/changes` filter this down to the users who share a
    /// room with the caller (and the caller).
    pub fn changed_users(&self, since: u64, to: u64) -> ApiResult<Vec<OwnedUserId>> {
        if to <= since {
            return Ok(Vec::new());
        }
        let start = since.saturating_add(1);
        let mut users = BTreeSet::new();
        for (k, user) in self
            .t
            .changes
            .range(&self.db, b"", &u64_be(start), false, usize::MAX)?
        {
            match u64_from_be(&k) {
                Some(pos) if pos <= to => {
                    users.insert(user);
                }
                _ => break,
            }
        }
        Ok(users.into_iter().collect())
    }

    /// Records a device-list change of `user` (a device renamed, or any change made outside the
    /// key store), at a new stream position.
    pub async fn record_change(&self, user: &UserId) -> ApiResult<()> {
        let _guard = self.lock.lock().await;
        self.write(&[user], |_| Ok(())).await
    }
}

#[cfg(test)]
mod tests {
    use ruma::user_id;

    use super::super::tests::store;

    #[tokio::test]
    async fn changes_are_reported_in_their_range_once() {
        let keys = store();
        let a = user_id!("@a:x");
        let b = user_id!("@b:x");
        keys.record_change(a).await.expect("a"); // 1
        keys.record_change(b).await.expect("b"); // 2
        keys.record_change(a).await.expect("a"); // 3
        assert_eq!(keys.changed_users(0, 3).expect("c"), vec![a, b]);
        assert_eq!(keys.changed_users(1, 2).expect("c"), vec![b]);
        assert_eq!(keys.changed_users(2, 3).expect("c"), vec![a]);
        assert!(keys.changed_users(3, 10).expect("c").is_empty());
        assert!(keys.changed_users(2, 2).expect("c").is_empty());
        assert!(keys.changed_users(3, 1).expect("c").is_empty());
    }
}
