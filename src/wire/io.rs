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

use std::future::poll_fn;
use std::pin::pin;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::future::{select, Either};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, Splitable};
use monoio::net::TcpStream;

use super::Conn;

/// Read buffer size; a read never asks for less than `MIN_READ` bytes of room.
const READ_BUFFER: usize = 64 << 10;
const MIN_READ: usize = 8 << 10;

/// Runs the connection until it closes; then fails whatever still waits on it.
pub async fn drive(conn: Conn, stream: TcpStream) {
    let send_timeout = conn.settings().send_timeout;
    let (mut reader, mut writer) = stream.into_split();
    let read_loop = async {
        let mut buf = BytesMut::with_capacity(READ_BUFFER);
        loop {
            // A peer that does not read what we owe it is not read either, until it does.
            poll_fn(|cx| conn.poll_read_room(cx)).await;
            if buf.capacity() - buf.len() < MIN_READ {
                buf.reserve(READ_BUFFER);
            }
            let (len, cap) = (buf.len(), buf.capacity());
            // monoio reads at the buffer's start; hand it the spare capacity to append instead.
            let (result, slice) = reader.read(buf.slice_mut(len..cap)).await;
            buf = slice.into_inner();
            match result {
                Ok(0) => {
                    conn.read_ended("closed by peer");
                    return;
                }
                Ok(_) => {
                    if !conn.recv(&mut buf) {
                        return;
                    }
                }
                Err(e) => {
                    conn.read_ended(&format!("read failed: {e}"));
                    return;
                }
            }
        }
    };
    let write_loop = async {
        let mut spare = BytesMut::with_capacity(16 << 10);
        loop {
            let Some(batch) = poll_fn(|cx| conn.poll_output(cx, &mut spare)).await else {
                return;
            };
            let (result, mut batch) = write_all(&mut writer, batch, send_timeout).await;
            match result {
                Ok(()) => {}
                Err(WriteError::Timeout(limit)) => {
                    conn.send_timed_out(limit);
                    return;
                }
                Err(WriteError::Failed(e)) => {
                    conn.write_failed(&e);
                    return;
                }
            }
            conn.written();
            batch.clear();
            // Keep the larger buffer; a huge one (a big message went out) is let go.
            if batch.capacity() <= 1 << 20 {
                spare = batch;
            }
        }
    };
    let aborted = poll_fn(|cx| conn.poll_aborted(cx));
    let (read_loop, write_loop) = (pin!(read_loop), pin!(write_loop));
    let io = async {
        match select(read_loop, write_loop).await {
            // Reading ended (peer closed, error, or a GOAWAY of ours is queued): write what is
            // left.
            Either::Left(((), write_loop)) => write_loop.await,
            Either::Right(((), _)) => {}
        }
    };
    // An abort drops both loops: their operations are cancelled and the socket closes.
    let _ = select(pin!(io), pin!(aborted)).await;
    conn.finished();
}

enum WriteError {
    /// A write made no progress for this long.
    Timeout(Duration),
    Failed(String),
}

/// Writes all of `batch`; a write that has not completed after `timeout` fails the call (the
/// dropped write is cancelled).
async fn write_all<W: AsyncWriteRent>(
    writer: &mut W,
    batch: BytesMut,
    timeout: Option<Duration>,
) -> (Result<(), WriteError>, BytesMut) {
    let total = batch.len();
    let mut written = 0;
    let mut batch = batch;
    while written < total {
        let slice = monoio::buf::IoBuf::slice(batch, written..total);
        let (result, slice) = match timeout {
            None => writer.write(slice).await,
            Some(limit) => match monoio::time::timeout(limit, writer.write(slice)).await {
                Ok(done) => done,
                Err(_) => return (Err(WriteError::Timeout(limit)), BytesMut::new()),
            },
        };
        batch = slice.into_inner();
        match result {
            Ok(0) => {
                let why = "write failed: wrote zero bytes".to_string();
                return (Err(WriteError::Failed(why)), batch);
            }
            Ok(n) => written += n,
            Err(e) => return (Err(WriteError::Failed(format!("write failed: {e}"))), batch),
        }
    }
    (Ok(()), batch)
}
