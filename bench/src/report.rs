//! The load generator's result, as JSON (for the runner) and as a human summary.
//!
//! Owns: the `Summary` shape and its rendering. Latencies are stored in nanoseconds in the
//! histograms and reported in microseconds.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Percentiles of one latency histogram, in microseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Self {
        let us = |ns: u64| ns as f64 / 1000.0;
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            mean_us: h.mean() / 1000.0,
            p50_us: us(h.value_at_quantile(0.50)),
            p90_us: us(h.value_at_quantile(0.90)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
        }
    }
}

/// Everything one load generator run measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Summary {
    pub target: String,
    pub path: String,
    /// `closed` (fixed concurrency) or `open` (fixed rate).
    pub mode: String,
    pub connections: usize,
    /// Calls in flight at most (closed loop: exactly, once started).
    pub concurrency: usize,
    pub threads: usize,
    /// Open loop: the intended total rate, calls per second.
    pub rate: Option<f64>,
    pub message_bytes: usize,
    pub warmup_s: f64,
    /// Wall time of the measured phase (after warm-up), seconds.
    pub measured_s: f64,
    /// Calls completed in the measured phase (OK and failed).
    pub calls: u64,
    pub ok: u64,
    /// Failed calls by cause: `"<code> <NAME>"` for a gRPC status, or `http <status>`,
    /// `h2 <reason>`, `transport`, `connect`, `timeout`.
    pub errors: BTreeMap<String, u64>,
    /// Completed calls per second in the measured phase.
    pub throughput_rps: f64,
    /// OK calls only. Open loop: measured from the intended send time (coordinated omission
    /// corrected); closed loop: from the actual send.
    pub latency: Percentiles,
    /// Open loop only: OK calls measured from the actual send (what an uncorrected tool shows).
    pub service_time: Option<Percentiles>,
    /// Calls still in flight when the run's hard deadline passed (they are not counted).
    pub unfinished: u64,
    pub reconnects: u64,
    /// Calls including warm-up, for the CPU figure below.
    pub calls_total: u64,
    /// CPU seconds (user + system) the load generator itself used, warm-up included.
    pub loadgen_cpu_s: f64,
    pub loadgen_cpu_us_per_call: f64,
    /// What the TLS connections negotiated (one connection's; all use the same config).
    /// `None` for h2c.
    #[serde(default)]
    pub tls: Option<crate::tls::Negotiated>,
    /// New-connections mode only: each call had a connection of its own, so `calls` are new
    /// connections and `throughput_rps` is new connections (handshakes) per second.
    #[serde(default)]
    pub handshakes: Option<HandshakeSummary>,
}

/// The handshakes of a new-connections run (measured phase).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HandshakeSummary {
    /// Whether the client kept its TLS session cache across connections.
    pub resumption_offered: bool,
    /// Handshakes that were full (certificate verified, new key exchange) and resumed.
    pub full: u64,
    pub resumed: u64,
    /// From the dial to the TLS session established (TCP connect only without TLS).
    pub latency: Percentiles,
}

impl Summary {
    /// A few lines for a person.
    pub fn human(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "target {} {}  mode {}  conns {}  in-flight {}  threads {}  msg {} B{}",
            self.target,
            self.path,
            self.mode,
            self.connections,
            self.concurrency,
            self.threads,
            self.message_bytes,
            self.rate
                .map(|r| format!("  rate {r:.0}/s"))
                .unwrap_or_default()
        );
        let _ = writeln!(
            s,
            "calls {}  ok {}  failed {}  in {:.2}s  => {:.0} calls/s",
            self.calls,
            self.ok,
            self.calls - self.ok,
            self.measured_s,
            self.throughput_rps
        );
        let p = &self.latency;
        let _ = writeln!(
            s,
            "latency us: p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  mean {:.1}",
            p.p50_us, p.p90_us, p.p99_us, p.p999_us, p.max_us, p.mean_us
        );
        if let Some(p) = &self.service_time {
            let _ = writeln!(
                s,
                "service us: p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1} (from actual send)",
                p.p50_us, p.p90_us, p.p99_us, p.p999_us, p.max_us
            );
        }
        if let Some(t) = &self.tls {
            let _ = writeln!(s, "tls: {}", t.line());
        }
        if let Some(h) = &self.handshakes {
            let p = &h.latency;
            let _ = writeln!(
                s,
                "new connections: {:.0}/s  full {}  resumed {}  (resumption {})  handshake us: p50 {:.1}  p99 {:.1}",
                self.throughput_rps,
                h.full,
                h.resumed,
                if h.resumption_offered { "offered" } else { "off" },
                p.p50_us,
                p.p99_us
            );
        }
        for (k, v) in &self.errors {
            let _ = writeln!(s, "error {k}: {v}");
        }
        let _ = writeln!(
            s,
            "loadgen cpu {:.2}s = {:.2} us/call; reconnects {}; unfinished {}",
            self.loadgen_cpu_s, self.loadgen_cpu_us_per_call, self.reconnects, self.unfinished
        );
        s
    }
}
