//! Gateway errors and the one place they become gRPC statuses and call outcomes.
//!
//! Every failure ringway itself decides on is a [`GatewayError`]; it knows where it came from
//! ([`Side`]: the client's request, Redis, the route's value, the target), carries the error
//! of the layer below it as its `source()`, and maps to exactly one gRPC code ([`code`]) and
//! one call outcome ([`outcome`]), side by side here.
//!
//! [`trailers_only`] turns it into the response a gRPC client expects: HTTP 200 with
//! `grpc-status` and a percent-encoded `grpc-message`, and END_STREAM on the headers. Never a
//! bare HTTP error, never a hang.
//!
//! A request that is not gRPC (its `content-type` does not start with `application/grpc`: a
//! browser, `curl`, a health checker, h2spec) gets the same error as HTTP instead
//! ([`http_error`]): the status a REST gateway would give for the gRPC code, and the message as
//! a `text/plain` body — as the gRPC spec advises, so that no plain HTTP client takes a gRPC
//! error's HTTP 200 for success.
//!
//! [`code`]: GatewayError::code
//! [`outcome`]: GatewayError::outcome

use std::fmt;

use bytes::Bytes;

use crate::metrics::Outcome;
use crate::redis;
use crate::upstream::DialError;
use crate::wire::{self, Fields};

/// The canonical name of any of the spec's 17 gRPC codes, by number (a target's
/// `grpc-status` as counted in the metrics); [`Code`] below is the subset ringway produces.
pub fn code_name(code: usize) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    NAMES.get(code).copied().unwrap_or("UNKNOWN")
}

/// The gRPC status codes ringway produces (a subset of the spec's 17).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Ok = 0,
    Cancelled = 1,
    InvalidArgument = 3,
    NotFound = 5,
    ResourceExhausted = 8,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
}

impl Code {
    /// The HTTP status for this code, as Google's API design guide maps them.
    pub fn http_status(self) -> &'static [u8] {
        match self {
            Code::Ok => b"200",
            Code::Cancelled => b"499",
            Code::Unimplemented => b"501",
            Code::InvalidArgument => b"400",
            Code::NotFound => b"404",
            Code::ResourceExhausted => b"429",
            Code::Internal => b"500",
            Code::Unavailable => b"503",
        }
    }

    fn header_value(self) -> Bytes {
        Bytes::from_static(match self {
            Code::Ok => b"0",
            Code::Cancelled => b"1",
            Code::Unimplemented => b"12",
            Code::InvalidArgument => b"3",
            Code::NotFound => b"5",
            Code::ResourceExhausted => b"8",
            Code::Internal => b"13",
            Code::Unavailable => b"14",
        })
    }
}

/// Where a failure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client's request (no routing header).
    Client,
    /// Redis: unreachable, too slow, or an error reply.
    Redis,
    /// The route stored in Redis: missing or malformed.
    Route,
    /// The target: unreachable, or it broke the connection or HTTP/2.
    Target,
}

/// What went wrong, with enough context for the message to stand on its own in a client's log.
#[derive(Debug, Clone)]
pub enum GatewayError {
    /// The request carries no routing header (its configured name is kept).
    MissingRouteHeader { header: String },
    /// Redis has no value at the key.
    RouteNotFound { key: String },
    /// The shard has no Redis connection right now.
    RedisUnavailable {
        addr: String,
        source: redis::Unavailable,
    },
    /// The lookup's reply did not come back in time.
    LookupTimeout { key: String, timeout_ms: u64 },
    /// Redis answered with an error (e.g. WRONGTYPE).
    RedisError { key: String, message: String },
    /// The value at the key is not `host:port[,host:port…]`.
    MalformedRoute {
        key: String,
        value: String,
        reason: String,
    },
    /// Dialing the target failed: refused, unreachable, or timed out.
    DialFailed { target: String, source: DialError },
    /// The upstream connection broke before the response started.
    UpstreamLost { target: String, source: wire::Error },
    /// The target broke HTTP/2 on the call's stream (e.g. sent beyond its flow-control
    /// window), so ringway reset the stream with this reason.
    TargetProtocolError {
        target: String,
        reason: wire::Reason,
    },
}

