//! What ringway's sockets towards targets look like from the kernel's side: TCP keepalive on
//! (the keepalive timer runs on an idle connection) or off as configured, and hostname targets
//! resolved without blocking the shard.

use std::collections::HashSet;
use std::time::Duration;

use ringway_testkit::{eventually, routed, run, EchoRequest, Env};

const RINGWAY: &str = env!("CARGO_BIN_EXE_ringway");
const LIMIT: Duration = Duration::from_secs(60);

/// Socket inodes the process `pid` holds.
fn socket_inodes(pid: u32) -> HashSet<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/<pid>/fd")
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|link| {
            let link = link.to_string_lossy().into_owned();
            link.strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// For each of `pid`'s TCP sockets whose remote port is `port`: the timer field of
/// /proc/net/tcp (`tr`: 0 none, 1 retransmit, 2 keepalive, 3 TIME_WAIT, 4 zero-window probe).
fn timers_towards(pid: u32, port: u16) -> Vec<u8> {
    let ours = socket_inodes(pid);
    let mut timers = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 {
                continue;
            }
            let remote_port = f[2]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            let inode: u64 = f[9].parse().unwrap_or(0);
            if remote_port == Some(port) && ours.contains(&inode) {
                let timer = f[5]
                    .split(':')
                    .next()
                    .and_then(|t| u8::from_str_radix(t, 16).ok());
                timers.push(timer.unwrap_or(0));
            }
        }
    }
    timers
}

async fn one_call(env: &Env, key: &str) {
    let mut client = env.client().await;
    let reply = client
        .unary(routed(EchoRequest::default(), key))
        .await
        .unwrap();
    assert_eq!(reply.get_ref().upstream, "a");
}

#[test]
fn upstream_sockets_run_the_tcp_keepalive_timer_when_configured() {
    run(LIMIT, async {
        for (keepalive_ms, want) in [(60_000, 2u8), (0, 0u8)] {
            let env = Env::builder(RINGWAY)
                .shards(1)
                .upstream("a")
                .route("job", "a")
                .config(&format!(
                    "[upstream]\ntcp_keepalive_time_ms = {keepalive_ms}\n"
                ))
                .start()
                .await;
            one_call(&env, "job").await;
            // Idle now: with SO_KEEPALIVE the kernel arms the keepalive timer, without it none.
            // (A socket with SO_KEEPALIVE always has a timer pending, keepalive or retransmit,
            // so waiting for `want` cannot pass a socket without it as one with it.)
            let (pid, port) = (env.gateway().pid(), env.upstream("a").addr().port());
            let timers = eventually(
                Duration::from_secs(2),
                "the connection to the target idles with its timer",
                || async {
                    let timers = timers_towards(pid, port);
                    if timers == [want] {
                        Ok(timers)
                    } else {
                        Err(timers)
                    }
                },
            )
            .await;
            assert_eq!(timers.len(), 1, "one connection to the target: {timers:?}");
            assert_eq!(
                timers[0], want,
                "tcp_keepalive_time_ms = {keepalive_ms}: timer {} (2 = keepalive)",
                timers[0]
            );
        }
    });
}

#[test]
fn hostname_targets_are_resolved() {
    run(LIMIT, async {
        let env = Env::builder(RINGWAY)
            .shards(1)
            .upstream("a")
            .route_value("no-such-host", "no-such-host.invalid:80")
            .start()
            .await;
        let port = env.upstream("a").addr().port();
        env.redis().set("by-name", &format!("localhost:{port}"));
        for _ in 0..5 {
            one_call(&env, "by-name").await;
        }
        let mut client = env.client().await;
        let status = client
            .unary(routed(EchoRequest::default(), "no-such-host"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), ringway_testkit::tonic::Code::Unavailable);
        assert!(
            status.message().contains("no-such-host.invalid"),
            "{}",
            status.message()
        );
    });
}
