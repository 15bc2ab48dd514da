//! The server's database: ZooKeeper txns in corral-engine's log, ZooKeeper snapshot bodies in
//! its snapshots. Reopening yields the same tree and sessions; crashes on the simulated disk
//! during appends and snapshot writes recover to a prefix of the txns that includes every
//! acknowledged one; a damaged newest snapshot falls back to the one before.

use corral_server::zxid::Zxid;
use std::path::Path;
use std::sync::{Arc, Mutex};

use corral_engine::io::sim::Faults;
use corral_engine::io::{SimVfs, Vfs};
use corral_engine::log::{FlushStrategy, LogOptions};
use corral_server::db::{Database, DbOptions, ReceiveError, ReceivedSnapshot, SnapReceiver, State};
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
        if db.applied(Zxid(zxid as u64), 100, || state.clone()) {
            snapshots += 1;
        }
        // Let each snapshot finish before the next can trigger.
        while db.snapshot_in_progress() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
    assert!(snapshots >= 3, "snapCount 50 over 300 txns: {snapshots} snapshots");
    drop(db);
    let (db, recovered, report) = Database::open(o.clone()).unwrap();
    assert_eq!(report.last_zxid, 300);
    assert!(report.snapshot.is_some(), "recovery starts from a snapshot");
    assert!(report.replayed < 300, "and replays only what follows it ({})", report.replayed);
    assert_eq!(recovered.tree, state.tree);
    assert_eq!(recovered.sessions, state.sessions);
    assert_eq!(recovered.tree.digest(), state.tree.digest());
    // Purging keeps 3 snapshots and whatever log they need; recovery still works.
    db.purge().unwrap();
    assert_eq!(db.snapshots().list().unwrap().len(), 3);
    // Files an interrupted purge left aside (renamed `*.purge`, perhaps cut short) are not
    // read as snapshots or segments, and the next purge removes them, piece by piece.
    let (snap_dir, log_dir) = (o.snap_dir(), o.log_dir());
    std::fs::write(snap_dir.join("snapshot.1.purge"), vec![7u8; 100_000]).unwrap();
    std::fs::write(log_dir.join("log.1.purge"), vec![7u8; 10_000]).unwrap();
    drop(db);
    let (db, again, _) = Database::open(o.clone()).unwrap();
    assert_eq!(again.tree.digest(), state.tree.digest(), "the files aside are not read");
    db.purge_job().unwrap().run_paced(4096, std::time::Duration::ZERO).unwrap();
    let aside = |d: &Path| {
        std::fs::read_dir(d)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".purge"))
            .count()
    };
    assert_eq!(aside(&snap_dir) + aside(&log_dir), 0, "nothing is left aside");
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
            db.applied(Zxid(zxid as u64), 100, || state.clone());
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
            assert!(db.snapshot_now(Zxid(zxid as u64), &state));
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

/// Appends txns `from..=to` (zxids in epoch `epoch`) made against `spec`, inline, and flushes.
fn append_run(
    db: &Database,
    rng: &mut ChaCha8Rng,
    spec: &mut State,
    states: &mut Vec<(u64, State)>,
    epoch: u64,
    range: std::ops::RangeInclusive<i64>,
) {
    for counter in range {
        let zxid = ((epoch << 32) as i64) | counter;
        let e = next_entry(rng, spec, zxid);
        db.append(&e, Box::new(|_| {})).unwrap();
        states.push((zxid as u64, spec.clone()));
    }
    db.flush().unwrap();
}

fn inline_opts(vfs: &SimVfs) -> DbOptions {
    let mut o = sim_opts(vfs);
    o.inline_log = true;
    o.snap_count = u64::MAX / 4;
    o
}

