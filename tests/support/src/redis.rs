//! A real `redis-server` child process for one test: it owns the process and
//! its port (random in 20000..32000, below Linux's ephemeral range so it
//! cannot collide with an outgoing connection's port), and the few commands
//! tests need to write routes. The wire format is [`crate::resp`]'s.
//!
//! Persistence is off (`--save "" --appendonly no`), so a restarted server
//! starts empty: tests write their routes again after [`RedisServer::start_again`].
//!
//! A server can demand a login ([`RedisOptions::requirepass`] for the `default` user,
//! [`RedisOptions::acl_user`] for named ACL users); the test's own commands then log in too,
//! and go to the database [`RedisOptions::db`] names.
//!
//! A server can also listen for TLS on a second port ([`RedisOptions::tls`],
//! [`RedisServer::tls_addr`]); the test's own commands keep using the plaintext port.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::gateway::TempPath;
use crate::pki::{Pem, PemFiles, Pki};
use crate::resp::{self, Reply};

/// The binary to run; `REDIS_SERVER` overrides it.
const DEFAULT_BINARY: &str = "redis-server";
/// Ports tried: below the ephemeral range (32768..) and above common services.
const PORTS: std::ops::Range<u16> = 20000..32000;
/// Cluster nodes' ports: their bus ports (+10000) stay in 20000..32000, below the ephemeral
/// range.
const CLUSTER_PORTS: std::ops::Range<u16> = 10000..22000;
/// Client and bus ports this process ever gave a cluster node. A node a test kills (a
/// failover) stays known to the rest of its cluster, which keeps reaching for its address; a
/// node of another test started there would be met by them, and `redis-cli --cluster create`
/// then refuses it as "not empty" (seen in CI, 2026-12-03). So such a port is never reused.
static CLUSTER_PORTS_USED: Mutex<Vec<u16>> = Mutex::new(Vec::new());
/// How many ports [`RedisServer::start`] tries before giving up.
const ATTEMPTS: usize = 20;
/// How long a started server has to answer.
const READY_WITHIN: Duration = Duration::from_secs(10);
/// How often a starting server is asked whether it answers: it usually does within a few ms,
/// and every test starts one, so a coarser poll (it was 20 ms) is paid test after test.
const ANSWER_POLL: Duration = Duration::from_millis(2);

/// A running (or stopped) `redis-server`. Killed when dropped.
#[derive(Debug)]
pub struct RedisServer {
    /// Fixed at the first start; [`RedisServer::start_again`] reuses it.
    addr: SocketAddr,
    /// `None` while stopped.
    child: Option<Child>,
    /// How it was started, kept for restarts and for the test's own logins.
    options: RedisOptions,
}

/// How a [`RedisServer`] starts: extra arguments, who may log in, and the database the test's
/// own commands ([`RedisServer::set`], [`RedisServer::command`]...) use.
#[derive(Debug, Clone, Default)]
pub struct RedisOptions {
    args: Vec<String>,
    requirepass: Option<String>,
    /// (name, password), each allowed everything.
    users: Vec<(String, String)>,
    db: u32,
    /// A TLS port besides the plaintext one.
    tls: Option<RedisTls>,
    /// A cluster node: its bus listens on the port + 10000, so the port is taken from
    /// [`CLUSTER_PORTS`] (bus ports below the ephemeral range too) and both must be free.
    cluster_bus: bool,
}

/// What a TLS port is started with (`--tls-port` and the files).
#[derive(Debug, Clone)]
struct RedisTls {
    /// The server's certificate and key, and the CA client certificates are checked against;
    /// deleted when the last clone of the options goes.
    files: Arc<(PemFiles, TempPath)>,
    /// `--tls-auth-clients yes`: a client without a certificate from the CA is refused.
    auth_clients: bool,
    /// Chosen at the first start; 0 before.
    port: u16,
}

impl RedisOptions {
    /// A cluster node's port pair (module doc of [`crate::cluster`]).
    pub fn cluster_bus(mut self) -> Self {
        self.cluster_bus = true;
        self
    }

    /// Extra `redis-server` arguments (e.g. `["--rename-command", "HELLO", ""]` for a server
    /// that answers like Redis 5).
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// `--requirepass`: the `default` user needs this password (the pre-ACL way).
    pub fn requirepass(mut self, password: &str) -> Self {
        self.requirepass = Some(password.to_owned());
        self
    }

