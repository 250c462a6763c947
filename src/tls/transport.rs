//! rustls on a connection's own buffers: the handshake on the socket, then a
//! [`Transport`] for [`wire::io::drive`](crate::wire::io::drive) that decrypts what the read
//! loop read and encrypts what the write loop gathered.
//!
//! # Which rustls API, and where the bytes are copied
//!
//! This is rustls's buffered connection (`ServerConnection`/`ClientConnection`) used as a
//! sans-I/O object — `read_tls` from our read buffer, `write_tls` into our write buffer — not
//! the unbuffered API (`UnbufferedServerConnection`). Why: [`Conn::recv`](crate::wire::Conn)
//! takes its frames out of one contiguous `BytesMut` (frames become zero-copy `Bytes`), and
//! the unbuffered API decrypts each record in place with its 5-byte header and 16-byte tag
//! still between records, so handing plaintext to `recv` needs a compaction copy anyway; the
//! buffered API's state machine also owns the handshake flights, alerts and key updates that
//! the unbuffered one leaves to the caller. The cost, per direction:
//!
//! - read: socket → our read buffer (the kernel's copy), → rustls's deframer buffer
//!   (`read_tls`, one copy), decrypted in place there, → our plaintext buffer (one copy via
//!   `BufRead::fill_buf`), whose whole frames `Conn::recv` takes without copying;
//! - write: `Conn::poll_output`'s batch (many HTTP/2 frames) → encrypted by rustls into
//!   full-size records (16 KiB of plaintext each, one allocation per record) → our write
//!   buffer (`write_tls`, one copy) → the socket, one `write` per batch.
//!
//! Measured with `bench/profile --tls` against `--h2load` (callgrind, 20000 unary calls, 64 in
//! flight on one connection): 20,350 instructions per call over TLS 1.3 against 19,209 in
//! plaintext, +1,141 (+5.9%); see the README, "TLS".
//!
//! # Measured against the unbuffered API
//!
//! The same transport was built on `UnbufferedServerConnection`/`UnbufferedClientConnection`
//! (2026-12-02, four commits on a branch `unbuf`, not merged) and measured the same way:
//! 20,280 instructions per call against this one's 20,350 (−0.3%, within run-to-run noise).
//! rustls 0.23.46's unbuffered API copies as much as the buffered one: `ReadTraffic` decrypts
//! in place in the caller's buffer but hands the plaintext out of a `Vec` it pops from its own
//! queue (`next_record`; its comment: "requires in-place decryption", a TODO), and
//! `WriteTraffic::encrypt` seals each record into its own `Vec` before copying it into the
//! caller's buffer. It also needs more of our code where a mistake is a panic: while a
//! post-handshake message spans records, rustls keeps positions into the caller's buffer, so
//! every call must pass the same unread tail back; alerts have to be fished out of the output
//! by content type. Same copies, more risk: the buffered API stays. One copy fewer per
//! direction would take rustls decrypting into and encrypting from the caller's buffers, or
//! kernel TLS (not tried).
//!
//! # Idle memory
//!
//! The read loop keeps its small idle buffer: the transport tracks TLS record boundaries
//! itself ([`Records`]), so it asks for a bigger read only while a record is incomplete.
//! The plaintext buffer is let go whenever it is empty. What rustls holds per connection
//! (its state, the deframer's buffer once it has grown) is rustls's.

use std::cell::RefCell;
use std::fmt;
use std::io::{self, BufRead, Write};
use std::rc::Rc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use rustls::{AlertDescription, Connection, HandshakeKind};

use super::Failure;
use crate::wire::io::Transport;

/// Read size during the handshake: a client's certificate chain fits; let go afterwards.
const HANDSHAKE_READ: usize = 16 << 10;
/// The largest TLS record on the wire (2^14 plaintext + 2048 of expansion, RFC 8446 §5.2) plus
/// its header: the most the read loop is asked to make room for at once.
const MAX_RECORD: usize = (16 << 10) + 2048 + 5;

