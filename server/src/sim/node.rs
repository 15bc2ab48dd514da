//! One simulated server's runtime: its disk (the engine's [`SimVfs`]), its storage on that
//! disk (epoch files, a snapshot per generation, the engine's `LogCore` per generation), and
//! the applied DataTree. The `zab` peer itself is driven by the simulator.
//!
//! Layout on the disk: `/z/acceptedEpoch`, `/z/currentEpoch` (decimal text, written to a
//! temporary file, fsynced, renamed, directory fsynced); `/z/snap.<gen>` (a ZooKeeper snapshot
//! file, written the same way) and `/z/log.<gen>/` (the log of the txns after that snapshot).
//! Installing a SNAP writes generation `gen + 1`: its snapshot's rename is the atomic switch,
//! so a crash leaves either the old state or the new one. Recovery takes the newest snapshot
//! and its generation's log, and replays the whole log into the tree (as ZooKeeper does).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use corral_engine::io::{OpenOptions, SimVfs, Vfs};
use corral_engine::log::{FlushStrategy, LogCore, LogOptions, Prealloc};

use crate::proto::{Jute, Reader, Txn, TxnEntry, DEFAULT_MAX_LEN};
use crate::tree::zk_snapshot::{read_body, read_snapshot, write_body, write_snapshot, Trailer};
use crate::tree::{DataTree, TreeOptions};
use crate::zab::{HistoryWindow, PeerState, Zxid};

/// Why a disk operation stopped the node: the simulated machine crashed under it.
#[derive(Debug)]
pub struct DiskFailed(pub String);

fn err<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> DiskFailed + '_ {
    move |e| DiskFailed(format!("{what}: {e}"))
}

/// A node's durable storage and applied state.
#[derive(Debug)]
pub struct Store {
    pub disk: SimVfs,
    gen: u64,
    log: LogCore,
    strategy: FlushStrategy,
    /// The zxid of this generation's snapshot.
    pub snapshot_zxid: Zxid,
    snapshot_tree: DataTree,
    snapshot_sessions: Sessions,
    /// Every txn after the snapshot: durable or waiting for a flush.
    pub entries: BTreeMap<Zxid, Bytes>,
    /// Appended but not yet written to the log.
    pending: Vec<(Zxid, Bytes)>,
    /// The last zxid the log has made durable.
    pub durable: Zxid,
    /// The applied state and the zxid it is at.
    pub tree: DataTree,
    /// The global sessions of the applied state (id → timeout in ms).
    pub sessions: Sessions,
    pub applied: Zxid,
    pub accepted_epoch: u32,
    pub current_epoch: u32,
}

const ROOT: &str = "/z";

/// Global sessions: id → timeout (ms).
pub type Sessions = BTreeMap<i64, i32>;

fn log_options(disk: &SimVfs, strategy: FlushStrategy) -> LogOptions {
    LogOptions {
        strategy,
        vfs: Some(Arc::new(disk.clone())),
        prealloc: Prealloc::ZeroFill,
        prealloc_in_background: false,
        prealloc_bytes: 64 << 10,
        segment_bytes_max: 1 << 20,
        record_bytes_max: 128 << 10,
        batch_bytes_max: 256 << 10,
        batch_records_max: 1024,
        writer_spin_us: 0,
        ..LogOptions::default()
    }
}

fn log_dir(gen: u64) -> PathBuf {
    Path::new(ROOT).join(format!("log.{gen}"))
}

fn snap_path(gen: u64) -> PathBuf {
    Path::new(ROOT).join(format!("snap.{gen}"))
}

/// Applies one logged entry to a tree and the session table.
pub fn apply_entry(
    tree: &mut DataTree,
    sessions: &mut Sessions,
    data: &[u8],
) -> Option<(TxnEntry, bool)> {
    let e = TxnEntry::decode(data, DEFAULT_MAX_LEN).ok()?;
    let outcome = tree.apply(&e.header, &e.txn);
    let ok = outcome.result.is_ok();
    match &e.txn {
        Txn::CreateSession(t) => {
            sessions.insert(e.header.client_id, t.time_out);
        }
        Txn::CloseSession(_) => {
            sessions.remove(&e.header.client_id);
        }
        _ => {}
    }
    Some((e, ok))
}

fn session_list(s: &Sessions) -> Vec<(i64, i32)> {
    s.iter().map(|(k, v)| (*k, *v)).collect()
}

fn read_all(disk: &SimVfs, path: &Path) -> Result<Vec<u8>, DiskFailed> {
    let f = disk.open(path, OpenOptions::read()).map_err(err("open"))?;
    let len = f.len().map_err(err("len"))? as usize;
    let mut buf = vec![0u8; len];
    corral_engine::io::read_exact_at(f.as_ref(), &mut buf, 0).map_err(err("read"))?;
    Ok(buf)
}

