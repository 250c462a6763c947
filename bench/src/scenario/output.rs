//! What a results directory holds: `results.json` (everything), `README.md` (tables), and the
//! sweep charts; plus the machine, commit and tuning facts every result carries.
//!
//! Owns: the results' shape and their markdown rendering. It must not run anything except
//! the read-only commands that describe the machine and the commit.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use super::measure::{GatewayH2load, H2loadCheck, Load, Measurement, TcpSnapshot};

#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub memory_gib: f64,
    /// Cores the gateway under test is pinned to, and cores of the load generator,
    /// the echo upstream and Redis.
    pub gateway_cpus: Vec<usize>,
    pub client_cpus: String,
    /// The sysctls this benchmark is sensitive to, as found.
    pub sysctl: BTreeMap<String, String>,
    pub versions: BTreeMap<String, String>,
}

fn cmd_out(prog: &str, args: &[&str]) -> Option<String> {
    let o = Command::new(prog).args(args).output().ok()?;
    let mut s = String::from_utf8_lossy(&o.stdout).to_string();
    s.push_str(&String::from_utf8_lossy(&o.stderr));
    Some(s.trim().to_string())
}

pub fn machine(gateway_cpus: &[usize], client_cpus: &str) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<f64>().ok())
        })
        .unwrap_or(0.0);
    let mut sysctl = BTreeMap::new();
    for k in [
        "net/ipv4/tcp_tw_reuse",
        "net/ipv4/tcp_fin_timeout",
        "net/ipv4/ip_local_port_range",
        "net/core/somaxconn",
        "net/ipv4/tcp_max_tw_buckets",
        "net/core/rmem_max",
        "net/core/wmem_max",
    ] {
        if let Ok(v) = std::fs::read_to_string(format!("/proc/sys/{k}")) {
            sysctl.insert(
                k.replace('/', "."),
                v.split_whitespace().collect::<Vec<_>>().join(" "),
            );
        }
    }
    let mut versions = BTreeMap::new();
    let first = |s: Option<String>| s.and_then(|s| s.lines().next().map(str::to_string));
    if let Some(v) = first(cmd_out("nginx", &["-v"])) {
        versions.insert("nginx".into(), v);
    }
    if let Some(v) = first(cmd_out("redis-server", &["--version"])) {
        versions.insert("redis".into(), v);
    }
    if let Some(v) = first(cmd_out("h2load", &["--version"])) {
        versions.insert("h2load".into(), v);
    }
    if let Some(v) = first(cmd_out("rustc", &["--version"])) {
        versions.insert("rustc".into(), v);
    }
    Machine {
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        cpu_model,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string(),
        memory_gib: mem_kb / 1024.0 / 1024.0,
        gateway_cpus: gateway_cpus.to_vec(),
        client_cpus: client_cpus.into(),
        sysctl,
        versions,
    }
}

/// The workspace's commit: short hash (or `uncommitted`) and whether the tree is dirty.
pub fn commit(repo: &Path) -> (String, bool) {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let hash = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "uncommitted".into());
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
        .map(|s| !s.is_empty())
        .unwrap_or(true);
    (hash, dirty)
}

/// `given` if set, else `<results>/<name>`, or `<name>-2`, `-3` … if that exists already.
pub fn results_dir(given: Option<&PathBuf>, results: &Path, name: &str) -> PathBuf {
    if let Some(d) = given {
        return d.clone();
    }
    let base = results.join(name);
    let mut d = base.clone();
    let mut n = 2;
    while d.exists() {
        d = PathBuf::from(format!("{}-{n}", base.display()));
        n += 1;
    }
    d
}

pub fn today() -> String {
    cmd_out("date", &["+%Y-%m-%d"]).unwrap_or_else(|| "undated".into())
}

#[derive(Clone, Debug, Serialize)]
pub struct SystemRun {
    pub system: String,
    pub description: String,
    /// `ok`, `skipped` or `failed`.
    pub status: String,
    pub reason: Option<String>,
    pub command: Option<String>,
    pub main: Option<Measurement>,
    /// The gateway's CPU per call again with h2load as the load generator (gateways only).
    pub h2load: Option<GatewayH2load>,
    /// TLS systems: the handshake runs (new connections, each a handshake and one call),
    /// full first, then resumed.
    pub handshakes: Vec<HandshakeRun>,
    /// TLS systems: what the echo upstream's TLS listener saw negotiated while this system
    /// ran (the gateway's upstream hop; for `direct-tls` the load generator's), one line per
    /// distinct version / cipher / group / ALPN.
    pub upstream_tls: Vec<String>,
}

