//! Two `PostgresStore`s on one schema (two nodes on one database) racing writers on
//! one stream with expected versions: exactly one append wins each revision, and both
//! nodes read the same gap-free `$all`. Writers that expect any version all win, each
//! event once at the revision its answer names, and a re-send writes nothing. Needs
//! `EVENTFOLD_TEST_POSTGRES_URL`.

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use eventfold_core::{Error, EventData, EventStore, ExpectedVersion, Position, ReadAll, Revision};
use eventfold_postgres::PostgresStore;
use tokio::task::JoinHandle;
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

        let writers = spawn_writers(&nodes, |store, w| async move {
            let mut wins = Vec::new();
            let mut conflicts = 0u64;
            while wins.len() < WINS_PER_WRITER {
                let current = store.stream_revision("race-1").await.expect("revision");
                let expected = current.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
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
        });

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

/// A lone append reads the stream's last event before it waits for the head's lock; a
/// commit of the other node in between must not let two events share a revision, nor
/// lose one: each append takes the slow path when its statement's view was stale.
#[test]
fn two_nodes_appending_with_any_expectation_write_every_event_once() {
    let Some(url) = database_url() else { return };
    runtime().block_on(async {
        let schema = TestSchema::new(&url);
        let nodes = [
            Arc::new(schema.store().await),
            Arc::new(schema.store().await),
        ];
        let writers = spawn_writers(&nodes, |store, w| async move {
            let mut written = Vec::new();
            for _ in 0..WINS_PER_WRITER {
                let event = EventData::json("Any", &serde_json::json!({ "writer": w }))
                    .expect("event")
                    .with_id(Uuid::new_v4());
                let result = store
                    .append("race-any", ExpectedVersion::Any, vec![event.clone()])
                    .await
                    .unwrap_or_else(|e| panic!("writer {w}: {e}"));
                written.push((event, result));
            }
            written
        });
        let mut written = Vec::new();
        for writer in writers {
            written.extend(
                within("a writer to finish", writer)
                    .await
                    .expect("writer task"),
            );
        }

        let total = 2 * WRITERS_PER_NODE * WINS_PER_WRITER;
        let stored = nodes[0]
            .read_stream("race-any", eventfold_core::ReadStream::forward())
            .await
            .expect("read the stream");
        assert_eq!(stored.len(), total, "every append wrote one event");
        for (i, event) in stored.iter().enumerate() {
            assert_eq!(event.revision, Revision(i as u64), "revisions are dense");
        }
        let by_id: BTreeMap<Uuid, (Revision, Position)> = stored
            .iter()
            .map(|e| (e.id, (e.revision, e.position)))
            .collect();
        assert_eq!(by_id.len(), total, "an event was written twice");
        for (event, result) in &written {
            let id = event.id.expect("an id");
            assert_eq!(
                by_id.get(&id),
                Some(&(result.first_revision, result.position)),
                "the answer to {id} names where it is"
            );
        }
        let logs = read_logs(&nodes).await;
        assert_eq!(logs[0], logs[1], "the two nodes read different logs");
        assert_eq!(
            logs[0].iter().map(|(p, _)| *p).collect::<Vec<_>>(),
            (0..total as u64).collect::<Vec<_>>(),
            "positions have gaps"
        );

        // A re-send through the other node is answered with the first answer.
        let (event, result) = &written[0];
        let again = nodes[1]
            .append("race-any", ExpectedVersion::Any, vec![event.clone()])
            .await
            .expect("re-send");
        assert_eq!(&again, result);
        assert_eq!(read_logs(&nodes).await[0].len(), total, "a re-send wrote");
    });
}

/// `WRITERS_PER_NODE` tasks on each node, writer `w` on node `w % 2`, each running
/// `write(node, w)`.
fn spawn_writers<F, Fut>(nodes: &[Arc<PostgresStore>; 2], write: F) -> Vec<JoinHandle<Fut::Output>>
where
    F: Fn(Arc<PostgresStore>, usize) -> Fut,
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    (0..2 * WRITERS_PER_NODE)
        .map(|w| tokio::spawn(write(nodes[w % 2].clone(), w)))
        .collect()
}

/// `$all` as read through each node, in pages of 7.
async fn read_logs(nodes: &[Arc<PostgresStore>]) -> Vec<Vec<(u64, Uuid)>> {
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
