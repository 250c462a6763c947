//! The attacks bench/hostile runs, each bounded, each one call into the testkit's attack
//! library (`ringway_testkit::attack`), and what is kept of what the attacker saw.
//!
//! Owns: each case's parameters and turning a report into the results' shape. It must not
//! start gateways or measure them (the runner does).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ringway_testkit::attack::{
    self, Call, HostileTarget, IdleConnections, Limits, Report, TargetLog, TargetMode,
};
use ringway_testkit::prost::Message;
use ringway_testkit::rawh2::error_name;
use ringway_testkit::tokio;
use ringway_testkit::tonic::transport::Endpoint;
use ringway_testkit::{routed, EchoClient, EchoRequest, MAX_MESSAGE_SIZE};
use serde::Serialize;

/// The routing key of the echo upstream (every gateway's default route).
pub const ROUTE: &str = "bench";
/// The routing key of the hostile target in the target cases.
pub const HOSTILE: &str = "hostile";

/// One attack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    Settings,
    Ping,
    RapidReset,
    RstStream,
    EmptyData,
    EmptyContinuation,
    Continuation,
    Priority,
    WindowUpdate,
    HpackBomb,
    StreamIds,
    Slowloris,
    Invalid,
    /// Streams past MAX_CONCURRENT_STREAMS, without end.
    Refused,
    SlowReader,
    UnreadResponses,
    Abandoned,
    Stalled,
    TargetFlowControl,
    TargetFlood,
    Idle,
}

pub const ALL: [Case; 21] = [
    Case::Settings,
    Case::Ping,
    Case::RapidReset,
    Case::RstStream,
    Case::EmptyData,
    Case::EmptyContinuation,
    Case::Continuation,
    Case::Priority,
    Case::WindowUpdate,
    Case::HpackBomb,
    Case::StreamIds,
    Case::Slowloris,
    Case::Invalid,
    Case::Refused,
    Case::SlowReader,
    Case::UnreadResponses,
    Case::Abandoned,
    Case::Stalled,
    Case::TargetFlowControl,
    Case::TargetFlood,
    Case::Idle,
];

/// How big and how long the attacks are.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Scale {
    /// Longest a flood sends, in seconds.
    pub flood_s: f64,
    /// How long an attacker listens after sending, for the peer's GOAWAY and close.
    pub observe_s: f64,
    /// Connections of the idle case.
    pub idle: usize,
}

impl Scale {
    fn limits(&self, count: u64) -> Limits {
        Limits::new(count, Duration::from_secs_f64(self.flood_s))
            .observe(Duration::from_secs_f64(self.observe_s))
    }
}

