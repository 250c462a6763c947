//! HTTP/2 at the frame level, for what a well-behaved HTTP/2 library will not do: a client that
//! never answers PINGs or pings in a flood ([`RawConn`]), a server that goes silent after its
//! handshake, and a tap ([`Tapped`]) that records every frame an `h2` client receives, so a test
//! can see the GOAWAY (its error code and last stream id) and the moment the socket closed —
//! what `h2` itself only reports as a failed stream.
//!
//! Header blocks are written as HPACK literals without indexing or Huffman coding (RFC 7541
//! §6.2.2): any decoder reads them and they leave its dynamic table alone. Header blocks a peer
//! sends are read with [`HpackDecoder`], the `httlib-hpack` crate's decoder (an HPACK
//! implementation independent of ringway's) behind a small wrapper.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
/// SETTINGS and PING.
pub const FLAG_ACK: u8 = 0x1;
/// DATA and HEADERS.
pub const FLAG_END_STREAM: u8 = 0x1;
pub const FLAG_END_HEADERS: u8 = 0x4;
/// `NO_ERROR` and `ENHANCE_YOUR_CALM` (RFC 9113 §7).
pub const NO_ERROR: u32 = 0x0;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;
/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Largest frame payload accepted from a peer: the spec's default `SETTINGS_MAX_FRAME_SIZE`,
/// which nothing here raises.
const MAX_PAYLOAD: usize = 16_384;

/// One whole frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

/// What a GOAWAY frame says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoAway {
    pub last_stream: u32,
    pub code: u32,
    pub debug: Vec<u8>,
}

impl Frame {
    pub fn new(kind: u8, flags: u8, stream: u32, payload: impl Into<Vec<u8>>) -> Frame {
        Frame {
            kind,
            flags,
            stream,
            payload: payload.into(),
        }
    }

    /// An empty SETTINGS frame (every setting at its default).
    pub fn settings() -> Frame {
        Frame::new(SETTINGS, 0, 0, Vec::new())
    }

    pub fn settings_ack() -> Frame {
        Frame::new(SETTINGS, FLAG_ACK, 0, Vec::new())
    }

    pub fn ping(data: [u8; 8]) -> Frame {
        Frame::new(PING, 0, 0, data.to_vec())
    }

    pub fn ping_ack(data: &[u8]) -> Frame {
        Frame::new(PING, FLAG_ACK, 0, data.to_vec())
    }

    pub fn goaway(last_stream: u32, code: u32, debug: &[u8]) -> Frame {
        let mut payload = Vec::with_capacity(8 + debug.len());
        payload.extend_from_slice(&(last_stream & 0x7fff_ffff).to_be_bytes());
        payload.extend_from_slice(&code.to_be_bytes());
        payload.extend_from_slice(debug);
        Frame::new(GOAWAY, 0, 0, payload)
    }

    pub fn window_update(stream: u32, increment: u32) -> Frame {
        Frame::new(WINDOW_UPDATE, 0, stream, increment.to_be_bytes().to_vec())
    }

    /// A HEADERS frame carrying the whole block.
    pub fn headers(stream: u32, headers: &[(&str, &str)], end_stream: bool) -> Frame {
        let flags = FLAG_END_HEADERS | if end_stream { FLAG_END_STREAM } else { 0 };
        Frame::new(HEADERS, flags, stream, hpack_literal(headers))
    }

    pub fn data(stream: u32, payload: &[u8], end_stream: bool) -> Frame {
        let flags = if end_stream { FLAG_END_STREAM } else { 0 };
        Frame::new(DATA, flags, stream, payload.to_vec())
    }

    pub fn is_ack(&self) -> bool {
        self.flags & FLAG_ACK != 0
    }

    pub fn ends_stream(&self) -> bool {
        matches!(self.kind, DATA | HEADERS) && self.flags & FLAG_END_STREAM != 0
    }

    /// The frame's bytes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let len = self.payload.len() as u32;
        let mut out = Vec::with_capacity(9 + self.payload.len());
        out.extend_from_slice(&len.to_be_bytes()[1..]);
        out.push(self.kind);
        out.push(self.flags);
        out.extend_from_slice(&(self.stream & 0x7fff_ffff).to_be_bytes());
        out.extend_from_slice(&self.payload);
        out
    }

    /// What this frame says if it is a GOAWAY.
    pub fn as_goaway(&self) -> Option<GoAway> {
        if self.kind != GOAWAY || self.payload.len() < 8 {
            return None;
        }
        let p = &self.payload;
        Some(GoAway {
            last_stream: u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & 0x7fff_ffff,
            code: u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
            debug: p[8..].to_vec(),
        })
    }
}

