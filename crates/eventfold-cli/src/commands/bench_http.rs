//! `eventfold bench http`: appends per second over loopback HTTP, one 200-byte event
//! per request on each of N keep-alive connections (64 by default, as in our
//! target), against a server it starts on a data directory or one given by URL. The
//! load generator runs in this process and shares the machine's cores with the server.
//!
//! With a data directory, the run also measures its baseline: the same number of
//! writers appending the same events to the same store in this process, without HTTP,
//! just before and just after the HTTP load; the HTTP rate is printed as a ratio to it.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use eventfold_core::{EventStore, ExpectedVersion};
use eventfold_log::LogStore;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::bench::Figure;

/// Our target for the server over loopback with 64 connections.
const TARGET_APPENDS_PER_SECOND: f64 = 30_000.0;
/// Our target for HTTP beside the same writers in process, in the same run.
const TARGET_RATIO_TO_IN_PROCESS: f64 = 0.5;

/// Measure appends per second over HTTP with many connections.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Start a server on this data directory (in DIR/bench-http, removed first).
    #[arg(
        long,
        env = "EVENTFOLD_DATA",
        value_name = "DIR",
        conflicts_with = "server",
        required_unless_present = "server"
    )]
    data: Option<std::path::PathBuf>,
    /// Load a running server instead (http://HOST:PORT, as every command takes it).
    /// Its appends stay in that store, in streams bench-http-0 to bench-http-N.
    #[arg(long, value_name = "URL", value_parser = crate::server_url)]
    server: Option<String>,
    /// Bearer token for a server with users.
    #[arg(long, env = "EVENTFOLD_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Keep-alive connections, each with one request in flight.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Seconds of load (after one second of warm-up).
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
pub(super) struct Report {
    connections: usize,
    seconds: f64,
    appends: u64,
    appends_per_second: f64,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    target_appends_per_second: f64,
    ratio_to_target: f64,
    met: bool,
    /// The baseline, with `--data` only: appends/s of as many writers in this process,
    /// just before and just after the HTTP load.
    in_process_before: Option<f64>,
    in_process_after: Option<f64>,
    /// HTTP appends/s ÷ the mean of the two in-process figures.
    ratio_to_in_process: Option<f64>,
    target_ratio_to_in_process: f64,
    met_ratio_to_in_process: Option<bool>,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let report = measure(&args).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "HTTP appends, {} connections: {:.0} appends/s (p50 {:.2} ms, p99 {:.2} ms); target {:.0}: {:.2}x, {}",
            report.connections,
            report.appends_per_second,
            report.latency_p50_ms,
            report.latency_p99_ms,
            report.target_appends_per_second,
            report.ratio_to_target,
            if report.met { "met" } else { "missed" }
        );
        if let (Some(before), Some(after), Some(ratio), Some(met)) = (
            report.in_process_before,
            report.in_process_after,
            report.ratio_to_in_process,
            report.met_ratio_to_in_process,
        ) {
            println!(
                "in process, {} writers on the same store: {before:.0} appends/s before, {after:.0} after; \
                 HTTP ÷ their mean: {ratio:.2} (target ≥ {TARGET_RATIO_TO_IN_PROCESS}), {}",
                report.connections,
                if met { "met" } else { "missed" }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

impl Report {
    /// The figures of `eventfold bench all`: the rate beside the in-process writers of
    /// the same run, and beside the absolute target.
    pub(super) fn figures(&self) -> Vec<Figure> {
        let name = format!(
            "HTTP over loopback, {} connections, 1 event per request",
            self.connections
        );
        let mut figures = Vec::new();
        if let (Some(ratio), Some(met)) = (self.ratio_to_in_process, self.met_ratio_to_in_process) {
            figures.push(Figure {
                name: name.clone(),
                value: self.appends_per_second,
                unit: "appends/s",
                ratio,
                ratio_of: "appends/s ÷ the mean appends/s of as many writers in process on the same store, just before and just after",
                target: format!("≥ {TARGET_RATIO_TO_IN_PROCESS} × in process"),
                met: Some(met),
            });
        }
        figures.push(Figure {
            name: format!(
                "HTTP over loopback, {} connections, absolute",
                self.connections
            ),
            value: self.appends_per_second,
            unit: "appends/s",
            ratio: self.ratio_to_target,
            ratio_of: "appends/s ÷ the absolute target (30,000/s, on a good day's disk)",
            target: format!("≥ {TARGET_APPENDS_PER_SECOND:.0} appends/s"),
            met: Some(self.met),
        });
        figures
    }
}

/// Runs the load (and, with `--data`, its in-process baseline before and after).
pub(super) async fn measure(args: &Args) -> anyhow::Result<Report> {
    if let Some(token) = &args.token {
        anyhow::ensure!(
            !token.chars().any(char::is_control),
            "--token holds a control character, which no HTTP header can carry"
        );
    }
    let warm_up = Duration::from_secs(1);
    let measured = Duration::from_secs_f64(args.seconds);
    let mut baseline = None;
    let (address, server) = match (&args.server, &args.data) {
        (Some(server), _) => {
            let address = server_address(server)?;
            eprintln!(
                "warning: this appends to the live store of {server}: about {} events a \
                 second for {} s, into streams bench-http-0 to bench-http-{}, which stay \
                 there (`eventfold delete` removes them from reads)",
                args.connections * 500,
                args.seconds + 1.0,
                args.connections.saturating_sub(1)
            );
            (address, None)
        }
        (None, Some(dir)) => {
            let dir = dir.join("bench-http");
            let _ = std::fs::remove_dir_all(&dir);
            let store = Arc::new(super::open_store(&dir)?);
            if !args.json {
                eprintln!(
                    "… in process first: {} writers appending one 200-byte event each to the same store for {} s",
                    args.connections, args.seconds
                );
            }
            let before = in_process_rate(&store, args.connections, warm_up, measured).await?;
            baseline = Some((store.clone(), before));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let address = listener.local_addr()?;
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let config = eventfold_server::ServerConfig::default();
            let task = tokio::spawn(eventfold_server::serve(store, config, listener, async {
                let _ = stopped.await;
            }));
            (address, Some((stop, task)))
        }
        (None, None) => anyhow::bail!("name a data directory (--data) or a server (--server)"),
    };
    if !args.json {
        eprintln!(
            "… {} connections appending one 200-byte event per request to http://{address} for {} s",
            args.connections, args.seconds
        );
    }
    let start = Instant::now() + warm_up;
    let end = start + measured;
    let token = args.token.clone().map(Arc::<str>::from);
    // A server that stops answering fails the run this long after its end (one timer
    // per connection, none per request).
    let patience = Duration::from_secs(30);
    let workers: Vec<_> = (0..args.connections)
        .map(|n| {
            let connection = connection(address, n, token.clone(), start, end);
            tokio::spawn(tokio::time::timeout_at((end + patience).into(), connection))
        })
        .collect();
    let mut latencies = Vec::new();
    for worker in workers {
        let answered = worker.await?.map_err(|_| {
            anyhow::anyhow!(
                "the server at {address} did not answer within {} s of the end of the run",
                patience.as_secs()
            )
        })?;
        latencies.extend(answered?);
    }
    if let Some((stop, task)) = server {
        let _ = stop.send(());
        task.await??;
    }
    let in_process = match baseline {
        Some((store, before)) => {
            let after = in_process_rate(&store, args.connections, warm_up, measured).await?;
            Some((before, after))
        }
        None => None,
    };
    latencies.sort_unstable();
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d: &Duration| d.as_secs_f64() * 1e3)
    };
    let rate = latencies.len() as f64 / measured.as_secs_f64();
    Ok(Report {
        connections: args.connections,
        seconds: args.seconds,
        appends: latencies.len() as u64,
        appends_per_second: rate,
        latency_p50_ms: percentile(0.50),
        latency_p99_ms: percentile(0.99),
        target_appends_per_second: TARGET_APPENDS_PER_SECOND,
        ratio_to_target: rate / TARGET_APPENDS_PER_SECOND,
        met: rate >= TARGET_APPENDS_PER_SECOND,
        in_process_before: in_process.map(|(before, _)| before),
        in_process_after: in_process.map(|(_, after)| after),
        ratio_to_in_process: in_process.map(|(before, after)| rate / ((before + after) / 2.0)),
        target_ratio_to_in_process: TARGET_RATIO_TO_IN_PROCESS,
        met_ratio_to_in_process: in_process
            .map(|(before, after)| rate / ((before + after) / 2.0) >= TARGET_RATIO_TO_IN_PROCESS),
    })
}

