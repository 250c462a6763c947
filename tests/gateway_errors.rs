//! The errors ringway itself produces (README, "The path of one call"): each is a
//! trailers-only gRPC response with HTTP status 200, the contract's code and
//! a message naming what went wrong, and none of them hangs.

use std::time::Duration;

use ringway_testkit::prost::Message;
use ringway_testkit::tonic::{Code, Request, Status};
use ringway_testkit::{
    closed_addr, eventually, raw_grpc_call, routed, run, within, EchoClient, EchoRequest, Env,
};

const RINGWAY: &str = env!("CARGO_BIN_EXE_ringway");
const LIMIT: Duration = Duration::from_secs(60);
/// Longest a gateway error may take: the default Redis lookup timeout is 1 s.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// One unary call routed by `key` that must fail; its status.
async fn failing_call(
    client: &mut EchoClient<ringway_testkit::tonic::transport::Channel>,
    key: &str,
) -> Status {
    let call = client.unary(routed(EchoRequest::default(), key));
    match within(ANSWER_WITHIN, &format!("a call routed by {key:?}"), call).await {
        Ok(reply) => panic!("a call routed by {key:?} succeeded: {reply:?}"),
        Err(status) => status,
    }
}

#[test]
fn missing_routing_header_is_invalid_argument() {
    run(LIMIT, async {
        let env = Env::builder(RINGWAY).shards(2).start().await;
        let mut client = env.client().await;

        let call = client.unary(Request::new(EchoRequest::default()));
        let status = within(ANSWER_WITHIN, "a call without jobid", call)
            .await
            .expect_err("a call without the routing header fails");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains("jobid"),
            "names the header: {status:?}"
        );

        // On the wire: HTTP 200, and the status in the only header block.
        let raw = within(
            ANSWER_WITHIN,
            "a raw call without jobid",
            raw_grpc_call(
                env.addr(),
                "/echo.Echo/Unary",
                &[],
                &EchoRequest::default().encode_to_vec(),
            ),
        )
        .await
        .expect("a raw HTTP/2 call");
        assert_eq!(raw.status, 200, "{raw:?}");
        assert!(raw.trailers_only, "a trailers-only response: {raw:?}");
        assert_eq!(raw.grpc_status(), Some("3"), "{raw:?}");
        assert_eq!(
            raw.headers
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/grpc"),
            "{raw:?}"
        );
    });
}

#[test]
fn unknown_key_is_not_found() {
    run(LIMIT, async {
        let env = Env::builder(RINGWAY).shards(2).start().await;
        let mut client = env.client().await;

        let status = failing_call(&mut client, "no-such-job-42").await;
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
        assert!(
            status.message().contains("no-such-job-42"),
            "names the key: {status:?}"
        );

        let raw = within(
            ANSWER_WITHIN,
            "a raw call with an unknown key",
            raw_grpc_call(
                env.addr(),
                "/echo.Echo/Unary",
                &[("jobid", "no-such-job-42")],
                &EchoRequest::default().encode_to_vec(),
            ),
        )
        .await
        .expect("a raw HTTP/2 call");
        assert_eq!(raw.status, 200, "{raw:?}");
        assert!(raw.trailers_only, "a trailers-only response: {raw:?}");
        assert_eq!(raw.grpc_status(), Some("5"), "{raw:?}");
    });
}

#[test]
fn redis_stopped_is_unavailable() {
    run(LIMIT, async {
        let mut env = Env::builder(RINGWAY).shards(2).start().await;
        let mut client = env.client().await;
        // Redis answers first, so the gateway has a live connection to lose: both shards
        // connected, and a lookup answered.
        eventually(ANSWER_WITHIN, "both shards connected to Redis", || async {
            match env.metric("ringway_redis_connected", &[]) {
                2.0 => Ok(()),
                connected => Err(connected),
            }
        })
        .await;
        let status = failing_call(&mut client, "job").await;
        assert_eq!(status.code(), Code::NotFound, "before the stop: {status:?}");

        env.redis_mut().stop();
        for attempt in 0..3 {
            let status = failing_call(&mut client, "job").await;
            assert_eq!(
                status.code(),
                Code::Unavailable,
                "attempt {attempt}: {status:?}"
            );
        }
    });
}

#[test]
fn malformed_route_values_are_internal() {
    run(LIMIT, async {
        let env = Env::builder(RINGWAY).shards(2).start().await;
        let mut client = env.client().await;

        for (key, value) in [
            ("job-words", "not-an-address"),
            ("job-port", "host:99999"),
            ("job-empty", ""),
            ("job-comma", "127.0.0.1:1,"),
        ] {
            env.redis().set(key, value);
            let status = failing_call(&mut client, key).await;
            assert_eq!(
                status.code(),
                Code::Internal,
                "{key} = {value:?}: {status:?}"
            );
            assert!(
                status.message().contains(key),
                "names the key {key}: {status:?}"
            );
            assert!(
                status.message().contains(value),
                "names the value {value:?}: {status:?}"
            );
        }
    });
}

#[test]
fn refusing_target_is_unavailable() {
    run(LIMIT, async {
        let target = closed_addr().to_string();
        let env = Env::builder(RINGWAY)
            .shards(2)
            .route_value("job", &target)
            .start()
            .await;
        let mut client = env.client().await;

        for attempt in 0..3 {
            let status = failing_call(&mut client, "job").await;
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
    });
}

#[test]
fn errors_do_not_break_the_connection() {
    run(LIMIT, async {
        // One shard, so the pool count below is exact.
        let env = Env::builder(RINGWAY)
            .shards(1)
            .upstream("up")
            .route("good", "up")
            .route_value("bad", "nonsense")
            .start()
            .await;
        let mut client = env.client().await;

        for round in 0..5 {
            assert_eq!(
                failing_call(&mut client, "bad").await.code(),
                Code::Internal
            );
            assert_eq!(
                failing_call(&mut client, "missing").await.code(),
                Code::NotFound
            );
            let reply = client.unary(routed(EchoRequest::default(), "good")).await;
            assert_eq!(
                reply
                    .unwrap_or_else(|s| panic!("round {round}: {s:?}"))
                    .get_ref()
                    .upstream,
                "up"
            );
        }
        assert_eq!(
            env.upstream("up").connections_accepted(),
            1,
            "one pooled connection served every good call"
        );
    });
}
