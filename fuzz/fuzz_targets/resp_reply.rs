//! The RESP reply parser (`ringway::redis::codec`): what ringway reads from Redis.
//!
//! Input: a `Plan` header (see `src/lib.rs`; option 0 = the connection speaks RESP3, else
//! RESP2), then the bytes Redis sends. They are appended to one read buffer in the plan's chunk
//! sizes and, after each, messages are taken off the buffer (`decode_message`, which for RESP2
//! is `decode`) until it needs more bytes or fails, as the Redis client does.
//!
//! Checks: nothing panics; a call that needs more bytes (`Ok(None)`) consumes nothing; a
//! parsed message consumes a non-empty prefix of the buffer that is exactly one whole message
//! (alone it parses to the same message with nothing left, and without its last byte it is
//! incomplete, not an error); and how the bytes were cut into reads changes nothing: the
//! messages, and whether the stream ended in an error, are the same as when the whole input
//! is parsed from one buffer.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use ringway::redis::codec::{decode_message, Message};
use ringway_fuzz::Plan;

/// Decodes one message off `buf`, checking what it consumed.
fn next(buf: &mut BytesMut, resp3: bool) -> Result<Option<Message>, String> {
    let before = buf.clone();
    let result = decode_message(buf, resp3);
    match &result {
        Ok(None) => assert_eq!(buf, &before, "an incomplete message consumed bytes"),
        Ok(Some(message)) => {
            let used = before.len() - buf.len();
            assert!(used > 0, "{message:?} consumed nothing");
            assert_eq!(&buf[..], &before[used..], "not a prefix was consumed");
            let mut alone = BytesMut::from(&before[..used]);
            assert_eq!(
                decode_message(&mut alone, resp3).as_ref(),
                Ok(&Some(message.clone())),
                "the consumed bytes alone: {:?}",
                &before[..used]
            );
            assert!(alone.is_empty(), "more than one message consumed");
            let mut short = BytesMut::from(&before[..used - 1]);
            assert_eq!(
                decode_message(&mut short, resp3),
                Ok(None),
                "a message without its last byte is not incomplete: {:?}",
                &before[..used]
            );
        }
        Err(_) => {}
    }
    result
}

/// Every message until more bytes are needed or the stream fails; `true` if it failed.
fn drain(buf: &mut BytesMut, resp3: bool, messages: &mut Vec<Message>) -> bool {
    loop {
        match next(buf, resp3) {
            Ok(Some(m)) => messages.push(m),
            Ok(None) => return false,
            Err(_) => return true,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (plan, input) = Plan::parse(data);
    let resp3 = plan.option(0);

    let mut chunked = Vec::new();
    let mut chunked_failed = false;
    let mut buf = BytesMut::new();
    for chunk in plan.chunks(input) {
        buf.extend_from_slice(chunk);
        if drain(&mut buf, resp3, &mut chunked) {
            chunked_failed = true;
            break;
        }
    }

    let mut whole = Vec::new();
    let whole_failed = drain(&mut BytesMut::from(input), resp3, &mut whole);
    assert_eq!(
        chunked, whole,
        "the messages depend on how the bytes arrived"
    );
    assert_eq!(
        chunked_failed, whole_failed,
        "the stream fails depending on how the bytes arrived"
    );
});
