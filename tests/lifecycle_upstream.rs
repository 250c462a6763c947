//! The life of ringway's connections to targets, with real targets: a tonic server that pings,
//! a listener that never answers, an HTTP/2 server that goes silent, an `h2` server that sends
//! GOAWAY mid-load, closed ports (backoff, ejection), and the pool's idle timeout, rotation and
//! watermarks.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringway_testkit::futures_util::stream::{self, StreamExt};
use ringway_testkit::h2server::{GoAwayPlan, H2Upstream};
use ringway_testkit::prost::Message;
use ringway_testkit::rawh2::{
    grpc_frame, grpc_messages, Frame, RawConn, DATA, HEADERS, PING, SETTINGS,
};
use ringway_testkit::tokio::net::TcpListener;
use ringway_testkit::tokio::{self, io::AsyncReadExt};
use ringway_testkit::tonic::Code;
use ringway_testkit::{
    closed_addr, eventually, grpc_call_on, routed, run, within, EchoReply, EchoRequest, Env,
    EnvBuilder, UpstreamOptions,
};

const RINGWAY: &str = env!("CARGO_BIN_EXE_ringway");
const LIMIT: Duration = Duration::from_secs(60);

/// ringway on one shard (so pools, backoff and ejection are one shard's) with `toml`; the
/// test adds its targets and routes.
fn gateway(toml: &str) -> EnvBuilder {
    Env::builder(RINGWAY).shards(1).config(toml)
}

/// A target whose server pings every 200 ms (timeout 1 s): ringway answers, so the one
/// connection lives on through idle time and calls.
#[test]
fn a_target_that_pings_keeps_its_one_connection() {
    run(LIMIT, async {
        let options = UpstreamOptions {
            http2_keepalive_interval: Some(Duration::from_millis(200)),
            http2_keepalive_timeout: Some(Duration::from_secs(1)),
            ..UpstreamOptions::default()
        };
        let env = gateway("")
            .upstream_with("pinging", options)
            .route("job", "pinging")
            .start()
            .await;
        let mut client = env.client().await;
        let start = Instant::now();
        let mut calls = 0;
        // Calls, then a second of idle, twice over: 2 s in all with the target pinging.
        for round in 0..2 {
            for _ in 0..5 {
                let reply = client.unary(routed(EchoRequest::default(), "job")).await;
                reply.unwrap_or_else(|s| panic!("round {round}: {s:?}"));
                calls += 1;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        client
            .unary(routed(EchoRequest::default(), "job"))
            .await
            .expect("a call after the idle time");
        eprintln!("{} calls over {:?}", calls + 1, start.elapsed());
        assert_eq!(
            env.upstream("pinging").connections_accepted(),
            1,
            "one connection throughout"
        );
        assert_eq!(
            env.metric(
                "ringway_upstream_connections_closed_total",
                &[("by", "peer")]
            ),
            0.0
        );
    });
}

/// A listener that accepts and never says a byte: the dial's PING round trip fails it within
/// the dial timeout, with the target in the message.
#[test]
fn a_target_that_never_answers_fails_the_dial_in_time() {
    run(LIMIT, async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let target = listener.local_addr().expect("address");
        tokio::spawn(async move {
            // Accept, then read and discard whatever comes, forever.
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut sink = [0u8; 4096];
                    while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {}
                });
            }
        });
        let env = gateway("[upstream]\ndial_timeout_ms = 500\n")
            .route_value("job", target)
            .start()
            .await;
        let mut client = env.client().await;
        let started = Instant::now();
        let status = within(
            Duration::from_secs(10),
            "a call to a silent target",
            client.unary(routed(EchoRequest::default(), "job")),
        )
        .await
        .expect_err("a silent target cannot answer");
        let took = started.elapsed();
        eprintln!("failed after {took:?}: {status:?}");
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(
            status.message().contains(&target.to_string()),
            "the message names {target}: {status:?}"
        );
        assert!(
            took >= Duration::from_millis(400) && took <= Duration::from_millis(2_000),
            "failed after {took:?}; the dial timeout is 500 ms"
        );
        let failures = env.metric("ringway_upstream_dial_failures_total", &[]);
        assert!(failures >= 1.0, "dial failures: {failures}");
    });
}

