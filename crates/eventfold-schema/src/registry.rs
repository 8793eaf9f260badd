//! The in-memory registry: registered versions, their schemas, and the conversion
//! graph whose nodes are (type, version) and whose edges are converters.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use eventfold_core::RecordedEvent;
use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

use crate::convert::{Converted, Target};
use crate::definition::{EventVersion, VersionDefinition};
use crate::error::{Result, SchemaError};
use crate::jq::{JqError, JqLimits, JqProgram};
use crate::weak;

/// A converter written in Rust: the data of one version in, the data of each
/// resulting event out (none drops the event, several split it). An output object
/// with a `"$type"` key becomes an event of that type, as with jq converters.
pub type ConvertFn = Arc<dyn Fn(Value) -> Result<Vec<Value>, String> + Send + Sync>;

/// Most converters applied to one stored event: bounds converters whose outputs
/// lead back to where they started.
const CONVERSION_DEPTH_MAX: usize = 32;

/// Most schema violations reported for one event.
const VIOLATIONS_REPORTED_MAX: usize = 5;

/// Whether a converter's one output goes on along the route: an output naming a
/// `"$type"` becomes an event of that type and finds its own route.
fn carries_on(output: &Value) -> bool {
    output.get("$type").is_none()
}

#[derive(Clone)]
enum Program {
    Jq(JqProgram),
    Rust(ConvertFn),
}

impl Program {
    fn run(&self, data: Value, jq: &JqSettings) -> Result<Vec<Value>, JqError> {
        match self {
            Program::Jq(program) => program.run_with(data, &jq.limits, &jq.interrupt),
            Program::Rust(function) => function(data).map_err(JqError::Failed),
        }
    }
}

/// How jq converters run: their limits, and the flag that interrupts them (shared by
/// every clone of a registry).
#[derive(Clone, Default)]
struct JqSettings {
    limits: JqLimits,
    interrupt: Arc<AtomicBool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Up,
    Down,
}

#[derive(Clone)]
struct Edge {
    from: EventVersion,
    to: EventVersion,
    direction: Direction,
    program: Program,
}

#[derive(Clone)]
struct RegisteredVersion {
    definition: VersionDefinition,
    validator: Option<Arc<jsonschema::Validator>>,
}

/// The route of converters from a node to a target, as edge indexes; `None` when no
/// route exists.
type Route = Option<Arc<[usize]>>;

/// Registered event versions and the converters between them.
///
/// Built from [`VersionDefinition`]s (jq converters, JSON Schemas) and Rust functions.
/// [`crate::SchemaStore`] keeps one in step with the `$schemas` stream; a `Registry`
/// can also be used on its own.
///
/// ```
/// use eventfold_schema::{Registry, Target, VersionDefinition};
/// use serde_json::json;
///
/// let mut registry = Registry::new();
/// registry.define("ItemDeactivated", 2, VersionDefinition {
///     upcast: Some(r#"{itemId: .id, reason: "unknown"}"#.into()),
///     downcast: Some("{id: .itemId}".into()),
///     ..Default::default()
/// }).unwrap();
///
/// let newest = registry.convert_value("ItemDeactivated", 1, json!({"id": "a"}), &Target::Newest).unwrap();
/// assert_eq!(newest[0].version, 2);
/// assert_eq!(newest[0].data, json!({"itemId": "a", "reason": "unknown"}));
///
/// let old = registry.convert_value("ItemDeactivated", 2, json!({"itemId": "b", "reason": "x"}),
///     &Target::version("ItemDeactivated", 1)).unwrap();
/// assert_eq!(old[0].data, json!({"id": "b"}));
/// ```
#[derive(Clone, Default)]
pub struct Registry {
    types: BTreeMap<String, BTreeMap<u32, RegisteredVersion>>,
    edges: Vec<Edge>,
    /// Rebuilt by `reindex`: outgoing edges per node, Rust converters first.
    outgoing: HashMap<String, HashMap<u32, Vec<usize>>>,
    /// Rebuilt by `reindex`: the type each type was renamed into.
    renamed_to: HashMap<String, String>,
    /// Rebuilt by `reindex`: the route to the newest version from every known node.
    newest_routes: HashMap<String, HashMap<u32, Route>>,
    jq: JqSettings,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field(
                "types",
                &self
                    .types
                    .iter()
                    .map(|(t, versions)| (t, versions.keys().collect::<Vec<_>>()))
                    .collect::<Vec<_>>(),
            )
            .field("edges", &self.edges.len())
            .finish()
    }
}

