//! The scenario runner: one command that benchmarks every system under test with the same
//! load, on loopback, and writes `bench/results/<date>-<commit>/`.
//!
//! Owns: the run's order — Redis, the echo upstream, the route, then each system in turn
//! (start, probe, measure, sweep, stop) — and the results directory. Each step lives in its
//! own module:
//!
//! ```text
//! procs.rs     child processes (stopped on drop), readiness, free ports, a RESP one-liner
//! peers.rs     nginx configs rendered from bench/peers/ templates
//! systems.rs   the systems under test and how each starts
//! measure.rs   one load: loadgen as a child, CPU / RSS / TCP states around it, h2load checks
//! rounds.rs    --rounds: every system up at once, the load on each in turn, ratios by round
//! output.rs    results.json + README.md, machine and commit facts
//! chart.rs     the sweep's SVG charts
//! ```
//!
//! Every run is bounded: each load has a hard deadline (warm-up + duration + 30 s), each start
//! a readiness timeout, and every child is stopped when its `Proc` is dropped. All listening
//! ports are on 127.0.0.1 below 32768, out of the ephemeral range (docs/background.md,
//! "TCP practices", 2).

pub mod chart;
pub mod measure;
pub mod output;
pub mod peers;
pub mod procs;
pub mod rounds;
pub mod systems;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;

use measure::{Load, Tools, Watch};
use output::{Results, SweepPoint, SweepSeries, SystemRun};
use procs::Proc;
use systems::{Env, NotRun, System};

#[derive(Parser, Debug)]
#[command(about = "Benchmark ringway against direct calls and nginx peers, same load for all")]
pub struct Args {
    /// Short run (a couple of minutes): 4 s per system plus a 6-point sweep at 2 s each.
    #[arg(long)]
    pub quick: bool,
    /// Add the concurrency sweep (in-flight calls 1..1024) after the main runs.
    #[arg(long)]
    pub sweep: bool,
    /// Systems to run, comma-separated, in order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "direct,ringway,ringway-cache,haproxy,nginx-grpc,nginx-lua,nginx-lua-short"
    )]
    pub systems: Vec<String>,
    /// Main run: HTTP/2 connections from the load generator.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Main run: calls in flight.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Main run: open loop at this many calls per second instead of a closed loop.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Main run: measured seconds (default 10, quick 4).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Main run: warm-up seconds (default 2, quick 1).
    #[arg(long)]
    pub warmup: Option<f64>,
    /// Message payload bytes.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Routing header name.
    #[arg(long, default_value = "jobid")]
    pub route_header: String,
    /// Routing header value; the route key in Redis is <prefix><value>.
    #[arg(long, default_value = "bench")]
    pub route_value: String,
    #[arg(long, default_value = "")]
    pub route_prefix: String,
    /// Routing keys: with N > 1, calls carry <value>-0 … <value>-(N-1) in turn (each set in
    /// Redis to the same target), so no two calls in flight together share a key when N is at
    /// least the calls in flight; 1: every call carries <value>.
    #[arg(long, default_value_t = 1)]
    pub route_keys: usize,
    /// gRPC method path.
    #[arg(long, default_value = "/bench.Echo/Unary")]
    pub path: String,
    /// Sweep levels (calls in flight), comma-separated (default 1,2,4..1024; quick 1,4,16,64,256,1024).
    #[arg(long, value_delimiter = ',')]
    pub sweep_levels: Vec<usize>,
    /// Sweep: measured seconds per point (default 5, quick 2).
    #[arg(long)]
    pub sweep_duration: Option<f64>,
    /// Sweep: warm-up seconds per point (default 1, quick 0.5).
    #[arg(long)]
    pub sweep_warmup: Option<f64>,
    /// Cores for the gateway under test (default: the upper half; the last core on 2 cores).
    #[arg(long, value_delimiter = ',')]
    pub gateway_cpus: Vec<usize>,
    /// Cores for the load generator, the echo upstream and Redis (default: the others).
    #[arg(long, value_delimiter = ',')]
    pub client_cpus: Vec<usize>,
    /// Echo upstream threads.
    #[arg(long, default_value_t = 1)]
    pub upstream_threads: usize,
    /// Load generator threads (default: one per client core).
    #[arg(long)]
    pub loadgen_threads: Option<usize>,
    /// nginx upstream `keepalive N` (the OpenResty fix used 40; docs/background.md,
    /// "The OpenResty gateway").
    #[arg(long, default_value_t = 1024)]
    pub nginx_keepalive: usize,
    /// nginx + Lua: Redis cosocket pool size for setkeepalive (the OpenResty fix used 40;
    /// docs/background.md, "The OpenResty gateway").
    #[arg(long, default_value_t = 1024)]
    pub nginx_redis_pool: usize,
    /// The ringway binary (default: <workspace>/target/release/ringway).
    #[arg(long)]
    pub ringway: Option<PathBuf>,
    /// Extra argument for ringway, repeatable (e.g. --ringway-arg=--pool-max-connections=2).
    #[arg(long, allow_hyphen_values = true)]
    pub ringway_arg: Vec<String>,
    /// Apply this tuning profile (tuning/apply --apply NAME) for the session, if root; it is
    /// restored at the end.
    #[arg(long)]
    pub tuning: Option<String>,
    /// Lowest port to try for Redis, the upstream and the gateways (all stay below 32768).
    #[arg(long, default_value_t = 17000)]
    pub base_port: u16,
    /// Interleaved rounds instead of one run per system (N > 1; 1 is the ordinary run): start
    /// every system at once, then run the main load on each in turn N times (the order rotated
    /// each round), and report each system's CPU per call over the reference's round by round.
    /// The systems that use Redis must route to the same target (plaintext and TLS systems go
    /// in separate runs). No sweep, handshake runs or cross-checks in this mode.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// With --rounds: the system the ratios are taken against (default: the first system
    /// listed that is not ringway).
    #[arg(long)]
    pub rounds_reference: Option<String>,
    /// With --rounds: a second ringway binary; every ringway system listed runs twice, with
    /// `--ringway` and with this one (named `<system>@b`), so a change is measured against its
    /// base in the same rounds.
    #[arg(long)]
    pub rounds_ringway_b: Option<PathBuf>,
    /// Results directory (default: bench/results/<date>-<commit>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Skip the h2load cross-checks (direct path and each gateway's CPU per call).
    #[arg(long)]
    pub no_cross_check: bool,
    /// TLS systems: seconds of each handshake run (new connections, each a TLS handshake and
    /// one call; once with full handshakes, once resumed); 0 skips them (default 5, quick 3).
    #[arg(long)]
    pub handshake_duration: Option<f64>,
    /// TLS systems' handshake runs: connections being made at once.
    #[arg(long, default_value_t = 16)]
    pub handshake_concurrency: usize,
    /// TLS systems: the name the load generator sends as SNI and verifies (the run's
    /// certificates are for `localhost` and `127.0.0.1`).
    #[arg(long, default_value = crate::tls::SERVER_NAME)]
    pub tls_server_name: String,
}

