//! `eventfold bench upcast`: decoding an event stored at v1 through a chain of three
//! upcasts (v1 → v2 → v3 → v4) beside plain decoding of the same event stored at v4,
//! both into the newest Rust type, by each of the ways the schema crate offers: typed
//! Rust functions, Rust converters on the JSON tree, and jq programs (what the server
//! and the CLI run). Our target: the chain costs less than twice the plain decoding.
//!
//! The paths are timed by turns, in rounds of a few thousand decodings each, for as
//! long as asked; each path's figure is the median of its rounds, so that a moment
//! of noise on a shared machine moves one round, not the figure.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use eventfold_core::{Position, RecordedEvent, Revision};
use eventfold_schema::{EventVersion, Registry, TypedDecoder, VersionDefinition};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::bench::Figure;

/// Our target (docs/performance.md): a chain of three upcasts < 2 × plain decoding.
const TARGET_RATIO: f64 = 2.0;
/// Decodings per round of one path.
const ROUND_DECODINGS: u32 = 2_000;

/// Measure decoding through three upcasts beside plain decoding.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seconds spent in all, shared by the paths.
    #[arg(long, default_value_t = 6.0)]
    seconds: f64,
    /// Print the figures as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
pub(super) struct Report {
    /// Nanoseconds per decoding of the event stored at the newest version.
    plain_ns: f64,
    /// Each path: its name, nanoseconds per decoding, its ratio to plain, whether the
    /// target applies to it.
    paths: Vec<PathFigure>,
}

#[derive(Debug, Serialize)]
struct PathFigure {
    name: &'static str,
    ns: f64,
    ratio: f64,
    chain: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let report = measure(&args)?;
    super::bench::print_report(&report, &report.figures(), args.json)
}

impl Report {
    pub(super) fn figures(&self) -> Vec<Figure> {
        self.paths
            .iter()
            .map(|path| Figure {
                name: format!("decode: {}", path.name),
                value: path.ns,
                unit: "ns",
                ratio: path.ratio,
                ratio_of: "ns per decoding ÷ ns of plain decoding (stored at v4, serde_json into the v4 type), timed by turns",
                target: if path.chain {
                    format!("< {TARGET_RATIO} × plain")
                } else {
                    String::new()
                },
                met: path.chain.then_some(path.ratio < TARGET_RATIO),
            })
            .collect()
    }
}

/// One decoding of a path, its result kept from the optimiser.
type Decode<'a> = Box<dyn Fn() -> anyhow::Result<()> + 'a>;

fn timed<'a, T, E: Into<anyhow::Error>>(decode: impl Fn() -> Result<T, E> + 'a) -> Decode<'a> {
    Box::new(move || {
        black_box(decode().map_err(Into::into)?);
        Ok(())
    })
}

