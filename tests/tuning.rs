//! The sysctl profiles and their script, run as a user would: `tuning/selftest` (read-only
//! checks only), `tuning/apply PROFILE` in show mode, and `ringway doctor` on what
//! tests/doctor.rs leaves out (too many shards; one line per finding with a profile).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use ringway_testkit::ConfigFile;

const RINGWAY: &str = env!("CARGO_BIN_EXE_ringway");

/// `tuning/` in this checkout.
fn tuning_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tuning")
}

/// Why these tests cannot run here, if they cannot: the scripts read /proc/sys and need bash.
fn skip_reason() -> Option<String> {
    if !cfg!(target_os = "linux") {
        return Some("tuning/ is for Linux (/proc/sys)".into());
    }
    match Command::new("bash").arg("--version").output() {
        Ok(output) if output.status.success() => None,
        _ => Some("bash is not installed".into()),
    }
}

/// Runs `command` with no stdin and without the variable that lets selftest change the machine.
fn output(command: &mut Command) -> Output {
    command
        .env_remove("RINGWAY_TUNING_SELFTEST_APPLY")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"))
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The keys a profile sets, in file order: its `key = value` lines.
fn profile_keys(name: &str) -> Vec<String> {
    let path = tuning_dir().join(format!("{name}.conf"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .map(|l| {
            l.split_once('=')
                .unwrap_or_else(|| panic!("not key = value: {l}"))
                .0
                .trim()
                .to_string()
        })
        .collect()
}

macro_rules! skip_unless_linux_with_bash {
    () => {
        if let Some(why) = skip_reason() {
            eprintln!("skipped: {why}");
            return;
        }
    };
}

#[test]
fn selftest_passes() {
    skip_unless_linux_with_bash!();
    let out = output(Command::new("bash").arg(tuning_dir().join("selftest")));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        !stdout.lines().any(|l| l.starts_with("FAIL")),
        "{}",
        describe(&out)
    );
    assert!(
        stdout.lines().filter(|l| l.starts_with("ok ")).count() >= 3,
        "selftest reports its checks: {}",
        describe(&out)
    );
}

#[test]
fn apply_shows_every_key_of_a_profile() {
    skip_unless_linux_with_bash!();
    let keys = profile_keys("gateway-lan");
    assert!(keys.len() >= 10, "gateway-lan sets {keys:?}");
    let out = output(
        Command::new("bash")
            .arg(tuning_dir().join("apply"))
            .arg("gateway-lan"),
    );
    // Show mode changes nothing; 1 would mean "differs" (what --check says).
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}",
        describe(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    for key in &keys {
        let rows: Vec<&str> = stdout
            .lines()
            .filter(|l| l.split_whitespace().next() == Some(key.as_str()))
            .collect();
        assert_eq!(rows.len(), 1, "one row for {key}\n{}", describe(&out));
    }
    assert!(
        stdout.contains(&format!("gateway-lan: {} key(s)", keys.len())),
        "summary counts every key\n{}",
        describe(&out)
    );
}

#[test]
fn apply_refuses_an_unknown_profile() {
    skip_unless_linux_with_bash!();
    let out = output(
        Command::new("bash")
            .arg(tuning_dir().join("apply"))
            .arg("nope"),
    );
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nope"),
        "names the profile it could not find\n{}",
        describe(&out)
    );
}

/// Doctor's output lines: each a finding (`SEVERITY  check: detail`) or its `      fix: ...`.
fn findings(out: &Output) -> Vec<(String, String)> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut found = Vec::new();
    for line in stdout.lines() {
        if line.starts_with("      fix: ") {
            assert!(
                !found.is_empty(),
                "a fix before any finding\n{}",
                describe(out)
            );
            continue;
        }
        let (severity, rest) = line
            .split_once(' ')
            .unwrap_or_else(|| panic!("not a finding: {line:?}\n{}", describe(out)));
        assert!(
            ["OK", "WARN", "FAIL"].contains(&severity),
            "unknown severity in {line:?}\n{}",
            describe(out)
        );
        let rest = rest.trim_start();
        let (check, _) = rest
            .split_once(": ")
            .unwrap_or_else(|| panic!("no `check: detail` in {line:?}\n{}", describe(out)));
        found.push((severity.to_string(), line.to_string()));
        assert!(!check.is_empty(), "{line:?}");
    }
    found
}

