//! `corral-bench log`: flush strategies × writers × record sizes, head to head, plus the bare
//! `write + fdatasync` baseline, measured in the same run.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use corral_engine::io::BackendKind;
use corral_engine::log::{FlushStrategy, Log, LogOptions, Prealloc};
use hdrhistogram::Histogram;
use serde::Serialize;

/// Options of `corral-bench log`.
#[derive(Debug, clap::Args)]
pub struct LogArgs {
    /// Strategies to run (comma-separated): per-record, group, direct, uring-linked,
    /// uring-dsync, uring-pipe, uring-pipe-fsync, none.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "per-record,group,direct,uring-linked,uring-dsync,uring-pipe,uring-pipe-fsync,none"
    )]
    pub strategies: Vec<String>,
    /// Writes in flight for the pipelined strategies (comma-separated: one row per value;
    /// shown as `uring-pipe/K`).
    #[arg(long, value_delimiter = ',', default_value = "4")]
    pub in_flight: Vec<usize>,
    /// Pipelined strategies on io_uring: register the file and buffers with the ring
    /// (comma-separated `true,false` for both; `false` rows are shown as `uring-pipe/K-plain`).
    #[arg(long, value_delimiter = ',', default_value = "true")]
    pub register: Vec<bool>,
    /// Storage backend: auto (io_uring for the uring-* strategies, syscalls for the others),
    /// sync (plain syscalls for every strategy; `uring-pipe` then keeps its writes in flight
    /// on helper threads) or uring.
    #[arg(long, default_value = "auto")]
    pub backend: String,
    /// Concurrent appending threads (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,8,64,256")]
    pub writers: Vec<usize>,
    /// Record payload sizes in bytes (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "128,1024,16384")]
    pub record_bytes: Vec<usize>,
    /// Measured seconds per configuration (after a warm-up of a fifth of that).
    #[arg(long, default_value_t = 2.0)]
    pub seconds: f64,
    /// Directory for the logs (on the disk to measure; emptied per run).
    #[arg(long, default_value = "./corral-bench-data")]
    pub dir: PathBuf,
    /// Segment preallocation: zero (zero-filled) or fallocate.
    #[arg(long, default_value = "zero")]
    pub prealloc: String,
    /// How writers are run: `threads` (one OS thread per writer, each blocking in append) or
    /// `async` (each writer is one append in flight, re-issued from its completion callback —
    /// how the server's sequencer drives the log). Comma-separated for both.
    #[arg(long, value_delimiter = ',', default_value = "threads,async")]
    pub modes: Vec<String>,
    /// Microseconds the log's writer thread polls for work before sleeping.
    #[arg(long, default_value_t = LogOptions::default().writer_spin_us)]
    pub writer_spin_us: u64,
    /// Runs of every configuration, interleaved round by round (so that slow phases of the
    /// disk hit all configurations alike); the row with the median appends/s is reported.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Skip the bare write + fdatasync baseline rows.
    #[arg(long)]
    pub no_baseline: bool,
    /// Print one JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Serialize)]
struct Row {
    strategy: String,
    rounds: usize,
    mode: String,
    backend: String,
    prealloc: String,
    writers: usize,
    record_bytes: usize,
    appends: u64,
    seconds: f64,
    appends_per_sec: f64,
    mb_per_sec: f64,
    flushes_per_sec: f64,
    records_per_flush: f64,
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
    flush_p50_us: u64,
    flush_p99_us: u64,
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram")
}

fn fresh_dir(base: &Path, name: &str) -> Result<PathBuf> {
    let d = base.join(name);
    if d.exists() {
        fs::remove_dir_all(&d).with_context(|| format!("clearing {}", d.display()))?;
    }
    fs::create_dir_all(&d)?;
    Ok(d)
}

/// A pipelined strategy's settings (ignored by the others).
#[derive(Debug, Clone, Copy)]
struct PipeCfg {
    in_flight: usize,
    register: bool,
}

