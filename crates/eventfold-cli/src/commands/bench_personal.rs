//! `eventfold bench personal`: appends and reads of events with one personal field
//! beside the same events without, in one run, on one store behind the privacy layer.
//!
//! Both kinds carry the same data (an email address and a payload, about 200 bytes);
//! the personal kind marks the email as personal in its metadata, so it is sealed with
//! its subject's key on append and opened on read. Appends come in two shapes: batches
//! of 1,000 events by one writer (one fsync each: the case where sealing weighs most)
//! and one event per append by one writer (each waits for its fsync, as a command
//! handler's append does). The two kinds are timed in alternating rounds, since the
//! disk's speed drifts within a run. Reads load every stream of 1,000 written, through
//! the layer. Every subject's key exists before the rounds start; the appends that make
//! them are timed on their own (the keys an append needs are written together, with
//! one sync).
//!
//! The cipher's own time per value (sealing and opening the benchmark's email with
//! AES-256-GCM-SIV, nothing else) is measured too, and with it the best ratio any
//! layer that seals each value could reach beside these plain figures: the plain time
//! per event divided by the plain time plus the cipher's.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use eventfold_core::{EventData, EventStore, ExpectedVersion, LayerExt, ReadStream};
use eventfold_log::{LogOptions, LogStore};
use eventfold_privacy::{DataKey, FileKeyStore, MasterKey, PrivacyLayer};
use serde::Serialize;

use super::bench::Figure;

/// Our target (docs/performance.md): personal ≥ 0.8 × plain, for appends and reads.
const TARGET_RATIO: f64 = 0.8;
const BATCH_EVENTS: u64 = 1_000;
/// What the ceilings divide.
const CEILING_OF: &str = "plain time per event ÷ (plain time + the cipher's time per value alone): the best ratio a layer sealing each value could reach";
/// Values sealed and opened to time the cipher alone.
const CIPHER_SAMPLES: u32 = 20_000;

/// Measure appends and reads of events with a personal field beside the same without.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Data directory to measure (the store is written in DIR/bench-personal).
    #[arg(long, env = "EVENTFOLD_DATA", value_name = "DIR")]
    data: PathBuf,
    /// Events of each kind appended per round.
    #[arg(long, default_value_t = 50_000)]
    events: u64,
    /// Rounds (each appends both kinds, alternating which goes first).
    #[arg(long, default_value_t = 4)]
    rounds: u64,
    /// Subjects the personal events are spread over.
    #[arg(long, default_value_t = 1_000)]
    subjects: u64,
    /// Events of each kind appended one per append, per round.
    #[arg(long, default_value_t = 500)]
    single_events: u64,
    /// Print the figures as JSON instead of lines of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
pub(super) struct Report {
    data_dir: String,
    events_per_kind: u64,
    new_subjects: u64,
    new_subjects_append_seconds: f64,
    append_plain_events_per_second: f64,
    append_personal_events_per_second: f64,
    append_ratio: f64,
    single_append_plain_events_per_second: f64,
    single_append_personal_events_per_second: f64,
    single_append_ratio: f64,
    read_plain_events_per_second: f64,
    read_personal_events_per_second: f64,
    read_ratio: f64,
    /// The cipher alone: sealing one value, and opening one, in nanoseconds.
    cipher_seal_nanoseconds: f64,
    cipher_open_nanoseconds: f64,
    /// The best ratios a layer that seals each value could reach beside the plain
    /// figures of this run (batches of 1,000; reads): the cipher's time and nothing else
    /// added to each plain event's.
    append_ratio_ceiling: f64,
    read_ratio_ceiling: f64,
    target_ratio: f64,
    append_target_met: bool,
    single_append_target_met: bool,
    read_target_met: bool,
}

