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

/// The pace of an online scavenge unless told: on our development machine it keeps the
/// appends at 0.8 of their rate or better while rewriting 100 MB/s or more (see
/// docs/performance.md, "Scavenge"). `bench scavenge` measures at the same pace.
pub(crate) const SCAVENGE_MB_PER_SECOND_DEFAULT: u64 = 130;

/// Serve the embedded store over HTTP.
#[derive(Debug, clap::Args)]
// A flag given both in --config's file and on the command line: the last one, the
// command line's, wins.
#[command(args_override_self = true)]
pub struct Args {
    #[command(flatten)]
    data: DataDir,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:2113", value_name = "ADDR")]
    listen: String,
    /// Also answer KurrentDB's gRPC protocol on this address (port 0 picks a free
    /// port), so applications written against its clients connect with
    /// `kurrentdb://HOST:PORT` (`?tls=false` without --tls-cert; see docs/grpc.md).
    #[arg(long, value_name = "ADDR")]
    grpc_listen: Option<String>,
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
    /// How fast an online scavenge (`POST /admin/scavenge`) reads the old segments, in
    /// MB/s (0: as fast as the disk goes); the rest of the disk's time is the appends'.
    #[arg(long, default_value_t = SCAVENGE_MB_PER_SECOND_DEFAULT, value_name = "MB")]
    scavenge_mb_per_s: u64,
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
    /// Archive the log continuously to object storage (s3://BUCKET/PREFIX, credentials
    /// from the AWS_* environment variables, or file:///path): sealed segments and the
    /// active one's new bytes, whenever the log has grown (or a scavenge rewrote a
    /// segment).
    #[arg(
        long,
        env = "EVENTFOLD_ARCHIVE",
        value_name = "URL",
        conflicts_with = "postgres"
    )]
    archive: Option<String>,
    /// With --archive: the least time between two archive passes, in seconds (what
    /// an archive may lag behind the log, besides the upload itself).
    #[arg(
        long,
        default_value_t = 10,
        value_name = "SECONDS",
        requires = "archive"
    )]
    archive_interval_s: u64,
    /// With --archive: keep at most SIZE of segments on the local disk (e.g. 20GiB):
    /// the oldest sealed segments the archive holds whole leave the disk, and reads
    /// that reach them fetch them back from the archive (cached in memory). The active
    /// segment always stays.
    #[arg(long, value_name = "SIZE", requires = "archive")]
    archive_keep_local: Option<bytesize::ByteSize>,
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
    /// Let scripts of web pages from ORIGIN (scheme://host[:port]) call the API from a
    /// browser (CORS); repeat it for several, or give * for any. Tokens still decide
    /// who may do what.
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    cors_origins: Vec<String>,
    /// Read the settings from a TOML file: one key per flag of this command, named as
    /// the flag (`listen = "0.0.0.0:2113"`, `auth = "auth.toml"`, `cors-origin =
    /// ["https://a.example"]`, `insecure = true`); relative paths are taken from the
    /// directory the server starts in. Flags on the command line win, then
    /// environment variables, then the file, then defaults.
    #[arg(long, env = "EVENTFOLD_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    jq: super::schema::JqLimitArgs,
    /// The file holding the master key of personal data (64 hexadecimal digits).
    /// Without it: EVENTFOLD_MASTER_KEY (the key itself), else DIR/keys/master.key
    /// (created, and said so in the log, when the first personal value is written).
    #[arg(long, env = "EVENTFOLD_MASTER_KEY_FILE", value_name = "FILE")]
    master_key_file: Option<PathBuf>,
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
    let mut config = ServerConfig {
        auth,
        body_bytes_max: args.body_bytes_max,
        read_bytes_max: args.read_bytes_max,
        header_read_timeout_ms: args.header_read_timeout_ms,
        idle_timeout_ms: args.idle_timeout_ms,
        connections_max: connections_max(args.connections_max),
        jq_limits: args.jq.limits(),
        insecure: args.insecure,
        cors_origins: args.cors_origins.clone(),
        ..ServerConfig::default()
    };
    config.validate()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr()?;
    // The server refuses this too; checked here before the store is opened.
    config.check_address(address)?;
    let grpc = match &args.grpc_listen {
        None => None,
        Some(grpc) => {
            let listener = tokio::net::TcpListener::bind(grpc)
                .await
                .with_context(|| format!("cannot listen for gRPC on {grpc}"))?;
            config.check_address(listener.local_addr()?)?;
            Some(listener)
        }
    };
    let grpc_address = grpc.as_ref().map(|l| l.local_addr()).transpose()?;
    let mut archiving = None;
    let (store, holds): (Arc<dyn eventfold_core::EventStore>, String) = match &args.postgres {
        None => {
            // The server checks every sealed segment in the background after opening,
            // so damage in old data is reported (log, metrics) at once.
            let store = LogStore::open(
                &args.data.data,
                LogOptions {
                    scrub_sealed_segments: true,
                    scavenge_bytes_per_second_max: args.scavenge_mb_per_s * 1_000_000,
                    ..LogOptions::default()
                },
            )
            .with_context(|| format!("cannot open the store in {}", args.data.data.display()))?;
            // A command refused the store (it is locked) names this URL to its user.
            store.announce(&format!("serving {scheme}://{address}"));
            super::fetch_history(&store, args.archive_keep_local.is_some())?;
            let store = Arc::new(store);
            // The same store is the scavenger of `POST /admin/scavenge`.
            config.scavenger = Some(store.clone());
            // `POST /admin/archive`, and with --archive passes of its own.
            let own = args
                .archive
                .as_deref()
                .map(eventfold_archive::ArchiveLocation::parse)
                .transpose()?;
            let keep_local = args.archive_keep_local.map(|size| size.as_u64());
            let archiver = super::archive::LogArchiver::new(store.clone(), own, keep_local);
            if args.archive.is_some() {
                let interval = std::time::Duration::from_secs(args.archive_interval_s.max(1));
                archiving = Some(tokio::spawn(archiver.clone().keep_archiving(interval)));
            }
            config.archiver = Some(archiver);
            // Personal values are sealed with keys kept in DIR/keys, beside the log.
            let privacy =
                super::privacy_layer(&args.data.data, args.master_key_file.as_deref(), true)?;
            config.subject_keys = Some(privacy.keys().clone());
            let store = Arc::new(eventfold_core::LayerExt::layer(store, privacy));
            (store, format!("data in {}", args.data.data.display()))
        }
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
            let store = Arc::new(store);
            config.scavenger = Some(store.clone());
            // Personal values are sealed with keys in the schema's `subject_keys`, under
            // a master key every node is given (by default one made in DIR/keys).
            let source = eventfold_privacy::MasterKeySource::resolve(
                args.master_key_file.as_deref(),
                &args.data.data,
            );
            let master = source
                .load(true)?
                .with_context(|| format!("no master key in {source}"))?;
            let keys = Arc::new(eventfold_postgres::PostgresKeyStore::open(&store, master).await?);
            config.subject_keys = Some(keys.clone());
            let privacy = eventfold_privacy::PrivacyLayer::new(keys);
            let store = Arc::new(eventfold_core::LayerExt::layer(store, privacy));
            (
                store,
                format!("events in PostgreSQL schema {}", args.postgres_schema),
            )
        }
    };
    // Without --auth the server itself warns (once, in its log on stderr) that every
    // client is an administrator.
    // Handlers are installed before the address is announced: a SIGTERM sent as soon
    // as a client sees the server stops it gracefully, never by the default action.
    let shutdown = shutdown_signal()?;
    println!("eventfold listening on {scheme}://{address} ({holds})");
    if let Some(grpc) = grpc_address {
        let tls = if scheme == "https" { "" } else { "?tls=false" };
        println!("eventfold gRPC listening on {grpc} (KurrentDB clients: kurrentdb://{grpc}{tls})");
    }
    std::io::stdout().flush()?;
    eventfold_server::serve_with_grpc(store.clone(), config, listener, grpc, tls, shutdown).await?;
    if let Some(task) = archiving {
        // The archive catches up at the next start (or `eventfold archive`).
        task.abort();
        let _ = task.await;
    }
    // The server has stopped taking requests; closing the store lets the writer finish
    // what is queued before the process exits.
    drop(store);
    println!("eventfold stopped");
    Ok(ExitCode::SUCCESS)
}

