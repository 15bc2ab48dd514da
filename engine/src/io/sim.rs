//! A simulated, fault-injecting disk for tests.
//!
//! Every file keeps a *base* image (its content at the last full sync) and the list of
//! mutations since then. A crash ([`SimVfs::crash_image`]) rebuilds each file from its base plus
//! some of those mutations — chosen by a seeded RNG: either a prefix, of which the last may be
//! torn, or any 4 KiB pages of them in no order (as a page cache writes dirty pages back) —
//! plus every write that was made durable by `RWF_DSYNC`/`O_DSYNC` on the way. Directory
//! entries (creations, removals, renames) survive a crash only if their directory was synced.
//!
//! Faults: crash after the Nth mutating operation (every later operation fails with EIO, as a
//! dead machine would never complete it), fail the Nth write or the Nth sync with a chosen errno
//! (EIO, ENOSPC), and flip a bit of a file's content. A failed sync behaves as on Linux: the
//! file's unsynced writes are gone (the kernel marked their pages clean), and a retry succeeds
//! without them.
//!
//! Writes through a [`super::WriteQueue`] (`SimVfs::write_queue`) are *in flight* until
//! reaped: invisible to reads and to syncs, completed in a seeded random order (each
//! completion a mutating operation, so a crash can fall between two), and at a crash each
//! lands not at all, whole, torn at a byte or as any of its 512-byte sectors.
//!
//! Writes to files opened with `direct` must be aligned to [`DIRECT_ALIGN`] in buffer address,
//! offset and length, as on a real device; misaligned ones fail with EINVAL so that alignment
//! bugs show up in tests.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::queue::{Completion, WriteQueue};
use super::{AlignedBuf, OpenOptions, VFile, Vfs, DIRECT_ALIGN};

/// A mutation made since the file's last full sync.
#[derive(Debug, Clone)]
enum Mutation {
    Write { offset: u64, data: Vec<u8>, durable: bool },
    SetLen { len: u64 },
}

/// A queued write not yet completed.
#[derive(Debug, Clone)]
struct InFlight {
    id: u64,
    offset: u64,
    data: Vec<u8>,
}

#[derive(Debug, Clone, Default)]
struct Inode {
    live: Vec<u8>,
    base: Vec<u8>,
    pending: Vec<Mutation>,
    inflight: Vec<InFlight>,
}

impl Inode {
    fn apply(buf: &mut Vec<u8>, m: &Mutation, torn_len: Option<usize>) {
        match m {
            Mutation::Write { offset, data, .. } => {
                let n = torn_len.unwrap_or(data.len()).min(data.len());
                let off = *offset as usize;
                if buf.len() < off + n {
                    buf.resize(off + n, 0);
                }
                buf[off..off + n].copy_from_slice(&data[..n]);
            }
            Mutation::SetLen { len } => buf.resize(*len as usize, 0),
        }
    }

    /// Applies each 4 KiB page of a write (pages aligned to the file) with probability 1/2;
    /// a length change always.
    fn apply_some_pages(buf: &mut Vec<u8>, m: &Mutation, rng: &mut ChaCha8Rng) {
        const PAGE: u64 = 4096;
        match m {
            Mutation::Write { offset, data, .. } => {
                let end = offset + data.len() as u64;
                let mut at = *offset;
                while at < end {
                    let page_end = ((at / PAGE) + 1) * PAGE;
                    let chunk_end = page_end.min(end);
                    if rng.random_bool(0.5) {
                        let (from, to) = ((at - offset) as usize, (chunk_end - offset) as usize);
                        let part = Mutation::Write {
                            offset: at,
                            data: data[from..to].to_vec(),
                            durable: false,
                        };
                        Inode::apply(buf, &part, None);
                    }
                    at = chunk_end;
                }
            }
            Mutation::SetLen { .. } => Inode::apply(buf, m, None),
        }
    }

    fn sync(&mut self) {
        self.base = self.live.clone();
        self.pending.clear();
    }

