//! Apache ZooKeeper's data directories (`<dataDir>/version-2`): its txn log files and snapshot
//! files, read for `corral inspect` and `corral import-zookeeper`.
//!
//! A txn log is a FileHeader ("ZKLG", version 2, dbid 0) then records: Adler32 of the entry,
//! the entry as a jute buffer, and the byte 'B'; the file is zero-padded, and a zero length
//! ends it. Snapshots are parsed by [`crate::tree::zk_snapshot`]. ZooKeeper's snapshots are
//! fuzzy: recovery applies every logged txn above the snapshot's zxid.
//!
//! Reading only: this module never writes ZooKeeper's files.

use std::path::{Path, PathBuf};

use crate::db::State;
use crate::proto::{FileHeader, Jute, Reader, TxnEntry};
use crate::tree::zk_snapshot::read_snapshot;
use crate::tree::TreeOptions;

/// "ZKLG".
pub const LOG_MAGIC: i32 = 0x5A4B_4C47;
/// "ZKSN".
pub const SNAPSHOT_MAGIC: i32 = 0x5A4B_534E;

/// One record of a ZooKeeper txn log.
#[derive(Debug)]
pub struct ZkLogRecord {
    /// File offset of the record.
    pub offset: u64,
    /// Whether the stored Adler32 matches the entry.
    pub checksum_ok: bool,
    /// The decoded entry, or why it does not decode.
    pub entry: Result<TxnEntry, String>,
    /// Bytes in the entry.
    pub len: usize,
}

/// How a ZooKeeper txn log ends.
#[derive(Debug, PartialEq, Eq)]
pub enum ZkLogEnd {
    /// A zero length (the padding) or the end of the file, after whole records.
    Clean,
    /// A record cut short, or missing its trailing 'B': a partial write.
    Partial {
        /// Where.
        offset: u64,
        /// What.
        reason: String,
    },
}

/// A parsed ZooKeeper txn log.
#[derive(Debug)]
pub struct ZkLogFile {
    /// The header.
    pub header: FileHeader,
    /// Records, in order.
    pub records: Vec<ZkLogRecord>,
    /// How it ends.
    pub end: ZkLogEnd,
}

fn adler32(b: &[u8]) -> u32 {
    let mut a = adler2::Adler32::new();
    a.write_slice(b);
    a.checksum()
}

/// Parses a ZooKeeper txn log held in memory.
pub fn read_zk_log(bytes: &[u8], max_len: usize) -> Result<ZkLogFile, String> {
    let header = FileHeader::read(&mut Reader::new(bytes)).map_err(|e| format!("header: {e}"))?;
    if header.magic != LOG_MAGIC {
        return Err(format!("not a ZooKeeper txn log (magic {:#x})", header.magic));
    }
    let mut pos = 16usize;
    let mut records = Vec::new();
    let end = loop {
        if pos + 12 > bytes.len() {
            break ZkLogEnd::Clean;
        }
        let checksum = u64::from_be_bytes(bytes[pos..pos + 8].try_into().expect("8"));
        let len = i32::from_be_bytes(bytes[pos + 8..pos + 12].try_into().expect("4"));
        if len == 0 {
            break ZkLogEnd::Clean;
        }
        if len < 0 || len as usize > max_len || pos + 12 + len as usize + 1 > bytes.len() {
            break ZkLogEnd::Partial {
                offset: pos as u64,
                reason: format!("record of {len} bytes runs past the end"),
            };
        }
        let entry = &bytes[pos + 12..pos + 12 + len as usize];
        if bytes[pos + 12 + len as usize] != b'B' {
            break ZkLogEnd::Partial {
                offset: pos as u64,
                reason: "record without its trailing 'B'".into(),
            };
        }
        records.push(ZkLogRecord {
            offset: pos as u64,
            checksum_ok: u64::from(adler32(entry)) == checksum,
            entry: TxnEntry::decode(entry, max_len).map_err(|e| e.to_string()),
            len: len as usize,
        });
        pos += 12 + len as usize + 1;
    };
    Ok(ZkLogFile { header, records, end })
}

/// Parses `prefix.<hex>` names (no suffix).
fn hex_suffix(name: &str, prefix: &str) -> Option<u64> {
    let h = name.strip_prefix(prefix)?;
    (!h.is_empty() && h.len() <= 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u64::from_str_radix(h, 16).ok())
        .flatten()
}

