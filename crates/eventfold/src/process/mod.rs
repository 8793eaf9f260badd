//! Process managers: long-running business processes that react to messages (events)
//! of one conversation (correlation id) by publishing new messages.
//!
//! - **Event-sourced.** Each instance records the messages it saw in its stream
//!   ([`streams::process`](crate::streams::process)); its state is rebuilt by
//!   replaying them through the same code with output muted, so nothing is published
//!   twice.
//! - **Versioned by start time.** [`ProcessVersions`] maps cut-off times to versions: an
//!   instance runs the version in force when it started, for its whole life.
//! - **Takeover.** [`ProcessRunner::take_over`] hands a running instance (same
//!   correlation id) to a newer version: the old one winds down
//!   ([`ProcessManager::on_takeover_requested`]), the newer one migrates its state
//!   ([`ProcessManager::migrate_state`]) or replays what the instance saw, and then
//!   continues it. [`ProcessRunner::take_over_all`] does so for every running instance.
//! - **Durable timeouts.** A process never waits without a deadline: every step answers
//!   [`Next::Wait`] with a timeout or [`Next::Done`]. Deadlines are events in the store
//!   ([`streams::timeouts`](crate::streams::timeouts)), fired by
//!   [`ProcessRunner::fire_due_timeouts`] — after a restart too.
//!
//! Output is recorded before it is published (an outbox): a step's records and the
//! outputs it publishes are appended together, with the instance stream's expected
//! version; only once that append succeeded are the outputs published, and then marked
//! published. A step that loses a race (a concurrent runner, a takeover) thus publishes
//! nothing, and output computed from a stale state never leaves the runner. If the
//! process stops between the append and the mark, the outputs still pending are
//! published again, with the same ids (derived from the step's cause), by
//! [`ProcessRunner::publish_pending`] (which [`ProcessRunner::catch_up`] and
//! [`ProcessRunner::run`] call); receivers use the ids to drop duplicates — a
//! [`Repository`](crate::Repository) does when the output is a command whose command id
//! is the output's id. Delivery is thus at least once, effects once.
//!
//! The module's rooms: [`ProcessManager`] and its [`Context`] (`manager.rs`), the
//! versions by start time (`versions.rs`), what the framework's streams record
//! (`records.rs`), rebuilding an instance from its stream (`replay.rs`), the
//! [`ProcessRunner`] feeding the log to instances (`runner.rs`), durable timeouts
//! (`timeouts.rs`), and the outbox with its [`Publisher`] (`outbox.rs`).

mod manager;
mod outbox;
mod records;
mod replay;
mod runner;
mod timeouts;
mod trim;
mod versions;

pub(crate) use manager::deadline;
pub use manager::{Context, Next, ProcessManager};
pub use outbox::{Publisher, StreamPublisher};
pub use runner::ProcessRunner;
pub(crate) use trim::{Trim, trim};
pub use versions::ProcessVersions;