    /// A failed fsync, with Linux's semantics: the unsynced writes are dropped (their pages
    /// are marked clean and gone), so a later fsync succeeds without them.
    fn drop_unsynced(&mut self) {
        // Writes made durable on their way (RWF_DSYNC / O_DSYNC) stay.
        for m in std::mem::take(&mut self.pending) {
            if matches!(m, Mutation::Write { durable: true, .. }) {
                Inode::apply(&mut self.base, &m, None);
            }
        }
        self.live = self.base.clone();
    }
}

/// Which fault to inject, counted over the whole simulated disk.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Crash when this many mutating operations have completed: that operation and every later
    /// one fail with EIO (the crashing operation may still leave a torn write behind).
    pub crash_after_ops: Option<u64>,
    /// Fail the Nth write (1-based, counting all writes) with this errno; nothing is written.
    pub fail_write: Option<(u64, i32)>,
    /// Fail the Nth sync (1-based, counting file syncs and dsync writes) with this errno.
    pub fail_sync: Option<(u64, i32)>,
    /// Seeds the order in which queued writes complete.
    pub reorder_seed: u64,
}

#[derive(Debug, Default)]
struct State {
    inodes: HashMap<u64, Inode>,
    next_inode: u64,
    live: BTreeMap<PathBuf, u64>,
    durable: BTreeMap<PathBuf, u64>,
    /// Directories made with `create_dir_all`, and those whose entry in their parent is durable
    /// (the parent was synced since). Files under a directory that is not durable are lost in
    /// a crash. (Directories never created explicitly are implicit and always there.)
    live_dirs: BTreeSet<PathBuf>,
    durable_dirs: BTreeSet<PathBuf>,
    faults: Faults,
    /// Completion order of queued writes (from `faults.reorder_seed`).
    reorder: Option<ChaCha8Rng>,
    next_flight: u64,
    mutations: u64,
    writes: u64,
    syncs: u64,
    crashed: bool,
}

/// Counters of what the simulated disk has seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Mutating operations (writes, syncs, allocations, truncations, renames, removals).
    pub mutations: u64,
    /// Writes.
    pub writes: u64,
    /// Syncs (fsync, fdatasync, dsync writes).
    pub syncs: u64,
    /// True once the simulated machine has crashed.
    pub crashed: bool,
}

/// The simulated disk. Cloning gives another handle to the same disk.
#[derive(Debug, Clone, Default)]
pub struct SimVfs {
    state: Arc<Mutex<State>>,
}

fn eio() -> io::Error {
    io::Error::from_raw_os_error(libc::EIO)
}

impl SimVfs {
    /// An empty disk.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the fault plan. Counters keep running; plan in absolute counts (see
    /// [`SimVfs::stats`]).
    pub fn set_faults(&self, faults: Faults) {
        let mut s = self.lock();
        s.faults = faults;
        s.reorder = None;
    }

    /// What the disk has seen so far.
    pub fn stats(&self) -> SimStats {
        let s = self.lock();
        SimStats { mutations: s.mutations, writes: s.writes, syncs: s.syncs, crashed: s.crashed }
    }

    /// Crashes the machine now: every later operation fails with EIO.
    pub fn crash(&self) {
        self.lock().crashed = true;
    }

    /// The disk as a reboot after a crash (now, or the crash that already happened) would find
    /// it: directory entries as of their last directory sync; each file's synced content plus a
    /// seed-chosen prefix of its later writes, the last of which may be torn at any byte.
    pub fn crash_image(&self, seed: u64) -> SimVfs {
        self.image(seed, false)
    }

    /// The disk as it is durably now: directory entries as of their last directory sync, each
    /// file's synced content and nothing written after it (the worst a crash now could leave).
    pub fn durable_image(&self) -> SimVfs {
        self.image(0, true)
    }

