//! Snapshots and recovery: round trips, retention, a damaged newest snapshot, and crashes (on
//! the simulated disk) during appends, snapshot writes and purges. The state is a model — the
//! list of applied records — so "recovered state" can be compared exactly.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use corral_engine::io::sim::Faults;
use corral_engine::io::{SimVfs, Vfs};
use corral_engine::log::{FlushStrategy, LogCore, LogOptions};
use corral_engine::recovery::{recover, Recovered};
use corral_engine::snapshot::{SnapshotBody, SnapshotStore, Snapshotter};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

type State = Vec<(u64, Vec<u8>)>;

fn encode(state: &State, w: &mut dyn Write) -> std::io::Result<()> {
    w.write_all(&(state.len() as u64).to_le_bytes())?;
    for (z, p) in state {
        w.write_all(&z.to_le_bytes())?;
        w.write_all(&(p.len() as u32).to_le_bytes())?;
        w.write_all(p)?;
    }
    Ok(())
}

fn decode(r: &mut dyn Read) -> Result<State, String> {
    let mut b8 = [0u8; 8];
    let mut b4 = [0u8; 4];
    r.read_exact(&mut b8).map_err(|e| e.to_string())?;
    let n = u64::from_le_bytes(b8);
    let mut out = Vec::new();
    for _ in 0..n {
        r.read_exact(&mut b8).map_err(|e| e.to_string())?;
        r.read_exact(&mut b4).map_err(|e| e.to_string())?;
        let len = u32::from_le_bytes(b4) as usize;
        if len > 1 << 20 {
            return Err("implausible length".into());
        }
        let mut p = vec![0u8; len];
        r.read_exact(&mut p).map_err(|e| e.to_string())?;
        out.push((u64::from_le_bytes(b8), p));
    }
    Ok(out)
}

fn log_opts(vfs: &SimVfs) -> LogOptions {
    LogOptions {
        strategy: FlushStrategy::Group,
        vfs: Some(Arc::new(vfs.clone())),
        prealloc_in_background: false,
        prealloc_bytes: 16 << 10,
        segment_bytes_max: 64 << 10,
        record_bytes_max: 4 << 10,
        batch_bytes_max: 8 << 10,
        ..LogOptions::default()
    }
}

fn recover_model(vfs: &SimVfs) -> Recovered<State> {
    let (core, _) = LogCore::open(Path::new("/d/log"), log_opts(vfs)).expect("log opens");
    let store = SnapshotStore::open(Arc::new(vfs.clone()), Path::new("/d/snap"), 0).unwrap();
    recover(
        &store,
        |r, _| decode(r),
        Vec::new,
        |from| core.iter_from(from),
        |s, rec| {
            s.push((rec.zxid, rec.payload));
            Ok(())
        },
    )
    .expect("recovery")
}

#[test]
fn write_list_read_purge() {
    let vfs = SimVfs::new();
    let store = SnapshotStore::open(Arc::new(vfs.clone()), Path::new("/s"), 3).unwrap();
    for z in [5u64, 0x1_0000_0003, 9, 2, 7] {
        let state: State = vec![(z, vec![z as u8; 10])];
        store.write(z, |w| encode(&state, w)).unwrap();
    }
    let list = store.list().unwrap();
    let zx: Vec<u64> = list.iter().map(|s| s.zxid).collect();
    assert_eq!(zx, vec![0x1_0000_0003, 9, 7, 5, 2], "newest first");
    assert!(list[0].path.ends_with("snapshot.100000003"));
    let body = store.read(&list[1]).unwrap();
    assert_eq!(decode(&mut body.as_slice()).unwrap(), vec![(9, vec![9u8; 10])]);
    let removed = store.purge(3).unwrap();
    assert_eq!(removed.len(), 2);
    assert_eq!(store.list().unwrap().len(), 3);
    assert_eq!(store.remove_after(7).unwrap().len(), 2);
    assert_eq!(store.list().unwrap().iter().map(|s| s.zxid).collect::<Vec<_>>(), vec![7]);
    // Another database's snapshot is refused.
    let other = SnapshotStore::open(Arc::new(vfs.clone()), Path::new("/s"), 4).unwrap();
    assert!(other.read(&other.list().unwrap()[0]).is_err());
}

