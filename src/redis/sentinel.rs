//! Redis Sentinel: which server is the primary now, and when that changes.
//!
//! Owns: asking the sentinels for the service's primary, checking with `ROLE` that the server
//! named is one, and the `+switch-master` subscription that ends a connection to a primary
//! that is no longer one. Dials through [`super::transport::open`] and speaks RESP through
//! [`super::exchange_on`]; logging in to the primary, pipelining and redialing stay in
//! [`super`].
//!
//! # A connect in sentinel mode (the Redis Sentinel client spec)
//!
//! 1. Ask the sentinels in turn `SENTINEL get-master-addr-by-name <service>` (after `AUTH`
//!    when `sentinel_password` is set), each within `connect_timeout_ms`. The first that
//!    names an address wins and moves to the front of this shard's list, so the next connect
//!    asks it first. None answering is [`Unavailable::NoPrimary`], a failed attempt like any.
//! 2. Dial that address and log in as to a single server ([`super::handshake`]).
//! 3. `ROLE`: anything but `master` (a sentinel that has not noticed a failover yet, a
//!    demoted primary back as a replica) is [`Unavailable::NotPrimary`]: the connection is
//!    dropped and, after the backoff, the sentinels are asked again.
//!
//! # Following failovers
//!
//! While a connection is up, [`watch`] holds a second connection, to the sentinel at the front
//! of the list, subscribed to `+switch-master`. A switch for our service to another address
//! ends the data connection ([`Unavailable::Switched`]), and the redial starts at step 1. A
//! data connection that breaks, or a `READONLY` error, leads to the same redial without it.
//! Every redial flushes the route cache ([`super::Push::Reset`]) and turns tracking on again.
//!
//! The subscription is per shard, not per process: shards share nothing, and one idle
//! connection per core is nothing to a sentinel, where one per process would need a thread
//! and a message to every shard. A sentinel lost by the watch is redialed (the next in the
//! list) without touching the data connection: the subscription only speeds a failover up —
//! the primary's connection breaking does the same when it dies.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rustls::ClientConfig;

use super::codec::{decode_strings, Strings};
use super::{exchange_on, transport, RedisTarget, Unavailable};

/// Where the primary was found.
#[derive(Debug, Clone, PartialEq)]
pub struct Primary {
    /// `host:port` of the primary (IPv6 bracketed).
    pub host: String,
    pub port: u16,
    /// The sentinel that named it, `host:port`.
    pub sentinel: String,
}

impl Primary {
    pub fn addr(&self) -> String {
        host_port(&self.host, self.port)
    }
}

/// `host:port`, an IPv6 host bracketed.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Step 1: the primary of `target`'s service, asked of the sentinels in `order` (this shard's
/// list, front first); the one that answers moves to the front.
pub async fn discover(
    target: &RedisTarget,
    order: &mut [(String, u16)],
    tls: Option<Arc<ClientConfig>>,
    timeout: Duration,
) -> Result<Primary, Unavailable> {
    let sentinels = target
        .sentinel
        .as_ref()
        .expect("discover is called in sentinel mode");
    let mut why = Vec::new();
    for i in 0..order.len() {
        let (host, port) = order[i].clone();
        let shown = host_port(&host, port);
        match ask(
            target,
            &host,
            port,
            &sentinels.service,
            tls.clone(),
            timeout,
        )
        .await
        {
            Ok((primary_host, primary_port)) => {
                order[..=i].rotate_right(1);
                return Ok(Primary {
                    host: primary_host,
                    port: primary_port,
                    sentinel: shown,
                });
            }
            Err(e) => why.push(format!("{shown}: {e}")),
        }
    }
    Err(Unavailable::NoPrimary {
        service: sentinels.service.clone(),
        why: why.join("; "),
    })
}

/// One sentinel's answer: the primary's `(host, port)`, or why not.
async fn ask(
    target: &RedisTarget,
    host: &str,
    port: u16,
    service: &str,
    tls: Option<Arc<ClientConfig>>,
    timeout: Duration,
) -> Result<(String, u16), Unavailable> {
    let sentinel = target.sentinel_at(host, port);
    let (mut stream, mut buf) = open(&sentinel, tls, timeout).await?;
    let reply = exchange_on(
        &mut stream,
        &mut buf,
        Some(&[b"SENTINEL", b"get-master-addr-by-name", service.as_bytes()]),
        Some(timeout),
        |b| decode_strings(b, false),
    )
    .await?;
    match reply {
        Strings::List(items) if items.len() == 2 => {
            let host = String::from_utf8_lossy(&items[0]).into_owned();
            let port = std::str::from_utf8(&items[1])
                .ok()
                .and_then(|p| p.parse::<u16>().ok())
                .filter(|&p| p != 0)
                .ok_or_else(|| Unavailable::Protocol("a port that is no port".into()))?;
            Ok((host, port))
        }
        Strings::Nil => Err(Unavailable::Protocol(format!(
            "does not monitor `{service}`"
        ))),
        Strings::Error(e) => Err(Unavailable::Protocol(e)),
        Strings::List(_) => Err(Unavailable::Protocol(
            "answered with no host and port".into(),
        )),
    }
}