impl GatewayError {
    pub fn code(&self) -> Code {
        match self {
            GatewayError::MissingRouteHeader { .. } => Code::InvalidArgument,
            GatewayError::RouteNotFound { .. } => Code::NotFound,
            GatewayError::RedisUnavailable { .. }
            | GatewayError::LookupTimeout { .. }
            | GatewayError::DialFailed { .. }
            | GatewayError::UpstreamLost { .. }
            | GatewayError::TargetProtocolError { .. } => Code::Unavailable,
            GatewayError::RedisError { .. } | GatewayError::MalformedRoute { .. } => Code::Internal,
        }
    }

    /// How a call that failed with this error is counted.
    pub fn outcome(&self) -> Outcome {
        match self {
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
        }
    }

    /// Whose failure it is.
    pub fn side(&self) -> Side {
        match self {
            GatewayError::MissingRouteHeader { .. } => Side::Client,
            GatewayError::RedisUnavailable { .. }
            | GatewayError::LookupTimeout { .. }
            | GatewayError::RedisError { .. } => Side::Redis,
            GatewayError::RouteNotFound { .. } | GatewayError::MalformedRoute { .. } => Side::Route,
            GatewayError::DialFailed { .. }
            | GatewayError::UpstreamLost { .. }
            | GatewayError::TargetProtocolError { .. } => Side::Target,
        }
    }

    /// The target the call was going to, when it got that far.
    pub fn target(&self) -> Option<&str> {
        match self {
            GatewayError::DialFailed { target, .. }
            | GatewayError::UpstreamLost { target, .. }
            | GatewayError::TargetProtocolError { target, .. } => Some(target),
            _ => None,
        }
    }
}

impl std::error::Error for GatewayError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            GatewayError::RedisUnavailable { source, .. } => Some(source),
            GatewayError::DialFailed { source, .. } => Some(source),
            GatewayError::UpstreamLost { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GatewayError::MissingRouteHeader { header } => {
                write!(f, "ringway: request has no routing header `{header}`")
            }
            GatewayError::RouteNotFound { key } => {
                write!(f, "ringway: no route in Redis for key `{key}`")
            }
            GatewayError::RedisUnavailable { addr, source } => {
                write!(f, "ringway: route lookup failed: Redis at {addr} is unavailable ({source})")
            }
            GatewayError::LookupTimeout { key, timeout_ms } => write!(
                f,
                "ringway: route lookup for key `{key}` timed out after {timeout_ms} ms"
            ),
            GatewayError::RedisError { key, message } => {
                write!(f, "ringway: Redis answered an error for key `{key}`: {message}")
            }
            GatewayError::MalformedRoute { key, value, reason } => write!(
                f,
                "ringway: route for key `{key}` is malformed: value `{value}` ({reason}); expected host:port[,host:port...]"
            ),
            GatewayError::DialFailed { target, source } => {
                write!(f, "ringway: cannot connect to target {target}: {source}")
            }
            GatewayError::UpstreamLost { target, source } => {
                write!(f, "ringway: connection to target {target} lost: {source}")
            }
            GatewayError::TargetProtocolError { target, reason } => {
                write!(f, "ringway: target {target} broke HTTP/2: ")?;
                match *reason {
                    wire::Reason::FLOW_CONTROL_ERROR => write!(
                        f,
                        "it sent DATA beyond the flow-control window ringway gave it \
                         ({reason}); the call's stream was reset"
                    ),
                    _ => write!(f, "ringway reset the call's stream ({reason})"),
                }
            }
        }
    }
}

