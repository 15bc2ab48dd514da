//! Flush strategies head to head (criterion). The fuller matrix, with the bare
//! write + fdatasync baseline and thread/async writers, is `corral-bench log`.
//!
//! * `append_1k`: one appender, one 1 KiB record at a time (latency of a lone writer).
//! * `burst_64x1k`: 64 appends of 1 KiB queued at once, timed until all are durable (what group
//!   commit is for).
//!
//! The pipelined strategy runs once per number of writes in flight: `uring-pipe/1` … `/8`.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use corral_engine::log::{FlushStrategy, Log, LogOptions};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn open(strategy: FlushStrategy, in_flight: usize) -> (Log, tempfile::TempDir) {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let opts = LogOptions { strategy, in_flight, ..LogOptions::default() };
    let (log, _) = Log::open(tmp.path(), opts).expect("open log");
    (log, tmp)
}

fn strategies(c: &mut Criterion) {
    let mut g = c.benchmark_group("log");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    let runs = FlushStrategy::ALL.into_iter().flat_map(|s| {
        let ks: &[usize] = if s.is_pipelined() { &[1, 2, 4, 8] } else { &[1] };
        ks.iter().map(move |&k| (s, k))
    });
    for (s, k) in runs {
        let (log, _tmp) = open(s, k);
        let name =
            if s.is_pipelined() { format!("{}/{k}", s.name()) } else { s.name().to_string() };
        let payload = vec![7u8; 1024];
        g.throughput(Throughput::Elements(1));
        g.bench_function(BenchmarkId::new("append_1k", &name), |b| {
            b.iter(|| log.append_next(payload.clone()).expect("append"))
        });
        g.throughput(Throughput::Elements(64));
        g.bench_function(BenchmarkId::new("burst_64x1k", &name), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    let (tx, rx) = mpsc::channel();
                    for _ in 0..64 {
                        let tx = tx.clone();
                        log.append_next_async(
                            payload.clone(),
                            Box::new(move |r| tx.send(r.is_ok()).expect("send")),
                        )
                        .expect("append");
                    }
                    drop(tx);
                    assert!(rx.iter().all(|ok| ok));
                }
                start.elapsed()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, strategies);
criterion_main!(benches);
