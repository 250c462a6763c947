//! Drives a connection's socket: one read loop feeding [`Conn::recv`], one write loop sending
//! what [`Conn::poll_output`] has gathered — everything queued since the last write, in one
//! `write` — both on monoio's completion-based I/O with owned buffers.
//!
//! # Bounds
//!
//! - The read loop reads only while the connection's queued output is under its limit
//!   ([`Conn::poll_read_room`]): a peer that floods us with frames that need answers and does
//!   not read the answers stops being read, instead of making us queue without end.
//! - A write that makes no progress for the send timeout closes the connection: a peer that
//!   stops reading cannot hold its connection (and the calls on it) forever.
//! - An abort ([`Conn::abort`]) ends both loops at once; dropping their in-flight operations
//!   cancels them in the kernel (monoio's `async-cancel`), so the socket closes even when the
//!   peer neither reads nor writes.
//!
//! # Transports
//!
//! [`drive`] is generic over a [`Transport`]: what sits between the socket and the HTTP/2
//! bytes. [`Plain`] is nothing at all — every method is an inlined identity, so the plaintext
//! path compiles to what it was before transports existed (callgrind: see the README, "TLS").
//! TLS ([`crate::tls::TlsTransport`]) decrypts what was read before [`Conn::recv`] sees it and
//! encrypts each gathered batch before it is written.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_util::future::{select, Either};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, OwnedReadHalf, OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;

use super::{Conn, Role};
use crate::deadline::Deadline;

/// Read buffer size while streams are open; a read never asks for less than `MIN_READ` bytes
/// of room.
const READ_BUFFER: usize = 64 << 10;
const MIN_READ: usize = 8 << 10;
/// Read buffer of a connection with no stream open and no partial frame: what an idle
/// connection holds while it waits. An io_uring read owns its buffer until bytes arrive, so
/// the buffer's size is what idleness costs: 10,000 idle clients held 64 KiB buffers (15.9 KB
/// resident each, 0c2051f). A read that fills it is followed at once by one into a full-size
/// buffer; on a busy connection reads are issued while streams are open and never use it.
const IDLE_READ: usize = 32;
/// Room for more while an idle connection's buffer holds part of a frame.
const IDLE_PARTIAL: usize = 1024;
/// After a graceful close (GOAWAY, streams done, the last bytes written): how long the socket
/// stays open, reading (and dropping) what the peer still sends, for the peer to close first.
/// Closing at once — or even sending our FIN — while a stream it opened before our GOAWAY
/// reached it is still on its way makes the peer see a reset or an end of stream where it
/// should see the GOAWAY that says that stream was not processed (so it may be retried);
/// an HTTP/2 client closes by itself once it has read the GOAWAY and has nothing open.
const LINGER: Duration = Duration::from_secs(1);
/// The most a closing connection reads and drops ([`drain`]): what a peer had in flight when our
/// GOAWAY reached it, not a flood it keeps sending.
const DRAIN_BYTES: usize = 1 << 20;

/// The two halves of a connection's socket.
pub type Halves = (OwnedReadHalf<TcpStream>, OwnedWriteHalf<TcpStream>);

