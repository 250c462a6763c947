//! Watching HTTP/2 frames go by, for what h2 does not tell: PINGs a client sends (h2 answers
//! them itself) and the last stream id of a GOAWAY a target sends (h2 only fails the streams).
//!
//! [`Watched`] wraps a connection's I/O. It parses frame *headers* as bytes pass in either
//! direction — no copy, no buffering, a few comparisons per frame — and reports them to an
//! [`Observer`]. It changes nothing on the wire, with one exception used to end a connection:
//! once [`Observer::goaway`] hands it a frame, it writes that frame at the next frame boundary
//! of the outgoing stream and swallows whatever the connection writes after it (used to send
//! GOAWAY ENHANCE_YOUR_CALM with the debug data `too_many_pings`, which h2 cannot send).

use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const FLAG_ACK: u8 = 0x1;

/// The client connection preface (RFC 9113 §3.4), which precedes the client's first frame.
pub const CLIENT_PREFACE: usize = 24;

/// A frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub len: u32,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

/// What a connection's owner wants to hear. All methods default to doing nothing.
pub trait Observer {
    /// Bytes arrived from the peer (called once per read, before their frames).
    fn read_bytes(&self, _n: usize) {}
    /// A frame header was read from the peer.
    fn read(&self, _frame: &Frame) {}
    /// The peer sent GOAWAY: the last stream id it processed and its error code.
    fn read_goaway(&self, _last_stream: u32, _code: u32) {}
    /// A frame header was written to the peer.
    fn written(&self, _frame: &Frame) {}
    /// A final frame to send in place of everything else from now on, if any.
    fn goaway(&self) -> Option<Vec<u8>> {
        None
    }
}

/// Tracks frame boundaries in one direction.
#[derive(Debug, Default)]
struct Cursor {
    /// Preface bytes still to skip.
    preface: usize,
    header: [u8; 9],
    /// Header bytes seen of the current frame.
    have: usize,
    /// Payload bytes of the current frame still to pass.
    remaining: usize,
    /// The first 8 payload bytes of a GOAWAY being read, and how many are in.
    goaway: Option<([u8; 8], usize)>,
}

impl Cursor {
    fn at_boundary(&self) -> bool {
        self.preface == 0 && self.have == 0 && self.remaining == 0 && self.goaway.is_none()
    }

    fn feed(
        &mut self,
        mut bytes: &[u8],
        mut on_frame: impl FnMut(&Frame),
        mut on_goaway: impl FnMut(u32, u32),
    ) {
        while !bytes.is_empty() {
            if self.preface > 0 {
                let n = self.preface.min(bytes.len());
                self.preface -= n;
                bytes = &bytes[n..];
                continue;
            }
            if let Some((buf, got)) = &mut self.goaway {
                let n = (8 - *got).min(bytes.len()).min(self.remaining);
                buf[*got..*got + n].copy_from_slice(&bytes[..n]);
                *got += n;
                self.remaining -= n;
                bytes = &bytes[n..];
                if *got == 8 {
                    let last = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) & 0x7fff_ffff;
                    let code = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
                    self.goaway = None;
                    on_goaway(last, code);
                } else if self.remaining == 0 {
                    // A GOAWAY shorter than the spec's 8 bytes: h2 will reject it; ignore.
                    self.goaway = None;
                }
                continue;
            }
            if self.remaining > 0 {
                let n = self.remaining.min(bytes.len());
                self.remaining -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (9 - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == 9 {
                self.have = 0;
                let h = &self.header;
                let frame = Frame {
                    len: u32::from_be_bytes([0, h[0], h[1], h[2]]),
                    kind: h[3],
                    flags: h[4],
                    stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
                };
                self.remaining = frame.len as usize;
                if frame.kind == GOAWAY && frame.len >= 8 {
                    self.goaway = Some(([0; 8], 0));
                }
                on_frame(&frame);
            }
        }
    }

    /// How many of the next bytes may pass before the current frame's header is complete —
    /// `usize::MAX` when the header is already known (or none is in progress).
    fn until_header_known(&self) -> usize {
        if self.have > 0 {
            9 - self.have
        } else {
            usize::MAX
        }
    }

    /// Bytes left in the current frame once its header is known.
    fn until_boundary(&self) -> usize {
        self.remaining
    }
}

/// A connection's I/O with its frames watched. See the module doc.
pub struct Watched<T, O> {
    io: T,
    observer: Rc<O>,
    read: Cursor,
    write: Cursor,
    /// A final frame being written, and how much of it is out.
    last_words: Option<(Vec<u8>, usize)>,
    /// The final frame is out: everything written after it is dropped.
    silenced: bool,
}

impl<T, O: Observer> Watched<T, O> {
    /// Wraps a server-side connection: the peer (a client) starts with the preface.
    pub fn server(io: T, observer: Rc<O>) -> Self {
        Watched::new(io, observer, CLIENT_PREFACE, 0)
    }

    /// Wraps a client-side connection: we send the preface.
    pub fn client(io: T, observer: Rc<O>) -> Self {
        Watched::new(io, observer, 0, CLIENT_PREFACE)
    }

