//! KurrentDB's official Python client (`kurrentdbclient`, unmodified) against our
//! gRPC endpoint, as a black box, and the Python `eventsourcing` library on its
//! KurrentDB persistence module: the scripts in `tests/kurrentdb/` append, read,
//! subscribe, delete and log in the way applications written for KurrentDB do, and
//! raise on any answer that differs from what the client expects (`harness.py`: a
//! failure ends the script at once, with its traceback). The interpreter
//! comes from `EVENTFOLD_TEST_KURRENTDB_PYTHON` (`.ci/run` installs the packages in a
//! virtual environment); without it the tests say loudly that they skipped.

use std::path::PathBuf;
use std::sync::Arc;

use eventfold_core::{EventStore, ReadStream};
use eventfold_log::{LogOptions, LogStore};
use eventfold_server::{AuthConfig, ServerConfig, TlsConfig};
use serde_json::Value;

/// The longest a script may run.
const SCRIPT_SECONDS_MAX: u64 = 120;

/// A server with its gRPC endpoint, over a log store in a directory of its own.
struct Server {
    store: Arc<LogStore>,
    grpc: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    serving: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start(auth: Option<AuthConfig>, tls: Option<TlsConfig>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(LogStore::open(dir.path(), LogOptions::default()).unwrap());
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = grpc.local_addr().unwrap();
        let config = ServerConfig {
            auth,
            ..ServerConfig::default()
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn({
            let store: Arc<dyn EventStore> = store.clone();
            async move {
                eventfold_server::serve_with_grpc(store, config, http, Some(grpc), tls, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
            }
        });
        Server {
            store,
            grpc: address,
            stop: Some(stop),
            serving,
            _dir: dir,
        }
    }

    /// Checks that `stream` was deleted for good: the store refuses appends to it.
    async fn assert_tombstoned(&self, stream: &str) {
        let refused = self
            .store
            .append(
                stream,
                eventfold_core::ExpectedVersion::Any,
                vec![eventfold_core::EventData::json("Again", &1).unwrap()],
            )
            .await;
        assert!(
            matches!(refused, Err(eventfold_core::Error::StreamDeleted { .. })),
            "{refused:?}"
        );
    }

    fn uri(&self) -> String {
        format!("kurrentdb://{}?tls=false", self.grpc)
    }

    /// Stops the server; it must stop although clients subscribed.
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(std::time::Duration::from_secs(30), self.serving)
            .await
            .expect("the server stops within 30 s")
            .unwrap();
    }
}

fn python(test: &str) -> Option<String> {
    let python = std::env::var("EVENTFOLD_TEST_KURRENTDB_PYTHON").ok();
    if python.is_none() {
        eprintln!(
            "SKIPPED {test}: EVENTFOLD_TEST_KURRENTDB_PYTHON is not set (.ci/run sets it to a \
             Python with kurrentdbclient and eventsourcing-kurrentdb installed)"
        );
    }
    python
}

/// Runs `tests/kurrentdb/{script}` with `args` and returns the JSON of its last line.
/// A script that has not finished within `SCRIPT_SECONDS_MAX` is killed and fails the
/// test (a subscription that never delivers would otherwise hang it).
async fn run(python: String, script: &str, args: Vec<String>) -> Value {
    run_with(python, script, args, None).await
}

/// [`run`] with `program` (Python or Node.js), and one environment variable.
async fn run_with(
    program: String,
    script: &str,
    args: Vec<String>,
    env: Option<(&str, String)>,
) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/kurrentdb")
        .join(script);
    let mut command = tokio::process::Command::new(program);
    if let Some((name, value)) = env {
        command.env(name, value);
    }
    let child = command
        .arg(path)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let output = tokio::time::timeout(
        std::time::Duration::from_secs(SCRIPT_SECONDS_MAX),
        child.wait_with_output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{script} did not finish within {SCRIPT_SECONDS_MAX} s"))
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{script} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{script} printed {last:?}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_appends_and_reads() {
    let Some(python) = python("the_python_client_appends_and_reads") else {
        return;
    };
    let server = Server::start(None, None).await;
    let summary = run(python, "streams.py", vec![server.uri()]).await;
    // What the client wrote is in the store as eventfold events.
    let stream = summary["stream"].as_str().unwrap();
    let stored = server
        .store
        .read_stream(stream, ReadStream::forward())
        .await
        .unwrap();
    let types: Vec<_> = stored.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["OrderPlaced", "OrderPaid", "Receipt"]);
    assert_eq!(stored[0].data.as_ref(), br#"{"total": 12}"#);
    assert_eq!(stored[1].metadata.as_ref(), br#"{"user": "u-1"}"#);
    // The client's commit positions are the store's positions plus one.
    assert_eq!(summary["last"], stored[2].position.get() + 1);
    // The metadata it set is eventfold's: the last two events are kept.
    let metadata = eventfold_metadata::StreamAdmin::stream_metadata(server.store.as_ref(), stream)
        .await
        .unwrap()
        .metadata;
    assert_eq!(metadata.max_count, Some(2));
    assert_eq!(metadata.custom["owner"], "billing");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_subscribes_and_turns_live() {
    let Some(python) = python("the_python_client_subscribes_and_turns_live") else {
        return;
    };
    let server = Server::start(None, None).await;
    let summary = run(python, "subscriptions.py", vec![server.uri()]).await;
    assert_eq!(
        summary["seen"],
        serde_json::json!(["Added", "Added", "CheckedOut"])
    );
    assert!(
        !summary["checkpoints"].as_array().unwrap().is_empty(),
        "{summary}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_deletes_and_tombstones() {
    let Some(python) = python("the_python_client_deletes_and_tombstones") else {
        return;
    };
    let server = Server::start(None, None).await;
    let summary = run(python, "deletion.py", vec![server.uri()]).await;
    let stream = summary["stream"].as_str().unwrap();
    server.assert_tombstoned(stream).await;
    server.stop().await;
}

/// Over TLS (the certificate of the HTTP side), with our users' names and tokens as
/// the client's credentials, and our roles deciding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_logs_in_with_our_users_over_tls() {
    let Some(python) = python("the_python_client_logs_in_with_our_users_over_tls") else {
        return;
    };
    let auth = AuthConfig::from_toml(
        r#"
        [[users]]
        name = "writer"
        token = "writer-secret-token"
        roles = ["writers"]

        [[users]]
        name = "reader"
        token = "reader-secret-token"
        roles = ["readers"]

        [acl]
        read = ["writers", "readers"]
        write = ["writers"]
        "#,
    )
    .unwrap();
    // A certificate for the address the client connects to, trusted by the client.
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let tls = TlsConfig::from_pem_files(&cert, &key).unwrap();
    let server = Server::start(Some(auth), Some(tls)).await;
    let args = [
        server.grpc.to_string(),
        cert.display().to_string(),
        "writer".into(),
        "writer-secret-token".into(),
        "reader".into(),
        "reader-secret-token".into(),
    ];
    let refused = run(python, "auth.py", args.to_vec()).await;
    assert_eq!(
        refused,
        serde_json::json!({
            "wrong_token": "UnauthenticatedError",
            "reader_appends": "AccessDeniedError",
            "reader_reads_all": "AccessDeniedError",
        })
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_shares_persistent_subscriptions() {
    let Some(python) = python("the_python_client_shares_persistent_subscriptions") else {
        return;
    };
    let server = Server::start(None, None).await;
    let summary = run(python, "persistent.py", vec![server.uri()]).await;
    assert_eq!(
        summary["handled"],
        serde_json::json!(["Line0", "Line1", "Line3"])
    );
    // The groups are eventfold's consumer groups: the one on $all is there, named
    // after its source; the deleted one is gone.
    let groups = eventfold_subscription::list_groups(server.store.as_ref())
        .await
        .unwrap();
    assert!(groups.contains(&"audit@$all".to_string()), "{groups:?}");
    let stream = summary["stream"].as_str().unwrap();
    assert!(!groups.contains(&format!("billing@{stream}")), "{groups:?}");
    server.stop().await;
}

/// An application of the Python `eventsourcing` library, on its KurrentDB persistence
/// module, as its users write them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eventsourcing_application_runs_on_eventfold() {
    let Some(python) = python("an_eventsourcing_application_runs_on_eventfold") else {
        return;
    };
    let server = Server::start(None, None).await;
    let summary = run(python, "eventsourcing_app.py", vec![server.uri()]).await;
    assert_eq!(summary["notifications"], 6, "{summary}");
    // The last notification id is the commit position of the store's last event.
    let head = server.store.head_position().await.unwrap().unwrap();
    assert_eq!(summary["last"], head.get() + 1);
    server.stop().await;
}

/// KurrentDB's official Node.js client, from the directory
/// `EVENTFOLD_TEST_KURRENTDB_NODE` names (its `node_modules`; `.ci/run` installs it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_client_appends_reads_subscribes_and_deletes() {
    let Ok(node_dir) = std::env::var("EVENTFOLD_TEST_KURRENTDB_NODE") else {
        eprintln!(
            "SKIPPED the_node_client_appends_reads_subscribes_and_deletes: \
             EVENTFOLD_TEST_KURRENTDB_NODE is not set (.ci/run sets it to a directory with \
             @kurrent/kurrentdb-client installed)"
        );
        return;
    };
    let server = Server::start(None, None).await;
    let summary = run_with(
        "node".to_string(),
        "node_client.cjs",
        vec![server.uri()],
        Some(("KURRENTDB_NODE_DIR", node_dir)),
    )
    .await;
    assert_eq!(
        summary["handled"],
        serde_json::json!(["Placed", "Shipped", "Delivered"])
    );
    // The client's tombstone is eventfold's hard delete.
    let stream = summary["stream"].as_str().unwrap();
    server.assert_tombstoned(stream).await;
    server.stop().await;
}
