//! The command line as the README ("Command line") states it: `--help` lists every flag,
//! `check-config` names the bad field of a bad file, and SIGTERM stops a
//! running gateway.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use ringway_testkit::{Gateway, RedisServer};

const RINGWAY: &str = env!("CARGO_BIN_EXE_ringway");

/// A config file with `contents` in the temp dir, removed on drop.
struct ConfigFile(PathBuf);

impl ConfigFile {
    fn new(name: &str, contents: &str) -> ConfigFile {
        let path =
            std::env::temp_dir().join(format!("ringway-test-{}-{name}.toml", std::process::id()));
        std::fs::write(&path, contents).expect("write the config file");
        ConfigFile(path)
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs ringway with `args`, killing it if it does not end within 20 s.
fn ringway(args: &[&str]) -> Output {
    let child = Command::new(RINGWAY)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn ringway");
    let pid = child.id();
    let (done, waited) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match waited.recv_timeout(Duration::from_secs(20)) {
        Ok(output) => output.expect("wait for ringway"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("ringway {args:?} did not exit within 20 s");
        }
    }
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn help_lists_every_flag() {
    let output = ringway(&["--help"]);
    assert!(output.status.success(), "{output:?}");
    let help = text(&output);
    for flag in [
        "--listen",
        "--redis",
        "--shards",
        "--route-header",
        "--route-prefix",
        "--pool-max-connections",
        "--config",
        "check-config",
    ] {
        assert!(help.contains(flag), "--help mentions {flag}:\n{help}");
    }
}

#[test]
fn check_config_names_the_bad_field() {
    let file = ConfigFile::new("bad", "[redis]\nlookup_timeout_ms = \"soon\"\n");
    let output = ringway(&["check-config", file.0.to_str().unwrap()]);
    assert!(
        !output.status.success(),
        "a bad file is rejected: {output:?}"
    );
    let said = text(&output);
    assert!(
        said.contains("lookup_timeout_ms"),
        "names the field: {said}"
    );
}

#[test]
fn check_config_rejects_unknown_and_unparsable_files() {
    let unknown = ConfigFile::new("unknown", "[redis]\nlookup_timeout = 5\n");
    let output = ringway(&["check-config", unknown.0.to_str().unwrap()]);
    assert!(
        !output.status.success(),
        "an unknown field is rejected: {output:?}"
    );
    assert!(
        text(&output).contains("lookup_timeout"),
        "{}",
        text(&output)
    );

    let broken = ConfigFile::new("broken", "[redis\n");
    let output = ringway(&["check-config", broken.0.to_str().unwrap()]);
    assert!(
        !output.status.success(),
        "broken TOML is rejected: {output:?}"
    );

    let missing = std::env::temp_dir().join("ringway-test-no-such-file.toml");
    let output = ringway(&["check-config", missing.to_str().unwrap()]);
    assert!(
        !output.status.success(),
        "a missing file is rejected: {output:?}"
    );
}

#[test]
fn check_config_accepts_a_good_file() {
    let file = ConfigFile::new("good", "shards = 2\n\n[redis]\nlookup_timeout_ms = 250\n");
    let output = ringway(&["check-config", file.0.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "a good file passes: {}",
        text(&output)
    );
}

#[test]
fn sigterm_stops_the_gateway() {
    let redis = RedisServer::start();
    let mut gateway = Gateway::start(RINGWAY, redis.addr(), &["--shards", "2"]);
    let addr = gateway.addr();
    assert!(
        std::net::TcpStream::connect(addr).is_ok(),
        "it is listening"
    );
    let status = gateway.stop();
    // Exiting by itself or by SIGTERM's default action both count; another
    // signal (SIGSEGV, SIGABRT) means it crashed on the way out.
    use std::os::unix::process::ExitStatusExt;
    assert!(
        matches!(status.signal(), None | Some(15)),
        "stopped, not crashed: {status:?}"
    );
    // The kernel tears an exited process's io_uring down asynchronously, and an accept that
    // was in flight keeps the listening socket alive until it is cancelled: allow it a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while std::net::TcpStream::connect(addr).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "it still listens 2 s after exiting"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
