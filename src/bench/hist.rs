//! Shared pieces of every `tickring bench ...` command: a calibrated clock,
//! an HdrHistogram of latencies, and the result shape that all benchmarks
//! print (one JSON object with a `results` array, or a table for humans).
//!
//! Every benchmark prints the same shape so that scripts can compare runs:
//!
//! ```text
//! { "bench": "ring", "clock": {..}, "host": {..}, "results": [LatencyResult..],
//!   "skipped": [{"name", "reason"}..], "targets": [Target..], "warnings": [..], ..extra }
//! ```
//!
//! A [`LatencyResult`] always carries `name`, `p50_ns`, `p99_ns`, `p999_ns`,
//! `p9999_ns`, `max_ns` (integers, ns), `throughput_per_s` (`null` where not
//! measured) and `count` (samples in the histogram); paths that were not
//! measured are left out of `results` and listed in `skipped` instead, so a
//! consumer never sees a result with null percentiles.

use std::collections::BTreeMap;
use std::io::{self, Write};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Where [`Clock::now`] reads time from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockSource {
    /// The CPU's time-stamp counter (`rdtsc`), calibrated against
    /// CLOCK_MONOTONIC. Used only when /proc/cpuinfo says the TSC is
    /// `constant_tsc` and `nonstop_tsc` (the same rate on every core, in
    /// every power state), so stamps taken on two cores compare.
    Tsc,
    /// `clock_gettime(CLOCK_MONOTONIC)` through the vDSO; ticks are ns.
    Monotonic,
}

/// A clock for latency stamps that two processes can share: pass
/// [`Clock::info`] to the other process and rebuild it with
/// [`Clock::from_info`], so both convert ticks to ns with the same
/// calibration.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    source: ClockSource,
    /// Ticks per nanosecond (1.0 for [`ClockSource::Monotonic`]).
    ticks_per_ns: f64,
}

/// What a [`Clock`] is, as printed in results and passed to child processes.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClockInfo {
    pub source: ClockSource,
    pub ticks_per_ns: f64,
}

/// Which clock to use: `Auto` picks the TSC when it is usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ClockChoice {
    #[default]
    Auto,
    Tsc,
    Monotonic,
}

/// Why the TSC cannot be used here (for the warning).
pub fn tsc_unusable_reason() -> Option<String> {
    if !cfg!(target_arch = "x86_64") {
        return Some("not an x86_64 CPU".into());
    }
    let cpuinfo = match std::fs::read_to_string("/proc/cpuinfo") {
        Ok(s) => s,
        Err(e) => return Some(format!("cannot read /proc/cpuinfo: {e}")),
    };
    let flags = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .unwrap_or("");
    let has = |f: &str| flags.split_whitespace().any(|w| w == f);
    let missing: Vec<&str> = ["constant_tsc", "nonstop_tsc"]
        .into_iter()
        .filter(|f| !has(f))
        .collect();
    if missing.is_empty() {
        None
    } else {
        Some(format!(
            "/proc/cpuinfo lacks {} (TSC rate not invariant)",
            missing.join(" and ")
        ))
    }
}

impl Clock {
    /// The monotonic clock (no calibration needed).
    pub fn monotonic() -> Clock {
        Clock {
            source: ClockSource::Monotonic,
            ticks_per_ns: 1.0,
        }
    }

    /// Picks and calibrates a clock. With `Auto`, uses the TSC when it is
    /// invariant, else CLOCK_MONOTONIC; the second value says why the TSC
    /// was not used (a warning for the user) when it was wanted.
    pub fn new(choice: ClockChoice) -> (Clock, Option<String>) {
        match choice {
            ClockChoice::Monotonic => (Clock::monotonic(), None),
            ClockChoice::Auto | ClockChoice::Tsc => match tsc_unusable_reason() {
                None => (Clock::calibrate_tsc(), None),
                Some(why) => (
                    Clock::monotonic(),
                    Some(format!("using CLOCK_MONOTONIC, not the TSC: {why}")),
                ),
            },
        }
    }

