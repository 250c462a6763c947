//! Serving one client connection: the HTTP/2 server handshake, accepting its streams, and its
//! lifecycle — keepalive, idle and age limits, ping enforcement, drain.
//!
//! Owns the connection's settings (windows, stream and header-list limits, reset-flood guards)
//! and drives its I/O; each accepted stream is served by a call task ([`Workers`]) running
//! [`proxy`](crate::proxy).
//! Knows nothing of routing.
//!
//! # Timers (gRPC server keepalive semantics)
//!
//! - `keepalive_time_ms` without a frame from the client: PING; no ACK within
//!   `keepalive_timeout_ms`: the connection is closed.
//! - `max_connection_idle_ms` without calls: GOAWAY (NO_ERROR).
//! - `max_connection_age_ms` (±10%): GOAWAY; `max_connection_age_grace_ms` later, the
//!   connection is closed whatever is still on it.
//! - Drain: GOAWAY; the shard waits for the connection to finish.
//! - [`TRIM_AFTER`] without calls: the connection gives back its buffers ([`Conn::trim`]), so
//!   an idle client costs ringway about 1.5 KiB.
//!
//! Every graceful GOAWAY here is two-phase: first the maximum stream id, then, after a PING
//! round trip, the last stream really accepted, so no call in flight is lost.

mod watch;
mod workers;

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::future::{select, Either};

use monoio::net::TcpStream;

use crate::config::DownstreamConfig;
use crate::deadline::Deadline;
use crate::rng::Rng;
use crate::shard::Shard;
use crate::wire::{self, Conn, Reason, Role};
pub use watch::{ClientConn, PingPolicy};
use workers::Call;
pub use workers::Workers;

/// How long a connection has no call before it gives its buffers back. Long enough that a
/// client making calls now and then does not pay a reallocation per call.
pub const TRIM_AFTER: Duration = Duration::from_secs(10);

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
    }
}

/// Runs one client connection until it closes.
pub fn serve(shard: Rc<Shard>, stream: TcpStream) -> impl Future<Output = ()> {
    let nodelay = stream.set_nodelay(true);
    // Split here, not in the future: it lives as long as the connection.
    let halves = wire::io::split(stream);
    async move {
        if nodelay.is_err() {
            return;
        }
        let metrics = shard.metrics.clone();
        metrics.downstream_open.inc();
        run(&shard, halves).await;
        metrics.downstream_open.dec();
    }
}

/// Decrements the connection's call count however the call ends.
struct CallGuard(Rc<ClientConn>);

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

