//! corral-sim: runs the deterministic ZAB simulator (`corral_server::sim`) over many seeds.
//!
//! `--seeds N` runs N seeds from `--start` (random when not given); `--seed S` replays one seed
//! with its violations printed; without either it runs until stopped. It ends with one summary
//! line and exits non-zero on any violation, printing the command that replays each failing
//! seed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use clap::Parser;
use corral_server::sim::{replay_command, run_seed, Counters, SimOptions};

#[derive(Parser, Debug)]
#[command(name = "corral-sim", about = "Deterministic simulation of the ZAB core")]
struct Args {
    /// Number of seeds to run (without it, and without --seed, runs until stopped).
    #[arg(long)]
    seeds: Option<u64>,
    /// First seed of a --seeds run (default: random).
    #[arg(long)]
    start: Option<u64>,
    /// Replay exactly this seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Voting peers.
    #[arg(long, default_value_t = 3)]
    peers: usize,
    /// Observers.
    #[arg(long, default_value_t = 0)]
    observers: usize,
    /// Simulated milliseconds with faults per seed.
    #[arg(long, default_value_t = 8_000)]
    fault_ms: u64,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Print every seed's counters.
    #[arg(long)]
    verbose: bool,
    /// Print a trace of roles, syncs, commits and faults (use with --seed).
    #[arg(long)]
    trace: bool,
}

fn main() {
    let args = Args::parse();
    if !(1..=9).contains(&args.peers) {
        eprintln!("--peers must be between 1 and 9");
        std::process::exit(2);
    }
    let opts = SimOptions {
        peers: args.peers,
        observers: args.observers,
        fault_ms: args.fault_ms,
        trace: args.trace,
        ..SimOptions::default()
    };
    let (start, count) = match (args.seed, args.seeds) {
        (Some(s), _) => (s, Some(1)),
        (None, n) => {
            let start = args.start.unwrap_or_else(|| {
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0);
                t ^ u64::from(std::process::id()).rotate_left(32)
            });
            (start, n)
        }
    };
    let verbose = args.verbose || args.seed.is_some();
    let next = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let total = Arc::new(Mutex::new((Counters::default(), 0u64, 0u64)));
    let failed = Arc::new(Mutex::new(Vec::<u64>::new()));
    let began = Instant::now();
    let threads = args.threads.max(1);
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (next, stop, total, failed, opts) =
                (next.clone(), stop.clone(), total.clone(), failed.clone(), opts.clone());
            std::thread::spawn(move || loop {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if count.is_some_and(|c| i >= c) {
                    return;
                }
                let seed = start.wrapping_add(i);
                let r = run_seed(seed, &opts);
                if verbose {
                    eprintln!("seed {seed}: {:?}", r.counters);
                }
                if !r.violations.is_empty() {
                    eprintln!("seed {seed}: {} violation(s)", r.violations.len());
                    for v in &r.violations {
                        eprintln!("  {v}");
                    }
                    eprintln!("  replay: {}", replay_command(seed, &opts));
                    failed.lock().expect("lock").push(seed);
                }
                let mut t = total.lock().expect("lock");
                t.0.add(&r.counters);
                t.1 += 1;
                t.2 += r.violations.len() as u64;
                if count.is_none() && t.1 % 1000 == 0 {
                    eprintln!("{} seeds so far, {} violations ({:.0?})", t.1, t.2, began.elapsed());
                }
            })
        })
        .collect();
    for h in handles {
        if h.join().is_err() {
            stop.store(true, Ordering::Relaxed);
            eprintln!("a simulation thread panicked");
            std::process::exit(3);
        }
    }
    let (c, seeds, violations) = *total.lock().expect("lock");
    println!(
        "seeds: {seeds}, violations: {violations}, elections: {}, commits: {}, crashes: {} ({} mid-write), I/O errors armed: {}, \
         partitions: {}, client acks: {}, syncs started (completed): DIFF {} ({}), TRUNC {} ({}), \
         TRUNC+DIFF {} ({}), SNAP {} ({}), steps: {}, \
                  sessions created: {}, expired: {}, revalidations: {} ({} refused), \
         left out on a higher accepted epoch: {}, acks checked on the disk's durable image: {}, \
         first seed: {start}, peers: {}, observers: {}, {:.1?}",
        c.elections,
        c.commits,
        c.crashes,
        c.torn_crashes,
        c.io_errors_armed,
        c.partitions,
        c.client_acks,
        c.sync_diff,
        c.synced_diff,
        c.sync_trunc,
        c.synced_trunc,
        c.sync_trunc_diff,
        c.synced_trunc_diff,
        c.sync_snap,
        c.synced_snap,
                c.steps,
        c.sessions_created,
                c.sessions_expired,
        c.revalidations,
        c.revalidations_refused,
        c.stuck_on_accepted_epoch,
        c.durable_image_checks,
        opts.peers,
        opts.observers,
        began.elapsed()
    );
    let failed = failed.lock().expect("lock");
    if !failed.is_empty() {
        let mut f = failed.clone();
        f.sort_unstable();
        eprintln!("failing seeds: {f:?}");
        std::process::exit(1);
    }
}
