//! Calls that ringway routes and forwards: the route chosen by the `jobid`
//! header and Redis, all four RPC kinds with metadata and trailers both ways,
//! 4 MiB messages, upstream errors passed through untouched, route changes,
//! multi-target routes and the routing flags.
//!
//! Every test starts its own redis-server, tonic upstreams and ringway
//! (`--shards 2`) with the kit's [`Env`], and talks to them over real loopback sockets.

use std::collections::HashMap;
use std::time::Duration;

use ringway_testkit::futures_util::stream;
use ringway_testkit::tonic::metadata::{MetadataMap, MetadataValue};
use ringway_testkit::tonic::transport::Channel;
use ringway_testkit::tonic::{Code, Request, Status};
use ringway_testkit::{pattern, routed, run, with_jobid, EchoClient, EchoRequest, Env, Failure};

const RINGWAY: &str = env!("CARGO_BIN_EXE_ringway");
const LIMIT: Duration = Duration::from_secs(60);
/// A little over the 4 MiB the contract promises, so the gRPC frame is too.
const BIG: usize = 4 * 1024 * 1024 + 1024;

fn upstream_trailer(metadata: &MetadataMap) -> Option<&str> {
    metadata.get("x-upstream").and_then(|v| v.to_str().ok())
}

#[test]
fn two_keys_reach_two_upstreams_over_one_connection() {
    run(LIMIT, async {
        let env = Env::builder(RINGWAY)
            .shards(2)
            .upstream("a")
            .upstream("b")
            .route("job-a", "a")
            .route("job-b", "b")
            .start()
            .await;
        let mut client = env.client().await;

        for i in 0..10u32 {
            for (key, name) in [("job-a", "a"), ("job-b", "b")] {
                let payload = pattern(100, i);
                let reply = client
                    .unary(routed(
                        EchoRequest {
                            payload: payload.clone(),
                            ..Default::default()
                        },
                        key,
                    ))
                    .await
                    .unwrap_or_else(|s| panic!("call {i} with {key}: {s:?}"));
                assert_eq!(reply.get_ref().upstream, name, "call {i} with {key}");
                assert_eq!(reply.get_ref().payload, payload);
                assert_eq!(upstream_trailer(reply.metadata()), Some(name));
            }
        }
        let calls = (env.upstream("a").calls(), env.upstream("b").calls());
        assert_eq!(calls, (10, 10));
    });
}

/// The metadata every call below sends: a plain header naming the kind, a repeated header and
/// a binary one.
fn decorate(request: &mut MetadataMap, kind: &str) {
    request.insert("x-echo-kind", kind.parse().unwrap());
    request.insert("x-echo-multi", "one".parse().unwrap());
    request.append("x-echo-multi", "two".parse().unwrap());
    request.insert_bin("x-echo-blob-bin", MetadataValue::from_bytes(BLOB));
}

/// What every response must carry, whatever the kind: the request metadata echoed back in its
/// headers, in order and intact, and seen by the upstream (`seen`, from its reply).
fn check_metadata(kind: &str, headers: &MetadataMap, seen: &HashMap<String, String>) {
    assert_eq!(
        headers.get("x-echo-kind").unwrap(),
        kind,
        "{kind}: header echoed"
    );
    let multi: Vec<_> = headers.get_all("x-echo-multi").iter().collect();
    assert_eq!(
        multi,
        ["one", "two"],
        "{kind}: repeated header kept in order"
    );
    assert_eq!(
        headers
            .get_bin("x-echo-blob-bin")
            .unwrap()
            .to_bytes()
            .unwrap(),
        BLOB,
        "{kind}: binary header intact"
    );
    assert_eq!(
        seen.get("x-echo-kind").map(String::as_str),
        Some(kind),
        "{kind}: upstream saw the request metadata {seen:?}"
    );
}

/// The binary header value of [`decorate`].
const BLOB: &[u8] = &[0, 1, 2, 254, 255];

/// Ringway (two shards) with one upstream, `name`, routed by `job`.
async fn one_upstream(name: &str) -> Env {
    Env::builder(RINGWAY)
        .shards(2)
        .upstream(name)
        .route("job", name)
        .start()
        .await
}

/// Unary: tonic merges the trailers into the response metadata.
#[test]
fn unary_call_carries_metadata_and_trailers_both_ways() {
    run(LIMIT, async {
        unary_relayed(&one_upstream("up").await).await
    });
}

