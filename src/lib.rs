//! ringway: a thread-per-core gRPC gateway that routes each call by a header looked up in Redis.
//!
//! # Layout
//!
//! - [`config`]: the typed configuration; every field has its unit, default and scope.
//! - [`shard`]: one pinned thread per core with its own monoio runtime (io_uring), listener,
//!   Redis connection and upstream pools; it builds a [`downstream::Server`] whose streams a
//!   [`proxy::Proxy`] serves. Nothing on a call's path crosses shards.
//! - [`net`]: the `SO_REUSEPORT` listeners, one per shard.
//! - [`wire`]: ringway's own HTTP/2, made for relaying on one thread: frames (`frame.rs`),
//!   HPACK (`hpack.rs`, `huffman.rs`), header lists and their checks (`headers.rs`), the
//!   connection state machine (`conn.rs`) with its receive path (`recv.rs`), its streams
//!   (`streams.rs`) and their handles (`handles.rs`), its guards against floods (`guard.rs`),
//!   and the socket driver that bounds what a peer can make it queue (`io.rs`).
//! - [`downstream`]: a client's HTTP/2 connection: settings, limits, accepting streams,
//!   keepalive, idle and age limits, ping enforcement; the reusable call tasks. It knows
//!   nothing of what a call does: streams go to a [`downstream::Handler`].
//! - [`proxy`]: the handler: one call, from the client's stream to the target's and back.
//! - [`route`]: routing header → Redis value → validated list of targets.
//! - [`redis`]: the shard's pipelined RESP connection: its login and database on every
//!   connect; [`redis::target`] resolves the URL and credentials (the password redacted
//!   wherever shown) and [`redis::transport`] is the one function that opens the socket;
//!   [`redis::sentinel`] finds the primary Sentinel names; [`redis::cluster`] keeps a Redis
//!   Cluster's slot map and a connection per primary ([`redis::slot`]: key → slot, redirects;
//!   [`redis::topology`]: the map as a node tells it).
//! - [`tls`]: TLS on both hops (rustls, ring): certificates and keys from PEM files, reloaded
//!   on SIGHUP and `POST /reload`; the handshake and the transport that runs rustls between
//!   the socket and [`wire`]; mTLS identities.
//! - [`upstream`]: per-target HTTP/2 connection pools and the choice between targets.
//! - [`status`]: gateway errors, their gRPC statuses and call outcomes, side by side.
//! - [`metrics`]: per-shard counters (single writer, no contention), exposed through
//!   `prometheus-client` at scrape time.
//! - [`admin`]: the admin port on its own thread: `/metrics`, `/healthz`, `/readyz`,
//!   `/config`, `POST /drain`, `POST /reload`.
//! - [`access_log`]: optional JSON lines, buffered per shard, written by their own thread.
//! - [`shutdown`]: the drain (signals, admin) and how shards learn of it.
//! - [`procfs`]: what the process and host look like, read from /proc with the `procfs`
//!   crate (fds, TCP states, sysctls); the bench reads it through here too.
//! - [`doctor`]: `ringway doctor`: checks the live machine against the config, with fixes.
//! - [`deadline`]: every connection's deadlines on one timer per shard (a monoio sleep is
//!   640 bytes; a deadline here is a heap slot).
//! - [`backoff`], [`rng`]: small helpers.
//!
//! Background the comments cite (TIME_WAIT, pooling, gRPC keepalive, the TCP practices the
//! tuning follows) is in `docs/background.md`.
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

pub mod access_log;
pub mod admin;
pub mod backoff;
pub mod balance;
pub mod clock;
pub mod config;
pub mod deadline;
pub mod doctor;
pub mod downstream;
pub mod live;
pub mod metrics;
pub mod net;
pub mod procfs;
pub mod proxy;
pub mod redis;
pub mod reload;
pub mod rng;
pub mod route;
pub mod shard;
pub mod shutdown;
pub mod status;
pub mod tls;
pub mod upgrade;
pub mod upstream;
pub mod wire;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use config::Config;
use metrics::ShardMetrics;
use shutdown::Drain;

/// A running gateway: where it listens, its shard threads and their metrics.
pub struct Gateway {
    /// The plaintext listener's address; `None` when it is off.
    pub local_addr: Option<SocketAddr>,
    /// The TLS listener's address; `None` when it is off.
    pub tls_addr: Option<SocketAddr>,
    pub admin_addr: Option<SocketAddr>,
    pub shards: Vec<JoinHandle<()>>,
    pub metrics: Vec<Arc<ShardMetrics>>,
    /// Duplicates of the listening sockets, to hand to a successor ([`upgrade`]).
    pub sockets: upgrade::Sockets,
    /// Stops the admin port's thread (its successor answers on the same socket).
    pub admin: Option<admin::Stopper>,
    /// Reloads the configuration (SIGHUP; the admin port's `POST /reload` has it too).
    pub reloader: Arc<reload::Reloader>,
}

