//! The gRPC health service ringway answers itself (`grpc.health.v1.Health`): SERVING with
//! Redis, NOT_SERVING without it or while draining; unknown services; a call with a routing
//! header on the same path is routed; `Watch` ends when the drain starts.

use std::time::Duration;

use ringway_testkit::bytes::Bytes;
use ringway_testkit::{closed_addr, raw_grpc_call, run, tokio, Env, Gateway};

const RINGWAY: &str = env!("CARGO_BIN_EXE_ringway");
const LIMIT: Duration = Duration::from_secs(60);
const CHECK: &str = "/grpc.health.v1.Health/Check";
const WATCH: &str = "/grpc.health.v1.Health/Watch";

/// A `HealthCheckResponse` with `status`, gRPC-framed.
fn response(status: u8) -> Vec<u8> {
    vec![0, 0, 0, 0, 2, 0x08, status]
}

/// A `HealthCheckRequest` for `service`.
fn request(service: &str) -> Vec<u8> {
    if service.is_empty() {
        return Vec::new();
    }
    let mut m = vec![0x0a, service.len() as u8];
    m.extend_from_slice(service.as_bytes());
    m
}

#[test]
fn check_is_serving_with_redis_and_names_unknown_services() {
    run(LIMIT, async {
        let env = Env::builder(RINGWAY)
            .upstream("up")
            .route("job", "up")
            .start()
            .await;
        let r = raw_grpc_call(env.addr(), CHECK, &[], &request(""))
            .await
            .unwrap();
        assert_eq!(r.grpc_status(), Some("0"), "{r:?}");
        assert_eq!(r.body, response(1), "SERVING");

        let r = raw_grpc_call(env.addr(), CHECK, &[], &request("my.Service"))
            .await
            .unwrap();
        assert_eq!(r.grpc_status(), Some("5"), "{r:?}");
        assert!(
            r.grpc_message().unwrap_or("").contains("my.Service"),
            "{r:?}"
        );

        // With a routing header the call is an ordinary one: routed by its key.
        let r = raw_grpc_call(env.addr(), CHECK, &[("jobid", "nobody")], &request(""))
            .await
            .unwrap();
        assert_eq!(r.grpc_status(), Some("5"), "not in Redis: {r:?}");
        assert!(r.grpc_message().unwrap_or("").contains("nobody"), "{r:?}");
        assert_eq!(
            env.metric("ringway_call_outcomes_total", &[("outcome", "health")]),
            2.0
        );
    });
}

#[test]
fn check_is_not_serving_without_redis() {
    run(LIMIT, async {
        let gateway = Gateway::start(RINGWAY, closed_addr(), &["--shards", "1"]);
        let r = raw_grpc_call(gateway.addr(), CHECK, &[], &request(""))
            .await
            .unwrap();
        assert_eq!(r.grpc_status(), Some("0"), "{r:?}");
        assert_eq!(r.body, response(2), "NOT_SERVING");
    });
}

#[test]
fn watch_sends_the_status_then_not_serving_and_ends_when_the_drain_starts() {
    run(LIMIT, async {
        let env = Env::builder(RINGWAY)
            .upstream("up")
            .route("job", "up")
            .start()
            .await;
        let tcp = tokio::net::TcpStream::connect(env.addr()).await.unwrap();
        let (client, connection) = ringway_testkit::h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut client = client.ready().await.unwrap();
        let req = ringway_testkit::http::Request::post(format!("http://{}{WATCH}", env.addr()))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let (pending, mut send) = client.send_request(req, false).unwrap();
        send.send_data(Bytes::from_static(&[0, 0, 0, 0, 0]), true)
            .unwrap();
        let mut body = pending.await.unwrap().into_body();
        let first = body.data().await.unwrap().unwrap();
        assert_eq!(first.as_ref(), response(1), "SERVING at once");
        let _ = body.flow_control().release_capacity(first.len());

        let (code, text) = env.gateway().admin_post("/drain");
        assert_eq!(code, 202, "{text}");
        let mut rest = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.unwrap();
            let _ = body.flow_control().release_capacity(chunk.len());
            rest.extend_from_slice(&chunk);
        }
        assert_eq!(rest, response(2), "NOT_SERVING once draining");
        let trailers = body.trailers().await.unwrap().expect("trailers");
        assert_eq!(trailers.get("grpc-status").unwrap(), "14");
    });
}

/// Opens a `Watch` on `client`; returns its response future and request stream.
fn open_watch(
    client: &mut ringway_testkit::h2::client::SendRequest<Bytes>,
    addr: std::net::SocketAddr,
) -> ringway_testkit::h2::client::ResponseFuture {
    let req = ringway_testkit::http::Request::post(format!("http://{addr}{WATCH}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (pending, mut send) = client.send_request(req, false).unwrap();
    send.send_data(Bytes::from_static(&[0, 0, 0, 0, 0]), true)
        .unwrap();
    pending
}

/// Watches are bounded per shard: past 1024 open, the next is refused with RESOURCE_EXHAUSTED;
/// the ones open keep their streams.
#[test]
fn watches_past_the_cap_are_refused() {
    run(LIMIT, async {
        let env = Env::builder(RINGWAY)
            .shards(1)
            .upstream("up")
            .route("job", "up")
            .start()
            .await;
        let mut open = Vec::new();
        // 41 connections × 25 streams = 1025 watches (few per connection: h2's client counts
        // the small DATA frames it holds unread against a budget per connection).
        let mut clients = Vec::new();
        for _ in 0..41 {
            let tcp = tokio::net::TcpStream::connect(env.addr()).await.unwrap();
            let (client, connection) = ringway_testkit::h2::client::handshake(tcp).await.unwrap();
            tokio::spawn(async move {
                let _ = connection.await;
            });
            clients.push(client);
        }
        for i in 0..1025 {
            let client = &mut clients[i % 41];
            *client = client.clone().ready().await.unwrap();
            open.push(open_watch(client, env.addr()));
        }
        let mut refused = 0;
        let mut bodies = Vec::new();
        for pending in open {
            let response = pending.await.unwrap();
            if response.headers().get("grpc-status").map(|v| v.as_bytes()) == Some(b"8") {
                refused += 1;
            } else {
                bodies.push(response.into_body());
            }
        }
        assert_eq!(refused, 1, "exactly the 1025th watch is refused");
        assert_eq!(bodies.len(), 1024);
        let first = bodies[0].data().await.unwrap().unwrap();
        assert_eq!(
            first.as_ref(),
            response(1),
            "open watches still get their status"
        );
    });
}
