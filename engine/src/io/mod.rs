//! The I/O boundary: one small pair of traits, [`Vfs`] (a directory of files) and [`VFile`]
//! (one open file), and three implementations of them.
//!
//! * [`SyncVfs`]: plain `pwrite` / `pwritev2(RWF_DSYNC)` / `fdatasync` / `fallocate` syscalls.
//! * [`UringVfs`]: the same operations submitted through an io_uring (write and fsync linked in
//!   one submission, or a write carrying `RWF_DSYNC`). Built with the `io-uring` crate; used only
//!   from the engine's own writer thread.
//! * [`SimVfs`]: an in-memory, fault-injecting disk for tests. It keeps a *live* image and a
//!   *durable* image of every file, can crash at any operation (keeping only synced bytes and
//!   possibly a torn prefix of the unsynced writes), fail the Nth write or sync with EIO or
//!   ENOSPC, and flip bits.
//!
//! Everything above this module (log, snapshot, recovery) talks to storage only through these
//! traits, so all of it runs unchanged on the simulated disk. This module knows nothing of
//! records, zxids or segments.

mod aligned;
pub mod queue;
pub mod sim;
mod sync;
mod uring;

use std::fmt::Debug;
use std::io;
use std::path::Path;

pub use aligned::AlignedBuf;
pub use queue::{wake_word, Completion, InlineQueue, WriteQueue};
pub use sim::SimVfs;
pub use sync::SyncVfs;
pub use uring::UringVfs;

/// Alignment (bytes) of buffers, offsets and lengths for `O_DIRECT` files.
pub const DIRECT_ALIGN: usize = 4096;

/// How a file is opened. Files are always opened for reading; `write` adds writing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// Open for writing as well as reading.
    pub write: bool,
    /// Create the file; fail if it already exists.
    pub create_new: bool,
    /// `O_DIRECT`: bypass the page cache. Buffers, offsets and lengths of writes must be
    /// multiples of [`DIRECT_ALIGN`].
    pub direct: bool,
    /// `O_DSYNC`: every write is durable (data and the metadata needed to read it) when it
    /// returns.
    pub dsync: bool,
}

impl OpenOptions {
    /// Read-only access to an existing file.
    pub fn read() -> Self {
        Self::default()
    }

    /// Read-write access to an existing file.
    pub fn read_write() -> Self {
        Self { write: true, ..Self::default() }
    }

    /// Create a new file for reading and writing; fails if it exists.
    pub fn create_new() -> Self {
        Self { write: true, create_new: true, ..Self::default() }
    }
}

/// A directory tree of files: the operations the engine needs from a file system.
///
/// Implementations must be usable from several threads at once; a [`VFile`] is used by one
/// thread at a time.
pub trait Vfs: Send + Sync + Debug {
    /// A short name for logs and benchmark tables: `sync`, `uring`, `sim`.
    fn name(&self) -> &'static str;
    /// `mkdir -p`.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Names (not paths) of the regular files in `dir`, in no particular order.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Opens (or creates) a file.
    fn open(&self, path: &Path, opts: OpenOptions) -> io::Result<Box<dyn VFile>>;
    /// Removes a file. Durable only after [`Vfs::sync_dir`] of its directory.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Atomically renames a file. Durable only after [`Vfs::sync_dir`].
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creations, removals, renames) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// True if the path exists.
    fn exists(&self, path: &Path) -> bool;
    /// A queue keeping up to `depth` writes in flight, where the backend has one (`None`:
    /// the caller falls back to an [`InlineQueue`], one write at a time). `register`: an
    /// io_uring queue registers its file and buffers with the ring (others ignore it).
    fn write_queue(&self, depth: usize, _register: bool) -> Option<Box<dyn WriteQueue>> {
        let _ = depth;
        None
    }
}

/// One open file. Positional I/O only: there is no file cursor.
pub trait VFile: Send + Debug {
    /// Reads up to `buf.len()` bytes at `offset`; returns the count (0 at end of file).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;

    /// Writes all of `buf` at `offset`. Not durable until a sync (unless opened with `dsync`).
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;

    /// Writes all of `buf` at `offset` so that it is durable when this returns, as one
    /// operation that carries its own sync (`RWF_DSYNC`).
    fn write_all_at_dsync(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;

    /// Writes all of `buf` at `offset` and then makes the file's data durable, as one
    /// submission where the backend can (io_uring: write linked to fsync).
    fn write_all_at_then_sync(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.write_all_at(buf, offset)?;
        self.sync_data()
    }

    /// `fdatasync`: file data and the metadata needed to read it back (its size) are durable.
    fn sync_data(&mut self) -> io::Result<()>;

    /// `fsync`: all of the file's data and metadata are durable.
    fn sync_all(&mut self) -> io::Result<()>;

    /// Reserves `[offset, offset + len)` with `fallocate(2)` (mode 0): the file grows, the new
    /// range reads as zeros, but its blocks are still "unwritten" to the file system.
    fn allocate(&mut self, offset: u64, len: u64) -> io::Result<()>;

    /// Sets the file's length, cutting or extending with zeros.
    fn set_len(&mut self, len: u64) -> io::Result<()>;

    /// The file's current length.
    fn len(&self) -> io::Result<u64>;

    /// True if the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The operating system's file descriptor, where there is one (real files; not the
    /// simulated disk). Lets a reader map a file instead of copying it.
    fn as_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        None
    }
}

