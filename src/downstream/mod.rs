//! Serving one client connection: the HTTP/2 server handshake, accepting its streams, and its
//! lifecycle — keepalive, idle and age limits, ping enforcement, drain.
//!
//! Owns the connection's settings (windows, stream and header-list limits, reset-flood guards)
//! and drives its I/O; each accepted stream is handed to a call task ([`workers`]) running the
//! [`Handler`] it was given ([`Proxy`](crate::proxy::Proxy) in ringway; anything in tests).
//! Knows nothing of routing.
//!
//! The connection's deadlines (keepalive, idle, age, send timeout, trimming) are in
//! [`timers`]; what its frames tell about the client (activity, PINGs) in [`activity`].
//!
//! A TLS connection ([`serve_tls_connection`]) first runs its TLS handshake within
//! `handshake_timeout_ms`; then it is served as a plaintext one is, over a
//! [`TlsTransport`](crate::tls::TlsTransport), and its calls carry the client's verified
//! identity ([`Peer`]).
//!
//! Every graceful GOAWAY here is two-phase: first the maximum stream id, then, after a PING
//! round trip, the last stream really accepted, so no call in flight is lost.

mod activity;
mod timers;
mod workers;

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::future::{select, Either};

use monoio::net::TcpStream;

use std::sync::Arc;

use crate::config::DownstreamConfig;
use crate::deadline::Deadline;
use crate::metrics::ShardMetrics;
use crate::rng::Rng;
use crate::shutdown::LocalBroadcast;
use crate::wire::{self, Conn, Incoming, Reason, Role};
pub use activity::{ClientActivity, PingPolicy};
pub use timers::TRIM_AFTER;
use timers::{Close, Fire, Timers};
use workers::{Call, Workers};

/// What serves the streams clients open: one call each, to its end. Handed to [`Server`] by
/// the shard, so that this module knows nothing of what a call does.
pub trait Handler: 'static {
    fn serve(self: Rc<Self>, incoming: Incoming, peer: Peer) -> impl Future<Output = ()>;
}

/// What is known of the client of a call's connection.
#[derive(Clone, Default)]
pub struct Peer {
    /// The verified identity of its TLS client certificate (subject CN, else first SAN);
    /// `None` on plaintext or without a client certificate.
    pub identity: Option<Rc<str>>,
}

/// What client connections on one shard share: their settings, the handler of their streams,
/// the reusable call tasks, the drain signal, and where they are counted.
pub struct Server<H: Handler> {
    /// Read once per connection: a reload's settings apply to connections made after it.
    settings: RefCell<Rc<Settings>>,
    pub handler: Rc<H>,
    pub metrics: Arc<ShardMetrics>,
    pub rng: Rc<Rng>,
    /// Fires once when the drain starts: every connection sends GOAWAY.
    pub drain: LocalBroadcast,
    /// Parked call tasks, reused call after call.
    workers: Workers,
    /// This shard's view of the TLS server config (reloads swap it); `None` without TLS.
    pub tls: Option<crate::tls::Local<rustls::ServerConfig>>,
}

impl<H: Handler> Server<H> {
    /// The settings for a new connection.
    pub fn settings(&self) -> Rc<Settings> {
        self.settings.borrow().clone()
    }

    /// A reload's settings, for connections from now on.
    pub fn set_settings(&self, settings: Settings) {
        *self.settings.borrow_mut() = Rc::new(settings);
    }

    pub fn new(
        settings: Settings,
        handler: Rc<H>,
        metrics: Arc<ShardMetrics>,
        rng: Rc<Rng>,
    ) -> Self {
        Server {
            settings: RefCell::new(Rc::new(settings)),
            handler,
            metrics,
            rng,
            drain: LocalBroadcast::default(),
            workers: Workers::default(),
            tls: None,
        }
    }
}

/// A client connection's settings, built once per shard.
pub struct Settings {
    pub h2: Rc<wire::Settings>,
    pub handshake_timeout: Duration,
    pub keepalive_time: Duration,
    pub keepalive_timeout: Duration,
    pub max_idle: Option<Duration>,
    pub max_age: Option<Duration>,
    pub age_grace: Option<Duration>,
    pub ping_policy: PingPolicy,
    /// A write under way for this long closes the connection.
    pub send_timeout: Option<Duration>,
    /// How often the timers look again for a write that started, calls that ended: the
    /// shortest of the send timeout, the idle limit and [`TRIM_AFTER`].
    pub recheck: Duration,
}

