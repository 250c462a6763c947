//! Interleaved rounds (`--rounds N`): every system is started at once, then the same load runs
//! on each in turn, N times, the order rotated by one each round. A ratio between two systems
//! is then taken between windows seconds apart, not minutes: this VM's speed swings by up to
//! 2× within an hour, and in a run of one system after another that swing lands on one side
//! of a ratio only. Each round's ratio is the system's CPU per call over the reference's in
//! the same round; the report gives every round's and their median.
//!
//! Owns the rounds' order, their figures and their report; starting, loading and measuring a
//! system are `systems.rs` and `measure.rs`, as in the ordinary run.

use std::fmt::Write as _;

use serde::Serialize;

use super::measure::Measurement;

/// One system's figures in one round.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    pub round: usize,
    pub system: String,
    pub calls_per_s: Option<f64>,
    pub gateway_us_per_call: Option<f64>,
    pub gateway_kernel_us_per_call: Option<f64>,
    pub failed: Option<u64>,
    /// The machine's CPU used by processes outside the benchmark during the window, %.
    pub other_busy_pct: f64,
    pub error: Option<String>,
}

impl Window {
    pub fn new(round: usize, system: &str, m: &Measurement) -> Window {
        Window {
            round,
            system: system.into(),
            calls_per_s: m.loadgen.as_ref().map(|s| s.throughput_rps),
            gateway_us_per_call: m.cpu.gateway_us_per_call,
            gateway_kernel_us_per_call: m.cpu.gateway_kernel_us_per_call,
            failed: m.loadgen.as_ref().map(|s| s.calls - s.ok),
            other_busy_pct: m.cpu.other_busy_pct,
            error: m.error.clone(),
        }
    }

    /// CPU per call, if the window measured one and no call failed.
    fn cpu(&self) -> Option<f64> {
        self.gateway_us_per_call
            .filter(|_| self.error.is_none() && self.failed == Some(0))
    }
}

/// What `--rounds` measured.
#[derive(Debug, Clone, Serialize)]
pub struct Rounds {
    pub rounds: usize,
    /// The system every ratio is taken against.
    pub reference: String,
    /// The systems in the first round's order (each later round starts one further on).
    pub systems: Vec<String>,
    /// Systems that did not start or answer the probe, and why.
    pub not_run: Vec<(String, String)>,
    pub windows: Vec<Window>,
}

/// The systems of round `round` (0-based): `systems` rotated left by `round`.
pub fn order<T: Copy>(systems: &[T], round: usize) -> Vec<T> {
    if systems.is_empty() {
        return Vec::new();
    }
    let k = round % systems.len();
    systems[k..].iter().chain(&systems[..k]).copied().collect()
}

/// A figure with `digits` decimals, or a dash for none.
fn figure(v: Option<f64>, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$}"))
        .unwrap_or_else(|| "—".into())
}

