//! The test's side of a call: a tonic [`EchoClient`] on one HTTP/2
//! connection to the gateway, and the routing header ringway reads. It owns
//! nothing but client settings; the gateway process is [`crate::gateway`]'s.

use std::net::SocketAddr;
use std::time::Duration;

use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::Request;

use crate::echo::pb::echo_client::EchoClient;

/// Largest gRPC message the test client and the upstreams accept or send:
/// 16 MiB, four times the 4 MiB the contract promises, so only the gateway
/// can be the limit.
pub const MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;
/// ringway's default routing header (`--route-header`).
pub const ROUTE_HEADER: &str = "jobid";
/// How long a test waits for the TCP connect to the gateway.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// An `EchoClient` to the gateway at `addr`. A tonic `Channel` to one
/// endpoint is one HTTP/2 connection, so every call made with this client
/// (and its clones) shares it. Panics if the gateway cannot be reached.
pub async fn connect(addr: SocketAddr) -> EchoClient<Channel> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .expect("a socket address makes a valid URI")
        .connect_timeout(CONNECT_TIMEOUT)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connecting to the gateway at {addr}: {e}"));
    EchoClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE)
}

/// An `EchoClient` over TLS to the gateway's TLS port at `addr`: trusts `ca` (PEM), expects a
/// certificate for `localhost`, offers ALPN `h2`, presents `identity` when given. The error
/// is the connect's (a refused handshake).
pub async fn connect_tls(
    addr: SocketAddr,
    ca: &str,
    identity: Option<&crate::pki::Pem>,
) -> Result<EchoClient<Channel>, tonic::transport::Error> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some(pem) = identity {
        tls = tls.identity(Identity::from_pem(&pem.cert, &pem.key));
    }
    let channel = Endpoint::from_shared(format!("https://{addr}"))
        .expect("a socket address makes a valid URI")
        .tls_config(tls)?
        .connect_timeout(CONNECT_TIMEOUT)
        .connect()
        .await?;
    Ok(EchoClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE))
}

/// `message` as a request routed by `key` (the `jobid` header set to `key`).
pub fn routed<T>(message: T, key: &str) -> Request<T> {
    with_jobid(Request::new(message), key)
}

/// Sets the `jobid` routing header of `request` to `key`.
pub fn with_jobid<T>(mut request: Request<T>, key: &str) -> Request<T> {
    let value: MetadataValue<_> = key
        .parse()
        .unwrap_or_else(|e| panic!("routing key {key:?} is not a header value: {e}"));
    request.metadata_mut().insert(ROUTE_HEADER, value);
    request
}
