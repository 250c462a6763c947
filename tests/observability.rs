//! What ringway says about itself, checked against what the test did: the counters, gauges and
//! histograms on `/metrics` (exactly, after a known mix of calls), the exposition format (read
//! back with a real Prometheus text parser), `/readyz` following Redis and a drain, `/config`,
//! and the access log's JSON lines.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ringway_testkit::admin::metric_sum;
use ringway_testkit::futures_util::stream::{self, StreamExt};
use ringway_testkit::tokio;
use ringway_testkit::tonic::transport::Channel;
use ringway_testkit::tonic::{Code, Request};
use ringway_testkit::{
    connect, eventually, pattern, routed, run, EchoClient, EchoRequest, Failure, Gateway,
    RedisServer, Upstream,
};

const RINGWAY: &str = env!("CARGO_BIN_EXE_ringway");
const LIMIT: Duration = Duration::from_secs(120);
/// Shards publish latency histograms every second (`metrics::PUBLISH_INTERVAL`); waiting half
/// as long again leaves room for a shard's tick to run late on a busy 2-core machine.
const PUBLISHED_AFTER: Duration = Duration::from_millis(1500);
/// The gRPC method every call here uses, as the access log names it.
const UNARY: &str = "/echo.Echo/Unary";

/// A loopback address nothing listens on.
fn closed_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// One admin request that may fail (the gateway may be exiting): (status, head, body).
fn admin_request(addr: SocketAddr, method: &str, path: &str) -> io::Result<(u16, String, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 0\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::other(format!("no header end in {response:?}")))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("no status in {head:?}")))?;
    Ok((status, head.to_string(), body.to_string()))
}

/// `GET /metrics`, which must answer 200.
fn scrape(gateway: &Gateway) -> String {
    let (status, body) = gateway.admin_get("/metrics");
    assert_eq!(status, 200, "GET /metrics: {body}");
    body
}

/// Whether `text` has at least one sample of exactly `name`.
fn has_sample(text: &str, name: &str) -> bool {
    text.lines().filter(|l| !l.starts_with('#')).any(|l| {
        l.strip_prefix(name)
            .is_some_and(|rest| rest.starts_with([' ', '{']))
    })
}

/// A file path in the temp dir, unique to this process and `name`, removed on drop.
struct TempPath(PathBuf);

impl TempPath {
    fn new(name: &str) -> TempPath {
        let path = std::env::temp_dir().join(format!("ringway-obs-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        TempPath(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn as_str(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temp path")
    }

    /// The file's lines; none when it does not exist.
    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.0)
            .map(|text| text.lines().map(str::to_owned).collect())
            .unwrap_or_default()
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What a call in a mixed load is meant to meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    /// Routed to the live upstream, answered OK.
    Ok,
    /// No `jobid` header: INVALID_ARGUMENT from ringway.
    NoHeader,
    /// A key Redis does not have: NOT_FOUND from ringway.
    Missing,
    /// Routed; the upstream fails it with PERMISSION_DENIED.
    Denied,
    /// Routed to a closed port: UNAVAILABLE from ringway.
    Closed,
}

impl Kind {
    fn expected_code(self) -> Code {
        match self {
            Kind::Ok => Code::Ok,
            Kind::NoHeader => Code::InvalidArgument,
            Kind::Missing => Code::NotFound,
            Kind::Denied => Code::PermissionDenied,
            Kind::Closed => Code::Unavailable,
        }
    }
}

/// `counts` of each kind, interleaved in a fixed pseudo-random order.
fn mixed_plan(counts: &[(Kind, usize)]) -> Vec<Kind> {
    let mut plan: Vec<Kind> = counts
        .iter()
        .flat_map(|&(kind, n)| std::iter::repeat_n(kind, n))
        .collect();
    // Fisher-Yates with a fixed LCG: the same order on every run.
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    for i in (1..plan.len()).rev() {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        plan.swap(i, (state >> 33) as usize % (i + 1));
    }
    plan
}

/// One call of `kind`, number `i`: (the request, its payload length).
fn request_for(kind: Kind, i: usize, keys: &Keys) -> (Request<EchoRequest>, usize) {
    let payload = pattern(64 + i % 200, i as u32);
    let len = payload.len();
    let mut message = EchoRequest {
        payload,
        ..Default::default()
    };
    let request = match kind {
        Kind::Ok => routed(message, &keys.ok(i)),
        Kind::NoHeader => Request::new(message),
        Kind::Missing => routed(message, &keys.missing(i)),
        Kind::Denied => {
            message.fail = Some(Failure {
                code: Code::PermissionDenied as i32,
                message: "denied by the test".into(),
                ..Default::default()
            });
            routed(message, &keys.ok(i))
        }
        Kind::Closed => routed(message, &keys.closed),
    };
    (request, len)
}

/// The routing keys of a mixed load.
struct Keys {
    /// Keys naming the live upstream: one per call when `per_call`, else one for all.
    per_call: bool,
    prefix: String,
    closed: String,
}

