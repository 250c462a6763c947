//! Binary upgrade with no lost connection: the running process hands its listening sockets to
//! its successor over a Unix socket (`SCM_RIGHTS`), the successor serves on them, then the old
//! process drains and exits.
//!
//! ```text
//! new → old   "ringway-upgrade 1\n"
//! old → new   "listeners <plain> <tls> <admin>\n" + the sockets (SCM_RIGHTS): plain ones,
//!             TLS ones, the admin port's (0 or 1)
//! new         starts its shards on them (same sockets: one accept queue, nothing re-bound)
//! new → old   "ready\n"
//! old         removes the socket path, stops answering the admin port (handed over too),
//!             starts its drain (stop accepting, GOAWAY, finish calls, exit 0)
//! old → new   "draining\n"
//! new         listens on the path itself, for the next upgrade
//! ```
//!
//! Both processes hold the same listening sockets, so a connection waiting in the accept queue
//! is taken by whichever accepts next — never reset: the old process's shards stop accepting
//! without an accept left in flight (they accept only after a readiness poll; see
//! [`shard`](crate::shard)), and the sockets close only when the last holder lets them go.
//! Until the successor says "ready" nothing changes for the old process: a successor that fails
//! to start leaves it serving.

use std::io::{self, BufRead, BufReader, IoSlice, IoSliceMut, Write};
use std::mem::MaybeUninit;
use std::net::TcpListener;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

use crate::shutdown::{Drain, POLL_INTERVAL};

const HELLO: &[u8] = b"ringway-upgrade 1\n";
/// How long the successor may take from receiving the sockets to serving on them.
const READY_WITHIN: Duration = Duration::from_secs(60);
/// At most this many sockets in one hand-over (shards × 2 listeners).
const MAX_SOCKETS: usize = 1024;

/// The listening sockets a process serves on: one per shard and listener, as bound, and the
/// admin port's.
pub struct Sockets {
    pub plain: Vec<TcpListener>,
    pub tls: Vec<TcpListener>,
    pub admin: Option<TcpListener>,
}

/// The line from a successor back to the process it took the sockets from.
pub struct Predecessor {
    line: UnixStream,
}

