//! Scenario: damage in the active segment is corruption, never a torn tail. The store
//! refuses to open for writing, names the damaged record and changes no file; `verify`
//! keeps reporting it; a read-only open reads what is intact; only `repair` gives data
//! up, says exactly what, and never hands the given-up positions or revisions out again.
//! A torn tail proper (a write never acknowledged) is still cut silently.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use common::*;
use eventfold_core::{Error, EventStore, ExpectedVersion, ReadStream, RecordedEvent, Revision};
use eventfold_log::io::Storage;
use eventfold_log::sim::{Faults, SimStorage, Unsynced};
use eventfold_log::{GivenUp, LogOptions, LogStore, RepairOptions};

const ROOT: &str = "/data";
const SEGMENT: &str = "/data/segments/0000000000.seg";

/// One segment for everything, and no timed mark updates: every run is the same. The
/// segment is allocated 4 KiB at a time, so zeros follow its records.
fn one_segment() -> LogOptions {
    LogOptions {
        ack_mark_interval_ms: 0,
        preallocate_bytes: 4096,
        ..LogOptions::default()
    }
}

/// Where the 12 records of [`written_store`] end in its segment; zeros of allocated
/// room follow.
fn records_end(segment: &[u8]) -> usize {
    let end = record_offset(segment, 12);
    assert_eq!(segment.len(), 4096, "the segment is allocated ahead");
    assert!(segment[end..].iter().all(|&b| b == 0));
    end
}

/// Every file of the disk with its contents.
fn snapshot(storage: &SimStorage) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for dir in ["/data", "/data/segments", "/data/quarantine"] {
        for name in storage.list(Path::new(dir)).unwrap_or_default() {
            let path = Path::new(dir).join(&name);
            if let Some(bytes) = storage.read_file(&path) {
                files.insert(path.display().to_string(), bytes);
            }
        }
    }
    files
}

fn read_only(storage: &SimStorage) -> eventfold_core::Result<LogStore> {
    LogStore::open_read_only_with(Arc::new(storage.clone()), Path::new(ROOT))
}

/// A store of 12 events in 7 appends, some of them several events at once, closed.
async fn written_store(storage: &SimStorage) -> Vec<RecordedEvent> {
    let store = open_sim(storage, one_segment()).unwrap();
    let appends: [(&str, u64); 7] = [
        ("a", 1),
        ("b", 3),
        ("a", 1),
        ("c", 2),
        ("b", 1),
        ("a", 2),
        ("c", 2),
    ];
    let mut n = 0;
    for (stream, count) in appends {
        let events = (0..count)
            .map(|_| {
                n += 1;
                event(n)
            })
            .collect();
        store
            .append(stream, ExpectedVersion::Any, events)
            .await
            .unwrap();
    }
    let events = all_events(&store).await;
    assert_eq!(events.len(), 12);
    events
}

#[tokio::test]
async fn a_flip_at_any_byte_of_the_active_segment_is_refused_and_changes_nothing() {
    let storage = SimStorage::new();
    let originals = written_store(&storage).await;
    let original = storage.read_file(Path::new(SEGMENT)).unwrap();
    let before = snapshot(&storage);
    for byte in 0..records_end(&original) {
        let mut damaged = original.clone();
        damaged[byte] ^= 0x40;
        storage.write_file(Path::new(SEGMENT), damaged);
        let expected_files = snapshot(&storage);

        match open_sim(&storage, one_segment()) {
            Err(Error::Corrupted { file, reason, .. }) => {
                assert!(file.ends_with("0000000000.seg"), "byte {byte}: {file}");
                assert!(!reason.is_empty());
            }
            Err(other) => panic!("byte {byte}: expected corruption, got {other}"),
            Ok(_) => panic!("byte {byte} flipped, yet the store opened for writing"),
        }
        assert_eq!(
            snapshot(&storage),
            expected_files,
            "byte {byte}: a refused open changed files"
        );
        let report = eventfold_log::verify_with(&storage, Path::new(ROOT)).unwrap();
        assert!(
            report
                .damage
                .iter()
                .any(|d| d.file.ends_with("0000000000.seg")),
            "byte {byte}: verify said {:?}",
            report.damage
        );
        if byte >= 32 {
            // Past the segment header, what is intact can still be read.
            let reader = read_only(&storage).unwrap();
            assert!(reader.damage().is_some(), "byte {byte}");
            let intact = all_events(&reader).await;
            assert!(intact.len() < originals.len(), "byte {byte}");
            assert_eq!(intact[..], originals[..intact.len()], "byte {byte}");
        }
        storage.write_file(Path::new(SEGMENT), original.clone());
    }
    assert_eq!(snapshot(&storage), before);
    let store = open_sim(&storage, one_segment()).unwrap();
    assert_eq!(all_events(&store).await, originals);
}

