//! The server's durable state (ZooKeeper's ZKDatabase): a [`State`] — the DataTree and the
//! session table — kept durable by corral-engine's transaction log and snapshots.
//!
//! * Log records are ZooKeeper txn entries, byte for byte as ZooKeeper logs them (TxnHeader,
//!   the txn record, the TxnDigest), in Corral's segment files.
//! * Snapshot bodies are ZooKeeper's snapshot body (sessions, ACL cache, nodes) inside Corral's
//!   snapshot container (header and CRC-32C trailer). They are point-in-time: taken from an
//!   O(1) copy-on-write clone at one zxid and written on the engine's snapshot thread.
//! * Recovery: the newest valid snapshot, then the log from its zxid + 1.
//!
//! * The storage port a replica needs: appends with a durable callback (group commit), the
//!   acceptedEpoch / currentEpoch files (written durably before they are acted on), truncation
//!   after a zxid with the state rebuilt (TRUNC), atomic installation of a received snapshot
//!   body (SNAP), and the history a peer restarts from ([`Database::history`]).
//!
//! Files live under `<dataDir>/corral-v1/` (`snap/`, `acceptedEpoch`, `currentEpoch`,
//! `session-secret`) and `<dataLogDir>/corral-v1/log`, apart from any Apache ZooKeeper files in
//! `<dataDir>/version-2`. This module owns no sockets and no clocks.

mod received;
mod txn_log;

pub use received::{ReceiveError, Received, ReceivedSnapshot, SnapReceiver};
pub use txn_log::TxnLog;

use crate::zxid::Zxid;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use corral_engine::io::{OpenOptions, Vfs};
use corral_engine::log::{AppendCallback, LogError, LogOptions, RecoveryReport};
use corral_engine::recovery::{recover, Recovered, RecoveryError};
use corral_engine::snapshot::{
    SnapshotError, SnapshotInfo, SnapshotPolicy, SnapshotStore, Snapshotter,
};

use crate::proto::{Reader, Txn, TxnEntry};
use crate::session::secret::SessionSecret;
use crate::tree::zk_snapshot::{read_body, write_body, SessionEntry};
use crate::tree::{ApplyOutcome, DataTree, TreeOptions};

/// Subdirectory of dataDir / dataLogDir holding Corral's files.
pub const CORRAL_DIR: &str = "corral-v1";

/// Where and how the database keeps its files.
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// ZooKeeper's dataDir: snapshots go to `<data_dir>/corral-v1/snap`.
    pub data_dir: PathBuf,
    /// ZooKeeper's dataLogDir: the log goes to `<data_log_dir>/corral-v1/log`.
    pub data_log_dir: PathBuf,
    /// The transaction log's options (strategy, preallocation, ...).
    pub log: LogOptions,
    /// snapCount.
    pub snap_count: u64,
    /// snapSizeLimitInKb (≤ 0: no size trigger).
    pub snap_size_limit_kb: i64,
    /// autopurge.snapRetainCount (at least 3).
    pub snap_retain_count: usize,
    /// Tree options (extended types).
    pub tree: TreeOptions,
    /// Seed of the snapshot trigger's random share (the server passes its id and start time).
    pub seed: u64,
    /// Write the log only on [`Database::flush`] (the simulator), instead of on a writer
    /// thread with group commit (the server).
    pub inline_log: bool,
    /// Write snapshots on the caller's thread, when they are triggered (the simulator: a run
    /// is then a function of its seed), instead of on the snapshot thread (the server).
    pub inline_snapshots: bool,
}

impl DbOptions {
    /// Options with ZooKeeper's defaults for a data directory.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            data_dir: data_dir.to_path_buf(),
            data_log_dir: data_dir.to_path_buf(),
            log: LogOptions::default(),
            snap_count: 100_000,
            snap_size_limit_kb: 4_194_304,
            snap_retain_count: 3,
            tree: TreeOptions::default(),
            seed: 0,
            inline_log: false,
            inline_snapshots: false,
        }
    }

    /// The log directory.
    pub fn log_dir(&self) -> PathBuf {
        self.data_log_dir.join(CORRAL_DIR).join("log")
    }

    /// The snapshot directory.
    pub fn snap_dir(&self) -> PathBuf {
        self.data_dir.join(CORRAL_DIR).join("snap")
    }

    /// The directory of the session secret (`<dataDir>/corral-v1`).
    pub fn secret_dir(&self) -> PathBuf {
        self.data_dir.join(CORRAL_DIR)
    }
}