/// Times every path by turns for `args.seconds`.
pub(super) fn measure(args: &Args) -> anyhow::Result<Report> {
    let plain = stored(4, v4());
    let old = stored(1, v1());
    let rust = rust_chain()?;
    let jq = jq_chain()?;
    let typed = typed_chain();
    // Every chain gives the v4 shape that plain decoding gives.
    let expected = format!("{:?}", serde_json::from_slice::<OrderShipped>(&plain.data)?);
    let via_rust: Vec<OrderShipped> = rust.decode(&old)?;
    let via_jq: Vec<OrderShipped> = jq.decode(&old)?;
    let via_typed = typed.decode(&old)?;
    for (path, got, want) in [
        (
            "Rust converters",
            format!("{via_rust:?}"),
            format!("[{expected}]"),
        ),
        (
            "jq converters",
            format!("{via_jq:?}"),
            format!("[{expected}]"),
        ),
        (
            "typed chain",
            format!("{via_typed:?}"),
            format!("[{expected}]"),
        ),
    ] {
        anyhow::ensure!(
            got == want,
            "the {path} decode the v1 event as {got}, not {want}"
        );
    }

    let paths: Vec<(&'static str, bool, Decode)> = vec![
        (
            "plain, stored at v4",
            false,
            timed(|| serde_json::from_slice::<OrderShipped>(black_box(&plain.data))),
        ),
        (
            "stored at v4, into a JSON tree",
            false,
            timed(|| serde_json::from_slice::<Value>(black_box(&plain.data))),
        ),
        (
            "registry, stored at the newest version",
            false,
            timed(|| rust.decode::<OrderShipped>(black_box(&plain))),
        ),
        (
            "typed chain v1 → v4 (TypedDecoder)",
            true,
            timed(|| typed.decode(black_box(&old))),
        ),
        (
            "registry, Rust converters v1 → v4",
            true,
            timed(|| rust.decode::<OrderShipped>(black_box(&old))),
        ),
        (
            "registry, jq converters v1 → v4",
            true,
            timed(|| jq.decode::<OrderShipped>(black_box(&old))),
        ),
    ];
    let mut rounds: Vec<Vec<f64>> = vec![Vec::new(); paths.len()];
    let budget = Duration::from_secs_f64(args.seconds);
    let started = Instant::now();
    // At least three rounds of each path, then as many as the time allows.
    while rounds[0].len() < 3 || started.elapsed() < budget {
        for ((_, _, decode), times) in paths.iter().zip(&mut rounds) {
            let round = Instant::now();
            for _ in 0..ROUND_DECODINGS {
                decode()?;
            }
            times.push(round.elapsed().as_nanos() as f64 / f64::from(ROUND_DECODINGS));
        }
    }
    let medians: Vec<f64> = rounds
        .iter_mut()
        .map(|times| {
            times.sort_by(f64::total_cmp);
            times[times.len() / 2]
        })
        .collect();
    let plain_ns = medians[0];
    Ok(Report {
        plain_ns,
        paths: paths
            .iter()
            .zip(medians)
            .map(|((name, chain, _), ns)| PathFigure {
                name,
                ns,
                ratio: ns / plain_ns,
                chain: *chain,
            })
            .collect(),
    })
}

/// The newest shape (v4): about 200 bytes of JSON.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code, reason = "fields are decoded, not read")]
struct OrderShipped {
    order_id: String,
    carrier: String,
    tracking_number: String,
    weight_grams: u64,
    address: Address,
    shipped_at: String,
    #[serde(default)]
    gift: bool,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code, reason = "fields are decoded, not read")]
struct Address {
    street: String,
    city: String,
    country: String,
}

fn stored(version: u32, data: Value) -> RecordedEvent {
    RecordedEvent {
        stream: "order-1".into(),
        revision: Revision(0),
        position: Position(0),
        id: uuid::Uuid::now_v7(),
        event_type: "OrderShipped".into(),
        version,
        data: Bytes::from(data.to_string()),
        metadata: Bytes::from_static(b"{}"),
        recorded_at: chrono::Utc::now(),
    }
}

fn v1() -> Value {
    json!({"order": "order-8c1f2a", "carrier": "PostNL", "tracking": "3SABCD0123456789",
           "weight_kg": 1.25, "street": "Kerkstraat 12", "city": "Gent", "country": "BE",
           "shipped_at": "2026-11-23T10:00:00Z"})
}

fn v4() -> Value {
    json!({"orderId": "order-8c1f2a", "carrier": "PostNL", "trackingNumber": "3SABCD0123456789",
           "weightGrams": 1250, "address": {"street": "Kerkstraat 12", "city": "Gent", "country": "BE"},
           "shippedAt": "2026-11-23T10:00:00Z", "gift": false})
}

fn rename(object: &mut serde_json::Map<String, Value>, from: &str, to: &str) {
    if let Some(value) = object.remove(from) {
        object.insert(to.into(), value);
    }
}

