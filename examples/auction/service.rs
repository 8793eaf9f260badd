//! The questions service: one process of it, over one data directory.
//!
//! ```text
//! DATA/events/             the event store (eventfold_log::LogStore): the truth
//! DATA/keys/               the buyers' data keys (eventfold_privacy::FileKeyStore),
//!                          kept apart from the log so that `forget` can destroy one
//! DATA/read-model.sqlite   the read model, its checkpoint and its outbox
//! DATA/commands.log        the audit log of commands
//! ```

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::{Context, anyhow};
use chrono::Utc;
use eventfold::projection::{
    Effect, EffectExecutor, EffectState, HandlerError, OutboxDispatcher, ReadModelDb,
    RunningProjections, SqliteReadModel,
};
use eventfold::{
    CommandError, DomainEvent, Envelope, EventStore, Position, ReadStream, Repository,
};
use eventfold_core::LayerExt;
use eventfold_log::{LogOptions, LogStore};
use eventfold_privacy::{FileKeyStore, KEYS_DIR, MasterKeySource, PrivacyLayer};
use uuid::Uuid;

use super::audit::{AuditEntry, AuditLog, Request};
use super::domain::{Auction, AuctionCommand, AuctionEvent, AuctionRejection, stream_of};
use super::read_model::{Release, SellerQuestions, seller_questions};
use super::world::{Catalogue, Mail, MailServer, OutsideWorld};

/// How long a command waits for the read model to show its events, and a start for
/// the read model to catch up with the log.
const READ_MODEL_WAIT: Duration = Duration::from_secs(30);
/// How long a stopped process may take to let go of its data directory.
const RELEASE_WAIT: Duration = Duration::from_secs(10);

/// A command the service accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    pub command_id: Uuid,
    /// By this position of the log, the command's events are stored (and the read
    /// model shows them: the service answers once it does).
    pub position: Option<Position>,
    /// The events the command decided.
    pub events: Vec<AuctionEvent>,
}

/// Why the service did not accept a command.
#[derive(Debug)]
pub enum ServiceError {
    /// The catalogue lists no such auction.
    UnknownAuction(String),
    /// The auction refused the command.
    Rejected(AuctionRejection),
    /// Something failed (the store, the read model, a file).
    Failed(anyhow::Error),
}

impl std::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServiceError::UnknownAuction(auction) => write!(f, "no auction '{auction}'"),
            ServiceError::Rejected(rejection) => write!(f, "rejected: {rejection}"),
            ServiceError::Failed(error) => write!(f, "failed: {error:#}"),
        }
    }
}

impl std::error::Error for ServiceError {}

impl From<anyhow::Error> for ServiceError {
    fn from(error: anyhow::Error) -> Self {
        ServiceError::Failed(error)
    }
}

/// One running process of the questions service.
pub struct AuctionService {
    release: Release,
    data: PathBuf,
    store: Arc<dyn EventStore>,
    privacy: PrivacyLayer,
    repository: Repository<Auction>,
    db: ReadModelDb<SqliteReadModel>,
    running: RunningProjections<SqliteReadModel>,
    dispatcher: OutboxDispatcher<SqliteReadModel>,
    world: OutsideWorld,
    audit: AuditLog,
}

impl std::fmt::Debug for AuctionService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuctionService")
            .field("release", &self.release)
            .field("data", &self.data)
            .finish_non_exhaustive()
    }
}

impl AuctionService {
    /// Starts `release` of the service on `data`. Returns once the read model has
    /// caught up with the log: when the release's projections differ from the ones
    /// that built the read model, that means rebuilt from the events.
    pub async fn open(
        data: &Path,
        world: OutsideWorld,
        release: Release,
    ) -> anyhow::Result<Arc<Self>> {
        std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
        let log = LogStore::open(data.join("events"), LogOptions::default())
            .context("opening the event store")?;
        // Personal values (the buyer's email) are sealed under their subject's key on
        // the way into the log and opened on the way out. The master key that wraps
        // the data keys is created in DATA/keys on first use here; a deployment gives
        // it from outside (EVENTFOLD_MASTER_KEY).
        let keys = FileKeyStore::open_with_source(
            &data.join(KEYS_DIR),
            MasterKeySource::resolve(None, data),
            true,
        )
        .context("opening the key store")?;
        let privacy = PrivacyLayer::new(Arc::new(keys));
        let store: Arc<dyn EventStore> = Arc::new(log.layer(privacy.clone()));
        let db = SqliteReadModel::open(data.join("read-model.sqlite"))
            .await
            .context("opening the read model")?;
        let running = release.runner(store.clone(), db.clone()).start().await?;
        if let Some(head) = store.head_position().await? {
            wait_read_model(&running, head).await?;
        }
        let dispatcher = OutboxDispatcher::new(
            store.clone(),
            db.clone(),
            Arc::new(Mailer {
                server: world.mail.clone(),
            }),
        );
        Ok(Arc::new(AuctionService {
            release,
            data: data.to_path_buf(),
            repository: Repository::new(store.clone()),
            store,
            privacy,
            db,
            running,
            dispatcher,
            audit: AuditLog::new(data.join("commands.log")),
            world,
        }))
    }