    fn new(io: T, observer: Rc<O>, read_preface: usize, write_preface: usize) -> Self {
        Watched {
            io,
            observer,
            read: Cursor {
                preface: read_preface,
                ..Cursor::default()
            },
            write: Cursor {
                preface: write_preface,
                ..Cursor::default()
            },
            last_words: None,
            silenced: false,
        }
    }
}

impl<T: AsyncRead + Unpin, O: Observer> AsyncRead for Watched<T, O> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        let observer = &this.observer;
        let n = buf.filled().len() - before;
        if n > 0 {
            observer.read_bytes(n);
        }
        this.read.feed(
            &buf.filled()[before..],
            |f| observer.read(f),
            |last, code| observer.read_goaway(last, code),
        );
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin, O: Observer> Watched<T, O> {
    /// Writes the final frame, if one is due and the outgoing stream is at a frame boundary.
    /// `Ready(true)` once it is out (writes are then swallowed).
    fn poll_last_words(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        if self.silenced {
            return Poll::Ready(Ok(true));
        }
        if self.last_words.is_none() {
            if !self.write.at_boundary() {
                return Poll::Ready(Ok(false));
            }
            match self.observer.goaway() {
                Some(frame) => self.last_words = Some((frame, 0)),
                None => return Poll::Ready(Ok(false)),
            }
        }
        if let Some((frame, sent)) = &mut self.last_words {
            while *sent < frame.len() {
                let n = ready!(Pin::new(&mut self.io).poll_write(cx, &frame[*sent..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                *sent += n;
            }
        }
        ready!(Pin::new(&mut self.io).poll_flush(cx))?;
        self.silenced = true;
        Poll::Ready(Ok(true))
    }

    fn wrote(&mut self, bytes: &[u8]) {
        let observer = &self.observer;
        self.write.feed(bytes, |f| observer.written(f), |_, _| {});
    }

    /// How much of `len` may be written before the next point where a final frame could be
    /// due: the rest of the current frame once its header is known.
    fn writable_now(&self, len: usize) -> usize {
        if self.observer.goaway().is_none() {
            return len;
        }
        let header = self.write.until_header_known();
        if header != usize::MAX {
            return len.min(header);
        }
        len.min(self.write.until_boundary().max(1))
    }
}

impl<T: AsyncWrite + Unpin, O: Observer> AsyncWrite for Watched<T, O> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if ready!(this.poll_last_words(cx))? {
            return Poll::Ready(Ok(buf.len()));
        }
        let allowed = this.writable_now(buf.len());
        let n = ready!(Pin::new(&mut this.io).poll_write(cx, &buf[..allowed]))?;
        this.wrote(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.observer.goaway().is_some() || this.silenced {
            // Ending: one slice at a time, so the final frame lands on a boundary.
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &b[..]);
            return Pin::new(this).poll_write(cx, first);
        }
        let n = ready!(Pin::new(&mut this.io).poll_write_vectored(cx, bufs))?;
        let mut left = n;
        for b in bufs {
            if left == 0 {
                break;
            }
            let take = left.min(b.len());
            let observer = &this.observer;
            this.write
                .feed(&b[..take], |f| observer.written(f), |_, _| {});
            left -= take;
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_last_words(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_last_words(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

/// A GOAWAY frame: last stream id, error code, debug data.
pub fn goaway_frame(last_stream: u32, code: u32, debug: &[u8]) -> Vec<u8> {
    let len = 8 + debug.len() as u32;
    let mut f = Vec::with_capacity(9 + len as usize);
    f.extend_from_slice(&len.to_be_bytes()[1..]);
    f.push(GOAWAY);
    f.push(0);
    f.extend_from_slice(&0u32.to_be_bytes());
    f.extend_from_slice(&(last_stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(&code.to_be_bytes());
    f.extend_from_slice(debug);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
        f.push(kind);
        f.push(flags);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn headers_are_seen_across_any_split() {
        let mut wire = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        wire.extend(frame(4, 0, 0, &[0; 6]));
        wire.extend(frame(PING, 0, 0, &[1; 8]));
        wire.extend(frame(HEADERS, 4, 1, &[7; 20]));
        wire.extend(frame(DATA, 1, 1, &[9; 300]));
        wire.extend(goaway_frame(5, 0xb, b"too_many_pings"));
        for split in [1, 2, 5, 9, 10, 17, 64, wire.len()] {
            let mut c = Cursor {
                preface: CLIENT_PREFACE,
                ..Cursor::default()
            };
            let mut seen = Vec::new();
            let mut goaways = Vec::new();
            for chunk in wire.chunks(split) {
                c.feed(
                    chunk,
                    |f| seen.push((f.kind, f.flags, f.stream, f.len)),
                    |l, e| goaways.push((l, e)),
                );
            }
            assert_eq!(
                seen,
                [
                    (4, 0, 0, 6),
                    (PING, 0, 0, 8),
                    (HEADERS, 4, 1, 20),
                    (DATA, 1, 1, 300),
                    (GOAWAY, 0, 0, 22)
                ],
                "split {split}"
            );
            assert_eq!(goaways, [(5, 0xb)], "split {split}");
            assert!(c.at_boundary());
        }
    }
}
