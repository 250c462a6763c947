//! Deadlines for every connection of a shard on one timer.
//!
//! A monoio `Sleep` is 640 bytes (its timer entry is padded to cache lines), and a client
//! connection needs one for its keepalive, idle and age deadlines and another for its send
//! timeout: with 10,000 idle clients that alone was 12 MiB. Here a [`Deadline`] is a slot of
//! ~40 bytes in the shard's [`Wheel`] — a binary heap of (time, slot) — and one task per shard
//! sleeps until the earliest of them.
//!
//! Moving a deadline later costs no heap entry: the earlier entry fires, finds the slot's real
//! deadline still ahead and queues it then. So a connection that pushes its send timeout back
//! on every write, or re-checks its timers on every accepted stream, adds at most one entry
//! at a time. Moving a deadline earlier queues one more entry; the stale one is skipped when
//! it comes up.
//!
//! Owns nothing but time: it does not know what a deadline is for. Per shard thread (a
//! thread-local), never shared between shards.

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::poll_fn;
use std::marker::PhantomData;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

/// Times are nanoseconds since the wheel's epoch (8 bytes, where an `Option<Instant>` is 16:
/// a slot is 40 bytes, one per connection).
type Tick = u64;
/// No time.
const NEVER: Tick = Tick::MAX;

struct Slot {
    /// When the slot fires; [`NEVER`]: disarmed.
    due: Tick,
    /// The time of the slot's live heap entry, if it has one.
    queued: Tick,
    fired: bool,
    waker: Option<Waker>,
}

/// The shard's deadlines.
struct Wheel {
    epoch: Instant,
    heap: BinaryHeap<Reverse<(Tick, usize)>>,
    slots: Vec<Slot>,
    free: Vec<usize>,
    /// The task that sleeps until the earliest deadline, and when it sleeps until.
    service: Option<Waker>,
    running: bool,
    sleeping_until: Tick,
    /// A deadline earlier than `sleeping_until` was set: the service must look again.
    kicked: bool,
}

impl Default for Wheel {
    fn default() -> Wheel {
        Wheel {
            epoch: Instant::now(),
            heap: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            service: None,
            running: false,
            sleeping_until: NEVER,
            kicked: false,
        }
    }
}

impl Wheel {
    fn tick(&self, at: Instant) -> Tick {
        at.saturating_duration_since(self.epoch).as_nanos() as Tick
    }

    fn instant(&self, tick: Tick) -> Instant {
        self.epoch + std::time::Duration::from_nanos(tick)
    }
}

thread_local! {
    static WHEEL: RefCell<Wheel> = RefCell::default();
}

/// One deadline, armed with [`set`](Deadline::set) and awaited with
/// [`poll_expired`](Deadline::poll_expired). Bound to its shard's thread. It takes a slot of
/// the wheel when first armed and keeps it until dropped (so re-arming never queues more
/// than the one entry described above).
pub struct Deadline {
    slot: Cell<Option<usize>>,
    _not_send: PhantomData<Rc<()>>,
}

impl Deadline {
    /// A disarmed deadline.
    pub fn new() -> Deadline {
        Deadline {
            slot: Cell::new(None),
            _not_send: PhantomData,
        }
    }

    /// The deadline's slot, taken from the wheel if it has none. Must be called inside the
    /// shard's runtime (the wheel's task starts on first use).
    fn slot(&self, w: &mut Wheel) -> usize {
        if let Some(slot) = self.slot.get() {
            return slot;
        }
        let fresh = Slot {
            due: NEVER,
            queued: NEVER,
            fired: false,
            waker: None,
        };
        let slot = match w.free.pop() {
            Some(slot) => {
                w.slots[slot] = fresh;
                slot
            }
            None => {
                w.slots.push(fresh);
                w.slots.len() - 1
            }
        };
        if !std::mem::replace(&mut w.running, true) {
            monoio::spawn(service());
        }
        self.slot.set(Some(slot));
        slot
    }

    /// Arms the deadline for `at` (replacing what it was armed for).
    pub fn set(&self, at: Instant) {
        WHEEL.with(|w| {
            let mut w = w.borrow_mut();
            let w = &mut *w;
            let key = self.slot(w);
            let at = w.tick(at);
            let slot = &mut w.slots[key];
            slot.due = at;
            slot.fired = false;
            if slot.queued <= at {
                // An entry at or before `at` is queued: it will queue `at` when it comes up.
                return;
            }
            slot.queued = at;
            w.heap.push(Reverse((at, key)));
            if at < w.sleeping_until {
                w.kicked = true;
                if let Some(waker) = w.service.take() {
                    waker.wake();
                }
            }
        })
    }

