//! Versioning bankruptcy: when the history of a store has so many versions, upcasts
//! and fixes that carrying it on costs more than it is worth, close the period and
//! start a new store whose streams begin from their state.
//!
//! 1. The old store is flipped read-only, labelled (`$store-read-only` whose reason
//!    names the label and the new store, and the audit record): it becomes the
//!    archive of the period, readable as ever, and no write can land in it while the
//!    states are computed.
//! 2. Each open user stream of a category that has a fold is folded (a fold
//!    registered in the old store, `$projections`, its events converted to their
//!    newest versions) and starts in the new store with one `Initialized` event
//!    whose data is that state, and whose metadata names the label and the revision
//!    folded (`$migrated_from`). Streams of other categories are copied as they are.
//!    Deleted and moved streams end with the period.
//! 3. The registry (`$schemas`, `$projections`) and the audit trail come along; the
//!    new store's `$surgery` gets the bankruptcy's own record.
//!
//! Stopped half-way, it is run again: the old store is already closed under the same
//! label, and streams that the new store holds already are left as they are.

use std::collections::BTreeMap;
use std::sync::Arc;

use eventfold_core::plan::StreamEnd;
use eventfold_core::{
    Error, EventData, EventStore, ExpectedVersion, MIGRATED_FROM_KEY, ReadStream, Result,
    STORE_READ_ONLY_EVENT_TYPE, STORE_STREAM, StreamWrite, category_of,
};
use eventfold_schema::{SchemaError, SchemaStore};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{Audit, SURGERY_STREAM, audit_write, copy_of, flip, invalid};

/// The type of the event each folded stream starts with in the new store.
pub const INITIALIZED_EVENT_TYPE: &str = "Initialized";
/// The metadata key of an `Initialized` event: the label of the period it closes.
pub const BANKRUPTCY_KEY: &str = "$bankruptcy";
/// System streams the new store keeps: the registry, the folds, the trails.
const CARRIED_SYSTEM_STREAMS: &[&str] = &["$schemas", "$projections", SURGERY_STREAM, "$repairs"];
/// Streams listed per page, and `Initialized` events per append.
const PAGE: usize = 500;

/// What to close and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bankruptcy {
    /// The period's label (e.g. `2019-2026`), kept in the old store's read-only
    /// marker and in every `Initialized` event.
    pub label: String,
    /// The fold registered in the old store for each category whose streams start
    /// from their state (category → fold name).
    pub folds: BTreeMap<String, String>,
    /// The new store, as messages name it (no credentials).
    pub to: String,
}

/// What a bankruptcy did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BankruptcyOutcome {
    /// Whether nothing was written.
    pub dry_run: bool,
    /// Streams that start from an `Initialized` event, per category.
    pub initialized: BTreeMap<String, u64>,
    /// Streams copied as they are (no fold for their category).
    pub copied: u64,
    /// Deleted or moved streams, left with the period.
    pub ended: u64,
    /// Streams the new store held already (a resumed run).
    pub resumed: u64,
}

