//! Stream surgery: the drastic fixes of a store's history, over any [`EventStore`].
//!
//! When a compensating event is not enough, a stream's events are copied into new
//! streams, fixed on the way, and the old stream is closed:
//!
//! - [`Operation::CopyReplace`]: a stream's events into a new stream, some revisions
//!   skipped, optionally through a jq transform (an event in, zero or more out); or,
//!   `in_place`, back into the same stream, its `truncate_before` hiding the originals;
//! - [`Operation::Split`]: a stream's events into several new streams, each event to
//!   the one whose jq filter it matches (exactly one must match);
//! - [`Operation::Join`]: several streams into one new stream, in the order of `$all`;
//! - [`Operation::Flip`]: the whole store read-only, once a [`transform`] copied it
//!   into a new store ([`flip`]).
//!
//! [`transform::copy_store`] copies a whole store into another, through a jq or Rust
//! transform, following it live until its flip; [`bankruptcy::declare`] closes a
//! store as a read-only archive and starts a new one from the states of its streams.
//!
//! Every copy carries `"$migrated_from": "<revision>@<stream>"` in its metadata. Each
//! source ends with a `$stream-moved-to` event `{"stream": TARGET}` (a split names its
//! first target and lists all under `"streams"`), after which the store refuses client
//! appends to it with `stream_moved` naming the target. One record `{"operation",
//! "reason", "who", "arguments", "at"}` goes to the system stream `$surgery`.
//!
//! **Safe under live writers.** The last copies, every move marker (each expecting
//! the source's revision that was read) and the audit record are one atomic
//! `append_multi`. A writer that appended to a source meanwhile makes it fail with a
//! wrong expected version; the surgery then copies the new events and tries again,
//! so no acknowledged write is left behind. Copies of a long stream go out in chunks
//! before that last append; a surgery stopped half-way leaves only new streams that
//! nobody uses yet, and running it again resumes after the copies already written.
//!
//! **Checked before any write.** Unknown or moved sources, targets that exist (and
//! are no earlier copy of the same operation), invalid jq, a skip of a revision the
//! stream does not have, a split whose filters overlap or miss an event: all fail
//! before anything is written. [`perform`] with `dry_run` checks the same and writes
//! nothing, and its [`Outcome`] says what would change.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::collections::BTreeMap;

pub mod bankruptcy;
pub mod flip;
pub mod transform;

use bytes::Bytes;
use eventfold_core::{
    AppendResult, Error, EventData, EventStore, ExpectedVersion, MIGRATED_FROM_KEY, ReadStream,
    RecordedEvent, Result, Revision, STREAM_MOVED_EVENT_TYPE, StreamWrite,
};
use eventfold_metadata::StreamAdmin;
use eventfold_schema::JqProgram;
use serde_json::{Map, Value, json};

pub use eventfold_core::plan::StreamEnd;
pub use eventfold_wire::{
    SplitTarget, SurgeryOperation as Operation, SurgeryOutcome as Outcome, SurgeryRequest,
};

/// The system stream of the audit trail: one record per surgery performed.
pub const SURGERY_STREAM: &str = "$surgery";
/// The type of an audit record in [`SURGERY_STREAM`].
pub const SURGERY_EVENT_TYPE: &str = "$surgery-performed";
/// Copies written per append before the last one.
pub const CHUNK_EVENTS: usize = 1_000;
/// Times the last append is tried again after a live writer moved a source.
const ATTEMPTS_MAX: usize = 20;

/// Who performs a surgery, and why: what the audit record keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audit {
    /// Why (required: the trail is for the people who read it later).
    pub reason: String,
    /// Who (a user name, or the account the CLI runs as).
    pub who: String,
}

/// A copy to write: its target and the event.
struct Copy {
    target: usize,
    event: EventData,
}

/// The source events read so far, and what becomes of them.
struct Work {
    /// Each source's last revision read (`None`: nothing read yet).
    read_to: Vec<Option<Revision>>,
    copies: Vec<Copy>,
    dropped: u64,
    read: u64,
}

