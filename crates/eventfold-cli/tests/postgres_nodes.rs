//! Scenario: two `eventfold serve` processes on one PostgreSQL schema (two nodes on one
//! database) are one store to their clients. Writers racing on one stream through both
//! nodes with expected versions win each revision exactly once; both nodes read the
//! same stream and the same gap-free `$all`; an SSE subscription on one node delivers,
//! live, what is appended through the other; SIGTERM stops both with exit 0. Needs
//! `EVENTFOLD_TEST_POSTGRES_URL`; without it the test says loudly that it skipped.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use eventfold_testsupport::cli::{Cli, Served};
use eventfold_testsupport::dirs::{path_arg, temp_dir};
use eventfold_testsupport::postgres::{TestSchema, database_url};
use serde_json::Value;
use uuid::Uuid;

/// Writer threads per node in the race.
const WRITERS_PER_NODE: usize = 4;

/// Appends the writers win together: revisions `0..APPENDS` of the raced stream.
const APPENDS: u64 = 200;

/// Events per page when reading a stream or `$all`.
const PAGE_EVENTS: u64 = 64;

/// Longest anything here may take: a start, a request, the race, an SSE message, a stop.
const WAIT_MAX: Duration = Duration::from_secs(20);

#[test]
fn writers_racing_across_two_servers_win_each_revision_once_and_both_serve_one_log() {
    let Some(url) = database_url() else { return };
    let dir = temp_dir();
    // Declared before the nodes, so dropped after them (also when a check fails).
    let schema = TestSchema::new(&url, "ef_nodes");
    let nodes = [
        Node::start(&dir.path().join("node1"), &url, &schema.name),
        Node::start(&dir.path().join("node2"), &url, &schema.name),
    ];

    // Given writers on both nodes racing on race-1 with expected versions.
    let deadline = Instant::now() + WAIT_MAX;
    let races: Vec<Race> = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..2 * WRITERS_PER_NODE)
            .map(|writer| {
                let node = writer % 2;
                let address = nodes[node].address.as_str();
                scope.spawn(move || race(address, node, deadline))
            })
            .collect();
        writers.into_iter().map(|w| w.join().unwrap()).collect()
    });

    // Then each revision was won exactly once, by the expectation that named it.
    let mut winners: BTreeMap<u64, Vec<Win>> = BTreeMap::new();
    for win in races.iter().flat_map(|r| &r.wins) {
        winners.entry(win.revision).or_default().push(*win);
    }
    for revision in 0..APPENDS {
        let won = winners.get(&revision).map_or(&[][..], Vec::as_slice);
        assert_eq!(
            won.len(),
            1,
            "revision {revision} of race-1 must be acknowledged exactly once, got {won:?}"
        );
    }
    let acknowledged: Vec<Uuid> = winners.values().map(|w| w[0].id).collect();
    for node in 0..2 {
        let won = winners.values().filter(|w| w[0].node == node).count();
        assert!(won > 0, "node {node} won none of the {APPENDS} revisions");
    }
    let conflicts: u64 = races.iter().map(|r| r.conflicts).sum();
    eprintln!("race-1: {APPENDS} appends acknowledged, {conflicts} refused with 409");

    // And both nodes read race-1 as it was acknowledged, in the same order.
    let stream = [
        read_stream(&nodes[0].address, "race-1"),
        read_stream(&nodes[1].address, "race-1"),
    ];
    assert_eq!(
        stream[0], stream[1],
        "the nodes read race-1 differently (left: node 0, right: node 1)"
    );
    let read: Vec<(u64, Uuid)> = stream[0].iter().map(|e| (e.revision, e.id)).collect();
    let expected: Vec<(u64, Uuid)> = (0..APPENDS).zip(acknowledged.iter().copied()).collect();
    assert_eq!(
        read, expected,
        "race-1 must hold the acknowledged ids at their revisions"
    );

    // And both nodes read one `$all`, gap-free from position 0, holding race-1 as read.
    let all = [read_all(&nodes[0].address), read_all(&nodes[1].address)];
    assert_eq!(
        all[0], all[1],
        "the nodes read $all differently (left: node 0, right: node 1)"
    );
    let positions: Vec<u64> = all[0].iter().map(|e| e.position).collect();
    let gap_free: Vec<u64> = (0..positions.len() as u64).collect();
    assert_eq!(positions, gap_free, "$all must be gap-free from position 0");
    let raced: Vec<&Recorded> = all[0].iter().filter(|e| e.stream == "race-1").collect();
    assert_eq!(
        raced,
        stream[0].iter().collect::<Vec<_>>(),
        "$all must hold race-1's events, at their positions, in revision order"
    );

    // When node 1 follows race-2 and events are appended to it through node 0,
    // then node 1's SSE stream delivers each of them, in order, once.
    let first = append(&nodes[0].address, "race-2", "no_stream");
    let mut subscription = EventStream::open(&nodes[1].address, "/subscribe/streams/race-2?from=0");
    subscription.expect_event(0, first);
    // The subscription has sent everything stored: what follows arrives live.
    for revision in 1..=3 {
        let id = append(&nodes[0].address, "race-2", &(revision - 1).to_string());
        subscription.expect_event(revision, id);
    }
    drop(subscription);

    let [first_node, second_node] = nodes;
    first_node.stop();
    second_node.stop();
    // The events were kept in the schema the nodes were given.
    assert!(
        schema.exists(),
        "schema {} is not in the database",
        schema.name
    );
}

