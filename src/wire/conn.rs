//! One HTTP/2 connection: [`Conn`], what its driver and its owner call, and [`State`], what it
//! knows.
//!
//! [`State`] is sans-I/O: the driver ([`super::io`]) feeds it the bytes it reads
//! ([`Conn::recv`]) and writes what it has queued ([`Conn::poll_output`]); everything else —
//! handshake, SETTINGS, flow control, stream states, PING, GOAWAY, the HPACK contexts — happens
//! here, on the shard's thread, under one `RefCell` borrow per operation. What arrives is handled
//! in [`super::recv`]; the handles on streams are in [`super::handles`], their state in
//! [`super::streams`].
//!
//! Flow control is end to end: received DATA counts against the windows we advertised until
//! the application [`release`](super::RecvStream::release)s it (after the other side took
//! it), and WINDOW_UPDATE goes out when half a window has been released.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::frame::{self, Head};
use super::guard::{Flood, Guard, MAX_LOCAL_ERROR_RESETS};
use super::handles::{Handle, Incoming, RecvStream, Respond, ResponseFuture, SendStream};
use super::headers::Fields;
use super::hpack::{Decoder, Encoder};
use super::recv::Partial;
use super::streams::{Stream, Streams, SPARE_QUEUES};
use super::{Closed, Error, Observer, Reason};
use crate::deadline::Deadline;

// Also named from here (`wire::conn::Chunk`) by the relay and the fuzz targets.
pub use super::handles::{Chunk, Response};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Client,
    Server,
}

/// What we advertise.
#[derive(Debug, Clone)]
pub struct Settings {
    /// SETTINGS_INITIAL_WINDOW_SIZE: each stream's receive window.
    pub stream_window: u32,
    /// The connection's receive window (raised by WINDOW_UPDATE after the preface).
    pub connection_window: u32,
    /// SETTINGS_MAX_CONCURRENT_STREAMS (server; `u32::MAX`: not sent).
    pub max_concurrent_streams: u32,
    /// SETTINGS_MAX_HEADER_LIST_SIZE (server; a larger request gets 431).
    pub max_header_list: u32,
    /// Queued output, in bytes, past which the connection is not read and its streams wait
    /// for room before sending DATA: what a peer that does not read can make us hold.
    pub output_limit: usize,
    /// Frames of one kind that do no work (SETTINGS, PING, RST_STREAM, PRIORITY, empty DATA,
    /// empty CONTINUATION) allowed per second; past it: GOAWAY ENHANCE_YOUR_CALM.
    pub max_control_frames_per_second: u32,
    /// Give received DATA back to the connection window as soon as it is queued on its
    /// stream, instead of when the application releases it. Each stream then holds at most
    /// its own window, and a stream whose reader stalls cannot use up the window the other
    /// streams of the connection need (a shared upstream connection: one stalled client must
    /// not stall the others).
    pub connection_window_on_receipt: bool,
    /// A connection with output waiting that writes nothing for this long is closed.
    pub send_timeout: Option<Duration>,
    /// Client: how long a stream abandoned before the peer answered stays open before it is
    /// reset ([`State::cancel`]); zero: reset at once.
    pub cancel_grace: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            stream_window: frame::DEFAULT_WINDOW,
            connection_window: frame::DEFAULT_WINDOW,
            max_concurrent_streams: u32::MAX,
            max_header_list: 16 << 10,
            output_limit: 256 << 10,
            max_control_frames_per_second: 10_000,
            connection_window_on_receipt: false,
            send_timeout: None,
            cancel_grace: CANCEL_GRACE,
        }
    }
}

/// A connection-level error: GOAWAY with this code, then close.
pub(super) struct ConnError(pub(super) Reason, pub(super) &'static str);

/// How far a graceful GOAWAY got.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Goaway {
    None,
    /// GOAWAY with the maximum id and a PING went out; the ACK tells the client has seen it.
    Announced,
    /// The final GOAWAY, with this last stream id.
    Sent(u32),
}

/// The PING payload of a graceful shutdown, and of user pings.
pub(super) const GOAWAY_PING: [u8; 8] = *b"rw-drain";
pub(super) const USER_PING: [u8; 8] = *b"rw-alive";
/// The PING of [`Conn::trim`]: its ACK only completes the pending read.
const TRIM_PING: [u8; 8] = *b"rw-trim!";

