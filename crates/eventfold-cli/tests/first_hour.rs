//! What stood in a new user's way in their first hour, each through the real binary:
//! a locked store names who holds it and how to reach it; one `--server` URL form
//! everywhere, and an unreachable server says so; a self-signed certificate marked
//! as a CA is accepted once given; the listing commands print tables or JSON lines;
//! `$all` reads backward; `append --ndjson` loads many events; `import` counts new and
//! existing events; `serve` reads a settings file and its log has no colour codes in a
//! file and one insecure-mode warning.

use std::process::Stdio;

use eventfold_testsupport::cli::{Cli, Served, text};
use eventfold_testsupport::dirs::{path_arg, temp_dir};

fn cli() -> Cli {
    Cli::new(env!("CARGO_BIN_EXE_eventfold"))
}

fn succeeds(args: &[&str]) -> String {
    let output = cli().run(args);
    assert!(
        output.status.success(),
        "{args:?} failed: {}",
        text(&output.stderr)
    );
    text(&output.stdout)
}

fn fails(args: &[&str]) -> String {
    let output = cli().run(args);
    assert!(!output.status.success(), "{args:?} must fail");
    text(&output.stderr)
}

fn lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

#[test]
fn a_store_held_by_a_server_names_its_process_and_url() {
    let dir = temp_dir();
    let server = cli().serve(&["--data", dir.arg(), "--listen", "127.0.0.1:0"]);
    let stderr = fails(&["read", "--data", dir.arg(), "order-1"]);
    assert!(
        stderr.contains(&format!("process {}", server.pid())),
        "the PID of the holder: {stderr}"
    );
    assert!(stderr.contains("eventfold serve"), "{stderr}");
    assert!(
        stderr.contains(&format!("--server http://{}", server.address())),
        "how to reach it: {stderr}"
    );
    server.stop();
}

#[test]
fn every_server_url_form_works_and_a_wrong_one_says_what_to_write() {
    let dir = temp_dir();
    let server = cli().serve(&["--data", dir.arg(), "--listen", "127.0.0.1:0"]);
    let bare = server.address().to_string();
    succeeds(&[
        "append",
        "--server",
        &bare,
        "order-1",
        "--type",
        "OrderPlaced",
        "--json",
        "{}",
    ]);
    for url in [
        bare.clone(),
        format!("http://{bare}"),
        format!("http://{bare}/"),
    ] {
        let read = lines(&succeeds(&["read", "--server", &url, "order-1"]));
        assert_eq!(read.len(), 1, "{url}");
    }
    let wrong = fails(&["read", "--server", "ftp://127.0.0.1:1", "order-1"]);
    assert!(wrong.contains("http://HOST:PORT"), "{wrong}");
    server.stop();

    // Nothing listens there any more.
    let refused = fails(&["read", "--server", &bare, "order-1"]);
    assert!(
        refused.contains("cannot connect") && refused.contains("refused"),
        "{refused}"
    );
}