    /// The release this process runs.
    pub fn release(&self) -> Release {
        self.release
    }

    /// The event store.
    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    /// The audit log of commands.
    pub fn audit_log(&self) -> &AuditLog {
        &self.audit
    }

    /// The generation of the read model readers see.
    pub fn live_generation(&self) -> Option<u64> {
        self.running.status().live.map(|track| track.generation)
    }

    /// Handles a command: records it in the audit log, asks the outside world what
    /// the auction needs to know, lets the auction decide, and answers once the read
    /// model shows the result.
    pub async fn handle(&self, request: Request) -> Result<Handled, ServiceError> {
        let command_id = Uuid::now_v7();
        self.audit.record(&AuditEntry {
            received_at: Utc::now(),
            command_id,
            request: request.clone(),
        })?;
        let (auction, command) = self.command(request)?;
        let accepted = self
            .repository
            .handle(
                &stream_of(&auction),
                Envelope::new(command).with_command_id(command_id),
            )
            .await
            .map_err(|error| match error {
                CommandError::Rejected { reason } => ServiceError::Rejected(reason),
                other => ServiceError::Failed(other.into()),
            })?;
        if let Some(position) = accepted.position {
            wait_read_model(&self.running, position).await?;
        }
        let mut events = Vec::new();
        for written in &accepted.written {
            let count = written.last_revision.get() - written.first_revision.get() + 1;
            let stored = self
                .store
                .read_stream(
                    &written.stream,
                    ReadStream::forward()
                        .from(written.first_revision)
                        .limit(count),
                )
                .await
                .map_err(anyhow::Error::from)?;
            for event in &stored {
                events.extend(AuctionEvent::decode(event).map_err(anyhow::Error::from)?);
            }
        }
        Ok(Handled {
            command_id,
            position: accepted.position,
            events,
        })
    }

    /// The auction's command for `request`, with what the outside world says now.
    fn command(&self, request: Request) -> Result<(String, AuctionCommand), ServiceError> {
        let auction = match &request {
            Request::AskQuestion { auction, .. }
            | Request::ReadQuestion { auction, .. }
            | Request::AnswerQuestion { auction, .. } => auction.clone(),
        };
        let Some(seller) = Catalogue::seller_of(&auction) else {
            return Err(ServiceError::UnknownAuction(auction));
        };
        let command = match request {
            Request::AskQuestion {
                auction,
                buyer,
                text,
            } => AuctionCommand::Ask {
                buyer_blocked: self.world.accounts.is_blocked(seller, &buyer)?,
                buyer_email: self.world.accounts.email_of(&buyer),
                auction,
                seller: seller.to_string(),
                buyer,
                text,
            },
            Request::ReadQuestion {
                question_id,
                seller,
                ..
            } => AuctionCommand::Read {
                question_id,
                seller,
            },
            Request::AnswerQuestion {
                question_id,
                seller,
                answer,
                ..
            } => AuctionCommand::Answer {
                question_id,
                seller,
                answer,
            },
        };
        Ok((auction, command))
    }

    /// Forgets a buyer (the right to erasure): destroys the buyer's key, so every
    /// email of theirs in the log reads as redacted from now on, and appends
    /// `$subject-forgotten`, on which the read model drops its copies. Returns once
    /// the read model has.
    pub async fn forget_buyer(&self, buyer: &str) -> anyhow::Result<Position> {
        let written = self.privacy.forget(self.store.as_ref(), buyer).await?;
        wait_read_model(&self.running, written.position).await?;
        Ok(written.position)
    }

    /// Writes the read model's write-ahead log into its database file and empties it
    /// (SQLite's `wal_checkpoint(TRUNCATE)`), so that no older page of a row survives
    /// in the log file.
    pub async fn checkpoint_read_model(&self) -> anyhow::Result<()> {
        self.db
            .call(|model| {
                model
                    .connection()
                    .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            })
            .await??;
        Ok(())
    }

