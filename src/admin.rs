//! The admin port: metrics, health, readiness, drain and the effective configuration.
//!
//! Served by its own thread with blocking std sockets, never by a shard, so a shard that is
//! stuck or saturated cannot take the admin port down with it (docs/background.md, "TCP
//! practices", 3: service and admin ports apart). Requests are tiny and rare, so it serves one
//! connection at a time with short socket timeouts; every response closes its connection.
//!
//! | request | answer |
//! |---|---|
//! | `GET /metrics` | Prometheus text format: per-shard counters, merged histograms, process gauges |
//! | `GET /healthz` | 200 while the process runs |
//! | `GET /readyz` | 200 when every shard has Redis and nothing drains, else 503 and why |
//! | `POST /drain` | 202; starts a graceful drain, as SIGTERM does |
//! | `GET /config` | the effective configuration, TOML |
//! | `POST /reload` | reloads the configuration file (and the TLS files it names), as SIGHUP does: 200 (naming what a running process cannot change and kept), or 500 and why (nothing changed) |

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::metrics::{self, ProcessGauges, ShardMetrics};
use crate::procfs;
use crate::shutdown::Drain;

/// A request that has not arrived whole by then is dropped.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest request head read.
const MAX_REQUEST: usize = 8 << 10;

/// What the admin thread reads. Everything here is either immutable or written by one shard.
pub struct AdminState {
    /// The live configuration (`/config`) and what reloads it (`POST /reload`).
    pub reloader: Arc<crate::reload::Reloader>,
    pub shards: Vec<Arc<ShardMetrics>>,
    pub drain: Arc<Drain>,
    pub started: Instant,
    /// The service ports (plaintext, TLS), for counting the process's TIME_WAIT sockets.
    pub service_ports: Vec<u16>,
    /// Access-log lines dropped because the writer fell behind.
    pub access_log_dropped: Option<Arc<AtomicU64>>,
    /// TLS certificates and keys, for `POST /reload` and the reload metrics.
    pub tls: Arc<crate::tls::Material>,
}

/// Binds the admin address and serves it on a new thread. Returns the bound address.
pub fn start(
    addr: SocketAddr,
    inherited: Option<TcpListener>,
    state: Arc<AdminState>,
) -> io::Result<(SocketAddr, Stopper, TcpListener)> {
    let listener = match inherited {
        Some(listener) => listener,
        None => {
            let socket = socket2::Socket::new(
                socket2::Domain::for_address(addr),
                socket2::Type::STREAM,
                Some(socket2::Protocol::TCP),
            )?;
            socket.set_reuse_address(true)?;
            socket.bind(&addr.into())?;
            socket.listen(64)?;
            socket.into()
        }
    };
    let bound = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let handed = listener.try_clone()?;
    let stop = Arc::new(AtomicBool::new(false));
    let (stopped_tx, stopped) = crossbeam_channel::bounded(1);
    let stopping = stop.clone();
    std::thread::Builder::new()
        .name("ringway-admin".into())
        .spawn(move || {
            // Waits in poll(2), so that a binary upgrade can stop it between two requests
            // (the successor answers on the same socket; see `upgrade`).
            use rustix::event::{poll, PollFd, PollFlags, Timespec};
            let wait = Timespec {
                tv_sec: 0,
                tv_nsec: 100_000_000,
            };
            while !stopping.load(Ordering::SeqCst) {
                let mut fds = [PollFd::new(&listener, PollFlags::IN)];
                if poll(&mut fds, Some(&wait)).is_err() {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = answer(stream, &state);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    // EMFILE and friends: do not spin.
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
            let _ = stopped_tx.send(());
        })?;
    Ok((bound, Stopper { stop, stopped }, handed))
}

/// Stops the admin thread from accepting (a binary upgrade's successor answers from now on).
pub struct Stopper {
    stop: Arc<AtomicBool>,
    stopped: crossbeam_channel::Receiver<()>,
}

impl Stopper {
    /// Stops accepting; returns once the request being answered, if any, is done.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.stopped.recv_timeout(Duration::from_secs(5));
    }
}

fn answer(mut stream: TcpStream, state: &AdminState) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_REQUEST {
            return respond(&mut stream, 431, "text/plain", "request too large\n");
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => respond(
            &mut stream,
            200,
            metrics::CONTENT_TYPE,
            &render_metrics(state),
        ),
        ("GET", "/healthz") => respond(&mut stream, 200, "text/plain", "ok\n"),
        ("GET", "/readyz") => match not_ready(state) {
            None => respond(&mut stream, 200, "text/plain", "ready\n"),
            Some(why) => respond(
                &mut stream,
                503,
                "text/plain",
                &format!("not ready: {why}\n"),
            ),
        },
        ("POST", "/drain") => {
            if state.drain.start() {
                eprintln!("ringway: drain requested on the admin port");
            }
            respond(&mut stream, 202, "text/plain", "draining\n")
        }
        ("GET", "/config") => respond(
            &mut stream,
            200,
            "text/plain",
            &state.reloader.live.load().to_toml(),
        ),
        ("POST", "/reload") => match state.reloader.reload_logged("POST /reload") {
            Ok(kept) if kept.is_empty() => respond(&mut stream, 200, "text/plain", "reloaded\n"),
            Ok(kept) => respond(
                &mut stream,
                200,
                "text/plain",
                &format!(
                    "reloaded; kept as they were (a running process cannot change them; \
                     upgrade with --upgrade-from): {}\n",
                    kept.join(", ")
                ),
            ),
            Err(e) => respond(
                &mut stream,
                500,
                "text/plain",
                &format!("reload failed, nothing changed: {e}\n"),
            ),
        },
        (_, "/metrics" | "/healthz" | "/readyz" | "/drain" | "/config" | "/reload") => {
            respond(&mut stream, 405, "text/plain", "method not allowed\n")
        }
        _ => respond(
            &mut stream,
            404,
            "text/plain",
            "not found; try /metrics /healthz /readyz /config, POST /drain, POST /reload\n",
        ),
    }
}

