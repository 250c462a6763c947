//! One call: downstream stream → route → upstream stream, then bodies and trailers both ways.
//!
//! The path of a call:
//! 1. read the routing header; none → INVALID_ARGUMENT;
//! 2. resolve it through the shard's [`Router`](crate::route::Router) (Redis);
//! 3. pick a target ([`Upstreams::pick`](crate::upstream::Upstreams::pick)) and lease a stream on
//!    one of the shard's HTTP/2 connections to it (dialing if the pool says so);
//! 4. send the request head upstream unchanged — method, path, `:authority`, metadata,
//!    `grpc-timeout` — then relay both directions at once until both have ended.
//!
//! Headers are moved, not copied. Hop-by-hop headers need no filter here: h2 treats them as
//! malformed on receipt (RFC 9113 §8.2.2: `connection`, `keep-alive`, `proxy-connection`,
//! `transfer-encoding`, `upgrade`, and `te` other than `trailers`), so they never reach us.
//!
//! Flow control is end to end: a data chunk's bytes are released back to its sender only once
//! the other side's window has taken them, so a slow reader slows its writer and ringway holds
//! at most one window of each stream. A reset on either side is passed to the other with its
//! reason (a client's CANCEL reaches the target as RST_STREAM(CANCEL)).

use std::cell::Cell;
use std::future::poll_fn;
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Instant;

use bytes::Bytes;
use futures_util::future::{select, Either};
use h2::client::ResponseFuture;
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use http::{HeaderMap, HeaderName, Request, Response};

use crate::access_log::Entry;
use crate::metrics::Outcome;
use crate::shard::Shard;
use crate::status::{status_trailers, trailers_only, Code, GatewayError};
use crate::upstream::Lease;

const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// What a call did, filled in as it goes and recorded once at its end.
struct CallStats {
    outcome: Cell<Outcome>,
    /// The gRPC status the client got, when the response carried one.
    status: Cell<Option<u8>>,
    bytes_in: Cell<u64>,
    bytes_out: Cell<u64>,
    /// When the request went upstream.
    routed_at: Cell<Option<Instant>>,
}

impl CallStats {
    fn new() -> CallStats {
        CallStats {
            outcome: Cell::new(Outcome::Routed),
            status: Cell::new(None),
            bytes_in: Cell::new(0),
            bytes_out: Cell::new(0),
            routed_at: Cell::new(None),
        }
    }

    fn failed(&self, error: &GatewayError) {
        self.outcome.set(match error {
            GatewayError::MissingRouteHeader { .. } => Outcome::NoHeader,
            GatewayError::RouteNotFound { .. } => Outcome::NotFound,
            GatewayError::RedisUnavailable { .. }
            | GatewayError::LookupTimeout { .. }
            | GatewayError::RedisError { .. } => Outcome::RedisError,
            GatewayError::MalformedRoute { .. } => Outcome::Malformed,
            GatewayError::DialFailed { .. } => Outcome::DialError,
            GatewayError::UpstreamLost { .. } => Outcome::UpstreamReset,
        });
        self.status.set(Some(error.code() as u8));
    }

    /// Notes the `grpc-status` of headers or trailers going to the client.
    fn saw_status(&self, headers: &HeaderMap) {
        if let Some(code) = headers
            .get(&GRPC_STATUS)
            .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
            .and_then(|v| v.parse::<u8>().ok())
        {
            self.status.set(Some(code));
        }
    }
}

/// Direction of a pump, for byte accounting.
#[derive(Clone, Copy)]
enum Direction {
    Request,
    Response,
}

/// Serves one downstream call to its end. Never panics on what a peer sends; every failure ends
/// in a gRPC status or a reset on the stream it concerns.
pub async fn serve(shard: Rc<Shard>, request: Request<RecvStream>, respond: SendResponse<Bytes>) {
    let started = Instant::now();
    shard.metrics.calls_in_flight.inc();
    let stats = CallStats::new();
    // What the access log needs is kept only for calls it will log: refcount clones, no copy.
    let logged = shard
        .access_log
        .as_ref()
        .filter(|log| log.sample())
        .map(|_| {
            let key = request.headers().get(&shard.route_header).cloned();
            (request.uri().path().to_string(), key)
        });
    let target = forward(&shard, request, respond, &stats).await;
    record(&shard, &stats, started, target.as_deref(), logged);
}

