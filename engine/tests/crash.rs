//! Crash tests on the simulated disk. The machine dies at a random operation (the operation
//! under way may leave a torn write); the disk is rebuilt as a reboot would find it, with a
//! random share of the unsynced writes. Then: recovery always opens (a torn tail never stops
//! it), every acknowledged append is there, nothing appears that was never appended, and a bit
//! flipped in a record that later batches follow is reported as corruption.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use corral_engine::io::sim::Faults;
use corral_engine::io::{OpenOptions, SimVfs, Vfs};
use corral_engine::log::{FlushStrategy, Log, LogCore, LogError, LogOptions, Prealloc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const DURABLE: [FlushStrategy; 7] = [
    FlushStrategy::PerRecord,
    FlushStrategy::Group,
    FlushStrategy::Direct,
    FlushStrategy::UringLinked,
    FlushStrategy::UringDsync,
    FlushStrategy::UringPipe,
    FlushStrategy::UringPipeFsync,
];

fn opts(vfs: &SimVfs, strategy: FlushStrategy, prealloc: Prealloc) -> LogOptions {
    LogOptions {
        strategy,
        vfs: Some(Arc::new(vfs.clone())),
        prealloc,
        // Inline reservation keeps every operation on the test's thread: crash points replay.
        prealloc_in_background: false,
        prealloc_bytes: 16 << 10,
        segment_bytes_max: 64 << 10,
        record_bytes_max: 8 << 10,
        batch_bytes_max: 16 << 10,
        batch_records_max: 32,
        writer_spin_us: 0,
        ..LogOptions::default()
    }
}

fn payload(rng: &mut ChaCha8Rng, zxid: u64) -> Vec<u8> {
    let len = match rng.random_range(0..10) {
        0 => 0,
        1 => rng.random_range(3000..8000),
        _ => rng.random_range(1..300),
    };
    let mut p = vec![0u8; len];
    rng.fill(&mut p[..]);
    if len >= 8 {
        p[..8].copy_from_slice(&zxid.to_le_bytes());
    }
    p
}

static CUT_TAILS: AtomicUsize = AtomicUsize::new(0);
static UNACKED_SURVIVED: AtomicUsize = AtomicUsize::new(0);
static ACKED_TOTAL: AtomicUsize = AtomicUsize::new(0);

fn recover_all(vfs: &SimVfs, o: LogOptions, ctx: &str) -> (LogCore, Vec<(u64, Vec<u8>)>) {
    let (core, report) = LogCore::open(Path::new("/db/log"), o)
        .unwrap_or_else(|e| panic!("{ctx}: recovery must open after a crash: {e}"));
    if report.cut.is_some() {
        CUT_TAILS.fetch_add(1, Ordering::Relaxed);
    }
    let recs: Vec<_> = core
        .iter_from(0)
        .map(|r| r.map(|r| (r.zxid, r.payload)).unwrap_or_else(|e| panic!("{ctx}: read: {e}")))
        .collect();
    let _ = vfs;
    (core, recs)
}

/// One crash point driven through `LogCore` (single-threaded, fully determined by the seed;
/// with `background`, the preallocation thread works between the test's steps, one step at a
/// time, making the next segment ahead: rolls then take the spare).
fn core_crash_case(seed: u64, background: bool) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let strategy = DURABLE[rng.random_range(0..DURABLE.len())];
    let prealloc = if rng.random_bool(0.5) { Prealloc::ZeroFill } else { Prealloc::Fallocate };
    let ctx = format!("seed {seed} ({strategy}, {prealloc:?}, background {background})");
    let dir = Path::new("/db/log");
    let sim = SimVfs::new();
    let opts = |vfs: &SimVfs, strategy, prealloc| LogOptions {
        prealloc_in_background: background,
        ..opts(vfs, strategy, prealloc)
    };
    let (mut core, _) = LogCore::open(dir, opts(&sim, strategy, prealloc)).unwrap();

    // History before the crash window: durable records, some rolls.
    let mut appended: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut acked = 0usize;
    let write = |core: &mut LogCore,
                 rng: &mut ChaCha8Rng,
                 appended: &mut Vec<(u64, Vec<u8>)>,
                 acked: &mut usize|
     -> bool {
        let n = rng.random_range(1..=12);
        let start = appended.len();
        let mut zxid = appended.last().map_or(0, |r| r.0);
        for _ in 0..n {
            zxid += rng.random_range(1..=3);
            let p = payload(rng, zxid);
            appended.push((zxid, p));
        }
        let batch: Vec<(u64, &[u8])> =
            appended[start..].iter().map(|(z, p)| (*z, p.as_slice())).collect();
        let mut durable = 0;
        let r = core.write_batch(&batch, |k| durable = k);
        core.wait_background();
        *acked = start + durable;
        if r.is_err() {
            // What was not acknowledged may or may not be on disk.
            return false;
        }
        assert_eq!(durable, n);
        true
    };
    for _ in 0..rng.random_range(0..6) {
        assert!(write(&mut core, &mut rng, &mut appended, &mut acked));
        if rng.random_bool(0.2) {
            core.roll().unwrap();
        }
        core.wait_background();
    }
    let before = sim.stats().mutations;
    sim.set_faults(Faults {
        crash_after_ops: Some(before + rng.random_range(1..=40)),
        ..Faults::default()
    });
    let mut truncated_to: Option<u64> = None;
    for _ in 0..20 {
        let action = rng.random_range(0..10);
        if action == 0 {
            if core.roll().is_err() {
                break;
            }
        } else if action == 1 && acked > 2 {
            // TRUNC to an acknowledged zxid: later records go away, durably.
            let keep = rng.random_range(1..acked);
            let z = appended[keep - 1].0;
            if core.truncate_after(z).is_err() {
                // Interrupted truncation: recovery may show the log before or after it, but
                // never a damaged one; records up to z stay either way.
                truncated_to = Some(z);
                acked = keep;
                appended.truncate(acked.max(keep));
                break;
            }
            appended.truncate(keep);
            acked = keep;
        } else if !write(&mut core, &mut rng, &mut appended, &mut acked) {
            break;
        }
        core.wait_background();
    }
    sim.crash();
    drop(core);
    let img = sim.crash_image(seed ^ 0x5eed);
    let (mut core, recs) = recover_all(&img, opts(&img, strategy, prealloc), &ctx);

    if let Some(z) = truncated_to {
        // The interrupted truncation left either the old records (a prefix of what was
        // appended before it) or the truncated log; either way everything up to z is there.
        let upto: Vec<_> = recs.iter().filter(|(rz, _)| *rz <= z).cloned().collect();
        assert_eq!(upto, appended[..acked].to_vec(), "{ctx}: records up to the TRUNC point");
    } else {
        assert!(recs.len() >= acked, "{ctx}: lost acknowledged records: {} < {acked}", recs.len());
        assert!(recs.len() <= appended.len(), "{ctx}: records that were never appended");
        assert_eq!(recs[..], appended[..recs.len()], "{ctx}: recovered records are a prefix");
        if recs.len() > acked {
            UNACKED_SURVIVED.fetch_add(1, Ordering::Relaxed);
        }
        ACKED_TOTAL.fetch_add(acked, Ordering::Relaxed);
    }
    // The recovered log takes appends and reopens cleanly.
    let last = core.last_zxid();
    core.write_batch(&[(last + 1, b"after".as_slice())], |_| {})
        .unwrap_or_else(|e| panic!("{ctx}: {e}"));
    drop(core);
    let (_, recs2) = recover_all(&img, opts(&img, strategy, prealloc), &ctx);
    assert_eq!(recs2.last().map(|r| r.0), Some(last + 1), "{ctx}");
    assert_eq!(recs2.len(), recs.len() + 1, "{ctx}");
}