fn bench_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn workspace_dir() -> PathBuf {
    bench_dir()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(bench_dir)
}

/// Cores this process may run on (its affinity mask, so `taskset` around the runner works).
pub fn allowed_cpus() -> Vec<usize> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap_or("0")
        .trim()
        .to_string();
    let mut out = Vec::new();
    for part in list.split(',') {
        let mut it = part.split('-');
        let a = it.next().and_then(|v| v.trim().parse::<usize>().ok());
        let b = it.next().and_then(|v| v.trim().parse::<usize>().ok());
        match (a, b) {
            (Some(a), Some(b)) => out.extend(a..=b),
            (Some(a), None) => out.push(a),
            _ => {}
        }
    }
    if out.is_empty() {
        out.push(0);
    }
    out
}

fn say(msg: &str) {
    eprintln!("scenario: {msg}");
}

/// A tuning profile applied for this session; restored (tuning/apply --restore) on drop.
struct Tuning {
    /// The profile in force: `none` unless one was applied.
    name: String,
    note: Option<String>,
    restore: Option<PathBuf>,
}

impl Drop for Tuning {
    fn drop(&mut self) {
        if let Some(apply) = self.restore.take() {
            let st = std::process::Command::new(&apply)
                .args(["--restore", "-q", &self.name])
                .status();
            say(&format!("tuning profile {} restored: {st:?}", self.name));
        }
    }
}

/// Apply a tuning profile with `tuning/apply --apply` when asked and permitted (root).
/// sysctls are machine-wide, so the profile covers every system of the session.
fn apply_tuning(name: Option<&str>) -> Tuning {
    let none = |note: Option<String>| Tuning {
        name: "none".into(),
        note,
        restore: None,
    };
    let Some(name) = name else { return none(None) };
    let apply = workspace_dir().join("tuning").join("apply");
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next().map(|u| u == "0"))
        .unwrap_or(false);
    if !apply.exists() {
        return none(Some(format!(
            "{name} requested, not applied: {} not found",
            apply.display()
        )));
    }
    if !root {
        return none(Some(format!(
            "{name} requested, not applied: not root (sudo {} --apply {name})",
            apply.display()
        )));
    }
    match std::process::Command::new(&apply)
        .args(["--apply", "-q", name])
        .status()
    {
        Ok(s) if s.success() => Tuning {
            name: name.into(),
            note: Some(
                "applied with tuning/apply --apply for the whole session, restored after".into(),
            ),
            restore: Some(apply),
        },
        Ok(s) => none(Some(format!(
            "{name} requested, tuning/apply --apply failed: {s}"
        ))),
        Err(e) => none(Some(format!("{name} requested, tuning/apply failed: {e}"))),
    }
}

