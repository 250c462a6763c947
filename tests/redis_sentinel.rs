//! Redis Sentinel, against real processes: a primary, a replica (`--replicaof`) and three
//! `redis-sentinel`s on loopback (quorum 2, `down-after-milliseconds 1000`, `failover-timeout
//! 3000`). ringway is given `redis+sentinel://S1,S2,S3/mymaster`; calls run in a loop while
//! the primary is killed (SIGKILL). Every call either reaches the right upstream or fails
//! with UNAVAILABLE naming Redis — no other code, no hang — and calls succeed again once the
//! replica is promoted. The outage (first failure to first success after it) is printed.
//! A manual failover (`SENTINEL FAILOVER`, the old primary stays up) is followed through the
//! `+switch-master` subscription. `ringway doctor` reports the topology it finds.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ringway_testkit::sentinel::wait_for_topology;
use ringway_testkit::tonic::Code;
use ringway_testkit::{
    connect, eventually, routed, run, tokio_sleep, ConfigFile, EchoRequest, Gateway, RedisServer,
    Sentinel, SentinelOptions, Upstream,
};

const RINGWAY: &str = env!("CARGO_BIN_EXE_ringway");
const LIMIT: Duration = Duration::from_secs(90);
const SERVICE: &str = "mymaster";
/// Each call's own limit: a call that takes longer has hung.
const CALL_LIMIT: Duration = Duration::from_secs(3);
/// How long the failover may take, from the kill to calls succeeding again.
const FAILOVER_WITHIN: Duration = Duration::from_secs(30);

/// A primary with a route, its replica in sync, and three sentinels that know both and each
/// other.
struct Topology {
    primary: RedisServer,
    replica: RedisServer,
    sentinels: Vec<Sentinel>,
}

impl Topology {
    fn start(route: &str, target: &str) -> Topology {
        let primary = RedisServer::start();
        let replica = RedisServer::start_with_args(&[
            "--replicaof",
            "127.0.0.1",
            &primary.addr().port().to_string(),
        ]);
        primary.set(route, target);
        wait_until("the replica has the route", Duration::from_secs(10), || {
            replica.get(route).as_deref() == Some(target.as_bytes())
        });
        let options = SentinelOptions {
            service: SERVICE.into(),
            quorum: 2,
            down_after_ms: 1000,
            failover_timeout_ms: 3000,
        };
        let sentinels: Vec<Sentinel> = (0..3)
            .map(|_| Sentinel::start(primary.addr(), &options))
            .collect();
        wait_for_topology(&sentinels, SERVICE, 2, 1, Duration::from_secs(20));
        Topology {
            primary,
            replica,
            sentinels,
        }
    }

    fn url(&self) -> String {
        let addrs: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| s.addr().to_string())
            .collect();
        format!("redis+sentinel://{}/{SERVICE}", addrs.join(","))
    }
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One call's outcome: the upstream that answered, or the status code and message.
type Outcome = Result<String, (Code, String)>;

async fn call(
    client: &mut ringway_testkit::EchoClient<ringway_testkit::tonic::transport::Channel>,
) -> Outcome {
    match ringway_testkit::tokio::time::timeout(
        CALL_LIMIT,
        client.unary(routed(EchoRequest::default(), "job")),
    )
    .await
    {
        Ok(Ok(reply)) => Ok(reply.get_ref().upstream.clone()),
        Ok(Err(status)) => Err((status.code(), status.message().to_owned())),
        Err(_) => panic!("a call hung for {CALL_LIMIT:?} during the failover"),
    }
}

#[test]
fn a_failover_costs_only_unavailable_calls_and_is_followed() {
    run(LIMIT, async {
        let upstream = Upstream::start("a").await;
        let mut topology = Topology::start("job", &upstream.target());
        let old_primary = topology.primary.addr();
        let gateway = Gateway::start(RINGWAY, topology.url(), &["--shards", "2"]);
        let mut client = connect(gateway.addr()).await;
        eventually(Duration::from_secs(10), "calls through the primary", || {
            let mut client = client.clone();
            async move { call(&mut client).await }
        })
        .await;
        assert_eq!(
            gateway.metric(
                "ringway_redis_primary",
                &[("addr", &old_primary.to_string())]
            ),
            2.0,
            "both shards show the primary:\n{}",
            gateway.metrics()
        );
        let (status, ready) = gateway.admin_get("/readyz");
        assert_eq!(status, 200, "{ready}");

        topology.primary.stop();
        let killed = Instant::now();
        let mut first_failure: Option<Instant> = None;
        let mut recovered: Option<Instant> = None;
        let (mut ok, mut unavailable) = (0u32, 0u32);
        let mut saw_not_ready = None;
        // Runs on until 20 calls in a row succeed after the failover, or the time is up.
        let mut streak = 0;
        while streak < 20 {
            assert!(
                killed.elapsed() < FAILOVER_WITHIN,
                "calls did not succeed again within {FAILOVER_WITHIN:?} of the kill \
                 ({ok} ok, {unavailable} UNAVAILABLE)\n{}",
                gateway.stderr()
            );
            match call(&mut client).await {
                Ok(upstream) => {
                    assert_eq!(upstream, "a", "a call reached the wrong upstream");
                    ok += 1;
                    if first_failure.is_some() {
                        recovered.get_or_insert_with(Instant::now);
                        streak += 1;
                    }
                }
                Err((code, message)) => {
                    assert_eq!(
                        code,
                        Code::Unavailable,
                        "during a failover only UNAVAILABLE is allowed: {message}"
                    );
                    assert!(message.contains("Redis"), "{message}");
                    unavailable += 1;
                    first_failure.get_or_insert_with(Instant::now);
                    recovered = None;
                    streak = 0;
                    if saw_not_ready.is_none() {
                        let (status, body) = gateway.admin_get("/readyz");
                        if status == 503 {
                            saw_not_ready = Some(body);
                        }
                    }
                }
            }
            tokio_sleep(Duration::from_millis(20)).await;
        }
        let first_failure = first_failure.expect("killing the primary failed no call");
        let recovered = recovered.expect("calls recovered");
        eprintln!(
            "sentinel failover: outage {:.2} s (first failure to first success after it), \
             {:.2} s from the kill; {ok} calls ok, {unavailable} UNAVAILABLE",
            (recovered - first_failure).as_secs_f64(),
            (recovered - killed).as_secs_f64(),
        );

        let promoted = topology.sentinels[0]
            .primary(SERVICE)
            .expect("the sentinels name a primary");
        assert_eq!(
            promoted,
            topology.replica.addr(),
            "the replica was promoted"
        );
        let metrics = gateway.metrics();
        assert_eq!(
            gateway.metric("ringway_redis_primary", &[("addr", &promoted.to_string())]),
            2.0,
            "both shards show the new primary:\n{metrics}"
        );
        assert!(
            gateway.metric("ringway_redis_primary_switches_total", &[]) >= 2.0,
            "each shard counted the switch:\n{metrics}"
        );
        if let Some(body) = saw_not_ready {
            assert!(body.contains("sentinel mode"), "{body}");
            assert!(body.contains("no Redis primary on shard"), "{body}");
        }
        let (status, ready) = gateway.admin_get("/readyz");
        assert_eq!(status, 200, "{ready}");
    });
}

