//! One measured load against one target: the load generator as a child process, and around
//! it the CPU of the gateway tree, the upstream and Redis, the gateway's peak RSS, and the
//! TCP state table before, during and after.
//!
//! Owns: the `Load` (identical for every system), running `loadgen` under `taskset`, and the
//! `/proc` snapshots. It must not start or stop the systems under test.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::procfs::{self, PeakRss, PortStates};
use crate::report::Summary;

/// The load every system gets. Fields are per run.
#[derive(Clone, Debug, Serialize)]
pub struct Load {
    pub connections: usize,
    pub concurrency: usize,
    /// Open loop when set: calls per second.
    pub rate: Option<f64>,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub message_bytes: usize,
    pub threads: usize,
    pub headers: Vec<String>,
    /// More than 1: the routing header takes this many values, `<value>-<i>` call after call
    /// (`loadgen --keys`); each is a key in Redis.
    pub keys: usize,
    pub path: String,
    /// TLS to the target (the TLS systems). `None`: h2c.
    pub tls: Option<LoadTls>,
    /// Every call on a new connection, closed after it: new connections (handshakes) per
    /// second (`loadgen --new-connections`); `connections` is then unused.
    pub new_connections: bool,
    /// With `tls` and `new_connections`: keep the client's TLS session cache across
    /// connections (resumed handshakes); `false`: every handshake a full one.
    pub resumption: bool,
}

/// The load generator's TLS: what it trusts and the name it sends (SNI) and verifies.
#[derive(Clone, Debug, Serialize)]
pub struct LoadTls {
    pub ca: PathBuf,
    pub server_name: String,
}

/// The processes whose CPU time is charged per call, and the ports whose TCP states count.
pub struct Watch {
    pub gateway: Option<u32>,
    pub upstream: u32,
    pub redis: u32,
    /// (label, port): `upstream`, `redis`, `gateway`.
    pub ports: Vec<(String, u16)>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct TcpSnapshot {
    /// Per watched port, counts by state from both ends.
    pub ports: BTreeMap<String, PortStates>,
    /// Whole-machine counts by state (the OpenResty gateway's `netstat -na | awk` line,
    /// docs/background.md).
    pub all: BTreeMap<String, u64>,
}

fn snapshot(watch: &Watch) -> TcpSnapshot {
    let ports: Vec<u16> = watch.ports.iter().map(|(_, p)| *p).collect();
    let states = procfs::port_states(&ports);
    TcpSnapshot {
        ports: watch
            .ports
            .iter()
            .map(|(l, _)| l.clone())
            .zip(states)
            .collect(),
        all: procfs::all_states(),
    }
}

/// CPU seconds spent during the load, and per call, of each watched process tree.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Cpu {
    pub gateway_s: Option<f64>,
    pub upstream_s: f64,
    pub redis_s: f64,
    pub gateway_us_per_call: Option<f64>,
    /// Of `gateway_us_per_call`, the time in the kernel (stime): system calls and what the
    /// kernel does on the gateway's behalf (on loopback a send also runs the receiver's TCP
    /// input and wakes it). The rest is user space.
    pub gateway_kernel_us_per_call: Option<f64>,
    pub upstream_us_per_call: f64,
    pub redis_us_per_call: f64,
    /// Busy CPU seconds of the whole machine during the load.
    pub machine_busy_s: f64,
    /// Of those, what no process of the benchmark used (other builds, daemons): the noise.
    /// Its share of the machine is `other_busy_pct`.
    pub other_busy_s: f64,
    pub other_busy_pct: f64,
    /// 1-minute load average when the load started.
    pub loadavg_before: f64,
}

/// Everything recorded about one load.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Measurement {
    /// The load generator's summary (throughput, latency percentiles, errors by status).
    pub loadgen: Option<Summary>,
    pub error: Option<String>,
    pub cpu: Cpu,
    /// Peak RSS of the gateway's process tree since it started.
    pub gateway_peak_rss: Option<PeakRss>,
    pub tcp_before: TcpSnapshot,
    /// Halfway through the measured phase (the OpenResty gateway's tables in
    /// docs/background.md were taken under load).
    pub tcp_during: Option<TcpSnapshot>,
    /// Right after the load, with the gateway still running.
    pub tcp_after: TcpSnapshot,
}

/// Where the binaries and the scratch files are.
pub struct Tools {
    pub loadgen: PathBuf,
    pub tmp: PathBuf,
    pub client_cpus: String,
}

