//! corral-sim: runs the deterministic ZAB simulator (`corral_server::sim`) over many seeds.
//!
//! `--seeds N` runs N seeds from `--start` (random when not given); `--seed S` replays one seed
//! with its violations printed; without either it runs until stopped. It ends with one summary
//! line and exits non-zero on any violation, printing the command that replays each failing
//! seed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use clap::Parser;
use corral_server::sim::ensemble::{run_ensemble_seed, EnsembleCounters, EnsembleOptions};
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
    /// Dynamic reconfiguration (replica simulator): clients' reconfig requests move servers
    /// between voting and observing under the faults.
    #[arg(long)]
    reconfig: bool,
    /// Run client workloads against ensembles of production pipelines (the layer above the
    /// replica: connections, forwarding, watches, sessions) instead of the replica simulator.
    #[arg(long)]
    pipelines: bool,
    /// With --pipelines: the leader's bound on proposals in flight (small values make it
    /// hold clients' and learners' requests often).
    #[arg(long, default_value_t = 1000)]
    outstanding_max: usize,
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
        reconfig: args.reconfig,
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
    let began = Instant::now();
    let threads = args.threads.max(1);
    if args.pipelines {
        let eopts = EnsembleOptions {
            peers: args.peers,
            observers: args.observers,
            fault_ms: args.fault_ms,
            trace: args.trace,
            outstanding_max: args.outstanding_max.max(1),
            ..EnsembleOptions::default()
        };
        let o = eopts.clone();
        let (c, seeds, violations, failed) = run_many(
            start,
            count,
            threads,
            verbose,
            move |seed| {
                let r = run_ensemble_seed(seed, &o);
                (r.counters, r.violations)
            },
            |t: &mut EnsembleCounters, c| t.add(c),
            move |seed| pipelines_replay(seed, &eopts),
        );
        println!(
            "pipelines: seeds: {seeds}, violations: {violations}, leaders: {}, crashes: {}, partitions: {}, \
             sessions: {}, replies: {}, acknowledged writes: {}, reads after sync checked: {}, \
             watch events: {}, client connections lost: {}, sessions resumed elsewhere: {} \
             ({} refused), steps with requests held at a busy leader: {}, steps: {}, first seed: {start}, peers: {}, observers: {}, {:.1?}",
            c.leaders,
            c.crashes,
            c.partitions,
            c.sessions,
            c.replies,
            c.acked_writes,
            c.sync_reads,
            c.watch_events,
            c.connections_lost,
            c.resumed,
            c.resume_refused,
            c.held_steps,
            c.steps,
            args.peers,
            args.observers,
            began.elapsed()
        );
        exit_on(failed);
        return;
    }
    let (o, o2) = (opts.clone(), opts.clone());
    let (c, seeds, violations, failed) = run_many(
        start,
        count,
        threads,
        verbose,
        move |seed| {
            let r = run_seed(seed, &o);
            (r.counters, r.violations)
        },
        |t: &mut Counters, c| t.add(c),
        move |seed| replay_command(seed, &o2),
    );
    println!(
        "seeds: {seeds}, violations: {violations}, elections: {}, commits: {}, crashes: {} ({} mid-write), I/O errors armed: {}, \
         partitions: {}, client acks: {}, syncs started (completed): DIFF {} ({}), TRUNC {} ({}), \
         TRUNC+DIFF {} ({}), SNAP {} ({}), steps: {}, \
                  sessions created: {}, expired: {}, revalidations: {} ({} refused), \
         left out on a higher accepted epoch: {}, acks checked on the disk's durable image: {}, \
         reconfigs committed: {}, hand-overs: {}, \
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
        c.reconfigs,
        c.hand_overs,
        opts.peers,
        opts.observers,
        began.elapsed()
    );
    exit_on(failed);
}

fn exit_on(mut failed: Vec<u64>) {
    if !failed.is_empty() {
        failed.sort_unstable();
        eprintln!("failing seeds: {failed:?}");
        std::process::exit(1);
    }
}

fn pipelines_replay(seed: u64, o: &EnsembleOptions) -> String {
    let mut cmd = format!(
        "cargo run --release -p corral-server --bin corral-sim -- --pipelines --seed {seed} --peers {} --observers {}",
        o.peers, o.observers
    );
    if o.fault_ms != EnsembleOptions::default().fault_ms {
        cmd.push_str(&format!(" --fault-ms {}", o.fault_ms));
    }
    if o.outstanding_max != EnsembleOptions::default().outstanding_max {
        cmd.push_str(&format!(" --outstanding-max {}", o.outstanding_max));
    }
    cmd
}

/// Runs seeds on `threads` threads (all of `count` from `start`, or until stopped), printing
/// each failing seed's violations and replay command; returns the summed counters, the number
/// of seeds and of violations, and the failing seeds.
#[allow(clippy::type_complexity)]
fn run_many<T, R, A, P>(
    start: u64,
    count: Option<u64>,
    threads: usize,
    verbose: bool,
    run: R,
    add: A,
    replay: P,
) -> (T, u64, u64, Vec<u64>)
where
    T: Default + Copy + Send + std::fmt::Debug + 'static,
    R: Fn(u64) -> (T, Vec<String>) + Send + Sync + 'static,
    A: Fn(&mut T, &T) + Send + Sync + 'static,
    P: Fn(u64) -> String + Send + Sync + 'static,
{
    let next = Arc::new(AtomicU64::new(0));
    let total = Arc::new(Mutex::new((T::default(), 0u64, 0u64)));
    let failed = Arc::new(Mutex::new(Vec::<u64>::new()));
    let (run, add, replay) = (Arc::new(run), Arc::new(add), Arc::new(replay));
    let began = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (next, total, failed) = (next.clone(), total.clone(), failed.clone());
            let (run, add, replay) = (run.clone(), add.clone(), replay.clone());
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if count.is_some_and(|c| i >= c) {
                    return;
                }
                let seed = start.wrapping_add(i);
                let (counters, violations) = run(seed);
                if verbose {
                    eprintln!("seed {seed}: {counters:?}");
                }
                if !violations.is_empty() {
                    eprintln!("seed {seed}: {} violation(s)", violations.len());
                    for v in &violations {
                        eprintln!("  {v}");
                    }
                    eprintln!("  replay: {}", replay(seed));
                    failed.lock().expect("lock").push(seed);
                }
                let mut t = total.lock().expect("lock");
                add(&mut t.0, &counters);
                t.1 += 1;
                t.2 += violations.len() as u64;
                if count.is_none() && t.1 % 1000 == 0 {
                    eprintln!("{} seeds so far, {} violations ({:.0?})", t.1, t.2, began.elapsed());
                }
            })
        })
        .collect();
    for h in handles {
        if h.join().is_err() {
            eprintln!("a simulation thread panicked");
            std::process::exit(3);
        }
    }
    let (c, seeds, violations) = *total.lock().expect("lock");
    let failed = failed.lock().expect("lock").clone();
    (c, seeds, violations, failed)
}
