//! The load generator's engine: N HTTP/2 connections, M calls in flight, unary gRPC calls.
//!
//! Owns: dialing the target, driving calls in a closed loop (fixed concurrency) or an open
//! loop (fixed rate), recording latencies and outcomes, and the live progress line. It must
//! not know about gateways, Redis or the runner.
//!
//! # Shape
//!
//! `threads` OS threads, each running a tokio current_thread runtime with a `LocalSet`: every
//! task of a thread shares its connections through `Rc`/`Cell`, so the per-call path has no
//! locks and no atomics except one relaxed progress counter per thread (its own cache line).
//! Connections and in-flight slots are dealt round-robin to threads.
//!
//! # Timing
//!
//! 1. All connections are dialed (and their HTTP/2 handshakes done) before the clock starts.
//! 2. Warm-up: calls run as in the measured phase but are not recorded.
//! 3. Measured phase: by count (`requests`, claimed from one shared counter) or by duration.
//! 4. Closed loop: a call's latency runs from its send to its trailers.
//!    Open loop: call *i* of a thread is due at `start + i / rate`; its latency runs from that
//!    intended time, so a stalled system is charged for the calls it kept from being sent
//!    (coordinated omission is not hidden). The service time from the actual send is kept too.
//! 5. A hard deadline (`measured end + drain`) bounds every run: calls still in flight then are
//!    counted as `unfinished`, never waited for.
//!
//! # TLS and new connections
//!
//! With `tls` every connection is TLS (rustls, ALPN `h2`, SNI from the config) and requests
//! say `:scheme https`; the HTTP/2 code is the same, generic over the stream, and the
//! plaintext path is the one it always was. With `new_connections` a "call" is a whole
//! connection: dial, TLS handshake, HTTP/2 handshake, one unary call, close (waited for, at
//! most 1 s). Throughput is then new connections per second — handshakes per second with
//! TLS — and the summary's `handshakes` part has the handshake latency (dial to TLS
//! established) and how many handshakes were full and how many resumed.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client::SendRequest;
use hdrhistogram::Histogram;
use http::{HeaderName, HeaderValue, Uri};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, Semaphore};

use crate::report::{HandshakeSummary, Percentiles, Summary};
use crate::tls::{ClientTls, Negotiated};
use crate::{grpc, h2cfg, procfs};

/// What to run. Every field is per run (all threads together) unless it says otherwise.
#[derive(Clone, Debug)]
pub struct Config {
    pub target: SocketAddr,
    /// The `:authority` sent; defaults to the target address.
    pub authority: Option<String>,
    /// gRPC method path, e.g. `/bench.Echo/Unary`.
    pub path: String,
    /// HTTP/2 connections in total.
    pub connections: usize,
    /// Calls in flight in total (closed loop: exactly; open loop: the most allowed).
    pub concurrency: usize,
    /// Open loop: calls per second in total. `None`: closed loop.
    pub rate: Option<f64>,
    /// Measured calls; `None` means run for `duration`.
    pub requests: Option<u64>,
    /// Measured phase length when `requests` is `None`.
    pub duration: Duration,
    pub warmup: Duration,
    /// Payload bytes per message (the 5-byte gRPC prefix comes on top).
    pub message_bytes: usize,
    /// Extra request headers, e.g. the routing header `jobid: bench`.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// With more than 1: the last of `headers` takes `keys` values, `<value>-0` …
    /// `<value>-<keys - 1>`, call after call in turn (so a gateway looking each call's value
    /// up sees that many keys, and consecutive calls never share one).
    pub keys: usize,
    pub threads: usize,
    /// A call taking longer than this fails as `timeout`.
    pub call_timeout: Duration,
    /// Time allowed after the measured phase for in-flight calls; also bounds count mode
    /// (`requests`), whose measured phase may last at most `duration` + `drain`.
    pub drain: Duration,
    /// Print a progress line every second (on a terminal) or every 5 s (otherwise).
    pub progress: bool,
    /// Dial every connection over TLS with this client config (ALPN h2). `None`: h2c.
    pub tls: Option<ClientTls>,
    /// Every call on a connection of its own, closed after it (see "TLS and new
    /// connections" above); `connections` is then unused.
    pub new_connections: bool,
}

/// Thread-shared run state: the clock and the counters the progress line reads.
struct Shared {
    cfg: Config,
    start: OnceLock<Instant>,
    /// Count mode: measured calls not yet claimed.
    remaining: AtomicI64,
    done: AtomicBool,
    progress: Vec<Padded>,
}

/// One thread's progress counters on their own cache line, so threads never share one.
#[repr(align(128))]
#[derive(Default)]
struct Padded {
    calls: AtomicU64,
    errors: AtomicU64,
}

