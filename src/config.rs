//! Typed configuration: the TOML file, the command-line flags that override it, and validation.
//!
//! Every field states its unit in its name (`_ms`, `_bytes`), its default, and its scope: *per
//! process*, *per shard* or *per connection*. A bad file is reported with the dotted path of the
//! field and the problem (`redis.lookup_timeout_ms: invalid type: string "soon", expected u64`).
//! Nothing here touches sockets or threads.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize, Serializer};

/// The whole configuration. Scope: per process; shards get a shared read-only copy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Starting point for every field the file does not set: `""` (the defaults documented
    /// here), `"lan"` (short timeouts, fast failure detection, one warm connection per target)
    /// or `"wan"` (long RTT: bigger windows, patient dials, pings that keep NAT and load
    /// balancer state alive). See [`Config::preset`].
    pub preset: String,
    /// Plaintext (h2c) service address every shard listens on (`SO_REUSEPORT`). Port 0 picks
    /// one free port that all shards share. Default `0.0.0.0:7070`: below the kernel's
    /// ephemeral range (32768–60999), so an outgoing connection can never occupy it. `"off"`:
    /// no plaintext listener (then `downstream.tls.listen` must be set).
    pub listen: Listen,
    /// Number of shards (threads, each pinned to one core). 0 means one per available core.
    pub shards: usize,
    /// How the shards do their I/O: `"epoll"` (default; monoio's legacy driver, readiness and
    /// non-blocking system calls) or `"io_uring"` (completions; epoll where the kernel has no
    /// usable io_uring). Fixed at start. See the README, Performance, "io_uring or epoll": on
    /// the 2-core VM of `bench/` epoll spent less CPU per call at 64 calls in flight and in an
    /// open loop (every pair of 2026-12-03) and did more calls/s at 1–4 in flight.
    pub io_driver: IoDriver,
    /// Admin address (metrics, health, drain), served by its own thread, never by a shard.
    /// Default `127.0.0.1:9901`: loopback only, below the ephemeral range. Empty disables it.
    pub admin: String,
    /// A Unix socket path where ringway waits for its successor in a binary upgrade
    /// (`ringway --upgrade-from PATH`): it hands over its listening sockets, then drains.
    /// Empty (default): no upgrades.
    pub upgrade_socket: String,
    pub route: RouteConfig,
    pub redis: RedisConfig,
    pub upstream: UpstreamConfig,
    pub downstream: DownstreamConfig,
    pub access_log: AccessLogConfig,
}

/// A listen address, or `"off"`. Written as a string in TOML and on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Listen(pub Option<SocketAddr>);

impl Listen {
    pub const OFF: Listen = Listen(None);

    pub fn addr(&self) -> Option<SocketAddr> {
        self.0
    }
}

impl std::str::FromStr for Listen {
    type Err = String;

    fn from_str(s: &str) -> Result<Listen, String> {
        if s == "off" {
            return Ok(Listen::OFF);
        }
        s.parse()
            .map(|addr| Listen(Some(addr)))
            .map_err(|_| format!("`{s}` is not ip:port or \"off\""))
    }
}

impl TryFrom<String> for Listen {
    type Error = String;

    fn try_from(s: String) -> Result<Listen, String> {
        s.parse()
    }
}

impl From<Listen> for String {
    fn from(l: Listen) -> String {
        l.to_string()
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(addr) => write!(f, "{addr}"),
            None => f.write_str("off"),
        }
    }
}

/// TLS for clients (`[downstream.tls]`): a second listener per shard, next to the plaintext
/// one. Certificates and keys are PEM files, read at start and again on SIGHUP or
/// `POST /reload` (a bad file keeps the old ones).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DownstreamTlsConfig {
    /// TLS service address every shard listens on (`SO_REUSEPORT`); `"off"` (the default):
    /// no TLS listener. TLS 1.2 and 1.3, ALPN `h2` only.
    pub listen: Listen,
    /// The server certificate chain, PEM, leaf first. Required with `listen`.
    pub cert: String,
    /// The server's private key, PEM (PKCS#8, PKCS#1 or SEC1). Required with `listen`.
    pub key: String,
    /// CA certificates (PEM) that client certificates must chain to. Set: every client must
    /// present one (mTLS); empty (the default): no client certificates asked for.
    pub client_ca: String,
    /// Request header that carries the verified client identity (its certificate's subject
    /// CN, else its first SAN) to targets; empty (the default): not forwarded. A header of
    /// this name sent by a client is always removed, certificate or not.
    pub identity_header: String,
}

impl Default for DownstreamTlsConfig {
    fn default() -> Self {
        DownstreamTlsConfig {
            listen: Listen::OFF,
            cert: String::new(),
            key: String::new(),
            client_ca: String::new(),
            identity_header: String::new(),
        }
    }
}

