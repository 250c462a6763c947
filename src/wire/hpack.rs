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
//! [`Encoder`] keeps a dynamic table, as the peer's decoder will, for the fields that
//! repeat from call to call on a connection: the first time such a field is sent it goes
//! out as a literal with incremental indexing (§6.2.1), afterwards as its index (§6.1), one
//! or two bytes. Which fields are indexed is a policy ([`indexing`]): pseudo-headers and
//! the usual gRPC names at once, other fields once they repeat (and a name new to the table
//! with its first value, so the values after it name it by index), never credentials or long
//! values. The table is the size the peer's SETTINGS_HEADER_TABLE_SIZE allows, at most
//! [`ENCODER_TABLE_CAP`]; each change is announced at the start of the next block (§4.2).
//! Looking a field up is, when the block is like the previous one of its kind, one
//! comparison with the entry sent at the same position last time, else a hash of its name
//! and value into a small index; it allocates nothing once the table holds the
//! connection's fields. Through the gateway this costs about 2% more instructions per call
//! than writing literals did (`bench/profile --cache`: 14,882 before, 15,198 after), while
//! each peer decodes 11 header bytes a call instead of 134. Strings are sent raw,
//! not Huffman-coded: the indexed ones are sent once, and the rest are mostly short.
//!
//! A typical unary call (8 request fields with the routing header, `:status` and
//! `content-type`, `grpc-status`) takes 99 + 20 + 15 header block bytes without the table
//! and 8 + 2 + 1 from the second call on (`bytes_per_call` in the tests).

use std::collections::VecDeque;
use std::fmt;

use bytes::{Bytes, BytesMut};

use super::headers::{has_nul_cr_lf, valid_name};
use super::huffman;

/// One header field. `name` is as received (HTTP/2 requires lowercase; the
/// decoder does not check case).
#[derive(Clone, Debug)]
pub struct Field {
    pub name: Bytes,
    pub value: Bytes,
    /// Received as a never-indexed literal (§6.2.3): a relay must send it on the same way.
    pub sensitive: bool,
    /// Known to hold only the bytes RFC 9113 §8.2.1 allows in a name and a value: it came from
    /// the static table, or from a dynamic table entry checked once when it was inserted. The
    /// header checks skip those byte scans for it (~600 instructions per call, as most fields
    /// of a busy connection are indexed); `false` says nothing either way.
    pub checked: bool,
}

/// Equal names, values and sensitivity: `checked` is what is known about a field, not part of it.
impl PartialEq for Field {
    fn eq(&self, other: &Field) -> bool {
        self.name == other.name && self.value == other.value && self.sensitive == other.sensitive
    }
}

impl Eq for Field {}

/// Whether a field read into the dynamic table may be marked [`Field::checked`]: a pseudo-header
/// name (checked by name where it is used) or an allowed one, and a value without NUL, CR or LF.
fn bytes_allowed(name: &[u8], value: &[u8]) -> bool {
    (name.first() == Some(&b':') || valid_name(name)) && !has_nul_cr_lf(value)
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

/// SETTINGS_HEADER_TABLE_SIZE until a peer's SETTINGS say otherwise (RFC 9113 §6.5.2).
const DEFAULT_TABLE_SIZE: usize = 4096;

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
    memo: &mut HuffmanMemo,
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
        let coded = &buf[start..end];
        if let Some(plain) = memo.get(coded) {
            return Ok(Str {
                bytes: plain,
                borrowed: true,
            });
        }
        // `huffman::decode` needs this much spare room to never reallocate.
        let needed = len * 8 / 5 + 1;
        if arena.capacity() - arena.len() < needed {
            // The memo must not be what keeps a full arena from being reclaimed.
            memo.clear();
        }
        if !arena.try_reclaim(needed) {
            // Either the arena is full while some of its slices are still
            // alive, or the string is larger than an arena: start a new one.
            *arena = BytesMut::with_capacity(needed.max(ARENA_SIZE));
        }
        huffman::decode(coded, arena).map_err(|()| HpackError::BadHuffman)?;
        // The first split turns the arena into a shared buffer (one small
        // allocation per arena); later splits and freezes are refcounts.
        let plain = arena.split().freeze();
        memo.set(coded, &plain);
        Ok(Str {
            bytes: plain,
            borrowed: true,
        })
    }
}

