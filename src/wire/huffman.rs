//! HPACK Huffman code (RFC 7541 §5.2 and Appendix B).
//!
//! Decoding reads the input through a 64-bit bit buffer and looks the next
//! 12 bits up in `FAST_TABLE`, which gives the one or two whole codes they
//! start with (most letters and digits have 5 to 7 bit codes, so one lookup
//! usually yields two bytes). Codes longer than 12 bits (control characters,
//! bytes >= 0x80, a few punctuation marks) are decoded with the code's
//! canonical structure, and the last few bits of the input (fewer than 12)
//! one code at a time. All tables are built at compile time from the RFC code
//! table, and the builder checks that the code is the canonical code the RFC
//! describes.

use bytes::{BufMut, BytesMut};

// The two tables below are RFC 7541 Appendix B (the code and its bit length
// for each byte value; the EOS symbol, 30 one bits, is handled separately).
// They are copied from the `h2` crate (src/hpack/huffman/table.rs),
// Copyright (c) 2017 h2 authors, MIT license.
const ENCODE_CODES: [u32; 256] = [
    0x1ff8, 0x7fffd8, 0xfffffe2, 0xfffffe3, 0xfffffe4, 0xfffffe5, 0xfffffe6, 0xfffffe7, 0xfffffe8,
    0xffffea, 0x3ffffffc, 0xfffffe9, 0xfffffea, 0x3ffffffd, 0xfffffeb, 0xfffffec, 0xfffffed,
    0xfffffee, 0xfffffef, 0xffffff0, 0xffffff1, 0xffffff2, 0x3ffffffe, 0xffffff3, 0xffffff4,
    0xffffff5, 0xffffff6, 0xffffff7, 0xffffff8, 0xffffff9, 0xffffffa, 0xffffffb, 0x14, 0x3f8,
    0x3f9, 0xffa, 0x1ff9, 0x15, 0xf8, 0x7fa, 0x3fa, 0x3fb, 0xf9, 0x7fb, 0xfa, 0x16, 0x17, 0x18,
    0x0, 0x1, 0x2, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x5c, 0xfb, 0x7ffc, 0x20, 0xffb,
    0x3fc, 0x1ffa, 0x21, 0x5d, 0x5e, 0x5f, 0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68,
    0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0x6e, 0x6f, 0x70, 0x71, 0x72, 0xfc, 0x73, 0xfd, 0x1ffb, 0x7fff0,
    0x1ffc, 0x3ffc, 0x22, 0x7ffd, 0x3, 0x23, 0x4, 0x24, 0x5, 0x25, 0x26, 0x27, 0x6, 0x74, 0x75,
    0x28, 0x29, 0x2a, 0x7, 0x2b, 0x76, 0x2c, 0x8, 0x9, 0x2d, 0x77, 0x78, 0x79, 0x7a, 0x7b, 0x7ffe,
    0x7fc, 0x3ffd, 0x1ffd, 0xffffffc, 0xfffe6, 0x3fffd2, 0xfffe7, 0xfffe8, 0x3fffd3, 0x3fffd4,
    0x3fffd5, 0x7fffd9, 0x3fffd6, 0x7fffda, 0x7fffdb, 0x7fffdc, 0x7fffdd, 0x7fffde, 0xffffeb,
    0x7fffdf, 0xffffec, 0xffffed, 0x3fffd7, 0x7fffe0, 0xffffee, 0x7fffe1, 0x7fffe2, 0x7fffe3,
    0x7fffe4, 0x1fffdc, 0x3fffd8, 0x7fffe5, 0x3fffd9, 0x7fffe6, 0x7fffe7, 0xffffef, 0x3fffda,
    0x1fffdd, 0xfffe9, 0x3fffdb, 0x3fffdc, 0x7fffe8, 0x7fffe9, 0x1fffde, 0x7fffea, 0x3fffdd,
    0x3fffde, 0xfffff0, 0x1fffdf, 0x3fffdf, 0x7fffeb, 0x7fffec, 0x1fffe0, 0x1fffe1, 0x3fffe0,
    0x1fffe2, 0x7fffed, 0x3fffe1, 0x7fffee, 0x7fffef, 0xfffea, 0x3fffe2, 0x3fffe3, 0x3fffe4,
    0x7ffff0, 0x3fffe5, 0x3fffe6, 0x7ffff1, 0x3ffffe0, 0x3ffffe1, 0xfffeb, 0x7fff1, 0x3fffe7,
    0x7ffff2, 0x3fffe8, 0x1ffffec, 0x3ffffe2, 0x3ffffe3, 0x3ffffe4, 0x7ffffde, 0x7ffffdf,
    0x3ffffe5, 0xfffff1, 0x1ffffed, 0x7fff2, 0x1fffe3, 0x3ffffe6, 0x7ffffe0, 0x7ffffe1, 0x3ffffe7,
    0x7ffffe2, 0xfffff2, 0x1fffe4, 0x1fffe5, 0x3ffffe8, 0x3ffffe9, 0xffffffd, 0x7ffffe3, 0x7ffffe4,
    0x7ffffe5, 0xfffec, 0xfffff3, 0xfffed, 0x1fffe6, 0x3fffe9, 0x1fffe7, 0x1fffe8, 0x7ffff3,
    0x3fffea, 0x3fffeb, 0x1ffffee, 0x1ffffef, 0xfffff4, 0xfffff5, 0x3ffffea, 0x7ffff4, 0x3ffffeb,
    0x7ffffe6, 0x3ffffec, 0x3ffffed, 0x7ffffe7, 0x7ffffe8, 0x7ffffe9, 0x7ffffea, 0x7ffffeb,
    0xffffffe, 0x7ffffec, 0x7ffffed, 0x7ffffee, 0x7ffffef, 0x7fffff0, 0x3ffffee,
];

