//! Offline tools behind `corral inspect` and `corral import-zookeeper`. They read (and, for the
//! import, write) files directly, with no server running.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use corral_engine::io::{OpenOptions, SyncVfs, Vfs};
use corral_engine::log::format::{parse_segment_file_name, scan_segment, TailState, SEGMENT_MAGIC};
use corral_engine::snapshot::{
    parse_snapshot_file_name, SnapshotInfo, SnapshotStore, SNAPSHOT_MAGIC,
};

use crate::db::{DbOptions, State, ACCEPTED_EPOCH_FILE, CURRENT_EPOCH_FILE};
use crate::proto::{OpCode, Txn, TxnEntry, DEFAULT_MAX_LEN};
use crate::tree::zk_snapshot::read_snapshot;
use crate::tree::{DataTree, TreeOptions};
use crate::zkfiles;

const MAX: usize = 2 * DEFAULT_MAX_LEN;

fn describe(e: &TxnEntry) -> String {
    let op = OpCode::from_code(e.header.op)
        .map(|o| format!("{o:?}"))
        .unwrap_or_else(|| e.header.op.to_string());
    let mut s = format!("{op} session=0x{:x} cxid={}", e.header.client_id, e.header.cxid);
    let data_len = |t: &Txn| match t {
        Txn::Create(c) | Txn::Create2(c) => Some(c.data.len()),
        Txn::SetData(d) | Txn::Reconfig(d) => Some(d.data.len()),
        _ => None,
    };
    if let Some(p) = e.txn.path() {
        let _ = write!(s, " path={p}");
    }
    if let Some(n) = data_len(&e.txn) {
        let _ = write!(s, " data={n}B");
    }
    match &e.txn {
        Txn::Error(err) => {
            let _ = write!(s, " err={}", err.err);
        }
        Txn::Multi(ops) => {
            let _ = write!(s, " ops={}", ops.len());
        }
        _ => {}
    }
    s
}

/// `corral inspect log FILE`: a Corral log segment or an Apache ZooKeeper txn log.
pub fn inspect_log(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = format!("file: {}\n", path.display());
    if bytes.len() >= 8 && bytes[..8] == SEGMENT_MAGIC {
        let vfs = SyncVfs::new();
        let file = vfs.open(path, OpenOptions::read())?;
        let mut lines = Vec::new();
        let scan = scan_segment(file.as_ref(), |m, payload| {
            let what = match TxnEntry::decode(payload, MAX) {
                Ok(e) => describe(&e),
                Err(err) => format!("(payload is not a ZooKeeper txn: {err})"),
            };
            lines.push(format!("  zxid 0x{:x} offset {} {}B {}", m.zxid, m.offset, m.len, what));
        })?;
        let scan = match scan {
            Ok(s) => s,
            Err(reason) => {
                let _ = writeln!(out, "format: corral log segment\nheader: INVALID ({reason})");
                return Ok(out);
            }
        };
        let h = scan.header;
        let _ = writeln!(
            out,
            "format: corral log segment v{}\nheader: dbid={} base_zxid=0x{:x} prev_zxid=0x{:x} (checksum ok)",
            h.version, h.dbid, h.base_zxid, h.prev_zxid
        );
        if parse_segment_file_name(&path.file_name().unwrap_or_default().to_string_lossy())
            != Some(h.base_zxid)
        {
            out.push_str("warning: the file name does not match the base zxid\n");
        }
        for l in lines {
            out.push_str(&l);
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "records: {} (every checksum ok), last zxid 0x{:x}",
            scan.records, scan.last_zxid
        );
        let verdict = match scan.tail {
            TailState::Clean => format!("end: clean at offset {} of {}", scan.end, scan.file_len),
            TailState::Torn { offset, reason } => format!("end: torn write at offset {offset} ({reason}); recovery cuts it"),
            TailState::Corrupt { offset, reason, next_zxid, next_offset } => format!(
                "end: CORRUPT record at offset {offset} ({reason}), followed by a valid record (zxid 0x{next_zxid:x} at offset {next_offset})"
            ),
        };
        out.push_str(&verdict);
        out.push('\n');
        return Ok(out);
    }
    let log = zkfiles::read_zk_log(&bytes, MAX).map_err(anyhow::Error::msg)?;
    let _ = writeln!(
        out,
        "format: zookeeper txn log v{}\nheader: magic ZKLG dbid={}",
        log.header.version, log.header.dbid
    );
    let mut bad = 0;
    for r in &log.records {
        if !r.checksum_ok {
            bad += 1;
        }
        let what = match &r.entry {
            Ok(e) => format!("zxid 0x{:x} {}", e.header.zxid, describe(e)),
            Err(err) => format!("(undecodable: {err})"),
        };
        let _ = writeln!(
            out,
            "  offset {} {}B {}{}",
            r.offset,
            r.len,
            what,
            if r.checksum_ok { "" } else { "  CHECKSUM MISMATCH" }
        );
    }
    let _ = writeln!(
        out,
        "records: {} ({})",
        log.records.len(),
        if bad == 0 { "every checksum ok".to_string() } else { format!("{bad} bad checksums") }
    );
    match log.end {
        zkfiles::ZkLogEnd::Clean => out.push_str("end: clean\n"),
        zkfiles::ZkLogEnd::Partial { offset, reason } => {
            let _ = writeln!(out, "end: partial record at offset {offset} ({reason})");
        }
    }
    Ok(out)
}

