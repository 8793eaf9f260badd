//! `eventfold migrate`: stream surgery (copy-replace, split, join) on a data directory
//! or a server, with a dry run, a progress bar and an audit record in `$surgery`;
//! `migrate transform` copies a whole store into a new one and `migrate flip` makes
//! the old one read-only; `migrate log` lists the records.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use eventfold_surgery::{Audit, Operation, Outcome, SplitTarget};

use crate::StoreArgs;

/// `eventfold migrate <operation> --data DIR --reason TEXT [--dry-run]`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    operation: MigrateCommand,
}

#[derive(Debug, clap::Subcommand)]
enum MigrateCommand {
    /// Copy a stream into a new one (some revisions skipped, or each event through a
    /// jq transform), then close the old stream with a pointer to the new one.
    CopyReplace {
        /// The stream to replace.
        source: String,
        /// The new stream (left out with --in-place).
        #[arg(long, value_name = "TARGET", required_unless_present = "in_place")]
        to: Option<String>,
        /// Revisions of SOURCE to leave out (comma-separated).
        #[arg(long, value_name = "REV,...", value_delimiter = ',')]
        skip: Vec<u64>,
        /// A jq program from each event ({stream, revision, type, version, data,
        /// metadata}) to the events it becomes ({type, data, metadata?, version?};
        /// `empty` drops it).
        #[arg(long, value_name = "JQ")]
        transform: Option<String>,
        /// Rewrite the stream under its own name: the copies are appended to it and
        /// its truncate_before hides the originals, in one atomic append.
        #[arg(long)]
        in_place: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Split a stream into new streams: each event goes to the one whose jq filter it
    /// matches (a filter that matches no event, or two filters matching one event,
    /// stop the split before any write).
    Split {
        /// The stream to split.
        source: String,
        /// A new stream and its filter, NAME=<jq filter> (repeat: two or more).
        #[arg(long, value_name = "NAME=JQ", required = true, num_args = 1.., value_parser = named_filter)]
        into: Vec<(String, String)>,
        /// Write links to the source's events instead of copies (reads of the new
        /// streams return the originals).
        #[arg(long)]
        link: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Join streams into a new stream, in the order of $all.
    Join {
        /// The streams to join (two or more).
        #[arg(required = true, num_args = 2..)]
        sources: Vec<String>,
        /// The new stream.
        #[arg(long, value_name = "TARGET")]
        into: String,
        /// Write links to the sources' events instead of copies.
        #[arg(long)]
        link: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Copy the whole store into a new one (a data directory, or a PostgreSQL
    /// database), each user event through a jq program; with --follow, keep copying
    /// live until the store is flipped, then say that traffic may switch. Run again,
    /// it resumes after the last copy.
    Transform {
        #[command(flatten)]
        target: Target,
        /// A jq program from each user event ({stream, revision, type, version, data,
        /// metadata}) to the events it becomes ({type, data, metadata?, version?,
        /// stream?}; `empty` drops it). System events are copied as they are.
        #[arg(long, value_name = "JQ")]
        program: Option<String>,
        /// After the last event, wait for new ones, until the store is flipped.
        #[arg(long)]
        follow: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Make the whole store read-only, so that a transform following it catches up
    /// and traffic can switch to the new store (--undo: writable again).
    Flip {
        /// Where traffic goes (named in every refusal; no credentials).
        #[arg(long, value_name = "NEW STORE")]
        to: Option<String>,
        /// Make a flipped store writable again.
        #[arg(long)]
        undo: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Close the store as a read-only archive labelled with its period and start a
    /// new store (a data directory, or a PostgreSQL database) whose streams begin
    /// from their state: one Initialized event per stream of a category with a fold
    /// (registered in this store); other streams are copied, deleted and moved ones
    /// end with the period.
    Bankruptcy {
        #[command(flatten)]
        target: Target,
        /// The period's label (e.g. 2019-2026), kept in the archive and in every
        /// Initialized event.
        #[arg(long, value_name = "TEXT")]
        label: String,
        /// A category and the registered fold its streams start from (repeat).
        #[arg(long, value_name = "CATEGORY=FOLD", required = true, value_parser = named_filter)]
        fold: Vec<(String, String)>,
        #[command(flatten)]
        common: Common,
    },
    /// List the audit records of every surgery ($surgery), oldest first, one JSON
    /// object per line.
    Log {
        #[command(flatten)]
        target: StoreArgs,
    },
}

#[derive(Debug, clap::Args)]
struct Common {
    #[command(flatten)]
    target: StoreArgs,
    /// Why: kept in the audit record (required).
    #[arg(long, value_name = "TEXT")]
    reason: String,
    /// Who, for the audit record (default: the USER of the environment; through
    /// --server, the server records its authenticated user instead).
    #[arg(long, value_name = "NAME")]
    who: Option<String>,
    /// Check everything and print what would change; write nothing.
    #[arg(long)]
    dry_run: bool,
}

fn named_filter(text: &str) -> Result<(String, String), String> {
    let (name, filter) = text
        .split_once('=')
        .ok_or_else(|| format!("'{text}' is not NAME=<jq filter>"))?;
    Ok((name.to_string(), filter.to_string()))
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (operation, common) = match args.operation {
        MigrateCommand::Log { target } => return log(&target).await,
        MigrateCommand::Transform {
            target,
            program,
            follow,
            common,
        } => return transform(target, program, follow, common).await,
        MigrateCommand::Bankruptcy {
            target,
            label,
            fold,
            common,
        } => return bankruptcy(target, label, fold, common).await,
        MigrateCommand::Flip { to, undo, common } => (Operation::Flip { to, undo }, common),
        MigrateCommand::CopyReplace {
            source,
            to,
            skip,
            transform,
            in_place,
            common,
        } => (
            Operation::CopyReplace {
                to: to.unwrap_or_else(|| source.clone()),
                source,
                skip,
                transform,
                in_place,
            },
            common,
        ),
        MigrateCommand::Split {
            source,
            into,
            link,
            common,
        } => {
            let into = into
                .into_iter()
                .map(|(stream, filter)| SplitTarget { stream, filter })
                .collect();
            (Operation::Split { source, into, link }, common)
        }
        MigrateCommand::Join {
            sources,
            into,
            link,
            common,
        } => (
            Operation::Join {
                sources,
                into,
                link,
            },
            common,
        ),
    };
    if common.target.server.is_some() {
        // The server performs it, and records its authenticated user as who did it.
        let request = eventfold_wire::SurgeryRequest {
            operation,
            reason: common.reason,
            dry_run: common.dry_run,
        };
        let outcome = super::http_store(&common.target)?
            .surgery(&request)
            .await
            .with_context(|| format!("migrate {}", request.operation.name()))?;
        print_outcome(&outcome);
        return Ok(ExitCode::SUCCESS);
    }
    let store = super::open_target(&common.target)?;
    let audit = audit_of(&common);
    let bar = progress_bar(
        "{bar:40} {pos}/{len} events copied ({per_sec})",
        common.dry_run,
    );
    let outcome = eventfold_surgery::perform(
        store.as_ref(),
        &operation,
        &audit,
        common.dry_run,
        &mut |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        },
    )
    .await
    .with_context(|| format!("migrate {}", operation.name()))?;
    bar.finish_and_clear();
    print_outcome(&outcome);
    Ok(ExitCode::SUCCESS)
}

fn audit_of(common: &Common) -> Audit {
    Audit {
        reason: common.reason.clone(),
        who: common
            .who
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "eventfold-cli".into()),
    }
}

fn progress_bar(template: &str, hidden: bool) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    if hidden {
        bar.finish_and_clear();
    }
    bar
}

/// The new store of a transform or a bankruptcy.
#[derive(Debug, clap::Args)]
struct Target {
    /// The new store: a data directory, or a PostgreSQL URL (postgres://...).
    #[arg(long, value_name = "DIR|URL")]
    to: String,
    /// With a PostgreSQL target: the schema of its tables.
    #[arg(long, default_value = "eventfold", value_name = "NAME")]
    to_postgres_schema: String,
    /// The master key file of the new store's personal data (default: for a
    /// directory, its own DIR/keys/master.key; for PostgreSQL, EVENTFOLD_MASTER_KEY,
    /// else the source's master key).
    #[arg(long, value_name = "FILE")]
    to_master_key_file: Option<PathBuf>,
}

impl Target {
    fn is_postgres(&self) -> bool {
        self.to.starts_with("postgres://") || self.to.starts_with("postgresql://")
    }

    /// The target as the audit record and the messages name it: no credentials.
    fn described(&self) -> String {
        match self.to.split_once("://") {
            Some((scheme, rest)) if self.is_postgres() => {
                let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
                format!("{scheme}://{host} (schema {})", self.to_postgres_schema)
            }
            _ => self.to.clone(),
        }
    }

    /// Opens the new store under the metadata and privacy layers, as a server would.
    async fn open(
        &self,
        source: &crate::StoreArgs,
    ) -> anyhow::Result<Arc<dyn eventfold_core::EventStore>> {
        use eventfold_core::LayerExt;
        if !self.is_postgres() {
            let dir = Path::new(&self.to);
            let store = super::open_store(dir)?;
            let privacy = super::privacy_layer(dir, self.to_master_key_file.as_deref(), true)?;
            return Ok(Arc::new(
                store
                    .layer(privacy)
                    .layer(eventfold_metadata::MetadataLayer),
            ));
        }
        let options = eventfold_postgres::PostgresOptions {
            schema: self.to_postgres_schema.clone(),
            ..Default::default()
        };
        let store = eventfold_postgres::PostgresStore::connect(&self.to, options)
            .await
            .with_context(|| format!("cannot open the PostgreSQL store {}", self.described()))?;
        // Personal values are sealed again with keys of the new store, under a master
        // key: given, or the source's (a server's source has none here to lend).
        use eventfold_privacy::MasterKeySource;
        let key_source = match (&self.to_master_key_file, &source.data) {
            (Some(file), _) => MasterKeySource::File(file.clone()),
            (None, Some(dir)) => MasterKeySource::resolve(source.master_key_file.as_deref(), dir),
            (None, None) => match MasterKeySource::resolve(None, Path::new("")) {
                hex @ MasterKeySource::Hex(_) => hex,
                _ => anyhow::bail!(
                    "a PostgreSQL target needs a master key for personal data: \
                     --to-master-key-file FILE or EVENTFOLD_MASTER_KEY"
                ),
            },
        };
        let master = key_source
            .load(true)?
            .with_context(|| format!("no master key in {key_source}"))?;
        let keys = Arc::new(eventfold_postgres::PostgresKeyStore::open(&store, master).await?);
        let privacy = eventfold_privacy::PrivacyLayer::new(keys);
        Ok(Arc::new(
            store
                .layer(privacy)
                .layer(eventfold_metadata::MetadataLayer),
        ))
    }
}

/// `migrate transform`: the whole store into a new one, following it with --follow.
async fn transform(
    target: Target,
    program: Option<String>,
    follow: bool,
    common: Common,
) -> anyhow::Result<ExitCode> {
    use eventfold_surgery::transform::{CopyOptions, Transform, copy_store};
    let transform = Transform::jq(program.as_deref()).context("migrate transform")?;
    let source = super::open_target(&common.target)?;
    let new_store = target.open(&common.target).await?;
    let audit = audit_of(&common);
    let options = CopyOptions {
        follow,
        dry_run: common.dry_run,
        arguments: serde_json::json!({
            "source": common.target.data.as_ref().map(|d| d.display().to_string())
                .or_else(|| common.target.server.clone()),
            "to": target.described(),
            "program": program,
            "follow": follow,
        }),
    };
    let bar = progress_bar(
        "{bar:40} {pos}/{len} positions of the source copied",
        common.dry_run,
    );
    let outcome = copy_store(
        source.as_ref(),
        new_store.as_ref(),
        &transform,
        &options,
        &audit,
        &mut |done, head| {
            bar.set_length(head);
            bar.set_position(done);
        },
    )
    .await
    .context("migrate transform")?;
    bar.finish_and_clear();
    let verb = if outcome.dry_run {
        "would copy"
    } else {
        "copied"
    };
    eprintln!(
        "{verb} {} events to {} ({} dropped by the program, {} left out: consumer-group state)",
        outcome.copied,
        target.described(),
        outcome.dropped,
        outcome.left_out
    );
    match outcome.caught_up {
        Some(position) => eprintln!(
            "caught up: the old store is read-only and {} holds everything up to its position {position}; traffic may switch to it now",
            target.described()
        ),
        None if !outcome.dry_run => eprintln!(
            "the old store is still writable: run `eventfold migrate flip`, then this transform again (or keep one running with --follow) to catch up"
        ),
        None => eprintln!("dry run: nothing was written"),
    }
    if let Ok(json) = serde_json::to_string(&outcome) {
        println!("{json}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `migrate bankruptcy`: the old store closed, the new one started from states.
async fn bankruptcy(
    target: Target,
    label: String,
    folds: Vec<(String, String)>,
    common: Common,
) -> anyhow::Result<ExitCode> {
    use eventfold_surgery::bankruptcy::{Bankruptcy, declare};
    let source = super::open_target(&common.target)?;
    let new_store = target.open(&common.target).await?;
    let audit = audit_of(&common);
    let period = Bankruptcy {
        label,
        folds: folds.into_iter().collect(),
        to: target.described(),
    };
    let bar = progress_bar("{spinner} {pos} streams done ({per_sec})", common.dry_run);
    let outcome = declare(
        source,
        new_store.as_ref(),
        &period,
        &audit,
        common.dry_run,
        &mut |done| bar.set_position(done),
    )
    .await
    .context("migrate bankruptcy")?;
    bar.finish_and_clear();
    let started: u64 = outcome.initialized.values().sum();
    if outcome.dry_run {
        eprintln!(
            "would start {started} streams from their state and copy {} ({} end with the period); dry run: nothing was written",
            outcome.copied, outcome.ended
        );
    } else {
        eprintln!(
            "period '{}' closed: the old store is a read-only archive; {} starts {started} streams from their state and holds {} copied ({} ended with the period, {} there already)",
            period.label,
            target.described(),
            outcome.copied,
            outcome.ended,
            outcome.resumed
        );
    }
    if let Ok(json) = serde_json::to_string(&outcome) {
        println!("{json}");
    }
    Ok(ExitCode::SUCCESS)
}

fn print_outcome(outcome: &Outcome) {
    let verb = if outcome.dry_run {
        "would copy"
    } else {
        "copied"
    };
    for (stream, events) in &outcome.targets {
        eprintln!("{verb} {events} events to '{stream}'");
    }
    if outcome.operation == "flip" && !outcome.dry_run {
        eprintln!(
            "flipped: the store refuses appends now (undo with `migrate flip --undo`); a transform following it catches up and says when traffic may switch"
        );
    }
    for (source, to) in &outcome.moved {
        let verb = if outcome.dry_run {
            "would be closed"
        } else {
            "closed"
        };
        eprintln!("'{source}' {verb}: it points at '{to}'");
    }
    if outcome.dropped > 0 {
        eprintln!("{} events left out", outcome.dropped);
    }
    if outcome.dry_run {
        eprintln!("dry run: nothing was written");
    }
    if let Ok(json) = serde_json::to_string(outcome) {
        println!("{json}");
    }
}

async fn log(target: &StoreArgs) -> anyhow::Result<ExitCode> {
    let store = super::open_target_for_reading(target)?;
    for record in eventfold_surgery::log(store.as_ref()).await? {
        let mut value: serde_json::Value = serde_json::from_slice(&record.data)?;
        value["position"] = record.position.get().into();
        println!("{value}");
    }
    Ok(ExitCode::SUCCESS)
}
