//! [`LogCore`]: the log without threads — recovery on open, segment files, batch writes under
//! each flush strategy, rolling and truncation. The group-commit [`super::Log`] drives one of
//! these from its writer thread.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::format::{
    self, encode_frame, encode_pad, pad_len, parse_segment_file_name, scan_segment,
    segment_file_name, SegmentHeader, TailState, FRAME_LEN, HEADER_LEN,
};
use super::prealloc::{grow_file, Preallocator};
use super::reader::LogIter;
use super::{FlushStrategy, LogError, LogOptions, Prealloc, RecoveryMode};
use crate::io::{
    open_backend, read_up_to, AlignedBuf, BackendKind, Completion, InlineQueue, OpenOptions, VFile,
    Vfs, WriteQueue, DIRECT_ALIGN,
};

const BLOCK: u64 = DIRECT_ALIGN as u64;
/// Background preallocation extends a segment this much at a time, keeping up to
/// `prealloc_bytes` of reserved space ahead of the writer.
const BG_CHUNK: u64 = 8 << 20;
/// What the writer reserves itself, when it must, while a background thread does the rest.
const INLINE_STEP: u64 = 1 << 20;
/// The next segment, made ahead by the background thread (created, its first
/// [`INLINE_STEP`] reserved, fsynced with its directory) so that a roll only writes a header
/// and renames it. Recovery takes one with a valid header for the segment it names (the
/// rename need not be durable) and removes any other.
pub(crate) const SPARE_NAME: &str = "log.spare";
/// Pipelined strategies: the bytes of records one write carries at most (a larger record is
/// written alone, with nothing else in flight).
const PIPE_WRITE_BYTES: u64 = 1 << 20;

/// The in-flight window of a pipelined log: every write not yet durable lies within this many
/// bytes of the first of them (the segment header records it for recovery).
fn pipe_window(opts: &LogOptions) -> u64 {
    // One write at a time: a later one can never land before an earlier one (W = 0, the
    // version 1 rule, exactly).
    if opts.in_flight <= 1 {
        return 0;
    }
    let per_write = (opts.batch_bytes_max as u64).min(PIPE_WRITE_BYTES) + 3 * BLOCK;
    (opts.in_flight as u64 * per_write).next_multiple_of(BLOCK)
}

/// How long reaping waits for a write to finish.
#[derive(Debug, Clone, Copy)]
enum Wait<'a> {
    No,
    One,
    Wake(&'a Arc<std::sync::atomic::AtomicU32>, u32),
}

/// One write of a pipelined log.
#[derive(Debug)]
struct Flight {
    tag: u64,
    /// Where the write starts (a block boundary) and ends (after its pad, a block boundary).
    write_start: u64,
    /// End of its records.
    data_end: u64,
    write_end: u64,
    last_zxid: u64,
    /// What is left to write after a short write: buffer range and file offset.
    left: (std::ops::Range<usize>, u64),
    /// The write has completed.
    done: bool,
    /// `uring-pipe-fsync`: the sync submitted after it completed, which makes it durable.
    covered_by: Option<u64>,
    /// Durable: its RWF_DSYNC write completed, or a sync covering it did.
    durable: bool,
}

/// Tags of syncs in the queue: this bit and the sync's sequence number (writes count up
/// from 1 and never reach it).
const SYNC_TAG: u64 = 1 << 62;

/// The writes in flight of a pipelined log.
#[derive(Debug)]
struct Pipe {
    queue: Box<dyn WriteQueue>,
    /// The file the queue writes.
    file: Option<PathBuf>,
    flights: VecDeque<Flight>,
    free: Vec<AlignedBuf>,
    next_tag: u64,
    depth: usize,
    window: u64,
    completions: Vec<Completion>,
    pad: Vec<u8>,
    /// Writes carry RWF_DSYNC (`uring-pipe`); else syncs cover them (`uring-pipe-fsync`).
    dsync: bool,
    /// Syncs submitted so far, and the one in flight.
    syncs: u64,
    sync_in_flight: Option<u64>,
}

/// One segment file of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// zxid of its first record.
    pub base_zxid: u64,
    /// Its path.
    pub path: PathBuf,
}

/// What opening the log found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segment files after recovery.
    pub segments: usize,
    /// The last zxid in the log (0 if empty).
    pub last_zxid: u64,
    /// Valid records found in the tail segment.
    pub tail_records: u64,
    /// Where the tail was cut, and why (a torn last write, or corruption in
    /// [`RecoveryMode::TruncateCorrupt`]).
    pub cut: Option<(PathBuf, u64, String)>,
    /// Segment files removed because they held no record (a crash while creating them).
    pub removed: Vec<PathBuf>,
}

/// What readers may see: the segments, and how far the active one is durable.
#[derive(Debug, Default)]
pub(crate) struct ReadView {
    pub(crate) segments: Vec<SegmentInfo>,
    /// (base zxid, durable end offset) of the segment being written.
    pub(crate) active: Option<(u64, u64)>,
}

/// Timing of one [`LogCore::write_batch`] call.
#[derive(Debug, Clone, Copy, Default)]
pub struct BatchStats {
    /// Records written.
    pub records: usize,
    /// Bytes written for them (frames and payloads).
    pub bytes: usize,
    /// Flushes (or dsync writes) issued.
    pub flushes: usize,
    /// Time spent in write + flush calls.
    pub flush_time: Duration,
    /// The flush took longer than [`LogOptions::fsync_warning_threshold_ms`] (and was
    /// logged as ZooKeeper logs a slow fsync).
    pub slow: bool,
}

struct Active {
    file: Box<dyn VFile>,
    path: PathBuf,
    base: u64,
    /// End of the valid records.
    write_pos: u64,
    /// Bytes reserved (the file's length).
    allocated: u64,
    /// For `Direct` and `None`: the bytes of the partial block that ends at `write_pos`.
    tail: Vec<u8>,
    /// Pipelined: the end of the last write submitted (after its pad).
    submit_end: u64,
    /// For `None` (buffered, never fsynced): the write-back started so far.
    writeback: crate::io::WriteBehind,
}

/// The transaction log without a writer thread: the caller supplies whole batches.
pub struct LogCore {
    vfs: Arc<dyn Vfs>,
    dir: PathBuf,
    opts: LogOptions,
    segments: Vec<SegmentInfo>,
    active: Option<Active>,
    last_zxid: u64,
    roll_pending: bool,
    buf: AlignedBuf,
    failed: Option<Arc<LogError>>,
    view: Arc<Mutex<ReadView>>,
    bg: Option<Preallocator>,
    /// A spare segment ready (its reserved bytes).
    spare: Option<u64>,
    /// Pipelined strategies: the writes in flight.
    pipe: Option<Pipe>,
    /// Pipelined strategies: the last zxid durable (others: the last written).
    durable_zxid: u64,
}

impl std::fmt::Debug for LogCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogCore")
            .field("dir", &self.dir)
            .field("strategy", &self.opts.strategy)
            .field("backend", &self.vfs.name())
            .field("segments", &self.segments.len())
            .field("last_zxid", &self.last_zxid)
            .finish()
    }
}

