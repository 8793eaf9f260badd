//! Copy-Transform: a whole store copied into a new one (any backend to any backend),
//! each user event through a jq program or a Rust function, following the old store
//! live until its flip ([`crate::flip`]).
//!
//! The copy reads the source's `$all` page by page and writes each page into the
//! target in `$all` order: one atomic append per run of events in which no stream
//! comes back after another (an event of a stream already in the run, after events
//! of other streams, starts the next run), each write expecting the target stream's
//! revision so far, so that a second copy writing the same target at the same time is
//! refused instead of writing twice.
//!
//! - **User events** go through the transform: an event in, zero or more out
//!   (`{"type", "data", "metadata"?, "version"?, "stream"?}`; `stream` renames). The
//!   first copy keeps the event's id; every copy keeps its `recorded_at` and carries
//!   `$migrated_from` (`<revision>@<stream>`) and `$source_position` in its metadata.
//! - **System events** are copied as they are, with `$source_position`: stream
//!   metadata (`$$<stream>`, its `truncate_before` moved to the target's revisions),
//!   tombstones and move markers, schemas, registered folds, the audit trails, the
//!   notifications of forgotten subjects.
//! - **Left out**: consumer-group state (`$persistent-`, `$checkpoint-`, `$parked-`:
//!   positions of the old log; groups are created again on the new store) and the
//!   old store's `$store`.
//!
//! **Resumable.** Where to start is read from the target: the `$source_position` of
//! its last copy. A copy stopped anywhere starts again after the last append that
//! went through.
//!
//! **The flip.** When the source is read-only (its `$store` ends with
//! `$store-read-only`) and the copy has read it to its end, it writes
//! `$store-caught-up {"source_position", "reason"}` to the target's `$store`: the
//! source can take no more writes, so nothing can be missing, and the copy ends (with
//! `follow`, this is how it ends) saying that traffic may switch.

use std::collections::HashMap;

use bytes::Bytes;
use eventfold_core::{
    AllSlice, Error, EventData, EventStore, ExpectedVersion, MIGRATED_FROM_KEY, Position, ReadAll,
    ReadStream, RecordedEvent, Result, Revision, STORE_CAUGHT_UP_EVENT_TYPE, STORE_STREAM,
    StreamWrite,
};
use eventfold_schema::JqProgram;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::flip::flip_reason;
use crate::{Audit, SURGERY_STREAM, as_json, audit_write, copy_of, invalid};

/// The metadata key of every copy a store copy writes: the position of the event it
/// was copied from in the source's `$all` (where a resumed copy starts again).
pub const SOURCE_POSITION_KEY: &str = "$source_position";
/// Source events read per page.
pub const PAGE_EVENTS: u64 = 1_000;
/// System streams not copied: consumer-group state names positions of the old log.
const LEFT_OUT_PREFIXES: &[&str] = &["$persistent-", "$checkpoint-", "$parked-"];

/// What a user event becomes in the new store.
pub enum Transform {
    /// Copied as it is.
    Copy,
    /// Through a jq program, from the event (`{"stream", "revision", "type",
    /// "version", "data", "metadata"}`) to the events it becomes (`{"type", "data",
    /// "metadata"?, "version"?, "stream"?}` each; none drops it).
    Jq(JqProgram),
    /// Through a Rust function, to the events it becomes, each with its stream.
    Rust(Box<RustTransform>),
}

/// A transform written in Rust: the event to its copies (stream and event each).
pub type RustTransform = dyn Fn(&RecordedEvent) -> Result<Vec<(String, EventData)>> + Send + Sync;

impl Transform {
    /// The jq program `source`, compiled; `None`: a plain copy.
    pub fn jq(source: Option<&str>) -> Result<Transform> {
        match source {
            None => Ok(Transform::Copy),
            Some(source) => JqProgram::compile(source).map(Transform::Jq).map_err(|e| {
                invalid(&format!(
                    "the program '{source}' is not a valid jq program: {e}"
                ))
            }),
        }
    }

    /// The copies of a user event: stream and event each.
    fn apply(&self, event: &RecordedEvent) -> Result<Vec<(String, EventData)>> {
        let outputs = match self {
            Transform::Copy => vec![(event.stream.clone(), copy_of(event, None)?)],
            Transform::Jq(program) => {
                let values = program.run(as_json(event)).map_err(|e| {
                    invalid(&format!(
                        "the program failed on {}@{}: {e}",
                        event.revision, event.stream
                    ))
                })?;
                values
                    .into_iter()
                    .map(|value| {
                        let (stream, value) = match value {
                            Value::Object(mut out) => {
                                let stream = match out.remove("stream") {
                                    None => event.stream.clone(),
                                    Some(Value::String(stream)) => stream,
                                    Some(other) => {
                                        return Err(invalid(&format!(
                                            "the program made a \"stream\" of {other} from {}@{}: a stream is a string",
                                            event.revision, event.stream
                                        )));
                                    }
                                };
                                (stream, Value::Object(out))
                            }
                            other => (event.stream.clone(), other),
                        };
                        Ok((stream, copy_of(event, Some(value))?))
                    })
                    .collect::<Result<_>>()?
            }
            Transform::Rust(f) => f(event)?
                .into_iter()
                .map(|(stream, copy)| {
                    let metadata = with_key(
                        &copy.metadata,
                        MIGRATED_FROM_KEY,
                        json!(format!("{}@{}", event.revision.get(), event.stream)),
                    )?;
                    Ok((stream, EventData { metadata, ..copy }))
                })
                .collect::<Result<_>>()?,
        };
        Ok(outputs)
    }
}

