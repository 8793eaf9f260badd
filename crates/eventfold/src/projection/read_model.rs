//! The read-model databases and the thread each one runs on.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, mpsc};

use eventfold_core::Position;
use tokio::sync::{Notify, oneshot};

use super::ProjectionError;
use super::outbox::{Effect, EffectState};

/// Rows of the runner's bookkeeping. The module is private, so the types cannot be
/// named outside the crate, which keeps [`ReadModel`] implementable only here.
pub(crate) mod rows {
    use eventfold_core::Position;

    /// The state of one generation of a group.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum GenerationState {
        /// Being built beside the live one; readers do not see it.
        Building,
        /// What readers see (at most one per group).
        Live,
        /// Replaced by a newer generation; its tables are gone.
        Retired,
    }

    impl GenerationState {
        pub fn as_str(self) -> &'static str {
            match self {
                GenerationState::Building => "building",
                GenerationState::Live => "live",
                GenerationState::Retired => "retired",
            }
        }

        pub fn parse(text: &str) -> Option<Self> {
            match text {
                "building" => Some(GenerationState::Building),
                "live" => Some(GenerationState::Live),
                "retired" => Some(GenerationState::Retired),
                _ => None,
            }
        }
    }

    /// One generation of a projection group, as stored.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct GenerationRow {
        pub group: String,
        pub generation: u64,
        /// `name@version` of each projection, sorted, joined by `,`.
        pub fingerprint: String,
        pub state: GenerationState,
        /// The last position replayed (effects dropped); `None`: every event is live.
        pub replay_until: Option<Position>,
        /// The last position applied; `None`: nothing yet.
        pub checkpoint: Option<Position>,
        /// `(logical, physical)` names of the generation's tables.
        pub tables: Vec<(String, String)>,
    }
}

use rows::GenerationRow;

