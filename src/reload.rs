//! Configuration reload (SIGHUP, `POST /reload`): the file is read and validated again, with
//! the command line's flags on top as at start; a good one replaces the live configuration,
//! which each shard picks up at its next control tick (≤ 50 ms) for new connections and calls;
//! a bad one changes nothing and says why.
//!
//! What a running process cannot change is named and left as it was: the listeners and the
//! admin port (sockets), the shard count (threads), the connection cap and backlog (sized at
//! start), Redis (one connection per shard, made at start), whether there is a route cache (it
//! needs Redis tracking from the connection's first command), the access log's file, the
//! balancing mode and the upgrade socket. A binary upgrade (`--upgrade-from`) changes those.
//!
//! Live: the routing header, key prefix and lookup timeout (`redis.lookup_timeout_ms`, the one
//! live field of `redis`); the cache's sizes and lifetimes (a
//! new prefix empties it); every `downstream` limit and timeout (for connections accepted
//! after the reload; open ones keep theirs); every `upstream` pool, dial and keepalive setting
//! (for the dials and leases of every pool from now on); the access log's sampling; the TLS
//! certificates and keys, read from the paths the new file names.

use std::sync::{Arc, Mutex};

use crate::config::{Config, ConfigError};
use crate::live::Swap;
use crate::tls::{self, ReloadStatus};

/// Reads the configuration afresh: the file, then the command line's flags.
pub type Read = Box<dyn Fn() -> Result<Config, ConfigError> + Send + Sync>;

/// The live configuration and what reloads it.
pub struct Reloader {
    read: Read,
    /// What the shards serve with.
    pub live: Arc<Swap<Config>>,
    tls: Arc<tls::Material>,
    /// Reloads done and failed, and why the last one failed (for `/metrics`).
    pub status: Mutex<ReloadStatus>,
}

impl Reloader {
    pub fn new(config: Config, read: Read, tls: Arc<tls::Material>) -> Reloader {
        Reloader {
            read,
            live: Arc::new(Swap::new(config)),
            tls,
            status: Mutex::new(ReloadStatus::default()),
        }
    }

    /// Reloads. `Ok`: the names of the fields the new file changed that a running process
    /// cannot (kept as they were). `Err`: why nothing changed.
    pub fn reload(&self) -> Result<Vec<&'static str>, String> {
        let result = self.try_reload();
        let mut status = match self.status.lock() {
            Ok(status) => status,
            Err(poisoned) => poisoned.into_inner(),
        };
        match &result {
            Ok(_) => {
                status.succeeded += 1;
                status.last_error = None;
            }
            Err(e) => {
                status.failed += 1;
                status.last_error = Some(e.clone());
            }
        }
        result
    }

    fn try_reload(&self) -> Result<Vec<&'static str>, String> {
        let mut next = (self.read)().map_err(|e| format!("invalid config: {e}"))?;
        let current = self.live.load();
        let kept = keep_fixed(&current, &mut next);
        self.tls
            .reload_with(&next)
            .map_err(|e| format!("TLS: {e}"))?;
        self.live.store(next);
        Ok(kept)
    }

    /// Reloads and says what happened on stderr (SIGHUP has no one else to tell).
    pub fn reload_logged(&self, why: &str) -> Result<Vec<&'static str>, String> {
        let result = self.reload();
        match &result {
            Ok(kept) if kept.is_empty() => eprintln!("ringway: {why}: configuration reloaded"),
            Ok(kept) => eprintln!(
                "ringway: {why}: configuration reloaded; kept as they were (a running process \
                 cannot change them; upgrade with --upgrade-from): {}",
                kept.join(", ")
            ),
            Err(e) => eprintln!("ringway: {why}: reload failed, nothing changed: {e}"),
        }
        result
    }
}

/// Puts back in `next` what a running process cannot change, and names what differed.
fn keep_fixed(current: &Config, next: &mut Config) -> Vec<&'static str> {
    let mut kept = Vec::new();
    // Of `redis`, only the lookup timeout is the router's; the rest is the connection's.
    let lookup_timeout = next.redis.lookup_timeout_ms;
    next.redis.lookup_timeout_ms = current.redis.lookup_timeout_ms;
    macro_rules! keep {
        ($($name:literal => $($field:ident).+),* $(,)?) => {$(
            if next.$($field).+ != current.$($field).+ {
                kept.push($name);
                next.$($field).+ = current.$($field).+.clone();
            }
        )*};
    }
    keep! {
        "listen" => listen,
        "downstream.tls.listen" => downstream.tls.listen,
        "admin" => admin,
        "shards" => shards,
        "io_driver" => io_driver,
        "upgrade_socket" => upgrade_socket,
        "redis" => redis,
        "route.cache" => route.cache,
        "access_log.path" => access_log.path,
        "downstream.max_connections" => downstream.max_connections,
        "downstream.fd_reserve" => downstream.fd_reserve,
        "downstream.listen_backlog" => downstream.listen_backlog,
        "downstream.balance" => downstream.balance,
    }
    next.redis.lookup_timeout_ms = lookup_timeout;
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_fields_are_kept_and_named_live_ones_change() {
        let current = Config::default();
        let mut next = Config {
            shards: current.shards + 3,
            ..Config::default()
        };
        next.redis.addr = crate::config::RedisAddr::new("redis://other:6380");
        next.route.header = "tenant".into();
        next.downstream.keepalive_time_ms = 1234;
        next.redis.lookup_timeout_ms = 77;
        let kept = keep_fixed(&current, &mut next);
        assert_eq!(kept, ["shards", "redis"]);
        assert_eq!(next.shards, current.shards);
        assert_eq!(next.redis.addr, current.redis.addr);
        assert_eq!(
            next.redis.lookup_timeout_ms, 77,
            "the one live field of redis"
        );
        assert_eq!(next.route.header, "tenant", "live: changed");
        assert_eq!(next.downstream.keepalive_time_ms, 1234);
    }
}
