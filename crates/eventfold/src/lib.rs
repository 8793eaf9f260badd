//! eventfold, the framework: write a domain as aggregates and process managers over
//! any eventfold store (embedded, PostgreSQL, remote over HTTP).
//!
//! - [`DomainEvent`]: typed events with a stable name and schema version;
//!   [`Upcaster`]: the hook that brings stored events to the version the code reads.
//! - [`Aggregate`]: `decide` (command → events or a typed rejection) and `evolve`
//!   (event → state), pure and synchronous.
//! - [`Repository`]: load (snapshot + tail), decide, append with expected versions,
//!   retry on conflict, idempotent by command id ([`Envelope`]), snapshots every N events.
//! - [`CommandQueue`]: asynchronous command handling whose [`CommandOutcome`] is
//!   recorded in the store and queried by command id.
//! - [`process`]: event-sourced process managers, versioned by start time, with
//!   Takeover and durable timeouts.
//! - [`projection`]: projections into transactional read models (SQLite, PostgreSQL)
//!   with atomic checkpoints, rebuilds beside the live read model, live/replay context
//!   and an outbox for side effects.
//! - [`personal`]: values of events that belong to a person ([`DomainEvent::personal`],
//!   [`Personal`]), shredded by `forget`.
//! - [`translation`]: internal events translated to the contract other services read
//!   (and a consumed contract to internal events), in a stream of their own.
//! - [`testkit`]: given events, when a command, then events or a rejection.
//!
//! The guide is `docs/framework.md`. The framework is written against the
//! [`EventStore`] trait only, so everything here works on every backend.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod aggregate;
mod command;
mod command_log;
pub mod compensation;
mod error;
mod event;
pub mod personal;
pub mod process;
pub mod projection;
mod queue;
mod repository;
pub mod streams;
pub mod testkit;
pub mod translation;

/// Events read per page where the framework walks the store: loading one aggregate's
/// stream, a process runner catching up on `$all`. A page is held whole in memory (a
/// load folds one page at a time), so a thousand events of a few kilobytes stay a few
/// megabytes; over HTTP a page is one request, so a long stream still loads in few
/// round trips.
const PAGE_EVENTS: u64 = 1_024;

pub use aggregate::{Aggregate, Decision};
pub use command::{
    Accepted, COMMAND_CAUSATION_ID_KEY, CommandError, CommandOutcome, Envelope, Written,
};
pub use command_log::outcome;
pub use error::{Error, Result};
pub use event::{DomainEvent, EventType, IdentityUpcaster, Upcaster};
pub use personal::{Personal, PersonalData};
pub use queue::CommandQueue;
pub use repository::{Loaded, Repository};

pub use eventfold_core::{
    AllFilter, AllSlice, AppendResult, EventData, EventStore, ExpectedVersion, InMemoryStore,
    LayerExt, Position, ReadAll, ReadStream, RecordedEvent, Revision, StreamWrite,
};

/// The guide, `docs/framework.md`, whose examples run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/framework.md")]
pub struct FrameworkGuide;
