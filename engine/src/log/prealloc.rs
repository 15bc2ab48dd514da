//! Segment space reservation, inline or on a background thread that keeps one step ahead of the
//! writer (so that zero-filling 64 MiB never stalls an append).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use super::{LogError, Prealloc};
use crate::io::{AlignedBuf, OpenOptions, VFile, Vfs, DIRECT_ALIGN};

const BLOCK: u64 = DIRECT_ALIGN as u64;
const ZERO_CHUNK: usize = 1 << 20;

/// Reserves `[from, to)` of a file: `fallocate`, or zeros written over it; then, if `sync`, makes
/// the new size durable. With `direct` the file takes only aligned writes, so zero-filling
/// starts at the next block boundary (the file is first extended to it).
pub(crate) fn grow_file(
    file: &mut dyn VFile,
    path: &Path,
    from: u64,
    to: u64,
    mode: Prealloc,
    direct: bool,
    sync: bool,
) -> Result<(), LogError> {
    if to <= from {
        return Ok(());
    }
    let err = |op: &'static str, e| LogError::io(op, path, e);
    match mode {
        Prealloc::Fallocate => file.allocate(from, to - from).map_err(|e| err("fallocate", e))?,
        Prealloc::ZeroFill => {
            let mut at = from;
            if direct && !at.is_multiple_of(BLOCK) {
                at = at.next_multiple_of(BLOCK);
                file.set_len(at).map_err(|e| err("extend", e))?;
            }
            let mut zeros = AlignedBuf::with_capacity(ZERO_CHUNK);
            zeros.extend_zeros(ZERO_CHUNK);
            while at < to {
                let n = ((to - at) as usize).min(ZERO_CHUNK);
                file.write_all_at(&zeros.as_slice()[..n], at).map_err(|e| err("zero-fill", e))?;
                at += n as u64;
            }
        }
    }
    if sync {
        file.sync_data().map_err(|e| err("fdatasync", e))?;
    }
    Ok(())
}

struct Request {
    path: PathBuf,
    from: u64,
    to: u64,
    mode: Prealloc,
    sync: bool,
    /// Create the file first (replacing any), and make it and its directory entry durable
    /// at the end: a spare segment.
    create: bool,
}

#[derive(Default)]
struct State {
    request: Option<Request>,
    /// The request being worked on: (path, target).
    busy: Option<(PathBuf, u64)>,
    /// The last finished request: (path, target, outcome, created).
    done: Option<(PathBuf, u64, Result<(), LogError>, bool)>,
    shutdown: bool,
}

