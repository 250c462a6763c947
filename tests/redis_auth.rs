//! Redis behind a login and in another database, against a real `redis-server`: ACL users
//! (URL, `password_file`, `password_env`), `requirepass` with a password only (with and
//! without `HELLO`), a non-zero database that ringway reads and database 0 that it does not,
//! the route cache kept coherent over such a connection, a reconnect that logs in again, and a
//! wrong password: not ready, UNAVAILABLE saying why, retried with backoff, and the password
//! nowhere in `/config`, the log, the access log or `/metrics`.

use std::time::{Duration, Instant};

use ringway_testkit::resp::Reply;
use ringway_testkit::tonic::Code;
use ringway_testkit::{
    eventually, routed, run, tokio_sleep, EchoRequest, Env, EnvBuilder, TempPath,
};

const RINGWAY: &str = env!("CARGO_BIN_EXE_ringway");
const LIMIT: Duration = Duration::from_secs(60);

const USER: &str = "ringway";
/// Has every character a URL must escape in a password.
const PASSWORD: &str = "p@ss:w/rd%7-kx91";
/// [`PASSWORD`] percent-encoded for a URL.
const PASSWORD_IN_URL: &str = "p%40ss%3Aw%2Frd%257-kx91";
/// The database the routes live in.
const DB: u32 = 2;

/// Redis with only the ACL user [`USER`] (the `default` user is off), routes written to
/// [`DB`], upstreams `a` and `b`; `job` → `a` in [`DB`] and `job` → `b` in database 0, so a
/// call that reaches `a` read [`DB`] and not 0.
fn acl_env() -> EnvBuilder {
    Env::builder(RINGWAY)
        .redis_acl_user(USER, PASSWORD)
        .redis_db(DB)
        .upstream("a")
        .upstream("b")
        .route("job", "a")
}

/// Writes `job` → `b` into database 0, where ringway must not look.
fn decoy_in_db0(env: &Env) {
    env.redis().set_in(0, "job", &env.targets("b"));
    env.redis().set_in(0, "only-in-db0", &env.targets("b"));
}

/// A call routed by `key`: the upstream that answered, or the status.
async fn call(env: &Env, key: &str) -> Result<String, ringway_testkit::tonic::Status> {
    let mut client = env.client().await;
    client
        .unary(routed(EchoRequest::default(), key))
        .await
        .map(|reply| reply.get_ref().upstream.clone())
}

/// Asserts `job` reaches `a` (database 2) and a key only database 0 has is not found.
async fn assert_reads_db2_only(env: &Env) {
    assert_eq!(
        call(env, "job").await.unwrap(),
        "a",
        "job is read from db {DB}"
    );
    let status = call(env, "only-in-db0").await.unwrap_err();
    assert_eq!(
        status.code(),
        Code::NotFound,
        "db 0 is not read: {status:?}"
    );
}

/// ringway's own connections as `CLIENT LIST` shows them (its user's, not the test's).
fn ringway_clients(env: &Env) -> Vec<String> {
    let Reply::Bulk(Some(list)) = env.redis().command(&[b"CLIENT", b"LIST"]) else {
        panic!("CLIENT LIST answered no bulk string");
    };
    String::from_utf8_lossy(&list)
        .lines()
        .filter(|l| !l.contains("cmd=client|list"))
        .map(str::to_owned)
        .collect()
}

/// Everything ringway shows of itself: `/config`, its log, `/metrics`.
fn shown(env: &Env) -> String {
    let (status, config) = env.gateway().admin_get("/config");
    assert_eq!(status, 200);
    format!(
        "--- /config\n{config}\n--- stderr\n{}\n--- /metrics\n{}",
        env.gateway().stderr(),
        env.metrics()
    )
}

/// The value of `name=` in a `CLIENT LIST` line.
fn client_field<'a>(line: &'a str, name: &str) -> &'a str {
    line.split(' ')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {name}= in {line}"))
}

