//! bench/hostile: the attacks of the testkit's attack library (`tests/support/src/attack.rs`,
//! the same code `tests/hostile.rs` runs), each bounded, against each gateway in turn —
//! ringway (one shard, pinned), nginx `grpc_pass` (one worker, pinned) and HAProxy (one
//! thread, pinned) — in front of the same echo upstream and Redis. For every gateway and
//! attack: the gateway's RSS before, at its peak and after; its CPU time during the attack;
//! what the attacker saw; and a well-behaved client's latency (p50/p99) and failures during
//! the attack, beside the same client's figures measured unloaded just before. Results go to
//! `bench/results/<date>-<commit>-hostile/` (README.md and results.json).
//!
//! ```text
//! mod.rs        the run: cores, Redis, the echo upstream, then per gateway and attack:
//!               start, unloaded bystander, attack + bystander + RSS/CPU watch, stop
//! gateways.rs   starting ringway, nginx, HAProxy; the HAProxy config
//! cases.rs      the attacks' parameters and what is kept of their reports
//! results.rs    results.json and README.md
//! ```
//!
//! Every gateway is started afresh for every attack, so one attack's leftovers cannot be
//! charged to the next. Each attack is bounded in what it sends and for how long; an attack
//! is also stopped when the gateway's RSS passes its baseline by 1 GiB.

pub mod cases;
pub mod gateways;
pub mod results;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Parser;
use ringway_testkit::admin::{self, metric_sum};
use ringway_testkit::attack::{rss_bytes, Bystander, BystanderReport, HostileTarget, RssWatch};
use ringway_testkit::tokio;

use crate::procfs;
use crate::scenario::output;
use crate::scenario::procs::{self, Proc};
use crate::scenario::systems::{self, NotRun};
use cases::{Case, Scale};
use gateways::{Ctx, Gateway};
use results::{CaseResult, Latency, Results};

#[derive(Parser, Debug)]
#[command(
    about = "Attack ringway, nginx and HAProxy with hostile HTTP/2 peers; same attacks for all"
)]
pub struct Args {
    /// Gateways to attack, comma-separated, in order.
    #[arg(long, value_delimiter = ',', default_value = "ringway,nginx,haproxy")]
    pub systems: Vec<String>,
    /// Attacks to run, comma-separated (default: all; `--list` names them).
    #[arg(long, value_delimiter = ',')]
    pub attacks: Vec<String>,
    /// Print the attacks and exit.
    #[arg(long)]
    pub list: bool,
    /// Longest a flood sends, in seconds.
    #[arg(long, default_value_t = 4.0)]
    pub duration: f64,
    /// How long an attacker listens after sending, in seconds.
    #[arg(long, default_value_t = 2.0)]
    pub observe: f64,
    /// Connections of the idle-connections case.
    #[arg(long, default_value_t = 10_000)]
    pub idle: usize,
    /// The bystander makes one unary call every this many milliseconds.
    #[arg(long, default_value_t = 10)]
    pub every_ms: u64,
    /// Seconds of unloaded bystander calls before each attack.
    #[arg(long, default_value_t = 1.5)]
    pub unloaded: f64,
    /// Cores for the gateway (default: the upper half; the last core on 2 cores).
    #[arg(long, value_delimiter = ',')]
    pub gateway_cpus: Vec<usize>,
    /// Cores for the attacker, the bystander, the echo upstream and Redis (default: the rest).
    #[arg(long, value_delimiter = ',')]
    pub client_cpus: Vec<usize>,
    /// Lowest port for Redis and the gateways (all stay below 32768).
    #[arg(long, default_value_t = 17100)]
    pub base_port: u16,
    /// The ringway binary (default: <workspace>/target/release/ringway).
    #[arg(long)]
    pub ringway: Option<PathBuf>,
    /// Results directory (default: bench/results/<date>-<commit>-hostile).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Internal: run as the echo upstream process.
    #[arg(long, hide = true)]
    pub serve_upstream: bool,
    /// Internal: the echo upstream's port (0: one the kernel chooses).
    #[arg(long, hide = true, default_value_t = 0)]
    pub upstream_port: u16,
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

fn say(msg: &str) {
    eprintln!("hostile: {msg}");
}

/// The echo upstream as its own process: the testkit's tonic `Upstream` (unary and
/// server-streaming echo) on a one-thread runtime on `port` (0: the kernel's choice), printing
/// `listening on ADDR`.
pub fn serve_upstream(port: u16) -> ! {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let options = ringway_testkit::UpstreamOptions {
            port: Some(port),
            ..Default::default()
        };
        let upstream = ringway_testkit::Upstream::start_with("echo", options).await;
        eprintln!("echo upstream: listening on {}", upstream.addr());
        std::future::pending::<()>().await;
    });
    std::process::exit(0)
}

