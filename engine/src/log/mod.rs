//! The transaction log: segment files of checksummed, zxid-ordered records, written with group
//! commit.
//!
//! * [`Log`] is what embedders use: appends from any number of threads are gathered by one
//!   writer thread into a batch — one write, one flush — and every waiter is completed when its
//!   record is durable. There is no timer: a lone appender pays one flush and nothing more.
//! * [`LogCore`] is the same log without the thread: the caller hands it whole batches. It is
//!   what the writer thread drives, and what a deterministic simulator can drive directly.
//!
//! The log owns its directory's `log.*` files and nothing else; it knows zxids only as
//! increasing u64s and payloads only as bytes. [`mod@format`] documents every byte on disk.

mod core;
pub mod format;
mod group;
mod metrics;
mod prealloc;
mod reader;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

pub use self::core::{LogCore, RecoveryReport, SegmentInfo};
pub use self::group::{AppendCallback, Log, MetricsHandle};
pub use self::metrics::LogMetrics;
pub use self::reader::{LogIter, Record};
use crate::io::{BackendKind, Vfs};

/// How appended records are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FlushStrategy {
    /// Every record is written and then `fdatasync`ed on its own: the naive baseline.
    PerRecord,
    /// A batch is written with one `pwrite` and made durable with one `fdatasync`.
    Group,
    /// The file is opened `O_DIRECT | O_DSYNC`; a batch is packed into 4 KiB-aligned blocks and
    /// written with one `pwrite`, which returns once durable. The partial last block is kept in
    /// memory and rewritten, with more records, by the next batch.
    Direct,
    /// io_uring: the batch's write and an `fdatasync` linked in one submission.
    UringLinked,
    /// io_uring: the batch written with `RWF_DSYNC` (durable on completion) in one submission.
    UringDsync,
    /// io_uring with up to [`LogOptions::in_flight`] batches in flight: each written as whole
    /// 4 KiB blocks with `RWF_DSYNC` to a file opened `O_DIRECT`, at consecutive offsets (a pad
    /// frame ends each on a block boundary); records are acknowledged in zxid order once they
    /// and everything before them are durable. Segments are format version 2, whose header
    /// carries the window recovery allows for writes that landed out of order.
    UringPipe,
    /// As `UringPipe`, but the writes carry no `RWF_DSYNC`: one `fdatasync` at a time is in
    /// flight through the same ring, covering every write that had completed when it was
    /// submitted; records are durable when a covering sync completes.
    UringPipeFsync,
    /// Written, never synced (ZooKeeper's `forceSync=no`): whole 4 KiB blocks as in `Direct`,
    /// through a file opened `O_DIRECT` without `O_DSYNC`: the device has a batch when its
    /// write returns (a process crash loses nothing) but its cache is never flushed (power
    /// loss may). Where `O_DIRECT` is refused (tmpfs) the page cache takes the writes and
    /// their write-back is started every few MiB ([`crate::io::WriteBehind`]). `O_DIRECT`
    /// spares the page-cache copy, which cost more CPU than `Direct`'s flushes (measured:
    /// docs/performance.md, issue 17).
    None,
}

impl FlushStrategy {
    /// Every strategy, in the order benchmarks list them.
    pub const ALL: [FlushStrategy; 8] = [
        FlushStrategy::PerRecord,
        FlushStrategy::Group,
        FlushStrategy::Direct,
        FlushStrategy::UringLinked,
        FlushStrategy::UringDsync,
        FlushStrategy::UringPipe,
        FlushStrategy::UringPipeFsync,
        FlushStrategy::None,
    ];