/// Performs `operation` on `store` (or, with `dry_run`, checks it and says what it
/// would do). `progress` is called with the number of copies written so far and the
/// total known.
pub async fn perform<S: EventStore + ?Sized>(
    store: &S,
    operation: &Operation,
    audit: &Audit,
    dry_run: bool,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<Outcome> {
    if audit.reason.trim().is_empty() {
        return Err(invalid(
            "a surgery needs a reason (--reason): the audit trail keeps it",
        ));
    }
    if let Operation::Flip { .. } = operation {
        return flip::flip(store, operation, audit, dry_run).await;
    }
    let programs = Programs::compile(operation)?;
    let sources = operation.sources();
    let targets = operation.targets();
    let in_place = matches!(operation, Operation::CopyReplace { in_place: true, .. });
    if in_place {
        if sources != targets {
            return Err(invalid(&format!(
                "an in-place copy-replace writes back to its source: its target is '{}' itself, not '{}'",
                sources[0], targets[0]
            )));
        }
        check_names(&sources, &[])?;
    } else {
        check_names(&sources, &targets)?;
    }
    let mut work = Work {
        read_to: vec![None; sources.len()],
        copies: Vec::new(),
        dropped: 0,
        read: 0,
    };
    read_new(store, operation, &programs, &mut work).await?;
    if let Operation::CopyReplace { skip, source, .. } = operation
        && let Some(missing) = skip
            .iter()
            .find(|r| work.read_to[0].is_none_or(|last| **r > last.get()))
    {
        return Err(invalid(&format!(
            "--skip {missing}: stream '{source}' has no revision {missing}"
        )));
    }
    if in_place {
        return replace_in_place(store, operation, &programs, work, audit, dry_run, progress).await;
    }
    // Copies an earlier, interrupted run already wrote: each target must hold
    // nothing, or exactly the first of its copies.
    let mut written = vec![0u64; targets.len()];
    for (t, target) in targets.iter().enumerate() {
        written[t] = already_written(store, target, &work.copies, t).await?;
    }
    let resumed: u64 = written.iter().sum();
    let outcome = |work: &Work, audit_position| Outcome {
        operation: operation.name().to_string(),
        dry_run,
        targets: targets
            .iter()
            .enumerate()
            .map(|(t, s)| {
                let n = work.copies.iter().filter(|c| c.target == t).count() as u64;
                ((*s).to_string(), n)
            })
            .collect(),
        moved: sources
            .iter()
            .map(|s| ((*s).to_string(), targets[0].to_string()))
            .collect(),
        dropped: work.dropped,
        read: work.read,
        resumed,
        audit_position,
    };
    if dry_run {
        return Ok(outcome(&work, None));
    }

    let mut attempts = 0;
    loop {
        let total = work.copies.len() as u64;
        // Everything but the last chunk of each target, in chunks, each expecting the
        // target's revision so far (a concurrent writer of a new stream is refused).
        let mut pending: Vec<Vec<EventData>> = vec![Vec::new(); targets.len()];
        let mut seen = vec![0u64; targets.len()];
        for copy in &work.copies {
            seen[copy.target] += 1;
            if seen[copy.target] > written[copy.target] {
                pending[copy.target].push(copy.event.clone());
            }
        }
        let mut done: u64 = written.iter().sum();
        for (t, target) in targets.iter().enumerate() {
            while pending[t].len() > CHUNK_EVENTS {
                let rest = pending[t].split_off(CHUNK_EVENTS);
                let chunk = std::mem::replace(&mut pending[t], rest);
                let n = chunk.len() as u64;
                store
                    .append(target, expected_after(written[t]), chunk)
                    .await?;
                written[t] += n;
                done += n;
                progress(done, total);
            }
        }
        // The last copies, the markers and the audit record: one atomic append.
        let mut writes = Vec::new();
        for (t, target) in targets.iter().enumerate() {
            if !pending[t].is_empty() {
                writes.push(StreamWrite::new(
                    *target,
                    expected_after(written[t]),
                    std::mem::take(&mut pending[t]),
                ));
            } else if written[t] == 0 {
                // A target that gets no event (all dropped) must still be new.
                writes.push(StreamWrite::check(*target, ExpectedVersion::NoStream));
            }
        }
        for (s, source) in sources.iter().enumerate() {
            let expected =
                work.read_to[s].map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
            writes.push(StreamWrite::system(
                *source,
                expected,
                vec![marker(&targets)?],
            ));
        }
        // Copies repeat the sources' events in `$all`; links do not (the originals
        // stay the only events), so only copies invalidate.
        if !operation.links() {
            let replaced: Vec<(&str, u64)> = sources
                .iter()
                .zip(&work.read_to)
                .map(|(source, read_to)| (*source, read_to.map_or(0, |r| r.get() + 1)))
                .collect();
            writes.push(invalidations(&replaced, operation)?);
        }
        writes.push(audit_record(operation, audit)?);
        match store.append_multi(writes).await {
            Ok(results) => {
                progress(total, total);
                let position = results.last().map(|r: &AppendResult| r.position.get());
                return Ok(outcome(&work, position));
            }
            Err(Error::WrongExpectedVersion { stream, .. })
                if sources.contains(&stream.as_str()) && attempts < ATTEMPTS_MAX =>
            {
                // A live writer appended to a source: copy its new events too.
                attempts += 1;
                read_new(store, operation, &programs, &mut work).await?;
            }
            Err(error) => return Err(error),
        }
    }
}

/// The write of the audit record of `operation` to [`SURGERY_STREAM`].
pub(crate) fn audit_record(operation: &Operation, audit: &Audit) -> Result<StreamWrite> {
    audit_write(operation.name(), operation.arguments(), audit)
}

/// The write of one audit record `{"operation", "reason", "who", "arguments", "at"}`
/// to [`SURGERY_STREAM`]: the shape every operation's record has.
pub(crate) fn audit_write(name: &str, arguments: Value, audit: &Audit) -> Result<StreamWrite> {
    let record = json!({
        "operation": name,
        "reason": audit.reason,
        "who": audit.who,
        "arguments": arguments,
        "at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    });
    Ok(StreamWrite::system(
        SURGERY_STREAM,
        ExpectedVersion::Any,
        vec![EventData::json(SURGERY_EVENT_TYPE, &record)?],
    ))
}

/// A copy-replace in place: the copies appended to the source itself, its metadata's
/// `truncate_before` moved to the first copy (the originals are hidden, and a
/// scavenge reclaims them), and the audit record, in one atomic append: readers see
/// the old events or the new ones, never both. Not in chunks, for the same reason: a
/// stream too large for one append is refused (`too_large`) with nothing written.
async fn replace_in_place<S: EventStore + ?Sized>(
    store: &S,
    operation: &Operation,
    programs: &Programs,
    mut work: Work,
    audit: &Audit,
    dry_run: bool,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<Outcome> {
    let source = operation.sources()[0];
    let metadata_stream = eventfold_metadata::metadata_stream(source);
    let mut attempts = 0;
    loop {
        let copies = work.copies.len() as u64;
        let mut outcome = Outcome {
            operation: operation.name().to_string(),
            dry_run,
            targets: [(source.to_string(), copies)].into(),
            moved: BTreeMap::new(),
            dropped: work.dropped,
            read: work.read,
            resumed: 0,
            audit_position: None,
        };
        if dry_run {
            return Ok(outcome);
        }
        let Some(last) = work.read_to[0] else {
            return Err(Error::StreamNotFound {
                stream: source.to_string(),
            });
        };
        let record = store.stream_metadata(source).await?;
        let mut metadata = record.metadata.clone();
        metadata.truncate_before = Some(Revision(last.get() + 1));
        let events: Vec<EventData> = work.copies.iter().map(|c| c.event.clone()).collect();
        let writes = vec![
            if events.is_empty() {
                StreamWrite::check(source, ExpectedVersion::Exact(last))
            } else {
                StreamWrite::new(source, ExpectedVersion::Exact(last), events)
            },
            StreamWrite::system(
                metadata_stream.as_str(),
                record.expected(),
                vec![EventData::json(
                    eventfold_metadata::METADATA_EVENT_TYPE,
                    &metadata,
                )?],
            ),
            invalidations(&[(source, last.get() + 1)], operation)?,
            audit_record(operation, audit)?,
        ];
        match store.append_multi(writes).await {
            Ok(results) => {
                progress(copies, copies);
                outcome.audit_position = results.last().map(|r| r.position.get());
                return Ok(outcome);
            }
            Err(Error::WrongExpectedVersion { stream, .. })
                if (stream == source || stream == metadata_stream) && attempts < ATTEMPTS_MAX =>
            {
                // A live writer appended to the stream, or its metadata changed: copy
                // the new events too, and read the metadata again.
                attempts += 1;
                read_new(store, operation, programs, &mut work).await?;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Reads what `$surgery` holds: every audit record, oldest first.
pub async fn log<S: EventStore + ?Sized>(store: &S) -> Result<Vec<RecordedEvent>> {
    match store
        .read_stream(SURGERY_STREAM, ReadStream::forward())
        .await
    {
        Err(Error::StreamNotFound { .. }) => Ok(Vec::new()),
        other => other,
    }
}

/// The compiled jq programs of an operation.
struct Programs {
    transform: Option<JqProgram>,
    filters: Vec<JqProgram>,
}

impl Programs {
    fn compile(operation: &Operation) -> Result<Programs> {
        let compile = |what: &str, source: &str| {
            JqProgram::compile(source)
                .map_err(|e| invalid(&format!("{what} '{source}' is not a valid jq program: {e}")))
        };
        Ok(match operation {
            Operation::CopyReplace { transform, .. } => Programs {
                transform: transform
                    .as_deref()
                    .map(|t| compile("the transform", t))
                    .transpose()?,
                filters: Vec::new(),
            },
            Operation::Split { into, .. } => {
                if into.len() < 2 {
                    return Err(invalid(
                        "a split needs two target streams or more (--into NAME=FILTER ...)",
                    ));
                }
                Programs {
                    transform: None,
                    filters: into
                        .iter()
                        .map(|t| compile(&format!("the filter of '{}'", t.stream), &t.filter))
                        .collect::<Result<_>>()?,
                }
            }
            Operation::Flip { .. } => return Err(invalid("a flip copies no stream")),
            Operation::Join { sources, .. } => {
                if sources.len() < 2 {
                    return Err(invalid("a join needs two source streams or more"));
                }
                Programs {
                    transform: None,
                    filters: Vec::new(),
                }
            }
        })
    }
}

/// Checks the names: valid user streams, no stream twice, no target among sources.
fn check_names(sources: &[&str], targets: &[&str]) -> Result<()> {
    let mut all = std::collections::HashSet::new();
    for name in sources.iter().chain(targets) {
        eventfold_core::validate_stream_name(name)?;
        if !all.insert(*name) {
            return Err(invalid(&format!(
                "stream '{name}' is named twice (a target must be a new stream, and no stream can be a source twice)"
            )));
        }
    }
    Ok(())
}

/// Reads each source's events after what `work` read, and turns them into copies.
async fn read_new<S: EventStore + ?Sized>(
    store: &S,
    operation: &Operation,
    programs: &Programs,
    work: &mut Work,
) -> Result<()> {
    let mut new: Vec<(usize, RecordedEvent)> = Vec::new();
    for (s, source) in operation.sources().iter().enumerate() {
        let from = work.read_to[s].map_or(Revision(0), |r| Revision(r.get() + 1));
        // An unknown (or soft-deleted) source fails here, on its first read; later
        // reads start past its end and find only what a live writer added.
        let events = store
            .read_stream(source, ReadStream::forward().from(from).links_as_written())
            .await?;
        if let Some(last) = events.last() {
            work.read_to[s] = Some(last.revision);
        }
        new.extend(events.into_iter().map(|e| (s, e)));
    }
    // A source that ends with a move marker was moved already: refused before any
    // of its events is transformed or filtered.
    if let Some((_, marker)) = new
        .iter()
        .find(|(_, e)| e.event_type == STREAM_MOVED_EVENT_TYPE)
        && let StreamEnd::Moved(to) = StreamEnd::of(&marker.event_type, &marker.data)
    {
        return Err(Error::StreamMoved {
            stream: marker.stream.clone(),
            moved_to: to,
        });
    }
    // A join keeps the order of `$all`.
    new.sort_by_key(|(_, e)| e.position);
    let sources = operation.sources();
    for (_, event) in new {
        work.read += 1;
        check_movable(&event, &sources)?;
        match operation {
            Operation::CopyReplace { skip, .. } => {
                if skip.contains(&event.revision.get()) {
                    work.dropped += 1;
                    continue;
                }
                let outputs = match &programs.transform {
                    None => vec![copy_of(&event, None)?],
                    Some(program) => run(program, &event, "the transform")?
                        .into_iter()
                        .map(|out| copy_of(&event, Some(out)))
                        .collect::<Result<_>>()?,
                };
                if outputs.is_empty() {
                    work.dropped += 1;
                }
                work.copies
                    .extend(outputs.into_iter().map(|event| Copy { target: 0, event }));
            }
            Operation::Split { into, .. } => {
                let mut matched = Vec::new();
                for (t, filter) in programs.filters.iter().enumerate() {
                    let out = run(filter, &event, "a split filter")?;
                    if out.first().is_some_and(|v| v.as_bool() == Some(true)) {
                        matched.push(t);
                    }
                }
                let at = format!("{}@{} ({})", event.revision, event.stream, event.event_type);
                let target = match matched[..] {
                    [t] => t,
                    [] => {
                        return Err(invalid(&format!(
                            "no split filter matches {at}: every event must go to exactly one stream"
                        )));
                    }
                    _ => {
                        let names: Vec<&str> =
                            matched.iter().map(|t| into[*t].stream.as_str()).collect();
                        return Err(invalid(&format!(
                            "the split filters of {} all match {at}: every event must go to exactly one stream",
                            names.join(", ")
                        )));
                    }
                };
                work.copies.push(Copy {
                    target,
                    event: copy_or_link(&event, operation.links())?,
                });
            }
            Operation::Join { .. } => work.copies.push(Copy {
                target: 0,
                event: copy_or_link(&event, operation.links())?,
            }),
            Operation::Flip { .. } => {}
        }
    }
    Ok(())
}

/// Refuses to move a system event, and a compensation or link that points into one
/// of the operation's sources: its `<revision>@<stream>` would name the old place of
/// an event the surgery moves (fold the compensation into the copies with
/// `copy-replace --skip` or a transform instead). One that points elsewhere is
/// moved like any event.
fn check_movable(event: &RecordedEvent, sources: &[&str]) -> Result<()> {
    let at = format!("{}@{}", event.revision, event.stream);
    if !eventfold_core::CLIENT_SYSTEM_EVENT_TYPES.contains(&event.event_type.as_str()) {
        if event.event_type.starts_with('$') {
            return Err(invalid(&format!(
                "{at} is a system event ({}): surgery moves only user events",
                event.event_type
            )));
        }
        return Ok(());
    }
    if let Ok(Some(target)) = eventfold_core::referenced_event(&event.event_type, &event.data)
        && sources.contains(&target.stream.as_str())
    {
        return Err(invalid(&format!(
            "{at} is a {} of {target}, in a stream this surgery moves: its reference \
             would point at the old place; leave the compensated event out (--skip) or \
             correct it with --transform, and skip the compensation too",
            event.event_type
        )));
    }
    Ok(())
}

/// The copy of `event`, or with `link`, a link to it (carrying `$migrated_from`
/// like a copy, so an interrupted run resumes after it).
fn copy_or_link(event: &RecordedEvent, link: bool) -> Result<EventData> {
    if !link {
        return copy_of(event, None);
    }
    let at = format!("{}@{}", event.revision.get(), event.stream);
    if event.event_type.starts_with('$') {
        return Err(invalid(&format!(
            "{at} is a {} event: a link points only at an application's event; \
             move these streams by copy (without --link)",
            event.event_type
        )));
    }
    EventData::json(eventfold_core::LINK_EVENT_TYPE, &json!({ "event": at }))?
        .with_metadata(&json!({ MIGRATED_FROM_KEY: at }))
}

/// The notices to projections that the events of each `(stream, before)` below
/// revision `before` were replaced by `operation`.
fn invalidations(replaced: &[(&str, u64)], operation: &Operation) -> Result<StreamWrite> {
    let notices = replaced
        .iter()
        .map(|(stream, before)| {
            let notice = json!({
                "stream": stream,
                "before": before,
                "surgery": operation.name(),
                "replaced_by": operation.targets(),
            });
            EventData::json(eventfold_core::INVALIDATED_EVENT_TYPE, &notice)
        })
        .collect::<Result<_>>()?;
    Ok(StreamWrite::system(
        eventfold_core::INVALIDATIONS_STREAM,
        ExpectedVersion::Any,
        notices,
    ))
}

/// The event as jq programs see it.
pub(crate) fn as_json(event: &RecordedEvent) -> Value {
    let parse = |bytes: &Bytes| serde_json::from_slice::<Value>(bytes).unwrap_or(Value::Null);
    json!({
        "stream": event.stream,
        "revision": event.revision.get(),
        "type": event.event_type,
        "version": event.version,
        "data": parse(&event.data),
        "metadata": parse(&event.metadata),
    })
}

fn run(program: &JqProgram, event: &RecordedEvent, what: &str) -> Result<Vec<Value>> {
    program.run(as_json(event)).map_err(|e| {
        invalid(&format!(
            "{what} failed on {}@{}: {e}",
            event.revision, event.stream
        ))
    })
}

/// The copy of `event` (or, with `output`, the event a transform made of it), with
/// `$migrated_from` in its metadata and a fresh id.
pub(crate) fn copy_of(event: &RecordedEvent, output: Option<Value>) -> Result<EventData> {
    let from = format!("{}@{}", event.revision.get(), event.stream);
    let (event_type, version, data, metadata) = match output {
        None => (
            event.event_type.clone(),
            event.version,
            event.data.clone(),
            serde_json::from_slice::<Value>(&event.metadata).unwrap_or_else(|_| json!({})),
        ),
        Some(Value::Object(mut out)) => {
            let event_type = match out.remove("type") {
                Some(Value::String(t)) => t,
                None => event.event_type.clone(),
                Some(other) => {
                    return Err(invalid(&format!(
                        "the transform made a \"type\" of {other} from {from}: a type is a string"
                    )));
                }
            };
            let version = match out.remove("version") {
                None => event.version,
                Some(v) => v
                    .as_u64()
                    .and_then(|v| u32::try_from(v).ok())
                    .ok_or_else(|| {
                        invalid(&format!(
                            "the transform made a \"version\" of {v} from {from}"
                        ))
                    })?,
            };
            let data = match out.remove("data") {
                Some(data) => Bytes::from(serde_json::to_vec(&data).map_err(json_error)?),
                None => event.data.clone(),
            };
            let metadata = out.remove("metadata").unwrap_or_else(|| {
                serde_json::from_slice(&event.metadata).unwrap_or_else(|_| json!({}))
            });
            (event_type, version, data, metadata)
        }
        Some(other) => {
            return Err(invalid(&format!(
                "the transform made {other} from {from}: it must output event objects \
                 ({{\"type\", \"data\", \"metadata\"?, \"version\"?}}) or nothing"
            )));
        }
    };
    let mut metadata = match metadata {
        Value::Object(map) => map,
        Value::Null => Map::new(),
        other => {
            return Err(invalid(&format!(
                "the metadata of the copy of {from} would be {other}: metadata is a JSON object"
            )));
        }
    };
    metadata.insert(MIGRATED_FROM_KEY.to_string(), Value::String(from));
    Ok(EventData {
        id: None,
        event_type,
        version,
        data,
        metadata: Bytes::from(serde_json::to_vec(&metadata).map_err(json_error)?),
    })
}

/// How many of `copies` for target `t` the stream `target` already holds: 0 when it
/// does not exist; an error when it exists and is not a prefix of them.
async fn already_written<S: EventStore + ?Sized>(
    store: &S,
    target: &str,
    copies: &[Copy],
    t: usize,
) -> Result<u64> {
    let existing = match store
        .read_stream(target, ReadStream::forward().links_as_written())
        .await
    {
        Err(Error::StreamNotFound { .. }) => return Ok(0),
        other => other?,
    };
    let ours: Vec<&EventData> = copies
        .iter()
        .filter(|c| c.target == t)
        .map(|c| &c.event)
        .collect();
    let resumable = existing.len() <= ours.len()
        && existing.iter().zip(&ours).all(|(stored, copy)| {
            migrated_from(&stored.metadata).is_some()
                && migrated_from(&stored.metadata) == migrated_from(&copy.metadata)
                && stored.event_type == copy.event_type
        });
    if !resumable {
        return Err(invalid(&format!(
            "target stream '{target}' exists (a surgery writes only new streams; \
             choose another name)"
        )));
    }
    Ok(existing.len() as u64)
}

fn migrated_from(metadata: &[u8]) -> Option<String> {
    let map: Map<String, Value> = serde_json::from_slice(metadata).ok()?;
    map.get(MIGRATED_FROM_KEY)?.as_str().map(str::to_string)
}

fn expected_after(written: u64) -> ExpectedVersion {
    written
        .checked_sub(1)
        .map_or(ExpectedVersion::NoStream, |r| {
            ExpectedVersion::Exact(Revision(r))
        })
}

fn marker(targets: &[&str]) -> Result<EventData> {
    let data = if targets.len() == 1 {
        json!({ "stream": targets[0] })
    } else {
        json!({ "stream": targets[0], "streams": targets })
    };
    EventData::json(STREAM_MOVED_EVENT_TYPE, &data)
}

/// The error of a surgery refused before any write: "invalid surgery: ...".
pub(crate) fn invalid(reason: &str) -> Error {
    Error::InvalidSetting {
        setting: "surgery".into(),
        reason: reason.to_string(),
    }
}

fn json_error(e: serde_json::Error) -> Error {
    invalid(&format!("a copy is not valid JSON: {e}"))
}