/// Three Rust upcasters, each moving fields in place.
fn rust_chain() -> anyhow::Result<Registry> {
    let mut registry = Registry::new();
    let step = |from: u32| {
        (
            EventVersion::new("OrderShipped", from),
            EventVersion::new("OrderShipped", from + 1),
        )
    };
    let (a, b) = step(1);
    registry.upcast_fn(a, b, |mut data| {
        let object = data.as_object_mut().ok_or("not an object")?;
        rename(object, "order", "orderId");
        rename(object, "tracking", "trackingNumber");
        Ok(vec![data])
    });
    let (a, b) = step(2);
    registry.upcast_fn(a, b, |mut data| {
        let object = data.as_object_mut().ok_or("not an object")?;
        let kg = object
            .remove("weight_kg")
            .and_then(|v| v.as_f64())
            .unwrap_or(0.0);
        object.insert("weightGrams".into(), json!((kg * 1000.0).round() as u64));
        rename(object, "shipped_at", "shippedAt");
        Ok(vec![data])
    });
    let (a, b) = step(3);
    registry.upcast_fn(a, b, |mut data| {
        let object = data.as_object_mut().ok_or("not an object")?;
        let mut address = serde_json::Map::new();
        for key in ["street", "city", "country"] {
            if let Some(value) = object.remove(key) {
                address.insert(key.into(), value);
            }
        }
        object.insert("address".into(), Value::Object(address));
        Ok(vec![data])
    });
    for version in 2..=4 {
        registry.define("OrderShipped", version, VersionDefinition::default())?;
    }
    Ok(registry)
}

/// The same chain as jq programs, as the server and CLI run it.
fn jq_chain() -> anyhow::Result<Registry> {
    let mut registry = Registry::new();
    let programs = [
        "(. + {orderId: .order, trackingNumber: .tracking}) | del(.order, .tracking)",
        "(. + {weightGrams: ((.weight_kg * 1000) | round), shippedAt: .shipped_at}) | del(.weight_kg, .shipped_at)",
        "(. + {address: {street, city, country}}) | del(.street, .city, .country)",
    ];
    for (i, program) in programs.into_iter().enumerate() {
        registry.define(
            "OrderShipped",
            i as u32 + 2,
            VersionDefinition {
                upcast: Some(program.into()),
                ..VersionDefinition::default()
            },
        )?;
    }
    Ok(registry)
}

#[derive(Deserialize)]
struct V1 {
    order: String,
    carrier: String,
    tracking: String,
    weight_kg: f64,
    street: String,
    city: String,
    country: String,
    shipped_at: String,
}

#[derive(Deserialize)]
struct V2 {
    #[serde(rename = "orderId")]
    order_id: String,
    carrier: String,
    #[serde(rename = "trackingNumber")]
    tracking_number: String,
    weight_kg: f64,
    street: String,
    city: String,
    country: String,
    shipped_at: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct V3 {
    order_id: String,
    carrier: String,
    tracking_number: String,
    weight_grams: u64,
    street: String,
    city: String,
    country: String,
    shipped_at: String,
}

/// The same chain as Rust types, one per version.
fn typed_chain() -> TypedDecoder<OrderShipped, V1> {
    TypedDecoder::<OrderShipped>::newest("OrderShipped", 4)
        .before(|v3: V3| OrderShipped {
            order_id: v3.order_id,
            carrier: v3.carrier,
            tracking_number: v3.tracking_number,
            weight_grams: v3.weight_grams,
            address: Address {
                street: v3.street,
                city: v3.city,
                country: v3.country,
            },
            shipped_at: v3.shipped_at,
            gift: false,
        })
        .before(|v2: V2| V3 {
            order_id: v2.order_id,
            carrier: v2.carrier,
            tracking_number: v2.tracking_number,
            weight_grams: (v2.weight_kg * 1000.0).round() as u64,
            street: v2.street,
            city: v2.city,
            country: v2.country,
            shipped_at: v2.shipped_at,
        })
        .before(|v1: V1| V2 {
            order_id: v1.order,
            carrier: v1.carrier,
            tracking_number: v1.tracking,
            weight_kg: v1.weight_kg,
            street: v1.street,
            city: v1.city,
            country: v1.country,
            shipped_at: v1.shipped_at,
        })
}
