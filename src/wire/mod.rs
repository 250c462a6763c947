//! ringway's own HTTP/2 (RFC 9113), built for one job: relaying gRPC calls on one thread.
//!
//! Why not a general-purpose library: a relay receives a header block on one connection and
//! sends it on another, moves DATA between two flow-control windows, and does it for every
//! call. General libraries pay, per call, for thread safety (locks, atomics), for converting
//! header blocks into maps and back, for priority scheduling, and for queueing every frame
//! before it is written. Here:
//!
//! - one connection is one `RefCell`'d [`conn::State`] on one shard thread; streams live in
//!   its slab and handles are an index into it, so no lock and no reference count per stream;
//! - a header block is decoded into a flat list of fields whose names and values are slices of
//!   the bytes read, or of the HPACK tables (no copy), and encoded for the other side straight
//!   from that list ([`hpack`]): each value is copied once, into the outgoing buffer;
//! - frames are written into the connection's output buffer as they are sent, and the
//!   connection's writer sends the whole buffer in one `write` per turn of the event loop;
//! - the I/O is monoio's completion-based `read`/`write` on owned buffers ([`io`]).
//!
//! The surface is what [`proxy`](crate::proxy), [`downstream`](crate::downstream) and
//! [`upstream`](crate::upstream) need: accept a stream (server), open one (client), the head,
//! DATA and trailers both ways with end-to-end flow control, resets, PING, and GOAWAY.
//!
//! # Layout
//!
//! - [`frame`]: frame headers and the writers of each frame type.
//! - [`hpack`] (with `huffman`): header compression, both directions.
//! - `headers`: [`Fields`], a decoded header block, and the checks a received one must pass.
//! - `streams`: one stream's state, and the slab a connection keeps its streams in.
//! - [`conn`]: [`Conn`], the calls its driver and owner make, and its [`conn::State`].
//! - `recv`: the frames the peer sent, checked and applied to that state.
//! - `handles`: [`RecvStream`], [`SendStream`], [`Respond`], [`ResponseFuture`].
//! - [`guard`]: flood counts and the limits a connection defends itself with.
//! - [`io`]: the socket driver: reads into the connection, writes what it queued.

pub mod conn;
pub mod frame;
pub mod guard;
mod handles;
mod headers;
pub mod hpack;
mod huffman;
pub mod io;
mod recv;
mod streams;

use std::fmt;

use std::rc::Rc;
use std::time::Duration;

pub use conn::{Conn, Role, Settings};
pub use frame::Head;
pub use guard::{Flood, Refusal};
pub use handles::{Chunk, Incoming, RecvStream, Respond, Response, ResponseFuture, SendStream};
pub use headers::Fields;

/// What a connection's owner wants to hear of its frames (keepalive activity, a client's
/// PINGs for ping enforcement, a target's GOAWAY). All methods default to doing nothing.
pub trait Observer {
    /// Bytes arrived from the peer (called once per read, before their frames).
    fn read_bytes(&self, _n: usize) {}
    /// A frame header was read from the peer.
    fn read(&self, _frame: &Head) {}
    /// The peer sent GOAWAY: the last stream id it processed and its error code.
    fn read_goaway(&self, _last_stream: u32, _code: u32) {}
    /// A HEADERS or DATA frame was queued for the peer (`len` is not filled in).
    fn written(&self, _frame: &Head) {}
    /// The connection is being ended with GOAWAY ENHANCE_YOUR_CALM for a flood of `kind`.
    fn flood(&self, _kind: Flood) {}
    /// Reading stopped because the queued output passed its limit (once per pause).
    fn output_paused(&self) {}
    /// The connection is being closed because its output did not move for the send timeout.
    fn send_timed_out(&self) {}
    /// The peer sent DATA beyond a window it was given (FLOW_CONTROL_ERROR).
    fn flow_control_error(&self) {}
    /// A stream the peer opened was refused before it was served.
    fn refused(&self, _why: Refusal) {}
}

/// An HTTP/2 error code (RFC 9113 §7).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Reason(pub u32);

impl Reason {
    pub const NO_ERROR: Reason = Reason(0x0);
    pub const PROTOCOL_ERROR: Reason = Reason(0x1);
    pub const INTERNAL_ERROR: Reason = Reason(0x2);
    pub const FLOW_CONTROL_ERROR: Reason = Reason(0x3);
    pub const STREAM_CLOSED: Reason = Reason(0x5);
    pub const FRAME_SIZE_ERROR: Reason = Reason(0x6);
    pub const REFUSED_STREAM: Reason = Reason(0x7);
    pub const CANCEL: Reason = Reason(0x8);
    pub const COMPRESSION_ERROR: Reason = Reason(0x9);
    pub const ENHANCE_YOUR_CALM: Reason = Reason(0xb);

    fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0x0 => "NO_ERROR",
            0x1 => "PROTOCOL_ERROR",
            0x2 => "INTERNAL_ERROR",
            0x3 => "FLOW_CONTROL_ERROR",
            0x4 => "SETTINGS_TIMEOUT",
            0x5 => "STREAM_CLOSED",
            0x6 => "FRAME_SIZE_ERROR",
            0x7 => "REFUSED_STREAM",
            0x8 => "CANCEL",
            0x9 => "COMPRESSION_ERROR",
            0xa => "CONNECT_ERROR",
            0xb => "ENHANCE_YOUR_CALM",
            0xc => "INADEQUATE_SECURITY",
            0xd => "HTTP_1_1_REQUIRED",
            _ => return None,
        })
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "error code {:#x}", self.0),
        }
    }
}

impl fmt::Debug for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a stream or connection operation failed.
#[derive(Clone, Debug)]
pub enum Error {
    /// The peer reset the stream.
    Reset(Reason),
    /// The stream was reset by us (an earlier `send_reset`, or a protocol error on it).
    LocalReset(Reason),
    /// A GOAWAY ended the stream (it was above the peer's last stream id) or forbids new ones.
    GoAway { reason: Reason, remote: bool },
    /// The connection is gone: closed, broken, or ended for a protocol error.
    Closed(Closed),
}

/// Why a connection ended.
#[derive(Clone, Debug)]
pub enum Closed {
    /// The peer closed its side of the socket.
    ByPeer,
    /// Reading from the socket failed.
    Read(Rc<std::io::Error>),
    /// Writing to the socket failed.
    Write(Rc<std::io::Error>),
    /// Output waited and nothing was written for this long: the peer is not reading.
    SendTimeout(Duration),
    /// We ended it for the peer's protocol error, with a GOAWAY carrying `why`.
    ProtocolError { reason: Reason, why: &'static str },
    /// Its owner closed it (ringway: idle, age, pool shrink, a failed keepalive).
    ByUs(&'static str),
    /// All client stream ids (2^31 / 2) were used.
    StreamIdsExhausted,
    /// The connection's driver ended after an orderly close (GOAWAY, or closed when idle).
    Ended,
}

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Closed::ByPeer => f.write_str("closed by peer"),
            Closed::Read(e) => write!(f, "read failed: {e}"),
            Closed::Write(e) => write!(f, "write failed: {e}"),
            Closed::SendTimeout(limit) => write!(
                f,
                "send timeout: nothing written for {} ms",
                limit.as_millis()
            ),
            Closed::ProtocolError { reason, why } => write!(f, "{reason}: {why}"),
            Closed::ByUs(why) => f.write_str(why),
            Closed::StreamIdsExhausted => f.write_str("stream ids exhausted"),
            Closed::Ended => f.write_str("connection closed"),
        }
    }
}

impl Closed {
    /// The I/O error underneath, if the socket failed.
    pub fn io_error(&self) -> Option<&std::io::Error> {
        match self {
            Closed::Read(e) | Closed::Write(e) => Some(e),
            _ => None,
        }
    }
}

impl Error {
    /// The HTTP/2 error code, if the failure carried one.
    pub fn reason(&self) -> Option<Reason> {
        match self {
            Error::Reset(r) | Error::LocalReset(r) | Error::GoAway { reason: r, .. } => Some(*r),
            Error::Closed(_) => None,
        }
    }

    /// The peer reset the stream.
    pub fn is_reset(&self) -> bool {
        matches!(self, Error::Reset(_))
    }

    pub fn is_go_away(&self) -> bool {
        matches!(self, Error::GoAway { .. })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Reset(r) => write!(f, "stream reset by peer: {r}"),
            Error::LocalReset(r) => write!(f, "stream reset locally: {r}"),
            Error::GoAway {
                reason,
                remote: true,
            } => write!(f, "connection going away (peer sent GOAWAY {reason})"),
            Error::GoAway { reason, .. } => write!(f, "connection going away (GOAWAY {reason})"),
            Error::Closed(why) => write!(f, "connection closed: {why}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Closed(closed) => closed
                .io_error()
                .map(|e| e as &(dyn std::error::Error + 'static)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
