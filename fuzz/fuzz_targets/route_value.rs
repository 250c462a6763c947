//! Route values (`ringway::route::Route::parse`): what a Redis key holds, one or more
//! `[http://|https://]host:port` targets separated by commas, spaces around each allowed.
//!
//! Input: the value's bytes.
//!
//! Checks: parsing never panics; a rejected value comes with a reason. An accepted value is
//! UTF-8 and names 1..=MAX_TARGETS targets, one per comma-separated part; `len`, `targets` and
//! `target(i)` agree (and `target(len)` is empty); every target is trimmed, has no comma, and
//! is `host:port`, after an optional `http://` or `https://`, where the port is a number in 1..=65535 and the host is non-empty, either
//! `[...]` or without a colon, of letters, digits and `.-_:` only; and the targets joined with
//! commas parse again to the same targets.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use ringway::route::{Route, MAX_TARGETS};

/// Checks one accepted target.
fn check_target(t: &str) {
    assert!(!t.is_empty(), "empty target");
    assert_eq!(t.trim(), t, "target not trimmed");
    assert!(!t.contains(','), "target with a comma: {t:?}");
    let authority = t
        .strip_prefix("https://")
        .or_else(|| t.strip_prefix("http://"))
        .unwrap_or(t);
    let (host, port) = authority.rsplit_once(':').expect("a target has a colon");
    let port: u16 = port
        .parse()
        .unwrap_or_else(|e| panic!("port of {t:?}: {e}"));
    assert_ne!(port, 0, "port 0 in {t:?}");
    let host = match host.strip_prefix('[') {
        Some(inner) => inner.strip_suffix(']').expect("an unclosed ["),
        None => {
            assert!(!host.contains(':'), "a colon in an unbracketed host: {t:?}");
            host
        }
    };
    assert!(!host.is_empty(), "empty host in {t:?}");
    assert!(
        host.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-:".contains(&b)),
        "host with a forbidden byte: {t:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let route = match Route::parse(Bytes::copy_from_slice(data)) {
        Ok(route) => route,
        Err(e) => {
            assert!(!e.reason.is_empty(), "rejected without a reason");
            return;
        }
    };
    let text = std::str::from_utf8(data).expect("an accepted value is UTF-8");
    let n = route.len();
    assert!((1..=MAX_TARGETS).contains(&n), "{n} targets");
    assert!(!route.is_empty());
    assert_eq!(text.split(',').count(), n);
    let targets: Vec<&str> = route.targets().collect();
    assert_eq!(targets.len(), n);
    for (i, t) in targets.iter().enumerate() {
        assert_eq!(route.target(i), *t);
        check_target(t);
    }
    assert_eq!(route.target(n), "");

    let again = Route::parse(Bytes::from(targets.join(",")))
        .unwrap_or_else(|e| panic!("the targets of {text:?} joined again: {e:?}"));
    assert_eq!(again.targets().collect::<Vec<_>>(), targets);
});
