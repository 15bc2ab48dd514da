//! Recovery: the newest snapshot whose checksum holds, then the log after it.
//!
//! Snapshots are point-in-time (taken at exactly one zxid), so replay starts exactly at the
//! snapshot's zxid + 1. A snapshot that fails to load or to verify is skipped, with the reason
//! reported, and the next older one is tried; with none left, recovery starts from the empty
//! state — which is only right if the log still holds every record from the beginning, and the
//! strict log reader checks exactly that.

use std::path::PathBuf;

use crate::log::{LogError, LogIter, Record};
use crate::snapshot::{SnapshotError, SnapshotInfo, SnapshotReader, SnapshotStore};

/// Errors that stop recovery.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RecoveryError {
    /// Listing or opening snapshots failed (not a bad snapshot: those are skipped).
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// Reading the log failed, or records after the snapshot are missing.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The embedder could not apply a logged record.
    #[error("replaying zxid {zxid:#x}: {message}")]
    Apply {
        /// The record's zxid.
        zxid: u64,
        /// What went wrong.
        message: String,
    },
}

/// What recovery rebuilt, and how.
#[derive(Debug)]
pub struct Recovered<S> {
    /// The state: snapshot plus replayed records.
    pub state: S,
    /// The snapshot it started from, if any.
    pub snapshot: Option<SnapshotInfo>,
    /// Snapshots that were newer but could not be used, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
    /// Records replayed from the log.
    pub replayed: u64,
    /// The last zxid in the state (snapshot zxid if nothing was replayed; 0 if empty).
    pub last_zxid: u64,
}

/// Rebuilds state from the newest valid snapshot in `snapshots` and the log records after it.
///
/// * `load(body, zxid)` builds the state from a snapshot body (a [`SnapshotReader`]: read it as a
///   stream, or all at once with [`SnapshotReader::read_rest`]); its result is discarded if the
///   body's checksum then fails.
/// * `empty()` is the state before any record, used when no snapshot is usable.
/// * `log_from(zxid)` reads the log from a zxid (`Log::iter_from` or `LogCore::iter_from`); the
///   reader is made strict, so records purged from the log are an error, not a silent gap.
/// * `apply(state, record)` applies one record.
pub fn recover<S>(
    snapshots: &SnapshotStore,
    mut load: impl FnMut(&mut SnapshotReader, u64) -> Result<S, String>,
    empty: impl FnOnce() -> S,
    log_from: impl FnOnce(u64) -> LogIter,
    mut apply: impl FnMut(&mut S, Record) -> Result<(), String>,
) -> Result<Recovered<S>, RecoveryError> {
    let mut skipped = Vec::new();
    let mut base: Option<(S, SnapshotInfo)> = None;
    for info in snapshots.list()? {
        let mut reader = match snapshots.open_reader(&info) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(snapshot = %info.path.display(), error = %e,
                    "skipping an unusable snapshot; trying an older one");
                skipped.push((info.path.clone(), e.to_string()));
                continue;
            }
        };
        let state = load(&mut reader, info.zxid);
        let verdict = reader.finish();
        match (state, verdict) {
            (Ok(s), Ok(())) => {
                base = Some((s, info));
                break;
            }
            (_, Err(e)) => {
                tracing::warn!(snapshot = %info.path.display(), error = %e,
                    "skipping a damaged snapshot; trying an older one");
                skipped.push((info.path.clone(), e.to_string()));
            }
            (Err(m), Ok(())) => {
                tracing::warn!(snapshot = %info.path.display(), error = %m,
                    "skipping a snapshot that does not load; trying an older one");
                skipped.push((info.path.clone(), m));
            }
        }
    }
    let (mut state, snapshot, from) = match base {
        Some((s, info)) => {
            let z = info.zxid;
            (s, Some(info), z + 1)
        }
        None => (empty(), None, 1),
    };
    let mut last_zxid = from - 1;
    let mut replayed = 0;
    for rec in log_from(from).strict() {
        let rec = rec?;
        let zxid = rec.zxid;
        apply(&mut state, rec).map_err(|message| RecoveryError::Apply { zxid, message })?;
        last_zxid = zxid;
        replayed += 1;
    }
    Ok(Recovered { state, snapshot, skipped, replayed, last_zxid })
}
