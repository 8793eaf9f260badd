//! The auction "questions" domain for projection tests: buyers ask, sellers answer
//! and read; the read models are the questions and the unread count per seller, in
//! SQLite. Faults can be injected at a position, per generation.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventfold::projection::{
    Context, HandlerError, Mode, Projection, ProjectionStatus, RetryPolicy, SqliteReadModel, Tables,
};
use eventfold::{DomainEvent, EventStore, EventType, ExpectedVersion, Position, RecordedEvent};
use rusqlite::{Transaction, params};
use serde::{Deserialize, Serialize};

/// Every wait in these tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
#[expect(
    clippy::enum_variant_names,
    reason = "event type names are stored; each is a full past-tense fact"
)]
pub enum QuestionEvent {
    QuestionAsked {
        question: String,
        seller: String,
        buyer: String,
    },
    QuestionAnswered {
        question: String,
    },
    QuestionRead {
        question: String,
        seller: String,
    },
}

impl DomainEvent for QuestionEvent {
    const TYPES: &'static [EventType] = &[
        EventType::new("QuestionAsked", 1),
        EventType::new("QuestionAnswered", 1),
        EventType::new("QuestionRead", 1),
    ];
}

pub fn asked(question: &str, seller: &str) -> QuestionEvent {
    QuestionEvent::QuestionAsked {
        question: question.into(),
        seller: seller.into(),
        buyer: "buyer-1".into(),
    }
}

/// A deterministic workload: `n` events over a few auctions and sellers.
pub fn workload(start: usize, n: usize) -> Vec<(String, QuestionEvent)> {
    (start..start + n)
        .map(|i| {
            let question = format!("q{}", i / 3);
            let seller = format!("seller-{}", (i / 3) % 4);
            let stream = format!("auction-{}", (i / 3) % 5);
            // Even questions are read, then answered; odd ones answered twice (so
            // the unread count of version 2 differs from version 1).
            let event = match (i % 3, (i / 3) % 2) {
                (0, _) => asked(&question, &seller),
                (1, 0) => QuestionEvent::QuestionRead { question, seller },
                _ => QuestionEvent::QuestionAnswered { question },
            };
            (stream, event)
        })
        .collect()
}

/// Appends the events, one append each; returns the position of the last.
pub async fn append(store: &dyn EventStore, events: &[(String, QuestionEvent)]) -> Position {
    let mut last = Position(0);
    for (stream, event) in events {
        let written = store
            .append(stream, ExpectedVersion::Any, vec![event.encode().unwrap()])
            .await
            .unwrap();
        last = written.position;
    }
    last
}

/// The unread count per seller that the events imply (v1: asked +1, read -1; v2 also
/// counts an answer as reading).
pub fn expected_unread(events: &[(String, QuestionEvent)], version: u32) -> BTreeMap<String, i64> {
    let mut unread = BTreeMap::new();
    let mut seller_of = BTreeMap::new();
    let mut read = std::collections::BTreeSet::new();
    for (_, event) in events {
        match event {
            QuestionEvent::QuestionAsked {
                question, seller, ..
            } => {
                seller_of.insert(question.clone(), seller.clone());
                *unread.entry(seller.clone()).or_insert(0) += 1;
            }
            QuestionEvent::QuestionRead { question, seller } => {
                if read.insert(question.clone()) {
                    *unread.entry(seller.clone()).or_insert(0) -= 1;
                }
            }
            QuestionEvent::QuestionAnswered { question } => {
                if version >= 2
                    && read.insert(question.clone())
                    && let Some(seller) = seller_of.get(question)
                {
                    *unread.entry(seller.clone()).or_insert(0) -= 1;
                }
            }
        }
    }
    unread
}

/// Faults to inject: the handler fails at `position` (in `generation`, or any when 0)
/// while `hold` is set or `times` is above 0.
#[derive(Debug, Default)]
pub struct Faults {
    pub position: AtomicU64,
    pub generation: AtomicU64,
    pub times: AtomicU32,
    pub hold: AtomicBool,
}

impl Faults {
    pub fn none() -> Arc<Self> {
        let faults = Faults::default();
        faults.position.store(u64::MAX, Ordering::SeqCst);
        Arc::new(faults)
    }

    pub fn fail_at(&self, position: Position, times: u32) {
        self.position.store(position.get(), Ordering::SeqCst);
        self.times.store(times, Ordering::SeqCst);
    }

