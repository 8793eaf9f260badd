//! What the command line does when its input or output is not what a command expects:
//! a reader that stops reading (`eventfold read ... | head -1`) ends the command quietly
//! and with success; an empty stream name (an unquoted `$all`) is explained; completion
//! scripts and the version are there for the shell.

use std::process::{Command, Stdio};

/// Runs `eventfold ARGS` with a stdout whose reading end is already closed, so that
/// the first write fails with a broken pipe.
fn run_with_closed_stdout(args: &[&str]) -> std::process::Output {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    Command::new(env!("CARGO_BIN_EXE_eventfold"))
        .args(args)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("eventfold runs")
}

fn eventfold(args: &[&str]) {
    let output = Command::new(env!("CARGO_BIN_EXE_eventfold"))
        .args(args)
        .output()
        .expect("eventfold runs");
    assert!(output.status.success(), "{args:?}: {output:?}");
}

/// A new store in a temporary directory, holding `order-1` with one event.
fn store_with_one_event() -> eventfold_testsupport::dirs::TempDir {
    let dir = eventfold_testsupport::dirs::temp_dir();
    let append = [
        "append",
        "--data",
        dir.arg(),
        "order-1",
        "--type",
        "OrderPlaced",
    ];
    eventfold(&[&append[..], &["--json", "{\"total\":42}"]].concat());
    dir
}

#[test]
fn read_into_a_closed_pipe_ends_quietly() {
    let dir = store_with_one_event();
    let data = dir.arg();
    let output = run_with_closed_stdout(&["read", "--data", data, "order-1"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exit {:?}, stderr: {stderr}",
        output.status
    );
    assert!(stderr.is_empty(), "stderr: {stderr}");
}

#[test]
fn a_command_printing_with_println_ends_quietly_too() {
    let output = run_with_closed_stdout(&["demo"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exit {:?}, stderr: {stderr}",
        output.status
    );
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
}

#[test]
fn an_empty_stream_name_says_to_quote_all() {
    let dir = store_with_one_event();
    let data = dir.arg();
    // What `eventfold read --data DIR $all` becomes in a shell.
    for args in [
        vec!["read", "--data", data, ""],
        vec!["tail", "--data", data, ""],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_eventfold"))
            .args(&args)
            .output()
            .expect("eventfold runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(stderr.contains("quote it: '$all'"), "{args:?}: {stderr}");
    }
}

#[test]
fn completions_are_printed_for_each_shell_and_name_the_commands() {
    for shell in ["bash", "zsh", "fish"] {
        let output = Command::new(env!("CARGO_BIN_EXE_eventfold"))
            .args(["completions", shell])
            .output()
            .expect("eventfold runs");
        let script = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{shell}: {output:?}");
        for command in ["serve", "append", "read", "repair"] {
            assert!(script.contains(command), "{shell} script lacks {command}");
        }
    }
}

#[test]
fn the_version_names_the_commit() {
    let output = Command::new(env!("CARGO_BIN_EXE_eventfold"))
        .arg("--version")
        .output()
        .expect("eventfold runs");
    let version = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    assert!(
        version.starts_with(&format!("eventfold {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
}
