//! Tests of the connection engine ([`super::conn`]) without sockets.
//!
//! The engine is sans-I/O, so a client [`Conn`] and a server [`Conn`] are wired together in
//! memory: [`transfer`] moves what one side queued into the other's `recv`, and [`exchange`]
//! does it both ways until both are quiet. Handles are polled with a no-op waker. Tests that
//! need bytes no well-behaved peer would send build frames by hand ([`raw_server`],
//! [`put_headers`]) and look at the frames the engine answers with ([`frames`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};

use super::conn::{Chunk, Response, CANCEL_GRACE};
use super::frame::{self, Head};
use super::hpack::{Decoder, Encoder};
use super::{
    Closed, Conn, Error, Fields, Incoming, Reason, RecvStream, Respond, ResponseFuture, Role,
    SendStream, Settings,
};

// ---------------------------------------------------------------------------------------------
// Helpers

fn cx() -> Context<'static> {
    Context::from_waker(Waker::noop())
}

/// A waker that remembers it was woken.
#[derive(Default)]
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Everything `conn` has queued for the peer (empty if nothing).
fn take_output(conn: &Conn) -> BytesMut {
    let mut spare = BytesMut::new();
    match conn.poll_output(&mut cx(), &mut spare) {
        Poll::Ready(Some(out)) => out,
        _ => BytesMut::new(),
    }
}

/// A received frame: its header and payload.
type Frame = (Head, Vec<u8>);

/// Splits whole frames.
fn frames(mut b: &[u8]) -> Vec<Frame> {
    let mut out = Vec::new();
    while !b.is_empty() {
        assert!(b.len() >= frame::HEADER_LEN, "a partial frame header");
        let head = Head::parse(b);
        let end = frame::HEADER_LEN + head.len as usize;
        assert!(b.len() >= end, "a partial frame");
        out.push((head, b[frame::HEADER_LEN..end].to_vec()));
        b = &b[end..];
    }
    out
}

/// Moves what `from` queued into `to`; returns the frames moved.
fn transfer(from: &Conn, to: &Conn) -> Vec<Frame> {
    let mut out = take_output(from);
    if out.is_empty() {
        return Vec::new();
    }
    let moved = frames(out.strip_prefix(frame::PREFACE).unwrap_or(&out));
    to.recv(&mut out);
    moved
}

/// Moves bytes both ways until neither side has anything to say.
fn exchange(a: &Conn, b: &Conn) {
    for _ in 0..100 {
        let ab = transfer(a, b);
        let ba = transfer(b, a);
        if ab.is_empty() && ba.is_empty() {
            return;
        }
    }
    panic!("the connections never went quiet");
}

/// A client and a server that completed the handshake.
fn pair(client: Settings, server: Settings) -> (Conn, Conn) {
    let c = Conn::new(Role::Client, client, None);
    let s = Conn::new(Role::Server, server, None);
    exchange(&c, &s);
    assert!(c.poll_handshake(&mut cx()).is_ready());
    assert!(s.poll_handshake(&mut cx()).is_ready());
    (c, s)
}

fn default_pair() -> (Conn, Conn) {
    pair(Settings::default(), Settings::default())
}

fn fields(list: &[(&str, &str)]) -> Fields {
    let mut f = Fields::new();
    for &(name, value) in list {
        f.push(name.to_owned(), value.to_owned());
    }
    f
}

const REQUEST: &[(&str, &str)] = &[
    (":method", "POST"),
    (":scheme", "http"),
    (":path", "/pkg.Service/Method"),
    (":authority", "example.com"),
    ("content-type", "application/grpc"),
    ("te", "trailers"),
];

fn request() -> Fields {
    fields(REQUEST)
}

/// A request with one more field at the end.
fn request_with(name: &str, value: impl Into<bytes::Bytes>) -> Fields {
    let mut f = request();
    f.push(name.to_owned(), value);
    f
}

fn list(f: &Fields) -> Vec<(Vec<u8>, Vec<u8>)> {
    f.iter()
        .map(|f| (f.name.to_vec(), f.value.to_vec()))
        .collect()
}

fn accept(server: &Conn) -> Option<Incoming> {
    match server.poll_accept(&mut cx()) {
        Poll::Ready(incoming) => incoming,
        Poll::Pending => None,
    }
}

fn poll_response(f: &mut ResponseFuture) -> Poll<Result<Response, Error>> {
    Pin::new(f).poll(&mut cx())
}

fn response(f: &mut ResponseFuture) -> Response {
    match poll_response(f) {
        Poll::Ready(Ok(r)) => r,
        Poll::Ready(Err(e)) => panic!("response failed: {e}"),
        Poll::Pending => panic!("no response yet"),
    }
}

fn response_error(f: &mut ResponseFuture) -> Error {
    match poll_response(f) {
        Poll::Ready(Err(e)) => e,
        Poll::Ready(Ok(_)) => panic!("expected an error, got a response"),
        Poll::Pending => panic!("expected an error, still pending"),
    }
}

fn show(p: &Poll<Result<Option<Chunk>, Error>>) -> String {
    match p {
        Poll::Pending => "Pending".into(),
        Poll::Ready(Ok(None)) => "end".into(),
        Poll::Ready(Ok(Some(Chunk::Data(d, end)))) => format!("DATA({} bytes, end {end})", d.len()),
        Poll::Ready(Ok(Some(Chunk::Trailers(t)))) => format!("trailers {t:?}"),
        Poll::Ready(Err(e)) => format!("error {e}"),
    }
}

/// The next DATA chunk: its bytes and END_STREAM.
fn data(body: &mut RecvStream) -> (Vec<u8>, bool) {
    match body.poll_recv(&mut cx()) {
        Poll::Ready(Ok(Some(Chunk::Data(d, end)))) => (d.to_vec(), end),
        other => panic!("expected DATA, got {}", show(&other)),
    }
}

/// Every DATA chunk until the one with END_STREAM, concatenated.
fn body_to_end(body: &mut RecvStream) -> Vec<u8> {
    let mut all = Vec::new();
    loop {
        let (d, end) = data(body);
        all.extend_from_slice(&d);
        if end {
            return all;
        }
    }
}

fn trailers(body: &mut RecvStream) -> Fields {
    match body.poll_recv(&mut cx()) {
        Poll::Ready(Ok(Some(Chunk::Trailers(t)))) => t,
        other => panic!("expected trailers, got {}", show(&other)),
    }
}

fn ended(body: &mut RecvStream) -> bool {
    matches!(body.poll_recv(&mut cx()), Poll::Ready(Ok(None)))
}

fn capacity(send: &mut SendStream) -> Poll<Result<usize, Error>> {
    send.poll_capacity(&mut cx())
}

/// The granted capacity, or 0 while waiting.
fn granted(send: &mut SendStream) -> usize {
    match capacity(send) {
        Poll::Ready(Ok(n)) => n,
        Poll::Ready(Err(e)) => panic!("no capacity: {e}"),
        Poll::Pending => 0,
    }
}

/// The SETTINGS parameters of a SETTINGS payload.
fn settings_params(p: &[u8]) -> Vec<(u16, u32)> {
    p.chunks_exact(6)
        .map(|c| {
            (
                u16::from_be_bytes([c[0], c[1]]),
                u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
            )
        })
        .collect()
}

fn u32_at(p: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([p[at], p[at + 1], p[at + 2], p[at + 3]])
}

/// The (stream, code) of each RST_STREAM among `frames`.
fn resets(frames: &[Frame]) -> Vec<(u32, Reason)> {
    frames
        .iter()
        .filter(|(h, _)| h.kind == frame::RST_STREAM)
        .map(|(h, p)| (h.stream, Reason(u32_at(p, 0))))
        .collect()
}

/// The (last stream, code, debug data) of a GOAWAY frame.
fn goaway((head, p): &Frame) -> (u32, Reason, Vec<u8>) {
    assert_eq!(head.kind, frame::GOAWAY, "not a GOAWAY: {head:?}");
    (u32_at(p, 0), Reason(u32_at(p, 4)), p[8..].to_vec())
}

