//! Redis Cluster, against real processes: three primaries and three replicas on loopback
//! (`--cluster-node-timeout 1000`), created with `redis-cli --cluster create`. ringway is
//! given `redis+cluster://<all six>`. Routes for ~100 keys spread over the slots point at two
//! upstreams; every call must reach the upstream its key names.
//!
//! Then, under continuous calls, a slot holding test keys is moved by hand — `IMPORTING` /
//! `MIGRATING`, half its keys `MIGRATE`d (those answer `-ASK`), the rest, `SETSLOT NODE`
//! (the old owner answers `-MOVED`) — and a primary is killed (SIGKILL) until its replica is
//! promoted. Every call reaches the right upstream or fails with UNAVAILABLE; none hangs;
//! calls succeed again within [`FAILOVER_WITHIN`]. The outage is printed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringway_testkit::cluster::RedisCluster;
use ringway_testkit::tonic::Code;
use ringway_testkit::{
    connect, routed, run, tokio, tokio_sleep, ConfigFile, EchoRequest, Gateway, Upstream,
};

const RINGWAY: &str = env!("CARGO_BIN_EXE_ringway");
const LIMIT: Duration = Duration::from_secs(150);
/// Each call's own limit: a call that takes longer has hung.
const CALL_LIMIT: Duration = Duration::from_secs(3);
/// From the kill to calls succeeding again.
const FAILOVER_WITHIN: Duration = Duration::from_secs(15);
const KEYS: usize = 100;

type Client = ringway_testkit::EchoClient<ringway_testkit::tonic::transport::Channel>;

/// One call's outcome: the upstream that answered, or the status code and message.
type Outcome = Result<String, (Code, String)>;

async fn call(client: &mut Client, key: &str) -> Outcome {
    match tokio::time::timeout(
        CALL_LIMIT,
        client.unary(routed(EchoRequest::default(), key)),
    )
    .await
    {
        Ok(Ok(reply)) => Ok(reply.get_ref().upstream.clone()),
        Ok(Err(status)) => Err((status.code(), status.message().to_owned())),
        Err(_) => panic!("a call for {key} hung for {CALL_LIMIT:?}"),
    }
}

/// The upstream key `i` routes to.
fn name_of(i: usize) -> &'static str {
    if i.is_multiple_of(2) {
        "a"
    } else {
        "b"
    }
}

/// A call's outcome is right (the key's upstream) or UNAVAILABLE; returns whether it was ok.
fn check(key: &str, want: &str, outcome: &Outcome) -> bool {
    match outcome {
        Ok(upstream) => {
            assert_eq!(upstream, want, "{key} reached the wrong upstream");
            true
        }
        Err((code, message)) => {
            assert_eq!(
                *code,
                Code::Unavailable,
                "{key}: only UNAVAILABLE: {message}"
            );
            false
        }
    }
}

