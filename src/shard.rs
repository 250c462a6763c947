//! One shard per core: a pinned thread running its own monoio runtime, its own listener, its own
//! Redis connection and its own upstream pools.
//!
//! Nothing a call touches is shared with another shard: the [`Shard`] lives in an `Rc` on its
//! thread, and its counters are `Cell`s. The only things that cross threads are the shard's
//! startup report (which I/O driver it got) and the read-only [`Config`].

use std::io;
use std::net::TcpListener;
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::Sender;
use http::HeaderName;
use monoio::{FusionDriver, RuntimeBuilder};

use crate::config::Config;
use crate::downstream;
use crate::redis::RedisClient;
use crate::rng::Rng;
use crate::route::Router;
use crate::upstream::Upstreams;

/// io_uring submission queue entries per shard. Each queued operation takes one; 1024 covers a
/// turn in which hundreds of connections read and write at once, and costs ~100 KiB.
const URING_ENTRIES: u32 = 1024;

/// Everything one call needs on its shard.
pub struct Shard {
    pub id: usize,
    /// The routing header's name, parsed once.
    pub route_header: HeaderName,
    pub router: Router,
    pub upstreams: Upstreams,
    /// Settings for client connections.
    pub h2_server: h2::server::Builder,
}

/// What a shard reports once it is accepting.
#[derive(Debug)]
pub struct Started {
    pub id: usize,
    /// "io_uring" or "epoll (legacy driver; io_uring unavailable)".
    pub driver: &'static str,
    pub core: Option<usize>,
}

/// Starts shard `id` on its own thread, pinned to `core` when given, serving `listener`.
/// It reports `Started` (or the error that stopped it) on `started`.
pub fn spawn(
    id: usize,
    core: Option<core_affinity::CoreId>,
    listener: TcpListener,
    config: Arc<Config>,
    started: Sender<io::Result<Started>>,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("ringway-shard-{id}"))
        .spawn(move || {
            let pinned = core
                .filter(|&c| core_affinity::set_for_current(c))
                .map(|c| c.id);
            let uring = monoio::utils::detect_uring();
            if !uring {
                // The legacy (epoll) driver needs non-blocking sockets; io_uring does not.
                if let Err(e) = listener.set_nonblocking(true) {
                    let _ = started.send(Err(e));
                    return;
                }
            }
            let runtime = RuntimeBuilder::<FusionDriver>::new()
                .with_entries(URING_ENTRIES)
                .enable_timer()
                .build();
            let mut runtime = match runtime {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = started.send(Err(e));
                    return;
                }
            };
            let driver = if uring {
                "io_uring"
            } else {
                "epoll (legacy driver; io_uring unavailable)"
            };
            runtime.block_on(run(id, listener, config, started, driver, pinned));
        })
}

async fn run(
    id: usize,
    listener: TcpListener,
    config: Arc<Config>,
    started: Sender<io::Result<Started>>,
    driver: &'static str,
    core: Option<usize>,
) {
    let listener = match monoio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => {
            let _ = started.send(Err(e));
            return;
        }
    };
    let rng = Rc::new(Rng::new(id as u64));
    let redis = RedisClient::start(&config.redis, rng.clone());
    let shard = Rc::new(Shard {
        id,
        // Validated with the config.
        route_header: HeaderName::from_bytes(config.route.header.as_bytes())
            .expect("route.header was validated"),
        router: Router::new(&config, redis),
        upstreams: Upstreams::new(&config.upstream, rng),
        h2_server: downstream::server_builder(&config.downstream),
    });
    let _ = started.send(Ok(Started { id, driver, core }));

    // Accept errors such as EMFILE are transient: log the first of a streak, back off briefly
    // so the loop does not spin, and keep serving.
    let mut failing = false;
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                failing = false;
                monoio::spawn(downstream::serve(shard.clone(), stream));
            }
            Err(e) => {
                if !failing {
                    eprintln!("ringway: shard {id}: accept failed: {e}");
                }
                failing = true;
                monoio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}
