//! KurrentDB's gRPC protocol (formerly EventStoreDB's), so that applications written
//! against its official clients connect to eventfold by changing a connection string.
//!
//! The services answer over the same state as the HTTP API ([`AppState`]): the same
//! layered store, the same users and ACLs, the same checks of an append
//! ([`crate::routes::streams::check_writes`]). Only the shapes differ; what the
//! protocol's messages mean in eventfold's terms is in `docs/grpc.md`.
//!
//! - [`streams`]: appends (single and batched), reads of streams and `$all`, catch-up
//!   subscriptions that turn live, delete and tombstone.
//! - [`persistent`]: persistent subscriptions, over eventfold's consumer groups.
//! - [`cluster`]: what clients ask on connect (the cluster's members, the supported
//!   methods), answered as one node that leads.
//! - [`events`]: events between the protocol's messages and the store's.

mod cluster;
mod events;
mod metadata;
mod persistent;
mod streams;
mod tls;

use std::sync::Arc;

use base64::Engine as _;
use tonic::metadata::MetadataMap;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

/// The messages and services generated from `proto/` (our own definitions of the
/// protocol's wire format).
#[allow(clippy::all, clippy::pedantic, missing_docs, unreachable_pub)]
pub(crate) mod proto {
    pub mod event_store {
        pub mod client {
            include!(concat!(env!("OUT_DIR"), "/event_store.client.rs"));
            pub mod streams {
                include!(concat!(env!("OUT_DIR"), "/event_store.client.streams.rs"));
            }
            pub mod gossip {
                include!(concat!(env!("OUT_DIR"), "/event_store.client.gossip.rs"));
            }
            pub mod persistent_subscriptions {
                include!(concat!(
                    env!("OUT_DIR"),
                    "/event_store.client.persistent_subscriptions.rs"
                ));
            }
            pub mod server_features {
                include!(concat!(
                    env!("OUT_DIR"),
                    "/event_store.client.server_features.rs"
                ));
            }
        }
    }
    pub mod google {
        pub mod rpc {
            include!(concat!(env!("OUT_DIR"), "/google.rpc.rs"));
        }
    }
    pub use event_store::client::*;
}