impl Keys {
    fn ok(&self, i: usize) -> String {
        if self.per_call {
            format!("{}-up-{i}", self.prefix)
        } else {
            format!("{}-up", self.prefix)
        }
    }

    fn missing(&self, i: usize) -> String {
        format!("{}-missing-{i}", self.prefix)
    }
}

/// The outcome of one call of a mixed load.
struct Done {
    i: usize,
    kind: Kind,
    code: Code,
    payload_len: usize,
    reply_len: usize,
}

/// Runs `plan` over `clients` (round robin), `in_flight` at a time; checks each call met the
/// code its kind expects (so a later metric mismatch is ringway's counting, not the load).
async fn drive(
    clients: &[EchoClient<Channel>],
    plan: &[Kind],
    keys: &Keys,
    in_flight: usize,
) -> Vec<Done> {
    let done: Vec<Done> = stream::iter(plan.iter().copied().enumerate())
        .map(|(i, kind)| {
            let mut client = clients[i % clients.len()].clone();
            let (request, payload_len) = request_for(kind, i, keys);
            async move {
                let (code, reply_len) = match client.unary(request).await {
                    Ok(reply) => (Code::Ok, reply.into_inner().payload.len()),
                    Err(status) => (status.code(), 0),
                };
                Done {
                    i,
                    kind,
                    code,
                    payload_len,
                    reply_len,
                }
            }
        })
        .buffer_unordered(in_flight)
        .collect()
        .await;
    for d in &done {
        assert_eq!(
            d.code,
            d.kind.expected_code(),
            "call {} ({:?}) ended with {:?}",
            d.i,
            d.kind,
            d.code
        );
    }
    done
}