/// A thread that reserves segment space ahead of the writer, one request at a time. It writes
/// only beyond what the writer may touch: the writer waits for (or collects) a request before
/// writing past the space it had before asking.
pub(crate) struct Preallocator {
    shared: Arc<(Mutex<State>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Preallocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Preallocator")
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Preallocator {
    pub(crate) fn spawn(vfs: Arc<dyn Vfs>) -> std::io::Result<Self> {
        let shared = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("corral-log-prealloc".into())
            .spawn(move || run(&*vfs, &s))?;
        Ok(Self { shared, thread: Some(thread) })
    }

    /// True if a request is queued, running, or finished but not yet collected: the writer's
    /// idea of its reserved space may be stale until it collects.
    pub(crate) fn pending(&self) -> bool {
        let s = lock(&self.shared.0);
        s.request.is_some() || s.busy.is_some() || s.done.is_some()
    }

    /// Waits until no request is queued or running (what finished stays to be collected).
    pub(crate) fn wait_idle(&self) {
        let mut s = lock(&self.shared.0);
        while s.request.is_some() || s.busy.is_some() {
            s = self.shared.1.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// True if a request for `path` is queued or running: space for `path` is on its way.
    pub(crate) fn busy_with(&self, path: &Path) -> bool {
        let s = lock(&self.shared.0);
        s.request.as_ref().is_some_and(|r| r.path == path)
            || s.busy.as_ref().is_some_and(|(p, _)| p == path)
    }

    /// Asks for `[from, to)` of `path` to be reserved. At most one request is outstanding.
    pub(crate) fn request(&self, path: &Path, from: u64, to: u64, mode: Prealloc, sync: bool) {
        self.submit(Request { path: path.to_path_buf(), from, to, mode, sync, create: false });
    }

    /// Asks for a new file at `path` (replacing any) with `[0, to)` reserved, the file and
    /// its directory entry durable: a spare segment, taken with [`Preallocator::take_created`].
    pub(crate) fn request_create(&self, path: &Path, to: u64, mode: Prealloc) {
        self.submit(Request {
            path: path.to_path_buf(),
            from: 0,
            to,
            mode,
            sync: true,
            create: true,
        });
    }

    fn submit(&self, r: Request) {
        let mut s = lock(&self.shared.0);
        assert!(
            s.request.is_none() && s.busy.is_none() && s.done.is_none(),
            "one background request at a time, collected before the next"
        );
        s.request = Some(r);
        self.shared.1.notify_all();
    }

    /// The outcome of a finished [`Preallocator::request_create`] for `path` (its reserved
    /// size), if there is one; `None` leaves whatever else finished alone.
    pub(crate) fn take_created(&self, path: &Path) -> Option<Result<u64, LogError>> {
        let mut s = lock(&self.shared.0);
        if !s.done.as_ref().is_some_and(|(p, _, _, created)| *created && p == path) {
            return None;
        }
        let (_, to, r, _) = s.done.take().expect("checked");
        Some(r.map(|()| to))
    }

    /// The new end of `path`'s reserved space if a request for it has finished; `wait` blocks
    /// until the outstanding request (if any) is done. A failure for `path` is returned once;
    /// a finished request for another file (a segment the writer has left) is only cleared:
    /// its space lies beyond that segment's last record, and the thread logged any failure. A
    /// finished creation (a spare) is left for [`Preallocator::take_created`].
    pub(crate) fn collect(&self, path: &Path, wait: bool) -> Result<Option<u64>, LogError> {
        let mut s = lock(&self.shared.0);
        if wait {
            while s.request.is_some() || s.busy.is_some() {
                s = self.shared.1.wait(s).unwrap_or_else(|p| p.into_inner());
            }
        }
        if s.done.as_ref().is_some_and(|(p, _, _, created)| *created && p != path) {
            return Ok(None);
        }
        match s.done.take() {
            Some((p, to, Ok(()), _)) if p == path => Ok(Some(to)),
            Some((p, _, Err(e), _)) if p == path => Err(e),
            _ => Ok(None),
        }
    }
}

impl Drop for Preallocator {
    fn drop(&mut self) {
        lock(&self.shared.0).shutdown = true;
        self.shared.1.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(vfs: &dyn Vfs, shared: &(Mutex<State>, Condvar)) {
    crate::io::lower_thread_priority();
    loop {
        let req = {
            let mut s = lock(&shared.0);
            loop {
                if let Some(r) = s.request.take() {
                    s.busy = Some((r.path.clone(), r.to));
                    break r;
                }
                if s.shutdown {
                    return;
                }
                s = shared.1.wait(s).unwrap_or_else(|p| p.into_inner());
            }
        };
        // Zeros go out with O_DIRECT on a handle of our own (no page-cache copy, no writeback
        // competing with the log's flushes), then one fdatasync makes the new size durable.
        // Where O_DIRECT is refused (tmpfs), buffered writes do the same job.
        let direct = OpenOptions { direct: true, ..OpenOptions::read_write() };
        let created = if req.create { create_file(vfs, &req.path) } else { Ok(()) };
        let outcome = created.and_then(|()| match vfs.open(&req.path, direct) {
            Ok(mut f) => {
                grow_file(f.as_mut(), &req.path, req.from, req.to, req.mode, true, req.sync)
            }
            Err(_) => vfs
                .open(&req.path, OpenOptions::read_write())
                .map_err(|e| LogError::io("open", &req.path, e))
                .and_then(|mut f| {
                    grow_file(f.as_mut(), &req.path, req.from, req.to, req.mode, false, req.sync)
                }),
        });
        let outcome = match outcome {
            Ok(()) if req.create => make_durable(vfs, &req.path),
            other => other,
        };
        if let Err(e) = &outcome {
            tracing::error!(error = %e, "background preallocation failed");
        }
        let mut s = lock(&shared.0);
        s.busy = None;
        s.done = Some((req.path, req.to, outcome, req.create));
        shared.1.notify_all();
    }
}

/// Creates an empty `path`, replacing any file there.
fn create_file(vfs: &dyn Vfs, path: &Path) -> Result<(), LogError> {
    if vfs.exists(path) {
        vfs.remove_file(path).map_err(|e| LogError::io("remove", path, e))?;
    }
    vfs.open(path, OpenOptions::create_new()).map_err(|e| LogError::io("create", path, e))?;
    Ok(())
}

/// fsyncs a new file, then its directory.
fn make_durable(vfs: &dyn Vfs, path: &Path) -> Result<(), LogError> {
    let mut f =
        vfs.open(path, OpenOptions::read_write()).map_err(|e| LogError::io("open", path, e))?;
    f.sync_all().map_err(|e| LogError::io("fsync", path, e))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    vfs.sync_dir(dir).map_err(|e| LogError::io("fsync directory", dir, e))
}
