//! One module per subcommand.

pub mod append;
pub mod bench;
pub mod demo;
pub mod read;
pub mod serve;
pub mod verify;

use anyhow::Context;
use eventfold_log::{LogOptions, LogStore};

/// Opens the embedded store in `dir`, with the directory named in any error.
pub fn open_store(dir: &std::path::Path) -> anyhow::Result<LogStore> {
    LogStore::open(dir, LogOptions::default())
        .with_context(|| format!("cannot open the store in {}", dir.display()))
}