    /// Measures the TSC rate against CLOCK_MONOTONIC over about 100 ms.
    /// Each end point reads the monotonic clock between two TSC reads and
    /// keeps the tightest of a few tries, so the error is a few ns over
    /// 100 ms (parts per ten million).
    fn calibrate_tsc() -> Clock {
        fn pair() -> (u64, i64) {
            let mut best = (u64::MAX, 0u64, 0i64);
            for _ in 0..16 {
                let a = rdtsc();
                let m = crate::time::monotonic_ns();
                let b = rdtsc();
                if b.wrapping_sub(a) < best.0 {
                    best = (b.wrapping_sub(a), a / 2 + b / 2, m);
                }
            }
            (best.1, best.2)
        }
        let (t0, m0) = pair();
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(100) {
            std::hint::spin_loop();
        }
        let (t1, m1) = pair();
        let ticks_per_ns = (t1.wrapping_sub(t0)) as f64 / (m1 - m0).max(1) as f64;
        Clock {
            source: ClockSource::Tsc,
            ticks_per_ns,
        }
    }

    /// Rebuilds the clock another process calibrated.
    pub fn from_info(info: &ClockInfo) -> Clock {
        Clock {
            source: info.source,
            ticks_per_ns: if info.ticks_per_ns > 0.0 {
                info.ticks_per_ns
            } else {
                1.0
            },
        }
    }

    pub fn info(&self) -> ClockInfo {
        ClockInfo {
            source: self.source,
            ticks_per_ns: self.ticks_per_ns,
        }
    }

    pub fn source(&self) -> ClockSource {
        self.source
    }

    /// Current time in ticks. Only differences mean anything; TSC ticks
    /// taken on different cores compare because the TSC is invariant and
    /// synchronized (which [`Clock::new`] checked).
    #[inline(always)]
    pub fn now(&self) -> u64 {
        match self.source {
            ClockSource::Tsc => rdtsc(),
            ClockSource::Monotonic => crate::time::monotonic_ns() as u64,
        }
    }

    /// A tick difference in ns.
    #[inline(always)]
    pub fn ticks_to_ns(&self, ticks: u64) -> f64 {
        ticks as f64 / self.ticks_per_ns
    }

    /// A duration in ns as ticks (for deadlines and pacing).
    #[inline(always)]
    pub fn ns_to_ticks(&self, ns: f64) -> u64 {
        (ns * self.ticks_per_ns) as u64
    }
}

#[inline(always)]
fn rdtsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `rdtsc` exists on every x86_64 CPU, reads a counter and
        // has no memory effects.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        crate::time::monotonic_ns() as u64
    }
}

/// Largest latency the histogram tracks exactly (60 s); larger samples are
/// clamped to it and counted in [`LatencyHist::clamped`].
const HIST_MAX_NS: u64 = 60_000_000_000;

/// An HdrHistogram of latencies in ns, 3 significant digits (values up to
/// 2048 ns are exact, larger ones within 0.1%).
pub struct LatencyHist {
    hist: Histogram<u64>,
    clamped: u64,
}

impl Default for LatencyHist {
    fn default() -> Self {
        LatencyHist::new()
    }
}

impl LatencyHist {
    pub fn new() -> LatencyHist {
        LatencyHist {
            hist: Histogram::new_with_bounds(1, HIST_MAX_NS, 3)
                .expect("constant histogram bounds are valid"),
            clamped: 0,
        }
    }

    /// Records one latency in ns (0 is recorded as 0; above 60 s clamped).
    #[inline]
    pub fn record_ns(&mut self, ns: u64) {
        let v = if ns > HIST_MAX_NS {
            self.clamped += 1;
            HIST_MAX_NS
        } else {
            ns
        };
        // Cannot fail: `v` is within the bounds the histogram was made with.
        let _ = self.hist.record(v);
    }

    /// Records a tick difference with `clock`'s calibration, rounded to ns.
    #[inline]
    pub fn record_ticks(&mut self, clock: &Clock, ticks: u64) {
        self.record_ns(clock.ticks_to_ns(ticks).round() as u64);
    }

