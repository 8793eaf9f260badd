//! The command log: what a handled command records in its stream `_command-<id>`, and
//! how its outcome is written, so that a command id keeps one answer however often it
//! is sent and however many handlers race on it.
//!
//! - A **final** outcome (accepted, rejected) is written once, expecting the stream
//!   empty or ending with a failure; whoever writes it first gives the command its
//!   answer, and every later handler answers with it.
//! - A **failure** (the store failed, a panic) may be written over by a retry: it is
//!   recorded only when no final outcome is there.
//! - Records are kept for a window (the default retention of the `_command` category,
//!   30 days unless set): past it the record is hidden, a scavenge reclaims it, and the
//!   command is handled anew, after the revisions its stream already has.

use eventfold_core::{EventStore, ExpectedVersion, Position, Revision, StreamWrite};
use eventfold_metadata::{StreamAdmin, StreamMetadata};

use crate::command::{Accepted, CommandIds, CommandOutcome};
use crate::error::{Error, Result};
use crate::repository::last_event;
use crate::streams;

/// A command's final answer, as the command log holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Settled {
    /// Accepted; `duplicate` is set when the answer was recorded by an earlier
    /// handling.
    Accepted(Accepted),
    /// Rejected, with the reason as recorded.
    Rejected(String),
}

/// What the log holds for the command: a final answer, or nothing final yet (empty, or
/// a failure at this revision that a new outcome is written over).
enum Entry {
    Settled(Settled),
    Open(ExpectedVersion),
}

/// One command's entry in the command log, from the handler's side: reads what is
/// recorded, builds the outcome record that goes with the command's events, and
/// writes the outcome of a command that writes no events.
pub(crate) struct CommandLog<'a> {
    store: &'a dyn EventStore,
    ids: CommandIds,
    stream: String,
    /// The version a new outcome is written at: no stream, or the revision of the
    /// failure last seen.
    expected: ExpectedVersion,
    /// Times a final outcome is written before the log is said to keep changing.
    attempts_max: u32,
    /// How long a recorded rejection stands; past it the command is decided anew.
    rejection_window: Option<std::time::Duration>,
}

impl<'a> CommandLog<'a> {
    /// The entry of the command with `ids` in `store`, nothing read yet.
    pub(crate) fn new(store: &'a dyn EventStore, ids: CommandIds, attempts_max: u32) -> Self {
        CommandLog {
            store,
            ids,
            stream: streams::command(ids.command_id),
            expected: ExpectedVersion::NoStream,
            attempts_max: attempts_max.max(1),
            rejection_window: None,
        }
    }

    /// The same log, where a recorded rejection stands for `window` only (see
    /// [`Repository::with_rejection_window`](crate::Repository::with_rejection_window)).
    pub(crate) fn with_rejection_window(mut self, window: Option<std::time::Duration>) -> Self {
        self.rejection_window = window;
        self
    }

    /// The command's answer if it was settled before (nothing is to be written then);
    /// otherwise `None`, and the next outcome is written over what is there.
    pub(crate) async fn settled(&mut self) -> Result<Option<Settled>> {
        match self.read().await? {
            Entry::Settled(settled) => Ok(Some(settled)),
            Entry::Open(expected) => {
                self.expected = expected;
                Ok(None)
            }
        }
    }

    /// The revision of the last record the next outcome is written after, if any: what
    /// the ids of a decision taken after earlier records are derived with.
    pub(crate) fn after(&self) -> Option<Revision> {
        match self.expected {
            ExpectedVersion::Exact(revision) => Some(revision),
            _ => None,
        }
    }

    /// The write of the outcome `outcome`, to append atomically with the command's
    /// events (its expected version makes a concurrent handler's append fail).
    pub(crate) fn write(&self, outcome: &CommandOutcome) -> Result<StreamWrite> {
        Ok(StreamWrite::new(
            self.stream.clone(),
            self.expected,
            vec![self.ids.outcome_record(outcome, self.after())?],
        ))
    }

