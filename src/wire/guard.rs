//! What a connection remembers to defend itself: counts of frames that cost work but do none
//! (floods), and which recently closed streams it reset itself.
//!
//! # Floods (CVE-2019-9512/9513/9515/9518, CVE-2023-44487, CVE-2024-27316)
//!
//! A peer can make us spend CPU, or queue output, with frames that carry no request and no
//! data: SETTINGS (each needs an ACK), PING (each needs an ACK), RST_STREAM, PRIORITY, DATA
//! with no payload and no END_STREAM, CONTINUATION with no payload. Each kind is counted per
//! connection in fixed one-second windows; past [`Settings::max_control_frames_per_second`]
//! of one kind in one window the connection ends with GOAWAY ENHANCE_YOUR_CALM, and the
//! connection's observer hears which kind it was. The default (10,000 a second of each kind)
//! is far above what any gRPC peer sends (a BDP probe is one PING per round trip while data
//! flows; SETTINGS come once or twice per connection) and far below a flood (30 million
//! SETTINGS a second were measured from one Python client on loopback).
//!
//! Other floods are counted by what they cost rather than by time: streams a client resets
//! before they are answered (rapid reset), streams we reset for its errors, and the size of one
//! header block (CONTINUATION flood). Their limits are the constants below; the frames are
//! counted where they are handled ([`super::conn`] and the receive path).
//!
//! [`Settings::max_control_frames_per_second`]: super::Settings::max_control_frames_per_second

use std::time::{Duration, Instant};

/// Why a connection was ended with ENHANCE_YOUR_CALM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flood {
    Settings,
    Ping,
    RstStream,
    Priority,
    /// DATA without payload and without END_STREAM.
    EmptyData,
    /// CONTINUATION without payload.
    EmptyContinuation,
    /// Streams reset by the peer before they were answered, net of answered ones.
    RapidReset,
    /// Streams we had to reset because the peer broke the protocol on them.
    ErrorResets,
    /// One header block over its size or CONTINUATION count limit.
    HeaderBlock,
}

impl Flood {
    /// Every kind, in the order metrics list them.
    pub const ALL: [Flood; 9] = [
        Flood::Settings,
        Flood::Ping,
        Flood::RstStream,
        Flood::Priority,
        Flood::EmptyData,
        Flood::EmptyContinuation,
        Flood::RapidReset,
        Flood::ErrorResets,
        Flood::HeaderBlock,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Flood::Settings => "settings",
            Flood::Ping => "ping",
            Flood::RstStream => "rst_stream",
            Flood::Priority => "priority",
            Flood::EmptyData => "empty_data",
            Flood::EmptyContinuation => "empty_continuation",
            Flood::RapidReset => "rapid_reset",
            Flood::ErrorResets => "error_resets",
            Flood::HeaderBlock => "header_block",
        }
    }

    /// The GOAWAY debug text.
    pub(super) fn why(self) -> &'static str {
        match self {
            Flood::Settings => "flood of SETTINGS frames",
            Flood::Ping => "flood of PING frames",
            Flood::RstStream => "flood of RST_STREAM frames",
            Flood::Priority => "flood of PRIORITY frames",
            Flood::EmptyData => "flood of empty DATA frames",
            Flood::EmptyContinuation => "flood of empty CONTINUATION frames",
            Flood::RapidReset => "too many streams reset",
            Flood::ErrorResets => "too many streams reset for errors",
            Flood::HeaderBlock => "header block too large",
        }
    }

    /// The slot of a time-counted kind.
    fn slot(self) -> Option<usize> {
        Some(match self {
            Flood::Settings => 0,
            Flood::Ping => 1,
            Flood::RstStream => 2,
            Flood::Priority => 3,
            Flood::EmptyData => 4,
            Flood::EmptyContinuation => 5,
            _ => return None,
        })
    }
}

