//! Scenario: a real file system runs out of space (a 2 MiB tmpfs). The append that
//! does not fit is refused with a clear "storage full" error, reads keep working, the
//! same open store accepts appends again once space is freed, and a reopen finds every
//! acknowledged event and none of the refused ones.
//!
//! Mounting needs root (CI runs as root); elsewhere the test says loudly that it skipped.

use std::path::{Path, PathBuf};
use std::process::Command;

use eventfold_core::{Error, EventData, EventStore, ExpectedVersion, ReadStream};
use eventfold_log::{LogOptions, LogStore};

struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn mount_tmpfs(dir: &Path) -> Option<Mount> {
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(dir)
        .stderr(std::process::Stdio::null())
        .status()
        .ok()?;
    status.success().then(|| Mount(dir.to_path_buf()))
}

fn event(n: u64) -> EventData {
    EventData::json(
        "Filled",
        &serde_json::json!({"n": n, "pad": "x".repeat(400)}),
    )
    .unwrap()
}

fn values(events: &[eventfold_core::RecordedEvent]) -> Vec<u64> {
    events
        .iter()
        .map(|e| {
            e.data_as::<serde_json::Value>().unwrap()["n"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

#[tokio::test]
async fn a_full_file_system_refuses_appends_and_recovers_when_space_is_freed() {
    let dir = tempfile::tempdir().unwrap();
    let Some(_mount) = mount_tmpfs(dir.path()) else {
        eprintln!(
            "SKIPPED a_full_file_system_refuses_appends_and_recovers_when_space_is_freed: \
             cannot mount a tmpfs here (needs root)"
        );
        return;
    };
    let filler = dir.path().join("filler");
    std::fs::write(&filler, vec![0u8; 512 * 1024]).unwrap();
    let options = LogOptions {
        segment_bytes_max: 256 * 1024,
        append_bytes_max: 64 * 1024,
        ..LogOptions::default()
    };
    let data = dir.path().join("data");
    let store = LogStore::open(&data, options.clone()).unwrap();

    let mut acked = Vec::new();
    let mut refusal = None;
    for n in 0..20_000u64 {
        match store
            .append("s", ExpectedVersion::Any, vec![event(n)])
            .await
        {
            Ok(_) => acked.push(n),
            Err(error) => {
                refusal = Some(error);
                break;
            }
        }
    }
    let refusal = refusal.expect("the 2 MiB file system never filled up");
    assert!(matches!(refusal, Error::StorageFull { .. }), "{refusal}");
    assert!(refusal.to_string().contains("storage full"), "{refusal}");
    assert!(acked.len() > 100, "only {} appends fit", acked.len());

    // Reads continue while the disk is full.
    let events = store.read_stream("s", ReadStream::forward()).await.unwrap();
    assert_eq!(values(&events), acked);

    // Space is freed: the same store writes again, at the next revision.
    std::fs::remove_file(&filler).unwrap();
    for n in 100_000..100_010u64 {
        store
            .append("s", ExpectedVersion::Any, vec![event(n)])
            .await
            .unwrap();
        acked.push(n);
    }
    drop(store);

    let store = LogStore::open(&data, options).unwrap();
    let events = store.read_stream("s", ReadStream::forward()).await.unwrap();
    assert_eq!(
        values(&events),
        acked,
        "exactly the acknowledged events survive"
    );
    drop(store);
    let report = eventfold_log::verify(&data).unwrap();
    assert!(report.is_intact(), "{:?}", report.damage);
}
