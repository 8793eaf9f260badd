//! The eventfold HTTP server: the `EventStore` contract over HTTP/JSON, with live
//! subscriptions as Server-Sent Events. Written against the trait, so it serves any
//! backend. See `docs/http-api.md`.
//!
//! Architecture invariant: the shapes of what crosses the wire, and the error codes
//! with their statuses, are `eventfold-wire`'s; this crate serves them, and the
//! store's errors become responses in one place ([`error::ApiError`]).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod archiver;
mod auth;
mod connection;
mod error;
mod grpc;
mod metrics;
mod routes;
mod state;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use archiver::{ArchiveFailure, Archiver};
pub use auth::{
    ADMIN_ROLE, AuthConfig, AuthConfigError, DefaultAcl, EVERYONE, METRICS_ROLE, Principal,
    token_hash,
};
pub use error::ApiError;
use eventfold_core::{EventStore, LayerExt};
use eventfold_metadata::MetadataLayer;
use eventfold_schema::{JqLimits, SchemaError};
pub use routes::OPENAPI;
pub(crate) use state::AppState;
pub use tls::{TlsConfig, TlsError};

/// Limits of the server. Every limit names its unit last.
#[derive(Debug, Clone)]
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
    /// About the most bytes of events one read page or SSE catch-up page holds: a page
    /// stops early at this size (always holding at least one event) and says where to
    /// continue.
    pub read_bytes_max: usize,
    /// The longest a client may take to send a request head: the first one counted
    /// from the connection's accept (TLS handshake included), later ones from their
    /// first byte. The connection is closed when it is late.
    pub header_read_timeout_ms: u64,
    /// The longest a connection may stay open between two requests.
    pub idle_timeout_ms: u64,
    /// The most connections served at once; more wait to be accepted until one closes.
    pub connections_max: usize,
    /// Serve without `auth` on an address other than loopback (every client of the
    /// network then acts as an administrator). Off, [`serve`] refuses to: see
    /// [`ServerConfig::check_address`].
    pub insecure: bool,
    /// Origins of web pages whose scripts may call the API from a browser (CORS),
    /// e.g. `https://console.example.com`; `*` allows every origin. Empty (the
    /// default): no CORS headers, so browsers let only same-origin pages call it.
    /// Tokens still decide who may do what.
    pub cors_origins: Vec<String>,
    /// The store's storage seen as a [`Scavenger`](eventfold_core::Scavenger), for
    /// `POST /admin/scavenge` (an online scavenge); `None` (the default): that route
    /// answers `501 not_supported`. The embedded engine's `LogStore` is one: give the
    /// same `Arc` as the store.
    pub scavenger: Option<Arc<dyn eventfold_core::Scavenger>>,
    /// The key store of the store's personal data (the one its
    /// `eventfold_privacy::PrivacyLayer` seals with), for `DELETE /subjects/{subject}`;
    /// `None` (the default): that route answers `501 not_supported`.
    pub subject_keys: Option<Arc<dyn eventfold_privacy::KeyStore>>,
    /// What archives the store's log for `POST /admin/archive`; `None` (the default):
    /// that route answers `501 not_supported`.
    pub archiver: Option<Arc<dyn Archiver>>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            auth: None,
            body_bytes_max: 4 * 1024 * 1024,
            append_events_max: 10_000,
            read_events_max: 10_000,
            jq_limits: JqLimits::default(),
            read_bytes_max: 4 * 1024 * 1024,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            connections_max: 1024,
            insecure: false,
            cors_origins: Vec::new(),
            scavenger: None,
            subject_keys: None,
            archiver: None,
        }
    }
}

/// The largest [`ServerConfig::connections_max`].
pub const CONNECTIONS_MAX_LIMIT: usize = 1_000_000;

impl ServerConfig {
    /// Checks that the limits can be served; the error names the one that cannot.
    pub fn validate(&self) -> Result<(), ServeError> {
        let invalid = |reason: String| Err(ServeError::InvalidConfig(reason));
        if self.connections_max == 0 || self.connections_max > CONNECTIONS_MAX_LIMIT {
            return invalid(format!(
                "connections_max must be between 1 and {CONNECTIONS_MAX_LIMIT}, not {}",
                self.connections_max
            ));
        }
        if self.header_read_timeout_ms == 0 || self.idle_timeout_ms == 0 {
            return invalid(
                "header_read_timeout_ms and idle_timeout_ms must be at least 1".to_string(),
            );
        }
        if self.read_bytes_max == 0 || self.read_events_max == 0 {
            return invalid("read_bytes_max and read_events_max must be at least 1".to_string());
        }
        for origin in &self.cors_origins {
            if origin != "*" && axum::http::HeaderValue::from_str(origin).is_err()
                || origin.ends_with('/')
                || (origin != "*" && !origin.contains("://"))
            {
                return invalid(format!(
                    "CORS origin '{origin}' is not an origin: write scheme://host[:port] \
                     without a path (e.g. https://console.example.com), or * for any"
                ));
            }
        }
        Ok(())
    }

    /// Refuses to serve `address` without authentication unless it is a loopback
    /// address (only this machine reaches it) or [`ServerConfig::insecure`] allows it.
    pub fn check_address(&self, address: SocketAddr) -> Result<(), ServeError> {
        if self.auth.is_none() && !self.insecure && !address.ip().is_loopback() {
            return Err(ServeError::Unauthenticated(address));
        }
        Ok(())
    }
}