async fn unary_relayed(env: &Env) {
    let mut client = env.client().await;
    let mut request = routed(EchoRequest::default(), "job");
    decorate(request.metadata_mut(), "unary");
    let reply = client.unary(request).await.expect("unary");
    check_metadata("unary", reply.metadata(), &reply.get_ref().metadata);
    assert_eq!(upstream_trailer(reply.metadata()), Some("up"));
    assert_eq!(env.upstream("up").cancelled(), 0, "no call was cut short");
}

#[test]
fn server_stream_relays_every_reply_with_metadata_and_trailers() {
    run(LIMIT, async {
        server_stream_relayed(&one_upstream("up").await).await
    });
}

async fn server_stream_relayed(env: &Env) {
    let mut client = env.client().await;
    let mut request = routed(
        EchoRequest {
            reply_count: 5,
            payload: b"s".to_vec(),
            ..Default::default()
        },
        "job",
    );
    decorate(request.metadata_mut(), "server");
    let response = client.server_stream(request).await.expect("server stream");
    let headers = response.metadata().clone();
    let mut inbound = response.into_inner();
    let mut replies = Vec::new();
    while let Some(reply) = inbound.message().await.expect("server stream message") {
        replies.push(reply);
    }
    assert_eq!(replies.len(), 5);
    assert!(replies
        .iter()
        .enumerate()
        .all(|(i, r)| r.seq == i as u32 && r.payload == b"s"));
    check_metadata("server", &headers, &replies[0].metadata);
    let trailers = inbound
        .trailers()
        .await
        .expect("trailers")
        .expect("some trailers");
    assert_eq!(upstream_trailer(&trailers), Some("up"));
    assert_eq!(env.upstream("up").cancelled(), 0, "no call was cut short");
}

#[test]
fn client_stream_relays_every_message_with_metadata_and_trailers() {
    run(LIMIT, async {
        client_stream_relayed(&one_upstream("up").await).await
    });
}

async fn client_stream_relayed(env: &Env) {
    let mut client = env.client().await;
    let outbound = stream::iter((0..7u32).map(|i| EchoRequest {
        payload: pattern(1000, i),
        ..Default::default()
    }));
    let mut request = with_jobid(Request::new(outbound), "job");
    decorate(request.metadata_mut(), "client");
    let reply = client.client_stream(request).await.expect("client stream");
    check_metadata("client", reply.metadata(), &reply.get_ref().metadata);
    assert_eq!(reply.get_ref().received_messages, 7);
    assert_eq!(reply.get_ref().received_bytes, 7000);
    assert_eq!(reply.get_ref().payload, pattern(1000, 6));
    assert_eq!(upstream_trailer(reply.metadata()), Some("up"));
    assert_eq!(env.upstream("up").cancelled(), 0, "no call was cut short");
}

/// Bidirectional, in lock step: each reply is read before the next request is sent.
#[test]
fn bidi_stream_relays_in_lock_step_with_metadata_and_trailers() {
    run(LIMIT, async {
        bidi_stream_relayed(&one_upstream("up").await).await
    });
}

async fn bidi_stream_relayed(env: &Env) {
    let mut client = env.client().await;
    let (tx, rx) = ringway_testkit::tokio::sync::mpsc::channel::<EchoRequest>(1);
    let outbound = ringway_testkit::tokio_stream::wrappers::ReceiverStream::new(rx);
    let mut request = with_jobid(Request::new(outbound), "job");
    decorate(request.metadata_mut(), "bidi");
    tx.send(EchoRequest {
        payload: pattern(10, 0),
        ..Default::default()
    })
    .await
    .unwrap();
    let response = client.bidi_stream(request).await.expect("bidi");
    let headers = response.metadata().clone();
    let mut inbound = response.into_inner();
    let first = inbound
        .message()
        .await
        .expect("bidi reply")
        .expect("a first reply");
    check_metadata("bidi", &headers, &first.metadata);
    assert_eq!(first.payload, pattern(10, 0));
    for i in 1..5u32 {
        tx.send(EchoRequest {
            payload: pattern(10, i),
            ..Default::default()
        })
        .await
        .unwrap();
        let reply = inbound
            .message()
            .await
            .expect("bidi reply")
            .expect("a reply");
        assert_eq!((reply.seq, reply.payload), (i, pattern(10, i)));
    }
    drop(tx);
    assert!(inbound.message().await.expect("bidi end").is_none());
    let trailers = inbound
        .trailers()
        .await
        .expect("trailers")
        .expect("some trailers");
    assert_eq!(upstream_trailer(&trailers), Some("up"));
    assert_eq!(env.upstream("up").cancelled(), 0, "no call was cut short");
}

#[test]
fn four_mib_messages_cross_both_ways() {
    run(LIMIT, async {
        four_mib_relayed(&one_upstream("big").await).await
    });
}