/// What the silent server saw.
#[derive(Debug, Default)]
struct SilentLog {
    /// PINGs it left unanswered (every one after the first).
    unanswered_pings: usize,
    /// When ringway closed the connection.
    closed_at: Option<Instant>,
}

/// A raw-frame HTTP/2 server that answers the handshake, the first PING (ringway's dial ends
/// with a PING round trip) and the first call, then answers nothing more while it keeps reading.
/// Frames are written by hand (HPACK literals) because no HTTP/2 library can be told to stop
/// acknowledging PINGs.
async fn silent_after_one_call(listener: TcpListener, log: Arc<Mutex<SilentLog>>) {
    let Ok((socket, _)) = listener.accept().await else {
        return;
    };
    let mut conn = RawConn::new(socket);
    if conn.read_preface().await.is_err() {
        return;
    }
    let _ = conn.write_frame(&Frame::settings()).await;
    let mut pings = 0;
    let mut answered_call = false;
    loop {
        let frame = match conn.read_frame().await {
            Ok(Some(frame)) => frame,
            Ok(None) | Err(_) => break,
        };
        match frame.kind {
            SETTINGS if !frame.is_ack() => {
                let _ = conn.write_frame(&Frame::settings_ack()).await;
            }
            PING if !frame.is_ack() => {
                pings += 1;
                if pings == 1 {
                    let _ = conn.write_frame(&Frame::ping_ack(&frame.payload)).await;
                } else {
                    log.lock().unwrap().unanswered_pings += 1;
                }
            }
            DATA | HEADERS if frame.ends_stream() && !answered_call => {
                answered_call = true;
                let reply = EchoReply {
                    upstream: "silent".into(),
                    ..Default::default()
                }
                .encode_to_vec();
                let s = frame.stream;
                let head = [(":status", "200"), ("content-type", "application/grpc")];
                let _ = conn.write_frame(&Frame::headers(s, &head, false)).await;
                let _ = conn
                    .write_frame(&Frame::data(s, &grpc_frame(&reply), false))
                    .await;
                let trailers = [("grpc-status", "0")];
                let _ = conn.write_frame(&Frame::headers(s, &trailers, true)).await;
            }
            _ => {}
        }
    }
    log.lock().unwrap().closed_at = Some(Instant::now());
}

/// Upstream keepalive 200 ms / 300 ms, also without calls: a target that stops answering after
/// its first call is closed by ringway, and counted.
#[test]
fn upstream_keepalive_closes_a_silent_target() {
    run(LIMIT, async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let target = listener.local_addr().expect("address");
        let log = Arc::new(Mutex::new(SilentLog::default()));
        tokio::spawn(silent_after_one_call(listener, log.clone()));
        let toml = "[upstream]\nkeepalive_time_ms = 200\nkeepalive_timeout_ms = 300\n\
                    keepalive_without_calls = true\n";
        let env = gateway(toml).route_value("job", target).start().await;
        let mut client = env.client().await;
        let reply = within(
            Duration::from_secs(10),
            "the one call the target answers",
            client.unary(routed(EchoRequest::default(), "job")),
        )
        .await
        .expect("the target answers its first call");
        assert_eq!(reply.get_ref().upstream, "silent");
        let answered = Instant::now();
        let closed_at = eventually(
            Duration::from_secs(3),
            "ringway closes the silent target's connection",
            || {
                let log = log.clone();
                async move { log.lock().unwrap().closed_at.ok_or("still open") }
            },
        )
        .await;
        let unanswered = log.lock().unwrap().unanswered_pings;
        eprintln!(
            "closed {:?} after the call; {unanswered} PING(s) unanswered",
            closed_at - answered
        );
        assert!(unanswered >= 1, "ringway closed without pinging");
        let timeouts = env.metric("ringway_upstream_keepalive_timeouts_total", &[]);
        assert!(timeouts >= 1.0, "keepalive timeouts: {timeouts}");
    });
}

/// How the load's calls reach ringway.
#[derive(Debug, Clone, Copy)]
enum Caller {
    /// tonic on one connection: like every hyper-based client, it ends a request with an empty
    /// DATA frame carrying END_STREAM after the message.
    Tonic,
    /// The `h2` crate on one connection, END_STREAM on the message's own DATA frame.
    H2,
}