/// Lists `log.<hex>` files in `dir`, sorted by base zxid.
pub(crate) fn list_segments(vfs: &dyn Vfs, dir: &Path) -> Result<Vec<SegmentInfo>, LogError> {
    let names = vfs.list_dir(dir).map_err(|e| LogError::io("list", dir, e))?;
    let mut segs: Vec<SegmentInfo> = names
        .iter()
        .filter_map(|n| {
            parse_segment_file_name(n).map(|z| SegmentInfo { base_zxid: z, path: dir.join(n) })
        })
        .collect();
    segs.sort_by_key(|s| s.base_zxid);
    Ok(segs)
}

fn backend_for(opts: &LogOptions) -> Arc<dyn Vfs> {
    if let Some(v) = &opts.vfs {
        return v.clone();
    }
    match opts.backend {
        // Only the io_uring strategies submit through a ring; the others are syscalls by
        // definition (they are the baselines io_uring is measured against).
        BackendKind::Auto if !opts.strategy.wants_uring() => open_backend(BackendKind::Sync),
        kind => open_backend(kind),
    }
}

impl LogCore {
    /// Opens (creating if needed) the log in `dir`, recovering its tail: every record of the
    /// last segment is checked; a torn last write is cut off; corruption (a bad record followed
    /// by a valid record of a later batch) refuses to open unless `opts.recovery` allows
    /// cutting it.
    pub fn open(dir: &Path, opts: LogOptions) -> Result<(Self, RecoveryReport), LogError> {
        opts.validate()?;
        let vfs = backend_for(&opts);
        // (Asked for explicitly, the syscall backend is no fallback: no warning.)
        if opts.strategy.wants_uring()
            && vfs.name() != "uring"
            && opts.vfs.is_none()
            && opts.backend != BackendKind::Sync
        {
            tracing::warn!(
                strategy = %opts.strategy,
                backend = vfs.name(),
                "io_uring is unavailable: the strategy's submissions run as plain syscalls"
            );
        }
        crate::io::create_dir_durable(vfs.as_ref(), dir)
            .map_err(|e| LogError::io("create directory", dir, e))?;
        recover_spare(vfs.as_ref(), dir, &opts)?;
        let mut segments = list_segments(vfs.as_ref(), dir)?;
        let mut report = RecoveryReport::default();
        let mut last_zxid = 0;
        let mut active = None;
        let mut header_fits = true;

        while let Some(seg) = segments.last().cloned() {
            let mut file = vfs
                .open(&seg.path, OpenOptions::read_write())
                .map_err(|e| LogError::io("open", &seg.path, e))?;
            let scan = scan_segment(file.as_ref(), |_, _| {})
                .map_err(|e| LogError::io("read", &seg.path, e))?;
            let scan = match scan {
                Ok(s) => s,
                Err(reason) => {
                    // A damaged header on the newest segment with nothing written after it is
                    // a crash while the segment was being created: it never held a record.
                    if only_zeros_after_header(file.as_ref())
                        .map_err(|e| LogError::io("read", &seg.path, e))?
                    {
                        tracing::warn!(segment = %seg.path.display(), %reason,
                            "removing a log segment whose creation did not complete");
                        remove_durably(vfs.as_ref(), dir, &seg.path)?;
                        report.removed.push(seg.path.clone());
                        segments.pop();
                        continue;
                    }
                    return Err(LogError::BadHeader { segment: seg.path.clone(), reason });
                }
            };
            check_header(&scan.header, &seg, &opts)?;
            header_fits = header_fits_options(&scan.header, &opts);
            let mut end = scan.end;
            match &scan.tail {
                TailState::Clean => {}
                TailState::Torn { offset, reason } => {
                    tracing::info!(segment = %seg.path.display(), offset, %reason,
                        "cutting a torn write off the end of the log");
                    report.cut = Some((seg.path.clone(), *offset, reason.clone()));
                    end = *offset;
                }
                TailState::Corrupt { offset, reason, next_zxid, .. } => {
                    let err = LogError::Corrupt {
                        segment: seg.path.clone(),
                        offset: *offset,
                        last_good_zxid: scan.last_zxid,
                        next_zxid: Some(*next_zxid),
                        reason: reason.clone(),
                    };
                    if opts.recovery == RecoveryMode::Strict {
                        return Err(err);
                    }
                    tracing::error!(%err, "recovery mode: cutting the log at the corrupt record; \
                        records after it are discarded");
                    report.cut = Some((seg.path.clone(), *offset, reason.clone()));
                    end = *offset;
                }
            }
            if scan.tail != TailState::Clean {
                cut_file(file.as_mut(), &seg.path, end)?;
            }
            if scan.records == 0 {
                tracing::warn!(segment = %seg.path.display(), "removing an empty log segment");
                drop(file);
                remove_durably(vfs.as_ref(), dir, &seg.path)?;
                report.removed.push(seg.path.clone());
                segments.pop();
                continue;
            }
            drop(file);
            last_zxid = scan.last_zxid;
            report.tail_records = scan.records;
            let file_len = if scan.tail == TailState::Clean { scan.file_len } else { end };
            active = Some(open_active(vfs.as_ref(), &opts, &seg, end, file_len)?);
            break;
        }
        report.segments = segments.len();
        report.last_zxid = last_zxid;
        let view = ReadView {
            segments: segments.clone(),
            active: active.as_ref().map(|a: &Active| (a.base, a.write_pos)),
        };
        let pipe = opts.strategy.is_pipelined().then(|| Pipe {
            queue: vfs
                .write_queue(opts.in_flight, opts.uring_register)
                .unwrap_or_else(|| Box::new(InlineQueue::new(vfs.clone()))),
            file: None,
            flights: VecDeque::new(),
            free: Vec::new(),
            next_tag: 1,
            depth: opts.in_flight,
            window: pipe_window(&opts),
            completions: Vec::new(),
            pad: Vec::new(),
            dsync: opts.strategy == FlushStrategy::UringPipe,
            syncs: 0,
            sync_in_flight: None,
        });
        let mut core = LogCore {
            vfs,
            dir: dir.to_path_buf(),
            opts,
            segments,
            // A segment written one batch at a time is not continued with several in flight,
            // nor the other way round: its header says which rules recovery applies.
            roll_pending: active.is_some() && !header_fits,
            active,
            last_zxid,
            pipe,
            durable_zxid: last_zxid,
            buf: AlignedBuf::with_capacity(1 << 20),
            failed: None,
            view: Arc::new(Mutex::new(view)),
            bg: None,
            spare: None,
        };
        if core.opts.prealloc_in_background {
            let bg = Preallocator::spawn(core.vfs.clone())
                .map_err(|e| LogError::io("spawn preallocation thread", dir, e))?;
            core.bg = Some(bg);
        }
        if !core.roll_pending {
            core.check_roll();
        }
        Ok((core, report))
    }

    /// Waits until the background preallocation thread is idle, taking a spare it made:
    /// with it the thread's work happens at known points (crash tests replay them).
    #[doc(hidden)]
    pub fn wait_background(&mut self) {
        for _ in 0..2 {
            if let Some(bg) = &self.bg {
                bg.wait_idle();
            }
            self.prepare_spare();
        }
    }

