//! Reading the global log (`$all`): pages, positions, `next` and `end_of_log`, and
//! filters by stream prefix, category and event type.

use eventfold_core::{AllFilter, EventStore, ExpectedVersion, Position, ReadAll, ReadStream};

use crate::support::{assert_fresh, event, ok, read_filtered};

/// The log every `read_all` case writes: (stream, event type), position = index.
const LOG: [(&str, &str); 10] = [
    ("order-1", "OrderPlaced"),
    ("invoice-1", "InvoiceIssued"),
    ("order-2", "OrderPlaced"),
    ("orders-archive", "ArchiveRotated"),
    ("order-1", "OrderShipped"),
    ("order", "LegacyImported"),
    ("invoice-1", "InvoicePaid"),
    ("order-2-b", "OrderPlaced"),
    ("stock-9", "StockCounted"),
    ("order-1", "OrderCancelled"),
];

async fn write_log<S: EventStore + ?Sized>(store: &S) {
    assert_fresh(store).await;
    for (n, (stream, event_type)) in LOG.iter().enumerate() {
        let written = ok(
            "append",
            store
                .append(
                    stream,
                    ExpectedVersion::Any,
                    vec![event(event_type, n as u64)],
                )
                .await,
        );
        assert_eq!(written.position, Position(n as u64));
    }
}

/// Reads one unfiltered page and checks its positions, `next` and `end_of_log`.
async fn assert_page<S: EventStore + ?Sized>(
    store: &S,
    from: u64,
    limit: u64,
    positions: &[u64],
    next: u64,
    end_of_log: bool,
) {
    let page = ok(
        "read_all",
        store.read_all(ReadAll::from(Position(from), limit)).await,
    );
    let context = format!("read_all from {from} limit {limit}");
    let got: Vec<u64> = page.events.iter().map(|e| e.position.get()).collect();
    assert_eq!(got, positions, "{context}: positions");
    for event in &page.events {
        let (stream, event_type) = LOG[event.position.get() as usize];
        assert_eq!(
            (event.stream.as_str(), event.event_type.as_str()),
            (stream, event_type),
            "{context}: the event at position {}",
            event.position
        );
        assert_eq!(
            crate::support::n_of(event),
            event.position.get(),
            "{context}: data of the event at position {}",
            event.position
        );
    }
    assert_eq!(page.next, Position(next), "{context}: next");
    assert_eq!(page.end_of_log, end_of_log, "{context}: end_of_log");
}

/// Paging through `$all` with `next` returns every event once, in position order;
/// only the last page (the one that reaches the last event) says `end_of_log`.
pub async fn read_all_pages_until_end_of_log<S: EventStore + ?Sized>(store: &S) {
    write_log(store).await;
    assert_page(store, 0, 3, &[0, 1, 2], 3, false).await;
    assert_page(store, 3, 3, &[3, 4, 5], 6, false).await;
    assert_page(store, 6, 3, &[6, 7, 8], 9, false).await;
    assert_page(store, 9, 3, &[9], 10, true).await;
    // A page that ends exactly on the last event has reached the end of the log.
    assert_page(store, 0, 5, &[0, 1, 2, 3, 4], 5, false).await;
    assert_page(store, 5, 5, &[5, 6, 7, 8, 9], 10, true).await;
    assert_page(store, 0, 100, &(0..10).collect::<Vec<_>>(), 10, true).await;

    let mut from = Position::START;
    let mut seen = Vec::new();
    for _ in 0..=LOG.len() {
        let page = ok("read_all", store.read_all(ReadAll::from(from, 4)).await);
        seen.extend(page.events.iter().map(|e| e.position.get()));
        if page.end_of_log {
            break;
        }
        from = page.next;
    }
    assert_eq!(
        seen,
        (0..10).collect::<Vec<_>>(),
        "paging with next visits every event once"
    );
    let one = ok(
        "read_stream",
        store
            .read_stream("order-1", ReadStream::backward().limit(1))
            .await,
    );
    let page = ok(
        "read_all",
        store.read_all(ReadAll::from(Position(9), 1)).await,
    );
    assert_eq!(
        page.events[0].id, one[0].id,
        "read_all and read_stream return the same event at position 9"
    );
}

/// `read_all` starts at `from` (inclusive) and returns at most `limit` events; at or
/// past the end it is empty and at its end.
pub async fn read_all_from_position_with_limit<S: EventStore + ?Sized>(store: &S) {
    write_log(store).await;
    assert_page(store, 0, 1, &[0], 1, false).await;
    assert_page(store, 4, 3, &[4, 5, 6], 7, false).await;
    assert_page(store, 7, 2, &[7, 8], 9, false).await;
    assert_page(store, 9, 5, &[9], 10, true).await;
    assert_page(store, 10, 5, &[], 10, true).await;
    for from in [11, 1000] {
        let page = ok(
            "read_all",
            store.read_all(ReadAll::from(Position(from), 5)).await,
        );
        assert!(
            page.events.is_empty(),
            "read_all from {from}, past the end, has no events"
        );
        assert!(
            page.end_of_log,
            "read_all from {from}, past the end, is at its end"
        );
    }
}

fn prefix(prefix: &str) -> AllFilter {
    AllFilter {
        stream_prefix: Some(prefix.into()),
        ..AllFilter::default()
    }
}

fn category(category: &str) -> AllFilter {
    AllFilter {
        category: Some(category.into()),
        ..AllFilter::default()
    }
}

fn types(types: &[&str]) -> AllFilter {
    AllFilter {
        event_types: types.iter().map(|t| t.to_string()).collect(),
        ..AllFilter::default()
    }
}