#[test]
fn calls_follow_slot_moves_and_a_failover() {
    run(LIMIT, async {
        let a = Upstream::start("a").await;
        let b = Upstream::start("b").await;
        let cluster = RedisCluster::start(3, 1, 1000);
        let mut keys: Vec<(String, &'static str)> = (0..KEYS)
            .map(|i| (format!("job-{i}"), name_of(i)))
            .collect();
        // Four keys in one slot, to move by hand.
        keys.extend((0..4).map(|i| (format!("{{moving}}-{i}"), name_of(i))));
        for (key, name) in &keys {
            let target = if *name == "a" { a.target() } else { b.target() };
            cluster.set(key, &target);
        }
        let owners: std::collections::HashSet<_> = keys
            .iter()
            .map(|(k, _)| cluster.owner(cluster.keyslot(k)))
            .collect();
        assert_eq!(owners.len(), 3, "the keys are spread over every primary");

        let gateway = Gateway::start(RINGWAY, cluster.url(), &["--shards", "2"]);
        let mut client = connect(gateway.addr()).await;
        ringway_testkit::eventually(Duration::from_secs(10), "ready", || {
            let (status, body) = gateway.admin_get("/readyz");
            async move { (status == 200).then_some(()).ok_or(body) }
        })
        .await;
        for (key, name) in &keys {
            assert_eq!(call(&mut client, key).await.as_deref(), Ok(*name), "{key}");
        }
        let metrics = gateway.metrics();
        assert_eq!(
            gateway.metric("ringway_redis_cluster_slots", &[]),
            2.0 * 16384.0,
            "{metrics}"
        );
        for owner in &owners {
            assert!(
                gateway.metric(
                    "ringway_redis_node_lookups_total",
                    &[("node", &owner.to_string())]
                ) > 0.0,
                "lookups went to {owner}:\n{metrics}"
            );
        }

        // Continuous calls over every key, in the background, for the next two phases.
        let stop = Arc::new(AtomicBool::new(false));
        let background = {
            let stop = stop.clone();
            let keys = keys.clone();
            let mut client = client.clone();
            tokio::spawn(async move {
                let (mut ok, mut unavailable) = (0u32, 0u32);
                'calls: loop {
                    for (key, name) in &keys {
                        if stop.load(Ordering::Relaxed) {
                            break 'calls;
                        }
                        match check(key, name, &call(&mut client, key).await) {
                            true => ok += 1,
                            false => unavailable += 1,
                        }
                    }
                }
                (ok, unavailable)
            })
        };

        // A slot moved by hand, calls running: ASK while it migrates, MOVED after.
        let slot = cluster.keyslot("{moving}-0");
        let from = cluster.owner(slot);
        let to = *owners.iter().find(|o| **o != from).unwrap();
        cluster.begin_migration(slot, from, to);
        cluster.migrate_keys(from, to, &["{moving}-0", "{moving}-1"]);
        let mut asked = 0;
        let mut moving_unavailable = 0u32;
        for _ in 0..20 {
            for key in ["{moving}-0", "{moving}-1", "{moving}-2", "{moving}-3"] {
                let want = keys.iter().find(|(k, _)| k == key).unwrap().1;
                if !check(key, want, &call(&mut client, key).await) {
                    moving_unavailable += 1;
                }
            }
            asked += 1;
            tokio_sleep(Duration::from_millis(20)).await;
        }
        cluster.migrate_keys(from, to, &["{moving}-2", "{moving}-3"]);
        cluster.finish_migration(slot, to);
        for _ in 0..asked {
            for key in ["{moving}-0", "{moving}-1", "{moving}-2", "{moving}-3"] {
                let want = keys.iter().find(|(k, _)| k == key).unwrap().1;
                assert_eq!(
                    call(&mut client, key).await.as_deref(),
                    Ok(want),
                    "{key} after the move"
                );
            }
        }
        let metrics = gateway.metrics();
        assert!(
            gateway.metric("ringway_redis_node_ask_total", &[]) > 0.0,
            "ASK was followed:\n{metrics}"
        );
        assert!(
            gateway.metric("ringway_redis_node_moved_total", &[]) > 0.0,
            "MOVED was followed:\n{metrics}"
        );

        // A primary killed under calls; its replica is promoted.
        let victim = cluster.owner(cluster.keyslot("job-0"));
        let replica = cluster.replica_of(victim);
        let victim_keys: Vec<(String, &str)> = keys
            .iter()
            .filter(|(k, _)| cluster.owner(cluster.keyslot(k)) == victim)
            .cloned()
            .collect();
        assert!(!victim_keys.is_empty());
        let index = cluster.index(victim);
        let mut cluster = cluster;
        cluster.nodes[index].stop();
        let killed = Instant::now();
        let mut first_failure: Option<Instant> = None;
        let mut recovered: Option<Instant> = None;
        let (mut ok, mut unavailable) = (0u32, 0u32);
        let mut not_ready = None;
        let mut streak = 0;
        let mut next = 0;
        while streak < 20 {
            assert!(
                killed.elapsed() < FAILOVER_WITHIN,
                "calls did not succeed again within {FAILOVER_WITHIN:?} of the kill \
                 ({ok} ok, {unavailable} UNAVAILABLE)\n{}\ncluster nodes: {:?}",
                gateway.stderr(),
                cluster
                    .nodes
                    .iter()
                    .find(|n| n.is_running())
                    .map(|n| n.command(&[b"CLUSTER", b"NODES"]))
            );
            let (key, name) = &victim_keys[next % victim_keys.len()];
            next += 1;
            let outcome = call(&mut client, key).await;
            if check(key, name, &outcome) {
                ok += 1;
                if first_failure.is_some() {
                    recovered.get_or_insert_with(Instant::now);
                    streak += 1;
                }
            } else {
                let message = &outcome.as_ref().unwrap_err().1;
                assert!(
                    message.contains("Redis") || message.contains("redis"),
                    "{message}"
                );
                unavailable += 1;
                first_failure.get_or_insert_with(Instant::now);
                recovered = None;
                streak = 0;
                if not_ready.is_none() {
                    let (status, body) = gateway.admin_get("/readyz");
                    if status == 503 {
                        not_ready = Some(body);
                    }
                }
            }
            tokio_sleep(Duration::from_millis(10)).await;
        }
        let first_failure = first_failure.expect("killing a primary failed no call");
        let recovered = recovered.expect("calls recovered");
        stop.store(true, Ordering::Relaxed);
        let (bg_ok, bg_unavailable) = background.await.expect("the background calls");
        eprintln!(
            "cluster failover: outage {:.2} s (first failure to first success after it), \
             {:.2} s from the kill; {ok} calls ok, {unavailable} UNAVAILABLE; calls to the \
             migrating slot: {moving_unavailable} of {} UNAVAILABLE; background calls during \
             the move and the failover: {bg_ok} ok, {bg_unavailable} UNAVAILABLE",
            (recovered - first_failure).as_secs_f64(),
            (recovered - killed).as_secs_f64(),
            asked * 4,
        );
        assert!(cluster.is_primary(replica), "the replica was promoted");
        if let Some(body) = not_ready {
            assert!(body.contains("cluster mode"), "{body}");
        }
        // Every key routes right again, on the new topology.
        for (key, name) in &keys {
            assert_eq!(call(&mut client, key).await.as_deref(), Ok(*name), "{key}");
        }
        ringway_testkit::eventually(Duration::from_secs(10), "ready again", || {
            let (status, body) = gateway.admin_get("/readyz");
            async move { (status == 200).then_some(()).ok_or(body) }
        })
        .await;
    });
}

