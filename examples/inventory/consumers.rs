//! The consumers of deactivations: the old one was written against v1, the new one
//! against v2. Each declares the version it understands and reads the whole history,
//! whatever version each event was stored at: in Rust through the schema registry,
//! or over HTTP like a program in any language would.

use eventfold::{EventStore, Position};
use eventfold_core::{AllFilter, ReadAll};
use eventfold_schema::{SchemaStore, Target, convert_all};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::contract::{DEACTIVATED, DeactivatedV1, DeactivatedV2};

/// Events read per page.
const PAGE_EVENTS: u64 = 100;

/// A consumer's idea of a deactivation: the version it was written against.
pub trait Deactivation: DeserializeOwned + std::fmt::Debug + Send {
    /// The schema version the consumer declares.
    const VERSION: u32;

    /// One line of the consumer's report.
    fn report(&self) -> String;
}

impl Deactivation for DeactivatedV1 {
    const VERSION: u32 = 1;

    fn report(&self) -> String {
        self.id.clone()
    }
}

impl Deactivation for DeactivatedV2 {
    const VERSION: u32 = 2;

    fn report(&self) -> String {
        format!("{} ({})", self.item_id, self.reason)
    }
}

/// Every deactivation of the history, through the Rust API: the stored events are
/// read from `$all` and converted by the registry to the version `D` declares.
pub async fn read_in_rust<D: Deactivation>(
    schemas: &SchemaStore<dyn EventStore>,
) -> anyhow::Result<Vec<D>> {
    let target = Target::version(DEACTIVATED, D::VERSION);
    let filter = AllFilter {
        event_types: vec![DEACTIVATED.into()],
        ..AllFilter::default()
    };
    let mut deactivations = Vec::new();
    let mut from = Position::START;
    loop {
        let page = schemas
            .store()
            .read_all(ReadAll::from(from, PAGE_EVENTS).filtered(filter.clone()))
            .await?;
        for event in convert_all(&schemas.registry(), page.events, &target)? {
            anyhow::ensure!(event.version == D::VERSION, "{event:?} was not converted");
            deactivations.push(eventfold_schema::decode(
                &event.event_type,
                event.version,
                &event.data,
            )?);
        }
        if page.end_of_log {
            return Ok(deactivations);
        }
        from = page.next;
    }
}

/// Where a stored event is, as `GET /all` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub stream: String,
    pub revision: u64,
    /// The version it is stored at.
    pub version: u32,
}

/// Every deactivation of the history, over HTTP: `GET /all?type=…` lists them as
/// stored, then each is fetched with `Accept: application/vnd.eventfold.v<N>+json`
/// and arrives converted to the version `D` declares.
pub async fn read_over_http<D: Deactivation>(base_url: &str) -> anyhow::Result<Vec<D>> {
    eventfold_client::install_crypto_provider();
    let client = reqwest::Client::new();
    let mut deactivations = Vec::new();
    for located in list_over_http(&client, base_url, None).await? {
        let url = format!("{base_url}/streams/{}/{}", located.stream, located.revision);
        let event = get_json(client.get(url).header(
            "Accept",
            format!("application/vnd.eventfold.v{}+json", D::VERSION),
        ))
        .await?;
        anyhow::ensure!(event["version"] == D::VERSION, "not converted: {event}");
        deactivations.push(serde_json::from_value(event["data"].clone())?);
    }
    Ok(deactivations)
}

/// Every deactivation of the history, over HTTP in one paged read that declares the
/// version once (`versions=InventoryItemDeactivated:<N>`), as a subscriber would.
pub async fn read_over_http_negotiated<D: Deactivation>(base_url: &str) -> anyhow::Result<Vec<D>> {
    eventfold_client::install_crypto_provider();
    let client = reqwest::Client::new();
    let versions = format!("{DEACTIVATED}:{}", D::VERSION);
    let mut deactivations = Vec::new();
    for event in read_all_over_http(&client, base_url, Some(&versions)).await? {
        anyhow::ensure!(event["version"] == D::VERSION, "not converted: {event}");
        deactivations.push(serde_json::from_value(event["data"].clone())?);
    }
    Ok(deactivations)
}

/// The deactivations as stored: where they are and at which version.
pub async fn list_over_http(
    client: &reqwest::Client,
    base_url: &str,
    versions: Option<&str>,
) -> anyhow::Result<Vec<Located>> {
    read_all_over_http(client, base_url, versions)
        .await?
        .into_iter()
        .map(|event| {
            Ok(Located {
                stream: event["stream"]
                    .as_str()
                    .ok_or_else(|| anyhow::anyhow!("no stream in {event}"))?
                    .to_string(),
                revision: event["revision"]
                    .as_u64()
                    .ok_or_else(|| anyhow::anyhow!("no revision in {event}"))?,
                version: event["version"]
                    .as_u64()
                    .and_then(|v| u32::try_from(v).ok())
                    .ok_or_else(|| anyhow::anyhow!("no version in {event}"))?,
            })
        })
        .collect()
}

/// `GET /all?type=InventoryItemDeactivated[&versions=…]`, every page.
async fn read_all_over_http(
    client: &reqwest::Client,
    base_url: &str,
    versions: Option<&str>,
) -> anyhow::Result<Vec<Value>> {
    let mut events = Vec::new();
    let mut from = 0;
    loop {
        let mut url = format!("{base_url}/all?type={DEACTIVATED}&from={from}&limit={PAGE_EVENTS}");
        if let Some(versions) = versions {
            url.push_str(&format!("&versions={versions}"));
        }
        let page = get_json(client.get(url)).await?;
        events.extend(page["events"].as_array().cloned().unwrap_or_default());
        if page["end_of_log"] != false {
            return Ok(events);
        }
        from = page["next"]
            .as_u64()
            .ok_or_else(|| anyhow::anyhow!("a page that is not the last has a next: {page}"))?;
    }
}

async fn get_json(request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
    let response = request.send().await?;
    let status = response.status();
    let body = response.bytes().await?;
    anyhow::ensure!(
        status.is_success(),
        "{status}: {}",
        String::from_utf8_lossy(&body)
    );
    Ok(serde_json::from_slice(&body)?)
}
