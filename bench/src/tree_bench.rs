//! `corral-bench tree` and `corral-bench snapshot`: the DataTree and snapshots at scale.
//!
//! * tree: apply throughput for create / setData / delete txns, and memory per znode (RSS, and
//!   bytes beyond each znode's path and data) for N znodes of 100-byte data under paths like
//!   /app/service-NNN/node-NNNNNN.
//! * snapshot: time to write and to load a snapshot of N znodes; apply latency p99 while a
//!   snapshot is being written versus without one; recovery (snapshot + M logged txns) time.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use corral_server::db::{Database, DbOptions, State};
use corral_server::proto::{CreateRequest, Data, Request, SetDataRequest, TxnDigest, TxnEntry};
use corral_server::tree::prepare::{prepare_create_session, prepare_txn};
use corral_server::tree::{PrepareConfig, SessionContext, TreeOptions};
use hdrhistogram::Histogram;
use serde::Serialize;

/// Options of `corral-bench tree` / `corral-bench snapshot`.
#[derive(Debug, Clone, clap::Args)]
pub struct TreeArgs {
    /// znodes to build.
    #[arg(long, default_value_t = 1_000_000)]
    pub znodes: usize,
    /// Bytes of data per znode.
    #[arg(long, default_value_t = 100)]
    pub value_bytes: usize,
    /// Txns logged after the snapshot for the recovery measurement (snapshot only).
    #[arg(long, default_value_t = 100_000)]
    pub replay_txns: usize,
    /// Directory for snapshot and log files (snapshot only).
    #[arg(long, default_value = "./corral-bench-data")]
    pub dir: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|x| x.parse::<u64>().ok()))
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

fn path_of(i: usize) -> (String, String) {
    let service = format!("/app/service-{:03}", i % 1000);
    (service.clone(), format!("{service}/node-{i:06}"))
}

fn acl() -> Vec<corral_server::proto::Acl> {
    vec![corral_server::proto::Acl {
        perms: 31,
        id: corral_server::proto::Id { scheme: "world".into(), id: "anyone".into() },
    }]
}

/// A setData of `value` on the `i`th znode of [`path_of`].
fn set_data_of(i: usize, value: &[u8]) -> Request {
    let (_, path) = path_of(i);
    Request::SetData(SetDataRequest { path, data: Data::from(value.to_vec()), version: -1 })
}

/// Builds the txn for `req` against `state`, applies it, and returns the logged entry.
fn step(state: &mut State, req: &Request, zxid: i64, digest: bool) -> TxnEntry {
    let ctx = SessionContext { session_id: 0x100, auth: &[], local_session: false };
    let (header, txn) = prepare_txn(
        &state.tree,
        &ctx,
        &PrepareConfig::default(),
        req,
        1,
        zxid,
        1_700_000_000_000 + zxid,
    );
    let mut e = TxnEntry { header, txn, digest: None };
    state.apply(&e);
    if digest {
        e.digest = Some(TxnDigest { version: 2, tree_digest: state.tree.digest() });
    }
    e
}

