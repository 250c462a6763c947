//! Per-shard counters, gauges and latency histograms, and their Prometheus rendering.
//!
//! # No contention on the call path
//!
//! Each shard owns one [`ShardMetrics`] and is its only writer. A [`Counter`] is an `AtomicU64`
//! updated by a relaxed load and a relaxed store — two plain `mov`s on x86, no `lock` prefix, no
//! cache line bouncing, because no other thread ever writes it. The admin thread reads them
//! with relaxed loads whenever it is scraped; a value may be a few calls stale, never torn.
//!
//! Latency is recorded into shard-local `hdrhistogram`s (plain memory, ~20 ns a record) and
//! published to the shared [`ShardMetrics::latency`] slot once a second by the shard's control
//! task, so histograms seen on `/metrics` lag by at most [`PUBLISH_INTERVAL`]. The admin thread
//! merges the shards' histograms only when scraped.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::wire::{Flood, Refusal};

/// How often a shard publishes its latency histograms.
pub const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

/// A monotonically increasing count with a single writer (its shard).
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    #[inline]
    pub fn add(&self, n: u64) {
        // Single writer: load + store is exact and needs no read-modify-write instruction.
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// A value that goes up and down, with a single writer.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    #[inline]
    pub fn inc(&self) {
        self.set(self.get() + 1);
    }

    #[inline]
    pub fn dec(&self) {
        self.set(self.get() - 1);
    }

    #[inline]
    pub fn set(&self, v: i64) {
        self.0.store(v, Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.load(Relaxed)
    }

    /// Raises the gauge to `v` if `v` is larger (a high-water mark).
    #[inline]
    pub fn max(&self, v: i64) {
        if v > self.get() {
            self.set(v);
        }
    }
}

/// How a call ended, from ringway's point of view. One counter each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Routed and relayed; the target answered (with any gRPC status).
    Routed,
    /// No routing header.
    NoHeader,
    /// The key is not in Redis.
    NotFound,
    /// Redis unavailable, timed out, or answered an error.
    RedisError,
    /// The value in Redis is not a valid route.
    Malformed,
    /// Dialing the target failed.
    DialError,
    /// The target reset the stream or its connection broke mid-call.
    UpstreamReset,
    /// The client cancelled (reset its stream) before the call ended.
    ClientCancel,
}

impl Outcome {
    pub const ALL: [Outcome; 8] = [
        Outcome::Routed,
        Outcome::NoHeader,
        Outcome::NotFound,
        Outcome::RedisError,
        Outcome::Malformed,
        Outcome::DialError,
        Outcome::UpstreamReset,
        Outcome::ClientCancel,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Routed => "routed",
            Outcome::NoHeader => "no_header",
            Outcome::NotFound => "not_found",
            Outcome::RedisError => "redis_error",
            Outcome::Malformed => "malformed_route",
            Outcome::DialError => "dial_error",
            Outcome::UpstreamReset => "upstream_reset",
            Outcome::ClientCancel => "client_cancel",
        }
    }
}

/// Latency histograms in microseconds, 1 µs to 60 s at 2 significant digits (1% error, 40 KiB
/// each).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 2).expect("static histogram bounds are valid")
}

/// The latency histograms a shard publishes.
#[derive(Clone)]
pub struct Latency {
    /// From a call's request headers to its end (both directions done).
    pub total: Histogram<u64>,
    /// The part ringway adds before the call reaches its target: routing header to upstream
    /// request sent (lookup, target choice, lease, and a dial when one was needed).
    pub overhead: Histogram<u64>,
    /// Route lookups: request to Redis reply.
    pub lookup: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            total: new_histogram(),
            overhead: new_histogram(),
            lookup: new_histogram(),
        }
    }
}

