//! Answers of the store's administration: `POST /admin/scavenge`,
//! `POST /admin/archive`, `DELETE /subjects/{subject}`.

use std::time::Duration;

use eventfold_core::ScavengeSummary;
use serde::{Deserialize, Serialize};

/// `POST /admin/scavenge[?dry_run=true]`: what the scavenge did (or would do).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScavengeAnswer {
    /// Nothing was changed.
    pub dry_run: bool,
    /// Storage files examined (the embedded engine's segments).
    pub files_examined: u64,
    /// Storage files rewritten.
    pub files_rewritten: u64,
    /// Events removed (or that would be).
    pub events_removed: u64,
    /// Bytes of the rewritten files before.
    pub bytes_before: u64,
    /// Bytes of the rewritten files after.
    pub bytes_after: u64,
    /// `bytes_before - bytes_after`.
    pub bytes_reclaimed: u64,
    /// How long it took, in seconds.
    pub seconds: f64,
}

impl From<ScavengeSummary> for ScavengeAnswer {
    fn from(summary: ScavengeSummary) -> Self {
        ScavengeAnswer {
            dry_run: summary.dry_run,
            files_examined: summary.files_examined,
            files_rewritten: summary.files_rewritten,
            events_removed: summary.events_removed,
            bytes_before: summary.bytes_before,
            bytes_after: summary.bytes_after,
            bytes_reclaimed: summary.bytes_reclaimed(),
            seconds: summary.elapsed.as_secs_f64(),
        }
    }
}

impl From<ScavengeAnswer> for ScavengeSummary {
    fn from(answer: ScavengeAnswer) -> Self {
        ScavengeSummary {
            dry_run: answer.dry_run,
            files_examined: answer.files_examined,
            files_rewritten: answer.files_rewritten,
            events_removed: answer.events_removed,
            bytes_before: answer.bytes_before,
            bytes_after: answer.bytes_after,
            elapsed: Duration::try_from_secs_f64(answer.seconds).unwrap_or_default(),
        }
    }
}

/// `DELETE /subjects/{subject}`: the subject's key is destroyed, and the
/// `$subject-forgotten` notification is at `position` of `$subjects`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectForgotten {
    /// The subject forgotten.
    pub subject: String,
    /// The global position of its `$subject-forgotten` event.
    pub position: u64,
}

/// `POST /admin/archive`: where to archive the log. Without `to`, the archive the
/// server was started with (`serve --archive`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveRequest {
    /// `s3://BUCKET/PREFIX` (the server's own credentials are used), or the server's
    /// own `--archive` URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// `POST /admin/archive`: what one archive pass did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveAnswer {
    /// The archive.
    pub url: String,
    /// The position after the last archived event: `$all` up to here is archived.
    pub end_position: u64,
    /// Segments in the archive.
    pub segments: u64,
    /// Pieces uploaded by this pass.
    pub pieces_uploaded: u64,
    /// Pieces an interrupted pass had uploaded, found whole and kept.
    pub pieces_adopted: u64,
    /// Bytes uploaded by this pass.
    pub bytes_uploaded: u64,
    /// Segments archived again because the store rewrote them (a scavenge).
    pub segments_rewritten: u64,
    /// How long the pass took, in seconds.
    pub seconds: f64,
}
