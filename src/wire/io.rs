//! Drives a connection's socket: one read loop feeding [`Conn::recv`], one write loop sending
//! what [`Conn::poll_output`] has gathered — everything queued since the last write, in one
//! `write` — both on monoio's completion-based I/O with owned buffers.

use std::future::poll_fn;
use std::pin::pin;

use bytes::BytesMut;
use futures_util::future::{select, Either};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, Splitable};
use monoio::net::TcpStream;

use super::Conn;

/// Read buffer size; a read never asks for less than `MIN_READ` bytes of room.
const READ_BUFFER: usize = 64 << 10;
const MIN_READ: usize = 8 << 10;

/// Runs the connection until it closes; then fails whatever still waits on it.
pub async fn drive(conn: Conn, stream: TcpStream) {
    let (mut reader, mut writer) = stream.into_split();
    let read_loop = async {
        let mut buf = BytesMut::with_capacity(READ_BUFFER);
        loop {
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
            let (result, mut batch) = writer.write_all(batch).await;
            if let Err(e) = result {
                conn.write_failed(&format!("write failed: {e}"));
                return;
            }
            batch.clear();
            // Keep the larger buffer; a huge one (a big message went out) is let go.
            if batch.capacity() <= 1 << 20 {
                spare = batch;
            }
        }
    };
    let (read_loop, write_loop) = (pin!(read_loop), pin!(write_loop));
    match select(read_loop, write_loop).await {
        // Reading ended (peer closed, error, or a GOAWAY of ours is queued): write what is left.
        Either::Left(((), write_loop)) => write_loop.await,
        Either::Right(((), _)) => {}
    }
    conn.finished();
}
