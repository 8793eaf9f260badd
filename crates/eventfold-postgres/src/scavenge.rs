//! Scavenging a PostgreSQL store: the rows of the events below each stream's cut are
//! deleted in batches, while the store keeps serving. Positions are not renumbered:
//! readers pass over the missing ones as they do over any gap.
//!
//! A stream's last revision is read from its last row (appends continue after it, and
//! expected versions count it), so that row is never deleted. When the cut lies past
//! it (a soft-deleted stream, or one whose every event `max_age` hides), the row is
//! *hollowed* instead: its data becomes `null`, its metadata `{}`, its type
//! [`HOLLOWED_EVENT_TYPE`] and its correlation none, so nothing of the event is left
//! but its id, its place and its time.

use std::time::Instant;

use async_trait::async_trait;
use eventfold_core::{EventStore, KeepFrom, Result, ScavengeSummary, Scavenger};

use crate::error::pg_error;
use crate::store::PostgresStore;

/// The type a hollowed last event of a stream gets (a `$` type: no client can write
/// one).
pub const HOLLOWED_EVENT_TYPE: &str = "$scavenged";

/// Rows deleted per statement: short transactions, so appends never wait long.
const DELETE_BATCH_ROWS: i64 = 5_000;

/// Streams listed per page while looking for cuts.
const LIST_PAGE_STREAMS: usize = 1_000;

#[async_trait]
impl Scavenger for PostgresStore {
    async fn scavenge(&self, keep_from: KeepFrom, dry_run: bool) -> Result<ScavengeSummary> {
        let started = Instant::now();
        let context = "scavenging the PostgreSQL store";
        let s = self.quoted_schema();
        let count = format!(
            "SELECT count(*), coalesce(sum(octet_length(data) + octet_length(metadata)), 0)::bigint
             FROM {s}.events WHERE stream = $1 AND revision < $2"
        );
        let delete = format!(
            "WITH gone AS (
                 DELETE FROM {s}.events WHERE position IN (
                     SELECT position FROM {s}.events WHERE stream = $1 AND revision < $2
                     ORDER BY revision LIMIT $3)
                 RETURNING octet_length(data) + octet_length(metadata) AS bytes)
             SELECT count(*), coalesce(sum(bytes), 0)::bigint FROM gone"
        );
        let last_row = format!(
            "SELECT octet_length(data) + octet_length(metadata), event_type = $3
             FROM {s}.events WHERE stream = $1 AND revision = $2"
        );
        let hollow = format!(
            "UPDATE {s}.events SET data = $3, metadata = $4, event_type = $5, correlation = NULL
             WHERE stream = $1 AND revision = $2"
        );
        let (null, empty): (&[u8], &[u8]) = (b"null", b"{}");
        let hollowed_bytes = (null.len() + empty.len()) as u64;
        let mut summary = ScavengeSummary {
            dry_run,
            ..ScavengeSummary::default()
        };
        let client = self.client(context).await?;
        let mut after: Option<String> = None;
        loop {
            let page = self
                .list_streams("", after.as_deref(), LIST_PAGE_STREAMS)
                .await?;
            for stream in &page {
                let cut = keep_from(&stream.stream);
                let last = stream.last_revision.get();
                if cut == 0 {
                    continue;
                }
                let name = stream.stream.as_str();
                let below = i64::try_from(cut.min(last)).unwrap_or(i64::MAX);
                // Both statements answer (rows, bytes) of what goes.
                let counted = |row: tokio_postgres::Row| -> Result<(i64, i64)> {
                    Ok((
                        row.try_get(0).map_err(|e| pg_error(context, e))?,
                        row.try_get(1).map_err(|e| pg_error(context, e))?,
                    ))
                };
                loop {
                    let row = if dry_run {
                        client.query_one(&count, &[&name, &below]).await
                    } else {
                        client
                            .query_one(&delete, &[&name, &below, &DELETE_BATCH_ROWS])
                            .await
                    };
                    let (rows, bytes) = counted(row.map_err(|e| pg_error(context, e))?)?;
                    summary.events_removed += rows as u64;
                    summary.bytes_before += bytes as u64;
                    // A dry run counts all at once; deletes go in batches until one is short.
                    if dry_run || rows < DELETE_BATCH_ROWS {
                        break;
                    }
                }
                if cut > last {
                    // The last event is hidden too: hollow it, unless done before.
                    let last = i64::try_from(last).unwrap_or(i64::MAX);
                    let row = client
                        .query_opt(&last_row, &[&name, &last, &HOLLOWED_EVENT_TYPE])
                        .await
                        .map_err(|e| pg_error(context, e))?;
                    let Some(row) = row else { continue };
                    let already: bool = row.try_get(1).map_err(|e| pg_error(context, e))?;
                    if already {
                        continue;
                    }
                    let bytes: i32 = row.try_get(0).map_err(|e| pg_error(context, e))?;
                    if !dry_run {
                        client
                            .execute(
                                &hollow,
                                &[&name, &last, &null, &empty, &HOLLOWED_EVENT_TYPE],
                            )
                            .await
                            .map_err(|e| pg_error(context, e))?;
                    }
                    summary.events_removed += 1;
                    summary.bytes_before += bytes as u64;
                    summary.bytes_after += hollowed_bytes;
                }
            }
            match page.last() {
                Some(last) if page.len() == LIST_PAGE_STREAMS => after = Some(last.stream.clone()),
                _ => break,
            }
        }
        summary.elapsed = started.elapsed();
        Ok(summary)
    }
}
