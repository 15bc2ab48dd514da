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
//! Files live under `<dataDir>/corral-v1/snap` and `<dataLogDir>/corral-v1/log`, apart from any
//! Apache ZooKeeper files in `<dataDir>/version-2`. This module owns no sockets and no clocks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use corral_engine::log::{AppendCallback, Log, LogError, LogOptions, RecoveryReport};
use corral_engine::recovery::{recover, RecoveryError};
use corral_engine::snapshot::{
    SnapshotError, SnapshotInfo, SnapshotPolicy, SnapshotStore, Snapshotter,
};

use crate::proto::{Reader, Txn, TxnEntry, DEFAULT_MAX_LEN};
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
    /// jute.maxbuffer, the largest field accepted when reading records back.
    pub max_buffer: usize,
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
            max_buffer: DEFAULT_MAX_LEN,
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
}

impl State {
    /// The state of a new database.
    pub fn new(tree: TreeOptions) -> Self {
        Self { tree: DataTree::new(tree), sessions: BTreeMap::new() }
    }

    /// Applies one logged txn: the tree, and the session table for createSession/closeSession.
    pub fn apply(&mut self, entry: &TxnEntry) -> ApplyOutcome {
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
        if let Some(d) = &entry.digest {
            let ours = self.tree.digest();
            if d.tree_digest != ours {
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
        Ok(State { tree, sessions: sessions.into_iter().collect() })
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
}

/// The log, the snapshots, and when to take the next one.
pub struct Database {
    log: Log,
    store: SnapshotStore,
    snapshotter: Snapshotter,
    policy: SnapshotPolicy,
    opts: DbOptions,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database").field("log", &self.log).finish()
    }
}

impl Database {
    /// Opens (creating) the database and recovers its state.
    pub fn open(opts: DbOptions) -> Result<(Database, State, OpenReport), DbError> {
        let (log, log_report) = Log::open(&opts.log_dir(), opts.log.clone())?;
        let vfs =
            opts.log.vfs.clone().unwrap_or_else(|| Arc::new(corral_engine::io::SyncVfs::new()));
        let store = SnapshotStore::open(vfs, &opts.snap_dir(), opts.log.dbid)?;
        let tree_opts = opts.tree.clone();
        let max = opts.max_buffer.max(2 * DEFAULT_MAX_LEN);
        let recovered = recover(
            &store,
            |r, zxid| {
                let body = r.read_rest().map_err(|e| e.to_string())?;
                State::read_body(&body, zxid, tree_opts.clone(), max)
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
        )?;
        let snapshotter = Snapshotter::spawn(store.clone())
            .map_err(|source| DbError::Spawn { what: "the snapshot thread", source })?;
        let report = OpenReport {
            log: log_report,
            snapshot: recovered.snapshot,
            skipped: recovered.skipped,
            replayed: recovered.replayed,
            last_zxid: recovered.last_zxid,
        };
        let policy = SnapshotPolicy::new(opts.snap_count, opts.snap_size_limit_kb, opts.seed);
        Ok((Database { log, store, snapshotter, policy, opts }, recovered.state, report))
    }

    /// The transaction log.
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// The snapshot files.
    pub fn snapshots(&self) -> &SnapshotStore {
        &self.store
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
    pub fn applied(&mut self, zxid: u64, bytes: u64, state: impl FnOnce() -> State) -> bool {
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
    pub fn snapshot_now(&self, zxid: u64, state: &State) -> bool {
        let snap = state.clone();
        let started =
            self.snapshotter.try_submit(zxid, Box::new(move |w| snap.write_body(w)), |_| {});
        if started {
            if let Err(e) = self.log.roll() {
                tracing::error!(error = %e, "rolling the log after a snapshot");
            }
        }
        started
    }

    /// True while a snapshot is being written.
    pub fn snapshot_in_progress(&self) -> bool {
        self.snapshotter.is_busy()
    }

    /// Keeps the newest autopurge.snapRetainCount snapshots and removes the log segments none
    /// of them needs. Returns the files removed.
    pub fn purge(&self) -> Result<Vec<PathBuf>, DbError> {
        let retain = self.opts.snap_retain_count.max(3);
        let mut removed = self.store.purge(retain)?;
        if let Some(oldest) = self.store.list()?.last() {
            removed.extend(self.log.purge_before(oldest.zxid + 1)?);
        }
        Ok(removed)
    }
}