/// `None` when ready, else the reason.
fn not_ready(state: &AdminState) -> Option<String> {
    if state.drain.is_draining() {
        return Some("draining".into());
    }
    let shards = |select: fn(&ShardMetrics) -> bool| -> Vec<String> {
        state
            .shards
            .iter()
            .enumerate()
            .filter(|(_, m)| select(m))
            .map(|(i, _)| i.to_string())
            .collect()
    };
    let refused = shards(|m| m.redis_connected.get() != 1 && m.redis_auth_refused.get() == 1);
    if !refused.is_empty() {
        return Some(format!(
            "Redis refused authentication on shard(s) {} (check redis.user and the password; \
             the calls' UNAVAILABLE message carries Redis's answer)",
            refused.join(",")
        ));
    }
    let tls = shards(|m| m.redis_connected.get() != 1 && m.redis_tls_failing.get() == 1);
    if !tls.is_empty() {
        return Some(format!(
            "TLS to Redis failed on shard(s) {} (check redis.tls.ca and the certificates; the \
             calls' UNAVAILABLE message and the log carry the reason)",
            tls.join(",")
        ));
    }
    let without = shards(|m| m.redis_connected.get() != 1);
    if without.is_empty() {
        return None;
    }
    let config = state.reloader.live.load();
    let redis = &config.redis;
    if redis.is_cluster() {
        return Some(cluster_not_ready(state, &without));
    }
    Some(match redis.is_sentinel() {
        // The calls' UNAVAILABLE message and the log say what the sentinels answered.
        true => format!(
            "no Redis primary on shard(s) {} (sentinel mode, service `{}`: no sentinel named \
             a reachable primary yet, or a failover is in progress)",
            without.join(","),
            redis.service()
        ),
        false => format!("no Redis connection on shard(s) {}", without.join(",")),
    })
}

/// Cluster mode's reason, shard by shard: no usable slot map (slots without an owner), or the
/// owners whose connection is down.
fn cluster_not_ready(state: &AdminState, shards: &[String]) -> String {
    let mut why = Vec::new();
    for shard in shards {
        let Some(m) = shard
            .parse::<usize>()
            .ok()
            .and_then(|i| state.shards.get(i))
        else {
            continue;
        };
        let covered = m.redis_cluster_slots.get();
        if covered < crate::redis::slot::SLOTS as i64 {
            why.push(format!(
                "shard {shard}: no usable slot map ({covered} of 16384 slots have an owner)"
            ));
            continue;
        }
        let down: Vec<String> = m
            .redis_nodes()
            .iter()
            .filter(|n| n.slots.get() > 0 && n.connected.get() != 1)
            .map(|n| n.node.clone())
            .collect();
        why.push(match down.is_empty() {
            true => format!("shard {shard}: not connected yet"),
            false => format!("shard {shard}: owner(s) {} unreachable", down.join(",")),
        });
    }
    format!(
        "Redis Cluster not usable (cluster mode): {}",
        why.join("; ")
    )
}

fn render_metrics(state: &AdminState) -> String {
    let fds = procfs::fd_usage().ok();
    // The address only: parsing needs no password, resolving the full target would read it.
    // Sentinel mode: the primary changes, so its connections are not told apart.
    let config = state.reloader.live.load();
    let redis_peer = crate::redis::target::parse_addr(&config.redis.addr)
        .ok()
        .filter(|_| !config.redis.is_sentinel() && !config.redis.is_cluster())
        .and_then(|p| Some(SocketAddr::new(p.host.parse().ok()?, p.port)));
    let tcp = procfs::process_tcp_states(&state.service_ports, redis_peer.as_slice()).ok();
    let reloads = match state.tls.status.lock() {
        Ok(status) => status.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    let config_reloads = match state.reloader.status.lock() {
        Ok(status) => status.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    let process = ProcessGauges {
        config_reloads_ok: config_reloads.succeeded,
        config_reloads_failed: config_reloads.failed,
        config_reload_error: config_reloads.last_error,
        open_fds: fds.as_ref().map(|f| f.open),
        max_fds: fds.as_ref().map(|f| f.soft_limit),
        tcp_established: tcp.as_ref().map(|t| t.established),
        tcp_time_wait: tcp.as_ref().map(|t| t.time_wait),
        tcp_close_wait: tcp.as_ref().map(|t| t.close_wait),
        tcp_retransmitted_segments: procfs::tcp_retransmitted_segments().ok(),
        access_log_dropped_lines: state
            .access_log_dropped
            .as_ref()
            .map(|dropped| dropped.load(Ordering::Relaxed)),
        draining: state.drain.is_draining(),
        tls_reloads_ok: reloads.succeeded,
        tls_reloads_failed: reloads.failed,
        tls_reload_failing: reloads.last_error.is_some(),
        ready: not_ready(state).is_none(),
        uptime_seconds: state.started.elapsed().as_secs_f64(),
    };
    metrics::render(&state.shards, &process)
}

fn respond(stream: &mut TcpStream, status: u16, content_type: &str, body: &str) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        202 => "Accepted",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}
