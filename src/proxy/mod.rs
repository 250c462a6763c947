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
//! A call the target refused without processing it is sent again, once, on a fresh
//! connection ([`replay`]); the client does not notice. Step 4 and its flow control are in
//! [`relay`](mod@relay); what a call did is counted in [`stats`] and recorded once at its end.
//!
//! With `downstream.tls.identity_header` set, the request head is rebuilt once before it goes
//! upstream: every field of that name the client sent is dropped (on every connection, TLS or
//! not — a client must not be able to claim an identity), and the verified identity of its
//! TLS client certificate, if any, is added under that name ([`with_identity`]).
//!
//! Knows the route, the upstream pools, the metrics and the access log — handed to it as a
//! [`Proxy`] — and nothing of client connections, timers or the shard.

mod health;
mod relay;
mod replay;
mod stats;

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::access_log::{Entry, ShardLog};
use crate::downstream::{Handler, Peer};
use crate::metrics::{Latency, Outcome, ShardMetrics};
use crate::route::Router;
use crate::status::{error_body, http_error, is_grpc, trailers_only, GatewayError};
use crate::upstream::{Lease, Upstreams};
use crate::wire::{Fields, Incoming, Reason, Respond};
use relay::{poll_granted, relay, Legs, RelayEnd};
use replay::resend;
pub use replay::{Replay, ReplayPool};
use stats::CallStats;

/// What a call needs of its shard: the router, the upstream pools, the limits, and where it
/// is counted and logged. One per shard; calls borrow it.
pub struct Proxy {
    /// The shard's id, for the access log.
    pub shard: usize,
    /// What each call reads of the configuration; a reload replaces it between calls.
    pub calls: RefCell<Rc<CallSettings>>,
    pub router: Router,
    pub upstreams: Rc<Upstreams>,
    /// This shard's counters; written here only, read by the admin thread.
    pub metrics: Arc<ShardMetrics>,
    /// Latency recorded by calls, published to `metrics.latency` every second.
    pub latency: RefCell<Latency>,
    pub access_log: Option<ShardLog>,
    /// Spare retry buffers, reused call after call.
    pub replays: ReplayPool,
    /// The process's drain: the health service reports NOT_SERVING once it starts.
    pub drain: Arc<crate::shutdown::Drain>,
    /// Open health `Watch` calls on this shard.
    pub health_watches: std::cell::Cell<usize>,
}

/// The configuration a call reads, one snapshot per call (an `Rc` clone).
pub struct CallSettings {
    /// The routing header's name, lowercase as HTTP/2 carries it.
    pub route_header: Bytes,
    /// Request bytes kept for the transparent retry; 0 = no retries.
    pub retry_buffer_bytes: usize,
    /// `downstream.tls.identity_header`, lowercase; `None`: not configured.
    pub identity_header: Option<Bytes>,
}

impl CallSettings {
    pub fn new(config: &crate::config::Config) -> CallSettings {
        let identity = &config.downstream.tls.identity_header;
        CallSettings {
            // Validated with the config.
            route_header: Bytes::copy_from_slice(
                http::HeaderName::from_bytes(config.route.header.as_bytes())
                    .expect("route.header was validated")
                    .as_str()
                    .as_bytes(),
            ),
            retry_buffer_bytes: config.upstream.retry_buffer_bytes,
            identity_header: (!identity.is_empty())
                .then(|| Bytes::copy_from_slice(identity.as_bytes())),
        }
    }
}

impl Handler for Proxy {
    async fn serve(self: Rc<Self>, incoming: Incoming, peer: Peer) {
        self.serve_call(incoming, peer).await
    }
}

/// The request head without any field called `name`, plus `name: identity` when there is an
/// identity. Returned unchanged (no copy) when there is nothing to drop or add.
pub fn with_identity(head: Fields, name: &[u8], identity: Option<&str>) -> Fields {
    let spoofed = head.iter().any(|f| f.name.as_ref() == name);
    if !spoofed && identity.is_none() {
        return head;
    }
    let mut rebuilt = Fields::new();
    for field in head.iter().filter(|f| f.name.as_ref() != name) {
        rebuilt.push(field.name.clone(), field.value.clone());
    }
    if let Some(identity) = identity {
        rebuilt.push(
            Bytes::copy_from_slice(name),
            Bytes::copy_from_slice(identity.as_bytes()),
        );
    }
    rebuilt
}