/// Refused logins as Redis counts them (`ACL LOG`, reason `auth`).
fn refused_logins_in_acl_log(env: &Env) -> i64 {
    let Reply::Array(Some(entries)) = env.redis().command(&[b"ACL", b"LOG"]) else {
        panic!("ACL LOG answered no array");
    };
    entries
        .iter()
        .filter_map(|entry| {
            let Reply::Array(Some(fields)) = entry else {
                return None;
            };
            let value = |key: &str| {
                fields
                    .chunks(2)
                    .find(|kv| kv[0] == Reply::Bulk(Some(key.as_bytes().to_vec())))
                    .map(|kv| kv[1].clone())
            };
            let is_auth = value("reason") == Some(Reply::Bulk(Some(b"auth".to_vec())));
            match (is_auth, value("count")) {
                (true, Some(Reply::Integer(n))) => Some(n),
                _ => None,
            }
        })
        .sum()
}

fn assert_no_password(shown: &str, password: &str) {
    assert!(
        !shown.contains(password),
        "the password {password:?} is shown:\n{shown}"
    );
}

#[test]
fn acl_user_in_a_url_reads_database_2() {
    run(LIMIT, async {
        let env = acl_env()
            .redis_url(&format!("redis://{USER}:{PASSWORD_IN_URL}@{{addr}}/{DB}"))
            .start()
            .await;
        decoy_in_db0(&env);
        assert_reads_db2_only(&env).await;

        let clients = ringway_clients(&env);
        assert_eq!(clients.len(), 1, "one shard, one connection: {clients:?}");
        assert_eq!(client_field(&clients[0], "db"), DB.to_string());
        assert_eq!(client_field(&clients[0], "user"), USER);
        let everything = shown(&env);
        assert_no_password(&everything, PASSWORD);
        assert_no_password(&everything, PASSWORD_IN_URL);
        assert!(
            everything.contains(&format!("redis://{USER}:<redacted>@")),
            "/config shows the URL redacted:\n{everything}"
        );
    });
}

#[test]
fn password_from_a_file() {
    run(LIMIT, async {
        let file = TempPath::new("redis-password");
        std::fs::write(file.path(), format!("{PASSWORD}\n")).unwrap();
        let env = acl_env()
            .config(&format!(
                "[redis]\nuser = \"{USER}\"\npassword_file = \"{}\"\ndb = {DB}\n",
                file.as_str()
            ))
            .start()
            .await;
        decoy_in_db0(&env);
        assert_reads_db2_only(&env).await;
        let everything = shown(&env);
        assert_no_password(&everything, PASSWORD);
        assert!(everything.contains(file.as_str()), "/config names the file");
    });
}

#[test]
fn password_from_an_environment_variable() {
    run(LIMIT, async {
        let env = acl_env()
            .env("RINGWAY_TEST_REDIS_PASSWORD", PASSWORD)
            .config(&format!(
                "[redis]\nuser = \"{USER}\"\npassword_env = \"RINGWAY_TEST_REDIS_PASSWORD\"\n\
                 db = {DB}\n"
            ))
            .start()
            .await;
        decoy_in_db0(&env);
        assert_reads_db2_only(&env).await;
        assert_no_password(&shown(&env), PASSWORD);
    });
}

#[test]
fn requirepass_with_a_password_only() {
    run(LIMIT, async {
        let env = Env::builder(RINGWAY)
            .redis_requirepass(PASSWORD)
            .upstream("a")
            .route("job", "a")
            .config(&format!("[redis]\npassword = \"{PASSWORD}\"\n"))
            .start()
            .await;
        assert_eq!(call(&env, "job").await.unwrap(), "a");
        let everything = shown(&env);
        assert_no_password(&everything, PASSWORD);
        assert!(
            everything.contains("password = \"<redacted>\""),
            "{everything}"
        );
    });
}

/// A server without `HELLO` (as Redis 5): ringway falls back to `AUTH <password>` and RESP2,
/// and the route cache to its TTL.
#[test]
fn requirepass_on_a_server_without_hello() {
    run(LIMIT, async {
        let env = Env::builder(RINGWAY)
            .redis_requirepass(PASSWORD)
            .redis_args(&["--rename-command", "HELLO", ""])
            .upstream("a")
            .route("job", "a")
            .redis_url(&format!("redis://:{PASSWORD_IN_URL}@{{addr}}"))
            .args(&["--route-cache"])
            .start()
            .await;
        for _ in 0..3 {
            assert_eq!(call(&env, "job").await.unwrap(), "a");
        }
        assert!(env.gateway().stderr().contains("has no RESP3"));
        let clients = ringway_clients(&env);
        assert_eq!(client_field(&clients[0], "resp"), "2");
        assert_eq!(client_field(&clients[0], "user"), "default");
        assert_no_password(&shown(&env), PASSWORD);
    });
}