impl Shared {
    fn start(&self) -> Instant {
        *self.start.get().expect("start is set before calls begin")
    }
    fn warm_end(&self) -> Instant {
        self.start() + self.cfg.warmup
    }
    /// End of the measured phase in duration mode, or the latest allowed end in count mode.
    fn measured_end(&self) -> Instant {
        self.warm_end() + self.cfg.duration
    }
    fn hard_end(&self) -> Instant {
        self.measured_end() + self.cfg.drain
    }
    /// Whether a call starting now (at `now`) belongs to the run, and whether it is recorded.
    fn admit(&self, now: Instant) -> Option<bool> {
        if self.done.load(Ordering::Relaxed) || now >= self.measured_end() {
            return None;
        }
        if now < self.warm_end() {
            return Some(false);
        }
        if self.cfg.requests.is_some() && self.remaining.fetch_sub(1, Ordering::Relaxed) <= 0 {
            self.done.store(true, Ordering::Relaxed);
            return None;
        }
        Some(true)
    }
}

/// One HTTP/2 connection, shared by the slots of one thread; redialed when it dies.
struct Conn {
    addr: SocketAddr,
    tls: Option<ClientTls>,
    /// What the last TLS handshake negotiated.
    negotiated: RefCell<Option<Negotiated>>,
    sender: RefCell<Option<SendRequest<Bytes>>>,
    /// Bumped on every (re)dial, so a slot can tell whether its failure was already handled.
    generation: Cell<u64>,
    /// Set by the current connection's driver task when that connection ends.
    dead: Cell<bool>,
    /// Held while redialing, so one slot redials and the others wait for its result.
    redial: Mutex<()>,
    reconnects: Cell<u64>,
}

impl Conn {
    async fn dial(addr: SocketAddr, tls: Option<ClientTls>) -> Result<Rc<Conn>, String> {
        let conn = Rc::new(Conn {
            addr,
            tls,
            negotiated: RefCell::new(None),
            sender: RefCell::new(None),
            generation: Cell::new(0),
            dead: Cell::new(true),
            redial: Mutex::new(()),
            reconnects: Cell::new(0),
        });
        conn.connect().await?;
        Ok(conn)
    }

    async fn connect(self: &Rc<Self>) -> Result<(), String> {
        let sock = TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("connect {}: {e}", self.addr))?;
        let _ = sock.set_nodelay(true);
        let generation = self.generation.get() + 1;
        let me = Rc::downgrade(self);
        let mark_dead = move || {
            if let Some(c) = me.upgrade() {
                if c.generation.get() == generation {
                    c.dead.set(true);
                }
            }
        };
        let send = match &self.tls {
            None => {
                let (send, driver) = h2_handshake(sock, self.addr).await?;
                tokio::task::spawn_local(async move {
                    driver.await;
                    mark_dead();
                });
                send
            }
            Some(tls) => {
                let (stream, negotiated, _) = tls_handshake(tls, sock, self.addr).await?;
                *self.negotiated.borrow_mut() = Some(negotiated);
                let (send, driver) = h2_handshake(stream, self.addr).await?;
                tokio::task::spawn_local(async move {
                    driver.await;
                    mark_dead();
                });
                send
            }
        };
        *self.sender.borrow_mut() = Some(send);
        self.generation.set(generation);
        self.dead.set(false);
        Ok(())
    }

    /// Redial if the connection of `generation` is still the current one.
    async fn redial(self: &Rc<Self>, generation: u64) -> Result<(), String> {
        let _guard = self.redial.lock().await;
        if self.generation.get() != generation {
            return Ok(());
        }
        self.reconnects.set(self.reconnects.get() + 1);
        let r = self.connect().await;
        if r.is_err() {
            // Back off a little so a dead target does not turn into a connect storm.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        r
    }

    /// A sender for the current connection, with its generation.
    fn current(&self) -> Option<(u64, SendRequest<Bytes>)> {
        if self.dead.get() {
            return None;
        }
        let s = self.sender.borrow();
        s.as_ref().map(|s| (self.generation.get(), s.clone()))
    }
}

/// The HTTP/2 client handshake on `io`: the sender, and the connection's driver (to spawn),
/// which ends when the connection does.
async fn h2_handshake<S>(
    io: S,
    addr: SocketAddr,
) -> Result<(SendRequest<Bytes>, impl Future<Output = ()>), String>
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let (send, connection) = h2cfg::client()
        .handshake::<_, Bytes>(io)
        .await
        .map_err(|e| format!("HTTP/2 handshake with {addr}: {e}"))?;
    Ok((send, async move {
        let _ = connection.await;
    }))
}

