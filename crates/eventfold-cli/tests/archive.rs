//! Scenario: archives through the binary. `eventfold archive --data` to a directory
//! (`file://`) and `eventfold restore` into a new one give the same `$all`, personal
//! values still sealed in the archive; `serve --archive` archives while it serves, and a
//! restore of what it archived matches, and `archive --server` has it archive at once;
//! a restore onto PostgreSQL serves the same log (positions, gaps and `recorded_at`
//! included); bad URLs and targets are refused with clear errors; `--keep-local` moves
//! history to the archive and `read`, `verify` and `serve` still reach it. (Archives in a real S3 server: `crates/eventfold-archive/tests/s3.rs`.)

use std::path::Path;
use std::process::Output;
use std::time::Instant;

use eventfold_testsupport::WAIT_MAX;
use eventfold_testsupport::cli::{Cli, text};
use eventfold_testsupport::dirs::{holds_bytes, path_arg, temp_dir};
use eventfold_testsupport::postgres::{TestSchema, database_url};
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

fn file_url(dir: &Path) -> String {
    format!("file://{}", dir.display())
}

fn append(target: &[&str], stream: &str, n: usize) {
    let data = json!({"n": n, "note": "archived"}).to_string();
    let mut args = vec!["append"];
    args.extend_from_slice(target);
    args.extend_from_slice(&[stream, "--type", "Noted", "--json", &data]);
    run(&args);
}

fn read_all(target: &[&str]) -> String {
    let mut args = vec!["read"];
    args.extend_from_slice(target);
    args.push("$all");
    text(&run(&args).stdout)
}

#[test]
fn archive_and_restore_of_a_data_directory_give_the_same_log() {
    let (dir, bucket, target) = (temp_dir(), temp_dir(), temp_dir());
    let data = ["--data", dir.arg()];
    for n in 0..5 {
        append(&data, &format!("order-{}", n % 2), n);
    }
    let personal = json!({"$personal": {"subject": "ann", "fields": ["/email"]}}).to_string();
    run(&[
        "append",
        "--data",
        dir.arg(),
        "user-ann",
        "--type",
        "SignedUp",
        "--json",
        r#"{"email": "ann@example.com"}"#,
        "--metadata",
        &personal,
    ]);
    let url = file_url(bucket.path());
    let archived = run(&["archive", "--data", dir.arg(), "--to", &url]);
    assert!(
        text(&archived.stdout).contains("archived positions 0..6"),
        "{}",
        text(&archived.stdout)
    );
    assert!(
        !holds_bytes(bucket.path(), b"ann@example.com"),
        "personal values stay sealed"
    );
    // A second run has nothing to upload.
    let again = run(&["archive", "--data", dir.arg(), "--to", &url]);
    assert!(
        text(&again.stdout).contains("uploaded 0 pieces"),
        "{}",
        text(&again.stdout)
    );

    let restored_dir = target.join("restored");
    let restored = run(&["restore", "--from", &url, "--data", path_arg(&restored_dir)]);
    assert!(
        text(&restored.stdout).contains("restored and verified: 6 events"),
        "{}",
        text(&restored.stdout)
    );
    assert!(text(&restored.stderr).contains("keys of personal data are not in the archive"));
    // The key store is backed up apart; with it, the restored store reads the same.
    copy_dir(&dir.join("keys"), &restored_dir.join("keys"));
    let new = ["--data", path_arg(&restored_dir)];
    assert_eq!(read_all(&new), read_all(&data));
    let events: Vec<Value> = read_all(&new)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(events[5]["data"]["email"], "ann@example.com");
    run(&["verify", "--data", path_arg(&restored_dir)]);
}