/// Writes a file atomically and durably: temporary name, fsync, rename, directory fsync.
fn write_atomic(disk: &SimVfs, path: &Path, bytes: &[u8]) -> Result<(), DiskFailed> {
    let tmp = path.with_extension("tmp");
    if disk.exists(&tmp) {
        disk.remove_file(&tmp).map_err(err("remove"))?;
    }
    let mut f = disk.open(&tmp, OpenOptions::create_new()).map_err(err("create"))?;
    f.write_all_at(bytes, 0).map_err(err("write"))?;
    f.sync_all().map_err(err("fsync"))?;
    drop(f);
    disk.rename(&tmp, path).map_err(err("rename"))?;
    disk.sync_dir(Path::new(ROOT)).map_err(err("fsync dir"))?;
    Ok(())
}

fn read_epoch(disk: &SimVfs, name: &str) -> Result<u32, DiskFailed> {
    let p = Path::new(ROOT).join(name);
    if !disk.exists(&p) {
        return Ok(0);
    }
    let b = read_all(disk, &p)?;
    std::str::from_utf8(&b)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| DiskFailed(format!("{name}: unreadable epoch file")))
}

impl Store {
    /// A fresh node: empty disk, generation 0.
    pub fn create(disk: SimVfs, strategy: FlushStrategy) -> Result<Store, DiskFailed> {
        Store::open(disk, strategy)
    }

    /// Recovers from what the disk holds.
    pub fn open(disk: SimVfs, strategy: FlushStrategy) -> Result<Store, DiskFailed> {
        let accepted_epoch = read_epoch(&disk, "acceptedEpoch")?;
        let current_epoch = read_epoch(&disk, "currentEpoch")?;
        let mut gens: Vec<u64> = disk
            .list_dir(Path::new(ROOT))
            .map_err(err("list"))?
            .iter()
            .filter_map(|n| n.strip_prefix("snap.").and_then(|g| g.parse().ok()))
            .collect();
        gens.sort_unstable();
        let (gen, snapshot_zxid, snapshot_tree, snapshot_sessions) = match gens.last() {
            None => (0, 0, DataTree::default(), Sessions::new()),
            Some(&g) => {
                let bytes = read_all(&disk, &snap_path(g))?;
                let snap = read_snapshot(&bytes, TreeOptions::default(), None)
                    .map_err(|e| DiskFailed(format!("snapshot {g} unreadable: {e}")))?;
                let zxid = snap.tree.last_processed_zxid() as u64;
                (g, zxid, snap.tree, snap.sessions.into_iter().collect())
            }
        };
        let (log, _) =
            LogCore::open(&log_dir(gen), log_options(&disk, strategy)).map_err(err("open log"))?;
        let mut entries = BTreeMap::new();
        for r in log.iter_from(0) {
            let r = r.map_err(err("read log"))?;
            entries.insert(r.zxid, Bytes::from(r.payload));
        }
        let mut tree = snapshot_tree.clone();
        let mut sessions = snapshot_sessions.clone();
        let mut applied = snapshot_zxid;
        for (z, d) in &entries {
            apply_entry(&mut tree, &mut sessions, d);
            applied = *z;
        }
        let durable = applied;
        Ok(Store {
            disk,
            gen,
            log,
            strategy,
            snapshot_zxid,
            snapshot_tree,
            snapshot_sessions,
            entries,
            pending: Vec::new(),
            durable,
            tree,
            sessions,
            applied,
            accepted_epoch,
            current_epoch,
        })
    }

    /// The state the zab peer starts from.
    pub fn peer_state(&self, window: usize) -> PeerState {
        let skip = self.entries.len().saturating_sub(window);
        let base = if skip == 0 {
            self.snapshot_zxid
        } else {
            *self.entries.keys().nth(skip - 1).expect("in range")
        };
        let mut history = HistoryWindow::new(base, window);
        for (z, d) in self.entries.iter().skip(skip) {
            history.push(*z, d.clone());
        }
        PeerState {
            accepted_epoch: self.accepted_epoch,
            current_epoch: self.current_epoch,
            history,
            snapshot_zxid: self.snapshot_zxid,
        }
    }

    /// The last zxid of the history (snapshot or log).
    pub fn last_zxid(&self) -> Zxid {
        self.entries.keys().next_back().copied().unwrap_or(self.snapshot_zxid)
    }

    /// The zxid before `zxid` in this history.
    pub fn prev_of(&self, zxid: Zxid) -> Zxid {
        self.entries.range(..zxid).next_back().map_or(self.snapshot_zxid, |e| *e.0)
    }

    pub fn persist_epoch(&mut self, name: &str, epoch: u32) -> Result<(), DiskFailed> {
        write_atomic(&self.disk, &Path::new(ROOT).join(name), epoch.to_string().as_bytes())?;
        match name {
            "acceptedEpoch" => self.accepted_epoch = epoch,
            _ => self.current_epoch = epoch,
        }
        Ok(())
    }