/// One echo call of the load; the reply's payload or why it failed.
async fn echo_call(
    caller: Caller,
    tonic: &ringway_testkit::EchoClient<ringway_testkit::tonic::transport::Channel>,
    h2: &ringway_testkit::h2::client::SendRequest<ringway_testkit::bytes::Bytes>,
    gateway: SocketAddr,
    payload: Vec<u8>,
) -> Result<Vec<u8>, String> {
    let request = EchoRequest {
        payload,
        ..Default::default()
    };
    match caller {
        Caller::Tonic => {
            let mut client = tonic.clone();
            let reply = client.unary(routed(request, "job")).await;
            reply
                .map(|r| r.into_inner().payload)
                .map_err(|s| format!("{s:?}"))
        }
        Caller::H2 => {
            let message = request.encode_to_vec();
            let unary = "/echo.Echo/Unary";
            let response = grpc_call_on(h2.clone(), gateway, unary, &[("jobid", "job")], &message)
                .await
                .map_err(|e| e.to_string())?;
            if response.grpc_status() != Some("0") {
                return Err(format!("{response:?}"));
            }
            let (messages, _) = grpc_messages(&response.body);
            let reply = messages.first().ok_or("no reply message")?;
            EchoReply::decode(&reply[..])
                .map(|r| r.payload)
                .map_err(|e| e.to_string())
        }
    }
}