fn run_log(
    a: &LogArgs,
    mode: &str,
    strategy: FlushStrategy,
    prealloc: Prealloc,
    writers: usize,
    size: usize,
    pipe: PipeCfg,
) -> Result<Row> {
    let PipeCfg { in_flight, register } = pipe;
    let dir = fresh_dir(&a.dir, "log")?;
    let opts = LogOptions {
        strategy,
        backend: match a.backend.as_str() {
            "sync" => BackendKind::Sync,
            "uring" => BackendKind::Uring,
            _ => BackendKind::Auto,
        },
        prealloc,
        writer_spin_us: a.writer_spin_us,
        in_flight,
        uring_register: register,
        ..LogOptions::default()
    };
    let (log, _) = Log::open(&dir, opts)?;
    let backend = log.backend_name().to_owned();
    let warmup = Duration::from_secs_f64(a.seconds / 5.0);
    let measure = Duration::from_secs_f64(a.seconds);
    let stop = AtomicBool::new(false);
    let measuring = AtomicBool::new(false);
    let payload = vec![0xA5u8; size];
    let mut merged = hist();
    let mut appends = 0u64;
    let mut elapsed = Duration::ZERO;
    let mut flushes = 0u64;
    let mut flush_hist = hist();
    let mut measure_window = |log: &Log, measuring: &AtomicBool| {
        std::thread::sleep(warmup);
        log.reset_metrics();
        let t0 = Instant::now();
        measuring.store(true, Ordering::Relaxed);
        std::thread::sleep(measure);
        measuring.store(false, Ordering::Relaxed);
        elapsed = t0.elapsed();
        let m = log.metrics();
        flushes = m.flushes;
        flush_hist = m.flush_latency_us;
        stop.store(true, Ordering::Relaxed);
    };
    if mode == "threads" {
        std::thread::scope(|s| -> Result<()> {
            let mut handles = Vec::new();
            for _ in 0..writers {
                let (log, stop, measuring, payload) = (&log, &stop, &measuring, &payload);
                handles.push(s.spawn(move || -> Result<(Histogram<u64>, u64)> {
                    let mut h = hist();
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        log.append_next(payload.clone())?;
                        if measuring.load(Ordering::Relaxed) {
                            h.saturating_record(t.elapsed().as_micros().max(1) as u64);
                            n += 1;
                        }
                    }
                    Ok((h, n))
                }));
            }
            measure_window(&log, &measuring);
            for h in handles {
                let (h, n) = h.join().expect("writer thread")?;
                merged.add(h)?;
                appends += n;
            }
            Ok(())
        })?;
        drop(log);
    } else {
        // Each writer is one append in flight; its completion callback records it and issues
        // the next. Nothing blocks, so no thread sleeps per append.
        if writers * size * 2 > log.options().queue_bytes_max {
            bail!("async mode needs writers × record size well below the log's queue limit");
        }
        let shared = std::sync::Arc::new(AsyncState {
            log,
            stop: AtomicBool::new(false),
            measuring: AtomicBool::new(false),
            stats: std::sync::Mutex::new((hist(), 0)),
            in_flight: std::sync::atomic::AtomicUsize::new(0),
            payload,
        });
        for _ in 0..writers {
            issue(&shared)?;
        }
        let st = &shared;
        measure_window(&st.log, &st.measuring);
        st.stop.store(true, Ordering::Relaxed);
        while st.in_flight.load(Ordering::Acquire) > 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let (h, n) = std::mem::replace(&mut *st.stats.lock().expect("stats"), (hist(), 0));
        merged.add(h)?;
        appends = n;
        let shared = std::sync::Arc::try_unwrap(shared)
            .map_err(|_| anyhow::anyhow!("callbacks still hold the log"))?;
        drop(shared.log);
    }
    let _ = fs::remove_dir_all(&dir);
    let secs = elapsed.as_secs_f64();
    Ok(Row {
        strategy: if strategy.is_pipelined() {
            format!("{}/{in_flight}{}", strategy.name(), if register { "" } else { "-plain" })
        } else {
            strategy.name().into()
        },
        rounds: 1,
        mode: mode.into(),
        backend,
        prealloc: prealloc_name(prealloc).into(),
        writers,
        record_bytes: size,
        appends,
        seconds: secs,
        appends_per_sec: appends as f64 / secs,
        mb_per_sec: appends as f64 * size as f64 / secs / 1e6,
        flushes_per_sec: flushes as f64 / secs,
        records_per_flush: if flushes > 0 { appends as f64 / flushes as f64 } else { 0.0 },
        p50_us: merged.value_at_quantile(0.5),
        p99_us: merged.value_at_quantile(0.99),
        p999_us: merged.value_at_quantile(0.999),
        flush_p50_us: flush_hist.value_at_quantile(0.5),
        flush_p99_us: flush_hist.value_at_quantile(0.99),
    })
}

