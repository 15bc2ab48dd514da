//! [`Log`]: group commit. Appenders queue records; one writer thread takes whatever is waiting
//! as a batch, writes and flushes it once through [`LogCore`], and completes every waiter.
//!
//! Blocking appenders that queue while a batch is being flushed join one *commit group*. The
//! whole group sleeps on one futex word and is woken by a single `FUTEX_WAKE` when its batch
//! is durable, rather than by one wake-up call per appender: on a small machine with many
//! appenders, waking them one by one costs more than the flush.

use bytes::Bytes;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::core::{LogCore, ReadView, RecoveryReport};
use super::metrics::LogMetrics;
use super::reader::LogIter;
use super::{LogError, LogOptions};
use crate::io::Vfs;

/// Called once an append is durable (or has failed), in zxid order, on the log's writer or
/// completion thread. It must be quick and must not block on the log (appending from it may
/// deadlock when the queue is full).
pub type AppendCallback = Box<dyn FnOnce(Result<u64, LogError>) + Send>;

struct Slot<T> {
    value: Mutex<Option<T>>,
    ready: Condvar,
}

impl<T> Slot<T> {
    fn new() -> Self {
        Self { value: Mutex::new(None), ready: Condvar::new() }
    }

    fn put(&self, v: T) {
        *self.value.lock().unwrap_or_else(|p| p.into_inner()) = Some(v);
        self.ready.notify_one();
    }

    fn take(&self) -> T {
        let mut g = self.value.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(v) = g.take() {
                return v;
            }
            g = self.ready.wait(g).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Blocking appenders whose records go out in the same batch.
struct CommitGroup {
    /// `PENDING`, then `DURABLE` or `FAILED`; the futex word the members sleep on.
    state: AtomicU32,
    /// Members that joined (fixed once the writer takes the group).
    members: AtomicUsize,
    /// Members whose records are durable.
    durable: AtomicUsize,
    error: OnceLock<LogError>,
}

const PENDING: u32 = 0;
const DURABLE: u32 = 1;
const FAILED: u32 = 2;

impl CommitGroup {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            state: AtomicU32::new(PENDING),
            members: AtomicUsize::new(0),
            durable: AtomicUsize::new(0),
            error: OnceLock::new(),
        })
    }

    fn wait(&self) -> Result<(), LogError> {
        loop {
            match self.state.load(Ordering::Acquire) {
                PENDING => atomic_wait::wait(&self.state, PENDING),
                DURABLE => return Ok(()),
                _ => return Err(self.error.get().cloned().unwrap_or(LogError::Closed)),
            }
        }
    }

    /// Ends the group (the first outcome wins) and wakes every member with one call.
    fn finish(&self, r: Result<(), LogError>) {
        let to = match r {
            Ok(()) => DURABLE,
            Err(e) => {
                let _ = self.error.set(e);
                FAILED
            }
        };
        if self.state.compare_exchange(PENDING, to, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            atomic_wait::wake_all(&self.state);
        }
    }
}

enum Done {
    Group(Arc<CommitGroup>),
    Callback(AppendCallback),
}

impl Done {
    fn complete(self, r: Result<u64, LogError>) {
        match self {
            Done::Group(g) => match r {
                Ok(_) => {
                    let n = g.durable.fetch_add(1, Ordering::AcqRel) + 1;
                    if n == g.members.load(Ordering::Acquire) {
                        g.finish(Ok(()));
                    }
                }
                Err(e) => g.finish(Err(e)),
            },
            Done::Callback(cb) => cb(r),
        }
    }

    fn group(&self) -> Option<&Arc<CommitGroup>> {
        match self {
            Done::Group(g) => Some(g),
            Done::Callback(_) => None,
        }
    }
}

struct Pending {
    zxid: u64,
    payload: Bytes,
    queued_at: Instant,
    done: Done,
}

enum Control {
    Roll,
    TruncateAfter(u64),
    PurgeBefore(u64),
    DetachBefore(u64),
    Sync,
}

enum Item {
    Append(Pending),
    Control(Control, Arc<Slot<Result<Vec<PathBuf>, LogError>>>),
}

