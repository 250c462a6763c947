//! TLS for the harness: the per-run PKI, and rustls configs for the echo upstream (server)
//! and the load generator (client).
//!
//! Owns: making the throwaway CA and the leaf certificates (rcgen), reading PEM files, and
//! building `rustls` configs with the ring provider and ALPN `h2`. It must not touch sockets:
//! `echo` accepts and `loadgen` dials.
//!
//! # The PKI
//!
//! Made afresh by every scenario run in its scratch directory, so nothing checked in can
//! expire: a CA, a certificate for the gateways' TLS listeners and one for the echo
//! upstream's, both for `localhost` and `127.0.0.1`. Every key is ECDSA P-256 (signatures
//! `ecdsa_secp256r1_sha256`): what a fast deployment would pick — a P-256 signature costs the
//! server a few tens of µs where an RSA-2048 one costs about a millisecond, and a handshake
//! benchmark with RSA keys would mostly measure RSA.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::{Deserialize, Serialize};

/// The key type of every certificate the PKI makes, for the record.
pub const KEY_TYPE: &str = "ECDSA P-256 (ecdsa_secp256r1_sha256)";

/// The SNI name and DNS SAN of the per-run certificates (they also carry IP SAN 127.0.0.1).
pub const SERVER_NAME: &str = "localhost";

/// The per-run PKI's files, all PEM.
#[derive(Clone, Debug, Serialize)]
pub struct Pki {
    /// The CA's certificate: what clients (the load generator, the gateways towards the echo
    /// upstream) trust.
    pub ca: PathBuf,
    /// The gateways' TLS listener: certificate and key, and both in one file (HAProxy's
    /// `crt` wants them together).
    pub gateway_cert: PathBuf,
    pub gateway_key: PathBuf,
    pub gateway_bundle: PathBuf,
    /// The echo upstream's TLS listener.
    pub upstream_cert: PathBuf,
    pub upstream_key: PathBuf,
    pub key_type: String,
}

fn leaf_params(cn: &str) -> Result<rcgen::CertificateParams, String> {
    let mut p = rcgen::CertificateParams::new(vec![SERVER_NAME.to_string(), "127.0.0.1".into()])
        .map_err(|e| e.to_string())?;
    p.distinguished_name
        .push(rcgen::DnType::CommonName, cn.to_string());
    p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    p.use_authority_key_identifier_extension = true;
    Ok(p)
}

