//! `eventfold forget SUBJECT`: crypto-shredding of one subject's personal data, on a
//! data directory or through a server (`DELETE /subjects/{subject}`).

use std::process::ExitCode;

use eventfold_wire::SubjectForgotten;

use crate::StoreArgs;

/// `eventfold forget --data DIR|--server URL SUBJECT`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: StoreArgs,
    /// The subject id, as events name it in their `$personal` metadata.
    subject: String,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let position = match (&args.target.data, &args.target.server) {
        (_, Some(_)) => {
            let store = super::http_store(&args.target)?;
            store.forget_subject(&args.subject).await?.get()
        }
        (Some(dir), None) => {
            use eventfold_core::LayerExt;
            let store = super::open_store(dir)?;
            let privacy = super::privacy_layer(dir, args.target.master_key_file.as_deref(), true)?;
            let stack = store.layer(privacy.clone());
            privacy.forget(&stack, &args.subject).await?.position.get()
        }
        (None, None) => anyhow::bail!("name the store with --data DIR or --server URL"),
    };
    let answer = SubjectForgotten {
        subject: args.subject,
        position,
    };
    println!("{}", serde_json::to_string(&answer)?);
    Ok(ExitCode::SUCCESS)
}