struct Queue {
    items: VecDeque<Item>,
    /// The commit group blocking appenders join now.
    open_group: Arc<CommitGroup>,
    open_bytes: usize,
    bytes: usize,
    last_zxid: u64,
    failed: Option<Arc<LogError>>,
    closed: bool,
    writer_sleeping: bool,
    /// The pipelined writer waits in the ring for a write or a bump of [`Shared::wake`].
    writer_in_ring: bool,
    space_waiters: usize,
}

struct Shared {
    q: Mutex<Queue>,
    work: Condvar,
    space: Condvar,
    /// Bumped on every enqueue, so that the writer can poll without taking the lock.
    enqueued: AtomicU64,
    durable_zxid: AtomicU64,
    /// Bumped (with a futex wake) to call the pipelined writer out of the ring.
    wake: Arc<AtomicU32>,
    /// Completion batches handed to the completion thread and not yet run.
    handoffs: AtomicUsize,
    metrics: Mutex<LogMetrics>,
    view: Arc<Mutex<ReadView>>,
    vfs: Arc<dyn Vfs>,
    opts: LogOptions,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.q.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Reads a [`Log`]'s measurements ([`Log::metrics_handle`]).
#[derive(Clone)]
pub struct MetricsHandle(Arc<Shared>);

impl std::fmt::Debug for MetricsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsHandle")
    }
}

impl MetricsHandle {
    /// A copy of the writer's measurements.
    pub fn get(&self) -> LogMetrics {
        self.0.metrics.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Clears them.
    pub fn reset(&self) {
        self.0.metrics.lock().unwrap_or_else(|p| p.into_inner()).reset();
    }
}

/// The group-commit transaction log. Cheap to share across threads by reference (`&Log` is
/// all an appender needs); closing happens on drop or with [`Log::close`].
pub struct Log {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
    completer: Option<JoinHandle<()>>,
    backend: &'static str,
    dir: PathBuf,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.dir)
            .field("backend", &self.backend)
            .field("strategy", &self.shared.opts.strategy)
            .finish()
    }
}

impl Log {
    /// Opens (creating if needed) the log in `dir`, recovering its tail (see [`LogCore::open`]),
    /// and starts the writer thread.
    pub fn open(dir: &Path, opts: LogOptions) -> Result<(Log, RecoveryReport), LogError> {
        let (core, report) = LogCore::open(dir, opts.clone())?;
        let backend = core.backend_name();
        let shared = Arc::new(Shared {
            q: Mutex::new(Queue {
                items: VecDeque::new(),
                open_group: CommitGroup::new(),
                open_bytes: 0,
                bytes: 0,
                last_zxid: core.last_zxid(),
                failed: None,
                closed: false,
                writer_sleeping: false,
                writer_in_ring: false,
                space_waiters: 0,
            }),
            work: Condvar::new(),
            space: Condvar::new(),
            enqueued: AtomicU64::new(0),
            wake: Arc::new(AtomicU32::new(0)),
            durable_zxid: AtomicU64::new(core.last_zxid()),
            handoffs: AtomicUsize::new(0),
            metrics: Mutex::new(LogMetrics::default()),
            view: core.view(),
            vfs: core.vfs(),
            opts,
        });
        tracing::info!(dir = %dir.display(), strategy = %shared.opts.strategy, backend,
            last_zxid = format_args!("{:#x}", core.last_zxid()), "transaction log open");
        let (tx, rx) = mpsc::channel::<Completions>();
        let s = shared.clone();
        let completer = std::thread::Builder::new()
            .name("corral-log-complete".into())
            .spawn(move || {
                for batch in rx {
                    for (done, r) in batch {
                        done.complete(r);
                    }
                    s.handoffs.fetch_sub(1, Ordering::AcqRel);
                }
            })
            .map_err(|e| LogError::io("spawn completion thread", dir, e))?;
        let s = shared.clone();
        let writer = std::thread::Builder::new()
            .name("corral-log-writer".into())
            .spawn(move || writer_loop(core, &s, &Dispatch { tx, sh: &s }))
            .map_err(|e| LogError::io("spawn writer thread", dir, e))?;
        let log = Log {
            shared,
            writer: Some(writer),
            completer: Some(completer),
            backend,
            dir: dir.to_path_buf(),
        };
        Ok((log, report))
    }

