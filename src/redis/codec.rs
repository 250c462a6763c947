//! RESP on the wire: encoding the one command the request path sends, decoding replies.
//!
//! `GET` is written by hand into the outgoing buffer: it is two bulk strings, and building a
//! `redis_protocol` frame for it would cost an allocation per lookup. Replies are parsed by
//! `redis_protocol`, which splits each frame off the read buffer without copying its payload.
//! The connection speaks RESP2 unless it asked for RESP3 (`HELLO 3`, for client tracking);
//! then out-of-band push frames can arrive between replies.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use redis_protocol::resp2::decode::decode_bytes_mut;
use redis_protocol::resp2::types::BytesFrame;
use redis_protocol::resp3::decode::complete::decode_bytes_mut as decode3;
use redis_protocol::resp3::types::BytesFrame as Frame3;

/// What one reply means to a route lookup.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A bulk or simple string (an integer is rendered as its digits).
    Value(Bytes),
    /// The key does not exist.
    Nil,
    /// Redis answered with an error (`-WRONGTYPE ...`).
    Error(String),
    /// A well-formed reply that is no value (an array, a map such as HELLO's), named by kind.
    Other(&'static str),
}

/// What one frame from Redis is.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// The reply to the oldest command waiting.
    Reply(Reply),
    /// Client tracking: these keys changed (`None`: everything, e.g. after FLUSHALL).
    Invalidate(Option<Vec<Bytes>>),
    /// Another push (e.g. pub/sub); ignored.
    OtherPush,
}

