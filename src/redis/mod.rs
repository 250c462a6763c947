//! The shard's pipelined Redis connection (in cluster mode, one per primary).
//!
//! Owns: the TCP connection to Redis, the queue of lookups written and awaiting replies, and
//! redialing with backoff. Knows nothing of HTTP/2 or of what a route means.
//!
//! # Pipelining
//!
//! [`RedisClient::get`] appends the encoded command to an outbox and wakes the writer task. The
//! writer runs after every task that was ready in the same turn of the event loop, so every
//! lookup those tasks issued goes out in one `write`. While that write is in flight, new
//! lookups gather for the next one. Replies come back in command order and are matched to the
//! queue of waiting senders in that order — RESP has no request ids, the order is the id.
//! A lookup of a key whose GET is still in the outbox shares that GET ([`Unsent`]).
//!
//! # Deadlines
//!
//! Each lookup's deadline sits beside its place in the queue; one expiry loop per connection
//! fails the lookups whose deadline passed ([`Unavailable::TimedOut`]) and leaves their places
//! for the replies still to come, which then go to nobody.
//!
//! # Failure
//!
//! While the connection is down, lookups fail at once (the caller maps that to UNAVAILABLE)
//! rather than queue behind a connection that may take seconds to return. When it drops, every
//! waiting lookup fails. A connection with a lookup outstanding for a whole
//! `lookup_timeout_ms` and no reply at all in that time is declared stalled and redialed: a
//! Redis that vanished without a FIN would otherwise hold the shard's routing hostage.
//!
//! # Logging in
//!
//! Every connection, the first and each redial, runs `handshake` before it pipelines: log in
//! (`HELLO ... AUTH`, or `AUTH` on a server without `HELLO`), `SELECT` the database, turn
//! tracking on. The credentials are resolved afresh for each attempt ([`RedisTarget`]), so a
//! rotated password file is picked up. A refused login is a failed attempt like a refused
//! connect: lookups fail fast with [`Unavailable::AuthFailed`] and the next attempt waits for
//! the backoff, so a wrong password costs Redis one refused login per shard per backoff period.
//!
//! # Client tracking
//!
//! When asked to (the route cache is on), the connection says `HELLO 3` and
//! `CLIENT TRACKING ON`: Redis then remembers the keys this connection read and pushes an
//! `invalidate` message when one changes. Pushes and replies share the connection, so an
//! invalidation can never overtake the reply it invalidates. They are handed to the
//! [`PushHandler`], as is a [`Push::Reset`] whenever the connection is lost or made, since
//! invalidations may have been missed in between. A server without RESP3 (Redis < 6) answers
//! `HELLO` with an error; the connection then stays RESP2 and [`RedisClient::tracking`] is
//! false.
//!
//! # TLS
//!
//! `rediss://` runs the same loops over TLS: [`transport::open`] makes the handshake and
//! returns a [`Stream`] that is plaintext or TLS; the connection matches it once and runs its
//! setup and its loops generic over [`Transport`] — [`Plain`] (inlined identities, the
//! plaintext path unchanged) or [`TlsTransport`](crate::tls::TlsTransport), the rustls
//! wrapper the upstream side uses, shared by the read and write loops of the one task: the
//! reader decrypts after each read, the writer encrypts each batch before its write.
//! Certificates are looked at before every attempt and read again when changed ([`tls`]).
//!
//! # Cluster
//!
//! In cluster mode [`RedisClient`] holds a [`cluster::Cluster`] instead of one [`Connection`]:
//! a connection like this one per primary, each to the node it is given ([`Node`]), stopped
//! ([`Connection::stop`]) when the node leaves the slot map, plus `ASKING` pipelined before a
//! GET after `-ASK` ([`Connection::get_asking`]).
//!
//! This module uses monoio's completion I/O (owned buffers) rather than the poll-io bridge the
//! HTTP/2 side needs: nothing here wants tokio's traits.

pub mod cluster;
pub mod codec;
mod error;
pub mod sentinel;
pub mod slot;
pub mod target;
pub mod tls;
pub mod topology;
pub mod transport;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, Splitable};
use monoio::net::TcpStream;

use codec::Message;
pub use codec::Reply;

use std::sync::Arc;

use crate::backoff::Backoff;
use crate::config::{RedisAddr, RedisConfig, Secret};
use crate::metrics::{NodeMetrics, ShardMetrics};
use crate::rng::Rng;
use crate::wire::io::{Plain, Transport};

pub use error::Unavailable;
pub use target::RedisTarget;
use transport::Stream;

/// What client tracking tells the route cache.
#[derive(Debug, Clone, PartialEq)]
pub enum Push {
    /// These keys changed.
    Invalidate(Vec<bytes::Bytes>),
    /// Every key may have changed (FLUSHALL, or tracking state lost).
    InvalidateAll,
    /// The connection was lost or made: nothing cached may be trusted.
    Reset,
}

/// Receives [`Push`]es on the shard.
pub type PushHandler = Rc<dyn Fn(Push)>;

/// A handle to the shard's Redis: one [`Connection`] (single server, Sentinel) or a
/// [`cluster::Cluster`] of them. Cheap to clone; all clones share the connections.
#[derive(Clone)]
pub struct RedisClient {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    One(Connection),
    Cluster(Rc<cluster::Cluster>),
}

impl RedisClient {
    /// Starts the shard's Redis on the current monoio runtime: in cluster mode the slot map's
    /// upkeep and a connection per primary, else the one connection. Redials forever.
    /// With `pushes`, each connection turns client tracking on and invalidations go there.
    pub fn start(
        config: &RedisConfig,
        rng: Rc<Rng>,
        metrics: Arc<ShardMetrics>,
        pushes: Option<PushHandler>,
    ) -> RedisClient {
        let kind = match config.is_cluster() {
            true => Kind::Cluster(cluster::Cluster::start(config, rng, metrics, pushes)),
            false => Kind::One(Connection::start(config, rng, metrics, pushes, None)),
        };
        RedisClient { kind }
    }

    /// Sends `GET <prefix><key>` and waits for its reply, failing with
    /// [`Unavailable::TimedOut`] if none came by `deadline`.
    pub async fn get(
        &self,
        prefix: &[u8],
        key: &[u8],
        deadline: Instant,
    ) -> Result<Reply, Unavailable> {
        match &self.kind {
            Kind::One(connection) => connection.get(prefix, key, deadline).await,
            // The cluster may also wait for a slot map or a redirect's new connection: the
            // deadline bounds the whole of it.
            Kind::Cluster(cluster) => {
                monoio::time::timeout_at(deadline.into(), cluster.get(prefix, key, deadline))
                    .await
                    .unwrap_or(Err(Unavailable::TimedOut))
            }
        }
    }

