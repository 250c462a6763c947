//! What ringway counts on `/metrics`, checked against what the test did: after a known mix of
//! calls — every gRPC status and call outcome, over several connections and two shards — each
//! family holds exactly what the calls should have made it hold; and the text is valid
//! Prometheus exposition format (`ringway_testkit::exposition`), before any call and after
//! calls of every kind.
//!
//! A mixed load is the expensive part (hundreds of calls, then the shards' next histogram
//! publication), so each runs once per test binary and keeps the scrape it ended with
//! ([`mixed_load`], [`format_load`]); every test below checks one family of that scrape.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use ringway_testkit::admin::{has_sample, metric_sum, Response};
use ringway_testkit::exposition::{check_exposition, check_histogram};
use ringway_testkit::mixed::{drive, mixed_plan, Keys, Kind};
use ringway_testkit::{admin, closed_addr, eventually, run, Env, TempPath};

const RINGWAY: &str = env!("CARGO_BIN_EXE_ringway");
const LIMIT: Duration = Duration::from_secs(120);
/// Shards publish latency histograms every second (`metrics::PUBLISH_INTERVAL`); a scrape
/// waits this long at most for the calls to show in them.
const PUBLISHED_WITHIN: Duration = Duration::from_secs(5);

/// Scrapes `env` until every histogram `_count` in `want` has reached its value (the calls
/// are all recorded and published; counters and gauges are final by then, as a call is
/// recorded after its lease is let go and before its counters are read); that scrape.
async fn scrape_published(env: &Env, want: &[(&str, f64)]) -> String {
    eventually(
        PUBLISHED_WITHIN,
        "the calls show in the published histograms",
        || async {
            let text = env.metrics();
            let short: Vec<String> = want
                .iter()
                .map(|(name, n)| (name, *n, metric_sum(&text, name, &[])))
                .filter(|(_, n, seen)| seen < n)
                .map(|(name, n, seen)| format!("{name} {seen} of {n}"))
                .collect();
            if short.is_empty() {
                Ok(text)
            } else {
                Err(short.join(", "))
            }
        },
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// Counts after a known mix of calls

/// Calls of each kind in [`mixed_load`].
const OK: usize = 500;
const NO_HEADER: usize = 37;
const MISSING: usize = 23;
const DENIED: usize = 11;
const CLOSED: usize = 9;
/// Client connections the load is spread over, and calls in flight at once.
const CONNECTIONS: usize = 4;
const IN_FLIGHT: usize = 32;
/// Calls that reached an upstream (OK and denied ones).
const ROUTED: f64 = (OK + DENIED) as f64;
/// Calls with a routing header, each looked up in Redis: all but the header-less ones.
const LOOKUPS: f64 = (OK + DENIED + MISSING + CLOSED) as f64;

/// The scrape after [`mixed_load`]'s calls, and what the calls sent and received.
struct Loaded {
    text: String,
    /// Calls made.
    total: f64,
    /// Payload bytes sent on OK calls.
    ok_payload: usize,
    /// Payload bytes received.
    ok_replies: usize,
}

impl Loaded {
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_sum(&self.text, name, labels)
    }
}

/// Ringway with two shards and one upstream; [`OK`] + [`NO_HEADER`] + [`MISSING`] +
/// [`DENIED`] + [`CLOSED`] calls over [`CONNECTIONS`] connections, each checked to end with
/// its kind's status; then the scrape once they show in the histograms, taken while the
/// client connections are still open. Run once, by the first test that asks.
fn mixed_load() -> &'static Loaded {
    static LOADED: OnceLock<Loaded> = OnceLock::new();
    LOADED.get_or_init(|| {
        run(LIMIT, async {
            let keys = Keys {
                per_call: false,
                prefix: "obs".into(),
                closed: "obs-closed".into(),
            };
            let env = Env::builder(RINGWAY)
                .shards(2)
                .upstream("a")
                .route(&keys.ok(0), "a")
                .route_value(&keys.closed, closed_addr())
                .start()
                .await;
            let mut clients = Vec::new();
            for _ in 0..CONNECTIONS {
                clients.push(env.client().await);
            }
            let plan = mixed_plan(&[
                (Kind::Ok, OK),
                (Kind::NoHeader, NO_HEADER),
                (Kind::Missing, MISSING),
                (Kind::Denied, DENIED),
                (Kind::Closed, CLOSED),
            ]);
            let done = drive(&clients, &plan, &keys, IN_FLIGHT).await;
            let total = done.len() as f64;
            let text = scrape_published(
                &env,
                &[
                    ("ringway_call_duration_seconds_count", total),
                    ("ringway_redis_lookup_seconds_count", LOOKUPS),
                    ("ringway_overhead_seconds_count", ROUTED),
                ],
            )
            .await;
            drop(clients);
            Loaded {
                text,
                total,
                ok_payload: done
                    .iter()
                    .filter(|d| d.kind == Kind::Ok)
                    .map(|d| d.payload_len)
                    .sum(),
                ok_replies: done.iter().map(|d| d.reply_len).sum(),
            }
        })
    })
}

