//! HTTP/2 frame headers and the frame writers (`ringway::wire::frame`).
//!
//! 1. Walks the whole input frame by frame, as `Conn::recv` does: `Head::parse` on each 9
//!    bytes, then skip the payload, stopping at a partial frame. Each parsed header must
//!    match the bytes (24-bit length, type, flags, stream id with the reserved bit cleared)
//!    and write back with `put_head` to the same 9 bytes, reserved bit aside.
//! 2. Round-trips the writers, with parameters from the input's first bytes and the rest of
//!    the input as the payload: `put_data` and `frame_header_block` (the CONTINUATION
//!    splitting) at a maximum frame size of 1..=255 or 16,384 must produce frames no larger
//!    than that, with END_STREAM / END_HEADERS on the right frames only, whose payloads
//!    concatenate to the input; `frame_header_block` must leave what precedes the block alone.
//!    The control-frame writers (SETTINGS, PING, GOAWAY, RST_STREAM, WINDOW_UPDATE) must write
//!    frames that parse back to what was written.
#![no_main]

use bytes::{BufMut, BytesMut};
use libfuzzer_sys::fuzz_target;
use ringway::wire::frame::{self, Head};

/// Splits `out` into frames; panics on a partial one.
fn split(mut out: &[u8]) -> Vec<(Head, &[u8])> {
    let mut frames = Vec::new();
    while !out.is_empty() {
        assert!(out.len() >= frame::HEADER_LEN, "partial frame header");
        let head = Head::parse(out);
        let end = frame::HEADER_LEN + head.len as usize;
        assert!(out.len() >= end, "partial frame {head:?}");
        frames.push((head, &out[frame::HEADER_LEN..end]));
        out = &out[end..];
    }
    frames
}

/// Part 1: the input as a stream of frames.
fn walk(data: &[u8]) {
    let mut b = data;
    while b.len() >= frame::HEADER_LEN {
        let head = Head::parse(b);
        assert_eq!(head.len, u32::from_be_bytes([0, b[0], b[1], b[2]]));
        assert_eq!((head.kind, head.flags), (b[3], b[4]));
        assert_eq!(
            head.stream,
            u32::from_be_bytes([b[5] & 0x7f, b[6], b[7], b[8]])
        );
        assert!(head.stream <= frame::MAX_WINDOW);
        for bit in 0..8 {
            assert_eq!(head.has(1 << bit), b[4] & (1 << bit) != 0);
        }
        let mut again = BytesMut::new();
        frame::put_head(
            &mut again,
            head.len as usize,
            head.kind,
            head.flags,
            head.stream,
        );
        let mut expected = b[..frame::HEADER_LEN].to_vec();
        expected[5] &= 0x7f;
        assert_eq!(&again[..], &expected[..]);
        let total = frame::HEADER_LEN + head.len as usize;
        if b.len() < total {
            return;
        }
        b = &b[total..];
    }
}

