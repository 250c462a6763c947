//! Redis over TLS (`rediss://`), against a real `redis-server` with a TLS port beside its
//! plaintext one (the test writes its routes through the plaintext port): routing with an ACL
//! user, a password and database 2 in the URL; the route cache kept coherent by client
//! tracking over TLS; a reconnect; mTLS (`tls-auth-clients yes`) with `[redis.tls] cert/key`
//! and without, and a client certificate renewed in place; a Redis whose certificate is from
//! another CA; and `rediss://` pointed at the plaintext port. A failure is never a hang: `/readyz` is 503 and calls are UNAVAILABLE,
//! saying it was TLS and why.

use std::time::Duration;

use ringway_testkit::resp::Reply;
use ringway_testkit::tonic::{Code, Status};
use ringway_testkit::{eventually, routed, run, tokio_sleep, EchoRequest, Env, Pki, TempPath};

const RINGWAY: &str = env!("CARGO_BIN_EXE_ringway");
const LIMIT: Duration = Duration::from_secs(60);

const USER: &str = "ringway";
const PASSWORD: &str = "tls-p@ss-19x";
const PASSWORD_IN_URL: &str = "tls-p%40ss-19x";
const DB: u32 = 2;

/// A call routed by `key`: the upstream that answered, or the status.
async fn call(env: &Env, key: &str) -> Result<String, Status> {
    let mut client = env.client().await;
    client
        .unary(routed(EchoRequest::default(), key))
        .await
        .map(|reply| reply.get_ref().upstream.clone())
}

/// ringway's connections as `CLIENT LIST` shows them (not the test's own).
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

fn client_field(line: &str, name: &str) -> String {
    line.split(' ')
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name}= in {line}"))
        .to_owned()
}

/// The CA written for `--redis-ca`.
fn ca_file(pki: &Pki) -> TempPath {
    pki.write_ca("redis-tls-trust")
}

/// Waits for the connection attempts to `addr` to fail, then checks that `/readyz` is 503, that a
/// call is UNAVAILABLE with a message naming TLS to this Redis and containing `why`, and that
/// the log says the same.
async fn assert_tls_failure(env: &Env, addr: std::net::SocketAddr, why: &str) {
    let expected = format!("TLS to redis {addr}: ");
    let status = eventually(
        Duration::from_secs(10),
        "calls fail with the TLS error",
        || async {
            match call(env, "job").await {
                Err(status) if status.message().contains(&expected) => Ok(status),
                other => Err(other),
            }
        },
    )
    .await;
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains(why), "{status:?}");
    let (code, body) = env.gateway().admin_get("/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("TLS to Redis failed"), "{body}");
    let log = env.gateway().stderr();
    assert!(log.contains(&expected) && log.contains(why), "{log}");
}

#[test]
fn acl_user_password_and_db_2_over_tls() {
    run(LIMIT, async {
        let pki = Pki::new("redis-ca");
        let ca = ca_file(&pki);
        let env = Env::builder(RINGWAY)
            .redis_tls(&pki.server(), &pki.ca, false)
            .redis_acl_user(USER, PASSWORD)
            .redis_db(DB)
            .upstream("a")
            .upstream("b")
            .route("job", "a")
            .redis_url(&format!(
                "rediss://{USER}:{PASSWORD_IN_URL}@{{tls_addr}}/{DB}"
            ))
            .args(&["--redis-ca", ca.as_str()])
            .start()
            .await;
        env.redis().set_in(0, "job", &env.targets("b"));
        env.redis().set_in(0, "only-in-db0", &env.targets("b"));
        assert_eq!(call(&env, "job").await.unwrap(), "a");
        let status = call(&env, "only-in-db0").await.unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "{status:?}");

        let clients = ringway_clients(&env);
        assert_eq!(clients.len(), 1, "{clients:?}");
        // Connected to the TLS port, as the ACL user, in database 2.
        assert_eq!(
            client_field(&clients[0], "laddr"),
            env.redis().tls_addr().to_string()
        );
        assert_eq!(client_field(&clients[0], "user"), USER);
        assert_eq!(client_field(&clients[0], "db"), DB.to_string());

        // A killed connection is redialed (over TLS, logging in again).
        let id = client_field(&clients[0], "id");
        env.redis()
            .command(&[b"CLIENT", b"KILL", b"ID", id.as_bytes()]);
        eventually(Duration::from_secs(10), "a second connection", || async {
            let n = env.metric("ringway_redis_connects_total", &[]);
            if n >= 2.0 {
                Ok(())
            } else {
                Err(n)
            }
        })
        .await;
        eventually(
            Duration::from_secs(10),
            "routing after the redial",
            || async { call(&env, "job").await },
        )
        .await;
        let clients = ringway_clients(&env);
        assert_eq!(
            client_field(&clients[0], "laddr"),
            env.redis().tls_addr().to_string()
        );
        assert!(!env.gateway().stderr().contains(PASSWORD));
    });
}