/// Sends the whole request body and the whole response (head, `body`, trailers) of `incoming`.
fn complete(
    client: &Conn,
    server: &Conn,
    send: &mut SendStream,
    fut: &mut ResponseFuture,
    incoming: &mut Incoming,
) {
    send.send_data(b"ping", true).unwrap();
    exchange(client, server);
    assert_eq!(body_to_end(&mut incoming.body), b"ping");
    let mut out = incoming
        .respond
        .send_response(&fields(&[(":status", "200")]), false)
        .unwrap();
    out.send_data(b"pong", false).unwrap();
    out.send_trailers(&fields(&[("grpc-status", "0")])).unwrap();
    exchange(client, server);
    let mut r = response(fut);
    assert_eq!(data(&mut r.body), (b"pong".to_vec(), false));
    assert_eq!(
        list(&trailers(&mut r.body)),
        list(&fields(&[("grpc-status", "0")]))
    );
    assert!(ended(&mut r.body));
}

// --- raw frames --------------------------------------------------------------------------------

/// A server that got the preface and an empty SETTINGS; its own output is discarded.
fn raw_server(settings: Settings) -> Conn {
    let server = Conn::new(Role::Server, settings, None);
    let mut b = BytesMut::new();
    b.extend_from_slice(frame::PREFACE);
    frame::put_settings(&mut b, &[]);
    frame::put_settings_ack(&mut b);
    assert!(server.recv(&mut b));
    assert!(server.poll_handshake(&mut cx()).is_ready());
    take_output(&server);
    server
}

const RAW_REQUEST: &[(&[u8], &[u8])] = &[
    (b":method", b"POST"),
    (b":scheme", b"http"),
    (b":path", b"/pkg.Service/Method"),
    (b"content-type", b"application/grpc"),
];

/// Appends a HEADERS frame (and CONTINUATION frames if needed) with `fields`.
fn put_headers(
    out: &mut BytesMut,
    enc: &mut Encoder,
    id: u32,
    fields: &[(&[u8], &[u8])],
    end: bool,
) {
    let start = out.len();
    out.extend_from_slice(&[0; frame::HEADER_LEN]);
    enc.encode(fields.iter().copied(), out);
    frame::frame_header_block(out, start, id, end, frame::DEFAULT_MAX_FRAME as usize);
}

/// Feeds `bytes` to `server`; returns what `recv` said and the frames it answered with.
fn feed(server: &Conn, bytes: &[u8]) -> (bool, Vec<Frame>) {
    let mut b = BytesMut::from(bytes);
    let more = server.recv(&mut b);
    (more, frames(&take_output(server)))
}

// ---------------------------------------------------------------------------------------------
// Handshake

#[test]
fn handshake_exchanges_settings() {
    let client = Conn::new(Role::Client, Settings::default(), None);
    let server_settings = Settings {
        stream_window: 1 << 20,
        connection_window: 1 << 24,
        max_concurrent_streams: 100,
        ..Settings::default()
    };
    let server = Conn::new(Role::Server, server_settings, None);
    assert!(client.poll_handshake(&mut cx()).is_pending());
    assert!(server.poll_handshake(&mut cx()).is_pending());

    let mut up = take_output(&client);
    assert!(
        up.starts_with(frame::PREFACE),
        "the client starts with the preface"
    );
    let up_frames = frames(&up[frame::PREFACE.len()..]);
    assert_eq!(
        up_frames.len(),
        1,
        "only SETTINGS: the client's window is the default"
    );
    assert_eq!(up_frames[0].0.kind, frame::SETTINGS);
    assert!(settings_params(&up_frames[0].1).contains(&(frame::SETTINGS_ENABLE_PUSH, 0)));

    let mut down = take_output(&server);
    let down_frames = frames(&down);
    assert_eq!(down_frames[0].0.kind, frame::SETTINGS);
    let params = settings_params(&down_frames[0].1);
    assert!(params.contains(&(frame::SETTINGS_MAX_CONCURRENT_STREAMS, 100)));
    assert!(params.contains(&(frame::SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20)));
    let (head, p) = &down_frames[1];
    assert_eq!((head.kind, head.stream), (frame::WINDOW_UPDATE, 0));
    assert_eq!(u32_at(p, 0), (1 << 24) - frame::DEFAULT_WINDOW);

    assert!(server.recv(&mut up));
    assert!(client.recv(&mut down));
    assert!(client.poll_handshake(&mut cx()).is_ready());
    assert!(server.poll_handshake(&mut cx()).is_ready());
    assert_eq!(client.peer_max_streams(), 100);
    // Both acknowledge the other's SETTINGS.
    for conn in [&client, &server] {
        let acks = frames(&take_output(conn));
        assert!(acks
            .iter()
            .any(|(h, _)| h.kind == frame::SETTINGS && h.has(frame::FLAG_ACK)));
    }
}

#[test]
fn bytes_may_arrive_one_at_a_time() {
    let client = Conn::new(Role::Client, Settings::default(), None);
    let server = Conn::new(Role::Server, Settings::default(), None);
    let (mut fut, _send) = client.send_request(&request(), true).unwrap();
    let all = take_output(&client);
    let mut buf = BytesMut::new();
    for &b in all.iter() {
        buf.put_u8(b);
        assert!(server.recv(&mut buf));
    }
    assert!(buf.is_empty());
    let mut incoming = accept(&server).expect("the request arrived");
    assert_eq!(list(&incoming.head), list(&request()));
    incoming
        .respond
        .send_response(&fields(&[(":status", "200")]), true)
        .unwrap();
    exchange(&client, &server);
    assert!(response(&mut fut).end);
}

// ---------------------------------------------------------------------------------------------
// Streams

#[test]
fn unary_call_end_to_end() {
    let (client, server) = default_pair();
    let head = request_with("x-binary-bin", vec![0xff, 0x80, 0x7f, 0x01]);
    let (mut fut, mut send) = client.send_request(&head, false).unwrap();
    assert_eq!(fut.stream_id(), 1);
    assert!(granted(&mut send) >= 5);
    send.send_data(b"hello", true).unwrap();
    exchange(&client, &server);

    let mut incoming = accept(&server).expect("a stream");
    assert!(!incoming.end);
    assert_eq!(
        list(&incoming.head),
        list(&head),
        "the same fields, in order"
    );
    assert_eq!(data(&mut incoming.body), (b"hello".to_vec(), true));
    assert!(ended(&mut incoming.body));
    incoming.body.release(5);
    assert!(poll_response(&mut fut).is_pending());

    let mut out = incoming
        .respond
        .send_response(
            &fields(&[(":status", "200"), ("content-type", "application/grpc")]),
            false,
        )
        .unwrap();
    out.send_data(b"world", false).unwrap();
    out.send_trailers(&fields(&[("grpc-status", "0"), ("grpc-message", "ok")]))
        .unwrap();
    exchange(&client, &server);

    let mut r = response(&mut fut);
    assert!(!r.end);
    assert_eq!(
        list(&r.head),
        list(&fields(&[
            (":status", "200"),
            ("content-type", "application/grpc")
        ]))
    );
    assert_eq!(data(&mut r.body), (b"world".to_vec(), false));
    r.body.release(5);
    let t = trailers(&mut r.body);
    assert_eq!(
        list(&t),
        list(&fields(&[("grpc-status", "0"), ("grpc-message", "ok")]))
    );
    assert!(ended(&mut r.body));
    assert_eq!(client.open_streams(), 0);
    assert_eq!(server.open_streams(), 0);

    // Dropping the handles of a closed stream says nothing more.
    drop((fut, send, r, incoming, out));
    assert!(take_output(&client).is_empty());
    assert!(take_output(&server).is_empty());
}

