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

    fn write_queue(&self, depth: usize, register: bool) -> Option<Box<dyn WriteQueue>> {
        Some(Box::new(UringQueue::new(depth, register)))
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
/// Fixed-buffer slots for a queue of `depth` writes: every write in flight, the buffers the
/// log keeps for reuse, and room for a few that grew to new memory.
fn buffer_slots(depth: usize) -> u32 {
    (2 * depth + 2).min(64) as u32
}

pub(crate) struct UringQueue {
    depth: usize,
    ring: Option<IoUring>,
    file: Option<File>,
    /// In flight: tag → (buffer kept alive until its completion is reaped, `None` for a sync;
    /// the fixed-buffer slot the write used).
    bufs: HashMap<u64, (Option<AlignedBuf>, Option<usize>)>,
    /// The word a futex wait in the ring watches, while one is armed (kept alive by this).
    armed: Option<Arc<AtomicU32>>,
    /// The kernel refused the futex wait (before 6.7, or restricted): wait for writes only.
    no_futex: bool,
    /// Register the file and the buffers with the ring (asked for; each falls back to plain
    /// descriptors and addresses where the kernel refuses).
    register: bool,
    /// A sparse table of one file was registered: the current file goes in slot 0.
    file_table: bool,
    /// The current file is registered (writes and syncs name `Fixed(0)`).
    fixed_file: bool,
    /// The fixed-buffer table, when it could be registered: which allocation each slot holds.
    slots: Option<Vec<BufSlot>>,
    /// Counts submissions, to find the least recently used slot.
    clock: u64,
}

/// One slot of the ring's fixed-buffer table.
#[derive(Debug, Clone, Copy, Default)]
struct BufSlot {
    /// [`AlignedBuf::alloc_id`] of the allocation registered here (0: none).
    alloc_id: u64,
    /// Writes in flight from this slot (it is not replaced while any are).
    busy: u32,
    /// `clock` at its last use.
    used: u64,
}

impl std::fmt::Debug for UringQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringQueue")
            .field("depth", &self.depth)
            .field("in_flight", &self.bufs.len())
            .field("fixed_file", &self.fixed_file)
            .field("fixed_buffers", &self.slots.is_some())
            .finish()
    }
}

impl UringQueue {
    pub(crate) fn new(depth: usize, register: bool) -> Self {
        Self {
            depth: depth.max(1),
            ring: None,
            file: None,
            bufs: HashMap::new(),
            armed: None,
            no_futex: false,
            register,
            file_table: false,
            fixed_file: false,
            slots: None,
            clock: 0,
        }
    }

    /// Whether the current file and buffers go to the kernel as registered ones.
    #[cfg(test)]
    pub(crate) fn registered(&self) -> (bool, bool) {
        (self.fixed_file, self.slots.is_some())
    }

