//! The systems under test and how each one is started.
//!
//! Owns: the list of systems, their descriptions, and turning one into a running process with
//! a target address. It must not measure anything (`measure` does).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::peers::{self, PeerTls, PeerVars};
use super::procs::Proc;
use crate::tls::Pki;

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
    /// HAProxy reading the route from Redis on every call: a Lua action GETs it over a pooled
    /// socket, `set-dst` sends the call there.
    HaproxyLua,
    /// TLS systems: the load generator speaks TLS to the gateway, the gateway TLS to the echo
    /// upstream's TLS listener; certificates from the run's PKI (`crate::tls`).
    /// No gateway: the load generator over TLS to the echo upstream's TLS listener.
    DirectTls,
    /// ringway with `--tls-listen` and an `https://` route (needs a ringway with TLS).
    RingwayTls,
    RingwayTlsCache,
    /// HAProxy, `ssl crt … alpn h2` on both sides, multiplexed.
    HaproxyTls,
    /// `haproxy-lua` with TLS on both hops: the route read from Redis on every call, as
    /// ringway-tls does it.
    HaproxyLuaTls,
    /// nginx `listen … ssl http2` + `grpc_pass grpcs://` with upstream keepalive.
    NginxGrpcTls,
    /// Floors, not gateways: HAProxy relaying TCP (layer 4) to the static upstream, one
    /// upstream connection per client connection, the bytes copied unread — what a process in
    /// the middle costs per call on this load when it parses nothing.
    HaproxyTcp,
    /// The same with TLS terminated from the client and made again to the upstream.
    HaproxyTcpTls,
}

