//! Event versioning for eventfold: a schema registry per event type and version
//! (JSON Schemas, converters in jq and in Rust), conversion of stored events to the
//! newest or to a requested version, weak-schema decoding into Rust types, a
//! pass-through wrapper for enrichers, and [`SchemaLayer`]: validation of appends as a
//! layer over any store.
//!
//! Architecture invariant: the stored log is never rewritten. Conversion happens on
//! the way out, and the registry itself is kept as events in the `$schemas` stream.
//!
//! ```
//! use eventfold_schema::{Registry, Target, VersionDefinition};
//! use serde_json::json;
//!
//! // v1 {id} became v2 {itemId, reason}; reason was not recorded before v2.
//! let mut registry = Registry::new();
//! registry.define("InventoryItemDeactivated", 2, VersionDefinition {
//!     schema: Some(json!({"type": "object", "required": ["itemId"]})),
//!     upcast: Some(r#"{itemId: .id, reason: "not recorded"}"#.into()),
//!     downcast: Some("{id: .itemId}".into()),
//!     ..Default::default()
//! }).unwrap();
//! let new = registry
//!     .convert_value("InventoryItemDeactivated", 1, json!({"id": "sku-1"}), &Target::Newest)
//!     .unwrap();
//! assert_eq!(new[0].data, json!({"itemId": "sku-1", "reason": "not recorded"}));
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod convert;
mod definition;
mod error;
mod fold;
mod jq;
mod jq_threads;
mod layer;
mod registry;
mod store;
mod typed;
mod weak;

pub use convert::{Converted, Target};
pub use definition::{
    EventVersion, PersonalDeclaration, REGISTRATION_EVENT_TYPE, Registration, SCHEMAS_STREAM,
    VersionDefinition,
};
pub use error::{Result, SchemaError};
pub use fold::{
    Fold, FoldDefinition, FoldedState, PROJECTION_REGISTERED_EVENT_TYPE, PROJECTIONS_STREAM,
};
pub use jq::{
    JQ_PROGRAM_BYTES_MAX, JQ_STACK_BYTES_MAX, JQ_VALUE_DEPTH_MAX, JqError, JqLimit, JqLimits,
    JqProgram, OUTPUTS_MAX,
};
pub use layer::SchemaLayer;
pub use registry::{ConvertFn, Registry, TypeSummary, TypeVersions, VersionEntry};
pub use store::{CheckOptions, Negotiated, Registered, SchemaStore, convert_all};
pub use typed::TypedDecoder;
pub use weak::{PassThrough, decode};

/// The Rust examples of `docs/versioning.md`, run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/versioning.md")]
pub struct VersioningGuide;
