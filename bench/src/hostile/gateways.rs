//! The gateways bench/hostile attacks, and how each starts: ringway (one shard, pinned), nginx
//! `grpc_pass` (one worker, pinned) and HAProxy (one thread, pinned), all in front of the same
//! echo upstream and, for the target cases, a hostile target chosen by the routing header.
//!
//! Owns: starting a gateway for one case and the HAProxy config. It reuses the scenario
//! runner's process handling (`Proc`), its ringway and nginx starts, and its nginx templates.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::scenario::peers::{self, PeerVars};
use crate::scenario::procs::Proc;
use crate::scenario::systems::{self, NotRun, System};

/// A system under attack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Gateway {
    Ringway,
    Nginx,
    Haproxy,
}

pub const ALL: [Gateway; 3] = [Gateway::Ringway, Gateway::Nginx, Gateway::Haproxy];

impl Gateway {
    pub fn name(self) -> &'static str {
        match self {
            Gateway::Ringway => "ringway",
            Gateway::Nginx => "nginx",
            Gateway::Haproxy => "haproxy",
        }
    }

    pub fn parse(s: &str) -> Option<Gateway> {
        ALL.into_iter().find(|g| g.name() == s)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Gateway::Ringway => {
                "ringway, 1 shard pinned, route from Redis, defaults except max_connections"
            }
            Gateway::Nginx => {
                "nginx grpc_pass, 1 worker pinned, upstream keepalive (peers/nginx-grpc.conf; \
                 peers/nginx-grpc-hostile.conf for the target cases)"
            }
            Gateway::Haproxy => {
                "HAProxy, h2c both sides, nbthread 1 pinned, http-reuse always \
                 (peers/haproxy-h2.cfg)"
            }
        }
    }
}

/// What every start needs.
pub struct Ctx {
    pub tmp: PathBuf,
    pub peers_dir: PathBuf,
    pub redis: SocketAddr,
    pub upstream: SocketAddr,
    pub gateway_cpus: Vec<usize>,
    pub ringway_bin: PathBuf,
    pub nofile: u64,
    /// The ringway config file every ringway start gets.
    pub ringway_config: PathBuf,
}

/// A started gateway.
pub struct Started {
    pub proc: Proc,
    pub addr: SocketAddr,
    pub command: String,
    /// ringway's admin port.
    pub admin: Option<SocketAddr>,
}

fn env(ctx: &Ctx, upstream: SocketAddr) -> systems::Env {
    systems::Env {
        tmp: ctx.tmp.clone(),
        peers_dir: ctx.peers_dir.clone(),
        redis: ctx.redis,
        upstream,
        route_header: "jobid".into(),
        route_prefix: String::new(),
        gateway_cpus: ctx.gateway_cpus.clone(),
        keepalive: 1024,
        redis_pool: 1024,
        ringway_bin: ctx.ringway_bin.clone(),
        ringway_args: vec!["--config".into(), ctx.ringway_config.display().to_string()],
        nofile: ctx.nofile,
        tls: None,
    }
}

/// Starts `gateway` on 127.0.0.1:`port`; `hostile`, when set, is the target the routing
/// header `jobid: hostile` leads to (ringway finds it in Redis, set by the caller).
pub fn start(
    gateway: Gateway,
    ctx: &Ctx,
    port: u16,
    hostile: Option<SocketAddr>,
) -> Result<Started, NotRun> {
    match gateway {
        Gateway::Ringway => {
            let running = systems::start(System::Ringway, &env(ctx, ctx.upstream), port)?;
            let proc = running.proc.expect("ringway runs a process");
            let log = std::fs::read_to_string(&proc.log).unwrap_or_default();
            Ok(Started {
                admin: admin_addr(&log),
                proc,
                addr: running.target,
                command: running.command,
            })
        }
        Gateway::Nginx => match hostile {
            None => {
                let running = systems::start(System::NginxGrpc, &env(ctx, ctx.upstream), port)?;
                Ok(Started {
                    proc: running.proc.expect("nginx runs a process"),
                    addr: running.target,
                    command: running.command,
                    admin: None,
                })
            }
            Some(target) => start_nginx_two_targets(ctx, port, target),
        },
        Gateway::Haproxy => start_haproxy(ctx, port, hostile),
    }
}

/// The address in ringway's `admin on http://<addr>/` line.
fn admin_addr(log: &str) -> Option<SocketAddr> {
    const ADMIN: &str = "admin on http://";
    log.lines().find_map(|line| {
        let start = line.find(ADMIN)? + ADMIN.len();
        line[start..].split('/').next()?.parse().ok()
    })
}