pub const ALL: [System; 16] = [
    System::Direct,
    System::Ringway,
    System::RingwayCache,
    System::Haproxy,
    System::HaproxyLua,
    System::NginxGrpc,
    System::NginxLua,
    System::NginxLuaShort,
    System::DirectTls,
    System::RingwayTls,
    System::RingwayTlsCache,
    System::HaproxyTls,
    System::HaproxyLuaTls,
    System::NginxGrpcTls,
    System::HaproxyTcp,
    System::HaproxyTcpTls,
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
            System::HaproxyLua => "haproxy-lua",
            System::DirectTls => "direct-tls",
            System::RingwayTls => "ringway-tls",
            System::RingwayTlsCache => "ringway-tls-cache",
            System::HaproxyTls => "haproxy-tls",
            System::HaproxyLuaTls => "haproxy-lua-tls",
            System::NginxGrpcTls => "nginx-grpc-tls",
            System::HaproxyTcp => "haproxy-tcp",
            System::HaproxyTcpTls => "haproxy-tcp-tls",
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
            System::HaproxyLua => {
                "HAProxy + Lua: GET per call over a pooled Redis socket, set-dst, h2c both sides, http-reuse always"
            }
            System::DirectTls => {
                "no gateway, TLS: load generator -> echo upstream's TLS listener (the TLS ceiling)"
            }
            System::RingwayTls => {
                "ringway, TLS both hops: --tls-listen, route https://<echo TLS listener> from Redis, --upstream-ca"
            }
            System::RingwayTlsCache => "ringway-tls with --route-cache",
            System::HaproxyTls => {
                "HAProxy, TLS both hops: bind ssl crt alpn h2, server ssl verify required alpn h2, http-reuse always"
            }
            System::HaproxyLuaTls => {
                "HAProxy + Lua, TLS both hops: GET per call over a pooled Redis socket, set-dst, bind ssl crt alpn h2, server ssl verify required alpn h2, http-reuse always"
            }
            System::NginxGrpcTls => {
                "nginx, TLS both hops: listen ssl http2, grpc_pass grpcs:// with upstream keepalive and session reuse"
            }
            System::HaproxyTcp => {
                "a floor, not a gateway: HAProxy relaying TCP (mode tcp), one upstream connection per client connection, bytes copied unread"
            }
            System::HaproxyTcpTls => {
                "the TLS floor: HAProxy mode tcp, TLS terminated from the client and made again to the upstream (verified, ALPN h2), bytes copied unread"
            }
        }
    }

    /// Whether both of its hops (or, for `direct-tls`, its one hop) are TLS.
    pub fn is_tls(self) -> bool {
        matches!(
            self,
            System::DirectTls
                | System::RingwayTls
                | System::RingwayTlsCache
                | System::HaproxyTls
                | System::HaproxyLuaTls
                | System::NginxGrpcTls
                | System::HaproxyTcpTls
        )
    }

    /// No gateway: the load generator calls the echo upstream.
    pub fn is_direct(self) -> bool {
        matches!(self, System::Direct | System::DirectTls)
    }

    /// Whether it is ringway (its config is its command line; nothing to keep beside results).
    pub fn is_ringway(self) -> bool {
        matches!(
            self,
            System::Ringway | System::RingwayCache | System::RingwayTls | System::RingwayTlsCache
        )
    }

    /// The route's value in Redis while this system runs: the echo upstream's plaintext
    /// address, or for the TLS systems that read it `https://` and its TLS listener.
    pub fn route_target(self, env: &Env) -> String {
        match (self, &env.tls) {
            (System::RingwayTls | System::RingwayTlsCache | System::HaproxyLuaTls, Some(t)) => {
                format!("https://{}", t.upstream)
            }
            _ => env.upstream.to_string(),
        }
    }

    fn template(self) -> Option<&'static str> {
        match self {
            System::NginxGrpcTls => Some("nginx-grpc-tls.conf"),
            System::HaproxyTls => Some("haproxy-tls.cfg"),
            System::NginxGrpc => Some("nginx-grpc.conf"),
            System::NginxLua => Some("nginx-lua-pooled.conf"),
            System::NginxLuaShort => Some("nginx-lua-short.conf"),
            System::Haproxy => Some("haproxy-grpc.cfg"),
            System::HaproxyLua => Some("haproxy-lua.cfg"),
            System::HaproxyLuaTls => Some("haproxy-lua-tls.cfg"),
            System::HaproxyTcp => Some("haproxy-tcp.cfg"),
            System::HaproxyTcpTls => Some("haproxy-tcp-tls.cfg"),
            _ => None,
        }
    }

    /// Whether the system looks the route up in Redis.
    pub fn uses_redis(self) -> bool {
        self.is_ringway()
            || matches!(
                self,
                System::NginxLua
                    | System::NginxLuaShort
                    | System::HaproxyLua
                    | System::HaproxyLuaTls
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
#[derive(Clone)]
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
    /// The TLS systems' PKI and the echo upstream's TLS listener; `None` when no TLS system
    /// was asked for.
    pub tls: Option<EnvTls>,
}

#[derive(Clone)]
pub struct EnvTls {
    pub pki: Pki,
    /// The echo upstream's TLS listener (a second echo-upstream process).
    pub upstream: SocketAddr,
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
        System::DirectTls => Ok(Running {
            proc: None,
            target: env_tls(env)?.upstream,
            command: String::new(),
        }),
        System::Ringway | System::RingwayCache | System::RingwayTls | System::RingwayTlsCache => {
            if !env.ringway_bin.exists() {
                return Err(NotRun::Skipped(format!(
                    "{} not found (build it with `cargo build --release -p ringway`)",
                    env.ringway_bin.display()
                )));
            }
            let mut cmd = vec![env.ringway_bin.display().to_string()];
            if system.is_tls() {
                cmd.extend(ringway_tls_args(env, listen)?);
            } else {
                cmd.extend(["--listen".into(), listen.to_string()]);
            }
            cmd.extend([
                "--redis".into(),
                env.redis.to_string(),
                "--shards".into(),
                env.gateway_cpus.len().to_string(),
                "--route-header".into(),
                env.route_header.clone(),
                // An admin port of its own, so a fixed 9901 elsewhere cannot collide.
                "--admin".into(),
                "127.0.0.1:0".into(),
            ]);
            if matches!(system, System::RingwayCache | System::RingwayTlsCache) {
                cmd.push("--route-cache".into());
            }
            if !env.route_prefix.is_empty() {
                cmd.extend(["--route-prefix".into(), env.route_prefix.clone()]);
            }
            cmd.extend(env.ringway_args.iter().cloned());
            let log = env.tmp.join("ringway.log");
            let cpus = cpu_list(&env.gateway_cpus);
            let mut p = Proc::spawn("ringway", Some(&cpus), &cmd, &log).map_err(NotRun::Failed)?;
            let mut target = p
                .wait_listening(Duration::from_secs(15))
                .map_err(NotRun::Failed)?;
            if system.is_tls() {
                // The `listening on` line names the plaintext listener when there is one.
                target = listen;
                p.wait_port(listen, Duration::from_secs(10))
                    .map_err(NotRun::Failed)?;
            }
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
        System::Haproxy
        | System::HaproxyLua
        | System::HaproxyTls
        | System::HaproxyLuaTls
        | System::HaproxyTcp
        | System::HaproxyTcpTls => {
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
        System::NginxGrpc | System::NginxLua | System::NginxLuaShort | System::NginxGrpcTls => {
            let nginx = which("nginx").ok_or_else(|| {
                NotRun::Skipped(
                    "nginx not found: apt-get install -y nginx libnginx-mod-http-lua lua-resty-core"
                        .into(),
                )
            })?;
            if matches!(system, System::NginxLua | System::NginxLuaShort)
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

fn env_tls(env: &Env) -> Result<&EnvTls, NotRun> {
    env.tls
        .as_ref()
        .ok_or_else(|| NotRun::Failed("the run made no PKI for its TLS systems".into()))
}

/// ringway's TLS flags — the interface of ringway's TLS (issue 11): `--tls-listen ADDR
/// --tls-cert CERT.pem --tls-key KEY.pem`, `https://` routes verified with `--upstream-ca`,
/// and `--listen off` for no plaintext listener. A build whose `--help` lists no
/// `--tls-listen` has no TLS: skipped. One that cannot turn the plaintext listener off gets it
/// on a free port, unused.
fn ringway_tls_args(env: &Env, tls_listen: SocketAddr) -> Result<Vec<String>, NotRun> {
    let help = std::process::Command::new(&env.ringway_bin)
        .arg("--help")
        .output()
        .map_err(|e| NotRun::Failed(format!("{} --help: {e}", env.ringway_bin.display())))?;
    let help = String::from_utf8_lossy(&help.stdout);
    if !help.contains("--tls-listen") {
        return Err(NotRun::Skipped(format!(
            "{} has no TLS: its --help lists no --tls-listen (ringway's TLS, issue 11, is not in this build)",
            env.ringway_bin.display()
        )));
    }
    let t = env_tls(env)?;
    let plain = if listen_can_be_off(&help) {
        "off".to_string()
    } else {
        "127.0.0.1:0".to_string()
    };
    Ok(vec![
        "--listen".into(),
        plain,
        "--tls-listen".into(),
        tls_listen.to_string(),
        "--tls-cert".into(),
        t.pki.gateway_cert.display().to_string(),
        "--tls-key".into(),
        t.pki.gateway_key.display().to_string(),
        "--upstream-ca".into(),
        t.pki.ca.display().to_string(),
    ])
}

/// Whether ringway's `--help` says `--listen` takes `off`.
fn listen_can_be_off(help: &str) -> bool {
    let mut lines = help
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("--listen "));
    let Some(first) = lines.next() else {
        return false;
    };
    std::iter::once(first)
        .chain(lines.take_while(|l| !l.trim_start().starts_with("--")))
        .any(|l| l.contains("\"off\""))
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
        tls: env.tls.as_ref().map(|t| PeerTls {
            cert: t.pki.gateway_cert.clone(),
            key: t.pki.gateway_key.clone(),
            bundle: t.pki.gateway_bundle.clone(),
            ca: t.pki.ca.clone(),
            upstream: t.upstream.to_string(),
        }),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_off_is_read_from_the_help_text() {
        let tls = "  --listen <ADDR>\n          Plaintext (h2c) service address (port 0: pick a free port);\n          \"off\": no plaintext listener [default: 0.0.0.0:7070]\n  --tls-listen <ADDR>\n          TLS service address\n";
        assert!(listen_can_be_off(tls));
        let old = "  --listen <ADDR>\n          Service address [default: 0.0.0.0:7070]\n  --redis <ADDR>\n          \"off\" here is not --listen's\n";
        assert!(!listen_can_be_off(old));
    }

    #[test]
    fn every_system_has_a_unique_name_that_parses_back() {
        for s in ALL {
            assert_eq!(System::parse(s.name()), Some(s));
        }
    }
}