/// What sits between the socket and the HTTP/2 bytes. The read loop hands it what it read;
/// the write loop hands it each batch [`Conn::poll_output`] gathered. One connection's read
/// and write loops share it (one task, one thread), so methods take `&self`.
pub trait Transport {
    /// Checks the first bytes the connection received; `Err` closes the connection at once.
    #[inline]
    fn first_bytes(&self, _bytes: &[u8]) -> Result<(), &'static str> {
        Ok(())
    }

    /// Called once before the first read: plaintext that arrived before the driver started
    /// (with the end of a TLS handshake) goes to `recv`. `false`: stop reading.
    #[inline]
    fn start(&self, _recv: impl FnOnce(&mut BytesMut) -> bool) -> bool {
        true
    }

    /// Whether the transport holds part of something (a TLS record, a frame) and more bytes
    /// are needed at once, so an idle connection's read buffer must not shrink to
    /// [`IDLE_READ`].
    #[inline]
    fn holds_partial(&self) -> bool {
        false
    }

    /// Turns what was just read (`raw`) into the connection's bytes and hands them to `recv`;
    /// returns what `recv` returned (`false`: stop reading). `raw` keeps what is not consumed.
    fn received(
        &self,
        raw: &mut BytesMut,
        recv: impl FnOnce(&mut BytesMut) -> bool,
    ) -> io::Result<bool>;

    /// The bytes to write for a batch the connection gathered.
    fn seal(&self, batch: BytesMut) -> io::Result<BytesMut>;

    /// The sealed buffer back, written and cleared; returns the buffer the connection fills
    /// next (`keep`: the driver would keep a buffer for the next turn).
    fn written(&self, written: BytesMut, keep: bool) -> BytesMut;

    /// Bytes to send once the connection has nothing more to write (a TLS `close_notify`).
    #[inline]
    fn closing(&self) -> Option<BytesMut> {
        None
    }
}

/// No transport: the socket's bytes are the connection's bytes.
pub struct Plain;

impl Transport for Plain {
    #[inline]
    fn received(
        &self,
        raw: &mut BytesMut,
        recv: impl FnOnce(&mut BytesMut) -> bool,
    ) -> io::Result<bool> {
        Ok(recv(raw))
    }

    #[inline]
    fn seal(&self, batch: BytesMut) -> io::Result<BytesMut> {
        Ok(batch)
    }

    #[inline]
    fn written(&self, written: BytesMut, _keep: bool) -> BytesMut {
        written
    }
}

/// A client connection on the plaintext port: [`Plain`], except that a TLS ClientHello where
/// the HTTP/2 preface belongs (a record of type 22, handshake: first byte `0x16`, then `0x03`
/// of the version) closes the connection at once and calls `on_tls` (for a metric). The
/// preface starts with `P`, so one byte tells them apart.
pub struct PlainRefusingTls<F: Fn()>(pub F);

impl<F: Fn()> Transport for PlainRefusingTls<F> {
    #[inline]
    fn first_bytes(&self, bytes: &[u8]) -> Result<(), &'static str> {
        if bytes.first() == Some(&0x16) {
            (self.0)();
            return Err("a TLS ClientHello on the plaintext port");
        }
        Ok(())
    }

    #[inline]
    fn received(
        &self,
        raw: &mut BytesMut,
        recv: impl FnOnce(&mut BytesMut) -> bool,
    ) -> io::Result<bool> {
        Plain.received(raw, recv)
    }

    #[inline]
    fn seal(&self, batch: BytesMut) -> io::Result<BytesMut> {
        Plain.seal(batch)
    }

    #[inline]
    fn written(&self, written: BytesMut, keep: bool) -> BytesMut {
        Plain.written(written, keep)
    }
}

/// Splits a socket for [`drive`]. Split before the connection's future is built, so the
/// 80-byte socket is not kept in the future's state for the connection's whole life.
pub fn split(stream: TcpStream) -> Halves {
    stream.into_split()
}

