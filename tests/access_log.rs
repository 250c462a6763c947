//! The access log (`--access-log`): one JSON line per call with exactly the documented fields,
//! each naming the call's status, outcome, target and bytes; its duration covers the
//! upstream's time; `[access_log] sample` keeps one call in N; and without the flag there is
//! no file and no metric family.
//!
//! The mixed load the per-call checks read runs once per test binary ([`logged_load`]); each
//! test checks one property of its lines.

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ringway_testkit::admin::{has_sample, metric_sum};
use ringway_testkit::futures_util::stream::{self, StreamExt};
use ringway_testkit::mixed::{drive, mixed_plan, Done, Keys, Kind};
use ringway_testkit::tonic::{Code, Request};
use ringway_testkit::{
    closed_addr, eventually, pattern, routed, run, tokio_sleep, EchoRequest, Env, TempPath,
};

const RINGWAY: &str = env!("CARGO_BIN_EXE_ringway");
const LIMIT: Duration = Duration::from_secs(120);
/// The gRPC method every call here uses, as the access log names it.
const UNARY: &str = "/echo.Echo/Unary";

/// Waits until the file at `log` has at least `want` lines (at most `limit`), then a little
/// longer, and returns its lines: a late extra line shows as a count above `want`.
async fn log_lines(log: &TempPath, want: usize, limit: Duration) -> Vec<String> {
    eventually(
        limit,
        &format!("{want} lines in {}", log.as_str()),
        || async {
            let n = log.lines().len();
            (n >= want).then_some(()).ok_or(n)
        },
    )
    .await;
    tokio_sleep(Duration::from_millis(300)).await;
    log.lines()
}

// ---------------------------------------------------------------------------------------------
// One line per call, of a mixed load

/// Calls of each kind in [`logged_load`].
const OK: usize = 30;
const NO_HEADER: usize = 7;
const MISSING: usize = 6;
const DENIED: usize = 4;
const CLOSED: usize = 3;

/// What [`logged_load`] did and what the log holds afterwards.
struct Logged {
    keys: Keys,
    done: Vec<Done>,
    lines: Vec<String>,
    /// The live upstream's and the closed target's addresses, as routes name them.
    upstream: String,
    closed: String,
    /// Wall-clock time just before the first call and just after the last.
    started: Duration,
    ended: Duration,
}

impl Logged {
    /// Each line as JSON. Panics on one that is not.
    fn entries(&self) -> Vec<serde_json::Value> {
        self.lines
            .iter()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
            })
            .collect()
    }

    /// The entries by their `key` (unique per call but for the header-less and closed-port
    /// ones); header-less calls are under `""`.
    fn by_key(&self) -> HashMap<String, Vec<serde_json::Value>> {
        let mut by_key: HashMap<String, Vec<serde_json::Value>> = HashMap::new();
        for entry in self.entries() {
            let key = entry["key"]
                .as_str()
                .unwrap_or_else(|| panic!("no string key: {entry}"))
                .to_string();
            by_key.entry(key).or_default().push(entry);
        }
        by_key
    }

    /// The key call `d` was routed by; `None` for a header-less call.
    fn key_of(&self, d: &Done) -> Option<String> {
        match d.kind {
            Kind::Ok | Kind::Denied => Some(self.keys.ok(d.i)),
            Kind::Missing => Some(self.keys.missing(d.i)),
            Kind::Closed => Some(self.keys.closed.clone()),
            Kind::NoHeader => None,
        }
    }

    /// The first line logged for key `key`.
    fn entry_for(
        &self,
        by_key: &HashMap<String, Vec<serde_json::Value>>,
        key: &str,
    ) -> serde_json::Value {
        by_key
            .get(key)
            .and_then(|entries| entries.first())
            .unwrap_or_else(|| panic!("no line for key {key}:\n{}", self.lines.join("\n")))
            .clone()
    }
}