#[tokio::test]
async fn without_the_mark_intact_records_after_damage_still_prove_corruption() {
    let storage = SimStorage::new();
    let originals = written_store(&storage).await;
    storage
        .remove(Path::new("/data/segments/ack.mark"))
        .unwrap();
    let original = storage.read_file(Path::new(SEGMENT)).unwrap();
    // A payload byte of the first record: eleven intact records follow it.
    let mut damaged = original.clone();
    damaged[32 + 80] ^= 1;
    storage.write_file(Path::new(SEGMENT), damaged);
    let error = open_sim(&storage, one_segment()).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("position 0") && message.contains("11 intact record(s) follow"),
        "{message}"
    );
    storage.write_file(Path::new(SEGMENT), original);
    let store = open_sim(&storage, one_segment()).unwrap();
    assert_eq!(all_events(&store).await, originals);
}

#[tokio::test]
async fn a_real_torn_tail_is_reported_by_verify_and_cut_silently_by_open() {
    let storage = SimStorage::new();
    let acknowledged = {
        let store = open_sim(&storage, one_segment()).unwrap();
        append_one(&store, "s", 1).await.unwrap();
        append_one(&store, "s", 2).await.unwrap();
        // The next append's write reaches the page cache, its fsync never returns.
        storage.set_faults(Faults {
            crash_at_op: Some(storage.ops() + 2),
            ..Faults::default()
        });
        assert!(append_one(&store, "s", 3).await.is_err());
        all_events(&store).await
    };
    assert_eq!(acknowledged.len(), 2);
    let after = storage.power_loss(Unsynced::TornPrefix {
        percent: 60,
        flip_last: true,
    });
    let report = eventfold_log::verify_with(&after, Path::new(ROOT)).unwrap();
    assert_eq!(report.damage.len(), 1, "{:?}", report.damage);
    assert!(
        report.damage[0].reason.contains("torn tail"),
        "{:?}",
        report.damage
    );
    let store = open_sim(&after, one_segment()).unwrap();
    assert_eq!(all_events(&store).await, acknowledged);
    drop(store);
    assert!(
        eventfold_log::verify_with(&after, Path::new(ROOT))
            .unwrap()
            .is_intact()
    );
    let quarantined = after.list(Path::new("/data/quarantine")).unwrap();
    assert_eq!(
        quarantined.len(),
        1,
        "the torn bytes are kept for inspection"
    );
}