/// Binds the listeners, starts every shard and waits until each one accepts, then starts the
/// admin port. Errors (a port in use, a runtime that cannot start) are returned before
/// anything serves. `drain` is how the caller (signals, admin) asks the shards to drain;
/// `tls` is the material loaded from the config's files ([`tls::Material::load`]).
/// `inherited`: the listening sockets of the process this one upgrades from, served instead of
/// binding new ones.
pub fn start(
    config: Config,
    drain: Arc<Drain>,
    tls: Arc<tls::Material>,
    inherited: Option<upgrade::Sockets>,
    read: reload::Read,
) -> io::Result<Gateway> {
    let count = config.shard_count();
    let connection_cap = connection_cap(&config);
    let backlog = config.downstream.listen_backlog;
    let bind = |listen: config::Listen| -> io::Result<Vec<std::net::TcpListener>> {
        match listen.addr() {
            Some(addr) => {
                if let Some(warning) = net::listen_port_warning(addr.port()) {
                    eprintln!("ringway: warning: {warning}");
                }
                Ok(net::bind_shard_listeners(addr, count, backlog)?.1)
            }
            None => Ok(Vec::new()),
        }
    };
    // Taken over from the process this one upgrades from: its sockets, for each listener it
    // had; one it did not have is bound here. One this config turns off is an error (the old
    // process goes on serving).
    let take = |taken: Vec<std::net::TcpListener>, listen: config::Listen, name: &str| match (
        taken.is_empty(),
        listen.addr(),
    ) {
        (true, _) => bind(listen),
        (false, Some(_)) => Ok(taken),
        (false, None) => Err(io::Error::other(format!(
            "the process upgraded from serves {name} on {}, which this config turns off",
            taken[0]
                .local_addr()
                .map_or_else(|e| e.to_string(), |a| a.to_string())
        ))),
    };
    let (plain, secure, inherited_admin) = match inherited {
        Some(sockets) => (
            take(sockets.plain, config.listen, "plaintext (listen)")?,
            take(
                sockets.tls,
                config.downstream.tls.listen,
                "TLS (downstream.tls.listen)",
            )?,
            sockets.admin,
        ),
        None => (
            bind(config.listen)?,
            bind(config.downstream.tls.listen)?,
            None,
        ),
    };
    let local_addr = plain.first().map(|l| l.local_addr()).transpose()?;
    let tls_addr = secure.first().map(|l| l.local_addr()).transpose()?;
    let mut sockets = upgrade::Sockets {
        plain: plain
            .iter()
            .map(|l| l.try_clone())
            .collect::<io::Result<_>>()?,
        tls: secure
            .iter()
            .map(|l| l.try_clone())
            .collect::<io::Result<_>>()?,
        admin: None,
    };
    let plain = net::spread(plain, count, backlog)?;
    let secure = net::spread(secure, count, backlog)?;
    let access_log = access_log::start(&config.access_log)?;
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let (balancer, inboxes) = balance::Balancer::new(count)?;
    let balanced = count > 1 && config.downstream.balance == balance::Balance::Connections;
    let reloader = Arc::new(reload::Reloader::new(config.clone(), read, tls.clone()));
    let config = Arc::new(config);
    let context = shard::ShardContext {
        config: config.clone(),
        drain: drain.clone(),
        access_log: access_log.clone(),
        connection_cap: connection_cap.div_ceil(count),
        tls: tls.clone(),
        balancer: balanced.then_some(balancer),
        live: reloader.live.clone(),
    };
    let (started_tx, started_rx) = crossbeam_channel::unbounded();
    let mut shards = Vec::with_capacity(count);
    let mut metrics = Vec::with_capacity(count);
    for (id, ((plain, tls), inbox)) in plain.into_iter().zip(secure).zip(inboxes).enumerate() {
        let listener = shard::Listeners {
            plain,
            tls,
            inbox: balanced.then_some(inbox),
        };
        let core = (!cores.is_empty()).then(|| cores[id % cores.len()]);
        let shard_metrics = Arc::new(ShardMetrics::default());
        metrics.push(shard_metrics.clone());
        shards.push(shard::spawn(
            id,
            core,
            listener,
            context.clone(),
            shard_metrics,
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
    let mut admin_stopper = None;
    let admin_addr = match config.admin_addr() {
        Some(addr) => {
            let state = Arc::new(admin::AdminState {
                reloader: reloader.clone(),
                shards: metrics.clone(),
                drain,
                started: Instant::now(),
                service_ports: local_addr
                    .iter()
                    .chain(&tls_addr)
                    .map(|a| a.port())
                    .collect(),
                access_log_dropped: access_log.map(|sink| sink.dropped),
                tls: tls.clone(),
            });
            let (bound, stopper, handed) = admin::start(addr, inherited_admin, state)?;
            sockets.admin = Some(handed);
            admin_stopper = Some(stopper);
            Some(bound)
        }
        None => None,
    };
    Ok(Gateway {
        local_addr,
        tls_addr,
        admin_addr,
        shards,
        metrics,
        sockets,
        admin: admin_stopper,
        reloader,
    })
}

/// Raises the descriptor limit as far as allowed and returns the client connection cap:
/// `max_connections`, or fewer when the descriptors left after `fd_reserve` cannot hold it.
fn connection_cap(config: &Config) -> usize {
    let wanted = config.downstream.max_connections;
    let reserve = config.downstream.fd_reserve;
    let limit = match procfs::raise_nofile_limit() {
        Ok((before, after)) => {
            if after > before {
                eprintln!(
                    "ringway: raised the descriptor limit (RLIMIT_NOFILE) from {before} to {after}"
                );
            }
            after
        }
        Err(e) => {
            eprintln!("ringway: warning: cannot read or raise RLIMIT_NOFILE: {e}");
            return wanted;
        }
    };
    let room = (limit as usize).saturating_sub(reserve);
    if room < wanted {
        eprintln!(
            "ringway: warning: descriptor limit {limit} leaves room for {room} client connections \
             (fd_reserve {reserve}), below downstream.max_connections {wanted}; capping at {room}. \
             Raise it with `ulimit -n` or systemd LimitNOFILE= (see tuning/README.md)"
        );
    }
    room.min(wanted).max(1)
}