    /// A seller's page, from the read model.
    pub async fn seller_questions(&self, seller: &str) -> anyhow::Result<SellerQuestions> {
        seller_questions(&self.db, self.release, seller).await
    }

    /// The mail robot's pass: sends the mails waiting in the outbox; returns how many
    /// it sent. (A deployment runs `OutboxDispatcher::run` in the background; the
    /// example calls it at chosen moments so that the story is deterministic.)
    pub async fn deliver_mail(&self) -> anyhow::Result<usize> {
        let report = self.dispatcher.dispatch_pending().await?;
        if report.failed > 0 {
            return Err(anyhow!("{} mails could not be sent", report.failed));
        }
        Ok(report.done)
    }

    /// Every mail the read model recorded in its outbox (sent or not), oldest first.
    pub async fn outbox(&self) -> anyhow::Result<Vec<Effect>> {
        Ok(self.db.effects(None, 1_000).await?)
    }

    /// Mails recorded in the outbox and not sent yet.
    pub async fn mail_waiting(&self) -> anyhow::Result<usize> {
        let pending = self.db.effects(Some(EffectState::Pending), 1_000).await?;
        Ok(pending.len())
    }

    /// Restores the read model from the events: rebuilds it from position 0 through
    /// this release's projections, beside the live one, and swaps it in. Replayed
    /// events send no mail. Returns the new generation.
    pub async fn restore_read_model(&self) -> anyhow::Result<u64> {
        let generation = self.running.rebuild().await?;
        if let Some(head) = self.store.head_position().await? {
            wait_read_model(&self.running, head).await?;
        }
        let live = self.live_generation();
        if live != Some(generation) {
            return Err(anyhow!(
                "generation {generation} was rebuilt, but {live:?} is live"
            ));
        }
        Ok(generation)
    }

    /// Stops the process cleanly: lets the read model catch up, then closes.
    pub async fn shut_down(self: Arc<Self>) -> anyhow::Result<()> {
        if let Some(head) = self.store.head_position().await? {
            wait_read_model(&self.running, head).await?;
        }
        self.crash().await
    }

    /// Kills the process: nothing is flushed or finished, the tasks in flight are
    /// abandoned, and the outbox's pending mails stay unsent. Returns once the data
    /// directory is free for the next process.
    ///
    /// What is acknowledged is durable (the store answers an append after its fsync,
    /// SQLite commits with `synchronous = FULL`), so a `kill -9` leaves the same state.
    pub async fn crash(self: Arc<Self>) -> anyhow::Result<()> {
        let store: Weak<dyn EventStore> = Arc::downgrade(&self.store);
        let lock = self.data.join("events").join("LOCK");
        if Arc::strong_count(&self) > 1 {
            return Err(anyhow!("the service is still in use (a web app holds it)"));
        }
        drop(self);
        // The projection tasks hold the store until the runtime has dropped them; and
        // the last of them to let go runs the store's drop (which finishes its writer
        // before it unlocks the directory) after the count is already zero. So wait
        // for the directory's lock itself to be free.
        let released = async {
            while store.strong_count() > 0 || !lock_is_free(&lock) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(RELEASE_WAIT, released)
            .await
            .map_err(|_| anyhow!("the event store was not released"))
    }
}

async fn wait_read_model(
    running: &RunningProjections<SqliteReadModel>,
    position: Position,
) -> anyhow::Result<()> {
    tokio::time::timeout(READ_MODEL_WAIT, running.wait_until_live_at(position))
        .await
        .map_err(|_| anyhow!("the read model did not reach position {position}"))??;
    Ok(())
}

/// Sends the outbox's mails through the mail server.
struct Mailer {
    server: MailServer,
}

#[async_trait::async_trait]
impl EffectExecutor for Mailer {
    async fn execute(&self, effect: &Effect) -> Result<(), HandlerError> {
        let field = |name: &str| {
            effect.payload[name]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        let mail = Mail {
            idempotency_key: effect.key.clone(),
            to: field("to"),
            subject: field("subject"),
            body: field("body"),
        };
        self.server.send(&mail).map_err(|e| e.to_string().into())
    }
}

/// Whether no one holds the store's lock file (taken and released at once).
fn lock_is_free(path: &Path) -> bool {
    std::fs::File::open(path).is_ok_and(|file| file.try_lock().is_ok())
}
