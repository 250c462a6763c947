//! SVG line charts for the concurrency sweep, written by hand (no plotting dependency, no
//! fonts to find): x is in-flight calls on a log2 axis, one line per system, the knee circled.
//!
//! Owns: turning series into an SVG document. It must not read results files.

use std::fmt::Write as _;

/// One line of a chart.
pub struct Series<'a> {
    pub name: &'a str,
    /// (in-flight calls, value); points with a non-positive value are left out on log axes.
    pub points: Vec<(f64, f64)>,
    /// The x value to mark as the knee.
    pub knee: Option<f64>,
}

const W: f64 = 860.0;
const H: f64 = 480.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 200.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
const COLORS: [&str; 6] = [
    "#444444", "#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd",
];

/// A chart of `series` with a log2 x axis; `log_y` puts y on a log10 axis.
pub fn svg(title: &str, y_label: &str, series: &[Series], log_y: bool) -> String {
    let xs: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .filter(|x| *x > 0.0)
        .collect();
    let ys: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .filter(|y| *y > 0.0)
        .collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="22" font-size="16" text-anchor="middle">{}</text>"#,
        (LEFT + W - RIGHT) / 2.0,
        esc(title)
    );
    if xs.is_empty() || ys.is_empty() {
        let _ = writeln!(
            out,
            r#"<text x="{LEFT}" y="{}">no data</text></svg>"#,
            H / 2.0
        );
        return out;
    }
    let (x0, x1) = (
        xs.iter().cloned().fold(f64::MAX, f64::min).log2(),
        xs.iter().cloned().fold(f64::MIN, f64::max).log2().max(1.0),
    );
    let ymax = ys.iter().cloned().fold(f64::MIN, f64::max);
    let ymin = ys.iter().cloned().fold(f64::MAX, f64::min);
    let (y0, y1) = if log_y {
        (
            ymin.log10().floor(),
            ymax.log10().ceil().max(ymin.log10().floor() + 1.0),
        )
    } else {
        (0.0, nice_ceiling(ymax))
    };
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let px = |x: f64| LEFT + (x.log2() - x0) / (x1 - x0).max(1e-9) * pw;
    let py = |y: f64| {
        let v = if log_y { y.log10() } else { y };
        TOP + ph - (v - y0) / (y1 - y0).max(1e-9) * ph
    };
    // Axes and grid.
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>"##
    );
    let mut x = 2f64.powf(x0.floor());
    while x.log2() <= x1 + 1e-9 {
        if x.log2() >= x0 - 1e-9 {
            let gx = px(x);
            let _ = writeln!(
                out,
                r##"<line x1="{gx:.1}" y1="{TOP}" x2="{gx:.1}" y2="{}" stroke="#eee"/><text x="{gx:.1}" y="{}" text-anchor="middle">{}</text>"##,
                TOP + ph,
                TOP + ph + 16.0,
                x
            );
        }
        x *= 2.0;
    }
    let ticks: Vec<f64> = if log_y {
        (y0 as i32..=y1 as i32).map(|e| 10f64.powi(e)).collect()
    } else {
        (0..=5).map(|i| y1 * i as f64 / 5.0).collect()
    };
    for t in ticks {
        let gy = py(t.max(1e-12));
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{gy:.1}" x2="{}" y2="{gy:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + pw,
            LEFT - 6.0,
            gy + 4.0,
            human(t)
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">calls in flight (log2)</text>"#,
        LEFT + pw / 2.0,
        H - 18.0
    );
    let _ = writeln!(
        out,
        r#"<text x="18" y="{}" text-anchor="middle" transform="rotate(-90 18 {})">{}</text>"#,
        TOP + ph / 2.0,
        TOP + ph / 2.0,
        esc(y_label)
    );
    // Lines, points, knees, legend.
    for (i, s) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .filter(|(x, y)| *x > 0.0 && (*y > 0.0 || !log_y))
            .map(|(x, y)| (px(*x), py(*y)))
            .collect();
        if !pts.is_empty() {
            let path: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
            let _ = writeln!(
                out,
                r#"<polyline points="{}" fill="none" stroke="{c}" stroke-width="2"/>"#,
                path.join(" ")
            );
            for (x, y) in &pts {
                let _ = writeln!(out, r#"<circle cx="{x:.1}" cy="{y:.1}" r="3" fill="{c}"/>"#);
            }
        }
        if let Some(k) = s.knee {
            if let Some((kx, ky)) = s.points.iter().find(|p| p.0 == k) {
                if *ky > 0.0 || !log_y {
                    let _ = writeln!(
                        out,
                        r#"<circle cx="{:.1}" cy="{:.1}" r="8" fill="none" stroke="{c}" stroke-width="2"/><text x="{:.1}" y="{:.1}" fill="{c}">knee {}</text>"#,
                        px(*kx),
                        py(*ky),
                        px(*kx) + 10.0,
                        py(*ky) - 10.0,
                        kx
                    );
                }
            }
        }
        let ly = TOP + 10.0 + i as f64 * 20.0;
        let lx = W - RIGHT + 16.0;
        let _ = writeln!(
            out,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{c}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
            lx + 22.0,
            lx + 28.0,
            ly + 4.0,
            esc(s.name)
        );
    }
    out.push_str("</svg>\n");
    out
}

fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let e = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * e >= v {
            return m * e;
        }
    }
    10.0 * e
}

fn human(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", trim(v / 1e6))
    } else if v >= 1e3 {
        format!("{}k", trim(v / 1e3))
    } else {
        trim(v)
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_lines_and_knee() {
        let s = Series {
            name: "a",
            points: vec![(1.0, 10.0), (2.0, 20.0), (4.0, 21.0)],
            knee: Some(2.0),
        };
        let out = svg("t", "calls/s", &[s], false);
        assert!(out.contains("<polyline") && out.contains("knee 2") && out.ends_with("</svg>\n"));
    }
}
