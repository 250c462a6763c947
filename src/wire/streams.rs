//! A connection's streams: one [`Stream`]'s state, and [`Streams`], the slab they live in with
//! the id map, the accept queue and the waiters. What is done to them lives in
//! [`super::conn`] and [`super::recv`].

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::task::Waker;
use std::time::Instant;

use bytes::Bytes;

use super::headers::Fields;
use super::{Error, Reason};

/// `Stream::content_left` when the peer announced no length.
pub(super) const NO_LENGTH: u64 = u64::MAX;

/// What a stream received, in order.
pub(super) enum In {
    Data(Bytes, bool),
    Trailers(Fields),
}

/// One stream: what it received and sent, its windows, and who waits on it. It is in the
/// slab from its first frame until it is closed and its last handle dropped.
pub(super) struct Stream {
    pub(super) id: u32,
    /// Handles alive.
    pub(super) refs: u32,
    /// In the id map: not closed yet.
    pub(super) open: bool,
    /// Waiting in the accept queue (a server stream not yet handed out).
    pub(super) queued: bool,
    /// The response head (client streams), until taken.
    pub(super) head: Option<(Fields, bool)>,
    pub(super) got_head: bool,
    pub(super) recv: VecDeque<In>,
    pub(super) recv_end: bool,
    /// Bytes received and not yet released by the application.
    pub(super) unreleased: u32,
    /// Released bytes not yet sent as WINDOW_UPDATE.
    pub(super) pending_update: u32,
    pub(super) recv_window: i64,
    pub(super) send_window: i64,
    /// Headers went out (server: the response head).
    pub(super) sent_head: bool,
    pub(super) send_end: bool,
    /// Reset, by whom, and why.
    pub(super) reset: Option<(Reason, bool)>,
    /// Client: abandoned by the application before the peer answered; the RST_STREAM with
    /// this reason is owed, and sent once the peer answers or the grace runs out
    /// (`Settings::cancel_grace`). The handles see the stream as reset.
    pub(super) cancelled: Option<Reason>,
    /// The connection's failure, or a GOAWAY, ended the stream.
    pub(super) error: Option<Error>,
    pub(super) recv_waker: Option<Waker>,
    pub(super) send_waker: Option<Waker>,
    pub(super) reset_waker: Option<Waker>,
    pub(super) waiting_conn_window: bool,
    /// Waiting for room in the connection's output.
    pub(super) waiting_output: bool,
    /// Server: the response went out in full and no handle is left; the rest of the request
    /// is read and discarded until it ends (RFC 9113 §8.1), up to `drain_left` bytes, then
    /// the stream is reset with NO_ERROR.
    pub(super) draining: bool,
    pub(super) drain_left: u32,
    /// Body bytes the peer's `content-length` still announces; [`NO_LENGTH`] if none.
    pub(super) content_left: u64,
    /// Client: the request was a HEAD (its response announces a length it does not carry).
    pub(super) head_request: bool,
}

impl Stream {
    pub(super) fn new(id: u32, recv_window: u32, send_window: u32) -> Stream {
        Stream {
            id,
            refs: 0,
            open: true,
            queued: false,
            head: None,
            got_head: false,
            recv: VecDeque::new(),
            recv_end: false,
            unreleased: 0,
            pending_update: 0,
            recv_window: recv_window as i64,
            send_window: send_window as i64,
            sent_head: false,
            send_end: false,
            reset: None,
            cancelled: None,
            error: None,
            recv_waker: None,
            send_waker: None,
            reset_waker: None,
            waiting_conn_window: false,
            waiting_output: false,
            draining: false,
            drain_left: 0,
            content_left: NO_LENGTH,
            head_request: false,
        }
    }

    pub(super) fn wake_all(&mut self) {
        for w in [
            self.recv_waker.take(),
            self.send_waker.take(),
            self.reset_waker.take(),
        ]
        .into_iter()
        .flatten()
        {
            w.wake();
        }
    }

    /// Why the stream cannot be used any more, if it cannot.
    #[inline]
    pub(super) fn failure(&self) -> Option<Error> {
        if let Some((reason, remote)) = self.reset {
            return Some(if remote {
                Error::Reset(reason)
            } else {
                Error::LocalReset(reason)
            });
        }
        if let Some(reason) = self.cancelled {
            return Some(Error::LocalReset(reason));
        }
        self.error.clone()
    }
}

/// Stream ids are small and distinct: hashing them is a multiply.
#[derive(Default)]
pub(super) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

pub(super) type IdMap = HashMap<u32, usize, BuildHasherDefault<IdHasher>>;

/// Spare receive queues kept per connection.
pub(super) const SPARE_QUEUES: usize = 256;

/// A connection's streams: the slab, the id map, the accept queue and the waiters.
#[derive(Default)]
pub(super) struct Streams {
    pub(super) slots: Vec<Option<Stream>>,
    pub(super) free: Vec<usize>,
    pub(super) ids: IdMap,
    /// Streams waiting for the connection window.
    pub(super) conn_waiters: Vec<usize>,
    /// Receive queues of freed streams, kept for new ones (no allocation per stream).
    pub(super) spare_queues: Vec<VecDeque<In>>,
    /// Waiting for the peer's stream limit to let one more stream open.
    pub(super) ready_waiters: Vec<Waker>,
    pub(super) accept: VecDeque<(usize, Fields, bool)>,
    /// Streams waiting for room in the output.
    pub(super) output_waiters: Vec<usize>,
    /// Abandoned client streams whose reset is owed (key, id, when it is due), oldest first.
    pub(super) cancels: VecDeque<(usize, u32, Instant)>,
}

impl Streams {
    /// Whether nothing is in it but spare capacity.
    pub(super) fn is_empty(&self) -> bool {
        self.ids.is_empty()
            && self.accept.is_empty()
            && self.ready_waiters.is_empty()
            && self.cancels.is_empty()
            && self.slots.iter().all(Option::is_none)
    }
}
