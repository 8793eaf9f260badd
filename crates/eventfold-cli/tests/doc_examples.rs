//! The shell examples of `README.md` and `docs/` run as written, so that none can rot.
//!
//! Every fenced block of those files names its language. The `sh` blocks are
//! examples: each file's run in order, with `bash -e -o pipefail`, in a fresh
//! directory, against a server the test starts there as the README's first command
//! does (`eventfold serve --data ./data`), with `eventfold` on the `PATH`. What a
//! test must change is kept to the least and said here:
//! - the ports: the server's 2113 (and 2114, the port the secure-server example
//!   uses) become free ports, so tests and a server on the machine do not collide;
//! - `cargo run --release -- ` is `eventfold `, the binary under test;
//! - `curl` fails on an HTTP error (`--fail-with-body`), so an example that gets a
//!   4xx or 5xx fails the test; `curl -N` (following a live stream) is stopped after
//!   two seconds and counts as a success when it got its answer.
//!
//! A block tagged `sh no-run` is not run: the two commands of the README (the
//! server itself and the test suite), installs, and long measurements. Synopses
//! are `text`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use eventfold_testsupport::cli::{Cli, text};

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The documentation files whose examples are tested.
fn documents() -> Vec<PathBuf> {
    let root = repository_root();
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ is readable")
        .map(|entry| entry.expect("docs/ entries are readable").path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// A fenced block: its info string, the line it starts on, its text.
struct Block {
    info: String,
    line: usize,
    text: String,
}

fn blocks(markdown: &str) -> Vec<Block> {
    let mut found = Vec::new();
    let mut open: Option<Block> = None;
    for (number, line) in markdown.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => {
                open = Some(Block {
                    info: info.trim().to_string(),
                    line: number + 1,
                    text: String::new(),
                })
            }
            (Some(_), Some(_)) => found.extend(open.take()),
            (Some(block), None) => {
                block.text.push_str(line);
                block.text.push('\n');
            }
            (None, None) => {}
        }
    }
    found
}

fn is_example(block: &Block) -> bool {
    let mut words = block.info.split_whitespace();
    words.next() == Some("sh") && !words.any(|w| w == "no-run")
}

#[test]
fn every_fenced_block_names_its_language() {
    for file in documents() {
        let markdown = std::fs::read_to_string(&file).expect("the document is readable");
        for block in blocks(&markdown) {
            assert!(
                !block.info.is_empty(),
                "{}:{}: a fenced block without a language: tag shell examples `sh` (they \
                 are run by this test; `sh no-run` when they cannot be), synopses and \
                 output `text`",
                file.display(),
                block.line
            );
        }
    }
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A directory holding `curl`: the real one, made to fail on HTTP errors and to stop
/// following a live stream after two seconds.
fn curl_wrapper(dir: &Path) -> PathBuf {
    let real = Command::new("sh")
        .args(["-c", "command -v curl"])
        .output()
        .expect("sh runs");
    let real = text(&real.stdout).trim().to_string();
    assert!(
        !real.is_empty(),
        "curl is needed to run the documentation's examples"
    );
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("bin/ is created");
    let script = format!(
        r#"#!/usr/bin/env bash
follow=no
for argument in "$@"; do [ "$argument" = "-N" ] && follow=yes; done
if [ "$follow" = yes ]; then
  status=0
  {real} --fail-with-body --max-time 2 "$@" || status=$?
  # 28: the time was up, which is how a followed stream ends here.
  if [ "$status" = 28 ]; then exit 0; else exit "$status"; fi
fi
exec {real} --fail-with-body "$@"
"#
    );
    let path = bin.join("curl");
    std::fs::write(&path, script).expect("the curl wrapper is written");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("the curl wrapper is executable");
    }
    bin
}

/// Runs the `sh` examples of one document in order; returns how many ran.
fn run_examples(file: &Path) -> usize {
    let markdown = std::fs::read_to_string(file).expect("the document is readable");
    let examples: Vec<Block> = blocks(&markdown).into_iter().filter(is_example).collect();
    if examples.is_empty() {
        return 0;
    }
    let work = eventfold_testsupport::dirs::temp_dir();
    let home = work.path().join("home");
    std::fs::create_dir_all(&home).expect("home/ is created");
    let eventfold = PathBuf::from(env!("CARGO_BIN_EXE_eventfold"));
    let wrappers = curl_wrapper(work.path());
    let path = format!(
        "{}:{}:{}",
        wrappers.display(),
        eventfold
            .parent()
            .expect("the binary has a directory")
            .display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let server = Cli::new(&eventfold).env("HOME", &home).serve(&[
        "--data",
        &work.path().join("data").to_string_lossy(),
        "--listen",
        "127.0.0.1:0",
    ]);
    let port = server
        .address()
        .rsplit(':')
        .next()
        .expect("the address has a port")
        .to_string();
    let secure_port = free_port().to_string();
    for example in &examples {
        let script = example
            .text
            .replace("cargo run --release -- ", "eventfold ")
            .replace(":2113", &format!(":{port}"))
            .replace(":2114", &format!(":{secure_port}"));
        // Output goes to files, not pipes: a process an example leaves in the
        // background (a server) would keep a pipe open, and reading it would never
        // end. The example runs in a process group of its own, ended after it.
        let stdout_path = work.join("example.stdout");
        let stderr_path = work.join("example.stderr");
        let mut command = Command::new("bash");
        command
            .args(["-e", "-o", "pipefail", "-c", &script])
            .current_dir(work.path())
            .env("PATH", &path)
            .env("HOME", &home)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout_path).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr_path).expect("stderr file"));
        for variable in eventfold_testsupport::cli::ENVIRONMENT_REMOVED {
            command.env_remove(variable);
        }
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command.spawn().expect("bash runs");
        let status = child.wait().expect("bash ends");
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", child.id())])
            .stderr(Stdio::null())
            .status();
        let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            status.success(),
            "{}:{}: the example failed ({status}):\n{}\n--- stdout\n{}\n--- stderr\n{}",
            file.display(),
            example.line,
            example.text,
            read(&stdout_path),
            read(&stderr_path)
        );
    }
    server.stop();
    examples.len()
}

#[test]
fn the_readme_examples_run_as_written() {
    let ran = run_examples(&repository_root().join("README.md"));
    assert!(ran >= 3, "the README has runnable examples ({ran} ran)");
}

#[test]
fn the_examples_of_docs_run_as_written() {
    let mut ran = 0;
    for file in documents().into_iter().skip(1) {
        ran += run_examples(&file);
    }
    assert!(ran >= 3, "docs/ has runnable examples ({ran} ran)");
}
