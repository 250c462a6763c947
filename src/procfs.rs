//! What this process, the processes it watches and their host look like, read from `/proc`:
//! open descriptors and their limit, TCP sockets and their states, host-wide TCP
//! retransmissions, sysctls, capabilities, and any process's CPU time and peak memory.
//!
//! This is the project's one reader of `/proc`: ringway's metrics and `ringway doctor` use it,
//! and so does the bench (`bench/src/procfs.rs` only adds up what it returns). The files are
//! parsed by the [`procfs`] crate; this module keeps what the crate does not offer — which TCP
//! sockets count as this process's own, sysctl keys turned into paths, raising
//! `RLIMIT_NOFILE` (with `rlimit`), netstat's names for TCP states — and turns the crate's
//! errors into [`io::Error`]. It only reads, never shells out, and changes nothing but this
//! process's own `RLIMIT_NOFILE` ([`raise_nofile_limit`]). Metrics and `ringway doctor` decide
//! what the numbers mean; nothing here judges them. The kernel's ephemeral port range is
//! [`crate::net::ephemeral_port_range`], beside the listeners it concerns.
//!
//! Every call reads the files afresh, and the kernel formats one line per TCP socket on the
//! whole host for `/proc/net/tcp`: call these from the admin thread or the CLI, never from a
//! shard's request path.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use procfs::net::TcpNetEntry;
use procfs::process::{FDTarget, Process};
use procfs::{Current, CurrentSI, KernelStats, LoadAverage, ProcError};
use rlimit::Resource;

pub use procfs::net::TcpState;

/// This process's file descriptors and its `RLIMIT_NOFILE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdUsage {
    /// Descriptors open now, not counting the one used to list them.
    pub open: u64,
    /// The limit `open(2)`, `accept(2)` and `socket(2)` enforce now.
    pub soft_limit: u64,
    /// The ceiling an unprivileged process may raise the soft limit to.
    pub hard_limit: u64,
}

/// Counts this process's open descriptors (`/proc/self/fd`) and reads `RLIMIT_NOFILE`.
pub fn fd_usage() -> io::Result<FdUsage> {
    // Counted with a plain listing, not the crate: `Process::fd_count` includes descriptors of
    // its own, one on Linux 6.2 and later (which reports the count as the directory's size) and
    // three before, and `Process::fd` lists three (measured with procfs 0.18: `fd_count` 6 and
    // `fd` 8 entries where 5 were open), so neither gives the same number on every kernel.
    // The listing holds one descriptor, which it includes.
    let listed = fs::read_dir("/proc/self/fd")?.count() as u64;
    let (soft_limit, hard_limit) = Resource::NOFILE.get()?;
    Ok(FdUsage {
        open: listed.saturating_sub(1),
        soft_limit,
        hard_limit,
    })
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, as every process may without privilege.
/// Returns the soft limit `(before, after)`; both are equal when there was nothing to raise.
///
/// Linux's default soft limit is 1024 (kept low for `select(2)`'s sake), far below what a
/// gateway holding thousands of connections needs; the hard limit is the administrator's word.
pub fn raise_nofile_limit() -> io::Result<(u64, u64)> {
    let (soft, hard) = Resource::NOFILE.get()?;
    // An unlimited hard limit cannot be a soft limit on Linux: the kernel refuses anything above
    // fs.nr_open, so aim at that instead.
    let target = if hard == rlimit::INFINITY {
        read_sysctl("fs.nr_open")
            .and_then(|v| v.parse().ok())
            .unwrap_or(hard)
    } else {
        hard
    };
    if soft >= target {
        return Ok((soft, soft));
    }
    Resource::NOFILE.set(target, hard)?;
    let (after, _) = Resource::NOFILE.get()?;
    Ok((soft, after))
}

/// A count of TCP sockets by state. `fin_wait` adds FIN_WAIT1 and FIN_WAIT2; `other` holds
/// SYN_RECV, CLOSE, LAST_ACK, CLOSING and NEW_SYN_RECV.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TcpStates {
    pub established: u64,
    pub time_wait: u64,
    pub close_wait: u64,
    pub syn_sent: u64,
    pub fin_wait: u64,
    pub listen: u64,
    pub other: u64,
}

