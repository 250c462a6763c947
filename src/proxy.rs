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
//! The request head is forwarded as decoded: its field values are slices of the bytes read
//! (or of the HPACK table), copied once, into the upstream connection's output. Hop-by-hop
//! headers need no filter here: [`wire`](crate::wire) treats them as malformed on receipt
//! (RFC 9113 §8.2.2: `connection`, `keep-alive`, `proxy-connection`, `transfer-encoding`,
//! `upgrade`, and `te` other than `trailers`), so they never reach us.
//!
//! A call the target refused without processing it — REFUSED_STREAM, or a stream above the
//! last stream id of the target's GOAWAY — is sent again, once, on a fresh connection, as long
//! as its request head and the body received so far (up to `retry_buffer_bytes`) are still
//! held; they are let go as soon as the target answers. The client does not notice.
//!
//! Flow control is end to end: a data chunk's bytes are released back to its sender only once
//! the other side's window has taken them, so a slow reader slows its writer and ringway holds
//! at most one window of each stream. A reset on either side is passed to the other with its
//! reason (a client's CANCEL reaches the target as RST_STREAM(CANCEL)).

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::pin::pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures_util::future::{select, Either};

use crate::access_log::Entry;
use crate::metrics::Outcome;
use crate::shard::Shard;
use crate::status::{
    error_body, http_error, is_grpc, status_trailers, trailers_only, Code, GatewayError,
};
use crate::upstream::Lease;
use crate::wire::conn::{Chunk, Response};
use crate::wire::{
    Error, Fields, Incoming, Reason, RecvStream, Respond, ResponseFuture, SendStream,
};

/// What a call did, filled in as it goes and recorded once at its end.
struct CallStats {
    outcome: Cell<Outcome>,
    /// The gRPC status the client got, when the response carried one.
    status: Cell<Option<u8>>,
    bytes_in: Cell<u64>,
    bytes_out: Cell<u64>,
    /// Request bytes whose window was given back to the client.
    request_released: Cell<u64>,
    /// When the request went upstream.
    routed_at: Cell<Option<Instant>>,
    /// The request is a gRPC call (else ringway's own errors are answered as plain HTTP).
    grpc: Cell<bool>,
}