    /// Adds all samples of `other`.
    pub fn merge(&mut self, other: &LatencyHist) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.hist.add(&other.hist);
        self.clamped += other.clamped;
    }

    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// Samples above 60 s that were recorded as 60 s.
    pub fn clamped(&self) -> u64 {
        self.clamped
    }

    pub fn percentile_ns(&self, quantile: f64) -> u64 {
        self.hist.value_at_quantile(quantile)
    }

    pub fn mean_ns(&self) -> f64 {
        self.hist.mean()
    }

    /// The percentiles as a result named `name`. Percentiles of an empty
    /// histogram are 0 with `count` 0.
    pub fn summary(&self, name: &str) -> LatencyResult {
        LatencyResult {
            name: name.to_owned(),
            p50_ns: self.percentile_ns(0.50),
            p99_ns: self.percentile_ns(0.99),
            p999_ns: self.percentile_ns(0.999),
            p9999_ns: self.percentile_ns(0.9999),
            max_ns: self.hist.max(),
            mean_ns: (self.count() > 0).then(|| (self.mean_ns() * 10.0).round() / 10.0),
            count: self.count(),
            throughput_per_s: None,
            method: None,
            note: None,
            extra: BTreeMap::new(),
        }
    }
}

/// One measured path: latency percentiles in ns and, where measured, a
/// throughput. The JSON field names are a contract with scripts and other
/// benchmarks; add new information to `extra`, never rename.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyResult {
    pub name: String,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub p9999_ns: u64,
    pub max_ns: u64,
    /// Events (or messages) per second; `null` where not measured.
    pub throughput_per_s: Option<f64>,
    /// Latency samples behind the percentiles.
    pub count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_ns: Option<f64>,
    /// How the numbers were taken (e.g. "one-way, 2 processes").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Anything path-specific (e.g. events lost by a reader).
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl LatencyResult {
    /// Whether the percentiles are in order (p50 <= p99 <= p99.9 <= p99.99 <= max).
    pub fn is_ordered(&self) -> bool {
        self.p50_ns <= self.p99_ns
            && self.p99_ns <= self.p999_ns
            && self.p999_ns <= self.p9999_ns
            && self.p9999_ns <= self.max_ns
    }
}

/// A path that was not measured, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub name: String,
    pub reason: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TargetStatus {
    Pass,
    Miss,
    /// Not evaluated (a path it depends on was not measured).
    Skip,
}

impl TargetStatus {
    pub fn label(self) -> &'static str {
        match self {
            TargetStatus::Pass => "PASS",
            TargetStatus::Miss => "MISS",
            TargetStatus::Skip => "SKIP",
        }
    }
}

/// A performance target from the issue and how this run did against it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Target {
    /// What is demanded, e.g. "tickring p50 <= 1.2 x floor p50".
    pub goal: String,
    /// What was measured, in words with numbers, e.g. "1.08 x (97 ns vs 90 ns)".
    pub measured: String,
    pub status: TargetStatus,
}

impl Target {
    /// A target on a ratio `value <= limit` (or `>=` with `at_least`).
    pub fn ratio(
        goal: &str,
        value: Option<f64>,
        limit: f64,
        at_least: bool,
        detail: &str,
    ) -> Target {
        match value {
            None => Target {
                goal: goal.to_owned(),
                measured: detail.to_owned(),
                status: TargetStatus::Skip,
            },
            Some(v) => {
                let ok = if at_least { v >= limit } else { v <= limit };
                Target {
                    goal: goal.to_owned(),
                    measured: if detail.is_empty() {
                        format!("{v:.2}")
                    } else {
                        format!("{v:.2} ({detail})")
                    },
                    status: if ok {
                        TargetStatus::Pass
                    } else {
                        TargetStatus::Miss
                    },
                }
            }
        }
    }
}

/// The machine a benchmark ran on, so numbers are read in context.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostInfo {
    pub cpus: usize,
    pub cpu_model: String,
    /// 1-minute load average when the benchmark started.
    pub load_avg_1m: Option<f64>,
    pub kernel: String,
}

