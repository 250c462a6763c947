//! HPACK header compression (RFC 7541) for the HTTP/2 relay.
//!
//! [`Decoder`] implements the full decoding side: static and dynamic tables,
//! every field representation, table size updates and Huffman-coded strings.
//! It is built for the per-call hot path: plain string literals are handed out
//! as zero-copy slices of the header block, table hits as reference-counted
//! clones, and Huffman-coded strings as slices of a per-decoder arena (one
//! allocation per [`ARENA_SIZE`] bytes of decoded text at most, none while
//! the previous arena's slices have all been dropped).
//!
//! [`Encoder`] never inserts into its dynamic table. It uses the static table
//! for exact and name matches and otherwise writes raw (non-Huffman) literals
//! "without indexing", so it needs no state beyond whether it has already
//! announced its empty table to the peer.

use std::collections::VecDeque;
use std::fmt;

use bytes::{Bytes, BytesMut};

use super::huffman;

/// One header field. `name` is as received (HTTP/2 requires lowercase; the
/// decoder does not check case).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: Bytes,
    pub value: Bytes,
    /// Received as a never-indexed literal (§6.2.3): a relay must send it on the same way.
    pub sensitive: bool,
}

/// Why a header block could not be decoded (the caller answers with a
/// connection error COMPRESSION_ERROR).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HpackError {
    /// The block ended in the middle of a representation.
    Truncated,
    /// An integer needed more than four continuation bytes (about 2^28).
    IntegerOverflow,
    /// An index of 0, or beyond the static and dynamic tables.
    BadIndex(usize),
    /// An invalid Huffman-coded string.
    BadHuffman,
    /// A dynamic table size update above our advertised maximum.
    TableSizeUpdateTooLarge(usize),
    /// A dynamic table size update after the block's first field (§4.2).
    TableSizeUpdateAfterField,
}

impl fmt::Display for HpackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            HpackError::Truncated => f.write_str("truncated header block"),
            HpackError::IntegerOverflow => f.write_str("integer too large"),
            HpackError::BadIndex(i) => write!(f, "invalid table index {i}"),
            HpackError::BadHuffman => f.write_str("invalid Huffman-coded string"),
            HpackError::TableSizeUpdateTooLarge(n) => {
                write!(
                    f,
                    "dynamic table size update to {n} exceeds the advertised maximum"
                )
            }
            HpackError::TableSizeUpdateAfterField => {
                f.write_str("dynamic table size update after a header field")
            }
        }
    }
}

impl std::error::Error for HpackError {}

/// Per-entry overhead in the dynamic table size (§4.1).
const ENTRY_OVERHEAD: usize = 32;

/// RFC 7541 Appendix A. Index `i` of the spec is `STATIC_TABLE[i - 1]`.
static STATIC_TABLE: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

const STATIC_LEN: usize = STATIC_TABLE.len();

/// Decodes an integer with an `N`-bit prefix (§5.1) starting at `buf[*pos]`,
/// which the caller has checked exists.
#[inline]
fn decode_int<const N: u8>(buf: &[u8], pos: &mut usize) -> Result<usize, HpackError> {
    let mask = ((1u16 << N) - 1) as u8;
    let first = buf[*pos] & mask;
    *pos += 1;
    if first < mask {
        return Ok(first as usize);
    }
    decode_int_tail(buf, pos, mask as usize)
}

/// The continuation bytes of a multi-byte integer. At most four are
/// accepted (values up to 2^28 + prefix), which keeps the arithmetic far from
/// overflow on any target; more is [`HpackError::IntegerOverflow`].
#[cold]
fn decode_int_tail(buf: &[u8], pos: &mut usize, mut value: usize) -> Result<usize, HpackError> {
    let mut shift = 0;
    loop {
        let b = *buf.get(*pos).ok_or(HpackError::Truncated)?;
        *pos += 1;
        value += ((b & 0x7f) as usize) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
        shift += 7;
        if shift >= 28 {
            return Err(HpackError::IntegerOverflow);
        }
    }
}

/// Capacity of the arena Huffman-decoded strings are written to.
const ARENA_SIZE: usize = 8 * 1024;

/// A decoded string, and whether it is a slice of a buffer the dynamic table
/// must not keep alive (the header block, or the Huffman arena).
struct Str {
    bytes: Bytes,
    borrowed: bool,
}

/// Reads a string literal (§5.2) at `buf[*pos]`. `buf` is `&block[..]`;
/// Huffman-coded strings are decoded into `arena`.
#[inline]
fn read_string(
    block: &Bytes,
    buf: &[u8],
    pos: &mut usize,
    arena: &mut BytesMut,
) -> Result<Str, HpackError> {
    let first = *buf.get(*pos).ok_or(HpackError::Truncated)?;
    let len = decode_int::<7>(buf, pos)?;
    let start = *pos;
    let end = match start.checked_add(len) {
        Some(end) if end <= buf.len() => end,
        _ => return Err(HpackError::Truncated),
    };
    *pos = end;
    if first & 0x80 == 0 {
        Ok(Str {
            bytes: block.slice(start..end),
            borrowed: true,
        })
    } else if len == 0 {
        Ok(Str {
            bytes: Bytes::new(),
            borrowed: false,
        })
    } else {
        // `huffman::decode` needs this much spare room to never reallocate.
        let needed = len * 8 / 5 + 1;
        if !arena.try_reclaim(needed) {
            // Either the arena is full while some of its slices are still
            // alive, or the string is larger than an arena: start a new one.
            *arena = BytesMut::with_capacity(needed.max(ARENA_SIZE));
        }
        huffman::decode(&buf[start..end], arena).map_err(|()| HpackError::BadHuffman)?;
        // The first split turns the arena into a shared buffer (one small
        // allocation per arena); later splits and freezes are refcounts.
        Ok(Str {
            bytes: arena.split().freeze(),
            borrowed: true,
        })
    }
}

/// A string for the dynamic table: a copy if it borrows the header block or
/// the Huffman arena, else (static, or already in the table) shared.
fn detach(s: &Str) -> Bytes {
    if s.borrowed {
        Bytes::copy_from_slice(&s.bytes)
    } else {
        s.bytes.clone()
    }
}

