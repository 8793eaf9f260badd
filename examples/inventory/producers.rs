//! The producers: the first release writes `InventoryItemDeactivated` v1, the new
//! release writes v2, and for a while both run side by side.

use eventfold::{EventStore, ExpectedVersion, Position};
use eventfold_schema::SchemaStore;

use super::contract::{created, deactivated_v1, deactivated_v2};

/// Any release: an item is created (`InventoryItemCreated` never changed).
pub async fn create_item(store: &dyn EventStore, id: &str, name: &str) -> anyhow::Result<Position> {
    let written = store
        .append(id, ExpectedVersion::NoStream, vec![created(id, name)?])
        .await?;
    Ok(written.position)
}

/// The first release deactivates an item: `{"id"}`, version 1.
pub async fn old_release_deactivates(store: &dyn EventStore, id: &str) -> anyhow::Result<Position> {
    let written = store
        .append(id, ExpectedVersion::StreamExists, vec![deactivated_v1(id)?])
        .await?;
    Ok(written.position)
}

/// The new release deactivates an item: `{"itemId", "reason"}`, version 2. It appends
/// through the schema registry, which refuses data that does not match v2's schema.
pub async fn new_release_deactivates(
    schemas: &SchemaStore<dyn EventStore>,
    id: &str,
    reason: &str,
) -> anyhow::Result<Position> {
    let written = schemas
        .validating()
        .append(
            id,
            ExpectedVersion::StreamExists,
            vec![deactivated_v2(id, reason)?],
        )
        .await?;
    Ok(written.position)
}