/// Why a stream was refused before it was served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Above our SETTINGS_MAX_CONCURRENT_STREAMS: RST_STREAM REFUSED_STREAM.
    ConcurrentStreams,
    /// A header list above SETTINGS_MAX_HEADER_LIST_SIZE: HTTP 431.
    HeaderList,
}

impl Refusal {
    pub const ALL: [Refusal; 2] = [Refusal::ConcurrentStreams, Refusal::HeaderList];

    pub fn label(self) -> &'static str {
        match self {
            Refusal::ConcurrentStreams => "max_concurrent_streams",
            Refusal::HeaderList => "max_header_list",
        }
    }
}

/// Streams a peer may reset before we answered, net of calls completed, before it is treated
/// as a rapid-reset attack (CVE-2023-44487).
pub(super) const MAX_EARLY_RESETS: u32 = 256;
/// Streams we may reset because the peer misbehaved on them, or refuse (above
/// MAX_CONCURRENT_STREAMS, header list too large), before the connection is ended.
pub(super) const MAX_LOCAL_ERROR_RESETS: u32 = 1024;
/// CONTINUATION frames allowed in one header block.
pub(super) const MAX_CONTINUATIONS: u32 = 128;

/// What one connection counts to defend itself.
pub(super) struct Guard {
    /// Frames that do no work, per kind, in the current second.
    pub(super) flood: FloodGuard,
    /// Streams we reset, whose late frames are ignored.
    pub(super) resets: ResetIds,
    /// Streams the peer reset before we answered, net of calls answered since
    /// (against [`MAX_EARLY_RESETS`]).
    pub(super) early_resets: u32,
    /// Streams we reset or refused for the peer's errors (against [`MAX_LOCAL_ERROR_RESETS`]).
    pub(super) local_resets: u32,
}

impl Guard {
    pub(super) fn new() -> Guard {
        Guard {
            flood: FloodGuard::new(),
            resets: ResetIds::new(),
            early_resets: 0,
            local_resets: 0,
        }
    }
}

const WINDOW: Duration = Duration::from_secs(1);

/// Counts of the time-counted kinds in the current one-second window.
pub(super) struct FloodGuard {
    window_start: Option<Instant>,
    counts: [u32; 6],
}

impl FloodGuard {
    pub(super) fn new() -> FloodGuard {
        FloodGuard {
            window_start: None,
            counts: [0; 6],
        }
    }

    /// Counts one frame of `kind`; `Err` once the window holds more than `limit`.
    pub(super) fn count(&mut self, kind: Flood, limit: u32) -> Result<(), Flood> {
        let Some(slot) = kind.slot() else {
            return Ok(());
        };
        // Most connections never see a counted frame after the handshake; the clock is read
        // only when one arrives and the count is past a small free allowance.
        self.counts[slot] += 1;
        if self.counts[slot] <= limit.min(64) {
            return Ok(());
        }
        let now = Instant::now();
        match self.window_start {
            // The first window also holds the free allowance counted so far.
            None => self.window_start = Some(now),
            Some(start) if now.duration_since(start) >= WINDOW => {
                self.window_start = Some(now);
                self.counts = [0; 6];
                self.counts[slot] = 1;
            }
            Some(_) => {}
        }
        if self.counts[slot] > limit {
            return Err(kind);
        }
        Ok(())
    }
}

/// Stream ids (all odd: ringway never pushes, so both roles see only client-initiated streams)
/// that were reset by us, over the last [`SPAN`] odd ids. Frames the peer sent before it saw
/// our RST_STREAM must be ignored; frames on a stream that closed otherwise are STREAM_CLOSED
/// errors (RFC 9113 §5.1). Ids older than the span are taken as reset by us: ignoring a late
/// frame is the safe mistake. Also the ids the peer skipped (opened a higher one first):
/// frames on them are protocol errors, not frames on closed streams.
///
/// Nothing is allocated until the first reset or skip (8 bytes inline): most connections
/// never have either.
pub(super) struct ResetIds(Option<Box<Memory>>);

