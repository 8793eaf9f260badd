//! The outbox: effects recorded by projections in their transaction, executed
//! afterwards by a dispatcher, which notes each finished one in the group's effect
//! ledger in the event store (`ledger.rs`).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use eventfold_core::{EventStore, Position};

use super::ledger::Ledger;
use super::read_model::{ReadModel, ReadModelDb};
use super::{HandlerError, ProjectionError};

/// Effects handed to the executor per pass.
const DISPATCH_BATCH: u32 = 100;
/// Attempts per effect before it is parked as failed, unless configured.
const ATTEMPTS_DEFAULT: u32 = 5;

/// Where an effect is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EffectState {
    /// Recorded, not yet executed successfully.
    Pending,
    /// Executed; never handed to the executor again.
    Done,
    /// Every attempt failed; parked for an operator (still visible, never retried).
    Failed,
}

// The stored form, for the SQL read models.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl EffectState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EffectState::Pending => "pending",
            EffectState::Done => "done",
            EffectState::Failed => "failed",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(EffectState::Pending),
            "done" => Some(EffectState::Done),
            "failed" => Some(EffectState::Failed),
            _ => None,
        }
    }
}

/// A side effect recorded in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Effect {
    /// The idempotency key, `<group>:<event id>:<name>`: pass it on to the external system so
    /// it can drop a repeated request.
    pub key: String,
    /// The projection group that recorded it.
    pub group: String,
    /// The effect's name, as given to [`Context::effect`](super::Context::effect).
    pub name: String,
    /// What the handler put in it.
    pub payload: serde_json::Value,
    /// The position of the event that caused it.
    pub position: Position,
    /// Where it is in its life.
    pub state: EffectState,
    /// Attempts so far.
    pub attempts: u32,
    /// The error of the last failed attempt.
    pub last_error: Option<String>,
}

/// Executes effects: sends the email, calls the payment provider, posts the webhook.
///
/// An effect can be handed over more than once (after a crash between execution and
/// marking it done, or after an error); use [`Effect::key`] so that the external
/// system acts on it once.
#[async_trait]
pub trait EffectExecutor: Send + Sync + 'static {
    /// Executes `effect`; an error leaves it pending (retried by a later pass).
    async fn execute(&self, effect: &Effect) -> Result<(), HandlerError>;
}

/// What one pass of the dispatcher did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DispatchReport {
    /// Effects executed and marked done.
    pub done: usize,
    /// Attempts that failed (the effect stays pending, or is parked as failed).
    pub failed: usize,
    /// Effects the group's ledger shows finished before (recorded again after the
    /// read-model database was lost): marked as they were, not executed again.
    pub skipped: usize,
}

/// Hands pending effects of a read-model database to an [`EffectExecutor`], oldest
/// first, and marks each done after it succeeded. Run one dispatcher per database.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use eventfold::projection::{
///     Context, Effect, EffectExecutor, HandlerError, MemoryReadModel, MemoryTx, OutboxDispatcher,
///     Projection, ProjectionRunner,
/// };
/// use eventfold::{EventData, EventStore, ExpectedVersion, InMemoryStore, RecordedEvent};
///
/// /// Posts a webhook for every event.
/// struct Webhooks;
/// impl Projection<MemoryReadModel> for Webhooks {
///     fn name(&self) -> &str { "webhooks" }
///     fn tables(&self) -> &[&str] { &[] }
///     fn apply(&self, _: &mut MemoryTx<'_>, event: &RecordedEvent, ctx: &mut Context<'_>)
///         -> Result<(), HandlerError>
///     {
///         ctx.effect("webhook", serde_json::json!({ "stream": event.stream }));
///         Ok(())
///     }
/// }
///
/// #[derive(Default)]
/// struct Poster { keys: Mutex<Vec<String>> }
/// #[async_trait::async_trait]
/// impl EffectExecutor for Poster {
///     async fn execute(&self, effect: &Effect) -> Result<(), HandlerError> {
///         // A real one sends `effect.key` as the request's idempotency key.
///         self.keys.lock().unwrap().push(effect.key.clone());
///         Ok(())
///     }
/// }
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store = Arc::new(InMemoryStore::new());
/// let db = MemoryReadModel::open().await.unwrap();
/// let running = ProjectionRunner::new(store.clone(), db.clone(), "hooks")
///     .with_projection(Webhooks).start().await.unwrap();
/// let written = store
///     .append("order-1", ExpectedVersion::Any, vec![EventData::json("OrderPlaced", &1).unwrap()])
///     .await.unwrap();
/// running.wait_until_live_at(written.position).await.unwrap();
///
/// let poster = Arc::new(Poster::default());
/// let dispatcher = OutboxDispatcher::new(store.clone(), db, poster.clone());
/// assert_eq!(dispatcher.dispatch_pending().await.unwrap().done, 1);
/// assert_eq!(dispatcher.dispatch_pending().await.unwrap().done, 0); // done is done
/// assert!(poster.keys.lock().unwrap()[0].ends_with(":webhook"));
/// # });
/// ```
pub struct OutboxDispatcher<M: ReadModel> {
    store: Arc<dyn EventStore>,
    db: ReadModelDb<M>,
    executor: Arc<dyn EffectExecutor>,
    attempts_max: u32,
    /// This dispatcher's copy of each group's effect ledger, read on first use.
    ledgers: tokio::sync::Mutex<HashMap<String, Ledger>>,
}

