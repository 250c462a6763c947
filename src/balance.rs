//! Spreading client connections across shards: once per connection, never per call.
//!
//! `SO_REUSEPORT` picks a shard's listener by a hash of the connection's addresses, which is
//! even only over many connections. gRPC clients hold few, long-lived ones: with 4 client
//! connections on 2 shards the hash put all 4 on one shard in two runs of three (one core
//! served every call, 68,700 calls/s, against 113,100 with 2 and 2; `loadgen -c 4 -m 64`,
//! c811a4d, 2-core VM). So a shard that accepts a connection while another shard has fewer
//! open hands it over, before any byte is read: the receiving shard serves it as if it had
//! accepted it.
//!
//! What crosses threads, per new connection only: the open-connection counts (one atomic per
//! shard, changed when a connection is assigned or closes), the socket itself over a channel,
//! and one byte on a socket pair that wakes the receiving shard's inbox task (a monoio read,
//! so an idle shard sleeps in the kernel like any other wait).

use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use serde::{Deserialize, Serialize};

/// How new client connections are spread across shards (`downstream.balance`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Balance {
    /// A shard that accepts a connection while another has fewer open hands it over.
    #[default]
    Connections,
    /// Each shard serves what the kernel's `SO_REUSEPORT` hash gives it.
    Kernel,
}

/// A connection handed to another shard: the socket, and whether it came on the TLS port.
pub struct Handoff {
    pub stream: std::net::TcpStream,
    pub over_tls: bool,
}

/// Handed-over connections waiting in one shard's inbox at most; past it the accepting shard
/// keeps the connection (a shard too busy to take its inbox is no better a home).
const INBOX_CAP: usize = 1024;

/// The shards' open client connections and their inboxes; shared by all shards.
pub struct Balancer {
    open: Vec<AtomicUsize>,
    inboxes: Vec<(Sender<Handoff>, UnixStream)>,
}

/// A shard's side of the balancer: where its handed-over connections arrive.
pub struct Inbox {
    pub connections: Receiver<Handoff>,
    /// Readable when a connection was sent: one byte per send (a wake-up, not a count).
    pub bell: UnixStream,
}

impl Balancer {
    /// A balancer over `shards` shards, and each shard's inbox.
    pub fn new(shards: usize) -> io::Result<(Arc<Balancer>, Vec<Inbox>)> {
        let mut inboxes = Vec::with_capacity(shards);
        let mut own = Vec::with_capacity(shards);
        for _ in 0..shards {
            let (tx, rx) = crossbeam_channel::bounded(INBOX_CAP);
            let (ring, bell) = UnixStream::pair()?;
            ring.set_nonblocking(true)?;
            inboxes.push((tx, ring));
            own.push(Inbox {
                connections: rx,
                bell,
            });
        }
        let open = (0..shards).map(|_| AtomicUsize::new(0)).collect();
        Ok((Arc::new(Balancer { open, inboxes }), own))
    }

    /// Where a connection `shard` just accepted should be served: the shard with the fewest
    /// open connections if it has fewer than `shard` (the first such on ties), else `shard`.
    /// The connection is counted on the chosen shard.
    pub fn assign(&self, shard: usize) -> usize {
        let mine = self.open[shard].load(Ordering::Relaxed);
        let (best, fewest) = self
            .open
            .iter()
            .enumerate()
            .map(|(i, n)| (i, n.load(Ordering::Relaxed)))
            .min_by_key(|&(_, n)| n)
            .unwrap_or((shard, mine));
        let chosen = if fewest < mine { best } else { shard };
        self.open[chosen].fetch_add(1, Ordering::Relaxed);
        chosen
    }

    /// Counts a connection `shard` serves without [`assign`](Self::assign) (balancing off).
    pub fn opened(&self, shard: usize) {
        self.open[shard].fetch_add(1, Ordering::Relaxed);
    }

    /// A connection served by `shard` closed.
    pub fn closed(&self, shard: usize) {
        self.open[shard].fetch_sub(1, Ordering::Relaxed);
    }

    /// Sends `handoff` to shard `to` and rings its bell. When its inbox is full or gone the
    /// connection comes back (`Err`), counted on `from` again.
    pub fn send(&self, from: usize, to: usize, handoff: Handoff) -> Result<(), Handoff> {
        let (tx, ring) = &self.inboxes[to];
        match tx.try_send(handoff) {
            Ok(()) => {
                // A full socket buffer means bells are already waiting to be read: enough.
                let _ = (&*ring).write(&[1]);
                Ok(())
            }
            Err(TrySendError::Full(h) | TrySendError::Disconnected(h)) => {
                self.open[to].fetch_sub(1, Ordering::Relaxed);
                self.open[from].fetch_add(1, Ordering::Relaxed);
                Err(h)
            }
        }
    }

    /// Open connections per shard, as the balancer counts them.
    pub fn open(&self) -> Vec<usize> {
        self.open
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_connection_goes_to_the_shard_with_fewest() {
        let (b, _inboxes) = Balancer::new(3).unwrap();
        // Shard 0 accepts four in a row: they spread 0, 1, 2, then 0 again (ties keep).
        assert_eq!(
            (0..4).map(|_| b.assign(0)).collect::<Vec<_>>(),
            [0, 1, 2, 0]
        );
        assert_eq!(b.open(), [2, 1, 1]);
        b.closed(1);
        assert_eq!(b.assign(2), 1);
        assert_eq!(b.open(), [2, 1, 1]);
    }

    #[test]
    fn a_handoff_that_cannot_be_delivered_comes_back() {
        let (b, inboxes) = Balancer::new(2).unwrap();
        assert_eq!(b.assign(0), 0);
        assert_eq!(b.assign(0), 1);
        drop(inboxes);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let back = b.send(
            0,
            1,
            Handoff {
                stream,
                over_tls: false,
            },
        );
        assert!(back.is_err());
        assert_eq!(b.open(), [2, 0]);
    }
}
