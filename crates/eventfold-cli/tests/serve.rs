//! Scenario: `eventfold serve` as a separate process, spoken to over a real socket as a
//! client in another language would; stopped with SIGTERM (graceful: it exits 0) and
//! started again on the same data directory, where everything acknowledged is still there.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

use eventfold_testsupport::cli::{Cli, Served};
use eventfold_testsupport::dirs::{path_arg, temp_dir};

/// The `eventfold` binary of this crate.
fn eventfold() -> Cli {
    Cli::new(env!("CARGO_BIN_EXE_eventfold"))
}

struct Server {
    process: Served,
    address: String,
}

impl Server {
    fn start(data: &std::path::Path) -> Server {
        Server::start_with(data, &[])
    }

    fn start_with(data: &std::path::Path, extra: &[&str]) -> Server {
        Server::spawn(Server::command(data, extra))
    }

    fn command(data: &std::path::Path, extra: &[&str]) -> Command {
        let mut command =
            eventfold().command(&["serve", "--data", path_arg(data), "--listen", "127.0.0.1:0"]);
        command.args(extra);
        command
    }

    /// Starts `command` and waits for the address it announces.
    fn spawn(command: Command) -> Server {
        let process = Served::spawn(command);
        Server {
            address: process.address().to_string(),
            process,
        }
    }

    /// One HTTP/1.1 request; returns the status and the body.
    fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String) {
        try_request(&self.address, method, path, headers, body).expect("the server answers")
    }

    fn stop(self) {
        self.process.stop();
    }
}

