//! `ringway doctor`: checks the live machine against what a configuration needs, and says how to
//! fix what falls short.
//!
//! It owns the checks and their verdicts; it reads the machine only through [`Facts::gather`]
//! (which uses [`crate::procfs`], [`crate::net`] and monoio's io_uring probe) and the TLS files
//! the config names, and changes nothing. Every check is a pure function of the [`Config`], the [`Facts`] and, with
//! `--profile`, a sysctl [`Profile`], so tests build a machine as a struct.
//!
//! What is checked, and why:
//!
//! 1. io_uring, with `io_driver = "io_uring"`: monoio probes for every ring operation it uses;
//!    without them ringway runs on epoll. Kernels before 5.12 also charge each ring to
//!    `RLIMIT_MEMLOCK`. On epoll (the default) both are reported, not judged.
//! 2. Descriptors: every client connection is one descriptor, so the hard `RLIMIT_NOFILE` (the
//!    soft limit is raised to it at start) must cover `downstream.max_connections +
//!    downstream.fd_reserve`, under `fs.nr_open` and `fs.file-max`.
//! 3. Ports: a listen port inside `net.ipv4.ip_local_port_range` can be taken by any outgoing
//!    connection before ringway (re)starts, and the bind fails.
//! 4. `net.core.somaxconn` silently caps `downstream.listen_backlog`.
//! 5. More shards than cores make pinned shards share cores.
//! 6. With a profile: each of its sysctls against the live value.
//! 7. TLS files ([`check_tls_files`]): every certificate, key and CA file the config names is
//!    readable and PEM, each key matches its certificate, none has expired or is not yet valid
//!    (ringway would refuse to start) or expires within 14 days, and the names a server
//!    certificate covers are shown. These read files, so they run after the pure [`check`].
//! 8. Sentinel mode ([`check_sentinel`]): asks the sentinels for the primary as a shard does
//!    (in order, the first that answers), then `ROLE` of the primary it names, and reports the
//!    topology found: which sentinel answered, the primary, its role. This talks to the
//!    network (plaintext only; over `rediss+sentinel://` it says it did not look).
//!
//! The profiles in `tuning/` are compiled in, so the binary checks a machine without the source
//! tree beside it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::config::{Config, IoDriver};
use crate::procfs;

/// How bad a finding is. Only `Fail` makes `ringway doctor` exit non-zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Ok,
    /// ringway runs, but worse than it could (epoll, a capped backlog, a port at risk).
    Warn,
    /// ringway cannot do what its configuration promises (e.g. hold `max_connections`).
    Fail,
}

impl Severity {
    fn label(self) -> &'static str {
        match self {
            Severity::Ok => "OK",
            Severity::Warn => "WARN",
            Severity::Fail => "FAIL",
        }
    }
}

/// One check's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub severity: Severity,
    /// Short name of what was checked (`nofile`, `listen port`, `profile`).
    pub check: &'static str,
    /// What was found, with the numbers it was judged on.
    pub detail: String,
    /// What to do about it; `None` when there is nothing to do.
    pub fix: Option<String>,
}

impl Finding {
    fn ok(check: &'static str, detail: String) -> Finding {
        Finding {
            severity: Severity::Ok,
            check,
            detail,
            fix: None,
        }
    }

    fn warn(check: &'static str, detail: String, fix: Option<String>) -> Finding {
        Finding {
            severity: Severity::Warn,
            check,
            detail,
            fix,
        }
    }

    fn fail(check: &'static str, detail: String, fix: String) -> Finding {
        Finding {
            severity: Severity::Fail,
            check,
            detail,
            fix: Some(fix),
        }
    }
}

/// Checks this machine against `config` and, when named, the sysctl profile `profile`
/// (`gateway-lan`, `gateway-wan`, `loopback-benchmark`; a trailing `.conf` is accepted).
/// Errs only for an unknown profile name.
pub fn run(config: &Config, profile: Option<&str>) -> Result<Vec<Finding>, String> {
    let profile = profile.map(Profile::named).transpose()?;
    let facts = Facts::gather(profile.as_ref());
    let mut findings = check(config, &facts, profile.as_ref());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    findings.extend(check_tls_files(config, now));
    findings.extend(check_sentinel(config));
    findings.extend(check_cluster(config));
    Ok(findings)
}

/// Sentinel mode's topology, asked over the network as a shard asks it; nothing in single
/// mode.
pub fn check_sentinel(config: &Config) -> Vec<Finding> {
    use crate::redis::sentinel::host_port;
    const CHECK: &str = "redis sentinel";
    let target = match crate::redis::RedisTarget::from_config(&config.redis) {
        Ok(target) => target,
        Err(_) => return Vec::new(),
    };
    let Some(sentinels) = &target.sentinel else {
        return Vec::new();
    };
    if target.tls {
        return vec![Finding::warn(
            CHECK,
            "not checked: doctor asks sentinels over plaintext only, and this is \
             rediss+sentinel://"
                .into(),
            None,
        )];
    }
    let timeout = std::time::Duration::from_millis(config.redis.connect_timeout_ms);
    let mut refused = Vec::new();
    for (host, port) in &sentinels.addrs {
        let shown = host_port(host, *port);
        let login = target.sentinel_at(host, *port);
        let asked = blocking::login(&login, timeout).and_then(|mut conn| {
            conn.ask(&[
                b"SENTINEL",
                b"get-master-addr-by-name",
                sentinels.service.as_bytes(),
            ])
        });
        let primary = match asked {
            Ok(crate::redis::codec::Strings::List(items)) if items.len() == 2 => {
                let host = String::from_utf8_lossy(&items[0]).into_owned();
                match std::str::from_utf8(&items[1])
                    .ok()
                    .and_then(|p| p.parse().ok())
                {
                    Some(port) => (host, port),
                    None => {
                        refused.push(format!("{shown}: a port that is no port"));
                        continue;
                    }
                }
            }
            Ok(crate::redis::codec::Strings::Nil) => {
                refused.push(format!("{shown}: does not monitor `{}`", sentinels.service));
                continue;
            }
            Ok(other) => {
                refused.push(format!("{shown}: answered {other:?}"));
                continue;
            }
            Err(e) => {
                refused.push(format!("{shown}: {e}"));
                continue;
            }
        };
        let primary_shown = host_port(&primary.0, primary.1);
        let role = blocking::login(&target.at(&primary.0, primary.1), timeout)
            .and_then(|mut conn| conn.ask(&[b"ROLE"]));
        let mut findings = Vec::new();
        if !refused.is_empty() {
            findings.push(Finding::warn(
                CHECK,
                format!("sentinels that did not answer: {}", refused.join("; ")),
                Some("a shard asks them first to last; fix or drop them".into()),
            ));
        }
        let found = format!(
            "sentinel {shown} answered: the primary of `{}` is {primary_shown}",
            sentinels.service
        );
        findings.push(match role {
            Ok(crate::redis::codec::Strings::List(items))
                if items.first().is_some_and(|r| &r[..] == b"master") =>
            {
                Finding::ok(CHECK, format!("{found}, ROLE master"))
            }
            Ok(other) => Finding::fail(
                CHECK,
                format!("{found}, but it is not a master: ROLE answered {other:?}"),
                "a failover may be in progress; run doctor again, then check the sentinels' \
                 view (SENTINEL master <service>)"
                    .into(),
            ),
            Err(e) => Finding::fail(
                CHECK,
                format!("{found}, but it cannot be asked ROLE: {e}"),
                "check that ringway can reach the primary and the redis.* login".into(),
            ),
        });
        return findings;
    }
    vec![Finding::fail(
        CHECK,
        format!(
            "no sentinel named a primary for `{}`: {}",
            sentinels.service,
            refused.join("; ")
        ),
        "check redis.sentinels (or the redis+sentinel:// URL), the service name and \
         redis.sentinel_password"
            .into(),
    )]
}

