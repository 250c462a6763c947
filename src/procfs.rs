//! What this process and its host look like, read from `/proc`: open descriptors and their
//! limit, the states of the process's TCP sockets, host-wide TCP retransmissions, and sysctls.
//!
//! It owns the parsing of `/proc/net/tcp{,6}`, `/proc/net/snmp` and `/proc/sys`, written as pure
//! functions over `&str` so tests feed them sample text. It only reads, never shells out, and
//! changes nothing but this process's own `RLIMIT_NOFILE` ([`raise_nofile_limit`]). Metrics and
//! `ringway doctor` decide what the numbers mean; nothing here judges them. The kernel's
//! ephemeral port range is [`crate::net::ephemeral_port_range`], beside the listeners it concerns.
//!
//! Every call reads the files afresh, and the kernel formats one line per TCP socket on the
//! whole host for `/proc/net/tcp`: call these from the admin thread or the CLI, never from a
//! shard's request path.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use rlimit::Resource;

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
    // Listing the directory holds one descriptor of its own, which the listing includes.
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

    fn add(&mut self, state: u8) {
        // The numbers are the kernel's `TCP_*` states (include/net/tcp_states.h).
        let slot = match state {
            0x01 => &mut self.established,
            0x02 => &mut self.syn_sent,
            0x04 | 0x05 => &mut self.fin_wait,
            0x06 => &mut self.time_wait,
            0x08 => &mut self.close_wait,
            0x0A => &mut self.listen,
            _ => &mut self.other,
        };
        *slot += 1;
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
    for entry in host_tcp_sockets()? {
        let ours = if entry.state == TIME_WAIT {
            listen_ports.contains(&entry.local.port())
                || peers.iter().any(|peer| peer_matches(peer, &entry.remote))
        } else {
            entry.inode != 0 && inodes.contains(&entry.inode)
        };
        if ours {
            states.add(entry.state);
        }
    }
    Ok(states)
}

/// The states of every TCP socket on the host whose remote port is `port`, whichever process
/// holds it: the client side of connections towards a service, as `netstat` would list them.
pub fn tcp_states_towards(port: u16) -> io::Result<TcpStates> {
    let mut states = TcpStates::default();
    for entry in host_tcp_sockets()? {
        if entry.remote.port() == port {
            states.add(entry.state);
        }
    }
    Ok(states)
}

/// TCP segments the whole host has retransmitted since boot (`Tcp: RetransSegs` in
/// `/proc/net/snmp`, IPv4 and IPv6 together). Only the host keeps this count, not a process.
pub fn tcp_retransmitted_segments() -> io::Result<u64> {
    let text = fs::read_to_string("/proc/net/snmp")?;
    snmp_counter(&text, "Tcp", "RetransSegs").ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "no Tcp RetransSegs in /proc/net/snmp",
        )
    })
}

/// A sysctl's value, `None` when this kernel (or this network namespace) does not have it or it
/// cannot be read. The key is dotted (`net.core.somaxconn`); a key with `/` is taken as a path
/// under `/proc/sys` as it is, as sysctl(8) does for names that contain dots (`eth0.100`).
/// The value is trimmed and every run of whitespace becomes one space, so
/// `ip_local_port_range` reads `32768 60999` although the kernel separates it with a tab.
pub fn read_sysctl(key: &str) -> Option<String> {
    let path = sysctl_path(key)?;
    let text = fs::read_to_string(path).ok()?;
    Some(normalize_whitespace(&text))
}

/// This process's effective capabilities (`CapEff` in `/proc/self/status`) as a bit set; bit `n`
/// is capability number `n` (`CAP_IPC_LOCK` is 14).
pub fn effective_capabilities() -> io::Result<u64> {
    let text = fs::read_to_string("/proc/self/status")?;
    status_capabilities(&text, "CapEff")
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no CapEff in /proc/self/status"))
}

fn status_capabilities(status: &str, field: &str) -> Option<u64> {
    let value = status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':').map(str::trim))?;
    u64::from_str_radix(value, 16).ok()
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

/// The kernel's number for TIME_WAIT.
const TIME_WAIT: u8 = 0x06;

