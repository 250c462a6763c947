//! Redis Cluster: the shard's slot map, a pipelined [`Connection`] per primary, and following
//! the cluster's redirects.
//!
//! Owns: which primary owns which of the 16384 slots (as far as this shard knows), the
//! connections to those primaries, the redirects a lookup follows, and keeping the map fresh.
//! Each connection is an ordinary [`Connection`] (dial, login, tracking, pipelining, redial
//! with backoff, stall watch — all of [`super`]); asking a node for the map is [`topology`]'s,
//! the slot arithmetic [`slot`]'s. Nothing here is shared between shards: each keeps its own
//! map and connections, as each keeps its own connection in the other modes.
//!
//! # A lookup
//!
//! 1. The key's slot (CRC16 of `<prefix><key>`, or of its `{hashtag}`) names the owner in the
//!    map; the GET is pipelined on the owner's connection and waits on that connection (RESP
//!    replies come back in order per connection). No owner: fail at once (UNAVAILABLE).
//!    In steady state that is the whole cost: one pipelined GET, as in single mode.
//! 2. `-MOVED <slot> <host:port>`: the slot is that node's now. The map is updated for that
//!    slot, the route cache flushed, a full refresh scheduled, and the GET sent again to the
//!    new owner (a connection made on demand when the node is new to this shard).
//! 3. `-ASK <slot> <host:port>`: this key is being migrated; `ASKING` and the GET go to that
//!    node back to back, the map unchanged.
//! 4. At most [`MAX_REDIRECTS`] redirects; all of it within the caller's lookup timeout.
//! 5. The connection failing (down, lost, stalled): the lookup fails (UNAVAILABLE) and a
//!    refresh is scheduled — during a failover the map is asked again until it names the
//!    promoted replica.
//!
//! # The map's upkeep
//!
//! One task per shard ([`upkeep`]) asks for the whole map at start, every [`REFRESH_PERIOD`],
//! and — at most once per [`REFRESH_MIN_GAP`] — when a lookup saw a redirect or a failed
//! connection, or while the map is not usable (a slot without an owner, an owner's
//! connection down). It asks the primaries it knows, then the seed nodes, until one answers. The
//! new map replaces the old; a primary that owns no slot any more has its connection closed;
//! one new to the map gets a connection at once (so `/readyz` can say whether every owner is
//! reachable, and the first lookup to it does not wait for a connect).
//!
//! # The route cache
//!
//! Each connection turns client tracking on when the cache is on, so a changed key's
//! invalidation comes from the node that holds it. The bound: the whole shard cache is
//! flushed ([`Push::Reset`]) whenever any node's connection is made or lost and whenever the
//! map changes owner of any slot (a refresh that moves slots, a MOVED) — simpler than
//! tracking which cached key lives on which node, and topology changes are rare. So an entry
//! can outlive its key's move only for the moment between the move and the first of: the
//! source's invalidation (MIGRATE deletes the key there), a MOVED seen by any lookup of this
//! shard, or the next refresh ([`REFRESH_PERIOD`]); never past the cache TTL.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::slot::{self, Redirect, SLOTS};
use super::{tls, topology, Connection, Node, Push, PushHandler, RedisTarget, Reply, Unavailable};
use crate::config::RedisConfig;
use crate::metrics::{NodeMetrics, ShardMetrics};
use crate::rng::Rng;

/// Redirects one lookup may follow. A slot migration redirects once (ASK) or twice (MOVED
/// to a node that then says ASK); more is a map in flux, better answered UNAVAILABLE.
pub const MAX_REDIRECTS: usize = 3;
/// How often the map is asked for with nothing amiss: catches slots moved by a resharding
/// that no lookup of this shard has run into yet (and so bounds a cached route's life past
/// such a move, with the cache on).
pub const REFRESH_PERIOD: Duration = Duration::from_secs(30);
/// Refreshes asked for by lookups (redirects, failed connections) run at most this often:
/// during a failover every lookup fails and asks; one new connection per shard per 250 ms is
/// nothing to a cluster, and a promotion is seen within it.
pub const REFRESH_MIN_GAP: Duration = Duration::from_millis(250);
/// How often the upkeep task looks whether a refresh is due, and publishes readiness.
const TICK: Duration = Duration::from_millis(50);
/// No owner, in [`State::owners`].
const NONE: u16 = u16::MAX;

