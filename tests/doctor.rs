//! `ringway doctor` run as a binary on this machine: a listen port inside the ephemeral range is
//! named with its fix, a descriptor limit too low for `max_connections` fails the run, an
//! unknown profile is refused, and the TLS files a config names are checked (made at run time
//! by the testkit's rcgen PKI: good, mismatched, expired, expiring, not yet valid, missing).

use std::process::{Command, Output, Stdio};

use ringway_testkit::pki::{written, PemFiles};
use ringway_testkit::{ConfigFile, Pem, Pki};

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

/// Runs `ringway doctor` on a config whose `[downstream.tls]` serves `server` and trusts
/// `pki`'s CA for clients and targets; limits small enough that only TLS findings can fail.
fn doctor_with_tls(pki: &Pki, server: &PemFiles) -> (Output, String) {
    let ca = pki.write_ca("doctor");
    doctor_with_files(server.cert(), server.key(), ca.as_str())
}

fn doctor_with_files(cert: &str, key: &str, ca: &str) -> (Output, String) {
    let config = ConfigFile::new(&format!(
        "listen = \"127.0.0.1:0\"\nadmin = \"\"\n\n[downstream]\nmax_connections = 100\n\
         fd_reserve = 64\n\n[downstream.tls]\nlisten = \"127.0.0.1:0\"\ncert = \"{cert}\"\n\
         key = \"{key}\"\nclient_ca = \"{ca}\"\n\n[upstream.tls]\nca = \"{ca}\"\n"
    ));
    let output = run(Command::new(RINGWAY).args(["doctor", "--config", config.path()]));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    (output, stdout)
}

/// The line for `check` at `severity` that contains every one of `words`, and the line after
/// it (its fix, if any).
fn line_with<'a>(
    stdout: &'a str,
    severity: &str,
    check: &str,
    words: &[&str],
) -> Option<(&'a str, &'a str)> {
    let lines: Vec<&str> = stdout.lines().collect();
    let prefix = format!("{severity:<6}{check}: ");
    lines.iter().enumerate().find_map(|(i, line)| {
        (line.starts_with(&prefix) && words.iter().all(|w| line.contains(w)))
            .then(|| (*line, lines.get(i + 1).copied().unwrap_or("")))
    })
}

fn tls_failures(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter(|l| l.starts_with("FAIL") && l.contains("tls"))
        .collect()
}

#[test]
fn passes_a_good_certificate_and_key() {
    let pki = Pki::new("doctor-ca");
    let server = Pki::write(&pki.server(), "doctor-good");
    let (output, stdout) = doctor_with_tls(&pki, &server);
    let why = describe(&output);
    assert!(tls_failures(&stdout).is_empty(), "{why}");
    assert!(
        line_with(
            &stdout,
            "OK",
            "downstream.tls.cert",
            &[server.cert(), "days left"]
        )
        .is_some(),
        "{why}"
    );
    assert!(
        line_with(
            &stdout,
            "OK",
            "downstream.tls.cert",
            &[server.cert(), "covers DNS:localhost, IP:127.0.0.1"]
        )
        .is_some(),
        "the names it covers are reported\n{why}"
    );
    assert!(
        line_with(
            &stdout,
            "OK",
            "downstream.tls.key",
            &[server.key(), "matches"]
        )
        .is_some(),
        "{why}"
    );
    for field in ["downstream.tls.client_ca", "upstream.tls.ca"] {
        assert!(
            line_with(&stdout, "OK", field, &["CN=doctor-ca"]).is_some(),
            "{field}\n{why}"
        );
    }
    assert_eq!(output.status.code(), Some(0), "{why}");
}

#[test]
fn fails_a_key_that_does_not_match_naming_both_files() {
    let pki = Pki::new("doctor-ca");
    let server = Pki::write(&pki.mismatched_server(), "doctor-mismatch");
    let (output, stdout) = doctor_with_tls(&pki, &server);
    let why = describe(&output);
    let (line, fix) = line_with(
        &stdout,
        "FAIL",
        "downstream.tls.key",
        &[server.key(), server.cert(), "does not match"],
    )
    .unwrap_or_else(|| panic!("no mismatch failure\n{why}"));
    assert!(
        fix.contains("fix: ") && fix.contains(server.cert()) && fix.contains(server.key()),
        "{line}\n{fix}"
    );
    assert_eq!(output.status.code(), Some(1), "{why}");
}

#[test]
fn fails_an_expired_certificate() {
    let pki = Pki::new("doctor-ca");
    let server = Pki::write(&pki.expired_server(), "doctor-expired");
    let (output, stdout) = doctor_with_tls(&pki, &server);
    let why = describe(&output);
    let (_, fix) = line_with(
        &stdout,
        "FAIL",
        "downstream.tls.cert",
        &[server.cert(), "expired on 2020-01-01"],
    )
    .unwrap_or_else(|| panic!("no expiry failure\n{why}"));
    assert!(
        fix.contains(&format!(
            "fix: renew {}: it expired on 2020-01-01",
            server.cert()
        )),
        "{fix}\n{why}"
    );
    assert_eq!(output.status.code(), Some(1), "{why}");
}