/// One event of `kind`: the same data, personal or not.
fn event(n: u64, subjects: u64, personal: bool) -> EventData {
    let subject = n % subjects;
    let filler = "x".repeat(140);
    let data = format!(r#"{{"email":"person-{subject:06}@example.com","payload":"{filler}"}}"#);
    let metadata = if personal {
        format!(r#"{{"$personal":{{"subject":"subject-{subject:06}","fields":["/email"]}}}}"#)
    } else {
        "{}".to_string()
    };
    EventData {
        id: None,
        event_type: "BenchmarkRecorded".into(),
        version: 1,
        data: Bytes::from(data),
        metadata: Bytes::from(metadata),
    }
}

pub fn run(args: Args, runtime: &tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    let report = measure(&args, runtime)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let met = |yes: bool| if yes { "met" } else { "NOT met" };
        println!(
            "appends naming {} new subjects (their keys made): {:.1} ms",
            report.new_subjects,
            report.new_subjects_append_seconds * 1000.0
        );
        println!(
            "append, batches of 1,000: {:.0} events/s with one personal field, {:.0} without: \
             {:.2} × (target ≥ {TARGET_RATIO} ×: {})",
            report.append_personal_events_per_second,
            report.append_plain_events_per_second,
            report.append_ratio,
            met(report.append_target_met)
        );
        println!(
            "append, one event per append: {:.0} events/s with one personal field, {:.0} \
             without: {:.2} × (target ≥ {TARGET_RATIO} ×: {})",
            report.single_append_personal_events_per_second,
            report.single_append_plain_events_per_second,
            report.single_append_ratio,
            met(report.single_append_target_met)
        );
        println!(
            "read, streams of 1,000: {:.0} events/s with one personal field, {:.0} without: \
             {:.2} × (target ≥ {TARGET_RATIO} ×: {})",
            report.read_personal_events_per_second,
            report.read_plain_events_per_second,
            report.read_ratio,
            met(report.read_target_met)
        );
        println!(
            "the cipher alone: {:.0} ns to seal a value, {:.0} ns to open one; beside this \
             run's plain figures no layer sealing each value gets past {:.2} × for batches \
             or {:.2} × for reads",
            report.cipher_seal_nanoseconds,
            report.cipher_open_nanoseconds,
            report.append_ratio_ceiling,
            report.read_ratio_ceiling
        );
    }
    Ok(ExitCode::SUCCESS)
}

impl Report {
    /// The figures of `eventfold bench all`: appends and reads beside the same events
    /// without a personal field, in the same run.
    pub(super) fn figures(&self) -> Vec<Figure> {
        let target = format!("≥ {TARGET_RATIO} × without");
        vec![
            Figure {
                name: "append, 1 personal field, batches of 1,000".into(),
                value: self.append_personal_events_per_second,
                unit: "events/s",
                ratio: self.append_ratio,
                ratio_of: "events/s ÷ events/s of the same events without the personal marking, rounds alternating",
                target: target.clone(),
                met: Some(self.append_target_met),
            },
            Figure {
                name: "append, 1 personal field, one event per append".into(),
                value: self.single_append_personal_events_per_second,
                unit: "events/s",
                ratio: self.single_append_ratio,
                ratio_of: "events/s ÷ events/s of the same events without the personal marking, rounds alternating",
                target: target.clone(),
                met: Some(self.single_append_target_met),
            },
            Figure {
                name: "read, 1 personal field, streams of 1,000".into(),
                value: self.read_personal_events_per_second,
                unit: "events/s",
                ratio: self.read_ratio,
                ratio_of: "events/s ÷ events/s reading the same events without the personal marking",
                target,
                met: Some(self.read_target_met),
            },
            Figure {
                name: "the cipher alone: sealing 1 value (ratio: ceiling, batches)".into(),
                value: self.cipher_seal_nanoseconds,
                unit: "ns",
                ratio: self.append_ratio_ceiling,
                ratio_of: CEILING_OF,
                target: String::new(),
                met: None,
            },
            Figure {
                name: "the cipher alone: opening 1 value (ratio: ceiling, reads)".into(),
                value: self.cipher_open_nanoseconds,
                unit: "ns",
                ratio: self.read_ratio_ceiling,
                ratio_of: CEILING_OF,
                target: String::new(),
                met: None,
            },
        ]
    }
}

/// Whether each kind in turn is personal, in `round`: the two kinds take turns going
/// first, since the disk's speed drifts within a run.
fn turns(round: u64) -> [bool; 2] {
    if round.is_multiple_of(2) {
        [false, true]
    } else {
        [true, false]
    }
}

fn kind_name(personal: bool) -> &'static str {
    if personal { "personal" } else { "plain" }
}

