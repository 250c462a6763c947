//! Targets: which one a call goes to, and the shard's HTTP/2 connections to each.
//!
//! Owns: one [`TargetPool`] per target this shard has sent calls to, and the choice between a
//! route's targets. Mechanism (dialing, pooling) lives in the submodules; this file is the
//! policy that picks among targets: power-of-two-choices on calls in flight.

mod connector;
mod error;
mod pool;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use foldhash::fast::RandomState;

pub use connector::DialSettings;
pub use error::DialError;
pub use pool::{Lease, PoolSettings, TargetPool};

use crate::config::UpstreamConfig;
use crate::metrics::ShardMetrics;
use crate::rng::Rng;
use crate::route::Route;

/// The shard's pools, keyed by target: `host:port` for plaintext, `https://host:port` for
/// TLS, so a TLS and a plaintext target on the same `host:port` never share a connection.
pub struct Upstreams {
    /// Keyed by target (see above; `http://` is dropped); foldhash, randomly seeded per process.
    pools: RefCell<HashMap<Box<[u8]>, Rc<TargetPool>, RandomState>>,
    settings: RefCell<Rc<PoolSettings>>,
    rng: Rc<Rng>,
    metrics: Arc<ShardMetrics>,
}

impl Upstreams {
    /// `tls`: the shard's view of the client config for `https://` targets.
    pub fn new(
        config: &UpstreamConfig,
        tls: crate::tls::Local<rustls::ClientConfig>,
        rng: Rc<Rng>,
        metrics: Arc<ShardMetrics>,
    ) -> Upstreams {
        Upstreams {
            pools: RefCell::new(HashMap::with_hasher(RandomState::default())),
            settings: RefCell::new(Rc::new(PoolSettings::new(config, tls))),
            rng,
            metrics,
        }
    }

    /// Runs pool maintenance about once a second for as long as the shard runs (see
    /// [`pool`]'s module doc): idle, age, shrink, minimum, DNS refresh, unused pools dropped.
    pub async fn maintain_forever(self: Rc<Self>) {
        loop {
            monoio::time::sleep(std::time::Duration::from_secs(1)).await;
            let pools: Vec<Rc<TargetPool>> = self.pools.borrow().values().cloned().collect();
            for pool in pools {
                if !pool.maintain().await {
                    self.pools.borrow_mut().remove(pool.authority().as_bytes());
                }
            }
        }
    }

    /// The pool of the target this call should go to. With several targets, two are drawn at
    /// random and the one with fewer calls in flight wins (Mitzenmacher's power of two
    /// choices: nearly the balance of least-loaded at the cost of two looks). An ejected
    /// target loses to any other; when both draws are ejected, the first target that is not
    /// is taken, and only when all are does an ejected one get the call (to fail fast).
    pub fn pick(&self, route: &Route) -> Rc<TargetPool> {
        let n = route.len();
        if n <= 1 {
            return self.pool_bytes(route.target_bytes(0));
        }
        let a = self.rng.below(n);
        let b = (a + 1 + self.rng.below(n - 1)) % n;
        let (pa, pb) = (
            self.pool_bytes(route.target_bytes(a)),
            self.pool_bytes(route.target_bytes(b)),
        );
        match (pa.is_ejected(), pb.is_ejected()) {
            (false, false) if pb.in_flight() < pa.in_flight() => pb,
            (false, _) => pa,
            (true, false) => pb,
            (true, true) => route
                .targets()
                .map(|t| self.pool(t))
                .find(|p| !p.is_ejected())
                .unwrap_or(pa),
        }
    }

    /// A reload's upstream settings: for pools made from now on, and for the dials and leases
    /// of those already there.
    pub fn reconfigure(
        &self,
        config: &UpstreamConfig,
        tls: crate::tls::Local<rustls::ClientConfig>,
    ) {
        let settings = Rc::new(PoolSettings::new(config, tls));
        for pool in self.pools.borrow().values() {
            pool.reconfigure(settings.clone());
        }
        *self.settings.borrow_mut() = settings;
    }

    /// The pool for `target` as a route names it, created on first use.
    pub fn pool(&self, target: &str) -> Rc<TargetPool> {
        self.pool_bytes(target.as_bytes())
    }

    /// [`pool`](Self::pool) for a target as the route's bytes: looked up without a UTF-8
    /// check; one is made only to create a pool (the route value was checked when parsed).
    pub fn pool_bytes(&self, target: &[u8]) -> Rc<TargetPool> {
        let key = match target.strip_prefix(b"http://") {
            Some(plain) if !plain.is_empty() => plain,
            _ => target,
        };
        if let Some(pool) = self.pools.borrow().get(key) {
            return pool.clone();
        }
        let Ok(target) = std::str::from_utf8(target) else {
            // Not from a parsed route: still served, by a pool that cannot dial.
            return self.pool(&String::from_utf8_lossy(target));
        };
        let (tls, host_port) = crate::route::split_scheme(target);
        let key = if tls { target } else { host_port };
        let pool = Rc::new(TargetPool::new(
            key,
            host_port,
            tls,
            self.settings.borrow().clone(),
            self.metrics.clone(),
            self.rng.clone(),
        ));
        self.pools
            .borrow_mut()
            .insert(key.as_bytes().into(), pool.clone());
        pool
    }

    /// Open connections across all targets (for tests and metrics).
    pub fn open_connections(&self) -> usize {
        self.pools.borrow().values().map(|p| p.connections()).sum()
    }
}
