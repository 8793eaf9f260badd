//! A node whose listener cannot reach the database does not let its waiters stall
//! silently: `wait_for` fails with an i/o error while the listener is down, and works
//! again once it reconnects. Uses a database of its own (it refuses connections to
//! it for a moment). Needs `EVENTFOLD_TEST_POSTGRES_URL` with a role that may create
//! databases.

mod common;

use std::time::Duration;

use eventfold_core::{EventData, EventStore, ExpectedVersion, Position};
use eventfold_postgres::{PostgresOptions, PostgresStore};

use common::{database_url, eventually, runtime, within};
use eventfold_wire::ErrorCode;

/// `url` with its database replaced by `database` and `application_name` set.
fn url_for(url: &str, database: &str, application: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let (server, _) = base.rsplit_once('/').expect("a URL with a database");
    let mut out = format!("{server}/{database}?application_name={application}");
    if !query.is_empty() {
        out.push('&');
        out.push_str(query);
    }
    out
}

/// A database of its own, dropped (with its connections) at the end.
struct TestDatabase {
    admin: tokio_postgres::Client,
    name: String,
}

impl TestDatabase {
    async fn drop_now(self) {
        let _ = self
            .admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await;
    }
}

#[test]
fn waiters_fail_while_the_listener_cannot_connect_and_recover_after() {
    let Some(url) = database_url() else { return };
    runtime().block_on(async {
        let (admin, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("connect to the test database");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let database = TestDatabase {
            name: format!("ef_fault_{}", uuid::Uuid::new_v4().simple()),
            admin,
        };
        database
            .admin
            .batch_execute(&format!("CREATE DATABASE {}", database.name))
            .await
            .expect("create a database for the test");

        let outcome = tokio::spawn({
            let url = url.clone();
            let name = database.name.clone();
            let admin_url = url.clone();
            async move { scenario(&url, &admin_url, &name).await }
        })
        .await;
        database.drop_now().await;
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic.into_panic());
        }
    });
}

async fn scenario(url: &str, admin_url: &str, database: &str) {
    let (admin, connection) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let options = PostgresOptions {
        poll_interval_ms: 100,
        pool_connections_max: 2,
        ..PostgresOptions::default()
    };
    let a = PostgresStore::connect(&url_for(url, database, "node-a"), options.clone())
        .await
        .expect("node A");
    let b = PostgresStore::connect(&url_for(url, database, "node-b"), options)
        .await
        .expect("node B");

    // Refuse new connections, then cut A's listener: it cannot come back.
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {database} ALLOW_CONNECTIONS false"
        ))
        .await
        .expect("refuse connections");
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND application_name LIKE 'node-a-listener%'",
            &[&database],
        )
        .await
        .expect("terminate A's listener");
    let failed = within("wait_for to report the fault", a.wait_for(Position(0))).await;
    match failed {
        Err(error) => {
            assert_eq!(ErrorCode::of(&error), "io_error", "{error}");
            assert!(error.to_string().contains("following the log"), "{error}");
        }
        Ok(()) => panic!("wait_for(0) returned although nothing was written"),
    }

    // Let it back in: the listener reconnects, and waiters work again.
    admin
        .batch_execute(&format!("ALTER DATABASE {database} ALLOW_CONNECTIONS true"))
        .await
        .expect("allow connections");
    let waiting = eventually("A's listener to recover", || async {
        match tokio::time::timeout(Duration::from_millis(100), a.wait_for(Position(0))).await {
            // Still failing: the listener has not reconnected yet.
            Ok(Err(_)) => None,
            // Waiting quietly: the fault is gone.
            Err(_) => Some(()),
            Ok(Ok(())) => panic!("wait_for(0) returned although nothing was written"),
        }
    });
    waiting.await;
    let woken = tokio::spawn(async move { a.wait_for(Position(0)).await });
    b.append(
        "fault-1",
        ExpectedVersion::Any,
        vec![EventData::json("Recovered", &1).expect("event")],
    )
    .await
    .expect("append through B");
    within("A's waiter to wake", woken)
        .await
        .expect("waiting task")
        .expect("wait_for after the recovery");
}