/// A trailers-only gRPC response: the status goes in the one HEADERS frame, which ends the stream.
pub fn trailers_only(code: Code, message: &str) -> Fields {
    let mut head = Fields::new();
    head.push(Bytes::from_static(b":status"), Bytes::from_static(b"200"));
    head.push(
        Bytes::from_static(b"content-type"),
        Bytes::from_static(b"application/grpc"),
    );
    push_status(&mut head, code, message);
    head
}

/// Whether a request head is a gRPC call (its `content-type` starts with `application/grpc`).
pub fn is_grpc(head: &Fields) -> bool {
    head.get(b"content-type")
        .is_some_and(|v| v.starts_with(b"application/grpc"))
}

/// The response head of an error for a request that is not gRPC; the body is `error_body`.
pub fn http_error(code: Code, message: &str) -> Fields {
    let mut head = Fields::new();
    head.push(
        Bytes::from_static(b":status"),
        Bytes::from_static(code.http_status()),
    );
    head.push(
        Bytes::from_static(b"content-type"),
        Bytes::from_static(b"text/plain; charset=utf-8"),
    );
    push_status(&mut head, code, message);
    head
}

/// The body of [`http_error`]: the message and a newline.
pub fn error_body(message: &str) -> Bytes {
    let mut body = String::with_capacity(message.len() + 1);
    body.push_str(message);
    body.push('\n');
    Bytes::from(body)
}

/// Trailers that end a response whose headers were already sent.
pub fn status_trailers(code: Code, message: &str) -> Fields {
    let mut trailers = Fields::new();
    push_status(&mut trailers, code, message);
    trailers
}

fn push_status(fields: &mut Fields, code: Code, message: &str) {
    fields.push(Bytes::from_static(b"grpc-status"), code.header_value());
    fields.push(
        Bytes::from_static(b"grpc-message"),
        Bytes::from(percent_encode(message)),
    );
}

/// `grpc-message` is percent-encoded: every byte outside printable ASCII, and `%` itself
/// (gRPC over HTTP/2 spec, "Responses").
pub fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for &b in message.as_bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Renders bytes from the wire (a header value, a Redis reply) for a message: UTF-8 as is,
/// anything else escaped, and at most 200 bytes so a huge value cannot bloat a response.
pub fn printable(bytes: &[u8]) -> String {
    const LIMIT: usize = 200;
    let cut = &bytes[..bytes.len().min(LIMIT)];
    let mut text = String::from_utf8_lossy(cut).escape_debug().to_string();
    if bytes.len() > LIMIT {
        text.push_str("...");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_is_percent_encoded() {
        assert_eq!(percent_encode("a b%c"), "a b%25c");
        assert_eq!(percent_encode("é\n"), "%C3%A9%0A");
    }

    #[test]
    fn trailers_only_carries_status_and_message() {
        let r = trailers_only(Code::NotFound, "no route");
        assert_eq!(r.get(b":status").unwrap().as_ref(), b"200");
        assert_eq!(r.get(b"grpc-status").unwrap().as_ref(), b"5");
        assert_eq!(r.get(b"grpc-message").unwrap().as_ref(), b"no route");
        assert_eq!(
            r.get(b"content-type").unwrap().as_ref(),
            b"application/grpc"
        );
    }

    #[test]
    fn http_error_has_the_http_status_and_a_text_body() {
        let r = http_error(Code::NotFound, "no route");
        assert_eq!(r.get(b":status").unwrap().as_ref(), b"404");
        assert_eq!(r.get(b"grpc-status").unwrap().as_ref(), b"5");
        assert!(r.get(b"content-type").unwrap().starts_with(b"text/plain"));
        assert_eq!(error_body("no route").as_ref(), b"no route\n");
    }

    #[test]
    fn printable_escapes_and_truncates() {
        assert_eq!(printable(b"a\xffb"), "a\u{fffd}b");
        assert_eq!(printable(b"x\ny"), "x\\ny");
        assert!(printable(&[b'a'; 500]).ends_with("..."));
    }
}
