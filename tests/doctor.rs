//! `ringway doctor` run as a binary on this machine: a listen port inside the ephemeral range is
//! named with its fix, a descriptor limit too low for `max_connections` fails the run, and an
//! unknown profile is refused.

use std::process::{Command, Output, Stdio};

use ringway_testkit::ConfigFile;

const RINGWAY: &str = env!("CARGO_BIN_EXE_ringway");

fn run(command: &mut Command) -> Output {
    command
        .stdin(Stdio::null())
        .output()
        .expect("run ringway doctor")
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A port inside this machine's ephemeral range that is not reserved: the middle of the range,
/// or the first port after it that is free of reservations.
fn ephemeral_port() -> u16 {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .expect("read ip_local_port_range");
    let mut bounds = range.split_whitespace().map(|p| p.parse::<u16>().unwrap());
    let (low, high) = (bounds.next().unwrap(), bounds.next().unwrap());
    let reserved =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_reserved_ports").unwrap_or_default();
    let is_reserved = |port: u16| {
        reserved.trim().split(',').any(|item| {
            let (a, b) = item.split_once('-').unwrap_or((item, item));
            match (a.trim().parse::<u16>(), b.trim().parse::<u16>()) {
                (Ok(a), Ok(b)) => (a..=b).contains(&port),
                _ => false,
            }
        })
    };
    (low + (high - low) / 2..=high)
        .find(|&port| !is_reserved(port))
        .expect("an unreserved port in the ephemeral range")
}

#[test]
fn names_a_listen_port_inside_the_ephemeral_range() {
    let port = ephemeral_port();
    // Limits small enough that any test machine's descriptor limit covers them, so the only
    // problem is the port, and a warning alone leaves the exit code at 0.
    let config = ConfigFile::new(&format!(
        "listen = \"127.0.0.1:{port}\"\nadmin = \"\"\n\n[downstream]\nmax_connections = 100\n\
             fd_reserve = 64\n"
    ));
    let output = run(Command::new(RINGWAY).args(["doctor", "--config", config.path()]));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find(|line| line.starts_with("WARN  listen port:"))
        .unwrap_or_else(|| panic!("no listen port warning\n{}", describe(&output)));
    assert!(
        line.contains(&port.to_string()) && line.contains("ip_local_port_range"),
        "{}",
        describe(&output)
    );
    assert!(
        stdout.contains("ip_local_reserved_ports="),
        "the fix names the reservation\n{}",
        describe(&output)
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
}

#[test]
fn fails_under_a_descriptor_limit_below_max_connections() {
    // Defaults: max_connections 10000 + fd_reserve 256 need 10256 descriptors.
    let config = ConfigFile::new("");
    // `ulimit -n` with neither -H nor -S sets both limits, in dash and bash alike; lowering the
    // hard limit needs no privilege. sh, not a pre_exec hook: that would need unsafe code.
    let output = run(Command::new("sh").args([
        "-c",
        r#"ulimit -n 512 || exit 99; exec "$0" doctor --config "$1""#,
        RINGWAY,
        config.path(),
    ]));
    assert_ne!(output.status.code(), Some(99), "ulimit -n 512 failed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout
            .lines()
            .any(|line| line.starts_with("FAIL  nofile:") && line.contains("10256")),
        "{}",
        describe(&output)
    );
    assert!(
        stdout.contains("fix: ") && stdout.contains("LimitNOFILE=10256"),
        "{}",
        describe(&output)
    );
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
}

#[test]
fn refuses_an_unknown_profile() {
    let output = run(Command::new(RINGWAY).args(["doctor", "--profile", "no-such-profile"]));
    assert!(!output.status.success(), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no-such-profile") && stderr.contains("gateway-lan"),
        "{}",
        describe(&output)
    );
}

#[test]
fn compares_a_profile_with_the_live_sysctls() {
    let output = run(Command::new(RINGWAY).args(["doctor", "--profile", "loopback-benchmark"]));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("profile: loopback-benchmark has "),
        "{}",
        describe(&output)
    );
}