/// TLS to targets (`[upstream.tls]`), used for route values written `https://host:port`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamTlsConfig {
    /// CA certificates (PEM) that targets' certificates must chain to; empty (the default):
    /// the Mozilla roots compiled in (webpki-roots).
    pub ca: String,
    /// Client certificate chain (PEM) presented to targets that ask (mTLS); empty: none.
    pub cert: String,
    /// Its private key (PEM); set together with `cert`.
    pub key: String,
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
    /// Cache routes per shard, kept coherent by Redis client tracking (RESP3): a `SET` is seen
    /// by the first call after its invalidation arrives. With a RESP2 server, entries live
    /// `cache_ttl_ms`. Default false: every call does a GET.
    pub cache: bool,
    /// Most cached routes per shard. Default 100000.
    pub cache_max_entries: usize,
    /// Longest a cached route lives even without an invalidation. Default 60000 ms.
    pub cache_ttl_ms: u64,
    /// How long "no such key" is cached. Default 1000 ms.
    pub negative_ttl_ms: u64,
}

/// The shard's Redis connection (one per shard): where it goes, how it logs in, which database.
///
/// # Address, credentials and database
///
/// `addr` is `host:port` or a URL, `redis://[user[:password]@]host[:port][/db]` (port 6379
/// when left out; user and password percent-decoded; `rediss://` for TLS, see
/// [`RedisTlsConfig`]). Each of user, password and database may be given once, in the URL
/// *or* in its own field below;
/// giving one in both is an error naming the field, and so is more than one password source
/// (URL, `password`, `password_file`, `password_env`). A user needs a password; a password
/// without a user logs in as the `default` user (what `requirepass` sets). The resolved target
/// is [`crate::redis::RedisTarget`].
///
/// The password is never shown: [`Secret`] and [`RedisAddr`] print `<redacted>` in Debug,
/// Display and the TOML of `/config`.
///
/// # Sentinel
///
/// With Redis Sentinel the primary is asked of the sentinels at every connect
/// ([`crate::redis::sentinel`]). Say so with a URL in `addr`,
/// `redis+sentinel://[user[:password]@]host:port[,host:port...]/SERVICE[/db]` (sentinel port
/// 26379 when left out; `rediss+sentinel://` for TLS to the sentinels and the data nodes), or
/// with the fields: `mode = "sentinel"`, `sentinels` and `service_name` (plaintext; `addr`
/// must then be left out). The user, password and database, from the URL or the fields, are
/// the data nodes'; a sentinel that wants a login of its own gets `sentinel_user` and
/// `sentinel_password`.
///
/// # Cluster
///
/// With Redis Cluster each lookup goes to the primary owning its key's slot
/// ([`crate::redis::cluster`]). Say so with `redis+cluster://[user:password@]host:port[,...]`
/// (`rediss+cluster://` for TLS) or with `mode = "cluster"` and `nodes`. A cluster has only
/// database 0, so no database may be given.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `host:port`, `redis://[user[:password]@]host[:port][/db]` or
    /// `redis+sentinel://[user[:password]@]host:port[,host:port...]/SERVICE[/db]`. Default
    /// `127.0.0.1:6379`.
    pub addr: RedisAddr,
    /// `single` (the default): `addr` is the one Redis. `sentinel`: the primary of
    /// `service_name` is asked of `sentinels` (implied by a `redis+sentinel://` addr).
    /// `cluster`: Redis Cluster, found from `nodes` (implied by a `redis+cluster://` addr).
    pub mode: RedisMode,
    /// Seed nodes (`host:port`) of a Redis Cluster, in `mode = "cluster"`: each shard asks
    /// them (and the primaries it knows) for the slot map. Any node will do; a few, so that
    /// one down does not stop a start. Default none.
    pub nodes: Vec<String>,
    /// Sentinels (`host:port`) asked in turn for the primary, in `mode = "sentinel"`; the one
    /// that answers moves to the front, per shard. Default none.
    pub sentinels: Vec<String>,
    /// The name the sentinels monitor the primary under (`sentinel monitor <name> ...`), in
    /// `mode = "sentinel"`. Default none.
    pub service_name: String,
    /// ACL user to log in to the sentinels as; needs `sentinel_password`. Default none.
    pub sentinel_user: Option<String>,
    /// Password of the sentinels (`requirepass` in sentinel.conf), when they want one; the data
    /// nodes' password is `password` (or the URL's). Default none: no login to sentinels.
    pub sentinel_password: Option<Secret>,
    /// ACL user to log in as (Redis 6+). Default none: the `default` user.
    pub user: Option<String>,
    /// The password, inline. Prefer `password_file` or `password_env`: a config file is often
    /// readable by more people than a secret should be.
    pub password: Option<Secret>,
    /// A file holding the password (trailing newlines removed), e.g. a mounted Kubernetes
    /// secret. Read when the config is loaded (an unreadable file is a config error) and
    /// again at every reconnect, so a rotated secret is picked up without a restart.
    pub password_file: Option<PathBuf>,
    /// The name of an environment variable holding the password.
    pub password_env: Option<String>,
    /// Database selected (`SELECT`) after login. Default none: database 0.
    pub db: Option<u32>,
    /// How long one route lookup may wait for its reply before the call fails with UNAVAILABLE.
    /// Default 1000 ms. Also the stall detector's period: a connection with a lookup pending for a
    /// whole period and no reply at all is closed and redialed.
    pub lookup_timeout_ms: u64,
    /// How long dialing Redis may take; also the limit on each setup command (`HELLO`, `AUTH`,
    /// `SELECT`, `CLIENT TRACKING`). Default 1000 ms.
    pub connect_timeout_ms: u64,
    /// First reconnect delay after the connection drops or a connection attempt fails (a
    /// refused login too); doubles per failure, with jitter. Default 50 ms.
    pub reconnect_backoff_initial_ms: u64,
    /// Cap of the reconnect delay. Default 1000 ms: routing stops while Redis is away, so retry
    /// often; one connection per shard cannot make a storm, and a wrong password costs Redis
    /// one refused login per shard per second.
    pub reconnect_backoff_max_ms: u64,
    /// TLS to Redis, used when `addr` is `rediss://`.
    pub tls: RedisTlsConfig,
}

