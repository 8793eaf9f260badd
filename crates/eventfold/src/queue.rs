//! Asynchronous command handling: accept now, answer with the command id, record the
//! outcome in the store where anyone can query it.

use eventfold_core::{EventStore, ExpectedVersion, Subscription};
use uuid::Uuid;

use crate::aggregate::Aggregate;
use crate::command::{CommandError, CommandOutcome, Envelope};
use crate::error::{Error, Result};
use crate::event::DomainEvent;
use crate::repository::{Repository, last_event, outcome};
use crate::streams;

/// Handles commands in the background. [`submit`](CommandQueue::submit) returns the
/// command id at once; the outcome (accepted with revisions, rejected with a reason,
/// or failed with an error) is recorded in the store under that id, queried with
/// [`outcome`](CommandQueue::outcome) or awaited with
/// [`wait_for_outcome`](CommandQueue::wait_for_outcome) — from this process or any
/// other reading the same store.
///
/// The command itself is not stored: if no outcome ever appears (the process stopped),
/// the client sends the command again with the same id, which is safe.
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
/// let id = queue.submit("counter-1", Envelope::new(0));
/// let outcome = queue.wait_for_outcome(id).await.unwrap();
/// assert_eq!(outcome, CommandOutcome::Rejected { reason: "nothing to add".into() });
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct CommandQueue<A: Aggregate> {
    repository: Repository<A>,
}

impl<A> CommandQueue<A>
where
    A: Aggregate,
    A::Command: 'static,
{
    /// A queue handling commands with `repository`.
    pub fn new(repository: Repository<A>) -> Self {
        CommandQueue { repository }
    }

    /// Accepts `command` for the aggregate of `stream` and returns its id at once; it is
    /// handled in a task on the current tokio runtime.
    pub fn submit(&self, stream: impl Into<String>, command: Envelope<A::Command>) -> Uuid {
        self.submit_streams(vec![stream.into()], command)
    }

    /// Accepts `command` for the aggregate over `streams` (see
    /// [`Repository::handle_streams`]) and returns its id at once.
    pub fn submit_streams(&self, streams: Vec<String>, command: Envelope<A::Command>) -> Uuid {
        let id = command.command_id();
        let repository = self.repository.clone();
        tokio::spawn(async move {
            let names: Vec<&str> = streams.iter().map(String::as_str).collect();
            let result = repository.handle_streams(&names, command).await;
            let outcome = match result {
                // Events written: the outcome was recorded with them, atomically.
                Ok(accepted) if accepted.duplicate || !accepted.written.is_empty() => return,
                Ok(accepted) => CommandOutcome::Accepted {
                    revision: accepted.revision,
                    written: Vec::new(),
                    position: None,
                },
                Err(CommandError::Rejected { reason }) => CommandOutcome::Rejected {
                    reason: reason.to_string(),
                },
                Err(CommandError::Failed(Error::AlreadyRejected { .. })) => return,
                Err(CommandError::Failed(error)) => CommandOutcome::Failed {
                    error: error.to_string(),
                },
            };
            if let Err(error) = record(repository.store().as_ref(), id, &outcome).await {
                tracing::error!(%error, command_id = %id, "command outcome not recorded");
            }
        });
        id
    }

    /// The recorded outcome of command `id`; `None` while it is being handled (or was
    /// never submitted).
    pub async fn outcome(&self, id: Uuid) -> Result<Option<CommandOutcome>> {
        outcome(self.repository.store().as_ref(), id).await
    }

    /// Waits for command `id` to have an outcome and returns it.
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
}

/// Records `outcome` for command `id`, unless a final outcome is there already (a
/// failure may be followed by the outcome of a retry).
async fn record(store: &dyn EventStore, id: Uuid, outcome: &CommandOutcome) -> Result<()> {
    let stream = streams::command(id);
    let expected = match last_event(store, &stream).await? {
        None => ExpectedVersion::NoStream,
        Some(last) => match CommandOutcome::from_record(&last)? {
            CommandOutcome::Failed { .. } => ExpectedVersion::Exact(last.revision),
            _ => return Ok(()),
        },
    };
    let event = outcome
        .encode()?
        .with_correlation_id(id)
        .with_causation_id(id);
    match store.append(&stream, expected, vec![event]).await {
        Ok(_) | Err(eventfold_core::Error::WrongExpectedVersion { .. }) => Ok(()),
        Err(error) => Err(error.into()),
    }
}
