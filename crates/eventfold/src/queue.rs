//! Asynchronous command handling: accept now, answer with the command id, record the
//! outcome in the store where anyone can query it.

use std::sync::Arc;
use std::time::Duration;

use eventfold_subscription::Subscription;
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::aggregate::Aggregate;
use crate::command::{CommandError, CommandIds, CommandOutcome, Envelope};
use crate::command_log::{CommandLog, outcome};
use crate::error::{Error, Result};
use crate::repository::Repository;
use crate::streams;

/// Commands handled at once by a queue, by default.
const CONCURRENCY_MAX_DEFAULT: usize = 64;

/// Handles commands in the background. [`submit`](CommandQueue::submit) returns the
/// command id at once; the outcome (accepted with revisions, rejected with a reason,
/// or failed with an error) is recorded in the store under that id, queried with
/// [`outcome`](CommandQueue::outcome) or awaited with
/// [`wait_for_outcome`](CommandQueue::wait_for_outcome) — from this process or any
/// other reading the same store.
///
/// The command itself is not stored: if no outcome ever appears (the process stopped),
/// the client sends the command again with the same id, which is safe. A panic in
/// `decide` or `evolve` is recorded as a failure. At most
/// [`with_concurrency`](CommandQueue::with_concurrency) commands (64 by default) are
/// handled at a time; beyond that, `submit` refuses at once.
///
/// ```
/// # use eventfold::{Aggregate, Decision, DomainEvent, EventType};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// # #[serde(tag = "type", content = "data")]
/// # enum CounterEvent { Incremented { by: u32 } }
/// # impl DomainEvent for CounterEvent {
/// #     const TYPES: &'static [EventType] = &[EventType::new("Incremented", 1)];
/// # }
/// # #[derive(Debug, Default)]
/// # struct Counter { value: u32 }
/// # impl Aggregate for Counter {
/// #     const NAME: &'static str = "counter";
/// #     type Command = u32;
/// #     type Event = CounterEvent;
/// #     type Rejection = String;
/// #     fn decide(&self, by: &u32) -> Result<Decision<CounterEvent>, String> {
/// #         if *by == 0 { return Err("nothing to add".into()) }
/// #         Ok(Decision::event(CounterEvent::Incremented { by: *by }))
/// #     }
/// #     fn evolve(&mut self, CounterEvent::Incremented { by }: &CounterEvent) { self.value += by }
/// # }
/// use std::sync::Arc;
/// use eventfold::{CommandOutcome, CommandQueue, Envelope, InMemoryStore, Repository};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let queue = CommandQueue::new(Repository::<Counter>::new(Arc::new(InMemoryStore::new())));
/// let id = queue.submit("counter-1", Envelope::new(0)).unwrap();
/// let outcome = queue.wait_for_outcome(id).await.unwrap();
/// assert_eq!(outcome, CommandOutcome::Rejected { reason: "nothing to add".into() });
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct CommandQueue<A: Aggregate> {
    repository: Repository<A>,
    /// One permit per command being handled (and its outcome recorded).
    permits: Arc<Semaphore>,
    concurrency_max: usize,
}

