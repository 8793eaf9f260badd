//! Connections over real sockets: a half-sent or silent client is closed after the
//! header read timeout, an idle keep-alive connection after the idle timeout (over TLS
//! too), a request being answered never; beyond the connection limit new connections
//! wait while the ones being served still answer; a request line or head too large
//! gets a JSON error; shutting down ends SSE subscriptions.
//!
//! Every wait below is a guard against a server that never answers (it fails the test),
//! never a measurement.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use eventfold_core::InMemoryStore;
use eventfold_server::{ServerConfig, TlsConfig};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// Longer than any deadline a test sets: reaching it means the server did not act.
const GUARD: Duration = Duration::from_secs(30);

struct Server {
    address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(config: ServerConfig, tls: Option<TlsConfig>) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            eventfold_server::serve_with(
                Arc::new(InMemoryStore::new()),
                config,
                listener,
                tls,
                async {
                    let _ = stopped.await;
                },
            )
            .await
            .unwrap();
        });
        Server {
            address,
            stop: Some(stop),
            task,
        }
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.address).await.unwrap()
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(GUARD, &mut self.task)
            .await
            .expect("the server stops")
            .unwrap();
    }
}

fn config(header_read_timeout_ms: u64, idle_timeout_ms: u64) -> ServerConfig {
    ServerConfig {
        header_read_timeout_ms,
        idle_timeout_ms,
        ..ServerConfig::default()
    }
}

/// Sends one keep-alive request and reads its answer: status and JSON body.
async fn request(io: &mut (impl AsyncRead + AsyncWrite + Unpin), path: &str) -> (u16, Value) {
    let head = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    io.write_all(head.as_bytes()).await.unwrap();
    tokio::time::timeout(GUARD, read_answer(io))
        .await
        .expect("an answer")
}

/// Reads one HTTP answer with a `content-length`.
async fn read_answer(io: &mut (impl AsyncRead + Unpin)) -> (u16, Value) {
    let mut received = Vec::new();
    let mut byte = [0u8; 1];
    while !received.ends_with(b"\r\n\r\n") {
        assert_eq!(io.read(&mut byte).await.unwrap(), 1, "closed mid-answer");
        received.push(byte[0]);
    }
    let head = String::from_utf8(received).unwrap();
    let status = head[9..12].parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("a content-length");
    let mut body = vec![0u8; length];
    io.read_exact(&mut body).await.unwrap();
    let body = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into()));
    (status, body)
}

/// Waits for the server to close the connection (end of input or a reset).
async fn closed_by_server(io: &mut (impl AsyncRead + Unpin)) {
    let mut buf = [0u8; 1024];
    match tokio::time::timeout(GUARD, io.read(&mut buf)).await {
        Err(_) => panic!("the server kept the connection open"),
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(n)) => panic!("unexpected answer: {}", String::from_utf8_lossy(&buf[..n])),
    }
}

