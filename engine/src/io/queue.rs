//! Writes with several in flight at once: [`WriteQueue`].
//!
//! A queue writes into one file at a time (set with [`WriteQueue::set_file`], which opens its
//! own handle by path). Each submission hands a buffer over with a tag; the buffer comes back
//! with the write's result when its completion is reaped, in whatever order the device
//! finished them. Submissions must not overlap in the file while in flight.
//!
//! * [`InlineQueue`]: any [`Vfs`]; each write is done (and completed) inside `submit`, so
//!   there is never more than one in flight. The fallback where there is no better queue.
//! * the io_uring queue (`UringVfs`): writes submitted to a ring and reaped as they complete.
//! * the simulated disk's queue (`SimVfs`): in-flight writes complete in a seeded random
//!   order, and a crash lands each one not at all, whole or torn.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::io;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use super::{AlignedBuf, OpenOptions, VFile, Vfs};

/// A finished write.
#[derive(Debug)]
pub struct Completion {
    /// The tag given at submission.
    pub tag: u64,
    /// The buffer, handed back (`None` for a sync).
    pub buf: Option<AlignedBuf>,
    /// Bytes written (possibly fewer than asked: the caller submits the rest), or the error.
    pub result: io::Result<usize>,
}

/// Several writes in flight into one file.
pub trait WriteQueue: Send + Debug {
    /// Directs later submissions to the file at `path`, opened with `opts` (nothing may be in
    /// flight).
    fn set_file(&mut self, path: &Path, opts: OpenOptions) -> io::Result<()>;

    /// Starts writing `buf[range]` at `offset`; with `dsync` the write is durable when it
    /// completes (`RWF_DSYNC`). An error here means nothing was submitted.
    fn submit(
        &mut self,
        tag: u64,
        buf: AlignedBuf,
        range: Range<usize>,
        offset: u64,
        dsync: bool,
    ) -> io::Result<()>;

    /// Starts an `fdatasync` of the file that covers every write completed (reaped or not)
    /// before this call; its completion comes back with `tag` and no buffer.
    fn submit_sync(&mut self, tag: u64) -> io::Result<()>;

    /// Moves finished writes to `out`, waiting until at least `min` have finished (fewer only
    /// if fewer are in flight).
    fn reap(&mut self, min: usize, out: &mut Vec<Completion>) -> io::Result<()>;

    /// Moves finished writes to `out`, waiting (if none has finished) until one does or
    /// `wake` no longer holds `seen` — another thread bumps it and calls [`wake_word`] to
    /// interrupt the wait. Queues without such a wait reap at least one write in flight.
    fn reap_or_wake(
        &mut self,
        wake: &Arc<AtomicU32>,
        seen: u32,
        out: &mut Vec<Completion>,
    ) -> io::Result<()> {
        let _ = (wake, seen);
        let min = usize::from(self.in_flight() > 0);
        self.reap(min, out)
    }

    /// Writes submitted and not yet reaped.
    fn in_flight(&self) -> usize;
}

/// Bumps `word` and wakes a thread waiting on it in [`WriteQueue::reap_or_wake`].
pub fn wake_word(word: &AtomicU32) {
    word.fetch_add(1, Ordering::Release);
    // SAFETY: FUTEX_WAKE on the address of a live atomic; no memory is written.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            i32::MAX,
        );
    }
}

/// Writes done at once, through an ordinary file handle: one in flight at most.
#[derive(Debug)]
pub struct InlineQueue {
    vfs: Arc<dyn Vfs>,
    file: Option<Box<dyn VFile>>,
    done: VecDeque<Completion>,
}

impl InlineQueue {
    /// A queue writing through `vfs`.
    pub fn new(vfs: Arc<dyn Vfs>) -> Self {
        Self { vfs, file: None, done: VecDeque::new() }
    }
}

impl WriteQueue for InlineQueue {
    fn set_file(&mut self, path: &Path, opts: OpenOptions) -> io::Result<()> {
        assert!(self.done.is_empty(), "set_file with writes in flight");
        self.file = Some(self.vfs.open(path, opts)?);
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
        let file = self.file.as_mut().ok_or_else(|| io::Error::other("no file set"))?;
        let data = &buf.as_slice()[range.clone()];
        let result = if dsync {
            file.write_all_at_dsync(data, offset)
        } else {
            file.write_all_at(data, offset)
        }
        .map(|()| range.len());
        self.done.push_back(Completion { tag, buf: Some(buf), result });
        Ok(())
    }

    fn submit_sync(&mut self, tag: u64) -> io::Result<()> {
        let file = self.file.as_mut().ok_or_else(|| io::Error::other("no file set"))?;
        let result = file.sync_data().map(|()| 0);
        self.done.push_back(Completion { tag, buf: None, result });
        Ok(())
    }

    fn reap(&mut self, _min: usize, out: &mut Vec<Completion>) -> io::Result<()> {
        out.extend(self.done.drain(..));
        Ok(())
    }

    fn in_flight(&self) -> usize {
        self.done.len()
    }
}