/// The last two short Huffman-coded strings a decoder decoded, coded and plain, so the same
/// string sent again is not decoded again.
///
/// Some encoders never index a field whose value repeats call after call: the `h2` crate (so
/// tonic, and the bench's load generator) sends `:path` as a Huffman-coded literal on every
/// request. Decoding it was ~490 instructions per call (callgrind, `bench/profile --cache`);
/// a hit costs one compare of at most [`MEMO_CODED`] bytes. Two entries, the one used least
/// lately replaced: with one, a routing value new on each call (also a Huffman literal)
/// displaced `:path` every time (`bench/profile --keys 1000`: ~740 instructions per call of
/// Huffman decoding against ~0 with one key). The plain strings are slices of the arena they
/// were decoded into: they keep that arena (which the decoder holds anyway) alive, no other
/// memory.
pub(super) struct HuffmanMemo {
    entries: [MemoEntry; 2],
    /// The entry hit or set last.
    recent: usize,
}

struct MemoEntry {
    coded: [u8; MEMO_CODED],
    /// Length of `coded`; 0: empty (an empty string is never Huffman-decoded).
    len: u8,
    plain: Bytes,
}

/// The longest coded string remembered.
const MEMO_CODED: usize = 48;

impl Default for HuffmanMemo {
    fn default() -> HuffmanMemo {
        let empty = || MemoEntry {
            coded: [0; MEMO_CODED],
            len: 0,
            plain: Bytes::new(),
        };
        HuffmanMemo {
            entries: [empty(), empty()],
            recent: 0,
        }
    }
}

impl HuffmanMemo {
    #[inline]
    fn get(&mut self, coded: &[u8]) -> Option<Bytes> {
        let i = self
            .entries
            .iter()
            .position(|e| coded.len() == e.len as usize && e.coded[..coded.len()] == *coded)?;
        self.recent = i;
        Some(self.entries[i].plain.clone())
    }

    fn clear(&mut self) {
        for entry in &mut self.entries {
            entry.len = 0;
            entry.plain = Bytes::new();
        }
    }

