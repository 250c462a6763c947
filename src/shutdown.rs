//! Draining: the process-wide drain request, the OS signals that make it, and the shard-local
//! broadcast that tells every connection.
//!
//! This is the only module that knows about OS signals. The first SIGTERM or SIGINT (or
//! `POST /drain` on the admin port) starts a graceful drain: shards stop accepting, send every
//! client the two-phase GOAWAY, let calls in flight finish up to `drain_timeout_ms`, and the
//! process exits 0. A second signal exits at once. SIGHUP reloads the configuration, and
//! with it the TLS certificates and keys (`on_reload`); it never drains.
//!
//! Shards learn of the drain by looking at [`Drain`] from their control task every
//! [`POLL_INTERVAL`]: a monoio runtime cannot be woken from another thread without its `sync`
//! feature, and a 50 ms tick per shard costs nothing measurable. Inside a shard,
//! [`LocalBroadcast`] wakes every connection without any atomics.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// How often a shard looks at the process-wide drain flag.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// The process-wide drain request. Set once; never cleared.
///
/// A drain first only says so (`/readyz` 503, the gRPC health service NOT_SERVING) while
/// everything is served as before, for `downstream.drain_delay_ms`: long enough for a load
/// balancer's health check to take this host out. Only then do the shards close their
/// listeners and send GOAWAY — so no connection the balancer still sends lands in a closing
/// accept queue and is reset. A binary upgrade skips the delay (its successor accepts on the
/// same sockets).
#[derive(Debug, Default)]
pub struct Drain {
    requested: AtomicBool,
    /// When it was requested, as milliseconds since [`Drain::since`]; skip the delay when 0.
    at_ms: std::sync::atomic::AtomicU64,
    since: std::sync::OnceLock<std::time::Instant>,
}

impl Drain {
    /// Starts the drain; returns `false` when it had already started.
    pub fn start(&self) -> bool {
        if !self.is_draining() {
            let base = *self.since.get_or_init(std::time::Instant::now);
            let at = base.elapsed().as_millis() as u64 + 1;
            self.at_ms.store(at, Ordering::SeqCst);
        }
        !self.requested.swap(true, Ordering::SeqCst)
    }

    /// Starts the drain with no delay (or ends the delay of one under way).
    pub fn start_now(&self) -> bool {
        self.at_ms.store(0, Ordering::SeqCst);
        !self.requested.swap(true, Ordering::SeqCst)
    }

    /// Whether a drain was asked for: readiness and health say so from then on.
    pub fn is_draining(&self) -> bool {
        self.requested.load(Ordering::Relaxed)
    }

    /// Whether the shards should stop serving: drained, and `delay` has passed since (or the
    /// drain was started with no delay).
    pub fn stops_serving(&self, delay: Duration) -> bool {
        if !self.is_draining() {
            return false;
        }
        let at = self.at_ms.load(Ordering::SeqCst);
        match self.since.get() {
            Some(base) if at > 0 => {
                base.elapsed().as_millis() as u64 + 1 >= at + delay.as_millis() as u64
            }
            _ => true,
        }
    }
}

/// Starts a thread that turns SIGTERM/SIGINT into a drain, and a second one into an exit;
/// SIGHUP calls `on_reload`.
pub fn watch_signals(drain: Arc<Drain>, on_reload: impl Fn() + Send + 'static) -> io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    std::thread::Builder::new()
        .name("ringway-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if signal == SIGHUP {
                    on_reload();
                    continue;
                }
                if drain.start() {
                    eprintln!(
                        "ringway: signal {signal}: draining (stop accepting, GOAWAY, finish calls); \
                         signal again to exit at once"
                    );
                } else {
                    eprintln!("ringway: signal {signal} during drain: exiting now");
                    std::process::exit(1);
                }
            }
        })?;
    Ok(())
}

/// A one-shot event inside one shard: every [`Subscription`] completes when it fires.
///
/// A subscription is a slot holding its task's waker, freed when the subscription is dropped:
/// a closed connection leaves nothing behind. (A oneshot channel per subscriber kept each
/// closed connection's task allocation alive through its waker until the list was swept.)
#[derive(Default)]
pub struct LocalBroadcast {
    fired: Cell<bool>,
    wakers: RefCell<Vec<Option<Waker>>>,
    free: RefCell<Vec<usize>>,
}

impl LocalBroadcast {
    /// A future that completes when the event fires (at once if it already has).
    pub fn subscribe(&self) -> Subscription<'_> {
        Subscription {
            broadcast: self,
            slot: None,
        }
    }

    pub fn fire(&self) {
        self.fired.set(true);
        for waker in self.wakers.borrow_mut().iter_mut() {
            if let Some(waker) = waker.take() {
                waker.wake();
            }
        }
    }

    pub fn has_fired(&self) -> bool {
        self.fired.get()
    }
}

/// Waits for a [`LocalBroadcast`]; its slot is given back when it is dropped.
pub struct Subscription<'a> {
    broadcast: &'a LocalBroadcast,
    slot: Option<usize>,
}

impl Future for Subscription<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let b = this.broadcast;
        if b.fired.get() {
            return Poll::Ready(());
        }
        let mut wakers = b.wakers.borrow_mut();
        let slot = *this
            .slot
            .get_or_insert_with(|| match b.free.borrow_mut().pop() {
                Some(slot) => slot,
                None => {
                    wakers.push(None);
                    wakers.len() - 1
                }
            });
        match &mut wakers[slot] {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            waker => *waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for Subscription<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            self.broadcast.wakers.borrow_mut()[slot] = None;
            self.broadcast.free.borrow_mut().push(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_every_live_subscription_and_reuses_slots() {
        let b = LocalBroadcast::default();
        let mut cx = Context::from_waker(Waker::noop());
        let mut first = Box::pin(b.subscribe());
        assert!(first.as_mut().poll(&mut cx).is_pending());
        drop(first);
        let mut second = Box::pin(b.subscribe());
        assert!(second.as_mut().poll(&mut cx).is_pending());
        assert_eq!(
            b.wakers.borrow().len(),
            1,
            "the dropped one's slot was reused"
        );
        b.fire();
        assert!(second.as_mut().poll(&mut cx).is_ready());
        assert!(Box::pin(b.subscribe()).as_mut().poll(&mut cx).is_ready());
    }
}
