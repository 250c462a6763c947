//! Dialing a target: TCP connect with a timeout, `TCP_NODELAY`, the HTTP/2 client handshake,
//! and the task that drives the connection. Speaks no gRPC and makes no pool decisions.

use std::cell::Cell;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use monoio::io::IntoPollIo;
use monoio::net::TcpStream;

use crate::config::{split_host_port, UpstreamConfig};
use crate::metrics::ShardMetrics;

/// What every dial on a shard needs, built once from the config.
#[derive(Debug, Clone)]
pub struct DialSettings {
    pub timeout: Duration,
    pub h2: h2::client::Builder,
}

impl DialSettings {
    pub fn new(config: &UpstreamConfig) -> DialSettings {
        let mut h2 = h2::client::Builder::new();
        h2.initial_window_size(config.stream_window_bytes)
            .initial_connection_window_size(config.connection_window_bytes)
            // gRPC has no server push.
            .enable_push(false);
        DialSettings {
            timeout: Duration::from_millis(config.dial_timeout_ms),
            h2,
        }
    }
}

/// One live HTTP/2 connection to a target, as the pool sees it.
pub struct Connection {
    /// Opens streams; cloned per call (h2 shares the connection state behind it).
    pub send: SendRequest<Bytes>,
    /// Set by the driver task when the connection has ended, for whatever reason, and by the
    /// pool when it retires the connection.
    pub closed: Rc<Cell<bool>>,
    /// Set when ringway decided to close the connection (for the closed-by metric).
    pub closing_locally: Rc<Cell<bool>>,
}

/// Connects to `authority` (`host:port`) and completes the HTTP/2 handshake within the dial
/// timeout. The error is a short reason for the client's message.
pub async fn dial(
    authority: &str,
    settings: &DialSettings,
    metrics: &Arc<ShardMetrics>,
) -> Result<Connection, String> {
    let addr = resolve(authority)?;
    let connect = async {
        let stream = TcpStream::connect_addr(addr)
            .await
            .map_err(|e| e.to_string())?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let io = stream.into_poll_io().map_err(|e| e.to_string())?;
        settings
            .h2
            .handshake::<_, Bytes>(io)
            .await
            .map_err(|e| format!("HTTP/2 handshake failed: {e}"))
    };
    let (send, connection) = match monoio::time::timeout(settings.timeout, connect).await {
        Ok(result) => result?,
        Err(_) => {
            return Err(format!(
                "dial timed out after {} ms",
                settings.timeout.as_millis()
            ))
        }
    };
    let closed = Rc::new(Cell::new(false));
    let closing_locally = Rc::new(Cell::new(false));
    let (flag, local) = (closed.clone(), closing_locally.clone());
    let target = authority.to_string();
    let metrics = metrics.clone();
    metrics.upstream_connections_opened.inc();
    metrics.upstream_connections_open.inc();
    monoio::spawn(async move {
        // Drives all I/O of the connection; ends when the peer closes it, it fails, or every
        // handle is dropped and no stream is left.
        let result = connection.await;
        if let Err(e) = &result {
            if e.is_go_away() && e.is_remote() {
                metrics.upstream_goaways_received.inc();
            }
            if !e.is_go_away() || e.reason() != Some(h2::Reason::NO_ERROR) {
                eprintln!("ringway: upstream connection to {target} ended: {e}");
            }
        }
        flag.set(true);
        metrics.upstream_connections_open.dec();
        if local.get() {
            metrics.upstream_connections_closed_local.inc();
        } else {
            metrics.upstream_connections_closed_remote.inc();
        }
    });
    Ok(Connection {
        send,
        closed,
        closing_locally,
    })
}

/// `host:port` to a socket address. IP literals cost nothing; a hostname is resolved by the
/// system resolver, which blocks this shard — only while dialing, never per call.
fn resolve(authority: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = authority.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let (host, port) =
        split_host_port(authority).ok_or_else(|| format!("`{authority}` is not host:port"))?;
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} resolves to no address"))
}