#[test]
fn route_cache_stays_coherent_over_tls() {
    run(LIMIT, async {
        let pki = Pki::new("redis-ca");
        let ca = ca_file(&pki);
        let env = Env::builder(RINGWAY)
            .redis_tls(&pki.server(), &pki.ca, false)
            .redis_acl_user(USER, PASSWORD)
            .redis_db(DB)
            .upstream("a")
            .upstream("b")
            .route("job", "a")
            .redis_url(&format!(
                "rediss://{USER}:{PASSWORD_IN_URL}@{{tls_addr}}/{DB}"
            ))
            .config(&format!("[redis.tls]\nca = \"{}\"\n", ca.as_str()))
            .args(&["--route-cache"])
            .start()
            .await;
        for _ in 0..10 {
            assert_eq!(call(&env, "job").await.unwrap(), "a");
        }
        assert_eq!(env.metric("ringway_redis_lookups_total", &[]), 1.0);
        let clients = ringway_clients(&env);
        assert_eq!(client_field(&clients[0], "resp"), "3");
        assert_eq!(client_field(&clients[0], "flags"), "t");
        for (round, to) in ["b", "a", "b"].into_iter().enumerate() {
            env.route("job", to);
            // The invalidation is pushed when the SET runs; let it cross loopback and TLS.
            tokio_sleep(Duration::from_millis(20)).await;
            assert_eq!(
                call(&env, "job").await.unwrap(),
                to,
                "round {round}: the SET was not seen"
            );
        }
        assert!(env.metric("ringway_route_cache_invalidations_total", &[]) >= 3.0);
    });
}

#[test]
fn mtls_to_redis_with_a_client_certificate() {
    run(LIMIT, async {
        let pki = Pki::new("redis-ca");
        let ca = ca_file(&pki);
        let client = Pki::write(&pki.client("ringway"), "redis-client");
        let env = Env::builder(RINGWAY)
            .redis_tls(&pki.server(), &pki.ca, true)
            .upstream("a")
            .route("job", "a")
            .redis_url("rediss://{tls_addr}")
            .config(&format!(
                "[redis.tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
                ca.as_str(),
                client.cert(),
                client.key()
            ))
            .start()
            .await;
        assert_eq!(call(&env, "job").await.unwrap(), "a");
        let (code, body) = env.gateway().admin_get("/readyz");
        assert_eq!(code, 200, "{body}");
    });
}

#[test]
fn mtls_to_redis_without_a_client_certificate_fails_clearly() {
    run(LIMIT, async {
        let pki = Pki::new("redis-ca");
        let ca = ca_file(&pki);
        let env = Env::builder(RINGWAY)
            .redis_tls(&pki.server(), &pki.ca, true)
            .upstream("a")
            .route("job", "a")
            .redis_url("rediss://{tls_addr}")
            .args(&["--redis-ca", ca.as_str()])
            .start()
            .await;
        // Redis (OpenSSL) refuses with an alert once it sees no certificate: which one
        // depends on its version; TLS 1.3 names it `CertificateRequired`.
        assert_tls_failure(&env, env.redis().tls_addr(), "alert").await;
    });
}

#[test]
fn redis_with_a_certificate_from_another_ca_is_unavailable() {
    run(LIMIT, async {
        let trusted = Pki::new("redis-ca");
        let other = Pki::new("another-ca");
        let ca = ca_file(&trusted);
        let env = Env::builder(RINGWAY)
            .redis_tls(&other.server(), &other.ca, false)
            .upstream("a")
            .route("job", "a")
            .redis_url("rediss://{tls_addr}")
            .args(&["--redis-ca", ca.as_str()])
            .start()
            .await;
        assert_tls_failure(
            &env,
            env.redis().tls_addr(),
            "invalid peer certificate: UnknownIssuer",
        )
        .await;
    });
}

#[test]
fn rediss_to_a_plaintext_port_fails_clearly() {
    run(LIMIT, async {
        let pki = Pki::new("redis-ca");
        let ca = ca_file(&pki);
        let env = Env::builder(RINGWAY)
            .upstream("a")
            .route("job", "a")
            .redis_url("rediss://{addr}")
            .args(&["--redis-ca", ca.as_str()])
            .start()
            .await;
        assert_tls_failure(&env, env.redis().addr(), "TLS port?").await;
    });
}

/// The `[redis.tls]` files are looked at before every attempt: a client certificate Redis
/// refuses, replaced in place by one it accepts, is used by the next attempt, without a
/// restart or a reload.
#[test]
fn a_renewed_client_certificate_is_used_at_the_next_attempt() {
    run(LIMIT, async {
        let pki = Pki::new("redis-ca");
        let stranger = Pki::new("stranger-ca");
        let ca = ca_file(&pki);
        let client = Pki::write(&stranger.client("ringway"), "redis-client");
        let env = Env::builder(RINGWAY)
            .redis_tls(&pki.server(), &pki.ca, true)
            .upstream("a")
            .route("job", "a")
            .redis_url("rediss://{tls_addr}")
            .config(&format!(
                "[redis.tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
                ca.as_str(),
                client.cert(),
                client.key()
            ))
            .start()
            .await;
        assert_tls_failure(&env, env.redis().tls_addr(), "alert").await;

        let renewed = pki.client("ringway");
        ringway_testkit::pki::overwrite(client.cert.path(), &renewed.cert);
        ringway_testkit::pki::overwrite(client.key.path(), &renewed.key);
        eventually(
            Duration::from_secs(10),
            "routing with the renewed certificate",
            || async { call(&env, "job").await },
        )
        .await;
        let (code, body) = env.gateway().admin_get("/readyz");
        assert_eq!(code, 200, "{body}");
    });
}

/// `[redis.tls]` beside a plain `redis://` address is not silently dropped: ringway says the
/// files are unused (and routes over plaintext, as the URL asks).
#[test]
fn redis_tls_files_with_a_plaintext_url_are_reported() {
    run(LIMIT, async {
        let pki = Pki::new("redis-ca");
        let ca = ca_file(&pki);
        let env = Env::builder(RINGWAY)
            .upstream("a")
            .route("job", "a")
            .config(&format!("[redis.tls]\nca = \"{}\"\n", ca.as_str()))
            .start()
            .await;
        assert_eq!(call(&env, "job").await.unwrap(), "a");
        let log = env.gateway().stderr();
        assert!(
            log.contains("[redis.tls] is set but redis.addr is not a rediss:// URL"),
            "{log}"
        );
    });
}
