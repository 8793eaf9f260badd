//! The capability of a store that forwards to a server: the server's own admin calls.
//!
//! Stream metadata and deletion are policy kept by the metadata layer
//! (`eventfold-metadata`), which writes system events (`$metadata`, the tombstone).
//! No wire format carries a system write, so a store that talks to a server (the HTTP
//! client) cannot take them; it offers this instead, through
//! [`EventStore::remote_admin`](crate::EventStore::remote_admin), and the server's own
//! layers write the system events. Core knows a stream's metadata only as the JSON
//! document its `$metadata` event holds: what the fields mean is the metadata crate's.

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::Result;
use crate::store::AppendResult;
use crate::stream::{ExpectedVersion, Position, Revision};

/// A stream's metadata document as a server holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteMetadata {
    /// Revision of the `$metadata` event in `$$<stream>` (`None`: none was set).
    pub revision: Option<Revision>,
    /// The metadata as JSON (an object; `{}` when none was set).
    pub document: Bytes,
}

/// What a remote delete did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteDeleted {
    /// The stream's last revision before the delete.
    pub last_revision: Revision,
    /// Global position of the event the delete wrote.
    pub position: Position,
}

/// The admin calls of a server that applies stream metadata itself.
#[async_trait]
pub trait RemoteAdmin: Send + Sync {
    /// The stream's metadata.
    async fn metadata(&self, stream: &str) -> Result<RemoteMetadata>;

    /// Replaces the stream's metadata with `document` (JSON), if its metadata revision
    /// matches `expected`.
    async fn set_metadata(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        document: Bytes,
    ) -> Result<AppendResult>;

    /// Deletes the stream if it matches `expected`; `hard` writes a tombstone.
    async fn delete(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        hard: bool,
    ) -> Result<RemoteDeleted>;
}
