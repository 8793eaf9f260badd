//! Scenario: personal data through the binary. Events marked `$personal` are appended
//! on a data directory and through a server; no file holds their plaintext; `read`
//! opens them, `export` keeps them sealed; `eventfold forget` (on `--data` and on
//! `--server`, i.e. `DELETE /subjects/{subject}`) makes them read redacted, also after
//! the server restarts; and a wrong master key is refused with a message naming it.

use std::path::Path;
use std::process::Output;

use eventfold_testsupport::cli::{Cli, text};
use eventfold_testsupport::dirs::{holds_bytes, path_arg, temp_dir};
use serde_json::{Value, json};

fn eventfold() -> Cli {
    Cli::new(env!("CARGO_BIN_EXE_eventfold"))
}

fn run(args: &[&str]) -> Output {
    let output = eventfold().run(args);
    assert!(
        output.status.success(),
        "eventfold {args:?} failed: {}",
        text(&output.stderr)
    );
    output
}

fn lines(output: &Output) -> Vec<Value> {
    text(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// Appends a sign-up of `subject` with a personal email to `user-<subject>`.
fn sign_up(target: &[&str], subject: &str, email: &str) {
    let stream = format!("user-{subject}");
    let data = json!({"email": email, "plan": "pro"}).to_string();
    let metadata = json!({"$personal": {"subject": subject, "fields": ["/email"]}}).to_string();
    let mut args = vec!["append"];
    args.extend_from_slice(target);
    args.extend_from_slice(&[
        &stream,
        "--type",
        "SignedUp",
        "--json",
        &data,
        "--metadata",
        &metadata,
    ]);
    run(&args);
}

fn email_read(target: &[&str], subject: &str) -> Value {
    let stream = format!("user-{subject}");
    let mut args = vec!["read"];
    args.extend_from_slice(target);
    args.push(&stream);
    lines(&run(&args))[0]["data"]["email"].clone()
}

/// Whether any file under `dir` holds `needle`.
fn on_disk(dir: &Path, needle: &str) -> bool {
    holds_bytes(dir, needle.as_bytes())
}

#[test]
fn forget_on_a_data_directory_redacts_reads_and_exports_keep_values_sealed() {
    let dir = temp_dir();
    let data = ["--data", dir.arg()];
    sign_up(&data, "ann", "ann@example.com");
    sign_up(&data, "bob", "bob@example.com");

    // The default start made its own master key, beside the log.
    assert!(dir.path().join("keys/master.key").is_file());
    assert!(!on_disk(dir.path(), "ann@example.com"));
    assert!(
        on_disk(dir.path(), "\"plan\":\"pro\""),
        "the search sees the log"
    );
    assert_eq!(email_read(&data, "ann"), "ann@example.com");

    let export = run(&["export", "--data", dir.arg()]);
    assert!(!text(&export.stdout).contains("ann@example.com"));
    assert!(lines(&export)[0]["data"]["email"]["$encrypted"].is_string());

    let forgotten = lines(&run(&["forget", "--data", dir.arg(), "ann"]));
    assert_eq!(forgotten[0]["subject"], "ann");
    assert_eq!(email_read(&data, "ann"), json!({"$redacted": true}));
    assert_eq!(email_read(&data, "bob"), "bob@example.com");
    let notes = lines(&run(&["read", "--data", dir.arg(), "$subjects"]));
    assert_eq!(notes[0]["type"], "$subject-forgotten");
    assert_eq!(notes[0]["data"], json!({"subject": "ann"}));
    let export = lines(&run(&["export", "--data", dir.arg()]));
    assert_eq!(export[0]["data"]["email"], json!({"$redacted": true}));
    assert!(export[1]["data"]["email"]["$encrypted"].is_string());
    assert!(!on_disk(dir.path(), "ann@example.com"));

    // Another master key: refused, naming the master key; nothing read.
    let other = temp_dir();
    let key_file = other.join("other.key");
    std::fs::write(&key_file, format!("{}\n", "7".repeat(64))).expect("key file");
    let refused = eventfold().run(&[
        "read",
        "--data",
        dir.arg(),
        "--master-key-file",
        path_arg(&key_file),
        "user-bob",
    ]);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("another master key"),
        "{}",
        text(&refused.stderr)
    );
    assert!(!text(&refused.stdout).contains("bob@example.com"));
}

#[test]
fn forget_through_a_server_redacts_and_survives_a_restart() {
    let dir = temp_dir();
    let key_file = dir.join("master.key");
    let keys = temp_dir();
    std::fs::write(&key_file, format!("{}\n", "3a".repeat(32))).expect("key file");
    let data_dir = keys.path().join("data");
    let serve_args = [
        "--data",
        path_arg(&data_dir),
        "--listen",
        "127.0.0.1:0",
        "--master-key-file",
        path_arg(&key_file),
    ];
    let server = eventfold().serve(&serve_args);
    let url = format!("http://{}", server.address());
    let remote = ["--server", url.as_str()];
    sign_up(&remote, "ann", "ann@example.com");
    sign_up(&remote, "bob", "bob@example.com");
    assert_eq!(email_read(&remote, "ann"), "ann@example.com");
    assert!(!on_disk(&data_dir, "ann@example.com"));
    // The given master key is used: none was created in the data directory.
    assert!(!data_dir.join("keys/master.key").exists());

    let forgotten = lines(&run(&["forget", "--server", &url, "ann"]));
    assert_eq!(forgotten[0]["subject"], "ann");
    assert_eq!(email_read(&remote, "ann"), json!({"$redacted": true}));
    assert_eq!(email_read(&remote, "bob"), "bob@example.com");
    server.stop();

    let server = eventfold().serve(&serve_args);
    let url = format!("http://{}", server.address());
    let remote = ["--server", url.as_str()];
    assert_eq!(email_read(&remote, "ann"), json!({"$redacted": true}));
    assert_eq!(email_read(&remote, "bob"), "bob@example.com");
    let all = lines(&run(&["read", "--server", &url, "$all"]));
    assert!(all.iter().any(|e| e["type"] == "$subject-forgotten"));
    assert!(!text(&run(&["read", "--server", &url, "$all"]).stdout).contains("ann@example.com"));
    server.stop();
    assert!(!on_disk(&data_dir, "ann@example.com"));
    assert!(!on_disk(&data_dir, "bob@example.com"));
}
