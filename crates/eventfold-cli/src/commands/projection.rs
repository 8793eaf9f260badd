//! `eventfold projection register|list` and `eventfold state`: registered folds, and
//! the state of a stream as of a revision through one, on a data directory or a
//! server.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use eventfold_core::Revision;
use eventfold_schema::{CheckOptions, FoldDefinition, Registry, SchemaStore};
use serde_json::{Value, json};

use super::schema::JqLimitArgs;
use crate::StoreArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Register a projection: an initial state and a jq handler per event type
    /// (`.` is {state, event}; the output is the new state).
    Register(RegisterArgs),
    /// List the registered projections.
    List(ListArgs),
}

#[derive(Debug, clap::Args)]
struct RegisterArgs {
    #[command(flatten)]
    target: StoreArgs,
    /// The projection's name.
    name: String,
    /// The initial state, as JSON text.
    #[arg(
        long,
        value_name = "JSON",
        conflicts_with = "file",
        required_unless_present = "file"
    )]
    init: Option<String>,
    /// A handler: TYPE=JQ (repeat for each event type).
    #[arg(long = "handler", value_name = "TYPE=JQ", conflicts_with = "file")]
    handlers: Vec<String>,
    /// The whole definition as a JSON file, the body of PUT /projections/{name}.
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct ListArgs {
    #[command(flatten)]
    target: StoreArgs,
}

/// `eventfold state --data DIR|--server URL STREAM --projection NAME [--revision N]`.
#[derive(Debug, clap::Args)]
pub struct StateArgs {
    #[command(flatten)]
    target: StoreArgs,
    /// With --data: the limits each handler runs within (a server runs within its own).
    #[command(flatten)]
    jq: JqLimitArgs,
    /// The stream.
    stream: String,
    /// The registered projection to fold the stream with.
    #[arg(long, value_name = "NAME")]
    projection: String,
    /// The revision the state is as of (default: the stream's last event).
    #[arg(long, value_name = "N")]
    revision: Option<u64>,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.action {
        Action::Register(args) => register(args).await,
        Action::List(args) => list(args).await,
    }
}

fn definition(args: &RegisterArgs) -> anyhow::Result<FoldDefinition> {
    if let Some(file) = &args.file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        return serde_json::from_str(&text)
            .with_context(|| format!("{} is not a projection definition", file.display()));
    }
    let init = args.init.as_deref().context("give --init or --file")?;
    let init = serde_json::from_str(init).context("--init is not JSON")?;
    let mut handlers = std::collections::BTreeMap::new();
    for handler in &args.handlers {
        let (event_type, program) = handler
            .split_once('=')
            .with_context(|| format!("--handler '{handler}' is not TYPE=JQ"))?;
        handlers.insert(event_type.to_string(), program.to_string());
    }
    Ok(FoldDefinition { init, handlers })
}

async fn register(args: RegisterArgs) -> anyhow::Result<ExitCode> {
    let definition = definition(&args)?;
    let answer = match (&args.target.data, &args.target.server) {
        (_, Some(_)) => {
            super::http_store(&args.target)?
                .put_projection(&args.name, &serde_json::to_value(&definition)?)
                .await?
        }
        (Some(_), None) => {
            let schemas = SchemaStore::open(super::open_target(&args.target)?).await?;
            let result = schemas
                .register_fold(&args.name, &definition)
                .await?
                .as_str();
            json!({"name": args.name, "result": result})
        }
        (None, None) => bail!("name the store with --data DIR or --server URL"),
    };
    println!("{answer}");
    Ok(ExitCode::SUCCESS)
}

async fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let answer: Value = match (&args.target.data, &args.target.server) {
        (_, Some(_)) => super::http_store(&args.target)?.projections().await?,
        (Some(_), None) => {
            let schemas = SchemaStore::open(super::open_target_for_reading(&args.target)?).await?;
            let projections: Vec<Value> = schemas
                .folds()
                .await?
                .into_iter()
                .map(|(name, d)| json!({"name": name, "init": d.init, "handlers": d.handlers}))
                .collect();
            json!({ "projections": projections })
        }
        (None, None) => bail!("name the store with --data DIR or --server URL"),
    };
    println!("{answer}");
    Ok(ExitCode::SUCCESS)
}

/// Prints `{"state", "revision"}`.
pub async fn state(args: StateArgs) -> anyhow::Result<ExitCode> {
    let answer: Value = match (&args.target.data, &args.target.server) {
        (_, Some(_)) => {
            super::http_store(&args.target)?
                .state_of(&args.stream, &args.projection, args.revision)
                .await?
        }
        (Some(_), None) => {
            let store = super::open_target_for_reading(&args.target)?;
            let base = Registry::new().with_jq_limits(args.jq.limits());
            let schemas = SchemaStore::open_with(store, base, CheckOptions::default()).await?;
            let fold = schemas.fold(&args.projection).await?;
            let folded = schemas
                .state_of(&args.stream, &fold, args.revision.map(Revision))
                .await?;
            serde_json::to_value(folded)?
        }
        (None, None) => bail!("name the store with --data DIR or --server URL"),
    };
    println!("{answer}");
    Ok(ExitCode::SUCCESS)
}