impl Case {
    pub fn name(self) -> &'static str {
        match self {
            Case::Settings => "settings-flood",
            Case::Ping => "ping-flood",
            Case::RapidReset => "rapid-reset",
            Case::RstStream => "rst-stream-flood",
            Case::EmptyData => "empty-data-flood",
            Case::EmptyContinuation => "empty-continuation-flood",
            Case::Continuation => "continuation-flood",
            Case::Priority => "priority-flood",
            Case::WindowUpdate => "window-update-flood",
            Case::HpackBomb => "hpack-bomb",
            Case::StreamIds => "stream-id-exhaustion",
            Case::Slowloris => "slowloris",
            Case::Invalid => "invalid-frames",
            Case::Refused => "refused-streams",
            Case::SlowReader => "slow-reader",
            Case::UnreadResponses => "unread-responses",
            Case::Abandoned => "abandoned-calls",
            Case::Stalled => "stalled-client",
            Case::TargetFlowControl => "target-ignores-flow-control",
            Case::TargetFlood => "target-floods-settings-ping",
            Case::Idle => "idle-connections",
        }
    }

    pub fn parse(s: &str) -> Option<Case> {
        ALL.into_iter().find(|c| c.name() == s)
    }

    /// What the attacker does, for the results.
    pub fn describe(self, scale: &Scale) -> String {
        let s = scale.flood_s;
        match self {
            Case::Settings => format!("up to 4,000,000 empty SETTINGS in {s} s, never reading"),
            Case::Ping => format!("up to 3,000,000 PINGs in {s} s, never reading"),
            Case::RapidReset => format!(
                "up to 100,000 × (HEADERS of a unary call answered after 1 s + RST_STREAM) in {s} s"
            ),
            Case::RstStream => {
                format!("one call, then up to 2,000,000 RST_STREAM on its closed stream in {s} s")
            }
            Case::EmptyData => {
                format!("an open call, then up to 2,000,000 empty DATA without END_STREAM in {s} s")
            }
            Case::EmptyContinuation => format!(
                "HEADERS without END_HEADERS, then up to 2,000,000 empty CONTINUATION in {s} s"
            ),
            Case::Continuation => {
                format!(
                    "HEADERS, then up to 4,096 full CONTINUATION (64 MiB), never ending, in {s} s"
                )
            }
            Case::Priority => format!("up to 2,000,000 PRIORITY on new stream ids in {s} s"),
            Case::WindowUpdate => format!(
                "up to 1,000,000 WINDOW_UPDATE(+1) on the connection in {s} s, never reading; \
                 then a call on it"
            ),
            Case::HpackBomb => format!(
                "a 4,000 B dynamic-table entry, then up to 200 requests of 16,000 references \
                 to it (64.6 MB decoded each) in {s} s"
            ),
            Case::StreamIds => "a call on stream 2^31-1, then HEADERS on that id again".into(),
            Case::Slowloris => "400 connections for 12 s: half trickle the preface and \
                                SETTINGS (1 byte / 500 ms: 16.5 s to finish), half silent"
                .into(),
            Case::Invalid => format!("up to 5,000 requests without :path in {s} s"),
            Case::Refused => format!(
                "unary calls answered after 10 s, up to 100,000, well past the gateway's \
                 MAX_CONCURRENT_STREAMS, in {s} s"
            ),
            Case::SlowReader => "windows 2^31-1, 50 server-streaming calls of 64 MiB (1,024 × \
                                 64 KiB), 4 KiB receive buffer, nothing read for 8 s"
                .into(),
            Case::UnreadResponses => "windows 2^31-1, 4 KiB receive buffer, unary calls (16 KiB \
                                      echoed) as fast as the socket takes them for 8 s, no \
                                      response read"
                .into(),
            Case::Abandoned => {
                "500 unary calls in one write, then the connection closed at once".into()
            }
            Case::Stalled => {
                "INITIAL_WINDOW_SIZE 0, 50 server-streaming calls of 64 MiB, no WINDOW_UPDATE, 6 s"
                    .into()
            }
            Case::TargetFlowControl => "a call to a target that sends DATA beyond its window \
                                        (paced 16 KiB / 2 ms past it, up to 64 MiB); the client \
                                        holds its 64 KiB window unread"
                .into(),
            Case::TargetFlood => {
                "a call to a target that floods SETTINGS + PING (up to 4,000,000) and never reads"
                    .into()
            }
            Case::Idle => format!(
                "{} handshaken idle connections, held, then closed",
                scale.idle
            ),
        }
    }

    /// The hostile target this case needs, if any.
    pub fn target(self) -> Option<TargetMode> {
        match self {
            Case::TargetFlowControl => Some(TargetMode::IgnoreWindows {
                ack_settings: true,
                pace: Duration::from_millis(2),
                max_bytes: 64 << 20,
            }),
            Case::TargetFlood => Some(TargetMode::Flood {
                frames: 4_000_000,
                duration: Duration::from_secs(8),
            }),
            _ => None,
        }
    }

    /// Runs the attack against `addr`; `rss` samples the gateway's RSS (the idle case reads
    /// it with its connections open).
    pub async fn run(
        self,
        addr: SocketAddr,
        scale: &Scale,
        target: Option<&HostileTarget>,
        rss: impl Fn() -> u64,
    ) -> Attacked {
        let unary = Call::unary(ROUTE, 0);
        let streaming = Call::server_stream(ROUTE, 64 << 10, 1024);
        let l = |count| scale.limits(count);
        let report = match self {
            Case::Settings => attack::settings_flood(addr, l(4_000_000)).await,
            Case::Ping => attack::ping_flood(addr, l(3_000_000)).await,
            Case::RapidReset => {
                attack::rapid_reset(addr, &Call::unary(ROUTE, 1000), l(100_000)).await
            }
            Case::RstStream => attack::rst_stream_flood(addr, &unary, l(2_000_000)).await,
            Case::EmptyData => attack::empty_data_flood(addr, &unary, l(2_000_000)).await,
            Case::EmptyContinuation => {
                attack::empty_continuation_flood(addr, &unary, l(2_000_000)).await
            }
            Case::Continuation => attack::continuation_flood(addr, &unary, l(4_096)).await,
            Case::Priority => attack::priority_flood(addr, l(2_000_000)).await,
            Case::WindowUpdate => attack::window_update_flood(addr, &unary, l(1_000_000)).await,
            Case::HpackBomb => attack::hpack_bomb(addr, &unary, l(200)).await,
            Case::StreamIds => attack::stream_id_exhaustion(addr, &unary, l(2)).await,
            Case::Invalid => attack::invalid_frames(addr, &unary, l(5_000)).await,
            Case::Refused => {
                attack::refused_streams(addr, &Call::unary(ROUTE, 10_000), l(100_000)).await
            }
            Case::SlowReader => {
                let observe = Duration::from_secs_f64(scale.observe_s);
                attack::slow_reader(addr, &streaming, 50, Duration::from_secs(8), observe).await
            }
            Case::UnreadResponses => {
                let mut call = Call::unary(ROUTE, 0);
                call.message = EchoRequest {
                    payload: vec![7; 16 << 10],
                    ..Default::default()
                }
                .encode_to_vec();
                let limits = Limits::new(1_000_000, Duration::from_secs(8))
                    .observe(Duration::from_secs_f64(scale.observe_s));
                attack::unread_responses(addr, &call, limits).await
            }
            Case::Abandoned => {
                let report = attack::abandoned_calls(addr, &unary, 500).await;
                // The gateway's cancellations play out while the bystander calls on.
                tokio::time::sleep(Duration::from_secs(2)).await;
                report
            }
            Case::Stalled => {
                attack::stalled_client(addr, &streaming, 50, Duration::from_secs(6)).await
            }
            Case::Slowloris => {
                let r = attack::slowloris(
                    addr,
                    400,
                    Duration::from_millis(500),
                    Duration::from_secs(12),
                )
                .await;
                return Attacked {
                    summary: r.summary(),
                    closed: Some(r.closed_by_peer == r.connections),
                    sent: r.connections as u64,
                    bytes_written: r.bytes_written,
                    extra: serde_json::json!({
                        "connections": r.connections,
                        "connect_failed": r.connect_failed,
                        "closed_by_peer": r.closed_by_peer,
                        "still_open": r.still_open,
                        "first_close_s": r.close_times.first().map(Duration::as_secs_f64),
                        "last_close_s": r.close_times.last().map(Duration::as_secs_f64),
                    }),
                    ..Default::default()
                };
            }
            Case::Idle => return idle(addr, scale.idle, rss).await,
            Case::TargetFlowControl => {
                return flow_control_call(addr, target.expect("a hostile target")).await
            }
            Case::TargetFlood => return flood_call(addr, target.expect("a hostile target")).await,
        };
        match report {
            Ok(report) => from_report(&report),
            Err(e) => Attacked {
                summary: format!("{}: could not connect: {e}", self.name()),
                error: Some(e.to_string()),
                ..Default::default()
            },
        }
    }
}