    /// Whether lookups can be answered (for readiness): the connection is up; in cluster
    /// mode, every slot has an owner and every owner's connection is up.
    pub fn is_connected(&self) -> bool {
        match &self.kind {
            Kind::One(connection) => connection.is_connected(),
            Kind::Cluster(cluster) => cluster.is_usable(),
        }
    }

    /// Whether the first connection attempt has finished, made or failed (in cluster mode:
    /// the first slot map asked for, and the first attempt to each of its primaries).
    pub fn first_attempt_done(&self) -> bool {
        match &self.kind {
            Kind::One(connection) => connection.first_attempt_done(),
            Kind::Cluster(cluster) => cluster.first_attempt_done(),
        }
    }
}

/// Cluster mode: which node a [`Connection`] is to, and its metrics.
pub struct Node {
    pub host: String,
    pub port: u16,
    pub metrics: Arc<NodeMetrics>,
}

/// One pipelined connection, redialed forever until [`Connection::stop`]. Cheap to clone;
/// all clones share one connection.
#[derive(Clone)]
pub struct Connection {
    shared: Rc<RefCell<Shared>>,
    metrics: Arc<ShardMetrics>,
}

/// State shared between the handles and the connection task. Single-threaded: a `RefCell`
/// borrowed only between awaits.
struct Shared {
    /// Encoded commands not yet handed to a write.
    outbox: BytesMut,
    /// How many commands the outbox holds.
    queued: usize,
    /// One reply slot per command written or in the outbox, in command order, with the
    /// lookup's deadline.
    waiting: VecDeque<(usize, Instant)>,
    /// How many at the front of `waiting` are past their deadline and were told so.
    expired: usize,
    /// Reply slots, reused lookup after lookup (no allocation per lookup).
    slots: Vec<Slot>,
    free_slots: Vec<usize>,
    /// Per slot, the next slot to get a copy of its reply (`NO_SLOT`: none): lookups that share
    /// another's GET (see [`Unsent`]).
    sharers: Vec<usize>,
    /// GETs in the outbox, for lookups of the same key to share.
    unsent: Unsent,
    /// Whether a connection is up; lookups fail fast when it is not.
    connected: bool,
    /// Why the last connection attempt or connection failed; the message of fast failures.
    last_error: Unavailable,
    /// The writer task, parked until the outbox has bytes.
    writer: Option<Waker>,
    /// Commands queued and replies received on the current connection (for stall detection).
    sent: u64,
    received: u64,
    /// The current connection speaks RESP3 with client tracking on.
    tracking: bool,
    /// Connection attempts finished (made or failed), for startup.
    attempts: u64,
    /// Cluster mode: the node left the slot map; the task ends and redials no more.
    stopped: bool,
    /// The connection task, parked while connected, woken by [`Connection::stop`].
    stop_waker: Option<Waker>,
}

const NO_SLOT: usize = usize::MAX;

/// The GETs in the outbox, not written yet, by a hash of their command: a lookup of a key whose
/// GET is among them shares that GET's reply instead of sending its own. Only GETs not yet
/// written: Redis runs them after every lookup that shares them has arrived, so each lookup
/// still reads a value no older than itself, as a GET of its own would. The gain is where many
/// calls in flight carry the same routing value (calls of one job): one GET per key per write
/// instead of one per call. Bounded: a fixed table, one entry per hash bucket, the newest GET
/// winning its bucket; emptied (by the generation) when the outbox is taken for a write.
struct Unsent {
    entries: [UnsentGet; UNSENT_BUCKETS],
    /// Bumped each time the outbox is taken: entries of an older generation are gone.
    generation: u32,
    hasher: foldhash::fast::FixedState,
}

const UNSENT_BUCKETS: usize = 16;

#[derive(Clone, Copy, Default)]
struct UnsentGet {
    generation: u32,
    /// The command's bytes in the outbox.
    start: u32,
    end: u32,
    slot: u32,
}

impl Unsent {
    fn new() -> Unsent {
        Unsent {
            entries: [UnsentGet::default(); UNSENT_BUCKETS],
            // Entries start at generation 0: none is current.
            generation: 1,
            hasher: foldhash::fast::FixedState::default(),
        }
    }

    /// The slot of the unsent GET whose command is `outbox[start..]` (just encoded), if there
    /// is one; else notes this one, to be shared, under `slot`.
    fn share_or_note(&mut self, outbox: &[u8], start: usize, slot: usize) -> Option<usize> {
        use std::hash::BuildHasher;
        let command = &outbox[start..];
        let bucket = self.hasher.hash_one(command) as usize % UNSENT_BUCKETS;
        let entry = &mut self.entries[bucket];
        if entry.generation == self.generation
            && outbox.get(entry.start as usize..entry.end as usize) == Some(command)
        {
            return Some(entry.slot as usize);
        }
        // Offsets past u32 (a 4 GiB outbox) are not noted; that GET is simply not shared.
        if let (Ok(start), Ok(end), Ok(slot)) = (
            u32::try_from(start),
            u32::try_from(outbox.len()),
            u32::try_from(slot),
        ) {
            *entry = UnsentGet {
                generation: self.generation,
                start,
                end,
                slot,
            };
        }
        None
    }

    /// The outbox was taken (written or dropped): nothing noted is unsent any more.
    fn clear(&mut self) {
        self.generation = self.generation.wrapping_add(1).max(1);
    }
}

