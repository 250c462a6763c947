//! Draining with real clients: SIGTERM lets calls in flight finish while new connections are
//! refused, then the process exits 0; `POST /drain` makes `/readyz` say 503; a second SIGTERM
//! ends the drain at once.

use std::time::{Duration, Instant};

use ringway_testkit::rawh2::RawConn;
use ringway_testkit::tokio::{self, net::TcpStream};
use ringway_testkit::tonic::transport::Channel;
use ringway_testkit::{
    eventually, routed, run, within, EchoClient, EchoRequest, Env, EnvBuilder, Gateway,
};

const RINGWAY: &str = env!("CARGO_BIN_EXE_ringway");
const LIMIT: Duration = Duration::from_secs(60);

/// A server-stream call of `replies` replies `delay_ms` apart, reported on `started` once the
/// first reply is in; returns how many replies came and whether it ended OK.
async fn streaming_call(
    mut client: EchoClient<Channel>,
    replies: u32,
    delay_ms: u32,
    started: tokio::sync::mpsc::Sender<()>,
) -> Result<u32, String> {
    let request = EchoRequest {
        reply_count: replies,
        delay_ms,
        ..Default::default()
    };
    let mut stream = client
        .server_stream(routed(request, "job"))
        .await
        .map_err(|s| format!("call: {s:?}"))?
        .into_inner();
    let mut count = 0;
    loop {
        match stream.message().await {
            Ok(Some(_)) => {
                count += 1;
                if count == 1 {
                    let _ = started.send(()).await;
                }
            }
            Ok(None) => return Ok(count),
            Err(s) => return Err(format!("after {count} replies: {s:?}")),
        }
    }
}

/// Waits for ringway's `/readyz` to say 200 (its shards have Redis).
async fn ready(gateway: &Gateway) {
    eventually(Duration::from_secs(10), "ringway is ready", || async {
        match gateway.admin_get("/readyz") {
            (200, _) => Ok(()),
            other => Err(other),
        }
    })
    .await;
}

/// Ringway on two shards with one upstream, `up`, routed by `job`.
fn one_upstream() -> EnvBuilder {
    Env::builder(RINGWAY)
        .shards(2)
        .upstream("up")
        .route("job", "up")
}

/// Whether a new connection to `gateway` is refused: connect fails, or the socket is closed
/// before an HTTP/2 handshake completes.
async fn new_connection_refused(addr: std::net::SocketAddr) -> Result<String, String> {
    match TcpStream::connect(addr).await {
        Err(e) => return Ok(format!("connect failed: {e}")),
        Ok(socket) => drop(socket),
    }
    match RawConn::client_handshake(addr, Duration::from_secs(2)).await {
        Err(e) => Ok(format!("connected, then closed: {e}")),
        Ok((_, frames)) => Err(format!("a new connection was served: {frames:?}")),
    }
}

/// SIGTERM with 100 streaming calls in flight over 4 connections: every call completes, a new
/// connection is refused meanwhile, and the process exits 0.
#[test]
fn sigterm_lets_calls_in_flight_finish_and_refuses_new_connections() {
    run(LIMIT, async {
        let mut env = one_upstream().start().await;
        let addr = env.addr();
        let (started_tx, mut started_rx) = tokio::sync::mpsc::channel(100);
        let mut calls = Vec::new();
        for _ in 0..4 {
            let client = env.client().await;
            for _ in 0..25 {
                // 10 replies 100 ms apart: about 1 s each.
                let call = streaming_call(client.clone(), 10, 100, started_tx.clone());
                calls.push(tokio::spawn(call));
            }
        }
        within(
            Duration::from_secs(10),
            "all 100 calls are streaming",
            async {
                for _ in 0..100 {
                    started_rx.recv().await.expect("a call started");
                }
            },
        )
        .await;
        let signalled = Instant::now();
        env.gateway().signal("TERM");
        // Shards look at the drain flag every 50 ms. (A fixed wait, not a poll: refusing
        // only later, near the end of the calls, would be a failure.)
        tokio::time::sleep(Duration::from_millis(300)).await;
        let refused = new_connection_refused(addr).await;
        let mut failures = Vec::new();
        for (i, call) in calls.into_iter().enumerate() {
            match call.await.expect("the call task") {
                Ok(10) => {}
                other => failures.push((i, other)),
            }
        }
        eprintln!(
            "calls done {:?} after SIGTERM; new connection: {refused:?}",
            signalled.elapsed()
        );
        assert!(
            failures.is_empty(),
            "{} of 100 calls did not complete: {:?}; ringway stderr:\n{}",
            failures.len(),
            &failures[..failures.len().min(5)],
            env.gateway().stderr()
        );
        refused.unwrap_or_else(|e| panic!("while draining, {e}"));
        let status = env
            .gateway_mut()
            .wait_exit(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("still running 10 s after the calls ended"));
        eprintln!("exited {:?} after SIGTERM: {status}", signalled.elapsed());
        assert!(status.success(), "exit status {status}");
    });
}

/// `POST /drain` starts the same drain: `/readyz` answers 503 while a call keeps it going.
#[test]
fn post_drain_makes_readyz_unready() {
    run(LIMIT, async {
        let mut env = one_upstream().start().await;
        ready(env.gateway()).await;
        let client = env.client().await;
        let (started_tx, mut started_rx) = tokio::sync::mpsc::channel(1);
        // 20 replies 100 ms apart: the drain lasts about 2 s.
        let call = tokio::spawn(streaming_call(client, 20, 100, started_tx));
        within(
            Duration::from_secs(10),
            "the call streams",
            started_rx.recv(),
        )
        .await;
        let (status, body) = env.gateway().admin_post("/drain");
        assert_eq!(status, 202, "POST /drain: {body}");
        let (status, body) = env.gateway().admin_get("/readyz");
        assert_eq!(status, 503, "/readyz while draining: {body}");
        assert!(body.contains("draining"), "/readyz says why: {body}");
        let replies = call.await.expect("the call task");
        assert_eq!(replies, Ok(20), "the call in flight completes");
        let status = env
            .gateway_mut()
            .wait_exit(Duration::from_secs(10))
            .expect("exits once drained");
        assert!(status.success(), "exit status {status}");
    });
}

/// A second SIGTERM during a drain that would wait for a 10 s call (drain timeout 30 s) ends
/// the process at once.
#[test]
fn second_sigterm_exits_at_once() {
    run(LIMIT, async {
        let mut env = one_upstream()
            .config("[downstream]\ndrain_timeout_ms = 30000\n")
            .start()
            .await;
        let mut client = env.client().await;
        let call = tokio::spawn(async move {
            let request = EchoRequest {
                delay_ms: 10_000,
                ..Default::default()
            };
            client.unary(routed(request, "job")).await
        });
        eventually(
            Duration::from_secs(5),
            "the call reached the upstream",
            || async {
                match env.upstream("up").calls() {
                    0 => Err("not yet"),
                    _ => Ok(()),
                }
            },
        )
        .await;
        let gateway = env.gateway_mut();
        gateway.signal("TERM");
        // Nothing is awaited: the process must still be running after this long.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            gateway.try_wait().is_none(),
            "exited on the first SIGTERM with a call in flight; stderr:\n{}",
            gateway.stderr()
        );
        let second = Instant::now();
        gateway.signal("TERM");
        let status = gateway
            .wait_exit(Duration::from_secs(1))
            .unwrap_or_else(|| panic!("still running 1 s after the second SIGTERM"));
        eprintln!(
            "exited {:?} after the second SIGTERM: {status}",
            second.elapsed()
        );
        call.abort();
    });
}
