//! From a call's routing header to the target(s) it must go to.
//!
//! Owns: the lookup (`GET <prefix><value>` on the shard's Redis connection, with a timeout),
//! the optional route [`cache`], and the meaning of the value (`host:port`, or several
//! separated by commas; each may be written `https://host:port` for TLS to that target, or
//! `http://host:port`, the same as bare `host:port`). Knows nothing of HTTP/2 or of
//! connections; the proxy hands it a header value and gets back a [`Route`] or the
//! [`GatewayError`] to answer with.

pub mod cache;

use std::cell::{Cell, RefCell};
use std::ops::Deref;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use std::sync::Arc;

use crate::config::{split_host_port, Config};
use crate::metrics::ShardMetrics;
use crate::redis::{RedisClient, Reply, Unavailable};
use crate::status::{printable, GatewayError};
use cache::{Lookup, RouteCache};

/// Most targets one route may name; more is a malformed route, not a list to scan per call.
pub const MAX_TARGETS: usize = 64;

/// The shard's router. Cheap to clone (a cache fill runs in its own task with a clone).
#[derive(Clone)]
pub struct Router {
    inner: Rc<Inner>,
}

struct Inner {
    redis: RedisClient,
    metrics: Arc<ShardMetrics>,
    prefix: RefCell<Bytes>,
    lookup_timeout: Cell<Duration>,
    /// Where Redis is, password redacted ([`crate::config::RedisConfig::shown`]).
    redis_addr: String,
    cache: Option<Rc<RouteCache>>,
    valid: ValidValues,
    /// The cache's routes (used only with a cache).
    shared: SharedRoutes,
}

/// Route values that parsed well lately, so a value seen again skips the parse: with the same
/// few `host:port` values coming back call after call, parsing was ~800 instructions of each
/// call without the route cache (callgrind, `bench/profile`, 8ede97c). A value is kept as a
/// copy in a fixed slot (no allocation; the call's route still holds the reply's own bytes),
/// one slot per hash, the newest value winning its slot.
struct ValidValues {
    slots: RefCell<Box<[ValidValue; VALID_SLOTS]>>,
    hasher: foldhash::fast::FixedState,
}

const VALID_SLOTS: usize = 32;
/// Longer values are parsed every time.
const VALID_MAX: usize = 64;

#[derive(Clone, Copy)]
struct ValidValue {
    len: u8,
    count: u8,
    value: [u8; VALID_MAX],
}

impl ValidValues {
    fn new() -> ValidValues {
        let empty = ValidValue {
            len: 0,
            count: 0,
            value: [0; VALID_MAX],
        };
        ValidValues {
            slots: RefCell::new(Box::new([empty; VALID_SLOTS])),
            hasher: foldhash::fast::FixedState::default(),
        }
    }

    /// `value` as a route: from its slot when it was seen before, else parsed (and kept).
    fn parse(&self, value: Bytes) -> Result<Route, MalformedValue> {
        use std::hash::BuildHasher;
        if value.is_empty() || value.len() > VALID_MAX {
            return Route::parse(value);
        }
        let slot = self.hasher.hash_one(&value[..]) as usize % VALID_SLOTS;
        let mut slots = self.slots.borrow_mut();
        let kept = &mut slots[slot];
        if kept.count > 0 && kept.value[..kept.len as usize] == value[..] {
            let count = kept.count as usize;
            return Ok(Route { value, count });
        }
        let route = Route::parse(value)?;
        kept.len = route.value.len() as u8;
        kept.count = route.count as u8;
        kept.value[..route.value.len()].copy_from_slice(&route.value);
        Ok(route)
    }
}

