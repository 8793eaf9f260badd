//! `eventfold`: the command-line tool. Each subcommand lives in `commands/`.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;
mod output;

/// jemalloc instead of glibc's malloc. A server answering tens of thousands of small
/// requests a second from several threads spent about an eighth of its CPU in glibc's
/// allocator (`perf` of `eventfold bench http`); with jemalloc the same benchmark made
/// about half again as many appends. mimalloc did nearly as well over HTTP but cost
/// batch appends a third and held 25–33 MB more while a subscription caught up;
/// jemalloc changed neither beyond the disk's noise. See docs/performance.md.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The version and the commit it was built from (see build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("EVENTFOLD_COMMIT"),
    ")"
);

/// eventfold: a durable event store and event-sourcing toolkit.
#[derive(Debug, Parser)]
#[command(name = "eventfold", version = VERSION, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The data directory of an embedded store.
#[derive(Debug, clap::Args)]
pub struct DataDir {
    /// Data directory of the embedded store.
    #[arg(long, env = "EVENTFOLD_DATA", value_name = "DIR")]
    pub data: PathBuf,
}

/// The store a command works on: an embedded data directory or a server.
#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    /// Data directory of the embedded store.
    #[arg(
        long,
        env = "EVENTFOLD_DATA",
        value_name = "DIR",
        conflicts_with = "server",
        required_unless_present = "server"
    )]
    pub data: Option<PathBuf>,
    /// URL of an eventfold server (e.g. http://127.0.0.1:2113; a bare HOST:PORT means
    /// http://) instead of --data.
    #[arg(long, value_name = "URL", value_parser = server_url)]
    pub server: Option<String>,
    /// Token for a server with users (sent as `Authorization: Bearer`).
    #[arg(
        long,
        env = "EVENTFOLD_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// PEM file of a CA to trust for an https:// server (beside the system's roots).
    #[arg(long, env = "EVENTFOLD_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// With --data: the file holding the master key of personal data (64 hexadecimal
    /// digits). Without it: EVENTFOLD_MASTER_KEY (the key itself), else
    /// DIR/keys/master.key (created when the first personal value is written).
    #[arg(
        long,
        env = "EVENTFOLD_MASTER_KEY_FILE",
        value_name = "FILE",
        conflicts_with = "server"
    )]
    pub master_key_file: Option<PathBuf>,
}

/// A `--server` argument, checked when the command line is read: `http://HOST:PORT`,
/// `https://HOST:PORT`, or `HOST:PORT` (plain HTTP), every command alike.
pub fn server_url(text: &str) -> Result<String, String> {
    eventfold_client::parse_server_url(text)
        .map(|url| url.to_string())
        .map_err(|e| match e {
            eventfold_core::Error::Backend(reason) => reason,
            other => other.to_string(),
        })
}

