//! The shard's route cache, kept coherent with Redis by client tracking.
//!
//! Owns: routing value → route (or "not found"), with expiry; the lookups in progress. Filled
//! only from the shard's own Redis connection, which has `CLIENT TRACKING ON`, so Redis pushes
//! an invalidation on that same connection whenever a key it served changes — after the reply
//! that carried the old value, never before it. A `SET` is therefore seen by the first call
//! that starts after its invalidation arrived (well under a millisecond on a LAN).
//!
//! # The rules
//!
//! 1. A miss inserts a *pending* slot and one GET goes out; lookups of the same key meanwhile
//!    wait on that slot instead of sending their own GET (one GET per key per shard).
//! 2. An invalidation that arrives while a GET is pending marks the slot; the GET's answer is
//!    then handed to the waiting calls but not cached — it may predate the change.
//! 3. Losing (or making) the Redis connection flushes everything: invalidations may have been
//!    missed. Pending slots are marked as in rule 2.
//! 4. Every entry also expires: after `cache_ttl_ms` (a bound should tracking ever fail
//!    silently), or `negative_ttl_ms` for "not found". With a RESP2 server (no tracking) the
//!    TTL is the only bound, and the README says so.
//! 5. At `cache_max_entries` the expired entries are swept, and if that frees nothing, half the
//!    entries go (in hash order, which is as good as random here).

use std::borrow::Borrow;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use foldhash::fast::RandomState;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use local_sync::oneshot;

use super::Route;
use crate::metrics::ShardMetrics;
use crate::redis::Push;
use crate::status::GatewayError;

/// What a lookup resolves to: a route, or the error to answer with (NOT_FOUND among them).
pub type Resolved = Result<Rc<Route>, GatewayError>;

pub struct RouteCache {
    /// Stripped from invalidated keys to find the routing value.
    prefix: RefCell<Bytes>,
    /// Keys are routing values (client input): foldhash, randomly seeded per process.
    slots: RefCell<HashMap<Key, Slot, RandomState>>,
    max_entries: Cell<usize>,
    ttl: Cell<Duration>,
    negative_ttl: Cell<Duration>,
    /// Bumped by every flush: a fill that started before it must not land.
    epoch: Cell<u64>,
    metrics: Arc<ShardMetrics>,
}

/// A routing value as the cache keeps it: in the map's own bucket when it is short (most are:
/// job ids, UUIDs), so a lookup confirms its match without following a pointer. With `Bytes`
/// keys and 1,000 routing values in turn, that compare was a cache miss per lookup: 2.6% of a
/// shard's `perf` samples in `HashMap::get_mut`'s key compare and 1.3% in `memcmp` under
/// `scenario --systems ringway-cache --route-keys 1000` (2ae42fc).
enum Key {
    Inline { len: u8, bytes: [u8; INLINE_KEY] },
    Heap(Box<[u8]>),
}

/// The longest key kept inline: 46 bytes, so a `Key` is 48 (a UUID is 36).
const INLINE_KEY: usize = 46;

impl Key {
    fn new(value: &[u8]) -> Key {
        if value.len() <= INLINE_KEY {
            let mut bytes = [0; INLINE_KEY];
            bytes[..value.len()].copy_from_slice(value);
            Key::Inline {
                len: value.len() as u8,
                bytes,
            }
        } else {
            Key::Heap(value.into())
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Key::Inline { len, bytes } => &bytes[..*len as usize],
            Key::Heap(bytes) => bytes,
        }
    }
}

/// Looked up by `&[u8]`: hashes and compares as the bytes do (`Borrow`'s contract).
impl Borrow<[u8]> for Key {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state)
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Key {}

enum Slot {
    Ready {
        /// `None`: the key is not in Redis (a negative entry: RouteNotFound, its message made
        /// again on each hit). Not a `Resolved`, whose error inline made a slot 128 bytes and
        /// a map bucket 176 bytes (`-Zprint-type-sizes`): now 32 and 80.
        route: Option<Rc<Route>>,
        expires: Instant,
    },
    Pending {
        waiters: Vec<oneshot::Sender<Resolved>>,
        /// An invalidation or flush came while the GET was out.
        invalidated: bool,
    },
}

/// What [`RouteCache::lookup`] found.
pub enum Lookup {
    Hit(Resolved),
    /// A GET for this key is out; its answer will come here.
    Wait(oneshot::Receiver<Resolved>),
    /// Nothing usable: the caller must fetch, then call [`RouteCache::fill`] with this epoch.
    Miss {
        epoch: u64,
        answer: oneshot::Receiver<Resolved>,
    },
}