/// What the attacker saw, as kept in the results.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Attacked {
    /// One line: what was sent and what came back.
    pub summary: String,
    /// The GOAWAY's code and debug text, if one came.
    pub goaway: Option<String>,
    /// Whether the gateway closed the attacker's connection(s).
    pub closed: Option<bool>,
    pub sent: u64,
    pub bytes_written: u64,
    pub bytes_read: u64,
    /// RST_STREAM received, by code.
    pub resets: BTreeMap<String, u64>,
    /// Response heads by `:status`.
    pub statuses: BTreeMap<String, u64>,
    /// The outcome of a call the case made itself (the target cases, WINDOW_UPDATE, ids).
    pub call: Option<String>,
    /// Case-specific numbers.
    pub extra: serde_json::Value,
    /// The attack could not run.
    pub error: Option<String>,
}

impl Attacked {
    /// A short form for the table.
    pub fn short(&self) -> String {
        if let Some(e) = &self.error {
            return format!("error: {e}");
        }
        let mut parts = Vec::new();
        match &self.goaway {
            Some(g) => parts.push(format!("GOAWAY {g}")),
            None => parts.push("no GOAWAY".into()),
        }
        match self.closed {
            Some(true) => parts.push("closed".into()),
            Some(false) => parts.push("open".into()),
            None => {}
        }
        if !self.resets.is_empty() {
            let r: Vec<String> = self
                .resets
                .iter()
                .map(|(k, v)| format!("{k}×{v}"))
                .collect();
            parts.push(format!("RST {}", r.join(" ")));
        }
        if !self.statuses.is_empty() {
            let s: Vec<String> = self
                .statuses
                .iter()
                .map(|(k, v)| format!("{k}×{v}"))
                .collect();
            parts.push(format!(":status {}", s.join(" ")));
        }
        if let Some(call) = &self.call {
            parts.push(call.clone());
        }
        parts.push(format!(
            "{} sent, {} written, {} read",
            self.sent,
            bytes(self.bytes_written),
            bytes(self.bytes_read)
        ));
        parts.join("; ")
    }
}