    fn image(&self, seed: u64, durable_only: bool) -> SimVfs {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let s = self.lock();
        let mut out = State::default();
        let mut rebuilt: HashMap<u64, u64> = HashMap::new();
        let lost_dir = |path: &Path| {
            path.ancestors().skip(1).any(|d| s.live_dirs.contains(d) && !s.durable_dirs.contains(d))
        };
        // A directory survives only if it and every created ancestor are durable.
        out.live_dirs = s.durable_dirs.iter().filter(|d| !lost_dir(d)).cloned().collect();
        out.durable_dirs = out.live_dirs.clone();
        for (path, ino) in &s.durable {
            if lost_dir(path) {
                continue;
            }
            let new_ino = *rebuilt.entry(*ino).or_insert_with(|| {
                let inode = &s.inodes[ino];
                let mut img = inode.base.clone();
                let volatile = inode
                    .pending
                    .iter()
                    .filter(|m| !matches!(m, Mutation::Write { durable: true, .. }))
                    .count();
                // Half the images lose a suffix of the unsynced writes (the first lost one
                // possibly torn); the other half lose any 4 KiB pages of them, in no order, as
                // a page cache writing back dirty pages may.
                let by_page = rng.random_bool(0.5);
                let keep = rng.random_range(0..=volatile);
                let mut seen = 0;
                for m in &inode.pending {
                    let durable = matches!(m, Mutation::Write { durable: true, .. });
                    if durable {
                        Inode::apply(&mut img, m, None);
                    } else if durable_only {
                        // Not synced: not on the disk yet.
                    } else if by_page {
                        Inode::apply_some_pages(&mut img, m, &mut rng);
                    } else if seen < keep {
                        Inode::apply(&mut img, m, None);
                    } else if seen == keep {
                        // The first write that did not fully reach the disk may be torn.
                        if let Mutation::Write { data, .. } = m {
                            let torn = rng.random_range(0..=data.len());
                            Inode::apply(&mut img, m, Some(torn));
                        }
                    }
                    if !durable {
                        seen += 1;
                    }
                }
                // Writes still in flight: each lands not at all, whole, torn at a byte, or as
                // any of its 512-byte sectors.
                for w in inode.inflight.iter().filter(|_| !durable_only) {
                    let m =
                        Mutation::Write { offset: w.offset, data: w.data.clone(), durable: false };
                    match rng.random_range(0..4) {
                        0 => {}
                        1 => Inode::apply(&mut img, &m, None),
                        2 => Inode::apply(&mut img, &m, Some(rng.random_range(0..=w.data.len()))),
                        _ => {
                            for (i, sector) in w.data.chunks(512).enumerate() {
                                if rng.random_bool(0.5) {
                                    let part = Mutation::Write {
                                        offset: w.offset + (i * 512) as u64,
                                        data: sector.to_vec(),
                                        durable: false,
                                    };
                                    Inode::apply(&mut img, &part, None);
                                }
                            }
                        }
                    }
                }
                let id = out.next_inode;
                out.next_inode += 1;
                out.inodes.insert(
                    id,
                    Inode {
                        live: img.clone(),
                        base: img,
                        pending: Vec::new(),
                        inflight: Vec::new(),
                    },
                );
                id
            });
            out.live.insert(path.clone(), new_ino);
            out.durable.insert(path.clone(), new_ino);
        }
        SimVfs { state: Arc::new(Mutex::new(out)) }
    }

    /// Flips one bit of a file's content (live and synced images alike): media corruption.
    pub fn flip_bit(&self, path: &Path, offset: u64, bit: u8) -> io::Result<()> {
        let mut s = self.lock();
        let ino = *s.live.get(path).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        let inode = s.inodes.get_mut(&ino).expect("inode");
        let off = offset as usize;
        if off >= inode.live.len() {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        inode.live[off] ^= 1 << (bit % 8);
        if off < inode.base.len() {
            inode.base[off] ^= 1 << (bit % 8);
        }
        for m in &mut inode.pending {
            if let Mutation::Write { offset: w, data, .. } = m {
                if (*w as usize) <= off && off < *w as usize + data.len() {
                    data[off - *w as usize] ^= 1 << (bit % 8);
                }
            }
        }
        Ok(())
    }

    /// A file's current (live) content, for tests.
    pub fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        let s = self.lock();
        let ino = s.live.get(path).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        Ok(s.inodes[ino].live.clone())
    }

