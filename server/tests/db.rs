//! The server's database: ZooKeeper txns in corral-engine's log, ZooKeeper snapshot bodies in
//! its snapshots. Reopening yields the same tree and sessions; crashes on the simulated disk
//! during appends and snapshot writes recover to a prefix of the txns that includes every
//! acknowledged one; a damaged newest snapshot falls back to the one before.

use std::path::Path;
use std::sync::{Arc, Mutex};

use corral_engine::io::sim::Faults;
use corral_engine::io::{SimVfs, Vfs};
use corral_engine::log::{FlushStrategy, LogOptions};
use corral_server::db::{Database, DbOptions, State};
use corral_server::proto::{
    Acl, CreateRequest, Data, DeleteRequest, Id, Request, SetDataRequest, TxnDigest, TxnEntry,
};
use corral_server::tree::prepare::{prepare_close_session, prepare_create_session, prepare_txn};
use corral_server::tree::{PrepareConfig, SessionContext};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn open_acl() -> Vec<Acl> {
    vec![Acl { perms: 31, id: Id { scheme: "world".into(), id: "anyone".into() } }]
}

/// A random write from one of three sessions, turned into a txn against `spec` (the
/// speculative state), which it is then applied to.
fn next_entry(rng: &mut ChaCha8Rng, spec: &mut State, zxid: i64) -> TxnEntry {
    let session = 0x100 + rng.random_range(0..3i64);
    let cfg = PrepareConfig::default();
    let ctx = SessionContext { session_id: session, auth: &[], local_session: false };
    let time = 1_700_000_000_000 + zxid;
    let (header, txn) = if !spec.sessions.contains_key(&session) {
        let txn = prepare_create_session(30_000);
        (corral_server::proto::TxnHeader { client_id: session, cxid: 0, zxid, time, op: -10 }, txn)
    } else if rng.random_bool(0.05) {
        let txn = prepare_close_session(&spec.tree, session, &cfg);
        (corral_server::proto::TxnHeader { client_id: session, cxid: 0, zxid, time, op: -11 }, txn)
    } else {
        let path = format!("/n{}", rng.random_range(0..8));
        let req = match rng.random_range(0..4) {
            0 => Request::Create(CreateRequest {
                path: path.clone(),
                data: Data::from(vec![rng.random::<u8>(); rng.random_range(0..200)]),
                acl: open_acl(),
                flags: rng.random_range(0..4),
            }),
            1 => Request::Delete(DeleteRequest { path, version: -1 }),
            _ => Request::SetData(SetDataRequest {
                path,
                data: Data::from(vec![rng.random::<u8>(); rng.random_range(0..200)]),
                version: -1,
            }),
        };
        prepare_txn(&spec.tree, &ctx, &cfg, &req, 1, zxid, time)
    };
    let mut entry = TxnEntry { header, txn, digest: None };
    spec.apply(&entry);
    entry.digest = Some(TxnDigest { version: 2, tree_digest: spec.tree.digest() });
    entry
}

fn sim_opts(vfs: &SimVfs) -> DbOptions {
    let mut o = DbOptions::new(Path::new("/data"));
    o.log = LogOptions {
        strategy: FlushStrategy::Group,
        vfs: Some(Arc::new(vfs.clone())),
        prealloc_bytes: 64 << 10,
        segment_bytes_max: 256 << 10,
        record_bytes_max: 64 << 10,
        batch_bytes_max: 64 << 10,
        ..LogOptions::default()
    };
    o.snap_count = 20;
    o
}