    /// The last zxid written (0 for an empty log).
    pub fn last_zxid(&self) -> u64 {
        self.last_zxid
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The options it was opened with.
    pub fn options(&self) -> &LogOptions {
        &self.opts
    }

    /// The storage backend in use (`uring`, `sync`, `sim`).
    pub fn backend_name(&self) -> &'static str {
        self.vfs.name()
    }

    /// The segment files, oldest first.
    pub fn segments(&self) -> &[SegmentInfo] {
        &self.segments
    }

    /// The error that stopped the log, if one did.
    pub fn failure(&self) -> Option<Arc<LogError>> {
        self.failed.clone()
    }

    pub(crate) fn view(&self) -> Arc<Mutex<ReadView>> {
        self.view.clone()
    }

    pub(crate) fn vfs(&self) -> Arc<dyn Vfs> {
        self.vfs.clone()
    }

    fn check_usable(&self) -> Result<(), LogError> {
        match &self.failed {
            Some(e) => Err(LogError::Failed(e.clone())),
            None => Ok(()),
        }
    }

    fn fail(&mut self, e: LogError) -> LogError {
        if let LogError::Failed(inner) = &e {
            return LogError::Failed(inner.clone());
        }
        tracing::error!(error = %e, "log write failed; the log now refuses all writes");
        let e = Arc::new(e);
        self.failed = Some(e.clone());
        self.active = None;
        if let Some(p) = &mut self.pipe {
            // Writes still in flight finish inside the queue (it keeps their buffers);
            // none of them is acknowledged.
            p.flights.clear();
        }
        LogError::Failed(e)
    }

    /// The active segment changes (or may be a new file under the same name, after a
    /// truncation): the queue opens it again before its next write.
    fn forget_queue_file(&mut self) {
        if let Some(p) = &mut self.pipe {
            debug_assert!(p.flights.is_empty());
            p.file = None;
        }
    }

    /// Writes submitted and not yet known to be durable (pipelined strategies).
    pub fn in_flight(&self) -> usize {
        self.pipe.as_ref().map_or(0, |p| p.flights.len())
    }

    /// The last zxid known durable.
    pub fn durable_zxid(&self) -> u64 {
        if self.pipe.is_some() {
            self.durable_zxid
        } else {
            self.last_zxid
        }
    }

    /// Checks a batch without writing it.
    pub fn check_batch(&self, records: &[(u64, &[u8])]) -> Result<(), LogError> {
        self.check_usable()?;
        let mut last = self.last_zxid;
        for (zxid, payload) in records {
            if *zxid <= last {
                return Err(LogError::ZxidNotIncreasing { zxid: *zxid, last });
            }
            if payload.len() > self.opts.record_bytes_max {
                return Err(LogError::RecordTooLarge {
                    len: payload.len(),
                    max: self.opts.record_bytes_max,
                });
            }
            last = *zxid;
        }
        Ok(())
    }

    /// Writes `records` (zxids strictly increasing, above [`LogCore::last_zxid`]) and makes
    /// them durable as the strategy does. `on_durable(n)` is called each time the first `n`
    /// records have become durable (once at the end for most strategies; after every record for
    /// [`FlushStrategy::PerRecord`]). Any I/O error stops the log for good.
    pub fn write_batch(
        &mut self,
        records: &[(u64, &[u8])],
        mut on_durable: impl FnMut(usize),
    ) -> Result<BatchStats, LogError> {
        self.check_batch(records)?;
        if self.pipe.is_some() {
            let mut told = 0;
            let mut cb = |z: u64| {
                let n = records.partition_point(|r| r.0 <= z);
                if n > told {
                    told = n;
                    on_durable(n);
                }
            };
            let stats = self.submit_batch(records, &mut cb)?;
            self.drain(&mut cb)?;
            return Ok(stats);
        }
        let mut stats = BatchStats::default();
        let mut done = 0;
        while done < records.len() {
            // A sub-batch: as many records as the batch byte limit allows, at least one.
            let mut end = done;
            let mut bytes = 0usize;
            while end < records.len()
                && (end == done || bytes + records[end].1.len() <= self.opts.batch_bytes_max)
            {
                bytes += records[end].1.len();
                end += 1;
            }
            match self.write_sub_batch(&records[done..end], done, &mut stats, &mut on_durable) {
                Ok(()) => {}
                Err(e) => return Err(self.fail(e)),
            }
            done = end;
        }
        if stats.flush_time.as_millis() as u64 > self.opts.fsync_warning_threshold_ms {
            stats.slow = true;
            // ZooKeeper's FileTxnLog text (its missing space after "latency." included), which
            // operators' log alerts match.
            let thread = std::thread::current();
            let file_bytes = self.active.as_ref().map_or(0, |a| a.allocated);
            tracing::warn!(
                threshold_ms = self.opts.fsync_warning_threshold_ms,
                records = stats.records,
                "fsync-ing the write ahead log in {} took {}ms which will adversely effect \
                 operation latency.File size is {} bytes. See the ZooKeeper troubleshooting guide",
                thread.name().unwrap_or("corral-log"),
                stats.flush_time.as_millis(),
                file_bytes
            );
        }
        Ok(stats)
    }

    /// Pipelined strategies: submits `records` (zxids strictly increasing, above
    /// [`LogCore::last_zxid`]) as one or more writes, waiting for earlier writes only while
    /// the queue or the window is full. `on_durable(z)` is called whenever every record up to
    /// zxid `z` has become durable (these records' or earlier ones'). Any I/O error stops the
    /// log for good.
    pub fn submit_batch(
        &mut self,
        records: &[(u64, &[u8])],
        on_durable: &mut dyn FnMut(u64),
    ) -> Result<BatchStats, LogError> {
        assert!(self.pipe.is_some(), "submit_batch is for pipelined strategies");
        self.check_batch(records)?;
        let per_write = (self.opts.batch_bytes_max as u64).min(PIPE_WRITE_BYTES);
        let mut stats = BatchStats::default();
        let start = Instant::now();
        let mut done = 0;
        while done < records.len() {
            let mut end = done;
            let mut extent = 0u64;
            while end < records.len() {
                let more = (FRAME_LEN + records[end].1.len()) as u64;
                if end > done && extent + more > per_write {
                    break;
                }
                extent += more;
                end += 1;
            }
            if let Err(e) = self.submit_write(&records[done..end], extent, on_durable) {
                return Err(self.fail(e));
            }
            stats.records += end - done;
            stats.bytes += extent as usize;
            stats.flushes += 1;
            done = end;
        }
        stats.flush_time = start.elapsed();
        Ok(stats)
    }