#[test]
fn serve_with_archive_keeps_the_archive_up_to_date() {
    let (dir, bucket, target) = (temp_dir(), temp_dir(), temp_dir());
    let url = file_url(bucket.path());
    let server = eventfold().serve(&[
        "--data",
        dir.arg(),
        "--listen",
        "127.0.0.1:0",
        "--archive",
        &url,
        "--archive-interval-s",
        "1",
    ]);
    let address = format!("http://{}", server.address());
    let remote = ["--server", address.as_str()];
    for n in 0..12 {
        append(&remote, "cart-1", n);
    }
    let secret = r#"{"n": 0, "note": "delete-me-everywhere"}"#;
    run(&[
        "append", "--server", &address, "secret-1", "--type", "Noted", "--json", secret,
    ]);
    // The archive follows: wait (bounded) until its manifest reaches the head.
    wait_for_manifest(bucket.path(), "position 13", |m| m["end_position"] == 13);
    // A hard delete and an online scavenge rewrite the segment: the archive follows
    // that too, and the deleted event's bytes leave it.
    run(&["delete", "--server", &address, "secret-1", "--hard"]);
    run(&["scavenge", "--server", &address]);
    // The old pieces are removed once the new manifest is written: wait for both.
    wait_for_manifest(
        bucket.path(),
        "a rewritten segment without the deleted event",
        |m| {
            m["segments"][0]["generation"] == 1
                && !holds_bytes(bucket.path(), b"delete-me-everywhere")
        },
    );
    // `archive --server`: the server archives its own log, now.
    append(&remote, "cart-1", 12);
    let now = run(&["archive", "--server", &address]);
    // The head: the 14 events, the tombstone and the append after the archive above.
    let head = serde_json::from_str::<Value>(&text(
        &run(&[
            "read",
            "--server",
            &address,
            "$all",
            "--backward",
            "--limit",
            "1",
        ])
        .stdout,
    ))
    .expect("the last event")["position"]
        .as_u64()
        .expect("a position");
    assert!(
        text(&now.stdout).contains(&format!("archived positions 0..{}", head + 1)),
        "{} (head {head})",
        text(&now.stdout)
    );
    // A client may not make the server write to a local path of its choosing.
    let elsewhere = temp_dir();
    let refused = eventfold().run(&[
        "archive",
        "--server",
        &address,
        "--to",
        &file_url(elsewhere.path()),
    ]);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("only s3:// archives"),
        "{}",
        text(&refused.stderr)
    );
    let served = read_all(&remote);
    server.stop();

    let restored_dir = target.join("restored");
    run(&["restore", "--from", &url, "--data", path_arg(&restored_dir)]);
    assert_eq!(read_all(&["--data", path_arg(&restored_dir)]), served);
}

#[test]
fn an_archive_restores_onto_postgresql_with_the_same_log() {
    let Some(url) = database_url() else { return };
    let (dir, bucket, target) = (temp_dir(), temp_dir(), temp_dir());
    // Declared before the server, so dropped after it (also when a check fails).
    let schema = TestSchema::new(&url, "ef_restore");
    let data = ["--data", dir.arg()];
    for n in 0..6 {
        append(&data, &format!("order-{}", n % 3), n);
    }
    // A hard delete and a scavenge leave positions without events in the log.
    run(&["delete", "--data", dir.arg(), "order-0", "--hard"]);
    run(&["scavenge", "--data", dir.arg()]);
    append(&data, "order-9", 9);
    let expected = read_all(&data);
    let url_of_archive = file_url(bucket.path());
    run(&["archive", "--data", dir.arg(), "--to", &url_of_archive]);

    let local = target.join("node");
    let restored = run(&[
        "restore",
        "--from",
        &url_of_archive,
        "--data",
        path_arg(&local),
        "--postgres",
        &url,
        "--postgres-schema",
        &schema.name,
    ]);
    assert!(
        text(&restored.stdout).contains("restored and verified in PostgreSQL schema"),
        "{}",
        text(&restored.stdout)
    );
    assert!(
        !local.join("restore-scratch").exists(),
        "the scratch copy is removed"
    );
    let server = eventfold().serve(&[
        "--data",
        path_arg(&local),
        "--listen",
        "127.0.0.1:0",
        "--postgres",
        &url,
        "--postgres-schema",
        &schema.name,
    ]);
    let address = format!("http://{}", server.address());
    assert_eq!(read_all(&["--server", address.as_str()]), expected);
    server.stop();

    // A schema that holds events is not restored over.
    let again = eventfold().run(&[
        "restore",
        "--from",
        &url_of_archive,
        "--data",
        path_arg(&target.join("again")),
        "--postgres",
        &url,
        "--postgres-schema",
        &schema.name,
    ]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("holds events already"),
        "{}",
        text(&again.stderr)
    );
}

#[test]
fn bad_archive_urls_and_targets_are_refused() {
    let (dir, bucket) = (temp_dir(), temp_dir());
    append(&["--data", dir.arg()], "order-1", 0);
    let refused = eventfold().run(&["archive", "--data", dir.arg(), "--to", "ftp://host/x"]);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("unsupported scheme ftp://"),
        "{}",
        text(&refused.stderr)
    );
    // No S3 credentials (the runner leaves the machine's out): said at once.
    let refused = eventfold().run(&["archive", "--data", dir.arg(), "--to", "s3://bucket/prefix"]);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("no S3 credentials"),
        "{}",
        text(&refused.stderr)
    );
    let url = file_url(bucket.path());
    run(&["archive", "--data", dir.arg(), "--to", &url]);
    let refused = eventfold().run(&["restore", "--from", &url, "--data", dir.arg()]);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("holds a store already"),
        "{}",
        text(&refused.stderr)
    );
    let empty = temp_dir();
    let refused = eventfold().run(&[
        "restore",
        "--from",
        &file_url(empty.path()),
        "--data",
        path_arg(&empty.join("new")),
    ]);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("the manifest is missing"),
        "{}",
        text(&refused.stderr)
    );
}

