//! The snapshot files: writing, listing, verified reading, retention.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::SnapshotError;
use crate::io::{read_up_to, AlignedBuf, OpenOptions, VFile, Vfs, DIRECT_ALIGN};

/// Snapshot file magic.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"CORRALSN";
const VERSION: u32 = 1;
/// Bytes before the body.
pub const SNAPSHOT_HEADER_LEN: usize = 40;
/// Bytes after the body.
pub const SNAPSHOT_TRAILER_LEN: usize = 16;
const TRAILER_MAGIC: [u8; 4] = *b"SNAP";
const BUF_BYTES: usize = 1 << 20;

/// File name of the snapshot taken at `zxid`.
pub fn snapshot_file_name(zxid: u64) -> String {
    format!("snapshot.{zxid:x}")
}

/// Parses `snapshot.<hex>` (not temporary files) into the zxid.
pub fn parse_snapshot_file_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("snapshot.")?;
    if hex.is_empty() || hex.len() > 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

fn encode_header(dbid: u64, zxid: u64) -> [u8; SNAPSHOT_HEADER_LEN] {
    let mut h = [0u8; SNAPSHOT_HEADER_LEN];
    h[0..8].copy_from_slice(&SNAPSHOT_MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(SNAPSHOT_HEADER_LEN as u32).to_le_bytes());
    h[16..24].copy_from_slice(&dbid.to_le_bytes());
    h[24..32].copy_from_slice(&zxid.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..36]);
    h[36..40].copy_from_slice(&crc.to_le_bytes());
    h
}

/// A snapshot file on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The zxid it was taken at: the state after applying every txn up to and including it.
    pub zxid: u64,
    /// Its path.
    pub path: PathBuf,
}

/// The snapshot files of one directory.
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    vfs: Arc<dyn Vfs>,
    dir: PathBuf,
    dbid: u64,
}

impl SnapshotStore {
    /// Opens (creating) the directory. Leftover temporary files of interrupted writes are
    /// removed.
    pub fn open(vfs: Arc<dyn Vfs>, dir: &Path, dbid: u64) -> Result<Self, SnapshotError> {
        crate::io::create_dir_durable(vfs.as_ref(), dir)
            .map_err(|e| SnapshotError::io("create directory", dir, e))?;
        let names = vfs.list_dir(dir).map_err(|e| SnapshotError::io("list", dir, e))?;
        let mut removed = false;
        for n in names.iter().filter(|n| n.starts_with("snapshot.") && n.ends_with(".tmp")) {
            let p = dir.join(n);
            tracing::info!(file = %p.display(), "removing an unfinished snapshot");
            vfs.remove_file(&p).map_err(|e| SnapshotError::io("remove", &p, e))?;
            removed = true;
        }
        if removed {
            vfs.sync_dir(dir).map_err(|e| SnapshotError::io("fsync directory", dir, e))?;
        }
        Ok(Self { vfs, dir: dir.to_path_buf(), dbid })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Snapshot files, newest (highest zxid) first. Validity is not checked here.
    pub fn list(&self) -> Result<Vec<SnapshotInfo>, SnapshotError> {
        let names =
            self.vfs.list_dir(&self.dir).map_err(|e| SnapshotError::io("list", &self.dir, e))?;
        let mut v: Vec<SnapshotInfo> = names
            .iter()
            .filter_map(|n| {
                parse_snapshot_file_name(n)
                    .map(|zxid| SnapshotInfo { zxid, path: self.dir.join(n) })
            })
            .collect();
        v.sort_by_key(|s| std::cmp::Reverse(s.zxid));
        Ok(v)
    }

    /// Starts writing the snapshot taken at `zxid`. Nothing is visible under the final name
    /// until [`SnapshotWriter::finish`] returns. Each writer has a temporary file of its own
    /// (`snapshot.<zxid>.<n>.tmp`), so two writers of one zxid (a snapshot taken while a
    /// received one is written) never share one.
    pub fn create(&self, zxid: u64) -> Result<SnapshotWriter, SnapshotError> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let final_path = self.dir.join(snapshot_file_name(zxid));
        let tmp = self.dir.join(format!("{}.{n}.tmp", snapshot_file_name(zxid)));
        if self.vfs.exists(&tmp) {
            self.vfs.remove_file(&tmp).map_err(|e| SnapshotError::io("remove", &tmp, e))?;
        }
        let file = self
            .vfs
            .open(&tmp, OpenOptions::create_new())
            .map_err(|e| SnapshotError::io("create", &tmp, e))?;
        // The body goes to the disk with O_DIRECT from one reused buffer: copied into the page
        // cache it cost the snapshot thread more than serializing (fresh page-cache pages,
        // gigabytes at ten million znodes, evicting what the server reads), and its
        // write-back queued ahead of the log's flushes. Where O_DIRECT is refused (tmpfs),
        // buffered writes with write-behind do the job.
        let direct =
            self.vfs.open(&tmp, OpenOptions { direct: true, ..OpenOptions::read_write() }).ok();
        let mut buf = AlignedBuf::with_capacity(BUF_BYTES + DIRECT_ALIGN);
        buf.extend_from_slice(&encode_header(self.dbid, zxid));
        Ok(SnapshotWriter {
            vfs: self.vfs.clone(),
            dir: self.dir.clone(),
            file,
            direct,
            tmp,
            final_path,
            zxid,
            pos: 0,
            body_len: 0,
            crc: 0,
            buf,
            finished: false,
            // 1 MiB at a time, so that a log flush waits behind at most ~2 MiB of snapshot.
            writeback: crate::io::WriteBehind::new(0, 1 << 20),
        })
    }

