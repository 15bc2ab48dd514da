//! The io_uring backend: writes and syncs are submitted through one ring.
//!
//! `write_all_at_then_sync` submits a write linked (`IOSQE_IO_LINK`) to an `fdatasync`, so the
//! pair costs one `io_uring_enter`; `write_all_at_dsync` submits a write carrying `RWF_DSYNC`.
//! Reads, `fallocate` and `ftruncate` are rare and stay plain syscalls.
//!
//! The ring is created when the backend is, and is meant to be driven by the engine's own writer
//! thread; the mutex around it is uncontended in that use and only keeps the type `Sync`.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use io_uring::{opcode, squeue, types, IoUring};

use super::queue::{wake_word, Completion, WriteQueue};
use super::sync::{fallocate_std, list_dir_std, open_std, sync_dir_std};
use super::{AlignedBuf, OpenOptions, VFile, Vfs};

/// Real files with writes and syncs submitted through io_uring.
#[derive(Clone)]
pub struct UringVfs {
    ring: Arc<Mutex<IoUring>>,
}

impl std::fmt::Debug for UringVfs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UringVfs")
    }
}

const RING_ENTRIES: u32 = 8;
const USER_WRITE: u64 = 1;
const USER_SYNC: u64 = 2;
/// The queue's futex wait (write tags count up from 1).
const WAKE_TAG: u64 = u64::MAX;

impl UringVfs {
    /// Sets up a ring and checks that it works by running a no-op through it. Fails where
    /// io_uring is unavailable (old kernel, `io_uring_disabled`, a seccomp filter).
    pub fn new() -> io::Result<Self> {
        let mut ring = IoUring::new(RING_ENTRIES)?;
        let nop = opcode::Nop::new().build().user_data(0);
        // SAFETY: the entry references no memory.
        unsafe { ring.submission().push(&nop) }.map_err(|_| io::Error::other("sq full"))?;
        ring.submit_and_wait(1)?;
        let cqe = ring.completion().next().ok_or_else(|| io::Error::other("no completion"))?;
        if cqe.result() < 0 {
            return Err(io::Error::from_raw_os_error(-cqe.result()));
        }
        Ok(Self { ring: Arc::new(Mutex::new(ring)) })
    }
}

impl Vfs for UringVfs {
    fn name(&self) -> &'static str {
        "uring"
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        list_dir_std(dir)
    }

    fn open(&self, path: &Path, opts: OpenOptions) -> io::Result<Box<dyn VFile>> {
        Ok(Box::new(UringFile { file: open_std(path, opts)?, ring: self.ring.clone() }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        sync_dir_std(dir)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn write_queue(&self, depth: usize) -> Option<Box<dyn WriteQueue>> {
        Some(Box::new(UringQueue::new(depth)))
    }
}

/// A real file whose writes and syncs go through the ring.
pub struct UringFile {
    file: File,
    ring: Arc<Mutex<IoUring>>,
}

impl std::fmt::Debug for UringFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringFile").field("fd", &self.file.as_raw_fd()).finish()
    }
}

/// What one submission asks for.
#[derive(Clone, Copy)]
enum Submit {
    Write { rw_flags: i32 },
    WriteThenSync,
    Sync { datasync: bool },
}

impl UringFile {
    /// Runs one submission; returns (bytes written by the write, or 0) after checking the sync.
    /// A short write returns its count; the caller continues from there.
    fn submit(&self, kind: Submit, buf: &[u8], offset: u64) -> io::Result<usize> {
        let fd = types::Fd(self.file.as_raw_fd());
        let len = u32::try_from(buf.len().min(1 << 30)).expect("bounded");
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let write = |flags: i32| {
            opcode::Write::new(fd, buf.as_ptr(), len)
                .offset(offset)
                .rw_flags(flags)
                .build()
                .user_data(USER_WRITE)
        };
        let fsync = |datasync: bool| {
            let f = if datasync { types::FsyncFlags::DATASYNC } else { types::FsyncFlags::empty() };
            opcode::Fsync::new(fd).flags(f).build().user_data(USER_SYNC)
        };
        let entries: Vec<squeue::Entry> = match kind {
            Submit::Write { rw_flags } => vec![write(rw_flags)],
            Submit::WriteThenSync => vec![write(0).flags(squeue::Flags::IO_LINK), fsync(true)],
            Submit::Sync { datasync } => vec![fsync(datasync)],
        };
        for e in &entries {
            // SAFETY: buf outlives the submission: we wait for every completion below before
            // returning, and the ring is locked for the whole exchange.
            unsafe { ring.submission().push(e) }.map_err(|_| io::Error::other("sq full"))?;
        }
        let want = entries.len();
        let mut got = 0;
        let mut written: Option<io::Result<usize>> = None;
        let mut synced: Option<io::Result<()>> = None;
        while got < want {
            match ring.submit_and_wait(want - got) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for cqe in ring.completion() {
                got += 1;
                let res = cqe.result();
                match cqe.user_data() {
                    USER_WRITE => {
                        written = Some(if res < 0 {
                            Err(io::Error::from_raw_os_error(-res))
                        } else {
                            Ok(res as usize)
                        })
                    }
                    _ => {
                        synced = Some(if res < 0 {
                            Err(io::Error::from_raw_os_error(-res))
                        } else {
                            Ok(())
                        })
                    }
                }
            }
        }
        drop(ring);
        let n = match written {
            Some(Err(e)) => return Err(e),
            Some(Ok(n)) => n,
            None => 0,
        };
        match synced {
            // A short write breaks the link and cancels the sync: the caller writes the rest
            // and syncs again, so a cancellation after a short write is not an error.
            Some(Err(e)) if e.raw_os_error() == Some(libc::ECANCELED) && n < buf.len() => {}
            Some(Err(e)) => return Err(e),
            _ => {}
        }
        Ok(n)
    }