/// Where one lookup's reply lands.
enum Slot {
    Free,
    /// The lookup waits for its reply.
    Waiting(Option<Waker>),
    /// Its deadline passed before its reply came: the lookup is woken to fail; the reply is
    /// still to come (it frees the slot).
    TimedOut,
    /// The reply came; the lookup has not taken it yet.
    Done(Result<Reply, Unavailable>),
    /// The lookup took its reply; dropping the lookup frees the slot.
    Taken,
    /// The lookup is gone (or was told it timed out) before its reply: the reply frees the slot.
    Orphan,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            outbox: BytesMut::with_capacity(4096),
            queued: 0,
            waiting: VecDeque::with_capacity(256),
            expired: 0,
            slots: Vec::with_capacity(256),
            free_slots: Vec::with_capacity(256),
            sharers: Vec::with_capacity(256),
            unsent: Unsent::new(),
            connected: false,
            last_error: Unavailable::NotConnectedYet,
            writer: None,
            sent: 0,
            received: 0,
            tracking: false,
            attempts: 0,
            stopped: false,
            stop_waker: None,
        }
    }

    fn take_slot(&mut self) -> usize {
        match self.free_slots.pop() {
            Some(i) => {
                self.slots[i] = Slot::Waiting(None);
                i
            }
            None => {
                self.slots.push(Slot::Waiting(None));
                self.sharers.push(NO_SLOT);
                self.slots.len() - 1
            }
        }
    }

    fn free_slot(&mut self, i: usize) {
        self.slots[i] = Slot::Free;
        self.free_slots.push(i);
    }

    /// Hands `result` to slot `i` and to every slot sharing its GET.
    fn deliver(&mut self, i: usize, result: Result<Reply, Unavailable>) {
        let mut next = std::mem::replace(&mut self.sharers[i], NO_SLOT);
        while next != NO_SLOT {
            let sharer = next;
            next = std::mem::replace(&mut self.sharers[sharer], NO_SLOT);
            self.deliver_one(sharer, result.clone());
        }
        self.deliver_one(i, result);
    }

    fn deliver_one(&mut self, i: usize, result: Result<Reply, Unavailable>) {
        match std::mem::replace(&mut self.slots[i], Slot::Free) {
            Slot::Waiting(waker) => {
                self.slots[i] = Slot::Done(result);
                if let Some(waker) = waker {
                    waker.wake();
                }
            }
            // Woken to fail and not looked yet: it fails as it was told.
            Slot::TimedOut => self.slots[i] = Slot::Done(Err(Unavailable::TimedOut)),
            // A lookup that was dropped or timed out gave its slot up; that is fine.
            Slot::Orphan => self.free_slots.push(i),
            // Not waiting for a reply (never happens): left as it is.
            other => self.slots[i] = other,
        }
    }

    /// Fails the lookups whose deadline passed (`now`), with the lookups sharing their GETs.
    /// Their slots stay in the queue (their replies are still to come, in order). Returns the
    /// deadline of the next lookup still waiting, if any.
    fn expire(&mut self, now: Instant) -> Option<Instant> {
        while let Some(&(slot, deadline)) = self.waiting.get(self.expired) {
            if deadline > now {
                return Some(deadline);
            }
            // Its GET may still be in the outbox (Redis not reading): a lookup sharing it now
            // would wait past its own deadline, as the expiry has passed it. None may.
            self.unsent.clear();
            self.expired += 1;
            let mut next = slot;
            while next != NO_SLOT {
                let entry = &mut self.slots[next];
                if let Slot::Waiting(_) = entry {
                    if let Slot::Waiting(Some(waker)) = std::mem::replace(entry, Slot::TimedOut) {
                        waker.wake();
                    }
                }
                next = self.sharers[next];
            }
        }
        None
    }

    /// Queues `GET <prefix><key>` (after `ASKING` if `asking`) for the next write, or, when the
    /// same GET is already in the outbox, chains a slot to its reply instead: returns the
    /// lookup's slot and the slot it shares (`None`: a GET of its own).
    fn queue_get(
        &mut self,
        prefix: &[u8],
        key: &[u8],
        asking: bool,
        deadline: Instant,
    ) -> (usize, Option<usize>) {
        if asking {
            codec::encode_command(&mut self.outbox, &[b"ASKING"]);
            let ignored = self.take_slot();
            // Nobody waits for it: its reply frees it.
            self.slots[ignored] = Slot::Orphan;
            self.waiting.push_back((ignored, deadline));
            self.sent += 1;
            self.queued += 1;
        }
        let start = self.outbox.len();
        codec::encode_get(&mut self.outbox, prefix, key);
        let slot = self.take_slot();
        // After ASKING, the GET must follow it: never shared.
        let leader = match asking {
            true => None,
            false => self.unsent.share_or_note(&self.outbox, start, slot),
        };
        match leader {
            Some(leader) => {
                // The same GET is already in the outbox (and the writer woken for it): this
                // lookup takes a copy of its reply.
                self.outbox.truncate(start);
                self.sharers[slot] = std::mem::replace(&mut self.sharers[leader], slot);
            }
            None => {
                self.waiting.push_back((slot, deadline));
                self.sent += 1;
                self.queued += 1;
                if let Some(writer) = self.writer.take() {
                    writer.wake();
                }
            }
        }
        (slot, leader)
    }

    /// The slot of the oldest command written, its reply having come.
    fn pop_waiting(&mut self) -> Option<usize> {
        let (slot, _) = self.waiting.pop_front()?;
        self.expired = self.expired.saturating_sub(1);
        Some(slot)
    }
}

/// A lookup's claim on its reply slot.
struct SlotWait<'a> {
    shared: &'a Rc<RefCell<Shared>>,
    slot: usize,
}

impl SlotWait<'_> {
    fn poll(&self, cx: &mut Context<'_>) -> Poll<Result<Reply, Unavailable>> {
        let mut s = self.shared.borrow_mut();
        let entry = &mut s.slots[self.slot];
        match std::mem::replace(entry, Slot::Free) {
            Slot::Done(result) => {
                // Marked taken: the drop below frees the slot.
                *entry = Slot::Taken;
                Poll::Ready(result)
            }
            Slot::TimedOut => {
                // The reply, when it comes, frees the slot.
                *entry = Slot::Orphan;
                Poll::Ready(Err(Unavailable::TimedOut))
            }
            Slot::Waiting(Some(waker)) if waker.will_wake(cx.waker()) => {
                *entry = Slot::Waiting(Some(waker));
                Poll::Pending
            }
            _ => {
                *entry = Slot::Waiting(Some(cx.waker().clone()));
                Poll::Pending
            }
        }
    }
}

impl Drop for SlotWait<'_> {
    fn drop(&mut self) {
        let Ok(mut s) = self.shared.try_borrow_mut() else {
            return;
        };
        match s.slots[self.slot] {
            // Answered and taken, or answered and never looked at: free it now.
            Slot::Taken | Slot::Done(_) => s.free_slot(self.slot),
            // Still waiting for its reply: the reply frees it.
            Slot::Waiting(_) | Slot::TimedOut => s.slots[self.slot] = Slot::Orphan,
            Slot::Orphan | Slot::Free => {}
        }
    }
}

impl Connection {
    /// Starts the connection task on the current monoio runtime and returns its handle. The
    /// task redials forever, or until [`Connection::stop`].
    /// With `pushes`, each connection turns client tracking on and invalidations go there.
    /// With `node` (cluster mode), it connects to that node and counts in its metrics; the
    /// shard's `redis_connected` is then the cluster's to set.
    pub fn start(
        config: &RedisConfig,
        rng: Rc<Rng>,
        metrics: Arc<ShardMetrics>,
        pushes: Option<PushHandler>,
        node: Option<Node>,
    ) -> Connection {
        let shared = Rc::new(RefCell::new(Shared::new()));
        monoio::spawn(maintain(
            shared.clone(),
            config.clone(),
            rng,
            metrics.clone(),
            pushes,
            node,
        ));
        Connection { shared, metrics }
    }

    /// Ends the connection task: the connection closes (its waiting lookups fail) and is not
    /// redialed. Cluster mode, for a node that left the slot map.
    pub fn stop(&self) {
        let mut s = self.shared.borrow_mut();
        s.stopped = true;
        if let Some(waker) = s.stop_waker.take() {
            waker.wake();
        }
    }