/// A header block of literals without indexing, names and values not Huffman-coded.
pub fn hpack_literal(headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in headers {
        out.push(0x00); // literal without indexing, new name
        hpack_string(&mut out, name.as_bytes());
        hpack_string(&mut out, value.as_bytes());
    }
    out
}

/// An HPACK string literal: the H bit clear and a 7-bit prefix integer length (RFC 7541 §5).
fn hpack_string(out: &mut Vec<u8>, s: &[u8]) {
    let mut len = s.len();
    if len < 127 {
        out.push(len as u8);
    } else {
        out.push(127);
        len -= 127;
        while len >= 128 {
            out.push((len % 128) as u8 | 0x80);
            len /= 128;
        }
        out.push(len as u8);
    }
    out.extend_from_slice(s);
}

/// One gRPC message with its 5-byte prefix (not compressed, big-endian length).
pub fn grpc_frame(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + message.len());
    out.push(0);
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// The whole gRPC messages in `body` (DATA payloads concatenated), and the bytes of a trailing
/// partial message, if any.
pub fn grpc_messages(body: &[u8]) -> (Vec<Vec<u8>>, usize) {
    let mut messages = Vec::new();
    let mut rest = body;
    while rest.len() >= 5 {
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        if rest.len() < 5 + len {
            break;
        }
        messages.push(rest[5..5 + len].to_vec());
        rest = &rest[5 + len..];
    }
    (messages, rest.len())
}

/// The request headers of a gRPC call to `path`, routed by `jobid`.
pub fn grpc_request_headers<'a>(
    authority: &'a str,
    path: &'a str,
    jobid: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("jobid", jobid),
    ]
}

/// One HTTP/2 connection spoken frame by frame, either side. Nothing is answered on its own:
/// a PING stays unacknowledged unless the test acknowledges it.
pub struct RawConn {
    io: TcpStream,
    /// Bytes read and not yet returned as frames.
    buf: Vec<u8>,
}

impl RawConn {
    /// Wraps an accepted or connected socket.
    pub fn new(io: TcpStream) -> RawConn {
        let _ = io.set_nodelay(true);
        RawConn {
            io,
            buf: Vec::new(),
        }
    }

    /// A TCP connection, nothing sent yet.
    pub async fn connect(addr: SocketAddr) -> io::Result<RawConn> {
        Ok(RawConn::new(TcpStream::connect(addr).await?))
    }

    /// Connects and completes a client handshake: preface and empty SETTINGS out; the server's
    /// SETTINGS in, acknowledged. Returns the frames the server sent up to and including its
    /// SETTINGS (within `limit`).
    pub async fn client_handshake(
        addr: SocketAddr,
        limit: Duration,
    ) -> io::Result<(RawConn, Vec<Frame>)> {
        RawConn::client_handshake_with(addr, &[], limit).await
    }

    /// Reads the client preface (server side); an error if the bytes are anything else.
    pub async fn read_preface(&mut self) -> io::Result<()> {
        while self.buf.len() < PREFACE.len() {
            self.fill().await?;
        }
        if &self.buf[..PREFACE.len()] != PREFACE {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "not a preface"));
        }
        self.buf.drain(..PREFACE.len());
        Ok(())
    }

    pub async fn write_frame(&mut self, frame: &Frame) -> io::Result<()> {
        self.write_raw(&frame.encode()).await
    }

    pub async fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.io.write_all(bytes).await?;
        self.io.flush().await
    }

    /// The next frame; `Ok(None)` when the peer closed the connection cleanly between frames;
    /// an error for a reset or a truncated frame.
    pub async fn read_frame(&mut self) -> io::Result<Option<Frame>> {
        loop {
            if let Some(frame) = self.parse()? {
                return Ok(Some(frame));
            }
            if self.fill().await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "closed inside a frame",
                    ))
                };
            }
        }
    }

    /// [`RawConn::read_frame`], failing with `TimedOut` at `deadline`.
    pub async fn read_frame_until(&mut self, deadline: Instant) -> io::Result<Option<Frame>> {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, self.read_frame()).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "no frame in time")),
        }
    }

    fn parse(&mut self) -> io::Result<Option<Frame>> {
        if self.buf.len() < 9 {
            return Ok(None);
        }
        let b = &self.buf;
        let len = u32::from_be_bytes([0, b[0], b[1], b[2]]) as usize;
        if len > MAX_PAYLOAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("frame of {len} bytes"),
            ));
        }
        if b.len() < 9 + len {
            return Ok(None);
        }
        let frame = Frame {
            kind: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
            payload: b[9..9 + len].to_vec(),
        };
        self.buf.drain(..9 + len);
        Ok(Some(frame))
    }

    async fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.io.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }
}

