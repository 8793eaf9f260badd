//! The audit log of commands, kept beside the events (`commands.log`, one JSON line
//! per command received): who asked the service for what, and when.
//!
//! It answers "what did the users ask for?". It is not a source of truth: a command
//! is a request, judged by the code and the world of its time, and replaying it asks
//! today's code and today's world again (see [`replay_commands`]).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::json_lines;
use super::service::{AuctionService, Handled, ServiceError};

/// A command as a client sent it to the questions service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command")]
pub enum Request {
    /// A buyer asks the seller of `auction` a question.
    AskQuestion {
        auction: String,
        buyer: String,
        text: String,
    },
    /// The seller opens a question.
    ReadQuestion {
        auction: String,
        question_id: String,
        seller: String,
    },
    /// The seller answers a question.
    AnswerQuestion {
        auction: String,
        question_id: String,
        seller: String,
        answer: String,
    },
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub received_at: DateTime<Utc>,
    pub command_id: Uuid,
    #[serde(flatten)]
    pub request: Request,
}

/// The audit log file.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    lock: Mutex<()>,
}

impl AuditLog {
    /// The audit log at `path` (created on the first command).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        AuditLog {
            path: path.into(),
            lock: Mutex::new(()),
        }
    }

    /// Appends `entry`.
    pub fn record(&self, entry: &AuditEntry) -> anyhow::Result<()> {
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        json_lines::append(&self.path, entry, false)
    }

    /// Every entry, oldest first.
    pub fn entries(&self) -> anyhow::Result<Vec<AuditEntry>> {
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        json_lines::read_all(&self.path)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// **The wrong way to restore**, kept to show why: sends every logged command again,
/// in order, to `service` (today's code, asking today's outside world).
///
/// The decisions are taken again (a buyer blocked since is refused, question numbers
/// shift, an answer lands on another question) and the service does again what it
/// does for a new command: it mails the seller. Restore by replaying the *events*
/// ([`AuctionService::restore_read_model`]).
pub async fn replay_commands(
    entries: &[AuditEntry],
    service: &AuctionService,
) -> Vec<(Request, Result<Handled, ServiceError>)> {
    let mut outcomes = Vec::with_capacity(entries.len());
    for entry in entries {
        let outcome = service.handle(entry.request.clone()).await;
        outcomes.push((entry.request.clone(), outcome));
    }
    outcomes
}
