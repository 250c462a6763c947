//! One shard per core: a pinned thread running its own monoio runtime, its own listener, its own
//! Redis connection and its own upstream pools.
//!
//! Nothing a call touches is shared with another shard: the [`Shard`] lives in an `Rc` on its
//! thread. What crosses threads is for control only: the read-only [`Config`], the startup
//! report, the drain flag (read by the shard's control task, not per call), and the shard's
//! [`ShardMetrics`], which only this shard writes (see [`metrics`](crate::metrics)).
//!
//! # Lifecycle
//!
//! Start: pin, build the runtime, adopt the listeners (plaintext and TLS, either may be off),
//! start the Redis connection, report `Started`. Serve: accept on both until the drain starts.
//! Drain: close the listeners (new connections
//! are refused), tell every client connection to GOAWAY ([`LocalBroadcast`](crate::shutdown::LocalBroadcast)), wait until they
//! have all closed or `drain_timeout_ms` has passed, then return — which ends the runtime and
//! with it anything still open.

use std::cell::RefCell;
use std::io;
use std::net::TcpListener;
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use monoio::{FusionDriver, RuntimeBuilder};

use crate::access_log::{self, ShardLog};
use crate::balance::{Balancer, Handoff, Inbox};
use crate::config::{Config, IoDriver};
use crate::downstream;
use crate::metrics::{Latency, ShardMetrics, PUBLISH_INTERVAL};
use crate::proxy::{Proxy, ReplayPool};
use crate::redis::RedisClient;
use crate::rng::Rng;
use crate::route::Router;
use crate::shutdown::{Drain, POLL_INTERVAL};
use crate::upstream::Upstreams;

/// io_uring submission queue entries per shard. Each queued operation takes one; 1024 covers a
/// turn in which hundreds of connections read and write at once, and costs ~100 KiB.
const URING_ENTRIES: u32 = 1024;

/// A shard: the server of its client connections, the proxy their calls go through, and
/// what its housekeeping needs.
pub struct Shard {
    pub id: usize,
    /// Client connections: settings, parked call tasks, the drain signal.
    pub server: Rc<downstream::Server<Proxy>>,
    /// What each call goes through: router, upstream pools, latency, access log.
    pub proxy: Rc<Proxy>,
    /// This shard's counters; written here only, read by the admin thread.
    pub metrics: Arc<ShardMetrics>,
    /// Most client connections this shard keeps open (its share of the process cap).
    pub connection_cap: usize,
    /// Spreads new connections across shards (`downstream.balance`); none: one shard, or off.
    pub balancer: Option<Arc<Balancer>>,
    /// `downstream.drain_delay_ms`: a drain says so this long before connections get GOAWAY.
    pub drain_delay: std::cell::Cell<Duration>,
    /// The configuration as reloads leave it: looked at every control tick.
    live: crate::live::Local<Config>,
    /// Certificates and keys (for the upstream pools a reload rebuilds).
    tls: Arc<crate::tls::Material>,
}

impl Shard {
    /// A reload's configuration, for new connections and calls (see [`crate::reload`]).
    fn reconfigure(&self, config: &Config) {
        *self.proxy.calls.borrow_mut() = Rc::new(crate::proxy::CallSettings::new(config));
        self.proxy.router.reconfigure(config);
        self.proxy
            .upstreams
            .reconfigure(&config.upstream, self.tls.client());
        if let Some(log) = &self.proxy.access_log {
            log.reconfigure(&config.access_log);
        }
        self.server
            .set_settings(downstream::Settings::new(&config.downstream));
        self.drain_delay
            .set(Duration::from_millis(config.downstream.drain_delay_ms));
    }
}

/// What a shard needs from the process besides its listener.
#[derive(Clone)]
pub struct ShardContext {
    pub config: Arc<Config>,
    pub drain: Arc<Drain>,
    pub access_log: Option<access_log::Sink>,
    /// This shard's share of the client connection cap.
    pub connection_cap: usize,
    /// Certificates and keys for both hops; reloads swap them.
    pub tls: Arc<crate::tls::Material>,
    /// Shared by all shards when connections are balanced across them.
    pub balancer: Option<Arc<Balancer>>,
    /// The configuration as reloads leave it.
    pub live: Arc<crate::live::Swap<Config>>,
}

/// A shard's listening sockets: plaintext and TLS, either of which may be off.
pub struct Listeners {
    /// Usually one each (or none, when off); more after an upgrade from a process that ran
    /// more shards than this one.
    pub plain: Vec<TcpListener>,
    pub tls: Vec<TcpListener>,
    /// Connections other shards hand over (when balanced).
    pub inbox: Option<Inbox>,
}