impl TcpStates {
    /// Every socket counted, whatever its state.
    pub fn total(&self) -> u64 {
        self.established
            + self.time_wait
            + self.close_wait
            + self.syn_sent
            + self.fin_wait
            + self.listen
            + self.other
    }

    fn add(&mut self, state: &TcpState) {
        let slot = match state {
            TcpState::Established => &mut self.established,
            TcpState::SynSent => &mut self.syn_sent,
            TcpState::FinWait1 | TcpState::FinWait2 => &mut self.fin_wait,
            TcpState::TimeWait => &mut self.time_wait,
            TcpState::CloseWait => &mut self.close_wait,
            TcpState::Listen => &mut self.listen,
            _ => &mut self.other,
        };
        *slot += 1;
    }
}

/// One row of `/proc/net/tcp` or `/proc/net/tcp6`.
#[derive(Debug, Clone, PartialEq)]
pub struct TcpSocket {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub state: TcpState,
    /// The socket's inode; 0 when no process holds it (TIME_WAIT, not yet accepted).
    pub inode: u64,
}

impl From<TcpNetEntry> for TcpSocket {
    fn from(entry: TcpNetEntry) -> Self {
        TcpSocket {
            local: entry.local_address,
            remote: entry.remote_address,
            state: entry.state,
            inode: entry.inode,
        }
    }
}

/// Every TCP socket of this network namespace, whichever process holds it: IPv4 then IPv6. A
/// table that is missing (IPv6 disabled) counts as empty.
pub fn tcp_sockets() -> io::Result<Vec<TcpSocket>> {
    let mut sockets = Vec::new();
    for table in [procfs::net::tcp, procfs::net::tcp6] {
        match table() {
            Ok(entries) => sockets.extend(entries.into_iter().map(TcpSocket::from)),
            Err(ProcError::NotFound(_)) => {}
            Err(e) => return Err(io_error(e)),
        }
    }
    Ok(sockets)
}

/// A TCP state's name as netstat prints it (`ESTABLISHED`, `TIME_WAIT`, ...); `UNKNOWN` for
/// NEW_SYN_RECV (a handshake not yet accepted), which netstat's table of names does not have.
pub fn tcp_state_name(state: &TcpState) -> &'static str {
    match state {
        TcpState::Established => "ESTABLISHED",
        TcpState::SynSent => "SYN_SENT",
        TcpState::SynRecv => "SYN_RECV",
        TcpState::FinWait1 => "FIN_WAIT1",
        TcpState::FinWait2 => "FIN_WAIT2",
        TcpState::TimeWait => "TIME_WAIT",
        TcpState::Close => "CLOSE",
        TcpState::CloseWait => "CLOSE_WAIT",
        TcpState::LastAck => "LAST_ACK",
        TcpState::Listen => "LISTEN",
        TcpState::Closing => "CLOSING",
        TcpState::NewSynRecv => "UNKNOWN",
    }
}

/// The states of this process's TCP sockets, IPv4 and IPv6.
///
/// A socket is ours when its inode is one of the `socket:[INODE]` links in `/proc/self/fd`. A
/// socket in TIME_WAIT has been closed, belongs to no process and shows inode 0, so it is counted
/// as ours when its local port is one of `listen_ports` (a client connection ringway closed
/// first) or its remote end is one of `peers` (a connection to Redis or a target that ringway
/// closed first). A peer with port 0 stands for every port of its IP. IPv4-mapped IPv6
/// addresses match their IPv4 form.
pub fn process_tcp_states(listen_ports: &[u16], peers: &[SocketAddr]) -> io::Result<TcpStates> {
    let inodes = own_socket_inodes()?;
    let mut states = TcpStates::default();
    for socket in tcp_sockets()? {
        if is_own(&socket, &inodes, listen_ports, peers) {
            states.add(&socket.state);
        }
    }
    Ok(states)
}

/// The states of every TCP socket on the host whose remote port is `port`, whichever process
/// holds it: the client side of connections towards a service, as `netstat` would list them.
pub fn tcp_states_towards(port: u16) -> io::Result<TcpStates> {
    let mut states = TcpStates::default();
    for socket in tcp_sockets()? {
        if socket.remote.port() == port {
            states.add(&socket.state);
        }
    }
    Ok(states)
}

