//! A client connection's deadlines, as gRPC servers keep them (gRPC A8/A9; see
//! docs/background.md, "gRPC keepalive"), and what each asks for when it passes:
//!
//! - `keepalive_time_ms` without a frame from the client: PING; no ACK within
//!   `keepalive_timeout_ms`: the connection is closed.
//! - `max_connection_idle_ms` without calls: GOAWAY (NO_ERROR).
//! - `max_connection_age_ms` (±10%): GOAWAY; `max_connection_age_grace_ms` later, the
//!   connection is closed whatever is still on it.
//! - a write under way for `send_timeout_ms`: closed.
//! - [`TRIM_AFTER`] without calls: the connection gives back its buffers
//!   ([`Conn::trim`](crate::wire::Conn::trim)), so an idle client costs ringway under 2 KiB.
//!
//! Pure bookkeeping: [`Timers::next`] says when to look, [`Timers::fire`] what to do then;
//! the connection's loop does it. No socket, no runtime: the unit tests below drive it with
//! times in the past.

use std::time::{Duration, Instant};

use super::{ClientActivity, Settings};
use crate::rng::Rng;
use crate::wire::Conn;

/// How long a connection has no call before it gives its buffers back. Long enough that a
/// client making calls now and then does not pay a reallocation per call.
pub const TRIM_AFTER: Duration = Duration::from_secs(10);

/// The connection's deadlines.
pub(super) struct Timers {
    /// For its writes in progress (the send timeout).
    pub h2: Conn,
    /// When to PING, unless the client is heard from before.
    pub keepalive_at: Instant,
    /// A PING is out; its ACK is due by then.
    pub pong_due: Option<Instant>,
    pub age_at: Option<Instant>,
    /// After the age GOAWAY: when the connection is closed regardless.
    pub grace_until: Option<Instant>,
    pub going_away: bool,
    /// Buffers given back since the last call started.
    pub trimmed: bool,
    /// When to look at the timers again whatever else is due.
    pub recheck_at: Instant,
}

/// What a timer that fired asks the connection to do.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Fire {
    Nothing,
    Ping,
    GoAway,
    /// Give the buffers of an idle connection back.
    Trim,
    /// A write made no progress for this long: close.
    SendTimeout(Duration),
    /// Close now.
    Close(Close),
}

/// Why a connection is closed by its timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Close {
    /// Our keepalive PING went unanswered.
    KeepaliveTimeout,
    /// The age GOAWAY's grace is over.
    AgeGrace,
}

