//! What bench/hostile writes: `results.json` (everything) and `README.md` (the tables).
//!
//! Owns: the results' shape and their markdown. It must not run anything.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::cases::{bytes, Attacked, Scale};
use crate::scenario::output::Machine;

/// The bystander's calls over one phase.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    pub calls: usize,
    pub ok: usize,
    pub failed: usize,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: f64,
    /// The first few failures: when and why.
    pub failures: Vec<String>,
}

/// One gateway under one attack.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CaseResult {
    pub system: String,
    pub attack: String,
    /// `ok`, `skipped`, `failed`, `aborted` (RSS passed its baseline by 1 GiB) or
    /// `gateway exited`.
    pub status: String,
    pub reason: Option<String>,
    pub command: Option<String>,
    /// The gateway's RSS (VmRSS summed over its process tree) just before the attack, its
    /// highest sample (every 20 ms) during it, and 1 s after it ended.
    pub rss_before: Option<u64>,
    pub rss_peak: Option<u64>,
    pub rss_after: Option<u64>,
    /// The gateway tree's CPU time (utime + stime) during the attack, and the attack's length.
    pub cpu_s: Option<f64>,
    pub attack_s: Option<f64>,
    /// The whole machine's busy CPU during the bystander's window (the attack, and at least
    /// 2 s), as a share of all cores (everything:
    /// gateway, attacker, bystander, upstream, Redis and anything else running), and the
    /// 1-minute load average after it: where other work ran, the figures are noisier.
    pub machine_busy_pct: Option<f64>,
    pub loadavg: Option<f64>,
    pub attacker: Option<Attacked>,
    /// The bystander's calls just before the attack, and during it.
    pub unloaded: Option<Latency>,
    pub during: Option<Latency>,
    /// ringway's counters of hostile peers after the attack (non-zero ones).
    pub counters: BTreeMap<String, f64>,
}

impl CaseResult {
    pub fn new(system: &str, attack: &str) -> CaseResult {
        CaseResult {
            system: system.into(),
            attack: attack.into(),
            status: "ok".into(),
            ..Default::default()
        }
    }

    pub fn skipped(self, why: String) -> CaseResult {
        CaseResult {
            status: "skipped".into(),
            reason: Some(why),
            ..self
        }
    }

    pub fn failed(self, why: String) -> CaseResult {
        CaseResult {
            status: "failed".into(),
            reason: Some(why),
            ..self
        }
    }