    fn write_loop(&self, mut buf: &[u8], mut offset: u64, kind: Submit) -> io::Result<()> {
        loop {
            let n = self.submit(kind, buf, offset)?;
            if n == buf.len() {
                return Ok(());
            }
            if n == 0 {
                return Err(io::Error::from(io::ErrorKind::WriteZero));
            }
            buf = &buf[n..];
            offset += n as u64;
        }
    }
}

impl VFile for UringFile {
    fn as_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        Some(self.file.as_fd())
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }

    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.write_loop(buf, offset, Submit::Write { rw_flags: 0 })
    }

    fn write_all_at_dsync(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.write_loop(buf, offset, Submit::Write { rw_flags: libc::RWF_DSYNC })
    }

    fn write_all_at_then_sync(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.write_loop(buf, offset, Submit::WriteThenSync)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.submit(Submit::Sync { datasync: true }, &[], 0).map(|_| ())
    }

    fn sync_all(&mut self) -> io::Result<()> {
        self.submit(Submit::Sync { datasync: false }, &[], 0).map(|_| ())
    }

    fn allocate(&mut self, offset: u64, len: u64) -> io::Result<()> {
        fallocate_std(&self.file, offset, len)
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
}

/// Writes submitted to a ring of their own and reaped as they complete: the log's pipelined
/// strategy keeps several batches in flight through it. The ring is set up at the first
/// [`WriteQueue::set_file`] (on the thread that will use it).
pub(crate) struct UringQueue {
    depth: usize,
    ring: Option<IoUring>,
    file: Option<File>,
    /// In flight: tag → buffer (kept alive until its completion is reaped; `None`: a sync).
    bufs: HashMap<u64, Option<AlignedBuf>>,
    /// The word a futex wait in the ring watches, while one is armed (kept alive by this).
    armed: Option<Arc<AtomicU32>>,
    /// The kernel refused the futex wait (before 6.7, or restricted): wait for writes only.
    no_futex: bool,
}

impl std::fmt::Debug for UringQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringQueue")
            .field("depth", &self.depth)
            .field("in_flight", &self.bufs.len())
            .finish()
    }
}

impl UringQueue {
    pub(crate) fn new(depth: usize) -> Self {
        Self {
            depth: depth.max(1),
            ring: None,
            file: None,
            bufs: HashMap::new(),
            armed: None,
            no_futex: false,
        }
    }