    /// Pipelined strategies: takes the writes that have finished, waiting for one if `wait`
    /// and any is in flight; calls `on_durable` as in [`LogCore::submit_batch`].
    pub fn reap(&mut self, wait: bool, on_durable: &mut dyn FnMut(u64)) -> Result<(), LogError> {
        self.check_usable()?;
        let wait = if wait { Wait::One } else { Wait::No };
        match self.reap_inner(wait, on_durable) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Pipelined strategies: takes the writes that have finished, waiting (if none has) until
    /// one does or `wake` no longer holds `seen` (see [`crate::io::wake_word`]).
    pub fn reap_or_wake(
        &mut self,
        wake: &Arc<std::sync::atomic::AtomicU32>,
        seen: u32,
        on_durable: &mut dyn FnMut(u64),
    ) -> Result<(), LogError> {
        self.check_usable()?;
        match self.reap_inner(Wait::Wake(wake, seen), on_durable) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Pipelined strategies: waits until nothing is in flight. (`truncate_after`, `sync` and
    /// rolls also wait, telling no one: a caller of [`LogCore::submit_batch`] drains with its
    /// own callback first, as the group-commit writer does.)
    pub fn drain(&mut self, on_durable: &mut dyn FnMut(u64)) -> Result<(), LogError> {
        while self.in_flight() > 0 {
            self.reap(true, on_durable)?;
        }
        Ok(())
    }

    fn submit_write(
        &mut self,
        recs: &[(u64, &[u8])],
        extent: u64,
        on_durable: &mut dyn FnMut(u64),
    ) -> Result<(), LogError> {
        loop {
            let needs_new = match &self.active {
                None => true,
                Some(a) => {
                    self.roll_pending
                        || a.submit_end.max(a.write_pos) + extent + 3 * BLOCK
                            > self.opts.segment_bytes_max
                }
            };
            if needs_new {
                // No write is in flight across segments.
                while self.in_flight() > 0 {
                    self.reap_inner(Wait::One, on_durable)?;
                }
                self.start_segment(recs[0].0)?;
            }
            let p = self.pipe.as_ref().expect("pipelined");
            let fits = match (p.flights.front(), p.flights.back()) {
                (Some(first), Some(last)) => {
                    let data_end = last.write_end + (format::LINK_LEN as u64) + extent;
                    let write_end = data_end + pad_len(data_end) as u64;
                    p.flights.len() < p.depth && write_end - first.write_start <= p.window
                }
                _ => true,
            };
            if fits {
                break;
            }
            self.reap_inner(Wait::One, on_durable)?;
        }
        let opts_prealloc =
            (self.opts.prealloc, self.opts.prealloc_bytes, self.opts.segment_bytes_max);
        let p = self.pipe.as_mut().expect("pipelined");
        let a = self.active.as_mut().expect("active segment");
        let mut buf = p.free.pop().unwrap_or_else(|| AlignedBuf::with_capacity(1 << 16));
        buf.clear();
        // Alone, a write rewrites the partial last block (its pad is not data); behind others
        // it starts on the block after theirs.
        let (write_start, rec_start) = match p.flights.back() {
            None => {
                let pos = a.write_pos;
                buf.extend_from_slice(&a.tail);
                (pos - pos % BLOCK, pos)
            }
            Some(last) => {
                // Behind writes in flight: a link names the record before, so that recovery
                // cannot join this write to an older one if those in between were lost.
                p.pad.clear();
                format::encode_link(&mut p.pad, last.write_end as u32, last.last_zxid);
                buf.extend_from_slice(&p.pad);
                (last.write_end, last.write_end)
            }
        };
        for (zxid, payload) in recs {
            buf.extend_from_slice(&encode_frame(*zxid, rec_start as u32, payload));
            buf.extend_from_slice(payload);
        }
        let data_end = write_start + buf.len() as u64;
        let pad = pad_len(data_end);
        if pad > 0 {
            p.pad.clear();
            encode_pad(&mut p.pad, rec_start as u32, pad);
            buf.extend_from_slice(&p.pad);
        }
        let write_end = write_start + buf.len() as u64;
        debug_assert!(write_end.is_multiple_of(BLOCK));
        make_room(a, self.bg.as_ref(), write_end, opts_prealloc, true, true)?;
        if p.file.as_deref() != Some(a.path.as_path()) {
            debug_assert!(p.flights.is_empty());
            let o = OpenOptions { direct: true, ..OpenOptions::read_write() };
            p.queue.set_file(&a.path, o).map_err(|e| LogError::io("open", &a.path, e))?;
            p.file = Some(a.path.clone());
        }
        let tail_from = (data_end - data_end % BLOCK - write_start) as usize;
        a.tail.clear();
        a.tail.extend_from_slice(&buf.as_slice()[tail_from..(data_end - write_start) as usize]);
        let tag = p.next_tag;
        p.next_tag += 1;
        let len = buf.len();
        p.queue
            .submit(tag, buf, 0..len, write_start, p.dsync)
            .map_err(|e| LogError::io("write", &a.path, e))?;
        let last_zxid = recs.last().expect("non-empty").0;
        p.flights.push_back(Flight {
            tag,
            write_start,
            data_end,
            write_end,
            last_zxid,
            left: (0..len, write_start),
            done: false,
            covered_by: None,
            durable: false,
        });
        debug_assert!(
            p.flights.len() == 1
                || p.flights.back().map(|f| f.write_end)
                    <= p.flights.front().map(|f| f.write_start + p.window),
            "every write not yet durable lies within the window of the first"
        );
        a.write_pos = data_end;
        a.submit_end = write_end;
        self.last_zxid = last_zxid;
        schedule_ahead(a, self.bg.as_ref(), opts_prealloc, true)?;
        self.prepare_spare();
        self.check_roll();
        self.reap_inner(Wait::No, on_durable)
    }

    fn reap_inner(&mut self, wait: Wait, on_durable: &mut dyn FnMut(u64)) -> Result<(), LogError> {
        let Some(p) = self.pipe.as_mut() else { return Ok(()) };
        if p.flights.is_empty() {
            return Ok(());
        }
        let Some(a) = self.active.as_ref() else { return Ok(()) };
        let mut comps = std::mem::take(&mut p.completions);
        match wait {
            Wait::No => p.queue.reap(0, &mut comps),
            Wait::One => p.queue.reap(1, &mut comps),
            Wait::Wake(word, seen) => p.queue.reap_or_wake(word, seen, &mut comps),
        }
        .map_err(|e| LogError::io("write (RWF_DSYNC)", &a.path, e))?;
        for c in comps.drain(..) {
            if c.tag & SYNC_TAG != 0 {
                let seq = c.tag & !SYNC_TAG;
                c.result.map_err(|e| LogError::io("fdatasync", &a.path, e))?;
                p.sync_in_flight = None;
                for f in p.flights.iter_mut().filter(|f| f.covered_by.is_some_and(|s| s <= seq)) {
                    f.durable = true;
                }
                continue;
            }
            let f = p
                .flights
                .iter_mut()
                .find(|f| f.tag == c.tag)
                .expect("a completion for a write in flight");
            let n = c.result.map_err(|e| LogError::io("write", &a.path, e))?;
            let (range, offset) = f.left.clone();
            let buf = c.buf.expect("a write's buffer");
            if n >= range.len() {
                f.done = true;
                f.durable = p.dsync;
                p.free.push(buf);
            } else if n == 0 {
                let e = std::io::Error::from(std::io::ErrorKind::WriteZero);
                return Err(LogError::io("write", &a.path, e));
            } else {
                // A short write: the rest goes again, from where it stopped.
                f.left = (range.start + n..range.end, offset + n as u64);
                let (range, offset) = f.left.clone();
                p.queue
                    .submit(c.tag, buf, range, offset, p.dsync)
                    .map_err(|e| LogError::io("write", &a.path, e))?;
            }
        }
        p.completions = comps;
        // Without RWF_DSYNC: one sync at a time, covering every write completed before it.
        if !p.dsync && p.sync_in_flight.is_none() {
            let seq = p.syncs + 1;
            let mut any = false;
            for f in p.flights.iter_mut().filter(|f| f.done && f.covered_by.is_none()) {
                f.covered_by = Some(seq);
                any = true;
            }
            if any {
                p.syncs = seq;
                p.sync_in_flight = Some(seq);
                p.queue
                    .submit_sync(SYNC_TAG | seq)
                    .map_err(|e| LogError::io("fdatasync", &a.path, e))?;
            }
        }
        let mut durable_end = None;
        while p.flights.front().is_some_and(|f| f.durable) {
            let f = p.flights.pop_front().expect("front");
            self.durable_zxid = f.last_zxid;
            durable_end = Some(f.data_end);
        }
        if let Some(end) = durable_end {
            self.view.lock().unwrap_or_else(|p| p.into_inner()).active = Some((a.base, end));
            on_durable(self.durable_zxid);
        }
        Ok(())
    }

    fn write_sub_batch(
        &mut self,
        recs: &[(u64, &[u8])],
        done_before: usize,
        stats: &mut BatchStats,
        on_durable: &mut impl FnMut(usize),
    ) -> Result<(), LogError> {
        let extent: u64 = recs.iter().map(|(_, p)| (FRAME_LEN + p.len()) as u64).sum();
        let needs_new = match &self.active {
            None => true,
            Some(a) => {
                self.roll_pending || a.write_pos + extent + BLOCK > self.opts.segment_bytes_max
            }
        };
        if needs_new {
            self.start_segment(recs[0].0)?;
        }
        let strategy = self.opts.strategy;
        let durable = strategy.is_durable();
        let opts_prealloc =
            (self.opts.prealloc, self.opts.prealloc_bytes, self.opts.segment_bytes_max);
        let a = self.active.as_mut().expect("active segment");
        let path = a.path.clone();
        let io = |op: &'static str| {
            let path = path.clone();
            move |e| LogError::io(op, path, e)
        };
        let start = Instant::now();
        match strategy {
            FlushStrategy::PerRecord => {
                for (i, (zxid, payload)) in recs.iter().enumerate() {
                    let pos = a.write_pos;
                    self.buf.clear();
                    self.buf.extend_from_slice(&encode_frame(*zxid, pos as u32, payload));
                    self.buf.extend_from_slice(payload);
                    let end = pos + self.buf.len() as u64;
                    make_room(a, self.bg.as_ref(), end, opts_prealloc, durable, false)?;
                    a.file.write_all_at(self.buf.as_slice(), pos).map_err(io("write"))?;
                    a.file.sync_data().map_err(io("fdatasync"))?;
                    a.write_pos = end;
                    stats.flushes += 1;
                    self.last_zxid = *zxid;
                    // Readers may see a record before its appender hears it is durable.
                    self.view.lock().unwrap_or_else(|p| p.into_inner()).active =
                        Some((a.base, end));
                    on_durable(done_before + i + 1);
                }
            }
            FlushStrategy::Direct | FlushStrategy::None => {
                let pos = a.write_pos;
                let block_start = pos - pos % BLOCK;
                self.buf.clear();
                self.buf.extend_from_slice(&a.tail);
                debug_assert_eq!(a.tail.len() as u64, pos - block_start);
                for (zxid, payload) in recs {
                    self.buf.extend_from_slice(&encode_frame(*zxid, pos as u32, payload));
                    self.buf.extend_from_slice(payload);
                }
                let data_end = block_start + self.buf.len() as u64;
                self.buf.pad_to_alignment();
                let write_end = block_start + self.buf.len() as u64;
                make_room(a, self.bg.as_ref(), write_end, opts_prealloc, durable, true)?;
                // Direct: the file is O_DIRECT | O_DSYNC, durable when the write returns.
                // None: whole pages through the page cache, so that the kernel never reads a
                // partly written page back from the disk first (a synchronous read per batch
                // into a preallocated file); its write-back is started as it goes.
                a.file.write_all_at(self.buf.as_slice(), block_start).map_err(io("write"))?;
                if !durable {
                    a.writeback.advance(a.file.as_ref(), write_end);
                }
                let tail_from = (data_end - data_end % BLOCK - block_start) as usize;
                a.tail.clear();
                a.tail.extend_from_slice(
                    &self.buf.as_slice()[tail_from..(data_end - block_start) as usize],
                );
                a.write_pos = data_end;
                if durable {
                    stats.flushes += 1;
                }
            }
            _ => {
                let pos = a.write_pos;
                self.buf.clear();
                for (zxid, payload) in recs {
                    self.buf.extend_from_slice(&encode_frame(*zxid, pos as u32, payload));
                    self.buf.extend_from_slice(payload);
                }
                let end = pos + self.buf.len() as u64;
                make_room(a, self.bg.as_ref(), end, opts_prealloc, durable, false)?;
                let data = self.buf.as_slice();
                match strategy {
                    FlushStrategy::Group => {
                        a.file.write_all_at(data, pos).map_err(io("write"))?;
                        a.file.sync_data().map_err(io("fdatasync"))?;
                    }
                    FlushStrategy::UringLinked => {
                        a.file.write_all_at_then_sync(data, pos).map_err(io("write+fdatasync"))?
                    }
                    FlushStrategy::UringDsync => {
                        a.file.write_all_at_dsync(data, pos).map_err(io("write (RWF_DSYNC)"))?
                    }
                    FlushStrategy::PerRecord
                    | FlushStrategy::Direct
                    | FlushStrategy::None
                    | FlushStrategy::UringPipe
                    | FlushStrategy::UringPipeFsync => {
                        unreachable!()
                    }
                }
                a.write_pos = end;
                if durable {
                    stats.flushes += 1;
                }
            }
        }
        stats.flush_time += start.elapsed();
        schedule_ahead(a, self.bg.as_ref(), opts_prealloc, durable)?;
        stats.records += recs.len();
        stats.bytes += extent as usize;
        self.last_zxid = recs.last().expect("non-empty").0;
        let (base, end) = (a.base, a.write_pos);
        self.view.lock().unwrap_or_else(|p| p.into_inner()).active = Some((base, end));
        if strategy != FlushStrategy::PerRecord {
            on_durable(done_before + recs.len());
        }
        self.prepare_spare();
        self.check_roll();
        Ok(())
    }

    fn check_roll(&mut self) {
        if let Some(a) = &self.active {
            if self.opts.segment_bytes_max.saturating_sub(a.write_pos) < BLOCK {
                self.roll_pending = true;
            }
        }
    }

    /// Starts a new segment at the next append (snapshots call this so that a segment starts
    /// at the zxid after the snapshot).
    pub fn roll(&mut self) -> Result<(), LogError> {
        self.check_usable()?;
        self.roll_pending = self.active.is_some();
        Ok(())
    }

    /// Waits for background preallocation of the active segment to finish (before the writer
    /// leaves the segment or cuts it).
    fn drain_bg(&mut self) -> Result<(), LogError> {
        if let (Some(bg), Some(a)) = (&self.bg, &mut self.active) {
            if let Some(to) = bg.collect(&a.path, true)? {
                a.allocated = a.allocated.max(to);
            }
        }
        Ok(())
    }

    fn spare_path(&self) -> PathBuf {
        self.dir.join(SPARE_NAME)
    }

    /// Takes a finished spare; when the background thread has nothing else to do and there is
    /// no spare, asks it for one. A failure costs only the spare: the next roll creates its
    /// segment itself.
    fn prepare_spare(&mut self) {
        let Some(bg) = &self.bg else { return };
        let spare = self.dir.join(SPARE_NAME);
        match bg.take_created(&spare) {
            Some(Ok(to)) => self.spare = Some(to),
            Some(Err(e)) => tracing::warn!(error = %e, "could not prepare the next log segment"),
            None => {}
        }
        if self.spare.is_some() || bg.pending() || self.active.is_none() {
            return;
        }
        let to = self.opts.prealloc_bytes.min(self.opts.segment_bytes_max).min(INLINE_STEP);
        bg.request_create(&spare, to.max(BLOCK), self.opts.prealloc);
    }

    /// Starts segment `base` in the spare (header written, renamed into place); `Ok(None)`
    /// when there is no spare ready.
    fn start_from_spare(&mut self, base: u64, header: &[u8]) -> Result<Option<Active>, LogError> {
        self.prepare_spare();
        let Some(bg) = &self.bg else { return Ok(None) };
        let spare = self.spare_path();
        let Some(reserved) = self.spare else { return Ok(None) };
        if bg.busy_with(&spare) {
            return Ok(None);
        }
        self.spare = None;
        let path = self.dir.join(segment_file_name(base));
        let aligned = writes_whole_blocks(self.opts.strategy);
        let mut file = open_segment(self.vfs.as_ref(), &spare, self.opts.strategy, false)
            .map_err(|e| LogError::io("open", &spare, e))?;
        if aligned {
            let mut block = AlignedBuf::with_capacity(DIRECT_ALIGN);
            block.extend_from_slice(header);
            block.pad_to_alignment();
            file.write_all_at(block.as_slice(), 0)
        } else {
            file.write_all_at(header, 0)
        }
        .map_err(|e| LogError::io("write header", &spare, e))?;
        // Durable before any record of the segment is acknowledged: an O_DSYNC write already
        // is; with fdatasync strategies a flush of a later range (RWF_DSYNC) would not cover it.
        if self.opts.strategy.is_durable() && self.opts.strategy != FlushStrategy::Direct {
            file.sync_data().map_err(|e| LogError::io("fdatasync", &spare, e))?;
        }
        // Not followed by a directory fsync: recovery takes a spare with a valid header for the
        // segment it names, and the next spare's creation makes the new name durable.
        self.vfs.rename(&spare, &path).map_err(|e| LogError::io("rename", &spare, e))?;
        Ok(Some(Active {
            file,
            path,
            base,
            write_pos: HEADER_LEN as u64,
            allocated: reserved.max(BLOCK),
            tail: if aligned { header.to_vec() } else { Vec::new() },
            submit_end: HEADER_LEN as u64,
            writeback: crate::io::WriteBehind::default(),
        }))
    }

    fn start_segment(&mut self, base: u64) -> Result<(), LogError> {
        // The segment being left is not waited for: background preallocation still running
        // in it writes only beyond its last record (waiting here, for up to a whole chunk of
        // zeros, stalled every roll — one per snapshot).
        if let (Some(bg), Some(a)) = (&self.bg, &self.active) {
            let _ = bg.collect(&a.path, false);
        }
        self.active = None;
        self.roll_pending = false;
        self.forget_queue_file();
        let pipelined = self.opts.strategy.is_pipelined();
        let header = SegmentHeader {
            version: if pipelined {
                format::FORMAT_VERSION_PIPELINED
            } else {
                format::FORMAT_VERSION
            },
            dbid: self.opts.dbid,
            base_zxid: base,
            prev_zxid: self.last_zxid,
            window_blocks: if pipelined {
                u32::try_from(pipe_window(&self.opts) / BLOCK).unwrap_or(u32::MAX)
            } else {
                0
            },
        }
        .encode();
        if let Some(a) = self.start_from_spare(base, &header)? {
            return self.begin(a);
        }
        let path = self.dir.join(segment_file_name(base));
        let aligned = writes_whole_blocks(self.opts.strategy);
        let mut file = open_segment(self.vfs.as_ref(), &path, self.opts.strategy, true)
            .map_err(|e| LogError::io("create", &path, e))?;
        let mut a = Active {
            file: {
                if aligned {
                    let mut block = AlignedBuf::with_capacity(DIRECT_ALIGN);
                    block.extend_from_slice(&header);
                    block.pad_to_alignment();
                    file.write_all_at(block.as_slice(), 0)
                } else {
                    file.write_all_at(&header, 0)
                }
                .map_err(|e| LogError::io("write header", &path, e))?;
                file
            },
            path: path.clone(),
            base,
            write_pos: HEADER_LEN as u64,
            allocated: if aligned { BLOCK } else { HEADER_LEN as u64 },
            tail: if aligned { header.to_vec() } else { Vec::new() },
            submit_end: HEADER_LEN as u64,
            writeback: crate::io::WriteBehind::default(),
        };
        // With background preallocation only a little is reserved inline; the rest follows
        // while records are written.
        let first_step = if self.bg.is_some() {
            self.opts.prealloc_bytes.min(self.opts.segment_bytes_max).min(INLINE_STEP)
        } else {
            self.opts.prealloc_bytes.min(self.opts.segment_bytes_max)
        };
        // The step is `first_step` too: rounded up to a whole `prealloc_bytes` step, the
        // writer zero-filled the whole step inline at every roll (64 MiB by default, ~50 ms;
        // a whole 1 GiB segment with preAllocSize=1048576).
        ensure_allocated(
            &mut a,
            first_step,
            (self.opts.prealloc, first_step, self.opts.segment_bytes_max),
            false,
            aligned,
        )?;
        // The new file's header, size and directory entry are durable before any record is
        // acknowledged from it.
        a.file.sync_all().map_err(|e| LogError::io("fsync", &path, e))?;
        self.vfs.sync_dir(&self.dir).map_err(|e| LogError::io("fsync directory", &self.dir, e))?;
        self.begin(a)
    }

    /// Makes `a`, a new segment, the active one and the newest readers see.
    fn begin(&mut self, mut a: Active) -> Result<(), LogError> {
        self.segments.push(SegmentInfo { base_zxid: a.base, path: a.path.clone() });
        {
            let mut v = self.view.lock().unwrap_or_else(|p| p.into_inner());
            v.segments = self.segments.clone();
            v.active = Some((a.base, a.write_pos));
        }
        schedule_ahead(
            &mut a,
            self.bg.as_ref(),
            (self.opts.prealloc, self.opts.prealloc_bytes, self.opts.segment_bytes_max),
            self.opts.strategy.is_durable(),
        )?;
        self.active = Some(a);
        Ok(())
    }

    /// Removes every record with a zxid above `zxid`, durably (ZAB's TRUNC). Later segments are
    /// deleted newest first; the segment holding `zxid` is cut just after it. Appends continue
    /// after the cut.
    pub fn truncate_after(&mut self, zxid: u64) -> Result<(), LogError> {
        self.check_usable()?;
        if zxid >= self.last_zxid {
            return Ok(());
        }
        match self.truncate_inner(zxid) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(e)),
        }
    }