#[test]
fn bench_http_takes_a_server_url_and_warns_before_writing_into_it() {
    let dir = temp_dir();
    let server = cli().serve(&["--data", dir.arg(), "--listen", "127.0.0.1:0"]);
    let url = format!("http://{}", server.address());
    let output = cli().run(&[
        "bench",
        "http",
        "--server",
        &url,
        "--connections",
        "2",
        "--seconds",
        "0.2",
        "--json",
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("warning") && stderr.contains("bench-http-0"),
        "{stderr}"
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(report["appends_per_second"].is_number(), "{report}");
    // Each connection appended at least once, whether or not within the measured
    // 0.2 s (on a loaded machine the first appends can take longer than that).
    for n in 0..2 {
        let read = cli().run(&["read", "--server", &url, &format!("bench-http-{n}")]);
        assert!(read.status.success(), "{}", text(&read.stderr));
        assert!(
            !text(&read.stdout).trim().is_empty(),
            "bench-http-{n} is empty"
        );
    }
    let https = fails(&["bench", "http", "--server", "https://127.0.0.1:1"]);
    assert!(https.contains("plain http://"), "{https}");
    server.stop();
}

#[test]
fn a_self_signed_certificate_marked_as_a_ca_is_trusted_once_given() {
    // What `openssl req -x509` makes by default: a self-signed certificate with
    // basicConstraints CA:TRUE, which strict verifiers refuse as a server's own.
    let dir = temp_dir();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    let certificate = params.self_signed(&key).unwrap();
    let cert = dir.join("cert.pem");
    let key_file = dir.join("key.pem");
    std::fs::write(&cert, certificate.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let data = dir.join("data");
    let server = cli().serve(&[
        "--data",
        path_arg(&data),
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        path_arg(&cert),
        "--tls-key",
        path_arg(&key_file),
    ]);
    let port = server.address().rsplit(':').next().unwrap().to_string();
    let url = format!("https://localhost:{port}");
    succeeds(&[
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
    // Without it the server is not trusted, and the error names the certificate.
    let refused = fails(&["read", "--server", &url, "order-1"]);
    assert!(refused.contains("certificate"), "{refused}");
    // Another certificate given does not let this server in.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let other_file = dir.join("other.pem");
    std::fs::write(&other_file, other.cert.pem()).unwrap();
    fails(&[
        "read",
        "--server",
        &url,
        "--ca-cert",
        path_arg(&other_file),
        "order-1",
    ]);
    server.stop();
}

#[test]
fn listings_print_a_table_or_json_lines_and_all_reads_backward() {
    let dir = temp_dir();
    for (stream, total) in [("order-1", 1), ("order-2", 2), ("order-10", 3)] {
        succeeds(&[
            "append",
            "--data",
            dir.arg(),
            stream,
            "--type",
            "OrderPlaced",
            "--json",
            &format!("{{\"total\":{total}}}"),
        ]);
    }
    // Piped: JSON lines, one per stream.
    let json = lines(&succeeds(&["streams", "--data", dir.arg()]));
    assert_eq!(json.len(), 3);
    assert_eq!(json[0]["stream"], "order-1");
    let table = succeeds(&["streams", "--data", dir.arg(), "--format", "table"]);
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(rows.len(), 4, "a header and three rows: {table}");
    assert!(rows[0].starts_with("STREAM") && rows[0].contains("LAST_REVISION"));
    assert!(rows[1].starts_with("order-1 "), "{table}");
    let metadata = succeeds(&[
        "metadata",
        "--data",
        dir.arg(),
        "order-1",
        "--format",
        "table",
    ]);
    assert!(metadata.starts_with("FIELD"), "{metadata}");
    let metadata = lines(&succeeds(&["metadata", "--data", dir.arg(), "order-1"]));
    assert_eq!(metadata.len(), 1, "one JSON line");

    let latest = lines(&succeeds(&[
        "read",
        "--data",
        dir.arg(),
        "$all",
        "--backward",
        "--limit",
        "2",
    ]));
    let positions: Vec<u64> = latest
        .iter()
        .map(|e| e["position"].as_u64().unwrap())
        .collect();
    let all = lines(&succeeds(&["read", "--data", dir.arg(), "$all"]));
    let last = all.last().unwrap()["position"].as_u64().unwrap();
    assert_eq!(
        positions,
        vec![last, last - 1],
        "the latest two, newest first"
    );
    let before = lines(&succeeds(&[
        "read",
        "--data",
        dir.arg(),
        "$all",
        "--backward",
        "--from",
        "1",
    ]));
    let positions: Vec<u64> = before
        .iter()
        .map(|e| e["position"].as_u64().unwrap())
        .collect();
    assert_eq!(positions, vec![1, 0]);
}

#[test]
fn append_ndjson_loads_many_events_in_batches() {
    let dir = temp_dir();
    let input: String = (0..2_500)
        .map(|n| format!("{{\"type\":\"ItemAdded\",\"data\":{{\"n\":{n}}}}}\n"))
        .collect();
    let output = cli().run_with_stdin(
        &[
            "append",
            "--data",
            dir.arg(),
            "cart-1",
            "--ndjson",
            "--batch",
            "1000",
            "--expected",
            "no_stream",
        ],
        input.as_bytes(),
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(result["first_revision"], 0);
    assert_eq!(result["last_revision"], 2_499);
    let events = lines(&succeeds(&["read", "--data", dir.arg(), "cart-1"]));
    assert_eq!(events.len(), 2_500);
    assert_eq!(events[2_499]["data"]["n"], 2_499);

    // A bad line stops it, naming the line; the batches before it are written.
    let mut bad = input.clone();
    bad.push_str("not json\n");
    let output = cli().run_with_stdin(
        &["append", "--data", dir.arg(), "cart-2", "--ndjson"],
        bad.as_bytes(),
    );
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("line 2501"),
        "{}",
        text(&output.stderr)
    );
    // `--expected` holds for the first batch.
    let output = cli().run_with_stdin(
        &[
            "append",
            "--data",
            dir.arg(),
            "cart-1",
            "--ndjson",
            "--expected",
            "no_stream",
        ],
        input.as_bytes(),
    );
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("expected"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn import_says_how_many_events_were_new_and_how_many_were_there() {
    let dir = temp_dir();
    let source = dir.join("source");
    for n in 0..3 {
        succeeds(&[
            "append",
            "--data",
            path_arg(&source),
            "order-1",
            "--type",
            "OrderPlaced",
            "--json",
            &format!("{{\"n\":{n}}}"),
        ]);
    }
    let export = dir.join("export.ndjson");
    succeeds(&[
        "export",
        "--data",
        path_arg(&source),
        "-o",
        path_arg(&export),
    ]);
    let target = dir.join("target");
    let first = cli().run(&["import", "--data", path_arg(&target), path_arg(&export)]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert!(
        text(&first.stderr).contains("3 new, 0 already there"),
        "{}",
        text(&first.stderr)
    );
    let again = cli().run(&["import", "--data", path_arg(&target), path_arg(&export)]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(
        text(&again.stderr).contains("0 new, 3 already there"),
        "{}",
        text(&again.stderr)
    );
}

#[test]
fn a_resent_id_with_other_data_is_refused_naming_the_id() {
    let dir = temp_dir();
    let id = "6a0f3b8e-5d2c-4c1e-9b7a-2f4d6e8a0c1b";
    let append = |json: &str| {
        cli().run(&[
            "append",
            "--data",
            dir.arg(),
            "order-1",
            "--type",
            "OrderPlaced",
            "--id",
            id,
            "--json",
            json,
        ])
    };
    assert!(append("{\"total\":5}").status.success());
    assert!(
        append("{\"total\":5}").status.success(),
        "the same again is idempotent"
    );
    let changed = append("{\"total\":6}");
    assert!(!changed.status.success());
    assert!(
        text(&changed.stderr).contains(id),
        "{}",
        text(&changed.stderr)
    );
    let events = lines(&succeeds(&["read", "--data", dir.arg(), "order-1"]));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["data"]["total"], 5);
}

#[test]
fn serve_reads_a_settings_file_and_the_command_line_wins() {
    let dir = temp_dir();
    let config = dir.join("eventfold.toml");
    std::fs::write(
        &config,
        format!(
            "data = \"{}\"\nlisten = \"127.0.0.1:1\"\ncors-origin = [\"https://console.example.com\"]\nconnections_max = 64\n",
            path_arg(&dir.join("data"))
        ),
    )
    .unwrap();
    let server = cli().serve(&["--config", path_arg(&config), "--listen", "127.0.0.1:0"]);
    assert!(
        dir.join("data").join("segments").is_dir(),
        "the file's data directory"
    );
    let port: u16 = server
        .address()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(port, 1, "the typed --listen wins");
    server.stop();

    std::fs::write(&config, "listen = \"127.0.0.1:0\"\nno_such_setting = 1\n").unwrap();
    let stderr = fails(&["serve", "--config", path_arg(&config), "--data", dir.arg()]);
    assert!(
        stderr.contains("no_such_setting") && stderr.contains("listen"),
        "{stderr}"
    );
}

#[test]
fn the_server_log_in_a_file_has_no_colour_codes_and_warns_once() {
    let dir = temp_dir();
    let log = dir.join("stderr.log");
    let mut command = cli().command(&[
        "serve",
        "--data",
        path_arg(&dir.join("data")),
        "--listen",
        "127.0.0.1:0",
    ]);
    command.stderr(Stdio::from(std::fs::File::create(&log).unwrap()));
    let server = Served::spawn(command);
    server.stop();
    let written = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        written.matches("INSECURE DEVELOPMENT MODE").count(),
        1,
        "one warning: {written}"
    );
    assert!(!written.contains('\u{1b}'), "no escape codes: {written:?}");
}