/// `n` bytes, readable.
pub fn bytes(n: u64) -> String {
    if n >= 10 << 20 {
        format!("{:.0} MiB", n as f64 / (1 << 20) as f64)
    } else if n >= 10 << 10 {
        format!("{:.0} KiB", n as f64 / 1024.0)
    } else {
        format!("{n} B")
    }
}

fn from_report(r: &Report) -> Attacked {
    let seen = &r.seen;
    Attacked {
        summary: r.summary(),
        goaway: seen.goaway().map(|g| {
            let debug = String::from_utf8_lossy(&g.debug);
            if debug.is_empty() {
                error_name(g.code).to_string()
            } else {
                format!("{} \"{debug}\"", error_name(g.code))
            }
        }),
        closed: Some(r.closed()),
        sent: r.sent,
        bytes_written: r.bytes_written,
        bytes_read: seen.bytes_read,
        resets: seen
            .resets
            .iter()
            .map(|(code, n)| (error_name(*code).to_string(), *n))
            .collect(),
        statuses: seen.statuses.iter().map(|(s, n)| (s.clone(), *n)).collect(),
        call: r
            .call_ok
            .map(|ok| format!("own call {}", if ok { "ok" } else { "failed" })),
        extra: serde_json::json!({
            "sending_s": r.sending.as_secs_f64(),
            "write_error": r.write_error,
            "write_blocked_after_s": r.write_blocked_after.map(|d| d.as_secs_f64()),
            "closed_after_s": seen.closed_at.map(|d| d.as_secs_f64()),
            "reset_by_peer": seen.reset_by_peer,
            "data_bytes": seen.data_bytes,
            "frames_by_type": seen.frames,
            "grpc_statuses": seen.grpc_statuses,
            "note": r.note,
        }),
        error: None,
    }
}

/// The idle case: `n` connections opened and held; RSS with them open, then after they close.
async fn idle(addr: SocketAddr, n: usize, rss: impl Fn() -> u64) -> Attacked {
    let before = rss();
    let conns: IdleConnections = attack::idle_connections(addr, n, 256).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let open_rss = rss();
    let open = conns.open();
    let closed_by_peer = conns.closed_by_peer();
    let (failed, first_error, took) = (conns.failed, conns.first_error.clone(), conns.elapsed);
    conns.close();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss();
    let per_conn = (open > 0).then(|| open_rss.saturating_sub(before) as f64 / open as f64);
    Attacked {
        summary: format!(
            "{open} of {n} idle connections open ({failed} failed{}), {closed_by_peer} closed by \
             the gateway while held; RSS {} → {} open ({} per connection) → {} 3 s after closing",
            first_error.map(|e| format!(": {e}")).unwrap_or_default(),
            bytes(before),
            bytes(open_rss),
            per_conn.map_or("-".into(), |b| format!("{b:.0} B")),
            bytes(after)
        ),
        closed: Some(closed_by_peer > 0),
        sent: n as u64,
        extra: serde_json::json!({
            "opened": open,
            "failed": failed,
            "open_s": took.as_secs_f64(),
            "closed_by_gateway": closed_by_peer,
            "rss_before_bytes": before,
            "rss_open_bytes": open_rss,
            "rss_per_connection_bytes": per_conn,
            "rss_after_close_bytes": after,
        }),
        ..Default::default()
    }
}

/// How a call through the gateway to the hostile target ended.
fn call_outcome(
    result: &Result<Option<ringway_testkit::tonic::Status>, String>,
    took: Duration,
) -> String {
    let s = took.as_secs_f64();
    match result {
        Ok(Some(status)) => format!(
            "call ended {:?} after {s:.2} s: {:?}",
            status.code(),
            status.message().chars().take(120).collect::<String>()
        ),
        Ok(None) => format!("call ended OK after {s:.2} s"),
        Err(why) => format!("call: {why} ({s:.2} s)"),
    }
}

