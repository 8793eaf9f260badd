//! `--versions` of the commands that hand events to a reader (`read`, `tail`,
//! `replay`): the events converted, through the converters of the store's schema
//! registry, to the versions the reader understands, as the server does for its
//! clients.

use std::sync::Arc;

use anyhow::Context;
use eventfold_core::{EventStore, RecordedEvent};
use eventfold_schema::{SchemaStore, Target};

/// The versions a reader understands.
#[derive(Debug, Clone, clap::Args)]
pub struct VersionsArg {
    /// Convert events to the versions this reader understands: `TypeA:1,TypeB:3`
    /// (types not listed at their newest version), `newest`, or `stored` (as stored,
    /// the default), through the converters registered in the store's schema registry.
    /// With --server the registry is read from the server (an administrator's token).
    #[arg(long, value_name = "VERSIONS", default_value = "stored", value_parser = Target::parse)]
    versions: Target,
}

/// Converts pages of events to the versions a reader asked for.
pub struct Converter {
    /// `None` when the reader takes events as stored.
    schemas: Option<SchemaStore<dyn EventStore>>,
    target: Target,
}

impl Converter {
    /// The converter of `versions` over `store`'s registry (loaded only when events
    /// are to be converted).
    pub async fn open(store: &Arc<dyn EventStore>, versions: &VersionsArg) -> anyhow::Result<Self> {
        let target = versions.versions.clone();
        let schemas = match target {
            Target::Stored => None,
            _ => Some(
                SchemaStore::open(store.clone())
                    .await
                    .context("cannot load the store's schema registry to convert with")?,
            ),
        };
        Ok(Converter { schemas, target })
    }

    /// `events` converted, in order (a converter may drop an event or split it).
    pub async fn convert(&self, events: Vec<RecordedEvent>) -> anyhow::Result<Vec<RecordedEvent>> {
        match &self.schemas {
            None => Ok(events),
            Some(schemas) => Ok(schemas.convert(events, &self.target).await?),
        }
    }
}
