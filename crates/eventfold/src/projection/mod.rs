//! Projections: deterministic folds of the `$all` log into read models, with
//! checkpoints committed in the same transaction as the read model, rebuilds beside
//! the live read model, and side effects through an outbox.
//!
//! - [`Projection`]: `setup` creates a generation's tables, `apply` folds one event
//!   into them inside the read model's transaction. Several projections sharing one
//!   read-model database form a *group*, run and rebuilt together by one
//!   [`ProjectionRunner`].
//! - Read models: [`SqliteReadModel`] and [`PostgresReadModel`] (transactional: the
//!   projections' writes, the checkpoint and the outbox entries of a batch commit
//!   together), [`MemoryReadModel`] for tests. Each runs on its own thread behind a
//!   [`ReadModelDb`] handle, so blocking database calls never block the async runtime.
//! - **Generations.** Every build of a group is a generation with its own tables
//!   (`<table>_g<generation>`); readers use views named after the tables, which point
//!   at the live generation. A rebuild (new code, or [`RunningProjections::rebuild`])
//!   builds a new generation from position 0 beside the live one, which keeps running;
//!   when the new one has reached the live one's checkpoint, one transaction makes it
//!   live, repoints the views and drops the old tables.
//! - **Live or replay.** A generation *replays* every event up to its `replay_until`
//!   position: the checkpoint of the generation that was live when it was created (or,
//!   for a group's first generation, the head of the log then). Later events are
//!   *live*. [`Context::effect`] does nothing in replay.
//! - **Outbox.** A live effect is recorded in the outbox table of the read-model
//!   database, in the batch's transaction, under the key `<group>:<event id>:<effect name>`;
//!   a key already there is not recorded again (so the live generation and a rebuild
//!   racing over the same events record it once). An [`OutboxDispatcher`] hands pending
//!   effects to an [`EffectExecutor`] and then marks them done.
//!
//! Delivery guarantee, exactly: every live effect is *recorded* exactly once, across
//! crashes, retries and rebuilds. It is *executed* at least once: a crash between the
//! executor's success and the mark-done runs it again, with the same key. An executor
//! that makes its external call idempotent by that key (an `Idempotency-Key` header, a
//! unique constraint) therefore takes effect exactly once.
//!
//! The guide is the "Projections" section of `docs/framework.md`.

mod generation;
mod history;
mod ledger;
mod memory;
mod outbox;
#[cfg(feature = "postgres")]
mod postgres;
mod read_model;
mod runner;
#[cfg(feature = "sqlite")]
mod sqlite;

use eventfold_core::{Position, RecordedEvent};
use uuid::Uuid;

pub use history::{Compensated, Invalidation};
pub use memory::{MemoryReadModel, MemoryTx};
pub use outbox::{DispatchReport, Effect, EffectExecutor, EffectState, OutboxDispatcher};
#[cfg(feature = "postgres")]
pub use postgres::PostgresReadModel;
pub use read_model::{ReadModel, ReadModelDb};
pub use runner::{
    ProjectionRunner, ProjectionStatus, RetryPolicy, RunningProjections, TrackState, TrackStatus,
};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteReadModel;

