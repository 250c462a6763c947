//! The admin port's endpoints besides `/metrics` (which is `metrics.rs`'s): `/readyz` following
//! Redis and a drain, `/healthz` answering for as long as the process runs, `POST /drain`,
//! `/config` showing the settings in force, and 404/405 for anything else.

use std::process::ExitStatus;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ringway_testkit::admin::{self, metric_sum};
use ringway_testkit::tonic::Status;
use ringway_testkit::{eventually, routed, run, tokio, tokio_sleep, EchoReply, EchoRequest, Env};

const RINGWAY: &str = env!("CARGO_BIN_EXE_ringway");
const LIMIT: Duration = Duration::from_secs(120);

/// Polls `GET path` until `check` holds for (status, body), for at most `limit`; that answer.
/// An admin port that does not answer (yet, or any more) counts as the check failing.
async fn admin_until(
    env: &Env,
    path: &str,
    limit: Duration,
    what: &str,
    check: impl Fn(u16, &str) -> bool,
) -> (u16, String) {
    let addr = env.admin_addr();
    let check = &check;
    eventually(limit, what, || async move {
        let answer = admin::fetch(addr, "GET", path).map_err(|e| format!("no answer: {e}"))?;
        if check(answer.status, &answer.body) {
            Ok((answer.status, answer.body))
        } else {
            Err(format!("{} {:?}", answer.status, answer.body))
        }
    })
    .await
}

/// Ringway on two shards, ready.
async fn ready_gateway() -> Env {
    let env = Env::builder(RINGWAY).shards(2).start().await;
    admin_until(
        &env,
        "/readyz",
        Duration::from_secs(3),
        "ready at start",
        |s, _| s == 200,
    )
    .await;
    env
}

/// Stops Redis under `env`'s ready gateway and waits until `/readyz` says 503; its body.
async fn lose_redis(env: &mut Env) -> String {
    env.redis_mut().stop();
    let stopped = Instant::now();
    let (_, body) = admin_until(
        env,
        "/readyz",
        Duration::from_secs(3),
        "not ready after redis-server stopped",
        |s, _| s == 503,
    )
    .await;
    eprintln!(
        "readyz went 503 {:?} after Redis stopped",
        stopped.elapsed()
    );
    body
}

/// Starts Redis again (empty) and waits until `/readyz` says 200: every shard reconnected.
async fn bring_redis_back(env: &mut Env) {
    env.redis_mut().start_again();
    admin_until(
        env,
        "/readyz",
        Duration::from_secs(5),
        "ready again after redis-server restarted",
        |s, _| s == 200,
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Readiness and liveness with Redis

/// Ready at start; not ready within ~3 s of Redis going away, naming Redis; ready again once
/// it is back — and the `ringway_ready` gauge says the same.
#[test]
fn readyz_follows_redis() {
    run(LIMIT, async {
        let mut env = ready_gateway().await;
        let body = lose_redis(&mut env).await;
        assert!(body.contains("Redis"), "the reason names Redis: {body:?}");
        assert_eq!(env.metric("ringway_ready", &[]), 0.0);
        bring_redis_back(&mut env).await;
        assert_eq!(env.metric("ringway_ready", &[]), 1.0);
    });
}

#[test]
fn healthz_stays_ok_while_redis_is_away() {
    run(LIMIT, async {
        let mut env = ready_gateway().await;
        let health = |env: &Env, when: &str| {
            assert_eq!(
                env.gateway().admin_get("/healthz"),
                (200, "ok\n".to_string()),
                "/healthz {when}"
            );
        };
        health(&env, "at start");
        lose_redis(&mut env).await;
        health(&env, "without Redis");
        bring_redis_back(&mut env).await;
        health(&env, "after Redis came back");
    });
}

// ---------------------------------------------------------------------------------------------
// A drain requested on the admin port

/// What one `POST /drain` with a call in flight showed, from the request to the exit.
struct Drain {
    /// The answer to `POST /drain`.
    post: (u16, String),
    /// `/readyz` and `ringway_draining` right after it.
    readyz: (u16, String),
    draining_gauge: f64,
    /// Every `/healthz` answer while the process ran (every 50 ms).
    healthz: Vec<(u16, String)>,
    /// The exit status; `None` if the process still ran 500 ms after its admin port closed.
    exit: Option<ExitStatus>,
    /// From `POST /drain` to the exit.
    drained_in: Duration,
    /// The call that was in flight (1.5 s at the upstream, started before the drain).
    call: Result<EchoReply, Status>,
    stderr: String,
}

/// Ringway on two shards with a 1.5 s call in flight; `POST /drain`, then `/healthz` polled
/// until the process is gone. Run once, by the first test that asks.
fn drained() -> &'static Drain {
    static DRAIN: OnceLock<Drain> = OnceLock::new();
    DRAIN.get_or_init(|| {
        run(LIMIT, async {
            let mut env = Env::builder(RINGWAY)
                .shards(2)
                .upstream("a")
                .route("slow", "a")
                .start()
                .await;
            // The call in flight keeps the draining gateway alive long enough to look at it.
            let mut client = env.client().await;
            let slow = tokio::spawn(async move {
                let request = EchoRequest {
                    payload: b"slow".to_vec(),
                    delay_ms: 1500,
                    ..Default::default()
                };
                client.unary(routed(request, "slow")).await
            });
            let upstream = env.upstream("a");
            eventually(
                Duration::from_secs(5),
                "the slow call reached the upstream",
                || async move {
                    (upstream.calls() == 1)
                        .then_some(())
                        .ok_or(upstream.calls())
                },
            )
            .await;

            let post = env.gateway().admin_post("/drain");
            let drain_started = Instant::now();
            let readyz = env.gateway().admin_get("/readyz");
            let draining_gauge = env.metric("ringway_draining", &[]);

            let admin = env.admin_addr();
            let mut healthz = Vec::new();
            let exit = loop {
                if let Some(status) = env.gateway_mut().try_wait() {
                    break Some(status);
                }
                match admin::fetch(admin, "GET", "/healthz") {
                    Ok(answer) => healthz.push((answer.status, answer.body)),
                    // The admin port closes as the process ends: it must be gone very soon.
                    Err(_) => break env.gateway_mut().wait_exit(Duration::from_millis(500)),
                }
                assert!(
                    drain_started.elapsed() < Duration::from_secs(15),
                    "still running {:?} after POST /drain with nothing left in flight",
                    drain_started.elapsed()
                );
                tokio_sleep(Duration::from_millis(50)).await;
            };
            let drained_in = drain_started.elapsed();
            eprintln!("ringway exited {exit:?} {drained_in:?} after POST /drain");
            let call = slow
                .await
                .expect("the slow call's task")
                .map(|reply| reply.into_inner());
            Drain {
                post,
                readyz,
                draining_gauge,
                healthz,
                exit,
                drained_in,
                call,
                stderr: env.gateway().stderr(),
            }
        })
    })
}

#[test]
fn post_drain_answers_202_and_readyz_says_draining() {
    let drain = drained();
    let (status, body) = &drain.post;
    assert_eq!((*status, body.as_str()), (202, "draining\n"));
    let (status, body) = &drain.readyz;
    assert_eq!(*status, 503, "not ready while draining: {body:?}");
    assert!(body.contains("draining"), "{body:?}");
    assert_eq!(drain.draining_gauge, 1.0);
}

/// `/healthz` answers 200 for as long as the process runs, draining or not.
#[test]
fn healthz_stays_ok_while_draining() {
    let drain = drained();
    for answer in &drain.healthz {
        assert_eq!(answer, &(200, "ok\n".to_string()), "while draining");
    }
}

/// The drain waits for the call in flight, lets it complete, then the process exits 0 and
/// says why it drained.
#[test]
fn a_drain_from_the_admin_port_lets_the_call_in_flight_finish_then_exits_0() {
    let drain = drained();
    let exit = drain
        .exit
        .unwrap_or_else(|| panic!("admin port gone but the process runs"));
    assert_eq!(exit.code(), Some(0), "a drain ends in exit 0");
    let reply = drain
        .call
        .as_ref()
        .expect("the call in flight finished during the drain");
    assert_eq!(reply.payload, b"slow");
    assert!(
        drain.drained_in >= Duration::from_millis(1000),
        "exited {:?} after the drain began, before the call in flight ended",
        drain.drained_in
    );
    assert!(
        drain.stderr.contains("drain requested on the admin port"),
        "{}",
        drain.stderr
    );
}

// ---------------------------------------------------------------------------------------------
// /config and requests the port does not serve

/// The lines of the `[section]` table in TOML `text` (up to the next header).
fn toml_section<'a>(text: &'a str, section: &str) -> Vec<&'a str> {
    let header = format!("[{section}]");
    text.lines()
        .skip_while(|l| l.trim() != header)
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with('['))
        .map(str::trim)
        .collect()
}

