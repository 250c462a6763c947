//! Serving one client connection: the HTTP/2 server handshake and accepting its streams.
//!
//! Owns the connection's settings (windows, stream and header-list limits, reset-flood guards)
//! and drives its I/O; each accepted stream becomes its own task in [`proxy`](crate::proxy).
//! Knows nothing of routing.

use std::future::poll_fn;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use monoio::io::IntoPollIo;
use monoio::net::TcpStream;

use crate::config::DownstreamConfig;
use crate::proxy;
use crate::shard::Shard;

/// A client that connects and never sends the HTTP/2 preface is dropped after this long, so it
/// cannot hold a descriptor forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The HTTP/2 server settings for client connections.
pub fn server_builder(config: &DownstreamConfig) -> h2::server::Builder {
    let mut builder = h2::server::Builder::new();
    builder
        .initial_window_size(config.stream_window_bytes)
        .initial_connection_window_size(config.connection_window_bytes)
        .max_concurrent_streams(config.max_concurrent_streams)
        .max_header_list_size(config.max_header_list_bytes)
        // Rapid reset (CVE-2023-44487): streams a client opens and resets before we accept
        // them are capped per connection (h2 then sends GOAWAY ENHANCE_YOUR_CALM) ...
        .max_pending_accept_reset_streams(64)
        // ... and so are resets we must send because a client misbehaves on its streams.
        .max_local_error_reset_streams(Some(1024));
    builder
}

/// Runs one client connection until it closes.
pub async fn serve(shard: Rc<Shard>, stream: TcpStream) {
    let metrics = shard.metrics.clone();
    metrics.downstream_open.inc();
    run(&shard, stream).await;
    metrics.downstream_open.dec();
}

async fn run(shard: &Rc<Shard>, stream: TcpStream) {
    if stream.set_nodelay(true).is_err() {
        return;
    }
    let Ok(io) = stream.into_poll_io() else {
        return;
    };
    let handshake = shard.h2_server.handshake::<_, Bytes>(io);
    let mut connection = match monoio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(connection)) => connection,
        // Not HTTP/2, or too slow: nothing to answer on.
        _ => return,
    };
    let mut drain = shard.drain.subscribe();
    let mut going_away = false;
    loop {
        let next = monoio::select! {
            next = connection.accept() => next,
            _ = &mut drain, if !going_away => {
                // Two-phase GOAWAY: h2 first announces the maximum stream id, then after a
                // PING round trip the last one it accepted, so no stream in flight is lost.
                connection.graceful_shutdown();
                shard.metrics.downstream_goaways_sent.inc();
                going_away = true;
                continue;
            }
        };
        match next {
            Some(Ok((request, respond))) => {
                monoio::spawn(proxy::serve(shard.clone(), request, respond));
            }
            Some(Err(_)) | None => break,
        }
    }
    // Keep driving the connection until its remaining streams are done.
    let _ = poll_fn(|cx| connection.poll_closed(cx)).await;
}