/// What a shard reports once it is accepting.
#[derive(Debug)]
pub struct Started {
    pub id: usize,
    /// "io_uring …", "epoll (legacy driver; io_uring unavailable)" or "epoll (io_driver = …)".
    pub driver: &'static str,
    pub core: Option<usize>,
}

/// Starts shard `id` on its own thread, pinned to `core` when given, serving `listeners`.
/// It reports `Started` (or the error that stopped it) on `started`.
pub fn spawn(
    id: usize,
    core: Option<core_affinity::CoreId>,
    listeners: Listeners,
    context: ShardContext,
    metrics: Arc<ShardMetrics>,
    started: Sender<io::Result<Started>>,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("ringway-shard-{id}"))
        .spawn(move || {
            let pinned = core
                .filter(|&c| core_affinity::set_for_current(c))
                .map(|c| c.id);
            if context.config.io_driver == IoDriver::Epoll {
                let runtime = RuntimeBuilder::<monoio::LegacyDriver>::new()
                    .enable_timer()
                    .build();
                match runtime {
                    Ok(mut runtime) => runtime.block_on(run(
                        id,
                        listeners,
                        context,
                        metrics,
                        started,
                        "epoll (io_driver = \"epoll\")",
                        pinned,
                    )),
                    Err(e) => {
                        let _ = started.send(Err(e));
                    }
                }
                return;
            }
            let uring = monoio::utils::detect_uring();
            // Cooperative task running (no interrupt per completion; they are run when the
            // shard enters the kernel anyway) and a single submitter: ~10% less CPU per call
            // (bench: 5.1 → 4.5 µs at 64 in flight, 20.5 → 18.4 µs at 25k calls/s open
            // loop). Kernels before 6.0 refuse the flags: then the ring is built without them.
            let mut tuned = io_uring::IoUring::builder();
            tuned.setup_coop_taskrun().setup_single_issuer();
            let build = |urb: io_uring::Builder| {
                RuntimeBuilder::<FusionDriver>::new()
                    .with_entries(URING_ENTRIES)
                    .uring_builder(urb)
                    .enable_timer()
                    .build()
            };
            let (runtime, driver) = match build(tuned) {
                Ok(runtime) if uring => (Ok(runtime), "io_uring (cooperative task running)"),
                Ok(runtime) => (Ok(runtime), "epoll (legacy driver; io_uring unavailable)"),
                Err(_) => (build(io_uring::IoUring::builder()), "io_uring"),
            };
            let mut runtime = match runtime {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = started.send(Err(e));
                    return;
                }
            };
            runtime.block_on(run(
                id, listeners, context, metrics, started, driver, pinned,
            ));
        })
}

