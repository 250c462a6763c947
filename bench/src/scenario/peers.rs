//! The nginx and HAProxy peers' configs: templates in `bench/peers/`, rendered with this run's
//! ports, paths and core pinning.
//!
//! Owns: `{{NAME}}` substitution and the per-run values. It must not start a peer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The values a template may use.
pub struct PeerVars {
    pub prefix: PathBuf,
    pub peers_dir: PathBuf,
    pub listen_port: u16,
    pub upstream: String,
    pub redis_host: String,
    pub redis_port: u16,
    pub route_header: String,
    pub route_prefix: String,
    /// nginx upstream `keepalive N` (idle connections kept per worker).
    pub keepalive: usize,
    /// Lua `setkeepalive(_, N)`: idle Redis sockets kept per worker.
    pub redis_pool: usize,
    /// Cores the nginx workers are pinned to, one worker per core.
    pub cpus: Vec<usize>,
    /// `worker_rlimit_nofile`.
    pub nofile: u64,
    /// The TLS systems' files and upstream; `None` when the run has no TLS system.
    pub tls: Option<PeerTls>,
}

/// What the TLS templates use: the run's PKI files and the echo upstream's TLS listener.
pub struct PeerTls {
    /// `{{TLS_CERT}}`, `{{TLS_KEY}}`: the gateway listener's certificate and key (PEM);
    /// `{{TLS_BUNDLE}}`: both in one file (HAProxy's `crt`).
    pub cert: PathBuf,
    pub key: PathBuf,
    pub bundle: PathBuf,
    /// `{{TLS_CA}}`: the CA the upstream's certificate chains to.
    pub ca: PathBuf,
    /// `{{UPSTREAM_TLS}}`: the echo upstream's TLS listener, host:port.
    pub upstream: String,
}