/// The `loadgen` command line for `load` against `target`.
pub fn loadgen_args(load: &Load, target: SocketAddr, json: &Path) -> Vec<String> {
    let mut a = vec![
        "--target".into(),
        target.to_string(),
        "--connections".into(),
        load.connections.to_string(),
        "--concurrency".into(),
        load.concurrency.to_string(),
        "--duration".into(),
        load.duration_s.to_string(),
        "--warmup".into(),
        load.warmup_s.to_string(),
        "--size".into(),
        load.message_bytes.to_string(),
        "--threads".into(),
        load.threads.to_string(),
        "--path".into(),
        load.path.clone(),
        "--json".into(),
        json.display().to_string(),
    ];
    if let Some(r) = load.rate {
        a.extend(["--rate".into(), r.to_string()]);
    }
    if let Some(t) = &load.tls {
        a.extend([
            "--tls-ca".into(),
            t.ca.display().to_string(),
            "--tls-server-name".into(),
            t.server_name.clone(),
        ]);
        if load.new_connections && !load.resumption {
            a.push("--no-resumption".into());
        }
    }
    if load.new_connections {
        a.push("--new-connections".into());
    }
    for h in &load.headers {
        a.extend(["--header".into(), h.clone()]);
    }
    if load.keys > 1 {
        a.extend(["--keys".into(), load.keys.to_string()]);
    }
    a
}

/// Run `loadgen` with `args`, bounded by `limit`; parse its JSON summary.
pub fn run_loadgen(
    tools: &Tools,
    args: &[String],
    json: &Path,
    log: &Path,
    limit: Duration,
    during: Option<(Duration, &mut dyn FnMut())>,
) -> Result<Summary, String> {
    let _ = std::fs::remove_file(json);
    let out = std::fs::File::create(log).map_err(|e| e.to_string())?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let mut child = Command::new("taskset")
        .arg("-c")
        .arg(&tools.client_cpus)
        .arg(&tools.loadgen)
        .args(args)
        .arg("--quiet")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("spawn loadgen: {e}"))?;
    let started = Instant::now();
    let mut during = during;
    let status = loop {
        if let Some((at, f)) = during.as_mut() {
            if started.elapsed() >= *at {
                f();
                during = None;
            }
        }
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) => {}
            Err(e) => return Err(e.to_string()),
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("loadgen did not finish within {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if !status.success() {
        return Err(format!(
            "loadgen failed ({status}): {}",
            super::procs::tail(log, 5)
        ));
    }
    let text =
        std::fs::read_to_string(json).map_err(|e| format!("read {}: {e}", json.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("parse loadgen JSON: {e}"))
}

/// Drive `load` at `target` and record everything around it. `tag` names the scratch files.
pub fn measure(
    tools: &Tools,
    watch: &Watch,
    load: &Load,
    target: SocketAddr,
    tag: &str,
) -> Measurement {
    let json = tools.tmp.join(format!("{tag}.json"));
    let log = tools.tmp.join(format!("{tag}.loadgen.log"));
    let args = loadgen_args(load, target, &json);
    let limit = Duration::from_secs_f64(load.warmup_s + load.duration_s + 30.0);
    let mut m = Measurement {
        tcp_before: snapshot(watch),
        ..Default::default()
    };
    let g0 = watch.gateway.map(procfs::tree_cpu);
    let u0 = procfs::tree_cpu_seconds(watch.upstream);
    let r0 = procfs::tree_cpu_seconds(watch.redis);
    let m0 = procfs::machine_busy_seconds();
    let loadavg_before = procfs::loadavg();
    let wall = Instant::now();
    let mut during_snap = None;
    let mut take = || during_snap = Some(snapshot(watch));
    let at = Duration::from_secs_f64(load.warmup_s + load.duration_s / 2.0);
    let result = run_loadgen(tools, &args, &json, &log, limit, Some((at, &mut take)));
    let g1 = watch.gateway.map(procfs::tree_cpu);
    let u1 = procfs::tree_cpu_seconds(watch.upstream);
    let r1 = procfs::tree_cpu_seconds(watch.redis);
    let m1 = procfs::machine_busy_seconds();
    let wall = wall.elapsed().as_secs_f64();
    m.tcp_after = snapshot(watch);
    m.tcp_during = during_snap;
    m.gateway_peak_rss = watch.gateway.map(procfs::tree_peak_rss);
    match result {
        Ok(s) => {
            // CPU is sampled around the whole load, warm-up included: divide by every call.
            let calls = s.calls_total.max(1) as f64;
            let per = |secs: f64| secs * 1e6 / calls;
            m.cpu = Cpu {
                gateway_s: g0.zip(g1).map(|(a, b)| b.total_s - a.total_s),
                upstream_s: u1 - u0,
                redis_s: r1 - r0,
                gateway_us_per_call: g0.zip(g1).map(|(a, b)| per(b.total_s - a.total_s)),
                gateway_kernel_us_per_call: g0.zip(g1).map(|(a, b)| per(b.system_s - a.system_s)),
                upstream_us_per_call: per(u1 - u0),
                redis_us_per_call: per(r1 - r0),
                machine_busy_s: m1 - m0,
                other_busy_s: 0.0,
                other_busy_pct: 0.0,
                loadavg_before,
            };
            let ours = g1
                .zip(g0)
                .map(|(b, a)| b.total_s - a.total_s)
                .unwrap_or(0.0)
                + (u1 - u0)
                + (r1 - r0)
                + s.loadgen_cpu_s;
            let cores = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1);
            m.cpu.other_busy_s = (m.cpu.machine_busy_s - ours).max(0.0);
            m.cpu.other_busy_pct = 100.0 * m.cpu.other_busy_s / (wall * cores as f64).max(1e-9);
            m.loadgen = Some(s);
        }
        Err(e) => m.error = Some(e),
    }
    m
}

