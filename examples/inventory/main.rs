//! `cargo run -p eventfold-examples --example inventory [-- --data DIR]`: the
//! versioning story, end to end, in a temporary directory (or in DIR, which must not
//! hold an earlier run). See `examples/inventory/README.md`.

use eventfold_examples::inventory::story;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (_temporary, root) = eventfold_examples::story_root("inventory")?;
    let mut out = std::io::stdout().lock();
    story::run(&root, &mut out).await?;
    Ok(())
}
