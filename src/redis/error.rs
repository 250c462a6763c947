//! Why the shard's Redis connection is down, or why a lookup got no reply.

use std::fmt;
use std::io;
use std::rc::Rc;

use crate::tls::HandshakeError;

/// Why a lookup got no reply from Redis. Its text ends up in the client's `grpc-message`
/// (inside [`GatewayError::RedisUnavailable`](crate::status::GatewayError::RedisUnavailable)).
///
/// Cloned into every lookup that fails with it while the connection is down, hence the `Rc`
/// around I/O errors (which are not `Clone`).
#[derive(Debug, Clone)]
pub enum Unavailable {
    /// The first connection attempt has not finished.
    NotConnectedYet,
    /// The configured address did not resolve; `None`: it resolved to no address.
    Resolve {
        addr: String,
        source: Option<Rc<io::Error>>,
    },
    /// The connect (or setting up the socket) failed.
    Connect(Rc<io::Error>),
    /// The connect did not finish within `connect_timeout_ms`.
    ConnectTimeout {
        ms: u64,
    },
    /// The target or its password could not be had at connect time (the password file became
    /// unreadable, say): the config error's text, which names the field and never the password.
    Credentials(String),
    /// `rediss://`: the TLS handshake with Redis failed (its certificate did not verify, it
    /// wanted a client certificate, it is not a TLS port, it took longer than
    /// `connect_timeout_ms`). `source()` is the rustls error when TLS refused.
    Tls {
        /// Redis's `host:port`.
        addr: String,
        error: HandshakeError,
    },
    /// Redis refused the login (`WRONGPASS`, `NOAUTH`, an error to `AUTH`): the server's error
    /// text, with the password cut out should the server ever echo it. Redialed with backoff
    /// like any failed attempt; `/readyz` names it.
    AuthFailed(String),
    /// `SELECT db` failed (e.g. `ERR DB index is out of range`): the server's error text.
    Select {
        db: u32,
        message: String,
    },
    /// A setup command (`HELLO`, `AUTH`, `SELECT`, `CLIENT TRACKING`) got no answer within
    /// `connect_timeout_ms`.
    NoAnswer {
        ms: u64,
    },
    Write(Rc<io::Error>),
    Read(Rc<io::Error>),
    /// Redis closed the connection.
    Closed,
    /// Redis sent what is not RESP, or a reply nothing asked for.
    Protocol(String),
    /// Lookups were outstanding and nothing came back for this long: the connection is
    /// declared dead and redialed.
    Stalled {
        ms: u64,
    },
    /// The lookup this call waited on was dropped before it answered.
    Abandoned,
    /// No reply by the lookup's deadline (`lookup_timeout_ms`).
    TimedOut,
    /// Sentinel mode: no sentinel named a primary for the service; why, sentinel by sentinel.
    NoPrimary {
        service: String,
        why: String,
    },
    /// Sentinel mode: the server the sentinels named (or the one connected) is not a primary:
    /// `ROLE` said otherwise, or a `READONLY` error came. The sentinels are asked again.
    NotPrimary {
        addr: String,
        role: String,
    },
    /// Sentinel mode: the sentinels announced a new primary (`+switch-master`); the
    /// connection to the old one is closed and the new one dialed.
    Switched {
        service: String,
        to: String,
    },
    /// Cluster mode: the shard's slot map names no owner for the key's slot (no map yet, or
    /// the slot's primary failed and no replica has been promoted yet); `why`: the last
    /// refresh's failure, when it failed.
    NoSlotOwner {
        slot: u16,
        why: Option<String>,
    },
    /// Cluster mode: more redirects (`-MOVED`, `-ASK`) than a lookup may follow in a row.
    TooManyRedirects {
        slot: u16,
        last: String,
    },
    /// Cluster mode: the node left the slot map; its connection was closed.
    LeftCluster,
    /// Cluster mode: a node answered that it cannot serve the key now (`CLUSTERDOWN` while
    /// a failover runs, `TRYAGAIN` mid-migration, `LOADING`): the server's error text.
    ClusterBusy(String),
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::NotConnectedYet => f.write_str("not connected yet"),
            Unavailable::Resolve {
                addr,
                source: Some(e),
            } => {
                write!(f, "cannot resolve {addr}: {e}")
            }
            Unavailable::Resolve { addr, source: None } => {
                write!(f, "{addr} resolves to no address")
            }
            Unavailable::Connect(e) => write!(f, "{e}"),
            Unavailable::ConnectTimeout { ms } => write!(f, "connect timed out after {ms} ms"),
            Unavailable::Credentials(why) => write!(f, "no credentials for Redis: {why}"),
            Unavailable::Tls { addr, error } => {
                write!(f, "TLS to redis {addr}: {error}")?;
                if let Some(hint) = plaintext_hint(error) {
                    write!(f, " ({hint})")?;
                }
                Ok(())
            }
            Unavailable::AuthFailed(message) => {
                write!(f, "Redis refused authentication: {message}")
            }
            Unavailable::Select { db, message } => {
                write!(f, "Redis refused SELECT {db}: {message}")
            }
            Unavailable::NoAnswer { ms } => write!(f, "no answer within {ms} ms"),
            Unavailable::Write(e) => write!(f, "write failed: {e}"),
            Unavailable::Read(e) => write!(f, "read failed: {e}"),
            Unavailable::Closed => f.write_str("closed by Redis"),
            Unavailable::Protocol(what) => f.write_str(what),
            Unavailable::Stalled { ms } => {
                write!(f, "no reply for {ms} ms with lookups outstanding")
            }
            Unavailable::Abandoned => f.write_str("lookup abandoned"),
            Unavailable::TimedOut => f.write_str("no reply within the lookup timeout"),
            Unavailable::NoPrimary { service, why } => {
                write!(f, "no sentinel named a primary for `{service}`: {why}")
            }
            Unavailable::NotPrimary { addr, role } => {
                write!(
                    f,
                    "{addr} is not the primary ({role}); asking the sentinels again"
                )
            }
            Unavailable::Switched { service, to } => {
                write!(
                    f,
                    "failover: the sentinels moved the primary of `{service}` to {to}"
                )
            }
            Unavailable::NoSlotOwner { slot, why: None } => {
                write!(
                    f,
                    "no cluster node owns slot {slot} in this shard's slot map"
                )
            }
            Unavailable::NoSlotOwner {
                slot,
                why: Some(why),
            } => {
                write!(f, "no cluster node owns slot {slot}: no slot map ({why})")
            }
            Unavailable::TooManyRedirects { slot, last } => {
                write!(
                    f,
                    "too many cluster redirects for slot {slot} (last: {last})"
                )
            }
            Unavailable::LeftCluster => f.write_str("the node left the cluster's slot map"),
            Unavailable::ClusterBusy(message) => write!(f, "Redis Cluster: {message}"),
        }
    }
}

