//! The log conformance suite: every backend (io_uring, plain syscalls, simulated disk) runs every
//! flush strategy through the same checks — append / reopen, a torn tail, corruption,
//! truncate_after, roll, iteration from any zxid, and failure latching.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use corral_engine::io::{OpenOptions, SimVfs, SyncVfs, UringVfs, Vfs};
use corral_engine::log::{
    FlushStrategy, Log, LogCore, LogError, LogOptions, Prealloc, RecoveryMode,
};

struct Env {
    vfs: Arc<dyn Vfs>,
    dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

type MakeEnv = Box<dyn Fn() -> Env>;

fn backends() -> Vec<(&'static str, MakeEnv)> {
    let real = |vfs: Arc<dyn Vfs>| {
        let tmp = tempfile::tempdir().expect("tempdir");
        Env { vfs, dir: tmp.path().join("log"), _tmp: Some(tmp) }
    };
    let mut v: Vec<(&'static str, MakeEnv)> = vec![
        ("sync", Box::new(move || real(Arc::new(SyncVfs::new())))),
        (
            "sim",
            Box::new(|| Env { vfs: Arc::new(SimVfs::new()), dir: "/data/log".into(), _tmp: None }),
        ),
    ];
    match UringVfs::new() {
        Ok(_) => {
            v.push(("uring", Box::new(move || real(Arc::new(UringVfs::new().expect("ring"))))))
        }
        // Named so that a machine without io_uring shows what it skipped.
        Err(e) => eprintln!("SKIPPED uring backend: io_uring unavailable here: {e}"),
    }
    v
}

fn opts(env: &Env, strategy: FlushStrategy) -> LogOptions {
    LogOptions {
        strategy,
        vfs: Some(env.vfs.clone()),
        prealloc: Prealloc::ZeroFill,
        prealloc_bytes: 64 << 10,
        segment_bytes_max: 128 << 10,
        record_bytes_max: 20 << 10,
        batch_bytes_max: 48 << 10,
        batch_records_max: 64,
        queue_bytes_max: 1 << 20,
        writer_spin_us: 0,
        ..LogOptions::default()
    }
}

/// Deterministic payload for a zxid, of varied length (some empty, some multi-block).
fn payload(zxid: u64) -> Vec<u8> {
    let len = match zxid % 7 {
        0 => 0,
        1 => 1,
        2 => 5000,
        3 => 17 << 10,
        _ => (zxid as usize * 37) % 900,
    };
    (0..len).map(|i| (zxid as usize * 31 + i) as u8).collect()
}

fn read_all(log: &Log, from: u64) -> Vec<(u64, Vec<u8>)> {
    log.iter_from(from)
        .map(|r| r.map(|r| (r.zxid, r.payload)).unwrap_or_else(|e| panic!("{:?}: {e}", log)))
        .collect()
}

fn expect_range(got: &[(u64, Vec<u8>)], range: std::ops::RangeInclusive<u64>, ctx: &str) {
    let want: Vec<u64> = range.collect();
    let zx: Vec<u64> = got.iter().map(|(z, _)| *z).collect();
    assert_eq!(zx, want, "{ctx}: zxids");
    for (z, p) in got {
        assert_eq!(p, &payload(*z), "{ctx}: payload of {z}");
    }
}

fn each(mut f: impl FnMut(&str, FlushStrategy, &Env)) {
    for (name, make) in backends() {
        for s in FlushStrategy::ALL {
            let env = make();
            f(name, s, &env);
        }
    }
}

fn segment_paths(env: &Env) -> Vec<PathBuf> {
    let mut v: Vec<(u64, PathBuf)> = env
        .vfs
        .list_dir(&env.dir)
        .unwrap()
        .into_iter()
        .filter_map(|n| {
            corral_engine::log::format::parse_segment_file_name(&n).map(|z| (z, env.dir.join(n)))
        })
        .collect();
    v.sort();
    v.into_iter().map(|(_, p)| p).collect()
}

fn poke(vfs: &dyn Vfs, path: &Path, offset: u64, bytes: &[u8]) {
    let mut f = vfs.open(path, OpenOptions::read_write()).unwrap();
    f.write_all_at(bytes, offset).unwrap();
    f.sync_all().unwrap();
}

#[test]
fn append_from_many_threads_then_reopen() {
    each(|b, s, env| {
        let ctx = format!("{b}/{s}");
        let (log, report) = Log::open(&env.dir, opts(env, s)).unwrap();
        assert_eq!(report.last_zxid, 0);
        // Eight appenders share the zxid sequence through append_next.
        let n_per = 40;
        std::thread::scope(|sc| {
            for _ in 0..8 {
                sc.spawn(|| {
                    for _ in 0..n_per {
                        // The payload depends on the zxid, which is assigned at enqueue time:
                        // write a placeholder of the right size class, then check by zxid below.
                        let z = log.append_next(vec![0u8; 3]).unwrap();
                        assert!(z >= 1);
                    }
                });
            }
        });
        assert_eq!(log.durable_zxid(), 8 * n_per);
        // A sync control runs after the writer has finished the last batch's bookkeeping.
        log.sync().unwrap();
        let got = read_all(&log, 1);
        assert_eq!(got.len() as u64, 8 * n_per, "{ctx}");
        assert!(got.windows(2).all(|w| w[0].0 + 1 == w[1].0), "{ctx}: dense and ordered");
        let m = log.metrics();
        assert_eq!(m.appends, 8 * n_per, "{ctx}");
        log.close().unwrap();

        // Reopen: everything is there; appends continue after the last zxid.
        let (log, report) = Log::open(&env.dir, opts(env, s)).unwrap();
        assert_eq!(report.last_zxid, 8 * n_per, "{ctx}");
        assert_eq!(report.cut, None, "{ctx}: a clean close leaves no torn tail");
        let next = 8 * n_per + 1;
        for z in next..next + 30 {
            log.append(z, payload(z)).unwrap();
        }
        assert!(matches!(log.append(next, vec![]), Err(LogError::ZxidNotIncreasing { .. })));
        let got = read_all(&log, next);
        expect_range(&got, next..=next + 29, &ctx);
        drop(log);
        let (log, _) = Log::open(&env.dir, opts(env, s)).unwrap();
        assert_eq!(read_all(&log, 1).len() as u64, 8 * n_per + 30, "{ctx}");
    });
}

#[test]
fn iteration_from_any_zxid_across_segments() {
    each(|b, s, env| {
        let ctx = format!("{b}/{s}");
        let (log, _) = Log::open(&env.dir, opts(env, s)).unwrap();
        // Sparse zxids (epoch jumps), enough bytes for several 128 KiB segments.
        let zxids: Vec<u64> =
            (1..=120u64).map(|i| if i > 60 { (1 << 32) + i } else { i }).collect();
        for &z in &zxids {
            log.append(z, payload(z)).unwrap();
        }
        let segs = segment_paths(env);
        assert!(segs.len() >= 3, "{ctx}: expected several segments, got {}", segs.len());
        for (i, &from) in zxids.iter().enumerate() {
            let got: Vec<u64> = read_all(&log, from).iter().map(|(z, _)| *z).collect();
            assert_eq!(got, zxids[i..].to_vec(), "{ctx}: from {from:#x}");
        }
        // A zxid between records starts at the next one; past the end gives nothing.
        let got: Vec<u64> = read_all(&log, 61).iter().map(|(z, _)| *z).collect();
        assert_eq!(got, zxids[60..].to_vec(), "{ctx}");
        assert!(read_all(&log, u64::MAX).is_empty());
        for (z, p) in read_all(&log, 0) {
            assert_eq!(p, payload(z), "{ctx}");
        }
    });
}

#[test]
fn roll_starts_a_segment_at_the_next_append() {
    each(|b, s, env| {
        let ctx = format!("{b}/{s}");
        let (log, _) = Log::open(&env.dir, opts(env, s)).unwrap();
        for z in 1..=5 {
            log.append(z, payload(z)).unwrap();
        }
        assert_eq!(segment_paths(env).len(), 1, "{ctx}");
        log.roll().unwrap();
        assert_eq!(segment_paths(env).len(), 1, "{ctx}: rolling creates nothing by itself");
        log.append(6, payload(6)).unwrap();
        let segs = segment_paths(env);
        assert_eq!(segs.len(), 2, "{ctx}");
        assert!(segs[1].ends_with("log.6"), "{ctx}: named after its first zxid: {segs:?}");
        log.append(7, payload(7)).unwrap();
        expect_range(&read_all(&log, 1), 1..=7, &ctx);
        drop(log);
        let (log, r) = Log::open(&env.dir, opts(env, s)).unwrap();
        assert_eq!((r.segments, r.last_zxid), (2, 7), "{ctx}");
        expect_range(&read_all(&log, 3), 3..=7, &ctx);
    });
}

#[test]
fn torn_tail_is_cut_and_appends_continue() {
    each(|b, s, env| {
        let ctx = format!("{b}/{s}");
        let (log, _) = Log::open(&env.dir, opts(env, s)).unwrap();
        for z in 1..=10 {
            log.append(z, payload(z)).unwrap();
        }
        drop(log);
        let seg = segment_paths(env).pop().unwrap();
        // Where record 11 would go: a frame claiming a later batch start, half written.
        let end = {
            let (core, _) = LogCore::open(&env.dir, opts(env, s)).unwrap();
            let mut end = 0;
            let f = env.vfs.open(&seg, OpenOptions::read()).unwrap();
            corral_engine::log::format::scan_segment(f.as_ref(), |m, _| {
                end = m.offset + 20 + u64::from(m.len)
            })
            .unwrap()
            .unwrap();
            drop(core);
            end
        };
        let mut torn = Vec::new();
        corral_engine::log::format::encode_record(&mut torn, 11, end as u32, &payload(11));
        torn.truncate(torn.len() / 2 + 3);
        poke(env.vfs.as_ref(), &seg, end, &torn);

        let (log, report) = Log::open(&env.dir, opts(env, s)).unwrap();
        let (path, off, _) = report.cut.clone().expect("torn tail reported");
        assert_eq!((path, off), (seg.clone(), end), "{ctx}");
        assert_eq!(report.last_zxid, 10, "{ctx}");
        expect_range(&read_all(&log, 1), 1..=10, &ctx);
        for z in 11..=14 {
            log.append(z, payload(z)).unwrap();
        }
        drop(log);
        let (log, report) = Log::open(&env.dir, opts(env, s)).unwrap();
        assert_eq!(report.cut, None, "{ctx}: the cut was durable");
        expect_range(&read_all(&log, 1), 1..=14, &ctx);
    });
}

#[test]
fn corruption_followed_by_valid_records_refuses_to_open() {
    each(|b, s, env| {
        let ctx = format!("{b}/{s}");
        // With writes in flight, later batches within the window (16 KiB here) of the damage
        // may be writes that landed before it at a crash: two large records end beyond it.
        let pipelined = s.is_pipelined();
        let o = LogOptions { in_flight: 1, batch_bytes_max: 4 << 10, ..opts(env, s) };
        let opts = |_: &Env, _| o.clone();
        let (log, _) = Log::open(&env.dir, opts(env, s)).unwrap();
        // Separate appends: separate batches.
        for z in 1..=6 {
            log.append(z, payload(z)).unwrap();
        }
        if pipelined {
            for z in 7..=8 {
                log.append(z, vec![z as u8; 18 << 10]).unwrap();
            }
        }
        drop(log);
        let seg = segment_paths(env).pop().unwrap();
        let f = env.vfs.open(&seg, OpenOptions::read()).unwrap();
        let mut metas = Vec::new();
        corral_engine::log::format::scan_segment(f.as_ref(), |m, _| metas.push(m))
            .unwrap()
            .unwrap();
        drop(f);
        // Damage record 3's payload (a batch that later batches follow).
        let m = metas[2];
        assert_eq!(m.zxid, 3);
        let mut byte = [0u8; 1];
        let f = env.vfs.open(&seg, OpenOptions::read()).unwrap();
        f.read_at(&mut byte, m.offset + 20).unwrap();
        drop(f);
        poke(env.vfs.as_ref(), &seg, m.offset + 20, &[byte[0] ^ 0x40]);

        match Log::open(&env.dir, opts(env, s)) {
            Err(LogError::Corrupt { segment, offset, last_good_zxid, next_zxid, .. }) => {
                assert_eq!(segment, seg, "{ctx}");
                assert_eq!(offset, m.offset, "{ctx}");
                assert_eq!(last_good_zxid, 2, "{ctx}");
                if pipelined {
                    assert!(next_zxid > Some(3), "{ctx}: {next_zxid:?}");
                } else {
                    assert_eq!(next_zxid, Some(4), "{ctx}");
                }
            }
            other => panic!("{ctx}: expected corruption, got {other:?}"),
        }
        // The explicit recovery mode cuts there instead.
        let mut o = opts(env, s);
        o.recovery = RecoveryMode::TruncateCorrupt;
        let (log, report) = Log::open(&env.dir, o).unwrap();
        assert_eq!(report.last_zxid, 2, "{ctx}");
        expect_range(&read_all(&log, 1), 1..=2, &ctx);
    });
}

#[test]
fn corruption_in_an_older_segment_is_reported_by_iteration() {
    each(|b, s, env| {
        let ctx = format!("{b}/{s}");
        let (log, _) = Log::open(&env.dir, opts(env, s)).unwrap();
        for z in 1..=3 {
            log.append(z, payload(z)).unwrap();
        }
        log.roll().unwrap();
        for z in 4..=6 {
            log.append(z, payload(z)).unwrap();
        }
        drop(log);
        let first = segment_paths(env).remove(0);
        poke(env.vfs.as_ref(), &first, 48 + 9, &[0xEE]);
        // Opening checks only the tail segment; reading the damaged one fails loudly.
        let (log, _) = Log::open(&env.dir, opts(env, s)).unwrap();
        let r: Vec<_> = log.iter_from(1).collect();
        match r.last() {
            Some(Err(LogError::Corrupt { segment, offset, .. })) => {
                assert_eq!(segment, &first, "{ctx}");
                assert_eq!(*offset, 48, "{ctx}");
            }
            other => panic!("{ctx}: expected a corruption error, got {other:?}"),
        }
        // Reading from the second segment on is unaffected.
        expect_range(&read_all(&log, 4), 4..=6, &ctx);
    });
}

#[test]
fn truncate_after_removes_later_records_durably() {
    each(|b, s, env| {
        let ctx = format!("{b}/{s}");
        let (log, _) = Log::open(&env.dir, opts(env, s)).unwrap();
        for z in 1..=100 {
            log.append(z, payload(z)).unwrap();
        }
        let before = segment_paths(env).len();
        assert!(before >= 3, "{ctx}");
        log.truncate_after(37).unwrap();
        assert!(segment_paths(env).len() < before, "{ctx}: later segments deleted");
        expect_range(&read_all(&log, 1), 1..=37, &ctx);
        assert_eq!(log.durable_zxid(), 37, "{ctx}");
        // zxids above 37 can be written again (the new leader's history).
        for z in 38..=45 {
            log.append(z, payload(z)).unwrap();
        }
        expect_range(&read_all(&log, 30), 30..=45, &ctx);
        drop(log);
        let (log, report) = Log::open(&env.dir, opts(env, s)).unwrap();
        assert_eq!(report.last_zxid, 45, "{ctx}");
        expect_range(&read_all(&log, 1), 1..=45, &ctx);
        // Truncating to before everything empties the log.
        log.truncate_after(0).unwrap();
        assert!(read_all(&log, 0).is_empty(), "{ctx}");
        log.append(1, payload(1)).unwrap();
        drop(log);
        let (log, _) = Log::open(&env.dir, opts(env, s)).unwrap();
        expect_range(&read_all(&log, 0), 1..=1, &ctx);
    });
}

#[test]
fn purge_keeps_the_segment_holding_the_zxid() {
    each(|b, s, env| {
        let ctx = format!("{b}/{s}");
        let (log, _) = Log::open(&env.dir, opts(env, s)).unwrap();
        for z in 1..=30 {
            log.append(z, payload(z)).unwrap();
            if z % 10 == 0 {
                log.roll().unwrap();
            }
        }
        assert_eq!(segment_paths(env).len(), 3, "{ctx}");
        let removed = log.purge_before(15).unwrap();
        assert_eq!(removed.len(), 1, "{ctx}: only log.1 lies wholly below 15");
        expect_range(&read_all(&log, 11), 11..=30, &ctx);
        assert_eq!(log.purge_before(11).unwrap().len(), 0, "{ctx}");
    });
}

#[test]
fn a_failed_flush_latches_the_log() {
    for s in FlushStrategy::ALL.into_iter().filter(|s| s.is_durable()) {
        for errno in [libc::EIO, libc::ENOSPC] {
            let sim = SimVfs::new();
            let env = Env { vfs: Arc::new(sim.clone()), dir: "/d".into(), _tmp: None };
            let (log, _) = Log::open(&env.dir, opts(&env, s)).unwrap();
            log.append(1, payload(1)).unwrap();
            let st = sim.stats();
            // Fail the next sync (every durable strategy syncs per batch) or the next write.
            sim.set_faults(corral_engine::io::sim::Faults {
                fail_sync: Some((st.syncs + 1, errno)),
                fail_write: Some((st.writes + 1, errno)),
                ..Default::default()
            });
            let e = log.append(2, payload(2)).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(errno), "{s}: {e}");
            sim.set_faults(Default::default());
            // Never retried: every later append is refused, even though the disk works again.
            let e = log.append(3, payload(3)).unwrap_err();
            assert!(matches!(e, LogError::Failed(_)), "{s}: {e}");
            assert!(log.failure().is_some());
            assert!(matches!(log.roll(), Err(LogError::Failed(_))));
            assert!(log.close().is_err());
        }
    }
}