/// One thread: `pwrite` a record, `fdatasync`, repeat. `overwrite` first fills the file with
/// zeros (so the flushes are data-only, as over a zero-filled preallocated segment); otherwise
/// every write appends to a new file, as a naive program would.
fn run_baseline(a: &LogArgs, size: usize, overwrite: bool) -> Result<Row> {
    let dir = fresh_dir(&a.dir, "baseline")?;
    let path = dir.join("baseline.dat");
    let mut f = OpenOptions::new().create_new(true).read(true).write(true).open(&path)?;
    let fill = 512u64 << 20;
    if overwrite {
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..(fill >> 20) {
            f.write_all(&zeros)?;
        }
        f.sync_all()?;
    }
    let payload = vec![0xA5u8; size];
    let warmup = Duration::from_secs_f64(a.seconds / 5.0);
    let measure = Duration::from_secs_f64(a.seconds);
    let mut h = hist();
    let mut off = 0u64;
    let mut n = 0u64;
    let start = Instant::now();
    let mut t0 = None;
    loop {
        let now = Instant::now();
        let since = now - start;
        if since >= warmup && t0.is_none() {
            t0 = Some(now);
        }
        if since >= warmup + measure {
            break;
        }
        if overwrite && off + size as u64 > fill {
            off = 0;
        }
        write_sync(&f, &payload, off)?;
        off += size as u64;
        if t0.is_some() {
            h.saturating_record(now.elapsed().as_micros().max(1) as u64);
            n += 1;
        }
    }
    let secs = t0.map(|t| t.elapsed().as_secs_f64()).unwrap_or(1.0);
    drop(f);
    let _ = fs::remove_dir_all(&dir);
    Ok(Row {
        strategy: if overwrite { "baseline-overwrite".into() } else { "baseline".into() },
        rounds: 1,
        mode: "threads".into(),
        backend: "sync".into(),
        prealloc: if overwrite { "zero".into() } else { "-".into() },
        writers: 1,
        record_bytes: size,
        appends: n,
        seconds: secs,
        appends_per_sec: n as f64 / secs,
        mb_per_sec: n as f64 * size as f64 / secs / 1e6,
        flushes_per_sec: n as f64 / secs,
        records_per_flush: 1.0,
        p50_us: h.value_at_quantile(0.5),
        p99_us: h.value_at_quantile(0.99),
        p999_us: h.value_at_quantile(0.999),
        flush_p50_us: h.value_at_quantile(0.5),
        flush_p99_us: h.value_at_quantile(0.99),
    })
}

struct AsyncState {
    log: Log,
    stop: AtomicBool,
    measuring: AtomicBool,
    stats: std::sync::Mutex<(Histogram<u64>, u64)>,
    in_flight: std::sync::atomic::AtomicUsize,
    payload: Vec<u8>,
}

/// Issues one append whose callback records it and issues the next.
fn issue(st: &std::sync::Arc<AsyncState>) -> Result<()> {
    let t = Instant::now();
    let me = st.clone();
    st.in_flight.fetch_add(1, Ordering::AcqRel);
    let r = st.log.append_next_async(
        st.payload.clone(),
        Box::new(move |r| {
            if r.is_ok() && me.measuring.load(Ordering::Relaxed) {
                let mut s = me.stats.lock().expect("stats");
                s.0.saturating_record(t.elapsed().as_micros().max(1) as u64);
                s.1 += 1;
            }
            if r.is_ok() && !me.stop.load(Ordering::Relaxed) {
                let _ = issue(&me);
            }
            me.in_flight.fetch_sub(1, Ordering::AcqRel);
        }),
    );
    if let Err(e) = r {
        st.in_flight.fetch_sub(1, Ordering::AcqRel);
        return Err(e.into());
    }
    Ok(())
}

fn write_sync(f: &File, buf: &[u8], off: u64) -> Result<()> {
    f.write_all_at(buf, off)?;
    f.sync_data()?;
    Ok(())
}

fn prealloc_name(p: Prealloc) -> &'static str {
    match p {
        Prealloc::Fallocate => "fallocate",
        _ => "zero",
    }
}

fn print_header() {
    println!(
        "{:<19} {:<7} {:<6} {:<9} {:>7} {:>7} {:>11} {:>8} {:>10} {:>9} {:>8} {:>8} {:>8} {:>9} {:>9}",
        "strategy", "mode", "backend", "prealloc", "writers", "bytes", "appends/s", "MB/s", "flushes/s", "rec/flush", "p50us", "p99us", "p999us", "fl.p50us", "fl.p99us"
    );
}

