//! The one HTTP/1.1 client of ringway's admin port, and a reader for the Prometheus text it
//! serves. Blocking std sockets: one request, read to EOF (the admin port closes every
//! connection). The format's own rules are [`crate::exposition`]'s; this module only reads
//! values.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long a request waits for the TCP connect.
const CONNECT_WITHIN: Duration = Duration::from_secs(5);
/// How long a request waits for the whole response.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// One admin response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// The status line and the header fields, without the blank line.
    pub head: String,
    pub body: String,
}

/// Sends `METHOD path` to the admin port at `addr`. An error when the port does not answer
/// (the gateway may be exiting) or the answer is not HTTP.
pub fn fetch(addr: SocketAddr, method: &str, path: &str) -> io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, CONNECT_WITHIN)?;
    stream.set_read_timeout(Some(ANSWER_WITHIN))?;
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
    Ok(Response {
        status,
        head: head.to_string(),
        body: body.to_string(),
    })
}

/// As [`fetch`], for a gateway that must answer: (status, body). Panics on any error.
pub fn request(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let response = fetch(addr, method, path)
        .unwrap_or_else(|e| panic!("admin {method} {path} at {addr}: {e}"));
    (response.status, response.body)
}

/// The sum over all series of metric `name` whose labels include every `key="value"` in
/// `labels` (exact sample name: `name{...} value`).
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, label_text) = match series.split_once('{') {
                Some((m, rest)) => (m, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            let matches = labels
                .iter()
                .all(|(k, v)| label_text.split(',').any(|kv| kv == format!("{k}=\"{v}\"")));
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// Whether `text` has at least one sample of exactly `name`.
pub fn has_sample(text: &str, name: &str) -> bool {
    text.lines().filter(|l| !l.starts_with('#')).any(|l| {
        l.strip_prefix(name)
            .is_some_and(|rest| rest.starts_with([' ', '{']))
    })
}

#[cfg(test)]
mod tests {
    use super::{has_sample, metric_sum};

    const TEXT: &str = "# HELP a_total A.\n# TYPE a_total counter\n\
                        a_total{shard=\"0\",kind=\"x\"} 2\na_total{shard=\"1\",kind=\"y\"} 3\n\
                        a_total_extra 7\nb 1.5\n";

    #[test]
    fn metric_sum_adds_the_series_with_the_labels_asked_for() {
        assert_eq!(metric_sum(TEXT, "a_total", &[]), 5.0);
        assert_eq!(metric_sum(TEXT, "a_total", &[("kind", "y")]), 3.0);
        assert_eq!(metric_sum(TEXT, "a_total", &[("kind", "z")]), 0.0);
        assert_eq!(metric_sum(TEXT, "b", &[]), 1.5);
    }

    #[test]
    fn has_sample_matches_the_exact_name_only() {
        assert!(has_sample(TEXT, "a_total"));
        assert!(has_sample(TEXT, "b"));
        assert!(!has_sample(TEXT, "a"));
        assert!(!has_sample(TEXT, "a_total_ex"));
    }
}