/// Builds a state with `n` znodes; returns it, the next zxid and the build rate.
fn build(n: usize, value: &[u8]) -> (State, i64, f64) {
    let mut state = State::new(TreeOptions::default());
    let mut zxid = 1;
    let session = TxnEntry {
        header: corral_server::proto::TxnHeader {
            client_id: 0x100,
            cxid: 0,
            zxid,
            time: 0,
            op: -10,
        },
        txn: prepare_create_session(30_000),
        digest: None,
    };
    state.apply(&session);
    zxid += 1;
    let mk = |path: String, data: &[u8]| {
        Request::Create(CreateRequest {
            path,
            data: Data::from(data.to_vec()),
            acl: acl(),
            flags: 0,
        })
    };
    step(&mut state, &mk("/app".into(), b""), zxid, false);
    zxid += 1;
    for s in 0..1000.min(n) {
        step(&mut state, &mk(format!("/app/service-{s:03}"), b""), zxid, false);
        zxid += 1;
    }
    let t = Instant::now();
    for i in 0..n {
        let (_, p) = path_of(i);
        step(&mut state, &mk(p, value), zxid, false);
        zxid += 1;
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    (state, zxid, rate)
}

#[derive(Debug, Serialize)]
struct TreeResult {
    znodes: usize,
    value_bytes: usize,
    create_per_sec: f64,
    set_data_per_sec: f64,
    delete_per_sec: f64,
    rss_before_bytes: u64,
    rss_after_bytes: u64,
    rss_per_znode: f64,
    path_and_data_bytes_per_znode: f64,
    bytes_per_znode_beyond_path_and_data: f64,
}

/// `corral-bench tree`.
pub fn run_tree(a: TreeArgs) -> Result<()> {
    let value = vec![b'd'; a.value_bytes];
    let before = rss_bytes();
    let (mut state, mut zxid, create_rate) = build(a.znodes, &value);
    let after = rss_bytes();
    let path_data: usize = (0..a.znodes).map(|i| path_of(i).1.len() + a.value_bytes).sum();
    let per = (after.saturating_sub(before)) as f64 / a.znodes as f64;
    let pd = path_data as f64 / a.znodes as f64;
    // setData over the whole keyspace, then deletes of a tenth of it.
    let sets = a.znodes.min(500_000);
    let t = Instant::now();
    for i in 0..sets {
        let req = set_data_of((i * 7919) % a.znodes, &value);
        step(&mut state, &req, zxid, false);
        zxid += 1;
    }
    let set_rate = sets as f64 / t.elapsed().as_secs_f64();
    let dels = a.znodes / 10;
    let t = Instant::now();
    for i in 0..dels {
        let (_, p) = path_of(i);
        step(
            &mut state,
            &Request::Delete(corral_server::proto::DeleteRequest { path: p, version: -1 }),
            zxid,
            false,
        );
        zxid += 1;
    }
    let del_rate = dels as f64 / t.elapsed().as_secs_f64();
    let r = TreeResult {
        znodes: a.znodes,
        value_bytes: a.value_bytes,
        create_per_sec: create_rate,
        set_data_per_sec: set_rate,
        delete_per_sec: del_rate,
        rss_before_bytes: before,
        rss_after_bytes: after,
        rss_per_znode: per,
        path_and_data_bytes_per_znode: pd,
        bytes_per_znode_beyond_path_and_data: per - pd,
    };
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "znodes {} of {} B: create {:.0}/s, setData {:.0}/s, delete {:.0}/s",
            r.znodes, r.value_bytes, r.create_per_sec, r.set_data_per_sec, r.delete_per_sec
        );
        println!(
            "RSS {:.1} MiB -> {:.1} MiB: {:.0} B per znode, of which path+data {:.0} B, beyond them {:.0} B",
            before as f64 / 1048576.0,
            after as f64 / 1048576.0,
            per,
            pd,
            per - pd
        );
    }
    Ok(())
}

#[derive(Debug, Serialize)]
struct SnapshotResult {
    znodes: usize,
    snapshot_bytes: u64,
    write_seconds: f64,
    load_seconds: f64,
    apply_p50_us_idle: u64,
    apply_p99_us_idle: u64,
    apply_p999_us_idle: u64,
    apply_p50_us_during_snapshot: u64,
    apply_p99_us_during_snapshot: u64,
    apply_p999_us_during_snapshot: u64,
    p99_ratio: f64,
    replay_txns: usize,
    recovery_seconds: f64,
}

/// Applies setData txns for `dur` and returns the per-apply latency histogram (ns). As in the
/// server's pipeline, the version after each txn is kept (the server keeps it with the
/// in-flight txn and publishes it to readers), so every apply pays copy-on-write whether or
/// not a snapshot holds an older version.
fn apply_for(
    state: &mut State,
    zxid: &mut i64,
    n: usize,
    value: &[u8],
    dur: Duration,
) -> Histogram<u64> {
    let mut h = Histogram::new_with_bounds(1, 10_000_000_000, 3).expect("hist");
    let end = Instant::now() + dur;
    let mut i = 0usize;
    let mut published = state.tree.clone();
    while Instant::now() < end {
        let req = set_data_of((i * 104_729) % n, value);
        let t = Instant::now();
        step(state, &req, *zxid, false);
        published = state.tree.clone();
        h.saturating_record(t.elapsed().as_nanos().max(1) as u64);
        *zxid += 1;
        i += 1;
    }
    drop(published);
    h
}

fn dir_bytes(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|d| d.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum())
        .unwrap_or(0)
}

