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
//!
//! # Exposition
//!
//! [`render`] writes the Prometheus text format (0.0.4) with `prometheus-client`'s encoder: a
//! [`Collector`] reads these counters at scrape time and describes each family to the crate,
//! which writes names, labels, escaping and histogram buckets. The crate's own metric types
//! (atomics behind `Arc`s, `Family` maps behind a lock) never reach a shard: a shard still
//! writes only its own [`Counter`]s.
//!
//! The crate's 0.0.4 encoder (since 0.26; before, it wrote only OpenMetrics) keeps the names,
//! labels, HELP texts and types the hand-written encoder had, and no `# EOF` or `_created`.
//! Two things print differently: floats are the shortest that read back exactly (a histogram's
//! `_sum` of `0.0015`, not `0.001500`), and a bucket bound below 1e-4 in exponent form as Go's
//! client writes it: `le="5e-05"`, once `le="0.00005"`. Both parse as the same number.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    prometheus_text, DescriptorEncoder, EncodeGaugeValue, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::status;
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
    /// Answered by ringway itself: the gRPC health service.
    Health,
}

impl Outcome {
    pub const ALL: [Outcome; 9] = [
        Outcome::Routed,
        Outcome::NoHeader,
        Outcome::NotFound,
        Outcome::RedisError,
        Outcome::Malformed,
        Outcome::DialError,
        Outcome::UpstreamReset,
        Outcome::ClientCancel,
        Outcome::Health,
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
            Outcome::Health => "health",
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
    pub calls_by_outcome: [Counter; Outcome::ALL.len()],
    pub calls_in_flight: Gauge,
    /// DATA bytes received from clients and forwarded to targets, and the reverse.
    pub request_bytes: Counter,
    pub response_bytes: Counter,

    // Redis.
    pub redis_lookups: Counter,
    /// Lookups that shared the GET of another lookup of the same key in the same write.
    pub redis_lookups_shared: Counter,
    pub redis_errors: Counter,
    pub redis_timeouts: Counter,
    pub redis_connected: Gauge,
    pub redis_connects: Counter,
    pub redis_disconnects: Counter,
    /// 1 while the shard's last connection attempt was refused authentication.
    pub redis_auth_refused: Gauge,
    /// Connection attempts Redis refused authentication to.
    pub redis_auth_failures: Counter,
    /// 1 while the shard's last connection attempt failed its TLS handshake.
    pub redis_tls_failing: Gauge,
    /// Writes to Redis and the commands they carried: commands / writes = mean pipeline depth.
    pub redis_writes: Counter,
    pub redis_commands: Counter,
    pub redis_max_pipeline_depth: Gauge,
    /// Sentinel mode: connections made to a primary other than the one before (failovers).
    pub redis_primary_switches: Counter,
    /// Sentinel mode: the primary's `host:port` while connected to it, else empty. Written on
    /// connect and disconnect only (never on a call's path), read when scraped.
    pub redis_primary: Mutex<String>,
    /// Cluster mode: slots of the 16384 whose owner the shard's slot map knows.
    pub redis_cluster_slots: Gauge,
    /// Cluster mode: one entry per node the shard has a connection for. The lock is taken when
    /// a node is added or dropped (topology changes) and when scraped, never on a lookup: the
    /// lookup holds the node's `Arc` and bumps its single-writer counters.
    pub redis_nodes: Mutex<Vec<Arc<NodeMetrics>>>,

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
    /// Accepted connections handed to a shard with fewer open (`downstream.balance`).
    pub downstream_handed_off: Counter,
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
    /// TLS handshakes completed, by side; and those that resumed a session.
    pub tls_handshakes: [Counter; 2],
    pub tls_resumed: [Counter; 2],
    /// TLS handshakes that failed, by side and [`tls::Failure`](crate::tls::Failure).
    pub tls_handshake_failures: [[Counter; 6]; 2],
    /// Client connections on the plaintext port that opened with a TLS ClientHello.
    pub downstream_tls_on_plaintext: Counter,
    /// Client streams refused before they were served, indexed like [`Refusal::ALL`].
    pub downstream_streams_refused: [Counter; 2],

    /// Latency histograms as last published by the shard.
    pub latency: Mutex<Latency>,
}

/// Cluster mode: what one shard counts for one node (label `node`).
#[derive(Debug, Default)]
pub struct NodeMetrics {
    /// `host:port`.
    pub node: String,
    pub lookups: Counter,
    /// Lookups that failed for want of the node (connection down, lost, stalled).
    pub errors: Counter,
    pub moved: Counter,
    pub ask: Counter,
    pub reconnects: Counter,
    /// 1 while the shard's connection to the node is up.
    pub connected: Gauge,
    /// Slots the shard's map says the node owns.
    pub slots: Gauge,
}

impl NodeMetrics {
    pub fn new(node: &str) -> NodeMetrics {
        NodeMetrics {
            node: node.to_string(),
            ..NodeMetrics::default()
        }
    }
}

impl ShardMetrics {
    /// The cluster nodes, for scraping and `/readyz`.
    pub fn redis_nodes(&self) -> Vec<Arc<NodeMetrics>> {
        match self.redis_nodes.lock() {
            Ok(nodes) => nodes.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Sets the primary shown by `ringway_redis_primary` (empty: none).
    pub fn set_redis_primary(&self, addr: &str) {
        let mut primary = match self.redis_primary.lock() {
            Ok(primary) => primary,
            Err(poisoned) => poisoned.into_inner(),
        };
        primary.clear();
        primary.push_str(addr);
    }

    pub fn outcome(&self, outcome: Outcome) -> &Counter {
        &self.calls_by_outcome[outcome as usize]
    }

    pub fn tls_failure(&self, side: Side, why: crate::tls::Failure) -> &Counter {
        &self.tls_handshake_failures[side as usize][why as usize]
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
    /// Access-log lines dropped because the writer fell behind; `None` without an access log.
    pub access_log_dropped_lines: Option<u64>,
    /// Configuration reloads (SIGHUP, `POST /reload`) that succeeded and that failed, and why
    /// the last one failed (cleared by a good one).
    pub config_reloads_ok: u64,
    pub config_reloads_failed: u64,
    pub config_reload_error: Option<String>,
    /// TLS reloads (SIGHUP, `POST /reload`) that succeeded and that failed (old kept).
    pub tls_reloads_ok: u64,
    pub tls_reloads_failed: u64,
    /// Whether the last TLS reload failed (its error is on `POST /reload` and stderr).
    pub tls_reload_failing: bool,
    pub draining: bool,
    pub ready: bool,
    pub uptime_seconds: f64,
}

/// Bucket bounds (seconds) of the exported latency histograms.
const BUCKETS_SECONDS: [f64; 19] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The `Content-Type` of [`render`]'s text: the Prometheus text format, version 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Renders all shards' metrics in the Prometheus text format (version 0.0.4). Per-shard series
/// carry a `shard` label; latency histograms are merged across shards.
///
/// The registry lives for one scrape: its one collector reads the shards' counters as they are
/// now, and `process` as the admin thread just gathered it.
pub fn render(shards: &[Arc<ShardMetrics>], process: &ProcessGauges) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape {
        shards: shards.to_vec(),
        process: process.clone(),
    }));
    let mut text = String::with_capacity(16 << 10);
    prometheus_text::encode(&mut text, &registry).expect("writing to a String cannot fail");
    text
}

/// What one scrape exports: the shards' own counters, read where they are, and the process's
/// values. A [`Collector`], so nothing of prometheus-client sits on a shard's call path.
struct Scrape {
    shards: Vec<Arc<ShardMetrics>>,
    process: ProcessGauges,
}

impl fmt::Debug for Scrape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scrape")
            .field("shards", &self.shards.len())
            .field("process", &self.process)
            .finish()
    }
}