async fn run(shard: &Rc<Shard>, halves: wire::io::Halves) {
    let settings = &shard.downstream;
    let conn = Rc::new(ClientConn::new(
        settings.ping_policy,
        Some(shard.metrics.clone()),
    ));
    let h2 = Conn::new(Role::Server, settings.h2.clone(), Some(conn.clone()));
    let _abort = AbortOnDrop(h2.clone());
    let timer = Deadline::new();
    // One task per connection: the socket's driver and the loop that hands out its streams.
    // (Two tasks cost a second task allocation, ~1.6 KiB with the first's padding, per idle
    // client.)
    let io = pin!(wire::io::drive(h2.clone(), halves));
    let streams = pin!(serve_streams(shard, &h2, &conn, &timer));
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
async fn serve_streams(
    shard: &Rc<Shard>,
    h2: &Conn,
    conn: &Rc<ClientConn>,
    timer: &Deadline,
) -> Ended {
    let settings = &shard.downstream;
    timer.set(Instant::now() + settings.handshake_timeout);
    let handshake = poll_fn(|cx| h2.poll_handshake(cx));
    match select(pin!(handshake), pin!(poll_fn(|cx| timer.poll_expired(cx)))).await {
        Either::Left((Ok(()), _)) => {}
        // Not HTTP/2: the connection error (GOAWAY) is written, then the connection closes.
        Either::Left((Err(_), _)) => return Ended::Finish { grace_until: None },
        // Too slow: nothing to answer on.
        Either::Right(_) => return Ended::Close,
    }
    let mut drain = shard.drain.subscribe();
    let opened = Instant::now();
    let mut timers = Timers {
        h2: h2.clone(),
        keepalive_at: opened + settings.keepalive_time,
        pong_due: None,
        age_at: settings
            .max_age
            .map(|age| opened + jittered(age, &shard.rng)),
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
                shard.metrics.downstream_goaways_sent.inc();
                timers.going_away = true;
                continue;
            }
            _ = poll_fn(|cx| conn.poll_too_many_pings(cx)) => {
                h2.abrupt_shutdown(Reason::ENHANCE_YOUR_CALM, b"too_many_pings");
                shard.metrics.downstream_too_many_pings.inc();
                shard.metrics.downstream_goaways_sent.inc();
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
                        shard.metrics.downstream_goaways_sent.inc();
                    }
                    Fire::Trim => h2.trim(),
                    Fire::SendTimeout(limit) => {
                        h2.send_timed_out(limit);
                        return Ended::Close;
                    }
                    Fire::Close(keepalive) => {
                        if keepalive {
                            shard.metrics.downstream_keepalive_timeouts.inc();
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
                    shard.workers.dispatch(shard, Call { incoming, guard });
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

/// The connection's deadlines.
struct Timers {
    /// For its writes in progress (the send timeout).
    h2: Conn,
    /// When to PING, unless the client is heard from before.
    keepalive_at: Instant,
    /// A PING is out; its ACK is due by then.
    pong_due: Option<Instant>,
    age_at: Option<Instant>,
    /// After the age GOAWAY: when the connection is closed regardless.
    grace_until: Option<Instant>,
    going_away: bool,
    /// Buffers given back since the last call started.
    trimmed: bool,
    /// When to look at the timers again whatever else is due.
    recheck_at: Instant,
}

enum Fire {
    Nothing,
    Ping,
    GoAway,
    /// Give the buffers of an idle connection back.
    Trim,
    /// A write made no progress for this long: close.
    SendTimeout(Duration),
    /// Close now; `true` when because a PING went unanswered.
    Close(bool),
}

impl Timers {
    /// The earliest deadline.
    fn next(&self, settings: &Settings, conn: &ClientConn) -> Instant {
        let mut next = self.pong_due.unwrap_or(self.keepalive_at);
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = next.min(t);
            }
        };
        if !self.going_away {
            consider(self.age_at);
            if conn.active_calls() == 0 {
                consider(settings.max_idle.map(|idle| conn.idle_since() + idle));
            }
        }
        consider(self.grace_until);
        if let Some(limit) = settings.send_timeout {
            // The write under way is due then; one that starts later is seen at the next
            // look (`recheck_at`): a stuck write is caught within one to two send timeouts.
            consider(self.h2.write_started().map(|t| t + limit));
        }
        if !self.trimmed && conn.active_calls() == 0 {
            consider(Some(conn.idle_since() + TRIM_AFTER));
        }
        // A look now and then for what may have changed since (calls ended, a write started)
        // without reading the clock on every accepted stream.
        consider(Some(self.recheck_at));
        next
    }

    /// Acts on whatever deadline has passed.
    fn fire(&mut self, settings: &Settings, conn: &ClientConn) -> Fire {
        let now = Instant::now();
        self.recheck_at = now + settings.recheck;
        if let Some(due) = self.pong_due {
            if now >= due {
                return Fire::Close(true);
            }
        }
        if self.grace_until.is_some_and(|t| now >= t) {
            return Fire::Close(false);
        }
        if let Some(limit) = settings.send_timeout {
            if self.h2.write_started().is_some_and(|t| now >= t + limit) {
                return Fire::SendTimeout(limit);
            }
        }
        if !self.going_away {
            if self.age_at.is_some_and(|t| now >= t) {
                self.going_away = true;
                self.grace_until = settings.age_grace.map(|g| now + g);
                return Fire::GoAway;
            }
            let idle = conn.active_calls() == 0
                && settings
                    .max_idle
                    .is_some_and(|idle| now >= conn.idle_since() + idle);
            if idle {
                self.going_away = true;
                return Fire::GoAway;
            }
        }
        if !self.trimmed && conn.active_calls() == 0 && now >= conn.idle_since() + TRIM_AFTER {
            self.trimmed = true;
            return Fire::Trim;
        }
        if self.pong_due.is_none() && now >= self.keepalive_at {
            let quiet_until = conn.last_read() + settings.keepalive_time;
            if quiet_until > now {
                // The client was heard from since: a full interval after its last bytes.
                self.keepalive_at = quiet_until;
                return Fire::Nothing;
            }
            self.keepalive_at = now + settings.keepalive_time;
            return Fire::Ping;
        }
        Fire::Nothing
    }
}

/// `d` ± 10%, so connections opened together do not all age out together.
fn jittered(d: Duration, rng: &Rng) -> Duration {
    let tenth = d.as_millis() as u64 / 10;
    let offset = rng.next_u64() % (2 * tenth + 1);
    d - Duration::from_millis(tenth) + Duration::from_millis(offset)
}