    /// After the append holding [`write`](Self::write) failed with `error`: the answer
    /// when another handler of the same command settled it first. When it recorded a
    /// failure instead, the next outcome is written over that one.
    pub(crate) async fn after_failed_append(
        &mut self,
        error: &eventfold_core::Error,
    ) -> Result<Option<Settled>> {
        if !matches!(
            error,
            eventfold_core::Error::WrongExpectedVersion { .. }
                | eventfold_core::Error::IdempotencyConflict { .. }
        ) {
            return Ok(None);
        }
        match self.read().await? {
            Entry::Settled(settled) => Ok(Some(settled)),
            // Empty: the conflict was on another stream; nothing changes here.
            Entry::Open(ExpectedVersion::NoStream) => Ok(None),
            Entry::Open(expected) => {
                self.expected = expected;
                Ok(None)
            }
        }
    }

    /// Settles a command the aggregate rejected: records the rejection alone (see
    /// [`settle`](Self::settle)).
    pub(crate) async fn settle_rejected(&mut self, reason: String) -> Result<Settled> {
        let outcome = CommandOutcome::Rejected {
            reason: reason.clone(),
        };
        self.settle(&outcome, |_| Settled::Rejected(reason)).await
    }

    /// Settles a command whose decision was no event: records an acceptance that
    /// changed nothing, with the aggregate's revision (see [`settle`](Self::settle)).
    pub(crate) async fn settle_unchanged(&mut self, revision: Option<Revision>) -> Result<Settled> {
        let outcome = CommandOutcome::Accepted {
            revision,
            written: Vec::new(),
            position: None,
        };
        let command_id = self.ids.command_id;
        self.settle(&outcome, |position| {
            Settled::Accepted(Accepted {
                command_id,
                revision,
                written: Vec::new(),
                position: Some(position),
                duplicate: false,
            })
        })
        .await
    }

    /// Settles a command that writes no events by writing `outcome` alone; `answer`
    /// is the answer once it is written (given the position of the record). A command
    /// accepted meanwhile by a concurrent handler keeps that answer; when another
    /// handler settles it while this one writes (a wrong expected version), its answer
    /// is the command's; a failure it recorded is written over. A log that keeps
    /// changing for `attempts_max` writes is a conflict.
    async fn settle(
        &mut self,
        outcome: &CommandOutcome,
        answer: impl FnOnce(Position) -> Settled,
    ) -> Result<Settled> {
        // A concurrent handler of this same command may have committed since it was
        // read: its acceptance wins over an answer decided on the state it produced.
        if let Entry::Settled(accepted @ Settled::Accepted(_)) = self.read().await? {
            return Ok(accepted);
        }
        for _ in 0..self.attempts_max {
            let record = self.ids.outcome_record(outcome, self.after())?;
            let written = self
                .store
                .append(&self.stream, self.expected, vec![record])
                .await;
            match written {
                Ok(result) => return Ok(answer(result.position)),
                Err(eventfold_core::Error::WrongExpectedVersion { .. }) => {
                    match self.read().await? {
                        Entry::Settled(settled) => return Ok(settled),
                        Entry::Open(expected) => self.expected = expected,
                    }
                }
                Err(error) => return Err(error.into()),
            }
        }
        Err(Error::Conflict {
            stream: self.stream.clone(),
            attempts: self.attempts_max,
        })
    }