/// The `eventfold` binary of this crate. Nodes of one store share one master key of
/// personal data (each would otherwise make its own, and the second be refused).
fn eventfold() -> Cli {
    Cli::new(env!("CARGO_BIN_EXE_eventfold")).env("EVENTFOLD_MASTER_KEY", "5e".repeat(32))
}

/// One `eventfold serve --postgres` process; killed on drop unless stopped.
struct Node {
    served: Served,
    address: String,
}

impl Node {
    /// Starts a node on `schema` and waits for the address it announces.
    fn start(data: &Path, url: &str, schema: &str) -> Node {
        let served = eventfold().serve(&[
            "--data",
            path_arg(data),
            "--listen",
            "127.0.0.1:0",
            "--postgres",
            url,
            "--postgres-schema",
            schema,
        ]);
        let line = served.announcement();
        let holds = format!("(events in PostgreSQL schema {schema})");
        assert!(
            line.starts_with("eventfold listening on http://") && line.trim_end().ends_with(&holds),
            "a node on PostgreSQL announces its address and schema, got '{line}'"
        );
        Node {
            address: served.address().to_string(),
            served,
        }
    }

    /// SIGTERM, then a graceful exit with status 0.
    fn stop(self) {
        let rest = self.served.stop();
        assert!(
            rest.contains("eventfold stopped"),
            "node {} exited without stopping gracefully: '{rest}'",
            self.address
        );
    }
}

/// What one racing writer did.
struct Race {
    wins: Vec<Win>,
    conflicts: u64,
}

/// An acknowledged append of the race.
#[derive(Debug, Clone, Copy)]
struct Win {
    revision: u64,
    id: Uuid,
    node: usize,
}