impl Registry {
    /// An empty registry: every event is read as stored.
    pub fn new() -> Self {
        Self::default()
    }

    /// The same registry with jq converters run within `limits`.
    ///
    /// ```
    /// use eventfold_schema::{JqLimits, Registry, SchemaError, Target, VersionDefinition};
    /// let mut registry = Registry::new().with_jq_limits(JqLimits { steps_max: 100, ..Default::default() });
    /// registry.define("Looped", 2, VersionDefinition {
    ///     upcast: Some("def f: f; f".into()),
    ///     ..Default::default()
    /// }).unwrap();
    /// let err = registry.convert_value("Looped", 1, serde_json::json!({}), &Target::Newest).unwrap_err();
    /// assert!(matches!(err, SchemaError::ConverterLimit { .. }), "{err}");
    /// assert!(err.to_string().contains("jq_steps_max (100 steps)"), "{err}");
    /// ```
    pub fn with_jq_limits(mut self, limits: JqLimits) -> Self {
        self.jq.limits = limits;
        self
    }

    /// The limits jq converters run within.
    pub fn jq_limits(&self) -> JqLimits {
        self.jq.limits
    }

    /// The flag [`Registry::interrupt_jq`] sets, for other jq programs of this
    /// registry's owner (registered folds) to stop with its converters.
    pub(crate) fn interrupt_flag(&self) -> &Arc<AtomicBool> {
        &self.jq.interrupt
    }

    /// Stops every jq converter running or started from now on in this registry or a
    /// clone of it: they fail with [`SchemaError::Interrupted`] at their next step.
    /// For a server shutting down.
    pub fn interrupt_jq(&self) {
        self.jq.interrupt.store(true, Ordering::Relaxed);
    }