/// The gateway tree's RSS (`VmRSS` summed over `pids`), in bytes.
fn tree_rss(pids: &[u32]) -> u64 {
    pids.iter().filter_map(|&p| rss_bytes(p)).sum()
}

/// Runs the whole benchmark; the results directory.
pub fn run(args: Args) -> Result<PathBuf, String> {
    let scale = Scale {
        flood_s: args.duration,
        observe_s: args.observe,
        idle: args.idle,
    };
    if args.list {
        for case in cases::ALL {
            println!("{:28} {}", case.name(), case.describe(&scale));
        }
        return Ok(PathBuf::new());
    }
    let cpus = crate::scenario::allowed_cpus();
    let gateway_cpus = if args.gateway_cpus.is_empty() {
        vec![*cpus.last().expect("at least one core")]
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
    let client = crate::scenario::systems::cpu_list(&client_cpus);
    // The machine as it is, before this process is pinned to part of it.
    let machine = output::machine(&gateway_cpus, &client);
    // The attacker and the bystander run in this process: keep it (and every thread it
    // starts from now on) off the gateway's core.
    let _ = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", &client, &std::process::id().to_string()])
        .stdout(std::process::Stdio::null())
        .status();
    let nofile = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            say(&format!("cannot raise RLIMIT_NOFILE: {e}"));
            1024
        }
    };
    if nofile < args.idle as u64 + 1024 {
        say(&format!(
            "RLIMIT_NOFILE is {nofile}: the idle case's {} connections may not all open",
            args.idle
        ));
    }
    let gateways: Vec<Gateway> = args
        .systems
        .iter()
        .map(|s| {
            Gateway::parse(s.trim())
                .ok_or_else(|| format!("unknown system {s:?}; known: ringway, nginx, haproxy"))
        })
        .collect::<Result<_, _>>()?;
    let attacks: Vec<Case> = if args.attacks.is_empty() {
        cases::ALL.to_vec()
    } else {
        args.attacks
            .iter()
            .map(|s| {
                Case::parse(s.trim())
                    .ok_or_else(|| format!("unknown attack {s:?}; `--list` names them"))
            })
            .collect::<Result<_, _>>()?
    };

    let (commit, dirty) = output::commit(&workspace_dir());
    let date = output::today();
    let out_dir = output::results_dir(
        args.out.as_ref(),
        &bench_dir().join("results"),
        &format!("{date}-{commit}-hostile"),
    );
    std::fs::create_dir_all(out_dir.join("configs"))
        .map_err(|e| format!("create {}: {e}", out_dir.display()))?;
    let tmp = std::env::temp_dir().join(format!("ringway-hostile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| e.to_string())?;
    say(&format!(
        "results -> {}; scratch {}; gateway on cores {}, clients on {client}",
        out_dir.display(),
        tmp.display(),
        crate::scenario::systems::cpu_list(&gateway_cpus)
    ));

    let mut taken = Vec::new();
    let next_port = |taken: &mut Vec<u16>| -> Result<u16, String> {
        let p = procs::free_port(args.base_port, taken)?;
        taken.push(p);
        Ok(p)
    };
    let redis_port = next_port(&mut taken)?;
    let redis_bin = systems::which("redis-server")
        .ok_or("redis-server not found: apt-get install -y redis-server")?;
    let mut redis = Proc::spawn(
        "redis-server",
        Some(&client),
        &[
            redis_bin,
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
    // This very binary, even if a build replaces the file meanwhile.
    let me = PathBuf::from(format!("/proc/{}/exe", std::process::id()));
    // Below the ephemeral range like every port here, so the reports name no kernel-chosen port.
    let upstream_port = next_port(&mut taken)?;
    let mut upstream = Proc::spawn(
        "echo-upstream",
        Some(&client),
        &[
            me.display().to_string(),
            "--serve-upstream".into(),
            "--upstream-port".into(),
            upstream_port.to_string(),
        ],
        &tmp.join("upstream.log"),
    )?;
    let upstream_addr = upstream.wait_listening(Duration::from_secs(10))?;
    let set = |key: &str, value: &str| -> Result<(), String> {
        let reply = procs::redis_cmd(redis_addr, &["SET", key, value])?;
        if reply == "+OK" {
            Ok(())
        } else {
            Err(format!("redis SET {key}: {reply}"))
        }
    };
    set(cases::ROUTE, &upstream_addr.to_string())?;
    say(&format!(
        "redis on {redis_addr}, echo upstream on {upstream_addr}, route {} -> {upstream_addr}",
        cases::ROUTE
    ));

    // ringway's defaults, except room for the idle case's connections and the bystander's.
    let ringway_config = tmp.join("ringway.toml");
    let ringway_toml = "[downstream]\nmax_connections = 20000\n";
    std::fs::write(&ringway_config, ringway_toml).map_err(|e| e.to_string())?;
    let _ = std::fs::write(out_dir.join("configs").join("ringway.toml"), ringway_toml);
    // One ringway binary for the whole run, even if a build replaces target/release/ringway
    // meanwhile: a copy in the scratch directory (left out if there is none, so ringway is
    // reported as skipped).
    let ringway_bin = args
        .ringway
        .clone()
        .unwrap_or_else(|| workspace_dir().join("target/release/ringway"));
    let ringway_copy = tmp.join("ringway");
    // `cp -p` keeps the build time, which the results quote.
    let copied = std::process::Command::new("cp")
        .arg("-p")
        .arg(&ringway_bin)
        .arg(&ringway_copy)
        .stderr(std::process::Stdio::null())
        .status();
    let ringway_bin = match copied {
        Ok(st) if st.success() => {
            say(&format!(
                "ringway: {} (copied to {})",
                ringway_bin.display(),
                ringway_copy.display()
            ));
            ringway_copy
        }
        _ => ringway_bin,
    };
    let ctx = Ctx {
        tmp: tmp.clone(),
        peers_dir: bench_dir().join("peers"),
        redis: redis_addr,
        upstream: upstream_addr,
        gateway_cpus: gateway_cpus.clone(),
        ringway_bin,
        nofile: nofile.min(1 << 20),
        ringway_config,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;

    let started = Instant::now();
    let mut results = Results {
        date,
        commit,
        dirty,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine,
        scale,
        bystander_every_ms: args.every_ms,
        unloaded_s: args.unloaded,
        attacks: attacks
            .iter()
            .map(|c| (c.name().to_string(), c.describe(&scale)))
            .collect(),
        gateways: gateways
            .iter()
            .map(|g| (g.name().to_string(), g.describe().to_string()))
            .collect(),
        cases: Vec::new(),
        total_s: 0.0,
    };
    for &gateway in &gateways {
        say(&format!("== {} ({})", gateway.name(), gateway.describe()));
        for &case in &attacks {
            if let Some(st) = upstream.exited().or_else(|| redis.exited()) {
                return Err(format!(
                    "the echo upstream or Redis exited ({st}); stopping"
                ));
            }
            let port = next_port(&mut taken)?;
            let target_port = next_port(&mut taken)?;
            let ports = (port, target_port);
            let result = run_case(&runtime, &ctx, gateway, case, &scale, &args, ports, &set);
            say(&format!(
                "{} / {}: {}",
                gateway.name(),
                case.name(),
                result.line()
            ));
            let skipped = result.status == "skipped";
            results.cases.push(result);
            if skipped {
                // The same reason holds for every other case of this gateway.
                for &other in attacks.iter().skip_while(|&&c| c != case).skip(1) {
                    let first = results.cases.last().expect("just pushed").clone();
                    results.cases.push(CaseResult {
                        attack: other.name().into(),
                        ..first
                    });
                }
                break;
            }
        }
        copy_configs(&tmp, &out_dir, gateway);
    }
    drop(upstream);
    drop(redis);
    results.total_s = started.elapsed().as_secs_f64();
    results::write(&out_dir, &results)?;
    Ok(out_dir)
}

/// Keeps the rendered gateway configs beside the results.
fn copy_configs(tmp: &Path, out: &Path, gateway: Gateway) {
    let pairs: &[(&str, &str)] = match gateway {
        Gateway::Ringway => &[],
        Gateway::Nginx => &[
            ("nginx-grpc/nginx.conf", "nginx-grpc.conf"),
            ("nginx-hostile/nginx.conf", "nginx-grpc-hostile.conf"),
        ],
        Gateway::Haproxy => &[("haproxy/haproxy.cfg", "haproxy-h2.cfg")],
    };
    for (from, to) in pairs {
        let _ = std::fs::copy(tmp.join(from), out.join("configs").join(to));
    }
}

/// Calls through the gateway until one succeeds (at most `limit`): the gateway is ready.
async fn probe(addr: SocketAddr, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    let mut last = String::new();
    while Instant::now() < deadline {
        let bystander = Bystander::start(
            addr,
            cases::ROUTE,
            Duration::from_millis(50),
            Duration::from_secs(2),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(120)).await;
        let report = bystander.stop().await;
        if report.ok > 0 {
            return Ok(());
        }
        last = report.failures.first().cloned().unwrap_or_default();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!(
        "no call through it succeeded within {limit:?}: {last}"
    ))
}

fn latency(report: &BystanderReport) -> Latency {
    let ms = |p: f64| report.percentile(p).map(|d| d.as_secs_f64() * 1e3);
    Latency {
        calls: report.calls,
        ok: report.ok,
        failed: report.calls - report.ok,
        p50_ms: ms(50.0),
        p99_ms: ms(99.0),
        max_ms: report.slowest.as_secs_f64() * 1e3,
        failures: report.failures.iter().take(5).cloned().collect(),
    }
}

/// ringway's own counters of hostile peers, from its admin port (what exists in this build).
fn ringway_counters(admin_addr: SocketAddr) -> std::collections::BTreeMap<String, f64> {
    let (status, text) = admin::request(admin_addr, "GET", "/metrics");
    let mut out = std::collections::BTreeMap::new();
    if status != 200 {
        return out;
    }
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, _)) = line.rsplit_once(' ') else {
            continue;
        };
        let name = series.split('{').next().unwrap_or(series);
        let wanted = name.starts_with("ringway_h2_")
            || name == "ringway_upstream_flow_control_errors_total"
            || name == "ringway_downstream_too_many_pings_total"
            || name == "ringway_downstream_connections_refused_total"
            || name == "ringway_upstream_goaways_received_total"
            || name == "ringway_upstream_retries_total"
            || (name == "ringway_upstream_connections_closed_total"
                && series.contains("by=\"peer\""));
        if !wanted {
            continue;
        }
        // One entry per side/kind, summed over shards.
        let labels: Vec<&str> = series
            .split_once('{')
            .map(|(_, rest)| rest.trim_end_matches('}'))
            .unwrap_or("")
            .split(',')
            .filter(|kv| !kv.is_empty() && !kv.starts_with("shard="))
            .collect();
        let key = if labels.is_empty() {
            name.to_string()
        } else {
            format!("{name}{{{}}}", labels.join(","))
        };
        if out.contains_key(&key) {
            continue;
        }
        let filter: Vec<(&str, &str)> = labels
            .iter()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k, v.trim_matches('"')))
            .collect();
        let value = metric_sum(&text, name, &filter);
        out.insert(key, value);
    }
    out.retain(|_, v| *v > 0.0);
    out
}

