//! A mixed load: unary calls meant to meet every outcome a gateway test counts — routed and
//! answered, no routing header, an unknown key, failed by the upstream, a closed target — in a
//! fixed shuffled order, over several client connections at once. It owns the plan, the keys
//! and the calls; what the gateway should say about them is each test's.

use futures_util::stream::{self, StreamExt};
use tonic::transport::Channel;
use tonic::{Code, Request};

use crate::client::routed;
use crate::echo::pattern;
use crate::echo::pb::{echo_client::EchoClient, EchoRequest, Failure};

/// What a call in a mixed load is meant to meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Routed to the live upstream, answered OK.
    Ok,
    /// No `jobid` header: INVALID_ARGUMENT from ringway.
    NoHeader,
    /// A key Redis does not have: NOT_FOUND from ringway.
    Missing,
    /// Routed; the upstream fails it with PERMISSION_DENIED.
    Denied,
    /// Routed to a closed port: UNAVAILABLE from ringway.
    Closed,
}

impl Kind {
    /// The status the call must end with.
    pub fn expected_code(self) -> Code {
        match self {
            Kind::Ok => Code::Ok,
            Kind::NoHeader => Code::InvalidArgument,
            Kind::Missing => Code::NotFound,
            Kind::Denied => Code::PermissionDenied,
            Kind::Closed => Code::Unavailable,
        }
    }
}

/// `counts` of each kind, interleaved in a fixed pseudo-random order.
pub fn mixed_plan(counts: &[(Kind, usize)]) -> Vec<Kind> {
    let mut plan: Vec<Kind> = counts
        .iter()
        .flat_map(|&(kind, n)| std::iter::repeat_n(kind, n))
        .collect();
    // Fisher-Yates with a fixed LCG: the same order on every run.
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    for i in (1..plan.len()).rev() {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        plan.swap(i, (state >> 33) as usize % (i + 1));
    }
    plan
}

/// One call of `kind`, number `i`: (the request, its payload length).
fn request_for(kind: Kind, i: usize, keys: &Keys) -> (Request<EchoRequest>, usize) {
    let payload = pattern(64 + i % 200, i as u32);
    let len = payload.len();
    let mut message = EchoRequest {
        payload,
        ..Default::default()
    };
    let request = match kind {
        Kind::Ok => routed(message, &keys.ok(i)),
        Kind::NoHeader => Request::new(message),
        Kind::Missing => routed(message, &keys.missing(i)),
        Kind::Denied => {
            message.fail = Some(Failure {
                code: Code::PermissionDenied as i32,
                message: "denied by the test".into(),
                ..Default::default()
            });
            routed(message, &keys.ok(i))
        }
        Kind::Closed => routed(message, &keys.closed),
    };
    (request, len)
}

/// The routing keys of a mixed load.
pub struct Keys {
    /// Keys naming the live upstream: one per call when `per_call`, else one for all.
    pub per_call: bool,
    /// Starts every key, so loads in one Redis do not share keys.
    pub prefix: String,
    /// The key of the closed target, for every [`Kind::Closed`] call.
    pub closed: String,
}

impl Keys {
    /// The key of call `i` when it is routed to the live upstream.
    pub fn ok(&self, i: usize) -> String {
        if self.per_call {
            format!("{}-up-{i}", self.prefix)
        } else {
            format!("{}-up", self.prefix)
        }
    }

    /// The key of call `i` when it is [`Kind::Missing`]: in no Redis.
    pub fn missing(&self, i: usize) -> String {
        format!("{}-missing-{i}", self.prefix)
    }
}

/// The outcome of one call of a mixed load.
#[derive(Debug, Clone)]
pub struct Done {
    /// The call's place in the plan.
    pub i: usize,
    pub kind: Kind,
    pub code: Code,
    /// The request's payload bytes.
    pub payload_len: usize,
    /// The reply's payload bytes (0 for a failed call).
    pub reply_len: usize,
}

/// Runs `plan` over `clients` (round robin), `in_flight` at a time; checks each call met the
/// code its kind expects (so a later metric mismatch is ringway's counting, not the load).
pub async fn drive(
    clients: &[EchoClient<Channel>],
    plan: &[Kind],
    keys: &Keys,
    in_flight: usize,
) -> Vec<Done> {
    let done: Vec<Done> = stream::iter(plan.iter().copied().enumerate())
        .map(|(i, kind)| {
            let mut client = clients[i % clients.len()].clone();
            let (request, payload_len) = request_for(kind, i, keys);
            async move {
                let (code, reply_len) = match client.unary(request).await {
                    Ok(reply) => (Code::Ok, reply.into_inner().payload.len()),
                    Err(status) => (status.code(), 0),
                };
                Done {
                    i,
                    kind,
                    code,
                    payload_len,
                    reply_len,
                }
            }
        })
        .buffer_unordered(in_flight)
        .collect()
        .await;
    for d in &done {
        assert_eq!(
            d.code,
            d.kind.expected_code(),
            "call {} ({:?}) ended with {:?}",
            d.i,
            d.kind,
            d.code
        );
    }
    done
}
