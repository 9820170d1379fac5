//! The gateway's counters and the Prometheus text exposition of `/metrics`.
//!
//! Counters are plain atomics bumped where things happen; the event-age
//! histogram is a fixed set of buckets that each WebSocket client task
//! fills locally for one batch of messages and adds in once per batch, so
//! thousands of clients do not fight over one cache line per message.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use super::hub::RingState;

/// Upper bounds of the event-age buckets, in nanoseconds (the exposition
/// prints them in seconds). Log-spaced 1-2.5-5 from 10 us to 10 s.
pub const AGE_BOUNDS_NS: [u64; 19] = [
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];
/// Buckets including +Inf.
pub const AGE_BUCKETS: usize = AGE_BOUNDS_NS.len() + 1;

/// Event age at send: `now - publish_ts` when a message is handed to a
/// client's socket.
#[derive(Default)]
pub struct AgeHistogram {
    /// Non-cumulative counts per bucket (the exposition accumulates).
    counts: [AtomicU64; AGE_BUCKETS],
    sum_ns: AtomicU64,
    count: AtomicU64,
}

/// A client task's private tally for one batch, added to the shared
/// histogram with [`AgeHistogram::add`].
#[derive(Default)]
pub struct LocalAge {
    counts: [u32; AGE_BUCKETS],
    sum_ns: u64,
    count: u64,
}

impl LocalAge {
    #[inline]
    pub fn record(&mut self, age_ns: i64) {
        let a = age_ns.max(0) as u64;
        let i = AGE_BOUNDS_NS.partition_point(|&b| b < a);
        self.counts[i] += 1;
        self.sum_ns += a;
        self.count += 1;
    }
}

impl AgeHistogram {
    pub fn add(&self, local: &mut LocalAge) {
        if local.count == 0 {
            return;
        }
        for (i, c) in local.counts.iter_mut().enumerate() {
            if *c != 0 {
                self.counts[i].fetch_add(*c as u64, Ordering::Relaxed);
                *c = 0;
            }
        }
        self.sum_ns.fetch_add(local.sum_ns, Ordering::Relaxed);
        self.count.fetch_add(local.count, Ordering::Relaxed);
        local.sum_ns = 0;
        local.count = 0;
    }

    /// Cumulative counts per bucket (last = +Inf = total), sum in ns.
    pub fn snapshot(&self) -> ([u64; AGE_BUCKETS], u64, u64) {
        let mut cum = [0u64; AGE_BUCKETS];
        let mut acc = 0;
        for (i, c) in self.counts.iter().enumerate() {
            acc += c.load(Ordering::Relaxed);
            cum[i] = acc;
        }
        // The count is read after the buckets and may be a little ahead;
        // report the bucket total so that +Inf == _count exactly.
        let sum = self.sum_ns.load(Ordering::Relaxed);
        let _ = self.count.load(Ordering::Relaxed);
        (cum, sum, acc)
    }
}

/// Process-wide counters of the gateway.
#[derive(Default)]
pub struct Metrics {
    /// WebSocket clients connected now.
    pub clients: AtomicI64,
    pub clients_accepted: AtomicU64,
    pub refused_max_clients: AtomicU64,
    pub refused_unauthorized: AtomicU64,
    pub refused_origin: AtomicU64,
    pub dropped_slow: AtomicU64,
    pub closed_too_big: AtomicU64,
    pub invalid_requests: AtomicU64,
    pub messages_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub http_requests: AtomicU64,
    pub age: AgeHistogram,
}

fn counter(out: &mut String, name: &str, help: &str, v: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
    );
}

fn gauge(out: &mut String, name: &str, help: &str, v: f64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
}

/// Escapes a label value (backslash, double quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One metric family with a `ring` label, one sample per ring.
fn per_ring(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    rings: &[std::sync::Arc<RingState>],
    v: impl Fn(&RingState) -> Option<f64>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for r in rings {
        if let Some(x) = v(r) {
            let _ = writeln!(out, "{name}{{ring=\"{}\"}} {x}", label(&r.name));
        }
    }
}