fn tree_summary(out: &mut String, tree: &DataTree, sessions: usize, list_nodes: bool) {
    let _ = writeln!(
        out,
        "sessions: {sessions}\nznodes: {} (ZooKeeper's count, root counted twice)\ndata bytes: {}\ndigest: {}",
        tree.node_count(),
        tree.approximate_data_size(),
        tree.digest()
    );
    if list_nodes {
        for (_, node) in tree.iter_preorder() {
            let st = tree.client_stat(node);
            let _ = writeln!(
                out,
                "  {} data={}B czxid=0x{:x} mzxid=0x{:x} pzxid=0x{:x} version={} cversion={} aversion={} owner=0x{:x} children={}",
                node.path(),
                node.data_len(),
                st.czxid,
                st.mzxid,
                st.pzxid,
                st.version,
                st.cversion,
                st.aversion,
                st.ephemeral_owner,
                st.num_children
            );
        }
    }
}

/// `corral inspect snapshot FILE`: a Corral snapshot or an Apache ZooKeeper snapshot.
pub fn inspect_snapshot(path: &Path, list_nodes: bool) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = format!("file: {}\n", path.display());
    if bytes.len() >= 8 && bytes[..8] == SNAPSHOT_MAGIC {
        let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let zxid = parse_snapshot_file_name(&name)
            .context("a Corral snapshot is named snapshot.<hex zxid>")?;
        let dbid = u64::from_le_bytes(bytes[16..24].try_into().expect("8"));
        let dir = path.parent().unwrap_or(Path::new("."));
        let store = SnapshotStore::open(Arc::new(SyncVfs::new()), dir, dbid)?;
        let _ = writeln!(out, "format: corral snapshot\nheader: zxid=0x{zxid:x} dbid={dbid}");
        match store.read(&SnapshotInfo { zxid, path: path.to_path_buf() }) {
            Ok(body) => {
                let _ = writeln!(out, "body: {} bytes, checksum ok", body.len());
                match State::read_body(&body, zxid, TreeOptions { extended_types: true }, MAX) {
                    Ok(s) => tree_summary(&mut out, &s.tree, s.sessions.len(), list_nodes),
                    Err(e) => {
                        let _ = writeln!(out, "body does not parse: {e}");
                    }
                }
            }
            Err(e) => {
                let _ = writeln!(out, "INVALID: {e}");
            }
        }
        return Ok(out);
    }
    out.push_str("format: zookeeper snapshot\n");
    match read_snapshot(&bytes, TreeOptions { extended_types: true }, Some(MAX)) {
        Ok(s) => {
            out.push_str("seals: every Adler32 seal ok\n");
            if let Some(d) = &s.zxid_digest {
                let _ = writeln!(out, "digest trailer: zxid=0x{:x} digest={}", d.zxid, d.digest);
            }
            if let Some(z) = s.last_processed_zxid {
                let _ = writeln!(out, "last processed zxid: 0x{z:x}");
            }
            tree_summary(&mut out, &s.tree, s.sessions.len(), list_nodes);
        }
        Err(e) => {
            let _ = writeln!(out, "INVALID: {e}");
        }
    }
    Ok(out)
}