/// `corral-bench snapshot`.
pub fn run_snapshot(a: TreeArgs) -> Result<()> {
    let value = vec![b'd'; a.value_bytes];
    let dir = a.dir.join("snapshot-bench");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let (mut state, mut zxid, _) = build(a.znodes, &value);

    // Write and load one snapshot of the whole tree, through the engine's store.
    let mut opts = DbOptions::new(&dir);
    opts.snap_count = u64::MAX / 4;
    let (db, _, _) = Database::open(opts.clone()).context("opening the bench database")?;
    let t = Instant::now();
    let snap = state.clone();
    let info = db.snapshots().write((zxid - 1) as u64, |w| snap.write_body(w))?;
    let write_s = t.elapsed().as_secs_f64();
    let snapshot_bytes = std::fs::metadata(&info.path)?.len();
    let t = Instant::now();
    let body = db.snapshots().read(&info)?;
    let loaded = State::read_body(&body, info.zxid, TreeOptions::default(), 2 << 20)
        .map_err(anyhow::Error::msg)?;
    let load_s = t.elapsed().as_secs_f64();
    anyhow::ensure!(loaded.tree == state.tree, "the loaded tree differs from the written one");
    drop((body, loaded));

    // Apply latency without, then with, a snapshot being written on another thread.
    let dur = Duration::from_secs(3);
    let idle = apply_for(&mut state, &mut zxid, a.znodes, &value, dur);
    let busy = Arc::new(AtomicBool::new(true));
    let writer = {
        let snap = state.clone();
        let store = db.snapshots().clone();
        let z = (zxid - 1) as u64;
        let busy = busy.clone();
        std::thread::spawn(move || {
            let mut rounds = 0;
            // Keep a snapshot in progress for the whole measurement.
            while busy.load(Ordering::Relaxed) && rounds < 20 {
                let s = snap.clone();
                let _ = store.write(z + rounds, |w| s.write_body(w));
                rounds += 1;
            }
        })
    };
    let during = apply_for(&mut state, &mut zxid, a.znodes, &value, dur);
    busy.store(false, Ordering::Relaxed);
    let _ = writer.join();

    // Recovery: the newest snapshot, then `replay_txns` logged txns after it.
    let _ = db.snapshots().purge(1);
    let base = state.clone();
    let snap_zxid = (zxid - 1) as u64;
    db.snapshots().write(snap_zxid, |w| base.write_body(w))?;
    db.log().roll()?;
    for i in 0..a.replay_txns {
        let req = set_data_of((i * 31) % a.znodes, &value);
        let e = step(&mut state, &req, zxid, true);
        db.log().append_async(zxid as u64, e.encode(), Box::new(|_| {}))?;
        zxid += 1;
    }
    db.log().flush()?;
    drop(db);
    let t = Instant::now();
    let (_db, recovered, report) = Database::open(opts)?;
    let recovery_s = t.elapsed().as_secs_f64();
    anyhow::ensure!(report.replayed as usize == a.replay_txns, "replayed {} txns", report.replayed);
    anyhow::ensure!(recovered.tree == state.tree, "the recovered tree differs");

    let us = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) / 1000;
    let r = SnapshotResult {
        znodes: a.znodes,
        snapshot_bytes,
        write_seconds: write_s,
        load_seconds: load_s,
        apply_p50_us_idle: us(&idle, 0.5),
        apply_p99_us_idle: us(&idle, 0.99),
        apply_p999_us_idle: us(&idle, 0.999),
        apply_p50_us_during_snapshot: us(&during, 0.5),
        apply_p99_us_during_snapshot: us(&during, 0.99),
        apply_p999_us_during_snapshot: us(&during, 0.999),
        p99_ratio: during.value_at_quantile(0.99) as f64
            / idle.value_at_quantile(0.99).max(1) as f64,
        replay_txns: a.replay_txns,
        recovery_seconds: recovery_s,
    };
    let _ = dir_bytes(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "snapshot of {} znodes: {:.1} MiB, written in {:.2} s, loaded in {:.2} s",
            r.znodes,
            r.snapshot_bytes as f64 / 1048576.0,
            r.write_seconds,
            r.load_seconds
        );
        println!(
            "apply latency µs p50/p99/p99.9: idle {}/{}/{}, during a snapshot {}/{}/{} (p99 ratio {:.2})",
            r.apply_p50_us_idle, r.apply_p99_us_idle, r.apply_p999_us_idle,
            r.apply_p50_us_during_snapshot, r.apply_p99_us_during_snapshot, r.apply_p999_us_during_snapshot,
            r.p99_ratio
        );
        println!(
            "recovery: snapshot of {} znodes + {} txns in {:.2} s",
            r.znodes, r.replay_txns, r.recovery_seconds
        );
    }
    Ok(())
}