/// The `{name}_bucket` values of a label-less histogram, in the order printed, as (le, count).
fn buckets(text: &str, name: &str) -> Vec<(String, f64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (le, value) = rest.split_once("\"} ")?;
            Some((le.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// Checks a histogram's buckets rise with `le`, end at `+Inf`, and that `+Inf` == `_count`.
fn check_histogram(text: &str, name: &str) -> f64 {
    let series = buckets(text, name);
    assert!(series.len() >= 2, "{name}: too few buckets: {series:?}");
    let mut last_le = f64::NEG_INFINITY;
    let mut last_count = 0.0;
    for (le, count) in &series {
        let bound: f64 = le
            .parse()
            .unwrap_or_else(|_| panic!("{name}: bucket le={le:?} is not a number"));
        assert!(bound > last_le, "{name}: le={le} after {last_le}");
        assert!(
            *count >= last_count,
            "{name}: bucket le={le} holds {count}, less than the one below ({last_count}): {series:?}"
        );
        last_le = bound;
        last_count = *count;
    }
    assert_eq!(series.last().unwrap().0, "+Inf", "{name}: {series:?}");
    let count = metric_sum(text, &format!("{name}_count"), &[]);
    assert_eq!(last_count, count, "{name}: +Inf bucket vs _count");
    assert!(
        has_sample(text, &format!("{name}_sum")),
        "{name}: no _sum sample"
    );
    count
}

#[test]
fn metrics_agree_with_the_calls_sent() {
    run(LIMIT, async {
        const CONNECTIONS: usize = 4;
        const IN_FLIGHT: usize = 32;
        let redis = RedisServer::start();
        let up = Upstream::start("a").await;
        let keys = Keys {
            per_call: false,
            prefix: "obs".into(),
            closed: "obs-closed".into(),
        };
        redis.set(&keys.ok(0), &up.addr().to_string());
        redis.set(&keys.closed, &closed_addr().to_string());
        let gateway = Gateway::start(RINGWAY, redis.addr(), &["--shards", "2"]);
        let mut clients = Vec::new();
        for _ in 0..CONNECTIONS {
            clients.push(connect(gateway.addr()).await);
        }

        let plan = mixed_plan(&[
            (Kind::Ok, 500),
            (Kind::NoHeader, 37),
            (Kind::Missing, 23),
            (Kind::Denied, 11),
            (Kind::Closed, 9),
        ]);
        let done = drive(&clients, &plan, &keys, IN_FLIGHT).await;
        let total = done.len() as f64;
        let ok_payload: usize = done
            .iter()
            .filter(|d| d.kind == Kind::Ok)
            .map(|d| d.payload_len)
            .sum();
        let ok_replies: usize = done.iter().map(|d| d.reply_len).sum();

        // Counters are final once the calls are; histograms after the next publication.
        tokio::time::sleep(PUBLISHED_AFTER).await;
        let text = scrape(&gateway);
        let sum = |name: &str, labels: &[(&str, &str)]| metric_sum(&text, name, labels);

        let by_status: BTreeMap<&str, f64> = [("0", 500.0), ("3", 37.0), ("5", 23.0)]
            .into_iter()
            .chain([("7", 11.0), ("14", 9.0)])
            .collect();
        for (code, want) in &by_status {
            assert_eq!(
                sum("ringway_calls_total", &[("grpc_status", code)]),
                *want,
                "ringway_calls_total{{grpc_status=\"{code}\"}}"
            );
        }
        assert_eq!(
            sum("ringway_calls_total", &[]),
            total,
            "no call counted under another status"
        );

        let by_outcome = [
            ("routed", 511.0),
            ("no_header", 37.0),
            ("not_found", 23.0),
            ("dial_error", 9.0),
            ("redis_error", 0.0),
            ("malformed_route", 0.0),
            ("upstream_reset", 0.0),
            ("client_cancel", 0.0),
        ];
        for (outcome, want) in by_outcome {
            assert_eq!(
                sum("ringway_call_outcomes_total", &[("outcome", outcome)]),
                want,
                "ringway_call_outcomes_total{{outcome=\"{outcome}\"}}"
            );
        }
        assert_eq!(sum("ringway_call_outcomes_total", &[]), total);

        // Every call with the header is looked up: OK, denied, missing and closed-port ones.
        let lookups = 500.0 + 11.0 + 23.0 + 9.0;
        assert_eq!(sum("ringway_redis_lookups_total", &[]), lookups);
        assert_eq!(sum("ringway_redis_errors_total", &[]), 0.0);
        assert_eq!(sum("ringway_redis_timeouts_total", &[]), 0.0);

        let request_bytes = sum("ringway_request_bytes_total", &[]);
        assert!(
            request_bytes >= ok_payload as f64,
            "request bytes {request_bytes} < {ok_payload} payload bytes sent on OK calls"
        );
        let response_bytes = sum("ringway_response_bytes_total", &[]);
        assert!(
            response_bytes >= ok_replies as f64,
            "response bytes {response_bytes} < {ok_replies} payload bytes received"
        );

        assert_eq!(sum("ringway_calls_in_flight", &[]), 0.0);
        assert_eq!(sum("ringway_upstream_streams_in_flight", &[]), 0.0);
        assert!(sum("ringway_upstream_connections", &[]) >= 1.0, "{text}");
        assert!(sum("ringway_upstream_dial_failures_total", &[]) >= 1.0);
        assert_eq!(
            sum("ringway_downstream_connections_accepted_total", &[]),
            CONNECTIONS as f64
        );
        assert_eq!(
            sum("ringway_downstream_connections", &[]),
            CONNECTIONS as f64
        );

        // Histograms: every call in the total; lookups and routed calls in their own.
        assert_eq!(
            check_histogram(&text, "ringway_call_duration_seconds"),
            total
        );
        assert_eq!(
            check_histogram(&text, "ringway_redis_lookup_seconds"),
            lookups
        );
        assert_eq!(check_histogram(&text, "ringway_overhead_seconds"), 511.0);

        // Pipelining: at least one write, carrying at least one command each.
        let writes = sum("ringway_redis_writes_total", &[]);
        let commands = sum("ringway_redis_commands_total", &[]);
        assert!(writes >= 1.0, "ringway_redis_writes_total {writes}");
        assert!(commands >= writes, "commands {commands} < writes {writes}");
        assert!(sum("ringway_redis_pipeline_depth_max", &[]) >= 1.0);
        assert_eq!(sum("ringway_redis_connected", &[]), 2.0, "both shards");

        for name in ["ringway_process_open_fds", "ringway_process_max_fds"] {
            assert!(has_sample(&text, name), "{name} missing:\n{text}");
        }
        let open_fds = sum("ringway_process_open_fds", &[]);
        let max_fds = sum("ringway_process_max_fds", &[]);
        assert!(
            open_fds >= 1.0 && open_fds <= max_fds,
            "open fds {open_fds}, max {max_fds}"
        );
        let established = sum("ringway_tcp_sockets", &[("state", "ESTABLISHED")]);
        assert!(
            established >= 1.0,
            "ringway_tcp_sockets{{state=\"ESTABLISHED\"}} = {established}"
        );
        assert_eq!(sum("ringway_ready", &[]), 1.0);
        assert_eq!(sum("ringway_draining", &[]), 0.0);
        drop(clients);
    });
}

/// One exposition line, split: sample name, labels in order, value text.
type ParsedSample = (String, Vec<(String, String)>, String);

/// Parses a sample line strictly per the text format 0.0.4: `name{k="v",...} value`, no
/// timestamp (ringway prints none), label values with only `\\`, `\"` and `\n` escapes.
fn parse_sample_line(line: &str) -> Result<ParsedSample, String> {
    let is_name = |s: &str, colon: bool| {
        let mut chars = s.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
    };
    let (series, value) = match line.find('{') {
        Some(_) => {
            let close = line.rfind('}').ok_or("`{` without `}`")?;
            (&line[..=close], line[close + 1..].trim_start())
        }
        None => line.split_once(' ').ok_or("no value")?,
    };
    if value.contains(' ') {
        return Err(format!("more than a value after the series: {value:?}"));
    }
    let (name, label_text) = match series.split_once('{') {
        Some((name, rest)) => (name, rest.strip_suffix('}').ok_or("no closing `}`")?),
        None => (series, ""),
    };
    if !is_name(name, true) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut labels = Vec::new();
    let mut rest = label_text;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").ok_or("label without `=\"`")?;
        if !is_name(key, false) {
            return Err(format!("bad label name {key:?}"));
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape {other:?}")),
                },
                Some((_, c)) => value.push(c),
                None => return Err("unterminated label value".into()),
            }
        };
        labels.push((key.to_string(), value));
        rest = &after[end + 1..];
        if let Some(next) = rest.strip_prefix(',') {
            rest = next;
        } else if !rest.is_empty() {
            return Err(format!("junk after a label: {rest:?}"));
        }
    }
    let parsed = match value {
        "+Inf" | "-Inf" | "NaN" => true,
        v => v.parse::<f64>().is_ok(),
    };
    if !parsed {
        return Err(format!("value {value:?} is not a float"));
    }
    Ok((name.to_string(), labels, value.to_string()))
}