    /// Records that handling failed with `error`, unless a final outcome is there
    /// already (a failure may be followed by the outcome of a retry, never the other
    /// way round). A handler settling the command meanwhile wins.
    pub(crate) async fn record_failure(&mut self, error: String) -> Result<()> {
        match self.read().await? {
            Entry::Settled(_) => return Ok(()),
            Entry::Open(expected) => self.expected = expected,
        }
        let event = self
            .ids
            .outcome_record(&CommandOutcome::Failed { error }, self.after())?;
        match self
            .store
            .append(&self.stream, self.expected, vec![event])
            .await
        {
            Ok(_) | Err(eventfold_core::Error::WrongExpectedVersion { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// What the log holds now.
    async fn read(&self) -> Result<Entry> {
        let Some(last) = last_event(self.store, &self.stream).await? else {
            // No record, or one past the command window (hidden by the category's
            // retention, or reclaimed by a scavenge): the command is handled anew,
            // after the revisions the stream already has.
            let expected = match self.store.stream_revision(&self.stream).await? {
                Some(revision) => ExpectedVersion::Exact(revision),
                None => ExpectedVersion::NoStream,
            };
            return Ok(Entry::Open(expected));
        };
        Ok(match CommandOutcome::from_record(&last)? {
            CommandOutcome::Accepted {
                revision,
                written,
                position,
            } => Entry::Settled(Settled::Accepted(Accepted {
                command_id: self.ids.command_id,
                revision,
                written,
                position,
                duplicate: true,
            })),
            // A rejection past its window no longer stands: decided anew after it.
            CommandOutcome::Rejected { .. }
                if self.rejection_window.is_some_and(|window| {
                    (chrono::Utc::now() - last.recorded_at)
                        .to_std()
                        .is_ok_and(|age| age >= window)
                }) =>
            {
                Entry::Open(ExpectedVersion::Exact(last.revision))
            }
            CommandOutcome::Rejected { reason } => Entry::Settled(Settled::Rejected(reason)),
            CommandOutcome::Failed { .. } => Entry::Open(ExpectedVersion::Exact(last.revision)),
        })
    }
}

/// How long the records of handled commands are kept (see
/// [`Repository::with_command_window`](crate::Repository::with_command_window)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CommandWindow {
    /// 30 days, set when no window is set yet.
    Default,
    /// Set whatever was set before.
    Given(std::time::Duration),
}

/// The window a repository sets when none is set.
const COMMAND_WINDOW_DEFAULT: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

/// Makes the default retention of the `_command` category say `window` (see
/// [`CommandWindow`]). A failure is logged, not returned: commands are handled as
/// before, only their records are kept longer.
pub(crate) async fn keep_for(store: &dyn EventStore, window: CommandWindow) {
    let category = format!("$ce-{}", streams::COMMAND_CATEGORY);
    let result = async {
        let current = store.stream_metadata(&category).await?;
        let (max_age, expected) = match window {
            CommandWindow::Default if current.revision.is_some() => return Ok(()),
            CommandWindow::Default => (COMMAND_WINDOW_DEFAULT, ExpectedVersion::NoStream),
            CommandWindow::Given(window) => (window, current.expected()),
        };
        let wanted = StreamMetadata {
            max_age: Some(max_age.as_secs().max(1)),
            ..current.metadata.clone()
        };
        if current.revision.is_some() && wanted == current.metadata {
            return Ok(());
        }
        match store.set_stream_metadata(&category, expected, wanted).await {
            // Another process set a window meanwhile: it stands.
            Ok(_) | Err(eventfold_core::Error::WrongExpectedVersion { .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }
    .await;
    if let Err(error) = result {
        tracing::warn!(%error, stream = %category, "the window of command records was not set");
    }
}

/// The recorded outcome of command `command_id`, if any (see [`CommandOutcome`]).
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store = eventfold::InMemoryStore::new();
/// assert_eq!(eventfold::outcome(&store, uuid::Uuid::now_v7()).await.unwrap(), None);
/// # });
/// ```
pub async fn outcome(
    store: &dyn EventStore,
    command_id: uuid::Uuid,
) -> Result<Option<CommandOutcome>> {
    match last_event(store, &streams::command(command_id)).await? {
        Some(event) => CommandOutcome::from_record(&event).map(Some),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use eventfold_core::{InMemoryStore, ReadStream};
    use uuid::Uuid;

    use super::*;

    fn ids() -> CommandIds {
        let command_id = Uuid::now_v7();
        CommandIds {
            command_id,
            correlation_id: command_id,
            causation_id: None,
        }
    }

    /// A handler's entry that found nothing settled, as a handler starts.
    async fn open(store: &InMemoryStore, ids: CommandIds, attempts_max: u32) -> CommandLog<'_> {
        let mut log = CommandLog::new(store, ids, attempts_max);
        assert_eq!(log.settled().await.unwrap(), None);
        log
    }

    /// Records a failure of a concurrent handler of the command.
    async fn fail(store: &InMemoryStore, ids: CommandIds) {
        CommandLog::new(store, ids, 1)
            .record_failure("a concurrent handler failed".into())
            .await
            .unwrap();
    }

    /// The types of the records in the command's stream, oldest first.
    async fn recorded(store: &InMemoryStore, ids: CommandIds) -> Vec<String> {
        match store
            .read_stream(&streams::command(ids.command_id), ReadStream::forward())
            .await
        {
            Ok(events) => events.into_iter().map(|e| e.event_type).collect(),
            Err(eventfold_core::Error::StreamNotFound { .. }) => Vec::new(),
            Err(error) => panic!("reading the command log: {error}"),
        }
    }

    fn accepted_with_events() -> CommandOutcome {
        CommandOutcome::Accepted {
            revision: Some(Revision(0)),
            written: vec![crate::Written {
                stream: "order-1".into(),
                first_revision: Revision(0),
                last_revision: Revision(0),
            }],
            position: None,
        }
    }

    #[tokio::test]
    async fn an_empty_log_settles_nothing_and_the_outcome_is_written_expecting_no_stream() {
        let store = InMemoryStore::new();
        let ids = ids();
        let log = open(&store, ids, 4).await;
        let write = log.write(&accepted_with_events()).unwrap();
        assert_eq!(write.stream, streams::command(ids.command_id));
        assert_eq!(write.expected, ExpectedVersion::NoStream);
        assert_eq!(write.events.len(), 1);
        assert!(
            recorded(&store, ids).await.is_empty(),
            "nothing is written yet"
        );
    }

    #[tokio::test]
    async fn a_rejection_is_recorded_once_and_answers_every_later_handler() {
        let store = InMemoryStore::new();
        let ids = ids();
        let mut first = open(&store, ids, 4).await;
        let settled = first.settle_rejected("out of stock".into()).await.unwrap();
        assert_eq!(settled, Settled::Rejected("out of stock".into()));

        let mut later = CommandLog::new(&store, ids, 4);
        assert_eq!(
            later.settled().await.unwrap(),
            Some(Settled::Rejected("out of stock".into()))
        );
        assert_eq!(recorded(&store, ids).await, ["CommandRejected"]);
    }

    #[tokio::test]
    async fn an_unchanged_acceptance_answers_with_its_position_then_as_a_duplicate() {
        let store = InMemoryStore::new();
        let ids = ids();
        let mut log = open(&store, ids, 4).await;
        let Settled::Accepted(first) = log.settle_unchanged(Some(Revision(3))).await.unwrap()
        else {
            panic!("an acceptance was expected");
        };
        assert_eq!(first.command_id, ids.command_id);
        assert_eq!(first.revision, Some(Revision(3)));
        assert!(first.written.is_empty());
        assert!(!first.duplicate);
        assert!(first.position.is_some());

        let Some(Settled::Accepted(again)) =
            CommandLog::new(&store, ids, 4).settled().await.unwrap()
        else {
            panic!("the recorded acceptance was expected");
        };
        assert!(again.duplicate);
        assert_eq!(again.position, first.position);
        assert_eq!(again.revision, Some(Revision(3)));
    }

    #[tokio::test]
    async fn an_acceptance_recorded_meanwhile_wins_over_a_later_rejection() {
        let store = InMemoryStore::new();
        let ids = ids();
        let mut slow = open(&store, ids, 4).await;
        let mut fast = open(&store, ids, 4).await;
        fast.settle_unchanged(None).await.unwrap();

        let settled = slow.settle_rejected("too late".into()).await.unwrap();
        assert!(
            matches!(&settled, Settled::Accepted(a) if a.duplicate),
            "{settled:?}"
        );
        assert_eq!(recorded(&store, ids).await, ["CommandAccepted"]);
    }

    #[tokio::test]
    async fn a_rejection_recorded_while_writing_is_the_answer() {
        let store = InMemoryStore::new();
        let ids = ids();
        let mut slow = open(&store, ids, 4).await;
        let mut fast = open(&store, ids, 4).await;
        fast.settle_rejected("first".into()).await.unwrap();

        // The slow handler's write expects no stream, fails, and reads the answer.
        let settled = slow.settle_unchanged(None).await.unwrap();
        assert_eq!(settled, Settled::Rejected("first".into()));
        assert_eq!(recorded(&store, ids).await, ["CommandRejected"]);
    }

    #[tokio::test]
    async fn a_failure_is_written_over_by_the_next_outcome_and_never_over_a_final_one() {
        let store = InMemoryStore::new();
        let ids = ids();
        CommandLog::new(&store, ids, 1)
            .record_failure("the disk is full".into())
            .await
            .unwrap();

        let mut retry = CommandLog::new(&store, ids, 4);
        assert_eq!(
            retry.settled().await.unwrap(),
            None,
            "a failure is not final"
        );
        let write = retry.write(&accepted_with_events()).unwrap();
        assert_eq!(write.expected, ExpectedVersion::Exact(Revision(0)));
        store.append_multi(vec![write]).await.unwrap();

        CommandLog::new(&store, ids, 1)
            .record_failure("a late failure".into())
            .await
            .unwrap();
        assert_eq!(
            recorded(&store, ids).await,
            ["CommandFailed", "CommandAccepted"]
        );
    }

    #[tokio::test]
    async fn after_a_failed_append_the_answer_of_the_handler_that_won_is_the_commands() {
        let store = InMemoryStore::new();
        let ids = ids();
        let mut slow = open(&store, ids, 4).await;
        let fast = open(&store, ids, 4).await;
        store
            .append_multi(vec![fast.write(&accepted_with_events()).unwrap()])
            .await
            .unwrap();

        // Another outcome than the winner's (the same one would be a re-send the store
        // recognises by its id): the append expecting no stream fails.
        let unchanged = CommandOutcome::Accepted {
            revision: None,
            written: Vec::new(),
            position: None,
        };
        let error = store
            .append_multi(vec![slow.write(&unchanged).unwrap()])
            .await
            .unwrap_err();
        assert!(
            matches!(error, eventfold_core::Error::WrongExpectedVersion { .. }),
            "{error}"
        );
        let settled = slow.after_failed_append(&error).await.unwrap();
        assert!(
            matches!(&settled, Some(Settled::Accepted(a)) if a.duplicate && a.written.len() == 1),
            "{settled:?}"
        );
    }

    #[tokio::test]
    async fn after_a_failed_append_a_recorded_failure_is_written_over_next_time() {
        let store = InMemoryStore::new();
        let ids = ids();
        let mut handler = open(&store, ids, 4).await;
        fail(&store, ids).await;

        let error = store
            .append_multi(vec![handler.write(&accepted_with_events()).unwrap()])
            .await
            .unwrap_err();
        assert_eq!(handler.after_failed_append(&error).await.unwrap(), None);
        let write = handler.write(&accepted_with_events()).unwrap();
        assert_eq!(write.expected, ExpectedVersion::Exact(Revision(0)));
    }

    #[tokio::test]
    async fn a_log_that_keeps_changing_is_a_conflict() {
        let store = InMemoryStore::new();
        let ids = ids();
        let mut handler = open(&store, ids, 1).await;
        fail(&store, ids).await;

        let error = handler
            .settle_rejected("no".into())
            .await
            .expect_err("one attempt, and the log changed under it");
        assert!(
            matches!(&error, Error::Conflict { stream, attempts: 1 } if *stream == streams::command(ids.command_id)),
            "{error}"
        );
        assert_eq!(recorded(&store, ids).await, ["CommandFailed"]);
    }
}
