//! Step 4 of a call: relaying both directions at once — DATA frames and trailers, flow control
//! end to end, resets passed across.
//!
//! A data chunk's bytes are released back to its sender only once the other side's window
//! has taken them, so a slow reader slows its writer and ringway holds at most one window of
//! each stream. A reset on either side is passed to the other with its reason (a client's
//! CANCEL reaches the target as RST_STREAM(CANCEL)).

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::pin::pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::{select, Either};

use super::replay::{is_retryable, Replay};
use super::reply_error;
use super::stats::CallStats;
use crate::metrics::Outcome;
use crate::status::{status_trailers, Code, GatewayError};
use crate::upstream::Lease;
use crate::wire::conn::{Chunk, Response};
use crate::wire::{Error, Reason, RecvStream, Respond, ResponseFuture, SendStream};

/// Direction of a pump, for byte accounting.
#[derive(Clone, Copy)]
enum Direction {
    Request,
    Response,
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
pub(super) enum RelayEnd {
    Done,
    /// Refused unprocessed: the caller retries.
    Refused,
}

/// One call's two legs as the relay sees them: the client's stream (its body and where its
/// response goes), the leased upstream connection, the call's stats, and the replay while a
/// retry is still possible.
pub(super) struct Legs<'a> {
    pub client_body: &'a mut RecvStream,
    pub client: &'a mut Respond,
    pub lease: &'a Lease,
    pub stats: &'a CallStats,
    pub replay: Option<&'a RefCell<Replay>>,
}

/// Step 4: both directions at once, on the upstream stream `up_send`/`response` — the request
/// body from the client unless `request_complete`. The request direction may end first (the
/// usual case) or last (a server-streaming target that answers before the client stops
/// sending); when the response has ended, whatever the client still sends is dropped.
pub(super) async fn relay(
    legs: Legs<'_>,
    mut up_send: SendStream,
    response: ResponseFuture,
    request_complete: bool,
) -> RelayEnd {
    let Legs {
        client_body: down_body,
        client: respond,
        lease,
        stats,
        replay,
    } = legs;
    // A request already here in full (a unary call's one DATA frame, with or without
    // trailers) goes out now: no pump, and the response is all that is left to wait for.
    let request_end = if request_complete {
        Some(RequestEnd::Done)
    } else {
        send_whole(down_body, &mut up_send, stats, replay)
    };
    let end = if request_end.is_some() {
        // Done, or the target reset the stream (TargetReset): the response side reports.
        relay_response(response, respond, lease, stats, replay).await
    } else {
        let request_side = pin!(async {
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

/// The rest of the request when it is here in full (see [`RecvStream::take_rest`]) and the
/// upstream stream's windows take it now: sent, counted, recorded for a retry and released to
/// the client as the pump would, without the pump. `None`: it is not (more to come, or no
/// room), and nothing was taken.
fn send_whole(
    src: &mut RecvStream,
    dst: &mut SendStream,
    stats: &CallStats,
    replay: Option<&RefCell<Replay>>,
) -> Option<RequestEnd> {
    let (data, trailers) = src.take_rest(dst.capacity_now())?;
    // As the pump: no DATA frame of its own for trailers that come alone.
    if !data.is_empty() || trailers.is_none() {
        let n = data.len();
        stats.bytes_in.set(stats.bytes_in.get() + n as u64);
        if let Some(replay) = replay {
            replay.borrow_mut().record(&data, trailers.is_none());
        }
        if dst.send_data(&data, trailers.is_none()).is_err() {
            return Some(RequestEnd::TargetReset);
        }
        src.release(n);
        stats
            .request_released
            .set(stats.request_released.get() + n as u64);
    }
    if let Some(trailers) = trailers {
        if let Some(replay) = replay {
            // Request trailers are rare in gRPC; not worth replaying.
            replay.borrow_mut().spoil();
        }
        if dst.send_trailers(&trailers).is_err() {
            return Some(RequestEnd::TargetReset);
        }
    }
    Some(RequestEnd::Done)
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
            let unprocessed = is_retryable(&e, lease.never_processed(stream_id));
            if unprocessed && replay.is_some_and(|r| !r.borrow().spoiled) {
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
                        source: e,
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
    } else if let Some((data, trailers)) = up_body.take_rest(respond.capacity_now()) {
        // The usual unary answer: its body and trailers came with the head, and the client's
        // windows take them. All of it goes out at once, as the pump would send it.
        let n = data.len();
        stats.bytes_out.set(stats.bytes_out.get() + n as u64);
        if let Some(trailers) = &trailers {
            stats.saw_status(trailers);
        }
        if respond.send_whole(&head, &data, trailers.as_ref()).is_err() {
            // The client's stream is gone; dropping the upstream stream resets it.
            return ResponseEnd::ClientReset(Reason::CANCEL);
        }
        up_body.release(n);
        return ResponseEnd::Done;
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
                        reason,
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
                        source: e,
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
pub(super) enum PumpError {
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
        // What is here already is taken without waiting (no waker cloned into either stream);
        // otherwise wait for data, or for the sink's peer to reset: a reset must not wait for
        // data. Either way a reset sink is seen before a chunk is taken.
        if let Some(reason) = dst.reset_reason() {
            return Err(PumpError::SinkReset(reason));
        }
        let next = match src.try_recv() {
            Some(next) => next.map_err(PumpError::Source)?,
            None => {
                poll_fn(|cx| {
                    if let Poll::Ready(reason) = dst.poll_reset(cx) {
                        return Poll::Ready(Err(PumpError::SinkReset(reason)));
                    }
                    src.poll_recv(cx).map_err(PumpError::Source)
                })
                .await?
            }
        };
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
pub(super) fn poll_granted(
    dst: &mut SendStream,
    cx: &mut Context<'_>,
) -> Poll<Result<usize, PumpError>> {
    match dst.poll_capacity(cx) {
        Poll::Ready(Ok(n)) => Poll::Ready(Ok(n)),
        Poll::Ready(Err(e)) => Poll::Ready(Err(match e {
            Error::Reset(reason) | Error::LocalReset(reason) => PumpError::SinkReset(reason),
            _ => PumpError::Sink,
        })),
        Poll::Pending => Poll::Pending,
    }
}