#[test]
fn recovery_after_1200_random_crash_points() {
    let base: u64 =
        std::env::var("CORRAL_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0xC0FFEE);
    let n: u64 =
        std::env::var("CORRAL_CRASH_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(1200);
    for i in 0..n {
        let seed = base.wrapping_add(i);
        let r = std::panic::catch_unwind(|| core_crash_case(seed, false));
        if r.is_err() {
            panic!("crash case failed; replay with CORRAL_CRASH_SEED={seed} CORRAL_CRASH_CASES=1");
        }
    }
    let cut = CUT_TAILS.load(Ordering::Relaxed);
    let unacked = UNACKED_SURVIVED.load(Ordering::Relaxed);
    eprintln!(
        "{n} crash points: {cut} recoveries cut a torn tail, {unacked} kept unacknowledged records, \
         {} acknowledged records checked",
        ACKED_TOTAL.load(Ordering::Relaxed)
    );
    // The crash points must actually land mid-write, not only between batches.
    assert!(n < 100 || cut > n as usize / 20, "too few torn tails ({cut}) to exercise recovery");
}

/// Crashes while several threads append through the group-commit writer.
/// Rolls into a spare segment made ahead by the preallocation thread (a header write and a
/// rename, no directory fsync): a crash at any point recovers every acknowledged record,
/// the spare's segment under its name whether the rename reached the disk or not.
#[test]
fn recovery_after_600_crash_points_with_a_spare_segment() {
    let base: u64 =
        std::env::var("CORRAL_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5BA5E);
    let n: u64 =
        std::env::var("CORRAL_CRASH_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(600);
    for i in 0..n {
        let seed = base.wrapping_add(i);
        let r = std::panic::catch_unwind(|| core_crash_case(seed, true));
        if r.is_err() {
            panic!(
                "crash case (background) failed; replay with CORRAL_CRASH_SEED={seed} \
                 CORRAL_CRASH_CASES=1"
            );
        }
    }
}

#[test]
fn threaded_appenders_keep_every_acknowledged_record() {
    for seed in 0..150u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let strategy = DURABLE[rng.random_range(0..DURABLE.len())];
        let ctx = format!("threaded seed {seed} ({strategy})");
        let sim = SimVfs::new();
        let mut o = opts(&sim, strategy, Prealloc::ZeroFill);
        // Threads are not replayable anyway: let the preallocation thread race the writer too.
        o.prealloc_in_background = true;
        let (log, _) = Log::open(Path::new("/db/log"), o.clone()).unwrap();
        let before = sim.stats().mutations;
        sim.set_faults(Faults {
            crash_after_ops: Some(before + rng.random_range(5..120)),
            ..Faults::default()
        });
        let acked = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let log = &log;
                let acked = &acked;
                s.spawn(move || {
                    for i in 0..60u64 {
                        let body = (t << 32 | i).to_le_bytes().to_vec();
                        match log.append_next(body.clone()) {
                            Ok(z) => acked.lock().unwrap().push((z, body)),
                            Err(_) => return,
                        }
                        // Rolls (a snapshot's) leave segments whose background preallocation
                        // may still be running.
                        if t == 0 && i % 7 == 3 && log.roll().is_err() {
                            return;
                        }
                    }
                });
            }
        });
        sim.crash();
        drop(log);
        let img = sim.crash_image(seed);
        let (_, recs) = recover_all(&img, opts(&img, strategy, Prealloc::ZeroFill), &ctx);
        let mut acked = acked.into_inner().unwrap();
        acked.sort();
        let got: std::collections::HashMap<u64, Vec<u8>> = recs.iter().cloned().collect();
        for (z, body) in &acked {
            assert_eq!(got.get(z), Some(body), "{ctx}: acknowledged zxid {z} lost or changed");
        }
        assert!(recs.windows(2).all(|w| w[0].0 + 1 == w[1].0), "{ctx}: no gaps");
    }
}