    /// Overwrites part of a file's content in place (live and synced images), for tests that
    /// plant garbage.
    pub fn poke(&self, path: &Path, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let mut s = self.lock();
        let ino = *s.live.get(path).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        let inode = s.inodes.get_mut(&ino).expect("inode");
        let m = Mutation::Write { offset, data: bytes.to_vec(), durable: true };
        Inode::apply(&mut inode.live, &m, None);
        Inode::apply(&mut inode.base, &m, None);
        Ok(())
    }
}

impl State {
    /// Counts a mutating operation and applies the crash plan. `Err` if the machine is already
    /// dead; `Ok(true)` if it dies during this operation (which then fails, though a write may
    /// still leave a torn copy behind).
    fn mutation(&mut self) -> io::Result<bool> {
        if self.crashed {
            return Err(eio());
        }
        self.mutations += 1;
        if let Some(n) = self.faults.crash_after_ops {
            if self.mutations >= n {
                self.crashed = true;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// A mutating operation that has no effect if the machine dies during it.
    fn plain_mutation(&mut self) -> io::Result<()> {
        if self.mutation()? {
            return Err(eio());
        }
        Ok(())
    }

    fn check_alive(&self) -> io::Result<()> {
        if self.crashed {
            Err(eio())
        } else {
            Ok(())
        }
    }

    fn count_write(&mut self) -> io::Result<()> {
        self.writes += 1;
        if let Some((n, errno)) = self.faults.fail_write {
            if self.writes == n {
                return Err(io::Error::from_raw_os_error(errno));
            }
        }
        Ok(())
    }

    fn count_sync(&mut self) -> io::Result<()> {
        self.syncs += 1;
        if let Some((n, errno)) = self.faults.fail_sync {
            if self.syncs == n {
                return Err(io::Error::from_raw_os_error(errno));
            }
        }
        Ok(())
    }
}

impl Vfs for SimVfs {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.check_alive()?;
        let mut missing: Vec<PathBuf> = dir
            .ancestors()
            .filter(|d| d.parent().is_some() && !d.as_os_str().is_empty())
            .filter(|d| !s.live_dirs.contains(*d))
            .map(Path::to_path_buf)
            .collect();
        missing.reverse();
        for d in missing {
            s.plain_mutation()?;
            s.live_dirs.insert(d);
        }
        Ok(())
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let s = self.lock();
        s.check_alive()?;
        Ok(s.live
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_owned))
            .collect())
    }