    /// The storage backend in use: `uring`, `sync` or `sim`.
    pub fn backend_name(&self) -> &'static str {
        self.backend
    }

    /// The options the log was opened with.
    pub fn options(&self) -> &LogOptions {
        &self.shared.opts
    }

    /// The highest zxid known durable.
    pub fn durable_zxid(&self) -> u64 {
        self.shared.durable_zxid.load(Ordering::Acquire)
    }

    /// The highest zxid accepted (queued or written).
    pub fn last_zxid(&self) -> u64 {
        self.shared.lock().last_zxid
    }

    /// Appends a record and waits until it is durable. Returns its zxid.
    pub fn append(&self, zxid: u64, payload: impl Into<Bytes>) -> Result<u64, LogError> {
        let (zxid, group) = self.enqueue(Some(zxid), payload.into(), None)?;
        group.expect("blocking append joins a group").wait().map(|()| zxid)
    }

    /// Appends a record with the zxid after the last one accepted, and waits until it is
    /// durable. Returns the zxid it got.
    pub fn append_next(&self, payload: impl Into<Bytes>) -> Result<u64, LogError> {
        let (zxid, group) = self.enqueue(None, payload.into(), None)?;
        group.expect("blocking append joins a group").wait().map(|()| zxid)
    }

    /// Queues a record; `done` runs on the writer thread when it is durable or has failed.
    /// Errors that are known at once (a stopped log, a zxid out of order, an oversized
    /// record) are returned here and `done` is not called.
    pub fn append_async(
        &self,
        zxid: u64,
        payload: impl Into<Bytes>,
        done: AppendCallback,
    ) -> Result<(), LogError> {
        self.enqueue(Some(zxid), payload.into(), Some(done)).map(|_| ())
    }

    /// Queues a record with the zxid after the last one accepted; `done` runs when it is
    /// durable or has failed. Returns the zxid it got.
    pub fn append_next_async(
        &self,
        payload: impl Into<Bytes>,
        done: AppendCallback,
    ) -> Result<u64, LogError> {
        self.enqueue(None, payload.into(), Some(done)).map(|(z, _)| z)
    }

    /// Queues a record. Without a callback the caller joins the open commit group, returned.
    fn enqueue(
        &self,
        zxid: Option<u64>,
        payload: Bytes,
        callback: Option<AppendCallback>,
    ) -> Result<(u64, Option<Arc<CommitGroup>>), LogError> {
        let sh = &*self.shared;
        if payload.len() > sh.opts.record_bytes_max {
            return Err(LogError::RecordTooLarge {
                len: payload.len(),
                max: sh.opts.record_bytes_max,
            });
        }
        let mut q = sh.lock();
        loop {
            if let Some(e) = &q.failed {
                return Err(LogError::Failed(e.clone()));
            }
            if q.closed {
                return Err(LogError::Closed);
            }
            // Backpressure: wait while the queue is full (a lone oversized record still goes).
            if q.bytes == 0 || q.bytes + payload.len() <= sh.opts.queue_bytes_max {
                break;
            }
            q.space_waiters += 1;
            q = sh.space.wait(q).unwrap_or_else(|p| p.into_inner());
            q.space_waiters -= 1;
        }
        let zxid = zxid.unwrap_or(q.last_zxid + 1);
        if zxid <= q.last_zxid {
            return Err(LogError::ZxidNotIncreasing { zxid, last: q.last_zxid });
        }
        q.last_zxid = zxid;
        q.bytes += payload.len();
        let mut group = None;
        let done = match callback {
            Some(cb) => Done::Callback(cb),
            None => {
                // A group never outgrows one batch; per-record flushing has groups of one.
                let members = q.open_group.members.load(Ordering::Relaxed);
                if members > 0
                    && (sh.opts.strategy == super::FlushStrategy::PerRecord
                        || members >= sh.opts.batch_records_max
                        || q.open_bytes + payload.len() > sh.opts.batch_bytes_max)
                {
                    q.open_group = CommitGroup::new();
                    q.open_bytes = 0;
                }
                q.open_group.members.fetch_add(1, Ordering::Relaxed);
                q.open_bytes += payload.len();
                group = Some(q.open_group.clone());
                Done::Group(q.open_group.clone())
            }
        };
        q.items.push_back(Item::Append(Pending { zxid, payload, queued_at: Instant::now(), done }));
        sh.enqueued.fetch_add(1, Ordering::Release);
        if q.writer_sleeping {
            sh.work.notify_one();
        }
        let in_ring = std::mem::take(&mut q.writer_in_ring);
        drop(q);
        if in_ring {
            crate::io::wake_word(&sh.wake);
        }
        Ok((zxid, group))
    }

    fn control(&self, c: Control) -> Result<Vec<PathBuf>, LogError> {
        let sh = &*self.shared;
        let slot = Arc::new(Slot::new());
        {
            let mut q = sh.lock();
            if let Some(e) = &q.failed {
                return Err(LogError::Failed(e.clone()));
            }
            if q.closed {
                return Err(LogError::Closed);
            }
            if let Control::TruncateAfter(z) = c {
                q.last_zxid = q.last_zxid.min(z);
            }
            q.items.push_back(Item::Control(c, slot.clone()));
            sh.enqueued.fetch_add(1, Ordering::Release);
            if q.writer_sleeping {
                sh.work.notify_one();
            }
            if std::mem::take(&mut q.writer_in_ring) {
                crate::io::wake_word(&sh.wake);
            }
        }
        slot.take()
    }

    /// Starts a new segment at the next append (called when a snapshot is taken).
    pub fn roll(&self) -> Result<(), LogError> {
        self.control(Control::Roll).map(|_| ())
    }

    /// Durably removes every record with a zxid above `zxid` (ZAB's TRUNC). Appends queued
    /// before this call are written first; later appends may reuse zxids above `zxid`.
    pub fn truncate_after(&self, zxid: u64) -> Result<(), LogError> {
        self.control(Control::TruncateAfter(zxid)).map(|_| ())
    }

    /// Deletes segments all of whose records are below `zxid`; returns the files removed.
    pub fn purge_before(&self, zxid: u64) -> Result<Vec<PathBuf>, LogError> {
        self.control(Control::PurgeBefore(zxid))
    }

    /// [`LogCore::detach_before`](super::core::LogCore::detach_before) on the writer thread:
    /// the segments leave the log, the caller removes their files.
    pub fn detach_before(&self, zxid: u64) -> Result<Vec<PathBuf>, LogError> {
        self.control(Control::DetachBefore(zxid))
    }

    /// Waits until everything queued is written and synced (matters for `FlushStrategy::None`).
    pub fn sync(&self) -> Result<(), LogError> {
        self.control(Control::Sync).map(|_| ())
    }

    /// Records with zxid ≥ `from`, up to what is durable now.
    pub fn iter_from(&self, from: u64) -> LogIter {
        LogIter::new(self.shared.vfs.clone(), &self.shared.view, from, self.shared.opts.dbid)
    }

    /// A copy of the writer's measurements.
    pub fn metrics(&self) -> LogMetrics {
        self.shared.metrics.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A handle that reads (and clears) the writer's measurements from anywhere, for as long
    /// as it is kept (a monitoring endpoint's), without holding the log itself.
    pub fn metrics_handle(&self) -> MetricsHandle {
        MetricsHandle(self.shared.clone())
    }

    /// Clears the measurements.
    pub fn reset_metrics(&self) {
        self.shared.metrics.lock().unwrap_or_else(|p| p.into_inner()).reset();
    }

    /// The error that stopped the log, if any.
    pub fn failure(&self) -> Option<Arc<LogError>> {
        self.shared.lock().failed.clone()
    }

    /// Writes what is queued, stops the writer thread and reports a failure that stopped it.
    pub fn close(mut self) -> Result<(), LogError> {
        self.shutdown();
        match self.failure() {
            Some(e) => Err(LogError::Failed(e)),
            None => Ok(()),
        }
    }

    fn shutdown(&mut self) {
        {
            let mut q = self.shared.lock();
            q.closed = true;
            self.shared.work.notify_one();
            self.shared.space.notify_all();
            if std::mem::take(&mut q.writer_in_ring) {
                crate::io::wake_word(&self.shared.wake);
            }
        }
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        // The writer dropped its sender: the completion thread drains and ends.
        if let Some(c) = self.completer.take() {
            let _ = c.join();
        }
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// What the writer took from the queue.
enum Work {
    Batch(Vec<Pending>),
    Control(Control, Arc<Slot<Result<Vec<PathBuf>, LogError>>>),
    Exit,
}

/// The next thing to do; `None` (only when not `block`) if nothing is queued.
fn next_work(sh: &Shared, block: bool) -> Option<Work> {
    let spin = Duration::from_micros(sh.opts.writer_spin_us);
    let mut q = sh.lock();
    // Back from the ring (if it was there): enqueuers need not wake it.
    q.writer_in_ring = false;
    loop {
        if !q.items.is_empty() {
            break;
        }
        if q.closed {
            return Some(Work::Exit);
        }
        if !block {
            return None;
        }
        if !spin.is_zero() {
            // Poll briefly without the lock: back-to-back appends then skip a sleep/wake-up.
            let seen = sh.enqueued.load(Ordering::Acquire);
            drop(q);
            let start = Instant::now();
            let mut n = 0u32;
            while sh.enqueued.load(Ordering::Acquire) == seen {
                std::hint::spin_loop();
                n = n.wrapping_add(1);
                if n.is_multiple_of(64) && start.elapsed() >= spin {
                    break;
                }
            }
            q = sh.lock();
            if !q.items.is_empty() || q.closed {
                continue;
            }
        }
        q.writer_sleeping = true;
        q = sh.work.wait(q).unwrap_or_else(|p| p.into_inner());
        q.writer_sleeping = false;
    }
    let work = match q.items.pop_front() {
        Some(Item::Control(c, slot)) => Work::Control(c, slot),
        Some(Item::Append(first)) => {
            let mut bytes = first.payload.len();
            // One commit group per batch: a group is taken whole (enqueue keeps it within the
            // batch limits) and never merged with the next one, so that its members can be
            // told at once.
            let mut group = first.done.group().cloned();
            let mut batch = vec![first];
            while batch.len() < sh.opts.batch_records_max {
                let fits = match q.items.front() {
                    Some(Item::Append(p)) => {
                        bytes + p.payload.len() <= sh.opts.batch_bytes_max
                            && match (p.done.group(), &group) {
                                (Some(g), Some(bg)) => Arc::ptr_eq(g, bg),
                                _ => true,
                            }
                    }
                    _ => false,
                };
                if !fits {
                    break;
                }
                let Some(Item::Append(p)) = q.items.pop_front() else { unreachable!() };
                bytes += p.payload.len();
                if group.is_none() {
                    group = p.done.group().cloned();
                }
                batch.push(p);
            }
            if let Some(g) = &group {
                if Arc::ptr_eq(g, &q.open_group) {
                    // The writer has taken it: later appenders form the next group.
                    q.open_group = CommitGroup::new();
                    q.open_bytes = 0;
                }
            }
            q.bytes -= bytes;
            Work::Batch(batch)
        }
        None => unreachable!("checked non-empty"),
    };
    if q.space_waiters > 0 {
        sh.space.notify_all();
    }
    Some(work)
}

/// Runs a control operation on the writer thread.
fn run_control(core: &mut LogCore, c: &Control) -> Result<Vec<PathBuf>, LogError> {
    match *c {
        Control::Roll => core.roll().map(|_| Vec::new()),
        Control::TruncateAfter(z) => core.truncate_after(z).map(|_| Vec::new()),
        Control::PurgeBefore(z) => core.purge_before(z),
        Control::DetachBefore(z) => core.detach_before(z),
        Control::Sync => core.sync().map(|_| Vec::new()),
    }
}

fn writer_loop(core: LogCore, sh: &Shared, dispatch: &Dispatch<'_>) {
    if core.options().strategy.is_pipelined() {
        return pipelined_loop(core, sh, dispatch);
    }
    let mut core = core;
    loop {
        match next_work(sh, true).expect("a blocking wait returns work") {
            Work::Exit => {
                if !core.options().strategy.is_durable() && core.failure().is_none() {
                    if let Err(e) = core.sync() {
                        fail_all(sh, dispatch, &e);
                    }
                }
                return;
            }
            Work::Control(c, slot) => {
                let r = run_control(&mut core, &c);
                if let Err(e) = &r {
                    if core.failure().is_some() {
                        slot.put(r.clone());
                        fail_all(sh, dispatch, e);
                        return;
                    }
                }
                if let Control::TruncateAfter(_) = c {
                    sh.durable_zxid.store(core.last_zxid(), Ordering::Release);
                }
                slot.put(r);
            }
            Work::Batch(batch) => {
                if let Err(e) = write_batch(&mut core, sh, dispatch, batch) {
                    fail_all(sh, dispatch, &e);
                    return;
                }
            }
        }
    }
}

type Completions = Vec<(Done, Result<u64, LogError>)>;

/// Appends written and waiting to become durable, in zxid order.
struct Waiting<'a> {
    sh: &'a Shared,
    items: VecDeque<(u64, Instant, Done)>,
    ready: Completions,
    latencies: Vec<u64>,
}

impl Waiting<'_> {
    /// Everything up to `zxid` is durable.
    fn durable(&mut self, zxid: u64) {
        self.sh.durable_zxid.store(zxid, Ordering::Release);
        let now = Instant::now();
        while self.items.front().is_some_and(|(z, ..)| *z <= zxid) {
            let (z, queued_at, done) = self.items.pop_front().expect("front");
            self.latencies.push(now.duration_since(queued_at).as_micros() as u64);
            self.ready.push((done, Ok(z)));
        }
    }

    fn deliver(&mut self, dispatch: &Dispatch<'_>) {
        if !self.latencies.is_empty() {
            let mut m = self.sh.metrics.lock().unwrap_or_else(|p| p.into_inner());
            for l in self.latencies.drain(..) {
                m.append_latency_us.saturating_record(l.max(1));
            }
        }
        dispatch.deliver(std::mem::take(&mut self.ready));
    }

    fn fail(&mut self, dispatch: &Dispatch<'_>, e: &LogError) {
        for (_, _, done) in self.items.drain(..) {
            self.ready.push((done, Err(e.clone())));
        }
        self.deliver(dispatch);
    }
}

