//! Schema version and migrations, run by [`crate::Db::open`] at start-up.
//!
//! The version lives under `meta/schema_version`. A new database starts at
//! [`CURRENT_VERSION`]; an older one is migrated step by step; a newer one is refused (a binary
//! must not write a format it does not understand).

use crate::{Batch, Db, Error, Result, Table};

/// The schema version this build writes.
pub const CURRENT_VERSION: u64 = 1;

fn version_table() -> Table<u64> {
    Table::new("meta")
}

const VERSION_KEY: &[u8] = b"schema_version";

/// The stored schema version, if any.
pub fn stored_version(db: &Db) -> Result<Option<u64>> {
    version_table().get(db, VERSION_KEY)
}

/// Brings the schema to [`CURRENT_VERSION`].
pub fn run(db: &Db) -> Result<()> {
    let found = stored_version(db)?;
    match found {
        Some(v) if v > CURRENT_VERSION => Err(Error::SchemaTooNew {
            found: v,
            supported: CURRENT_VERSION,
        }),
        Some(v) if v == CURRENT_VERSION => Ok(()),
        // Version 1 is the first schema: there is nothing older to migrate from yet. Each later
        // version adds a step here that rewrites the data and bumps the version in one batch.
        _ => {
            let mut batch = Batch::new();
            version_table().put(&mut batch, VERSION_KEY, &CURRENT_VERSION)?;
            db.apply(batch)?;
            db.flush_blocking()?;
            tracing::info!(version = CURRENT_VERSION, "schema initialised");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_db_gets_current_version_and_newer_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let db = Db::open(dir.path()).expect("open");
            assert_eq!(stored_version(&db).expect("v"), Some(CURRENT_VERSION));
            let mut b = Batch::new();
            version_table()
                .put(&mut b, VERSION_KEY, &(CURRENT_VERSION + 1))
                .expect("put");
            db.apply(b).expect("apply");
            db.flush_blocking().expect("flush");
        }
        let err = crate::db::tests::reopen(dir.path()).expect_err("must refuse");
        assert!(matches!(err, Error::SchemaTooNew { .. }));
    }
}