/// Reads with `filter` in several page sizes; each must return exactly `expected`.
async fn assert_filter<S: EventStore + ?Sized>(store: &S, filter: AllFilter, expected: &[u64]) {
    for page_events in [1, 2, 3, 100] {
        let events = read_filtered(store, &filter, page_events, expected).await;
        for event in &events {
            let (stream, event_type) = LOG[event.position.get() as usize];
            assert_eq!(
                (event.stream.as_str(), event.event_type.as_str()),
                (stream, event_type),
                "{filter:?}: the event at position {}",
                event.position
            );
        }
    }
}

/// A stream prefix keeps events of the streams whose names start with it (a plain
/// string prefix: `order` also matches `orders-archive`).
pub async fn read_all_filters_by_stream_prefix<S: EventStore + ?Sized>(store: &S) {
    write_log(store).await;
    assert_filter(store, AllFilter::default(), &(0..10).collect::<Vec<_>>()).await;
    assert_filter(store, prefix("order-"), &[0, 2, 4, 7, 9]).await;
    assert_filter(store, prefix("order"), &[0, 2, 3, 4, 5, 7, 9]).await;
    assert_filter(store, prefix("order-2"), &[2, 7]).await;
    assert_filter(store, prefix("invoice-1"), &[1, 6]).await;
    assert_filter(store, prefix("s"), &[8]).await;
    assert_filter(store, prefix("Order"), &[]).await;
    assert_filter(store, prefix("nothing"), &[]).await;
}

/// A category keeps events of the streams whose name before the first `-` is the
/// category; a name without `-` is its own category.
pub async fn read_all_filters_by_category<S: EventStore + ?Sized>(store: &S) {
    write_log(store).await;
    assert_filter(store, category("order"), &[0, 2, 4, 5, 7, 9]).await;
    assert_filter(store, category("orders"), &[3]).await;
    assert_filter(store, category("invoice"), &[1, 6]).await;
    assert_filter(store, category("stock"), &[8]).await;
    assert_filter(store, category("ord"), &[]).await;
    assert_filter(store, category("order-1"), &[]).await;
}

/// A list of event types keeps events of any of those types.
pub async fn read_all_filters_by_event_types<S: EventStore + ?Sized>(store: &S) {
    write_log(store).await;
    assert_filter(store, types(&["OrderPlaced"]), &[0, 2, 7]).await;
    assert_filter(store, types(&["OrderPlaced", "InvoicePaid"]), &[0, 2, 6, 7]).await;
    assert_filter(store, types(&["InvoicePaid", "OrderPlaced"]), &[0, 2, 6, 7]).await;
    assert_filter(store, types(&["StockCounted"]), &[8]).await;
    assert_filter(store, types(&["orderplaced"]), &[]).await;
    assert_filter(store, types(&["Nothing", "Happened"]), &[]).await;
}

/// Filters combine: every criterion that is set must match.
pub async fn read_all_combined_filters<S: EventStore + ?Sized>(store: &S) {
    write_log(store).await;
    let combined = |prefix: Option<&str>, category: Option<&str>, types: &[&str]| AllFilter {
        stream_prefix: prefix.map(str::to_string),
        category: category.map(str::to_string),
        event_types: types.iter().map(|t| t.to_string()).collect(),
    };
    assert_filter(
        store,
        combined(None, Some("order"), &["OrderPlaced", "OrderShipped"]),
        &[0, 2, 4, 7],
    )
    .await;
    assert_filter(
        store,
        combined(Some("order-2"), None, &["OrderPlaced"]),
        &[2, 7],
    )
    .await;
    assert_filter(store, combined(Some("order"), Some("orders"), &[]), &[3]).await;
    assert_filter(store, combined(Some("order-"), Some("invoice"), &[]), &[]).await;
    assert_filter(
        store,
        combined(Some("order-1"), Some("order"), &["OrderCancelled"]),
        &[9],
    )
    .await;
    assert_filter(
        store,
        combined(Some("invoice"), Some("invoice"), &["OrderPlaced"]),
        &[],
    )
    .await;
}

/// With a filter, `next` moves past the events that were skipped, so paging never
/// reads them again and ends just past the head; it never moves past a matching
/// event it did not return.
pub async fn read_all_next_advances_past_skipped_events<S: EventStore + ?Sized>(store: &S) {
    write_log(store).await;
    // Paging until end_of_log checks `next` against the matches on every page.
    assert_filter(store, types(&["StockCounted"]), &[8]).await;
    assert_filter(store, types(&["Nothing"]), &[]).await;
    assert_filter(store, category("order"), &[0, 2, 4, 5, 7, 9]).await;

    let page = ok(
        "read_all",
        store
            .read_all(ReadAll::from(Position(0), 1).filtered(types(&["OrderPlaced"])))
            .await,
    );
    let got: Vec<u64> = page.events.iter().map(|e| e.position.get()).collect();
    assert_eq!(got, [0], "the first page of OrderPlaced holds position 0");
    assert!(
        page.next > Position(0) && page.next <= Position(2),
        "after returning position 0, next ({}) lies past it and not past position 2, the next match",
        page.next
    );
    assert!(!page.end_of_log, "matching events remain");

    let page = ok(
        "read_all",
        store
            .read_all(ReadAll::from(Position(9), 10).filtered(types(&["StockCounted"])))
            .await,
    );
    assert!(page.events.is_empty(), "nothing matches from position 9 on");
    assert_eq!(
        page.next,
        Position(10),
        "next skips the non-matching event 9"
    );
    assert!(page.end_of_log, "the page reached the end of the log");
}