/// One handshake run: throughput is new connections (handshakes) per second, and the CPU
/// per call is per new connection (handshake + one call + close).
#[derive(Clone, Debug, Serialize)]
pub struct HandshakeRun {
    /// Whether the client kept its TLS session cache across connections.
    pub resumption: bool,
    pub measurement: Measurement,
}

/// How the run's TLS was set up.
#[derive(Clone, Debug, Serialize)]
pub struct TlsSetup {
    /// Every certificate's key type.
    pub key_type: String,
    /// The PKI's files (made for this run in its scratch directory, gone after it).
    pub pki: crate::tls::Pki,
    /// The echo upstream's TLS listener.
    pub upstream: String,
    /// SNI sent and name verified by the load generator.
    pub server_name: String,
    pub client: String,
    pub handshake_duration_s: f64,
    pub handshake_concurrency: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct SweepPoint {
    pub in_flight: usize,
    pub connections: usize,
    pub throughput_rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub failed: u64,
    pub gateway_us_per_call: Option<f64>,
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SweepSeries {
    pub system: String,
    pub status: String,
    pub reason: Option<String>,
    pub points: Vec<SweepPoint>,
    /// The smallest in-flight count reaching 90% of the series' peak throughput: past it,
    /// more calls in flight buy little throughput and mostly queueing (the knee of
    /// docs/background.md, "Concurrency, throughput and the knee").
    pub knee: Option<usize>,
}

/// The knee of a sweep (see `SweepSeries::knee`).
pub fn knee(points: &[SweepPoint]) -> Option<usize> {
    let peak = points.iter().map(|p| p.throughput_rps).fold(0.0, f64::max);
    if peak <= 0.0 {
        return None;
    }
    points
        .iter()
        .find(|p| p.throughput_rps >= 0.9 * peak)
        .map(|p| p.in_flight)
}

#[derive(Clone, Debug, Serialize)]
pub struct Results {
    pub date: String,
    pub commit: String,
    pub dirty: bool,
    /// The tuning profile in force (`none` unless `--tuning` applied one).
    pub tuning: String,
    pub tuning_note: Option<String>,
    pub machine: Machine,
    pub mode: String,
    pub load: Load,
    pub nginx_keepalive: usize,
    pub nginx_redis_pool: usize,
    pub redis_port: u16,
    pub upstream_port: u16,
    pub upstream_threads: usize,
    pub systems: Vec<SystemRun>,
    pub sweep: Vec<SweepSeries>,
    pub sweep_load: Option<Load>,
    pub cross_check: Option<H2loadCheck>,
    /// Set by `--rounds`: the interleaved rounds (then `systems` is empty).
    pub rounds: Option<super::rounds::Rounds>,
    /// Set when the run had TLS systems.
    pub tls: Option<TlsSetup>,
}

fn f1(v: f64) -> String {
    format!("{v:.1}")
}

fn st(s: &TcpSnapshot, label: &str, to: bool, state: &str) -> u64 {
    s.ports.get(label).map(|p| p.count(to, state)).unwrap_or(0)
}

/// The results as markdown.
pub fn markdown(r: &Results) -> String {
    let mut o = String::new();
    let m = &r.machine;
    let _ = writeln!(o, "# ringway benchmark — {} ({})\n", r.date, r.mode);
    let _ = writeln!(
        o,
        "- commit: `{}`{}\n- tuning profile: `{}`{}\n- machine: {} cores, {}, kernel {}, {:.1} GiB\n- pinning: gateway on cores {:?}; load generator, echo upstream and Redis on cores {}\n- versions: {}\n- sysctl: {}",
        r.commit,
        if r.dirty { " (work tree dirty)" } else { "" },
        r.tuning,
        r.tuning_note.as_deref().map(|n| format!(" ({n})")).unwrap_or_default(),
        m.cores,
        m.cpu_model,
        m.kernel,
        m.memory_gib,
        m.gateway_cpus,
        m.client_cpus,
        m.versions.values().cloned().collect::<Vec<_>>().join("; "),
        m.sysctl.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
    );
    let l = &r.load;
    let _ = writeln!(
        o,
        "- load: {} connections, {} calls in flight{}, {} B messages, {} s warm-up + {} s measured, header(s) {}, path `{}`\n- nginx peers: upstream `keepalive {}`, Lua Redis pool {}\n",
        l.connections,
        l.concurrency,
        l.rate.map(|r| format!(" (open loop at {r:.0} calls/s)")).unwrap_or_else(|| " (closed loop)".into()),
        l.message_bytes,
        l.warmup_s,
        l.duration_s,
        match l.keys {
            0 | 1 => l.headers.join(", "),
            n => format!(
                "{} (the last one's value -0 … -{} in turn: {n} routing keys)",
                l.headers.join(", "),
                n - 1
            ),
        },
        l.path,
        r.nginx_keepalive,
        r.nginx_redis_pool
    );
    if let Some(rounds) = &r.rounds {
        rounds.markdown(&mut o);
        return o;
    }
    let _ = writeln!(o, "## Throughput, latency, CPU per call, memory\n");
    let _ = writeln!(
        o,
        "CPU per call is utime+stime from /proc over the whole load (warm-up included) divided by every call made; the gateway figure covers its whole process tree (nginx master + worker). The last column is the share of the machine's CPU used during the load by processes outside the benchmark (other builds, daemons): where it is high, the figures are noisy.\n"
    );
    let _ = writeln!(
        o,
        "| system | status | calls/s | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs | failed | gateway CPU µs/call | upstream CPU µs/call | Redis CPU µs/call | loadgen CPU µs/call | gateway peak RSS MiB | other procs' CPU % |"
    );
    let _ = writeln!(
        o,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for s in &r.systems {
        let Some(m) = s.main.as_ref().filter(|m| m.loadgen.is_some()) else {
            let reason = s
                .reason
                .clone()
                .or_else(|| s.main.as_ref().and_then(|m| m.error.clone()))
                .unwrap_or_default();
            let _ = writeln!(
                o,
                "| {} | {}: {} | | | | | | | | | | | | | |",
                s.system,
                s.status,
                reason.replace('|', "/").replace('\n', " ")
            );
            continue;
        };
        let g = m.loadgen.as_ref().expect("checked above");
        let p = &g.latency;
        let _ = writeln!(
            o,
            "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} |",
            s.system,
            s.status,
            g.throughput_rps,
            f1(p.p50_us),
            f1(p.p90_us),
            f1(p.p99_us),
            f1(p.p999_us),
            f1(p.max_us),
            g.calls - g.ok,
            m.cpu
                .gateway_us_per_call
                .map(f1)
                .unwrap_or_else(|| "—".into()),
            f1(m.cpu.upstream_us_per_call),
            f1(m.cpu.redis_us_per_call),
            f1(g.loadgen_cpu_us_per_call),
            m.gateway_peak_rss
                .as_ref()
                .map(|r| format!("{:.1}", r.sum_bytes as f64 / 1048576.0))
                .unwrap_or_else(|| "—".into()),
            m.cpu.other_busy_pct
        );
    }
    let errors: Vec<String> = r
        .systems
        .iter()
        .filter_map(|s| {
            let g = s.main.as_ref()?.loadgen.as_ref()?;
            (!g.errors.is_empty()).then(|| format!("- {}: {:?}", s.system, g.errors))
        })
        .collect();
    if !errors.is_empty() {
        let _ = writeln!(o, "\nFailed calls by status:\n\n{}", errors.join("\n"));
    }
    whole_system(&mut o, r);
    user_and_kernel(&mut o, r);
    if let Some(t) = &r.tls {
        tls_section(&mut o, r, t);
    }
    let _ = writeln!(o, "\n## TCP state table (netstat-style counts by state)\n");
    let _ = writeln!(
        o,
        "Sockets whose remote port is the upstream's or Redis's port (the connecting side: gateway → upstream, gateway → Redis; for `direct`, the load generator → upstream). `during` is taken halfway through the measured phase, `after` right after the load with the gateway still up. TIME_WAIT lasts 60 s on Linux, so `before` may hold the previous system's leftovers: compare before → after.\n"
    );
    let _ = writeln!(
        o,
        "| system | when | →upstream ESTABLISHED | →upstream TIME_WAIT | →upstream CLOSE_WAIT | →Redis ESTABLISHED | →Redis TIME_WAIT | →Redis CLOSE_WAIT | machine TIME_WAIT |"
    );
    let _ = writeln!(o, "|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for s in &r.systems {
        let Some(m) = &s.main else { continue };
        let snaps: Vec<(&str, &TcpSnapshot)> = [
            Some(("before", &m.tcp_before)),
            m.tcp_during.as_ref().map(|d| ("during", d)),
            Some(("after", &m.tcp_after)),
        ]
        .into_iter()
        .flatten()
        .collect();
        for (when, snap) in snaps {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                s.system,
                when,
                st(snap, "upstream", true, "ESTABLISHED"),
                st(snap, "upstream", true, "TIME_WAIT"),
                st(snap, "upstream", true, "CLOSE_WAIT"),
                st(snap, "redis", true, "ESTABLISHED"),
                st(snap, "redis", true, "TIME_WAIT"),
                st(snap, "redis", true, "CLOSE_WAIT"),
                snap.all.get("TIME_WAIT").copied().unwrap_or(0)
            );
        }
    }
    let commands: Vec<String> = r
        .systems
        .iter()
        .filter_map(|s| Some(format!("- {}: `{}`", s.system, s.command.as_ref()?)))
        .collect();
    if !commands.is_empty() {
        let _ = writeln!(o, "\n## Commands\n\n{}", commands.join("\n"));
    }
    if let Some(c) = &r.cross_check {
        let _ = writeln!(o, "\n## Cross-check with h2load (direct path)\n");
        let _ = writeln!(o, "```\n{}\n```\n", c.command);
        let _ = writeln!(
            o,
            "h2load: {} calls/s ({} succeeded); loadgen, same connections/streams/count: {} calls/s ({} ok). {}",
            c.h2load_rps.map(|v| format!("{v:.0}")).unwrap_or_else(|| "n/a".into()),
            c.h2load_succeeded.map(|v| v.to_string()).unwrap_or_else(|| "n/a".into()),
            c.loadgen_rps.map(|v| format!("{v:.0}")).unwrap_or_else(|| "n/a".into()),
            c.loadgen_ok.map(|v| v.to_string()).unwrap_or_else(|| "n/a".into()),
            c.note
        );
    }
    let gateway_checks: Vec<(&SystemRun, &GatewayH2load)> = r
        .systems
        .iter()
        .filter_map(|s| Some((s, s.h2load.as_ref()?)))
        .collect();
    if !gateway_checks.is_empty() {
        let _ = writeln!(
            o,
            "\n## Gateway CPU per call with h2load as the load generator\n"
        );
        let _ = writeln!(
            o,
            "Right after each gateway's main run, h2load drives it in the same shape (connections, streams per connection, body, headers, path), pinned to the client cores; the gateway's process tree CPU (utime+stime) from just before to just after h2load is divided by h2load's succeeded calls. Where the two CPU columns agree, the gateway's cost per call is its own and not an artefact of our load generator. h2load checks the HTTP status only (a gRPC error is an HTTP 200 to it); the load generator's main run checks `grpc-status`, and its failed count is in the first table.\n"
        );
        let _ = writeln!(
            o,
            "| system | h2load calls/s | succeeded | gateway CPU µs/call (h2load) | gateway CPU µs/call (loadgen, main run) |"
        );
        let _ = writeln!(o, "|---|---:|---:|---:|---:|");
        let na = || "n/a".to_string();
        for (s, c) in &gateway_checks {
            let main = s.main.as_ref();
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} |",
                s.system,
                c.h2load_rps.map(|v| format!("{v:.0}")).unwrap_or_else(na),
                c.h2load_succeeded.map(|v| v.to_string()).unwrap_or_else(na),
                c.gateway_us_per_call.map(f1).unwrap_or_else(na),
                main.and_then(|m| m.cpu.gateway_us_per_call)
                    .map(f1)
                    .unwrap_or_else(na)
            );
        }
        let failed: Vec<String> = gateway_checks
            .iter()
            .map(|(s, _)| {
                let n = s
                    .main
                    .as_ref()
                    .and_then(|m| m.loadgen.as_ref())
                    .map(|g| (g.calls - g.ok).to_string())
                    .unwrap_or_else(na);
                format!("{} failed {n}", s.system)
            })
            .collect();
        let _ = writeln!(
            o,
            "\nFailed calls in the main run (non-zero `grpc-status`, HTTP, reset, transport or timeout): {}.",
            failed.join(", ")
        );
        let notes: Vec<String> = gateway_checks
            .iter()
            .filter(|(_, c)| !c.note.is_empty())
            .map(|(s, c)| format!("- {}: {}", s.system, c.note))
            .collect();
        if !notes.is_empty() {
            let _ = writeln!(o, "\n{}", notes.join("\n"));
        }
        let _ = writeln!(o, "\nCommand (per system, with its own port):\n");
        for (s, c) in &gateway_checks {
            let _ = writeln!(o, "- {}: `{}`", s.system, c.command);
        }
    }
    if !r.sweep.is_empty() {
        let _ = writeln!(o, "\n## Concurrency sweep\n");
        if let Some(sl) = &r.sweep_load {
            let _ = writeln!(
                o,
                "Closed loop, {} s warm-up + {} s per point, connections = min(in-flight, {}). Knee: the smallest in-flight count reaching 90% of that system's peak throughput (marked ◆).\n",
                sl.warmup_s, sl.duration_s, sl.connections
            );
        }
        let _ = writeln!(
            o,
            "![throughput](sweep-throughput.svg)\n\n![p99](sweep-p99.svg)\n"
        );
        let levels: Vec<usize> = {
            let mut v: Vec<usize> = r
                .sweep
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.in_flight))
                .collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        let _ = writeln!(o, "Each cell: calls/s / p99 µs.\n");
        let _ = write!(o, "| in flight |");
        for s in &r.sweep {
            let _ = write!(o, " {} |", s.system);
        }
        let _ = writeln!(o);
        let _ = writeln!(o, "|---:|{}", "---:|".repeat(r.sweep.len()));
        for lv in &levels {
            let _ = write!(o, "| {lv} |");
            for s in &r.sweep {
                match s.points.iter().find(|p| p.in_flight == *lv) {
                    Some(p) if p.error.is_none() => {
                        let mark = if s.knee == Some(*lv) { " ◆" } else { "" };
                        let failed = if p.failed > 0 {
                            format!(" ({} failed)", p.failed)
                        } else {
                            String::new()
                        };
                        let _ = write!(
                            o,
                            " {:.0} / {:.0}{mark}{failed} |",
                            p.throughput_rps, p.p99_us
                        );
                    }
                    Some(_) => {
                        let _ = write!(o, " error |");
                    }
                    None => {
                        let _ = write!(o, " |");
                    }
                }
            }
            let _ = writeln!(o);
        }
        for s in r.sweep.iter().filter(|s| s.status != "ok") {
            let _ = writeln!(
                o,
                "\n{}: {} — {}",
                s.system,
                s.status,
                s.reason.clone().unwrap_or_default()
            );
        }
    }
    o
}

