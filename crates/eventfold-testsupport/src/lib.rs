//! What eventfold's tests share, written once instead of copied between test files.
//!
//! - [`postgres`]: the test database named by `EVENTFOLD_TEST_POSTGRES_URL` (a test
//!   without one says loudly that it skipped) and a schema of its own per test,
//!   dropped afterwards.
//! - [`cli`]: a binary run as a user would (arguments, stdin; status, stdout, stderr
//!   captured), and `eventfold serve` as a process with its announced address,
//!   stopped with SIGTERM or killed.
//! - [`crash`]: the crash harness: a test runs its own binary again as a child that
//!   writes, and kills it with SIGKILL mid-write.
//! - [`dirs`]: temporary directories for data, removed afterwards.
//! - [`s3`]: a real S3-compatible server (SeaweedFS) named by `EVENTFOLD_TEST_SEAWEEDFS`,
//!   which a test can kill and start again (a test without it says loudly it skipped).
//!
//! A dev-dependency only (never published), and it depends on no eventfold crate, so
//! every crate's tests can use it, the engine's included.

pub mod cli;
pub mod crash;
pub mod dirs;
pub mod postgres;
pub mod s3;

use std::time::Duration;

/// Longest a test waits for something that should happen at once: a process to
/// announce itself or to stop, a child to start.
pub const WAIT_MAX: Duration = Duration::from_secs(20);