/// The shard's cluster: map and connections. Single-threaded; the `RefCell` is borrowed only
/// between awaits.
pub struct Cluster {
    state: RefCell<State>,
    config: RedisConfig,
    rng: Rc<Rng>,
    metrics: Arc<ShardMetrics>,
    pushes: Option<PushHandler>,
    /// A lookup saw a redirect or a failed connection: refresh soon.
    refresh_wanted: Cell<bool>,
    /// The first refresh has finished, answered or not (for startup).
    first_refresh_done: Cell<bool>,
}

struct State {
    /// The owner of each slot: an index into `nodes`, or [`NONE`].
    owners: Vec<u16>,
    /// Every node with a connection; all own slots but briefly (an ASK target, or a MOVED
    /// owner, until the next refresh).
    nodes: Vec<NodeLink>,
    /// Why the last refresh failed, while it does.
    refresh_error: Option<String>,
}

/// A node and this shard's connection to it.
struct NodeLink {
    host: String,
    port: u16,
    connection: Connection,
    metrics: Arc<NodeMetrics>,
}

impl Cluster {
    /// Starts the map's upkeep; connections follow the first map.
    pub fn start(
        config: &RedisConfig,
        rng: Rc<Rng>,
        metrics: Arc<ShardMetrics>,
        pushes: Option<PushHandler>,
    ) -> Rc<Cluster> {
        let cluster = Rc::new(Cluster {
            state: RefCell::new(State {
                owners: vec![NONE; SLOTS],
                nodes: Vec::new(),
                refresh_error: None,
            }),
            config: config.clone(),
            rng,
            metrics,
            pushes,
            refresh_wanted: Cell::new(false),
            first_refresh_done: Cell::new(false),
        });
        // Weak: the task ends when the last handle goes.
        monoio::spawn(upkeep(Rc::downgrade(&cluster)));
        cluster
    }

    /// `GET <prefix><key>` from the owner of its slot, following redirects (module doc).
    pub async fn get(
        &self,
        prefix: &[u8],
        key: &[u8],
        deadline: Instant,
    ) -> Result<Reply, Unavailable> {
        let slot = slot::of(prefix, key);
        // After ASK: the node to ask, once.
        let mut asking: Option<(Connection, Arc<NodeMetrics>, String)> = None;
        let mut last = String::new();
        for _ in 0..=MAX_REDIRECTS {
            let (connection, node, host, ask) = match asking.take() {
                Some((connection, node, host)) => (connection, node, host, true),
                None => {
                    let state = self.state.borrow();
                    let Some(link) = state.nodes.get(state.owners[slot as usize] as usize) else {
                        self.refresh_wanted.set(true);
                        return Err(Unavailable::NoSlotOwner {
                            slot,
                            why: state.refresh_error.clone(),
                        });
                    };
                    let found = link.connection.clone();
                    (found, link.metrics.clone(), link.host.clone(), false)
                }
            };
            // A connection made just now for a redirect: give its first attempt the chance to
            // finish (bounded by the caller's lookup timeout) rather than fail at once.
            while !connection.first_attempt_done() {
                monoio::time::sleep(Duration::from_millis(1)).await;
            }
            node.lookups.inc();
            let reply = match ask {
                true => connection.get_asking(prefix, key, deadline).await,
                false => connection.get(prefix, key, deadline).await,
            };
            let redirect = match &reply {
                Ok(Reply::Error(e)) => slot::redirect(e).map(|r| (r, e.clone())),
                _ => None,
            };
            if let Ok(Reply::Error(e)) = &reply {
                if is_busy(e) {
                    node.errors.inc();
                    self.refresh_wanted.set(true);
                    return Err(Unavailable::ClusterBusy(e.clone()));
                }
            }
            match redirect {
                None => {
                    if reply.is_err() {
                        node.errors.inc();
                        self.refresh_wanted.set(true);
                    }
                    return reply;
                }
                Some((
                    Redirect::Moved {
                        slot: moved,
                        host: to,
                        port,
                    },
                    e,
                )) => {
                    node.moved.inc();
                    let to = if to.is_empty() { host } else { to };
                    self.moved(moved, &to, port);
                    last = e;
                }
                Some((Redirect::Ask { host: to, port, .. }, e)) => {
                    node.ask.inc();
                    let to = if to.is_empty() { host } else { to };
                    let mut state = self.state.borrow_mut();
                    let i = self.link(&mut state, &to, port);
                    let link = &state.nodes[i];
                    asking = Some((link.connection.clone(), link.metrics.clone(), to));
                    last = e;
                }
            }
        }
        Err(Unavailable::TooManyRedirects { slot, last })
    }

    /// Every slot has an owner and every owner's connection is up.
    pub fn is_usable(&self) -> bool {
        let state = self.state.borrow();
        state.owners.iter().all(|&o| o != NONE)
            && state
                .nodes
                .iter()
                .all(|n| n.metrics.slots.get() == 0 || n.connection.is_connected())
    }

