//! Scenario: streams hidden by a hard delete, a soft delete, `truncate_before`,
//! `max_count` and `max_age` are scavenged while the store runs. Exactly the hidden
//! events leave the disk (their bytes are in no file any more); every other event keeps
//! its position, revision, id and `recorded_at`; reads of streams, `$all` and `$ce-`
//! pass over the gaps; idempotent re-sends still dedupe; a reopen and `verify` agree.

mod common;

use std::path::Path;

use common::*;
use eventfold_core::{
    Direction, EventStore, ExpectedVersion, Position, ReadAll, ReadStream, RecordedEvent, Revision,
    StoreLayer,
};
use eventfold_log::{LogOptions, LogStore, ScavengeOptions};
use eventfold_metadata::{MetadataLayer, StreamAdmin, StreamMetadata, retention_cuts};

fn options() -> LogOptions {
    small_segments()
}

/// Every file under `dir`, with its bytes.
fn files(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("list") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            found.extend(files(&path));
        } else {
            let bytes = std::fs::read(&path).expect("read");
            found.push((path, bytes));
        }
    }
    found.sort();
    found
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Reads a stream page by page (2 events each) in `direction`, following revisions.
async fn paged(store: &LogStore, stream: &str, direction: Direction) -> Vec<RecordedEvent> {
    let mut events: Vec<RecordedEvent> = Vec::new();
    loop {
        let options = match (direction, events.last()) {
            (Direction::Forward, None) => ReadStream::forward(),
            (Direction::Forward, Some(e)) => {
                ReadStream::forward().from(Revision(e.revision.get() + 1))
            }
            (Direction::Backward, None) => ReadStream::backward(),
            (Direction::Backward, Some(e)) => match e.revision.get().checked_sub(1) {
                Some(r) => ReadStream::backward().from(Revision(r)),
                None => return events,
            },
        };
        let page = store
            .read_stream(stream, options.limit(2))
            .await
            .expect("read a page");
        if page.is_empty() {
            return events;
        }
        events.extend(page);
    }
}

async fn check_survivors(store: &LogStore, survivors: &[RecordedEvent], context: &str) {
    let found: Vec<_> = all_events(store).await.iter().map(identity).collect();
    let expected: Vec<_> = survivors.iter().map(identity).collect();
    assert_eq!(
        found, expected,
        "{context}: $all holds exactly the survivors"
    );
    for (stream, _) in RETENTION_CUTS {
        let mine: Vec<_> = survivors
            .iter()
            .filter(|e| e.stream == stream)
            .map(identity)
            .collect();
        let forward: Vec<_> = paged(store, stream, Direction::Forward)
            .await
            .iter()
            .map(identity)
            .collect();
        assert_eq!(
            forward, mine,
            "{context}: {stream} read forward in pages of 2"
        );
        let mut backward: Vec<_> = paged(store, stream, Direction::Backward)
            .await
            .iter()
            .map(identity)
            .collect();
        backward.reverse();
        assert_eq!(
            backward, mine,
            "{context}: {stream} read backward in pages of 2"
        );
    }
}