/// What a projection's handler may fail with: any error (a database error, a decoding
/// error). The runner rolls the batch back, keeps the message in the status and
/// retries with back-off.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// A read model's fold: events in, rows out, in the read model's transaction.
///
/// `M` is the read model ([`SqliteReadModel`], [`PostgresReadModel`],
/// [`MemoryReadModel`]); `M::Tx` is the transaction the handler writes through. A
/// projection is deterministic: it never calls the outside world (what the outside
/// world said is on the event), and it uses [`Context::table`] for its tables so that
/// a rebuild writes into a new generation. Side effects go through
/// [`Context::effect`].
///
/// Events arrive as stored, after the runner's [`Upcaster`](crate::Upcaster), in
/// global-position order; decode them with [`DomainEvent::decode`](crate::DomainEvent::decode)
/// and ignore the types the projection does not know.
///
/// ```
/// use eventfold::projection::{Context, HandlerError, MemoryReadModel, MemoryTx, Projection, Tables};
/// use eventfold::RecordedEvent;
///
/// /// Events per stream.
/// struct EventsPerStream;
///
/// impl Projection<MemoryReadModel> for EventsPerStream {
///     fn name(&self) -> &str { "events-per-stream" }
///     fn tables(&self) -> &[&str] { &["counts"] }
///     fn apply(&self, tx: &mut MemoryTx<'_>, event: &RecordedEvent, ctx: &mut Context<'_>)
///         -> Result<(), HandlerError>
///     {
///         let counts = tx.table(&ctx.table("counts"));
///         let count = counts.entry(event.stream.clone()).or_insert(0.into());
///         *count = (count.as_u64().unwrap_or(0) + 1).into();
///         Ok(())
///     }
/// }
/// # let _ = EventsPerStream;
/// ```
pub trait Projection<M: ReadModel>: Send + Sync + 'static {
    /// The projection's stable name. With [`version`](Projection::version) it makes up
    /// the group's fingerprint: a changed fingerprint means a rebuild.
    fn name(&self) -> &str;

    /// The version of the projection's code. Raise it whenever the read model's shape
    /// or meaning changes: the runner then builds a new generation from position 0.
    fn version(&self) -> u32 {
        1
    }

    /// The tables this projection owns, by logical name. Each generation has its own
    /// copy (see [`Tables::name`]); readers see a view of each logical name that
    /// points at the live generation (SQL read models). Logical names are unique in
    /// the database.
    fn tables(&self) -> &[&str];

    /// Creates the tables of a new generation (an empty read model), inside the
    /// transaction that creates the generation.
    fn setup(&self, tx: &mut M::Tx<'_>, tables: &Tables) -> Result<(), HandlerError> {
        let _ = (tx, tables);
        Ok(())
    }

    /// Folds one event into the read model. Runs inside the batch's transaction:
    /// returning an error rolls the whole batch back.
    fn apply(
        &self,
        tx: &mut M::Tx<'_>,
        event: &RecordedEvent,
        ctx: &mut Context<'_>,
    ) -> Result<(), HandlerError>;

    /// Drops what the read model keeps of a person who was forgotten: called, inside
    /// the batch's transaction and in its place in the log, for each
    /// `$subject-forgotten` event of the `$subjects` stream (which `eventfold forget`
    /// appends once the subject's key is destroyed), in replay as in live mode. Those
    /// events do not reach [`apply`](Projection::apply).
    ///
    /// A projection that copies personal values (see [`Personal`](crate::Personal))
    /// into its tables deletes or blanks them here; events read after the forget show
    /// the values redacted, so a rebuild does not bring them back. The default keeps
    /// nothing to drop.
    fn forget(
        &self,
        tx: &mut M::Tx<'_>,
        subject: &str,
        ctx: &mut Context<'_>,
    ) -> Result<(), HandlerError> {
        let _ = (tx, subject, ctx);
        Ok(())
    }

    /// A compensation (`$cancelled`, `$corrected`) of an event this generation
    /// applied before the compensation was written: called in its place in the log,
    /// inside the batch's transaction, instead of [`apply`](Projection::apply).
    /// `compensated.original` is the event as it was applied (as stored, before any
    /// upcast, with the compensations this generation's build knew);
    /// [`Compensated::corrected`] what it should have been (`None`: it should not
    /// have been). A projection that can undo or redo its effect on the read model
    /// does so and answers [`Reaction::Handled`].
    ///
    /// The default answers [`Reaction::Rebuild`]: the runner builds a new generation
    /// beside the live one, folding the history as corrected (cancelled events left
    /// out, corrected ones with their corrected data), and swaps it in.
    /// Compensations up to a generation's horizon (for a rebuild, the live
    /// generation's checkpoint when it started) never reach this hook: the build
    /// applies them as it goes. A hook that fixes in place should expect the same
    /// event compensated more than once (a second `$cancelled` of it, say).
    fn compensate(
        &self,
        tx: &mut M::Tx<'_>,
        compensated: &Compensated,
        ctx: &mut Context<'_>,
    ) -> Result<Reaction, HandlerError> {
        let _ = (tx, compensated, ctx);
        Ok(Reaction::Rebuild)
    }

    /// A stream surgery's notice that events of `invalidation.stream` below
    /// `invalidation.before` were replaced (their copies are in
    /// `invalidation.replaced_by`, and were applied already): called in its place in
    /// the log, like [`compensate`](Projection::compensate). A projection that can
    /// drop what it derived from those events does so and answers
    /// [`Reaction::Handled`]; one that never reads the stream answers the same.
    ///
    /// The default answers [`Reaction::Rebuild`]: a new generation is built without
    /// the replaced events and swapped in.
    fn invalidated(
        &self,
        tx: &mut M::Tx<'_>,
        invalidation: &Invalidation,
        ctx: &mut Context<'_>,
    ) -> Result<Reaction, HandlerError> {
        let _ = (tx, invalidation, ctx);
        Ok(Reaction::Rebuild)
    }
}