#[tokio::test]
async fn zeros_after_the_records_are_room_an_open_keeps_and_a_flip_there_is_a_torn_tail() {
    let storage = SimStorage::new();
    let originals = written_store(&storage).await;
    let original = storage.read_file(Path::new(SEGMENT)).unwrap();
    let end = records_end(&original);

    // A clean reopen keeps the room, quarantines nothing, and writes into the room.
    let before = snapshot(&storage);
    let store = open_sim(&storage, one_segment()).unwrap();
    assert_eq!(all_events(&store).await, originals);
    assert!(storage.list(Path::new("/data/quarantine")).is_err());
    let segment = storage.read_file(Path::new(SEGMENT)).unwrap();
    assert_eq!(segment, before[SEGMENT], "the open changed the segment");
    append_one(&store, "d", 0).await.unwrap();
    drop(store);
    let grown = storage.read_file(Path::new(SEGMENT)).unwrap();
    assert_eq!(grown.len(), 4096, "the append went into the room");
    assert_ne!(grown[end], 0);

    // A flipped byte in the room, after everything acknowledged: never an acknowledged
    // event, so it is cut like a torn write and nothing is lost.
    for (path, bytes) in &before {
        storage.write_file(Path::new(path), bytes.clone());
    }
    let mut damaged = original.clone();
    damaged[end + 100] = 0x17;
    storage.write_file(Path::new(SEGMENT), damaged);
    let store = open_sim(&storage, one_segment()).unwrap();
    assert_eq!(all_events(&store).await, originals);
    assert_eq!(
        storage.list(Path::new("/data/quarantine")).unwrap().len(),
        1
    );
}

/// Offset of the record at `position` in the single segment, found by walking the
/// records of a written store.
fn record_offset(segment: &[u8], position: u64) -> usize {
    let mut offset = 32;
    for _ in 0..position {
        let body = u32::from_le_bytes(segment[offset..offset + 4].try_into().unwrap());
        offset += 8 + body as usize;
    }
    offset
}

#[tokio::test]
async fn repair_gives_up_the_damaged_transaction_and_never_hands_its_positions_out_again() {
    let storage = SimStorage::new();
    let originals = written_store(&storage).await;
    // Positions 1..4 are one append of three events to `b`; damage its second record.
    let original = storage.read_file(Path::new(SEGMENT)).unwrap();
    // Two flipped bits: more than a repair can undo.
    let mut damaged = original.clone();
    damaged[record_offset(&original, 2) + 70] ^= 0x01;
    damaged[record_offset(&original, 2) + 72] ^= 0x01;
    storage.write_file(Path::new(SEGMENT), damaged);
    assert!(matches!(
        open_sim(&storage, one_segment()),
        Err(Error::Corrupted { .. })
    ));

    let before = snapshot(&storage);
    let plan = eventfold_log::repair_with(
        &storage,
        Path::new(ROOT),
        &RepairOptions {
            dry_run: true,
            reason: "test".into(),
        },
    )
    .unwrap();
    assert_eq!(snapshot(&storage), before, "a dry run changes nothing");
    assert_eq!(plan.segments.len(), 1);
    assert_eq!(plan.segments[0].gaps, vec![1..4]);
    let intact: Vec<u64> = plan.segments[0]
        .given_up
        .iter()
        .filter_map(|g| match g {
            GivenUp::Intact(e) => Some(e.position.get()),
            _ => None,
        })
        .collect();
    assert_eq!(
        intact,
        vec![1, 3],
        "the damaged record's neighbours in its transaction"
    );
    // The damaged record's own header still names `b` at its next revision.
    assert!(
        plan.segments[0].given_up.contains(&GivenUp::Unreadable {
            position: 2,
            stream: Some(("b".into(), 1)),
            id: None,
        }),
        "{:?}",
        plan.segments[0].given_up
    );

    let done = eventfold_log::repair_with(
        &storage,
        Path::new(ROOT),
        &RepairOptions {
            dry_run: false,
            reason: "operator: bad disk block".into(),
        },
    )
    .unwrap();
    let quarantined = done.segments[0].quarantined.clone().unwrap();
    assert_eq!(
        storage
            .read_file(&Path::new(ROOT).join(&quarantined))
            .unwrap()
            .len(),
        original.len(),
        "the damaged file is kept whole"
    );
    let repaired = storage.read_file(Path::new(SEGMENT)).unwrap();
    assert!(
        repaired
            .windows(b"operator: bad disk block".len())
            .any(|w| w == b"operator: bad disk block"),
        "the gap record carries the audit line"
    );
    let report = eventfold_log::verify_with(&storage, Path::new(ROOT)).unwrap();
    assert!(report.is_intact(), "{:?}", report.damage);
    assert_eq!((report.events, report.lost), (9, 3));

    let store = open_sim(&storage, one_segment()).unwrap();
    let survivors: Vec<RecordedEvent> = originals
        .iter()
        .filter(|e| !(1..4).contains(&e.position.get()))
        .cloned()
        .collect();
    assert_eq!(all_events(&store).await, survivors);
    // `b` had revisions 0..3 in the damaged append and 3 after it: the survivor keeps
    // its revision, and the next append does not reuse any.
    let b = store.read_stream("b", ReadStream::forward()).await.unwrap();
    assert_eq!(
        b.iter().map(|e| e.revision).collect::<Vec<_>>(),
        [Revision(3)]
    );
    let written = store
        .append("b", ExpectedVersion::Exact(Revision(3)), vec![event(99)])
        .await
        .unwrap();
    assert_eq!(written.first_revision, Revision(4));
    assert_eq!(
        written.position.get(),
        12,
        "positions continue after the log's end"
    );
    drop(store);
    let store = open_sim(&storage, one_segment()).unwrap();
    assert_eq!(all_events(&store).await.len(), 10);
}