/// Serves the gRPC protocol on `listener` (over TLS with `tls`) until the HTTP side
/// of the server shuts down (`state.closing`); subscriptions end then, and calls
/// under way finish.
pub(crate) async fn serve(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> Result<(), tonic::transport::Error> {
    let address = listener.local_addr().ok();
    let mut closing = state.closing.subscribe();
    let shutdown = async move {
        let _ = closing.wait_for(|closing| *closing).await;
    };
    let node = cluster::Node::new(state.clone(), address);
    let router = tonic::transport::Server::builder()
        .add_service(proto::streams::streams_server::StreamsServer::new(
            streams::StreamsService::new(state.clone()),
        ))
        .add_service(
            proto::persistent_subscriptions::persistent_subscriptions_server::PersistentSubscriptionsServer::new(
                persistent::PersistentService::new(state.clone()),
            ),
        )
        .add_service(proto::gossip::gossip_server::GossipServer::new(
            node.clone(),
        ))
        .add_service(
            proto::server_features::server_features_server::ServerFeaturesServer::new(node),
        );
    match tls {
        None => {
            // Answers go out at once (no Nagle delay waiting for the client's ack), as
            // on the HTTP side.
            let incoming = tokio_stream::StreamExt::map(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                |accepted| {
                    if let Ok(tcp) = &accepted
                        && let Err(error) = tcp.set_nodelay(true)
                    {
                        tracing::debug!(%error, "cannot set TCP_NODELAY");
                    }
                    accepted
                },
            );
            router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
        Some(tls) => {
            let handshake_max =
                std::time::Duration::from_millis(state.config.header_read_timeout_ms);
            let incoming = tls::incoming(listener, tls, handshake_max, state.closing.subscribe());
            router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
    }
}

/// The caller of a call, from its `authorization` metadata: `Basic` credentials (the
/// user's name and token as the password, as KurrentDB's clients send them) or a
/// `Bearer` token. Without auth configured, every caller is an administrator.
fn principal(state: &AppState, metadata: &MetadataMap) -> Result<Principal, tonic::Status> {
    principal_of(state.config.auth.as_ref(), metadata)
}

fn principal_of(
    auth: Option<&crate::AuthConfig>,
    metadata: &MetadataMap,
) -> Result<Principal, tonic::Status> {
    let Some(auth) = auth else {
        return Ok(Principal::insecure());
    };
    let Some(value) = metadata.get("authorization") else {
        return Err(tonic::Status::unauthenticated(
            "this server needs credentials: connect with a user name and its token as the \
             password (kurrentdb://NAME:TOKEN@host:port)",
        ));
    };
    let value = value
        .to_str()
        .map_err(|_| tonic::Status::unauthenticated("the authorization metadata is not text"))?;
    let refused = || tonic::Status::unauthenticated("unknown user or token");
    if let Some(token) = value.strip_prefix("Bearer ") {
        return auth
            .user(token.trim())
            .map(|p| (*p).clone())
            .ok_or_else(refused);
    }
    let Some(encoded) = value.strip_prefix("Basic ") else {
        return Err(tonic::Status::unauthenticated(
            "authorization must be 'Basic <credentials>' or 'Bearer <token>'",
        ));
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| {
            tonic::Status::unauthenticated("the Basic credentials are not Base64 text")
        })?;
    let (name, token) = decoded.split_once(':').ok_or_else(refused)?;
    match auth.user(token) {
        Some(principal) if principal.name == name => Ok((*principal).clone()),
        _ => Err(refused()),
    }
}

/// An API error as a gRPC status: the HTTP status's counterpart, with the message.
fn status(error: ApiError) -> tonic::Status {
    use axum::http::StatusCode as Http;
    let message = error.body().message.clone();
    match error.status() {
        Http::UNAUTHORIZED => tonic::Status::unauthenticated(message),
        Http::FORBIDDEN => tonic::Status::permission_denied(message),
        Http::NOT_FOUND => tonic::Status::not_found(message),
        Http::CONFLICT | Http::GONE | Http::PRECONDITION_FAILED => {
            tonic::Status::failed_precondition(message)
        }
        Http::TOO_MANY_REQUESTS => tonic::Status::resource_exhausted(message),
        Http::SERVICE_UNAVAILABLE => tonic::Status::unavailable(message),
        status if status.is_client_error() => tonic::Status::invalid_argument(message),
        _ => tonic::Status::internal(message),
    }
}

/// A store error as a gRPC status (through the HTTP API's table of codes).
fn store_status(error: eventfold_core::Error) -> tonic::Status {
    status(ApiError::from(error))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(authorization: Option<&str>) -> MetadataMap {
        let mut map = MetadataMap::new();
        if let Some(value) = authorization {
            map.insert("authorization", value.parse().unwrap());
        }
        map
    }

    fn basic(credentials: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        )
    }

    #[test]
    fn callers_are_our_users_by_name_and_token() {
        let auth = crate::AuthConfig::from_toml(
            r#"
            [[users]]
            name = "ann"
            token = "a-token-of-ann-0123"
            roles = ["ops"]
            "#,
        )
        .unwrap();
        let auth = Some(&auth);
        let ann = principal_of(auth, &metadata(Some(&basic("ann:a-token-of-ann-0123")))).unwrap();
        assert_eq!(
            (ann.name.as_str(), ann.roles.as_slice()),
            ("ann", &["ops".to_string()][..])
        );
        let bearer = principal_of(auth, &metadata(Some("Bearer a-token-of-ann-0123"))).unwrap();
        assert_eq!(bearer.name, "ann");

        for refused in [
            None,
            Some(basic("bob:a-token-of-ann-0123")),
            Some(basic("ann:wrong")),
            Some(basic("no colon")),
            Some("Basic !!!".to_string()),
            Some("Digest x".to_string()),
        ] {
            let status = principal_of(auth, &metadata(refused.as_deref())).unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{refused:?}");
        }
        let missing = principal_of(auth, &metadata(None)).unwrap_err();
        assert!(missing.message().contains("NAME:TOKEN"), "{missing:?}");

        // Without users configured, everyone is an administrator (development mode).
        assert!(principal_of(None, &metadata(None)).unwrap().is_admin());
    }

    #[test]
    fn api_errors_become_the_statuses_clients_expect() {
        use eventfold_wire::ErrorCode;
        for (code, expected) in [
            (ErrorCode::AccessDenied, tonic::Code::PermissionDenied),
            (ErrorCode::Unauthorized, tonic::Code::Unauthenticated),
            (ErrorCode::InvalidEvent, tonic::Code::InvalidArgument),
            (ErrorCode::TooLarge, tonic::Code::InvalidArgument),
        ] {
            let status = status(ApiError::new(code, "why"));
            assert_eq!(status.code(), expected, "{code:?}");
            assert_eq!(status.message(), "why");
        }
        let missing = store_status(eventfold_core::Error::StreamNotFound { stream: "s".into() });
        assert_eq!(missing.code(), tonic::Code::NotFound);
    }
}
