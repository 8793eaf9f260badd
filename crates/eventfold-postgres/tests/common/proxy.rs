//! A TCP proxy between a store and PostgreSQL that fails connections the way networks
//! and servers do, at the moment a test chooses:
//!
//! - **cut commits**: while armed, a connection is closed right after the server
//!   answered `COMMIT` and before the answer reaches the client, so the transaction is
//!   committed and its client cannot know it;
//! - **freeze**: the connections open at that moment stop moving bytes in both
//!   directions without being closed (a peer gone silent, a half-open connection).
//!
//! It reads the server's side as protocol messages (a type byte and a length), which is
//! all it needs to find the answer to `COMMIT`, and the client's startup message, to
//! know which connection is which (by `application_name`).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What a link between a client and the server is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkState {
    Open,
    /// Holds its sockets open and moves no byte.
    Frozen,
    /// Closed on purpose.
    Cut,
}

struct Link {
    application_name: String,
    state: watch::Sender<LinkState>,
}

#[derive(Default)]
struct State {
    cut_commits: AtomicBool,
    commits_cut: AtomicUsize,
    links: Mutex<Vec<Arc<Link>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// The proxy; every task of it stops when it is dropped.
pub struct Proxy {
    url: String,
    state: Arc<State>,
}

impl Proxy {
    /// Listens on a loopback port and forwards every connection to the server of
    /// `url` (a `postgres://` URL over TCP, with trust or password authentication).
    pub async fn start(url: &str) -> Proxy {
        let config: tokio_postgres::Config = url.parse().expect("a PostgreSQL URL");
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
            other => panic!("the proxy needs a TCP host, not {other:?}"),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let upstream = format!("{host}:{port}");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a port");
        let address = listener.local_addr().expect("the proxy's address");

        let quote = |value: &str| format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"));
        let mut url = format!(
            "host=127.0.0.1 port={} sslmode=disable user={} dbname={}",
            address.port(),
            quote(config.get_user().unwrap_or("postgres")),
            quote(config.get_dbname().unwrap_or("postgres")),
        );
        if let Some(password) = config.get_password() {
            url.push_str(&format!(
                " password={}",
                quote(std::str::from_utf8(password).expect("a UTF-8 password"))
            ));
        }

        let state = Arc::new(State::default());
        let accept = tokio::spawn({
            let state = state.clone();
            async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        return;
                    };
                    let task = tokio::spawn(relay(state.clone(), client, upstream.clone()));
                    state.tasks.lock().expect("proxy tasks").push(task);
                }
            }
        });
        state.tasks.lock().expect("proxy tasks").push(accept);
        Proxy { url, state }
    }

    /// A connection string through the proxy, naming the node `application_name`.
    pub fn url(&self, application_name: &str) -> String {
        format!("{} application_name={application_name}", self.url)
    }

    /// While on, every answer to `COMMIT` is swallowed and its connection closed.
    pub fn cut_commits(&self, on: bool) {
        self.state.cut_commits.store(on, Ordering::SeqCst);
    }

    /// How many commits were cut off so far.
    pub fn commits_cut(&self) -> usize {
        self.state.commits_cut.load(Ordering::SeqCst)
    }

    /// Freezes every open connection whose `application_name` starts with `prefix`;
    /// returns how many it froze. Connections opened later are not frozen.
    pub fn freeze(&self, prefix: &str) -> usize {
        let links = self.state.links.lock().expect("proxy links");
        let mut frozen = 0;
        for link in links.iter() {
            if link.application_name.starts_with(prefix) && *link.state.borrow() == LinkState::Open
            {
                link.state.send_replace(LinkState::Frozen);
                frozen += 1;
            }
        }
        frozen
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        for task in self.state.tasks.lock().expect("proxy tasks").drain(..) {
            task.abort();
        }
    }
}