/// Errors opening or running the database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// The log failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// Snapshot storage failed.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// Recovery failed.
    #[error(transparent)]
    Recovery(#[from] RecoveryError),
    /// The session secret could not be read or written.
    #[error("the session secret: {0}")]
    Secret(std::io::Error),
    /// An epoch file could not be read or written.
    #[error("the {name} file: {source}")]
    Epoch {
        /// acceptedEpoch or currentEpoch.
        name: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// A received snapshot body could not be read.
    #[error("a received snapshot at zxid {zxid:#x} is unreadable: {reason}")]
    BadSnapshot {
        /// Its zxid.
        zxid: u64,
        /// Why.
        reason: String,
    },
    /// TRUNC below the snapshot the state starts from.
    #[error("cannot truncate to zxid {zxid:#x}: below the snapshot at {snapshot:#x}")]
    TruncateBelowSnapshot {
        /// The zxid asked for.
        zxid: u64,
        /// The snapshot the state starts from.
        snapshot: u64,
    },
    /// A thread could not be started.
    #[error("starting {what}: {source}")]
    Spawn {
        /// Which thread.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
}

/// What a snapshot holds and the log replays into: the tree and the global sessions.
#[derive(Debug, Clone)]
pub struct State {
    /// The data tree.
    pub tree: DataTree,
    /// Session id → negotiated timeout (ms).
    pub sessions: BTreeMap<i64, i32>,
    /// Txns whose logged digest differed from the tree's after applying them (ZooKeeper's
    /// `digest_mismatches_count`).
    pub digest_mismatches: u64,
}

impl State {
    /// The state of a new database.
    pub fn new(tree: TreeOptions) -> Self {
        Self { tree: DataTree::new(tree), sessions: BTreeMap::new(), digest_mismatches: 0 }
    }

    /// Applies one logged txn: the tree, and the session table for createSession/closeSession;
    /// then compares the tree's digest with the one logged with the txn, if any.
    pub fn apply(&mut self, entry: &TxnEntry) -> ApplyOutcome {
        self.apply_with(entry, true)
    }

    /// As [`State::apply`], without the digest comparison: for txns a fuzzy snapshot may
    /// already hold (see `zab::Command::InstallSnapshot`).
    pub fn apply_unchecked(&mut self, entry: &TxnEntry) -> ApplyOutcome {
        self.apply_with(entry, false)
    }

    fn apply_with(&mut self, entry: &TxnEntry, check: bool) -> ApplyOutcome {
        match &entry.txn {
            Txn::CreateSession(t) => {
                self.sessions.insert(entry.header.client_id, t.time_out);
            }
            Txn::CloseSession(_) => {
                self.sessions.remove(&entry.header.client_id);
            }
            _ => {}
        }
        let outcome = self.tree.apply(&entry.header, &entry.txn);
        if let Some(d) = entry.digest.as_ref().filter(|_| check) {
            let ours = self.tree.digest();
            if d.tree_digest != ours {
                self.digest_mismatches += 1;
                // ZooKeeper only counts these (zk_digest_mismatches_count); so do we, loudly.
                tracing::warn!(
                    zxid = format_args!("{:#x}", entry.header.zxid),
                    logged = d.tree_digest,
                    computed = ours,
                    "tree digest mismatch after applying a txn"
                );
            }
        }
        outcome
    }

    /// Sessions as a snapshot lists them.
    pub fn session_entries(&self) -> Vec<SessionEntry> {
        self.sessions.iter().map(|(id, to)| (*id, *to)).collect()
    }

    /// Writes the snapshot body (ZooKeeper's format: sessions, ACL cache, nodes).
    pub fn write_body(&self, w: &mut dyn std::io::Write) -> std::io::Result<()> {
        write_body(w, &self.tree, &self.session_entries())
            .map_err(|e| std::io::Error::other(e.to_string()))
    }

    /// Reads a snapshot body taken at `zxid`.
    pub fn read_body(
        body: &[u8],
        zxid: u64,
        tree: TreeOptions,
        max_len: usize,
    ) -> Result<State, String> {
        let r = &mut Reader::with_max_len(body, max_len);
        let (sessions, builder) = read_body(r, tree).map_err(|e| e.to_string())?;
        let tree = builder.finish(zxid as i64).map_err(|e| e.to_string())?;
        Ok(State { tree, sessions: sessions.into_iter().collect(), digest_mismatches: 0 })
    }
}

/// What opening the database found.
#[derive(Debug)]
pub struct OpenReport {
    /// The log's tail recovery.
    pub log: RecoveryReport,
    /// The snapshot recovery started from.
    pub snapshot: Option<SnapshotInfo>,
    /// Snapshots skipped as damaged, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
    /// Txns replayed from the log.
    pub replayed: u64,
    /// The last zxid in the recovered state.
    pub last_zxid: u64,
    /// Time spent reading snapshots, and replaying the log after, ms.
    pub snapshot_ms: u64,
    /// Time spent replaying the log after the snapshot, ms.
    pub replay_ms: u64,
}

/// A logged txn: its zxid and its bytes.
pub type LoggedTxn = (Zxid, Vec<u8>);

/// The acceptedEpoch file's name (ZooKeeper's).
pub const ACCEPTED_EPOCH_FILE: &str = "acceptedEpoch";
/// The currentEpoch file's name (ZooKeeper's).
pub const CURRENT_EPOCH_FILE: &str = "currentEpoch";

/// The log, the snapshots, and when to take the next one.
pub struct Database {
    log: TxnLog,
    vfs: Arc<dyn Vfs>,
    accepted_epoch: u32,
    current_epoch: u32,
    /// The zxid of the snapshot the state was recovered from (or last installed): the log
    /// after it is this replica's history.
    snapshot_zxid: u64,
    store: SnapshotStore,
    snapshotter: Snapshotter,
    policy: SnapshotPolicy,
    opts: DbOptions,
    secret: SessionSecret,
    /// Where snapshot durations are recorded (ZooKeeper's `snapshottime`), if anywhere.
    snapshot_metrics: Option<Arc<crate::admin::server_metrics::ServerMetrics>>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database").field("log", &self.log).finish()
    }
}

impl Database {
    /// Opens (creating) the database and recovers its state.
    pub fn open(opts: DbOptions) -> Result<(Database, State, OpenReport), DbError> {
        let (log, log_report) = TxnLog::open(&opts.log_dir(), opts.log.clone(), opts.inline_log)?;
        let vfs =
            opts.log.vfs.clone().unwrap_or_else(|| Arc::new(corral_engine::io::SyncVfs::new()));
        let store = SnapshotStore::open(vfs.clone(), &opts.snap_dir(), opts.log.dbid)?;
        let secret =
            SessionSecret::load_or_create(&*vfs, &opts.secret_dir()).map_err(DbError::Secret)?;
        let accepted_epoch = read_epoch(&*vfs, &opts.secret_dir(), ACCEPTED_EPOCH_FILE)?;
        let current_epoch = read_epoch(&*vfs, &opts.secret_dir(), CURRENT_EPOCH_FILE)?;
        let started = std::time::Instant::now();
        let snapshot_done = std::cell::Cell::new(None);
        let recovered = recover_state(&store, &log, &opts.tree, &snapshot_done)?;
        let snapshot_done = snapshot_done.get().unwrap_or(started);
        let snapshotter = if opts.inline_snapshots {
            Snapshotter::inline(store.clone())
        } else {
            Snapshotter::spawn(store.clone())
                .map_err(|source| DbError::Spawn { what: "the snapshot thread", source })?
        };
        let snapshot_zxid = recovered.snapshot.as_ref().map_or(0, |s| s.zxid);
        let report = OpenReport {
            log: log_report,
            snapshot: recovered.snapshot,
            skipped: recovered.skipped,
            replayed: recovered.replayed,
            last_zxid: recovered.last_zxid,
            snapshot_ms: snapshot_done.duration_since(started).as_millis() as u64,
            replay_ms: snapshot_done.elapsed().as_millis() as u64,
        };
        let policy = SnapshotPolicy::new(opts.snap_count, opts.snap_size_limit_kb, opts.seed);
        let db = Database {
            log,
            vfs,
            accepted_epoch,
            current_epoch,
            snapshot_zxid,
            store,
            snapshotter,
            policy,
            opts,
            secret,
            snapshot_metrics: None,
        };
        Ok((db, recovered.state, report))
    }

    /// The acceptedEpoch file's value (0 if there is none).
    pub fn accepted_epoch(&self) -> u32 {
        self.accepted_epoch
    }

    /// The currentEpoch file's value (0 if there is none).
    pub fn current_epoch(&self) -> u32 {
        self.current_epoch
    }

    /// Durably writes the acceptedEpoch file; returns once it is durable.
    pub fn persist_accepted_epoch(&mut self, epoch: u32) -> Result<(), DbError> {
        self.write_epoch(ACCEPTED_EPOCH_FILE, epoch)?;
        self.accepted_epoch = epoch;
        Ok(())
    }

    /// Durably writes the currentEpoch file; returns once it is durable.
    pub fn persist_current_epoch(&mut self, epoch: u32) -> Result<(), DbError> {
        self.write_epoch(CURRENT_EPOCH_FILE, epoch)?;
        self.current_epoch = epoch;
        Ok(())
    }

    fn write_epoch(&self, name: &'static str, epoch: u32) -> Result<(), DbError> {
        corral_engine::io::write_file_atomic(
            &*self.vfs,
            &self.opts.secret_dir(),
            name,
            epoch.to_string().as_bytes(),
        )
        .map_err(|source| DbError::Epoch { name, source })
    }

    /// The zxid of the snapshot the current history starts after.
    pub fn snapshot_zxid(&self) -> Zxid {
        Zxid(self.snapshot_zxid)
    }

    /// The history a peer restarts from: the last `window` durable log records after the
    /// snapshot the state starts from, as (zxid, payload), oldest first, and the zxid before
    /// the first of them (the snapshot's, when the log after it holds fewer).
    pub fn history(&self, window: usize) -> Result<(Zxid, Vec<LoggedTxn>), DbError> {
        let mut all = std::collections::VecDeque::new();
        let mut base = Zxid(self.snapshot_zxid);
        for rec in self.log.iter_from(self.snapshot_zxid + 1) {
            let rec = rec?;
            all.push_back((Zxid(rec.zxid), rec.payload));
            if all.len() > window {
                base = all.pop_front().map_or(base, |(z, _)| z);
            }
        }
        Ok((base, all.into_iter().collect()))
    }

    /// Writes what the inline log holds (the simulator's durability point); returns the last
    /// zxid made durable, if any. With the group-commit log, waits for its writer.
    pub fn flush(&self) -> Result<Option<Zxid>, DbError> {
        Ok(self.log.flush()?.map(Zxid))
    }

    /// TRUNC: durably removes every logged txn after `zxid` (and any snapshot taken after it),
    /// then rebuilds the state from what remains.
    pub fn truncate_after(&mut self, zxid: Zxid) -> Result<State, DbError> {
        let zxid = zxid.get();
        if zxid < self.snapshot_zxid {
            return Err(DbError::TruncateBelowSnapshot { zxid, snapshot: self.snapshot_zxid });
        }
        self.log.truncate_after(zxid)?;
        self.store.remove_after(zxid)?;
        let recovered =
            recover_state(&self.store, &self.log, &self.opts.tree, &Default::default())?;
        self.snapshot_zxid = recovered.snapshot.as_ref().map_or(0, |s| s.zxid);
        Ok(recovered.state)
    }

    /// SNAP: replaces the whole state by a received snapshot taken at `zxid` (`None`: the
    /// empty initial state), with nothing after it. Crash safe: the log is first cut after
    /// `zxid` (what it held beyond was never committed, or the leader would hold it), then the
    /// snapshot is made visible under its final name at once (its body was written to a
    /// temporary file as it arrived, or is written now: fsync, rename), and only then are
    /// snapshots newer than it removed; recovery starts from the newest and ignores the log
    /// below it.
    pub fn install_snapshot(
        &mut self,
        zxid: Zxid,
        received: Option<&ReceivedSnapshot>,
    ) -> Result<State, DbError> {
        let (state, spool) = match received {
            None => (State::new(self.opts.tree.clone()), None),
            Some(r) if r.zxid() != zxid => {
                return Err(DbError::BadSnapshot {
                    zxid: zxid.get(),
                    reason: format!("the SNAP received was taken at {:#x}", r.zxid().get()),
                })
            }
            Some(r) => match r.take() {
                Some(Received { state, spool }) => (state, spool),
                None => {
                    return Err(DbError::BadSnapshot {
                        zxid: zxid.get(),
                        reason: "the SNAP received was installed already".into(),
                    })
                }
            },
        };
        let zxid = zxid.get();
        // Snapshots newer than `zxid` go only once the new one is durable: a crash at any point
        // recovers at least everything up to `zxid`. (Removing them before the write, as this
        // did, lost everything to a crash in between when the SNAP was below the learner's own
        // snapshot; the simulator found it.) A crash before they are removed recovers from the
        // newest, the old state without what the log held after `zxid`: the learner reports it
        // at its next sync, as it would have without this SNAP.
        self.log.truncate_after(zxid)?;
        match spool {
            Some(w) => w.finish()?,
            None => self.store.write(zxid, |w| state.write_body(w))?,
        };
        self.store.remove_after(zxid)?;
        self.snapshot_zxid = zxid;
        Ok(state)
    }

    /// Makes `state` the database's state at `zxid`, the last zxid logged (a restore): it
    /// is written as the snapshot at `zxid`, durably, before anything else changes, so that
    /// a crash recovers either the old state (and the log) or this one; snapshots after
    /// `zxid` go. The log up to `zxid` stays below it, ignored by recovery.
    pub fn install_state(&mut self, zxid: Zxid, state: &State) -> Result<(), DbError> {
        let zxid = zxid.get();
        self.log.truncate_after(zxid)?;
        self.store.write(zxid, |w| state.write_body(w))?;
        self.store.remove_after(zxid)?;
        self.snapshot_zxid = zxid;
        Ok(())
    }

    /// The transaction log.
    pub fn log(&self) -> &TxnLog {
        &self.log
    }

    /// The snapshot files.
    pub fn snapshots(&self) -> &SnapshotStore {
        &self.store
    }

    /// The secret session passwords are made from.
    pub fn session_secret(&self) -> &SessionSecret {
        &self.secret
    }

    /// The options the database was opened with.
    pub fn options(&self) -> &DbOptions {
        &self.opts
    }

    /// Logs a txn; `done` runs once it is durable (or failed), in zxid order.
    pub fn append(&self, entry: &TxnEntry, done: AppendCallback) -> Result<(), LogError> {
        self.log.append_async(entry.header.zxid as u64, entry.encode(), done)
    }

    /// Logs a txn and waits until it is durable.
    pub fn append_sync(&self, entry: &TxnEntry) -> Result<(), LogError> {
        self.log.append(entry.header.zxid as u64, entry.encode()).map(|_| ())
    }

    /// Counts an applied txn of `bytes` for the snapshot trigger; when it fires, starts a
    /// snapshot of `state()` (which must be the state after applying `zxid`; asked for only
    /// then) on the snapshot thread and rolls the log. Returns true if a snapshot was started.
    pub fn applied(&mut self, zxid: Zxid, bytes: u64, state: impl FnOnce() -> State) -> bool {
        if self.policy.record(bytes) {
            return self.snapshot_now(zxid, &state());
        }
        false
    }

    /// Counts an applied txn of `bytes` for the snapshot trigger; true when a snapshot is due
    /// (the caller then takes it with [`Database::snapshot_now`] at the next point where it
    /// has the committed state).
    pub fn count_applied(&mut self, bytes: u64) -> bool {
        self.policy.record(bytes)
    }

    /// Starts a snapshot of `state` at `zxid` now (unless one is being written).
    pub fn snapshot_now(&self, zxid: Zxid, state: &State) -> bool {
        let zxid = zxid.get();
        let snap = state.clone();
        let started = self.snapshotter.try_submit(zxid, Box::new(move |w| snap.write_body(w)), {
            let metrics = self.snapshot_metrics.clone();
            let submitted = std::time::Instant::now();
            move |r| {
                if let (Some(m), Ok(_)) = (metrics, r) {
                    let ms = submitted.elapsed().as_millis() as i64;
                    m.observe(crate::admin::server_metrics::S::SnapshotTime, ms);
                }
            }
        });
        if started {
            if let Err(e) = self.log.roll() {
                tracing::error!(error = %e, "rolling the log after a snapshot");
            }
        }
        started
    }

    /// Records each snapshot's duration in `metrics`.
    pub fn set_snapshot_metrics(
        &mut self,
        metrics: Arc<crate::admin::server_metrics::ServerMetrics>,
    ) {
        self.snapshot_metrics = Some(metrics);
    }

    /// True while a snapshot is being written.
    pub fn snapshot_in_progress(&self) -> bool {
        self.snapshotter.is_busy()
    }

    /// Keeps the newest autopurge.snapRetainCount snapshots and removes the log segments none
    /// of them needs. Returns the files removed.
    pub fn purge(&self) -> Result<Vec<PathBuf>, DbError> {
        self.purge_job()?.run()
    }

    /// What [`purge`](Self::purge) removes, decided now — the log segments are taken out of
    /// the log, which no longer reads them — and left for [`PurgeJob::run`] to remove, on a
    /// thread of the caller's choosing (the server's pipeline runs it on one of its own, so
    /// that unlinking files and syncing directories is off the write path).
    pub fn purge_job(&self) -> Result<PurgeJob, DbError> {
        let retain = self.opts.snap_retain_count.max(3);
        let list = self.store.list()?;
        let snapshots: Vec<PathBuf> = list.iter().skip(retain).map(|s| s.path.clone()).collect();
        let segments = match list.iter().take(retain).next_back() {
            Some(oldest) => self.log.detach_before(oldest.zxid + 1)?,
            None => Vec::new(),
        };
        Ok(PurgeJob {
            vfs: self.vfs.clone(),
            snapshots,
            snapshot_dir: self.store.dir().to_path_buf(),
            segments,
            log_dir: self.opts.log_dir(),
        })
    }
}

/// The suffix a file being purged carries: no reader of the directories takes it for a
/// snapshot or a segment, and the next purge finishes what a crash interrupted.
const PURGING_SUFFIX: &str = ".purge";

/// How much of a file a purge frees at a time, and the pause after each piece. On a file
/// system mounted with online discard, freed blocks are discarded while the journal commits,
/// and the log's fdatasync waits for that commit: a 64 MiB segment freed at once held it about
/// 12 ms on this host's disk (docs/performance.md, "A log purge under load").
pub const PURGE_PIECE_BYTES: u64 = 4 << 20;
/// See [`PURGE_PIECE_BYTES`].
pub const PURGE_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);

