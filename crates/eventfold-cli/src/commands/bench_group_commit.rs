//! The raw group commit: the most durable appends this disk gives, measured in the same
//! run as the store so that every append figure can be read as a ratio to it.
//!
//! A log with no store logic at all: one thread takes every record queued, writes them
//! with one `pwrite` at the end of what it wrote so far, calls `fdatasync` once, then
//! wakes their senders. Its file is preallocated (`fallocate`, a GiB at a time) so that
//! no commit journals a change of the file's size: what a log that preallocates its
//! segments could reach. (Written round and round over a file filled with zeros
//! instead, it measured three to four times faster on a virtual disk, whose host caches
//! the rewritten blocks: no log that writes forward can reach that.)

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rustix::fs::FallocateFlags;

/// Bytes preallocated at a time.
const PREALLOCATE_BYTES: u64 = 1024 * 1024 * 1024;

/// What the senders of one measurement hand to the commit thread: their records, and
/// where to say they are durable.
struct Commit {
    records: std::sync::Arc<[u8]>,
    durable: mpsc::Sender<()>,
}

/// Records per second the raw group commit makes durable when `senders` threads each
/// send `per_call` records of `record_bytes` bytes and wait for them, for `duration`.
pub(crate) fn raw_group_commit_rate(
    dir: &Path,
    senders: usize,
    per_call: usize,
    record_bytes: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let (rate, _) = measure(
        dir,
        senders,
        per_call,
        record_bytes,
        duration,
        PREALLOCATE_BYTES,
    )?;
    Ok(rate)
}

fn measure(
    dir: &Path,
    senders: usize,
    per_call: usize,
    record_bytes: usize,
    duration: Duration,
    preallocate_bytes: u64,
) -> anyhow::Result<(f64, u64)> {
    let (file, path) = super::bench::scratch_file(dir, "bench-raw-group-commit")?;
    let preallocate = move |file: &std::fs::File, from: u64| {
        rustix::fs::fallocate(file, FallocateFlags::empty(), from, preallocate_bytes)
            .map_err(std::io::Error::from)
    };
    preallocate(&file, 0).context("cannot preallocate the raw group commit's file")?;
    file.sync_all()?;

    let (queue, queued) = mpsc::channel::<Commit>();
    // Returns the bytes it preallocated in all.
    let committer = std::thread::spawn(move || -> std::io::Result<u64> {
        let mut buffer = Vec::new();
        let mut waiting = Vec::new();
        let mut offset = 0u64;
        let mut allocated = preallocate_bytes;
        // Ends when every sender is gone.
        while let Ok(first) = queued.recv() {
            buffer.clear();
            waiting.clear();
            for commit in std::iter::once(first).chain(queued.try_iter()) {
                buffer.extend_from_slice(&commit.records);
                waiting.push(commit.durable);
            }
            while offset + buffer.len() as u64 > allocated {
                preallocate(&file, allocated)?;
                allocated += preallocate_bytes;
            }
            file.write_all_at(&buffer, offset)?;
            file.sync_data()?;
            offset += buffer.len() as u64;
            for durable in waiting.drain(..) {
                // A sender that stopped waiting needs no answer.
                let _ = durable.send(());
            }
        }
        Ok(allocated)
    });

    let records: std::sync::Arc<[u8]> = vec![0xa5u8; per_call * record_bytes].into();
    let started = Instant::now();
    let deadline = started + duration;
    let workers: Vec<_> = (0..senders)
        .map(|_| {
            let queue = queue.clone();
            let records = records.clone();
            std::thread::spawn(move || -> u64 {
                let (durable, made_durable) = mpsc::channel();
                let mut sent = 0u64;
                // At least one call each, however late the thread starts.
                loop {
                    let commit = Commit {
                        records: records.clone(),
                        durable: durable.clone(),
                    };
                    if queue.send(commit).is_err() || made_durable.recv().is_err() {
                        break;
                    }
                    sent += per_call as u64;
                    if Instant::now() >= deadline {
                        break;
                    }
                }
                sent
            })
        })
        .collect();
    drop(queue);
    let mut total = 0u64;
    for worker in workers {
        total += worker
            .join()
            .map_err(|_| anyhow::anyhow!("a sender of the raw group commit panicked"))?;
    }
    let elapsed = started.elapsed();
    let allocated = committer
        .join()
        .map_err(|_| anyhow::anyhow!("the raw group commit's thread panicked"))?
        .context("the raw group commit could not write or sync its file")?;
    std::fs::remove_file(&path)?;
    Ok((total as f64 / elapsed.as_secs_f64(), allocated))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders_are_answered_and_the_file_is_preallocated_again_when_full() {
        let dir = eventfold_testsupport::dirs::temp_dir();
        // 4 senders of 10 records of 256 bytes fill 64 KiB within the first few dozen
        // commits.
        let (rate, allocated) = measure(
            dir.path(),
            4,
            10,
            256,
            Duration::from_millis(200),
            64 * 1024,
        )
        .unwrap();
        assert!(rate > 0.0, "no record was made durable");
        assert!(allocated > 64 * 1024, "preallocated {allocated} bytes only");
        assert!(!dir.path().join("bench-raw-group-commit").exists());
    }
}
