//! Registered folds: the state of a stream "as of revision N", computed on request.
//!
//! A fold is an initial state and one jq handler per event type; a handler's input is
//! `{"state": <the state so far>, "event": <the event in its wire form>}` and its one
//! output is the next state. Events of other types leave the state as it is. Folds are
//! registered in the store itself (`$projections`, one `$projection-registered` event
//! per registration, the last one of a name wins), so every server on the store and
//! the command line see the same folds, also after a restart.
//!
//! Handlers are jq programs like the registry's converters: compiled when a fold is
//! registered (a handler that does not compile is refused with nothing written), run
//! on the jq threads under the registry's [`JqLimits`](crate::JqLimits) for each event,
//! with no access to the clock or the environment, so the state of a revision is the
//! same tomorrow. Events reach the handlers converted to the newest version of their
//! type, so a handler is written once, against the shape of events today.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use eventfold_core::{
    EventData, EventStore, ExpectedVersion, ReadStream, RecordedEvent, Revision, StreamWrite,
};
use eventfold_wire::Recorded;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::convert::Target;
use crate::error::{Result, SchemaError};
use crate::jq::{JqError, JqProgram};
use crate::jq_threads;
use crate::registry::Registry;
use crate::store::{Registered, SchemaStore};

/// The system stream that holds the registrations of folds.
pub const PROJECTIONS_STREAM: &str = "$projections";
/// The type of a fold's registration event in [`PROJECTIONS_STREAM`].
pub const PROJECTION_REGISTERED_EVENT_TYPE: &str = "$projection-registered";

/// Longest name of a fold, in bytes.
const NAME_BYTES_MAX: usize = 200;
/// Events read per page while folding, and from `$projections`.
const PAGE_EVENTS: u64 = 512;
/// Times a registration is retried when another writer registered concurrently.
const REGISTER_ATTEMPTS_MAX: usize = 5;

/// What a fold is made of, as registered (`PUT /projections/{name}`).
///
/// ```
/// use eventfold_schema::{Fold, FoldDefinition};
/// let definition: FoldDefinition = serde_json::from_value(serde_json::json!({
///     "init": {"total": 0},
///     "handlers": {"ItemAdded": "{total: (.state.total + .event.data.price)}"}
/// })).unwrap();
/// assert!(Fold::compile("cart-total", &definition).is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FoldDefinition {
    /// The state before the first event.
    pub init: Value,
    /// A jq program per event type: `.` is `{state, event}`, the output the new state.
    #[serde(default)]
    pub handlers: BTreeMap<String, String>,
}

/// One registration, as kept in `$projections`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct FoldRegistration {
    name: String,
    #[serde(flatten)]
    definition: FoldDefinition,
}

/// A fold, its handlers compiled.
#[derive(Debug, Clone)]
pub struct Fold {
    name: String,
    definition: FoldDefinition,
    handlers: HashMap<String, JqProgram>,
}

/// The state of a stream as of a revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoldedState {
    /// The state after the events up to `revision`.
    pub state: Value,
    /// The last revision folded.
    pub revision: Revision,
}

impl Fold {
    /// Checks the name and compiles every handler; the error names the handler that
    /// does not compile and why.
    pub fn compile(name: &str, definition: &FoldDefinition) -> Result<Fold> {
        let invalid = |reason: String| SchemaError::InvalidProjection {
            name: name.to_string(),
            reason,
        };
        if name.is_empty() || name.len() > NAME_BYTES_MAX {
            return Err(invalid(format!(
                "a name is 1 to {NAME_BYTES_MAX} bytes, not {}",
                name.len()
            )));
        }
        if name.chars().any(char::is_control) {
            return Err(invalid("a name holds no control characters".to_string()));
        }
        let mut handlers = HashMap::with_capacity(definition.handlers.len());
        for (event_type, source) in &definition.handlers {
            let program = JqProgram::compile(source).map_err(|e| {
                invalid(format!("the handler of {event_type} does not compile: {e}"))
            })?;
            handlers.insert(event_type.clone(), program);
        }
        Ok(Fold {
            name: name.to_string(),
            definition: definition.clone(),
            handlers,
        })
    }

    /// The fold's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The fold as registered.
    pub fn definition(&self) -> &FoldDefinition {
        &self.definition
    }

    /// `state` after `event` (converted to the version the handlers expect): the
    /// handler of its type's one output, or `state` itself when no handler takes it.
    /// Runs on the calling thread (a jq thread).
    fn apply(&self, registry: &Registry, state: Value, event: &RecordedEvent) -> Result<Value> {
        let Some(handler) = self.handlers.get(&event.event_type) else {
            return Ok(state);
        };
        let failed = |reason: String| SchemaError::ProjectionFailed {
            name: self.name.clone(),
            event: format!("{}@{} ({})", event.revision, event.stream, event.id),
            reason,
        };
        let wire = serde_json::to_value(Recorded(event))
            .map_err(|e| failed(format!("the event is not JSON: {e}")))?;
        let input = json!({"state": state, "event": wire});
        let mut outputs = handler
            .run_with(input, &registry.jq_limits(), registry.interrupt_flag())
            .map_err(|e| match e {
                JqError::Interrupted => SchemaError::Interrupted,
                JqError::Limit(limit) => failed(format!("its handler exceeded {limit}")),
                other => failed(format!("its handler failed: {other}")),
            })?;
        if outputs.len() != 1 {
            return Err(failed(format!(
                "its handler gave {} values; a handler gives exactly one, the new state",
                outputs.len()
            )));
        }
        Ok(outputs.remove(0))
    }
}