/// Everything one shard counts. Written by that shard only; read by the admin thread.
#[derive(Default)]
pub struct ShardMetrics {
    // Calls.
    /// Calls whose response carried a gRPC status, by status code (0..=16).
    pub calls_by_status: [Counter; 17],
    /// Calls by outcome, indexed like [`Outcome::ALL`].
    pub calls_by_outcome: [Counter; 8],
    pub calls_in_flight: Gauge,
    /// DATA bytes received from clients and forwarded to targets, and the reverse.
    pub request_bytes: Counter,
    pub response_bytes: Counter,

    // Redis.
    pub redis_lookups: Counter,
    pub redis_errors: Counter,
    pub redis_timeouts: Counter,
    pub redis_connected: Gauge,
    pub redis_connects: Counter,
    pub redis_disconnects: Counter,
    /// Writes to Redis and the commands they carried: commands / writes = mean pipeline depth.
    pub redis_writes: Counter,
    pub redis_commands: Counter,
    pub redis_max_pipeline_depth: Gauge,

    // Route cache.
    pub route_cache_hits: Counter,
    pub route_cache_misses: Counter,
    /// Lookups that waited on another call's GET for the same key.
    pub route_cache_coalesced: Counter,
    pub route_cache_invalidations: Counter,
    pub route_cache_entries: Gauge,

    // Upstream.
    pub upstream_connections_opened: Counter,
    /// Closed by ringway (idle, age, pool shrink, failed keepalive) vs by the target.
    pub upstream_connections_closed_local: Counter,
    pub upstream_connections_closed_remote: Counter,
    pub upstream_connections_open: Gauge,
    pub upstream_streams_in_flight: Gauge,
    pub upstream_dial_failures: Counter,
    pub upstream_keepalive_timeouts: Counter,
    pub upstream_goaways_received: Counter,
    /// Calls retried on a new connection because the target refused their stream unprocessed.
    pub upstream_retries: Counter,

    // Downstream.
    pub downstream_accepted: Counter,
    pub downstream_open: Gauge,
    pub downstream_refused: Counter,
    pub downstream_goaways_sent: Counter,
    pub downstream_keepalive_timeouts: Counter,
    pub downstream_too_many_pings: Counter,

    // HTTP/2 abuse, per side (indexed by [`Side`]).
    /// Connections ended with GOAWAY ENHANCE_YOUR_CALM, by cause (indexed like
    /// [`Flood::ALL`]).
    pub h2_floods: [[Counter; 9]; 2],
    /// Times reading a connection was paused because its queued output passed the limit.
    pub h2_output_pauses: [Counter; 2],
    /// Connections closed because their output did not move for the send timeout.
    pub h2_send_timeouts: [Counter; 2],
    /// Peers that sent DATA beyond a window they were given.
    pub h2_flow_control_errors: [Counter; 2],
    /// Client streams refused before they were served, indexed like [`Refusal::ALL`].
    pub downstream_streams_refused: [Counter; 2],

    /// Latency histograms as last published by the shard.
    pub latency: Mutex<Latency>,
}

impl ShardMetrics {
    pub fn outcome(&self, outcome: Outcome) -> &Counter {
        &self.calls_by_outcome[outcome as usize]
    }

    pub fn flood(&self, side: Side, kind: Flood) -> &Counter {
        let at = Flood::ALL.iter().position(|&k| k == kind).unwrap_or(0);
        &self.h2_floods[side as usize][at]
    }
}

/// Which peers a connection faces: clients (downstream) or targets (upstream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Downstream = 0,
    Upstream = 1,
}

impl Side {
    pub const ALL: [Side; 2] = [Side::Downstream, Side::Upstream];

    pub fn label(self) -> &'static str {
        match self {
            Side::Downstream => "downstream",
            Side::Upstream => "upstream",
        }
    }
}

/// Process-wide values the admin thread gathers itself at scrape time.
#[derive(Debug, Default, Clone)]
pub struct ProcessGauges {
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    pub tcp_established: Option<u64>,
    pub tcp_time_wait: Option<u64>,
    pub tcp_close_wait: Option<u64>,
    pub tcp_retransmitted_segments: Option<u64>,
    pub draining: bool,
    pub ready: bool,
    pub uptime_seconds: f64,
}

