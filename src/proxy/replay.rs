//! The transparent retry: when a call may be sent again, and what is kept to send it.
//!
//! A call the target refused without processing it — RST_STREAM REFUSED_STREAM, or a stream
//! above the last stream id of the target's GOAWAY — is sent again, once, on a fresh
//! connection, as long as its request head and the body received so far (up to
//! `retry_buffer_bytes`) are still held ([`Replay`]); they are let go as soon as the target
//! answers. [`is_retryable`] is the one place that decides.

use std::cell::RefCell;
use std::future::poll_fn;

use bytes::Bytes;

use super::relay::poll_granted;
use crate::wire::{Error, Reason, SendStream};

/// Whether a call whose upstream stream failed with `error` was never processed by the
/// target, so that sending it again cannot run it twice. `never_processed`: the stream was
/// above the last stream id of the target's GOAWAY.
pub(super) fn is_retryable(error: &Error, never_processed: bool) -> bool {
    (error.is_reset() && error.reason() == Some(Reason::REFUSED_STREAM))
        || (error.is_go_away() && never_processed)
}

/// What a retry needs of the request besides its head (which the call keeps anyway): the
/// body received so far, while it fits. Taken from the shard's [`ReplayPool`] and given back
/// when the call ends, so keeping it costs no allocation once the pool is warm.
#[derive(Default)]
pub struct Replay {
    pub(super) chunks: Vec<Bytes>,
    buffered: usize,
    limit: usize,
    /// Too big, had trailers, or the target answered: no retry any more.
    pub(super) spoiled: bool,
    /// The client's end of stream was received.
    pub(super) ended: bool,
}

/// The shard's spare [`Replay`]s: their chunk lists keep their capacity.
#[derive(Default)]
pub struct ReplayPool {
    spare: RefCell<Vec<Replay>>,
}

/// Spares kept per shard; calls in flight beyond it allocate their own.
const REPLAY_SPARES: usize = 1024;

/// A [`Replay`] lent to one call, returned to the pool on drop.
pub struct LentReplay<'a>(pub(super) RefCell<Replay>, &'a ReplayPool);

impl Drop for LentReplay<'_> {
    fn drop(&mut self) {
        let mut replay = std::mem::take(self.0.get_mut());
        let mut spare = self.1.spare.borrow_mut();
        if spare.len() < REPLAY_SPARES {
            replay.chunks.clear();
            spare.push(replay);
        }
    }
}

impl ReplayPool {
    /// A replay for a call whose request ended with its head (`ended`: nothing more to come,
    /// and the replay is complete as it is) or goes on with a body.
    pub(super) fn take(&self, limit: usize, ended: bool) -> LentReplay<'_> {
        let mut r = self.spare.borrow_mut().pop().unwrap_or_default();
        r.buffered = 0;
        r.limit = limit;
        r.spoiled = false;
        r.ended = ended;
        LentReplay(RefCell::new(r), self)
    }
}

impl Replay {
    /// Keeps a chunk (a reference to it: `Bytes` clones share the buffer).
    pub(super) fn record(&mut self, data: &Bytes, end: bool) {
        if self.spoiled {
            return;
        }
        self.buffered += data.len();
        if self.buffered > self.limit {
            self.spoil();
            return;
        }
        self.chunks.push(data.clone());
        self.ended = end;
    }

    pub(super) fn spoil(&mut self) {
        self.spoiled = true;
        self.chunks.clear();
    }

    /// Whether the whole request (its end included) is held: the retry needs nothing more
    /// from the client.
    pub(super) fn complete(&self) -> bool {
        self.ended && self.chunks.is_empty()
    }
}

/// Sends a replayed body on the retry's stream, as its window allows.
pub(super) async fn resend(
    up_send: &mut SendStream,
    chunks: Vec<Bytes>,
    ended: bool,
) -> Result<(), ()> {
    let count = chunks.len();
    for (i, mut data) in chunks.into_iter().enumerate() {
        let last = ended && i + 1 == count;
        if data.is_empty() {
            // Clients built on hyper (tonic among them) end a request with an empty DATA
            // frame: it carries the END_STREAM the target is waiting for.
            if last {
                up_send.send_data(&data, true).map_err(|_| ())?;
            }
            continue;
        }
        while !data.is_empty() {
            let granted = poll_fn(|cx| poll_granted(up_send, cx))
                .await
                .map_err(|_| ())?;
            let piece = data.split_to(granted.min(data.len()));
            up_send
                .send_data(&piece, last && data.is_empty())
                .map_err(|_| ())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unprocessed_streams_are_retried() {
        assert!(is_retryable(&Error::Reset(Reason::REFUSED_STREAM), false));
        assert!(!is_retryable(&Error::Reset(Reason::CANCEL), true));
        let goaway = Error::GoAway {
            reason: Reason::NO_ERROR,
            remote: true,
        };
        assert!(
            is_retryable(&goaway, true),
            "above the GOAWAY's last stream id"
        );
        assert!(!is_retryable(&goaway, false), "the target may have run it");
        assert!(!is_retryable(
            &Error::LocalReset(Reason::REFUSED_STREAM),
            true
        ));
    }

    #[test]
    fn a_body_past_the_limit_or_with_trailers_spoils_the_replay() {
        let pool = ReplayPool::default();
        let lent = pool.take(10, false);
        let mut r = lent.0.borrow_mut();
        r.record(&Bytes::from_static(b"12345"), false);
        assert!(!r.spoiled && r.chunks.len() == 1 && !r.ended);
        r.record(&Bytes::from_static(b"678"), true);
        assert!(!r.spoiled && r.ended && !r.complete());
        r.record(&Bytes::from_static(b"9ab"), true);
        assert!(r.spoiled && r.chunks.is_empty(), "11 bytes > 10");
        drop(r);
        drop(lent);
        // Given back to the pool, and handed out fresh.
        let again = pool.take(100, false);
        let r = again.0.borrow();
        assert!(!r.spoiled && !r.ended && r.chunks.is_empty());
    }

    #[test]
    fn a_request_that_ended_with_its_head_is_complete() {
        let pool = ReplayPool::default();
        let lent = pool.take(10, true);
        let mut r = lent.0.borrow_mut();
        assert!(r.complete());
        r.record(&Bytes::from_static(b"x"), true);
        assert!(!r.complete(), "a body to send first");
    }
}
