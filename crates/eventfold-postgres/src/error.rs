//! PostgreSQL failures as the core's errors, each with what was being done.
//!
//! - The server refused a statement (an SQL error with a SQLSTATE) and the session
//!   goes on: `Backend`, naming the code and the server's message; a full disk
//!   (`53100`) is `StorageFull`.
//! - The connection failed or was lost, or a pooled connection could not be had in
//!   time: `Io`, so callers see an I/O-like, retryable failure. That includes errors
//!   the server sends as it ends a session or refuses to start one (severity `FATAL`
//!   or `PANIC`, class `08` connection exception, `57P0x` shutdown or start-up): a
//!   restart, a fail-over or `pg_terminate_backend` looks like that, and the same
//!   request succeeds once the server is back.

use std::io;

use eventfold_core::Error;
use tokio_postgres::error::{DbError, Severity, SqlState};

/// Maps a driver error, saying what was being done.
pub(crate) fn pg_error(context: &str, error: tokio_postgres::Error) -> Error {
    if let Some(db) = error.as_db_error()
        && !ends_session(db)
    {
        if *db.code() == SqlState::DISK_FULL {
            return Error::StorageFull {
                context: format!("{context} (PostgreSQL: {})", db.message()),
            };
        }
        return Error::Backend(format!(
            "PostgreSQL refused {context}: {} (SQLSTATE {})",
            db.message(),
            db.code().code()
        ));
    }
    let kind = if error.is_closed() || error.as_db_error().is_some() {
        io::ErrorKind::ConnectionAborted
    } else {
        io::ErrorKind::Other
    };
    Error::io(
        format!("{context} on PostgreSQL"),
        io::Error::new(kind, error_chain(&error)),
    )
}

/// Whether the server refused a statement and kept the session (its transaction, if
/// any, is aborted and nothing of it was committed). False when the connection was
/// lost or the server ended the session: then a commit in flight may have happened.
pub(crate) fn is_refusal(error: &tokio_postgres::Error) -> bool {
    error.as_db_error().is_some_and(|db| !ends_session(db))
}

/// Whether a server error ends the session, or refused to start one.
fn ends_session(db: &DbError) -> bool {
    let code = db.code().code();
    matches!(
        db.parsed_severity(),
        Some(Severity::Fatal | Severity::Panic)
    ) || code.starts_with("08")
        || code.starts_with("57P0")
}

/// Maps a pool error: no connection could be had.
pub(crate) fn pool_error(context: &str, error: deadpool_postgres::PoolError) -> Error {
    use deadpool_postgres::PoolError;
    match error {
        PoolError::Backend(e) => pg_error(context, e),
        PoolError::Timeout(kind) => Error::io(
            format!("{context} on PostgreSQL"),
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no pooled connection within the timeout ({kind:?})"),
            ),
        ),
        PoolError::Closed => Error::Closed,
        other => Error::Backend(format!("{context}: connection pool: {other}")),
    }
}

/// A connection that was lost while its commit was in flight: the transaction may or
/// may not have committed.
pub(crate) fn commit_unknown(error: &tokio_postgres::Error) -> Error {
    Error::io(
        "committing an append on PostgreSQL (the connection was lost: the append may or may not have been written; re-send it with the same event ids)",
        io::Error::new(io::ErrorKind::ConnectionAborted, error_chain(error)),
    )
}

/// A stored value that cannot be what the store wrote.
pub(crate) fn corrupted(what: &str, reason: String) -> Error {
    Error::Corrupted {
        file: format!("PostgreSQL {what}"),
        offset: 0,
        reason,
    }
}

/// The error and its sources, as one line (with the SQLSTATE of a server error).
fn error_chain(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        );
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