impl std::error::Error for Unavailable {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Unavailable::Resolve {
                source: Some(e), ..
            }
            | Unavailable::Connect(e)
            | Unavailable::Write(e)
            | Unavailable::Read(e) => Some(e.as_ref()),
            Unavailable::Tls {
                error: HandshakeError::Tls(e),
                ..
            } => Some(e),
            Unavailable::Tls { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl Unavailable {
    /// Whether Redis refused the login (for readiness and the metric).
    pub fn is_auth_failure(&self) -> bool {
        matches!(self, Unavailable::AuthFailed(_))
    }

    /// Whether the TLS handshake with Redis failed (for readiness and the metric).
    pub fn is_tls_failure(&self) -> bool {
        matches!(self, Unavailable::Tls { .. })
    }

    pub(super) fn io(wrap: fn(Rc<io::Error>) -> Unavailable, e: io::Error) -> Unavailable {
        wrap(Rc::new(e))
    }
}

/// What a failed handshake says when the port is likely not a TLS port at all: a plaintext
/// Redis answers a ClientHello with an error line (`-ERR ...`, not a TLS record) or, when the
/// hello held no newline, waits for the rest of the "command" until the timeout.
fn plaintext_hint(error: &HandshakeError) -> Option<&'static str> {
    match error {
        HandshakeError::Tls(rustls::Error::InvalidMessage(
            rustls::InvalidMessage::InvalidContentType,
        ))
        | HandshakeError::Timeout(_) => Some("is this Redis's TLS port? rediss:// needs one"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    #[test]
    fn io_failures_keep_their_cause_and_text() {
        let e = Unavailable::io(
            Unavailable::Read,
            io::Error::from(io::ErrorKind::ConnectionReset),
        );
        assert_eq!(e.to_string(), "read failed: connection reset");
        assert_eq!(
            e.source()
                .and_then(|s| s.downcast_ref::<io::Error>())
                .map(io::Error::kind),
            Some(io::ErrorKind::ConnectionReset)
        );
        assert!(Unavailable::Closed.source().is_none());
    }

    #[test]
    fn tls_failures_name_redis_and_keep_the_rustls_error() {
        let e = Unavailable::Tls {
            addr: "127.0.0.1:6390".into(),
            error: HandshakeError::Tls(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            )),
        };
        assert_eq!(
            e.to_string(),
            "TLS to redis 127.0.0.1:6390: invalid peer certificate: UnknownIssuer"
        );
        assert!(matches!(
            e.source().and_then(|s| s.downcast_ref::<rustls::Error>()),
            Some(rustls::Error::InvalidCertificate(_))
        ));
        let e = Unavailable::Tls {
            addr: "h:1".into(),
            error: HandshakeError::Timeout(std::time::Duration::from_millis(1000)),
        };
        assert!(e.to_string().contains("TLS port?"), "{e}");
    }
}
