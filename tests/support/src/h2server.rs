//! A gRPC echo upstream written directly on the `h2` crate, for what tonic will not do on
//! command: send GOAWAY in the middle of a load, with the last stream id of a server that
//! stopped taking streams — so the streams above it are refused unprocessed and a gateway may
//! retry them elsewhere.
//!
//! Every call is a unary echo with gRPC framing: the request's message comes back as the
//! response's message (`EchoRequest` and `EchoReply` share field 1, `bytes payload`, so an
//! `EchoRequest` carrying only a payload reads as an `EchoReply` with that payload), then
//! trailers `grpc-status: 0`. Each message handled is counted by its bytes, so a test can see a
//! call that ran twice.
//!
//! # Why the GOAWAY is written here and not by `h2`
//!
//! `h2`'s `abrupt_shutdown` puts the highest stream id it has *received* in its GOAWAY (including
//! streams queued for `accept` that the server never took) and fails every stream, accepted or
//! not. A GOAWAY that refuses what was not taken needs the last *accepted* id, so [`Injector`]
//! writes that frame itself, at a frame boundary of `h2`'s outgoing bytes, and the server
//! simply never accepts the queued streams while it finishes the ones it took.

use std::collections::HashMap;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::RecvStream;
use http::{HeaderMap, HeaderValue, Response};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use crate::rawh2::{grpc_frame, grpc_messages, Frame, NO_ERROR};

/// When the first connection goes away.
#[derive(Debug, Clone, Copy)]
pub struct GoAwayPlan {
    /// Streams accepted (and answered) on the first connection before it stops accepting.
    pub after_streams: usize,
    /// How long it then leaves new streams queued before the GOAWAY.
    pub pause: Duration,
}

/// What the server saw, shared with its tasks.
#[derive(Debug, Default)]
struct Seen {
    /// Messages handled, by their bytes.
    calls: Mutex<HashMap<Vec<u8>, usize>>,
    connections: AtomicUsize,
    /// The last stream id of the GOAWAY sent, once sent.
    goaway_last_stream: Mutex<Option<u32>>,
}

/// A running h2 echo upstream on `127.0.0.1`. Stopped when dropped.
pub struct H2Upstream {
    addr: SocketAddr,
    seen: Arc<Seen>,
    task: JoinHandle<()>,
}

impl H2Upstream {
    /// Starts on port 0. With a plan, the first connection goes away as it says; every later
    /// connection (and every connection without a plan) serves until the client leaves.
    pub async fn start(plan: Option<GoAwayPlan>) -> H2Upstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the h2 upstream");
        let addr = listener.local_addr().expect("its address");
        let seen = Arc::new(Seen::default());
        let task_seen = seen.clone();
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let _ = socket.set_nodelay(true);
                let n = task_seen.connections.fetch_add(1, Ordering::SeqCst);
                let plan = if n == 0 { plan } else { None };
                connections.spawn(serve_connection(socket, task_seen.clone(), plan));
            }
        });
        H2Upstream { addr, seen, task }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// TCP connections accepted.
    pub fn connections(&self) -> usize {
        self.seen.connections.load(Ordering::SeqCst)
    }

    /// Calls handled, counting repeats.
    pub fn calls(&self) -> usize {
        self.seen.calls.lock().unwrap().values().sum()
    }

    /// How often each message was handled.
    pub fn calls_by_message(&self) -> HashMap<Vec<u8>, usize> {
        self.seen.calls.lock().unwrap().clone()
    }

    /// The last stream id of the planned GOAWAY, once it was sent.
    pub fn goaway_last_stream(&self) -> Option<u32> {
        *self.seen.goaway_last_stream.lock().unwrap()
    }
}

impl Drop for H2Upstream {
    fn drop(&mut self) {
        // Dropping the task drops its JoinSet, which aborts every connection.
        self.task.abort();
    }
}

