//! A tower layer on the upstream's HTTP/2 service that marks every response:
//! request headers named `x-echo-*` come back as response headers, and an
//! `x-upstream: <name>` trailer is always sent (in the header block of a
//! trailers-only response, which gRPC treats as the trailers).
//!
//! It owns only these headers; the gRPC messages and statuses are
//! [`crate::echo`]'s. Done at this layer because tonic's generated handlers
//! cannot add trailers to a successful unary or client-streaming reply.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderName, HeaderValue};
use http_body::Frame;
use tonic::body::Body;

/// Prefix of the request headers the upstream sends back as response headers.
pub const ECHO_PREFIX: &str = "x-echo-";
/// The trailer naming the upstream that served the call.
pub const UPSTREAM_TRAILER: &str = "x-upstream";

/// Wraps a service in [`Stamp`].
#[derive(Debug, Clone)]
pub struct StampLayer {
    name: HeaderValue,
}

impl StampLayer {
    pub fn new(name: &str) -> StampLayer {
        StampLayer {
            name: HeaderValue::from_str(name).expect("an upstream name is a valid header value"),
        }
    }
}

impl<S> tower::Layer<S> for StampLayer {
    type Service = Stamp<S>;

    fn layer(&self, inner: S) -> Stamp<S> {
        Stamp {
            inner,
            name: self.name.clone(),
        }
    }
}

/// The service [`StampLayer`] makes.
#[derive(Debug, Clone)]
pub struct Stamp<S> {
    inner: S,
    name: HeaderValue,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> tower::Service<http::Request<Body>> for Stamp<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let echoed: Vec<(HeaderName, HeaderValue)> = request
            .headers()
            .iter()
            .filter(|(name, _)| name.as_str().starts_with(ECHO_PREFIX))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        let name = self.name.clone();
        let response = self.inner.call(request);
        Box::pin(async move {
            let (mut parts, body) = response.await?.into_parts();
            for (key, value) in echoed {
                parts.headers.append(key, value);
            }
            let body = if parts.headers.contains_key("grpc-status") {
                // Trailers-only: the header block is the trailers.
                parts
                    .headers
                    .insert(HeaderName::from_static(UPSTREAM_TRAILER), name);
                body
            } else {
                Body::new(StampTrailers { inner: body, name })
            };
            Ok(http::Response::from_parts(parts, body))
        })
    }
}

/// A response body whose trailers gain `x-upstream`.
struct StampTrailers {
    inner: Body,
    name: HeaderValue,
}

impl http_body::Body for StampTrailers {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            other => return other,
        };
        let frame = match frame.into_trailers() {
            Ok(mut trailers) => {
                trailers.insert(HeaderName::from_static(UPSTREAM_TRAILER), self.name.clone());
                Frame::trailers(trailers)
            }
            Err(frame) => frame,
        };
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
