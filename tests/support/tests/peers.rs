//! The testkit's own peers, checked without ringway: a client talks to an
//! upstream directly and to redis-server, so a failing ringway test can be
//! blamed on the gateway, not on its test harness.

use std::time::Duration;

use futures_util::StreamExt;
use ringway_testkit::{within, EchoClient, EchoRequest, Failure, RedisServer, Upstream};
use tonic::transport::Channel;
use tonic::{Code, Request};

const LIMIT: Duration = Duration::from_secs(20);

async fn direct(upstream: &Upstream) -> EchoClient<Channel> {
    let channel = Channel::from_shared(format!("http://{}", upstream.addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    EchoClient::new(channel)
        .max_decoding_message_size(ringway_testkit::MAX_MESSAGE_SIZE)
        .max_encoding_message_size(ringway_testkit::MAX_MESSAGE_SIZE)
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_echoes_metadata_and_stamps_trailers() {
    within(LIMIT, "direct calls", async {
        let upstream = Upstream::start("alpha").await;
        let mut client = direct(&upstream).await;

        let mut request = Request::new(EchoRequest {
            payload: vec![7; 5 * 1024 * 1024],
            ..Default::default()
        });
        request
            .metadata_mut()
            .insert("x-echo-one", "1".parse().unwrap());
        let reply = client.unary(request).await.unwrap();
        assert_eq!(reply.metadata().get("x-echo-one").unwrap(), "1");
        assert_eq!(reply.get_ref().upstream, "alpha");
        assert_eq!(reply.get_ref().payload.len(), 5 * 1024 * 1024);
        assert_eq!(reply.get_ref().metadata.get("x-echo-one").unwrap(), "1");

        let stream = client
            .server_stream(EchoRequest {
                reply_count: 3,
                ..Default::default()
            })
            .await
            .unwrap();
        let mut stream = stream.into_inner();
        let mut seen = 0;
        while let Some(reply) = stream.message().await.unwrap() {
            assert_eq!(reply.seq, seen);
            seen += 1;
        }
        assert_eq!(seen, 3);
        let trailers = stream.trailers().await.unwrap().unwrap();
        assert_eq!(trailers.get("x-upstream").unwrap(), "alpha");

        let status = client
            .unary(EchoRequest {
                fail: Some(Failure {
                    code: Code::ResourceExhausted as i32,
                    message: "no more".into(),
                    trailer_key: "x-why".into(),
                    trailer_value: "because".into(),
                }),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(status.message(), "no more");
        assert_eq!(status.metadata().get("x-why").unwrap(), "because");
        assert_eq!(status.metadata().get("x-upstream").unwrap(), "alpha");

        let outbound = futures_util::stream::iter((0..4).map(|i| EchoRequest {
            payload: vec![i; 10],
            ..Default::default()
        }));
        let reply = client.client_stream(outbound).await.unwrap().into_inner();
        assert_eq!((reply.received_messages, reply.received_bytes), (4, 40));
        assert_eq!(reply.payload, vec![3; 10]);

        assert_eq!(upstream.connections_accepted(), 1);
        assert_eq!(upstream.cancelled(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_counts_cancels_and_restarts() {
    within(LIMIT, "cancel and restart", async {
        let mut upstream = Upstream::start("beta").await;
        let mut client = direct(&upstream).await;

        let mut stream = client
            .server_stream(EchoRequest {
                reply_count: 1000,
                delay_ms: 20,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        stream.next().await.unwrap().unwrap();
        drop(stream);
        let slow = tokio::time::timeout(
            Duration::from_millis(200),
            client.unary(EchoRequest {
                delay_ms: 10_000,
                ..Default::default()
            }),
        )
        .await;
        assert!(slow.is_err());
        ringway_testkit::eventually(Duration::from_secs(5), "two cancels", || async {
            match upstream.cancelled() {
                2 => Ok(()),
                n => Err(n),
            }
        })
        .await;

        upstream.stop().await;
        let refused = tokio::net::TcpStream::connect(upstream.addr()).await;
        assert!(refused.is_err(), "a stopped upstream refuses");
        upstream.restart().await;
        let mut client = direct(&upstream).await;
        let reply = client.unary(EchoRequest::default()).await.unwrap();
        assert_eq!(reply.get_ref().upstream, "beta");
        assert_eq!(upstream.connections_accepted(), 2);
    })
    .await;
}

#[test]
fn redis_sets_and_restarts_empty() {
    let mut redis = RedisServer::start();
    redis.set("k", "127.0.0.1:1");
    assert_eq!(redis.get("k").as_deref(), Some(&b"127.0.0.1:1"[..]));
    redis.del("k");
    assert_eq!(redis.get("k"), None);
    redis.set("k", "v");
    redis.stop();
    assert!(std::net::TcpStream::connect(redis.addr()).is_err());
    redis.start_again();
    assert_eq!(redis.get("k"), None, "persistence is off");
}

#[tokio::test(flavor = "multi_thread")]
async fn raw_calls_see_status_and_the_deadline_header() {
    use prost::Message;
    within(LIMIT, "raw calls", async {
        let upstream = Upstream::start("gamma").await;
        let failing = EchoRequest {
            fail: Some(Failure {
                code: Code::NotFound as i32,
                message: "gone".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let raw = ringway_testkit::raw_grpc_call(
            upstream.addr(),
            "/echo.Echo/Unary",
            &[],
            &failing.encode_to_vec(),
        )
        .await
        .unwrap();
        assert_eq!(raw.status, 200);
        assert!(raw.trailers_only, "{raw:?}");
        assert_eq!(raw.grpc_status(), Some("5"));
        assert_eq!(raw.grpc_message(), Some("gone"));

        let raw = ringway_testkit::raw_grpc_call(
            upstream.addr(),
            "/echo.Echo/Unary",
            &[],
            &EchoRequest::default().encode_to_vec(),
        )
        .await
        .unwrap();
        assert!(!raw.trailers_only);
        assert_eq!(raw.grpc_status(), Some("0"));
        assert_eq!(raw.trailers.unwrap().get("x-upstream").unwrap(), "gamma");

        let mut client = direct(&upstream).await;
        let mut request = Request::new(EchoRequest::default());
        request.set_timeout(Duration::from_secs(30));
        let reply = client.unary(request).await.unwrap().into_inner();
        assert!(
            reply.metadata.contains_key("grpc-timeout"),
            "the upstream sees grpc-timeout: {:?}",
            reply.metadata
        );
    })
    .await;
}
