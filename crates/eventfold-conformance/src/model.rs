//! Model-based property test: random sequences of operations applied to a backend and
//! to [`InMemoryStore`] (the reference model) must get the same answers.
//!
//! The sequences mix appends to a few streams with every kind of expected version
//! (exact ones near the true revision, sometimes wrong), re-sends of earlier appends
//! (idempotency), reused event ids (conflicts), multi-stream appends, reads of streams
//! and of `$all` with filters, and reopens of the backend (recovery).
//!
//! A backend implements [`Backend`]; its reopen closes the store and opens it again
//! from its storage, while the model keeps its state, so every acknowledged write must
//! survive.
//!
//! ```
//! use eventfold_core::InMemoryStore;
//!
//! // In a backend's test crate this is the body of a `#[test]` function.
//! eventfold_conformance::model::run_model_test_with(
//!     eventfold_conformance::model::ProptestConfig {
//!         cases: 4,
//!         ..eventfold_conformance::model::default_config()
//!     },
//!     async || InMemoryStore::new(),
//! );
//! ```
//!
//! Events are compared field by field (JSON as values), ignoring `recorded_at`. Most
//! events carry ids from the generator; for the few that leave the id to the store,
//! the backend's id must be a UUID v7 and must stay the same on every later read.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;

use eventfold_core::{
    AllFilter, Error, EventData, EventStore, ExpectedVersion, InMemoryStore, Position, ReadAll,
    ReadStream, RecordedEvent, Result, Revision, StreamWrite,
};
use eventfold_wire::ErrorCode;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use serde_json::json;
use uuid::Uuid;

pub use proptest::test_runner::Config as ProptestConfig;

/// The streams the generated operations write to and read from.
pub const STREAMS: [&str; 4] = ["order-1", "orders-2", "invoice-1", "stock"];
/// The event types of generated events.
pub const EVENT_TYPES: [&str; 3] = ["Placed", "Paid", "Shipped"];
/// Stream prefixes of generated `$all` filters.
pub const PREFIXES: [&str; 4] = ["order", "order-", "inv", "s"];
/// Categories of generated `$all` filters.
pub const CATEGORIES: [&str; 4] = ["order", "orders", "invoice", "stock"];

/// Most operations in one generated sequence.
pub const OPS_MAX: usize = 40;
/// Proptest cases run by [`run_model_test`] unless `PROPTEST_CASES` says otherwise.
pub const CASES_DEFAULT: u32 = 64;
/// Page size used when the check reads the whole log.
const PAGE_EVENTS: u64 = 16;

/// A backend under test, as the model check drives it.
///
/// ```
/// use eventfold_conformance::model::Backend;
/// use eventfold_core::InMemoryStore;
///
/// /// A store that "restarts" by keeping its memory, like `InMemoryStore` does.
/// struct Remembering(InMemoryStore);
///
/// impl Backend for Remembering {
///     type Store = InMemoryStore;
///     fn store(&self) -> &InMemoryStore {
///         &self.0
///     }
///     async fn reopen(&mut self) {}
/// }
/// ```
pub trait Backend {
    /// The store under test.
    type Store: EventStore;

    /// The store as it is now (after the last reopen).
    fn store(&self) -> &Self::Store;

    /// Closes the store and opens it again from its storage (a durable backend reads
    /// its data directory or database again); panics when it cannot.
    fn reopen(&mut self) -> impl Future<Output = ()>;
}

/// The in-memory store keeps its state across a "reopen": there is nothing to recover.
impl Backend for InMemoryStore {
    type Store = InMemoryStore;

    fn store(&self) -> &InMemoryStore {
        self
    }

    async fn reopen(&mut self) {}
}

/// One generated operation. Indexes (`stream`, `event_type`, …) are taken modulo the
/// length of the list they index, so any value is valid.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// `append` to one stream.
    Append(WriteSpec),
    /// `append_multi`; now and then the same stream appears twice (which must be
    /// refused).
    AppendMulti(Vec<WriteSpec>),
    /// Sends again the writes of an earlier append operation (`back` counts from the
    /// latest one), with the same event ids.
    Resend {
        /// Which earlier append: 0 is the latest.
        back: u8,
        /// The expected version of the re-send.
        expected: ResendExpected,
    },
    /// `read_stream`.
    ReadStream {
        /// Index into [`STREAMS`].
        stream: u8,
        /// Read backward instead of forward.
        backward: bool,
        /// First revision, `None` for the start (or the end, backward).
        from: Option<u8>,
        /// Most events, `None` for all.
        limit: Option<u8>,
    },
    /// `read_all`: without a filter one page, compared exactly; with a filter every
    /// page until the end of the log, compared as one list.
    ReadAll {
        /// First position (taken modulo the log's length plus 3, so it may lie past
        /// the end).
        from: u8,
        /// Page size, 1 to 8.
        limit: u8,
        /// The filter.
        filter: FilterSpec,
    },
    /// Closes the backend and opens it again.
    Reopen,
}

