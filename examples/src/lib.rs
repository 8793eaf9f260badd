//! The examples of eventfold, as a library their `main.rs` and their tests share.
//! Each example keeps its code in its own folder beside its README.

#[path = "../auction/mod.rs"]
pub mod auction;
#[path = "../inventory/mod.rs"]
pub mod inventory;

use std::path::PathBuf;

/// Where an example's `main` runs its story: `--data DIR` (which must be empty or
/// missing: the story starts from nothing), else a temporary directory, kept alive by
/// the returned guard.
pub fn story_root(example: &str) -> anyhow::Result<(Option<tempfile::TempDir>, PathBuf)> {
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next(), args.next()) {
        (None, _, _) => {
            let temporary = tempfile::tempdir()
                .map_err(|e| anyhow::anyhow!("creating a temporary directory: {e}"))?;
            let root = temporary.path().to_path_buf();
            Ok((Some(temporary), root))
        }
        (Some("--data"), Some(dir), None) => {
            let dir = PathBuf::from(dir);
            if dir.exists() && dir.read_dir()?.next().is_some() {
                anyhow::bail!(
                    "{} is not empty: the story starts from nothing",
                    dir.display()
                );
            }
            Ok((None, dir))
        }
        _ => anyhow::bail!("usage: {example} [--data DIR]"),
    }
}