/// Why a TLS handshake failed.
#[derive(Debug, Clone)]
pub enum HandshakeError {
    /// The first byte was not a TLS handshake record (`0x16`): plaintext on the TLS port.
    NotTls,
    /// The peer closed before the handshake finished.
    Closed,
    /// The socket failed.
    Io(Rc<io::Error>),
    /// TLS refused the peer (certificate, ALPN, version, malformed message).
    Tls(rustls::Error),
    /// Not done in time.
    Timeout(Duration),
}

impl HandshakeError {
    /// The metric label.
    pub fn failure(&self) -> Failure {
        use rustls::Error as E;
        match self {
            HandshakeError::NotTls => Failure::NotTls,
            HandshakeError::Closed | HandshakeError::Io(_) => Failure::Closed,
            HandshakeError::Timeout(_) => Failure::Timeout,
            HandshakeError::Tls(e) => match e {
                E::InvalidCertificate(_) | E::NoCertificatesPresented => Failure::Certificate,
                E::NoApplicationProtocol => Failure::Alpn,
                E::AlertReceived(alert) => match alert {
                    AlertDescription::NoApplicationProtocol => Failure::Alpn,
                    AlertDescription::BadCertificate
                    | AlertDescription::UnknownCA
                    | AlertDescription::CertificateRequired
                    | AlertDescription::CertificateExpired
                    | AlertDescription::CertificateUnknown
                    | AlertDescription::CertificateRevoked
                    | AlertDescription::UnsupportedCertificate => Failure::Certificate,
                    _ => Failure::Protocol,
                },
                _ => Failure::Protocol,
            },
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::NotTls => f.write_str("not TLS (a plaintext client on the TLS port?)"),
            HandshakeError::Closed => f.write_str("closed by the peer during the TLS handshake"),
            HandshakeError::Io(e) => write!(f, "TLS handshake failed: {e}"),
            HandshakeError::Tls(e) => e.fmt(f),
            HandshakeError::Timeout(after) => {
                write!(f, "TLS handshake not done after {} ms", after.as_millis())
            }
        }
    }
}

/// TLS failing on an established connection: the connection ends with this as the
/// `io::Error` of its read or write, its cause kept as the source.
#[derive(Debug)]
struct RecordError(rustls::Error);

impl RecordError {
    fn io(e: HandshakeError) -> io::Error {
        match e {
            HandshakeError::Tls(e) => io::Error::new(io::ErrorKind::InvalidData, RecordError(e)),
            HandshakeError::Io(e) => io::Error::new(e.kind(), format!("TLS: {e}")),
            other => io::Error::other(format!("TLS: {other}")),
        }
    }
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TLS: {}", self.0)
    }
}

impl std::error::Error for RecordError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl std::error::Error for HandshakeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HandshakeError::Io(e) => Some(e.as_ref()),
            HandshakeError::Tls(e) => Some(e),
            _ => None,
        }
    }
}