/// One stream's write in a generated append.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteSpec {
    /// Index into [`STREAMS`].
    pub stream: u8,
    /// The expected version, resolved against the model's state when applied.
    pub expected: ExpectedSpec,
    /// The events, 1 to 4.
    pub events: Vec<EventSpec>,
}

/// An expected version as generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedSpec {
    /// `any`.
    Any,
    /// `no_stream`.
    NoStream,
    /// `stream_exists`.
    StreamExists,
    /// What is true now: the stream's exact last revision, or `no_stream` when it does
    /// not exist (the writer that read before writing).
    Current,
    /// An exact revision: the stream's true last revision plus this offset (not below
    /// 0); on a missing stream, the offset itself (which is always wrong).
    Exact(i8),
}

/// The expected version of a re-send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResendExpected {
    /// The same as the original append (a retry after a lost answer).
    Same,
    /// `any` for every write.
    Any,
    /// Each stream's current state: its exact last revision, or `no_stream`.
    Current,
}

/// An event as generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventSpec {
    /// How the event gets its id.
    pub id: IdSpec,
    /// Index into [`EVENT_TYPES`].
    pub event_type: u8,
    /// Schema version, 1 to 3.
    pub version: u8,
    /// Goes into the data and the metadata.
    pub payload: u16,
}

/// How a generated event gets its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdSpec {
    /// A new id, never used before in the sequence.
    Fresh,
    /// An id given earlier in the sequence (index modulo their count), to provoke
    /// idempotent replays and conflicts; a fresh one when there is none yet.
    Reuse(u8),
    /// No id: the store generates one.
    Generated,
}

/// A generated `$all` filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterSpec {
    /// No filter.
    None,
    /// Index into [`PREFIXES`].
    Prefix(u8),
    /// Index into [`CATEGORIES`].
    Category(u8),
    /// Indexes into [`EVENT_TYPES`].
    Types(Vec<u8>),
    /// A category and event types together.
    CategoryAndTypes(u8, Vec<u8>),
}

impl FilterSpec {
    fn to_filter(&self) -> AllFilter {
        let types = |indexes: &[u8]| {
            indexes
                .iter()
                .map(|&i| EVENT_TYPES[usize::from(i) % EVENT_TYPES.len()].to_string())
                .collect()
        };
        let mut filter = AllFilter::default();
        match self {
            FilterSpec::None => {}
            FilterSpec::Prefix(i) => {
                filter.stream_prefix = Some(PREFIXES[usize::from(*i) % PREFIXES.len()].into());
            }
            FilterSpec::Category(i) => {
                filter.category = Some(CATEGORIES[usize::from(*i) % CATEGORIES.len()].into());
            }
            FilterSpec::Types(indexes) => filter.event_types = types(indexes),
            FilterSpec::CategoryAndTypes(i, indexes) => {
                filter.category = Some(CATEGORIES[usize::from(*i) % CATEGORIES.len()].into());
                filter.event_types = types(indexes);
            }
        }
        filter
    }
}

fn expected_spec() -> impl Strategy<Value = ExpectedSpec> {
    prop_oneof![
        2 => Just(ExpectedSpec::Any),
        1 => Just(ExpectedSpec::NoStream),
        1 => Just(ExpectedSpec::StreamExists),
        5 => Just(ExpectedSpec::Current),
        1 => Just(ExpectedSpec::Exact(0)),
        2 => (-2i8..=2).prop_map(ExpectedSpec::Exact),
    ]
}

