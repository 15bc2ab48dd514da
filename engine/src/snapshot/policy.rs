//! When to snapshot: ZooKeeper's rule, randomised per replica.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Decides when to take a snapshot: after `snapCount/2 + random(0..snapCount/2)` txns, or once
/// the txns logged since the last snapshot pass `limit/2 + random(0..limit/2)` bytes
/// (snapSizeLimitInKb). The random share is drawn again after every snapshot, so that the
/// replicas of an ensemble do not all snapshot at the same moment.
#[derive(Debug, Clone)]
pub struct SnapshotPolicy {
    snap_count: u64,
    size_limit_bytes: Option<u64>,
    rng: ChaCha8Rng,
    txn_threshold: u64,
    size_threshold: u64,
    txns: u64,
    bytes: u64,
}

impl SnapshotPolicy {
    /// `snap_count` is ZooKeeper's snapCount (values below 2 become 2); `size_limit_kb` its
    /// snapSizeLimitInKb (≤ 0 disables the size trigger); `seed` makes the random share
    /// reproducible.
    pub fn new(snap_count: u64, size_limit_kb: i64, seed: u64) -> Self {
        let mut p = Self {
            snap_count: snap_count.max(2),
            size_limit_bytes: (size_limit_kb > 0).then(|| size_limit_kb as u64 * 1024),
            rng: ChaCha8Rng::seed_from_u64(seed),
            txn_threshold: 0,
            size_threshold: 0,
            txns: 0,
            bytes: 0,
        };
        p.reroll();
        p
    }

    fn reroll(&mut self) {
        let half = self.snap_count / 2;
        self.txn_threshold = half + self.rng.random_range(0..half.max(1));
        self.size_threshold = match self.size_limit_bytes {
            Some(l) => l / 2 + self.rng.random_range(0..(l / 2).max(1)),
            None => u64::MAX,
        };
    }

    /// Counts one logged txn of `bytes`; true when a snapshot should start now. The counters
    /// then restart and a new random share is drawn.
    pub fn record(&mut self, bytes: u64) -> bool {
        self.txns += 1;
        self.bytes += bytes;
        if self.txns > self.txn_threshold || self.bytes > self.size_threshold {
            self.txns = 0;
            self.bytes = 0;
            self.reroll();
            return true;
        }
        false
    }

    /// The current thresholds (txns, bytes), for logs and tests.
    pub fn thresholds(&self) -> (u64, u64) {
        (self.txn_threshold, self.size_threshold)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_between_half_and_all_of_snap_count() {
        let mut seen = std::collections::HashSet::new();
        for seed in 0..50 {
            let mut p = SnapshotPolicy::new(1000, -1, seed);
            let mut n = 0;
            while !p.record(10) {
                n += 1;
                assert!(n <= 1000, "must trigger by snapCount");
            }
            assert!(n >= 500, "not before snapCount/2 (got {n})");
            seen.insert(n);
        }
        assert!(seen.len() > 10, "replicas with different seeds trigger at different counts");
    }

    #[test]
    fn size_trigger() {
        let mut p = SnapshotPolicy::new(1_000_000, 100, 7);
        let mut bytes = 0;
        while !p.record(1000) {
            bytes += 1000;
        }
        assert!((50 * 1024..=100 * 1024).contains(&bytes), "{bytes}");
    }
}
