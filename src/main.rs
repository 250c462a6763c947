//! The `ringway` binary: parse the command line and config, start the shards, wait.

use std::path::PathBuf;
use std::process::ExitCode;

use std::sync::{Arc, OnceLock};

use clap::{Parser, Subcommand};
use ringway::config::{Config, RedisAddr};
use ringway::shutdown::{self, Drain};

/// A thread-per-core gRPC gateway: each call is routed by a request header whose value is
/// looked up in Redis (GET <prefix><value> → host:port[,host:port...]).
///
/// Flags override the config file; the file overrides the defaults.
#[derive(Parser, Debug, Clone)]
#[command(name = "ringway", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// Plaintext (h2c) service address every shard listens on (port 0: pick a free port);
    /// "off": no plaintext listener [default: 0.0.0.0:7070]
    #[arg(long, value_name = "ADDR")]
    listen: Option<ringway::config::Listen>,

    /// TLS service address every shard listens on (h2 over TLS 1.2/1.3); needs --tls-cert and
    /// --tls-key [default: off]
    #[arg(long, value_name = "ADDR")]
    tls_listen: Option<ringway::config::Listen>,

    /// Server certificate chain for --tls-listen, PEM (re-read on SIGHUP and POST /reload)
    #[arg(long, value_name = "CERT.pem")]
    tls_cert: Option<String>,

    /// Server private key for --tls-listen, PEM
    #[arg(long, value_name = "KEY.pem")]
    tls_key: Option<String>,

    /// CA certificates client certificates must chain to: mTLS, a client without one is
    /// refused [default: none]
    #[arg(long, value_name = "CA.pem")]
    tls_client_ca: Option<String>,

    /// CA certificates that https:// targets must chain to [default: the Mozilla roots built
    /// in (webpki-roots)]
    #[arg(long, value_name = "CA.pem")]
    upstream_ca: Option<String>,

    /// Redis server: host:port or redis[s]://[user[:password]@]host[:port][/db], or Redis
    /// Sentinel: redis[s]+sentinel://[user[:password]@]host:port[,host:port...]/SERVICE[/db] (prefer
    /// redis.password_file or redis.password_env to a password here: a command line is
    /// readable by every local user) [default: 127.0.0.1:6379]
    #[arg(long, value_name = "ADDR|URL")]
    redis: Option<RedisAddr>,

    /// CA certificates that a rediss:// Redis's certificate must chain to (redis.tls.ca)
    /// [default: the Mozilla roots built in (webpki-roots)]
    #[arg(long, value_name = "CA.pem")]
    redis_ca: Option<String>,

    /// Number of shards (threads pinned to cores); 0 = one per available core [default: 0]
    #[arg(long, value_name = "N")]
    shards: Option<usize>,

    /// The shards' I/O driver (io_driver) [default: epoll]
    #[arg(long, value_name = "DRIVER")]
    io_driver: Option<ringway::config::IoDriver>,

    /// Request header whose value is the routing key [default: jobid]
    #[arg(long, value_name = "NAME")]
    route_header: Option<String>,

    /// Prefix put before the header's value to form the Redis key [default: ""]
    #[arg(long, value_name = "PREFIX")]
    route_prefix: Option<String>,

    /// Cache routes per shard, kept coherent by Redis client tracking (RESP3) [default: off]
    #[arg(long)]
    route_cache: bool,

    /// Most HTTP/2 connections per target, per shard [default: 4]
    #[arg(long, value_name = "N")]
    pool_max_connections: Option<usize>,

    /// Route lookup timeout in milliseconds [default: 1000]
    #[arg(long, value_name = "MS")]
    lookup_timeout_ms: Option<u64>,

    /// Admin address (/metrics /healthz /readyz /config, POST /drain); "" disables it
    /// [default: 127.0.0.1:9901]
    #[arg(long, value_name = "ADDR")]
    admin: Option<String>,

    /// Wait for a successor on this Unix socket (binary upgrade): it gets the listening
    /// sockets, then this process drains [default: off]
    #[arg(long, value_name = "PATH")]
    upgrade_socket: Option<String>,

    /// Binary upgrade: take the listening sockets of the ringway waiting at PATH
    /// (its --upgrade-socket), serve on them, then tell it to drain
    #[arg(long, value_name = "PATH")]
    upgrade_from: Option<PathBuf>,

    /// Access log: "-" for stdout, or a file (JSON lines, one per call) [default: off]
    #[arg(long, value_name = "PATH")]
    access_log: Option<String>,

    /// Upstream dial timeout in milliseconds [default: 1000]
    #[arg(long, value_name = "MS")]
    dial_timeout_ms: Option<u64>,

    /// Preset for every field the config file does not set: lan or wan [default: none]
    #[arg(long, value_name = "NAME")]
    preset: Option<String>,

    /// TOML config file (see README, "Configuration"); flags given here override it
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Subcommand, Debug, Clone)]
enum Command {
    /// Check this machine against what ringway needs (limits, sysctls, io_uring); exits 1 on a failure
    Doctor {
        /// Also compare the live sysctls with a tuning profile: gateway-lan, gateway-wan, loopback-benchmark
        #[arg(long, value_name = "NAME")]
        profile: Option<String>,
        /// The config to check the machine against [default: the built-in defaults]
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Validate a config file; names the bad field and exits 1 when it is invalid
    CheckConfig {
        /// The TOML file to check
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Doctor { profile, config }) = &cli.command {
        let config = match Config::load(config.as_deref(), None) {
            Ok(config) => config,
            Err(e) => {
                eprintln!("ringway: invalid config: {e}");
                return ExitCode::from(2);
            }
        };
        return match ringway::doctor::run(&config, profile.as_deref()) {
            Ok(findings) => {
                print!("{}", ringway::doctor::render(&findings));
                ExitCode::from(ringway::doctor::exit_code(&findings) as u8)
            }
            Err(e) => {
                eprintln!("ringway doctor: {e}");
                ExitCode::from(2)
            }
        };
    }
    if let Some(Command::CheckConfig { file }) = &cli.command {
        return match Config::from_file(file).and_then(|c| c.validate_listeners()) {
            Ok(()) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ringway: invalid config: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let config = match effective_config(&cli) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("ringway: invalid config: {e}");
            return ExitCode::from(2);
        }
    };
    // Certificates and keys are read before anything binds: a bad file (expired, key that does
    // not match) stops the start, naming the file.
    let tls = match ringway::tls::Material::load(&config) {
        Ok(tls) => Arc::new(tls),
        Err(e) => {
            eprintln!("ringway: cannot start: TLS: {e}");
            return ExitCode::FAILURE;
        }
    };
    let drain = Arc::new(Drain::default());
    // SIGHUP reloads the configuration (and with it the TLS files) once the shards run.
    let reloader: Arc<OnceLock<Arc<ringway::reload::Reloader>>> = Arc::default();
    let on_hup = {
        let reloader = reloader.clone();
        move || match reloader.get() {
            Some(reloader) => {
                let _ = reloader.reload_logged("SIGHUP");
            }
            None => eprintln!("ringway: SIGHUP before the start finished: ignored"),
        }
    };
    if let Err(e) = shutdown::watch_signals(drain.clone(), on_hup) {
        eprintln!("ringway: cannot install signal handlers: {e}");
        return ExitCode::FAILURE;
    }
    // A binary upgrade: the running process's listening sockets, instead of binding.
    let (inherited, predecessor) = match &cli.upgrade_from {
        Some(path) => match ringway::upgrade::take_from(path) {
            Ok((sockets, predecessor)) => (Some(sockets), Some(predecessor)),
            Err(e) => {
                eprintln!("ringway: cannot start: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => (None, None),
    };
    let upgrade_socket = config.upgrade_socket.clone();
    // A reload reads the file again and applies the command line's flags on top, as here.
    let read: ringway::reload::Read = {
        let cli = cli.clone();
        Box::new(move || effective_config(&cli))
    };
    let gateway = match ringway::start(config, drain.clone(), tls, inherited, read) {
        Ok(gateway) => gateway,
        Err(e) => {
            eprintln!("ringway: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _ = reloader.set(gateway.reloader.clone());
    if let Some(predecessor) = predecessor {
        match predecessor.ready() {
            Ok(()) => eprintln!("ringway: upgrade: serving; the previous process drains"),
            Err(e) => eprintln!("ringway: upgrade: the previous process did not confirm: {e}"),
        }
    }
    if upgrade_socket.is_empty() {
        // Nobody to hand the sockets to: the shards' own are the only ones, so a drain closes
        // the listeners.
        drop(gateway.sockets);
    } else if let Err(e) =
        ringway::upgrade::serve(upgrade_socket.into(), gateway.sockets, gateway.admin, drain)
    {
        eprintln!("ringway: warning: no binary upgrades: {e}");
    }
    if let Some(admin) = gateway.admin_addr {
        eprintln!("ringway: admin on http://{admin}/ (metrics, healthz, readyz, config, drain)");
    }
    // `listening on <addr>` is the line scripts and tests wait for; it comes last.
    let shards = gateway.shards.len();
    match (gateway.local_addr, gateway.tls_addr) {
        (Some(plain), Some(tls)) => {
            eprintln!("ringway: TLS on {tls} (h2)");
            eprintln!("ringway: listening on {plain} ({shards} shards)");
        }
        (Some(plain), None) => eprintln!("ringway: listening on {plain} ({shards} shards)"),
        (None, Some(tls)) => {
            eprintln!("ringway: TLS on {tls} (h2)");
            eprintln!("ringway: listening on {tls} (TLS only, {shards} shards)");
        }
        (None, None) => {}
    }
    memory::give_back_when_connections_close(gateway.metrics.clone());
    // Shards return once a drain has finished.
    for shard in gateway.shards {
        let _ = shard.join();
    }
    eprintln!("ringway: drained, exiting");
    ExitCode::SUCCESS
}

/// Defaults, then the file, then the flags; validated once all are applied.
fn effective_config(cli: &Cli) -> Result<Config, ringway::config::ConfigError> {
    let mut config = Config::load(cli.config.as_deref(), cli.preset.as_deref())?;
    if let Some(listen) = cli.listen {
        config.listen = listen;
    }
    if let Some(redis) = &cli.redis {
        config.redis.addr = redis.clone();
    }
    if let Some(ca) = &cli.redis_ca {
        config.redis.tls.ca = ca.clone();
    }
    if let Some(driver) = cli.io_driver {
        config.io_driver = driver;
    }
    if let Some(shards) = cli.shards {
        config.shards = shards;
    }
    if let Some(header) = &cli.route_header {
        config.route.header = header.clone();
    }
    if let Some(prefix) = &cli.route_prefix {
        config.route.key_prefix = prefix.clone();
    }
    if cli.route_cache {
        config.route.cache = true;
    }
    if let Some(max) = cli.pool_max_connections {
        config.upstream.max_connections_per_target = max;
    }
    if let Some(ms) = cli.lookup_timeout_ms {
        config.redis.lookup_timeout_ms = ms;
    }
    if let Some(admin) = &cli.admin {
        config.admin = admin.clone();
    }
    if let Some(path) = &cli.upgrade_socket {
        config.upgrade_socket = path.clone();
    }
    if let Some(path) = &cli.access_log {
        config.access_log.path = path.clone();
    }
    if let Some(ms) = cli.dial_timeout_ms {
        config.upstream.dial_timeout_ms = ms;
    }
    let t = &mut config.downstream.tls;
    if let Some(listen) = cli.tls_listen {
        t.listen = listen;
    }
    for (flag, field) in [
        (&cli.tls_cert, &mut t.cert),
        (&cli.tls_key, &mut t.key),
        (&cli.tls_client_ca, &mut t.client_ca),
        (&cli.upstream_ca, &mut config.upstream.tls.ca),
    ] {
        if let Some(value) = flag {
            *field = value.clone();
        }
    }
    config.validate()?;
    config.validate_listeners()?;
    let redis_tls = &config.redis.tls;
    let tls_files = [&redis_tls.ca, &redis_tls.cert, &redis_tls.key];
    if tls_files.iter().any(|f| !f.is_empty())
        && !config.redis.addr.as_str().starts_with("rediss://")
        && !config.redis.addr.as_str().starts_with("rediss+sentinel://")
        && !config.redis.addr.as_str().starts_with("rediss+cluster://")
    {
        eprintln!(
            "ringway: warning: [redis.tls] is set but redis.addr is not a rediss:// URL; \
             Redis is reached without TLS and those files are not used"
        );
    }
    Ok(config)
}

/// Returning memory to the system after many connections closed.
mod memory {
    use std::sync::Arc;
    use std::time::Duration;

    use ringway::metrics::ShardMetrics;

    /// Client connections that must have closed since the high mark before memory is trimmed.
    const CLOSED_BEFORE_TRIM: i64 = 512;

    /// Watches the client connection count once a second; when it has fallen by
    /// [`CLOSED_BEFORE_TRIM`] and by half since its high mark (the most open since the last
    /// trim), asks the allocator to give free memory back to the system. glibc keeps the freed memory of a shard thread's arena
    /// otherwise: after 10,000 idle clients closed, ringway held all their memory (171 MB at
    /// 0c2051f). `malloc_trim` walks the free chunks of every arena (a few ms for 100 MB) and
    /// runs at most once per such fall, off the shards' threads.
    pub fn give_back_when_connections_close(shards: Vec<Arc<ShardMetrics>>) {
        let spawned = std::thread::Builder::new()
            .name("ringway-memory".into())
            .spawn(move || {
                let mut high = 0i64;
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                    let open: i64 = shards.iter().map(|m| m.downstream_open.get()).sum();
                    high = high.max(open);
                    if high - open >= CLOSED_BEFORE_TRIM && open <= high / 2 {
                        trim();
                        high = open;
                    }
                }
            });
        if let Err(e) = spawned {
            eprintln!("ringway: warning: no memory trimming thread: {e}");
        }
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn trim() {
        // SAFETY: malloc_trim takes no pointers and may be called from any thread at any time;
        // glibc locks each arena while it trims it.
        unsafe {
            libc::malloc_trim(0);
        }
    }

    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    fn trim() {}
}