#[test]
fn what_is_here_is_taken_without_waiting() {
    let settings = Settings {
        output_limit: 64,
        ..Settings::default()
    };
    let (client, server) = pair(settings, Settings::default());
    let (_fut, mut send) = client.send_request(&request(), false).unwrap();
    exchange(&client, &server);
    // The batch handed to the writer counts until it is written.
    client.written();
    assert_eq!(send.capacity_now(), frame::DEFAULT_WINDOW as usize);
    assert_eq!(send.reset_reason(), None);
    let mut incoming = accept(&server).unwrap();
    // Nothing yet: nothing taken, and the stream is still open.
    assert!(incoming.body.try_recv().is_none());
    assert!(incoming.body.take_rest(100).is_none());

    // A body in one frame that ends the stream: taken whole, if it fits the limit.
    send.send_data(b"hello", true).unwrap();
    assert_eq!(send.capacity_now(), 0, "the stream ended: no more room");
    exchange(&client, &server);
    assert!(incoming.body.take_rest(4).is_none(), "over the limit");
    let (data, trailers) = incoming.body.take_rest(5).expect("the whole body");
    assert_eq!((&data[..], trailers.is_none()), (&b"hello"[..], true));
    assert!(matches!(incoming.body.try_recv(), Some(Ok(None))));

    // A body in two frames is not whole until its last frame is the only one left.
    let (_fut, mut send) = client.send_request(&request(), false).unwrap();
    send.send_data(b"ab", false).unwrap();
    send.send_data(b"c", true).unwrap();
    exchange(&client, &server);
    let mut incoming = accept(&server).unwrap();
    assert!(incoming.body.take_rest(100).is_none());
    match incoming.body.try_recv() {
        Some(Ok(Some(Chunk::Data(d, false)))) => assert_eq!(&d[..], b"ab"),
        other => panic!("expected the first frame, got {}", other.is_some()),
    }
    let (data, trailers) = incoming.body.take_rest(100).expect("the last frame");
    assert_eq!((&data[..], trailers.is_none()), (&b"c"[..], true));

    // Output over the connection's limit: no room now, whatever the windows say.
    let (_fut, mut send) = client.send_request(&request(), false).unwrap();
    send.send_data(&[1; 100], false).unwrap();
    assert_eq!(send.capacity_now(), 0);
    exchange(&client, &server);
    client.written();
    // What poll_capacity grants: the stream's window less 100, under the connection's, which
    // the bodies above (never released) took 108 bytes of.
    assert_eq!(send.capacity_now(), frame::DEFAULT_WINDOW as usize - 108);
    assert_eq!(send.capacity_now(), granted(&mut send));

    // A reset reaches the other side's reset_reason without anyone waiting on it.
    let mut incoming = accept(&server).unwrap();
    incoming.respond.send_reset(Reason::CANCEL);
    exchange(&client, &server);
    assert_eq!(send.reset_reason(), Some(Reason::CANCEL));
    assert_eq!(send.capacity_now(), 0);
}

#[test]
fn a_whole_answer_goes_out_in_one_go() {
    let ok = fields(&[(":status", "200"), ("content-type", "application/grpc")]);
    let status = fields(&[("grpc-status", "0")]);
    let answer = |respond: &mut Respond, data: &[u8], trailers: Option<&Fields>| {
        let room = respond.capacity_now();
        assert_eq!(room, frame::DEFAULT_WINDOW as usize);
        respond.send_whole(&ok, data, trailers).unwrap();
        assert_eq!(respond.capacity_now(), 0, "answered: nothing more to send");
    };
    let kinds = |moved: &[Frame]| -> Vec<(u8, usize, bool)> {
        moved
            .iter()
            .map(|(h, _)| (h.kind, h.len as usize, h.has(frame::FLAG_END_STREAM)))
            .map(|(k, len, end)| (k, if k == frame::DATA { len } else { 0 }, end))
            .collect()
    };
    for (data, with_trailers, frames) in [
        // Head, DATA, trailers: what a unary gRPC answer is.
        (
            &b"world"[..],
            true,
            vec![
                (frame::HEADERS, 0, false),
                (frame::DATA, 5, false),
                (frame::HEADERS, 0, true),
            ],
        ),
        // No trailers: the data ends the stream.
        (
            &b"world"[..],
            false,
            vec![(frame::HEADERS, 0, false), (frame::DATA, 5, true)],
        ),
        // Trailers alone after the head: no empty DATA frame.
        (
            &b""[..],
            true,
            vec![(frame::HEADERS, 0, false), (frame::HEADERS, 0, true)],
        ),
    ] {
        let (client, server) = default_pair();
        let (mut fut, mut send) = client.send_request(&request(), false).unwrap();
        send.send_data(b"hello", true).unwrap();
        exchange(&client, &server);
        let mut incoming = accept(&server).unwrap();
        let (body, _) = incoming.body.take_rest(5).unwrap();
        incoming.body.release(body.len());
        answer(
            &mut incoming.respond,
            data,
            with_trailers.then_some(&status),
        );
        assert_eq!(kinds(&transfer(&server, &client)), frames);
        exchange(&client, &server);

        let mut r = response(&mut fut);
        assert_eq!(list(&r.head), list(&ok));
        let (got, trailers) = r.body.take_rest(100).expect("all of it came");
        assert_eq!(&got[..], data);
        assert_eq!(
            trailers.map(|t| list(&t)),
            with_trailers.then(|| list(&status))
        );
        assert!(ended(&mut r.body));
        r.body.release(got.len());
        assert_eq!((client.open_streams(), server.open_streams()), (0, 0));
    }

    // More than the windows take: refused, nothing queued.
    let settings = Settings {
        stream_window: 4,
        ..Settings::default()
    };
    let (client, server) = pair(settings, Settings::default());
    let (_fut, _send) = client.send_request(&request(), true).unwrap();
    exchange(&client, &server);
    let mut incoming = accept(&server).unwrap();
    assert_eq!(incoming.respond.capacity_now(), 4);
    assert!(matches!(
        incoming.respond.send_whole(&ok, b"hello", Some(&status)),
        Err(Error::LocalReset(Reason::FLOW_CONTROL_ERROR))
    ));
    assert!(take_output(&server).is_empty());
}

#[test]
fn trailers_only_response_and_bodiless_request() {
    let (client, server) = default_pair();
    let (mut fut, mut send) = client.send_request(&request(), true).unwrap();
    exchange(&client, &server);
    let mut incoming = accept(&server).unwrap();
    assert!(incoming.end);
    assert!(ended(&mut incoming.body));
    incoming
        .respond
        .send_response(&fields(&[(":status", "200"), ("grpc-status", "5")]), true)
        .unwrap();
    exchange(&client, &server);
    let mut r = response(&mut fut);
    assert!(r.end);
    assert_eq!(r.head.get(b"grpc-status").map(|v| &v[..]), Some(&b"5"[..]));
    assert!(ended(&mut r.body));
    // The request already ended: nothing more may be sent.
    assert!(send.send_data(b"x", false).is_err());
    assert_eq!((client.open_streams(), server.open_streams()), (0, 0));
}

#[test]
fn large_bodies_are_split_into_frames() {
    let (client, server) = default_pair();
    let (_fut, mut send) = client.send_request(&request(), false).unwrap();
    let body: Vec<u8> = (0..40_000u32).map(|i| i as u8).collect();
    assert!(granted(&mut send) >= body.len());
    send.send_data(&body, true).unwrap();
    let moved = transfer(&client, &server);
    let data_frames: Vec<_> = moved
        .iter()
        .filter(|(h, _)| h.kind == frame::DATA)
        .map(|(h, _)| (h.len, h.has(frame::FLAG_END_STREAM)))
        .collect();
    assert_eq!(
        data_frames,
        vec![(16_384, false), (16_384, false), (7_232, true)]
    );
    let mut incoming = accept(&server).unwrap();
    assert_eq!(body_to_end(&mut incoming.body), body);
}

// ---------------------------------------------------------------------------------------------
// Flow control

#[test]
fn stream_window_limits_and_window_update_restores() {
    let server_settings = Settings {
        stream_window: 100,
        ..Settings::default()
    };
    let (client, server) = pair(Settings::default(), server_settings);
    let (_fut, mut send) = client.send_request(&request(), false).unwrap();
    assert_eq!(granted(&mut send), 100);
    send.send_data(&[7; 100], false).unwrap();
    assert!(capacity(&mut send).is_pending());
    assert!(matches!(
        send.send_data(&[7], false),
        Err(Error::LocalReset(Reason::FLOW_CONTROL_ERROR))
    ));
    exchange(&client, &server);

    let mut incoming = accept(&server).unwrap();
    assert_eq!(data(&mut incoming.body), (vec![7; 100], false));
    // Less than half the window released: no WINDOW_UPDATE yet.
    incoming.body.release(49);
    assert!(transfer(&server, &client).is_empty());
    assert!(capacity(&mut send).is_pending());
    incoming.body.release(1);
    let moved = transfer(&server, &client);
    let updates: Vec<_> = moved
        .iter()
        .filter(|(h, _)| h.kind == frame::WINDOW_UPDATE && h.stream == 1)
        .map(|(_, p)| u32_at(p, 0))
        .collect();
    assert_eq!(updates, vec![50]);
    assert_eq!(granted(&mut send), 50);
    // Releasing more than was received gives back nothing extra.
    incoming.body.release(1000);
    exchange(&client, &server);
    assert_eq!(granted(&mut send), 100);
}