/// One gateway under one attack, started afresh.
#[allow(clippy::too_many_arguments)]
fn run_case(
    runtime: &tokio::runtime::Runtime,
    ctx: &Ctx,
    gateway: Gateway,
    case: Case,
    scale: &Scale,
    args: &Args,
    (port, target_port): (u16, u16),
    set: &dyn Fn(&str, &str) -> Result<(), String>,
) -> CaseResult {
    let mut result = CaseResult::new(gateway.name(), case.name());
    let target = match case.target() {
        Some(mode) => match runtime.block_on(HostileTarget::start_on(target_port, mode)) {
            Ok(target) => Some(target),
            Err(e) => return result.failed(format!("hostile target: {e}")),
        },
        None => None,
    };
    if let Some(t) = &target {
        if let Err(e) = set(cases::HOSTILE, &t.addr().to_string()) {
            return result.failed(e);
        }
    }
    let mut started = match gateways::start(gateway, ctx, port, target.as_ref().map(|t| t.addr())) {
        Ok(s) => s,
        Err(NotRun::Skipped(why)) => return result.skipped(why),
        Err(NotRun::Failed(why)) => return result.failed(why),
    };
    result.command = Some(started.command.clone());
    let addr = started.addr;
    let root = started.proc.pid();
    let every = Duration::from_millis(args.every_ms);
    let deadline = Duration::from_secs(5);
    let outcome = runtime.block_on(async {
        probe(addr, Duration::from_secs(5)).await?;
        let unloaded = Bystander::start(addr, cases::ROUTE, every, deadline).await;
        tokio::time::sleep(Duration::from_secs_f64(args.unloaded)).await;
        let unloaded = unloaded.stop().await;
        let pids = procfs::process_tree(root);
        let rss_before = tree_rss(&pids);
        let cpu_before = procfs::tree_cpu_seconds(root);
        let watch_pids = pids.clone();
        let watch = RssWatch::start(
            move || Some(tree_rss(&watch_pids)),
            Duration::from_millis(20),
        );
        let bystander = Bystander::start(addr, cases::ROUTE, every, deadline).await;
        let busy_before = procfs::machine_busy_seconds();
        let t0 = Instant::now();
        let abort_at = rss_before + (1 << 30);
        let rss_pids = pids.clone();
        let attacked = tokio::select! {
            a = case.run(addr, scale, target.as_ref(), move || tree_rss(&rss_pids)) => Some(a),
            _ = watch.exceeds(abort_at) => None,
        };
        let attack_s = t0.elapsed().as_secs_f64();
        let cpu_s = procfs::tree_cpu_seconds(root) - cpu_before;
        // An attack the gateway ends at once leaves no time for calls "during" it: the
        // bystander's window is at least 2 s from the attack's start.
        tokio::time::sleep_until((t0 + Duration::from_secs(2)).into()).await;
        let during = bystander.stop().await;
        // The machine's busy share over the same window as the bystander's calls.
        let busy_s = procfs::machine_busy_seconds() - busy_before;
        let window_s = t0.elapsed().as_secs_f64();
        let rss_peak = watch.stop();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss_after = tree_rss(&pids);
        Ok::<_, String>(Measured {
            unloaded,
            during,
            attacked,
            attack_s,
            cpu_s,
            busy_s,
            window_s,
            rss_before,
            rss_peak,
            rss_after,
        })
    });
    let counters = started.admin.map(ringway_counters).unwrap_or_default();
    let exited = started.proc.exited();
    started.proc.stop();
    let m = match outcome {
        Ok(m) => m,
        Err(why) => return result.failed(format!("{why}; log: {}", started.proc.log_tail(5))),
    };
    result.status = match (&m.attacked, &exited) {
        (None, _) => "aborted".into(),
        (_, Some(_)) => "gateway exited".into(),
        _ => "ok".into(),
    };
    if m.attacked.is_none() {
        result.reason = Some("the gateway's RSS passed its baseline by 1 GiB".into());
    }
    if let Some(st) = exited {
        result.reason = Some(format!(
            "the gateway exited during the attack ({st}): {}",
            started.proc.log_tail(5)
        ));
    }
    let cores = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .max(ctx.gateway_cpus.len() + 1);
    result.attacker = m.attacked;
    result.attack_s = Some(m.attack_s);
    result.cpu_s = Some(m.cpu_s);
    result.machine_busy_pct = Some(100.0 * m.busy_s / (m.window_s.max(0.001) * cores as f64));
    result.loadavg = Some(procfs::loadavg());
    result.rss_before = Some(m.rss_before);
    result.rss_peak = Some(m.rss_peak.max(m.rss_before));
    result.rss_after = Some(m.rss_after);
    result.unloaded = Some(latency(&m.unloaded));
    result.during = Some(latency(&m.during));
    result.counters = counters;
    result
}

/// What one case measured.
struct Measured {
    unloaded: BystanderReport,
    during: BystanderReport,
    /// `None`: stopped because the gateway's RSS passed its baseline by 1 GiB.
    attacked: Option<cases::Attacked>,
    attack_s: f64,
    /// The gateway tree's CPU, and the whole machine's busy CPU, during the attack.
    cpu_s: f64,
    busy_s: f64,
    /// The bystander's window: the attack, and at least 2 s.
    window_s: f64,
    rss_before: u64,
    rss_peak: u64,
    rss_after: u64,
}