/// A target sends GOAWAY in the middle of 200 calls (32 in flight), naming the last stream it
/// accepted: every call must succeed — those it refused are retried on a fresh connection — and
/// the target must handle each exactly once.
async fn goaway_mid_load(caller: Caller) {
    let target = H2Upstream::start(Some(GoAwayPlan {
        after_streams: 20,
        pause: Duration::from_millis(100),
    }))
    .await;
    let env = gateway("").route_value("job", target.addr()).start().await;
    let gateway = env.gateway();
    let addr = env.addr();
    let tonic = env.client().await;
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (h2, connection) = ringway_testkit::h2::client::handshake(tcp)
        .await
        .expect("HTTP/2 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let done = Arc::new(AtomicUsize::new(0));
    let task_done = done.clone();
    let calls = tokio::spawn(async move {
        stream::iter(0..200u32)
            .map(|i| {
                let (tonic, h2, done) = (&tonic, &h2, &task_done);
                async move {
                    let payload = format!("call-{i:03}").into_bytes();
                    let reply = echo_call(caller, tonic, h2, addr, payload).await;
                    done.fetch_add(1, Ordering::SeqCst);
                    (i, reply)
                }
            })
            .buffer_unordered(32)
            .collect::<Vec<_>>()
            .await
    });
    let results = match tokio::time::timeout(Duration::from_secs(15), calls).await {
        Ok(results) => results.expect("the calls' task"),
        Err(_) => panic!(
            "200 calls not done in 15 s: {} done; target: GOAWAY last stream {:?}, {} \
             connections, {} calls handled; ringway: retries {}, upstream streams in flight {}, \
             calls in flight {}; stderr:\n{}",
            done.load(Ordering::SeqCst),
            target.goaway_last_stream(),
            target.connections(),
            target.calls(),
            gateway.metric("ringway_upstream_retries_total", &[]),
            gateway.metric("ringway_upstream_streams_in_flight", &[]),
            gateway.metric("ringway_calls_in_flight", &[]),
            gateway.stderr()
        ),
    };
    let failed: Vec<_> = results.iter().filter(|(_, r)| r.is_err()).collect();
    assert!(
        failed.is_empty(),
        "{} of 200 calls failed, e.g. {:?}; ringway stderr:\n{}",
        failed.len(),
        failed.first(),
        gateway.stderr()
    );
    for (i, reply) in &results {
        let payload = reply.as_ref().expect("checked above");
        assert_eq!(payload, format!("call-{i:03}").as_bytes(), "call {i}");
    }
    let handled = target.calls_by_message();
    let repeated: Vec<_> = handled.iter().filter(|(_, n)| **n > 1).collect();
    let goaway = target.goaway_last_stream();
    let retries = gateway.metric("ringway_upstream_retries_total", &[]);
    let goaways = gateway.metric("ringway_upstream_goaways_received_total", &[]);
    eprintln!(
        "target: GOAWAY last stream {goaway:?}, {} connections, {} calls handled; \
         ringway: retries {retries}, GOAWAYs received {goaways}",
        target.connections(),
        target.calls()
    );
    assert!(goaway.is_some(), "the target never sent its GOAWAY");
    assert!(repeated.is_empty(), "handled twice: {repeated:?}");
    assert_eq!(target.calls(), 200, "the target handled each call once");
    assert!(retries >= 1.0, "retries: {retries}");
    assert!(goaways >= 1.0, "GOAWAYs received: {goaways}");
}

/// The GOAWAY load through a tonic client.
#[test]
fn goaway_mid_load_retries_refused_calls_exactly_once() {
    run(LIMIT, goaway_mid_load(Caller::Tonic));
}

/// The same load with END_STREAM on the request's DATA frame: tells a retry problem with
/// separate END_STREAM frames apart from one with the retry itself.
#[test]
fn goaway_mid_load_retries_refused_calls_exactly_once_h2_client() {
    run(LIMIT, goaway_mid_load(Caller::H2));
}

/// After a failed dial, backoff (1 s initial, so 500..1000 ms) makes the next calls fail fast
/// without dialing: 20 quick calls, one or two dials.
#[test]
fn dial_backoff_fails_calls_fast_without_redialing() {
    run(LIMIT, async {
        let env = gateway("[upstream]\ndial_backoff_initial_ms = 1000\n")
            .route_value("job", closed_addr())
            .start()
            .await;
        let mut client = env.client().await;
        let started = Instant::now();
        let mut messages = Vec::new();
        for i in 0..20 {
            let status = client
                .unary(routed(EchoRequest::default(), "job"))
                .await
                .expect_err("nothing listens on the target");
            assert_eq!(status.code(), Code::Unavailable, "call {i}: {status:?}");
            messages.push(status.message().to_string());
        }
        let took = started.elapsed();
        let dials = env.metric("ringway_upstream_dial_failures_total", &[]);
        eprintln!(
            "20 calls in {took:?}; {dials} dial failures; first: {:?}; last: {:?}",
            messages[0], messages[19]
        );
        assert!(
            took <= Duration::from_millis(1_000),
            "20 failing calls took {took:?}: not failing fast"
        );
        assert!(
            (1.0..=2.0).contains(&dials),
            "{dials} dials for 20 calls within the backoff"
        );
        assert!(
            messages[19].contains("next dial in") && messages[19].contains(" ms"),
            "the last call's message tells when the next dial is: {:?}",
            messages[19]
        );
    });
}

/// Route "A,B" with A a closed port: after two failed dials A is ejected and 50 calls in a row
/// all reach B.
#[test]
fn an_ejected_target_is_skipped() {
    run(LIMIT, async {
        // Ejection lasts as long as the backoff after the failure that caused it; 1 s initial
        // (1..2 s after the second failure) keeps A out for the whole of the 50 calls even on a
        // slow machine. With the default 250 ms it would lapse after 250..500 ms.
        let toml = "[upstream]\neject_after_failures = 2\ndial_backoff_initial_ms = 1000\n";
        let env = gateway(toml).upstream("b").start().await;
        let dead = closed_addr();
        env.redis()
            .set("job", &format!("{dead},{}", env.targets("b")));
        let mut client = env.client().await;
        let warm_up = Instant::now();
        let mut failed = 0;
        while env.metric("ringway_upstream_dial_failures_total", &[]) < 2.0 {
            assert!(
                warm_up.elapsed() < Duration::from_secs(10),
                "A did not fail twice in 10 s"
            );
            if client
                .unary(routed(EchoRequest::default(), "job"))
                .await
                .is_err()
            {
                failed += 1;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!(
            "two dial failures after {:?} ({failed} calls failed)",
            warm_up.elapsed()
        );
        let started = Instant::now();
        for i in 0..50 {
            let reply = client
                .unary(routed(EchoRequest::default(), "job"))
                .await
                .unwrap_or_else(|s| panic!("call {i} after the ejection: {s:?}"));
            assert_eq!(reply.get_ref().upstream, "b", "call {i}");
        }
        eprintln!("50 calls on B in {:?}", started.elapsed());
    });
}

/// `idle_timeout_ms = 500`: a connection without calls is closed by ringway within a few
/// seconds (the pool's maintenance runs once a second).
#[test]
fn an_idle_upstream_connection_is_closed() {
    run(LIMIT, async {
        let env = gateway("[upstream]\nidle_timeout_ms = 500\n")
            .upstream("up")
            .route("job", "up")
            .start()
            .await;
        let mut client = env.client().await;
        client
            .unary(routed(EchoRequest::default(), "job"))
            .await
            .expect("a call");
        let called = Instant::now();
        assert_eq!(env.metric("ringway_upstream_connections", &[]), 1.0);
        eventually(
            Duration::from_secs(3),
            "ringway closes its idle connection",
            || async {
                let closed = env.metric(
                    "ringway_upstream_connections_closed_total",
                    &[("by", "ringway")],
                );
                let open = env.metric("ringway_upstream_connections", &[]);
                if closed >= 1.0 && open == 0.0 {
                    Ok(())
                } else {
                    Err(format!("closed by ringway {closed}, open {open}"))
                }
            },
        )
        .await;
        eprintln!("closed {:?} after the call", called.elapsed());
    });
}

/// `max_connection_age_ms = 400`: calls every 50 ms for 2 s all succeed while the connection
/// is replaced.
#[test]
fn old_upstream_connections_are_rotated_without_failing_calls() {
    run(LIMIT, async {
        let env = gateway("[upstream]\nmax_connection_age_ms = 400\n")
            .upstream("up")
            .route("job", "up")
            .start()
            .await;
        let mut client = env.client().await;
        let start = Instant::now();
        let mut calls = 0;
        while start.elapsed() < Duration::from_secs(2) {
            client
                .unary(routed(EchoRequest::default(), "job"))
                .await
                .unwrap_or_else(|s| panic!("call {calls} at {:?}: {s:?}", start.elapsed()));
            calls += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let accepted = env.upstream("up").connections_accepted();
        eprintln!("{calls} calls; the upstream accepted {accepted} connections");
        assert!(
            accepted >= 2,
            "no rotation in 2 s: {accepted} connection(s)"
        );
    });
}

/// Watermarks 2 (high) and 1 (low), at most 4 connections: 8 slow calls at once open more than
/// one connection but no more than 4; once idle, the pool shrinks.
#[test]
fn the_pool_grows_past_the_high_watermark_and_shrinks_when_idle() {
    run(LIMIT, async {
        let toml = "[upstream]\nmax_connections_per_target = 4\nstream_high_watermark = 2\n\
                    stream_low_watermark = 1\n";
        let env = gateway(toml)
            .upstream("up")
            .route("job", "up")
            .start()
            .await;
        let client = env.client().await;
        let calls: Vec<_> = (0..8)
            .map(|i| {
                let mut client = client.clone();
                tokio::spawn(async move {
                    let request = EchoRequest {
                        delay_ms: 500,
                        ..Default::default()
                    };
                    (i, client.unary(routed(request, "job")).await)
                })
            })
            .collect();
        // Watch the pool's size while the calls run.
        let peak = Arc::new(AtomicUsize::new(0));
        let watching = Instant::now();
        while watching.elapsed() < Duration::from_millis(450) {
            let open = env.metric("ringway_upstream_connections", &[]) as usize;
            peak.fetch_max(open, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        for call in calls {
            let (i, reply) = call.await.expect("the call task");
            reply.unwrap_or_else(|s| panic!("call {i}: {s:?}"));
        }
        let accepted = env.upstream("up").connections_accepted();
        let peak = peak.load(Ordering::SeqCst).max(accepted);
        eprintln!("8 concurrent calls: the upstream accepted {accepted} connections");
        assert!(
            (2..=4).contains(&accepted),
            "{accepted} connections for 8 streams at watermark 2, max 4"
        );
        let shrunk = eventually(
            Duration::from_secs(5),
            "the idle pool shrinks below its peak",
            || async {
                let open = env.metric("ringway_upstream_connections", &[]) as usize;
                if open < peak {
                    Ok(open)
                } else {
                    Err(format!("{open} open, peak {peak}"))
                }
            },
        )
        .await;
        eprintln!("pool: peak {peak}, then {shrunk}");
    });
}
