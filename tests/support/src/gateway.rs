//! The `ringway` binary as a child process: it owns the process, finds the
//! address it listens on from its stderr (the contract's `listening on <addr>`
//! line), forwards the rest of stderr to the test's output, and stops it. Also
//! the files it is given ([`ConfigFile`], [`TempPath`]).

use std::fmt::Display;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long ringway has to print `listening on`.
const READY_WITHIN: Duration = Duration::from_secs(20);
/// How long [`Gateway::stop`] waits after SIGTERM.
const STOP_WITHIN: Duration = Duration::from_secs(10);
/// The marker the contract promises on stderr, followed by the address.
const LISTENING: &str = "listening on ";

/// A running `ringway`. Killed when dropped.
#[derive(Debug)]
pub struct Gateway {
    /// `None` once stopped.
    child: Option<Child>,
    pid: u32,
    /// Where clients connect: the address ringway printed.
    addr: SocketAddr,
    /// Everything ringway wrote to stderr so far.
    log: Arc<Mutex<String>>,
    /// The admin port ringway printed (`admin on http://<addr>/`), if it has one.
    admin: Option<SocketAddr>,
    /// The TLS port ringway printed (`TLS on <addr>`), if it has one.
    tls: Option<SocketAddr>,
}

impl Gateway {
    /// Starts `bin --listen 127.0.0.1:0 --redis <redis_addr> <extra_args>` and
    /// waits until it prints `listening on <addr>`. Panics, with all it
    /// printed, if it exits first or stays silent for 20 s.
    pub fn start(bin: &str, redis_addr: impl Display, extra_args: &[&str]) -> Gateway {
        Gateway::start_with(bin, "127.0.0.1:0", redis_addr, extra_args)
    }

    /// As [`Gateway::start`], listening on `listen` (`ip:port`) instead of port 0.
    pub fn start_with(
        bin: &str,
        listen: &str,
        redis_addr: impl Display,
        extra_args: &[&str],
    ) -> Gateway {
        Gateway::start_with_env(bin, listen, redis_addr, extra_args, &[])
    }

    /// As [`Gateway::start_with`], with environment variables set for ringway (e.g. the one
    /// `redis.password_env` names).
    pub fn start_with_env(
        bin: &str,
        listen: &str,
        redis_addr: impl Display,
        extra_args: &[&str],
        env: &[(String, String)],
    ) -> Gateway {
        let redis_addr = redis_addr.to_string();
        let mut command = Command::new(bin);
        command.envs(env.iter().map(|(k, v)| (k, v)));
        command.args(["--listen", listen, "--redis", &redis_addr]);
        // Gateways run side by side in tests: give each its own admin port.
        if !extra_args.contains(&"--admin") {
            command.args(["--admin", "127.0.0.1:0"]);
        }
        command
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {bin}: {e}"));
        let pid = child.id();
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(String::new()));

