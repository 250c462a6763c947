//! A steady load for tests that change the gateway under it (upgrades, drains, a fleet):
//! client connections each making calls of all four kinds in turn until told to stop, and long
//! server streams, with every outcome tallied.
//!
//! A call is sent again (twice at most) only when the server never processed it ([`never_sent`]):
//! hyper (under tonic) cancels a request it queued for a connection that then closed, and a
//! stream opened after the server's final GOAWAY was written is refused by it. gRPC's own
//! clients retry exactly these ("transparent retry", gRPC A6); tonic does not, so the load does,
//! and counts them apart. Tests check at the target that no call ran twice.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::{Request, Status};

use crate::client::{connect, routed, with_jobid};
use crate::echo::pb::{echo_client::EchoClient, EchoRequest};

/// What a load's calls ended with.
#[derive(Default)]
pub struct Tally {
    pub ok: u64,
    pub failed: Vec<String>,
    /// Calls the client queued on a closed connection and sent again.
    pub unsent: u64,
}

/// Whether a call failed before the server processed it, as gRPC's transparent retry (A6)
/// defines it: hyper cancelled it in its queue for a connection that closed (it never left),
/// or the server's GOAWAY (NO_ERROR) refused its stream (its id was above the GOAWAY's last
/// stream id). Tests check at the target that no call ran twice.
pub fn never_sent(status: &Status) -> bool {
    let source = format!("{:?}", std::error::Error::source(status));
    (status.code() == tonic::Code::Cancelled && source.contains("Canceled"))
        || source.contains("GoAway(b\"\", NO_ERROR, Remote)")
}

/// One client connection making calls of every kind in turn until `stop`.
pub async fn worker(addr: SocketAddr, id: usize, stop: Arc<AtomicBool>, tally: Arc<Mutex<Tally>>) {
    let mut client = connect(addr).await;
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let mut tries = 0;
        loop {
            tries += 1;
            let result = attempt(&mut client, n % 4).await;
            let mut t = tally.lock().unwrap();
            match result {
                Ok(()) => t.ok += 1,
                Err((_, Some(status))) if never_sent(&status) && tries < 3 => {
                    t.unsent += 1;
                    continue;
                }
                Err((e, _)) => t.failed.push(format!("worker {id}: {e}")),
            }
            break;
        }
    }
}

type Client = EchoClient<Channel>;

/// One call of kind `kind` (0 unary, 1 server stream, 2 client stream, 3 bidi), checked to
/// its end; the error names the call and keeps the status.
async fn attempt(client: &mut Client, kind: usize) -> Result<(), (String, Option<Status>)> {
    let fail = |what: &str, s: Status| (format!("{what}: {s:?}"), Some(s));
    let short =
        |what: &str, got: usize, want: usize| (format!("{what}: {got} of {want} replies"), None);
    match kind {
        0 => client
            .unary(routed(EchoRequest::default(), "job"))
            .await
            .map(|_| ())
            .map_err(|s| fail("unary", s)),
        1 => {
            let req = EchoRequest {
                reply_count: 5,
                delay_ms: 5,
                ..Default::default()
            };
            let mut replies = client
                .server_stream(routed(req, "job"))
                .await
                .map_err(|s| fail("server stream", s))?
                .into_inner();
            let mut got = 0;
            while let Some(m) = replies.next().await {
                m.map_err(|s| fail("server stream", s))?;
                got += 1;
            }
            if got == 5 {
                Ok(())
            } else {
                Err(short("server stream", got, 5))
            }
        }
        2 => {
            let msgs = tokio_stream::iter(vec![EchoRequest::default(); 4]);
            client
                .client_stream(with_jobid(Request::new(msgs), "job"))
                .await
                .map(|_| ())
                .map_err(|s| fail("client stream", s))
        }
        _ => {
            let msgs = tokio_stream::iter(vec![EchoRequest::default(); 4]);
            let mut replies = client
                .bidi_stream(with_jobid(Request::new(msgs), "job"))
                .await
                .map_err(|s| fail("bidi", s))?
                .into_inner();
            let mut got = 0;
            while let Some(m) = replies.next().await {
                m.map_err(|s| fail("bidi", s))?;
                got += 1;
            }
            if got == 4 {
                Ok(())
            } else {
                Err(short("bidi", got, 4))
            }
        }
    }
}

/// A server stream of `count` replies `delay_ms` apart: it spans upgrades.
pub async fn long_stream(addr: SocketAddr, count: u32, delay_ms: u32) -> Result<u32, String> {
    let mut client = connect(addr).await;
    let req = EchoRequest {
        reply_count: count,
        delay_ms,
        ..Default::default()
    };
    let mut replies = client
        .server_stream(routed(req, "job"))
        .await
        .map_err(|s| format!("{s:?}"))?
        .into_inner();
    let mut got = 0;
    while let Some(m) = replies.next().await {
        m.map_err(|s| format!("after {got} replies: {s:?}"))?;
        got += 1;
    }
    Ok(got)
}