    /// Sends `GET <prefix><key>` and waits for its reply, failing with
    /// [`Unavailable::TimedOut`] if none came by `deadline`.
    pub async fn get(
        &self,
        prefix: &[u8],
        key: &[u8],
        deadline: Instant,
    ) -> Result<Reply, Unavailable> {
        self.send_get(prefix, key, false, deadline).await
    }

    /// Cluster mode, after `-ASK`: `ASKING` then `GET <prefix><key>`, pipelined back to back on
    /// this connection (the node takes the GET for a slot it is importing only right after
    /// `ASKING`); the reply to `ASKING` is dropped when it comes.
    pub async fn get_asking(
        &self,
        prefix: &[u8],
        key: &[u8],
        deadline: Instant,
    ) -> Result<Reply, Unavailable> {
        self.send_get(prefix, key, true, deadline).await
    }

    /// The lookup's deadline is kept with its place in the queue, and the connection's expiry
    /// loop fails it when it passes: one timer per connection, not one per lookup. A monoio
    /// `timeout` around each lookup was ~1,700 of the ~16,300 instructions a call without the
    /// route cache spent (callgrind, `bench/profile`, 799b6cb: the timer's own work and moving
    /// the wrapped future); with the deadlines here instead, 16,273 → 14,943 in all.
    async fn send_get(
        &self,
        prefix: &[u8],
        key: &[u8],
        asking: bool,
        deadline: Instant,
    ) -> Result<Reply, Unavailable> {
        let slot = {
            let mut shared = self.shared.borrow_mut();
            if !shared.connected {
                return Err(shared.last_error.clone());
            }
            self.metrics.redis_lookups.inc();
            let (slot, leader) = shared.queue_get(prefix, key, asking, deadline);
            if leader.is_some() {
                self.metrics.redis_lookups_shared.inc();
            }
            slot
        };
        // Gives the slot up if the lookup is dropped before its reply.
        let wait = SlotWait {
            shared: &self.shared,
            slot,
        };
        poll_fn(|cx| wait.poll(cx)).await
    }

    /// Whether the connection is up (for readiness).
    pub fn is_connected(&self) -> bool {
        self.shared.borrow().connected
    }

    /// Whether the first connection attempt has finished, made or failed.
    pub fn first_attempt_done(&self) -> bool {
        self.shared.borrow().attempts > 0
    }

    /// Whether the current connection has client tracking on (RESP3 server, tracking asked).
    pub fn tracking(&self) -> bool {
        let s = self.shared.borrow();
        s.connected && s.tracking
    }
}

/// Dials, serves, and redials with backoff, forever.
async fn maintain(
    shared: Rc<RefCell<Shared>>,
    config: RedisConfig,
    rng: Rc<Rng>,
    metrics: Arc<ShardMetrics>,
    pushes: Option<PushHandler>,
    node: Option<Node>,
) {
    let mut backoff = Backoff::new(
        Duration::from_millis(config.reconnect_backoff_initial_ms),
        Duration::from_millis(config.reconnect_backoff_max_ms),
    );
    let stall_period = Duration::from_millis(config.lookup_timeout_ms);
    // Log a failure streak once, not once per attempt (again when its reason changes kind).
    let mut failing: Option<std::mem::Discriminant<Unavailable>> = None;
    // Kept across reconnects, so a redial over TLS resumes the last session.
    let mut tls_configs = tls::Configs::default();
    // Sentinel mode: this shard's sentinels, the one that answered last first.
    let mut order = Vec::new();
    // Sentinel mode: the primary of the last connection, to count switches.
    let mut last_primary: Option<String> = None;
    let shown = match &node {
        Some(node) => format!("{} node {}", config.shown(), node.metrics.node),
        None => config.shown(),
    };
    let at = node.as_ref().map(|n| (n.host.as_str(), n.port));
    // Cluster mode: the shard's `redis_connected` is the cluster's (every owner up), so a
    // node's connection sets only its own gauge.
    let connected_gauge = match &node {
        Some(node) => &node.metrics.connected,
        None => &metrics.redis_connected,
    };
    let mut made = 0u64;
    loop {
        if shared.borrow().stopped {
            return;
        }
        match connect(&config, pushes.is_some(), &mut tls_configs, &mut order, at).await {
            Ok(Connected {
                stream,
                tracking,
                read,
                target,
                primary,
            }) => {
                if failing.is_some() {
                    eprintln!("ringway: redis {shown} reconnected");
                }
                if let Some(primary) = &primary {
                    let addr = primary.addr();
                    if last_primary.as_ref().is_some_and(|last| *last != addr) {
                        metrics.redis_primary_switches.inc();
                    }
                    if last_primary.as_ref() != Some(&addr) {
                        eprintln!(
                            "ringway: redis primary of `{}` is {addr} (sentinel {} named it, \
                             ROLE master)",
                            config.service(),
                            primary.sentinel
                        );
                    }
                    metrics.set_redis_primary(&addr);
                    last_primary = Some(addr);
                }
                failing = None;
                backoff.reset();
                {
                    let mut s = shared.borrow_mut();
                    s.attempts += 1;
                    s.connected = true;
                    s.tracking = tracking;
                    s.sent = 0;
                    s.received = 0;
                }
                if let Some(push) = &pushes {
                    push(Push::Reset);
                }
                metrics.redis_auth_refused.set(0);
                metrics.redis_tls_failing.set(0);
                metrics.redis_connects.inc();
                connected_gauge.set(1);
                if let Some(node) = node.as_ref().filter(|_| made > 0) {
                    node.metrics.reconnects.inc();
                }
                made += 1;
                let connection = run_connection(
                    stream,
                    read,
                    &shared,
                    stall_period,
                    &metrics,
                    pushes.as_ref(),
                );
                let stop = stopped(&shared);
                let connection = async {
                    monoio::select! {
                        reason = connection => reason,
                        reason = stop => reason,
                    }
                };
                let reason = match &primary {
                    None => connection.await,
                    Some(primary) => {
                        let tls = target
                            .tls
                            .then(|| tls_configs.get(&config.tls).ok())
                            .flatten();
                        let watch = sentinel::watch(
                            &target,
                            &order,
                            primary,
                            tls,
                            Duration::from_millis(config.connect_timeout_ms),
                            Duration::from_millis(config.reconnect_backoff_max_ms),
                        );
                        monoio::select! {
                            reason = connection => reason,
                            reason = watch => reason,
                        }
                    }
                };
                connected_gauge.set(0);
                metrics.redis_disconnects.inc();
                metrics.set_redis_primary("");
                eprintln!("ringway: redis {shown} connection lost: {reason}");
                fail_all(&shared, reason);
                if let Some(push) = &pushes {
                    push(Push::Reset);
                }
            }
            Err(reason) => {
                let refused = reason.is_auth_failure();
                if refused {
                    metrics.redis_auth_failures.inc();
                }
                metrics.redis_auth_refused.set(i64::from(refused));
                metrics
                    .redis_tls_failing
                    .set(i64::from(reason.is_tls_failure()));
                let kind = std::mem::discriminant(&reason);
                if failing != Some(kind) {
                    eprintln!("ringway: redis {shown} not connected: {reason}");
                }
                failing = Some(kind);
                let mut s = shared.borrow_mut();
                s.attempts += 1;
                s.last_error = reason;
            }
        }
        monoio::time::sleep(backoff.next_delay(&rng)).await;
    }
}

