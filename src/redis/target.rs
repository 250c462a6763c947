//! What the shard's Redis connection connects to and logs in as: a [`RedisTarget`], resolved
//! from `redis.addr` (`host:port` or a `redis://` URL) and the `[redis]` credential fields.
//!
//! Owns: parsing the URL (percent-decoding its user and password), the rule that combines the
//! URL with the fields, and reading the password from its one source. Opens no socket and
//! speaks no RESP: [`super::transport`] dials what this names and [`super`] logs in with it.
//!
//! # The rule
//!
//! Each of user, password and database may be given once: in the URL or in its own field
//! (`redis.user`; `redis.password`, `redis.password_file` or `redis.password_env`;
//! `redis.db`). Given twice, or with two password sources, is an error naming the field, not
//! a silent precedence: a credential that is not the one in use is a trap for whoever rotates
//! it. A user needs a password. Without a user, a password logs in as Redis's `default` user
//! (the one `requirepass` sets).
//!
//! Every error here names its field and never carries the password: the URL in a message is
//! always [`RedisAddr::redacted`].

use std::fmt;

use crate::config::{bad, split_host_port, ConfigError, RedisAddr, RedisConfig, Secret};

/// Redis's port when a URL leaves it out.
pub const DEFAULT_PORT: u16 = 6379;

/// Where the shard's Redis connection goes and how it logs in. Debug shows no password
/// ([`Secret`]); Display is `host:port`, for messages.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisTarget {
    /// A name or an IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// `rediss://`: the transport is TLS ([`super::transport::open`], `[redis.tls]`).
    pub tls: bool,
    /// ACL user; `None` logs in as `default` when there is a password.
    pub user: Option<String>,
    /// `None`: no login at all.
    pub password: Option<Secret>,
    /// Selected after login when not 0.
    pub db: u32,
}

impl fmt::Display for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// What `redis.addr` says by itself, before the fields are combined with it.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedAddr {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub db: Option<u32>,
}

impl RedisTarget {
    /// Resolves the target from the config: parses `addr`, combines it with the fields by the
    /// rule in the module doc, and reads the password from its source (file or environment).
    /// Called when the config is validated and again before every connection attempt.
    pub fn from_config(config: &RedisConfig) -> Result<RedisTarget, ConfigError> {
        let url = parse_addr(&config.addr).map_err(|problem| bad("redis.addr", problem))?;
        let user = match (url.user, &config.user) {
            (Some(_), Some(_)) => {
                return Err(bad(
                    "redis.user",
                    "the URL in redis.addr names a user too; give it in one place",
                ))
            }
            (from_url, field) => from_url.or_else(|| field.clone()),
        };
        let db = match (url.db, config.db) {
            (Some(_), Some(_)) => {
                return Err(bad(
                    "redis.db",
                    "the URL in redis.addr names a database too; give it in one place",
                ))
            }
            (from_url, field) => from_url.or(field).unwrap_or(0),
        };
        let password = password(config, url.password)?;
        if user.is_some() && password.is_none() {
            return Err(bad(
                "redis.user",
                "a user needs a password (in the URL, redis.password, redis.password_file or \
                 redis.password_env)",
            ));
        }
        Ok(RedisTarget {
            host: url.host,
            port: url.port,
            tls: url.tls,
            user,
            password,
            db,
        })
    }
}

/// The password from its one source, read now.
fn password(config: &RedisConfig, from_url: Option<Secret>) -> Result<Option<Secret>, ConfigError> {
    let given: Vec<&str> = [
        ("redis.addr", from_url.is_some()),
        ("redis.password", config.password.is_some()),
        ("redis.password_file", config.password_file.is_some()),
        ("redis.password_env", config.password_env.is_some()),
    ]
    .into_iter()
    .filter_map(|(field, set)| set.then_some(field))
    .collect();
    if let [.., last] = given[..] {
        if given.len() > 1 {
            return Err(bad(
                last,
                format!(
                    "the password is given {} times ({}); give exactly one source",
                    given.len(),
                    given.join(", ")
                ),
            ));
        }
    }
    if let Some(secret) = from_url.or_else(|| config.password.clone()) {
        return non_empty(
            secret,
            if config.password.is_some() {
                "redis.password"
            } else {
                "redis.addr"
            },
        );
    }
    if let Some(path) = &config.password_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            bad(
                "redis.password_file",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        // `echo secret > file` and most secret stores end the file with a newline.
        let secret = Secret::new(text.trim_end_matches(['\n', '\r']));
        return non_empty(secret, "redis.password_file");
    }
    if let Some(name) = &config.password_env {
        let value = std::env::var(name).map_err(|e| {
            bad(
                "redis.password_env",
                match e {
                    std::env::VarError::NotPresent => {
                        format!("environment variable `{name}` is not set")
                    }
                    std::env::VarError::NotUnicode(_) => {
                        format!("environment variable `{name}` is not UTF-8")
                    }
                },
            )
        })?;
        return non_empty(Secret::new(value), "redis.password_env");
    }
    Ok(None)
}