/// What an import produced.
#[derive(Debug)]
pub struct ImportSummary {
    /// znodes (ZooKeeper's count).
    pub znodes: usize,
    /// Sessions.
    pub sessions: usize,
    /// Last zxid.
    pub last_zxid: i64,
    /// The ZooKeeper snapshot it started from.
    pub snapshot: Option<std::path::PathBuf>,
    /// Txns replayed from ZooKeeper's logs.
    pub replayed: u64,
    /// The acceptedEpoch written.
    pub accepted_epoch: u32,
    /// The currentEpoch written.
    pub current_epoch: u32,
}

/// `corral import-zookeeper`: converts an Apache ZooKeeper data directory (newest valid
/// snapshot + the logs after it) into a Corral data directory, with ZooKeeper's acceptedEpoch
/// and currentEpoch (so that the server can rejoin its ensemble where ZooKeeper left it). The
/// target may be ZooKeeper's own dataDir (Corral's files go to its `corral-v1`, beside
/// `version-2`); its `corral-v1` must not exist or be empty.
pub fn import_zookeeper(
    from: &Path,
    from_log: Option<&Path>,
    to: &Path,
    progress: bool,
) -> Result<ImportSummary> {
    let opts = DbOptions::new(to);
    let ours = opts.secret_dir();
    if ours.exists() && std::fs::read_dir(&ours)?.next().is_some() {
        bail!(
            "{} is not empty; import-zookeeper only writes a new Corral data directory",
            ours.display()
        );
    }
    let snap_dir = zkfiles::version2(from);
    let log_dir = zkfiles::version2(from_log.unwrap_or(from));
    let bar = if progress {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:40}] {bytes}/{total_bytes} ({eta})",
            )
            .expect("template")
            .progress_chars("=> "),
        );
        b.set_message("replaying ZooKeeper's logs");
        Some(b)
    } else {
        None
    };
    let load = zkfiles::load(
        &snap_dir,
        &log_dir,
        TreeOptions { extended_types: true },
        MAX,
        |done, total| {
            if let Some(b) = &bar {
                b.set_length(total);
                b.set_position(done);
            }
        },
    )
    .map_err(anyhow::Error::msg)
    .with_context(|| format!("loading {}", from.display()))?;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    for (p, why) in &load.skipped {
        tracing::warn!(snapshot = %p.display(), reason = %why, "skipped an unusable ZooKeeper snapshot");
    }
    std::fs::create_dir_all(opts.log_dir())?;
    let store = SnapshotStore::open(Arc::new(SyncVfs::new()), &opts.snap_dir(), 0)?;
    let state = load.state;
    store
        .write(load.last_zxid.max(0) as u64, |w| state.write_body(w))
        .context("writing the Corral snapshot")?;
    // The imported sessions keep ZooKeeper's passwords, so their clients can reconnect; the
    // sessions Corral creates from now on get passwords from a new random secret.
    let mut secret = crate::session::secret::SessionSecret::generate();
    secret.keep_zookeeper_passwords(state.sessions.keys().copied());
    secret.store(&SyncVfs::new(), &opts.secret_dir()).context("writing the session secret")?;
    // The epochs: ZooKeeper's files (in version-2), never older than the last zxid's epoch
    // (ZooKeeper itself derives a missing currentEpoch from the last zxid).
    let last_epoch = (load.last_zxid.max(0) as u64 >> 32) as u32;
    let mut epochs = [0u32; 2];
    for (i, name) in [ACCEPTED_EPOCH_FILE, CURRENT_EPOCH_FILE].into_iter().enumerate() {
        let zk = match std::fs::read_to_string(snap_dir.join(name)) {
            Ok(text) => text.trim().parse::<u32>().with_context(|| {
                format!("{} does not hold an epoch", snap_dir.join(name).display())
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e).context(format!("reading {}", snap_dir.join(name).display())),
        };
        epochs[i] = zk.max(last_epoch);
        corral_engine::io::write_file_atomic(
            &SyncVfs::new(),
            &opts.secret_dir(),
            name,
            epochs[i].to_string().as_bytes(),
        )
        .with_context(|| format!("writing {name}"))?;
    }
    Ok(ImportSummary {
        accepted_epoch: epochs[0],
        current_epoch: epochs[1],
        znodes: state.tree.node_count(),
        sessions: state.sessions.len(),
        last_zxid: load.last_zxid,
        snapshot: load.snapshot.map(|(_, p)| p),
        replayed: load.replayed,
    })
}