async fn run(
    id: usize,
    listeners: Listeners,
    context: ShardContext,
    metrics: Arc<ShardMetrics>,
    started: Sender<io::Result<Started>>,
    driver: &'static str,
    core: Option<usize>,
) {
    let adopt = |listeners: Vec<TcpListener>| -> io::Result<Vec<Accepting>> {
        listeners.into_iter().map(Accepting::new).collect()
    };
    let (plain, tls) = match (adopt(listeners.plain), adopt(listeners.tls)) {
        (Ok(plain), Ok(tls)) => (plain, tls),
        (Err(e), _) | (_, Err(e)) => {
            let _ = started.send(Err(e));
            return;
        }
    };
    let config = context.config;
    let rng = Rc::new(Rng::new(id as u64));
    let cache = crate::route::cache_for(&config, metrics.clone());
    let pushes = cache
        .clone()
        .map(|cache| -> crate::redis::PushHandler { Rc::new(move |push| cache.on_push(push)) });
    let redis = RedisClient::start(&config.redis, rng.clone(), metrics.clone(), pushes);
    // Serve only once the first Redis connection attempt is over (made, or failed within its
    // timeout), so calls right after start do not fail for a connection still being set up.
    let settle = Duration::from_millis(2 * config.redis.connect_timeout_ms);
    let asked = Instant::now();
    while !redis.first_attempt_done() && asked.elapsed() < settle {
        monoio::time::sleep(Duration::from_millis(1)).await;
    }
    let upstreams = Rc::new(Upstreams::new(
        &config.upstream,
        context.tls.client(),
        rng.clone(),
        metrics.clone(),
    ));
    let proxy = Rc::new(Proxy {
        shard: id,
        // Validated with the config.
        calls: RefCell::new(Rc::new(crate::proxy::CallSettings::new(&config))),
        router: Router::new(&config, redis, metrics.clone(), cache),
        upstreams: upstreams.clone(),
        metrics: metrics.clone(),
        latency: RefCell::new(Latency::default()),
        access_log: context
            .access_log
            .map(|sink| ShardLog::new(sink, &config.access_log)),
        replays: ReplayPool::default(),
        drain: context.drain.clone(),
        health_watches: Default::default(),
    });
    let mut server = downstream::Server::new(
        downstream::Settings::new(&config.downstream),
        proxy.clone(),
        metrics.clone(),
        rng,
    );
    server.tls = context.tls.server();
    let server = Rc::new(server);
    let shard = Rc::new(Shard {
        id,
        server,
        proxy,
        metrics,
        connection_cap: context.connection_cap,
        balancer: context.balancer,
        drain_delay: std::cell::Cell::new(Duration::from_millis(config.downstream.drain_delay_ms)),
        live: crate::live::Local::new(context.live.clone()),
        tls: context.tls.clone(),
    });
    monoio::spawn(control(shard.clone(), context.drain));
    monoio::spawn(upstreams.maintain_forever());
    let _ = started.send(Ok(Started { id, driver, core }));

    accept_until_drain(&shard, plain, tls, listeners.inbox).await;

    // Draining: the listener is closed; wait for client connections to finish.
    let deadline = Instant::now() + Duration::from_millis(config.downstream.drain_timeout_ms);
    while shard.metrics.downstream_open.get() > 0 && Instant::now() < deadline {
        monoio::time::sleep(POLL_INTERVAL).await;
    }
    let left = shard.metrics.downstream_open.get();
    if left > 0 {
        eprintln!("ringway: shard {id}: drain timeout, closing {left} connections");
    }
    shard.proxy.publish();
}

/// A listening socket as a shard accepts on it: polled for readiness through the runtime,
/// accepted from with a non-blocking `accept(2)`.
///
/// Why not an io_uring accept: one in flight when the drain (or an upgrade) stops the loop is
/// cancelled, and if it had already taken a connection, monoio drops the result — the
/// descriptor is never closed and the client waits until the process exits, then is reset.
/// A readiness poll holds nothing: cancelled, it loses no connection, and a connection still
/// queued goes to the next process that accepts on the socket (an upgrade's successor).
/// The cost is one syscall more per new connection, never per call.
struct Accepting {
    polled: monoio::net::TcpListener,
    socket: TcpListener,
}

impl Accepting {
    fn new(socket: TcpListener) -> io::Result<Accepting> {
        socket.set_nonblocking(true)?;
        let polled = monoio::net::TcpListener::from_std(socket.try_clone()?)?;
        Ok(Accepting { polled, socket })
    }

