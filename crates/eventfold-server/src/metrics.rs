//! Counters exported in the Prometheus text format at `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of the server's work.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub appends: AtomicU64,
    pub events_appended: AtomicU64,
    pub append_errors: AtomicU64,
    pub append_seconds_micros: AtomicU64,
    pub reads: AtomicU64,
    pub subscriptions_open: AtomicU64,
}

impl Metrics {
    pub(crate) fn render(&self, head: Option<u64>) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, kind: &str, value: f64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
        counter(
            "eventfold_appends_total",
            "Appends acknowledged.",
            "counter",
            get(&self.appends),
        );
        counter(
            "eventfold_events_appended_total",
            "Events appended.",
            "counter",
            get(&self.events_appended),
        );
        counter(
            "eventfold_append_errors_total",
            "Appends refused or failed.",
            "counter",
            get(&self.append_errors),
        );
        counter(
            "eventfold_append_seconds_total",
            "Time spent in acknowledged appends (divide by eventfold_appends_total for the mean latency).",
            "counter",
            get(&self.append_seconds_micros) / 1e6,
        );
        counter(
            "eventfold_reads_total",
            "Read requests answered.",
            "counter",
            get(&self.reads),
        );
        counter(
            "eventfold_subscriptions_open",
            "Live subscriptions open now.",
            "gauge",
            get(&self.subscriptions_open),
        );
        counter(
            "eventfold_head_position",
            "Position of the last committed event (-1: empty store).",
            "gauge",
            head.map_or(-1.0, |p| p as f64),
        );
        out
    }
}
