//! A fleet: two ringway hosts, each in a network namespace of its own joined to this host by a
//! veth pair, behind HAProxy in TCP mode whose health check is ringway's `/readyz`, sharing one
//! Redis and one target on this host. Under a steady load through HAProxy, host A is upgraded
//! to a new process (`--upgrade-from`), then host B is drained and taken out: no call fails,
//! and every call ran exactly once at the target.
//!
//! Needs root (`ip netns`, veth) and `haproxy`; where either is missing the test says so and
//! passes without running (CI runs as root and installs haproxy).

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use ringway_testkit::steady::{worker, Tally};
use ringway_testkit::{
    run, tokio, ConfigFile, RedisOptions, RedisServer, TempPath, Upstream, UpstreamOptions,
};

const RINGWAY: &str = env!("CARGO_BIN_EXE_ringway");
const LIMIT: Duration = Duration::from_secs(180);

fn sh(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A network namespace joined to this host by a veth pair: this host is `10.201.N.1`, the
/// namespace `10.201.N.2`, and its default route goes through this host. Removed on drop.
struct Host {
    ns: String,
    veth: String,
    ip: Ipv4Addr,
    gateway: Ipv4Addr,
}

impl Host {
    fn new(n: u8) -> Result<Host, String> {
        let tag = std::process::id() % 10_000;
        let ns = format!("rw{tag}h{n}");
        let veth = format!("rw{tag}v{n}");
        let peer = format!("rw{tag}p{n}");
        let host = Host {
            ns: ns.clone(),
            veth: veth.clone(),
            ip: Ipv4Addr::new(10, 201, n, 2),
            gateway: Ipv4Addr::new(10, 201, n, 1),
        };
        sh(&["ip", "netns", "add", &ns])?;
        sh(&[
            "ip", "link", "add", &veth, "type", "veth", "peer", "name", &peer,
        ])?;
        sh(&["ip", "link", "set", &peer, "netns", &ns])?;
        sh(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", host.gateway),
            "dev",
            &veth,
        ])?;
        sh(&["ip", "link", "set", &veth, "up"])?;
        let inside = |args: &[&str]| {
            let mut all = vec!["ip", "netns", "exec", &ns];
            all.extend_from_slice(args);
            sh(&all)
        };
        inside(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", host.ip),
            "dev",
            &peer,
        ])?;
        inside(&["ip", "link", "set", &peer, "up"])?;
        inside(&["ip", "link", "set", "lo", "up"])?;
        inside(&[
            "ip",
            "route",
            "add",
            "default",
            "via",
            &host.gateway.to_string(),
        ])?;
        Ok(host)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = sh(&["ip", "link", "del", &self.veth]);
        let _ = sh(&["ip", "netns", "del", &self.ns]);
    }
}

/// A ringway process inside a host's namespace.
struct Ringway {
    child: Child,
}

impl Ringway {
    /// Starts ringway in `host` and waits for `listening on`.
    fn start(host: &Host, redis: SocketAddr, socket: &str, config: &str, upgrade: bool) -> Ringway {
        let listen = format!("{}:7070", host.ip);
        let admin = format!("{}:9901", host.ip);
        let redis = redis.to_string();
        let mut args = vec![
            "netns",
            "exec",
            &host.ns,
            RINGWAY,
            "--listen",
            &listen,
            "--admin",
            &admin,
            "--redis",
            &redis,
            "--shards",
            "2",
            "--upgrade-socket",
            socket,
            "--config",
            config,
        ];
        if upgrade {
            args.extend(["--upgrade-from", socket]);
        }
        let mut child = Command::new("ip")
            .args(&args)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ringway in its namespace");
        let stderr = child.stderr.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        let ns = host.ns.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[{ns}] {line}");
                if line.contains("listening on") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(());
                    }
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(20))
            .expect("ringway starts in its namespace");
        Ringway { child }
    }

    fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Ringway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// HAProxy in TCP mode in front of both hosts; health checks on `/readyz`.
struct Haproxy {
    child: Child,
    addr: SocketAddr,
    _config: TempPath,
}