#[test]
fn wrong_password_is_unavailable_not_ready_and_never_shown() {
    run(LIMIT, async {
        const WRONG: &str = "not-the-password-q83z";
        let log = TempPath::new("auth-calls.log");
        let started = Instant::now();
        let env = acl_env()
            .config(&format!(
                "[redis]\nuser = \"{USER}\"\npassword = \"{WRONG}\"\ndb = {DB}\n\
                 [access_log]\npath = \"{}\"\n",
                log.as_str()
            ))
            .start()
            .await;

        let (status, body) = env.gateway().admin_get("/readyz");
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("Redis refused authentication"), "{body}");

        let status = call(&env, "job").await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
        assert!(
            status.message().contains("Redis refused authentication")
                && status.message().contains("WRONGPASS"),
            "{status:?}"
        );
        assert_eq!(env.metric("ringway_redis_auth_refused", &[]), 1.0);

        // Refused logins are retried with backoff. Let several attempts happen, then compare
        // the number Redis counted with the fewest delays they must have waited: each backoff
        // delay is at least half its base, which starts at 50 ms and doubles to 1000 ms.
        let failures = eventually(Duration::from_secs(10), "a few refused logins", || async {
            let n = env.metric("ringway_redis_auth_failures_total", &[]);
            if n >= 4.0 {
                Ok(n)
            } else {
                Err(n)
            }
        })
        .await;
        let counted = refused_logins_in_acl_log(&env);
        let elapsed_ms = started.elapsed().as_millis() as f64;
        // 25 + 50 + 100 + 200 ms, then at least 250 ms per attempt; one more in flight.
        let most = 6.0 + (elapsed_ms - 375.0).max(0.0) / 250.0;
        assert!(
            counted as f64 >= failures && (counted as f64) <= most,
            "Redis refused {counted} logins ({failures} by ringway's count) in {elapsed_ms} ms: \
             at most {most} with the backoff kept"
        );
        assert!(
            env.gateway()
                .stderr()
                .matches("Redis refused authentication")
                .count()
                <= 2
        );

        // Let the access log writer flush.
        tokio_sleep(Duration::from_millis(300)).await;
        let mut everything = shown(&env);
        everything.push_str("\n--- access log\n");
        everything.push_str(&log.lines().join("\n"));
        assert!(
            everything.contains("refused authentication"),
            "{everything}"
        );
        assert_no_password(&everything, WRONG);
        assert_no_password(&everything, PASSWORD);
    });
}

/// A server that wants a password ringway was not given: not ready, and calls UNAVAILABLE
/// saying so (not INTERNAL with Redis's `NOAUTH` for every lookup).
#[test]
fn no_password_for_a_server_that_wants_one_is_not_ready() {
    run(LIMIT, async {
        let env = Env::builder(RINGWAY)
            .redis_requirepass(PASSWORD)
            .upstream("a")
            .route("job", "a")
            .start()
            .await;
        let (status, body) = env.gateway().admin_get("/readyz");
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("Redis refused authentication"), "{body}");
        let status = call(&env, "job").await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(
            status.message().contains("NOAUTH")
                && status.message().contains("no password is configured"),
            "{status:?}"
        );
    });
}