    /// Writes a whole snapshot from `body`, durably; returns its file.
    pub fn write(
        &self,
        zxid: u64,
        body: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> Result<SnapshotInfo, SnapshotError> {
        let mut w = self.create(zxid)?;
        body(&mut w).map_err(|e| SnapshotError::Body { zxid, message: e.to_string() })?;
        w.finish()
    }

    /// Opens a snapshot for reading its body. The checksum is verified by
    /// [`SnapshotReader::finish`], after the body has been read: whatever was built from a
    /// body must be discarded if `finish` fails.
    pub fn open_reader(&self, info: &SnapshotInfo) -> Result<SnapshotReader, SnapshotError> {
        let file = self
            .vfs
            .open(&info.path, OpenOptions::read())
            .map_err(|e| SnapshotError::io("open", &info.path, e))?;
        let invalid = |reason: String| SnapshotError::Invalid { path: info.path.clone(), reason };
        let len = file.len().map_err(|e| SnapshotError::io("stat", &info.path, e))?;
        if len < (SNAPSHOT_HEADER_LEN + SNAPSHOT_TRAILER_LEN) as u64 {
            return Err(invalid(format!("only {len} bytes")));
        }
        let mut h = [0u8; SNAPSHOT_HEADER_LEN];
        crate::io::read_exact_at(file.as_ref(), &mut h, 0)
            .map_err(|e| SnapshotError::io("read", &info.path, e))?;
        if h[0..8] != SNAPSHOT_MAGIC {
            return Err(invalid("bad magic".into()));
        }
        if crc32c::crc32c(&h[0..36]) != u32::from_le_bytes(h[36..40].try_into().expect("4")) {
            return Err(invalid("header checksum mismatch".into()));
        }
        let version = u32::from_le_bytes(h[8..12].try_into().expect("4"));
        if version != VERSION {
            return Err(invalid(format!("unsupported version {version}")));
        }
        let dbid = u64::from_le_bytes(h[16..24].try_into().expect("8"));
        if dbid != self.dbid {
            return Err(invalid(format!("dbid {dbid} is not this store's dbid {}", self.dbid)));
        }
        let zxid = u64::from_le_bytes(h[24..32].try_into().expect("8"));
        if zxid != info.zxid {
            return Err(invalid(format!("header zxid {zxid:#x} does not match the file name")));
        }
        let mut t = [0u8; SNAPSHOT_TRAILER_LEN];
        let body_end = len - SNAPSHOT_TRAILER_LEN as u64;
        crate::io::read_exact_at(file.as_ref(), &mut t, body_end)
            .map_err(|e| SnapshotError::io("read", &info.path, e))?;
        if t[12..16] != TRAILER_MAGIC {
            return Err(invalid("no trailer: the file is incomplete".into()));
        }
        let body_len = u64::from_le_bytes(t[0..8].try_into().expect("8"));
        if body_len != body_end - SNAPSHOT_HEADER_LEN as u64 {
            return Err(invalid(format!(
                "trailer says {body_len} body bytes, the file holds {}",
                body_end - SNAPSHOT_HEADER_LEN as u64
            )));
        }
        Ok(SnapshotReader {
            file,
            path: info.path.clone(),
            zxid,
            pos: SNAPSHOT_HEADER_LEN as u64,
            end: body_end,
            crc: 0,
            want_crc: u32::from_le_bytes(t[8..12].try_into().expect("4")),
            buf: Vec::new(),
            buf_pos: 0,
            crc_thread: None,
        })
    }

    /// Reads and verifies a whole snapshot, returning its body.
    pub fn read(&self, info: &SnapshotInfo) -> Result<Vec<u8>, SnapshotError> {
        let mut r = self.open_reader(info)?;
        let mut body = Vec::new();
        r.read_to_end(&mut body).map_err(|e| SnapshotError::io("read", &info.path, e))?;
        r.finish()?;
        Ok(body)
    }

    /// Checks a snapshot's checksum by reading it through.
    pub fn verify(&self, info: &SnapshotInfo) -> Result<(), SnapshotError> {
        let mut r = self.open_reader(info)?;
        io::copy(&mut r, &mut io::sink()).map_err(|e| SnapshotError::io("read", &info.path, e))?;
        r.finish()
    }

    /// Keeps the newest `retain` snapshots (at least 1) and removes older ones; returns the
    /// files removed. (Callers pass autopurge.snapRetainCount, which is at least 3.)
    pub fn purge(&self, retain: usize) -> Result<Vec<PathBuf>, SnapshotError> {
        let list = self.list()?;
        let mut removed = Vec::new();
        for s in list.into_iter().skip(retain.max(1)) {
            self.vfs.remove_file(&s.path).map_err(|e| SnapshotError::io("remove", &s.path, e))?;
            removed.push(s.path);
        }
        if !removed.is_empty() {
            self.vfs
                .sync_dir(&self.dir)
                .map_err(|e| SnapshotError::io("fsync directory", &self.dir, e))?;
        }
        Ok(removed)
    }

    /// Removes snapshots taken after `zxid` (when the log is truncated below them, they hold
    /// txns that were never committed).
    pub fn remove_after(&self, zxid: u64) -> Result<Vec<PathBuf>, SnapshotError> {
        let mut removed = Vec::new();
        for s in self.list()?.into_iter().filter(|s| s.zxid > zxid) {
            self.vfs.remove_file(&s.path).map_err(|e| SnapshotError::io("remove", &s.path, e))?;
            removed.push(s.path);
        }
        if !removed.is_empty() {
            self.vfs
                .sync_dir(&self.dir)
                .map_err(|e| SnapshotError::io("fsync directory", &self.dir, e))?;
        }
        Ok(removed)
    }
}

/// Writes one snapshot's body (implements [`Write`]); [`SnapshotWriter::finish`] makes it
/// durable and visible. Dropped unfinished, it removes its temporary file (one left by a crash
/// is removed by the next [`SnapshotStore::open`]).
pub struct SnapshotWriter {
    vfs: Arc<dyn Vfs>,
    dir: PathBuf,
    file: Box<dyn VFile>,
    /// The same file opened with O_DIRECT, where the filesystem takes it: whole blocks of
    /// the buffer go out through it; the last partial block through `file`.
    direct: Option<Box<dyn VFile>>,
    tmp: PathBuf,
    final_path: PathBuf,
    zxid: u64,
    /// The file offset of `buf`'s first byte (a block boundary while `direct` is used).
    pos: u64,
    body_len: u64,
    crc: u32,
    buf: AlignedBuf,
    /// Renamed into place: nothing to remove when dropped.
    finished: bool,
    /// Writes back as it goes, a little at a time, so that `finish`'s fsync has little left
    /// to write and the disk's queue never fills with snapshot.
    writeback: crate::io::WriteBehind,
}

impl std::fmt::Debug for SnapshotWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotWriter").field("path", &self.final_path).finish()
    }
}