impl HostInfo {
    pub fn probe() -> HostInfo {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        HostInfo {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            load_avg_1m: load_avg_1m(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_default(),
        }
    }
}

/// The 1-minute load average from /proc/loadavg.
pub fn load_avg_1m() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The whole output of one benchmark command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// Which benchmark: "ring", "parse", "e2e", "gateway".
    pub bench: String,
    pub clock: ClockInfo,
    pub host: HostInfo,
    pub results: Vec<LatencyResult>,
    #[serde(default)]
    pub skipped: Vec<Skipped>,
    #[serde(default)]
    pub targets: Vec<Target>,
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Benchmark-specific sections (e.g. `writer_cost` for the ring).
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl BenchReport {
    pub fn new(bench: &str, clock: &Clock) -> BenchReport {
        BenchReport {
            bench: bench.to_owned(),
            clock: clock.info(),
            host: HostInfo::probe(),
            results: Vec::new(),
            skipped: Vec::new(),
            targets: Vec::new(),
            warnings: Vec::new(),
            extra: BTreeMap::new(),
        }
    }

    pub fn result(&self, name: &str) -> Option<&LatencyResult> {
        self.results.iter().find(|r| r.name == name)
    }

    /// Writes the report as one JSON object and a newline.
    pub fn write_json(&self, out: &mut dyn Write) -> io::Result<()> {
        serde_json::to_writer_pretty(&mut *out, self)?;
        writeln!(out)
    }

    /// Writes the results table, skipped paths, targets and warnings.
    pub fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        self.write_results(out)?;
        self.write_targets(out)
    }

    /// The header line, the results table and the skipped paths.
    pub fn write_results(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "{} benchmark on {} ({} cpus, load {}), clock {}",
            self.bench,
            if self.host.cpu_model.is_empty() {
                "unknown cpu"
            } else {
                &self.host.cpu_model
            },
            self.host.cpus,
            self.host
                .load_avg_1m
                .map_or("?".to_owned(), |l| format!("{l:.2}")),
            match self.clock.source {
                ClockSource::Tsc => format!("TSC at {:.3} GHz", self.clock.ticks_per_ns),
                ClockSource::Monotonic => "CLOCK_MONOTONIC".to_owned(),
            }
        )?;
        writeln!(out)?;
        write_table(&self.results, out)?;
        for s in &self.skipped {
            writeln!(out, "  {:<10} not measured: {}", s.name, s.reason)?;
        }
        Ok(())
    }

    /// The targets with PASS/MISS/SKIP, then the warnings.
    pub fn write_targets(&self, out: &mut dyn Write) -> io::Result<()> {
        if !self.targets.is_empty() {
            writeln!(out)?;
            writeln!(out, "targets:")?;
            for t in &self.targets {
                writeln!(out, "  {}  {}: {}", t.status.label(), t.goal, t.measured)?;
            }
        }
        if !self.warnings.is_empty() {
            writeln!(out)?;
            for w in &self.warnings {
                writeln!(out, "warning: {w}")?;
            }
        }
        Ok(())
    }
}

/// Formats events per second compactly (`123.4 M/s`).
pub fn fmt_rate(per_s: f64) -> String {
    if per_s >= 1e9 {
        format!("{:.2} G/s", per_s / 1e9)
    } else if per_s >= 1e6 {
        format!("{:.1} M/s", per_s / 1e6)
    } else if per_s >= 1e3 {
        format!("{:.1} k/s", per_s / 1e3)
    } else {
        format!("{per_s:.0} /s")
    }
}

