//! HTTP/2 settings shared by the load generator and the echo upstream.
//!
//! h2's defaults (64 KiB stream and connection windows, the spec's) throttle a benchmark
//! that keeps hundreds of calls in flight on one connection; these are raised so that flow
//! control never limits the peers and only the system under test does.

/// Stream window: 1 MiB, enough for any message size this harness sends in one go.
pub const STREAM_WINDOW: u32 = 1 << 20;
/// Connection window: 16 MiB, so 1024 in-flight calls of 16 KiB fit without a WINDOW_UPDATE.
pub const CONN_WINDOW: u32 = 16 << 20;
/// Max frame size: 64 KiB; fewer frames per large message, same bytes.
pub const MAX_FRAME: u32 = 64 << 10;

/// Client builder with the windows above.
pub fn client() -> h2::client::Builder {
    let mut b = h2::client::Builder::new();
    b.initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONN_WINDOW)
        .max_frame_size(MAX_FRAME)
        // A call over the peer's MAX_CONCURRENT_STREAMS waits in h2's queue: the load
        // generator's in-flight count is a ceiling, the server's limit is respected.
        .max_concurrent_reset_streams(1024);
    b
}

/// Server builder with the windows above and `max_streams` concurrent streams per connection.
pub fn server(max_streams: u32) -> h2::server::Builder {
    let mut b = h2::server::Builder::new();
    b.initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONN_WINDOW)
        .max_frame_size(MAX_FRAME)
        .max_concurrent_streams(max_streams);
    b
}
