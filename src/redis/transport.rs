//! The byte stream under the shard's Redis connection, and the one function that opens it.
//!
//! Owns: name resolution, the TCP connect and its timeout, socket options, the TLS handshake
//! for `rediss://`. Knows nothing of RESP or of logging in ([`super`] does both over whatever
//! [`open`] returns).
//!
//! # TLS
//!
//! `rediss://` targets ([`RedisTarget::tls`]) get the handshake here, right after the TCP
//! connect and within the same `connect_timeout_ms`: rustls's buffered `ClientConnection`,
//! driven sans-I/O by the gateway's own [`TlsTransport`] (the one upstream `https://`
//! connections use), with `target.host` as the server name — a DNS name is sent as SNI and
//! checked against the certificate's DNS SANs; an IP address sends no SNI and is checked
//! against its IP SANs. A failed handshake is [`Unavailable::Tls`], naming Redis and why.
//!
//! [`Stream`] is an enum rather than a boxed stream: [`super`] matches it once per connection
//! and runs its loops generic over the [`Transport`](crate::wire::io::Transport) (`Plain` or
//! [`TlsTransport`]), so the plaintext path is what it was — no extra copy, no dynamic
//! dispatch per read or write.

use std::net::ToSocketAddrs;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};

use super::{RedisTarget, Unavailable};
use crate::tls::{HandshakeError, TlsTransport};

/// What the connection reads and writes: the socket, and for TLS the transport that decrypts
/// what is read from it and encrypts what is written (boxed: rustls's state is over 1 KiB,
/// allocated once per connection).
pub enum Stream {
    Plain(TcpStream),
    Tls(TcpStream, Box<TlsTransport>),
}

/// Resolves and connects to `target` within `timeout`; with `tls` (a `rediss://` target),
/// runs the TLS handshake too, within the same `timeout`.
pub async fn open(
    target: &RedisTarget,
    tls: Option<Arc<ClientConfig>>,
    timeout: Duration,
) -> Result<Stream, Unavailable> {
    let started = Instant::now();
    // Name resolution blocks the shard, but only while Redis is being (re)dialed, when no
    // lookup can succeed anyway.
    let addr = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| Unavailable::Resolve {
            addr: target.to_string(),
            source: Some(Rc::new(e)),
        })?
        .next()
        .ok_or_else(|| Unavailable::Resolve {
            addr: target.to_string(),
            source: None,
        })?;
    let stream = match monoio::time::timeout(timeout, TcpStream::connect_addr(addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(Unavailable::io(Unavailable::Connect, e)),
        Err(_) => {
            return Err(Unavailable::ConnectTimeout {
                ms: timeout.as_millis() as u64,
            })
        }
    };
    stream
        .set_nodelay(true)
        .map_err(|e| Unavailable::io(Unavailable::Connect, e))?;
    let Some(config) = tls else {
        return Ok(Stream::Plain(stream));
    };
    let failed = |error| Unavailable::Tls {
        addr: target.to_string(),
        error,
    };
    // An IP address parses as `ServerName::IpAddress`: no SNI, the IP SAN is verified.
    let name = ServerName::try_from(target.host.clone()).map_err(|_| {
        failed(HandshakeError::Tls(rustls::Error::General(format!(
            "`{}` is not a valid server name",
            target.host
        ))))
    })?;
    let connection =
        ClientConnection::new(config, name).map_err(|e| failed(HandshakeError::Tls(e)))?;
    let left = timeout.saturating_sub(started.elapsed());
    let mut stream = stream;
    match monoio::time::timeout(
        left,
        crate::tls::transport::handshake(&mut stream, connection, false),
    )
    .await
    {
        Ok(Ok(transport)) => Ok(Stream::Tls(stream, Box::new(transport))),
        Ok(Err(e)) => Err(failed(e)),
        Err(_) => Err(failed(HandshakeError::Timeout(timeout))),
    }
}