/// CPU per call of every process a call passes through, summed: what a gateway costs the
/// machine is its sum minus the sum without it (`direct`, or `direct-tls` for a TLS system).
fn whole_system(o: &mut String, r: &Results) {
    let sum = |name: &str| -> Option<(f64, Option<f64>, f64, f64, f64)> {
        let s = r.systems.iter().find(|s| s.system == name)?;
        let m = s.main.as_ref()?;
        let g = m.loadgen.as_ref()?;
        let gateway = m.cpu.gateway_us_per_call;
        let total = gateway.unwrap_or(0.0)
            + m.cpu.upstream_us_per_call
            + m.cpu.redis_us_per_call
            + g.loadgen_cpu_us_per_call;
        Some((
            total,
            gateway,
            m.cpu.upstream_us_per_call,
            m.cpu.redis_us_per_call,
            g.loadgen_cpu_us_per_call,
        ))
    };
    let rows: Vec<String> = r
        .systems
        .iter()
        .filter_map(|s| {
            let (total, gateway, upstream, redis, loadgen) = sum(&s.system)?;
            let base = if s.system.contains("-tls") {
                "direct-tls"
            } else {
                "direct"
            };
            let cost = match (s.system.starts_with("direct"), sum(base)) {
                (true, _) => "—".to_string(),
                (false, Some((b, ..))) => format!("{} (vs {base})", f1(total - b)),
                (false, None) => format!("— ({base} not run)"),
            };
            Some(format!(
                "| {} | {} | {} | {} | {} | {} | {} |",
                s.system,
                gateway.map(f1).unwrap_or_else(|| "—".into()),
                f1(upstream),
                f1(redis),
                f1(loadgen),
                f1(total),
                cost
            ))
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(o, "\n## Whole-system CPU per call\n");
    let _ = writeln!(
        o,
        "Every process a call passes through, µs of CPU per call: the gateway, the echo target, Redis and the load generator, and their sum. A gateway's cost to the machine is its sum minus the sum of the same load sent straight to the target (`direct`; `direct-tls` for the TLS systems) — it includes what the gateway makes the others spend (e.g. header blocks the target must decode).\n"
    );
    let _ = writeln!(
        o,
        "| system | gateway | target | Redis | loadgen | sum | cost to the machine |"
    );
    let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        let _ = writeln!(o, "{row}");
    }
}

/// The gateway's CPU per call split into user space and kernel (utime and stime).
fn user_and_kernel(o: &mut String, r: &Results) {
    let rows: Vec<String> = r
        .systems
        .iter()
        .filter_map(|s| {
            let cpu = &s.main.as_ref().filter(|m| m.loadgen.is_some())?.cpu;
            let (total, kernel) = (cpu.gateway_us_per_call?, cpu.gateway_kernel_us_per_call?);
            let share = if total > 0.0 {
                format!("{:.0}%", 100.0 * kernel / total)
            } else {
                "—".into()
            };
            Some(format!(
                "| {} | {} | {} | {} | {share} |",
                s.system,
                f1(total),
                f1(total - kernel),
                f1(kernel)
            ))
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "\n## The gateway's CPU per call: user space and kernel\n"
    );
    let _ = writeln!(
        o,
        "The gateway CPU column above split into utime (user space: HTTP/2, HPACK, routing, TLS) and stime (the kernel: system calls and io_uring, the gateway's TCP input and output — on loopback a send also runs the receiver's TCP input and wakes it, whoever the receiver is). `/proc` counts both in clock ticks, so each is good to about one tick (10 ms) over the run.\n"
    );
    let _ = writeln!(
        o,
        "| system | gateway µs/call | user | kernel | kernel share |"
    );
    let _ = writeln!(o, "|---|---:|---:|---:|---:|");
    for row in rows {
        let _ = writeln!(o, "{row}");
    }
}

/// A handshake run's figures: new connections/s, gateway and loadgen CPU µs per new
/// connection, resumed share.
struct HandshakeFigures {
    rate: f64,
    gateway_us: Option<f64>,
    loadgen_us: f64,
    resumed: u64,
    made: u64,
    failed: u64,
}

fn handshake_figures(s: &SystemRun, resumption: bool) -> Option<HandshakeFigures> {
    let m = &s
        .handshakes
        .iter()
        .find(|h| h.resumption == resumption)?
        .measurement;
    let g = m.loadgen.as_ref()?;
    Some(HandshakeFigures {
        rate: g.throughput_rps,
        gateway_us: m.cpu.gateway_us_per_call,
        loadgen_us: g.loadgen_cpu_us_per_call,
        resumed: g.handshakes.as_ref().map_or(0, |h| h.resumed),
        made: g.calls,
        failed: g.calls - g.ok,
    })
}

fn gateway_us(s: &SystemRun) -> Option<f64> {
    s.main
        .as_ref()
        .filter(|m| m.loadgen.is_some())?
        .cpu
        .gateway_us_per_call
}

/// The TLS systems' table, handshakes and the goal of issue 11.
fn tls_section(o: &mut String, r: &Results, t: &TlsSetup) {
    let tls: Vec<&SystemRun> = r
        .systems
        .iter()
        .filter(|s| s.system.contains("-tls"))
        .collect();
    let _ = writeln!(o, "\n## TLS on both hops\n");
    let _ = writeln!(
        o,
        "Certificates made for this run (a throwaway CA, the gateways' listener certificate and the echo upstream's, for `localhost` and `127.0.0.1`), keys {}. The load generator ({}) sends SNI `{}` and verifies the gateway's certificate; the gateways verify the echo upstream's (`--upstream-ca`, `grpc_ssl_verify`, `verify required`). Main run: the same load as above, over TLS. Handshake runs: {} s each, {} connections being made at once, each a new TCP connection, TLS handshake, HTTP/2 handshake, one call and close; the gateway's CPU per new connection is its whole cost (handshake, call, close). The client verifies a certificate chain on every full handshake and shares the client cores with the echo upstream, so **new connections/s is bounded by the client side** (its µs per handshake are in the table); the comparable figure is the gateway's CPU per handshake, and 10⁶ / that figure is what one gateway core could accept.\n",
        t.key_type,
        t.client,
        t.server_name,
        t.handshake_duration_s,
        t.handshake_concurrency
    );
    let _ = writeln!(
        o,
        "| system | status | calls/s | p99 µs | gateway CPU µs/call | TLS loadgen → gateway | TLS gateway → upstream | full handshakes/s | gateway µs/full handshake | resumed handshakes/s (resumed share) | gateway µs/resumed handshake | loadgen µs/handshake full / resumed |"
    );
    let _ = writeln!(
        o,
        "|---|---|---:|---:|---:|---|---|---:|---:|---:|---:|---:|"
    );
    let na = || "—".to_string();
    for s in &tls {
        let main = s.main.as_ref().and_then(|m| m.loadgen.as_ref());
        let Some(g) = main else {
            let reason = s
                .reason
                .clone()
                .or_else(|| s.main.as_ref().and_then(|m| m.error.clone()))
                .unwrap_or_default();
            let _ = writeln!(
                o,
                "| {} | {}: {} | | | | | | | | | | |",
                s.system,
                s.status,
                reason.replace('|', "/").replace('\n', " ")
            );
            continue;
        };
        let full = handshake_figures(s, false);
        let resumed = handshake_figures(s, true);
        let failed = |h: &HandshakeFigures| {
            if h.failed > 0 {
                format!(" ({} failed)", h.failed)
            } else {
                String::new()
            }
        };
        let _ = writeln!(
            o,
            "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} |",
            s.system,
            s.status,
            g.throughput_rps,
            f1(g.latency.p99_us),
            gateway_us(s).map(f1).unwrap_or_else(na),
            g.tls.as_ref().map(|n| n.line()).unwrap_or_else(na),
            if s.upstream_tls.is_empty() {
                na()
            } else {
                s.upstream_tls.join("; ")
            },
            full.as_ref()
                .map(|h| format!("{:.0}{}", h.rate, failed(h)))
                .unwrap_or_else(na),
            full.as_ref()
                .and_then(|h| h.gateway_us)
                .map(f1)
                .unwrap_or_else(na),
            resumed
                .as_ref()
                .map(|h| format!(
                    "{:.0} ({:.0}%){}",
                    h.rate,
                    100.0 * h.resumed as f64 / h.made.max(1) as f64,
                    failed(h)
                ))
                .unwrap_or_else(na),
            resumed
                .as_ref()
                .and_then(|h| h.gateway_us)
                .map(f1)
                .unwrap_or_else(na),
            full.as_ref()
                .map(|h| format!("{:.0}", h.loadgen_us))
                .unwrap_or_else(na),
            resumed
                .as_ref()
                .map(|h| format!("{:.0}", h.loadgen_us))
                .unwrap_or_else(na)
        );
    }
    // Issue 11's goal: ringway with TLS on both hops at most half of HAProxy's CPU per call
    // and at most a third of nginx's.
    let us = |name: &str| {
        tls.iter()
            .find(|s| s.system == name)
            .and_then(|s| gateway_us(s))
    };
    let (haproxy, nginx) = (us("haproxy-tls"), us("nginx-grpc-tls"));
    let mut goal = Vec::new();
    if let Some(h) = haproxy {
        goal.push(format!(
            "≤ {:.1} µs/call (half of haproxy-tls's {h:.1})",
            h / 2.0
        ));
    }
    if let Some(n) = nginx {
        goal.push(format!(
            "≤ {:.1} µs/call (a third of nginx-grpc-tls's {n:.1})",
            n / 3.0
        ));
    }
    if !goal.is_empty() {
        let _ = writeln!(
            o,
            "\nGoal for ringway with TLS on both hops: {}.",
            goal.join(", ")
        );
        for name in ["ringway-tls", "ringway-tls-cache"] {
            if let Some(v) = us(name) {
                let ratio = |other: Option<f64>, label: &str| {
                    other.map(|x| format!("{:.2}× {label}'s", v / x))
                };
                let parts: Vec<String> = [
                    ratio(haproxy, "haproxy-tls"),
                    ratio(nginx, "nginx-grpc-tls"),
                ]
                .into_iter()
                .flatten()
                .collect();
                let _ = writeln!(o, "- {name}: {v:.1} µs/call = {}", parts.join(", "));
            }
        }
    }
}