/// Waits (bounded) until the archive's manifest in `bucket` satisfies `done`.
fn wait_for_manifest(bucket: &Path, what: &str, done: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let manifest = std::fs::read(bucket.join("manifest.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
        if manifest.as_ref().is_some_and(&done) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the archive did not reach {what}: {manifest:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}

/// Writes `events` events to a new store in `dir` with 16 KiB segments, so that a
/// small test has sealed segments to move to the archive (a store opens with any
/// segment size; the CLI's default only decides where its active segment seals).
fn small_segment_store(dir: &Path, events: usize) {
    use eventfold_core::{EventData, ExpectedVersion, StreamWrite};
    let options = eventfold_log::LogOptions {
        segment_bytes_max: 16 * 1024,
        append_bytes_max: 12 * 1024,
        ..eventfold_log::LogOptions::default()
    };
    let store = eventfold_log::LogStore::open(dir, options).expect("open");
    for n in 0..events {
        let event =
            EventData::json("Noted", &json!({"n": n, "padding": "z".repeat(200)})).expect("event");
        let write = StreamWrite::new(
            format!("order-{}", n % 3),
            ExpectedVersion::Any,
            vec![event],
        );
        store.append_multi_blocking(vec![write]).expect("append");
    }
    store.close();
}

fn segment_files(dir: &Path, extension: &str) -> usize {
    std::fs::read_dir(dir.join("segments"))
        .expect("segments")
        .filter(|e| {
            e.as_ref()
                .expect("entry")
                .path()
                .extension()
                .is_some_and(|x| x == extension)
        })
        .count()
}

#[test]
fn keep_local_moves_history_to_the_archive_and_every_command_still_reads_it() {
    let (dir, bucket) = (temp_dir(), temp_dir());
    small_segment_store(dir.path(), 400);
    let data = ["--data", dir.arg()];
    let before = read_all(&data);
    let sealed = segment_files(dir.path(), "seg") - 1;
    assert!(sealed >= 4, "the test needs sealed segments");
    let url = file_url(bucket.path());

    let refused = eventfold().run(&[
        "archive",
        "--data",
        dir.arg(),
        "--to",
        &url,
        "--keep-local",
        "lots",
    ]);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("lots"),
        "{}",
        text(&refused.stderr)
    );

    let out = run(&[
        "archive",
        "--data",
        dir.arg(),
        "--to",
        &url,
        "--keep-local",
        "0",
    ]);
    assert!(
        text(&out.stdout).contains(&format!("dropped the local copy of {sealed} segments")),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(
        segment_files(dir.path(), "seg"),
        1,
        "only the active segment stays"
    );
    assert_eq!(segment_files(dir.path(), "cold"), sealed);
    assert_eq!(read_all(&data), before, "a read fetches history back");
    let verified = run(&["verify", "--data", dir.arg()]);
    assert!(
        text(&verified.stdout).contains(&format!(
            "{sealed} of the segments are kept only in the archive"
        )),
        "{}",
        text(&verified.stdout)
    );

    // A server on the tiered store: history over HTTP, appends on the hot tail.
    let server = eventfold().serve(&[
        "--data",
        dir.arg(),
        "--listen",
        "127.0.0.1:0",
        "--archive",
        &url,
        "--archive-interval-s",
        "1",
        "--archive-keep-local",
        "1MiB",
    ]);
    let address = format!("http://{}", server.address());
    let remote = ["--server", address.as_str()];
    assert_eq!(read_all(&remote), before);
    append(&remote, "order-1", 400);
    let served = read_all(&remote);
    assert_eq!(served.lines().count(), 401);
    server.stop();

    // The archive is still whole: a restore brings every segment back to a disk.
    let restored = temp_dir();
    let new_dir = restored.join("data");
    run(&["restore", "--from", &url, "--data", path_arg(&new_dir)]);
    assert_eq!(segment_files(&new_dir, "cold"), 0);
    // Whether the server's last pass took the last append in before it stopped.
    let restored_log = read_all(&["--data", path_arg(&new_dir)]);
    assert!(restored_log == before || restored_log == served);
}