impl Settings {
    pub fn new(config: &DownstreamConfig) -> Settings {
        let ms = Duration::from_millis;
        let nonzero = |v: u64| (v > 0).then(|| ms(v));
        Settings {
            h2: Rc::new(server_settings(config)),
            handshake_timeout: ms(config.handshake_timeout_ms),
            keepalive_time: ms(config.keepalive_time_ms),
            keepalive_timeout: ms(config.keepalive_timeout_ms),
            max_idle: nonzero(config.max_connection_idle_ms),
            max_age: nonzero(config.max_connection_age_ms),
            age_grace: nonzero(config.max_connection_age_grace_ms),
            ping_policy: PingPolicy {
                min_interval: ms(config.permit_keepalive_time_ms),
                without_calls: config.permit_keepalive_without_calls,
            },
            send_timeout: nonzero(config.send_timeout_ms),
            recheck: [
                nonzero(config.send_timeout_ms),
                nonzero(config.max_connection_idle_ms),
            ]
            .into_iter()
            .flatten()
            .fold(TRIM_AFTER, Duration::min),
        }
    }
}

/// The HTTP/2 server settings for client connections. Rapid reset (CVE-2023-44487) and
/// misbehaving clients are capped by [`wire`] itself: a connection whose client resets too
/// many streams before they are answered, or makes us reset too many, gets GOAWAY
/// ENHANCE_YOUR_CALM.
pub fn server_settings(config: &DownstreamConfig) -> wire::Settings {
    wire::Settings {
        stream_window: config.stream_window_bytes,
        connection_window: config.connection_window_bytes,
        max_concurrent_streams: config.max_concurrent_streams,
        max_header_list: config.max_header_list_bytes,
        output_limit: config.output_buffer_bytes,
        max_control_frames_per_second: config.max_control_frames_per_second,
        // A client's connection is its own: its streams share its window, and what one
        // stalled call holds is bounded by that window (released only once forwarded).
        connection_window_on_receipt: false,
        send_timeout: (config.send_timeout_ms > 0)
            .then(|| Duration::from_millis(config.send_timeout_ms)),
        // Client streams only: a server resets what it gives up on at once.
        ..wire::Settings::default()
    }
}

/// Runs one client connection on the plaintext port until it closes. One that opens with a
/// TLS ClientHello is closed at once and counted.
pub fn serve_connection<H: Handler>(
    server: Rc<Server<H>>,
    stream: TcpStream,
) -> impl Future<Output = ()> {
    let nodelay = stream.set_nodelay(true);
    // Split here, not in the future: it lives as long as the connection.
    let halves = wire::io::split(stream);
    async move {
        if nodelay.is_err() {
            return;
        }
        let metrics = server.metrics.clone();
        metrics.downstream_open.inc();
        let counted = metrics.clone();
        let transport =
            wire::io::PlainRefusingTls(move || counted.downstream_tls_on_plaintext.inc());
        run(&server, halves, transport, Peer::default()).await;
        metrics.downstream_open.dec();
    }
}

/// Runs one client connection on the TLS port until it closes: the TLS handshake within
/// `handshake_timeout_ms` (a failure is counted by reason and closes it), then HTTP/2 as on
/// the plaintext port.
pub async fn serve_tls_connection<H: Handler>(server: Rc<Server<H>>, mut stream: TcpStream) {
    let Some(config) = server.tls.as_ref().map(|tls| tls.get()) else {
        return;
    };
    if stream.set_nodelay(true).is_err() {
        return;
    }
    let metrics = server.metrics.clone();
    metrics.downstream_open.inc();
    let side = crate::metrics::Side::Downstream;
    let limit = server.settings().handshake_timeout;
    let handshake = async {
        let tls = rustls::ServerConnection::new(config).map_err(crate::tls::HandshakeError::Tls)?;
        match monoio::time::timeout(
            limit,
            crate::tls::transport::handshake(&mut stream, tls, true),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(crate::tls::HandshakeError::Timeout(limit)),
        }
    };
    match handshake.await {
        Ok(transport) => {
            metrics.tls_handshakes[side as usize].inc();
            if transport.resumed() {
                metrics.tls_resumed[side as usize].inc();
            }
            let peer = Peer {
                identity: transport.peer_identity().map(Rc::from),
            };
            run(&server, wire::io::split(stream), transport, peer).await;
        }
        Err(e) => {
            metrics.tls_failure(side, e.failure()).inc();
        }
    }
    metrics.downstream_open.dec();
}

/// Decrements the connection's call count however the call ends.
struct CallGuard(Rc<ClientActivity>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.0.call_ended();
    }
}

/// Aborts the connection however `run` ends; a no-op once it closed by itself.
struct AbortOnDrop(Conn);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort("connection closed by ringway");
    }
}

