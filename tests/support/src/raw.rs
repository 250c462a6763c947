//! One gRPC call over bare HTTP/2, with the `h2` crate and no gRPC library, to
//! see what a gRPC client hides: the HTTP status, the header block, and whether
//! the response was trailers-only (its only HEADERS frame ended the stream).
//! It owns its own connection; nothing is pooled.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use tokio::net::TcpStream;

/// What came back for one raw call.
#[derive(Debug)]
pub struct RawResponse {
    pub status: StatusCode,
    /// The first header block (for a trailers-only response, the trailers).
    pub headers: HeaderMap,
    /// True when the first HEADERS frame also ended the stream.
    pub trailers_only: bool,
    /// The response's DATA, still gRPC-framed.
    pub body: Vec<u8>,
    /// The trailing HEADERS frame, if there was one.
    pub trailers: Option<HeaderMap>,
}

impl RawResponse {
    /// `grpc-status` from the trailers, or from the headers of a trailers-only response.
    pub fn grpc_status(&self) -> Option<&str> {
        self.trailers
            .as_ref()
            .and_then(|t| t.get("grpc-status"))
            .or_else(|| self.headers.get("grpc-status"))
            .and_then(|v| v.to_str().ok())
    }

    /// `grpc-message` (still percent-encoded), wherever it came.
    pub fn grpc_message(&self) -> Option<&str> {
        self.trailers
            .as_ref()
            .and_then(|t| t.get("grpc-message"))
            .or_else(|| self.headers.get("grpc-message"))
            .and_then(|v| v.to_str().ok())
    }
}

/// POSTs one gRPC message (`message`, already protobuf-encoded) to `path` on
/// `addr` with the given extra headers, and reads the whole response.
pub async fn raw_grpc_call(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    message: &[u8],
) -> Result<RawResponse, Box<dyn std::error::Error + Send + Sync>> {
    let tcp = TcpStream::connect(addr).await?;
    let (client, connection) = h2::client::handshake(tcp).await?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let response = grpc_call_on(client, addr, path, headers, message).await;
    driver.abort();
    response
}

/// As [`raw_grpc_call`], on a connection the caller owns (and drives).
pub async fn grpc_call_on(
    client: h2::client::SendRequest<Bytes>,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    message: &[u8],
) -> Result<RawResponse, Box<dyn std::error::Error + Send + Sync>> {
    let mut request = http::Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(()).expect("a valid request");
    let mut client = client.ready().await?;
    let (response, mut outbound) = client.send_request(request, false)?;
    let mut frame = Vec::with_capacity(5 + message.len());
    frame.push(0); // not compressed
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(message);
    // An error reply may come before the request body is read and reset the
    // stream; that is not this call's failure, so the send error is ignored.
    let _ = outbound.send_data(Bytes::from(frame), true);

    let response = response.await?;
    let (parts, mut body) = response.into_parts();
    let trailers_only = body.is_end_stream();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    let trailers = body.trailers().await?;
    Ok(RawResponse {
        status: parts.status,
        headers: parts.headers,
        trailers_only,
        body: data,
        trailers,
    })
}