/// The TLS client handshake on `sock`: the stream, what it negotiated, and whether the
/// session was resumed. A server that does not choose ALPN `h2` is an error.
async fn tls_handshake(
    tls: &ClientTls,
    sock: TcpStream,
    addr: SocketAddr,
) -> Result<(tokio_rustls::client::TlsStream<TcpStream>, Negotiated, bool), String> {
    let stream = tokio_rustls::TlsConnector::from(tls.config.clone())
        .connect(tls.server_name.clone(), sock)
        .await
        .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
    let conn = &stream.get_ref().1;
    let negotiated = Negotiated::of(conn);
    if negotiated.alpn != "h2" {
        return Err(format!(
            "TLS with {addr}: ALPN {:?}, not h2",
            negotiated.alpn
        ));
    }
    let resumed = conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    Ok((stream, negotiated, resumed))
}

/// What one new connection's handshake took (new-connections mode).
struct Handshake {
    /// From the dial to the TLS session being established (to the TCP connect without TLS).
    took: Duration,
    resumed: bool,
    negotiated: Option<Negotiated>,
}

/// New-connections mode: dial, handshake, one call, close. The close is waited for (1 s at
/// most) so that it is part of the connection's cost and no connection outlives its slot.
async fn one_shot(
    target: SocketAddr,
    tls: Option<&ClientTls>,
    t: &CallTemplate,
) -> (Outcome, Option<Handshake>) {
    let t0 = Instant::now();
    let sock = match TcpStream::connect(target).await {
        Ok(s) => s,
        Err(_) => return (Outcome::Failed("connect".into(), false), None),
    };
    let _ = sock.set_nodelay(true);
    let (handshake, h2) = match tls {
        None => {
            let hs = Handshake {
                took: t0.elapsed(),
                resumed: false,
                negotiated: None,
            };
            (hs, h2_handshake(sock, target).await.map(boxed))
        }
        Some(tls) => match tls_handshake(tls, sock, target).await {
            Ok((stream, negotiated, resumed)) => {
                let hs = Handshake {
                    took: t0.elapsed(),
                    resumed,
                    negotiated: Some(negotiated),
                };
                (hs, h2_handshake(stream, target).await.map(boxed))
            }
            Err(_) => return (Outcome::Failed("tls handshake".into(), false), None),
        },
    };
    let Ok((mut send, driver)) = h2 else {
        return (
            Outcome::Failed("h2 handshake".into(), false),
            Some(handshake),
        );
    };
    let driver = tokio::task::spawn_local(driver);
    let outcome = call(&mut send, t).await;
    // h2 closes the connection (GOAWAY, then the socket) once no sender and no stream is left.
    drop(send);
    let _ = tokio::time::timeout(Duration::from_secs(1), driver).await;
    (outcome, Some(handshake))
}

fn boxed<T>(
    (send, driver): (T, impl Future<Output = ()> + 'static),
) -> (T, std::pin::Pin<Box<dyn Future<Output = ()>>>) {
    (send, Box::pin(driver))
}

/// How one call ended.
enum Outcome {
    Ok,
    /// A failure to count under this key; `true` if the connection should be redialed.
    Failed(String, bool),
}

/// What every call of a thread sends, built once.
struct CallTemplate {
    uri: Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// `keys` > 1: the header whose value changes call by call, its values, and the next one.
    keyed: Option<(HeaderName, Vec<HeaderValue>, Cell<usize>)>,
    body: Bytes,
}

impl CallTemplate {
    fn new(uri: Uri, cfg: &Config) -> Result<CallTemplate, String> {
        let mut headers = cfg.headers.clone();
        let keyed = match (cfg.keys > 1, headers.pop()) {
            (true, Some((name, value))) => {
                let base = value
                    .to_str()
                    .map_err(|_| "--keys: the last header's value is not text".to_string())?;
                let values = (0..cfg.keys)
                    .map(|i| HeaderValue::from_str(&format!("{base}-{i}")))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("--keys: {e}"))?;
                Some((name, values, Cell::new(0)))
            }
            (true, None) => return Err("--keys needs a header (-H NAME=VALUE) to vary".into()),
            (false, last) => {
                headers.extend(last);
                None
            }
        };
        Ok(CallTemplate {
            uri,
            headers,
            keyed,
            body: grpc::framed_message(cfg.message_bytes),
        })
    }

    fn request(&self) -> http::Request<()> {
        let mut req = grpc::request(&self.uri, &self.headers);
        if let Some((name, values, next)) = &self.keyed {
            let i = next.get();
            next.set((i + 1) % values.len());
            req.headers_mut().append(name.clone(), values[i].clone());
        }
        req
    }
}

