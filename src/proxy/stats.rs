//! What one call did, filled in as it goes and recorded once at its end.

use std::cell::Cell;
use std::time::Instant;

use crate::metrics::Outcome;
use crate::status::GatewayError;
use crate::wire::Fields;

pub(super) struct CallStats {
    pub outcome: Cell<Outcome>,
    /// The gRPC status the client got, when the response carried one.
    pub status: Cell<Option<u8>>,
    pub bytes_in: Cell<u64>,
    pub bytes_out: Cell<u64>,
    /// Request bytes whose window was given back to the client.
    pub request_released: Cell<u64>,
    /// When the request went upstream.
    pub routed_at: Cell<Option<Instant>>,
    /// The request is a gRPC call (else ringway's own errors are answered as plain HTTP).
    pub grpc: Cell<bool>,
}

impl CallStats {
    pub fn new() -> CallStats {
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

    /// The call ends with ringway's own error.
    pub fn failed(&self, error: &GatewayError) {
        self.outcome.set(error.outcome());
        self.status.set(Some(error.code() as u8));
    }

    /// Notes the `grpc-status` of headers or trailers going to the client.
    pub fn saw_status(&self, fields: &Fields) {
        if let Some(code) = fields
            .get(b"grpc-status")
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.parse::<u8>().ok())
        {
            self.status.set(Some(code));
        }
    }
}
