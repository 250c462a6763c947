//! Binary upgrade under load: ringway hands its listening sockets to a new process
//! (`--upgrade-from`), which serves on them while the old one drains and exits 0. Five upgrades
//! in a row under continuous calls of all four kinds, with long streams spanning them: no call
//! fails, every call ran exactly once at the target, every long stream completes, and the last
//! process holds no more descriptors than the first.
//!
//! The load ([`ringway_testkit::steady`]) sends a call again only when the client never sent
//! it (see there); that no call ran twice is checked at the target.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ringway_testkit::steady::{long_stream, worker, Tally};
use ringway_testkit::tokio;
use ringway_testkit::{connect, routed, run, EchoRequest, Env, Gateway, TempPath};

const RINGWAY: &str = env!("CARGO_BIN_EXE_ringway");
const LIMIT: Duration = Duration::from_secs(180);
const UPGRADES: usize = 5;

fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// A new process with `shards` shards that upgrades from the one waiting at `socket`, and
/// waits at `socket` itself for the next upgrade.
fn successor(redis: &str, socket: &TempPath, shards: &str) -> Gateway {
    let socket = socket.as_str();
    let args = [
        "--shards",
        shards,
        "--upgrade-socket",
        socket,
        "--upgrade-from",
        socket,
    ];
    Gateway::start_with(RINGWAY, "127.0.0.1:0", redis, &args)
}

#[test]
fn five_upgrades_under_load_fail_no_call() {
    run(LIMIT, async {
        let socket = TempPath::new("upgrade.sock");
        let upgrade_args = ["--upgrade-socket", socket.as_str()];
        let mut env = Env::builder(RINGWAY)
            .shards(2)
            .upstream("up")
            .route("job", "up")
            .args(&upgrade_args)
            .start()
            .await;
        let addr = env.addr();
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let workers: Vec<_> = (0..6)
            .map(|id| tokio::spawn(worker(addr, id, stop.clone(), tally.clone())))
            .collect();
        // Long streams: 4 s each, started before the first upgrade.
        let long: Vec<_> = (0..3)
            .map(|_| tokio::spawn(long_stream(addr, 200, 20)))
            .collect();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let first_fds = open_descriptors(env.gateway().pid());

        let redis = env.redis().addr().to_string();
        let mut previous = std::mem::replace(
            env.gateway_mut(),
            // The first gateway is upgraded from.
            successor(&redis, &socket, "2"),
        );
        for round in 1..=UPGRADES {
            let status = previous
                .wait_exit(Duration::from_secs(30))
                .unwrap_or_else(|| panic!("upgrade {round}: the old process did not exit"));
            assert!(
                status.success(),
                "upgrade {round}: old process exited with {status}"
            );
            assert_eq!(
                env.gateway().addr(),
                addr,
                "upgrade {round}: the new process serves the same address"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
            if round < UPGRADES {
                let next = successor(&redis, &socket, "2");
                previous = std::mem::replace(env.gateway_mut(), next);
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.await.unwrap();
        }
        for (i, l) in long.into_iter().enumerate() {
            let got = l.await.unwrap();
            assert_eq!(got, Ok(200), "long stream {i} across the upgrades");
        }
        let last_fds = open_descriptors(env.gateway().pid());
        let t = tally.lock().unwrap();
        let at_target = env.upstream("up").calls();
        eprintln!(
            "{UPGRADES} upgrades: {} calls ok, {} failed, {} sent again after the client queued \
             them on a closed connection; {at_target} calls at the target; descriptors \
             {first_fds} -> {last_fds}",
            t.ok,
            t.failed.len(),
            t.unsent
        );
        assert!(
            t.failed.is_empty(),
            "failed calls: {:?}",
            &t.failed[..t.failed.len().min(10)]
        );
        assert!(t.ok > 100, "the load ran: {} calls", t.ok);
        assert_eq!(
            at_target as u64,
            t.ok + 3,
            "every call (and the 3 long streams) ran exactly once at the target"
        );
        assert_eq!(
            env.upstream("up").cancelled(),
            0,
            "no call was cut at the target"
        );
        assert!(
            last_fds <= first_fds + 8,
            "descriptors grew over the upgrades: {first_fds} -> {last_fds}"
        );
    });
}

/// A successor with a different shard count: from 2 shards to 1 (which accepts on both taken
/// sockets) and to 3 (which binds one more beside the two): calls go on, none fails.
#[test]
fn upgrades_across_shard_counts_fail_no_call() {
    run(LIMIT, async {
        let socket = TempPath::new("upgrade.sock");
        let mut env = Env::builder(RINGWAY)
            .shards(2)
            .upstream("up")
            .route("job", "up")
            .args(&["--upgrade-socket", socket.as_str()])
            .start()
            .await;
        let addr = env.addr();
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let workers: Vec<_> = (0..4)
            .map(|id| tokio::spawn(worker(addr, id, stop.clone(), tally.clone())))
            .collect();
        let redis = env.redis().addr().to_string();
        for shards in ["1", "3"] {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let next = successor(&redis, &socket, shards);
            let mut previous = std::mem::replace(env.gateway_mut(), next);
            let status = previous
                .wait_exit(Duration::from_secs(30))
                .expect("the old process exits");
            assert!(
                status.success(),
                "to {shards} shards: old exited with {status}"
            );
        }
        // New connections reach the 3-shard process on every socket.
        for _ in 0..12 {
            let mut client = connect(addr).await;
            client
                .unary(routed(EchoRequest::default(), "job"))
                .await
                .expect("a call on a new connection after the upgrades");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.await.unwrap();
        }
        let t = tally.lock().unwrap();
        eprintln!(
            "2 -> 1 -> 3 shards: {} calls ok, {} failed",
            t.ok,
            t.failed.len()
        );
        assert!(
            t.failed.is_empty(),
            "failed calls: {:?}",
            &t.failed[..t.failed.len().min(10)]
        );
        assert!(t.ok > 50);
    });
}