/// TCP segments the whole host has retransmitted since boot (`Tcp: RetransSegs` in
/// `/proc/net/snmp`, IPv4 and IPv6 together). Only the host keeps this count, not a process.
pub fn tcp_retransmitted_segments() -> io::Result<u64> {
    let snmp = procfs::net::snmp().map_err(io_error)?;
    Ok(snmp.tcp_retrans_segs)
}

/// A sysctl's value, `None` when this kernel (or this network namespace) does not have it or it
/// cannot be read. The key is dotted (`net.core.somaxconn`); a key with `/` is taken as a path
/// under `/proc/sys` as it is, as sysctl(8) does for names that contain dots (`eth0.100`).
/// The value is trimmed and every run of whitespace becomes one space, so
/// `ip_local_port_range` reads `32768 60999` although the kernel separates it with a tab.
///
/// Read here rather than with the crate: `procfs::sys` has typed readers for a few keys only,
/// and `ringway doctor` checks keys of every subsystem by name.
pub fn read_sysctl(key: &str) -> Option<String> {
    let path = sysctl_path(key)?;
    let text = fs::read_to_string(path).ok()?;
    Some(normalize_whitespace(&text))
}

/// This process's effective capabilities (`CapEff` in `/proc/self/status`) as a bit set; bit `n`
/// is capability number `n` (`CAP_IPC_LOCK` is 14).
pub fn effective_capabilities() -> io::Result<u64> {
    let status = Process::myself()
        .and_then(|me| me.status())
        .map_err(io_error)?;
    Ok(status.capeff)
}

/// A process's CPU time so far, in clock ticks ([`ticks_per_second`]), and its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessCpu {
    pub ppid: u32,
    /// utime + stime of the process itself (all its threads).
    pub own_ticks: u64,
    /// Of `own_ticks`, the time in the kernel (stime): system calls, and what the kernel does
    /// in the process's name (on loopback, a send runs the receiver's TCP input too).
    pub own_system_ticks: u64,
    /// cutime + cstime: children that exited and were waited for.
    pub reaped_children_ticks: u64,
    /// Of `reaped_children_ticks`, cstime.
    pub reaped_children_system_ticks: u64,
}

/// `/proc/<pid>/stat`'s CPU times; `None` if the process is gone.
pub fn process_cpu(pid: u32) -> Option<ProcessCpu> {
    let stat = Process::new(pid as i32).and_then(|p| p.stat()).ok()?;
    Some(ProcessCpu {
        ppid: u32::try_from(stat.ppid).ok()?,
        own_ticks: stat.utime + stat.stime,
        own_system_ticks: stat.stime,
        reaped_children_ticks: u64::try_from(stat.cutime + stat.cstime).ok()?,
        reaped_children_system_ticks: u64::try_from(stat.cstime).ok()?,
    })
}