async fn call(send: &mut SendRequest<Bytes>, t: &CallTemplate) -> Outcome {
    let req = t.request();
    let ready = match send.clone().ready().await {
        Ok(s) => s,
        Err(e) => return Outcome::Failed(h2_key(&e), true),
    };
    *send = ready;
    let (resp, mut stream) = match send.send_request(req, false) {
        Ok(x) => x,
        Err(e) => return Outcome::Failed(h2_key(&e), true),
    };
    if let Err(e) = stream.send_data(t.body.clone(), true) {
        return Outcome::Failed(h2_key(&e), !e.is_reset());
    }
    let resp = match resp.await {
        Ok(r) => r,
        Err(e) => return Outcome::Failed(h2_key(&e), !e.is_reset()),
    };
    if resp.status() != http::StatusCode::OK {
        return Outcome::Failed(format!("http {}", resp.status().as_u16()), false);
    }
    // Trailers-only response: the status is in the headers and the stream has ended.
    if let Some(code) = grpc::status_of(resp.headers()) {
        return status_outcome(code);
    }
    let mut body = resp.into_body();
    while let Some(chunk) = body.data().await {
        match chunk {
            Ok(b) => {
                let _ = body.flow_control().release_capacity(b.len());
            }
            Err(e) => return Outcome::Failed(h2_key(&e), !e.is_reset()),
        }
    }
    match body.trailers().await {
        Ok(Some(tr)) => match grpc::status_of(&tr) {
            Some(code) => status_outcome(code),
            None => Outcome::Failed("no grpc-status".into(), false),
        },
        Ok(None) => Outcome::Failed("no trailers".into(), false),
        Err(e) => Outcome::Failed(h2_key(&e), !e.is_reset()),
    }
}

fn status_outcome(code: u32) -> Outcome {
    if code == 0 {
        Outcome::Ok
    } else {
        Outcome::Failed(format!("{code} {}", grpc::status_name(code)), false)
    }
}

fn h2_key(e: &h2::Error) -> String {
    if e.is_io() {
        "transport".into()
    } else if let Some(r) = e.reason() {
        if e.is_go_away() {
            format!("h2 GOAWAY {r:?}")
        } else {
            format!("h2 RST_STREAM {r:?}")
        }
    } else {
        format!("h2 {e}")
    }
}

/// One thread's recorder. `Rc`-shared by the thread's tasks; no cross-thread access.
struct Recorder {
    latency: RefCell<Histogram<u64>>,
    service: RefCell<Histogram<u64>>,
    errors: RefCell<BTreeMap<String, u64>>,
    ok: Cell<u64>,
    calls: Cell<u64>,
    calls_total: Cell<u64>,
    last_done: Cell<Option<Instant>>,
    /// New-connections mode: handshake latency, and full / resumed handshakes (measured
    /// phase only).
    handshake: RefCell<Histogram<u64>>,
    full: Cell<u64>,
    resumed: Cell<u64>,
    /// What a TLS handshake of this thread negotiated (the first seen).
    negotiated: RefCell<Option<Negotiated>>,
}

/// Highest latency a histogram holds: 60 s (larger values are clamped).
const MAX_NS: u64 = 60_000_000_000;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_NS, 3).expect("static histogram bounds are valid")
}

impl Recorder {
    fn new() -> Self {
        Recorder {
            latency: RefCell::new(histogram()),
            service: RefCell::new(histogram()),
            errors: RefCell::new(BTreeMap::new()),
            ok: Cell::new(0),
            calls: Cell::new(0),
            calls_total: Cell::new(0),
            last_done: Cell::new(None),
            handshake: RefCell::new(histogram()),
            full: Cell::new(0),
            resumed: Cell::new(0),
            negotiated: RefCell::new(None),
        }
    }

    /// Record one new connection's handshake.
    fn record_handshake(&self, recorded: bool, h: Handshake) {
        if self.negotiated.borrow().is_none() && h.negotiated.is_some() {
            *self.negotiated.borrow_mut() = h.negotiated;
        }
        if !recorded {
            return;
        }
        let counter = if h.resumed { &self.resumed } else { &self.full };
        counter.set(counter.get() + 1);
        let ns = (h.took.as_nanos() as u64).clamp(1, MAX_NS);
        self.handshake.borrow_mut().saturating_record(ns);
    }

    /// Record one finished call. `latency` is from the send (closed loop) or the intended
    /// send (open loop); `service` from the actual send, kept apart only in the open loop.
    fn record(
        &self,
        progress: &Padded,
        recorded: bool,
        outcome: &Outcome,
        latency: Duration,
        service: Option<Duration>,
    ) {
        self.calls_total.set(self.calls_total.get() + 1);
        progress.calls.fetch_add(1, Ordering::Relaxed);
        if matches!(outcome, Outcome::Failed(..)) {
            progress.errors.fetch_add(1, Ordering::Relaxed);
        }
        if !recorded {
            return;
        }
        self.calls.set(self.calls.get() + 1);
        self.last_done.set(Some(Instant::now()));
        match outcome {
            Outcome::Ok => {
                self.ok.set(self.ok.get() + 1);
                let ns = (latency.as_nanos() as u64).clamp(1, MAX_NS);
                self.latency.borrow_mut().saturating_record(ns);
                if let Some(s) = service {
                    let ns = (s.as_nanos() as u64).clamp(1, MAX_NS);
                    self.service.borrow_mut().saturating_record(ns);
                }
            }
            Outcome::Failed(key, _) => {
                *self.errors.borrow_mut().entry(key.clone()).or_default() += 1;
            }
        }
    }
}