impl SnapshotWriter {
    /// Writes out the buffer: with O_DIRECT its whole blocks (the partial last one moves to
    /// the front), or, with `all`, everything through the buffered handle.
    fn flush_buf(&mut self, all: bool) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let buffered = self.direct.is_none();
        match &mut self.direct {
            Some(d) if !all => {
                let whole = self.buf.len() - self.buf.len() % DIRECT_ALIGN;
                if whole == 0 {
                    return Ok(());
                }
                d.write_all_at(&self.buf.as_slice()[..whole], self.pos)?;
                self.pos += whole as u64;
                let rest = self.buf.len() - whole;
                self.buf.as_mut_slice().copy_within(whole.., 0);
                self.buf.truncate(rest);
            }
            _ => {
                self.file.write_all_at(self.buf.as_slice(), self.pos)?;
                self.pos += self.buf.len() as u64;
                self.buf.clear();
                if buffered {
                    self.writeback.advance(self.file.as_ref(), self.pos);
                }
            }
        }
        Ok(())
    }

    /// Bytes of body written so far.
    pub fn body_len(&self) -> u64 {
        self.body_len
    }

    /// Writes out what is buffered and makes it durable, so that [`SnapshotWriter::finish`]
    /// has little left to wait for (a received snapshot is synced on the thread that received
    /// it, and finished where it is installed).
    pub fn sync(&mut self) -> io::Result<()> {
        self.flush_buf(false)?;
        match &mut self.direct {
            Some(d) => d.sync_data(),
            None => self.file.sync_data(),
        }
    }

    /// Writes the trailer, fsyncs, renames into place and fsyncs the directory.
    pub fn finish(mut self) -> Result<SnapshotInfo, SnapshotError> {
        let mut t = [0u8; SNAPSHOT_TRAILER_LEN];
        t[0..8].copy_from_slice(&self.body_len.to_le_bytes());
        t[8..12].copy_from_slice(&self.crc.to_le_bytes());
        t[12..16].copy_from_slice(&TRAILER_MAGIC);
        self.buf.extend_from_slice(&t);
        let tmp = self.tmp.clone();
        self.flush_buf(false).map_err(|e| SnapshotError::io("write", &tmp, e))?;
        self.flush_buf(true).map_err(|e| SnapshotError::io("write", &tmp, e))?;
        self.file.sync_all().map_err(|e| SnapshotError::io("fsync", &tmp, e))?;
        self.vfs
            .rename(&tmp, &self.final_path)
            .map_err(|e| SnapshotError::io("rename", &tmp, e))?;
        self.finished = true;
        self.vfs
            .sync_dir(&self.dir)
            .map_err(|e| SnapshotError::io("fsync directory", &self.dir, e))?;
        Ok(SnapshotInfo { zxid: self.zxid, path: self.final_path.clone() })
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        if !self.finished {
            if let Err(e) = self.vfs.remove_file(&self.tmp) {
                tracing::warn!(file = %self.tmp.display(), error = %e,
                    "could not remove an unfinished snapshot");
            }
        }
    }
}