/// One connection's state, shared by its [`Conn`] and every handle on its streams.
pub struct State {
    pub(super) role: Role,
    /// Shared by every connection of a shard with the same settings.
    pub(super) local: Rc<Settings>,
    pub(super) peer: PeerSettings,
    pub(super) handshake: Handshake,
    pub(super) flow: FlowControl,
    /// The HPACK contexts: the peer's header blocks are decoded with one, ours encoded with
    /// the other.
    pub(super) decoder: Decoder,
    pub(super) encoder: Encoder,
    /// Frames queued for the writer.
    pub(super) out: BytesMut,
    driver: Driver,
    /// The streams and who waits on them; allocated with the first stream, so a connection
    /// that never had one (or was trimmed) holds none of it.
    pub(super) table: Option<Box<Streams>>,
    /// The id of the next stream we open.
    next_local_id: u32,
    /// The highest stream id the peer opened (or tried to).
    pub(super) last_peer_id: u32,
    /// Streams open now.
    pub(super) active: u32,
    /// Waiting in [`Conn::poll_accept`].
    pub(super) accept_waker: Option<Waker>,
    /// Boxed: rare (a header block split over CONTINUATION frames), and 48 bytes inline.
    pub(super) partial: Option<Box<Partial>>,
    pub(super) ping: Ping,
    pub(super) shutdown: Shutdown,
    /// Why the connection failed, once it has.
    failed: Option<Error>,
    pub(super) observer: Option<Rc<dyn Observer>>,
    pub(super) guard: Guard,
    /// Idle and trimmed ([`Conn::trim`]) since the last stream opened.
    trimmed: bool,
}

/// What the peer's SETTINGS said (the defaults until they arrive).
pub(super) struct PeerSettings {
    /// SETTINGS_INITIAL_WINDOW_SIZE: each stream's send window.
    pub(super) initial_window: u32,
    /// SETTINGS_MAX_FRAME_SIZE: the largest frame we may send.
    pub(super) max_frame: usize,
    /// SETTINGS_MAX_CONCURRENT_STREAMS: streams we may have open at once.
    pub(super) max_streams: u32,
}

/// The start of the connection: the client preface and the first SETTINGS each way.
pub(super) struct Handshake {
    /// Bytes of the client preface still to be read (server).
    pub(super) preface_left: usize,
    /// The peer's SETTINGS arrived: the handshake is complete.
    pub(super) got_settings: bool,
    /// The peer acknowledged ours.
    pub(super) settings_acked: bool,
    /// Waiting in [`Conn::poll_handshake`].
    pub(super) waker: Option<Waker>,
}

/// The connection's flow-control windows (each stream has its own as well).
pub(super) struct FlowControl {
    /// What the peer lets us send.
    pub(super) send_window: i64,
    /// What we let the peer send.
    pub(super) recv_window: i64,
    /// Released bytes not yet sent as WINDOW_UPDATE.
    recv_pending: u32,
}

/// What the socket driver ([`super::io`]) waits on, and the batch it is writing.
struct Driver {
    /// The write loop, waiting for output.
    writer: Option<Waker>,
    /// Bytes handed to the writer and not yet written: they count against `output_limit`.
    writing: usize,
    /// When the writer took them.
    write_started: Option<Instant>,
    /// The read loop, waiting for room in the output before it reads again.
    reader: Option<Waker>,
    /// Waiting in [`Conn::poll_aborted`].
    abort_waker: Option<Waker>,
}

/// Our PING ([`Conn::send_ping`]) and its ACK.
pub(super) struct Ping {
    /// Sent and not yet acknowledged.
    pub(super) in_flight: bool,
    /// Acknowledged, and not yet seen by [`Conn::poll_pong`].
    pub(super) pong: bool,
    /// Waiting in [`Conn::poll_pong`].
    pub(super) waker: Option<Waker>,
}

/// How the connection ends: GOAWAY either way, closing once idle, flushing or not.
pub(super) struct Shutdown {
    /// How far our graceful GOAWAY got.
    pub(super) goaway: Goaway,
    /// The peer's GOAWAY: the lowest last stream id it sent, and its error code.
    pub(super) goaway_recv: Option<(u32, Reason)>,
    /// Close once no stream is open (a GOAWAY went out, or the owner retired the connection).
    close_when_idle: bool,
    /// The writer flushes what is queued and ends the connection.
    pub(super) closing: bool,
    /// Closed without flushing: the driver drops its reads and writes at once.
    aborted: bool,
}

/// How long, by default, a client stream abandoned before the peer answered it stays open
/// before it is reset ([`State::cancel`], [`Settings::cancel_grace`]): ample for a server to
/// take the stream from its accept queue (`h2` does so as soon as its connection task runs),
/// short enough that abandoned streams do not hold a connection's stream limit for long.
pub const CANCEL_GRACE: Duration = Duration::from_millis(100);

/// A connection: cheap to clone, single-threaded.
#[derive(Clone)]
pub struct Conn(Rc<RefCell<State>>);