    /// Registers (or replaces) `version` of `event_type`, compiling its schema and jq
    /// converters. A version after the first must be convertible from the one before
    /// (an upcast, in jq here or in Rust through [`Registry::upcast_fn`]); if it is
    /// not, it is a new event type.
    pub fn define(
        &mut self,
        event_type: &str,
        version: u32,
        definition: VersionDefinition,
    ) -> Result<()> {
        let invalid = |reason: String| SchemaError::InvalidDefinition {
            event_type: event_type.to_string(),
            version,
            reason,
        };
        if event_type.is_empty() || event_type.starts_with('$') {
            return Err(invalid(
                "the event type must be a non-empty name not starting with '$'".into(),
            ));
        }
        if version == 0 {
            return Err(invalid("versions count from 1".into()));
        }
        let this = EventVersion::new(event_type, version);
        let previous = definition.previous_of(event_type, version);
        if let Some(previous) = &previous {
            if previous.event_type == event_type && previous.version >= version {
                return Err(invalid(format!(
                    "the previous version ({previous}) must be older than this one"
                )));
            }
            if previous.version == 0 {
                return Err(invalid("versions count from 1".into()));
            }
        }
        let validator = match &definition.schema {
            None => None,
            Some(schema) => Some(Arc::new(
                jsonschema::validator_for(schema)
                    .map_err(|e| invalid(format!("the JSON Schema is not valid: {e}")))?,
            )),
        };
        let compile = |what: &str, source: &str| {
            JqProgram::compile(source).map_err(|e| invalid(format!("{what}: {e}")))
        };
        let mut edges = Vec::new();
        match (&previous, &definition.upcast) {
            (Some(previous), Some(upcast)) => edges.push(Edge {
                from: previous.clone(),
                to: this.clone(),
                direction: Direction::Up,
                program: Program::Jq(compile("upcast", upcast)?),
            }),
            (Some(previous), None) => {
                if !self.has_edge(previous, &this) {
                    return Err(invalid(format!(
                        "it needs an upcast from {previous}: a new version must be \
                         convertible from the one before, or it is a new event type"
                    )));
                }
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "an upcast needs a previous version; version 1 of a type has none \
                     unless `previous` names the type it renames"
                        .into(),
                ));
            }
            (None, None) => {}
        }
        match (&previous, &definition.downcast) {
            (Some(previous), Some(downcast)) => edges.push(Edge {
                from: this.clone(),
                to: previous.clone(),
                direction: Direction::Down,
                program: Program::Jq(compile("downcast", downcast)?),
            }),
            (None, Some(_)) => {
                return Err(invalid("a downcast needs a previous version".into()));
            }
            (_, None) => {
                if definition.lossless
                    && !previous
                        .as_ref()
                        .is_some_and(|previous| self.has_edge(&this, previous))
                {
                    return Err(invalid("`lossless` needs a downcast".into()));
                }
            }
        }
        for (from, source) in &definition.skip_upcasts {
            if *from == 0 || *from >= version {
                return Err(invalid(format!(
                    "a skip-ahead upcast must start from an older version, not {from}"
                )));
            }
            edges.push(Edge {
                from: EventVersion::new(event_type, *from),
                to: this.clone(),
                direction: Direction::Up,
                program: Program::Jq(compile(&format!("skip upcast from v{from}"), source)?),
            });
        }

        // Replace what an earlier definition of this version declared in jq.
        self.edges.retain(|edge| {
            let declared_here = matches!(edge.program, Program::Jq(_))
                && (edge.to == this && edge.direction == Direction::Up
                    || edge.from == this && edge.direction == Direction::Down);
            !declared_here
        });
        self.edges.extend(edges);
        self.types
            .entry(event_type.to_string())
            .or_default()
            .insert(
                version,
                RegisteredVersion {
                    definition,
                    validator,
                },
            );
        self.reindex();
        Ok(())
    }

    /// Adds a Rust upcaster from `from` to `to` (a newer version, or another type for
    /// a rename). Preferred over a jq converter between the same versions.
    ///
    /// ```
    /// use eventfold_schema::{EventVersion, Registry, Target};
    /// use serde_json::json;
    /// let mut registry = Registry::new();
    /// registry.upcast_fn(EventVersion::new("Moved", 1), EventVersion::new("Moved", 2), |mut data| {
    ///     data["unit"] = json!("m");
    ///     Ok(vec![data])
    /// });
    /// registry.define("Moved", 2, Default::default()).unwrap();
    /// let out = registry.convert_value("Moved", 1, json!({"by": 3}), &Target::Newest).unwrap();
    /// assert_eq!(out[0].data, json!({"by": 3, "unit": "m"}));
    /// ```
    pub fn upcast_fn(
        &mut self,
        from: EventVersion,
        to: EventVersion,
        convert: impl Fn(Value) -> Result<Vec<Value>, String> + Send + Sync + 'static,
    ) {
        self.add_rust_edge(from, to, Direction::Up, Arc::new(convert));
    }

    /// Adds a Rust downcaster from `from` to `to` (an older version, or the type it
    /// renamed).
    pub fn downcast_fn(
        &mut self,
        from: EventVersion,
        to: EventVersion,
        convert: impl Fn(Value) -> Result<Vec<Value>, String> + Send + Sync + 'static,
    ) {
        self.add_rust_edge(from, to, Direction::Down, Arc::new(convert));
    }

    fn add_rust_edge(
        &mut self,
        from: EventVersion,
        to: EventVersion,
        direction: Direction,
        convert: ConvertFn,
    ) {
        self.edges.push(Edge {
            from,
            to,
            direction,
            program: Program::Rust(convert),
        });
        self.reindex();
    }

    fn has_edge(&self, from: &EventVersion, to: &EventVersion) -> bool {
        self.edges.iter().any(|e| &e.from == from && &e.to == to)
    }

    /// The registered types, in name order.
    pub fn types(&self) -> impl Iterator<Item = &str> {
        self.types.keys().map(String::as_str)
    }

    /// The registered versions of `event_type`, oldest first.
    pub fn versions(&self, event_type: &str) -> Vec<(u32, &VersionDefinition)> {
        self.types
            .get(event_type)
            .map_or_else(Vec::new, |versions| {
                versions
                    .iter()
                    .map(|(version, registered)| (*version, &registered.definition))
                    .collect()
            })
    }

    /// Every registered type with its version numbers and newest version, in name
    /// order (what `GET /schemas` and `eventfold schema list` show).
    pub fn summaries(&self) -> Vec<TypeSummary> {
        self.types
            .iter()
            .map(|(event_type, versions)| TypeSummary {
                event_type: event_type.clone(),
                versions: versions.keys().copied().collect(),
                newest: self.newest(event_type),
            })
            .collect()
    }

    /// One type's registered versions with their definitions, oldest first; `None` for
    /// a type the registry does not know.
    pub fn type_versions(&self, event_type: &str) -> Option<TypeVersions> {
        let versions = self.types.get(event_type)?;
        Some(TypeVersions {
            event_type: event_type.to_string(),
            versions: versions
                .iter()
                .map(|(version, registered)| VersionEntry {
                    version: *version,
                    definition: registered.definition.clone(),
                })
                .collect(),
            newest: self.newest(event_type),
        })
    }

    /// Marks `event`'s personal values as its version declares them (`personal` of its
    /// definition): `$personal` metadata with the subject read from the data, for the
    /// privacy layer to seal. An event that marks its own (`$personal` in its metadata)
    /// or whose version declares none is left as it is.
    pub fn mark_personal(&self, event: &mut eventfold_core::EventData) -> Result<()> {
        let Some(declared) = self
            .definition(&event.event_type, event.version)
            .and_then(|d| d.personal.as_ref())
        else {
            return Ok(());
        };
        let violation = |reason: String| SchemaError::SchemaViolation {
            event_type: event.event_type.clone(),
            version: event.version,
            reason,
        };
        let mut metadata: serde_json::Map<String, Value> = serde_json::from_slice(&event.metadata)
            .map_err(|e| violation(format!("metadata is not a JSON object: {e}")))?;
        if metadata.contains_key("$personal") {
            return Ok(());
        }
        let data: Value = serde_json::from_slice(&event.data)
            .map_err(|e| violation(format!("data is not JSON: {e}")))?;
        let marking = declared.marking(&data).map_err(violation)?;
        metadata.insert("$personal".into(), marking);
        event.metadata = bytes::Bytes::from(Value::Object(metadata).to_string());
        Ok(())
    }

    /// The definition of one version, if registered.
    pub fn definition(&self, event_type: &str, version: u32) -> Option<&VersionDefinition> {
        self.types
            .get(event_type)?
            .get(&version)
            .map(|r| &r.definition)
    }

    /// Where events of `event_type` are converted to by default: its newest registered
    /// version, following renames. `None` for a type the registry does not know.
    pub fn newest(&self, event_type: &str) -> Option<EventVersion> {
        let mut current = event_type;
        let mut seen = HashSet::new();
        let mut newest = None;
        loop {
            if let Some(latest) = self.types.get(current).and_then(|v| v.keys().next_back()) {
                newest = Some(EventVersion::new(current, *latest));
            }
            match self.renamed_to.get(current) {
                Some(next) if seen.insert(current) => current = next,
                _ => return newest,
            }
        }
    }

    /// Checks `data` against the schema registered for `event_type` at `version`, if
    /// any; the error lists the broken rules with the JSON path of each value.
    pub fn validate(&self, event_type: &str, version: u32, data: &[u8]) -> Result<()> {
        let Some(validator) = self
            .types
            .get(event_type)
            .and_then(|versions| versions.get(&version))
            .and_then(|registered| registered.validator.as_ref())
        else {
            return Ok(());
        };
        let violation = |reason: String| SchemaError::SchemaViolation {
            event_type: event_type.to_string(),
            version,
            reason,
        };
        let value: Value = serde_json::from_slice(data)
            .map_err(|e| violation(format!("data is not JSON: {e}")))?;
        validate_value(validator, &value).map_err(violation)
    }

    /// Converts `data` of `event_type` at `version` towards `target`: the events it
    /// becomes (none when a converter dropped it, several when one split it).
    pub fn convert_value(
        &self,
        event_type: &str,
        version: u32,
        data: Value,
        target: &Target,
    ) -> Result<Vec<Converted>> {
        let mut out = Vec::with_capacity(1);
        self.convert_into(event_type, version, data, target, 0, &mut out)?;
        Ok(out)
    }

    /// Converts a stored event towards `target`. The events it becomes keep its
    /// stream, revision, position, metadata and time; the first keeps its id, further
    /// ones of a split get ids derived from it (UUID v5), the same on every read.
    pub fn convert(&self, event: RecordedEvent, target: &Target) -> Result<Vec<RecordedEvent>> {
        let route = self.route(&event.event_type, event.version, target)?;
        if route.is_empty() {
            return Ok(vec![event]);
        }
        let data: Value =
            serde_json::from_slice(&event.data).map_err(|e| SchemaError::ConversionFailed {
                event_type: event.event_type.clone(),
                from: event.version,
                to: event.version,
                reason: format!("stored data is not JSON: {e}"),
            })?;
        let converted = self
            .convert_value(&event.event_type, event.version, data, target)
            .map_err(|error| match error {
                SchemaError::ConverterLimit {
                    event_type,
                    from,
                    to,
                    limit,
                    event: None,
                } => SchemaError::ConverterLimit {
                    event_type,
                    from,
                    to,
                    limit,
                    event: Some(describe(&event)),
                },
                other => other,
            })?;
        Ok(converted
            .into_iter()
            .enumerate()
            .map(|(i, c)| RecordedEvent {
                id: if i == 0 {
                    event.id
                } else {
                    Uuid::new_v5(&event.id, i.to_string().as_bytes())
                },
                event_type: c.event_type,
                version: c.version,
                data: bytes::Bytes::from(c.data.to_string()),
                ..event.clone()
            })
            .collect())
    }

    /// Converts a stored event to the newest version and decodes each resulting event
    /// into `T` with weak-schema rules (see [`crate::decode`]). An event already at its
    /// newest version is decoded straight from its bytes.
    pub fn decode<T: DeserializeOwned>(&self, event: &RecordedEvent) -> Result<Vec<T>> {
        let route = self.route(&event.event_type, event.version, &Target::Newest)?;
        if route.is_empty() {
            return weak::decode_slice(&event.event_type, event.version, &event.data)
                .map(|value| vec![value]);
        }
        let data: Value = serde_json::from_slice(&event.data).map_err(|e| SchemaError::Decode {
            event_type: event.event_type.clone(),
            version: event.version,
            reason: format!("stored data is not JSON: {e}"),
        })?;
        self.convert_value(&event.event_type, event.version, data, &Target::Newest)?
            .into_iter()
            .map(|c| weak::decode_value(&c.event_type, c.version, c.data))
            .collect()
    }

    /// Runs the converter registered from `from` to `to` directly, for the
    /// compatibility check.
    pub(crate) fn run_edge(
        &self,
        from: &EventVersion,
        to: &EventVersion,
        data: Value,
    ) -> Option<Result<Vec<(EventVersion, Value)>>> {
        let index = self
            .outgoing_of(&from.event_type, from.version)
            .iter()
            .copied()
            .find(|&i| &self.edges[i].to == to)?;
        let edge = &self.edges[index];
        Some(
            edge.program
                .run(data, &self.jq)
                .map_err(|error| failed(edge, error))
                .and_then(|outputs| {
                    outputs
                        .into_iter()
                        .map(|output| place_output(edge, output))
                        .collect()
                }),
        )
    }

    fn convert_into(
        &self,
        event_type: &str,
        version: u32,
        mut data: Value,
        target: &Target,
        depth: usize,
        out: &mut Vec<Converted>,
    ) -> Result<()> {
        let route = self.route(event_type, version, target)?;
        let mut at: (Cow<'_, str>, u32) = (Cow::Borrowed(event_type), version);
        let mut step = 0;
        while step < route.len() {
            if depth + step >= CONVERSION_DEPTH_MAX {
                return Err(SchemaError::ConversionFailed {
                    event_type: event_type.to_string(),
                    from: version,
                    to: version,
                    reason: format!(
                        "more than {CONVERSION_DEPTH_MAX} conversions: the converters loop"
                    ),
                });
            }
            // Consecutive jq converters run in one hand-off to a jq thread.
            let chain: Vec<JqProgram> = route[step..]
                .iter()
                .take(CONVERSION_DEPTH_MAX - depth - step)
                .map_while(|&i| match &self.edges[i].program {
                    Program::Jq(program) => Some(program.clone()),
                    Program::Rust(_) => None,
                })
                .collect();
            let (ran, mut outputs) = if chain.len() > 1 {
                JqProgram::run_chain(
                    &chain,
                    data,
                    &self.jq.limits,
                    &self.jq.interrupt,
                    carries_on,
                )
                .map_err(|(at, error)| failed(&self.edges[route[step + at]], error))?
            } else {
                let edge = &self.edges[route[step]];
                let outputs = edge
                    .program
                    .run(data, &self.jq)
                    .map_err(|error| failed(edge, error))?;
                (1, outputs)
            };
            step += ran;
            let edge = &self.edges[route[step - 1]];
            if outputs.len() == 1 && carries_on(&outputs[0]) {
                data = outputs.pop().unwrap_or(Value::Null);
                at = (Cow::Borrowed(edge.to.event_type.as_str()), edge.to.version);
                continue;
            }
            // A drop, a split or a change of type: each output finds its own route.
            for output in outputs {
                let (node, value) = place_output(edge, output)?;
                self.convert_into(
                    &node.event_type,
                    node.version,
                    value,
                    target,
                    depth + step,
                    out,
                )?;
            }
            return Ok(());
        }
        out.push(Converted {
            event_type: at.0.into_owned(),
            version: at.1,
            data,
        });
        Ok(())
    }

    /// The converters leading from (`event_type`, `version`) to `target`; empty when the
    /// event is read as it is.
    fn route(&self, event_type: &str, version: u32, target: &Target) -> Result<Arc<[usize]>> {
        let no_path = |to: String| SchemaError::NoConversionPath {
            event_type: event_type.to_string(),
            from: version,
            to,
        };
        match target {
            Target::Stored => Ok(Arc::from([])),
            Target::Newest => self
                .newest_route(event_type, version)
                .ok_or_else(|| no_path("the newest version".into())),
            Target::Versions(wanted) => {
                if wanted.get(event_type) == Some(&version) {
                    return Ok(Arc::from([]));
                }
                let found =
                    self.search(event_type, version, true, |t, v| wanted.get(t) == Some(&v));
                // A declared type this event converts to (a rename, say) but not at
                // the declared version is an error, not a silent fallback.
                let related = || {
                    self.search(event_type, version, true, |t, _| wanted.contains_key(t))
                        .and_then(|route| {
                            route.last().map(|&i| self.edges[i].to.event_type.clone())
                        })
                };
                match (found, wanted.get(event_type)) {
                    (Some(route), _) => Ok(route.into()),
                    (None, Some(want)) => Err(no_path(format!("v{want}"))),
                    (None, None) if let Some(related) = related() => Err(no_path(format!(
                        "{related} v{}",
                        wanted.get(&related).copied().unwrap_or_default()
                    ))),
                    (None, None) => self
                        .newest_route(event_type, version)
                        .ok_or_else(|| no_path("the newest version".into())),
                }
            }
        }
    }

    fn newest_route(&self, event_type: &str, version: u32) -> Route {
        if let Some(route) = self
            .newest_routes
            .get(event_type)
            .and_then(|routes| routes.get(&version))
        {
            return route.clone();
        }
        self.compute_newest_route(event_type, version)
    }

    fn compute_newest_route(&self, event_type: &str, version: u32) -> Route {
        let Some(goal) = self.newest(event_type) else {
            return Some(Arc::from([])); // unknown type: read as stored
        };
        if goal.event_type == event_type && goal.version <= version {
            return Some(Arc::from([])); // newest already, or newer than the registry
        }
        self.search(event_type, version, false, |t, v| {
            t == goal.event_type && v == goal.version
        })
        .map(Arc::from)
    }

    /// Breadth-first search for the shortest route to a node where `goal` holds:
    /// skip-ahead converters win by being shorter, Rust converters by coming first.
    fn search(
        &self,
        event_type: &str,
        version: u32,
        allow_down: bool,
        goal: impl Fn(&str, u32) -> bool,
    ) -> Option<Vec<usize>> {
        let start = EventVersion::new(event_type, version);
        let mut came_from: HashMap<EventVersion, Option<usize>> = HashMap::new();
        came_from.insert(start.clone(), None);
        let mut queue = VecDeque::from([start]);
        while let Some(node) = queue.pop_front() {
            if goal(&node.event_type, node.version) {
                let mut route = Vec::new();
                let mut at = node;
                while let Some(Some(index)) = came_from.get(&at) {
                    route.push(*index);
                    at = self.edges[*index].from.clone();
                }
                route.reverse();
                return Some(route);
            }
            for &index in self.outgoing_of(&node.event_type, node.version) {
                let edge = &self.edges[index];
                if (allow_down || edge.direction == Direction::Up)
                    && !came_from.contains_key(&edge.to)
                {
                    came_from.insert(edge.to.clone(), Some(index));
                    queue.push_back(edge.to.clone());
                }
            }
        }
        None
    }

    fn outgoing_of(&self, event_type: &str, version: u32) -> &[usize] {
        self.outgoing
            .get(event_type)
            .and_then(|by_version| by_version.get(&version))
            .map_or(&[], Vec::as_slice)
    }

    fn reindex(&mut self) {
        self.outgoing.clear();
        self.renamed_to.clear();
        for (index, edge) in self.edges.iter().enumerate() {
            self.outgoing
                .entry(edge.from.event_type.clone())
                .or_default()
                .entry(edge.from.version)
                .or_default()
                .push(index);
        }
        for by_version in self.outgoing.values_mut() {
            for list in by_version.values_mut() {
                list.sort_by_key(|&i| matches!(self.edges[i].program, Program::Jq(_)));
            }
        }
        for (event_type, versions) in &self.types {
            for (version, registered) in versions {
                if let Some(previous) = registered.definition.previous_of(event_type, *version)
                    && previous.event_type != *event_type
                {
                    self.renamed_to
                        .insert(previous.event_type.clone(), event_type.clone());
                }
            }
        }
        let mut nodes: HashSet<EventVersion> = self
            .edges
            .iter()
            .flat_map(|e| [e.from.clone(), e.to.clone()])
            .collect();
        for (event_type, versions) in &self.types {
            nodes.extend(versions.keys().map(|v| EventVersion::new(event_type, *v)));
        }
        let mut routes: HashMap<String, HashMap<u32, Route>> = HashMap::new();
        for node in nodes {
            let route = self.compute_newest_route(&node.event_type, node.version);
            routes
                .entry(node.event_type)
                .or_default()
                .insert(node.version, route);
        }
        self.newest_routes = routes;
    }
}

