//! `corral-bench wake-ceiling`: how many blocked threads per second this machine can wake in
//! commit groups when a serialized "flush" of a given length separates the groups — the same
//! handoff as the log's group commit, with no I/O at all. It bounds what thread-per-writer group
//! commit can reach on the machine, whatever the log does.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

/// Options of `corral-bench wake-ceiling`.
#[derive(Debug, clap::Args)]
pub struct WakeArgs {
    /// Blocked threads (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "8,64,256")]
    pub writers: Vec<usize>,
    /// Simulated flush per group in microseconds (a busy wait; comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "0,100")]
    pub flush_us: Vec<u64>,
    /// Measured seconds per configuration.
    #[arg(long, default_value_t = 2.0)]
    pub seconds: f64,
}

struct Group {
    state: AtomicU32,
}

struct Shared {
    queue: Mutex<(usize, Arc<Group>)>,
    work: Condvar,
    stop: AtomicBool,
    woken: AtomicU64,
}

fn run_one(writers: usize, flush_us: u64, seconds: f64) -> f64 {
    let sh = Arc::new(Shared {
        queue: Mutex::new((0, Arc::new(Group { state: AtomicU32::new(0) }))),
        work: Condvar::new(),
        stop: AtomicBool::new(false),
        woken: AtomicU64::new(0),
    });
    let mut threads = Vec::new();
    for _ in 0..writers {
        let sh = sh.clone();
        threads.push(std::thread::spawn(move || {
            while !sh.stop.load(Ordering::Relaxed) {
                let g = {
                    let mut q = sh.queue.lock().expect("lock");
                    q.0 += 1;
                    sh.work.notify_one();
                    q.1.clone()
                };
                while g.state.load(Ordering::Acquire) == 0 {
                    atomic_wait::wait(&g.state, 0);
                }
                sh.woken.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let c = sh.clone();
    let coordinator = std::thread::spawn(move || loop {
        let g = {
            let mut q = c.queue.lock().expect("lock");
            while q.0 == 0 {
                if c.stop.load(Ordering::Relaxed) {
                    return;
                }
                q = c.work.wait_timeout(q, Duration::from_millis(5)).expect("lock").0;
            }
            q.0 = 0;
            std::mem::replace(&mut q.1, Arc::new(Group { state: AtomicU32::new(0) }))
        };
        if flush_us > 0 {
            // Sleeping in a "flush" like a blocking fdatasync does.
            std::thread::sleep(Duration::from_micros(flush_us));
        }
        g.state.store(1, Ordering::Release);
        atomic_wait::wake_all(&g.state);
    });
    std::thread::sleep(Duration::from_millis(300));
    let n0 = sh.woken.load(Ordering::Relaxed);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let rate = (sh.woken.load(Ordering::Relaxed) - n0) as f64 / t0.elapsed().as_secs_f64();
    sh.stop.store(true, Ordering::Relaxed);
    let _ = coordinator.join();
    // Release whoever still waits on the open group.
    let q = sh.queue.lock().expect("lock");
    q.1.state.store(1, Ordering::Release);
    atomic_wait::wake_all(&q.1.state);
    drop(q);
    for t in threads {
        let _ = t.join();
    }
    rate
}

/// Runs and prints the table.
pub fn run(a: WakeArgs) -> Result<()> {
    if a.seconds <= 0.0 || a.seconds > 60.0 || a.writers.iter().any(|&w| w == 0 || w > 4096) {
        bail!("--seconds in (0, 60], --writers in 1..=4096");
    }
    println!("{:>8} {:>9} {:>13}", "writers", "flush_us", "wakeups/s");
    for &w in &a.writers {
        for &f in &a.flush_us {
            println!("{w:>8} {f:>9} {:>13.0}", run_one(w, f, a.seconds));
        }
    }
    Ok(())
}