/// Ringway with two shards and `--access-log`, one upstream routed by a key per call; the
/// calls of a mixed load over three connections; then the log's lines once they are all
/// there (and 300 ms more). Run once, by the first test that asks.
fn logged_load() -> &'static Logged {
    static LOGGED: OnceLock<Logged> = OnceLock::new();
    LOGGED.get_or_init(|| {
        run(LIMIT, async {
            let keys = Keys {
                per_call: true,
                prefix: "log".into(),
                closed: "log-closed".into(),
            };
            let plan = mixed_plan(&[
                (Kind::Ok, OK),
                (Kind::NoHeader, NO_HEADER),
                (Kind::Missing, MISSING),
                (Kind::Denied, DENIED),
                (Kind::Closed, CLOSED),
            ]);
            let closed = closed_addr().to_string();
            let log = TempPath::new("calls.log");
            let mut builder = Env::builder(RINGWAY)
                .shards(2)
                .upstream("a")
                .route_value(&keys.closed, &closed)
                .args(&["--access-log", log.as_str()]);
            for i in 0..plan.len() {
                builder = builder.route(&keys.ok(i), "a");
            }
            let env = builder.start().await;
            let mut clients = Vec::new();
            for _ in 0..3 {
                clients.push(env.client().await);
            }
            let started = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            let done = drive(&clients, &plan, &keys, 8).await;
            let ended = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            let lines = log_lines(&log, plan.len(), Duration::from_secs(2)).await;
            Logged {
                keys,
                done,
                lines,
                upstream: env.targets("a"),
                closed,
                started,
                ended,
            }
        })
    })
}

/// One line per call: as many lines as calls, one per routed key, every closed-port call, and
/// every header-less call under the key `""`.
#[test]
fn access_log_has_one_line_per_call() {
    let load = logged_load();
    assert_eq!(
        load.lines.len(),
        load.done.len(),
        "one line per call:\n{}",
        load.lines.join("\n")
    );
    let by_key = load.by_key();
    for d in &load.done {
        let Some(key) = load.key_of(d) else { continue };
        let entries = by_key.get(&key).map_or(&[][..], Vec::as_slice);
        if d.kind != Kind::Closed {
            assert_eq!(entries.len(), 1, "one line for key {key}: {entries:?}");
        }
    }
    let closed_lines = by_key.get(&load.keys.closed).map_or(0, Vec::len);
    assert_eq!(closed_lines, CLOSED, "closed-port calls logged");
    let no_header = load
        .done
        .iter()
        .filter(|d| d.kind == Kind::NoHeader)
        .count();
    let header_less = by_key.get("").map_or(0, Vec::len);
    assert_eq!(
        header_less, no_header,
        "header-less calls logged with key \"\""
    );
}

#[test]
fn access_log_lines_are_json_objects_with_exactly_the_documented_fields() {
    let load = logged_load();
    for line in &load.lines {
        let entry: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let object = entry.as_object().unwrap_or_else(|| panic!("{line}"));
        for field in [
            "ts",
            "shard",
            "method",
            "key",
            "target",
            "grpc_status",
            "outcome",
            "duration_us",
            "bytes_in",
            "bytes_out",
        ] {
            assert!(object.contains_key(field), "no {field}: {line}");
        }
        assert_eq!(object.len(), 10, "exactly the documented fields: {line}");
        let ts = entry["ts"].as_f64().unwrap_or_else(|| panic!("ts: {line}"));
        assert!(
            ts >= load.started.as_secs_f64() - 1.0 && ts <= load.ended.as_secs_f64() + 1.0,
            "ts {ts} outside the test's calls ({:?}..{:?}): {line}",
            load.started,
            load.ended
        );
        let shard = entry["shard"].as_u64().unwrap_or_else(|| panic!("{line}"));
        assert!(shard < 2, "{line}");
        assert_eq!(entry["method"], UNARY, "{line}");
        for field in ["duration_us", "bytes_in", "bytes_out"] {
            assert!(entry[field].is_u64(), "{field}: {line}");
        }
        assert!(entry["key"].is_string(), "key: {line}");
    }
}

