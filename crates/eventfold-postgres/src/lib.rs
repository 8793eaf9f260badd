//! The eventfold [`EventStore`](eventfold_core::EventStore) on PostgreSQL: many
//! stateless eventfold nodes on one database see one log, and PostgreSQL brings the
//! replication, fail-over and backups.
//!
//! # Positions are gap-free in commit order
//!
//! Stores that take global positions from a sequence hand them out before commit: a
//! transaction holding position 10 may commit after one holding 11, and a reader that
//! has seen 11 moves past 10 for good. Here every append transaction first locks the
//! one row of the `head` table (`SELECT … FOR UPDATE`), takes its positions from it,
//! and writes the new head before it commits; the lock is held until the commit. The
//! next writer, on this node or any other, cannot take positions before that commit
//! is visible, so the committed positions are always `0..head` with no hole, and a
//! reader never sees a position before every lower one is visible. The price is one
//! writer at a time per database; group commit (below) makes each turn carry every
//! append waiting on the node, so the lock is taken once per batch, not per append.
//!
//! # Appends
//!
//! One writer task per store commits batches of queued appends in one transaction
//! each (see `writer.rs`): under the lock it reads the streams' last events and the
//! given ids, decides every append with the shared `eventfold_core::plan::plan_append`
//! (expected versions, idempotent re-sends by id, id conflicts, tombstones), writes
//! the rows with one multi-row `INSERT` or a binary `COPY`, moves the head and
//! commits. Each append gets its own answer.
//!
//! # Live
//!
//! Commits send the new head with `NOTIFY`; a listener connection per store raises
//! the head `wait_for` watches, and polls the head table as well (after every
//! reconnect and every `poll_interval_ms`), so a lost notification delays a waiter by
//! one poll at most and never loses an event (see `listener.rs`).
//!
//! Architecture invariant: this crate knows SQL and the core's types, not HTTP.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod error;
mod keys;
mod listener;
mod options;
mod scavenge;
mod schema;
mod store;
mod writer;

pub use keys::PostgresKeyStore;
pub use options::{PostgresOptions, SCHEMA_NAME_BYTES_MAX};
pub use scavenge::HOLLOWED_EVENT_TYPE;
pub use store::PostgresStore;