/// The routes the cache holds, one `Rc` per value among the recent ones, in an allocation of
/// their own.
///
/// Not [`ValidValues`]'s slots: those keep a copy in place, so the call path without a cache
/// skips the parse and allocates nothing; these own an allocation that cache entries share,
/// made once per fill of a new value (off the call path).
///
/// A value fresh from Redis is a slice of the Redis connection's read buffer (64 KiB at a
/// time): a cached route that kept it would keep that whole buffer alive as long as the entry
/// lives — up to `cache_ttl_ms`, for as many entries as the cache holds, 64 KiB each at worst.
/// So a route goes into the cache as a copy of its value, and routing values whose value is
/// the same (many jobs on a few targets) share one copy: 1,000 cached keys naming one target
/// are one `Route` in memory, not 1,000 scattered ones a call must fetch from the cache's
/// misses. One slot per hash, the newest value winning its slot; a slot keeps its route (at
/// most [`SHARED_MAX`] bytes) after the cache dropped it, until another value takes the slot.
struct SharedRoutes {
    slots: RefCell<[Option<Rc<Route>>; SHARED_SLOTS]>,
    hasher: foldhash::fast::FixedState,
}

const SHARED_SLOTS: usize = 16;
/// Longer values are copied for each entry, not shared.
const SHARED_MAX: usize = 256;

impl SharedRoutes {
    fn new() -> SharedRoutes {
        SharedRoutes {
            slots: RefCell::new(Default::default()),
            hasher: foldhash::fast::FixedState::default(),
        }
    }

    /// `route` for the cache: the shared copy of its value, made if there is none.
    fn share(&self, route: Route) -> Rc<Route> {
        use std::hash::BuildHasher;
        let own = |route: &Route| {
            Rc::new(Route {
                value: Bytes::copy_from_slice(&route.value),
                count: route.count,
            })
        };
        if route.value.len() > SHARED_MAX {
            return own(&route);
        }
        let slot = self.hasher.hash_one(&route.value[..]) as usize % SHARED_SLOTS;
        let mut slots = self.slots.borrow_mut();
        match &slots[slot] {
            Some(kept) if kept.value == route.value => kept.clone(),
            _ => {
                let made = own(&route);
                slots[slot] = Some(made.clone());
                made
            }
        }
    }
}

/// A route as the router hands it out: fresh from Redis, or shared with the cache.
pub enum RouteRef {
    Owned(Route),
    Shared(Rc<Route>),
}

impl Deref for RouteRef {
    type Target = Route;

    fn deref(&self) -> &Route {
        match self {
            RouteRef::Owned(route) => route,
            RouteRef::Shared(route) => route,
        }
    }
}

/// The cache for a config, if it asks for one.
pub fn cache_for(config: &Config, metrics: Arc<ShardMetrics>) -> Option<Rc<RouteCache>> {
    let r = &config.route;
    r.cache.then(|| {
        Rc::new(RouteCache::new(
            Bytes::from(r.key_prefix.clone().into_bytes()),
            r.cache_max_entries,
            Duration::from_millis(r.cache_ttl_ms),
            Duration::from_millis(r.negative_ttl_ms),
            metrics,
        ))
    })
}

impl Router {
    pub fn new(
        config: &Config,
        redis: RedisClient,
        metrics: Arc<ShardMetrics>,
        cache: Option<Rc<RouteCache>>,
    ) -> Router {
        Router {
            inner: Rc::new(Inner {
                redis,
                metrics,
                prefix: RefCell::new(Bytes::from(config.route.key_prefix.clone().into_bytes())),
                lookup_timeout: Cell::new(config.lookup_timeout()),
                // Redacted: this goes into clients' grpc-message.
                redis_addr: config.redis.shown(),
                cache,
                valid: ValidValues::new(),
                shared: SharedRoutes::new(),
            }),
        }
    }

