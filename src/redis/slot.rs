//! Redis Cluster's arithmetic: which of the 16384 hash slots a key is in, and what a
//! `-MOVED` or `-ASK` error says.
//!
//! Owns: CRC16 (XMODEM: polynomial 0x1021, initial value 0, no reflection — the variant the
//! cluster spec names), the `{hashtag}` rule, and parsing redirects. Pure functions, no I/O;
//! [`super::cluster`] uses them.

/// Hash slots in a Redis Cluster (fixed by the cluster spec).
pub const SLOTS: usize = 16384;

/// CRC16/XMODEM lookup table, built at compile time.
const TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

fn crc16(bytes: impl Iterator<Item = u8>) -> u16 {
    bytes.fold(0u16, |crc, b| {
        (crc << 8) ^ TABLE[((crc >> 8) as u8 ^ b) as usize]
    })
}

/// The slot of the key `<prefix><key>` (the two parts as the one key GET sends, without
/// joining them): CRC16 of the key mod 16384, or of the part between the first `{` and the
/// first `}` after it when that part is not empty.
pub fn of(prefix: &[u8], key: &[u8]) -> u16 {
    let whole = || prefix.iter().chain(key).copied();
    let hashed = match whole().position(|b| b == b'{') {
        Some(open) => match whole().skip(open + 1).position(|b| b == b'}') {
            Some(len) if len > 0 => Some((open + 1, len)),
            _ => None,
        },
        None => None,
    };
    let crc = match hashed {
        Some((start, len)) => crc16(whole().skip(start).take(len)),
        None => crc16(whole()),
    };
    crc % SLOTS as u16
}

/// A redirect in an error reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redirect {
    /// `MOVED <slot> <host:port>`: the slot belongs to that node now, for good.
    Moved { slot: u16, host: String, port: u16 },
    /// `ASK <slot> <host:port>`: this one key is being migrated there; ask it once (after
    /// `ASKING`), the slot map stays as it is.
    Ask { slot: u16, host: String, port: u16 },
}

/// The redirect an error reply carries, if it is one. The address may be `:port` (Redis 7
/// with an unknown endpoint: the same host as the node that answered) — `host` is then empty.
pub fn redirect(error: &str) -> Option<Redirect> {
    let mut words = error.split(' ');
    let kind = words.next()?;
    let slot: u16 = words
        .next()?
        .parse()
        .ok()
        .filter(|&s| (s as usize) < SLOTS)?;
    let addr = words.next()?;
    if words.next().is_some() {
        return None;
    }
    let (host, port) = addr.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|&p| p != 0)?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    match kind {
        "MOVED" => Some(Redirect::Moved { slot, host, port }),
        "ASK" => Some(Redirect::Ask { slot, host, port }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(key: &str) -> u16 {
        of(b"", key.as_bytes())
    }

    #[test]
    fn slots_of_known_keys() {
        // CRC16/XMODEM's check value, and slots Redis's CLUSTER KEYSLOT gives.
        assert_eq!(crc16(b"123456789".iter().copied()), 0x31C3);
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("bar"), 5061);
        assert_eq!(slot("hello"), 866);
        assert_eq!(slot(""), 0);
        assert_eq!(slot("{user1000}.following"), slot("{user1000}.followers"));
        assert_eq!(slot("{user1000}.following"), slot("user1000"));
        // An empty tag hashes the whole key; only the first `{` counts.
        assert_eq!(
            slot("foo{}{bar}"),
            crc16(b"foo{}{bar}".iter().copied()) % 16384
        );
        assert_eq!(slot("foo{{bar}}zap"), slot("{bar"));
        assert_eq!(slot("foo{bar}{zap}"), slot("bar"));
        assert_eq!(
            slot("no}tag{here"),
            crc16(b"no}tag{here".iter().copied()) % 16384
        );
    }

    #[test]
    fn prefix_and_key_hash_as_one_key() {
        assert_eq!(of(b"route:", b"job-1"), slot("route:job-1"));
        assert_eq!(of(b"route:{", b"tenant}-1"), slot("tenant"));
        assert_eq!(of(b"r{", b"}x"), slot("r{}x"));
        assert_eq!(of(b"{a", b"b}c"), slot("ab"));
    }

    #[test]
    fn redirects() {
        assert_eq!(
            redirect("MOVED 3999 127.0.0.1:6381"),
            Some(Redirect::Moved {
                slot: 3999,
                host: "127.0.0.1".into(),
                port: 6381
            })
        );
        assert_eq!(
            redirect("ASK 12182 10.0.0.2:7000"),
            Some(Redirect::Ask {
                slot: 12182,
                host: "10.0.0.2".into(),
                port: 7000
            })
        );
        assert_eq!(
            redirect("MOVED 1 [::1]:7000"),
            Some(Redirect::Moved {
                slot: 1,
                host: "::1".into(),
                port: 7000
            })
        );
        assert_eq!(
            redirect("MOVED 1 :7000"),
            Some(Redirect::Moved {
                slot: 1,
                host: String::new(),
                port: 7000
            })
        );
        for not in [
            "WRONGTYPE Operation against a key holding the wrong kind of value",
            "MOVED 16384 h:1",
            "MOVED x h:1",
            "MOVED 1 h",
            "MOVED 1 h:0",
            "ASK 1 h:1 extra",
            "CLUSTERDOWN The cluster is down",
        ] {
            assert_eq!(redirect(not), None, "{not}");
        }
    }
}
