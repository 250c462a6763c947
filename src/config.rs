//! Typed configuration: the TOML file, the command-line flags that override it, and validation.
//!
//! Every field states its unit in its name (`_ms`, `_bytes`), its default, and its scope: *per
//! process*, *per shard* or *per connection*. A bad file is reported with the dotted path of the
//! field and the problem (`redis.lookup_timeout_ms: invalid type: string "soon", expected u64`).
//! Nothing here touches sockets or threads.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The whole configuration. Scope: per process; shards get a shared read-only copy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Service address every shard listens on (`SO_REUSEPORT`). Port 0 picks one free port that
    /// all shards share. Default `0.0.0.0:7070`: below the kernel's ephemeral range
    /// (32768–60999), so an outgoing connection can never occupy it.
    pub listen: SocketAddr,
    /// Number of shards (threads, each pinned to one core). 0 means one per available core.
    pub shards: usize,
    /// Admin address (metrics, health, drain), served by its own thread, never by a shard.
    /// Default `127.0.0.1:9901`: loopback only, below the ephemeral range. Empty disables it.
    pub admin: String,
    pub route: RouteConfig,
    pub redis: RedisConfig,
    pub upstream: UpstreamConfig,
    pub downstream: DownstreamConfig,
    pub access_log: AccessLogConfig,
}

/// The optional access log: one JSON line per call.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLogConfig {
    /// Where lines go: empty = off (the default), `-` = stdout, else a file opened for append.
    pub path: String,
    /// Fraction of calls logged, in (0, 1]. Default 1.0 (every call). 0.01 logs one in 100.
    pub sample: f64,
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        AccessLogConfig {
            path: String::new(),
            sample: 1.0,
        }
    }
}

/// How a call's target is found.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RouteConfig {
    /// Request header whose value is the routing key. Default `jobid`.
    pub header: String,
    /// Prefix put before the header's value to form the Redis key. Default empty.
    pub key_prefix: String,
}

/// The shard's Redis connection (one per shard).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `host:port` of the Redis server. Default `127.0.0.1:6379`.
    pub addr: String,
    /// How long one route lookup may wait for its reply before the call fails with UNAVAILABLE.
    /// Default 1000 ms. Also the stall detector's period: a connection with a lookup pending for a
    /// whole period and no reply at all is closed and redialed.
    pub lookup_timeout_ms: u64,
    /// How long dialing Redis may take. Default 1000 ms.
    pub connect_timeout_ms: u64,
    /// First reconnect delay after the connection drops; doubles per failure, with jitter.
    /// Default 50 ms.
    pub reconnect_backoff_initial_ms: u64,
    /// Cap of the reconnect delay. Default 1000 ms: routing stops while Redis is away, so retry
    /// often; one connection per shard cannot make a storm.
    pub reconnect_backoff_max_ms: u64,
}

/// Connections from ringway to targets. Pools are per shard and per target.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// How long dialing a target (TCP connect and HTTP/2 preface) may take before the call fails
    /// with UNAVAILABLE. Default 1000 ms.
    pub dial_timeout_ms: u64,
    /// Most HTTP/2 connections per target, per shard. A new one opens only when every open one
    /// carries as many streams as the peer's `MAX_CONCURRENT_STREAMS`. Default 4.
    pub max_connections_per_target: usize,
    /// HTTP/2 stream window ringway advertises to targets (response bytes in flight per call).
    /// Default 2 MiB: the spec's 64 KiB caps a 1 ms-RTT stream at 64 MB/s.
    pub stream_window_bytes: u32,
    /// HTTP/2 connection window advertised to targets. Default 8 MiB (four full streams).
    pub connection_window_bytes: u32,
}

/// Connections from clients to ringway.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DownstreamConfig {
    /// `MAX_CONCURRENT_STREAMS` advertised to each client connection. Default 1024.
    pub max_concurrent_streams: u32,
    /// HTTP/2 stream window advertised to clients (request bytes in flight per call).
    /// Default 2 MiB.
    pub stream_window_bytes: u32,
    /// HTTP/2 connection window advertised to clients. Default 8 MiB.
    pub connection_window_bytes: u32,
    /// Largest header list (HPACK-decoded) accepted per request. Default 16 KiB, as grpc-go.
    pub max_header_list_bytes: u32,
    /// `listen(2)` backlog of each shard's socket. Default 1024 (the kernel caps it at
    /// `net.core.somaxconn`).
    pub listen_backlog: i32,
    /// Most client connections open at once, per process (each shard gets an equal share).
    /// Past it, new connections are closed at once and counted as refused. Default 10000.
    pub max_connections: usize,
    /// File descriptors kept back from client connections for Redis, upstreams, the admin port
    /// and logs, per process. The effective cap is
    /// `min(max_connections, RLIMIT_NOFILE - fd_reserve)`. Default 256.
    pub fd_reserve: usize,
    /// On SIGTERM/SIGINT or `POST /drain`: how long calls in flight may take to finish after
    /// the GOAWAY before the process exits anyway. Default 30000 ms.
    pub drain_timeout_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 7070)),
            shards: 0,
            admin: "127.0.0.1:9901".into(),
            route: RouteConfig::default(),
            redis: RedisConfig::default(),
            upstream: UpstreamConfig::default(),
            downstream: DownstreamConfig::default(),
            access_log: AccessLogConfig::default(),
        }
    }
}

