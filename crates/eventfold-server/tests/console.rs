//! The web console in a real headless Chromium, driven by `playwright-core` from
//! `tests/console/drive.cjs` as a person would use it: open the console, find a
//! stream, open an event and choose another schema version, see a live event arrive,
//! replay a parked event of a consumer group, fold a stream through a projection; and
//! under `--auth`, see nothing without a token or with one that may not read.
//!
//! Needs Node.js, `EVENTFOLD_TEST_PLAYWRIGHT` (a directory holding
//! `node_modules/playwright-core`) and `EVENTFOLD_TEST_CHROMIUM` (the browser);
//! `.ci/run` installs both and sets them. Without them the test says loudly that it
//! skipped. With `EVENTFOLD_CONSOLE_SCREENSHOTS=DIR` it saves a screenshot of each page
//! there (how `docs/console/` is made).

use std::path::Path;
use std::sync::Arc;

use eventfold_core::EventStore;
use eventfold_log::{LogOptions, LogStore};
use eventfold_server::{AuthConfig, ServerConfig, serve};
use tokio::sync::oneshot;

const ADMIN: &str = "console-admin-token-0123456789";
const NOBODY: &str = "console-nobody-token-0123456789";

/// A server on a free loopback port: its URL, and what stops it when dropped.
struct Running {
    url: String,
    _stop: oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn start(config: ServerConfig) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn EventStore> =
        Arc::new(LogStore::open(dir.path(), LogOptions::default()).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        serve(store, config, listener, async move {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Running {
        url,
        _stop: stop,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_in_a_real_browser() {
    let (Ok(playwright), Ok(chromium)) = (
        std::env::var("EVENTFOLD_TEST_PLAYWRIGHT"),
        std::env::var("EVENTFOLD_TEST_CHROMIUM"),
    ) else {
        eprintln!(
            "SKIPPED the_console_works_in_a_real_browser: EVENTFOLD_TEST_PLAYWRIGHT and \
             EVENTFOLD_TEST_CHROMIUM are not set (.ci/run installs playwright-core and \
             Chromium and sets them)"
        );
        return;
    };
    let open = start(ServerConfig::default()).await;
    let auth = AuthConfig::from_toml(&format!(
        "[[users]]\nname = \"root\"\ntoken = \"{ADMIN}\"\nroles = [\"admin\"]\n\n\
         [[users]]\nname = \"nobody\"\ntoken = \"{NOBODY}\"\nroles = []\n\n\
         [acl]\nread = []\nwrite = []\n"
    ))
    .unwrap();
    let secure = start(ServerConfig {
        auth: Some(auth),
        ..ServerConfig::default()
    })
    .await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console/drive.cjs");
    let mut command = tokio::process::Command::new("node");
    command
        .arg(&script)
        .env("OPEN_URL", &open.url)
        .env("SECURE_URL", &secure.url)
        .env("ADMIN_TOKEN", ADMIN)
        .env("NOBODY_TOKEN", NOBODY)
        .env("PLAYWRIGHT_DIR", &playwright)
        .env("CHROMIUM", &chromium);
    if let Ok(dir) = std::env::var("EVENTFOLD_CONSOLE_SCREENSHOTS") {
        command.env("SCREENSHOTS", dir);
    }
    let output = tokio::time::timeout(std::time::Duration::from_secs(120), command.output())
        .await
        .expect("the browser run ends within two minutes")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the console failed in the browser:\n{stdout}\n{stderr}"
    );
    for step in [
        "ok / leads to the console, which lists streams",
        "ok find a stream by searching",
        "ok open an event, then choose another schema version",
        "ok a live event arrives in the tail of $all",
        "ok a consumer group shows its parked event, which is replayed",
        "ok schemas, projections, health and the surgery log",
        "ok under --auth the console asks for a token and shows only what it may read",
        "ok all",
    ] {
        assert!(
            stdout.lines().any(|l| l == step),
            "missing '{step}' in:\n{stdout}"
        );
    }
}