/// Reads exactly `buf.len()` bytes at `offset`, or fails with `UnexpectedEof`.
pub fn read_exact_at(file: &dyn VFile, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match file.read_at(buf, offset) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads as many bytes as are available at `offset` into `buf` (short only at end of file).
pub fn read_up_to(file: &dyn VFile, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Creates `dir` and any missing ancestors so that they survive a crash: each directory created
/// is made durable by an fsync of its parent (a new directory entry, like a new file's, is only
/// durable once its parent directory is synced).
pub fn create_dir_durable(vfs: &dyn Vfs, dir: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(d) = at {
        if d.as_os_str().is_empty() || vfs.exists(d) {
            break;
        }
        missing.push(d);
        at = d.parent();
    }
    if missing.is_empty() {
        return Ok(());
    }
    vfs.create_dir_all(dir)?;
    for d in missing.into_iter().rev() {
        if let Some(parent) = d.parent().filter(|p| !p.as_os_str().is_empty()) {
            vfs.sync_dir(parent)?;
        }
    }
    Ok(())
}

/// Writes a small file so that a crash leaves either its old content or the new one, and the
/// new one is durable on return: a temporary name, fsync, rename over `dir/name`, fsync of
/// `dir` (which is created if missing, its parent fsynced so the new entry is durable too).
pub fn write_file_atomic(vfs: &dyn Vfs, dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    create_dir_durable(vfs, dir)?;
    let tmp = dir.join(format!("{name}.tmp"));
    if vfs.exists(&tmp) {
        vfs.remove_file(&tmp)?;
    }
    let mut f = vfs.open(&tmp, OpenOptions::create_new())?;
    f.write_all_at(bytes, 0)?;
    f.sync_all()?;
    drop(f);
    vfs.rename(&tmp, &dir.join(name))?;
    vfs.sync_dir(dir)
}

/// Reads a whole small file; one longer than `max_bytes` is an `InvalidData` error.
pub fn read_small_file(vfs: &dyn Vfs, path: &Path, max_bytes: u64) -> io::Result<Vec<u8>> {
    let f = vfs.open(path, OpenOptions::read())?;
    let len = f.len()?;
    if len > max_bytes {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is {len} bytes, more than the {max_bytes} expected", path.display()),
        ));
    }
    let mut buf = vec![0u8; len as usize];
    read_exact_at(&*f, &mut buf, 0)?;
    Ok(buf)
}

/// Lowers the calling thread's scheduling priority (nice 10) for background work — snapshot
/// writing, preallocation — so that on a busy core the threads answering clients run first.
/// Best effort: failure (e.g. a seccomp filter) changes nothing else.
pub fn lower_thread_priority() {
    // SAFETY: plain syscall; on Linux PRIO_PROCESS with who = 0 applies to the calling thread.
    let _ = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) };
}

/// Bytes a writer of buffered files (a `forceSync=no` log, a snapshot) leaves dirty before it
/// asks the kernel to start writing them back: without this the page cache gathers gigabytes
/// and the kernel later throttles the writer for a long time in one go (or a final fsync
/// writes them all at once, competing with the log's flushes).
pub const WRITEBACK_STEP: u64 = 8 << 20;

/// `sync_file_range` on `[offset, offset + len)` of a buffered file: it only moves write-back
/// along, it makes nothing durable (no metadata, no cache flush). A no-op for files without a
/// descriptor (the simulated disk) and where the call is refused.
fn sync_range(file: &dyn VFile, offset: u64, len: u64, flags: libc::c_uint) {
    use std::os::fd::AsRawFd;
    let Some(fd) = file.as_fd() else { return };
    let (Ok(off), Ok(n)) = (i64::try_from(offset), i64::try_from(len)) else { return };
    // SAFETY: plain syscall on a descriptor borrowed for the duration of the call.
    let _ = unsafe { libc::sync_file_range(fd.as_raw_fd(), off, n, flags) };
}

/// Starts write-back of a range and returns without waiting for it.
pub fn start_writeback(file: &dyn VFile, offset: u64, len: u64) {
    sync_range(file, offset, len, libc::SYNC_FILE_RANGE_WRITE);
}