/// nginx with `peers/nginx-grpc-hostile.conf`: the echo upstream, and the hostile target
/// for `jobid: hostile`.
fn start_nginx_two_targets(ctx: &Ctx, port: u16, target: SocketAddr) -> Result<Started, NotRun> {
    let nginx = systems::which("nginx")
        .ok_or_else(|| NotRun::Skipped("nginx not found: apt-get install -y nginx".into()))?;
    let template = "nginx-grpc-hostile.conf";
    // The usual rendering knows no {{HOSTILE}}: fill it in first, in a copy of the peers.
    let peers_copy = ctx.tmp.join("peers-hostile");
    let copy = || -> std::io::Result<()> {
        std::fs::create_dir_all(&peers_copy)?;
        for inc in ["nginx-common.inc", "nginx-http-common.inc"] {
            std::fs::copy(ctx.peers_dir.join(inc), peers_copy.join(inc))?;
        }
        let text = std::fs::read_to_string(ctx.peers_dir.join(template))?
            .replace("{{HOSTILE}}", &target.to_string());
        std::fs::write(peers_copy.join(template), text)
    };
    copy().map_err(|e| NotRun::Failed(format!("prepare {template}: {e}")))?;
    let prefix = ctx.tmp.join("nginx-hostile");
    std::fs::create_dir_all(&prefix).map_err(|e| NotRun::Failed(e.to_string()))?;
    let vars = PeerVars {
        prefix: prefix.clone(),
        peers_dir: ctx.peers_dir.clone(),
        listen_port: port,
        upstream: ctx.upstream.to_string(),
        redis_host: ctx.redis.ip().to_string(),
        redis_port: ctx.redis.port(),
        route_header: "jobid".into(),
        route_prefix: String::new(),
        keepalive: 1024,
        redis_pool: 1024,
        cpus: ctx.gateway_cpus.clone(),
        nofile: ctx.nofile,
        tls: None,
    };
    let conf = peers::render(&peers_copy, template, &vars).map_err(NotRun::Failed)?;
    let listen: SocketAddr = ([127, 0, 0, 1], port).into();
    let (proc, command) = systems::spawn_nginx("nginx", nginx, &prefix, &conf, listen)?;
    Ok(Started {
        proc,
        addr: listen,
        command: format!("{command} (config: {template})"),
        admin: None,
    })
}

/// `peers/haproxy-h2.cfg` with this run's values; an unknown placeholder is an error.
pub fn render_haproxy(
    peers_dir: &Path,
    cpu: usize,
    nofile: u64,
    port: u16,
    upstream: SocketAddr,
    hostile: Option<SocketAddr>,
) -> Result<String, String> {
    let path = peers_dir.join("haproxy-h2.cfg");
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
    // Without a hostile target its backend points at a port nothing listens on; no case
    // sends it a call.
    let hostile = hostile.map_or_else(|| "127.0.0.1:1".to_string(), |a| a.to_string());
    let text = text
        .replace("{{CPU}}", &cpu.to_string())
        .replace(
            "{{MAXCONN}}",
            &nofile.saturating_sub(1000).clamp(1000, 20_000).to_string(),
        )
        .replace("{{NOFILE}}", &nofile.to_string())
        .replace("{{LISTEN_PORT}}", &port.to_string())
        .replace("{{UPSTREAM}}", &upstream.to_string())
        .replace("{{HOSTILE}}", &hostile);
    if let Some(i) = text.find("{{") {
        let name: String = text[i..].chars().take(40).collect();
        return Err(format!("haproxy-h2.cfg: unknown placeholder {name}"));
    }
    Ok(text)
}

fn start_haproxy(ctx: &Ctx, port: u16, hostile: Option<SocketAddr>) -> Result<Started, NotRun> {
    let haproxy = systems::which("haproxy")
        .ok_or_else(|| NotRun::Skipped("haproxy not found: apt-get install -y haproxy".into()))?;
    let cpu = ctx.gateway_cpus.first().copied().unwrap_or(0);
    let conf = render_haproxy(&ctx.peers_dir, cpu, ctx.nofile, port, ctx.upstream, hostile)
        .map_err(NotRun::Failed)?;
    let dir = ctx.tmp.join("haproxy");
    std::fs::create_dir_all(&dir).map_err(|e| NotRun::Failed(e.to_string()))?;
    let conf_path = dir.join("haproxy.cfg");
    std::fs::write(&conf_path, conf).map_err(|e| NotRun::Failed(e.to_string()))?;
    // -db: foreground, no daemon; the thread pins itself (cpu-map).
    let cmd = vec![
        haproxy,
        "-db".into(),
        "-f".into(),
        conf_path.display().to_string(),
    ];
    let listen: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut proc =
        Proc::spawn("haproxy", None, &cmd, &dir.join("haproxy.log")).map_err(NotRun::Failed)?;
    proc.wait_port(listen, Duration::from_secs(10))
        .map_err(|e| NotRun::Failed(format!("{e}; log: {}", proc.log_tail(10))))?;
    Ok(Started {
        proc,
        addr: listen,
        command: format!("{} (config: haproxy-h2.cfg)", cmd.join(" ")),
        admin: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haproxy_config_renders_without_leftovers() {
        let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/peers"));
        let up: SocketAddr = "127.0.0.1:17001".parse().unwrap();
        let text = render_haproxy(&dir, 1, 20_000, 17010, up, None).unwrap();
        assert!(text.contains("bind 127.0.0.1:17010 proto h2"));
        assert!(text.contains("cpu-map 1/1 1"));
        assert!(text.contains("server echo 127.0.0.1:17001 proto h2"));
    }

    #[test]
    fn finds_ringways_admin_address() {
        let log = "ringway: shard 0 on core 1\nringway: admin on http://127.0.0.1:20001/\n";
        assert_eq!(admin_addr(log), Some("127.0.0.1:20001".parse().unwrap()));
    }
}