#[tokio::test]
async fn a_scavenge_removes_exactly_the_hidden_events_and_keeps_the_rest_as_they_were() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = LogStore::open(dir.path(), options()).expect("open");
    write_retention_scenario(&store).await;
    let before = all_events(&store).await;
    let survivors: Vec<RecordedEvent> = before.iter().filter(|e| survives(e)).cloned().collect();
    let removed: Vec<&RecordedEvent> = before.iter().filter(|e| !survives(e)).collect();
    assert_eq!(
        removed.len(),
        10 + 5 + 8 + 8,
        "the scenario hides 31 events"
    );
    let visible_before = visible(&store).await;
    let revisions_before = revisions(&store).await;

    let cuts = retention_cuts(&store, chrono::Utc::now())
        .await
        .expect("cuts");
    for (stream, cut) in RETENTION_CUTS {
        assert_eq!(cuts.keep_from(stream), cut, "the cut of {stream}");
    }
    let dry = store
        .scavenge(
            {
                let cuts = cuts.clone();
                move |s: &str| cuts.keep_from(s)
            },
            ScavengeOptions {
                dry_run: true,
                ..ScavengeOptions::default()
            },
        )
        .await
        .expect("dry run");
    assert_eq!(dry.events_removed(), removed.len() as u64);
    assert_eq!(
        all_events(&store).await.len(),
        before.len(),
        "a dry run removes nothing"
    );

    let report = store
        .scavenge(move |s: &str| cuts.keep_from(s), ScavengeOptions::default())
        .await
        .expect("scavenge");
    assert_eq!(report.events_removed(), removed.len() as u64);
    assert_eq!(
        report.segments, dry.segments,
        "the dry run said what the run did"
    );
    assert!(report.bytes_reclaimed() > 0, "{report:?}");
    assert!(
        report.segments_rewritten() > 1,
        "the scenario spans several segments"
    );

    check_survivors(&store, &survivors, "after the scavenge").await;
    assert_eq!(
        visible(&store).await,
        visible_before,
        "reads through the metadata layer"
    );
    assert_eq!(
        revisions(&store).await,
        revisions_before,
        "stream revisions"
    );
    let category = store
        .read_stream("$ce-count", ReadStream::forward().limit(2))
        .await
        .expect("$ce-count");
    let revisions_read: Vec<u64> = category.iter().map(|e| e.revision.get()).collect();
    assert_eq!(revisions_read, [5, 6], "$ce- fills its page past the gap");

    // The tombstone stays, so the stream stays deleted; a soft-deleted stream is
    // recreated at its next revision.
    assert!(
        store
            .append("hard-1", ExpectedVersion::Any, vec![event(1)])
            .await
            .is_err()
    );
    let recreated = store
        .append("soft-1", ExpectedVersion::Any, vec![event(1)])
        .await
        .expect("recreate soft-1");
    assert_eq!(recreated.first_revision, Revision(8));

    // An idempotent re-send of a surviving event still dedupes.
    let kept = survivors
        .iter()
        .find(|e| e.stream == "count-1")
        .expect("a survivor of count-1");
    let again = marked_event("count-1", kept.revision.get()).with_id(kept.id);
    let head = store.head_position().await.expect("head");
    let resent = store
        .append("count-1", ExpectedVersion::Any, vec![again])
        .await
        .expect("re-send");
    assert_eq!(resent.position, kept.position, "answered with the original");
    assert_eq!(
        store.head_position().await.expect("head"),
        head,
        "nothing written"
    );

    let second = store
        .scavenge(|s: &str| scenario_cut(s), ScavengeOptions::default())
        .await
        .expect("second scavenge");
    assert_eq!(
        second.segments_rewritten(),
        0,
        "nothing left to remove: {second:?}"
    );
    drop(store);

    // No byte of a removed event's data is left anywhere in the data directory.
    let files = files(dir.path());
    for event in &removed {
        let marker = marker(&event.stream, event.revision.get());
        for (path, bytes) in &files {
            assert!(
                !contains(bytes, &marker),
                "{marker} is still in {}",
                path.display()
            );
        }
    }
    for event in survivors.iter().filter(|e| e.event_type == "Marked") {
        let marker = marker(&event.stream, event.revision.get());
        assert!(
            files.iter().any(|(_, bytes)| contains(bytes, &marker)),
            "{marker} of a survivor is gone"
        );
    }

    let report = eventfold_log::verify(dir.path()).expect("verify");
    assert!(report.is_intact(), "{:?}", report.damage);
    let store = LogStore::open(dir.path(), options()).expect("reopen");
    let survivors_now: Vec<RecordedEvent> = survivors
        .iter()
        .cloned()
        .chain(
            all_events(&store)
                .await
                .into_iter()
                .filter(|e| e.position.get() >= before.len() as u64),
        )
        .collect();
    check_survivors(&store, &survivors_now, "after a reopen").await;
}

/// What a reader through the metadata layer sees of each stream.
async fn visible(store: &LogStore) -> Vec<(String, Result<Vec<(u64, String, u64)>, String>)> {
    let mut seen = Vec::new();
    for (stream, _) in RETENTION_CUTS {
        let read = MetadataLayer
            .read_stream(store, stream, ReadStream::forward())
            .await
            .map(|events| {
                events
                    .iter()
                    .map(|e| (e.position.get(), e.stream.clone(), e.revision.get()))
                    .collect()
            })
            .map_err(|e| e.to_string());
        seen.push((stream.to_string(), read));
    }
    seen
}

async fn revisions(store: &LogStore) -> Vec<Option<Revision>> {
    let mut found = Vec::new();
    for (stream, _) in RETENTION_CUTS {
        found.push(store.stream_revision(stream).await.expect("revision"));
    }
    found
}

#[tokio::test]
async fn max_age_removes_the_events_recorded_before_the_cutoff() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = LogStore::open(dir.path(), options()).expect("open");
    for n in 0..6 {
        store
            .append(
                "aged-1",
                ExpectedVersion::Any,
                vec![marked_event("aged-1", n)],
            )
            .await
            .expect("append");
    }
    store
        .set_stream_metadata(
            "aged-1",
            ExpectedVersion::Any,
            StreamMetadata {
                max_age: Some(3600),
                ..StreamMetadata::default()
            },
        )
        .await
        .expect("metadata");
    let events = store
        .read_stream("aged-1", ReadStream::forward())
        .await
        .expect("read");
    // "Now" is an hour after the fourth event: the ones recorded before it are too old.
    let now = events[3].recorded_at + chrono::Duration::seconds(3600);
    let expected: Vec<u64> = events
        .iter()
        .filter(|e| e.recorded_at >= events[3].recorded_at)
        .map(|e| e.revision.get())
        .collect();
    let cuts = retention_cuts(&store, now).await.expect("cuts");
    let report = store
        .scavenge(move |s: &str| cuts.keep_from(s), ScavengeOptions::default())
        .await
        .expect("scavenge");
    assert_eq!(report.events_removed(), 6 - expected.len() as u64);
    let left: Vec<u64> = store
        .read_stream("aged-1", ReadStream::forward())
        .await
        .expect("read")
        .iter()
        .map(|e| e.revision.get())
        .collect();
    assert_eq!(left, expected);
    // The metadata layer's bisection on recorded_at still finds the cutoff across the
    // gap.
    let cuts = retention_cuts(&store, now).await.expect("cuts again");
    assert!(cuts.keep_from("aged-1") <= expected[0]);
}