fn hard_nofile() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4))
        .and_then(|v| v.parse().ok())
        .unwrap_or(16384)
        .min(1 << 20)
}

/// Run the whole scenario; returns the results directory.
pub fn run(args: Args) -> Result<PathBuf, String> {
    let q = args.quick;
    let cpus = allowed_cpus();
    let gateway_cpus = if args.gateway_cpus.is_empty() {
        if cpus.len() > 1 {
            cpus[cpus.len() - cpus.len() / 2..].to_vec()
        } else {
            cpus.clone()
        }
    } else {
        args.gateway_cpus.clone()
    };
    let client_cpus: Vec<usize> = if args.client_cpus.is_empty() {
        let rest: Vec<usize> = cpus
            .iter()
            .copied()
            .filter(|c| !gateway_cpus.contains(c))
            .collect();
        if rest.is_empty() {
            cpus.clone()
        } else {
            rest
        }
    } else {
        args.client_cpus.clone()
    };
    let systems: Vec<System> = args
        .systems
        .iter()
        .map(|s| {
            System::parse(s.trim()).ok_or_else(|| {
                format!(
                    "unknown system {s:?}; known: {:?}",
                    systems::ALL.map(|s| s.name())
                )
            })
        })
        .collect::<Result<_, _>>()?;

    let tuning = apply_tuning(args.tuning.as_deref());
    let (commit, dirty) = output::commit(&workspace_dir());
    let date = output::today();
    let out_dir = output::results_dir(
        args.out.as_ref(),
        &bench_dir().join("results"),
        &format!("{date}-{commit}"),
    );
    std::fs::create_dir_all(out_dir.join("configs"))
        .map_err(|e| format!("create {}: {e}", out_dir.display()))?;
    let tmp = std::env::temp_dir().join(format!("ringway-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| e.to_string())?;
    say(&format!(
        "results -> {}; scratch {}",
        out_dir.display(),
        tmp.display()
    ));

    // Ports: Redis, upstream, then one per system; all below 32768.
    let mut taken = Vec::new();
    let next_port = |taken: &mut Vec<u16>| -> Result<u16, String> {
        let p = procs::free_port(args.base_port, taken)?;
        taken.push(p);
        Ok(p)
    };
    let redis_port = next_port(&mut taken)?;
    let upstream_port = next_port(&mut taken)?;
    let client = systems::cpu_list(&client_cpus);

    let mut redis = Proc::spawn(
        "redis-server",
        Some(&client),
        &[
            systems::which("redis-server")
                .ok_or("redis-server not found: apt-get install -y redis-server")?,
            "--port".into(),
            redis_port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            String::new(),
            "--appendonly".into(),
            "no".into(),
            "--dir".into(),
            tmp.display().to_string(),
        ],
        &tmp.join("redis.log"),
    )?;
    let redis_addr: SocketAddr = ([127, 0, 0, 1], redis_port).into();
    redis.wait_port(redis_addr, Duration::from_secs(10))?;
    let bin_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| workspace_dir().join("target/release"));
    let mut upstream = Proc::spawn(
        "echo-upstream",
        Some(&client),
        &[
            bin_dir.join("echo-upstream").display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{upstream_port}"),
            "--threads".into(),
            args.upstream_threads.to_string(),
        ],
        &tmp.join("upstream.log"),
    )?;
    let upstream_addr = upstream.wait_listening(Duration::from_secs(10))?;
    let key = format!("{}{}", args.route_prefix, args.route_value);
    set_routes(
        redis_addr,
        &key,
        args.route_keys,
        &upstream_addr.to_string(),
    )?;
    say(&format!(
        "redis on {redis_addr}, echo upstream on {upstream_addr}, route {key} -> {upstream_addr}"
    ));
    // The TLS systems: a PKI made for this run, and a second echo upstream listening with TLS.
    let mut upstream_tls = None;
    let mut env_tls = None;
    if systems.iter().any(|s| s.is_tls()) {
        let pki = crate::tls::Pki::generate(&tmp.join("pki"))?;
        let port = next_port(&mut taken)?;
        let mut p = Proc::spawn(
            "echo-upstream-tls",
            Some(&client),
            &[
                bin_dir.join("echo-upstream").display().to_string(),
                "--listen".into(),
                format!("127.0.0.1:{port}"),
                "--threads".into(),
                args.upstream_threads.to_string(),
                "--tls-cert".into(),
                pki.upstream_cert.display().to_string(),
                "--tls-key".into(),
                pki.upstream_key.display().to_string(),
            ],
            &tmp.join("upstream-tls.log"),
        )?;
        let addr = p.wait_listening(Duration::from_secs(10))?;
        say(&format!(
            "TLS: PKI in {} ({}), echo upstream's TLS listener on {addr}",
            tmp.join("pki").display(),
            pki.key_type
        ));
        upstream_tls = Some(p);
        env_tls = Some(systems::EnvTls {
            pki,
            upstream: addr,
        });
    }

    let env = Env {
        tmp: tmp.clone(),
        peers_dir: bench_dir().join("peers"),
        redis: redis_addr,
        upstream: upstream_addr,
        route_header: args.route_header.clone(),
        route_prefix: args.route_prefix.clone(),
        gateway_cpus: gateway_cpus.clone(),
        keepalive: args.nginx_keepalive,
        redis_pool: args.nginx_redis_pool,
        ringway_bin: args
            .ringway
            .clone()
            .unwrap_or_else(|| workspace_dir().join("target/release/ringway")),
        ringway_args: args.ringway_arg.clone(),
        nofile: hard_nofile(),
        tls: env_tls,
    };
    let tools = Tools {
        loadgen: bin_dir.join("loadgen"),
        tmp: tmp.clone(),
        client_cpus: client.clone(),
    };
    let threads = args.loadgen_threads.unwrap_or(client_cpus.len()).max(1);
    let load = Load {
        connections: args.connections,
        concurrency: args.concurrency,
        rate: args.rate,
        duration_s: args.duration.unwrap_or(if q { 4.0 } else { 10.0 }),
        warmup_s: args.warmup.unwrap_or(if q { 1.0 } else { 2.0 }),
        message_bytes: args.size,
        threads,
        headers: vec![format!("{}={}", args.route_header, args.route_value)],
        keys: args.route_keys,
        path: args.path.clone(),
        tls: None,
        new_connections: false,
        resumption: true,
    };
    let load_tls = env.tls.as_ref().map(|t| measure::LoadTls {
        ca: t.pki.ca.clone(),
        server_name: args.tls_server_name.clone(),
    });
    let handshake_s = args.handshake_duration.unwrap_or(if q { 3.0 } else { 5.0 });
    let do_sweep = args.sweep || q;
    let levels: Vec<usize> = if !args.sweep_levels.is_empty() {
        args.sweep_levels.clone()
    } else if q {
        vec![1, 4, 16, 64, 256, 1024]
    } else {
        (0..=10).map(|i| 1usize << i).collect()
    };
    let sweep_load = Load {
        duration_s: args.sweep_duration.unwrap_or(if q { 2.0 } else { 5.0 }),
        warmup_s: args.sweep_warmup.unwrap_or(if q { 0.5 } else { 1.0 }),
        rate: None,
        ..load.clone()
    };

    let mut results = Results {
        date,
        commit,
        dirty,
        tuning: tuning.name.clone(),
        tuning_note: tuning.note.clone(),
        machine: output::machine(&gateway_cpus, &client),
        mode: if q {
            "quick"
        } else if args.sweep {
            "full + sweep"
        } else {
            "main"
        }
        .into(),
        load: load.clone(),
        nginx_keepalive: args.nginx_keepalive,
        nginx_redis_pool: args.nginx_redis_pool,
        redis_port,
        upstream_port,
        upstream_threads: args.upstream_threads,
        systems: Vec::new(),
        sweep: Vec::new(),
        sweep_load: do_sweep.then(|| sweep_load.clone()),
        cross_check: None,
        rounds: None,
        tls: env.tls.as_ref().map(|t| output::TlsSetup {
            key_type: t.pki.key_type.clone(),
            pki: t.pki.clone(),
            upstream: t.upstream.to_string(),
            server_name: args.tls_server_name.clone(),
            client: "loadgen: rustls 0.23, ring provider, TLS 1.2 + 1.3, ALPN h2".into(),
            handshake_duration_s: handshake_s,
            handshake_concurrency: args.handshake_concurrency,
        }),
    };

    if args.rounds > 1 {
        results.mode = format!("{} interleaved rounds", args.rounds);
        // Each system, and after each ringway system its `@b` twin when there is a B binary.
        let entries: Vec<(System, bool)> = systems
            .iter()
            .flat_map(|&s| {
                let twin = s.is_ringway() && args.rounds_ringway_b.is_some();
                std::iter::once((s, false)).chain(twin.then_some((s, true)))
            })
            .collect();
        let ports = entries
            .iter()
            .map(|_| next_port(&mut taken))
            .collect::<Result<Vec<u16>, String>>()?;
        let procs = RoundsProcs {
            redis: &redis,
            upstream: &upstream,
            upstream_port,
            upstream_tls: upstream_tls.as_ref(),
            redis_port,
        };
        let r = run_rounds(
            &args, &entries, &ports, &env, &tools, &load, &load_tls, &procs, &key,
        )?;
        results.rounds = Some(r);
        drop(upstream_tls);
        drop(upstream);
        drop(redis);
        write_results(&out_dir, &results)?;
        return Ok(out_dir);
    }

    for system in systems {
        let port = next_port(&mut taken)?;
        say(&format!("== {} ({})", system.name(), system.describe()));
        let mut run = SystemRun {
            system: system.name().into(),
            description: system.describe().into(),
            status: "ok".into(),
            reason: None,
            command: None,
            main: None,
            h2load: None,
            handshakes: Vec::new(),
            upstream_tls: Vec::new(),
        };
        // The same load for every system; the TLS systems' over TLS.
        let tls = if system.is_tls() {
            load_tls.clone()
        } else {
            None
        };
        let load = Load {
            tls: tls.clone(),
            ..load.clone()
        };
        let sweep_load = Load {
            tls,
            ..sweep_load.clone()
        };
        // The echo upstream this system calls, and where its TLS log starts.
        let (upstream, upstream_port) = match (system.is_tls(), upstream_tls.as_mut()) {
            (true, Some(p)) => (p, env.tls.as_ref().map_or(0, |t| t.upstream.port())),
            _ => (&mut upstream, upstream_port),
        };
        let upstream_log_from = std::fs::metadata(&upstream.log).map_or(0, |m| m.len());
        if system.uses_redis() {
            let target = system.route_target(&env);
            set_routes(redis_addr, &key, args.route_keys, &target)?;
            say(&format!("route {key} -> {target}"));
        }
        let mut series = SweepSeries {
            system: system.name().into(),
            status: "ok".into(),
            reason: None,
            points: Vec::new(),
            knee: None,
        };
        // Redis and the upstream must still be up (a crash would blame the next system).
        if let Some(st) = upstream.exited().or_else(|| redis.exited()) {
            return Err(format!(
                "the echo upstream or Redis exited ({st}); stopping"
            ));
        }
        let mut running = match systems::start(system, &env, port) {
            Ok(r) => r,
            Err(e) => {
                let (status, why) = match e {
                    NotRun::Skipped(w) => ("skipped", w),
                    NotRun::Failed(w) => ("failed", w),
                };
                say(&format!("{} {status}: {why}", system.name()));
                run.status = status.into();
                run.reason = Some(why.clone());
                series.status = status.into();
                series.reason = Some(why);
                results.systems.push(run);
                if do_sweep {
                    results.sweep.push(series);
                }
                continue;
            }
        };
        if !running.command.is_empty() {
            run.command = Some(running.command.clone());
        }
        if running.proc.is_some() && !system.is_ringway() {
            // Keep the rendered nginx config beside the results it produced.
            let conf = env.tmp.join(system.name()).join("nginx.conf");
            let _ = std::fs::copy(
                &conf,
                out_dir
                    .join("configs")
                    .join(format!("{}.conf", system.name())),
            );
        }
        if let Err(e) = measure::probe(&tools, &load, running.target) {
            let why = format!(
                "probe calls failed: {e}{}",
                running
                    .proc
                    .as_ref()
                    .map(|p| format!("; log: {}", p.log_tail(8)))
                    .unwrap_or_default()
            );
            say(&format!("{} failed: {why}", system.name()));
            run.status = "failed".into();
            run.reason = Some(why.clone());
            series.status = "failed".into();
            series.reason = Some(why);
            results.systems.push(run);
            if do_sweep {
                results.sweep.push(series);
            }
            continue;
        }
        let watch = Watch {
            gateway: running.proc.as_ref().map(|p| p.pid()),
            upstream: upstream.pid(),
            redis: redis.pid(),
            ports: vec![
                ("upstream".into(), upstream_port),
                ("redis".into(), redis_port),
                ("gateway".into(), running.target.port()),
            ],
        };
        let m = measure::measure(
            &tools,
            &watch,
            &load,
            running.target,
            &format!("{}-main", system.name()),
        );
        match (&m.loadgen, &m.error) {
            (Some(s), _) => say(&format!(
                "{}: {:.0} calls/s, p50 {:.0} µs, p99 {:.0} µs, failed {}, gateway {} µs/call, upstream {:.1} µs/call",
                system.name(),
                s.throughput_rps,
                s.latency.p50_us,
                s.latency.p99_us,
                s.calls - s.ok,
                m.cpu.gateway_us_per_call.map(|v| format!("{v:.1}")).unwrap_or_else(|| "—".into()),
                m.cpu.upstream_us_per_call
            )),
            (None, Some(e)) => {
                say(&format!("{}: load failed: {e}", system.name()));
                run.status = "failed".into();
                run.reason = Some(e.clone());
            }
            _ => {}
        }
        run.main = Some(m);
        if system == System::Direct && !args.no_cross_check {
            // (direct-tls has no cross-check: h2load's TLS client is not ours to compare.)
            let n = if q { 100_000 } else { 300_000 };
            say("cross-checking the direct figure with h2load");
            results.cross_check = Some(measure::h2load_check(&tools, &load, running.target, n));
        }
        // The gateway figure again, with h2load as the load generator, while it is still up.
        let main_ok = run.main.as_ref().is_some_and(|m| m.loadgen.is_some());
        if !system.is_direct() && main_ok && !args.no_cross_check {
            let n = if q { 100_000 } else { 300_000 };
            say(&format!(
                "cross-checking {}'s CPU per call with h2load",
                system.name()
            ));
            let c = measure::gateway_h2load(&tools, &watch, &load, running.target, n);
            say(&format!(
                "{} with h2load: {} calls/s, {} succeeded, gateway {} µs/call{}",
                system.name(),
                c.h2load_rps
                    .map(|v| format!("{v:.0}"))
                    .unwrap_or_else(|| "n/a".into()),
                c.h2load_succeeded
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "n/a".into()),
                c.gateway_us_per_call
                    .map(|v| format!("{v:.1}"))
                    .unwrap_or_else(|| "n/a".into()),
                if c.note.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", c.note)
                }
            ));
            run.h2load = Some(c);
        }
        // Handshakes per second: new connections, each a TLS handshake and one call; first
        // every handshake full, then with the client's session cache kept (resumed).
        if system.is_tls() && main_ok && handshake_s > 0.0 {
            for resumption in [false, true] {
                let l = Load {
                    connections: 1,
                    concurrency: args.handshake_concurrency.max(1),
                    rate: None,
                    duration_s: handshake_s,
                    warmup_s: 0.5,
                    new_connections: true,
                    resumption,
                    ..load.clone()
                };
                let kind = if resumption { "resumed" } else { "full" };
                let m = measure::measure(
                    &tools,
                    &watch,
                    &l,
                    running.target,
                    &format!("{}-handshakes-{kind}", system.name()),
                );
                match (&m.loadgen, &m.error) {
                    (Some(s), _) => say(&format!(
                        "{} handshakes ({kind}): {:.0} new connections/s, {} resumed of {}, failed {}, gateway {} µs/handshake, loadgen {:.0} µs/handshake",
                        system.name(),
                        s.throughput_rps,
                        s.handshakes.as_ref().map_or(0, |h| h.resumed),
                        s.calls,
                        s.calls - s.ok,
                        m.cpu
                            .gateway_us_per_call
                            .map(|v| format!("{v:.1}"))
                            .unwrap_or_else(|| "—".into()),
                        s.loadgen_cpu_us_per_call
                    )),
                    (None, Some(e)) => say(&format!("{} handshakes ({kind}) failed: {e}", system.name())),
                    _ => {}
                }
                run.handshakes.push(output::HandshakeRun {
                    resumption,
                    measurement: m,
                });
            }
        }
        if do_sweep {
            for &level in &levels {
                if let Some(p) = running.proc.as_mut() {
                    if let Some(st) = p.exited() {
                        series.status = "failed".into();
                        series.reason =
                            Some(format!("exited during the sweep ({st}): {}", p.log_tail(8)));
                        break;
                    }
                }
                let l = Load {
                    connections: sweep_load.connections.min(level).max(1),
                    concurrency: level,
                    ..sweep_load.clone()
                };
                let m = measure::measure(
                    &tools,
                    &watch,
                    &l,
                    running.target,
                    &format!("{}-sweep-{level}", system.name()),
                );
                let point = match &m.loadgen {
                    Some(s) => SweepPoint {
                        in_flight: level,
                        connections: l.connections,
                        throughput_rps: s.throughput_rps,
                        p50_us: s.latency.p50_us,
                        p99_us: s.latency.p99_us,
                        failed: s.calls - s.ok,
                        gateway_us_per_call: m.cpu.gateway_us_per_call,
                        error: None,
                    },
                    None => SweepPoint {
                        in_flight: level,
                        connections: l.connections,
                        throughput_rps: 0.0,
                        p50_us: 0.0,
                        p99_us: 0.0,
                        failed: 0,
                        gateway_us_per_call: None,
                        error: m.error.clone(),
                    },
                };
                say(&format!(
                    "{} sweep {level:>4} in flight: {:.0} calls/s, p99 {:.0} µs{}",
                    system.name(),
                    point.throughput_rps,
                    point.p99_us,
                    point
                        .error
                        .as_deref()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                ));
                series.points.push(point);
            }
            series.knee = output::knee(&series.points);
            results.sweep.push(series);
        }
        if let Some(p) = running.proc.as_mut() {
            p.stop();
        }
        if system.is_tls() {
            // What the echo upstream's TLS listener saw negotiated during this system: the
            // gateway's upstream hop (direct-tls: the load generator's).
            let text = std::fs::read(&upstream.log).unwrap_or_default();
            let from = (upstream_log_from as usize).min(text.len());
            let mut seen: Vec<String> = String::from_utf8_lossy(&text[from..])
                .lines()
                .filter_map(|l| l.strip_prefix("echo-upstream: tls "))
                .map(str::to_string)
                .collect();
            seen.sort();
            seen.dedup();
            run.upstream_tls = seen;
        }
        results.systems.push(run);
    }
    drop(upstream_tls);
    drop(upstream);
    drop(redis);
    write_results(&out_dir, &results)?;
    Ok(out_dir)
}