    #[inline]
    fn set(&mut self, coded: &[u8], plain: &Bytes) {
        if coded.len() <= MEMO_CODED {
            let i = 1 - self.recent;
            let entry = &mut self.entries[i];
            entry.coded[..coded.len()].copy_from_slice(coded);
            entry.len = coded.len() as u8;
            entry.plain = plain.clone();
            self.recent = i;
        }
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
    /// The last short Huffman-coded string decoded.
    memo: HuffmanMemo,
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
            memo: HuffmanMemo::default(),
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
                    checked: false,
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
                checked: true,
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
            read_string(block, buf, pos, &mut self.arena, &mut self.memo)?
        } else {
            Str {
                bytes: self.get_name(index)?,
                borrowed: false,
            }
        };
        let value = read_string(block, buf, pos, &mut self.arena, &mut self.memo)?;
        Ok((name, value))
    }

    /// Adds a field to the dynamic table (§4.4) and returns the field to emit.
    ///
    /// The table stores copies of strings that are slices of the header
    /// block or of the Huffman arena (so it never keeps the read buffer or
    /// an arena alive); the field emitted now is the decoded one as is.
    fn insert(&mut self, name: Str, value: Str) -> Field {
        let checked = bytes_allowed(&name.bytes, &value.bytes);
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
                        checked,
                    }
                }
                _ => Field {
                    name: detach(&name),
                    value: detach(&value),
                    sensitive: false,
                    checked,
                },
            };
            self.size += entry_size;
            self.table.push_front(stored);
        }
        Field {
            name: name.bytes,
            value: value.bytes,
            sensitive: false,
            checked,
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

/// The largest dynamic table our encoder keeps, whatever the peer allows: 4096 is the
/// protocol's default SETTINGS_HEADER_TABLE_SIZE and holds a gRPC connection's repeating
/// fields many times over (a typical request, response and trailers need under 600 bytes).
const ENCODER_TABLE_CAP: usize = 4096;

/// The longest value (and name) the encoder inserts into its table: the fields worth
/// indexing (paths, authorities, content types, user agents, job names) are short, and a long
/// value would take the room of several of them.
const MAX_INDEXED_LEN: usize = 64;

/// Buckets of the encoder table's hash index; a 4096-byte table holds at most 128 entries.
const BUCKETS: usize = 64;

/// Slots of the encoder table's hints (the entry last sent at a position of a block): enough
/// for a request, a response and trailers to keep theirs apart.
const HINTS: usize = 32;

/// HPACK encoder: one per connection, fed every header block we send, in order.
///
/// It keeps the same dynamic table the peer's decoder will (§2.3.2), inserting a field
/// when [`indexing`] says so (most the first time they are sent) and sending its index
/// afterwards. The table's size is the peer's SETTINGS_HEADER_TABLE_SIZE capped at
/// [`ENCODER_TABLE_CAP`]; a change of the setting is announced at the start of the next
/// block ([`set_peer_table_size`](Self::set_peer_table_size)).
///
/// Memory: the entries' names and values, at most the table size less 32 bytes an entry;
/// their bookkeeping (48 bytes an entry); a 768-byte index; and up to [`SPARE_BUFFERS`]
/// evicted buffers of at most 128 bytes. An encoder whose peer allows no table allocates
/// none of it.
pub struct Encoder {
    /// The dynamic table; allocated with the first field that may be indexed.
    table: Option<Box<Table>>,
    /// The table's maximum size, as the peer's decoder knows it (§4.2): 4096, the
    /// protocol's default, until we announce another.
    max_size: usize,
    /// The smallest and the latest table size the peer's SETTINGS asked for since the last
    /// block: both are announced at the start of the next one (§4.2).
    pending: Option<(usize, usize)>,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder::new()
    }
}

/// One entry of the encoder's dynamic table.
struct Entry {
    /// The name, then the value.
    bytes: Vec<u8>,
    name_len: usize,
    /// The low bits of the field's and of the name's hash, to skip most byte comparisons.
    hash: u32,
    name_hash: u32,
    /// The next older entry in the same field (name) bucket, by insertion number.
    next: u32,
    next_name: u32,
}

impl Entry {
    fn name(&self) -> &[u8] {
        &self.bytes[..self.name_len]
    }

    fn value(&self) -> &[u8] {
        &self.bytes[self.name_len..]
    }

    /// Its size for the table (§4.1).
    fn size(&self) -> usize {
        self.bytes.len() + ENTRY_OVERHEAD
    }
}

/// The encoder's dynamic table, with a hash index of its fields and of their names.
///
/// Entries are numbered by insertion (wrapping at 2^32); the entry numbered `n` is
/// `entries[n - oldest]` and has HPACK index `62 + (inserted - 1 - n)`. Each bucket holds
/// the number of its newest entry and each entry the number of the next older one in its
/// bucket, so eviction (dropping the oldest entries) leaves the index as it is: a walk
/// stops at the first number that is no longer in the table. A number of an entry evicted
/// 2^32 insertions ago can look current again; every candidate is compared in full and a
/// walk takes at most as many steps as there are entries, so that costs a miss at worst.
struct Table {
    /// Oldest first.
    entries: VecDeque<Entry>,
    /// Entries ever inserted: the next entry's number.
    inserted: u32,
    /// Sum of the entry sizes (§4.1).
    size: usize,
    /// The newest entry in each bucket, by field hash and by name hash.
    by_field: [u32; BUCKETS],
    by_name: [u32; BUCKETS],
    /// Fields sent once without indexing ([`Indexing::OnRepeat`]), by hash: the second
    /// time, they are indexed.
    seen: [u32; BUCKETS],
    /// The entry last sent for a field at a given position in its block with a name of a
    /// given length ([`hint_slot`](Self::hint_slot)): a block like the previous one finds
    /// its entries here without hashing.
    hints: [u32; HINTS],
    /// Buffers of evicted entries, reused by the next insertions so a table that turns
    /// over does not allocate for each entry.
    spare: Vec<Vec<u8>>,
}