#[tokio::test]
async fn the_active_segment_is_sealed_first_and_appends_go_on_after_it() {
    let dir = tempfile::tempdir().expect("temporary directory");
    // Large segments: everything is in the active one.
    let store = LogStore::open(dir.path(), LogOptions::default()).expect("open");
    for n in 0..5 {
        store
            .append(
                "gone-1",
                ExpectedVersion::Any,
                vec![marked_event("gone-1", n)],
            )
            .await
            .expect("append");
    }
    let keep_from = |s: &str| if s == "gone-1" { 3 } else { 0 };
    let dry = store
        .scavenge(
            keep_from,
            ScavengeOptions {
                dry_run: true,
                ..ScavengeOptions::default()
            },
        )
        .await
        .expect("dry run");
    let names = |dir: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir.join("segments"))
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(
        names(dir.path()),
        ["0000000000.seg", "ack.mark", "store.id"],
        "a dry run does not seal the active segment"
    );
    let report = store
        .scavenge(keep_from, ScavengeOptions::default())
        .await
        .expect("scavenge");
    assert_eq!(
        report.segments, dry.segments,
        "the dry run said what the run did"
    );
    assert_eq!(report.segments_rewritten(), 1);
    assert_eq!(report.events_removed(), 3);
    let metric = |name: &str| {
        store
            .storage_metrics()
            .into_iter()
            .find(|m| m.name == name)
            .map(|m| m.value)
            .unwrap_or_else(|| panic!("no metric {name}"))
    };
    assert_eq!(
        metric("eventfold_log_scavenged_segments_total"),
        1.0,
        "a dry run counts nothing"
    );
    assert_eq!(metric("eventfold_log_scavenged_events_total"), 3.0);
    assert_eq!(
        metric("eventfold_log_scavenge_reclaimed_bytes_total"),
        report.bytes_reclaimed() as f64
    );
    assert_eq!(
        metric("eventfold_log_scavenged_bytes_total"),
        report.bytes_before() as f64
    );
    let next = store
        .append(
            "gone-1",
            ExpectedVersion::Exact(Revision(4)),
            vec![event(5)],
        )
        .await
        .expect("append after");
    assert_eq!(next.position, Position(5));
    let page = store
        .read_all(ReadAll::from(Position(0), 2))
        .await
        .expect("$all");
    let positions: Vec<u64> = page.events.iter().map(|e| e.position.get()).collect();
    assert_eq!(positions, [3, 4], "a page of $all is filled past the gap");
    assert!(!page.end_of_log, "a gap is not the end");
    drop(store);
    let names = names(dir.path());
    assert!(names.contains(&"0000000001.seg".to_string()), "{names:?}");
    let report = eventfold_log::verify(dir.path()).expect("verify");
    assert!(report.is_intact(), "{:?}", report.damage);
}

#[tokio::test]
async fn appends_and_reads_go_on_while_a_scavenge_runs() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = std::sync::Arc::new(LogStore::open(dir.path(), options()).expect("open"));
    write_retention_scenario(store.as_ref()).await;
    let before = all_events(store.as_ref()).await;
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for n in 0..200 {
                let result = store
                    .append(
                        "live-1",
                        ExpectedVersion::Any,
                        vec![marked_event("live-1", n)],
                    )
                    .await
                    .expect("append during the scavenge");
                acked.push(result.position);
            }
            acked
        })
    };
    let reader = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut reads = 0;
            for _ in 0..50 {
                let events = store
                    .read_stream("keep-1", ReadStream::forward())
                    .await
                    .expect("read during the scavenge");
                assert_eq!(events.len(), 9, "keep-1 loses nothing");
                reads += 1;
            }
            reads
        })
    };
    let report = store
        .scavenge(|s: &str| scenario_cut(s), ScavengeOptions::default())
        .await
        .expect("scavenge");
    assert_eq!(report.events_removed(), 31);
    let acked = writer.await.expect("writer");
    assert_eq!(reader.await.expect("reader"), 50);
    let after = all_events(store.as_ref()).await;
    let expected: Vec<_> = before
        .iter()
        .filter(|e| survives(e))
        .map(identity)
        .collect();
    let found: Vec<_> = after
        .iter()
        .filter(|e| e.stream != "live-1")
        .map(identity)
        .collect();
    assert_eq!(found, expected);
    let live: Vec<Position> = after
        .iter()
        .filter(|e| e.stream == "live-1")
        .map(|e| e.position)
        .collect();
    assert_eq!(
        live, acked,
        "every append made during the scavenge is there"
    );
    drop(store);
    let report = eventfold_log::verify(dir.path()).expect("verify");
    assert!(report.is_intact(), "{:?}", report.damage);
}