/// Checks a whole `/metrics` body: it parses with `prometheus-parse` with no line skipped, and
/// against the format's rules: HELP and TYPE once per family before its samples, samples of a
/// family together, no duplicate series, counters named `_total` and never negative, and
/// histograms complete (`_bucket` up to `+Inf`, `_sum`, `_count`).
fn check_exposition(text: &str) {
    assert!(text.ends_with('\n'), "the body ends with a newline");
    let lines: Vec<&str> = text.lines().collect();

    // 1. The crate parses it; then check it dropped nothing it could not read.
    let scrape = prometheus_parse::Scrape::parse(lines.iter().map(|l| Ok(l.to_string())))
        .expect("prometheus-parse reads /metrics");
    for line in &lines {
        assert_ne!(
            prometheus_parse::LineInfo::parse(line),
            prometheus_parse::LineInfo::Ignored,
            "prometheus-parse ignores the line {line:?}"
        );
    }

    // 2. Families, line by line.
    let mut help: HashMap<String, usize> = HashMap::new();
    let mut types: HashMap<String, String> = HashMap::new();
    let mut finished: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut series_seen: HashSet<String> = HashSet::new();
    let mut sample_lines = 0usize;
    let mut bucket_lines = 0usize;
    let mut family_samples: HashMap<String, Vec<ParsedSample>> = HashMap::new();
    for (n, line) in lines.iter().enumerate() {
        let at = format!("line {}: {line:?}", n + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, doc) = rest.split_once(' ').unwrap_or((rest, ""));
            assert!(!doc.trim().is_empty(), "{at}: empty HELP");
            assert!(
                help.insert(name.to_string(), n).is_none(),
                "{at}: second HELP for {name}"
            );
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{at}: unknown type"
            );
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "{at}: second TYPE for {name}"
            );
            assert!(!finished.contains(name), "{at}: family {name} seen before");
            if let Some(previous) = current.replace(name.to_string()) {
                finished.insert(previous);
            }
            continue;
        }
        assert!(
            !line.starts_with('#'),
            "{at}: a comment that is not HELP/TYPE"
        );
        assert!(!line.trim().is_empty(), "{at}: an empty line");
        let (name, labels, value) = parse_sample_line(line).unwrap_or_else(|e| panic!("{at}: {e}"));
        sample_lines += 1;
        let family = if types.contains_key(&name) {
            name.clone()
        } else {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| {
                    let base = name.strip_suffix(suffix)?;
                    (types.get(base).map(String::as_str) == Some("histogram"))
                        .then(|| base.to_string())
                })
                .unwrap_or_else(|| panic!("{at}: sample of a family without TYPE"))
        };
        assert_eq!(
            current.as_deref(),
            Some(family.as_str()),
            "{at}: not under its own family's TYPE (families interleaved)"
        );
        assert!(
            help.contains_key(&family),
            "{at}: family {family} has no HELP"
        );
        if name.ends_with("_bucket") && family != name {
            bucket_lines += 1;
        }
        let mut sorted = labels.clone();
        sorted.sort();
        assert!(
            series_seen.insert(format!("{name}{sorted:?}")),
            "{at}: duplicate series"
        );
        if types[&family] == "counter" {
            assert!(family.ends_with("_total"), "{at}: counter not named _total");
            assert!(
                value.parse::<f64>().is_ok_and(|v| v >= 0.0),
                "{at}: negative counter"
            );
        }
        family_samples
            .entry(family)
            .or_default()
            .push((name, labels, value));
    }
    for name in types.keys() {
        assert!(
            help.contains_key(name),
            "family {name} has TYPE but no HELP"
        );
    }
    for name in help.keys() {
        assert!(
            types.contains_key(name),
            "family {name} has HELP but no TYPE"
        );
    }

    // 3. What the crate made of it matches, sample for sample.
    let crate_buckets: usize = scrape
        .samples
        .iter()
        .map(|s| match &s.value {
            prometheus_parse::Value::Histogram(counts) => counts.len(),
            _ => 0,
        })
        .sum();
    let crate_others = scrape
        .samples
        .iter()
        .filter(|s| !matches!(s.value, prometheus_parse::Value::Histogram(_)))
        .count();
    assert_eq!(crate_buckets, bucket_lines, "bucket samples parsed");
    assert_eq!(
        crate_others,
        sample_lines - bucket_lines,
        "other samples parsed"
    );
    for (name, kind) in &types {
        assert!(
            scrape.docs.contains_key(name),
            "prometheus-parse found no HELP for {name} ({kind})"
        );
    }
    for sample in &scrape.samples {
        let want = match types.get(&sample.metric).map(String::as_str) {
            Some("counter") => matches!(sample.value, prometheus_parse::Value::Counter(_)),
            Some("gauge") => matches!(sample.value, prometheus_parse::Value::Gauge(_)),
            Some("histogram") => matches!(sample.value, prometheus_parse::Value::Histogram(_)),
            // _sum and _count of a histogram come back untyped from this crate.
            _ => matches!(sample.value, prometheus_parse::Value::Untyped(_)),
        };
        assert!(want, "prometheus-parse typed {sample:?} unlike its TYPE");
    }

    // 4. Histograms are whole.
    let histograms: Vec<&String> = types
        .iter()
        .filter(|(_, kind)| kind.as_str() == "histogram")
        .map(|(name, _)| name)
        .collect();
    assert!(!histograms.is_empty(), "no histogram families");
    for name in histograms {
        let samples = &family_samples[name];
        let has = |suffix: &str| {
            samples
                .iter()
                .any(|(n, ..)| *n == format!("{name}{suffix}"))
        };
        assert!(
            has("_bucket") && has("_sum") && has("_count"),
            "{name}: {samples:?}"
        );
        assert!(
            samples.iter().any(|(n, labels, _)| n.ends_with("_bucket")
                && labels.iter().any(|(k, v)| k == "le" && v == "+Inf")),
            "{name}: no le=\"+Inf\" bucket"
        );
        check_histogram(text, name);
        let parsed = scrape
            .samples
            .iter()
            .find(|s| &s.metric == name)
            .unwrap_or_else(|| panic!("prometheus-parse has no histogram {name}"));
        let prometheus_parse::Value::Histogram(counts) = &parsed.value else {
            panic!("{name} is not a histogram to prometheus-parse");
        };
        assert!(
            counts.iter().any(|c| c.less_than == f64::INFINITY),
            "{name}"
        );
    }
}