/// Runs the handshake of `tls` on `stream`. `server`: the first byte must open a TLS
/// handshake record, or the connection is refused at once ([`HandshakeError::NotTls`]).
/// Bytes that came with the end of the handshake (a client's HTTP/2 preface) are kept in the
/// transport for the driver.
pub async fn handshake(
    stream: &mut TcpStream,
    tls: impl Into<Connection>,
    server: bool,
) -> Result<TlsTransport, HandshakeError> {
    let mut inner = Inner {
        tls: tls.into(),
        plain: BytesMut::new(),
        records: Records::default(),
        cipher_spare: BytesMut::new(),
        plain_spare: BytesMut::new(),
        close_sent: false,
    };
    let mut buf = BytesMut::new();
    let mut first = server;
    loop {
        if inner.tls.wants_write() {
            let mut out = BytesMut::new();
            inner
                .pending(&mut out)
                .map_err(|e| HandshakeError::Io(Rc::new(e)))?;
            let (written, _) = stream.write_all(out).await;
            written.map_err(|e| HandshakeError::Io(Rc::new(e)))?;
        }
        if !inner.tls.is_handshaking() {
            break;
        }
        buf.clear();
        buf.reserve(HANDSHAKE_READ);
        let (read, b) = stream.read(buf).await;
        buf = b;
        match read {
            Ok(0) => return Err(HandshakeError::Closed),
            Ok(_) => {}
            Err(e) => return Err(HandshakeError::Io(Rc::new(e))),
        }
        if first {
            first = false;
            if buf.first() != Some(&0x16) {
                return Err(HandshakeError::NotTls);
            }
        }
        if let Err(e) = inner.feed(&buf) {
            // The alert rustls queued goes out (best effort) before the connection closes.
            let mut out = BytesMut::new();
            if inner.pending(&mut out).is_ok() && !out.is_empty() {
                let _ = stream.write_all(out).await;
            }
            return Err(e);
        }
    }
    // Our buffers are ours to bound (the connection's output limit): rustls's limits off.
    inner.tls.set_buffer_limit(None);
    Ok(TlsTransport {
        inner: RefCell::new(inner),
    })
}

/// A TLS connection between the socket and HTTP/2, after its handshake.
pub struct TlsTransport {
    inner: RefCell<Inner>,
}

struct Inner {
    tls: Connection,
    /// Decrypted bytes `Conn::recv` has not taken yet (part of a frame).
    plain: BytesMut,
    records: Records,
    /// The encrypted write buffer, kept between writes on a busy connection.
    cipher_spare: BytesMut,
    /// The plaintext batch buffer, handed back to the connection after each write.
    plain_spare: BytesMut,
    close_sent: bool,
}

impl TlsTransport {
    /// Whether this connection resumed an earlier session (no full handshake).
    pub fn resumed(&self) -> bool {
        self.inner.borrow().tls.handshake_kind() == Some(HandshakeKind::Resumed)
    }

    /// The verified identity of the peer's certificate (subject CN, else first SAN).
    pub fn peer_identity(&self) -> Option<String> {
        let inner = self.inner.borrow();
        let cert = inner.tls.peer_certificates()?.first()?;
        super::load::identity(cert)
    }

    /// The negotiated ALPN protocol.
    pub fn alpn(&self) -> Option<Vec<u8>> {
        self.inner.borrow().tls.alpn_protocol().map(<[u8]>::to_vec)
    }
}

impl Inner {
    /// Hands `bytes` (ciphertext) to rustls and moves what it decrypted to `plain`.
    fn feed(&mut self, bytes: &[u8]) -> Result<(), HandshakeError> {
        self.records.advance(bytes);
        let mut input = bytes;
        // Never `read_tls` an empty slice: rustls would take it for the end of the stream.
        while !input.is_empty() {
            let before = input.len();
            self.tls
                .read_tls(&mut input)
                .map_err(|e| HandshakeError::Io(Rc::new(e)))?;
            let state = self
                .tls
                .process_new_packets()
                .map_err(HandshakeError::Tls)?;
            if state.plaintext_bytes_to_read() > 0 {
                self.plain.reserve(state.plaintext_bytes_to_read());
                let mut reader = self.tls.reader();
                loop {
                    match reader.fill_buf() {
                        Ok([]) => break,
                        Ok(chunk) => {
                            self.plain.extend_from_slice(chunk);
                            let n = chunk.len();
                            reader.consume(n);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(HandshakeError::Io(Rc::new(e))),
                    }
                }
            }
            if input.len() == before {
                // rustls took nothing (it saw close_notify): the rest is not ours to read.
                break;
            }
        }
        Ok(())
    }

    /// Appends everything rustls has to send to `out`.
    fn pending(&mut self, out: &mut BytesMut) -> io::Result<()> {
        let mut writer = out.writer();
        while self.tls.wants_write() {
            self.tls.write_tls(&mut writer)?;
        }
        writer.flush()
    }
}

impl Transport for TlsTransport {
    fn start(&self, recv: impl FnOnce(&mut BytesMut) -> bool) -> bool {
        let mut inner = self.inner.borrow_mut();
        if inner.plain.is_empty() {
            return true;
        }
        recv(&mut inner.plain)
    }

