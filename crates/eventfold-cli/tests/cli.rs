//! The CLI contract, exercised through the real binary as a user would.

use std::path::Path;
use std::process::Output;

use eventfold_testsupport::cli::{Cli, text};
use eventfold_testsupport::dirs::{path_arg, temp_dir};

fn eventfold(args: &[&str]) -> Output {
    Cli::new(env!("CARGO_BIN_EXE_eventfold")).run(args)
}

fn stdout(output: &Output) -> String {
    text(&output.stdout)
}

fn stderr(output: &Output) -> String {
    text(&output.stderr)
}

fn append(dir: &Path, stream: &str, json: &str, expected: &str) -> Output {
    eventfold(&[
        "append",
        "--data",
        path_arg(dir),
        stream,
        "--type",
        "OrderPlaced",
        "--json",
        json,
        "--expected",
        expected,
    ])
}

#[test]
fn append_then_read_prints_one_event_json_per_line() {
    let dir = temp_dir();
    let first = append(dir.path(), "order-1", r#"{"total":5}"#, "no_stream");
    assert!(first.status.success(), "{}", stderr(&first));
    let result: serde_json::Value = serde_json::from_str(&stdout(&first)).unwrap();
    assert_eq!(
        result,
        serde_json::json!({"first_revision": 0, "last_revision": 0, "position": 0})
    );
    let second = append(dir.path(), "order-1", r#"{"total":7}"#, "0");
    assert!(second.status.success(), "{}", stderr(&second));

    let read = eventfold(&["read", "--data", dir.arg(), "order-1"]);
    assert!(read.status.success(), "{}", stderr(&read));
    let lines: Vec<serde_json::Value> = stdout(&read)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["stream"], "order-1");
    assert_eq!(lines[0]["revision"], 0);
    assert_eq!(lines[1]["revision"], 1);
    assert_eq!(lines[1]["position"], 1);
    assert_eq!(lines[1]["type"], "OrderPlaced");
    assert_eq!(lines[1]["version"], 1);
    assert_eq!(lines[1]["data"], serde_json::json!({"total": 7}));
    assert_eq!(lines[1]["metadata"], serde_json::json!({}));
    assert!(
        lines[1]["id"]
            .as_str()
            .unwrap()
            .parse::<uuid::Uuid>()
            .is_ok()
    );
    assert!(lines[1]["recorded_at"].as_str().unwrap().ends_with('Z'));

    let all = eventfold(&["read", "--data", dir.arg(), "$all", "--from", "1"]);
    assert_eq!(stdout(&all).lines().count(), 1);
    let back = eventfold(&[
        "read",
        "--data",
        dir.arg(),
        "order-1",
        "--backward",
        "--limit",
        "1",
    ]);
    assert!(stdout(&back).contains(r#""revision":1"#));
}

#[test]
fn bad_input_gets_a_clear_message_and_a_non_zero_exit() {
    let dir = temp_dir();
    let d = dir.arg();
    assert!(append(dir.path(), "order-1", "{}", "any").status.success());

    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "append", "--data", d, "order-1", "--type", "T", "--json", "{oops",
            ],
            "not valid JSON",
        ),
        (
            vec![
                "append",
                "--data",
                d,
                "order-1",
                "--type",
                "T",
                "--json",
                "{}",
                "--expected",
                "no_stream",
            ],
            "wrong expected version",
        ),
        (
            vec![
                "append",
                "--data",
                d,
                "order-1",
                "--type",
                "T",
                "--json",
                "{}",
                "--expected",
                "later",
            ],
            "invalid expected version 'later'",
        ),
        (
            vec![
                "append", "--data", d, "$system", "--type", "T", "--json", "{}",
            ],
            "reserved",
        ),
        (
            vec![
                "append", "--data", d, "order-1", "--type", "", "--json", "{}",
            ],
            "event type is empty",
        ),
        (
            vec![
                "append",
                "--data",
                d,
                "order-1",
                "--type",
                "$stream-deleted",
                "--json",
                "{}",
            ],
            "reserved for eventfold's own events",
        ),
        (
            vec![
                "append",
                "--data",
                d,
                "order-1",
                "--type",
                "T",
                "--json",
                "{}",
                "--id",
                "00000000-0000-0000-0000-000000000000",
            ],
            "nil UUID",
        ),
        (
            vec![
                "append",
                "--data",
                d,
                "order-1",
                "--type",
                "T",
                "--json",
                r#"["\ud800"]"#,
            ],
            "not valid JSON",
        ),
        (
            vec![
                "append",
                "--data",
                d,
                "order-1",
                "--type",
                "T",
                "--json",
                "{}",
                "--metadata",
                "[1]",
            ],
            "metadata must be a JSON object",
        ),
        (
            vec!["read", "--data", d, "no-such-stream"],
            "stream 'no-such-stream' not found",
        ),
        (
            vec!["verify", "--data", "/nonexistent/eventfold"],
            "does not exist",
        ),
        (
            vec!["append", "order-1", "--type", "T", "--json", "{}"],
            "--data",
        ),
    ];
    for (args, message) in cases {
        let output = eventfold(&args);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(
            stderr(&output).contains(message),
            "{args:?}: expected '{message}' in: {}",
            stderr(&output)
        );
    }
    // Nothing refused was written.
    let read = eventfold(&["read", "--data", d, "order-1"]);
    assert_eq!(stdout(&read).lines().count(), 1);
}