/// The writer of a pipelined strategy: submits each batch as soon as there is room in flight
/// (a lone append goes out at once), reaps completions as they come, and tells appenders in
/// zxid order once their records and everything before are durable. Controls wait until
/// nothing is in flight.
fn pipelined_loop(mut core: LogCore, sh: &Shared, dispatch: &Dispatch<'_>) {
    let mut w = Waiting { sh, items: VecDeque::new(), ready: Vec::new(), latencies: Vec::new() };
    loop {
        let work = next_work(sh, core.in_flight() == 0);
        let r = match work {
            // Writes in flight and nothing queued: wait in the ring for a write to finish or
            // for an enqueuer's wake, so that appends arriving meanwhile go out at once in a
            // write of their own.
            None => {
                let seen = {
                    let mut q = sh.lock();
                    if !q.items.is_empty() || q.closed {
                        continue;
                    }
                    q.writer_in_ring = true;
                    sh.wake.load(Ordering::Acquire)
                };
                core.reap_or_wake(&sh.wake, seen, &mut |z| w.durable(z))
            }
            Some(Work::Batch(batch)) => {
                let mut payloads = Vec::with_capacity(batch.len());
                for p in batch {
                    w.items.push_back((p.zxid, p.queued_at, p.done));
                    payloads.push((p.zxid, p.payload));
                }
                let recs: Vec<(u64, &[u8])> = payloads.iter().map(|(z, p)| (*z, &p[..])).collect();
                core.submit_batch(&recs, &mut |z| w.durable(z)).map(|stats| {
                    sh.metrics.lock().unwrap_or_else(|p| p.into_inner()).record_stats(&stats)
                })
            }
            Some(Work::Control(c, slot)) => match core.drain(&mut |z| w.durable(z)) {
                Err(e) => {
                    slot.put(Err(e.clone()));
                    Err(e)
                }
                Ok(()) => {
                    w.deliver(dispatch);
                    let r = run_control(&mut core, &c);
                    let failed = r.is_err() && core.failure().is_some();
                    if let Control::TruncateAfter(_) = c {
                        sh.durable_zxid.store(core.last_zxid(), Ordering::Release);
                    }
                    slot.put(r.clone());
                    match r {
                        Err(e) if failed => Err(e),
                        _ => Ok(()),
                    }
                }
            },
            Some(Work::Exit) => {
                let r = core.drain(&mut |z| w.durable(z));
                w.deliver(dispatch);
                if let Err(e) = r {
                    w.fail(dispatch, &e);
                    fail_all(sh, dispatch, &e);
                }
                return;
            }
        };
        w.deliver(dispatch);
        if let Err(e) = r {
            w.fail(dispatch, &e);
            fail_all(sh, dispatch, &e);
            return;
        }
    }
}