/// Appends one event at a time to race-1 through `address`, expecting the head it just
/// read, until the stream holds [`APPENDS`] events. No writer expects revision
/// `APPENDS - 1`, so the stream cannot grow past it.
fn race(address: &str, node: usize, deadline: Instant) -> Race {
    let mut race = Race {
        wins: Vec::new(),
        conflicts: 0,
    };
    loop {
        assert!(
            Instant::now() < deadline,
            "the writers did not win {APPENDS} appends within {WAIT_MAX:?}"
        );
        let (status, head) = request(address, "GET", "/streams/race-1/head", &[], "");
        assert_eq!(status, 200, "{head}");
        let last = match &head["last_revision"] {
            Value::Null => None,
            revision => Some(revision.as_u64().expect("a revision")),
        };
        let next = last.map_or(0, |r| r + 1);
        assert!(next <= APPENDS, "race-1 grew past {APPENDS} events: {head}");
        if next == APPENDS {
            return race;
        }
        let expected = last.map_or("no_stream".to_string(), |r| r.to_string());
        let id = Uuid::new_v4();
        let body = format!(r#"[{{"type":"Raced","id":"{id}","data":{{"node":{node}}}}}]"#);
        let (status, answer) = request(
            address,
            "POST",
            "/streams/race-1",
            &[("Expected-Version", &expected)],
            &body,
        );
        match status {
            201 => {
                assert_eq!(
                    (&answer["first_revision"], &answer["last_revision"]),
                    (&Value::from(next), &Value::from(next)),
                    "an append expecting {expected} must land at revision {next}"
                );
                race.wins.push(Win {
                    revision: next,
                    id,
                    node,
                });
            }
            409 => {
                assert_eq!(answer["error"], "wrong_expected_version", "{answer}");
                // Refused only because another writer got there first.
                let actual = answer["actual"].as_u64();
                assert!(
                    actual.is_some_and(|a| a >= next),
                    "expecting {expected} was refused with a head that is not newer: {answer}"
                );
                race.conflicts += 1;
            }
            _ => panic!("append expecting {expected} answered {status}: {answer}"),
        }
    }
}

/// Appends one event to `stream` through `address`; returns its id.
fn append(address: &str, stream: &str, expected: &str) -> Uuid {
    let id = Uuid::new_v4();
    let (status, answer) = request(
        address,
        "POST",
        &format!("/streams/{stream}"),
        &[("Expected-Version", expected)],
        &format!(r#"[{{"type":"Followed","id":"{id}","data":{{}}}}]"#),
    );
    assert_eq!(
        status, 201,
        "append to {stream} expecting {expected}: {answer}"
    );
    id
}

/// An event as the nodes are compared on.
#[derive(Debug, PartialEq)]
struct Recorded {
    stream: String,
    revision: u64,
    position: u64,
    id: Uuid,
}

impl Recorded {
    fn from_json(event: &Value) -> Recorded {
        let number = |field: &str| {
            event[field]
                .as_u64()
                .unwrap_or_else(|| panic!("no {field} in {event}"))
        };
        Recorded {
            stream: event["stream"].as_str().expect("a stream").to_string(),
            revision: number("revision"),
            position: number("position"),
            id: event["id"]
                .as_str()
                .and_then(|id| id.parse().ok())
                .unwrap_or_else(|| panic!("no id in {event}")),
        }
    }
}

/// Every event of `stream`, page by page.
fn read_stream(address: &str, stream: &str) -> Vec<Recorded> {
    let mut events = Vec::new();
    loop {
        let from = events.len();
        let path = format!("/streams/{stream}?from={from}&limit={PAGE_EVENTS}");
        let (status, page) = request(address, "GET", &path, &[], "");
        assert_eq!(status, 200, "{path}: {page}");
        let read = page["events"].as_array().expect("events");
        if read.is_empty() {
            return events;
        }
        events.extend(read.iter().map(Recorded::from_json));
        assert_eq!(
            page["next"],
            events.len(),
            "{path}: next must follow the page"
        );
    }
}

/// Every event of `$all`, page by page, to the end of the log.
fn read_all(address: &str) -> Vec<Recorded> {
    let mut events = Vec::new();
    let mut from = 0;
    loop {
        let path = format!("/all?from={from}&limit={PAGE_EVENTS}");
        let (status, page) = request(address, "GET", &path, &[], "");
        assert_eq!(status, 200, "{path}: {page}");
        let read = page["events"].as_array().expect("events");
        events.extend(read.iter().map(Recorded::from_json));
        if page["end_of_log"] == true {
            return events;
        }
        let next = page["next"].as_u64().expect("next");
        assert!(
            !read.is_empty() && next > from,
            "{path}: a page before the end of the log must advance: {page}"
        );
        from = next;
    }
}

fn connect(address: &str) -> TcpStream {
    let address: SocketAddr = address.parse().expect("a socket address");
    let socket = TcpStream::connect_timeout(&address, WAIT_MAX)
        .unwrap_or_else(|e| panic!("connecting to {address}: {e}"));
    socket.set_read_timeout(Some(WAIT_MAX)).unwrap();
    socket.set_write_timeout(Some(WAIT_MAX)).unwrap();
    socket
}

fn send(socket: &mut TcpStream, method: &str, path: &str, headers: &[(&str, &str)], body: &str) {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: eventfold\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    socket
        .write_all(request.as_bytes())
        .expect("sending a request");
}

/// One HTTP/1.1 request on a new connection: the status and the JSON body.
fn request(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Value) {
    let mut socket = connect(address);
    send(&mut socket, method, path, headers, body);
    let mut response = String::new();
    socket
        .read_to_string(&mut response)
        .unwrap_or_else(|e| panic!("{method} {path} on {address}: {e}"));
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{method} {path}: no HTTP response in '{response}'"));
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{method} {path}: a JSON answer comes with its length: {head}"
    );
    let status = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: no HTTP status in '{head}'"));
    let json = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("{method} {path}: answered {status} '{body}': {e}"));
    (status, json)
}

/// An open `text/event-stream` response, read message by message with a bound.
struct EventStream {
    socket: TcpStream,
    /// Bytes received and not yet decoded from the chunked transfer coding.
    received: Vec<u8>,
    /// The decoded event stream not yet parsed into messages.
    body: Vec<u8>,
    chunked: bool,
}

impl EventStream {
    fn open(address: &str, path: &str) -> EventStream {
        let mut socket = connect(address);
        send(
            &mut socket,
            "GET",
            path,
            &[("Accept", "text/event-stream")],
            "",
        );
        let deadline = Instant::now() + WAIT_MAX;
        let mut received = Vec::new();
        let end = loop {
            if let Some(end) = find(&received, b"\r\n\r\n") {
                break end;
            }
            receive(
                &mut socket,
                &mut received,
                deadline,
                "the SSE response head",
            );
        };
        let head = String::from_utf8_lossy(&received[..end]).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200"), "GET {path}: {head}");
        assert!(
            head.contains("content-type: text/event-stream"),
            "GET {path}: {head}"
        );
        let chunked = head.contains("transfer-encoding: chunked");
        received.drain(..end + 4);
        EventStream {
            socket,
            received,
            body: Vec::new(),
            chunked,
        }
    }

