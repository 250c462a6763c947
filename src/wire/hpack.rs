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
#[path = "hpack_tests.rs"]
mod tests;