    /// The name used on command lines and in tables.
    pub fn name(self) -> &'static str {
        match self {
            FlushStrategy::PerRecord => "per-record",
            FlushStrategy::Group => "group",
            FlushStrategy::Direct => "direct",
            FlushStrategy::UringLinked => "uring-linked",
            FlushStrategy::UringDsync => "uring-dsync",
            FlushStrategy::UringPipe => "uring-pipe",
            FlushStrategy::UringPipeFsync => "uring-pipe-fsync",
            FlushStrategy::None => "none",
        }
    }

    /// Parses a name from [`FlushStrategy::name`].
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.name() == s)
    }

    /// True for the strategies built on io_uring submissions.
    pub fn wants_uring(self) -> bool {
        matches!(
            self,
            FlushStrategy::UringLinked
                | FlushStrategy::UringDsync
                | FlushStrategy::UringPipe
                | FlushStrategy::UringPipeFsync
        )
    }

    /// True for the strategies that keep several writes in flight.
    pub fn is_pipelined(self) -> bool {
        matches!(self, FlushStrategy::UringPipe | FlushStrategy::UringPipeFsync)
    }

    /// True if records are durable when a batch completes.
    pub fn is_durable(self) -> bool {
        self != FlushStrategy::None
    }
}

impl std::fmt::Display for FlushStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How segment space is reserved ahead of the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Prealloc {
    /// `fallocate`: fast to reserve, but the blocks stay "unwritten", so the first flush over
    /// each of them also commits a file-system journal transaction.
    Fallocate,
    /// Write zeros: slower to reserve, but later flushes over those blocks are data-only.
    ZeroFill,
}

/// What to do when opening finds a bad record followed by valid ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RecoveryMode {
    /// Refuse to open: corruption in the middle is lost data, not a torn write.
    #[default]
    Strict,
    /// Cut the log at the bad record, discarding it and everything after (loud in the log).
    TruncateCorrupt,
}

/// Options fixed when a log is opened.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// How batches are made durable.
    pub strategy: FlushStrategy,
    /// Which backend runs real file I/O; ignored when `vfs` is set.
    pub backend: BackendKind,
    /// A storage backend to use instead of real files (the simulated disk in tests).
    pub vfs: Option<Arc<dyn Vfs>>,
    /// How segment space is reserved.
    pub prealloc: Prealloc,
    /// Reserve space on a background thread that stays up to `prealloc_bytes` ahead of the
    /// writer (in 8 MiB pieces), so that appends do not wait for it. Off: each step is reserved
    /// inline when the writer reaches it (deterministic, for simulations).
    pub prealloc_in_background: bool,
    /// Segments grow in steps of this many bytes (ZooKeeper's preAllocSize; multiple of 4 KiB).
    pub prealloc_bytes: u64,
    /// A new segment starts when fewer than 4 KiB would remain below this size, or when a batch
    /// would not fit (multiple of 4 KiB, at most 4 GiB − 4 KiB).
    pub segment_bytes_max: u64,
    /// Largest payload accepted.
    pub record_bytes_max: usize,
    /// A batch holds at most this many payload bytes (a single larger record is a batch alone).
    pub batch_bytes_max: usize,
    /// A batch holds at most this many records.
    pub batch_records_max: usize,
    /// Appends block (backpressure) while this many payload bytes are queued and not yet
    /// written.
    pub queue_bytes_max: usize,
    /// Database id stamped into every segment header and checked on open.
    pub dbid: u64,
    /// What opening does about corruption.
    pub recovery: RecoveryMode,
    /// A flush slower than this is logged as a warning (ZooKeeper's fsync.warningthresholdms).
    pub fsync_warning_threshold_ms: u64,
    /// How long the writer thread polls for more work before sleeping, in microseconds. Zero
    /// sleeps at once. A short poll saves a wake-up when appends arrive back to back.
    pub writer_spin_us: u64,
    /// Pipelined strategies: how many writes may be in flight at once (1 to 64).
    pub in_flight: usize,
    /// Pipelined strategies on io_uring: register the segment file and the batch buffers with
    /// the ring (fixed file, fixed buffers), sparing the kernel a descriptor lookup and a page
    /// pinning per write. Each falls back to the plain form where the kernel refuses (before
    /// Linux 5.19, or the memory-lock limit of an unprivileged user for buffers).
    pub uring_register: bool,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            strategy: FlushStrategy::Direct,
            backend: BackendKind::Auto,
            vfs: None,
            prealloc: Prealloc::ZeroFill,
            prealloc_in_background: true,
            prealloc_bytes: 64 << 20,
            segment_bytes_max: 256 << 20,
            record_bytes_max: 16 << 20,
            batch_bytes_max: 4 << 20,
            batch_records_max: 4096,
            queue_bytes_max: 64 << 20,
            dbid: 0,
            recovery: RecoveryMode::Strict,
            fsync_warning_threshold_ms: 1000,
            writer_spin_us: 50,
            in_flight: 4,
            uring_register: true,
        }
    }
}