/// Files an autopurge removes ([`Database::purge_job`]).
#[derive(Debug)]
pub struct PurgeJob {
    vfs: Arc<dyn Vfs>,
    snapshots: Vec<PathBuf>,
    snapshot_dir: PathBuf,
    segments: Vec<PathBuf>,
    log_dir: PathBuf,
}

impl PurgeJob {
    /// Removes the files and returns them. Each directory's files are first renamed aside
    /// (`*.purge`, synced once), then cut down [`PURGE_PIECE_BYTES`] at a time with
    /// [`PURGE_PAUSE`] between pieces, removed, and the directory synced. Files left aside by
    /// an earlier, interrupted purge go too.
    pub fn run(self) -> Result<Vec<PathBuf>, DbError> {
        self.run_paced(PURGE_PIECE_BYTES, PURGE_PAUSE)
    }

    /// [`PurgeJob::run`] with another piece size and pause.
    pub fn run_paced(
        self,
        piece: u64,
        pause: std::time::Duration,
    ) -> Result<Vec<PathBuf>, DbError> {
        let io = |op: &'static str, path: &Path, e: std::io::Error| {
            DbError::Snapshot(SnapshotError::Io {
                op,
                path: path.to_path_buf(),
                source: Arc::new(e),
            })
        };
        let vfs = self.vfs.as_ref();
        let mut removed = Vec::new();
        for (files, dir) in [(self.snapshots, self.snapshot_dir), (self.segments, self.log_dir)] {
            let mut aside: Vec<PathBuf> = vfs
                .list_dir(&dir)
                .map_err(|e| io("list", &dir, e))?
                .into_iter()
                .filter(|n| n.ends_with(PURGING_SUFFIX))
                .map(|n| dir.join(n))
                .collect();
            for f in &files {
                let mut to = f.clone().into_os_string();
                to.push(PURGING_SUFFIX);
                let to = PathBuf::from(to);
                vfs.rename(f, &to).map_err(|e| io("rename", f, e))?;
                aside.push(to);
            }
            if aside.is_empty() {
                continue;
            }
            // Aside durably before any file shrinks: a crash never leaves a cut snapshot or
            // segment under its own name.
            vfs.sync_dir(&dir).map_err(|e| io("fsync directory", &dir, e))?;
            for f in &aside {
                let mut file =
                    vfs.open(f, OpenOptions::read_write()).map_err(|e| io("open", f, e))?;
                let mut len = file.len().map_err(|e| io("size", f, e))?;
                while len > piece {
                    len -= piece;
                    file.set_len(len).map_err(|e| io("truncate", f, e))?;
                    std::thread::sleep(pause);
                }
                drop(file);
                vfs.remove_file(f).map_err(|e| io("remove", f, e))?;
            }
            vfs.sync_dir(&dir).map_err(|e| io("fsync directory", &dir, e))?;
            removed.extend(files);
        }
        Ok(removed)
    }
}