/// Resolves when [`Connection::stop`] is called, with the reason the connection ends.
async fn stopped(shared: &Rc<RefCell<Shared>>) -> Unavailable {
    poll_fn(|cx| {
        let mut s = shared.borrow_mut();
        if s.stopped {
            return Poll::Ready(Unavailable::LeftCluster);
        }
        s.stop_waker = Some(cx.waker().clone());
        Poll::Pending
    })
    .await
}

/// A connection ready to pipeline.
struct Connected {
    stream: Stream,
    /// Client tracking is on.
    tracking: bool,
    /// What was read past the last setup reply (for the read loop).
    read: BytesMut,
    /// The target it is to, credentials and all.
    target: RedisTarget,
    /// Sentinel mode: the primary and the sentinel that named it.
    primary: Option<sentinel::Primary>,
}

/// One connection attempt: the target (credentials and `[redis.tls]` files read afresh), in
/// sentinel mode the primary asked of the sentinels (`order`: this shard's list of them, the
/// one that answered last at the front), the transport (TCP, and TLS for `rediss://`), the
/// handshake, and in sentinel mode `ROLE` ([`sentinel`]).
async fn connect(
    config: &RedisConfig,
    want_tracking: bool,
    tls_configs: &mut tls::Configs,
    order: &mut Vec<(String, u16)>,
    node: Option<(&str, u16)>,
) -> Result<Connected, Unavailable> {
    let mut target =
        RedisTarget::from_config(config).map_err(|e| Unavailable::Credentials(e.to_string()))?;
    if let Some((host, port)) = node {
        target = target.at(host, port);
    }
    let tls = match target.tls {
        true => Some(
            tls_configs
                .get(&config.tls)
                .map_err(|e| Unavailable::Credentials(e.to_string()))?,
        ),
        false => None,
    };
    let timeout = Duration::from_millis(config.connect_timeout_ms);
    let (target, primary) = match &target.sentinel {
        Some(sentinels) => {
            if order.is_empty() {
                order.clone_from(&sentinels.addrs);
            }
            let primary = sentinel::discover(&target, order, tls.clone(), timeout).await?;
            (target.at(&primary.host, primary.port), Some(primary))
        }
        None => (target, None),
    };
    let mut stream = transport::open(&target, tls, timeout).await?;
    let mut buf = BytesMut::with_capacity(4096);
    let tracking = match &mut stream {
        Stream::Plain(socket) => {
            let mut link = Link {
                socket,
                transport: &Plain,
                buf: &mut buf,
            };
            handshake(&mut link, &target, want_tracking, timeout, &config.addr).await
        }
        Stream::Tls(socket, transport) => {
            let mut link = Link {
                socket,
                transport: &**transport,
                buf: &mut buf,
            };
            handshake(&mut link, &target, want_tracking, timeout, &config.addr).await
        }
    }
    .map_err(|e| refused_after_handshake(e, &target))?;
    if primary.is_some() {
        sentinel::check_role(&mut stream, &mut buf, &target, timeout).await?;
    }
    Ok(Connected {
        stream,
        tracking,
        read: buf,
        target,
        primary,
    })
}

/// A connection to `target` logged in (and its database selected), RESP2 without tracking,
/// for a command or two before it is closed (cluster mode: the slot map, [`topology`]).
async fn open_logged_in(
    target: &RedisTarget,
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
) -> Result<(Stream, BytesMut), Unavailable> {
    let mut stream = transport::open(target, tls, timeout).await?;
    let mut buf = BytesMut::with_capacity(4096);
    let addr = RedisAddr::new(target.to_string());
    match &mut stream {
        Stream::Plain(socket) => {
            let mut link = Link {
                socket,
                transport: &Plain,
                buf: &mut buf,
            };
            handshake(&mut link, target, false, timeout, &addr).await
        }
        Stream::Tls(socket, transport) => {
            let mut link = Link {
                socket,
                transport: &**transport,
                buf: &mut buf,
            };
            handshake(&mut link, target, false, timeout, &addr).await
        }
    }
    .map_err(|e| refused_after_handshake(e, target))?;
    Ok((stream, buf))
}

/// A TLS 1.3 client finishes its handshake before the server has checked the client's
/// certificate, so a Redis that wants one (`tls-auth-clients yes`) and did not get it, or
/// refused it, says so with an alert read by the first setup command: that is a TLS
/// failure, [`Unavailable::Tls`], not a failed read.
fn refused_after_handshake(e: Unavailable, target: &RedisTarget) -> Unavailable {
    let alert = match &e {
        Unavailable::Read(io) | Unavailable::Write(io) => io
            .get_ref()
            .and_then(|inner| inner.source())
            .and_then(|source| source.downcast_ref::<rustls::Error>())
            .cloned(),
        _ => None,
    };
    match alert {
        Some(alert) => Unavailable::Tls {
            addr: target.to_string(),
            error: crate::tls::HandshakeError::Tls(alert),
        },
        None => e,
    }
}

/// A connection before it pipelines: its socket, what sits between the socket and RESP
/// ([`Plain`], or TLS), and what was read and not yet decoded.
struct Link<'a, T> {
    socket: &'a mut TcpStream,
    transport: &'a T,
    /// Plaintext: bytes read and not yet decoded. TLS: empty between reads (the transport
    /// keeps the decrypted bytes not yet decoded).
    buf: &'a mut BytesMut,
}

