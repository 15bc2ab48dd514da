//! Point-in-time snapshots: opaque byte streams stored by zxid.
//!
//! A snapshot file `snapshot.<zxid, lowercase hex>` holds a header, the embedder's body, and a
//! trailer with the body's length and CRC-32C (docs/storage-format.md). It is written under a
//! temporary name, fsynced, renamed into place, and the directory fsynced, so a crash leaves
//! either the whole snapshot or none. [`SnapshotStore`] writes, lists, verifies, and purges
//! them; [`Snapshotter`] writes them on a background thread so that the applier never waits;
//! [`SnapshotPolicy`] decides when, the way ZooKeeper does (randomised so replicas do not all
//! snapshot at once).
//!
//! The engine knows nothing of what the body contains: the server streams its tree and sessions
//! into it.

mod policy;
mod store;
mod thread;

pub use policy::SnapshotPolicy;
pub use store::{
    parse_snapshot_file_name, snapshot_file_name, SnapshotBody, SnapshotInfo, SnapshotReader,
    SnapshotStore, SnapshotWriter, SNAPSHOT_HEADER_LEN, SNAPSHOT_MAGIC, SNAPSHOT_TRAILER_LEN,
};
pub use thread::{SnapshotJob, Snapshotter};

use std::path::PathBuf;
use std::sync::Arc;

/// Errors of snapshot storage.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// A system call failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The file is not a valid snapshot (bad header, short, checksum mismatch).
    #[error("invalid snapshot {}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The embedder's body writer or reader failed.
    #[error("snapshot body for zxid {zxid:#x}: {message}")]
    Body {
        /// The snapshot's zxid.
        zxid: u64,
        /// What went wrong.
        message: String,
    },
}

impl SnapshotError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, e: std::io::Error) -> Self {
        SnapshotError::Io { op, path: path.into(), source: Arc::new(e) }
    }
}