impl Collector for Scrape {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        let mut out = Exposition {
            encoder,
            shards: &self.shards,
            shard_ids: (0..self.shards.len()).map(|i| i.to_string()).collect(),
        };
        out.shard_families()?;
        out.latency_histograms()?;
        out.process_families(&self.process)
    }
}

/// The families of one scrape, written in order through the crate's encoder.
struct Exposition<'e, 's> {
    encoder: DescriptorEncoder<'e>,
    shards: &'s [Arc<ShardMetrics>],
    /// The `shard` label's values, the shards' indexes.
    shard_ids: Vec<String>,
}

impl Exposition<'_, '_> {
    fn shard_families(&mut self) -> fmt::Result {
        self.per_shard::<Counter>(
            "ringway_calls_total",
            "Calls whose response carried a gRPC status, by status code.",
            |m, out| {
                for (code, count) in m.calls_by_status.iter().enumerate() {
                    // OK is always there, so the family never looks absent; other codes once seen.
                    if count.get() > 0 || code == 0 {
                        let number = code.to_string();
                        let labels = [
                            ("grpc_status", number.as_str()),
                            ("grpc_code", status::code_name(code)),
                        ];
                        out.series(&labels, count)?;
                    }
                }
                Ok(())
            },
        )?;
        self.per_shard::<Counter>(
            "ringway_call_outcomes_total",
            "Calls by how they ended: routed, or why ringway could not route them.",
            |m, out| {
                for outcome in Outcome::ALL {
                    out.series(&[("outcome", outcome.label())], m.outcome(outcome))?;
                }
                Ok(())
            },
        )?;
        self.per_shard::<Gauge>("ringway_calls_in_flight", "Calls in progress.", |m, out| {
            out.only(&m.calls_in_flight)
        })?;
        self.per_shard::<Counter>(
            "ringway_request_bytes_total",
            "Request DATA bytes forwarded from clients to targets.",
            |m, out| out.only(&m.request_bytes),
        )?;
        self.per_shard::<Counter>(
            "ringway_response_bytes_total",
            "Response DATA bytes forwarded from targets to clients.",
            |m, out| out.only(&m.response_bytes),
        )?;

        self.per_shard::<Counter>(
            "ringway_redis_lookups_total",
            "Route lookups asked of Redis, one per call without the cache (shared ones included).",
            |m, out| out.only(&m.redis_lookups),
        )?;
        self.per_shard::<Counter>(
            "ringway_redis_lookups_shared_total",
            "Route lookups answered by the GET of another lookup of the same key, queued for \
             the same write to Redis (so sent once).",
            |m, out| out.only(&m.redis_lookups_shared),
        )?;
        self.per_shard::<Counter>(
            "ringway_redis_errors_total",
            "Route lookups that failed: Redis unavailable or an error reply.",
            |m, out| out.only(&m.redis_errors),
        )?;
        self.per_shard::<Counter>(
            "ringway_redis_timeouts_total",
            "Route lookups without a reply within lookup_timeout_ms.",
            |m, out| out.only(&m.redis_timeouts),
        )?;
        self.per_shard::<Gauge>(
            "ringway_redis_connected",
            "1 when the shard's Redis connection is up.",
            |m, out| out.only(&m.redis_connected),
        )?;
        self.per_shard::<Counter>(
            "ringway_redis_connects_total",
            "Redis connections established.",
            |m, out| out.only(&m.redis_connects),
        )?;
        self.per_shard::<Counter>(
            "ringway_redis_disconnects_total",
            "Redis connections lost.",
            |m, out| out.only(&m.redis_disconnects),
        )?;
        self.per_shard::<Gauge>(
            "ringway_redis_auth_refused",
            "1 while the shard's last Redis connection attempt was refused authentication.",
            |m, out| out.only(&m.redis_auth_refused),
        )?;
        self.per_shard::<Gauge>(
            "ringway_redis_tls_failing",
            "1 while the shard's last Redis connection attempt failed its TLS handshake.",
            |m, out| out.only(&m.redis_tls_failing),
        )?;
        self.per_shard::<Counter>(
            "ringway_redis_auth_failures_total",
            "Redis connection attempts refused authentication (retried with backoff).",
            |m, out| out.only(&m.redis_auth_failures),
        )?;
        self.per_shard::<Counter>(
            "ringway_redis_writes_total",
            "Writes to Redis; commands_total / writes_total is the mean pipeline depth.",
            |m, out| out.only(&m.redis_writes),
        )?;
        self.per_shard::<Counter>(
            "ringway_redis_commands_total",
            "Commands written to Redis.",
            |m, out| out.only(&m.redis_commands),
        )?;
        self.per_shard::<Gauge>(
            "ringway_redis_pipeline_depth_max",
            "Most commands one write to Redis has carried.",
            |m, out| out.only(&m.redis_max_pipeline_depth),
        )?;
        self.per_shard::<Counter>(
            "ringway_redis_primary_switches_total",
            "Sentinel mode: connections made to a primary other than the one before.",
            |m, out| out.only(&m.redis_primary_switches),
        )?;
        self.per_shard::<Gauge>(
            "ringway_redis_primary",
            "Sentinel mode: 1, labelled with the primary's address, while connected to it.",
            |m, out| {
                let primary = match m.redis_primary.lock() {
                    Ok(primary) => primary.clone(),
                    Err(poisoned) => poisoned.into_inner().clone(),
                };
                // A gauge that is always 1 where it is present: the address is the value.
                static ONE: Gauge = Gauge(AtomicI64::new(1));
                if primary.is_empty() {
                    return Ok(());
                }
                out.series(&[("addr", primary.as_str())], &ONE)
            },
        )?;

        self.per_shard::<Gauge>(
            "ringway_redis_cluster_slots",
            "Cluster mode: slots (of 16384) whose owner the shard's slot map knows.",
            |m, out| out.only(&m.redis_cluster_slots),
        )?;
        type NodeCounter = fn(&NodeMetrics) -> &Counter;
        for (name, help, value) in [
            (
                "ringway_redis_node_lookups_total",
                "Cluster mode: lookups sent to the node.",
                (|n| &n.lookups) as NodeCounter,
            ),
            (
                "ringway_redis_node_errors_total",
                "Cluster mode: lookups that failed for want of the node's connection.",
                |n| &n.errors,
            ),
            (
                "ringway_redis_node_moved_total",
                "Cluster mode: -MOVED redirects the node answered.",
                |n| &n.moved,
            ),
            (
                "ringway_redis_node_ask_total",
                "Cluster mode: -ASK redirects the node answered.",
                |n| &n.ask,
            ),
            (
                "ringway_redis_node_reconnects_total",
                "Cluster mode: connections made to the node after the first.",
                |n| &n.reconnects,
            ),
        ] {
            self.per_shard::<Counter>(name, help, |m, out| {
                for node in m.redis_nodes() {
                    out.series(&[("node", node.node.as_str())], value(&node))?;
                }
                Ok(())
            })?;
        }
        type NodeGauge = fn(&NodeMetrics) -> &Gauge;
        for (name, help, value) in [
            (
                "ringway_redis_node_connected",
                "Cluster mode: 1 while the shard's connection to the node is up.",
                (|n| &n.connected) as NodeGauge,
            ),
            (
                "ringway_redis_node_slots",
                "Cluster mode: slots the shard's slot map says the node owns.",
                |n| &n.slots,
            ),
        ] {
            self.per_shard::<Gauge>(name, help, |m, out| {
                for node in m.redis_nodes() {
                    out.series(&[("node", node.node.as_str())], value(&node))?;
                }
                Ok(())
            })?;
        }

        self.per_shard::<Counter>(
            "ringway_route_cache_hits_total",
            "Route lookups answered by the cache.",
            |m, out| out.only(&m.route_cache_hits),
        )?;
        self.per_shard::<Counter>(
            "ringway_route_cache_misses_total",
            "Route lookups that sent a GET to fill the cache.",
            |m, out| out.only(&m.route_cache_misses),
        )?;
        self.per_shard::<Counter>(
            "ringway_route_cache_coalesced_total",
            "Route lookups that waited for another call's GET of the same key.",
            |m, out| out.only(&m.route_cache_coalesced),
        )?;
        self.per_shard::<Counter>(
            "ringway_route_cache_invalidations_total",
            "Invalidations received from Redis (client tracking), flushes included.",
            |m, out| out.only(&m.route_cache_invalidations),
        )?;
        self.per_shard::<Gauge>(
            "ringway_route_cache_entries",
            "Routes in the cache, lookups in progress included.",
            |m, out| out.only(&m.route_cache_entries),
        )?;

        self.per_shard::<Counter>(
            "ringway_upstream_connections_opened_total",
            "HTTP/2 connections dialed to targets.",
            |m, out| out.only(&m.upstream_connections_opened),
        )?;
        self.per_shard::<Counter>(
            "ringway_upstream_connections_closed_total",
            "Target connections closed, by who closed them.",
            |m, out| {
                out.series(&[("by", "ringway")], &m.upstream_connections_closed_local)?;
                out.series(&[("by", "peer")], &m.upstream_connections_closed_remote)
            },
        )?;
        self.per_shard::<Gauge>(
            "ringway_upstream_connections",
            "Open HTTP/2 connections to targets (the pools' size).",
            |m, out| out.only(&m.upstream_connections_open),
        )?;
        self.per_shard::<Gauge>(
            "ringway_upstream_streams_in_flight",
            "Streams open on target connections.",
            |m, out| out.only(&m.upstream_streams_in_flight),
        )?;
        self.per_shard::<Counter>(
            "ringway_upstream_dial_failures_total",
            "Failed dials to targets (refused, unreachable, timed out).",
            |m, out| out.only(&m.upstream_dial_failures),
        )?;
        self.per_shard::<Counter>(
            "ringway_upstream_keepalive_timeouts_total",
            "Target connections closed because a keepalive PING went unanswered.",
            |m, out| out.only(&m.upstream_keepalive_timeouts),
        )?;
        self.per_shard::<Counter>(
            "ringway_upstream_goaways_received_total",
            "GOAWAY frames received from targets.",
            |m, out| out.only(&m.upstream_goaways_received),
        )?;
        self.per_shard::<Counter>(
            "ringway_upstream_retries_total",
            "Calls retried on a fresh connection after a target refused them unprocessed.",
            |m, out| out.only(&m.upstream_retries),
        )?;

        self.per_shard::<Counter>(
            "ringway_downstream_connections_accepted_total",
            "Client connections accepted.",
            |m, out| out.only(&m.downstream_accepted),
        )?;
        self.per_shard::<Gauge>(
            "ringway_downstream_connections",
            "Open client connections.",
            |m, out| out.only(&m.downstream_open),
        )?;
        self.per_shard::<Counter>(
            "ringway_downstream_connections_refused_total",
            "Client connections closed at once because the connection cap was reached.",
            |m, out| out.only(&m.downstream_refused),
        )?;
        self.per_shard::<Counter>(
            "ringway_downstream_connections_handed_off_total",
            "Client connections this shard accepted and handed to a shard with fewer open \
             (downstream.balance = \"connections\"); the receiving shard counts them as accepted.",
            |m, out| out.only(&m.downstream_handed_off),
        )?;
        self.per_shard::<Counter>(
            "ringway_downstream_goaways_sent_total",
            "GOAWAY frames sent to clients.",
            |m, out| out.only(&m.downstream_goaways_sent),
        )?;
        self.per_shard::<Counter>(
            "ringway_downstream_keepalive_timeouts_total",
            "Client connections closed because a keepalive PING went unanswered.",
            |m, out| out.only(&m.downstream_keepalive_timeouts),
        )?;
        self.per_shard::<Counter>(
            "ringway_downstream_too_many_pings_total",
            "Client connections closed with GOAWAY ENHANCE_YOUR_CALM too_many_pings.",
            |m, out| out.only(&m.downstream_too_many_pings),
        )?;

        self.per_shard::<Counter>(
            "ringway_h2_floods_total",
            "HTTP/2 connections ended with GOAWAY ENHANCE_YOUR_CALM, by side and cause (a flood \
             of frames that do no work, rapid reset, too many stream errors, an oversized header \
             block).",
            |m, out| {
                for side in Side::ALL {
                    for (kind, count) in Flood::ALL.iter().zip(&m.h2_floods[side as usize]) {
                        out.series(&[("side", side.label()), ("kind", kind.label())], count)?;
                    }
                }
                Ok(())
            },
        )?;
        self.per_side(
            "ringway_h2_output_pauses_total",
            "Times a connection was not read because its queued output passed \
             output_buffer_bytes.",
            |m| &m.h2_output_pauses,
        )?;
        self.per_side(
            "ringway_h2_send_timeouts_total",
            "Connections closed because their output did not move for send_timeout_ms.",
            |m| &m.h2_send_timeouts,
        )?;
        self.per_side(
            "ringway_h2_flow_control_errors_total",
            "Peers that sent DATA beyond the flow-control window they were given.",
            |m| &m.h2_flow_control_errors,
        )?;
        self.per_shard::<Counter>(
            "ringway_downstream_streams_refused_total",
            "Client streams refused before they were served: above max_concurrent_streams \
             (RST_STREAM REFUSED_STREAM) or above max_header_list_bytes (HTTP 431).",
            |m, out| {
                for (why, count) in Refusal::ALL.iter().zip(&m.downstream_streams_refused) {
                    out.series(&[("limit", why.label())], count)?;
                }
                Ok(())
            },
        )?;
        self.per_side(
            "ringway_tls_handshakes_total",
            "TLS handshakes completed, by side (downstream: clients; upstream: targets).",
            |m| &m.tls_handshakes,
        )?;
        self.per_side(
            "ringway_tls_resumed_total",
            "TLS handshakes that resumed an earlier session (ticket or session id), by side.",
            |m| &m.tls_resumed,
        )?;
        self.per_shard::<Counter>(
            "ringway_tls_handshake_failures_total",
            "TLS handshakes that failed, by side and reason (not_tls: plaintext on the TLS \
             port; timeout; closed; certificate; alpn; protocol).",
            |m, out| {
                for side in Side::ALL {
                    let counts = &m.tls_handshake_failures[side as usize];
                    for (why, count) in crate::tls::Failure::ALL.iter().zip(counts) {
                        out.series(&[("side", side.label()), ("reason", why.label())], count)?;
                    }
                }
                Ok(())
            },
        )?;
        self.per_shard::<Counter>(
            "ringway_downstream_tls_on_plaintext_port_total",
            "Client connections on the plaintext port that sent a TLS ClientHello (closed at \
             once).",
            |m, out| out.only(&m.downstream_tls_on_plaintext),
        )?;
        self.per_shard::<Counter>(
            "ringway_upstream_flow_control_errors_total",
            "Targets that sent DATA beyond the window ringway gave them (the call ends \
             UNAVAILABLE).",
            |m, out| out.only(&m.h2_flow_control_errors[Side::Upstream as usize]),
        )
    }

