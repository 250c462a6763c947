//! ringway: a thread-per-core gRPC gateway that routes each call by a header looked up in Redis.
//!
//! # Layout
//!
//! - [`config`]: the typed configuration; every field has its unit, default and scope.
//! - [`shard`]: one pinned thread per core with its own monoio runtime (io_uring), listener,
//!   Redis connection and upstream pools. Nothing on a call's path crosses shards.
//! - [`net`]: the `SO_REUSEPORT` listeners, one per shard.
//! - [`downstream`]: a client's HTTP/2 connection: settings, limits, accepting streams.
//! - [`proxy`]: one call, from the client's stream to the target's and back.
//! - [`route`]: routing header → Redis value → validated list of targets.
//! - [`redis`]: the shard's pipelined RESP connection.
//! - [`upstream`]: per-target HTTP/2 connection pools and the choice between targets.
//! - [`status`]: gateway errors and their gRPC statuses, in one place.
//! - [`backoff`], [`rng`]: small helpers.
//!
//! # The path of one call
//!
//! The kernel hands a new connection to one shard's listener ([`shard`]); the shard runs the
//! HTTP/2 handshake and accepts streams on it ([`downstream`]). For each stream, [`proxy`]
//! reads the routing header (default `jobid`) and asks [`route`] to resolve it: a `GET` on the
//! shard's Redis connection ([`redis`]), pipelined with every other lookup of the same event
//! loop turn. The value names one or more `host:port` targets; [`upstream`] picks one (power of
//! two choices on calls in flight) and leases a stream on one of the shard's long-lived HTTP/2
//! connections to it. The request head goes upstream as it came; then both directions stream at
//! once, DATA frames and trailers, with flow control end to end, until both have ended or one
//! side resets. Anything ringway itself refuses becomes a gRPC status ([`status`]).

#![forbid(unsafe_code)]

pub mod backoff;
pub mod config;
pub mod downstream;
pub mod net;
pub mod proxy;
pub mod redis;
pub mod rng;
pub mod route;
pub mod shard;
pub mod status;
pub mod upstream;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use config::Config;

/// A running gateway: where it listens and its shard threads.
pub struct Gateway {
    pub local_addr: SocketAddr,
    pub shards: Vec<JoinHandle<()>>,
}

/// Binds the listeners, starts every shard and waits until each one accepts. Errors (a port in
/// use, a runtime that cannot start) are returned before anything serves.
pub fn start(config: Config) -> io::Result<Gateway> {
    let count = config.shard_count();
    let (local_addr, listeners) =
        net::bind_shard_listeners(config.listen, count, config.downstream.listen_backlog)?;
    if let Some(warning) = net::listen_port_warning(config.listen.port()) {
        eprintln!("ringway: warning: {warning}");
    }
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let config = Arc::new(config);
    let (started_tx, started_rx) = crossbeam_channel::unbounded();
    let mut shards = Vec::with_capacity(count);
    for (id, listener) in listeners.into_iter().enumerate() {
        let core = (!cores.is_empty()).then(|| cores[id % cores.len()]);
        shards.push(shard::spawn(
            id,
            core,
            listener,
            config.clone(),
            started_tx.clone(),
        )?);
    }
    for _ in 0..count {
        let started = started_rx
            .recv()
            .map_err(|_| io::Error::other("a shard exited before it started"))??;
        let core = started
            .core
            .map_or_else(|| "unpinned".to_string(), |c| format!("core {c}"));
        eprintln!(
            "ringway: shard {} on {core}, driver {}",
            started.id, started.driver
        );
    }
    Ok(Gateway { local_addr, shards })
}