impl Metrics {
    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self, rings: &[std::sync::Arc<RingState>]) -> String {
        let mut o = String::with_capacity(8192);
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        gauge(
            &mut o,
            "tickring_gateway_clients",
            "WebSocket clients connected now.",
            self.clients.load(Ordering::Relaxed) as f64,
        );
        counter(
            &mut o,
            "tickring_gateway_clients_accepted_total",
            "WebSocket clients accepted since start.",
            l(&self.clients_accepted),
        );
        counter(
            &mut o,
            "tickring_gateway_clients_dropped_slow_total",
            "WebSocket clients disconnected because their send queue overflowed.",
            l(&self.dropped_slow),
        );
        counter(
            &mut o,
            "tickring_gateway_clients_closed_too_big_total",
            "WebSocket clients disconnected for sending a message over the size limit.",
            l(&self.closed_too_big),
        );
        let _ = writeln!(
            o,
            "# HELP tickring_gateway_requests_refused_total Requests refused before being served, by reason.\n\
             # TYPE tickring_gateway_requests_refused_total counter\n\
             tickring_gateway_requests_refused_total{{reason=\"max_clients\"}} {}\n\
             tickring_gateway_requests_refused_total{{reason=\"unauthorized\"}} {}\n\
             tickring_gateway_requests_refused_total{{reason=\"origin\"}} {}",
            l(&self.refused_max_clients),
            l(&self.refused_unauthorized),
            l(&self.refused_origin)
        );
        counter(
            &mut o,
            "tickring_gateway_invalid_requests_total",
            "WebSocket client messages answered with an error.",
            l(&self.invalid_requests),
        );
        counter(
            &mut o,
            "tickring_gateway_messages_sent_total",
            "WebSocket messages handed to client sockets (events, snapshots, replies).",
            l(&self.messages_sent),
        );
        counter(
            &mut o,
            "tickring_gateway_sent_bytes_total",
            "Payload bytes of the WebSocket messages sent.",
            l(&self.bytes_sent),
        );
        counter(
            &mut o,
            "tickring_gateway_http_requests_total",
            "HTTP requests received (WebSocket upgrades included).",
            l(&self.http_requests),
        );

        let (cum, sum_ns, count) = self.age.snapshot();
        let name = "tickring_gateway_event_age_seconds";
        let _ = writeln!(
            o,
            "# HELP {name} Age of events when sent to a client: send time minus the ring publish time.\n# TYPE {name} histogram"
        );
        for (i, b) in AGE_BOUNDS_NS.iter().enumerate() {
            let _ = writeln!(o, "{name}_bucket{{le=\"{}\"}} {}", secs(*b), cum[i]);
        }
        let _ = writeln!(o, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(o, "{name}_sum {}", sum_ns as f64 / 1e9);
        let _ = writeln!(o, "{name}_count {count}");

        use super::hub::RingCounter as C;
        per_ring(
            &mut o,
            "tickring_gateway_ring_open",
            "gauge",
            "1 when the ring file is open.",
            rings,
            |r| Some(r.is_open() as u8 as f64),
        );
        per_ring(
            &mut o,
            "tickring_gateway_ring_writer_alive",
            "gauge",
            "1 when the ring's writer is running (not stopped, retired or dead).",
            rings,
            |r| Some(r.writer_alive() as u8 as f64),
        );
        per_ring(
            &mut o,
            "tickring_gateway_ring_last_event_age_seconds",
            "gauge",
            "Seconds since the publish time of the last event read from the ring.",
            rings,
            |r| r.last_event_age_ns().map(|a| a as f64 / 1e9),
        );
        per_ring(
            &mut o,
            "tickring_gateway_ring_writer_heartbeat_age_seconds",
            "gauge",
            "Seconds since the ring writer's last heartbeat, as the gateway's reader sees it (the collector beats every 0.1 s).",
            rings,
            |r| r.writer_heartbeat_age_ns().map(|a| a as f64 / 1e9),
        );
        per_ring(
            &mut o,
            "tickring_gateway_ring_reader_lag_events",
            "gauge",
            "Events published into the ring but not yet read by the gateway (sampled 4 times a second); a full lap (the capacity) is an overrun.",
            rings,
            |r| r.lag().filter(|_| r.is_open()).map(|(l, _)| l as f64),
        );
        per_ring(
            &mut o,
            "tickring_gateway_ring_capacity_events",
            "gauge",
            "Slots in the ring (events it holds before the writer overwrites the oldest).",
            rings,
            |r| r.lag().filter(|_| r.is_open()).map(|(_, c)| c as f64),
        );
        for (c, name, help) in [
            (
                C::Events,
                "tickring_gateway_ring_events_total",
                "Events read from the ring.",
            ),
            (
                C::Overruns,
                "tickring_gateway_ring_overruns_total",
                "Times the gateway's reader fell a full lap behind the ring's writer.",
            ),
            (
                C::Lost,
                "tickring_gateway_ring_events_lost_total",
                "Events overwritten before the gateway read them.",
            ),
            (
                C::Gaps,
                "tickring_gateway_feed_gaps_total",
                "Sequence gaps reported by the feed (status events).",
            ),
            (
                C::Resyncs,
                "tickring_gateway_feed_resyncs_total",
                "Book resyncs started by the feed (status events).",
            ),
            (
                C::ChecksumFailures,
                "tickring_gateway_feed_checksum_failures_total",
                "Book checksum mismatches reported by the feed (status events).",
            ),
            (
                C::WriterRestarts,
                "tickring_gateway_ring_writer_restarts_total",
                "Times a new writer opened the ring.",
            ),
        ] {
            per_ring(&mut o, name, "counter", help, rings, |r| {
                Some(r.counter(c) as f64)
            });
        }
        o
    }
}

/// Nanoseconds as a decimal number of seconds, exactly (no float rounding).
pub(crate) fn secs(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    let frac = ns % 1_000_000_000;
    if frac == 0 {
        return format!("{s}");
    }
    let f = format!("{frac:09}");
    format!("{s}.{}", f.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_bounds_print_exactly() {
        let h = AgeHistogram::default();
        let mut l = LocalAge::default();
        for a in [-5, 0, 10_000, 10_001, 2_000_000, 20_000_000_000] {
            l.record(a);
        }
        h.add(&mut l);
        let (cum, sum, n) = h.snapshot();
        assert_eq!(n, 6);
        assert_eq!(cum[0], 3); // -5 (as 0), 0, 10_000 are <= 10 us
        assert_eq!(cum[1], 4);
        assert_eq!(cum[7], 5); // 2 ms <= 2.5 ms
        assert_eq!(cum[AGE_BUCKETS - 2], 5);
        assert_eq!(cum[AGE_BUCKETS - 1], 6);
        assert_eq!(sum, 10_000 + 10_001 + 2_000_000 + 20_000_000_000);
        assert_eq!(secs(10_000), "0.00001");
        assert_eq!(secs(2_500_000_000), "2.5");
        assert_eq!(secs(1_000_000_000), "1");
        // The local tally was emptied.
        h.add(&mut l);
        assert_eq!(h.snapshot().2, 6);
    }
}