/// A transactional database holding read models: [`SqliteReadModel`](super::SqliteReadModel),
/// [`PostgresReadModel`](super::PostgresReadModel) or [`MemoryReadModel`](super::MemoryReadModel).
///
/// `Tx` is what projections write through. The other methods are the runner's
/// bookkeeping (generations, checkpoints, the outbox); each is called inside a
/// transaction opened by [`transaction`](ReadModel::transaction), so the runner's
/// rows commit with the projections' writes. The trait is implemented in this crate
/// only (its bookkeeping types are private).
pub trait ReadModel: Send + Sized + 'static {
    /// The transaction handle projections write through.
    type Tx<'t>;

    /// Runs `f` in one transaction: commits when it returns `Ok`, rolls back otherwise.
    fn transaction<R>(
        &mut self,
        f: impl FnOnce(&mut Self::Tx<'_>) -> Result<R, ProjectionError>,
    ) -> Result<R, ProjectionError>;

    /// Every generation of `group`, oldest first. A PostgreSQL read model locks them
    /// until the transaction ends, so two runners of one group take turns.
    #[doc(hidden)]
    fn generations(
        tx: &mut Self::Tx<'_>,
        group: &str,
    ) -> Result<Vec<GenerationRow>, ProjectionError>;

    /// Inserts a new generation, or updates the state and checkpoint of one.
    #[doc(hidden)]
    fn put_generation(tx: &mut Self::Tx<'_>, row: &GenerationRow) -> Result<(), ProjectionError>;

    /// Records an effect unless its key is there; whether it was recorded.
    #[doc(hidden)]
    fn record_effect(tx: &mut Self::Tx<'_>, effect: &Effect) -> Result<bool, ProjectionError>;

    /// Effects in `state`, oldest position first, at most `limit`.
    #[doc(hidden)]
    fn effects(
        tx: &mut Self::Tx<'_>,
        state: Option<EffectState>,
        limit: u32,
    ) -> Result<Vec<Effect>, ProjectionError>;

    /// Stores the outcome of an attempt to execute effect `key`.
    #[doc(hidden)]
    fn finish_effect(
        tx: &mut Self::Tx<'_>,
        key: &str,
        state: EffectState,
        attempts: u32,
        last_error: Option<&str>,
    ) -> Result<(), ProjectionError>;

    /// Makes the view `logical` show table `physical` (`None`: drops the view).
    #[doc(hidden)]
    fn point_view(
        tx: &mut Self::Tx<'_>,
        logical: &str,
        physical: Option<&str>,
    ) -> Result<(), ProjectionError>;

    /// Drops table `physical` if it exists.
    #[doc(hidden)]
    fn drop_table(tx: &mut Self::Tx<'_>, physical: &str) -> Result<(), ProjectionError>;
}

type Job<M> = Box<dyn FnOnce(&mut M) + Send>;

/// A handle to a read-model database running on its own thread. Cloning it shares the
/// database (the runner, the outbox dispatcher and readers use the same one); the
/// thread ends when the last handle is dropped.
///
/// ```
/// use eventfold::projection::MemoryReadModel;
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let db = MemoryReadModel::open().await.unwrap();
/// let tables = db.call(|model| model.table_names()).await.unwrap();
/// assert!(tables.is_empty());
/// # });
/// ```
pub struct ReadModelDb<M> {
    jobs: mpsc::Sender<Job<M>>,
    effects_recorded: Arc<Notify>,
}

impl<M> Clone for ReadModelDb<M> {
    fn clone(&self) -> Self {
        ReadModelDb {
            jobs: self.jobs.clone(),
            effects_recorded: self.effects_recorded.clone(),
        }
    }
}

impl<M> std::fmt::Debug for ReadModelDb<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadModelDb").finish_non_exhaustive()
    }
}

impl<M: ReadModel> ReadModelDb<M> {
    /// Starts the database's thread and opens the database on it with `open` (database
    /// clients that block must not run on the async runtime).
    pub async fn spawn(
        name: &str,
        open: impl FnOnce() -> Result<M, ProjectionError> + Send + 'static,
    ) -> Result<Self, ProjectionError> {
        let (jobs, queue) = mpsc::channel::<Job<M>>();
        let (opened, opened_rx) = oneshot::channel();
        std::thread::Builder::new()
            .name(format!("eventfold-read-model-{name}"))
            .spawn(move || {
                let mut model = match open() {
                    Ok(model) => {
                        let _ = opened.send(Ok(()));
                        model
                    }
                    Err(error) => {
                        let _ = opened.send(Err(error));
                        return;
                    }
                };
                // One job at a time: the database sees one transaction at a time from
                // this process, in the order they were asked for.
                while let Ok(job) = queue.recv() {
                    job(&mut model);
                }
            })
            .map_err(ProjectionError::database)?;
        opened_rx
            .await
            .map_err(|_| ProjectionError::ReadModelStopped)??;
        Ok(ReadModelDb {
            jobs,
            effects_recorded: Arc::new(Notify::new()),
        })
    }

    /// Runs `f` on the database's thread and returns its result. This is how readers
    /// query the read model (through the views, or
    /// [`MemoryReadModel::live_table`](super::MemoryReadModel::live_table)).
    ///
    /// A panic in `f` is caught and returned as [`ProjectionError::Panicked`]; the
    /// thread goes on.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut M) -> R + Send + 'static,
    ) -> Result<R, ProjectionError> {
        let (reply, answer) = oneshot::channel();
        let job: Job<M> = Box::new(move |model| {
            // A panicking handler leaves its transaction unfinished; the transaction's
            // drop rolls it back during unwinding, so the model stays consistent.
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| f(model)));
            let _ = reply.send(result.map_err(|panic| ProjectionError::Panicked {
                message: panic_message(panic.as_ref()),
            }));
        });
        self.jobs
            .send(job)
            .map_err(|_| ProjectionError::ReadModelStopped)?;
        answer
            .await
            .map_err(|_| ProjectionError::ReadModelStopped)?
    }

    /// Runs `f` in one transaction on the database's thread.
    pub(crate) async fn transaction<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut M::Tx<'_>) -> Result<R, ProjectionError> + Send + 'static,
    ) -> Result<R, ProjectionError> {
        self.call(move |model| model.transaction(f)).await?
    }

    /// Every effect in `state` (all when `None`), oldest first, at most `limit`.
    pub async fn effects(
        &self,
        state: Option<EffectState>,
        limit: u32,
    ) -> Result<Vec<Effect>, ProjectionError> {
        self.transaction(move |tx| M::effects(tx, state, limit))
            .await
    }

    /// The checkpoint of the live generation of `group`: the last position its read
    /// model includes (`None` when it has none yet, or the group has no live generation).
    pub async fn live_checkpoint(&self, group: &str) -> Result<Option<Position>, ProjectionError> {
        let group = group.to_string();
        self.transaction(move |tx| {
            Ok(M::generations(tx, &group)?
                .into_iter()
                .find(|row| row.state == rows::GenerationState::Live)
                .and_then(|row| row.checkpoint))
        })
        .await
    }

    /// For each of `groups`, the last position at or before which every effect is
    /// finished (`None`: not known): before its oldest pending effect, and never past
    /// its furthest running checkpoint, up to which every effect is recorded. The
    /// checkpoints are read before the pending effects: a batch that commits in
    /// between records effects only past the checkpoint read, so the answer holds on
    /// every isolation level. Without a pending effect among the `limit` oldest, a
    /// group's answer is its checkpoint only when those were all there are.
    pub(crate) async fn effects_finished_through(
        &self,
        groups: Vec<String>,
        limit: u32,
    ) -> Result<Vec<(String, Option<Position>)>, ProjectionError> {
        self.transaction(move |tx| {
            let mut checkpoints = Vec::with_capacity(groups.len());
            for group in groups {
                let checkpoint = M::generations(tx, &group)?
                    .into_iter()
                    .filter(|row| row.state != rows::GenerationState::Retired)
                    .filter_map(|row| row.checkpoint)
                    .max();
                checkpoints.push((group, checkpoint));
            }
            let pending = M::effects(tx, Some(EffectState::Pending), limit)?;
            let complete = pending.len() < limit as usize;
            Ok(checkpoints
                .into_iter()
                .map(|(group, checkpoint)| {
                    let oldest = pending
                        .iter()
                        .filter(|effect| effect.group == group)
                        .map(|effect| effect.position)
                        .min();
                    let through = match oldest {
                        Some(oldest) => oldest.get().checked_sub(1).map(Position).min(checkpoint),
                        None if complete => checkpoint,
                        None => None,
                    };
                    (group, through)
                })
                .collect())
        })
        .await
    }

    /// Woken when a batch recorded effects, so a dispatcher need not poll.
    pub(crate) fn effects_recorded(&self) -> &Arc<Notify> {
        &self.effects_recorded
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// Converts a position to the signed 64-bit integer SQL databases store.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn position_to_sql(position: Position) -> Result<i64, ProjectionError> {
    i64::try_from(position.get())
        .map_err(|_| ProjectionError::database(format!("position {position} exceeds i64")))
}