    fn latency_histograms(&mut self) -> fmt::Result {
        let mut merged = Latency::default();
        for m in self.shards {
            if let Ok(latency) = m.latency.lock() {
                let _ = merged.total.add(&latency.total);
                let _ = merged.overhead.add(&latency.overhead);
                let _ = merged.lookup.add(&latency.lookup);
            }
        }
        self.histogram(
            "ringway_call_duration_seconds",
            "Call duration, request headers to the end of both directions (published each \
             second).",
            &merged.total,
        )?;
        self.histogram(
            "ringway_overhead_seconds",
            "Time ringway adds before a call reaches its target: lookup, target choice, lease, \
             dial (published each second).",
            &merged.overhead,
        )?;
        self.histogram(
            "ringway_redis_lookup_seconds",
            "Route lookup latency, request to Redis reply (published each second).",
            &merged.lookup,
        )
    }

    fn process_families(&mut self, process: &ProcessGauges) -> fmt::Result {
        self.gauge(
            "ringway_process_open_fds",
            "Open file descriptors.",
            process.open_fds,
        )?;
        self.gauge(
            "ringway_process_max_fds",
            "RLIMIT_NOFILE soft limit.",
            process.max_fds,
        )?;
        // Always described, even when /proc could not be read and it has no series.
        let mut family = descriptor(
            &mut self.encoder,
            "ringway_tcp_sockets",
            "The process's TCP sockets by state (TIME_WAIT: those on the service port or towards \
             Redis and targets).",
            MetricType::Gauge,
        )?;
        for (state, count) in [
            ("ESTABLISHED", process.tcp_established),
            ("TIME_WAIT", process.tcp_time_wait),
            ("CLOSE_WAIT", process.tcp_close_wait),
        ] {
            if let Some(count) = count {
                family
                    .encode_family(&[("state", state)])?
                    .encode_gauge(&count)?;
            }
        }
        self.counter(
            "ringway_host_tcp_retransmitted_segments_total",
            "TCP segments retransmitted by the whole host (/proc/net/snmp RetransSegs).",
            process.tcp_retransmitted_segments,
        )?;
        self.gauge(
            "ringway_draining",
            "1 while a graceful drain is in progress.",
            Some(u64::from(process.draining)),
        )?;
        self.gauge(
            "ringway_ready",
            "1 when every shard has Redis and nothing is draining.",
            Some(u64::from(process.ready)),
        )?;
        // Milliseconds are all a scrape interval can tell apart.
        let uptime = (process.uptime_seconds * 1e3).round() / 1e3;
        self.gauge(
            "ringway_uptime_seconds",
            "Seconds since start.",
            Some(uptime),
        )?;
        let mut family = descriptor(
            &mut self.encoder,
            "ringway_config_reloads_total",
            "Configuration reloads (SIGHUP, POST /reload), by result; a failed one changes nothing.",
            MetricType::Counter,
        )?;
        for (result, count) in [
            ("ok", process.config_reloads_ok),
            ("error", process.config_reloads_failed),
        ] {
            family
                .encode_family(&[("result", result)])?
                .encode_counter::<NoLabelSet, _, u64>(&count, None)?;
        }
        let mut family = descriptor(
            &mut self.encoder,
            "ringway_config_reload_error",
            "1, with the reason as its label, while the last configuration reload failed.",
            MetricType::Gauge,
        )?;
        if let Some(message) = &process.config_reload_error {
            family
                .encode_family(&[("error", message.as_str())])?
                .encode_gauge(&1u64)?;
        }
        let mut family = descriptor(
            &mut self.encoder,
            "ringway_tls_reloads_total",
            "TLS certificate and key reloads (SIGHUP, POST /reload), by result; a failed one \
             keeps the old material.",
            MetricType::Counter,
        )?;
        for (result, count) in [
            ("ok", process.tls_reloads_ok),
            ("error", process.tls_reloads_failed),
        ] {
            family
                .encode_family(&[("result", result)])?
                .encode_counter::<NoLabelSet, _, u64>(&count, None)?;
        }
        self.gauge(
            "ringway_tls_reload_failing",
            "1 when the last TLS reload failed and the old certificates are still in use.",
            Some(u64::from(process.tls_reload_failing)),
        )?;
        self.counter(
            "ringway_access_log_dropped_lines_total",
            "Access-log lines dropped because the writer fell behind.",
            process.access_log_dropped_lines,
        )
    }

