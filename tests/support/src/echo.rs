//! The `Echo` service an upstream runs: it owns what one call does (echo the
//! payload, send N replies, sleep, fail with a chosen status) and counts calls
//! and cancellations. It does not know about sockets or response headers: the
//! upstream owns the listener and [`crate::stamp`] owns the `x-echo-*` headers
//! and the `x-upstream` trailer.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::{KeyAndValueRef, MetadataKey, MetadataMap, MetadataValue};
use tonic::{Code, Request, Response, Status, Streaming};

/// The code generated from `proto/echo.proto`.
pub mod pb {
    tonic::include_proto!("echo");
}

use pb::{EchoReply, EchoRequest, Failure};

/// Replies buffered between a streaming handler's task and the transport.
/// Small, so a client that stops reading is noticed after a few replies.
const STREAM_BUFFER: usize = 4;

/// What an upstream has seen, shared by every call and kept across restarts.
#[derive(Debug, Default)]
pub struct CallCounters {
    /// Calls whose handler started.
    pub started: AtomicUsize,
    /// Calls whose handler was dropped, or saw its peer go away, before it
    /// finished its reply: the client's cancel reached the upstream.
    pub cancelled: AtomicUsize,
}

/// Counts one call as cancelled unless [`CallGuard::finish`] runs first.
/// Handlers hold one for their whole life, so a handler future dropped by the
/// transport (the client reset the stream) is counted without any cooperation.
struct CallGuard {
    counters: Arc<CallCounters>,
    finished: bool,
}

impl CallGuard {
    fn begin(counters: &Arc<CallCounters>) -> CallGuard {
        counters.started.fetch_add(1, Ordering::SeqCst);
        CallGuard {
            counters: counters.clone(),
            finished: false,
        }
    }