/// What a [`Tapped`] stream has seen arrive.
#[derive(Debug, Default)]
struct TapLog {
    /// Frame headers in arrival order (GOAWAY frames with their payload).
    frames: Vec<(Instant, Frame)>,
    /// When a read first returned end of file or an error.
    closed_at: Option<Instant>,
    /// When our side dropped the socket (the `h2` client ended the connection itself).
    dropped_at: Option<Instant>,
}

/// The shared view of a [`Tapped`] stream's incoming frames.
#[derive(Debug, Clone, Default)]
pub struct Tap {
    log: Arc<Mutex<TapLog>>,
}

impl Tap {
    /// Every GOAWAY received so far, with when it arrived.
    pub fn goaways(&self) -> Vec<(Instant, GoAway)> {
        let log = self.log.lock().unwrap();
        log.frames
            .iter()
            .filter_map(|(at, f)| f.as_goaway().map(|g| (*at, g)))
            .collect()
    }

    /// Frames of `kind` received so far (payloads kept only for GOAWAY).
    pub fn count(&self, kind: u8) -> usize {
        let log = self.log.lock().unwrap();
        log.frames.iter().filter(|(_, f)| f.kind == kind).count()
    }

    /// When the peer closed (or reset) the connection, if it has.
    pub fn closed_at(&self) -> Option<Instant> {
        self.log.lock().unwrap().closed_at
    }

    /// When our side dropped the socket, if it has: the `h2` client closed the connection.
    pub fn dropped_at(&self) -> Option<Instant> {
        self.log.lock().unwrap().dropped_at
    }