impl Pki {
    /// Make a CA and the two server certificates, and write them into `dir`.
    pub fn generate(dir: &Path) -> Result<Pki, String> {
        let err = |e: rcgen::Error| format!("rcgen: {e}");
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let alg = &rcgen::PKCS_ECDSA_P256_SHA256;
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "ringway bench throwaway CA");
        ca.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = rcgen::KeyPair::generate_for(alg).map_err(err)?;
        let ca = rcgen::CertifiedIssuer::self_signed(ca, ca_key).map_err(err)?;
        let write = |name: &str, text: &str| -> Result<PathBuf, String> {
            let p = dir.join(name);
            std::fs::write(&p, text).map_err(|e| format!("write {}: {e}", p.display()))?;
            Ok(p)
        };
        let leaf = |cn: &str, stem: &str| -> Result<(PathBuf, PathBuf, String), String> {
            let key = rcgen::KeyPair::generate_for(alg).map_err(err)?;
            let cert = leaf_params(cn)?.signed_by(&key, &ca).map_err(err)?;
            let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
            Ok((
                write(&format!("{stem}.pem"), &cert_pem)?,
                write(&format!("{stem}.key"), &key_pem)?,
                format!("{cert_pem}{key_pem}"),
            ))
        };
        let (gateway_cert, gateway_key, bundle) = leaf("ringway bench gateway", "gateway")?;
        let (upstream_cert, upstream_key, _) = leaf("ringway bench echo upstream", "upstream")?;
        Ok(Pki {
            ca: write("ca.pem", &ca.pem())?,
            gateway_bundle: write("gateway-bundle.pem", &bundle)?,
            gateway_cert,
            gateway_key,
            upstream_cert,
            upstream_key,
            key_type: KEY_TYPE.into(),
        })
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("read {}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("parse {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in it", path.display()));
    }
    Ok(certs)
}

/// A server config for `cert`/`key` (PEM): TLS 1.2 and 1.3, ALPN `h2` only, no client auth.
/// rustls's defaults otherwise: stateful resumption from a 256-entry session cache.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, String> {
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("read key {}: {e}", key.display()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs(cert)?, key)
        .map_err(|e| format!("server certificate: {e}"))?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

/// What a TLS client dials with: its config and the name it sends (SNI) and verifies.
#[derive(Clone, Debug)]
pub struct ClientTls {
    pub config: Arc<rustls::ClientConfig>,
    pub server_name: ServerName<'static>,
    /// Whether the session cache is kept across connections (see [`client`]).
    pub resume: bool,
}

/// A client config trusting the CAs in `ca` (PEM), ALPN `h2` only. `resume`: keep rustls's
/// in-memory session cache (256 sessions, TLS 1.3 tickets and 1.2 session ids) across the
/// connections made with this config; without it every handshake is a full one.
/// `server_name`: a DNS name is sent as SNI and verified; an IP address is verified against
/// the certificate's IP SAN and sends no SNI (RFC 6066 forbids IPs there).
pub fn client(ca: &Path, server_name: &str, resume: bool) -> Result<ClientTls, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(ca)? {
        roots
            .add(c)
            .map_err(|e| format!("CA {}: {e}", ca.display()))?;
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    if !resume {
        cfg.resumption = rustls::client::Resumption::disabled();
    }
    let server_name = ServerName::try_from(server_name.to_string())
        .map_err(|e| format!("TLS server name {server_name:?}: {e}"))?;
    Ok(ClientTls {
        config: Arc::new(cfg),
        server_name,
        resume,
    })
}

/// What one TLS connection negotiated, for the record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Negotiated {
    /// e.g. `TLSv1_3`.
    pub version: String,
    /// e.g. `TLS13_AES_128_GCM_SHA256`.
    pub cipher: String,
    /// The ALPN protocol chosen (`h2`), or empty.
    pub alpn: String,
    /// The key exchange group, e.g. `X25519`.
    pub group: String,
}

impl Negotiated {
    pub fn of(c: &rustls::CommonState) -> Negotiated {
        Negotiated {
            version: c
                .protocol_version()
                .map(|v| format!("{v:?}"))
                .unwrap_or_default(),
            cipher: c
                .negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite()))
                .unwrap_or_default(),
            alpn: c
                .alpn_protocol()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .unwrap_or_default(),
            group: c
                .negotiated_key_exchange_group()
                .map(|g| format!("{:?}", g.name()))
                .unwrap_or_default(),
        }
    }

    /// `TLSv1_3 TLS13_AES_128_GCM_SHA256 X25519 alpn h2`.
    pub fn line(&self) -> String {
        format!(
            "{} {} {} alpn {}",
            self.version,
            self.cipher,
            self.group,
            if self.alpn.is_empty() {
                "none"
            } else {
                &self.alpn
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pki_loads_into_rustls_configs() {
        let dir = std::env::temp_dir().join(format!("ringway-bench-pki-{}", std::process::id()));
        let pki = Pki::generate(&dir).unwrap();
        server_config(&pki.gateway_cert, &pki.gateway_key).unwrap();
        server_config(&pki.upstream_cert, &pki.upstream_key).unwrap();
        let bundle = std::fs::read_to_string(&pki.gateway_bundle).unwrap();
        assert!(bundle.contains("BEGIN CERTIFICATE") && bundle.contains("PRIVATE KEY"));
        client(&pki.ca, SERVER_NAME, true).unwrap();
        client(&pki.ca, "127.0.0.1", false).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