#[test]
fn metrics_parse_as_prometheus_text() {
    run(LIMIT, async {
        let redis = RedisServer::start();
        let up = Upstream::start("a").await;
        let keys = Keys {
            per_call: false,
            prefix: "fmt".into(),
            closed: "fmt-closed".into(),
        };
        redis.set(&keys.ok(0), &up.addr().to_string());
        redis.set(&keys.closed, &closed_addr().to_string());
        let log = TempPath::new("format.log");
        let gateway = Gateway::start(
            RINGWAY,
            redis.addr(),
            &["--shards", "2", "--access-log", log.as_str()],
        );

        // Before any call: empty histograms, zero counters.
        let (status, head, idle) =
            admin_request(gateway.admin_addr(), "GET", "/metrics").expect("GET /metrics");
        assert_eq!(status, 200);
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4"),
            "{head}"
        );
        check_exposition(&idle);

        // After calls of every kind, so every status and outcome series and the histograms
        // carry values (and the access log's dropped-lines family is there).
        let client = connect(gateway.addr()).await;
        let plan = mixed_plan(&[
            (Kind::Ok, 40),
            (Kind::NoHeader, 5),
            (Kind::Missing, 5),
            (Kind::Denied, 5),
            (Kind::Closed, 5),
        ]);
        drive(&[client], &plan, &keys, 8).await;
        tokio::time::sleep(PUBLISHED_AFTER).await;
        let text = scrape(&gateway);
        check_exposition(&text);
        assert!(
            has_sample(&text, "ringway_access_log_dropped_lines_total"),
            "the access log's family is there when it is on"
        );
        assert_eq!(
            metric_sum(&text, "ringway_call_duration_seconds_count", &[]),
            60.0
        );
    });
}

/// `GET path` on a gateway that may be exiting: `None` when the admin port no longer answers.
fn try_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    admin_request(addr, "GET", path)
        .ok()
        .map(|(status, _, body)| (status, body))
}

/// Polls `path` until `check` holds for (status, body), for at most `limit`.
async fn admin_until(
    gateway: &Gateway,
    path: &str,
    limit: Duration,
    what: &str,
    check: impl Fn(u16, &str) -> bool,
) -> (u16, String) {
    let addr = gateway.admin_addr();
    let check = &check;
    eventually(limit, what, || async move {
        let (status, body) = try_get(addr, path).ok_or("no answer".to_string())?;
        if check(status, &body) {
            Ok((status, body))
        } else {
            Err(format!("{status} {body:?}"))
        }
    })
    .await
}