#[tokio::test]
async fn damage_at_the_end_of_the_active_segment_is_refused_because_it_was_acknowledged() {
    let storage = SimStorage::new();
    let originals = written_store(&storage).await;
    let original = storage.read_file(Path::new(SEGMENT)).unwrap();
    // The last byte of the last record: no record follows, but the mark says it was
    // acknowledged.
    let mut damaged = original.clone();
    let last = records_end(&original) - 1;
    damaged[last] ^= 0x01;
    damaged[last - 1] ^= 0x01;
    storage.write_file(Path::new(SEGMENT), damaged);
    let message = open_sim(&storage, one_segment()).unwrap_err().to_string();
    assert!(message.contains("acknowledged"), "{message}");

    let done = eventfold_log::repair_with(
        &storage,
        Path::new(ROOT),
        &RepairOptions {
            dry_run: false,
            reason: "test".into(),
        },
    )
    .unwrap();
    // The last append wrote two events (positions 10 and 11): both are given up.
    assert_eq!(done.segments[0].gaps[0].start, 10);
    let store = open_sim(&storage, one_segment()).unwrap();
    assert_eq!(all_events(&store).await, originals[..10]);
    let written = store
        .append("c", ExpectedVersion::Any, vec![event(99)])
        .await
        .unwrap();
    assert!(written.position.get() >= 12, "{written:?}");
    assert_eq!(
        written.first_revision,
        Revision(4),
        "c's revisions 2 and 3 are not reused"
    );
}

#[tokio::test]
async fn repair_of_a_sealed_segment_gives_up_one_transaction_and_keeps_the_rest() {
    let storage = SimStorage::new();
    let options = LogOptions {
        ack_mark_interval_ms: 0,
        ..small_segments()
    };
    let originals = {
        let store = open_sim(&storage, options.clone()).unwrap();
        for n in 0..120u64 {
            append_one(&store, &format!("s-{}", n % 3), n)
                .await
                .unwrap();
        }
        all_events(&store).await
    };
    let path = Path::new("/data/segments/0000000001.seg");
    let original = storage.read_file(path).unwrap();
    let mut damaged = original.clone();
    let at = record_offset(&original, 3) + 75;
    damaged[at] ^= 0x10;
    damaged[at + 1] ^= 0x10;
    storage.write_file(path, damaged);
    let report = eventfold_log::verify_with(&storage, Path::new(ROOT)).unwrap();
    assert!(!report.is_intact());

    let done = eventfold_log::repair_with(
        &storage,
        Path::new(ROOT),
        &RepairOptions {
            dry_run: false,
            reason: "test".into(),
        },
    )
    .unwrap();
    assert_eq!(done.segments.len(), 1);
    assert_eq!(done.segments[0].file, "segments/0000000001.seg");
    // Each append was one event, so the damaged record was a commit record; nothing
    // says so, and the transaction after it is given up too (never half of one kept).
    let lost = done.segments[0].gaps[0].start;
    assert_eq!(done.segments[0].gaps, vec![lost..lost + 2]);
    // The segment's index file knew the unreadable event: stream, revision, id.
    let GivenUp::Unreadable {
        stream: Some((stream, revision)),
        id: Some(id),
        ..
    } = &done.segments[0].given_up[0]
    else {
        panic!("{:?}", done.segments[0].given_up);
    };
    let gone = &originals[lost as usize];
    assert_eq!(
        (stream, *revision, *id),
        (&gone.stream, gone.revision.get(), gone.id)
    );

    let report = eventfold_log::verify_with(&storage, Path::new(ROOT)).unwrap();
    assert!(report.is_intact(), "{:?}", report.damage);
    let store = open_sim(&storage, options).unwrap();
    let survivors: Vec<RecordedEvent> = originals
        .iter()
        .filter(|e| !(lost..lost + 2).contains(&e.position.get()))
        .cloned()
        .collect();
    assert_eq!(all_events(&store).await, survivors);
    let written = store
        .append(&gone.stream, ExpectedVersion::Any, vec![event(1000)])
        .await
        .unwrap();
    assert_eq!(
        written.first_revision,
        Revision(40),
        "revisions count the lost event"
    );
}