/// What a projection did about a compensation or a surgery's notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaction {
    /// The read model is right as it is (the projection fixed it, or never used the
    /// events concerned).
    Handled,
    /// The read model cannot be fixed in place: rebuild the group from position 0
    /// beside the live generation, and swap it in when it has caught up.
    Rebuild,
}

/// The subject a `$subject-forgotten` notification names, when `event` is one.
pub(crate) fn forgotten_subject(event: &RecordedEvent) -> Result<Option<String>, HandlerError> {
    if event.stream != eventfold_core::SUBJECTS_STREAM
        || event.event_type != eventfold_core::SUBJECT_FORGOTTEN_EVENT_TYPE
    {
        return Ok(None);
    }
    #[derive(serde::Deserialize)]
    struct Forgotten {
        subject: String,
    }
    let forgotten: Forgotten = serde_json::from_slice(&event.data).map_err(|e| {
        format!(
            "the {} event at position {} has no subject: {e}",
            eventfold_core::SUBJECT_FORGOTTEN_EVENT_TYPE,
            event.position
        )
    })?;
    Ok(Some(forgotten.subject))
}

/// The physical names of one generation's tables.
///
/// ```
/// use eventfold::projection::Tables;
/// assert_eq!(Tables::new(3).name("unread"), "unread_g3");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tables {
    generation: u64,
}

impl Tables {
    /// The tables of generation `generation`.
    pub fn new(generation: u64) -> Self {
        Tables { generation }
    }

    /// The generation.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The physical name of table `logical` in this generation: `<logical>_g<n>`.
    pub fn name(&self, logical: &str) -> String {
        format!("{logical}_g{}", self.generation)
    }
}

/// Whether an event is replayed (the read model is being rebuilt from history) or
/// seen live (it is new to the read-model database).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The event is at or before the generation's `replay_until`: its effects were
    /// already recorded (or, for a new group, belong to history). Effects are dropped.
    Replay,
    /// The event is new: effects are recorded in the outbox.
    Live,
}

/// An effect a handler asked for, before it is recorded.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EffectRequest {
    pub(crate) key: String,
    pub(crate) name: String,
    pub(crate) payload: serde_json::Value,
    pub(crate) position: Position,
}

/// What a handler knows besides the event: the mode, its tables, and the outbox.
#[derive(Debug)]
pub struct Context<'a> {
    mode: Mode,
    tables: Tables,
    group: &'a str,
    event_id: Uuid,
    position: Position,
    effects: &'a mut Vec<EffectRequest>,
}

impl<'a> Context<'a> {
    pub(crate) fn new(
        mode: Mode,
        tables: Tables,
        group: &'a str,
        event: &RecordedEvent,
        effects: &'a mut Vec<EffectRequest>,
    ) -> Self {
        Context {
            mode,
            tables,
            group,
            event_id: event.id,
            position: event.position,
            effects,
        }
    }

    /// Whether the event is replayed or live.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Whether the event is replayed (effects are dropped).
    pub fn is_replay(&self) -> bool {
        self.mode == Mode::Replay
    }

    /// The physical name of the projection's table `logical` in the generation being
    /// written (see [`Tables::name`]).
    pub fn table(&self, logical: &str) -> String {
        self.tables.name(logical)
    }