/// HPACK decoder: one per connection, fed every header block in order.
pub struct Decoder {
    /// Newest entry at the front, so dynamic index 62 is `table[0]`.
    table: VecDeque<Field>,
    /// Sum of the entry sizes (§4.1).
    size: usize,
    /// The table's current maximum size, as set by size updates.
    max_size: usize,
    /// The SETTINGS_HEADER_TABLE_SIZE we advertised: the limit for updates.
    max_allowed: usize,
    /// Spare room that Huffman-coded strings are decoded into and split off
    /// from (always empty between strings). Emitted fields share it; the
    /// dynamic table never does.
    arena: BytesMut,
}

impl Decoder {
    /// `max_table_size`: the SETTINGS_HEADER_TABLE_SIZE we advertise (4096 by default).
    pub fn new(max_table_size: usize) -> Decoder {
        Decoder {
            table: VecDeque::new(),
            size: 0,
            max_size: max_table_size,
            max_allowed: max_table_size,
            arena: BytesMut::new(),
        }
    }

    /// Decodes one complete header block (HEADERS + CONTINUATION payloads
    /// concatenated, padding and priority already removed), calling `emit`
    /// for each field in order. On error the decoder state is unspecified
    /// (the connection is going to be closed).
    pub fn decode(&mut self, block: &Bytes, mut emit: impl FnMut(Field)) -> Result<(), HpackError> {
        let buf: &[u8] = block;
        let mut pos = 0;
        let mut seen_field = false;
        while let Some(&b) = buf.get(pos) {
            if b & 0x80 != 0 {
                // §6.1 Indexed Header Field.
                let index = decode_int::<7>(buf, &mut pos)?;
                emit(self.get(index)?);
            } else if b & 0x40 != 0 {
                // §6.2.1 Literal Header Field with Incremental Indexing.
                let (name, value) = self.read_literal::<6>(block, buf, &mut pos)?;
                emit(self.insert(name, value));
            } else if b & 0x20 != 0 {
                // §6.3 Dynamic Table Size Update.
                if seen_field {
                    return Err(HpackError::TableSizeUpdateAfterField);
                }
                let new_size = decode_int::<5>(buf, &mut pos)?;
                if new_size > self.max_allowed {
                    return Err(HpackError::TableSizeUpdateTooLarge(new_size));
                }
                self.max_size = new_size;
                self.evict_to(new_size);
                continue;
            } else {
                // §6.2.2 without indexing (0000) and §6.2.3 never indexed (0001).
                let sensitive = b & 0x10 != 0;
                let (name, value) = self.read_literal::<4>(block, buf, &mut pos)?;
                emit(Field {
                    name: name.bytes,
                    value: value.bytes,
                    sensitive,
                });
            }
            seen_field = true;
        }
        Ok(())
    }

    /// The current dynamic table size (§4.1), for tests and diagnostics.
    #[cfg(test)]
    fn table_size(&self) -> usize {
        self.size
    }

    /// Looks up a field by HPACK index (static first, then dynamic).
    #[inline]
    fn get(&self, index: usize) -> Result<Field, HpackError> {
        if index.wrapping_sub(1) < STATIC_LEN {
            let (name, value) = STATIC_TABLE[index - 1];
            return Ok(Field {
                name: Bytes::from_static(name),
                value: Bytes::from_static(value),
                sensitive: false,
            });
        }
        match index
            .checked_sub(STATIC_LEN + 1)
            .and_then(|i| self.table.get(i))
        {
            Some(field) => Ok(field.clone()),
            None => Err(HpackError::BadIndex(index)),
        }
    }

    /// The name of the field at `index`.
    #[inline]
    fn get_name(&self, index: usize) -> Result<Bytes, HpackError> {
        if index.wrapping_sub(1) < STATIC_LEN {
            return Ok(Bytes::from_static(STATIC_TABLE[index - 1].0));
        }
        match index
            .checked_sub(STATIC_LEN + 1)
            .and_then(|i| self.table.get(i))
        {
            Some(field) => Ok(field.name.clone()),
            None => Err(HpackError::BadIndex(index)),
        }
    }

    /// Reads a literal field representation whose name index has an
    /// `N`-bit prefix (index 0 means a literal name follows).
    #[inline]
    fn read_literal<const N: u8>(
        &mut self,
        block: &Bytes,
        buf: &[u8],
        pos: &mut usize,
    ) -> Result<(Str, Str), HpackError> {
        let index = decode_int::<N>(buf, pos)?;
        let name = if index == 0 {
            read_string(block, buf, pos, &mut self.arena)?
        } else {
            Str {
                bytes: self.get_name(index)?,
                borrowed: false,
            }
        };
        let value = read_string(block, buf, pos, &mut self.arena)?;
        Ok((name, value))
    }

    /// Adds a field to the dynamic table (§4.4) and returns the field to emit.
    ///
    /// The table stores copies of strings that are slices of the header
    /// block or of the Huffman arena (so it never keeps the read buffer or
    /// an arena alive); the field emitted now is the decoded one as is.
    fn insert(&mut self, name: Str, value: Str) -> Field {
        let entry_size = name.bytes.len() + value.bytes.len() + ENTRY_OVERHEAD;
        if entry_size > self.max_size {
            // Too large for the table: it empties it and is not added.
            self.table.clear();
            self.size = 0;
        } else {
            self.evict_to(self.max_size - entry_size);
            let stored = match (name.borrowed, value.borrowed) {
                (true, true) => {
                    // One allocation for both strings; the split makes the
                    // buffer shared, so later clones are just refcount bumps.
                    let mut buf = BytesMut::with_capacity(name.bytes.len() + value.bytes.len());
                    buf.extend_from_slice(&name.bytes);
                    buf.extend_from_slice(&value.bytes);
                    let stored_name = buf.split_to(name.bytes.len()).freeze();
                    Field {
                        name: stored_name,
                        value: buf.freeze(),
                        sensitive: false,
                    }
                }
                _ => Field {
                    name: detach(&name),
                    value: detach(&value),
                    sensitive: false,
                },
            };
            self.size += entry_size;
            self.table.push_front(stored);
        }
        Field {
            name: name.bytes,
            value: value.bytes,
            sensitive: false,
        }
    }