    fn holds_partial(&self) -> bool {
        let inner = self.inner.borrow();
        inner.records.missing() > 0 || !inner.plain.is_empty()
    }

    fn received(
        &self,
        raw: &mut BytesMut,
        recv: impl FnOnce(&mut BytesMut) -> bool,
    ) -> io::Result<bool> {
        let mut inner = self.inner.borrow_mut();
        inner.feed(raw).map_err(RecordError::io)?;
        raw.clear();
        // Room for the rest of an incomplete record, so it does not arrive 32 bytes a read.
        let missing = inner.records.missing();
        if missing > 0 {
            raw.reserve(missing.min(MAX_RECORD));
        }
        if inner.plain.is_empty() {
            return Ok(true);
        }
        let more = recv(&mut inner.plain);
        if inner.plain.is_empty() {
            // Nothing held for an idle connection.
            inner.plain = BytesMut::new();
        }
        Ok(more)
    }

    fn seal(&self, batch: BytesMut) -> io::Result<BytesMut> {
        let mut inner = self.inner.borrow_mut();
        let mut out = std::mem::take(&mut inner.cipher_spare);
        if !batch.is_empty() {
            // Encrypted into full-size records: many HTTP/2 frames per record.
            inner
                .tls
                .writer()
                .write_all(&batch)
                .map_err(|e| io::Error::new(e.kind(), format!("TLS: {e}")))?;
        }
        inner
            .pending(&mut out)
            .map_err(|e| io::Error::new(e.kind(), format!("TLS: {e}")))?;
        let mut batch = batch;
        batch.clear();
        inner.plain_spare = batch;
        Ok(out)
    }

    fn written(&self, written: BytesMut, keep: bool) -> BytesMut {
        let mut inner = self.inner.borrow_mut();
        if keep && written.capacity() <= 1 << 20 {
            inner.cipher_spare = written;
        }
        std::mem::take(&mut inner.plain_spare)
    }

    fn closing(&self) -> Option<BytesMut> {
        let mut inner = self.inner.borrow_mut();
        if !inner.close_sent {
            inner.close_sent = true;
            inner.tls.send_close_notify();
        }
        let mut out = BytesMut::new();
        inner.pending(&mut out).ok()?;
        (!out.is_empty()).then_some(out)
    }
}

/// Where the byte stream is among TLS records: the transport's own count of what rustls is
/// still waiting for, since rustls does not say.
#[derive(Default)]
struct Records {
    header: [u8; 5],
    /// Header bytes seen of the next record.
    have: usize,
    /// Body bytes still to come of the current record.
    body_left: usize,
}

impl Records {
    fn advance(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let n = self.body_left.min(bytes.len());
                self.body_left -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (5 - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == 5 {
                self.have = 0;
                self.body_left = u16::from_be_bytes([self.header[3], self.header[4]]) as usize;
            }
        }
    }

    /// Bytes still needed to complete the record under way (0 between records).
    fn missing(&self) -> usize {
        if self.body_left > 0 {
            self.body_left
        } else if self.have > 0 {
            5 - self.have
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_followed_across_reads() {
        let mut r = Records::default();
        assert_eq!(r.missing(), 0);
        r.advance(&[0x17, 0x03]);
        assert_eq!(r.missing(), 3);
        r.advance(&[0x03, 0x00, 0x10, 1, 2]);
        assert_eq!(r.missing(), 14);
        r.advance(&[0; 14]);
        assert_eq!(r.missing(), 0);
        // Two records and part of a third in one read.
        r.advance(&[0x17, 3, 3, 0, 1, 9, 0x17, 3, 3, 0, 2, 9, 9, 0x17]);
        assert_eq!(r.missing(), 4);
    }
}
