//! What clients ask on connect: the cluster's members (`Gossip.Read`), answered as one
//! node that leads and is alive, and the calls the server supports
//! (`ServerFeatures.GetSupportedMethods`).

use std::net::SocketAddr;
use std::sync::Arc;

use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::proto::gossip::{ClusterInfo, EndPoint, MemberInfo, gossip_server::Gossip, member_info};
use super::proto::server_features::{
    SupportedMethod, SupportedMethods, server_features_server::ServerFeatures,
};
use super::{principal, proto};
use crate::state::AppState;

/// The version of KurrentDB's protocol whose calls eventfold answers, as clients read
/// it to choose among their code paths (batch appends came in 21.10).
const PROTOCOL_VERSION: &str = "24.10.0";

/// The calls answered, as `(service, method, features)`.
const SUPPORTED: &[(&str, &str, &[&str])] = &[
    (
        "event_store.client.streams.streams",
        "read",
        &["position", "events"],
    ),
    ("event_store.client.streams.streams", "append", &[]),
    ("event_store.client.streams.streams", "batchappend", &[]),
    ("event_store.client.streams.streams", "delete", &[]),
    ("event_store.client.streams.streams", "tombstone", &[]),
    ("event_store.client.gossip.gossip", "read", &[]),
    (
        "event_store.client.persistent_subscriptions.persistentsubscriptions",
        "create",
        &["stream", "all"],
    ),
    (
        "event_store.client.persistent_subscriptions.persistentsubscriptions",
        "update",
        &["stream", "all"],
    ),
    (
        "event_store.client.persistent_subscriptions.persistentsubscriptions",
        "delete",
        &["stream", "all"],
    ),
    (
        "event_store.client.persistent_subscriptions.persistentsubscriptions",
        "read",
        &["stream", "all"],
    ),
    (
        "event_store.client.persistent_subscriptions.persistentsubscriptions",
        "getinfo",
        &["stream", "all"],
    ),
    (
        "event_store.client.persistent_subscriptions.persistentsubscriptions",
        "replayparked",
        &["stream", "all"],
    ),
    (
        "event_store.client.persistent_subscriptions.persistentsubscriptions",
        "list",
        &["stream", "all"],
    ),
    (
        "event_store.client.server_features.serverfeatures",
        "getsupportedmethods",
        &[],
    ),
];

/// This server as a member of a cluster of one.
#[derive(Clone)]
pub(super) struct Node {
    state: Arc<AppState>,
    id: Uuid,
    address: Option<SocketAddr>,
}

impl Node {
    pub(super) fn new(state: Arc<AppState>, address: Option<SocketAddr>) -> Self {
        Node {
            state,
            id: Uuid::new_v4(),
            address,
        }
    }
}

#[tonic::async_trait]
impl Gossip for Node {
    async fn read(&self, request: Request<proto::Empty>) -> Result<Response<ClusterInfo>, Status> {
        principal(&self.state, request.metadata())?;
        let ticks = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos() / 100).unwrap_or(i64::MAX));
        let end_point = self.address.map(|address| EndPoint {
            address: address.ip().to_string(),
            port: u32::from(address.port()),
        });
        Ok(Response::new(ClusterInfo {
            members: vec![MemberInfo {
                instance_id: Some(super::events::wire_uuid(self.id, false)),
                time_stamp: ticks,
                state: member_info::VNodeState::Leader.into(),
                is_alive: true,
                http_end_point: end_point,
            }],
        }))
    }
}

#[tonic::async_trait]
impl ServerFeatures for Node {
    async fn get_supported_methods(
        &self,
        _request: Request<proto::Empty>,
    ) -> Result<Response<SupportedMethods>, Status> {
        let methods = SUPPORTED
            .iter()
            .map(|(service, method, features)| SupportedMethod {
                method_name: method.to_string(),
                service_name: service.to_string(),
                features: features.iter().map(|f| f.to_string()).collect(),
            })
            .collect();
        Ok(Response::new(SupportedMethods {
            methods,
            event_store_server_version: PROTOCOL_VERSION.to_string(),
        }))
    }
}