/// The shared processes a round's measurement watches.
struct RoundsProcs<'a> {
    redis: &'a Proc,
    upstream: &'a Proc,
    upstream_port: u16,
    upstream_tls: Option<&'a Proc>,
    redis_port: u16,
}

/// `--rounds`: every system up at once, then `args.rounds` rounds of the main load on each in
/// turn (see `rounds.rs`). `entries`: the systems, each with whether it is the `@b` twin run
/// with `--rounds-ringway-b`. Systems are stopped when this returns.
#[allow(clippy::too_many_arguments)]
fn run_rounds(
    args: &Args,
    entries: &[(System, bool)],
    ports: &[u16],
    env: &Env,
    tools: &Tools,
    load: &Load,
    load_tls: &Option<measure::LoadTls>,
    procs: &RoundsProcs<'_>,
    key: &str,
) -> Result<rounds::Rounds, String> {
    let systems: Vec<System> = entries.iter().map(|&(s, _)| s).collect();
    let reference = match &args.rounds_reference {
        Some(name) => System::parse(name)
            .filter(|s| systems.contains(s))
            .ok_or_else(|| format!("--rounds-reference {name}: not one of --systems"))?,
        None => *systems
            .iter()
            .find(|s| !s.is_ringway())
            .ok_or("--rounds needs a system that is not ringway to take ratios against (or --rounds-reference)")?,
    };
    // One route for all: the Redis keys are shared, and changing them between windows would
    // make the caching systems look the keys up again.
    let targets: Vec<(System, String)> = systems
        .iter()
        .filter(|s| s.uses_redis())
        .map(|&s| (s, s.route_target(env)))
        .collect();
    if let Some((a, target)) = targets.first() {
        if let Some((b, other)) = targets.iter().find(|(_, t)| t != target) {
            return Err(format!(
                "--rounds: {} routes to {target} and {} to {other}; run them in separate invocations",
                a.name(),
                b.name()
            ));
        }
        set_routes(env.redis, key, args.route_keys, target)?;
        say(&format!("route {key} -> {target}"));
    }
    let env_b = args.rounds_ringway_b.as_ref().map(|b| Env {
        ringway_bin: b.clone(),
        ..env.clone()
    });
    let mut up = Vec::new();
    let mut not_run = Vec::new();
    for (&(system, twin), &port) in entries.iter().zip(ports) {
        let name = if twin {
            format!("{}@b", system.name())
        } else {
            system.name().to_string()
        };
        let env = match (&env_b, twin) {
            (Some(b), true) => b,
            _ => env,
        };
        let load = Load {
            tls: if system.is_tls() {
                load_tls.clone()
            } else {
                None
            },
            ..load.clone()
        };
        match systems::start(system, env, port) {
            Ok(running) => match measure::probe(tools, &load, running.target) {
                Ok(()) => {
                    say(&format!("{name} up on {}", running.target));
                    up.push((system, name, running, load));
                }
                Err(e) => not_run.push((name, format!("probe calls failed: {e}"))),
            },
            Err(NotRun::Skipped(why) | NotRun::Failed(why)) => not_run.push((name, why)),
        }
    }
    if !up
        .iter()
        .any(|(s, n, _, _)| *s == reference && n == reference.name())
    {
        return Err(format!(
            "--rounds: the reference {} did not start",
            reference.name()
        ));
    }
    let mut windows = Vec::new();
    let indices: Vec<usize> = (0..up.len()).collect();
    for round in 0..args.rounds {
        for i in rounds::order(&indices, round) {
            let (system, name, running, load) = &mut up[i];
            if let Some(st) = running.proc.as_mut().and_then(|p| p.exited()) {
                return Err(format!("{name} exited during the rounds ({st})"));
            }
            let (upstream, upstream_port) = match (system.is_tls(), procs.upstream_tls) {
                (true, Some(p)) => (p, env.tls.as_ref().map_or(0, |t| t.upstream.port())),
                _ => (procs.upstream, procs.upstream_port),
            };
            let watch = Watch {
                gateway: running.proc.as_ref().map(|p| p.pid()),
                upstream: upstream.pid(),
                redis: procs.redis.pid(),
                ports: vec![
                    ("upstream".into(), upstream_port),
                    ("redis".into(), procs.redis_port),
                    ("gateway".into(), running.target.port()),
                ],
            };
            let m = measure::measure(
                tools,
                &watch,
                load,
                running.target,
                &format!("{name}-round-{}", round + 1),
            );
            let w = rounds::Window::new(round, name, &m);
            say(&format!(
                "round {} {name}: {} calls/s, gateway {} µs/call{}",
                round + 1,
                w.calls_per_s
                    .map(|v| format!("{v:.0}"))
                    .unwrap_or_else(|| "—".into()),
                w.gateway_us_per_call
                    .map(|v| format!("{v:.2}"))
                    .unwrap_or_else(|| "—".into()),
                w.error
                    .as_deref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            ));
            windows.push(w);
        }
    }
    for (_, _, running, _) in &mut up {
        if let Some(p) = running.proc.as_mut() {
            p.stop();
        }
    }
    Ok(rounds::Rounds {
        rounds: args.rounds,
        reference: reference.name().into(),
        systems: up.iter().map(|(_, n, _, _)| n.clone()).collect(),
        not_run,
        windows,
    })
}

