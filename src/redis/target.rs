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

use crate::config::{
    bad, split_host_port, ConfigError, RedisAddr, RedisConfig, RedisMode, Secret,
    DEFAULT_REDIS_ADDR,
};

/// Redis's port when a URL leaves it out.
pub const DEFAULT_PORT: u16 = 6379;
/// A sentinel's port when a `redis+sentinel://` URL leaves it out.
pub const DEFAULT_SENTINEL_PORT: u16 = 26379;

/// Where the shard's Redis connection goes and how it logs in. Debug shows no password
/// ([`Secret`]); Display is `host:port`, for messages.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisTarget {
    /// A name or an IP address (IPv6 without brackets). Sentinel mode: empty until the
    /// sentinels name the primary ([`RedisTarget::at`]).
    pub host: String,
    pub port: u16,
    /// Sentinel mode: whom to ask for the primary, and how to log in to them.
    pub sentinel: Option<Sentinels>,
    /// Cluster mode: the seed nodes asked for the slot map, `(host, port)`, IPv6 without
    /// brackets. `host`/`port` above are the first seed, or the node [`RedisTarget::at`] names.
    pub cluster: Option<Vec<(String, u16)>>,
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

/// Sentinel mode's half of a target: the sentinels, in the order to ask them, the service
/// whose primary they are asked for, and the sentinels' own login. TLS is the target's.
#[derive(Debug, Clone, PartialEq)]
pub struct Sentinels {
    /// `(host, port)`; IPv6 without brackets.
    pub addrs: Vec<(String, u16)>,
    pub service: String,
    pub user: Option<String>,
    pub password: Option<Secret>,
}

/// What a `redis+sentinel://` URL names besides credentials and database.
#[derive(Debug, Clone, PartialEq)]
pub struct SentinelUrl {
    pub addrs: Vec<(String, u16)>,
    pub service: String,
}

