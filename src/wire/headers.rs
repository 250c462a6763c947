//! Header lists: [`Fields`], a decoded header block, and the checks a received one must pass
//! to be well formed (RFC 9113 §8.2, §8.3). No connection state here.

use std::cell::RefCell;

use bytes::Bytes;

use super::hpack::Field;

/// A decoded header block: pseudo-header fields first, in the order received.
///
/// The vector is returned to a per-thread pool when dropped, so a warm shard decodes header
/// blocks without allocating.
pub struct Fields {
    pub(super) list: Vec<Field>,
}

thread_local! {
    static SPARE_FIELDS: RefCell<Vec<Vec<Field>>> = const { RefCell::new(Vec::new()) };
}
const SPARE_FIELDS_MAX: usize = 4096;

impl Fields {
    pub fn new() -> Fields {
        let list = SPARE_FIELDS
            .with(|s| s.borrow_mut().pop())
            .unwrap_or_else(|| Vec::with_capacity(16));
        Fields { list }
    }

    pub fn push(&mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) {
        self.list.push(Field {
            name: name.into(),
            value: value.into(),
            sensitive: false,
            checked: false,
        });
    }

    /// The first field called `name`.
    pub fn get(&self, name: &[u8]) -> Option<&Bytes> {
        self.list
            .iter()
            .find(|f| f.name.as_ref() == name)
            .map(|f| &f.value)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Field> {
        self.list.iter()
    }
}

impl Default for Fields {
    fn default() -> Fields {
        Fields::new()
    }
}

impl std::fmt::Debug for Fields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut list = f.debug_map();
        for field in &self.list {
            list.entry(
                &String::from_utf8_lossy(&field.name),
                &String::from_utf8_lossy(&field.value),
            );
        }
        list.finish()
    }
}

impl Drop for Fields {
    fn drop(&mut self) {
        let mut list = std::mem::take(&mut self.list);
        if list.capacity() == 0 {
            return;
        }
        list.clear();
        let _ = SPARE_FIELDS.try_with(|s| {
            let mut s = s.borrow_mut();
            if s.len() < SPARE_FIELDS_MAX {
                s.push(list);
            }
        });
    }
}

/// Why a received header block is malformed (RFC 9113 §8.2, §8.3): a stream error. When it is
/// well formed: its `content-length`, if it has one (§8.1.1).
pub(super) fn check_fields(fields: &Fields, kind: Block) -> Result<Option<u64>, &'static str> {
    let mut regular = false;
    let mut content_length = None;
    let (mut method, mut scheme, mut path, mut status) = (false, false, false, false);
    for f in fields.iter() {
        let name = f.name.as_ref();
        if !f.checked && has_nul_cr_lf(&f.value) {
            return Err("field value with NUL, CR or LF");
        }
        if let Some(pseudo) = name.strip_prefix(b":") {
            if regular {
                return Err("pseudo-header after a regular field");
            }
            let seen = match (kind, pseudo) {
                (Block::Request, b"method") => &mut method,
                (Block::Request, b"scheme") => &mut scheme,
                (Block::Request, b"path") => &mut path,
                // :authority may repeat the Host; one is enough to check.
                (Block::Request, b"authority") => continue,
                (Block::Response, b"status") => &mut status,
                _ => return Err("unknown or misplaced pseudo-header"),
            };
            if std::mem::replace(seen, true) {
                return Err("duplicate pseudo-header");
            }
            continue;
        }
        regular = true;
        if !f.checked && !valid_name(name) {
            return Err("field name empty, not lowercase, or with a forbidden byte");
        }
        // Only names of these lengths need a closer look (connection-specific fields, te,
        // content-length): one compare for most fields.
        if !matches!(name.len(), 2 | 7 | 10 | 14 | 16 | 17) {
            continue;
        }
        match name {
            b"connection" | b"keep-alive" | b"proxy-connection" | b"transfer-encoding"
            | b"upgrade" => return Err("connection-specific field"),
            b"te" if f.value.as_ref() != b"trailers" => return Err("te other than trailers"),
            b"content-length" => {
                let n = parse_length(&f.value).ok_or("content-length not a number")?;
                if content_length.is_some_and(|c| c != n) {
                    return Err("conflicting content-length values");
                }
                content_length = Some(n);
            }
            _ => {}
        }
    }
    match kind {
        Block::Request if !(method && scheme && path) => Err("missing :method, :scheme or :path"),
        Block::Request if fields.get(b":path").is_some_and(|p| p.is_empty()) => Err("empty :path"),
        Block::Response if !status => Err("missing :status"),
        _ => Ok(content_length),
    }
}

/// A `content-length` value: decimal digits only, at most 18 of them.
fn parse_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0, |n, &d| n * 10 + (d - b'0') as u64))
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// `bytes` (at most 8) as one word that holds each of them, and `pad` where there are fewer
/// than eight: overlapping loads, no copy (a padded copy called `memcpy` per field).
#[inline]
fn word(bytes: &[u8], pad: u8) -> u64 {
    let n = bytes.len();
    let pads = ONES * pad as u64;
    let at = |i: usize, width: usize| -> u64 {
        let mut w = [0u8; 8];
        w[..width].copy_from_slice(&bytes[i..i + width]);
        u64::from_le_bytes(w)
    };
    match n {
        8.. => at(0, 8),
        4..=7 => at(0, 4) | at(n - 4, 4) << 32,
        2..=3 => at(0, 2) | at(n - 2, 2) << 16 | pads << 32,
        1 => bytes[0] as u64 | pads << 8,
        0 => pads,
    }
}