/// A call with its timeout, and a redial when the failure says the connection is gone.
async fn timed_call(
    conn: &Rc<Conn>,
    held: &mut Option<(u64, SendRequest<Bytes>)>,
    t: &CallTemplate,
    timeout: Duration,
) -> Outcome {
    if held
        .as_ref()
        .is_none_or(|(g, _)| *g != conn.generation.get() || conn.dead.get())
    {
        *held = conn.current();
    }
    if held.is_none() {
        // The connection is gone (closed after a GOAWAY, or broken): this call was not sent
        // on it. Redial and make it on the new one — a call counts as failed only if it was
        // made and failed, or no connection could be had for it.
        let g = conn.generation.get();
        if conn.redial(g).await.is_err() {
            return Outcome::Failed("connect".into(), false);
        }
        *held = conn.current();
    }
    let Some((generation, send)) = held.as_mut() else {
        return Outcome::Failed("connection lost".into(), false);
    };
    let generation = *generation;
    let outcome = match tokio::time::timeout(timeout, call(send, t)).await {
        Ok(o) => o,
        Err(_) => Outcome::Failed("timeout".into(), false),
    };
    if let Outcome::Failed(_, true) = outcome {
        *held = None;
        let _ = conn.redial(generation).await;
    }
    outcome
}

/// One "call" of a slot: on its thread's connection `conn`, or, in new-connections mode
/// (`conn` is `None`), on a connection of its own.
async fn slot_call(
    conn: Option<&Rc<Conn>>,
    held: &mut Option<(u64, SendRequest<Bytes>)>,
    cfg: &Config,
    tls: Option<&ClientTls>,
    t: &CallTemplate,
    rec: &Recorder,
    recorded: bool,
) -> Outcome {
    let Some(conn) = conn else {
        let once = one_shot(cfg.target, tls, t);
        return match tokio::time::timeout(cfg.call_timeout, once).await {
            Ok((outcome, handshake)) => {
                if let Some(h) = handshake {
                    rec.record_handshake(recorded, h);
                }
                outcome
            }
            Err(_) => Outcome::Failed("timeout".into(), false),
        };
    };
    timed_call(conn, held, t, cfg.call_timeout).await
}

struct ThreadPlan {
    index: usize,
    conns: usize,
    slots: usize,
    rate: Option<f64>,
}

struct ThreadResult {
    latency: Histogram<u64>,
    service: Histogram<u64>,
    errors: BTreeMap<String, u64>,
    ok: u64,
    calls: u64,
    calls_total: u64,
    unfinished: u64,
    reconnects: u64,
    last_done: Option<Instant>,
    handshake: Histogram<u64>,
    full: u64,
    resumed: u64,
    negotiated: Option<Negotiated>,
}

/// The TLS config a slot dials its new connections with. With resumption each slot gets a
/// session cache of its own, as a client that reconnects keeps its own sessions: one cache
/// shared by every slot would hold at most 8 TLS 1.3 tickets per server (rustls's limit), fewer
/// than the handshakes in flight, and some handshakes would be full for want of a ticket.
fn slot_tls(cfg: &Config) -> Option<ClientTls> {
    let tls = cfg.tls.as_ref()?;
    if !(cfg.new_connections && tls.resume) {
        return Some(tls.clone());
    }
    let mut own = (*tls.config).clone();
    own.resumption = rustls::client::Resumption::in_memory_sessions(32);
    Some(ClientTls {
        config: Arc::new(own),
        ..tls.clone()
    })
}

/// Split `total` into `parts` shares differing by at most one.
fn share(total: usize, parts: usize, i: usize) -> usize {
    total / parts + usize::from(i < total % parts)
}

