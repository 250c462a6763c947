//! What one client connection's frames tell: activity for keepalive, and the client's PINGs
//! for ping enforcement.
//!
//! # Ping enforcement (as grpc-go's server, gRPC A8/A9)
//!
//! 1. The first PING, and the first after we sent HEADERS or DATA, is free (and resets strikes).
//! 2. Otherwise a PING earlier than `permit_keepalive_time` after the previous one is a strike —
//!    or earlier than 2 hours when no call is open and `permit_keepalive_without_calls` is off.
//! 3. More than 2 strikes: the connection is ended with GOAWAY ENHANCE_YOUR_CALM and the debug
//!    data `too_many_pings`, which gRPC clients read as "double your keepalive interval".

use std::cell::{Cell, RefCell};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use std::sync::Arc;

use crate::metrics::{ShardMetrics, Side};
use crate::wire::frame::{self, Head as Frame};
use crate::wire::{Flood, Observer, Refusal};

/// grpc-go's `maxPingStrikes`: the third offending PING ends the connection.
const MAX_STRIKES: u32 = 2;
/// Pings without calls, when not permitted, are allowed this often (grpc-go
/// `defaultPingTimeout`).
const WITHOUT_CALLS_INTERVAL: Duration = Duration::from_secs(2 * 60 * 60);

/// The enforcement policy.
#[derive(Debug, Clone, Copy)]
pub struct PingPolicy {
    pub min_interval: Duration,
    pub without_calls: bool,
}

/// Shared by a connection's serve loop, its calls and its frame watcher.
pub struct ClientActivity {
    policy: PingPolicy,
    /// Calls open on the connection.
    active_calls: Cell<usize>,
    /// When the connection last had no calls (for `max_connection_idle`).
    idle_since: Cell<Instant>,
    /// When bytes last arrived from the client (keepalive measures from it).
    last_read: Cell<Instant>,
    last_ping: Cell<Option<Instant>>,
    strikes: Cell<u32>,
    /// We sent HEADERS or DATA since the last PING: the next one is free.
    reset_strikes: Cell<bool>,
    too_many_pings: Cell<bool>,
    /// The serve loop, waiting to hear about `too_many_pings`.
    waiter: RefCell<Option<Waker>>,
    /// Where abuse of the connection is counted (`None` in unit tests).
    metrics: Option<Arc<ShardMetrics>>,
}

impl ClientActivity {
    pub fn new(policy: PingPolicy, metrics: Option<Arc<ShardMetrics>>) -> ClientActivity {
        ClientActivity {
            policy,
            active_calls: Cell::new(0),
            idle_since: Cell::new(Instant::now()),
            last_read: Cell::new(Instant::now()),
            last_ping: Cell::new(None),
            strikes: Cell::new(0),
            reset_strikes: Cell::new(false),
            too_many_pings: Cell::new(false),
            waiter: RefCell::new(None),
            metrics,
        }
    }

    pub fn call_started(&self) {
        self.active_calls.set(self.active_calls.get() + 1);
    }

    pub fn call_ended(&self) {
        let n = self.active_calls.get() - 1;
        self.active_calls.set(n);
        if n == 0 {
            self.idle_since.set(crate::clock::coarse());
        }
    }

    pub fn active_calls(&self) -> usize {
        self.active_calls.get()
    }

    pub fn idle_since(&self) -> Instant {
        self.idle_since.get()
    }

    /// When bytes last arrived from the client.
    pub fn last_read(&self) -> Instant {
        self.last_read.get()
    }

    /// Whether the client has pinged too often.
    pub fn too_many_pings(&self) -> bool {
        self.too_many_pings.get()
    }

    /// Ready once the client has pinged too often.
    pub fn poll_too_many_pings(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.too_many_pings.get() {
            return Poll::Ready(());
        }
        *self.waiter.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }

    fn client_pinged(&self) {
        let now = Instant::now();
        let last = self.last_ping.replace(Some(now));
        if self.reset_strikes.replace(false) {
            self.strikes.set(0);
            return;
        }
        let allowed = if self.active_calls.get() == 0 && !self.policy.without_calls {
            WITHOUT_CALLS_INTERVAL
        } else {
            self.policy.min_interval
        };
        if last.is_some_and(|last| now.duration_since(last) < allowed) {
            self.strikes.set(self.strikes.get() + 1);
        }
        if self.strikes.get() > MAX_STRIKES && !self.too_many_pings.replace(true) {
            if let Some(waker) = self.waiter.borrow_mut().take() {
                waker.wake();
            }
        }
    }
}

impl Observer for ClientActivity {
    fn read_bytes(&self, _n: usize) {
        // The coarse clock: keepalive limits are seconds.
        self.last_read.set(crate::clock::coarse());
    }

    fn read(&self, frame: &Frame) {
        if frame.kind == frame::PING && frame.flags & frame::FLAG_ACK == 0 {
            self.client_pinged();
        }
    }

    fn written(&self, frame: &Frame) {
        if frame.kind == frame::DATA || frame.kind == frame::HEADERS {
            self.reset_strikes.set(true);
        }
    }

    fn flood(&self, kind: Flood) {
        if let Some(m) = &self.metrics {
            m.flood(Side::Downstream, kind).inc();
            m.downstream_goaways_sent.inc();
        }
    }

    fn output_paused(&self) {
        if let Some(m) = &self.metrics {
            m.h2_output_pauses[Side::Downstream as usize].inc();
        }
    }

    fn send_timed_out(&self) {
        if let Some(m) = &self.metrics {
            m.h2_send_timeouts[Side::Downstream as usize].inc();
        }
    }

    fn flow_control_error(&self) {
        if let Some(m) = &self.metrics {
            m.h2_flow_control_errors[Side::Downstream as usize].inc();
        }
    }

    fn refused(&self, why: Refusal) {
        if let Some(m) = &self.metrics {
            let at = Refusal::ALL.iter().position(|&r| r == why).unwrap_or(0);
            m.downstream_streams_refused[at].inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ping() -> Frame {
        Frame {
            len: 8,
            kind: frame::PING,
            flags: 0,
            stream: 0,
        }
    }

    #[test]
    fn third_early_ping_is_too_many() {
        let c = ClientActivity::new(
            PingPolicy {
                min_interval: Duration::from_secs(300),
                without_calls: false,
            },
            None,
        );
        c.call_started();
        c.read(&ping()); // first: free
        c.read(&ping()); // strike 1
        c.read(&ping()); // strike 2
        assert!(!c.too_many_pings());
        c.read(&ping()); // strike 3 > 2
        assert!(c.too_many_pings());
    }

    #[test]
    fn sending_data_forgives() {
        let c = ClientActivity::new(
            PingPolicy {
                min_interval: Duration::from_secs(300),
                without_calls: true,
            },
            None,
        );
        let data = Frame {
            len: 5,
            kind: frame::DATA,
            flags: 0,
            stream: 1,
        };
        for _ in 0..10 {
            c.read(&ping());
            c.written(&data);
        }
        assert!(!c.too_many_pings());
    }
}