    /// Waits up to `limit` for the connection to end, closed by either side: `(when, by_peer)`.
    pub async fn wait_ended(&self, limit: Duration) -> Option<(Instant, bool)> {
        let deadline = Instant::now() + limit;
        loop {
            let (closed, dropped) = (self.closed_at(), self.dropped_at());
            match (closed, dropped) {
                (Some(c), Some(d)) if d < c => return Some((d, false)),
                (Some(c), _) => return Some((c, true)),
                (None, Some(d)) => return Some((d, false)),
                (None, None) => {}
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits up to `limit` for the first GOAWAY.
    pub async fn wait_goaway(&self, limit: Duration) -> Option<(Instant, GoAway)> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(first) = self.goaways().into_iter().next() {
                return Some(first);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits up to `limit` for the connection to close.
    pub async fn wait_closed(&self, limit: Duration) -> Option<Instant> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(at) = self.closed_at() {
                return Some(at);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A client socket whose incoming frames are recorded in a [`Tap`]; everything passes
/// unchanged. The peer is a server: no preface comes in.
pub struct Tapped<T> {
    io: T,
    tap: Tap,
    /// Header bytes of the frame being read.
    header: Vec<u8>,
    /// Payload bytes of the current frame still to come.
    skip: usize,
    /// A GOAWAY being read: its header and the payload so far.
    goaway: Option<(Frame, usize)>,
}

impl<T> Tapped<T> {
    pub fn new(io: T) -> (Tapped<T>, Tap) {
        let tap = Tap::default();
        let tapped = Tapped {
            io,
            tap: tap.clone(),
            header: Vec::with_capacity(9),
            skip: 0,
            goaway: None,
        };
        (tapped, tap)
    }

    fn feed(&mut self, mut bytes: &[u8]) {
        let now = Instant::now();
        let mut log = self.tap.log.lock().unwrap();
        while !bytes.is_empty() {
            if let Some((frame, want)) = &mut self.goaway {
                let n = (*want - frame.payload.len()).min(bytes.len());
                frame.payload.extend_from_slice(&bytes[..n]);
                bytes = &bytes[n..];
                if frame.payload.len() == *want {
                    let (frame, _) = self.goaway.take().expect("a GOAWAY in progress");
                    log.frames.push((now, frame));
                }
                continue;
            }
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (9 - self.header.len()).min(bytes.len());
            self.header.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.header.len() == 9 {
                let h = std::mem::take(&mut self.header);
                let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
                let frame = Frame::new(
                    h[3],
                    h[4],
                    u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
                    Vec::new(),
                );
                if frame.kind == GOAWAY && len > 0 {
                    self.goaway = Some((frame, len));
                } else {
                    log.frames.push((now, frame));
                    self.skip = len;
                }
            }
        }
    }
}

impl<T> Drop for Tapped<T> {
    fn drop(&mut self) {
        let mut log = self.tap.log.lock().unwrap();
        log.dropped_at.get_or_insert_with(Instant::now);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tapped<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.io).poll_read(cx, buf);
        match &result {
            Poll::Ready(Ok(())) => {
                let filled = buf.filled()[before..].to_vec();
                if filled.is_empty() && buf.remaining() > 0 {
                    let mut log = this.tap.log.lock().unwrap();
                    log.closed_at.get_or_insert_with(Instant::now);
                } else {
                    this.feed(&filled);
                }
            }
            Poll::Ready(Err(_)) => {
                let mut log = this.tap.log.lock().unwrap();
                log.closed_at.get_or_insert_with(Instant::now);
            }
            Poll::Pending => {}
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tapped<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// An `h2` client connection to `addr` whose incoming frames are tapped, driven by a spawned
/// task (abort its handle to drop the connection).
pub async fn tapped_h2_client(
    addr: SocketAddr,
) -> io::Result<(
    h2::client::SendRequest<bytes::Bytes>,
    Tap,
    tokio::task::JoinHandle<()>,
)> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (io, tap) = Tapped::new(tcp);
    let (send, connection) = h2::client::handshake(io)
        .await
        .map_err(|e| io::Error::other(format!("HTTP/2 handshake: {e}")))?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok((send, tap, driver))
}

// ---- Frame-level vocabulary for the wire-conformance suite (tests/wire_conformance.rs) ----

pub const PRIORITY: u8 = 0x2;
pub const PUSH_PROMISE: u8 = 0x5;
pub const CONTINUATION: u8 = 0x9;
/// DATA and HEADERS: the payload starts with a pad length and ends with that much padding.
pub const FLAG_PADDED: u8 = 0x8;
/// HEADERS: the payload carries a stream dependency and weight (5 bytes) before the block.
pub const FLAG_PRIORITY: u8 = 0x20;
/// The other error codes of RFC 9113 §7.
pub const PROTOCOL_ERROR: u32 = 0x1;
pub const INTERNAL_ERROR: u32 = 0x2;
pub const FLOW_CONTROL_ERROR: u32 = 0x3;
pub const SETTINGS_TIMEOUT: u32 = 0x4;
pub const STREAM_CLOSED: u32 = 0x5;
pub const FRAME_SIZE_ERROR: u32 = 0x6;
pub const REFUSED_STREAM: u32 = 0x7;
pub const CANCEL: u32 = 0x8;
pub const COMPRESSION_ERROR: u32 = 0x9;
/// Setting identifiers (RFC 9113 §6.5.2).
pub const SETTINGS_HEADER_TABLE_SIZE: u16 = 0x1;
pub const SETTINGS_ENABLE_PUSH: u16 = 0x2;
pub const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
pub const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
pub const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;
pub const SETTINGS_MAX_HEADER_LIST_SIZE: u16 = 0x6;

/// The name of an HTTP/2 error code, for messages.
pub fn error_name(code: u32) -> &'static str {
    match code {
        NO_ERROR => "NO_ERROR",
        PROTOCOL_ERROR => "PROTOCOL_ERROR",
        INTERNAL_ERROR => "INTERNAL_ERROR",
        FLOW_CONTROL_ERROR => "FLOW_CONTROL_ERROR",
        SETTINGS_TIMEOUT => "SETTINGS_TIMEOUT",
        STREAM_CLOSED => "STREAM_CLOSED",
        FRAME_SIZE_ERROR => "FRAME_SIZE_ERROR",
        REFUSED_STREAM => "REFUSED_STREAM",
        CANCEL => "CANCEL",
        COMPRESSION_ERROR => "COMPRESSION_ERROR",
        0xa => "CONNECT_ERROR",
        ENHANCE_YOUR_CALM => "ENHANCE_YOUR_CALM",
        0xc => "INADEQUATE_SECURITY",
        0xd => "HTTP_1_1_REQUIRED",
        _ => "(unknown)",
    }
}

/// `payload` framed for the PADDED flag: the pad length, the payload, `pad` zero bytes.
pub fn padded(payload: &[u8], pad: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + payload.len() + usize::from(pad));
    out.push(pad);
    out.extend_from_slice(payload);
    out.resize(out.len() + usize::from(pad), 0);
    out
}

impl Frame {
    /// A SETTINGS frame with these `(identifier, value)` pairs, in order.
    pub fn settings_with(values: &[(u16, u32)]) -> Frame {
        let mut payload = Vec::with_capacity(6 * values.len());
        for (id, value) in values {
            payload.extend_from_slice(&id.to_be_bytes());
            payload.extend_from_slice(&value.to_be_bytes());
        }
        Frame::new(SETTINGS, 0, 0, payload)
    }

    pub fn rst_stream(stream: u32, code: u32) -> Frame {
        Frame::new(RST_STREAM, 0, stream, code.to_be_bytes().to_vec())
    }

    /// A PRIORITY frame: `stream` depends on `depends_on` with `weight` (wire value, 0..=255).
    pub fn priority(stream: u32, depends_on: u32, exclusive: bool, weight: u8) -> Frame {
        Frame::new(
            PRIORITY,
            0,
            stream,
            priority_fields(depends_on, exclusive, weight),
        )
    }

    /// A CONTINUATION frame carrying `fragment` of a header block.
    pub fn continuation(stream: u32, fragment: &[u8], end_headers: bool) -> Frame {
        let flags = if end_headers { FLAG_END_HEADERS } else { 0 };
        Frame::new(CONTINUATION, flags, stream, fragment.to_vec())
    }

    /// The `(identifier, value)` pairs of a SETTINGS frame (empty for anything else).
    pub fn settings_values(&self) -> Vec<(u16, u32)> {
        if self.kind != SETTINGS {
            return Vec::new();
        }
        self.payload
            .chunks_exact(6)
            .map(|c| {
                (
                    u16::from_be_bytes([c[0], c[1]]),
                    u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
                )
            })
            .collect()
    }

    /// The value of setting `id` in a SETTINGS frame (the last one, if repeated).
    pub fn setting(&self, id: u16) -> Option<u32> {
        self.settings_values()
            .into_iter()
            .rev()
            .find(|(i, _)| *i == id)
            .map(|(_, v)| v)
    }

    /// The error code of a RST_STREAM frame.
    pub fn rst_code(&self) -> Option<u32> {
        (self.kind == RST_STREAM && self.payload.len() == 4).then(|| {
            let p = &self.payload;
            u32::from_be_bytes([p[0], p[1], p[2], p[3]])
        })
    }

    /// The increment of a WINDOW_UPDATE frame.
    pub fn window_increment(&self) -> Option<u32> {
        (self.kind == WINDOW_UPDATE && self.payload.len() == 4).then(|| {
            let p = &self.payload;
            u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & 0x7fff_ffff
        })
    }

    pub fn end_headers(&self) -> bool {
        matches!(self.kind, HEADERS | CONTINUATION) && self.flags & FLAG_END_HEADERS != 0
    }

    /// A DATA frame's data, its padding removed; `None` for other frames or bad padding.
    pub fn data_payload(&self) -> Option<&[u8]> {
        if self.kind != DATA {
            return None;
        }
        self.unpadded()
    }

    /// The header block fragment of a HEADERS or CONTINUATION frame, without padding and
    /// priority fields; `None` for other frames or a malformed payload.
    pub fn header_fragment(&self) -> Option<&[u8]> {
        match self.kind {
            CONTINUATION => Some(&self.payload),
            HEADERS => {
                let rest = self.unpadded()?;
                if self.flags & FLAG_PRIORITY != 0 {
                    rest.get(5..)
                } else {
                    Some(rest)
                }
            }
            _ => None,
        }
    }

    fn unpadded(&self) -> Option<&[u8]> {
        if self.flags & FLAG_PADDED == 0 {
            return Some(&self.payload);
        }
        let pad = usize::from(*self.payload.first()?);
        let end = self.payload.len().checked_sub(pad)?;
        self.payload.get(1..end)
    }
}

/// The 5 bytes of a stream dependency and weight (PRIORITY frames, HEADERS with PRIORITY).
pub fn priority_fields(depends_on: u32, exclusive: bool, weight: u8) -> Vec<u8> {
    let mut out = (depends_on & 0x7fff_ffff | if exclusive { 0x8000_0000 } else { 0 })
        .to_be_bytes()
        .to_vec();
    out.push(weight);
    out
}

impl RawConn {
    /// As [`RawConn::client_handshake`], announcing `settings` in the client's SETTINGS.
    pub async fn client_handshake_with(
        addr: SocketAddr,
        settings: &[(u16, u32)],
        limit: Duration,
    ) -> io::Result<(RawConn, Vec<Frame>)> {
        let mut conn = RawConn::connect(addr).await?;
        conn.write_raw(PREFACE).await?;
        conn.write_frame(&Frame::settings_with(settings)).await?;
        let mut seen = Vec::new();
        let deadline = Instant::now() + limit;
        loop {
            let frame = conn
                .read_frame_until(deadline)
                .await?
                .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "closed"))?;
            let server_settings = frame.kind == SETTINGS && !frame.is_ack();
            seen.push(frame);
            if server_settings {
                conn.write_frame(&Frame::settings_ack()).await?;
                return Ok((conn, seen));
            }
        }
    }
}

/// An HPACK decoder (RFC 7541) for reading what a real HTTP/2 peer sends: indexed fields,
/// literals of every kind, Huffman-coded strings, the dynamic table and its size updates. One
/// per connection and direction, fed every header block in the order they arrived.
///
/// The decoding is the `httlib-hpack` crate's, an implementation independent of ringway's;
/// this wrapper adds what a connection needs on top: fields as UTF-8 strings, a size update
/// after a field is an error (RFC 7541 §4.2), and a malformed block is an `Err`, never a panic.
#[derive(Debug)]
pub struct HpackDecoder {
    inner: httlib_hpack::Decoder<'static>,
}

impl Default for HpackDecoder {
    fn default() -> Self {
        HpackDecoder::new(4096)
    }
}

impl HpackDecoder {
    /// A decoder for a peer allowed a table of `limit` bytes (our SETTINGS_HEADER_TABLE_SIZE).
    pub fn new(limit: usize) -> HpackDecoder {
        let limit = u32::try_from(limit).expect("an HPACK table size fits in 32 bits");
        HpackDecoder {
            inner: httlib_hpack::Decoder::with_dynamic_size(limit),
        }
    }

    /// The fields of one complete header block, in order; an error names what was wrong.
    pub fn decode(&mut self, block: &[u8]) -> Result<Vec<(String, String)>, String> {
        let mut rest = block.to_vec();
        let mut fields = Vec::new();
        while !rest.is_empty() {
            // One representation per call: a field, or a table size update (which yields none).
            let mut one = Vec::with_capacity(1);
            let before = rest.len();
            let inner = &mut self.inner;
            let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                inner.decode_exact(&mut rest, &mut one)
            }));
            match decoded {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(format!("{e:?} at byte {}", block.len() - before)),
                Err(_) => return Err(format!("malformed at byte {}", block.len() - before)),
            }
            if one.is_empty() && rest.len() < before && !fields.is_empty() {
                return Err("dynamic table size update after a field".into());
            }
            if rest.len() == before {
                return Err(format!("no progress at byte {}", block.len() - before));
            }
            for (name, value, _flags) in one {
                fields.push((utf8(name)?, utf8(value)?));
            }
        }
        Ok(fields)
    }
}