/// Run the load described by `cfg` and summarise it.
pub fn run(cfg: Config) -> Result<Summary, String> {
    let threads = cfg
        .threads
        .max(1)
        .min(cfg.connections.max(1))
        .min(cfg.concurrency.max(1));
    let connections = cfg.connections.max(threads);
    let concurrency = cfg.concurrency.max(connections);
    let shared = Arc::new(Shared {
        remaining: AtomicI64::new(cfg.requests.map(|n| n as i64).unwrap_or(i64::MAX)),
        start: OnceLock::new(),
        done: AtomicBool::new(false),
        progress: (0..threads).map(|_| Padded::default()).collect(),
        cfg: cfg.clone(),
    });
    let cpu0 = procfs::process_cpu(std::process::id()).map_or(0, |c| c.own_ticks);
    let connected = Arc::new(Barrier::new(threads + 1));
    let go = Arc::new(Barrier::new(threads + 1));
    let mut handles = Vec::new();
    for i in 0..threads {
        let plan = ThreadPlan {
            index: i,
            conns: share(connections, threads, i),
            slots: share(concurrency, threads, i),
            rate: cfg.rate.map(|r| r / threads as f64),
        };
        let (shared, connected, go) = (shared.clone(), connected.clone(), go.clone());
        handles.push(
            std::thread::Builder::new()
                .name(format!("loadgen-{i}"))
                .spawn(move || run_thread(plan, shared, connected, go))
                .map_err(|e| e.to_string())?,
        );
    }
    connected.wait();
    shared.start.set(Instant::now()).expect("start is set once");
    go.wait();
    progress_loop(&shared, &handles);
    let mut results = Vec::new();
    for h in handles {
        results.push(h.join().map_err(|_| "load generator thread panicked")??);
    }
    let cpu1 = procfs::process_cpu(std::process::id()).map_or(0, |c| c.own_ticks);
    Ok(summarise(
        &cfg,
        &shared,
        results,
        connections,
        concurrency,
        threads,
        cpu1 - cpu0,
    ))
}

fn run_thread(
    plan: ThreadPlan,
    shared: Arc<Shared>,
    connected: Arc<Barrier>,
    go: Arc<Barrier>,
) -> Result<ThreadResult, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let cfg = &shared.cfg;
        let mut conns = Vec::new();
        let mut dial_error = None;
        // New-connections mode dials per call: nothing to dial up front.
        let up_front = if cfg.new_connections { 0 } else { plan.conns };
        for _ in 0..up_front {
            match Conn::dial(cfg.target, cfg.tls.clone()).await {
                Ok(c) => conns.push(c),
                Err(e) => {
                    dial_error = Some(e);
                    break;
                }
            }
        }
        // Always meet the barriers, or the other threads would wait forever.
        connected.wait();
        go.wait();
        if let Some(e) = dial_error {
            shared.done.store(true, Ordering::Relaxed);
            return Err(e);
        }
        let authority = cfg
            .authority
            .clone()
            .unwrap_or_else(|| cfg.target.to_string());
        let uri = Uri::builder()
            .scheme(if cfg.tls.is_some() { "https" } else { "http" })
            .authority(authority.as_str())
            .path_and_query(cfg.path.as_str())
            .build()
            .map_err(|e| format!("bad authority or path: {e}"))?;
        let template = Rc::new(CallTemplate::new(uri, cfg)?);
        let rec = Rc::new(Recorder::new());
        let in_flight = Rc::new(Cell::new(0u64));
        let work = async {
            match plan.rate {
                None => closed_loop(&plan, &shared, &conns, &template, &rec, &in_flight).await,
                Some(r) => open_loop(&plan, r, &shared, &conns, &template, &rec, &in_flight).await,
            }
        };
        let hard_end = tokio::time::Instant::from_std(shared.hard_end());
        let _ = tokio::time::timeout_at(hard_end, work).await;
        let reconnects = conns.iter().map(|c| c.reconnects.get()).sum();
        let unfinished = in_flight.get();
        let conn_negotiated = conns.iter().find_map(|c| c.negotiated.borrow().clone());
        drop(conns);
        let rec = Rc::try_unwrap(rec).unwrap_or_else(|rc| {
            // Tasks still holding it were cut off by the hard deadline: copy what they left.
            Recorder {
                latency: RefCell::new(rc.latency.borrow().clone()),
                service: RefCell::new(rc.service.borrow().clone()),
                errors: RefCell::new(rc.errors.borrow().clone()),
                ok: Cell::new(rc.ok.get()),
                calls: Cell::new(rc.calls.get()),
                calls_total: Cell::new(rc.calls_total.get()),
                last_done: Cell::new(rc.last_done.get()),
                handshake: RefCell::new(rc.handshake.borrow().clone()),
                full: Cell::new(rc.full.get()),
                resumed: Cell::new(rc.resumed.get()),
                negotiated: RefCell::new(rc.negotiated.borrow().clone()),
            }
        });
        Ok(ThreadResult {
            latency: rec.latency.into_inner(),
            service: rec.service.into_inner(),
            errors: rec.errors.into_inner(),
            ok: rec.ok.get(),
            calls: rec.calls.get(),
            calls_total: rec.calls_total.get(),
            unfinished,
            reconnects,
            last_done: rec.last_done.get(),
            handshake: rec.handshake.into_inner(),
            full: rec.full.get(),
            resumed: rec.resumed.get(),
            negotiated: rec.negotiated.into_inner().or(conn_negotiated),
        })
    })
}