fn event_spec() -> impl Strategy<Value = EventSpec> {
    let id = prop_oneof![
        8 => Just(IdSpec::Fresh),
        1 => any::<u8>().prop_map(IdSpec::Reuse),
        1 => Just(IdSpec::Generated),
    ];
    (id, 0u8..3, 1u8..=3, any::<u16>()).prop_map(|(id, event_type, version, payload)| EventSpec {
        id,
        event_type,
        version,
        payload,
    })
}

fn write_spec() -> impl Strategy<Value = WriteSpec> {
    write_spec_of(1)
}

/// A write of `events_min` to 4 events; 0 makes some of them checks.
fn write_spec_of(events_min: usize) -> impl Strategy<Value = WriteSpec> {
    (0u8..4, expected_spec(), vec(event_spec(), events_min..=4)).prop_map(
        |(stream, expected, events)| WriteSpec {
            stream,
            expected,
            events,
        },
    )
}

fn filter_spec() -> impl Strategy<Value = FilterSpec> {
    prop_oneof![
        3 => Just(FilterSpec::None),
        1 => (0u8..4).prop_map(FilterSpec::Prefix),
        1 => (0u8..4).prop_map(FilterSpec::Category),
        1 => vec(0u8..3, 1..=2).prop_map(FilterSpec::Types),
        1 => (0u8..4, vec(0u8..3, 1..=2))
            .prop_map(|(c, t)| FilterSpec::CategoryAndTypes(c, t)),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let resend_expected = prop_oneof![
        3 => Just(ResendExpected::Same),
        1 => Just(ResendExpected::Any),
        1 => Just(ResendExpected::Current),
    ];
    prop_oneof![
        10 => write_spec().prop_map(Op::Append),
        // A write of no events is a check of its stream.
        3 => (vec(write_spec_of(0), 1..=3), proptest::bool::weighted(0.1))
            .prop_map(|(writes, same_stream_twice)| Op::AppendMulti(if same_stream_twice {
                writes
            } else {
                distinct_streams(writes)
            })),
        4 => (0u8..4, resend_expected)
            .prop_map(|(back, expected)| Op::Resend { back, expected }),
        3 => (0u8..4, any::<bool>(), proptest::option::of(0u8..8), proptest::option::of(1u8..6))
            .prop_map(|(stream, backward, from, limit)| Op::ReadStream {
                stream,
                backward,
                from,
                limit,
            }),
        3 => (any::<u8>(), 1u8..=8, filter_spec())
            .prop_map(|(from, limit, filter)| Op::ReadAll { from, limit, filter }),
        1 => Just(Op::Reopen),
    ]
}

/// Keeps the first write to each stream (a multi-stream append naming a stream twice
/// is refused, which the generator wants only now and then).
fn distinct_streams(writes: Vec<WriteSpec>) -> Vec<WriteSpec> {
    let mut seen = HashSet::new();
    writes
        .into_iter()
        .filter(|w| seen.insert(usize::from(w.stream) % STREAMS.len()))
        .collect()
}

/// Sequences of 1 to [`OPS_MAX`] operations.
pub fn operations() -> impl Strategy<Value = Vec<Op>> {
    vec(op(), 1..=OPS_MAX)
}

/// Where a backend first answered differently from the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// Index of the operation in the sequence (the sequence's length for the final
    /// comparison of the whole state).
    pub step: usize,
    /// The operation, as resolved against the model (streams, ids, expected versions).
    pub op: String,
    /// What differed.
    pub detail: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "backend differs from the model at step {} ({}): {}",
            self.step, self.op, self.detail
        )
    }
}

impl std::error::Error for Mismatch {}

/// Applies `ops` to `backend` and to a fresh [`InMemoryStore`], comparing every answer;
/// ends with a comparison of the whole state. `backend` must start empty.
pub async fn check_against_model<B: Backend>(
    backend: &mut B,
    ops: &[Op],
) -> std::result::Result<(), Mismatch> {
    let mut check = Check::default();
    for (step, op) in ops.iter().enumerate() {
        check
            .apply(backend, op)
            .await
            .map_err(|(op, detail)| Mismatch { step, op, detail })?;
    }
    check
        .compare_state(backend)
        .await
        .map_err(|detail| Mismatch {
            step: ops.len(),
            op: "final state".into(),
            detail,
        })
}

/// The configuration [`run_model_test`] uses: [`CASES_DEFAULT`] cases (or
/// `PROPTEST_CASES`), no regression files.
pub fn default_config() -> ProptestConfig {
    let mut config = ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = CASES_DEFAULT;
    }
    config
}