    /// The first refresh has finished, and the first connection attempt to each node of its
    /// map.
    pub fn first_attempt_done(&self) -> bool {
        self.first_refresh_done.get()
            && self
                .state
                .borrow()
                .nodes
                .iter()
                .all(|n| n.connection.first_attempt_done())
    }

    /// After `-MOVED`: `slot` is `host:port`'s now; flush the cache, refresh soon.
    fn moved(&self, slot: u16, host: &str, port: u16) {
        let mut state = self.state.borrow_mut();
        let i = self.link(&mut state, host, port);
        let old = state.owners[slot as usize];
        if old != i as u16 {
            if let Some(old) = state.nodes.get(old as usize) {
                old.metrics.slots.dec();
            } else {
                self.metrics.redis_cluster_slots.inc();
            }
            state.nodes[i].metrics.slots.inc();
            state.owners[slot as usize] = i as u16;
            drop(state);
            self.reset_cache();
        }
        self.refresh_wanted.set(true);
    }

    /// The index of the node at `host:port`, its connection started if it is new.
    fn link(&self, state: &mut State, host: &str, port: u16) -> usize {
        if let Some(i) = state
            .nodes
            .iter()
            .position(|n| n.host == host && n.port == port)
        {
            return i;
        }
        let metrics = Arc::new(NodeMetrics::new(&super::sentinel::host_port(host, port)));
        match self.metrics.redis_nodes.lock() {
            Ok(mut nodes) => nodes.push(metrics.clone()),
            Err(poisoned) => poisoned.into_inner().push(metrics.clone()),
        }
        let connection = Connection::start(
            &self.config,
            self.rng.clone(),
            self.metrics.clone(),
            self.pushes.clone(),
            Some(Node {
                host: host.to_string(),
                port,
                metrics: metrics.clone(),
            }),
        );
        state.nodes.push(NodeLink {
            host: host.to_string(),
            port,
            connection,
            metrics,
        });
        state.nodes.len() - 1
    }

    /// Replaces the map with `ranges`: connections for new owners, none any more for nodes
    /// that own nothing, the cache flushed if any slot changed owner.
    fn install(&self, ranges: &[topology::Range]) {
        let mut state = self.state.borrow_mut();
        let before: Vec<Option<(String, u16)>> = state
            .owners
            .iter()
            .map(|&o| {
                state
                    .nodes
                    .get(o as usize)
                    .map(|n| (n.host.clone(), n.port))
            })
            .collect();
        let mut owners = vec![NONE; SLOTS];
        for range in ranges {
            let i = self.link(&mut state, &range.host, range.port) as u16;
            for slot in range.first..=range.last.min(SLOTS as u16 - 1) {
                owners[slot as usize] = i;
            }
        }
        // Drop the nodes that own nothing now; renumber the rest.
        let mut owned = vec![0i64; state.nodes.len()];
        for &o in &owners {
            if o != NONE {
                owned[o as usize] += 1;
            }
        }
        let mut renumber = vec![NONE; state.nodes.len()];
        let mut kept = Vec::with_capacity(state.nodes.len());
        for (i, link) in std::mem::take(&mut state.nodes).into_iter().enumerate() {
            if owned[i] == 0 {
                eprintln!(
                    "ringway: redis cluster node {} owns no slots now; closing its connection",
                    link.metrics.node
                );
                link.connection.stop();
                match self.metrics.redis_nodes.lock() {
                    Ok(mut nodes) => nodes.retain(|n| !Arc::ptr_eq(n, &link.metrics)),
                    Err(poisoned) => poisoned
                        .into_inner()
                        .retain(|n| !Arc::ptr_eq(n, &link.metrics)),
                }
                continue;
            }
            link.metrics.slots.set(owned[i]);
            renumber[i] = kept.len() as u16;
            kept.push(link);
        }
        for o in &mut owners {
            if *o != NONE {
                *o = renumber[*o as usize];
            }
        }
        state.nodes = kept;
        state.owners = owners;
        let covered = state.owners.iter().filter(|&&o| o != NONE).count();
        self.metrics.redis_cluster_slots.set(covered as i64);
        let changed = state.owners.iter().zip(&before).any(|(&o, was)| {
            let now = state.nodes.get(o as usize).map(|n| (&n.host, n.port));
            now != was.as_ref().map(|(h, p)| (h, *p))
        });
        drop(state);
        if changed {
            eprintln!(
                "ringway: redis cluster slot map: {}",
                describe(ranges, covered)
            );
            self.reset_cache();
        }
    }