const ENCODE_CODE_LENGTHS: [u8; 256] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28,
    28, 28, 28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5,
    5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6,
    6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22,
    23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22,
    21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20,
    22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19,
    21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22,
    22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
];

/// The end-of-string symbol: 30 one bits. Never valid inside a string.
const EOS: u16 = 256;
const EOS_CODE: u32 = 0x3fff_ffff;
const MAX_LEN: usize = 30;

const fn code_of(sym: usize) -> (u32, usize) {
    if sym == EOS as usize {
        (EOS_CODE, MAX_LEN)
    } else {
        (ENCODE_CODES[sym], ENCODE_CODE_LENGTHS[sym] as usize)
    }
}

/// The canonical structure of the code, used for codes longer than
/// `FAST_BITS`. Codes of one length are consecutive values, assigned in
/// symbol order, and every shorter code (extended to that length) sorts
/// below them. So a prefix `v` of `l` bits that does not start with a
/// shorter code is a code of length `l` exactly when `v < limit[l]`, and
/// its symbol is `sorted[base[l] + v]` (wrapping arithmetic).
struct Canonical {
    limit: [u32; MAX_LEN + 1],
    base: [u32; MAX_LEN + 1],
    /// All 257 symbols, ordered by code.
    sorted: [u16; 257],
}

const fn build_canonical() -> Canonical {
    let mut count = [0u32; MAX_LEN + 1];
    let mut sym = 0;
    while sym <= 256 {
        count[code_of(sym).1] += 1;
        sym += 1;
    }
    let mut limit = [0u32; MAX_LEN + 1];
    let mut base = [0u32; MAX_LEN + 1];
    let mut sorted = [0u16; 257];
    let mut code = 0u32;
    let mut offset = 0u32;
    let mut len = 1;
    while len <= MAX_LEN {
        // Symbols of this length, in symbol order, take consecutive codes.
        base[len] = offset.wrapping_sub(code);
        let mut sym = 0;
        while sym <= 256 {
            let (c, l) = code_of(sym);
            if l == len {
                assert!(c == code, "the RFC 7541 code must be canonical");
                sorted[offset as usize] = sym as u16;
                offset += 1;
                code += 1;
            }
            sym += 1;
        }
        limit[len] = code;
        code <<= 1;
        len += 1;
    }
    assert!(
        offset == 257 && code == 1 << (MAX_LEN + 1),
        "the code must be complete"
    );
    Canonical {
        limit,
        base,
        sorted,
    }
}

static CANONICAL: Canonical = build_canonical();

/// Bits looked up at once on the fast path.
const FAST_BITS: u32 = 12;

