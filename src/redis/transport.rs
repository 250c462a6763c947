//! The byte stream under the shard's Redis connection, and the one function that opens it.
//!
//! Owns: name resolution, the TCP connect and its timeout, socket options. Knows nothing of
//! RESP or of logging in ([`super`] does both over whatever [`open`] returns).
//!
//! # Plugging in TLS
//!
//! `rediss://` targets arrive with [`RedisTarget::tls`] set (today [`RedisTarget::from_config`]
//! refuses them before they get here). TLS goes in [`open`] alone: connect TCP as below, run
//! the handshake with `target.host` as the server name, and return the TLS stream. [`Stream`]
//! then becomes a type (an enum of plain and TLS, say) that implements monoio's
//! `AsyncReadRent`, `AsyncWriteRent` and `Splitable` (the connection reads and writes from
//! two tasks through `into_split`); nothing else in `src/redis/` names `TcpStream`.
//!
//! [`RedisTarget::from_config`]: super::RedisTarget::from_config

use std::net::ToSocketAddrs;
use std::rc::Rc;
use std::time::Duration;

use monoio::net::TcpStream;

use super::{RedisTarget, Unavailable};

/// What the connection reads and writes.
pub type Stream = TcpStream;

/// Resolves and connects to `target` within `timeout`.
pub async fn open(target: &RedisTarget, timeout: Duration) -> Result<Stream, Unavailable> {
    if target.tls {
        return Err(Unavailable::TlsUnsupported);
    }
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
    Ok(stream)
}