#[test]
fn calls_total_counts_each_call_under_its_grpc_status() {
    let load = mixed_load();
    let by_status: BTreeMap<&str, usize> = [
        ("0", OK),
        ("3", NO_HEADER),
        ("5", MISSING),
        ("7", DENIED),
        ("14", CLOSED),
    ]
    .into_iter()
    .collect();
    for (code, want) in &by_status {
        assert_eq!(
            load.sum("ringway_calls_total", &[("grpc_status", code)]),
            *want as f64,
            "ringway_calls_total{{grpc_status=\"{code}\"}}"
        );
    }
    assert_eq!(
        load.sum("ringway_calls_total", &[]),
        load.total,
        "no call counted under another status"
    );
}

#[test]
fn call_outcomes_count_each_call_under_its_outcome() {
    let load = mixed_load();
    let by_outcome = [
        ("routed", ROUTED),
        ("no_header", NO_HEADER as f64),
        ("not_found", MISSING as f64),
        ("dial_error", CLOSED as f64),
        ("redis_error", 0.0),
        ("malformed_route", 0.0),
        ("upstream_reset", 0.0),
        ("client_cancel", 0.0),
        ("health", 0.0),
    ];
    for (outcome, want) in by_outcome {
        assert_eq!(
            load.sum("ringway_call_outcomes_total", &[("outcome", outcome)]),
            want,
            "ringway_call_outcomes_total{{outcome=\"{outcome}\"}}"
        );
    }
    assert_eq!(load.sum("ringway_call_outcomes_total", &[]), load.total);
}

/// Every call with the header is looked up: OK, denied, missing and closed-port ones.
#[test]
fn redis_lookups_count_every_call_with_a_routing_header() {
    let load = mixed_load();
    assert_eq!(load.sum("ringway_redis_lookups_total", &[]), LOOKUPS);
    assert_eq!(load.sum("ringway_redis_errors_total", &[]), 0.0);
    assert_eq!(load.sum("ringway_redis_timeouts_total", &[]), 0.0);
}

#[test]
fn byte_counters_cover_the_payloads_sent_and_received() {
    let load = mixed_load();
    let request_bytes = load.sum("ringway_request_bytes_total", &[]);
    assert!(
        request_bytes >= load.ok_payload as f64,
        "request bytes {request_bytes} < {} payload bytes sent on OK calls",
        load.ok_payload
    );
    let response_bytes = load.sum("ringway_response_bytes_total", &[]);
    assert!(
        response_bytes >= load.ok_replies as f64,
        "response bytes {response_bytes} < {} payload bytes received",
        load.ok_replies
    );
}

#[test]
fn in_flight_gauges_are_zero_once_the_calls_are_done() {
    let load = mixed_load();
    assert_eq!(load.sum("ringway_calls_in_flight", &[]), 0.0);
    assert_eq!(load.sum("ringway_upstream_streams_in_flight", &[]), 0.0);
}

#[test]
fn upstream_connections_and_dial_failures_are_counted() {
    let load = mixed_load();
    assert!(
        load.sum("ringway_upstream_connections", &[]) >= 1.0,
        "{}",
        load.text
    );
    assert!(load.sum("ringway_upstream_dial_failures_total", &[]) >= 1.0);
}

#[test]
fn downstream_connections_are_counted_accepted_and_open() {
    let load = mixed_load();
    assert_eq!(
        load.sum("ringway_downstream_connections_accepted_total", &[]),
        CONNECTIONS as f64
    );
    assert_eq!(
        load.sum("ringway_downstream_connections", &[]),
        CONNECTIONS as f64
    );
}

/// Histograms: every call in the total; lookups and routed calls in their own.
#[test]
fn histograms_count_every_call_lookup_and_routed_call() {
    let load = mixed_load();
    assert_eq!(
        check_histogram(&load.text, "ringway_call_duration_seconds"),
        load.total
    );
    assert_eq!(
        check_histogram(&load.text, "ringway_redis_lookup_seconds"),
        LOOKUPS
    );
    assert_eq!(
        check_histogram(&load.text, "ringway_overhead_seconds"),
        ROUTED
    );
}