    fn open(&self, path: &Path, opts: OpenOptions) -> io::Result<Box<dyn VFile>> {
        let mut s = self.lock();
        s.check_alive()?;
        let ino = match s.live.get(path) {
            Some(_) if opts.create_new => {
                return Err(io::Error::from(io::ErrorKind::AlreadyExists));
            }
            Some(ino) => *ino,
            None if opts.create_new => {
                s.plain_mutation()?;
                let ino = s.next_inode;
                s.next_inode += 1;
                s.inodes.insert(ino, Inode::default());
                s.live.insert(path.to_path_buf(), ino);
                ino
            }
            None => return Err(io::Error::from(io::ErrorKind::NotFound)),
        };
        Ok(Box::new(SimFile { vfs: self.clone(), ino, opts }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.plain_mutation()?;
        s.live.remove(path).map(|_| ()).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.plain_mutation()?;
        let ino = s.live.remove(from).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        s.live.insert(to.to_path_buf(), ino);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.plain_mutation()?;
        s.count_sync()?;
        let State { live, durable, live_dirs, durable_dirs, .. } = &mut *s;
        durable.retain(|p, _| p.parent() != Some(dir));
        for (p, ino) in live.iter() {
            if p.parent() == Some(dir) {
                durable.insert(p.clone(), *ino);
            }
        }
        for d in live_dirs.iter() {
            if d.parent() == Some(dir) {
                durable_dirs.insert(d.clone());
            }
        }
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        let s = self.lock();
        s.live.contains_key(path) || s.live_dirs.contains(path)
    }

    fn write_queue(&self, depth: usize, _register: bool) -> Option<Box<dyn WriteQueue>> {
        let _ = depth;
        Some(Box::new(SimQueue {
            vfs: self.clone(),
            file: None,
            mine: Vec::new(),
            failed: Vec::new(),
        }))
    }
}

/// The simulated disk's [`WriteQueue`]: see the module's description.
#[derive(Debug)]
struct SimQueue {
    vfs: SimVfs,
    /// (inode, opened with O_DSYNC, opened with O_DIRECT).
    file: Option<(u64, bool, bool)>,
    /// In flight: (id, tag, buffer, length, dsync).
    mine: Vec<(u64, u64, AlignedBuf, usize, bool)>,
    /// Refused at submission (an injected write error), or syncs (done at submission),
    /// reported at the next reap.
    failed: Vec<Completion>,
}

impl Drop for SimQueue {
    /// A real queue's writes finish within milliseconds of being abandoned (the log failed):
    /// they complete here, in order, so that none lingers into a later crash image.
    fn drop(&mut self) {
        let Some((ino, ..)) = self.file else { return };
        let mut s = self.vfs.lock();
        if s.crashed {
            return;
        }
        for (id, _, _, _, dsync) in self.mine.drain(..) {
            let Some(inode) = s.inodes.get_mut(&ino) else { return };
            let Some(at) = inode.inflight.iter().position(|w| w.id == id) else { continue };
            let w = inode.inflight.remove(at);
            let m = Mutation::Write { offset: w.offset, data: w.data, durable: dsync };
            Inode::apply(&mut inode.live, &m, None);
            inode.pending.push(m);
        }
    }
}

impl WriteQueue for SimQueue {
    fn set_file(&mut self, path: &Path, opts: OpenOptions) -> io::Result<()> {
        assert!(self.mine.is_empty(), "set_file with writes in flight");
        if !opts.write {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        let s = self.vfs.lock();
        s.check_alive()?;
        let ino = *s.live.get(path).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        self.file = Some((ino, opts.dsync, opts.direct));
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
        let (ino, file_dsync, direct) = self.file.ok_or_else(|| io::Error::other("no file set"))?;
        let data = &buf.as_slice()[range.clone()];
        if direct
            && (!(data.as_ptr() as usize).is_multiple_of(DIRECT_ALIGN)
                || !data.len().is_multiple_of(DIRECT_ALIGN)
                || !offset.is_multiple_of(DIRECT_ALIGN as u64))
        {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let mut s = self.vfs.lock();
        let end = offset + data.len() as u64;
        for w in &s.inodes[&ino].inflight {
            assert!(
                end <= w.offset || w.offset + w.data.len() as u64 <= offset,
                "overlapping writes in flight: [{offset}, {end}) and [{}, +{})",
                w.offset,
                w.data.len()
            );
        }
        let dying = s.mutation()?;
        if !dying {
            if let Err(e) = s.count_write() {
                self.failed.push(Completion { tag, buf: Some(buf), result: Err(e) });
                return Ok(());
            }
        }
        let id = s.next_flight;
        s.next_flight += 1;
        let w = InFlight { id, offset, data: data.to_vec() };
        s.inodes.get_mut(&ino).expect("inode").inflight.push(w);
        if dying {
            // On its way when the machine died: it may land, or not, in the crash image.
            return Err(eio());
        }
        self.mine.push((id, tag, buf, range.len(), dsync || file_dsync));
        Ok(())
    }

    fn submit_sync(&mut self, tag: u64) -> io::Result<()> {
        let (ino, ..) = self.file.ok_or_else(|| io::Error::other("no file set"))?;
        let mut s = self.vfs.lock();
        // Done now, covering exactly the writes completed so far (in-flight ones are not in
        // the live image); its completion is reported at the next reap.
        s.plain_mutation()?;
        let result = match s.count_sync() {
            Ok(()) => {
                s.inodes.get_mut(&ino).expect("inode").sync();
                Ok(0)
            }
            Err(e) => {
                s.inodes.get_mut(&ino).expect("inode").drop_unsynced();
                Err(e)
            }
        };
        self.failed.push(Completion { tag, buf: None, result });
        Ok(())
    }

    fn reap(&mut self, min: usize, out: &mut Vec<Completion>) -> io::Result<()> {
        out.append(&mut self.failed);
        if self.mine.is_empty() {
            return Ok(());
        }
        let Some((ino, ..)) = self.file else { return Ok(()) };
        let mut s = self.vfs.lock();
        let seed = s.faults.reorder_seed;
        let n = self.mine.len();
        let k = {
            let rng = s.reorder.get_or_insert_with(|| ChaCha8Rng::seed_from_u64(seed));
            rng.random_range(min.min(n)..=n)
        };
        for _ in 0..k {
            let i = {
                let rng = s.reorder.as_mut().expect("seeded above");
                rng.random_range(0..self.mine.len())
            };
            if s.mutation()? {
                // The machine died with this one (and the rest) still in flight.
                return Err(eio());
            }
            let (id, tag, buf, len, dsync) = self.mine.swap_remove(i);
            let synced = if dsync { s.count_sync() } else { Ok(()) };
            let inode = s.inodes.get_mut(&ino).expect("inode");
            let at = inode.inflight.iter().position(|w| w.id == id).expect("in flight");
            let w = inode.inflight.remove(at);
            let m = Mutation::Write {
                offset: w.offset,
                data: w.data,
                durable: dsync && synced.is_ok(),
            };
            Inode::apply(&mut inode.live, &m, None);
            inode.pending.push(m);
            out.push(Completion { tag, buf: Some(buf), result: synced.map(|()| len) });
        }
        Ok(())
    }

    fn in_flight(&self) -> usize {
        self.mine.len() + self.failed.len()
    }
}

/// An open simulated file.
#[derive(Debug)]
struct SimFile {
    vfs: SimVfs,
    ino: u64,
    opts: OpenOptions,
}

impl SimFile {
    fn check_direct(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if self.opts.direct
            && (!(buf.as_ptr() as usize).is_multiple_of(DIRECT_ALIGN)
                || !buf.len().is_multiple_of(DIRECT_ALIGN)
                || !offset.is_multiple_of(DIRECT_ALIGN as u64))
        {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        Ok(())
    }

    fn write(&mut self, buf: &[u8], offset: u64, dsync: bool) -> io::Result<()> {
        if !self.opts.write {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        self.check_direct(buf, offset)?;
        let mut s = self.vfs.lock();
        let dying = s.mutation()?;
        let dsync = dsync || self.opts.dsync;
        if !dying {
            s.count_write()?;
            if dsync {
                s.count_sync()?;
            }
        }
        // A write under way when the machine dies may still land, torn: it is kept as pending
        // (never durable) and reported as failed.
        let m = Mutation::Write { offset, data: buf.to_vec(), durable: dsync && !dying };
        let inode = s.inodes.get_mut(&self.ino).expect("inode");
        Inode::apply(&mut inode.live, &m, None);
        inode.pending.push(m);
        if dying {
            return Err(eio());
        }
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        let mut s = self.vfs.lock();
        s.plain_mutation()?;
        if let Err(e) = s.count_sync() {
            s.inodes.get_mut(&self.ino).expect("inode").drop_unsynced();
            return Err(e);
        }
        s.inodes.get_mut(&self.ino).expect("inode").sync();
        Ok(())
    }
}

impl VFile for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let s = self.vfs.lock();
        s.check_alive()?;
        let live = &s.inodes[&self.ino].live;
        let off = offset as usize;
        if off >= live.len() {
            return Ok(0);
        }
        let n = buf.len().min(live.len() - off);
        buf[..n].copy_from_slice(&live[off..off + n]);
        Ok(n)
    }

    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.write(buf, offset, false)
    }

    fn write_all_at_dsync(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.write(buf, offset, true)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.sync()
    }

    fn sync_all(&mut self) -> io::Result<()> {
        self.sync()
    }

    fn allocate(&mut self, offset: u64, len: u64) -> io::Result<()> {
        let mut s = self.vfs.lock();
        s.plain_mutation()?;
        let inode = s.inodes.get_mut(&self.ino).expect("inode");
        let end = offset + len;
        if (inode.live.len() as u64) < end {
            let m = Mutation::SetLen { len: end };
            Inode::apply(&mut inode.live, &m, None);
            inode.pending.push(m);
        }
        Ok(())
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let mut s = self.vfs.lock();
        s.plain_mutation()?;
        let inode = s.inodes.get_mut(&self.ino).expect("inode");
        let m = Mutation::SetLen { len };
        Inode::apply(&mut inode.live, &m, None);
        inode.pending.push(m);
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        let s = self.vfs.lock();
        s.check_alive()?;
        Ok(s.inodes[&self.ino].live.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn unsynced_writes_and_unsynced_names_are_lost() {
        let vfs = SimVfs::new();
        let mut f = vfs.open(&p("/d/a"), OpenOptions::create_new()).unwrap();
        f.write_all_at(b"hello", 0).unwrap();
        f.sync_data().unwrap();
        // The name was never made durable: after a crash the file is gone.
        assert!(!vfs.crash_image(1).exists(&p("/d/a")));
        vfs.sync_dir(&p("/d")).unwrap();
        f.write_all_at(b"world", 5).unwrap();
        let mut seen_full = false;
        let mut seen_base = false;
        for seed in 0..64 {
            let img = vfs.crash_image(seed);
            let data = img.read_file(&p("/d/a")).unwrap();
            assert!(data.starts_with(b"hello"), "synced bytes survive");
            assert!(b"helloworld".starts_with(&data), "only a prefix of the unsynced write");
            seen_full |= data == b"helloworld";
            seen_base |= data == b"hello";
        }
        assert!(seen_full && seen_base, "the crash point varies with the seed");
    }

    #[test]
    fn the_durable_image_holds_only_what_was_synced() {
        let vfs = SimVfs::new();
        let mut f = vfs.open(&p("/d/a"), OpenOptions::create_new()).unwrap();
        f.write_all_at(b"hello", 0).unwrap();
        f.sync_data().unwrap();
        assert!(!vfs.durable_image().exists(&p("/d/a")), "its name was never synced");
        vfs.sync_dir(&p("/d")).unwrap();
        f.write_all_at(b"world", 5).unwrap();
        let mut g = vfs.open(&p("/d/b"), OpenOptions::create_new()).unwrap();
        g.write_all_at_dsync(b"BB", 0).unwrap();
        let img = vfs.durable_image();
        assert_eq!(img.read_file(&p("/d/a")).unwrap(), b"hello", "the unsynced write is not there");
        assert!(!img.exists(&p("/d/b")), "a new name needs its directory synced");
        vfs.sync_dir(&p("/d")).unwrap();
        assert_eq!(vfs.durable_image().read_file(&p("/d/b")).unwrap(), b"BB", "O_DSYNC data is");
        f.sync_data().unwrap();
        assert_eq!(vfs.durable_image().read_file(&p("/d/a")).unwrap(), b"helloworld");
    }

    #[test]
    fn dsync_writes_survive_and_keep_order() {
        let vfs = SimVfs::new();
        let mut f = vfs.open(&p("/d/a"), OpenOptions::create_new()).unwrap();
        vfs.sync_dir(&p("/d")).unwrap();
        f.write_all_at(b"AAAA", 0).unwrap();
        f.write_all_at_dsync(b"BB", 0).unwrap();
        for seed in 0..32 {
            let data = vfs.crash_image(seed).read_file(&p("/d/a")).unwrap();
            assert_eq!(&data[..2], b"BB");
        }
    }

    #[test]
    fn crash_after_ops_fails_everything_later() {
        let vfs = SimVfs::new();
        let mut f = vfs.open(&p("/d/a"), OpenOptions::create_new()).unwrap();
        let n = vfs.stats().mutations;
        vfs.set_faults(Faults { crash_after_ops: Some(n + 2), ..Faults::default() });
        f.write_all_at(b"x", 0).unwrap();
        assert!(f.sync_data().is_err(), "the crashing op fails");
        assert!(f.write_all_at(b"y", 1).is_err());
        assert!(vfs.stats().crashed);
    }

    #[test]
    fn injected_errors_and_bit_flips() {
        let vfs = SimVfs::new();
        vfs.set_faults(Faults { fail_write: Some((2, libc::ENOSPC)), ..Faults::default() });
        let mut f = vfs.open(&p("/d/a"), OpenOptions::create_new()).unwrap();
        f.write_all_at(b"abc", 0).unwrap();
        let e = f.write_all_at(b"def", 3).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        vfs.flip_bit(&p("/d/a"), 1, 0).unwrap();
        assert_eq!(vfs.read_file(&p("/d/a")).unwrap(), b"acc");
    }

    #[test]
    fn direct_writes_must_be_aligned() {
        let vfs = SimVfs::new();
        let opts = OpenOptions { direct: true, ..OpenOptions::create_new() };
        let mut f = vfs.open(&p("/d/a"), opts).unwrap();
        let e = f.write_all_at(&[0u8; 100], 0).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
        let mut buf = super::super::AlignedBuf::with_capacity(4096);
        buf.extend_zeros(4096);
        f.write_all_at(buf.as_slice(), 4096).unwrap();
        assert_eq!(f.len().unwrap(), 8192);
    }

    #[test]
    fn a_failed_sync_drops_the_unsynced_writes_and_a_retry_succeeds() {
        let vfs = SimVfs::new();
        let mut f = vfs.open(&p("/d/a"), OpenOptions::create_new()).unwrap();
        f.write_all_at(b"abc", 0).unwrap();
        f.sync_data().unwrap();
        vfs.sync_dir(&p("/d")).unwrap();
        f.write_all_at_dsync(b"D", 3).unwrap();
        f.write_all_at(b"XY", 1).unwrap();
        let n = vfs.stats().syncs + 1;
        vfs.set_faults(Faults { fail_sync: Some((n, libc::EIO)), ..Faults::default() });
        assert_eq!(f.sync_data().unwrap_err().raw_os_error(), Some(libc::EIO));
        // The pages of the failed writeback are gone (the O_DSYNC write was durable already);
        // the retry succeeds without them.
        assert_eq!(vfs.read_file(&p("/d/a")).unwrap(), b"abcD");
        f.sync_data().unwrap();
        vfs.crash();
        assert_eq!(vfs.crash_image(3).read_file(&p("/d/a")).unwrap(), b"abcD");
    }

    #[test]
    fn crash_images_lose_unsynced_pages_in_any_order() {
        // Two unsynced pages: over many seeds, every combination of them survives.
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..200 {
            let vfs = SimVfs::new();
            let mut f = vfs.open(&p("/d/a"), OpenOptions::create_new()).unwrap();
            f.write_all_at(&[0u8; 8192], 0).unwrap();
            f.sync_data().unwrap();
            f.write_all_at(&[1u8; 8192], 0).unwrap();
            vfs.sync_dir(&p("/d")).unwrap();
            vfs.crash();
            let img = vfs.crash_image(seed).read_file(&p("/d/a")).unwrap();
            seen.insert((img[0], img[4096]));
        }
        assert!(seen.contains(&(0, 1)), "the second page alone survived in some image: {seen:?}");
        assert!(seen.contains(&(1, 0)) && seen.contains(&(0, 0)) && seen.contains(&(1, 1)));
    }

    #[test]
    fn a_new_directory_survives_only_once_its_parent_is_synced() {
        let write = |vfs: &SimVfs, durable_dirs: bool| {
            if durable_dirs {
                crate::io::create_dir_durable(vfs, &p("/a/b")).unwrap();
            } else {
                vfs.create_dir_all(&p("/a/b")).unwrap();
            }
            assert!(vfs.exists(&p("/a/b")));
            let mut f = vfs.open(&p("/a/b/f"), OpenOptions::create_new()).unwrap();
            f.write_all_at(b"x", 0).unwrap();
            f.sync_all().unwrap();
            vfs.sync_dir(&p("/a/b")).unwrap();
            vfs.crash();
        };
        let vfs = SimVfs::new();
        write(&vfs, false);
        let img = vfs.crash_image(1);
        assert!(!img.exists(&p("/a/b/f")), "the file's directory entry was never made durable");
        assert!(!img.exists(&p("/a/b")));
        let vfs = SimVfs::new();
        write(&vfs, true);
        let img = vfs.crash_image(1);
        assert_eq!(img.read_file(&p("/a/b/f")).unwrap(), b"x");
        assert!(img.exists(&p("/a")) && img.exists(&p("/a/b")));
    }
}
