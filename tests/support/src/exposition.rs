//! A strict checker of the Prometheus text exposition format 0.0.4, for ringway's `/metrics`:
//! what a scraper needs of the text beyond the values tests read with
//! [`crate::admin::metric_sum`]. It owns the format's rules (HELP and TYPE per family, families
//! not interleaved, no duplicate series, counters named `_total`, whole histograms) and checks
//! them twice: by hand, line by line, and with the `prometheus-parse` crate, whose reading must
//! agree sample for sample. It knows nothing of which metrics ringway should have.

use std::collections::{HashMap, HashSet};

use crate::admin::{has_sample, metric_sum};

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
/// histograms complete (`_bucket` up to `+Inf`, `_sum`, `_count`). Panics, naming the line and
/// the rule, at the first thing wrong.
pub fn check_exposition(text: &str) {
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

/// Checks the label-less histogram `name` in `text`: its buckets rise with `le` and end at
/// `+Inf`, `+Inf` equals `_count`, and `_sum` is there. Returns its `_count`; panics otherwise.
pub fn check_histogram(text: &str, name: &str) -> f64 {
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

#[cfg(test)]
mod tests {
    use super::{check_exposition, check_histogram, parse_sample_line};

    /// Well-formed text with a counter and a histogram; each test below breaks one rule of it.
    const GOOD: &str = "# HELP a_total A.\n# TYPE a_total counter\na_total{shard=\"0\"} 1\n\
                        # HELP h H.\n# TYPE h histogram\nh_bucket{le=\"0.1\"} 1\n\
                        h_bucket{le=\"+Inf\"} 2\nh_sum 0.3\nh_count 2\n";

    /// `GOOD` with `from` replaced by `to`, which must change it.
    fn broken(from: &str, to: &str) -> String {
        assert!(GOOD.contains(from), "{from:?} is not in the good text");
        GOOD.replace(from, to)
    }

    /// The check must panic on `text`, which breaks the rule `what`.
    fn assert_rejected(what: &str, text: &str) {
        let caught = std::panic::catch_unwind(|| check_exposition(text));
        assert!(caught.is_err(), "the check let through: {what}\n{text}");
    }

    #[test]
    fn accepts_well_formed_text() {
        check_exposition(GOOD);
        assert_eq!(check_histogram(GOOD, "h"), 2.0);
    }

    #[test]
    fn rejects_a_family_without_help() {
        assert_rejected("no HELP", &broken("# HELP a_total A.\n", ""));
    }

    #[test]
    fn rejects_a_family_without_type() {
        assert_rejected("no TYPE", &broken("# TYPE a_total counter\n", ""));
    }

    #[test]
    fn rejects_a_value_that_is_not_a_float() {
        let text = broken("a_total{shard=\"0\"} 1", "a_total{shard=\"0\"} one");
        assert_rejected("bad value", &text);
    }

    #[test]
    fn rejects_an_unquoted_label_value() {
        assert_rejected("bad label", &broken("shard=\"0\"", "shard=0"));
    }

    #[test]
    fn rejects_a_duplicate_series() {
        let text = broken("} 1\n", "} 1\na_total{shard=\"0\"} 2\n");
        assert_rejected("duplicate series", &text);
    }

    #[test]
    fn rejects_a_histogram_without_an_inf_bucket() {
        assert_rejected("no +Inf", &broken("h_bucket{le=\"+Inf\"} 2\n", ""));
    }

    #[test]
    fn rejects_falling_buckets() {
        assert_rejected("falling buckets", &broken("le=\"0.1\"} 1", "le=\"0.1\"} 3"));
    }

    #[test]
    fn rejects_an_inf_bucket_unequal_to_count() {
        assert_rejected("+Inf vs count", &broken("h_count 2", "h_count 5"));
    }

    #[test]
    fn rejects_a_histogram_without_sum() {
        assert_rejected("no _sum", &broken("h_sum 0.3\n", ""));
    }

    #[test]
    fn rejects_interleaved_families() {
        assert_rejected("interleaved", &format!("{GOOD}a_total{{shard=\"1\"}} 1\n"));
    }

    #[test]
    fn rejects_a_counter_not_named_total() {
        assert_rejected("counter without _total", &GOOD.replace("a_total", "a"));
    }

    #[test]
    fn sample_lines_unescape_label_values() {
        let (name, labels, value) =
            parse_sample_line(r#"m{a="x\"y",b="back\\slash",c="new\nline"} 2.5"#).unwrap();
        assert_eq!((name.as_str(), value.as_str()), ("m", "2.5"));
        let values: Vec<&str> = labels.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(values, ["x\"y", "back\\slash", "new\nline"]);
        assert!(
            parse_sample_line(r#"m{a="\t"} 1"#).is_err(),
            "unknown escape"
        );
        assert!(parse_sample_line("m 1 1700000000").is_err(), "a timestamp");
        assert!(
            parse_sample_line("1m 1").is_err(),
            "a name starting with a digit"
        );
    }
}
