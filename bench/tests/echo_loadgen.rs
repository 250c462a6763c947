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
        threads: 1,
        call_timeout: Duration::from_secs(5),
        drain: Duration::from_secs(2),
        progress: false,
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