    fn finish(mut self) {
        self.finished = true;
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.counters.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// The service behind one [`crate::Upstream`].
#[derive(Debug, Clone)]
pub struct EchoService {
    /// Put into every reply's `upstream` field.
    name: Arc<str>,
    counters: Arc<CallCounters>,
}

impl EchoService {
    pub fn new(name: &str, counters: Arc<CallCounters>) -> EchoService {
        EchoService {
            name: name.into(),
            counters,
        }
    }

    /// The reply to `request`, or the failure it asks for.
    fn answer(
        &self,
        request: &EchoRequest,
        seq: u32,
        metadata: HashMap<String, String>,
    ) -> Result<EchoReply, Status> {
        if let Some(failure) = &request.fail {
            return Err(failure_status(failure));
        }
        Ok(EchoReply {
            payload: request.payload.clone(),
            upstream: self.name.to_string(),
            seq,
            received_messages: 0,
            received_bytes: 0,
            metadata,
        })
    }
}

/// The status a [`Failure`] asks for, its custom trailer in the metadata.
/// A key ending in `-bin` carries the value as binary metadata.
pub fn failure_status(failure: &Failure) -> Status {
    let mut metadata = MetadataMap::new();
    if !failure.trailer_key.is_empty() {
        let key = failure.trailer_key.as_str();
        if key.ends_with("-bin") {
            match MetadataKey::from_bytes(key.as_bytes()) {
                Ok(key) => {
                    metadata.insert_bin(
                        key,
                        MetadataValue::from_bytes(failure.trailer_value.as_bytes()),
                    );
                }
                Err(_) => return Status::internal(format!("bad trailer key {key:?}")),
            }
        } else {
            match (
                MetadataKey::from_bytes(key.as_bytes()),
                failure.trailer_value.parse::<MetadataValue<_>>(),
            ) {
                (Ok(key), Ok(value)) => {
                    metadata.insert(key, value);
                }
                _ => return Status::internal(format!("bad trailer {key:?}")),
            }
        }
    }
    Status::with_metadata(
        Code::from_i32(failure.code),
        failure.message.clone(),
        metadata,
    )
}

/// The ASCII request metadata, for the first reply's `metadata` field.
fn ascii_metadata(map: &MetadataMap) -> HashMap<String, String> {
    map.iter()
        .filter_map(|entry| match entry {
            KeyAndValueRef::Ascii(key, value) => Some((
                key.as_str().to_owned(),
                value.to_str().unwrap_or("<non-visible>").to_owned(),
            )),
            KeyAndValueRef::Binary(..) => None,
        })
        .collect()
}

/// Sleeps `delay_ms`, or returns false early if the reply channel closed:
/// the client went away, and the caller should stop.
async fn pause(delay_ms: u32, replies: &mpsc::Sender<Result<EchoReply, Status>>) -> bool {
    if delay_ms == 0 {
        return !replies.is_closed();
    }
    tokio::select! {
        _ = replies.closed() => false,
        _ = tokio::time::sleep(Duration::from_millis(delay_ms.into())) => true,
    }
}

type ReplyStream = Pin<Box<dyn futures_util::Stream<Item = Result<EchoReply, Status>> + Send>>;

#[tonic::async_trait]
impl pb::echo_server::Echo for EchoService {
    async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        let guard = CallGuard::begin(&self.counters);
        let metadata = ascii_metadata(request.metadata());
        let request = request.into_inner();
        tokio::time::sleep(Duration::from_millis(request.delay_ms.into())).await;
        let reply = self.answer(&request, 0, metadata);
        guard.finish();
        reply.map(Response::new)
    }

    type ServerStreamStream = ReplyStream;

    async fn server_stream(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<Self::ServerStreamStream>, Status> {
        let guard = CallGuard::begin(&self.counters);
        let mut metadata = ascii_metadata(request.metadata());
        let request = request.into_inner();
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let service = self.clone();
        tokio::spawn(async move {
            let ok = EchoRequest {
                fail: None,
                ..request.clone()
            };
            for seq in 0..request.reply_count {
                if !pause(request.delay_ms, &tx).await {
                    return; // the guard counts the cancel
                }
                let reply = service.answer(&ok, seq, std::mem::take(&mut metadata));
                if tx.send(reply).await.is_err() {
                    return;
                }
            }
            if let Some(failure) = &request.fail {
                if tx.send(Err(failure_status(failure))).await.is_err() {
                    return;
                }
            }
            guard.finish();
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn client_stream(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<EchoReply>, Status> {
        let guard = CallGuard::begin(&self.counters);
        let metadata = ascii_metadata(request.metadata());
        let mut inbound = request.into_inner();
        let mut messages = 0u32;
        let mut bytes = 0u64;
        let mut last = EchoRequest::default();
        // An error here means the client's stream broke: the guard counts it.
        while let Some(message) = inbound.message().await? {
            messages += 1;
            bytes += message.payload.len() as u64;
            last = message;
        }
        tokio::time::sleep(Duration::from_millis(last.delay_ms.into())).await;
        let reply = self.answer(&last, 0, metadata).map(|reply| EchoReply {
            received_messages: messages,
            received_bytes: bytes,
            ..reply
        });
        guard.finish();
        reply.map(Response::new)
    }

    type BidiStreamStream = ReplyStream;

    async fn bidi_stream(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Self::BidiStreamStream>, Status> {
        let guard = CallGuard::begin(&self.counters);
        let mut metadata = ascii_metadata(request.metadata());
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let service = self.clone();
        tokio::spawn(async move {
            let mut seq = 0;
            loop {
                let message = tokio::select! {
                    _ = tx.closed() => return,
                    message = inbound.message() => message,
                };
                let message = match message {
                    Ok(Some(message)) => message,
                    Ok(None) => break,
                    Err(_) => return, // the client's stream broke
                };
                if !pause(message.delay_ms, &tx).await {
                    return;
                }
                let reply = service.answer(&message, seq, std::mem::take(&mut metadata));
                let failed = reply.is_err();
                if tx.send(reply).await.is_err() {
                    return;
                }
                if failed {
                    break;
                }
                seq += 1;
            }
            guard.finish();
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// `len` bytes that differ with `seed` and along their length, so a payload
/// cut, shifted or mixed with another call's is seen by a plain comparison.
pub fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut state = seed.wrapping_mul(2_654_435_761) | 1; // never 0: xorshift would stay 0
    (0..len)
        .map(|_| {
            // xorshift32: cheap, and no run of equal bytes.
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect()
}