async fn serve_connection(socket: TcpStream, seen: Arc<Seen>, plan: Option<GoAwayPlan>) {
    let (io, injector) = Injecting::new(socket);
    let Ok(mut conn) = h2::server::handshake(io).await else {
        return;
    };
    let Some(plan) = plan else {
        while let Some(Ok((request, respond))) = conn.accept().await {
            tokio::spawn(echo(request.into_body(), respond, seen.clone()));
        }
        return;
    };
    let mut ping = conn.ping_pong().expect("the first ping_pong");
    let mut handlers = JoinSet::new();
    let mut last_accepted = 0;
    for _ in 0..plan.after_streams {
        match conn.accept().await {
            Some(Ok((request, respond))) => {
                last_accepted = respond.stream_id().as_u32();
                handlers.spawn(echo(request.into_body(), respond, seen.clone()));
            }
            _ => return,
        }
    }
    // Stop accepting: streams the client opens now wait in h2's queue. Keep driving the
    // connection so the accepted ones are answered.
    let drive = poll_fn(|cx| conn.poll_closed(cx));
    if tokio::time::timeout(plan.pause, drive).await.is_ok() {
        return; // the client left
    }
    injector.send(Frame::goaway(last_accepted, NO_ERROR, b"").encode());
    *seen.goaway_last_stream.lock().unwrap() = Some(last_accepted);
    // A PING makes h2 write now, and the GOAWAY goes out just before it.
    let _ = ping.send_ping(h2::Ping::opaque());
    // Finish the accepted streams, never accepting another, then close.
    let finish = async {
        while handlers.join_next().await.is_some() {}
        // Let the last responses reach the socket.
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::select! {
        _ = finish => {}
        _ = poll_fn(|cx| conn.poll_closed(cx)) => {}
    }
    let _ = tokio::time::timeout(
        Duration::from_millis(100),
        poll_fn(|cx| conn.poll_closed(cx)),
    )
    .await;
}

/// Reads one unary request, counts its message and sends it back.
async fn echo(mut body: RecvStream, mut respond: SendResponse<Bytes>, seen: Arc<Seen>) {
    let mut request = Vec::new();
    while let Some(chunk) = body.data().await {
        let Ok(chunk) = chunk else { return };
        let _ = body.flow_control().release_capacity(chunk.len());
        request.extend_from_slice(&chunk);
    }
    let (messages, _) = grpc_messages(&request);
    let message = messages.into_iter().next().unwrap_or_default();
    *seen
        .calls
        .lock()
        .unwrap()
        .entry(message.clone())
        .or_default() += 1;
    let head = Response::builder()
        .status(200)
        .header("content-type", "application/grpc")
        .body(())
        .expect("a valid response");
    let Ok(mut send) = respond.send_response(head, false) else {
        return;
    };
    let _ = send.send_data(Bytes::from(grpc_frame(&message)), false);
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let _ = send.send_trailers(trailers);
}

/// The handle that schedules a frame for an [`Injecting`] stream.
#[derive(Clone, Default)]
struct Injector {
    pending: Arc<Mutex<Option<Vec<u8>>>>,
}

impl Injector {
    /// Writes `frame` at the next frame boundary of the outgoing bytes.
    fn send(&self, frame: Vec<u8>) {
        *self.pending.lock().unwrap() = Some(frame);
    }
}

/// A server socket that can slip one frame of ours between `h2`'s frames. It tracks where the
/// outgoing frames begin and end from their headers.
struct Injecting {
    io: TcpStream,
    injector: Injector,
    /// A frame being injected and how much of it is out.
    injecting: Option<(Vec<u8>, usize)>,
    /// Header bytes of the outgoing frame seen so far.
    header: usize,
    header_bytes: [u8; 9],
    /// Payload bytes of the outgoing frame still to pass.
    remaining: usize,
}

impl Injecting {
    fn new(io: TcpStream) -> (Injecting, Injector) {
        let injector = Injector::default();
        let stream = Injecting {
            io,
            injector: injector.clone(),
            injecting: None,
            header: 0,
            header_bytes: [0; 9],
            remaining: 0,
        };
        (stream, injector)
    }

    fn at_boundary(&self) -> bool {
        self.header == 0 && self.remaining == 0
    }

    /// How many of `len` bytes may go before the next boundary.
    fn until_boundary(&self, len: usize) -> usize {
        if self.header > 0 {
            len.min(9 - self.header)
        } else if self.remaining > 0 {
            len.min(self.remaining)
        } else {
            len.min(9)
        }
    }

    fn wrote(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.remaining > 0 {
                let n = self.remaining.min(bytes.len());
                self.remaining -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (9 - self.header).min(bytes.len());
            self.header_bytes[self.header..self.header + n].copy_from_slice(&bytes[..n]);
            self.header += n;
            bytes = &bytes[n..];
            if self.header == 9 {
                let h = self.header_bytes;
                self.remaining = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
                self.header = 0;
            }
        }
    }

    /// Writes the injected frame if one is due and the stream is at a boundary. Ready once
    /// nothing of ours is in the way.
    fn poll_inject(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.injecting.is_none() && self.at_boundary() {
            if let Some(frame) = self.injector.pending.lock().unwrap().take() {
                self.injecting = Some((frame, 0));
            }
        }
        if let Some((frame, sent)) = &mut self.injecting {
            while *sent < frame.len() {
                let n = match Pin::new(&mut self.io).poll_write(cx, &frame[*sent..]) {
                    Poll::Ready(Ok(n)) => n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                };
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                *sent += n;
            }
            self.injecting = None;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Injecting {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Injecting {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Poll::Ready(Err(e)) = this.poll_inject(cx) {
            return Poll::Ready(Err(e));
        }
        if this.injecting.is_some() {
            return Poll::Pending;
        }
        // Stop at each boundary while a frame is waiting, so it can go in there.
        let pending = this.injector.pending.lock().unwrap().is_some();
        let allowed = if pending {
            this.until_boundary(buf.len())
        } else {
            buf.len()
        };
        match Pin::new(&mut this.io).poll_write(cx, &buf[..allowed]) {
            Poll::Ready(Ok(n)) => {
                this.wrote(&buf[..n]);
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    }

    // Not vectored: h2 then writes through `poll_write`, where the boundaries are tracked.
    fn is_write_vectored(&self) -> bool {
        false
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.poll_inject(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.io).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.poll_inject(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.io).poll_shutdown(cx),
            other => other,
        }
    }
}
