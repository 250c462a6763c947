//! The echo upstream: an HTTP/2 gRPC server that answers every call with the request's own
//! message(s) and `grpc-status: 0` trailers.
//!
//! Owns: accepting on a listener it is handed, one HTTP/2 server connection per client, one
//! task per stream. It does not decode protobuf (the bytes go back as they came, framing
//! included) and does not care about the path, so any unary method works.
//!
//! With a TLS config (`--tls-cert/--tls-key`) the same listener speaks TLS (rustls, ring
//! provider, ALPN `h2`), so gateways can reach it as `grpcs://` / `https://`; the HTTP/2 code
//! is the same, generic over the stream. A thread logs a connection's kind (version, cipher,
//! group, ALPN, full or resumed) as `echo-upstream: tls <…>` the first time it sees it and
//! then at most once a second, so a run can record what a gateway's upstream hop negotiated
//! without a line per connection.
//!
//! Shape: `threads` OS threads, each with its own tokio current_thread runtime accepting from
//! a clone of the same listening socket. One thread is the default, so the upstream's CPU time
//! per call is easy to read and comparable between systems under test.

use std::collections::HashMap;
use std::net::TcpListener as StdListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use h2::server::SendResponse;
use h2::RecvStream;
use http::Request;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use crate::grpc;
use crate::h2cfg;
use crate::tls::Negotiated;

/// A client that has not finished its TLS handshake by then is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A kind of TLS connection already logged is logged again after this long at the earliest.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// Serve plaintext HTTP/2 on `listener` with `threads` threads until the process exits.
pub fn serve(listener: StdListener, threads: usize, max_streams: u32) -> std::io::Result<()> {
    serve_with(listener, threads, max_streams, None)
}

/// Serve on `listener`, over TLS when `tls` is given (its ALPN should offer `h2`).
pub fn serve_with(
    listener: StdListener,
    threads: usize,
    max_streams: u32,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let mut handles = Vec::new();
    for i in 0..threads.max(1) {
        let l = listener.try_clone()?;
        let tls = tls.clone().map(tokio_rustls::TlsAcceptor::from);
        handles.push(
            std::thread::Builder::new()
                .name(format!("echo-{i}"))
                .spawn(move || run_thread(l, max_streams, tls))?,
        );
    }
    for h in handles {
        h.join().expect("echo thread panicked")?;
    }
    Ok(())
}

fn run_thread(
    listener: StdListener,
    max_streams: u32,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = TcpListener::from_std(listener)?;
        // Kind of TLS connection → when it was last logged.
        let seen = std::rc::Rc::new(std::cell::RefCell::new(HashMap::new()));
        loop {
            let (sock, _) = match listener.accept().await {
                Ok(s) => s,
                // EMFILE and friends: back off briefly rather than spin.
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = sock.set_nodelay(true);
            match &tls {
                None => {
                    tokio::task::spawn_local(connection(sock, max_streams));
                }
                Some(acceptor) => {
                    let (accept, seen) = (acceptor.accept(sock), seen.clone());
                    tokio::task::spawn_local(async move {
                        let Ok(Ok(stream)) =
                            tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, accept).await
                        else {
                            return;
                        };
                        let c = stream.get_ref().1;
                        let resumed = c.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
                        let kind = (Negotiated::of(c), resumed);
                        log_kind(&mut seen.borrow_mut(), kind);
                        connection(stream, max_streams).await;
                    });
                }
            }
        }
    })
}

/// Log a TLS connection's kind the first time, then at most every `LOG_EVERY`.
fn log_kind(seen: &mut HashMap<(Negotiated, bool), Instant>, kind: (Negotiated, bool)) {
    let now = Instant::now();
    if seen
        .get(&kind)
        .is_some_and(|last| now.duration_since(*last) < LOG_EVERY)
    {
        return;
    }
    let how = if kind.1 { "resumed" } else { "full" };
    eprintln!("echo-upstream: tls {} ({how})", kind.0.line());
    seen.insert(kind, now);
}

async fn connection<S>(sock: S, max_streams: u32)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut conn = match h2cfg::server(max_streams).handshake::<_, Bytes>(sock).await {
        Ok(c) => c,
        Err(_) => return,
    };
    while let Some(next) = conn.accept().await {
        let Ok((req, respond)) = next else { return };
        tokio::task::spawn_local(async move {
            let _ = echo(req, respond).await;
        });
    }
}

async fn echo(req: Request<RecvStream>, mut respond: SendResponse<Bytes>) -> Result<(), h2::Error> {
    let mut body = req.into_body();
    // Most unary messages arrive in one DATA frame: avoid a copy in that case.
    let mut first: Option<Bytes> = None;
    let mut rest: Option<BytesMut> = None;
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        match (&mut first, &mut rest) {
            (None, _) => first = Some(chunk),
            (Some(f), None) => {
                let mut b = BytesMut::from(&f[..]);
                b.extend_from_slice(&chunk);
                rest = Some(b);
            }
            (Some(_), Some(b)) => b.extend_from_slice(&chunk),
        }
    }
    let payload = match (first, rest) {
        (_, Some(b)) => b.freeze(),
        (Some(f), None) => f,
        (None, None) => Bytes::new(),
    };
    let mut send = respond.send_response(grpc::ok_response(), false)?;
    if !payload.is_empty() {
        send.send_data(payload, false)?;
    }
    send.send_trailers(grpc::ok_trailers())
}