/// A flipped bit in a record that a later batch follows is corruption: the log refuses to open
/// (tail segment) or the read fails (older segment); it is never silently cut.
#[test]
fn a_flipped_bit_in_the_middle_is_reported() {
    for seed in 0..300u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let strategy = DURABLE[rng.random_range(0..DURABLE.len())];
        let ctx = format!("flip seed {seed} ({strategy})");
        let sim = SimVfs::new();
        let o = opts(&sim, strategy, Prealloc::ZeroFill);
        let dir = Path::new("/db/log");
        let (mut core, _) = LogCore::open(dir, o.clone()).unwrap();
        let mut zxid = 0;
        let batches = rng.random_range(3..12);
        for b in 0..batches {
            let n = rng.random_range(1..5);
            let recs: Vec<(u64, Vec<u8>)> = (0..n)
                .map(|_| {
                    zxid += 1;
                    (zxid, payload(&mut rng, zxid))
                })
                .collect();
            let refs: Vec<(u64, &[u8])> = recs.iter().map(|(z, p)| (*z, p.as_slice())).collect();
            core.write_batch(&refs, |_| {}).unwrap();
            if b == 1 && rng.random_bool(0.3) {
                core.roll().unwrap();
            }
        }
        drop(core);
        // Every record's place, with its batch; choose one not in the last batch.
        let mut segs: Vec<_> = sim
            .list_dir(dir)
            .unwrap()
            .into_iter()
            .filter_map(|n| {
                corral_engine::log::format::parse_segment_file_name(&n).map(|z| (z, dir.join(n)))
            })
            .collect();
        segs.sort();
        let mut metas = Vec::new();
        for (i, (_, path)) in segs.iter().enumerate() {
            let f = sim.open(path, OpenOptions::read()).unwrap();
            corral_engine::log::format::scan_segment(f.as_ref(), |m, _| {
                metas.push((i, path.clone(), m))
            })
            .unwrap()
            .unwrap();
        }
        let last_batch = metas.last().unwrap().2.batch_start;
        let last_seg = segs.len() - 1;
        let candidates: Vec<_> = metas
            .iter()
            .filter(|(i, _, m)| !(*i == last_seg && m.batch_start == last_batch))
            .collect();
        let (seg_idx, path, m) = candidates[rng.random_range(0..candidates.len())].clone();
        let off = m.offset + rng.random_range(0..20 + u64::from(m.len));
        let bit = rng.random_range(0..8);
        if std::env::var("CORRAL_DEBUG_FLIP").is_ok() {
            eprintln!("{ctx}: flip {m:?} at {off} bit {bit}");
        }
        // A later batch's record ending beyond the segment's in-flight window from the damaged
        // record proves the damage was durable; within it (several writes in flight), the
        // damage could be a write that never landed, and recovery cuts there.
        let window = {
            let f = sim.open(&path, OpenOptions::read()).unwrap();
            corral_engine::log::format::read_header(f.as_ref()).unwrap().unwrap().window()
        };
        let proven = window == 0
            || metas.iter().any(|(i, _, r)| {
                *i == seg_idx
                    && u64::from(r.batch_start) > m.offset
                    && r.offset + 20 + u64::from(r.len) > m.offset + window
            });
        sim.flip_bit(&path, off, bit).unwrap();
        let opened = LogCore::open(dir, o.clone());
        if seg_idx == last_seg && !proven {
            let (core, report) =
                opened.unwrap_or_else(|e| panic!("{ctx}: damage within the window is cut: {e}"));
            assert_eq!(report.cut.as_ref().map(|c| c.1), Some(m.offset), "{ctx}");
            assert!(core.last_zxid() < m.zxid, "{ctx}");
        } else if seg_idx == last_seg {
            match opened {
                Err(LogError::Corrupt { segment, offset, .. }) => {
                    assert_eq!(segment, path, "{ctx}");
                    assert_eq!(offset, m.offset, "{ctx}");
                }
                other => panic!("{ctx}: expected Corrupt, got {:?}", other.map(|_| ())),
            }
        } else {
            let (core, _) =
                opened.unwrap_or_else(|e| panic!("{ctx}: older segments are checked on read: {e}"));
            let err = core.iter_from(0).find_map(|r| r.err());
            match err {
                Some(LogError::Corrupt { segment, offset, .. }) => {
                    assert_eq!(segment, path, "{ctx}");
                    assert_eq!(offset, m.offset, "{ctx}");
                }
                other => panic!("{ctx}: expected a corruption error on read, got {other:?}"),
            }
        }
    }
}