/// Readies a new connection before it pipelines; returns whether client tracking is on.
///
/// 1. With tracking wanted or a password: `HELLO 3` (RESP3, for the invalidation pushes) or
///    `HELLO 2`, with `AUTH <user> <password>` when there is a password — login and protocol
///    in one round trip. Without a configured user the ACL user is `default`, the one
///    `requirepass` sets. Neither wanted, and database 0: one `PING`, so that a server that
///    wants a password ringway was not given says so at connect (`NOAUTH` →
///    [`Unavailable::AuthFailed`], `/readyz` 503) rather than in every lookup's reply.
/// 2. `HELLO` refused as a login (`WRONGPASS`, `NOAUTH`): [`Unavailable::AuthFailed`].
///    Refused otherwise (`ERR unknown command` from Redis < 6, `NOPROTO`): the server has no
///    RESP3, so the connection stays RESP2 without tracking and logs in with
///    `AUTH [<user>] <password>`, any error to which is a refused login.
/// 3. `SELECT <db>` when the database is not 0.
/// 4. `CLIENT TRACKING ON` when tracking is wanted and RESP3 is on. Tracking remembers key
///    names, not databases: a write to the same name in another database invalidates too,
///    which costs a GET, never a stale route.
async fn handshake<T: Transport>(
    link: &mut Link<'_, T>,
    target: &RedisTarget,
    want_tracking: bool,
    timeout: Duration,
    addr: &RedisAddr,
) -> Result<bool, Unavailable> {
    let password = target.password.as_ref();
    let mut resp3 = false;
    if want_tracking || password.is_some() {
        let user = target.user.as_deref().unwrap_or("default");
        let mut hello: Vec<&[u8]> = vec![b"HELLO", if want_tracking { b"3" } else { b"2" }];
        if let Some(password) = password {
            hello.extend([&b"AUTH"[..], user.as_bytes(), password.expose().as_bytes()]);
        }
        match command(link, &hello, timeout).await? {
            Reply::Error(e) if is_refused_login(&e) => {
                return Err(Unavailable::AuthFailed(scrub(e, password)))
            }
            Reply::Error(e) => {
                // `ERR unknown command 'HELLO', with args beginning with: ... <password>`.
                let e = scrub(e, password);
                if want_tracking {
                    eprintln!(
                        "ringway: redis {addr} has no RESP3 ({e}); route cache falls back to TTL only"
                    );
                }
                if let Some(password) = password {
                    let mut auth: Vec<&[u8]> = vec![b"AUTH"];
                    if let Some(user) = &target.user {
                        auth.push(user.as_bytes());
                    }
                    auth.push(password.expose().as_bytes());
                    if let Reply::Error(e) = command(link, &auth, timeout).await? {
                        return Err(Unavailable::AuthFailed(scrub(e, Some(password))));
                    }
                }
            }
            _ => resp3 = want_tracking,
        }
    } else if target.db == 0 {
        if let Reply::Error(e) = command(link, &[b"PING"], timeout).await? {
            if is_refused_login(&e) {
                return Err(Unavailable::AuthFailed(format!(
                    "{e} (no password is configured: redis.password, password_file or the URL)"
                )));
            }
        }
    }
    if target.db != 0 {
        let mut digits = itoa::Buffer::new();
        let db = digits.format(target.db).as_bytes();
        if let Reply::Error(message) = command(link, &[b"SELECT", db], timeout).await? {
            return Err(Unavailable::Select {
                db: target.db,
                message,
            });
        }
    }
    if !resp3 {
        return Ok(false);
    }
    match command(link, &[b"CLIENT", b"TRACKING", b"ON"], timeout).await? {
        Reply::Error(e) => {
            eprintln!(
                "ringway: redis {addr}: CLIENT TRACKING refused ({e}); route cache falls back to TTL only"
            );
            Ok(false)
        }
        _ => Ok(true),
    }
}

/// Whether an error reply to `HELLO ... AUTH` refuses the login rather than `HELLO` itself.
fn is_refused_login(error: &str) -> bool {
    error.starts_with("WRONGPASS") || error.starts_with("NOAUTH")
}

/// An error reply to a command that carried the password, fit to log and to send to clients:
/// Redis quotes the arguments of a command it does not know (`ERR unknown command 'HELLO',
/// with args beginning with: '3' 'AUTH' 'default' '<password>'`, each cut at 128 bytes, so a
/// long password would show in part), so that tail goes, and the password wherever else it
/// might appear.
fn scrub(message: String, password: Option<&Secret>) -> String {
    let mut message = match message.find(", with args beginning with") {
        Some(at) => message[..at].to_string(),
        None => message,
    };
    if let Some(p) = password.map(Secret::expose).filter(|p| !p.is_empty()) {
        message = message.replace(p, crate::config::REDACTED);
    }
    message
}

/// Sends one command and reads its reply (RESP3 decoding also reads RESP2 errors), before the
/// connection starts pipelining.
async fn command<T: Transport>(
    link: &mut Link<'_, T>,
    parts: &[&[u8]],
    timeout: Duration,
) -> Result<Reply, Unavailable> {
    exchange(link, Some(parts), Some(timeout), |buf| loop {
        match codec::decode_message(buf, true)? {
            Some(Message::Reply(reply)) => break Ok(Some(reply)),
            Some(_) => continue,
            None => break Ok(None),
        }
    })
    .await
}

/// Sends `parts` when given, then reads until `decode` takes a whole reply off what was read
/// (`Ok(None)`: more bytes needed), within `timeout` when given ([`Unavailable::NoAnswer`]).
async fn exchange<T: Transport, R>(
    link: &mut Link<'_, T>,
    parts: Option<&[&[u8]]>,
    timeout: Option<Duration>,
    mut decode: impl FnMut(&mut BytesMut) -> Result<Option<R>, String>,
) -> Result<R, Unavailable> {
    let exchange = async {
        if let Some(parts) = parts {
            let mut out = BytesMut::new();
            codec::encode_command(&mut out, parts);
            let sealed = link
                .transport
                .seal(out)
                .map_err(|e| Unavailable::io(Unavailable::Write, e))?;
            let (result, _) = link.socket.write_all(sealed).await;
            result.map_err(|e| Unavailable::io(Unavailable::Write, e))?;
        }
        loop {
            // Decodes what is already here first: TLS may hold plaintext from the last read.
            let mut reply = None;
            link.transport
                .received(link.buf, |plain| {
                    reply = match decode(plain) {
                        Ok(Some(reply)) => Some(Ok(reply)),
                        Ok(None) => None,
                        Err(e) => Some(Err(Unavailable::Protocol(e))),
                    };
                    true
                })
                .map_err(|e| Unavailable::io(Unavailable::Read, e))?;
            if let Some(reply) = reply {
                return reply;
            }
            let buf = &mut *link.buf;
            buf.reserve(4096);
            let (len, cap) = (buf.len(), buf.capacity());
            let (result, slice) = link
                .socket
                .read(std::mem::take(buf).slice_mut(len..cap))
                .await;
            *buf = slice.into_inner();
            match result {
                Ok(0) => return Err(Unavailable::Closed),
                Ok(_) => {}
                Err(e) => return Err(Unavailable::io(Unavailable::Read, e)),
            }
        }
    };
    let Some(timeout) = timeout else {
        return exchange.await;
    };
    monoio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| Unavailable::NoAnswer {
            ms: timeout.as_millis() as u64,
        })?
}

