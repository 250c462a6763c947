//! Writes the seed corpus (`fuzz/corpus/<target>/`) from the definitions below, so the seeds
//! are reproducible and each says what it is:
//!
//!     cargo run --manifest-path fuzz/Cargo.toml --features make-corpus --bin make_corpus
//!     cargo run --manifest-path fuzz/Cargo.toml --features make-corpus --bin make_corpus -- --check
//!
//! (the first (re)writes the seeds, the second only compares them).
//!
//! The HPACK seeds take header blocks from `../shared/hpack-test-case` (beside the repository;
//! `HPACK_TEST_CASE=dir` to point elsewhere); without it, `--check` skips those seeds and a
//! write fails. Files in the corpus directories that this program does not know are left
//! alone (seeds added by hand, see README.md).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ringway::route::MAX_TARGETS;
use ringway::wire::frame::{self, FLAG_END_HEADERS, FLAG_END_STREAM, FLAG_PADDED, FLAG_PRIORITY};
use ringway::wire::hpack::Encoder;
use ringway_fuzz::build::{self, grpc_message};
use ringway_fuzz::Plan;

/// One seed file: target, file name, bytes.
struct Seed {
    target: &'static str,
    name: &'static str,
    bytes: Vec<u8>,
}

fn seed(seeds: &mut Vec<Seed>, target: &'static str, name: &'static str, bytes: Vec<u8>) {
    seeds.push(Seed {
        target,
        name,
        bytes,
    });
}

// ---------------------------------------------------------------------------------------------
// hpack_decode

/// The hpack_decode framing: a 2-byte table size, then each block with a 2-byte length.
fn hpack_input(table_size: u16, blocks: &[Vec<u8>]) -> Vec<u8> {
    let mut out = table_size.to_be_bytes().to_vec();
    for b in blocks {
        out.extend_from_slice(&(b.len() as u16).to_be_bytes());
        out.extend_from_slice(b);
    }
    out
}