/// Dials a sentinel and logs in when it wants a password.
async fn open(
    sentinel: &RedisTarget,
    tls: Option<Arc<ClientConfig>>,
    timeout: Duration,
) -> Result<(transport::Stream, BytesMut), Unavailable> {
    let mut stream = transport::open(sentinel, tls, timeout).await?;
    let mut buf = BytesMut::with_capacity(1024);
    if let Some(password) = &sentinel.password {
        let mut auth: Vec<&[u8]> = vec![b"AUTH"];
        if let Some(user) = &sentinel.user {
            auth.push(user.as_bytes());
        }
        auth.push(password.expose().as_bytes());
        let reply = exchange_on(&mut stream, &mut buf, Some(&auth), Some(timeout), |b| {
            decode_strings(b, false)
        })
        .await?;
        if let Strings::Error(e) = reply {
            return Err(Unavailable::AuthFailed(super::scrub(e, Some(password))));
        }
    }
    Ok((stream, buf))
}

/// Step 3: `ROLE` on a connection just logged in; `Ok` when it is a master.
pub async fn check_role(
    stream: &mut transport::Stream,
    buf: &mut BytesMut,
    target: &RedisTarget,
    timeout: Duration,
) -> Result<(), Unavailable> {
    // RESP3 decoding reads the RESP2 reply too; ROLE's has no nulls.
    let reply = exchange_on(stream, buf, Some(&[b"ROLE"]), Some(timeout), |b| {
        decode_strings(b, true)
    })
    .await?;
    let role = match reply {
        Strings::List(items) => items
            .first()
            .map(|r| String::from_utf8_lossy(r).into_owned())
            .unwrap_or_default(),
        Strings::Nil => String::new(),
        Strings::Error(e) => e,
    };
    if role == "master" {
        return Ok(());
    }
    Err(Unavailable::NotPrimary {
        addr: target.to_string(),
        role: format!("ROLE says `{role}`"),
    })
}

/// Holds a `+switch-master` subscription on the first sentinel of `order` that takes it, and
/// returns when the sentinels move the primary of our service away from `primary`. Never
/// returns otherwise: a lost sentinel is redialed (the next one) after `retry`.
pub async fn watch(
    target: &RedisTarget,
    order: &[(String, u16)],
    primary: &Primary,
    tls: Option<Arc<ClientConfig>>,
    timeout: Duration,
    retry: Duration,
) -> Unavailable {
    let service = &target
        .sentinel
        .as_ref()
        .expect("watch is called in sentinel mode")
        .service;
    let mut next = 0;
    loop {
        let (host, port) = &order[next % order.len()];
        next += 1;
        match subscribe(target, host, *port, tls.clone(), timeout, service, primary).await {
            Ok(to) => {
                return Unavailable::Switched {
                    service: service.clone(),
                    to,
                }
            }
            Err(e) => {
                eprintln!(
                    "ringway: redis sentinel {}: +switch-master subscription lost: {e}",
                    host_port(host, *port)
                );
            }
        }
        monoio::time::sleep(retry).await;
    }
}

/// One subscription: `Ok` with the new primary's address when a switch for `service` away
/// from `primary` arrives; `Err` when the sentinel is lost.
async fn subscribe(
    target: &RedisTarget,
    host: &str,
    port: u16,
    tls: Option<Arc<ClientConfig>>,
    timeout: Duration,
    service: &str,
    primary: &Primary,
) -> Result<String, Unavailable> {
    let sentinel = target.sentinel_at(host, port);
    let (mut stream, mut buf) = open(&sentinel, tls, timeout).await?;
    let mut parts: Option<&[&[u8]]> = Some(&[b"SUBSCRIBE", b"+switch-master"]);
    loop {
        // No timeout: the subscription is silent until a failover.
        let message = exchange_on(&mut stream, &mut buf, parts.take(), None, |b| {
            decode_strings(b, false)
        })
        .await?;
        let items = match message {
            Strings::List(items) => items,
            Strings::Error(e) => return Err(Unavailable::Protocol(e)),
            Strings::Nil => continue,
        };
        // ["message", "+switch-master", "<name> <old ip> <old port> <new ip> <new port>"]
        if items.len() != 3 || &items[0][..] != b"message" {
            continue;
        }
        if let Some(to) = switched(&String::from_utf8_lossy(&items[2]), service, primary) {
            return Ok(to);
        }
    }
}

/// The new primary a `+switch-master` payload names, when it is for `service` and not the
/// primary already in use.
fn switched(payload: &str, service: &str, primary: &Primary) -> Option<String> {
    let fields: Vec<&str> = payload.split(' ').collect();
    let [name, _old_host, _old_port, host, port] = fields[..] else {
        return None;
    };
    let port: u16 = port.parse().ok()?;
    (name == service && (host != primary.host || port != primary.port))
        .then(|| host_port(host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switch_messages_for_us_and_elsewhere() {
        let primary = Primary {
            host: "10.0.0.1".into(),
            port: 6379,
            sentinel: "s:26379".into(),
        };
        assert_eq!(
            switched("mymaster 10.0.0.1 6379 10.0.0.2 6380", "mymaster", &primary),
            Some("10.0.0.2:6380".into())
        );
        // Another service, or a switch to where we already are: nothing to do.
        assert_eq!(
            switched("other 10.0.0.1 6379 10.0.0.2 6380", "mymaster", &primary),
            None
        );
        assert_eq!(
            switched("mymaster 10.0.0.9 1 10.0.0.1 6379", "mymaster", &primary),
            None
        );
        assert_eq!(switched("garbage", "mymaster", &primary), None);
        assert_eq!(
            switched("mymaster a 1 ::1 6380", "mymaster", &primary),
            Some("[::1]:6380".into())
        );
    }
}