#[test]
fn ringway_waits_for_a_primary_and_readyz_says_sentinel_mode() {
    run(LIMIT, async {
        // Sentinels that are not there: no primary, not ready, calls UNAVAILABLE at once.
        let nowhere: Vec<SocketAddr> = (0..2).map(|_| ringway_testkit::closed_addr()).collect();
        let url = format!("redis+sentinel://{},{}/{SERVICE}", nowhere[0], nowhere[1]);
        let gateway = Gateway::start(RINGWAY, url, &["--shards", "1"]);
        let (status, body) = gateway.admin_get("/readyz");
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("no Redis primary on shard(s) 0"), "{body}");
        assert!(body.contains("sentinel mode, service `mymaster`"), "{body}");
        let mut client = connect(gateway.addr()).await;
        let asked = Instant::now();
        let (code, message) = call(&mut client).await.unwrap_err();
        assert_eq!(code, Code::Unavailable, "{message}");
        assert!(message.contains("no sentinel named a primary"), "{message}");
        assert!(asked.elapsed() < Duration::from_secs(1), "failed fast");
    });
}

#[test]
fn doctor_reports_the_sentinel_topology() {
    let topology = Topology::start("job", "127.0.0.1:1");
    let sentinels: Vec<String> = topology
        .sentinels
        .iter()
        .map(|s| format!("\"{}\"", s.addr()))
        .collect();
    // The field form of sentinel mode.
    let config = ConfigFile::new(&format!(
        "[redis]\nmode = \"sentinel\"\nsentinels = [{}]\nservice_name = \"{SERVICE}\"\n",
        sentinels.join(", ")
    ));
    let line = ringway_testkit::gateway::doctor_finding(RINGWAY, config.path(), "redis sentinel");
    assert!(line.starts_with("OK"), "{line}");
    assert!(
        line.contains(&topology.sentinels[0].addr().to_string()),
        "names the sentinel that answered: {line}"
    );
    assert!(
        line.contains(&topology.primary.addr().to_string()),
        "names the primary: {line}"
    );
    assert!(line.contains("ROLE master"), "{line}");
}

#[test]
fn a_manual_failover_is_followed_through_switch_master() {
    run(LIMIT, async {
        let upstream = Upstream::start("a").await;
        let topology = Topology::start("job", &upstream.target());
        let gateway = Gateway::start(RINGWAY, topology.url(), &["--shards", "1"]);
        let mut client = connect(gateway.addr()).await;
        eventually(Duration::from_secs(10), "calls through the primary", || {
            let mut client = client.clone();
            async move { call(&mut client).await }
        })
        .await;
        // The old primary stays up and becomes a replica: only +switch-master (or ROLE on a
        // redial) tells ringway to move.
        let reply = ringway_testkit::resp::command(
            topology.sentinels[0].addr(),
            &[b"SENTINEL", b"failover", SERVICE.as_bytes()],
        )
        .expect("SENTINEL FAILOVER");
        assert_eq!(reply, ringway_testkit::resp::Reply::Status("OK".into()));
        let promoted = topology.replica.addr().to_string();
        eventually(
            Duration::from_secs(20),
            "ringway on the promoted replica",
            || {
                let shown = gateway.metric("ringway_redis_primary", &[("addr", &promoted)]);
                async move { (shown == 1.0).then_some(()).ok_or(shown) }
            },
        )
        .await;
        let (status, ready) = gateway.admin_get("/readyz");
        assert_eq!(status, 200, "{ready}");
        assert_eq!(call(&mut client).await.unwrap(), "a");
        assert!(
            gateway
                .stderr()
                .contains("failover: the sentinels moved the primary"),
            "the switch came by the subscription:\n{}",
            gateway.stderr()
        );
    });
}
