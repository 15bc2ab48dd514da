//! Latency and batching histograms of a [`super::Log`].

use hdrhistogram::Histogram;

/// What the log's writer has measured since it opened (or since [`LogMetrics::reset`]).
#[derive(Debug, Clone)]
pub struct LogMetrics {
    /// Records per batch.
    pub batch_records: Histogram<u64>,
    /// Bytes (frames and payloads) per batch.
    pub batch_bytes: Histogram<u64>,
    /// Time of one write + flush, in microseconds.
    pub flush_latency_us: Histogram<u64>,
    /// Time from an append being queued to its completion, in microseconds.
    pub append_latency_us: Histogram<u64>,
    /// Records appended.
    pub appends: u64,
    /// Batches written.
    pub batches: u64,
    /// Flushes issued (including O_DSYNC / RWF_DSYNC writes).
    pub flushes: u64,
    /// Bytes written for records.
    pub bytes: u64,
    /// Batches whose flush took longer than the warning threshold (ZooKeeper's
    /// `fsync_threshold_exceed_count`).
    pub slow_flushes: u64,
}

fn hist(max: u64) -> Histogram<u64> {
    Histogram::new_with_bounds(1, max, 3).expect("valid histogram bounds")
}

impl Default for LogMetrics {
    fn default() -> Self {
        Self {
            batch_records: hist(1 << 20),
            batch_bytes: hist(1 << 36),
            flush_latency_us: hist(3_600_000_000),
            append_latency_us: hist(3_600_000_000),
            appends: 0,
            batches: 0,
            flushes: 0,
            bytes: 0,
            slow_flushes: 0,
        }
    }
}

impl LogMetrics {
    /// Clears every histogram and counter.
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// Counts one [`super::core::BatchStats`] (a batch written, or submitted when pipelined).
    pub(crate) fn record_stats(&mut self, s: &super::core::BatchStats) {
        let (records, bytes, flushes) = (s.records as u64, s.bytes as u64, s.flushes as u64);
        self.slow_flushes += u64::from(s.slow);
        self.record_batch(records, bytes, flushes, s.flush_time.as_micros() as u64);
    }

    pub(crate) fn record_batch(&mut self, records: u64, bytes: u64, flushes: u64, flush_us: u64) {
        self.batches += 1;
        self.appends += records;
        self.bytes += bytes;
        self.flushes += flushes;
        self.batch_records.saturating_record(records.max(1));
        self.batch_bytes.saturating_record(bytes.max(1));
        if let Some(per) = flush_us.checked_div(flushes) {
            let per = per.max(1);
            for _ in 0..flushes.min(1 << 16) {
                self.flush_latency_us.saturating_record(per);
            }
        }
    }
}