/// Each call's line says its gRPC status, its outcome and the target it went to (none when
/// its key was not found or it had no header).
#[test]
fn access_log_lines_say_each_calls_status_outcome_and_target() {
    let load = logged_load();
    let by_key = load.by_key();
    for d in &load.done {
        let Some(key) = load.key_of(d) else { continue };
        let entry = load.entry_for(&by_key, &key);
        let (status, outcome, target) = match d.kind {
            Kind::Ok => (0, "routed", load.upstream.as_str()),
            Kind::Denied => (7, "routed", load.upstream.as_str()),
            Kind::Missing => (5, "not_found", ""),
            Kind::Closed => (14, "dial_error", load.closed.as_str()),
            Kind::NoHeader => unreachable!(),
        };
        assert_eq!(
            entry["grpc_status"], status,
            "call {} {:?}: {entry}",
            d.i, d.kind
        );
        assert_eq!(
            entry["outcome"], outcome,
            "call {} {:?}: {entry}",
            d.i, d.kind
        );
        if d.kind != Kind::Missing {
            assert_eq!(
                entry["target"], target,
                "call {} {:?}: {entry}",
                d.i, d.kind
            );
        } else {
            assert_eq!(entry["target"], "", "not found: no target: {entry}");
        }
    }
    for entry in by_key.get("").cloned().unwrap_or_default() {
        assert_eq!(entry["grpc_status"], 3, "{entry}");
        assert_eq!(entry["outcome"], "no_header", "{entry}");
        assert_eq!(entry["target"], "", "{entry}");
    }
}