/// Cluster mode's topology: the slot map the first seed that answers gives (`CLUSTER SHARDS`,
/// else `CLUSTER SLOTS`), as a shard asks it; nothing in the other modes.
pub fn check_cluster(config: &Config) -> Vec<Finding> {
    use crate::redis::sentinel::host_port;
    use crate::redis::topology;
    const CHECK: &str = "redis cluster";
    let target = match crate::redis::RedisTarget::from_config(&config.redis) {
        Ok(target) => target,
        Err(_) => return Vec::new(),
    };
    let Some(seeds) = &target.cluster else {
        return Vec::new();
    };
    if target.tls {
        return vec![Finding::warn(
            CHECK,
            "not checked: doctor asks nodes over plaintext only, and this is rediss+cluster://"
                .into(),
            None,
        )];
    }
    let timeout = std::time::Duration::from_millis(config.redis.connect_timeout_ms);
    let mut refused = Vec::new();
    for (host, port) in seeds {
        let shown = host_port(host, *port);
        let asked =
            blocking::login(&target.at(host, *port), timeout).and_then(|mut conn| {
                match conn.ask_frame(&[b"CLUSTER", b"SHARDS"])? {
                    redis_protocol::resp2::types::BytesFrame::Error(e) if e.contains("nknown") => {
                        topology::from_slots(conn.ask_frame(&[b"CLUSTER", b"SLOTS"])?, host)
                    }
                    redis_protocol::resp2::types::BytesFrame::Error(e) => Err(e.to_string()),
                    reply => topology::from_shards(reply, host),
                }
            });
        match asked {
            Ok(ranges) => {
                let covered: usize = ranges
                    .iter()
                    .map(|r| usize::from(r.last.saturating_sub(r.first)) + 1)
                    .sum();
                let found = format!(
                    "node {shown} answered: {}",
                    crate::redis::cluster::describe(&ranges, covered)
                );
                let mut findings = Vec::new();
                if !refused.is_empty() {
                    findings.push(Finding::warn(
                        CHECK,
                        format!("seed nodes that did not answer: {}", refused.join("; ")),
                        Some(
                            "a shard asks the seeds when its known primaries fail; fix or \
                              drop them"
                                .into(),
                        ),
                    ));
                }
                findings.push(match covered >= crate::redis::slot::SLOTS {
                    true => Finding::ok(CHECK, found),
                    false => Finding::fail(
                        CHECK,
                        found,
                        "slots without a healthy primary: a failover may be in progress, or \
                         slots are unassigned (redis-cli --cluster check)"
                            .into(),
                    ),
                });
                return findings;
            }
            Err(e) => refused.push(format!("{shown}: {e}")),
        }
    }
    vec![Finding::fail(
        CHECK,
        format!("no node gave a slot map: {}", refused.join("; ")),
        "check redis.nodes (or the redis+cluster:// URL), that they run with cluster-enabled \
         yes, and the redis.* login"
            .into(),
    )]
}

/// A blocking RESP2 connection for the doctor's few questions.
mod blocking {
    use std::io::{Read, Write};
    use std::net::{TcpStream, ToSocketAddrs};
    use std::time::Duration;

    use bytes::BytesMut;

    use crate::redis::codec::{decode_strings, encode_command, Strings};
    use crate::redis::RedisTarget;

    pub struct Conn {
        socket: TcpStream,
        buf: BytesMut,
    }

    /// Connects to `target` and logs in as it says (`AUTH [user] password`), then `SELECT`s
    /// nothing: ROLE and SENTINEL need no database.
    pub fn login(target: &RedisTarget, timeout: Duration) -> Result<Conn, String> {
        let addr = (target.host.as_str(), target.port)
            .to_socket_addrs()
            .map_err(|e| e.to_string())?
            .next()
            .ok_or("resolves to no address")?;
        let socket = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
        socket
            .set_read_timeout(Some(timeout))
            .and_then(|()| socket.set_write_timeout(Some(timeout)))
            .map_err(|e| e.to_string())?;
        let mut conn = Conn {
            socket,
            buf: BytesMut::with_capacity(1024),
        };
        if let Some(password) = &target.password {
            let mut auth: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(user) = &target.user {
                auth.push(user.as_bytes());
            }
            auth.push(password.expose().as_bytes());
            if let Strings::Error(e) = conn.ask(&auth)? {
                return Err(format!("refused the login: {e}"));
            }
        }
        Ok(conn)
    }

    impl Conn {
        pub fn ask(&mut self, parts: &[&[u8]]) -> Result<Strings, String> {
            self.exchange(parts, |buf| decode_strings(buf, false))
        }

        /// The whole reply, nested arrays and all (the cluster's slot map).
        pub fn ask_frame(
            &mut self,
            parts: &[&[u8]],
        ) -> Result<redis_protocol::resp2::types::BytesFrame, String> {
            self.exchange(parts, crate::redis::topology::decode)
        }

        fn exchange<R>(
            &mut self,
            parts: &[&[u8]],
            decode: impl Fn(&mut BytesMut) -> Result<Option<R>, String>,
        ) -> Result<R, String> {
            let mut out = BytesMut::new();
            encode_command(&mut out, parts);
            self.socket.write_all(&out).map_err(|e| e.to_string())?;
            let mut chunk = [0u8; 4096];
            loop {
                if let Some(reply) = decode(&mut self.buf)? {
                    return Ok(reply);
                }
                match self.socket.read(&mut chunk) {
                    Ok(0) => return Err("closed the connection".into()),
                    Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                    Err(e) => return Err(e.to_string()),
                }
            }
        }
    }
}

/// The findings as text: one line per finding, `SEVERITY  check: detail`, and below it an
/// indented `fix: ...` line when there is one.
pub fn render(findings: &[Finding]) -> String {
    let mut out = String::new();
    for finding in findings {
        let _ = writeln!(
            out,
            "{:<6}{}: {}",
            finding.severity.label(),
            finding.check,
            finding.detail
        );
        if let Some(fix) = &finding.fix {
            let _ = writeln!(out, "      fix: {fix}");
        }
    }
    out
}

/// 1 when any finding is a failure, else 0.
pub fn exit_code(findings: &[Finding]) -> i32 {
    i32::from(findings.iter().any(|f| f.severity == Severity::Fail))
}

/// Everything the checks look at, read once from the live machine or built by a test.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// monoio can set up a ring and the kernel supports every operation it uses.
    pub uring_usable: bool,
    /// `MONOIO_FORCE_LEGACY_DRIVER` is set to 1/true/yes, which turns io_uring off in monoio.
    pub uring_forced_off: bool,
    /// `RLIMIT_NOFILE` as (soft, hard); `None` when unreadable.
    pub nofile: Option<(u64, u64)>,
    /// Soft `RLIMIT_MEMLOCK` in bytes ([`rlimit::INFINITY`] when unlimited).
    pub memlock: Option<u64>,
    /// The process holds `CAP_IPC_LOCK`, which exempts its rings from `RLIMIT_MEMLOCK`.
    pub cap_ipc_lock: bool,
    /// Cores this process may run on (affinity and cgroup quota included).
    pub cores: usize,
    /// `net.ipv4.ip_local_port_range`, which IPv6 shares.
    pub ephemeral_ports: Option<(u16, u16)>,
    /// Live sysctls by dotted key, whitespace normalised. A key absent here is not on this
    /// kernel or not visible in this namespace.
    pub sysctls: BTreeMap<String, String>,
}

/// Sysctls the checks read besides a profile's.
const LIVE_SYSCTLS: &[&str] = &[
    "kernel.osrelease",
    "kernel.io_uring_disabled",
    "fs.nr_open",
    "fs.file-max",
    "fs.file-nr",
    "net.core.somaxconn",
    "net.ipv4.ip_local_reserved_ports",
];

/// `CAP_IPC_LOCK`'s number (include/uapi/linux/capability.h).
const CAP_IPC_LOCK: u32 = 14;

impl Facts {
    /// Reads the live machine: limits, sysctls (the checks' own and `profile`'s), cores, and
    /// whether io_uring works. Whatever cannot be read stays `None` or absent.
    pub fn gather(profile: Option<&Profile>) -> Facts {
        let keys = LIVE_SYSCTLS.iter().copied().chain(
            profile
                .iter()
                .flat_map(|p| p.settings.iter().map(|s| s.key.as_str())),
        );
        let sysctls = keys
            .filter_map(|key| Some((key.to_string(), procfs::read_sysctl(key)?)))
            .collect();
        Facts {
            uring_usable: monoio::utils::detect_uring(),
            uring_forced_off: std::env::var("MONOIO_FORCE_LEGACY_DRIVER")
                .is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes")),
            nofile: rlimit::Resource::NOFILE.get().ok(),
            memlock: rlimit::Resource::MEMLOCK.get().ok().map(|(soft, _)| soft),
            cap_ipc_lock: procfs::effective_capabilities()
                .is_ok_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            ephemeral_ports: crate::net::ephemeral_port_range(),
            sysctls,
        }
    }

