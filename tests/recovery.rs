//! ringway recovers by itself when a peer comes back: Redis restarted, or an
//! upstream restarted on the same port. While the peer is away calls fail
//! with UNAVAILABLE (promptly, not hanging); once it is back they succeed
//! again within a few seconds, with no restart of ringway or the client.

use std::time::Duration;

use ringway_testkit::tonic::Code;
use ringway_testkit::{eventually, routed, run, within, EchoRequest, Env};

const RINGWAY: &str = env!("CARGO_BIN_EXE_ringway");
const LIMIT: Duration = Duration::from_secs(90);
/// Longest one call may take while a peer is away (lookup and dial timeouts are 1 s).
const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// How soon calls must succeed once the peer is back.
const RECOVER_WITHIN: Duration = Duration::from_secs(10);

/// Ringway (two shards) with one upstream, `up`, routed by `job`.
async fn one_upstream() -> Env {
    Env::builder(RINGWAY)
        .shards(2)
        .upstream("up")
        .route("job", "up")
        .start()
        .await
}

#[test]
fn calls_recover_after_redis_restarts() {
    run(LIMIT, async {
        let mut env = one_upstream().await;
        let mut client = env.client().await;
        let reply = client.unary(routed(EchoRequest::default(), "job")).await;
        assert_eq!(
            reply.expect("a call before the restart").get_ref().upstream,
            "up"
        );

        env.redis_mut().stop();
        for attempt in 0..3 {
            let call = client.unary(routed(EchoRequest::default(), "job"));
            let status = within(ANSWER_WITHIN, "a call while Redis is down", call)
                .await
                .expect_err("no route while Redis is down");
            assert_eq!(
                status.code(),
                Code::Unavailable,
                "attempt {attempt}: {status:?}"
            );
        }

        env.redis_mut().start_again();
        env.route("job", "up"); // the new server starts empty
        let upstream = eventually(RECOVER_WITHIN, "calls succeed after Redis is back", || {
            let mut client = client.clone();
            async move {
                client
                    .unary(routed(EchoRequest::default(), "job"))
                    .await
                    .map(|reply| reply.into_inner().upstream)
            }
        })
        .await;
        assert_eq!(upstream, "up");
        // And it stays recovered.
        for _ in 0..10 {
            let reply = client.unary(routed(EchoRequest::default(), "job")).await;
            assert_eq!(
                reply.expect("a call after recovery").get_ref().upstream,
                "up"
            );
        }
    });
}

#[test]
fn calls_recover_after_the_upstream_restarts() {
    run(LIMIT, async {
        let mut env = one_upstream().await;
        let target = env.targets("up");
        let mut client = env.client().await;
        for _ in 0..3 {
            let reply = client.unary(routed(EchoRequest::default(), "job")).await;
            assert_eq!(
                reply.expect("a call before the restart").get_ref().upstream,
                "up"
            );
        }

        env.upstream_mut("up").stop().await;
        for attempt in 0..3 {
            let call = client.unary(routed(EchoRequest::default(), "job"));
            let status = within(ANSWER_WITHIN, "a call while the upstream is down", call)
                .await
                .expect_err("the target is down");
            assert_eq!(
                status.code(),
                Code::Unavailable,
                "attempt {attempt}: {status:?}"
            );
            assert!(
                status.message().contains(&target),
                "names the target {target}: {status:?}"
            );
        }

        env.upstream_mut("up").restart().await;
        let upstream = eventually(
            RECOVER_WITHIN,
            "calls succeed after the upstream is back",
            || {
                let mut client = client.clone();
                async move {
                    client
                        .unary(routed(EchoRequest::default(), "job"))
                        .await
                        .map(|reply| reply.into_inner().upstream)
                }
            },
        )
        .await;
        assert_eq!(upstream, "up");
        for _ in 0..10 {
            let reply = client.unary(routed(EchoRequest::default(), "job")).await;
            assert_eq!(
                reply.expect("a call after recovery").get_ref().upstream,
                "up"
            );
        }
    });
}

#[test]
fn an_upstream_lost_mid_stream_ends_the_call_with_an_error() {
    run(LIMIT, async {
        let mut env = one_upstream().await;
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
        inbound
            .message()
            .await
            .expect("a first reply")
            .expect("not the end");

        // The upstream's connections are cut: the client must see an error,
        // not a clean end of stream (it would take a partial answer as whole)
        // and not silence.
        env.upstream_mut("up").stop().await;
        let end = within(
            ANSWER_WITHIN,
            "the stream ends after the upstream is gone",
            async {
                loop {
                    match inbound.message().await {
                        Ok(Some(_)) => continue, // replies already on their way
                        other => break other,
                    }
                }
            },
        )
        .await;
        match end {
            Err(status) => assert_ne!(status.code(), Code::Ok, "{status:?}"),
            Ok(_) => panic!("the stream ended cleanly although its upstream was lost"),
        }
    });
}