/// Appends a command of bulk strings to `out`.
pub fn encode_command(out: &mut BytesMut, parts: &[&[u8]]) {
    let mut digits = itoa::Buffer::new();
    out.put_u8(b'*');
    out.extend_from_slice(digits.format(parts.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    for part in parts {
        out.put_u8(b'$');
        out.extend_from_slice(digits.format(part.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends `GET <prefix><key>` to `out`.
pub fn encode_get(out: &mut BytesMut, prefix: &[u8], key: &[u8]) {
    out.extend_from_slice(b"*2\r\n$3\r\nGET\r\n$");
    let mut digits = itoa::Buffer::new();
    out.extend_from_slice(digits.format(prefix.len() + key.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(prefix);
    out.extend_from_slice(key);
    out.extend_from_slice(b"\r\n");
}

/// The reply to nearly every lookup, a whole bulk string (`$<len>\r\n<bytes>\r\n`, the same
/// in RESP2 and RESP3), taken off `buf` without `redis_protocol`: its general decoder cost
/// ~1,300 instructions per lookup of the ~3,200 a call without the route cache spends beyond
/// one with it (callgrind, `bench/profile`, 8ede97c). Anything else — other types, a null, a
/// frame not complete yet, a malformed length — is left to `redis_protocol`.
fn bulk_string(buf: &mut BytesMut) -> Option<Bytes> {
    let rest = buf.strip_prefix(b"$")?;
    // At most 10 digits: lengths up to Redis's 512 MB string limit.
    let digits = rest
        .iter()
        .take(11)
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits == 0 || digits > 10 || rest.get(digits..digits + 2)? != b"\r\n" {
        return None;
    }
    let len = rest[..digits]
        .iter()
        .fold(0usize, |n, &d| n * 10 + (d - b'0') as usize);
    let start = 1 + digits + 2;
    let end = start.checked_add(len)?;
    if buf.get(end..end + 2)? != b"\r\n" {
        return None;
    }
    buf.advance(start);
    let value = buf.split_to(len).freeze();
    buf.advance(2);
    Some(value)
}

/// Takes the first complete frame off the front of `buf`, as RESP3 when `resp3`.
pub fn decode_message(buf: &mut BytesMut, resp3: bool) -> Result<Option<Message>, String> {
    if let Some(value) = bulk_string(buf) {
        return Ok(Some(Message::Reply(Reply::Value(value))));
    }
    decode_frame(buf, resp3)
}

/// [`decode_message`] by `redis_protocol` alone.
fn decode_frame(buf: &mut BytesMut, resp3: bool) -> Result<Option<Message>, String> {
    if !resp3 {
        return Ok(decode(buf)?.map(Message::Reply));
    }
    let frame = match decode3(buf) {
        Ok(Some((frame, _, _))) => frame,
        Ok(None) => return Ok(None),
        Err(e) => return Err(format!("bad RESP3 from Redis: {e:?}")),
    };
    Ok(Some(match frame {
        Frame3::Push { data, .. } => push(data),
        Frame3::BlobString { data, .. } | Frame3::SimpleString { data, .. } => {
            Message::Reply(Reply::Value(data))
        }
        Frame3::VerbatimString { data, .. } => Message::Reply(Reply::Value(data)),
        Frame3::Null => Message::Reply(Reply::Nil),
        Frame3::SimpleError { data, .. } => Message::Reply(Reply::Error(data.to_string())),
        Frame3::BlobError { data, .. } => {
            Message::Reply(Reply::Error(String::from_utf8_lossy(&data).into_owned()))
        }
        Frame3::Number { data, .. } => Message::Reply(Reply::Value(Bytes::from(data.to_string()))),
        // HELLO's map and anything else a lookup never gets: a reply, but not a value.
        Frame3::Map { .. } => Message::Reply(Reply::Other("map")),
        Frame3::Array { .. } => Message::Reply(Reply::Other("array")),
        _ => Message::Reply(Reply::Other("unexpected type")),
    }))
}

fn push(data: Vec<Frame3>) -> Message {
    let mut items = data.into_iter();
    let is_invalidate = matches!(
        items.next(),
        Some(Frame3::BlobString { ref data, .. } | Frame3::SimpleString { ref data, .. })
            if data.eq_ignore_ascii_case(b"invalidate")
    );
    if !is_invalidate {
        return Message::OtherPush;
    }
    match items.next() {
        Some(Frame3::Array { data, .. }) => Message::Invalidate(Some(
            data.into_iter()
                .filter_map(|f| match f {
                    Frame3::BlobString { data, .. } | Frame3::SimpleString { data, .. } => {
                        Some(data)
                    }
                    _ => None,
                })
                .collect(),
        )),
        _ => Message::Invalidate(None),
    }
}

/// Takes the first complete reply off the front of `buf`: `Ok(None)` when more bytes are needed,
/// an error when the bytes are not RESP (the connection must then be dropped).
pub fn decode(buf: &mut BytesMut) -> Result<Option<Reply>, String> {
    let frame = match decode_bytes_mut(buf) {
        Ok(Some((frame, _, _))) => frame,
        Ok(None) => return Ok(None),
        Err(e) => return Err(format!("bad RESP from Redis: {e:?}")),
    };
    Ok(Some(match frame {
        BytesFrame::BulkString(data) | BytesFrame::SimpleString(data) => Reply::Value(data),
        BytesFrame::Null => Reply::Nil,
        BytesFrame::Error(message) => Reply::Error(message.to_string()),
        BytesFrame::Integer(i) => Reply::Value(Bytes::from(i.to_string())),
        BytesFrame::Array(_) => Reply::Other("array"),
    }))
}

/// A reply read for its contents, before the connection pipelines (`ROLE`,
/// `SENTINEL get-master-addr-by-name`, a pub/sub message): the strings at its top level.
#[derive(Debug, Clone, PartialEq)]
pub enum Strings {
    /// A string (one item) or an array's strings and integers, in order; nested arrays and
    /// nulls inside are skipped.
    List(Vec<Bytes>),
    /// A null reply.
    Nil,
    Error(String),
}

/// Takes the first complete reply off `buf` as [`Strings`], skipping RESP3 pushes: `Ok(None)`
/// when more bytes are needed.
pub fn decode_strings(buf: &mut BytesMut, resp3: bool) -> Result<Option<Strings>, String> {
    if !resp3 {
        let frame = match decode_bytes_mut(buf) {
            Ok(Some((frame, _, _))) => frame,
            Ok(None) => return Ok(None),
            Err(e) => return Err(format!("bad RESP from Redis: {e:?}")),
        };
        let item = |frame: BytesFrame| match frame {
            BytesFrame::BulkString(data) | BytesFrame::SimpleString(data) => Some(data),
            BytesFrame::Integer(i) => Some(Bytes::from(i.to_string())),
            _ => None,
        };
        return Ok(Some(match frame {
            BytesFrame::Null => Strings::Nil,
            BytesFrame::Error(message) => Strings::Error(message.to_string()),
            BytesFrame::Array(items) => Strings::List(items.into_iter().filter_map(item).collect()),
            other => Strings::List(item(other).into_iter().collect()),
        }));
    }
    loop {
        let frame = match decode3(buf) {
            Ok(Some((frame, _, _))) => frame,
            Ok(None) => return Ok(None),
            Err(e) => return Err(format!("bad RESP3 from Redis: {e:?}")),
        };
        let item = |frame: Frame3| match frame {
            Frame3::BlobString { data, .. }
            | Frame3::SimpleString { data, .. }
            | Frame3::VerbatimString { data, .. } => Some(data),
            Frame3::Number { data, .. } => Some(Bytes::from(data.to_string())),
            _ => None,
        };
        return Ok(Some(match frame {
            Frame3::Push { .. } => continue,
            Frame3::Null => Strings::Nil,
            Frame3::SimpleError { data, .. } => Strings::Error(data.to_string()),
            Frame3::BlobError { data, .. } => {
                Strings::Error(String::from_utf8_lossy(&data).into_owned())
            }
            Frame3::Array { data, .. } => {
                Strings::List(data.into_iter().filter_map(item).collect())
            }
            other => Strings::List(item(other).into_iter().collect()),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_of_role_and_sentinel_replies() {
        let list = |items: &[&str]| {
            Strings::List(items.iter().map(|i| Bytes::from(i.to_string())).collect())
        };
        let role = b"*3\r\n$6\r\nmaster\r\n:42\r\n*1\r\n*3\r\n$9\r\n127.0.0.1\r\n$4\r\n6380\r\n$2\r\n42\r\n";
        for resp3 in [false, true] {
            let mut buf = BytesMut::from(&role[..]);
            assert_eq!(
                decode_strings(&mut buf, resp3).unwrap(),
                Some(list(&["master", "42"]))
            );
            assert!(buf.is_empty());
        }
        let mut buf = BytesMut::from(&b"*-1\r\n-ERR no\r\n*2\r\n$1\r\nh\r\n$1\r\n1"[..]);
        assert_eq!(decode_strings(&mut buf, false).unwrap(), Some(Strings::Nil));
        assert_eq!(
            decode_strings(&mut buf, false).unwrap(),
            Some(Strings::Error("ERR no".into()))
        );
        assert_eq!(decode_strings(&mut buf, false).unwrap(), None);
        let mut buf = BytesMut::from(&b">2\r\n$10\r\ninvalidate\r\n_\r\n+OK\r\n"[..]);
        assert_eq!(decode_strings(&mut buf, true).unwrap(), Some(list(&["OK"])));
    }

    #[test]
    fn encodes_get_with_prefix() {
        let mut out = BytesMut::new();
        encode_get(&mut out, b"route:", b"job-7");
        assert_eq!(&out[..], b"*2\r\n$3\r\nGET\r\n$11\r\nroute:job-7\r\n");
    }

    /// The bulk-string fast path decodes every stream, cut anywhere, as `redis_protocol` does.
    #[test]
    fn bulk_string_fast_path_agrees_with_redis_protocol() {
        let streams: [&[u8]; 6] = [
            b"$9\r\n127.0.0.1\r\n$0\r\n\r\n$-1\r\n+OK\r\n$5\r\na\r\nb\r\n:42\r\n",
            b"$3\r\nabcXY",
            b"$1x\r\na\r\n",
            b"$\r\n",
            b"$99999999999\r\n",
            b"_\r\n>2\r\n$10\r\ninvalidate\r\n_\r\n$2\r\nok\r\n",
        ];
        for stream in streams {
            for resp3 in [false, true] {
                for cut in 0..=stream.len() {
                    let run =
                        |decode: fn(&mut BytesMut, bool) -> Result<Option<Message>, String>| {
                            let mut buf = BytesMut::from(&stream[..cut]);
                            let mut out = Vec::new();
                            loop {
                                match decode(&mut buf, resp3) {
                                    Ok(Some(m)) => out.push(Ok(m)),
                                    Ok(None) => break,
                                    Err(_) => {
                                        out.push(Err(()));
                                        break;
                                    }
                                }
                            }
                            (out, buf.len())
                        };
                    assert_eq!(
                        run(decode_message),
                        run(decode_frame),
                        "{:?} cut at {cut}, resp3 {resp3}",
                        String::from_utf8_lossy(stream)
                    );
                }
            }
        }
    }

    #[test]
    fn decodes_pipelined_replies_in_order() {
        let mut buf = BytesMut::from(&b"$9\r\n127.0.0.1\r\n$-1\r\n-ERR wrong\r\n$3\r\nab"[..]);
        assert_eq!(
            decode(&mut buf),
            Ok(Some(Reply::Value(Bytes::from("127.0.0.1"))))
        );
        assert_eq!(decode(&mut buf), Ok(Some(Reply::Nil)));
        assert_eq!(decode(&mut buf), Ok(Some(Reply::Error("ERR wrong".into()))));
        assert_eq!(decode(&mut buf), Ok(None));
        buf.extend_from_slice(b"c\r\n");
        assert_eq!(decode(&mut buf), Ok(Some(Reply::Value(Bytes::from("abc")))));
    }

    #[test]
    fn resp3_replies_and_invalidations() {
        let mut buf = BytesMut::from(
            &b">2\r\n$10\r\ninvalidate\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n$3\r\nx:1\r\n_\r\n>2\r\n$10\r\ninvalidate\r\n_\r\n-ERR no\r\n"[..],
        );
        assert_eq!(
            decode_message(&mut buf, true),
            Ok(Some(Message::Invalidate(Some(vec![
                Bytes::from("a"),
                Bytes::from("b")
            ]))))
        );
        assert_eq!(
            decode_message(&mut buf, true),
            Ok(Some(Message::Reply(Reply::Value(Bytes::from("x:1")))))
        );
        assert_eq!(
            decode_message(&mut buf, true),
            Ok(Some(Message::Reply(Reply::Nil)))
        );
        assert_eq!(
            decode_message(&mut buf, true),
            Ok(Some(Message::Invalidate(None)))
        );
        assert_eq!(
            decode_message(&mut buf, true),
            Ok(Some(Message::Reply(Reply::Error("ERR no".into()))))
        );
    }

    #[test]
    fn encodes_commands() {
        let mut out = BytesMut::new();
        encode_command(&mut out, &[b"CLIENT", b"TRACKING", b"ON"]);
        assert_eq!(
            &out[..],
            b"*3\r\n$6\r\nCLIENT\r\n$8\r\nTRACKING\r\n$2\r\nON\r\n"
        );
    }

    #[test]
    fn garbage_is_an_error() {
        let mut buf = BytesMut::from(&b"?what\r\n"[..]);
        assert!(decode(&mut buf).is_err());
    }
}