impl LogOptions {
    /// Checks the options against each other and the format's limits.
    pub fn validate(&self) -> Result<(), LogError> {
        let bad = |m: String| Err(LogError::InvalidOptions(m));
        let block = crate::io::DIRECT_ALIGN as u64;
        if self.prealloc_bytes == 0 || !self.prealloc_bytes.is_multiple_of(block) {
            return bad(format!(
                "prealloc_bytes {} must be a positive multiple of 4096",
                self.prealloc_bytes
            ));
        }
        if !self.segment_bytes_max.is_multiple_of(block)
            || self.segment_bytes_max > format::SEGMENT_BYTES_LIMIT - block
        {
            return bad(format!(
                "segment_bytes_max {} must be a multiple of 4096 below 4 GiB",
                self.segment_bytes_max
            ));
        }
        let room = self.segment_bytes_max.saturating_sub(format::HEADER_LEN as u64 + 3 * block);
        let largest = (self.record_bytes_max.max(self.batch_bytes_max) + format::FRAME_LEN) as u64;
        if largest > room {
            return bad(format!(
                "records ({}) and batches ({}) must fit in a segment of {} bytes",
                self.record_bytes_max, self.batch_bytes_max, self.segment_bytes_max
            ));
        }
        if self.batch_records_max == 0 || self.batch_bytes_max == 0 {
            return bad("batch limits must be positive".into());
        }
        if !(1..=64).contains(&self.in_flight) {
            return bad(format!("in_flight {} must be between 1 and 64", self.in_flight));
        }
        Ok(())
    }
}

/// Errors of the transaction log.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// A system call failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: Arc<io::Error>,
    },
    /// A bad record followed by valid records: durable data was damaged.
    #[error(
        "corrupt log segment {}: bad record at offset {offset} (after zxid {last_good_zxid:#x}): \
         {reason}{}",
        segment.display(),
        next_zxid.map(|z| format!("; a later valid record has zxid {z:#x}")).unwrap_or_default()
    )]
    Corrupt {
        /// The segment file.
        segment: PathBuf,
        /// Offset of the bad record.
        offset: u64,
        /// The last valid zxid before it.
        last_good_zxid: u64,
        /// A valid zxid after it, where one was found.
        next_zxid: Option<u64>,
        /// What is wrong.
        reason: String,
    },
    /// A segment header is missing, damaged or from another database.
    #[error("bad segment header in {}: {reason}", segment.display())]
    BadHeader {
        /// The segment file.
        segment: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An earlier write or flush failed; the log refuses all further writes. Failed flushes
    /// are never retried: after one, what the file holds is unknown.
    #[error("the log failed earlier and refuses further writes: {0}")]
    Failed(Arc<LogError>),
    /// An append's zxid does not exceed the last one.
    #[error("zxid {zxid:#x} does not follow the last zxid {last:#x}")]
    ZxidNotIncreasing {
        /// The zxid offered.
        zxid: u64,
        /// The last zxid in the log (or queued for it).
        last: u64,
    },
    /// A payload over `record_bytes_max`.
    #[error("record of {len} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Options that contradict each other.
    #[error("invalid log options: {0}")]
    InvalidOptions(String),
    /// Records that a strict reader needs were purged from the log.
    #[error(
        "records from zxid {from:#x} on are no longer in the log: the oldest segment {} follows \
         zxid {prev_zxid:#x}",
        segment.display()
    )]
    Purged {
        /// The first zxid wanted.
        from: u64,
        /// The oldest segment left.
        segment: PathBuf,
        /// The last zxid of the segment before it, which is gone.
        prev_zxid: u64,
    },
    /// The log was closed.
    #[error("the log is closed")]
    Closed,
}

impl LogError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        LogError::Io { op, path: path.into(), source: Arc::new(source) }
    }

    /// The OS error number behind this error, if there is one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            LogError::Io { source, .. } => source.raw_os_error(),
            LogError::Failed(inner) => inner.raw_os_error(),
            _ => None,
        }
    }
}
