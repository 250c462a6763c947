//! One HTTP/2 connection's state and the handles on its streams.
//!
//! [`State`] is sans-I/O: the driver ([`super::io`]) feeds it the bytes it reads
//! ([`Conn::recv`]) and writes what it has queued ([`Conn::poll_output`]); everything else —
//! handshake, SETTINGS, flow control, stream states, PING, GOAWAY, the HPACK contexts — happens
//! here, on the shard's thread, under one `RefCell` borrow per operation.
//!
//! Streams live in a slab; a handle ([`RecvStream`], [`SendStream`], [`Respond`],
//! [`ResponseFuture`]) is the slab index plus the connection. A stream leaves the id map when
//! it is closed (both ends done, or reset) and its slot is freed when its last handle is
//! dropped; dropping every handle of a stream that is not closed resets it (CANCEL).
//!
//! Flow control is end to end: received DATA counts against the windows we advertised until
//! the application [`release`](RecvStream::release)s it (after the other side took it), and
//! WINDOW_UPDATE goes out when half a window has been released.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};

use super::frame::{self, Head};
use super::guard::{Flood, FloodGuard, Refusal, ResetIds};
use super::hpack::{Decoder, Encoder, Field};
use super::{Error, Observer, Reason};

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
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Header lists

/// A decoded header block: pseudo-header fields first, in the order received.
///
/// The vector is returned to a per-thread pool when dropped, so a warm shard decodes header
/// blocks without allocating.
pub struct Fields {
    list: Vec<Field>,
}

thread_local! {
    static SPARE_FIELDS: RefCell<Vec<Vec<Field>>> = const { RefCell::new(Vec::new()) };
}
const SPARE_FIELDS_MAX: usize = 4096;

impl Fields {
    pub fn new() -> Fields {
        let list = SPARE_FIELDS
            .with(|s| s.borrow_mut().pop())
            .unwrap_or_else(|| Vec::with_capacity(16));
        Fields { list }
    }

    pub fn push(&mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) {
        self.list.push(Field {
            name: name.into(),
            value: value.into(),
            sensitive: false,
        });
    }

    /// The first field called `name`.
    pub fn get(&self, name: &[u8]) -> Option<&Bytes> {
        self.list
            .iter()
            .find(|f| f.name.as_ref() == name)
            .map(|f| &f.value)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Field> {
        self.list.iter()
    }
}

impl Default for Fields {
    fn default() -> Fields {
        Fields::new()
    }
}

impl std::fmt::Debug for Fields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut list = f.debug_map();
        for field in &self.list {
            list.entry(
                &String::from_utf8_lossy(&field.name),
                &String::from_utf8_lossy(&field.value),
            );
        }
        list.finish()
    }
}

impl Drop for Fields {
    fn drop(&mut self) {
        let mut list = std::mem::take(&mut self.list);
        if list.capacity() == 0 {
            return;
        }
        list.clear();
        let _ = SPARE_FIELDS.try_with(|s| {
            let mut s = s.borrow_mut();
            if s.len() < SPARE_FIELDS_MAX {
                s.push(list);
            }
        });
    }
}

/// Why a received header block is malformed (RFC 9113 §8.2, §8.3): a stream error. When it is
/// well formed: its `content-length`, if it has one (§8.1.1).
fn check_fields(fields: &Fields, kind: Block) -> Result<Option<u64>, &'static str> {
    let mut regular = false;
    let mut content_length = None;
    let (mut method, mut scheme, mut path, mut status) = (false, false, false, false);
    for f in fields.iter() {
        let name = f.name.as_ref();
        if has_nul_cr_lf(&f.value) {
            return Err("field value with NUL, CR or LF");
        }
        if let Some(pseudo) = name.strip_prefix(b":") {
            if regular {
                return Err("pseudo-header after a regular field");
            }
            let seen = match (kind, pseudo) {
                (Block::Request, b"method") => &mut method,
                (Block::Request, b"scheme") => &mut scheme,
                (Block::Request, b"path") => &mut path,
                // :authority may repeat the Host; one is enough to check.
                (Block::Request, b"authority") => continue,
                (Block::Response, b"status") => &mut status,
                _ => return Err("unknown or misplaced pseudo-header"),
            };
            if std::mem::replace(seen, true) {
                return Err("duplicate pseudo-header");
            }
            continue;
        }
        regular = true;
        if name.is_empty() || !name.iter().all(|&b| NAME_BYTES[b as usize]) {
            return Err("field name empty, not lowercase, or with a forbidden byte");
        }
        // Only names of these lengths need a closer look (connection-specific fields, te,
        // content-length): one compare for most fields.
        if !matches!(name.len(), 2 | 7 | 10 | 14 | 16 | 17) {
            continue;
        }
        match name {
            b"connection" | b"keep-alive" | b"proxy-connection" | b"transfer-encoding"
            | b"upgrade" => return Err("connection-specific field"),
            b"te" if f.value.as_ref() != b"trailers" => return Err("te other than trailers"),
            b"content-length" => {
                let n = parse_length(&f.value).ok_or("content-length not a number")?;
                if content_length.is_some_and(|c| c != n) {
                    return Err("conflicting content-length values");
                }
                content_length = Some(n);
            }
            _ => {}
        }
    }
    match kind {
        Block::Request if !(method && scheme && path) => Err("missing :method, :scheme or :path"),
        Block::Request if fields.get(b":path").is_some_and(|p| p.is_empty()) => Err("empty :path"),
        Block::Response if !status => Err("missing :status"),
        _ => Ok(content_length),
    }
}

/// A `content-length` value: decimal digits only, at most 18 of them.
fn parse_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0, |n, &d| n * 10 + (d - b'0') as u64))
}

/// `Stream::content_left` when the peer announced no length.
const NO_LENGTH: u64 = u64::MAX;

/// The bytes a field name may hold (RFC 9113 §8.2.1): visible ASCII except uppercase.
static NAME_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0x21;
    while b < 0x7f {
        table[b] = !(b >= 0x41 && b <= 0x5a);
        b += 1;
    }
    table
};

