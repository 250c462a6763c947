//! The setup most gateway tests share, in one call: a `redis-server`, named tonic upstreams,
//! routes to them, and ringway with its shards, config file and flags. [`Env`] owns the pieces
//! ([`RedisServer`], [`Upstream`], [`Gateway`], [`ConfigFile`]) for the test's length and hands
//! each out through an accessor; what a test does with them is its own.
//!
//! ```no_run
//! # async fn t() {
//! use ringway_testkit::*;
//! // In ringway's own tests the binary is env!("CARGO_BIN_EXE_ringway").
//! let env = Env::builder("target/debug/ringway")
//!     .shards(2)
//!     .upstream("a")
//!     .upstream("b")
//!     .route("job-a", "a")
//!     .route("job-ab", "a,b") // a multi-target route
//!     .config("[route]\ncache = true\n")
//!     .start()
//!     .await;
//! let mut client = env.client().await;
//! let reply = client.unary(routed(EchoRequest::default(), "job-a")).await.unwrap();
//! assert_eq!(reply.get_ref().upstream, "a");
//! assert_eq!(env.upstream("a").calls(), 1);
//! assert_eq!(env.metric("ringway_calls_total", &[]), 1.0);
//! # }
//! ```
//!
//! Tests whose targets are not [`Upstream`]s (raw HTTP/2 servers, closed ports) start with no
//! upstream and write their route with [`EnvBuilder::route_value`].

use std::fmt::Display;
use std::net::{SocketAddr, TcpListener};

use tonic::transport::Channel;

use crate::client::connect;
use crate::echo::pb::echo_client::EchoClient;
use crate::gateway::{ConfigFile, Gateway};
use crate::redis::{RedisOptions, RedisServer};
use crate::upstream::{Upstream, UpstreamOptions};

/// Shards when the test does not say: one, so pools, caches and counts are one shard's.
const DEFAULT_SHARDS: usize = 1;

/// A started gateway and its peers. Dropping it stops them all: ringway first, then the
/// upstreams, then Redis (fields drop in declaration order).
#[derive(Debug)]
pub struct Env {
    gateway: Gateway,
    /// In the order the builder named them.
    upstreams: Vec<Upstream>,
    redis: RedisServer,
    /// The `--config` file; kept until ringway is gone.
    config: Option<ConfigFile>,
}

/// What [`Env::builder`] collects before [`EnvBuilder::start`].
#[derive(Debug, Clone)]
pub struct EnvBuilder {
    bin: String,
    shards: usize,
    upstreams: Vec<(String, UpstreamOptions)>,
    /// (key, value) in the order given; a value is upstream names or taken as it is.
    routes: Vec<(String, Route)>,
    config: Option<String>,
    args: Vec<String>,
    redis: RedisOptions,
    /// What ringway gets as `--redis`; `{addr}` stands for the server's `ip:port`.
    redis_url: String,
    /// Environment variables for ringway.
    env: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
enum Route {
    /// Comma-separated upstream names, written as their addresses.
    Upstreams(String),
    /// Written to Redis unchanged.
    Value(String),
}

impl Env {
    /// A builder for ringway at `bin` (`env!("CARGO_BIN_EXE_ringway")` in ringway's tests):
    /// one shard, no upstream, no route, no config file until told otherwise.
    pub fn builder(bin: &str) -> EnvBuilder {
        EnvBuilder {
            bin: bin.to_owned(),
            shards: DEFAULT_SHARDS,
            upstreams: Vec::new(),
            routes: Vec::new(),
            config: None,
            args: Vec::new(),
            redis: RedisOptions::default(),
            redis_url: "{addr}".to_owned(),
            env: Vec::new(),
        }
    }

    pub fn redis(&self) -> &RedisServer {
        &self.redis
    }

    /// For stopping and restarting Redis.
    pub fn redis_mut(&mut self) -> &mut RedisServer {
        &mut self.redis
    }

    /// The upstream the builder named `name`. Panics if there is none.
    pub fn upstream(&self, name: &str) -> &Upstream {
        let i = self.upstream_index(name);
        &self.upstreams[i]
    }