fn write_results(dir: &Path, r: &Results) -> Result<(), String> {
    let w = |name: &str, text: String| {
        std::fs::write(dir.join(name), text).map_err(|e| format!("write {name}: {e}"))
    };
    w(
        "results.json",
        serde_json::to_string_pretty(r).map_err(|e| e.to_string())? + "\n",
    )?;
    w("README.md", output::markdown(r))?;
    if !r.sweep.is_empty() {
        let series = |f: fn(&SweepPoint) -> f64| -> Vec<chart::Series> {
            r.sweep
                .iter()
                .filter(|s| !s.points.is_empty())
                .map(|s| chart::Series {
                    name: &s.system,
                    points: s
                        .points
                        .iter()
                        .filter(|p| p.error.is_none())
                        .map(|p| (p.in_flight as f64, f(p)))
                        .collect(),
                    knee: s.knee.map(|k| k as f64),
                })
                .collect()
        };
        w(
            "sweep-throughput.svg",
            chart::svg(
                "Throughput vs calls in flight",
                "calls/s",
                &series(|p| p.throughput_rps),
                false,
            ),
        )?;
        w(
            "sweep-p99.svg",
            chart::svg(
                "p99 latency vs calls in flight",
                "p99 latency, µs (log)",
                &series(|p| p.p99_us),
                true,
            ),
        )?;
    }
    Ok(())
}

/// Sets the route `key` and, with `keys` > 1, `<key>-0` … `<key>-<keys - 1>`, all to `target`.
fn set_routes(redis: SocketAddr, key: &str, keys: usize, target: &str) -> Result<(), String> {
    let names: Vec<String> = std::iter::once(key.to_string())
        .chain((0..keys).filter(|_| keys > 1).map(|i| format!("{key}-{i}")))
        .collect();
    for chunk in names.chunks(500) {
        let mut command = vec!["MSET"];
        for name in chunk {
            command.extend([name.as_str(), target]);
        }
        let reply = procs::redis_cmd(redis, &command)?;
        if reply != "+OK" {
            return Err(format!("redis MSET {key}…: {reply}"));
        }
    }
    Ok(())
}
