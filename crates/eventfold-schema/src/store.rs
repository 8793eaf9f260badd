//! The registry kept in the store itself: loaded from `$schemas`, registered to with
//! a compatibility check, refreshed from the revision it holds.

use std::collections::VecDeque;
use std::ops::Deref;
use std::sync::{Arc, PoisonError, RwLock};

use eventfold_core::{
    AllFilter, EventData, EventStore, ExpectedVersion, Layered, Position, ReadAll, ReadStream,
    RecordedEvent, Revision,
};
use eventfold_subscription::Subscription;
use serde_json::Value;

use crate::convert::Target;
use crate::definition::{
    EventVersion, REGISTRATION_EVENT_TYPE, Registration, SCHEMAS_STREAM, VersionDefinition,
};
use crate::error::{Result, SchemaError};
use crate::jq_threads;
use crate::layer::SchemaLayer;
use crate::registry::{Registry, describe, validate_value};

/// Limits of the compatibility check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckOptions {
    /// Stored events of each source version the converters are tried on.
    pub sample_events_max: usize,
    /// Events of the type read from the log, at most, to find those samples.
    pub scan_events_max: u64,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            sample_events_max: 1000,
            scan_events_max: 200_000,
        }
    }
}

/// Times a registration is retried when another node registered concurrently.
const REGISTER_ATTEMPTS_MAX: usize = 5;
/// Events read per page from `$schemas` and while sampling.
const PAGE_EVENTS: u64 = 512;

/// What a registration did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    /// A new version was registered.
    Created,
    /// An existing version was replaced by a different definition.
    Replaced,
    /// The same definition was registered before; nothing was written.
    Unchanged,
}

impl Registered {
    /// The word the API and the CLI answer: `created`, `replaced` or `unchanged`.
    pub fn as_str(self) -> &'static str {
        match self {
            Registered::Created => "created",
            Registered::Replaced => "replaced",
            Registered::Unchanged => "unchanged",
        }
    }
}

pub(crate) struct State {
    pub(crate) registry: Arc<Registry>,
    /// The last revision of `$schemas` applied.
    applied: Option<Revision>,
}

/// The schema registry of one store, kept as events in its `$schemas` stream so it is
/// versioned and replicated with everything else.
///
/// ```
/// use std::sync::Arc;
/// use eventfold_core::{EventData, InMemoryStore};
/// use eventfold_schema::{SchemaStore, VersionDefinition};
///
/// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// # rt.block_on(async {
/// let store = Arc::new(InMemoryStore::new());
/// let schemas = SchemaStore::open(store.clone()).await.unwrap();
/// let schema = serde_json::json!({"type": "object", "required": ["id"]});
/// schemas.register("ItemDeactivated", 1, VersionDefinition::with_schema(schema)).await.unwrap();
///
/// let bad = EventData::json("ItemDeactivated", &serde_json::json!({"name": 1})).unwrap();
/// assert!(schemas.validate(&bad).is_err());
///
/// // Another process opening the same store sees the registration.
/// let again = SchemaStore::open(store).await.unwrap();
/// assert_eq!(again.registry().versions("ItemDeactivated").len(), 1);
/// # });
/// ```
pub struct SchemaStore<S: ?Sized> {
    store: Arc<S>,
    /// Shared with the [`SchemaLayer`]s handed out, which validate with the
    /// registry as it is now.
    state: Arc<RwLock<State>>,
    check: CheckOptions,
}

impl<S: EventStore + ?Sized> SchemaStore<S> {
    /// Loads the registry of `store`.
    pub async fn open(store: Arc<S>) -> Result<Self> {
        Self::open_with(store, Registry::new(), CheckOptions::default()).await
    }

    /// Loads the registry of `store` on top of `base`, which holds the program's Rust
    /// converters and the limits of jq converters ([`Registry::with_jq_limits`]).
    pub async fn open_with(store: Arc<S>, base: Registry, check: CheckOptions) -> Result<Self> {
        let schemas = SchemaStore {
            store,
            state: Arc::new(RwLock::new(State {
                registry: Arc::new(base),
                applied: None,
            })),
            check,
        };
        schemas.refresh().await?;
        Ok(schemas)
    }

    /// The registry as last loaded.
    pub fn registry(&self) -> Arc<Registry> {
        self.state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .registry
            .clone()
    }

