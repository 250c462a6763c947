//! One target's HTTP/2 connections on one shard, and the leases calls take on them.
//!
//! # Choosing a connection
//!
//! 1. Usable connections are those not closed and not retiring. Among those carrying fewer
//!    streams than the high watermark (or the peer's `MAX_CONCURRENT_STREAMS`, if lower), two
//!    are drawn at random and the one with fewer streams wins (power of two choices).
//! 2. When every usable connection is at the watermark, one new connection is dialed (up to
//!    `max_connections_per_target`) in the background; the call meanwhile takes the
//!    least-loaded connection if the peer still has room on it, and otherwise waits for the
//!    dial. Past the maximum, the least-loaded connection takes the stream and h2 holds it
//!    until the peer has room.
//! 3. At most one dial per target is in progress; calls that need it wait for it, so a burst
//!    on a cold pool opens one connection, not one per call.
//! 4. With keepalive on (gRPC A8), a connection idle longer than `keepalive_time_ms` is pinged
//!    before it carries a stream again; no ACK within `keepalive_timeout_ms` closes it.
//!
//! # Failure
//!
//! A failed dial starts exponential backoff with jitter (`dial_backoff_*`); until it ends,
//! calls that would need a new connection fail fast with UNAVAILABLE instead of dialing.
//! `eject_after_failures` consecutive dial failures or keepalive timeouts eject the target:
//! [`Upstreams::pick`](super::Upstreams::pick) skips it while the route names others.
//!
//! # Maintenance (once a second, off the call path)
//!
//! Idle connections close after `idle_timeout_ms` (down to the minimum); connections past
//! `max_connection_age_ms` are replaced (the new one dialed first) and then drain; when the
//! streams would fit on one connection fewer below the low watermark, the least-loaded one
//! drains; the minimum is kept dialed; hostnames are resolved again every `dns_refresh_ms`
//! and connections to addresses that vanished drain.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};

use local_sync::oneshot;

use super::connector::{dial, resolve, Connection, DialSettings, Ended};
use super::DialError;
use crate::backoff::Backoff;
use crate::config::UpstreamConfig;
use crate::metrics::ShardMetrics;
use crate::rng::Rng;
use crate::wire::{self, Fields, ResponseFuture, SendStream};

/// A target's pool settings, shared by every pool on the shard.
pub struct PoolSettings {
    pub dial: DialSettings,
    pub min_connections: usize,
    pub max_connections: usize,
    pub high_watermark: usize,
    pub low_watermark: usize,
    /// `None`: idle connections stay.
    pub idle_timeout: Option<Duration>,
    pub max_age: Option<Duration>,
    /// `None`: keepalive pings off.
    pub keepalive_time: Option<Duration>,
    pub keepalive_timeout: Duration,
    pub keepalive_without_calls: bool,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub eject_after: u32,
    pub dns_refresh: Duration,
    /// The client config for `https://` targets (reloads swap it; read once per dial).
    pub tls: crate::tls::Local<rustls::ClientConfig>,
}

impl PoolSettings {
    pub fn new(c: &UpstreamConfig, tls: crate::tls::Local<rustls::ClientConfig>) -> PoolSettings {
        let ms = Duration::from_millis;
        let nonzero = |v: u64| (v > 0).then(|| ms(v));
        PoolSettings {
            dial: DialSettings::new(c),
            min_connections: c.min_connections_per_target,
            max_connections: c.max_connections_per_target,
            high_watermark: c.stream_high_watermark,
            low_watermark: c.stream_low_watermark,
            idle_timeout: nonzero(c.idle_timeout_ms),
            max_age: nonzero(c.max_connection_age_ms),
            keepalive_time: nonzero(c.keepalive_time_ms),
            keepalive_timeout: ms(c.keepalive_timeout_ms),
            keepalive_without_calls: c.keepalive_without_calls,
            backoff_initial: ms(c.dial_backoff_initial_ms),
            backoff_max: ms(c.dial_backoff_max_ms),
            eject_after: c.eject_after_failures,
            dns_refresh: ms(c.dns_refresh_ms),
            tls,
        }
    }
}