/// Routes and relays; returns the target the call went to, if it got that far.
async fn forward(
    shard: &Shard,
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    stats: &CallStats,
) -> Option<Rc<str>> {
    let (head, body) = request.into_parts();
    let mut lease = match route(shard, &head).await {
        Ok(lease) => lease,
        Err(error) => {
            stats.failed(&error);
            reply_error(&mut respond, &error);
            return None;
        }
    };
    let target = lease.authority_rc();
    let end_of_stream = body.is_end_stream();
    let (response, up_body) = match lease
        .send
        .send_request(Request::from_parts(head, ()), end_of_stream)
    {
        Ok(pair) => pair,
        Err(e) => {
            lease.retire();
            let error = GatewayError::UpstreamLost {
                target: lease.authority().to_string(),
                reason: e.to_string(),
            };
            stats.failed(&error);
            reply_error(&mut respond, &error);
            return Some(target);
        }
    };
    stats.routed_at.set(Some(Instant::now()));
    relay(
        body,
        up_body,
        response,
        respond,
        &lease,
        end_of_stream,
        stats,
    )
    .await;
    Some(target)
}

/// Counts the call, records its latency and writes its access-log line.
fn record(
    shard: &Shard,
    stats: &CallStats,
    started: Instant,
    target: Option<&str>,
    logged: Option<(String, Option<http::HeaderValue>)>,
) {
    let m = &shard.metrics;
    m.calls_in_flight.dec();
    let outcome = stats.outcome.get();
    m.outcome(outcome).inc();
    if let Some(code) = stats.status.get() {
        if let Some(counter) = m.calls_by_status.get(code as usize) {
            counter.inc();
        }
    }
    m.request_bytes.add(stats.bytes_in.get());
    m.response_bytes.add(stats.bytes_out.get());
    let now = Instant::now();
    let total_us = now.duration_since(started).as_micros() as u64;
    {
        let mut latency = shard.latency.borrow_mut();
        latency.total.saturating_record(total_us.max(1));
        if let Some(routed_at) = stats.routed_at.get() {
            let overhead = routed_at.duration_since(started).as_micros() as u64;
            latency.overhead.saturating_record(overhead.max(1));
        }
    }
    if let (Some(log), Some((method, key))) = (&shard.access_log, logged) {
        log.record(&Entry {
            shard: shard.id,
            method: &method,
            key: key.as_ref().map_or(&[][..], |k| k.as_bytes()),
            target: target.unwrap_or(""),
            status: stats.status.get(),
            outcome: outcome.label(),
            duration_us: total_us,
            bytes_in: stats.bytes_in.get(),
            bytes_out: stats.bytes_out.get(),
        });
    }
}

/// Steps 1–3: header → route → a leased stream on a connection to one of its targets.
async fn route(shard: &Shard, head: &http::request::Parts) -> Result<Lease, GatewayError> {
    let value =
        head.headers
            .get(&shard.route_header)
            .ok_or_else(|| GatewayError::MissingRouteHeader {
                header: shard.route_header.to_string(),
            })?;
    let asked = Instant::now();
    let route = shard.router.resolve(value).await;
    let lookup_us = asked.elapsed().as_micros() as u64;
    shard
        .latency
        .borrow_mut()
        .lookup
        .saturating_record(lookup_us.max(1));
    let route = route?;
    let pool = shard.upstreams.pick(&route);
    pool.acquire()
        .await
        .map_err(|reason| GatewayError::DialFailed {
            target: pool.authority().to_string(),
            reason,
        })
}

/// How the response direction ended.
enum ResponseEnd {
    /// Completed, or failed with a status or reset already sent to the client.
    Done,
    /// The client reset its stream; the upstream stream must be reset with this reason.
    ClientReset(Reason),
}

/// How the request direction ended.
enum RequestEnd {
    /// Every request byte and the end of stream reached the target.
    Done,
    /// The client reset or broke its stream; the upstream stream was reset.
    ClientGone,
    /// The target reset the request stream; the response side reports it.
    TargetReset,
}