impl Conn {
    /// A connection in `role`; the preface and our SETTINGS are queued for the writer.
    pub fn new(
        role: Role,
        local: impl Into<Rc<Settings>>,
        observer: Option<Rc<dyn Observer>>,
    ) -> Conn {
        let local: Rc<Settings> = local.into();
        // Sized for the preface and SETTINGS; grows with the first calls.
        let mut out = BytesMut::with_capacity(64);
        if role == Role::Client {
            out.extend_from_slice(frame::PREFACE);
        }
        let mut params = vec![(frame::SETTINGS_INITIAL_WINDOW_SIZE, local.stream_window)];
        match role {
            Role::Client => params.push((frame::SETTINGS_ENABLE_PUSH, 0)),
            Role::Server => {
                if local.max_concurrent_streams != u32::MAX {
                    params.push((
                        frame::SETTINGS_MAX_CONCURRENT_STREAMS,
                        local.max_concurrent_streams,
                    ));
                }
                params.push((frame::SETTINGS_MAX_HEADER_LIST_SIZE, local.max_header_list));
            }
        }
        frame::put_settings(&mut out, &params);
        if local.connection_window > frame::DEFAULT_WINDOW {
            frame::put_window_update(&mut out, 0, local.connection_window - frame::DEFAULT_WINDOW);
        }
        let recv_window = local.connection_window.max(frame::DEFAULT_WINDOW) as i64;
        Conn(Rc::new(RefCell::new(State {
            role,
            local,
            peer: PeerSettings {
                initial_window: frame::DEFAULT_WINDOW,
                max_frame: frame::DEFAULT_MAX_FRAME as usize,
                max_streams: u32::MAX,
            },
            handshake: Handshake {
                preface_left: if role == Role::Server {
                    frame::PREFACE.len()
                } else {
                    0
                },
                got_settings: false,
                settings_acked: false,
                waker: None,
            },
            flow: FlowControl {
                send_window: frame::DEFAULT_WINDOW as i64,
                recv_window,
                recv_pending: 0,
            },
            decoder: Decoder::new(4096),
            encoder: Encoder::new(),
            out,
            driver: Driver {
                writer: None,
                writing: 0,
                write_started: None,
                reader: None,
                abort_waker: None,
            },
            table: None,
            next_local_id: 1,
            last_peer_id: 0,
            active: 0,
            accept_waker: None,
            partial: None,
            ping: Ping {
                in_flight: false,
                pong: false,
                waker: None,
            },
            shutdown: Shutdown {
                goaway: Goaway::None,
                goaway_recv: None,
                close_when_idle: false,
                closing: false,
                aborted: false,
            },
            failed: None,
            observer,
            guard: Guard::new(),
            trimmed: false,
        })))
    }

    // --- for the driver ----------------------------------------------------------------------

    /// Consumes the whole frames at the front of `buf`. `false`: stop reading.
    pub fn recv(&self, buf: &mut BytesMut) -> bool {
        let mut s = self.0.borrow_mut();
        if let Some(observer) = &s.observer {
            observer.read_bytes(buf.len());
        }
        match s.recv_frames(buf) {
            Ok(()) => !s.shutdown.closing,
            Err(ConnError(reason, why)) => {
                s.connection_error(reason, why);
                false
            }
        }
    }

    /// The peer closed its side (`None`), or reading failed.
    pub fn read_ended(&self, error: Option<io::Error>) {
        let why = error.map_or(Closed::ByPeer, |e| Closed::Read(Rc::new(e)));
        self.0.borrow_mut().shut(why, false);
    }

    /// Writing failed: nothing more can be sent.
    pub fn write_failed(&self, error: io::Error) {
        self.0
            .borrow_mut()
            .shut(Closed::Write(Rc::new(error)), true);
    }

    /// A write made no progress for `limit`: the peer is not reading. The connection closes.
    pub fn send_timed_out(&self, limit: Duration) {
        let mut s = self.0.borrow_mut();
        if let Some(observer) = &s.observer {
            observer.send_timed_out();
        }
        s.shut(Closed::SendTimeout(limit), true);
    }

    /// Resets the abandoned streams whose grace ran out ([`State::cancel`]) and keeps
    /// `deadline` at the next one; never ready. The socket driver polls it beside
    /// [`poll_aborted`](Self::poll_aborted), on every wake: with nothing owed it reads no clock.
    /// The first deferral wakes the driver through the waker `poll_aborted` keeps.
    pub fn poll_cancels(&self, cx: &mut Context<'_>, deadline: &Deadline) -> Poll<()> {
        let mut s = self.0.borrow_mut();
        if s.table.as_ref().is_none_or(|t| t.cancels.is_empty()) {
            return Poll::Pending;
        }
        while let Some(due) = s.release_cancels(Instant::now()) {
            deadline.set(due);
            if deadline.poll_expired(cx).is_pending() {
                break;
            }
        }
        Poll::Pending
    }

    /// Resets the abandoned streams whose grace ran out by `now`; returns when the next one is
    /// due. For a connection without a socket driver (tests).
    pub fn release_cancels(&self, now: Instant) -> Option<Instant> {
        self.0.borrow_mut().release_cancels(now)
    }