/// The baseline of the same run: `writers` tasks in this process appending one event
/// each (the body the HTTP connections send) to their own stream of `store`, counted
/// for `measured` after `warm_up`, as the connections are.
async fn in_process_rate(
    store: &Arc<LogStore>,
    writers: usize,
    warm_up: Duration,
    measured: Duration,
) -> anyhow::Result<f64> {
    let start = Instant::now() + warm_up;
    let end = start + measured;
    let event = super::bench::bench_event();
    let tasks: Vec<_> = (0..writers)
        .map(|n| {
            let store = store.clone();
            let event = event.clone();
            tokio::spawn(async move {
                let stream = format!("bench-in-process-{n}");
                let mut counted = 0u64;
                loop {
                    let sent = Instant::now();
                    if sent >= end {
                        return anyhow::Ok(counted);
                    }
                    store
                        .append(&stream, ExpectedVersion::Any, vec![event.clone()])
                        .await?;
                    if sent >= start {
                        counted += 1;
                    }
                }
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    Ok(total as f64 / measured.as_secs_f64())
}

/// The socket address of a `--server` URL; the load generator speaks plain HTTP only.
fn server_address(server: &str) -> anyhow::Result<SocketAddr> {
    let url = eventfold_client::parse_server_url(server)?;
    anyhow::ensure!(
        url.scheme() == "http",
        "--server {server}: `bench http` loads plain http:// servers only (its load \
         generator has no TLS); serve a copy of the store without TLS to measure it"
    );
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or(80);
    std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .with_context(|| format!("--server {server}: cannot resolve {host}"))?
        .next()
        .with_context(|| format!("--server {server}: {host} resolves to no address"))
}

/// One keep-alive connection appending to its own stream until `end`; returns the
/// latency of each append acknowledged between `start` and `end`.
///
/// The request's bytes are made once and sent as they are, and each answer is read with
/// `httparse` in this one task: a generator as lean as `wrk`, so that its share of the
/// two cores goes to the server under test. (hyper's client, used before, moves every
/// request through a connection task of its own: two more task wake-ups, and about
/// 20,800 instructions per request in the generator against 3,600 now.)
async fn connection(
    address: SocketAddr,
    n: usize,
    token: Option<Arc<str>>,
    start: Instant,
    end: Instant,
) -> anyhow::Result<Vec<Duration>> {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .with_context(|| format!("cannot connect to {address}"))?;
    stream.set_nodelay(true)?;
    let request = append_request(address, n, token.as_deref());
    let mut answer = Vec::with_capacity(4096);
    let mut latencies = Vec::new();
    loop {
        let sent = Instant::now();
        if sent >= end {
            return Ok(latencies);
        }
        stream.write_all(&request).await?;
        let (status, body) = read_answer(&mut stream, &mut answer).await?;
        anyhow::ensure!(
            status == 201,
            "the server answered {status}: {}",
            String::from_utf8_lossy(&answer[body..])
        );
        if sent >= start {
            latencies.push(sent.elapsed());
        }
    }
}

/// The bytes of one HTTP/1.1 request appending to `bench-http-{n}` the event the
/// in-process baseline appends.
fn append_request(address: SocketAddr, n: usize, token: Option<&str>) -> Vec<u8> {
    let event = super::bench::bench_event();
    let body = format!(
        r#"[{{"type":"{}","data":{}}}]"#,
        event.event_type,
        String::from_utf8_lossy(&event.data)
    );
    let authorization = token
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    format!(
        "POST /streams/bench-http-{n} HTTP/1.1\r\nHost: {address}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n{authorization}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Reads one answer from `stream` into `buffer` (emptied first); returns its status
/// code and where its body starts. The server answers appends with a `Content-Length`;
/// an answer without one, a second answer, or a closed connection is an error.
async fn read_answer(
    stream: &mut tokio::net::TcpStream,
    buffer: &mut Vec<u8>,
) -> anyhow::Result<(u16, usize)> {
    buffer.clear();
    loop {
        anyhow::ensure!(
            stream.read_buf(buffer).await? > 0,
            "the server closed the connection before it answered"
        );
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(head) = response.parse(buffer)? else {
            continue;
        };
        let status = response.code.unwrap_or_default();
        let length = response
            .headers
            .iter()
            .find(|header| header.name.eq_ignore_ascii_case("content-length"))
            .and_then(|header| {
                std::str::from_utf8(header.value)
                    .ok()?
                    .trim()
                    .parse::<usize>()
                    .ok()
            })
            .with_context(|| format!("the server answered {status} without a Content-Length"))?;
        let whole = head
            .checked_add(length)
            .with_context(|| format!("the server answered a Content-Length of {length}"))?;
        while buffer.len() < whole {
            anyhow::ensure!(
                stream.read_buf(buffer).await? > 0,
                "the server closed the connection in the middle of its answer"
            );
        }
        anyhow::ensure!(
            buffer.len() == whole,
            "the server sent more than one answer to one request"
        );
        return Ok((status, head));
    }
}