    /// The generation's tables.
    pub fn tables(&self) -> Tables {
        self.tables
    }

    /// Asks for side effect `name` (an email, a payment, a webhook) with `payload`.
    ///
    /// Live, it is recorded in the outbox under the idempotency key
    /// `<group>:<event id>:<name>` in the batch's transaction, unless that key is
    /// already there; in replay it is dropped. `name` must be unique per event within
    /// the group (groups sharing a database never share keys): include the recipient
    /// when one event causes several effects of a kind (`email:seller-17`). Returns the
    /// key.
    pub fn effect(&mut self, name: impl Into<String>, payload: serde_json::Value) -> String {
        let name = name.into();
        let key = effect_key(self.group, self.event_id, &name);
        if self.mode == Mode::Live {
            self.effects.push(EffectRequest {
                key: key.clone(),
                name,
                payload,
                position: self.position,
            });
        }
        key
    }
}

/// The idempotency key of effect `name` of event `event_id` in projection group
/// `group`.
pub(crate) fn effect_key(group: &str, event_id: Uuid, name: &str) -> String {
    format!("{group}:{event_id}:{name}")
}

/// What can go wrong while running projections and their outbox.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionError {
    /// The event store failed (reading `$all`, or the upcaster).
    #[error(transparent)]
    Store(#[from] eventfold_core::Error),
    /// A projection's handler failed on an event; the batch was rolled back.
    #[error("projection '{projection}' failed at position {position}: {source}")]
    Handler {
        /// The projection's name.
        projection: String,
        /// The position of the event it failed on.
        position: Position,
        /// What the handler said.
        source: HandlerError,
    },
    /// A projection's `setup` failed while creating a generation.
    #[error("projection '{projection}' could not set up generation {generation}: {source}")]
    Setup {
        /// The projection's name.
        projection: String,
        /// The generation being created.
        generation: u64,
        /// What `setup` said.
        source: HandlerError,
    },
    /// The read-model database failed.
    #[error("read-model database: {source}")]
    Database {
        /// The database's error.
        source: HandlerError,
    },
    /// A handler or the database code panicked on the read model's thread; the
    /// transaction was rolled back.
    #[error("read-model thread panicked: {message}")]
    Panicked {
        /// The panic message.
        message: String,
    },
    /// The read model's thread is gone (its database could not be opened, or it
    /// panicked outside a transaction).
    #[error("the read-model thread has stopped")]
    ReadModelStopped,
    /// The runner's bookkeeping in the database says something impossible (a
    /// corrupted or hand-edited row).
    #[error("projection bookkeeping of group '{group}': {reason}")]
    Bookkeeping {
        /// The group.
        group: String,
        /// What is wrong.
        reason: String,
    },
    /// A rebuild of the group is already under way.
    #[error("group '{group}' is already building generation {generation}")]
    RebuildInProgress {
        /// The group.
        group: String,
        /// The generation being built.
        generation: u64,
    },
    /// The group has no projection, or two with the same name.
    #[error("invalid projection group '{group}': {reason}")]
    InvalidGroup {
        /// The group.
        group: String,
        /// What is wrong.
        reason: String,
    },
    /// A track stopped after its retries were exhausted; the last error is in the
    /// status.
    #[error("generation {generation} of group '{group}' is faulted: {last_error}")]
    Faulted {
        /// The group.
        group: String,
        /// The faulted generation.
        generation: u64,
        /// The error of the last attempt.
        last_error: String,
    },
    /// A batch would record the group's first effect before its effect ledger was
    /// started; the runner starts it and applies the batch again (never returned).
    #[doc(hidden)]
    #[error("projection group '{group}' records its first effect: its effect ledger starts first")]
    EffectLedgerNotStarted {
        /// The group.
        group: String,
        /// The ledger's first mark: the last position before the batch, or the last
        /// the generation replays when that is later (history records no effect).
        through: Option<Position>,
    },
}

impl ProjectionError {
    /// A database error.
    pub(crate) fn database(error: impl Into<HandlerError>) -> Self {
        ProjectionError::Database {
            source: error.into(),
        }
    }
}
