//! TLS on both hops: the certificates and keys ([`load`]), the process-wide material that
//! SIGHUP and `POST /reload` replace ([`Material`]), and the transport that runs rustls on a
//! connection's own buffers ([`transport`]).
//!
//! Owns rustls. Knows nothing of HTTP/2 frames (it hands plaintext to
//! [`wire::io`](crate::wire::io)) nor of routing or pools.
//!
//! # Reload without a lock on the call path
//!
//! The current configs live in a [`Swap`]: an `Arc` behind a mutex and a generation counter.
//! Each shard holds a [`Local`] copy and, once per handshake, compares the generation (one
//! atomic load); only after a reload does it take the mutex, once, to pick up the new `Arc`.
//! Connections already open keep the config they were made with; new handshakes use the new
//! one. A reload that fails on any file keeps every old config, logs why and counts it.
//!
//! # Resumption
//!
//! Server side: TLS 1.3 tickets from one rotating [`Ticketer`](rustls::crypto::ring::Ticketer)
//! and a TLS 1.2 session cache, both shared by the shards and kept across reloads, so a client
//! resumes whichever shard it lands on. Client side: rustls's in-memory session store (256
//! servers), shared by the shards and kept across reloads, so a reconnect to a target resumes.
//! Both stores lock once per handshake, never per call.

pub mod load;
pub mod transport;

use std::sync::{Arc, Mutex};

pub use crate::live::{Local, Swap};

use rustls::{ClientConfig, ServerConfig};

use crate::config::Config;
pub use load::FileError;
pub use transport::{HandshakeError, TlsTransport};

/// The process's TLS material: what the files said at start or at the last good reload.
pub struct Material {
    /// Where the files are: the config of the start, or of the last good reload.
    config: Mutex<Config>,
    /// `None` without a TLS listener.
    server: Option<Arc<Swap<ServerConfig>>>,
    client: Arc<Swap<ClientConfig>>,
    server_resumption: load::ServerResumption,
    client_resumption: rustls::client::Resumption,
    pub status: Mutex<ReloadStatus>,
}

/// What the last reloads did, for `/metrics` and `POST /reload`.
#[derive(Debug, Clone, Default)]
pub struct ReloadStatus {
    pub succeeded: u64,
    pub failed: u64,
    /// Why the last reload failed; cleared by a good one.
    pub last_error: Option<String>,
}

impl Material {
    /// Reads every file the config names; the error names the file.
    pub fn load(config: &Config) -> Result<Material, FileError> {
        let server_resumption = load::ServerResumption::new()?;
        let client_resumption = rustls::client::Resumption::in_memory_sessions(256);
        let (server, client) = build(config, &server_resumption, &client_resumption)?;
        Ok(Material {
            config: Mutex::new(config.clone()),
            server: server.map(|s| Arc::new(Swap::new(s))),
            client: Arc::new(Swap::new(client)),
            server_resumption,
            client_resumption,
            status: Mutex::new(ReloadStatus::default()),
        })
    }

    /// Reads the files again. All good: new handshakes use them. Any bad: the old material
    /// stays, the error is kept and returned.
    pub fn reload(&self) -> Result<(), FileError> {
        let config = match self.config.lock() {
            Ok(config) => config.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        self.reload_with(&config)
    }

    /// Reads the files `config` names (a configuration reload may name others). All good:
    /// new handshakes use them and `config` is where they are read from next time.
    pub fn reload_with(&self, config: &Config) -> Result<(), FileError> {
        let built = build(config, &self.server_resumption, &self.client_resumption);
        let mut status = match self.status.lock() {
            Ok(status) => status,
            Err(poisoned) => poisoned.into_inner(),
        };
        match built {
            Ok((server, client)) => {
                if let (Some(swap), Some(server)) = (&self.server, server) {
                    swap.store(server);
                }
                self.client.store(client);
                if let Ok(mut kept) = self.config.lock() {
                    *kept = config.clone();
                }
                status.succeeded += 1;
                status.last_error = None;
                Ok(())
            }
            Err(e) => {
                status.failed += 1;
                status.last_error = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// Reloads and says so on stderr (SIGHUP has no one else to tell).
    pub fn reload_logged(&self, why: &str) -> Result<(), FileError> {
        let result = self.reload();
        match &result {
            Ok(()) => eprintln!("ringway: {why}: TLS certificates and keys reloaded"),
            Err(e) => eprintln!("ringway: {why}: TLS reload failed, keeping the old ones: {e}"),
        }
        result
    }

    /// A shard's handle on the server config; `None` without a TLS listener.
    pub fn server(&self) -> Option<Local<ServerConfig>> {
        self.server.clone().map(Local::new)
    }

    /// A shard's handle on the client config for `https://` targets.
    pub fn client(&self) -> Local<ClientConfig> {
        Local::new(self.client.clone())
    }
}

type Built = (Option<ServerConfig>, ClientConfig);

fn build(
    config: &Config,
    server_resumption: &load::ServerResumption,
    client_resumption: &rustls::client::Resumption,
) -> Result<Built, FileError> {
    let t = &config.downstream.tls;
    let server = match t.listen.addr() {
        Some(_) => Some(load::server_config(t, server_resumption)?),
        None => None,
    };
    let client = load::client_config(&config.upstream.tls, client_resumption)?;
    Ok((server, client))
}

/// Why a handshake failed, as the `reason` label of `ringway_tls_handshake_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Not TLS at all (a plaintext HTTP/2 client on the TLS port).
    NotTls,
    /// Not finished within the handshake (or dial) timeout.
    Timeout,
    /// The peer closed, or the socket failed, before the handshake finished.
    Closed,
    /// A certificate was missing, did not verify, or was refused by the peer.
    Certificate,
    /// No common ALPN protocol (a client that offers only `http/1.1`).
    Alpn,
    /// Anything else TLS refused (versions, ciphers, malformed messages).
    Protocol,
}

impl Failure {
    pub const ALL: [Failure; 6] = [
        Failure::NotTls,
        Failure::Timeout,
        Failure::Closed,
        Failure::Certificate,
        Failure::Alpn,
        Failure::Protocol,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Failure::NotTls => "not_tls",
            Failure::Timeout => "timeout",
            Failure::Closed => "closed",
            Failure::Certificate => "certificate",
            Failure::Alpn => "alpn",
            Failure::Protocol => "protocol",
        }
    }
}
