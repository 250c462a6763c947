//! Many calls at once: each still reaches the upstream its key names, and
//! ringway's upstream pools keep to `--pool-max-connections` per target and
//! shard however many calls run, reusing connections instead of dialing per call.

use std::collections::HashMap;
use std::time::Duration;

use ringway_testkit::futures_util::stream::{self, StreamExt};
use ringway_testkit::tokio;
use ringway_testkit::{connect, pattern, routed, run, EchoRequest, Env, Upstream};

const RINGWAY: &str = env!("CARGO_BIN_EXE_ringway");
const LIMIT: Duration = Duration::from_secs(180);

#[test]
fn concurrent_calls_are_each_routed_right() {
    run(LIMIT, async {
        const CALLS: u32 = 240;
        const KEYS: u32 = 10;
        let owner = |key: u32| (key % 3) as usize;
        let mut builder = Env::builder(RINGWAY)
            .shards(2)
            .upstream("u0")
            .upstream("u1")
            .upstream("u2");
        for key in 0..KEYS {
            builder = builder.route(&format!("job-{key}"), &format!("u{}", owner(key)));
        }
        let env = builder.start().await;
        let client = env.client().await;

        // Every call sleeps 300 ms upstream, so all of them are in flight together.
        let calls: Vec<_> = (0..CALLS)
            .map(|i| {
                let mut client = client.clone();
                tokio::spawn(async move {
                    let key = i % KEYS;
                    let request = EchoRequest {
                        payload: pattern(64, i),
                        delay_ms: 300,
                        ..Default::default()
                    };
                    let reply = client.unary(routed(request, &format!("job-{key}"))).await;
                    (i, key, reply)
                })
            })
            .collect();
        let mut expected = [0usize; 3];
        for call in calls {
            let (i, key, reply) = call.await.expect("the call task");
            let reply = reply
                .unwrap_or_else(|s| panic!("call {i} (job-{key}): {s:?}"))
                .into_inner();
            assert_eq!(
                reply.upstream,
                format!("u{}", owner(key)),
                "call {i} (job-{key})"
            );
            assert_eq!(
                reply.payload,
                pattern(64, i),
                "call {i} got its own payload"
            );
            expected[owner(key)] += 1;
        }
        let served: Vec<usize> = env.upstreams().iter().map(Upstream::calls).collect();
        assert_eq!(served, expected);
    });
}

/// Runs `calls` unary calls, `in_flight` at a time, spread over `connections`
/// client connections, all routed by `key`; returns how many each upstream served.
async fn drive(
    gateway: std::net::SocketAddr,
    key: &str,
    calls: usize,
    connections: usize,
    in_flight: usize,
) -> HashMap<String, usize> {
    let mut clients = Vec::new();
    for _ in 0..connections {
        clients.push(connect(gateway).await);
    }
    let results: Vec<_> = stream::iter(0..calls)
        .map(|i| {
            let mut client = clients[i % connections].clone();
            let key = key.to_owned();
            async move {
                let reply = client.unary(routed(EchoRequest::default(), &key)).await;
                reply
                    .unwrap_or_else(|s| panic!("call {i}: {s:?}"))
                    .into_inner()
                    .upstream
            }
        })
        .buffer_unordered(in_flight)
        .collect()
        .await;
    let mut served = HashMap::new();
    for upstream in results {
        *served.entry(upstream).or_default() += 1;
    }
    served
}

#[test]
fn upstream_connections_are_reused() {
    run(LIMIT, async {
        let env = Env::builder(RINGWAY)
            .shards(2)
            .upstream("up")
            .route("job", "up")
            .args(&["--pool-max-connections", "2"])
            .start()
            .await;

        // Several client connections, so both shards get calls.
        let served = drive(env.addr(), "job", 3000, 8, 64).await;
        assert_eq!(served.get("up"), Some(&3000));
        let opened = env.upstream("up").connections_accepted();
        eprintln!("3000 calls through 2 shards opened {opened} upstream connections");
        assert!(
            (1..=2 * 2).contains(&opened),
            "2 shards × 2 connections at most, and at least one: {opened} opened for 3000 calls"
        );
    });
}

#[test]
fn one_shard_one_connection_serves_every_call() {
    run(LIMIT, async {
        let env = Env::builder(RINGWAY)
            .shards(1)
            .upstream("up")
            .route("job", "up")
            .args(&["--pool-max-connections", "1"])
            .start()
            .await;

        let served = drive(env.addr(), "job", 1000, 4, 32).await;
        assert_eq!(served.get("up"), Some(&1000));
        assert_eq!(
            env.upstream("up").connections_accepted(),
            1,
            "exactly one connection for 1000 calls"
        );
    });
}