/// How to copy.
#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    /// After the last event, wait for new ones, until the source is flipped.
    pub follow: bool,
    /// Read everything and count what would be written; write nothing.
    pub dry_run: bool,
    /// The arguments for the audit record (source, target, program, as given).
    pub arguments: Value,
}

/// What a store copy did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyOutcome {
    /// Whether nothing was written.
    pub dry_run: bool,
    /// The source position this run started at (after the copies an earlier run
    /// wrote).
    pub started_at: u64,
    /// Source events read.
    pub read: u64,
    /// Events written to the target (in a dry run: that would be).
    pub copied: u64,
    /// User events the transform dropped.
    pub dropped: u64,
    /// Events not copied: consumer-group state and the old store's `$store`.
    pub left_out: u64,
    /// When the source is read-only and the target caught up with it: the source's
    /// last position, which the target's `$store-caught-up` names.
    pub caught_up: Option<u64>,
}

/// Copies `source` into `target` (see the module documentation). `progress` gets the
/// source position reached and the source's head.
pub async fn copy_store<S, T>(
    source: &S,
    target: &T,
    transform: &Transform,
    options: &CopyOptions,
    audit: &Audit,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<CopyOutcome>
where
    S: EventStore + ?Sized,
    T: EventStore + ?Sized,
{
    if audit.reason.trim().is_empty() {
        return Err(invalid(
            "a transform needs a reason (--reason): the audit trail keeps it",
        ));
    }
    let resume = resume_point(target).await?;
    let mut next = resume.map_or(0, |p| p + 1);
    let caught_up_before = caught_up_at(target).await?;
    let mut outcome = CopyOutcome {
        dry_run: options.dry_run,
        started_at: next,
        read: 0,
        copied: 0,
        dropped: 0,
        left_out: 0,
        caught_up: None,
    };
    if resume.is_none() && !options.dry_run && target.head_position().await?.is_some() {
        return Err(invalid(
            "the target store holds events that are no copy: a transform writes into a new, empty store",
        ));
    }
    if let Some(position) = caught_up_before
        && resume == Some(position)
        && source.head_position().await?.map(Position::get) == Some(position)
    {
        // An earlier run copied everything up to the flip and said so.
        outcome.caught_up = Some(position);
        return Ok(outcome);
    }
    let mut copier = Copier {
        target,
        revisions: HashMap::new(),
        dry_run: options.dry_run,
    };
    if !options.dry_run {
        let written = copier
            .append(vec![audit_write(
                "transform",
                options.arguments.clone(),
                audit,
            )?])
            .await?;
        copier.advanced(SURGERY_STREAM, written.last().map(|r| r.last_revision));
    }
    // Whether the source is read-only as of what was read: a flip seen on the way,
    // or, for a run that starts after it, the end of its `$store` now.
    let mut flip = match source
        .read_stream(STORE_STREAM, ReadStream::backward().limit(1))
        .await
    {
        Err(Error::StreamNotFound { .. }) => None,
        other => other?
            .first()
            .filter(|e| e.position.get() < next)
            .and_then(flip_reason),
    };
    loop {
        let AllSlice {
            events, end_of_log, ..
        } = source
            .read_all(ReadAll::from(Position(next), PAGE_EVENTS))
            .await?;
        let mut copies: Vec<Copied> = Vec::new();
        for event in &events {
            outcome.read += 1;
            next = event.position.get() + 1;
            if event.stream == STORE_STREAM {
                outcome.left_out += 1;
                flip = flip_reason(event);
                continue;
            }
            if LEFT_OUT_PREFIXES
                .iter()
                .any(|p| event.stream.starts_with(p))
            {
                outcome.left_out += 1;
                continue;
            }
            let position = json!(event.position.get());
            if event.stream.starts_with('$') || event.event_type.starts_with('$') {
                let mut copy = system_copy(event)?;
                if let Some(stream) = event.stream.strip_prefix("$$") {
                    copy.data = copier.translate_metadata(stream, &copy.data).await?;
                }
                copy.metadata = with_key(&copy.metadata, SOURCE_POSITION_KEY, position)?;
                copies.push(Copied {
                    stream: event.stream.clone(),
                    system: true,
                    event: copy,
                    recorded_at: event.recorded_at,
                });
                continue;
            }
            let outputs = transform.apply(event)?;
            if outputs.is_empty() {
                outcome.dropped += 1;
            }
            for (i, (stream, mut copy)) in outputs.into_iter().enumerate() {
                if i == 0 {
                    copy.id = Some(event.id);
                }
                copy.metadata = with_key(&copy.metadata, SOURCE_POSITION_KEY, position.clone())?;
                copies.push(Copied {
                    stream,
                    system: false,
                    event: copy,
                    recorded_at: event.recorded_at,
                });
            }
        }
        outcome.copied += copies.len() as u64;
        copier.write(copies).await?;
        let head = source.head_position().await?.map_or(0, |p| p.get() + 1);
        progress(next, head);
        if let Some(reason) = &flip
            && end_of_log
        {
            // The source is read-only and every event of it was read: the target
            // holds everything it will ever hold.
            let position = next.saturating_sub(1);
            if !options.dry_run {
                let marker = EventData::json(
                    STORE_CAUGHT_UP_EVENT_TYPE,
                    &json!({ "source_position": position, "reason": reason }),
                )?;
                let marker = EventData {
                    metadata: with_key(&marker.metadata, SOURCE_POSITION_KEY, json!(position))?,
                    ..marker
                };
                copier
                    .append(vec![StreamWrite::system(
                        STORE_STREAM,
                        ExpectedVersion::Any,
                        vec![marker],
                    )])
                    .await?;
            }
            outcome.caught_up = Some(position);
            return Ok(outcome);
        }
        if end_of_log {
            if !options.follow || options.dry_run {
                return Ok(outcome);
            }
            // Live: wait until the source writes the event at `next`.
            source.wait_for(Position(next)).await?;
        }
    }
}

/// The source position of the target's last copy: `None` when the target holds none.
pub async fn resume_point<T: EventStore + ?Sized>(target: &T) -> Result<Option<u64>> {
    let Some(head) = target.head_position().await? else {
        return Ok(None);
    };
    // Back from the head, a page at a time, for the last event that is a copy (the
    // audit records of later runs come after it).
    let mut end = head.get() + 1;
    while end > 0 {
        let from = end.saturating_sub(256);
        let page = target
            .read_all(ReadAll::from(Position(from), end - from))
            .await?;
        if let Some(position) = page
            .events
            .iter()
            .rev()
            .filter(|e| e.position.get() < end)
            .find_map(|e| source_position(&e.metadata))
        {
            return Ok(Some(position));
        }
        end = from;
    }
    Ok(None)
}

/// The source position of the flip the target last caught up with, if its `$store`
/// ends with such a marker.
async fn caught_up_at<T: EventStore + ?Sized>(target: &T) -> Result<Option<u64>> {
    let last = match target
        .read_stream(STORE_STREAM, ReadStream::backward().limit(1))
        .await
    {
        Err(Error::StreamNotFound { .. }) => return Ok(None),
        other => other?,
    };
    Ok(last
        .first()
        .filter(|e| e.event_type == STORE_CAUGHT_UP_EVENT_TYPE)
        .and_then(|e| source_position(&e.metadata)))
}

fn source_position(metadata: &[u8]) -> Option<u64> {
    let map: Map<String, Value> = serde_json::from_slice(metadata).ok()?;
    map.get(SOURCE_POSITION_KEY)?.as_u64()
}

/// One copy to write: its stream, whether it is a system event, and when its source
/// event was recorded.
struct Copied {
    stream: String,
    system: bool,
    event: EventData,
    recorded_at: chrono::DateTime<chrono::Utc>,
}

/// The events of one stream in one append.
struct RunWrite {
    stream: String,
    system: bool,
    events: Vec<EventData>,
    times: Vec<chrono::DateTime<chrono::Utc>>,
}

/// The target and what the copy knows of its streams.
struct Copier<'a, T: EventStore + ?Sized> {
    target: &'a T,
    /// Each target stream's last revision, read once and then kept.
    revisions: HashMap<String, Option<Revision>>,
    dry_run: bool,
}

