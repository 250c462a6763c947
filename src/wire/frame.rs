//! HTTP/2 frames on the wire (RFC 9113 §4, §6): the 9-byte header, and writers that append
//! whole frames to a connection's output buffer. Parsing of payloads lives with the
//! connection's receive path (`recv.rs`), which knows what each frame means to it.

use bytes::{BufMut, BytesMut};

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const PRIORITY: u8 = 0x2;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PUSH_PROMISE: u8 = 0x5;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;

pub const FLAG_END_STREAM: u8 = 0x1;
pub const FLAG_ACK: u8 = 0x1;
pub const FLAG_END_HEADERS: u8 = 0x4;
pub const FLAG_PADDED: u8 = 0x8;
pub const FLAG_PRIORITY: u8 = 0x20;

pub const HEADER_LEN: usize = 9;
/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// SETTINGS_MAX_FRAME_SIZE's initial value: what we accept, and what we send until the peer
/// raises it.
pub const DEFAULT_MAX_FRAME: u32 = 16_384;
/// The initial flow-control window of every stream and of the connection (RFC 9113 §6.9.2).
pub const DEFAULT_WINDOW: u32 = 65_535;
/// The largest flow-control window (RFC 9113 §6.9.1).
pub const MAX_WINDOW: u32 = (1 << 31) - 1;

/// SETTINGS identifiers (RFC 9113 §6.5.2).
pub const SETTINGS_HEADER_TABLE_SIZE: u16 = 0x1;
pub const SETTINGS_ENABLE_PUSH: u16 = 0x2;
pub const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
pub const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
pub const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;
pub const SETTINGS_MAX_HEADER_LIST_SIZE: u16 = 0x6;

/// A frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub len: u32,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

impl Head {
    /// Reads a header from the first 9 bytes of `b` (the caller checked there are 9).
    #[inline]
    pub fn parse(b: &[u8]) -> Head {
        Head {
            len: u32::from_be_bytes([0, b[0], b[1], b[2]]),
            kind: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & MAX_WINDOW,
        }
    }

    #[inline]
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// Appends a frame header.
#[inline]
pub fn put_head(out: &mut BytesMut, len: usize, kind: u8, flags: u8, stream: u32) {
    let len = len as u32;
    out.put_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
    out.put_u32(stream);
}

/// Appends SETTINGS with the given parameters.
pub fn put_settings(out: &mut BytesMut, params: &[(u16, u32)]) {
    put_head(out, params.len() * 6, SETTINGS, 0, 0);
    for &(id, value) in params {
        out.put_u16(id);
        out.put_u32(value);
    }
}

pub fn put_settings_ack(out: &mut BytesMut) {
    put_head(out, 0, SETTINGS, FLAG_ACK, 0);
}

pub fn put_window_update(out: &mut BytesMut, stream: u32, increment: u32) {
    put_head(out, 4, WINDOW_UPDATE, 0, stream);
    out.put_u32(increment);
}

pub fn put_ping(out: &mut BytesMut, ack: bool, payload: [u8; 8]) {
    put_head(out, 8, PING, if ack { FLAG_ACK } else { 0 }, 0);
    out.put_slice(&payload);
}

pub fn put_rst(out: &mut BytesMut, stream: u32, code: u32) {
    put_head(out, 4, RST_STREAM, 0, stream);
    out.put_u32(code);
}

pub fn put_goaway(out: &mut BytesMut, last_stream: u32, code: u32, debug: &[u8]) {
    put_head(out, 8 + debug.len(), GOAWAY, 0, 0);
    out.put_u32(last_stream);
    out.put_u32(code);
    out.put_slice(debug);
}

/// Appends DATA frames carrying `data`, split at `max_frame`; END_STREAM on the last if `end`.
pub fn put_data(out: &mut BytesMut, stream: u32, data: &[u8], end: bool, max_frame: usize) {
    if data.is_empty() {
        put_head(out, 0, DATA, if end { FLAG_END_STREAM } else { 0 }, stream);
        return;
    }
    out.reserve(data.len() + HEADER_LEN * (data.len() / max_frame + 1));
    let mut chunks = data.chunks(max_frame).peekable();
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        let flags = if end && last { FLAG_END_STREAM } else { 0 };
        put_head(out, chunk.len(), DATA, flags, stream);
        out.put_slice(chunk);
    }
}

/// Turns an encoded header block, already appended to `out` after a 9-byte gap at `start`,
/// into HEADERS (+ CONTINUATION frames if it exceeds `max_frame`).
pub fn frame_header_block(
    out: &mut BytesMut,
    start: usize,
    stream: u32,
    end_stream: bool,
    max_frame: usize,
) {
    let block_len = out.len() - start - HEADER_LEN;
    let end_flag = if end_stream { FLAG_END_STREAM } else { 0 };
    if block_len <= max_frame {
        write_head_at(
            out,
            start,
            block_len,
            HEADERS,
            end_flag | FLAG_END_HEADERS,
            stream,
        );
        return;
    }
    // Rare (header blocks over 16 KiB): split the block into CONTINUATION frames.
    let block = out.split_off(start + HEADER_LEN);
    out.truncate(start);
    let mut chunks = block.chunks(max_frame).peekable();
    let mut first = true;
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        let (kind, mut flags) = if first {
            (HEADERS, end_flag)
        } else {
            (CONTINUATION, 0)
        };
        if last {
            flags |= FLAG_END_HEADERS;
        }
        put_head(out, chunk.len(), kind, flags, stream);
        out.put_slice(chunk);
        first = false;
    }
}

fn write_head_at(out: &mut BytesMut, at: usize, len: usize, kind: u8, flags: u8, stream: u32) {
    let len = len as u32;
    let s = stream.to_be_bytes();
    out[at..at + HEADER_LEN].copy_from_slice(&[
        (len >> 16) as u8,
        (len >> 8) as u8,
        len as u8,
        kind,
        flags,
        s[0],
        s[1],
        s[2],
        s[3],
    ]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_round_trip() {
        let mut out = BytesMut::new();
        put_head(&mut out, 0x01_02_03, HEADERS, FLAG_END_HEADERS, 0x8000_0005);
        let h = Head::parse(&out);
        // The reserved bit is ignored on receipt.
        assert_eq!(
            h,
            Head {
                len: 0x01_02_03,
                kind: HEADERS,
                flags: FLAG_END_HEADERS,
                stream: 5
            }
        );
    }

    #[test]
    fn big_header_blocks_use_continuation() {
        let mut out = BytesMut::new();
        out.put_slice(b"xx");
        let start = out.len();
        out.put_slice(&[0; HEADER_LEN]);
        out.put_slice(&[7u8; 40]);
        frame_header_block(&mut out, start, 3, true, 16);
        let mut at = start;
        let mut frames = vec![];
        while at < out.len() {
            let h = Head::parse(&out[at..]);
            frames.push((h.kind, h.flags, h.len));
            at += HEADER_LEN + h.len as usize;
        }
        assert_eq!(
            frames,
            vec![
                (HEADERS, FLAG_END_STREAM, 16),
                (CONTINUATION, 0, 16),
                (CONTINUATION, FLAG_END_HEADERS, 8)
            ]
        );
    }

    #[test]
    fn data_is_split_at_the_frame_size() {
        let mut out = BytesMut::new();
        put_data(&mut out, 1, &[1; 20], true, 8);
        assert_eq!(out.len(), 3 * HEADER_LEN + 20);
        let last = Head::parse(&out[2 * HEADER_LEN + 16..]);
        assert_eq!((last.len, last.flags), (4, FLAG_END_STREAM));
    }
}