impl Write for SnapshotWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.crc = crc32c::crc32c_append(self.crc, data);
        self.body_len += data.len() as u64;
        let mut rest = data;
        while !rest.is_empty() {
            let n = rest.len().min(BUF_BYTES.saturating_sub(self.buf.len()).max(1));
            self.buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            if self.buf.len() >= BUF_BYTES {
                self.flush_buf(false)?;
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_buf(false)
    }
}

/// A snapshot body read all at once by [`SnapshotReader::read_rest`]: a read-only map of the
/// file, or a buffer. Either way it dereferences to the body's bytes.
#[derive(Debug)]
pub enum SnapshotBody {
    /// The file mapped; the body starts at `start`. (Shared with the thread that checksums
    /// it.)
    Mapped { map: Arc<memmap2::Mmap>, start: usize },
    /// The body read into memory.
    Read(Vec<u8>),
}

impl std::ops::Deref for SnapshotBody {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            SnapshotBody::Mapped { map, start } => &map[*start..],
            SnapshotBody::Read(v) => v,
        }
    }
}

/// Reads one snapshot's body (implements [`Read`]), computing its checksum on the way.
pub struct SnapshotReader {
    file: Box<dyn VFile>,
    path: PathBuf,
    zxid: u64,
    pos: u64,
    end: u64,
    crc: u32,
    want_crc: u32,
    buf: Vec<u8>,
    buf_pos: usize,
    /// The checksum of a mapped body, being computed on a thread of its own (its result
    /// becomes `crc` at `finish`).
    crc_thread: Option<std::thread::JoinHandle<u32>>,
}

impl std::fmt::Debug for SnapshotReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotReader").field("path", &self.path).finish()
    }
}

impl SnapshotReader {
    /// The snapshot's zxid.
    pub fn zxid(&self) -> u64 {
        self.zxid
    }

    /// Body bytes in the file.
    pub fn body_len(&self) -> u64 {
        self.end - SNAPSHOT_HEADER_LEN as u64
    }