/// A gRPC frame is 5 bytes of header, then the message: an OK call's bytes in and out are its
/// payloads and more; a call whose key was not found relays nothing back.
#[test]
fn access_log_byte_counts_cover_each_calls_messages() {
    let load = logged_load();
    let by_key = load.by_key();
    for d in &load.done {
        let Some(key) = load.key_of(d) else { continue };
        let entry = load.entry_for(&by_key, &key);
        let (bytes_in, bytes_out) = (
            entry["bytes_in"].as_u64().unwrap(),
            entry["bytes_out"].as_u64().unwrap(),
        );
        if d.kind == Kind::Ok {
            assert!(
                bytes_in >= d.payload_len as u64 + 5,
                "call {}: bytes_in {bytes_in} < payload {} + 5: {entry}",
                d.i,
                d.payload_len
            );
            assert!(
                bytes_out >= d.reply_len as u64 + 5,
                "call {}: bytes_out {bytes_out} < reply {} + 5: {entry}",
                d.i,
                d.reply_len
            );
        }
        if d.kind == Kind::Missing {
            assert_eq!(bytes_out, 0, "nothing relayed back: {entry}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Duration, sampling, off

#[test]
fn access_log_duration_covers_the_upstream_delay() {
    run(LIMIT, async {
        let log = TempPath::new("duration.log");
        let env = Env::builder(RINGWAY)
            .shards(1)
            .upstream("a")
            .route("slow", "a")
            .args(&["--access-log", log.as_str()])
            .start()
            .await;
        let mut client = env.client().await;
        let request = EchoRequest {
            delay_ms: 200,
            ..Default::default()
        };
        let started = Instant::now();
        client
            .unary(routed(request, "slow"))
            .await
            .expect("the slow call");
        let took = started.elapsed();
        let lines = log_lines(&log, 1, Duration::from_secs(2)).await;
        assert_eq!(lines.len(), 1, "{lines:?}");
        let entry: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        let duration_us = entry["duration_us"].as_u64().unwrap();
        assert!(
            (200_000..=took.as_micros() as u64).contains(&duration_us),
            "duration_us {duration_us}: at least the 200 ms delay, at most the {took:?} the client saw"
        );
        assert_eq!(entry["shard"], 0);
        assert_eq!(entry["key"], "slow");
    });
}

#[test]
fn access_log_samples_one_call_in_ten() {
    run(LIMIT, async {
        const CALLS: usize = 200;
        let log = TempPath::new("sampled.log");
        let env = Env::builder(RINGWAY)
            .shards(1)
            .upstream("a")
            .route("job", "a")
            .config("[access_log]\nsample = 0.1\n")
            .args(&["--access-log", log.as_str()])
            .start()
            .await;
        let client = env.client().await;
        let done: Vec<Code> = stream::iter(0..CALLS)
            .map(|i| {
                let mut client = client.clone();
                let request = EchoRequest {
                    payload: pattern(32, i as u32),
                    ..Default::default()
                };
                async move {
                    match client.unary(routed(request, "job")).await {
                        Ok(_) => Code::Ok,
                        Err(status) => status.code(),
                    }
                }
            })
            .buffer_unordered(16)
            .collect()
            .await;
        assert!(done.iter().all(|c| *c == Code::Ok), "{done:?}");

        let lines = log_lines(&log, CALLS / 10, Duration::from_secs(2)).await;
        assert_eq!(
            lines.len(),
            CALLS / 10,
            "1 in 10 of {CALLS} calls on one shard"
        );
        for line in &lines {
            let entry: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(entry["outcome"], "routed", "{line}");
        }
    });
}

/// The regular files `pid` opened itself (its descriptors above stdin/stdout/stderr that link to
/// a path outside /dev). The standard streams are skipped: they are inherited from the test
/// runner, whose output may well be a file (CI logs).
fn open_files(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/<pid>/fd")
        .filter_map(|fd| {
            let path = fd.ok()?.path();
            let number: u32 = path.file_name()?.to_str()?.parse().ok()?;
            (number > 2).then_some(path)
        })
        .filter_map(|path| std::fs::read_link(path).ok())
        .map(|target| target.to_string_lossy().into_owned())
        .filter(|target| target.starts_with('/') && !target.starts_with("/dev/"))
        .collect()
}

/// Ringway on one shard without `--access-log`, after 20 routed calls and one without a
/// header (and 300 ms for anything they would write).
async fn gateway_without_the_log() -> Env {
    let env = Env::builder(RINGWAY)
        .shards(1)
        .upstream("a")
        .route("job", "a")
        .start()
        .await;
    let mut client = env.client().await;
    for i in 0..20 {
        client
            .unary(routed(EchoRequest::default(), "job"))
            .await
            .unwrap_or_else(|s| panic!("call {i}: {s:?}"));
    }
    client
        .unary(Request::new(EchoRequest::default()))
        .await
        .expect_err("no header");
    tokio_sleep(Duration::from_millis(300)).await;
    env
}

#[test]
fn no_access_log_file_is_opened_without_the_flag() {
    if !Path::new("/proc/self/fd").exists() {
        eprintln!("skipped: needs /proc to list the gateway's open files");
        return;
    }
    run(LIMIT, async {
        // With the flag, the log is an open file of the process: the check below can see it.
        let log = TempPath::new("control.log");
        let logging = Env::builder(RINGWAY)
            .shards(1)
            .args(&["--access-log", log.as_str()])
            .start()
            .await;
        let files = open_files(logging.gateway().pid());
        assert!(
            files.iter().any(|f| f == log.as_str()),
            "the log {} among the open files {files:?}",
            log.as_str()
        );
        drop(logging);

        let env = gateway_without_the_log().await;
        let files = open_files(env.gateway().pid());
        assert!(
            files.is_empty(),
            "no file open without --access-log: {files:?}"
        );
    });
}

#[test]
fn no_access_log_metric_family_without_the_flag() {
    run(LIMIT, async {
        let env = gateway_without_the_log().await;
        let text = env.metrics();
        assert!(
            !has_sample(&text, "ringway_access_log_dropped_lines_total"),
            "no access-log family when the log is off"
        );
        assert_eq!(metric_sum(&text, "ringway_calls_total", &[]), 21.0);
    });
}