#[tokio::test]
async fn a_damaged_sealed_segment_is_reported_by_the_scrub_right_after_open() {
    let storage = SimStorage::new();
    let options = LogOptions {
        ack_mark_interval_ms: 0,
        scrub_sealed_segments: true,
        ..small_segments()
    };
    {
        let store = open_sim(&storage, options.clone()).unwrap();
        for n in 0..120u64 {
            append_one(&store, &format!("s-{}", n % 3), n)
                .await
                .unwrap();
        }
    }
    let mut store = open_sim(&storage, options.clone()).unwrap();
    assert_eq!(
        store.wait_for_scrub(),
        Vec::<String>::new(),
        "intact at first"
    );
    drop(store);

    let path = Path::new("/data/segments/0000000001.seg");
    let mut bytes = storage.read_file(path).unwrap();
    bytes[200] ^= 0x08;
    storage.write_file(path, bytes);
    let mut store = open_sim(&storage, options).unwrap();
    let found = store.wait_for_scrub();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("0000000001.seg"), "{found:?}");
    let damaged = store
        .storage_metrics()
        .into_iter()
        .find(|m| m.name == "eventfold_log_damaged_segments")
        .unwrap();
    assert_eq!(damaged.value, 1.0);
    // Writes go on: nothing new depends on the damaged record.
    append_one(&store, "s-0", 1000).await.unwrap();
}

#[tokio::test]
async fn repair_undoes_a_single_flipped_bit_and_gives_up_nothing() {
    let storage = SimStorage::new();
    let originals = written_store(&storage).await;
    let original = storage.read_file(Path::new(SEGMENT)).unwrap();
    for (position, byte, bit) in [(0u64, 0usize, 0u8), (5, 17, 3), (11, 80, 7)] {
        let at = record_offset(&original, position) + byte;
        let mut damaged = original.clone();
        damaged[at] ^= 1 << bit;
        storage.write_file(Path::new(SEGMENT), damaged);
        assert!(open_sim(&storage, one_segment()).is_err());
        let done = eventfold_log::repair_with(
            &storage,
            Path::new(ROOT),
            &RepairOptions {
                dry_run: false,
                reason: "test".into(),
            },
        )
        .unwrap();
        let segment = &done.segments[0];
        assert_eq!(
            segment.corrected,
            vec![eventfold_log::Correction {
                offset: at as u64,
                bit,
                position
            }]
        );
        assert!(
            segment.gaps.is_empty() && segment.given_up.is_empty(),
            "{segment:?}"
        );
        // The records as written; a repair's rewrite has no allocated room.
        let repaired = storage.read_file(Path::new(SEGMENT)).unwrap();
        assert!(repaired[..] == original[..records_end(&original)]);
        let store = open_sim(&storage, one_segment()).unwrap();
        assert_eq!(all_events(&store).await, originals);
    }
}

