//! gRPC over HTTP/2, the few pieces a benchmark needs, by hand.
//!
//! Owns: the 5-byte message prefix (compressed flag + big-endian length), the request and
//! response header sets, and reading `grpc-status` from a header map. It must not touch
//! sockets or HTTP/2 connections: `loadgen` and `echo` do that.

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response};

/// Length of the gRPC message prefix: 1 byte compressed flag, 4 bytes big-endian length.
pub const PREFIX_LEN: usize = 5;

/// One uncompressed gRPC message of `size` payload bytes, prefix included.
///
/// The payload is a constant byte pattern: the echo upstream does not decode it, and a
/// gateway must not either, so no protobuf encoder is needed.
pub fn framed_message(size: usize) -> Bytes {
    let mut buf = BytesMut::with_capacity(PREFIX_LEN + size);
    buf.put_u8(0);
    buf.put_u32(size as u32);
    buf.resize(PREFIX_LEN + size, b'x');
    buf.freeze()
}

/// A unary gRPC request's head: POST, `content-type: application/grpc`, `te: trailers`,
/// plus the caller's extra headers (the routing header among them).
pub fn request(uri: &http::Uri, extra: &[(http::HeaderName, HeaderValue)]) -> Request<()> {
    let mut req = Request::post(uri.clone())
        .body(())
        .expect("a POST with a valid URI is a valid request");
    let h = req.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/grpc"));
    h.insert("te", HeaderValue::from_static("trailers"));
    for (name, value) in extra {
        h.append(name.clone(), value.clone());
    }
    req
}

/// The response head the echo upstream sends before the echoed message.
pub fn ok_response() -> Response<()> {
    let mut resp = Response::new(());
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    resp
}

/// Trailers of a successful call.
pub fn ok_trailers() -> HeaderMap {
    let mut t = HeaderMap::new();
    t.insert("grpc-status", HeaderValue::from_static("0"));
    t
}

/// The `grpc-status` code in `headers`, if present and numeric.
pub fn status_of(headers: &HeaderMap) -> Option<u32> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse().ok())
}

/// The canonical name of a gRPC status code, for human summaries.
pub fn status_name(code: u32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "UNKNOWN_CODE",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_is_flag_then_big_endian_length() {
        let m = framed_message(300);
        assert_eq!(m.len(), 305);
        assert_eq!(&m[..5], &[0, 0, 0, 1, 44]);
    }

    #[test]
    fn status_parses_and_rejects_garbage() {
        let mut h = HeaderMap::new();
        assert_eq!(status_of(&h), None);
        h.insert("grpc-status", HeaderValue::from_static("14"));
        assert_eq!(status_of(&h), Some(14));
        h.insert("grpc-status", HeaderValue::from_static("x"));
        assert_eq!(status_of(&h), None);
    }
}
