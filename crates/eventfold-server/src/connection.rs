//! Accepting and serving connections (HTTP/1.1, plain or TLS) with limits, so that idle
//! or half-sent connections cannot pile up:
//!
//! - at most `connections_max` connections are served at once; beyond that new ones
//!   wait in the kernel's accept queue until one closes (the ones being served keep
//!   answering);
//! - a new connection must deliver its first request head (after the TLS handshake,
//!   which counts) within `header_read_timeout_ms` of being accepted;
//! - between requests, the next request must start within `idle_timeout_ms`, and once
//!   its first byte came, its whole head must follow within `header_read_timeout_ms`;
//! - a request line or head too large to take is answered with a JSON `414` or `431`
//!   here, before hyper would answer it with an empty body.
//!
//! A connection past a deadline is closed. While a request is being answered (a long
//! poll, an SSE subscription), no deadline runs.

use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt;

use eventfold_wire::{ErrorBody, ErrorCode};

use crate::state::AppState;

/// The longest request line taken (method, target and version); longer ones get a
/// `414`. Below hyper's own limit, so that every such answer is ours.
pub(crate) const REQUEST_LINE_BYTES_MAX: usize = 32 * 1024;
/// The largest request head taken (request line and headers); larger ones get a `431`.
/// Below hyper's read buffer, for the same reason.
pub(crate) const HEAD_BYTES_MAX: usize = 64 * 1024;
/// The most header lines a request may have (`431` beyond). Hyper's own default is the
/// same 100, and our scan refuses a longer head before hyper reads it, so hyper keeps
/// its default: naming a limit makes it allocate and fill two header tables per request
/// (about a thirtieth of a small append's instructions, docs/performance.md).
pub(crate) const HEADERS_MAX: usize = 100;

/// Client bytes read and dropped after a `414` or `431`, so that the client sees the
/// answer rather than a reset; after that the connection is closed.
const DRAIN_BYTES_MAX: usize = 1024 * 1024;

/// The connection limits of [`crate::ServerConfig`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub connections_max: usize,
}

