//! Failures to reach PostgreSQL, or bad settings, are errors that say what happened,
//! never panics. These need no database.

use eventfold_core::Error;
use eventfold_postgres::{PostgresOptions, PostgresStore};
use eventfold_wire::ErrorCode;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn a_server_that_is_not_there_is_an_io_error_naming_postgres() {
    let result = runtime().block_on(PostgresStore::connect(
        // Port 1 on loopback: nothing listens there.
        "postgres://postgres@127.0.0.1:1/none",
        PostgresOptions {
            connect_timeout_ms: 2_000,
            ..PostgresOptions::default()
        },
    ));
    match result {
        Err(error @ Error::Io { .. }) => {
            let message = error.to_string();
            assert!(message.contains("PostgreSQL"), "{message}");
            assert_eq!(ErrorCode::of(&error), "io_error");
        }
        other => panic!("expected an i/o error, got {other:?}"),
    }
}

#[test]
fn a_malformed_url_is_refused_with_the_reason() {
    let result = runtime().block_on(PostgresStore::connect(
        "postgres://user@host:notaport/db",
        PostgresOptions::default(),
    ));
    match result {
        Err(Error::Backend(message)) => {
            assert!(
                message.contains("invalid PostgreSQL connection URL"),
                "{message}"
            );
        }
        other => panic!("expected a backend error, got {other:?}"),
    }
}

#[test]
fn unusable_options_are_refused_before_connecting() {
    for (schema, pool) in [
        ("Orders", 4),
        ("1st", 4),
        ("", 4),
        ("pg_catalog", 4),
        ("ok", 0),
    ] {
        let options = PostgresOptions {
            schema: schema.into(),
            pool_connections_max: pool,
            ..PostgresOptions::default()
        };
        // No server is needed: the options are checked first.
        let result = runtime().block_on(PostgresStore::connect(
            "postgres://postgres@127.0.0.1:1/none",
            options,
        ));
        match result {
            Err(Error::Backend(message)) => {
                assert!(
                    message.contains("invalid PostgreSQL options"),
                    "{schema}: {message}"
                );
            }
            other => panic!("{schema}/{pool}: expected refused options, got {other:?}"),
        }
    }
    let long = "s".repeat(eventfold_postgres::SCHEMA_NAME_BYTES_MAX + 1);
    assert!(
        PostgresOptions {
            schema: long,
            ..PostgresOptions::default()
        }
        .validate()
        .is_err()
    );
}
