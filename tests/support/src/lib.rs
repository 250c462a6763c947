//! Real peers for ringway's integration tests: a `redis-server` process, tonic
//! gRPC upstreams on loopback, the `ringway` binary itself, and a tonic client
//! that reaches the upstreams through it. Nothing here is a mock: every test
//! speaks real bytes over real sockets.
//!
//! # Layout
//!
//! - [`echo`]: the `Echo` protocol (generated from `proto/echo.proto`) and the
//!   service an upstream runs; it owns the per-call behaviour (echo, N replies,
//!   delay, failure) and the cancel count.
//! - [`stamp`]: a tower layer on the upstream that echoes `x-echo-*` request
//!   headers and adds the `x-upstream` trailer; it knows HTTP, not gRPC messages.
//! - [`upstream`]: one tonic server on `127.0.0.1`: start, stop, restart on the
//!   same port, and the connection count.
//! - [`redis`]: a `redis-server` child process on a free port, optionally behind a password
//!   or ACL users; [`resp`] is the tiny blocking RESP client it uses; [`cluster`]: a Redis
//!   Cluster of them, with slot moves by hand; [`sentinel`]: a
//!   `redis-sentinel` process watching one of them.
//! - [`gateway`]: the `ringway` child process and the address it reports; its admin port's
//!   answers and metrics.
//! - [`fixture`]: [`Env`], the usual setup in one call — Redis, named upstreams, routes to
//!   them, and ringway with shards, a config file and flags — with an accessor for each piece.
//! - [`admin`]: the one HTTP/1.1 client of the admin port, and a reader of metric values;
//!   [`exposition`] checks the Prometheus text format itself.
//! - [`client`]: a tonic `EchoClient` over one HTTP/2 connection to the gateway,
//!   and the routing-header helper.
//! - [`raw`]: one gRPC call over bare HTTP/2 (the `h2` crate), for what tonic
//!   hides: the HTTP status and whether a response was trailers-only.
//! - [`rawh2`]: HTTP/2 frame by frame — a client that never answers PINGs or floods them, a
//!   silent server, and a tap that records the frames an `h2` client receives (GOAWAY, close);
//!   its `HpackDecoder` reads peers' header blocks with the `httlib-hpack` crate.
//! - [`h2server`]: a gRPC echo upstream on the `h2` crate that can send GOAWAY mid-load with the
//!   last stream it really accepted, counting every message it handles.
//! - [`attack`]: hostile HTTP/2 peers (floods, rapid reset, slow readers, idle connections, a
//!   target that ignores flow control) and the bystander client that must keep working.
//! - [`mixed`]: a load of calls meant for every outcome (routed, no header, unknown key,
//!   failed upstream, closed target), for tests that check what ringway counts and logs.
//! - [`pki`]: throwaway certificates made with `rcgen` (a CA, server and client
//!   certificates, expired, wrong-name and mismatched ones) and their PEM files.
//! - [`wait`]: bounded waiting, and [`run`], a fresh runtime per test with a
//!   time limit, so every test can fail instead of hang.
//!
//! # One test, top to bottom
//!
//! ```no_run
//! # async fn t() {
//! use ringway_testkit::*;
//! // In ringway's own tests the binary is env!("CARGO_BIN_EXE_ringway").
//! let env = Env::builder("target/debug/ringway")
//!     .shards(2)
//!     .upstream("a")
//!     .route("job-1", "a")
//!     .start()
//!     .await;
//! let mut client = env.client().await;
//! let reply = client.unary(routed(EchoRequest::default(), "job-1")).await.unwrap();
//! assert_eq!(reply.get_ref().upstream, "a");
//! assert_eq!(env.metric("ringway_calls_total", &[("grpc_status", "0")]), 1.0);
//! # }
//! ```

#![forbid(unsafe_code)]

pub mod admin;
pub mod attack;
pub mod client;
pub mod cluster;
pub mod echo;
pub mod exposition;
pub mod fixture;
pub mod gateway;
pub mod h2server;
pub mod mixed;
pub mod pki;
pub mod raw;
pub mod rawh2;
pub mod redis;
pub mod resp;
pub mod sentinel;
pub mod stamp;
pub mod steady;
pub mod upstream;
pub mod wait;

pub use client::{connect, connect_tls, routed, with_jobid, MAX_MESSAGE_SIZE, ROUTE_HEADER};
pub use echo::pattern;
pub use echo::pb::{echo_client::EchoClient, EchoReply, EchoRequest, Failure};
pub use fixture::{closed_addr, Env, EnvBuilder};
pub use gateway::{ConfigFile, Gateway, TempPath};
pub use pki::{Pem, Pki};
pub use raw::{grpc_call_on, raw_grpc_call, RawResponse};
pub use redis::{RedisOptions, RedisServer};
pub use sentinel::{Sentinel, SentinelOptions};
pub use upstream::{ReadHold, Upstream, UpstreamOptions, UpstreamTls};
pub use wait::{eventually, run, tokio_sleep, within};

// Re-exported so ringway's tests need no dependencies of their own beyond this crate.
pub use bytes;
pub use futures_util;
pub use h2;
pub use http;
pub use prost;
pub use rustls;
pub use tokio;
pub use tokio_rustls;
pub use tokio_stream;
pub use tonic;