/// Batches of at most this many completions run on the writer thread itself (a lone appender
/// is not made to wait for a second thread); larger ones go to the completion thread, so that
/// waking many appenders overlaps the next batch's flush.
const INLINE_COMPLETIONS_MAX: usize = 4;

/// Delivers completions in zxid order: inline, or through the completion thread.
struct Dispatch<'a> {
    tx: mpsc::Sender<Completions>,
    sh: &'a Shared,
}

impl Dispatch<'_> {
    fn deliver(&self, items: Completions) {
        if items.is_empty() {
            return;
        }
        // Inline only when nothing is queued on the completion thread, to keep zxid order.
        if items.len() <= INLINE_COMPLETIONS_MAX && self.sh.handoffs.load(Ordering::Acquire) == 0 {
            for (done, r) in items {
                done.complete(r);
            }
            return;
        }
        self.sh.handoffs.fetch_add(1, Ordering::AcqRel);
        if let Err(mpsc::SendError(items)) = self.tx.send(items) {
            // The completion thread is gone (only at teardown): complete here.
            self.sh.handoffs.fetch_sub(1, Ordering::AcqRel);
            for (done, r) in items {
                done.complete(r);
            }
        }
    }
}

fn write_batch(
    core: &mut LogCore,
    sh: &Shared,
    dispatch: &Dispatch<'_>,
    batch: Vec<Pending>,
) -> Result<(), LogError> {
    let per_record = core.options().strategy == super::FlushStrategy::PerRecord;
    let mut payloads = Vec::with_capacity(batch.len());
    let mut dones = Vec::with_capacity(batch.len());
    for p in batch {
        payloads.push((p.zxid, p.payload));
        dones.push(Some((p.zxid, p.queued_at, p.done)));
    }
    let recs: Vec<(u64, &[u8])> = payloads.iter().map(|(z, p)| (*z, &p[..])).collect();
    let mut latencies = Vec::with_capacity(recs.len());
    let mut ready: Completions = Vec::with_capacity(recs.len());
    let mut completed = 0;
    let result = core.write_batch(&recs, |n| {
        let now = Instant::now();
        if let Some(Some((zxid, _, _))) = dones.get(n.wrapping_sub(1)) {
            sh.durable_zxid.store(*zxid, Ordering::Release);
        }
        for d in &mut dones[completed..n] {
            if let Some((zxid, queued_at, done)) = d.take() {
                latencies.push(now.duration_since(queued_at).as_micros() as u64);
                ready.push((done, Ok(zxid)));
            }
        }
        completed = n;
        if per_record {
            // The naive baseline: each record's appender hears of it right after its own flush.
            dispatch.deliver(std::mem::take(&mut ready));
        }
    });
    let stats = match result {
        Ok(s) => s,
        Err(e) => {
            for (_, _, done) in dones.into_iter().skip(completed).flatten() {
                ready.push((done, Err(e.clone())));
            }
            dispatch.deliver(ready);
            return Err(e);
        }
    };
    {
        let mut m = sh.metrics.lock().unwrap_or_else(|p| p.into_inner());
        m.record_stats(&stats);
        for l in latencies {
            m.append_latency_us.saturating_record(l.max(1));
        }
    }
    dispatch.deliver(ready);
    Ok(())
}

/// Latches the failure and fails everything queued.
fn fail_all(sh: &Shared, dispatch: &Dispatch<'_>, e: &LogError) {
    let cause = match e {
        LogError::Failed(inner) => inner.clone(),
        other => Arc::new(other.clone()),
    };
    let items: Vec<Item> = {
        let mut q = sh.lock();
        q.failed = Some(cause.clone());
        q.bytes = 0;
        sh.space.notify_all();
        q.items.drain(..).collect()
    };
    let mut appends: Completions = Vec::new();
    for it in items {
        match it {
            Item::Append(p) => appends.push((p.done, Err(LogError::Failed(cause.clone())))),
            Item::Control(_, slot) => slot.put(Err(LogError::Failed(cause.clone()))),
        }
    }
    dispatch.deliver(appends);
}