/// Converts a stored position back.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn position_from_sql(value: i64) -> Result<Position, ProjectionError> {
    u64::try_from(value)
        .map(Position)
        .map_err(|_| ProjectionError::database(format!("stored position {value} is negative")))
}

/// Encodes a generation's table list for storage.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn tables_to_json(tables: &[(String, String)]) -> String {
    serde_json::to_string(tables).unwrap_or_else(|_| "[]".to_string())
}

/// Decodes a stored table list.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn tables_from_json(text: &str) -> Result<Vec<(String, String)>, ProjectionError> {
    serde_json::from_str(text)
        .map_err(|e| ProjectionError::database(format!("stored table list is unreadable: {e}")))
}

/// Quotes an SQL identifier (both SQLite and PostgreSQL use double quotes).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The statements that make view `logical` show table `physical` (`None`: drop it),
/// the same in SQLite and PostgreSQL.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn point_view_sql(logical: &str, physical: Option<&str>) -> Vec<String> {
    let view = quote_ident(logical);
    let mut statements = vec![format!("DROP VIEW IF EXISTS {view}")];
    if let Some(physical) = physical {
        statements.push(format!(
            "CREATE VIEW {view} AS SELECT * FROM {}",
            quote_ident(physical)
        ));
    }
    statements
}

/// The statement that drops table `physical`.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn drop_table_sql(physical: &str) -> String {
    format!("DROP TABLE IF EXISTS {}", quote_ident(physical))
}

/// One row of the `eventfold_outbox` table, as both SQL read models select it:
/// `key, grp, name, payload, position, state, attempts, last_error`.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) struct EffectRow {
    pub key: String,
    pub group: String,
    pub name: String,
    pub payload: String,
    pub position: i64,
    pub state: String,
    pub attempts: i64,
    pub last_error: Option<String>,
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl EffectRow {
    /// The effect the row stores, with its payload, position and state checked.
    pub(crate) fn into_effect(self) -> Result<Effect, ProjectionError> {
        Ok(Effect {
            key: self.key,
            group: self.group,
            name: self.name,
            payload: serde_json::from_str(&self.payload).map_err(ProjectionError::database)?,
            position: position_from_sql(self.position)?,
            state: EffectState::parse(&self.state).ok_or_else(|| {
                ProjectionError::database(format!("unknown effect state '{}'", self.state))
            })?,
            attempts: u32::try_from(self.attempts).unwrap_or(u32::MAX),
            last_error: self.last_error,
        })
    }
}