static WINDOW_CUTS: AtomicUsize = AtomicUsize::new(0);

/// One crash point of the pipelined strategy driven through `LogCore`: batches submitted with
/// up to K writes in flight (K = 1 to 8), reaped sometimes, completing in a seeded random order; the crash
/// lands each write still in flight not at all, whole, torn or as random sectors. Everything
/// acknowledged (reported durable) must be recovered, as a prefix of what was appended.
fn pipelined_crash_case(seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let k = [1usize, 2, 4, 8][rng.random_range(0..4)];
    let prealloc = if rng.random_bool(0.5) { Prealloc::ZeroFill } else { Prealloc::Fallocate };
    // Small batches make the window (K × (batch + 12 KiB)) the limit as often as K is.
    let batch = if rng.random_bool(0.5) { 4 << 10 } else { 16 << 10 };
    let strategy =
        if rng.random_bool(0.5) { FlushStrategy::UringPipe } else { FlushStrategy::UringPipeFsync };
    let ctx = format!("seed {seed} ({strategy}, in flight {k}, batch {batch}, {prealloc:?})");
    let dir = Path::new("/db/log");
    let sim = SimVfs::new();
    let opts = |vfs: &SimVfs| LogOptions {
        in_flight: k,
        segment_bytes_max: 128 << 10,
        batch_bytes_max: batch,
        ..opts(vfs, strategy, prealloc)
    };
    sim.set_faults(Faults { reorder_seed: seed, ..Faults::default() });
    let (mut core, _) = LogCore::open(dir, opts(&sim)).unwrap();
    let mut appended: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut durable_zxid = 0u64;
    let submit = |core: &mut LogCore,
                  rng: &mut ChaCha8Rng,
                  appended: &mut Vec<(u64, Vec<u8>)>,
                  durable_zxid: &mut u64|
     -> bool {
        let n = rng.random_range(1..=12);
        let start = appended.len();
        let mut zxid = appended.last().map_or(0, |r| r.0);
        for _ in 0..n {
            zxid += rng.random_range(1..=3);
            let p = payload(rng, zxid);
            appended.push((zxid, p));
        }
        let batch: Vec<(u64, &[u8])> =
            appended[start..].iter().map(|(z, p)| (*z, p.as_slice())).collect();
        core.submit_batch(&batch, &mut |z| *durable_zxid = z).is_ok()
    };
    let steps = rng.random_range(0..30);
    let crash_at = rng.random_range(0..=steps);
    let mut truncated_to: Option<u64> = None;
    for step in 0..=steps {
        if step == crash_at {
            let before = sim.stats().mutations;
            sim.set_faults(Faults {
                crash_after_ops: Some(before + rng.random_range(1..=40)),
                reorder_seed: seed,
                ..Faults::default()
            });
        }
        let ok = match rng.random_range(0..20) {
            0 => core.roll().is_ok(),
            1 => core.reap(true, &mut |z| durable_zxid = z).is_ok(),
            2 | 3 => core.reap(false, &mut |z| durable_zxid = z).is_ok(),
            4 if appended.iter().filter(|r| r.0 <= durable_zxid).count() > 2 => {
                // TRUNC to a durable zxid (the truncation waits for the writes in flight).
                let acked = appended.iter().filter(|r| r.0 <= durable_zxid).count();
                let keep = rng.random_range(1..acked);
                let z = appended[keep - 1].0;
                if core.truncate_after(z).is_err() {
                    truncated_to = Some(z);
                    appended.truncate(keep);
                    durable_zxid = z;
                    false
                } else {
                    appended.truncate(keep);
                    durable_zxid = z;
                    true
                }
            }
            _ => submit(&mut core, &mut rng, &mut appended, &mut durable_zxid),
        };
        if !ok {
            break;
        }
    }
    sim.crash();
    drop(core);
    let acked = appended.iter().filter(|r| r.0 <= durable_zxid).count();
    let img = sim.crash_image(seed ^ 0x9193);
    if std::env::var("CORRAL_DEBUG_PIPE").is_ok() {
        for n in img.list_dir(dir).unwrap() {
            let f = img.open(&dir.join(&n), OpenOptions::read()).unwrap();
            let scan = corral_engine::log::format::scan_segment(f.as_ref(), |m, _| {
                eprintln!("  pre {m:?}")
            })
            .unwrap();
            eprintln!(
                "pre {n}: len {} {:?}",
                f.len().unwrap(),
                scan.map(|s| (s.end, s.last_zxid, s.records, s.tail, s.header))
            );
        }
    }
    let (core, report) = LogCore::open(dir, opts(&img))
        .unwrap_or_else(|e| panic!("{ctx}: recovery must open after a crash: {e}"));
    if std::env::var("CORRAL_DEBUG_PIPE").is_ok() {
        eprintln!(
            "{ctx}: report {report:?} durable_zxid {durable_zxid} appended {}",
            appended.len()
        );
        for s in core.segments() {
            let f = img.open(&s.path, OpenOptions::read()).unwrap();
            let scan =
                corral_engine::log::format::scan_segment(f.as_ref(), |m, _| eprintln!("  {m:?}"))
                    .unwrap();
            eprintln!(
                "{}: {:?}",
                s.path.display(),
                scan.map(|s| (s.end, s.last_zxid, s.tail, s.header))
            );
        }
    }
    if report.cut.as_ref().is_some_and(|c| c.2.contains("landed before")) {
        WINDOW_CUTS.fetch_add(1, Ordering::Relaxed);
    }
    let recs: Vec<_> = core
        .iter_from(0)
        .map(|r| r.map(|r| (r.zxid, r.payload)).unwrap_or_else(|e| panic!("{ctx}: read: {e}")))
        .collect();
    if let Some(z) = truncated_to {
        let upto: Vec<_> = recs.iter().filter(|(rz, _)| *rz <= z).cloned().collect();
        assert_eq!(upto, appended[..acked].to_vec(), "{ctx}: records up to the TRUNC point");
    } else {
        assert!(recs.len() >= acked, "{ctx}: lost acknowledged records: {} < {acked}", recs.len());
        assert!(recs.len() <= appended.len(), "{ctx}: records that were never appended");
        assert_eq!(recs[..], appended[..recs.len()], "{ctx}: recovered records are a prefix");
        ACKED_TOTAL.fetch_add(acked, Ordering::Relaxed);
    }
    // The recovered log takes appends and reopens cleanly.
    let mut core = core;
    let last = core.last_zxid();
    core.write_batch(&[(last + 1, b"after".as_slice())], |_| {})
        .unwrap_or_else(|e| panic!("{ctx}: {e}"));
    drop(core);
    let (_, recs2) = recover_all(&img, opts(&img), &ctx);
    assert_eq!(recs2.last().map(|r| r.0), Some(last + 1), "{ctx}");
    assert_eq!(recs2.len(), recs.len() + 1, "{ctx}");
}

#[test]
fn pipelined_recovery_after_1200_crash_points_with_reordered_completions() {
    let base: u64 =
        std::env::var("CORRAL_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x919E);
    let n: u64 =
        std::env::var("CORRAL_CRASH_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(1200);
    for i in 0..n {
        let seed = base.wrapping_add(i);
        let r = std::panic::catch_unwind(|| pipelined_crash_case(seed));
        if r.is_err() {
            panic!(
                "pipelined crash case failed; replay with CORRAL_CRASH_SEED={seed} \
                 CORRAL_CRASH_CASES=1"
            );
        }
    }
    let cuts = WINDOW_CUTS.load(Ordering::Relaxed);
    eprintln!("{n} pipelined crash points: {cuts} recoveries cut writes that landed out of order");
    // Later writes landing before earlier ones must actually happen in these crashes.
    assert!(n < 100 || cuts > n as usize / 50, "too few out-of-order landings ({cuts})");
}