/// One slot of the acknowledged mark, laid out as docs/log-format.md describes it.
fn mark_slot(sequence: u64, segment: u64, len: u64, exact: bool) -> Vec<u8> {
    let kind: u32 = if exact { 2 } else { 1 };
    let mut slot = Vec::with_capacity(40);
    slot.extend_from_slice(b"EVFOLDAM");
    slot.extend_from_slice(&kind.to_le_bytes());
    slot.extend_from_slice(&[0; 4]);
    slot.extend_from_slice(&sequence.to_le_bytes());
    slot.extend_from_slice(&segment.to_le_bytes());
    slot.extend_from_slice(&len.to_le_bytes());
    let crc = if exact {
        crc32c::crc32c_append(crc32c::crc32c(&slot[8..12]), &slot[16..40])
    } else {
        crc32c::crc32c(&slot[16..40])
    };
    slot[12..16].copy_from_slice(&crc.to_le_bytes());
    slot
}

/// What a failed fsync among concurrent ones can leave: the pages of one write lost
/// (zeros), the records written after it intact. Only an exact mark, written when the
/// store stopped after the failure, lets recovery cut them; a lower bound cannot tell
/// them from damage, and an exact mark past the lost pages proves they were acknowledged.
#[tokio::test]
async fn records_after_lost_pages_are_cut_only_when_an_exact_mark_says_they_were_never_acknowledged()
 {
    let storage = SimStorage::new();
    let originals = written_store(&storage).await;
    let original = storage.read_file(Path::new(SEGMENT)).unwrap();
    // Position 7 is a transaction of its own (one event and its commit end before
    // position 8); positions 8..=11 follow it intact.
    let lost_from = record_offset(&original, 7);
    let lost_to = record_offset(&original, 8);
    let mut segment = original.clone();
    segment[lost_from..lost_to].fill(0);
    let mark = Path::new("/data/segments/ack.mark");
    let with = |slots: [Vec<u8>; 2]| {
        storage.write_file(Path::new(SEGMENT), segment.clone());
        storage.write_file(mark, slots.concat());
    };

    // A lower bound at the lost pages: refused, nothing changed.
    with([
        mark_slot(2, 0, lost_from as u64, false),
        mark_slot(1, 0, 32, false),
    ]);
    let before = snapshot(&storage);
    let message = open_sim(&storage, one_segment()).unwrap_err().to_string();
    assert!(message.contains("intact record(s) follow it"), "{message}");
    assert_eq!(snapshot(&storage), before);

    // An exact end past the lost pages: they were acknowledged, so refused too.
    with([
        mark_slot(2, 0, lost_to as u64, true),
        mark_slot(1, 0, 32, false),
    ]);
    let before = snapshot(&storage);
    let message = open_sim(&storage, one_segment()).unwrap_err().to_string();
    assert!(message.contains("is damaged"), "{message}");
    assert_eq!(snapshot(&storage), before);

    // A kind-2 slot whose checksum does not cover its kind is no exact end: the other
    // (lower bound) slot answers, and the store is refused.
    let mut forged = mark_slot(2, 0, lost_from as u64, false);
    forged[8] = 2;
    with([forged, mark_slot(1, 0, lost_from as u64, false)]);
    assert!(open_sim(&storage, one_segment()).is_err());

    // The exact end at the lost pages: everything after it is a torn tail.
    with([
        mark_slot(2, 0, lost_from as u64, true),
        mark_slot(1, 0, 32, false),
    ]);
    let store = open_sim(&storage, one_segment()).unwrap();
    assert_eq!(all_events(&store).await, originals[..7]);
    let written = store
        .append("d", ExpectedVersion::NoStream, vec![event(99)])
        .await
        .unwrap();
    assert_eq!(written.position.get(), 7);
    drop(store);
    let store = open_sim(&storage, one_segment()).unwrap();
    assert_eq!(all_events(&store).await.len(), 8);
}