#[test]
fn the_server_speaks_the_contract_and_keeps_what_it_acknowledged() {
    let dir = temp_dir();
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

/// One HTTP/1.1 request on a new connection; an error when the server is gone.
fn try_request(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(address)?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no HTTP status in '{response}'")))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

fn cli(args: &[&str]) -> std::process::Output {
    eventfold().run(args)
}

#[test]
fn schemas_registered_with_the_cli_convert_reads_and_survive_a_restart() {
    let dir = temp_dir();
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
        dir.arg(),
        "InventoryItemDeactivated",
    ]);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    // One JSON line per version (stdout is a pipe here, so JSON rather than a table).
    let listed: Vec<serde_json::Value> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(listed[0]["type"], "InventoryItemDeactivated");
    assert_eq!(listed[0]["version"], 2);
    assert_eq!(listed[0]["downcast"], "{id: .itemId}");
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
    let dir = temp_dir();
    let data = dir.arg();
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
    let dir = temp_dir();
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
    let tail = eventfold()
        .command(&["tail", "--server", &url, "order-1", "--count", "2"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The tail has started when the server counts its subscription.
    loop {
        let (_, metrics) = server.request("GET", "/metrics", &[], "");
        if metrics.contains("eventfold_subscriptions_open 1") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
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
    let dir = temp_dir();
    let auth = dir.path().join("auth.toml");
    std::fs::write(
        &auth,
        "[[users]]\nname = \"ops\"\ntoken = \"ops-token-0123456789\"\nroles = [\"admin\"]\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let server = Server::start_with(&data, &["--auth", path_arg(&auth)]);
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
    let listed = eventfold()
        .env("EVENTFOLD_TOKEN", "ops-token-0123456789")
        .run(&["streams", "--server", &url]);
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
    let dir = temp_dir();
    let output = cli(&["serve", "--data", dir.arg(), "--listen", "0.0.0.0:0"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--auth") && stderr.contains("--insecure"),
        "{stderr}"
    );
}

#[test]
fn serve_refuses_limits_it_cannot_serve_before_listening() {
    let dir = temp_dir();
    for (flag, value, named) in [
        ("--connections-max", "0", "connections_max"),
        ("--header-read-timeout-ms", "0", "header_read_timeout_ms"),
        ("--read-bytes-max", "0", "read_bytes_max"),
    ] {
        let output = cli(&[
            "serve",
            "--data",
            dir.arg(),
            "--listen",
            "127.0.0.1:0",
            flag,
            value,
        ]);
        assert!(!output.status.success(), "{flag} {value}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(named), "{stderr}");
        assert!(
            output.stdout.is_empty(),
            "announced an address it would not serve"
        );
    }
}

/// Scenario: 16 clients append over HTTP while the server is killed with SIGKILL;
/// after a restart on the same data directory, every append that was answered 201 is
/// there, at the revision the answer gave, with its id. The server logs one JSON line
/// per request.
#[test]
fn every_acknowledged_http_append_survives_kill_9() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    let dir = temp_dir();
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");
    let mut command = Server::command(&data, &[]);
    command
        .env("EVENTFOLD_LOG", "eventfold_server::request=info")
        .env("EVENTFOLD_LOG_FORMAT", "json")
        .stderr(std::fs::File::create(&log).unwrap());
    let mut server = Server::spawn(command);

    const CLIENTS: usize = 16;
    const KILL_AFTER: usize = 400;
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let (address, acknowledged, count) =
                (server.address.clone(), acknowledged.clone(), count.clone());
            std::thread::spawn(move || {
                let stream = format!("load-{client}");
                for n in 0.. {
                    let id = uuid::Uuid::new_v4();
                    let body = format!(r#"[{{"id":"{id}","type":"Loaded","data":{{"n":{n}}}}}]"#);
                    match try_request(&address, "POST", &format!("/streams/{stream}"), &[], &body) {
                        Ok((201, answer)) => {
                            let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
                            let revision = answer["first_revision"].as_u64().unwrap();
                            acknowledged
                                .lock()
                                .unwrap()
                                .push((stream.clone(), revision, id));
                            count.fetch_add(1, Ordering::SeqCst);
                        }
                        // Anything but a 201 is not a promise; the server may be dying.
                        Ok(_) | Err(_) => {
                            if try_request(&address, "GET", "/health", &[], "").is_err() {
                                return;
                            }
                        }
                    }
                }
            })
        })
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while count.load(Ordering::SeqCst) < KILL_AFTER {
        assert!(
            std::time::Instant::now() < deadline,
            "the clients made no progress"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    server.process.kill(); // SIGKILL: no shutdown code runs.
    for client in clients {
        client.join().unwrap();
    }

    let server = Server::start(&data);
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= KILL_AFTER);
    for (stream, revision, id) in &acknowledged {
        let (status, body) =
            server.request("GET", &format!("/streams/{stream}/{revision}"), &[], "");
        assert_eq!(
            status, 200,
            "acknowledged {revision}@{stream} is lost: {body}"
        );
        let event: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            event["id"],
            id.to_string(),
            "{revision}@{stream} holds another event"
        );
    }
    server.stop();

    let log = std::fs::read_to_string(&log).unwrap();
    let line = log
        .lines()
        .find(|line| line.contains("/streams/load-"))
        .unwrap_or_else(|| panic!("no request logged: {log}"));
    let line: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
    assert_eq!(line["fields"]["status"], 201, "{line}");
    assert_eq!(line["fields"]["method"], "POST", "{line}");
}

/// Scenario: `serve --tls-cert --tls-key` speaks HTTPS only; the CLI reaches it with
/// `--ca-cert` trusting the server's self-signed certificate.
#[test]
fn serve_over_tls_with_a_self_signed_certificate() {
    let dir = temp_dir();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let data = dir.path().join("data");
    let server = Server::start_with(
        &data,
        &["--tls-cert", path_arg(&cert), "--tls-key", path_arg(&key)],
    );
    let port = server.address.rsplit(':').next().unwrap();
    let url = format!("https://localhost:{port}");

    let appended = cli(&[
        "append",
        "--server",
        &url,
        "--ca-cert",
        path_arg(&cert),
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
    let read = cli(&[
        "read",
        "--server",
        &url,
        "--ca-cert",
        path_arg(&cert),
        "order-1",
    ]);
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&read.stdout).lines().count(), 1);

    // Without trusting the certificate the client refuses the server...
    let untrusted = cli(&["read", "--server", &url, "order-1"]);
    assert!(!untrusted.status.success());
    // ...and plain HTTP gets no answer from a TLS port.
    let plain = try_request(&server.address, "GET", "/health", &[], "");
    assert!(
        !matches!(plain, Ok((200, _))),
        "plain HTTP must not be served on the TLS port: {plain:?}"
    );
    server.stop();
}

/// Scenario: a registration whose jq converter would run for an hour is under way when
/// SIGTERM arrives: the server interrupts the converter, answers the registration
/// `503 shutting_down`, and exits 0 (before, it kept a core busy and ignored SIGTERM).
#[cfg(target_os = "linux")]
#[test]
fn sigterm_interrupts_a_converter_under_way() {
    let dir = temp_dir();
    let server = Server::start_with(
        dir.path(),
        &[
            "--jq-steps-max",
            "18446744073709551615",
            "--jq-run-millis-max",
            "3600000",
        ],
    );
    let (status, body) = server.request(
        "POST",
        "/streams/item-1",
        &[],
        r#"[{"type":"Looped","data":{"id":1}}]"#,
    );
    assert_eq!(status, 201, "{body}");
    let cpu_ticks = |pid: u32| -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        // Fields after the command name (which ends with ')'); utime is the 14th field.
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        fields[11].parse().unwrap()
    };
    let pid = server.process.pid();
    let idle = cpu_ticks(pid);
    let address = server.address.clone();
    let registration = std::thread::spawn(move || {
        try_request(
            &address,
            "PUT",
            "/schemas/Looped/2",
            &[],
            r#"{"upcast": "def f: f; f"}"#,
        )
    });
    // The converter spins: wait until the server has used a second of CPU beyond idle.
    while cpu_ticks(pid) < idle + 100 {
        assert!(
            !registration.is_finished(),
            "the registration ended by itself"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    server.stop();
    let (status, body) = registration
        .join()
        .unwrap()
        .expect("the registration is answered");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("shutting_down"), "{body}");
}

/// An export holds eventfold's own events (metadata, a tombstone). Imported into a
/// data directory they are restored as they were; through a server, which takes no
/// such event from a client, the tombstone becomes a hard delete and the system
/// streams are skipped.
#[test]
fn an_export_with_a_hard_delete_imports_into_a_data_directory_and_a_server() {
    let source = temp_dir();
    let s = source.arg();
    for (stream, expected) in [
        ("order-1", "no_stream"),
        ("order-1", "0"),
        ("order-2", "no_stream"),
    ] {
        let out = cli(&[
            "append",
            "--data",
            s,
            stream,
            "--type",
            "Placed",
            "--json",
            "{}",
            "--expected",
            expected,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for args in [
        vec![
            "metadata",
            "--data",
            s,
            "order-1",
            "--set",
            r#"{"max_count":10}"#,
        ],
        vec!["delete", "--data", s, "order-2", "--hard"],
    ] {
        let out = cli(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let file = source.path().join("export.ndjson");
    let out = cli(&["export", "--data", s, "--output", path_arg(&file)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let copy = temp_dir();
    let c = copy.arg();
    let out = cli(&["import", "--data", c, path_arg(&file)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = |dir: &str| {
        let out = cli(&["read", "--data", dir, "$all"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|line| {
                let mut event: serde_json::Value = serde_json::from_str(line).unwrap();
                event.as_object_mut().unwrap().remove("recorded_at");
                event
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(all(c), all(s), "the data directory holds the same log");
    let out = cli(&[
        "append", "--data", c, "order-2", "--type", "Placed", "--json", "{}",
    ]);
    assert!(!out.status.success(), "order-2 stays deleted in the copy");

    let served = temp_dir();
    let server = Server::start(served.path());
    let url = format!("http://{}", server.address);
    let out = cli(&["import", "--server", &url, path_arg(&file)]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("hard-deleted 1 streams"), "{stderr}");
    assert!(
        stderr.contains("skipped 2 events of system streams"),
        "{stderr}"
    );
    let (status, body) = server.request("GET", "/streams/order-1", &[], "");
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.request("GET", "/streams/order-2", &[], "");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("stream_deleted"), "{body}");
    server.stop();
}
