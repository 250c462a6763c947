//! `echo-upstream`: the example gRPC upstream. Echoes every unary message with grpc-status 0.
//!
//!     echo-upstream --listen 127.0.0.1:0 [--threads 1] [--tls-cert CERT.pem --tls-key KEY.pem]
//!
//! Prints `listening on ADDR` to stderr once bound.

use std::net::TcpListener;

use clap::Parser;

#[derive(Parser)]
#[command(about = "HTTP/2 gRPC echo server (the benchmark's upstream)")]
struct Args {
    /// Address to listen on; port 0 lets the kernel pick.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Threads, each a current_thread runtime accepting from the same socket.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// SETTINGS_MAX_CONCURRENT_STREAMS advertised per connection.
    #[arg(long, default_value_t = 4096)]
    max_streams: u32,
    /// Serve TLS (ALPN h2) on --listen with this certificate chain, PEM; needs --tls-key.
    #[arg(long, value_name = "CERT.pem", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The private key for --tls-cert, PEM.
    #[arg(long, value_name = "KEY.pem", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
}

fn main() {
    let args = Args::parse();
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => match ringway_bench::tls::server_config(cert, key) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("echo-upstream: {e}");
                std::process::exit(1);
            }
        },
        _ => None,
    };
    let listener = match TcpListener::bind(&args.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("echo-upstream: bind {}: {e}", args.listen);
            std::process::exit(1);
        }
    };
    let addr = listener
        .local_addr()
        .expect("a bound socket has an address");
    eprintln!(
        "echo-upstream: listening on {addr} ({} thread(s){})",
        args.threads,
        if tls.is_some() { ", TLS, ALPN h2" } else { "" }
    );
    if let Err(e) = ringway_bench::echo::serve_with(listener, args.threads, args.max_streams, tls) {
        eprintln!("echo-upstream: {e}");
        std::process::exit(1);
    }
}