impl<M: ReadModel> OutboxDispatcher<M> {
    /// A dispatcher of `db`'s outbox to `executor`. Each finished effect is noted in
    /// its group's effect ledger in `store` (the store the projections follow), which
    /// outlives the read-model database: after a loss, the effects recorded again are
    /// executed only if they had not been.
    pub fn new(
        store: Arc<dyn EventStore>,
        db: ReadModelDb<M>,
        executor: Arc<dyn EffectExecutor>,
    ) -> Self {
        OutboxDispatcher {
            store,
            db,
            executor,
            attempts_max: ATTEMPTS_DEFAULT,
            ledgers: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// After this many failed attempts an effect is parked as [`EffectState::Failed`].
    pub fn with_attempts(mut self, attempts_max: u32) -> Self {
        self.attempts_max = attempts_max.max(1);
        self
    }

    /// Executes the effects pending now, once each.
    pub async fn dispatch_pending(&self) -> Result<DispatchReport, ProjectionError> {
        let mut report = DispatchReport::default();
        let pending = self
            .db
            .effects(Some(EffectState::Pending), DISPATCH_BATCH)
            .await?;
        let mut ledgers = self.ledgers.lock().await;
        let groups: BTreeSet<String> = pending.iter().map(|e| e.group.clone()).collect();
        for group in &groups {
            let ledger = ledgers
                .entry(group.clone())
                .or_insert_with(|| Ledger::new(group));
            ledger.catch_up(self.store.as_ref()).await?;
        }
        for effect in pending {
            let Some(ledger) = ledgers.get_mut(&effect.group) else {
                continue;
            };
            let (state, attempts, error) = match ledger.finished(&effect.key) {
                Some(parked) => {
                    // Finished before the read-model database was lost: as it was.
                    report.skipped += 1;
                    let state = if parked {
                        EffectState::Failed
                    } else {
                        EffectState::Done
                    };
                    (state, effect.attempts, None)
                }
                // Executed before it is marked done: a crash in between executes it
                // again (with the same key) rather than never.
                None => match self.executor.execute(&effect).await {
                    Ok(()) => {
                        report.done += 1;
                        ledger
                            .finish(self.store.as_ref(), &effect.key, effect.position, false)
                            .await?;
                        (EffectState::Done, effect.attempts + 1, None)
                    }
                    Err(error) => {
                        report.failed += 1;
                        let attempts = effect.attempts + 1;
                        let state = if attempts >= self.attempts_max {
                            ledger
                                .finish(self.store.as_ref(), &effect.key, effect.position, true)
                                .await?;
                            EffectState::Failed
                        } else {
                            EffectState::Pending
                        };
                        tracing::warn!(key = %effect.key, attempts, %error, "effect failed");
                        (state, attempts, Some(error.to_string()))
                    }
                },
            };
            let key = effect.key;
            self.db
                .transaction(move |tx| {
                    M::finish_effect(tx, &key, state, attempts, error.as_deref())
                })
                .await?;
        }
        self.mark_finished(&mut ledgers, &groups).await?;
        Ok(report)
    }

    /// Moves each group's ledger mark to the last position at or before which every
    /// effect is finished ([`ReadModelDb::effects_finished_through`]).
    async fn mark_finished(
        &self,
        ledgers: &mut HashMap<String, Ledger>,
        groups: &BTreeSet<String>,
    ) -> Result<(), ProjectionError> {
        if groups.is_empty() {
            return Ok(());
        }
        let marks = self
            .db
            .effects_finished_through(groups.iter().cloned().collect(), DISPATCH_BATCH)
            .await?;
        for (group, through) in marks {
            if let (Some(through), Some(ledger)) = (through, ledgers.get_mut(&group)) {
                ledger
                    .finished_through(self.store.as_ref(), through)
                    .await?;
            }
        }
        Ok(())
    }

    /// Dispatches for ever: a pass whenever a projection recorded effects, and at
    /// least every `poll` (effects recorded by another process, failed ones to retry).
    /// Returns only on a database error.
    pub async fn run(self, poll: Duration) -> ProjectionError {
        let recorded = self.db.effects_recorded().clone();
        loop {
            match self.dispatch_pending().await {
                Ok(report) if report.done + report.skipped > 0 && report.failed == 0 => continue,
                Ok(_) => {}
                Err(error) => return error,
            }
            let _ = tokio::time::timeout(poll, recorded.notified()).await;
        }
    }
}