    fn sysctl(&self, key: &str) -> Option<&str> {
        self.sysctls.get(key).map(String::as_str)
    }

    fn sysctl_u64(&self, key: &str) -> Option<u64> {
        self.sysctl(key)?.parse().ok()
    }

    /// The kernel's (major, minor) version, from `kernel.osrelease`.
    fn kernel_version(&self) -> Option<(u32, u32)> {
        kernel_version(self.sysctl("kernel.osrelease")?)
    }
}

/// Runs every check on `facts`; the findings come in the order of the module doc's list.
pub fn check(config: &Config, facts: &Facts, profile: Option<&Profile>) -> Vec<Finding> {
    let mut findings = vec![check_uring(config, facts), check_memlock(config, facts)];
    findings.extend(check_descriptors(config, facts));
    findings.push(check_port(
        "listen port",
        "listen",
        config.listen.addr().map_or(0, |a| a.port()),
        facts,
    ));
    findings.push(match config.admin_addr() {
        Some(admin) => check_port("admin port", "admin", admin.port(), facts),
        None => Finding::ok("admin port", "admin endpoint disabled".into()),
    });
    findings.push(check_somaxconn(config, facts));
    findings.push(check_shards(config, facts));
    if let Some(profile) = profile {
        findings.extend(check_profile(profile, facts));
    }
    findings
}

/// The first kernel with every io_uring operation monoio probes for: `IORING_OP_PROVIDE_BUFFERS`
/// came in 5.7 (the others, and the probe itself, in 5.6).
const URING_MIN_KERNEL: (u32, u32) = (5, 7);

/// From 5.12 on, io_uring rings are charged to the memory cgroup, not to `RLIMIT_MEMLOCK`.
const MEMLOCK_FREE_KERNEL: (u32, u32) = (5, 12);

/// Locked memory one shard's ring takes on kernels before 5.12: 1024 SQEs × 64 B = 64 KiB,
/// 2048 CQEs × 16 B = 32 KiB, plus the index array and ring headers (~8 KiB), rounded up to
/// whole pages with headroom: 128 KiB. (The distribution default used to be 64 KiB: not even one.)
const RING_MEMLOCK_BYTES: u64 = 128 << 10;

/// io_uring matters only when the config asks for it; on epoll what would happen with it is
/// still said, as information.
fn check_uring(config: &Config, facts: &Facts) -> Finding {
    let finding = check_uring_driver(facts);
    if config.io_driver == IoDriver::IoUring {
        return finding;
    }
    Finding::ok(
        finding.check,
        format!(
            "not used (io_driver = \"epoll\"); with io_driver = \"io_uring\": {}",
            finding.detail
        ),
    )
}

fn check_uring_driver(facts: &Facts) -> Finding {
    const CHECK: &str = "io_uring";
    let kernel = facts.sysctl("kernel.osrelease").unwrap_or("unknown");
    if facts.uring_usable {
        return Finding::ok(
            CHECK,
            format!("usable on kernel {kernel}: every ring operation monoio needs is supported"),
        );
    }
    let mut causes = Vec::new();
    let mut fixes = Vec::new();
    if facts.uring_forced_off {
        causes.push("MONOIO_FORCE_LEGACY_DRIVER is set".to_string());
        fixes.push("unset MONOIO_FORCE_LEGACY_DRIVER".to_string());
    }
    if facts.kernel_version().is_some_and(|v| v < URING_MIN_KERNEL) {
        causes.push(format!(
            "kernel {kernel} is older than 5.7, which monoio's operations need"
        ));
        fixes.push("run on Linux 5.7 or later (5.12+ also frees rings from RLIMIT_MEMLOCK)".into());
    }
    match facts.sysctl("kernel.io_uring_disabled") {
        Some("1") => {
            causes.push(
                "kernel.io_uring_disabled = 1: only processes in kernel.io_uring_group (or with \
                 CAP_SYS_ADMIN) may create rings"
                    .into(),
            );
            fixes.push(
                "sysctl -w kernel.io_uring_disabled=0, or run ringway in kernel.io_uring_group"
                    .into(),
            );
        }
        Some("2") => {
            causes.push("kernel.io_uring_disabled = 2: io_uring is off for every process".into());
            fixes.push("sysctl -w kernel.io_uring_disabled=0".into());
        }
        _ => {}
    }
    if causes.is_empty() {
        causes.push(
            "likely a seccomp filter or container runtime that blocks io_uring_setup (Docker's \
             and many Kubernetes runtimes' default profiles do), or a sandbox like gVisor"
                .into(),
        );
        fixes.push(
            "allow io_uring_setup, io_uring_enter and io_uring_register in the seccomp profile \
             (e.g. docker run --security-opt seccomp=PROFILE.json)"
                .into(),
        );
    }
    Finding::warn(
        CHECK,
        format!(
            "unavailable, ringway falls back to epoll (monoio's legacy driver): {}",
            causes.join("; ")
        ),
        Some(fixes.join("; ")),
    )
}

fn check_memlock(config: &Config, facts: &Facts) -> Finding {
    const CHECK: &str = "memlock";
    let limit = match facts.memlock {
        Some(rlimit::INFINITY) => "unlimited".to_string(),
        Some(bytes) => format!("{} KiB", bytes >> 10),
        None => "unreadable".to_string(),
    };
    if config.io_driver != IoDriver::IoUring {
        return Finding::ok(
            CHECK,
            format!("RLIMIT_MEMLOCK {limit}; io_driver = \"epoll\" sets up no io_uring rings"),
        );
    }
    match facts.kernel_version() {
        Some(version) if version >= MEMLOCK_FREE_KERNEL => {
            return Finding::ok(
                CHECK,
                format!("RLIMIT_MEMLOCK {limit}; kernels from 5.12 on do not charge io_uring rings to it"),
            )
        }
        Some(_) => {}
        None => {
            return Finding::warn(
                CHECK,
                format!("RLIMIT_MEMLOCK {limit}; cannot read the kernel version (kernel.osrelease) to judge it"),
                None,
            )
        }
    }
    if facts.cap_ipc_lock {
        return Finding::ok(
            CHECK,
            format!("RLIMIT_MEMLOCK {limit}; not charged: the process holds CAP_IPC_LOCK"),
        );
    }
    let shards = shards_started(config, facts) as u64;
    let needed = shards * RING_MEMLOCK_BYTES;
    match facts.memlock {
        Some(bytes) if bytes >= needed => Finding::ok(
            CHECK,
            format!(
                "RLIMIT_MEMLOCK {limit} covers {shards} io_uring rings ({} KiB)",
                needed >> 10
            ),
        ),
        _ => Finding::warn(
            CHECK,
            format!(
                "RLIMIT_MEMLOCK {limit} < {} KiB needed: kernels before 5.12 charge each shard's \
                 io_uring ring (~{} KiB) to it, so {shards} shards may fail to set up their rings",
                needed >> 10,
                RING_MEMLOCK_BYTES >> 10
            ),
            Some(format!(
                "ulimit -l {} before starting ringway, LimitMEMLOCK={} in its systemd unit, or a \
                 memlock line in /etc/security/limits.conf",
                needed >> 10,
                needed
            )),
        ),
    }
}

/// The shards ringway would start: `shards`, or one per core when 0.
fn shards_started(config: &Config, facts: &Facts) -> usize {
    if config.shards > 0 {
        config.shards
    } else {
        facts.cores.max(1)
    }
}