/// Evicted entry buffers kept for reuse (at most [`MAX_INDEXED_LEN`] * 2 bytes each).
const SPARE_BUFFERS: usize = 4;

/// Whether a field goes into the encoder's dynamic table.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Indexing {
    /// The first time it is sent: the field is likely to repeat on the connection.
    Always,
    /// The second time it is sent: it might repeat (the routing header's job names, custom
    /// metadata) or might not (a per-call id, a timeout counting down, an error message).
    /// Indexing every value of a field that changes with each call would evict the useful
    /// entries; a field seen twice is likely to be seen again. Also the first time, when
    /// neither table holds its name: one entry per such name, and every later value names it
    /// by index (2 bytes) instead of spelling it out.
    OnRepeat,
    /// Never: credentials (§7.1.3) and values too long to be worth the room.
    Never,
}

/// The indexing policy for an outgoing field that is not sensitive and whose name and value
/// are at most [`MAX_INDEXED_LEN`] long (others are never indexed):
///
/// - Pseudo-headers and the names of fields that are the same on every call of a
///   connection or take few values (`content-type`, `te`, `user-agent`, `grpc-encoding`,
///   `grpc-accept-encoding`, `grpc-status`, ...): [`Indexing::Always`].
/// - Credentials (`authorization`, `proxy-authorization`, `cookie`, `set-cookie`):
///   [`Indexing::Never`].
/// - Any other field: [`Indexing::OnRepeat`]. Among them the routing header, whose values
///   repeat per job but are unbounded in number, and `grpc-timeout`, `grpc-message` and
///   per-call ids, which usually differ from call to call.
fn indexing(name: &[u8]) -> Indexing {
    match name {
        [b':', ..] => Indexing::Always,
        b"content-type"
        | b"te"
        | b"user-agent"
        | b"grpc-encoding"
        | b"grpc-accept-encoding"
        | b"grpc-status"
        | b"accept-encoding"
        | b"content-encoding"
        | b"server" => Indexing::Always,
        b"authorization" | b"proxy-authorization" | b"cookie" | b"set-cookie" => Indexing::Never,
        _ => Indexing::OnRepeat,
    }
}

/// The 8 bytes of `s` at `i`, which the caller has checked are there.
#[inline]
fn word64(s: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(s[i..i + 8].try_into().unwrap())
}

/// The 4 bytes of `s` at `i`, which the caller has checked are there.
#[inline]
fn word32(s: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(s[i..i + 4].try_into().unwrap())
}

/// An FxHash-style hash of `bytes`, continuing from `seed`: the length, then a multiply per
/// 8 bytes, the last 8 (or 4 + 4) read overlapping the ones before rather than copied out.
#[inline(always)]
fn hash_bytes(bytes: &[u8], seed: u64) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mix = |h: u64, word: u64| (h.rotate_left(5) ^ word).wrapping_mul(K);
    let n = bytes.len();
    let mut h = mix(seed, n as u64);
    if n >= 8 {
        let mut i = 0;
        while i + 8 < n {
            h = mix(h, word64(bytes, i));
            i += 8;
        }
        h = mix(h, word64(bytes, n - 8));
    } else if n >= 4 {
        h = mix(
            h,
            u64::from(word32(bytes, 0)) << 32 | u64::from(word32(bytes, n - 4)),
        );
    } else if n > 0 {
        let b = |i: usize| u64::from(bytes[i]);
        h = mix(h, b(0) | b(n / 2) << 8 | b(n - 1) << 16);
    }
    // The multiplies carry every input bit up but not down: the low half depends on few
    // of them (for `bench-0` … `bench-999`, 43 distinct low halves). The table keeps and
    // compares the low half (`as u32`), so the high half is folded into it.
    h ^ (h >> 32)
}