impl<T: EventStore + ?Sized> Copier<'_, T> {
    async fn revision(&mut self, stream: &str) -> Result<Option<Revision>> {
        if let Some(revision) = self.revisions.get(stream) {
            return Ok(*revision);
        }
        let revision = match self.target.stream_revision(stream).await {
            Err(Error::StreamNotFound { .. }) => None,
            other => other?,
        };
        self.revisions.insert(stream.to_string(), revision);
        Ok(revision)
    }

    fn advanced(&mut self, stream: &str, last: Option<Revision>) {
        self.revisions.insert(stream.to_string(), last);
    }

    async fn append(
        &mut self,
        writes: Vec<StreamWrite>,
    ) -> Result<Vec<eventfold_core::AppendResult>> {
        if self.dry_run {
            return Ok(Vec::new());
        }
        self.target.append_multi(writes).await
    }

    /// Writes `copies` in order: one append per run in which no stream comes back.
    async fn write(&mut self, copies: Vec<Copied>) -> Result<()> {
        let mut run: Vec<RunWrite> = Vec::new();
        for copy in copies {
            if let Some(last) = run.last_mut()
                && last.stream == copy.stream
            {
                last.events.push(copy.event);
                last.times.push(copy.recorded_at);
                continue;
            }
            if run.iter().any(|w| w.stream == copy.stream) {
                let full = std::mem::take(&mut run);
                self.write_run(full).await?;
            }
            run.push(RunWrite {
                stream: copy.stream,
                system: copy.system,
                events: vec![copy.event],
                times: vec![copy.recorded_at],
            });
        }
        if !run.is_empty() {
            self.write_run(run).await?;
        }
        Ok(())
    }

    async fn write_run(&mut self, run: Vec<RunWrite>) -> Result<()> {
        let mut writes = Vec::with_capacity(run.len());
        let mut lasts = Vec::with_capacity(run.len());
        for RunWrite {
            stream,
            system,
            events,
            times,
        } in run
        {
            let revision = self.revision(&stream).await?;
            let expected = revision.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
            let count = events.len() as u64;
            lasts.push((
                stream.clone(),
                Revision(revision.map_or(0, |r| r.get() + 1) + count - 1),
            ));
            let write = if system {
                StreamWrite::system(stream, expected, events)
            } else {
                StreamWrite::new(stream, expected, events)
            };
            writes.push(write.with_recorded_at(times));
        }
        self.append(writes).await.map_err(|error| match error {
            Error::WrongExpectedVersion { stream, .. } => invalid(&format!(
                "stream '{stream}' of the target changed while this copy wrote it: \
                 only one transform may write a target, and nothing else"
            )),
            other => other,
        })?;
        for (stream, last) in lasts {
            self.revisions.insert(stream, Some(last));
        }
        Ok(())
    }

    /// Stream metadata as the target's stream needs it: a `truncate_before` that
    /// names a source revision names the first target copy of that revision or a
    /// later one (revisions differ once events were dropped, hidden or scavenged).
    async fn translate_metadata(&mut self, stream: &str, data: &Bytes) -> Result<Bytes> {
        let Ok(mut metadata) = serde_json::from_slice::<Map<String, Value>>(data) else {
            return Ok(data.clone());
        };
        let Some(before) = metadata.get("truncate_before").and_then(Value::as_u64) else {
            return Ok(data.clone());
        };
        let copies = if self.dry_run {
            Vec::new()
        } else {
            match self.target.read_stream(stream, ReadStream::forward()).await {
                Err(Error::StreamNotFound { .. }) => Vec::new(),
                other => other?,
            }
        };
        let from = |e: &RecordedEvent| {
            let map: Map<String, Value> = serde_json::from_slice(&e.metadata).ok()?;
            let from = map.get(MIGRATED_FROM_KEY)?.as_str()?.to_string();
            from.split_once('@')?.0.parse::<u64>().ok()
        };
        let translated = match copies.iter().find(|e| from(e).is_some_and(|r| r >= before)) {
            Some(first) => first.revision.get(),
            // Past every copy so far: as far past the target's end as past the
            // source's last copied revision.
            None => {
                let len = copies.last().map_or(0, |e| e.revision.get() + 1);
                let source_len = copies.iter().filter_map(from).max().map_or(0, |r| r + 1);
                len + before.saturating_sub(source_len)
            }
        };
        metadata.insert("truncate_before".into(), json!(translated));
        Ok(Bytes::from(
            serde_json::to_vec(&metadata).map_err(|e| invalid(&e.to_string()))?,
        ))
    }
}

/// A system event as it is: type, version, data and metadata, and its id.
fn system_copy(event: &RecordedEvent) -> Result<EventData> {
    Ok(EventData {
        id: Some(event.id),
        event_type: event.event_type.clone(),
        version: event.version,
        data: event.data.clone(),
        metadata: event.metadata.clone(),
    })
}

/// `metadata` (a JSON object, or empty) with `key` set to `value`.
fn with_key(metadata: &[u8], key: &str, value: Value) -> Result<Bytes> {
    let mut map: Map<String, Value> = if metadata.is_empty() {
        Map::new()
    } else {
        serde_json::from_slice(metadata).unwrap_or_default()
    };
    map.insert(key.to_string(), value);
    Ok(Bytes::from(
        serde_json::to_vec(&map).map_err(|e| invalid(&e.to_string()))?,
    ))
}