#[test]
fn readyz_follows_redis_and_drain() {
    run(LIMIT, async {
        let mut redis = RedisServer::start();
        let mut up = Upstream::start("a").await;
        redis.set("slow", &up.addr().to_string());
        let mut gateway = Gateway::start(RINGWAY, redis.addr(), &["--shards", "2"]);
        let health = |gateway: &Gateway, when: &str| {
            assert_eq!(
                gateway.admin_get("/healthz"),
                (200, "ok\n".to_string()),
                "/healthz {when}"
            );
        };

        admin_until(
            &gateway,
            "/readyz",
            Duration::from_secs(3),
            "ready at start",
            |s, _| s == 200,
        )
        .await;
        health(&gateway, "at start");

        // Redis goes away: not ready within ~3 s, and the reason names Redis.
        redis.stop();
        let stopped = Instant::now();
        let (_, body) = admin_until(
            &gateway,
            "/readyz",
            Duration::from_secs(3),
            "not ready after redis-server stopped",
            |s, _| s == 503,
        )
        .await;
        eprintln!(
            "readyz went 503 {:?} after Redis stopped",
            stopped.elapsed()
        );
        assert!(body.contains("Redis"), "the reason names Redis: {body:?}");
        health(&gateway, "without Redis");
        assert_eq!(metric_sum(&scrape(&gateway), "ringway_ready", &[]), 0.0);

        // Redis is back (empty): ready again once every shard has reconnected.
        redis.start_again();
        admin_until(
            &gateway,
            "/readyz",
            Duration::from_secs(5),
            "ready again after redis-server restarted",
            |s, _| s == 200,
        )
        .await;
        health(&gateway, "after Redis came back");
        assert_eq!(metric_sum(&scrape(&gateway), "ringway_ready", &[]), 1.0);

        // A call in flight keeps the draining gateway alive long enough to look at it.
        redis.set("slow", &up.addr().to_string());
        let mut client = connect(gateway.addr()).await;
        let slow = tokio::spawn(async move {
            let request = EchoRequest {
                payload: b"slow".to_vec(),
                delay_ms: 1500,
                ..Default::default()
            };
            client.unary(routed(request, "slow")).await
        });
        let upstream = &up;
        eventually(
            Duration::from_secs(5),
            "the slow call reached the upstream",
            || async move {
                (upstream.calls() == 1)
                    .then_some(())
                    .ok_or(upstream.calls())
            },
        )
        .await;

        let (status, body) = gateway.admin_post("/drain");
        assert_eq!((status, body.as_str()), (202, "draining\n"));
        let drain_started = Instant::now();
        let (status, body) = gateway.admin_get("/readyz");
        assert_eq!(status, 503, "not ready while draining: {body:?}");
        assert!(body.contains("draining"), "{body:?}");
        assert_eq!(metric_sum(&scrape(&gateway), "ringway_draining", &[]), 1.0);

        // /healthz answers 200 for as long as the process runs; then it exits 0.
        let admin = gateway.admin_addr();
        let exit = loop {
            if let Some(status) = gateway.try_wait() {
                break status;
            }
            match try_get(admin, "/healthz") {
                Some(answer) => assert_eq!(answer, (200, "ok\n".to_string()), "while draining"),
                None => {
                    // The admin port closes as the process ends: it must be gone very soon.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    let status = gateway.try_wait();
                    assert!(status.is_some(), "admin port gone but the process runs");
                    break status.unwrap();
                }
            }
            assert!(
                drain_started.elapsed() < Duration::from_secs(15),
                "still running {:?} after POST /drain with nothing left in flight",
                drain_started.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let drained_in = drain_started.elapsed();
        eprintln!("ringway exited {exit:?} {drained_in:?} after POST /drain");
        assert_eq!(exit.code(), Some(0), "a drain ends in exit 0");
        let reply = slow
            .await
            .expect("the slow call's task")
            .expect("the call in flight finished during the drain");
        assert_eq!(reply.into_inner().payload, b"slow");
        assert!(
            drained_in >= Duration::from_millis(1000),
            "exited {drained_in:?} after the drain began, before the call in flight ended"
        );
        assert!(
            gateway
                .stderr()
                .contains("drain requested on the admin port"),
            "{}",
            gateway.stderr()
        );
        up.stop().await;
    });
}

/// The lines of the `[section]` table in TOML `text` (up to the next header).
fn toml_section<'a>(text: &'a str, section: &str) -> Vec<&'a str> {
    let header = format!("[{section}]");
    text.lines()
        .skip_while(|l| l.trim() != header)
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with('['))
        .map(str::trim)
        .collect()
}