fn unhex(s: &str) -> Vec<u8> {
    let s: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    s.chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

/// The `wire` blocks of cases `from..to` of a hpack-test-case story.
fn story_blocks(dir: &Path, story: &str, cases: std::ops::Range<usize>) -> Vec<Vec<u8>> {
    let path = dir.join(format!("{story}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["cases"].as_array().unwrap()[cases]
        .iter()
        .map(|case| unhex(case["wire"].as_str().unwrap()))
        .collect()
}

/// (file name, story, cases): about twenty blocks from three encoders, three blocks per
/// story so the dynamic table carries over; the last story changes the table size.
const STORIES: &[(&str, &str, usize)] = &[
    ("nghttp2_story_00", "nghttp2/story_00", 3),
    ("nghttp2_story_12", "nghttp2/story_12", 3),
    ("go_hpack_story_05", "go-hpack/story_05", 3),
    ("go_hpack_story_20", "go-hpack/story_20", 3),
    ("python_hpack_story_01", "python-hpack/story_01", 2),
    ("python_hpack_story_15", "python-hpack/story_15", 3),
    (
        "nghttp2_change_table_size_story_00",
        "nghttp2-change-table-size/story_00",
        3,
    ),
];

fn hpack_seeds(seeds: &mut Vec<Seed>, test_cases: Option<&Path>) {
    const T: &str = "hpack_decode";
    if let Some(dir) = test_cases {
        for &(name, story, n) in STORIES {
            let blocks = story_blocks(dir, story, 0..n);
            seed(seeds, T, name, hpack_input(4096, &blocks));
        }
    }
    // RFC 7541 C.3: three requests without Huffman coding, sharing the dynamic table.
    let c3 = [
        "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
        "8286 84be 5808 6e6f 2d63 6163 6865",
        "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
    ];
    let blocks: Vec<Vec<u8>> = c3.iter().map(|h| unhex(h)).collect();
    seed(seeds, T, "rfc7541_c3_requests", hpack_input(4096, &blocks));
    // A size update to the maximum, a never-indexed literal with a new name, an indexed field.
    let block = unhex("3fe11f 10 0870617373776f7264 06736563726574 82");
    seed(
        seeds,
        T,
        "size_update_never_indexed",
        hpack_input(4096, &[block]),
    );
    // A 64-byte table: each 55-byte entry evicts the previous one; 0xbe is the newest.
    let entry = |v: &str| {
        let mut b = unhex("400a 6375 7374 6f6d 2d6b 6579");
        b.push(v.len() as u8);
        b.extend_from_slice(v.as_bytes());
        b
    };
    let blocks = [entry("custom-header"), entry("another-value"), unhex("be")];
    seed(seeds, T, "small_table_eviction", hpack_input(64, &blocks));
    // A table of 0: inserting empties it; then an empty block.
    let blocks = [entry("x"), Vec::new(), unhex("82")];
    seed(seeds, T, "zero_table", hpack_input(0, &blocks));
}

// ---------------------------------------------------------------------------------------------
// conn_recv_server

const REQUEST: &[(&str, &str)] = &[
    (":method", "POST"),
    (":scheme", "http"),
    (":path", "/pkg.Service/Method"),
    (":authority", "example.com"),
    ("content-type", "application/grpc"),
    ("te", "trailers"),
];

/// Plan options and actions of the server target.
const S_GRACEFUL: u8 = 1;
const S_PING: u8 = 2;
const S_ABRUPT: u8 = 4;
const S_RETIRE: u8 = 8;
const DROP: u8 = 0;
const TRAILERS_ONLY: u8 = 1;
const ECHO: u8 = 2;
const HOLD: u8 = 3;

/// Actions for streams 0.. (2 bits each).
fn actions(list: &[u8]) -> u8 {
    list.iter()
        .enumerate()
        .fold(0, |acc, (i, &a)| acc | a << (2 * i))
}

/// The client's preface, an empty SETTINGS and the ACK of the server's.
fn client_start() -> Vec<u8> {
    let mut out = frame::PREFACE.to_vec();
    build::settings(&mut out, &[]);
    build::settings_ack(&mut out);
    out
}

fn server_seeds(seeds: &mut Vec<Seed>, test_cases: Option<&Path>) {
    const T: &str = "conn_recv_server";
    let hello = grpc_message(b"hello");
    let input = |options: u8, acts: &[u8], sizes: &[u8], body: &[u8]| {
        let mut v = Plan::encode(options, actions(acts), sizes);
        v.extend_from_slice(body);
        v
    };

    // The preface alone, and a preface that is not one.
    seed(
        seeds,
        T,
        "preface_settings",
        input(0, &[], &[], &client_start()),
    );
    let mut bad = b"PRI * HTTP/1.1\r\n\r\nSM\r\n\r\n".to_vec();
    build::settings(&mut bad, &[]);
    seed(seeds, T, "bad_preface", input(0, &[], &[], &bad));

    // A gRPC call, answered each of the four ways.
    let mut call = client_start();
    let mut enc = Encoder::new();
    build::headers(&mut call, &mut enc, 1, REQUEST, false);
    build::data(&mut call, 1, &hello, true);
    for (name, action) in [
        ("unary_dropped", DROP),
        ("unary_trailers_only", TRAILERS_ONLY),
        ("unary_echo", ECHO),
        ("unary_held", HOLD),
    ] {
        seed(seeds, T, name, input(0, &[action], &[], &call));
    }
    // The same call one byte per read, and in reads of mixed sizes.
    seed(
        seeds,
        T,
        "unary_echo_bytewise",
        input(0, &[ECHO], &[1], &call),
    );
    seed(
        seeds,
        T,
        "unary_echo_mixed_reads",
        input(0, &[ECHO], &[7, 3, 100, 0], &call),
    );

    // A GET that ends with its head.
    let mut get = client_start();
    let mut enc = Encoder::new();
    build::headers(
        &mut get,
        &mut enc,
        1,
        &[(":method", "GET"), (":scheme", "https"), (":path", "/")],
        true,
    );
    seed(
        seeds,
        T,
        "get_head_only",
        input(0, &[TRAILERS_ONLY], &[], &get),
    );

    // Two streams, the second's DATA first, trailers on the first.
    let mut two = client_start();
    let mut enc = Encoder::new();
    build::headers(&mut two, &mut enc, 1, REQUEST, false);
    build::headers(&mut two, &mut enc, 3, REQUEST, false);
    build::data(&mut two, 3, &hello, true);
    build::data(&mut two, 1, &hello, false);
    build::headers(&mut two, &mut enc, 1, &[("x-checksum", "abc")], true);
    seed(
        seeds,
        T,
        "two_streams_trailers",
        input(0, &[ECHO, HOLD], &[30, 0], &two),
    );

    // A header block split into HEADERS + 2 CONTINUATION; padded and prioritized HEADERS;
    // padded DATA.
    let mut cont = client_start();
    let block = build::block(&mut Encoder::new(), REQUEST);
    let (a, rest) = block.split_at(10);
    let (b, c) = rest.split_at(10);
    build::frame(&mut cont, frame::HEADERS, 0, 1, a);
    build::frame(&mut cont, frame::CONTINUATION, 0, 1, b);
    build::frame(&mut cont, frame::CONTINUATION, FLAG_END_HEADERS, 1, c);
    let mut padded = vec![3];
    padded.extend_from_slice(&hello);
    padded.extend_from_slice(&[0; 3]);
    build::frame(
        &mut cont,
        frame::DATA,
        FLAG_PADDED | FLAG_END_STREAM,
        1,
        &padded,
    );
    let mut prio = vec![2, 0x80, 0, 0, 1, 16];
    prio.extend_from_slice(&build::block(&mut Encoder::new(), REQUEST));
    prio.extend_from_slice(&[0; 2]);
    let flags = FLAG_PADDED | FLAG_PRIORITY | FLAG_END_HEADERS | FLAG_END_STREAM;
    build::frame(&mut cont, frame::HEADERS, flags, 3, &prio);
    seed(
        seeds,
        T,
        "continuation_padding_priority",
        input(0, &[ECHO, TRAILERS_ONLY], &[], &cont),
    );

    // The client resets its call; then many HEADERS + RST_STREAM pairs (rapid reset).
    let mut resets = client_start();
    let mut enc = Encoder::new();
    for id in (1..=15).step_by(2) {
        build::headers(&mut resets, &mut enc, id, REQUEST, false);
        build::rst(&mut resets, id, 8);
    }
    build::data(&mut resets, 1, &hello, false);
    seed(seeds, T, "rapid_reset", input(0, &[HOLD; 4], &[], &resets));

    // Control frames: WINDOW_UPDATE, PING, PRIORITY, an unknown type, then GOAWAY.
    let mut control = client_start();
    build::window_update(&mut control, 0, 1 << 20);
    build::ping(&mut control, false, *b"12345678");
    build::frame(&mut control, frame::PRIORITY, 0, 3, &[0, 0, 0, 1, 16]);
    build::frame(&mut control, 0xfa, 0xff, 5, b"unknown");
    let mut enc = Encoder::new();
    build::headers(&mut control, &mut enc, 1, REQUEST, false);
    build::window_update(&mut control, 1, 1000);
    build::goaway(&mut control, 0, 0, b"bye");
    seed(seeds, T, "control_frames", input(0, &[ECHO], &[], &control));

    // The client's SETTINGS make the response crawl: a window of 3 bytes, then updates.
    let mut slow = frame::PREFACE.to_vec();
    build::settings(
        &mut slow,
        &[
            (frame::SETTINGS_HEADER_TABLE_SIZE, 256),
            (frame::SETTINGS_ENABLE_PUSH, 0),
            (frame::SETTINGS_MAX_CONCURRENT_STREAMS, 10),
            (frame::SETTINGS_INITIAL_WINDOW_SIZE, 3),
            (frame::SETTINGS_MAX_FRAME_SIZE, 20_000),
            (frame::SETTINGS_MAX_HEADER_LIST_SIZE, 1 << 16),
        ],
    );
    build::settings_ack(&mut slow);
    let mut enc = Encoder::new();
    build::headers(&mut slow, &mut enc, 1, REQUEST, false);
    build::data(&mut slow, 1, &hello, true);
    build::window_update(&mut slow, 1, 4);
    build::window_update(&mut slow, 1, 100);
    seed(
        seeds,
        T,
        "small_window_echo",
        input(0, &[ECHO], &[60, 20, 0], &slow),
    );

    // A request whose header list passes 16 KiB through the dynamic table: 431.
    let mut big = client_start();
    // The encoder's first block starts with a table size update to 0 (0x20): make it 4,096.
    let mut block = vec![0x3f, 0xe1, 0x1f];
    block.extend_from_slice(&build::block(&mut Encoder::new(), REQUEST)[1..]);
    block.extend_from_slice(&[0x40, 5]);
    block.extend_from_slice(b"x-big");
    // A 3,000-byte value: 127 in the prefix, then 2,873 = 57 + 22 * 128.
    block.extend_from_slice(&[0x7f, 0x80 | 57, 22]);
    block.extend_from_slice(&[b'a'; 3000]);
    block.extend_from_slice(&[0xbe; 6]);
    build::frame(
        &mut big,
        frame::HEADERS,
        FLAG_END_HEADERS | FLAG_END_STREAM,
        1,
        &block,
    );
    seed(
        seeds,
        T,
        "header_list_too_large",
        input(0, &[ECHO], &[], &big),
    );

    // Browsers' requests from hpack-test-case (Huffman, dynamic table) on streams 1, 3, 5;
    // and ones with `connection: keep-alive`, which HTTP/2 forbids (RST_STREAM).
    if let Some(dir) = test_cases {
        for (name, story) in [
            ("browser_requests", "nghttp2/story_00"),
            ("browser_requests_connection_field", "nghttp2/story_12"),
        ] {
            let mut browser = client_start();
            for (i, block) in story_blocks(dir, story, 0..3).iter().enumerate() {
                let flags = FLAG_END_HEADERS | FLAG_END_STREAM;
                build::frame(&mut browser, frame::HEADERS, flags, 1 + 2 * i as u32, block);
            }
            let acts = [TRAILERS_ONLY, DROP, ECHO];
            seed(seeds, T, name, input(0, &acts, &[], &browser));
        }
    }

    // Shutdowns: graceful (its PING acknowledged, a stream arriving meanwhile), with a PING of
    // ours; abrupt; retire.
    let mut drain = client_start();
    let mut enc = Encoder::new();
    build::headers(&mut drain, &mut enc, 1, REQUEST, false);
    let first = drain.len() as u8;
    build::headers(&mut drain, &mut enc, 3, REQUEST, true);
    build::ping(&mut drain, true, *b"rw-drain");
    build::ping(&mut drain, true, *b"rw-alive");
    build::data(&mut drain, 1, &hello, true);
    seed(
        seeds,
        T,
        "graceful_shutdown",
        input(S_GRACEFUL | S_PING, &[ECHO, ECHO], &[first, 0], &drain),
    );
    seed(
        seeds,
        T,
        "abrupt_shutdown",
        input(S_ABRUPT, &[ECHO, HOLD], &[first, 0], &drain),
    );
    seed(
        seeds,
        T,
        "retire",
        input(S_RETIRE, &[HOLD, ECHO], &[first, 0], &drain),
    );
}

// ---------------------------------------------------------------------------------------------
// conn_recv_client

/// Plan options and actions of the client target.
const C_GRACEFUL: u8 = 1;
const C_PING: u8 = 2;
const C_ABORT: u8 = 4;
const C_TWO_STREAMS: u8 = 8;
const C_HEAD_ONLY: u8 = 16;
const READ: u8 = 0;
const NO_RELEASE: u8 = 1;
const CANCEL: u8 = 2;
const UPLOAD: u8 = 3;

/// The server's SETTINGS and the ACK of the client's.
fn server_start(params: &[(u16, u32)]) -> Vec<u8> {
    let mut out = Vec::new();
    build::settings(&mut out, params);
    build::settings_ack(&mut out);
    out
}

const RESPONSE: &[(&str, &str)] = &[(":status", "200"), ("content-type", "application/grpc")];
const OK: &[(&str, &str)] = &[("grpc-status", "0")];

/// A whole response on `id`: head, one message, trailers.
fn response(out: &mut Vec<u8>, enc: &mut Encoder, id: u32) {
    build::headers(out, enc, id, RESPONSE, false);
    build::data(out, id, &grpc_message(b"world"), false);
    build::headers(out, enc, id, OK, true);
}

fn client_seeds(seeds: &mut Vec<Seed>) {
    const T: &str = "conn_recv_client";
    let input = |options: u8, acts: &[u8], sizes: &[u8], body: &[u8]| {
        let mut v = Plan::encode(options, actions(acts), sizes);
        v.extend_from_slice(body);
        v
    };

    let mut unary = server_start(&[]);
    response(&mut unary, &mut Encoder::new(), 1);
    seed(seeds, T, "unary", input(0, &[READ], &[], &unary));
    seed(seeds, T, "unary_bytewise", input(0, &[READ], &[1], &unary));
    seed(
        seeds,
        T,
        "unary_no_release",
        input(0, &[NO_RELEASE], &[5, 40, 0], &unary),
    );
    seed(
        seeds,
        T,
        "unary_cancelled",
        input(0, &[CANCEL], &[18, 0], &unary),
    );
    seed(
        seeds,
        T,
        "head_only_request",
        input(C_HEAD_ONLY, &[READ], &[], &unary),
    );

    // Trailers-only, and an informational 100 before the response.
    let mut only = server_start(&[]);
    let mut enc = Encoder::new();
    build::headers(
        &mut only,
        &mut enc,
        1,
        &[(":status", "200"), ("grpc-status", "12")],
        true,
    );
    seed(seeds, T, "trailers_only", input(0, &[READ], &[], &only));
    let mut info = server_start(&[]);
    let mut enc = Encoder::new();
    build::headers(&mut info, &mut enc, 1, &[(":status", "100")], false);
    response(&mut info, &mut enc, 1);
    seed(seeds, T, "informational_100", input(0, &[READ], &[], &info));

    // Two streams, answered interleaved, one a byte at a time.
    let mut two = server_start(&[(frame::SETTINGS_MAX_CONCURRENT_STREAMS, 100)]);
    let mut enc = Encoder::new();
    build::headers(&mut two, &mut enc, 3, RESPONSE, false);
    response(&mut two, &mut enc, 1);
    build::data(&mut two, 3, &grpc_message(b"three"), true);
    seed(
        seeds,
        T,
        "two_streams",
        input(C_TWO_STREAMS, &[READ, NO_RELEASE], &[1], &two),
    );

    // A response head in HEADERS + CONTINUATION, padded DATA.
    let mut cont = server_start(&[]);
    let block = build::block(&mut Encoder::new(), RESPONSE);
    let (a, b) = block.split_at(4);
    build::frame(&mut cont, frame::HEADERS, 0, 1, a);
    build::frame(&mut cont, frame::CONTINUATION, FLAG_END_HEADERS, 1, b);
    let mut padded = vec![4];
    padded.extend_from_slice(&grpc_message(b"world"));
    padded.extend_from_slice(&[0; 4]);
    build::frame(
        &mut cont,
        frame::DATA,
        FLAG_PADDED | FLAG_END_STREAM,
        1,
        &padded,
    );
    seed(
        seeds,
        T,
        "continuation_padded",
        input(0, &[READ], &[], &cont),
    );

    // The server refuses the stream; goes away; pushes (a connection error).
    let mut refused = server_start(&[]);
    build::rst(&mut refused, 1, 7);
    seed(seeds, T, "rst_refused", input(0, &[READ], &[], &refused));
    let mut away = server_start(&[]);
    build::goaway(&mut away, 1, 0, b"");
    response(&mut away, &mut Encoder::new(), 1);
    build::goaway(&mut away, 0, 2, b"internal");
    seed(
        seeds,
        T,
        "goaway",
        input(C_TWO_STREAMS, &[READ, READ], &[], &away),
    );
    let mut push = server_start(&[]);
    build::frame(
        &mut push,
        frame::PUSH_PROMISE,
        FLAG_END_HEADERS,
        1,
        &[0, 0, 0, 2, 0x82],
    );
    seed(seeds, T, "push_promise", input(0, &[READ], &[], &push));

    // The first frame is not SETTINGS.
    let mut ping_first = Vec::new();
    build::ping(&mut ping_first, false, [0; 8]);
    seed(seeds, T, "ping_first", input(0, &[READ], &[], &ping_first));

    // An 80 KB upload through window updates, with SETTINGS changing the stream window and
    // the frame size; a PING of the server's and the ACK of ours.
    let mut upload = server_start(&[
        (frame::SETTINGS_INITIAL_WINDOW_SIZE, 1000),
        (frame::SETTINGS_MAX_FRAME_SIZE, 16_385),
        (frame::SETTINGS_HEADER_TABLE_SIZE, 0),
    ]);
    build::ping(&mut upload, false, *b"server!!");
    build::window_update(&mut upload, 1, 30_000);
    build::window_update(&mut upload, 0, 30_000);
    build::settings(
        &mut upload,
        &[(frame::SETTINGS_INITIAL_WINDOW_SIZE, 70_000)],
    );
    build::window_update(&mut upload, 0, 40_000);
    build::ping(&mut upload, true, *b"rw-alive");
    response(&mut upload, &mut Encoder::new(), 1);
    seed(
        seeds,
        T,
        "upload_window_updates",
        input(C_PING, &[UPLOAD], &[18, 17, 30, 0], &upload),
    );

    // Shutdowns: graceful after the first read, abort at the end.
    seed(
        seeds,
        T,
        "graceful_shutdown",
        input(C_GRACEFUL | C_TWO_STREAMS, &[READ, READ], &[18, 0], &unary),
    );
    seed(
        seeds,
        T,
        "abort",
        input(C_ABORT, &[NO_RELEASE], &[30, 0], &unary),
    );
}

// ---------------------------------------------------------------------------------------------
// frame_parse, resp_reply, route_value

fn frame_seeds(seeds: &mut Vec<Seed>) {
    const T: &str = "frame_parse";
    // Parameters: max frame (0 = 16,384), end flag, stream id; then frames.
    let mut frames = vec![0, 1, 0, 0, 0, 1];
    frames.extend_from_slice(&server_start(&[(frame::SETTINGS_MAX_FRAME_SIZE, 20_000)]));
    response(&mut frames, &mut Encoder::new(), 1);
    build::rst(&mut frames, 3, 8);
    build::goaway(&mut frames, 3, 0, b"done");
    seed(seeds, T, "response_frames", frames.clone());
    // Split at 7 bytes; a partial frame at the end; the reserved bit set.
    let mut split = vec![7, 0, 0x80, 0, 0, 5];
    split.extend_from_slice(&frames[6..frames.len() - 3]);
    seed(seeds, T, "small_max_frame_partial", split);
    let mut preface = vec![1, 1, 0, 0, 0, 0];
    preface.extend_from_slice(&client_start());
    seed(seeds, T, "client_preface", preface);
    seed(seeds, T, "tiny", vec![0x10, 0x00, 0x00]);
}

fn resp_seeds(seeds: &mut Vec<Seed>) {
    const T: &str = "resp_reply";
    const RESP3: u8 = 1;
    let input = |options: u8, sizes: &[u8], body: &[u8]| {
        let mut v = Plan::encode(options, 0, sizes);
        v.extend_from_slice(body);
        v
    };
    let replies: &[u8] = b"$9\r\n127.0.0.1\r\n$-1\r\n-ERR wrong\r\n:42\r\n+OK\r\n$0\r\n\r\n";
    seed(seeds, T, "resp2_replies", input(0, &[], replies));
    seed(seeds, T, "resp2_replies_bytewise", input(0, &[1], replies));
    let arrays: &[u8] = b"*2\r\n$1\r\na\r\n$1\r\nb\r\n*-1\r\n*0\r\n*1\r\n*1\r\n:1\r\n";
    seed(seeds, T, "resp2_arrays", input(0, &[3, 5], arrays));
    seed(
        seeds,
        T,
        "resp2_garbage",
        input(0, &[], b"+OK\r\n?what\r\n"),
    );
    let push: &[u8] = b">2\r\n$10\r\ninvalidate\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n$3\r\nx:1\r\n_\r\n\
        >2\r\n$10\r\ninvalidate\r\n_\r\n-ERR no\r\n>3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n";
    seed(seeds, T, "resp3_invalidate", input(RESP3, &[], push));
    seed(
        seeds,
        T,
        "resp3_invalidate_chunked",
        input(RESP3, &[2, 9], push),
    );
    let hello: &[u8] = b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$5\r\n7.2.4\r\n\
        $5\r\nproto\r\n:3\r\n$2\r\nid\r\n:5\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n\
        $4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n";
    seed(seeds, T, "resp3_hello", input(RESP3, &[], hello));
    let types: &[u8] = b"#t\r\n,1.5\r\n(12345678901234567890\r\n=15\r\ntxt:Some string\r\n\
        !21\r\nSYNTAX invalid syntax\r\n~2\r\n:1\r\n:2\r\n|1\r\n+key\r\n+val\r\n+OK\r\n\
        $?\r\n;4\r\nHell\r\n;0\r\n";
    seed(seeds, T, "resp3_types", input(RESP3, &[], types));
}

fn route_seeds(seeds: &mut Vec<Seed>) {
    const T: &str = "route_value";
    let values: &[(&str, &[u8])] = &[
        ("one", b"127.0.0.1:20051"),
        ("several", b"a.svc:1, [::1]:2 ,10.0.0.3:3"),
        ("dns_name", b"backend-1.example.internal:50051"),
        ("ipv6", b"[2001:db8::1]:443"),
        ("no_port", b"host"),
        ("port_too_large", b"host:99999"),
        ("port_zero", b"host:0"),
        ("empty_target", b"a:1,,b:2"),
        ("not_utf8", b"\xff:1"),
        ("unclosed_bracket", b"[::1:80"),
        ("spaces", b" \th:1 ,\xc2\xa0g:2"),
        (
            "schemes",
            b"https://backend-1.example.internal:50051, http://[::1]:2,c:3",
        ),
        ("bad_scheme", b"ftp://a:1"),
        ("scheme_without_port", b"https://a"),
    ];
    for &(name, value) in values {
        seed(seeds, T, name, value.to_vec());
    }
    let mut max = "h:1,".repeat(MAX_TARGETS);
    max.pop();
    seed(seeds, T, "max_targets", max.into_bytes());
    let mut over = "h:1,".repeat(MAX_TARGETS + 1);
    over.pop();
    seed(seeds, T, "too_many_targets", over.into_bytes());
}

// ---------------------------------------------------------------------------------------------

fn main() -> ExitCode {
    let check = std::env::args().any(|a| a == "--check");
    let fuzz_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let test_cases = std::env::var_os("HPACK_TEST_CASE")
        .map(PathBuf::from)
        .unwrap_or_else(|| fuzz_dir.join("../../shared/hpack-test-case"));
    let test_cases = test_cases.is_dir().then_some(test_cases);
    if test_cases.is_none() {
        if !check {
            eprintln!("make_corpus: no hpack-test-case (set HPACK_TEST_CASE=dir)");
            return ExitCode::FAILURE;
        }
        eprintln!("make_corpus: no hpack-test-case: its seeds are not checked");
    }

    let mut seeds = Vec::new();
    hpack_seeds(&mut seeds, test_cases.as_deref());
    server_seeds(&mut seeds, test_cases.as_deref());
    client_seeds(&mut seeds);
    frame_seeds(&mut seeds);
    resp_seeds(&mut seeds);
    route_seeds(&mut seeds);

    let mut stale = 0;
    for s in &seeds {
        let dir = fuzz_dir.join("corpus").join(s.target);
        let path = dir.join(s.name);
        if check {
            if std::fs::read(&path).ok().as_deref() != Some(&s.bytes[..]) {
                eprintln!("make_corpus: {} is missing or differs", path.display());
                stale += 1;
            }
        } else {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &s.bytes).unwrap();
        }
    }
    if stale > 0 {
        eprintln!("make_corpus: {stale} seeds stale: run without --check to rewrite them");
        return ExitCode::FAILURE;
    }
    let verb = if check { "checked" } else { "wrote" };
    println!("make_corpus: {verb} {} seeds", seeds.len());
    ExitCode::SUCCESS
}