fn non_empty(secret: Secret, field: &str) -> Result<Option<Secret>, ConfigError> {
    if secret.expose().is_empty() {
        return Err(bad(field, "the password is empty"));
    }
    Ok(Some(secret))
}

/// Parses `host:port` or `redis[s]://[user[:password]@]host[:port][/db]`. The error never
/// carries the password.
pub fn parse_addr(addr: &RedisAddr) -> Result<ParsedAddr, String> {
    let text = addr.as_str();
    let shown = addr.redacted();
    let (tls, rest) = if let Some(rest) = text.strip_prefix("redis://") {
        (false, rest)
    } else if let Some(rest) = text.strip_prefix("rediss://") {
        (true, rest)
    } else if let Some((scheme, _)) = text.split_once("://") {
        return Err(format!(
            "unknown scheme `{scheme}://`; use redis://, rediss:// or host:port"
        ));
    } else {
        return match split_host_port(text) {
            Some((host, port)) => Ok(ParsedAddr {
                host: host.to_string(),
                port,
                tls: false,
                user: None,
                password: None,
                db: None,
            }),
            None => Err(format!(
                "`{shown}` is not host:port or redis://[user[:password]@]host[:port][/db]"
            )),
        };
    };
    if rest.contains(['?', '#']) {
        return Err(format!(
            "`{shown}`: query and fragment are not supported; use the redis.* fields"
        ));
    }
    // The userinfo ends at the last `@`; an unescaped `/` or `@` in a password is caught below
    // as a bad host or database rather than misread.
    let (userinfo, location) = match rest.rsplit_once('@') {
        Some((userinfo, location)) => (Some(userinfo), location),
        None => (None, rest),
    };
    let (hostport, path) = match location.split_once('/') {
        Some((hostport, path)) => (hostport, Some(path)),
        None => (location, None),
    };
    let (host, port) =
        match split_host_port(hostport) {
            Some((host, port)) => (host.to_string(), port),
            // No port: the default, if what is left is a valid host.
            None => {
                match split_host_port(&format!("{hostport}:{DEFAULT_PORT}")) {
                    Some((host, port)) if !hostport.ends_with(':') => (host.to_string(), port),
                    _ => {
                        return Err(format!(
                    "`{shown}`: `{}` is not host[:port] (percent-encode `@`, `/` and `:` in a \
                     user or password)",
                    if userinfo.is_some() { "<redacted>" } else { hostport }
                ))
                    }
                }
            }
        };
    let db = match path {
        None | Some("") => None,
        Some(db) => Some(db.parse::<u32>().map_err(|_| {
            format!("`{shown}`: the path must be a database number, as in redis://host:6379/2")
        })?),
    };
    let (user, password) = match userinfo {
        None => (None, None),
        Some(userinfo) => {
            let (user, password) = match userinfo.split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (userinfo, None),
            };
            let user = percent_decode(user).map_err(|why| format!("`{shown}`: the user {why}"))?;
            let password = password
                .map(percent_decode)
                .transpose()
                .map_err(|why| format!("`{shown}`: the password {why}"))?;
            (
                (!user.is_empty()).then_some(user),
                password.filter(|p| !p.is_empty()).map(Secret::new),
            )
        }
    };
    Ok(ParsedAddr {
        host,
        port,
        tls,
        user,
        password,
        db,
    })
}