    fn reset_cache(&self) {
        if let Some(push) = &self.pushes {
            push(Push::Reset);
        }
    }

    /// Asks the known primaries, then the seeds, for the map; installs the first answer.
    async fn refresh(&self, tls_configs: &mut tls::Configs) {
        let target = match RedisTarget::from_config(&self.config) {
            Ok(target) => target,
            Err(e) => {
                self.state.borrow_mut().refresh_error = Some(e.to_string());
                return;
            }
        };
        let tls = match target.tls {
            true => match tls_configs.get(&self.config.tls) {
                Ok(tls) => Some(tls),
                Err(e) => {
                    self.state.borrow_mut().refresh_error = Some(e.to_string());
                    return;
                }
            },
            false => None,
        };
        let mut candidates: Vec<(String, u16)> = self
            .state
            .borrow()
            .nodes
            .iter()
            .filter(|n| n.connection.is_connected())
            .map(|n| (n.host.clone(), n.port))
            .collect();
        for seed in target.cluster.iter().flatten() {
            if !candidates.contains(seed) {
                candidates.push(seed.clone());
            }
        }
        let timeout = Duration::from_millis(self.config.connect_timeout_ms);
        let mut why = Vec::new();
        for (host, port) in candidates {
            match topology::fetch(&target.at(&host, port), tls.clone(), timeout).await {
                Ok(ranges) if !ranges.is_empty() => {
                    let was_failing = self.state.borrow_mut().refresh_error.take().is_some();
                    if was_failing {
                        eprintln!("ringway: redis cluster slot map found again");
                    }
                    self.install(&ranges);
                    return;
                }
                Ok(_) => why.push(format!(
                    "{}: no slot is assigned",
                    super::sentinel::host_port(&host, port)
                )),
                Err(e) => why.push(format!("{}: {e}", super::sentinel::host_port(&host, port))),
            }
        }
        let why = why.join("; ");
        let mut state = self.state.borrow_mut();
        if state.refresh_error.is_none() {
            eprintln!("ringway: redis cluster slot map not found: {why}");
        }
        state.refresh_error = Some(why);
    }
}

/// Whether an error reply says the cluster cannot serve the key for now (a failover, a
/// migration, a node loading its data): UNAVAILABLE, like a lost connection, not a bad route.
fn is_busy(error: &str) -> bool {
    ["CLUSTERDOWN", "TRYAGAIN", "LOADING", "MASTERDOWN"]
        .iter()
        .any(|kind| error.starts_with(kind))
}

/// `n slots over m primaries: a:1 0-5460, ...` for the log.
pub fn describe(ranges: &[topology::Range], covered: usize) -> String {
    let mut primaries: Vec<String> = ranges
        .iter()
        .map(|r| super::sentinel::host_port(&r.host, r.port))
        .collect();
    primaries.sort();
    primaries.dedup();
    let mut sorted: Vec<&topology::Range> = ranges.iter().collect();
    sorted.sort_by_key(|r| r.first);
    let list: Vec<String> = sorted
        .iter()
        .map(|r| {
            format!(
                "{} {}-{}",
                super::sentinel::host_port(&r.host, r.port),
                r.first,
                r.last
            )
        })
        .collect();
    format!(
        "{covered} of {SLOTS} slots over {} primaries: {}",
        primaries.len(),
        list.join(", ")
    )
}

/// The map's upkeep task (module doc): refreshes when due, publishes readiness
/// (`redis_connected`: 1 when every slot has an owner and every owner is connected).
async fn upkeep(cluster: Weak<Cluster>) {
    let mut tls_configs = tls::Configs::default();
    let mut last: Option<Instant> = None;
    loop {
        let Some(c) = cluster.upgrade() else {
            return;
        };
        // A map with slots unowned or an owner unreachable is asked for again at the short
        // gap even when no lookup ran into it: a failover is then seen by idle shards too.
        if !c.is_usable() {
            c.refresh_wanted.set(true);
        }
        let due = match last {
            None => true,
            Some(at) => {
                at.elapsed() >= REFRESH_PERIOD
                    || (c.refresh_wanted.get() && at.elapsed() >= REFRESH_MIN_GAP)
            }
        };
        if due {
            c.refresh_wanted.set(false);
            last = Some(Instant::now());
            c.refresh(&mut tls_configs).await;
            c.first_refresh_done.set(true);
        }
        c.metrics.redis_connected.set(i64::from(c.is_usable()));
        drop(c);
        monoio::time::sleep(TICK).await;
    }
}
