//! The systems under test and how each one is started.
//!
//! Owns: the list of systems, their descriptions, and turning one into a running process with
//! a target address. It must not measure anything (`measure` does).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::peers::{self, PeerVars};
use super::procs::Proc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum System {
    /// No gateway: the load generator calls the echo upstream itself. The ceiling.
    Direct,
    Ringway,
    /// ringway with its route cache on (coherent through Redis client tracking).
    RingwayCache,
    /// nginx `grpc_pass` to a static upstream with `keepalive`.
    NginxGrpc,
    /// The OpenResty gateway after its fix: Lua GET over a pooled cosocket, balancer_by_lua,
    /// keepalive (docs/background.md, "The OpenResty gateway").
    NginxLua,
    /// The OpenResty gateway before its fix: Lua GET over a fresh socket,
    /// `grpc_pass grpc://$target`.
    NginxLuaShort,
    /// HAProxy, h2c both sides to a static upstream, multiplexed (`http-reuse always`).
    Haproxy,
}

pub const ALL: [System; 7] = [
    System::Direct,
    System::Ringway,
    System::RingwayCache,
    System::Haproxy,
    System::NginxGrpc,
    System::NginxLua,
    System::NginxLuaShort,
];

impl System {
    pub fn name(self) -> &'static str {
        match self {
            System::Direct => "direct",
            System::Ringway => "ringway",
            System::RingwayCache => "ringway-cache",
            System::NginxGrpc => "nginx-grpc",
            System::NginxLua => "nginx-lua",
            System::NginxLuaShort => "nginx-lua-short",
            System::Haproxy => "haproxy",
        }
    }

    pub fn parse(s: &str) -> Option<System> {
        ALL.into_iter().find(|x| x.name() == s)
    }

    pub fn describe(self) -> &'static str {
        match self {
            System::Direct => "no gateway: load generator -> echo upstream (the ceiling)",
            System::Ringway => "ringway: route from Redis, multiplexed upstream HTTP/2 pool",
            System::RingwayCache => {
                "ringway --route-cache: routes cached per shard, kept coherent by Redis client tracking"
            }
            System::NginxGrpc => "nginx grpc_pass, static upstream, upstream keepalive",
            System::NginxLua => {
                "nginx + Lua (pooled, the OpenResty fix): access_by_lua GET over pooled cosocket, balancer_by_lua, keepalive"
            }
            System::NginxLuaShort => {
                "nginx + Lua (short connections, the OpenResty original): new Redis socket per call, grpc_pass grpc://$target"
            }
            System::Haproxy => {
                "HAProxy: h2c both sides, static upstream, multiplexed server connections (http-reuse always)"
            }
        }
    }

    fn template(self) -> Option<&'static str> {
        match self {
            System::NginxGrpc => Some("nginx-grpc.conf"),
            System::NginxLua => Some("nginx-lua-pooled.conf"),
            System::NginxLuaShort => Some("nginx-lua-short.conf"),
            System::Haproxy => Some("haproxy-grpc.cfg"),
            _ => None,
        }
    }

    /// Whether the system looks the route up in Redis.
    pub fn uses_redis(self) -> bool {
        matches!(
            self,
            System::Ringway | System::RingwayCache | System::NginxLua | System::NginxLuaShort
        )
    }
}

/// Why a system did not run.
#[derive(Debug)]
pub enum NotRun {
    /// Its software is missing or not asked for: not a fault of the system.
    Skipped(String),
    /// It was there but did not start or did not answer.
    Failed(String),
}

/// What every system is started with.
pub struct Env {
    pub tmp: PathBuf,
    pub peers_dir: PathBuf,
    pub redis: SocketAddr,
    pub upstream: SocketAddr,
    pub route_header: String,
    pub route_prefix: String,
    pub gateway_cpus: Vec<usize>,
    pub keepalive: usize,
    pub redis_pool: usize,
    pub ringway_bin: PathBuf,
    /// Extra arguments for ringway (`--ringway-arg`).
    pub ringway_args: Vec<String>,
    pub nofile: u64,
}

/// A started system: its process (none for `direct`) and the address to load.
pub struct Running {
    pub proc: Option<Proc>,
    pub target: SocketAddr,
    /// Command line or config, for the record.
    pub command: String,
}