/// Appends and reads both kinds of events in a store of their own.
pub(super) fn measure(args: &Args, runtime: &tokio::runtime::Runtime) -> anyhow::Result<Report> {
    let dir = args.data.join("bench-personal");
    let _ = std::fs::remove_dir_all(&dir);
    let (master, _) = MasterKey::generate()?;
    let log = LogStore::open(&dir, LogOptions::default())?;
    let keys = FileKeyStore::open(&dir.join("keys"), master)?;
    let store = Arc::new(log.layer(PrivacyLayer::new(Arc::new(keys))));
    let subjects = args.subjects.max(1);

    // Every subject's key made before the timing of the rounds; the appends that make
    // them (1,000 new subjects each, their keys written with one sync) are timed apart.
    let warm_up: Vec<EventData> = (0..subjects).map(|n| event(n, subjects, true)).collect();
    let started = Instant::now();
    for chunk in warm_up.chunks(BATCH_EVENTS as usize) {
        runtime.block_on(store.append("warm-up", ExpectedVersion::Any, chunk.to_vec()))?;
    }
    let new_subjects_time = started.elapsed();

    let batches = args.events.div_ceil(BATCH_EVENTS);
    let mut append_time = [Duration::ZERO; 2];
    let mut streams: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    for round in 0..args.rounds {
        for personal in turns(round) {
            let kind = usize::from(personal);
            let mut appended = Duration::ZERO;
            for batch in 0..batches {
                let stream = format!("{}-{round}-{batch}", kind_name(personal));
                let events: Vec<EventData> = (0..BATCH_EVENTS)
                    .map(|i| event(batch * BATCH_EVENTS + i, subjects, personal))
                    .collect();
                let started = Instant::now();
                runtime.block_on(store.append(&stream, ExpectedVersion::NoStream, events))?;
                appended += started.elapsed();
                streams[kind].push(stream);
            }
            append_time[kind] += appended;
        }
        if !args.json {
            eprintln!("… round {} of {}", round + 1, args.rounds);
        }
    }

    // One event per append: each waits for its own fsync.
    let mut single_time = [Duration::ZERO; 2];
    for round in 0..args.rounds {
        for personal in turns(round) {
            let kind = usize::from(personal);
            let stream = format!("single-{}-{round}", kind_name(personal));
            let events: Vec<EventData> = (0..args.single_events)
                .map(|n| event(n, subjects, personal))
                .collect();
            let started = Instant::now();
            for event in events {
                runtime.block_on(store.append(&stream, ExpectedVersion::Any, vec![event]))?;
            }
            single_time[kind] += started.elapsed();
        }
    }

    let mut read_time = [Duration::ZERO; 2];
    for (kind, names) in streams.iter().enumerate() {
        let started = Instant::now();
        for stream in names {
            let events = runtime.block_on(store.read_stream(stream, ReadStream::forward()))?;
            anyhow::ensure!(
                events.len() as u64 == BATCH_EVENTS,
                "read {} events of {stream}",
                events.len()
            );
        }
        read_time[kind] += started.elapsed();
    }
    // The personal reads opened every value: check one.
    let sample = runtime.block_on(store.read_stream(&streams[1][0], ReadStream::forward()))?;
    let opened: serde_json::Value = sample[0].data_as()?;
    anyhow::ensure!(
        opened["email"]
            .as_str()
            .is_some_and(|e| e.ends_with("@example.com")),
        "a personal value did not read back opened: {opened}"
    );

    let total = batches * BATCH_EVENTS * args.rounds;
    let rate = |time: Duration| total as f64 / time.as_secs_f64();
    let single_total = (args.single_events * args.rounds) as f64;
    let single_rate = |time: Duration| single_total / time.as_secs_f64();
    let (seal, open) = cipher_alone()?;
    let plain_append = append_time[0].as_secs_f64() / total as f64;
    let plain_read = read_time[0].as_secs_f64() / total as f64;
    let ratio = |times: [Duration; 2]| times[0].as_secs_f64() / times[1].as_secs_f64();
    let (append_ratio, single_ratio, read_ratio) =
        (ratio(append_time), ratio(single_time), ratio(read_time));
    let report = Report {
        data_dir: args.data.display().to_string(),
        events_per_kind: total,
        new_subjects: subjects,
        new_subjects_append_seconds: new_subjects_time.as_secs_f64(),
        append_plain_events_per_second: rate(append_time[0]),
        append_personal_events_per_second: rate(append_time[1]),
        append_ratio,
        single_append_plain_events_per_second: single_rate(single_time[0]),
        single_append_personal_events_per_second: single_rate(single_time[1]),
        single_append_ratio: single_ratio,
        read_plain_events_per_second: rate(read_time[0]),
        read_personal_events_per_second: rate(read_time[1]),
        read_ratio,
        cipher_seal_nanoseconds: seal.as_secs_f64() * 1e9,
        cipher_open_nanoseconds: open.as_secs_f64() * 1e9,
        append_ratio_ceiling: plain_append / (plain_append + seal.as_secs_f64()),
        read_ratio_ceiling: plain_read / (plain_read + open.as_secs_f64()),
        target_ratio: TARGET_RATIO,
        append_target_met: append_ratio >= TARGET_RATIO,
        single_append_target_met: single_ratio >= TARGET_RATIO,
        read_target_met: read_ratio >= TARGET_RATIO,
    };
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(report)
}

