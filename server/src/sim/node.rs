//! One simulated server: the production replica ([`crate::replica::Replica`]) over the
//! production database ([`crate::db::Database`], its log written inline, flushed when the
//! simulator says the disk got to it) on the engine's simulated disk ([`SimVfs`]).
//!
//! The only state kept here besides it is the checker's view of the replica's history
//! ([`Mirror`]), built from what the replica reports it stored; the simulator never applies,
//! sequences or stores anything itself.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use corral_engine::io::SimVfs;
use corral_engine::log::{FlushStrategy, LogOptions, Prealloc};

use crate::db::{Database, DbError, DbOptions, State};
use crate::replica::{Fatal, Replica, ReplicaOptions, Stored};
use crate::tree::{PrepareConfig, TreeOptions};
use crate::zab::{PeerConfig, Sid, Zxid};

/// Where the database lives on the simulated disk.
const ROOT: &str = "/z";

/// The database's options on a simulated disk: the log inline (written when the runtime
/// flushes), small segments, no snapshot trigger (set `snap_count` to have one).
pub fn db_options(disk: &SimVfs, strategy: FlushStrategy) -> DbOptions {
    let mut o = DbOptions::new(Path::new(ROOT));
    o.log = LogOptions {
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
    };
    o.inline_log = true;
    o.inline_snapshots = true;
    // The simulator takes no snapshots of its own; the database's trigger never fires.
    o.snap_count = u64::MAX / 4;
    o.snap_size_limit_kb = -1;
    o.tree = TreeOptions::default();
    o
}

/// Opens a replica over what the disk holds (recovery: newest snapshot, then the log).
pub fn open(
    disk: &SimVfs,
    strategy: FlushStrategy,
    cfg: PeerConfig,
    sid: Sid,
) -> Result<(Replica, Vec<crate::replica::Output>), String> {
    let (db, state, _): (Database, State, _) =
        Database::open(db_options(disk, strategy)).map_err(|e: DbError| e.to_string())?;
    let opts = ReplicaOptions {
        prepare: PrepareConfig {
            reconfig_enabled: cfg.reconfig_enabled,
            ..PrepareConfig::default()
        },
        txn_bytes_max: 128 << 10,
        boundary_every_txn: true,
        report_appends_and_commits: true,
        local_sessions: false,
        log_txns: true,
    };
    Replica::member(cfg, sid, db, state, opts, None).map_err(|e: Fatal| e.to_string())
}

/// What a disk image recovers to: the snapshot zxid and the log after it (a copy of the image is
/// opened; the node's own disk is not touched).
pub fn durable_history(
    img: &SimVfs,
    strategy: FlushStrategy,
) -> Result<(Zxid, BTreeMap<Zxid, Bytes>), String> {
    let (db, _, _) = Database::open(db_options(img, strategy)).map_err(|e| e.to_string())?;
    let (_, txns) = db.history(usize::MAX).map_err(|e| e.to_string())?;
    Ok((db.snapshot_zxid(), txns.into_iter().map(|(z, d)| (z, Bytes::from(d))).collect()))
}

/// The checker's view of a replica's history: the snapshot it starts after and every txn
/// logged since (durable or not), as the replica reported storing them.
#[derive(Debug, Default, Clone)]
pub struct Mirror {
    /// The zxid of the snapshot the history starts after.
    pub snapshot_zxid: Zxid,
    /// Every txn after the snapshot.
    pub entries: BTreeMap<Zxid, Bytes>,
}

impl Mirror {
    /// The history a replica recovered.
    pub fn of(r: &Replica) -> Mirror {
        let (_, txns) = r.db().history(usize::MAX).unwrap_or_default();
        Mirror {
            snapshot_zxid: r.db().snapshot_zxid(),
            entries: txns.into_iter().map(|(z, d)| (z, Bytes::from(d))).collect(),
        }
    }

    /// The last zxid of the history.
    pub fn last_zxid(&self) -> Zxid {
        self.entries.keys().next_back().copied().unwrap_or(self.snapshot_zxid)
    }

    /// The zxid before `zxid` in this history.
    pub fn prev_of(&self, zxid: Zxid) -> Zxid {
        self.entries.range(..zxid).next_back().map_or(self.snapshot_zxid, |e| *e.0)
    }

    /// Follows what the replica stored.
    pub fn record(&mut self, s: &Stored, snapshot_zxid: Zxid) {
        match s {
            Stored::Appended(txns) => {
                for (z, d) in txns {
                    self.entries.insert(*z, d.clone());
                }
            }
            Stored::Truncated(z) => {
                self.entries.retain(|k, _| k <= z);
                self.snapshot_zxid = snapshot_zxid;
            }
            Stored::Installed(z) => {
                self.entries.clear();
                self.snapshot_zxid = *z;
            }
            Stored::Truncating(_)
            | Stored::Installing(_)
            | Stored::AcceptedEpoch(_)
            | Stored::CurrentEpoch(_) => {}
        }
    }
}