fn check_descriptors(config: &Config, facts: &Facts) -> Vec<Finding> {
    let max_connections = config.downstream.max_connections as u64;
    let reserve = config.downstream.fd_reserve as u64;
    let needed = max_connections + reserve;
    let why = format!("max_connections {max_connections} + fd_reserve {reserve}");
    let nr_open = facts.sysctl_u64("fs.nr_open");
    let mut findings = Vec::new();

    findings.push(match facts.nofile {
        None => Finding::warn("nofile", "cannot read RLIMIT_NOFILE".into(), None),
        Some((soft, hard)) if hard >= needed => Finding::ok(
            "nofile",
            format!(
                "hard limit {hard} >= {needed} needed ({why}){}",
                if soft < hard {
                    format!("; soft {soft}, raised to the hard limit at start")
                } else {
                    String::new()
                }
            ),
        ),
        Some((soft, hard)) => {
            let mut fix = format!(
                "raise the hard limit to at least {needed}: `ulimit -n {needed}` (as root) in the \
                 shell that starts ringway, LimitNOFILE={needed} in its systemd unit, or \
                 `USER hard nofile {needed}` in /etc/security/limits.conf; or lower \
                 downstream.max_connections"
            );
            if let Some(nr_open) = nr_open.filter(|&n| n < needed) {
                let _ = write!(
                    fix,
                    "; first raise fs.nr_open ({nr_open}), the ceiling of any hard limit"
                );
            }
            Finding::fail(
                "nofile",
                format!(
                    "hard limit {hard} (soft {soft}) < {needed} needed ({why}): ringway could \
                     hold at most {} client connections",
                    hard.saturating_sub(reserve)
                ),
                fix,
            )
        }
    });

    findings.push(match nr_open {
        None => Finding::warn("fs.nr_open", "cannot read fs.nr_open".into(), None),
        Some(n) if n >= needed => Finding::ok(
            "fs.nr_open",
            format!("{n} >= {needed} needed: it does not cap the hard limit below that"),
        ),
        Some(n) => Finding::fail(
            "fs.nr_open",
            format!("{n} < {needed} needed ({why}): no process may have a higher hard limit"),
            format!("sysctl -w fs.nr_open={needed} (the profiles in tuning/ set 1048576)"),
        ),
    });

    let allocated = facts
        .sysctl("fs.file-nr")
        .and_then(|v| v.split(' ').next()?.parse::<u64>().ok());
    findings.push(match facts.sysctl_u64("fs.file-max") {
        None => Finding::warn("fs.file-max", "cannot read fs.file-max".into(), None),
        Some(max) if max < needed => Finding::warn(
            "fs.file-max",
            format!("{max} < {needed} needed ({why}): the whole host has fewer file handles"),
            Some(format!(
                "sysctl -w fs.file-max={needed} or more (the profiles in tuning/ set 4194304)"
            )),
        ),
        Some(max) => match allocated {
            Some(allocated) if allocated.saturating_add(needed) > max => Finding::warn(
                "fs.file-max",
                format!(
                    "{max}, of which {allocated} are in use host-wide: fewer than the {needed} \
                     ringway needs are left"
                ),
                Some(format!(
                    "sysctl -w fs.file-max={}",
                    allocated.saturating_add(needed).saturating_mul(2)
                )),
            ),
            _ => Finding::ok(
                "fs.file-max",
                format!(
                    "{max} host-wide ({} in use)",
                    allocated.map_or_else(|| "?".to_string(), |a| a.to_string())
                ),
            ),
        },
    });
    findings
}

/// A listen port against the ephemeral range. `field` is the config field that sets it.
fn check_port(check: &'static str, field: &str, port: u16, facts: &Facts) -> Finding {
    if port == 0 {
        return Finding::ok(check, "port 0: the kernel picks a free port".into());
    }
    let Some((low, high)) = facts.ephemeral_ports else {
        return Finding::warn(
            check,
            format!("{port}: cannot read net.ipv4.ip_local_port_range to judge it"),
            None,
        );
    };
    if !(low..=high).contains(&port) {
        return Finding::ok(
            check,
            format!("{port} is outside the ephemeral range {low}-{high}"),
        );
    }
    let reserved = facts
        .sysctl("net.ipv4.ip_local_reserved_ports")
        .unwrap_or("");
    if port_listed(reserved, port) {
        return Finding::ok(
            check,
            format!(
                "{port} is inside the ephemeral range {low}-{high} but reserved \
                 (net.ipv4.ip_local_reserved_ports)"
            ),
        );
    }
    let list = if reserved.is_empty() {
        port.to_string()
    } else {
        format!("{reserved},{port}")
    };
    // A Warn, not a Fail: ringway starts as long as nobody holds the port at that moment.
    Finding::warn(
        check,
        format!(
            "{port} lies inside net.ipv4.ip_local_port_range ({low}-{high}): an outgoing \
             connection may hold it when ringway (re)starts, and the bind then fails"
        ),
        Some(format!(
            "set `{field}` to a port below {low} (the defaults 7070 and 9901 are), or reserve it: \
             sysctl -w net.ipv4.ip_local_reserved_ports={list}"
        )),
    )
}

/// Whether `port` is in a list as the kernel prints `ip_local_reserved_ports`: `7070,9000-9100`.
fn port_listed(list: &str, port: u16) -> bool {
    list.split(',').map(str::trim).any(|item| {
        let (low, high) = item.split_once('-').unwrap_or((item, item));
        match (low.trim().parse::<u16>(), high.trim().parse::<u16>()) {
            (Ok(low), Ok(high)) => (low..=high).contains(&port),
            _ => false,
        }
    })
}

fn check_somaxconn(config: &Config, facts: &Facts) -> Finding {
    const CHECK: &str = "somaxconn";
    let backlog = config.downstream.listen_backlog;
    match facts
        .sysctl("net.core.somaxconn")
        .and_then(|v| v.parse::<i64>().ok())
    {
        None => Finding::warn(CHECK, "cannot read net.core.somaxconn".into(), None),
        Some(max) if max < i64::from(backlog) => Finding::warn(
            CHECK,
            format!(
                "net.core.somaxconn {max} < downstream.listen_backlog {backlog}: the kernel \
                 silently caps each shard's accept queue at {max}"
            ),
            Some(format!(
                "sysctl -w net.core.somaxconn={backlog} (the profiles in tuning/ set 8192), or \
                 lower downstream.listen_backlog"
            )),
        ),
        Some(max) => Finding::ok(
            CHECK,
            format!("net.core.somaxconn {max} >= downstream.listen_backlog {backlog}"),
        ),
    }
}

fn check_shards(config: &Config, facts: &Facts) -> Finding {
    const CHECK: &str = "shards";
    let cores = facts.cores;
    match config.shards {
        0 => Finding::ok(CHECK, format!("one per core ({cores})")),
        n if n > cores => Finding::warn(
            CHECK,
            format!(
                "{n} shards on {cores} available cores: pinned shards would share cores and \
                 preempt one another"
            ),
            Some(format!("set shards = 0 (one per core) or at most {cores}")),
        ),
        n => Finding::ok(CHECK, format!("{n} of {cores} available cores")),
    }
}

fn check_profile(profile: &Profile, facts: &Facts) -> Vec<Finding> {
    const CHECK: &str = "profile";
    let fix = format!("sudo tuning/apply --apply {}", profile.name);
    let mut findings = Vec::new();
    // Settings as the profile wants them, or optional and absent here.
    let mut fine = 0;
    for setting in &profile.settings {
        match facts.sysctl(&setting.key) {
            None if optional_key(&setting.key) => {
                fine += 1;
                findings.push(Finding::ok(
                    CHECK,
                    format!(
                        "{} is not on this kernel or in this network namespace (optional)",
                        setting.key
                    ),
                ));
            }
            None => findings.push(Finding::warn(
                CHECK,
                format!(
                    "{} is not on this kernel or not visible here; profile {} wants {}",
                    setting.key, profile.name, setting.value
                ),
                None,
            )),
            Some(live) if setting.satisfied_by(live) => fine += 1,
            Some(live) => findings.push(Finding::warn(
                CHECK,
                format!(
                    "{} is {}, profile {} wants {}{}",
                    setting.key,
                    if live.is_empty() { "empty" } else { live },
                    profile.name,
                    setting.value,
                    if setting.floor { " or more" } else { "" }
                ),
                Some(fix.clone()),
            )),
        }
    }
    let total = profile.settings.len();
    let summary = format!("{} has {fine} of {total} settings in force", profile.name);
    // The summary carries no fix of its own: each differing key below names it.
    findings.insert(
        0,
        if fine == total {
            Finding::ok(CHECK, summary)
        } else {
            Finding::warn(CHECK, summary, None)
        },
    );
    findings
}

