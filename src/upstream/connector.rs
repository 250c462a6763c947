//! Dialing a target: resolving its name off the shard thread, TCP connect with a timeout and
//! the socket options (`TCP_NODELAY`, TCP keepalive, `TCP_USER_TIMEOUT`), the TLS handshake
//! for `https://` targets (within what is left of the dial timeout), the HTTP/2 client
//! handshake, and the task that drives the connection. Speaks no gRPC and makes no pool
//! decisions.

use std::cell::Cell;
use std::future::poll_fn;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;
use socket2::{Domain, Protocol, Socket, TcpKeepalive, Type};

use rustls::pki_types::ServerName;

use super::DialError;
use crate::config::UpstreamConfig;
use crate::metrics::{ShardMetrics, Side};
use crate::tls::transport::handshake;
use crate::tls::HandshakeError;
use crate::wire::{self, Flood, Observer, Reason, Role};

/// What every dial on a shard needs, built once from the config.
#[derive(Debug, Clone)]
pub struct DialSettings {
    pub timeout: Duration,
    pub h2: Rc<wire::Settings>,
    /// `None`: TCP keepalive off.
    pub tcp_keepalive: Option<(Duration, Duration)>,
    pub tcp_user_timeout: Option<Duration>,
}

impl DialSettings {
    pub fn new(config: &UpstreamConfig) -> DialSettings {
        // gRPC has no server push; the client role says so in its SETTINGS.
        let h2 = wire::Settings {
            stream_window: config.stream_window_bytes,
            connection_window: config.connection_window_bytes,
            output_limit: config.output_buffer_bytes,
            max_control_frames_per_second: config.max_control_frames_per_second,
            // A target connection is shared by many clients' calls: a call whose client
            // stopped reading holds at most its own stream window, never the connection's.
            connection_window_on_receipt: true,
            send_timeout: (config.send_timeout_ms > 0)
                .then(|| Duration::from_millis(config.send_timeout_ms)),
            cancel_grace: Duration::from_millis(config.cancel_grace_ms),
            ..wire::Settings::default()
        };
        let ms = Duration::from_millis;
        DialSettings {
            timeout: ms(config.dial_timeout_ms),
            h2: Rc::new(h2),
            tcp_keepalive: (config.tcp_keepalive_time_ms > 0).then(|| {
                (
                    ms(config.tcp_keepalive_time_ms),
                    ms(config.tcp_keepalive_interval_ms),
                )
            }),
            tcp_user_timeout: (config.tcp_user_timeout_ms > 0)
                .then(|| ms(config.tcp_user_timeout_ms)),
        }
    }
}

/// One live HTTP/2 connection to a target.
pub struct Connection {
    /// The HTTP/2 connection: opens streams.
    pub h2: wire::Conn,
    pub remote: SocketAddr,
    /// Set by the driver task when the connection has ended, for whatever reason, and by the
    /// pool when it stops using the connection.
    pub closed: Rc<Cell<bool>>,
    /// Set when ringway decided to close the connection (for the closed-by metric).
    pub closing_locally: Rc<Cell<bool>>,
}

/// Counts every GOAWAY from the target.
struct TargetWatch {
    metrics: Arc<ShardMetrics>,
}

impl Observer for TargetWatch {
    fn read_goaway(&self, _last_stream: u32, _code: u32) {
        self.metrics.upstream_goaways_received.inc();
    }

    fn flood(&self, kind: Flood) {
        self.metrics.flood(Side::Upstream, kind).inc();
    }

    fn output_paused(&self) {
        self.metrics.h2_output_pauses[Side::Upstream as usize].inc();
    }

    fn send_timed_out(&self) {
        self.metrics.h2_send_timeouts[Side::Upstream as usize].inc();
    }

    fn flow_control_error(&self) {
        self.metrics.h2_flow_control_errors[Side::Upstream as usize].inc();
    }
}

impl Drop for Connection {
    /// The pool let the connection go: GOAWAY, and close once its last stream is done.
    fn drop(&mut self) {
        self.h2.graceful_shutdown();
    }
}

