//! The runner: follows `$all` for each generation of a group it runs (a *track*),
//! one transaction per page of events, with back-off on faults and a status anyone
//! can watch.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventfold_core::{AllFilter, EventStore, Position, ReadAll};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::generation::{self, Batch, BatchOutcome, GroupCode, TrackStart};
use super::history::{History, Seen};
use super::ledger;
use super::read_model::{ReadModel, ReadModelDb};
use super::{Projection, ProjectionError};
use crate::event::{Upcaster, identity};

/// Events per batch (one page of `$all`, one transaction) unless configured.
const BATCH_EVENTS_DEFAULT: u64 = 1_000;
/// How often an idle track checks whether another runner retired its generation (it
/// also finds out with its next batch).
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// How a track retries after a fault (a handler error, a database or store error):
/// exponential back-off from `first_delay`, doubling up to `max_delay`, and after
/// `attempts_max` consecutive failures the track stops as [`TrackState::Faulted`].
///
/// ```
/// use std::time::Duration;
/// use eventfold::projection::RetryPolicy;
/// let policy = RetryPolicy::default();
/// assert_eq!(policy.delay(1), Duration::from_millis(100));
/// assert_eq!(policy.delay(2), Duration::from_millis(200));
/// assert_eq!(policy.delay(30), Duration::from_secs(10));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The wait after the first failure.
    pub first_delay: Duration,
    /// The longest wait between two attempts.
    pub max_delay: Duration,
    /// Consecutive failures after which the track stops as faulted.
    pub attempts_max: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
            attempts_max: 8,
        }
    }
}

impl RetryPolicy {
    /// The wait after the `failures`-th consecutive failure (from 1).
    pub fn delay(&self, failures: u32) -> Duration {
        let factor = 1u32
            .checked_shl(failures.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.first_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }
}

/// What a track is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TrackState {
    /// Reading and applying events that were already in the log.
    CatchingUp,
    /// Has applied everything in the log and waits for new events.
    Live,
    /// The last attempt failed; it waits out the back-off and tries again.
    Retrying,
    /// Gave up after [`RetryPolicy::attempts_max`] failures; restart the runner.
    Faulted,
    /// Stopped: another runner swapped a newer generation in, or
    /// [`RunningProjections::stop`] stopped the runner.
    Stopped,
}

/// The progress of one generation run by this runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackStatus {
    /// The generation.
    pub generation: u64,
    /// What the track is doing.
    pub state: TrackState,
    /// The last position applied (the checkpoint), if any.
    pub position: Option<Position>,
    /// The head of the log when last looked at.
    pub head: Option<Position>,
    /// How many positions of `$all` the read model is behind the head.
    pub lag: u64,
    /// Events up to here are replayed (effects dropped).
    pub replay_until: Option<Position>,
    /// The message of the last failure, kept after recovery.
    pub last_error: Option<String>,
    /// Consecutive failures so far (0 after a success).
    pub retries: u32,
}

impl TrackStatus {
    fn new(start: &TrackStart, head: Option<Position>) -> Self {
        let mut status = TrackStatus {
            generation: start.generation,
            state: TrackState::CatchingUp,
            position: start.checkpoint,
            head,
            lag: 0,
            replay_until: start.replay_until,
            last_error: None,
            retries: 0,
        };
        status.set_head(head);
        status
    }

    fn set_head(&mut self, head: Option<Position>) {
        self.head = head;
        let read = self.position.map_or(0, |p| p.get() + 1);
        let exist = head.map_or(0, |h| h.get() + 1);
        self.lag = exist.saturating_sub(read);
    }
}

/// The status of a group in this runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectionStatus {
    /// The group.
    pub group: String,
    /// `name@version` of each projection of the group.
    pub fingerprint: String,
    /// The generation readers see, when this runner's code runs it.
    pub live: Option<TrackStatus>,
    /// A generation being built: a rebuild beside the live one, or the group's first
    /// generation until it has replayed the history that was there when it started
    /// (readers see it once it is swapped in, then it moves to `live`).
    pub building: Option<TrackStatus>,
}

