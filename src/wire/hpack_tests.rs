//! Unit tests of the HPACK decoder and encoder ([`super`]), kept out of `hpack.rs` itself.

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

/// The dynamic table as bytes, newest first: what [`Encoder::entries`] returns.
fn table_bytes(dec: &Decoder) -> Vec<(Vec<u8>, Vec<u8>)> {
    dec.table
        .iter()
        .map(|f| (f.name.to_vec(), f.value.to_vec()))
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
            checked: false,
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
        &[0x10 | 15, 8, 6, b's', b'e', b'c', b'r', b'e', b't'][..]
    );
    // Sent again: still a never-indexed literal, and nothing went into the table.
    let mut again = BytesMut::new();
    enc.encode_marked(
        got.iter()
            .map(|f| (f.name.as_ref(), f.value.as_ref(), f.sensitive)),
        &mut again,
    );
    assert_eq!(again, out);
    assert_eq!(enc.table_size(), 0);
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
    assert_eq!(
        first[0], 0x83,
        ":method POST is static index 3, no size update first"
    );
    assert_eq!(first[1], 0x86, ":scheme http is static index 6");
    // :path with a literal value: with incremental indexing (01), name index 4.
    assert_eq!(&first[2..4], &[0x44, 15]);
    assert_eq!(&first[4..19], b"/pkg.Svc/Method");
    // :authority, name index 1; content-type, name index 31 fits the 6-bit prefix.
    assert_eq!(&first[19..21], &[0x41, 14]);
    assert_eq!(&first[35..37], &[0x40 | 31, 16]);
    // te: a literal name, indexed.
    assert_eq!(&first[53..57], &[0x40, 2, b't', b'e']);
    // grpc-timeout and jobid: names that neither table holds, so indexed with their first
    // values (01), for the values that follow to name them by index.
    assert_eq!(&first[66..68], &[0x40, 12]);
    assert_eq!(
        table(&dec),
        pairs(&[
            ("user-agent", "grpc-go/1.60"),
            ("jobid", "abc"),
            ("grpc-timeout", "1S"),
            ("te", "trailers"),
            ("content-type", "application/grpc"),
            (":authority", "127.0.0.1:7000"),
            (":path", "/pkg.Svc/Method"),
        ])
    );
    assert_eq!(enc.entries(), table_bytes(&dec));

    // The second time: nine fields, nine bytes.
    let second = round_trip(&mut dec, &mut enc, REQUEST);
    assert_eq!(
        &second[..],
        &[0x83, 0x86, 0xc4, 0xc3, 0xc2, 0xc1, 0xc0, 0xbf, 0xbe]
    );
    assert_eq!(enc.entries(), table_bytes(&dec));
    // Values that change from call to call, under names now in the table: a literal with the
    // name by index, not indexed (0000 1111 + index - 15: 2 bytes), until a value repeats.
    let mut changed = REQUEST.to_vec();
    changed[6] = (b"grpc-timeout", b"2S");
    let third = round_trip(&mut dec, &mut enc, &changed);
    assert_eq!(&third[6..10], &[0x0f, 64 - 15, 2, b'2']);
    assert_eq!(dec.table.len(), 7, "not indexed the first time");
    let fourth = round_trip(&mut dec, &mut enc, &changed);
    // 6-bit prefix: 63 (all ones), then 64 - 63 = 1.
    assert_eq!(
        &fourth[6..8],
        &[0x40 | 0x3f, 1],
        "indexed the second time, name 64"
    );
    assert_eq!(enc.entries(), table_bytes(&dec));

    let response: &[(&[u8], &[u8])] =
        &[(b":status", b"200"), (b"content-type", b"application/grpc")];
    let block = round_trip(&mut dec, &mut enc, response);
    // content-type: five entries newer than it (the four of the first block, `grpc-timeout: 2S`).
    assert_eq!(&block[..], &[0x88, 0x80 | (62 + 5)]);

    let trailers: &[(&[u8], &[u8])] = &[
        (b"grpc-status", b"0"),
        (b"grpc-message", b"deadline exceeded: 1S elapsed"),
    ];
    let block = round_trip(&mut dec, &mut enc, trailers);
    assert_eq!(&block[..2], &[0x40, 11]);
    assert_eq!(&block[2..13], b"grpc-status");
    assert_eq!(
        block[15], 0x40,
        "grpc-message: a new name, indexed the first time"
    );
    let block = round_trip(&mut dec, &mut enc, trailers);
    assert_eq!(
        &block[..],
        &[0xbf, 0xbe],
        "grpc-status 0, then grpc-message"
    );
    assert_eq!(enc.entries(), table_bytes(&dec));
    assert_eq!(enc.table_size(), dec.table_size());

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
    // Too long to index: without indexing, a literal name.
    assert_eq!(&block[..8], &[0x00, 5, b'x', b'-', b'b', b'i', b'g', 0x7f]);
    assert_eq!(&block[8..11], &[0xf1, 0xa1, 0x04]);
    // The empty field, a name new to the table, is indexed the first time; the big one stays
    // a literal.
    assert_eq!(&block[block.len() - 3..], &[0x40, 0, 0]);
    assert_eq!(enc.table_size(), 32);
    let fields: &[(&[u8], &[u8])] = &[(b"x-big", &big[..]), (b"", b"")];
    let again = round_trip(&mut dec, &mut enc, fields);
    assert_eq!(again.len(), block.len() - 2);
    assert_eq!(again[again.len() - 1], 0xbe);
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