    /// The layer that validates appends against this registry as it is at each
    /// append (registrations and refreshes included), for a stack over any store:
    /// `store.layer(schemas.layer())`.
    pub fn layer(&self) -> SchemaLayer {
        SchemaLayer::new(self.state.clone())
    }

    /// The store the registry lives in with this registry's validation in front: what
    /// a producer appends through (`schemas.validating().append(..)`).
    pub fn validating(&self) -> Layered<SchemaLayer, Arc<S>> {
        Layered::new(self.layer(), self.store.clone())
    }

    /// The store the registry lives in.
    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    /// Applies registrations made since the last load (by another node, say).
    pub async fn refresh(&self) -> Result<()> {
        let (mut registry, applied) = {
            let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
            (state.registry.clone(), state.applied)
        };
        let mut next = applied.map_or(Revision::FIRST, Revision::next);
        let mut last = applied;
        loop {
            let page = match self
                .store
                .read_stream(
                    SCHEMAS_STREAM,
                    ReadStream::forward().from(next).limit(PAGE_EVENTS),
                )
                .await
            {
                Ok(page) => page,
                Err(eventfold_core::Error::StreamNotFound { .. }) => Vec::new(),
                Err(e) => return Err(e.into()),
            };
            let Some(end) = page.last().map(|e| e.revision) else {
                break;
            };
            let updated = Arc::make_mut(&mut registry);
            for event in &page {
                apply(updated, event)?;
            }
            last = Some(end);
            next = end.next();
        }
        if last != applied {
            let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
            // Another refresh may have applied more in the meantime; keep the newer.
            if state.applied < last {
                *state = State {
                    registry,
                    applied: last,
                };
            }
        }
        Ok(())
    }