/// Waits for write-back of a range already under way, then starts and waits for whatever of
/// it is still dirty: bounds how much of a buffered file is dirty at once.
pub fn finish_writeback(file: &dyn VFile, offset: u64, len: u64) {
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
        | libc::SYNC_FILE_RANGE_WRITE
        | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    sync_range(file, offset, len, flags);
}

/// Write-behind for a buffered file written front to back: once a [`WRITEBACK_STEP`] of new
/// bytes is dirty, starts their write-back and waits for the step started before it (long
/// done, as a rule). The file's dirty pages stay under about two steps, instead of growing
/// until the kernel throttles the writer for as long as gigabytes take to write, or a final
/// fsync writes them all in one go.
#[derive(Debug, Clone, Copy)]
pub struct WriteBehind {
    /// Write-back has been started below this offset...
    started: u64,
    /// ...and waited for below this one.
    waited: u64,
    step: u64,
}

impl Default for WriteBehind {
    fn default() -> Self {
        Self::new(0, WRITEBACK_STEP)
    }
}

impl WriteBehind {
    /// Tracking a file whose bytes below `from` are not this writer's concern, in steps of
    /// `step` bytes: a smaller step keeps less of the disk's queue busy at a time (a snapshot
    /// writer's, so that the log's flushes never wait long behind it).
    pub fn new(from: u64, step: u64) -> Self {
        Self { started: from, waited: from, step: step.max(4096) }
    }

    /// The file has been written up to `end`.
    pub fn advance(&mut self, file: &dyn VFile, end: u64) {
        if end.saturating_sub(self.started) < self.step {
            return;
        }
        if self.started > self.waited {
            finish_writeback(file, self.waited, self.started - self.waited);
            self.waited = self.started;
        }
        start_writeback(file, self.started, end - self.started);
        self.started = end;
    }
}

/// Which backend to use for real files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum BackendKind {
    /// io_uring where it can be set up, else plain syscalls (and a warning says so).
    #[default]
    Auto,
    /// Plain syscalls.
    Sync,
    /// io_uring; falls back to plain syscalls (with a warning) where it cannot be set up.
    Uring,
}

/// Opens the backend for real files: `kind`, with the automatic fallback from io_uring to plain
/// syscalls. The fallback is logged as a warning naming the reason.
pub fn open_backend(kind: BackendKind) -> std::sync::Arc<dyn Vfs> {
    match kind {
        BackendKind::Sync => std::sync::Arc::new(SyncVfs::new()),
        BackendKind::Auto | BackendKind::Uring => match UringVfs::new() {
            Ok(v) => std::sync::Arc::new(v),
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "io_uring cannot be set up here; using the plain pwrite/fdatasync backend"
                );
                std::sync::Arc::new(SyncVfs::new())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_behind_starts_each_step_and_waits_for_the_one_before() {
        let dir = tempfile::tempdir().unwrap();
        let vfs = SyncVfs::new();
        let path = dir.path().join("f");
        let mut f = vfs.open(&path, OpenOptions::create_new()).unwrap();
        let chunk = vec![7u8; 1 << 20];
        let mut wb = WriteBehind::default();
        let mut pos = 0u64;
        let mut seen = Vec::new();
        while pos < 3 * WRITEBACK_STEP + (1 << 20) {
            f.write_all_at(&chunk, pos).unwrap();
            pos += chunk.len() as u64;
            wb.advance(f.as_ref(), pos);
            seen.push((pos, wb.started, wb.waited));
        }
        let step = WRITEBACK_STEP;
        // Nothing is started before a whole step is dirty...
        assert!(seen.iter().all(|&(p, s, _)| p - s < step));
        assert_eq!(seen.iter().find(|&&(p, ..)| p == step - (1 << 20)).unwrap().1, 0);
        // ...then each step is started as it fills, and the step before it waited for.
        assert_eq!(seen.iter().find(|&&(p, ..)| p == step).unwrap(), &(step, step, 0));
        assert_eq!(
            seen.iter().find(|&&(p, ..)| p == 2 * step).unwrap(),
            &(2 * step, 2 * step, step)
        );
        let last = *seen.last().unwrap();
        assert_eq!((last.1, last.2), (3 * step, 2 * step));
        // It only schedules write-back: the bytes read back unchanged.
        let mut back = vec![0u8; 1 << 20];
        read_exact_at(f.as_ref(), &mut back, 2 * step).unwrap();
        assert_eq!(back, chunk);
        // A simulated file has no descriptor: nothing to do, nothing fails.
        let sim = crate::io::SimVfs::new();
        let mut g = sim.open(&dir.path().join("g"), OpenOptions::create_new()).unwrap();
        g.write_all_at(&chunk, 0).unwrap();
        WriteBehind::new(0, 1 << 20).advance(g.as_ref(), WRITEBACK_STEP * 4);
    }
}