async fn four_mib_relayed(env: &Env) {
    let mut client = env.client().await;

    let payload = pattern(BIG, 1);
    let reply = client
        .unary(routed(
            EchoRequest {
                payload: payload.clone(),
                ..Default::default()
            },
            "job",
        ))
        .await
        .expect("a 4 MiB unary call");
    assert!(
        reply.get_ref().payload == payload,
        "unary payload came back intact"
    );

    let outbound = stream::iter((0..3u32).map(|i| EchoRequest {
        payload: pattern(BIG, 10 + i),
        ..Default::default()
    }));
    let mut inbound = client
        .bidi_stream(routed(outbound, "job"))
        .await
        .expect("a 4 MiB bidi call")
        .into_inner();
    for i in 0..3u32 {
        let reply = inbound
            .message()
            .await
            .expect("bidi reply")
            .expect("a reply");
        assert_eq!(reply.seq, i);
        assert!(
            reply.payload == pattern(BIG, 10 + i),
            "bidi payload {i} came back intact"
        );
    }
    assert!(inbound.message().await.expect("bidi end").is_none());
}

/// `io_driver = "io_uring"` (completions; the rest of the suite runs on the default, epoll):
/// the shards say so, and every RPC kind, metadata, trailers and 4 MiB messages cross as they
/// do on epoll.
#[test]
fn io_uring_driver_relays_every_kind() {
    run(LIMIT, async {
        let env = Env::builder(RINGWAY)
            .shards(2)
            .args(&["--io-driver", "io_uring"])
            .upstream("up")
            .route("job", "up")
            .start()
            .await;
        let log = env.gateway().stderr();
        assert_eq!(
            log.matches("driver io_uring").count(),
            2,
            "both shards on io_uring: {log}"
        );
        unary_relayed(&env).await;
        server_stream_relayed(&env).await;
        client_stream_relayed(&env).await;
        bidi_stream_relayed(&env).await;
        four_mib_relayed(&env).await;
    });
}

/// The message every unary failure below carries: non-ASCII, a `%` and a tab, all of which
/// gRPC percent-encodes in `grpc-message`.
const MESSAGE: &str = "denied: ünïcode, 100% sure\tand a tab";

/// A unary call the upstream fails with a trailers-only response; its status.
async fn unary_failure(client: &mut EchoClient<Channel>) -> Status {
    client
        .unary(routed(
            EchoRequest {
                fail: Some(Failure {
                    code: Code::PermissionDenied as i32,
                    message: MESSAGE.into(),
                    trailer_key: "x-reason".into(),
                    trailer_value: "quota".into(),
                }),
                ..Default::default()
            },
            "job",
        ))
        .await
        .expect_err("the upstream fails this call")
}

/// A server stream of two replies, then the upstream's error in the trailers with a binary
/// trailer; the status it ends with.
async fn server_stream_failure(client: &mut EchoClient<Channel>) -> Status {
    let mut inbound = client
        .server_stream(routed(
            EchoRequest {
                reply_count: 2,
                fail: Some(Failure {
                    code: Code::ResourceExhausted as i32,
                    message: "out of tokens".into(),
                    trailer_key: "x-detail-bin".into(),
                    trailer_value: "\u{1}\u{2}binary".into(),
                }),
                ..Default::default()
            },
            "job",
        ))
        .await
        .expect("the stream starts")
        .into_inner();
    assert_eq!(inbound.message().await.unwrap().unwrap().seq, 0);
    assert_eq!(inbound.message().await.unwrap().unwrap().seq, 1);
    inbound
        .message()
        .await
        .expect_err("the stream ends in an error")
}

/// A bidi call whose second request asks the upstream for a failure; the status it ends with.
async fn bidi_failure(client: &mut EchoClient<Channel>) -> Status {
    let outbound = stream::iter([
        EchoRequest::default(),
        EchoRequest {
            fail: Some(Failure {
                code: Code::Aborted as i32,
                message: "conflict".into(),
                trailer_key: "x-retry".into(),
                trailer_value: "later".into(),
            }),
            ..Default::default()
        },
    ]);
    let mut inbound = client
        .bidi_stream(routed(outbound, "job"))
        .await
        .expect("bidi starts")
        .into_inner();
    assert!(inbound.message().await.unwrap().is_some());
    inbound.message().await.expect_err("bidi ends in an error")
}

#[test]
fn upstream_error_of_a_unary_call_passes_through_unchanged() {
    run(LIMIT, async {
        let env = one_upstream("err").await;
        let status = unary_failure(&mut env.client().await).await;
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert_eq!(status.message(), MESSAGE);
        assert_eq!(status.metadata().get("x-reason").unwrap(), "quota");
        assert_eq!(upstream_trailer(status.metadata()), Some("err"));
    });
}