#[test]
fn warns_of_a_certificate_expiring_in_five_days() {
    let pki = Pki::new("doctor-ca");
    let server = Pki::write(&pki.server_expiring_in(5), "doctor-expiring");
    let (output, stdout) = doctor_with_tls(&pki, &server);
    let why = describe(&output);
    // Five days less the seconds since the certificate was made: "in 4 days", or "in 5 days"
    // when both fall in the same second (X.509 times are whole seconds).
    let (_, fix) = ["in 4 days", "in 5 days"]
        .iter()
        .find_map(|days| {
            line_with(
                &stdout,
                "WARN",
                "downstream.tls.cert",
                &[server.cert(), "expires on", days],
            )
        })
        .unwrap_or_else(|| panic!("no expiry warning\n{why}"));
    assert!(
        fix.contains(&format!("fix: renew {}: it expires on", server.cert())),
        "{fix}\n{why}"
    );
    assert!(tls_failures(&stdout).is_empty(), "{why}");
    assert_eq!(output.status.code(), Some(0), "a warning alone: {why}");
}

#[test]
fn fails_a_certificate_not_yet_valid() {
    let pki = Pki::new("doctor-ca");
    let server = Pki::write(&pki.server_not_yet_valid(3), "doctor-future");
    let (output, stdout) = doctor_with_tls(&pki, &server);
    let why = describe(&output);
    assert!(
        line_with(
            &stdout,
            "FAIL",
            "downstream.tls.cert",
            &[server.cert(), "is not valid before"]
        )
        .is_some(),
        "{why}"
    );
    assert_eq!(output.status.code(), Some(1), "{why}");
}

#[test]
fn fails_an_unreadable_file_naming_it() {
    let pki = Pki::new("doctor-ca");
    let server = Pki::write(&pki.server(), "doctor-unreadable");
    let missing = format!("{}.gone", server.cert());
    let (output, stdout) = doctor_with_files(&missing, server.key(), pki.write_ca("d").as_str());
    let why = describe(&output);
    let (_, fix) = line_with(
        &stdout,
        "FAIL",
        "downstream.tls.cert",
        &[&missing, "cannot read"],
    )
    .unwrap_or_else(|| panic!("no unreadable failure\n{why}"));
    assert!(fix.contains(&missing), "{fix}");
    assert_eq!(output.status.code(), Some(1), "{why}");

    // A file that is there but holds no certificate: a key where the CA should be.
    let not_a_ca = written("doctor-not-a-ca.pem", &pki.server().key);
    let (output, stdout) = doctor_with_files(server.cert(), server.key(), not_a_ca.as_str());
    let why = describe(&output);
    assert!(
        line_with(&stdout, "FAIL", "upstream.tls.ca", &[not_a_ca.as_str()]).is_some(),
        "{why}"
    );
    assert_eq!(output.status.code(), Some(1), "{why}");
}

#[test]
fn checks_the_client_certificate_for_targets() {
    let pki = Pki::new("doctor-ca");
    let Pem { cert, key } = pki.client("ringway-gateway");
    let cert = written("doctor-client-cert.pem", &cert);
    let key = written("doctor-client-key.pem", &key);
    let config = ConfigFile::new(&format!(
        "listen = \"127.0.0.1:0\"\nadmin = \"\"\n\n[downstream]\nmax_connections = 100\n\
         fd_reserve = 64\n\n[upstream.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.as_str(),
        key.as_str()
    ));
    let output = run(Command::new(RINGWAY).args(["doctor", "--config", config.path()]));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let why = describe(&output);
    assert!(
        line_with(
            &stdout,
            "OK",
            "upstream.tls.cert",
            &[cert.as_str(), "identity ringway-gateway"]
        )
        .is_some(),
        "{why}"
    );
    assert!(
        line_with(
            &stdout,
            "OK",
            "upstream.tls.key",
            &[key.as_str(), "matches"]
        )
        .is_some(),
        "{why}"
    );
}

#[test]
fn checks_the_redis_tls_files() {
    let pki = Pki::new("doctor-redis-ca");
    let ca = pki.write_ca("doctor-redis");
    let client = Pki::write(&pki.server_expiring_in(5), "doctor-redis-client");
    let config = ConfigFile::new(&format!(
        "listen = \"127.0.0.1:0\"\nadmin = \"\"\n\n[downstream]\nmax_connections = 100\n\
         fd_reserve = 64\n\n[redis]\naddr = \"rediss://127.0.0.1:6380\"\n\n[redis.tls]\n\
         ca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
        ca.as_str(),
        client.cert(),
        client.key()
    ));
    let output = run(Command::new(RINGWAY).args(["doctor", "--config", config.path()]));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let why = describe(&output);
    assert!(
        line_with(
            &stdout,
            "OK",
            "redis.tls.ca",
            &[ca.as_str(), "CN=doctor-redis-ca"]
        )
        .is_some(),
        "{why}"
    );
    assert!(
        line_with(
            &stdout,
            "WARN",
            "redis.tls.cert",
            &[client.cert(), "expires on"]
        )
        .is_some(),
        "{why}"
    );
    assert!(
        line_with(&stdout, "OK", "redis.tls.key", &[client.key(), "matches"]).is_some(),
        "{why}"
    );
}