fn utf8(bytes: Vec<u8>) -> Result<String, String> {
    String::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_sees_frames_across_any_split() {
        let mut wire = Frame::settings().encode();
        wire.extend(Frame::ping([1; 8]).encode());
        wire.extend(Frame::data(1, &[9; 300], true).encode());
        wire.extend(Frame::goaway(5, ENHANCE_YOUR_CALM, b"too_many_pings").encode());
        wire.extend(Frame::settings_ack().encode());
        for split in [1, 2, 5, 9, 10, 17, 64, wire.len()] {
            let (mut tapped, tap) = Tapped::new(());
            for chunk in wire.chunks(split) {
                tapped.feed(chunk);
            }
            let kinds: Vec<u8> = tap
                .log
                .lock()
                .unwrap()
                .frames
                .iter()
                .map(|(_, f)| f.kind)
                .collect();
            assert_eq!(kinds, [SETTINGS, PING, DATA, GOAWAY, SETTINGS], "{split}");
            let goaways = tap.goaways();
            assert_eq!(
                goaways[0].1,
                GoAway {
                    last_stream: 5,
                    code: ENHANCE_YOUR_CALM,
                    debug: b"too_many_pings".to_vec()
                }
            );
        }
    }

    #[test]
    fn hpack_lengths_use_the_prefix_integer() {
        let long = "x".repeat(200);
        let block = hpack_literal(&[("a", &long)]);
        // 0x00, len 1, 'a', then 127 + (200 - 127 = 73).
        assert_eq!(&block[..5], &[0x00, 1, b'a', 127, 73]);
        assert_eq!(block.len(), 5 + 200);
    }

    #[test]
    fn grpc_messages_split_a_body() {
        let mut body = grpc_frame(b"one");
        body.extend(grpc_frame(b""));
        body.extend(&grpc_frame(b"three")[..4]);
        let (messages, partial) = grpc_messages(&body);
        assert_eq!(messages, vec![b"one".to_vec(), Vec::new()]);
        assert_eq!(partial, 4);
    }
}