/// Ratios to two decimals, space-separated.
fn joined(ratios: &[f64]) -> String {
    ratios
        .iter()
        .map(|x| format!("{x:.2}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The median of `values` (the mean of the middle two for an even count); `None` if empty.
pub fn median(values: &[f64]) -> Option<f64> {
    quantile(values, 0.5)
}

/// The `q` quantile of `values` (0 ≤ q ≤ 1), interpolating linearly between the two nearest
/// ranks; NaNs are left out; `None` if nothing is left.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let at = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
    Some(v[lo] + (v[hi] - v[lo]) * (at - lo as f64))
}

impl Rounds {
    fn window(&self, round: usize, system: &str) -> Option<&Window> {
        self.windows
            .iter()
            .find(|w| w.round == round && w.system == system)
    }

    /// Per round, `system`'s CPU per call over the reference's; rounds where either has no
    /// figure are left out.
    pub fn ratios(&self, system: &str) -> Vec<(usize, f64)> {
        self.pair_ratios(system, &self.reference)
    }

    /// Per round, `a`'s CPU per call over `b`'s.
    fn pair_ratios(&self, a: &str, b: &str) -> Vec<(usize, f64)> {
        (0..self.rounds)
            .filter_map(|r| {
                let x = self.window(r, a)?.cpu()?;
                let y = self.window(r, b)?.cpu()?;
                (y > 0.0).then_some((r, x / y))
            })
            .collect()
    }

    /// The report's section.
    pub fn markdown(&self, o: &mut String) {
        let _ = writeln!(
            o,
            "## Interleaved rounds: {} rounds, ratios against `{}`\n",
            self.rounds, self.reference
        );
        let _ = writeln!(
            o,
            "Every system was started at once; each round ran the same load on each in turn (the order rotated by one each round), so the two sides of a ratio were measured seconds apart. CPU per call is the gateway's utime+stime from /proc over the window (warm-up included) divided by the calls made. A window with a failed call or an error has no figure.\n"
        );
        for (name, why) in &self.not_run {
            let _ = writeln!(o, "- `{name}` did not run: {why}");
        }
        if !self.not_run.is_empty() {
            let _ = writeln!(o);
        }
        let _ = writeln!(
            o,
            "| system | median gateway µs/call | min – max | median kernel µs/call | median calls/s | median ratio to {} | middle half of the ratios | ratios by round |",
            self.reference
        );
        let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|---:|---|");
        for system in &self.systems {
            let mine: Vec<&Window> = self
                .windows
                .iter()
                .filter(|w| &w.system == system)
                .collect();
            let cpu: Vec<f64> = mine.iter().filter_map(|w| w.cpu()).collect();
            let kernel: Vec<f64> = mine
                .iter()
                .filter(|w| w.cpu().is_some())
                .filter_map(|w| w.gateway_kernel_us_per_call)
                .collect();
            let rate: Vec<f64> = mine.iter().filter_map(|w| w.calls_per_s).collect();
            let r: Vec<f64> = self.ratios(system).iter().map(|&(_, x)| x).collect();
            let lo = cpu.iter().copied().reduce(f64::min);
            let hi = cpu.iter().copied().reduce(f64::max);
            let (ratio, middle, by_round) = if system == &self.reference {
                ("(reference)".into(), String::new(), String::new())
            } else {
                (
                    figure(median(&r), 3),
                    format!(
                        "{} – {}",
                        figure(quantile(&r, 0.25), 2),
                        figure(quantile(&r, 0.75), 2)
                    ),
                    joined(&r),
                )
            };
            let _ = writeln!(
                o,
                "| {system} | {} | {} – {} | {} | {} | {ratio} | {middle} | {by_round} |",
                figure(median(&cpu), 2),
                figure(lo, 2),
                figure(hi, 2),
                figure(median(&kernel), 2),
                figure(median(&rate), 0),
            );
        }
        // `--rounds-ringway-b`: each `<system>@b` against its `<system>`, round by round.
        let twins: Vec<(&str, &str)> = self
            .systems
            .iter()
            .filter_map(|b| Some((b.strip_suffix("@b")?, b.as_str())))
            .filter(|(a, _)| self.systems.iter().any(|s| s == a))
            .collect();
        if !twins.is_empty() {
            let _ = writeln!(
                o,
                "\n### The B binary against the A binary (`--rounds-ringway-b`)\n\n| systems | median CPU per call, B / A | middle half | rounds B < A | ratios by round |\n|---|---:|---:|---:|---|"
            );
            for (a, b) in twins {
                let r: Vec<f64> = self.pair_ratios(b, a).iter().map(|&(_, x)| x).collect();
                let _ = writeln!(
                    o,
                    "| {b} / {a} | {} | {} – {} | {} of {} | {} |",
                    figure(median(&r), 3),
                    figure(quantile(&r, 0.25), 3),
                    figure(quantile(&r, 0.75), 3),
                    r.iter().filter(|&&x| x < 1.0).count(),
                    r.len(),
                    joined(&r)
                );
            }
        }
        let _ = writeln!(o, "\n### Every window\n");
        let _ = writeln!(
            o,
            "| round | system | calls/s | gateway µs/call | kernel µs/call | failed | other procs' CPU % | error |"
        );
        let _ = writeln!(o, "|---:|---|---:|---:|---:|---:|---:|---|");
        for w in &self.windows {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {:.1} | {} |",
                w.round + 1,
                w.system,
                w.calls_per_s.map(|x| format!("{x:.0}")).unwrap_or_default(),
                w.gateway_us_per_call
                    .map(|x| format!("{x:.2}"))
                    .unwrap_or_default(),
                w.gateway_kernel_us_per_call
                    .map(|x| format!("{x:.2}"))
                    .unwrap_or_default(),
                w.failed.map(|x| x.to_string()).unwrap_or_default(),
                w.other_busy_pct,
                w.error.as_deref().unwrap_or("")
            );
        }
        let _ = writeln!(o);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(round: usize, system: &str, cpu: f64) -> Window {
        Window {
            round,
            system: system.into(),
            calls_per_s: Some(1000.0),
            gateway_us_per_call: Some(cpu),
            gateway_kernel_us_per_call: Some(cpu / 2.0),
            failed: Some(0),
            other_busy_pct: 0.0,
            error: None,
        }
    }

    #[test]
    fn rounds_rotate_the_order() {
        let s = ["a", "b", "c"];
        assert_eq!(order(&s, 0), ["a", "b", "c"]);
        assert_eq!(order(&s, 1), ["b", "c", "a"]);
        assert_eq!(order(&s, 2), ["c", "a", "b"]);
        assert_eq!(order(&s, 3), ["a", "b", "c"]);
        assert!(order::<u8>(&[], 1).is_empty());
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, 1.0]), Some(1.0));
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.25), Some(2.0));
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.25), Some(1.75));
        assert_eq!(quantile(&[7.0], 0.75), Some(7.0));
    }

    #[test]
    fn ratios_pair_windows_of_the_same_round_and_skip_failed_ones() {
        let mut failed = window(2, "ref", 10.0);
        failed.failed = Some(3);
        let r = Rounds {
            rounds: 3,
            reference: "ref".into(),
            systems: vec!["gw".into(), "ref".into()],
            not_run: Vec::new(),
            windows: vec![
                window(0, "gw", 5.0),
                window(0, "ref", 10.0),
                // A slow round for both: the ratio holds.
                window(1, "ref", 20.0),
                window(1, "gw", 8.0),
                window(2, "gw", 5.0),
                failed,
            ],
        };
        assert_eq!(r.ratios("gw"), vec![(0, 0.5), (1, 0.4)]);
        let mut o = String::new();
        r.markdown(&mut o);
        assert!(o.contains("| gw | 5.00 | 5.00 – 8.00 |"), "{o}");
        assert!(o.contains("| 0.450 | 0.43 – 0.47 | 0.50 0.40 |"), "{o}");
        assert!(!o.contains("B binary"), "{o}");
    }

    #[test]
    fn a_b_twin_is_compared_with_its_a_round_by_round() {
        let r = Rounds {
            rounds: 2,
            reference: "ref".into(),
            systems: vec!["gw".into(), "gw@b".into(), "ref".into()],
            not_run: Vec::new(),
            windows: vec![
                window(0, "gw", 5.0),
                window(0, "gw@b", 4.5),
                window(0, "ref", 10.0),
                window(1, "gw", 8.0),
                window(1, "gw@b", 8.8),
                window(1, "ref", 20.0),
            ],
        };
        let mut o = String::new();
        r.markdown(&mut o);
        assert!(
            o.contains("| gw@b / gw | 1.000 | 0.950 – 1.050 | 1 of 2 | 0.90 1.10 |"),
            "{o}"
        );
    }
}
