//! Two `PostgresStore`s on one schema (two nodes on one database) racing writers on
//! one stream with expected versions: exactly one append wins each revision, and both
//! nodes read the same gap-free `$all`. Needs `EVENTFOLD_TEST_POSTGRES_URL`.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use eventfold_core::{Error, EventData, EventStore, ExpectedVersion, Position, ReadAll, Revision};
use uuid::Uuid;

use common::{TestSchema, database_url, runtime, within};

const WRITERS_PER_NODE: usize = 4;
const WINS_PER_WRITER: usize = 15;

#[test]
fn two_nodes_racing_on_one_stream_write_each_revision_exactly_once() {
    let Some(url) = database_url() else { return };
    runtime().block_on(async {
        let schema = TestSchema::new(&url);
        let nodes = [
            Arc::new(schema.store().await),
            Arc::new(schema.store().await),
        ];

        let writers: Vec<_> = (0..2 * WRITERS_PER_NODE)
            .map(|w| {
                let store = nodes[w % 2].clone();
                tokio::spawn(async move {
                    let mut wins = Vec::new();
                    let mut conflicts = 0u64;
                    while wins.len() < WINS_PER_WRITER {
                        let current = store.stream_revision("race-1").await.expect("revision");
                        let expected =
                            current.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
                        let id = Uuid::new_v4();
                        let event = EventData::json("Raced", &serde_json::json!({ "writer": w }))
                            .expect("event")
                            .with_id(id);
                        match store.append("race-1", expected, vec![event]).await {
                            Ok(written) => wins.push((written.first_revision, id)),
                            Err(Error::WrongExpectedVersion { actual, .. }) => {
                                assert_ne!(actual, current, "a refusal reports a changed stream");
                                conflicts += 1;
                            }
                            Err(e) => panic!("writer {w}: unexpected error {e}"),
                        }
                    }
                    (wins, conflicts)
                })
            })
            .collect();

        let mut winner_of: BTreeMap<Revision, Uuid> = BTreeMap::new();
        let mut conflicts = 0;
        for writer in writers {
            let (wins, refused) = within("a writer to finish", writer)
                .await
                .expect("writer task");
            conflicts += refused;
            for (revision, id) in wins {
                assert!(
                    winner_of.insert(revision, id).is_none(),
                    "two appends both won revision {revision}"
                );
            }
        }
        let total = 2 * WRITERS_PER_NODE * WINS_PER_WRITER;
        assert_eq!(
            winner_of.keys().copied().collect::<Vec<_>>(),
            (0..total as u64).map(Revision).collect::<Vec<_>>(),
            "every revision was won exactly once"
        );
        assert!(
            conflicts > 0,
            "the writers never raced; the test proves nothing"
        );

        // The stream holds exactly the winners, and both nodes read the same log.
        for node in &nodes {
            let events = node
                .read_stream("race-1", eventfold_core::ReadStream::forward())
                .await
                .expect("read the stream");
            let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
            assert_eq!(ids, winner_of.values().copied().collect::<Vec<_>>());
        }
        let logs: Vec<Vec<(u64, Uuid)>> = read_logs(&nodes).await;
        assert_eq!(logs[0], logs[1], "the two nodes read different logs");
        let positions: Vec<u64> = logs[0].iter().map(|(p, _)| *p).collect();
        assert_eq!(
            positions,
            (0..total as u64).collect::<Vec<_>>(),
            "positions have gaps"
        );
    });
}

/// `$all` as read through each node, in pages of 7.
async fn read_logs(nodes: &[Arc<eventfold_postgres::PostgresStore>]) -> Vec<Vec<(u64, Uuid)>> {
    let mut logs = Vec::new();
    for node in nodes {
        let mut log = Vec::new();
        let mut next = Position::START;
        loop {
            let page = node
                .read_all(ReadAll::from(next, 7))
                .await
                .expect("read $all");
            log.extend(page.events.iter().map(|e| (e.position.get(), e.id)));
            next = page.next;
            if page.end_of_log {
                break;
            }
        }
        logs.push(log);
    }
    logs
}
