//! RESP on the wire: encoding the one command the request path sends, decoding replies.
//!
//! `GET` is written by hand into the outgoing buffer: it is two bulk strings, and building a
//! `redis_protocol` frame for it would cost an allocation per lookup. Replies are parsed by
//! `redis_protocol`, which splits each frame off the read buffer without copying its payload.

use bytes::{Bytes, BytesMut};
use redis_protocol::resp2::decode::decode_bytes_mut;
use redis_protocol::resp2::types::BytesFrame;

/// What one reply means to a route lookup.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A bulk or simple string (an integer is rendered as its digits).
    Value(Bytes),
    /// The key does not exist.
    Nil,
    /// Redis answered with an error (`-WRONGTYPE ...`).
    Error(String),
}

/// Appends `GET <prefix><key>` to `out`.
pub fn encode_get(out: &mut Vec<u8>, prefix: &[u8], key: &[u8]) {
    out.extend_from_slice(b"*2\r\n$3\r\nGET\r\n$");
    let mut digits = itoa::Buffer::new();
    out.extend_from_slice(digits.format(prefix.len() + key.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(prefix);
    out.extend_from_slice(key);
    out.extend_from_slice(b"\r\n");
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
        BytesFrame::Array(_) => Reply::Error("unexpected array reply".into()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_get_with_prefix() {
        let mut out = Vec::new();
        encode_get(&mut out, b"route:", b"job-7");
        assert_eq!(out, b"*2\r\n$3\r\nGET\r\n$11\r\nroute:job-7\r\n");
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
    fn garbage_is_an_error() {
        let mut buf = BytesMut::from(&b"?what\r\n"[..]);
        assert!(decode(&mut buf).is_err());
    }
}
