//! Where subjects' data keys live: the [`KeyStore`] trait, outside the immutable log,
//! and [`MemoryKeyStore`] (tests, and stores that live in memory).

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use eventfold_core::{Error, Result};

use crate::crypto::DataKey;

/// The hasher of the crate's maps of subjects and their digests: foldhash, seeded per
/// map (every page of personal events read fills such maps; SipHash cost more there).
pub(crate) type FastHash = foldhash::fast::RandomState;

/// What a key store answers a lookup with: each subject asked and what it holds for it.
pub type SubjectKeys = HashMap<String, SubjectKey, FastHash>;

/// What a key store holds for one subject.
#[derive(Debug, Clone)]
pub enum SubjectKey {
    /// The subject's data key: its values open.
    Active(DataKey),
    /// The subject was forgotten: its key was destroyed, and a tombstone says so. Its
    /// values read as `{"$redacted": true}`.
    Forgotten,
    /// The key store knows nothing of the subject. A sealed value that names it is an
    /// error (a key store that is not the one the log was written with), never a
    /// redaction.
    Unknown,
}

/// The data keys of subjects, kept apart from the log (which never changes), so that a
/// key can really be destroyed. Implementations wrap every key with a master key and
/// never store one in plaintext.
#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// What the store holds for each of `subjects` (creates nothing).
    async fn lookup(&self, subjects: &[&str]) -> Result<SubjectKeys>;

    /// The data key of `subject`, created (durably, before it is returned) when the
    /// subject has none. A forgotten subject gets no new key: an error says so.
    async fn key_for_writing(&self, subject: &str) -> Result<DataKey>;

    /// The data keys of `subjects` (in their order), those missing created durably
    /// before any is returned; one forgotten subject fails the whole call. Stores that
    /// can write several keys with one sync do so (an append of a batch naming many new
    /// subjects then waits for one sync, not one per subject).
    async fn keys_for_writing(&self, subjects: &[&str]) -> Result<Vec<DataKey>> {
        let mut keys = Vec::with_capacity(subjects.len());
        for subject in subjects {
            keys.push(self.key_for_writing(subject).await?);
        }
        Ok(keys)
    }

    /// Destroys the key of `subject` (when it has one) and records a tombstone, durably.
    /// Forgetting a forgotten subject changes nothing.
    async fn forget(&self, subject: &str) -> Result<()>;
}

/// The error of a write of personal data for a forgotten subject (what
/// [`KeyStore::key_for_writing`] answers for one).
pub fn forgotten_subject_error(subject: &str) -> Error {
    Error::InvalidEvent {
        reason: format!(
            "subject '{subject}' was forgotten: its key is destroyed and no new personal data \
             is written for it (give a returning person a new subject id)"
        ),
    }
}

/// Keys in memory, lost with the process: for tests and for in-memory stores.
#[derive(Debug, Default)]
pub struct MemoryKeyStore {
    keys: Mutex<HashMap<String, SubjectKey>>,
}

impl MemoryKeyStore {
    /// An empty key store.
    pub fn new() -> MemoryKeyStore {
        MemoryKeyStore::default()
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, HashMap<String, SubjectKey>> {
        // A panic while the lock was held cannot leave the map half-changed (every
        // change is one insert), so a poisoned lock is taken over.
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl KeyStore for MemoryKeyStore {
    async fn lookup(&self, subjects: &[&str]) -> Result<SubjectKeys> {
        let keys = self.keys();
        Ok(subjects
            .iter()
            .map(|s| {
                (
                    s.to_string(),
                    keys.get(*s).cloned().unwrap_or(SubjectKey::Unknown),
                )
            })
            .collect())
    }

    async fn key_for_writing(&self, subject: &str) -> Result<DataKey> {
        let mut keys = self.keys();
        match keys.get(subject) {
            Some(SubjectKey::Active(key)) => Ok(key.clone()),
            Some(SubjectKey::Forgotten) => Err(forgotten_subject_error(subject)),
            Some(SubjectKey::Unknown) | None => {
                let (key, _) = DataKey::generate()?;
                keys.insert(subject.to_string(), SubjectKey::Active(key.clone()));
                Ok(key)
            }
        }
    }

    async fn forget(&self, subject: &str) -> Result<()> {
        self.keys()
            .insert(subject.to_string(), SubjectKey::Forgotten);
        Ok(())
    }
}

impl std::fmt::Debug for dyn KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyStore(..)")
    }
}
