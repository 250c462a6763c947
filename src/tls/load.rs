//! From PEM files to rustls configs: the server's (client connections) and the client's
//! (targets). Every error names the file and what is wrong with it; nothing here touches a
//! socket.
//!
//! Checked at load, so a bad file fails the start (exit 1) or the reload (old material kept)
//! instead of every handshake: a certificate that is expired or not yet valid, a key that does
//! not match its certificate, a file without the PEM block it should have.

use std::fmt;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ProducesTickets, StoresServerSessions, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::config::{DownstreamTlsConfig, UpstreamTlsConfig};

/// ALPN: gRPC is HTTP/2 only. A client that offers ALPN without `h2` is refused with the
/// `no_application_protocol` alert.
const ALPN_H2: &[u8] = b"h2";

/// What is wrong with a TLS file (or, with an empty `path`, with the material as a whole).
#[derive(Debug, Clone, PartialEq)]
pub struct FileError {
    pub path: String,
    pub problem: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.problem)
        } else {
            write!(f, "{}: {}", self.path, self.problem)
        }
    }
}

impl std::error::Error for FileError {}

fn error(path: &str, problem: impl fmt::Display) -> FileError {
    FileError {
        path: path.to_string(),
        problem: problem.to_string(),
    }
}

/// The ring provider: the one crypto backend ringway builds with (aws-lc-rs needs cmake).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What survives a reload on the server side, so resumption keeps working across it.
#[derive(Clone)]
pub struct ServerResumption {
    pub tickets: Arc<dyn ProducesTickets>,
    pub sessions: Arc<dyn StoresServerSessions>,
}

/// Sessions kept for TLS 1.2 session-id resumption (TLS 1.3 uses stateless tickets). Each
/// is a few hundred bytes; 16k covers a gateway's busy clients.
const SERVER_SESSIONS: usize = 16 << 10;

impl ServerResumption {
    pub fn new() -> Result<ServerResumption, FileError> {
        Ok(ServerResumption {
            // Rotating AEAD ticket keys (6 h), shared by every shard: a client resumes on any.
            tickets: rustls::crypto::ring::Ticketer::new()
                .map_err(|e| error("", format!("cannot make a TLS ticket key: {e}")))?,
            sessions: rustls::server::ServerSessionMemoryCache::new(SERVER_SESSIONS),
        })
    }
}

/// The server config for client connections, from `[downstream.tls]`.
pub fn server_config(
    t: &DownstreamTlsConfig,
    resumption: &ServerResumption,
) -> Result<ServerConfig, FileError> {
    let provider = provider();
    let key = certified_key(&t.cert, &t.key, &provider)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| error("", e))?;
    let builder = if t.client_ca.is_empty() {
        builder.with_no_client_auth()
    } else {
        let roots = root_store(&t.client_ca)?;
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| error(&t.client_ca, e))?;
        builder.with_client_cert_verifier(verifier)
    };
    let mut config = builder.with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(
        Arc::new(key),
    )));
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    config.ticketer = resumption.tickets.clone();
    config.session_storage = resumption.sessions.clone();
    Ok(config)
}

/// The client config for `https://` targets, from `[upstream.tls]`. `resumption` is kept
/// across reloads (rustls's in-memory store, shared by every shard: one lock per handshake).
pub fn client_config(
    t: &UpstreamTlsConfig,
    resumption: &rustls::client::Resumption,
) -> Result<ClientConfig, FileError> {
    let provider = provider();
    let roots = if t.ca.is_empty() {
        RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        }
    } else {
        root_store(&t.ca)?
    };
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| error("", e))?
        .with_root_certificates(roots);
    let mut config = if t.cert.is_empty() {
        builder.with_no_client_auth()
    } else {
        let key = certified_key(&t.cert, &t.key, &provider)?;
        builder.with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(Arc::new(
            key,
        ))))
    };
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    config.resumption = resumption.clone();
    Ok(config)
}

/// A certificate chain and its key, checked: the leaf is valid now and the key matches it.
fn certified_key(
    cert_path: &str,
    key_path: &str,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, FileError> {
    let certs = certificates(cert_path)?;
    check_validity(cert_path, &certs[0])?;
    let signing = signing_key(key_path, provider)?;
    let certified = CertifiedKey::new(certs, signing);
    certified.keys_match().map_err(|e| {
        error(
            key_path,
            format!("the key does not match the certificate in {cert_path} ({e})"),
        )
    })?;
    Ok(certified)
}

/// The private key of a PEM file, loaded by `provider`.
pub(crate) fn signing_key(
    path: &str,
    provider: &CryptoProvider,
) -> Result<Arc<dyn rustls::sign::SigningKey>, FileError> {
    let key = PrivateKeyDer::from_pem_file(path).map_err(|e| error(path, pem_error(e)))?;
    provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| error(path, format!("unusable private key: {e}")))
}

/// Every certificate of a PEM file (at least one).
pub(crate) fn certificates(path: &str) -> Result<Vec<CertificateDer<'static>>, FileError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| error(path, pem_error(e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(path, pem_error(e)))?;
    if certs.is_empty() {
        return Err(error(path, "no CERTIFICATE block in it"));
    }
    Ok(certs)
}

fn root_store(path: &str) -> Result<RootCertStore, FileError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path)? {
        roots
            .add(cert)
            .map_err(|e| error(path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

fn pem_error(e: rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(e) => format!("cannot read: {e}"),
        rustls::pki_types::pem::Error::NoItemsFound => "no PEM block of the right kind".into(),
        e => format!("not valid PEM: {e:?}"),
    }
}

/// An expired (or not yet valid) certificate is refused at load, naming the file and the date.
fn check_validity(path: &str, der: &CertificateDer<'_>) -> Result<(), FileError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| error(path, format!("not a valid X.509 certificate: {e}")))?;
    let validity = cert.validity();
    let now = x509_parser::time::ASN1Time::now();
    if validity.not_after < now {
        return Err(error(
            path,
            format!("certificate expired at {}", validity.not_after),
        ));
    }
    if validity.not_before > now {
        return Err(error(
            path,
            format!("certificate not valid before {}", validity.not_before),
        ));
    }
    Ok(())
}

/// Longest identity forwarded; longer ones are cut.
const MAX_IDENTITY: usize = 256;

/// The identity of a verified client certificate: its subject CN, else its first SAN (DNS
/// name, e-mail, URI or IP address). Printable ASCII only (anything else becomes `_`), at
/// most [`MAX_IDENTITY`] bytes, so it is always a valid header value and log field.
pub fn identity(der: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string);
    let name = cn.or_else(|| {
        use x509_parser::extensions::GeneralName;
        let san = cert.subject_alternative_name().ok()??;
        san.value.general_names.iter().find_map(|name| match name {
            GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) => {
                Some(s.to_string())
            }
            GeneralName::IPAddress(ip) => match ip.len() {
                4 => <[u8; 4]>::try_from(*ip)
                    .ok()
                    .map(|b| std::net::Ipv4Addr::from(b).to_string()),
                16 => <[u8; 16]>::try_from(*ip)
                    .ok()
                    .map(|b| std::net::Ipv6Addr::from(b).to_string()),
                _ => None,
            },
            _ => None,
        })
    })?;
    let clean: String = name
        .chars()
        .take(MAX_IDENTITY)
        .map(|c| if (' '..='~').contains(&c) { c } else { '_' })
        .collect();
    let clean = clean.trim().to_string();
    (!clean.is_empty()).then_some(clean)
}