/// Whether `v` holds a NUL, CR or LF: eight bytes at a time.
fn has_nul_cr_lf(v: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS != 0;
    let mut chunks = v.chunks_exact(8);
    for chunk in &mut chunks {
        let x = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        if zero_byte(x) || zero_byte(x ^ (ONES * 0x0d)) || zero_byte(x ^ (ONES * 0x0a)) {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&b| b == 0 || b == b'\r' || b == b'\n')
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Block {
    Request,
    Response,
    Trailers,
}

// ---------------------------------------------------------------------------------------------
// Streams

/// What a stream received, in order.
enum In {
    Data(Bytes, bool),
    Trailers(Fields),
}

/// A step of a stream's body.
pub enum Chunk {
    /// A DATA frame's payload; `true` when it ended the stream.
    Data(Bytes, bool),
    Trailers(Fields),
}

struct Stream {
    id: u32,
    /// Handles alive.
    refs: u32,
    /// In the id map: not closed yet.
    open: bool,
    /// Waiting in the accept queue (a server stream not yet handed out).
    queued: bool,
    /// The response head (client streams), until taken.
    head: Option<(Fields, bool)>,
    got_head: bool,
    recv: VecDeque<In>,
    recv_end: bool,
    /// Bytes received and not yet released by the application.
    unreleased: u32,
    /// Released bytes not yet sent as WINDOW_UPDATE.
    pending_update: u32,
    recv_window: i64,
    send_window: i64,
    /// Headers went out (server: the response head).
    sent_head: bool,
    send_end: bool,
    /// Reset, by whom, and why.
    reset: Option<(Reason, bool)>,
    /// The connection's failure, or a GOAWAY, ended the stream.
    error: Option<Error>,
    recv_waker: Option<Waker>,
    send_waker: Option<Waker>,
    reset_waker: Option<Waker>,
    waiting_conn_window: bool,
    /// Waiting for room in the connection's output.
    waiting_output: bool,
    /// Server: the response went out in full and no handle is left; the rest of the request
    /// is read and discarded until it ends (RFC 9113 §8.1), up to `drain_left` bytes, then
    /// the stream is reset with NO_ERROR.
    draining: bool,
    drain_left: u32,
    /// Body bytes the peer's `content-length` still announces; [`NO_LENGTH`] if none.
    content_left: u64,
    /// Client: the request was a HEAD (its response announces a length it does not carry).
    head_request: bool,
}

impl Stream {
    fn new(id: u32, recv_window: u32, send_window: u32) -> Stream {
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

    fn wake_all(&mut self) {
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
    fn failure(&self) -> Option<Error> {
        if let Some((reason, remote)) = self.reset {
            return Some(if remote {
                Error::Reset(reason)
            } else {
                Error::LocalReset(reason)
            });
        }
        self.error.clone()
    }
}

/// Stream ids are small and distinct: hashing them is a multiply.
#[derive(Default)]
struct IdHasher(u64);

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

type IdMap = HashMap<u32, usize, BuildHasherDefault<IdHasher>>;

// ---------------------------------------------------------------------------------------------
// The connection

/// A connection-level error: GOAWAY with this code, then close.
struct ConnError(Reason, &'static str);

/// How far a graceful GOAWAY got.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Goaway {
    None,
    /// GOAWAY with the maximum id and a PING went out; the ACK tells the client has seen it.
    Announced,
    /// The final GOAWAY, with this last stream id.
    Sent(u32),
}

/// The PING payload of a graceful shutdown, and of user pings.
const GOAWAY_PING: [u8; 8] = *b"rw-drain";
const USER_PING: [u8; 8] = *b"rw-alive";
/// The PING of [`Conn::trim`]: its ACK only completes the pending read.
const TRIM_PING: [u8; 8] = *b"rw-trim!";

/// Streams a peer may reset before we answered, net of calls completed, before it is treated
/// as a rapid-reset attack (CVE-2023-44487).
const MAX_EARLY_RESETS: u32 = 256;
/// Streams we may reset because the peer misbehaved on them, or refuse (above
/// MAX_CONCURRENT_STREAMS, header list too large), before the connection is ended.
const MAX_LOCAL_ERROR_RESETS: u32 = 1024;
/// Spare receive queues kept per connection.
const SPARE_QUEUES: usize = 256;
/// CONTINUATION frames allowed in one header block.
const MAX_CONTINUATIONS: u32 = 128;

/// A header block awaiting its CONTINUATION frames.
struct Partial {
    stream: u32,
    end_stream: bool,
    /// The HEADERS frame made the stream depend on itself (RFC 9113 §5.3.1).
    self_dependent: bool,
    block: BytesMut,
    frames: u32,
}

/// A connection's streams: the slab, the id map, the accept queue and the waiters.
#[derive(Default)]
struct Streams {
    slots: Vec<Option<Stream>>,
    free: Vec<usize>,
    ids: IdMap,
    /// Streams waiting for the connection window.
    conn_waiters: Vec<usize>,
    /// Receive queues of freed streams, kept for new ones (no allocation per stream).
    spare_queues: Vec<VecDeque<In>>,
    /// Waiting for the peer's stream limit to let one more stream open.
    ready_waiters: Vec<Waker>,
    accept: VecDeque<(usize, Fields, bool)>,
    /// Streams waiting for room in the output.
    output_waiters: Vec<usize>,
}

impl Streams {
    /// Whether nothing is in it but spare capacity.
    fn is_empty(&self) -> bool {
        self.ids.is_empty()
            && self.accept.is_empty()
            && self.ready_waiters.is_empty()
            && self.slots.iter().all(Option::is_none)
    }
}

pub struct State {
    role: Role,
    /// Shared by every connection of a shard with the same settings.
    local: Rc<Settings>,
    peer_initial_window: u32,
    peer_max_frame: usize,
    peer_max_streams: u32,
    decoder: Decoder,
    encoder: Encoder,
    out: BytesMut,
    writer: Option<Waker>,
    /// The streams and who waits on them; allocated with the first stream, so a connection
    /// that never had one (or was trimmed) holds none of it.
    table: Option<Box<Streams>>,
    next_local_id: u32,
    last_peer_id: u32,
    active: u32,
    send_window: i64,
    recv_window: i64,
    recv_pending: u32,
    accept_waker: Option<Waker>,
    preface_left: usize,
    got_settings: bool,
    settings_acked: bool,
    handshake_waker: Option<Waker>,
    /// Boxed: rare (a header block split over CONTINUATION frames), and 48 bytes inline.
    partial: Option<Box<Partial>>,
    goaway: Goaway,
    goaway_recv: Option<(u32, Reason)>,
    /// Close once no stream is open (a GOAWAY went out, or the owner retired the connection).
    close_when_idle: bool,
    failed: Option<Error>,
    /// The writer flushes what is queued and ends the connection.
    closing: bool,
    ping_in_flight: bool,
    pong: bool,
    pong_waker: Option<Waker>,
    observer: Option<Rc<dyn Observer>>,
    early_resets: u32,
    local_resets: u32,
    /// Streams we reset, whose late frames are ignored.
    resets: ResetIds,
    flood: FloodGuard,
    /// Bytes handed to the writer and not yet written: they count against `output_limit`.
    writing: usize,
    /// When the writer took them.
    write_started: Option<Instant>,
    /// The read loop, waiting for room in the output before it reads again.
    reader: Option<Waker>,
    /// Closed without flushing: the driver drops its reads and writes at once.
    aborted: bool,
    /// Idle and trimmed ([`Conn::trim`]) since the last stream opened.
    trimmed: bool,
    abort_waker: Option<Waker>,
}

/// A connection: cheap to clone, single-threaded.
#[derive(Clone)]
pub struct Conn(Rc<RefCell<State>>);

/// A stream the client opened (server role).
pub struct Incoming {
    pub head: Fields,
    /// The request ended with its headers.
    pub end: bool,
    pub body: RecvStream,
    pub respond: Respond,
}

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
            peer_initial_window: frame::DEFAULT_WINDOW,
            peer_max_frame: frame::DEFAULT_MAX_FRAME as usize,
            peer_max_streams: u32::MAX,
            decoder: Decoder::new(4096),
            encoder: Encoder::new(),
            out,
            writer: None,
            table: None,
            next_local_id: 1,
            last_peer_id: 0,
            active: 0,
            send_window: frame::DEFAULT_WINDOW as i64,
            recv_window,
            recv_pending: 0,
            accept_waker: None,
            preface_left: if role == Role::Server {
                frame::PREFACE.len()
            } else {
                0
            },
            got_settings: false,
            settings_acked: false,
            handshake_waker: None,
            partial: None,
            goaway: Goaway::None,
            goaway_recv: None,
            close_when_idle: false,
            failed: None,
            closing: false,
            ping_in_flight: false,
            pong: false,
            pong_waker: None,
            observer,
            early_resets: 0,
            local_resets: 0,
            resets: ResetIds::new(),
            flood: FloodGuard::new(),
            writing: 0,
            write_started: None,
            reader: None,
            aborted: false,
            trimmed: false,
            abort_waker: None,
            local,
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
            Ok(()) => !s.closing,
            Err(ConnError(reason, why)) => {
                s.connection_error(reason, why);
                false
            }
        }
    }

    /// The peer closed its side, or reading failed.
    pub fn read_ended(&self, why: &str) {
        self.0.borrow_mut().shut(why, false);
    }

    /// Writing failed: nothing more can be sent.
    pub fn write_failed(&self, why: &str) {
        self.0.borrow_mut().shut(why, true);
    }

    /// A write made no progress for `limit`: the peer is not reading. The connection closes.
    pub fn send_timed_out(&self, limit: Duration) {
        let mut s = self.0.borrow_mut();
        if let Some(observer) = &s.observer {
            observer.send_timed_out();
        }
        let why = format!("send timeout: nothing written for {} ms", limit.as_millis());
        s.shut(&why, true);
    }

    /// Ready once the connection was aborted: its socket is to be closed now, whatever
    /// reads or writes are in flight.
    pub fn poll_aborted(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = self.0.borrow_mut();
        if s.aborted {
            return Poll::Ready(());
        }
        s.abort_waker = Some(cx.waker().clone());
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
            s.writing = batch.len();
            s.write_started = Some(Instant::now());
            return Poll::Ready(Some(batch));
        }
        if s.closing {
            return Poll::Ready(None);
        }
        s.writer = Some(cx.waker().clone());
        Poll::Pending
    }

    /// The batch from [`poll_output`](Self::poll_output) was written: its room is free again
    /// for the read loop and for streams waiting to send.
    pub fn written(&self) {
        let mut s = self.0.borrow_mut();
        s.writing = 0;
        s.write_started = None;
        s.output_room_freed();
    }

    /// Ready when the queued output is below the limit, so reading may go on. A peer that
    /// makes us queue output (ACKs, resets, responses) and does not read it is not read
    /// either, until it does.
    pub fn poll_read_room(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = self.0.borrow_mut();
        if s.queued_output() <= s.local.output_limit || s.closing {
            return Poll::Ready(());
        }
        if s.reader.is_none() {
            if let Some(observer) = &s.observer {
                observer.output_paused();
            }
        }
        s.reader = Some(cx.waker().clone());
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
        self.0.borrow().write_started
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
        s.shut("connection closed", false);
    }

    // --- for the owner -----------------------------------------------------------------------

    /// Ready once the peer's SETTINGS arrived (the handshake is complete).
    pub fn poll_handshake(&self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let mut s = self.0.borrow_mut();
        if let Some(e) = &s.failed {
            return Poll::Ready(Err(e.clone()));
        }
        if s.got_settings {
            return Poll::Ready(Ok(()));
        }
        s.handshake_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// The next stream the client opened; `None` once the connection is done.
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<Option<Incoming>> {
        if let Some(incoming) = self.try_accept() {
            return Poll::Ready(Some(incoming));
        }
        let mut s = self.0.borrow_mut();
        if s.closing || s.failed.is_some() {
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
            return Err(Error::Closed("stream ids exhausted".into()));
        }
        let id = s.next_local_id;
        s.next_local_id += 2;
        let mut stream = Stream::new(id, s.local.stream_window, s.peer_initial_window);
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
        self.0.borrow().peer_max_streams as usize
    }

    /// Ready when a stream can be opened now; an error when none ever will on this connection
    /// (it failed, or is going away).
    pub fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let mut s = self.0.borrow_mut();
        if let Err(e) = s.opens_streams() {
            return Poll::Ready(Err(e));
        }
        if s.active < s.peer_max_streams {
            return Poll::Ready(Ok(()));
        }
        s.t().ready_waiters.push(cx.waker().clone());
        Poll::Pending
    }

    /// The last stream id of the peer's GOAWAY, if it sent one.
    pub fn goaway_last_stream(&self) -> Option<u32> {
        self.0.borrow().goaway_recv.map(|(last, _)| last)
    }

    /// The peer's GOAWAY error code, if it sent one.
    pub fn goaway_reason(&self) -> Option<Reason> {
        self.0.borrow().goaway_recv.map(|(_, reason)| reason)
    }

    /// Why the connection failed, once it has.
    pub fn failure(&self) -> Option<Error> {
        self.0.borrow().failed.clone()
    }

    /// Sends a PING; `false` if one of ours is still unanswered.
    pub fn send_ping(&self) -> bool {
        let mut s = self.0.borrow_mut();
        if s.ping_in_flight || s.failed.is_some() {
            return false;
        }
        s.ping_in_flight = true;
        s.pong = false;
        frame::put_ping(&mut s.out, false, USER_PING);
        s.wake_writer();
        true
    }

    /// Ready when the ACK of our PING arrived.
    pub fn poll_pong(&self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let mut s = self.0.borrow_mut();
        if s.pong {
            s.pong = false;
            return Poll::Ready(Ok(()));
        }
        if let Some(e) = &s.failed {
            return Poll::Ready(Err(e.clone()));
        }
        s.pong_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Server: GOAWAY in two steps (the maximum id and a PING, then on its ACK the last stream
    /// id really accepted), so no stream the client sent meanwhile is lost; the connection
    /// closes when its streams are done. Client: GOAWAY and close when idle.
    pub fn graceful_shutdown(&self) {
        let mut s = self.0.borrow_mut();
        if s.goaway != Goaway::None || s.failed.is_some() {
            return;
        }
        match s.role {
            Role::Server => {
                s.goaway = Goaway::Announced;
                frame::put_goaway(&mut s.out, frame::MAX_WINDOW, 0, &[]);
                frame::put_ping(&mut s.out, false, GOAWAY_PING);
            }
            Role::Client => {
                let last = s.last_peer_id;
                s.goaway = Goaway::Sent(last);
                frame::put_goaway(&mut s.out, last, 0, &[]);
                s.close_when_idle = true;
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
        s.closing = true;
        s.wake_writer();
    }

    /// No new streams; closes (without GOAWAY) once the open ones are done.
    pub fn retire(&self) {
        let mut s = self.0.borrow_mut();
        s.close_when_idle = true;
        s.close_if_idle();
    }

    /// Closes now: open streams fail.
    pub fn abort(&self, why: &str) {
        self.0.borrow_mut().shut(why, true);
    }

    pub fn role(&self) -> Role {
        self.0.borrow().role
    }

    /// Streams open now.
    pub fn open_streams(&self) -> usize {
        self.0.borrow().active as usize
    }
}

impl State {
    /// Whether new streams may open here: not if the connection failed, the peer sent GOAWAY,
    /// or we are closing it.
    fn opens_streams(&self) -> Result<(), Error> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if let Some((_, reason)) = self.goaway_recv {
            return Err(Error::GoAway {
                reason,
                remote: true,
            });
        }
        if self.close_when_idle || self.goaway != Goaway::None {
            return Err(Error::GoAway {
                reason: Reason::NO_ERROR,
                remote: false,
            });
        }
        Ok(())
    }

    /// Why stream `key` can take no more frames from us, if it cannot: reset, ended by the
    /// connection's failure or a GOAWAY, or (with `sending`) its END_STREAM already sent.
    fn unusable(&mut self, key: usize, sending: bool) -> Option<Error> {
        if let Some(e) = self.stream(key).failure().or_else(|| self.failed.clone()) {
            return Some(e);
        }
        (sending && self.stream(key).send_end).then_some(Error::LocalReset(Reason::STREAM_CLOSED))
    }

    /// Ends the connection for `why` (unless it already failed): every waiter learns it and the
    /// writer stops after what is queued — or at once, with `discard`.
    fn shut(&mut self, why: &str, discard: bool) {
        if self.failed.is_none() {
            self.fail(Error::Closed(why.into()));
        }
        self.closing = true;
        if discard {
            self.out.clear();
            self.aborted = true;
            if let Some(w) = self.abort_waker.take() {
                w.wake();
            }
        }
        self.wake_writer();
    }

    /// The stream table, allocated on first use.
    #[inline]
    fn t(&mut self) -> &mut Streams {
        match &mut self.table {
            Some(t) => t,
            table => table.insert(Box::default()),
        }
    }

    /// The slab key of open stream `id`.
    #[inline]
    fn key_of(&self, id: u32) -> Option<usize> {
        self.table.as_ref()?.ids.get(&id).copied()
    }

    /// The keys of every open stream.
    fn open_keys(&self) -> Vec<usize> {
        self.table
            .as_ref()
            .map_or_else(Vec::new, |t| t.ids.values().copied().collect())
    }

    /// A stream by slab key: it exists, so the table does.
    #[inline]
    fn stream(&mut self, key: usize) -> &mut Stream {
        self.table
            .as_mut()
            .and_then(|t| t.slots.get_mut(key))
            .and_then(Option::as_mut)
            .expect("a handle's stream is in the slab")
    }

    fn insert(&mut self, mut stream: Stream) -> usize {
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

    fn wake_writer(&mut self) {
        if let Some(w) = self.writer.take() {
            w.wake();
        }
    }

    fn queued_output(&self) -> usize {
        self.out.len() + self.writing
    }

    /// Whether DATA may be queued now: the output is below its limit.
    fn output_room(&self) -> bool {
        self.queued_output() < self.local.output_limit
    }

    /// Wakes the read loop and the streams waiting for output room, if there is room.
    fn output_room_freed(&mut self) {
        if !self.output_room() {
            return;
        }
        if let Some(w) = self.reader.take() {
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

    fn observe_write(&self, kind: u8, stream: u32) {
        if let Some(observer) = &self.observer {
            observer.written(&Head {
                len: 0,
                kind,
                flags: 0,
                stream,
            });
        }
    }

    fn write_head(&mut self, id: u32, head: &Fields, end: bool) {
        let start = self.out.len();
        self.out.extend_from_slice(&[0; frame::HEADER_LEN]);
        self.encoder.encode_marked(
            head.iter()
                .map(|f| (f.name.as_ref(), f.value.as_ref(), f.sensitive)),
            &mut self.out,
        );
        frame::frame_header_block(&mut self.out, start, id, end, self.peer_max_frame);
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
            self.pong_waker.take(),
            self.handshake_waker.take(),
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
        if let Some(w) = self.reader.take() {
            w.wake();
        }
        self.wake_ready();
    }

    fn wake_ready(&mut self) {
        if let Some(t) = self.table.as_mut() {
            for w in t.ready_waiters.drain(..) {
                w.wake();
            }
        }
    }

    fn connection_error(&mut self, reason: Reason, why: &'static str) {
        let last = self.last_peer_id;
        frame::put_goaway(&mut self.out, last, reason.0, why.as_bytes());
        self.fail(Error::Closed(format!("{reason}: {why}").into()));
        self.closing = true;
        self.wake_writer();
    }

    /// Frees a stream's slot, giving its unreleased bytes back to the connection window.
    fn release_slot(&mut self, key: usize) {
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

    fn release_connection(&mut self, n: u32) {
        self.recv_pending += n;
        if self.recv_pending >= self.local.connection_window.max(frame::DEFAULT_WINDOW) / 2 {
            let n = std::mem::take(&mut self.recv_pending);
            self.recv_window += n as i64;
            frame::put_window_update(&mut self.out, 0, n);
            self.wake_writer();
        }
    }

    /// Closes the stream if both ends are done or it was reset.
    fn maybe_close(&mut self, key: usize) {
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

    fn close_if_idle(&mut self) {
        if self.active > 0 || self.closing {
            return;
        }
        let done = self.close_when_idle
            || matches!(self.goaway, Goaway::Sent(_))
            || self.goaway_recv.is_some();
        if done {
            self.closing = true;
            if self.failed.is_none() {
                self.failed = Some(Error::GoAway {
                    reason: Reason::NO_ERROR,
                    remote: self.goaway_recv.is_some(),
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
    fn start_draining(&mut self, key: usize) {
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

    /// Resets a stream from our side.
    fn reset(&mut self, key: usize, reason: Reason) {
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

    fn remember_reset(&mut self, id: u32) {
        self.resets.insert(id);
    }

    /// Counts a stream we refused or reset for the peer's error; too many end the connection.
    fn count_error_reset(&mut self) -> Result<(), ConnError> {
        self.local_resets += 1;
        if self.local_resets > MAX_LOCAL_ERROR_RESETS {
            return Err(self.flooded(Flood::ErrorResets));
        }
        Ok(())
    }

    /// A stream error on an id: RST_STREAM; too many of them ends the connection.
    fn stream_error(&mut self, id: u32, reason: Reason) -> Result<(), ConnError> {
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
    fn is_idle(&self, id: u32) -> bool {
        let peer_initiated = (id % 2 == 1) == (self.role == Role::Server);
        if peer_initiated {
            id > self.last_peer_id
        } else {
            id >= self.next_local_id
        }
    }

    // --- reading -----------------------------------------------------------------------------

    fn recv_frames(&mut self, buf: &mut BytesMut) -> Result<(), ConnError> {
        if self.preface_left > 0 {
            let at = frame::PREFACE.len() - self.preface_left;
            let n = self.preface_left.min(buf.len());
            if buf[..n] != frame::PREFACE[at..at + n] {
                return Err(ConnError(Reason::PROTOCOL_ERROR, "not an HTTP/2 preface"));
            }
            buf.advance(n);
            self.preface_left -= n;
            if self.preface_left > 0 {
                return Ok(());
            }
        }
        while buf.len() >= frame::HEADER_LEN && !self.closing {
            let head = Head::parse(buf);
            if head.len > frame::DEFAULT_MAX_FRAME {
                return Err(ConnError(Reason::FRAME_SIZE_ERROR, "frame too large"));
            }
            let total = frame::HEADER_LEN + head.len as usize;
            if buf.len() < total {
                buf.reserve(total - buf.len());
                break;
            }
            if let Some(observer) = &self.observer {
                observer.read(&head);
            }
            if !self.got_settings && (head.kind != frame::SETTINGS || head.has(frame::FLAG_ACK)) {
                return Err(ConnError(
                    Reason::PROTOCOL_ERROR,
                    "first frame not SETTINGS",
                ));
            }
            if let Some(p) = &self.partial {
                if head.kind != frame::CONTINUATION || head.stream != p.stream {
                    return Err(ConnError(
                        Reason::PROTOCOL_ERROR,
                        "expected CONTINUATION of a header block",
                    ));
                }
            }
            match head.kind {
                frame::DATA | frame::HEADERS | frame::CONTINUATION => {
                    let mut payload = buf.split_to(total).freeze();
                    payload.advance(frame::HEADER_LEN);
                    match head.kind {
                        frame::DATA => self.on_data(head, payload)?,
                        frame::HEADERS => self.on_headers(head, payload)?,
                        _ => self.on_continuation(head, payload)?,
                    }
                }
                _ => {
                    let payload = &buf[frame::HEADER_LEN..total];
                    let result = self.on_control(head, payload);
                    buf.advance(total);
                    result?;
                }
            }
        }
        Ok(())
    }

    /// Counts a frame that does no work; a flood of them ends the connection.
    fn count(&mut self, kind: Flood) -> Result<(), ConnError> {
        let limit = self.local.max_control_frames_per_second;
        self.flood
            .count(kind, limit)
            .map_err(|kind| self.flooded(kind))
    }

    /// The connection error for a flood of `kind`, told to the observer.
    fn flooded(&self, kind: Flood) -> ConnError {
        if let Some(observer) = &self.observer {
            observer.flood(kind);
        }
        ConnError(Reason::ENHANCE_YOUR_CALM, kind.why())
    }

    fn on_control(&mut self, head: Head, p: &[u8]) -> Result<(), ConnError> {
        match head.kind {
            frame::PRIORITY => {
                if head.stream == 0 {
                    return Err(ConnError(Reason::PROTOCOL_ERROR, "PRIORITY on stream 0"));
                }
                if p.len() != 5 {
                    return self.stream_error(head.stream, Reason::FRAME_SIZE_ERROR);
                }
                self.count(Flood::Priority)?;
                let depends_on = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & frame::MAX_WINDOW;
                if depends_on == head.stream {
                    // RFC 9113 §5.3.1: a stream cannot depend on itself.
                    return self.stream_error(head.stream, Reason::PROTOCOL_ERROR);
                }
                Ok(())
            }
            frame::RST_STREAM => {
                if head.stream == 0 {
                    return Err(ConnError(Reason::PROTOCOL_ERROR, "RST_STREAM on stream 0"));
                }
                if p.len() != 4 {
                    return Err(ConnError(Reason::FRAME_SIZE_ERROR, "RST_STREAM length"));
                }
                self.count(Flood::RstStream)?;
                let code = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
                self.on_rst(head.stream, Reason(code))
            }
            frame::SETTINGS => {
                if head.stream != 0 {
                    return Err(ConnError(Reason::PROTOCOL_ERROR, "SETTINGS on a stream"));
                }
                if head.has(frame::FLAG_ACK) {
                    if !p.is_empty() {
                        return Err(ConnError(
                            Reason::FRAME_SIZE_ERROR,
                            "SETTINGS ACK with payload",
                        ));
                    }
                    self.settings_acked = true;
                    return Ok(());
                }
                if !p.len().is_multiple_of(6) {
                    return Err(ConnError(Reason::FRAME_SIZE_ERROR, "SETTINGS length"));
                }
                self.count(Flood::Settings)?;
                self.on_settings(p)
            }
            frame::PUSH_PROMISE => Err(ConnError(Reason::PROTOCOL_ERROR, "PUSH_PROMISE")),
            frame::PING => {
                if head.stream != 0 {
                    return Err(ConnError(Reason::PROTOCOL_ERROR, "PING on a stream"));
                }
                if p.len() != 8 {
                    return Err(ConnError(Reason::FRAME_SIZE_ERROR, "PING length"));
                }
                let payload: [u8; 8] = p.try_into().unwrap_or_default();
                if head.has(frame::FLAG_ACK) {
                    self.on_pong(payload);
                } else {
                    self.count(Flood::Ping)?;
                    frame::put_ping(&mut self.out, true, payload);
                    self.wake_writer();
                }
                Ok(())
            }
            frame::GOAWAY => {
                if head.stream != 0 {
                    return Err(ConnError(Reason::PROTOCOL_ERROR, "GOAWAY on a stream"));
                }
                if p.len() < 8 {
                    return Err(ConnError(Reason::FRAME_SIZE_ERROR, "GOAWAY length"));
                }
                let last = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & frame::MAX_WINDOW;
                let code = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
                self.on_goaway(last, Reason(code));
                Ok(())
            }
            frame::WINDOW_UPDATE => {
                if p.len() != 4 {
                    return Err(ConnError(Reason::FRAME_SIZE_ERROR, "WINDOW_UPDATE length"));
                }
                let inc = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & frame::MAX_WINDOW;
                self.on_window_update(head.stream, inc)
            }
            // Unknown frame types are ignored (RFC 9113 §4.1).
            _ => Ok(()),
        }
    }

    fn on_settings(&mut self, p: &[u8]) -> Result<(), ConnError> {
        for param in p.chunks_exact(6) {
            let id = u16::from_be_bytes([param[0], param[1]]);
            let value = u32::from_be_bytes([param[2], param[3], param[4], param[5]]);
            match id {
                frame::SETTINGS_ENABLE_PUSH if value > 1 => {
                    return Err(ConnError(Reason::PROTOCOL_ERROR, "ENABLE_PUSH not 0 or 1"))
                }
                frame::SETTINGS_MAX_CONCURRENT_STREAMS => {
                    self.peer_max_streams = value;
                    self.wake_ready();
                }
                frame::SETTINGS_INITIAL_WINDOW_SIZE => {
                    if value > frame::MAX_WINDOW {
                        return Err(ConnError(
                            Reason::FLOW_CONTROL_ERROR,
                            "INITIAL_WINDOW_SIZE above 2^31-1",
                        ));
                    }
                    let delta = value as i64 - self.peer_initial_window as i64;
                    self.peer_initial_window = value;
                    if delta != 0 {
                        for key in self.open_keys() {
                            let st = self.stream(key);
                            st.send_window += delta;
                            if st.send_window > frame::MAX_WINDOW as i64 {
                                return Err(ConnError(
                                    Reason::FLOW_CONTROL_ERROR,
                                    "window above 2^31-1",
                                ));
                            }
                            if delta > 0 {
                                if let Some(w) = st.send_waker.take() {
                                    w.wake();
                                }
                            }
                        }
                    }
                }
                frame::SETTINGS_MAX_FRAME_SIZE => {
                    if !(frame::DEFAULT_MAX_FRAME..=0xff_ffff).contains(&value) {
                        return Err(ConnError(
                            Reason::PROTOCOL_ERROR,
                            "MAX_FRAME_SIZE out of range",
                        ));
                    }
                    self.peer_max_frame = value as usize;
                }
                _ => {}
            }
        }
        frame::put_settings_ack(&mut self.out);
        self.wake_writer();
        if !self.got_settings {
            self.got_settings = true;
            if let Some(w) = self.handshake_waker.take() {
                w.wake();
            }
        }
        Ok(())
    }

    fn on_pong(&mut self, payload: [u8; 8]) {
        if payload == GOAWAY_PING && self.goaway == Goaway::Announced {
            let last = self.last_peer_id;
            self.goaway = Goaway::Sent(last);
            frame::put_goaway(&mut self.out, last, 0, &[]);
            self.wake_writer();
            self.close_if_idle();
        } else if payload == USER_PING && self.ping_in_flight {
            self.ping_in_flight = false;
            self.pong = true;
            if let Some(w) = self.pong_waker.take() {
                w.wake();
            }
        }
    }

    fn on_goaway(&mut self, last: u32, reason: Reason) {
        if let Some(observer) = &self.observer {
            observer.read_goaway(last, reason.0);
        }
        let last = self.goaway_recv.map_or(last, |(l, _)| l.min(last));
        self.goaway_recv = Some((last, reason));
        // Our streams above `last` were never processed: they fail, retryable elsewhere.
        let mine = |id: u32, role: Role| (id % 2 == 1) == (role == Role::Client);
        let role = self.role;
        let doomed: Vec<usize> = self
            .table
            .iter()
            .flat_map(|t| t.ids.iter())
            .filter(|(&id, _)| mine(id, role) && id > last)
            .map(|(_, &key)| key)
            .collect();
        for key in doomed {
            let st = self.stream(key);
            st.error = Some(Error::GoAway {
                reason,
                remote: true,
            });
            st.wake_all();
            self.maybe_close(key);
        }
        self.close_if_idle();
    }

    fn on_window_update(&mut self, id: u32, inc: u32) -> Result<(), ConnError> {
        if id == 0 {
            if inc == 0 {
                return Err(ConnError(Reason::PROTOCOL_ERROR, "WINDOW_UPDATE of 0"));
            }
            self.send_window += inc as i64;
            if self.send_window > frame::MAX_WINDOW as i64 {
                return Err(ConnError(
                    Reason::FLOW_CONTROL_ERROR,
                    "connection window above 2^31-1",
                ));
            }
            let t = self.t();
            for key in std::mem::take(&mut t.conn_waiters) {
                if let Some(st) = t.slots[key].as_mut() {
                    st.waiting_conn_window = false;
                    if let Some(w) = st.send_waker.take() {
                        w.wake();
                    }
                }
            }
            return Ok(());
        }
        let Some(key) = self.key_of(id) else {
            if self.is_idle(id) {
                return Err(ConnError(
                    Reason::PROTOCOL_ERROR,
                    "WINDOW_UPDATE on an idle stream",
                ));
            }
            return Ok(());
        };
        if inc == 0 {
            return self.stream_error(id, Reason::PROTOCOL_ERROR);
        }
        let st = self.stream(key);
        st.send_window += inc as i64;
        if st.send_window > frame::MAX_WINDOW as i64 {
            return self.stream_error(id, Reason::FLOW_CONTROL_ERROR);
        }
        if let Some(w) = st.send_waker.take() {
            w.wake();
        }
        Ok(())
    }

    fn on_rst(&mut self, id: u32, reason: Reason) -> Result<(), ConnError> {
        let Some(key) = self.key_of(id) else {
            if self.is_idle(id) {
                return Err(ConnError(
                    Reason::PROTOCOL_ERROR,
                    "RST_STREAM on an idle stream",
                ));
            }
            return Ok(());
        };
        let role = self.role;
        let st = self.stream(key);
        st.reset = Some((reason, true));
        let early = role == Role::Server && !st.sent_head;
        st.wake_all();
        self.maybe_close(key);
        if early {
            self.early_resets += 1;
            if self.early_resets > MAX_EARLY_RESETS {
                return Err(self.flooded(Flood::RapidReset));
            }
        }
        Ok(())
    }

    fn on_data(&mut self, head: Head, mut payload: Bytes) -> Result<(), ConnError> {
        if head.stream == 0 {
            return Err(ConnError(Reason::PROTOCOL_ERROR, "DATA on stream 0"));
        }
        let len = head.len;
        // SETTINGS never change the connection window: what the peer may send is known
        // exactly, whether it has acknowledged our SETTINGS or not.
        self.recv_window -= len as i64;
        if self.recv_window < 0 {
            self.flow_control_broken();
            return Err(ConnError(
                Reason::FLOW_CONTROL_ERROR,
                "connection window exceeded",
            ));
        }
        let padding = if head.has(frame::FLAG_PADDED) {
            let Some(&pad) = payload.first() else {
                return Err(ConnError(Reason::FRAME_SIZE_ERROR, "DATA padding"));
            };
            if pad as usize >= payload.len() {
                return Err(ConnError(Reason::PROTOCOL_ERROR, "DATA padding too long"));
            }
            payload.truncate(payload.len() - pad as usize);
            payload.advance(1);
            len - payload.len() as u32
        } else {
            0
        };
        let end = head.has(frame::FLAG_END_STREAM);
        if payload.is_empty() && !end {
            self.count(Flood::EmptyData)?;
        }
        let Some(key) = self.key_of(head.stream) else {
            if self.is_idle(head.stream) {
                return Err(ConnError(Reason::PROTOCOL_ERROR, "DATA on an idle stream"));
            }
            // A closed stream: give the bytes back at once.
            self.release_connection(len);
            return self.on_closed_stream(head.stream, false);
        };
        // Until the peer acknowledges our SETTINGS it may still count on the default stream
        // window (RFC 9113 §6.9.2), if ours is smaller.
        let slack = if self.settings_acked {
            0
        } else {
            frame::DEFAULT_WINDOW.saturating_sub(self.local.stream_window) as i64
        };
        let n = payload.len() as u32;
        let st = self.stream(key);
        let refused = if st.recv_end {
            Some(Reason::STREAM_CLOSED)
        } else if !st.got_head {
            Some(Reason::PROTOCOL_ERROR)
        } else {
            st.recv_window -= len as i64;
            if st.recv_window < -slack {
                Some(Reason::FLOW_CONTROL_ERROR)
            } else if st.content_left != NO_LENGTH
                && (n as u64 > st.content_left || (end && n as u64 != st.content_left))
            {
                // The body does not match its content-length: malformed (§8.1.1).
                Some(Reason::PROTOCOL_ERROR)
            } else {
                None
            }
        };
        if let Some(reason) = refused {
            self.release_connection(len);
            if reason == Reason::FLOW_CONTROL_ERROR {
                self.flow_control_broken();
            }
            return self.stream_error(head.stream, reason);
        }
        let on_receipt = self.local.connection_window_on_receipt;
        let st = self.stream(key);
        if st.content_left != NO_LENGTH {
            st.content_left -= n as u64;
        }
        if end {
            st.recv_end = true;
        }
        if st.draining {
            // The response is complete and nobody reads the request any more: discard it,
            // and give its window back, up to a window's worth; past that, stop the client.
            st.pending_update += len;
            let overdrawn = st.drain_left < len;
            st.drain_left = st.drain_left.saturating_sub(len);
            self.release_connection(len);
            if overdrawn {
                self.reset(key, Reason::NO_ERROR);
            } else if end {
                self.maybe_close(key);
            } else {
                self.send_stream_update(key);
            }
            return Ok(());
        }
        st.unreleased += n;
        if n > 0 || end {
            st.recv.push_back(In::Data(payload, end));
        }
        if let Some(w) = st.recv_waker.take() {
            w.wake();
        }
        if padding > 0 {
            // Padding is flow-controlled but never handed out: release it now.
            st.pending_update += padding;
        }
        if on_receipt {
            self.release_connection(len);
        } else if padding > 0 {
            self.release_connection(padding);
        }
        if end {
            self.maybe_close(key);
        }
        Ok(())
    }

    /// The peer sent more than a window allowed.
    fn flow_control_broken(&self) {
        if let Some(observer) = &self.observer {
            observer.flow_control_error();
        }
    }

    /// Sends the stream's released bytes as WINDOW_UPDATE once they reach half a window.
    #[inline]
    fn send_stream_update(&mut self, key: usize) {
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

    fn on_headers(&mut self, head: Head, mut payload: Bytes) -> Result<(), ConnError> {
        if head.stream == 0 {
            return Err(ConnError(Reason::PROTOCOL_ERROR, "HEADERS on stream 0"));
        }
        if head.has(frame::FLAG_PADDED) {
            let Some(&pad) = payload.first() else {
                return Err(ConnError(Reason::FRAME_SIZE_ERROR, "HEADERS padding"));
            };
            if pad as usize >= payload.len() {
                return Err(ConnError(
                    Reason::PROTOCOL_ERROR,
                    "HEADERS padding too long",
                ));
            }
            payload.truncate(payload.len() - pad as usize);
            payload.advance(1);
        }
        let mut self_dependent = false;
        if head.has(frame::FLAG_PRIORITY) {
            if payload.len() < 5 {
                return Err(ConnError(Reason::FRAME_SIZE_ERROR, "HEADERS priority"));
            }
            let depends_on = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
            self_dependent = depends_on & frame::MAX_WINDOW == head.stream;
            payload.advance(5);
        }
        let end_stream = head.has(frame::FLAG_END_STREAM);
        if head.has(frame::FLAG_END_HEADERS) {
            return self.on_header_block(head.stream, payload, end_stream, self_dependent);
        }
        self.partial = Some(Box::new(Partial {
            stream: head.stream,
            end_stream,
            self_dependent,
            block: BytesMut::from(&payload[..]),
            frames: 0,
        }));
        Ok(())
    }

    fn on_continuation(&mut self, head: Head, payload: Bytes) -> Result<(), ConnError> {
        let limit = self.local.max_header_list as usize * 2 + (64 << 10);
        let Some(p) = self.partial.as_mut() else {
            return Err(ConnError(
                Reason::PROTOCOL_ERROR,
                "CONTINUATION without HEADERS",
            ));
        };
        p.frames += 1;
        p.block.extend_from_slice(&payload);
        let too_large = p.frames > MAX_CONTINUATIONS || p.block.len() > limit;
        if too_large {
            return Err(self.flooded(Flood::HeaderBlock));
        }
        if payload.is_empty() {
            self.count(Flood::EmptyContinuation)?;
        }
        if !head.has(frame::FLAG_END_HEADERS) {
            return Ok(());
        }
        let p = self.partial.take().expect("checked above");
        self.on_header_block(p.stream, p.block.freeze(), p.end_stream, p.self_dependent)
    }

    fn on_header_block(
        &mut self,
        id: u32,
        block: Bytes,
        end: bool,
        self_dependent: bool,
    ) -> Result<(), ConnError> {
        let mut fields = Fields::new();
        let mut size = 0usize;
        // Decoded whatever becomes of the stream: the HPACK context must stay in step.
        self.decoder
            .decode(&block, |f| {
                size += f.name.len() + f.value.len() + 32;
                fields.list.push(f);
            })
            .map_err(|_| ConnError(Reason::COMPRESSION_ERROR, "bad HPACK block"))?;
        if let Some(key) = self.key_of(id) {
            if self_dependent {
                return self.stream_error(id, Reason::PROTOCOL_ERROR);
            }
            return self.on_stream_headers(key, id, fields, end);
        }
        match self.role {
            Role::Client => {
                if id.is_multiple_of(2) || self.is_idle(id) {
                    return Err(ConnError(
                        Reason::PROTOCOL_ERROR,
                        "HEADERS on an idle stream",
                    ));
                }
                self.on_closed_stream(id, true)
            }
            Role::Server => {
                if id.is_multiple_of(2) {
                    return Err(ConnError(
                        Reason::PROTOCOL_ERROR,
                        "even stream id from a client",
                    ));
                }
                if id <= self.last_peer_id {
                    return self.on_closed_stream(id, true);
                }
                if id > self.last_peer_id + 2 {
                    self.resets.skip(self.last_peer_id + 2, id - 2);
                }
                self.last_peer_id = id;
                if matches!(self.goaway, Goaway::Sent(last) if id > last) || self.closing {
                    return Ok(());
                }
                if self_dependent {
                    // RFC 9113 §5.3.1: a stream cannot depend on itself.
                    return self.stream_error(id, Reason::PROTOCOL_ERROR);
                }
                if size > self.local.max_header_list as usize {
                    if let Some(observer) = &self.observer {
                        observer.refused(Refusal::HeaderList);
                    }
                    let mut answer = Fields::new();
                    answer.push(Bytes::from_static(b":status"), Bytes::from_static(b"431"));
                    self.write_head(id, &answer, true);
                    self.remember_reset(id);
                    // Counted with the streams reset for errors: a client that sends nothing
                    // else (an HPACK bomb, 64 MB decoded per block) is ended in time.
                    return self.count_error_reset();
                }
                let content_length = match check_fields(&fields, Block::Request) {
                    // A request that ends with its headers has an empty body (§8.1.1).
                    Ok(Some(n)) if end && n > 0 => {
                        return self.stream_error(id, Reason::PROTOCOL_ERROR)
                    }
                    Ok(n) => n,
                    Err(_) => return self.stream_error(id, Reason::PROTOCOL_ERROR),
                };
                if self.active >= self.local.max_concurrent_streams {
                    // Counted with the error resets: a client that ignores our
                    // SETTINGS_MAX_CONCURRENT_STREAMS and keeps opening streams (nothing makes
                    // a well-behaved one exceed it here: ours never shrinks) is ended in time.
                    if let Some(observer) = &self.observer {
                        observer.refused(Refusal::ConcurrentStreams);
                    }
                    return self.stream_error(id, Reason::REFUSED_STREAM);
                }
                let mut st = Stream::new(id, self.local.stream_window, self.peer_initial_window);
                st.got_head = true;
                st.recv_end = end;
                st.queued = true;
                st.content_left = content_length.unwrap_or(NO_LENGTH);
                let key = self.insert(st);
                let t = self.t();
                t.ids.insert(id, key);
                t.accept.push_back((key, fields, end));
                self.active += 1;
                if let Some(w) = self.accept_waker.take() {
                    w.wake();
                }
                Ok(())
            }
        }
    }

    /// DATA or HEADERS on a stream that is closed: ignored if we reset the stream (the peer
    /// sent it before it knew); a connection error PROTOCOL_ERROR if the peer never opened it
    /// but skipped its id (§5.1.1: ids only grow); otherwise STREAM_CLOSED (§5.1) — for
    /// HEADERS a connection error (the peer's HPACK state and ours may have parted), for DATA
    /// a stream error.
    fn on_closed_stream(&mut self, id: u32, headers: bool) -> Result<(), ConnError> {
        if self.resets.ignores(id) {
            return Ok(());
        }
        if self.resets.skipped(id) {
            return Err(ConnError(
                Reason::PROTOCOL_ERROR,
                "frame on a stream id the peer skipped",
            ));
        }
        if headers {
            return Err(ConnError(
                Reason::STREAM_CLOSED,
                "HEADERS on a closed stream",
            ));
        }
        self.stream_error(id, Reason::STREAM_CLOSED)
    }

    /// A header block on an open stream: a response head (client), or trailers.
    fn on_stream_headers(
        &mut self,
        key: usize,
        id: u32,
        fields: Fields,
        end: bool,
    ) -> Result<(), ConnError> {
        let role = self.role;
        let st = self.stream(key);
        if st.recv_end {
            return self.stream_error(id, Reason::STREAM_CLOSED);
        }
        if !st.got_head && role == Role::Client {
            let content_length = match check_fields(&fields, Block::Response) {
                Ok(n) => n,
                Err(_) => return self.stream_error(id, Reason::PROTOCOL_ERROR),
            };
            let status = fields.get(b":status").map(|s| s.as_ref()).unwrap_or(b"");
            if status.first() == Some(&b'1') {
                // Informational: the real response head is still to come.
                if end {
                    return self.stream_error(id, Reason::PROTOCOL_ERROR);
                }
                return Ok(());
            }
            // 204 and 304 responses, and responses to HEAD, announce a length they do not
            // carry; ringway sends no HEAD requests of its own.
            let bodiless = status == b"204" || status == b"304" || st.head_request;
            if !bodiless {
                if let Some(n) = content_length {
                    if end && n > 0 {
                        return self.stream_error(id, Reason::PROTOCOL_ERROR);
                    }
                    st.content_left = n;
                }
            }
            st.got_head = true;
            st.head = Some((fields, end));
        } else {
            if !end || check_fields(&fields, Block::Trailers).is_err() {
                return self.stream_error(id, Reason::PROTOCOL_ERROR);
            }
            if st.content_left != NO_LENGTH && st.content_left != 0 {
                // The body ended short of its content-length (§8.1.1).
                return self.stream_error(id, Reason::PROTOCOL_ERROR);
            }
            if !st.draining {
                st.recv.push_back(In::Trailers(fields));
            }
        }
        if end {
            st.recv_end = true;
        }
        if let Some(w) = st.recv_waker.take() {
            w.wake();
        }
        if end {
            self.maybe_close(key);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Handles

/// One reference to a stream; the stream is reset when the last one goes without it closed.
struct Handle {
    conn: Rc<RefCell<State>>,
    key: usize,
}

impl Handle {
    /// Wraps a reference already counted in the stream's `refs`.
    fn adopt(conn: &Rc<RefCell<State>>, key: usize) -> Handle {
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
            match (st.reset, &st.error) {
                (Some((reason, true)), _) => Poll::Ready(reason),
                (Some((reason, false)), _) => Poll::Ready(reason),
                (None, Some(e)) => Poll::Ready(e.reason().unwrap_or(Reason::CANCEL)),
                (None, None) => {
                    st.reset_waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
    }

    fn send_reset(&self, reason: Reason) {
        self.with(|s, key| s.reset(key, reason));
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
            // Abandoned before it closed: tell the peer. Closing it frees the slot, as no
            // handle is left.
            s.reset(key, Reason::CANCEL);
            return;
        }
        if !st.queued {
            s.release_slot(key);
        }
    }
}

/// The receiving half of a stream: DATA and trailers.
pub struct RecvStream(Handle);

impl RecvStream {
    /// The next chunk of the body; `Ok(None)` once it ended.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Chunk>, Error>> {
        self.0.with(|s, key| {
            let st = s.stream(key);
            match st.recv.pop_front() {
                Some(In::Data(data, end)) => Poll::Ready(Ok(Some(Chunk::Data(data, end)))),
                Some(In::Trailers(fields)) => Poll::Ready(Ok(Some(Chunk::Trailers(fields)))),
                None if st.recv_end => Poll::Ready(Ok(None)),
                None => match st.failure() {
                    Some(e) => Poll::Ready(Err(e)),
                    None => {
                        st.recv_waker = Some(cx.waker().clone());
                        Poll::Pending
                    }
                },
            }
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

/// The sending half of a stream: DATA, trailers, reset.
pub struct SendStream(Handle);

impl SendStream {
    /// Ready with how many bytes may be sent now (> 0), or why none ever will.
    pub fn poll_capacity(&mut self, cx: &mut Context<'_>) -> Poll<Result<usize, Error>> {
        self.0.with(|s, key| {
            if let Some(e) = s.unusable(key, true) {
                return Poll::Ready(Err(e));
            }
            let conn_window = s.send_window;
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
            let max_frame = s.peer_max_frame;
            let conn_window = s.send_window;
            let st = s.stream(key);
            let n = data.len() as i64;
            if n > st.send_window.min(conn_window) {
                return Err(Error::LocalReset(Reason::FLOW_CONTROL_ERROR));
            }
            st.send_window -= n;
            st.send_end = end;
            let id = st.id;
            s.send_window -= n;
            frame::put_data(&mut s.out, id, data, end, max_frame);
            s.observe_write(frame::DATA, id);
            s.wake_writer();
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
pub struct Respond(Handle);

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
                s.early_resets = s.early_resets.saturating_sub(1);
                s.maybe_close(key);
            }
            Ok(())
        })?;
        Ok(SendStream(Handle::adopt(&self.0.conn, self.0.key)))
    }

    pub fn send_reset(&mut self, reason: Reason) {
        self.0.send_reset(reason)
    }

    pub fn poll_reset(&mut self, cx: &mut Context<'_>) -> Poll<Reason> {
        self.0.poll_reset(cx)
    }

    /// Whether nothing can be sent on the stream any more: the client reset it, or its
    /// connection is gone.
    pub fn is_closed(&self) -> bool {
        self.0.with(|s, key| s.unusable(key, false).is_some())
    }

    pub fn stream_id(&self) -> u32 {
        self.0.id()
    }
}

/// The response head of a stream we opened (client role).
pub struct ResponseFuture(Handle);

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
