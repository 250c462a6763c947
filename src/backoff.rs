//! Exponential backoff with jitter, for redialing Redis and targets.
//!
//! Each failure doubles the base delay up to a cap; the delay actually slept is drawn from
//! `[base/2, base]` ("equal jitter"), so shards and processes that failed together do not
//! retry together, while the delay never collapses towards zero as full jitter can.

use std::time::Duration;

use crate::rng::Rng;

#[derive(Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    /// Base of the next delay; `initial` after a success.
    base: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            base: initial,
        }
    }

    /// The delay to wait now; the next one will be twice as long (up to the cap).
    pub fn next_delay(&mut self, rng: &Rng) -> Duration {
        let base = self.base;
        self.base = (base * 2).min(self.max);
        let half = base / 2;
        let spread = half.as_micros() as u64;
        half + Duration::from_micros(if spread == 0 {
            0
        } else {
            rng.next_u64() % (spread + 1)
        })
    }

    /// Called after a success: the next failure starts from the initial delay again.
    pub fn reset(&mut self) {
        self.base = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_with_jitter_up_to_the_cap() {
        let rng = Rng::new(1);
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        let delays: Vec<_> = (0..8).map(|_| b.next_delay(&rng)).collect();
        for (i, d) in delays.iter().enumerate() {
            let base = Duration::from_millis((100u64 << i).min(1000));
            assert!(
                *d >= base / 2 && *d <= base,
                "delay {i} = {d:?}, base {base:?}"
            );
        }
        b.reset();
        assert!(b.next_delay(&rng) <= Duration::from_millis(100));
    }
}