impl CallStats {
    fn new() -> CallStats {
        CallStats {
            outcome: Cell::new(Outcome::Routed),
            status: Cell::new(None),
            bytes_in: Cell::new(0),
            bytes_out: Cell::new(0),
            request_released: Cell::new(0),
            routed_at: Cell::new(None),
            grpc: Cell::new(true),
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
            GatewayError::UpstreamLost { .. } | GatewayError::TargetProtocolError { .. } => {
                Outcome::UpstreamReset
            }
        });
        self.status.set(Some(error.code() as u8));
    }

    /// Notes the `grpc-status` of headers or trailers going to the client.
    fn saw_status(&self, fields: &Fields) {
        if let Some(code) = fields
            .get(b"grpc-status")
            .and_then(|v| std::str::from_utf8(v).ok())
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
pub async fn serve(shard: Rc<Shard>, incoming: Incoming) {
    let started = Instant::now();
    shard.metrics.calls_in_flight.inc();
    let stats = CallStats::new();
    // What the access log needs is kept only for calls it will log (refcount clones).
    let logged = shard
        .access_log
        .as_ref()
        .filter(|log| log.sample())
        .map(|_| {
            let key = incoming.head.get(&shard.route_header).cloned();
            let path = incoming.head.get(b":path").cloned().unwrap_or_default();
            (path, key)
        });
    let target = forward(&shard, incoming, &stats).await;
    record(&shard, &stats, started, target.as_deref(), logged);
}

/// Routes and relays; returns the target the call went to, if it got that far.
async fn forward(shard: &Shard, incoming: Incoming, stats: &CallStats) -> Option<Rc<str>> {
    let Incoming {
        head,
        end,
        mut body,
        mut respond,
    } = incoming;
    stats.grpc.set(is_grpc(&head));
    let mut lease = match route(shard, &head).await {
        // The client went away while the route was looked up: the target is not bothered with
        // a call nobody waits for. (A client that opens hundreds of calls and closes its
        // connection would otherwise make ringway open and at once reset hundreds of streams
        // on the connection it shares with other clients — what targets guarding against
        // rapid reset answer with GOAWAY ENHANCE_YOUR_CALM.)
        Ok(_) if respond.is_closed() => {
            stats.outcome.set(Outcome::ClientCancel);
            return None;
        }
        Ok(lease) => lease,
        Err(error) => {
            stats.failed(&error);
            reply_error(&mut respond, &error, stats).await;
            // A failed dial still had a target: the access log names it.
            return match error {
                GatewayError::DialFailed { target, .. } => Some(target.into()),
                _ => None,
            };
        }
    };
    let limit = shard.config.upstream.retry_buffer_bytes;
    let replay = (limit > 0).then(|| shard.replays.take(limit));
    let replay = replay.as_ref().map(|r| &r.0);
    let mut retried = false;
    loop {
        // On a retry, the body received so far is sent from memory.
        let request_complete = if retried {
            let r = replay.expect("a retry needs the replay").borrow();
            r.ended && r.chunks.is_empty()
        } else {
            end
        };
        let (response, mut up_send) = match lease.send_request(&head, request_complete) {
            Ok(pair) => pair,
            Err(e) => {
                lease.retire();
                let error = GatewayError::UpstreamLost {
                    target: lease.authority().to_string(),
                    reason: e.to_string(),
                };
                stats.failed(&error);
                reply_error(&mut respond, &error, stats).await;
                return Some(lease.authority_rc());
            }
        };
        stats.routed_at.set(Some(Instant::now()));
        let mut request_complete = request_complete;
        if retried && !request_complete {
            // Send what the first target was given, without taking more from the client.
            let replay = replay.expect("a retry needs the replay");
            let (chunks, ended) = {
                let r = replay.borrow();
                (r.chunks.clone(), r.ended)
            };
            if resend(&mut up_send, chunks, ended).await.is_err() {
                stats.outcome.set(Outcome::UpstreamReset);
                respond.send_reset(Reason::REFUSED_STREAM);
                return Some(lease.authority_rc());
            }
            request_complete = ended;
        }
        let retry = (!retried).then_some(replay).flatten();
        let end = relay(
            &mut body,
            up_send,
            response,
            &mut respond,
            &lease,
            request_complete,
            stats,
            retry,
        )
        .await;
        if !matches!(end, RelayEnd::Refused) {
            return Some(lease.authority_rc());
        }
        // Refused unprocessed: once more, on another connection. The client's window for
        // what it sent so far is given back now; the replay is sent from memory.
        retried = true;
        shard.metrics.upstream_retries.inc();
        let unreleased = stats.bytes_in.get() - stats.request_released.get();
        if unreleased > 0 {
            body.release(unreleased as usize);
            stats.request_released.set(stats.bytes_in.get());
        }
        lease.retire();
        let pool = lease.pool().clone();
        drop(lease);
        lease = match pool.acquire().await {
            Ok(lease) => lease,
            Err(reason) => {
                let error = GatewayError::DialFailed {
                    target: pool.authority().to_string(),
                    reason,
                };
                stats.failed(&error);
                reply_error(&mut respond, &error, stats).await;
                return Some(pool.authority().into());
            }
        };
    }
}

/// What a retry needs of the request besides its head (which the call keeps anyway): the
/// body received so far, while it fits. Taken from the shard's [`ReplayPool`] and given back
/// when the call ends, so keeping it costs no allocation once the pool is warm.
#[derive(Default)]
pub struct Replay {
    chunks: Vec<Bytes>,
    buffered: usize,
    limit: usize,
    /// Too big, had trailers, or the target answered: no retry any more.
    spoiled: bool,
    /// The client's end of stream was received.
    ended: bool,
}

/// The shard's spare [`Replay`]s: their chunk lists keep their capacity.
#[derive(Default)]
pub struct ReplayPool {
    spare: RefCell<Vec<Replay>>,
}

/// Spares kept per shard; calls in flight beyond it allocate their own.
const REPLAY_SPARES: usize = 1024;

/// A [`Replay`] lent to one call, returned to the pool on drop.
pub struct LentReplay<'a>(RefCell<Replay>, &'a ReplayPool);

