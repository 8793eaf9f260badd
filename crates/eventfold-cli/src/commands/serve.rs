//! `eventfold serve`: the store over HTTP until Ctrl-C or SIGTERM.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use eventfold_server::ServerConfig;

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
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store = Arc::new(super::open_store(&args.data.data)?);
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr()?;
    println!(
        "eventfold listening on http://{address} (data in {})",
        args.data.data.display()
    );
    std::io::stdout().flush()?;
    let config = ServerConfig {
        body_bytes_max: args.body_bytes_max,
        ..ServerConfig::default()
    };
    eventfold_server::serve(store.clone(), config, listener, shutdown_signal()).await?;
    // The server has stopped taking requests; closing the store lets the writer finish
    // what is queued before the process exits.
    drop(store);
    println!("eventfold stopped");
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