impl Connection {
    /// Whether the target announced, by GOAWAY, that it never processed stream `id`: then a
    /// retry elsewhere cannot run the call twice.
    pub fn never_processed(&self, id: u32) -> bool {
        self.h2.goaway_last_stream().is_some_and(|last| id > last)
    }

    /// Closes the connection now (keepalive timeout): streams on it fail.
    pub fn abort(&self) {
        self.closing_locally.set(true);
        self.closed.set(true);
        self.h2.abort("closed by ringway");
    }

    /// Sends a PING and waits for its ACK up to `timeout`. `Ok(false)` when a ping is already
    /// in flight (the caller's question is being answered by that one).
    pub async fn ping(&self, timeout: Duration) -> Result<bool, String> {
        if !self.h2.send_ping() {
            return Ok(false);
        }
        let result = monoio::time::timeout(timeout, poll_fn(|cx| self.h2.poll_pong(cx))).await;
        match result {
            Ok(Ok(())) => Ok(true),
            Ok(Err(e)) => Err(format!("PING failed: {e}")),
            Err(_) => Err(format!("PING unanswered after {} ms", timeout.as_millis())),
        }
    }
}

/// What the driver reports when a connection ends.
pub struct Ended {
    /// The target sent GOAWAY ENHANCE_YOUR_CALM: our pings are too frequent for it.
    pub too_many_pings: bool,
}

/// Connects to `addr` and completes the TLS handshake (with `tls`: the client config and the
/// name the target's certificate must be valid for) and the HTTP/2 handshake within the dial
/// timeout; spawns the task that drives the connection, which calls `on_end` when it ends.
/// The error is a short reason for the client's message.
pub async fn dial(
    addr: SocketAddr,
    settings: &DialSettings,
    metrics: &Arc<ShardMetrics>,
    target: Rc<str>,
    host_port: Rc<str>,
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    on_end: impl FnOnce(Ended) + 'static,
) -> Result<Connection, DialError> {
    let watch: Rc<dyn Observer> = Rc::new(TargetWatch {
        metrics: metrics.clone(),
    });
    let started = Instant::now();
    let mut stream = match monoio::time::timeout(settings.timeout, connect(addr, settings)).await {
        Ok(result) => result.map_err(|e| DialError::Connect {
            addr,
            source: Rc::new(e),
        })?,
        Err(_) => {
            return Err(DialError::Timeout {
                addr,
                after: settings.timeout,
            })
        }
    };
    let transport = match tls {
        None => None,
        Some((config, name)) => {
            let left = settings.timeout.saturating_sub(started.elapsed());
            let side = Side::Upstream;
            let shake = async {
                let tls =
                    rustls::ClientConnection::new(config, name).map_err(HandshakeError::Tls)?;
                match monoio::time::timeout(left, handshake(&mut stream, tls, false)).await {
                    Ok(result) => result,
                    Err(_) => Err(HandshakeError::Timeout(settings.timeout)),
                }
            };
            match shake.await {
                Ok(transport) => {
                    metrics.tls_handshakes[side as usize].inc();
                    if transport.resumed() {
                        metrics.tls_resumed[side as usize].inc();
                    }
                    Some(transport)
                }
                Err(source) => {
                    metrics.tls_failure(side, source.failure()).inc();
                    return Err(DialError::Tls {
                        target: host_port,
                        addr,
                        source: Rc::new(source),
                    });
                }
            }
        }
    };
    let h2 = wire::Conn::new(Role::Client, settings.h2.clone(), Some(watch));
    let closed = Rc::new(Cell::new(false));
    let closing_locally = Rc::new(Cell::new(false));
    let (flag, local) = (closed.clone(), closing_locally.clone());
    let metrics = metrics.clone();
    let driver_metrics = metrics.clone();
    let driven = h2.clone();
    monoio::spawn(async move {
        let metrics = driver_metrics;
        // Drives all I/O of the connection; ends when the peer closes it, it fails, it was
        // retired and its last stream is done, or the pool aborts it.
        let halves = wire::io::split(stream);
        match transport {
            Some(tls) => wire::io::drive(driven.clone(), halves, tls).await,
            None => wire::io::drive(driven.clone(), halves, wire::io::Plain).await,
        }
        let too_many_pings = driven.goaway_reason() == Some(Reason::ENHANCE_YOUR_CALM);
        match driven.failure() {
            Some(wire::Error::GoAway {
                reason: Reason::NO_ERROR,
                ..
            })
            | None => {}
            Some(e) if !local.get() => {
                eprintln!("ringway: upstream connection to {target} ({addr}) ended: {e}")
            }
            Some(_) => {}
        }
        flag.set(true);
        metrics.upstream_connections_open.dec();
        if local.get() {
            metrics.upstream_connections_closed_local.inc();
        } else {
            metrics.upstream_connections_closed_remote.inc();
        }
        on_end(Ended { too_many_pings });
    });
    metrics.upstream_connections_opened.inc();
    metrics.upstream_connections_open.inc();
    let connection = Connection {
        h2,
        remote: addr,
        closed,
        closing_locally,
    };
    // Our preface is only queued; a PING round trip within what is left of the dial timeout
    // proves the target speaks HTTP/2 and is answering, so a listener that accepts and never
    // answers fails the dial instead of swallowing calls.
    let left = settings.timeout.saturating_sub(started.elapsed());
    if let Err(reason) = connection.ping(left.max(Duration::from_millis(1))).await {
        connection.abort();
        return Err(DialError::NoHttp2 { addr, reason });
    }
    Ok(connection)
}

