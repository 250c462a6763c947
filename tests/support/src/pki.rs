//! Throwaway certificates for TLS tests, made with `rcgen` at run time (nothing checked in
//! that expires): a CA, server certificates for `localhost`/`127.0.0.1`, client certificates,
//! and the broken ones (expired, wrong name, a key that does not match). [`Pki::write`] puts
//! any of them in PEM files for ringway's flags; [`Pem`] hands them to tonic and rustls.

use std::path::Path;
use std::time::{Duration, SystemTime};

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use crate::gateway::TempPath;

const DAY: Duration = Duration::from_secs(86_400);

/// A certificate (chain: the leaf only) and its key, PEM.
#[derive(Debug, Clone)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

/// A test CA and what it signs.
pub struct Pki {
    pub name: String,
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM: what peers trust.
    pub ca: String,
}

/// Files written by [`Pki::write`]; deleted when dropped.
#[derive(Debug)]
pub struct PemFiles {
    pub cert: TempPath,
    pub key: TempPath,
}

impl PemFiles {
    pub fn cert(&self) -> &str {
        self.cert.as_str()
    }

    pub fn key(&self) -> &str {
        self.key.as_str()
    }
}

impl Pki {
    /// A new CA called `name`.
    pub fn new(name: &str) -> Pki {
        let key = KeyPair::generate().expect("a CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("a self-signed CA");
        Pki {
            name: name.to_owned(),
            ca: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for `localhost` and `127.0.0.1`.
    pub fn server(&self) -> Pem {
        self.leaf("localhost", &["localhost", "127.0.0.1"], true, false)
    }

    /// A server certificate valid only for `name` (not for localhost or 127.0.0.1).
    pub fn server_for(&self, name: &str) -> Pem {
        self.leaf(name, &[name], true, false)
    }

    /// A server certificate for localhost that expired in 2020.
    pub fn expired_server(&self) -> Pem {
        self.leaf("localhost", &["localhost", "127.0.0.1"], true, true)
    }

    /// A server certificate for localhost, valid from a day ago until `days` days from now.
    pub fn server_expiring_in(&self, days: u64) -> Pem {
        let now = SystemTime::now();
        let mut params = self.leaf_params("localhost", &["localhost", "127.0.0.1"], true);
        params.not_before = (now - DAY).into();
        params.not_after = (now + DAY * days as u32).into();
        self.sign(params)
    }

    /// A server certificate for localhost that only becomes valid `days` days from now.
    pub fn server_not_yet_valid(&self, days: u64) -> Pem {
        let now = SystemTime::now();
        let mut params = self.leaf_params("localhost", &["localhost", "127.0.0.1"], true);
        params.not_before = (now + DAY * days as u32).into();
        params.not_after = (now + DAY * (days as u32 + 365)).into();
        self.sign(params)
    }

    /// A client certificate whose subject CN is `cn`.
    pub fn client(&self, cn: &str) -> Pem {
        self.leaf(cn, &[], false, false)
    }

    /// A server certificate whose key is another one's: they do not match.
    pub fn mismatched_server(&self) -> Pem {
        let a = self.server();
        let b = self.server();
        Pem {
            cert: a.cert,
            key: b.key,
        }
    }

    /// Writes `pem` to two temporary files.
    pub fn write(pem: &Pem, stem: &str) -> PemFiles {
        PemFiles {
            cert: written(&format!("{stem}-cert.pem"), &pem.cert),
            key: written(&format!("{stem}-key.pem"), &pem.key),
        }
    }

    /// Writes the CA certificate to a temporary file.
    pub fn write_ca(&self, stem: &str) -> TempPath {
        written(&format!("{stem}-ca.pem"), &self.ca)
    }

    fn leaf(&self, cn: &str, names: &[&str], server: bool, expired: bool) -> Pem {
        let mut params = self.leaf_params(cn, names, server);
        if expired {
            params.not_before = date_time_ymd(2019, 1, 1);
            params.not_after = date_time_ymd(2020, 1, 1);
        }
        self.sign(params)
    }

    fn leaf_params(&self, cn: &str, names: &[&str], server: bool) -> CertificateParams {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        params
    }

    /// Signs `params` with a fresh key.
    fn sign(&self, params: CertificateParams) -> Pem {
        let key = KeyPair::generate().expect("a leaf key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("a CA-signed leaf");
        Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// A temporary file holding `contents`.
pub fn written(name: &str, contents: &str) -> TempPath {
    let path = TempPath::new(name);
    overwrite(path.path(), contents);
    path
}

/// Overwrites `path` with `contents` (for reload tests).
pub fn overwrite(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}