async fn metric(server: &Server, name: &str) -> u64 {
    let mut io = server.connect().await;
    let (status, body) = request(&mut io, "/metrics").await;
    assert_eq!(status, 200);
    let text = body.as_str().unwrap().to_string();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn half_sent_silent_and_idle_connections_are_closed() {
    let server = Server::start(config(300, 600), None).await;

    // A request whose head never ends.
    let mut half_sent = server.connect().await;
    half_sent
        .write_all(b"GET /health HTTP/1.1\r\nHost: test\r\n")
        .await
        .unwrap();
    // A client that connects and says nothing.
    let mut silent = server.connect().await;
    // A client that asks once, then keeps the connection without asking again.
    let mut idle = server.connect().await;
    assert_eq!(request(&mut idle, "/health").await.0, 200);

    closed_by_server(&mut half_sent).await;
    closed_by_server(&mut silent).await;
    closed_by_server(&mut idle).await;
    assert_eq!(
        metric(&server, "eventfold_connections_header_timeouts_total").await,
        2
    );
    assert_eq!(
        metric(&server, "eventfold_connections_idle_timeouts_total").await,
        1
    );

    // A head sent in pieces, in time, is answered; so are requests one after another
    // on one connection.
    let mut slow = server.connect().await;
    slow.write_all(b"GET /health HT").await.unwrap();
    slow.flush().await.unwrap();
    slow.write_all(b"TP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        tokio::time::timeout(GUARD, read_answer(&mut slow))
            .await
            .unwrap()
            .0,
        200
    );
    let mut keep_alive = server.connect().await;
    for _ in 0..3 {
        assert_eq!(request(&mut keep_alive, "/health").await.0, 200);
    }
    server.stop().await;
}

#[tokio::test]
async fn a_request_in_progress_is_not_cut_by_the_timeouts() {
    let server = Server::start(config(200, 200), None).await;
    let mut io = server.connect().await;
    // An SSE subscription answers for as long as the client stays, well past both
    // timeouts; the server sends keep-alive comments only every 15 s, so the
    // subscription is still open when a live event comes.
    io.write_all(b"GET /subscribe/all HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    while !received.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(GUARD, io.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed before answering");
        received.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&received).starts_with("HTTP/1.1 200"));
    // Once both deadlines have passed (the wait is what the test is about: a server
    // that cut the connection would fail below), an append reaches the subscriber.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut writer = server.connect().await;
    let body = r#"[{"type":"A","data":1}]"#;
    let post = format!(
        "POST /streams/order-1 HTTP/1.1\r\nHost: test\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    writer.write_all(post.as_bytes()).await.unwrap();
    assert_eq!(
        tokio::time::timeout(GUARD, read_answer(&mut writer))
            .await
            .unwrap()
            .0,
        201
    );
    let mut text = String::from_utf8_lossy(&received).to_string();
    while !text.contains("\"type\":\"A\"") {
        let n = tokio::time::timeout(GUARD, io.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "the subscription was closed");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    // Shutting down ends the subscription rather than wait for the subscriber.
    server.stop().await;
    let mut rest = Vec::new();
    tokio::time::timeout(GUARD, io.read_to_end(&mut rest))
        .await
        .expect("the subscription ends")
        .unwrap();
}

#[tokio::test]
async fn beyond_the_connection_limit_new_connections_wait_while_served_ones_answer() {
    let server = Server::start(
        ServerConfig {
            connections_max: 2,
            ..ServerConfig::default()
        },
        None,
    )
    .await;
    let mut first = server.connect().await;
    assert_eq!(request(&mut first, "/health").await.0, 200);
    let mut second = server.connect().await;
    assert_eq!(request(&mut second, "/health").await.0, 200);

    // The kernel completes the third connection, but the server does not take it.
    let mut third = server.connect().await;
    third
        .write_all(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    // A served connection still answers, and the server counts two connections.
    let (status, body) = request(&mut first, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        body.as_str()
            .unwrap()
            .contains("eventfold_connections_open 2\n"),
        "{body}"
    );
    let mut buf = [0u8; 1];
    assert!(
        third.try_read(&mut buf).is_err(),
        "the third connection was answered beyond the limit"
    );

    // Once a served connection closes, the waiting one is taken and answered.
    drop(second);
    assert_eq!(
        tokio::time::timeout(GUARD, read_answer(&mut third))
            .await
            .unwrap()
            .0,
        200
    );
    server.stop().await;
}

#[tokio::test]
async fn a_head_of_a_hundred_header_lines_is_taken() {
    let server = Server::start(ServerConfig::default(), None).await;
    let mut io = server.connect().await;
    let request = format!(
        "GET /health HTTP/1.1\r\nHost: test\r\n{}\r\n",
        (0..99).map(|i| format!("x-{i}: 1\r\n")).collect::<String>()
    );
    io.write_all(request.as_bytes()).await.unwrap();
    let (got, body) = tokio::time::timeout(GUARD, read_answer(&mut io))
        .await
        .expect("an answer");
    assert_eq!(got, 200, "{body}");
}

#[tokio::test]
async fn a_request_line_or_head_too_large_gets_a_json_error() {
    let server = Server::start(ServerConfig::default(), None).await;
    let cases = [
        // Over our limit, and over hyper's own (64 KiB), which would answer empty.
        (
            format!(
                "GET /streams/{} HTTP/1.1\r\nHost: test\r\n\r\n",
                "a".repeat(40_000)
            ),
            414,
            "uri_too_long",
        ),
        (
            format!(
                "GET /streams/{} HTTP/1.1\r\nHost: test\r\n\r\n",
                "a".repeat(70_000)
            ),
            414,
            "uri_too_long",
        ),
        (
            format!(
                "GET /health HTTP/1.1\r\nHost: test\r\nx-big: {}\r\n\r\n",
                "b".repeat(70_000)
            ),
            431,
            "headers_too_large",
        ),
        (
            format!(
                "GET /health HTTP/1.1\r\nHost: test\r\n{}\r\n",
                (0..150)
                    .map(|i| format!("x-{i}: 1\r\n"))
                    .collect::<String>()
            ),
            431,
            "headers_too_large",
        ),
    ];
    for (request, status, code) in cases {
        let mut io = server.connect().await;
        // The server may answer before the request is all sent.
        let (reader, mut writer) = io.split();
        let sending = async move {
            let _ = writer.write_all(request.as_bytes()).await;
        };
        let mut reader = reader;
        let (_, (got, body)) = tokio::join!(sending, async {
            tokio::time::timeout(GUARD, read_answer(&mut reader))
                .await
                .expect("an answer")
        });
        assert_eq!(
            (got, body["error"].as_str()),
            (status, Some(code)),
            "{body}"
        );
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // The server goes on answering others.
    let mut io = server.connect().await;
    assert_eq!(request(&mut io, "/health").await.0, 200);
    server.stop().await;
}

#[tokio::test]
async fn tls_connections_have_the_same_deadlines() {
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let tls = TlsConfig::from_pem_files(&cert, &key).unwrap();
    let server = Server::start(config(300, 300), Some(tls)).await;

    // No handshake at all.
    let mut silent = server.connect().await;
    closed_by_server(&mut silent).await;

    // A handshake, then a head that never ends; and a connection left idle.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut half_sent = connector
        .connect(name.clone(), server.connect().await)
        .await
        .unwrap();
    half_sent
        .write_all(b"GET /health HTTP/1.1\r\nHost: test\r\n")
        .await
        .unwrap();
    let mut idle = connector
        .connect(name, server.connect().await)
        .await
        .unwrap();
    assert_eq!(request(&mut idle, "/health").await.0, 200);
    closed_by_server(&mut half_sent).await;
    closed_by_server(&mut idle).await;
    server.stop().await;
}