/// Files named by zxid: (zxid, path).
pub type ZxidFiles = Vec<(u64, PathBuf)>;

/// The snapshot files (newest first) and log files (oldest first) of a directory.
pub fn list_dir(dir: &Path) -> std::io::Result<(ZxidFiles, ZxidFiles)> {
    let mut snaps = Vec::new();
    let mut logs = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(z) = hex_suffix(&name, "snapshot.") {
            snaps.push((z, e.path()));
        } else if let Some(z) = hex_suffix(&name, "log.") {
            logs.push((z, e.path()));
        } else if name.starts_with("snapshot.") {
            tracing::warn!(file = %e.path().display(), "skipping a compressed or unknown snapshot file");
        }
    }
    snaps.sort_by_key(|s| std::cmp::Reverse(s.0));
    logs.sort_by_key(|l| l.0);
    Ok((snaps, logs))
}

/// The ZooKeeper directory holding the files: `dir/version-2` if it exists, else `dir`.
pub fn version2(dir: &Path) -> PathBuf {
    let v = dir.join("version-2");
    if v.is_dir() {
        v
    } else {
        dir.to_path_buf()
    }
}

/// What loading a ZooKeeper data directory produced.
#[derive(Debug)]
pub struct ZkLoad {
    /// Tree and sessions.
    pub state: State,
    /// The snapshot used (zxid, file), if any.
    pub snapshot: Option<(u64, PathBuf)>,
    /// Snapshots skipped, and why.
    pub skipped: Vec<(PathBuf, String)>,
    /// Txns applied from the logs.
    pub replayed: u64,
    /// The last zxid applied.
    pub last_zxid: i64,
}

/// Loads a ZooKeeper data directory the way ZooKeeper recovers it: the newest snapshot that
/// parses and whose seals check, then every logged txn above its zxid. `progress(done, total)`
/// reports bytes of log processed.
pub fn load(
    snap_dir: &Path,
    log_dir: &Path,
    tree: TreeOptions,
    max_len: usize,
    mut progress: impl FnMut(u64, u64),
) -> Result<ZkLoad, String> {
    let (snaps, _) = list_dir(snap_dir).map_err(|e| format!("{}: {e}", snap_dir.display()))?;
    let (_, logs) = list_dir(log_dir).map_err(|e| format!("{}: {e}", log_dir.display()))?;
    let mut skipped = Vec::new();
    let mut base = None;
    for (z, path) in &snaps {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        match read_snapshot(&bytes, tree.clone(), Some(max_len)) {
            Ok(s) => {
                base = Some((*z, path.clone(), s));
                break;
            }
            Err(e) => skipped.push((path.clone(), e.to_string())),
        }
    }
    let (snap_zxid, snapshot, mut state) = match base {
        Some((z, path, s)) => (
            z,
            Some((z, path)),
            State {
                tree: s.tree,
                sessions: s.sessions.into_iter().collect(),
                digest_mismatches: 0,
            },
        ),
        None if snaps.is_empty() => (0, None, State::new(tree)),
        None => return Err(format!("no usable snapshot: {skipped:?}")),
    };
    // Logs from the last one starting at or before the snapshot's zxid.
    let first = logs.iter().rposition(|(z, _)| *z <= snap_zxid).unwrap_or(0);
    let total: u64 =
        logs[first..].iter().map(|(_, p)| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)).sum();
    let mut done = 0u64;
    let mut replayed = 0;
    let mut last = snap_zxid as i64;
    for (_, path) in &logs[first..] {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let log = read_zk_log(&bytes, max_len).map_err(|e| format!("{}: {e}", path.display()))?;
        for r in log.records {
            if !r.checksum_ok {
                return Err(format!("{}: bad checksum at offset {}", path.display(), r.offset));
            }
            let entry =
                r.entry.map_err(|e| format!("{}: offset {}: {e}", path.display(), r.offset))?;
            if entry.header.zxid <= last {
                continue;
            }
            state.apply(&entry);
            last = entry.header.zxid;
            replayed += 1;
        }
        done += bytes.len() as u64;
        progress(done, total);
    }
    Ok(ZkLoad { state, snapshot, skipped, replayed, last_zxid: last })
}