/// What `redis.addr` says by itself, before the fields are combined with it.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedAddr {
    /// Single mode: the server. Sentinel URL: the first sentinel.
    pub host: String,
    pub port: u16,
    /// `redis+sentinel://`: the sentinels and the service.
    pub sentinel: Option<SentinelUrl>,
    /// `redis+cluster://`: the seed nodes.
    pub cluster: Option<Vec<(String, u16)>>,
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
        let sentinel = sentinels(config, url.sentinel.clone())?;
        let cluster = cluster_nodes(config, url.cluster.clone())?;
        if cluster.is_some() && config.db.is_some_and(|db| db != 0) {
            return Err(bad(
                "redis.db",
                "a Redis Cluster has only database 0; leave redis.db out",
            ));
        }
        let user = match (url.user, &config.user) {
            (Some(_), Some(_)) => {
                return Err(bad(
                    "redis.user",
                    "the URL in redis.addr names a user too; give it \
                     in one place",
                ))
            }
            (from_url, field) => from_url.or_else(|| field.clone()),
        };
        let db = match (url.db, config.db) {
            (Some(_), Some(_)) => {
                return Err(bad(
                    "redis.db",
                    "the URL in redis.addr names a database too; give it \
                     in one place",
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
        let (host, port) = match (&sentinel, &cluster) {
            (Some(_), _) => (String::new(), 0),
            (None, Some(seeds)) => seeds[0].clone(),
            (None, None) => (url.host, url.port),
        };
        Ok(RedisTarget {
            host,
            port,
            sentinel,
            cluster,
            tls: url.tls,
            user,
            password,
            db,
        })
    }
}

impl RedisTarget {
    /// This target at `host:port`: the primary the sentinels named.
    pub fn at(&self, host: &str, port: u16) -> RedisTarget {
        RedisTarget {
            host: host.to_string(),
            port,
            ..self.clone()
        }
    }

    /// A sentinel as a target: same TLS, the sentinels' login, no database.
    pub fn sentinel_at(&self, host: &str, port: u16) -> RedisTarget {
        let login = self.sentinel.as_ref();
        RedisTarget {
            host: host.to_string(),
            port,
            sentinel: None,
            cluster: None,
            tls: self.tls,
            user: login.and_then(|s| s.user.clone()),
            password: login.and_then(|s| s.password.clone()),
            db: 0,
        }
    }
}

/// Sentinel mode's settings from a `redis+sentinel://` URL or from the fields (never both),
/// `None` in single mode. Each error names its field.
fn sentinels(
    config: &RedisConfig,
    from_url: Option<SentinelUrl>,
) -> Result<Option<Sentinels>, ConfigError> {
    let url_is_default = config.addr.as_str() == DEFAULT_REDIS_ADDR;
    let (addrs, service) = match (from_url, config.mode) {
        (Some(url), _) => {
            if !config.sentinels.is_empty() {
                return Err(bad(
                    "redis.sentinels",
                    "redis.addr is a redis+sentinel:// URL naming the sentinels already; give \
                     them in one place",
                ));
            }
            if !config.service_name.is_empty() {
                return Err(bad(
                    "redis.service_name",
                    "redis.addr is a redis+sentinel:// URL naming the service already; give it \
                     in one place",
                ));
            }
            (url.addrs, url.service)
        }
        (None, RedisMode::Sentinel) => {
            if !url_is_default {
                return Err(bad(
                    "redis.addr",
                    format!(
                        "is unused in mode = \"sentinel\" (the sentinels are redis.sentinels); \
                         leave it out, or make it the redis+sentinel:// URL instead of the \
                         fields (now `{}`)",
                        config.addr.redacted()
                    ),
                ));
            }
            if config.sentinels.is_empty() {
                return Err(bad(
                    "redis.sentinels",
                    "mode = \"sentinel\" needs at least one sentinel, as in \
                     sentinels = [\"10.0.0.1:26379\"]",
                ));
            }
            let mut addrs = Vec::with_capacity(config.sentinels.len());
            for sentinel in &config.sentinels {
                let (host, port) = split_host_port(sentinel).ok_or_else(|| {
                    bad("redis.sentinels", format!("`{sentinel}` is not host:port"))
                })?;
                addrs.push((host.to_string(), port));
            }
            if config.service_name.is_empty() {
                return Err(bad(
                    "redis.service_name",
                    "mode = \"sentinel\" needs the name the sentinels monitor the primary under",
                ));
            }
            (addrs, config.service_name.clone())
        }
        (None, RedisMode::Single | RedisMode::Cluster) => {
            for (field, set) in [
                ("redis.sentinels", !config.sentinels.is_empty()),
                ("redis.service_name", !config.service_name.is_empty()),
                ("redis.sentinel_user", config.sentinel_user.is_some()),
                (
                    "redis.sentinel_password",
                    config.sentinel_password.is_some(),
                ),
            ] {
                if set {
                    return Err(bad(
                        field,
                        "is used only in sentinel mode (mode = \"sentinel\" or a \
                         redis+sentinel:// addr)",
                    ));
                }
            }
            return Ok(None);
        }
    };
    if config.sentinel_user.is_some() && config.sentinel_password.is_none() {
        return Err(bad(
            "redis.sentinel_user",
            "a sentinel user needs redis.sentinel_password",
        ));
    }
    let password = config
        .sentinel_password
        .clone()
        .map(|p| non_empty(p, "redis.sentinel_password"))
        .transpose()?
        .flatten();
    Ok(Some(Sentinels {
        addrs,
        service,
        user: config.sentinel_user.clone(),
        password,
    }))
}

/// Cluster mode's seed nodes from a `redis+cluster://` URL or from `redis.nodes` (never both),
/// `None` in the other modes. Each error names its field.
fn cluster_nodes(
    config: &RedisConfig,
    from_url: Option<Vec<(String, u16)>>,
) -> Result<Option<Vec<(String, u16)>>, ConfigError> {
    match (from_url, config.mode) {
        (Some(_), _) if !config.nodes.is_empty() => Err(bad(
            "redis.nodes",
            "redis.addr is a redis+cluster:// URL naming the nodes already; give them in one \
             place",
        )),
        (Some(_), RedisMode::Sentinel) => Err(bad(
            "redis.mode",
            "is \"sentinel\" but redis.addr is a redis+cluster:// URL",
        )),
        (Some(seeds), _) => Ok(Some(seeds)),
        (None, RedisMode::Cluster) => {
            if config.addr.as_str() != DEFAULT_REDIS_ADDR {
                return Err(bad(
                    "redis.addr",
                    format!(
                        "is unused in mode = \"cluster\" (the nodes are redis.nodes); leave it \
                         out, or make it the redis+cluster:// URL instead of the fields (now \
                         `{}`)",
                        config.addr.redacted()
                    ),
                ));
            }
            if config.nodes.is_empty() {
                return Err(bad(
                    "redis.nodes",
                    "mode = \"cluster\" needs at least one node, as in \
                     nodes = [\"10.0.0.1:6379\"]",
                ));
            }
            let mut seeds = Vec::with_capacity(config.nodes.len());
            for node in &config.nodes {
                let (host, port) = split_host_port(node)
                    .ok_or_else(|| bad("redis.nodes", format!("`{node}` is not host:port")))?;
                seeds.push((host.to_string(), port));
            }
            Ok(Some(seeds))
        }
        (None, _) if !config.nodes.is_empty() => Err(bad(
            "redis.nodes",
            "is used only in cluster mode (mode = \"cluster\" or a redis+cluster:// addr)",
        )),
        (None, _) => Ok(None),
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
    let (tls, sentinel, cluster, rest) = if let Some(rest) = text.strip_prefix("redis://") {
        (false, false, false, rest)
    } else if let Some(rest) = text.strip_prefix("rediss://") {
        (true, false, false, rest)
    } else if let Some(rest) = text.strip_prefix("redis+sentinel://") {
        (false, true, false, rest)
    } else if let Some(rest) = text.strip_prefix("rediss+sentinel://") {
        (true, true, false, rest)
    } else if let Some(rest) = text.strip_prefix("redis+cluster://") {
        (false, false, true, rest)
    } else if let Some(rest) = text.strip_prefix("rediss+cluster://") {
        (true, false, true, rest)
    } else if let Some((scheme, _)) = text.split_once("://") {
        return Err(format!(
            "unknown scheme `{scheme}://`; use redis://, rediss://, redis+sentinel://, \
             rediss+sentinel://, redis+cluster://, rediss+cluster:// or host:port"
        ));
    } else {
        return match split_host_port(text) {
            Some((host, port)) => Ok(ParsedAddr {
                host: host.to_string(),
                port,
                sentinel: None,
                cluster: None,
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
    let host_port =
        |hostport: &str, default: u16| -> Result<(String, u16), String> {
            match split_host_port(hostport) {
                Some((host, port)) => Ok((host.to_string(), port)),
                // No port: the default, if what is left is a valid host.
                None => match split_host_port(&format!("{hostport}:{default}")) {
                    Some((host, port)) if !hostport.ends_with(':') => Ok((host.to_string(), port)),
                    _ => {
                        Err(format!(
                    "`{shown}`: `{}` is not host[:port] (percent-encode `@`, `/` and `:` in a \
                     user or password)",
                    if userinfo.is_some() { "<redacted>" } else { hostport }
                ))
                    }
                },
            }
        };
    let mut seeds = None;
    let (host, port, sentinel, path) = if cluster {
        let addrs = hostport
            .split(',')
            .map(|one| host_port(one, DEFAULT_PORT))
            .collect::<Result<Vec<_>, _>>()?;
        if path.is_some_and(|p| !p.is_empty()) {
            return Err(format!(
                "`{shown}`: a Redis Cluster has only database 0, so the URL takes no path, as \
                 in redis+cluster://10.0.0.1:6379,10.0.0.2:6379"
            ));
        }
        let (host, port) = addrs[0].clone();
        seeds = Some(addrs);
        (host, port, None, None)
    } else if sentinel {
        let addrs = hostport
            .split(',')
            .map(|one| host_port(one, DEFAULT_SENTINEL_PORT))
            .collect::<Result<Vec<_>, _>>()?;
        let (service, db) = match path {
            Some(path) => match path.split_once('/') {
                Some((service, db)) => (service, Some(db)),
                None => (path, None),
            },
            None => ("", None),
        };
        if service.is_empty() {
            return Err(format!(
                "`{shown}`: the path must name the service the sentinels monitor, as in \
                 redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster[/db]"
            ));
        }
        let (host, port) = addrs[0].clone();
        let sentinel = SentinelUrl {
            addrs,
            service: service.to_string(),
        };
        (host, port, Some(sentinel), db)
    } else {
        let (host, port) = host_port(hostport, DEFAULT_PORT)?;
        (host, port, None, path)
    };
    let db = match path {
        None | Some("") => None,
        Some(db) => Some(db.parse::<u32>().map_err(|_| {
            format!(
                "`{shown}`: the database must be a number, as in redis://host:6379/2 or \
                 redis+sentinel://host:26379/mymaster/2"
            )
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
        sentinel,
        cluster: seeds,
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
    fn sentinel_urls() {
        let p = parse("redis+sentinel://10.0.0.1:26380,[::1],s3.internal:5000/mymaster").unwrap();
        let url = p.sentinel.unwrap();
        assert_eq!(
            url.addrs,
            vec![
                ("10.0.0.1".to_string(), 26380),
                ("::1".to_string(), DEFAULT_SENTINEL_PORT),
                ("s3.internal".to_string(), 5000),
            ]
        );
        assert_eq!(
            (url.service.as_str(), p.tls, p.db),
            ("mymaster", false, None)
        );
        let p = parse("rediss+sentinel://u:p%40w@h:1/svc/3").unwrap();
        assert_eq!((p.tls, p.db, p.user.as_deref()), (true, Some(3), Some("u")));
        assert_eq!(p.password.as_ref().map(Secret::expose), Some("p@w"));
        assert_eq!(p.sentinel.unwrap().service, "svc");

        let t = RedisTarget::from_config(&config("redis+sentinel://:pw@h:1,h:2/svc/2")).unwrap();
        let s = t.sentinel.as_ref().unwrap();
        assert_eq!((s.addrs.len(), s.service.as_str(), t.db), (2, "svc", 2));
        assert_eq!(
            (t.host.as_str(), t.port),
            ("", 0),
            "the primary is not known yet"
        );
        assert_eq!(t.password.as_ref().map(Secret::expose), Some("pw"));
        let primary = t.at("10.0.0.9", 6380);
        assert_eq!(primary.to_string(), "10.0.0.9:6380");
        // The sentinels get their own login, never the data nodes'.
        assert_eq!(t.sentinel_at("h", 1).password, None);
    }

    #[test]
    fn bad_sentinel_urls_say_what_is_wrong() {
        for (bad, says) in [
            ("redis+sentinel://h:1,h:2", "must name the service"),
            ("redis+sentinel://h:1/", "must name the service"),
            ("redis+sentinel://h:1,,h:2/svc", "is not host[:port]"),
            (
                "redis+sentinel://u:hunter2@h:1,h:x/svc",
                "is not host[:port]",
            ),
            ("redis+sentinel://h:1/svc/x", "database must be a number"),
            ("redis+sentinels://h:1/svc", "unknown scheme"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
            assert!(!e.contains("hunter2"), "{bad}: {e}");
        }
    }

    #[test]
    fn sentinel_fields_combine_once_each() {
        let sentinel_fields = || RedisConfig {
            mode: RedisMode::Sentinel,
            sentinels: vec!["10.0.0.1:26379".into(), "10.0.0.2:26379".into()],
            service_name: "mymaster".into(),
            ..RedisConfig::default()
        };
        let t = RedisTarget::from_config(&sentinel_fields()).unwrap();
        assert_eq!(t.sentinel.as_ref().unwrap().service, "mymaster");
        assert!(sentinel_fields().is_sentinel());
        assert_eq!(
            sentinel_fields().shown(),
            "redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster"
        );

        let field = |c: RedisConfig| RedisTarget::from_config(&c).unwrap_err().field;
        let mut c = sentinel_fields();
        c.sentinels.clear();
        assert_eq!(field(c), "redis.sentinels");
        let mut c = sentinel_fields();
        c.sentinels.push("nope".into());
        assert_eq!(field(c), "redis.sentinels");
        let mut c = sentinel_fields();
        c.service_name.clear();
        assert_eq!(field(c), "redis.service_name");
        let mut c = sentinel_fields();
        c.addr = RedisAddr::new("redis://h:1");
        assert_eq!(field(c), "redis.addr");
        let mut c = sentinel_fields();
        c.sentinel_user = Some("s".into());
        assert_eq!(field(c), "redis.sentinel_user");
        let mut c = sentinel_fields();
        c.sentinel_password = Some(Secret::new(""));
        assert_eq!(field(c), "redis.sentinel_password");
        let mut c = sentinel_fields();
        c.sentinel_user = Some("s".into());
        c.sentinel_password = Some(Secret::new("spw"));
        let t = RedisTarget::from_config(&c).unwrap();
        let login = t.sentinel_at("h", 1);
        assert_eq!(login.user.as_deref(), Some("s"));
        assert_eq!(login.password.as_ref().map(Secret::expose), Some("spw"));

        // The URL and the fields: one place each.
        let mut c = config("redis+sentinel://h:1/svc");
        c.sentinels = vec!["h:2".into()];
        assert_eq!(field(c), "redis.sentinels");
        let mut c = config("redis+sentinel://h:1/svc");
        c.service_name = "svc".into();
        assert_eq!(field(c), "redis.service_name");
        // Sentinel fields in single mode are a mistake, not ignored.
        let mut c = config("h:1");
        c.service_name = "svc".into();
        assert_eq!(field(c), "redis.service_name");
        let mut c = config("h:1");
        c.sentinel_password = Some(Secret::new("x"));
        assert_eq!(field(c), "redis.sentinel_password");
    }

    #[test]
    fn cluster_urls() {
        let p = parse("redis+cluster://u:p%40w@10.0.0.1:7000,[::1],n3:7002").unwrap();
        assert_eq!(
            p.cluster.as_deref(),
            Some(
                &[
                    ("10.0.0.1".to_string(), 7000),
                    ("::1".to_string(), DEFAULT_PORT),
                    ("n3".to_string(), 7002),
                ][..]
            )
        );
        assert_eq!((p.tls, p.db, p.user.as_deref()), (false, None, Some("u")));
        assert!(parse("rediss+cluster://h:1").unwrap().tls);
        assert!(parse("redis+cluster://h:1/").unwrap().cluster.is_some());
        assert!(parse("redis://h:1").unwrap().cluster.is_none());

        let t = RedisTarget::from_config(&config("redis+cluster://:pw@h:1,h:2")).unwrap();
        assert_eq!(t.cluster.as_ref().map(Vec::len), Some(2));
        assert_eq!((t.to_string(), t.db), ("h:1".to_string(), 0));
        assert_eq!(t.password.as_ref().map(Secret::expose), Some("pw"));
        // A node of the map keeps the login and TLS, and is no longer the seed list.
        let node = t.at("10.0.0.9", 7005);
        assert_eq!(node.to_string(), "10.0.0.9:7005");
        assert_eq!(node.password.as_ref().map(Secret::expose), Some("pw"));
        assert!(config("redis+cluster://h:1").is_cluster());
        assert!(!config("redis://h:1").is_cluster());
        assert_eq!(
            config("redis+cluster://u:pw@h:1").shown(),
            "redis+cluster://u:<redacted>@h:1"
        );
    }

    #[test]
    fn bad_cluster_forms_name_the_field() {
        for (bad, says) in [
            ("redis+cluster://h:1/0", "only database 0"),
            ("redis+cluster://u:hunter2@h:1,,h:2", "is not host[:port]"),
            ("redis+cluster://h:1,h:x", "is not host[:port]"),
            ("redis+clusters://h:1", "unknown scheme"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
            assert!(!e.contains("hunter2"), "{bad}: {e}");
        }
        let fields = || RedisConfig {
            mode: RedisMode::Cluster,
            nodes: vec!["10.0.0.1:7000".into(), "10.0.0.2:7000".into()],
            ..RedisConfig::default()
        };
        let t = RedisTarget::from_config(&fields()).unwrap();
        assert_eq!(t.cluster.as_ref().map(Vec::len), Some(2));
        assert_eq!(t.to_string(), "10.0.0.1:7000");
        assert!(fields().is_cluster());
        assert_eq!(
            fields().shown(),
            "redis+cluster://10.0.0.1:7000,10.0.0.2:7000"
        );

        let field = |c: RedisConfig| RedisTarget::from_config(&c).unwrap_err().field;
        assert_eq!(field(config("redis+cluster://h:1/2")), "redis.addr");
        let mut c = fields();
        c.nodes.clear();
        assert_eq!(field(c), "redis.nodes");
        let mut c = fields();
        c.nodes.push("nope".into());
        assert_eq!(field(c), "redis.nodes");
        let mut c = fields();
        c.addr = RedisAddr::new("redis://h:1");
        assert_eq!(field(c), "redis.addr");
        let mut c = fields();
        c.db = Some(2);
        assert_eq!(field(c), "redis.db");
        let mut c = fields();
        c.service_name = "svc".into();
        assert_eq!(field(c), "redis.service_name");
        let mut c = config("redis+cluster://h:1");
        c.nodes = vec!["h:2".into()];
        assert_eq!(field(c), "redis.nodes");
        let mut c = config("redis+cluster://h:1");
        c.mode = RedisMode::Sentinel;
        assert_eq!(field(c), "redis.addr");
        // Nodes in another mode are a mistake, not ignored.
        let mut c = config("h:1");
        c.nodes = vec!["h:2".into()];
        assert_eq!(field(c), "redis.nodes");
    }

    #[test]
    fn redacted_addresses_hide_the_password() {
        let shown = |s: &str| RedisAddr::new(s).to_string();
        assert_eq!(
            shown("redis+sentinel://u:pw@h:1,h:2/svc/2"),
            "redis+sentinel://u:<redacted>@h:1,h:2/svc/2"
        );
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