// A FAST_TABLE entry (u32) describes the whole codes at the start of a
// 12-bit window:
//
//   bits  0..8   first byte
//   bits  8..16  second byte (if any)
//   bits 16..18  how many bytes: 1 or 2; 0 if the first code is longer than
//                12 bits (then the whole entry is 0)
//   bits 20..24  length of the first code
//   bits 24..28  length of both codes together
const fn build_fast_table() -> [u32; 1 << FAST_BITS] {
    let mut table = [0u32; 1 << FAST_BITS];
    let mut a = 0;
    while a < 256 {
        let (code_a, len_a) = code_of(a);
        if len_a <= FAST_BITS as usize {
            let rest = FAST_BITS as usize - len_a;
            let single = a as u32 | 1 << 16 | (len_a as u32) << 20 | (len_a as u32) << 24;
            let mut i = 0;
            while i < 1 << rest {
                let window = (code_a as usize) << rest | i;
                // Does a second whole code follow in the remaining bits?
                let mut entry = single;
                let mut b = 0;
                while b < 256 {
                    let (code_b, len_b) = code_of(b);
                    if len_b <= rest && (i >> (rest - len_b)) as u32 == code_b {
                        entry = a as u32
                            | (b as u32) << 8
                            | 2 << 16
                            | (len_a as u32) << 20
                            | ((len_a + len_b) as u32) << 24;
                        break;
                    }
                    b += 1;
                }
                table[window] = entry;
                i += 1;
            }
        }
        a += 1;
    }
    table
}

static FAST_TABLE: [u32; 1 << FAST_BITS] = build_fast_table();

/// Decodes one code longer than `FAST_BITS` from the top of `acc`, which
/// holds `nbits` valid bits. Returns the symbol and its length, or `None`
/// if the code runs past the input or is EOS.
#[cold]
fn decode_long(acc: u64, nbits: u32) -> Option<(u8, u32)> {
    let mut len = FAST_BITS + 1;
    while len as usize <= MAX_LEN && len <= nbits {
        let v = (acc >> (64 - len)) as u32;
        if v < CANONICAL.limit[len as usize] {
            let index = CANONICAL.base[len as usize].wrapping_add(v) as usize;
            let sym = *CANONICAL.sorted.get(index)?;
            return if sym == EOS {
                None
            } else {
                Some((sym as u8, len))
            };
        }
        len += 1;
    }
    None
}

/// Appends the Huffman decoding of `src` to `dst`.
///
/// Fails if `src` contains the EOS symbol, ends in more than 7 bits of
/// padding, or ends in padding that is not all ones. On failure `dst` is
/// left as it was. `dst` grows by at most `src.len() * 8 / 5 + 1` bytes
/// before being truncated to the decoded length, so a caller that reserved
/// that much causes no reallocation.
pub fn decode(src: &[u8], dst: &mut BytesMut) -> Result<(), ()> {
    let start = dst.len();
    // Every code is at least 5 bits long, so at most len * 8 / 5 bytes come
    // out; the fast path's speculative second store is bounds-checked.
    let max = src.len() * 8 / 5 + 1;
    dst.resize(start + max, 0);
    let result = decode_into(src, &mut dst[start..]);
    match result {
        Some(n) => {
            dst.truncate(start + n);
            Ok(())
        }
        None => {
            dst.truncate(start);
            Err(())
        }
    }
}