impl Default for RouteConfig {
    fn default() -> Self {
        RouteConfig {
            header: "jobid".into(),
            key_prefix: String::new(),
        }
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            addr: "127.0.0.1:6379".into(),
            lookup_timeout_ms: 1000,
            connect_timeout_ms: 1000,
            reconnect_backoff_initial_ms: 50,
            reconnect_backoff_max_ms: 1000,
        }
    }
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            dial_timeout_ms: 1000,
            max_connections_per_target: 4,
            stream_window_bytes: 2 << 20,
            connection_window_bytes: 8 << 20,
        }
    }
}

impl Default for DownstreamConfig {
    fn default() -> Self {
        DownstreamConfig {
            max_concurrent_streams: 1024,
            stream_window_bytes: 2 << 20,
            connection_window_bytes: 8 << 20,
            max_header_list_bytes: 16 << 10,
            listen_backlog: 1024,
            max_connections: 10_000,
            fd_reserve: 256,
            drain_timeout_ms: 30_000,
        }
    }
}

/// A configuration problem: which field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    /// Dotted path of the field (`redis.lookup_timeout_ms`), or empty when the file itself is bad.
    pub field: String,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.problem)
        } else {
            write!(f, "field `{}`: {}", self.field, self.problem)
        }
    }
}

impl std::error::Error for ConfigError {}

fn bad(field: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        problem: problem.into(),
    }
}

/// HTTP/2's largest legal window (RFC 9113 §6.9.1).
const MAX_WINDOW: u32 = (1 << 31) - 1;

