//! What a [`crate::PostgresStore`] can be told at connect time.

use std::time::Duration;

use eventfold_core::{Error, Result};

/// Longest schema name accepted, in bytes: the notification channel is
/// `<schema>_head` and PostgreSQL identifiers stop at 63 bytes.
pub const SCHEMA_NAME_BYTES_MAX: usize = 48;

/// Options of a [`crate::PostgresStore`].
///
/// ```
/// use eventfold_postgres::PostgresOptions;
/// let options = PostgresOptions {
///     schema: "orders_store".into(),
///     pool_connections_max: 4,
///     ..PostgresOptions::default()
/// };
/// assert!(options.validate().is_ok());
/// assert!(PostgresOptions { schema: "Robert'); DROP".into(), ..options }.validate().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresOptions {
    /// The PostgreSQL schema holding the store's tables, created if missing: lower-case
    /// letters, digits and `_`, starting with a letter or `_`, at most
    /// [`SCHEMA_NAME_BYTES_MAX`] bytes. Default `eventfold`.
    pub schema: String,
    /// Connections of the read pool (the writer and the listener have one each).
    pub pool_connections_max: usize,
    /// How often the listener reads the head even when no notification came, in ms:
    /// the bound on how late a waiter learns of a commit whose notification was lost.
    pub poll_interval_ms: u64,
    /// Longest wait for a connection to open, or for a pooled one to be free, in ms.
    pub connect_timeout_ms: u64,
    /// Largest event (stream name, type, data and metadata), in bytes.
    pub event_bytes_max: u64,
    /// Largest append (all its events), in bytes.
    pub append_bytes_max: u64,
    /// Group commit: appends taken into one transaction until their events reach this
    /// many bytes.
    pub batch_bytes_max: u64,
    /// Group commit: at most this many events in one transaction (a single larger
    /// append still gets a transaction of its own).
    pub batch_events_max: usize,
    /// Appends waiting for the writer; callers wait when the queue is full.
    pub queue_appends_max: usize,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            schema: "eventfold".into(),
            pool_connections_max: 8,
            poll_interval_ms: 250,
            connect_timeout_ms: 10_000,
            event_bytes_max: 16 * 1024 * 1024,
            append_bytes_max: 16 * 1024 * 1024,
            batch_bytes_max: 8 * 1024 * 1024,
            batch_events_max: 10_000,
            queue_appends_max: 4096,
        }
    }
}

impl PostgresOptions {
    /// Checks every option; the error names the one that is wrong.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| {
            Err(Error::Backend(format!(
                "invalid PostgreSQL options: {reason}"
            )))
        };
        let schema = self.schema.as_bytes();
        let schema_ok = !schema.is_empty()
            && schema.len() <= SCHEMA_NAME_BYTES_MAX
            && (schema[0].is_ascii_lowercase() || schema[0] == b'_')
            && schema
                .iter()
                .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !schema_ok {
            return bad(format!(
                "schema {:?} must be 1 to {SCHEMA_NAME_BYTES_MAX} lower-case letters, digits or _, not starting with a digit",
                self.schema.chars().take(80).collect::<String>()
            ));
        }
        if self.schema.starts_with("pg_") {
            return bad("schema names starting with pg_ are reserved by PostgreSQL".into());
        }
        if self.pool_connections_max == 0 {
            return bad("pool_connections_max must be at least 1".into());
        }
        if self.poll_interval_ms == 0 {
            return bad("poll_interval_ms must be at least 1".into());
        }
        if self.connect_timeout_ms == 0 {
            return bad("connect_timeout_ms must be at least 1".into());
        }
        if self.event_bytes_max == 0 || self.append_bytes_max == 0 || self.batch_bytes_max == 0 {
            return bad(
                "event_bytes_max, append_bytes_max and batch_bytes_max must be at least 1".into(),
            );
        }
        // One bytea array parameter holds a whole batch; PostgreSQL caps a value at 1 GiB.
        if self.batch_bytes_max.max(self.append_bytes_max) > 256 * 1024 * 1024 {
            return bad("append_bytes_max and batch_bytes_max must stay under 256 MiB".into());
        }
        if self.batch_events_max == 0 || self.queue_appends_max == 0 {
            return bad("batch_events_max and queue_appends_max must be at least 1".into());
        }
        Ok(())
    }

    pub(crate) fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}