impl ProjectionStatus {
    /// The lag of the live generation (`None` while this runner has none).
    pub fn lag(&self) -> Option<u64> {
        self.live.as_ref().map(|live| live.lag)
    }

    /// The first faulted track, if any.
    pub fn faulted(&self) -> Option<&TrackStatus> {
        [&self.live, &self.building]
            .into_iter()
            .flatten()
            .find(|track| track.state == TrackState::Faulted)
    }

    fn track_mut(&mut self, generation: u64) -> Option<&mut TrackStatus> {
        [&mut self.live, &mut self.building]
            .into_iter()
            .flatten()
            .find(|track| track.generation == generation)
    }
}

/// Runs a group of projections sharing one read-model database.
///
/// ```
/// use std::sync::Arc;
/// use eventfold::projection::{Context, HandlerError, MemoryReadModel, MemoryTx, Projection, ProjectionRunner};
/// use eventfold::{EventData, EventStore, ExpectedVersion, InMemoryStore, RecordedEvent};
///
/// struct Count;
/// impl Projection<MemoryReadModel> for Count {
///     fn name(&self) -> &str { "count" }
///     fn tables(&self) -> &[&str] { &["count"] }
///     fn apply(&self, tx: &mut MemoryTx<'_>, _: &RecordedEvent, ctx: &mut Context<'_>) -> Result<(), HandlerError> {
///         let n = tx.table(&ctx.table("count")).entry("all".into()).or_insert(0.into());
///         *n = (n.as_u64().unwrap_or(0) + 1).into();
///         Ok(())
///     }
/// }
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store = Arc::new(InMemoryStore::new());
/// let written = store
///     .append("a-1", ExpectedVersion::Any, vec![EventData::json("Happened", &1).unwrap()])
///     .await
///     .unwrap();
/// let db = MemoryReadModel::open().await.unwrap();
/// let running = ProjectionRunner::new(store.clone(), db.clone(), "counts")
///     .with_projection(Count)
///     .start()
///     .await
///     .unwrap();
/// running.wait_until_live_at(written.position).await.unwrap();
/// let count = db.call(|m| m.live_table("counts", "count").unwrap()["all"].clone()).await.unwrap();
/// assert_eq!(count, 1);
/// # });
/// ```
pub struct ProjectionRunner<M: ReadModel> {
    store: Arc<dyn EventStore>,
    db: ReadModelDb<M>,
    group: String,
    projections: Vec<Arc<dyn Projection<M>>>,
    upcaster: Arc<dyn Upcaster>,
    filter: AllFilter,
    retry: RetryPolicy,
    batch_events_max: u64,
}

impl<M: ReadModel> ProjectionRunner<M> {
    /// A runner of group `group` (its name in the database) over `store`, writing to `db`.
    pub fn new(store: Arc<dyn EventStore>, db: ReadModelDb<M>, group: impl Into<String>) -> Self {
        ProjectionRunner {
            store,
            db,
            group: group.into(),
            projections: Vec::new(),
            upcaster: identity(),
            filter: AllFilter::default(),
            retry: RetryPolicy::default(),
            batch_events_max: BATCH_EVENTS_DEFAULT,
        }
    }

    /// Adds a projection to the group: all of them are run, and rebuilt, together.
    pub fn with_projection(mut self, projection: impl Projection<M>) -> Self {
        self.projections.push(Arc::new(projection));
        self
    }

    /// Brings every event to the versions the projections read before they see it
    /// (the schema registry, for one).
    pub fn with_upcaster(mut self, upcaster: Arc<dyn Upcaster>) -> Self {
        self.upcaster = upcaster;
        self
    }

    /// Only events passing `filter` reach the projections (the checkpoint still
    /// moves past the others).
    pub fn with_filter(mut self, filter: AllFilter) -> Self {
        self.filter = filter;
        self
    }

