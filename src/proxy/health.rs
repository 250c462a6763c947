//! The standard gRPC health service (`grpc.health.v1.Health`, `Check` and `Watch`), answered
//! by ringway itself for a call without a routing header, so gRPC-aware balancers and
//! Kubernetes gRPC probes can ask the gateway, not a target, whether it serves.
//!
//! The overall service (`""`, what probes ask) is SERVING while this shard has its Redis
//! connection and the process is not draining, NOT_SERVING otherwise — the same as `/readyz`
//! for this shard. Any other service name is unknown: `Check` answers NOT_FOUND, `Watch`
//! SERVICE_UNKNOWN (grpc/grpc `doc/health-checking.md`). `Watch` sends the status at once and
//! again whenever it changes (checked every [`POLL_INTERVAL`]); when the drain starts it
//! sends NOT_SERVING and ends the stream with UNAVAILABLE, so a watch never holds the drain.
//! A call *with* a routing header on these paths is routed like any other.
//!
//! The messages are tiny and fixed: `HealthCheckRequest { string service = 1; }` and
//! `HealthCheckResponse { ServingStatus status = 1; }`, read and written here by hand.

use std::future::poll_fn;
use std::task::Poll;

use bytes::{BufMut, Bytes, BytesMut};

use super::{poll_granted, CallStats, Proxy};
use crate::metrics::Outcome;
use crate::shutdown::POLL_INTERVAL;
use crate::status::{status_trailers, trailers_only, Code};
use crate::wire::{Chunk, Fields, RecvStream, Respond, SendStream};

/// The two methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Method {
    Check,
    Watch,
}

impl Method {
    /// The health method a request head calls, when ringway answers it itself: the path, and
    /// no routing header.
    pub(super) fn of(head: &Fields, route_header: &[u8]) -> Option<Method> {
        let method = match head.get(b":path")?.as_ref() {
            b"/grpc.health.v1.Health/Check" => Method::Check,
            b"/grpc.health.v1.Health/Watch" => Method::Watch,
            _ => return None,
        };
        head.get(route_header).is_none().then_some(method)
    }
}

/// `HealthCheckResponse.ServingStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Serving = 1,
    NotServing = 2,
    ServiceUnknown = 3,
}

/// The largest request accepted: a service name is a few dozen bytes.
const MAX_REQUEST: usize = 4096;

/// Open `Watch` calls per shard at most. Each re-checks the status every [`POLL_INTERVAL`]: a
/// balancer needs a handful, and clients opening thousands cannot make the shard spend its
/// time waking them (past the cap: RESOURCE_EXHAUSTED).
pub(super) const MAX_WATCHES: usize = 1024;

/// Answers one health call to its end.
pub(super) async fn serve(
    proxy: &Proxy,
    method: Method,
    mut body: RecvStream,
    end: bool,
    mut respond: Respond,
    stats: &CallStats,
) {
    stats.outcome.set(Outcome::Health);
    let service = match read_request(&mut body, end).await {
        Ok(service) => service,
        Err((code, message)) => {
            stats.status.set(Some(code as u8));
            let _ = respond.send_response(&trailers_only(code, message), true);
            return;
        }
    };
    let known = service.is_empty();
    if method == Method::Check && !known {
        stats.status.set(Some(Code::NotFound as u8));
        let message = format!(
            "unknown service `{}`: ringway reports the overall service (\"\") only",
            String::from_utf8_lossy(&service)
        );
        let _ = respond.send_response(&trailers_only(Code::NotFound, &message), true);
        return;
    }
    let status = |proxy: &Proxy| {
        if !known {
            Status::ServiceUnknown
        } else if proxy.serving() {
            Status::Serving
        } else {
            Status::NotServing
        }
    };
    let _watching = match method {
        Method::Watch => match Watching::start(proxy) {
            Some(watching) => Some(watching),
            None => {
                stats.status.set(Some(Code::ResourceExhausted as u8));
                let message = format!("more than {MAX_WATCHES} health watches on this shard");
                let _ =
                    respond.send_response(&trailers_only(Code::ResourceExhausted, &message), true);
                return;
            }
        },
        Method::Check => None,
    };
    let Ok(mut send) = respond.send_response(&response_head(), false) else {
        return;
    };
    let mut sent = status(proxy);
    if send_status(&mut send, sent, stats).await.is_err() {
        return;
    }
    if method == Method::Check {
        stats.status.set(Some(Code::Ok as u8));
        let _ = send.send_trailers(&status_trailers(Code::Ok, ""));
        return;
    }
    // `_watching` counts this call until it returns.
    loop {
        let reset = poll_fn(|cx| match send.poll_reset(cx) {
            Poll::Ready(_) => Poll::Ready(()),
            Poll::Pending => Poll::Pending,
        });
        monoio::select! {
            _ = reset => {
                stats.outcome.set(Outcome::ClientCancel);
                return;
            }
            _ = monoio::time::sleep(POLL_INTERVAL) => {}
        }
        let now = status(proxy);
        if now != sent {
            sent = now;
            if send_status(&mut send, now, stats).await.is_err() {
                return;
            }
        }
        if proxy.drain.is_draining() {
            stats.status.set(Some(Code::Unavailable as u8));
            let trailers = status_trailers(Code::Unavailable, "ringway is draining");
            let _ = send.send_trailers(&trailers);
            return;
        }
    }
}