/// `pid` first, then all its live descendants, parents before their children.
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(processes) = procfs::process::all_processes() {
        // A process that exits while we list is simply gone.
        for process in processes.flatten() {
            if let Ok(stat) = process.stat() {
                parent_of.push((stat.pid as u32, stat.ppid as u32));
            }
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parent_of
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    tree
}

/// The most resident memory `pid` has held (`VmHWM` of `/proc/<pid>/status`), in bytes; `None`
/// if the process is gone or has no memory of its own (a kernel thread).
pub fn peak_rss_bytes(pid: u32) -> Option<u64> {
    let status = Process::new(pid as i32).and_then(|p| p.status()).ok()?;
    Some(status.vmhwm? * 1024)
}

/// Clock ticks per second of the CPU times above (`sysconf(_SC_CLK_TCK)`, `USER_HZ`: 100 on
/// every architecture Linux runs ringway on).
pub fn ticks_per_second() -> u64 {
    procfs::ticks_per_second()
}

/// Clock ticks the whole machine has been busy since boot, over all cores: user, nice, system,
/// irq, softirq and steal of `/proc/stat` (guest time is already inside user and nice; idle and
/// iowait are not busy).
pub fn machine_busy_ticks() -> io::Result<u64> {
    let cpu = KernelStats::current().map_err(io_error)?.total;
    Ok(cpu.user
        + cpu.nice
        + cpu.system
        + cpu.irq.unwrap_or(0)
        + cpu.softirq.unwrap_or(0)
        + cpu.steal.unwrap_or(0))
}

/// The 1-minute load average (`/proc/loadavg`).
pub fn load_average_1m() -> io::Result<f64> {
    let one = LoadAverage::current().map_err(io_error)?.one;
    // The crate reads it as an f32; the kernel prints two decimals, so rounding to them gives
    // back the f64 the text says (0.52, not 0.5199999809265137).
    Ok((f64::from(one) * 100.0).round() / 100.0)
}

/// Trims and turns every run of whitespace into one space.
pub(crate) fn normalize_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn sysctl_path(key: &str) -> Option<PathBuf> {
    // A key is a name under /proc/sys, never a way out of it.
    if key.is_empty()
        || key
            .split(['.', '/'])
            .any(|part| part.is_empty() || part == "..")
    {
        return None;
    }
    let relative = if key.contains('/') {
        key.to_string()
    } else {
        key.replace('.', "/")
    };
    Some(PathBuf::from("/proc/sys").join(relative))
}

/// The inodes of the sockets among this process's descriptors.
fn own_socket_inodes() -> io::Result<HashSet<u64>> {
    let fds = Process::myself().and_then(|me| me.fd()).map_err(io_error)?;
    // A descriptor closed by another thread while we list is simply gone: skip it.
    Ok(fds
        .flatten()
        .filter_map(|fd| match fd.target {
            FDTarget::Socket(inode) => Some(inode),
            _ => None,
        })
        .collect())
}

/// Whether `socket` is this process's: held by one of its descriptors, or in TIME_WAIT (held
/// by nobody) on one of `listen_ports` or towards one of `peers`.
fn is_own(
    socket: &TcpSocket,
    inodes: &HashSet<u64>,
    listen_ports: &[u16],
    peers: &[SocketAddr],
) -> bool {
    if socket.state == TcpState::TimeWait {
        listen_ports.contains(&socket.local.port())
            || peers.iter().any(|peer| peer_matches(peer, &socket.remote))
    } else {
        socket.inode != 0 && inodes.contains(&socket.inode)
    }
}

/// An IP with an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) turned into its IPv4 form, so a
/// dual-stack socket's peer matches the IPv4 address it was configured with.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Whether `remote` is `peer`; a peer with port 0 matches every port of its IP.
fn peer_matches(peer: &SocketAddr, remote: &SocketAddr) -> bool {
    canonical_ip(peer.ip()) == canonical_ip(remote.ip())
        && (peer.port() == 0 || peer.port() == remote.port())
}

/// The crate's error as an [`io::Error`] of the same kind, its message (with the path) kept.
fn io_error(e: ProcError) -> io::Error {
    let kind = match &e {
        ProcError::PermissionDenied(_) => io::ErrorKind::PermissionDenied,
        ProcError::NotFound(_) => io::ErrorKind::NotFound,
        ProcError::Io(inner, _) => inner.kind(),
        _ => io::ErrorKind::InvalidData,
    };
    io::Error::new(kind, e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use procfs::net::TcpNetEntries;
    use procfs::{ExplicitSystemInfo, FromReadSI};
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    // Sample rows as a little-endian host prints them; on a big-endian host the kernel prints
    // the same sockets with their address words reversed, so these samples hold only here.
    const TCP4: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1B9E 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 132741 1 00000000245b7484 100 0 0 10 0
   1: 0100007F:1B9E 0100007F:5F01 01 00000000:00000000 00:00000000 00000000  1000        0 148728 1 000000006ee1e28e 20 4 30 10 -1
   2: 0A00000A:9C40 0B01A8C0:18EB 06 00000000:00000000 03:00000F6B 00000000     0        0 0 3 0000000000000000
   3: 0100007F:1B9E 0100007F:5F02 0C 00000000:00000000 00:00000000 00000000     0        0 0 1 0000000000000000
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1B9E 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 132742 1 00000000fff10138 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:1B9E 0000000000000000FFFF00000100007F:D432 01 00000000:00000000 00:00000000 00000000  1000        0 150001 1 0000000000000000 20 4 30 10 -1
   2: B80D0120000000000000000001000000:01BB 00000000000000000000000001000000:C350 08 00000000:00000000 00:00000000 00000000     0        0 9 1 0
";

    /// The rows as `tcp_sockets` returns them, parsed by the crate from sample text.
    fn parse(table: &str) -> Vec<TcpSocket> {
        let host = ExplicitSystemInfo {
            boot_time_secs: 0,
            ticks_per_second: 100,
            page_size: 4096,
            is_little_endian: cfg!(target_endian = "little"),
        };
        let entries = TcpNetEntries::from_read(table.as_bytes(), &host).unwrap();
        entries.0.into_iter().map(TcpSocket::from).collect()
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn ipv4_rows() {
        let rows = parse(TCP4);
        assert_eq!(rows.len(), 4, "the header is skipped");
        assert_eq!(rows[0].local, "0.0.0.0:7070".parse().unwrap());
        assert_eq!((&rows[0].state, rows[0].inode), (&TcpState::Listen, 132741));
        assert_eq!(rows[1].local, "127.0.0.1:7070".parse().unwrap());
        assert_eq!(rows[1].remote, "127.0.0.1:24321".parse().unwrap());
        assert_eq!(rows[1].state, TcpState::Established);
        assert_eq!(rows[2].local, "10.0.0.10:40000".parse().unwrap());
        assert_eq!(rows[2].remote, "192.168.1.11:6379".parse().unwrap());
        assert_eq!((&rows[2].state, rows[2].inode), (&TcpState::TimeWait, 0));
        // NEW_SYN_RECV (12), newer than the states netstat names, does not fail the table.
        assert_eq!(rows[3].state, TcpState::NewSynRecv);
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn ipv6_rows_and_mapped_ipv4() {
        let rows = parse(TCP6);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].local, "[::]:7070".parse().unwrap());
        assert_eq!(rows[1].local, "[::ffff:127.0.0.1]:7070".parse().unwrap());
        assert_eq!(rows[1].remote.port(), 54322);
        assert!(peer_matches(
            &"127.0.0.1:0".parse().unwrap(),
            &rows[1].remote
        ));
        assert!(!peer_matches(
            &"127.0.0.2:0".parse().unwrap(),
            &rows[1].remote
        ));
        assert_eq!(rows[2].local, "[2001:db8::1]:443".parse().unwrap());
        assert_eq!(rows[2].remote, "[::1]:50000".parse().unwrap());
        assert_eq!(rows[2].state, TcpState::CloseWait);
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn own_sockets_and_time_wait() {
        let rows = parse(TCP4);
        let inodes: HashSet<u64> = [148728].into();
        let own = |listen: &[u16], peers: &[SocketAddr]| -> Vec<usize> {
            (0..rows.len())
                .filter(|&i| is_own(&rows[i], &inodes, listen, peers))
                .collect()
        };
        // Held by our descriptor; the listener's inode is not ours; inode 0 never is.
        assert_eq!(own(&[], &[]), [1]);
        // TIME_WAIT towards a peer, by address or by IP alone; or on a listening port.
        assert_eq!(own(&[], &["192.168.1.11:6379".parse().unwrap()]), [1, 2]);
        assert_eq!(own(&[], &["192.168.1.11:0".parse().unwrap()]), [1, 2]);
        assert_eq!(own(&[], &["192.168.1.11:6380".parse().unwrap()]), [1]);
        assert_eq!(own(&[40000], &[]), [1, 2]);
        assert_eq!(own(&[7070], &[]), [1], "only TIME_WAIT is matched by port");
    }

    #[test]
    fn peers_with_port_zero_match_any_port() {
        let remote: SocketAddr = "10.1.2.3:6379".parse().unwrap();
        assert!(peer_matches(&"10.1.2.3:0".parse().unwrap(), &remote));
        assert!(peer_matches(&"10.1.2.3:6379".parse().unwrap(), &remote));
        assert!(!peer_matches(&"10.1.2.3:6380".parse().unwrap(), &remote));
        assert!(peer_matches(
            &"[::ffff:10.1.2.3]:6379".parse().unwrap(),
            &remote
        ));
    }

    #[test]
    fn states_are_binned_and_named() {
        let mut states = TcpStates::default();
        let mut names = Vec::new();
        for number in 1..=12 {
            let state = TcpState::from_u8(number).unwrap();
            names.push(tcp_state_name(&state));
            states.add(&state);
        }
        let expected = TcpStates {
            established: 1,
            time_wait: 1,
            close_wait: 1,
            syn_sent: 1,
            fin_wait: 2,
            listen: 1,
            other: 5,
        };
        assert_eq!(states, expected);
        assert_eq!(states.total(), 12);
        assert_eq!(
            names,
            [
                "ESTABLISHED",
                "SYN_SENT",
                "SYN_RECV",
                "FIN_WAIT1",
                "FIN_WAIT2",
                "TIME_WAIT",
                "CLOSE",
                "CLOSE_WAIT",
                "LAST_ACK",
                "LISTEN",
                "CLOSING",
                "UNKNOWN"
            ]
        );
    }

    #[test]
    fn host_counters_and_capabilities() {
        assert!(tcp_retransmitted_segments().is_ok());
        assert!(effective_capabilities().is_ok());
        assert!(machine_busy_ticks().unwrap() > 0);
        let load = load_average_1m().unwrap();
        assert!(
            load >= 0.0 && load == (load * 100.0).round() / 100.0,
            "{load}"
        );
        assert_eq!(ticks_per_second(), 100);
    }

    #[test]
    fn sysctl_keys_and_values() {
        assert_eq!(
            sysctl_path("net.core.somaxconn"),
            Some(PathBuf::from("/proc/sys/net/core/somaxconn"))
        );
        assert_eq!(
            sysctl_path("net/ipv4/conf/eth0.100/rp_filter"),
            Some(PathBuf::from("/proc/sys/net/ipv4/conf/eth0.100/rp_filter"))
        );
        assert_eq!(sysctl_path("net...x"), None);
        assert_eq!(sysctl_path("../../etc/passwd"), None);
        assert_eq!(sysctl_path(""), None);
        assert_eq!(normalize_whitespace(" 32768\t60999\n"), "32768 60999");
        assert_eq!(read_sysctl("kernel.ostype").as_deref(), Some("Linux"));
        let range = read_sysctl("net.ipv4.ip_local_port_range").unwrap();
        assert_eq!(range.split(' ').count(), 2, "{range:?}");
        assert_eq!(read_sysctl("net.core.no_such_key"), None);
    }

    #[test]
    fn descriptors_and_limit() {
        let usage = fd_usage().unwrap();
        assert!(usage.open >= 3, "{usage:?}");
        assert!(usage.soft_limit <= usage.hard_limit, "{usage:?}");
        let (before, after) = raise_nofile_limit().unwrap();
        assert!(after >= before);
        let usage = fd_usage().unwrap();
        assert_eq!(usage.soft_limit, after);
    }

    #[test]
    fn own_process_cpu_tree_and_memory() {
        let me = std::process::id();
        let cpu = process_cpu(me).unwrap();
        assert_eq!(cpu.ppid, std::os::unix::process::parent_id());
        assert_eq!(process_tree(me)[0], me);
        let parent = process_tree(cpu.ppid);
        assert!(parent.contains(&me), "{parent:?}");
        assert!(peak_rss_bytes(me).unwrap() > 0);
        assert_eq!(process_cpu(u32::MAX >> 1), None);
        assert_eq!(peak_rss_bytes(u32::MAX >> 1), None);
    }

    #[test]
    fn sees_its_own_loopback_sockets() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server_addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(server_addr).unwrap();
        let (server, _) = listener.accept().unwrap();

        // Other tests in this binary may hold sockets too, hence "at least".
        let states = process_tcp_states(&[], &[]).unwrap();
        assert!(states.established >= 2, "{states:?}");
        assert!(states.listen >= 1, "{states:?}");
        let towards = tcp_states_towards(server_addr.port()).unwrap();
        assert!(towards.established >= 1, "{towards:?}");

        // The side that closes first ends in TIME_WAIT, owned by no process: it is counted
        // only through the peer it was connected to. (No data is sent: a socket closed with
        // unread bytes resets the connection instead, and nobody reaches TIME_WAIT.)
        drop(client);
        drop(server);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let states = process_tcp_states(&[], &[server_addr]).unwrap();
            if states.time_wait >= 1 {
                break;
            }
            assert!(Instant::now() < deadline, "no TIME_WAIT seen: {states:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
        let peer_any_port = SocketAddr::new(server_addr.ip(), 0);
        assert!(process_tcp_states(&[], &[peer_any_port]).unwrap().time_wait >= 1);
    }
}
