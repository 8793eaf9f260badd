//! `cargo run -p eventfold-examples --example auction [-- --data DIR]`: the auction
//! questions story, end to end, in a temporary directory (or in DIR, which must not
//! hold an earlier run). See `examples/auction/README.md`.

use std::path::PathBuf;

use anyhow::{Context, bail};
use eventfold_examples::auction::story;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (_temporary, root) = match data_dir()? {
        Some(dir) => {
            if dir.exists() && dir.read_dir()?.next().is_some() {
                bail!(
                    "{} is not empty: the story starts from nothing",
                    dir.display()
                );
            }
            (None, dir)
        }
        None => {
            let temporary = tempfile::tempdir().context("creating a temporary directory")?;
            let root = temporary.path().to_path_buf();
            (Some(temporary), root)
        }
    };
    let mut out = std::io::stdout().lock();
    story::run(&root, &mut out).await?;
    Ok(())
}

/// The `--data DIR` argument, if given.
fn data_dir() -> anyhow::Result<Option<PathBuf>> {
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next(), args.next()) {
        (None, _, _) => Ok(None),
        (Some("--data"), Some(dir), None) => Ok(Some(PathBuf::from(dir))),
        _ => bail!("usage: auction [--data DIR]"),
    }
}