impl<A> CommandQueue<A>
where
    A: Aggregate,
    A::Command: 'static,
{
    /// A queue handling commands with `repository`, at most 64 at a time.
    pub fn new(repository: Repository<A>) -> Self {
        CommandQueue {
            repository,
            permits: Arc::new(Semaphore::new(CONCURRENCY_MAX_DEFAULT)),
            concurrency_max: CONCURRENCY_MAX_DEFAULT,
        }
    }

    /// Handles at most `concurrency_max` commands at a time (at least 1); beyond that,
    /// [`submit`](CommandQueue::submit) refuses with [`Error::QueueFull`].
    pub fn with_concurrency(mut self, concurrency_max: usize) -> Self {
        let concurrency_max = concurrency_max.clamp(1, Semaphore::MAX_PERMITS);
        self.permits = Arc::new(Semaphore::new(concurrency_max));
        self.concurrency_max = concurrency_max;
        self
    }

    /// Accepts `command` for the aggregate of `stream` and returns its id at once; it is
    /// handled in a task on the current tokio runtime.
    ///
    /// Never waits: when the queue already handles its maximum of commands (see
    /// [`with_concurrency`](CommandQueue::with_concurrency)) it refuses with
    /// [`Error::QueueFull`] and nothing is recorded, so the caller decides whether to
    /// retry later (with the same command id) or to shed the load. Outside a tokio
    /// runtime it refuses with [`Error::NoRuntime`].
    pub fn submit(&self, stream: impl Into<String>, command: Envelope<A::Command>) -> Result<Uuid> {
        self.submit_streams(vec![stream.into()], command)
    }

    /// Accepts `command` for the aggregate over `streams` (see
    /// [`Repository::handle_streams`]) and returns its id at once, like
    /// [`submit`](CommandQueue::submit).
    pub fn submit_streams(
        &self,
        streams: Vec<String>,
        command: Envelope<A::Command>,
    ) -> Result<Uuid> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let permit = self
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| Error::QueueFull {
                limit: self.concurrency_max,
            })?;
        let ids = CommandIds::from(&command);
        let repository = self.repository.clone();
        let store = repository.store().clone();
        // The handling runs in its own task so that a panic in `decide` or `evolve`
        // ends only that task: the supervisor below sees it in the join result and
        // records a failure, so the outcome is never left missing.
        let handling = runtime.spawn(async move {
            let names: Vec<&str> = streams.iter().map(String::as_str).collect();
            match repository.handle_streams(&names, command).await {
                // Accepted or rejected: the repository recorded the outcome.
                Ok(_) | Err(CommandError::Rejected { .. }) => None,
                Err(CommandError::Failed(Error::AlreadyRejected { .. })) => None,
                Err(CommandError::Failed(error)) => Some(error.to_string()),
            }
        });
        runtime.spawn(async move {
            // Held until the outcome is recorded: the bound covers the whole command.
            let _permit = permit;
            let failure = match handling.await {
                Ok(None) => return,
                Ok(Some(failure)) => failure,
                Err(join) => describe(join),
            };
            let mut log = CommandLog::new(store.as_ref(), ids, 1);
            if let Err(error) = log.record_failure(failure).await {
                tracing::error!(%error, command_id = %ids.command_id, "command outcome not recorded");
            }
        });
        Ok(ids.command_id)
    }

    /// The recorded outcome of command `id`; `None` while it is being handled (or was
    /// never submitted).
    pub async fn outcome(&self, id: Uuid) -> Result<Option<CommandOutcome>> {
        outcome(self.repository.store().as_ref(), id).await
    }

    /// Waits for command `id` to have an outcome and returns it. Waits for ever for a
    /// command that was never submitted or whose process stopped: see
    /// [`wait_for_outcome_timeout`](CommandQueue::wait_for_outcome_timeout).
    pub async fn wait_for_outcome(&self, id: Uuid) -> Result<CommandOutcome> {
        let store = self.repository.store().clone();
        let mut records = Subscription::to_stream(store, streams::command(id), None);
        let first = records.next().await?;
        // A retried command may have a later outcome than the first recorded.
        match self.outcome(id).await? {
            Some(latest) => Ok(latest),
            None => CommandOutcome::from_record(&first),
        }
    }

    /// Waits at most `timeout` for command `id` to have an outcome; `None` when it has
    /// none by then (still being handled, or lost with a stopped process: send the
    /// command again with the same id).
    ///
    /// ```
    /// # use eventfold::{Aggregate, Decision, DomainEvent, EventType};
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    /// # #[serde(tag = "type", content = "data")]
    /// # enum CounterEvent { Incremented { by: u32 } }
    /// # impl DomainEvent for CounterEvent {
    /// #     const TYPES: &'static [EventType] = &[EventType::new("Incremented", 1)];
    /// # }
    /// # #[derive(Debug, Default)]
    /// # struct Counter;
    /// # impl Aggregate for Counter {
    /// #     const NAME: &'static str = "counter";
    /// #     type Command = u32;
    /// #     type Event = CounterEvent;
    /// #     type Rejection = String;
    /// #     fn decide(&self, by: &u32) -> Result<Decision<CounterEvent>, String> {
    /// #         Ok(Decision::event(CounterEvent::Incremented { by: *by }))
    /// #     }
    /// #     fn evolve(&mut self, _: &CounterEvent) {}
    /// # }
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use eventfold::{CommandQueue, InMemoryStore, Repository};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let queue = CommandQueue::new(Repository::<Counter>::new(Arc::new(InMemoryStore::new())));
    /// let never_submitted = uuid::Uuid::now_v7();
    /// let outcome = queue.wait_for_outcome_timeout(never_submitted, Duration::from_millis(10)).await;
    /// assert_eq!(outcome.unwrap(), None);
    /// # });
    /// ```
    pub async fn wait_for_outcome_timeout(
        &self,
        id: Uuid,
        timeout: Duration,
    ) -> Result<Option<CommandOutcome>> {
        match tokio::time::timeout(timeout, self.wait_for_outcome(id)).await {
            Ok(outcome) => outcome.map(Some),
            Err(_elapsed) => Ok(None),
        }
    }
}

/// The text of a failed handling task: the panic's message when it panicked.
fn describe(join: tokio::task::JoinError) -> String {
    if !join.is_panic() {
        return format!("the command's handling stopped: {join}");
    }
    let payload = join.into_panic();
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_string());
    format!("the command's handling panicked: {message}")
}