#[test]
fn config_and_unknown_requests_on_the_admin_port() {
    run(LIMIT, async {
        let redis = RedisServer::start();
        let gateway = Gateway::start(
            RINGWAY,
            redis.addr(),
            &[
                "--shards",
                "2",
                "--pool-max-connections",
                "3",
                "--lookup-timeout-ms",
                "777",
                "--route-header",
                "x-job",
            ],
        );

        let (status, config) = gateway.admin_get("/config");
        assert_eq!(status, 200, "{config}");
        let top: Vec<&str> = config
            .lines()
            .take_while(|l| !l.trim_start().starts_with('['))
            .map(str::trim)
            .collect();
        assert!(top.contains(&"shards = 2"), "{config}");
        let upstream = toml_section(&config, "upstream");
        assert!(
            upstream.contains(&"max_connections_per_target = 3"),
            "{config}"
        );
        let redis_section = toml_section(&config, "redis");
        assert!(
            redis_section.contains(&"lookup_timeout_ms = 777"),
            "{config}"
        );
        assert!(
            redis_section.contains(&format!("addr = \"{}\"", redis.addr()).as_str()),
            "{config}"
        );
        assert!(
            toml_section(&config, "route").contains(&"header = \"x-job\""),
            "{config}"
        );

        let addr = gateway.admin_addr();
        for (method, path, want) in [
            ("GET", "/nope", 404),
            ("GET", "/metrics/extra", 404),
            ("GET", "/drain", 405),
            ("POST", "/metrics", 405),
            ("DELETE", "/readyz", 405),
        ] {
            let (status, _, body) = admin_request(addr, method, path)
                .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
            assert_eq!(status, want, "{method} {path}: {body:?}");
        }
        // None of those started a drain.
        admin_until(
            &gateway,
            "/readyz",
            Duration::from_secs(3),
            "still ready",
            |s, _| s == 200,
        )
        .await;
        assert_eq!(metric_sum(&scrape(&gateway), "ringway_draining", &[]), 0.0);
    });
}

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
    tokio::time::sleep(Duration::from_millis(300)).await;
    log.lines()
}

#[test]
fn access_log_has_a_json_line_per_call() {
    run(LIMIT, async {
        let redis = RedisServer::start();
        let up = Upstream::start("a").await;
        let keys = Keys {
            per_call: true,
            prefix: "log".into(),
            closed: "log-closed".into(),
        };
        let plan = mixed_plan(&[
            (Kind::Ok, 30),
            (Kind::NoHeader, 7),
            (Kind::Missing, 6),
            (Kind::Denied, 4),
            (Kind::Closed, 3),
        ]);
        for i in 0..plan.len() {
            redis.set(&keys.ok(i), &up.addr().to_string());
        }
        let closed = closed_addr().to_string();
        redis.set(&keys.closed, &closed);
        let log = TempPath::new("calls.log");
        let gateway = Gateway::start(
            RINGWAY,
            redis.addr(),
            &["--shards", "2", "--access-log", log.as_str()],
        );
        let mut clients = Vec::new();
        for _ in 0..3 {
            clients.push(connect(gateway.addr()).await);
        }
        let started = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let done = drive(&clients, &plan, &keys, 8).await;
        let ended = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();

        let lines = log_lines(&log, plan.len(), Duration::from_secs(2)).await;
        assert_eq!(
            lines.len(),
            plan.len(),
            "one line per call:\n{}",
            lines.join("\n")
        );

        // Each line, by its key (unique per call but for the header-less and closed-port ones).
        let mut by_key: HashMap<String, Vec<serde_json::Value>> = HashMap::new();
        for line in &lines {
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
                ts >= started.as_secs_f64() - 1.0 && ts <= ended.as_secs_f64() + 1.0,
                "ts {ts} outside the test's calls ({started:?}..{ended:?}): {line}"
            );
            let shard = entry["shard"].as_u64().unwrap_or_else(|| panic!("{line}"));
            assert!(shard < 2, "{line}");
            assert_eq!(entry["method"], UNARY, "{line}");
            for field in ["duration_us", "bytes_in", "bytes_out"] {
                assert!(entry[field].is_u64(), "{field}: {line}");
            }
            let key = entry["key"].as_str().unwrap_or_else(|| panic!("{line}"));
            by_key
                .entry(key.to_string())
                .or_default()
                .push(entry.clone());
        }

        let upstream = up.addr().to_string();
        let mut no_header = 0;
        for d in &done {
            let key = match d.kind {
                Kind::Ok | Kind::Denied => keys.ok(d.i),
                Kind::Missing => keys.missing(d.i),
                Kind::Closed => keys.closed.clone(),
                Kind::NoHeader => {
                    no_header += 1;
                    continue;
                }
            };
            let entries = &by_key[&key];
            let entry = &entries[0];
            let (status, outcome, target) = match d.kind {
                Kind::Ok => (0, "routed", upstream.as_str()),
                Kind::Denied => (7, "routed", upstream.as_str()),
                Kind::Missing => (5, "not_found", ""),
                Kind::Closed => (14, "dial_error", closed.as_str()),
                Kind::NoHeader => unreachable!(),
            };
            if d.kind != Kind::Closed {
                assert_eq!(entries.len(), 1, "one line for key {key}: {entries:?}");
            }
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
            let (bytes_in, bytes_out) = (
                entry["bytes_in"].as_u64().unwrap(),
                entry["bytes_out"].as_u64().unwrap(),
            );
            if d.kind == Kind::Ok {
                // A gRPC frame is 5 bytes of header, then the message: the payload and more.
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
            if matches!(d.kind, Kind::Missing) {
                assert_eq!(bytes_out, 0, "nothing relayed back: {entry}");
            }
        }
        let closed_lines = by_key.get(&keys.closed).map_or(0, Vec::len);
        assert_eq!(closed_lines, 3, "closed-port calls logged");
        let header_less = &by_key.get("").cloned().unwrap_or_default();
        assert_eq!(
            header_less.len(),
            no_header,
            "header-less calls logged with key \"\""
        );
        for entry in header_less {
            assert_eq!(entry["grpc_status"], 3, "{entry}");
            assert_eq!(entry["outcome"], "no_header", "{entry}");
            assert_eq!(entry["target"], "", "{entry}");
        }
    });
}