impl Config {
    /// Parses a TOML document; unknown fields are errors (a typo must not pass silently).
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::parse(text).map_err(|e| bad("", e.to_string()))?;
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            let inner = e.into_inner();
            // toml's message carries the line and a caret; keep just its last line, the problem.
            let message = inner.message().trim().to_string();
            let line = inner
                .span()
                .map(|span| format!(" (line {})", line_of(text, span.start)))
                .unwrap_or_default();
            bad(
                if field == "." { "" } else { &field },
                format!("{message}{line}"),
            )
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and parses a file; errors name the file as well as the field.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad("", format!("cannot read {}: {e}", path.display())))?;
        Config::from_toml(&text).map_err(|mut e| {
            e.problem = format!("{} ({})", e.problem, path.display());
            e
        })
    }

    /// Checks what types alone cannot: ranges and syntax of names and addresses.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if http::HeaderName::from_bytes(self.route.header.as_bytes()).is_err()
            || self.route.header.starts_with(':')
        {
            return Err(bad(
                "route.header",
                format!("`{}` is not a valid header name", self.route.header),
            ));
        }
        if self.route.header.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad(
                "route.header",
                format!(
                    "`{}` has upper-case letters; HTTP/2 header names are lower-case",
                    self.route.header
                ),
            ));
        }
        if split_host_port(&self.redis.addr).is_none() {
            return Err(bad(
                "redis.addr",
                format!("`{}` is not host:port", self.redis.addr),
            ));
        }
        for (field, value) in [
            ("redis.lookup_timeout_ms", self.redis.lookup_timeout_ms),
            ("redis.connect_timeout_ms", self.redis.connect_timeout_ms),
            (
                "redis.reconnect_backoff_initial_ms",
                self.redis.reconnect_backoff_initial_ms,
            ),
            (
                "redis.reconnect_backoff_max_ms",
                self.redis.reconnect_backoff_max_ms,
            ),
            ("upstream.dial_timeout_ms", self.upstream.dial_timeout_ms),
        ] {
            if value == 0 {
                return Err(bad(field, "must be at least 1"));
            }
        }
        if self.redis.reconnect_backoff_max_ms < self.redis.reconnect_backoff_initial_ms {
            return Err(bad(
                "redis.reconnect_backoff_max_ms",
                "must not be below redis.reconnect_backoff_initial_ms",
            ));
        }
        if self.upstream.max_connections_per_target == 0 {
            return Err(bad(
                "upstream.max_connections_per_target",
                "must be at least 1",
            ));
        }
        if self.downstream.max_concurrent_streams == 0 {
            return Err(bad(
                "downstream.max_concurrent_streams",
                "must be at least 1",
            ));
        }
        for (field, value) in [
            (
                "upstream.stream_window_bytes",
                self.upstream.stream_window_bytes,
            ),
            (
                "upstream.connection_window_bytes",
                self.upstream.connection_window_bytes,
            ),
            (
                "downstream.stream_window_bytes",
                self.downstream.stream_window_bytes,
            ),
            (
                "downstream.connection_window_bytes",
                self.downstream.connection_window_bytes,
            ),
        ] {
            if !(65_535..=MAX_WINDOW).contains(&value) {
                return Err(bad(
                    field,
                    format!("{value} is outside HTTP/2's window range 65535..={MAX_WINDOW}"),
                ));
            }
        }
        if !self.admin.is_empty() && self.admin.parse::<SocketAddr>().is_err() {
            return Err(bad(
                "admin",
                format!("`{}` is not ip:port (or empty to disable)", self.admin),
            ));
        }
        if self.downstream.max_connections == 0 {
            return Err(bad("downstream.max_connections", "must be at least 1"));
        }
        if !(self.access_log.sample > 0.0 && self.access_log.sample <= 1.0) {
            return Err(bad("access_log.sample", "must be in (0, 1]"));
        }
        if self.downstream.listen_backlog < 1 {
            return Err(bad("downstream.listen_backlog", "must be at least 1"));
        }
        Ok(())
    }

    /// The number of shards to start: `shards`, or one per available core when it is 0.
    pub fn shard_count(&self) -> usize {
        if self.shards > 0 {
            self.shards
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }

    /// The admin address, or `None` when disabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.parse().ok()
    }

    pub fn lookup_timeout(&self) -> Duration {
        Duration::from_millis(self.redis.lookup_timeout_ms)
    }

    pub fn dial_timeout(&self) -> Duration {
        Duration::from_millis(self.upstream.dial_timeout_ms)
    }

    /// The configuration as TOML, for `/config` and the startup log.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

/// Splits `host:port` (or `[v6]:port`) into its parts; `None` when it is not of that form or the
/// port is not 1..=65535.
pub fn split_host_port(s: &str) -> Option<(&str, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|&p| p != 0)?;
    let host = match host.strip_prefix('[') {
        Some(inner) => inner.strip_suffix(']')?,
        None if host.contains(':') => return None,
        None => host,
    };
    let valid = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'));
    valid.then_some((host, port))
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(Config::from_toml("").unwrap(), Config::default());
    }

    #[test]
    fn wrong_type_names_the_field() {
        let e = Config::from_toml("[redis]\nlookup_timeout_ms = \"soon\"\n").unwrap_err();
        assert_eq!(e.field, "redis.lookup_timeout_ms");
        assert!(e.problem.contains("line 2"), "{e}");
    }

    #[test]
    fn unknown_field_is_an_error() {
        let e = Config::from_toml("[upstream]\nmax_conections_per_target = 3\n").unwrap_err();
        assert!(e.to_string().contains("max_conections_per_target"), "{e}");
    }

    #[test]
    fn ranges_are_checked() {
        let e = Config::from_toml("[upstream]\nstream_window_bytes = 10\n").unwrap_err();
        assert_eq!(e.field, "upstream.stream_window_bytes");
        let e = Config::from_toml("[route]\nheader = \"Job Id\"\n").unwrap_err();
        assert_eq!(e.field, "route.header");
        let e = Config::from_toml("[redis]\naddr = \"localhost\"\n").unwrap_err();
        assert_eq!(e.field, "redis.addr");
    }

    #[test]
    fn host_port_forms() {
        assert_eq!(split_host_port("10.0.0.1:80"), Some(("10.0.0.1", 80)));
        assert_eq!(split_host_port("[::1]:8080"), Some(("::1", 8080)));
        assert_eq!(split_host_port("svc-a.ns:50051"), Some(("svc-a.ns", 50051)));
        assert_eq!(split_host_port("::1:80"), None);
        assert_eq!(split_host_port("host:0"), None);
        assert_eq!(split_host_port("host:99999"), None);
        assert_eq!(split_host_port(":80"), None);
        assert_eq!(split_host_port("a b:80"), None);
    }
}
