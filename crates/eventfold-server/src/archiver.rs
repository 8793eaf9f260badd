//! What `POST /admin/archive` needs of the program that serves: something that archives
//! the store's log to object storage. The server knows no storage engine; `eventfold
//! serve` gives the embedded engine's archiver (crate `eventfold-archive`).

use eventfold_wire::ArchiveAnswer;

/// Why an archive pass did not happen or did not finish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveFailure {
    /// The URL cannot be archived to by this server (`invalid_archive_url`).
    InvalidUrl(String),
    /// The object storage or the store failed (`archive_failed`); what was uploaded
    /// stays, and the next pass resumes.
    Failed(String),
}

/// Archives the served store's log (one pass up to the head as it starts).
#[async_trait::async_trait]
pub trait Archiver: Send + Sync + std::fmt::Debug {
    /// The archive the server was started with (`serve --archive`), if any: the one a
    /// request without `to` archives to.
    fn default_url(&self) -> Option<String>;

    /// One pass to `url`. Passes run one at a time.
    async fn archive(&self, url: &str) -> Result<ArchiveAnswer, ArchiveFailure>;
}