#[test]
fn access_log_duration_covers_the_upstream_delay() {
    run(LIMIT, async {
        let redis = RedisServer::start();
        let up = Upstream::start("a").await;
        redis.set("slow", &up.addr().to_string());
        let log = TempPath::new("duration.log");
        let gateway = Gateway::start(
            RINGWAY,
            redis.addr(),
            &["--shards", "1", "--access-log", log.as_str()],
        );
        let mut client = connect(gateway.addr()).await;
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
        let redis = RedisServer::start();
        let up = Upstream::start("a").await;
        redis.set("job", &up.addr().to_string());
        let config = TempPath::new("sample.toml");
        std::fs::write(config.path(), "[access_log]\nsample = 0.1\n").unwrap();
        let log = TempPath::new("sampled.log");
        let gateway = Gateway::start(
            RINGWAY,
            redis.addr(),
            &[
                "--shards",
                "1",
                "--config",
                config.as_str(),
                "--access-log",
                log.as_str(),
            ],
        );
        let client = connect(gateway.addr()).await;
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

#[test]
fn no_access_log_without_the_flag() {
    if !Path::new("/proc/self/fd").exists() {
        eprintln!("skipped: needs /proc to list the gateway's open files");
        return;
    }
    run(LIMIT, async {
        let redis = RedisServer::start();
        let up = Upstream::start("a").await;
        redis.set("job", &up.addr().to_string());

        // With the flag, the log is an open file of the process: the check below can see it.
        let log = TempPath::new("control.log");
        let logging = Gateway::start(
            RINGWAY,
            redis.addr(),
            &["--shards", "1", "--access-log", log.as_str()],
        );
        let files = open_files(logging.pid());
        assert!(
            files.iter().any(|f| f == log.as_str()),
            "the log {} among the open files {files:?}",
            log.as_str()
        );
        drop(logging);

        let gateway = Gateway::start(RINGWAY, redis.addr(), &["--shards", "1"]);
        let mut client = connect(gateway.addr()).await;
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
        tokio::time::sleep(Duration::from_millis(300)).await;
        let files = open_files(gateway.pid());
        assert!(
            files.is_empty(),
            "no file open without --access-log: {files:?}"
        );
        let text = scrape(&gateway);
        assert!(
            !has_sample(&text, "ringway_access_log_dropped_lines_total"),
            "no access-log family when the log is off"
        );
        assert_eq!(metric_sum(&text, "ringway_calls_total", &[]), 21.0);
    });
}

#[test]
fn exposition_check_rejects_broken_text() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{shard=\"0\"} 1\n\
                # HELP h H.\n# TYPE h histogram\nh_bucket{le=\"0.1\"} 1\nh_bucket{le=\"+Inf\"} 2\n\
                h_sum 0.3\nh_count 2\n";
    check_exposition(good);
    let broken = [
        ("no HELP", good.replace("# HELP a_total A.\n", "")),
        ("no TYPE", good.replace("# TYPE a_total counter\n", "")),
        (
            "bad value",
            good.replace("a_total{shard=\"0\"} 1", "a_total{shard=\"0\"} one"),
        ),
        ("bad label", good.replace("shard=\"0\"", "shard=0")),
        (
            "duplicate series",
            good.replace("} 1\n", "} 1\na_total{shard=\"0\"} 2\n"),
        ),
        ("no +Inf", good.replace("h_bucket{le=\"+Inf\"} 2\n", "")),
        (
            "falling buckets",
            good.replace("le=\"0.1\"} 1", "le=\"0.1\"} 3"),
        ),
        ("+Inf vs count", good.replace("h_count 2", "h_count 5")),
        ("no _sum", good.replace("h_sum 0.3\n", "")),
        ("interleaved", format!("{good}a_total{{shard=\"1\"}} 1\n")),
        ("counter without _total", good.replace("a_total", "a")),
    ];
    for (what, text) in broken {
        let caught = std::panic::catch_unwind(|| check_exposition(&text));
        assert!(caught.is_err(), "the check let through: {what}\n{text}");
    }
}
