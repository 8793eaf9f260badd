//! Reading one stream forward and backward, from a revision, with a limit.

use eventfold_core::{EventStore, ExpectedVersion, ReadStream, Revision};

use crate::support::{assert_fresh, event, n_of, ok};
use eventfold_wire::ErrorCode;

/// Writes `order-1` with five events (revisions 0..=4, data `n` = revision) with
/// events of `order-10` and `order-2` in between.
async fn five_event_stream<S: EventStore + ?Sized>(store: &S) {
    assert_fresh(store).await;
    for n in 0..5 {
        ok(
            "append to order-1",
            store
                .append("order-1", ExpectedVersion::Any, vec![event("Happened", n)])
                .await,
        );
        ok(
            "append to a neighbour",
            store
                .append(
                    if n % 2 == 0 { "order-10" } else { "order-2" },
                    ExpectedVersion::Any,
                    vec![event("Other", 100 + n)],
                )
                .await,
        );
    }
}

/// Reads `order-1` with `options` and checks the revisions returned.
async fn assert_reads<S: EventStore + ?Sized>(store: &S, options: ReadStream, revisions: &[u64]) {
    let events = ok(
        &format!("read_stream {options:?}"),
        store.read_stream("order-1", options).await,
    );
    let got: Vec<u64> = events.iter().map(|e| e.revision.get()).collect();
    assert_eq!(
        got, revisions,
        "revisions returned by read_stream {options:?}"
    );
    for event in &events {
        assert_eq!(
            event.stream, "order-1",
            "read_stream returns only its stream"
        );
        assert_eq!(
            n_of(event),
            event.revision.get(),
            "the event at each revision is the one written there"
        );
    }
}

/// Reading forward returns every event oldest first; from a revision it starts there
/// (inclusive); a limit caps the count.
pub async fn read_stream_forward<S: EventStore + ?Sized>(store: &S) {
    five_event_stream(store).await;
    assert_reads(store, ReadStream::forward(), &[0, 1, 2, 3, 4]).await;
    assert_reads(
        store,
        ReadStream::forward().from(Revision(0)),
        &[0, 1, 2, 3, 4],
    )
    .await;
    assert_reads(store, ReadStream::forward().from(Revision(2)), &[2, 3, 4]).await;
    assert_reads(store, ReadStream::forward().from(Revision(4)), &[4]).await;
    assert_reads(store, ReadStream::forward().limit(2), &[0, 1]).await;
    assert_reads(
        store,
        ReadStream::forward().from(Revision(1)).limit(3),
        &[1, 2, 3],
    )
    .await;
    assert_reads(
        store,
        ReadStream::forward().from(Revision(3)).limit(10),
        &[3, 4],
    )
    .await;
    assert_reads(store, ReadStream::forward().limit(5), &[0, 1, 2, 3, 4]).await;
}

/// Reading backward returns every event newest first; from a revision it starts there
/// (inclusive) and goes down; a limit caps the count.
pub async fn read_stream_backward<S: EventStore + ?Sized>(store: &S) {
    five_event_stream(store).await;
    assert_reads(store, ReadStream::backward(), &[4, 3, 2, 1, 0]).await;
    assert_reads(
        store,
        ReadStream::backward().from(Revision(4)),
        &[4, 3, 2, 1, 0],
    )
    .await;
    assert_reads(store, ReadStream::backward().from(Revision(2)), &[2, 1, 0]).await;
    assert_reads(store, ReadStream::backward().from(Revision(0)), &[0]).await;
    assert_reads(store, ReadStream::backward().limit(2), &[4, 3]).await;
    assert_reads(
        store,
        ReadStream::backward().from(Revision(3)).limit(2),
        &[3, 2],
    )
    .await;
    assert_reads(
        store,
        ReadStream::backward().from(Revision(1)).limit(10),
        &[1, 0],
    )
    .await;
}

/// Past the end of a stream: forward reads are empty (not an error), backward reads
/// start at the last event.
pub async fn read_stream_past_the_end<S: EventStore + ?Sized>(store: &S) {
    five_event_stream(store).await;
    assert_reads(store, ReadStream::forward().from(Revision(5)), &[]).await;
    assert_reads(store, ReadStream::forward().from(Revision(1000)), &[]).await;
    assert_reads(
        store,
        ReadStream::backward().from(Revision(5)),
        &[4, 3, 2, 1, 0],
    )
    .await;
    assert_reads(
        store,
        ReadStream::backward().from(Revision(1000)).limit(2),
        &[4, 3],
    )
    .await;
    assert_reads(
        store,
        ReadStream::backward().from(Revision(u64::MAX)).limit(1),
        &[4],
    )
    .await;
}

/// Reading a stream that was never written fails with `StreamNotFound` naming it,
/// whatever the options; a stream whose name is a prefix of an existing one does not
/// exist either.
pub async fn read_unknown_stream_is_not_found<S: EventStore + ?Sized>(store: &S) {
    five_event_stream(store).await;
    for stream in ["order-3", "order-", "order", "Order-1", "order-1 "] {
        for options in [
            ReadStream::forward(),
            ReadStream::backward(),
            ReadStream::forward().from(Revision(0)).limit(1),
            ReadStream::backward().from(Revision(3)),
        ] {
            match store.read_stream(stream, options).await {
                Err(eventfold_core::Error::StreamNotFound { stream: named }) => {
                    assert_eq!(named, stream, "StreamNotFound names the stream");
                }
                Ok(events) => panic!(
                    "read_stream({stream:?}, {options:?}) of a stream never written returned {} events",
                    events.len()
                ),
                Err(e) => panic!(
                    "read_stream({stream:?}, {options:?}): expected StreamNotFound, got `{}`: {e}",
                    ErrorCode::of(&e)
                ),
            }
        }
    }
    assert_eq!(
        ok("stream_revision", store.stream_revision("order-3").await),
        None,
        "stream_revision of an unknown stream is None, not an error"
    );
}