    fn truncate_inner(&mut self, zxid: u64) -> Result<(), LogError> {
        while self.in_flight() > 0 {
            self.reap_inner(Wait::One, &mut |_| {})?;
        }
        self.drain_bg()?;
        self.active = None;
        self.roll_pending = false;
        self.forget_queue_file();
        while let Some(seg) = self.segments.last().cloned() {
            if seg.base_zxid <= zxid {
                break;
            }
            remove_durably(self.vfs.as_ref(), &self.dir, &seg.path)?;
            self.segments.pop();
            let mut v = self.view.lock().unwrap_or_else(|p| p.into_inner());
            v.segments = self.segments.clone();
            v.active = None;
        }
        let Some(seg) = self.segments.last().cloned() else {
            self.last_zxid = zxid;
            return Ok(());
        };
        let mut file = self
            .vfs
            .open(&seg.path, OpenOptions::read_write())
            .map_err(|e| LogError::io("open", &seg.path, e))?;
        let mut cut = HEADER_LEN as u64;
        let mut last = 0;
        let scan = scan_segment(file.as_ref(), |m, _| {
            if m.zxid <= zxid {
                cut = m.offset + (FRAME_LEN as u64) + u64::from(m.len);
                last = m.zxid;
            }
        })
        .map_err(|e| LogError::io("read", &seg.path, e))?
        .map_err(|reason| LogError::BadHeader { segment: seg.path.clone(), reason })?;
        if let TailState::Corrupt { offset, reason, next_zxid, .. } = scan.tail {
            if offset < cut {
                return Err(LogError::Corrupt {
                    segment: seg.path.clone(),
                    offset,
                    last_good_zxid: scan.last_zxid,
                    next_zxid: Some(next_zxid),
                    reason,
                });
            }
        }
        if last == 0 {
            last = scan.header.prev_zxid;
        }
        cut_file(file.as_mut(), &seg.path, cut)?;
        drop(file);
        // The segment's first record has zxid = base <= zxid, so `last` is set unless the
        // segment was damaged; then the truncation point itself is the floor.
        self.last_zxid = if last > 0 { last } else { zxid };
        let a = open_active(self.vfs.as_ref(), &self.opts, &seg, cut, cut)?;
        self.view.lock().unwrap_or_else(|p| p.into_inner()).active = Some((a.base, a.write_pos));
        self.active = Some(a);
        self.durable_zxid = self.last_zxid;
        self.roll_pending = !header_fits_options(&scan.header, &self.opts);
        self.check_roll();
        Ok(())
    }