/// Runs the connection until it closes; then fails whatever still waits on it.
///
/// The future is kept small (it lives as long as the connection, idle or not): the read loop
/// holds its one pending read, and the write loop boxes each write while it is under way
/// (a ~200-byte allocation per write, from the allocator's thread cache).
pub async fn drive<T: Transport>(conn: Conn, (mut reader, writer): Halves, transport: T) {
    let transport = &transport;
    // Armed while a write is under way, pushed back whenever it makes progress. A server
    // connection's owner watches its writes itself ([`Conn::write_started`]) with the timers
    // it keeps anyway, so an idle client holds no deadline for it.
    let settings = conn.settings();
    let stalled = (settings.send_timeout.is_some() && conn.role() == Role::Client)
        .then(|| (Deadline::new(), settings.send_timeout.unwrap_or_default()));
    // When the next abandoned stream's reset is due (client connections: see
    // [`Conn::poll_cancels`]).
    let cancels = (conn.role() == Role::Client).then(Deadline::new);
    let read_loop = async {
        let mut buf = BytesMut::new();
        if !transport.start(|plain| conn.recv(plain)) {
            return;
        }
        let mut first = true;
        loop {
            // A peer that does not read what we owe it is not read either, until it does.
            poll_fn(|cx| conn.poll_read_room(cx)).await;
            let spare = buf.capacity() - buf.len();
            if conn.open_streams() > 0 {
                if spare < MIN_READ {
                    buf.reserve(READ_BUFFER);
                }
            } else if buf.is_empty() && !transport.holds_partial() {
                // Idle: wait with a small buffer, letting a big one go.
                if buf.capacity() != IDLE_READ {
                    buf = BytesMut::with_capacity(IDLE_READ);
                }
            } else if spare < IDLE_PARTIAL {
                // Idle with part of a frame: room for the rest of a first flight, not a full
                // buffer (a peer that sends a byte and stops would hold 64 KiB). `recv` has
                // reserved what the frame itself still needs.
                buf.reserve(IDLE_PARTIAL);
            }
            let (len, cap) = (buf.len(), buf.capacity());
            // monoio reads at the buffer's start; hand it the spare capacity to append instead.
            let (result, slice) = reader.read(buf.slice_mut(len..cap)).await;
            buf = slice.into_inner();
            match result {
                Ok(0) => {
                    conn.read_ended(None);
                    return;
                }
                Ok(_) => {
                    if first {
                        first = false;
                        if let Err(why) = transport.first_bytes(&buf) {
                            conn.abort(why);
                            return;
                        }
                    }
                    match transport.received(&mut buf, |plain| conn.recv(plain)) {
                        Ok(true) => {}
                        // Closing: what the peer still sends is read and dropped (see `drain`).
                        Ok(false) => return drain(&mut reader, buf).await,
                        Err(e) => {
                            conn.read_ended(Some(e));
                            return;
                        }
                    }
                }
                Err(e) => {
                    conn.read_ended(Some(e));
                    return;
                }
            }
        }
    };
    let write_loop = async {
        // Grows to what a turn's output needs; let go when the connection is trimmed.
        let mut spare = BytesMut::new();
        // The write under way lives in a box of its own (its io_uring operation is ~170 bytes
        // an idle connection need not carry in its future), reused write after write: no
        // allocation per write on a busy connection; let go with the buffers.
        let mut slot = None;
        let mut writer = Some(writer);
        loop {
            let (batch, last) = match poll_fn(|cx| conn.poll_output(cx, &mut spare)).await {
                Some(batch) => match transport.seal(batch) {
                    Ok(sealed) => (sealed, false),
                    Err(e) => {
                        conn.write_failed(e);
                        return false;
                    }
                },
                // Nothing more to write: what the transport says last (TLS close_notify).
                None => match transport.closing() {
                    Some(bytes) => (bytes, true),
                    None => return true,
                },
            };
            let watch = stalled.as_ref().map(|(deadline, limit)| (deadline, *limit));
            let Some(half) = writer.take() else {
                return false;
            };
            let write = slot.get_or_insert_with(|| Box::pin(None));
            write.set(Some(write_all(half, batch, watch)));
            let (half, result, mut batch) = poll_fn(|cx| match write.as_mut().as_pin_mut() {
                Some(write) => write.poll(cx),
                None => Poll::Pending,
            })
            .await;
            write.set(None);
            writer = Some(half);
            if let Err(e) = result {
                conn.write_failed(e);
                return false;
            }
            if last {
                return true;
            }
            conn.written();
            batch.clear();
            // Keep the larger buffer (and the write's box) for the next turn; a huge buffer
            // (a big message went out) is let go, and so is everything of a connection that
            // was trimmed, or that never had a stream (what it wrote was its handshake).
            let keep = !conn.trimmed() && conn.had_streams();
            let batch = transport.written(batch, keep);
            if batch.capacity() <= 1 << 20 && keep {
                spare = batch;
            }
            if !keep {
                slot = None;
            }
        }
    };
    // Ends the driver: an abort, or a write that made no progress for the send timeout.
    let aborted = poll_fn(|cx| {
        if let Some((deadline, limit)) = &stalled {
            if deadline.poll_expired(cx).is_ready() {
                conn.send_timed_out(*limit);
                return Poll::Ready(());
            }
        }
        if let Some(deadline) = &cancels {
            let _ = conn.poll_cancels(cx, deadline);
        }
        conn.poll_aborted(cx)
    });
    let (read_loop, write_loop) = (pin!(read_loop), pin!(write_loop));
    let io = async {
        match select(read_loop, write_loop).await {
            // Reading ended (peer closed, error, or a GOAWAY of ours is queued): write what is
            // left.
            Either::Left(((), write_loop)) => {
                write_loop.await;
            }
            // Closed gracefully: read (and drop) what the peer still sends until it closes, for
            // at most `LINGER`.
            Either::Right((true, read_loop)) => {
                // Boxed: a monoio `Sleep` is 640 bytes, and in the future's own state it would
                // be carried by every connection for its whole life (+780 B of RSS per idle
                // client in tests/hostile.rs), not only by one that is closing.
                let _ = select(read_loop, Box::pin(monoio::time::sleep(LINGER))).await;
            }
            Either::Right((false, _)) => {}
        }
    };
    // An abort drops both loops: their operations are cancelled and the socket closes.
    let _ = select(pin!(io), pin!(aborted)).await;
    conn.finished();
}