impl RouteCache {
    pub fn new(
        prefix: Bytes,
        max_entries: usize,
        ttl: Duration,
        negative_ttl: Duration,
        metrics: Arc<ShardMetrics>,
    ) -> RouteCache {
        RouteCache {
            prefix: RefCell::new(prefix),
            slots: RefCell::new(HashMap::with_hasher(RandomState::default())),
            max_entries: Cell::new(max_entries),
            ttl: Cell::new(ttl),
            negative_ttl: Cell::new(negative_ttl),
            epoch: Cell::new(0),
            metrics,
        }
    }

    /// Looks `value` up at `now` (the caller's clock reading: one fewer per call). On a miss,
    /// a pending slot is left for the caller's fetch.
    pub fn lookup(&self, value: &[u8], now: Instant) -> Lookup {
        let mut slots = self.slots.borrow_mut();
        match slots.get_mut(value) {
            Some(Slot::Ready { route, expires }) if *expires > now => {
                self.metrics.route_cache_hits.inc();
                return Lookup::Hit(match route {
                    Some(route) => Ok(route.clone()),
                    None => Err(self.not_found(value)),
                });
            }
            Some(Slot::Pending { waiters, .. }) => {
                self.metrics.route_cache_coalesced.inc();
                let (tx, rx) = oneshot::channel();
                waiters.push(tx);
                return Lookup::Wait(rx);
            }
            _ => {}
        }
        self.metrics.route_cache_misses.inc();
        if slots.len() >= self.max_entries.get() && !slots.contains_key(value) {
            Self::make_room(&mut slots, now);
        }
        let (tx, rx) = oneshot::channel();
        slots.insert(
            Key::new(value),
            Slot::Pending {
                waiters: vec![tx],
                invalidated: false,
            },
        );
        self.metrics.route_cache_entries.set(slots.len() as i64);
        Lookup::Miss {
            epoch: self.epoch.get(),
            answer: rx,
        }
    }

    /// Lands a fetch: caches it unless rule 2 or 3 forbids, and answers every waiter.
    pub fn fill(&self, value: &[u8], epoch: u64, resolved: Resolved) {
        let mut slots = self.slots.borrow_mut();
        // The pending slot's key is put back with the answer: not built a second time.
        let Some((
            key,
            Slot::Pending {
                waiters,
                invalidated,
            },
        )) = slots.remove_entry(value)
        else {
            return;
        };
        let cached = match &resolved {
            Ok(route) => Some((Some(route.clone()), self.ttl.get())),
            Err(GatewayError::RouteNotFound { .. }) => Some((None, self.negative_ttl.get())),
            // Errors (Redis down, malformed value) are not cached.
            Err(_) => None,
        };
        if let Some((route, ttl)) = cached {
            if !invalidated && epoch == self.epoch.get() {
                slots.insert(
                    key,
                    Slot::Ready {
                        route,
                        expires: Instant::now() + ttl,
                    },
                );
            }
        }
        self.metrics.route_cache_entries.set(slots.len() as i64);
        drop(slots);
        for waiter in waiters {
            let _ = waiter.send(resolved.clone());
        }
    }

    /// Applies what Redis pushed.
    pub fn on_push(&self, push: Push) {
        let prefix = self.prefix.borrow().clone();
        let mut slots = self.slots.borrow_mut();
        match push {
            Push::Invalidate(keys) => {
                for key in keys {
                    self.metrics.route_cache_invalidations.inc();
                    let Some(value) = key.strip_prefix(&prefix[..]) else {
                        continue;
                    };
                    match slots.get_mut(value) {
                        Some(Slot::Pending { invalidated, .. }) => *invalidated = true,
                        Some(Slot::Ready { .. }) => {
                            slots.remove(value);
                        }
                        None => {}
                    }
                }
            }
            Push::InvalidateAll | Push::Reset => {
                self.metrics.route_cache_invalidations.inc();
                self.epoch.set(self.epoch.get() + 1);
                slots.retain(|_, slot| match slot {
                    Slot::Pending { invalidated, .. } => {
                        *invalidated = true;
                        true
                    }
                    Slot::Ready { .. } => false,
                });
            }
        }
        self.metrics.route_cache_entries.set(slots.len() as i64);
    }

    /// A reload's new settings: sizes and lifetimes apply to what is cached from now on; a new
    /// key prefix empties the cache (its entries answered for other keys).
    pub fn reconfigure(
        &self,
        prefix: Bytes,
        max_entries: usize,
        ttl: Duration,
        negative_ttl: Duration,
    ) {
        self.max_entries.set(max_entries);
        self.ttl.set(ttl);
        self.negative_ttl.set(negative_ttl);
        if *self.prefix.borrow() != prefix {
            *self.prefix.borrow_mut() = prefix;
            self.on_push(Push::InvalidateAll);
        }
    }

    /// The answer for a key cached as not in Redis: what the lookup that found it so said.
    fn not_found(&self, value: &[u8]) -> GatewayError {
        GatewayError::RouteNotFound {
            key: super::key_text(&self.prefix.borrow(), value),
        }
    }