impl Drop for LentReplay<'_> {
    fn drop(&mut self) {
        let mut replay = std::mem::take(self.0.get_mut());
        let mut spare = self.1.spare.borrow_mut();
        if spare.len() < REPLAY_SPARES {
            replay.chunks.clear();
            spare.push(replay);
        }
    }
}

impl ReplayPool {
    fn take(&self, limit: usize) -> LentReplay<'_> {
        let mut r = self.spare.borrow_mut().pop().unwrap_or_default();
        r.buffered = 0;
        r.limit = limit;
        r.spoiled = false;
        r.ended = false;
        LentReplay(RefCell::new(r), self)
    }
}

impl Replay {
    /// Keeps a chunk (a reference to it: `Bytes` clones share the buffer).
    fn record(&mut self, data: &Bytes, end: bool) {
        if self.spoiled {
            return;
        }
        self.buffered += data.len();
        if self.buffered > self.limit {
            self.spoil();
            return;
        }
        self.chunks.push(data.clone());
        self.ended = end;
    }

    fn spoil(&mut self) {
        self.spoiled = true;
        self.chunks.clear();
    }
}

/// Sends a replayed body on the retry's stream, as its window allows.
async fn resend(up_send: &mut SendStream, chunks: Vec<Bytes>, ended: bool) -> Result<(), ()> {
    let count = chunks.len();
    for (i, mut data) in chunks.into_iter().enumerate() {
        let last = ended && i + 1 == count;
        if data.is_empty() {
            // Clients built on hyper (tonic among them) end a request with an empty DATA
            // frame: it carries the END_STREAM the target is waiting for.
            if last {
                up_send.send_data(&data, true).map_err(|_| ())?;
            }
            continue;
        }
        while !data.is_empty() {
            let granted = poll_fn(|cx| poll_granted(up_send, cx))
                .await
                .map_err(|_| ())?;
            let piece = data.split_to(granted.min(data.len()));
            up_send
                .send_data(&piece, last && data.is_empty())
                .map_err(|_| ())?;
        }
    }
    Ok(())
}

