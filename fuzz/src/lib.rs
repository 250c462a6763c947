//! Helpers shared by the fuzz targets (`fuzz_targets/`) and the seed corpus generator
//! (`src/bin/make_corpus.rs`).
//!
//! - [`Plan`]: the small header the connection and RESP targets read first, which chooses how
//!   the rest of the input is cut into reads and what the application does meanwhile.
//! - [`Peer`]: feeds a [`Conn`] the peer's bytes as the driver does, and checks what the
//!   connection reads and writes from the peer's side.
//! - [`build`]: frame and seed builders for the corpus generator.

use std::collections::{HashMap, HashSet};
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use ringway::wire::frame::{self, Head};
use ringway::wire::hpack::Decoder;
use ringway::wire::{Conn, Fields, Role};

/// A context whose waker does nothing: the targets poll handles by hand.
pub fn cx() -> Context<'static> {
    Context::from_waker(Waker::noop())
}

/// A fields list from string pairs.
pub fn fields(list: &[(&str, &str)]) -> Fields {
    let mut f = Fields::new();
    for &(name, value) in list {
        f.push(name.to_owned(), value.to_owned());
    }
    f
}

// ---------------------------------------------------------------------------------------------
// The input plan

/// How a target cuts its input into reads and what its application does, read from the
/// input's first bytes:
///
/// ```text
/// byte 0        flags: bits 0-2 = n, the number of chunk sizes below; bits 3-7 = options
///               (meaning per target, see `option`)
/// byte 1        actions: 2 bits per stream, for streams 0..4, then cycling
/// bytes 2..2+n  chunk sizes, used in turn and cycled; 0 = everything left
/// the rest      the bytes the peer sends
/// ```
///
/// Missing header bytes read as 0, so any input is a valid plan. With n = 0 the whole
/// rest is one read.
#[derive(Debug, Clone)]
pub struct Plan {
    pub flags: u8,
    pub actions: u8,
    pub sizes: Vec<u8>,
}

impl Plan {
    /// Splits `data` into the plan and the peer's bytes.
    pub fn parse(data: &[u8]) -> (Plan, &[u8]) {
        let byte = |i: usize| data.get(i).copied().unwrap_or(0);
        let flags = byte(0);
        let n = (flags & 7) as usize;
        let header = (2 + n).min(data.len());
        let sizes = (0..n).map(|i| byte(2 + i)).collect();
        let plan = Plan {
            flags,
            actions: byte(1),
            sizes,
        };
        (plan, &data[header..])
    }

    /// The header bytes for this plan (the corpus generator's side of [`Plan::parse`]).
    pub fn encode(options: u8, actions: u8, sizes: &[u8]) -> Vec<u8> {
        assert!(sizes.len() < 8 && options < 32);
        let mut out = vec![options << 3 | sizes.len() as u8, actions];
        out.extend_from_slice(sizes);
        out
    }

    /// Option bit `i` (0..5) of the flags.
    pub fn option(&self, i: u8) -> bool {
        self.flags & (8 << i) != 0
    }

    /// The 2-bit action for the `i`th stream.
    pub fn action(&self, i: usize) -> u8 {
        (self.actions >> (2 * (i % 4))) & 3
    }