/// A TCP connection with the options set before the SYN: built with socket2, connected
/// non-blocking, then handed to monoio, which waits until it is writable (connected). A second
/// handle on the socket (`try_clone`, a `dup`) reads `SO_ERROR` afterwards — the safe way to
/// keep socket2's setters and monoio's I/O on one socket.
async fn connect(addr: SocketAddr, settings: &DialSettings) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_tcp_nodelay(true)?;
    if let Some((time, interval)) = settings.tcp_keepalive {
        let keepalive = TcpKeepalive::new()
            .with_time(time)
            .with_interval(interval)
            .with_retries(3);
        socket.set_tcp_keepalive(&keepalive)?;
    }
    if let Some(timeout) = settings.tcp_user_timeout {
        socket.set_tcp_user_timeout(Some(timeout))?;
    }
    socket.set_nonblocking(true)?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    let probe = socket.try_clone()?;
    let stream = TcpStream::from_std(std::net::TcpStream::from(socket))?;
    stream.writable(false).await?;
    match probe.take_error()? {
        Some(e) => Err(e),
        None => Ok(stream),
    }
}

/// Resolves `host:port` without blocking the shard: IP literals at once, names on a
/// short-lived thread whose answer the shard polls for (a monoio runtime without its `sync`
/// feature cannot be woken from another thread).
pub async fn resolve(authority: &str, timeout: Duration) -> Result<Vec<SocketAddr>, DialError> {
    resolve_names(authority, timeout)
        .await
        .map_err(DialError::Resolve)
}

async fn resolve_names(authority: &str, timeout: Duration) -> Result<Vec<SocketAddr>, String> {
    if let Ok(addr) = authority.parse::<SocketAddr>() {
        return Ok(vec![addr]);
    }
    let name = authority.to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("ringway-resolve".into())
        .spawn(move || {
            let _ = tx.send(name.to_socket_addrs().map(|a| a.collect::<Vec<_>>()));
        })
        .map_err(|e| format!("cannot start a resolver thread: {e}"))?;
    let deadline = Instant::now() + timeout;
    loop {
        match rx.try_recv() {
            Ok(Ok(addrs)) if !addrs.is_empty() => return Ok(addrs),
            Ok(Ok(_)) => return Err(format!("{authority} resolves to no address")),
            Ok(Err(e)) => return Err(format!("cannot resolve {authority}: {e}")),
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                return Err(format!("resolver for {authority} failed"))
            }
            Err(std::sync::mpsc::TryRecvError::Empty) => {}
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "resolving {authority} took over {} ms",
                timeout.as_millis()
            ));
        }
        monoio::time::sleep(Duration::from_millis(2)).await;
    }
}
