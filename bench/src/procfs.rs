//! What the runner and the load generator read from `/proc`: CPU time of a process tree,
//! peak RSS, and the TCP state table.
//!
//! Owns: parsing `/proc/<pid>/stat`, `/proc/<pid>/status`, `/proc/net/tcp{,6}`. It must not
//! start or signal processes (the runner does that).

use std::collections::BTreeMap;
use std::fs;

use serde::Serialize;

/// Clock ticks per second of `/proc/<pid>/stat`'s utime/stime. Linux fixes USER_HZ at 100 on
/// every architecture this harness runs on; `getconf CLK_TCK` is consulted once to be sure.
pub fn clk_tck() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|v| *v > 0.0)
        .unwrap_or(100.0)
}

/// The fields of `/proc/<pid>/stat` this harness uses, in clock ticks.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stat {
    pub ppid: u32,
    /// utime + stime of the process itself (all its threads).
    pub own: u64,
    /// cutime + cstime: children that exited and were waited for.
    pub reaped_children: u64,
}

/// Parse `/proc/<pid>/stat`; `None` if the process is gone.
pub fn stat(pid: u32) -> Option<Stat> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: split after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): field n is f[n - 3].
    let num = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    Some(Stat {
        ppid: num(4)? as u32,
        own: num(14)? + num(15)?,
        reaped_children: num(16)? + num(17)?,
    })
}

/// `pid` and all its live descendants.
pub fn tree(pid: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for e in dir.flatten() {
            if let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) {
                if let Some(st) = stat(p) {
                    parent_of.push((p, st.ppid));
                }
            }
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        out.extend(
            parent_of
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    out
}

/// CPU seconds (user + system) used so far by `pid`'s whole tree: live descendants plus the
/// children the root has reaped. An nginx master's workers are counted this way.
pub fn tree_cpu_seconds(pid: u32) -> f64 {
    let tck = clk_tck();
    let mut ticks = 0;
    for (i, p) in tree(pid).into_iter().enumerate() {
        if let Some(st) = stat(p) {
            ticks += st.own;
            if i == 0 {
                ticks += st.reaped_children;
            }
        }
    }
    ticks as f64 / tck
}

/// Busy CPU seconds of the whole machine so far (all cores: everything but idle and iowait,
/// from the first line of `/proc/stat`).
pub fn machine_busy_seconds() -> f64 {
    let s = fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = s.lines().next() else {
        return 0.0;
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal [guest guest_nice, already in user/nice]
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle) as f64 / clk_tck()
}

/// The 1-minute load average.
pub fn loadavg() -> f64 {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// A `kB` field of `/proc/<pid>/status`, in bytes.
fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// Peak RSS (`VmHWM`) of each process in `pid`'s tree, in bytes.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PeakRss {
    /// Sum over the tree's processes (an nginx master plus its workers).
    pub sum_bytes: u64,
    /// The largest single process.
    pub max_bytes: u64,
    pub processes: usize,
}

pub fn tree_peak_rss(pid: u32) -> PeakRss {
    let mut r = PeakRss::default();
    for p in tree(pid) {
        if let Some(b) = status_kb(p, "VmHWM:") {
            r.sum_bytes += b;
            r.max_bytes = r.max_bytes.max(b);
            r.processes += 1;
        }
    }
    r
}

/// TCP states by name, as netstat prints them.
pub fn tcp_state_name(code: u8) -> &'static str {
    match code {
        0x01 => "ESTABLISHED",
        0x02 => "SYN_SENT",
        0x03 => "SYN_RECV",
        0x04 => "FIN_WAIT1",
        0x05 => "FIN_WAIT2",
        0x06 => "TIME_WAIT",
        0x07 => "CLOSE",
        0x08 => "CLOSE_WAIT",
        0x09 => "LAST_ACK",
        0x0A => "LISTEN",
        0x0B => "CLOSING",
        _ => "UNKNOWN",
    }
}

/// One socket of `/proc/net/tcp{,6}`: local port, remote port, state code.
#[derive(Clone, Copy, Debug)]
pub struct Socket {
    pub local_port: u16,
    pub remote_port: u16,
    pub state: u8,
}

/// Every TCP socket of the network namespace (IPv4 and IPv6).
pub fn tcp_sockets() -> Vec<Socket> {
    let mut out = Vec::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(s) = fs::read_to_string(file) else {
            continue;
        };
        out.extend(s.lines().skip(1).filter_map(parse_tcp_line));
    }
    out
}

fn parse_tcp_line(line: &str) -> Option<Socket> {
    let mut f = line.split_whitespace();
    let _sl = f.next()?;
    let local = f.next()?;
    let remote = f.next()?;
    let st = f.next()?;
    let port = |a: &str| u16::from_str_radix(a.rsplit(':').next()?, 16).ok();
    Some(Socket {
        local_port: port(local)?,
        remote_port: port(remote)?,
        state: u8::from_str_radix(st, 16).ok()?,
    })
}

/// The TCP state counts for one port, seen from both ends, like the seed's
/// `netstat -na | grep PORT | awk ...` but without double counting on loopback.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PortStates {
    pub port: u16,
    /// Sockets whose remote port is `port`: the connecting side (gateway → upstream, gateway →
    /// Redis). TIME_WAIT here means the client side closed first (short connections).
    pub to_port: BTreeMap<String, u64>,
    /// Sockets whose local port is `port` (the server side), LISTEN excluded.
    pub at_port: BTreeMap<String, u64>,
}

impl PortStates {
    pub fn count(&self, side_to: bool, state: &str) -> u64 {
        let m = if side_to {
            &self.to_port
        } else {
            &self.at_port
        };
        m.get(state).copied().unwrap_or(0)
    }
}

/// Count sockets by state for each of `ports`.
pub fn port_states(ports: &[u16]) -> Vec<PortStates> {
    let socks = tcp_sockets();
    ports
        .iter()
        .map(|&port| {
            let mut ps = PortStates {
                port,
                ..Default::default()
            };
            for s in &socks {
                let name = tcp_state_name(s.state).to_string();
                if s.remote_port == port {
                    *ps.to_port.entry(name.clone()).or_default() += 1;
                }
                if s.local_port == port && s.state != 0x0A {
                    *ps.at_port.entry(name).or_default() += 1;
                }
            }
            ps
        })
        .collect()
}

/// Whole-machine counts by state, like the seed's `netstat -na | awk '/^tcp/ ...'`.
pub fn all_states() -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for s in tcp_sockets() {
        *m.entry(tcp_state_name(s.state).to_string()).or_default() += 1;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_proc_net_tcp_line() {
        let l = "   0: 0100007F:1F90 0100007F:C350 06 00000000:00000000 03:00000F9B 00000000     0        0 0 3 0000000000000000";
        let s = parse_tcp_line(l).unwrap();
        assert_eq!((s.local_port, s.remote_port, s.state), (8080, 50000, 6));
    }

    #[test]
    fn own_stat_and_tree_are_readable() {
        let me = std::process::id();
        assert!(stat(me).is_some());
        assert_eq!(tree(me)[0], me);
        assert!(tree_peak_rss(me).max_bytes > 0);
    }
}