/// Runs the model property test with [`default_config`]: each case builds a fresh
/// backend with `factory`, inside a tokio runtime, and checks a generated sequence
/// against the model. Panics with the smallest failing sequence.
pub fn run_model_test<F, B>(factory: F)
where
    F: AsyncFn() -> B,
    B: Backend,
{
    run_model_test_with(default_config(), factory);
}

/// [`run_model_test`] with a chosen proptest configuration.
pub fn run_model_test_with<F, B>(config: ProptestConfig, factory: F)
where
    F: AsyncFn() -> B,
    B: Backend,
{
    let runtime = crate::__private::runtime();
    let mut runner = TestRunner::new(config);
    let outcome = runner.run(&operations(), |ops| {
        runtime
            .block_on(async {
                let mut backend = factory().await;
                check_against_model(&mut backend, &ops).await
            })
            .map_err(|mismatch| TestCaseError::fail(mismatch.to_string()))
    });
    if let Err(e) = outcome {
        panic!("model check failed: {e}");
    }
}

/// The state of one check: the model and what the sequence has used so far.
#[derive(Default)]
struct Check {
    model: InMemoryStore,
    /// Ids the sequence gave, in order (what `IdSpec::Reuse` picks from).
    given_ids: Vec<Uuid>,
    given_set: HashSet<Uuid>,
    /// The writes of every append operation so far (what `Op::Resend` re-sends).
    appends: Vec<Vec<StreamWrite>>,
    /// Ids the model generated → ids the backend generated for the same events.
    generated: HashMap<Uuid, Uuid>,
    generated_back: HashMap<Uuid, Uuid>,
}

type Step<T> = std::result::Result<T, (String, String)>;