/// Whether `a` and `b`, of the same length, are equal: word compares inline, for the short
/// strings of the table, where `==` calls `memcmp`.
#[inline(always)]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    debug_assert_eq!(n, b.len());
    if n >= 8 {
        let mut i = 0;
        while i + 8 < n {
            if word64(a, i) != word64(b, i) {
                return false;
            }
            i += 8;
        }
        word64(a, n - 8) == word64(b, n - 8)
    } else if n >= 4 {
        word32(a, 0) == word32(b, 0) && word32(a, n - 4) == word32(b, n - 4)
    } else {
        a.iter().zip(b).all(|(x, y)| x == y)
    }
}

/// The bucket of a hash: its top bits, the best mixed.
#[inline]
fn bucket(hash: u64) -> usize {
    (hash >> 58) as usize
}

impl Table {
    fn new() -> Table {
        Table {
            entries: VecDeque::new(),
            inserted: 0,
            size: 0,
            // A number no entry has (until 2^32 insertions): the buckets are empty.
            by_field: [u32::MAX; BUCKETS],
            by_name: [u32::MAX; BUCKETS],
            seen: [0; BUCKETS],
            hints: [u32::MAX; HINTS],
            spare: Vec::new(),
        }
    }

    /// The entry numbered `n`, if it is still in the table.
    #[inline]
    fn get(&self, n: u32) -> Option<&Entry> {
        // Entries newer than `n`: the newest is numbered `inserted - 1`.
        let newer = self.inserted.wrapping_sub(1).wrapping_sub(n) as usize;
        let len = self.entries.len();
        if newer < len {
            Some(&self.entries[len - 1 - newer])
        } else {
            None
        }
    }

    /// The HPACK index of the entry numbered `n`.
    #[inline]
    fn index_of(&self, n: u32) -> usize {
        STATIC_LEN + 1 + self.inserted.wrapping_sub(1).wrapping_sub(n) as usize
    }

    /// Whether the entry numbered `n` is the field `name: value`.
    #[inline(always)]
    fn holds(&self, n: u32, name: &[u8], value: &[u8]) -> Option<&Entry> {
        let e = self.get(n)?;
        let same = e.name_len == name.len()
            && e.bytes.len() == name.len() + value.len()
            && same_bytes(e.name(), name)
            && same_bytes(e.value(), value);
        same.then_some(e)
    }

    /// The number of the entry that holds the field `name: value` (with hash `hash`), if
    /// one does.
    #[inline]
    fn find(&self, hash: u64, name: &[u8], value: &[u8]) -> Option<u32> {
        let mut n = self.by_field[bucket(hash)];
        for _ in 0..self.entries.len() {
            let e = self.get(n)?;
            if e.hash == hash as u32 && self.holds(n, name, value).is_some() {
                return Some(n);
            }
            n = e.next;
        }
        None
    }

    /// The slot of [`hints`](Self::hints) for the field at `position` in its block.
    #[inline]
    fn hint_slot(position: usize, name: &[u8]) -> usize {
        (position * 8 + name.len()) % HINTS
    }

    /// The HPACK index of an entry named `name` (with hash `hash`), if there is one.
    #[inline]
    fn find_name(&self, hash: u64, name: &[u8]) -> Option<usize> {
        let mut n = self.by_name[bucket(hash)];
        for _ in 0..self.entries.len() {
            let e = self.get(n)?;
            if e.name_hash == hash as u32 && e.name_len == name.len() && same_bytes(e.name(), name)
            {
                return Some(self.index_of(n));
            }
            n = e.next_name;
        }
        None
    }

    /// Whether the field with hash `hash` was sent before without indexing; records it.
    #[inline]
    fn seen_before(&mut self, hash: u64) -> bool {
        // Other bits than the bucket's, so fields in the same bucket rarely share a slot.
        let slot = &mut self.seen[(hash >> 52) as usize % BUCKETS];
        let seen = *slot == hash as u32;
        *slot = hash as u32;
        seen
    }