#[cfg(test)]
mod hpack_tests {
    use super::*;

    fn fields(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 7541 Appendix C.4: three requests with Huffman coding, sharing the dynamic table.
    #[test]
    fn decodes_the_rfc_7541_huffman_examples() {
        let mut d = HpackDecoder::default();
        let first = d
            .decode(&hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff"))
            .unwrap();
        assert_eq!(
            first,
            fields(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com")
            ])
        );
        let second = d.decode(&hex("8286 84be 5886 a8eb 1064 9cbf")).unwrap();
        assert_eq!(second[4], ("cache-control".into(), "no-cache".into()));
        assert_eq!(second[3], (":authority".into(), "www.example.com".into()));
        let third = d
            .decode(&hex(
                "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
            ))
            .unwrap();
        assert_eq!(
            third,
            fields(&[
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/index.html"),
                (":authority", "www.example.com"),
                ("custom-key", "custom-value")
            ])
        );
    }

    #[test]
    fn reads_our_own_literals_and_rejects_bad_indexes() {
        let mut d = HpackDecoder::default();
        let list = [("grpc-status", "0"), ("x", &*"y".repeat(300))];
        assert_eq!(d.decode(&hpack_literal(&list)).unwrap(), fields(&list));
        assert!(d.decode(&[0x80]).is_err());
        assert!(d.decode(&[0xff, 0x7f]).is_err());
    }

    #[test]
    fn malformed_blocks_are_errors_not_panics() {
        for block in [
            &[0x0f][..],             // a name index whose integer never ends
            &[0x00, 0x05, b'a'][..], // a name longer than the block
            &[0x82, 0x3f][..],       // an unfinished size update, after a field too
        ] {
            assert!(
                HpackDecoder::default().decode(block).is_err(),
                "{block:02x?}"
            );
        }
    }

    #[test]
    fn table_size_updates_only_first_and_within_the_limit() {
        let mut d = HpackDecoder::new(256);
        // Two updates, then a field indexed into the (now 100-byte) table and used again.
        let mut block = vec![0x20, 0x3f, 0x45]; // sizes 0, then 31 + 69 = 100
        block.extend(hex("40 01 61 01 62")); // a: b, with incremental indexing
        assert_eq!(d.decode(&block).unwrap(), fields(&[("a", "b")]));
        assert_eq!(d.decode(&[0xbe]).unwrap(), fields(&[("a", "b")]));
        // 257 > 256: refused.
        assert!(d.decode(&[0x3f, 0xe2, 0x01]).is_err());
        let mut d = HpackDecoder::default();
        assert!(
            d.decode(&[0x82, 0x20]).is_err(),
            "size update after a field"
        );
        // A never-indexed literal reads like any other field.
        assert_eq!(
            d.decode(&hex("10 01 78 01 79")).unwrap(),
            fields(&[("x", "y")])
        );
    }
}
