//! What the runner and the load generator make of `/proc`: CPU seconds and peak RSS of a
//! process tree, the machine's busy time and load, and TCP states counted per port.
//!
//! Owns: these sums and the shapes they are recorded in. Reading `/proc` is ringway's
//! ([`ringway::procfs`], on the `procfs` crate): the gateway and its bench share one reader,
//! so `/proc/net/tcp` and `/proc/<pid>/stat` are parsed in one place, and this module opens no
//! file itself. It must not start or signal processes (the runner does that).

use std::collections::BTreeMap;

use serde::Serialize;

use ringway::procfs::{self as reader, tcp_state_name, TcpState};
pub use ringway::procfs::{process_cpu, process_tree, ticks_per_second};

/// CPU seconds (user + system) used so far by `pid`'s whole tree: live descendants plus the
/// children the root has reaped. An nginx master's workers are counted this way.
pub fn tree_cpu_seconds(pid: u32) -> f64 {
    tree_cpu(pid).total_s
}

/// CPU seconds used so far by a process tree, and of them the time in the kernel.
#[derive(Clone, Copy, Debug, Default)]
pub struct TreeCpu {
    /// User + system, as [`tree_cpu_seconds`].
    pub total_s: f64,
    /// Of it, system time (stime, and cstime of reaped children).
    pub system_s: f64,
}

/// [`tree_cpu_seconds`] with the kernel's share beside it.
pub fn tree_cpu(pid: u32) -> TreeCpu {
    let (mut ticks, mut system) = (0, 0);
    for (i, p) in process_tree(pid).into_iter().enumerate() {
        if let Some(cpu) = process_cpu(p) {
            ticks += cpu.own_ticks;
            system += cpu.own_system_ticks;
            if i == 0 {
                ticks += cpu.reaped_children_ticks;
                system += cpu.reaped_children_system_ticks;
            }
        }
    }
    let hz = ticks_per_second() as f64;
    TreeCpu {
        total_s: ticks as f64 / hz,
        system_s: system as f64 / hz,
    }
}

/// Busy CPU seconds of the whole machine so far (all cores: everything but idle and iowait);
/// 0 when `/proc/stat` cannot be read.
pub fn machine_busy_seconds() -> f64 {
    reader::machine_busy_ticks().unwrap_or(0) as f64 / ticks_per_second() as f64
}

/// The 1-minute load average; 0 when `/proc/loadavg` cannot be read.
pub fn loadavg() -> f64 {
    reader::load_average_1m().unwrap_or(0.0)
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
    for b in process_tree(pid)
        .into_iter()
        .filter_map(reader::peak_rss_bytes)
    {
        r.sum_bytes += b;
        r.max_bytes = r.max_bytes.max(b);
        r.processes += 1;
    }
    r
}

/// The TCP state counts for one port, seen from both ends, like the OpenResty gateway's
/// `netstat -na | grep PORT | awk ...` (docs/background.md) but without double counting on
/// loopback. States are named as netstat prints them.
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

/// Every TCP socket of the network namespace; none when the tables cannot be read.
fn tcp_sockets() -> Vec<reader::TcpSocket> {
    reader::tcp_sockets().unwrap_or_default()
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
                let name = tcp_state_name(&s.state).to_string();
                if s.remote.port() == port {
                    *ps.to_port.entry(name.clone()).or_default() += 1;
                }
                if s.local.port() == port && s.state != TcpState::Listen {
                    *ps.at_port.entry(name).or_default() += 1;
                }
            }
            ps
        })
        .collect()
}

/// Whole-machine counts by state, like the OpenResty gateway's `netstat -na | awk '/^tcp/ ...'`
/// (docs/background.md).
pub fn all_states() -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for s in tcp_sockets() {
        *m.entry(tcp_state_name(&s.state).to_string()).or_default() += 1;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn own_tree_cpu_and_rss() {
        let me = std::process::id();
        assert_eq!(process_tree(me)[0], me);
        let rss = tree_peak_rss(me);
        assert!(rss.max_bytes > 0 && rss.processes >= 1, "{rss:?}");
        // Spin a little so the tree has used at least a tick.
        let start = std::time::Instant::now();
        while tree_cpu_seconds(me) == 0.0 && start.elapsed().as_secs() < 5 {}
        assert!(tree_cpu_seconds(me) > 0.0);
        // Time in the kernel: enough system calls to be sure of a tick of it.
        let start = std::time::Instant::now();
        while tree_cpu(me).system_s == 0.0 && start.elapsed().as_secs() < 5 {
            let _ = std::fs::metadata("/proc/self/stat");
        }
        let cpu = tree_cpu(me);
        assert!(cpu.system_s > 0.0 && cpu.system_s <= cpu.total_s, "{cpu:?}");
        assert!(machine_busy_seconds() > 0.0);
        assert!(loadavg() >= 0.0);
    }

    #[test]
    fn states_of_a_port_from_both_ends() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let _client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _server = listener.accept().unwrap();
        let [states] = &port_states(&[port])[..] else {
            panic!("one port asked, one answer")
        };
        assert_eq!(states.count(true, "ESTABLISHED"), 1, "{states:?}");
        assert_eq!(states.count(false, "ESTABLISHED"), 1, "{states:?}");
        assert_eq!(states.count(false, "LISTEN"), 0, "LISTEN is left out");
        assert!(all_states()["ESTABLISHED"] >= 2);
    }
}