    /// Evicts the oldest entries until the table size is at most `limit`.
    fn evict_to(&mut self, limit: usize) {
        while self.size > limit {
            match self.table.pop_back() {
                Some(f) => self.size -= f.name.len() + f.value.len() + ENTRY_OVERHEAD,
                None => {
                    self.size = 0;
                    break;
                }
            }
        }
    }
}

/// HPACK encoder: one per connection. Never uses the dynamic table.
pub struct Encoder {
    /// Whether the first block (with its table size update to 0) was written.
    started: bool,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder::new()
    }
}

/// A static table match for an outgoing field.
enum StaticMatch {
    /// Both name and value match this index.
    Full(u8),
    /// Only the name matches this index.
    Name(u8),
    None,
}

/// Finds the static table entry for `name` (and `value` where the table has
/// useful values), dispatching on the name's length first.
#[inline]
fn static_match(name: &[u8], value: &[u8]) -> StaticMatch {
    let index: u8 = match name.len() {
        3 => match name {
            b"age" => 21,
            b"via" => 60,
            _ => 0,
        },
        4 => match name {
            b"date" => 33,
            b"etag" => 34,
            b"from" => 37,
            b"host" => 38,
            b"link" => 45,
            b"vary" => 59,
            _ => 0,
        },
        5 => match name {
            b":path" => {
                return match value {
                    b"/" => StaticMatch::Full(4),
                    b"/index.html" => StaticMatch::Full(5),
                    _ => StaticMatch::Name(4),
                }
            }
            b"allow" => 22,
            b"range" => 50,
            _ => 0,
        },
        6 => match name {
            b"accept" => 19,
            b"cookie" => 32,
            b"expect" => 35,
            b"server" => 54,
            _ => 0,
        },
        7 => match name {
            b":method" => {
                return match value {
                    b"GET" => StaticMatch::Full(2),
                    b"POST" => StaticMatch::Full(3),
                    _ => StaticMatch::Name(2),
                }
            }
            b":scheme" => {
                return match value {
                    b"http" => StaticMatch::Full(6),
                    b"https" => StaticMatch::Full(7),
                    _ => StaticMatch::Name(6),
                }
            }
            b":status" => {
                return match value {
                    b"200" => StaticMatch::Full(8),
                    b"204" => StaticMatch::Full(9),
                    b"206" => StaticMatch::Full(10),
                    b"304" => StaticMatch::Full(11),
                    b"400" => StaticMatch::Full(12),
                    b"404" => StaticMatch::Full(13),
                    b"500" => StaticMatch::Full(14),
                    _ => StaticMatch::Name(8),
                }
            }
            b"expires" => 36,
            b"referer" => 51,
            b"refresh" => 52,
            _ => 0,
        },
        8 => match name {
            b"if-match" => 39,
            b"if-range" => 42,
            b"location" => 46,
            _ => 0,
        },
        10 => match name {
            b":authority" => 1,
            b"set-cookie" => 55,
            b"user-agent" => 58,
            _ => 0,
        },
        11 => match name {
            b"retry-after" => 53,
            _ => 0,
        },
        12 => match name {
            b"content-type" => 31,
            b"max-forwards" => 47,
            _ => 0,
        },
        13 => match name {
            b"accept-ranges" => 18,
            b"authorization" => 23,
            b"cache-control" => 24,
            b"content-range" => 30,
            b"if-none-match" => 41,
            b"last-modified" => 44,
            _ => 0,
        },
        14 => match name {
            b"accept-charset" => 15,
            b"content-length" => 28,
            _ => 0,
        },
        15 => match name {
            b"accept-encoding" => {
                return match value {
                    b"gzip, deflate" => StaticMatch::Full(16),
                    _ => StaticMatch::Name(16),
                }
            }
            b"accept-language" => 17,
            _ => 0,
        },
        16 => match name {
            b"content-encoding" => 26,
            b"content-language" => 27,
            b"content-location" => 29,
            b"www-authenticate" => 61,
            _ => 0,
        },
        17 => match name {
            b"if-modified-since" => 40,
            b"transfer-encoding" => 57,
            _ => 0,
        },
        18 => match name {
            b"proxy-authenticate" => 48,
            _ => 0,
        },
        19 => match name {
            b"content-disposition" => 25,
            b"if-unmodified-since" => 43,
            b"proxy-authorization" => 49,
            _ => 0,
        },
        25 => match name {
            b"strict-transport-security" => 56,
            _ => 0,
        },
        27 => match name {
            b"access-control-allow-origin" => 20,
            _ => 0,
        },
        _ => 0,
    };
    if index == 0 {
        StaticMatch::None
    } else {
        StaticMatch::Name(index)
    }
}

/// Appends an integer with a `prefix_bits`-bit prefix (§5.1); `flags` holds
/// the representation's pattern bits above the prefix.
#[inline]
fn encode_int(dst: &mut BytesMut, value: usize, prefix_bits: u8, flags: u8) {
    let mask = (1usize << prefix_bits) - 1;
    if value < mask {
        dst.extend_from_slice(&[flags | value as u8]);
    } else {
        encode_int_long(dst, value - mask, flags | mask as u8);
    }
}

/// The multi-byte form: the full prefix `first`, then `rest` 7 bits at a time.
#[cold]
fn encode_int_long(dst: &mut BytesMut, mut rest: usize, first: u8) {
    let mut buf = [0u8; 11];
    buf[0] = first;
    let mut n = 1;
    while rest >= 0x80 {
        buf[n] = 0x80 | (rest & 0x7f) as u8;
        rest >>= 7;
        n += 1;
    }
    buf[n] = rest as u8;
    dst.extend_from_slice(&buf[..n + 1]);
}

/// Appends a raw (non-Huffman) string literal (§5.2).
#[inline]
fn encode_str(dst: &mut BytesMut, s: &[u8]) {
    encode_int(dst, s.len(), 7, 0);
    dst.extend_from_slice(s);
}

impl Encoder {
    /// A new encoder; its first block will announce an empty dynamic table.
    pub fn new() -> Encoder {
        Encoder { started: false }
    }