    pub fn hold_at(&self, generation: u64, position: Position) {
        self.generation.store(generation, Ordering::SeqCst);
        self.position.store(position.get(), Ordering::SeqCst);
        self.hold.store(true, Ordering::SeqCst);
    }

    /// Stops holding; the next `times` attempts still fail.
    pub fn release_after(&self, times: u32) {
        self.times.store(times, Ordering::SeqCst);
        self.hold.store(false, Ordering::SeqCst);
    }

    pub fn release(&self) {
        self.hold.store(false, Ordering::SeqCst);
        self.times.store(0, Ordering::SeqCst);
    }

    fn check(&self, event: &RecordedEvent, tables: Tables) -> Result<(), HandlerError> {
        if event.position.get() != self.position.load(Ordering::SeqCst) {
            return Ok(());
        }
        let generation = self.generation.load(Ordering::SeqCst);
        if generation != 0 && generation != tables.generation() {
            return Ok(());
        }
        if self.hold.load(Ordering::SeqCst) {
            return Err(format!("injected fault at position {} (held)", event.position).into());
        }
        let left = self.times.load(Ordering::SeqCst);
        if left > 0 {
            self.times.store(left - 1, Ordering::SeqCst);
            return Err(format!("injected fault at position {}", event.position).into());
        }
        Ok(())
    }
}

/// What handlers saw: (generation, position, mode).
pub type Seen = Arc<Mutex<Vec<(u64, u64, Mode)>>>;

/// The questions of each seller, with an email to the seller for each new question.
pub struct Questions {
    pub faults: Arc<Faults>,
    pub seen: Seen,
    /// Whether a new question records an email (an effect).
    pub emails: bool,
}

impl Questions {
    pub fn new(faults: Arc<Faults>) -> Self {
        Questions {
            faults,
            seen: Seen::default(),
            emails: true,
        }
    }

    /// Without emails: a group with no effects writes nothing to the store (no effect
    /// ledger), so the log holds only the events a test appends, at the positions it
    /// counts on.
    pub fn without_emails(faults: Arc<Faults>) -> Self {
        Questions {
            emails: false,
            ..Questions::new(faults)
        }
    }
}

impl Projection<SqliteReadModel> for Questions {
    fn name(&self) -> &str {
        "questions"
    }

    fn tables(&self) -> &[&str] {
        &["questions"]
    }

    fn setup(&self, tx: &mut Transaction<'_>, tables: &Tables) -> Result<(), HandlerError> {
        tx.execute_batch(&format!(
            "CREATE TABLE {} (question TEXT PRIMARY KEY, seller TEXT NOT NULL, answered INTEGER NOT NULL)",
            tables.name("questions")
        ))?;
        Ok(())
    }

