//! ringway's benchmark harness.
//!
//! Three binaries share this library:
//!
//! - `loadgen`: an HTTP/2 gRPC load generator (closed or open loop, hdrhistogram latencies,
//!   errors by gRPC status, JSON summary);
//! - `echo-upstream`: the example upstream, an HTTP/2 gRPC server echoing each unary message;
//! - `scenario`: the runner that starts Redis, the upstream and each system under test in turn
//!   (direct, ringway, nginx `grpc_pass`, nginx + Lua pooled, nginx + Lua short connections),
//!   drives the same load at each, and records throughput, latency, CPU per call, peak RSS and
//!   the TCP state table into `bench/results/<date>-<commit>/`.
//!
//! # Layout
//!
//! ```text
//! grpc.rs       gRPC framing and header sets, by hand (5-byte prefix, grpc-status)
//! h2cfg.rs      HTTP/2 windows and limits shared by client and server
//! echo.rs       the echo upstream's server loop
//! loadgen.rs    the load generator's engine: connections, slots, open/closed loop, recording
//! report.rs     the load generator's summary (JSON + human)
//! tls.rs        the per-run PKI (rcgen, ECDSA P-256) and rustls configs, ring provider, ALPN h2
//! procfs.rs     /proc readers: CPU of a process tree, peak RSS, TCP state table
//! scenario/     the runner: processes, peers' configs, the systems, sweep, results, charts
//! hostile/      bench/hostile: attacks (the testkit's) against ringway, nginx and HAProxy
//! ```
//!
//! The path of one call in a gateway run: `loadgen` slot → HTTP/2 stream on one of its
//! connections → system under test → `echo-upstream` stream → same bytes back → trailers →
//! latency recorded in the slot's thread histogram, merged once at the end.

#![forbid(unsafe_code)]

pub mod echo;
pub mod grpc;
pub mod h2cfg;
pub mod hostile;
pub mod loadgen;
pub mod procfs;
pub mod report;
pub mod scenario;
pub mod tls;
