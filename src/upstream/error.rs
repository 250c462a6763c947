//! Why no connection to a target could be had: the upstream layer's one error type.
//!
//! Every variant comes from the target's side (its name, its socket, its HTTP/2); the proxy
//! turns it into a [`GatewayError::DialFailed`](crate::status::GatewayError::DialFailed) and
//! so into UNAVAILABLE for the client. `Display` is the reason the client reads in its
//! `grpc-message`.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use crate::tls::HandshakeError;

#[derive(Debug, Clone)]
pub enum DialError {
    /// The target's name did not resolve (or resolved to no address, or not in time).
    Resolve(String),
    /// TCP connect failed: refused, unreachable, reset.
    Connect {
        addr: SocketAddr,
        source: Rc<io::Error>,
    },
    /// TCP connect took longer than the dial timeout.
    Timeout { addr: SocketAddr, after: Duration },
    /// The TLS handshake with an `https://` target failed: its certificate did not verify,
    /// it refused ours, it closed, or it did not finish within the dial timeout.
    Tls {
        /// `host:port` as the route names it.
        target: Rc<str>,
        addr: SocketAddr,
        /// Boxed: rustls's error is large, and every call's `Result` would carry its size.
        source: Rc<HandshakeError>,
    },
    /// Connected, but the target answered no HTTP/2 PING within the dial timeout.
    NoHttp2 { addr: SocketAddr, reason: String },
    /// A pooled connection's keepalive PING went unanswered.
    Keepalive { addr: SocketAddr, reason: String },
    /// Recent dials failed: no new one until the backoff ends; the last failure is kept.
    Backoff {
        last: Box<DialError>,
        failures: u32,
        retry_in: Duration,
    },
    /// Connections to the target failed as soon as they opened, round after round.
    KeepFailing,
    /// The dial the call waited on went away.
    Abandoned,
}

impl fmt::Display for DialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DialError::Resolve(why) => f.write_str(why),
            DialError::Connect { addr, source } => write!(f, "{source} ({addr})"),
            DialError::Timeout { addr, after } => {
                write!(f, "dial timed out after {} ms ({addr})", after.as_millis())
            }
            DialError::Tls {
                target,
                addr,
                source,
            } => {
                write!(f, "TLS to {target}: {source} ({addr})")
            }
            DialError::NoHttp2 { addr, reason } => write!(f, "no HTTP/2 answer: {reason} ({addr})"),
            DialError::Keepalive { reason, .. } => f.write_str(reason),
            DialError::Backoff {
                last,
                failures,
                retry_in,
            } => write!(
                f,
                "{last} (after {failures} failed attempt(s); next dial in {} ms)",
                retry_in.as_millis()
            ),
            DialError::KeepFailing => f.write_str("connections keep failing as soon as they open"),
            DialError::Abandoned => f.write_str("dial abandoned"),
        }
    }
}

impl std::error::Error for DialError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DialError::Connect { source, .. } => Some(source.as_ref()),
            DialError::Backoff { last, .. } => Some(last.as_ref()),
            DialError::Tls { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_address_and_the_cause() {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let refused = DialError::Connect {
            addr,
            source: Rc::new(io::Error::from(io::ErrorKind::ConnectionRefused)),
        };
        assert_eq!(refused.to_string(), "connection refused (127.0.0.1:9)");
        let backoff = DialError::Backoff {
            last: Box::new(refused),
            failures: 2,
            retry_in: Duration::from_millis(250),
        };
        assert_eq!(
            backoff.to_string(),
            "connection refused (127.0.0.1:9) (after 2 failed attempt(s); next dial in 250 ms)"
        );
        use std::error::Error;
        assert!(backoff.source().is_some());
    }
}
