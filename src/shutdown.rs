//! Draining: the process-wide drain request, the OS signals that make it, and the shard-local
//! broadcast that tells every connection.
//!
//! This is the only module that knows about OS signals. The first SIGTERM or SIGINT (or
//! `POST /drain` on the admin port) starts a graceful drain: shards stop accepting, send every
//! client the two-phase GOAWAY, let calls in flight finish up to `drain_timeout_ms`, and the
//! process exits 0. A second signal exits at once.
//!
//! Shards learn of the drain by looking at [`Drain`] from their control task every
//! [`POLL_INTERVAL`]: a monoio runtime cannot be woken from another thread without its `sync`
//! feature, and a 50 ms tick per shard costs nothing measurable. Inside a shard,
//! [`LocalBroadcast`] wakes every connection without any atomics.

use std::cell::{Cell, RefCell};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use local_sync::oneshot;

/// How often a shard looks at the process-wide drain flag.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// The process-wide drain request. Set once; never cleared.
#[derive(Debug, Default)]
pub struct Drain {
    requested: AtomicBool,
}

impl Drain {
    /// Starts the drain; returns `false` when it had already started.
    pub fn start(&self) -> bool {
        !self.requested.swap(true, Ordering::SeqCst)
    }

    pub fn is_draining(&self) -> bool {
        self.requested.load(Ordering::Relaxed)
    }
}

/// Starts a thread that turns SIGTERM/SIGINT into a drain, and a second one into an exit.
pub fn watch_signals(drain: Arc<Drain>) -> io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
    std::thread::Builder::new()
        .name("ringway-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
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

/// A one-shot event inside one shard: every subscriber's receiver completes when it fires.
#[derive(Default)]
pub struct LocalBroadcast {
    fired: Cell<bool>,
    subscribers: RefCell<Vec<oneshot::Sender<()>>>,
}

impl LocalBroadcast {
    /// A receiver that completes when the event fires (at once if it already has).
    pub fn subscribe(&self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        if self.fired.get() {
            let _ = tx.send(());
            return rx;
        }
        let mut subscribers = self.subscribers.borrow_mut();
        // Subscribers that went away leave closed senders; sweep them whenever the list
        // doubles, so it stays proportional to the live ones.
        if subscribers.len() >= 64 && subscribers.len().is_power_of_two() {
            subscribers.retain(|s| !s.is_closed());
        }
        subscribers.push(tx);
        rx
    }

    pub fn fire(&self) {
        self.fired.set(true);
        for tx in self.subscribers.borrow_mut().drain(..) {
            let _ = tx.send(());
        }
    }

    pub fn has_fired(&self) -> bool {
        self.fired.get()
    }
}