/// The shards' I/O driver (`io_driver`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
pub enum IoDriver {
    /// io_uring (completions), falling back to epoll where the kernel has no usable io_uring.
    #[serde(rename = "io_uring")]
    #[value(name = "io_uring")]
    IoUring,
    /// epoll (readiness), monoio's legacy driver.
    #[default]
    #[serde(rename = "epoll")]
    #[value(name = "epoll")]
    Epoll,
}

/// How the shard finds its Redis: one server, or the primary Redis Sentinel names.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RedisMode {
    #[default]
    Single,
    Sentinel,
    Cluster,
}

/// TLS to Redis (`[redis.tls]`), used when `redis.addr` is `rediss://` and ignored
/// otherwise. The server name checked is the URL's host: a DNS name is sent as SNI and checked
/// against the certificate's DNS SANs; an IP address sends no SNI and is checked against its
/// IP SANs. The files are read at start (a bad one fails it, naming the field), and before
/// every reconnect they are read again if their modification time or length changed, so a
/// renewed certificate is used by the next connection; SIGHUP and `POST /reload` do not touch
/// them. Per shard, TLS sessions are kept across reconnects (resumption).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RedisTlsConfig {
    /// CA certificates (PEM) Redis's certificate must chain to (`--redis-ca`); empty (the
    /// default): the Mozilla roots compiled in (webpki-roots).
    pub ca: String,
    /// Client certificate chain (PEM) for a Redis with `tls-auth-clients yes`; empty: none.
    pub cert: String,
    /// Its private key (PEM); set together with `cert`.
    pub key: String,
}

/// A value that must not be shown: Debug, Display and Serialize print `<redacted>`.
/// [`Secret::expose`] is the one way to the value; it is called where the value goes on the
/// wire to Redis, nowhere else.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

/// What a redacted value prints as.
pub const REDACTED: &str = "<redacted>";

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the wire. Never format it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

/// `redis.addr` as given: `host:port` or a `redis://` URL that may carry a password. Debug,
/// Display and Serialize show it with the password replaced (`redis://u:<redacted>@h:6379/2`);
/// [`RedisAddr::as_str`] is the text itself, for parsing only.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct RedisAddr(String);

impl RedisAddr {
    pub fn new(addr: impl Into<String>) -> RedisAddr {
        RedisAddr(addr.into())
    }

    /// The address as given, password and all: parse it, never print it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The address with any password replaced by `<redacted>`. Conservative: everything
    /// between the scheme's user and the last `@` goes, as does anything after a `?` or `#`,
    /// so even a malformed URL (an unescaped `/` or `@` in its password) shows nothing secret.
    pub fn redacted(&self) -> String {
        let s = self.0.as_str();
        let (s, cut) = match s.find(['?', '#']) {
            Some(at) => (&s[..at], true),
            None => (s, false),
        };
        let mut out = match s.split_once("://") {
            Some((scheme, rest)) => match rest.rsplit_once('@') {
                Some((userinfo, host)) => match userinfo.split_once(':') {
                    Some((user, _)) => format!("{scheme}://{user}:{REDACTED}@{host}"),
                    None => s.to_string(),
                },
                None => s.to_string(),
            },
            // Not a URL, yet an `@`: whatever precedes it may be a password.
            None => match s.rsplit_once('@') {
                Some((_, host)) => format!("{REDACTED}@{host}"),
                None => s.to_string(),
            },
        };
        if cut {
            out.push_str("?<redacted>");
        }
        out
    }
}

impl fmt::Debug for RedisAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl fmt::Display for RedisAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for RedisAddr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.redacted())
    }
}

