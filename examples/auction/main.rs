//! `cargo run -p eventfold-examples --example auction [-- --data DIR]`: the auction
//! questions story, end to end, in a temporary directory (or in DIR, which must not
//! hold an earlier run). See `examples/auction/README.md`.

use eventfold_examples::auction::story;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (_temporary, root) = eventfold_examples::story_root("auction")?;
    let mut out = std::io::stdout().lock();
    story::run(&root, &mut out).await?;
    Ok(())
}