impl Check {
    async fn apply<B: Backend>(&mut self, backend: &mut B, op: &Op) -> Step<()> {
        match op {
            Op::Append(spec) => {
                let write = self.resolve(spec).await;
                let described = describe(std::slice::from_ref(&write));
                let from_model = self
                    .model
                    .append(&write.stream, write.expected, write.events.clone())
                    .await;
                let from_backend = backend
                    .store()
                    .append(&write.stream, write.expected, write.events.clone())
                    .await;
                self.appends.push(vec![write]);
                compare_outcomes(&from_model, &from_backend).map_err(|d| (described, d))?;
            }
            Op::AppendMulti(specs) => {
                let mut writes = Vec::with_capacity(specs.len());
                for spec in specs {
                    writes.push(self.resolve(spec).await);
                }
                self.append_multi(backend, writes).await?;
            }
            Op::Resend { back, expected } => {
                let Some(index) = self
                    .appends
                    .len()
                    .checked_sub(1 + usize::from(*back) % self.appends.len().max(1))
                else {
                    return Ok(());
                };
                let mut writes = self.appends[index].clone();
                for write in &mut writes {
                    write.expected = match expected {
                        ResendExpected::Same => write.expected,
                        ResendExpected::Any => ExpectedVersion::Any,
                        ResendExpected::Current => self
                            .model_revision(&write.stream)
                            .await
                            .map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact),
                    };
                }
                self.append_multi(backend, writes).await?;
            }
            Op::ReadStream {
                stream,
                backward,
                from,
                limit,
            } => {
                let stream = STREAMS[usize::from(*stream) % STREAMS.len()];
                let mut options = if *backward {
                    ReadStream::backward()
                } else {
                    ReadStream::forward()
                };
                if let Some(from) = from {
                    options = options.from(Revision(u64::from(*from)));
                }
                if let Some(limit) = limit {
                    options = options.limit(u64::from(*limit));
                }
                let described = format!("read_stream({stream}, {options:?})");
                let from_model = self.model.read_stream(stream, options).await;
                let from_backend = backend.store().read_stream(stream, options).await;
                self.compare_reads(&from_model, &from_backend)
                    .map_err(|d| (described, d))?;
            }
            Op::ReadAll {
                from,
                limit,
                filter,
            } => {
                let log_len = self.model_head().await.map_or(0, |p| p.get() + 1);
                let from = Position(u64::from(*from) % (log_len + 3));
                let limit = u64::from(*limit);
                let filter = filter.to_filter();
                let described = format!("read_all(from {from}, limit {limit}, {filter:?})");
                if filter.is_empty() {
                    let options = ReadAll::from(from, limit);
                    let from_model = self.model.read_all(options.clone()).await;
                    let from_backend = backend.store().read_all(options).await;
                    self.compare_page(from_model, from_backend)
                        .map_err(|d| (described, d))?;
                } else {
                    let from_model = read_pages(&self.model, from, limit, &filter, log_len).await;
                    let from_backend =
                        read_pages(backend.store(), from, limit, &filter, log_len).await;
                    let from_model = from_model.map_err(|d| (described.clone(), d))?;
                    let from_backend = from_backend.map_err(|d| (described.clone(), d))?;
                    self.compare_events(&from_model, &from_backend)
                        .map_err(|d| (described, d))?;
                }
            }
            Op::Reopen => {
                // Before as well as after: this pins the ids the backend generated, so
                // that a reopen that changes them is caught.
                self.compare_state(backend)
                    .await
                    .map_err(|d| ("before reopen".to_string(), d))?;
                backend.reopen().await;
                self.compare_state(backend)
                    .await
                    .map_err(|d| ("after reopen".to_string(), d))?;
            }
        }
        let from_model = self.model.head_position().await;
        let from_backend = backend.store().head_position().await;
        compare_outcomes(&from_model, &from_backend)
            .map_err(|d| (format!("head_position after {op:?}"), d))
    }

    async fn append_multi<B: Backend>(
        &mut self,
        backend: &B,
        writes: Vec<StreamWrite>,
    ) -> Step<()> {
        let described = describe(&writes);
        let from_model = self.model.append_multi(writes.clone()).await;
        let from_backend = backend.store().append_multi(writes.clone()).await;
        self.appends.push(writes);
        compare_outcomes(&from_model, &from_backend).map_err(|d| (described, d))
    }

    async fn model_revision(&self, stream: &str) -> Option<Revision> {
        self.model
            .stream_revision(stream)
            .await
            .expect("the model answers")
    }

    async fn model_head(&self) -> Option<Position> {
        self.model.head_position().await.expect("the model answers")
    }

    /// Turns a generated write into a real one, against the model's current state.
    async fn resolve(&mut self, spec: &WriteSpec) -> StreamWrite {
        let stream = STREAMS[usize::from(spec.stream) % STREAMS.len()];
        let actual = self.model_revision(stream).await;
        let expected = match spec.expected {
            ExpectedSpec::Any => ExpectedVersion::Any,
            ExpectedSpec::NoStream => ExpectedVersion::NoStream,
            ExpectedSpec::StreamExists => ExpectedVersion::StreamExists,
            ExpectedSpec::Current => {
                actual.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact)
            }
            ExpectedSpec::Exact(offset) => {
                let base = actual.map_or(0, |r| r.get() as i64);
                ExpectedVersion::Exact(Revision((base + i64::from(offset)).max(0) as u64))
            }
        };
        let events = spec
            .events
            .iter()
            .enumerate()
            .map(|(i, event)| {
                let data = EventData::json(
                    EVENT_TYPES[usize::from(event.event_type) % EVENT_TYPES.len()],
                    &json!({ "payload": event.payload, "index": i }),
                )
                .expect("generated data is JSON")
                .with_version(u32::from(event.version))
                .with_metadata(&json!({ "origin": "model", "tag": event.payload % 7 }))
                .expect("generated metadata is an object");
                match self.id_for(event.id) {
                    Some(id) => data.with_id(id),
                    None => data,
                }
            })
            .collect();
        StreamWrite::new(stream, expected, events)
    }

    fn id_for(&mut self, spec: IdSpec) -> Option<Uuid> {
        match spec {
            IdSpec::Generated => None,
            IdSpec::Reuse(i) if !self.given_ids.is_empty() => {
                Some(self.given_ids[usize::from(i) % self.given_ids.len()])
            }
            IdSpec::Reuse(_) | IdSpec::Fresh => {
                // Deterministic, distinct and shaped like a UUID v4, so that it can
                // never be taken for one the store generated (v7).
                let n = self.given_ids.len() as u128 + 1;
                let id = uuid::Builder::from_random_bytes((n << 64 | n).to_le_bytes()).into_uuid();
                self.given_ids.push(id);
                self.given_set.insert(id);
                Some(id)
            }
        }
    }

    fn compare_reads(
        &mut self,
        model: &Result<Vec<RecordedEvent>>,
        backend: &Result<Vec<RecordedEvent>>,
    ) -> std::result::Result<(), String> {
        match (model, backend) {
            (Ok(model), Ok(backend)) => self.compare_events(model, backend),
            _ => compare_outcomes(
                &model.as_ref().map(Vec::len).map_err(Error::clone),
                &backend.as_ref().map(Vec::len).map_err(Error::clone),
            ),
        }
    }

    fn compare_page(
        &mut self,
        model: Result<eventfold_core::AllSlice>,
        backend: Result<eventfold_core::AllSlice>,
    ) -> std::result::Result<(), String> {
        match (model, backend) {
            (Ok(model), Ok(backend)) => {
                self.compare_events(&model.events, &backend.events)?;
                if (model.next, model.end_of_log) != (backend.next, backend.end_of_log) {
                    return Err(format!(
                        "model: next {} end_of_log {}, backend: next {} end_of_log {}",
                        model.next, model.end_of_log, backend.next, backend.end_of_log
                    ));
                }
                Ok(())
            }
            (model, backend) => compare_outcomes(
                &model.map(|page| page.events.len()),
                &backend.map(|page| page.events.len()),
            ),
        }
    }

    fn compare_events(
        &mut self,
        model: &[RecordedEvent],
        backend: &[RecordedEvent],
    ) -> std::result::Result<(), String> {
        if model.len() != backend.len() {
            return Err(format!(
                "model read {} events, backend {}: model {:?}, backend {:?}",
                model.len(),
                backend.len(),
                places(model),
                places(backend)
            ));
        }
        for (m, b) in model.iter().zip(backend) {
            let place = format!("{}@{} (position {})", m.revision, m.stream, m.position);
            if (&m.stream, m.revision, m.position, &m.event_type, m.version)
                != (&b.stream, b.revision, b.position, &b.event_type, b.version)
            {
                return Err(format!(
                    "at {place}: model has {} {} v{} at {}@{} position {}, backend {} {} v{} at {}@{} position {}",
                    m.id,
                    m.event_type,
                    m.version,
                    m.revision,
                    m.stream,
                    m.position,
                    b.id,
                    b.event_type,
                    b.version,
                    b.revision,
                    b.stream,
                    b.position
                ));
            }
            for (what, m_json, b_json) in [
                ("data", &m.data, &b.data),
                ("metadata", &m.metadata, &b.metadata),
            ] {
                let m_value: serde_json::Value = serde_json::from_slice(m_json)
                    .map_err(|e| format!("at {place}: model {what} is not JSON: {e}"))?;
                let b_value: serde_json::Value = serde_json::from_slice(b_json)
                    .map_err(|e| format!("at {place}: backend {what} is not JSON: {e}"))?;
                if m_value != b_value {
                    return Err(format!(
                        "at {place}: {what} differs: model {m_value}, backend {b_value}"
                    ));
                }
            }
            self.compare_ids(m.id, b.id)
                .map_err(|d| format!("at {place}: {d}"))?;
        }
        Ok(())
    }

    /// Given ids must be equal; a generated id must be a v7 and always the same.
    fn compare_ids(&mut self, model: Uuid, backend: Uuid) -> std::result::Result<(), String> {
        if self.given_set.contains(&model) {
            return if model == backend {
                Ok(())
            } else {
                Err(format!("event id {model} was given, backend has {backend}"))
            };
        }
        if self.given_set.contains(&backend) {
            return Err(format!(
                "backend has given id {backend} where the model generated {model}"
            ));
        }
        if backend.get_version_num() != 7 {
            return Err(format!("generated id {backend} is not a UUID v7"));
        }
        let known_model = *self.generated.entry(model).or_insert(backend);
        let known_backend = *self.generated_back.entry(backend).or_insert(model);
        if known_model != backend || known_backend != model {
            return Err(format!(
                "generated id changed: the event the model calls {model} was {known_model} and is now {backend}"
            ));
        }
        Ok(())
    }

    /// Compares head, stream revisions and the whole log.
    async fn compare_state<B: Backend>(&mut self, backend: &B) -> std::result::Result<(), String> {
        let store = backend.store();
        compare_outcomes(
            &self.model.head_position().await,
            &store.head_position().await,
        )
        .map_err(|d| format!("head_position: {d}"))?;
        for stream in STREAMS {
            compare_outcomes(
                &self.model.stream_revision(stream).await,
                &store.stream_revision(stream).await,
            )
            .map_err(|d| format!("stream_revision({stream}): {d}"))?;
            compare_outcomes(
                &self.model.stream_exists(stream).await,
                &store.stream_exists(stream).await,
            )
            .map_err(|d| format!("stream_exists({stream}): {d}"))?;
        }
        let log_len = self.model_head().await.map_or(0, |p| p.get() + 1);
        let everything = AllFilter::default();
        let model = read_pages(
            &self.model,
            Position::START,
            PAGE_EVENTS,
            &everything,
            log_len,
        )
        .await?;
        let from_backend =
            read_pages(store, Position::START, PAGE_EVENTS, &everything, log_len).await?;
        self.compare_events(&model, &from_backend)
            .map_err(|d| format!("the whole log: {d}"))
    }
}