impl Proxy {
    /// Serves one downstream call to its end. Never panics on what a peer sends; every failure
    /// ends in a gRPC status or a reset on the stream it concerns.
    pub async fn serve_call(&self, incoming: Incoming, peer: Peer) {
        let started = Instant::now();
        self.metrics.calls_in_flight.inc();
        let stats = CallStats::new();
        let settings = self.calls.borrow().clone();
        // What the access log needs is kept only for calls it will log (refcount clones).
        let logged = self
            .access_log
            .as_ref()
            .filter(|log| log.sample())
            .map(|_| {
                let key = incoming.head.get(&settings.route_header).cloned();
                let path = incoming.head.get(b":path").cloned().unwrap_or_default();
                (path, key)
            });
        let target = self
            .forward(
                incoming,
                &stats,
                &settings,
                peer.identity.as_deref(),
                started,
            )
            .await;
        self.record(
            &stats,
            started,
            target.as_deref(),
            logged,
            peer.identity.as_deref(),
        );
    }

    /// Whether this shard serves calls: it has its Redis connection and the process is not
    /// draining (the health service's SERVING; `/readyz` asks the same of every shard).
    pub fn serving(&self) -> bool {
        !self.drain.is_draining() && self.metrics.redis_connected.get() > 0
    }

    /// Copies the shard-local latency histograms to the shared slot the admin thread reads.
    pub fn publish(&self) {
        if let Some(log) = &self.access_log {
            log.flush();
        }
        let local = self.latency.borrow();
        if let Ok(mut shared) = self.metrics.latency.lock() {
            shared.clone_from(&local);
        }
    }

    /// Routes and relays; returns the target the call went to, if it got that far.
    async fn forward(
        &self,
        incoming: Incoming,
        stats: &CallStats,
        settings: &CallSettings,
        identity: Option<&str>,
        started: Instant,
    ) -> Option<Rc<str>> {
        let Incoming {
            head,
            end,
            mut body,
            mut respond,
        } = incoming;
        let head = match &settings.identity_header {
            Some(name) => with_identity(head, name, identity),
            None => head,
        };
        stats.grpc.set(is_grpc(&head));
        if let Some(method) = health::Method::of(&head, &settings.route_header) {
            health::serve(self, method, body, end, respond, stats).await;
            return None;
        }
        let leased = match self.lease_for(&head, &settings.route_header, started).await {
            // The client went away while the route was looked up: the target is not bothered
            // with a call nobody waits for. (A client that opens hundreds of calls and closes
            // its connection would otherwise make ringway open and at once reset hundreds of
            // streams on the connection it shares with other clients — what targets guarding
            // against rapid reset answer with GOAWAY ENHANCE_YOUR_CALM.)
            Ok(_) if respond.is_closed() => {
                stats.outcome.set(Outcome::ClientCancel);
                return None;
            }
            Ok(leased) => leased,
            Err(error) => {
                stats.failed(&error);
                reply_error(&mut respond, &error, stats).await;
                // A failed dial still had a target: the access log names it.
                return error.target().map(Rc::from);
            }
        };
        let (mut lease, mut leased_at) = leased;
        let limit = settings.retry_buffer_bytes;
        let replay = (limit > 0).then(|| self.replays.take(limit, end));
        let replay = replay.as_ref().map(|r| &r.0);
        // The replay while the call is sent again (a refusal is retried only when one is
        // held); `None` on the first attempt.
        let mut resending: Option<&RefCell<Replay>> = None;
        loop {
            // On a retry, the body received so far is sent from memory.
            let request_complete = resending.map_or(end, |r| r.borrow().complete());
            let (response, mut up_send) = match lease.send_request(&head, request_complete) {
                Ok(pair) => pair,
                Err(e) => {
                    lease.retire();
                    let error = GatewayError::UpstreamLost {
                        target: lease.authority().to_string(),
                        source: e,
                    };
                    stats.failed(&error);
                    reply_error(&mut respond, &error, stats).await;
                    return Some(lease.authority_rc());
                }
            };
            stats
                .routed_at
                .set(Some(leased_at.take().unwrap_or_else(Instant::now)));
            let mut request_complete = request_complete;
            if let (Some(replay), false) = (resending, request_complete) {
                // Send what the first target was given, without taking more from the client.
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
            let legs = Legs {
                client_body: &mut body,
                client: &mut respond,
                lease: &lease,
                stats,
                replay: resending.is_none().then_some(replay).flatten(),
            };
            if !matches!(
                relay(legs, up_send, response, request_complete).await,
                RelayEnd::Refused
            ) {
                return Some(lease.authority_rc());
            }
            // Refused unprocessed: once more, on another connection. The client's window for
            // what it sent so far is given back now; the replay is sent from memory.
            resending = replay;
            self.metrics.upstream_retries.inc();
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
                Err(source) => {
                    let error = GatewayError::DialFailed {
                        target: pool.authority().to_string(),
                        source,
                    };
                    stats.failed(&error);
                    reply_error(&mut respond, &error, stats).await;
                    return Some(pool.authority().into());
                }
            };
        }
    }

