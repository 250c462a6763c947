//! A real Redis Cluster for one test: [`RedisCluster`] owns its `redis-server` processes
//! (each a [`RedisServer`] started with `--cluster-enabled yes`, its `nodes.conf` a
//! [`TempPath`], its files in the temp dir), joined by `redis-cli --cluster create`, and the
//! few cluster commands tests need: writing a key to its owner (following `MOVED`), which
//! node owns a slot, moving a slot by hand (`CLUSTER SETSLOT ... IMPORTING / MIGRATING`,
//! `MIGRATE`, `SETSLOT ... NODE`) one step at a time, so a test can run calls between the
//! steps and see `ASK` and then `MOVED`.
//!
//! A node's cluster bus listens on its port + 10000; nodes take ports from 10000..22000 so
//! that both stay below the ephemeral range (32768..), and start only where both are free.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::gateway::TempPath;
use crate::redis::{RedisOptions, RedisServer};
use crate::resp::{self, Reply};

/// A running cluster: `primaries` primaries with `replicas` replicas each.
#[derive(Debug)]
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    _confs: Vec<TempPath>,
}

impl RedisCluster {
    /// Starts the nodes, creates the cluster and waits until every node says
    /// `cluster_state:ok` and agrees on who owns all 16384 slots. `node_timeout_ms`:
    /// `--cluster-node-timeout` (a failover takes about twice that).
    pub fn start(primaries: usize, replicas: usize, node_timeout_ms: u64) -> RedisCluster {
        let count = primaries * (1 + replicas);
        let mut nodes = Vec::with_capacity(count);
        let mut confs = Vec::with_capacity(count);
        for _ in 0..count {
            let conf = TempPath::new("nodes.conf");
            let timeout = node_timeout_ms.to_string();
            nodes.push(RedisServer::start_with(
                RedisOptions::default().cluster_bus().args(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    conf.as_str(),
                    "--cluster-node-timeout",
                    &timeout,
                    // Replicas sync at once, not after the default 5 s wait for more
                    // replicas to share the transfer: a replica that never synced has no
                    // data to serve and will not stand for election.
                    "--repl-diskless-sync-delay",
                    "0",
                ]),
            ));
            confs.push(conf);
        }
        let addrs: Vec<String> = nodes.iter().map(|n| n.addr().to_string()).collect();
        let output =
            Command::new(std::env::var("REDIS_CLI").unwrap_or_else(|_| "redis-cli".to_owned()))
                .arg("--cluster")
                .arg("create")
                .args(&addrs)
                .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
                .stdin(Stdio::null())
                .output()
                .expect("run redis-cli --cluster create");
        assert!(
            output.status.success(),
            "redis-cli --cluster create: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let cluster = RedisCluster {
            nodes,
            _confs: confs,
        };
        cluster.wait_ok(Duration::from_secs(30));
        cluster
    }

    /// Seed list for `redis+cluster://`.
    pub fn url(&self) -> String {
        let addrs: Vec<String> = self.nodes.iter().map(|n| n.addr().to_string()).collect();
        format!("redis+cluster://{}", addrs.join(","))
    }

    /// Waits until every running node says `cluster_state:ok` and names the same primary for
    /// slot 0, 5461 and 16383, and every replica's link to its primary is up.
    pub fn wait_ok(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let running: Vec<&RedisServer> = self.nodes.iter().filter(|n| n.is_running()).collect();
            let ok = running.iter().all(|n| {
                matches!(n.command(&[b"CLUSTER", b"INFO"]),
                    Reply::Bulk(Some(info)) if String::from_utf8_lossy(&info).contains("cluster_state:ok"))
            });
            let agree = [0u16, 5461, 16383].iter().all(|&slot| {
                let owners: Vec<Option<SocketAddr>> = running
                    .iter()
                    .map(|n| owner_said_by(n.addr(), slot))
                    .collect();
                owners[0].is_some() && owners.iter().all(|o| *o == owners[0])
            });
            let synced = running.iter().all(|n| {
                matches!(n.command(&[b"INFO", b"replication"]),
                Reply::Bulk(Some(info)) if {
                    let info = String::from_utf8_lossy(&info);
                    info.contains("role:master") || info.contains("master_link_status:up")
                })
            });
            if ok && agree && synced {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not settle within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A running node.
    fn any(&self) -> SocketAddr {
        self.nodes
            .iter()
            .find(|n| n.is_running())
            .expect("a node runs")
            .addr()
    }

    /// The slot of `key`, as the cluster computes it.
    pub fn keyslot(&self, key: &str) -> u16 {
        match command(self.any(), &[b"CLUSTER", b"KEYSLOT", key.as_bytes()]) {
            Reply::Integer(slot) => slot as u16,
            other => panic!("CLUSTER KEYSLOT {key}: {other:?}"),
        }
    }

    /// The primary owning `slot`, as a running node says.
    pub fn owner(&self, slot: u16) -> SocketAddr {
        owner_said_by(self.any(), slot).unwrap_or_else(|| panic!("no owner for slot {slot}"))
    }

    /// The index in `nodes` of the server at `addr`.
    pub fn index(&self, addr: SocketAddr) -> usize {
        self.nodes
            .iter()
            .position(|n| n.addr() == addr)
            .expect("a node of the cluster")
    }

    /// `SET key value` on the key's owner, following `MOVED`.
    pub fn set(&self, key: &str, value: &str) {
        let mut at = self.any();
        for _ in 0..5 {
            match command(at, &[b"SET", key.as_bytes(), value.as_bytes()]) {
                Reply::Status(s) if s == "OK" => return,
                Reply::Error(e) if e.starts_with("MOVED") => {
                    at = e
                        .split(' ')
                        .nth(2)
                        .and_then(|a| a.parse().ok())
                        .expect("MOVED names an address");
                }
                other => panic!("SET {key}: {other:?}"),
            }
        }
        panic!("SET {key}: too many redirects");
    }

    /// Step 1 of moving `slot` from `from` to `to`: `to` imports it, `from` migrates it. Keys
    /// still on `from` are served there; the others get `-ASK`.
    pub fn begin_migration(&self, slot: u16, from: SocketAddr, to: SocketAddr) {
        let slot = slot.to_string();
        let (from_id, to_id) = (id(from), id(to));
        ok(command(
            to,
            &[
                b"CLUSTER",
                b"SETSLOT",
                slot.as_bytes(),
                b"IMPORTING",
                from_id.as_bytes(),
            ],
        ));
        ok(command(
            from,
            &[
                b"CLUSTER",
                b"SETSLOT",
                slot.as_bytes(),
                b"MIGRATING",
                to_id.as_bytes(),
            ],
        ));
    }

    /// Step 2: `MIGRATE` these keys from `from` to `to`.
    pub fn migrate_keys(&self, from: SocketAddr, to: SocketAddr, keys: &[&str]) {
        let host = to.ip().to_string();
        let port = to.port().to_string();
        let mut args: Vec<&[u8]> = vec![
            b"MIGRATE",
            host.as_bytes(),
            port.as_bytes(),
            b"",
            b"0",
            b"5000",
            b"KEYS",
        ];
        args.extend(keys.iter().map(|k| k.as_bytes()));
        match command(from, &args) {
            Reply::Status(_) => {}
            other => panic!("MIGRATE {keys:?}: {other:?}"),
        }
    }

    /// Step 3: every primary is told `slot` is `to`'s.
    pub fn finish_migration(&self, slot: u16, to: SocketAddr) {
        let slot = slot.to_string();
        let to_id = id(to);
        // The new owner first, then the rest (the cluster spec's order).
        let mut order = vec![to];
        order.extend(
            self.nodes
                .iter()
                .filter(|n| n.is_running() && n.addr() != to)
                .map(|n| n.addr()),
        );
        for node in order {
            let reply = command(
                node,
                &[
                    b"CLUSTER",
                    b"SETSLOT",
                    slot.as_bytes(),
                    b"NODE",
                    to_id.as_bytes(),
                ],
            );
            // A replica refuses SETSLOT; it learns from its primary.
            if let Reply::Error(e) = &reply {
                assert!(
                    e.contains("replica") || e.contains("slave") || e.contains("masters"),
                    "SETSLOT NODE: {e}"
                );
            }
        }
    }

    /// Whether the node at `addr` is a primary now (`ROLE`).
    pub fn is_primary(&self, addr: SocketAddr) -> bool {
        matches!(
            resp::command_after(addr, &[], &[b"ROLE"]),
            Ok(Reply::Array(Some(items))) if matches!(items.first(), Some(Reply::Bulk(Some(r))) if r == b"master")
        )
    }

    /// The replica of the primary at `addr` (`CLUSTER REPLICAS`).
    pub fn replica_of(&self, primary: SocketAddr) -> SocketAddr {
        let my_id = id(primary);
        let Reply::Array(Some(lines)) =
            command(primary, &[b"CLUSTER", b"REPLICAS", my_id.as_bytes()])
        else {
            panic!("CLUSTER REPLICAS");
        };
        let line = match lines.first() {
            Some(Reply::Bulk(Some(line))) => String::from_utf8_lossy(line).into_owned(),
            other => panic!("no replica of {primary}: {other:?}"),
        };
        // `<id> <ip:port@cport> ...`
        let addr = line.split(' ').nth(1).expect("an address");
        addr.split('@').next().unwrap().parse().expect("ip:port")
    }
}

fn command(addr: SocketAddr, args: &[&[u8]]) -> Reply {
    resp::command_after(addr, &[], args).unwrap_or_else(|e| panic!("redis at {addr}: {e}"))
}

fn ok(reply: Reply) {
    assert!(matches!(reply, Reply::Status(_)), "{reply:?}");
}

fn id(addr: SocketAddr) -> String {
    match command(addr, &[b"CLUSTER", b"MYID"]) {
        Reply::Bulk(Some(id)) => String::from_utf8(id).expect("an id"),
        other => panic!("CLUSTER MYID: {other:?}"),
    }
}

/// The primary owning `slot` according to the node at `node` (`CLUSTER SLOTS`).
fn owner_said_by(node: SocketAddr, slot: u16) -> Option<SocketAddr> {
    let Ok(Reply::Array(Some(ranges))) = resp::command_after(node, &[], &[b"CLUSTER", b"SLOTS"])
    else {
        return None;
    };
    for range in ranges {
        let Reply::Array(Some(items)) = range else {
            continue;
        };
        let (Some(Reply::Integer(first)), Some(Reply::Integer(last)), Some(Reply::Array(Some(p)))) =
            (items.first(), items.get(1), items.get(2))
        else {
            continue;
        };
        if (*first..=*last).contains(&i64::from(slot)) {
            let (Some(Reply::Bulk(Some(ip))), Some(Reply::Integer(port))) = (p.first(), p.get(1))
            else {
                return None;
            };
            return format!("{}:{port}", String::from_utf8_lossy(ip))
                .parse()
                .ok();
        }
    }
    None
}