/// A core list as `taskset -c` and `Cpus_allowed_list` write it: `0,1,3`.
pub fn cpu_list(cpus: &[usize]) -> String {
    cpus.iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Start `system` listening on 127.0.0.1:`port`.
pub fn start(system: System, env: &Env, port: u16) -> Result<Running, NotRun> {
    let listen: SocketAddr = ([127, 0, 0, 1], port).into();
    match system {
        System::Direct => Ok(Running {
            proc: None,
            target: env.upstream,
            command: String::new(),
        }),
        System::Ringway | System::RingwayCache => {
            if !env.ringway_bin.exists() {
                return Err(NotRun::Skipped(format!(
                    "{} not found (build it with `cargo build --release -p ringway`)",
                    env.ringway_bin.display()
                )));
            }
            let mut cmd = vec![
                env.ringway_bin.display().to_string(),
                "--listen".into(),
                listen.to_string(),
                "--redis".into(),
                env.redis.to_string(),
                "--shards".into(),
                env.gateway_cpus.len().to_string(),
                "--route-header".into(),
                env.route_header.clone(),
                // An admin port of its own, so a fixed 9901 elsewhere cannot collide.
                "--admin".into(),
                "127.0.0.1:0".into(),
            ];
            if system == System::RingwayCache {
                cmd.push("--route-cache".into());
            }
            if !env.route_prefix.is_empty() {
                cmd.extend(["--route-prefix".into(), env.route_prefix.clone()]);
            }
            cmd.extend(env.ringway_args.iter().cloned());
            let log = env.tmp.join("ringway.log");
            let cpus = cpu_list(&env.gateway_cpus);
            let mut p = Proc::spawn("ringway", Some(&cpus), &cmd, &log).map_err(NotRun::Failed)?;
            let target = p
                .wait_listening(Duration::from_secs(15))
                .map_err(NotRun::Failed)?;
            let built = std::process::Command::new("date")
                .arg("-r")
                .arg(&env.ringway_bin)
                .arg("+%F %T")
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default();
            Ok(Running {
                proc: Some(p),
                target,
                command: format!("taskset -c {cpus} {} (binary built {built})", cmd.join(" ")),
            })
        }
        System::Haproxy => {
            let haproxy = which("haproxy").ok_or_else(|| {
                NotRun::Skipped("haproxy not found: apt-get install -y haproxy".into())
            })?;
            let prefix = env.tmp.join(system.name());
            std::fs::create_dir_all(&prefix).map_err(|e| NotRun::Failed(e.to_string()))?;
            let template = system.template().expect("haproxy has a template");
            let conf = peers::render(&env.peers_dir, template, &peer_vars(env, &prefix, port))
                .map_err(NotRun::Failed)?;
            // Kept beside the results under the same name as nginx's rendered configs.
            let conf_path = prefix.join("nginx.conf");
            std::fs::write(&conf_path, &conf).map_err(|e| NotRun::Failed(e.to_string()))?;
            // -db: foreground, no daemon; the thread pins itself (cpu-map).
            let cmd = vec![
                haproxy,
                "-db".into(),
                "-f".into(),
                conf_path.display().to_string(),
            ];
            let log = prefix.join("stderr.log");
            let mut p = Proc::spawn(system.name(), None, &cmd, &log).map_err(NotRun::Failed)?;
            p.wait_port(listen, Duration::from_secs(10))
                .map_err(|e| NotRun::Failed(format!("{e}; log: {}", p.log_tail(10))))?;
            Ok(Running {
                proc: Some(p),
                target: listen,
                command: format!("{} (config: {template})", cmd.join(" ")),
            })
        }
        System::NginxGrpc | System::NginxLua | System::NginxLuaShort => {
            let nginx = which("nginx").ok_or_else(|| {
                NotRun::Skipped(
                    "nginx not found: apt-get install -y nginx libnginx-mod-http-lua lua-resty-core"
                        .into(),
                )
            })?;
            if system != System::NginxGrpc
                && !std::path::Path::new("/usr/lib/nginx/modules/ngx_http_lua_module.so").exists()
            {
                return Err(NotRun::Skipped(
                    "the nginx Lua module is missing: apt-get install -y libnginx-mod-http-lua lua-resty-core"
                        .into(),
                ));
            }
            let prefix = env.tmp.join(system.name());
            std::fs::create_dir_all(&prefix).map_err(|e| NotRun::Failed(e.to_string()))?;
            let vars = peer_vars(env, &prefix, port);
            let template = system.template().expect("nginx systems have a template");
            let conf = peers::render(&env.peers_dir, template, &vars).map_err(NotRun::Failed)?;
            let (p, command) = spawn_nginx(system.name(), nginx, &prefix, &conf, listen)?;
            Ok(Running {
                proc: Some(p),
                target: listen,
                command: format!("{command} (config: {template})"),
            })
        }
    }
}

/// Writes `conf` as `<prefix>/nginx.conf` and runs `nginx` on it in the foreground (its
/// workers pin themselves with `worker_cpu_affinity`; the master idles) until `listen`
/// accepts. Returns the process and its command line.
pub fn spawn_nginx(
    name: &str,
    nginx: String,
    prefix: &std::path::Path,
    conf: &str,
    listen: SocketAddr,
) -> Result<(Proc, String), NotRun> {
    let conf_path = prefix.join("nginx.conf");
    std::fs::write(&conf_path, conf).map_err(|e| NotRun::Failed(e.to_string()))?;
    let cmd = vec![
        nginx,
        "-p".into(),
        prefix.display().to_string(),
        "-e".into(),
        prefix.join("error.log").display().to_string(),
        "-c".into(),
        conf_path.display().to_string(),
        "-g".into(),
        "daemon off;".into(),
    ];
    let log = prefix.join("stderr.log");
    let mut p = Proc::spawn(name, None, &cmd, &log).map_err(NotRun::Failed)?;
    p.wait_port(listen, Duration::from_secs(10)).map_err(|e| {
        NotRun::Failed(format!(
            "{e}; error.log: {}",
            super::procs::tail(&prefix.join("error.log"), 10)
        ))
    })?;
    Ok((p, cmd.join(" ")))
}

/// The values a peer's config template is rendered with.
fn peer_vars(env: &Env, prefix: &std::path::Path, port: u16) -> PeerVars {
    PeerVars {
        prefix: prefix.to_path_buf(),
        peers_dir: env.peers_dir.clone(),
        listen_port: port,
        upstream: env.upstream.to_string(),
        redis_host: env.redis.ip().to_string(),
        redis_port: env.redis.port(),
        route_header: env.route_header.clone(),
        route_prefix: env.route_prefix.clone(),
        keepalive: env.keepalive,
        redis_pool: env.redis_pool,
        cpus: env.gateway_cpus.clone(),
        nofile: env.nofile,
    }
}

/// Full path of `prog` on PATH (plus the sbin directories nginx lives in).
pub fn which(prog: &str) -> Option<String> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/usr/local/sbin"])
        .map(|d| std::path::Path::new(d).join(prog))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string());
    found
}