/// Declares `source` bankrupt into `target` (see the module documentation).
pub async fn declare<S, T>(
    source: Arc<S>,
    target: &T,
    bankruptcy: &Bankruptcy,
    audit: &Audit,
    dry_run: bool,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<BankruptcyOutcome>
where
    S: EventStore + ?Sized,
    T: EventStore + ?Sized,
{
    if audit.reason.trim().is_empty() || bankruptcy.label.trim().is_empty() {
        return Err(invalid(
            "a bankruptcy needs a reason (--reason) and a label (--label): the archive keeps both",
        ));
    }
    if bankruptcy.folds.is_empty() {
        return Err(invalid(
            "a bankruptcy needs a fold for one category or more (--fold CATEGORY=FOLD)",
        ));
    }
    let schemas = SchemaStore::open(source.clone())
        .await
        .map_err(schema_error)?;
    let mut folds = BTreeMap::new();
    for (category, name) in &bankruptcy.folds {
        let fold = schemas.fold(name).await.map_err(|e| match e {
            SchemaError::ProjectionNotFound { name } => invalid(&format!(
                "no fold named '{name}' is registered in the old store (eventfold projection register)"
            )),
            other => schema_error(other),
        })?;
        folds.insert(category.clone(), fold);
    }
    let closing = format!(
        "closed by the bankruptcy of period '{}': continued in {}",
        bankruptcy.label, bankruptcy.to
    );
    match flip::read_only_reason(source.as_ref()).await? {
        Some(reason) if reason.starts_with(&closing) => {}
        Some(reason) => {
            return Err(invalid(&format!(
                "the old store is read-only already ({reason}); undo that flip first"
            )));
        }
        None if dry_run => {}
        None => {
            // First of all, the period closes: nothing written after this point can
            // be missing from the states.
            let expected = source
                .stream_revision(STORE_STREAM)
                .await?
                .map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
            let marker = EventData::json(
                STORE_READ_ONLY_EVENT_TYPE,
                &json!({
                    "reason": format!("{closing} ({})", audit.reason),
                    "label": bankruptcy.label,
                    "to": bankruptcy.to,
                }),
            )?;
            source
                .append_multi(vec![
                    StreamWrite::system(STORE_STREAM, expected, vec![marker]),
                    record(bankruptcy, audit)?,
                ])
                .await?;
        }
    }

    let mut outcome = BankruptcyOutcome {
        dry_run,
        initialized: BTreeMap::new(),
        copied: 0,
        ended: 0,
        resumed: 0,
    };
    let mut after: Option<String> = None;
    let mut pending: Vec<StreamWrite> = Vec::new();
    let mut done = 0u64;
    // The carried system streams first (listings leave system streams out), then the
    // user streams, page by page.
    let mut carried = CARRIED_SYSTEM_STREAMS
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>();
    loop {
        let page: Vec<String> = if carried.is_empty() {
            let page = source.list_streams("", after.as_deref(), PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.stream.clone());
            page.into_iter().map(|s| s.stream).collect()
        } else {
            std::mem::take(&mut carried)
        };
        for stream in &page {
            let stream = stream.as_str();
            let carried_system = CARRIED_SYSTEM_STREAMS.contains(&stream);
            if stream.starts_with('$') && !carried_system {
                continue;
            }
            done += 1;
            if !dry_run && target.stream_exists(stream).await? {
                outcome.resumed += 1;
                continue;
            }
            let events = match source.read_stream(stream, ReadStream::forward()).await {
                Err(Error::StreamNotFound { .. }) => continue,
                other => other?,
            };
            let Some(end) = events.last() else { continue };
            let copies = || {
                events
                    .iter()
                    .map(|e| copy_of(e, None).map(|copy| copy.with_id(e.id)))
                    .collect::<Result<Vec<_>>>()
            };
            if carried_system {
                pending.push(StreamWrite::system(
                    stream,
                    ExpectedVersion::NoStream,
                    copies()?,
                ));
                continue;
            }
            if StreamEnd::of(&end.event_type, &end.data) != StreamEnd::Open {
                outcome.ended += 1;
                continue;
            }
            match folds.get(category_of(stream)) {
                None => {
                    pending.push(StreamWrite::new(
                        stream,
                        ExpectedVersion::NoStream,
                        copies()?,
                    ));
                    outcome.copied += 1;
                }
                Some(fold) => {
                    let state = schemas
                        .state_of(stream, fold, Some(end.revision))
                        .await
                        .map_err(schema_error)?;
                    let metadata = json!({
                        BANKRUPTCY_KEY: bankruptcy.label,
                        MIGRATED_FROM_KEY: format!("{}@{stream}", state.revision.get()),
                    });
                    let initialized = EventData::json(INITIALIZED_EVENT_TYPE, &state.state)?
                        .with_metadata(&metadata)?;
                    pending.push(StreamWrite::new(
                        stream,
                        ExpectedVersion::NoStream,
                        vec![initialized],
                    ));
                    *outcome
                        .initialized
                        .entry(category_of(stream).to_string())
                        .or_default() += 1;
                }
            }
            if pending.len() >= PAGE {
                write(target, std::mem::take(&mut pending), dry_run).await?;
                progress(done);
            }
        }
    }
    write(target, pending, dry_run).await?;
    // Its own record last, after the old store's trail (copied above).
    write(target, vec![record(bankruptcy, audit)?], dry_run).await?;
    progress(done);
    Ok(outcome)
}

async fn write<T: EventStore + ?Sized>(
    target: &T,
    writes: Vec<StreamWrite>,
    dry_run: bool,
) -> Result<()> {
    if dry_run || writes.is_empty() {
        return Ok(());
    }
    target.append_multi(writes).await.map(|_| ())
}

fn record(bankruptcy: &Bankruptcy, audit: &Audit) -> Result<StreamWrite> {
    let arguments = json!({
        "label": bankruptcy.label,
        "folds": bankruptcy.folds,
        "to": bankruptcy.to,
    });
    audit_write("bankruptcy", arguments, audit)
}

fn schema_error(error: SchemaError) -> Error {
    match error {
        SchemaError::Store(error) => error,
        other => invalid(&other.to_string()),
    }
}