/// Bucket bounds (seconds) of the exported latency histograms.
const BUCKETS_SECONDS: [f64; 19] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Renders all shards' metrics in the Prometheus text format (version 0.0.4). Per-shard series
/// carry a `shard` label; latency histograms are merged across shards.
pub fn render(shards: &[&ShardMetrics], process: &ProcessGauges) -> String {
    let mut out = String::with_capacity(16 << 10);
    let per_shard =
        |out: &mut String, name: &str, kind: &str, help: &str, f: &dyn Fn(&ShardMetrics) -> i64| {
            header(out, name, kind, help);
            for (i, m) in shards.iter().enumerate() {
                let _ = writeln!(out, "{name}{{shard=\"{i}\"}} {}", f(m));
            }
        };

    header(
        &mut out,
        "ringway_calls_total",
        "counter",
        "Calls whose response carried a gRPC status, by status code.",
    );
    for (i, m) in shards.iter().enumerate() {
        for (code, c) in m.calls_by_status.iter().enumerate() {
            let v = c.get();
            if v > 0 || code == 0 {
                let _ = writeln!(
                    out,
                    "ringway_calls_total{{shard=\"{i}\",grpc_status=\"{code}\",grpc_code=\"{}\"}} {v}",
                    code_name(code)
                );
            }
        }
    }
    header(
        &mut out,
        "ringway_call_outcomes_total",
        "counter",
        "Calls by how they ended: routed, or why ringway could not route them.",
    );
    for (i, m) in shards.iter().enumerate() {
        for outcome in Outcome::ALL {
            let _ = writeln!(
                out,
                "ringway_call_outcomes_total{{shard=\"{i}\",outcome=\"{}\"}} {}",
                outcome.label(),
                m.outcome(outcome).get()
            );
        }
    }
    per_shard(
        &mut out,
        "ringway_calls_in_flight",
        "gauge",
        "Calls in progress.",
        &|m| m.calls_in_flight.get(),
    );
    per_shard(
        &mut out,
        "ringway_request_bytes_total",
        "counter",
        "Request DATA bytes forwarded from clients to targets.",
        &|m| m.request_bytes.get() as i64,
    );
    per_shard(
        &mut out,
        "ringway_response_bytes_total",
        "counter",
        "Response DATA bytes forwarded from targets to clients.",
        &|m| m.response_bytes.get() as i64,
    );

    per_shard(
        &mut out,
        "ringway_redis_lookups_total",
        "counter",
        "Route lookups sent to Redis.",
        &|m| m.redis_lookups.get() as i64,
    );
    per_shard(
        &mut out,
        "ringway_redis_errors_total",
        "counter",
        "Route lookups that failed: Redis unavailable or an error reply.",
        &|m| m.redis_errors.get() as i64,
    );
    per_shard(
        &mut out,
        "ringway_redis_timeouts_total",
        "counter",
        "Route lookups without a reply within lookup_timeout_ms.",
        &|m| m.redis_timeouts.get() as i64,
    );
    per_shard(
        &mut out,
        "ringway_redis_connected",
        "gauge",
        "1 when the shard's Redis connection is up.",
        &|m| m.redis_connected.get(),
    );
    per_shard(
        &mut out,
        "ringway_redis_connects_total",
        "counter",
        "Redis connections established.",
        &|m| m.redis_connects.get() as i64,
    );
    per_shard(
        &mut out,
        "ringway_redis_disconnects_total",
        "counter",
        "Redis connections lost.",
        &|m| m.redis_disconnects.get() as i64,
    );
    per_shard(
        &mut out,
        "ringway_redis_writes_total",
        "counter",
        "Writes to Redis; commands_total / writes_total is the mean pipeline depth.",
        &|m| m.redis_writes.get() as i64,
    );
    per_shard(
        &mut out,
        "ringway_redis_commands_total",
        "counter",
        "Commands written to Redis.",
        &|m| m.redis_commands.get() as i64,
    );
    per_shard(
        &mut out,
        "ringway_redis_pipeline_depth_max",
        "gauge",
        "Most commands one write to Redis has carried.",
        &|m| m.redis_max_pipeline_depth.get(),
    );

    for (name, kind, help, f) in [
        (
            "ringway_route_cache_hits_total",
            "counter",
            "Route lookups answered by the cache.",
            (|m: &ShardMetrics| m.route_cache_hits.get() as i64) as fn(&ShardMetrics) -> i64,
        ),
        (
            "ringway_route_cache_misses_total",
            "counter",
            "Route lookups that sent a GET to fill the cache.",
            |m| m.route_cache_misses.get() as i64,
        ),
        (
            "ringway_route_cache_coalesced_total",
            "counter",
            "Route lookups that waited for another call's GET of the same key.",
            |m| m.route_cache_coalesced.get() as i64,
        ),
        (
            "ringway_route_cache_invalidations_total",
            "counter",
            "Invalidations received from Redis (client tracking), flushes included.",
            |m| m.route_cache_invalidations.get() as i64,
        ),
        (
            "ringway_route_cache_entries",
            "gauge",
            "Routes in the cache, lookups in progress included.",
            |m| m.route_cache_entries.get(),
        ),
    ] {
        per_shard(&mut out, name, kind, help, &f);
    }

    per_shard(
        &mut out,
        "ringway_upstream_connections_opened_total",
        "counter",
        "HTTP/2 connections dialed to targets.",
        &|m| m.upstream_connections_opened.get() as i64,
    );
    header(
        &mut out,
        "ringway_upstream_connections_closed_total",
        "counter",
        "Target connections closed, by who closed them.",
    );
    for (i, m) in shards.iter().enumerate() {
        let _ = writeln!(
            out,
            "ringway_upstream_connections_closed_total{{shard=\"{i}\",by=\"ringway\"}} {}",
            m.upstream_connections_closed_local.get()
        );
        let _ = writeln!(
            out,
            "ringway_upstream_connections_closed_total{{shard=\"{i}\",by=\"peer\"}} {}",
            m.upstream_connections_closed_remote.get()
        );
    }
    per_shard(
        &mut out,
        "ringway_upstream_connections",
        "gauge",
        "Open HTTP/2 connections to targets (the pools' size).",
        &|m| m.upstream_connections_open.get(),
    );
    per_shard(
        &mut out,
        "ringway_upstream_streams_in_flight",
        "gauge",
        "Streams open on target connections.",
        &|m| m.upstream_streams_in_flight.get(),
    );
    per_shard(
        &mut out,
        "ringway_upstream_dial_failures_total",
        "counter",
        "Failed dials to targets (refused, unreachable, timed out).",
        &|m| m.upstream_dial_failures.get() as i64,
    );
    per_shard(
        &mut out,
        "ringway_upstream_keepalive_timeouts_total",
        "counter",
        "Target connections closed because a keepalive PING went unanswered.",
        &|m| m.upstream_keepalive_timeouts.get() as i64,
    );
    per_shard(
        &mut out,
        "ringway_upstream_goaways_received_total",
        "counter",
        "GOAWAY frames received from targets.",
        &|m| m.upstream_goaways_received.get() as i64,
    );
    per_shard(
        &mut out,
        "ringway_upstream_retries_total",
        "counter",
        "Calls retried on a fresh connection after a target refused them unprocessed.",
        &|m| m.upstream_retries.get() as i64,
    );

    per_shard(
        &mut out,
        "ringway_downstream_connections_accepted_total",
        "counter",
        "Client connections accepted.",
        &|m| m.downstream_accepted.get() as i64,
    );
    per_shard(
        &mut out,
        "ringway_downstream_connections",
        "gauge",
        "Open client connections.",
        &|m| m.downstream_open.get(),
    );
    per_shard(
        &mut out,
        "ringway_downstream_connections_refused_total",
        "counter",
        "Client connections closed at once because the connection cap was reached.",
        &|m| m.downstream_refused.get() as i64,
    );
    per_shard(
        &mut out,
        "ringway_downstream_goaways_sent_total",
        "counter",
        "GOAWAY frames sent to clients.",
        &|m| m.downstream_goaways_sent.get() as i64,
    );
    per_shard(
        &mut out,
        "ringway_downstream_keepalive_timeouts_total",
        "counter",
        "Client connections closed because a keepalive PING went unanswered.",
        &|m| m.downstream_keepalive_timeouts.get() as i64,
    );
    per_shard(
        &mut out,
        "ringway_downstream_too_many_pings_total",
        "counter",
        "Client connections closed with GOAWAY ENHANCE_YOUR_CALM too_many_pings.",
        &|m| m.downstream_too_many_pings.get() as i64,
    );

    header(
        &mut out,
        "ringway_h2_floods_total",
        "counter",
        "HTTP/2 connections ended with GOAWAY ENHANCE_YOUR_CALM, by side and cause (a flood of \
         frames that do no work, rapid reset, too many stream errors, an oversized header block).",
    );
    for (i, m) in shards.iter().enumerate() {
        for side in Side::ALL {
            for (k, kind) in Flood::ALL.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "ringway_h2_floods_total{{shard=\"{i}\",side=\"{}\",kind=\"{}\"}} {}",
                    side.label(),
                    kind.label(),
                    m.h2_floods[side as usize][k].get()
                );
            }
        }
    }
    for (name, help, counters) in [
        (
            "ringway_h2_output_pauses_total",
            "Times a connection was not read because its queued output passed output_buffer_bytes.",
            (|m: &ShardMetrics| &m.h2_output_pauses) as fn(&ShardMetrics) -> &[Counter; 2],
        ),
        (
            "ringway_h2_send_timeouts_total",
            "Connections closed because their output did not move for send_timeout_ms.",
            |m: &ShardMetrics| &m.h2_send_timeouts,
        ),
        (
            "ringway_h2_flow_control_errors_total",
            "Peers that sent DATA beyond the flow-control window they were given.",
            |m: &ShardMetrics| &m.h2_flow_control_errors,
        ),
    ] {
        header(&mut out, name, "counter", help);
        for (i, m) in shards.iter().enumerate() {
            for side in Side::ALL {
                let _ = writeln!(
                    out,
                    "{name}{{shard=\"{i}\",side=\"{}\"}} {}",
                    side.label(),
                    counters(m)[side as usize].get()
                );
            }
        }
    }
    header(
        &mut out,
        "ringway_downstream_streams_refused_total",
        "counter",
        "Client streams refused before they were served: above max_concurrent_streams \
         (RST_STREAM REFUSED_STREAM) or above max_header_list_bytes (HTTP 431).",
    );
    for (i, m) in shards.iter().enumerate() {
        for (k, why) in Refusal::ALL.iter().enumerate() {
            let _ = writeln!(
                out,
                "ringway_downstream_streams_refused_total{{shard=\"{i}\",limit=\"{}\"}} {}",
                why.label(),
                m.downstream_streams_refused[k].get()
            );
        }
    }
    per_shard(
        &mut out,
        "ringway_upstream_flow_control_errors_total",
        "counter",
        "Targets that sent DATA beyond the window ringway gave them (the call ends UNAVAILABLE).",
        &|m| m.h2_flow_control_errors[Side::Upstream as usize].get() as i64,
    );

    let mut merged = Latency::default();
    for m in shards {
        if let Ok(latency) = m.latency.lock() {
            let _ = merged.total.add(&latency.total);
            let _ = merged.overhead.add(&latency.overhead);
            let _ = merged.lookup.add(&latency.lookup);
        }
    }
    histogram(
        &mut out,
        "ringway_call_duration_seconds",
        "Call duration, request headers to the end of both directions (published each second).",
        &merged.total,
    );
    histogram(&mut out, "ringway_overhead_seconds", "Time ringway adds before a call reaches its target: lookup, target choice, lease, dial (published each second).", &merged.overhead);
    histogram(
        &mut out,
        "ringway_redis_lookup_seconds",
        "Route lookup latency, request to Redis reply (published each second).",
        &merged.lookup,
    );

    let gauge = |out: &mut String, name: &str, help: &str, v: Option<u64>| {
        if let Some(v) = v {
            header(out, name, "gauge", help);
            let _ = writeln!(out, "{name} {v}");
        }
    };
    gauge(
        &mut out,
        "ringway_process_open_fds",
        "Open file descriptors.",
        process.open_fds,
    );
    gauge(
        &mut out,
        "ringway_process_max_fds",
        "RLIMIT_NOFILE soft limit.",
        process.max_fds,
    );
    header(&mut out, "ringway_tcp_sockets", "gauge", "The process's TCP sockets by state (TIME_WAIT: those on the service port or towards Redis and targets).");
    for (state, v) in [
        ("ESTABLISHED", process.tcp_established),
        ("TIME_WAIT", process.tcp_time_wait),
        ("CLOSE_WAIT", process.tcp_close_wait),
    ] {
        if let Some(v) = v {
            let _ = writeln!(out, "ringway_tcp_sockets{{state=\"{state}\"}} {v}");
        }
    }
    if let Some(v) = process.tcp_retransmitted_segments {
        header(
            &mut out,
            "ringway_host_tcp_retransmitted_segments_total",
            "counter",
            "TCP segments retransmitted by the whole host (/proc/net/snmp RetransSegs).",
        );
        let _ = writeln!(out, "ringway_host_tcp_retransmitted_segments_total {v}");
    }
    gauge(
        &mut out,
        "ringway_draining",
        "1 while a graceful drain is in progress.",
        Some(process.draining as u64),
    );
    gauge(
        &mut out,
        "ringway_ready",
        "1 when every shard has Redis and nothing is draining.",
        Some(process.ready as u64),
    );
    header(
        &mut out,
        "ringway_uptime_seconds",
        "gauge",
        "Seconds since start.",
    );
    let _ = writeln!(out, "ringway_uptime_seconds {:.3}", process.uptime_seconds);
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn histogram(out: &mut String, name: &str, help: &str, h: &Histogram<u64>) {
    header(out, name, "histogram", help);
    for bound in BUCKETS_SECONDS {
        let micros = (bound * 1e6) as u64;
        let count = if h.is_empty() {
            0
        } else {
            h.count_between(0, micros)
        };
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.len());
    let sum_seconds = h.mean() * h.len() as f64 / 1e6;
    let _ = writeln!(out, "{name}_sum {sum_seconds:.6}");
    let _ = writeln!(out, "{name}_count {}", h.len());
}

