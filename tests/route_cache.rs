//! The route cache (`--route-cache`): coherent with Redis through client tracking, one GET per
//! key per shard however many calls want it, flushed when Redis goes away, and TTL-only with a
//! server that has no RESP3.

use std::time::Duration;

use ringway_testkit::tonic::Code;
use ringway_testkit::{eventually, routed, run, tokio_sleep, EchoRequest, Env, EnvBuilder};

const RINGWAY: &str = env!("CARGO_BIN_EXE_ringway");
const LIMIT: Duration = Duration::from_secs(60);

/// Ringway on one shard with `--route-cache`.
fn cached() -> EnvBuilder {
    Env::builder(RINGWAY).shards(1).args(&["--route-cache"])
}

#[test]
fn cached_routes_follow_a_set_at_once() {
    run(LIMIT, async {
        let env = cached()
            .upstream("a")
            .upstream("b")
            .route("job", "a")
            .start()
            .await;
        let mut client = env.client().await;

        for _ in 0..50 {
            let reply = client
                .unary(routed(EchoRequest::default(), "job"))
                .await
                .unwrap();
            assert_eq!(reply.get_ref().upstream, "a");
        }
        // 50 calls, one GET: the rest were answered by the cache.
        assert_eq!(env.metric("ringway_redis_lookups_total", &[]), 1.0);
        assert!(env.metric("ringway_route_cache_hits_total", &[]) >= 49.0);

        for round in 0..20 {
            let (from, to) = if round % 2 == 0 {
                ("a", "b")
            } else {
                ("b", "a")
            };
            env.route("job", to);
            // The invalidation is pushed when the SET runs; give it a moment to cross loopback.
            tokio_sleep(Duration::from_millis(20)).await;
            let reply = client
                .unary(routed(EchoRequest::default(), "job"))
                .await
                .unwrap();
            assert_eq!(
                reply.get_ref().upstream,
                to,
                "round {round}: the call after the SET still went to {from}"
            );
        }
        assert!(env.metric("ringway_route_cache_invalidations_total", &[]) >= 20.0);
    });
}

#[test]
fn concurrent_lookups_of_one_key_share_one_get() {
    run(LIMIT, async {
        let env = cached().upstream("a").route("cold", "a").start().await;
        let client = env.client().await;
        let calls = (0..64).map(|_| {
            let mut client = client.clone();
            async move { client.unary(routed(EchoRequest::default(), "cold")).await }
        });
        for result in ringway_testkit::futures_util::future::join_all(calls).await {
            assert_eq!(result.unwrap().get_ref().upstream, "a");
        }
        assert_eq!(env.metric("ringway_redis_lookups_total", &[]), 1.0);
        assert_eq!(env.metric("ringway_route_cache_misses_total", &[]), 1.0);
    });
}

#[test]
fn not_found_is_cached_briefly_and_invalidated_by_a_set() {
    run(LIMIT, async {
        let env = cached().upstream("a").start().await;
        let mut client = env.client().await;
        let mut messages = Vec::new();
        for _ in 0..5 {
            let status = client
                .unary(routed(EchoRequest::default(), "later"))
                .await
                .unwrap_err();
            assert_eq!(status.code(), Code::NotFound);
            messages.push(status.message().to_string());
        }
        assert_eq!(env.metric("ringway_redis_lookups_total", &[]), 1.0);
        // The cached answer says what the lookup said: the key, as Redis was asked for it.
        assert!(messages[0].contains("later"), "{}", messages[0]);
        assert!(messages.iter().all(|m| *m == messages[0]), "{messages:?}");
        // Redis tracks keys read even when they do not exist: the SET invalidates the miss.
        env.route("later", "a");
        tokio_sleep(Duration::from_millis(20)).await;
        let reply = client
            .unary(routed(EchoRequest::default(), "later"))
            .await
            .unwrap();
        assert_eq!(reply.get_ref().upstream, "a");
    });
}

#[test]
fn losing_redis_flushes_the_cache() {
    run(LIMIT, async {
        let mut env = cached().upstream("a").route("job", "a").start().await;
        let mut client = env.client().await;
        client
            .unary(routed(EchoRequest::default(), "job"))
            .await
            .unwrap();
        env.redis_mut().stop();
        // Invalidations may be missed while Redis is away, so nothing cached is trusted.
        let status = eventually(Duration::from_secs(5), "the cache to flush", || {
            let mut client = client.clone();
            async move {
                match client.unary(routed(EchoRequest::default(), "job")).await {
                    Err(status) if status.code() == Code::Unavailable => Ok(status),
                    other => Err(format!("{other:?}")),
                }
            }
        })
        .await;
        assert!(status.message().contains("Redis"), "{}", status.message());
    });
}

#[test]
fn without_resp3_the_cache_is_ttl_only() {
    run(LIMIT, async {
        // A server that refuses HELLO answers like Redis 5: no RESP3, no tracking.
        let env = Env::builder(RINGWAY)
            .redis_args(&["--rename-command", "HELLO", ""])
            .shards(1)
            .upstream("a")
            .upstream("b")
            .route("job", "a")
            .config("[route]\ncache = true\ncache_ttl_ms = 700\n")
            .start()
            .await;
        let mut client = env.client().await;
        let reply = client
            .unary(routed(EchoRequest::default(), "job"))
            .await
            .unwrap();
        assert_eq!(reply.get_ref().upstream, "a");
        env.route("job", "b");
        tokio_sleep(Duration::from_millis(50)).await;
        // No invalidation comes: the cached route stands until its TTL.
        let reply = client
            .unary(routed(EchoRequest::default(), "job"))
            .await
            .unwrap();
        assert_eq!(
            reply.get_ref().upstream,
            "a",
            "TTL-only: the old route within the TTL"
        );
        tokio_sleep(Duration::from_millis(900)).await;
        let reply = client
            .unary(routed(EchoRequest::default(), "job"))
            .await
            .unwrap();
        assert_eq!(reply.get_ref().upstream, "b", "after the TTL the new route");
        let stderr = env.gateway().stderr();
        assert!(stderr.contains("TTL only"), "{stderr}");
    });
}