#[test]
fn read_rest_returns_the_body_and_finish_still_checks_it() {
    let vfs = SimVfs::new();
    let store = SnapshotStore::open(Arc::new(vfs.clone()), Path::new("/s"), 0).unwrap();
    // Big enough to span several of the reader's internal buffers.
    let state: State = (0..40u64).map(|z| (z, vec![z as u8; 10_000])).collect();
    let info = store.write(40, |w| encode(&state, w)).unwrap();
    let whole = store.read(&info).unwrap();
    // Some bytes read as a stream, the rest at once: together they are the body.
    let mut r = store.open_reader(&info).unwrap();
    let mut head = [0u8; 100];
    r.read_exact(&mut head).unwrap();
    let rest = r.read_rest().unwrap();
    assert!(matches!(rest, SnapshotBody::Read(_)), "the simulated disk has no descriptor");
    assert_eq!([&head[..], &rest[..]].concat(), whole);
    r.finish().unwrap();
    // A damaged body is still caught, by finish.
    vfs.flip_bit(&info.path, 50_000, 3).unwrap();
    let mut r = store.open_reader(&info).unwrap();
    let rest = r.read_rest().unwrap();
    assert_eq!(rest.len(), whole.len());
    assert!(r.finish().is_err(), "a flipped bit must fail the checksum");
}