#[test]
fn config_shows_the_settings_in_force() {
    run(LIMIT, async {
        let env = Env::builder(RINGWAY)
            .shards(2)
            .args(&[
                "--pool-max-connections",
                "3",
                "--lookup-timeout-ms",
                "777",
                "--route-header",
                "x-job",
            ])
            .start()
            .await;

        let (status, config) = env.gateway().admin_get("/config");
        assert_eq!(status, 200, "{config}");
        let top: Vec<&str> = config
            .lines()
            .take_while(|l| !l.trim_start().starts_with('['))
            .map(str::trim)
            .collect();
        assert!(top.contains(&"shards = 2"), "{config}");
        let upstream = toml_section(&config, "upstream");
        assert!(
            upstream.contains(&"max_connections_per_target = 3"),
            "{config}"
        );
        let redis_section = toml_section(&config, "redis");
        assert!(
            redis_section.contains(&"lookup_timeout_ms = 777"),
            "{config}"
        );
        assert!(
            redis_section.contains(&format!("addr = \"{}\"", env.redis().addr()).as_str()),
            "{config}"
        );
        assert!(
            toml_section(&config, "route").contains(&"header = \"x-job\""),
            "{config}"
        );
    });
}

/// Paths the admin port does not serve, and methods a path does not take.
const REFUSED: [(&str, &str, u16); 5] = [
    ("GET", "/nope", 404),
    ("GET", "/metrics/extra", 404),
    ("GET", "/drain", 405),
    ("POST", "/metrics", 405),
    ("DELETE", "/readyz", 405),
];

#[test]
fn unknown_paths_get_404_and_wrong_methods_405() {
    run(LIMIT, async {
        let env = Env::builder(RINGWAY).shards(2).start().await;
        for (method, path, want) in REFUSED {
            let answer = admin::fetch(env.admin_addr(), method, path)
                .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
            assert_eq!(answer.status, want, "{method} {path}: {:?}", answer.body);
        }
    });
}

/// Not even `GET /drain` starts a drain.
#[test]
fn refused_admin_requests_do_not_start_a_drain() {
    run(LIMIT, async {
        let env = Env::builder(RINGWAY).shards(2).start().await;
        for (method, path, _) in REFUSED {
            admin::fetch(env.admin_addr(), method, path)
                .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        }
        admin_until(
            &env,
            "/readyz",
            Duration::from_secs(3),
            "still ready",
            |s, _| s == 200,
        )
        .await;
        assert_eq!(metric_sum(&env.metrics(), "ringway_draining", &[]), 0.0);
    });
}