impl FromStr for RedisAddr {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<RedisAddr, Self::Err> {
        Ok(RedisAddr::new(s))
    }
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
    /// HTTP/2 stream window ringway advertises to targets: the most response bytes ringway
    /// holds for one call whose client does not read. Default 256 KiB: 1 MiB unary echoes
    /// through loopback ran as fast as with 2 MiB (408 vs 364 calls/s at 1 in flight) and 37%
    /// slower with the spec's 64 KiB (256/s); at 1 ms RTT it allows 256 MB/s per call.
    pub stream_window_bytes: u32,
    /// HTTP/2 connection window advertised to targets. Received DATA is given back to it at
    /// once (each call is held to its stream window instead), so it only needs to cover the
    /// bandwidth-delay product of the connection. Default 8 MiB.
    pub connection_window_bytes: u32,
    /// Fewest connections kept per target, per shard, even when idle. Default 0: a target no
    /// call names any more costs nothing once its connections idle out.
    pub min_connections_per_target: usize,
    /// A new connection is dialed (up to the maximum) only when every open one carries at
    /// least this many streams (or the peer's `MAX_CONCURRENT_STREAMS`, if lower). Default 100.
    pub stream_high_watermark: usize,
    /// When the target's streams fit on one connection fewer at this many per connection, the
    /// least-loaded connection is retired gracefully (down to the minimum). Default 10.
    pub stream_low_watermark: usize,
    /// A connection without streams for this long is closed (down to the minimum).
    /// Default 300000 ms; 0 keeps idle connections forever.
    pub idle_timeout_ms: u64,
    /// Rotate a connection after this long: a new one is dialed first, then the old one stops
    /// taking streams and closes when its calls are done. 0 (default) = never.
    pub max_connection_age_ms: u64,
    /// HTTP/2 PING every this long on a connection (gRPC A8 `keepalive_time`); 0 (default)
    /// = off, as in gRPC clients: a server's ping policy may reject frequent pings.
    pub keepalive_time_ms: u64,
    /// A PING without its ACK after this long closes the connection. Default 20000 ms.
    pub keepalive_timeout_ms: u64,
    /// Also ping connections that carry no calls (A8 `keepalive_without_calls`). Default false.
    pub keepalive_without_calls: bool,
    /// `TCP_KEEPALIVE` idle time on target sockets; 0 = off. Default 60000 ms. Probes then go
    /// every `tcp_keepalive_interval_ms`, 3 of them, before the kernel drops the connection.
    pub tcp_keepalive_time_ms: u64,
    pub tcp_keepalive_interval_ms: u64,
    /// `TCP_USER_TIMEOUT` on target sockets: sent data unacknowledged this long drops the
    /// connection (a peer that vanished without a FIN). 0 = kernel default (~15 min).
    /// Default 30000 ms.
    pub tcp_user_timeout_ms: u64,
    /// First delay before redialing a target whose dial failed; doubles per failure, with
    /// jitter. Calls meanwhile fail fast with UNAVAILABLE. Default 250 ms.
    pub dial_backoff_initial_ms: u64,
    /// Cap of that delay. Default 64000 ms (docs/background.md, "TCP practices", 6).
    pub dial_backoff_max_ms: u64,
    /// After this many consecutive dial failures or keepalive timeouts a target is ejected
    /// (skipped while its route names other targets) until its backoff ends. Default 3.
    pub eject_after_failures: u32,
    /// How often hostname targets are resolved again; connections to addresses that vanished
    /// drain. Default 30000 ms.
    pub dns_refresh_ms: u64,
    /// Request bytes kept until the target answers, so a call the target refused unprocessed
    /// (GOAWAY above its last stream id, or REFUSED_STREAM) can be retried on a fresh
    /// connection. Larger requests are not retried. Default 65536; 0 turns retries off.
    pub retry_buffer_bytes: usize,
    /// Queued output per connection, in bytes, past which ringway stops reading the
    /// connection and its calls wait for room before sending more DATA: what a peer that
    /// does not read can make ringway hold. Default 262144 (256 KiB).
    pub output_buffer_bytes: usize,
    /// A connection with output waiting that writes nothing for this long is closed
    /// (its calls end); 0 = never. Default 30000 ms.
    pub send_timeout_ms: u64,
    /// Frames of one kind that do no work — SETTINGS, PING, RST_STREAM, PRIORITY, DATA
    /// without payload or END_STREAM, CONTINUATION without payload — allowed per connection
    /// per second; past it: GOAWAY ENHANCE_YOUR_CALM. Default 10000.
    pub max_control_frames_per_second: u32,
    /// A call that ends on the client's side (cancel, reset, the client cut off) before its
    /// target answered has its target stream reset after this long, or as soon as the target
    /// answers. A target that finds a stream reset before it took it counts a rapid reset
    /// (tonic/hyper close the connection after 20), and a client cut off with hundreds of
    /// calls just forwarded would otherwise have them all reset at once on the connection
    /// other clients' calls share. Raise it for targets that can be busy longer than this
    /// before they read; 0 resets at once. Default 100 ms, at most 10000.
    pub cancel_grace_ms: u64,
    /// TLS to `https://` targets: trust roots and the client certificate.
    pub tls: UpstreamTlsConfig,
}