fn failed(edge: &Edge, error: JqError) -> SchemaError {
    let (event_type, from, to) = (
        edge.from.event_type.clone(),
        edge.from.version,
        edge.to.version,
    );
    match error {
        JqError::Limit(limit) => SchemaError::ConverterLimit {
            event_type,
            from,
            to,
            limit,
            event: None,
        },
        JqError::Interrupted => SchemaError::Interrupted,
        JqError::Failed(reason) => SchemaError::ConversionFailed {
            event_type,
            from,
            to,
            reason,
        },
    }
}

/// A stored event as errors name it: `revision@stream (id)`.
pub(crate) fn describe(event: &RecordedEvent) -> String {
    format!("{}@{} ({})", event.revision, event.stream, event.id)
}

/// Where one output of `edge` lands: the edge's target, or the type an output names
/// with `"$type"` (and `"$version"`, default 1).
fn place_output(edge: &Edge, mut output: Value) -> Result<(EventVersion, Value)> {
    let Some(object) = output.as_object_mut() else {
        return Ok((edge.to.clone(), output));
    };
    let Some(named) = object.remove("$type") else {
        return Ok((edge.to.clone(), output));
    };
    let Value::String(event_type) = named else {
        return Err(failed(
            edge,
            JqError::Failed("`$type` must be a string".into()),
        ));
    };
    let version = match object.remove("$version") {
        None => 1,
        Some(v) => v
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .filter(|v| *v >= 1)
            .ok_or_else(|| {
                failed(
                    edge,
                    JqError::Failed("`$version` must be a number from 1".into()),
                )
            })?,
    };
    Ok((EventVersion::new(event_type, version), output))
}