/// Connects to the running process at `path` and takes its listening sockets.
pub fn take_from(path: &Path) -> io::Result<(Sockets, Predecessor)> {
    let at =
        |e: io::Error| io::Error::new(e.kind(), format!("upgrade from {}: {e}", path.display()));
    let mut line = UnixStream::connect(path).map_err(at)?;
    line.set_read_timeout(Some(READY_WITHIN)).map_err(at)?;
    line.write_all(HELLO).map_err(at)?;
    let mut header = [0u8; 64];
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_SOCKETS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let received = recvmsg(
        &line,
        &mut [IoSliceMut::new(&mut header)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )
    .map_err(|e| at(e.into()))?;
    let mut fds: Vec<OwnedFd> = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = message {
            fds.extend(rights);
        }
    }
    let text = std::str::from_utf8(&header[..received.bytes]).unwrap_or("");
    let counts: Vec<usize> = text
        .strip_prefix("listeners ")
        .and_then(|t| t.strip_suffix('\n'))
        .map(|t| t.split(' ').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_default();
    let [plain, tls, admin] = counts[..] else {
        return Err(at(io::Error::other(format!(
            "unexpected answer {text:?} (is the process there a ringway with --upgrade-socket?)"
        ))));
    };
    if plain + tls + admin != fds.len() || admin > 1 {
        return Err(at(io::Error::other(format!(
            "announced {} sockets, received {}",
            plain + tls + admin,
            fds.len()
        ))));
    }
    let mut listeners = fds.into_iter().map(TcpListener::from);
    let sockets = Sockets {
        plain: listeners.by_ref().take(plain).collect(),
        tls: listeners.by_ref().take(tls).collect(),
        admin: listeners.next(),
    };
    Ok((sockets, Predecessor { line }))
}

impl Predecessor {
    /// Tells the old process this one serves, and waits until it has started its drain (and
    /// given up the path).
    pub fn ready(self) -> io::Result<()> {
        let mut line = self.line;
        line.write_all(b"ready\n")?;
        let mut answer = String::new();
        BufReader::new(&line).read_line(&mut answer)?;
        if answer != "draining\n" {
            return Err(io::Error::other(format!(
                "the old process answered {answer:?} instead of draining"
            )));
        }
        Ok(())
    }
}

/// Serves successors at `path` from a thread of its own: hands them duplicates of `sockets`,
/// and drains this process once one is ready. Gives the sockets and the path up when this
/// process drains for any reason (so a plain drain still closes the listeners).
pub fn serve(
    path: PathBuf,
    sockets: Sockets,
    admin: Option<crate::admin::Stopper>,
    drain: Arc<Drain>,
) -> io::Result<()> {
    let listener = bind(&path)?;
    listener.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name("ringway-upgrade".into())
        .spawn(move || loop {
            if drain.is_draining() {
                let _ = std::fs::remove_file(&path);
                return;
            }
            match listener.accept() {
                Ok((line, _)) => match hand_over(line, &sockets, &path, admin.as_ref(), &drain) {
                    Ok(true) => {
                        eprintln!("ringway: upgrade: the successor serves; draining");
                        return;
                    }
                    Ok(false) => {}
                    Err(e) => eprintln!("ringway: upgrade: hand-over failed: {e}"),
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(POLL_INTERVAL)
                }
                Err(e) => {
                    eprintln!("ringway: upgrade: {e}");
                    std::thread::sleep(POLL_INTERVAL);
                }
            }
        })?;
    Ok(())
}

/// Binds the upgrade socket at `path`. A file left there by a process that is gone is
/// replaced; one a live process listens on is not (that process is the one to upgrade from).
fn bind(path: &Path) -> io::Result<UnixListener> {
    match UnixListener::bind(path) {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            if UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "upgrade socket {}: a running process listens there (upgrade from it \
                         with --upgrade-from)",
                        path.display()
                    ),
                ));
            }
            std::fs::remove_file(path)?;
            UnixListener::bind(path)
        }
        other => other,
    }
    .map_err(|e| io::Error::new(e.kind(), format!("upgrade socket {}: {e}", path.display())))
}

/// One successor: sends it the sockets and waits for it to serve. `Ok(true)`: it serves and
/// this process has started its drain.
fn hand_over(
    line: UnixStream,
    sockets: &Sockets,
    path: &Path,
    admin: Option<&crate::admin::Stopper>,
    drain: &Drain,
) -> io::Result<bool> {
    line.set_nonblocking(false)?;
    line.set_read_timeout(Some(READY_WITHIN))?;
    let mut reader = BufReader::new(&line);
    let mut hello = String::new();
    reader.read_line(&mut hello)?;
    if hello.as_bytes() != HELLO {
        return Err(io::Error::other(format!("unexpected greeting {hello:?}")));
    }
    let fds: Vec<_> = sockets
        .plain
        .iter()
        .chain(&sockets.tls)
        .chain(&sockets.admin)
        .map(|l| l.as_fd())
        .collect();
    let header = format!(
        "listeners {} {} {}\n",
        sockets.plain.len(),
        sockets.tls.len(),
        sockets.admin.iter().count()
    );
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(io::Error::other("too many sockets for one message"));
    }
    sendmsg(
        &line,
        &[IoSlice::new(header.as_bytes())],
        &mut control,
        SendFlags::empty(),
    )?;
    let mut answer = String::new();
    reader.read_line(&mut answer)?;
    if answer != "ready\n" {
        // The successor failed to start: this process goes on serving.
        return Err(io::Error::other(format!(
            "the successor did not start (it said {answer:?})"
        )));
    }
    let _ = std::fs::remove_file(path);
    // The successor answers the admin port from now on: this process's /readyz would say
    // "draining" to a balancer's health check about a host that serves.
    if let Some(admin) = admin {
        admin.stop();
    }
    // No delay: the successor accepts on these same sockets.
    drain.start_now();
    (&line).write_all(b"draining\n")?;
    Ok(true)
}