/// Counts the call, records its latency and writes its access-log line.
fn record(
    shard: &Shard,
    stats: &CallStats,
    started: Instant,
    target: Option<&str>,
    logged: Option<(Bytes, Option<Bytes>)>,
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
            method: &String::from_utf8_lossy(&method),
            key: key.as_deref().unwrap_or(&[][..]),
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
async fn route(shard: &Shard, head: &Fields) -> Result<Lease, GatewayError> {
    let value = head
        .get(&shard.route_header)
        .ok_or_else(|| GatewayError::MissingRouteHeader {
            header: String::from_utf8_lossy(&shard.route_header).into_owned(),
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
    /// The target refused the stream unprocessed, and a retry is possible.
    Refused,
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

/// How a relay ended.
enum RelayEnd {
    Done,
    /// Refused unprocessed: the caller retries.
    Refused,
}

/// Step 4: both directions at once. The request direction may end first (the usual case) or
/// last (a server-streaming target that answers before the client stops sending); when the
/// response has ended, whatever the client still sends is dropped.
#[allow(clippy::too_many_arguments)]
async fn relay(
    down_body: &mut RecvStream,
    mut up_send: SendStream,
    response: ResponseFuture,
    respond: &mut Respond,
    lease: &Lease,
    request_complete: bool,
    stats: &CallStats,
    replay: Option<&RefCell<Replay>>,
) -> RelayEnd {
    let end = {
        let request_side = pin!(async {
            if request_complete {
                return RequestEnd::Done;
            }
            match pump(down_body, &mut up_send, stats, Direction::Request, replay).await {
                Ok(()) => RequestEnd::Done,
                Err(PumpError::Source(e)) => {
                    // The client's reset reaches the target with its reason; a reset of
                    // ours (the client broke HTTP/2 on the stream) is a cancel to the target.
                    let reason = match e {
                        Error::Reset(reason) => reason,
                        _ => Reason::CANCEL,
                    };
                    up_send.send_reset(reason);
                    stats.outcome.set(Outcome::ClientCancel);
                    RequestEnd::ClientGone
                }
                Err(PumpError::SinkReset(_) | PumpError::Sink) => RequestEnd::TargetReset,
            }
        });
        let response_side = pin!(relay_response(response, respond, lease, stats, replay));
        match select(request_side, response_side).await {
            Either::Left((RequestEnd::ClientGone, _)) => ResponseEnd::Done,
            Either::Left((RequestEnd::Done | RequestEnd::TargetReset, response_side)) => {
                response_side.await
            }
            Either::Right((end, _)) => end,
        }
    };
    match end {
        ResponseEnd::Done => RelayEnd::Done,
        ResponseEnd::Refused => RelayEnd::Refused,
        ResponseEnd::ClientReset(reason) => {
            stats.outcome.set(Outcome::ClientCancel);
            up_send.send_reset(reason);
            RelayEnd::Done
        }
    }
}

/// The response direction: head, body, trailers — or the client's reset, whichever comes first.
async fn relay_response(
    response: ResponseFuture,
    respond: &mut Respond,
    lease: &Lease,
    stats: &CallStats,
    replay: Option<&RefCell<Replay>>,
) -> ResponseEnd {
    let stream_id = response.stream_id();
    let head = {
        let client_reset = poll_fn(|cx| respond.poll_reset(cx));
        match select(response, pin!(client_reset)).await {
            Either::Left((head, _)) => head,
            Either::Right((reason, _)) => return ResponseEnd::ClientReset(reason),
        }
    };
    let Response {
        head,
        end: trailers_only,
        body: mut up_body,
    } = match head {
        Ok(response) => response,
        Err(e) => {
            let refused = (e.is_reset() && e.reason() == Some(Reason::REFUSED_STREAM))
                || (e.is_go_away() && lease.never_processed(stream_id));
            if refused && replay.is_some_and(|r| !r.borrow().spoiled) {
                return ResponseEnd::Refused;
            }
            match e {
                // The target reset the stream (e.g. CANCEL, or REFUSED_STREAM): pass it on.
                Error::Reset(reason) => {
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
                    reply_error(respond, &error, stats).await;
                }
            }
            return ResponseEnd::Done;
        }
    };
    // The target answered: the call cannot be retried any more.
    if let Some(replay) = replay {
        replay.borrow_mut().spoil();
    }
    if trailers_only {
        stats.saw_status(&head);
    }
    let mut down_send = match respond.send_response(&head, trailers_only) {
        Ok(stream) => stream,
        // The client's stream is gone; dropping the upstream stream resets it.
        Err(_) => return ResponseEnd::ClientReset(Reason::CANCEL),
    };
    drop(head);
    if trailers_only {
        return ResponseEnd::Done;
    }
    match pump(
        &mut up_body,
        &mut down_send,
        stats,
        Direction::Response,
        None,
    )
    .await
    {
        Ok(()) => ResponseEnd::Done,
        Err(PumpError::Source(e)) => {
            stats.outcome.set(Outcome::UpstreamReset);
            match e {
                Error::Reset(reason) => down_send.send_reset(reason),
                // ringway reset the target's stream: the target broke HTTP/2 on it (sent
                // beyond its window, a malformed frame). The connection goes on.
                Error::LocalReset(reason) => {
                    let message = GatewayError::TargetProtocolError {
                        target: lease.authority().to_string(),
                        reason: describe_reset(reason),
                    }
                    .to_string();
                    stats.status.set(Some(Code::Unavailable as u8));
                    let _ = down_send.send_trailers(&status_trailers(Code::Unavailable, &message));
                }
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
                    let _ = down_send.send_trailers(&status_trailers(Code::Unavailable, &message));
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
    Source(Error),
    /// The sink's stream was reset (by its peer, or it failed).
    SinkReset(Reason),
    /// Writing to the sink failed for another reason (its stream or connection is gone).
    Sink,
}

/// Copies one direction's DATA frames and trailers from `src` to `dst`, releasing each byte's
/// flow-control capacity to `src`'s sender only after `dst`'s window accepted it.
async fn pump(
    src: &mut RecvStream,
    dst: &mut SendStream,
    stats: &CallStats,
    direction: Direction,
    replay: Option<&RefCell<Replay>>,
) -> Result<(), PumpError> {
    let (bytes, released) = match direction {
        Direction::Request => (&stats.bytes_in, Some(&stats.request_released)),
        Direction::Response => (&stats.bytes_out, None),
    };
    loop {
        // Wait for data, or for the sink's peer to reset: a reset must not wait for data.
        let next = poll_fn(|cx| {
            if let Poll::Ready(reason) = dst.poll_reset(cx) {
                return Poll::Ready(Err(PumpError::SinkReset(reason)));
            }
            src.poll_recv(cx).map_err(PumpError::Source)
        })
        .await?;
        match next {
            Some(Chunk::Data(data, end)) => {
                bytes.set(bytes.get() + data.len() as u64);
                if let Some(replay) = replay {
                    replay.borrow_mut().record(&data, end);
                }
                forward_chunk(src, dst, data, end, released).await?;
                if end {
                    return Ok(());
                }
            }
            Some(Chunk::Trailers(trailers)) => {
                if let Some(replay) = replay {
                    // Request trailers are rare in gRPC; not worth replaying.
                    replay.borrow_mut().spoil();
                }
                if let Direction::Response = direction {
                    stats.saw_status(&trailers);
                }
                return dst.send_trailers(&trailers).map_err(|_| PumpError::Sink);
            }
            // Ended by a frame already passed on (END_STREAM on DATA).
            None => return Ok(()),
        }
    }
}

/// Sends one chunk as the sink's window allows, in pieces if it must, giving each piece's
/// window back to the source's sender once the sink took it.
async fn forward_chunk(
    src: &mut RecvStream,
    dst: &mut SendStream,
    mut data: Bytes,
    end: bool,
    released: Option<&Cell<u64>>,
) -> Result<(), PumpError> {
    if data.is_empty() {
        return if end {
            dst.send_data(&data, true).map_err(|_| PumpError::Sink)
        } else {
            Ok(())
        };
    }
    while !data.is_empty() {
        let granted = poll_fn(|cx| poll_granted(dst, cx)).await?;
        let piece = data.split_to(granted.min(data.len()));
        let n = piece.len();
        dst.send_data(&piece, end && data.is_empty())
            .map_err(|_| PumpError::Sink)?;
        src.release(n);
        if let Some(released) = released {
            released.set(released.get() + n as u64);
        }
    }
    Ok(())
}

/// Ready with the sink's send capacity once it has some, or the reason it never will.
fn poll_granted(dst: &mut SendStream, cx: &mut Context<'_>) -> Poll<Result<usize, PumpError>> {
    match dst.poll_capacity(cx) {
        Poll::Ready(Ok(n)) => Poll::Ready(Ok(n)),
        Poll::Ready(Err(e)) => Poll::Ready(Err(match e {
            Error::Reset(reason) | Error::LocalReset(reason) => PumpError::SinkReset(reason),
            _ => PumpError::Sink,
        })),
        Poll::Pending => Poll::Pending,
    }
}

/// Answers the call with a gateway error: a trailers-only gRPC response, or for a request that
/// is not gRPC an HTTP error status with the message as its body.
async fn reply_error(respond: &mut Respond, error: &GatewayError, stats: &CallStats) {
    let message = error.to_string();
    if stats.grpc.get() {
        // An error here means the client already reset the stream; nothing is left to tell it.
        let _ = respond.send_response(&trailers_only(error.code(), &message), true);
        return;
    }
    let Ok(mut send) = respond.send_response(&http_error(error.code(), &message), false) else {
        return;
    };
    let mut body = error_body(&message);
    // The body is sent as the client's windows allow; a client that resets gets no more.
    while !body.is_empty() {
        let Ok(granted) = poll_fn(|cx| poll_granted(&mut send, cx)).await else {
            return;
        };
        let piece = body.split_to(granted.min(body.len()));
        if send.send_data(&piece, body.is_empty()).is_err() {
            return;
        }
    }
}

/// Why ringway reset a target's stream, for the client's message.
fn describe_reset(reason: Reason) -> String {
    match reason {
        Reason::FLOW_CONTROL_ERROR => format!(
            "it sent DATA beyond the flow-control window ringway gave it ({reason}); the call's \
             stream was reset"
        ),
        _ => format!("ringway reset the call's stream ({reason})"),
    }
}
