//! A tiny blocking RESP2 client, enough to drive a test's `redis-server`:
//! one command per TCP connection, replies parsed in full. It owns the wire
//! format only; the server process is [`crate::redis`]'s.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long a test waits for Redis to accept, and then to answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Status(String),
    /// `-ERR ...`
    Error(String),
    /// `:1`
    Integer(i64),
    /// `$n` bulk string; `None` for the null bulk string `$-1`.
    Bulk(Option<Vec<u8>>),
    /// `*n`; `None` for the null array `*-1`.
    Array(Option<Vec<Reply>>),
}

/// Sends one command (`args[0]` is its name) to the Redis at `addr` and reads the reply.
pub fn command(addr: SocketAddr, args: &[&[u8]]) -> io::Result<Reply> {
    command_after(addr, &[], args)
}

/// As [`command`], after `setup` commands on the same connection (`AUTH`, `SELECT`); an error
/// reply to one of them is an error.
pub fn command_after(
    addr: SocketAddr,
    setup: &[Vec<Vec<u8>>],
    args: &[&[u8]],
) -> io::Result<Reply> {
    let mut stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.set_nodelay(true)?;
    let mut out = Vec::new();
    for command in setup {
        let parts: Vec<&[u8]> = command.iter().map(Vec::as_slice).collect();
        out.extend(encode(&parts));
    }
    out.extend(encode(args));
    stream.write_all(&out)?;
    let mut reader = BufReader::new(stream);
    for command in setup {
        if let Reply::Error(e) = read_reply(&mut reader)? {
            let name = String::from_utf8_lossy(&command[0]).into_owned();
            return Err(io::Error::other(format!("{name} refused: {e}")));
        }
    }
    read_reply(&mut reader)
}

/// The RESP array of bulk strings that carries a command.
pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn read_line(reader: &mut impl BufRead) -> io::Result<String> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "redis closed the connection",
        ));
    }
    let line = line
        .strip_suffix("\r\n")
        .ok_or_else(|| invalid(format!("line without CRLF: {line:?}")))?;
    Ok(line.to_owned())
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

fn parse_len(text: &str) -> io::Result<i64> {
    text.parse()
        .map_err(|_| invalid(format!("bad length {text:?}")))
}

/// Reads one complete reply; a truncated one is an error.
pub fn read_reply(reader: &mut impl BufRead) -> io::Result<Reply> {
    let line = read_line(reader)?;
    let (kind, rest) = line.split_at(1.min(line.len()));
    match kind {
        "+" => Ok(Reply::Status(rest.to_owned())),
        "-" => Ok(Reply::Error(rest.to_owned())),
        ":" => Ok(Reply::Integer(parse_len(rest)?)),
        "$" => {
            let len = parse_len(rest)?;
            if len < 0 {
                return Ok(Reply::Bulk(None));
            }
            let mut data = vec![0; len as usize + 2];
            reader.read_exact(&mut data)?;
            if !data.ends_with(b"\r\n") {
                return Err(invalid("bulk string without CRLF".into()));
            }
            data.truncate(len as usize);
            Ok(Reply::Bulk(Some(data)))
        }
        "*" => {
            let len = parse_len(rest)?;
            if len < 0 {
                return Ok(Reply::Array(None));
            }
            let items = (0..len)
                .map(|_| read_reply(reader))
                .collect::<io::Result<Vec<_>>>()?;
            Ok(Reply::Array(Some(items)))
        }
        _ => Err(invalid(format!("unknown reply {line:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_a_command() {
        assert_eq!(encode(&[b"GET", b"k"]), b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    }

    #[test]
    fn parses_replies() {
        let mut input: &[u8] = b"*3\r\n+OK\r\n$-1\r\n$5\r\nhe\r\no\r\n";
        assert_eq!(
            read_reply(&mut input).unwrap(),
            Reply::Array(Some(vec![
                Reply::Status("OK".into()),
                Reply::Bulk(None),
                Reply::Bulk(Some(b"he\r\no".to_vec())),
            ]))
        );
    }

    #[test]
    fn truncated_reply_is_an_error() {
        let mut input: &[u8] = b"$5\r\nhe";
        assert!(read_reply(&mut input).is_err());
    }
}