    /// How faults are retried.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// At most this many events of `$all` per transaction (default 1,000).
    pub fn with_batch_events(mut self, batch_events_max: u64) -> Self {
        self.batch_events_max = batch_events_max.max(1);
        self
    }

    /// Opens the group in the database (creating its first generation, or a new one
    /// when the projections' versions changed) and starts following the log.
    pub async fn start(self) -> Result<RunningProjections<M>, ProjectionError> {
        let code = Arc::new(GroupCode::new(self.group, self.projections)?);
        let head = self.store.head_position().await?;
        // A first generation (a new database, or a lost one) replays up to where the
        // group's effects are known to be finished, so none recorded later is lost.
        let (first_replay_until, ledger_started) =
            ledger::replay_until(self.store.as_ref(), &code.name, head).await?;
        let opening = code.clone();
        let tracks = self
            .db
            .transaction(move |tx| generation::open(tx, &opening, first_replay_until))
            .await?;
        let mut status = ProjectionStatus {
            group: code.name.clone(),
            fingerprint: code.fingerprint.clone(),
            live: None,
            building: None,
        };
        for track in &tracks {
            let slot = if track.live {
                &mut status.live
            } else {
                &mut status.building
            };
            *slot = Some(TrackStatus::new(track, head));
        }
        let (status, status_rx) = watch::channel(status);
        let shared = Arc::new(Shared {
            store: self.store,
            db: self.db,
            code,
            upcaster: self.upcaster,
            filter: self.filter,
            retry: self.retry,
            batch_events_max: self.batch_events_max,
            status,
            stopping: watch::channel(false).0,
            tracks: Mutex::new(HashMap::new()),
            ledger_started: AtomicBool::new(ledger_started),
            rebuild_pending: AtomicBool::new(false),
        });
        for track in tracks {
            spawn_track(&shared, track);
        }
        Ok(RunningProjections {
            shared,
            status: status_rx,
        })
    }
}

/// A group being run. [`stop`](RunningProjections::stop) lets each track finish the
/// batch it is applying and waits for it; dropping it stops the tracks at once (a
/// batch under way is rolled back). Either way, what is committed stays committed and a
/// restarted runner resumes after the stored checkpoints.
pub struct RunningProjections<M: ReadModel> {
    shared: Arc<Shared<M>>,
    status: watch::Receiver<ProjectionStatus>,
}

impl<M: ReadModel> std::fmt::Debug for RunningProjections<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningProjections")
            .field("status", &*self.status.borrow())
            .finish_non_exhaustive()
    }
}

impl<M: ReadModel> RunningProjections<M> {
    /// The status now.
    pub fn status(&self) -> ProjectionStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status change.
    pub fn watch(&self) -> watch::Receiver<ProjectionStatus> {
        self.status.clone()
    }

    /// Waits until `done` holds for the status, and returns that status. Callers put
    /// their own time limit around it.
    pub async fn wait_for(
        &self,
        done: impl FnMut(&ProjectionStatus) -> bool,
    ) -> Result<ProjectionStatus, ProjectionError> {
        let mut status = self.status.clone();
        let found = status
            .wait_for(done)
            .await
            .map_err(|_| ProjectionError::ReadModelStopped)?;
        Ok(found.clone())
    }

    /// Waits until the live generation has applied `position` and no rebuild is under
    /// way; fails at once when a track is faulted.
    pub async fn wait_until_live_at(
        &self,
        position: Position,
    ) -> Result<ProjectionStatus, ProjectionError> {
        let status = self
            .wait_for(|status| {
                status.faulted().is_some()
                    || (status.building.is_none()
                        && status
                            .live
                            .as_ref()
                            .is_some_and(|live| live.position >= Some(position)))
            })
            .await?;
        match status.faulted() {
            Some(track) => Err(ProjectionError::Faulted {
                group: status.group.clone(),
                generation: track.generation,
                last_error: track.last_error.clone().unwrap_or_default(),
            }),
            None => Ok(status),
        }
    }

