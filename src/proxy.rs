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

use std::future::poll_fn;
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;

use bytes::Bytes;
use futures_util::future::{select, Either};
use h2::client::ResponseFuture;
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use http::{Request, Response};

use crate::shard::Shard;
use crate::status::{status_trailers, trailers_only, Code, GatewayError};
use crate::upstream::Lease;

/// Serves one downstream call to its end. Never panics on what a peer sends; every failure ends
/// in a gRPC status or a reset on the stream it concerns.
pub async fn serve(
    shard: Rc<Shard>,
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
) {
    let (head, body) = request.into_parts();
    let mut lease = match route(&shard, &head).await {
        Ok(lease) => lease,
        Err(error) => return reply_error(&mut respond, &error),
    };
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
            return reply_error(&mut respond, &error);
        }
    };
    relay(body, up_body, response, respond, &lease, end_of_stream).await;
}

/// Steps 1–3: header → route → a leased stream on a connection to one of its targets.
async fn route(shard: &Shard, head: &http::request::Parts) -> Result<Lease, GatewayError> {
    let value =
        head.headers
            .get(&shard.route_header)
            .ok_or_else(|| GatewayError::MissingRouteHeader {
                header: shard.route_header.to_string(),
            })?;
    let route = shard.router.resolve(value).await?;
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
) {
    let reset_upstream = {
        let request_side = pin!(async {
            if request_complete {
                return RequestEnd::Done;
            }
            match pump(&mut down_body, &mut up_send).await {
                Ok(()) => RequestEnd::Done,
                Err(PumpError::Source(e)) => {
                    up_send.send_reset(e.reason().unwrap_or(Reason::CANCEL));
                    RequestEnd::ClientGone
                }
                Err(PumpError::SinkReset(_) | PumpError::Sink) => RequestEnd::TargetReset,
            }
        });
        let response_side = pin!(relay_response(response, &mut respond, lease));
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
        up_send.send_reset(reason);
    }
}

/// The response direction: head, body, trailers — or the client's reset, whichever comes first.
async fn relay_response(
    response: ResponseFuture,
    respond: &mut SendResponse<Bytes>,
    lease: &Lease,
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
                Some(reason) if e.is_reset() => respond.send_reset(reason),
                // The connection failed or went away before answering.
                _ => {
                    lease.retire();
                    let error = GatewayError::UpstreamLost {
                        target: lease.authority().to_string(),
                        reason: e.to_string(),
                    };
                    reply_error(respond, &error);
                }
            }
            return ResponseEnd::Done;
        }
    };
    let (parts, mut up_body) = head.into_parts();
    let trailers_only = up_body.is_end_stream();
    let mut down_send = match respond.send_response(Response::from_parts(parts, ()), trailers_only)
    {
        Ok(stream) => stream,
        // The client's stream is gone; dropping the upstream stream resets it.
        Err(_) => return ResponseEnd::ClientReset(Reason::CANCEL),
    };
    if trailers_only {
        return ResponseEnd::Done;
    }
    match pump(&mut up_body, &mut down_send).await {
        Ok(()) => ResponseEnd::Done,
        Err(PumpError::Source(e)) => {
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
async fn pump(src: &mut RecvStream, dst: &mut SendStream<Bytes>) -> Result<(), PumpError> {
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
                forward(src, dst, data, end).await?;
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
                    Some(trailers) => dst.send_trailers(trailers),
                    None => dst.send_data(Bytes::new(), true),
                };
                return sent.map_err(|_| PumpError::Sink);
            }
        }
    }
}

/// Sends one chunk as the sink's window allows, in pieces if it must.
async fn forward(
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