/// The command line with the settings of `serve --config FILE` (or `EVENTFOLD_CONFIG`)
/// put in as flags before the ones typed, so that these win and clap checks the
/// file's values as it checks flags. A key whose flag has an environment variable
/// that is set is left out: the environment wins over the file. Other command lines
/// come back unchanged.
pub fn with_config_file(
    argv: Vec<std::ffi::OsString>,
    serve: &clap::Command,
) -> anyhow::Result<Vec<std::ffi::OsString>> {
    if argv.get(1).and_then(|a| a.to_str()) != Some("serve") {
        return Ok(argv);
    }
    let typed: Vec<&str> = argv[2..].iter().filter_map(|a| a.to_str()).collect();
    let given = typed
        .iter()
        .position(|a| *a == "--config")
        .and_then(|i| typed.get(i + 1).map(|f| f.to_string()))
        .or_else(|| {
            typed
                .iter()
                .find_map(|a| a.strip_prefix("--config=").map(str::to_string))
        })
        .or_else(|| std::env::var("EVENTFOLD_CONFIG").ok());
    let Some(file) = given else {
        return Ok(argv);
    };
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("cannot read --config {file}"))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("--config {file} is not TOML"))?;
    let mut flags: Vec<std::ffi::OsString> = Vec::new();
    for (key, value) in &table {
        let name = key.replace('_', "-");
        let arg = serve
            .get_arguments()
            .find(|a| a.get_long() == Some(name.as_str()) && name != "config")
            .with_context(|| {
                let known: Vec<&str> = serve
                    .get_arguments()
                    .filter_map(clap::Arg::get_long)
                    .filter(|l| !matches!(*l, "config" | "help"))
                    .collect();
                format!(
                    "--config {file}: '{key}' is no setting of `serve`; the settings are \
                     the flags: {}",
                    known.join(", ")
                )
            })?;
        if arg
            .get_env()
            .is_some_and(|variable| std::env::var_os(variable).is_some())
        {
            continue;
        }
        let flag = format!("--{name}");
        let takes_value = arg.get_num_args().is_none_or(|n| n.takes_values());
        let scalar = |value: &toml::Value| -> anyhow::Result<String> {
            Ok(match value {
                toml::Value::String(text) => text.clone(),
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::Float(x) => x.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => anyhow::bail!(
                    "--config {file}: '{key}' must be a string, a number or a boolean, not \
                     {}",
                    other.type_str()
                ),
            })
        };
        match value {
            toml::Value::Boolean(on) if !takes_value => {
                if *on {
                    flags.push(flag.into());
                }
            }
            toml::Value::Array(values) => {
                for value in values {
                    flags.push(flag.clone().into());
                    flags.push(scalar(value)?.into());
                }
            }
            value if takes_value => {
                flags.push(flag.into());
                flags.push(scalar(value)?.into());
            }
            _ => anyhow::bail!("--config {file}: '{key}' is a switch: write {key} = true"),
        }
    }
    let mut expanded = argv[..2].to_vec();
    expanded.extend(flags);
    expanded.extend(argv[2..].iter().cloned());
    Ok(expanded)
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
