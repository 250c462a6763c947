//! A client that gives up must not leave work running upstream: dropping a
//! server stream, abandoning a slow unary call and letting a deadline pass
//! each reach the upstream's handler as a cancel within a few seconds.

use std::time::Duration;

use ringway_testkit::tonic::{Code, Request};
use ringway_testkit::{eventually, routed, run, with_jobid, EchoRequest, Env, Upstream};

const RINGWAY: &str = env!("CARGO_BIN_EXE_ringway");
const LIMIT: Duration = Duration::from_secs(60);
/// How long a cancel may take to reach the upstream.
const CANCEL_WITHIN: Duration = Duration::from_secs(5);

/// Ringway (two shards) with one upstream, `up`, routed by `job`.
async fn one_upstream() -> Env {
    Env::builder(RINGWAY)
        .shards(2)
        .upstream("up")
        .route("job", "up")
        .start()
        .await
}

/// Waits until `upstream` has counted `n` cancelled calls.
async fn cancelled(upstream: &Upstream, n: usize) {
    eventually(CANCEL_WITHIN, "the upstream sees the cancel", || async {
        match upstream.cancelled() {
            seen if seen == n => Ok(()),
            seen => Err(format!("{seen} cancelled, {} calls", upstream.calls())),
        }
    })
    .await;
}

/// Waits until `upstream` has started `n` calls.
async fn started(upstream: &Upstream, n: usize) {
    eventually(CANCEL_WITHIN, "the call reaches the upstream", || async {
        match upstream.calls() {
            seen if seen >= n => Ok(()),
            seen => Err(seen),
        }
    })
    .await;
}

#[test]
fn dropping_a_server_stream_cancels_it_upstream() {
    run(LIMIT, async {
        let env = one_upstream().await;
        let up = env.upstream("up");
        let mut client = env.client().await;

        let mut inbound = client
            .server_stream(routed(
                EchoRequest {
                    reply_count: 100_000,
                    delay_ms: 10,
                    ..Default::default()
                },
                "job",
            ))
            .await
            .expect("the stream starts")
            .into_inner();
        for seq in 0..3 {
            let reply = inbound
                .message()
                .await
                .expect("a reply")
                .expect("not the end");
            assert_eq!(reply.seq, seq);
        }
        assert_eq!(up.cancelled(), 0);
        drop(inbound);
        cancelled(up, 1).await;

        // The client's connection is unharmed by the reset.
        let reply = client.unary(routed(EchoRequest::default(), "job")).await;
        assert_eq!(
            reply.expect("a call after the cancel").get_ref().upstream,
            "up"
        );
        assert_eq!(up.cancelled(), 1);
    });
}

#[test]
fn abandoning_a_slow_unary_call_cancels_it_upstream() {
    run(LIMIT, async {
        let env = one_upstream().await;
        let up = env.upstream("up");
        let client = env.client().await;

        let mut caller = client.clone();
        let call = ringway_testkit::tokio::spawn(async move {
            caller
                .unary(routed(
                    EchoRequest {
                        delay_ms: 60_000,
                        ..Default::default()
                    },
                    "job",
                ))
                .await
        });
        started(up, 1).await;
        assert_eq!(up.cancelled(), 0);
        // Dropping the call's future makes the client reset the stream.
        call.abort();
        cancelled(up, 1).await;
    });
}

#[test]
fn a_deadline_reaches_the_upstream() {
    run(LIMIT, async {
        let env = one_upstream().await;
        let up = env.upstream("up");
        let mut client = env.client().await;

        // grpc-timeout is passed to the upstream as it came.
        let mut request = with_jobid(Request::new(EchoRequest::default()), "job");
        request.set_timeout(Duration::from_secs(30));
        let seen = client
            .unary(request)
            .await
            .expect("a call with a deadline")
            .into_inner();
        assert!(
            seen.metadata.contains_key("grpc-timeout"),
            "the upstream sees grpc-timeout: {:?}",
            seen.metadata
        );

        // And a call past its deadline ends, here and upstream.
        let mut request = with_jobid(
            Request::new(EchoRequest {
                delay_ms: 60_000,
                ..Default::default()
            }),
            "job",
        );
        request.set_timeout(Duration::from_millis(500));
        let status = client
            .unary(request)
            .await
            .expect_err("the deadline passes");
        assert!(
            matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
            "{status:?}"
        );
        cancelled(up, 1).await;
    });
}
