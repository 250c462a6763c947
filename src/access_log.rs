//! The optional access log: one JSON line per call, buffered per shard, written by its own
//! thread.
//!
//! A shard formats a line into its local buffer when a call ends (no lock, no syscall); its
//! control task hands the full buffer to the writer thread every tick. The writer thread owns
//! the file. If it falls behind, buffers are dropped and counted rather than let the shards
//! block on disk. Off by default; `sample` logs a fraction of calls.

use std::cell::{Cell, RefCell};
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::config::AccessLogConfig;

/// Buffers queued for the writer before shards start dropping them.
const QUEUE_BUFFERS: usize = 256;

/// One call, as the access log records it.
pub struct Entry<'a> {
    pub shard: usize,
    pub method: &'a str,
    pub key: &'a [u8],
    pub target: &'a str,
    /// gRPC status as seen on the response, if it carried one.
    pub status: Option<u8>,
    pub outcome: &'static str,
    pub duration_us: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// The client's verified TLS identity, when it presented a certificate.
    pub identity: Option<&'a str>,
}

/// The process side: where shards send their buffers.
#[derive(Clone)]
pub struct Sink {
    tx: Sender<Vec<u8>>,
    /// Lines lost because the writer fell behind.
    pub dropped: Arc<AtomicU64>,
}

/// Opens the log and starts its writer thread; `None` when the log is off.
pub fn start(config: &AccessLogConfig) -> io::Result<Option<Sink>> {
    if config.path.is_empty() {
        return Ok(None);
    }
    let mut out: Box<dyn Write + Send> = if config.path == "-" {
        Box::new(io::stdout())
    } else {
        Box::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&config.path)?,
        )
    };
    let (tx, rx): (Sender<Vec<u8>>, Receiver<Vec<u8>>) = crossbeam_channel::bounded(QUEUE_BUFFERS);
    std::thread::Builder::new()
        .name("ringway-access-log".into())
        .spawn(move || {
            for buffer in rx {
                if out.write_all(&buffer).and_then(|_| out.flush()).is_err() {
                    // Nowhere to report it but stderr; keep consuming so shards never block.
                    eprintln!("ringway: access log write failed");
                }
            }
        })?;
    Ok(Some(Sink {
        tx,
        dropped: Arc::new(AtomicU64::new(0)),
    }))
}

/// A shard's side: its buffer and its sampling state.
/// One call in how many is logged at `sample`.
fn every(config: &AccessLogConfig) -> u64 {
    if config.sample >= 1.0 {
        1
    } else {
        (1.0 / config.sample.max(1e-6)).round() as u64
    }
}

pub struct ShardLog {
    sink: Sink,
    buffer: RefCell<Vec<u8>>,
    /// Log one call in `every`; 1 logs all. A reload may change it.
    every: Cell<u64>,
    seen: Cell<u64>,
    lines: Cell<u64>,
}

impl ShardLog {
    pub fn new(sink: Sink, config: &AccessLogConfig) -> ShardLog {
        ShardLog {
            sink,
            buffer: RefCell::new(Vec::with_capacity(16 << 10)),
            every: Cell::new(every(config)),
            seen: Cell::new(0),
            lines: Cell::new(0),
        }
    }

    /// Whether the next call is to be logged (deterministic 1-in-N sampling).
    pub fn sample(&self) -> bool {
        let n = self.seen.get();
        self.seen.set(n + 1);
        n.is_multiple_of(self.every.get())
    }

    /// A reload's sampling rate (the file stays the one opened at start).
    pub fn reconfigure(&self, config: &AccessLogConfig) {
        self.every.set(every(config));
    }