    /// One family of per-shard series: `series` writes each shard's, which carry the `shard`
    /// label first. The family's type is that of the values it reads (`T`).
    fn per_shard<T: ShardValue>(
        &mut self,
        name: &str,
        help: &str,
        series: impl Fn(&ShardMetrics, &mut ShardSeries<'_, '_, T>) -> fmt::Result,
    ) -> fmt::Result {
        let mut family = descriptor(&mut self.encoder, name, help, T::TYPE)?;
        for (m, shard) in self.shards.iter().zip(&self.shard_ids) {
            series(
                m,
                &mut ShardSeries {
                    family: &mut family,
                    shard,
                    value: PhantomData,
                },
            )?;
        }
        Ok(())
    }

    /// A per-shard counter family with one series per [`Side`].
    fn per_side(
        &mut self,
        name: &str,
        help: &str,
        counters: fn(&ShardMetrics) -> &[Counter; 2],
    ) -> fmt::Result {
        self.per_shard::<Counter>(name, help, |m, out| {
            for side in Side::ALL {
                out.series(&[("side", side.label())], &counters(m)[side as usize])?;
            }
            Ok(())
        })
    }

    /// A process-wide gauge, left out when it could not be read.
    fn gauge(
        &mut self,
        name: &str,
        help: &str,
        value: Option<impl EncodeGaugeValue>,
    ) -> fmt::Result {
        if let Some(value) = value {
            descriptor(&mut self.encoder, name, help, MetricType::Gauge)?.encode_gauge(&value)?;
        }
        Ok(())
    }