fn print_row(r: &Row, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(r)?);
    } else {
        println!(
            "{:<19} {:<7} {:<6} {:<9} {:>7} {:>7} {:>11.0} {:>8.1} {:>10.0} {:>9.1} {:>8} {:>8} {:>8} {:>9} {:>9}",
            r.strategy, r.mode, r.backend, r.prealloc, r.writers, r.record_bytes, r.appends_per_sec, r.mb_per_sec,
            r.flushes_per_sec, r.records_per_flush, r.p50_us, r.p99_us, r.p999_us, r.flush_p50_us, r.flush_p99_us
        );
    }
    std::io::stdout().flush()?;
    Ok(())
}

/// Runs the matrix and prints it.
pub fn run(a: LogArgs) -> Result<()> {
    let prealloc = match a.prealloc.as_str() {
        "zero" | "zerofill" => Prealloc::ZeroFill,
        "fallocate" => Prealloc::Fallocate,
        other => bail!("unknown --prealloc {other} (zero or fallocate)"),
    };
    let strategies = a
        .strategies
        .iter()
        .map(|s| FlushStrategy::from_name(s).with_context(|| format!("unknown strategy {s}")))
        .collect::<Result<Vec<_>>>()?;
    if a.seconds <= 0.0 || a.seconds > 600.0 {
        bail!("--seconds must be in (0, 600]");
    }
    if a.writers.iter().any(|&w| w == 0 || w > 4096) {
        bail!("--writers must be in 1..=4096");
    }
    if !matches!(a.backend.as_str(), "auto" | "sync" | "uring") {
        bail!("unknown --backend {} (auto, sync or uring)", a.backend);
    }
    if a.in_flight.iter().any(|&k| !(1..=64).contains(&k)) {
        bail!("--in-flight must be in 1..=64");
    }
    if a.rounds == 0 || a.rounds > 50 {
        bail!("--rounds must be in 1..=50");
    }
    for mode in &a.modes {
        if mode != "threads" && mode != "async" {
            bail!("unknown mode {mode} (threads or async)");
        }
    }
    fs::create_dir_all(&a.dir)?;
    if !a.json {
        print_header();
    }
    // Configurations in print order; each round runs them all once.
    #[derive(Clone, Copy)]
    enum Cfg<'a> {
        Baseline(usize, bool),
        Log(&'a str, FlushStrategy, usize, usize, PipeCfg),
    }
    let mut cfgs = Vec::new();
    for &size in &a.record_bytes {
        if !a.no_baseline {
            cfgs.push(Cfg::Baseline(size, false));
            cfgs.push(Cfg::Baseline(size, true));
        }
        for mode in &a.modes {
            for &s in &strategies {
                let ks = if s.is_pipelined() { a.in_flight.clone() } else { vec![1] };
                let regs = if s.is_pipelined() { a.register.clone() } else { vec![true] };
                for k in ks {
                    for &r in &regs {
                        for &w in &a.writers {
                            cfgs.push(Cfg::Log(
                                mode.as_str(),
                                s,
                                w,
                                size,
                                PipeCfg { in_flight: k, register: r },
                            ));
                        }
                    }
                }
            }
        }
    }
    let run_one = |c: Cfg<'_>| match c {
        Cfg::Baseline(size, overwrite) => run_baseline(&a, size, overwrite),
        Cfg::Log(mode, s, w, size, p) => run_log(&a, mode, s, prealloc, w, size, p),
    };
    if a.rounds == 1 {
        for c in cfgs {
            print_row(&run_one(c)?, a.json)?;
        }
    } else {
        let mut results: Vec<Vec<Row>> = vec![Vec::new(); cfgs.len()];
        for round in 0..a.rounds {
            eprintln!("round {} of {}", round + 1, a.rounds);
            for (i, c) in cfgs.iter().enumerate() {
                results[i].push(run_one(*c)?);
            }
        }
        for mut rs in results {
            rs.sort_by(|x, y| x.appends_per_sec.total_cmp(&y.appends_per_sec));
            let mut median = rs[rs.len() / 2].clone();
            median.rounds = rs.len();
            print_row(&median, a.json)?;
        }
    }
    let _ = fs::remove_dir(&a.dir);
    Ok(())
}