    /// Iterates the records with zxid ≥ `from`, across segments, up to what is durable.
    pub fn iter_from(&self, from: u64) -> LogIter {
        LogIter::new(self.vfs.clone(), &self.view, from, self.opts.dbid)
    }

    /// Deletes whole segments all of whose records have zxids below `zxid` (so that the
    /// segment holding `zxid`, and everything after, stay). Returns the files removed.
    pub fn purge_before(&mut self, zxid: u64) -> Result<Vec<PathBuf>, LogError> {
        let removed = self.detach_before(zxid)?;
        for path in &removed {
            self.vfs.remove_file(path).map_err(|e| LogError::io("remove", path, e))?;
        }
        if !removed.is_empty() {
            self.vfs
                .sync_dir(&self.dir)
                .map_err(|e| LogError::io("fsync directory", &self.dir, e))?;
        }
        Ok(removed)
    }

    /// What [`purge_before`](Self::purge_before) removes, taken out of the log (its readers no
    /// longer see those segments) but left on disk: the caller removes the files, off the
    /// writer's path. Until then a restart finds them and keeps them (older segments below the
    /// log's start are harmless; the next purge removes them).
    pub fn detach_before(&mut self, zxid: u64) -> Result<Vec<PathBuf>, LogError> {
        self.check_usable()?;
        let mut detached = Vec::new();
        // Segment i holds [base_i, base_{i+1}); it may go if base_{i+1} <= zxid.
        while self.segments.len() >= 2 && self.segments[1].base_zxid <= zxid {
            detached.push(self.segments.remove(0).path);
        }
        if !detached.is_empty() {
            self.view.lock().unwrap_or_else(|p| p.into_inner()).segments = self.segments.clone();
        }
        Ok(detached)
    }