/// One row of `/proc/net/tcp` or `/proc/net/tcp6`.
#[derive(Debug, Clone, PartialEq)]
struct TcpEntry {
    local: SocketAddr,
    remote: SocketAddr,
    /// The kernel's `TCP_*` state number.
    state: u8,
    /// The socket's inode; 0 when no process holds it (TIME_WAIT, not yet accepted).
    inode: u64,
}

/// Every TCP socket of the host's network namespace, IPv4 then IPv6. A table that is missing
/// (IPv6 disabled) counts as empty.
fn host_tcp_sockets() -> io::Result<Vec<TcpEntry>> {
    let mut entries = Vec::new();
    for path in ["/proc/net/tcp", "/proc/net/tcp6"] {
        match fs::read_to_string(path) {
            Ok(text) => entries.extend(parse_tcp_table(&text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(entries)
}

/// The inodes of the sockets among this process's descriptors.
fn own_socket_inodes() -> io::Result<HashSet<u64>> {
    let mut inodes = HashSet::new();
    for dirent in fs::read_dir("/proc/self/fd")? {
        // A descriptor closed by another thread while we list is simply gone: skip it.
        let Ok(dirent) = dirent else { continue };
        let Ok(target) = fs::read_link(dirent.path()) else {
            continue;
        };
        if let Some(inode) = target.to_str().and_then(socket_inode) {
            inodes.insert(inode);
        }
    }
    Ok(inodes)
}

/// The inode in a descriptor's link text `socket:[INODE]`; `None` for anything else.
fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Every row of a `/proc/net/tcp{,6}` table; the header and malformed rows are skipped.
fn parse_tcp_table(text: &str) -> Vec<TcpEntry> {
    text.lines().filter_map(parse_tcp_line).collect()
}

/// One row: `sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...`.
fn parse_tcp_line(line: &str) -> Option<TcpEntry> {
    let mut fields = line.split_whitespace();
    let slot = fields.next()?;
    if !slot.ends_with(':') {
        return None; // the header row
    }
    let local = parse_hex_socket_addr(fields.next()?)?;
    let remote = parse_hex_socket_addr(fields.next()?)?;
    let state = u8::from_str_radix(fields.next()?, 16).ok()?;
    // tx_queue:rx_queue, tr:tm->when, retrnsmt, uid, timeout, then the inode.
    let inode = fields.nth(5)?.parse().ok()?;
    Some(TcpEntry {
        local,
        remote,
        state,
        inode,
    })
}

/// `ADDR:PORT` as the kernel prints it: the port as 4 hex digits in host order; an IPv4 address
/// as one 32-bit word and an IPv6 address as four, each word printed as a host-order integer
/// whose memory holds the address bytes in network order. So each word's native-endian bytes
/// are the address bytes, on little- and big-endian hosts alike.
fn parse_hex_socket_addr(text: &str) -> Option<SocketAddr> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(hex_word(addr)?.to_ne_bytes())),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_exact_mut(4).enumerate() {
                chunk.copy_from_slice(&hex_word(&addr[i * 8..i * 8 + 8])?.to_ne_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

fn hex_word(text: &str) -> Option<u32> {
    // from_str_radix accepts a leading '+', which the kernel never prints.
    if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(text, 16).ok()
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

/// A counter of `/proc/net/snmp`, which comes as pairs of lines: `Tcp: Name1 Name2 ...` then
/// `Tcp: 1 2 ...`.
fn snmp_counter(text: &str, group: &str, name: &str) -> Option<u64> {
    let prefix = format!("{group}:");
    let mut lines = text.lines().filter(|line| line.starts_with(&prefix));
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        let position = names.split_whitespace().position(|n| n == name);
        if let Some(position) = position {
            return values.split_whitespace().nth(position)?.parse().ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    // Sample rows as a little-endian host prints them; on a big-endian host the kernel prints
    // the same sockets with their address words reversed, so these samples hold only here.
    const TCP4: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1B9E 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 132741 1 00000000245b7484 100 0 0 10 0
   1: 0100007F:1B9E 0100007F:5F01 01 00000000:00000000 00:00000000 00000000  1000        0 148728 1 000000006ee1e28e 20 4 30 10 -1
   2: 0A00000A:9C40 0B01A8C0:18EB 06 00000000:00000000 03:00000F6B 00000000     0        0 0 3 0000000000000000
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1B9E 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 132742 1 00000000fff10138 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:1B9E 0000000000000000FFFF00000100007F:D432 01 00000000:00000000 00:00000000 00000000  1000        0 150001 1 0000000000000000 20 4 30 10 -1
   2: B80D01200000000000000000010000000:0050 00000000000000000000000001000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 7 1 0
   3: B80D0120000000000000000001000000:01BB 00000000000000000000000001000000:C350 08 00000000:00000000 00:00000000 00000000     0        0 9 1 0
";

    #[cfg(target_endian = "little")]
    #[test]
    fn parses_ipv4_rows() {
        let rows = parse_tcp_table(TCP4);
        assert_eq!(rows.len(), 3, "the header is skipped");
        assert_eq!(rows[0].local, "0.0.0.0:7070".parse().unwrap());
        assert_eq!(rows[0].state, 0x0A);
        assert_eq!(rows[0].inode, 132741);
        assert_eq!(rows[1].local, "127.0.0.1:7070".parse().unwrap());
        assert_eq!(rows[1].remote, "127.0.0.1:24321".parse().unwrap());
        assert_eq!(rows[1].state, 0x01);
        assert_eq!(rows[2].local, "10.0.0.10:40000".parse().unwrap());
        assert_eq!(rows[2].remote, "192.168.1.11:6379".parse().unwrap());
        assert_eq!((rows[2].state, rows[2].inode), (TIME_WAIT, 0));
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn parses_ipv6_rows_and_mapped_ipv4() {
        let rows = parse_tcp_table(TCP6);
        // Row 2's address has 33 hex digits: malformed, skipped.
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
        assert_eq!(rows[2].state, 0x08);
    }

    #[test]
    fn rejects_malformed_rows() {
        for line in [
            "",
            "   0: 0100007F:1B9E",
            "   0: 0100007F:1B9E 0100007F:5F01 01 0:0 00:0 0 0 0",
            "   0: 0100007G:1B9E 0100007F:5F01 01 00000000:00000000 00:00000000 00000000 0 0 1 1",
            "   0: +100007F:1B9E 0100007F:5F01 01 00000000:00000000 00:00000000 00000000 0 0 1 1",
            "   0: 0100007F:1B9E0 0100007F:5F01 01 00000000:00000000 00:00000000 00000000 0 0 1 1",
        ] {
            assert_eq!(parse_tcp_line(line), None, "{line:?}");
        }
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
    fn states_are_binned() {
        let mut states = TcpStates::default();
        for state in 1..=12 {
            states.add(state);
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
    }

    #[test]
    fn capabilities_from_status() {
        let status = "Name:\tringway\nCapInh:\t0000000000000000\nCapEff:\t0000000000004000\n";
        assert_eq!(status_capabilities(status, "CapEff"), Some(1 << 14));
        assert_eq!(status_capabilities(status, "CapInh"), Some(0));
        assert_eq!(status_capabilities(status, "CapBnd"), None);
        assert!(effective_capabilities().is_ok());
    }

    #[test]
    fn socket_links() {
        assert_eq!(socket_inode("socket:[148728]"), Some(148728));
        assert_eq!(socket_inode("pipe:[148728]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
        assert_eq!(socket_inode("socket:[]"), None);
    }

    #[test]
    fn snmp_retransmissions() {
        let text = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
            Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens RetransSegs InErrs\n\
            Tcp: 1 200 120000 -1 48934 474 0\n\
            Udp: InDatagrams RetransSegs\nUdp: 5 6\n";
        assert_eq!(snmp_counter(text, "Tcp", "RetransSegs"), Some(474));
        assert_eq!(snmp_counter(text, "Udp", "RetransSegs"), Some(6));
        assert_eq!(snmp_counter(text, "Tcp", "Nope"), None);
        assert!(tcp_retransmitted_segments().is_ok());
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
