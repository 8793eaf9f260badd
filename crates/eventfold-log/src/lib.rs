//! The embedded engine of eventfold: a segmented, checksummed, append-only log with
//! group commit, a persisted per-stream index, and crash recovery.
//!
//! The on-disk format and the commit protocol are specified in `docs/log-format.md`.
//!
//! Architecture invariants:
//! - this crate knows nothing of JSON or HTTP: payloads are bytes;
//! - a record is never rewritten in place; only the active segment's tail changes, and a
//!   sealed segment is only ever replaced whole (repair, scavenge);
//! - positions handed to readers are committed (durable) ones;
//! - all file access goes through [`io::Storage`], so tests can inject faults.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod cold;
#[doc(hidden)]
pub mod fuzzing;
mod identity;
mod index;
pub mod io;
mod mark;
mod options;
mod positions;
mod record;
mod recovery;
mod repair;
mod scavenge;
mod scrub;
mod segment;
mod shared;
pub mod sim;
mod snapshot;
mod store;
mod verify;
mod writer;

pub use cold::SegmentFetcher;
pub use identity::restore_store_id;
pub use options::LogOptions;
pub use recovery::TailDamage;
pub use repair::{
    Correction, DamagedSpan, GivenUp, RepairOptions, RepairReport, SegmentRepair, repair,
    repair_with,
};
pub use scavenge::{ScavengeOptions, ScavengeProgress, ScavengeReport, SegmentScavenge};
pub use shared::LogStats;
pub use snapshot::{SegmentFileWriter, SegmentSnapshot, holds_segments};
pub use store::LogStore;
pub use verify::{Damage, VerifyReport, verify, verify_with};