    /// Makes everything written durable (meaningful for [`FlushStrategy::None`]).
    pub fn sync(&mut self) -> Result<(), LogError> {
        self.check_usable()?;
        self.drain(&mut |_| {})?;
        if let Some(a) = &mut self.active {
            if let Err(e) = a.file.sync_data() {
                let path = a.path.clone();
                return Err(self.fail(LogError::io("fdatasync", path, e)));
            }
        }
        Ok(())
    }
}

fn check_header(h: &SegmentHeader, seg: &SegmentInfo, opts: &LogOptions) -> Result<(), LogError> {
    if h.base_zxid != seg.base_zxid {
        return Err(LogError::BadHeader {
            segment: seg.path.clone(),
            reason: format!("header base zxid {:#x} does not match the file name", h.base_zxid),
        });
    }
    if h.dbid != opts.dbid {
        return Err(LogError::BadHeader {
            segment: seg.path.clone(),
            reason: format!("dbid {} is not this log's dbid {}", h.dbid, opts.dbid),
        });
    }
    Ok(())
}

/// True if appends under `opts` may continue the segment with header `h`: a pipelined log
/// needs its own window, any other one a version 1 segment.
fn header_fits_options(h: &SegmentHeader, opts: &LogOptions) -> bool {
    if opts.strategy.is_pipelined() {
        h.has_pads() && h.window() == pipe_window(opts)
    } else {
        !h.has_pads()
    }
}

fn only_zeros_after_header(file: &dyn VFile) -> std::io::Result<bool> {
    let len = file.len()?;
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = HEADER_LEN as u64;
    while pos < len {
        let n = read_up_to(file, &mut buf, pos)?;
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        pos += n as u64;
    }
    Ok(true)
}