    /// The rest of the body as one slice, checksummed on the way. A real file is mapped
    /// (read-only): its pages come straight from the page cache, with no copy and no fresh
    /// memory to fault in, which is most of a large snapshot's load time. A thread of its own
    /// asks for the whole range to be read ahead (`MADV_WILLNEED`: the snapshot is written
    /// with O_DIRECT, so after a restart it is rarely in the page cache) and checksums the
    /// mapped bytes while the caller parses them: reading the disk, checksumming and parsing
    /// overlap (1M znodes: restart-to-first-read 0.98 s → 0.40 s, docs/performance.md).
    /// A file without a descriptor (the
    /// simulated disk), or one that cannot be mapped, is read into one buffer of exactly its
    /// size. Call [`finish`](Self::finish) after building from the body: that is where a
    /// checksum mismatch is reported.
    pub fn read_rest(&mut self) -> io::Result<SnapshotBody> {
        let buffered = self.buf.len() - self.buf_pos;
        let left = (self.end - self.pos) as usize;
        if let Some((map, start)) = self.map_rest(buffered, left) {
            self.buf_pos = self.buf.len();
            let map = Arc::new(map);
            let (m, crc) = (map.clone(), self.crc);
            let spawned =
                std::thread::Builder::new().name("corral-snap-crc".into()).spawn(move || {
                    // Ask for all of it now (asynchronous read-ahead of the whole range),
                    // rather than a read-ahead window at a time as faults reach it.
                    let _ = m.advise(memmap2::Advice::WillNeed);
                    crc32c::crc32c_append(crc, &m[start + buffered..])
                });
            match spawned {
                Ok(t) => self.crc_thread = Some(t),
                Err(_) => self.crc = crc32c::crc32c_append(self.crc, &map[start + buffered..]),
            }
            self.pos = self.end;
            return Ok(SnapshotBody::Mapped { map, start });
        }
        let mut out = Vec::with_capacity(buffered + left);
        out.extend_from_slice(&self.buf[self.buf_pos..]);
        self.buf_pos = self.buf.len();
        out.resize(buffered + left, 0);
        let got = read_up_to(self.file.as_ref(), &mut out[buffered..], self.pos)?;
        if got < left {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "snapshot shrank"));
        }
        self.pos = self.end;
        self.crc = crc32c::crc32c_append(self.crc, &out[buffered..]);
        Ok(SnapshotBody::Read(out))
    }

    /// Maps `[pos - buffered, end)` of the file (returning the map and where in it that range
    /// starts), or `None` where that is not possible.
    fn map_rest(&self, buffered: usize, left: usize) -> Option<(memmap2::Mmap, usize)> {
        let fd = self.file.as_fd()?;
        let from = self.pos - buffered as u64;
        // Offsets must be page-aligned: map from the page holding `from`, then skip into it.
        let page = 4096u64;
        let base = from / page * page;
        let skip = (from - base) as usize;
        // SAFETY: a snapshot is immutable once it has its final name (it is written under a
        // temporary name, synced and renamed); purging unlinks it, which leaves a mapping
        // valid. Nothing in this process writes or truncates it while the map is alive.
        let map = unsafe {
            memmap2::MmapOptions::new().offset(base).len(skip + buffered + left).map(&fd)
        };
        match map {
            Ok(m) if m.len() == skip + buffered + left => {
                let _ = m.advise(memmap2::Advice::Sequential);
                Some((m, skip))
            }
            Ok(_) => None,
            Err(e) => {
                tracing::debug!(path = %self.path.display(), error = %e,
                    "cannot map the snapshot; reading it instead");
                None
            }
        }
    }

    /// Reads whatever of the body is left, then checks the checksum.
    pub fn finish(mut self) -> Result<(), SnapshotError> {
        io::copy(&mut self, &mut io::sink())
            .map_err(|e| SnapshotError::io("read", &self.path, e))?;
        if let Some(t) = self.crc_thread.take() {
            self.crc = t.join().map_err(|_| SnapshotError::Invalid {
                path: self.path.clone(),
                reason: "the thread checksumming the body failed".into(),
            })?;
        }
        if self.crc != self.want_crc {
            return Err(SnapshotError::Invalid {
                path: self.path.clone(),
                reason: format!(
                    "body checksum mismatch (stored {:#010x}, computed {:#010x})",
                    self.want_crc, self.crc
                ),
            });
        }
        Ok(())
    }
}

impl Read for SnapshotReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.buf_pos == self.buf.len() {
            if self.pos >= self.end {
                return Ok(0);
            }
            let n = ((self.end - self.pos) as usize).min(BUF_BYTES);
            self.buf.resize(n, 0);
            let got = read_up_to(self.file.as_ref(), &mut self.buf, self.pos)?;
            if got < n {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "snapshot shrank"));
            }
            self.pos += n as u64;
            self.crc = crc32c::crc32c_append(self.crc, &self.buf);
            self.buf_pos = 0;
        }
        let n = out.len().min(self.buf.len() - self.buf_pos);
        out[..n].copy_from_slice(&self.buf[self.buf_pos..self.buf_pos + n]);
        self.buf_pos += n;
        Ok(n)
    }
}