    /// Ready once the connection was aborted: its socket is to be closed now, whatever
    /// reads or writes are in flight.
    pub fn poll_aborted(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = self.0.borrow_mut();
        if s.shutdown.aborted {
            return Poll::Ready(());
        }
        s.driver.abort_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Ready with the bytes to write (swapped with `spare`, which must be empty), or `None`
    /// once the connection is closing and everything queued was written. The bytes count
    /// against the output limit until [`written`](Self::written).
    pub fn poll_output(
        &self,
        cx: &mut Context<'_>,
        spare: &mut BytesMut,
    ) -> Poll<Option<BytesMut>> {
        let mut s = self.0.borrow_mut();
        if !s.out.is_empty() {
            std::mem::swap(&mut s.out, spare);
            let batch = std::mem::take(spare);
            if s.trimmed {
                // The spare goes too: nothing is kept for a connection that went idle.
                s.out = BytesMut::new();
            }
            s.driver.writing = batch.len();
            s.driver.write_started = Some(Instant::now());
            return Poll::Ready(Some(batch));
        }
        if s.shutdown.closing {
            return Poll::Ready(None);
        }
        s.driver.writer = Some(cx.waker().clone());
        Poll::Pending
    }

    /// The batch from [`poll_output`](Self::poll_output) was written: its room is free again
    /// for the read loop and for streams waiting to send.
    pub fn written(&self) {
        let mut s = self.0.borrow_mut();
        s.driver.writing = 0;
        s.driver.write_started = None;
        s.output_room_freed();
    }

    /// Ready when the queued output is below the limit, so reading may go on. A peer that
    /// makes us queue output (ACKs, resets, responses) and does not read it is not read
    /// either, until it does.
    pub fn poll_read_room(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = self.0.borrow_mut();
        if s.queued_output() <= s.local.output_limit || s.shutdown.closing {
            return Poll::Ready(());
        }
        if s.driver.reader.is_none() {
            if let Some(observer) = &s.observer {
                observer.output_paused();
            }
        }
        s.driver.reader = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Gives back what an idle connection need not hold: its output buffers now, its read
    /// buffer when the next read completes — made to complete by a PING, whose ACK is the
    /// client's next bytes. Undone by the next stream.
    pub fn trim(&self) {
        let mut s = self.0.borrow_mut();
        if s.trimmed || s.failed.is_some() || s.active > 0 {
            return;
        }
        s.trimmed = true;
        if s.table.as_ref().is_some_and(|t| t.is_empty()) {
            s.table = None;
        }
        // Up to 4 KiB of header fields and their index, kept for calls that may not come.
        s.encoder.forget();
        frame::put_ping(&mut s.out, false, TRIM_PING);
        s.wake_writer();
    }

    /// Whether the connection was trimmed and has had no stream since.
    pub fn trimmed(&self) -> bool {
        self.0.borrow().trimmed
    }

    /// Whether a stream was ever opened on the connection.
    pub fn had_streams(&self) -> bool {
        let s = self.0.borrow();
        s.last_peer_id > 0 || s.next_local_id > 1
    }

    /// When the write under way started, if one is.
    pub fn write_started(&self) -> Option<Instant> {
        self.0.borrow().driver.write_started
    }

    /// Bytes queued or being written.
    pub fn queued_output(&self) -> usize {
        self.0.borrow().queued_output()
    }

    /// The connection's settings (what we advertised and our limits).
    pub fn settings(&self) -> Settings {
        (*self.0.borrow().local).clone()
    }

    /// The driver ended: everything still waiting learns the connection is gone.
    pub fn finished(&self) {
        let mut s = self.0.borrow_mut();
        s.shut(Closed::Ended, false);
    }

    // --- for the owner -----------------------------------------------------------------------

    /// Ready once the peer's SETTINGS arrived (the handshake is complete).
    pub fn poll_handshake(&self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let mut s = self.0.borrow_mut();
        if let Some(e) = &s.failed {
            return Poll::Ready(Err(e.clone()));
        }
        if s.handshake.got_settings {
            return Poll::Ready(Ok(()));
        }
        s.handshake.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// The next stream the client opened; `None` once the connection is done.
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<Option<Incoming>> {
        if let Some(incoming) = self.try_accept() {
            return Poll::Ready(Some(incoming));
        }
        let mut s = self.0.borrow_mut();
        if s.shutdown.closing || s.failed.is_some() {
            return Poll::Ready(None);
        }
        s.accept_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// A stream the client opened, if one is waiting (no waker registered).
    pub fn try_accept(&self) -> Option<Incoming> {
        let mut s = self.0.borrow_mut();
        let (key, head, end) = s.table.as_mut()?.accept.pop_front()?;
        let st = s.stream(key);
        st.queued = false;
        st.refs += 2;
        drop(s);
        Some(Incoming {
            head,
            end,
            body: RecvStream(Handle::adopt(&self.0, key)),
            respond: Respond(Handle::adopt(&self.0, key)),
        })
    }

    /// Opens a stream with this request head (client role).
    pub fn send_request(
        &self,
        head: &Fields,
        end: bool,
    ) -> Result<(ResponseFuture, SendStream), Error> {
        let mut s = self.0.borrow_mut();
        s.opens_streams()?;
        if s.next_local_id > frame::MAX_WINDOW {
            return Err(Error::Closed(Closed::StreamIdsExhausted));
        }
        let id = s.next_local_id;
        s.next_local_id += 2;
        let mut stream = Stream::new(id, s.local.stream_window, s.peer.initial_window);
        stream.sent_head = true;
        stream.send_end = end;
        stream.head_request = head.get(b":method").is_some_and(|m| m.as_ref() == b"HEAD");
        stream.refs = 2;
        let key = s.insert(stream);
        s.t().ids.insert(id, key);
        s.active += 1;
        s.write_head(id, head, end);
        drop(s);
        Ok((
            ResponseFuture(Handle::adopt(&self.0, key)),
            SendStream(Handle::adopt(&self.0, key)),
        ))
    }

    /// Streams the peer lets us open at once (its SETTINGS_MAX_CONCURRENT_STREAMS).
    pub fn peer_max_streams(&self) -> usize {
        self.0.borrow().peer.max_streams as usize
    }

    /// Ready when a stream can be opened now; an error when none ever will on this connection
    /// (it failed, or is going away).
    pub fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let mut s = self.0.borrow_mut();
        if let Err(e) = s.opens_streams() {
            return Poll::Ready(Err(e));
        }
        if s.active < s.peer.max_streams {
            return Poll::Ready(Ok(()));
        }
        s.t().ready_waiters.push(cx.waker().clone());
        Poll::Pending
    }

    /// The last stream id of the peer's GOAWAY, if it sent one.
    pub fn goaway_last_stream(&self) -> Option<u32> {
        self.0.borrow().shutdown.goaway_recv.map(|(last, _)| last)
    }

    /// The peer's GOAWAY error code, if it sent one.
    pub fn goaway_reason(&self) -> Option<Reason> {
        self.0
            .borrow()
            .shutdown
            .goaway_recv
            .map(|(_, reason)| reason)
    }

    /// Why the connection failed, once it has.
    pub fn failure(&self) -> Option<Error> {
        self.0.borrow().failed.clone()
    }

    /// Sends a PING; `false` if one of ours is still unanswered.
    pub fn send_ping(&self) -> bool {
        let mut s = self.0.borrow_mut();
        if s.ping.in_flight || s.failed.is_some() {
            return false;
        }
        s.ping.in_flight = true;
        s.ping.pong = false;
        frame::put_ping(&mut s.out, false, USER_PING);
        s.wake_writer();
        true
    }

    /// Ready when the ACK of our PING arrived.
    pub fn poll_pong(&self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let mut s = self.0.borrow_mut();
        if s.ping.pong {
            s.ping.pong = false;
            return Poll::Ready(Ok(()));
        }
        if let Some(e) = &s.failed {
            return Poll::Ready(Err(e.clone()));
        }
        s.ping.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Server: GOAWAY in two steps (the maximum id and a PING, then on its ACK the last stream
    /// id really accepted), so no stream the client sent meanwhile is lost; the connection
    /// closes when its streams are done. Client: GOAWAY and close when idle.
    pub fn graceful_shutdown(&self) {
        let mut s = self.0.borrow_mut();
        if s.shutdown.goaway != Goaway::None || s.failed.is_some() {
            return;
        }
        match s.role {
            Role::Server => {
                s.shutdown.goaway = Goaway::Announced;
                frame::put_goaway(&mut s.out, frame::MAX_WINDOW, 0, &[]);
                frame::put_ping(&mut s.out, false, GOAWAY_PING);
            }
            Role::Client => {
                let last = s.last_peer_id;
                s.shutdown.goaway = Goaway::Sent(last);
                frame::put_goaway(&mut s.out, last, 0, &[]);
                s.shutdown.close_when_idle = true;
                s.close_if_idle();
            }
        }
        s.wake_writer();
    }

    /// GOAWAY with `reason` and `debug` data, then close now; open streams fail.
    pub fn abrupt_shutdown(&self, reason: Reason, debug: &[u8]) {
        let mut s = self.0.borrow_mut();
        if s.failed.is_some() {
            return;
        }
        let last = s.last_peer_id;
        frame::put_goaway(&mut s.out, last, reason.0, debug);
        s.fail(Error::GoAway {
            reason,
            remote: false,
        });
        s.shutdown.closing = true;
        s.wake_writer();
    }

    /// No new streams; closes (without GOAWAY) once the open ones are done.
    pub fn retire(&self) {
        let mut s = self.0.borrow_mut();
        s.shutdown.close_when_idle = true;
        s.close_if_idle();
    }

    /// Closes now: open streams fail.
    pub fn abort(&self, why: &'static str) {
        self.0.borrow_mut().shut(Closed::ByUs(why), true);
    }

    pub fn role(&self) -> Role {
        self.0.borrow().role
    }

    /// Streams open now.
    pub fn open_streams(&self) -> usize {
        self.0.borrow().active as usize
    }

    /// Streams abandoned before the peer answered whose reset is still owed
    /// ([`Settings::cancel_grace`]): open, counted against the peer's stream limit, used by no one.
    pub fn abandoned_streams(&self) -> usize {
        self.0
            .borrow()
            .table
            .as_ref()
            .map_or(0, |t| t.cancels.len())
    }
}

impl State {
    /// Whether new streams may open here: not if the connection failed, the peer sent GOAWAY,
    /// or we are closing it.
    #[inline]
    fn opens_streams(&self) -> Result<(), Error> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if let Some((_, reason)) = self.shutdown.goaway_recv {
            return Err(Error::GoAway {
                reason,
                remote: true,
            });
        }
        if self.shutdown.close_when_idle || self.shutdown.goaway != Goaway::None {
            return Err(Error::GoAway {
                reason: Reason::NO_ERROR,
                remote: false,
            });
        }
        Ok(())
    }

    /// Why stream `key` can take no more frames from us, if it cannot: reset, ended by the
    /// connection's failure or a GOAWAY, or (with `sending`) its END_STREAM already sent.
    #[inline]
    pub(super) fn unusable(&mut self, key: usize, sending: bool) -> Option<Error> {
        let failed = self.failed.is_some();
        let stream = self.stream(key);
        if stream.reset.is_some() || stream.cancelled.is_some() || stream.error.is_some() || failed
        {
            return self.stream(key).failure().or_else(|| self.failed.clone());
        }
        (sending && stream.send_end).then_some(Error::LocalReset(Reason::STREAM_CLOSED))
    }

    /// Ends the connection for `why` (unless it already failed): every waiter learns it and the
    /// writer stops after what is queued — or at once, with `discard`.
    fn shut(&mut self, why: Closed, discard: bool) {
        if self.failed.is_none() {
            self.fail(Error::Closed(why));
        }
        self.shutdown.closing = true;
        if discard {
            self.out.clear();
            self.shutdown.aborted = true;
            if let Some(w) = self.driver.abort_waker.take() {
                w.wake();
            }
        }
        self.wake_writer();
    }

    /// The stream table, allocated on first use.
    #[inline]
    pub(super) fn t(&mut self) -> &mut Streams {
        match &mut self.table {
            Some(t) => t,
            table => table.insert(Box::default()),
        }
    }

    /// The slab key of open stream `id`.
    #[inline]
    pub(super) fn key_of(&self, id: u32) -> Option<usize> {
        self.table.as_ref()?.ids.get(&id).copied()
    }

    /// The keys of every open stream.
    pub(super) fn open_keys(&self) -> Vec<usize> {
        self.table
            .as_ref()
            .map_or_else(Vec::new, |t| t.ids.values().copied().collect())
    }

    /// A stream by slab key: it exists, so the table does.
    #[inline]
    pub(super) fn stream(&mut self, key: usize) -> &mut Stream {
        self.table
            .as_mut()
            .and_then(|t| t.slots.get_mut(key))
            .and_then(Option::as_mut)
            .expect("a handle's stream is in the slab")
    }

    pub(super) fn insert(&mut self, mut stream: Stream) -> usize {
        self.trimmed = false;
        let t = self.t();
        if let Some(queue) = t.spare_queues.pop() {
            stream.recv = queue;
        }
        match t.free.pop() {
            Some(key) => {
                t.slots[key] = Some(stream);
                key
            }
            None => {
                t.slots.push(Some(stream));
                t.slots.len() - 1
            }
        }
    }

    pub(super) fn wake_writer(&mut self) {
        if let Some(w) = self.driver.writer.take() {
            w.wake();
        }
    }

    fn queued_output(&self) -> usize {
        self.out.len() + self.driver.writing
    }

    /// Whether DATA may be queued now: the output is below its limit.
    pub(super) fn output_room(&self) -> bool {
        self.queued_output() < self.local.output_limit
    }

    /// Wakes the read loop and the streams waiting for output room, if there is room.
    fn output_room_freed(&mut self) {
        if !self.output_room() {
            return;
        }
        if let Some(w) = self.driver.reader.take() {
            w.wake();
        }
        let Some(t) = self.table.as_mut() else {
            return;
        };
        for key in std::mem::take(&mut t.output_waiters) {
            if let Some(st) = t.slots[key].as_mut() {
                st.waiting_output = false;
                if let Some(w) = st.send_waker.take() {
                    w.wake();
                }
            }
        }
    }

    pub(super) fn observe_write(&self, kind: u8, stream: u32) {
        if let Some(observer) = &self.observer {
            observer.written(&Head {
                len: 0,
                kind,
                flags: 0,
                stream,
            });
        }
    }

    pub(super) fn write_head(&mut self, id: u32, head: &Fields, end: bool) {
        let start = self.out.len();
        self.out.extend_from_slice(&[0; frame::HEADER_LEN]);
        self.encoder.encode_marked(
            head.iter()
                .map(|f| (f.name.as_ref(), f.value.as_ref(), f.sensitive)),
            &mut self.out,
        );
        frame::frame_header_block(&mut self.out, start, id, end, self.peer.max_frame);
        self.observe_write(frame::HEADERS, id);
        self.wake_writer();
    }

    /// Fails the connection: every stream and waiter learns `error`.
    fn fail(&mut self, error: Error) {
        self.failed = Some(error.clone());
        let keys: Vec<usize> = match self.table.as_mut() {
            Some(t) => t.ids.drain().map(|(_, key)| key).collect(),
            None => Vec::new(),
        };
        for key in keys {
            let st = self.stream(key);
            st.open = false;
            if st.error.is_none() && st.reset.is_none() {
                st.error = Some(error.clone());
            }
            st.wake_all();
            if st.refs == 0 && !st.queued {
                self.release_slot(key);
            }
        }
        self.active = 0;
        let queued = match self.table.as_mut() {
            Some(t) => std::mem::take(&mut t.accept),
            None => VecDeque::new(),
        };
        for (key, _, _) in queued {
            self.release_slot(key);
        }
        for w in [
            self.accept_waker.take(),
            self.ping.waker.take(),
            self.handshake.waker.take(),
        ]
        .into_iter()
        .flatten()
        {
            w.wake();
        }
        if let Some(t) = self.table.as_mut() {
            t.conn_waiters.clear();
            t.output_waiters.clear();
        }
        if let Some(w) = self.driver.reader.take() {
            w.wake();
        }
        self.wake_ready();
    }

    pub(super) fn wake_ready(&mut self) {
        if let Some(t) = self.table.as_mut() {
            for w in t.ready_waiters.drain(..) {
                w.wake();
            }
        }
    }

    fn connection_error(&mut self, reason: Reason, why: &'static str) {
        let last = self.last_peer_id;
        frame::put_goaway(&mut self.out, last, reason.0, why.as_bytes());
        self.fail(Error::Closed(Closed::ProtocolError { reason, why }));
        self.shutdown.closing = true;
        self.wake_writer();
    }

    /// Frees a stream's slot, giving its unreleased bytes back to the connection window.
    pub(super) fn release_slot(&mut self, key: usize) {
        let t = self.t();
        if let Some(mut st) = t.slots[key].take() {
            t.free.push(key);
            let unreleased = st.unreleased;
            if t.spare_queues.len() < SPARE_QUEUES && st.recv.capacity() > 0 {
                st.recv.clear();
                t.spare_queues.push(std::mem::take(&mut st.recv));
            }
            let deferred = !self.local.connection_window_on_receipt;
            if unreleased > 0 && deferred && self.failed.is_none() {
                self.release_connection(unreleased);
            }
        }
    }

    pub(super) fn release_connection(&mut self, n: u32) {
        self.flow.recv_pending += n;
        if self.flow.recv_pending >= self.local.connection_window.max(frame::DEFAULT_WINDOW) / 2 {
            let n = std::mem::take(&mut self.flow.recv_pending);
            self.flow.recv_window += n as i64;
            frame::put_window_update(&mut self.out, 0, n);
            self.wake_writer();
        }
    }

    /// Sends the stream's released bytes as WINDOW_UPDATE once they reach half a window.
    #[inline]
    pub(super) fn send_stream_update(&mut self, key: usize) {
        let half = self.local.stream_window / 2;
        let st = self.stream(key);
        if st.open && !st.recv_end && st.pending_update >= half.max(1) {
            let inc = std::mem::take(&mut st.pending_update);
            st.recv_window += inc as i64;
            let id = st.id;
            frame::put_window_update(&mut self.out, id, inc);
            self.wake_writer();
        }
    }

    /// Closes the stream if both ends are done or it was reset.
    pub(super) fn maybe_close(&mut self, key: usize) {
        let st = self.stream(key);
        if !st.open || !((st.recv_end && st.send_end) || st.reset.is_some() || st.error.is_some()) {
            return;
        }
        st.open = false;
        let (id, free) = (st.id, st.refs == 0 && !st.queued);
        self.t().ids.remove(&id);
        self.active -= 1;
        self.wake_ready();
        if free {
            self.release_slot(key);
        }
        self.close_if_idle();
    }

    pub(super) fn close_if_idle(&mut self) {
        if self.active > 0 || self.shutdown.closing {
            return;
        }
        let done = self.shutdown.close_when_idle
            || matches!(self.shutdown.goaway, Goaway::Sent(_))
            || self.shutdown.goaway_recv.is_some();
        if done {
            self.shutdown.closing = true;
            if self.failed.is_none() {
                self.failed = Some(Error::GoAway {
                    reason: Reason::NO_ERROR,
                    remote: self.shutdown.goaway_recv.is_some(),
                });
                if let Some(w) = self.accept_waker.take() {
                    w.wake();
                }
            }
            self.wake_writer();
        }
    }

    /// A server stream whose response is complete and which nobody reads any more: what it
    /// holds is given back and whatever else the client sends on it is discarded.
    pub(super) fn start_draining(&mut self, key: usize) {
        let window = self.local.stream_window;
        let st = self.stream(key);
        st.draining = true;
        st.drain_left = window;
        st.recv.clear();
        let held = std::mem::take(&mut st.unreleased);
        st.pending_update += held;
        if !self.local.connection_window_on_receipt {
            self.release_connection(held);
        }
        self.send_stream_update(key);
    }

    /// The application gives up on stream `key`: a handle's `send_reset`, or its last handle
    /// dropped before the stream closed.
    ///
    /// A client stream the peer has not answered yet is not reset at once but after
    /// [`Settings::cancel_grace`], or as soon as the peer answers or ends it. A server that has not yet
    /// taken the stream from its accept queue when the reset arrives counts it as a rapid
    /// reset (CVE-2023-44487; the `h2` crate behind tonic and hyper ends the connection after
    /// 20), and the streams of one connection to a target belong to many clients: a client
    /// cut off with hundreds of calls just forwarded (a flood's GOAWAY, a window overrun)
    /// would otherwise have them reset in the same write as their HEADERS, and the target
    /// would drop the connection with every other client's calls on it. The handles see the
    /// stream as reset at once; the peer's frames on it meanwhile are dropped.
    pub(super) fn cancel(&mut self, key: usize, reason: Reason) {
        let client = self.role == Role::Client;
        let grace = self.local.cancel_grace;
        let st = self.stream(key);
        if !st.open || st.cancelled.is_some() {
            return;
        }
        if !client || grace.is_zero() || st.got_head || st.reset.is_some() || st.error.is_some() {
            self.reset(key, reason);
            return;
        }
        // Unanswered: nothing was received on it (DATA before the response head is refused).
        st.cancelled = Some(reason);
        st.wake_all();
        let id = st.id;
        let t = self.t();
        let first = t.cancels.is_empty();
        t.cancels.push_back((key, id, Instant::now() + grace));
        if first {
            // The socket driver arms its deadline for it ([`Conn::poll_cancels`]).
            if let Some(w) = &self.driver.abort_waker {
                w.wake_by_ref();
            }
        }
    }

    /// Resets the abandoned streams whose grace ran out by `now` (those the peer answered or
    /// ended meanwhile are gone already); returns when the next one is due.
    pub(super) fn release_cancels(&mut self, now: Instant) -> Option<Instant> {
        loop {
            let t = self.table.as_mut()?;
            let &(key, id, due) = t.cancels.front()?;
            if due > now {
                return Some(due);
            }
            t.cancels.pop_front();
            let owed = match t.slots.get(key) {
                Some(Some(st)) if st.id == id && st.open => st.cancelled,
                _ => None,
            };
            if let Some(reason) = owed {
                self.reset(key, reason);
            }
        }
    }

    /// Resets a stream from our side.
    pub(super) fn reset(&mut self, key: usize, reason: Reason) {
        let st = self.stream(key);
        if !st.open {
            return;
        }
        st.reset = Some((reason, false));
        let id = st.id;
        st.wake_all();
        frame::put_rst(&mut self.out, id, reason.0);
        self.remember_reset(id);
        self.maybe_close(key);
        self.wake_writer();
    }

    pub(super) fn remember_reset(&mut self, id: u32) {
        self.guard.resets.insert(id);
    }

    /// Counts a stream we refused or reset for the peer's error; too many end the connection.
    pub(super) fn count_error_reset(&mut self) -> Result<(), ConnError> {
        self.guard.local_resets += 1;
        if self.guard.local_resets > MAX_LOCAL_ERROR_RESETS {
            return Err(self.flooded(Flood::ErrorResets));
        }
        Ok(())
    }

    /// Counts a frame that does no work; a flood of them ends the connection.
    pub(super) fn count(&mut self, kind: Flood) -> Result<(), ConnError> {
        let limit = self.local.max_control_frames_per_second;
        self.guard
            .flood
            .count(kind, limit)
            .map_err(|kind| self.flooded(kind))
    }

    /// The connection error for a flood of `kind`, told to the observer.
    pub(super) fn flooded(&self, kind: Flood) -> ConnError {
        if let Some(observer) = &self.observer {
            observer.flood(kind);
        }
        ConnError(Reason::ENHANCE_YOUR_CALM, kind.why())
    }

    /// A stream error on an id: RST_STREAM; too many of them ends the connection.
    pub(super) fn stream_error(&mut self, id: u32, reason: Reason) -> Result<(), ConnError> {
        self.count_error_reset()?;
        match self.key_of(id) {
            Some(key) => {
                // What it received is not to be handed out any more.
                self.stream(key).recv.clear();
                self.reset(key, reason)
            }
            None => {
                frame::put_rst(&mut self.out, id, reason.0);
                self.remember_reset(id);
                self.wake_writer();
            }
        }
        Ok(())
    }

    /// Whether `id` names a stream that was never opened (RFC 9113 §5.1 "idle").
    pub(super) fn is_idle(&self, id: u32) -> bool {
        let peer_initiated = (id % 2 == 1) == (self.role == Role::Server);
        if peer_initiated {
            id > self.last_peer_id
        } else {
            id >= self.next_local_id
        }
    }
}