/// The sysctl profiles of `tuning/`, compiled in.
const PROFILES: &[(&str, &str)] = &[
    ("gateway-lan", include_str!("../tuning/gateway-lan.conf")),
    ("gateway-wan", include_str!("../tuning/gateway-wan.conf")),
    (
        "loopback-benchmark",
        include_str!("../tuning/loopback-benchmark.conf"),
    ),
];

/// Keys a profile may set that need not exist on every machine (`tuning/optional-keys`).
const OPTIONAL_KEYS_FILE: &str = include_str!("../tuning/optional-keys");

/// Whether a profile key is listed in `tuning/optional-keys`.
fn optional_key(key: &str) -> bool {
    OPTIONAL_KEYS_FILE
        .lines()
        .map(str::trim)
        .any(|line| line == key)
}

/// A sysctl profile from `tuning/`.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub name: &'static str,
    pub settings: Vec<Setting>,
}

/// One `key = value` line of a profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    pub key: String,
    /// Whitespace normalised, as [`procfs::read_sysctl`] returns live values.
    pub value: String,
    /// Marked `[floor]` in its comment block: a capacity ceiling that a higher live value also
    /// satisfies (`tuning/apply` never lowers it).
    pub floor: bool,
}

impl Profile {
    /// The compiled-in profile `name` (a trailing `.conf` is accepted); the error lists the
    /// known names.
    pub fn named(name: &str) -> Result<Profile, String> {
        let wanted = name.strip_suffix(".conf").unwrap_or(name);
        PROFILES
            .iter()
            .find(|(known, _)| *known == wanted)
            .map(|&(name, text)| Profile {
                name,
                settings: parse_profile(text),
            })
            .ok_or_else(|| {
                let known: Vec<&str> = PROFILES.iter().map(|(n, _)| *n).collect();
                format!(
                    "unknown profile `{name}`; known profiles: {}",
                    known.join(", ")
                )
            })
    }
}

impl Setting {
    /// Whether the live value is what the profile asks for: equal once whitespace and spaces
    /// around commas are normalised, or for a `[floor]` key, at least as high in every field.
    fn satisfied_by(&self, live: &str) -> bool {
        let canonical = |v: &str| procfs::normalize_whitespace(v).replace(", ", ",");
        if canonical(live) == canonical(&self.value) {
            return true;
        }
        if !self.floor {
            return false;
        }
        let numbers = |v: &str| -> Option<Vec<i128>> {
            v.split_whitespace().map(|n| n.parse().ok()).collect()
        };
        match (numbers(live), numbers(&self.value)) {
            (Some(live), Some(wanted)) if live.len() == wanted.len() => {
                live.iter().zip(&wanted).all(|(l, w)| l >= w)
            }
            _ => false,
        }
    }
}

/// A profile's settings: `key = value` lines; `#` and `;` start comment lines, as in
/// sysctl.d(5), and a `[floor]` anywhere in the comment block directly above a key marks it.
/// A leading `-` on a key (sysctl.d's "ignore failure") is dropped.
fn parse_profile(text: &str) -> Vec<Setting> {
    let mut settings = Vec::new();
    let mut floor = false;
    for line in text.lines().map(str::trim) {
        if line.is_empty() {
            floor = false;
        } else if line.starts_with('#') || line.starts_with(';') {
            floor |= line.contains("[floor]");
        } else if let Some((key, value)) = line.split_once('=') {
            settings.push(Setting {
                key: key.trim().trim_start_matches('-').trim().to_string(),
                value: procfs::normalize_whitespace(value),
                floor,
            });
            floor = false;
        }
    }
    settings
}

/// (major, minor) from a release string such as `6.8.0-45-generic` or `5.4.17`.
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor: String = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Some((major, minor.parse().ok()?))
}

/// Warn this long before a certificate expires: two weeks leaves room for a renewal that waits
/// on a person (a ticket, a CA's queue) without anyone renewing in a hurry.
const EXPIRY_WARN_DAYS: i64 = 14;

const DAY: i64 = 86_400;

/// What a certificate is presented as, which decides what is said about its names.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    /// To clients, who check that it names the address they dialled.
    Server,
    /// To targets that ask for a client certificate; they read an identity from it.
    Client,
}

/// The config fields of one certificate/key pair, for the findings' check names.
struct Pair {
    cert_field: &'static str,
    key_field: &'static str,
    role: Role,
}

/// Checks every certificate, key and CA file the config names (`[downstream.tls]`,
/// `[upstream.tls]`, `[redis.tls]`), as of `now` (Unix seconds):
/// each file is readable and holds the PEM it should; each key matches its certificate; no
/// certificate has expired, is not yet valid, or expires within [`EXPIRY_WARN_DAYS`]; the
/// names a server certificate covers. A section whose files pass is then built by
/// [`crate::tls::load`], as ringway's start would, so whatever else it refuses is named too.
///
/// Reads files, so it is not part of the pure [`check`]; `now` is an argument so a test can
/// move the clock.
pub fn check_tls_files(config: &Config, now: i64) -> Vec<Finding> {
    let down = &config.downstream.tls;
    let up = &config.upstream.tls;
    let mut findings = Vec::new();

    let mut down_ok = true;
    if !down.cert.is_empty() || !down.key.is_empty() {
        let pair = Pair {
            cert_field: "downstream.tls.cert",
            key_field: "downstream.tls.key",
            role: Role::Server,
        };
        down_ok &= check_pair(&pair, &down.cert, &down.key, now, &mut findings);
    }
    if !down.client_ca.is_empty() {
        down_ok &= check_ca(
            "downstream.tls.client_ca",
            &down.client_ca,
            now,
            &mut findings,
        );
    }
    if down_ok && !down.cert.is_empty() && !down.key.is_empty() {
        let built = crate::tls::load::ServerResumption::new()
            .and_then(|resumption| crate::tls::load::server_config(down, &resumption));
        if let Err(e) = built {
            findings.push(refused("downstream.tls", e));
        }
    }

    let mut up_ok = true;
    if !up.ca.is_empty() {
        up_ok &= check_ca("upstream.tls.ca", &up.ca, now, &mut findings);
    }
    if !up.cert.is_empty() || !up.key.is_empty() {
        let pair = Pair {
            cert_field: "upstream.tls.cert",
            key_field: "upstream.tls.key",
            role: Role::Client,
        };
        up_ok &= check_pair(&pair, &up.cert, &up.key, now, &mut findings);
    }
    if up_ok && !(up.ca.is_empty() && up.cert.is_empty()) {
        let resumption = rustls::client::Resumption::default();
        if let Err(e) = crate::tls::load::client_config(up, &resumption) {
            findings.push(refused("upstream.tls", e));
        }
    }

    // `[redis.tls]`: ringway's config check has already built it for a `rediss://` address (a
    // bad file stops `ringway doctor` there, naming the field); what is left to say is expiry,
    // names, and whether the files are used at all.
    let redis = &config.redis.tls;
    if !(redis.ca.is_empty() && redis.cert.is_empty() && redis.key.is_empty()) {
        if !crate::redis::target::parse_addr(&config.redis.addr).is_ok_and(|a| a.tls) {
            findings.push(Finding::ok(
                "redis.tls",
                format!(
                    "files are named but redis.addr ({}) is not rediss://: they are not used",
                    config.redis.addr.redacted()
                ),
            ));
        }
        if !redis.ca.is_empty() {
            check_ca("redis.tls.ca", &redis.ca, now, &mut findings);
        }
        if !redis.cert.is_empty() || !redis.key.is_empty() {
            let pair = Pair {
                cert_field: "redis.tls.cert",
                key_field: "redis.tls.key",
                role: Role::Client,
            };
            check_pair(&pair, &redis.cert, &redis.key, now, &mut findings);
        }
    }

    if findings.is_empty() {
        findings.push(Finding::ok(
            "tls files",
            "none configured ([downstream.tls], [upstream.tls] and [redis.tls] name no files)"
                .into(),
        ));
    }
    findings
}

/// A section whose files each passed but that ringway's loader still refuses.
fn refused(section: &'static str, e: crate::tls::FileError) -> Finding {
    Finding::fail(
        section,
        format!("ringway would refuse to start with it: {e}"),
        format!("fix what the message names in [{section}]"),
    )
}