/// A short call sequence proving the system routes calls end to end before it is measured.
pub fn probe(tools: &Tools, load: &Load, target: SocketAddr) -> Result<(), String> {
    let json = tools.tmp.join("probe.json");
    let log = tools.tmp.join("probe.log");
    let probe = Load {
        connections: 1,
        concurrency: 4,
        rate: None,
        new_connections: false,
        duration_s: 5.0,
        warmup_s: 0.0,
        ..load.clone()
    };
    let mut args = loadgen_args(&probe, target, &json);
    args.extend([
        "--requests".into(),
        "200".into(),
        "--call-timeout".into(),
        "2".into(),
    ]);
    let s = run_loadgen(tools, &args, &json, &log, Duration::from_secs(20), None)?;
    if s.ok == 0 {
        return Err(format!("no call succeeded: {:?}", s.errors));
    }
    Ok(())
}

/// h2load's figure for the same shape of load, to cross-check the load generator.
#[derive(Clone, Debug, Serialize)]
pub struct H2loadCheck {
    pub command: String,
    pub requests: u64,
    pub h2load_rps: Option<f64>,
    pub h2load_succeeded: Option<u64>,
    /// The load generator with the same connections, streams per connection and count.
    pub loadgen_rps: Option<f64>,
    pub loadgen_ok: Option<u64>,
    pub note: String,
}

/// h2load's arguments for `requests` calls in the shape of `load` (same connections, streams
/// per connection, gRPC-framed body, headers and path) against `target`.
fn h2load_args(tools: &Tools, load: &Load, target: SocketAddr, requests: u64) -> Vec<String> {
    let streams = (load.concurrency / load.connections.max(1)).max(1);
    let body = tools.tmp.join(format!("msg{}.bin", load.message_bytes));
    let _ = std::fs::write(&body, crate::grpc::framed_message(load.message_bytes));
    let mut args: Vec<String> = vec![
        "-n".into(),
        requests.to_string(),
        "-c".into(),
        load.connections.to_string(),
        "-m".into(),
        streams.to_string(),
        "--header".into(),
        "content-type: application/grpc".into(),
        "--header".into(),
        "te: trailers".into(),
    ];
    for h in &load.headers {
        args.extend(["--header".into(), h.replacen('=', ": ", 1)]);
    }
    args.extend([
        "-d".into(),
        body.display().to_string(),
        // h2load offers ALPN h2 over TLS and does not verify the certificate.
        format!(
            "{}://{target}{}",
            if load.tls.is_some() { "https" } else { "http" },
            load.path
        ),
    ]);
    args
}

/// What one h2load run reported: calls/s and succeeded count (`None` where not found).
struct H2loadRun {
    rps: Option<f64>,
    succeeded: Option<u64>,
}

const NO_H2LOAD: &str = "h2load not found: apt-get install -y nghttp2-client";

/// Run `h2load` (its path) with `args` pinned to the client cores, bounded by `timeout 120`.
fn run_h2load(tools: &Tools, h2load: &str, args: &[String]) -> Result<H2loadRun, String> {
    let out = Command::new("timeout")
        .arg("120")
        .arg("taskset")
        .arg("-c")
        .arg(&tools.client_cpus)
        .arg(h2load)
        .args(args)
        .output()
        .map_err(|e| format!("h2load: {e}"))?;
    let mut run = H2loadRun {
        rps: None,
        succeeded: None,
    };
    let text = String::from_utf8_lossy(&out.stdout);
    for line in text.lines() {
        // "finished in 2.92s, 102649.80 req/s, 9.69MB/s"
        if let Some(rest) = line.strip_prefix("finished in ") {
            run.rps = rest
                .split(", ")
                .nth(1)
                .and_then(|s| s.strip_suffix(" req/s"))
                .and_then(|s| s.parse().ok());
        }
        // "requests: 300000 total, 300000 started, 300000 done, 300000 succeeded, ..."
        if let Some(rest) = line.strip_prefix("requests: ") {
            run.succeeded = rest
                .split(", ")
                .find(|p| p.ends_with(" succeeded"))
                .and_then(|p| p.split(' ').next())
                .and_then(|n| n.parse().ok());
        }
    }
    Ok(run)
}