/// Once the connection is closing (our GOAWAY is queued or sent): reads and drops what the peer
/// still sends until it closes or reading fails. A socket closed with unread input is reset
/// by the kernel, and the reset can destroy what we wrote last — the GOAWAY saying why — before
/// the peer reads it (seen in `tests/hostile.rs`: a flooding client read 592 of our
/// RST_STREAMs, then a reset, no GOAWAY). How long this may go on is the driver's bound: the
/// write loop's (send timeout, abort), then [`LINGER`] once the last bytes are written; and at
/// most [`DRAIN_BYTES`] are read: a peer still flooding after that is cut off by the reset.
async fn drain<R: AsyncReadRent>(reader: &mut R, mut buf: BytesMut) {
    buf.clear();
    buf.reserve(MIN_READ);
    let mut left = DRAIN_BYTES;
    while left > 0 {
        let cap = buf.capacity();
        let (result, slice) = reader.read(buf.slice_mut(0..cap)).await;
        buf = slice.into_inner();
        buf.clear();
        match result {
            Ok(n) if n > 0 => left = left.saturating_sub(n),
            _ => return,
        }
    }
}

/// Writes all of `batch` and hands `writer` back. With `watch`, the deadline is armed `limit`
/// ahead while a write is under way and pushed back on progress (the driver ends the
/// connection if it passes). Owns the writer, so the future borrows nothing from the loop and
/// can be kept in one box across writes.
async fn write_all<W: AsyncWriteRent>(
    mut writer: W,
    mut batch: BytesMut,
    watch: Option<(&Deadline, Duration)>,
) -> (W, io::Result<()>, BytesMut) {
    let total = batch.len();
    let mut written = 0;
    while written < total {
        if let Some((deadline, limit)) = watch {
            deadline.set(Instant::now() + limit);
        }
        let slice = monoio::buf::IoBuf::slice(batch, written..total);
        let (result, slice) = writer.write(slice).await;
        batch = slice.into_inner();
        match result {
            Ok(0) => {
                let error = io::Error::new(io::ErrorKind::WriteZero, "wrote zero bytes");
                return (writer, Err(error), batch);
            }
            Ok(n) => written += n,
            Err(e) => return (writer, Err(e), batch),
        }
    }
    if let Some((deadline, _)) = watch {
        deadline.clear();
    }
    (writer, Ok(()), batch)
}