#[test]
fn waiting_for_capacity_is_woken_by_window_update() {
    let server_settings = Settings {
        stream_window: 100,
        ..Settings::default()
    };
    let (client, server) = pair(Settings::default(), server_settings);
    let (_fut, mut send) = client.send_request(&request(), false).unwrap();
    send.send_data(&[1; 100], false).unwrap();
    let flag = Arc::new(Flag::default());
    let waker = Waker::from(flag.clone());
    assert!(send
        .poll_capacity(&mut Context::from_waker(&waker))
        .is_pending());
    exchange(&client, &server);
    let mut incoming = accept(&server).unwrap();
    data(&mut incoming.body);
    incoming.body.release(100);
    exchange(&client, &server);
    assert!(flag.0.load(Ordering::SeqCst), "the sender was woken");
    assert_eq!(granted(&mut send), 100);
}

#[test]
fn connection_window_recovers_from_dropped_unreleased_streams() {
    let (client, server) = default_pair();
    let chunk = vec![3u8; 30_000];
    // 10 × 30,000 bytes: far more than the 65,535-byte connection window, none of it released
    // by the application. Even streams end normally, odd ones are dropped while open.
    for i in 0..10 {
        let (mut fut, mut send) = client.send_request(&request(), false).unwrap();
        let cap = granted(&mut send);
        assert!(
            cap >= chunk.len(),
            "stream {i}: only {cap} bytes of window left"
        );
        let closes = i % 2 == 0;
        send.send_data(&chunk, closes).unwrap();
        exchange(&client, &server);
        let mut incoming = accept(&server).unwrap();
        assert_eq!(body_to_end_or_open(&mut incoming.body), chunk.len());
        if closes {
            incoming
                .respond
                .send_response(&fields(&[(":status", "200")]), true)
                .unwrap();
        }
        drop(incoming);
        exchange(&client, &server);
        if closes {
            assert!(response(&mut fut).end);
        } else {
            assert!(matches!(
                response_error(&mut fut),
                Error::Reset(Reason::CANCEL)
            ));
        }
        drop((fut, send));
        exchange(&client, &server);
        assert_eq!((client.open_streams(), server.open_streams()), (0, 0));
    }
}

/// The bytes of the DATA chunks available now.
fn body_to_end_or_open(body: &mut RecvStream) -> usize {
    let mut n = 0;
    while let Poll::Ready(Ok(Some(Chunk::Data(d, _)))) = body.poll_recv(&mut cx()) {
        n += d.len();
    }
    n
}

#[test]
fn data_beyond_the_stream_window_is_refused() {
    let server = raw_server(Settings {
        stream_window: 100,
        ..Settings::default()
    });
    let mut enc = Encoder::new();
    let mut b = BytesMut::new();
    put_headers(&mut b, &mut enc, 1, RAW_REQUEST, false);
    frame::put_data(&mut b, 1, &[0; 101], false, 16_384);
    let (more, out) = feed(&server, &b);
    assert!(more);
    assert_eq!(resets(&out), vec![(1, Reason::FLOW_CONTROL_ERROR)]);
    let mut incoming = accept(&server).unwrap();
    assert!(matches!(
        incoming.body.poll_recv(&mut cx()),
        Poll::Ready(Err(Error::LocalReset(Reason::FLOW_CONTROL_ERROR)))
    ));
}

#[test]
fn padded_data_is_unpadded() {
    let server = raw_server(Settings::default());
    let mut enc = Encoder::new();
    let mut b = BytesMut::new();
    put_headers(&mut b, &mut enc, 1, RAW_REQUEST, false);
    frame::put_head(&mut b, 1 + 5 + 10, frame::DATA, frame::FLAG_PADDED, 1);
    b.put_u8(10);
    b.put_slice(b"hello");
    b.put_slice(&[0; 10]);
    let (more, out) = feed(&server, &b);
    assert!(more);
    assert!(out.is_empty());
    let mut incoming = accept(&server).unwrap();
    assert_eq!(data(&mut incoming.body), (b"hello".to_vec(), false));
}

// ---------------------------------------------------------------------------------------------
// Resets

#[test]
fn dropping_client_handles_cancels_the_stream() {
    let (client, server) = default_pair();
    let (fut, send) = client.send_request(&request(), false).unwrap();
    exchange(&client, &server);
    let mut incoming = accept(&server).unwrap();
    assert!(incoming.respond.poll_reset(&mut cx()).is_pending());

    // One handle left: nothing happens.
    drop(fut);
    assert!(take_output(&client).is_empty());
    drop(send);
    // Not answered yet: the reset waits for its grace (see the next test).
    assert!(take_output(&client).is_empty());
    assert_eq!(client.abandoned_streams(), 1);
    client.release_cancels(Instant::now() + CANCEL_GRACE);
    let moved = transfer(&client, &server);
    assert_eq!(resets(&moved), vec![(1, Reason::CANCEL)]);
    assert_eq!(
        incoming.respond.poll_reset(&mut cx()),
        Poll::Ready(Reason::CANCEL)
    );
    assert!(matches!(
        incoming.body.poll_recv(&mut cx()),
        Poll::Ready(Err(Error::Reset(Reason::CANCEL)))
    ));
    assert!(incoming
        .respond
        .send_response(&fields(&[(":status", "200")]), false)
        .is_err());
    assert_eq!((client.open_streams(), server.open_streams()), (0, 0));
}

/// Client streams abandoned before the server answered them are reset only once the server
/// answers, or after `CANCEL_GRACE` — never in the same write as their HEADERS, which a server
/// guarding against rapid reset counts (the `h2` crate closes the connection after 20).
#[test]
fn abandoned_unanswered_streams_are_reset_after_an_answer_or_the_grace() {
    let (client, server) = default_pair();
    // 50 calls opened and given up in one turn, as when a client that had them forwarded is
    // cut off; calls 1 and 3 sent their whole request.
    let mut sends = Vec::new();
    for i in 0..50u32 {
        let (fut, mut send) = client.send_request(&request(), i == 1 || i == 3).unwrap();
        drop(fut);
        if i % 2 == 0 {
            send.send_reset(Reason::CANCEL);
            // The handle sees the stream as reset at once.
            assert_eq!(send.poll_reset(&mut cx()), Poll::Ready(Reason::CANCEL));
            assert!(matches!(
                send.send_data(b"x", false),
                Err(Error::LocalReset(Reason::CANCEL))
            ));
        }
        sends.push(send);
    }
    sends.clear();
    assert_eq!(client.abandoned_streams(), 50);
    let moved = transfer(&client, &server);
    assert_eq!(moved.len(), 50, "HEADERS only");
    assert!(resets(&moved).is_empty(), "{:?}", resets(&moved));
    let mut incoming: Vec<Incoming> = std::iter::from_fn(|| accept(&server)).collect();
    assert_eq!(incoming.len(), 50);

    // Answered: reset at once. Stream 3 (the second call) sent its whole request; a
    // trailers-only answer ends it without a reset. Stream 7 (the fourth) also ended its
    // request, but is answered with a head only: reset.
    let ok = fields(&[(":status", "200"), ("grpc-status", "0")]);
    let head = fields(&[(":status", "200")]);
    incoming[0].respond.send_response(&head, false).unwrap();
    incoming[1].respond.send_response(&ok, true).unwrap();
    incoming[3].respond.send_response(&head, false).unwrap();
    let moved = transfer(&server, &client);
    assert_eq!(moved.len(), 3);
    let moved = transfer(&client, &server);
    assert_eq!(
        resets(&moved),
        vec![(1, Reason::CANCEL), (7, Reason::CANCEL)]
    );
    assert_eq!(client.open_streams(), 47);

    // Not answered within the grace: reset then, with the reason given.
    let now = Instant::now();
    assert!(client.release_cancels(now).is_some());
    assert!(take_output(&client).is_empty());
    assert_eq!(client.release_cancels(now + CANCEL_GRACE), None);
    let moved = transfer(&client, &server);
    assert_eq!(resets(&moved).len(), 47);
    assert_eq!(client.abandoned_streams(), 0);
    assert_eq!(client.open_streams(), 0);
    incoming.clear();
    exchange(&client, &server);
    assert_eq!(server.open_streams(), 0);
    assert!(client.failure().is_none() && server.failure().is_none());
    // The slots are free: new streams work.
    let (mut fut, _send) = client.send_request(&request(), true).unwrap();
    exchange(&client, &server);
    let mut call = accept(&server).unwrap();
    call.respond.send_response(&ok, true).unwrap();
    exchange(&client, &server);
    assert!(response(&mut fut).end);
}