    fn apply(
        &self,
        tx: &mut Transaction<'_>,
        event: &RecordedEvent,
        ctx: &mut Context<'_>,
    ) -> Result<(), HandlerError> {
        self.faults.check(event, ctx.tables())?;
        self.seen.lock().unwrap().push((
            ctx.tables().generation(),
            event.position.get(),
            ctx.mode(),
        ));
        let table = ctx.table("questions");
        match QuestionEvent::decode(event)? {
            Some(QuestionEvent::QuestionAsked {
                question, seller, ..
            }) => {
                tx.prepare_cached(&format!(
                    "INSERT INTO {table} (question, seller, answered) VALUES (?1, ?2, 0)"
                ))?
                .execute(params![question, seller])?;
                if self.emails {
                    ctx.effect(
                        format!("email:{seller}"),
                        serde_json::json!({ "to": seller, "question": question }),
                    );
                }
            }
            Some(QuestionEvent::QuestionAnswered { question }) => {
                tx.prepare_cached(&format!(
                    "UPDATE {table} SET answered = 1 WHERE question = ?1"
                ))?
                .execute(params![question])?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// The unread-questions count per seller. Version 2 counts an answer as reading.
pub struct UnreadCount {
    pub version: u32,
}

impl Projection<SqliteReadModel> for UnreadCount {
    fn name(&self) -> &str {
        "unread-count"
    }

    fn version(&self) -> u32 {
        self.version
    }

    fn tables(&self) -> &[&str] {
        &["unread", "unread_questions"]
    }

    fn setup(&self, tx: &mut Transaction<'_>, tables: &Tables) -> Result<(), HandlerError> {
        tx.execute_batch(&format!(
            "CREATE TABLE {} (seller TEXT PRIMARY KEY, count INTEGER NOT NULL);
             CREATE TABLE {} (question TEXT PRIMARY KEY, seller TEXT NOT NULL);",
            tables.name("unread"),
            tables.name("unread_questions"),
        ))?;
        Ok(())
    }

    fn apply(
        &self,
        tx: &mut Transaction<'_>,
        event: &RecordedEvent,
        ctx: &mut Context<'_>,
    ) -> Result<(), HandlerError> {
        let unread = ctx.table("unread");
        let questions = ctx.table("unread_questions");
        let mark_read = |tx: &mut Transaction<'_>, question: &str| -> rusqlite::Result<()> {
            // Statements are prepared once per generation (the table names are fixed).
            let seller: Option<String> = tx
                .prepare_cached(&format!(
                    "DELETE FROM {questions} WHERE question = ?1 RETURNING seller"
                ))?
                .query_row(params![question], |row| row.get(0))
                .map(Some)
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(None),
                    e => Err(e),
                })?;
            if let Some(seller) = seller {
                tx.prepare_cached(&format!(
                    "UPDATE {unread} SET count = count - 1 WHERE seller = ?1"
                ))?
                .execute(params![seller])?;
            }
            Ok(())
        };
        match QuestionEvent::decode(event)? {
            Some(QuestionEvent::QuestionAsked {
                question, seller, ..
            }) => {
                tx.prepare_cached(&format!(
                    "INSERT INTO {questions} (question, seller) VALUES (?1, ?2)"
                ))?
                .execute(params![question, seller])?;
                tx.prepare_cached(&format!(
                    "INSERT INTO {unread} (seller, count) VALUES (?1, 1)
                         ON CONFLICT (seller) DO UPDATE SET count = count + 1"
                ))?
                .execute(params![seller])?;
            }
            Some(QuestionEvent::QuestionRead { question, .. }) => mark_read(tx, &question)?,
            Some(QuestionEvent::QuestionAnswered { question }) if self.version >= 2 => {
                mark_read(tx, &question)?
            }
            _ => {}
        }
        Ok(())
    }
}

/// The unread counts as readers see them (through the view).
pub fn read_unread(connection: &rusqlite::Connection) -> BTreeMap<String, i64> {
    let mut statement = connection
        .prepare("SELECT seller, count FROM unread")
        .unwrap();
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Every row of a table or view, as text, sorted.
pub fn dump(connection: &rusqlite::Connection, table: &str) -> Vec<String> {
    let mut statement = connection
        .prepare(&format!("SELECT * FROM \"{table}\""))
        .unwrap();
    let columns = statement.column_count();
    let mut rows: Vec<String> = statement
        .query_map([], |row| {
            let mut text = Vec::new();
            for i in 0..columns {
                let value: rusqlite::types::Value = row.get(i)?;
                text.push(format!("{value:?}"));
            }
            Ok(text.join("|"))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    rows.sort();
    rows
}

pub fn table_exists(connection: &rusqlite::Connection, name: &str) -> bool {
    connection
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = ?1",
            params![name],
            |row| row.get::<_, i64>(0),
        )
        .unwrap()
        == 1
}

/// Fast retries for tests.
pub fn quick_retry(attempts_max: u32) -> RetryPolicy {
    RetryPolicy {
        first_delay: Duration::from_millis(2),
        max_delay: Duration::from_millis(20),
        attempts_max,
    }
}

/// Waits (bounded) for a condition on the status.
pub async fn wait_status(
    watch: &mut tokio::sync::watch::Receiver<ProjectionStatus>,
    what: &str,
    done: impl FnMut(&ProjectionStatus) -> bool,
) -> ProjectionStatus {
    let current = watch.borrow().clone();
    let result = tokio::time::timeout(WAIT, watch.wait_for(done))
        .await
        .map(|found| found.map(|status| status.clone()));
    match result {
        Ok(Ok(status)) => status,
        Ok(Err(_)) => panic!("status channel closed while waiting for {what}"),
        Err(_) => panic!(
            "timed out waiting for {what}; status was {current:#?}, now {:#?}",
            watch.borrow()
        ),
    }
}

/// Runs a future with the tests' time limit.
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}