/// A stream argument. An empty one is nearly always `$all` left unquoted in a shell,
/// which expands it as an (empty) variable: say so rather than "stream not found".
pub fn stream_name(name: &str) -> Result<String, String> {
    if name.is_empty() {
        return Err(
            "the stream name is empty; to name the global log, quote it: '$all' \
             (unquoted, the shell replaces $all with an empty variable)"
                .into(),
        );
    }
    Ok(name.to_string())
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the store over HTTP (the API of docs/http-api.md).
    Serve(commands::serve::Args),
    /// Append one event to a stream.
    Append(commands::append::Args),
    /// Read a stream (or `$all`), one event JSON per line.
    Read(commands::read::Args),
    /// Follow a stream (or `$all`) live, one event JSON per line.
    Tail(commands::tail::Args),
    /// List streams in name order, with their last revision.
    Streams(commands::streams::ListArgs),
    /// Show a stream's metadata (retention, ACL), or replace it with --set.
    Metadata(commands::streams::MetadataArgs),
    /// Delete a stream: soft (an append recreates it) or --hard (a tombstone).
    Delete(commands::streams::DeleteArgs),
    /// Feed the log up to its head, as NDJSON, to a program (or stdout), resumably.
    Replay(commands::replay::Args),
    /// Write every event of the log as NDJSON, in position order (resumable).
    Export(commands::export::ExportArgs),
    /// Append the events of an NDJSON export to a store, each at its revision.
    Import(commands::export::ImportArgs),
    /// Copy the log to object storage (s3://BUCKET/PREFIX or file:///path), up to its
    /// head now; resumable, nothing uploaded twice.
    Archive(commands::archive::ArchiveArgs),
    /// Rebuild a store from an archive into a new data directory, and verify it.
    Restore(commands::archive::RestoreArgs),
    /// Check every checksum, length, position and revision of a store.
    Verify(commands::verify::Args),
    /// Give up damaged data explicitly: rewrite damaged segments, keeping every intact
    /// transaction, and record what was given up (--dry-run first).
    Repair(commands::repair::Args),
    /// Remove from the disk the events that deletion and retention hide (--dry-run
    /// first to see what would be reclaimed).
    Scavenge(commands::scavenge::Args),
    /// Stream surgery: copy-replace, split or join streams, copy a whole store into a
    /// new one (transform), flip it read-only, or close a period (bankruptcy);
    /// --dry-run first, an audit record in $surgery; `migrate log` lists the records.
    Migrate(commands::migrate::Args),
    /// Register event schema versions and their converters, or list them.
    Schema(commands::schema::Args),
    /// Measure the disk, then the store, and print each figure beside the disk's.
    Bench(commands::bench::Args),
    /// Walk through eventfold's main ideas on a small store.
    Demo(commands::demo::Args),
    /// Forget a subject of personal data: destroy its key (its values read as
    /// {"$redacted": true} from now on) and append $subject-forgotten to $subjects.
    Forget(commands::forget::Args),
    /// Register projections (an initial state and a jq handler per event type), or
    /// list them.
    Projection(commands::projection::Args),
    /// The state of a stream as of a revision, folded by a registered projection.
    State(commands::projection::StateArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    // Logs go to stderr; EVENTFOLD_LOG sets the filter (e.g. `info`, or
    // `eventfold_server::request=info`), EVENTFOLD_LOG_FORMAT=json makes them JSON lines.
    let filter = tracing_subscriber::EnvFilter::try_from_env("EVENTFOLD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Colours only for a person at a terminal, never into a file or a pipe.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if std::env::var("EVENTFOLD_LOG_FORMAT").is_ok_and(|f| f == "json") {
        logs.json().init();
    } else {
        logs.init();
    }
    quiet_on_closed_stdout();
    let command = <Cli as clap::CommandFactory>::command();
    let argv = match command
        .find_subcommand("serve")
        .map(|serve| commands::serve::with_config_file(std::env::args_os().collect(), serve))
    {
        Some(Ok(argv)) => argv,
        Some(Err(error)) => {
            eprintln!("error: {error:#}");
            return ExitCode::FAILURE;
        }
        None => std::env::args_os().collect(),
    };
    let cli = Cli::parse_from(argv);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = match cli.command {
        Command::Serve(args) => runtime.block_on(commands::serve::run(args)),
        Command::Append(args) => runtime.block_on(commands::append::run(args)),
        Command::Read(args) => runtime.block_on(commands::read::run(args)),
        Command::Tail(args) => runtime.block_on(commands::tail::run(args)),
        Command::Streams(args) => runtime.block_on(commands::streams::list(args)),
        Command::Metadata(args) => runtime.block_on(commands::streams::metadata(args)),
        Command::Delete(args) => runtime.block_on(commands::streams::delete(args)),
        Command::Replay(args) => runtime.block_on(commands::replay::run(args)),
        Command::Export(args) => runtime.block_on(commands::export::export(args)),
        Command::Import(args) => runtime.block_on(commands::export::import(args)),
        Command::Archive(args) => runtime.block_on(commands::archive::archive(args)),
        Command::Restore(args) => runtime.block_on(commands::archive::restore(args)),
        Command::Verify(args) => commands::verify::run(args),
        Command::Repair(args) => runtime.block_on(commands::repair::run(args)),
        Command::Scavenge(args) => runtime.block_on(commands::scavenge::run(args)),
        Command::Schema(args) => runtime.block_on(commands::schema::run(args)),
        Command::Migrate(args) => runtime.block_on(commands::migrate::run(args)),
        Command::Bench(args) => commands::bench::run(args, &runtime),
        Command::Demo(args) => runtime.block_on(commands::demo::run(args)),
        Command::Forget(args) => runtime.block_on(commands::forget::run(args)),
        Command::Projection(args) => runtime.block_on(commands::projection::run(args)),
        Command::State(args) => runtime.block_on(commands::projection::state(args)),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "eventfold", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    };
    match outcome {
        Ok(code) => code,
        Err(error) if is_closed_stdout(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            if let Some(hint) = hint(&error) {
                eprintln!("hint: {hint}");
            }
            ExitCode::FAILURE
        }
    }
}

/// What to do about an error, when there is something the message alone does not say.
fn hint(error: &anyhow::Error) -> Option<String> {
    let holder = error.chain().find_map(|cause| match cause.downcast_ref() {
        Some(eventfold_core::Error::Locked { holder, .. }) => Some(holder.clone()),
        _ => None,
    })?;
    let url = holder
        .as_deref()
        .and_then(|h| h.split_once("serving "))
        .map(|(_, url)| url.trim());
    Some(match url {
        Some(url) => format!(
            "a server holds this store: reach it through the server, with --server {url} \
             instead of --data"
        ),
        None => "one process at a time opens a data directory: stop the other one, or, if \
                 it is a server (`eventfold serve`), reach the store with --server URL \
                 instead of --data"
            .to_string(),
    })
}

/// Whether a command failed only because whoever read its output stopped reading
/// (`eventfold read ... | head -1`): that ends the command quietly, with success, as
/// it does for other Unix tools.
fn is_closed_stdout(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// `println!` panics when stdout is a closed pipe. Rust ignores SIGPIPE, so the write
/// fails with EPIPE instead of ending the process; this hook turns that one panic into
/// a quiet, successful exit and leaves every other panic to the default hook.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}