/// Accepts connections on `listener` (TLS ones through `tls`) and serves `app` on them
/// within `limits`, until `shutdown` completes; then stops accepting, ends SSE
/// subscriptions, lets every connection finish the other requests it is answering,
/// and returns once all are closed.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    state: Arc<AppState>,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let permits = Arc::new(Semaphore::new(limits.connections_max));
    let (stop, stopped) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    loop {
        // A permit first: beyond the limit, connections wait in the accept queue.
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit,
            () = &mut shutdown => break,
        };
        let Ok(permit) = permit else { break };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors and the like: wait a little, as axum does.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                        () = &mut shutdown => break,
                    }
                }
            },
            () = &mut shutdown => break,
        };
        let accepted = Instant::now();
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
        }
        let (app, state, tls, stopped) = (app.clone(), state.clone(), tls.clone(), stopped.clone());
        tokio::spawn(async move {
            let _open = state.metrics.connection_opened();
            match tls {
                None => serve_connection(tcp, peer, accepted, app, &state, limits, stopped).await,
                Some(tls) => {
                    let deadline = accepted + limits.header_read_timeout;
                    match tokio::time::timeout_at(deadline, tls.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            serve_connection(stream, peer, accepted, app, &state, limits, stopped)
                                .await
                        }
                        Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                        Err(_) => {
                            state.metrics.header_timeouts.fetch_add(1, Relaxed);
                            tracing::debug!(%peer, "TLS handshake timed out");
                        }
                    }
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    state.closing.send_replace(true);
    // Every connection holds a permit until it closes.
    let all = u32::try_from(limits.connections_max).unwrap_or(u32::MAX);
    let _ = permits.acquire_many(all).await;
}

/// Serves one connection until it closes, a deadline passes, or the server stops.
async fn serve_connection<T>(
    io: T,
    peer: SocketAddr,
    accepted: Instant,
    app: Router,
    state: &AppState,
    limits: Limits,
    mut stopped: watch::Receiver<bool>,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let clock = Arc::new(Clock::new(accepted));
    let io = Watched::new(io, clock.clone());
    let requests = clock.clone();
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        let busy = requests.request_started();
        request.extensions_mut().insert(ConnectInfo(peer));
        let app = app.clone();
        async move {
            let response = app.oneshot(request.map(Body::new)).await?;
            // The request counts as in progress until its answer is sent (or dropped).
            Ok::<_, std::convert::Infallible>(response.map(|body| {
                Body::new(body.map_frame(move |frame| {
                    let _busy = &busy;
                    frame
                }))
            }))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // Deadlines are kept by `Clock`: hyper's would also cut idle keep-alive connections.
    builder.header_read_timeout(None);
    let mut connection = pin!(builder.serve_connection(TokioIo::new(io), service));
    let mut stopping = *stopped.borrow();
    if stopping {
        connection.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                return;
            }
            expired = clock.expired(limits) => {
                match expired {
                    Expired::Header => {
                        state.metrics.header_timeouts.fetch_add(1, Relaxed);
                        tracing::debug!(%peer, "closed: no complete request head in time");
                    }
                    Expired::Idle => {
                        state.metrics.idle_timeouts.fetch_add(1, Relaxed);
                        tracing::debug!(%peer, "closed: idle");
                    }
                }
                return;
            }
            _ = stopped.changed(), if !stopping => {
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Which deadline a connection missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expired {
    /// A request head (or the first one, or the TLS handshake) took too long.
    Header,
    /// No request came between two.
    Idle,
}

/// Where a connection is between requests, for its deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request head: since `since`, with its first byte at `head_started`.
    Waiting {
        since: Instant,
        first_request: bool,
        head_started: Option<Instant>,
    },
    /// `requests` requests are being answered.
    Busy { requests: usize },
}

/// The phase of one connection, moved on by its reads and its requests.
#[derive(Debug)]
struct Clock {
    phase: Mutex<Phase>,
    changed: Notify,
}

impl Clock {
    fn new(accepted: Instant) -> Self {
        Clock {
            phase: Mutex::new(Phase::Waiting {
                since: accepted,
                first_request: true,
                head_started: None,
            }),
            changed: Notify::new(),
        }
    }

    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes came from the client. Returns whether they start a request head (the
    /// connection was waiting for one and had no byte of it yet), or `None` when no
    /// head is awaited (a request is being answered).
    fn bytes_read(&self) -> Option<bool> {
        let mut phase = self.phase();
        match &mut *phase {
            Phase::Waiting { head_started, .. } => {
                let starts = head_started.is_none();
                if starts {
                    *head_started = Some(Instant::now());
                    self.changed.notify_waiters();
                }
                Some(starts)
            }
            Phase::Busy { .. } => None,
        }
    }

    /// A request is being answered until the returned guard is dropped.
    fn request_started(self: &Arc<Self>) -> Busy {
        let mut phase = self.phase();
        *phase = match *phase {
            Phase::Busy { requests } => Phase::Busy {
                requests: requests + 1,
            },
            Phase::Waiting { .. } => Phase::Busy { requests: 1 },
        };
        self.changed.notify_waiters();
        Busy(self.clone())
    }

    /// The deadline now running, if any, and what missing it means.
    fn deadline(&self, limits: Limits) -> Option<(Instant, Expired)> {
        match *self.phase() {
            Phase::Busy { .. } => None,
            Phase::Waiting {
                head_started: Some(started),
                ..
            } => Some((started + limits.header_read_timeout, Expired::Header)),
            Phase::Waiting {
                since,
                first_request: true,
                head_started: None,
            } => Some((since + limits.header_read_timeout, Expired::Header)),
            Phase::Waiting {
                since,
                first_request: false,
                head_started: None,
            } => Some((since + limits.idle_timeout, Expired::Idle)),
        }
    }

    /// Completes when the connection misses a deadline.
    async fn expired(&self, limits: Limits) -> Expired {
        loop {
            let changed = self.changed.notified();
            let mut changed = pin!(changed);
            changed.as_mut().enable();
            match self.deadline(limits) {
                None => changed.await,
                Some((deadline, expired)) => {
                    if deadline <= Instant::now() {
                        return expired;
                    }
                    tokio::select! {
                        () = changed => {}
                        () = tokio::time::sleep_until(deadline) => {}
                    }
                }
            }
        }
    }
}

/// A request in progress on a connection; dropping it ends that.
struct Busy(Arc<Clock>);

impl Drop for Busy {
    fn drop(&mut self) {
        let clock = &self.0;
        let mut phase = clock.phase();
        if let Phase::Busy { requests } = &mut *phase {
            *requests -= 1;
            if *requests == 0 {
                *phase = Phase::Waiting {
                    since: Instant::now(),
                    first_request: false,
                    head_started: None,
                };
            }
        }
        clock.changed.notify_waiters();
    }
}

/// A connection's I/O, telling its [`Clock`] about reads, and answering a request
/// line or head that is too large.
struct Watched<T> {
    inner: T,
    clock: Arc<Clock>,
    head: HeadScan,
    refusal: Option<Refusal>,
}

/// The answer to a refused request head, being sent.
struct Refusal {
    answer: Vec<u8>,
    written: usize,
    drained: usize,
    shut_down: bool,
}

impl<T> Watched<T> {
    fn new(inner: T, clock: Arc<Clock>) -> Self {
        Watched {
            inner,
            clock,
            head: HeadScan::default(),
            refusal: None,
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Watched<T> {
    /// Sends the refusal, then reads and drops what the client still sends until it
    /// closes; hyper sees the end of the input.
    fn poll_refusal(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(refusal) = &mut self.refusal else {
            return Poll::Ready(Ok(()));
        };
        while refusal.written < refusal.answer.len() {
            let written = ready!(
                Pin::new(&mut self.inner).poll_write(cx, &refusal.answer[refusal.written..])
            )?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            refusal.written += written;
        }
        if !refusal.shut_down {
            ready!(Pin::new(&mut self.inner).poll_shutdown(cx))?;
            refusal.shut_down = true;
        }
        let mut scratch = [0u8; 8192];
        while refusal.drained < DRAIN_BYTES_MAX {
            let mut buf = ReadBuf::new(&mut scratch);
            ready!(Pin::new(&mut self.inner).poll_read(cx, &mut buf))?;
            if buf.filled().is_empty() {
                break;
            }
            refusal.drained += buf.filled().len();
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.refusal.is_some() {
            return this.poll_refusal(cx);
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let read = &buf.filled()[before..];
        if read.is_empty() {
            return Poll::Ready(Ok(()));
        }
        match this.clock.bytes_read() {
            None => {}
            Some(starts) => {
                if starts {
                    this.head = HeadScan::default();
                }
                if let Some(refused) = this.head.scan(read) {
                    buf.set_filled(before);
                    tracing::debug!(status = refused.status(), "request head refused");
                    this.refusal = Some(Refusal {
                        answer: refused.answer(),
                        written: 0,
                        drained: 0,
                        shut_down: false,
                    });
                    return this.poll_refusal(cx);
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.refusal.is_some() {
            // Only our refusal goes out on a refused connection.
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.refusal.is_some() {
            return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.refusal.is_some() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.refusal.is_some() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// Why a request head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    RequestLineTooLong,
    HeadTooLarge,
    TooManyHeaders,
}

impl Refused {
    fn code(self) -> ErrorCode {
        match self {
            Refused::RequestLineTooLong => ErrorCode::UriTooLong,
            Refused::HeadTooLarge | Refused::TooManyHeaders => ErrorCode::HeadersTooLarge,
        }
    }

    fn status(self) -> u16 {
        self.code().status().as_u16()
    }

    /// The whole HTTP answer, with the same JSON error body as every other error.
    fn answer(self) -> Vec<u8> {
        let message = match self {
            Refused::RequestLineTooLong => format!(
                "the request line (method, path and query) is longer than {REQUEST_LINE_BYTES_MAX} bytes"
            ),
            Refused::HeadTooLarge => {
                format!("the request head is larger than {HEAD_BYTES_MAX} bytes")
            }
            Refused::TooManyHeaders => {
                format!("the request has more than {HEADERS_MAX} header lines")
            }
        };
        let (code, status) = (self.code(), self.code().status());
        let reason = status.canonical_reason().unwrap_or("Refused");
        let body = serde_json::to_string(&ErrorBody::new(code, message))
            .unwrap_or_else(|_| String::from("{}"));
        format!(
            "HTTP/1.1 {} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            status.as_u16(),
            body.len()
        )
        .into_bytes()
    }
}

/// Follows a request head as it arrives, to refuse one too large before hyper does.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct HeadScan {
    /// The head ended: what follows is the body.
    done: bool,
    /// The request line ended.
    in_headers: bool,
    /// Bytes of the head so far.
    bytes: usize,
    /// Bytes of the current line, without its line break.
    line: usize,
    /// Header lines so far.
    headers: usize,
}

impl HeadScan {
    /// Follows `read` a line at a time; a line that crosses a limit is walked byte by
    /// byte ([`HeadScan::scan_bytes`]), which says which limit it crossed first. (The
    /// byte walk alone cost about a fifteenth of a small append's instructions.)
    fn scan(&mut self, read: &[u8]) -> Option<Refused> {
        let mut rest = read;
        while let Some(&first) = rest.first() {
            if self.done {
                return None;
            }
            if self.skips(first) {
                rest = &rest[1..];
                continue;
            }
            let len = rest
                .iter()
                .position(|&b| b == b'\n')
                .map_or(rest.len(), |i| i + 1);
            let (piece, after) = rest.split_at(len);
            rest = after;
            let ends_line = piece.last() == Some(&b'\n');
            let returns = piece.iter().filter(|&&b| b == b'\r').count();
            let line = self.line + len - returns - usize::from(ends_line);
            let crosses = self.bytes + len > HEAD_BYTES_MAX
                || (!self.in_headers && line > REQUEST_LINE_BYTES_MAX)
                || (ends_line && self.in_headers && line > 0 && self.headers >= HEADERS_MAX);
            if crosses {
                if let Some(refused) = self.scan_bytes(piece) {
                    return Some(refused);
                }
                continue;
            }
            self.bytes += len;
            self.line = line;
            if ends_line && let Some(refused) = self.end_line() {
                return Some(refused);
            }
        }
        None
    }

    /// Whether `byte` is skipped: empty lines before a request line are allowed (and
    /// skipped by hyper).
    fn skips(&self, byte: u8) -> bool {
        !self.in_headers && self.line == 0 && (byte == b'\r' || byte == b'\n')
    }

    /// A line break: the request line or a header line ended, or the empty line that
    /// ends the head.
    fn end_line(&mut self) -> Option<Refused> {
        if !self.in_headers {
            self.in_headers = true;
        } else if self.line == 0 {
            self.done = true;
        } else {
            self.headers += 1;
            if self.headers > HEADERS_MAX {
                return Some(Refused::TooManyHeaders);
            }
        }
        self.line = 0;
        None
    }

    /// The same as [`HeadScan::scan`], a byte at a time.
    fn scan_bytes(&mut self, read: &[u8]) -> Option<Refused> {
        for &byte in read {
            if self.done {
                return None;
            }
            if self.skips(byte) {
                continue;
            }
            self.bytes += 1;
            if byte == b'\n' {
                if let Some(refused) = self.end_line() {
                    return Some(refused);
                }
            } else if byte != b'\r' {
                self.line += 1;
                if !self.in_headers && self.line > REQUEST_LINE_BYTES_MAX {
                    return Some(Refused::RequestLineTooLong);
                }
            }
            if self.bytes > HEAD_BYTES_MAX {
                return Some(Refused::HeadTooLarge);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Line by line and byte by byte agree, whatever the head and however it arrives.
    #[test]
    fn a_head_scan_by_lines_agrees_with_the_scan_by_bytes() {
        // A fixed generator, so that a failure replays.
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |below: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % below as u64) as usize
        };
        for case in 0..2_000 {
            let mut head = Vec::new();
            for _ in 0..next(4) {
                head.extend_from_slice([&b"\r\n"[..], b"\n", b"\r"][next(3)]);
            }
            let line_bytes = [
                10,
                100,
                REQUEST_LINE_BYTES_MAX - 2,
                REQUEST_LINE_BYTES_MAX + 5,
            ];
            head.extend(std::iter::repeat_n(b'a', line_bytes[next(4)]));
            if next(8) == 0 {
                head.extend(std::iter::repeat_n(b'\r', next(40)));
            }
            head.extend_from_slice(b"\r\n");
            let headers = [0, 3, HEADERS_MAX - 1, HEADERS_MAX, HEADERS_MAX + 1][next(5)];
            for i in 0..headers {
                head.extend_from_slice(format!("x-{i}: v\r\n").as_bytes());
                if next(50) == 0 {
                    head.extend(std::iter::repeat_n(b'b', HEAD_BYTES_MAX / 2));
                    head.extend_from_slice(b"\r\n");
                }
            }
            head.extend_from_slice([&b"\r\n"[..], b"\n", b""][next(3)]);
            head.extend_from_slice(b"{\"body\":\n1}\r\n\r\n");

            let (mut by_lines, mut by_bytes) = (HeadScan::default(), HeadScan::default());
            let mut at = 0;
            loop {
                let end = (at + 1 + next(3_000)).min(head.len());
                let chunk = &head[at..end];
                let (a, b) = (by_lines.scan(chunk), by_bytes.scan_bytes(chunk));
                assert_eq!(a, b, "case {case}, bytes {at}..{end}");
                assert_eq!(by_lines, by_bytes, "case {case}, bytes {at}..{end}");
                at = end;
                if a.is_some() || at == head.len() {
                    break;
                }
            }
        }
    }

    #[test]
    fn a_head_scan_finds_the_end_of_the_head_and_refuses_what_is_too_large() {
        let mut scan = HeadScan::default();
        let request = b"\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(scan.scan(request), None);
        assert!(scan.done);
        // What follows the head (a body) is not looked at.
        assert_eq!(scan.scan(&vec![b'x'; HEAD_BYTES_MAX * 2]), None);

        let mut scan = HeadScan::default();
        let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(REQUEST_LINE_BYTES_MAX));
        // Refused as soon as the line is too long, even without its end.
        assert_eq!(
            scan.scan(&long.as_bytes()[..REQUEST_LINE_BYTES_MAX + 1]),
            Some(Refused::RequestLineTooLong)
        );

        let mut scan = HeadScan::default();
        let mut head = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=HEADERS_MAX {
            head.extend_from_slice(format!("x-{i}: 1\r\n").as_bytes());
        }
        // Byte by byte, as a slow client sends it.
        let refused = head.chunks(1).find_map(|byte| scan.scan(byte));
        assert_eq!(refused, Some(Refused::TooManyHeaders));

        let mut scan = HeadScan::default();
        let mut head = b"GET / HTTP/1.1\r\n".to_vec();
        head.extend_from_slice(format!("x-big: {}\r\n", "b".repeat(HEAD_BYTES_MAX)).as_bytes());
        assert_eq!(scan.scan(&head), Some(Refused::HeadTooLarge));
    }

    #[test]
    fn a_refusal_is_a_complete_http_answer_with_a_json_error() {
        let answer = String::from_utf8(Refused::RequestLineTooLong.answer()).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["error"], "uri_too_long");
    }
}