#[test]
fn reopen_restores_tree_and_sessions() {
    let tmp = tempfile::tempdir().unwrap();
    let mut o = DbOptions::new(tmp.path());
    o.snap_count = 50;
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let (mut db, mut state, report) = Database::open(o.clone()).unwrap();
    assert_eq!(report.last_zxid, 0);
    let mut spec = state.clone();
    let mut snapshots = 0;
    for zxid in 1..=300i64 {
        let e = next_entry(&mut rng, &mut spec, zxid);
        db.append_sync(&e).unwrap();
        state.apply(&e);
        if db.applied(zxid as u64, 100, || state.clone()) {
            snapshots += 1;
        }
        // Let each snapshot finish before the next can trigger.
        while db.snapshot_in_progress() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
    assert!(snapshots >= 3, "snapCount 50 over 300 txns: {snapshots} snapshots");
    drop(db);
    let (db, recovered, report) = Database::open(o).unwrap();
    assert_eq!(report.last_zxid, 300);
    assert!(report.snapshot.is_some(), "recovery starts from a snapshot");
    assert!(report.replayed < 300, "and replays only what follows it ({})", report.replayed);
    assert_eq!(recovered.tree, state.tree);
    assert_eq!(recovered.sessions, state.sessions);
    assert_eq!(recovered.tree.digest(), state.tree.digest());
    // Purging keeps 3 snapshots and whatever log they need; recovery still works.
    db.purge().unwrap();
    assert_eq!(db.snapshots().list().unwrap().len(), 3);
}

#[test]
fn crashes_during_appends_and_snapshots_recover_the_acknowledged_prefix() {
    let cases: u64 =
        std::env::var("CORRAL_DB_CRASH_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(200);
    let mut fell_back = 0;
    for seed in 0..cases {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let vfs = SimVfs::new();
        let (mut db, mut state, _) = Database::open(sim_opts(&vfs)).unwrap();
        let mut spec = state.clone();
        // states[k] = the state after the first k txns submitted (acknowledged or not: a txn
        // may reach the disk and survive a crash without having been acknowledged).
        let mut states = vec![state.clone()];
        let acked = Arc::new(Mutex::new(0i64));
        let crash_at = vfs.stats().mutations + rng.random_range(20..400);
        vfs.set_faults(Faults { crash_after_ops: Some(crash_at), ..Faults::default() });
        for zxid in 1..=150i64 {
            let e = next_entry(&mut rng, &mut spec, zxid);
            states.push(spec.clone());
            let a = acked.clone();
            let ok = db.append(
                &e,
                Box::new(move |r| {
                    if r.is_ok() {
                        *a.lock().unwrap() = zxid;
                    }
                }),
            );
            if ok.is_err() {
                break;
            }
            // The applier applies only what is durable: wait for it, as the server does.
            while *acked.lock().unwrap() < zxid && db.log().failure().is_none() {
                std::thread::yield_now();
            }
            if db.log().failure().is_some() {
                break;
            }
            state.apply(&e);
            db.applied(zxid as u64, 100, || state.clone());
        }
        let acked = *acked.lock().unwrap();
        vfs.crash();
        drop(db);
        let img = vfs.crash_image(seed);
        let (_, recovered, report) = Database::open(sim_opts(&img))
            .unwrap_or_else(|e| panic!("seed {seed}: recovery failed: {e}"));
        let k = report.last_zxid as i64;
        assert!(k >= acked, "seed {seed}: acknowledged zxid {acked} lost (recovered {k})");
        let want = states.get(k as usize).unwrap_or_else(|| {
            panic!("seed {seed}: recovered zxid {k} was never applied ({} states)", states.len())
        });
        assert_eq!(&recovered.tree, &want.tree, "seed {seed}: tree after zxid {k}");
        assert_eq!(recovered.sessions, want.sessions, "seed {seed}: sessions after zxid {k}");
        if !report.skipped.is_empty() {
            fell_back += 1;
        }
    }
    // A crash never damages a finished snapshot (temporary name, fsync, rename).
    assert_eq!(fell_back, 0);
}

#[test]
fn a_damaged_newest_snapshot_falls_back_to_the_one_before() {
    let vfs = SimVfs::new();
    let (db, mut state, _) = Database::open(sim_opts(&vfs)).unwrap();
    let mut spec = state.clone();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for zxid in 1..=120i64 {
        let e = next_entry(&mut rng, &mut spec, zxid);
        db.append_sync(&e).unwrap();
        state.apply(&e);
        if zxid % 40 == 0 {
            assert!(db.snapshot_now(zxid as u64, &state));
            while db.snapshot_in_progress() {
                std::thread::yield_now();
            }
        }
    }
    let snaps = db.snapshots().list().unwrap();
    assert_eq!(snaps.iter().map(|s| s.zxid).collect::<Vec<_>>(), vec![120, 80, 40]);
    drop(db);
    // Damage the newest snapshot's body.
    let len = vfs.read_file(&snaps[0].path).unwrap().len() as u64;
    vfs.flip_bit(&snaps[0].path, len / 2, 5).unwrap();
    let (_, recovered, report) = Database::open(sim_opts(&vfs)).unwrap();
    assert_eq!(report.snapshot.as_ref().map(|s| s.zxid), Some(80));
    assert_eq!(report.skipped.len(), 1, "{:?}", report.skipped);
    assert_eq!(report.replayed, 40);
    assert_eq!(recovered.tree, state.tree);
    assert_eq!(recovered.sessions, state.sessions);
    let _ = vfs.list_dir(Path::new("/data"));
}