/// Step 4: both directions at once. The request direction may end first (the usual case) or
/// last (a server-streaming target that answers before the client stops sending); when the
/// response has ended, whatever the client still sends is dropped.
async fn relay(
    mut down_body: RecvStream,
    mut up_send: SendStream<Bytes>,
    response: ResponseFuture,
    mut respond: SendResponse<Bytes>,
    lease: &Lease,
    request_complete: bool,
    stats: &CallStats,
) {
    let reset_upstream = {
        let request_side = pin!(async {
            if request_complete {
                return RequestEnd::Done;
            }
            match pump(&mut down_body, &mut up_send, stats, Direction::Request).await {
                Ok(()) => RequestEnd::Done,
                Err(PumpError::Source(e)) => {
                    up_send.send_reset(e.reason().unwrap_or(Reason::CANCEL));
                    stats.outcome.set(Outcome::ClientCancel);
                    RequestEnd::ClientGone
                }
                Err(PumpError::SinkReset(_) | PumpError::Sink) => RequestEnd::TargetReset,
            }
        });
        let response_side = pin!(relay_response(response, &mut respond, lease, stats));
        match select(request_side, response_side).await {
            Either::Left((RequestEnd::ClientGone, _)) => None,
            Either::Left((RequestEnd::Done | RequestEnd::TargetReset, response_side)) => {
                match response_side.await {
                    ResponseEnd::Done => None,
                    ResponseEnd::ClientReset(reason) => Some(reason),
                }
            }
            Either::Right((ResponseEnd::Done, _)) => None,
            Either::Right((ResponseEnd::ClientReset(reason), _)) => Some(reason),
        }
    };
    if let Some(reason) = reset_upstream {
        stats.outcome.set(Outcome::ClientCancel);
        up_send.send_reset(reason);
    }
}

/// The response direction: head, body, trailers — or the client's reset, whichever comes first.
async fn relay_response(
    response: ResponseFuture,
    respond: &mut SendResponse<Bytes>,
    lease: &Lease,
    stats: &CallStats,
) -> ResponseEnd {
    let head = {
        let client_reset = poll_fn(|cx| respond.poll_reset(cx));
        match select(response, pin!(client_reset)).await {
            Either::Left((head, _)) => head,
            Either::Right((reason, _)) => {
                return ResponseEnd::ClientReset(reason.unwrap_or(Reason::CANCEL))
            }
        }
    };
    let head = match head {
        Ok(head) => head,
        Err(e) => {
            match e.reason() {
                // The target reset the stream (e.g. CANCEL, or REFUSED_STREAM): pass it on.
                Some(reason) if e.is_reset() => {
                    stats.outcome.set(Outcome::UpstreamReset);
                    respond.send_reset(reason);
                }
                // The connection failed or went away before answering.
                _ => {
                    lease.retire();
                    let error = GatewayError::UpstreamLost {
                        target: lease.authority().to_string(),
                        reason: e.to_string(),
                    };
                    stats.failed(&error);
                    reply_error(respond, &error);
                }
            }
            return ResponseEnd::Done;
        }
    };
    let (parts, mut up_body) = head.into_parts();
    let trailers_only = up_body.is_end_stream();
    if trailers_only {
        stats.saw_status(&parts.headers);
    }
    let mut down_send = match respond.send_response(Response::from_parts(parts, ()), trailers_only)
    {
        Ok(stream) => stream,
        // The client's stream is gone; dropping the upstream stream resets it.
        Err(_) => return ResponseEnd::ClientReset(Reason::CANCEL),
    };
    if trailers_only {
        return ResponseEnd::Done;
    }
    match pump(&mut up_body, &mut down_send, stats, Direction::Response).await {
        Ok(()) => ResponseEnd::Done,
        Err(PumpError::Source(e)) => {
            stats.outcome.set(Outcome::UpstreamReset);
            match e.reason() {
                Some(reason) if e.is_reset() => down_send.send_reset(reason),
                // Not a reset: the connection broke mid-response. End the call with a status
                // the client can act on instead of a bare reset.
                _ => {
                    lease.retire();
                    let message = GatewayError::UpstreamLost {
                        target: lease.authority().to_string(),
                        reason: e.to_string(),
                    }
                    .to_string();
                    stats.status.set(Some(Code::Unavailable as u8));
                    let _ = down_send.send_trailers(status_trailers(Code::Unavailable, &message));
                }
            }
            ResponseEnd::Done
        }
        Err(PumpError::SinkReset(reason)) => ResponseEnd::ClientReset(reason),
        Err(PumpError::Sink) => ResponseEnd::ClientReset(Reason::CANCEL),
    }
}

