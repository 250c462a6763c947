//! A small per-shard random source for jitter and power-of-two-choices.
//!
//! Neither use needs cryptographic quality, only independence between shards and cheapness:
//! xorshift64* is three shifts and a multiply, with no shared state and no atomics.

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

/// xorshift64* (Vigna, 2016). Interior mutability so a shared `&Rng` can draw.
#[derive(Debug)]
pub struct Rng(Cell<u64>);

impl Rng {
    /// Seeds from the clock and a salt (the shard id), so shards draw different sequences.
    pub fn new(salt: u64) -> Rng {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let seed = (nanos ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1;
        Rng(Cell::new(seed))
    }

    pub fn next_u64(&self) -> u64 {
        let mut x = self.0.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n` > 0), by multiply-shift rather than modulo.
    pub fn below(&self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let rng = Rng::new(7);
        let mut seen = [0u32; 5];
        for _ in 0..10_000 {
            seen[rng.below(5)] += 1;
        }
        assert!(seen.iter().all(|&n| n > 1_500), "{seen:?}");
    }
}