#[test]
fn route_cache_stays_coherent_with_a_login_and_database_2() {
    run(LIMIT, async {
        let env = acl_env()
            .redis_url(&format!("redis://{USER}:{PASSWORD_IN_URL}@{{addr}}/{DB}"))
            .args(&["--route-cache"])
            .start()
            .await;
        decoy_in_db0(&env);
        for _ in 0..10 {
            assert_eq!(call(&env, "job").await.unwrap(), "a");
        }
        assert_eq!(env.metric("ringway_redis_lookups_total", &[]), 1.0);
        let clients = ringway_clients(&env);
        // Tracking (flag t) on a RESP3 connection in db 2.
        assert_eq!(client_field(&clients[0], "resp"), "3");
        assert_eq!(client_field(&clients[0], "db"), DB.to_string());
        assert_eq!(client_field(&clients[0], "flags"), "t");

        for (round, to) in ["b", "a", "b"].into_iter().enumerate() {
            env.route("job", to);
            // The invalidation is pushed when the SET runs; give it a moment to cross loopback.
            tokio_sleep(Duration::from_millis(20)).await;
            assert_eq!(
                call(&env, "job").await.unwrap(),
                to,
                "round {round}: the SET in db {DB} was not seen"
            );
        }
        // A write to the same name in db 0 invalidates too (tracking knows names, not
        // databases); the refill still reads db 2.
        env.redis().set_in(0, "job", &env.targets("a"));
        tokio_sleep(Duration::from_millis(20)).await;
        assert_eq!(call(&env, "job").await.unwrap(), "b");
        assert!(env.metric("ringway_route_cache_invalidations_total", &[]) >= 3.0);
    });
}

#[test]
fn a_killed_connection_logs_in_again() {
    run(LIMIT, async {
        let env = acl_env()
            .redis_url(&format!("redis://{USER}:{PASSWORD_IN_URL}@{{addr}}/{DB}"))
            .start()
            .await;
        decoy_in_db0(&env);
        assert_reads_db2_only(&env).await;
        assert_eq!(env.metric("ringway_redis_connects_total", &[]), 1.0);

        // SKIPME yes (the default): the test's own connection survives.
        let killed = env
            .redis()
            .command(&[b"CLIENT", b"KILL", b"USER", USER.as_bytes()]);
        assert_eq!(
            killed,
            Reply::Integer(1),
            "ringway's one connection was killed"
        );

        eventually(Duration::from_secs(5), "a second connection", || async {
            let connects = env.metric("ringway_redis_connects_total", &[]);
            if connects >= 2.0 {
                Ok(())
            } else {
                Err(connects)
            }
        })
        .await;
        // Logged in (no NOAUTH) and in db 2 again (not db 0's `b`).
        assert_reads_db2_only(&env).await;
        assert_eq!(env.metric("ringway_redis_auth_failures_total", &[]), 0.0);
        let (status, body) = env.gateway().admin_get("/readyz");
        assert_eq!(status, 200, "{body}");
    });
}

/// Runs `ringway args` to its end (these subcommands exit at once); (success, stdout+stderr).
fn ringway(args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new(RINGWAY)
        .args(args)
        .env_remove("RINGWAY_TEST_UNSET")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run ringway");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn check_config_and_doctor_name_the_bad_redis_field() {
    for (toml, field) in [
        (
            "[redis]\naddr = \"redis://u:hunter2@host:6379/db2\"\n",
            "redis.addr",
        ),
        (
            "[redis]\npassword_file = \"/nonexistent/ringway-password\"\n",
            "redis.password_file",
        ),
        (
            "[redis]\npassword_env = \"RINGWAY_TEST_UNSET\"\n",
            "redis.password_env",
        ),
        (
            "[redis]\naddr = \"redis://:hunter2@h:1\"\npassword = \"hunter2\"\n",
            "redis.password",
        ),
        // rediss:// is TLS now (tests/redis_tls.rs); its files are checked by field.
        (
            "[redis]\naddr = \"rediss://h:1\"\n[redis.tls]\ncert = \"c.pem\"\n",
            "redis.tls.key",
        ),
        (
            "[redis]\naddr = \"rediss://u:hunter2@h:1\"\n[redis.tls]\nca = \"/nonexistent/ca.pem\"\n",
            "redis.tls.ca",
        ),
    ] {
        let file = TempPath::new("bad-redis.toml");
        std::fs::write(file.path(), toml).unwrap();
        for args in [
            &["check-config", file.as_str()][..],
            &["doctor", "--config", file.as_str()][..],
        ] {
            let (ok, text) = ringway(args);
            assert!(!ok, "{args:?} accepts {toml:?}: {text}");
            assert!(
                text.contains(&format!("`{field}`")),
                "{args:?} names {field}: {text}"
            );
            assert!(
                !text.contains("hunter2"),
                "{args:?} shows the password: {text}"
            );
        }
    }
}
