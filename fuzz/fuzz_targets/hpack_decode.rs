//! HPACK decoding (`ringway::wire::hpack::Decoder`) across several header blocks.
//!
//! Input: a 2-byte big-endian maximum table size (the SETTINGS_HEADER_TABLE_SIZE the decoder
//! advertises), then header blocks, each a 2-byte big-endian length and that many bytes (a
//! short last block takes what is left). All blocks go through one decoder, as on one
//! connection, so the dynamic table carries over from block to block.
//!
//! Checks: decoding never panics; the first block that fails ends the input (a connection
//! would be closed with COMPRESSION_ERROR). Every block that decodes is re-encoded with
//! ringway's `Encoder` (sensitivity kept) and decoded again by a second, fresh decoder kept for
//! the whole input: it must decode, to exactly the same fields (names, values, never-indexed
//! flags, order).
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use ringway::wire::hpack::{Decoder, Encoder};

/// Takes a 2-byte big-endian number off the front of `data`.
fn u16_prefix(data: &mut &[u8]) -> usize {
    let n = match **data {
        [a, b, ..] => u16::from_be_bytes([a, b]) as usize,
        [a] => a as usize,
        [] => 0,
    };
    *data = &data[data.len().min(2)..];
    n
}

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    let table_size = u16_prefix(&mut rest);
    let mut decoder = Decoder::new(table_size);
    let mut encoder = Encoder::new();
    let mut redecoder = Decoder::new(4096);
    while !rest.is_empty() {
        let len = u16_prefix(&mut rest).min(rest.len());
        let (block, tail) = rest.split_at(len);
        rest = tail;

        let mut fields = Vec::new();
        if decoder
            .decode(&Bytes::copy_from_slice(block), |f| fields.push(f))
            .is_err()
        {
            return;
        }

        let mut encoded = BytesMut::new();
        encoder.encode_marked(
            fields
                .iter()
                .map(|f| (f.name.as_ref(), f.value.as_ref(), f.sensitive)),
            &mut encoded,
        );
        let mut again = Vec::new();
        if let Err(e) = redecoder.decode(&encoded.freeze(), |f| again.push(f)) {
            panic!("the re-encoded block does not decode: {e}\nfields: {fields:?}");
        }
        assert_eq!(
            fields, again,
            "the re-encoded block decodes to other fields"
        );
    }
});
