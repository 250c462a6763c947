//! A coarse clock for bookkeeping that needs no precision: a shard's control task reads the
//! real clock every [`POLL_INTERVAL`](crate::shutdown::POLL_INTERVAL) and stores it here; the
//! call path reads the stored value instead of the kernel's clock.
//!
//! For timestamps compared against limits of seconds — when a pool or connection was last used
//! or went idle, when a client last sent something (keepalive) — 50 ms of lag changes nothing, and a `clock_gettime` per use was ~3.5% of a
//! shard's CPU samples under load (`perf`, 2-core VM, kvm-clock). Latency histograms and
//! deadlines keep the real clock.
//!
//! Per thread: a shard thread has its own; a thread that never ticked (tests, the admin
//! thread) reads the real clock.

use std::cell::Cell;
use std::time::Instant;

thread_local! {
    static NOW: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// The time at this thread's last [`tick`], or the real time if it never ticked.
#[inline]
pub fn coarse() -> Instant {
    NOW.with(Cell::get).unwrap_or_else(Instant::now)
}

/// Reads the real clock into this thread's coarse one.
pub fn tick() {
    NOW.with(|now| now.set(Some(Instant::now())));
}