impl Haproxy {
    fn start(hosts: &[&Host]) -> Haproxy {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let servers: String = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| {
                format!(
                    "    server ringway{i} {}:7070 check port 9901 inter 100ms fall 1 rise 2\n",
                    h.ip
                )
            })
            .collect();
        let config = TempPath::new("haproxy.cfg");
        std::fs::write(
            config.path(),
            format!(
                "global\n    maxconn 1000\ndefaults\n    mode tcp\n    timeout connect 1s\n    \
                 timeout client 60s\n    timeout server 60s\n    retries 3\n    option redispatch\n\
                 frontend grpc\n    bind 127.0.0.1:{port}\n    default_backend fleet\n\
                 backend fleet\n    balance roundrobin\n    option httpchk GET /readyz\n{servers}"
            ),
        )
        .unwrap();
        let child = Command::new("haproxy")
            .args(["-db", "-f", config.as_str()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn haproxy");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        for _ in 0..100 {
            if std::net::TcpStream::connect(addr).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Haproxy {
            child,
            addr,
            _config: config,
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Why the fleet cannot be built here, if it cannot.
fn missing() -> Option<String> {
    if Command::new("haproxy").arg("-v").output().is_err() {
        return Some("haproxy is not installed".into());
    }
    let probe = format!("rwprobe{}", std::process::id() % 10_000);
    match sh(&["ip", "netns", "add", &probe]) {
        Ok(()) => {
            let _ = sh(&["ip", "netns", "del", &probe]);
            None
        }
        Err(e) => Some(format!("cannot make network namespaces (root needed): {e}")),
    }
}

#[test]
fn a_fleet_behind_haproxy_upgrades_and_drains_a_host_without_a_failed_call() {
    if let Some(why) = missing() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    run(LIMIT, async {
        let (a, b) = (Host::new(1).unwrap(), Host::new(2).unwrap());
        // Redis and the target on this host, reachable from both namespaces.
        let (ga, gb) = (a.gateway.to_string(), b.gateway.to_string());
        let redis = RedisServer::start_with(RedisOptions::default().args(&[
            "--bind",
            "127.0.0.1",
            &ga,
            &gb,
            "--protected-mode",
            "no",
        ]));
        let target = Upstream::start_with(
            "up",
            UpstreamOptions {
                bind: Some(IpAddr::V4(a.gateway)),
                ..UpstreamOptions::default()
            },
        )
        .await;
        redis.set("job", &target.addr().to_string());
        let redis_for = |h: &Host| SocketAddr::new(IpAddr::V4(h.gateway), redis.addr().port());
        let (socket_a, socket_b) = (TempPath::new("a.sock"), TempPath::new("b.sock"));
        // HAProxy checks every 100 ms and takes a host out after one failed check: a drain
        // keeps serving for 500 ms after /readyz turns 503.
        let config = ConfigFile::new("[downstream]\ndrain_delay_ms = 500\n");
        let mut ringway_a =
            Ringway::start(&a, redis_for(&a), socket_a.as_str(), config.path(), false);
        let ringway_b = Ringway::start(&b, redis_for(&b), socket_b.as_str(), config.path(), false);
        let haproxy = Haproxy::start(&[&a, &b]);
        // Both hosts healthy before the load starts.
        tokio::time::sleep(Duration::from_millis(500)).await;

        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let workers: Vec<_> = (0..8)
            .map(|id| tokio::spawn(worker(haproxy.addr, id, stop.clone(), tally.clone())))
            .collect();
        tokio::time::sleep(Duration::from_secs(1)).await;

        // Host A: a new process takes over; the old one drains and exits 0.
        let mut new_a = Ringway::start(&a, redis_for(&a), socket_a.as_str(), config.path(), true);
        let status = ringway_a
            .wait_exit(Duration::from_secs(30))
            .expect("host A's old process exits");
        assert!(status.success(), "host A's old process: {status}");
        std::mem::swap(&mut ringway_a, &mut new_a);
        tokio::time::sleep(Duration::from_secs(1)).await;

        // Host B: drained (its /readyz turns 503, HAProxy takes it out), then gone.
        let admin_b = SocketAddr::new(IpAddr::V4(b.ip), 9901);
        let (code, text) = ringway_testkit::admin::request(admin_b, "POST", "/drain");
        assert_eq!(code, 202, "POST /drain to host B: {text}");
        let mut ringway_b = ringway_b;
        let status = ringway_b
            .wait_exit(Duration::from_secs(30))
            .expect("host B exits after its drain");
        assert!(status.success(), "host B: {status}");
        tokio::time::sleep(Duration::from_secs(1)).await;

        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.await.unwrap();
        }
        let t = tally.lock().unwrap();
        eprintln!(
            "fleet: {} calls ok, {} failed, {} sent again (queued, never sent, on a closed \
             connection); {} at the target",
            t.ok,
            t.failed.len(),
            t.unsent,
            target.calls()
        );
        assert!(
            t.failed.is_empty(),
            "failed calls: {:?}",
            &t.failed[..t.failed.len().min(10)]
        );
        assert!(t.ok > 100, "the load ran: {}", t.ok);
        assert_eq!(
            target.calls() as u64,
            t.ok,
            "every call ran exactly once at the target"
        );
        drop(new_a);
    });
}