/// Pipelining: at least one write, carrying at least one command each; both shards connected.
#[test]
fn redis_pipeline_writes_commands_and_connections_are_counted() {
    let load = mixed_load();
    let writes = load.sum("ringway_redis_writes_total", &[]);
    let commands = load.sum("ringway_redis_commands_total", &[]);
    assert!(writes >= 1.0, "ringway_redis_writes_total {writes}");
    assert!(commands >= writes, "commands {commands} < writes {writes}");
    assert!(load.sum("ringway_redis_pipeline_depth_max", &[]) >= 1.0);
    assert_eq!(load.sum("ringway_redis_connected", &[]), 2.0, "both shards");
}

#[test]
fn process_descriptors_and_tcp_sockets_are_reported() {
    let load = mixed_load();
    for name in ["ringway_process_open_fds", "ringway_process_max_fds"] {
        assert!(
            has_sample(&load.text, name),
            "{name} missing:\n{}",
            load.text
        );
    }
    let open_fds = load.sum("ringway_process_open_fds", &[]);
    let max_fds = load.sum("ringway_process_max_fds", &[]);
    assert!(
        open_fds >= 1.0 && open_fds <= max_fds,
        "open fds {open_fds}, max {max_fds}"
    );
    let established = load.sum("ringway_tcp_sockets", &[("state", "ESTABLISHED")]);
    assert!(
        established >= 1.0,
        "ringway_tcp_sockets{{state=\"ESTABLISHED\"}} = {established}"
    );
}

#[test]
fn ready_and_draining_gauges_say_ready_and_not_draining() {
    let load = mixed_load();
    assert_eq!(load.sum("ringway_ready", &[]), 1.0);
    assert_eq!(load.sum("ringway_draining", &[]), 0.0);
}

// ---------------------------------------------------------------------------------------------
// The exposition format

/// Calls in [`format_load`]: enough of every kind that each status and outcome series and the
/// histograms carry values.
const FORMAT_CALLS: f64 = 60.0;

/// `/metrics` of one gateway (two shards, access log on), before any call and after calls of
/// every kind.
struct Scrapes {
    /// Before any call: empty histograms, zero counters.
    idle: Response,
    /// Once [`FORMAT_CALLS`] calls show in the histograms.
    loaded: String,
}

/// Runs once, by the first test that asks.
fn format_load() -> &'static Scrapes {
    static SCRAPES: OnceLock<Scrapes> = OnceLock::new();
    SCRAPES.get_or_init(|| {
        run(LIMIT, async {
            let keys = Keys {
                per_call: false,
                prefix: "fmt".into(),
                closed: "fmt-closed".into(),
            };
            let log = TempPath::new("format.log");
            let env = Env::builder(RINGWAY)
                .shards(2)
                .upstream("a")
                .route(&keys.ok(0), "a")
                .route_value(&keys.closed, closed_addr())
                .args(&["--access-log", log.as_str()])
                .start()
                .await;
            let idle = admin::fetch(env.admin_addr(), "GET", "/metrics").expect("GET /metrics");
            let client = env.client().await;
            let plan = mixed_plan(&[
                (Kind::Ok, 40),
                (Kind::NoHeader, 5),
                (Kind::Missing, 5),
                (Kind::Denied, 5),
                (Kind::Closed, 5),
            ]);
            drive(&[client], &plan, &keys, 8).await;
            let loaded = scrape_published(
                &env,
                &[("ringway_call_duration_seconds_count", FORMAT_CALLS)],
            )
            .await;
            Scrapes { idle, loaded }
        })
    })
}

#[test]
fn metrics_are_served_as_prometheus_text_version_0_0_4() {
    let idle = &format_load().idle;
    assert_eq!(idle.status, 200);
    assert!(
        idle.head
            .to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{}",
        idle.head
    );
}

#[test]
fn metrics_before_any_call_are_valid_exposition_text() {
    check_exposition(&format_load().idle.body);
}

#[test]
fn metrics_after_calls_of_every_kind_are_valid_exposition_text() {
    let text = &format_load().loaded;
    check_exposition(text);
    assert_eq!(
        metric_sum(text, "ringway_call_duration_seconds_count", &[]),
        FORMAT_CALLS
    );
}

/// Its absence without the log is `access_log.rs`'s `no_access_log_without_the_flag`.
#[test]
fn access_log_dropped_lines_family_is_there_when_the_log_is_on() {
    assert!(
        has_sample(
            &format_load().loaded,
            "ringway_access_log_dropped_lines_total"
        ),
        "the access log's family is there when it is on"
    );
}