    /// The next message must be the event `id` at `revision` (keep-alives skipped).
    fn expect_event(&mut self, revision: u64, id: Uuid) {
        let deadline = Instant::now() + WAIT_MAX;
        let (sse_id, event) = self.next_event(deadline);
        let what = format!("SSE message {event}");
        assert_eq!(sse_id, revision, "{what}: the id: must be the revision");
        assert_eq!(event["revision"], revision, "{what}");
        assert_eq!(event["id"], id.to_string(), "{what}");
    }

    /// The next message with an `id:`: the id and the data as JSON.
    fn next_event(&mut self, deadline: Instant) -> (u64, Value) {
        loop {
            self.decode();
            while let Some(end) = find(&self.body, b"\n\n") {
                let message: Vec<u8> = self.body.drain(..end + 2).collect();
                let message = String::from_utf8(message).expect("SSE is UTF-8");
                let mut id = None;
                let mut kind = None;
                let mut data = Vec::new();
                for line in message.lines() {
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "id" => id = Some(value.parse::<u64>().expect("a numeric id")),
                        "event" => kind = Some(value.to_string()),
                        "data" => data.push(value),
                        _ => {}
                    }
                }
                let data = data.join("\n");
                assert_ne!(
                    kind.as_deref(),
                    Some("error"),
                    "the subscription failed: {data}"
                );
                if let Some(id) = id {
                    let event = serde_json::from_str(&data)
                        .unwrap_or_else(|e| panic!("SSE data '{data}': {e}"));
                    return (id, event);
                }
            }
            receive(
                &mut self.socket,
                &mut self.received,
                deadline,
                "an SSE message",
            );
        }
    }

    /// Moves what has fully arrived from `received` to `body`.
    fn decode(&mut self) {
        if !self.chunked {
            self.body.append(&mut self.received);
            return;
        }
        while let Some(line) = find(&self.received, b"\r\n") {
            let size = std::str::from_utf8(&self.received[..line])
                .ok()
                .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())
                .expect("a chunk size");
            assert_ne!(size, 0, "the server ended the event stream");
            let start = line + 2;
            if self.received.len() < start + size + 2 {
                return;
            }
            self.body
                .extend_from_slice(&self.received[start..start + size]);
            self.received.drain(..start + size + 2);
        }
    }
}

/// Reads what `socket` has into `received`, failing the test at `deadline`.
fn receive(socket: &mut TcpStream, received: &mut Vec<u8>, deadline: Instant, what: &str) {
    let left = deadline.saturating_duration_since(Instant::now());
    assert!(!left.is_zero(), "{what} did not arrive within {WAIT_MAX:?}");
    socket.set_read_timeout(Some(left)).unwrap();
    let mut buffer = [0; 8192];
    match socket.read(&mut buffer) {
        Ok(0) => panic!("the connection closed while waiting for {what}"),
        Ok(n) => received.extend_from_slice(&buffer[..n]),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) => {}
        Err(e) => panic!("reading {what}: {e}"),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Personal data through two nodes: appended through one, read in plaintext through
/// the other, forgotten through the other (`eventfold forget --server`, i.e.
/// `DELETE /subjects/{subject}`) and then redacted on both at once.
#[test]
fn a_subject_forgotten_through_one_node_reads_redacted_through_both() {
    let Some(url) = database_url() else { return };
    let dir = temp_dir();
    let schema = TestSchema::new(&url, "ef_nodes");
    let nodes = [
        Node::start(&dir.path().join("node1"), &url, &schema.name),
        Node::start(&dir.path().join("node2"), &url, &schema.name),
    ];
    let servers: Vec<String> = nodes
        .iter()
        .map(|n| format!("http://{}", n.address))
        .collect();
    let cli = |args: &[&str]| {
        let output = eventfold().run(args);
        assert!(
            output.status.success(),
            "eventfold {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let metadata = r#"{"$personal": {"subject": "ann", "fields": ["/email"]}}"#;
    cli(&[
        "append",
        "--server",
        &servers[0],
        "user-ann",
        "--type",
        "SignedUp",
        "--json",
        r#"{"email": "ann@example.com"}"#,
        "--metadata",
        metadata,
    ]);
    let email = |server: &str| -> Value {
        let line = cli(&["read", "--server", server, "user-ann"]);
        serde_json::from_str::<Value>(line.trim()).expect("json")["data"]["email"].clone()
    };
    assert_eq!(email(&servers[1]), "ann@example.com");
    cli(&["forget", "--server", &servers[1], "ann"]);
    for server in &servers {
        assert_eq!(email(server), serde_json::json!({"$redacted": true}));
    }
    for node in nodes {
        node.stop();
    }
}