/// Why a pump stopped early.
enum PumpError {
    /// Reading from the source failed (its peer reset the stream or the connection broke).
    Source(h2::Error),
    /// The sink's peer reset the stream.
    SinkReset(Reason),
    /// Writing to the sink failed for another reason (its stream or connection is gone).
    Sink,
}

/// Copies one direction's DATA frames and trailers from `src` to `dst`, releasing each byte's
/// flow-control capacity to `src`'s sender only after `dst`'s window accepted it.
async fn pump(
    src: &mut RecvStream,
    dst: &mut SendStream<Bytes>,
    stats: &CallStats,
    direction: Direction,
) -> Result<(), PumpError> {
    let bytes = match direction {
        Direction::Request => &stats.bytes_in,
        Direction::Response => &stats.bytes_out,
    };
    loop {
        // Wait for data, or for the sink's peer to reset: a reset must not wait for data.
        let next = poll_fn(|cx| {
            if let Poll::Ready(reason) = dst.poll_reset(cx) {
                return Poll::Ready(Err(PumpError::SinkReset(reason.unwrap_or(Reason::CANCEL))));
            }
            src.poll_data(cx).map(Ok)
        })
        .await?;
        match next {
            Some(Ok(data)) => {
                let end = src.is_end_stream();
                bytes.set(bytes.get() + data.len() as u64);
                forward_chunk(src, dst, data, end).await?;
                if end {
                    return Ok(());
                }
            }
            Some(Err(e)) => return Err(PumpError::Source(e)),
            None => {
                let trailers = poll_fn(|cx| src.poll_trailers(cx))
                    .await
                    .map_err(PumpError::Source)?;
                let sent = match trailers {
                    Some(trailers) => {
                        if let Direction::Response = direction {
                            stats.saw_status(&trailers);
                        }
                        dst.send_trailers(trailers)
                    }
                    None => dst.send_data(Bytes::new(), true),
                };
                return sent.map_err(|_| PumpError::Sink);
            }
        }
    }
}

/// Sends one chunk as the sink's window allows, in pieces if it must.
async fn forward_chunk(
    src: &mut RecvStream,
    dst: &mut SendStream<Bytes>,
    mut data: Bytes,
    end: bool,
) -> Result<(), PumpError> {
    if data.is_empty() {
        return if end {
            dst.send_data(data, true).map_err(|_| PumpError::Sink)
        } else {
            Ok(())
        };
    }
    while !data.is_empty() {
        dst.reserve_capacity(data.len());
        let granted = poll_fn(|cx| loop {
            if let Poll::Ready(reason) = dst.poll_reset(cx) {
                return Poll::Ready(Err(PumpError::SinkReset(reason.unwrap_or(Reason::CANCEL))));
            }
            let available = dst.capacity();
            if available > 0 {
                return Poll::Ready(Ok(available));
            }
            match dst.poll_capacity(cx) {
                Poll::Ready(Some(Ok(0))) => continue,
                Poll::Ready(Some(Ok(n))) => return Poll::Ready(Ok(n)),
                Poll::Ready(Some(Err(_))) => return Poll::Ready(Err(PumpError::Sink)),
                Poll::Ready(None) => return Poll::Ready(Err(PumpError::SinkReset(Reason::CANCEL))),
                Poll::Pending => return Poll::Pending,
            }
        })
        .await?;
        let piece = data.split_to(granted.min(data.len()));
        let n = piece.len();
        dst.send_data(piece, end && data.is_empty())
            .map_err(|_| PumpError::Sink)?;
        // The source's peer may have gone meanwhile; its window no longer matters then.
        let _ = src.flow_control().release_capacity(n);
    }
    Ok(())
}

/// Answers the call with a gateway error as a trailers-only response.
fn reply_error(respond: &mut SendResponse<Bytes>, error: &GatewayError) {
    let response = trailers_only(error.code(), &error.to_string());
    // An error here means the client already reset the stream; nothing is left to tell it.
    let _ = respond.send_response(response, true);
}