        let (found, address) = mpsc::channel::<String>();
        let reader_log = log.clone();
        std::thread::Builder::new()
            .name(format!("ringway-{pid}-stderr"))
            .spawn(move || {
                let mut found = Some(found);
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    eprintln!("[ringway {pid}] {line}");
                    {
                        let mut log = reader_log.lock().unwrap();
                        log.push_str(&line);
                        log.push('\n');
                    }
                    if let Some(addr) = listening_addr(&line) {
                        if let Some(found) = found.take() {
                            let _ = found.send(addr.to_owned());
                        }
                    }
                }
                // Dropping `found` here tells a waiting start() that ringway
                // closed stderr (exited) without saying where it listens.
            })
            .expect("spawn the stderr reader");

        let started = Instant::now();
        let printed = address.recv_timeout(READY_WITHIN);
        let fail = |child: &mut Child, why: String| -> ! {
            let _ = child.kill();
            let status = child.wait().ok();
            // Let the reader finish copying what was printed.
            std::thread::sleep(Duration::from_millis(100));
            panic!(
                "ringway ({bin} --listen {listen} --redis {redis_addr} {}) {why} \
                 after {:?}; exit status {status:?}; it printed:\n{}",
                extra_args.join(" "),
                started.elapsed(),
                log.lock().unwrap()
            )
        };
        let printed = match printed {
            Ok(printed) => printed,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                fail(&mut child, format!("did not print `{LISTENING}<addr>`"))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                fail(&mut child, "exited before it was listening".into())
            }
        };
        let addr = match printed.parse::<SocketAddr>() {
            Ok(addr) => addr,
            Err(e) => fail(
                &mut child,
                format!("printed a bad address {printed:?} ({e})"),
            ),
        };
        // The admin line comes before `listening on`.
        let admin = admin_addr(&log.lock().unwrap());
        let tls = tls_addr(&log.lock().unwrap());
        Gateway {
            child: Some(child),
            pid,
            addr,
            log,
            admin,
            tls,
        }
    }

    /// The admin port's address. Panics if ringway runs without one.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.expect("ringway printed no admin address")
    }

    /// The TLS port's address. Panics if ringway runs without one.
    pub fn tls_addr(&self) -> SocketAddr {
        self.tls.expect("ringway printed no `TLS on <addr>`")
    }

    /// `GET path` on the admin port: (HTTP status, body).
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        crate::admin::request(self.admin_addr(), "GET", path)
    }

    /// `POST path` on the admin port: (HTTP status, body).
    pub fn admin_post(&self, path: &str) -> (u16, String) {
        crate::admin::request(self.admin_addr(), "POST", path)
    }

    /// `GET /metrics`, which must answer 200: the Prometheus text.
    pub fn metrics(&self) -> String {
        let (status, body) = self.admin_get("/metrics");
        assert_eq!(status, 200, "GET /metrics: {body}");
        body
    }

    /// Metric `name` from a fresh scrape, summed over the series whose labels include every
    /// `labels` pair (over all shards when `labels` is empty).
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        crate::admin::metric_sum(&self.metrics(), name, labels)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Everything ringway printed to stderr so far.
    pub fn stderr(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends `SIG<name>` (e.g. `"TERM"`) without waiting for anything.
    pub fn signal(&self, name: &str) {
        signal(self.pid, name);
    }

    /// Waits up to `limit` for the process to exit on its own; `None` if it is still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `Some(status)` if the process has exited (and was reaped here).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        child.try_wait().ok().flatten()
    }

    /// Sends SIGTERM and waits for the exit. Panics if ringway is still
    /// running after 10 s (the contract says SIGTERM stops it); it is then killed.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("gateway already stopped");
        if let Some(status) = child.try_wait().expect("wait for ringway") {
            return status;
        }
        signal(self.pid, "TERM");
        let deadline = Instant::now() + STOP_WITHIN;
        loop {
            if let Some(status) = child.try_wait().expect("wait for ringway") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "ringway (pid {}) ignored SIGTERM for {STOP_WITHIN:?}",
                    self.pid
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A config file for `--config`, in the temp directory; removed when dropped.
#[derive(Debug)]
pub struct ConfigFile {
    file: TempPath,
}

impl ConfigFile {
    /// Writes `toml` to a file named after this process and a counter.
    pub fn new(toml: &str) -> ConfigFile {
        let file = TempPath::new("config.toml");
        std::fs::write(file.path(), toml)
            .unwrap_or_else(|e| panic!("writing {}: {e}", file.as_str()));
        ConfigFile { file }
    }

    pub fn path(&self) -> &str {
        self.file.as_str()
    }
}

/// A path in the temp directory for a file a test or ringway writes (a config, an access
/// log), unique to this process and call; whatever is there is removed when dropped.
#[derive(Debug)]
pub struct TempPath {
    path: PathBuf,
}

impl TempPath {
    /// A fresh path ending in `name`; nothing is there yet.
    pub fn new(name: &str) -> TempPath {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let path =
            std::env::temp_dir().join(format!("ringway-test-{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        TempPath { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn as_str(&self) -> &str {
        self.path.to_str().expect("the temp dir is UTF-8")
    }

    /// The file's lines; none when it does not exist.
    pub fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.path)
            .map(|text| text.lines().map(str::to_owned).collect())
            .unwrap_or_default()
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The address in the first `admin on http://<addr>/` line of `log`.
fn admin_addr(log: &str) -> Option<SocketAddr> {
    const ADMIN: &str = "admin on http://";
    log.lines().find_map(|line| {
        let start = line.find(ADMIN)? + ADMIN.len();
        line[start..].split('/').next()?.parse().ok()
    })
}

fn tls_addr(log: &str) -> Option<SocketAddr> {
    const TLS: &str = "TLS on ";
    log.lines().find_map(|line| {
        let start = line.find(TLS)? + TLS.len();
        line[start..].split_whitespace().next()?.parse().ok()
    })
}

/// The address in a `... listening on <addr> ...` line, if it is one.
fn listening_addr(line: &str) -> Option<&str> {
    let start = line.find(LISTENING)? + LISTENING.len();
    let addr = line[start..].split_whitespace().next()?;
    Some(addr)
}

/// Sends `SIG<name>` to `pid` with kill(1): the testkit stays free of `unsafe`.
/// A failure (the process just exited) shows in the wait that follows.
fn signal(pid: u32, name: &str) {
    match Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
    {
        Ok(status) if status.success() => {}
        other => eprintln!("kill -{name} {pid}: {other:?}"),
    }
}

/// Runs `bin doctor --config config` and returns its first line that mentions `check` (e.g.
/// "redis cluster"); panics, with the whole output, if there is none.
pub fn doctor_finding(bin: &str, config: &str, check: &str) -> String {
    let output = Command::new(bin)
        .args(["doctor", "--config", config])
        .output()
        .unwrap_or_else(|e| panic!("run {bin} doctor: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find(|l| l.contains(check))
        .unwrap_or_else(|| panic!("no {check} finding:\n{stdout}"))
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::listening_addr;

    #[test]
    fn finds_the_address() {
        assert_eq!(
            listening_addr("ringway: listening on 127.0.0.1:21234 (2 shards)"),
            Some("127.0.0.1:21234")
        );
        assert_eq!(
            listening_addr("ringway: listening on 127.0.0.1:1"),
            Some("127.0.0.1:1")
        );
        assert_eq!(listening_addr("ringway: starting"), None);
    }
}