/// The cipher's own time per value: sealing, then opening, the benchmark's email value
/// (its JSON text, as the layer seals it) under one subject's key, with associated data
/// the size of the layer's, [`CIPHER_SAMPLES`] times each. Nothing else is timed: no
/// JSON, no base64, no key lookup.
fn cipher_alone() -> anyhow::Result<(Duration, Duration)> {
    let (key, _) = DataKey::generate()?;
    let value = br#""person-000001@example.com""#;
    // What the layer binds a value to: a prefix, the event id, the pointer.
    let aad = [7u8; 22 + 16 + 6];
    let nonce_of = |n: u32| {
        let mut nonce = [0u8; 12];
        nonce[..4].copy_from_slice(&n.to_le_bytes());
        nonce
    };
    let mut sealed = Vec::with_capacity(64);
    let started = Instant::now();
    for n in 0..CIPHER_SAMPLES {
        sealed.clear();
        key.seal_into(&nonce_of(n), value, &aad, &mut sealed)?;
    }
    let seal = started.elapsed() / CIPHER_SAMPLES;
    let stored: Vec<Vec<u8>> = (0..CIPHER_SAMPLES.min(1_000))
        .map(|n| {
            let mut one = Vec::new();
            key.seal_into(&nonce_of(n), value, &aad, &mut one)
                .map(|()| one)
        })
        .collect::<Result<_, _>>()?;
    let mut buffer = Vec::with_capacity(64);
    let started = Instant::now();
    for n in 0..CIPHER_SAMPLES {
        let index = n % stored.len() as u32;
        buffer.clear();
        buffer.extend_from_slice(&stored[index as usize]);
        anyhow::ensure!(
            key.open_in_place(&nonce_of(index), &mut buffer, &aad),
            "a value sealed for the timing did not open"
        );
    }
    let open = started.elapsed() / CIPHER_SAMPLES;
    Ok((seal, open))
}