/// Reads `$all` from `from` with `filter` in pages of `limit` until the end of the log.
async fn read_pages<S: EventStore + ?Sized>(
    store: &S,
    from: Position,
    limit: u64,
    filter: &AllFilter,
    log_len: u64,
) -> std::result::Result<Vec<RecordedEvent>, String> {
    let mut events = Vec::new();
    let mut from = from;
    // Every page that is not the last moves `next` forward, so a log of `log_len`
    // events needs at most `log_len + 1` pages.
    for _ in 0..=log_len + 1 {
        let page = store
            .read_all(ReadAll::from(from, limit).filtered(filter.clone()))
            .await
            .map_err(|e| {
                format!(
                    "read_all from {from} failed with `{}`: {e}",
                    ErrorCode::of(&e)
                )
            })?;
        if page.events.len() as u64 > limit {
            return Err(format!(
                "read_all from {from} limit {limit} returned {} events",
                page.events.len()
            ));
        }
        events.extend(page.events);
        if page.end_of_log {
            return Ok(events);
        }
        if page.next <= from {
            return Err(format!(
                "read_all from {from} made no progress (next {}, not end_of_log)",
                page.next
            ));
        }
        from = page.next;
    }
    Err(format!(
        "read_all never reached end_of_log over a log of {log_len} events"
    ))
}

