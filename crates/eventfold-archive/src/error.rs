//! What can go wrong while archiving or restoring, each naming the object or file.

/// An archive or restore failure.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The archive URL cannot be used.
    #[error("archive URL {url}: {reason}")]
    Url {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The object storage refused or failed a request.
    #[error("object storage: {what}: {source}")]
    Storage {
        /// What was being done (and on which object).
        what: String,
        /// The object storage's error.
        #[source]
        source: object_store::Error,
    },
    /// An object of the archive is not what the manifest says it is.
    #[error("archive object {key} is damaged: {reason}")]
    Corrupted {
        /// The object.
        key: String,
        /// How it differs from what the manifest says.
        reason: String,
    },
    /// The manifest is missing, unreadable, or describes an impossible archive.
    #[error("archive manifest {key}: {reason}")]
    Manifest {
        /// The manifest's object.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The store being archived, or the store a restore built, failed.
    #[error(transparent)]
    Store(#[from] eventfold_core::Error),
    /// A restore may not write where it was asked to.
    #[error("cannot restore into {dir}: {reason}")]
    Target {
        /// The directory given.
        dir: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// What a restore built is not the archived log.
    #[error("the restored store does not match the archive: {0}")]
    Mismatch(String),
}

/// The result of archive and restore operations.
pub type Result<T> = std::result::Result<T, ArchiveError>;

/// Wraps an object storage error with what was being done.
pub(crate) fn storage(what: impl Into<String>) -> impl FnOnce(object_store::Error) -> ArchiveError {
    let what = what.into();
    move |source| ArchiveError::Storage { what, source }
}