/// The router of the whole API over `store`, with the schema registry kept in it:
/// the state is built first (the registry loaded, its refresh started), then the
/// router over it. For tests and embedding; [`serve`] serves the same router.
pub async fn router(
    store: Arc<dyn EventStore>,
    config: ServerConfig,
) -> Result<axum::Router, SchemaError> {
    Ok(routes::router(AppState::open(store, config).await?))
}

/// The store the handlers use: `store` under the metadata layer, so reads apply each
/// stream's retention and deletion, whatever backend (or stack of layers) the caller
/// gave.
fn with_metadata(store: Arc<dyn EventStore>) -> Arc<dyn EventStore> {
    Arc::new(store.layer(MetadataLayer))
}

/// Serves `store` on `listener` until `shutdown` completes, then stops taking requests
/// and lets the ones in flight finish (appends under way are answered; jq converters
/// under way are interrupted, and their requests answered `503 shutting_down`).
/// Connections are served within the limits of `config` (timeouts, connection count).
/// `store` is a backend (or a stack of layers) without the metadata layer: the server
/// puts one on top, so reads apply each stream's retention and deletion.
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
    serve_with_grpc(store, config, listener, None, tls, shutdown).await
}

/// [`serve_with`], answering KurrentDB's gRPC protocol on `grpc` as well (over TLS
/// with `tls`, as the HTTP side; see `docs/grpc.md`), over the same store, users and
/// limits. Both stop together.
pub async fn serve_with_grpc(
    store: Arc<dyn EventStore>,
    config: ServerConfig,
    listener: tokio::net::TcpListener,
    grpc: Option<tokio::net::TcpListener>,
    tls: Option<TlsConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    config.validate()?;
    let address = listener.local_addr()?;
    config.check_address(address)?;
    if config.auth.is_none() {
        tracing::warn!(
            %address,
            "INSECURE DEVELOPMENT MODE: no authentication, every client is an administrator; \
             give users and tokens (--auth FILE) for anything but development"
        );
    }
    let limits = connection::Limits {
        header_read_timeout: Duration::from_millis(config.header_read_timeout_ms),
        idle_timeout: Duration::from_millis(config.idle_timeout_ms),
        connections_max: config.connections_max,
    };
    let state = AppState::open(store, config).await?;
    let app = routes::router(state.clone());
    let schemas = state.schemas.clone();
    let shutdown = async move {
        shutdown.await;
        schemas.interrupt_conversions();
    };
    let grpc = grpc.map(|grpc| {
        let tls = tls.as_ref().map(TlsConfig::grpc_acceptor);
        tokio::spawn(grpc::serve(state.clone(), grpc, tls))
    });
    let tls = tls.map(|tls| tls.acceptor());
    connection::serve(listener, tls, app, state, limits, shutdown).await;
    if let Some(grpc) = grpc {
        match grpc.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(ServeError::Grpc(error.to_string())),
            Err(error) => return Err(ServeError::Grpc(error.to_string())),
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
    /// Serving the gRPC protocol failed.
    #[error("the gRPC endpoint failed: {0}")]
    Grpc(String),
    /// A limit of the [`ServerConfig`] cannot be served.
    #[error("invalid server configuration: {0}")]
    InvalidConfig(String),
    /// No authentication on an address other machines reach, and
    /// [`ServerConfig::insecure`] does not allow it.
    #[error(
        "refusing to serve {0} without authentication: give users and tokens (`auth`, \
         --auth FILE), or allow it explicitly (`insecure`, --insecure) to let every \
         client in as an administrator"
    )]
    Unauthenticated(SocketAddr),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_auth_only_loopback_is_served_unless_insecure_allows_it() {
        let open = ServerConfig::default();
        for loopback in ["127.0.0.1:2113", "[::1]:2113"] {
            assert!(open.check_address(loopback.parse().unwrap()).is_ok());
        }
        let public: SocketAddr = "0.0.0.0:2113".parse().unwrap();
        let err = open.check_address(public).unwrap_err();
        assert!(matches!(err, ServeError::Unauthenticated(at) if at == public));
        assert!(err.to_string().contains("--auth"), "{err}");
        assert!(err.to_string().contains("--insecure"), "{err}");
        let insecure = ServerConfig {
            insecure: true,
            ..ServerConfig::default()
        };
        assert!(insecure.check_address(public).is_ok());
        let auth = AuthConfig::from_toml(
            "[[users]]\nname = \"root\"\ntoken = \"root-token-0123456789\"\nroles = [\"admin\"]\n",
        )
        .unwrap();
        let secured = ServerConfig {
            auth: Some(auth),
            ..ServerConfig::default()
        };
        assert!(secured.check_address(public).is_ok());
    }

    #[tokio::test]
    async fn serve_itself_refuses_a_public_address_without_auth() {
        let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
        let store = Arc::new(eventfold_core::InMemoryStore::new());
        let served = serve(
            store,
            ServerConfig::default(),
            listener,
            std::future::pending(),
        )
        .await;
        assert!(
            matches!(served, Err(ServeError::Unauthenticated(_))),
            "{served:?}"
        );
    }
}
