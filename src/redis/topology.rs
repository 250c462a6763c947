//! Redis Cluster's slot map as one node tells it: which primary owns which slot ranges.
//!
//! Owns: asking one node `CLUSTER SHARDS` (Redis 7+), falling back to `CLUSTER SLOTS` (Redis
//! 3+, deprecated in 7) when the node does not know the first, and reading either reply into
//! [`Range`]s. Dials through [`super::open_logged_in`] on a connection of its own, used once
//! and closed; keeping the map and acting on it is [`super::cluster`]'s.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use redis_protocol::resp2::decode::decode_bytes_mut;
use redis_protocol::resp2::types::BytesFrame;
use rustls::ClientConfig;

use super::{exchange_on, open_logged_in, RedisTarget, Unavailable};

/// Slots `first..=last` belong to the primary at `host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub first: u16,
    pub last: u16,
    /// IPv6 without brackets.
    pub host: String,
    pub port: u16,
}

/// The slot ranges `node` (a target at one node) says the primaries own.
pub async fn fetch(
    node: &RedisTarget,
    tls: Option<Arc<ClientConfig>>,
    timeout: Duration,
) -> Result<Vec<Range>, Unavailable> {
    let (mut stream, mut buf) = open_logged_in(node, tls, timeout).await?;
    let shards = &[&b"CLUSTER"[..], b"SHARDS"];
    let reply = exchange_on(&mut stream, &mut buf, Some(shards), Some(timeout), decode).await?;
    let ranges = match reply {
        // `ERR unknown subcommand 'SHARDS'` before Redis 7.
        BytesFrame::Error(e) if e.contains("nknown") => match exchange_on(
            &mut stream,
            &mut buf,
            Some(&[b"CLUSTER", b"SLOTS"]),
            Some(timeout),
            decode,
        )
        .await?
        {
            BytesFrame::Error(e) => return Err(Unavailable::Protocol(e.to_string())),
            reply => from_slots(reply, &node.host),
        },
        BytesFrame::Error(e) => return Err(Unavailable::Protocol(e.to_string())),
        reply => from_shards(reply, &node.host),
    };
    ranges.map_err(|e| Unavailable::Protocol(format!("cluster slot map from {node}: {e}")))
}

/// One whole RESP2 frame off `buf` (the connection is RESP2: `open_logged_in` asks no RESP3).
pub fn decode(buf: &mut BytesMut) -> Result<Option<BytesFrame>, String> {
    match decode_bytes_mut(buf) {
        Ok(found) => Ok(found.map(|(frame, _, _)| frame)),
        Err(e) => Err(format!("bad RESP from Redis: {e:?}")),
    }
}

fn text(frame: &BytesFrame) -> Option<&str> {
    match frame {
        BytesFrame::BulkString(b) | BytesFrame::SimpleString(b) => std::str::from_utf8(b).ok(),
        _ => None,
    }
}

fn number(frame: &BytesFrame) -> Option<i64> {
    match frame {
        BytesFrame::Integer(i) => Some(*i),
        other => text(other)?.parse().ok(),
    }
}

fn slot(frame: &BytesFrame) -> Result<u16, String> {
    number(frame)
        .and_then(|n| u16::try_from(n).ok())
        .filter(|&n| (n as usize) < super::slot::SLOTS)
        .ok_or_else(|| "a slot that is no slot".to_string())
}

/// A host as a node reports it; empty (or `?`) means the node asked.
fn host_or(reported: &str, asked: &str) -> String {
    match reported {
        "" | "?" => asked.to_string(),
        host => host.to_string(),
    }
}

/// `CLUSTER SHARDS`: per shard a map (a flat array in RESP2) with `slots`, a flat array of
/// range bounds, and `nodes`, each a map with `ip`, `endpoint`, `port`, `role` and `health`.
/// The shard's primary is the node whose role is `master` and whose health is not `fail`.
pub fn from_shards(reply: BytesFrame, asked: &str) -> Result<Vec<Range>, String> {
    let BytesFrame::Array(shards) = reply else {
        return Err("CLUSTER SHARDS did not answer an array".into());
    };
    let mut ranges = Vec::new();
    for shard in &shards {
        let fields = map(shard)?;
        let (Some(BytesFrame::Array(slots)), Some(BytesFrame::Array(nodes))) =
            (field(&fields, "slots"), field(&fields, "nodes"))
        else {
            return Err("a shard without slots or nodes".into());
        };
        let primary = nodes.iter().find_map(|node| {
            let node = map(node).ok()?;
            let role = field(&node, "role").and_then(text)?;
            let health = field(&node, "health").and_then(text).unwrap_or("online");
            if role != "master" || health == "fail" {
                return None;
            }
            let endpoint = field(&node, "endpoint").and_then(text).unwrap_or("");
            let host = match endpoint {
                "" | "?" => field(&node, "ip").and_then(text).unwrap_or(""),
                endpoint => endpoint,
            };
            let port = field(&node, "port").and_then(number)?;
            Some((host_or(host, asked), u16::try_from(port).ok()?))
        });
        let Some((host, port)) = primary else {
            // A shard with no healthy primary (a failover under way): its slots stay unowned
            // until the next refresh, and their lookups fail fast.
            continue;
        };
        for pair in slots.chunks(2) {
            let [first, last] = pair else {
                return Err("an odd number of slot bounds".into());
            };
            ranges.push(Range {
                first: slot(first)?,
                last: slot(last)?,
                host: host.clone(),
                port,
            });
        }
    }
    Ok(ranges)
}