/// One target's pool on one shard.
pub struct TargetPool {
    /// The target as the pools key it: `host:port`, or `https://host:port` for TLS.
    authority: Rc<str>,
    /// `host:port`: what is resolved and dialed.
    host_port: Rc<str>,
    /// TLS to this target: the name its certificate must be valid for (SNI), or why the host
    /// cannot be one. `None`: plaintext.
    tls: Option<Result<rustls::pki_types::ServerName<'static>, String>>,
    conns: RefCell<Vec<Rc<Pooled>>>,
    /// Calls in flight to this target, for power-of-two-choices between targets.
    in_flight: Cell<usize>,
    /// `Some` while a dial is in progress: the calls waiting for its result.
    dialing: RefCell<Option<Vec<DialWaiter>>>,
    /// Resolved addresses; dials rotate through them. Empty until the first dial.
    addrs: RefCell<Vec<SocketAddr>>,
    next_addr: Cell<usize>,
    resolved_at: Cell<Option<Instant>>,
    /// Consecutive dial failures and keepalive timeouts, and the backoff they set.
    failures: Cell<u32>,
    backoff: RefCell<Backoff>,
    retry_at: Cell<Option<Instant>>,
    last_error: RefCell<Option<DialError>>,
    /// This target's keepalive interval: starts at the configured one, doubles on
    /// `too_many_pings`.
    keepalive_time: Cell<Option<Duration>>,
    /// Last time a call used or finished on this pool (for evicting unused pools).
    last_used: Cell<Instant>,
    /// Replaced by a reload (for dials and leases from then on).
    settings: RefCell<Rc<PoolSettings>>,
    metrics: Arc<ShardMetrics>,
    rng: Rc<Rng>,
}

/// A call waiting for a dial: told `Ok` when a connection was added, or why not.
type DialWaiter = oneshot::Sender<Result<(), DialError>>;

/// A pooled connection and the streams it carries.
pub(crate) struct Pooled {
    conn: Connection,
    streams: Cell<usize>,
    /// When the connection last went from some streams to none (or opened).
    idle_since: Cell<Instant>,
    /// No new streams; closes when its streams are done.
    retiring: Cell<bool>,
    /// When it is to be rotated (`max_connection_age`, jittered ±10%).
    rotate_at: Option<Instant>,
}

impl Pooled {
    fn usable(&self) -> bool {
        !self.conn.closed.get() && !self.retiring.get()
    }

    /// The streams calls may have open here: the peer's limit, less the abandoned streams
    /// still open for their grace (`upstream.cancel_grace_ms`), which no lease counts.
    fn peer_limit(&self) -> usize {
        let h2 = &self.conn.h2;
        h2.peer_max_streams().saturating_sub(h2.abandoned_streams())
    }
}

/// A call's hold on a connection: counts one stream on it and one call on the target until it
/// is dropped.
pub struct Lease {
    pool: Rc<TargetPool>,
    conn: Rc<Pooled>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let streams = self.conn.streams.get() - 1;
        self.conn.streams.set(streams);
        let now = crate::clock::coarse();
        if streams == 0 {
            self.conn.idle_since.set(now);
        }
        self.pool.in_flight.set(self.pool.in_flight.get() - 1);
        self.pool.last_used.set(now);
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

    /// Stops new streams on this connection (it failed or went away); it closes when the
    /// streams on it are done.
    pub fn retire(&self) {
        self.conn.retiring.set(true);
    }

    pub fn pool(&self) -> &Rc<TargetPool> {
        &self.pool
    }

    /// Whether the stream `id` failed without the target processing it (it was above the
    /// target's GOAWAY last stream id).
    pub fn never_processed(&self, id: u32) -> bool {
        self.conn.conn.never_processed(id)
    }

    /// Opens the call's stream on the leased connection.
    pub fn send_request(
        &self,
        head: &Fields,
        end: bool,
    ) -> Result<(ResponseFuture, SendStream), wire::Error> {
        self.conn.conn.h2.send_request(head, end)
    }
}

/// What [`TargetPool::choose`] decided.
enum Choice {
    Use(Rc<Pooled>),
    /// Wait for the dial in progress (or start one).
    Dial,
    /// In backoff after failed dials: fail fast with this error.
    Backoff(DialError),
}