/// One open `Watch`, counted against [`MAX_WATCHES`] until it ends.
struct Watching<'a>(&'a std::cell::Cell<usize>);

impl<'a> Watching<'a> {
    fn start(proxy: &'a Proxy) -> Option<Watching<'a>> {
        let open = &proxy.health_watches;
        (open.get() < MAX_WATCHES).then(|| {
            open.set(open.get() + 1);
            Watching(open)
        })
    }
}

impl Drop for Watching<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// The request's `service`, read to the end of the request (a client's half-close). A
/// malformed or oversized request is the error to answer with.
async fn read_request(body: &mut RecvStream, mut end: bool) -> Result<Bytes, (Code, &'static str)> {
    let mut received = BytesMut::new();
    while !end {
        match poll_fn(|cx| body.poll_recv(cx)).await {
            Ok(Some(Chunk::Data(data, last))) => {
                body.release(data.len());
                if received.len() + data.len() > MAX_REQUEST {
                    return Err((Code::ResourceExhausted, "health check request too large"));
                }
                received.put_slice(&data);
                end = last;
            }
            Ok(Some(Chunk::Trailers(_))) | Ok(None) => end = true,
            Err(_) => return Err((Code::Cancelled, "health check request not received")),
        }
    }
    let message = match received.as_ref() {
        [] => &[][..],
        [0, a, b, c, d, rest @ ..] => {
            let len = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
            if len != rest.len() {
                return Err((Code::InvalidArgument, "not one whole gRPC message"));
            }
            rest
        }
        [1, ..] => return Err((Code::Unimplemented, "compressed health check request")),
        _ => return Err((Code::InvalidArgument, "not one whole gRPC message")),
    };
    service_field(message).ok_or((Code::InvalidArgument, "malformed HealthCheckRequest"))
}

/// Field 1 (`service`, a string) of a `HealthCheckRequest`; other fields are skipped as
/// protobuf says. `None`: malformed.
fn service_field(mut message: &[u8]) -> Option<Bytes> {
    let mut service = Bytes::new();
    while !message.is_empty() {
        let key = varint(&mut message)?;
        match key & 7 {
            0 => {
                varint(&mut message)?;
            }
            1 => message = message.get(8..)?,
            2 => {
                let len = usize::try_from(varint(&mut message)?).ok()?;
                let value = message.get(..len)?;
                if key >> 3 == 1 {
                    std::str::from_utf8(value).ok()?;
                    service = Bytes::copy_from_slice(value);
                }
                message = &message[len..];
            }
            5 => message = message.get(4..)?,
            _ => return None,
        }
    }
    Some(service)
}

/// A protobuf varint off the front of `bytes`.
fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for i in 0..10 {
        let b = *bytes.get(i)?;
        value |= ((b & 0x7f) as u64) << (7 * i);
        if b & 0x80 == 0 {
            *bytes = &bytes[i + 1..];
            return Some(value);
        }
    }
    None
}

fn response_head() -> Fields {
    let mut head = Fields::new();
    head.push(Bytes::from_static(b":status"), Bytes::from_static(b"200"));
    head.push(
        Bytes::from_static(b"content-type"),
        Bytes::from_static(b"application/grpc"),
    );
    head
}

/// Sends one `HealthCheckResponse` as the client's windows allow.
async fn send_status(send: &mut SendStream, status: Status, stats: &CallStats) -> Result<(), ()> {
    // The gRPC prefix (not compressed, length 2), then field 1 as a varint.
    let message = [0, 0, 0, 0, 2, 0x08, status as u8];
    let mut sent = 0;
    while sent < message.len() {
        let granted = poll_fn(|cx| poll_granted(send, cx)).await.map_err(|_| ())?;
        let piece = &message[sent..(sent + granted).min(message.len())];
        send.send_data(piece, false).map_err(|_| ())?;
        sent += piece.len();
    }
    stats
        .bytes_out
        .set(stats.bytes_out.get() + message.len() as u64);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_field_is_read_and_others_skipped() {
        assert_eq!(service_field(&[]), Some(Bytes::new()));
        assert_eq!(
            service_field(b"\x0a\x03abc"),
            Some(Bytes::from_static(b"abc"))
        );
        // An unknown varint field, a fixed64 and a fixed32 around it.
        assert_eq!(
            service_field(
                b"\x10\x96\x01\x0a\x01x\x19\x01\x02\x03\x04\x05\x06\x07\x08\x25\x01\x02\x03\x04"
            ),
            Some(Bytes::from_static(b"x"))
        );
        assert_eq!(service_field(b"\x0a\x05ab"), None, "truncated");
        assert_eq!(service_field(b"\x0a\x02\xff\xfe"), None, "not UTF-8");
        assert_eq!(service_field(b"\x0b"), None, "group wire type");
        assert_eq!(service_field(&[0x80; 11]), None, "endless varint");
    }
}