/// [`exchange`] on a [`Stream`] not yet pipelining, whichever its transport (for the sentinel
/// and `ROLE` steps, which run on the stream [`transport::open`] returned).
async fn exchange_on<R>(
    stream: &mut Stream,
    buf: &mut BytesMut,
    parts: Option<&[&[u8]]>,
    timeout: Option<Duration>,
    decode: impl FnMut(&mut BytesMut) -> Result<Option<R>, String>,
) -> Result<R, Unavailable> {
    match stream {
        Stream::Plain(socket) => {
            let mut link = Link {
                socket,
                transport: &Plain,
                buf,
            };
            exchange(&mut link, parts, timeout, decode).await
        }
        Stream::Tls(socket, transport) => {
            let mut link = Link {
                socket,
                transport: &**transport,
                buf,
            };
            exchange(&mut link, parts, timeout, decode).await
        }
    }
}

/// Hands every whole message in `buf` to its lookup (replies, in order) or to the push
/// handler (invalidations); leaves a partial one in `buf`.
fn dispatch(
    buf: &mut BytesMut,
    resp3: bool,
    shared: &Rc<RefCell<Shared>>,
    pushes: Option<&PushHandler>,
) -> Result<(), Unavailable> {
    loop {
        match codec::decode_message(buf, resp3).map_err(Unavailable::Protocol)? {
            // Only a replica says READONLY: the primary this connection was made to is one no
            // more (a failover the sentinels did not announce to us). The lookup fails like the
            // rest, UNAVAILABLE, and the redial asks the sentinels again.
            Some(Message::Reply(Reply::Error(e))) if e.starts_with("READONLY") => {
                let reason = Unavailable::NotPrimary {
                    addr: "the connected server".into(),
                    role: e,
                };
                let mut s = shared.borrow_mut();
                s.received += 1;
                if let Some(slot) = s.pop_waiting() {
                    s.deliver(slot, Err(reason.clone()));
                }
                return Err(reason);
            }
            Some(Message::Reply(reply)) => {
                let mut s = shared.borrow_mut();
                s.received += 1;
                match s.pop_waiting() {
                    Some(slot) => s.deliver(slot, Ok(reply)),
                    None => {
                        return Err(Unavailable::Protocol(
                            "reply with no command waiting for it".into(),
                        ))
                    }
                }
            }
            Some(Message::Invalidate(keys)) => {
                if let Some(push) = pushes {
                    push(match keys {
                        Some(keys) => Push::Invalidate(keys),
                        None => Push::InvalidateAll,
                    });
                }
            }
            Some(Message::OtherPush) => {}
            None => return Ok(()),
        }
    }
}

/// Marks the connection down and fails every lookup that was waiting on it.
fn fail_all(shared: &Rc<RefCell<Shared>>, reason: Unavailable) {
    let mut s = shared.borrow_mut();
    s.connected = false;
    s.last_error = reason;
    s.outbox.clear();
    s.unsent.clear();
    s.queued = 0;
    // Every waiting lookup fails with the connection's error.
    while let Some(slot) = s.pop_waiting() {
        let error = s.last_error.clone();
        s.deliver(slot, Err(error));
    }
}

/// Runs one connection until it fails; returns why. `read`: what the handshake read past its
/// last reply.
async fn run_connection(
    stream: Stream,
    read: BytesMut,
    shared: &Rc<RefCell<Shared>>,
    stall_period: Duration,
    metrics: &ShardMetrics,
    pushes: Option<&PushHandler>,
) -> Unavailable {
    // Matched once per connection: each arm is its own copy of the loops, so plaintext pays
    // nothing for TLS being possible.
    match stream {
        Stream::Plain(socket) => {
            serve(socket, &Plain, read, shared, stall_period, metrics, pushes).await
        }
        Stream::Tls(socket, tls) => {
            serve(socket, &*tls, read, shared, stall_period, metrics, pushes).await
        }
    }
}