impl TargetPool {
    /// The settings for what this pool does next.
    fn settings(&self) -> Rc<PoolSettings> {
        self.settings.borrow().clone()
    }

    /// A reload's settings: for leases and dials from now on; the keepalive interval too
    /// (connections pick it up at their next ping).
    pub fn reconfigure(&self, settings: Rc<PoolSettings>) {
        self.keepalive_time.set(settings.keepalive_time);
        *self.settings.borrow_mut() = settings;
    }

    pub fn new(
        authority: &str,
        host_port: &str,
        tls: bool,
        settings: Rc<PoolSettings>,
        metrics: Arc<ShardMetrics>,
        rng: Rc<Rng>,
    ) -> Self {
        let tls = tls.then(|| {
            let host = crate::config::split_host_port(host_port).map_or(host_port, |(h, _)| h);
            rustls::pki_types::ServerName::try_from(host.to_string())
                .map_err(|e| format!("`{host}` cannot be a TLS server name: {e}"))
        });
        TargetPool {
            authority: authority.into(),
            host_port: host_port.into(),
            tls,
            conns: RefCell::new(Vec::new()),
            in_flight: Cell::new(0),
            dialing: RefCell::new(None),
            addrs: RefCell::new(Vec::new()),
            next_addr: Cell::new(0),
            resolved_at: Cell::new(None),
            failures: Cell::new(0),
            backoff: RefCell::new(Backoff::new(settings.backoff_initial, settings.backoff_max)),
            retry_at: Cell::new(None),
            last_error: RefCell::new(None),
            keepalive_time: Cell::new(settings.keepalive_time),
            last_used: Cell::new(Instant::now()),
            settings: RefCell::new(settings),
            metrics,
            rng,
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
        self.conns.borrow().iter().filter(|c| c.usable()).count()
    }

    /// Whether passive health has ejected this target: enough consecutive failures, and its
    /// backoff has not ended.
    pub fn is_ejected(&self) -> bool {
        self.failures.get() >= self.settings().eject_after.max(1)
            && self.retry_at.get().is_some_and(|t| t > Instant::now())
    }

    /// A connection ready to open one more stream; dials when the policy says so.
    pub async fn acquire(self: &Rc<Self>) -> Result<Lease, DialError> {
        self.last_used.set(crate::clock::coarse());
        // Each round either leases, or waits for a dial that adds a connection (or fails). A
        // pool fills up one dial at a time, and a connection can die between rounds: allow a
        // round per connection the pool may hold, and a few more; a dial failure ends the loop.
        for _ in 0..self.settings().max_connections + 4 {
            let conn = match self.choose() {
                Choice::Use(conn) => conn,
                Choice::Dial => {
                    self.wait_for_dial().await?;
                    continue;
                }
                Choice::Backoff(message) => return Err(message),
            };
            if !self.fresh_enough(&conn).await {
                continue;
            }
            // Ready at once unless the target's stream limit is reached (then the call waits
            // for a stream to end), or the connection failed or got GOAWAY: stop using it.
            match poll_fn(|cx| conn.conn.h2.poll_ready(cx)).await {
                Ok(()) => return Ok(self.lease(conn)),
                Err(_) => conn.retiring.set(true),
            }
        }
        Err(DialError::KeepFailing)
    }

    fn choose(self: &Rc<Self>) -> Choice {
        let conns = self.conns.borrow();
        let high = self.settings().high_watermark;
        let below = |c: &&Rc<Pooled>| c.usable() && c.streams.get() < high.min(c.peer_limit());
        let room = conns.iter().filter(below).count();
        if room > 0 {
            // Power of two choices among the connections below the watermark.
            let a = conns.iter().filter(below).nth(self.rng.below(room));
            let b = conns.iter().filter(below).nth(self.rng.below(room));
            let best = match (a, b) {
                (Some(a), Some(b)) if b.streams.get() < a.streams.get() => b,
                (Some(a), _) => a,
                _ => unreachable!("room > 0"),
            };
            return Choice::Use(best.clone());
        }
        let least = conns
            .iter()
            .filter(|c| c.usable())
            .min_by_key(|c| c.streams.get())
            .cloned();
        let usable = conns.iter().filter(|c| c.usable()).count();
        drop(conns);
        let dialing = self.dialing.borrow().is_some();
        let may_grow = usable < self.settings().max_connections;
        if may_grow && !dialing && self.in_backoff().is_none() {
            self.start_dial();
        }
        let dialing = self.dialing.borrow().is_some();
        match least {
            // The peer still has room on it: no need to wait for the new connection.
            Some(c) if c.streams.get() < c.peer_limit() || !dialing => Choice::Use(c),
            Some(_) => Choice::Dial,
            None if dialing => Choice::Dial,
            None => match self.in_backoff() {
                Some(message) => Choice::Backoff(message),
                None => Choice::Dial,
            },
        }
    }

    /// The error calls get while dials are in backoff.
    fn in_backoff(&self) -> Option<DialError> {
        let retry_at = self.retry_at.get()?;
        let now = Instant::now();
        (retry_at > now).then(|| DialError::Backoff {
            last: Box::new(
                self.last_error
                    .borrow()
                    .clone()
                    .unwrap_or(DialError::Abandoned),
            ),
            failures: self.failures.get(),
            retry_in: retry_at - now,
        })
    }

    /// A (gRPC A8) connection idle longer than the keepalive time is pinged before use.
    /// Returns false when the ping failed and the connection was closed.
    async fn fresh_enough(self: &Rc<Self>, conn: &Rc<Pooled>) -> bool {
        let Some(keepalive) = self.keepalive_time.get() else {
            return true;
        };
        if conn.streams.get() > 0 || conn.idle_since.get().elapsed() < keepalive {
            return true;
        }
        // Whatever the ping's outcome, the connection is no longer idle-stale.
        conn.idle_since.set(Instant::now());
        match conn.conn.ping(self.settings().keepalive_timeout).await {
            Ok(_) => true,
            Err(reason) => {
                self.keepalive_failed(conn, reason);
                false
            }
        }
    }

    fn keepalive_failed(&self, conn: &Pooled, reason: String) {
        self.metrics.upstream_keepalive_timeouts.inc();
        eprintln!(
            "ringway: upstream {} ({}): {reason}; closing",
            self.authority, conn.conn.remote
        );
        conn.conn.abort();
        self.failed(DialError::Keepalive {
            addr: conn.conn.remote,
            reason,
        });
    }

    fn lease(self: &Rc<Self>, conn: Rc<Pooled>) -> Lease {
        conn.streams.set(conn.streams.get() + 1);
        self.in_flight.set(self.in_flight.get() + 1);
        self.metrics.upstream_streams_in_flight.inc();
        Lease {
            pool: self.clone(),
            conn,
        }
    }

    /// Joins the dial in progress, or starts one.
    async fn wait_for_dial(self: &Rc<Self>) -> Result<(), DialError> {
        if self.dialing.borrow().is_none() {
            if let Some(message) = self.in_backoff() {
                return Err(message);
            }
            self.start_dial();
        }
        let (tx, rx) = oneshot::channel();
        if let Some(waiters) = self.dialing.borrow_mut().as_mut() {
            waiters.push(tx);
        } else {
            // The dial finished between the check and now.
            return Ok(());
        }
        rx.await.unwrap_or(Err(DialError::Abandoned))
    }

    /// Starts a dial in its own task, so a caller that gives up (client cancel) cannot strand
    /// the others waiting on it.
    fn start_dial(self: &Rc<Self>) {
        {
            let mut dialing = self.dialing.borrow_mut();
            if dialing.is_some() {
                return;
            }
            *dialing = Some(Vec::new());
        }
        let pool = self.clone();
        monoio::spawn(async move {
            let outcome = pool.dial_one().await;
            for waiter in pool.dialing.borrow_mut().take().unwrap_or_default() {
                let _ = waiter.send(outcome.clone());
            }
        });
    }

    async fn dial_one(self: &Rc<Self>) -> Result<(), DialError> {
        let addr = match self.next_address().await {
            Ok(addr) => addr,
            Err(reason) => {
                self.metrics.upstream_dial_failures.inc();
                self.failed(reason.clone());
                return Err(reason);
            }
        };
        let weak: Weak<TargetPool> = Rc::downgrade(self);
        let on_end = move |ended: Ended| {
            if let Some(pool) = weak.upgrade() {
                pool.connection_ended(ended);
            }
        };
        let tls = match &self.tls {
            None => None,
            Some(Ok(name)) => Some((self.settings().tls.get(), name.clone())),
            Some(Err(why)) => {
                let reason = DialError::Resolve(why.clone());
                self.metrics.upstream_dial_failures.inc();
                self.failed(reason.clone());
                return Err(reason);
            }
        };
        match dial(
            addr,
            &self.settings().dial,
            &self.metrics,
            self.authority.clone(),
            self.host_port.clone(),
            tls,
            on_end,
        )
        .await
        {
            Ok(conn) => {
                self.failures.set(0);
                self.retry_at.set(None);
                self.backoff.borrow_mut().reset();
                let now = Instant::now();
                let rotate_at = self.settings().max_age.map(|age| {
                    // ±10% so connections dialed together are not all rotated together.
                    let tenth = age.as_millis() as u64 / 10;
                    let jitter = self.rng.next_u64() % (2 * tenth + 1);
                    now + age - Duration::from_millis(tenth) + Duration::from_millis(jitter)
                });
                let pooled = Rc::new(Pooled {
                    conn,
                    streams: Cell::new(0),
                    idle_since: Cell::new(now),
                    retiring: Cell::new(false),
                    rotate_at,
                });
                if self.settings().keepalive_time.is_some() {
                    monoio::spawn(keepalive(Rc::downgrade(self), Rc::downgrade(&pooled)));
                }
                self.conns.borrow_mut().push(pooled);
                Ok(())
            }
            Err(reason) => {
                self.metrics.upstream_dial_failures.inc();
                self.failed(reason.clone());
                Err(reason)
            }
        }
    }

    /// Counts a failure and sets the backoff before the next dial.
    fn failed(&self, reason: DialError) {
        let failures = self.failures.get() + 1;
        self.failures.set(failures);
        let delay = self.backoff.borrow_mut().next_delay(&self.rng);
        self.retry_at.set(Some(Instant::now() + delay));
        if failures == self.settings().eject_after {
            eprintln!(
                "ringway: upstream {} ejected after {failures} consecutive failures: {reason}",
                self.authority,
            );
        }
        *self.last_error.borrow_mut() = Some(reason);
    }

    fn connection_ended(&self, ended: Ended) {
        if ended.too_many_pings {
            if let Some(current) = self.keepalive_time.get() {
                let doubled = current * 2;
                self.keepalive_time.set(Some(doubled));
                eprintln!(
                    "ringway: upstream {} sent GOAWAY ENHANCE_YOUR_CALM (too_many_pings); \
                     keepalive interval doubled to {} ms",
                    self.authority,
                    doubled.as_millis()
                );
            }
        }
    }

    /// The address for the next dial: resolved on first use and when the refresh is due;
    /// several addresses are used in turn.
    async fn next_address(&self) -> Result<SocketAddr, DialError> {
        if self.addrs.borrow().is_empty() {
            let addrs = resolve(&self.host_port, self.settings().dial.timeout).await?;
            *self.addrs.borrow_mut() = addrs;
            self.resolved_at.set(Some(Instant::now()));
        }
        let addrs = self.addrs.borrow();
        let i = self.next_addr.get();
        self.next_addr.set(i.wrapping_add(1));
        Ok(addrs[i % addrs.len()])
    }

    /// Housekeeping, called by the shard's upstream task about once a second. Returns false
    /// when the pool is empty and unused, so it can be dropped.
    pub async fn maintain(self: &Rc<Self>) -> bool {
        let now = Instant::now();
        let s = &*self.settings();
        self.refresh_addresses(now).await;
        {
            let mut conns = self.conns.borrow_mut();
            // Drop connections that ended, and retiring ones with nothing left on them.
            conns.retain(|c| {
                let keep = !(c.conn.closed.get() || c.retiring.get() && c.streams.get() == 0);
                if !keep {
                    c.conn.closing_locally.set(!c.conn.closed.get());
                }
                keep
            });
        }
        // Rotation: dial the replacement first, then retire the old one.
        let due: Vec<Rc<Pooled>> = self
            .conns
            .borrow()
            .iter()
            .filter(|c| c.usable() && c.rotate_at.is_some_and(|t| t <= now))
            .cloned()
            .collect();
        for old in due {
            if self.usable_count() <= 1 && self.in_backoff().is_none() {
                let _ = self.wait_for_dial().await;
            }
            old.retiring.set(true);
        }
        let min = s.min_connections;
        // Idle connections close, down to the minimum.
        if let Some(idle) = s.idle_timeout {
            for c in self.conns.borrow().iter() {
                if self.usable_count() <= min {
                    break;
                }
                if c.usable() && c.streams.get() == 0 && c.idle_since.get().elapsed() >= idle {
                    c.retiring.set(true);
                }
            }
        }
        // Shrink: the streams would fit on one connection fewer below the low watermark.
        let usable = self.usable_count();
        let streams: usize = self
            .conns
            .borrow()
            .iter()
            .filter(|c| c.usable())
            .map(|c| c.streams.get())
            .sum();
        if usable > min.max(1) && streams <= s.low_watermark * (usable - 1) {
            if let Some(c) = self
                .conns
                .borrow()
                .iter()
                .filter(|c| c.usable())
                .min_by_key(|c| c.streams.get())
            {
                c.retiring.set(true);
            }
        }
        // Close what retired and is empty now.
        self.conns.borrow_mut().retain(|c| {
            let done = c.retiring.get() && c.streams.get() == 0;
            if done {
                c.conn.closing_locally.set(true);
            }
            !done
        });
        // Keep the minimum dialed.
        if self.usable_count() < min
            && self.dialing.borrow().is_none()
            && self.in_backoff().is_none()
        {
            self.start_dial();
        }
        let unused = self.conns.borrow().is_empty()
            && self.in_flight.get() == 0
            && self.dialing.borrow().is_none()
            && min == 0
            && self.last_used.get().elapsed()
                > s.idle_timeout
                    .unwrap_or(Duration::MAX)
                    .max(Duration::from_secs(60));
        !unused
    }

    fn usable_count(&self) -> usize {
        self.conns.borrow().iter().filter(|c| c.usable()).count()
    }

    /// Resolves a hostname target again when due; connections to addresses that vanished
    /// drain.
    async fn refresh_addresses(&self, now: Instant) {
        if self.host_port.parse::<SocketAddr>().is_ok() {
            return;
        }
        let due = self
            .resolved_at
            .get()
            .is_some_and(|t| now.duration_since(t) >= self.settings().dns_refresh);
        if !due {
            return;
        }
        self.resolved_at.set(Some(now));
        let Ok(addrs) = resolve(&self.host_port, self.settings().dial.timeout).await else {
            // Keep the old addresses: a resolver hiccup must not drain healthy connections.
            return;
        };
        for c in self.conns.borrow().iter() {
            if !addrs.contains(&c.conn.remote) && !c.retiring.get() {
                eprintln!(
                    "ringway: upstream {}: {} no longer resolves; draining its connection",
                    self.authority, c.conn.remote
                );
                c.retiring.set(true);
            }
        }
        *self.addrs.borrow_mut() = addrs;
    }
}

/// gRPC A8 keepalive for one connection: a PING every keepalive interval (only while it
/// carries calls, unless `keepalive_without_calls`); no ACK in time closes it.
async fn keepalive(pool: Weak<TargetPool>, conn: Weak<Pooled>) {
    loop {
        let Some(interval) = pool.upgrade().and_then(|p| p.keepalive_time.get()) else {
            return;
        };
        monoio::time::sleep(interval).await;
        let (Some(pool), Some(conn)) = (pool.upgrade(), conn.upgrade()) else {
            return;
        };
        if conn.conn.closed.get() {
            return;
        }
        if conn.streams.get() == 0 && !pool.settings().keepalive_without_calls {
            continue;
        }
        if let Err(reason) = conn.conn.ping(pool.settings().keepalive_timeout).await {
            pool.keepalive_failed(&conn, reason);
            return;
        }
    }
}