/// `CLUSTER SLOTS`: per range `[first, last, [host, port, id, ...] (the primary), replicas...]`.
pub fn from_slots(reply: BytesFrame, asked: &str) -> Result<Vec<Range>, String> {
    let BytesFrame::Array(entries) = reply else {
        return Err("CLUSTER SLOTS did not answer an array".into());
    };
    let mut ranges = Vec::new();
    for entry in &entries {
        let BytesFrame::Array(items) = entry else {
            return Err("a slot range that is not an array".into());
        };
        let [first, last, BytesFrame::Array(primary), ..] = &items[..] else {
            return Err("a slot range without a primary".into());
        };
        let host = primary.first().and_then(text).unwrap_or("");
        let port = primary
            .get(1)
            .and_then(number)
            .and_then(|p| u16::try_from(p).ok())
            .ok_or("a primary without a port")?;
        ranges.push(Range {
            first: slot(first)?,
            last: slot(last)?,
            host: host_or(host, asked),
            port,
        });
    }
    Ok(ranges)
}

/// A RESP2 map: a flat array of name, value, name, value...
fn map(frame: &BytesFrame) -> Result<Vec<(&str, &BytesFrame)>, String> {
    let BytesFrame::Array(items) = frame else {
        return Err("a map that is not an array".into());
    };
    Ok(items
        .chunks(2)
        .filter_map(|pair| match pair {
            [name, value] => Some((text(name)?, value)),
            _ => None,
        })
        .collect())
}

fn field<'a>(fields: &[(&str, &'a BytesFrame)], name: &str) -> Option<&'a BytesFrame> {
    fields.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn bulk(s: &str) -> BytesFrame {
        BytesFrame::BulkString(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn node(ip: &str, port: i64, role: &str, health: &str) -> BytesFrame {
        BytesFrame::Array(vec![
            bulk("id"),
            bulk("abc"),
            bulk("port"),
            BytesFrame::Integer(port),
            bulk("ip"),
            bulk(ip),
            bulk("endpoint"),
            bulk(ip),
            bulk("role"),
            bulk(role),
            bulk("health"),
            bulk(health),
        ])
    }

    #[test]
    fn shards_name_the_healthy_primary() {
        let reply = BytesFrame::Array(vec![
            BytesFrame::Array(vec![
                bulk("slots"),
                BytesFrame::Array(vec![
                    BytesFrame::Integer(0),
                    BytesFrame::Integer(99),
                    BytesFrame::Integer(200),
                    BytesFrame::Integer(300),
                ]),
                bulk("nodes"),
                BytesFrame::Array(vec![
                    node("10.0.0.1", 7000, "master", "fail"),
                    node("10.0.0.2", 7001, "master", "online"),
                    node("10.0.0.3", 7002, "replica", "online"),
                ]),
            ]),
            BytesFrame::Array(vec![
                bulk("slots"),
                BytesFrame::Array(vec![]),
                bulk("nodes"),
                BytesFrame::Array(vec![node("?", 7003, "master", "online")]),
            ]),
        ]);
        let ranges = from_shards(reply, "seed").unwrap();
        assert_eq!(
            ranges,
            vec![
                Range {
                    first: 0,
                    last: 99,
                    host: "10.0.0.2".into(),
                    port: 7001
                },
                Range {
                    first: 200,
                    last: 300,
                    host: "10.0.0.2".into(),
                    port: 7001
                },
            ]
        );
    }

    #[test]
    fn slots_name_the_first_node() {
        let reply = BytesFrame::Array(vec![BytesFrame::Array(vec![
            BytesFrame::Integer(5461),
            BytesFrame::Integer(10922),
            BytesFrame::Array(vec![bulk(""), BytesFrame::Integer(7001), bulk("id")]),
            BytesFrame::Array(vec![bulk("10.0.0.9"), BytesFrame::Integer(7004)]),
        ])]);
        assert_eq!(
            from_slots(reply, "seed").unwrap(),
            vec![Range {
                first: 5461,
                last: 10922,
                host: "seed".into(),
                port: 7001
            }]
        );
        assert!(from_slots(BytesFrame::Integer(1), "seed").is_err());
    }
}
