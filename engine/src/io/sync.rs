//! The plain-syscall backend: `pread`, `pwrite`, `pwritev2(RWF_DSYNC)`, `fdatasync`,
//! `fallocate`.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};

use super::queue::{Completion, WriteQueue};
use super::{AlignedBuf, OpenOptions, VFile, Vfs};

/// Real files through plain syscalls.
#[derive(Debug, Default, Clone)]
pub struct SyncVfs;

impl SyncVfs {
    /// The backend.
    pub fn new() -> Self {
        SyncVfs
    }
}

/// Opens a real file with the engine's options.
pub(crate) fn open_std(path: &Path, opts: OpenOptions) -> io::Result<File> {
    let mut o = fs::OpenOptions::new();
    o.read(true);
    if opts.write {
        o.write(true);
    }
    if opts.create_new {
        o.create_new(true);
    }
    let mut flags = libc::O_CLOEXEC;
    if opts.direct {
        flags |= libc::O_DIRECT;
    }
    if opts.dsync {
        flags |= libc::O_DSYNC;
    }
    o.custom_flags(flags);
    o.open(path)
}

impl Vfs for SyncVfs {
    fn name(&self) -> &'static str {
        "sync"
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        list_dir_std(dir)
    }

    fn open(&self, path: &Path, opts: OpenOptions) -> io::Result<Box<dyn VFile>> {
        Ok(Box::new(SyncFile { file: open_std(path, opts)? }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        sync_dir_std(dir)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn write_queue(&self, depth: usize, _register: bool) -> Option<Box<dyn WriteQueue>> {
        Some(Box::new(ThreadQueue::new(depth)))
    }
}

pub(crate) fn list_dir_std(dir: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
    }
    Ok(names)
}

pub(crate) fn sync_dir_std(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A real file used through plain syscalls.
#[derive(Debug)]
pub struct SyncFile {
    pub(crate) file: File,
}

pub(crate) fn fallocate_std(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let off = i64::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let len = i64::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    loop {
        // SAFETY: plain syscall on a valid fd.
        let r = unsafe { libc::fallocate(file.as_raw_fd(), 0, off, len) };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

pub(crate) fn pwrite_dsync_std(file: &File, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        let iov = libc::iovec { iov_base: buf.as_ptr() as *mut libc::c_void, iov_len: buf.len() };
        let off =
            i64::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: iov points at buf, which outlives the call.
        let n = unsafe { libc::pwritev2(file.as_raw_fd(), &iov, 1, off, libc::RWF_DSYNC) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::WriteZero));
        }
        let n = n as usize;
        buf = &buf[n..];
        offset += n as u64;
    }
    Ok(())
}

impl VFile for SyncFile {
    fn as_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        Some(self.file.as_fd())
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }

    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    fn write_all_at_dsync(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        pwrite_dsync_std(&self.file, buf, offset)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn sync_all(&mut self) -> io::Result<()> {
        self.file.sync_all()
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

/// One write for a [`ThreadQueue`] worker.
struct Job {
    tag: u64,
    /// `None`: an fdatasync.
    buf: Option<AlignedBuf>,
    range: std::ops::Range<usize>,
    offset: u64,
    dsync: bool,
    file: Arc<File>,
}

/// Several writes in flight through plain syscalls: up to `depth` helper threads, each doing
/// one `pwrite` / `pwritev2(RWF_DSYNC)` at a time from a shared job queue (the pipelined log
/// strategy on the syscall backend, to compare with io_uring on equal terms).
pub(crate) struct ThreadQueue {
    depth: usize,
    jobs: Option<mpsc::Sender<Job>>,
    done: mpsc::Receiver<Completion>,
    done_tx: mpsc::Sender<Completion>,
    workers: Vec<std::thread::JoinHandle<()>>,
    file: Option<Arc<File>>,
    in_flight: usize,
}

impl std::fmt::Debug for ThreadQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadQueue")
            .field("depth", &self.depth)
            .field("in_flight", &self.in_flight)
            .finish()
    }
}

impl ThreadQueue {
    pub(crate) fn new(depth: usize) -> Self {
        let (done_tx, done) = mpsc::channel();
        Self {
            depth: depth.max(1),
            jobs: None,
            done,
            done_tx,
            workers: Vec::new(),
            file: None,
            in_flight: 0,
        }
    }

    fn start(&mut self) -> io::Result<()> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..self.depth {
            let rx = rx.clone();
            let done = self.done_tx.clone();
            let h = std::thread::Builder::new().name(format!("corral-log-io-{i}")).spawn(
                move || loop {
                    let job = match rx.lock().unwrap_or_else(|p| p.into_inner()).recv() {
                        Ok(j) => j,
                        Err(_) => return,
                    };
                    let result = match &job.buf {
                        None => job.file.sync_data().map(|()| 0),
                        Some(buf) => {
                            let data = &buf.as_slice()[job.range.clone()];
                            if job.dsync {
                                pwrite_dsync_std(&job.file, data, job.offset)
                            } else {
                                job.file.write_all_at(data, job.offset)
                            }
                            .map(|()| job.range.len())
                        }
                    };
                    if done.send(Completion { tag: job.tag, buf: job.buf, result }).is_err() {
                        return;
                    }
                },
            )?;
            self.workers.push(h);
        }
        self.jobs = Some(tx);
        Ok(())
    }
}

impl WriteQueue for ThreadQueue {
    fn set_file(&mut self, path: &Path, opts: OpenOptions) -> io::Result<()> {
        assert_eq!(self.in_flight, 0, "set_file with writes in flight");
        if self.jobs.is_none() {
            self.start()?;
        }
        self.file = Some(Arc::new(open_std(path, opts)?));
        Ok(())
    }

    fn submit(
        &mut self,
        tag: u64,
        buf: AlignedBuf,
        range: std::ops::Range<usize>,
        offset: u64,
        dsync: bool,
    ) -> io::Result<()> {
        let (Some(jobs), Some(file)) = (&self.jobs, &self.file) else {
            return Err(io::Error::other("no file set"));
        };
        jobs.send(Job { tag, buf: Some(buf), range, offset, dsync, file: file.clone() })
            .map_err(|_| io::Error::other("the write threads are gone"))?;
        self.in_flight += 1;
        Ok(())
    }

    fn submit_sync(&mut self, tag: u64) -> io::Result<()> {
        let (Some(jobs), Some(file)) = (&self.jobs, &self.file) else {
            return Err(io::Error::other("no file set"));
        };
        // Covers the writes completed so far: fdatasync flushes whatever has reached the file.
        let job = Job { tag, buf: None, range: 0..0, offset: 0, dsync: false, file: file.clone() };
        jobs.send(job).map_err(|_| io::Error::other("the write threads are gone"))?;
        self.in_flight += 1;
        Ok(())
    }

    fn reap(&mut self, min: usize, out: &mut Vec<Completion>) -> io::Result<()> {
        let mut got = 0;
        while let Ok(c) = self.done.try_recv() {
            out.push(c);
            got += 1;
        }
        while got < min && self.in_flight > got {
            match self.done.recv() {
                Ok(c) => {
                    out.push(c);
                    got += 1;
                }
                Err(_) => break,
            }
        }
        self.in_flight -= got;
        Ok(())
    }

    fn in_flight(&self) -> usize {
        self.in_flight
    }
}

impl Drop for ThreadQueue {
    fn drop(&mut self) {
        // Workers finish the writes they hold (their buffers are theirs), then see the
        // closed queue and end.
        self.jobs = None;
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
    }
}