    /// Starts rebuilding the group from position 0 into a new generation beside the
    /// live one, which keeps running; when the new generation has caught up with it,
    /// it is swapped in and the old one dropped. Returns the new generation.
    pub async fn rebuild(&self) -> Result<u64, ProjectionError> {
        start_rebuild(&self.shared).await
    }
}

impl<M: ReadModel> RunningProjections<M> {
    /// Stops the runner: each track finishes the batch it is applying (its transaction
    /// commits), then ends; returns once every track has, with the last status (its
    /// tracks `Stopped`, or `Faulted` when one had given up before).
    pub async fn stop(self) -> ProjectionStatus {
        self.shared.stopping.send_replace(true);
        let tasks: Vec<JoinHandle<()>> = lock(&self.shared.tracks)
            .drain()
            .map(|(_, task)| task)
            .collect();
        for task in tasks {
            // A track that panicked has ended too; its error is in the log.
            let _ = task.await;
        }
        self.status()
    }
}

impl<M: ReadModel> Drop for RunningProjections<M> {
    fn drop(&mut self) {
        for (_, task) in lock(&self.shared.tracks).drain() {
            task.abort();
        }
    }
}

/// What the tracks of one runner share.
struct Shared<M: ReadModel> {
    store: Arc<dyn EventStore>,
    db: ReadModelDb<M>,
    code: Arc<GroupCode<M>>,
    upcaster: Arc<dyn Upcaster>,
    filter: AllFilter,
    retry: RetryPolicy,
    batch_events_max: u64,
    status: watch::Sender<ProjectionStatus>,
    /// Set by [`RunningProjections::stop`]: tracks end after their current batch.
    stopping: watch::Sender<bool>,
    tracks: Mutex<HashMap<u64, JoinHandle<()>>>,
    /// Whether the group's effect ledger exists (it is started before the first
    /// effect is recorded).
    ledger_started: AtomicBool,
    /// A projection asked for a rebuild while one was under way: start another when
    /// it is swapped in (its build started before what asked).
    rebuild_pending: AtomicBool,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The map holds abort handles only; a panic elsewhere cannot leave it half-updated.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Starts building a new generation of the group beside the live one.
async fn start_rebuild<M: ReadModel>(shared: &Arc<Shared<M>>) -> Result<u64, ProjectionError> {
    let code = shared.code.clone();
    let track = shared
        .db
        .transaction(move |tx| generation::start_rebuild(tx, &code))
        .await?;
    let head = shared.store.head_position().await?;
    let generation = track.generation;
    let status = TrackStatus::new(&track, head);
    shared.status.send_modify(|s| s.building = Some(status));
    spawn_track(shared, track);
    Ok(generation)
}

/// A rebuild a projection asked for: started now, or after the one under way.
async fn rebuild_asked<M: ReadModel>(shared: &Arc<Shared<M>>) -> Result<(), ProjectionError> {
    match start_rebuild(shared).await {
        Ok(generation) => {
            tracing::info!(group = %shared.code.name, generation, "rebuilding after a compensation or a surgery");
            Ok(())
        }
        Err(ProjectionError::RebuildInProgress { .. }) => {
            shared.rebuild_pending.store(true, Ordering::Release);
            Ok(())
        }
        Err(error) => Err(error),
    }
}

fn spawn_track<M: ReadModel>(shared: &Arc<Shared<M>>, start: TrackStart) {
    let generation = start.generation;
    let task = tokio::spawn(run_track(shared.clone(), start));
    lock(&shared.tracks).insert(generation, task);
}

/// What one step of a track did.
enum Step {
    /// Read nothing new: the track has everything up to `next - 1`.
    Idle,
    /// Read events up to `through` and handed them to the database.
    Batch {
        outcome: BatchOutcome,
        through: Position,
        end_of_log: bool,
    },
}

/// Follows the log for one generation until it is retired, faulted, or aborted.
async fn run_track<M: ReadModel>(shared: Arc<Shared<M>>, start: TrackStart) {
    let generation = start.generation;
    let horizon = start.replay_until;
    let mut history: Option<Arc<History>> = None;
    let mut checkpoint = start.checkpoint;
    // Whether readers see this generation (a building one becomes live by a swap).
    let mut live = start.live;
    let mut failures = 0u32;
    let mut stopping = shared.stopping.subscribe();
    loop {
        if *stopping.borrow_and_update() {
            update(&shared, generation, |track| {
                if track.state != TrackState::Faulted {
                    track.state = TrackState::Stopped;
                }
            });
            return;
        }
        let next = checkpoint.map_or(Position::START, Position::next);
        let step = match step(&shared, generation, horizon, &mut history, checkpoint, next).await {
            Ok(step) => step,
            Err(error) => {
                failures += 1;
                let faulted = failures > shared.retry.attempts_max;
                tracing::warn!(
                    group = %shared.code.name, generation, failures, %error,
                    "projection batch failed"
                );
                let head = shared.store.head_position().await.ok().flatten();
                update(&shared, generation, |track| {
                    track.set_head(head);
                    track.last_error = Some(error.to_string());
                    track.retries = failures;
                    track.state = if faulted {
                        TrackState::Faulted
                    } else {
                        TrackState::Retrying
                    };
                });
                if faulted {
                    tracing::error!(group = %shared.code.name, generation, "projection faulted");
                    return;
                }
                pause(&mut stopping, shared.retry.delay(failures)).await;
                continue;
            }
        };
        match step {
            Step::Idle => {
                failures = 0;
                let head = shared.store.head_position().await.ok().flatten();
                update(&shared, generation, |track| {
                    track.set_head(head);
                    track.retries = 0;
                    track.state = if live {
                        TrackState::Live
                    } else {
                        TrackState::CatchingUp
                    };
                });
                let waited = tokio::select! {
                    waited = tokio::time::timeout(IDLE_CHECK, shared.store.wait_for(next)) => waited,
                    // Stopping: the loop's first check ends the track.
                    _ = stopping.changed() => continue,
                };
                match waited {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => {
                        failures += 1;
                        update(&shared, generation, |track| {
                            track.last_error = Some(error.to_string());
                            track.retries = failures;
                            track.state = TrackState::Retrying;
                        });
                        pause(&mut stopping, shared.retry.delay(failures)).await;
                    }
                    Err(_) => {
                        let group = shared.code.name.clone();
                        let retired = shared
                            .db
                            .transaction(move |tx| {
                                generation::is_retired::<M>(tx, &group, generation)
                            })
                            .await;
                        if matches!(retired, Ok(true)) {
                            update(&shared, generation, |track| {
                                track.state = TrackState::Stopped;
                            });
                            return;
                        }
                    }
                }
            }
            Step::Batch {
                outcome,
                through,
                end_of_log,
            } => match outcome {
                BatchOutcome::Applied {
                    recorded,
                    live: now_live,
                    swapped_out,
                    rebuild,
                } => {
                    failures = 0;
                    live = now_live;
                    checkpoint = Some(through);
                    if recorded > 0 {
                        shared.db.effects_recorded().notify_one();
                    }
                    if let Some(retired) = swapped_out {
                        swap_in(&shared, generation, retired);
                    }
                    // Asked for by this batch, or by one applied while this
                    // generation was being built.
                    let pending = swapped_out.is_some()
                        && shared.rebuild_pending.swap(false, Ordering::AcqRel);
                    if (rebuild || pending)
                        && let Err(error) = rebuild_asked(&shared).await
                    {
                        // The batch is committed; a rebuild that could not start
                        // is asked for again by `rebuild`, or by the next notice.
                        tracing::error!(group = %shared.code.name, generation, %error, "could not start the rebuild a projection asked for");
                    }
                    let head = shared.store.head_position().await.ok().flatten();
                    update(&shared, generation, |track| {
                        track.position = checkpoint;
                        track.set_head(head);
                        track.retries = 0;
                        track.state = if live && end_of_log && track.lag == 0 {
                            TrackState::Live
                        } else {
                            TrackState::CatchingUp
                        };
                    });
                }
                BatchOutcome::Retired => {
                    update(&shared, generation, |track| {
                        track.state = TrackState::Stopped;
                    });
                    return;
                }
                BatchOutcome::Moved { checkpoint: stored } => {
                    tracing::warn!(
                        group = %shared.code.name, generation, ?stored, ?checkpoint,
                        "checkpoint moved under the runner; continuing from the stored one"
                    );
                    checkpoint = stored;
                    let head = shared.store.head_position().await.ok().flatten();
                    update(&shared, generation, |track| {
                        track.position = stored;
                        track.set_head(head);
                    });
                }
            },
        }
    }
}

/// Waits `delay`, or less when the runner is being stopped (the track's loop then
/// ends it).
async fn pause(stopping: &mut watch::Receiver<bool>, delay: Duration) {
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        _ = stopping.changed() => {}
    }
}