/// Closed loop: `plan.slots` tasks, each sending its next call when the previous one ends.
async fn closed_loop(
    plan: &ThreadPlan,
    shared: &Arc<Shared>,
    conns: &[Rc<Conn>],
    template: &Rc<CallTemplate>,
    rec: &Rc<Recorder>,
    in_flight: &Rc<Cell<u64>>,
) {
    let mut tasks = Vec::new();
    for s in 0..plan.slots {
        let conn = conns.get(s % conns.len().max(1)).cloned();
        let (shared, template, rec, in_flight) = (
            shared.clone(),
            template.clone(),
            rec.clone(),
            in_flight.clone(),
        );
        let index = plan.index;
        tasks.push(tokio::task::spawn_local(async move {
            let progress = &shared.progress[index];
            let mut held = None;
            let tls = slot_tls(&shared.cfg);
            loop {
                let t0 = Instant::now();
                let Some(recorded) = shared.admit(t0) else {
                    break;
                };
                in_flight.set(in_flight.get() + 1);
                let outcome = slot_call(
                    conn.as_ref(),
                    &mut held,
                    &shared.cfg,
                    tls.as_ref(),
                    &template,
                    &rec,
                    recorded,
                )
                .await;
                in_flight.set(in_flight.get() - 1);
                rec.record(progress, recorded, &outcome, t0.elapsed(), None);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// Open loop: call *i* is due at `start + i / rate`, sent on connection *i mod n* as soon as
/// fewer than `plan.slots` calls are in flight; its latency counts from the due time.
async fn open_loop(
    plan: &ThreadPlan,
    rate: f64,
    shared: &Arc<Shared>,
    conns: &[Rc<Conn>],
    template: &Rc<CallTemplate>,
    rec: &Rc<Recorder>,
    in_flight: &Rc<Cell<u64>>,
) {
    let slots = Arc::new(Semaphore::new(plan.slots));
    let start = shared.start();
    // Threads are offset by a fraction of the interval so their sends interleave.
    let offset = plan.index as f64 / shared.progress.len() as f64;
    let progress_index = plan.index;
    let due_of = move |i: u64| start + Duration::from_secs_f64((i as f64 + offset) / rate);
    let pacer = Pacer::spawn(due_of, shared.hard_end());
    let mut i: u64 = 0;
    loop {
        let due = due_of(i);
        while due > Instant::now() {
            pacer.tick.notified().await;
        }
        let Some(recorded) = shared.admit(due) else {
            break;
        };
        let permit = match slots.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => break,
        };
        let conn = conns.get((i as usize) % conns.len().max(1)).cloned();
        let (shared, template, rec, in_flight) = (
            shared.clone(),
            template.clone(),
            rec.clone(),
            in_flight.clone(),
        );
        in_flight.set(in_flight.get() + 1);
        tokio::task::spawn_local(async move {
            let sent = Instant::now();
            let mut held = None;
            let outcome = slot_call(
                conn.as_ref(),
                &mut held,
                &shared.cfg,
                shared.cfg.tls.as_ref(),
                &template,
                &rec,
                recorded,
            )
            .await;
            in_flight.set(in_flight.get() - 1);
            let progress = &shared.progress[progress_index];
            rec.record(
                progress,
                recorded,
                &outcome,
                due.elapsed(),
                Some(sent.elapsed()),
            );
            drop(permit);
        });
        i += 1;
    }
    // Wait for the calls in flight (the caller's hard deadline bounds this).
    let _ = slots.acquire_many(plan.slots as u32).await;
}

/// Wakes the open loop on time. tokio's timer ticks in whole milliseconds: at 50k calls/s
/// its sleeps would release calls in bursts up to 1 ms late, and that lateness would be
/// charged to the system under test as latency. A plain thread sleeping in `nanosleep`
/// (about 60 µs of slack) wakes the loop close to each due time instead; one wake releases
/// every call due by then.
/// The pacer's batch period: calls due within it are released together (so a call may be
/// sent up to this much early or late; latency still counts from its due time).
const PACE: Duration = Duration::from_micros(100);

struct Pacer {
    tick: Arc<tokio::sync::Notify>,
    stop: Arc<AtomicBool>,
}

impl Pacer {
    fn spawn(due_of: impl Fn(u64) -> Instant + Send + 'static, until: Instant) -> Pacer {
        let tick = Arc::new(tokio::sync::Notify::new());
        let stop = Arc::new(AtomicBool::new(false));
        let (t, s) = (tick.clone(), stop.clone());
        let _ = std::thread::Builder::new()
            .name("loadgen-pacer".into())
            .spawn(move || {
                let mut i = 0u64;
                while !s.load(Ordering::Relaxed) {
                    let due = due_of(i);
                    if due >= until {
                        break;
                    }
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                    // notify_one keeps a permit when nobody waits: no wake is lost.
                    t.notify_one();
                    // Release in batches at most every PACE: fewer cross-thread wakes at high
                    // rates (each costs the runtime a park/unpark), bounded lateness.
                    let now = Instant::now() + PACE;
                    while due_of(i) <= now {
                        i += 1;
                    }
                }
                // Release a loop that may still wait past the end.
                t.notify_one();
            });
        Pacer { tick, stop }
    }
}

impl Drop for Pacer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Print progress until every thread has finished.
fn progress_loop(
    shared: &Shared,
    handles: &[std::thread::JoinHandle<Result<ThreadResult, String>>],
) {
    let tty = std::io::stderr().is_terminal();
    let every = if tty {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(5)
    };
    let start = shared.start();
    let mut last = (start, 0u64);
    let mut next = start + every;
    let mut printed = false;
    while handles.iter().any(|h| !h.is_finished()) {
        std::thread::sleep(Duration::from_millis(50));
        let now = Instant::now();
        if !shared.cfg.progress || now < next {
            continue;
        }
        next += every;
        let calls: u64 = shared
            .progress
            .iter()
            .map(|p| p.calls.load(Ordering::Relaxed))
            .sum();
        let errors: u64 = shared
            .progress
            .iter()
            .map(|p| p.errors.load(Ordering::Relaxed))
            .sum();
        let rate = (calls - last.1) as f64 / (now - last.0).as_secs_f64();
        last = (now, calls);
        let t = (now - start).as_secs_f64();
        let phase = if now < shared.warm_end() {
            "warm-up"
        } else {
            "measure"
        };
        let line = format!("[{t:6.1}s {phase}] {calls} calls  {rate:.0}/s  {errors} failed");
        if tty {
            eprint!("\r{line}   ");
        } else {
            eprintln!("{line}");
        }
        printed = true;
    }
    if printed && tty {
        eprintln!();
    }
}

fn summarise(
    cfg: &Config,
    shared: &Shared,
    results: Vec<ThreadResult>,
    connections: usize,
    concurrency: usize,
    threads: usize,
    cpu_ticks: u64,
) -> Summary {
    let mut latency = histogram();
    let mut service = histogram();
    let mut handshake = histogram();
    let (mut full, mut resumed) = (0, 0);
    let mut s = Summary {
        target: cfg.target.to_string(),
        path: cfg.path.clone(),
        mode: if cfg.rate.is_some() { "open" } else { "closed" }.into(),
        connections,
        concurrency,
        threads,
        rate: cfg.rate,
        message_bytes: cfg.message_bytes,
        warmup_s: cfg.warmup.as_secs_f64(),
        ..Default::default()
    };
    let mut last_done: Option<Instant> = None;
    for r in results {
        let _ = latency.add(&r.latency);
        let _ = service.add(&r.service);
        for (k, v) in r.errors {
            *s.errors.entry(k).or_default() += v;
        }
        s.ok += r.ok;
        s.calls += r.calls;
        s.calls_total += r.calls_total;
        s.unfinished += r.unfinished;
        s.reconnects += r.reconnects;
        last_done = last_done.max(r.last_done);
        let _ = handshake.add(&r.handshake);
        full += r.full;
        resumed += r.resumed;
        if s.tls.is_none() {
            s.tls = r.negotiated;
        }
    }
    if cfg.new_connections {
        s.mode = format!("{} new-connections", s.mode);
        s.handshakes = Some(HandshakeSummary {
            resumption_offered: cfg.tls.as_ref().is_some_and(|t| t.resume),
            full,
            resumed,
            latency: Percentiles::of(&handshake),
        });
    }
    let warm_end = shared.warm_end();
    // Duration mode: the measured phase is the configured window (calls started in it and
    // finished after it are counted, so stretch to the last completion if later).
    let end = match (cfg.requests, last_done) {
        (None, Some(l)) => l.max(shared.measured_end()),
        (None, None) => shared.measured_end(),
        (Some(_), Some(l)) => l,
        (Some(_), None) => Instant::now(),
    };
    s.measured_s = end.saturating_duration_since(warm_end).as_secs_f64();
    if s.measured_s > 0.0 {
        s.throughput_rps = s.calls as f64 / s.measured_s;
    }
    s.latency = Percentiles::of(&latency);
    if cfg.rate.is_some() {
        s.service_time = Some(Percentiles::of(&service));
    }
    s.loadgen_cpu_s = cpu_ticks as f64 / procfs::ticks_per_second() as f64;
    if s.calls_total > 0 {
        s.loadgen_cpu_us_per_call = s.loadgen_cpu_s * 1e6 / s.calls_total as f64;
    }
    s
}
