//! The handles on a stream: [`RecvStream`], [`SendStream`], [`Respond`], [`ResponseFuture`].
//!
//! A handle is the stream's slab index plus its connection. A stream leaves the id map when
//! it is closed (both ends done, or reset) and its slot is freed when its last handle is
//! dropped; dropping every handle of a stream that is not closed resets it (CANCEL).

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::Bytes;

use super::conn::{Role, State};
use super::frame;
use super::headers::Fields;
use super::streams::{In, Stream};
use super::{Error, Reason};

/// A stream the client opened (server role).
pub struct Incoming {
    pub head: Fields,
    /// The request ended with its headers.
    pub end: bool,
    pub body: RecvStream,
    pub respond: Respond,
}

/// A step of a stream's body.
pub enum Chunk {
    /// A DATA frame's payload; `true` when it ended the stream.
    Data(Bytes, bool),
    Trailers(Fields),
}

/// One reference to a stream; the stream is reset when the last one goes without it closed.
pub(super) struct Handle {
    conn: Rc<RefCell<State>>,
    key: usize,
}

impl Handle {
    /// Wraps a reference already counted in the stream's `refs`.
    pub(super) fn adopt(conn: &Rc<RefCell<State>>, key: usize) -> Handle {
        Handle {
            conn: conn.clone(),
            key,
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State, usize) -> R) -> R {
        f(&mut self.conn.borrow_mut(), self.key)
    }

    fn id(&self) -> u32 {
        self.with(|s, key| s.stream(key).id)
    }