/// Recovers the state: the newest valid snapshot, then the log after it.
fn recover_state(
    store: &SnapshotStore,
    log: &TxnLog,
    tree_opts: &TreeOptions,
    snapshot_done: &std::cell::Cell<Option<std::time::Instant>>,
) -> Result<Recovered<State>, RecoveryError> {
    // A field can be no longer than the record holding it, so recovery reads back whatever
    // the log and snapshots hold, whatever jute.maxbuffer is now (see crate::limits).
    let max = usize::MAX;
    recover(
        store,
        |r, zxid| {
            let body = r.read_rest().map_err(|e| e.to_string())?;
            let state = State::read_body(&body, zxid, tree_opts.clone(), max);
            snapshot_done.set(Some(std::time::Instant::now()));
            state
        },
        || State::new(tree_opts.clone()),
        |from| log.iter_from(from),
        |state, rec| {
            let entry = TxnEntry::decode(&rec.payload, max).map_err(|e| e.to_string())?;
            if entry.header.zxid as u64 != rec.zxid {
                return Err(format!(
                    "log record {:#x} holds a txn with zxid {:#x}",
                    rec.zxid, entry.header.zxid
                ));
            }
            state.apply(&entry);
            Ok(())
        },
    )
}

/// Reads an epoch file in `dir` (0 when there is none yet).
fn read_epoch(vfs: &dyn Vfs, dir: &Path, name: &'static str) -> Result<u32, DbError> {
    let path = dir.join(name);
    if !vfs.exists(&path) {
        return Ok(0);
    }
    let bytes = corral_engine::io::read_small_file(vfs, &path, 64)
        .map_err(|source| DbError::Epoch { name, source })?;
    std::str::from_utf8(&bytes).ok().and_then(|t| t.trim().parse().ok()).ok_or_else(|| {
        DbError::Epoch {
            name,
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} does not hold an epoch", path.display()),
            ),
        }
    })
}