/// A registered type in brief.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TypeSummary {
    /// The event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Its registered versions, oldest first.
    pub versions: Vec<u32>,
    /// Where its events are converted to by default (following renames).
    pub newest: Option<EventVersion>,
}

/// A registered type with every version's definition.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TypeVersions {
    /// The event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Its versions, oldest first.
    pub versions: Vec<VersionEntry>,
    /// Where its events are converted to by default (following renames).
    pub newest: Option<EventVersion>,
}

/// One registered version: its number beside the fields of its definition.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct VersionEntry {
    /// The version.
    pub version: u32,
    /// What was registered for it.
    #[serde(flatten)]
    pub definition: VersionDefinition,
}

/// Checks `value` against `validator`, listing up to a few broken rules.
pub(crate) fn validate_value(
    validator: &jsonschema::Validator,
    value: &Value,
) -> std::result::Result<(), String> {
    let mut errors = validator.iter_errors(value).peekable();
    if errors.peek().is_none() {
        return Ok(());
    }
    let messages: Vec<String> = errors
        .take(VIOLATIONS_REPORTED_MAX)
        .map(|error| {
            let path = error.instance_path().to_string();
            let path = if path.is_empty() { "/".into() } else { path };
            format!("at {path}: {error}")
        })
        .collect();
    Err(messages.join("; "))
}

impl Registry {
    /// The compiled schema of one version, for the compatibility check.
    pub(crate) fn validator(
        &self,
        event_type: &str,
        version: u32,
    ) -> Option<Arc<jsonschema::Validator>> {
        self.types.get(event_type)?.get(&version)?.validator.clone()
    }
}