/// The storage port a replica drives: epochs persist across a reopen, TRUNC rebuilds the state
/// from what remains, SNAP installs a received body with nothing after it, and the history a
/// peer restarts from is the log after the snapshot.
#[test]
fn storage_port_epochs_truncate_install() {
    let vfs = SimVfs::new();
    let (mut db, state, _) = Database::open(inline_opts(&vfs)).unwrap();
    assert_eq!((db.accepted_epoch(), db.current_epoch()), (0, 0));
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut spec = state.clone();
    let mut states = vec![(0u64, state.clone())];
    append_run(&db, &mut rng, &mut spec, &mut states, 0, 1..=20);
    db.persist_accepted_epoch(3).unwrap();
    db.persist_current_epoch(2).unwrap();

    // TRUNC to zxid 10: the state after 10 txns, and the log ends there.
    let truncated = db.truncate_after(Zxid(10)).unwrap();
    assert_eq!(truncated.tree, states[10].1.tree);
    assert_eq!(truncated.sessions, states[10].1.sessions);
    let (base, history) = db.history(4).unwrap();
    assert_eq!(base, Zxid(6));
    assert_eq!(history.iter().map(|(z, _)| z.get()).collect::<Vec<_>>(), vec![7, 8, 9, 10]);
    drop(db);
    let (db, reopened, report) = Database::open(inline_opts(&vfs)).unwrap();
    assert_eq!((db.accepted_epoch(), db.current_epoch()), (3, 2));
    assert_eq!(report.last_zxid, 10);
    assert_eq!(reopened.tree, states[10].1.tree);

    // SNAP at zxid 0x1_0000_0005: a state made elsewhere (another history), installed whole.
    let mut other = State::new(Default::default());
    let mut other_states = vec![];
    let mut rng2 = ChaCha8Rng::seed_from_u64(12);
    for counter in 1..=5i64 {
        let e = next_entry(&mut rng2, &mut other, (1i64 << 32) | counter);
        other_states.push(e);
    }
    let mut db = db;
    let snap_zxid = (1u64 << 32) | 5;
    let received = receive(&db, Zxid(snap_zxid), &other, true).unwrap();
    let installed = db.install_snapshot(Zxid(snap_zxid), Some(&received)).unwrap();
    assert_eq!(installed.tree, other.tree);
    assert_eq!(db.snapshot_zxid(), Zxid(snap_zxid));
    assert_eq!(db.history(10).unwrap(), (Zxid(snap_zxid), vec![]));
    // Appends continue after it.
    let mut spec2 = other.clone();
    let mut after = vec![];
    append_run(&db, &mut rng2, &mut spec2, &mut after, 1, 6..=8);
    drop(db);
    let (db, reopened, report) = Database::open(inline_opts(&vfs)).unwrap();
    assert_eq!(report.snapshot.as_ref().map(|s| s.zxid), Some(snap_zxid));
    assert_eq!(report.replayed, 3);
    assert_eq!(reopened.tree, spec2.tree);
    assert_eq!(reopened.sessions, spec2.sessions);
    assert_eq!(db.history(10).unwrap().1.len(), 3);
    // TRUNC below the snapshot is refused, not carried out.
    let mut db = db;
    assert!(db.truncate_after(Zxid(3)).is_err());
    // An unreadable payload is refused as it arrives; a snapshot of another zxid than the
    // one to install, or one installed already, is refused before anything is changed.
    let garbage = SnapReceiver::read_whole(Zxid(9), b"garbage", Default::default(), 1 << 20);
    assert!(garbage.is_err());
    let other_zxid = receive(&db, Zxid(snap_zxid + 9), &other, true).unwrap();
    assert!(db.install_snapshot(Zxid(snap_zxid + 10), Some(&other_zxid)).is_err());
    assert!(db.install_snapshot(Zxid(snap_zxid), Some(&received)).is_err(), "taken already");
    assert_eq!(db.snapshot_zxid(), Zxid(snap_zxid));
    drop(other_zxid);
    // Nothing left of the refused one's file.
    assert_eq!(db.snapshots().list().unwrap().len(), 1);
}

