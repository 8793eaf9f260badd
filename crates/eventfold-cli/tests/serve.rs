//! Scenario: `eventfold serve` as a separate process, spoken to over a real socket as a
//! client in another language would; stopped with SIGTERM (graceful: it exits 0) and
//! started again on the same data directory, where everything acknowledged is still there.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

struct Server {
    child: Child,
    address: String,
}

impl Server {
    fn start(data: &std::path::Path) -> Server {
        Server::start_with(data, &[])
    }

    fn start_with(data: &std::path::Path, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_eventfold"))
            .args([
                "serve",
                "--data",
                data.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
            ])
            .args(extra)
            .env_remove("EVENTFOLD_DATA")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start eventfold serve");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let address = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no address in '{line}'"))
            .to_string();
        Server { child, address }
    }

    /// One HTTP/1.1 request; returns the status and the body.
    fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String) {
        let mut stream = TcpStream::connect(&self.address).unwrap();
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            self.address,
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let status = response[9..12].parse().unwrap();
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }

    fn stop(mut self) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let status = self.child.wait().unwrap();
        assert!(
            status.success(),
            "serve must exit 0 on SIGTERM, got {status}"
        );
    }
}

#[test]
fn the_server_speaks_the_contract_and_keeps_what_it_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (status, body) = server.request(
        "POST",
        "/streams/order-1",
        &[("Expected-Version", "no_stream")],
        r#"[{"type":"OrderPlaced","data":{"total":5}}]"#,
    );
    assert_eq!(status, 201, "{body}");
    assert!(body.contains(r#""first_revision":0"#), "{body}");
    let (status, body) = server.request(
        "POST",
        "/streams/order-1",
        &[("Expected-Version", "no_stream")],
        r#"[{"type":"X","data":1}]"#,
    );
    assert_eq!(status, 409, "{body}");
    let (status, _) = server.request("POST", "/streams/order-1", &[], "not json");
    assert_eq!(status, 400);
    let (status, _) = server.request("GET", "/health", &[], "");
    assert_eq!(status, 200);
    server.stop();

    let server = Server::start(dir.path());
    let (status, body) = server.request("GET", "/streams/order-1", &[], "");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""type":"OrderPlaced""#), "{body}");
    let (status, _) = server.request("GET", "/streams/missing", &[], "");
    assert_eq!(status, 404);

    // The CLI works on a server as on a data directory.
    let url = format!("http://{}", server.address);
    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_eventfold"))
            .args(args)
            .env_remove("EVENTFOLD_DATA")
            .output()
            .unwrap()
    };
    let appended = cli(&[
        "append",
        "--server",
        &url,
        "order-1",
        "--type",
        "OrderShipped",
        "--json",
        "{}",
        "--expected",
        "0",
    ]);
    assert!(
        appended.status.success(),
        "{}",
        String::from_utf8_lossy(&appended.stderr)
    );
    let refused = cli(&[
        "append",
        "--server",
        &url,
        "order-1",
        "--type",
        "X",
        "--json",
        "{}",
        "--expected",
        "0",
    ]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("wrong expected version"));
    let read = cli(&["read", "--server", &url, "order-1"]);
    let lines = String::from_utf8_lossy(&read.stdout).lines().count();
    assert_eq!(lines, 2, "{}", String::from_utf8_lossy(&read.stderr));
    let missing = cli(&["read", "--server", &url, "nothing-here"]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found"));
    server.stop();
}

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_eventfold"))
        .args(args)
        .env_remove("EVENTFOLD_DATA")
        .output()
        .unwrap()
}

#[test]
fn schemas_registered_with_the_cli_convert_reads_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let url = format!("http://{}", server.address);
    let (status, body) = server.request(
        "POST",
        "/streams/item-1",
        &[],
        r#"[{"type":"InventoryItemDeactivated","data":{"id":"item-1"}}]"#,
    );
    assert_eq!(status, 201, "{body}");

    let register = |upcast: &str| {
        cli(&[
            "schema",
            "register",
            "--server",
            &url,
            "InventoryItemDeactivated",
            "2",
            "--schema",
            r#"{"type":"object","required":["itemId","reason"]}"#,
            "--upcast",
            upcast,
            "--downcast",
            "{id: .itemId}",
        ])
    };
    // An upcast that leaves out the required reason is refused, naming the event.
    let refused = register("{itemId: .id}");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("item-1") && stderr.contains("reason"),
        "{stderr}"
    );
    let registered = register(r#"{itemId: .id, reason: "not recorded"}"#);
    assert!(
        registered.status.success(),
        "{}",
        String::from_utf8_lossy(&registered.stderr)
    );

    let (status, body) = server.request(
        "GET",
        "/streams/item-1/0",
        &[("Accept", "application/vnd.eventfold.v2+json")],
        "",
    );
    assert_eq!(status, 200, "{body}");
    let event: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        event["data"],
        serde_json::json!({"itemId": "item-1", "reason": "not recorded"})
    );
    let listed = cli(&["schema", "list", "--server", &url]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("InventoryItemDeactivated"));
    server.stop();

    // The registry lives in the store: the CLI reads it from the data directory, and a
    // restarted server still converts.
    let listed = cli(&[
        "schema",
        "list",
        "--data",
        dir.path().to_str().unwrap(),
        "InventoryItemDeactivated",
    ]);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed["versions"][0]["version"], 2);
    assert_eq!(listed["versions"][0]["downcast"], "{id: .itemId}");
    let server = Server::start(dir.path());
    let (status, _) = server.request(
        "GET",
        "/streams/item-1/0",
        &[("Accept", "application/vnd.eventfold.v2+json")],
        "",
    );
    assert_eq!(status, 200);
    server.stop();
}