/// The connection's loops: writer, reader, stall watch, over `transport` ([`Plain`]: the
/// socket's bytes are RESP; TLS: decrypted after each read, encrypted before each write).
async fn serve<T: Transport>(
    socket: TcpStream,
    transport: &T,
    read: BytesMut,
    shared: &Rc<RefCell<Shared>>,
    stall_period: Duration,
    metrics: &ShardMetrics,
    pushes: Option<&PushHandler>,
) -> Unavailable {
    let resp3 = shared.borrow().tracking;
    let (mut reader, mut writer) = socket.into_split();

    let write_loop = async {
        // Two buffers swap roles: the outbox fills while the other is being written.
        let mut spare = BytesMut::with_capacity(4096);
        loop {
            let batch = poll_fn(|cx| {
                let mut s = shared.borrow_mut();
                if s.outbox.is_empty() {
                    s.writer = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                metrics.redis_writes.inc();
                metrics.redis_commands.add(s.queued as u64);
                metrics.redis_max_pipeline_depth.max(s.queued as i64);
                s.queued = 0;
                s.unsent.clear();
                Poll::Ready(std::mem::replace(&mut s.outbox, std::mem::take(&mut spare)))
            })
            .await;
            let sealed = match transport.seal(batch) {
                Ok(sealed) => sealed,
                Err(e) => return Unavailable::io(Unavailable::Write, e),
            };
            let (result, mut written) = writer.write_all(sealed).await;
            if let Err(e) = result {
                return Unavailable::io(Unavailable::Write, e);
            }
            written.clear();
            // Plain: the buffer just written; TLS: the batch buffer `seal` took.
            spare = transport.written(written, true);
        }
    };

    let read_loop = async {
        let mut buf = read;
        buf.reserve(64 << 10);
        loop {
            let mut failed = None;
            let decoded = transport.received(&mut buf, |plain| {
                failed = dispatch(plain, resp3, shared, pushes).err();
                failed.is_none()
            });
            if let Err(e) = decoded {
                return Unavailable::io(Unavailable::Read, e);
            }
            if let Some(reason) = failed {
                return reason;
            }
            if buf.capacity() - buf.len() < 4096 {
                buf.reserve(64 << 10);
            }
            // monoio reads at the buffer's start; hand it the spare capacity to append instead.
            let (len, cap) = (buf.len(), buf.capacity());
            let (result, slice) = reader.read(buf.slice_mut(len..cap)).await;
            buf = slice.into_inner();
            match result {
                Ok(0) => return Unavailable::Closed,
                Ok(_) => {}
                Err(e) => return Unavailable::io(Unavailable::Read, e),
            }
        }
    };

    let stall_watch = async {
        let (mut sent_then, mut received_then) = (0u64, 0u64);
        loop {
            monoio::time::sleep(stall_period).await;
            let s = shared.borrow();
            if s.received == received_then && sent_then > s.received {
                return Unavailable::Stalled {
                    ms: stall_period.as_millis() as u64,
                };
            }
            (sent_then, received_then) = (s.sent, s.received);
        }
    };

    // Fails each lookup whose deadline passed (its reply, if it ever comes, is dropped): wakes
    // at the oldest waiting lookup's deadline, or a stall period from now when none waits, so
    // about once per lookup timeout under load. After a reload shortens the timeout, a lookup
    // may fail up to the old timeout late (the queue is scanned in order, oldest first).
    let expiry = async {
        loop {
            let next = shared.borrow_mut().expire(Instant::now());
            let at = next.unwrap_or_else(|| Instant::now() + stall_period);
            monoio::time::sleep_until(at.into()).await;
        }
    };

    monoio::select! {
        reason = write_loop => reason,
        reason = read_loop => reason,
        reason = stall_watch => reason,
        never = expiry => never,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll(wait: &SlotWait<'_>) -> Poll<Result<Reply, Unavailable>> {
        wait.poll(&mut Context::from_waker(Waker::noop()))
    }

    /// A lookup queued as `send_get` queues it: its own GET, or sharing `leader`'s.
    fn queue(s: &Rc<RefCell<Shared>>, key: &[u8], deadline: Instant) -> (usize, Option<usize>) {
        s.borrow_mut().queue_get(b"", key, false, deadline)
    }

    fn value(v: &'static str) -> Result<Reply, Unavailable> {
        Ok(Reply::Value(bytes::Bytes::from_static(v.as_bytes())))
    }

    /// Lookups of one key queued for the same write share its GET and each gets the reply;
    /// once the outbox is taken, a new lookup of that key sends its own.
    #[test]
    fn lookups_of_one_unsent_key_share_its_get() {
        let s = Rc::new(RefCell::new(Shared::new()));
        let later = Instant::now() + Duration::from_secs(10);
        let (a, none) = queue(&s, b"job", later);
        let (b, other) = queue(&s, b"other", later);
        let (a2, leader) = queue(&s, b"job", later);
        assert_eq!((none, other, leader), (None, None, Some(a)));
        assert_eq!(s.borrow().waiting.len(), 2, "two GETs, not three");
        let waits = [a, b, a2].map(|slot| SlotWait { shared: &s, slot });
        assert!(waits.iter().all(|w| poll(w).is_pending()));
        // The write takes the outbox: nothing in it can be shared any more.
        s.borrow_mut().unsent.clear();
        let (a3, leader) = queue(&s, b"job", later);
        assert_eq!(leader, None, "a GET already written is not shared");
        for reply in [value("1:1"), value("2:2"), value("3:3")] {
            let mut sh = s.borrow_mut();
            let slot = sh.pop_waiting().unwrap();
            sh.deliver(slot, reply);
        }
        let got: Vec<_> = waits.iter().map(|w| format!("{:?}", poll(w))).collect();
        assert!(got[0].contains("1:1") && got[2].contains("1:1"), "{got:?}");
        assert!(got[1].contains("2:2"), "{got:?}");
        let w3 = SlotWait {
            shared: &s,
            slot: a3,
        };
        assert!(format!("{:?}", poll(&w3)).contains("3:3"));
        drop(waits);
        drop(w3);
        assert_eq!(s.borrow().free_slots.len(), 4, "every slot freed");
    }

    /// A lookup past its deadline (and one sharing its GET) fails with `TimedOut`; its slot
    /// stays taken until the late reply comes, which then goes to nobody; the lookup behind it
    /// gets its own reply.
    #[test]
    fn expired_lookups_fail_and_their_late_replies_go_nowhere() {
        let s = Rc::new(RefCell::new(Shared::new()));
        let now = Instant::now();
        let (early, _) = queue(&s, b"job", now);
        let (sharer, _) = queue(&s, b"job", now);
        s.borrow_mut().unsent.clear();
        let (later, _) = queue(&s, b"job", now + Duration::from_secs(10));
        let (w1, w2, w3) = (
            SlotWait {
                shared: &s,
                slot: early,
            },
            SlotWait {
                shared: &s,
                slot: sharer,
            },
            SlotWait {
                shared: &s,
                slot: later,
            },
        );
        assert!(poll(&w1).is_pending() && poll(&w2).is_pending() && poll(&w3).is_pending());
        let next = s.borrow_mut().expire(now + Duration::from_millis(1));
        assert_eq!(
            next,
            Some(now + Duration::from_secs(10)),
            "the next deadline"
        );
        // An expired GET is shared by no new lookup, even while it is still in the outbox.
        let (own, leader) = queue(&s, b"job", now + Duration::from_secs(20));
        assert_eq!(leader, None);
        assert!(matches!(poll(&w1), Poll::Ready(Err(Unavailable::TimedOut))));
        assert!(matches!(poll(&w2), Poll::Ready(Err(Unavailable::TimedOut))));
        assert!(poll(&w3).is_pending());
        drop((w1, w2));
        assert!(
            s.borrow().free_slots.is_empty(),
            "replies still to come hold the slots"
        );
        // Expiring again finds nothing new.
        let next = s.borrow_mut().expire(now + Duration::from_millis(2));
        assert_eq!(next, Some(now + Duration::from_secs(10)));
        for reply in [value("late:1"), value("own:2"), value("own:3")] {
            let mut sh = s.borrow_mut();
            let slot = sh.pop_waiting().unwrap();
            sh.deliver(slot, reply);
        }
        let mut free = s.borrow().free_slots.clone();
        free.sort();
        assert_eq!(free, [early, sharer], "the late reply freed both");
        assert!(format!("{:?}", poll(&w3)).contains("own:2"));
        drop(w3);
        let w4 = SlotWait {
            shared: &s,
            slot: own,
        };
        assert!(format!("{:?}", poll(&w4)).contains("own:3"));
        drop(w4);
        assert_eq!(s.borrow().expired, 0);
    }

    #[test]
    fn error_replies_lose_the_password() {
        let secret = Secret::new("hunter2");
        let unknown = "ERR unknown command 'HELLO', with args beginning with: '3' 'AUTH' \
                       'default' 'hunt' "
            .to_string();
        assert_eq!(scrub(unknown, Some(&secret)), "ERR unknown command 'HELLO'");
        assert_eq!(
            scrub("ERR said hunter2 twice: hunter2".into(), Some(&secret)),
            "ERR said <redacted> twice: <redacted>"
        );
        assert_eq!(scrub("WRONGPASS invalid".into(), None), "WRONGPASS invalid");
        assert!(is_refused_login("WRONGPASS invalid username-password pair"));
        assert!(is_refused_login(
            "NOAUTH HELLO must be called with the client already authenticated"
        ));
        assert!(!is_refused_login("ERR unknown command 'HELLO'"));
    }
}