    fn wait(&mut self, min: usize, out: &mut Vec<Completion>) -> io::Result<()> {
        let Some(ring) = self.ring.as_mut() else { return Ok(()) };
        let mut got = 0;
        loop {
            for cqe in ring.completion() {
                let tag = cqe.user_data();
                let res = cqe.result();
                if tag == WAKE_TAG {
                    self.armed = None;
                    // EAGAIN: the word had changed already; anything else: no futex wait
                    // here, and arming it again would spin.
                    if res < 0 && res != -libc::EAGAIN && res != -libc::EINTR {
                        self.no_futex = true;
                    }
                    continue;
                }
                let buf = self.bufs.remove(&tag).expect("completion of a write in flight");
                let result = if res < 0 {
                    Err(io::Error::from_raw_os_error(-res))
                } else {
                    Ok(res as usize)
                };
                out.push(Completion { tag, buf, result });
                got += 1;
            }
            if got >= min.min(got + self.bufs.len()) {
                return Ok(());
            }
            match ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl WriteQueue for UringQueue {
    fn set_file(&mut self, path: &Path, opts: OpenOptions) -> io::Result<()> {
        assert!(self.bufs.is_empty(), "set_file with writes in flight");
        if self.ring.is_none() {
            let entries = (2 * self.depth + 2).next_power_of_two() as u32;
            // No SQPOLL: measured, its polling thread takes one of this machine's two cores
            // and costs more than it saves (docs/fsync-strategies.md).
            self.ring = Some(IoUring::new(entries)?);
        }
        self.file = Some(open_std(path, opts)?);
        Ok(())
    }

    fn submit(
        &mut self,
        tag: u64,
        buf: AlignedBuf,
        range: Range<usize>,
        offset: u64,
        dsync: bool,
    ) -> io::Result<()> {
        let (Some(ring), Some(file)) = (self.ring.as_mut(), self.file.as_ref()) else {
            return Err(io::Error::other("no file set"));
        };
        let data = &buf.as_slice()[range];
        let len = u32::try_from(data.len()).map_err(|_| io::Error::other("write too large"))?;
        let entry = opcode::Write::new(types::Fd(file.as_raw_fd()), data.as_ptr(), len)
            .offset(offset)
            .rw_flags(if dsync { libc::RWF_DSYNC } else { 0 })
            .build()
            .user_data(tag);
        if ring.submission().is_full() {
            ring.submit()?;
        }
        // SAFETY: the buffer is kept in `bufs` (a heap allocation that does not move with the
        // AlignedBuf value) until the completion with this tag is reaped; Drop waits for all.
        unsafe { ring.submission().push(&entry) }.map_err(|_| io::Error::other("sq full"))?;
        self.bufs.insert(tag, Some(buf));
        // The entry is queued: if entering the kernel fails now, the next reap enters it again
        // (and reports an error that persists), so the write counts as submitted either way.
        let _ = ring.submit();
        Ok(())
    }

    fn submit_sync(&mut self, tag: u64) -> io::Result<()> {
        let (Some(ring), Some(file)) = (self.ring.as_mut(), self.file.as_ref()) else {
            return Err(io::Error::other("no file set"));
        };
        let entry = opcode::Fsync::new(types::Fd(file.as_raw_fd()))
            .flags(types::FsyncFlags::DATASYNC)
            .build()
            .user_data(tag);
        if ring.submission().is_full() {
            ring.submit()?;
        }
        // SAFETY: the entry references no memory.
        unsafe { ring.submission().push(&entry) }.map_err(|_| io::Error::other("sq full"))?;
        self.bufs.insert(tag, None);
        let _ = ring.submit();
        Ok(())
    }

    fn reap(&mut self, min: usize, out: &mut Vec<Completion>) -> io::Result<()> {
        self.wait(min, out)
    }

    fn reap_or_wake(
        &mut self,
        wake: &Arc<AtomicU32>,
        seen: u32,
        out: &mut Vec<Completion>,
    ) -> io::Result<()> {
        let before = out.len();
        self.wait(0, out)?;
        if out.len() > before || self.bufs.is_empty() || wake.load(Ordering::Acquire) != seen {
            return Ok(());
        }
        if self.no_futex {
            return self.wait(1, out);
        }
        let Some(ring) = self.ring.as_mut() else { return Ok(()) };
        if self.armed.is_none() {
            // FUTEX2_SIZE_U32 | FUTEX2_PRIVATE: matches FUTEX_WAKE_PRIVATE on the same word.
            const FUTEX2_SIZE_U32: u32 = 0x02;
            const FUTEX2_PRIVATE: u32 = 128;
            let entry = opcode::FutexWait::new(
                wake.as_ptr().cast_const(),
                u64::from(seen),
                u64::from(u32::MAX),
                FUTEX2_SIZE_U32 | FUTEX2_PRIVATE,
            )
            .build()
            .user_data(WAKE_TAG);
            if ring.submission().is_full() {
                ring.submit()?;
            }
            // SAFETY: the word is kept alive by the Arc held in `armed` until the wait's
            // completion is reaped (Drop wakes and reaps it).
            unsafe { ring.submission().push(&entry) }.map_err(|_| io::Error::other("sq full"))?;
            self.armed = Some(wake.clone());
        }
        match ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        self.wait(0, out)
    }

    fn in_flight(&self) -> usize {
        self.bufs.len()
    }
}

impl Drop for UringQueue {
    fn drop(&mut self) {
        if let Some(word) = self.armed.clone() {
            // End the futex wait in the ring before the word may go.
            wake_word(&word);
            let mut sink = Vec::new();
            for _ in 0..1000 {
                if self.armed.is_none() {
                    break;
                }
                if let Some(ring) = self.ring.as_mut() {
                    let _ = ring.submit_and_wait(1);
                }
                let _ = self.wait(0, &mut sink);
            }
            if let Some(w) = self.armed.take() {
                std::mem::forget(w);
            }
        }
        // The kernel may still write from the buffers: wait for every completion first.
        let mut sink = Vec::new();
        while !self.bufs.is_empty() {
            let before = self.bufs.len();
            if self.wait(before, &mut sink).is_err() && self.bufs.len() == before {
                // Nothing can be reaped: leak the buffers rather than free memory in use.
                for (_, b) in self.bufs.drain() {
                    std::mem::forget(b);
                }
            }
            sink.clear();
        }
    }
}