    /// A process-wide counter, left out when it could not be read.
    fn counter(&mut self, name: &str, help: &str, value: Option<u64>) -> fmt::Result {
        if let Some(value) = value {
            descriptor(&mut self.encoder, name, help, MetricType::Counter)?
                .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
        }
        Ok(())
    }

    /// A latency histogram (microseconds) exported in seconds with [`BUCKETS_SECONDS`].
    fn histogram(&mut self, name: &str, help: &str, h: &Histogram<u64>) -> fmt::Result {
        // The crate takes each bucket's own count and adds them up itself.
        let mut below = 0;
        let buckets: Vec<(f64, u64)> = BUCKETS_SECONDS
            .iter()
            .map(|&bound| {
                let micros = (bound * 1e6) as u64;
                let cumulative = if h.is_empty() {
                    0
                } else {
                    h.count_between(0, micros)
                };
                let own = cumulative.saturating_sub(below);
                below = cumulative;
                (bound, own)
            })
            .collect();
        // Rounded to microseconds, the unit recorded, so the sum does not print float noise.
        let sum_seconds = (h.mean() * h.len() as f64).round() / 1e6;
        descriptor(&mut self.encoder, name, help, MetricType::Histogram)?
            .encode_histogram::<NoLabelSet>(sum_seconds, h.len(), &buckets, None)
    }
}