/// Part 2: the writers.
fn writers(data: &[u8]) {
    let byte = |i: usize| data.get(i).copied().unwrap_or(0);
    let max_frame = match byte(0) {
        0 => frame::DEFAULT_MAX_FRAME as usize,
        n => n as usize,
    };
    let end = byte(1) & 1 != 0;
    let stream = u32::from_be_bytes([byte(2), byte(3), byte(4), byte(5)]) & frame::MAX_WINDOW;
    let payload = data.get(6..).unwrap_or_default();

    // DATA.
    let mut out = BytesMut::new();
    frame::put_data(&mut out, stream, payload, end, max_frame);
    let frames = split(&out);
    assert!(!frames.is_empty());
    let mut joined = Vec::new();
    for (i, (head, p)) in frames.iter().enumerate() {
        let last = i == frames.len() - 1;
        assert_eq!((head.kind, head.stream), (frame::DATA, stream));
        assert!(head.len as usize <= max_frame, "{head:?} over {max_frame}");
        assert!(!p.is_empty() || payload.is_empty(), "empty DATA frame");
        let flags = if end && last {
            frame::FLAG_END_STREAM
        } else {
            0
        };
        assert_eq!(head.flags, flags, "frame {i} of {}", frames.len());
        joined.extend_from_slice(p);
    }
    assert_eq!(joined, payload);

    // HEADERS + CONTINUATION, after some bytes already in the buffer.
    let before = &payload[..payload.len().min(3)];
    let mut out = BytesMut::new();
    out.put_slice(before);
    let start = out.len();
    out.put_slice(&[0; frame::HEADER_LEN]);
    out.put_slice(payload);
    frame::frame_header_block(&mut out, start, stream, end, max_frame);
    assert_eq!(&out[..start], before, "bytes before the block changed");
    let frames = split(&out[start..]);
    let mut joined = Vec::new();
    for (i, (head, p)) in frames.iter().enumerate() {
        let (first, last) = (i == 0, i == frames.len() - 1);
        let kind = if first {
            frame::HEADERS
        } else {
            frame::CONTINUATION
        };
        assert_eq!((head.kind, head.stream), (kind, stream));
        assert!(head.len as usize <= max_frame, "{head:?} over {max_frame}");
        let mut flags = if last { frame::FLAG_END_HEADERS } else { 0 };
        if first && end {
            flags |= frame::FLAG_END_STREAM;
        }
        assert_eq!(head.flags, flags, "frame {i} of {}", frames.len());
        joined.extend_from_slice(p);
    }
    assert_eq!(joined, payload);

    // Control frames.
    let word = |i: usize| u32::from_be_bytes([byte(i), byte(i + 1), byte(i + 2), byte(i + 3)]);
    let mut out = BytesMut::new();
    let params: Vec<(u16, u32)> = payload
        .chunks_exact(6)
        .take(8)
        .map(|c| {
            (
                u16::from_be_bytes([c[0], c[1]]),
                u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
            )
        })
        .collect();
    frame::put_settings(&mut out, &params);
    frame::put_settings_ack(&mut out);
    let ping: [u8; 8] = std::array::from_fn(|i| byte(2 + i));
    frame::put_ping(&mut out, end, ping);
    frame::put_rst(&mut out, stream, word(1));
    frame::put_window_update(&mut out, stream, word(2) & frame::MAX_WINDOW);
    let debug = &payload[..payload.len().min(40)];
    frame::put_goaway(&mut out, stream, word(3), debug);
    let frames = split(&out);
    assert_eq!(frames.len(), 6);
    let (h, p) = frames[0];
    assert_eq!((h.kind, h.flags, h.stream), (frame::SETTINGS, 0, 0));
    assert_eq!(p.len(), params.len() * 6);
    for (c, &(id, value)) in p.chunks(6).zip(&params) {
        assert_eq!(c[..2], id.to_be_bytes());
        assert_eq!(c[2..], value.to_be_bytes());
    }
    let (h, p) = frames[1];
    assert_eq!(
        (h.kind, h.flags, h.stream, p.len()),
        (frame::SETTINGS, frame::FLAG_ACK, 0, 0)
    );
    let (h, p) = frames[2];
    let ack = if end { frame::FLAG_ACK } else { 0 };
    assert_eq!(
        (h.kind, h.flags, h.stream, p),
        (frame::PING, ack, 0, &ping[..])
    );
    let (h, p) = frames[3];
    assert_eq!(
        (h.kind, h.stream, p),
        (frame::RST_STREAM, stream, &word(1).to_be_bytes()[..])
    );
    let (h, p) = frames[4];
    let inc = (word(2) & frame::MAX_WINDOW).to_be_bytes();
    assert_eq!(
        (h.kind, h.stream, p),
        (frame::WINDOW_UPDATE, stream, &inc[..])
    );
    let (h, p) = frames[5];
    assert_eq!((h.kind, h.stream), (frame::GOAWAY, 0));
    assert_eq!(p[..4], stream.to_be_bytes());
    assert_eq!(p[4..8], word(3).to_be_bytes());
    assert_eq!(&p[8..], debug);
}

fuzz_target!(|data: &[u8]| {
    walk(data);
    writers(data);
});