#[test]
fn read_rest_maps_a_real_file_and_finish_still_checks_it() {
    let dir = tempfile::tempdir().unwrap();
    let vfs = corral_engine::io::SyncVfs::new();
    let store = SnapshotStore::open(Arc::new(vfs), dir.path(), 0).unwrap();
    // Over the reader's 1 MiB buffer, so the map starts inside already buffered bytes.
    let state: State = (0..300u64).map(|z| (z, vec![z as u8; 10_000])).collect();
    let info = store.write(300, |w| encode(&state, w)).unwrap();
    let whole = store.read(&info).unwrap();
    for head_len in [0usize, 100, 4096, 5000] {
        let mut r = store.open_reader(&info).unwrap();
        let mut head = vec![0u8; head_len];
        r.read_exact(&mut head).unwrap();
        let rest = r.read_rest().unwrap();
        assert!(matches!(rest, SnapshotBody::Mapped { .. }), "a real file is mapped");
        assert_eq!([&head[..], &rest[..]].concat(), whole, "after {head_len} bytes");
        r.finish().unwrap();
    }
    // Damage: the mapped body is checksummed too.
    let mut bytes = std::fs::read(&info.path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x10;
    std::fs::write(&info.path, &bytes).unwrap();
    let mut r = store.open_reader(&info).unwrap();
    let rest = r.read_rest().unwrap();
    assert_eq!(rest.len(), whole.len());
    drop(rest);
    assert!(r.finish().is_err(), "a flipped bit must fail the checksum");
}

/// Bodies of every size around the block and buffer boundaries, written in pieces of odd
/// sizes, read back exactly: on a real file (O_DIRECT whole blocks, the last partial one
/// buffered) and on the simulated disk (which refuses unaligned O_DIRECT writes).
#[test]
fn bodies_of_any_size_round_trip_through_direct_writes() {
    let dir = tempfile::tempdir().unwrap();
    let real =
        SnapshotStore::open(Arc::new(corral_engine::io::SyncVfs::new()), dir.path(), 0).unwrap();
    let sim = SnapshotStore::open(Arc::new(SimVfs::new()), Path::new("/s"), 0).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let sizes =
        [0usize, 1, 4055, 4056, 4057, 8192, (1 << 20) - 41, 1 << 20, (1 << 20) + 1, 3 << 20];
    for (i, len) in sizes.into_iter().enumerate() {
        let mut body = vec![0u8; len];
        rng.fill(&mut body[..]);
        for store in [&real, &sim] {
            let mut w = store.create(i as u64 + 1).unwrap();
            let mut at = 0;
            while at < len {
                let n = rng.random_range(1..=70_000).min(len - at);
                w.write_all(&body[at..at + n]).unwrap();
                at += n;
            }
            let info = w.finish().unwrap();
            assert_eq!(store.read(&info).unwrap(), body, "{len} bytes");
        }
    }
}

#[test]
fn unfinished_snapshots_are_invisible_and_cleaned() {
    let vfs = SimVfs::new();
    let dir = Path::new("/s");
    let store = SnapshotStore::open(Arc::new(vfs.clone()), dir, 0).unwrap();
    let mut w = store.create(4).unwrap();
    w.write_all(b"partial").unwrap();
    drop(w);
    assert!(store.list().unwrap().is_empty(), "a temporary file is not a snapshot");
    let store = SnapshotStore::open(Arc::new(vfs.clone()), dir, 0).unwrap();
    assert!(vfs.list_dir(dir).unwrap().is_empty(), "reopening removes it");
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn a_damaged_newest_snapshot_falls_back_to_the_one_before() {
    let vfs = SimVfs::new();
    let (mut core, _) = LogCore::open(Path::new("/d/log"), log_opts(&vfs)).unwrap();
    let store = SnapshotStore::open(Arc::new(vfs.clone()), Path::new("/d/snap"), 0).unwrap();
    let mut state: State = Vec::new();
    for z in 1..=30u64 {
        let p = vec![z as u8; 50];
        core.write_batch(&[(z, &p)], |_| {}).unwrap();
        state.push((z, p));
        if z == 10 || z == 20 {
            let s = state.clone();
            store.write(z, |w| encode(&s, w)).unwrap();
            core.roll().unwrap();
        }
    }
    drop(core);
    // Damage one body byte of snapshot.14 (zxid 20).
    let newest = store.list().unwrap()[0].clone();
    assert_eq!(newest.zxid, 20);
    vfs.flip_bit(&newest.path, 60, 3).unwrap();
    let r = recover_model(&vfs);
    assert_eq!(r.snapshot.as_ref().map(|s| s.zxid), Some(10), "fell back to the older snapshot");
    assert_eq!(r.skipped.len(), 1);
    assert!(r.skipped[0].1.contains("checksum"), "{:?}", r.skipped);
    assert_eq!(r.replayed, 20, "replays the log from zxid 11");
    assert_eq!(r.state, state);
    assert_eq!(r.last_zxid, 30);
}

#[test]
fn purged_log_records_without_a_usable_snapshot_are_an_error() {
    let vfs = SimVfs::new();
    let (mut core, _) = LogCore::open(Path::new("/d/log"), log_opts(&vfs)).unwrap();
    let store = SnapshotStore::open(Arc::new(vfs.clone()), Path::new("/d/snap"), 0).unwrap();
    for z in 1..=20u64 {
        core.write_batch(&[(z, &[1u8; 10][..])], |_| {}).unwrap();
        if z == 10 {
            store.write(10, |w| encode(&vec![], w)).unwrap();
            core.roll().unwrap();
        }
    }
    core.purge_before(11).unwrap();
    drop(core);
    // The only snapshot is damaged: starting from empty would silently miss zxids 1..=10.
    let s = store.list().unwrap()[0].clone();
    vfs.flip_bit(&s.path, 45, 0).unwrap();
    let (core, _) = LogCore::open(Path::new("/d/log"), log_opts(&vfs)).unwrap();
    let r = recover(
        &store,
        |r, _| decode(r),
        Vec::new,
        |f| core.iter_from(f),
        |s: &mut State, rec| {
            s.push((rec.zxid, rec.payload));
            Ok(())
        },
    );
    assert!(
        matches!(
            r,
            Err(corral_engine::recovery::RecoveryError::Log(
                corral_engine::log::LogError::Purged { .. }
            ))
        ),
        "{r:?}"
    );
}

#[test]
fn background_snapshotter_writes_and_skips_when_busy() {
    let vfs = SimVfs::new();
    let store = SnapshotStore::open(Arc::new(vfs.clone()), Path::new("/s"), 0).unwrap();
    let snap = Snapshotter::spawn(store.clone()).unwrap();
    let (gate_tx, gate_rx) = std::sync::mpsc::channel::<()>();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let d1 = done_tx.clone();
    assert!(snap.try_submit(
        1,
        Box::new(move |w| {
            gate_rx.recv().ok();
            w.write_all(b"one")
        }),
        move |r| d1.send(r.map(|i| i.zxid)).unwrap(),
    ));
    assert!(snap.is_busy());
    // A second request while the first is being written is skipped, as in ZooKeeper.
    assert!(!snap.try_submit(2, Box::new(|w| w.write_all(b"two")), |_| panic!("skipped")));
    gate_tx.send(()).unwrap();
    assert_eq!(done_rx.recv().unwrap().unwrap(), 1);
    assert!(snap.try_submit(3, Box::new(|w| w.write_all(b"three")), move |r| {
        done_tx.send(r.map(|i| i.zxid)).unwrap()
    }));
    assert_eq!(done_rx.recv().unwrap().unwrap(), 3);
    drop(snap);
    assert_eq!(store.read(&store.list().unwrap()[0]).unwrap(), b"three");
}

/// Random appends, snapshots (with log roll and purge, keeping 3) and a crash at a random
/// operation; recovery must yield a prefix of what was appended that contains every
/// acknowledged record.
#[test]
fn crashes_during_appends_snapshots_and_purges() {
    let cases: u64 =
        std::env::var("CORRAL_SNAP_CRASH_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(600);
    let mut snapshot_crashes = 0;
    for seed in 0..cases {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let vfs = SimVfs::new();
        let (mut core, _) = LogCore::open(Path::new("/d/log"), log_opts(&vfs)).unwrap();
        let store = SnapshotStore::open(Arc::new(vfs.clone()), Path::new("/d/snap"), 0).unwrap();
        let mut state: State = Vec::new(); // applied = acknowledged
        let mut submitted: State = Vec::new();
        let mut crash_set = false;
        let mut in_snapshot = false;
        for step in 0..60 {
            if !crash_set && step >= 10 && rng.random_bool(0.1) {
                let m = vfs.stats().mutations;
                vfs.set_faults(Faults {
                    crash_after_ops: Some(m + rng.random_range(1..30)),
                    ..Faults::default()
                });
                crash_set = true;
            }
            if rng.random_bool(0.15) && !state.is_empty() {
                let z = state.last().unwrap().0;
                let s = state.clone();
                in_snapshot = true;
                if store.write(z, |w| encode(&s, w)).is_err() || core.roll().is_err() {
                    snapshot_crashes += 1;
                    break;
                }
                in_snapshot = false;
                let snaps = store.list().unwrap_or_default();
                if snaps.len() > 3 {
                    let oldest_kept = snaps[2].zxid;
                    if store.purge(3).is_err() || core.purge_before(oldest_kept + 1).is_err() {
                        break;
                    }
                }
                continue;
            }
            let n = rng.random_range(1..6);
            let start = submitted.len();
            let mut z = submitted.last().map_or(0, |r| r.0);
            for _ in 0..n {
                z += 1;
                let len = rng.random_range(0..300);
                submitted.push((z, vec![(z % 251) as u8; len]));
            }
            let batch: Vec<(u64, &[u8])> =
                submitted[start..].iter().map(|(z, p)| (*z, p.as_slice())).collect();
            let mut durable = 0;
            let ok = core.write_batch(&batch, |k| durable = k).is_ok();
            state.extend(submitted[start..start + durable].iter().cloned());
            if !ok {
                break;
            }
        }
        let _ = in_snapshot;
        vfs.crash();
        drop(core);
        let img = vfs.crash_image(seed);
        let r = recover_model(&img);
        let ctx = format!("seed {seed}");
        assert!(r.state.len() >= state.len(), "{ctx}: lost acknowledged records");
        assert_eq!(r.state[..], submitted[..r.state.len()], "{ctx}: a prefix of what was appended");
        assert!(
            r.skipped.is_empty(),
            "{ctx}: a finished snapshot is never damaged by a crash: {:?}",
            r.skipped
        );
    }
    assert!(
        snapshot_crashes > cases / 50,
        "crashes must also land inside snapshot writes ({snapshot_crashes})"
    );
}

#[test]
fn an_inline_snapshotter_writes_before_it_returns() {
    let vfs = SimVfs::new();
    let store = SnapshotStore::open(Arc::new(vfs.clone()), Path::new("/i"), 0).unwrap();
    let s = Snapshotter::inline(store.clone());
    let state: State = vec![(1, b"one".to_vec()), (2, b"two".to_vec())];
    let done = Arc::new(std::sync::Mutex::new(None));
    let d = done.clone();
    let st = state.clone();
    assert!(s.try_submit(2, Box::new(move |w| encode(&st, w)), move |r| {
        *d.lock().unwrap() = Some(r.map(|i| i.zxid).map_err(|e| e.to_string()));
    }));
    // Written and reported on this thread, before try_submit returned; never busy.
    assert_eq!(*done.lock().unwrap(), Some(Ok(2)));
    assert!(!s.is_busy());
    let list = store.list().unwrap();
    assert_eq!(list.iter().map(|i| i.zxid).collect::<Vec<_>>(), vec![2]);
    let body = store.read(&list[0]).unwrap();
    assert_eq!(decode(&mut &body[..]).unwrap(), state);
}