async fn run<H: Handler, T: wire::io::Transport>(
    server: &Rc<Server<H>>,
    halves: wire::io::Halves,
    transport: T,
    peer: Peer,
) {
    let settings = &*server.settings();
    let conn = Rc::new(ClientActivity::new(
        settings.ping_policy,
        Some(server.metrics.clone()),
    ));
    let h2 = Conn::new(Role::Server, settings.h2.clone(), Some(conn.clone()));
    let _abort = AbortOnDrop(h2.clone());
    let timer = Deadline::new();
    // One task per connection: the socket's driver and the loop that hands out its streams.
    // (Two tasks cost a second task allocation, ~1.6 KiB with the first's padding, per idle
    // client.)
    let io = pin!(wire::io::drive(h2.clone(), halves, transport));
    let streams = pin!(serve_streams(server, settings, &h2, &conn, &timer, &peer));
    let (ended, io) = match select(io, streams).await {
        // The socket is done: so are the streams.
        Either::Left(((), _)) => return,
        Either::Right(pair) => pair,
    };
    match ended {
        // The driver runs until the remaining streams are done and the close is written,
        // within the age grace if one applies.
        Ended::Finish { grace_until: None } => io.await,
        Ended::Finish {
            grace_until: Some(until),
        } => {
            timer.set(until);
            let _ = select(io, pin!(poll_fn(|cx| timer.poll_expired(cx)))).await;
        }
        // Aborting the connection (on return) closes the socket; calls on it fail.
        Ended::Close => {}
    }
}

/// How serving a connection's streams ended.
enum Ended {
    /// No more streams: let the driver finish what is open, until `grace_until` if set.
    Finish { grace_until: Option<Instant> },
    /// Close the connection now.
    Close,
}

/// The handshake, then every stream the client opens, handed to a call task; and the
/// connection's timers and GOAWAYs.
async fn serve_streams<H: Handler>(
    server: &Rc<Server<H>>,
    settings: &Settings,
    h2: &Conn,
    conn: &Rc<ClientActivity>,
    timer: &Deadline,
    peer: &Peer,
) -> Ended {
    timer.set(Instant::now() + settings.handshake_timeout);
    let handshake = poll_fn(|cx| h2.poll_handshake(cx));
    match select(pin!(handshake), pin!(poll_fn(|cx| timer.poll_expired(cx)))).await {
        Either::Left((Ok(()), _)) => {}
        // Not HTTP/2: the connection error (GOAWAY) is written, then the connection closes.
        Either::Left((Err(_), _)) => return Ended::Finish { grace_until: None },
        // Too slow: nothing to answer on.
        Either::Right(_) => return Ended::Close,
    }
    let mut drain = server.drain.subscribe();
    let opened = Instant::now();
    let mut timers = Timers {
        h2: h2.clone(),
        keepalive_at: opened + settings.keepalive_time,
        pong_due: None,
        age_at: settings
            .max_age
            .map(|age| opened + timers::jittered(age, &server.rng)),
        grace_until: None,
        going_away: false,
        trimmed: false,
        recheck_at: opened + settings.recheck,
    };
    loop {
        timer.set(timers.next(settings, conn));
        let next = monoio::select! {
            next = poll_fn(|cx| h2.poll_accept(cx)) => next,
            _ = &mut drain, if !timers.going_away => {
                h2.graceful_shutdown();
                server.metrics.downstream_goaways_sent.inc();
                timers.going_away = true;
                continue;
            }
            _ = poll_fn(|cx| conn.poll_too_many_pings(cx)) => {
                h2.abrupt_shutdown(Reason::ENHANCE_YOUR_CALM, b"too_many_pings");
                server.metrics.downstream_too_many_pings.inc();
                server.metrics.downstream_goaways_sent.inc();
                break;
            }
            pong = poll_fn(|cx| h2.poll_pong(cx)), if timers.pong_due.is_some() => {
                if pong.is_ok() {
                    timers.pong_due = None;
                    timers.keepalive_at = Instant::now() + settings.keepalive_time;
                }
                continue;
            }
            _ = poll_fn(|cx| timer.poll_expired(cx)) => {
                match timers.fire(settings, conn) {
                    Fire::Nothing => {}
                    Fire::Ping => {
                        if h2.send_ping() {
                            timers.pong_due = Some(Instant::now() + settings.keepalive_timeout);
                        }
                    }
                    Fire::GoAway => {
                        h2.graceful_shutdown();
                        server.metrics.downstream_goaways_sent.inc();
                    }
                    Fire::Trim => h2.trim(),
                    Fire::SendTimeout(limit) => {
                        h2.send_timed_out(limit);
                        return Ended::Close;
                    }
                    Fire::Close(why) => {
                        if why == Close::KeepaliveTimeout {
                            server.metrics.downstream_keepalive_timeouts.inc();
                        }
                        return Ended::Close;
                    }
                }
                continue;
            }
        };
        match next {
            Some(incoming) => {
                // Every stream that arrived in this read, without a trip through the timers.
                let mut next = Some(incoming);
                timers.trimmed = false;
                while let Some(incoming) = next {
                    conn.call_started();
                    let guard = CallGuard(conn.clone());
                    let peer = peer.clone();
                    server.workers.dispatch(
                        server,
                        Call {
                            incoming,
                            guard,
                            peer,
                        },
                    );
                    next = h2.try_accept();
                }
            }
            None => break,
        }
    }
    Ended::Finish {
        grace_until: timers.grace_until,
    }
}