#[test]
fn doctor_warns_about_more_shards_than_cores() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(cores < 64, "this test needs fewer than 64 cores");
    let config = ConfigFile::new("shards = 64\n");
    let out = output(Command::new(RINGWAY).args(["doctor", "--config", config.path()]));
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}",
        describe(&out)
    );
    let found = findings(&out);
    let shards: Vec<&(String, String)> = found
        .iter()
        .filter(|(_, line)| line.contains(" shards: "))
        .collect();
    assert_eq!(shards.len(), 1, "one shards finding\n{}", describe(&out));
    let (severity, line) = shards[0];
    assert_eq!(severity, "WARN", "{}", describe(&out));
    assert!(
        line.contains(&format!("64 shards on {cores} available cores")),
        "{}",
        describe(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "fix: set shards = 0 (one per core) or at most {cores}"
        )),
        "{}",
        describe(&out)
    );
    // A warning alone does not fail the run: exit 1 only with a FAIL.
    let failed = found.iter().any(|(s, _)| s == "FAIL");
    assert_eq!(
        out.status.code(),
        Some(i32::from(failed)),
        "{}",
        describe(&out)
    );
}

#[test]
fn doctor_prints_a_line_per_profile_finding() {
    let keys = profile_keys("loopback-benchmark");
    let out = output(Command::new(RINGWAY).args(["doctor", "--profile", "loopback-benchmark"]));
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}",
        describe(&out)
    );
    let found = findings(&out);
    let failed = found.iter().any(|(s, _)| s == "FAIL");
    assert_eq!(
        out.status.code(),
        Some(i32::from(failed)),
        "{}",
        describe(&out)
    );
    for check in [
        "io_uring:",
        "listen port:",
        "admin port:",
        "somaxconn:",
        "shards:",
    ] {
        assert!(
            found.iter().any(|(_, line)| line.contains(check)),
            "no {check} finding\n{}",
            describe(&out)
        );
    }

    // The summary, then one line for each key not in force (and each optional key absent).
    let profile: Vec<&String> = found
        .iter()
        .map(|(_, line)| line)
        .filter(|line| line.split_whitespace().nth(1) == Some("profile:"))
        .collect();
    let summary = profile
        .first()
        .unwrap_or_else(|| panic!("no profile finding\n{}", describe(&out)));
    let prefix = "profile: loopback-benchmark has ";
    let counts = &summary[summary.find(prefix).expect("the summary first") + prefix.len()..];
    let (fine, total) = counts
        .strip_suffix(" settings in force")
        .and_then(|c| c.split_once(" of "))
        .unwrap_or_else(|| panic!("summary {summary:?}"));
    let (fine, total): (usize, usize) = (fine.parse().unwrap(), total.parse().unwrap());
    assert_eq!(total, keys.len(), "the summary counts every key: {summary}");
    let per_key = &profile[1..];
    let named: Vec<&String> = keys
        .iter()
        .filter(|key| {
            per_key
                .iter()
                .any(|line| line.contains(&format!(" {key} ")))
        })
        .collect();
    assert_eq!(
        named.len(),
        per_key.len(),
        "each profile line names one key of the profile\n{}",
        describe(&out)
    );
    let absent_optional = per_key.iter().filter(|l| l.contains("(optional)")).count();
    assert_eq!(
        per_key.len() - absent_optional,
        total - fine,
        "one line per key not in force\n{}",
        describe(&out)
    );
}