/// Decodes `src` into `out`, returning the decoded length.
#[inline]
fn decode_into(src: &[u8], out: &mut [u8]) -> Option<usize> {
    // The next `nbits` input bits are the top bits of `acc`. Bits below
    // them are either zero or the input bits that follow (the bulk refill
    // reads ahead), so or-ing in later input never corrupts them.
    let mut acc = 0u64;
    let mut nbits = 0u32;
    let mut i = 0usize;
    let mut o = 0usize;
    loop {
        if nbits < 32 {
            if let Some(word) = src.get(i..).and_then(|rest| rest.first_chunk::<8>()) {
                acc |= u64::from_be_bytes(*word) >> nbits;
                let take = (63 - nbits) / 8;
                i += take as usize;
                nbits += take * 8;
            } else {
                while nbits <= 56 {
                    let Some(&byte) = src.get(i) else { break };
                    acc |= (byte as u64) << (56 - nbits);
                    i += 1;
                    nbits += 8;
                }
            }
        }
        // Here nbits >= 32 unless the input is exhausted.
        if nbits < FAST_BITS {
            break;
        }
        let e = FAST_TABLE[(acc >> (64 - FAST_BITS)) as usize];
        if e != 0 {
            if let Some(slot) = out.get_mut(o) {
                *slot = e as u8;
            }
            if let Some(slot) = out.get_mut(o + 1) {
                *slot = (e >> 8) as u8;
            }
            o += ((e >> 16) & 3) as usize;
            let used = e >> 24;
            acc <<= used;
            nbits -= used;
        } else {
            let (sym, len) = decode_long(acc, nbits)?;
            *out.get_mut(o)? = sym;
            o += 1;
            acc <<= len;
            nbits -= len;
        }
    }
    // Fewer than 12 bits are left: whole codes, one at a time, then padding.
    while nbits > 0 {
        let e = FAST_TABLE[(acc >> (64 - FAST_BITS)) as usize];
        let len = (e >> 20) & 0xf;
        if e == 0 || len > nbits {
            break;
        }
        *out.get_mut(o)? = e as u8;
        o += 1;
        acc <<= len;
        nbits -= len;
    }
    // What is left must be padding: fewer than 8 bits, all ones (no code
    // is all ones, since EOS is), so it was not consumed above.
    let pad_ok = nbits == 0 || (nbits < 8 && (acc >> (64 - nbits)) as u32 == (1 << nbits) - 1);
    pad_ok.then_some(o)
}