    /// The next connection waiting on the socket.
    async fn accept(&self) -> io::Result<std::net::TcpStream> {
        loop {
            match self.socket.accept() {
                Ok((stream, _)) => return Ok(stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.polled.readable(false).await?
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Accepts client connections on every listener until the drain starts; then drops them.
///
/// Each listener has its own loop, and a loop waits on readiness only (see [`Accepting`]), so
/// the drain cancels nothing that holds a connection.
async fn accept_until_drain(
    shard: &Rc<Shard>,
    plain: Vec<Accepting>,
    tls: Vec<Accepting>,
    inbox: Option<Inbox>,
) {
    let mut drain = shard.server.drain.subscribe();
    let loops = plain
        .iter()
        .map(|l| accept_loop(shard, l, false))
        .chain(tls.iter().map(|l| accept_loop(shard, l, true)));
    let all = futures_util::future::join(
        futures_util::future::join_all(loops),
        inbox_loop(shard, inbox),
    );
    monoio::select! {
        _ = all => {},
        _ = &mut drain => {},
    }
}

/// Accepts on `listener` for as long as it is polled; `over_tls`: its connections start with a
/// TLS handshake.
async fn accept_loop(shard: &Rc<Shard>, listener: &Accepting, over_tls: bool) {
    // Accept errors such as EMFILE are transient: log the first of a streak, back off briefly
    // so the loop does not spin, and keep serving.
    let mut failing = false;
    loop {
        match listener.accept().await {
            Ok(stream) => {
                failing = false;
                match &shard.balancer {
                    Some(balancer) => {
                        let to = balancer.assign(shard.id);
                        if to == shard.id {
                            adopt(shard, stream, over_tls);
                        } else {
                            hand_off(shard, balancer, to, stream, over_tls);
                        }
                    }
                    None => adopt(shard, stream, over_tls),
                }
            }
            Err(e) => {
                if !failing {
                    eprintln!("ringway: shard {}: accept failed: {e}", shard.id);
                }
                failing = true;
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Serves a connection accepted (or handed over) as a std socket on this shard.
fn adopt(shard: &Rc<Shard>, stream: std::net::TcpStream, over_tls: bool) {
    // The legacy (epoll) driver needs non-blocking sockets; io_uring does not.
    let ready = match monoio::utils::is_legacy() {
        false => Ok(()),
        true => stream.set_nonblocking(true),
    };
    match ready.and_then(|()| monoio::net::TcpStream::from_std(stream)) {
        Ok(stream) => serve(shard, stream, over_tls),
        Err(_) => {
            if let Some(balancer) = &shard.balancer {
                balancer.closed(shard.id);
            }
        }
    }
}

/// Serves a client connection on this shard: closed at once (and counted) over the shard's
/// cap, else HTTP/2 (after TLS when `over_tls`) until it closes.
fn serve(shard: &Rc<Shard>, stream: monoio::net::TcpStream, over_tls: bool) {
    let open = Opened(shard.balancer.clone(), shard.id);
    let m = &shard.metrics;
    if m.downstream_open.get() as usize >= shard.connection_cap {
        // Over the cap: close at once, before any HTTP/2, and count it.
        m.downstream_refused.inc();
        return;
    }
    m.downstream_accepted.inc();
    let server = shard.server.clone();
    if over_tls {
        monoio::spawn(async move {
            let _open = open;
            downstream::serve_tls_connection(server, stream).await
        });
    } else {
        monoio::spawn(async move {
            let _open = open;
            downstream::serve_connection(server, stream).await
        });
    }
}

/// A connection the balancer counts on a shard: uncounted when it ends, however it ends.
struct Opened(Option<Arc<Balancer>>, usize);

impl Drop for Opened {
    fn drop(&mut self) {
        if let Some(balancer) = &self.0 {
            balancer.closed(self.1);
        }
    }
}

/// Hands a connection just accepted to shard `to`; served here if it cannot be delivered.
fn hand_off(
    shard: &Rc<Shard>,
    balancer: &Balancer,
    to: usize,
    stream: std::net::TcpStream,
    over_tls: bool,
) {
    match balancer.send(shard.id, to, Handoff { stream, over_tls }) {
        Ok(()) => shard.metrics.downstream_handed_off.inc(),
        Err(back) => adopt(shard, back.stream, back.over_tls),
    }
}

/// Serves the connections other shards hand to this one (none: never returns).
async fn inbox_loop(shard: &Rc<Shard>, inbox: Option<Inbox>) {
    use monoio::io::AsyncReadRent;
    let Some(inbox) = inbox else {
        return std::future::pending().await;
    };
    let bell = inbox
        .bell
        .set_nonblocking(true)
        .and_then(|()| monoio::net::UnixStream::from_std(inbox.bell));
    let mut bell = match bell {
        Ok(bell) => bell,
        Err(e) => {
            eprintln!("ringway: shard {}: no connection inbox: {e}", shard.id);
            return std::future::pending().await;
        }
    };
    let mut buf = vec![0u8; 64];
    loop {
        let (read, b) = bell.read(buf).await;
        buf = b;
        if !matches!(read, Ok(n) if n > 0) {
            // The balancer is gone (the process is ending): nothing more will come.
            return std::future::pending().await;
        }
        while let Ok(Handoff { stream, over_tls }) = inbox.connections.try_recv() {
            adopt(shard, stream, over_tls);
        }
    }
}

/// The shard's housekeeping, off the call path: notices the drain, publishes latency
/// histograms, flushes the access log.
async fn control(shard: Rc<Shard>, drain: Arc<Drain>) {
    let publish_every = (PUBLISH_INTERVAL.as_millis() / POLL_INTERVAL.as_millis()).max(1) as u64;
    let mut tick: u64 = 0;
    loop {
        monoio::time::sleep(POLL_INTERVAL).await;
        crate::clock::tick();
        tick += 1;
        if let Some(config) = shard.live.changed() {
            shard.reconfigure(&config);
        }
        if drain.stops_serving(shard.drain_delay.get()) && !shard.server.drain.has_fired() {
            shard.server.drain.fire();
        }
        if let Some(log) = &shard.proxy.access_log {
            log.flush();
        }
        if tick.is_multiple_of(publish_every) {
            shard.proxy.publish();
        }
    }
}