/// At open: a spare segment whose header is valid was the newest segment when the writer
/// stopped (its rename into place may not have reached the disk) and takes the name it
/// gives; any other spare (never used, or its header not written whole) is removed.
fn recover_spare(vfs: &dyn Vfs, dir: &Path, opts: &LogOptions) -> Result<(), LogError> {
    let spare = dir.join(SPARE_NAME);
    if !vfs.exists(&spare) {
        return Ok(());
    }
    let file =
        vfs.open(&spare, OpenOptions::read()).map_err(|e| LogError::io("open", &spare, e))?;
    let mut h = [0u8; HEADER_LEN];
    let n = read_up_to(file.as_ref(), &mut h, 0).map_err(|e| LogError::io("read", &spare, e))?;
    drop(file);
    match SegmentHeader::decode(&h[..n]) {
        Ok(header) if header.dbid == opts.dbid => {
            let to = dir.join(segment_file_name(header.base_zxid));
            if vfs.exists(&to) {
                return Err(LogError::BadHeader {
                    segment: spare,
                    reason: format!("it names segment {}, which exists", to.display()),
                });
            }
            tracing::info!(segment = %to.display(), "the newest log segment was still named as the spare");
            vfs.rename(&spare, &to).map_err(|e| LogError::io("rename", &spare, e))?;
            vfs.sync_dir(dir).map_err(|e| LogError::io("fsync directory", dir, e))
        }
        _ => remove_durably(vfs, dir, &spare),
    }
}

fn remove_durably(vfs: &dyn Vfs, dir: &Path, path: &Path) -> Result<(), LogError> {
    vfs.remove_file(path).map_err(|e| LogError::io("remove", path, e))?;
    vfs.sync_dir(dir).map_err(|e| LogError::io("fsync directory", dir, e))
}

/// Cuts a file at `len` durably, so that nothing beyond can be mistaken for records later.
fn cut_file(file: &mut dyn VFile, path: &Path, len: u64) -> Result<(), LogError> {
    file.set_len(len).map_err(|e| LogError::io("truncate", path, e))?;
    file.sync_all().map_err(|e| LogError::io("fsync", path, e))
}

/// True for the strategies that write whole blocks from the start of the block holding the
/// write position (the partial block's bytes kept in [`Active::tail`]): O_DIRECT needs it, and
/// page-cache writes of whole pages spare the kernel reading a partial page back first.
fn writes_whole_blocks(strategy: FlushStrategy) -> bool {
    matches!(
        strategy,
        FlushStrategy::Direct
            | FlushStrategy::None
            | FlushStrategy::UringPipe
            | FlushStrategy::UringPipeFsync
    )
}

/// Opens (or, with `create`, creates) a segment for writing as `strategy` writes: `Direct`
/// `O_DIRECT | O_DSYNC`; `None` `O_DIRECT` where the filesystem takes it, else buffered.
fn open_segment(
    vfs: &dyn Vfs,
    path: &Path,
    strategy: FlushStrategy,
    create: bool,
) -> std::io::Result<Box<dyn VFile>> {
    let base = if create { OpenOptions::create_new() } else { OpenOptions::read_write() };
    match strategy {
        FlushStrategy::Direct => vfs.open(path, OpenOptions { direct: true, dsync: true, ..base }),
        // Each write carries RWF_DSYNC itself.
        FlushStrategy::UringPipe | FlushStrategy::UringPipeFsync => {
            vfs.open(path, OpenOptions { direct: true, ..base })
        }
        FlushStrategy::None => {
            match vfs.open(path, OpenOptions { direct: true, ..base }) {
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    if create {
                        // The failed open may have created it.
                        let _ = vfs.remove_file(path);
                    }
                    vfs.open(path, base)
                }
                r => r,
            }
        }
        _ => vfs.open(path, base),
    }
}

fn open_active(
    vfs: &dyn Vfs,
    opts: &LogOptions,
    seg: &SegmentInfo,
    write_pos: u64,
    file_len: u64,
) -> Result<Active, LogError> {
    let file = open_segment(vfs, &seg.path, opts.strategy, false)
        .map_err(|e| LogError::io("open", &seg.path, e))?;
    let mut tail = Vec::new();
    if writes_whole_blocks(opts.strategy) {
        let from = write_pos - write_pos % BLOCK;
        tail.resize((write_pos - from) as usize, 0);
        // Reads of an O_DIRECT file need aligned buffers; read through a plain handle.
        let plain = vfs
            .open(&seg.path, OpenOptions::read())
            .map_err(|e| LogError::io("open", &seg.path, e))?;
        crate::io::read_exact_at(plain.as_ref(), &mut tail, from)
            .map_err(|e| LogError::io("read", &seg.path, e))?;
    }
    Ok(Active {
        file,
        path: seg.path.clone(),
        base: seg.base_zxid,
        write_pos,
        allocated: file_len,
        tail,
        submit_end: write_pos,
        writeback: crate::io::WriteBehind::new(write_pos, crate::io::WRITEBACK_STEP),
    })
}

/// Makes sure `need` bytes of the active segment are reserved before a write reaches them:
/// collects finished background work, waits for it if it covers the write, else grows inline.
fn make_room(
    a: &mut Active,
    bg: Option<&Preallocator>,
    need: u64,
    prealloc: (Prealloc, u64, u64),
    sync: bool,
    direct: bool,
) -> Result<(), LogError> {
    let mut prealloc = prealloc;
    if let Some(bg) = bg {
        if let Some(to) = bg.collect(&a.path, false)? {
            a.allocated = a.allocated.max(to);
        }
        // Space on its way for this segment is waited for; the thread still busy with a
        // segment the writer has left is not: a little is reserved inline instead.
        if need > a.allocated && bg.busy_with(&a.path) {
            if let Some(to) = bg.collect(&a.path, true)? {
                a.allocated = a.allocated.max(to);
            }
        }
        prealloc.1 = prealloc.1.min(INLINE_STEP);
    }
    ensure_allocated(a, need, prealloc, sync, direct)
}

/// Asks the background thread to extend the reserved space when less than a step remains
/// ahead of the writer (after collecting what it finished).
fn schedule_ahead(
    a: &mut Active,
    bg: Option<&Preallocator>,
    (mode, step, max): (Prealloc, u64, u64),
    sync: bool,
) -> Result<(), LogError> {
    let Some(bg) = bg else { return Ok(()) };
    if let Some(to) = bg.collect(&a.path, false)? {
        a.allocated = a.allocated.max(to);
    }
    if bg.pending() || a.allocated >= max || a.allocated >= a.write_pos + step {
        return Ok(());
    }
    let to = (a.allocated + BG_CHUNK).next_multiple_of(BLOCK).min(max);
    if to > a.allocated {
        bg.request(&a.path, a.allocated, to, mode, sync);
    }
    Ok(())
}

/// Grows the segment inline so that `end` bytes are reserved, in prealloc steps.
fn ensure_allocated(
    a: &mut Active,
    end: u64,
    (mode, step, max): (Prealloc, u64, u64),
    sync_after: bool,
    direct: bool,
) -> Result<(), LogError> {
    if end <= a.allocated {
        return Ok(());
    }
    let target = end.next_multiple_of(step).min(max.max(end.next_multiple_of(BLOCK)));
    // The new size must be durable before records that depend on it are acknowledged. With
    // zero-fill on a direct file it needs no sync of its own: `direct` opens the file O_DSYNC,
    // and `uring-pipe` writes every record with RWF_DSYNC, which makes the data and the
    // metadata needed to read it (the size, the written extent) durable on ext4 and XFS
    // alike; a crash before then loses only zeros.
    let sync = sync_after && !(direct && mode == Prealloc::ZeroFill);
    grow_file(a.file.as_mut(), &a.path, a.allocated, target, mode, direct, sync)?;
    a.allocated = target;
    Ok(())
}
