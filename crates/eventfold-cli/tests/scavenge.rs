//! Scenario: a store with a stream trimmed by `max_count`, a hard-deleted stream and a
//! stream without retention. `scavenge --dry-run` says what would go and changes no
//! file; `scavenge` removes exactly those events (their bytes are in no file of the
//! data directory), keeps the rest readable and `verify` intact; a second run finds
//! nothing; a directory without a store is refused, not created.

use std::path::Path;
use std::process::Output;

use eventfold_testsupport::cli::{Cli, text};
use eventfold_testsupport::dirs::temp_dir;

fn eventfold(args: &[&str]) -> Output {
    Cli::new(env!("CARGO_BIN_EXE_eventfold")).run(args)
}

#[track_caller]
fn succeeds(args: &[&str]) -> String {
    let output = eventfold(args);
    assert!(
        output.status.success(),
        "eventfold {args:?} failed: {}",
        text(&output.stderr)
    );
    text(&output.stdout)
}

fn append(dir: &str, stream: &str, marker: &str) {
    succeeds(&[
        "append",
        "--data",
        dir,
        stream,
        "--type",
        "Marked",
        "--json",
        &format!(r#"{{"marker":"{marker}"}}"#),
    ]);
}

/// Every file of the data directory but the lock, with its bytes.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for sub in ["", "segments", "quarantine"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("entry").path();
            if path.is_file() && !path.ends_with("LOCK") {
                out.push((
                    path.display().to_string(),
                    std::fs::read(&path).expect("read"),
                ));
            }
        }
    }
    out.sort();
    out
}

fn anywhere(files: &[(String, Vec<u8>)], marker: &str) -> bool {
    files
        .iter()
        .any(|(_, bytes)| bytes.windows(marker.len()).any(|w| w == marker.as_bytes()))
}

#[test]
fn scavenge_removes_what_retention_hides_and_says_so() {
    let tmp = temp_dir();
    let d = tmp.arg();
    for n in 0..6 {
        append(d, "trimmed-1", &format!("TRIMMED-{n}-END"));
        if n < 2 {
            append(d, "kept-1", &format!("KEPT-{n}-END"));
            append(d, "gone-1", &format!("GONE-{n}-END"));
        }
    }
    succeeds(&[
        "metadata",
        "--data",
        d,
        "trimmed-1",
        "--set",
        r#"{"max_count":2}"#,
    ]);
    succeeds(&["delete", "--data", d, "gone-1", "--hard"]);
    let before = files(tmp.path());

    let dry = succeeds(&["scavenge", "--data", d, "--dry-run"]);
    assert!(dry.contains("dry run"), "{dry}");
    assert!(dry.contains("events removed: 6"), "{dry}");
    assert!(dry.contains("segments rewritten: 1"), "{dry}");
    // Opening writes the acknowledged mark; every segment and index stays as it was.
    let unchanged = |files: &[(String, Vec<u8>)]| -> Vec<(String, Vec<u8>)> {
        files
            .iter()
            .filter(|(name, _)| !name.ends_with("ack.mark"))
            .cloned()
            .collect()
    };
    assert_eq!(
        unchanged(&files(tmp.path())),
        unchanged(&before),
        "a dry run changes no segment"
    );

    let done = succeeds(&["scavenge", "--data", d]);
    assert!(done.contains("events removed: 6"), "{done}");
    assert!(done.contains("segments rewritten: 1"), "{done}");
    assert!(done.contains("MB/s"), "{done}");
    let after = files(tmp.path());
    for n in 0..4 {
        let marker = format!("TRIMMED-{n}-END");
        assert!(anywhere(&before, &marker), "{marker} was written");
        assert!(!anywhere(&after, &marker), "{marker} is still on disk");
    }
    for marker in ["GONE-0-END", "GONE-1-END"] {
        assert!(!anywhere(&after, marker), "{marker} is still on disk");
    }
    for marker in ["TRIMMED-4-END", "TRIMMED-5-END", "KEPT-0-END", "KEPT-1-END"] {
        assert!(anywhere(&after, marker), "{marker} of a survivor is gone");
    }

    let verified = succeeds(&["verify", "--data", d]);
    assert!(verified.starts_with("intact"), "{verified}");
    let trimmed = succeeds(&["read", "--data", d, "trimmed-1"]);
    assert_eq!(trimmed.lines().count(), 2, "{trimmed}");
    assert!(trimmed.contains("TRIMMED-4-END") && trimmed.contains("TRIMMED-5-END"));
    let kept = succeeds(&["read", "--data", d, "kept-1"]);
    assert_eq!(kept.lines().count(), 2, "{kept}");

    let again = succeeds(&["scavenge", "--data", d]);
    assert!(again.contains("events removed: 0"), "{again}");

    let missing = tmp.path().join("no-store-here");
    let refused = eventfold(&["scavenge", "--data", &missing.display().to_string()]);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("holds no eventfold store"),
        "{}",
        text(&refused.stderr)
    );
    assert!(!missing.exists(), "a refused scavenge creates nothing");
}
