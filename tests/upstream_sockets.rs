//! What ringway's sockets towards targets look like from the kernel's side: TCP keepalive on
//! (the keepalive timer runs on an idle connection) or off as configured, and hostname targets
//! resolved without blocking the shard.

use std::collections::HashSet;
use std::time::Duration;

use ringway_testkit::{
    connect, routed, run, ConfigFile, EchoRequest, Gateway, RedisServer, Upstream,
};

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

async fn one_call(gateway: &Gateway, key: &str) {
    let mut client = connect(gateway.addr()).await;
    let reply = client
        .unary(routed(EchoRequest::default(), key))
        .await
        .unwrap();
    assert_eq!(reply.get_ref().upstream, "a");
}

#[test]
fn upstream_sockets_run_the_tcp_keepalive_timer_when_configured() {
    run(LIMIT, async {
        let redis = RedisServer::start();
        let a = Upstream::start("a").await;
        redis.set("job", &a.addr().to_string());
        for (keepalive_ms, want) in [(60_000, 2u8), (0, 0u8)] {
            let config = ConfigFile::new(&format!(
                "[upstream]\ntcp_keepalive_time_ms = {keepalive_ms}\n"
            ));
            let gateway = Gateway::start(
                RINGWAY,
                redis.addr(),
                &["--shards", "1", "--config", config.path()],
            );
            one_call(&gateway, "job").await;
            // Idle now: with SO_KEEPALIVE the kernel arms the keepalive timer, without it none.
            ringway_testkit::tokio::time::sleep(Duration::from_millis(200)).await;
            let timers = timers_towards(gateway.pid(), a.addr().port());
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
        let redis = RedisServer::start();
        let a = Upstream::start("a").await;
        redis.set("by-name", &format!("localhost:{}", a.addr().port()));
        let gateway = Gateway::start(RINGWAY, redis.addr(), &["--shards", "1"]);
        for _ in 0..5 {
            one_call(&gateway, "by-name").await;
        }
        redis.set("no-such-host", "no-such-host.invalid:80");
        let mut client = connect(gateway.addr()).await;
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