/// A family's HELP and TYPE. `name` is the exported one: for a counter the crate appends
/// `_total` itself, so it is given the name without it.
fn descriptor<'s>(
    encoder: &'s mut DescriptorEncoder<'_>,
    name: &'s str,
    help: &str,
    kind: MetricType,
) -> Result<MetricEncoder<'s>, fmt::Error> {
    let name = match kind {
        MetricType::Counter => name
            .strip_suffix("_total")
            .expect("counter names end with _total"),
        _ => name,
    };
    encoder.encode_descriptor(name, help, None, kind)
}

/// One shard's series of a family, each labelled `shard` first.
struct ShardSeries<'f, 'e, T> {
    family: &'f mut MetricEncoder<'e>,
    shard: &'f str,
    value: PhantomData<T>,
}

impl<T: ShardValue> ShardSeries<'_, '_, T> {
    /// The shard's one series, labelled by the shard alone.
    fn only(&mut self, value: &T) -> fmt::Result {
        self.series(&[], value)
    }

    /// A series with `labels` after `shard`.
    fn series(&mut self, labels: &[(&str, &str)], value: &T) -> fmt::Result {
        let mut all = Vec::with_capacity(1 + labels.len());
        all.push(("shard", self.shard));
        all.extend_from_slice(labels);
        value.encode(self.family.encode_family(&all)?)
    }
}