#[test]
fn upstream_error_ending_a_server_stream_passes_through_unchanged() {
    run(LIMIT, async {
        let env = one_upstream("err").await;
        let status = server_stream_failure(&mut env.client().await).await;
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert_eq!(status.message(), "out of tokens");
        assert_eq!(
            status
                .metadata()
                .get_bin("x-detail-bin")
                .unwrap()
                .to_bytes()
                .unwrap(),
            "\u{1}\u{2}binary".as_bytes()
        );
        assert_eq!(upstream_trailer(status.metadata()), Some("err"));
    });
}

#[test]
fn upstream_error_ending_a_bidi_stream_passes_through_unchanged() {
    run(LIMIT, async {
        let env = one_upstream("err").await;
        let status = bidi_failure(&mut env.client().await).await;
        assert_eq!(status.code(), Code::Aborted, "{status:?}");
        assert_eq!(status.message(), "conflict");
        assert_eq!(status.metadata().get("x-retry").unwrap(), "later");
    });
}

/// The three errors above on one connection: it still serves a call afterwards.
#[test]
fn upstream_errors_leave_the_client_connection_usable() {
    run(LIMIT, async {
        let env = one_upstream("err").await;
        let mut client = env.client().await;
        unary_failure(&mut client).await;
        server_stream_failure(&mut client).await;
        bidi_failure(&mut client).await;
        let reply = client.unary(routed(EchoRequest::default(), "job")).await;
        assert_eq!(
            reply.expect("a call after the errors").get_ref().upstream,
            "err"
        );
    });
}

#[test]
fn a_route_change_is_seen_by_the_next_call() {
    run(LIMIT, async {
        let env = Env::builder(RINGWAY)
            .shards(2)
            .upstream("a")
            .upstream("b")
            .route("job", "a")
            .start()
            .await;
        let mut client = env.client().await;

        let call = |mut client: EchoClient<Channel>| async move {
            let reply = client.unary(routed(EchoRequest::default(), "job")).await;
            reply.expect("a routed call").into_inner().upstream
        };
        assert_eq!(call(client.clone()).await, "a");
        assert_eq!(call(client.clone()).await, "a");
        env.route("job", "b");
        assert_eq!(call(client.clone()).await, "b", "the call right after SET");
        env.route("job", "a");
        assert_eq!(call(client.clone()).await, "a", "and back");
        client = env.client().await;
        assert_eq!(call(client).await, "a", "on a new connection too");
    });
}

#[test]
fn a_multi_target_route_spreads_calls() {
    run(LIMIT, async {
        let env = Env::builder(RINGWAY)
            .shards(2)
            .upstream("a")
            .upstream("b")
            .route("job", "a,b")
            .start()
            .await;
        let mut client = env.client().await;

        let mut served: HashMap<String, usize> = HashMap::new();
        for i in 0..200 {
            let reply = client
                .unary(routed(EchoRequest::default(), "job"))
                .await
                .unwrap_or_else(|s| panic!("call {i}: {s:?}"));
            *served.entry(reply.into_inner().upstream).or_default() += 1;
        }
        let (to_a, to_b) = (
            served.get("a").copied().unwrap_or(0),
            served.get("b").copied().unwrap_or(0),
        );
        assert_eq!(to_a + to_b, 200, "{served:?}");
        assert!(to_a > 0 && to_b > 0, "both targets get calls: {served:?}");
        let calls = (env.upstream("a").calls(), env.upstream("b").calls());
        assert_eq!(calls, (to_a, to_b));
    });
}

#[test]
fn route_header_and_prefix_flags_are_used() {
    run(LIMIT, async {
        let env = Env::builder(RINGWAY)
            .shards(2)
            .upstream("tenant")
            .route("routes:t-1", "tenant")
            .args(&["--route-header", "x-tenant", "--route-prefix", "routes:"])
            .start()
            .await;
        let mut client = env.client().await;

        let mut request = Request::new(EchoRequest::default());
        request
            .metadata_mut()
            .insert("x-tenant", "t-1".parse().unwrap());
        let reply = client.unary(request).await.expect("routed by x-tenant");
        assert_eq!(reply.get_ref().upstream, "tenant");

        // `jobid` means nothing now: the header ringway wants is missing.
        let status = client
            .unary(routed(EchoRequest::default(), "t-1"))
            .await
            .expect_err("jobid is not the routing header");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains("x-tenant"),
            "names the header: {status:?}"
        );
    });
}
