//! The collector's counters, shared between the hot thread (the only
//! writer of each counter) and the housekeeping thread (which renders
//! them as Prometheus text).

use std::fmt::Write;

use crate::sync::{AtomicU64, Ordering};

/// Upper bounds (ns) of the receive -> publish latency histogram buckets.
pub const LATENCY_BUCKETS_NS: [u64; 14] = [
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    10_000_000,
    100_000_000,
];

/// Parse error kinds, in the order of [`Metrics::parse_errors`].
/// `frame_too_large` and `invalid_utf8` messages are refused by the
/// WebSocket layer, which fails the connection (close 1009 / 1007).
pub const PARSE_ERROR_KINDS: [&str; 7] = [
    "frame_too_large",
    "json",
    "missing_field",
    "duplicate_field",
    "bad_value",
    "other",
    "invalid_utf8",
];

/// Index of `frame_too_large` in [`PARSE_ERROR_KINDS`].
pub const PARSE_ERROR_FRAME_TOO_LARGE: usize = 0;
/// Index of `invalid_utf8` in [`PARSE_ERROR_KINDS`].
pub const PARSE_ERROR_INVALID_UTF8: usize = 6;

/// Connection states in [`Metrics::connection_state`].
pub mod conn_state {
    pub const DISCONNECTED: u64 = 0;
    pub const CONNECTING: u64 = 1;
    pub const OPEN: u64 = 2;
    pub const SUBSCRIBED: u64 = 3;
    pub const CLOSING: u64 = 4;
    pub const NAMES: [&str; 5] = [
        "disconnected",
        "connecting",
        "open",
        "subscribed",
        "closing",
    ];
}

/// Counters and gauges. Each field has exactly one writer thread; the
/// housekeeping thread only loads. Relaxed throughout: no counter guards
/// other data.
#[derive(Default)]
pub struct Metrics {
    pub messages: AtomicU64,
    pub bytes: AtomicU64,
    pub events: AtomicU64,
    pub parse_errors: [AtomicU64; 7],
    pub unknown_messages: AtomicU64,
    pub unknown_instrument: AtomicU64,
    pub gaps: AtomicU64,
    pub checksum_failures: AtomicU64,
    pub resyncs: AtomicU64,
    pub crossed: AtomicU64,
    pub reconnects: AtomicU64,
    pub silence_timeouts: AtomicU64,
    pub snapshot_fetches: AtomicU64,
    pub snapshot_fetch_failures: AtomicU64,
    pub subscribe_rejections: AtomicU64,
    pub connection_state: AtomicU64,
    pub books: AtomicU64,
    pub books_valid: AtomicU64,
    /// CLOCK_MONOTONIC ns of the last message (any kind, heartbeats and
    /// pongs included).
    pub last_message_mono_ns: AtomicU64,
    /// Bumped by the hot loop on every tick and message: the watchdog's
    /// evidence of progress.
    pub progress: AtomicU64,
    pub latency_buckets: [AtomicU64; 15],
    pub latency_sum_ns: AtomicU64,
    pub latency_count: AtomicU64,
    /// Set once at start.
    pub huge_pages: AtomicU64,
    pub memory_locked: AtomicU64,
    pub pinned: AtomicU64,
}

