//! The key store of personal data on PostgreSQL: the table `subject_keys` of the
//! store's schema, beside (never inside) `events`, shared by every node.
//!
//! A row per subject: the SHA-256 digest of its id (the id itself is not kept), its
//! data key wrapped by the master key, or, once forgotten, no key and the time it was
//! forgotten. `subject_keys_check` holds one value sealed by the master key the table
//! was started with, so a node given another master key is refused when it starts.
//! Nothing is cached: every node sees a forget at once.

use std::collections::HashMap;

use async_trait::async_trait;
use eventfold_core::{Error, Result};
use eventfold_privacy::{
    DataKey, KeyStore, MasterKey, SubjectKey, SubjectKeys, forgotten_subject_error, subject_digest,
};

use crate::error::{corrupted, pg_error, pool_error};
use crate::store::PostgresStore;

/// Subjects' data keys in the store's PostgreSQL schema.
#[derive(Clone)]
pub struct PostgresKeyStore {
    pool: deadpool_postgres::Pool,
    schema: String,
    quoted_schema: String,
    master: MasterKey,
}

impl std::fmt::Debug for PostgresKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresKeyStore")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl PostgresKeyStore {
    /// The key store of `store`'s schema under `master`: the first node records its
    /// master key's check value; every later one must be given the same master key.
    pub async fn open(store: &PostgresStore, master: MasterKey) -> Result<PostgresKeyStore> {
        let context = "reading the master key check of the subject keys";
        let client = store.client(context).await?;
        let table = format!("{}.subject_keys_check", store.quoted_schema());
        client
            .execute(
                &format!(
                    "INSERT INTO {table} (one, check_value) VALUES (true, $1) \
                     ON CONFLICT (one) DO NOTHING"
                ),
                &[&master.check_value()?],
            )
            .await
            .map_err(|e| pg_error(context, e))?;
        let check: Vec<u8> = client
            .query_one(&format!("SELECT check_value FROM {table}"), &[])
            .await
            .and_then(|row| row.try_get(0))
            .map_err(|e| pg_error(context, e))?;
        if !master.opens_check_value(&check) {
            return Err(Error::InvalidSetting {
                setting: "master_key".into(),
                reason: format!(
                    "the master key given does not open the subject keys of PostgreSQL schema \
                     {}: they were created with another master key (give every node the \
                     same one: --master-key-file or EVENTFOLD_MASTER_KEY)",
                    store.schema()
                ),
            });
        }
        Ok(PostgresKeyStore {
            pool: store.pool(),
            schema: store.schema().to_string(),
            quoted_schema: store.quoted_schema(),
            master,
        })
    }

    fn table(&self) -> String {
        format!("{}.subject_keys", self.quoted_schema)
    }

    async fn client(&self, context: &str) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(|e| pool_error(context, e))
    }

    /// The stored rows of `digests`: `Some(wrapped)` or `None` (forgotten).
    async fn rows(&self, digests: &[Vec<u8>]) -> Result<HashMap<Vec<u8>, Option<Vec<u8>>>> {
        let context = "reading subject keys";
        let client = self.client(context).await?;
        let rows = client
            .query(
                &format!(
                    "SELECT digest, wrapped FROM {} WHERE digest = ANY($1)",
                    self.table()
                ),
                &[&digests],
            )
            .await
            .map_err(|e| pg_error(context, e))?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect::<std::result::Result<_, tokio_postgres::Error>>()
            .map_err(|e| pg_error(context, e))
    }

    fn unwrap(&self, subject: &str, digest: &[u8; 32], wrapped: &[u8]) -> Result<DataKey> {
        self.master.unwrap_data_key(digest, wrapped).ok_or_else(|| {
            corrupted(
                &format!("table {}", self.table()),
                format!(
                    "the data key of subject '{subject}' does not open with the master key \
                     (the row is damaged, or was copied from another store)"
                ),
            )
        })
    }
}

#[async_trait]
impl KeyStore for PostgresKeyStore {
    async fn lookup(&self, subjects: &[&str]) -> Result<SubjectKeys> {
        let digests: Vec<[u8; 32]> = subjects.iter().map(|s| subject_digest(s)).collect();
        let asked: Vec<Vec<u8>> = digests.iter().map(|d| d.to_vec()).collect();
        let rows = self.rows(&asked).await?;
        let mut found = SubjectKeys::with_capacity_and_hasher(subjects.len(), Default::default());
        for (subject, digest) in subjects.iter().zip(&digests) {
            let key = match rows.get(digest.as_slice()) {
                None => SubjectKey::Unknown,
                Some(None) => SubjectKey::Forgotten,
                Some(Some(wrapped)) => SubjectKey::Active(self.unwrap(subject, digest, wrapped)?),
            };
            found.insert(subject.to_string(), key);
        }
        Ok(found)
    }

    async fn key_for_writing(&self, subject: &str) -> Result<DataKey> {
        let digest = subject_digest(subject);
        let asked = vec![digest.to_vec()];
        if self.rows(&asked).await?.is_empty() {
            let (_, bytes) = DataKey::generate()?;
            let wrapped = self.master.wrap_data_key(&digest, &bytes)?;
            let context = "creating a subject key";
            let client = self.client(context).await?;
            // Another node may create the same subject's key at the same time: the
            // first row wins, and both use it.
            client
                .execute(
                    &format!(
                        "INSERT INTO {} (digest, wrapped) VALUES ($1, $2) \
                         ON CONFLICT (digest) DO NOTHING",
                        self.table()
                    ),
                    &[&asked[0], &wrapped],
                )
                .await
                .map_err(|e| pg_error(context, e))?;
        }
        match self.rows(&asked).await?.remove(digest.as_slice()) {
            Some(Some(wrapped)) => self.unwrap(subject, &digest, &wrapped),
            Some(None) => Err(forgotten_subject_error(subject)),
            None => Err(Error::Backend(format!(
                "the key of subject '{subject}' was written but does not read back"
            ))),
        }
    }

    async fn forget(&self, subject: &str) -> Result<()> {
        let digest = subject_digest(subject).to_vec();
        let context = "forgetting a subject key";
        let client = self.client(context).await?;
        client
            .execute(
                &format!(
                    "INSERT INTO {table} (digest, wrapped, forgotten_at) VALUES ($1, NULL, now()) \
                     ON CONFLICT (digest) DO UPDATE SET wrapped = NULL, \
                     forgotten_at = coalesce({table}.forgotten_at, now())",
                    table = self.table()
                ),
                &[&digest],
            )
            .await
            .map_err(|e| pg_error(context, e))?;
        // The old row version keeps the wrapped key until a vacuum removes it; the
        // table is small, so it is vacuumed now. A failure leaves it to autovacuum.
        if let Err(error) = client
            .batch_execute(&format!("VACUUM {}", self.table()))
            .await
        {
            tracing::warn!(%error, "cannot vacuum the subject keys after a forget");
        }
        Ok(())
    }
}