#[test]
fn the_route_cache_is_kept_coherent_by_every_node() {
    run(LIMIT, async {
        let a = Upstream::start("a").await;
        let b = Upstream::start("b").await;
        let cluster = RedisCluster::start(3, 0, 1000);
        let keys: Vec<String> = (0..30).map(|i| format!("cached-{i}")).collect();
        for key in &keys {
            cluster.set(key, &a.target());
        }
        let owners: std::collections::HashSet<_> = keys
            .iter()
            .map(|k| cluster.owner(cluster.keyslot(k)))
            .collect();
        assert_eq!(owners.len(), 3, "the keys are spread over every primary");
        let gateway = Gateway::start(RINGWAY, cluster.url(), &["--shards", "1", "--route-cache"]);
        let mut client = connect(gateway.addr()).await;
        for _ in 0..3 {
            for key in &keys {
                assert_eq!(call(&mut client, key).await.as_deref(), Ok("a"), "{key}");
            }
        }
        assert!(
            gateway.metric("ringway_route_cache_hits_total", &[]) >= 2.0 * keys.len() as f64,
            "{}",
            gateway.metrics()
        );
        // Each node pushes the invalidation of the keys it holds.
        for key in &keys {
            cluster.set(key, &b.target());
        }
        for key in &keys {
            ringway_testkit::eventually(Duration::from_secs(2), "the new route", || {
                let mut client = client.clone();
                async move {
                    match call(&mut client, key).await {
                        Ok(name) if name == "b" => Ok(()),
                        other => Err(other),
                    }
                }
            })
            .await;
        }
        assert!(
            gateway.metric("ringway_route_cache_invalidations_total", &[]) >= keys.len() as f64,
            "{}",
            gateway.metrics()
        );
    });
}

#[test]
fn doctor_reports_the_cluster_topology() {
    let cluster = RedisCluster::start(3, 0, 1000);
    let nodes: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| format!("\"{}\"", n.addr()))
        .collect();
    // The field form of cluster mode.
    let config = ConfigFile::new(&format!(
        "[redis]\nmode = \"cluster\"\nnodes = [{}]\n",
        nodes.join(", ")
    ));
    let line = ringway_testkit::gateway::doctor_finding(RINGWAY, config.path(), "redis cluster");
    assert!(line.starts_with("OK"), "{line}");
    assert!(
        line.contains("16384 of 16384 slots over 3 primaries"),
        "{line}"
    );
    for node in &cluster.nodes {
        assert!(
            line.contains(&node.addr().to_string()),
            "names {}: {line}",
            node.addr()
        );
    }
}

#[test]
fn without_a_slot_map_readyz_says_cluster_mode_and_calls_fail_fast() {
    run(LIMIT, async {
        let nowhere = ringway_testkit::closed_addr();
        let url = format!("redis+cluster://{nowhere}");
        let gateway = Gateway::start(RINGWAY, url, &["--shards", "1"]);
        let (status, body) = gateway.admin_get("/readyz");
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("cluster mode"), "{body}");
        assert!(body.contains("no usable slot map"), "{body}");
        let mut client = connect(gateway.addr()).await;
        let asked = Instant::now();
        let (code, message) = call(&mut client, "job").await.unwrap_err();
        assert_eq!(code, Code::Unavailable, "{message}");
        assert!(message.contains("no slot map"), "{message}");
        assert!(asked.elapsed() < Duration::from_secs(1), "failed fast");
    });
}