/// The gRPC status code's canonical name.
pub fn code_name(code: usize) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    NAMES.get(code).copied().unwrap_or("UNKNOWN")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_render() {
        let m = ShardMetrics::default();
        m.calls_by_status[0].add(3);
        m.calls_by_status[5].inc();
        m.outcome(Outcome::NotFound).inc();
        m.latency.lock().unwrap().total.record(1500).unwrap();
        let text = render(&[&m], &ProcessGauges::default());
        assert!(
            text.contains("ringway_calls_total{shard=\"0\",grpc_status=\"0\",grpc_code=\"OK\"} 3")
        );
        assert!(text.contains("grpc_status=\"5\",grpc_code=\"NOT_FOUND\"} 1"));
        assert!(text.contains("ringway_call_outcomes_total{shard=\"0\",outcome=\"not_found\"} 1"));
        assert!(text.contains("ringway_call_duration_seconds_bucket{le=\"0.001\"} 0"));
        assert!(text.contains("ringway_call_duration_seconds_bucket{le=\"0.0025\"} 1"));
        assert!(text.contains("ringway_call_duration_seconds_count 1"));
    }

    #[test]
    fn gauge_high_water_mark() {
        let g = Gauge::default();
        g.max(3);
        g.max(2);
        assert_eq!(g.get(), 3);
    }
}