/// `worker_cpu_affinity` masks: one per worker, bit i = core i (nginx writes the lowest
/// core rightmost).
pub fn affinity_masks(cpus: &[usize]) -> String {
    let width = cpus.iter().max().map(|m| m + 1).unwrap_or(1);
    cpus.iter()
        .map(|&c| {
            (0..width)
                .rev()
                .map(|i| if i == c { '1' } else { '0' })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// HAProxy `cpu-map` lines: thread i (1-based) of process 1 on the i-th gateway core.
pub fn haproxy_cpu_map(cpus: &[usize]) -> String {
    cpus.iter()
        .enumerate()
        .map(|(i, c)| format!("    cpu-map 1/{} {c}", i + 1))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Render `bench/peers/<template>` with `vars`; unknown `{{NAME}}`s are an error.
pub fn render(peers_dir: &Path, template: &str, vars: &PeerVars) -> Result<String, String> {
    let read = |name: &str| {
        std::fs::read_to_string(peers_dir.join(name))
            .map_err(|e| format!("read {}: {e}", peers_dir.join(name).display()))
    };
    let mut map = BTreeMap::new();
    map.insert("WORKERS", vars.cpus.len().max(1).to_string());
    map.insert("CPU_AFFINITY", affinity_masks(&vars.cpus));
    map.insert("NOFILE", vars.nofile.to_string());
    map.insert("PREFIX", vars.prefix.display().to_string());
    map.insert("PEERS_DIR", vars.peers_dir.display().to_string());
    map.insert("LISTEN_PORT", vars.listen_port.to_string());
    map.insert("UPSTREAM", vars.upstream.clone());
    map.insert("REDIS_HOST", vars.redis_host.clone());
    map.insert("REDIS_PORT", vars.redis_port.to_string());
    map.insert("ROUTE_HEADER", vars.route_header.clone());
    map.insert("ROUTE_PREFIX", vars.route_prefix.clone());
    map.insert("KEEPALIVE", vars.keepalive.to_string());
    map.insert("REDIS_POOL", vars.redis_pool.to_string());
    map.insert("HAPROXY_CPU_MAP", haproxy_cpu_map(&vars.cpus));
    if let Some(t) = &vars.tls {
        map.insert("TLS_CERT", t.cert.display().to_string());
        map.insert("TLS_KEY", t.key.display().to_string());
        map.insert("TLS_BUNDLE", t.bundle.display().to_string());
        map.insert("TLS_CA", t.ca.display().to_string());
        map.insert("UPSTREAM_TLS", t.upstream.clone());
    }
    let mut text = read(template)?
        .replace("{{COMMON}}", &read("nginx-common.inc")?)
        .replace("{{HTTP_COMMON}}", &read("nginx-http-common.inc")?);
    for (k, v) in &map {
        text = text.replace(&format!("{{{{{k}}}}}"), v);
    }
    if let Some(i) = text.find("{{") {
        let name: String = text[i..].chars().take(40).collect();
        return Err(format!("{template}: unknown placeholder {name}"));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_put_core_zero_rightmost() {
        assert_eq!(affinity_masks(&[1]), "10");
        assert_eq!(affinity_masks(&[0]), "1");
        assert_eq!(affinity_masks(&[2, 3]), "0100 1000");
    }

    #[test]
    fn every_template_renders_without_leftovers() {
        let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/peers"));
        let vars = PeerVars {
            prefix: "/tmp/x".into(),
            peers_dir: dir.clone(),
            listen_port: 17010,
            upstream: "127.0.0.1:17001".into(),
            redis_host: "127.0.0.1".into(),
            redis_port: 17000,
            route_header: "jobid".into(),
            route_prefix: String::new(),
            keepalive: 1024,
            redis_pool: 1024,
            cpus: vec![1],
            nofile: 20000,
            tls: Some(PeerTls {
                cert: "/tmp/x/gateway.pem".into(),
                key: "/tmp/x/gateway.key".into(),
                bundle: "/tmp/x/gateway-bundle.pem".into(),
                ca: "/tmp/x/ca.pem".into(),
                upstream: "127.0.0.1:17002".into(),
            }),
        };
        for t in [
            "nginx-grpc.conf",
            "nginx-lua-pooled.conf",
            "nginx-lua-short.conf",
        ] {
            let text = render(&dir, t, &vars).unwrap();
            assert!(text.contains("listen 127.0.0.1:17010 http2;"), "{t}");
        }
        let text = render(&dir, "haproxy-grpc.cfg", &vars).unwrap();
        assert!(text.contains("bind 127.0.0.1:17010 proto h2"));
        assert!(text.contains("cpu-map 1/1 1") && text.contains("nbthread 1"));
        let text = render(&dir, "nginx-grpc-tls.conf", &vars).unwrap();
        assert!(text.contains("listen 127.0.0.1:17010 ssl http2;"));
        assert!(text.contains("grpc_pass grpcs://echo_tls;") && text.contains("127.0.0.1:17002"));
        let text = render(&dir, "haproxy-tls.cfg", &vars).unwrap();
        assert!(text.contains("bind 127.0.0.1:17010 ssl crt /tmp/x/gateway-bundle.pem alpn h2"));
        assert!(text.contains("server echo 127.0.0.1:17002 ssl verify required"));
        let text = render(&dir, "haproxy-lua-tls.cfg", &vars).unwrap();
        assert!(text.contains("bind 127.0.0.1:17010 ssl crt /tmp/x/gateway-bundle.pem alpn h2"));
        assert!(text.contains("server routed 0.0.0.0:0 ssl verify required ca-file /tmp/x/ca.pem"));
        assert!(
            text.contains("setenv ROUTE_TLS 1") && text.contains("http-request lua.redis_route")
        );
        let text = render(&dir, "haproxy-tcp.cfg", &vars).unwrap();
        assert!(text.contains("mode tcp") && text.contains("bind 127.0.0.1:17010\n"));
        assert!(text.contains("server echo 127.0.0.1:17001\n") && !text.contains("proto h2"));
        let text = render(&dir, "haproxy-tcp-tls.cfg", &vars).unwrap();
        assert!(text.contains("mode tcp"));
        assert!(text.contains("bind 127.0.0.1:17010 ssl crt /tmp/x/gateway-bundle.pem alpn h2"));
        assert!(text.contains("server echo 127.0.0.1:17002 ssl verify required"));
    }

    #[test]
    fn a_tls_template_without_tls_files_is_an_error() {
        let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/peers"));
        let vars = PeerVars {
            prefix: "/tmp/x".into(),
            peers_dir: dir.clone(),
            listen_port: 17010,
            upstream: "127.0.0.1:17001".into(),
            redis_host: "127.0.0.1".into(),
            redis_port: 17000,
            route_header: "jobid".into(),
            route_prefix: String::new(),
            keepalive: 1024,
            redis_pool: 1024,
            cpus: vec![1],
            nofile: 20000,
            tls: None,
        };
        let e = render(&dir, "haproxy-tls.cfg", &vars).unwrap_err();
        assert!(e.contains("unknown placeholder"), "{e}");
    }
}