    fn poll_reset(&self, cx: &mut Context<'_>) -> Poll<Reason> {
        self.with(|s, key| {
            let st = s.stream(key);
            match reset_reason(st) {
                Some(reason) => Poll::Ready(reason),
                None => {
                    st.reset_waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
    }

    /// [`poll_reset`](Self::poll_reset) without waiting: the reason if the stream was reset
    /// or its connection failed, and no waker left behind.
    fn reset_reason(&self) -> Option<Reason> {
        self.with(|s, key| reset_reason(s.stream(key)))
    }

    fn send_reset(&self, reason: Reason) {
        self.with(|s, key| s.cancel(key, reason));
    }
}

/// Why `st` was reset (by either side), or its connection's error as a reason.
fn reset_reason(st: &Stream) -> Option<Reason> {
    match (st.reset.map(|(r, _)| r).or(st.cancelled), &st.error) {
        (Some(reason), _) => Some(reason),
        (None, Some(e)) => Some(e.reason().unwrap_or(Reason::CANCEL)),
        (None, None) => None,
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        let Ok(mut s) = self.conn.try_borrow_mut() else {
            return;
        };
        let key = self.key;
        let server = s.role == Role::Server;
        let st = s.stream(key);
        st.refs -= 1;
        if st.refs > 0 {
            return;
        }
        if st.open {
            if server && st.send_end && st.sent_head && st.reset.is_none() {
                // Answered in full before the request ended (RFC 9113 §8.1): read the rest of
                // the request and discard it, checking it as any other; the stream closes
                // when it ends, frees its slot as no handle is left, and is reset with
                // NO_ERROR if the client sends more than a window.
                s.start_draining(key);
                return;
            }
            // Abandoned before it closed: tell the peer (after a grace, if it is a client
            // stream the peer has not answered: see `State::cancel`). Closing it frees the
            // slot, as no handle is left.
            s.cancel(key, Reason::CANCEL);
            return;
        }
        if !st.queued {
            s.release_slot(key);
        }
    }
}

/// The receiving half of a stream: DATA and trailers.
pub struct RecvStream(pub(super) Handle);

impl RecvStream {
    /// The next chunk of the body; `Ok(None)` once it ended.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Chunk>, Error>> {
        self.0.with(|s, key| {
            let st = s.stream(key);
            match next_chunk(st) {
                Some(next) => Poll::Ready(next),
                None => {
                    st.recv_waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
    }

    /// [`poll_recv`](Self::poll_recv) without waiting: `None` when nothing is there yet (and
    /// no waker is left behind, so a caller that finds nothing must poll before it waits).
    pub fn try_recv(&mut self) -> Option<Result<Option<Chunk>, Error>> {
        self.0.with(|s, key| next_chunk(s.stream(key)))
    }

    /// The whole rest of the body if it is here already — one DATA frame of at most `limit`
    /// bytes that ends the stream or is followed by the trailers, or the trailers alone (how a
    /// unary request or answer comes) — as its data and its trailers; otherwise nothing is
    /// taken.
    pub fn take_rest(&mut self, limit: usize) -> Option<(Bytes, Option<Fields>)> {
        self.0.with(|s, key| {
            let st = s.stream(key);
            let whole = match (st.recv.front(), st.recv.back(), st.recv.len()) {
                (Some(In::Data(data, true)), _, 1) => data.len() <= limit,
                (Some(In::Data(data, false)), Some(In::Trailers(_)), 2) => data.len() <= limit,
                (Some(In::Trailers(_)), _, 1) => true,
                _ => false,
            };
            if !whole {
                return None;
            }
            // At most a DATA frame, then trailers: what `whole` let through.
            let (mut data, mut trailers) = (Bytes::new(), None);
            while let Some(next) = st.recv.pop_front() {
                match next {
                    In::Data(d, _) => data = d,
                    In::Trailers(fields) => trailers = Some(fields),
                }
            }
            Some((data, trailers))
        })
    }

    /// Gives `n` received bytes back to the sender's windows (they were passed on).
    pub fn release(&mut self, n: usize) {
        self.0.with(|s, key| {
            let st = s.stream(key);
            let n = (n as u32).min(st.unreleased);
            if n == 0 {
                return;
            }
            st.unreleased -= n;
            st.pending_update += n;
            s.send_stream_update(key);
            if !s.local.connection_window_on_receipt {
                s.release_connection(n);
            }
        })
    }

    pub fn stream_id(&self) -> u32 {
        self.0.id()
    }
}

/// What is queued on `st` for its reader, its end, or why it will never come; `None`: nothing
/// yet.
fn next_chunk(st: &mut Stream) -> Option<Result<Option<Chunk>, Error>> {
    match st.recv.pop_front() {
        Some(In::Data(data, end)) => Some(Ok(Some(Chunk::Data(data, end)))),
        Some(In::Trailers(fields)) => Some(Ok(Some(Chunk::Trailers(fields)))),
        None if st.recv_end => Some(Ok(None)),
        None => st.failure().map(Err),
    }
}

/// DATA bytes the stream `key` can queue now: its window and the connection's; 0 while the
/// connection's output is over its limit, and 0 on a stream that can send none ever again.
fn room_now(s: &mut State, key: usize) -> usize {
    if s.unusable(key, true).is_some() || !s.output_room() {
        return 0;
    }
    let conn_window = s.flow.send_window;
    s.stream(key).send_window.min(conn_window).max(0) as usize
}

/// Takes `n` bytes off the stream's and the connection's send windows, or says the windows do
/// not hold them (and takes nothing).
fn debit(s: &mut State, key: usize, n: usize) -> Result<(), Error> {
    let conn_window = s.flow.send_window;
    let st = s.stream(key);
    let n = n as i64;
    if n > st.send_window.min(conn_window) {
        return Err(Error::LocalReset(Reason::FLOW_CONTROL_ERROR));
    }
    st.send_window -= n;
    s.flow.send_window -= n;
    Ok(())
}

/// Queues `data` as DATA frames of stream `id` (END_STREAM on the last with `end`) and wakes
/// the writer.
fn queue_data(s: &mut State, id: u32, data: &[u8], end: bool) {
    let max_frame = s.peer.max_frame;
    frame::put_data(&mut s.out, id, data, end, max_frame);
    s.observe_write(frame::DATA, id);
    s.wake_writer();
}

/// The sending half of a stream: DATA, trailers, reset.
pub struct SendStream(pub(super) Handle);

impl SendStream {
    /// How many bytes [`send_data`](Self::send_data) takes now without waiting: the stream's
    /// and the connection's windows, 0 while the connection's output is over its limit, and
    /// 0 on a stream that can take none ever again.
    pub fn capacity_now(&mut self) -> usize {
        self.0.with(room_now)
    }

    /// [`poll_reset`](Self::poll_reset) without waiting.
    pub fn reset_reason(&self) -> Option<Reason> {
        self.0.reset_reason()
    }

    /// Ready with how many bytes may be sent now (> 0), or why none ever will.
    pub fn poll_capacity(&mut self, cx: &mut Context<'_>) -> Poll<Result<usize, Error>> {
        self.0.with(|s, key| {
            if let Some(e) = s.unusable(key, true) {
                return Poll::Ready(Err(e));
            }
            let conn_window = s.flow.send_window;
            let room = s.output_room();
            let st = s.stream(key);
            let available = st.send_window.min(conn_window);
            if available > 0 && room {
                return Poll::Ready(Ok(available as usize));
            }
            st.send_waker = Some(cx.waker().clone());
            if available > 0 {
                // Windows allow it, but the peer is not reading what is queued: wait until
                // it does, so the bytes stay with their sender (flow control end to end).
                if !st.waiting_output {
                    st.waiting_output = true;
                    s.t().output_waiters.push(key);
                }
            } else if st.send_window > 0 && !st.waiting_conn_window {
                st.waiting_conn_window = true;
                s.t().conn_waiters.push(key);
            }
            Poll::Pending
        })
    }

    /// Sends `data` (at most what [`poll_capacity`](Self::poll_capacity) granted).
    pub fn send_data(&mut self, data: &[u8], end: bool) -> Result<(), Error> {
        self.0.with(|s, key| {
            if let Some(e) = s.unusable(key, true) {
                return Err(e);
            }
            debit(s, key, data.len())?;
            let st = s.stream(key);
            st.send_end = end;
            let id = st.id;
            queue_data(s, id, data, end);
            if end {
                s.maybe_close(key);
            }
            Ok(())
        })
    }

    /// Ends the stream with trailers.
    pub fn send_trailers(&mut self, trailers: &Fields) -> Result<(), Error> {
        self.0.with(|s, key| {
            if let Some(e) = s.unusable(key, true) {
                return Err(e);
            }
            let st = s.stream(key);
            st.send_end = true;
            let id = st.id;
            s.write_head(id, trailers, true);
            s.maybe_close(key);
            Ok(())
        })
    }

    pub fn send_reset(&mut self, reason: Reason) {
        self.0.send_reset(reason)
    }

    /// Ready when the stream was reset (by either side) or its connection failed.
    pub fn poll_reset(&mut self, cx: &mut Context<'_>) -> Poll<Reason> {
        self.0.poll_reset(cx)
    }

    pub fn stream_id(&self) -> u32 {
        self.0.id()
    }
}

/// Answers a client's stream (server role).
pub struct Respond(pub(super) Handle);

impl Respond {
    /// Sends the response head; with `end`, it is the whole response (trailers-only).
    pub fn send_response(&mut self, head: &Fields, end: bool) -> Result<SendStream, Error> {
        self.0.with(|s, key| {
            if let Some(e) = s.unusable(key, false) {
                return Err(e);
            }
            let st = s.stream(key);
            if st.sent_head {
                return Err(Error::LocalReset(Reason::STREAM_CLOSED));
            }
            st.sent_head = true;
            st.send_end = end;
            st.refs += 1;
            let id = st.id;
            s.write_head(id, head, end);
            if end {
                s.guard.early_resets = s.guard.early_resets.saturating_sub(1);
                s.maybe_close(key);
            }
            Ok(())
        })?;
        Ok(SendStream(Handle::adopt(&self.0.conn, self.0.key)))
    }

    /// How many body bytes [`send_whole`](Self::send_whole) takes now: the stream's and the
    /// connection's windows; 0 while the connection's output is over its limit, and 0 on a
    /// stream that cannot be answered (reset, its connection failed, or answered already).
    pub fn capacity_now(&mut self) -> usize {
        self.0.with(|s, key| {
            if s.stream(key).sent_head {
                return 0;
            }
            room_now(s, key)
        })
    }

    /// The whole answer in one go: the head, `data` (at most what
    /// [`capacity_now`](Self::capacity_now) said; no DATA frame when it is empty and trailers
    /// follow), then the trailers, or END_STREAM on the data without them. What
    /// [`send_response`](Self::send_response), [`SendStream::send_data`] and
    /// [`SendStream::send_trailers`] would queue, under one borrow and with no send handle.
    pub fn send_whole(
        &mut self,
        head: &Fields,
        data: &[u8],
        trailers: Option<&Fields>,
    ) -> Result<(), Error> {
        self.0.with(|s, key| {
            if let Some(e) = s.unusable(key, false) {
                return Err(e);
            }
            if s.stream(key).sent_head {
                return Err(Error::LocalReset(Reason::STREAM_CLOSED));
            }
            debit(s, key, data.len())?;
            let st = s.stream(key);
            st.sent_head = true;
            st.send_end = true;
            let id = st.id;
            s.write_head(id, head, false);
            if !data.is_empty() || trailers.is_none() {
                queue_data(s, id, data, trailers.is_none());
            }
            if let Some(trailers) = trailers {
                s.write_head(id, trailers, true);
            }
            s.maybe_close(key);
            Ok(())
        })
    }

    pub fn send_reset(&mut self, reason: Reason) {
        self.0.send_reset(reason)
    }

    pub fn poll_reset(&mut self, cx: &mut Context<'_>) -> Poll<Reason> {
        self.0.poll_reset(cx)
    }

    /// Whether nothing can be sent on the stream any more: the client reset it, or its
    /// connection is gone.
    #[inline]
    pub fn is_closed(&self) -> bool {
        self.0.with(|s, key| s.unusable(key, false).is_some())
    }

    pub fn stream_id(&self) -> u32 {
        self.0.id()
    }
}

/// The response head of a stream we opened (client role).
pub struct ResponseFuture(pub(super) Handle);

/// A response head: its fields, whether it ended the stream (trailers-only), and the body.
pub struct Response {
    pub head: Fields,
    pub end: bool,
    pub body: RecvStream,
}

impl ResponseFuture {
    pub fn stream_id(&self) -> u32 {
        self.0.id()
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let ready = this.0.with(|s, key| {
            let st = s.stream(key);
            if let Some((head, end)) = st.head.take() {
                st.refs += 1;
                return Poll::Ready(Ok((head, end)));
            }
            match st.failure() {
                Some(e) => Poll::Ready(Err(e)),
                None => {
                    st.recv_waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        });
        ready.map(|r| {
            r.map(|(head, end)| Response {
                head,
                end,
                body: RecvStream(Handle::adopt(&this.0.conn, this.0.key)),
            })
        })
    }
}