/// Forwards one connection until either side closes it, or the test cuts or freezes it.
async fn relay(state: Arc<State>, mut client: TcpStream, upstream: String) {
    let Ok(startup) = read_startup(&mut client).await else {
        return;
    };
    let Ok(mut server) = TcpStream::connect(&upstream).await else {
        return;
    };
    if server.write_all(&startup).await.is_err() {
        return;
    }
    let (link_state, _) = watch::channel(LinkState::Open);
    let link = Arc::new(Link {
        application_name: application_name(&startup),
        state: link_state,
    });
    state.links.lock().expect("proxy links").push(link.clone());

    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let upward = tokio::spawn(forward_client(client_read, server_write, link.clone()));
    state.tasks.lock().expect("proxy tasks").push(upward);
    to_client(server_read, client_write, &link, &state).await;
    // The other direction ends with this one (a frozen link never gets here).
    link.state.send_replace(LinkState::Cut);
}

/// The startup message: a length (itself included), then the protocol and parameters.
async fn read_startup(client: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut length = [0u8; 4];
    client.read_exact(&mut length).await?;
    let length = u32::from_be_bytes(length) as usize;
    if !(8..=64 * 1024).contains(&length) {
        return Err(std::io::Error::other("not a startup message"));
    }
    let mut message = vec![0u8; length];
    message[..4].copy_from_slice(&(length as u32).to_be_bytes());
    client.read_exact(&mut message[4..]).await?;
    Ok(message)
}

/// The `application_name` parameter of a startup message ("" when absent).
fn application_name(startup: &[u8]) -> String {
    let mut fields = startup[8..].split(|&b| b == 0);
    while let (Some(key), Some(value)) = (fields.next(), fields.next()) {
        if key == b"application_name" {
            return String::from_utf8_lossy(value).into_owned();
        }
    }
    String::new()
}

/// Waits until the link is no longer open, and says what it became.
async fn not_open(link: &Link) -> LinkState {
    let mut state = link.state.subscribe();
    match state.wait_for(|s| *s != LinkState::Open).await {
        Ok(state) => *state,
        Err(_) => LinkState::Cut,
    }
}

/// Ends a direction of a link that was cut; holds a frozen one (and its sockets)
/// until the proxy is dropped.
async fn stop(state: LinkState) {
    if state == LinkState::Frozen {
        std::future::pending::<()>().await;
    }
}

async fn forward_client(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, link: Arc<Link>) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = tokio::select! {
            biased;
            state = not_open(&link) => return stop(state).await,
            read = from.read(&mut buffer) => read,
        };
        match read {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to.write_all(&buffer[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Forwards the server's messages, whole ones at a time, and cuts the link at an
/// answer to `COMMIT` while commits are being cut.
async fn to_client(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, link: &Link, state: &State) {
    let mut pending: Vec<u8> = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = tokio::select! {
            biased;
            state = not_open(link) => return stop(state).await,
            read = from.read(&mut buffer) => read,
        };
        match read {
            Ok(0) | Err(_) => return,
            Ok(n) => pending.extend_from_slice(&buffer[..n]),
        }
        // Every complete message in `pending`: forward up to a cut, or all of them.
        let mut complete = 0;
        while pending.len() >= complete + 5 {
            let length = u32::from_be_bytes(
                pending[complete + 1..complete + 5]
                    .try_into()
                    .expect("four bytes"),
            ) as usize;
            let end = complete + 1 + length;
            if pending.len() < end {
                break;
            }
            let is_commit = pending[complete] == b'C' && &pending[complete + 5..end] == b"COMMIT\0";
            if is_commit && state.cut_commits.load(Ordering::SeqCst) {
                let _ = to.write_all(&pending[..complete]).await;
                state.commits_cut.fetch_add(1, Ordering::SeqCst);
                link.state.send_replace(LinkState::Cut);
                return;
            }
            complete = end;
        }
        if to.write_all(&pending[..complete]).await.is_err() {
            return;
        }
        pending.drain(..complete);
    }
}
