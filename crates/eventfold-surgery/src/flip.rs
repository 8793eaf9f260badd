//! The Big Flip: a store whose events were copied into a new one (see
//! [`crate::transform`]) turns read-only, so that the copy can catch up with it and
//! traffic can switch without a write left behind.
//!
//! The flip is one atomic append to the old store: `$store-read-only {"reason"}` at
//! the end of `$store`, and the audit record in `$surgery`. From then on every
//! backend refuses every append with `read_only` and that reason (the shared append
//! decision checks it, so no write slips in between). The transform that follows
//! the old store copies up to the flip, writes `$store-caught-up` into the new store
//! and says that traffic may switch. `undo` writes `$store-writable` instead.

use eventfold_core::{
    Error, EventData, EventStore, ExpectedVersion, ReadStream, RecordedEvent, Result,
    STORE_READ_ONLY_EVENT_TYPE, STORE_STREAM, STORE_WRITABLE_EVENT_TYPE, StreamWrite,
};
use serde_json::json;

use crate::{Audit, Operation, Outcome, audit_record, invalid};

/// Whether `store` is read-only now: the reason of the flip that made it so.
pub async fn read_only_reason<S: EventStore + ?Sized>(store: &S) -> Result<Option<String>> {
    let last = match store
        .read_stream(STORE_STREAM, ReadStream::backward().limit(1))
        .await
    {
        Err(Error::StreamNotFound { .. }) => return Ok(None),
        other => other?,
    };
    Ok(last.first().and_then(flip_reason))
}

/// The reason of a `$store` event when it is a flip; `None` for its undo.
pub(crate) fn flip_reason(event: &RecordedEvent) -> Option<String> {
    eventfold_core::plan::StreamEnd::of(&event.event_type, &event.data).into_read_only()
}

/// Performs [`Operation::Flip`] on `store`.
pub(crate) async fn flip<S: EventStore + ?Sized>(
    store: &S,
    operation: &Operation,
    audit: &Audit,
    dry_run: bool,
) -> Result<Outcome> {
    let Operation::Flip { to, undo } = operation else {
        return Err(invalid("not a flip"));
    };
    if let Some(to) = to
        && to.contains('@')
        && to.contains("://")
    {
        return Err(invalid(
            "--to names where traffic goes, and every refused writer reads it: give it without credentials",
        ));
    }
    let current = read_only_reason(store).await?;
    let revision = store.stream_revision(STORE_STREAM).await?;
    let event = match (current, undo) {
        (Some(reason), false) => {
            return Err(invalid(&format!(
                "the store is read-only already ({reason}); `flip --undo` makes it writable"
            )));
        }
        (None, true) => return Err(invalid("the store is not read-only: nothing to undo")),
        (Some(_), true) => EventData::json(STORE_WRITABLE_EVENT_TYPE, &json!({}))?,
        (None, false) => {
            let whither = to
                .as_deref()
                .map_or_else(String::new, |to| format!(" to {to}"));
            let reason = format!(
                "the store was flipped{whither} ({}): write to the new store",
                audit.reason
            );
            EventData::json(
                STORE_READ_ONLY_EVENT_TYPE,
                &json!({ "reason": reason, "to": to }),
            )?
        }
    };
    let mut outcome = Outcome {
        operation: operation.name().to_string(),
        dry_run,
        targets: Default::default(),
        moved: Default::default(),
        dropped: 0,
        read: 0,
        resumed: 0,
        audit_position: None,
    };
    if dry_run {
        return Ok(outcome);
    }
    // The marker expects the `$store` that was read: two flips at once, one wins.
    let expected = revision.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
    let results = store
        .append_multi(vec![
            StreamWrite::system(STORE_STREAM, expected, vec![event]),
            audit_record(operation, audit)?,
        ])
        .await?;
    outcome.audit_position = results.last().map(|r| r.position.get());
    Ok(outcome)
}
