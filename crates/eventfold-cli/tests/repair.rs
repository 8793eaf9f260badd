//! Scenario: a flipped byte in the active segment of a real data directory. Writing
//! commands refuse the store and name the damage, reading commands read what is
//! intact, `verify` keeps reporting it, `repair --dry-run` changes nothing and lists
//! what a repair gives up, and `repair` gives up exactly that, keeps the intact events
//! it had to give up as NDJSON, records itself in `$repairs`, and leaves a store that
//! verifies and takes appends at new positions.

use std::path::Path;
use std::process::Output;

use eventfold_testsupport::cli::{Cli, text};
use eventfold_testsupport::dirs::{path_arg, temp_dir};

fn eventfold(args: &[&str]) -> Output {
    Cli::new(env!("CARGO_BIN_EXE_eventfold"))
        .env("USER", "tester")
        .run(args)
}

fn append(dir: &str, stream: &str, n: u64) -> Output {
    eventfold(&[
        "append",
        "--data",
        dir,
        stream,
        "--type",
        "Counted",
        "--json",
        &format!(r#"{{"n":{n}}}"#),
    ])
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for sub in ["", "segments", "quarantine"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_file() && !path.ends_with("LOCK") {
                out.push((path.display().to_string(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_damaged_store_is_refused_read_and_repaired_explicitly() {
    let tmp = temp_dir();
    let d = tmp.arg();
    for n in 0..6 {
        assert!(append(d, &format!("s-{}", n % 2), n).status.success());
    }
    // Damage the type name of the record at position 2 (three records follow it): two
    // bits, more than a repair can undo.
    let segment = tmp.path().join("segments/0000000000.seg");
    let mut bytes = std::fs::read(&segment).unwrap();
    let mut offset = 32;
    for _ in 0..2 {
        offset += 8 + u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
    }
    bytes[offset + 72] ^= 0x20;
    bytes[offset + 73] ^= 0x20;
    std::fs::write(&segment, &bytes).unwrap();
    let damaged = files(tmp.path());

    let refused = append(d, "s-0", 99);
    assert!(!refused.status.success());
    let message = text(&refused.stderr);
    assert!(
        message.contains("position 2") && message.contains("0000000000.seg"),
        "{message}"
    );
    assert!(message.contains("eventfold repair"), "{message}");
    assert_eq!(files(tmp.path()), damaged, "a refused open changes no file");

    let read = eventfold(&["read", "--data", d, "$all"]);
    assert!(read.status.success(), "{}", text(&read.stderr));
    assert_eq!(
        text(&read.stdout).lines().count(),
        2,
        "the two intact events before the damage"
    );
    assert!(
        text(&read.stderr).contains("damaged"),
        "{}",
        text(&read.stderr)
    );

    let verify = eventfold(&["verify", "--data", d]);
    assert!(!verify.status.success());
    assert!(
        text(&verify.stderr).contains("3 intact record(s) follow"),
        "{}",
        text(&verify.stderr)
    );

    let plan = eventfold(&[
        "repair",
        "--data",
        d,
        "--dry-run",
        "--reason",
        "disk block went bad",
    ]);
    assert!(plan.status.success(), "{}", text(&plan.stderr));
    let plan_text = text(&plan.stdout);
    assert!(
        plan_text.contains("would give up positions 2..4"),
        "{plan_text}"
    );
    assert!(
        plan_text.contains("unreadable event at position 2: 1@s-0"),
        "{plan_text}"
    );
    assert_eq!(files(tmp.path()), damaged, "a dry run changes no file");

    let done = eventfold(&["repair", "--data", d, "--reason", "disk block went bad"]);
    assert!(done.status.success(), "{}", text(&done.stderr));
    assert!(
        text(&done.stdout).contains("gave up positions 2..4"),
        "{}",
        text(&done.stdout)
    );
    let verify = eventfold(&["verify", "--data", d]);
    assert!(verify.status.success(), "{}", text(&verify.stderr));

    let repairs = eventfold(&["read", "--data", d, "$repairs"]);
    assert!(repairs.status.success(), "{}", text(&repairs.stderr));
    let record: serde_json::Value =
        serde_json::from_str(text(&repairs.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(record["type"], "$repaired");
    assert_eq!(record["data"]["who"], "tester");
    assert_eq!(record["data"]["reason"], "disk block went bad");
    // Every append was one event, so the damaged record was a commit record: nothing
    // says so, and the next transaction (position 3) is given up too, kept as NDJSON.
    assert_eq!(
        record["data"]["segments"][0]["gaps"][0],
        serde_json::json!([2, 4])
    );
    let quarantine = tmp.path().join("quarantine");
    let kept: Vec<_> = std::fs::read_dir(&quarantine)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".given-up.ndjson"))
        .collect();
    assert_eq!(kept.len(), 1);
    let line: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&kept[0]).unwrap().trim()).unwrap();
    assert_eq!(
        (line["position"].as_u64(), line["stream"].as_str()),
        (Some(3), Some("s-1"))
    );

    let after = append(d, "s-0", 100);
    assert!(after.status.success(), "{}", text(&after.stderr));
    let written: serde_json::Value = serde_json::from_str(&text(&after.stdout)).unwrap();
    assert_eq!(
        written["first_revision"], 3,
        "s-0 had revisions 0..3; 1 was given up, not reused"
    );
    let all = eventfold(&["read", "--data", d, "$all"]);
    let positions: Vec<u64> = text(&all.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["position"]
                .as_u64()
                .unwrap()
        })
        .collect();
    // 6 is the `$repaired` record, 7 the new append.
    assert_eq!(
        positions,
        [0, 1, 4, 5, 6, 7],
        "positions 2 and 3 are never handed out again"
    );
}

#[test]
fn repair_on_an_intact_store_says_so_and_changes_nothing() {
    let tmp = temp_dir();
    let d = tmp.arg();
    assert!(append(d, "s", 1).status.success());
    let before = files(tmp.path());
    let out = eventfold(&["repair", "--data", d]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("nothing to repair"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(files(tmp.path()), before);
}

#[test]
fn reading_commands_never_create_a_store() {
    let tmp = temp_dir();
    let missing = tmp.path().join("dta");
    let read = eventfold(&["read", "--data", path_arg(&missing), "x"]);
    assert!(!read.status.success());
    assert!(
        text(&read.stderr).contains("holds no eventfold store"),
        "{}",
        text(&read.stderr)
    );
    assert!(
        !missing.exists(),
        "a mistyped --data must not become an empty store"
    );
}
