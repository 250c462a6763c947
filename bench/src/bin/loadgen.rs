//! `loadgen`: HTTP/2 gRPC load generator.
//!
//!     loadgen --target 127.0.0.1:7070 --connections 4 --concurrency 64 --duration 10 \
//!             --warmup 2 --size 64 --header jobid=bench [--rate 20000] [--json out.json]
//!
//! Closed loop by default (exactly `--concurrency` calls in flight); `--rate` switches to an
//! open loop whose latencies count from each call's intended send time.
//!
//! TLS: `--tls-ca CA.pem [--tls-server-name localhost]` (ALPN h2, rustls). Handshakes per
//! second: `--new-connections` gives every call a connection of its own (dial, handshake,
//! one call, close); `--no-resumption` makes every TLS handshake a full one.

use std::net::ToSocketAddrs;
use std::time::Duration;

use clap::Parser;
use http::{HeaderName, HeaderValue};
use ringway_bench::loadgen::{self, Config};

#[derive(Parser)]
#[command(about = "HTTP/2 gRPC load generator (closed or open loop)")]
struct Args {
    /// host:port of the server or gateway.
    #[arg(long)]
    target: String,
    /// HTTP/2 connections in total.
    #[arg(long, short = 'c', default_value_t = 1)]
    connections: usize,
    /// Calls in flight in total (closed loop), or the cap on them (open loop).
    #[arg(long, short = 'm', default_value_t = 1)]
    concurrency: usize,
    /// Open loop: calls per second in total.
    #[arg(long)]
    rate: Option<f64>,
    /// Measured calls (after warm-up); the run still stops after --duration + --drain.
    #[arg(long, short = 'n')]
    requests: Option<u64>,
    /// Measured seconds (or, with --requests, the most the measured phase may take).
    #[arg(long, short = 'd', default_value_t = 10.0)]
    duration: f64,
    /// Warm-up seconds before measuring.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Message payload bytes (the 5-byte gRPC prefix comes on top).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Extra request header NAME=VALUE, repeatable (e.g. the routing header jobid=bench).
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// With N > 1, the last --header's value becomes VALUE-0 … VALUE-(N-1), one after the
    /// other call by call (e.g. N routing keys, each in Redis).
    #[arg(long, default_value_t = 1)]
    keys: usize,
    /// gRPC method path.
    #[arg(long, default_value = "/bench.Echo/Unary")]
    path: String,
    /// :authority to send (default: the target).
    #[arg(long)]
    authority: Option<String>,
    /// Threads, each a current_thread runtime with its share of connections and calls.
    #[arg(long, short = 't', default_value_t = 1)]
    threads: usize,
    /// Per-call timeout, seconds.
    #[arg(long, default_value_t = 10.0)]
    call_timeout: f64,
    /// Seconds allowed after the measured phase for calls in flight.
    #[arg(long, default_value_t = 5.0)]
    drain: f64,
    /// Write the JSON summary to this file ("-" for stdout).
    #[arg(long)]
    json: Option<String>,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
    /// Speak TLS (ALPN h2) and trust the CA certificates in this PEM file.
    #[arg(long, value_name = "CA.pem")]
    tls_ca: Option<std::path::PathBuf>,
    /// With --tls-ca: the name sent as SNI and verified (an IP address is verified against
    /// the certificate's IP SAN and sends no SNI).
    #[arg(long, default_value = "localhost", requires = "tls_ca")]
    tls_server_name: String,
    /// Every call on a new connection of its own, closed after it: the rate is new
    /// connections (with TLS, handshakes) per second. --connections is unused.
    #[arg(long)]
    new_connections: bool,
    /// With --tls-ca: no TLS session cache, so every handshake is a full one.
    #[arg(long, requires = "tls_ca")]
    no_resumption: bool,
}

fn parse_header(s: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (n, v) = s
        .split_once('=')
        .or_else(|| s.split_once(':'))
        .ok_or_else(|| format!("header {s:?}: expected NAME=VALUE"))?;
    let name = HeaderName::from_bytes(n.trim().to_ascii_lowercase().as_bytes())
        .map_err(|e| format!("header name {n:?}: {e}"))?;
    let value = HeaderValue::from_str(v.trim()).map_err(|e| format!("header value {v:?}: {e}"))?;
    Ok((name, value))
}

fn main() {
    let a = Args::parse();
    let fail = |msg: String| -> ! {
        eprintln!("loadgen: {msg}");
        std::process::exit(2);
    };
    let target = a
        .target
        .to_socket_addrs()
        .ok()
        .and_then(|mut it| it.next())
        .unwrap_or_else(|| fail(format!("cannot resolve --target {}", a.target)));
    let headers = a
        .headers
        .iter()
        .map(|h| parse_header(h))
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| fail(e));
    if a.rate.is_some_and(|r| r <= 0.0) {
        fail("--rate must be positive".into());
    }
    let tls = a.tls_ca.as_ref().map(|ca| {
        ringway_bench::tls::client(ca, &a.tls_server_name, !a.no_resumption)
            .unwrap_or_else(|e| fail(e))
    });
    let cfg = Config {
        target,
        authority: a.authority,
        path: a.path,
        connections: a.connections.max(1),
        concurrency: a.concurrency.max(1),
        rate: a.rate,
        requests: a.requests,
        duration: Duration::from_secs_f64(a.duration),
        warmup: Duration::from_secs_f64(a.warmup),
        message_bytes: a.size,
        headers,
        keys: a.keys,
        threads: a.threads.max(1),
        call_timeout: Duration::from_secs_f64(a.call_timeout),
        drain: Duration::from_secs_f64(a.drain),
        progress: !a.quiet,
        tls,
        new_connections: a.new_connections,
    };
    let summary = loadgen::run(cfg).unwrap_or_else(|e| fail(e));
    eprint!("{}", summary.human());
    if let Some(path) = a.json {
        let json = serde_json::to_string_pretty(&summary).expect("summary serialises");
        if path == "-" {
            println!("{json}");
        } else if let Err(e) = std::fs::write(&path, json + "\n") {
            fail(format!("write {path}: {e}"));
        }
    }
}
