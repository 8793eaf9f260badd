//! The inventory's events, version by version, and their registration.
//!
//! `InventoryItemDeactivated` v1 recorded `{"id"}`. v2 records `{"itemId", "reason"}`.
//! Every v1 event converts to v2 (its reason was not recorded, and the upcast says so
//! rather than invent one) and back (the downcast drops the reason), so it is a new
//! version of the same fact, not a new event type.

use eventfold::{EventData, EventStore};
use eventfold_schema::{Registered, SchemaStore, VersionDefinition};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The type whose shape changed.
pub const DEACTIVATED: &str = "InventoryItemDeactivated";
/// A type that never changed.
pub const CREATED: &str = "InventoryItemCreated";

/// `InventoryItemCreated` v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemCreated {
    pub id: String,
    pub name: String,
}

/// `InventoryItemDeactivated` v1, as the first release wrote it and old consumers
/// read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeactivatedV1 {
    pub id: String,
}

/// `InventoryItemDeactivated` v2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeactivatedV2 {
    pub item_id: String,
    pub reason: String,
}

/// What a v1 event says in v2: its reason was not recorded.
pub const REASON_NOT_RECORDED: &str = "not recorded";

/// The stored form of an `InventoryItemCreated`.
pub fn created(id: &str, name: &str) -> anyhow::Result<EventData> {
    let data = ItemCreated {
        id: id.into(),
        name: name.into(),
    };
    Ok(EventData::json(CREATED, &data)?)
}

/// The stored form of a v1 `InventoryItemDeactivated` (what old producers write).
pub fn deactivated_v1(id: &str) -> anyhow::Result<EventData> {
    Ok(EventData::json(DEACTIVATED, &DeactivatedV1 { id: id.into() })?.with_version(1))
}

/// The stored form of a v2 `InventoryItemDeactivated` (what new producers write).
pub fn deactivated_v2(item_id: &str, reason: &str) -> anyhow::Result<EventData> {
    let data = DeactivatedV2 {
        item_id: item_id.into(),
        reason: reason.into(),
    };
    Ok(EventData::json(DEACTIVATED, &data)?.with_version(2))
}

/// v1's schema: the id is all there is.
pub fn v1_definition() -> VersionDefinition {
    VersionDefinition::with_schema(json!({
        "type": "object",
        "required": ["id"],
        "properties": {"id": {"type": "string"}}
    }))
}

/// v2: a hybrid schema (what it cannot do without is required, the rest optional,
/// unknown fields allowed) and jq converters from and to v1, so that the server and
/// the CLI convert for consumers in any language.
pub fn v2_definition() -> VersionDefinition {
    VersionDefinition {
        schema: Some(json!({
            "type": "object",
            "required": ["itemId"],
            "properties": {"itemId": {"type": "string"}, "reason": {"type": "string"}}
        })),
        upcast: Some(format!(
            r#"{{itemId: .id, reason: "{REASON_NOT_RECORDED}"}}"#
        )),
        downcast: Some("{id: .itemId}".into()),
        ..VersionDefinition::default()
    }
}

/// Registers both versions in the store's schema registry. The registry checks the
/// converters on the events already stored before it accepts them.
pub async fn register_versions(
    schemas: &SchemaStore<dyn EventStore>,
) -> anyhow::Result<[Registered; 2]> {
    Ok([
        schemas.register(DEACTIVATED, 1, v1_definition()).await?,
        schemas.register(DEACTIVATED, 2, v2_definition()).await?,
    ])
}