/// Reads the next page after `checkpoint` and applies it in one transaction.
async fn step<M: ReadModel>(
    shared: &Arc<Shared<M>>,
    generation: u64,
    horizon: Option<Position>,
    history: &mut Option<Arc<History>>,
    checkpoint: Option<Position>,
    next: Position,
) -> Result<Step, ProjectionError> {
    let read = ReadAll::from(next, shared.batch_events_max).filtered(shared.filter.clone());
    let page = shared.store.read_all(read).await?;
    if page.next <= next {
        return Ok(Step::Idle);
    }
    let history = match history {
        Some(history) => history.clone(),
        None => history
            .insert(Arc::new(
                History::load(shared.store.as_ref(), horizon).await?,
            ))
            .clone(),
    };
    // The last position read; past the last event when the filter skipped some.
    let through = Position(page.next.get() - 1);
    let mut batch = Batch {
        events: Vec::with_capacity(page.events.len()),
        notices: HashMap::new(),
    };
    for event in page.events {
        match history.see(shared.store.as_ref(), event).await? {
            Seen::Skip => {}
            Seen::Notice(notice, event) => {
                batch.notices.insert(event.position, *notice);
                batch.events.push(event);
            }
            Seen::Event(event) => batch.events.extend(shared.upcaster.upcast(event)?),
        }
    }
    let batch = Arc::new(batch);
    let outcome = loop {
        let code = shared.code.clone();
        let batch = batch.clone();
        let started = shared.ledger_started.load(Ordering::Acquire);
        let applied = shared
            .db
            .transaction(move |tx| {
                generation::apply_batch(tx, &code, generation, checkpoint, &batch, through, started)
            })
            .await;
        match applied {
            Err(ProjectionError::EffectLedgerNotStarted { through, .. }) if !started => {
                ledger::start(shared.store.as_ref(), &shared.code.name, through).await?;
                shared.ledger_started.store(true, Ordering::Release);
            }
            applied => break applied?,
        }
    };
    Ok(Step::Batch {
        outcome,
        through,
        end_of_log: page.end_of_log,
    })
}

/// Records that `generation` was swapped in, replacing `retired`, and stops the
/// retired generation's track.
fn swap_in<M: ReadModel>(shared: &Arc<Shared<M>>, generation: u64, retired: Option<u64>) {
    tracing::info!(group = %shared.code.name, generation, ?retired, "generation swapped in");
    shared.status.send_modify(|status| {
        if let Some(track) = status
            .building
            .take_if(|track| track.generation == generation)
        {
            status.live = Some(track);
        }
    });
    if let Some(retired) = retired
        && let Some(task) = lock(&shared.tracks).remove(&retired)
    {
        // Its next transaction would find it retired; stopping it now also ends a
        // wait for new events.
        task.abort();
    }
}

fn update<M: ReadModel>(
    shared: &Arc<Shared<M>>,
    generation: u64,
    change: impl FnOnce(&mut TrackStatus),
) {
    shared
        .status
        .send_if_modified(|status| match status.track_mut(generation) {
            Some(track) => {
                let before = track.clone();
                change(track);
                *track != before
            }
            None => false,
        });
}