/// Decodes `%XX` escapes (RFC 3986 §2.1); the result must be UTF-8. The error says why
/// without quoting the text (it may be a password).
fn percent_decode(text: &str) -> Result<String, &'static str> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("has a `%` not followed by two hex digits")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "is not UTF-8 once percent-decoded")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ParsedAddr, String> {
        parse_addr(&RedisAddr::new(s))
    }

    fn config(addr: &str) -> RedisConfig {
        RedisConfig {
            addr: RedisAddr::new(addr),
            ..RedisConfig::default()
        }
    }

    #[test]
    fn plain_host_port_and_urls() {
        let p = parse("10.0.0.1:6380").unwrap();
        assert_eq!(
            (p.host.as_str(), p.port, p.tls, p.db),
            ("10.0.0.1", 6380, false, None)
        );
        let p = parse("redis://cache.internal").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("cache.internal", DEFAULT_PORT));
        let p = parse("redis://ringway:s%40cr%3At%2F%25@[::1]:7000/2").unwrap();
        assert_eq!((p.host.as_str(), p.port, p.db), ("::1", 7000, Some(2)));
        assert_eq!(p.user.as_deref(), Some("ringway"));
        assert_eq!(p.password.as_ref().map(Secret::expose), Some("s@cr:t/%"));
        let p = parse("redis://:only-pw@h:1/").unwrap();
        assert_eq!(
            (p.user, p.password.map(|s| s.expose().to_string()), p.db),
            (None, Some("only-pw".into()), None)
        );
        assert!(parse("rediss://h:1").unwrap().tls);
    }

    #[test]
    fn bad_urls_are_errors_without_the_password() {
        for bad in [
            "redis://u:hunter2@h:1/x",
            "redis://u:hunter2@h:1?db=2",
            "redis://u:hunter2@h:0",
            "redis://u:hun%zzter2@h:1",
            "http://u:hunter2@h:1",
            "u:hunter2@h:1",
            "redis://u:hunter2@",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(!e.contains("hunter2") && !e.contains("hun"), "{bad}: {e}");
        }
    }

    #[test]
    fn redacted_addresses_hide_the_password() {
        let shown = |s: &str| RedisAddr::new(s).to_string();
        assert_eq!(shown("redis://u:pw@h:1/2"), "redis://u:<redacted>@h:1/2");
        assert_eq!(shown("redis://:pw@h:1"), "redis://:<redacted>@h:1");
        assert_eq!(shown("redis://u@h:1"), "redis://u@h:1");
        assert_eq!(shown("h:1"), "h:1");
        assert_eq!(shown("redis://u:p/w@h:1"), "redis://u:<redacted>@h:1");
        assert_eq!(
            shown("redis://u:pw@h:1?x=pw"),
            "redis://u:<redacted>@h:1?<redacted>"
        );
        assert_eq!(
            format!("{:?}", RedisAddr::new("redis://u:pw@h")),
            "\"redis://u:<redacted>@h\""
        );
    }

    #[test]
    fn url_and_fields_combine_once_each() {
        let mut c = config("redis://ringway:pw@h:1/3");
        let t = RedisTarget::from_config(&c).unwrap();
        assert_eq!((t.user.as_deref(), t.db), (Some("ringway"), 3));
        assert!(!format!("{t:?}").contains("pw\""), "{t:?}");
        c.user = Some("other".into());
        assert_eq!(
            RedisTarget::from_config(&c).unwrap_err().field,
            "redis.user"
        );
        c.user = None;
        c.db = Some(3);
        assert_eq!(RedisTarget::from_config(&c).unwrap_err().field, "redis.db");
        c.db = None;
        c.password_env = Some("RINGWAY_TEST_NEVER_SET".into());
        let e = RedisTarget::from_config(&c).unwrap_err();
        assert_eq!(e.field, "redis.password_env");
        assert!(e.problem.contains("redis.addr, redis.password_env"), "{e}");

        let mut c = config("h:1");
        c.user = Some("u".into());
        assert_eq!(
            RedisTarget::from_config(&c).unwrap_err().field,
            "redis.user"
        );
        c.password = Some(Secret::new("pw"));
        c.db = Some(2);
        let t = RedisTarget::from_config(&c).unwrap();
        assert_eq!(
            (t.user.as_deref(), t.db, t.to_string()),
            (Some("u"), 2, "h:1".into())
        );
        c.password_file = Some("/nonexistent/pw".into());
        assert_eq!(
            RedisTarget::from_config(&c).unwrap_err().field,
            "redis.password_file"
        );
    }

    #[test]
    fn password_sources_are_read() {
        let mut c = config("h:1");
        c.password_env = Some("RINGWAY_TEST_NEVER_SET".into());
        let e = RedisTarget::from_config(&c).unwrap_err();
        assert_eq!(e.field, "redis.password_env");
        assert!(e.problem.contains("not set"), "{e}");

        let path = std::env::temp_dir().join(format!("ringway-pw-{}", std::process::id()));
        std::fs::write(&path, "from-file\n").unwrap();
        let mut c = config("h:1");
        c.password_file = Some(path.clone());
        let t = RedisTarget::from_config(&c).unwrap();
        assert_eq!(t.password.as_ref().map(Secret::expose), Some("from-file"));
        std::fs::write(&path, "\n").unwrap();
        assert_eq!(
            RedisTarget::from_config(&c).unwrap_err().field,
            "redis.password_file"
        );
        let _ = std::fs::remove_file(&path);
        let e = RedisTarget::from_config(&c).unwrap_err();
        assert!(e.problem.contains("cannot read"), "{e}");

        let t = RedisTarget::from_config(&config("rediss://u:pw@h:1/2")).unwrap();
        assert!(t.tls);
        assert_eq!((t.user.as_deref(), t.db), (Some("u"), 2));
    }
}