    /// An ACL user allowed every command and key (`--user <name> on ><password> ~* &* +@all`).
    /// Unless [`RedisOptions::requirepass`] is given too, the `default` user is switched off,
    /// so nothing gets in without logging in as a named user.
    pub fn acl_user(mut self, name: &str, password: &str) -> Self {
        self.users.push((name.to_owned(), password.to_owned()));
        self
    }

    /// The database the test's own commands use (default 0).
    pub fn db(mut self, db: u32) -> Self {
        self.db = db;
        self
    }

    /// A TLS port too (`--tls-port`, the port chosen at start), presenting `server`; client
    /// certificates are checked against `client_ca` (PEM), and demanded when `auth_clients`
    /// (`--tls-auth-clients yes`). The plaintext port stays, for the test's own commands.
    pub fn tls(mut self, server: &Pem, client_ca: &str, auth_clients: bool) -> Self {
        let files = Pki::write(server, "redis-tls");
        let ca = crate::pki::written("redis-tls-client-ca.pem", client_ca);
        self.tls = Some(RedisTls {
            files: Arc::new((files, ca)),
            auth_clients,
            port: 0,
        });
        self
    }

    fn server_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(tls) = &self.tls {
            let (files, ca) = &*tls.files;
            args.extend(["--tls-port".to_owned(), tls.port.to_string()]);
            args.extend(
                [
                    "--tls-cert-file",
                    files.cert(),
                    "--tls-key-file",
                    files.key(),
                ]
                .map(String::from),
            );
            args.extend(["--tls-ca-cert-file".to_owned(), ca.as_str().to_owned()]);
            args.extend([
                "--tls-auth-clients".to_owned(),
                if tls.auth_clients { "yes" } else { "no" }.to_owned(),
            ]);
        }
        if let Some(password) = &self.requirepass {
            args.extend(["--requirepass".to_owned(), password.clone()]);
        } else if !self.users.is_empty() {
            args.extend(["--user", "default", "off"].map(String::from));
        }
        for (name, password) in &self.users {
            args.extend(["--user".to_owned(), name.clone(), "on".to_owned()]);
            args.extend([
                format!(">{password}"),
                "~*".into(),
                "&*".into(),
                "+@all".into(),
            ]);
        }
        args.extend(self.args.iter().cloned());
        args
    }

    /// The commands that log the test's own connections in: as the first ACL user, else with
    /// the `requirepass` password, else none.
    fn login(&self) -> Vec<Vec<Vec<u8>>> {
        match (self.users.first(), &self.requirepass) {
            (Some((name, password)), None) => vec![vec![
                b"AUTH".to_vec(),
                name.clone().into_bytes(),
                password.clone().into_bytes(),
            ]],
            (_, Some(password)) => vec![vec![b"AUTH".to_vec(), password.clone().into_bytes()]],
            (None, None) => Vec::new(),
        }
    }
}

impl RedisServer {
    /// Starts `redis-server` on a free port and waits until it answers.
    /// Panics if no port works after a few tries.
    pub fn start() -> RedisServer {
        RedisServer::start_with(RedisOptions::default())
    }

    /// As [`RedisServer::start`], with extra `redis-server` arguments (e.g.
    /// `["--rename-command", "HELLO", ""]` for a server that answers like Redis 5).
    pub fn start_with_args(extra: &[&str]) -> RedisServer {
        RedisServer::start_with(RedisOptions::default().args(extra))
    }