    /// The fixed-buffer slot holding `buf`'s allocation, registering it in the least recently
    /// used idle slot if none does. `None`: no table, no idle slot, or the kernel refused
    /// (the memory-lock limit, for one) — the write then goes out as a plain one.
    fn slot_for(&mut self, buf: &AlignedBuf) -> Option<usize> {
        let ring = self.ring.as_ref()?;
        let slots = self.slots.as_mut()?;
        self.clock += 1;
        let id = buf.alloc_id();
        if let Some(i) = slots.iter().position(|s| s.alloc_id == id) {
            slots[i].used = self.clock;
            return Some(i);
        }
        let (victim, _) =
            slots.iter().enumerate().filter(|(_, s)| s.busy == 0).min_by_key(|(_, s)| s.used)?;
        let (base, cap) = buf.allocation();
        let iov = libc::iovec { iov_base: base.cast_mut().cast(), iov_len: cap };
        // SAFETY: the kernel pins the pages of the range and keeps its own references to
        // them for as long as the slot holds them, so nothing it does can touch memory that
        // this process frees or reuses. A submission names this slot only for a write from
        // the allocation registered here (same alloc_id, which no later allocation shares),
        // while that buffer is alive in `bufs`; a slot whose allocation has since been freed
        // is never named again and is replaced when it is the least recently used.
        let res = unsafe { ring.submitter().register_buffers_update(victim as u32, &[iov], None) };
        match res {
            Ok(()) => {
                slots[victim] = BufSlot { alloc_id: id, busy: 0, used: self.clock };
                Some(victim)
            }
            Err(e) => {
                tracing::debug!(error = %e, "io_uring buffer registration refused; plain writes");
                self.slots = None;
                None
            }
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
                let (buf, slot) = self.bufs.remove(&tag).expect("completion of a write in flight");
                if let (Some(i), Some(slots)) = (slot, self.slots.as_mut()) {
                    slots[i].busy -= 1;
                }
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
            let ring = IoUring::new(entries)?;
            if self.register {
                // Sparse tables (Linux 5.19): filled as files and buffers arrive.
                self.file_table = ring.submitter().register_files_sparse(1).is_ok();
                if ring.submitter().register_buffers_sparse(buffer_slots(self.depth)).is_ok() {
                    self.slots = Some(vec![BufSlot::default(); buffer_slots(self.depth) as usize]);
                }
            }
            self.ring = Some(ring);
        }
        let file = open_std(path, opts)?;
        self.fixed_file = false;
        if self.file_table {
            if let Some(ring) = self.ring.as_ref() {
                // Replaces the previous file in the slot (the table holds its own reference).
                self.fixed_file =
                    ring.submitter().register_files_update(0, &[file.as_raw_fd()]).is_ok();
            }
        }
        self.file = Some(file);
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
        if self.ring.is_none() || self.file.is_none() {
            return Err(io::Error::other("no file set"));
        }
        let slot = self.slot_for(&buf);
        let (Some(ring), Some(file)) = (self.ring.as_mut(), self.file.as_ref()) else {
            return Err(io::Error::other("no file set"));
        };
        let data = &buf.as_slice()[range];
        let len = u32::try_from(data.len()).map_err(|_| io::Error::other("write too large"))?;
        let flags = if dsync { libc::RWF_DSYNC } else { 0 };
        let entry = match (self.fixed_file, slot) {
            (true, Some(i)) => {
                opcode::WriteFixed::new(types::Fixed(0), data.as_ptr(), len, i as u16)
                    .offset(offset)
                    .rw_flags(flags)
                    .build()
            }
            (false, Some(i)) => {
                opcode::WriteFixed::new(types::Fd(file.as_raw_fd()), data.as_ptr(), len, i as u16)
                    .offset(offset)
                    .rw_flags(flags)
                    .build()
            }
            (true, None) => opcode::Write::new(types::Fixed(0), data.as_ptr(), len)
                .offset(offset)
                .rw_flags(flags)
                .build(),
            (false, None) => opcode::Write::new(types::Fd(file.as_raw_fd()), data.as_ptr(), len)
                .offset(offset)
                .rw_flags(flags)
                .build(),
        }
        .user_data(tag);
        if ring.submission().is_full() {
            ring.submit()?;
        }
        // SAFETY: the buffer is kept in `bufs` (a heap allocation that does not move with the
        // AlignedBuf value) until the completion with this tag is reaped; Drop waits for all.
        // A fixed write names the slot holding this very allocation (see `slot_for`).
        unsafe { ring.submission().push(&entry) }.map_err(|_| io::Error::other("sq full"))?;
        if let (Some(i), Some(slots)) = (slot, self.slots.as_mut()) {
            slots[i].busy += 1;
        }
        self.bufs.insert(tag, (Some(buf), slot));
        // The entry is queued: if entering the kernel fails now, the next reap enters it again
        // (and reports an error that persists), so the write counts as submitted either way.
        let _ = ring.submit();
        Ok(())
    }

    fn submit_sync(&mut self, tag: u64) -> io::Result<()> {
        let (Some(ring), Some(file)) = (self.ring.as_mut(), self.file.as_ref()) else {
            return Err(io::Error::other("no file set"));
        };
        let entry = if self.fixed_file {
            opcode::Fsync::new(types::Fixed(0))
        } else {
            opcode::Fsync::new(types::Fd(file.as_raw_fd()))
        }
        .flags(types::FsyncFlags::DATASYNC)
        .build()
        .user_data(tag);
        if ring.submission().is_full() {
            ring.submit()?;
        }
        // SAFETY: the entry references no memory.
        unsafe { ring.submission().push(&entry) }.map_err(|_| io::Error::other("sq full"))?;
        self.bufs.insert(tag, (None, None));
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
                for (_, (b, _)) in self.bufs.drain() {
                    std::mem::forget(b);
                }
            }
            sink.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::DIRECT_ALIGN;