    /// `bytes` cut into reads as the plan says.
    pub fn chunks<'a>(&'a self, mut bytes: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        let mut turn = 0;
        std::iter::from_fn(move || {
            if bytes.is_empty() {
                return None;
            }
            let size = match self.sizes.get(turn % self.sizes.len().max(1)) {
                Some(&s) if s > 0 => (s as usize).min(bytes.len()),
                _ => bytes.len(),
            };
            turn += 1;
            let (chunk, rest) = bytes.split_at(size);
            bytes = rest;
            Some(chunk)
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Checking a connection from its peer's side

/// The peer of a [`Conn`] under test: feeds it the peer's bytes as the driver does, and checks
/// everything it writes as the peer would read it. Panics (a fuzz finding) when ringway:
///
/// - `recv`: consumes anything but the preface and whole frames off the front of the buffer,
///   or says to read on while a whole frame is left in it;
/// - hands out an output batch that is not a whole number of frames (the client's first
///   batch starts with the preface);
/// - sends a frame type it never should (PRIORITY, PUSH_PROMISE, unknown), a connection frame
///   on a stream, HEADERS/DATA/CONTINUATION on stream 0 or on an even (server-initiated) id,
///   RST_STREAM on stream 0, flags it never sets, or a control frame of the wrong length;
/// - sends a frame larger than the peer's SETTINGS_MAX_FRAME_SIZE;
/// - interleaves another frame into a header block, or sends a header block the peer's HPACK
///   decoder (one for the whole connection, as the peer has) cannot decode;
/// - sends DATA on a stream before its HEADERS, or HEADERS or DATA after it sent END_STREAM
///   or RST_STREAM on it;
/// - sends more DATA than the peer's flow-control windows allow (its SETTINGS and
///   WINDOW_UPDATEs, as the peer counts them);
/// - sends a WINDOW_UPDATE of 0 or above 2^31-1, or one that gives the peer more window than
///   ringway advertised: credit for bytes it never received.
pub struct Peer {
    role: Role,
    started: bool,
    /// The peer's decoder of our header blocks.
    decoder: Decoder,
    /// A header block whose CONTINUATION frames are still to come: stream and bytes so far.
    block: Option<(u32, Vec<u8>)>,
    /// Streams we ended (END_STREAM) or reset: nothing more may be sent on them.
    done: HashSet<u32>,
    /// The peer's bytes given to `recv` and not consumed yet (a copy of the read buffer).
    unread: Vec<u8>,
    /// Preface bytes still expected from the client (server role).
    preface_left: usize,
    flow: Flow,
}

/// Flow control as the peer counts it (RFC 9113 §6.9).
struct Flow {
    /// What the peer allows ringway to send: the connection window, the initial stream window
    /// (its SETTINGS_INITIAL_WINDOW_SIZE) and each stream's window.
    send_conn: i64,
    send_initial: i64,
    send: HashMap<u32, i64>,
    /// The peer's SETTINGS_MAX_FRAME_SIZE.
    max_frame: usize,
    /// What ringway allows the peer to send, and the most it advertised: the connection
    /// window (raised by WINDOW_UPDATEs before the peer sent any DATA), and the initial stream
    /// window (ringway's SETTINGS_INITIAL_WINDOW_SIZE).
    recv_conn: i64,
    recv_conn_limit: i64,
    recv_initial: i64,
    recv: HashMap<u32, i64>,
    peer_sent_data: bool,
}

impl Peer {
    pub fn new(role: Role) -> Peer {
        let window = frame::DEFAULT_WINDOW as i64;
        Peer {
            role,
            started: false,
            decoder: Decoder::new(4096),
            block: None,
            done: HashSet::new(),
            unread: Vec::new(),
            preface_left: if role == Role::Server {
                frame::PREFACE.len()
            } else {
                0
            },
            flow: Flow {
                send_conn: window,
                send_initial: window,
                send: HashMap::new(),
                max_frame: frame::DEFAULT_MAX_FRAME as usize,
                recv_conn: window,
                recv_conn_limit: window,
                recv_initial: window,
                recv: HashMap::new(),
                peer_sent_data: false,
            },
        }
    }

    /// Appends `chunk` to the read buffer and calls `conn.recv` on it, as the driver does;
    /// returns what `recv` returned (`false`: stop reading).
    pub fn recv(&mut self, conn: &Conn, buf: &mut BytesMut, chunk: &[u8]) -> bool {
        buf.extend_from_slice(chunk);
        self.unread.extend_from_slice(chunk);
        let more = conn.recv(buf);
        let consumed = self
            .unread
            .len()
            .checked_sub(buf.len())
            .expect("recv grew the buffer");
        assert_eq!(
            &buf[..],
            &self.unread[consumed..],
            "recv changed what it left"
        );
        let consumed: Vec<u8> = self.unread.drain(..consumed).collect();
        self.input(&consumed);
        if more && buf.len() >= frame::HEADER_LEN {
            let head = Head::parse(buf);
            assert!(
                frame::HEADER_LEN + head.len as usize > buf.len(),
                "recv said to read on with a whole frame in the buffer: {head:?}"
            );
        }
        more
    }

    /// The peer's bytes that `recv` consumed: the preface, then whole frames.
    fn input(&mut self, mut b: &[u8]) {
        if self.preface_left > 0 {
            let n = self.preface_left.min(b.len());
            b = &b[n..];
            self.preface_left -= n;
        }
        let flow = &mut self.flow;
        while !b.is_empty() {
            assert!(
                b.len() >= frame::HEADER_LEN,
                "recv consumed a partial frame header"
            );
            let head = Head::parse(b);
            let end = frame::HEADER_LEN + head.len as usize;
            assert!(b.len() >= end, "recv consumed a partial frame: {head:?}");
            let p = &b[frame::HEADER_LEN..end];
            b = &b[end..];
            match head.kind {
                frame::SETTINGS if head.has(frame::FLAG_ACK) || head.stream != 0 => {}
                frame::SETTINGS => {
                    for (id, value) in settings(p) {
                        match id {
                            frame::SETTINGS_INITIAL_WINDOW_SIZE if value <= frame::MAX_WINDOW => {
                                let delta = value as i64 - flow.send_initial;
                                flow.send_initial = value as i64;
                                flow.send.values_mut().for_each(|w| *w += delta);
                            }
                            frame::SETTINGS_MAX_FRAME_SIZE
                                if (frame::DEFAULT_MAX_FRAME..1 << 24).contains(&value) =>
                            {
                                flow.max_frame = value as usize;
                            }
                            _ => {}
                        }
                    }
                }
                frame::WINDOW_UPDATE if p.len() == 4 => {
                    let inc =
                        (u32::from_be_bytes(p.try_into().unwrap()) & frame::MAX_WINDOW) as i64;
                    match head.stream {
                        0 => flow.send_conn += inc,
                        id => {
                            if let Some(w) = flow.send.get_mut(&id) {
                                *w += inc;
                            }
                        }
                    }
                }
                frame::HEADERS if head.stream != 0 && self.role == Role::Server => {
                    flow.open(head.stream);
                }
                frame::DATA if head.stream != 0 => {
                    flow.peer_sent_data = true;
                    flow.recv_conn -= head.len as i64;
                    if let Some(w) = flow.recv.get_mut(&head.stream) {
                        *w -= head.len as i64;
                    }
                }
                _ => {}
            }
        }
    }

    /// Drains `conn`'s output (as its writer does) and checks it.
    pub fn drain(&mut self, conn: &Conn) {
        for _ in 0..4 {
            let mut spare = BytesMut::new();
            match conn.poll_output(&mut cx(), &mut spare) {
                Poll::Ready(Some(batch)) => self.output(&batch),
                // Ready(None): closing, and everything was handed out.
                Poll::Ready(None) | Poll::Pending => return,
            }
        }
    }

    fn output(&mut self, batch: &[u8]) {
        let mut b = batch;
        if !self.started {
            self.started = true;
            if self.role == Role::Client {
                b = b
                    .strip_prefix(&frame::PREFACE[..])
                    .expect("a client's first bytes are the preface");
            }
        }
        while !b.is_empty() {
            assert!(
                b.len() >= frame::HEADER_LEN,
                "output batch ends in a partial frame header"
            );
            let head = Head::parse(b);
            let end = frame::HEADER_LEN + head.len as usize;
            assert!(
                b.len() >= end,
                "output batch ends in a partial frame: {head:?}"
            );
            self.frame(head, &b[frame::HEADER_LEN..end]);
            b = &b[end..];
        }
    }

    /// One frame ringway sent.
    fn frame(&mut self, head: Head, payload: &[u8]) {
        if let Some((stream, _)) = &self.block {
            assert!(
                head.kind == frame::CONTINUATION && head.stream == *stream,
                "{head:?} inside the header block of stream {stream}"
            );
        }
        let flags_allowed = match head.kind {
            frame::DATA => frame::FLAG_END_STREAM,
            frame::HEADERS => frame::FLAG_END_STREAM | frame::FLAG_END_HEADERS,
            frame::CONTINUATION => frame::FLAG_END_HEADERS,
            frame::SETTINGS | frame::PING => frame::FLAG_ACK,
            _ => 0,
        };
        assert_eq!(head.flags & !flags_allowed, 0, "unexpected flags: {head:?}");
        match head.kind {
            frame::DATA | frame::HEADERS | frame::CONTINUATION => {
                assert!(
                    head.stream % 2 == 1,
                    "stream frame on stream 0 or on a server-initiated id: {head:?}"
                );
                assert!(
                    head.len as usize <= self.flow.max_frame,
                    "{head:?} larger than the peer's maximum frame size {}",
                    self.flow.max_frame
                );
            }
            // A stream error may answer a frame on any id the peer named (e.g. a PRIORITY of
            // the wrong length on an idle stream, RFC 9113 §6.3).
            frame::RST_STREAM => assert_ne!(head.stream, 0, "RST_STREAM on stream 0"),
            frame::SETTINGS | frame::PING | frame::GOAWAY => {
                assert_eq!(head.stream, 0, "connection frame on a stream: {head:?}");
            }
            frame::WINDOW_UPDATE => {}
            _ => panic!("a frame type ringway never sends: {head:?}"),
        }
        let len = payload.len();
        match head.kind {
            frame::SETTINGS if head.has(frame::FLAG_ACK) => assert_eq!(len, 0, "{head:?}"),
            frame::SETTINGS => assert_eq!(len % 6, 0, "{head:?}"),
            frame::PING => assert_eq!(len, 8, "{head:?}"),
            frame::GOAWAY => assert!(len >= 8, "{head:?}"),
            frame::RST_STREAM | frame::WINDOW_UPDATE => assert_eq!(len, 4, "{head:?}"),
            _ => {}
        }
        match head.kind {
            frame::DATA | frame::HEADERS => {
                assert!(
                    !self.done.contains(&head.stream),
                    "{head:?} after END_STREAM or RST_STREAM on that stream"
                );
                if head.has(frame::FLAG_END_STREAM) {
                    self.done.insert(head.stream);
                }
            }
            frame::RST_STREAM => {
                self.done.insert(head.stream);
            }
            _ => {}
        }
        self.flow.output(head, payload, self.role);
        match head.kind {
            frame::HEADERS => {
                self.block = Some((head.stream, payload.to_vec()));
            }
            frame::CONTINUATION => {
                let (_, block) = self
                    .block
                    .as_mut()
                    .expect("CONTINUATION without a HEADERS before it");
                block.extend_from_slice(payload);
            }
            _ => return,
        }
        if head.has(frame::FLAG_END_HEADERS) {
            let (stream, block) = self.block.take().expect("set above");
            self.decoder
                .decode(&Bytes::from(block), |_| {})
                .unwrap_or_else(|e| panic!("our header block on stream {stream}: {e}"));
        }
    }
}

impl Flow {
    /// A stream opened (by either side's HEADERS).
    fn open(&mut self, id: u32) {
        self.send.entry(id).or_insert(self.send_initial);
        self.recv.entry(id).or_insert(self.recv_initial);
    }

    /// A frame ringway sent, for flow control.
    fn output(&mut self, head: Head, p: &[u8], role: Role) {
        match head.kind {
            frame::SETTINGS if !head.has(frame::FLAG_ACK) => {
                for (id, value) in settings(p) {
                    if id == frame::SETTINGS_INITIAL_WINDOW_SIZE {
                        let delta = value as i64 - self.recv_initial;
                        self.recv_initial = value as i64;
                        self.recv.values_mut().for_each(|w| *w += delta);
                    }
                }
            }
            frame::HEADERS if role == Role::Client => self.open(head.stream),
            frame::DATA => {
                let n = head.len as i64;
                let w = self
                    .send
                    .get_mut(&head.stream)
                    .unwrap_or_else(|| panic!("{head:?} before HEADERS on the stream"));
                assert!(
                    n <= *w && n <= self.send_conn,
                    "{head:?} beyond the peer's windows: stream {w}, connection {}",
                    self.send_conn
                );
                *w -= n;
                self.send_conn -= n;
            }
            frame::WINDOW_UPDATE => {
                let inc = u32::from_be_bytes(p.try_into().unwrap());
                assert!(
                    (1..=frame::MAX_WINDOW).contains(&inc),
                    "WINDOW_UPDATE of {inc} on stream {}",
                    head.stream
                );
                let inc = inc as i64;
                if head.stream == 0 {
                    self.recv_conn += inc;
                    if !self.peer_sent_data {
                        self.recv_conn_limit = self.recv_conn;
                    }
                    assert!(
                        self.recv_conn <= self.recv_conn_limit,
                        "connection WINDOW_UPDATE of {inc} raises the peer's window to {}, \
                         above the {} advertised: credit for bytes never received",
                        self.recv_conn,
                        self.recv_conn_limit
                    );
                } else if let Some(w) = self.recv.get_mut(&head.stream) {
                    *w += inc;
                    assert!(
                        *w <= self.recv_initial,
                        "WINDOW_UPDATE of {inc} raises the peer's window on stream {} to {w}, \
                         above the {} advertised: credit for bytes never received",
                        head.stream,
                        self.recv_initial
                    );
                }
            }
            _ => {}
        }
    }
}

/// The parameters of a SETTINGS payload.
fn settings(p: &[u8]) -> impl Iterator<Item = (u16, u32)> + '_ {
    p.chunks_exact(6).map(|c| {
        (
            u16::from_be_bytes([c[0], c[1]]),
            u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Building inputs

/// Frame builders for seed inputs.
pub mod build {
    use bytes::BytesMut;
    use ringway::wire::frame;
    use ringway::wire::hpack::Encoder;

    /// One frame with a raw payload.
    pub fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let mut b = BytesMut::new();
        frame::put_head(&mut b, payload.len(), kind, flags, stream);
        out.extend_from_slice(&b);
        out.extend_from_slice(payload);
    }

    pub fn settings(out: &mut Vec<u8>, params: &[(u16, u32)]) {
        let mut b = BytesMut::new();
        frame::put_settings(&mut b, params);
        out.extend_from_slice(&b);
    }

    pub fn settings_ack(out: &mut Vec<u8>) {
        frame(out, frame::SETTINGS, frame::FLAG_ACK, 0, &[]);
    }

    /// A header block encoded by ringway's encoder.
    pub fn block(enc: &mut Encoder, fields: &[(&str, &str)]) -> Vec<u8> {
        let mut b = BytesMut::new();
        enc.encode(
            fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
            &mut b,
        );
        b.to_vec()
    }

    /// HEADERS (END_HEADERS) with `fields`.
    pub fn headers(
        out: &mut Vec<u8>,
        enc: &mut Encoder,
        stream: u32,
        fields: &[(&str, &str)],
        end: bool,
    ) {
        let block = block(enc, fields);
        let flags = frame::FLAG_END_HEADERS | if end { frame::FLAG_END_STREAM } else { 0 };
        frame(out, frame::HEADERS, flags, stream, &block);
    }

    pub fn data(out: &mut Vec<u8>, stream: u32, payload: &[u8], end: bool) {
        let flags = if end { frame::FLAG_END_STREAM } else { 0 };
        frame(out, frame::DATA, flags, stream, payload);
    }

    /// A gRPC message: the 5-byte prefix (not compressed, length) and the bytes.
    pub fn grpc_message(payload: &[u8]) -> Vec<u8> {
        let mut m = vec![0];
        m.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        m.extend_from_slice(payload);
        m
    }

    pub fn rst(out: &mut Vec<u8>, stream: u32, code: u32) {
        frame(out, frame::RST_STREAM, 0, stream, &code.to_be_bytes());
    }

    pub fn window_update(out: &mut Vec<u8>, stream: u32, inc: u32) {
        frame(out, frame::WINDOW_UPDATE, 0, stream, &inc.to_be_bytes());
    }

    pub fn ping(out: &mut Vec<u8>, ack: bool, payload: [u8; 8]) {
        let flags = if ack { frame::FLAG_ACK } else { 0 };
        frame(out, frame::PING, flags, 0, &payload);
    }

    pub fn goaway(out: &mut Vec<u8>, last: u32, code: u32, debug: &[u8]) {
        let mut p = last.to_be_bytes().to_vec();
        p.extend_from_slice(&code.to_be_bytes());
        p.extend_from_slice(debug);
        frame(out, frame::GOAWAY, 0, 0, &p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_round_trip_and_chunks() {
        let mut input = Plan::encode(0b10101, 0xe4, &[1, 0, 3]);
        input.extend_from_slice(b"abcdefghij");
        let (plan, rest) = Plan::parse(&input);
        assert_eq!(rest, b"abcdefghij");
        assert!(plan.option(0) && !plan.option(1) && plan.option(2) && plan.option(4));
        assert_eq!(
            (0..5).map(|i| plan.action(i)).collect::<Vec<_>>(),
            [0, 1, 2, 3, 0]
        );
        // Sizes 1, 0 (the rest): "a" then everything else.
        assert_eq!(
            plan.chunks(rest).collect::<Vec<_>>(),
            [&b"a"[..], &b"bcdefghij"[..]]
        );
        let (plan, rest) = Plan::parse(&[2, 0, 2, 3, b'x', b'y', b'z', b'w', b'v', b'u']);
        assert_eq!(
            plan.chunks(rest).collect::<Vec<_>>(),
            [&b"xy"[..], &b"zwv"[..], &b"u"[..]]
        );
        // Short inputs are valid plans.
        let (plan, rest) = Plan::parse(&[7]);
        assert_eq!((plan.sizes.len(), rest.len()), (7, 0));
        assert_eq!(Plan::parse(&[]).1.len(), 0);
    }
}