fn h2load_command(tools: &Tools, args: &[String]) -> String {
    format!(
        "taskset -c {} h2load {}",
        tools.client_cpus,
        shell_join(args)
    )
}

/// Run h2load and loadgen with the same count, connections and streams against `target`.
pub fn h2load_check(tools: &Tools, load: &Load, target: SocketAddr, requests: u64) -> H2loadCheck {
    let streams = (load.concurrency / load.connections.max(1)).max(1);
    let args = h2load_args(tools, load, target, requests);
    let mut check = H2loadCheck {
        command: h2load_command(tools, &args),
        requests,
        h2load_rps: None,
        h2load_succeeded: None,
        loadgen_rps: None,
        loadgen_ok: None,
        note: String::new(),
    };
    let Some(h2load) = super::systems::which("h2load") else {
        check.note = NO_H2LOAD.into();
        return check;
    };
    match run_h2load(tools, &h2load, &args) {
        Ok(h) => {
            check.h2load_rps = h.rps;
            check.h2load_succeeded = h.succeeded;
        }
        Err(e) => check.note = e,
    }
    let json = tools.tmp.join("crosscheck.json");
    let log = tools.tmp.join("crosscheck.log");
    let same = Load {
        concurrency: streams * load.connections,
        warmup_s: 0.0,
        duration_s: 120.0,
        ..load.clone()
    };
    let mut la = loadgen_args(&same, target, &json);
    la.extend(["--requests".into(), requests.to_string()]);
    match run_loadgen(tools, &la, &json, &log, Duration::from_secs(150), None) {
        Ok(s) => {
            check.loadgen_rps = Some(s.throughput_rps);
            check.loadgen_ok = Some(s.ok);
        }
        Err(e) => check.note = format!("{} loadgen: {e}", check.note),
    }
    check
}

/// A gateway's CPU per call with h2load as the load generator: an independent check of the
/// main run's `gateway_us_per_call` (loadgen's own framing cannot bias it).
#[derive(Clone, Debug, Serialize)]
pub struct GatewayH2load {
    pub command: String,
    pub requests: u64,
    pub h2load_rps: Option<f64>,
    /// h2load checks the HTTP status only: a gRPC error (HTTP 200) counts as succeeded.
    pub h2load_succeeded: Option<u64>,
    /// utime+stime of the gateway's process tree from just before to just after h2load.
    pub gateway_cpu_s: Option<f64>,
    /// `gateway_cpu_s` divided by the succeeded calls.
    pub gateway_us_per_call: Option<f64>,
    pub note: String,
}

/// Run h2load in the shape of `load` at the gateway `target` and charge the gateway tree's
/// CPU during it to h2load's succeeded calls.
pub fn gateway_h2load(
    tools: &Tools,
    watch: &Watch,
    load: &Load,
    target: SocketAddr,
    requests: u64,
) -> GatewayH2load {
    let args = h2load_args(tools, load, target, requests);
    let mut check = GatewayH2load {
        command: h2load_command(tools, &args),
        requests,
        h2load_rps: None,
        h2load_succeeded: None,
        gateway_cpu_s: None,
        gateway_us_per_call: None,
        note: String::new(),
    };
    let Some(h2load) = super::systems::which("h2load") else {
        check.note = NO_H2LOAD.into();
        return check;
    };
    let Some(gateway) = watch.gateway else {
        check.note = "no gateway process to watch".into();
        return check;
    };
    let g0 = procfs::tree_cpu_seconds(gateway);
    let result = run_h2load(tools, &h2load, &args);
    let g1 = procfs::tree_cpu_seconds(gateway);
    match result {
        Ok(h) => {
            check.h2load_rps = h.rps;
            check.h2load_succeeded = h.succeeded;
            check.gateway_cpu_s = Some(g1 - g0);
            check.gateway_us_per_call = h
                .succeeded
                .filter(|&n| n > 0)
                .map(|n| (g1 - g0) * 1e6 / n as f64);
            if h.succeeded.is_none() {
                check.note = "h2load printed no request counts (timed out or failed)".into();
            }
        }
        Err(e) => check.note = e,
    }
    check
}

fn shell_join(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@".contains(c))
            {
                a.clone()
            } else {
                format!("'{a}'")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