/// Adds `n` to a counter that only the calling thread writes: a plain
/// load and store (no locked instruction on the hot path).
#[inline(always)]
pub fn add(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

#[inline(always)]
pub fn set(c: &AtomicU64, v: u64) {
    c.store(v, Ordering::Relaxed);
}

#[inline(always)]
pub fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

impl Metrics {
    /// Records one receive -> publish latency.
    #[inline]
    pub fn observe_latency(&self, ns: u64) {
        let i = LATENCY_BUCKETS_NS
            .iter()
            .position(|&b| ns <= b)
            .unwrap_or(LATENCY_BUCKETS_NS.len());
        add(&self.latency_buckets[i], 1);
        add(&self.latency_sum_ns, ns);
        add(&self.latency_count, 1);
    }

    /// Prometheus text exposition (format 0.0.4).
    /// `ready` is what `/ready` answers now (exported as `tickring_collector_ready`).
    pub fn render(
        &self,
        feed: &str,
        exchange: &str,
        features: &[(&str, bool)],
        ready: bool,
    ) -> String {
        let l = format!("feed=\"{feed}\",exchange=\"{exchange}\"");
        let mut s = String::with_capacity(8192);
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name}{{{l}}} {v}"
            );
        };
        counter(
            "tickring_collector_messages_received_total",
            "WebSocket messages received from the exchange.",
            get(&self.messages),
        );
        counter(
            "tickring_collector_received_bytes_total",
            "Payload bytes of the messages received.",
            get(&self.bytes),
        );
        counter(
            "tickring_collector_events_published_total",
            "Events published into the ring.",
            get(&self.events),
        );
        counter(
            "tickring_collector_unknown_messages_total",
            "Messages of a type the adapter does not know (skipped).",
            get(&self.unknown_messages),
        );
        counter(
            "tickring_collector_unknown_instrument_messages_total",
            "Messages for symbols not in the config (skipped).",
            get(&self.unknown_instrument),
        );
        counter(
            "tickring_collector_gaps_total",
            "Sequence gaps detected.",
            get(&self.gaps),
        );
        counter(
            "tickring_collector_checksum_failures_total",
            "Book checksum mismatches.",
            get(&self.checksum_failures),
        );
        counter(
            "tickring_collector_resyncs_total",
            "Book resyncs started.",
            get(&self.resyncs),
        );
        counter(
            "tickring_collector_crossed_books_total",
            "Updates that would have crossed a book.",
            get(&self.crossed),
        );
        counter(
            "tickring_collector_reconnects_total",
            "Connection attempts after the first.",
            get(&self.reconnects),
        );
        counter(
            "tickring_collector_silence_timeouts_total",
            "Connections dropped because the exchange went silent.",
            get(&self.silence_timeouts),
        );
        counter(
            "tickring_collector_snapshot_fetches_total",
            "REST book snapshots requested.",
            get(&self.snapshot_fetches),
        );
        counter(
            "tickring_collector_snapshot_fetch_failures_total",
            "REST book snapshots that failed.",
            get(&self.snapshot_fetch_failures),
        );
        counter(
            "tickring_collector_subscribe_rejections_total",
            "Subscriptions the exchange refused.",
            get(&self.subscribe_rejections),
        );

        let name = "tickring_collector_parse_errors_total";
        let _ = writeln!(
            s,
            "# HELP {name} Messages refused by the parser, by kind.\n# TYPE {name} counter"
        );
        for (k, c) in PARSE_ERROR_KINDS.iter().zip(&self.parse_errors) {
            let _ = writeln!(s, "{name}{{{l},kind=\"{k}\"}} {}", get(c));
        }

        let mut gauge = |name: &str, help: &str, v: String| {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{{l}}} {v}"
            );
        };
        let st = get(&self.connection_state) as usize;
        gauge(
            "tickring_collector_connection_up",
            "1 when the feed connection is open.",
            u64::from(st >= conn_state::OPEN as usize && st < conn_state::CLOSING as usize)
                .to_string(),
        );
        gauge(
            "tickring_collector_ready",
            "1 when /ready answers 200: subscribed, every book valid, hot loop moving, exchange not silent.",
            u64::from(ready).to_string(),
        );
        gauge(
            "tickring_collector_books",
            "Books the collector keeps.",
            get(&self.books).to_string(),
        );
        gauge(
            "tickring_collector_books_valid",
            "Books currently valid (synced, checksums passing).",
            get(&self.books_valid).to_string(),
        );
        let last = get(&self.last_message_mono_ns);
        let age = if last == 0 {
            -1.0
        } else {
            (crate::time::monotonic_ns() as u64).saturating_sub(last) as f64 / 1e9
        };
        gauge(
            "tickring_collector_last_message_age_seconds",
            "Seconds since the last message from the exchange (-1: none yet).",
            format!("{age}"),
        );
        gauge(
            "tickring_collector_huge_pages",
            "1 when the ring is on huge pages.",
            get(&self.huge_pages).to_string(),
        );
        gauge(
            "tickring_collector_memory_locked",
            "1 when the ring is locked in memory.",
            get(&self.memory_locked).to_string(),
        );
        gauge(
            "tickring_collector_pinned",
            "1 when the hot thread is pinned to its core.",
            get(&self.pinned).to_string(),
        );

        let name = "tickring_collector_connection_state";
        let _ = writeln!(
            s,
            "# HELP {name} Feed connection state (1 for the current one).\n# TYPE {name} gauge"
        );
        for (i, n) in conn_state::NAMES.iter().enumerate() {
            let _ = writeln!(s, "{name}{{{l},state=\"{n}\"}} {}", u64::from(i == st));
        }
        let name = "tickring_collector_io_uring_feature";
        let _ = writeln!(
            s,
            "# HELP {name} io_uring features in use (1) or not (0).\n# TYPE {name} gauge"
        );
        for (f, on) in features {
            let _ = writeln!(s, "{name}{{{l},feature=\"{f}\"}} {}", u64::from(*on));
        }

        let name = "tickring_collector_receive_to_publish_seconds";
        let _ = writeln!(
            s,
            "# HELP {name} Time from a message's receive completion to its first event in the ring.\n# TYPE {name} histogram"
        );
        let mut cum = 0;
        for (i, b) in LATENCY_BUCKETS_NS.iter().enumerate() {
            cum += get(&self.latency_buckets[i]);
            let _ = writeln!(s, "{name}_bucket{{{l},le=\"{}\"}} {cum}", *b as f64 / 1e9);
        }
        cum += get(&self.latency_buckets[LATENCY_BUCKETS_NS.len()]);
        let _ = writeln!(s, "{name}_bucket{{{l},le=\"+Inf\"}} {cum}");
        let _ = writeln!(
            s,
            "{name}_sum{{{l}}} {}",
            get(&self.latency_sum_ns) as f64 / 1e9
        );
        let _ = writeln!(s, "{name}_count{{{l}}} {cum}");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_count_matches() {
        let m = Metrics::default();
        for ns in [100, 900, 3_000, 1_000_000_000] {
            m.observe_latency(ns);
        }
        let text = m.render("k", "kraken", &[("multishot_recv", true)], true);
        assert!(text.contains("tickring_collector_receive_to_publish_seconds_bucket{feed=\"k\",exchange=\"kraken\",le=\"0.0000005\"} 1"), "{text}");
        assert!(text.contains("le=\"0.000001\"} 2"), "{text}");
        assert!(text.contains("le=\"0.000005\"} 3"), "{text}");
        assert!(text.contains("le=\"+Inf\"} 4"), "{text}");
        assert!(text.contains(
            "tickring_collector_receive_to_publish_seconds_count{feed=\"k\",exchange=\"kraken\"} 4"
        ));
        assert!(text.contains("tickring_collector_io_uring_feature{feed=\"k\",exchange=\"kraken\",feature=\"multishot_recv\"} 1"));
    }

    #[test]
    fn ready_gauge_follows_what_ready_answers() {
        let m = Metrics::default();
        let line = |ready| {
            m.render("k", "kraken", &[], ready)
                .lines()
                .find(|l| l.starts_with("tickring_collector_ready{"))
                .map(str::to_owned)
        };
        assert_eq!(
            line(true).as_deref(),
            Some("tickring_collector_ready{feed=\"k\",exchange=\"kraken\"} 1")
        );
        assert_eq!(
            line(false).as_deref(),
            Some("tickring_collector_ready{feed=\"k\",exchange=\"kraken\"} 0")
        );
    }
}