    /// A reload's route settings: the key prefix and lookup timeout for lookups from now on,
    /// and the cache's sizes and lifetimes (whether there is a cache is fixed at start).
    pub fn reconfigure(&self, config: &Config) {
        let prefix = Bytes::from(config.route.key_prefix.clone().into_bytes());
        *self.inner.prefix.borrow_mut() = prefix.clone();
        self.inner.lookup_timeout.set(config.lookup_timeout());
        if let Some(cache) = &self.inner.cache {
            let r = &config.route;
            cache.reconfigure(
                prefix,
                r.cache_max_entries,
                Duration::from_millis(r.cache_ttl_ms),
                Duration::from_millis(r.negative_ttl_ms),
            );
        }
    }

    /// Resolves a routing value: from the cache when it has it, else from Redis, within the
    /// lookup timeout from `asked` (when the call asked). Also says whether the cache answered
    /// at once (nothing waited: the caller need not read the clock to time the lookup).
    pub async fn resolve(
        &self,
        value: &[u8],
        asked: Instant,
    ) -> (Result<RouteRef, GatewayError>, bool) {
        let Some(cache) = &self.inner.cache else {
            let fetched = self.inner.fetch(value, asked).await;
            return (fetched.map(RouteRef::Owned), false);
        };
        let answer = match cache.lookup(value, asked) {
            Lookup::Hit(resolved) => return (resolved.map(RouteRef::Shared), true),
            Lookup::Wait(answer) => answer,
            Lookup::Miss { epoch, answer } => {
                // The GET runs in its own task: the calls waiting on it must get their answer
                // even if this call is cancelled meanwhile.
                let inner = self.inner.clone();
                let key = Bytes::copy_from_slice(value);
                monoio::spawn(async move {
                    let resolved = inner
                        .fetch(&key, asked)
                        .await
                        .map(|route| inner.shared.share(route));
                    if let Some(cache) = &inner.cache {
                        cache.fill(&key, epoch, resolved);
                    }
                });
                answer
            }
        };
        let resolved = match answer.await {
            Ok(resolved) => resolved.map(RouteRef::Shared),
            Err(_) => Err(GatewayError::RedisUnavailable {
                addr: self.inner.redis_addr.clone(),
                source: Unavailable::Abandoned,
            }),
        };
        (resolved, false)
    }
}

impl Inner {
    /// Looks the routing value up in Redis and validates what it holds.
    async fn fetch(&self, key: &[u8], asked: Instant) -> Result<Route, GatewayError> {
        // A clone, not a borrow held across the await: a reload may replace the prefix.
        let prefix = self.prefix.borrow().clone();
        let timeout = self.lookup_timeout.get();
        let reply = match self.redis.get(&prefix, key, asked + timeout).await {
            Ok(reply) => reply,
            Err(Unavailable::TimedOut) => {
                self.metrics.redis_timeouts.inc();
                return Err(GatewayError::LookupTimeout {
                    key: self.key_text(key),
                    timeout_ms: timeout.as_millis() as u64,
                });
            }
            Err(unavailable) => {
                self.metrics.redis_errors.inc();
                return Err(GatewayError::RedisUnavailable {
                    addr: self.redis_addr.clone(),
                    source: unavailable,
                });
            }
        };
        match reply {
            Reply::Value(bytes) => {
                self.valid
                    .parse(bytes)
                    .map_err(|bad| GatewayError::MalformedRoute {
                        key: self.key_text(key),
                        value: bad.value,
                        reason: bad.reason,
                    })
            }
            Reply::Nil => Err(GatewayError::RouteNotFound {
                key: self.key_text(key),
            }),
            Reply::Other(kind) => Err({
                self.metrics.redis_errors.inc();
                GatewayError::RedisError {
                    key: self.key_text(key),
                    message: format!("unexpected {kind} reply to GET"),
                }
            }),
            Reply::Error(message) => Err({
                self.metrics.redis_errors.inc();
                GatewayError::RedisError {
                    key: self.key_text(key),
                    message,
                }
            }),
        }
    }

    /// The Redis key, printable, for messages.
    fn key_text(&self, value: &[u8]) -> String {
        key_text(&self.prefix.borrow(), value)
    }
}

