//! One upstream: a tonic server running [`EchoService`] on `127.0.0.1`, with
//! its lifecycle (start on port 0, stop, restart on the same port) and the
//! counts tests assert on. It owns the listener and the accepted sockets; what
//! a call does is [`crate::echo`]'s.
//!
//! Connections are counted where they are accepted, by wrapping the listener's
//! stream, so the count is what the gateway really opened, not what it claims.

use std::net::{Shutdown, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::transport::Server;

use crate::client::MAX_MESSAGE_SIZE;
use crate::echo::pb::echo_server::EchoServer;
use crate::echo::{CallCounters, EchoService};
use crate::stamp::StampLayer;

/// How long [`Upstream::restart`] retries binding its old port.
const REBIND_FOR: Duration = Duration::from_secs(10);
/// How long [`Upstream::stop`] waits for the server task to end before aborting it.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Server settings of an upstream beyond the defaults; kept across restarts.
#[derive(Debug, Clone, Default)]
pub struct UpstreamOptions {
    /// Serve TLS with this certificate (routes then name it `https://`); `None`: plaintext.
    pub tls: Option<UpstreamTls>,
    /// The server's HTTP/2 PING interval (tonic `http2_keepalive_interval`); `None`: no pings.
    pub http2_keepalive_interval: Option<Duration>,
    /// How long an unanswered PING may wait before the server closes the connection.
    pub http2_keepalive_timeout: Option<Duration>,
    /// The address to listen on; `None`: 127.0.0.1.
    pub bind: Option<std::net::IpAddr>,
    /// The port to listen on; `None`: one the kernel chooses.
    pub port: Option<u16>,
}

/// A TLS upstream's certificate, and the CA its clients' certificates must chain to (mTLS).
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    pub identity: crate::pki::Pem,
    pub client_ca: Option<String>,
}

impl UpstreamOptions {
    /// A TLS upstream serving `identity`.
    pub fn tls(identity: crate::pki::Pem) -> UpstreamOptions {
        UpstreamOptions {
            tls: Some(UpstreamTls {
                identity,
                client_ca: None,
            }),
            ..UpstreamOptions::default()
        }
    }
}

/// A running (or stopped) gRPC upstream. Stopped when dropped.
pub struct Upstream {
    /// Put in every reply and in the `x-upstream` trailer.
    name: String,
    /// Fixed at the first start; restarts bind it again.
    addr: SocketAddr,
    /// Shared with the service; survives restarts.
    counters: Arc<CallCounters>,
    /// TCP connections accepted over the upstream's whole life.
    connections: Arc<AtomicUsize>,
    options: UpstreamOptions,
    /// `None` while stopped.
    running: Option<Running>,
    /// Closed by [`Upstream::hold_reads`]: the server reads nothing on any connection.
    gate: Arc<Gate>,
}

/// Holds the server's reads while closed. What the gateway sends meanwhile waits in the
/// socket and is read in one go when the gate opens — as by a server whose thread was busy.
#[derive(Debug, Default)]
struct Gate {
    held: AtomicBool,
    waiting: Mutex<Vec<Waker>>,
}

impl Gate {
    fn open(&self) {
        self.held.store(false, Ordering::SeqCst);
        for waker in self.waiting.lock().unwrap().drain(..) {
            waker.wake();
        }
    }
}

/// An accepted socket whose reads pass the upstream's [`Gate`].
struct Gated {
    inner: TcpStream,
    gate: Arc<Gate>,
}

impl Connected for Gated {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.inner.connect_info()
    }
}