    /// Adds a field (§4.4), evicting the oldest entries so the table stays within
    /// `max_size`; the caller has checked that the entry alone fits.
    fn insert(&mut self, name: &[u8], value: &[u8], hashes: (u64, u64), max_size: usize) {
        let (name_hash, hash) = hashes;
        let size = name.len() + value.len() + ENTRY_OVERHEAD;
        debug_assert!(size <= max_size);
        self.evict_to(max_size - size);
        let mut bytes = self.spare.pop().unwrap_or_default();
        bytes.clear();
        bytes.extend_from_slice(name);
        bytes.extend_from_slice(value);
        let n = self.inserted;
        let field_bucket = &mut self.by_field[bucket(hash)];
        let next = std::mem::replace(field_bucket, n);
        let name_bucket = &mut self.by_name[bucket(name_hash)];
        let next_name = std::mem::replace(name_bucket, n);
        self.entries.push_back(Entry {
            bytes,
            name_len: name.len(),
            hash: hash as u32,
            name_hash: name_hash as u32,
            next,
            next_name,
        });
        self.inserted = n.wrapping_add(1);
        self.size += size;
    }

    /// Evicts the oldest entries until the table size is at most `limit` (§4.3, §4.4).
    fn evict_to(&mut self, limit: usize) {
        while self.size > limit {
            let Some(e) = self.entries.pop_front() else {
                break;
            };
            self.size -= e.size();
            if self.spare.len() < SPARE_BUFFERS && e.bytes.capacity() <= 2 * MAX_INDEXED_LEN {
                self.spare.push(e.bytes);
            }
        }
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
/// the representation's pattern bits above the prefix. Always inlined: `prefix_bits` is a
/// constant at every call, so each folds to a compare or two (out of line it cost ~150
/// instructions a call, `bench/profile --cache --keys 1000`).
#[inline(always)]
fn encode_int(dst: &mut BytesMut, value: usize, prefix_bits: u8, flags: u8) {
    let mask = (1usize << prefix_bits) - 1;
    if value < mask {
        dst.extend_from_slice(&[flags | value as u8]);
    } else if value - mask < 0x80 {
        // Two bytes: a dynamic-table name (62 and up) under a 4- or 6-bit prefix, which
        // every literal naming a field by its table entry takes.
        dst.extend_from_slice(&[flags | mask as u8, (value - mask) as u8]);
    } else {
        encode_int_long(dst, value - mask, flags | mask as u8);
    }
}

/// The form of three bytes and more: the full prefix `first`, then `rest` 7 bits at a time.
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
    /// A new encoder, for a peer whose SETTINGS have not arrived: its table is the
    /// protocol's default 4096 bytes.
    pub fn new() -> Encoder {
        Encoder {
            table: None,
            max_size: ENCODER_TABLE_CAP.min(DEFAULT_TABLE_SIZE),
            pending: None,
        }
    }

    /// The peer's SETTINGS_HEADER_TABLE_SIZE (each time its SETTINGS carry it): the table
    /// becomes that size, at most [`ENCODER_TABLE_CAP`], from the next block on.
    pub fn set_peer_table_size(&mut self, value: usize) {
        let size = value.min(ENCODER_TABLE_CAP);
        let smallest = self
            .pending
            .map_or(size, |(smallest, _)| smallest.min(size));
        self.pending = Some((smallest, size));
    }

    /// Lets the dynamic table go (an idle connection's trim): the next block first empties the
    /// peer's copy with a size update to 0, then restores the size, and indexing starts over.
    pub fn forget(&mut self) {
        if self.table.take().is_some() {
            let latest = self.pending.map_or(self.max_size, |(_, latest)| latest);
            self.pending = Some((0, latest));
        }
    }

    /// The dynamic table size updates due at the start of a block (§4.2, §6.3): the
    /// smallest size asked for since the last block, then the latest if it is larger.
    fn announce_table_size(&mut self, dst: &mut BytesMut) {
        let Some((smallest, latest)) = self.pending.take() else {
            return;
        };
        if smallest == latest && latest == self.max_size {
            return;
        }
        if smallest < latest {
            self.resize(smallest, dst);
        }
        self.resize(latest, dst);
    }

    fn resize(&mut self, size: usize, dst: &mut BytesMut) {
        encode_int(dst, size, 5, 0x20);
        self.max_size = size;
        if let Some(t) = self.table.as_mut() {
            t.evict_to(size);
        }
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
        if self.pending.is_some() {
            self.announce_table_size(dst);
        }
        for (position, (name, value, sensitive)) in fields.into_iter().enumerate() {
            // Room for the whole field (prefixes are at most 1 + 10 bytes
            // per string), so the appends below never reallocate.
            dst.reserve(name.len() + value.len() + 22);
            let static_index = match static_match(name, value) {
                StaticMatch::Full(index) if !sensitive => {
                    dst.extend_from_slice(&[0x80 | index]);
                    continue;
                }
                StaticMatch::Full(index) | StaticMatch::Name(index) => index as usize,
                StaticMatch::None => 0,
            };
            if sensitive
                || name.len() > MAX_INDEXED_LEN
                || value.len() > MAX_INDEXED_LEN
                || name.len() + value.len() + ENTRY_OVERHEAD > self.max_size
            {
                // §6.2.2 without indexing is 0000xxxx; §6.2.3 never indexed is 0001xxxx.
                let flag = if sensitive { 0x10 } else { 0 };
                encode_literal(dst, static_index, name, value, 4, flag);
                continue;
            }
            let table = self.table.get_or_insert_with(|| Box::new(Table::new()));
            // Only fields that may be indexed are in the table: a hit needs no policy.
            // §6.1 Indexed Header Field.
            let slot = Table::hint_slot(position, name);
            if table.holds(table.hints[slot], name, value).is_some() {
                encode_int(dst, table.index_of(table.hints[slot]), 7, 0x80);
                continue;
            }
            // Any seed but 0, under which the empty field would hash to 0.
            let name_hash = hash_bytes(name, 0x9e37_79b9_7f4a_7c15);
            let hash = hash_bytes(value, name_hash);
            if let Some(n) = table.find(hash, name, value) {
                table.hints[slot] = n;
                encode_int(dst, table.index_of(n), 7, 0x80);
                continue;
            }
            let indexing = indexing(name);
            if indexing == Indexing::Never {
                encode_literal(dst, static_index, name, value, 4, 0);
                continue;
            }
            let name_index = match static_index {
                0 => table.find_name(name_hash, name).unwrap_or(0),
                index => index,
            };
            // A name that neither table holds is indexed with its first value, so the values
            // that follow can name it by index (2 bytes) instead of spelling it out: without
            // that, a routing value new on every call sent `jobid` as a 7-byte literal name.
            if indexing == Indexing::Always || name_index == 0 || table.seen_before(hash) {
                // §6.2.1 Literal Header Field with Incremental Indexing: 01xxxxxx.
                encode_literal(dst, name_index, name, value, 6, 0x40);
                table.insert(name, value, (name_hash, hash), self.max_size);
                table.hints[slot] = table.inserted.wrapping_sub(1);
            } else {
                encode_literal(dst, name_index, name, value, 4, 0);
            }
        }
    }

    /// The table's entries, newest first, for tests.
    #[cfg(test)]
    fn entries(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.table.as_ref().map_or_else(Vec::new, |t| {
            t.entries
                .iter()
                .rev()
                .map(|e| (e.name().to_vec(), e.value().to_vec()))
                .collect()
        })
    }

    /// The table's size (§4.1), for tests.
    #[cfg(test)]
    fn table_size(&self) -> usize {
        self.table.as_ref().map_or(0, |t| t.size)
    }
}

/// Appends a literal field representation (§6.2): the name as `name_index` (0: a literal
/// name follows) with a `prefix_bits`-bit prefix under `flags`, then the raw value.
#[inline]
fn encode_literal(
    dst: &mut BytesMut,
    name_index: usize,
    name: &[u8],
    value: &[u8],
    prefix_bits: u8,
    flags: u8,
) {
    let mask = (1usize << prefix_bits) - 1;
    if name_index == 0 {
        dst.extend_from_slice(&[flags]);
        encode_str(dst, name);
    } else if name_index < mask && value.len() < 127 {
        // The common case in two bytes.
        dst.extend_from_slice(&[flags | name_index as u8, value.len() as u8]);
        dst.extend_from_slice(value);
        return;
    } else {
        encode_int(dst, name_index, prefix_bits, flags);
    }
    encode_str(dst, value);
}

#[cfg(test)]
#[path = "hpack_tests.rs"]
mod tests;
