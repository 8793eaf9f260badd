//! `eventfold schema register|list`: the schema registry, on a data directory or a
//! server.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use eventfold_schema::{
    CheckOptions, EventVersion, JqLimits, Registry, SchemaStore, VersionDefinition,
};
use serde_json::{Value, json};

use crate::StoreArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Register a version of an event type, after checking its converters on stored
    /// events.
    Register(RegisterArgs),
    /// List the registered types, or the versions of one type.
    List(ListArgs),
}

/// Limits of each run of a jq converter (`eventfold serve` and `schema register`).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct JqLimitArgs {
    /// Most steps one run of a jq converter may take (filter calls, loop turns,
    /// values built).
    #[arg(long, value_name = "STEPS", default_value_t = JqLimits::default().steps_max)]
    jq_steps_max: u64,
    /// Most time one run of a jq converter may take, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = JqLimits::default().run_millis_max)]
    jq_run_millis_max: u64,
    /// Largest value a jq converter may build, and most it may emit per event, in
    /// bytes of JSON text.
    #[arg(long, value_name = "BYTES", default_value_t = JqLimits::default().output_bytes_max)]
    jq_output_bytes_max: u64,
}

impl JqLimitArgs {
    /// The limits given.
    pub fn limits(&self) -> JqLimits {
        JqLimits {
            steps_max: self.jq_steps_max,
            run_millis_max: self.jq_run_millis_max,
            output_bytes_max: self.jq_output_bytes_max,
        }
    }
}

#[derive(Debug, clap::Args)]
struct RegisterArgs {
    #[command(flatten)]
    target: StoreArgs,
    /// With --data: the limits the converters are checked within (a server checks
    /// within its own).
    #[command(flatten)]
    jq: JqLimitArgs,
    /// The event type.
    event_type: String,
    /// The version registered, from 1.
    version: u32,
    /// JSON Schema of the version's data, as JSON text.
    #[arg(long, conflicts_with_all = ["schema_file", "file"])]
    schema: Option<String>,
    /// JSON Schema of the version's data, from a file.
    #[arg(long, value_name = "FILE", conflicts_with = "file")]
    schema_file: Option<PathBuf>,
    /// jq program converting the previous version's data into this one.
    #[arg(long, value_name = "JQ", conflicts_with = "file")]
    upcast: Option<String>,
    /// jq program converting this version's data into the previous one.
    #[arg(long, value_name = "JQ", conflicts_with = "file")]
    downcast: Option<String>,
    /// The version this one follows when not VERSION-1 of the same type (a rename):
    /// TYPE:N.
    #[arg(long, value_name = "TYPE:N", conflicts_with = "file")]
    previous: Option<String>,
    /// Declare that downcast(upcast(e)) == e (checked on stored events).
    #[arg(long, conflicts_with = "file")]
    lossless: bool,
    /// The whole definition as a JSON file, the body of PUT /schemas/{type}/{version}.
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct ListArgs {
    #[command(flatten)]
    target: StoreArgs,
    /// Show the versions of this type (all types when left out).
    event_type: Option<String>,
    #[command(flatten)]
    format: crate::output::FormatArg,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.action {
        Action::Register(args) => register(args).await,
        Action::List(args) => list(args).await,
    }
}

fn definition(args: &RegisterArgs) -> anyhow::Result<VersionDefinition> {
    if let Some(file) = &args.file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        return serde_json::from_str(&text)
            .with_context(|| format!("{} is not a schema definition", file.display()));
    }
    let schema = match (&args.schema, &args.schema_file) {
        (Some(text), _) => Some(serde_json::from_str(text).context("--schema is not JSON")?),
        (None, Some(file)) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            Some(
                serde_json::from_str(&text)
                    .with_context(|| format!("{} is not JSON", file.display()))?,
            )
        }
        (None, None) => None,
    };
    let previous = match &args.previous {
        None => None,
        Some(text) => {
            let (event_type, version) =
                text.rsplit_once(':').context("--previous must be TYPE:N")?;
            let version = version
                .parse()
                .with_context(|| format!("--previous: '{version}' is not a version"))?;
            Some(EventVersion::new(event_type, version))
        }
    };
    Ok(VersionDefinition {
        schema,
        upcast: args.upcast.clone(),
        downcast: args.downcast.clone(),
        previous,
        lossless: args.lossless,
        ..VersionDefinition::default()
    })
}

async fn register(args: RegisterArgs) -> anyhow::Result<ExitCode> {
    let definition = definition(&args)?;
    let answer = match (&args.target.data, &args.target.server) {
        (_, Some(_)) => {
            let client = super::http_store(&args.target)?;
            client
                .put_schema(
                    &args.event_type,
                    args.version,
                    &serde_json::to_value(&definition)?,
                )
                .await?
        }
        (Some(dir), None) => {
            let store = Arc::new(super::open_store(dir)?);
            let base = Registry::new().with_jq_limits(args.jq.limits());
            let schemas = SchemaStore::open_with(store, base, CheckOptions::default()).await?;
            let result = schemas
                .register(&args.event_type, args.version, definition)
                .await
                .map_err(explain)?;
            let result = result.as_str();
            json!({"type": args.event_type, "version": args.version, "result": result})
        }
        (None, None) => bail!("name the store with --data DIR or --server URL"),
    };
    println!("{answer}");
    Ok(ExitCode::SUCCESS)
}

/// A refused registration with the failing event's data shown.
fn explain(error: eventfold_schema::SchemaError) -> anyhow::Error {
    match &error {
        eventfold_schema::SchemaError::Incompatible { data, .. } => {
            anyhow::anyhow!("{error}\nthe failing event's data: {data}")
        }
        _ => error.into(),
    }
}

async fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let answer: Value = match (&args.target.data, &args.target.server) {
        (_, Some(_)) => {
            super::http_store(&args.target)?
                .schemas(args.event_type.as_deref())
                .await?
        }
        (Some(dir), None) => {
            let store = Arc::new(super::open_store_read_only(dir)?);
            let registry = SchemaStore::open(store).await?.registry();
            match &args.event_type {
                Some(event_type) => serde_json::to_value(
                    registry
                        .type_versions(event_type)
                        .with_context(|| format!("no schema is registered for {event_type}"))?,
                )?,
                None => json!({"types": registry.summaries()}),
            }
        }
        (None, None) => bail!("name the store with --data DIR or --server URL"),
    };
    // One row per type, or one per version of the type asked for (with its type).
    let rows: Vec<Value> = match &args.event_type {
        None => answer["types"].as_array().cloned().unwrap_or_default(),
        Some(event_type) => answer["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|version| {
                let mut row = serde_json::Map::from_iter([("type".into(), json!(event_type))]);
                row.extend(version.as_object().cloned().unwrap_or_default());
                Value::Object(row)
            })
            .collect(),
    };
    let columns: &[&str] = match &args.event_type {
        None => &["type", "versions", "newest"],
        Some(_) => &[
            "type", "version", "previous", "lossless", "upcast", "downcast", "schema",
        ],
    };
    crate::output::print_rows(args.format.resolve(), &rows, columns)?;
    Ok(ExitCode::SUCCESS)
}
