//! Child processes of the runner: spawn with logs, wait until ready, stop, and a tiny RESP
//! client for Redis.
//!
//! Owns: process lifetime (a `Proc` is stopped when dropped, so no run leaves a process
//! behind) and readiness checks. It must not know which system a process is.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process that is stopped (SIGTERM, then SIGKILL after 3 s) when dropped.
pub struct Proc {
    pub name: String,
    pub child: Child,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
}

impl Proc {
    /// Spawn `cmd` with stdout and stderr appended to `log`, optionally under
    /// `taskset -c cpus`.
    pub fn spawn(
        name: &str,
        cpus: Option<&str>,
        cmd: &[String],
        log: &Path,
    ) -> Result<Proc, String> {
        let out = File::create(log).map_err(|e| format!("create {}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let mut argv: Vec<String> = Vec::new();
        if let Some(c) = cpus {
            argv.extend(["taskset".into(), "-c".into(), c.into()]);
        }
        argv.extend(cmd.iter().cloned());
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", argv[0]))?;
        Ok(Proc {
            name: name.into(),
            child,
            log: log.into(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` if it has exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(st)) => Some(st.to_string()),
            Ok(None) => None,
            Err(e) => Some(e.to_string()),
        }
    }

    /// The last `n` lines of its log, for error reports.
    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.log, n)
    }

    /// Wait for a log line containing `listening on ADDR`; return ADDR.
    pub fn wait_listening(&mut self, timeout: Duration) -> Result<SocketAddr, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(addr) = text.lines().find_map(listening_addr) {
                return Ok(addr);
            }
            if let Some(st) = self.exited() {
                return Err(format!(
                    "{} exited ({st}): {}",
                    self.name,
                    self.log_tail(15)
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} printed no `listening on` within {timeout:?}: {}",
                    self.name,
                    self.log_tail(15)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait until `addr` accepts TCP connections.
    pub fn wait_port(&mut self, addr: SocketAddr, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if let Some(st) = self.exited() {
                return Err(format!(
                    "{} exited ({st}): {}",
                    self.name,
                    self.log_tail(15)
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} not accepting on {addr} within {timeout:?}",
                    self.name
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, wait up to 3 s, then SIGKILL.
    pub fn stop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The address in a `... listening on ADDR ...` line (the ringway and echo contract).
pub fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("listening on ")? + "listening on ".len()..];
    rest.split_whitespace().next()?.parse().ok()
}

pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Send one RESP command to Redis and return the first reply line.
pub fn redis_cmd(addr: SocketAddr, args: &[&str]) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))
        .map_err(|e| format!("redis {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok();
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).map_err(|e| format!("redis reply: {e}"))?;
    let reply = String::from_utf8_lossy(&buf[..n]).to_string();
    Ok(reply.lines().next().unwrap_or("").to_string())
}

/// A free TCP port on 127.0.0.1 at or above `from` and below 32768 (below the ephemeral range,
/// docs/background.md, "TCP practices", 2), skipping `taken`.
pub fn free_port(from: u16, taken: &[u16]) -> Result<u16, String> {
    for p in from..32768 {
        if taken.contains(&p) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return Ok(p);
        }
    }
    Err(format!("no free port in {from}..32768"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_listening_address() {
        let l = "ringway: listening on 127.0.0.1:21234 (2 shards)";
        assert_eq!(listening_addr(l), Some("127.0.0.1:21234".parse().unwrap()));
        assert_eq!(listening_addr("nothing here"), None);
    }
}