#[test]
fn async_appends_complete_in_zxid_order() {
    each(|b, s, env| {
        let ctx = format!("{b}/{s}");
        let (log, _) = Log::open(&env.dir, opts(env, s)).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        for z in 1..=200u64 {
            let tx = tx.clone();
            log.append_async(z, payload(z), Box::new(move |r| tx.send(r.unwrap()).unwrap()))
                .unwrap();
        }
        drop(tx);
        let done: Vec<u64> = rx.iter().collect();
        assert_eq!(done, (1..=200).collect::<Vec<_>>(), "{ctx}");
        log.sync().unwrap();
        let m = log.metrics();
        assert_eq!(m.appends, 200, "{ctx}");
        if s != FlushStrategy::PerRecord {
            assert!(m.batches < 200, "{ctx}: queued appends are batched ({} batches)", m.batches);
        }
    });
}

#[test]
fn oversized_records_and_bad_options_are_refused() {
    let env = Env { vfs: Arc::new(SimVfs::new()), dir: "/d".into(), _tmp: None };
    let (log, _) = Log::open(&env.dir, opts(&env, FlushStrategy::Group)).unwrap();
    let e = log.append(1, vec![0; 21 << 10]).unwrap_err();
    assert!(matches!(e, LogError::RecordTooLarge { .. }));
    log.append(1, vec![0; 20 << 10]).unwrap();
    let mut o = opts(&env, FlushStrategy::Group);
    o.prealloc_bytes = 1000;
    assert!(matches!(LogCore::open(Path::new("/e"), o), Err(LogError::InvalidOptions(_))));
    let mut o = opts(&env, FlushStrategy::Group);
    o.record_bytes_max = 1 << 20;
    assert!(matches!(LogCore::open(Path::new("/e"), o), Err(LogError::InvalidOptions(_))));
}

#[test]
fn dbid_mismatch_is_refused() {
    let env = Env { vfs: Arc::new(SimVfs::new()), dir: "/d".into(), _tmp: None };
    let (log, _) = Log::open(&env.dir, opts(&env, FlushStrategy::Group)).unwrap();
    log.append(1, vec![1]).unwrap();
    drop(log);
    let mut o = opts(&env, FlushStrategy::Group);
    o.dbid = 9;
    assert!(matches!(Log::open(&env.dir, o), Err(LogError::BadHeader { .. })));
}