/// Connections from clients to ringway.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DownstreamConfig {
    /// `MAX_CONCURRENT_STREAMS` advertised to each client connection. With
    /// `upstream.stream_window_bytes` it bounds the response bytes one client that stops
    /// reading can make ringway hold: 256 × 256 KiB = 64 MiB by default. Default 256 (nginx
    /// 128, HAProxy 100).
    pub max_concurrent_streams: u32,
    /// HTTP/2 stream window advertised to clients (request bytes in flight per call).
    /// Default 2 MiB.
    pub stream_window_bytes: u32,
    /// HTTP/2 connection window advertised to clients. Default 8 MiB.
    pub connection_window_bytes: u32,
    /// Largest header list (HPACK-decoded) accepted per request. Default 16 KiB, as grpc-go.
    pub max_header_list_bytes: u32,
    /// Queued output per connection, in bytes, past which ringway stops reading the
    /// connection and its calls wait for room before sending more DATA: what a peer that
    /// does not read can make ringway hold. Default 262144 (256 KiB).
    pub output_buffer_bytes: usize,
    /// A connection with output waiting that writes nothing for this long is closed
    /// (its calls end); 0 = never. Default 30000 ms.
    pub send_timeout_ms: u64,
    /// Frames of one kind that do no work — SETTINGS, PING, RST_STREAM, PRIORITY, DATA
    /// without payload or END_STREAM, CONTINUATION without payload — allowed per connection
    /// per second; past it: GOAWAY ENHANCE_YOUR_CALM. Default 10000.
    pub max_control_frames_per_second: u32,
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
    /// On a drain (not an upgrade): how long ringway keeps serving as before — accepting,
    /// no GOAWAY — while `/readyz` answers 503 and the gRPC health service NOT_SERVING, so a
    /// load balancer's health check takes the host out first; only then are the listeners
    /// closed and GOAWAY sent. Closing a listener resets the connections still in its accept
    /// queue: behind a balancer, set this above its check interval × failures to mark down.
    /// Default 0 (no delay).
    pub drain_delay_ms: u64,
    /// A connection that has not completed the HTTP/2 preface after this long is closed.
    /// Default 10000 ms.
    pub handshake_timeout_ms: u64,
    /// Server PING to a client after this long without any frame from it (gRPC
    /// `keepalive_time`). Default 7200000 ms (2 h), as gRPC servers.
    pub keepalive_time_ms: u64,
    /// A client that has not acknowledged the PING after this long is closed. Default 20000 ms.
    pub keepalive_timeout_ms: u64,
    /// GOAWAY (NO_ERROR) to a connection without calls for this long; 0 (default) = never.
    pub max_connection_idle_ms: u64,
    /// GOAWAY to a connection after this long, ±10% jitter so connections made together do
    /// not all leave together; 0 (default) = never.
    pub max_connection_age_ms: u64,
    /// After the age GOAWAY, calls get this long to finish before the connection is closed;
    /// 0 (default) = as long as they take.
    pub max_connection_age_grace_ms: u64,
    /// Client PINGs closer together than this earn a strike (gRPC enforcement `MinTime`);
    /// after 2 strikes the connection gets GOAWAY ENHANCE_YOUR_CALM `too_many_pings`.
    /// Default 300000 ms (5 min), as gRPC servers.
    pub permit_keepalive_time_ms: u64,
    /// Allow client PINGs while no call is open (`PermitWithoutStream`). Default false: such
    /// pings are then allowed only every 2 hours.
    pub permit_keepalive_without_calls: bool,
    /// How new client connections are spread across shards: `"connections"` (default): a
    /// shard that accepts one while another shard has fewer open hands it over, once, before
    /// reading from it; `"kernel"`: each shard keeps what the kernel's `SO_REUSEPORT` hash
    /// gives it (uneven with few long-lived clients).
    pub balance: crate::balance::Balance,
    /// The TLS listener, its certificate, client certificates (mTLS).
    pub tls: DownstreamTlsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            preset: String::new(),
            listen: Listen(Some(SocketAddr::from(([0, 0, 0, 0], 7070)))),
            shards: 0,
            io_driver: IoDriver::default(),
            admin: "127.0.0.1:9901".into(),
            upgrade_socket: String::new(),
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
            cache: false,
            cache_max_entries: 100_000,
            cache_ttl_ms: 60_000,
            negative_ttl_ms: 1_000,
        }
    }
}

/// `redis.addr` when not given.
pub const DEFAULT_REDIS_ADDR: &str = "127.0.0.1:6379";

impl RedisConfig {
    /// Whether the primary is asked of sentinels (`mode = "sentinel"` or a
    /// `redis+sentinel://` addr).
    pub fn is_sentinel(&self) -> bool {
        self.mode == RedisMode::Sentinel
            || crate::redis::target::parse_addr(&self.addr).is_ok_and(|a| a.sentinel.is_some())
    }

    /// Whether Redis is a Redis Cluster (`mode = "cluster"` or a `redis+cluster://` addr).
    pub fn is_cluster(&self) -> bool {
        self.mode == RedisMode::Cluster
            || crate::redis::target::parse_addr(&self.addr).is_ok_and(|a| a.cluster.is_some())
    }

    /// The service the sentinels are asked about; empty in single mode.
    pub fn service(&self) -> String {
        match crate::redis::target::parse_addr(&self.addr) {
            Ok(parsed) => match parsed.sentinel {
                Some(url) => url.service,
                None => self.service_name.clone(),
            },
            Err(_) => self.service_name.clone(),
        }
    }