    pub fn append(&mut self, txns: Vec<(Zxid, Bytes)>) {
        for (z, d) in txns {
            assert!(z > self.last_zxid(), "append {z:#x} after {:#x}", self.last_zxid());
            self.entries.insert(z, d.clone());
            self.pending.push((z, d));
        }
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Writes every pending txn to the log (one batch, made durable). Returns the new durable
    /// point when there was anything to write.
    pub fn flush(&mut self) -> Result<Option<Zxid>, DiskFailed> {
        if self.pending.is_empty() {
            return Ok(None);
        }
        let batch: Vec<(u64, &[u8])> = self.pending.iter().map(|(z, d)| (*z, d.as_ref())).collect();
        self.log.write_batch(&batch, |_| {}).map_err(err("log write"))?;
        let last = self.pending.last().expect("non-empty").0;
        self.pending.clear();
        self.durable = last;
        Ok(Some(last))
    }

    /// TRUNC: the log keeps the txns up to `zxid`; the tree is rebuilt from the snapshot and
    /// what remains.
    pub fn truncate(&mut self, zxid: Zxid) -> Result<(), DiskFailed> {
        assert!(zxid >= self.snapshot_zxid, "truncate below the snapshot");
        self.flush()?;
        self.log.truncate_after(zxid).map_err(err("truncate"))?;
        self.entries.retain(|z, _| *z <= zxid);
        self.durable = self.durable.min(self.last_zxid());
        self.rebuild_tree();
        Ok(())
    }

    fn rebuild_tree(&mut self) {
        let mut tree = self.snapshot_tree.clone();
        let mut sessions = self.snapshot_sessions.clone();
        let mut applied = self.snapshot_zxid;
        for (z, d) in &self.entries {
            apply_entry(&mut tree, &mut sessions, d);
            applied = *z;
        }
        self.tree = tree;
        self.sessions = sessions;
        self.applied = applied;
    }

    /// SNAP: a new generation holding this state and an empty log.
    pub fn install(&mut self, zxid: Zxid, body: Option<&[u8]>) -> Result<(), DiskFailed> {
        let (tree, sessions) = match body {
            None => (DataTree::default(), Sessions::new()),
            Some(b) => {
                let (sessions, builder) = read_body(&mut Reader::new(b), TreeOptions::default())
                    .map_err(|e| DiskFailed(format!("bad SNAP body: {e}")))?;
                let tree = builder
                    .finish(zxid as i64)
                    .map_err(|e| DiskFailed(format!("bad SNAP body: {e}")))?;
                (tree, sessions.into_iter().collect())
            }
        };
        // Superseded, never acknowledged: dropped.
        self.pending.clear();
        let gen = self.gen + 1;
        let mut file = Vec::new();
        write_snapshot(&mut file, &tree, &session_list(&sessions), Trailer::default())
            .map_err(err("serialize"))?;
        let (log, _) = LogCore::open(&log_dir(gen), log_options(&self.disk, self.strategy))
            .map_err(err("open log"))?;
        write_atomic(&self.disk, &snap_path(gen), &file)?;
        self.gen = gen;
        self.log = log;
        self.snapshot_zxid = zxid;
        self.snapshot_tree = tree.clone();
        self.snapshot_sessions = sessions.clone();
        self.entries.clear();
        self.durable = zxid;
        self.tree = tree;
        self.sessions = sessions;
        self.applied = zxid;
        Ok(())
    }

    /// The SNAP payload body for the state at `zxid` (applies up to it first).
    pub fn snapshot_body(&mut self, zxid: Zxid) -> Bytes {
        self.apply_to(zxid);
        assert_eq!(self.applied, zxid, "SNAP must be taken exactly at the sync point");
        let mut body = Vec::new();
        write_body(&mut body, &self.tree, &session_list(&self.sessions)).expect("in-memory write");
        Bytes::from(body)
    }

    /// Applies the history up to `zxid`; returns what was applied: (zxid, entry, ok, digest).
    pub fn apply_to(&mut self, zxid: Zxid) -> Vec<(Zxid, TxnEntry, bool, i64)> {
        let mut done = Vec::new();
        if zxid <= self.applied {
            return done;
        }
        let todo: Vec<(Zxid, Bytes)> =
            self.entries.range(self.applied + 1..=zxid).map(|(z, d)| (*z, d.clone())).collect();
        for (z, d) in todo {
            if let Some((e, ok)) = apply_entry(&mut self.tree, &mut self.sessions, &d) {
                done.push((z, e, ok, self.tree.digest()));
            }
            self.applied = z;
        }
        done
    }

    /// The tree and sessions with every txn of the history applied (the leader's base for
    /// preparing).
    pub fn speculative_state(&self) -> (DataTree, Sessions) {
        let mut t = self.tree.clone();
        let mut s = self.sessions.clone();
        for (_, d) in self.entries.range(self.applied + 1..) {
            apply_entry(&mut t, &mut s, d);
        }
        (t, s)
    }

    /// Encodes a jute record (helper for requests).
    pub fn encode<T: Jute>(v: &T) -> Bytes {
        Bytes::from(v.encode())
    }
}
