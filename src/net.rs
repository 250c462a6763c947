//! Sockets: the service listener each shard owns, and checks on where it listens.
//!
//! Every shard binds its own socket to the same address with `SO_REUSEPORT`, so the kernel
//! spreads new connections across shards and no accept lock is shared. `SO_REUSEADDR` lets a
//! restarted ringway bind at once while old connections sit in TIME_WAIT.

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

/// Binds `count` listening sockets on `addr`, one per shard. With port 0 the first socket picks
/// the port and the others join it, so all shards serve one address. Returns that address.
pub fn bind_shard_listeners(
    addr: SocketAddr,
    count: usize,
    backlog: i32,
) -> io::Result<(SocketAddr, Vec<TcpListener>)> {
    let first = bind(addr, backlog)?;
    let bound = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..count {
        listeners.push(bind(bound, backlog)?);
    }
    Ok((bound, listeners))
}

/// `listeners` (bound here, or taken over from an upgraded process) spread over `count`
/// shards: shard `i` gets those at `i`, `i + count`, …; when there are fewer than shards, the
/// rest bind more sockets to the same address (`SO_REUSEPORT`). None at all: the listener is
/// off, and every shard gets none.
pub fn spread(
    listeners: Vec<TcpListener>,
    count: usize,
    backlog: i32,
) -> io::Result<Vec<Vec<TcpListener>>> {
    let mut shards: Vec<Vec<TcpListener>> = (0..count).map(|_| Vec::new()).collect();
    let Some(addr) = listeners.first().map(|l| l.local_addr()).transpose()? else {
        return Ok(shards);
    };
    let have = listeners.len();
    for (i, listener) in listeners.into_iter().enumerate() {
        shards[i % count].push(listener);
    }
    for shard in shards.iter_mut().skip(have) {
        shard.push(bind(addr, backlog)?);
    }
    Ok(shards)
}

fn bind(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// The kernel's ephemeral port range (`net.ipv4.ip_local_port_range`), if readable.
pub fn ephemeral_port_range() -> Option<(u16, u16)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut parts = text.split_whitespace().map(|p| p.parse::<u16>());
    match (parts.next(), parts.next()) {
        (Some(Ok(low)), Some(Ok(high))) => Some((low, high)),
        _ => None,
    }
}

/// A warning when a fixed listen port lies inside the ephemeral range: an outgoing connection
/// may hold it when ringway restarts, and the bind then fails.
pub fn listen_port_warning(port: u16) -> Option<String> {
    let (low, high) = ephemeral_port_range()?;
    (port != 0 && (low..=high).contains(&port)).then(|| {
        format!(
            "listen port {port} lies inside net.ipv4.ip_local_port_range ({low}-{high}); \
             an outgoing connection may occupy it and a restart fail to bind. Use a port below \
             {low}, or add it to net.ipv4.ip_local_reserved_ports (see tuning/)"
        )
    })
}