/// A block of one field: literal without indexing, name index 4 (:path), `huff` as its
/// Huffman-coded value.
fn huffman_path_block(huff: &[u8]) -> Bytes {
    let mut block = BytesMut::new();
    block.extend_from_slice(&[0x04, 0x80 | huff.len() as u8]);
    block.extend_from_slice(huff);
    block.freeze()
}

#[test]
fn huffman_arena() {
    // Three values of the same letters, so the same coded length; sent in turn, so the
    // decoder's memo of the last two strings never answers and every one is decoded into the
    // arena.
    let value = b"/sample/path";
    let others: [&[u8]; 2] = [b"/elpmas/path", b"/mplesa/path"];
    let (mut huff, mut huff_a, mut huff_b) = (BytesMut::new(), BytesMut::new(), BytesMut::new());
    huffman::encode(value, &mut huff);
    huffman::encode(others[0], &mut huff_a);
    huffman::encode(others[1], &mut huff_b);
    assert_eq!((huff.len(), huff.len()), (huff_a.len(), huff_b.len()));
    let blocks = [
        huffman_path_block(&huff),
        huffman_path_block(&huff_a),
        huffman_path_block(&huff_b),
    ];
    let needed = huff.len() * 8 / 5 + 1;

    let mut dec = Decoder::new(4096);
    let mut values = Vec::new();
    for i in 0..1000 {
        let mut fields = Vec::new();
        dec.decode(&blocks[i % 3], |f| fields.push(f)).unwrap();
        assert_eq!(fields.len(), 1);
        assert_eq!(&fields[0].name[..], b":path");
        let want: &[u8] = match i % 3 {
            0 => value,
            n => others[n - 1],
        };
        assert_eq!(&fields[0].value[..], want);
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
    for i in 0..2000 {
        dec.decode(&blocks[i % 3], |f| {
            assert_eq!(f.value.len(), value.len());
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
    // The copy is its own allocation: not in the arena the values above came from, and not the
    // emitted bytes (which may be the memo's, anywhere in the arena). Only live allocations
    // are compared: a range past the arena's end could hold the copy (it failed so in CI).
    let p = emitted[0].value.as_ptr() as usize;
    let q = again[0].value.as_ptr() as usize;
    assert!(
        !(lo..hi).contains(&q) && !(p..p + value.len()).contains(&q),
        "table entry is a copy"
    );
    assert_ne!(again[0].value.as_ptr(), emitted[0].value.as_ptr());
}

/// The value of the last field of `block`, decoded by `dec`.
fn last_value(dec: &mut Decoder, block: &Bytes) -> Bytes {
    let mut fields = Vec::new();
    dec.decode(block, |f| fields.push(f)).unwrap();
    fields.pop().unwrap().value
}

#[test]
fn huffman_memo() {
    let mut huff = BytesMut::new();
    huffman::encode(b"/bench.Echo/Unary", &mut huff);
    let block = huffman_path_block(&huff);
    let mut dec = Decoder::new(4096);
    // The same coded string again: the same plain bytes, not decoded again.
    let first = last_value(&mut dec, &block);
    let again = last_value(&mut dec, &block);
    assert_eq!(&first[..], b"/bench.Echo/Unary");
    assert_eq!(again, first);
    assert_eq!(again.as_ptr(), first.as_ptr(), "answered by the memo");
    // A different coded string of the same length is decoded, not taken for the last one.
    let mut other = BytesMut::new();
    huffman::encode(b"/bench.Ohce/Unary", &mut other);
    assert_eq!(other.len(), huff.len());
    let different = last_value(&mut dec, &huffman_path_block(&other));
    assert_eq!(&different[..], b"/bench.Ohce/Unary");
    // A string longer than the memo holds is decoded every time.
    let long =
        b"/a.very.long.package.name.for.a.Service.of.some.kind/AndAMethodWithAVeryLongNameIndeed"
            .as_slice();
    let mut coded = BytesMut::new();
    huffman::encode(long, &mut coded);
    assert!(coded.len() > 48 && coded.len() < 127);
    let block = huffman_path_block(&coded);
    let (a, b) = (last_value(&mut dec, &block), last_value(&mut dec, &block));
    assert_eq!((&a[..], &b[..]), (long, long));
    assert_ne!(a.as_ptr(), b.as_ptr(), "decoded twice");
}

/// The memo holds two strings, the one used least lately replaced: a path sent on every call
/// stays remembered while each call also brings a value never seen before.
#[test]
fn huffman_memo_keeps_the_path_among_new_values() {
    let mut path = BytesMut::new();
    huffman::encode(b"/bench.Echo/Unary", &mut path);
    let path_block = huffman_path_block(&path);
    let mut dec = Decoder::new(4096);
    let first = last_value(&mut dec, &path_block);
    for i in 0..5 {
        let value = format!("/job-{i}/Unary");
        let mut coded = BytesMut::new();
        huffman::encode(value.as_bytes(), &mut coded);
        let got = last_value(&mut dec, &huffman_path_block(&coded));
        assert_eq!(&got[..], value.as_bytes());
        let again = last_value(&mut dec, &path_block);
        assert_eq!(
            again.as_ptr(),
            first.as_ptr(),
            "call {i}: the path from the memo"
        );
    }
}

/// The table keeps and compares the low half of a field's hash: values that differ only in
/// their last bytes, like routing values `bench-0` … `bench-999`, must differ there too.
/// (Before the fold, 1,000 such values had 43 distinct low halves.)
#[test]
fn hash_low_half_tells_similar_values_apart() {
    let name_hash = hash_bytes(b"jobid", 0x9e37_79b9_7f4a_7c15);
    for prefix in ["bench-", "job-", "tenant-a/job-", ""] {
        let mut low: Vec<u32> = (0..1000)
            .map(|i| hash_bytes(format!("{prefix}{i}").as_bytes(), name_hash) as u32)
            .collect();
        low.sort_unstable();
        low.dedup();
        assert!(
            low.len() >= 995,
            "{prefix}: {} distinct low halves",
            low.len()
        );
    }
}

/// A routing value that comes back only after hundreds of others would be evicted before
/// its next use: indexing it costs an insertion (and an eviction) on both sides for nothing.
/// The repeat filter must not mistake such values for repeats; values that do repeat soon
/// are indexed and then sent as one byte.
#[test]
fn values_that_rarely_repeat_are_not_indexed() {
    let block = |enc: &mut Encoder, dec: &mut Decoder, job: &str| {
        let job = job.as_bytes().to_vec();
        let fields = [
            (b":path".to_vec(), b"/bench.Echo/Unary".to_vec(), false),
            (
                b"content-type".to_vec(),
                b"application/grpc".to_vec(),
                false,
            ),
            (b"jobid".to_vec(), job, false),
        ];
        round_trip_marked(dec, enc, &fields)
    };
    let (mut enc, mut dec) = (Encoder::new(), Decoder::new(4096));
    for i in 0..4000 {
        let job = format!("bench-{}", i % 1000);
        let b = block(&mut enc, &mut dec, &job);
        // And what is not indexed still names `jobid` by index (the entry made with its
        // first value, `bench-0`, which is one byte itself): two indexed fields, then
        // 0000 1111 + one byte, the length, the value.
        if i % 1000 == 0 {
            assert_eq!(b.len(), if i == 0 { 52 } else { 3 }, "block {i}");
        } else {
            assert_eq!(b.len(), 2 + 2 + 1 + job.len(), "block {i}");
        }
    }
    let inserted = enc.table.as_ref().map_or(0, |t| t.inserted);
    assert!(inserted <= 40, "{inserted} insertions in 4,000 blocks");

    // Eight jobs in turn: each is indexed on its second use, then is one byte.
    let (mut enc, mut dec) = (Encoder::new(), Decoder::new(4096));
    for i in 0..16 {
        block(&mut enc, &mut dec, &format!("bench-{}", i % 8));
    }
    for i in 0..8 {
        let b = block(&mut enc, &mut dec, &format!("bench-{i}"));
        assert_eq!(b.len(), 3, "job {i}: three indexed fields");
    }
}

/// Encodes `fields` (with sensitivity) with `enc`, decodes with `dec`, checks the fields
/// came through as sent and both sides hold the same table; returns the block.
fn round_trip_marked(
    dec: &mut Decoder,
    enc: &mut Encoder,
    fields: &[(Vec<u8>, Vec<u8>, bool)],
) -> Bytes {
    let mut dst = BytesMut::new();
    enc.encode_marked(
        fields.iter().map(|(n, v, s)| (&n[..], &v[..], *s)),
        &mut dst,
    );
    let block = dst.freeze();
    let mut got = Vec::new();
    dec.decode(&block, |f| {
        got.push((f.name.to_vec(), f.value.to_vec(), f.sensitive))
    })
    .unwrap();
    assert_eq!(&got[..], fields);
    assert_eq!(enc.entries(), table_bytes(dec));
    assert_eq!(enc.table_size(), dec.table_size());
    assert_eq!(enc.max_size, dec.max_size);
    assert!(enc.table_size() <= enc.max_size);
    if let Some(t) = &enc.table {
        let bytes: usize = t.entries.iter().map(|e| e.bytes.len()).sum();
        assert_eq!(bytes + 32 * t.entries.len(), t.size);
    }
    block
}

fn owned(fields: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>, bool)> {
    fields
        .iter()
        .map(|&(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec(), false))
        .collect()
}

#[test]
fn encoder_table_size_updates() {
    let mut enc = Encoder::new();
    let mut dec = Decoder::new(4096);
    let fields = owned(&[(":path", "/a.B/C"), ("te", "trailers")]);
    round_trip_marked(&mut dec, &mut enc, &fields);
    assert_eq!(enc.entries().len(), 2);

    // The same size again, or more than our cap: nothing to announce.
    enc.set_peer_table_size(4096);
    enc.set_peer_table_size(1 << 20);
    let block = round_trip_marked(&mut dec, &mut enc, &fields);
    assert_eq!(&block[..], &[0xbf, 0xbe]);

    // Several changes between two blocks: the smallest, then the latest (100 = 31 + 69,
    // 4096 = 31 + 97 + 31 * 128). The table was emptied by the 0 in between.
    enc.set_peer_table_size(300);
    enc.set_peer_table_size(0);
    enc.set_peer_table_size(4096);
    let block = round_trip_marked(&mut dec, &mut enc, &[]);
    assert_eq!(&block[..], &[0x20, 0x3f, 0xe1, 0x1f]);
    assert_eq!(enc.table_size(), 0);

    // Shrinking to 100: one of the two entries (41 and 42 bytes) fits.
    round_trip_marked(&mut dec, &mut enc, &fields);
    enc.set_peer_table_size(100);
    enc.set_peer_table_size(120);
    let block = round_trip_marked(&mut dec, &mut enc, &fields);
    assert_eq!(&block[..4], &[0x3f, 0x45, 0x3f, 0x59]);
    assert_eq!(enc.entries().len(), 2, "re-inserted after the squeeze");

    // 0: nothing is indexed, nothing allocated for it.
    enc.set_peer_table_size(0);
    let block = round_trip_marked(&mut dec, &mut enc, &fields);
    assert_eq!(block[0], 0x20);
    assert_eq!(enc.table_size(), 0);
    let block = round_trip_marked(&mut dec, &mut enc, &fields);
    assert_eq!(&block[..2], &[0x04, 6], ":path without indexing");
    let mut fresh = Encoder::new();
    fresh.set_peer_table_size(0);
    round_trip_marked(&mut Decoder::new(4096), &mut fresh, &fields);
    assert!(fresh.table.is_none());

    // Back up: announced, and used again.
    enc.set_peer_table_size(64);
    round_trip_marked(&mut dec, &mut enc, &fields);
    assert_eq!(
        enc.entries().len(),
        1,
        "only te: trailers (42 bytes) fits in 64"
    );
    enc.set_peer_table_size(65536);
    let block = round_trip_marked(&mut dec, &mut enc, &fields);
    assert_eq!(&block[..3], &[0x3f, 0xe1, 0x1f]);
    let block = round_trip_marked(&mut dec, &mut enc, &fields);
    assert_eq!(block.len(), 2);
}

#[test]
fn encoder_never_indexes_credentials_or_long_values() {
    let mut enc = Encoder::new();
    let mut dec = Decoder::new(4096);
    let long = "x".repeat(MAX_INDEXED_LEN + 1);
    let mut fields = owned(&[
        ("authorization", "Bearer abc"),
        ("cookie", "a=b"),
        ("set-cookie", "a=b"),
        ("proxy-authorization", "Basic abc"),
        (":path", &long),
        ("x-custom", &long),
        ("x-secret", "s3cret"),
    ]);
    fields[6].2 = true;
    for _ in 0..3 {
        round_trip_marked(&mut dec, &mut enc, &fields);
    }
    assert_eq!(enc.table_size(), 0);
    // Exactly MAX_INDEXED_LEN is indexed.
    let max = "y".repeat(MAX_INDEXED_LEN);
    round_trip_marked(&mut dec, &mut enc, &owned(&[(":path", &max)]));
    assert_eq!(enc.entries().len(), 1);
}

#[test]
fn encoder_evicts_as_the_decoder_does() {
    // A small table that turns over: every insertion evicts.
    let mut enc = Encoder::new();
    let mut dec = Decoder::new(4096);
    enc.set_peer_table_size(200);
    for i in 0..500 {
        let path = format!("/svc.S/M{}", i % 7);
        let agent = format!("agent/{}", i % 3);
        let fields = owned(&[(":path", &path), ("user-agent", &agent), ("te", "trailers")]);
        round_trip_marked(&mut dec, &mut enc, &fields);
        assert!(enc.table.as_ref().unwrap().spare.len() <= SPARE_BUFFERS);
    }
    // What the Encoder docs say an entry's bookkeeping costs.
    #[cfg(target_pointer_width = "64")]
    assert_eq!(std::mem::size_of::<Entry>(), 48);
    // Many entries in a full-size table: every one is found (hash buckets hold several).
    let mut enc = Encoder::new();
    let mut dec = Decoder::new(4096);
    let fields: Vec<_> = (0..90)
        .map(|i| (b":path".to_vec(), format!("/{i}").into_bytes(), false))
        .collect();
    round_trip_marked(&mut dec, &mut enc, &fields);
    let block = round_trip_marked(&mut dec, &mut enc, &fields);
    // 90 entries of 32 + 5 + 2..3 bytes (3590): all fit; indices 62..151, two bytes from 127.
    assert_eq!(enc.entries().len(), 90);
    assert_eq!(block.len(), 65 + 25 * 2);
}

#[test]
fn encoder_round_trip_random() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let names: &[&str] = &[
        ":path",
        ":authority",
        ":status",
        "content-type",
        "te",
        "user-agent",
        "grpc-status",
        "grpc-message",
        "grpc-timeout",
        "jobid",
        "x-request-id",
        "authorization",
        "",
        "a-rather-long-custom-metadata-name-that-is-still-under-the-cap",
    ];
    let sizes = [0usize, 1, 31, 32, 40, 64, 100, 256, 1000, 4096, 5000];
    for _ in 0..20 {
        let mut enc = Encoder::new();
        let mut dec = Decoder::new(4096);
        for _ in 0..500 {
            // Now and then the peer's SETTINGS change the table size, once or a few times.
            if rng.next().is_multiple_of(8) {
                for _ in 0..1 + rng.next() % 3 {
                    enc.set_peer_table_size(sizes[(rng.next() % sizes.len() as u64) as usize]);
                }
            }
            let n = (rng.next() % 10) as usize;
            let fields: Vec<_> = (0..n)
                .map(|_| {
                    let name = names[(rng.next() % names.len() as u64) as usize];
                    // Mostly a few repeating values, sometimes a fresh one or a long one.
                    let value = match rng.next() % 10 {
                        0 => format!("fresh-{}", rng.next()),
                        1 => "v".repeat((rng.next() % 200) as usize),
                        k => format!("value-{}", k % 4),
                    };
                    let sensitive = rng.next().is_multiple_of(16);
                    (name.as_bytes().to_vec(), value.into_bytes(), sensitive)
                })
                .collect();
            round_trip_marked(&mut dec, &mut enc, &fields);
        }
    }
}

/// The header blocks of three consecutive unary calls (request, response, trailers), as
/// the old encoder (never indexing: a table of size 0) and as ours sends them. Run with
/// `--nocapture` to see the numbers.
#[test]
fn bytes_per_call() {
    let request: &[(&[u8], &[u8])] = &[
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", b"/bench.Echo/Unary"),
        (b":authority", b"127.0.0.1:20051"),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
        (b"user-agent", b"grpc-rust/0.1"),
        (b"jobid", b"bench"),
    ];
    let response: &[(&[u8], &[u8])] =
        &[(b":status", b"200"), (b"content-type", b"application/grpc")];
    let trailers: &[(&[u8], &[u8])] = &[(b"grpc-status", b"0")];
    let sizes = |table_size: usize| -> Vec<[usize; 3]> {
        // One encoder per direction, as on a connection to a target and one to a client.
        let (mut to_target, mut to_client) = (Encoder::new(), Encoder::new());
        let (mut target, mut client) = (Decoder::new(4096), Decoder::new(4096));
        to_target.set_peer_table_size(table_size);
        to_client.set_peer_table_size(table_size);
        (0..3)
            .map(|_| {
                [
                    round_trip(&mut target, &mut to_target, request).len(),
                    round_trip(&mut client, &mut to_client, response).len(),
                    round_trip(&mut client, &mut to_client, trailers).len(),
                ]
            })
            .collect()
    };
    let before = sizes(0);
    let after = sizes(4096);
    for (call, (b, a)) in before.iter().zip(&after).enumerate() {
        println!(
            "call {}: request {} -> {} bytes, response {} -> {}, trailers {} -> {}",
            call + 1,
            b[0],
            a[0],
            b[1],
            a[1],
            b[2],
            a[2]
        );
    }
    // Before: a size update to 0 in each direction's first block, then the same literals.
    assert_eq!(before, [[100, 21, 15], [99, 20, 15], [99, 20, 15]]);
    assert_eq!(after, [[97, 19, 15], [8, 2, 1], [8, 2, 1]]);
}

#[test]
fn same_bytes_and_hash_see_every_byte() {
    for n in 0..70 {
        let a: Vec<u8> = (0..n as u8).map(|i| i.wrapping_mul(7)).collect();
        assert!(same_bytes(&a, &a.clone()));
        for at in 0..n {
            let mut b = a.clone();
            b[at] ^= 0x20;
            assert!(!same_bytes(&a, &b), "length {n}, differing at {at}");
        }
        if n > 0 {
            // The hash reads the first, middle and last bytes at least.
            for at in [0, n / 2, n - 1] {
                let mut b = a.clone();
                b[at] ^= 0x20;
                assert_ne!(hash_bytes(&a, 1), hash_bytes(&b, 1), "length {n}, at {at}");
            }
        }
        assert_ne!(hash_bytes(&a, 1), hash_bytes(&[&a[..], &[0]].concat(), 1));
    }
}

/// A trimmed connection lets its encoder table go: the next block empties the peer's copy
/// (size 0), restores the size, and indexing starts over, both tables equal throughout.
#[test]
fn encoder_forgets_its_table_and_the_peer_follows() {
    let mut enc = Encoder::new();
    let mut dec = Decoder::new(4096);
    let fields = owned(&[(":path", "/a.B/C"), ("te", "trailers")]);
    round_trip_marked(&mut dec, &mut enc, &fields);
    assert_eq!(enc.entries().len(), 2);
    enc.forget();
    assert!(enc.table.is_none(), "nothing held");
    let block = round_trip_marked(&mut dec, &mut enc, &fields);
    assert_eq!(
        &block[..4],
        &[0x20, 0x3f, 0xe1, 0x1f],
        "size 0, then 4096 again"
    );
    assert_eq!(enc.entries().len(), 2, "indexed again");
    let block = round_trip_marked(&mut dec, &mut enc, &fields);
    assert_eq!(&block[..], &[0xbf, 0xbe]);
    // Forgetting an encoder that holds nothing announces nothing.
    let mut fresh = Encoder::new();
    fresh.forget();
    let block = round_trip_marked(&mut Decoder::new(4096), &mut fresh, &[]);
    assert!(block.is_empty());
}