    /// Where Redis is, fit for logs and clients' messages (no password): `addr` redacted, or
    /// in sentinel mode from the fields, `redis+sentinel://<sentinels>/<service>`.
    pub fn shown(&self) -> String {
        if self.mode == RedisMode::Sentinel && !self.addr.as_str().contains("+sentinel://") {
            return format!(
                "redis+sentinel://{}/{}",
                self.sentinels.join(","),
                self.service_name
            );
        }
        if self.mode == RedisMode::Cluster && !self.addr.as_str().contains("+cluster://") {
            return format!("redis+cluster://{}", self.nodes.join(","));
        }
        self.addr.redacted()
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            addr: RedisAddr::new(DEFAULT_REDIS_ADDR),
            mode: RedisMode::Single,
            sentinels: Vec::new(),
            nodes: Vec::new(),
            service_name: String::new(),
            sentinel_user: None,
            sentinel_password: None,
            user: None,
            password: None,
            password_file: None,
            password_env: None,
            db: None,
            lookup_timeout_ms: 1000,
            connect_timeout_ms: 1000,
            reconnect_backoff_initial_ms: 50,
            reconnect_backoff_max_ms: 1000,
            tls: RedisTlsConfig::default(),
        }
    }
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            dial_timeout_ms: 1000,
            max_connections_per_target: 4,
            stream_window_bytes: 256 << 10,
            connection_window_bytes: 8 << 20,
            min_connections_per_target: 0,
            stream_high_watermark: 100,
            stream_low_watermark: 10,
            idle_timeout_ms: 300_000,
            max_connection_age_ms: 0,
            keepalive_time_ms: 0,
            keepalive_timeout_ms: 20_000,
            keepalive_without_calls: false,
            tcp_keepalive_time_ms: 60_000,
            tcp_keepalive_interval_ms: 10_000,
            tcp_user_timeout_ms: 30_000,
            dial_backoff_initial_ms: 250,
            dial_backoff_max_ms: 64_000,
            eject_after_failures: 3,
            dns_refresh_ms: 30_000,
            retry_buffer_bytes: 64 << 10,
            output_buffer_bytes: 256 << 10,
            send_timeout_ms: 30_000,
            max_control_frames_per_second: 10_000,
            cancel_grace_ms: 100,
            tls: UpstreamTlsConfig::default(),
        }
    }
}

impl Default for DownstreamConfig {
    fn default() -> Self {
        DownstreamConfig {
            max_concurrent_streams: 256,
            stream_window_bytes: 2 << 20,
            connection_window_bytes: 8 << 20,
            max_header_list_bytes: 16 << 10,
            output_buffer_bytes: 256 << 10,
            send_timeout_ms: 30_000,
            max_control_frames_per_second: 10_000,
            listen_backlog: 1024,
            max_connections: 10_000,
            fd_reserve: 256,
            drain_timeout_ms: 30_000,
            drain_delay_ms: 0,
            handshake_timeout_ms: 10_000,
            keepalive_time_ms: 7_200_000,
            keepalive_timeout_ms: 20_000,
            max_connection_idle_ms: 0,
            max_connection_age_ms: 0,
            max_connection_age_grace_ms: 0,
            permit_keepalive_time_ms: 300_000,
            permit_keepalive_without_calls: false,
            balance: crate::balance::Balance::default(),
            tls: DownstreamTlsConfig::default(),
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

pub(crate) fn bad(field: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        problem: problem.into(),
    }
}

/// HTTP/2's largest legal window (RFC 9113 §6.9.1).
const MAX_WINDOW: u32 = (1 << 31) - 1;

impl Config {
    /// The defaults of a named preset. `""` is the plain defaults.
    pub fn preset(name: &str) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        match name {
            "" => {}
            // Same rack or zone: RTT well under 1 ms. Fail fast and detect dead peers within
            // seconds; keep one connection per target warm.
            "lan" => {
                c.redis.lookup_timeout_ms = 250;
                c.redis.connect_timeout_ms = 250;
                c.upstream.dial_timeout_ms = 250;
                c.upstream.min_connections_per_target = 1;
                c.upstream.tcp_keepalive_time_ms = 15_000;
                c.upstream.tcp_keepalive_interval_ms = 5_000;
                c.upstream.tcp_user_timeout_ms = 10_000;
                c.upstream.dial_backoff_max_ms = 8_000;
                c.downstream.keepalive_time_ms = 60_000;
                c.downstream.keepalive_timeout_ms = 10_000;
            }
            // Clients or targets across a WAN: RTT of tens of ms, NATs and load balancers that
            // drop idle flows after minutes, loss. Bigger windows for the bandwidth-delay
            // product, patient dials, pings well inside common idle timeouts (AWS NLB: 350 s).
            "wan" => {
                c.redis.lookup_timeout_ms = 1_000;
                c.upstream.dial_timeout_ms = 3_000;
                c.upstream.stream_window_bytes = 8 << 20;
                c.upstream.connection_window_bytes = 32 << 20;
                c.upstream.tcp_keepalive_time_ms = 60_000;
                c.upstream.tcp_keepalive_interval_ms = 15_000;
                c.upstream.tcp_user_timeout_ms = 60_000;
                c.downstream.stream_window_bytes = 8 << 20;
                c.downstream.connection_window_bytes = 32 << 20;
                c.downstream.keepalive_time_ms = 60_000;
                c.downstream.keepalive_timeout_ms = 20_000;
                c.downstream.permit_keepalive_time_ms = 30_000;
            }
            other => {
                return Err(bad(
                    "preset",
                    format!("unknown preset `{other}`; use \"lan\", \"wan\" or \"\""),
                ))
            }
        }
        c.preset = name.to_string();
        Ok(c)
    }

    /// Parses a TOML document; unknown fields are errors (a typo must not pass silently).
    /// With `preset = "..."`, fields the document does not set come from that preset.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_with_preset(text, None)
    }