/// Whether a field name is non-empty and holds only the bytes RFC 9113 §8.2.1 allows: visible
/// ASCII (0x21–0x7e) except uppercase. Eight bytes at a time: a byte-by-byte table lookup
/// was 530 instructions per proxied call of `check_fields`' 1,414 (callgrind, `bench/profile
/// --cache`, c811a4d).
#[inline]
pub(super) fn valid_name(name: &[u8]) -> bool {
    // With every high bit clear, adding 0x80 - n to each byte carries into its own high bit
    // exactly when the byte is >= n, and never into the next byte: four exact comparisons.
    let bad = |x: u64| {
        let at_least = |n: u64| x.wrapping_add(ONES * (0x80 - n)) & HIGHS;
        let upper = at_least(0x41) & !at_least(0x5b);
        (x & HIGHS) | (!at_least(0x21) & HIGHS) | at_least(0x7f) | upper != 0
    };
    let mut chunks = name.chunks_exact(8);
    for chunk in &mut chunks {
        if bad(word(chunk, b'a')) {
            return false;
        }
    }
    !name.is_empty() && !bad(word(chunks.remainder(), b'a'))
}

/// Whether `v` holds a NUL, CR or LF: eight bytes at a time.
#[inline]
pub(super) fn has_nul_cr_lf(v: &[u8]) -> bool {
    // Whether some byte is below `n` (exact as to whether, for n <= 0x80).
    let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGHS;
    // NUL, LF and CR are all below 0x0e, which a value seldom holds: one test for most words.
    let hit = |x: u64| {
        below(x, 0x0e) != 0
            && below(x, 1) | below(x ^ (ONES * 0x0d), 1) | below(x ^ (ONES * 0x0a), 1) != 0
    };
    let mut chunks = v.chunks_exact(8);
    for chunk in &mut chunks {
        if hit(word(chunk, b' ')) {
            return true;
        }
    }
    hit(word(chunks.remainder(), b' '))
}

/// Which header block of a stream is checked.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Block {
    Request,
    Response,
    Trailers,
}

#[cfg(test)]
mod tests {
    use super::{check_fields, has_nul_cr_lf, valid_name, Block, Fields};
    use crate::wire::hpack::Decoder;
    use bytes::Bytes;

    fn decode(dec: &mut Decoder, block: &[u8]) -> Fields {
        let mut fields = Fields::new();
        dec.decode(&Bytes::copy_from_slice(block), |f| fields.list.push(f))
            .expect("a well-formed block");
        fields
    }

    /// A field that fails the checks when it enters the dynamic table fails them again each
    /// time it is sent by index: only entries that passed are marked checked.
    #[test]
    fn table_entries_are_checked_once_and_bad_ones_always() {
        for (bad, why) in [
            (
                &[0x40, 3, b'x', b'-', b'a', 3, b'a', 0, b'b'][..],
                "NUL in the value",
            ),
            (
                &[0x40, 3, b'x', b'-', b'a', 3, b'a', b'\r', b'b'][..],
                "CR in the value",
            ),
            (&[0x40, 3, b'X', b'-', b'a', 1, b'v'][..], "uppercase name"),
            (
                &[0x40, 3, b'x', b' ', b'a', 1, b'v'][..],
                "space in the name",
            ),
        ] {
            let mut dec = Decoder::new(4096);
            let first = decode(&mut dec, bad);
            assert!(check_fields(&first, Block::Trailers).is_err(), "{why}");
            // Index 62: the newest dynamic table entry, the same field.
            let again = decode(&mut dec, &[0xbe]);
            assert_eq!(again.list[0].name, first.list[0].name, "{why}");
            assert!(!again.list[0].checked, "{why}");
            assert!(check_fields(&again, Block::Trailers).is_err(), "{why}");
        }
        let mut dec = Decoder::new(4096);
        let good = decode(&mut dec, &[0x40, 3, b'x', b'-', b'b', 1, b'v']);
        assert!(good.list[0].checked);
        assert_eq!(check_fields(&good, Block::Trailers), Ok(None));
        let again = decode(&mut dec, &[0xbe]);
        assert!(again.list[0].checked);
        assert_eq!(check_fields(&again, Block::Trailers), Ok(None));
        // A literal without indexing is never marked, and is checked every time.
        let literal = decode(&mut dec, &[0x00, 3, b'x', b'-', b'c', 3, b'a', b'\n', b'b']);
        assert!(!literal.list[0].checked);
        assert!(check_fields(&literal, Block::Trailers).is_err());
    }

    fn name_reference(name: &[u8]) -> bool {
        !name.is_empty()
            && name
                .iter()
                .all(|&b| (0x21..0x7f).contains(&b) && !b.is_ascii_uppercase())
    }

    /// Every byte value at every position of names and values of lengths 1 to 20, against
    /// the byte-by-byte definitions.
    #[test]
    fn word_at_a_time_checks_match_byte_by_byte() {
        assert!(!valid_name(b""));
        for len in 1..=20 {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut name = vec![b'x'; len];
                    name[at] = b;
                    assert_eq!(valid_name(&name), name_reference(&name), "{name:?}");
                    let value = name;
                    let expected = value.iter().any(|&c| c == 0 || c == b'\r' || c == b'\n');
                    assert_eq!(has_nul_cr_lf(&value), expected, "{value:?}");
                }
            }
        }
    }
}