/// The results as an aligned table: one row per path, the JSON columns,
/// then each row's method and note on the lines below the table.
pub fn write_table(results: &[LatencyResult], out: &mut dyn Write) -> io::Result<()> {
    let name_w = results
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    writeln!(
        out,
        "{:<name_w$} {:>9} {:>9} {:>9} {:>9} {:>11} {:>12} {:>10}",
        "path", "p50 ns", "p99 ns", "p99.9 ns", "p99.99 ns", "max ns", "throughput", "samples"
    )?;
    for r in results {
        writeln!(
            out,
            "{:<name_w$} {:>9} {:>9} {:>9} {:>9} {:>11} {:>12} {:>10}",
            r.name,
            r.p50_ns,
            r.p99_ns,
            r.p999_ns,
            r.p9999_ns,
            r.max_ns,
            r.throughput_per_s.map_or("-".to_owned(), fmt_rate),
            r.count
        )?;
    }
    let with_text: Vec<&LatencyResult> = results
        .iter()
        .filter(|r| r.method.is_some() || r.note.is_some())
        .collect();
    if !with_text.is_empty() {
        writeln!(out)?;
        for r in with_text {
            let mut parts = Vec::new();
            if let Some(m) = &r.method {
                parts.push(m.as_str());
            }
            if let Some(n) = &r.note {
                parts.push(n.as_str());
            }
            writeln!(out, "  {:<name_w$}  {}", r.name, parts.join("; "))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_known_samples_has_ordered_exact_percentiles() {
        let mut h = LatencyHist::new();
        for v in 1..=10_000u64 {
            h.record_ns(v);
        }
        let r = h.summary("x");
        assert_eq!(r.count, 10_000);
        assert!((4_995..=5_005).contains(&r.p50_ns), "{}", r.p50_ns);
        // Within HdrHistogram's 3-digit precision.
        assert!((9_895..=9_905).contains(&r.p99_ns), "{}", r.p99_ns);
        assert!((9_985..=9_995).contains(&r.p999_ns), "{}", r.p999_ns);
        assert!(r.max_ns >= 9_995 && r.max_ns <= 10_010, "{}", r.max_ns);
        assert!(r.is_ordered());
    }

    #[test]
    fn samples_beyond_sixty_seconds_are_clamped_and_counted() {
        let mut h = LatencyHist::new();
        h.record_ns(5);
        h.record_ns(u64::MAX);
        assert_eq!(h.count(), 2);
        assert_eq!(h.clamped(), 1);
        assert!(h.summary("x").max_ns >= HIST_MAX_NS);
    }

    #[test]
    fn ticks_convert_with_the_shared_calibration() {
        let info = ClockInfo {
            source: ClockSource::Tsc,
            ticks_per_ns: 2.5,
        };
        let c = Clock::from_info(&info);
        assert_eq!(c.ticks_to_ns(250), 100.0);
        assert_eq!(c.ns_to_ticks(100.0), 250);
        let mut h = LatencyHist::new();
        h.record_ticks(&c, 250);
        assert_eq!(h.summary("x").p50_ns, 100);
        // The info round-trips through JSON (it is how a child process gets it).
        let back: ClockInfo = serde_json::from_str(&serde_json::to_string(&info).unwrap()).unwrap();
        assert_eq!(back, info);
    }

    #[test]
    fn result_json_has_the_contract_fields_and_flattened_extras() {
        let mut r = LatencyHist::new().summary("uds");
        r.extra.insert("lost".into(), serde_json::json!(3));
        let v = serde_json::to_value(&r).unwrap();
        for k in [
            "name",
            "p50_ns",
            "p99_ns",
            "p999_ns",
            "p9999_ns",
            "max_ns",
            "throughput_per_s",
            "count",
        ] {
            assert!(v.get(k).is_some(), "missing {k} in {v}");
        }
        assert!(v["throughput_per_s"].is_null());
        assert_eq!(v["lost"], 3);
        let back: LatencyResult = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn ratio_targets_pass_miss_and_skip() {
        assert_eq!(
            Target::ratio("a", Some(1.1), 1.2, false, "").status,
            TargetStatus::Pass
        );
        assert_eq!(
            Target::ratio("a", Some(1.3), 1.2, false, "").status,
            TargetStatus::Miss
        );
        assert_eq!(
            Target::ratio("a", Some(3.0), 3.0, true, "").status,
            TargetStatus::Pass
        );
        assert_eq!(
            Target::ratio("a", None, 3.0, true, "not built").status,
            TargetStatus::Skip
        );
    }

    #[test]
    fn table_lists_every_result_row() {
        let mut a = LatencyHist::new();
        a.record_ns(10);
        let mut r = a.summary("tickring");
        r.throughput_per_s = Some(2.5e8);
        let rows = vec![r, a.summary("floor")];
        let mut out = Vec::new();
        write_table(&rows, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("tickring"));
        assert!(text.contains("floor"));
        assert!(text.contains("250.0 M/s"));
    }
}
