//! `eventfold migrate` through the real binary: a dry run changes nothing, a
//! copy-replace moves the stream (appends to it are refused naming the new one), the
//! copies carry `$migrated_from`, `migrate log` lists the audit record, and bad input
//! fails before any write.

use std::path::Path;
use std::process::Output;

use eventfold_testsupport::cli::{Cli, text};
use eventfold_testsupport::dirs::{path_arg, temp_dir};
use serde_json::Value;

fn eventfold(args: &[&str]) -> Output {
    Cli::new(env!("CARGO_BIN_EXE_eventfold")).run(args)
}

fn ok(args: &[&str]) -> String {
    let output = eventfold(args);
    assert!(
        output.status.success(),
        "{args:?}: {}",
        text(&output.stderr)
    );
    text(&output.stdout)
}

fn lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn append(dir: &Path, stream: &str, json: &str) -> Output {
    let args = [
        "append",
        "--data",
        path_arg(dir),
        stream,
        "--type",
        "PricedItem",
        "--json",
        json,
    ];
    eventfold(&args)
}

/// `cart-1` with three prices, the second one typed wrongly.
fn fill_cart(dir: &Path) {
    for price in ["10", "1000", "12"] {
        let output = append(dir, "cart-1", &format!(r#"{{"price":{price}}}"#));
        assert!(output.status.success(), "{}", text(&output.stderr));
    }
}

#[test]
fn copy_replace_with_a_dry_run_first_then_the_audit_log() {
    let dir = temp_dir();
    let data = path_arg(dir.path());
    fill_cart(dir.path());
    let migrate = |extra: &[&str]| {
        let mut args = vec![
            "migrate",
            "copy-replace",
            "cart-1",
            "--to",
            "cart-1-fixed",
            "--skip",
            "1",
            "--data",
            data,
            "--reason",
            "a price typed with two zeros too many",
            "--who",
            "ops",
        ];
        args.extend_from_slice(extra);
        eventfold(&args)
    };

    let dry = migrate(&["--dry-run"]);
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    assert!(
        text(&dry.stderr).contains("would copy 2 events to 'cart-1-fixed'"),
        "{}",
        text(&dry.stderr)
    );
    let read_fixed = eventfold(&["read", "--data", data, "cart-1-fixed"]);
    assert!(!read_fixed.status.success(), "a dry run writes nothing");

    let outcome = lines(&text(&migrate(&[]).stdout));
    assert_eq!(outcome[0]["targets"]["cart-1-fixed"], 2);
    let copies = lines(&ok(&["read", "--data", data, "cart-1-fixed"]));
    let prices: Vec<&Value> = copies.iter().map(|e| &e["data"]["price"]).collect();
    assert_eq!(prices, [10, 12]);
    assert_eq!(copies[1]["metadata"]["$migrated_from"], "2@cart-1");

    let refused = append(dir.path(), "cart-1", r#"{"price":5}"#);
    assert!(!refused.status.success());
    let message = text(&refused.stderr);
    assert!(message.contains("moved to 'cart-1-fixed'"), "{message}");

    let log = lines(&ok(&["migrate", "log", "--data", data]));
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["operation"], "copy-replace");
    assert_eq!(log[0]["reason"], "a price typed with two zeros too many");
    assert_eq!(log[0]["who"], "ops");
    assert_eq!(log[0]["arguments"]["to"], "cart-1-fixed");
}

#[test]
fn bad_surgery_input_fails_before_any_write() {
    let dir = temp_dir();
    let data = path_arg(dir.path());
    assert!(
        append(dir.path(), "cart-1", r#"{"price":1}"#)
            .status
            .success()
    );
    assert!(
        append(dir.path(), "cart-2", r#"{"price":2}"#)
            .status
            .success()
    );
    for (args, says) in [
        (
            vec!["copy-replace", "cart-9", "--to", "new-1"],
            "'cart-9' not found",
        ),
        (
            vec!["copy-replace", "cart-1", "--to", "cart-2"],
            "target stream 'cart-2' exists",
        ),
        (
            vec![
                "copy-replace",
                "cart-1",
                "--to",
                "new-1",
                "--transform",
                "{",
            ],
            "not a valid jq program",
        ),
        (
            vec!["split", "cart-1", "--into", "a-1=true", "b-1=true"],
            "all match",
        ),
        (
            vec!["join", "cart-1", "cart-9", "--into", "new-1"],
            "'cart-9' not found",
        ),
    ] {
        let mut full = vec!["migrate"];
        full.extend(args);
        full.extend(["--data", data, "--reason", "test"]);
        let output = eventfold(&full);
        assert!(!output.status.success(), "{full:?} succeeded");
        assert!(
            text(&output.stderr).contains(says),
            "{full:?}: {}",
            text(&output.stderr)
        );
    }
    let all = lines(&ok(&["read", "--data", data, "cart-1"]));
    assert_eq!(all.len(), 1, "nothing was written to the source");
    assert!(lines(&ok(&["migrate", "log", "--data", data])).is_empty());
}

#[test]
fn join_through_a_server_records_its_user_and_refuses_appends_to_the_sources() {
    let dir = temp_dir();
    let server = Cli::new(env!("CARGO_BIN_EXE_eventfold")).serve(&[
        "--data",
        path_arg(dir.path()),
        "--listen",
        "127.0.0.1:0",
    ]);
    let url = format!("http://{}", server.address());
    let remote_append = |stream: &str, n: u64| {
        eventfold(&[
            "append",
            "--server",
            &url,
            stream,
            "--type",
            "Seen",
            "--json",
            &format!(r#"{{"n":{n}}}"#),
        ])
    };
    for n in 0..4 {
        let stream = if n % 2 == 0 { "left-1" } else { "right-1" };
        assert!(remote_append(stream, n).status.success());
    }
    let join = |extra: &[&str]| {
        let mut args = vec![
            "migrate",
            "join",
            "left-1",
            "right-1",
            "--into",
            "both-1",
            "--server",
            &url,
            "--reason",
            "one aggregate after all",
        ];
        args.extend_from_slice(extra);
        eventfold(&args)
    };
    let dry = lines(&text(&join(&["--dry-run"]).stdout));
    assert_eq!(dry[0]["dry_run"], true);
    assert_eq!(dry[0]["targets"]["both-1"], 4);
    assert!(
        !eventfold(&["read", "--server", &url, "both-1"])
            .status
            .success()
    );

    let done = join(&[]);
    assert!(done.status.success(), "{}", text(&done.stderr));
    let joined = lines(&ok(&["read", "--server", &url, "both-1"]));
    let ns: Vec<&Value> = joined.iter().map(|e| &e["data"]["n"]).collect();
    assert_eq!(ns, [0, 1, 2, 3], "in the order of $all");
    let refused = remote_append("right-1", 9);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("moved to 'both-1'"),
        "{}",
        text(&refused.stderr)
    );

    let log = lines(&ok(&["migrate", "log", "--server", &url]));
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["operation"], "join");
    assert_eq!(
        log[0]["arguments"]["sources"],
        serde_json::json!(["left-1", "right-1"])
    );
    assert!(
        log[0]["who"].as_str().is_some_and(|w| !w.is_empty()),
        "{}",
        log[0]
    );
    server.stop();
}

#[test]
fn copy_replace_in_place_keeps_the_name_and_hides_the_originals() {
    let dir = temp_dir();
    let data = path_arg(dir.path());
    fill_cart(dir.path());
    ok(&[
        "migrate",
        "copy-replace",
        "cart-1",
        "--in-place",
        "--skip",
        "1",
        "--data",
        data,
        "--reason",
        "a price typed with two zeros too many",
    ]);
    let read = lines(&ok(&["read", "--data", data, "cart-1"]));
    let prices: Vec<&Value> = read.iter().map(|e| &e["data"]["price"]).collect();
    assert_eq!(prices, [10, 12]);
    assert_eq!(read[0]["revision"], 3, "the copies follow the originals");
    assert!(
        append(dir.path(), "cart-1", r#"{"price":5}"#)
            .status
            .success(),
        "the stream stays open"
    );
}

/// `split --link` writes links: `read` prints the originals in their place, and
/// `--links-as-written` the links themselves.
#[test]
fn split_by_links_reads_as_the_originals_and_as_written_on_request() {
    let dir = temp_dir();
    let data = path_arg(dir.path());
    fill_cart(dir.path());
    ok(&[
        "migrate",
        "split",
        "cart-1",
        "--into",
        "cheap-1=.data.price < 100",
        "dear-1=.data.price >= 100",
        "--link",
        "--data",
        data,
        "--reason",
        "two kinds of item",
    ]);
    let originals = lines(&ok(&["read", "--data", data, "cart-1"]));
    let cheap = lines(&ok(&["read", "--data", data, "cheap-1"]));
    assert_eq!(cheap.len(), 2);
    assert_eq!(
        cheap[1]["id"], originals[2]["id"],
        "the original, by its id"
    );
    assert_eq!(cheap[1]["data"]["price"], 12);
    assert_eq!(cheap[1]["metadata"]["$linked_event"], "2@cart-1");
    let links = lines(&ok(&[
        "read",
        "--data",
        data,
        "dear-1",
        "--links-as-written",
    ]));
    assert_eq!(links[0]["type"], "$link");
    assert_eq!(links[0]["data"]["event"], "1@cart-1");
}

/// The Big Flip through the CLI: a transform follows a live server's store into a new
/// data directory while clients keep writing; `migrate flip` makes the old store
/// refuse appends; the transform then ends by itself, saying that traffic may switch,
/// and the new store holds every event, transformed.
#[test]
fn transform_follows_a_server_until_the_flip_says_traffic_may_switch() {
    let old = temp_dir();
    let new = temp_dir();
    let new_data = path_arg(new.path());
    let server = Cli::new(env!("CARGO_BIN_EXE_eventfold")).serve(&[
        "--data",
        path_arg(old.path()),
        "--listen",
        "127.0.0.1:0",
    ]);
    let url = format!("http://{}", server.address());
    let remote_append = |n: u64| {
        eventfold(&[
            "append",
            "--server",
            &url,
            &format!("cart-{}", n % 3),
            "--type",
            "PricedItem",
            "--json",
            &format!(r#"{{"cents":{n}}}"#),
        ])
    };
    for n in 0..6 {
        assert!(remote_append(n).status.success());
    }
    let program = r#"{type: "ItemPriced", data: {price: (.data.cents / 100)}}"#;
    let follower = Cli::new(env!("CARGO_BIN_EXE_eventfold"))
        .command(&[
            "migrate",
            "transform",
            "--server",
            &url,
            "--to",
            new_data,
            "--program",
            program,
            "--follow",
            "--reason",
            "prices in units, not cents",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the transform");
    for n in 6..12 {
        assert!(remote_append(n).status.success());
    }
    let flip = eventfold(&[
        "migrate",
        "flip",
        "--server",
        &url,
        "--to",
        "the new store",
        "--reason",
        "moving to the new store",
    ]);
    assert!(flip.status.success(), "{}", text(&flip.stderr));
    let refused = remote_append(12);
    assert!(!refused.status.success(), "the old store refuses appends");
    assert!(
        text(&refused.stderr).contains("read-only")
            && text(&refused.stderr).contains("the new store"),
        "{}",
        text(&refused.stderr)
    );

    // The follower ends by itself once it has copied everything up to the flip.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut follower = follower;
    loop {
        if follower.try_wait().expect("poll the transform").is_some() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the transform did not end after the flip"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let done = follower.wait_with_output().expect("the transform's output");
    assert!(done.status.success(), "{}", text(&done.stderr));
    assert!(
        text(&done.stderr).contains("traffic may switch"),
        "{}",
        text(&done.stderr)
    );
    let outcome = lines(&text(&done.stdout));
    assert_eq!(
        outcome[0]["copied"].as_u64(),
        Some(12 + 1),
        "12 events and the flip's audit record"
    );
    server.stop();

    let copied = lines(&ok(&["read", "--data", new_data, "cart-1"]));
    let prices: Vec<&Value> = copied.iter().map(|e| &e["data"]["price"]).collect();
    assert_eq!(prices.len(), 4);
    assert_eq!(copied[0]["type"], "ItemPriced");
    assert_eq!(copied[1]["data"]["price"].as_f64(), Some(0.04));
    assert!(
        append(new.path(), "cart-1", r#"{"price":1}"#)
            .status
            .success(),
        "the new store takes writes"
    );
    let log = lines(&ok(&["migrate", "log", "--data", new_data]));
    let operations: Vec<&Value> = log.iter().map(|r| &r["operation"]).collect();
    assert_eq!(
        operations,
        ["transform", "flip"],
        "both audit records are in the new store"
    );
    let old_data = path_arg(old.path());
    let undo = eventfold(&[
        "migrate",
        "flip",
        "--undo",
        "--data",
        old_data,
        "--reason",
        "rolled back",
    ]);
    assert!(undo.status.success(), "{}", text(&undo.stderr));
    assert!(
        append(old.path(), "cart-1", r#"{"cents":1}"#)
            .status
            .success(),
        "the old store takes writes again after the undo"
    );
}

/// A transform into PostgreSQL, and a second run that finds nothing left to copy.
#[test]
fn transform_into_postgres_resumes_where_it_stopped() {
    let Some(url) = eventfold_testsupport::postgres::database_url() else {
        return;
    };
    let schema = eventfold_testsupport::postgres::TestSchema::new(&url, "ef_cli_tr");
    let dir = temp_dir();
    let data = path_arg(dir.path());
    fill_cart(dir.path());
    let transform = || {
        lines(&ok(&[
            "migrate",
            "transform",
            "--data",
            data,
            "--to",
            &url,
            "--to-postgres-schema",
            &schema.name,
            "--reason",
            "moving to PostgreSQL",
        ]))
    };
    let first = transform();
    assert_eq!(first[0]["copied"], 3);
    assert_eq!(first[0]["caught_up"], Value::Null);
    let second = transform();
    assert_eq!(
        second[0]["copied"], 0,
        "the second run resumes after the copies"
    );
    assert!(second[0]["started_at"].as_u64() > first[0]["started_at"].as_u64());
}

/// `migrate bankruptcy` through the binary: a fold registered with `projection
/// register`, the old store closed (appends refused, naming the label), the new one
/// starting each cart from its total, the order copied as it is.
#[test]
fn bankruptcy_closes_the_period_and_starts_carts_from_their_state() {
    let old = temp_dir();
    let new = temp_dir();
    let (old_data, new_data) = (path_arg(old.path()), path_arg(new.path()));
    fill_cart(old.path());
    assert!(
        append(old.path(), "order-1", r#"{"price":1}"#)
            .status
            .success()
    );
    ok(&[
        "projection",
        "register",
        "--data",
        old_data,
        "cart-total",
        "--init",
        r#"{"total": 0}"#,
        "--handler",
        "PricedItem={total: (.state.total + .event.data.price)}",
    ]);
    let outcome = lines(&ok(&[
        "migrate",
        "bankruptcy",
        "--data",
        old_data,
        "--to",
        new_data,
        "--fold",
        "cart=cart-total",
        "--label",
        "2019-2026",
        "--reason",
        "seven versions of PricedItem",
    ]));
    assert_eq!(outcome[0]["initialized"]["cart"], 1);
    assert_eq!(outcome[0]["copied"], 1);
    let cart = lines(&ok(&["read", "--data", new_data, "cart-1"]));
    assert_eq!(cart.len(), 1);
    assert_eq!(cart[0]["type"], "Initialized");
    assert_eq!(cart[0]["data"]["total"], 1022);
    assert_eq!(
        lines(&ok(&["read", "--data", new_data, "order-1"])).len(),
        1,
        "a stream without a fold is copied"
    );
    let refused = append(old.path(), "cart-1", r#"{"price":5}"#);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("2019-2026"),
        "{}",
        text(&refused.stderr)
    );
    let log = lines(&ok(&["migrate", "log", "--data", new_data]));
    assert_eq!(log.last().expect("a record")["operation"], "bankruptcy");
}