impl<S: EventStore + ?Sized> SchemaStore<S> {
    /// Registers the fold `name` (replacing an earlier one of that name), once every
    /// handler compiles. Registering the same definition again writes nothing.
    pub async fn register_fold(
        &self,
        name: &str,
        definition: &FoldDefinition,
    ) -> Result<Registered> {
        let (name_owned, definition_owned) = (name.to_string(), definition.clone());
        jq_threads::run(move || Fold::compile(&name_owned, &definition_owned))
            .await
            .map_err(|reason| SchemaError::ConverterCrashed { reason })??;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (folds, last) = self.read_folds().await?;
            let existing = folds.get(name);
            if existing == Some(definition) {
                return Ok(Registered::Unchanged);
            }
            let registration = FoldRegistration {
                name: name.to_string(),
                definition: definition.clone(),
            };
            let event = EventData::json(PROJECTION_REGISTERED_EVENT_TYPE, &registration)?;
            let expected = last.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
            // A system write: `$projections` is eventfold's own stream.
            let write = StreamWrite::system(PROJECTIONS_STREAM, expected, vec![event]);
            match self.store().append_multi(vec![write]).await {
                Ok(_) => {
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

    /// Every registered fold, by name.
    pub async fn folds(&self) -> Result<BTreeMap<String, FoldDefinition>> {
        Ok(self.read_folds().await?.0)
    }

    /// The fold `name`, compiled; [`SchemaError::ProjectionNotFound`] when none is
    /// registered.
    pub async fn fold(&self, name: &str) -> Result<Fold> {
        let definition =
            self.folds()
                .await?
                .remove(name)
                .ok_or_else(|| SchemaError::ProjectionNotFound {
                    name: name.to_string(),
                })?;
        let name = name.to_string();
        jq_threads::run(move || Fold::compile(&name, &definition))
            .await
            .map_err(|reason| SchemaError::ConverterCrashed { reason })?
    }

    /// The state of `stream` as of `revision` (its last event when `None`): `fold`
    /// run over its events from the first, converted to their newest versions.
    /// A revision the stream has not reached is [`SchemaError::RevisionNotReached`];
    /// a stream with no events, [`eventfold_core::Error::StreamNotFound`].
    pub async fn state_of(
        &self,
        stream: &str,
        fold: &Fold,
        revision: Option<Revision>,
    ) -> Result<FoldedState> {
        let Some(last) = self.store().stream_revision(stream).await? else {
            return Err(eventfold_core::Error::StreamNotFound {
                stream: stream.to_string(),
            }
            .into());
        };
        let until = match revision {
            None => last,
            Some(asked) if asked <= last => asked,
            Some(asked) => {
                return Err(SchemaError::RevisionNotReached {
                    stream: stream.to_string(),
                    asked,
                    last,
                });
            }
        };
        let registry = self.registry();
        let fold = Arc::new(fold.clone());
        let mut state = fold.definition.init.clone();
        let mut from = Revision(0);
        let mut folded = None;
        loop {
            let read = ReadStream::forward().from(from).limit(PAGE_EVENTS);
            let mut events = self.store().read_stream(stream, read).await?;
            let Some(next) = events.last().map(|e| e.revision.get() + 1) else {
                break;
            };
            events.retain(|e| e.revision <= until);
            let done = events.len() < PAGE_EVENTS as usize || next > until.get();
            if let Some(last) = events.last() {
                folded = Some(last.revision);
            }
            let events = self.convert(events, &Target::Newest).await?;
            let (fold, registry) = (fold.clone(), registry.clone());
            state = jq_threads::run(move || {
                events
                    .iter()
                    .try_fold(state, |state, event| fold.apply(&registry, state, event))
            })
            .await
            .map_err(|reason| SchemaError::ConverterCrashed { reason })??;
            if done {
                break;
            }
            from = Revision(next);
        }
        Ok(FoldedState {
            state,
            // Retention may have removed every event up to `until`: the state is the
            // initial one, as of the revision asked for.
            revision: folded.unwrap_or(until),
        })
    }

    /// The registered folds and the last revision of `$projections`.
    async fn read_folds(&self) -> Result<(BTreeMap<String, FoldDefinition>, Option<Revision>)> {
        let mut folds = BTreeMap::new();
        let mut last = None;
        let mut from = Revision(0);
        loop {
            let read = ReadStream::forward().from(from).limit(PAGE_EVENTS);
            let events = match self.store().read_stream(PROJECTIONS_STREAM, read).await {
                Ok(events) => events,
                Err(eventfold_core::Error::StreamNotFound { .. }) => break,
                Err(e) => return Err(e.into()),
            };
            let Some(end) = events.last().map(|e| e.revision) else {
                break;
            };
            for event in &events {
                if event.event_type != PROJECTION_REGISTERED_EVENT_TYPE {
                    continue;
                }
                let registration: FoldRegistration =
                    serde_json::from_slice(&event.data).map_err(|e| {
                        SchemaError::InvalidProjection {
                            name: format!("{}@{PROJECTIONS_STREAM}", event.revision),
                            reason: format!("the stored registration does not read: {e}"),
                        }
                    })?;
                folds.insert(registration.name, registration.definition);
            }
            last = Some(end);
            if (events.len() as u64) < PAGE_EVENTS {
                break;
            }
            from = Revision(end.get() + 1);
        }
        Ok((folds, last))
    }
}