/// `state` as a learner receives it at `zxid`: its SNAP payload read in pieces, spooled to
/// the database's snapshot directory or not.
fn receive(
    db: &Database,
    zxid: Zxid,
    state: &State,
    spool: bool,
) -> Result<ReceivedSnapshot, ReceiveError> {
    let mut body = Vec::new();
    state.write_body(&mut body).unwrap();
    let mut payload = Vec::new();
    corral_server::zab::wire::write_snap_payload(&mut payload, &body);
    let store = spool.then(|| db.snapshots());
    let mut r = SnapReceiver::new(zxid, Default::default(), 1 << 20, usize::MAX, store)?;
    let mut buf = Vec::new();
    for piece in payload.chunks(1000) {
        buf.extend_from_slice(piece);
        let used = r.feed(&buf)?;
        buf.drain(..used);
    }
    assert!(buf.is_empty() && r.is_complete());
    r.finish()
}

/// SNAP is atomic: a crash at any disk operation of an install leaves, after the reboot,
/// either the old state, or the old state cut after the snapshot's zxid (when the old log went
/// beyond it: those txns were never committed), or the new one — never a mix. Half the cases
/// have an old log entirely below the snapshot, half one entirely above it.
#[test]
fn a_crash_during_install_leaves_the_old_state_or_the_new() {
    let mut saw_old = 0;
    let mut saw_new = 0;
    for k in 0..120u64 {
        let old_epoch = if k % 2 == 0 { 0 } else { 3 };
        let vfs = SimVfs::new();
        let (mut db, state, _) = Database::open(inline_opts(&vfs)).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(100 + k);
        let mut spec = state.clone();
        let mut states = vec![(0u64, state.clone())];
        append_run(&db, &mut rng, &mut spec, &mut states, old_epoch, 1..=15);
        let old = spec.clone();
        let mut other = State::new(Default::default());
        let mut rng2 = ChaCha8Rng::seed_from_u64(900 + k);
        for counter in 1..=6i64 {
            let _ = next_entry(&mut rng2, &mut other, (2i64 << 32) | counter);
        }
        // Spooled as it arrives (the crash may come while it does), or written when
        // installed.
        let spool = k % 4 < 2;
        let crash_at = vfs.stats().mutations + k / 4;
        vfs.set_faults(Faults { crash_after_ops: Some(crash_at), ..Faults::default() });
        if let Ok(r) = receive(&db, Zxid((2u64 << 32) | 6), &other, spool) {
            let _ = db.install_snapshot(Zxid((2u64 << 32) | 6), Some(&r));
        }
        vfs.crash();
        drop(db);
        let img = vfs.crash_image(k);
        let (_, recovered, _) = Database::open(inline_opts(&img))
            .unwrap_or_else(|e| panic!("crash after {k} operations: recovery failed: {e}"));
        let z = (2u64 << 32) | 6;
        let cut = &states.iter().rev().find(|(zxid, _)| *zxid <= z).expect("the empty state").1;
        if recovered.tree == other.tree && recovered.sessions == other.sessions {
            saw_new += 1;
        } else {
            let is = |s: &State| recovered.tree == s.tree && recovered.sessions == s.sessions;
            assert!(is(&old) || is(cut), "crash after {} operations: a mixed state", k / 4);
            saw_old += 1;
        }
    }
    assert!(saw_old > 0 && saw_new > 0, "both outcomes occur ({saw_old} old, {saw_new} new)");
}

/// Damaged small files of the database are refused with an error naming them, not read as
/// zero or a fresh secret: a garbage acceptedEpoch, a truncated session secret.
#[test]
fn damaged_epoch_or_secret_files_are_refused_by_name() {
    let vfs = SimVfs::new();
    let (db, _, _) = Database::open(inline_opts(&vfs)).unwrap();
    drop(db);
    let dir = Path::new("/data/corral-v1");
    corral_engine::io::write_file_atomic(&vfs, dir, "acceptedEpoch", b"not a number").unwrap();
    let err = Database::open(inline_opts(&vfs)).expect_err("a garbage epoch is refused");
    assert!(err.to_string().contains("acceptedEpoch"), "{err}");

    let vfs = SimVfs::new();
    let (db, _, _) = Database::open(inline_opts(&vfs)).unwrap();
    drop(db);
    corral_engine::io::write_file_atomic(&vfs, dir, "session-secret", b"corral-session-secret 1\n")
        .unwrap();
    let err = Database::open(inline_opts(&vfs)).expect_err("a truncated secret is refused");
    assert!(err.to_string().contains("session secret"), "{err}");
}
