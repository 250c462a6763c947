//! Real `redis-sentinel` child processes for one test: [`Sentinel`] owns one process, its
//! config file (Sentinel rewrites it, so each gets its own) and its port, chosen like
//! [`crate::redis`]'s (random below the ephemeral range). It monitors one primary under a
//! service name with the timings the test gives, `sentinel resolve-hostnames no`.
//!
//! [`wait_for_topology`] waits until every sentinel knows the others and the replicas, so a
//! failover can be agreed on (quorum and majority) and has a replica to promote.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::gateway::TempPath;
use crate::resp::{self, Reply};

/// The binary to run; `REDIS_SENTINEL` overrides it.
const DEFAULT_BINARY: &str = "redis-sentinel";
const ATTEMPTS: usize = 20;
const READY_WITHIN: Duration = Duration::from_secs(10);

/// How a sentinel watches its primary.
#[derive(Debug, Clone)]
pub struct SentinelOptions {
    /// The service name (`sentinel monitor <service> ...`).
    pub service: String,
    /// Sentinels that must agree the primary is down.
    pub quorum: u32,
    /// `down-after-milliseconds`.
    pub down_after_ms: u64,
    /// `failover-timeout`.
    pub failover_timeout_ms: u64,
}

/// A running `redis-sentinel`. Killed when dropped, its config file deleted.
#[derive(Debug)]
pub struct Sentinel {
    addr: SocketAddr,
    child: Child,
    _conf: TempPath,
}

impl Sentinel {
    /// Starts a sentinel monitoring `primary` and waits until it answers. Panics if no port
    /// works after a few tries.
    pub fn start(primary: SocketAddr, options: &SentinelOptions) -> Sentinel {
        let mut last_error = String::new();
        for _ in 0..ATTEMPTS {
            let port = crate::redis::random_port();
            if TcpListener::bind(("127.0.0.1", port)).is_err() {
                continue;
            }
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let conf = TempPath::new("sentinel.conf");
            let text = format!(
                "port {port}\nbind 127.0.0.1\nsentinel resolve-hostnames no\n\
                 sentinel monitor {service} {ip} {pport} {quorum}\n\
                 sentinel down-after-milliseconds {service} {down}\n\
                 sentinel failover-timeout {service} {failover}\n",
                service = options.service,
                ip = primary.ip(),
                pport = primary.port(),
                quorum = options.quorum,
                down = options.down_after_ms,
                failover = options.failover_timeout_ms,
            );
            std::fs::write(conf.path(), text).expect("write sentinel.conf");
            match spawn(addr, &conf) {
                Ok(child) => {
                    return Sentinel {
                        addr,
                        child,
                        _conf: conf,
                    }
                }
                Err(e) => last_error = e,
            }
        }
        panic!("could not start redis-sentinel after {ATTEMPTS} ports; last error: {last_error}");
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `SENTINEL master <service>` as field → value.
    pub fn master(&self, service: &str) -> Vec<(String, String)> {
        match resp::command(self.addr, &[b"SENTINEL", b"master", service.as_bytes()]) {
            Ok(Reply::Array(Some(items))) => items
                .chunks(2)
                .filter_map(|kv| match kv {
                    [Reply::Bulk(Some(k)), Reply::Bulk(Some(v))] => Some((
                        String::from_utf8_lossy(k).into_owned(),
                        String::from_utf8_lossy(v).into_owned(),
                    )),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The primary this sentinel names for `service` now.
    pub fn primary(&self, service: &str) -> Option<SocketAddr> {
        let reply = resp::command(
            self.addr,
            &[b"SENTINEL", b"get-master-addr-by-name", service.as_bytes()],
        )
        .ok()?;
        let Reply::Array(Some(items)) = reply else {
            return None;
        };
        let text = |r: &Reply| match r {
            Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        };
        format!("{}:{}", text(items.first()?)?, text(items.get(1)?)?)
            .parse()
            .ok()
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until each sentinel sees the `others` other sentinels and `replicas` replicas of
/// `service`. Panics after `limit`.
pub fn wait_for_topology(
    sentinels: &[Sentinel],
    service: &str,
    others: usize,
    replicas: usize,
    limit: Duration,
) {
    let deadline = Instant::now() + limit;
    loop {
        let seen: Vec<(String, String)> = sentinels
            .iter()
            .map(|s| {
                let master = s.master(service);
                let field = |name: &str| {
                    master
                        .iter()
                        .find(|(k, _)| k == name)
                        .map_or(String::new(), |(_, v)| v.clone())
                };
                (field("num-other-sentinels"), field("num-slaves"))
            })
            .collect();
        if seen
            .iter()
            .all(|(o, r)| *o == others.to_string() && *r == replicas.to_string())
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "sentinels did not see {others} others and {replicas} replicas within {limit:?}: \
             {seen:?} (other sentinels, replicas)"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn spawn(addr: SocketAddr, conf: &TempPath) -> Result<Child, String> {
    let binary = std::env::var("REDIS_SENTINEL").unwrap_or_else(|_| DEFAULT_BINARY.to_owned());
    let mut child = Command::new(&binary)
        .arg(conf.as_str())
        .args(["--loglevel", "warning"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("spawning {binary}: {e}"))?;
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{binary} on {addr} exited: {status}"));
        }
        // Our process, not another test's that won a race for the port.
        if let Ok(Reply::Bulk(Some(info))) = resp::command(addr, &[b"INFO", b"server"]) {
            if String::from_utf8_lossy(&info).contains(&format!("process_id:{}\r\n", child.id())) {
                return Ok(child);
            }
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{binary} on {addr} did not answer within {READY_WITHIN:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
