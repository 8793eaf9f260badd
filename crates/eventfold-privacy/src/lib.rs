//! Personal data in eventfold: crypto-shredding.
//!
//! The log never changes, so a person's data cannot be deleted from it. Instead, the
//! values an event marks as personal are sealed (encrypted and authenticated) with a
//! key of their own subject before they reach the log, and forgetting the subject
//! destroys that key: every copy of the sealed values (in the log, in its exports and
//! backups) becomes unreadable at once, and reads show `{"$redacted": true}` in their
//! place.
//!
//! - [`PrivacyLayer`] is a store layer: it seals on append and opens on read (see
//!   [`sealed`] for the marking and the stored form).
//! - A [`KeyStore`] keeps the subjects' data keys outside the log, each wrapped by a
//!   [`MasterKey`]: [`FileKeyStore`] in a data directory's `keys/`, [`MemoryKeyStore`]
//!   for tests.
//! - [`forget`] destroys a subject's key and appends `$subject-forgotten` to the system
//!   stream `$subjects`.
//! - [`MasterKeySource`]: where the master key comes from.
//!
//! Architecture invariant: no plaintext personal value and no unwrapped key is ever
//! written by this crate; the log sees only sealed values.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod crypto;
mod file_keys;
mod json_span;
mod json_walk;
mod keys;
mod layer;
mod master;
pub mod sealed;

pub use crypto::{DataKey, KEY_BYTES, MasterKey, subject_digest};
pub use file_keys::{FileKeyStore, SUBJECT_KEYS_FILE};
pub use keys::{KeyStore, MemoryKeyStore, SubjectKey, SubjectKeys, forgotten_subject_error};
pub use layer::{PrivacyLayer, Reveal, SUBJECT_FORGOTTEN_EVENT_TYPE, SUBJECTS_STREAM, forget};
pub use master::{
    DEFAULT_MASTER_KEY_FILE, KEYS_DIR, MASTER_KEY_ENV, MASTER_KEY_FILE_ENV, MasterKeySource,
};