    /// Appends one header block encoding `fields` to `dst`.
    pub fn encode<'a>(
        &mut self,
        fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
        dst: &mut BytesMut,
    ) {
        self.encode_marked(fields.into_iter().map(|(n, v)| (n, v, false)), dst)
    }

    /// Like [`encode`](Self::encode), with each field's sensitivity: a sensitive field goes
    /// out as a never-indexed literal (§6.2.3), as it came in.
    pub fn encode_marked<'a>(
        &mut self,
        fields: impl IntoIterator<Item = (&'a [u8], &'a [u8], bool)>,
        dst: &mut BytesMut,
    ) {
        if !self.started {
            // Dynamic table size update to 0 (§6.3): our table stays empty.
            dst.extend_from_slice(&[0x20]);
            self.started = true;
        }
        for (name, value, sensitive) in fields {
            // Room for the whole field (prefixes are at most 1 + 10 bytes
            // per string), so the appends below never reallocate.
            dst.reserve(name.len() + value.len() + 22);
            // §6.2.2 without indexing is 0000xxxx; §6.2.3 never indexed is 0001xxxx.
            let flag = if sensitive { 0x10 } else { 0 };
            match static_match(name, value) {
                StaticMatch::Full(index) if !sensitive => dst.extend_from_slice(&[0x80 | index]),
                StaticMatch::Full(index) | StaticMatch::Name(index) => {
                    // Literal with an indexed name.
                    if index < 15 && value.len() < 127 {
                        dst.extend_from_slice(&[flag | index, value.len() as u8]);
                    } else {
                        encode_int(dst, index as usize, 4, flag);
                        encode_int(dst, value.len(), 7, 0);
                    }
                    dst.extend_from_slice(value);
                }
                StaticMatch::None => {
                    // Literal with a new name.
                    if name.len() < 127 {
                        dst.extend_from_slice(&[flag, name.len() as u8]);
                        dst.extend_from_slice(name);
                    } else {
                        dst.extend_from_slice(&[flag]);
                        encode_str(dst, name);
                    }
                    encode_str(dst, value);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Bytes {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        let v: Vec<u8> = (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect();
        Bytes::from(v)
    }

    fn decode(dec: &mut Decoder, block: &Bytes) -> Result<Vec<(String, String)>, HpackError> {
        let mut out = Vec::new();
        dec.decode(block, |f| {
            out.push((
                String::from_utf8(f.name.to_vec()).unwrap(),
                String::from_utf8(f.value.to_vec()).unwrap(),
            ))
        })?;
        Ok(out)
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|&(n, v)| (n.to_owned(), v.to_owned()))
            .collect()
    }

    /// The dynamic table, newest first.
    fn table(dec: &Decoder) -> Vec<(String, String)> {
        dec.table
            .iter()
            .map(|f| {
                (
                    String::from_utf8(f.name.to_vec()).unwrap(),
                    String::from_utf8(f.value.to_vec()).unwrap(),
                )
            })
            .collect()
    }

    fn huff(s: &str) -> Vec<u8> {
        let mut b = BytesMut::new();
        huffman::encode(s.as_bytes(), &mut b);
        b.to_vec()
    }

    #[test]
    fn static_table_spot_checks() {
        assert_eq!(STATIC_TABLE[0].0, b":authority");
        assert_eq!(
            STATIC_TABLE[15],
            (&b"accept-encoding"[..], &b"gzip, deflate"[..])
        );
        assert_eq!(STATIC_TABLE[30].0, b"content-type");
        assert_eq!(STATIC_TABLE[57].0, b"user-agent");
        assert_eq!(STATIC_TABLE[60].0, b"www-authenticate");
    }

    #[test]
    fn encoder_static_match_agrees_with_table() {
        for (i, &(name, value)) in STATIC_TABLE.iter().enumerate() {
            let index = (i + 1) as u8;
            match static_match(name, value) {
                StaticMatch::Full(j) => assert_eq!(j, index),
                StaticMatch::Name(j) => {
                    // Either the entry's own index, or the first entry with
                    // that name when the value is not worth matching.
                    assert_eq!(STATIC_TABLE[j as usize - 1].0, name);
                    assert!(j <= index);
                    if !value.is_empty() {
                        assert_eq!(value, b"/index.html", "entry {index} should match fully");
                    }
                }
                StaticMatch::None => panic!("no match for static entry {index}"),
            }
        }
        assert!(matches!(
            static_match(b"grpc-status", b"0"),
            StaticMatch::None
        ));
        assert!(matches!(
            static_match(b":status", b"201"),
            StaticMatch::Name(8)
        ));
        assert!(matches!(
            static_match(b"te", b"trailers"),
            StaticMatch::None
        ));
    }

    // RFC 7541 C.2.1
    #[test]
    fn rfc_c2_1_literal_with_indexing() {
        let mut dec = Decoder::new(4096);
        let block = hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572");
        assert_eq!(
            decode(&mut dec, &block).unwrap(),
            pairs(&[("custom-key", "custom-header")])
        );
        assert_eq!(dec.table_size(), 55);
        assert_eq!(table(&dec), pairs(&[("custom-key", "custom-header")]));
    }

    // RFC 7541 C.2.2
    #[test]
    fn rfc_c2_2_literal_without_indexing() {
        let mut dec = Decoder::new(4096);
        let block = hex("040c 2f73 616d 706c 652f 7061 7468");
        assert_eq!(
            decode(&mut dec, &block).unwrap(),
            pairs(&[(":path", "/sample/path")])
        );
        assert_eq!(dec.table_size(), 0);
    }

    // RFC 7541 C.2.3
    #[test]
    fn rfc_c2_3_literal_never_indexed() {
        let mut dec = Decoder::new(4096);
        let block = hex("1008 7061 7373 776f 7264 0673 6563 7265 74");
        assert_eq!(
            decode(&mut dec, &block).unwrap(),
            pairs(&[("password", "secret")])
        );
        assert_eq!(dec.table_size(), 0);
    }

    // RFC 7541 C.2.4
    #[test]
    fn rfc_c2_4_indexed() {
        let mut dec = Decoder::new(4096);
        assert_eq!(
            decode(&mut dec, &hex("82")).unwrap(),
            pairs(&[(":method", "GET")])
        );
        assert_eq!(dec.table_size(), 0);
    }

    fn check_request_sequence(blocks: [Bytes; 3]) {
        let mut dec = Decoder::new(4096);
        assert_eq!(
            decode(&mut dec, &blocks[0]).unwrap(),
            pairs(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
            ])
        );
        assert_eq!(dec.table_size(), 57);
        assert_eq!(table(&dec), pairs(&[(":authority", "www.example.com")]));

        assert_eq!(
            decode(&mut dec, &blocks[1]).unwrap(),
            pairs(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
                ("cache-control", "no-cache"),
            ])
        );
        assert_eq!(dec.table_size(), 110);
        assert_eq!(
            table(&dec),
            pairs(&[
                ("cache-control", "no-cache"),
                (":authority", "www.example.com")
            ])
        );

        assert_eq!(
            decode(&mut dec, &blocks[2]).unwrap(),
            pairs(&[
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/index.html"),
                (":authority", "www.example.com"),
                ("custom-key", "custom-value"),
            ])
        );
        assert_eq!(dec.table_size(), 164);
        assert_eq!(
            table(&dec),
            pairs(&[
                ("custom-key", "custom-value"),
                ("cache-control", "no-cache"),
                (":authority", "www.example.com"),
            ])
        );
    }

    // RFC 7541 C.3.1-C.3.3
    #[test]
    fn rfc_c3_requests_without_huffman() {
        check_request_sequence([
            hex("8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d"),
            hex("8286 84be 5808 6e6f 2d63 6163 6865"),
            hex("8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65"),
        ]);
    }

    // RFC 7541 C.4.1-C.4.3
    #[test]
    fn rfc_c4_requests_with_huffman() {
        let blocks = [
            hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff"),
            hex("8286 84be 5886 a8eb 1064 9cbf"),
            hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf"),
        ];
        // Cross-check the Huffman strings against our encoder.
        assert_eq!(&blocks[0][5..], &huff("www.example.com")[..]);
        assert_eq!(&blocks[1][6..], &huff("no-cache")[..]);
        assert_eq!(&blocks[2][6..14], &huff("custom-key")[..]);
        assert_eq!(&blocks[2][15..], &huff("custom-value")[..]);
        check_request_sequence(blocks);
    }

    const DATE1: &str = "Mon, 21 Oct 2013 20:13:21 GMT";
    const DATE2: &str = "Mon, 21 Oct 2013 20:13:22 GMT";
    const LOCATION: &str = "https://www.example.com";
    const COOKIE: &str = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1";

    fn check_response_sequence(blocks: [Bytes; 3]) {
        let mut dec = Decoder::new(256);
        assert_eq!(
            decode(&mut dec, &blocks[0]).unwrap(),
            pairs(&[
                (":status", "302"),
                ("cache-control", "private"),
                ("date", DATE1),
                ("location", LOCATION),
            ])
        );
        assert_eq!(dec.table_size(), 222);
        assert_eq!(
            table(&dec),
            pairs(&[
                ("location", LOCATION),
                ("date", DATE1),
                ("cache-control", "private"),
                (":status", "302"),
            ])
        );

        assert_eq!(
            decode(&mut dec, &blocks[1]).unwrap(),
            pairs(&[
                (":status", "307"),
                ("cache-control", "private"),
                ("date", DATE1),
                ("location", LOCATION),
            ])
        );
        assert_eq!(dec.table_size(), 222);
        assert_eq!(
            table(&dec),
            pairs(&[
                (":status", "307"),
                ("location", LOCATION),
                ("date", DATE1),
                ("cache-control", "private"),
            ])
        );

        assert_eq!(
            decode(&mut dec, &blocks[2]).unwrap(),
            pairs(&[
                (":status", "200"),
                ("cache-control", "private"),
                ("date", DATE2),
                ("location", LOCATION),
                ("content-encoding", "gzip"),
                ("set-cookie", COOKIE),
            ])
        );
        assert_eq!(dec.table_size(), 215);
        assert_eq!(
            table(&dec),
            pairs(&[
                ("set-cookie", COOKIE),
                ("content-encoding", "gzip"),
                ("date", DATE2)
            ])
        );
    }

    // RFC 7541 C.5.1-C.5.3 (eviction with a 256-byte table)
    #[test]
    fn rfc_c5_responses_without_huffman() {
        check_response_sequence([
            hex(
                "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230
                 3133 2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65
                 7861 6d70 6c65 2e63 6f6d",
            ),
            hex("4803 3330 37c1 c0bf"),
            hex(
                "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220
                 474d 54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157
                 454f 5049 5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076
                 6572 7369 6f6e 3d31",
            ),
        ]);
    }

    // RFC 7541 C.6.1-C.6.3 (Huffman, eviction with a 256-byte table)
    #[test]
    fn rfc_c6_responses_with_huffman() {
        let blocks = [
            hex(
                "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0
                 82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
            ),
            hex("4883 640e ffc1 c0bf"),
            hex(
                "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b
                 d9ab 77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27
                 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07",
            ),
        ];
        assert_eq!(&blocks[0][2..4], &huff("302")[..]);
        assert_eq!(&blocks[0][6..11], &huff("private")[..]);
        assert_eq!(&blocks[0][13..35], &huff(DATE1)[..]);
        assert_eq!(&blocks[0][37..], &huff(LOCATION)[..]);
        assert_eq!(&blocks[1][2..5], &huff("307")[..]);
        assert_eq!(&blocks[2][4..26], &huff(DATE2)[..]);
        assert_eq!(&blocks[2][29..32], &huff("gzip")[..]);
        assert_eq!(&blocks[2][34..], &huff(COOKIE)[..]);
        check_response_sequence(blocks);
    }

    const REQUEST: &[(&[u8], &[u8])] = &[
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", b"/pkg.Svc/Method"),
        (b":authority", b"127.0.0.1:7000"),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
        (b"grpc-timeout", b"1S"),
        (b"jobid", b"abc"),
        (b"user-agent", b"grpc-go/1.60"),
    ];

    fn round_trip(dec: &mut Decoder, enc: &mut Encoder, fields: &[(&[u8], &[u8])]) -> Bytes {
        let mut dst = BytesMut::new();
        enc.encode(fields.iter().copied(), &mut dst);
        let block = dst.freeze();
        let mut got = Vec::new();
        dec.decode(&block, |f| got.push(f)).unwrap();
        let want: Vec<Field> = fields
            .iter()
            .map(|&(n, v)| Field {
                sensitive: false,
                name: Bytes::copy_from_slice(n),
                value: Bytes::copy_from_slice(v),
            })
            .collect();
        assert_eq!(got, want);
        block
    }

    #[test]
    fn never_indexed_fields_stay_never_indexed() {
        // Received: `authorization: secret` as a never-indexed literal with a new name.
        let mut block = BytesMut::new();
        block.extend_from_slice(&[0x10, 13]);
        block.extend_from_slice(b"authorization");
        block.extend_from_slice(&[6]);
        block.extend_from_slice(b"secret");
        let block = block.freeze();
        let mut dec = Decoder::new(4096);
        let mut got = Vec::new();
        dec.decode(&block, |f| got.push(f)).unwrap();
        assert!(got[0].sensitive);
        // Passed on: still never indexed (0001xxxx), here with the static name (index 23).
        let mut enc = Encoder::new();
        let mut out = BytesMut::new();
        enc.encode_marked(
            got.iter()
                .map(|f| (f.name.as_ref(), f.value.as_ref(), f.sensitive)),
            &mut out,
        );
        assert_eq!(
            &out[..],
            &[0x20, 0x10 | 15, 8, 6, b's', b'e', b'c', b'r', b'e', b't'][..]
        );
        // A sensitive field that matches a static entry in full is not sent as an index.
        let mut out = BytesMut::new();
        enc.encode_marked([(&b":method"[..], &b"GET"[..], true)], &mut out);
        assert_eq!(&out[..], &[0x10 | 2, 3, b'G', b'E', b'T'][..]);
        let mut dec = Decoder::new(4096);
        let mut again = Vec::new();
        dec.decode(&out.freeze(), |f| again.push(f)).unwrap();
        assert!(again[0].sensitive);
        assert_eq!(again[0].value.as_ref(), b"GET");
    }

    #[test]
    fn encoder_round_trip_grpc() {
        let mut enc = Encoder::default();
        let mut dec = Decoder::new(4096);
        let first = round_trip(&mut dec, &mut enc, REQUEST);
        assert_eq!(first[0], 0x20, "first block starts with a size update to 0");
        assert_eq!(first[1], 0x83, ":method POST is static index 3");
        assert_eq!(first[2], 0x86, ":scheme http is static index 6");
        // :path with a literal value: without indexing, name index 4.
        assert_eq!(&first[3..5], &[0x04, 15]);
        assert_eq!(&first[5..20], b"/pkg.Svc/Method");

        let response: &[(&[u8], &[u8])] =
            &[(b":status", b"200"), (b"content-type", b"application/grpc")];
        let second = round_trip(&mut dec, &mut enc, response);
        assert_eq!(second[0], 0x88, "later blocks have no size update");
        // content-type: name index 31 needs a two-byte integer (15 + 16).
        assert_eq!(&second[1..3], &[0x0f, 16]);

        let trailers: &[(&[u8], &[u8])] = &[
            (b"grpc-status", b"0"),
            (b"grpc-message", b"deadline exceeded: 1S elapsed"),
        ];
        let third = round_trip(&mut dec, &mut enc, trailers);
        assert_eq!(third[0], 0x00);
        assert_eq!(
            &third[1..13],
            &[11, b'g', b'r', b'p', b'c', b'-', b's', b't', b'a', b't', b'u', b's']
        );
        assert_eq!(dec.table_size(), 0, "the encoder never indexes");

        // Exact static matches are one byte each.
        let mut dst = BytesMut::new();
        let fields: &[(&[u8], &[u8])] = &[
            (b":method", b"GET"),
            (b":path", b"/"),
            (b":scheme", b"https"),
            (b":status", b"204"),
            (b":status", b"500"),
            (b"accept-encoding", b"gzip, deflate"),
        ];
        enc.encode(fields.iter().copied(), &mut dst);
        assert_eq!(&dst[..], &[0x82, 0x84, 0x87, 0x89, 0x8e, 0x90]);
        round_trip(&mut dec, &mut enc, fields);
    }

    #[test]
    fn encoder_long_strings_and_empty_block() {
        let mut enc = Encoder::new();
        let mut dec = Decoder::new(4096);
        let big = vec![b'x'; 70_000];
        let block = round_trip(&mut dec, &mut enc, &[(b"x-big", &big[..]), (b"", b"")]);
        // 70000 - 127 = 69873 = 0x110f1: f1 | 80, (0x110f1 >> 7) & 7f | 80, 0x04.
        assert_eq!(
            &block[..9],
            &[0x20, 0x00, 5, b'x', b'-', b'b', b'i', b'g', 0x7f]
        );
        assert_eq!(&block[9..12], &[0xf1, 0xa1, 0x04]);
        let empty = round_trip(&mut dec, &mut enc, &[]);
        assert!(empty.is_empty());
    }

    #[test]
    fn integer_decoding() {
        // RFC 7541 C.1.1-C.1.3.
        let mut pos = 0;
        assert_eq!(decode_int::<5>(&[0x0a], &mut pos), Ok(10));
        assert_eq!(pos, 1);
        pos = 0;
        assert_eq!(decode_int::<5>(&[0x1f, 0x9a, 0x0a], &mut pos), Ok(1337));
        assert_eq!(pos, 3);
        pos = 0;
        assert_eq!(decode_int::<8>(&[0x2a], &mut pos), Ok(42));
        // Four continuation bytes are fine, five are not.
        pos = 0;
        assert_eq!(
            decode_int::<7>(&[0x7f, 0xff, 0xff, 0xff, 0x7f], &mut pos),
            Ok(127 + (1 << 28) - 1)
        );
        pos = 0;
        assert_eq!(
            decode_int::<7>(&[0x7f, 0x80, 0x80, 0x80, 0x80, 0x00], &mut pos),
            Err(HpackError::IntegerOverflow)
        );
        pos = 0;
        assert_eq!(
            decode_int::<7>(&[0x7f, 0x80], &mut pos),
            Err(HpackError::Truncated)
        );
        // Encoder/decoder agree across sizes and prefixes.
        for prefix in 1..=8u8 {
            for value in [
                0usize,
                1,
                14,
                15,
                16,
                126,
                127,
                128,
                255,
                256,
                1337,
                1 << 20,
                1 << 27,
            ] {
                let mut dst = BytesMut::new();
                encode_int(&mut dst, value, prefix, 0);
                let mut pos = 0;
                let got = match prefix {
                    1 => decode_int::<1>(&dst, &mut pos),
                    2 => decode_int::<2>(&dst, &mut pos),
                    3 => decode_int::<3>(&dst, &mut pos),
                    4 => decode_int::<4>(&dst, &mut pos),
                    5 => decode_int::<5>(&dst, &mut pos),
                    6 => decode_int::<6>(&dst, &mut pos),
                    7 => decode_int::<7>(&dst, &mut pos),
                    _ => decode_int::<8>(&dst, &mut pos),
                };
                assert_eq!(got, Ok(value), "prefix {prefix} value {value}");
                assert_eq!(pos, dst.len());
            }
        }
    }

    fn decode_err(dec: &mut Decoder, block: &[u8]) -> HpackError {
        dec.decode(&Bytes::copy_from_slice(block), |_| {})
            .unwrap_err()
    }

    #[test]
    fn errors() {
        let mut dec = Decoder::new(4096);
        // Truncated: missing value string, string longer than the block,
        // unfinished integer.
        assert_eq!(decode_err(&mut dec, &[0x82, 0x41]), HpackError::Truncated);
        assert_eq!(
            decode_err(&mut dec, &[0x04, 0x05, b'a']),
            HpackError::Truncated
        );
        assert_eq!(decode_err(&mut dec, &[0x00, 0x01]), HpackError::Truncated);
        assert_eq!(decode_err(&mut dec, &[0xff]), HpackError::Truncated);
        assert_eq!(
            decode_err(&mut dec, &[0x04, 0x7f, 0xff]),
            HpackError::Truncated
        );
        // Integer overflow in an index and in a string length.
        assert_eq!(
            decode_err(&mut dec, &[0xff, 0xff, 0xff, 0xff, 0xff, 0x0f]),
            HpackError::IntegerOverflow
        );
        assert_eq!(
            decode_err(&mut dec, &[0x04, 0x7f, 0x80, 0x80, 0x80, 0x80, 0x01]),
            HpackError::IntegerOverflow
        );
        // Bad index: 0, past the static table with an empty dynamic table,
        // as a literal's name, and past a one-entry dynamic table.
        assert_eq!(decode_err(&mut dec, &[0x80]), HpackError::BadIndex(0));
        assert_eq!(decode_err(&mut dec, &[0xbe]), HpackError::BadIndex(62));
        assert_eq!(
            decode_err(&mut dec, &[0x0f, 0x30, 0x00]),
            HpackError::BadIndex(63)
        );
        let mut dec = Decoder::new(4096);
        assert_eq!(
            decode_err(&mut dec, &[0x41, 0x01, b'a', 0xbf]),
            HpackError::BadIndex(63)
        );
        // Bad Huffman: EOS, 8 bits of padding, padding with a zero bit.
        assert_eq!(
            decode_err(&mut dec, &[0x04, 0x84, 0xff, 0xff, 0xff, 0xff]),
            HpackError::BadHuffman
        );
        assert_eq!(
            decode_err(&mut dec, &[0x04, 0x81, 0xff]),
            HpackError::BadHuffman
        );
        assert_eq!(
            decode_err(&mut dec, &[0x04, 0x81, 0x00]),
            HpackError::BadHuffman
        );
        // Size update above the advertised maximum (4097 = 31 + 98 + 31 * 128).
        assert_eq!(
            decode_err(&mut dec, &[0x3f, 0xe2, 0x1f]),
            HpackError::TableSizeUpdateTooLarge(4097)
        );
        assert_eq!(
            decode_err(&mut Decoder::new(0), &[0x21]),
            HpackError::TableSizeUpdateTooLarge(1)
        );
        // Size update after a field.
        assert_eq!(
            decode_err(&mut dec, &[0x82, 0x20]),
            HpackError::TableSizeUpdateAfterField
        );
        assert_eq!(
            decode_err(&mut dec, &[0x20, 0x82, 0x3f, 0x00]),
            HpackError::TableSizeUpdateAfterField
        );
        // All variants have a message.
        assert_eq!(HpackError::BadIndex(7).to_string(), "invalid table index 7");
        assert!(!HpackError::TableSizeUpdateTooLarge(1)
            .to_string()
            .is_empty());
    }

    #[test]
    fn table_size_updates() {
        let mut dec = Decoder::new(4096);
        // Exactly the maximum (4096 = 31 + 97 + 31 * 128), twice, at the start.
        assert_eq!(
            decode(&mut dec, &hex("3fe1 1f3f e11f 82")).unwrap(),
            pairs(&[(":method", "GET")])
        );
        let block = hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572");
        decode(&mut dec, &block).unwrap();
        decode(&mut dec, &block).unwrap();
        assert_eq!(dec.table_size(), 110);
        // Shrinking evicts the oldest entry; index 63 is then gone.
        assert_eq!(decode(&mut dec, &hex("3f 22 be")).unwrap().len(), 1);
        assert_eq!(dec.table_size(), 55);
        assert_eq!(decode_err(&mut dec, &[0xbf]), HpackError::BadIndex(63));
        // Size 0 empties the table; an entry larger than the table is
        // emitted but not stored.
        decode(&mut dec, &hex("20")).unwrap();
        assert_eq!(dec.table_size(), 0);
        assert_eq!(
            decode(&mut dec, &block).unwrap(),
            pairs(&[("custom-key", "custom-header")])
        );
        assert_eq!(dec.table_size(), 0);
        assert_eq!(decode_err(&mut dec, &[0xbe]), HpackError::BadIndex(62));
        // Growing back is allowed up to the advertised maximum.
        decode(&mut dec, &hex("3fe1 1f")).unwrap();
        decode(&mut dec, &block).unwrap();
        assert_eq!(
            decode(&mut dec, &hex("be")).unwrap(),
            pairs(&[("custom-key", "custom-header")])
        );
        // An empty block is fine.
        assert_eq!(decode(&mut dec, &Bytes::new()).unwrap(), vec![]);
    }

    #[test]
    fn zero_copy() {
        let mut dec = Decoder::new(4096);
        // Literal without indexing, name index 4 (:path), raw value; then a
        // literal with incremental indexing and a literal name.
        let block = hex("040c 2f73 616d 706c 652f 7061 7468
                         400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572");
        let range = block.as_ptr() as usize..block.as_ptr() as usize + block.len();
        let mut fields = Vec::new();
        dec.decode(&block, |f| fields.push(f)).unwrap();
        assert_eq!(&fields[0].value[..], b"/sample/path");
        assert!(
            range.contains(&(fields[0].value.as_ptr() as usize)),
            "raw literal is a slice"
        );
        assert_eq!(
            fields[0].name.as_ptr(),
            STATIC_TABLE[3].0.as_ptr(),
            "static name"
        );

        // Re-emitted through the dynamic table: not in the first block.
        let second = hex("be");
        let mut again = Vec::new();
        dec.decode(&second, |f| again.push(f)).unwrap();
        assert_eq!(&again[0].name[..], b"custom-key");
        assert_eq!(&again[0].value[..], b"custom-header");
        for b in [&again[0].name, &again[0].value] {
            assert!(
                !range.contains(&(b.as_ptr() as usize)),
                "table entry copies out of the block"
            );
        }
        // A dynamic hit is a refcount clone of the stored entry.
        let mut third = Vec::new();
        dec.decode(&second, |f| third.push(f)).unwrap();
        assert_eq!(third[0].value.as_ptr(), again[0].value.as_ptr());

        // Static indexed fields are static slices.
        let mut st = Vec::new();
        dec.decode(&hex("83"), |f| st.push(f)).unwrap();
        assert_eq!(st[0].value.as_ptr(), STATIC_TABLE[2].1.as_ptr());
    }

    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn fuzz_no_panic() {
        let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
        let seeds: Vec<Bytes> = [
            "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
            "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
            "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0",
            "3fe1 1f40 0a63 7573 746f 6d2d 6b65 790d 6375 7374 6f6d 2d68 6561 6465 72be",
        ]
        .iter()
        .map(|s| hex(s))
        .collect();
        let mut dec = Decoder::new(256);
        let mut fields = 0usize;
        for i in 0..100_000 {
            let block = if i % 2 == 0 {
                // Random bytes, biased towards short blocks.
                let len = (rng.next() % 48) as usize;
                (0..len).map(|_| rng.next() as u8).collect::<Vec<u8>>()
            } else {
                // Mutated valid blocks, to get deeper into the decoder.
                let mut b = seeds[(rng.next() % seeds.len() as u64) as usize].to_vec();
                for _ in 0..1 + rng.next() % 3 {
                    let at = (rng.next() % b.len() as u64) as usize;
                    b[at] = rng.next() as u8;
                }
                let cut = (rng.next() % (b.len() as u64 + 1)) as usize;
                b.truncate(cut.max(b.len() / 2));
                b
            };
            let block = Bytes::from(block);
            if dec.decode(&block, |_| fields += 1).is_err() {
                dec = Decoder::new(256);
            }
            assert!(dec.size <= dec.max_size);
            let sum: usize = dec
                .table
                .iter()
                .map(|f| f.name.len() + f.value.len() + 32)
                .sum();
            assert_eq!(sum, dec.size);
        }
        assert!(
            fields > 1000,
            "the fuzzer should decode some fields ({fields})"
        );
    }

    #[test]
    fn huffman_arena() {
        let value = b"/sample/path";
        let mut huff = BytesMut::new();
        huffman::encode(value, &mut huff);
        // Literal without indexing, name index 4 (:path), Huffman value.
        let mut block = BytesMut::new();
        block.extend_from_slice(&[0x04, 0x80 | huff.len() as u8]);
        block.extend_from_slice(&huff);
        let block = block.freeze();
        let needed = huff.len() * 8 / 5 + 1;

        let mut dec = Decoder::new(4096);
        let mut values = Vec::new();
        for _ in 0..1000 {
            let mut fields = Vec::new();
            dec.decode(&block, |f| fields.push(f)).unwrap();
            assert_eq!(fields.len(), 1);
            assert_eq!(&fields[0].name[..], b":path");
            assert_eq!(&fields[0].value[..], value);
            values.push(fields.pop().unwrap().value);
        }
        // Consecutive values are adjacent in one arena until the room left
        // is below the worst case; then a new arena starts.
        let mut arena_start = values[0].as_ptr() as usize;
        let mut arenas = 1;
        for pair in values.windows(2) {
            let prev_end = pair[0].as_ptr() as usize + pair[0].len();
            let next = pair[1].as_ptr() as usize;
            if next != prev_end {
                assert!(
                    prev_end - arena_start + needed > ARENA_SIZE,
                    "new arena while the old one had room"
                );
                arena_start = next;
                arenas += 1;
            }
        }
        assert_eq!(
            arenas,
            (1000 * value.len()).div_ceil(ARENA_SIZE - needed + 1)
        );
        assert_eq!(arenas, 2);

        // With the slices dropped, a full arena is reclaimed, not replaced.
        drop(values);
        let (mut lo, mut hi) = (usize::MAX, 0);
        for _ in 0..2000 {
            dec.decode(&block, |f| {
                assert_eq!(&f.value[..], value);
                let p = f.value.as_ptr() as usize;
                lo = lo.min(p);
                hi = hi.max(p + f.value.len());
            })
            .unwrap();
        }
        assert!(hi - lo <= ARENA_SIZE, "one arena, reused");

        // A Huffman string inserted into the dynamic table is emitted from
        // the arena but stored as its own copy.
        let mut indexed = BytesMut::new();
        indexed.extend_from_slice(&[0x44, 0x80 | huff.len() as u8]);
        indexed.extend_from_slice(&huff);
        let mut emitted = Vec::new();
        dec.decode(&indexed.freeze(), |f| emitted.push(f)).unwrap();
        let mut again = Vec::new();
        dec.decode(&hex("be"), |f| again.push(f)).unwrap();
        assert_eq!(&emitted[0].value[..], value);
        assert_eq!(again, emitted);
        let p = emitted[0].value.as_ptr() as usize;
        assert!(
            !(p..p + ARENA_SIZE).contains(&(again[0].value.as_ptr() as usize)),
            "table entry is a copy"
        );
        assert_ne!(again[0].value.as_ptr(), emitted[0].value.as_ptr());
    }
}