fn target_extra(log: &TargetLog) -> serde_json::Value {
    serde_json::json!({
        "target": log.summary(),
        "stream_window": log.stream_window,
        "granted": log.granted(),
        "data_written": log.data_written,
        "written_at_error": log.written_at_error,
        "granted_at_error": log.granted_at_error,
        "error": log.error.as_ref().map(|(k, c, d)| format!("{k} {} {d:?}", error_name(*c))),
        "error_after_s": log.error_after.map(|d| d.as_secs_f64()),
        "closed": log.closed,
        "frames_flooded": log.frames_flooded,
    })
}

/// What the target saw, in the attacker's terms: the gateway's GOAWAY or RST_STREAM to it,
/// whether the gateway closed its connection, the DATA (or flood frames) it wrote.
fn target_attacked(log: &TargetLog, call: String) -> Attacked {
    let (mut goaway, mut resets) = (None, BTreeMap::new());
    if let Some((kind, code, debug)) = &log.error {
        if kind == "GOAWAY" {
            goaway = Some(if debug.is_empty() {
                error_name(*code).to_string()
            } else {
                format!("{} \"{debug}\"", error_name(*code))
            });
        } else {
            resets.insert(error_name(*code).to_string(), 1);
        }
    }
    Attacked {
        summary: format!("{}; {call}", log.summary()),
        goaway,
        resets,
        closed: Some(log.closed || log.write_error.is_some()),
        sent: log.frames_flooded.max(log.data_written),
        bytes_written: log.data_written,
        call: Some(call),
        extra: target_extra(log),
        ..Default::default()
    }
}

/// The flow-control case: a server-streaming call to the hostile target from a client with
/// 64 KiB windows that holds the response unread until the target has met the gateway's
/// reaction (or 8 s), then reads it to its end (at most 5 s).
async fn flow_control_call(addr: SocketAddr, target: &HostileTarget) -> Attacked {
    let started = Instant::now();
    let channel = match Endpoint::from_shared(format!("http://{addr}"))
        .expect("a valid URI")
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
    {
        Ok(channel) => channel,
        Err(e) => {
            return Attacked {
                error: Some(format!("connect: {e}")),
                ..Default::default()
            }
        }
    };
    let mut client = EchoClient::new(channel).max_decoding_message_size(MAX_MESSAGE_SIZE);
    let request = routed(
        EchoRequest {
            reply_count: 1,
            ..Default::default()
        },
        HOSTILE,
    );
    let response =
        tokio::time::timeout(Duration::from_secs(8), client.server_stream(request)).await;
    // Hold the response unread until the target has met the gateway's reaction.
    target.wait_outcome(Duration::from_secs(8)).await;
    let result: Result<Option<ringway_testkit::tonic::Status>, String> = match response {
        Ok(Ok(response)) => {
            let mut stream = response.into_inner();
            tokio::time::timeout(Duration::from_secs(5), async {
                loop {
                    match stream.message().await {
                        Ok(Some(_)) => continue,
                        Ok(None) => return None,
                        Err(status) => return Some(status),
                    }
                }
            })
            .await
            .map_err(|_| "did not end within 5 s of reading".to_string())
        }
        Ok(Err(status)) => Ok(Some(status)),
        Err(_) => Err("no response head within 8 s".into()),
    };
    let call = call_outcome(&result, started.elapsed());
    target_attacked(&target.log(), call)
}

/// The flooding-target case: a unary call to the target (at most 10 s).
async fn flood_call(addr: SocketAddr, target: &HostileTarget) -> Attacked {
    let started = Instant::now();
    let channel = match Endpoint::from_shared(format!("http://{addr}"))
        .expect("a valid URI")
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
    {
        Ok(channel) => channel,
        Err(e) => {
            return Attacked {
                error: Some(format!("connect: {e}")),
                ..Default::default()
            }
        }
    };
    let mut client = EchoClient::new(channel);
    let call = tokio::time::timeout(
        Duration::from_secs(10),
        client.unary(routed(EchoRequest::default(), HOSTILE)),
    )
    .await;
    let took = started.elapsed();
    let result = match call {
        Ok(Ok(_)) => Ok(None),
        Ok(Err(status)) => Ok(Some(status)),
        Err(_) => Err("no answer within 10 s".to_string()),
    };
    let log = target.wait_outcome(Duration::from_secs(3)).await;
    target_attacked(&log, call_outcome(&result, took))
}