impl Timers {
    /// The earliest deadline.
    pub fn next(&self, settings: &Settings, conn: &ClientActivity) -> Instant {
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
    pub fn fire(&mut self, settings: &Settings, conn: &ClientActivity) -> Fire {
        let now = Instant::now();
        self.recheck_at = now + settings.recheck;
        if let Some(due) = self.pong_due {
            if now >= due {
                return Fire::Close(Close::KeepaliveTimeout);
            }
        }
        if self.grace_until.is_some_and(|t| now >= t) {
            return Fire::Close(Close::AgeGrace);
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
pub(super) fn jittered(d: Duration, rng: &Rng) -> Duration {
    let tenth = d.as_millis() as u64 / 10;
    let offset = rng.next_u64() % (2 * tenth + 1);
    d - Duration::from_millis(tenth) + Duration::from_millis(offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DownstreamConfig;
    use crate::downstream::PingPolicy;
    use crate::wire::{self, Role};

    fn settings(toml_edit: impl FnOnce(&mut DownstreamConfig)) -> Settings {
        let mut config = DownstreamConfig::default();
        toml_edit(&mut config);
        Settings::new(&config)
    }

    fn activity() -> ClientActivity {
        ClientActivity::new(
            PingPolicy {
                min_interval: Duration::from_secs(300),
                without_calls: false,
            },
            None,
        )
    }

    /// Timers of a connection opened `ago`, with nothing fired yet.
    fn timers(settings: &Settings, ago: Duration) -> Timers {
        let opened = Instant::now() - ago;
        Timers {
            h2: Conn::new(Role::Server, wire::Settings::default(), None),
            keepalive_at: opened + settings.keepalive_time,
            pong_due: None,
            age_at: settings.max_age.map(|age| opened + age),
            grace_until: None,
            going_away: false,
            trimmed: false,
            recheck_at: opened + settings.recheck,
        }
    }

    #[test]
    fn a_silent_client_is_pinged_then_closed_if_it_does_not_answer() {
        let s = settings(|c| {
            c.keepalive_time_ms = 100;
            c.keepalive_timeout_ms = 100;
        });
        let conn = activity();
        let mut t = timers(&s, Duration::ZERO);
        t.keepalive_at = Instant::now() - Duration::from_millis(1);
        // The client was last heard from at its creation, more than keepalive_time ago? No:
        // just now — so the PING waits a full interval after its last bytes.
        assert_eq!(t.fire(&s, &conn), Fire::Nothing);
        assert!(t.keepalive_at > Instant::now());
        t.keepalive_at = Instant::now() - Duration::from_millis(1);
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(t.fire(&s, &conn), Fire::Ping);
        t.pong_due = Some(Instant::now() - Duration::from_millis(1));
        assert_eq!(t.fire(&s, &conn), Fire::Close(Close::KeepaliveTimeout));
    }

    #[test]
    fn age_sends_goaway_then_closes_after_the_grace() {
        let s = settings(|c| {
            c.max_connection_age_ms = 50;
            c.max_connection_age_grace_ms = 50;
        });
        let conn = activity();
        let mut t = timers(&s, Duration::from_millis(60));
        assert_eq!(t.fire(&s, &conn), Fire::GoAway);
        assert!(t.going_away && t.grace_until.is_some());
        // Going away: the age does not fire twice.
        assert_ne!(t.fire(&s, &conn), Fire::GoAway);
        t.grace_until = Some(Instant::now() - Duration::from_millis(1));
        assert_eq!(t.fire(&s, &conn), Fire::Close(Close::AgeGrace));
    }

    #[test]
    fn idle_without_calls_sends_goaway_but_not_while_calls_are_open() {
        let s = settings(|c| c.max_connection_idle_ms = 10);
        let conn = activity();
        conn.call_started();
        std::thread::sleep(Duration::from_millis(20));
        let mut t = timers(&s, Duration::from_millis(20));
        assert_ne!(t.fire(&s, &conn), Fire::GoAway, "a call is open");
        conn.call_ended();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(t.fire(&s, &conn), Fire::GoAway);
    }

    #[test]
    fn an_idle_connection_is_trimmed_once() {
        let s = settings(|_| {});
        let conn = activity();
        let mut t = timers(&s, TRIM_AFTER);
        // `idle_since` is the activity's creation (now): not yet.
        assert_eq!(t.fire(&s, &conn), Fire::Nothing);
        assert!(t.next(&s, &conn) <= Instant::now() + TRIM_AFTER);
        assert!(!t.trimmed);
    }

    #[test]
    fn a_write_stuck_past_the_send_timeout_closes() {
        let s = settings(|c| c.send_timeout_ms = 20);
        let conn = activity();
        let mut t = timers(&s, Duration::ZERO);
        let mut spare = bytes::BytesMut::new();
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        // The connection's SETTINGS go to the writer, which never finishes writing them.
        assert!(t.h2.poll_output(&mut cx, &mut spare).is_ready());
        assert!(t.next(&s, &conn) <= Instant::now() + Duration::from_millis(20));
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(
            t.fire(&s, &conn),
            Fire::SendTimeout(Duration::from_millis(20))
        );
        // Written: no timeout.
        t.h2.written();
        assert_eq!(t.fire(&s, &conn), Fire::Nothing);
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let rng = Rng::new(7);
        for _ in 0..1000 {
            let d = jittered(Duration::from_millis(1000), &rng);
            assert!((900..=1100).contains(&(d.as_millis() as u64)), "{d:?}");
        }
    }
}