/// The Redis key of a routing value (`prefix` + `value`), printable, for messages.
fn key_text(prefix: &[u8], value: &[u8]) -> String {
    let mut key = prefix.to_vec();
    key.extend_from_slice(value);
    printable(&key)
}

/// A target as a route names it: `https://host:port` (TLS), else plaintext (`http://` or
/// nothing before `host:port`). Returns whether it is TLS and the `host:port`.
pub fn split_scheme(target: &str) -> (bool, &str) {
    if let Some(rest) = target.strip_prefix("https://") {
        (true, rest)
    } else {
        (false, target.strip_prefix("http://").unwrap_or(target))
    }
}

/// A validated route value: one or more targets separated by commas (spaces around each are
/// allowed), each `host:port`, `http://host:port` or `https://host:port`. Keeps the bytes
/// Redis sent; targets are slices of them, so holding and walking a route allocates nothing.
#[derive(Debug, Clone)]
pub struct Route {
    value: Bytes,
    count: usize,
}

impl Route {
    /// Checks every target's syntax. The error is the reason, for the caller to wrap.
    pub fn parse(value: Bytes) -> Result<Route, MalformedValue> {
        let text = std::str::from_utf8(&value).map_err(|_| MalformedValue {
            value: printable(&value),
            reason: "not UTF-8".into(),
        })?;
        let mut count = 0;
        for target in text.split(',') {
            let target = target.trim();
            if split_host_port(split_scheme(target).1).is_none() {
                return Err(MalformedValue {
                    value: printable(&value),
                    reason: if target.is_empty() {
                        "empty target".into()
                    } else {
                        format!(
                            "`{target}` is not host:port with a port in 1..=65535 (after \
                             http:// or https:// if any)"
                        )
                    },
                });
            }
            count += 1;
        }
        if count > MAX_TARGETS {
            return Err(MalformedValue {
                value: printable(&value),
                reason: format!("{count} targets, at most {MAX_TARGETS} allowed"),
            });
        }
        Ok(Route { value, count })
    }

    /// How many targets the route names (at least 1).
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The `i`th target, `host:port` as written in Redis (trimmed).
    pub fn target(&self, i: usize) -> &str {
        self.targets().nth(i).unwrap_or_default()
    }

    /// [`target`](Self::target) as bytes: the call path's form, with no UTF-8 check (the value
    /// was checked once, when parsed; the check per call was ~400 instructions of it).
    #[inline]
    pub fn target_bytes(&self, i: usize) -> &[u8] {
        if self.count == 1 {
            return self.value.trim_ascii();
        }
        self.value
            .split(|&b| b == b',')
            .nth(i)
            .map(<[u8]>::trim_ascii)
            .unwrap_or_default()
    }

    pub fn targets(&self) -> impl Iterator<Item = &str> {
        // Validated as UTF-8 in `parse`.
        std::str::from_utf8(&self.value)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
    }
}

/// Why a route value was rejected.
#[derive(Debug, Clone, PartialEq)]
pub struct MalformedValue {
    pub value: String,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The call path's bytes are the targets as text.
    #[test]
    fn target_bytes_are_the_targets() {
        for v in ["127.0.0.1:1", " a:1 , https://b:2,c:3 ", "http://x:9"] {
            let r = Route::parse(Bytes::from(v)).unwrap();
            for i in 0..r.len() {
                assert_eq!(r.target_bytes(i), r.target(i).as_bytes(), "{v} #{i}");
            }
        }
    }