    fn filled(fill: u8, blocks: usize) -> AlignedBuf {
        let mut b = AlignedBuf::with_capacity(blocks * DIRECT_ALIGN);
        b.extend_from_slice(&vec![fill; blocks * DIRECT_ALIGN]);
        b
    }

    /// Writes through registered and plain queues land where they were aimed, including from
    /// buffers that grew to new memory, more buffers than the table has slots, and buffers
    /// freed and allocated again (whose address may be reused, but never their id).
    #[test]
    fn registered_writes_land_from_every_buffer() {
        if UringVfs::new().is_err() {
            eprintln!("skipped: io_uring is unavailable here");
            return;
        }
        for register in [true, false] {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("f");
            std::fs::write(&path, vec![0u8; 64 * DIRECT_ALIGN]).expect("create");
            let mut q = UringQueue::new(2, register);
            let opts = OpenOptions { write: true, direct: true, ..OpenOptions::default() };
            q.set_file(&path, opts).expect("set_file");
            // Root may lock memory without limit; elsewhere the kernel may refuse buffers.
            // SAFETY: geteuid has no preconditions.
            if register && unsafe { libc::geteuid() } == 0 {
                assert_eq!(q.registered(), (true, true), "registration on this kernel");
            }
            if !register {
                assert_eq!(q.registered(), (false, false));
            }
            let mut expect = vec![0u8; 64 * DIRECT_ALIGN];
            let mut done = Vec::new();
            let mut keep: Vec<AlignedBuf> = Vec::new();
            for i in 0..40usize {
                // Reuse a kept buffer (a slot hit), grow one (a new allocation), or make one.
                let fill = (i + 1) as u8;
                let mut buf = match (i % 3, keep.pop()) {
                    (0, Some(mut b)) => {
                        b.clear();
                        b.extend_from_slice(&vec![fill; DIRECT_ALIGN]);
                        b
                    }
                    (1, Some(mut b)) => {
                        b.clear();
                        b.extend_from_slice(&vec![fill; 3 * DIRECT_ALIGN]);
                        b
                    }
                    _ => filled(fill, 1),
                };
                let blocks = buf.len() / DIRECT_ALIGN;
                let at = (i * 5) % 60;
                let blocks = blocks.min(64 - at);
                buf.truncate(blocks * DIRECT_ALIGN);
                expect[at * DIRECT_ALIGN..(at + blocks) * DIRECT_ALIGN].fill(fill);
                q.submit(
                    i as u64 + 1,
                    buf,
                    0..blocks * DIRECT_ALIGN,
                    (at * DIRECT_ALIGN) as u64,
                    true,
                )
                .expect("submit");
                // Wait for each write before the next (overlapping ranges must land in order).
                q.reap(1, &mut done).expect("reap");
                for c in done.drain(..) {
                    assert_eq!(c.result.expect("write"), blocks * DIRECT_ALIGN);
                    if i % 4 != 3 {
                        keep.push(c.buf.expect("a write's buffer comes back"));
                    }
                }
            }
            q.submit_sync(1000).expect("sync");
            q.reap(1, &mut done).expect("reap sync");
            assert!(done.pop().expect("sync done").result.is_ok());
            drop(q);
            assert_eq!(std::fs::read(&path).expect("read back"), expect, "register={register}");
        }
    }

    /// A second file takes the first one's registered slot; writes then go to the new file.
    #[test]
    fn set_file_moves_the_registered_file() {
        if UringVfs::new().is_err() {
            eprintln!("skipped: io_uring is unavailable here");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        for p in [&a, &b] {
            std::fs::write(p, vec![0u8; DIRECT_ALIGN]).expect("create");
        }
        let mut q = UringQueue::new(1, true);
        let opts = OpenOptions { write: true, direct: true, ..OpenOptions::default() };
        let mut done = Vec::new();
        for (n, p) in [&a, &b].into_iter().enumerate() {
            q.set_file(p, opts).expect("set_file");
            q.submit(n as u64 + 1, filled(7 + n as u8, 1), 0..DIRECT_ALIGN, 0, true)
                .expect("submit");
            q.reap(1, &mut done).expect("reap");
            assert!(done.pop().expect("done").result.is_ok());
        }
        assert_eq!(std::fs::read(&a).expect("a"), vec![7u8; DIRECT_ALIGN]);
        assert_eq!(std::fs::read(&b).expect("b"), vec![8u8; DIRECT_ALIGN]);
    }
}
