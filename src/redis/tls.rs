//! The rustls client config for `rediss://`: from `[redis.tls]` (or `--redis-ca`) to a
//! [`ClientConfig`], through the PEM loading the gateway's other TLS uses
//! ([`crate::tls::load`]).
//!
//! Owns: which files Redis's TLS reads and when. Opens no socket ([`super::transport`] runs
//! the handshake).
//!
//! # When the files are read
//!
//! When the config is validated ([`check`]: a bad file fails the start, naming the field) and
//! again at every connection attempt ([`client_config`]), so a renewed CA or client
//! certificate is used by the next (re)connect. SIGHUP and `POST /reload` do not touch an open
//! Redis connection: its certificates were checked when it was made. (The process-wide
//! [`crate::tls::Material`] holds the listener's and the targets' configs; Redis reconnects
//! are rare enough that reading three small files each time costs nothing worth sharing.)
//!
//! # Resumption
//!
//! Each shard keeps one rustls session store for its Redis connection across reconnects, so a
//! redial after a dropped connection resumes (TLS 1.3 tickets) instead of a full handshake.
//! rustls resumes a session only under the config that made it (the same verifier), so the
//! shard keeps its config too ([`Configs`]) and rebuilds it only when a file's modification
//! time or length changed: every attempt looks at the files, and a renewed one is read.

use std::sync::Arc;
use std::time::SystemTime;

use rustls::ClientConfig;

use crate::config::{bad, ConfigError, RedisConfig, RedisTlsConfig, UpstreamTlsConfig};
use crate::tls::FileError;

/// Sessions kept per shard: one Redis, but its name may resolve to a few servers.
const SESSIONS: usize = 8;

/// The session store a shard keeps across reconnects.
pub type Resumption = rustls::client::Resumption;

/// A new session store for one shard's Redis connection.
pub fn resumption() -> Resumption {
    Resumption::in_memory_sessions(SESSIONS)
}

/// A shard's Redis TLS config and session store, kept across reconnects.
pub struct Configs {
    resumption: Resumption,
    /// The config last built and what its files looked like then.
    current: Option<(Vec<Stamp>, Arc<ClientConfig>)>,
}

/// A file's modification time and length: changed when a certificate is renewed.
type Stamp = (SystemTime, u64);

impl Default for Configs {
    fn default() -> Configs {
        Configs {
            resumption: resumption(),
            current: None,
        }
    }
}

impl Configs {
    /// The config for the next connection attempt: the last one while no file changed (so the
    /// session store's tickets still resume), else rebuilt from the files.
    pub fn get(&mut self, t: &RedisTlsConfig) -> Result<Arc<ClientConfig>, ConfigError> {
        let stamps = stamps(t);
        if let (Some(now), Some((then, config))) = (&stamps, &self.current) {
            if now == then {
                return Ok(config.clone());
            }
        }
        let config = client_config(t, &self.resumption)?;
        self.current = stamps.map(|s| (s, config.clone()));
        Ok(config)
    }
}

/// The stamps of the files `t` names; `None` if one cannot be had (the rebuild then says why).
fn stamps(t: &RedisTlsConfig) -> Option<Vec<Stamp>> {
    [&t.ca, &t.cert, &t.key]
        .into_iter()
        .filter(|path| !path.is_empty())
        .map(|path| {
            let meta = std::fs::metadata(path).ok()?;
            Some((meta.modified().ok()?, meta.len()))
        })
        .collect()
}

/// Reads the `[redis.tls]` files now and builds the config. The error names the field.
pub fn client_config(
    t: &RedisTlsConfig,
    resumption: &Resumption,
) -> Result<Arc<ClientConfig>, ConfigError> {
    let same_shape = UpstreamTlsConfig {
        ca: t.ca.clone(),
        cert: t.cert.clone(),
        key: t.key.clone(),
    };
    let mut config =
        crate::tls::load::client_config(&same_shape, resumption).map_err(|e| file_error(t, e))?;
    // Redis speaks no ALPN; the upstream config offers `h2`, which would only confuse.
    config.alpn_protocols.clear();
    Ok(Arc::new(config))
}

/// Validates `[redis.tls]` and, for a `rediss://` address, reads its files once. The fields
/// are not refused beside a `redis://` address: a config file is validated before the flags
/// apply, and `--redis rediss://...` may be what puts them to use.
pub fn check(config: &RedisConfig) -> Result<(), ConfigError> {
    let t = &config.tls;
    let paired = "redis.tls.cert and key are set together";
    match (t.cert.is_empty(), t.key.is_empty()) {
        (false, true) => return Err(bad("redis.tls.key", paired)),
        (true, false) => return Err(bad("redis.tls.cert", paired)),
        _ => {}
    }
    if !super::target::parse_addr(&config.addr).is_ok_and(|a| a.tls) {
        return Ok(());
    }
    client_config(t, &resumption()).map(|_| ())
}

/// A [`FileError`] as a config error on the field that names the file.
fn file_error(t: &RedisTlsConfig, e: FileError) -> ConfigError {
    let field = if !e.path.is_empty() && e.path == t.ca {
        "redis.tls.ca"
    } else if !e.path.is_empty() && e.path == t.key {
        "redis.tls.key"
    } else {
        "redis.tls.cert"
    };
    bad(field, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RedisAddr;

    fn config(addr: &str, t: RedisTlsConfig) -> RedisConfig {
        RedisConfig {
            addr: RedisAddr::new(addr),
            tls: t,
            ..RedisConfig::default()
        }
    }

    #[test]
    fn tls_files_are_read_for_rediss() {
        let ca = RedisTlsConfig {
            ca: "/nonexistent/ca.pem".into(),
            ..RedisTlsConfig::default()
        };
        // Not read yet: the flags may still make it rediss://, and it is checked again then.
        check(&config("redis://u:pw@h:1", ca.clone())).unwrap();
        let e = check(&config("rediss://h:1", ca)).unwrap_err();
        assert_eq!(e.field, "redis.tls.ca");
        assert!(e.problem.contains("/nonexistent/ca.pem"), "{e}");
        let half = RedisTlsConfig {
            cert: "c.pem".into(),
            ..RedisTlsConfig::default()
        };
        assert_eq!(
            check(&config("rediss://h:1", half)).unwrap_err().field,
            "redis.tls.key"
        );
        // The system roots: nothing to read.
        check(&config("rediss://h:1", RedisTlsConfig::default())).unwrap();
        check(&config("h:1", RedisTlsConfig::default())).unwrap();
    }
}