/// Successes must be equal; failures must be the same kind of error, and a wrong
/// expected version must report the same stream, expectation and actual revision.
fn compare_outcomes<T: PartialEq + fmt::Debug>(
    model: &Result<T>,
    backend: &Result<T>,
) -> std::result::Result<(), String> {
    match (model, backend) {
        (Ok(m), Ok(b)) if m == b => Ok(()),
        (Err(m), Err(b)) if same_error(m, b) => Ok(()),
        (m, b) => Err(format!(
            "model answered {}, backend {}",
            outcome(m),
            outcome(b)
        )),
    }
}

fn same_error(model: &Error, backend: &Error) -> bool {
    match (model, backend) {
        (
            Error::WrongExpectedVersion {
                stream: ms,
                expected: me,
                actual: ma,
            },
            Error::WrongExpectedVersion {
                stream: bs,
                expected: be,
                actual: ba,
            },
        ) => (ms, me, ma) == (bs, be, ba),
        (
            Error::IdempotencyConflict { stream: ms, .. },
            Error::IdempotencyConflict { stream: bs, .. },
        ) => ms == bs,
        _ => ErrorCode::of(model) == ErrorCode::of(backend),
    }
}

fn outcome<T: fmt::Debug>(result: &Result<T>) -> String {
    match result {
        Ok(value) => format!("{value:?}"),
        Err(e) => format!("error `{}` ({e})", ErrorCode::of(e)),
    }
}

fn places(events: &[RecordedEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| format!("{}@{}#{}", e.revision, e.stream, e.position))
        .collect()
}

/// A short description of an append: `stream expecting E [ids]` per write.
fn describe(writes: &[StreamWrite]) -> String {
    let parts: Vec<String> = writes
        .iter()
        .map(|w| {
            let ids: Vec<String> = w
                .events
                .iter()
                .map(|e| {
                    e.id.map_or("<generated>".into(), |id| id.to_string()[..8].to_string())
                })
                .collect();
            format!("{} expecting {} [{}]", w.stream, w.expected, ids.join(", "))
        })
        .collect();
    format!("append {}", parts.join(" + "))
}