impl AsyncRead for Gated {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.gate.held.load(Ordering::SeqCst) {
            self.gate.waiting.lock().unwrap().push(cx.waker().clone());
            // Opened meanwhile: its wake may have missed the waker just stored.
            if self.gate.held.load(Ordering::SeqCst) {
                return Poll::Pending;
            }
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Gated {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// While it lives, the upstream reads nothing ([`Upstream::hold_reads`]).
pub struct ReadHold(Arc<Gate>);

impl Drop for ReadHold {
    fn drop(&mut self) {
        self.0.open();
    }
}

/// What exists only while the server runs.
struct Running {
    /// Fires the tonic server's shutdown: it stops accepting and closes the listener.
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<()>,
    /// A duplicate of every accepted socket, so [`Upstream::stop`] can cut
    /// connections the gateway keeps open (tonic's graceful shutdown would
    /// otherwise wait for them).
    sockets: Arc<Mutex<Vec<std::net::TcpStream>>>,
}

/// Shuts down (both ways) every accepted socket, ending its HTTP/2 connection.
fn cut_connections(sockets: &Mutex<Vec<std::net::TcpStream>>) {
    for socket in sockets.lock().unwrap().drain(..) {
        let _ = socket.shutdown(Shutdown::Both);
    }
}

impl Upstream {
    /// Starts an upstream named `name` on `127.0.0.1:0`, on the current tokio runtime.
    pub async fn start(name: &str) -> Upstream {
        Upstream::start_with(name, UpstreamOptions::default()).await
    }

    /// As [`Upstream::start`], with server settings.
    pub async fn start_with(name: &str, options: UpstreamOptions) -> Upstream {
        let ip = options.bind.unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
        let port = options.port.unwrap_or(0);
        let listener = TcpListener::bind((ip, port))
            .await
            .unwrap_or_else(|e| panic!("bind an upstream on {ip}:{port}: {e}"));
        let addr = listener.local_addr().expect("upstream local address");
        let mut upstream = Upstream {
            name: name.to_owned(),
            addr,
            counters: Arc::default(),
            connections: Arc::default(),
            options,
            running: None,
            gate: Arc::default(),
        };
        upstream.serve(listener);
        upstream
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether it serves TLS.
    pub fn is_tls(&self) -> bool {
        self.options.tls.is_some()
    }

    /// How a route names it: `https://127.0.0.1:port` for TLS, else `127.0.0.1:port`.
    pub fn target(&self) -> String {
        if self.is_tls() {
            format!("https://{}", self.addr)
        } else {
            self.addr.to_string()
        }
    }

    /// TCP connections accepted since the first start.
    pub fn connections_accepted(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Calls whose handler started since the first start.
    pub fn calls(&self) -> usize {
        self.counters.started.load(Ordering::SeqCst)
    }

    /// Calls whose handler saw the client cancel (was dropped or found its
    /// peer gone before finishing its reply).
    pub fn cancelled(&self) -> usize {
        self.counters.cancelled.load(Ordering::SeqCst)
    }

    /// Stops the server reading from every connection until the hold is dropped: what
    /// arrives meanwhile is read in one go afterwards.
    pub fn hold_reads(&self) -> ReadHold {
        self.gate.held.store(true, Ordering::SeqCst);
        ReadHold(self.gate.clone())
    }

    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Stops accepting, closes the listening socket and cuts every open
    /// connection, so new dials are refused and pooled connections die.
    pub async fn stop(&mut self) {
        let Some(Running {
            shutdown,
            mut task,
            sockets,
        }) = self.running.take()
        else {
            return;
        };
        let _ = shutdown.send(());
        let deadline = Instant::now() + STOP_GRACE;
        loop {
            // Cut again each round: a connection accepted just before the
            // shutdown signal was seen would otherwise keep the server waiting.
            cut_connections(&sockets);
            match tokio::time::timeout(Duration::from_millis(50), &mut task).await {
                Ok(_) => break,
                Err(_) if Instant::now() >= deadline => {
                    task.abort();
                    break;
                }
                Err(_) => continue,
            }
        }
    }

    /// Starts again on the same address, after [`Upstream::stop`]. The counts carry on.
    pub async fn restart(&mut self) {
        self.stop().await;
        let deadline = Instant::now() + REBIND_FOR;
        let listener = loop {
            // tokio sets SO_REUSEADDR, so TIME_WAIT leftovers do not block this.
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(e) if Instant::now() < deadline => {
                    eprintln!(
                        "upstream {}: rebinding {}: {e}; retrying",
                        self.name, self.addr
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("upstream {}: cannot rebind {}: {e}", self.name, self.addr),
            }
        };
        self.serve(listener);
    }

    fn serve(&mut self, listener: TcpListener) {
        let sockets: Arc<Mutex<Vec<std::net::TcpStream>>> = Arc::default();
        let connections = self.connections.clone();
        let registry = sockets.clone();
        let gate = self.gate.clone();
        let incoming = TcpListenerStream::new(listener).map(move |accepted| {
            let stream = accepted?;
            connections.fetch_add(1, Ordering::SeqCst);
            let stream = stream.into_std()?;
            stream.set_nodelay(true)?;
            registry.lock().unwrap().push(stream.try_clone()?);
            Ok::<_, std::io::Error>(Gated {
                inner: TcpStream::from_std(stream)?,
                gate: gate.clone(),
            })
        });

        let service = EchoServer::new(EchoService::new(&self.name, self.counters.clone()))
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        let mut builder = Server::builder();
        if let Some(interval) = self.options.http2_keepalive_interval {
            builder = builder.http2_keepalive_interval(Some(interval));
        }
        if let Some(timeout) = self.options.http2_keepalive_timeout {
            builder = builder.http2_keepalive_timeout(Some(timeout));
        }
        if let Some(tls) = &self.options.tls {
            use tonic::transport::{Certificate, Identity, ServerTlsConfig};
            let mut config = ServerTlsConfig::new()
                .identity(Identity::from_pem(&tls.identity.cert, &tls.identity.key));
            if let Some(ca) = &tls.client_ca {
                config = config.client_ca_root(Certificate::from_pem(ca));
            }
            builder = builder.tls_config(config).expect("a TLS upstream config");
        }
        let router = builder
            .layer(StampLayer::new(&self.name))
            .add_service(service);
        let (shutdown, signal) = oneshot::channel::<()>();
        let name = self.name.clone();
        let task = tokio::spawn(async move {
            let stopped = async {
                let _ = signal.await;
            };
            if let Err(e) = router.serve_with_incoming_shutdown(incoming, stopped).await {
                eprintln!("upstream {name}: server ended: {e}");
            }
        });
        self.running = Some(Running {
            shutdown,
            task,
            sockets,
        });
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            cut_connections(&running.sockets);
            running.task.abort();
        }
    }
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .field("addr", &self.addr)
            .field("running", &self.running.is_some())
            .finish()
    }
}