    pub fn record(&self, e: &Entry<'_>) {
        let mut b = self.buffer.borrow_mut();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut num = itoa::Buffer::new();
        b.extend_from_slice(b"{\"ts\":");
        b.extend_from_slice(num.format(now.as_secs()).as_bytes());
        b.push(b'.');
        let millis = now.subsec_millis();
        b.extend_from_slice(&[
            b'0' + (millis / 100) as u8,
            b'0' + (millis / 10 % 10) as u8,
            b'0' + (millis % 10) as u8,
        ]);
        b.extend_from_slice(b",\"shard\":");
        b.extend_from_slice(num.format(e.shard).as_bytes());
        b.extend_from_slice(b",\"method\":");
        json_string(&mut b, e.method.as_bytes());
        b.extend_from_slice(b",\"key\":");
        json_string(&mut b, e.key);
        b.extend_from_slice(b",\"target\":");
        json_string(&mut b, e.target.as_bytes());
        b.extend_from_slice(b",\"grpc_status\":");
        match e.status {
            Some(s) => b.extend_from_slice(num.format(s).as_bytes()),
            None => b.extend_from_slice(b"null"),
        }
        b.extend_from_slice(b",\"outcome\":\"");
        b.extend_from_slice(e.outcome.as_bytes());
        b.extend_from_slice(b"\",\"duration_us\":");
        b.extend_from_slice(num.format(e.duration_us).as_bytes());
        b.extend_from_slice(b",\"bytes_in\":");
        b.extend_from_slice(num.format(e.bytes_in).as_bytes());
        b.extend_from_slice(b",\"bytes_out\":");
        b.extend_from_slice(num.format(e.bytes_out).as_bytes());
        if let Some(identity) = e.identity {
            b.extend_from_slice(b",\"client_identity\":");
            json_string(&mut b, identity.as_bytes());
        }
        b.extend_from_slice(b"}\n");
        self.lines.set(self.lines.get() + 1);
    }

    /// Hands the buffered lines to the writer thread (called by the shard's control task).
    pub fn flush(&self) {
        let mut b = self.buffer.borrow_mut();
        if b.is_empty() {
            return;
        }
        let full = std::mem::replace(&mut *b, Vec::with_capacity(16 << 10));
        let lines = self.lines.replace(0);
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.sink.tx.try_send(full)
        {
            self.sink.dropped.fetch_add(lines, Ordering::Relaxed);
        }
    }
}

/// Appends `s` as a JSON string: quotes, backslashes and control bytes escaped; bytes that are
/// not UTF-8 replaced.
fn json_string(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    for c in String::from_utf8_lossy(s).chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes());
            }
            c => {
                let mut utf8 = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_json() {
        let (tx, rx) = crossbeam_channel::bounded(4);
        let sink = Sink {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        };
        let config = AccessLogConfig {
            path: "-".into(),
            sample: 0.5,
        };
        let log = ShardLog::new(sink, &config);
        assert!(log.sample());
        assert!(!log.sample());
        log.record(&Entry {
            shard: 1,
            method: "/pkg.Svc/M",
            key: b"job\"1",
            target: "127.0.0.1:5000",
            status: Some(0),
            outcome: "routed",
            duration_us: 42,
            bytes_in: 5,
            bytes_out: 7,
            identity: None,
        });
        log.record(&Entry {
            shard: 0,
            method: "/m",
            key: b"k",
            target: "t",
            status: None,
            outcome: "routed",
            duration_us: 1,
            bytes_in: 0,
            bytes_out: 0,
            identity: Some("client-a"),
        });
        log.flush();
        let line = String::from_utf8(rx.try_recv().unwrap()).unwrap();
        assert!(line.starts_with("{\"ts\":"), "{line}");
        assert!(line.contains(r#""shard":1,"method":"/pkg.Svc/M","key":"job\"1","target":"127.0.0.1:5000","grpc_status":0,"outcome":"routed","duration_us":42,"bytes_in":5,"bytes_out":7}"#), "{line}");
        assert!(
            line.ends_with(",\"client_identity\":\"client-a\"}\n"),
            "{line}"
        );
    }
}