#[test]
fn dropping_server_handles_cancels_the_stream() {
    let (client, server) = default_pair();
    let (mut fut, mut send) = client.send_request(&request(), false).unwrap();
    exchange(&client, &server);
    let incoming = accept(&server).unwrap();
    drop(incoming);
    let moved = transfer(&server, &client);
    assert_eq!(resets(&moved), vec![(1, Reason::CANCEL)]);
    assert_eq!(send.poll_reset(&mut cx()), Poll::Ready(Reason::CANCEL));
    assert!(matches!(
        response_error(&mut fut),
        Error::Reset(Reason::CANCEL)
    ));
    assert!(matches!(
        send.send_data(b"x", false),
        Err(Error::Reset(Reason::CANCEL))
    ));
    assert_eq!((client.open_streams(), server.open_streams()), (0, 0));
}

#[test]
fn send_reset_reaches_the_peer() {
    let (client, server) = default_pair();
    let (mut fut, mut send) = client.send_request(&request(), false).unwrap();
    exchange(&client, &server);
    let mut incoming = accept(&server).unwrap();
    incoming.respond.send_reset(Reason::INTERNAL_ERROR);
    assert_eq!(
        incoming.respond.poll_reset(&mut cx()),
        Poll::Ready(Reason::INTERNAL_ERROR)
    );
    exchange(&client, &server);
    assert!(matches!(
        response_error(&mut fut),
        Error::Reset(Reason::INTERNAL_ERROR)
    ));
    assert_eq!(
        send.poll_reset(&mut cx()),
        Poll::Ready(Reason::INTERNAL_ERROR)
    );
}