    /// For stopping and restarting the upstream named `name`.
    pub fn upstream_mut(&mut self, name: &str) -> &mut Upstream {
        let i = self.upstream_index(name);
        &mut self.upstreams[i]
    }

    /// Every upstream, in the order the builder named them.
    pub fn upstreams(&self) -> &[Upstream] {
        &self.upstreams
    }

    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    /// For signals, stopping and waiting on the process.
    pub fn gateway_mut(&mut self) -> &mut Gateway {
        &mut self.gateway
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.gateway.addr()
    }

    /// Where TLS clients connect (`--tls-listen`). Panics if ringway has no TLS listener.
    pub fn tls_addr(&self) -> SocketAddr {
        self.gateway.tls_addr()
    }

    /// A tonic client on a new TLS connection to the gateway's TLS port, trusting `ca` (PEM)
    /// for `localhost`, presenting `identity` when given.
    pub async fn tls_client(
        &self,
        ca: &str,
        identity: Option<&crate::pki::Pem>,
    ) -> Result<EchoClient<Channel>, tonic::transport::Error> {
        crate::client::connect_tls(self.tls_addr(), ca, identity).await
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.gateway.admin_addr()
    }

    /// The `--config` file's path, if the builder was given a config.
    pub fn config_path(&self) -> Option<&str> {
        self.config.as_ref().map(ConfigFile::path)
    }

    /// A tonic client on a new HTTP/2 connection to the gateway (see [`connect`]); its clones
    /// share that connection.
    pub async fn client(&self) -> EchoClient<Channel> {
        connect(self.addr()).await
    }

    /// Points `key` at the upstreams `names` (comma-separated, as ringway reads a route).
    pub fn route(&self, key: &str, names: &str) {
        self.redis.set(key, &self.targets(names));
    }

    /// The route value for the upstreams `names` (comma-separated): their addresses.
    pub fn targets(&self, names: &str) -> String {
        targets(&self.upstreams, names)
    }

    /// `GET /metrics` (must answer 200).
    pub fn metrics(&self) -> String {
        self.gateway.metrics()
    }

    /// Metric `name` summed over the series with `labels` (see [`Gateway::metric`]).
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.gateway.metric(name, labels)
    }

    fn upstream_index(&self, name: &str) -> usize {
        self.upstreams
            .iter()
            .position(|u| u.name() == name)
            .unwrap_or_else(|| {
                let names: Vec<&str> = self.upstreams.iter().map(Upstream::name).collect();
                panic!("no upstream named {name:?}; the test started {names:?}")
            })
    }
}

impl EnvBuilder {
    /// `--shards n` (default 1).
    pub fn shards(mut self, n: usize) -> Self {
        self.shards = n;
        self
    }

    /// One more upstream, named `name` (its replies and `x-upstream` trailer say so).
    pub fn upstream(self, name: &str) -> Self {
        self.upstream_with(name, UpstreamOptions::default())
    }

    /// As [`EnvBuilder::upstream`], with server settings.
    pub fn upstream_with(mut self, name: &str, options: UpstreamOptions) -> Self {
        self.upstreams.push((name.to_owned(), options));
        self
    }

    /// Writes `key` → the addresses of the upstreams `names` (comma-separated) before ringway
    /// starts.
    pub fn route(mut self, key: &str, names: &str) -> Self {
        self.routes
            .push((key.to_owned(), Route::Upstreams(names.to_owned())));
        self
    }

    /// Writes `key` → `value` as it is (a raw target, a closed port, a malformed route).
    pub fn route_value(mut self, key: &str, value: impl Display) -> Self {
        self.routes
            .push((key.to_owned(), Route::Value(value.to_string())));
        self
    }

    /// A config file with `toml`, passed as `--config`.
    pub fn config(mut self, toml: &str) -> Self {
        self.config = Some(toml.to_owned());
        self
    }

    /// More ringway flags, after `--shards` and `--config`.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Extra `redis-server` arguments (see [`RedisServer::start_with_args`]).
    pub fn redis_args(mut self, args: &[&str]) -> Self {
        self.redis = self.redis.args(args);
        self
    }