/// A shard's single-writer value, read with a relaxed load, as the type it is exported as.
trait ShardValue {
    const TYPE: MetricType;
    fn encode(&self, series: MetricEncoder<'_>) -> fmt::Result;
}

impl ShardValue for Counter {
    const TYPE: MetricType = MetricType::Counter;
    fn encode(&self, mut series: MetricEncoder<'_>) -> fmt::Result {
        series.encode_counter::<NoLabelSet, _, u64>(&self.get(), None)
    }
}

impl ShardValue for Gauge {
    const TYPE: MetricType = MetricType::Gauge;
    fn encode(&self, mut series: MetricEncoder<'_>) -> fmt::Result {
        series.encode_gauge(&self.get())
    }
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
        let text = render(&[Arc::new(m)], &ProcessGauges::default());
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
    fn text_format_0_0_4() {
        let shards = [Arc::default(), Arc::<ShardMetrics>::default()];
        shards[1].redis_lookups.add(7);
        shards[1].calls_in_flight.set(-1);
        shards[0].flood(Side::Upstream, Flood::ALL[0]).inc();
        for micros in [30, 1500] {
            shards[0]
                .latency
                .lock()
                .unwrap()
                .lookup
                .record(micros)
                .unwrap();
        }
        let process = ProcessGauges {
            tcp_time_wait: Some(4),
            uptime_seconds: 12.345_678,
            ..Default::default()
        };
        let text = render(&shards, &process);
        for line in [
            // A counter's family is named with `_total`, as the 0.0.4 format has it.
            "# HELP ringway_redis_lookups_total Route lookups asked of Redis, one per call without the cache (shared ones included).",
            "# TYPE ringway_redis_lookups_total counter",
            "ringway_redis_lookups_total{shard=\"0\"} 0",
            "ringway_redis_lookups_total{shard=\"1\"} 7",
            "ringway_calls_in_flight{shard=\"1\"} -1",
            "ringway_h2_floods_total{shard=\"0\",side=\"upstream\",kind=\"settings\"} 1",
            "ringway_h2_output_pauses_total{shard=\"1\",side=\"downstream\"} 0",
            "ringway_upstream_connections_closed_total{shard=\"0\",by=\"peer\"} 0",
            "ringway_redis_lookup_seconds_bucket{le=\"5e-05\"} 1",
            "ringway_redis_lookup_seconds_bucket{le=\"0.001\"} 1",
            "ringway_redis_lookup_seconds_bucket{le=\"0.0025\"} 2",
            "ringway_redis_lookup_seconds_bucket{le=\"60\"} 2",
            "ringway_redis_lookup_seconds_bucket{le=\"+Inf\"} 2",
            "ringway_redis_lookup_seconds_sum 0.00153",
            "ringway_redis_lookup_seconds_count 2",
            "ringway_call_duration_seconds_sum 0.0",
            "# TYPE ringway_tcp_sockets gauge",
            "ringway_tcp_sockets{state=\"TIME_WAIT\"} 4",
            "ringway_ready 0",
            "ringway_uptime_seconds 12.346",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "no line {line:?} in:\n{text}"
            );
        }
        // Unread values are left out; nothing of OpenMetrics.
        assert!(!text.contains("ringway_process_open_fds"));
        assert!(!text.contains("ringway_tcp_sockets{state=\"ESTABLISHED\""));
        assert!(!text.contains("ringway_access_log_dropped_lines_total"));
        assert!(!text.contains("# EOF") && !text.contains("_created"));
        assert!(text.ends_with('\n'));
        assert_eq!(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");

        let process = ProcessGauges {
            access_log_dropped_lines: Some(2),
            ..process
        };
        let text = render(&shards, &process);
        assert!(text.ends_with(
            "# TYPE ringway_access_log_dropped_lines_total counter\n\
             ringway_access_log_dropped_lines_total 2\n"
        ));
    }

    #[test]
    fn gauge_high_water_mark() {
        let g = Gauge::default();
        g.max(3);
        g.max(2);
        assert_eq!(g.get(), 3);
    }
}
