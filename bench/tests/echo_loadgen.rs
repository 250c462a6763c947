//! The load generator against the echo upstream, both real, on port 0.

use std::net::TcpListener;
use std::time::Duration;

use ringway_bench::loadgen::{self, Config};

fn echo() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || ringway_bench::echo::serve(l, 1, 1024));
    addr
}

fn config(target: std::net::SocketAddr) -> Config {
    Config {
        target,
        authority: None,
        path: "/bench.Echo/Unary".into(),
        connections: 2,
        concurrency: 8,
        rate: None,
        requests: None,
        duration: Duration::from_millis(500),
        warmup: Duration::from_millis(100),
        message_bytes: 100,
        headers: vec![("jobid".parse().unwrap(), "bench".parse().unwrap())],
        keys: 1,
        threads: 1,
        call_timeout: Duration::from_secs(5),
        drain: Duration::from_secs(2),
        progress: false,
        tls: None,
        new_connections: false,
    }
}

#[test]
fn closed_loop_by_count_gets_every_call_echoed() {
    let addr = echo();
    let s = loadgen::run(Config {
        requests: Some(2000),
        duration: Duration::from_secs(20),
        threads: 2,
        ..config(addr)
    })
    .unwrap();
    assert_eq!(s.calls, 2000, "{s:?}");
    assert_eq!(s.ok, 2000, "{:?}", s.errors);
    assert!(s.latency.p50_us > 0.0 && s.latency.max_us >= s.latency.p99_us);
    assert!(s.calls_total >= s.calls);
}

#[test]
fn open_loop_keeps_its_rate_and_reports_service_time() {
    let addr = echo();
    let s = loadgen::run(Config {
        rate: Some(2000.0),
        duration: Duration::from_secs(1),
        ..config(addr)
    })
    .unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    // 2000/s for 1 s: allow for timer granularity at the edges.
    assert!((1800..=2200).contains(&s.calls), "{}", s.calls);
    let service = s.service_time.expect("open loop reports service time");
    // Latency from the intended send can only be longer than from the actual send.
    assert!(s.latency.p99_us >= service.p50_us);
}

#[test]
fn refused_target_is_an_error_not_a_hang() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let r = loadgen::run(config(port));
    assert!(r.is_err());
}

/// A PKI's directory, removed when the test is done with it.
struct Pki(ringway_bench::tls::Pki);

impl Drop for Pki {
    fn drop(&mut self) {
        if let Some(dir) = self.0.ca.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The echo upstream over TLS with a per-test PKI; returns its address and the PKI.
fn echo_tls() -> (std::net::SocketAddr, Pki) {
    let dir = std::env::temp_dir().join(format!(
        "ringway-bench-test-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let pki = ringway_bench::tls::Pki::generate(&dir).unwrap();
    let server = ringway_bench::tls::server_config(&pki.upstream_cert, &pki.upstream_key).unwrap();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || ringway_bench::echo::serve_with(l, 1, 1024, Some(server)));
    (addr, Pki(pki))
}

#[test]
fn tls_closed_loop_records_what_was_negotiated() {
    let (addr, pki) = echo_tls();
    let tls = ringway_bench::tls::client(&pki.0.ca, "localhost", true).unwrap();
    let s = loadgen::run(Config {
        requests: Some(500),
        duration: Duration::from_secs(20),
        tls: Some(tls),
        ..config(addr)
    })
    .unwrap();
    assert_eq!(s.ok, 500, "{:?}", s.errors);
    let t = s.tls.expect("a TLS run records its negotiation");
    assert_eq!(t.alpn, "h2");
    assert!(t.version.starts_with("TLSv1_"), "{t:?}");
}

#[test]
fn new_connections_count_full_and_resumed_handshakes() {
    let (addr, pki) = echo_tls();
    for resume in [false, true] {
        let tls = ringway_bench::tls::client(&pki.0.ca, "localhost", resume).unwrap();
        let s = loadgen::run(Config {
            requests: Some(60),
            duration: Duration::from_secs(20),
            warmup: Duration::ZERO,
            concurrency: 2,
            tls: Some(tls),
            new_connections: true,
            ..config(addr)
        })
        .unwrap();
        assert_eq!(s.ok, 60, "{:?}", s.errors);
        let h = s
            .handshakes
            .expect("new-connections mode reports handshakes");
        assert_eq!(h.full + h.resumed, 60);
        if resume {
            // The first connection of each slot is full; the rest resume (TLS 1.3 tickets).
            assert!(h.resumed >= 50, "{h:?}");
        } else {
            assert_eq!(h.resumed, 0, "{h:?}");
        }
    }
}

#[test]
fn a_client_that_does_not_trust_the_ca_fails_to_dial() {
    let (addr, _) = echo_tls();
    let (_, other) = echo_tls();
    let tls = ringway_bench::tls::client(&other.0.ca, "localhost", true).unwrap();
    let r = loadgen::run(Config {
        tls: Some(tls),
        ..config(addr)
    });
    assert!(r.unwrap_err().contains("TLS handshake"));
}