    /// Redis demands `password` of its `default` user (see [`RedisOptions::requirepass`]).
    pub fn redis_requirepass(mut self, password: &str) -> Self {
        self.redis = self.redis.requirepass(password);
        self
    }

    /// Redis has the ACL user `name` and, unless [`EnvBuilder::redis_requirepass`] is given,
    /// no `default` user (see [`RedisOptions::acl_user`]).
    pub fn redis_acl_user(mut self, name: &str, password: &str) -> Self {
        self.redis = self.redis.acl_user(name, password);
        self
    }

    /// Redis listens for TLS too (see [`RedisOptions::tls`]); `{tls_addr}` in
    /// [`EnvBuilder::redis_url`] stands for that port's `ip:port`.
    pub fn redis_tls(
        mut self,
        server: &crate::pki::Pem,
        client_ca: &str,
        auth_clients: bool,
    ) -> Self {
        self.redis = self.redis.tls(server, client_ca, auth_clients);
        self
    }

    /// The database the routes (and [`Env::route`], [`RedisServer::set`]) are written to.
    /// ringway is not told: give it the database in its config or URL.
    pub fn redis_db(mut self, db: u32) -> Self {
        self.redis = self.redis.db(db);
        self
    }

    /// What ringway gets as `--redis`, with `{addr}` standing for the server's `ip:port`
    /// (default `"{addr}"`): e.g. `"redis://ringway:secret@{addr}/2"`. With
    /// [`EnvBuilder::redis_tls`], `{tls_addr}` stands for its TLS port: `"rediss://{tls_addr}"`.
    pub fn redis_url(mut self, template: &str) -> Self {
        self.redis_url = template.to_owned();
        self
    }

    /// An environment variable for ringway.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Starts Redis, the upstreams, writes the routes, then starts ringway and waits until it
    /// listens. Panics, saying what, if any of them does not start.
    pub async fn start(self) -> Env {
        let redis = RedisServer::start_with(self.redis.clone());
        let mut upstreams: Vec<Upstream> = Vec::with_capacity(self.upstreams.len());
        for (name, options) in &self.upstreams {
            assert!(
                upstreams.iter().all(|u| u.name() != name),
                "two upstreams named {name:?}"
            );
            upstreams.push(Upstream::start_with(name, options.clone()).await);
        }
        let config = self.config.as_deref().map(ConfigFile::new);
        let shards = self.shards.to_string();
        let mut args = vec!["--shards", shards.as_str()];
        if let Some(config) = &config {
            args.extend(["--config", config.path()]);
        }
        args.extend(self.args.iter().map(String::as_str));
        for (key, route) in &self.routes {
            let value = match route {
                Route::Upstreams(names) => targets(&upstreams, names),
                Route::Value(value) => value.clone(),
            };
            redis.set(key, &value);
        }
        let mut redis_url = self.redis_url.replace("{addr}", &redis.addr().to_string());
        if redis_url.contains("{tls_addr}") {
            redis_url = redis_url.replace("{tls_addr}", &redis.tls_addr().to_string());
        }
        let gateway =
            Gateway::start_with_env(&self.bin, "127.0.0.1:0", redis_url, &args, &self.env);
        Env {
            gateway,
            upstreams,
            redis,
            config,
        }
    }
}

/// The route value for the upstreams `names` (comma-separated) among `upstreams`: their
/// addresses, comma-separated. Panics on a name none of them has.
fn targets(upstreams: &[Upstream], names: &str) -> String {
    names
        .split(',')
        .map(|name| {
            let name = name.trim();
            upstreams
                .iter()
                .find(|u| u.name() == name)
                .unwrap_or_else(|| {
                    let started: Vec<&str> = upstreams.iter().map(Upstream::name).collect();
                    panic!("no upstream named {name:?}; the test started {started:?}")
                })
                .target()
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A loopback address nothing listens on: bound to port 0, then released.
pub fn closed_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("a bound address")
}