#[test]
fn verify_says_intact_or_names_the_damage() {
    let dir = temp_dir();
    let d = dir.arg();
    for n in 0..5 {
        assert!(
            append(dir.path(), "order-1", &format!(r#"{{"n":{n}}}"#), "any")
                .status
                .success()
        );
    }
    let ok = eventfold(&["verify", "--data", d]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(stdout(&ok).contains("intact: 5 events"), "{}", stdout(&ok));

    let segment = dir.path().join("segments/0000000000.seg");
    let mut bytes = std::fs::read(&segment).unwrap();
    // Inside the records (zeros of the room allocated ahead of the writes follow).
    let records = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
    let middle = records / 2;
    bytes[middle] ^= 0x08;
    std::fs::write(&segment, bytes).unwrap();
    let bad = eventfold(&["verify", "--data", d]);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("0000000000.seg at offset"),
        "{}",
        stderr(&bad)
    );
    assert!(
        stderr(&bad).contains("checksum mismatch"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn idempotent_append_by_event_id() {
    let dir = temp_dir();
    let d = dir.arg();
    let id = "0192f1a8-0000-7000-8000-000000000001";
    let args = [
        "append",
        "--data",
        d,
        "order-9",
        "--type",
        "T",
        "--json",
        "{}",
        "--id",
        id,
        "--expected",
        "no_stream",
    ];
    let first = eventfold(&args);
    let again = eventfold(&args);
    assert!(
        first.status.success() && again.status.success(),
        "{}",
        stderr(&again)
    );
    assert_eq!(stdout(&first), stdout(&again));
    let read = eventfold(&["read", "--data", d, "order-9"]);
    assert_eq!(stdout(&read).lines().count(), 1);
}

#[test]
fn the_demo_runs() {
    let dir = temp_dir();
    let output = eventfold(&["demo", "--data", path_arg(&dir.path().join("demo"))]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("idempotent"));
    assert!(stdout(&output).contains("AccountCharged"));
}

#[test]
fn bench_runs_at_a_small_scale_and_reports_every_figure() {
    let dir = temp_dir();
    let output = eventfold(&[
        "bench",
        "--data",
        dir.arg(),
        "--json",
        "--seconds",
        "0.2",
        "--reopen-events",
        "20000",
        "--stream-events",
        "2000",
        "--batch-calls",
        "5",
        "--concurrent-appends",
        "10",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(report["fsyncs_per_second"].as_f64().unwrap() > 0.0);
    let names: Vec<&str> = report["figures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    for expected in [
        "batch append",
        "64 concurrent writers",
        "1 writer",
        "load one",
        "full replay",
        "reopen",
        "resident memory of a server",
    ] {
        assert!(
            names.iter().any(|n| n.contains(expected)),
            "{expected} missing from {names:?}"
        );
    }
    for figure in report["figures"].as_array().unwrap() {
        assert!(figure["value"].as_f64().unwrap() > 0.0, "{figure}");
        // The memory figure's ratio (bytes per event between two sizes of the store)
        // may be 0 at this scale: the store is not filled further.
        let memory = figure["name"].as_str().unwrap().contains("memory");
        assert!(
            figure["ratio"].as_f64().unwrap() > 0.0 || memory,
            "{figure}"
        );
    }
    assert!(
        !dir.path().join("bench-store").exists(),
        "the bench store is removed"
    );
}

#[test]
fn export_then_import_copies_the_log_and_a_rerun_writes_nothing_twice() {
    let source = temp_dir();
    let target = temp_dir();
    for (stream, json, expected) in [
        ("order-1", r#"{"total":5}"#, "no_stream"),
        ("order-2", r#"{"total":6}"#, "no_stream"),
        ("order-1", r#"{"total":7}"#, "0"),
    ] {
        let out = append(source.path(), stream, json, expected);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let file = source.path().join("export.ndjson");
    let exported = eventfold(&[
        "export",
        "--data",
        source.arg(),
        "--output",
        path_arg(&file),
    ]);
    assert!(exported.status.success(), "{}", stderr(&exported));
    assert!(
        stderr(&exported).contains("exported 3 events"),
        "{}",
        stderr(&exported)
    );

    for _ in 0..2 {
        let imported = eventfold(&["import", "--data", target.arg(), path_arg(&file)]);
        assert!(imported.status.success(), "{}", stderr(&imported));
    }
    let read = |dir: &Path| {
        let out = eventfold(&["read", "--data", path_arg(dir), "$all"]);
        stdout(&out)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        read(target.path()),
        read(source.path()),
        "the copy is the same log, once, recorded_at included"
    );

    // A damaged export names the line.
    std::fs::write(&file, "{\"stream\":\"a\"}\nnot json\n").unwrap();
    let bad = eventfold(&["import", "--data", target.arg(), path_arg(&file)]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("line 1"), "{}", stderr(&bad));
}

#[test]
fn tail_prints_from_a_position_and_stops_after_count() {
    let dir = temp_dir();
    for n in 0..3 {
        let out = append(dir.path(), "order-1", &format!(r#"{{"n":{n}}}"#), "any");
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let tail = eventfold(&[
        "tail",
        "--data",
        dir.arg(),
        "order-1",
        "--from",
        "1",
        "--count",
        "2",
    ]);
    assert!(tail.status.success(), "{}", stderr(&tail));
    let revisions: Vec<u64> = stdout(&tail)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["revision"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(revisions, vec![1, 2]);
}

#[test]
fn streams_metadata_and_delete_manage_streams() {
    let dir = temp_dir();
    let data = dir.arg();
    for (stream, n) in [
        ("order-2", 1),
        ("order-1", 2),
        ("order-1", 3),
        ("cart-1", 4),
    ] {
        let out = append(dir.path(), stream, &format!(r#"{{"n":{n}}}"#), "any");
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let listed = eventfold(&["streams", "--data", data, "--prefix", "order-"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    assert_eq!(
        stdout(&listed),
        "{\"stream\":\"order-1\",\"last_revision\":1}\n{\"stream\":\"order-2\",\"last_revision\":0}\n"
    );

    let set = eventfold(&[
        "metadata",
        "--data",
        data,
        "order-1",
        "--set",
        r#"{"max_count":1}"#,
    ]);
    assert!(set.status.success(), "{}", stderr(&set));
    let read = eventfold(&["read", "--data", data, "order-1"]);
    assert_eq!(
        stdout(&read).lines().count(),
        1,
        "max_count hides the older event"
    );
    let shown = eventfold(&["metadata", "--data", data, "order-1"]);
    let shown: serde_json::Value = serde_json::from_str(&stdout(&shown)).unwrap();
    assert_eq!(shown["metadata"]["max_count"], 1);
    let bad = eventfold(&[
        "metadata",
        "--data",
        data,
        "order-1",
        "--set",
        r#"{"max":1}"#,
    ]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("max"), "{}", stderr(&bad));

    let wrong = eventfold(&["delete", "--data", data, "cart-1", "--expected", "5"]);
    assert!(!wrong.status.success());
    assert!(
        stderr(&wrong).contains("wrong expected version"),
        "{}",
        stderr(&wrong)
    );
    let deleted = eventfold(&["delete", "--data", data, "cart-1", "--hard"]);
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    let gone = eventfold(&["read", "--data", data, "cart-1"]);
    assert!(!gone.status.success());
    assert!(stderr(&gone).contains("deleted"), "{}", stderr(&gone));
    let refused = append(dir.path(), "cart-1", "{}", "any");
    assert!(!refused.status.success());
}

#[test]
fn replay_feeds_a_command_and_resumes_from_its_checkpoint() {
    let dir = temp_dir();
    let data = dir.path().join("data");
    let data = path_arg(&data);
    for n in 0..3 {
        let out = append(
            Path::new(data),
            "order-1",
            &format!(r#"{{"n":{n}}}"#),
            "any",
        );
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let sink = dir.path().join("sink.ndjson");
    let checkpoint = dir.path().join("checkpoint");
    let exec = format!("cat >> {}", sink.display());
    let replay = |extra: &[&str]| {
        let mut args = vec![
            "replay",
            "--data",
            data,
            "--checkpoint",
            path_arg(&checkpoint),
        ];
        args.extend_from_slice(extra);
        eventfold(&args)
    };
    let first = replay(&["--exec", &exec]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(std::fs::read_to_string(&checkpoint).unwrap().trim(), "3");
    append(Path::new(data), "order-1", r#"{"n":3}"#, "any");
    let second = replay(&["--exec", &exec]);
    assert!(second.status.success(), "{}", stderr(&second));
    let ns: Vec<u64> = std::fs::read_to_string(&sink)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["data"]["n"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(
        ns,
        [0, 1, 2, 3],
        "each event once, in order, across the two runs"
    );

    // A failing command leaves the checkpoint where it was.
    append(Path::new(data), "order-1", r#"{"n":4}"#, "any");
    let failed = replay(&["--exec", "cat > /dev/null; exit 3"]);
    assert!(!failed.status.success());
    assert!(
        stderr(&failed).contains("checkpoint was not moved"),
        "{}",
        stderr(&failed)
    );
    assert_eq!(std::fs::read_to_string(&checkpoint).unwrap().trim(), "4");
}

#[test]
fn bench_http_measures_appends_over_a_server_it_starts() {
    let dir = temp_dir();
    let out = eventfold(&[
        "bench",
        "http",
        "--data",
        dir.arg(),
        "--seconds",
        "0.3",
        "--connections",
        "4",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(report["appends"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["connections"], 4);
    assert_eq!(report["target_appends_per_second"], 30000.0);
    // The baseline of the same run: the same writers in process, before and after.
    for baseline in [
        "in_process_before",
        "in_process_after",
        "ratio_to_in_process",
    ] {
        assert!(report[baseline].as_f64().unwrap() > 0.0, "{report}");
    }
    assert_eq!(report["target_ratio_to_in_process"], 0.5);
    // Every acknowledged append is in the store the benchmark wrote.
    let read = eventfold(&[
        "read",
        "--data",
        path_arg(&dir.path().join("bench-http")),
        "bench-http-0",
    ]);
    assert!(read.status.success(), "{}", stderr(&read));
    assert!(stdout(&read).lines().count() > 0);
}

#[test]
fn bench_all_prints_every_figure_beside_its_baseline_in_one_run() {
    let dir = temp_dir();
    let url = eventfold_testsupport::postgres::database_url();
    let mut args = vec!["bench", "all", "--data", dir.arg(), "--quick", "--json"];
    if let Some(url) = &url {
        // Message DB's package comes from npm: the benchmark's own business, not a test's.
        args.extend(["--postgres", url, "--without-message-db"]);
    }
    let out = eventfold(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["fsyncs_per_second"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    let figures = report["figures"].as_array().unwrap();
    let names: Vec<&str> = figures
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    let mut expected = vec![
        "1 writer, 1 event per append",
        "64 concurrent writers",
        "batch append",
        "full replay of $all",
        "HTTP over loopback",
        "scavenge: rewrite",
        "scavenge: appends while it works",
        "append, 1 personal field, batches",
        "append, 1 personal field, one event per append",
        "read, 1 personal field",
        "the cipher alone: sealing",
        "the cipher alone: opening",
        "decode: typed chain",
        "decode: registry, jq converters",
    ];
    if url.is_some() {
        expected.extend(["PostgreSQL: single appends, 1", "PostgreSQL: full replay"]);
    }
    for name in expected {
        assert!(
            names.iter().any(|n| n.starts_with(name)),
            "{name} missing from {names:?}"
        );
    }
    for figure in figures {
        assert!(figure["value"].as_f64().unwrap() > 0.0, "{figure}");
        assert!(!figure["ratio_of"].as_str().unwrap().is_empty(), "{figure}");
        // The memory figure's ratio (bytes per event between two sizes of the store)
        // may be 0 at this scale: the store is not filled further.
        let ratio = figure["ratio"].as_f64().unwrap();
        let memory = figure["name"].as_str().unwrap().contains("memory");
        assert!(ratio.is_finite() && (ratio > 0.0 || memory), "{figure}");
    }
    // A figure with a target says whether it was met (or why it could not be).
    let verdicts = figures.iter().filter(|f| f["met"].is_boolean()).count();
    assert!(verdicts >= 10, "{report}");
    let left_out = report["left_out"].to_string();
    assert!(
        left_out.contains(if url.is_some() {
            "Message DB"
        } else {
            "PostgreSQL"
        }),
        "{left_out}"
    );
    // Every part removes what it wrote.
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn append_and_import_on_a_data_directory_are_checked_against_its_schemas() {
    // An export holding an event that the target's schema refuses (written where no
    // schema existed).
    let source = temp_dir();
    let target = temp_dir();
    let out = append(source.path(), "order-1", r#"{"total":"five"}"#, "no_stream");
    assert!(out.status.success(), "{}", stderr(&out));
    let file = source.path().join("export.ndjson");
    let exported = eventfold(&[
        "export",
        "--data",
        source.arg(),
        "--output",
        path_arg(&file),
    ]);
    assert!(exported.status.success(), "{}", stderr(&exported));

    let schema =
        r#"{"type":"object","properties":{"total":{"type":"integer"}},"required":["total"]}"#;
    let registered = eventfold(&[
        "schema",
        "register",
        "--data",
        target.arg(),
        "OrderPlaced",
        "1",
        "--schema",
        schema,
    ]);
    assert!(registered.status.success(), "{}", stderr(&registered));

    let refused = append(target.path(), "order-2", r#"{"total":"six"}"#, "no_stream");
    assert!(!refused.status.success(), "a wrong total was appended");
    assert!(stderr(&refused).contains("/total"), "{}", stderr(&refused));
    let accepted = append(target.path(), "order-2", r#"{"total":6}"#, "no_stream");
    assert!(accepted.status.success(), "{}", stderr(&accepted));

    let imported = eventfold(&["import", "--data", target.arg(), path_arg(&file)]);
    assert!(!imported.status.success(), "the wrong total was imported");
    assert!(
        stderr(&imported).contains("/total"),
        "{}",
        stderr(&imported)
    );
    let read = eventfold(&["read", "--data", target.arg(), "order-1"]);
    assert!(stdout(&read).trim().is_empty(), "{}", stdout(&read));
}

#[test]
fn read_tail_and_replay_convert_to_the_versions_asked_for() {
    let dir = temp_dir();
    let out = append(dir.path(), "order-1", r#"{"total":5}"#, "no_stream");
    assert!(out.status.success(), "{}", stderr(&out));
    // v2 keeps cents; v1 events are upcast, and v2 ones downcast for an old reader.
    let registered = eventfold(&[
        "schema",
        "register",
        "--data",
        dir.arg(),
        "OrderPlaced",
        "2",
        "--upcast",
        "{cents: (.total * 100)}",
        "--downcast",
        "{total: (.cents / 100 | floor)}",
    ]);
    assert!(registered.status.success(), "{}", stderr(&registered));
    let seen = |output: &Output| -> Vec<(u64, serde_json::Value)> {
        assert!(output.status.success(), "{}", stderr(output));
        stdout(output)
            .lines()
            .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
            .filter(|event| event["type"] == "OrderPlaced")
            .map(|event| (event["version"].as_u64().unwrap(), event["data"].clone()))
            .collect()
    };
    let v1 = || (1, serde_json::json!({"total": 5}));
    let v2 = || (2, serde_json::json!({"cents": 500}));

    let read_as = |stream: &str, versions: &str| {
        eventfold(&["read", "--data", dir.arg(), stream, "--versions", versions])
    };
    let stored = eventfold(&["read", "--data", dir.arg(), "order-1"]);
    assert_eq!(seen(&stored), [v1()]);
    let newest = read_as("order-1", "newest");
    assert_eq!(seen(&newest), [v2()]);
    let all = read_as("$all", "OrderPlaced:2");
    assert_eq!(seen(&all), [v2()]);
    let tail = eventfold(&[
        "tail",
        "--data",
        dir.arg(),
        "order-1",
        "--from",
        "0",
        "--count",
        "1",
        "--versions",
        "newest",
    ]);
    assert_eq!(seen(&tail), [v2()]);
    let replay = eventfold(&["replay", "--data", dir.arg(), "--versions", "newest"]);
    assert_eq!(seen(&replay), [v2()]);

    // A v2 event, read by a reader of v1: downcast.
    let appended = eventfold(&[
        "append",
        "--data",
        dir.arg(),
        "order-1",
        "--type",
        "OrderPlaced",
        "--version",
        "2",
        "--json",
        r#"{"cents":700}"#,
    ]);
    assert!(appended.status.success(), "{}", stderr(&appended));
    let old = read_as("order-1", "OrderPlaced:1");
    assert_eq!(seen(&old), [v1(), (1, serde_json::json!({"total": 7}))]);

    let bad = read_as("order-1", "OrderPlaced:x");
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("not a version"), "{}", stderr(&bad));
}
