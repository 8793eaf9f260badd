//! Counters exported in the Prometheus text format at `/metrics`: the server's own
//! (appends with a latency histogram, reads, subscriptions and their lag, consumer
//! groups) and the backend's (`EventStore::storage_metrics`: group commits, fsync
//! time, batch sizes for the log engine).

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventfold_core::{MetricKind, StoreMetric};
use eventfold_subscription::GroupStatus;

/// Upper bounds of the append latency histogram, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Counters of the server's work.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub appends: AtomicU64,
    pub events_appended: AtomicU64,
    pub append_errors: AtomicU64,
    pub reads: AtomicU64,
    pub subscriptions_open: AtomicU64,
    /// Connections being served now.
    connections_open: AtomicU64,
    /// Connections closed because a request head (or TLS handshake) came too slowly.
    pub header_timeouts: AtomicU64,
    /// Connections closed after staying idle too long between requests.
    pub idle_timeouts: AtomicU64,
    append_latency: Histogram,
    /// The last position each open SSE subscription sent, by subscription.
    subscribers: Mutex<HashMap<u64, Arc<AtomicU64>>>,
    next_subscriber: AtomicU64,
}

/// A subscriber's last position before it sent anything.
const NOTHING_SENT: u64 = u64::MAX;

#[derive(Debug, Default)]
struct Histogram {
    /// Count per bucket of `LATENCY_BUCKETS`, then the overflow.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl Metrics {
    /// Records an acknowledged append of `events` that took `elapsed`.
    pub(crate) fn appended(&self, events: u64, elapsed: Duration) {
        self.appends.fetch_add(1, Ordering::Relaxed);
        self.events_appended.fetch_add(events, Ordering::Relaxed);
        let seconds = elapsed.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.append_latency.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.append_latency
            .sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    /// Registers an SSE subscription; it reports its position through the returned
    /// cell until [`Metrics::unsubscribe`].
    pub(crate) fn subscribe(&self) -> (u64, Arc<AtomicU64>) {
        let id = self.next_subscriber.fetch_add(1, Ordering::Relaxed);
        let cell = Arc::new(AtomicU64::new(NOTHING_SENT));
        lock(&self.subscribers).insert(id, cell.clone());
        self.subscriptions_open.fetch_add(1, Ordering::Relaxed);
        (id, cell)
    }

    /// Counts a connection as open until the returned guard is dropped.
    pub(crate) fn connection_opened(&self) -> OpenConnection<'_> {
        self.connections_open.fetch_add(1, Ordering::Relaxed);
        OpenConnection(self)
    }

    pub(crate) fn unsubscribe(&self, id: u64) {
        lock(&self.subscribers).remove(&id);
        self.subscriptions_open.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn render(
        &self,
        head: Option<u64>,
        storage: &[StoreMetric],
        groups: &[GroupStatus],
    ) -> String {
        let mut out = String::new();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
        let mut metric = |name: &str, help: &str, kind: &str, value: f64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        metric(
            "eventfold_appends_total",
            "Appends acknowledged.",
            "counter",
            get(&self.appends),
        );
        metric(
            "eventfold_events_appended_total",
            "Events appended.",
            "counter",
            get(&self.events_appended),
        );
        metric(
            "eventfold_append_errors_total",
            "Appends refused or failed.",
            "counter",
            get(&self.append_errors),
        );
        metric(
            "eventfold_reads_total",
            "Read requests answered.",
            "counter",
            get(&self.reads),
        );
        metric(
            "eventfold_subscriptions_open",
            "Live SSE subscriptions open now.",
            "gauge",
            get(&self.subscriptions_open),
        );
        metric(
            "eventfold_connections_open",
            "HTTP connections being served now.",
            "gauge",
            get(&self.connections_open),
        );
        metric(
            "eventfold_connections_header_timeouts_total",
            "Connections closed because a request head or TLS handshake did not arrive in time.",
            "counter",
            get(&self.header_timeouts),
        );
        metric(
            "eventfold_connections_idle_timeouts_total",
            "Connections closed after staying idle between requests for too long.",
            "counter",
            get(&self.idle_timeouts),
        );
        let lag = head.map_or(0, |head| {
            lock(&self.subscribers)
                .values()
                .map(|cell| cell.load(Ordering::Relaxed))
                .filter(|&sent| sent != NOTHING_SENT)
                .map(|sent| head.saturating_sub(sent))
                .max()
                .unwrap_or(0)
        });
        metric(
            "eventfold_subscription_lag_events",
            "Largest distance, in positions, between the head and what an open SSE subscription sent.",
            "gauge",
            lag as f64,
        );
        metric(
            "eventfold_head_position",
            "Position of the last committed event (-1: empty store).",
            "gauge",
            head.map_or(-1.0, |p| p as f64),
        );
        for m in storage {
            let kind = match m.kind {
                MetricKind::Counter => "counter",
                MetricKind::Gauge => "gauge",
            };
            metric(m.name, m.help, kind, m.value);
        }
        self.render_latency(&mut out);
        render_groups(&mut out, head, groups);
        out
    }

    fn render_latency(&self, out: &mut String) {
        let name = "eventfold_append_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time from receiving an append to its acknowledgement (durable).\n# TYPE {name} histogram"
        );
        let mut cumulative = 0;
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += self.append_latency.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.append_latency.buckets[LATENCY_BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = self.append_latency.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}");
    }
}

/// An open connection, counted by `eventfold_connections_open` while it lives.
pub(crate) struct OpenConnection<'a>(&'a Metrics);

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.0.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}

fn render_groups(out: &mut String, head: Option<u64>, groups: &[GroupStatus]) {
    if groups.is_empty() {
        return;
    }
    let families = [
        (
            "eventfold_group_lag_events",
            "Positions of the log after the group's checkpoint (not yet acked or parked; system events count too).",
            "gauge",
        ),
        (
            "eventfold_group_in_flight",
            "Deliveries of the group not yet acked.",
            "gauge",
        ),
        (
            "eventfold_group_parked_total",
            "Events the group parked since this node opened it.",
            "counter",
        ),
    ];
    for (i, (name, help, kind)) in families.iter().enumerate() {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for group in groups {
            let value = match i {
                0 => head.map_or(0, |head| match group.checkpoint {
                    Some(done) => head.saturating_sub(done),
                    None => head + 1,
                }),
                1 => group.in_flight as u64,
                _ => group.parked,
            };
            let label = group.group.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(out, "{name}{{group=\"{label}\"}} {value}");
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