    /// Disarms the deadline.
    pub fn clear(&self) {
        if let Some(key) = self.slot.get() {
            WHEEL.with(|w| {
                let mut w = w.borrow_mut();
                let slot = &mut w.slots[key];
                slot.due = NEVER;
                slot.fired = false;
            })
        }
    }

    /// Ready once the armed time has passed; stays ready until the deadline is set again or
    /// cleared.
    pub fn poll_expired(&self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(key) = self.slot.get() else {
            return Poll::Pending; // Disarmed: nothing will wake it but a `set`.
        };
        WHEEL.with(|w| {
            let mut w = w.borrow_mut();
            let slot = &mut w.slots[key];
            if slot.fired {
                return Poll::Ready(());
            }
            match &mut slot.waker {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                waker => *waker = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
    }
}

impl Default for Deadline {
    fn default() -> Deadline {
        Deadline::new()
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            let _ = WHEEL.try_with(|w| free(&mut w.borrow_mut(), slot));
        }
    }
}

/// Returns a slot to the free list. A queued entry may still name it; when it comes up it
/// finds no deadline (or the next owner's, which it handles as its own).
fn free(w: &mut Wheel, key: usize) {
    let slot = &mut w.slots[key];
    slot.due = NEVER;
    slot.fired = false;
    slot.waker = None;
    w.free.push(key);
}

/// The wheel's task: fires what is due, then sleeps until the earliest deadline or until a
/// new, earlier one is set.
async fn service() {
    loop {
        let next = WHEEL.with(|w| fire_due(&mut w.borrow_mut(), Instant::now()));
        let wait_kick = poll_fn(|cx| {
            WHEEL.with(|w| {
                let mut w = w.borrow_mut();
                if std::mem::take(&mut w.kicked) {
                    return Poll::Ready(());
                }
                w.service = Some(cx.waker().clone());
                Poll::Pending
            })
        });
        match next {
            Some(at) => {
                monoio::select! {
                    _ = monoio::time::sleep_until(at.into()) => {}
                    _ = wait_kick => {}
                }
            }
            None => wait_kick.await,
        }
    }
}

/// Fires every slot whose deadline has passed; re-queues those whose deadline moved later.
/// Returns the earliest deadline left.
fn fire_due(w: &mut Wheel, now: Instant) -> Option<Instant> {
    let now = w.tick(now);
    while let Some(&Reverse((at, slot))) = w.heap.peek() {
        if at > now {
            break;
        }
        w.heap.pop();
        let s = &mut w.slots[slot];
        if s.queued != at {
            continue; // Stale: the slot queued an earlier entry since.
        }
        s.queued = NEVER;
        if s.due == NEVER {
            continue;
        }
        if s.due <= now {
            s.fired = true;
            if let Some(waker) = s.waker.take() {
                waker.wake();
            }
        } else {
            s.queued = s.due;
            w.heap.push(Reverse((s.due, slot)));
        }
    }
    let next = w.heap.peek().map(|&Reverse((at, _))| at);
    w.sleeping_until = next.unwrap_or(NEVER);
    w.kicked = false;
    next.map(|at| w.instant(at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn runtime() -> monoio::Runtime<monoio::time::TimeDriver<monoio::LegacyDriver>> {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime")
    }

    #[test]
    fn fires_in_order_and_moves_later_without_new_entries() {
        runtime().block_on(async {
            let start = Instant::now();
            let (a, b) = (Deadline::new(), Deadline::new());
            a.set(start + Duration::from_millis(30));
            b.set(start + Duration::from_millis(10));
            poll_fn(|cx| b.poll_expired(cx)).await;
            assert!(a.poll_expired(&mut noop()).is_pending());
            // Later and later: still one entry for `a`.
            for i in 0..100 {
                a.set(start + Duration::from_millis(40 + i));
            }
            assert!(WHEEL.with(|w| w.borrow().heap.len()) <= 2);
            poll_fn(|cx| a.poll_expired(cx)).await;
            assert!(start.elapsed() >= Duration::from_millis(139));
            // Earlier than what the service sleeps for: it wakes for it.
            let c = Deadline::new();
            a.set(Instant::now() + Duration::from_secs(60));
            c.set(Instant::now() + Duration::from_millis(5));
            let t = Instant::now();
            poll_fn(|cx| c.poll_expired(cx)).await;
            assert!(t.elapsed() < Duration::from_secs(5));
            // Cleared: never fires.
            c.set(Instant::now() + Duration::from_millis(5));
            c.clear();
            monoio::time::sleep(Duration::from_millis(20)).await;
            assert!(c.poll_expired(&mut noop()).is_pending());
        });
    }

    fn noop() -> Context<'static> {
        Context::from_waker(Waker::noop())
    }
}