    /// Kept values answer as a fresh parse does, whatever shares their slot; bad values are
    /// refused every time; long ones are parsed every time.
    #[test]
    fn kept_values_parse_as_fresh_ones() {
        let valid = ValidValues::new();
        let long = format!("{}:1", "h".repeat(VALID_MAX));
        let mut values: Vec<String> = (0..200)
            .map(|i| format!("10.0.{}.{}:{}", i % 7, i, 20000 + i))
            .collect();
        values.extend(["a:1,b:2,https://c:3".into(), "x:0".into(), "".into(), long]);
        values.extend(["no-port".into(), "é:1".into(), "a:1,,b:2".into()]);
        for round in 0..3 {
            for v in &values {
                let fresh = Route::parse(Bytes::from(v.clone()));
                let kept = valid.parse(Bytes::from(v.clone()));
                match (fresh, kept) {
                    (Ok(a), Ok(b)) => {
                        assert_eq!(
                            a.targets().collect::<Vec<_>>(),
                            b.targets().collect::<Vec<_>>()
                        );
                        assert_eq!(a.len(), b.len(), "{v} round {round}");
                    }
                    (Err(a), Err(b)) => assert_eq!(a.reason, b.reason, "{v}"),
                    (a, b) => panic!("{v}: fresh {:?}, kept {:?}", a.is_ok(), b.is_ok()),
                }
            }
        }
    }

    /// A cached route is a copy of its value, not a slice of the buffer Redis's reply was read
    /// into (which it would keep alive); routing values whose value is the same share it.
    #[test]
    fn cached_routes_own_their_bytes_and_share_equal_values() {
        let shared = SharedRoutes::new();
        let read = Bytes::from(format!(
            "{}127.0.0.1:20051{}",
            "x".repeat(999),
            "y".repeat(999)
        ));
        let a = shared.share(Route::parse(read.slice(999..1014)).unwrap());
        assert_eq!(a.target(0), "127.0.0.1:20051");
        assert!(!read.as_ptr_range().contains(&a.value.as_ptr()));
        let b = shared.share(Route::parse(Bytes::from_static(b"127.0.0.1:20051")).unwrap());
        assert!(Rc::ptr_eq(&a, &b), "the same value: one route");
        let c = shared.share(Route::parse(Bytes::from_static(b"127.0.0.1:20052")).unwrap());
        assert!(!Rc::ptr_eq(&a, &c));
        assert_eq!(c.target(0), "127.0.0.1:20052");
        // Longer than a slot keeps: copied for each entry, never shared.
        let long = format!("{}:1", "h".repeat(SHARED_MAX));
        let first = shared.share(Route::parse(Bytes::from(long.clone())).unwrap());
        let again = shared.share(Route::parse(Bytes::from(long.clone())).unwrap());
        assert!(!Rc::ptr_eq(&first, &again));
        assert_eq!(again.target(0), long);
    }

    #[test]
    fn one_and_several_targets() {
        let r = Route::parse(Bytes::from_static(b"127.0.0.1:20051")).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r.target(0), "127.0.0.1:20051");
        let r = Route::parse(Bytes::from_static(b"a.svc:1, [::1]:2 ,10.0.0.3:3")).unwrap();
        assert_eq!(
            r.targets().collect::<Vec<_>>(),
            ["a.svc:1", "[::1]:2", "10.0.0.3:3"]
        );
    }

    #[test]
    fn schemes() {
        let r = Route::parse(Bytes::from_static(b"https://a.svc:443, http://b:1,c:2")).unwrap();
        let parts: Vec<_> = r.targets().map(split_scheme).collect();
        assert_eq!(parts, [(true, "a.svc:443"), (false, "b:1"), (false, "c:2")]);
        for bad in [&b"ftp://a:1"[..], b"https://a", b"HTTPS://a:1", b"https://"] {
            assert!(
                Route::parse(Bytes::copy_from_slice(bad)).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn malformed_values_say_why() {
        for (value, why) in [
            (&b""[..], "empty target"),
            (b"host", "not host:port"),
            (b"host:99999", "not host:port"),
            (b"a:1,,b:2", "empty target"),
            (b"\xff:1", "not UTF-8"),
        ] {
            let e = Route::parse(Bytes::copy_from_slice(value)).unwrap_err();
            assert!(e.reason.contains(why), "{value:?}: {e:?}");
        }
    }
}
