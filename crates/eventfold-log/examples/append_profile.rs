//! A fixed amount of appending, for counting instructions with callgrind (repeatable,
//! unlike timings on a shared machine): `BATCHES` appends of 1,000 200-byte events by
//! one writer, or with `single`, `BATCHES × 1,000` one-event appends by 64 writers.
//! See "Instruction counts" in docs/performance.md for how it is run and read.
//!
//! ```text
//! cargo build --release --example append_profile -p eventfold-log
//! valgrind --tool=callgrind target/release/examples/append_profile /path/on/the/disk batch 20
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use eventfold_core::{EventData, EventStore, ExpectedVersion};
use eventfold_log::{LogOptions, LogStore};

const BATCH_EVENTS: usize = 1_000;
const WRITERS: usize = 64;

fn event() -> EventData {
    let filler = "x".repeat(200 - r#"{"payload":""}"#.len());
    EventData {
        id: None,
        event_type: "BenchmarkRecorded".into(),
        version: 1,
        data: Bytes::from(format!(r#"{{"payload":"{filler}"}}"#)),
        metadata: Bytes::from_static(b"{}"),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: append_profile DIR (batch|single) BATCHES";
    let dir = PathBuf::from(args.next().ok_or(usage)?).join("append-profile");
    let mode = args.next().ok_or(usage)?;
    let batches: usize = args.next().ok_or(usage)?.parse()?;
    let _ = std::fs::remove_dir_all(&dir);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let store = Arc::new(LogStore::open(&dir, LogOptions::default())?);
    let event = event();
    runtime.block_on(async {
        match mode.as_str() {
            "batch" => {
                for _ in 0..batches {
                    let events = vec![event.clone(); BATCH_EVENTS];
                    store.append("batch", ExpectedVersion::Any, events).await?;
                }
            }
            "single" => {
                let per_writer = batches * BATCH_EVENTS / WRITERS;
                let tasks: Vec<tokio::task::JoinHandle<eventfold_core::Result<()>>> = (0..WRITERS)
                    .map(|n| {
                        let store = store.clone();
                        let event = event.clone();
                        tokio::spawn(async move {
                            let stream = format!("single-{n}");
                            for _ in 0..per_writer {
                                store
                                    .append(&stream, ExpectedVersion::Any, vec![event.clone()])
                                    .await?;
                            }
                            Ok(())
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await??;
                }
            }
            other => return Err(format!("{other}: {usage}").into()),
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    println!("{} events", store.event_count());
    drop(store);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
