//! `eventfold serve`: the store (embedded, or on PostgreSQL with `--postgres`) over
//! HTTP until Ctrl-C or SIGTERM.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use eventfold_log::{LogOptions, LogStore};
use eventfold_server::{AuthConfig, ServerConfig, TlsConfig};

use crate::DataDir;

/// Serve the embedded store over HTTP.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    data: DataDir,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:2113", value_name = "ADDR")]
    listen: String,
    /// Largest request body accepted, in bytes.
    #[arg(long, default_value_t = ServerConfig::default().body_bytes_max)]
    body_bytes_max: usize,
    /// About the most bytes of events one read page (or SSE catch-up page) holds; a
    /// page stops early there, with at least one event, and says where to continue.
    #[arg(long, default_value_t = ServerConfig::default().read_bytes_max, value_name = "BYTES")]
    read_bytes_max: usize,
    /// Longest a client may take to send a request head (the first one from the
    /// connection's accept, TLS handshake included); late connections are closed.
    #[arg(long, default_value_t = ServerConfig::default().header_read_timeout_ms, value_name = "MS")]
    header_read_timeout_ms: u64,
    /// Longest a connection may stay open without a request.
    #[arg(long, default_value_t = ServerConfig::default().idle_timeout_ms, value_name = "MS")]
    idle_timeout_ms: u64,
    /// Most connections served at once; more wait to be accepted. Lowered to fit the
    /// process's descriptor limit (ulimit -n) when that is smaller.
    #[arg(long, default_value_t = ServerConfig::default().connections_max, value_name = "N")]
    connections_max: usize,
    /// Users, tokens and default ACL (TOML; see docs/http-api.md). Without it the
    /// server runs in the insecure development mode.
    #[arg(
        long,
        env = "EVENTFOLD_AUTH",
        value_name = "FILE",
        conflicts_with = "insecure"
    )]
    auth: Option<PathBuf>,
    /// Keep the events in this PostgreSQL database instead of DIR (e.g.
    /// postgres://user@host/db); several servers on one database act as one store.
    #[arg(long, env = "EVENTFOLD_POSTGRES", value_name = "URL")]
    postgres: Option<String>,
    /// With --postgres: the PostgreSQL schema holding the store's tables.
    #[arg(
        long,
        default_value = "eventfold",
        requires = "postgres",
        value_name = "NAME"
    )]
    postgres_schema: String,
    /// PEM certificate chain: serve HTTPS (with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Run without authentication on a non-loopback address (every client is an
    /// administrator). On 127.0.0.1 / ::1 that is the default without --auth.
    #[arg(long)]
    insecure: bool,
    #[command(flatten)]
    jq: super::schema::JqLimitArgs,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let auth = args
        .auth
        .as_deref()
        .map(AuthConfig::from_file)
        .transpose()?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsConfig::from_pem_files(cert, key)?),
        _ => None,
    };
    let config = ServerConfig {
        auth,
        body_bytes_max: args.body_bytes_max,
        read_bytes_max: args.read_bytes_max,
        header_read_timeout_ms: args.header_read_timeout_ms,
        idle_timeout_ms: args.idle_timeout_ms,
        connections_max: connections_max(args.connections_max),
        jq_limits: args.jq.limits(),
        insecure: args.insecure,
        ..ServerConfig::default()
    };
    config.validate()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let (store, holds): (Arc<dyn eventfold_core::EventStore>, String) = match &args.postgres {
        None => (
            // The server checks every sealed segment in the background after opening,
            // so damage in old data is reported (log, metrics) at once.
            Arc::new(
                LogStore::open(
                    &args.data.data,
                    LogOptions {
                        scrub_sealed_segments: true,
                        ..LogOptions::default()
                    },
                )
                .with_context(|| {
                    format!("cannot open the store in {}", args.data.data.display())
                })?,
            ),
            format!("data in {}", args.data.data.display()),
        ),
        Some(url) => {
            // The events live in PostgreSQL; DIR keeps only this node's local state.
            std::fs::create_dir_all(&args.data.data)
                .with_context(|| format!("cannot create {}", args.data.data.display()))?;
            let options = eventfold_postgres::PostgresOptions {
                schema: args.postgres_schema.clone(),
                ..Default::default()
            };
            let store = eventfold_postgres::PostgresStore::connect(url, options)
                .await
                .context("cannot open the PostgreSQL store")?;
            (
                Arc::new(store),
                format!("events in PostgreSQL schema {}", args.postgres_schema),
            )
        }
    };
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr()?;
    // The server refuses this too; checked here before the address is announced.
    config.check_address(address)?;
    if config.auth.is_none() {
        eprintln!(
            "WARNING: INSECURE DEVELOPMENT MODE: no --auth file, so every client of \
             {scheme}://{address} acts as an administrator. Do not use this in production."
        );
    }
    // Handlers are installed before the address is announced: a SIGTERM sent as soon
    // as a client sees the server stops it gracefully, never by the default action.
    let shutdown = shutdown_signal()?;
    println!("eventfold listening on {scheme}://{address} ({holds})");
    std::io::stdout().flush()?;
    eventfold_server::serve_with(store.clone(), config, listener, tls, shutdown).await?;
    // The server has stopped taking requests; closing the store lets the writer finish
    // what is queued before the process exits.
    drop(store);
    println!("eventfold stopped");
    Ok(ExitCode::SUCCESS)
}

/// Descriptors kept for what is not a client connection: the store's files, the
/// listener, PostgreSQL connections, logs.
const DESCRIPTORS_RESERVED: u64 = 64;

/// `asked`, lowered so that that many connections fit in the descriptor limit: beyond
/// it, accepting fails and even `/health` goes unanswered.
fn connections_max(asked: usize) -> usize {
    let Some(descriptors) = descriptor_limit() else {
        return asked;
    };
    let fitting = descriptors.saturating_sub(DESCRIPTORS_RESERVED).max(1);
    if (asked as u64) <= fitting {
        return asked;
    }
    let lowered = usize::try_from(fitting).unwrap_or(asked);
    eprintln!(
        "serving at most {lowered} connections, not {asked}: the process may open only \
         {descriptors} files (raise `ulimit -n` to serve more)"
    );
    lowered
}

/// The soft limit of open files of this process, when there is one.
#[cfg(unix)]
fn descriptor_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

#[cfg(not(unix))]
fn descriptor_limit() -> Option<u64> {
    None
}

/// Completes on Ctrl-C or SIGTERM; the handlers are registered when this is called.
#[cfg(unix)]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}

/// Completes on Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
