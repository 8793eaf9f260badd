//! `list_streams` answered from the `(stream, revision)` index agrees with the
//! reference model for names that sort around the system streams' `$` block, in byte
//! order, page by page. Needs `EVENTFOLD_TEST_POSTGRES_URL`.

mod common;

use eventfold_core::{EventData, EventStore, ExpectedVersion, InMemoryStore, StreamWrite};

use common::{TestSchema, database_url, runtime};

const NAMES: &[&str] = &[
    " spaced-1",
    "!bang-1",
    "#hash-1",
    "$$order-1",
    "$persistent-g",
    "$schemas",
    "%pct-1",
    "Zeta-1",
    "a",
    "a-1",
    "a-10",
    "a-2",
    "b-1",
    "order-1",
    "ä-1",
    "注文-1",
];

#[test]
fn stream_listings_agree_with_the_model_around_system_streams() {
    let Some(url) = database_url() else { return };
    runtime().block_on(async {
        let schema = TestSchema::new(&url);
        let store = schema.store().await;
        let model = InMemoryStore::new();
        for (i, name) in NAMES.iter().enumerate() {
            let events: Vec<_> = (0..=i % 3)
                .map(|n| EventData::json("Named", &n).expect("event"))
                .collect();
            // System streams take only system writes (eventfold's own layers).
            let write = if name.starts_with('$') {
                StreamWrite::system(*name, ExpectedVersion::Any, events)
            } else {
                StreamWrite::new(*name, ExpectedVersion::Any, events)
            };
            for target in [&store as &dyn EventStore, &model] {
                target
                    .append_multi(vec![write.clone()])
                    .await
                    .unwrap_or_else(|e| panic!("append to {name:?}: {e}"));
            }
        }
        let prefixes = ["", "a", "a-", "$", "$$", "!", "%", "注", "zz"];
        let afters = [
            None,
            Some(""),
            Some("#hash-1"),
            Some("a-1"),
            Some("$$order-1"),
            Some("~"),
        ];
        for prefix in prefixes {
            for after in afters {
                for limit in [0, 1, 2, 100] {
                    let expected = model
                        .list_streams(prefix, after, limit)
                        .await
                        .expect("model");
                    let listed = store
                        .list_streams(prefix, after, limit)
                        .await
                        .expect("list");
                    assert_eq!(
                        listed, expected,
                        "list_streams({prefix:?}, {after:?}, {limit})"
                    );
                }
            }
        }
        // Paging through everything, two at a time, gives the whole listing.
        let mut paged = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = store
                .list_streams("", after.as_deref(), 2)
                .await
                .expect("page");
            let Some(last) = page.last() else { break };
            after = Some(last.stream.clone());
            paged.extend(page);
        }
        assert_eq!(
            paged,
            model.list_streams("", None, 100).await.expect("model")
        );
    });
}