/// A certificate file and its key. True when nothing failed.
fn check_pair(pair: &Pair, cert: &str, key: &str, now: i64, out: &mut Vec<Finding>) -> bool {
    let before = out.len();
    let certs = if cert.is_empty() {
        out.push(Finding::fail(
            pair.cert_field,
            format!("is empty, but {} is {key}", pair.key_field),
            format!(
                "set {} to the certificate issued for {key}",
                pair.cert_field
            ),
        ));
        None
    } else {
        read_certificates(pair.cert_field, cert, out)
    };
    let signing = if key.is_empty() {
        out.push(Finding::fail(
            pair.key_field,
            format!("is empty, but {} is {cert}", pair.cert_field),
            format!("set {} to the private key of {cert}", pair.key_field),
        ));
        None
    } else {
        read_key(pair.key_field, key, out)
    };

    if let Some(certs) = &certs {
        for (i, der) in certs.iter().enumerate() {
            let Some(parsed) = parse_certificate(pair.cert_field, cert, i, der, out) else {
                continue;
            };
            let what = if i == 0 {
                cert.to_string()
            } else {
                format!("{cert} (chain certificate {} of {})", i + 1, certs.len())
            };
            match check_validity(pair.cert_field, &what, &parsed, now) {
                Some(finding) => out.push(finding),
                None if i == 0 => out.push(Finding::ok(
                    pair.cert_field,
                    format!(
                        "{cert}: {}, valid until {} ({} days left)",
                        subject(&parsed),
                        date(parsed.validity().not_after.timestamp()),
                        (parsed.validity().not_after.timestamp() - now) / DAY
                    ),
                )),
                None => {}
            }
            if i == 0 {
                out.push(match pair.role {
                    Role::Server => check_names(pair.cert_field, cert, &parsed),
                    Role::Client => Finding::ok(
                        pair.cert_field,
                        format!(
                            "{cert} presents the identity {} to servers that ask for one",
                            crate::tls::load::identity(der).unwrap_or_else(|| "(none)".into())
                        ),
                    ),
                });
            }
        }
    }

    if let (Some(certs), Some(signing)) = (certs, signing) {
        use rustls::sign::CertifiedKey;
        use rustls::{Error, InconsistentKeys};
        out.push(match CertifiedKey::new(certs, signing).keys_match() {
            Ok(()) => Finding::ok(pair.key_field, format!("{key} matches {cert}")),
            Err(Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => Finding::fail(
                pair.key_field,
                format!("{key} does not match the certificate in {cert}: ringway refuses to start"),
                format!(
                    "put the key {cert} was issued for in {key}, or reissue {cert} for {key} \
                     (`openssl x509 -noout -pubkey -in {cert}` and `openssl pkey -pubout -in \
                     {key}` must print the same)"
                ),
            ),
            Err(e) => Finding::warn(
                pair.key_field,
                format!("cannot tell whether {key} matches {cert}: {e}"),
                None,
            ),
        });
    }
    !out[before..].iter().any(|f| f.severity == Severity::Fail)
}

/// A CA file: every certificate in it readable, parsed and within its validity. True when
/// nothing failed.
fn check_ca(field: &'static str, path: &str, now: i64, out: &mut Vec<Finding>) -> bool {
    let before = out.len();
    let Some(certs) = read_certificates(field, path, out) else {
        return false;
    };
    let mut names = Vec::new();
    let mut earliest: Option<i64> = None;
    for (i, der) in certs.iter().enumerate() {
        let Some(parsed) = parse_certificate(field, path, i, der, out) else {
            continue;
        };
        let what = if certs.len() == 1 {
            path.to_string()
        } else {
            format!(
                "{path} (CA certificate {} of {}, {})",
                i + 1,
                certs.len(),
                subject(&parsed)
            )
        };
        if let Some(finding) = check_validity(field, &what, &parsed, now) {
            out.push(finding);
        }
        names.push(subject(&parsed));
        let not_after = parsed.validity().not_after.timestamp();
        earliest = Some(earliest.map_or(not_after, |e| e.min(not_after)));
    }
    if out.len() == before {
        let until = earliest.map_or_else(String::new, |t| {
            format!(
                ", the first to expire valid until {} ({} days left)",
                date(t),
                (t - now) / DAY
            )
        });
        out.push(Finding::ok(
            field,
            format!(
                "{path}: {} CA certificate(s): {}{until}",
                names.len(),
                names.join("; ")
            ),
        ));
    }
    !out[before..].iter().any(|f| f.severity == Severity::Fail)
}

/// The CERTIFICATE blocks of a PEM file, or a Fail finding naming it.
fn read_certificates(
    field: &'static str,
    path: &str,
    out: &mut Vec<Finding>,
) -> Option<Vec<rustls::pki_types::CertificateDer<'static>>> {
    crate::tls::load::certificates(path)
        .map_err(|e| out.push(unusable(field, path, e.problem)))
        .ok()
}

/// The private key of a PEM file, loaded by ringway's crypto provider, or a Fail finding.
fn read_key(
    field: &'static str,
    path: &str,
    out: &mut Vec<Finding>,
) -> Option<std::sync::Arc<dyn rustls::sign::SigningKey>> {
    crate::tls::load::signing_key(path, &crate::tls::load::provider())
        .map_err(|e| out.push(unusable(field, path, e.problem)))
        .ok()
}

fn unusable(field: &'static str, path: &str, problem: String) -> Finding {
    let fix = if problem.starts_with("cannot read") {
        format!(
            "make {path} readable by the user ringway runs as, or point {field} at the right file"
        )
    } else {
        format!("put the PEM file {field} should hold at {path}")
    };
    Finding::fail(field, format!("{path}: {problem}"), fix)
}

fn parse_certificate<'a>(
    field: &'static str,
    path: &str,
    index: usize,
    der: &'a [u8],
    out: &mut Vec<Finding>,
) -> Option<x509_parser::certificate::X509Certificate<'a>> {
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, parsed)) => Some(parsed),
        Err(e) => {
            out.push(unusable(
                field,
                path,
                format!("certificate {} is not valid X.509: {e}", index + 1),
            ));
            None
        }
    }
}

/// A finding when `cert` is outside its validity or expires within [`EXPIRY_WARN_DAYS`];
/// `None` when it is fine.
fn check_validity(
    field: &'static str,
    what: &str,
    cert: &x509_parser::certificate::X509Certificate<'_>,
    now: i64,
) -> Option<Finding> {
    let not_before = cert.validity().not_before.timestamp();
    let not_after = cert.validity().not_after.timestamp();
    let renew = |when: &str| {
        format!(
            "renew {what}: it {when}; ringway re-reads it on SIGHUP or POST /reload, no restart"
        )
    };
    if not_after < now {
        let when = format!(
            "expired on {}, {} ago",
            date(not_after),
            days(now - not_after)
        );
        return Some(Finding::fail(
            field,
            format!("{what} {when}: ringway refuses to start with it, and peers refuse it"),
            renew(&when),
        ));
    }
    if not_before > now {
        return Some(Finding::fail(
            field,
            format!(
                "{what} is not valid before {}, in {}: ringway refuses to start with it",
                date(not_before),
                days(not_before - now)
            ),
            "check this machine's clock (timedatectl), or reissue the certificate with an \
             earlier notBefore"
                .into(),
        ));
    }
    if not_after - now < EXPIRY_WARN_DAYS * DAY {
        let when = format!(
            "expires on {}, in {}",
            date(not_after),
            days(not_after - now)
        );
        return Some(Finding::warn(
            field,
            format!("{what} {when}"),
            Some(renew(&when)),
        ));
    }
    None
}

/// The names a server certificate is valid for: its subjectAltName DNS names and IP addresses
/// (rustls, like browsers and Go, ignores the subject CN).
fn check_names(
    field: &'static str,
    path: &str,
    cert: &x509_parser::certificate::X509Certificate<'_>,
) -> Finding {
    use x509_parser::extensions::GeneralName;
    let names: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::DNSName(dns) => Some(format!("DNS:{dns}")),
                    GeneralName::IPAddress(ip) => ip_text(ip).map(|ip| format!("IP:{ip}")),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        return Finding::warn(
            field,
            format!(
                "{path} names no DNS name or IP address (no subjectAltName; {}): clients \
                 refuse it, whatever its CN",
                subject(cert)
            ),
            Some(format!(
                "reissue {path} with a subjectAltName for each name and address clients dial"
            )),
        );
    }
    Finding::ok(
        field,
        format!(
            "{path} covers {}: clients must dial one of these",
            names.join(", ")
        ),
    )
}

