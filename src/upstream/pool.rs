//! One target's HTTP/2 connections on one shard, and the leases calls take on them.
//!
//! Policy: a call goes to the open connection carrying the fewest streams. A new connection is
//! dialed only when every open one carries as many streams as its peer's
//! `MAX_CONCURRENT_STREAMS` allows, and only up to `max_connections_per_target`; past that, the
//! least-loaded connection takes the stream anyway and h2 holds it until the peer has room.
//! At most one dial per target is in progress; calls that need it wait for it rather than start
//! their own, so a burst on a cold pool opens one connection, not one per call.
//!
//! A connection that ended (peer closed it, GOAWAY, I/O error) is dropped from the pool the next
//! time a call looks; the call after a failure dials again.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use h2::client::SendRequest;
use local_sync::oneshot;

use super::connector::{dial, Connection, DialSettings};
use crate::metrics::ShardMetrics;

/// One target's pool on one shard.
pub struct TargetPool {
    /// `host:port` as the route names it.
    authority: Rc<str>,
    conns: RefCell<Vec<Rc<Pooled>>>,
    /// Calls in flight to this target, for power-of-two-choices between targets.
    in_flight: Cell<usize>,
    /// `Some` while a dial is in progress: the calls waiting for its result.
    dialing: RefCell<Option<Vec<oneshot::Sender<Result<(), String>>>>>,
    max_connections: usize,
    settings: Rc<DialSettings>,
    metrics: Arc<ShardMetrics>,
}

/// A pooled connection and the streams it carries.
struct Pooled {
    conn: Connection,
    streams: Cell<usize>,
}

impl Pooled {
    fn is_full(&self) -> bool {
        self.streams.get() >= self.conn.send.current_max_send_streams()
    }
}

/// A call's hold on a connection: counts one stream on it and one call on the target until it
/// is dropped.
pub struct Lease {
    pool: Rc<TargetPool>,
    conn: Rc<Pooled>,
    /// This call's own handle for opening its stream.
    pub send: SendRequest<Bytes>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.conn.streams.set(self.conn.streams.get() - 1);
        self.pool.in_flight.set(self.pool.in_flight.get() - 1);
        self.pool.metrics.upstream_streams_in_flight.dec();
    }
}

impl Lease {
    pub fn authority(&self) -> &str {
        &self.pool.authority
    }

    pub fn authority_rc(&self) -> Rc<str> {
        self.pool.authority.clone()
    }

    /// Marks the connection unusable, e.g. after it failed a new stream. The target caused
    /// it, so the close counts as the peer's.
    pub fn retire(&self) {
        self.conn.conn.closed.set(true);
    }
}

impl TargetPool {
    pub fn new(
        authority: &str,
        max_connections: usize,
        settings: Rc<DialSettings>,
        metrics: Arc<ShardMetrics>,
    ) -> Self {
        TargetPool {
            authority: authority.into(),
            conns: RefCell::new(Vec::new()),
            in_flight: Cell::new(0),
            dialing: RefCell::new(None),
            max_connections,
            settings,
            metrics,
        }
    }

    pub fn authority(&self) -> &str {
        &self.authority
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.get()
    }

    /// Open connections (for tests and metrics).
    pub fn connections(&self) -> usize {
        self.conns
            .borrow()
            .iter()
            .filter(|c| !c.conn.closed.get())
            .count()
    }

    /// A connection ready to open one more stream; dials when the policy above says so.
    pub async fn acquire(self: &Rc<Self>) -> Result<Lease, String> {
        // Each round either leases, or waits for a dial that adds a connection (or fails).
        // A connection can die between rounds, so allow a few; a dial failure ends the loop.
        for _ in 0..4 {
            if let Some(conn) = self.choose() {
                let mut send = conn.conn.send.clone();
                // Ready at once unless the connection has failed; then drop it and look again.
                match poll_fn(|cx| send.poll_ready(cx)).await {
                    Ok(()) => return Ok(self.lease(conn, send)),
                    Err(_) => {
                        conn.conn.closed.set(true);
                        continue;
                    }
                }
            }
            self.wait_for_dial().await?;
        }
        Err("connections keep failing as soon as they open".into())
    }

    /// The least-loaded open connection if it may take the stream, or `None` when a new
    /// connection should be (or is being) dialed first.
    fn choose(&self) -> Option<Rc<Pooled>> {
        let mut conns = self.conns.borrow_mut();
        conns.retain(|c| !c.conn.closed.get());
        let best = conns.iter().min_by_key(|c| c.streams.get())?.clone();
        let dialing = self.dialing.borrow().is_some();
        let room_to_grow = conns.len() < self.max_connections;
        (!best.is_full() || (!room_to_grow && !dialing)).then_some(best)
    }

    fn lease(self: &Rc<Self>, conn: Rc<Pooled>, send: SendRequest<Bytes>) -> Lease {
        conn.streams.set(conn.streams.get() + 1);
        self.in_flight.set(self.in_flight.get() + 1);
        self.metrics.upstream_streams_in_flight.inc();
        Lease {
            pool: self.clone(),
            conn,
            send,
        }
    }

    /// Joins the dial in progress, or starts one. The dial runs in its own task so a caller
    /// that gives up (client cancel) cannot strand the others waiting on it.
    async fn wait_for_dial(self: &Rc<Self>) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut dialing = self.dialing.borrow_mut();
            let start = dialing.is_none();
            dialing.get_or_insert_with(Vec::new).push(tx);
            start
        };
        if start {
            let pool = self.clone();
            monoio::spawn(async move {
                let result = dial(&pool.authority, &pool.settings, &pool.metrics).await;
                let outcome = match result {
                    Ok(conn) => {
                        pool.conns.borrow_mut().push(Rc::new(Pooled {
                            conn,
                            streams: Cell::new(0),
                        }));
                        Ok(())
                    }
                    Err(reason) => {
                        pool.metrics.upstream_dial_failures.inc();
                        Err(reason)
                    }
                };
                for waiter in pool.dialing.borrow_mut().take().unwrap_or_default() {
                    let _ = waiter.send(outcome.clone());
                }
            });
        }
        rx.await
            .unwrap_or_else(|_| Err("dial abandoned".to_string()))
    }
}