    fn make_room(slots: &mut HashMap<Key, Slot, RandomState>, now: Instant) {
        let before = slots.len();
        slots.retain(|_, slot| !matches!(slot, Slot::Ready { expires, .. } if *expires <= now));
        if slots.len() == before {
            let mut keep = false;
            slots.retain(|_, slot| {
                keep = !keep;
                keep || matches!(slot, Slot::Pending { .. })
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> RouteCache {
        RouteCache::new(
            Bytes::from_static(b"r:"),
            4,
            Duration::from_secs(60),
            Duration::from_secs(1),
            Arc::new(ShardMetrics::default()),
        )
    }

    fn route(v: &'static str) -> Resolved {
        Ok(Rc::new(
            Route::parse(Bytes::from_static(v.as_bytes())).unwrap(),
        ))
    }

    fn target(r: &Resolved) -> String {
        r.as_ref().unwrap().target(0).to_string()
    }

    #[test]
    fn miss_fill_hit_and_coalescing() {
        let c = cache();
        let Lookup::Miss { epoch, .. } = c.lookup(b"job", Instant::now()) else {
            panic!("miss")
        };
        let Lookup::Wait(mut waiter) = c.lookup(b"job", Instant::now()) else {
            panic!("waits on the pending GET")
        };
        c.fill(b"job", epoch, route("a:1"));
        assert_eq!(target(&waiter.try_recv().unwrap()), "a:1");
        let Lookup::Hit(hit) = c.lookup(b"job", Instant::now()) else {
            panic!("hit")
        };
        assert_eq!(target(&hit), "a:1");
    }

    #[test]
    fn invalidation_removes_and_spoils_pending() {
        let c = cache();
        let Lookup::Miss { epoch, .. } = c.lookup(b"job", Instant::now()) else {
            panic!()
        };
        c.fill(b"job", epoch, route("a:1"));
        c.on_push(Push::Invalidate(vec![Bytes::from_static(b"r:job")]));
        let Lookup::Miss { epoch, .. } = c.lookup(b"job", Instant::now()) else {
            panic!("invalidated")
        };
        // An invalidation while the GET is out: the answer is used once, not cached.
        c.on_push(Push::Invalidate(vec![Bytes::from_static(b"r:job")]));
        c.fill(b"job", epoch, route("a:1"));
        assert!(matches!(
            c.lookup(b"job", Instant::now()),
            Lookup::Miss { .. }
        ));
    }

    #[test]
    fn reset_flushes_and_fences_old_fills() {
        let c = cache();
        let Lookup::Miss { epoch, .. } = c.lookup(b"x", Instant::now()) else {
            panic!()
        };
        c.on_push(Push::Reset);
        c.fill(b"x", epoch, route("a:1"));
        assert!(matches!(
            c.lookup(b"x", Instant::now()),
            Lookup::Miss { .. }
        ));
    }

    #[test]
    fn keys_inline_and_on_the_heap() {
        let c = cache();
        let at_limit = vec![b'k'; INLINE_KEY];
        let longer = [&at_limit[..], b"x"].concat();
        let empty: &[u8] = b"";
        for (key, to) in [(&at_limit[..], "a:1"), (&longer[..], "b:2"), (empty, "c:3")] {
            let Lookup::Miss { epoch, .. } = c.lookup(key, Instant::now()) else {
                panic!("miss")
            };
            c.fill(key, epoch, route(to));
        }
        assert!(matches!(Key::new(&at_limit), Key::Inline { .. }));
        assert!(matches!(Key::new(&longer), Key::Heap(_)));
        for (key, to) in [(&at_limit[..], "a:1"), (&longer[..], "b:2"), (empty, "c:3")] {
            let Lookup::Hit(hit) = c.lookup(key, Instant::now()) else {
                panic!("hit for a key of {} bytes", key.len())
            };
            assert_eq!(target(&hit), to);
        }
        // A prefix of a cached key is another key.
        assert!(matches!(
            c.lookup(&at_limit[..10], Instant::now()),
            Lookup::Miss { .. }
        ));
        let mut pushed = b"r:".to_vec();
        pushed.extend_from_slice(&longer);
        c.on_push(Push::Invalidate(vec![Bytes::from(pushed)]));
        assert!(matches!(
            c.lookup(&longer, Instant::now()),
            Lookup::Miss { .. }
        ));
    }

    #[test]
    fn bounded() {
        let c = cache();
        for i in 0..20u8 {
            let key = [b'k', i];
            if let Lookup::Miss { epoch, .. } = c.lookup(&key, Instant::now()) {
                c.fill(&key, epoch, route("a:1"));
            }
        }
        assert!(c.slots.borrow().len() <= 4);
    }
}
