//! The eventfold HTTP server: the `EventStore` contract of SPEC over HTTP/JSON, with live
//! subscriptions as Server-Sent Events. Written against the trait, so it serves any
//! backend. See `docs/http-api.md`.
//!
//! Architecture invariant: this is the only crate that knows the HTTP wire format; the
//! store's errors become responses in one place ([`error::ApiError`]).

mod admin;
mod auth;
mod error;
mod groups;
mod metrics;
mod routes;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

pub use auth::{
    ADMIN_ROLE, AuthConfig, AuthConfigError, DefaultAcl, EVERYONE, Principal, token_hash,
};
pub use error::ApiError;
use eventfold_core::EventStore;
use eventfold_schema::{JqLimits, SchemaError, SchemaStore};
pub use routes::{OPENAPI, router};
pub use tls::{TlsConfig, TlsError};

/// Limits of the server. Every limit names its unit last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Users, tokens and the default ACL; `None` is the insecure development mode,
    /// where every request acts as an administrator.
    pub auth: Option<AuthConfig>,
    /// The largest request body accepted (413 beyond).
    pub body_bytes_max: usize,
    /// The most events one append may carry (413 beyond).
    pub append_events_max: usize,
    /// The most events one read returns (larger `limit`s are cut to this).
    pub read_events_max: u64,
    /// Limits of each run of a jq converter (registration checks and reads):
    /// `jq_steps_max`, `jq_run_millis_max`, `jq_output_bytes_max`.
    pub jq_limits: JqLimits,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            auth: None,
            body_bytes_max: 4 * 1024 * 1024,
            append_events_max: 10_000,
            read_events_max: 10_000,
            jq_limits: JqLimits::default(),
        }
    }
}

/// What the handlers share.
pub(crate) struct AppState {
    pub store: Arc<dyn EventStore>,
    /// The schema registry kept in `store`.
    pub schemas: Arc<SchemaStore<dyn EventStore>>,
    pub config: ServerConfig,
    pub metrics: metrics::Metrics,
    /// Consumer groups served by this node, opened on first use.
    pub groups: std::sync::Mutex<std::collections::HashMap<String, groups::Group>>,
}

/// Serves `store` on `listener` until `shutdown` completes, then stops taking requests
/// and lets the ones in flight finish (appends under way are answered; jq converters
/// under way are interrupted, and their requests answered `503 shutting_down`).
pub async fn serve(
    store: Arc<dyn EventStore>,
    config: ServerConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    serve_with(store, config, listener, None, shutdown).await
}

/// [`serve`], over TLS when `tls` is given.
pub async fn serve_with(
    store: Arc<dyn EventStore>,
    config: ServerConfig,
    listener: tokio::net::TcpListener,
    tls: Option<TlsConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (app, schemas) = routes::router_with_schemas(store, config).await?;
    let shutdown = async move {
        shutdown.await;
        schemas.interrupt_conversions();
    };
    match tls {
        None => {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(shutdown)
            .await?
        }
        Some(tls) => {
            // No handler reads the peer address; plain connections keep it for
            // tracing layers only.
            axum::serve(
                tls::TlsListener::new(listener, &tls)?,
                app.into_make_service(),
            )
            .with_graceful_shutdown(shutdown)
            .await?
        }
    }
    Ok(())
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The schema registry in the store could not be loaded.
    #[error("cannot load the schema registry: {0}")]
    Schemas(#[from] SchemaError),
    /// Listening or serving failed.
    #[error("the server failed: {0}")]
    Io(#[from] std::io::Error),
}
