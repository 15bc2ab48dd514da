//! The plain-syscall backend: `pread`, `pwrite`, `pwritev2(RWF_DSYNC)`, `fdatasync`,
//! `fallocate`.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;

use super::{OpenOptions, VFile, Vfs};

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