/// Appends the Huffman encoding of `src` to `dst`, padded with one bits.
#[cfg_attr(not(test), allow(dead_code))] // the relay's encoder writes raw strings
pub fn encode(src: &[u8], dst: &mut BytesMut) {
    let total_bits: usize = src
        .iter()
        .map(|&b| ENCODE_CODE_LENGTHS[b as usize] as usize)
        .sum();
    dst.reserve(total_bits.div_ceil(8));
    // At most 30 bits of a code plus fewer than 32 pending bits fit in 64.
    let mut acc = 0u64;
    let mut bits = 0u32;
    for &b in src {
        let len = ENCODE_CODE_LENGTHS[b as usize] as u32;
        acc = (acc << len) | ENCODE_CODES[b as usize] as u64;
        bits += len;
        if bits >= 32 {
            bits -= 32;
            dst.put_u32((acc >> bits) as u32);
        }
    }
    if bits > 0 {
        let pad = (8 - bits % 8) % 8;
        acc = (acc << pad) | ((1u64 << pad) - 1);
        bits += pad;
        while bits > 0 {
            bits -= 8;
            dst.put_u8((acc >> bits) as u8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn enc(src: &[u8]) -> Vec<u8> {
        let mut dst = BytesMut::new();
        encode(src, &mut dst);
        dst.to_vec()
    }

    fn dec(src: &[u8]) -> Result<Vec<u8>, ()> {
        let mut dst = BytesMut::new();
        decode(src, &mut dst).map(|()| dst.to_vec())
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn rfc_examples() {
        // RFC 7541 C.4.1, C.4.2, C.4.3, C.6.1.
        let cases: &[(&str, &str)] = &[
            ("www.example.com", "f1e3 c2e5 f23a 6ba0 ab90 f4ff"),
            ("no-cache", "a8eb 1064 9cbf"),
            ("custom-key", "25a8 49e9 5ba9 7d7f"),
            ("custom-value", "25a8 49e9 5bb8 e8b4 bf"),
            ("302", "6402"),
            ("private", "aec3 771a 4b"),
            (
                "Mon, 21 Oct 2013 20:13:21 GMT",
                "d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff",
            ),
            (
                "https://www.example.com",
                "9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3",
            ),
        ];
        for &(plain, coded) in cases {
            assert_eq!(enc(plain.as_bytes()), hex(coded), "{plain}");
            assert_eq!(dec(&hex(coded)).unwrap(), plain.as_bytes(), "{plain}");
        }
    }

    #[test]
    fn single_bytes() {
        assert_eq!(enc(b"o"), [0b0011_1111]);
        assert_eq!(enc(b"0"), [0b0000_0111]);
        assert_eq!(enc(b"A"), [(0x21 << 2) | 3]);
        assert_eq!(enc(b""), [0u8; 0]);
        assert_eq!(dec(b"").unwrap(), b"");
    }

    #[test]
    fn round_trip_all_octets_and_lengths() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(dec(&enc(&all)).unwrap(), all);
        // Maximum expansion: '0' has a 5-bit code.
        for len in 0..100 {
            let src = vec![b'0'; len];
            assert_eq!(dec(&enc(&src)).unwrap(), src);
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..600 {
            let src: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            assert_eq!(dec(&enc(&src)).unwrap(), src, "len={len}");
        }
    }

    #[test]
    fn decode_appends() {
        let mut dst = BytesMut::from(&b"ab"[..]);
        decode(&enc(b"cd"), &mut dst).unwrap();
        assert_eq!(&dst[..], b"abcd");
        // On error dst is unchanged.
        assert!(decode(&[0xff, 0xff, 0xff, 0xff], &mut dst).is_err());
        assert_eq!(&dst[..], b"abcd");
    }

    /// A bit-at-a-time decoder written straight from the RFC's definitions.
    fn reference_decode(src: &[u8], codes: &HashMap<(u32, usize), usize>) -> Result<Vec<u8>, ()> {
        let mut out = Vec::new();
        let (mut code, mut len) = (0u32, 0usize);
        for i in 0..src.len() * 8 {
            code = code << 1 | u32::from(src[i / 8] >> (7 - i % 8) & 1);
            len += 1;
            match codes.get(&(code, len)) {
                Some(&256) => return Err(()),
                Some(&sym) => {
                    out.push(sym as u8);
                    (code, len) = (0, 0);
                }
                None => {}
            }
        }
        if len < 8 && code == (1 << len) - 1 {
            Ok(out)
        } else {
            Err(())
        }
    }

    /// The fast decoder agrees with the reference on random (mostly
    /// invalid), padding-heavy and mutated valid inputs.
    #[test]
    fn matches_reference_decoder() {
        let codes: HashMap<(u32, usize), usize> = (0..=256).map(|s| (code_of(s), s)).collect();
        let mut x = 0x1234_5678_9abc_def1u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut valid = 0;
        for iter in 0..30_000 {
            let len = (next() % 40) as usize;
            let mut src: Vec<u8> = match iter % 3 {
                0 => (0..len).map(|_| next() as u8).collect(),
                1 => (0..len)
                    .map(|_| if next() % 4 == 0 { 0xff } else { next() as u8 })
                    .collect(),
                _ => {
                    let plain: Vec<u8> = (0..len)
                        .map(|_| {
                            if next() % 8 == 0 {
                                next() as u8
                            } else {
                                b' ' + (next() % 90) as u8
                            }
                        })
                        .collect();
                    enc(&plain)
                }
            };
            if iter % 5 == 0 && !src.is_empty() {
                let at = (next() as usize) % src.len();
                src[at] ^= 1 << (next() % 8);
            }
            let want = reference_decode(&src, &codes);
            assert_eq!(dec(&src), want, "{src:02x?}");
            valid += usize::from(want.is_ok());
        }
        assert!(valid > 5_000, "{valid}");
    }

    #[test]
    fn rejects_bad_input() {
        // EOS (30 ones) inside the string.
        assert!(dec(&[0xff, 0xff, 0xff, 0xff]).is_err());
        // EOS after a valid symbol: '0' (00000) then 30 ones, 35 bits -> 5 bytes.
        assert!(dec(&[0b0000_0111, 0xff, 0xff, 0xff, 0xff]).is_err());
        // 8 bits of padding.
        assert!(dec(&[0xff]).is_err());
        assert!(dec(&[0x07, 0xff]).is_err());
        // Padding that is not all ones: '0' then 000.
        assert!(dec(&[0x00]).is_err());
        // Padding that is a prefix of a code but has a zero: 'a' (00011) + 010.
        assert!(dec(&[0b0001_1010]).is_err());
        // Valid: 'a' then 111.
        assert_eq!(dec(&[0b0001_1111]).unwrap(), b"a");
        // A truncated long code (first 16 bits of a 28-bit code) is not all ones.
        let mut long = enc(&[0x02]);
        long.truncate(2);
        assert!(dec(&long).is_err());
    }
}
