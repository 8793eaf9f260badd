//! Puts the commit the binary was built from into `eventfold --version`, so that a bug
//! report names the exact code. Outside a git checkout (a source archive), "unknown".

use std::path::Path;
use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .map(|text| text.trim().to_string())
        .filter(|text| !text.is_empty())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=EVENTFOLD_COMMIT={commit}");
    // Run again when HEAD moves. A path that does not exist would make cargo run this
    // script on every build, so only existing ones are named.
    let git = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.git");
    let mut watched = false;
    for path in [
        git.join("HEAD"),
        git.join("refs/heads"),
        git.join("packed-refs"),
    ] {
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
            watched = true;
        }
    }
    if !watched {
        println!("cargo:rerun-if-changed=build.rs");
    }
}