    /// As [`Config::from_toml`], with `preset` (the command line's) replacing the document's.
    pub fn from_toml_with_preset(text: &str, preset: Option<&str>) -> Result<Config, ConfigError> {
        let config = Config::from_toml_over_defaults(text)?;
        let preset = preset.unwrap_or(&config.preset);
        if preset.is_empty() {
            return Ok(config);
        }
        // Second pass: the document's values laid over the preset's. The first pass already
        // reported any error with its line.
        let base = Config::preset(preset)?;
        let mut merged = toml::Table::try_from(&base).map_err(|e| bad("", e.to_string()))?;
        let mut document: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| bad("", e.to_string()))?;
        document.remove("preset");
        merge(&mut merged, document);
        let config: Config = serde_path_to_error::deserialize(toml::Value::Table(merged))
            .map_err(|e| bad(&e.path().to_string(), e.into_inner().to_string()))?;
        config.validate()?;
        Ok(config)
    }

    fn from_toml_over_defaults(text: &str) -> Result<Config, ConfigError> {
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
        Config::load(Some(path), None)
    }

    /// The defaults (or `preset`'s), overlaid by the file if one is given.
    pub fn load(path: Option<&Path>, preset: Option<&str>) -> Result<Config, ConfigError> {
        let Some(path) = path else {
            return Config::preset(preset.unwrap_or(""));
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad("", format!("cannot read {}: {e}", path.display())))?;
        Config::from_toml_with_preset(&text, preset).map_err(|mut e| {
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
        // Parses the address, combines it with the credential fields and reads the password
        // from its source: a bad URL, two sources or an unreadable file fail here, by field.
        crate::redis::RedisTarget::from_config(&self.redis)?;
        // The `[redis.tls]` files, read once here so a bad one fails the start, by field.
        crate::redis::tls::check(&self.redis)?;
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
        if self.upstream.cancel_grace_ms > 10_000 {
            return Err(bad(
                "upstream.cancel_grace_ms",
                "must be at most 10000: abandoned streams hold the target's stream limit \
                 until it ends",
            ));
        }
        if self.upstream.max_connections_per_target == 0 {
            return Err(bad(
                "upstream.max_connections_per_target",
                "must be at least 1",
            ));
        }
        for (field, value) in [
            (
                "downstream.output_buffer_bytes",
                self.downstream.output_buffer_bytes,
            ),
            (
                "upstream.output_buffer_bytes",
                self.upstream.output_buffer_bytes,
            ),
        ] {
            if value < 16 << 10 {
                return Err(bad(field, "must be at least 16384 (one full DATA frame)"));
            }
        }
        for (field, value) in [
            (
                "downstream.max_control_frames_per_second",
                self.downstream.max_control_frames_per_second,
            ),
            (
                "upstream.max_control_frames_per_second",
                self.upstream.max_control_frames_per_second,
            ),
        ] {
            if value == 0 {
                return Err(bad(field, "must be at least 1"));
            }
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
        if self.route.cache {
            for (field, value) in [
                (
                    "route.cache_max_entries",
                    self.route.cache_max_entries as u64,
                ),
                ("route.cache_ttl_ms", self.route.cache_ttl_ms),
            ] {
                if value == 0 {
                    return Err(bad(field, "must be at least 1 when route.cache is on"));
                }
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
        self.validate_tls()?;
        if self.downstream.listen_backlog < 1 {
            return Err(bad("downstream.listen_backlog", "must be at least 1"));
        }
        Ok(())
    }

    /// The listeners and the TLS fields that go with them, checked once the file and the
    /// flags are both applied (a file may leave `cert` to `--tls-cert`). The files themselves
    /// are read, and named in errors, by [`crate::tls`].
    pub fn validate_listeners(&self) -> Result<(), ConfigError> {
        let t = &self.downstream.tls;
        if self.listen.addr().is_none() && t.listen.addr().is_none() {
            return Err(bad(
                "listen",
                "is \"off\" and so is downstream.tls.listen: nothing to serve on",
            ));
        }
        if t.listen.addr().is_some() {
            for (field, value) in [
                ("downstream.tls.cert", &t.cert),
                ("downstream.tls.key", &t.key),
            ] {
                if value.is_empty() {
                    return Err(bad(field, "is required when downstream.tls.listen is set"));
                }
            }
        } else if !t.client_ca.is_empty() {
            return Err(bad(
                "downstream.tls.client_ca",
                "is set but downstream.tls.listen is \"off\"",
            ));
        }
        Ok(())
    }

    /// The TLS fields that can be checked on their own.
    fn validate_tls(&self) -> Result<(), ConfigError> {
        let t = &self.downstream.tls;
        if !t.identity_header.is_empty() {
            let valid = http::HeaderName::from_bytes(t.identity_header.as_bytes()).is_ok()
                && !t.identity_header.bytes().any(|b| b.is_ascii_uppercase())
                && !t.identity_header.starts_with(':');
            if !valid {
                return Err(bad(
                    "downstream.tls.identity_header",
                    format!("`{}` is not a lowercase header name", t.identity_header),
                ));
            }
            if t.identity_header == self.route.header {
                return Err(bad(
                    "downstream.tls.identity_header",
                    "must not be the routing header",
                ));
            }
        }
        let u = &self.upstream.tls;
        if u.cert.is_empty() != u.key.is_empty() {
            let field = if u.cert.is_empty() {
                "upstream.tls.cert"
            } else {
                "upstream.tls.key"
            };
            return Err(bad(field, "upstream.tls.cert and key are set together"));
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

/// Lays `over` onto `base`, table by table.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
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
    fn presets_fill_what_the_file_leaves_out() {
        let c = Config::from_toml("preset = \"lan\"\n[upstream]\ndial_timeout_ms = 700\n").unwrap();
        assert_eq!(c.upstream.dial_timeout_ms, 700, "the file wins");
        assert_eq!(
            c.upstream.tcp_user_timeout_ms, 10_000,
            "the preset fills the rest"
        );
        assert_eq!(c.redis.addr.as_str(), "127.0.0.1:6379");
        let c = Config::from_toml("preset = \"wan\"\n").unwrap();
        assert_eq!(c.downstream.stream_window_bytes, 8 << 20);
        let e = Config::from_toml("preset = \"moon\"\n").unwrap_err();
        assert_eq!(e.field, "preset");
    }

    #[test]
    fn the_redis_password_is_never_shown() {
        let text = "preset = \"lan\"\n[redis]\naddr = \"redis://u:hunter2@h:1/2\"\n";
        let c = Config::from_toml(text).unwrap();
        assert_eq!(
            c.redis.addr.as_str(),
            "redis://u:hunter2@h:1/2",
            "the preset pass keeps it"
        );
        let c2 = Config::from_toml("[redis]\npassword = \"hunter2\"\ndb = 3\n").unwrap();
        assert_eq!(
            c2.redis.password.as_ref().map(Secret::expose),
            Some("hunter2")
        );
        for shown in [
            c.to_toml(),
            format!("{c:?}"),
            c2.to_toml(),
            format!("{c2:?}"),
        ] {
            assert!(!shown.contains("hunter2"), "{shown}");
        }
        assert!(c
            .to_toml()
            .contains("addr = \"redis://u:<redacted>@h:1/2\""));
        assert!(c2.to_toml().contains("password = \"<redacted>\""));
        assert!(c2.to_toml().contains("db = 3"));
        assert!(
            !Config::default().to_toml().contains("password"),
            "unset fields are left out"
        );
    }

    #[test]
    fn redis_credential_errors_name_the_field() {
        let e = Config::from_toml("[redis]\npassword = \"a\"\npassword_env = \"B\"\n").unwrap_err();
        assert_eq!(e.field, "redis.password_env");
        let e =
            Config::from_toml("[redis]\npassword_file = \"/nonexistent/ringway\"\n").unwrap_err();
        assert_eq!(e.field, "redis.password_file");
        let e = Config::from_toml("[redis]\naddr = \"redis://h:1/x\"\n").unwrap_err();
        assert_eq!(e.field, "redis.addr");
    }

    #[test]
    fn listeners_and_tls_fields() {
        let complete =
            |text: &str| Config::from_toml(text).and_then(|c| c.validate_listeners().map(|()| c));
        let c = complete("listen = \"off\"\n[downstream.tls]\nlisten = \"127.0.0.1:0\"\ncert = \"c.pem\"\nkey = \"k.pem\"\n").unwrap();
        assert_eq!(c.listen, Listen::OFF);
        assert!(c.downstream.tls.listen.addr().is_some());
        let e = complete("listen = \"off\"\n").unwrap_err();
        assert_eq!(e.field, "listen");
        let e = Config::from_toml("listen = \"of\"\n").unwrap_err();
        assert_eq!(e.field, "listen", "{e}");
        let e =
            complete("[downstream.tls]\nlisten = \"127.0.0.1:0\"\ncert = \"c.pem\"\n").unwrap_err();
        assert_eq!(e.field, "downstream.tls.key");
        let e = complete("[downstream.tls]\nclient_ca = \"ca.pem\"\n").unwrap_err();
        assert_eq!(e.field, "downstream.tls.client_ca");
        let e = Config::from_toml("[downstream.tls]\nidentity_header = \"X-Id\"\n").unwrap_err();
        assert_eq!(e.field, "downstream.tls.identity_header");
        let e = Config::from_toml("[upstream.tls]\ncert = \"c.pem\"\n").unwrap_err();
        assert_eq!(e.field, "upstream.tls.key");
        // The defaults render and read back.
        assert_eq!(
            Config::from_toml(&Config::default().to_toml()).unwrap(),
            Config::default()
        );
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