#[test]
fn schema_register_on_a_data_directory_checks_and_explains() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let bad = cli(&[
        "schema",
        "register",
        "--data",
        data,
        "Moved",
        "2",
        "--upcast",
        "{by: .distance",
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("does not parse"));
    let good = cli(&[
        "schema",
        "register",
        "--data",
        data,
        "Moved",
        "2",
        "--upcast",
        "{by: .distance}",
    ]);
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(String::from_utf8_lossy(&good.stdout).contains("created"));
    let unknown = cli(&["schema", "list", "--data", data, "Nope"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no schema is registered for Nope"));
}

#[test]
fn tail_on_a_server_follows_appends_live() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let url = format!("http://{}", server.address);
    let (status, _) = server.request(
        "POST",
        "/streams/order-1",
        &[],
        r#"[{"type":"OrderPlaced","data":{"n":0}}]"#,
    );
    assert_eq!(status, 201);
    // Without --from, tail shows only what comes after it started.
    let tail = Command::new(env!("CARGO_BIN_EXE_eventfold"))
        .args(["tail", "--server", &url, "order-1", "--count", "2"])
        .env_remove("EVENTFOLD_DATA")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The tail has started when the server counts its subscription.
    loop {
        let (_, metrics) = server.request("GET", "/metrics", &[], "");
        if metrics.contains("eventfold_subscriptions_open 1") {
            break;
        }
        std::thread::yield_now();
    }
    for n in 1..=2 {
        let (status, _) = server.request(
            "POST",
            "/streams/order-1",
            &[],
            &format!(r#"[{{"type":"OrderShipped","data":{{"n":{n}}}}}]"#),
        );
        assert_eq!(status, 201);
    }
    let output = tail.wait_with_output().unwrap();
    assert!(output.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let revisions: Vec<u64> = lines
        .iter()
        .map(|e| e["revision"].as_u64().unwrap())
        .collect();
    assert_eq!(revisions, vec![1, 2]);
    server.stop();
}

#[test]
fn a_server_with_users_needs_tokens_and_the_cli_sends_them() {
    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("auth.toml");
    std::fs::write(
        &auth,
        "[[users]]\nname = \"ops\"\ntoken = \"ops-token-0123456789\"\nroles = [\"admin\"]\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let server = Server::start_with(&data, &["--auth", auth.to_str().unwrap()]);
    let url = format!("http://{}", server.address);
    let (status, body) = server.request("GET", "/streams/order-1", &[], "");
    assert_eq!(status, 401, "{body}");

    let refused = cli(&[
        "append",
        "--server",
        &url,
        "order-1",
        "--type",
        "OrderPlaced",
        "--json",
        "{}",
    ]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("unauthorized"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let appended = cli(&[
        "append",
        "--server",
        &url,
        "--token",
        "ops-token-0123456789",
        "order-1",
        "--type",
        "OrderPlaced",
        "--json",
        "{}",
    ]);
    assert!(
        appended.status.success(),
        "{}",
        String::from_utf8_lossy(&appended.stderr)
    );
    let listed = Command::new(env!("CARGO_BIN_EXE_eventfold"))
        .args(["streams", "--server", &url])
        .env("EVENTFOLD_TOKEN", "ops-token-0123456789")
        .env_remove("EVENTFOLD_DATA")
        .output()
        .unwrap();
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout).trim(),
        r#"{"stream":"order-1","last_revision":0}"#
    );
    server.stop();
}

#[test]
fn serve_refuses_a_public_address_without_authentication() {
    let dir = tempfile::tempdir().unwrap();
    let output = cli(&[
        "serve",
        "--data",
        dir.path().to_str().unwrap(),
        "--listen",
        "0.0.0.0:0",
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--auth") && stderr.contains("--insecure"),
        "{stderr}"
    );
}