    /// Registers `version` of `event_type` after checking it: the type must be a
    /// valid event type, the version the next one after the newest registered (or 1 or
    /// 2 for a new type: events are version 1 unless they say otherwise), its jq
    /// programs and JSON Schema must compile, and its converters must turn a sample of
    /// the stored events of the version(s) they convert from into events that match
    /// the new schema (and back again, when declared lossless), within the registry's
    /// [`crate::JqLimits`]. A failure refuses the registration and names the failing
    /// event.
    ///
    /// The converters run on the jq threads, and no lock is held while they run: two
    /// registrations check side by side, and the expected version on `$schemas`
    /// decides which is written first (the other checks again against the result).
    pub async fn register(
        &self,
        event_type: &str,
        version: u32,
        definition: VersionDefinition,
    ) -> Result<Registered> {
        check_type_name(event_type)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.refresh().await?;
            let (current, applied) = {
                let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
                (state.registry.clone(), state.applied)
            };
            let existing = current.definition(event_type, version).cloned();
            if existing.as_ref() == Some(&definition) {
                return Ok(Registered::Unchanged);
            }
            check_next_version(&current, event_type, version)?;
            let check = Check {
                samples: self.samples(event_type, version, &definition).await?,
                event_type: event_type.to_string(),
                version,
                definition: definition.clone(),
            };
            jq_threads::run(move || check.run(&current))
                .await
                .map_err(|reason| SchemaError::ConverterCrashed { reason })??;
            let registration = Registration {
                event_type: event_type.to_string(),
                version,
                definition: definition.clone(),
            };
            let event = EventData::json(REGISTRATION_EVENT_TYPE, &registration)?;
            let expected = applied.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
            // A system write: `$schemas` and its `$schema-registered` events are
            // eventfold's own, which no client write may carry.
            let write = eventfold_core::StreamWrite::system(SCHEMAS_STREAM, expected, vec![event]);
            match self.store.append_multi(vec![write]).await {
                Ok(_) => {
                    // Apply through the log, so this node and every other one build
                    // the registry from the same events.
                    self.refresh().await?;
                    return Ok(if existing.is_some() {
                        Registered::Replaced
                    } else {
                        Registered::Created
                    });
                }
                Err(eventfold_core::Error::WrongExpectedVersion { .. })
                    if attempt < REGISTER_ATTEMPTS_MAX => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Checks an event about to be appended against the schema of its type and
    /// version, when one is registered.
    pub fn validate(&self, event: &EventData) -> Result<()> {
        self.registry()
            .validate(&event.event_type, event.version, &event.data)
    }

    /// Converts `events` to `target`, in order, on the jq threads: the caller's thread
    /// (an async executor's) is never blocked by a converter.
    pub async fn convert(
        &self,
        events: Vec<RecordedEvent>,
        target: &Target,
    ) -> Result<Vec<RecordedEvent>> {
        if *target == Target::Stored || events.is_empty() {
            return Ok(events);
        }
        let registry = self.registry();
        let target = target.clone();
        jq_threads::run(move || convert_all(&registry, events, &target))
            .await
            .map_err(|reason| SchemaError::ConverterCrashed { reason })?
    }

    /// Stops every jq converter of this registry, running or to come: they fail with
    /// [`SchemaError::Interrupted`] at their next step. For a server shutting down, so
    /// that no request waits for a converter.
    pub fn interrupt_conversions(&self) {
        self.registry().interrupt_jq();
    }

    /// Reads a stream with every event converted to `target`.
    pub async fn read_stream_as(
        &self,
        stream: &str,
        options: ReadStream,
        target: &Target,
    ) -> Result<Vec<RecordedEvent>> {
        let events = self.store.read_stream(stream, options).await?;
        self.convert(events, target).await
    }

    /// The stored events a registration of `event_type` at `version` is checked on.
    async fn samples(
        &self,
        event_type: &str,
        version: u32,
        definition: &VersionDefinition,
    ) -> Result<Samples> {
        let mut sources: Vec<EventVersion> = definition
            .previous_of(event_type, version)
            .into_iter()
            .collect();
        sources.extend(
            definition
                .skip_upcasts
                .keys()
                .map(|from| EventVersion::new(event_type, *from)),
        );
        let mut samples = Samples::default();
        for source in sources {
            let events = self.sample(&source).await?;
            samples.sources.push((source, events));
        }
        if definition.schema.is_some() {
            samples.stored_here = self.sample(&EventVersion::new(event_type, version)).await?;
        }
        Ok(samples)
    }

    /// Up to `sample_events_max` stored events of one type at one version, oldest first.
    async fn sample(&self, of: &EventVersion) -> Result<Vec<RecordedEvent>> {
        let filter = AllFilter {
            event_types: vec![of.event_type.clone()],
            ..AllFilter::default()
        };
        let mut sample = Vec::new();
        let mut from = Position::START;
        let mut scanned = 0u64;
        while sample.len() < self.check.sample_events_max && scanned < self.check.scan_events_max {
            let page = self
                .store
                .read_all(ReadAll::from(from, PAGE_EVENTS).filtered(filter.clone()))
                .await?;
            scanned += page.events.len() as u64;
            sample.extend(
                page.events
                    .into_iter()
                    .filter(|e| e.version == of.version)
                    .take(self.check.sample_events_max - sample.len()),
            );
            if page.end_of_log || page.next <= from {
                break;
            }
            from = page.next;
        }
        Ok(sample)
    }
}

/// A registration's type must be a name an event could have: the same limit (256
/// bytes) and the same error as an append.
fn check_type_name(event_type: &str) -> Result<()> {
    EventData::json(event_type, &Value::Object(Default::default()))?.validate()?;
    Ok(())
}

/// Versions follow each other without a gap, so that every version converts from the
/// one before. Version 1 exists without a registration (events are version 1 unless
/// they say otherwise), so a new type may start at 1 or at 2.
fn check_next_version(registry: &Registry, event_type: &str, version: u32) -> Result<()> {
    let newest = registry
        .versions(event_type)
        .last()
        .map(|(version, _)| *version);
    let next = newest.unwrap_or(1).saturating_add(1);
    if version <= next {
        return Ok(());
    }
    let reason = match newest {
        Some(newest) => format!(
            "version {version} would leave a gap: the newest registered version of \
             {event_type} is {newest}, so the next one is {next}"
        ),
        None => format!(
            "version {version} would leave a gap: no version of {event_type} is \
             registered, so the first one is 1 or 2 (events are version 1 unless they \
             say otherwise)"
        ),
    };
    Err(SchemaError::InvalidDefinition {
        event_type: event_type.to_string(),
        version,
        reason,
    })
}

/// Stored events a registration is checked on.
#[derive(Default)]
struct Samples {
    /// Events of each version the new converters start from.
    sources: Vec<(EventVersion, Vec<RecordedEvent>)>,
    /// Events stored at the registered version itself (when it declares a schema).
    stored_here: Vec<RecordedEvent>,
}

/// The compatibility check of one registration, run on a jq thread.
struct Check {
    event_type: String,
    version: u32,
    definition: VersionDefinition,
    samples: Samples,
}

/// Why one stored event fails the check: a reason to show beside it, or an error of
/// its own (a converter's limit, an interruption).
enum Failure {
    Incompatible(String),
    Error(SchemaError),
}

impl Failure {
    /// A converter error: a failure of the converter on this event is a reason,
    /// anything else stays an error.
    fn converter(what: &str, error: SchemaError) -> Self {
        match error {
            SchemaError::ConversionFailed { .. } => {
                Failure::Incompatible(format!("{what}: {error}"))
            }
            other => Failure::Error(other),
        }
    }
}

impl Check {
    fn run(self, current: &Registry) -> Result<()> {
        let mut candidate = current.clone();
        candidate.define(&self.event_type, self.version, self.definition.clone())?;
        let this = EventVersion::new(&self.event_type, self.version);
        let previous = self.definition.previous_of(&self.event_type, self.version);
        let fail = |event: &RecordedEvent, failure: Failure| match failure {
            Failure::Incompatible(reason) => SchemaError::Incompatible {
                event_type: self.event_type.clone(),
                version: self.version,
                event: describe(event),
                data: serde_json::from_slice(&event.data).unwrap_or(Value::Null),
                reason,
            },
            Failure::Error(SchemaError::ConverterLimit {
                event_type,
                from,
                to,
                limit,
                event: None,
            }) => SchemaError::ConverterLimit {
                event_type,
                from,
                to,
                limit,
                event: Some(describe(event)),
            },
            Failure::Error(other) => other,
        };
        for (source, events) in &self.samples.sources {
            for event in events {
                self.check_event(&candidate, source, &this, previous.as_ref(), event)
                    .map_err(|failure| fail(event, failure))?;
            }
        }
        // Events already stored at this version must match a new or changed schema.
        if let Some(validator) = candidate.validator(&self.event_type, self.version) {
            for event in &self.samples.stored_here {
                let data: Value = serde_json::from_slice(&event.data).unwrap_or(Value::Null);
                validate_value(&validator, &data).map_err(|reason| {
                    fail(
                        event,
                        Failure::Incompatible(format!(
                            "is stored at this version but does not match the schema: {reason}"
                        )),
                    )
                })?;
            }
        }
        Ok(())
    }

    /// Upcasts one stored event of `source` into `this`, validates the results, and
    /// checks the way back.
    fn check_event(
        &self,
        candidate: &Registry,
        source: &EventVersion,
        this: &EventVersion,
        previous: Option<&EventVersion>,
        event: &RecordedEvent,
    ) -> std::result::Result<(), Failure> {
        let original: Value = serde_json::from_slice(&event.data)
            .map_err(|e| Failure::Incompatible(format!("has data that is not JSON: {e}")))?;
        let outputs = candidate
            .run_edge(source, this, original.clone())
            .ok_or_else(|| {
                Failure::Incompatible(format!("has no converter from {source} to {this}"))
            })?
            .map_err(|e| Failure::converter("does not upcast", e))?;
        for (node, value) in &outputs {
            if let Some(validator) = candidate.validator(&node.event_type, node.version) {
                validate_value(&validator, value).map_err(|reason| {
                    Failure::Incompatible(format!(
                        "upcasts to {node} data that does not match its schema ({reason}): {value}"
                    ))
                })?;
            }
        }
        let Some(previous) = previous.filter(|p| *p == source) else {
            return Ok(());
        };
        let [(node, upcast)] = outputs.as_slice() else {
            if self.definition.lossless {
                return Err(Failure::Incompatible(format!(
                    "upcasts to {} events, so the conversion cannot be lossless",
                    outputs.len()
                )));
            }
            return Ok(());
        };
        if node != this {
            return Ok(());
        }
        let Some(back) = candidate.run_edge(this, previous, upcast.clone()) else {
            return Ok(());
        };
        let back = back.map_err(|e| Failure::converter("does not downcast back", e))?;
        if self.definition.lossless
            && !matches!(back.as_slice(), [(_, value)] if *value == original)
        {
            let back: Vec<&Value> = back.iter().map(|(_, v)| v).collect();
            return Err(Failure::Incompatible(format!(
                "is not restored by the downcast declared lossless: upcast {upcast}, downcast {back:?}"
            )));
        }
        for (node, value) in &back {
            if let Some(validator) = candidate.validator(&node.event_type, node.version) {
                validate_value(&validator, value).map_err(|reason| {
                    Failure::Incompatible(format!(
                        "downcasts to {node} data that does not match its schema ({reason}): {value}"
                    ))
                })?;
            }
        }
        Ok(())
    }
}

fn apply(registry: &mut Registry, event: &RecordedEvent) -> Result<()> {
    if event.event_type != REGISTRATION_EVENT_TYPE {
        return Ok(());
    }
    let registration: Registration = serde_json::from_slice(&event.data).map_err(|e| {
        SchemaError::Store(eventfold_core::Error::InvalidEvent {
            reason: format!(
                "registry entry {}@{SCHEMAS_STREAM} is not a registration: {e}",
                event.revision
            ),
        })
    })?;
    registry.define(
        &registration.event_type,
        registration.version,
        registration.definition,
    )
}

/// Converts each of `events` to `target`, in order.
pub fn convert_all(
    registry: &Registry,
    events: Vec<RecordedEvent>,
    target: &Target,
) -> Result<Vec<RecordedEvent>> {
    let mut out = Vec::with_capacity(events.len());
    for event in events {
        out.extend(registry.convert(event, target)?);
    }
    Ok(out)
}

/// A subscription whose consumer declared once the versions it understands: every
/// event arrives converted ("move negotiation forward").
///
/// ```
/// use std::sync::Arc;
/// use eventfold_core::{EventData, EventStore, ExpectedVersion, InMemoryStore};
/// use eventfold_subscription::Subscription;
/// use eventfold_schema::{Negotiated, SchemaStore, Target, VersionDefinition};
///
/// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// # rt.block_on(async {
/// let store = Arc::new(InMemoryStore::new());
/// let schemas = Arc::new(SchemaStore::open(store.clone()).await.unwrap());
/// schemas.register("Renamed", 2, VersionDefinition {
///     upcast: Some("{name: .title}".into()), downcast: Some("{title: .name}".into()),
///     ..Default::default()
/// }).await.unwrap();
/// let v2 = EventData::json("Renamed", &serde_json::json!({"name": "x"})).unwrap().with_version(2);
/// store.append("doc-1", ExpectedVersion::Any, vec![v2]).await.unwrap();
///
/// let subscription = Subscription::to_stream(store.clone(), "doc-1", None);
/// let mut old_consumer = Negotiated::new(subscription, schemas, Target::version("Renamed", 1));
/// let event = old_consumer.next().await.unwrap();
/// assert_eq!((event.version, &event.data[..]), (1, &br#"{"title":"x"}"#[..]));
/// # });
/// ```
pub struct Negotiated<S, T: ?Sized> {
    inner: Subscription<S>,
    schemas: Arc<SchemaStore<T>>,
    target: Target,
    pending: VecDeque<RecordedEvent>,
}

impl<S, T> Negotiated<S, T>
where
    S: Deref<Target = T>,
    T: EventStore + ?Sized,
{
    /// Converts every event of `inner` to `target`, with the registry of `schemas` as
    /// it is when each event arrives.
    pub fn new(inner: Subscription<S>, schemas: Arc<SchemaStore<T>>, target: Target) -> Self {
        Negotiated {
            inner,
            schemas,
            target,
            pending: VecDeque::new(),
        }
    }

    /// The next event, converted; waits for one when caught up.
    pub async fn next(&mut self) -> Result<RecordedEvent> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(event);
            }
            let event = self.inner.next().await?;
            let converted = self.schemas.convert(vec![event], &self.target).await?;
            self.pending.extend(converted);
        }
    }

    /// The checkpoint of the underlying subscription (events of a split share it).
    pub fn checkpoint(&self) -> Option<u64> {
        self.inner.checkpoint()
    }
}