fn ip_text(bytes: &[u8]) -> Option<String> {
    match bytes.len() {
        4 => Some(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?).to_string()),
        16 => Some(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?).to_string()),
        _ => None,
    }
}

/// `CN=localhost`, or the whole subject when it has no CN.
fn subject(cert: &x509_parser::certificate::X509Certificate<'_>) -> String {
    match cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
    {
        Some(cn) => format!("CN={cn}"),
        None => cert.subject().to_string(),
    }
}

/// `9 days`, `1 day`, or `less than a day`.
fn days(seconds: i64) -> String {
    match seconds / DAY {
        0 => "less than a day".into(),
        1 => "1 day".into(),
        n => format!("{n} days"),
    }
}

/// A Unix time as its UTC date, `2027-01-01` (Howard Hinnant's `civil_from_days`).
fn date(unix: i64) -> String {
    let z = unix.div_euclid(DAY) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A machine on which every check passes for the default config.
    fn healthy() -> Facts {
        let sysctls = [
            ("kernel.osrelease", "6.8.0-45-generic"),
            ("kernel.io_uring_disabled", "0"),
            ("fs.nr_open", "1048576"),
            ("fs.file-max", "9223372036854775807"),
            ("fs.file-nr", "2048 0 9223372036854775807"),
            ("net.core.somaxconn", "4096"),
            ("net.ipv4.ip_local_reserved_ports", ""),
        ];
        Facts {
            uring_usable: true,
            uring_forced_off: false,
            nofile: Some((1024, 524_288)),
            memlock: Some(8 << 20),
            cap_ipc_lock: false,
            cores: 4,
            ephemeral_ports: Some((32768, 60999)),
            sysctls: sysctls
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn with_sysctl(mut facts: Facts, key: &str, value: &str) -> Facts {
        facts.sysctls.insert(key.into(), value.into());
        facts
    }

    fn find<'a>(findings: &'a [Finding], check: &str) -> &'a Finding {
        findings
            .iter()
            .find(|f| f.check == check)
            .unwrap_or_else(|| panic!("no {check} finding in {findings:#?}"))
    }

    #[test]
    fn a_healthy_machine_passes() {
        let findings = check(&Config::default(), &healthy(), None);
        let bad: Vec<_> = findings
            .iter()
            .filter(|f| f.severity != Severity::Ok)
            .collect();
        assert!(bad.is_empty(), "{bad:#?}");
        assert_eq!(exit_code(&findings), 0);
        assert_eq!(find(&findings, "shards").detail, "one per core (4)");
    }

    #[test]
    fn uring_unavailable_names_its_cause() {
        let config = Config {
            io_driver: IoDriver::IoUring,
            ..Config::default()
        };
        let mut facts = healthy();
        facts.uring_usable = false;
        let finding = check_uring(&config, &facts);
        assert_eq!(finding.severity, Severity::Warn);
        assert!(finding.detail.contains("epoll"), "{finding:?}");
        assert!(finding.detail.contains("seccomp"), "{finding:?}");

        let finding = check_uring(
            &config,
            &with_sysctl(facts.clone(), "kernel.io_uring_disabled", "2"),
        );
        assert!(
            finding.detail.contains("io_uring_disabled = 2"),
            "{finding:?}"
        );
        assert!(!finding.detail.contains("seccomp"), "{finding:?}");
        assert!(finding.fix.unwrap().contains("io_uring_disabled=0"));

        let old = with_sysctl(facts.clone(), "kernel.osrelease", "5.4.0-150-generic");
        let finding = check_uring(&config, &old);
        assert!(finding.detail.contains("older than 5.7"), "{finding:?}");

        facts.uring_forced_off = true;
        assert!(check_uring(&config, &facts)
            .detail
            .contains("MONOIO_FORCE_LEGACY_DRIVER"));

        // On epoll (the default) the same machine is fine: what io_uring would do is said.
        let finding = check_uring(&Config::default(), &facts);
        assert_eq!(finding.severity, Severity::Ok, "{finding:?}");
        assert!(finding.detail.starts_with("not used"), "{finding:?}");
        assert!(
            finding.detail.contains("MONOIO_FORCE_LEGACY_DRIVER"),
            "{finding:?}"
        );
    }

    #[test]
    fn memlock_matters_only_before_5_12() {
        let config = Config {
            shards: 2,
            io_driver: IoDriver::IoUring,
            ..Config::default()
        };
        let mut facts = healthy();
        facts.memlock = Some(64 << 10);
        assert_eq!(check_memlock(&config, &facts).severity, Severity::Ok);

        let mut old = with_sysctl(facts, "kernel.osrelease", "5.10.0");
        let finding = check_memlock(&config, &old);
        assert_eq!(finding.severity, Severity::Warn);
        assert!(finding.detail.contains("64 KiB < 256 KiB"), "{finding:?}");
        assert!(finding.fix.unwrap().contains("ulimit -l 256"));

        // On epoll (the default) no ring is charged to anything.
        let epoll = Config {
            shards: 2,
            ..Config::default()
        };
        assert_eq!(check_memlock(&epoll, &old).severity, Severity::Ok);

        old.memlock = Some(rlimit::INFINITY);
        assert_eq!(check_memlock(&config, &old).severity, Severity::Ok);
        old.memlock = Some(0);
        old.cap_ipc_lock = true;
        assert_eq!(check_memlock(&config, &old).severity, Severity::Ok);
    }

    #[test]
    fn nofile_hard_limit_must_cover_connections_and_reserve() {
        let mut facts = healthy();
        facts.nofile = Some((512, 512));
        let findings = check_descriptors(&Config::default(), &facts);
        let nofile = find(&findings, "nofile");
        assert_eq!(nofile.severity, Severity::Fail);
        assert!(
            nofile.detail.starts_with(
                "hard limit 512 (soft 512) < 10256 needed (max_connections 10000 + fd_reserve 256)"
            ),
            "{nofile:?}"
        );
        assert!(nofile.detail.contains("at most 256 client"), "{nofile:?}");
        let fix = nofile.fix.as_deref().unwrap();
        assert!(fix.contains("ulimit -n 10256") && fix.contains("LimitNOFILE=10256"));
        assert!(fix.contains("limits.conf") && !fix.contains("nr_open"));
        assert_eq!(exit_code(&findings), 1);

        // A low soft limit alone is fine: ringway raises it to the hard limit.
        facts.nofile = Some((1024, 10256));
        let findings = check_descriptors(&Config::default(), &facts);
        assert_eq!(find(&findings, "nofile").severity, Severity::Ok);
    }

    #[test]
    fn nr_open_and_file_max_bound_the_limit() {
        let mut config = Config::default();
        config.downstream.max_connections = 2_000_000;
        let mut facts = healthy();
        facts.nofile = Some((1024, 1_048_576));
        let findings = check_descriptors(&config, &facts);
        assert_eq!(find(&findings, "fs.nr_open").severity, Severity::Fail);
        let nofile = find(&findings, "nofile");
        assert!(nofile
            .fix
            .as_deref()
            .unwrap()
            .contains("fs.nr_open (1048576)"));

        let facts = with_sysctl(healthy(), "fs.file-max", "8192");
        let findings = check_descriptors(&Config::default(), &facts);
        assert_eq!(find(&findings, "fs.file-max").severity, Severity::Warn);

        let facts = with_sysctl(
            with_sysctl(healthy(), "fs.file-max", "100000"),
            "fs.file-nr",
            "95000 0 100000",
        );
        let findings = check_descriptors(&Config::default(), &facts);
        let file_max = find(&findings, "fs.file-max");
        assert_eq!(file_max.severity, Severity::Warn);
        assert!(file_max.detail.contains("95000 are in use"), "{file_max:?}");
    }

    #[test]
    fn ports_inside_the_ephemeral_range_warn_unless_reserved() {
        let facts = healthy();
        assert_eq!(
            check_port("listen port", "listen", 7070, &facts).severity,
            Severity::Ok
        );
        assert_eq!(
            check_port("listen port", "listen", 0, &facts).severity,
            Severity::Ok
        );
        let finding = check_port("listen port", "listen", 40000, &facts);
        assert_eq!(finding.severity, Severity::Warn);
        assert!(finding.detail.contains("ip_local_port_range (32768-60999)"));
        assert!(finding
            .fix
            .unwrap()
            .ends_with("ip_local_reserved_ports=40000"));

        let facts = with_sysctl(
            facts,
            "net.ipv4.ip_local_reserved_ports",
            "7070,39000-41000",
        );
        assert_eq!(
            check_port("listen port", "listen", 40000, &facts).severity,
            Severity::Ok
        );
        let finding = check_port("admin port", "admin", 45000, &facts);
        assert!(finding
            .fix
            .unwrap()
            .ends_with("ip_local_reserved_ports=7070,39000-41000,45000"));
    }

    #[test]
    fn admin_port_is_checked_too() {
        let facts = healthy();
        // A port inside the ephemeral range on purpose: the finding under test.
        let (low, _) = facts.ephemeral_ports.unwrap();
        let config = Config {
            admin: format!("127.0.0.1:{}", low + 1),
            ..Config::default()
        };
        let findings = check(&config, &facts, None);
        assert_eq!(find(&findings, "admin port").severity, Severity::Warn);
        assert_eq!(find(&findings, "listen port").severity, Severity::Ok);
        let config = Config {
            admin: String::new(),
            ..Config::default()
        };
        let findings = check(&config, &healthy(), None);
        assert_eq!(
            find(&findings, "admin port").detail,
            "admin endpoint disabled"
        );
    }

    #[test]
    fn reserved_port_lists() {
        assert!(port_listed("7070,9901", 9901));
        assert!(port_listed("7070, 9000-9999", 9901));
        assert!(!port_listed("", 9901));
        assert!(!port_listed("9902-9999", 9901));
        assert!(!port_listed("junk", 9901));
    }

    #[test]
    fn somaxconn_below_the_backlog_warns() {
        let mut config = Config::default();
        config.downstream.listen_backlog = 8192;
        let finding = check_somaxconn(&config, &healthy());
        assert_eq!(finding.severity, Severity::Warn);
        assert!(finding
            .detail
            .contains("4096 < downstream.listen_backlog 8192"));
        assert!(finding.fix.unwrap().contains("net.core.somaxconn=8192"));
        config.downstream.listen_backlog = 4096;
        assert_eq!(check_somaxconn(&config, &healthy()).severity, Severity::Ok);
    }

    #[test]
    fn more_shards_than_cores_warns() {
        let facts = healthy();
        let shards = |n| Config {
            shards: n,
            ..Config::default()
        };
        assert_eq!(check_shards(&shards(4), &facts).severity, Severity::Ok);
        let finding = check_shards(&shards(8), &facts);
        assert_eq!(finding.severity, Severity::Warn);
        assert!(finding.detail.contains("8 shards on 4 available cores"));
    }

    #[test]
    fn profiles_parse_with_floors() {
        let text = "# header, mentions [floor]\n\n# [floor] cap\n# more words\nnet.core.somaxconn = 8192\n\n\
                    # plain\nnet.ipv4.ip_local_port_range =  32768\t65535 \n; sysctl.d comment\n-net.x = 1\n";
        let settings = parse_profile(text);
        assert_eq!(
            settings,
            vec![
                Setting {
                    key: "net.core.somaxconn".into(),
                    value: "8192".into(),
                    floor: true
                },
                Setting {
                    key: "net.ipv4.ip_local_port_range".into(),
                    value: "32768 65535".into(),
                    floor: false
                },
                Setting {
                    key: "net.x".into(),
                    value: "1".into(),
                    floor: false
                },
            ]
        );
        assert!(settings[0].satisfied_by("65535"));
        assert!(!settings[0].satisfied_by("4096"));
        assert!(settings[1].satisfied_by("32768 65535"));
        assert!(!settings[1].satisfied_by("32768 60999"));
    }

    #[test]
    fn every_compiled_in_profile_parses() {
        for (name, _) in PROFILES {
            let profile = Profile::named(name).unwrap();
            assert!(!profile.settings.is_empty(), "{name}");
            for setting in &profile.settings {
                assert!(
                    !setting.key.is_empty() && !setting.key.contains(' '),
                    "{name}: {setting:?}"
                );
            }
        }
        assert_eq!(
            Profile::named("gateway-lan.conf").unwrap().name,
            "gateway-lan"
        );
        let e = Profile::named("nosuch").unwrap_err();
        assert!(e.contains("nosuch") && e.contains("gateway-lan"), "{e}");
        assert!(run(&Config::default(), Some("nosuch")).is_err());
    }

    #[test]
    fn profile_differences_warn_with_the_apply_command() {
        let profile = Profile {
            name: "gateway-lan",
            settings: parse_profile(
                "# [floor]\nnet.core.somaxconn = 8192\n\nnet.ipv4.tcp_fin_timeout = 15\n\n\
                 net.ipv4.ip_local_reserved_ports = 7070,9901\n\nnet.core.netdev_max_backlog = 16384\n\n\
                 net.ipv4.tcp_gone = 1\n",
            ),
        };
        let facts = with_sysctl(
            with_sysctl(healthy(), "net.ipv4.tcp_fin_timeout", "15"),
            "net.ipv4.ip_local_reserved_ports",
            "7070, 9901",
        );
        let findings = check_profile(&profile, &facts);
        assert_eq!(
            findings[0].detail,
            "gateway-lan has 3 of 5 settings in force"
        );
        assert_eq!(findings[0].severity, Severity::Warn);
        let somaxconn = findings
            .iter()
            .find(|f| f.detail.starts_with("net.core.somaxconn"))
            .unwrap();
        assert_eq!(somaxconn.severity, Severity::Warn);
        assert_eq!(
            somaxconn.detail,
            "net.core.somaxconn is 4096, profile gateway-lan wants 8192 or more"
        );
        assert_eq!(
            somaxconn.fix.as_deref(),
            Some("sudo tuning/apply --apply gateway-lan")
        );
        let optional = findings
            .iter()
            .find(|f| f.detail.starts_with("net.core.netdev_max_backlog"))
            .unwrap();
        assert_eq!(optional.severity, Severity::Ok);
        let gone = findings
            .iter()
            .find(|f| f.detail.starts_with("net.ipv4.tcp_gone"))
            .unwrap();
        assert_eq!((gone.severity, gone.fix.is_none()), (Severity::Warn, true));

        let facts = with_sysctl(
            with_sysctl(facts, "net.core.somaxconn", "65535"),
            "net.ipv4.tcp_gone",
            "1",
        );
        let findings = check_profile(&profile, &facts);
        assert_eq!(
            findings.len(),
            2,
            "the summary and the optional key: {findings:#?}"
        );
        assert_eq!(
            findings[0],
            Finding::ok("profile", "gateway-lan has 5 of 5 settings in force".into())
        );
    }

    #[test]
    fn dates_and_days() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(951_782_400), "2000-02-29");
        assert_eq!(date(1_798_761_600 - 1), "2026-12-31");
        assert_eq!(date(1_798_761_600), "2027-01-01");
        assert_eq!(days(DAY - 1), "less than a day");
        assert_eq!(days(DAY), "1 day");
        assert_eq!(days(9 * DAY + 5), "9 days");
    }

    #[test]
    fn kernel_versions() {
        assert_eq!(kernel_version("6.18.44-fc-v669"), Some((6, 18)));
        assert_eq!(kernel_version("5.4.0-150-generic"), Some((5, 4)));
        assert_eq!(kernel_version("5.11"), Some((5, 11)));
        assert_eq!(kernel_version("4.19rc1"), Some((4, 19)));
        assert_eq!(kernel_version("junk"), None);
    }

    #[test]
    fn render_and_exit_code() {
        let findings = vec![
            Finding::ok("shards", "one per core (2)".into()),
            Finding::fail(
                "nofile",
                "hard limit 512 < 10256 needed".into(),
                "ulimit -n 10256".into(),
            ),
        ];
        assert_eq!(
            render(&findings),
            "OK    shards: one per core (2)\n\
             FAIL  nofile: hard limit 512 < 10256 needed\n      fix: ulimit -n 10256\n"
        );
        assert_eq!(exit_code(&findings), 1);
        assert_eq!(exit_code(&findings[..1]), 0);
    }
}
