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
pub mod sim;
mod sync;
mod uring;

use std::fmt::Debug;
use std::io;
use std::path::Path;

pub use aligned::AlignedBuf;
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