#[test]
fn many_cancelled_streams_reuse_their_slots() {
    let (client, server) = default_pair();
    let started = Instant::now();
    for i in 0..10_000u32 {
        let (mut fut, send) = client.send_request(&request(), false).unwrap();
        assert_eq!(send.stream_id(), 2 * i + 1);
        exchange(&client, &server);
        let mut incoming = accept(&server).expect("the stream was accepted");
        if i % 2 == 0 {
            // The server gives up.
            drop(incoming);
            exchange(&client, &server);
            assert!(matches!(
                response_error(&mut fut),
                Error::Reset(Reason::CANCEL)
            ));
            drop((fut, send));
        } else {
            // The client gives up once it has the response head.
            incoming
                .respond
                .send_response(&fields(&[(":status", "200")]), false)
                .unwrap();
            exchange(&client, &server);
            let r = response(&mut fut);
            drop((r, fut, send));
            exchange(&client, &server);
            assert_eq!(
                incoming.respond.poll_reset(&mut cx()),
                Poll::Ready(Reason::CANCEL)
            );
            drop(incoming);
        }
        assert!(take_output(&client).is_empty());
        assert!(take_output(&server).is_empty());
        assert_eq!((client.open_streams(), server.open_streams()), (0, 0));
    }
    assert!(client.failure().is_none() && server.failure().is_none());
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "10,000 streams took {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// GOAWAY and PING

#[test]
fn graceful_shutdown_loses_no_stream() {
    let (client, server) = default_pair();
    let (mut fut1, mut send1) = client.send_request(&request(), false).unwrap();
    exchange(&client, &server);
    let mut in1 = accept(&server).unwrap();

    server.graceful_shutdown();
    // A request the client sends before it hears of the shutdown.
    let (mut fut3, mut send3) = client.send_request(&request(), false).unwrap();
    let down = transfer(&server, &client);
    assert_eq!(down.len(), 2);
    assert_eq!(
        goaway(&down[0]),
        (frame::MAX_WINDOW, Reason::NO_ERROR, vec![])
    );
    assert_eq!(down[1].0.kind, frame::PING);
    assert!(!down[1].0.has(frame::FLAG_ACK));
    assert!(matches!(
        client.send_request(&request(), false),
        Err(Error::GoAway { remote: true, .. })
    ));

    let up = transfer(&client, &server);
    assert!(up
        .iter()
        .any(|(h, _)| h.kind == frame::HEADERS && h.stream == 3));
    assert!(up
        .iter()
        .any(|(h, _)| h.kind == frame::PING && h.has(frame::FLAG_ACK)));
    let down = transfer(&server, &client);
    assert_eq!(down.len(), 1);
    assert_eq!(goaway(&down[0]), (3, Reason::NO_ERROR, vec![]));
    assert_eq!(client.goaway_last_stream(), Some(3));
    let mut in3 = accept(&server).expect("stream 3 was in flight, so accepted");

    complete(&client, &server, &mut send1, &mut fut1, &mut in1);
    assert!(
        server.poll_accept(&mut cx()).is_pending(),
        "still open for stream 3"
    );
    complete(&client, &server, &mut send3, &mut fut3, &mut in3);
    assert_eq!((client.open_streams(), server.open_streams()), (0, 0));
    // Both sides are done with the connection.
    for conn in [&client, &server] {
        take_output(conn);
        assert!(matches!(
            conn.poll_output(&mut cx(), &mut BytesMut::new()),
            Poll::Ready(None)
        ));
    }
    assert!(matches!(server.poll_accept(&mut cx()), Poll::Ready(None)));
}

#[test]
fn streams_above_goaway_last_id_fail() {
    let (client, server) = default_pair();
    let (mut fut1, _send1) = client.send_request(&request(), false).unwrap();
    let (mut fut3, _send3) = client.send_request(&request(), false).unwrap();
    exchange(&client, &server);
    let mut b = BytesMut::new();
    frame::put_goaway(&mut b, 1, Reason::NO_ERROR.0, b"");
    assert!(client.recv(&mut b));
    assert!(matches!(
        response_error(&mut fut3),
        Error::GoAway {
            reason: Reason::NO_ERROR,
            remote: true
        }
    ));
    assert!(poll_response(&mut fut1).is_pending());
    assert_eq!(client.open_streams(), 1);
    assert_eq!(client.goaway_last_stream(), Some(1));
    assert_eq!(client.goaway_reason(), Some(Reason::NO_ERROR));
    assert!(matches!(
        client.send_request(&request(), true),
        Err(Error::GoAway { remote: true, .. })
    ));
    assert!(matches!(
        client.poll_ready(&mut cx()),
        Poll::Ready(Err(Error::GoAway { remote: true, .. }))
    ));
}

#[test]
fn client_graceful_shutdown_forbids_new_streams() {
    let (client, server) = default_pair();
    let (mut fut, mut send) = client.send_request(&request(), false).unwrap();
    exchange(&client, &server);
    let mut incoming = accept(&server).unwrap();
    client.graceful_shutdown();
    assert!(matches!(
        client.send_request(&request(), true),
        Err(Error::GoAway { remote: false, .. })
    ));
    assert!(matches!(
        client.poll_ready(&mut cx()),
        Poll::Ready(Err(Error::GoAway { remote: false, .. }))
    ));
    let moved = transfer(&client, &server);
    assert_eq!(goaway(&moved[0]), (0, Reason::NO_ERROR, vec![]));
    assert_eq!(server.goaway_last_stream(), Some(0));
    // The open stream still completes; then the connection closes.
    complete(&client, &server, &mut send, &mut fut, &mut incoming);
    take_output(&client);
    assert!(matches!(
        client.poll_output(&mut cx(), &mut BytesMut::new()),
        Poll::Ready(None)
    ));
}

#[test]
fn abrupt_shutdown_sends_goaway_with_debug_data() {
    let (client, server) = default_pair();
    let (mut fut, _send) = client.send_request(&request(), false).unwrap();
    exchange(&client, &server);
    let _incoming = accept(&server).unwrap();
    server.abrupt_shutdown(Reason::ENHANCE_YOUR_CALM, b"too_many_pings");
    let mut raw = take_output(&server);
    let out = frames(&raw);
    assert_eq!(
        goaway(out.last().unwrap()),
        (1, Reason::ENHANCE_YOUR_CALM, b"too_many_pings".to_vec())
    );
    assert!(matches!(
        server.poll_output(&mut cx(), &mut BytesMut::new()),
        Poll::Ready(None)
    ));
    assert!(matches!(
        server.failure(),
        Some(Error::GoAway {
            reason: Reason::ENHANCE_YOUR_CALM,
            remote: false
        })
    ));
    // The client learns the reason; its stream 1 was processed, so it stays.
    client.recv(&mut raw);
    assert_eq!(client.goaway_reason(), Some(Reason::ENHANCE_YOUR_CALM));
    assert!(poll_response(&mut fut).is_pending());
}

#[test]
fn ping_and_pong() {
    let (client, server) = default_pair();
    assert!(client.poll_pong(&mut cx()).is_pending());
    assert!(client.send_ping());
    assert!(!client.send_ping(), "one ping at a time");
    assert!(client.poll_pong(&mut cx()).is_pending());
    exchange(&client, &server);
    assert!(matches!(client.poll_pong(&mut cx()), Poll::Ready(Ok(()))));
    assert!(
        client.poll_pong(&mut cx()).is_pending(),
        "one pong per ping"
    );
    assert!(client.send_ping());
    // The server can ping too.
    assert!(server.send_ping());
    exchange(&client, &server);
    assert!(matches!(server.poll_pong(&mut cx()), Poll::Ready(Ok(()))));
    assert!(matches!(client.poll_pong(&mut cx()), Poll::Ready(Ok(()))));
}

// ---------------------------------------------------------------------------------------------
// Connection errors

/// Feeds `frames` to a fresh server and returns the code of the GOAWAY it ends with.
fn connection_error(build: impl FnOnce(&mut BytesMut, &mut Encoder)) -> Reason {
    let server = raw_server(Settings::default());
    let mut enc = Encoder::new();
    let mut b = BytesMut::new();
    build(&mut b, &mut enc);
    let (more, out) = feed(&server, &b);
    assert!(!more, "recv must say stop");
    assert!(server.failure().is_some());
    assert!(matches!(
        server.poll_output(&mut cx(), &mut BytesMut::new()),
        Poll::Ready(None)
    ));
    let (_, code, debug) = goaway(out.last().expect("a GOAWAY"));
    assert!(!debug.is_empty(), "the GOAWAY says why");
    code
}

#[test]
fn data_on_stream_zero() {
    let code = connection_error(|b, _| frame::put_data(b, 0, b"hi", false, 16_384));
    assert_eq!(code, Reason::PROTOCOL_ERROR);
}

#[test]
fn frame_too_large() {
    let code = connection_error(|b, _| {
        frame::put_head(b, 16_385, frame::DATA, 0, 1);
        b.put_slice(&[0; 16_385]);
    });
    assert_eq!(code, Reason::FRAME_SIZE_ERROR);
}

#[test]
fn initial_window_size_too_large() {
    let code = connection_error(|b, _| {
        frame::put_settings(b, &[(frame::SETTINGS_INITIAL_WINDOW_SIZE, 1 << 31)]);
    });
    assert_eq!(code, Reason::FLOW_CONTROL_ERROR);
}

#[test]
fn bad_hpack() {
    let code = connection_error(|b, _| {
        // Indexed field 0 does not exist.
        frame::put_head(b, 1, frame::HEADERS, frame::FLAG_END_HEADERS, 1);
        b.put_u8(0x80);
    });
    assert_eq!(code, Reason::COMPRESSION_ERROR);
    let code = connection_error(|b, _| {
        // A literal whose value is cut short.
        frame::put_head(b, 4, frame::HEADERS, frame::FLAG_END_HEADERS, 1);
        b.put_slice(&[0x00, 0x01, b'a', 0x05]);
    });
    assert_eq!(code, Reason::COMPRESSION_ERROR);
}

#[test]
fn continuation_without_headers() {
    let code = connection_error(|b, _| {
        frame::put_head(b, 1, frame::CONTINUATION, frame::FLAG_END_HEADERS, 1);
        b.put_u8(0x82);
    });
    assert_eq!(code, Reason::PROTOCOL_ERROR);
}

#[test]
fn interleaved_header_block() {
    let code = connection_error(|b, enc| {
        let start = b.len();
        put_headers(b, enc, 1, RAW_REQUEST, false);
        // Clear END_HEADERS, then send something other than CONTINUATION.
        b[start + 4] &= !frame::FLAG_END_HEADERS;
        frame::put_ping(b, false, [0; 8]);
    });
    assert_eq!(code, Reason::PROTOCOL_ERROR);
}

#[test]
fn connection_window_overflow() {
    let code = connection_error(|b, _| frame::put_window_update(b, 0, frame::MAX_WINDOW));
    assert_eq!(code, Reason::FLOW_CONTROL_ERROR);
}

#[test]
fn first_frame_must_be_settings() {
    let server = Conn::new(Role::Server, Settings::default(), None);
    let mut b = BytesMut::new();
    b.extend_from_slice(frame::PREFACE);
    frame::put_ping(&mut b, false, [0; 8]);
    let (more, out) = feed(&server, &b);
    assert!(!more);
    assert_eq!(goaway(out.last().unwrap()).1, Reason::PROTOCOL_ERROR);
    assert!(matches!(
        server.poll_handshake(&mut cx()),
        Poll::Ready(Err(_))
    ));
}

#[test]
fn connection_error_fails_open_streams() {
    let server = raw_server(Settings::default());
    let mut enc = Encoder::new();
    let mut b = BytesMut::new();
    put_headers(&mut b, &mut enc, 1, RAW_REQUEST, false);
    assert!(server.recv(&mut b));
    let mut incoming = accept(&server).unwrap();
    frame::put_data(&mut b, 0, b"x", false, 16_384);
    assert!(!server.recv(&mut b));
    assert!(matches!(
        incoming.body.poll_recv(&mut cx()),
        Poll::Ready(Err(Error::Closed(Closed::ProtocolError {
            reason: Reason::PROTOCOL_ERROR,
            ..
        })))
    ));
    assert!(incoming.respond.poll_reset(&mut cx()).is_ready());
    assert!(matches!(server.poll_accept(&mut cx()), Poll::Ready(None)));
}

#[test]
fn a_failed_read_reaches_open_streams_as_the_source() {
    use std::error::Error as _;
    let server = raw_server(Settings::default());
    let mut enc = Encoder::new();
    let mut b = BytesMut::new();
    put_headers(&mut b, &mut enc, 1, RAW_REQUEST, false);
    assert!(server.recv(&mut b));
    let mut incoming = accept(&server).unwrap();
    server.read_ended(Some(std::io::Error::from(
        std::io::ErrorKind::ConnectionReset,
    )));
    let Poll::Ready(Err(error)) = incoming.body.poll_recv(&mut cx()) else {
        panic!("the stream did not fail");
    };
    assert!(matches!(error, Error::Closed(Closed::Read(_))), "{error:?}");
    let source = error.source().expect("the I/O error is the source");
    let io = source.downcast_ref::<std::io::Error>().unwrap();
    assert_eq!(io.kind(), std::io::ErrorKind::ConnectionReset);
    assert!(error
        .to_string()
        .starts_with("connection closed: read failed: "));
}

// ---------------------------------------------------------------------------------------------
// Malformed requests

/// Sends `head` from `client`; the server's RST_STREAM code, or `None` if it accepted it.
fn refusal(client: &Conn, server: &Conn, head: &Fields) -> Option<Reason> {
    let (mut fut, _send) = client.send_request(head, true).unwrap();
    let id = fut.stream_id();
    transfer(client, server);
    if let Some(mut incoming) = accept(server) {
        incoming
            .respond
            .send_response(&fields(&[(":status", "200")]), true)
            .unwrap();
        exchange(client, server);
        assert!(response(&mut fut).end);
        return None;
    }
    let back = transfer(server, client);
    let rst = resets(&back);
    assert_eq!(rst.len(), 1, "one RST_STREAM for stream {id}");
    assert_eq!(rst[0].0, id);
    match response_error(&mut fut) {
        Error::Reset(r) => assert_eq!(r, rst[0].1),
        e => panic!("unexpected {e}"),
    }
    assert!(server.failure().is_none(), "a stream error only");
    assert_eq!((client.open_streams(), server.open_streams()), (0, 0));
    Some(rst[0].1)
}

#[test]
fn malformed_requests_are_reset() {
    let (client, server) = default_pair();
    let malformed: &[(&str, Fields)] = &[
        ("uppercase name", request_with("X-Upper", "1")),
        (
            "connection header",
            request_with("connection", "keep-alive"),
        ),
        (
            "transfer-encoding",
            request_with("transfer-encoding", "chunked"),
        ),
        ("te other than trailers", {
            let mut f = fields(&REQUEST[..5]);
            f.push("te", "gzip");
            f
        }),
        (
            "missing :path",
            fields(&[(":method", "POST"), (":scheme", "http")]),
        ),
        (
            "empty :path",
            fields(&[(":method", "POST"), (":scheme", "http"), (":path", "")]),
        ),
        ("pseudo after regular", request_with(":authority", "late")),
        ("duplicate :method", {
            let mut f = fields(&[(":method", "GET")]);
            for (n, v) in REQUEST {
                f.push(n.to_string(), v.to_string());
            }
            f
        }),
        ("response pseudo in a request", {
            let mut f = fields(&[(":status", "200")]);
            for (n, v) in REQUEST {
                f.push(n.to_string(), v.to_string());
            }
            f
        }),
    ];
    for (why, head) in malformed {
        assert_eq!(
            refusal(&client, &server, head),
            Some(Reason::PROTOCOL_ERROR),
            "{why}"
        );
    }
    // The connection still works (the HPACK contexts stayed in step).
    assert_eq!(refusal(&client, &server, &request()), None);
}

#[test]
fn oversized_request_gets_431() {
    let server_settings = Settings {
        max_header_list: 1000,
        ..Settings::default()
    };
    let (client, server) = pair(Settings::default(), server_settings);
    let (mut fut, _send) = client
        .send_request(&request_with("x-big", "v".repeat(1000)), true)
        .unwrap();
    transfer(&client, &server);
    assert!(accept(&server).is_none());
    let down = transfer(&server, &client);
    assert_eq!(down.len(), 1);
    let (head, block) = &down[0];
    assert_eq!((head.kind, head.stream), (frame::HEADERS, 1));
    assert!(head.has(frame::FLAG_END_STREAM) && head.has(frame::FLAG_END_HEADERS));
    let mut decoded = Vec::new();
    Decoder::new(4096)
        .decode(&block.clone().into(), |f| {
            decoded.push((f.name.to_vec(), f.value.to_vec()))
        })
        .unwrap();
    assert_eq!(decoded, vec![(b":status".to_vec(), b"431".to_vec())]);
    let r = response(&mut fut);
    assert!(r.end);
    assert_eq!(r.head.get(b":status").map(|v| &v[..]), Some(&b"431"[..]));
    assert_eq!((client.open_streams(), server.open_streams()), (0, 0));
    // A request under the limit still goes through.
    assert_eq!(refusal(&client, &server, &request()), None);
}

#[test]
fn nul_cr_lf_rejected_at_every_position() {
    let (client, server) = default_pair();
    for bad in [b'\r', b'\n', 0] {
        for len in [1, 7, 8, 9, 16, 20] {
            for at in 0..len {
                let mut value = vec![b'a'; len];
                value[at] = bad;
                assert_eq!(
                    refusal(&client, &server, &request_with("x-v", value)),
                    Some(Reason::PROTOCOL_ERROR),
                    "byte {bad:#x} at {at} of {len}"
                );
            }
        }
    }
    // A CR in the middle of a long value.
    let mut value = vec![b'z'; 100];
    value[50] = b'\r';
    assert_eq!(
        refusal(&client, &server, &request_with("x-v", value)),
        Some(Reason::PROTOCOL_ERROR)
    );
    // Every other byte, at every offset, is fine (no false positives of the word-at-a-time
    // scan): 0x0c, 0x0e, 0x8d, 0x8a, 0x80, 0xff and the rest.
    let others: Vec<u8> = (1..=255u8).filter(|&b| b != b'\r' && b != b'\n').collect();
    for shift in 0..8 {
        let value = others[shift..].to_vec();
        assert_eq!(refusal(&client, &server, &request_with("x-v", value)), None);
    }
}

// ---------------------------------------------------------------------------------------------
// Concurrency limit

#[test]
fn max_concurrent_streams_refuses_and_blocks() {
    let server_settings = Settings {
        max_concurrent_streams: 1,
        ..Settings::default()
    };
    let (client, server) = pair(Settings::default(), server_settings);
    assert_eq!(client.peer_max_streams(), 1);
    assert!(client.poll_ready(&mut cx()).is_ready());
    let (mut fut1, mut send1) = client.send_request(&request(), false).unwrap();
    let flag = Arc::new(Flag::default());
    let waker = Waker::from(flag.clone());
    assert!(client
        .poll_ready(&mut Context::from_waker(&waker))
        .is_pending());

    // Opened anyway: the server refuses it.
    let (mut fut3, _send3) = client.send_request(&request(), false).unwrap();
    transfer(&client, &server);
    let down = transfer(&server, &client);
    assert_eq!(resets(&down), vec![(3, Reason::REFUSED_STREAM)]);
    assert!(matches!(
        response_error(&mut fut3),
        Error::Reset(Reason::REFUSED_STREAM)
    ));
    let mut in1 = accept(&server).unwrap();
    assert!(accept(&server).is_none());
    assert!(client.poll_ready(&mut cx()).is_pending());

    complete(&client, &server, &mut send1, &mut fut1, &mut in1);
    assert!(
        flag.0.load(Ordering::SeqCst),
        "poll_ready's waker was woken"
    );
    assert!(matches!(client.poll_ready(&mut cx()), Poll::Ready(Ok(()))));
    assert_eq!(refusal(&client, &server, &request()), None);
}

// ---------------------------------------------------------------------------------------------
// CONTINUATION

#[test]
fn big_header_blocks_use_continuation() {
    let big = |len: usize, seed: u8| -> Vec<u8> {
        (0..len).map(|i| b'a' + (i as u8 ^ seed) % 26).collect()
    };
    let settings = Settings {
        max_header_list: 64 << 10,
        ..Settings::default()
    };
    let (client, server) = pair(settings.clone(), settings);
    let head = request_with("x-big", big(20 << 10, 0));
    let (mut fut, _send) = client.send_request(&head, true).unwrap();
    let up = transfer(&client, &server);
    let kinds: Vec<_> = up.iter().map(|(h, _)| (h.kind, h.flags)).collect();
    assert_eq!(
        kinds,
        vec![
            (frame::HEADERS, frame::FLAG_END_STREAM),
            (frame::CONTINUATION, frame::FLAG_END_HEADERS)
        ]
    );
    let mut incoming = accept(&server).expect("the request was reassembled");
    assert_eq!(list(&incoming.head), list(&head));

    // And the other way, in three frames.
    let answer = {
        let mut f = fields(&[(":status", "200")]);
        f.push("x-big", big(40 << 10, 7));
        f
    };
    incoming.respond.send_response(&answer, true).unwrap();
    let down = transfer(&server, &client);
    let kinds: Vec<_> = down.iter().map(|(h, _)| (h.kind, h.flags)).collect();
    assert_eq!(
        kinds,
        vec![
            (frame::HEADERS, frame::FLAG_END_STREAM),
            (frame::CONTINUATION, 0),
            (frame::CONTINUATION, frame::FLAG_END_HEADERS)
        ]
    );
    let r = response(&mut fut);
    assert_eq!(list(&r.head), list(&answer));
}

#[test]
fn client_abandoning_a_response_cancels() {
    let (client, server) = default_pair();
    // A unary request, sent in full.
    let (mut fut, mut send) = client.send_request(&request(), false).unwrap();
    send.send_data(b"req", true).unwrap();
    exchange(&client, &server);
    let mut incoming = accept(&server).unwrap();
    let _out = incoming
        .respond
        .send_response(&fields(&[(":status", "200")]), false)
        .unwrap();
    exchange(&client, &server);
    let r = response(&mut fut);
    // The caller gives up before the response ended.
    drop((r, fut, send));
    let up = transfer(&client, &server);
    assert_eq!(resets(&up), vec![(1, Reason::CANCEL)]);
    assert_eq!(
        incoming.respond.poll_reset(&mut cx()),
        Poll::Ready(Reason::CANCEL)
    );
}

#[test]
fn server_answered_in_full_discards_the_rest_of_the_request() {
    let (client, server) = default_pair();
    let (mut fut, mut send) = client.send_request(&request(), false).unwrap();
    exchange(&client, &server);
    let mut incoming = accept(&server).unwrap();
    incoming
        .respond
        .send_response(&fields(&[(":status", "200")]), true)
        .unwrap();
    drop(incoming);
    // No reset: the stream stays open for the rest of the request (RFC 9113 §8.1 allows
    // either; reading it on is what lets the server check it, and h2spec expects it).
    let down = transfer(&server, &client);
    assert!(resets(&down).is_empty());
    assert!(response(&mut fut).end);
    assert_eq!(server.open_streams(), 1);
    // What the client still sends is read, discarded, and its window given back.
    let n = granted(&mut send);
    send.send_data(&vec![7; 40_000], false).unwrap();
    let up = transfer(&client, &server);
    assert!(up.iter().all(|(h, _)| h.kind != frame::RST_STREAM));
    let down = transfer(&server, &client);
    let updates: u32 = down
        .iter()
        .filter(|(h, _)| h.kind == frame::WINDOW_UPDATE && h.stream == 1)
        .map(|(_, p)| u32::from_be_bytes([p[0], p[1], p[2], p[3]]))
        .sum();
    assert!(
        updates >= 32_767,
        "stream window given back: {updates} of {n}"
    );
    send.send_data(b"end", true).unwrap();
    exchange(&client, &server);
    assert_eq!(server.open_streams(), 0);
    assert_eq!(client.open_streams(), 0);
}

#[test]
fn server_answered_in_full_stops_a_request_longer_than_a_window() {
    let (client, server) = default_pair();
    let (_fut, mut send) = client.send_request(&request(), false).unwrap();
    exchange(&client, &server);
    let mut incoming = accept(&server).unwrap();
    incoming
        .respond
        .send_response(&fields(&[(":status", "200")]), true)
        .unwrap();
    drop(incoming);
    exchange(&server, &client);
    // A window and a bit, in pieces as the windows allow.
    let (mut sent, mut down) = (0, Vec::new());
    while sent <= frame::DEFAULT_WINDOW as usize {
        let Poll::Ready(Ok(n)) = capacity(&mut send) else {
            break;
        };
        let n = n.min(16_384);
        send.send_data(&vec![1; n], false).unwrap();
        sent += n;
        transfer(&client, &server);
        down.extend(transfer(&server, &client));
    }
    assert!(
        sent > frame::DEFAULT_WINDOW as usize,
        "windows were given back"
    );
    assert_eq!(resets(&down), vec![(1, Reason::NO_ERROR)]);
    assert_eq!(server.open_streams(), 0);
}

#[test]
fn peer_initial_window_change_adjusts_open_streams() {
    let (client, _server) = default_pair();
    let (_fut, mut send) = client.send_request(&request(), false).unwrap();
    assert_eq!(granted(&mut send), frame::DEFAULT_WINDOW as usize);
    send.send_data(&[0; 1000], false).unwrap();
    let mut b = BytesMut::new();
    frame::put_settings(&mut b, &[(frame::SETTINGS_INITIAL_WINDOW_SIZE, 1100)]);
    assert!(client.recv(&mut b));
    assert_eq!(granted(&mut send), 100);
    frame::put_settings(&mut b, &[(frame::SETTINGS_INITIAL_WINDOW_SIZE, 900)]);
    assert!(client.recv(&mut b));
    assert!(capacity(&mut send).is_pending(), "the window is negative");
    // New streams start with the new value.
    let (_fut, mut send3) = client.send_request(&request(), false).unwrap();
    assert_eq!(granted(&mut send3), 900);
}

#[test]
fn observer_hears_frames_and_goaway() {
    use std::cell::RefCell;
    use std::rc::Rc;

    #[derive(Default)]
    struct Log(RefCell<Vec<String>>);
    impl super::Observer for Log {
        fn read(&self, f: &Head) {
            self.0
                .borrow_mut()
                .push(format!("read {} {}", f.kind, f.stream));
        }
        fn read_goaway(&self, last: u32, code: u32) {
            self.0.borrow_mut().push(format!("goaway {last} {code}"));
        }
        fn written(&self, f: &Head) {
            self.0
                .borrow_mut()
                .push(format!("wrote {} {}", f.kind, f.stream));
        }
    }
    let log = Rc::new(Log::default());
    let client = Conn::new(Role::Client, Settings::default(), Some(log.clone()));
    let server = Conn::new(Role::Server, Settings::default(), None);
    exchange(&client, &server);
    let (_fut, mut send) = client.send_request(&request(), false).unwrap();
    send.send_data(b"x", false).unwrap();
    exchange(&client, &server);
    server.abrupt_shutdown(Reason::ENHANCE_YOUR_CALM, b"");
    exchange(&client, &server);
    let log = log.0.borrow();
    for line in [
        "read 4 0",
        "wrote 1 1",
        "wrote 0 1",
        "read 7 0",
        "goaway 1 11",
    ] {
        assert!(log.iter().any(|l| l == line), "{line} missing from {log:?}");
    }
}

#[test]
fn peer_header_table_size_reaches_the_encoder() {
    let (client, server) = default_pair();
    // Sends a request from the client; returns its HEADERS payload after the server took it.
    let send = |head: &Fields| -> Vec<u8> {
        let (_fut, _send) = client.send_request(head, true).unwrap();
        let mut out = take_output(&client);
        let sent = frames(&out);
        assert!(server.recv(&mut out));
        let incoming = accept(&server).expect("the server decoded the request");
        assert_eq!(list(&incoming.head), list(head));
        take_output(&server);
        let headers: Vec<_> = sent
            .into_iter()
            .filter(|(h, _)| h.kind == frame::HEADERS)
            .collect();
        assert_eq!(headers.len(), 1);
        headers.into_iter().next().unwrap().1
    };
    let first = send(&request());
    let second = send(&request());
    assert!(first.len() > 40);
    assert_eq!(second.len(), REQUEST.len(), "one index per field");
    // The peer's SETTINGS say 0: the next block says so first, and indexes nothing.
    let mut b = BytesMut::new();
    frame::put_settings(&mut b, &[(frame::SETTINGS_HEADER_TABLE_SIZE, 0)]);
    assert!(client.recv(&mut b));
    let third = send(&request());
    assert_eq!(third[0], 0x20);
    // The size update, and content-type's name index (31) takes two bytes with a 4-bit prefix.
    assert_eq!(third.len(), first.len() + 2, "literals, as the first time");
    let fourth = send(&request());
    assert_eq!(fourth.len(), third.len() - 1);
    // Back to 4096: announced, and indexing again.
    frame::put_settings(&mut b, &[(frame::SETTINGS_HEADER_TABLE_SIZE, 4096)]);
    assert!(client.recv(&mut b));
    let fifth = send(&request());
    assert_eq!(&fifth[..3], &[0x3f, 0xe1, 0x1f]);
    assert_eq!(send(&request()).len(), REQUEST.len());
}
