//! The framework's errors.

use eventfold_core::Revision;
use uuid::Uuid;

/// Result of the framework's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong while loading, deciding, appending or running a process manager.
/// (A command the aggregate refuses is not an error of this kind: see
/// [`CommandError::Rejected`](crate::CommandError::Rejected).)
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The event store failed.
    #[error(transparent)]
    Store(#[from] eventfold_core::Error),
    /// A stored event of a known type could not be decoded into the typed event.
    #[error(
        "event at revision {revision} of '{stream}' ({event_type} v{version}) does not decode: {reason}"
    )]
    Decode {
        /// The stream holding the event.
        stream: String,
        /// Its revision in the stream.
        revision: Revision,
        /// Its type name.
        event_type: String,
        /// Its schema version.
        version: u32,
        /// What the decoder said.
        reason: String,
    },
    /// A stored event has another schema version than the code reads, and no upcaster
    /// converted it.
    #[error(
        "event at revision {revision} of '{stream}' is {event_type} v{stored}, but this code reads v{expected}; register an upcaster"
    )]
    UnsupportedVersion {
        /// The stream holding the event.
        stream: String,
        /// Its revision in the stream.
        revision: Revision,
        /// Its type name.
        event_type: String,
        /// The version stored (after upcasting).
        stored: u32,
        /// The version the code reads.
        expected: u32,
    },
    /// A typed event could not be turned into a stored event.
    #[error("event cannot be encoded: {reason}")]
    Encode {
        /// Why.
        reason: String,
    },
    /// A decision targets a stream the aggregate was not loaded from (its expected
    /// version would be unknown).
    #[error("the decision targets stream '{stream}', which the aggregate was not loaded from")]
    TargetNotLoaded {
        /// The stream named by the decision.
        stream: String,
    },
    /// Aggregates are loaded from at least one stream, each named once.
    #[error("invalid set of streams: {reason}")]
    InvalidStreams {
        /// What is wrong with it.
        reason: String,
    },
    /// The streams kept changing under the command: every attempt met a wrong expected
    /// version. Nothing was written; the command may be sent again with the same id.
    #[error("stream '{stream}' kept changing: gave up after {attempts} attempts")]
    Conflict {
        /// The stream whose expected version failed last.
        stream: String,
        /// How many times the command was decided.
        attempts: u32,
    },
    /// A command with this id was handled before and rejected (the rejection is
    /// recorded in the command log); a command id has one outcome.
    #[error("command {command_id} was already rejected: {reason}")]
    AlreadyRejected {
        /// The command id.
        command_id: Uuid,
        /// The recorded reason.
        reason: String,
    },
    /// A compensation ([`Repository::cancel`](crate::Repository::cancel),
    /// [`Repository::correct`](crate::Repository::correct)) was refused: the event does
    /// not exist, is one of eventfold's own (`$`) events, is already cancelled, or
    /// would not decode once corrected. Nothing was written.
    #[error("event {event} cannot be compensated: {reason}")]
    Compensation {
        /// The event, as `<revision>@<stream>`.
        event: eventfold_core::EventRef,
        /// Why.
        reason: String,
    },
    /// A record the framework keeps in the store (command outcome, process instance,
    /// timeout) cannot be read.
    #[error("record at revision {revision} of '{stream}' is unreadable: {reason}")]
    Record {
        /// The framework stream holding it.
        stream: String,
        /// Its revision.
        revision: Revision,
        /// Why it cannot be read.
        reason: String,
    },
    /// A [`CommandQueue`](crate::CommandQueue) already handles its maximum of commands;
    /// nothing was accepted, and the command may be submitted again later.
    #[error("the command queue is full ({limit} commands being handled)")]
    QueueFull {
        /// How many commands the queue handles at a time.
        limit: usize,
    },
    /// A [`CommandQueue`](crate::CommandQueue) was used outside a tokio runtime, where it
    /// cannot start the command's task.
    #[error("no tokio runtime to handle the command in")]
    NoRuntime,
    /// No version of the process manager with this number is registered.
    #[error("process manager '{name}' has no version {version}")]
    UnknownProcessVersion {
        /// The process manager's name.
        name: String,
        /// The version asked for.
        version: u32,
    },
    /// No instance of the process manager runs for this correlation id.
    #[error("process manager '{name}' has no instance for correlation id {correlation_id}")]
    ProcessNotFound {
        /// The process manager's name.
        name: String,
        /// The correlation id.
        correlation_id: Uuid,
    },
}