    /// Steps 1–3: header → route → a leased stream on a connection to one of its targets.
    /// `asked`: when the call started — nothing between that and the lookup waits, so the
    /// call's first clock reading serves as the lookup's start (one fewer per call).
    ///
    /// Also returns when the lease was in hand, if that needs no clock reading of its own: a
    /// lease taken without waiting comes within the lookup's turn, so the lookup's end (or
    /// for a cache hit the call's start) stands for it: two clock readings per call with the
    /// cache instead of three (callgrind), `clock_gettime` and `read_tsc` 2.0% → 1.7% of the
    /// shard's `perf` samples. `None` when the lease waited (a dial, a full pool): the caller
    /// reads the clock.
    async fn lease_for(
        &self,
        head: &Fields,
        route_header: &[u8],
        asked: Instant,
    ) -> Result<(Lease, Option<Instant>), GatewayError> {
        let value = head
            .get(route_header)
            .ok_or_else(|| GatewayError::MissingRouteHeader {
                header: String::from_utf8_lossy(route_header).into_owned(),
            })?;
        let (route, at_once) = self.router.resolve(value, asked).await;
        // A route-cache hit waits for nothing and takes well under the histogram's 1 µs floor
        // (~200 instructions): it records the floor without a clock reading, which cost ~0.9%
        // of a shard's CPU per call under load (`perf`: `clock_gettime` on kvm-clock).
        let (looked_up, lookup_us) = if at_once {
            (asked, 1)
        } else {
            let now = Instant::now();
            (now, (now.duration_since(asked).as_micros() as u64).max(1))
        };
        self.latency
            .borrow_mut()
            .lookup
            .saturating_record(lookup_us);
        let route = route?;
        let pool = self.upstreams.pick(&route);
        let mut acquire = pin!(pool.acquire());
        let mut waited = false;
        let lease = poll_fn(|cx| {
            let poll = acquire.as_mut().poll(cx);
            waited |= poll.is_pending();
            poll
        })
        .await
        .map_err(|source| GatewayError::DialFailed {
            target: pool.authority().to_string(),
            source,
        })?;
        Ok((lease, (!waited).then_some(looked_up)))
    }

    /// Counts the call, records its latency and writes its access-log line.
    fn record(
        &self,
        stats: &CallStats,
        started: Instant,
        target: Option<&str>,
        logged: Option<(Bytes, Option<Bytes>)>,
        identity: Option<&str>,
    ) {
        let m = &self.metrics;
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
            let mut latency = self.latency.borrow_mut();
            latency.total.saturating_record(total_us.max(1));
            if let Some(routed_at) = stats.routed_at.get() {
                let overhead = routed_at.duration_since(started).as_micros() as u64;
                latency.overhead.saturating_record(overhead.max(1));
            }
        }
        if let (Some(log), Some((method, key))) = (&self.access_log, logged) {
            log.record(&Entry {
                shard: self.shard,
                method: &String::from_utf8_lossy(&method),
                key: key.as_deref().unwrap_or(&[][..]),
                target: target.unwrap_or(""),
                status: stats.status.get(),
                outcome: outcome.label(),
                duration_us: total_us,
                bytes_in: stats.bytes_in.get(),
                bytes_out: stats.bytes_out.get(),
                identity,
            });
        }
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