#[cfg(test)]
mod fuzzy_tests {
    use super::*;
    use crate::proto::{Acl, CreateTxn, TxnDigest, TxnHeader};

    fn create(zxid: i64, path: &str) -> TxnEntry {
        TxnEntry {
            header: TxnHeader { client_id: 1, cxid: 1, zxid, time: 0, op: 1 },
            txn: Txn::Create(CreateTxn {
                path: path.into(),
                data: Default::default(),
                acl: vec![Acl::new(31, "world", "anyone")],
                ephemeral: false,
                parent_c_version: 0,
            }),
            digest: None,
        }
    }

    /// Why a fuzzy snapshot's txns are applied unchecked: re-applied on a body that already
    /// holds later ones, their logged digests cannot match; the tree still converges.
    #[test]
    fn txns_already_in_a_fuzzy_snapshot_cannot_match_their_digests() {
        let mut leader = State::new(Default::default());
        let mut entries = Vec::new();
        for (i, path) in ["/load", "/load/a", "/load/b", "/load/c"].into_iter().enumerate() {
            let mut e = create(i as i64 + 1, path);
            e.header.zxid = i as i64 + 1;
            leader.apply_unchecked(&e);
            e.digest = Some(TxnDigest { version: 2, tree_digest: leader.tree.digest() });
            entries.push(e);
        }
        // Labelled zxid 2, but holding 3 and 4 as well (what a ZooKeeper leader can send).
        let mut fuzzy = State::new(Default::default());
        for e in &entries {
            fuzzy.apply_unchecked(e);
        }
        let mut checked = fuzzy.clone();
        for e in &entries[2..] {
            checked.apply(e);
        }
        assert_eq!(checked.digest_mismatches, 1, "zxid 3 again, on a tree that holds 4");
        assert_eq!(checked.tree.digest(), leader.tree.digest());
        let mut quiet = fuzzy.clone();
        quiet.apply_unchecked(&entries[2]);
        quiet.apply(&entries[3]);
        assert_eq!(quiet.digest_mismatches, 0);
        assert_eq!(quiet.tree.digest(), leader.tree.digest(), "the same tree in the end");
    }
}