    /// As [`RedisServer::start`], with logins, arguments and the test's database.
    pub fn start_with(options: RedisOptions) -> RedisServer {
        let mut last_error = String::new();
        for _ in 0..ATTEMPTS {
            let port = match options.cluster_bus {
                true => random_in(CLUSTER_PORTS),
                false => random_port(),
            };
            // A port someone holds now is skipped without starting a process.
            if TcpListener::bind(("127.0.0.1", port)).is_err() {
                continue;
            }
            if options.cluster_bus {
                if TcpListener::bind(("127.0.0.1", port + 10000)).is_err() {
                    continue;
                }
                let mut used = CLUSTER_PORTS_USED
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                if used.contains(&port) || used.contains(&(port + 10000)) {
                    continue;
                }
                used.extend([port, port + 10000]);
            }
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let mut options = options.clone();
            if let Some(tls) = &mut options.tls {
                let tls_port = random_port();
                if tls_port == port || TcpListener::bind(("127.0.0.1", tls_port)).is_err() {
                    continue;
                }
                tls.port = tls_port;
            }
            match spawn(addr, &options) {
                Ok(child) => {
                    return RedisServer {
                        addr,
                        child: Some(child),
                        options,
                    }
                }
                Err(e) => last_error = e,
            }
        }
        panic!("could not start redis-server after {ATTEMPTS} ports; last error: {last_error}");
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The TLS port's address. Panics if the server was not started with
    /// [`RedisOptions::tls`].
    pub fn tls_addr(&self) -> SocketAddr {
        let tls = self
            .options
            .tls
            .as_ref()
            .expect("redis-server started without RedisOptions::tls");
        SocketAddr::from(([127, 0, 0, 1], tls.port))
    }

    /// `SET key value` in the test's database; panics if Redis does not answer OK.
    pub fn set(&self, key: &str, value: &str) {
        self.set_in(self.options.db, key, value);
    }

    /// `SET key value` in database `db`.
    pub fn set_in(&self, db: u32, key: &str, value: &str) {
        let reply = self.command_in(db, &[b"SET", key.as_bytes(), value.as_bytes()]);
        assert_eq!(
            reply,
            Reply::Status("OK".into()),
            "SET {key} {value} in db {db}"
        );
    }

    /// `GET key`.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        match self.command(&[b"GET", key.as_bytes()]) {
            Reply::Bulk(value) => value,
            other => panic!("GET {key}: unexpected reply {other:?}"),
        }
    }

    /// `DEL key`.
    pub fn del(&self, key: &str) {
        match self.command(&[b"DEL", key.as_bytes()]) {
            Reply::Integer(_) => {}
            other => panic!("DEL {key}: unexpected reply {other:?}"),
        }
    }

    /// Sends any command, logged in and in the test's database; panics if Redis cannot be
    /// reached.
    pub fn command(&self, args: &[&[u8]]) -> Reply {
        self.command_in(self.options.db, args)
    }

    /// As [`RedisServer::command`], in database `db`.
    pub fn command_in(&self, db: u32, args: &[&[u8]]) -> Reply {
        let mut setup = self.options.login();
        if db != 0 {
            setup.push(vec![b"SELECT".to_vec(), db.to_string().into_bytes()]);
        }
        resp::command_after(self.addr, &setup, args)
            .unwrap_or_else(|e| panic!("redis at {}: {e}", self.addr))
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server (SIGKILL) and waits for it: its port then refuses connections.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a fresh, empty server on the same port after [`RedisServer::stop`].
    pub fn start_again(&mut self) {
        self.stop();
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            match spawn(self.addr, &self.options) {
                Ok(child) => {
                    self.child = Some(child);
                    return;
                }
                Err(e) if Instant::now() < deadline => {
                    eprintln!(
                        "redis-server on {} did not restart ({e}); retrying",
                        self.addr
                    );
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("redis-server on {} did not restart: {e}", self.addr),
            }
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port from [`PORTS`], different on each call and in each process.
pub(crate) fn random_port() -> u16 {
    random_in(PORTS)
}

fn random_in(ports: std::ops::Range<u16>) -> u16 {
    // RandomState is seeded randomly per process and per instance.
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    let span = u64::from(ports.end - ports.start);
    ports.start + (hasher.finish() % span) as u16
}

/// Spawns `redis-server` on `addr` and waits until it answers; kills it
/// and returns why if it exits or stays silent.
fn spawn(addr: SocketAddr, options: &RedisOptions) -> Result<Child, String> {
    let binary = std::env::var("REDIS_SERVER").unwrap_or_else(|_| DEFAULT_BINARY.to_owned());
    let mut child = Command::new(&binary)
        .args(["--port", &addr.port().to_string()])
        .args(["--bind", &addr.ip().to_string()])
        .args(["--save", ""])
        .args(["--appendonly", "no"])
        // A replica writes the RDB it syncs from its primary (and a primary may write one for a
        // replica): into the temp dir, one file per server, never into the repository.
        .args(["--dir", &std::env::temp_dir().to_string_lossy()])
        .args(["--dbfilename", &format!("ringway-test-{}.rdb", addr.port())])
        .args(["--loglevel", "warning"])
        .args(options.server_args())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("spawning {binary}: {e}"))?;
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{binary} on {addr} exited: {status}"));
        }
        // Asking for the process id, not just PING, makes sure the server
        // answering is ours and not another test's that won a race for the port.
        if let Ok(Reply::Bulk(Some(info))) =
            resp::command_after(addr, &options.login(), &[b"INFO", b"server"])
        {
            let ours = format!("process_id:{}\r\n", child.id());
            if String::from_utf8_lossy(&info).contains(&ours) {
                return Ok(child);
            }
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{binary} on {addr} did not answer within {READY_WITHIN:?}"
            ));
        }
        std::thread::sleep(ANSWER_POLL);
    }
}