    /// One line for the log.
    pub fn line(&self) -> String {
        if let Some(why) = &self.reason {
            if self.attacker.is_none() {
                return format!("{}: {why}", self.status);
            }
        }
        format!(
            "{}; RSS {} / {} / {}; CPU {}; bystander {}; attacker: {}",
            self.status,
            mib(self.rss_before),
            mib(self.rss_peak),
            mib(self.rss_after),
            self.cpu_s.map_or("-".into(), |c| format!("{c:.2} s")),
            self.during.as_ref().map_or("-".into(), latency_cell),
            self.attacker
                .as_ref()
                .map_or("-".into(), |a| a.summary.clone())
        )
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Results {
    pub date: String,
    pub commit: String,
    pub dirty: bool,
    pub command: String,
    pub machine: Machine,
    pub scale: Scale,
    pub bystander_every_ms: u64,
    pub unloaded_s: f64,
    /// (name, what the attacker does).
    pub attacks: Vec<(String, String)>,
    /// (name, how it runs).
    pub gateways: Vec<(String, String)>,
    pub cases: Vec<CaseResult>,
    pub total_s: f64,
}

fn mib(b: Option<u64>) -> String {
    b.map_or("-".into(), |b| {
        format!("{:.1}", b as f64 / (1 << 20) as f64)
    })
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.2}"))
}

fn latency_cell(l: &Latency) -> String {
    let mut s = format!("{} / {}", ms(l.p50_ms), ms(l.p99_ms));
    if l.failed > 0 {
        let _ = write!(s, " **{} of {} failed**", l.failed, l.calls);
    }
    s
}

fn escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

pub fn markdown(r: &Results) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# Hostile peers — {} ", r.date);
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "- produced by: `bash bench/hostile` (`{}`)",
        escape(&r.command)
    );
    let _ = writeln!(
        o,
        "- commit: `{}`{}",
        r.commit,
        if r.dirty {
            " (with uncommitted changes in the working tree)"
        } else {
            ""
        }
    );
    let m = &r.machine;
    let _ = writeln!(
        o,
        "- machine: {} cores, {}, kernel {}, {:.1} GiB",
        m.cores, m.cpu_model, m.kernel, m.memory_gib
    );
    let _ = writeln!(
        o,
        "- pinning: gateway on cores {:?}; attacker, bystander, echo upstream and Redis on cores {}",
        m.gateway_cpus, m.client_cpus
    );
    let versions: Vec<String> = m
        .versions
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    let _ = writeln!(o, "- versions: {}", versions.join("; "));
    let _ = writeln!(
        o,
        "- bystander: one unary call (64 B) every {} ms through the gateway on its own \
         connection, 5 s deadline each; unloaded figures from {} s just before each attack",
        r.bystander_every_ms, r.unloaded_s
    );
    let _ = writeln!(
        o,
        "- every gateway is started afresh for every attack; floods send for at most {} s, \
         then the attacker listens up to {} s for the GOAWAY and the close",
        r.scale.flood_s, r.scale.observe_s
    );
    let _ = writeln!(o, "- whole run: {:.0} s", r.total_s);
    let _ = writeln!(o);
    let _ = writeln!(o, "## Gateways");
    let _ = writeln!(o);
    for (name, how) in &r.gateways {
        let _ = writeln!(o, "- `{name}`: {how}");
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "## Attacks");
    let _ = writeln!(o);
    for (name, what) in &r.attacks {
        let _ = writeln!(o, "- `{name}`: {what}");
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "## Results");
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "RSS is VmRSS summed over the gateway's process tree (MiB): just before the attack, \
         the highest 20 ms sample during it, 1 s after it. CPU is the tree's utime+stime during \
         the attack; beside it the attack's length and the whole machine's busy share of all \
         cores over the bystander's window (gateway, attacker, bystander, upstream, Redis and \
         anything else: where it is high, other work competed). Bystander latency is p50 / p99 in ms, unloaded (just before) and during \
         the attack (its calls from the attack's start to its end, or to 2 s after its start \
         if it ended sooner); failures are in bold. ringway's counters are its `ringway_h2_*` and \
         related metrics after the attack (summed over shards; non-zero only)."
    );
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "| attack | system | status | RSS before / peak / after | CPU s (attack s; machine busy) | attacker saw | bystander unloaded | bystander during | ringway counted |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|");
    let mut order: Vec<&CaseResult> = r.cases.iter().collect();
    let attack_index = |a: &str| r.attacks.iter().position(|(n, _)| n == a).unwrap_or(0);
    let system_index = |s: &str| r.gateways.iter().position(|(n, _)| n == s).unwrap_or(0);
    order.sort_by_key(|c| (attack_index(&c.attack), system_index(&c.system)));
    for c in order {
        let status = match &c.reason {
            Some(why) if c.attacker.is_none() => format!("{}: {}", c.status, escape(why)),
            Some(why) => format!("{} ({})", c.status, escape(why)),
            None => c.status.clone(),
        };
        let counters: Vec<String> = c
            .counters
            .iter()
            .map(|(k, v)| {
                let k = k
                    .replace("ringway_", "")
                    .replace("_total", "")
                    .replace('"', "");
                format!("{k} {v}")
            })
            .collect();
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} / {} / {} | {} ({}) | {} | {} | {} | {} |",
            c.attack,
            c.system,
            status,
            mib(c.rss_before),
            mib(c.rss_peak),
            mib(c.rss_after),
            c.cpu_s.map_or("-".into(), |v| format!("{v:.2}")),
            match (c.attack_s, c.machine_busy_pct) {
                (Some(a), Some(b)) => format!("{a:.1} s; {b:.0}%"),
                (Some(a), None) => format!("{a:.1} s"),
                _ => "-".into(),
            },
            c.attacker
                .as_ref()
                .map_or("-".into(), |a| escape(&a.short())),
            c.unloaded.as_ref().map_or("-".into(), latency_cell),
            c.during.as_ref().map_or("-".into(), latency_cell),
            escape(&counters.join(", ")),
        );
    }
    let idle: Vec<&CaseResult> = r
        .cases
        .iter()
        .filter(|c| c.attack == "idle-connections" && c.attacker.is_some())
        .collect();
    if !idle.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(o, "## Idle connections");
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "| system | opened | RSS before | RSS with them open | RSS per connection | RSS 3 s after they closed |"
        );
        let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|");
        for c in idle {
            let e = &c.attacker.as_ref().expect("filtered").extra;
            let b = |k: &str| e.get(k).and_then(|v| v.as_u64()).map_or("-".into(), bytes);
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} |",
                c.system,
                e.get("opened").and_then(|v| v.as_u64()).unwrap_or(0),
                b("rss_before_bytes"),
                b("rss_open_bytes"),
                e.get("rss_per_connection_bytes")
                    .and_then(|v| v.as_f64())
                    .map_or("-".into(), |v| format!("{v:.0} B")),
                b("rss_after_close_bytes"),
            );
        }
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "## What each attacker saw, in full");
    let _ = writeln!(o);
    for c in &r.cases {
        if let Some(a) = &c.attacker {
            let _ = writeln!(o, "- {} / {}: {}", c.attack, c.system, escape(&a.summary));
        }
    }
    o
}

pub fn write(dir: &Path, r: &Results) -> Result<(), String> {
    let w = |name: &str, text: String| {
        std::fs::write(dir.join(name), text).map_err(|e| format!("write {name}: {e}"))
    };
    w(
        "results.json",
        serde_json::to_string_pretty(r).map_err(|e| e.to_string())? + "\n",
    )?;
    w("README.md", markdown(r))
}