struct Memory {
    /// Index (id / 2) of the oldest id covered.
    base: u32,
    bits: [u64; SPAN as usize / 64],
    /// Skipped id ranges, newest last. Clients rarely skip; the last few are enough to tell.
    skipped: Vec<(u32, u32)>,
}

/// Odd ids remembered: 2,048 streams, 256 bytes.
const SPAN: u32 = 2048;
/// Skipped ranges remembered.
const SKIPPED: usize = 8;

impl ResetIds {
    pub(super) fn new() -> ResetIds {
        ResetIds(None)
    }

    fn memory(&mut self) -> &mut Memory {
        self.0.get_or_insert_with(|| {
            Box::new(Memory {
                base: 0,
                bits: [0; SPAN as usize / 64],
                skipped: Vec::new(),
            })
        })
    }

    pub(super) fn insert(&mut self, id: u32) {
        let index = id >> 1;
        let m = self.memory();
        if index < m.base {
            return;
        }
        if index >= m.base + SPAN {
            // Slide the window forward, forgetting the ids that fall out of it.
            let new_base = index - SPAN + 1;
            if new_base - m.base >= SPAN {
                m.bits = [0; SPAN as usize / 64];
            } else {
                for old in m.base..new_base {
                    let at = (old % SPAN) as usize;
                    m.bits[at / 64] &= !(1 << (at % 64));
                }
            }
            m.base = new_base;
        }
        let at = (index % SPAN) as usize;
        m.bits[at / 64] |= 1 << (at % 64);
    }

    /// Whether frames on closed stream `id` are to be ignored.
    pub(super) fn ignores(&self, id: u32) -> bool {
        let index = id >> 1;
        let Some(m) = &self.0 else {
            return false;
        };
        if index < m.base {
            return true;
        }
        if index >= m.base + SPAN {
            return false;
        }
        let at = (index % SPAN) as usize;
        m.bits[at / 64] & (1 << (at % 64)) != 0
    }

    /// The peer opened a stream above `first..=last` without opening those.
    pub(super) fn skip(&mut self, first: u32, last: u32) {
        let m = self.memory();
        if m.skipped.len() == SKIPPED {
            m.skipped.remove(0);
        }
        m.skipped.push((first, last));
    }

    /// Whether `id` is one the peer skipped (as far as we remember).
    pub(super) fn skipped(&self, id: u32) -> bool {
        self.0
            .as_ref()
            .is_some_and(|m| m.skipped.iter().any(|&(a, b)| (a..=b).contains(&id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flood_past_the_limit_in_one_window() {
        let mut g = FloodGuard::new();
        for _ in 0..100 {
            assert!(g.count(Flood::Settings, 100).is_ok());
        }
        assert_eq!(g.count(Flood::Settings, 100), Err(Flood::Settings));
        // Other kinds have their own counts.
        assert!(g.count(Flood::Ping, 100).is_ok());
        // Kinds counted by cost are not time-counted.
        for _ in 0..1000 {
            assert!(g.count(Flood::RapidReset, 100).is_ok());
        }
    }

    #[test]
    fn reset_ids_slide() {
        let mut r = ResetIds::new();
        assert!(!r.ignores(1));
        r.insert(1);
        r.insert(7);
        assert!(r.ignores(1) && r.ignores(7) && !r.ignores(3) && !r.ignores(9));
        // Far ahead: the old ones fall out of the window and count as old (ignored).
        r.insert(1 + 2 * 5000);
        assert!(r.ignores(1 + 2 * 5000));
        assert!(r.ignores(7), "older than the window: ignored");
        assert!(!r.ignores(1 + 2 * 4999), "inside the window, never reset");
        // Step by step across the ring boundary.
        let mut r = ResetIds::new();
        for id in (1..20_000).step_by(2) {
            if id % 6 == 1 {
                r.insert(id);
            }
        }
        for id in (20_001 - 2 * 2000..20_000).step_by(2) {
            assert_eq!(r.ignores(id), id % 6 == 1, "id {id}");
        }
    }
}
