//! `corral-bench chaos`: an ensemble under faults, its clients' histories checked.
//!
//! Starts N servers (corral, Apache ZooKeeper 3.8, or both kinds mixed) each in a network
//! namespace with its data on a filesystem of its own ([`lab`]), runs register,
//! sequential-create, session, watch and lock clients ([`workload`], [`lock`]) while a seeded schedule injects faults one at a
//! time ([`nemesis`]): kill -9, SIGSTOP beyond the session timeout, partitions (halves, the
//! leader, a bridge, one-way), fsync stalls, disk full, a wiped data directory. Then it heals
//! everything and checks:
//!
//! * every register's history is linearizable ([`linear`]), a final read of each register
//!   included, so an acknowledged write that was lost is a violation;
//! * every acknowledged sequential create survives, names are unique, counters have no gap;
//! * all servers converge to one tree (under /chaos) within a bound;
//! * the lock ([`lock`]) is never held by two sessions at once, and every ephemeral (session
//!   and lock nodes) is gone once its session has ended and expired.
//!
//! A failing run keeps the history (`history.json`), draws the operations around each
//! anomaly (`timeline-*.html`), keeps the servers' logs, and prints the seed that replays its
//! schedule.

mod client;
mod lab;
pub mod linear;
mod lock;
mod nemesis;
mod render;
mod workload;

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::servers::Kind;
use lab::{Lab, LabSpec};
use linear::{Call, Op, Reg, Ret, Verdict};
use nemesis::{FaultKind, Timing};
use workload::Shared;

/// Which servers make the ensemble.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum System {
    /// corral servers only.
    Corral,
    /// Apache ZooKeeper 3.8 servers only.
    Zookeeper,
    /// Odd ids corral, even ids ZooKeeper.
    Mixed,
}

/// Options of `corral-bench chaos`.
#[derive(Debug, Clone, clap::Args)]
pub struct ChaosArgs {
    /// The servers.
    #[arg(long, value_enum, default_value = "corral")]
    pub system: System,
    /// Ensemble size.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Seconds of load under faults (with --rounds: the most it may take).
    #[arg(long, default_value_t = 120)]
    pub seconds: u64,
    /// Run every fault kind this many times (in a seeded order), then stop.
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Seed of the fault schedule and the clients' choices (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Fault kinds, comma-separated (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub faults: Vec<FaultKind>,
    /// Register clients.
    #[arg(long, default_value_t = 8)]
    pub clients: u32,
    /// Sequential-create clients.
    #[arg(long, default_value_t = 2)]
    pub seq_clients: u32,
    /// Session clients (ephemerals, session ends and expiry).
    #[arg(long, default_value_t = 2)]
    pub session_clients: u32,
    /// Watchers (persistent watches on a node written without pause).
    #[arg(long, default_value_t = 2)]
    pub watchers: u32,
    /// Lock clients (Curator's mutex recipe: ephemeral sequential nodes, a watch on the
    /// predecessor).
    #[arg(long, default_value_t = 3)]
    pub lock_clients: u32,
    /// Registers per generation.
    #[arg(long, default_value_t = 4)]
    pub keys: u32,
    /// Seconds per generation of registers.
    #[arg(long, default_value_t = 5)]
    pub gen_secs: u64,
    /// Mean pause between a client's operations, ms.
    #[arg(long, default_value_t = 10)]
    pub think_ms: u64,
    /// tickTime of every server, ms (syncLimit is 5 ticks, initLimit 10).
    #[arg(long, default_value_t = 500)]
    pub tick_ms: u32,
    /// Session timeout the clients ask for, ms.
    #[arg(long, default_value_t = 6000)]
    pub session_timeout_ms: i32,
    /// Bound on each request, ms (then its outcome is unknown).
    #[arg(long, default_value_t = 3000)]
    pub op_timeout_ms: u64,
    /// Quiet seconds between faults.
    #[arg(long, default_value_t = 3)]
    pub quiet_secs: u64,
    /// Shortest hold of a fault, seconds.
    #[arg(long, default_value_t = 4)]
    pub hold_min_secs: u64,
    /// Longest hold of a fault, seconds.
    #[arg(long, default_value_t = 10)]
    pub hold_max_secs: u64,
    /// Size of each server's filesystem, MiB (a sparse image: only what is written takes
    /// space). Nothing purges old snapshots within a run (autopurge counts hours): a run of
    /// ten minutes writes a few GiB per server.
    #[arg(long, default_value_t = 8192)]
    pub disk_mib: u32,
    /// Working directory (images, mounts, logs); removed and re-created.
    #[arg(long, default_value = "./corral-chaos")]
    pub dir: PathBuf,
    /// Where the report goes (default: `<dir>-report`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The corral binary.
    #[arg(long, default_value = "target/release/corral")]
    pub corral_bin: PathBuf,
    /// Java class path of Apache ZooKeeper 3.8.
    #[arg(long, default_value = "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar")]
    pub zk_classpath: String,
    /// Extra zoo.cfg line(s) for the corral servers (repeatable), e.g. a test-only key.
    #[arg(long)]
    pub corral_cfg: Vec<String>,
    /// The corral servers' log filter (RUST_LOG).
    #[arg(long, default_value = "info")]
    pub corral_log: String,
    /// Steps the linearizability search may take per register before giving up.
    #[arg(long, default_value_t = 20_000_000)]
    pub max_steps: u64,
}

fn log(t0: Instant, msg: &str) {
    eprintln!("[{:8.3}] {msg}", t0.elapsed().as_secs_f64());
}

/// Runs one chaos campaign; fails when an anomaly is found.
pub fn run(a: ChaosArgs) -> Result<()> {
    if a.nodes == 0 || a.nodes > 9 {
        bail!("--nodes must be 1..=9");
    }
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            % 1_000_000_000
    });
    let kinds: Vec<Kind> = (1..=a.nodes)
        .map(|id| match a.system {
            System::Corral => Kind::Corral,
            System::Zookeeper => Kind::ZooKeeper,
            System::Mixed if id % 2 == 1 => Kind::Corral,
            System::Mixed => Kind::ZooKeeper,
        })
        .collect();
    let faults = if a.faults.is_empty() { FaultKind::ALL.to_vec() } else { a.faults.clone() };
    let out = a.out.clone().unwrap_or_else(|| PathBuf::from(format!("{}-report", a.dir.display())));
    if out.exists() {
        fs::remove_dir_all(&out)?;
    }
    fs::create_dir_all(&out)?;
    let corral_bin = fs::canonicalize(&a.corral_bin).with_context(|| {
        format!("the corral binary {} (build it: cargo build --release)", a.corral_bin.display())
    })?;
    let spec = LabSpec {
        dir: a.dir.clone(),
        corral_bin,
        zk_classpath: a.zk_classpath.clone(),
        kinds: kinds.clone(),
        tick_ms: a.tick_ms,
        disk_mib: a.disk_mib,
        corral_extra: a.corral_cfg.iter().map(|l| format!("{l}\n")).collect(),
        corral_log: a.corral_log.clone(),
    };
    let t0 = Instant::now();
    eprintln!(
        "chaos: {:?}, {} servers, {} s, seed {seed}, faults {}",
        a.system,
        a.nodes,
        a.seconds,
        faults.iter().map(|f| f.name()).collect::<Vec<_>>().join(",")
    );
    let mut lab = Lab::create(spec)?;
    for i in 0..a.nodes {
        lab.start(i)?;
    }
    let formed = lab.wait_formed(Duration::from_secs(120));
    if let Err(e) = formed {
        lab.save_logs(&out.join("logs"))?;
        return Err(e);
    }
    log(t0, "ensemble formed");

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let run_t0 = Instant::now();
    let sh = Arc::new(Shared {
        t0: run_t0,
        nodes: lab.nodes.iter().map(|n| n.addr()).collect(),
        session_timeout_ms: a.session_timeout_ms,
        op_timeout: Duration::from_millis(a.op_timeout_ms),
        until: run_t0 + Duration::from_secs(a.seconds),
        stop: std::sync::atomic::AtomicBool::new(false),
        keys: a.keys,
        gen_secs: a.gen_secs.max(1),
        think: Duration::from_millis(a.think_ms),
        reg: Mutex::new(Vec::new()),
        seq: Mutex::new(Default::default()),
        errors: Mutex::new(BTreeMap::new()),
        sessions: Mutex::new(Default::default()),
        anomalies: Mutex::new(Vec::new()),
        watches: Mutex::new(Default::default()),
        locks: Mutex::new(Default::default()),
    });
    rt.block_on(workload::setup(&sh))?;
    log(t0, "workload set up; faults start");

    let timing = Timing {
        quiet: Duration::from_secs(a.quiet_secs),
        hold: (
            Duration::from_secs(a.hold_min_secs),
            Duration::from_secs(a.hold_max_secs.max(a.hold_min_secs)),
        ),
        session_timeout: Duration::from_millis(a.session_timeout_ms as u64),
        reform_within: Duration::from_secs(120),
    };
    let until = sh.until;
    let sh_stop = sh.clone();
    let nemesis = std::thread::spawn(move || {
        let r = nemesis::run(
            &mut lab,
            seed,
            &faults,
            a.rounds,
            &timing,
            until,
            || run_t0.elapsed().as_nanos() as u64,
            &mut |m| log(t0, m),
        );
        sh_stop.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (lab, r)
    });
    rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..a.clients {
            tasks.spawn(workload::register_worker(sh.clone(), w, seed));
        }
        for w in 0..a.seq_clients {
            tasks.spawn(workload::seq_worker(sh.clone(), 1000 + w, seed));
        }
        for w in 0..a.session_clients {
            tasks.spawn(workload::session_worker(sh.clone(), 2000 + w, seed));
        }
        if a.watchers > 0 {
            tasks.spawn(workload::watch_writer(sh.clone(), 3000, seed));
        }
        for w in 0..a.watchers {
            tasks.spawn(workload::watcher(sh.clone(), 3001 + w, seed));
        }
        for w in 0..a.lock_clients {
            tasks.spawn(lock::lock_worker(sh.clone(), 4000 + w, seed));
        }
        while tasks.join_next().await.is_some() {}
    });
    let (mut lab, faults_done) =
        nemesis.join().map_err(|_| anyhow::anyhow!("the fault thread panicked"))?;
    let load_seconds = run_t0.elapsed().as_secs_f64();
    let mut anomalies: Vec<String> = Vec::new();
    let faults_done = match faults_done {
        Ok(f) => f,
        Err(e) => {
            anomalies.push(format!("fault injection failed: {e:#}"));
            Vec::new()
        }
    };
    for f in &faults_done {
        if f.reformed_ms.is_none() {
            anomalies.push(format!("no ensemble within 120 s of healing '{}'", f.what));
        }
    }
    log(t0, "load done; healing everything");
    lab.heal_all()?;
    let final_reform = lab.wait_formed(Duration::from_secs(120));
    if let Err(e) = &final_reform {
        anomalies.push(format!("final heal: {e}"));
    }

    // Convergence: every server's /chaos equal, within a bound.
    let healed_at = Instant::now();
    let mut trees = Vec::new();
    let mut converged = None;
    while healed_at.elapsed() < Duration::from_secs(120) {
        trees = rt.block_on(async {
            let mut v = Vec::new();
            for addr in &sh.nodes {
                v.push(workload::read_tree(*addr, a.session_timeout_ms).await.ok());
            }
            v
        });
        if trees.iter().all(Option::is_some) && trees.windows(2).all(|w| w[0] == w[1]) {
            converged = Some(healed_at.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let tree = trees.first().cloned().flatten().unwrap_or_default();
    match converged {
        Some(d) => log(
            t0,
            &format!("all servers agree on /chaos ({} ms after the final heal)", d.as_millis()),
        ),
        None => {
            let which: Vec<String> = trees
                .iter()
                .enumerate()
                .map(|(i, t)| match t {
                    None => format!("server {} did not answer", i + 1),
                    Some(t) => format!(
                        "server {}: {} registers, {} sequential",
                        i + 1,
                        t.registers.len(),
                        t.seq.len()
                    ),
                })
                .collect();
            anomalies.push(format!("servers did not converge within 120 s: {}", which.join("; ")));
        }
    }

    // Histories: every register's ops, then a final read of the converged state.
    let end = sh.now() + 1;
    let mut by_key: BTreeMap<String, Vec<Op>> = BTreeMap::new();
    for (path, op) in sh.reg.lock().expect("lock").iter() {
        by_key.entry(path.clone()).or_default().push(op.clone());
    }
    for (path, ops) in by_key.iter_mut() {
        if let Some(reg) = tree.registers.get(path) {
            ops.push(Op {
                process: u32::MAX,
                call: Call::Read,
                ret: Ret::Read(*reg),
                invoke: end,
                complete: Some(end + 1),
            });
        } else if converged.is_some() {
            anomalies.push(format!("register {path} is missing"));
        }
    }
    let t_check = Instant::now();
    let verdicts = check_all(&by_key, a.max_steps);
    log(
        t0,
        &format!("checked {} registers in {:.1} s", by_key.len(), t_check.elapsed().as_secs_f64()),
    );
    let mut gave_up = 0;
    let mut timelines = 0;
    for (path, v) in &verdicts {
        match v {
            Verdict::Linearizable => {}
            Verdict::GaveUp(_) => gave_up += 1,
            Verdict::NotLinearizable { stuck, prefix } => {
                let ops = &by_key[path];
                anomalies.push(format!(
                    "register {path} is not linearizable: no place for {} (process {})",
                    render::describe(&ops[*stuck]),
                    ops[*stuck].process
                ));
                if timelines < 5 {
                    timelines += 1;
                    let html = render::timeline(path, ops, *stuck, prefix, &faults_done);
                    fs::write(out.join(format!("timeline-{timelines}.html")), html)?;
                }
            }
        }
    }
    let seq = sh.seq.lock().expect("lock").clone();
    if converged.is_some() {
        anomalies.extend(workload::check_seq(&seq, &tree.seq));
    }

    // Sessions: once every session has ended and had time to expire, no ephemeral is left.
    anomalies.extend(sh.anomalies.lock().expect("lock").iter().cloned());
    let sessions = sh.sessions.lock().expect("lock").clone();
    let watches = sh.watches.lock().expect("lock").clone();
    let locks = sh.locks.lock().expect("lock").clone();
    anomalies.extend(lock::check_locks(&locks));
    let last_end = sessions.ended.iter().map(|s| s.ended).max().unwrap_or(0);
    let timeout_ns = a.session_timeout_ms as u64 * 1_000_000;
    let mut ephemerals_gone_ms = None;
    if converged.is_some() {
        let give_up = last_end + 3 * timeout_ns + 60_000_000_000;
        let mut left: Vec<String> = Vec::new();
        loop {
            let now = sh.now();
            left.clear();
            for (i, addr) in sh.nodes.iter().enumerate() {
                match rt.block_on(workload::read_ephemerals(*addr, a.session_timeout_ms)) {
                    Ok(v) => left.extend(
                        v.iter().map(|(p, o)| format!("{p} (owner 0x{o:x}) on server {}", i + 1)),
                    ),
                    Err(e) => left.push(format!("server {} unreadable: {e}", i + 1)),
                }
            }
            if left.is_empty() {
                ephemerals_gone_ms = Some(now.saturating_sub(last_end) / 1_000_000);
                break;
            }
            if now > give_up {
                anomalies.push(format!(
                    "{} ephemerals of ended sessions left {} s after the last session ended: {}",
                    left.len(),
                    (now - last_end) / 1_000_000_000,
                    left.iter().take(5).cloned().collect::<Vec<_>>().join("; ")
                ));
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        if ephemerals_gone_ms.is_some() {
            log(
                t0,
                &format!(
                    "no ephemeral left ({} ms after the last session ended)",
                    ephemerals_gone_ms.unwrap_or(0)
                ),
            );
        }
    }

    // The report.
    let ops: Vec<&Op> = by_key.values().flatten().filter(|o| o.process != u32::MAX).collect();
    let count = |f: &dyn Fn(&Op) -> bool| ops.iter().filter(|o| f(o)).count();
    let reads = count(&|o| matches!(o.ret, Ret::Read(_)));
    let writes = count(&|o| matches!((o.call, o.ret), (Call::Write(_), Ret::Written(_))));
    let cas_ok = count(&|o| matches!((o.call, o.ret), (Call::Cas { .. }, Ret::Written(_))));
    let cas_failed = count(&|o| o.ret == Ret::CasFailed);
    let unknown = count(&|o| o.ret == Ret::Unknown);
    let mut per_kind: BTreeMap<String, (u64, Vec<u64>, u64)> = BTreeMap::new();
    for f in &faults_done {
        let e = per_kind.entry(f.kind.name()).or_default();
        e.0 += 1;
        e.1.extend(f.reformed_ms);
        e.2 += f.exits.len() as u64;
    }
    let kinds_json: serde_json::Map<String, serde_json::Value> = per_kind
        .iter()
        .map(|(k, (n, ms, exits))| {
            let mut ms = ms.clone();
            ms.sort_unstable();
            let median = ms.get(ms.len() / 2).copied();
            (k.clone(), json!({"count": n, "reformed_ms": ms, "reformed_ms_median": median, "reformed_ms_max": ms.last(), "server_exits": exits}))
        })
        .collect();
    let summary = json!({
        "system": format!("{:?}", a.system).to_lowercase(),
        "nodes": a.nodes,
        "load_seconds": (load_seconds * 10.0).round() / 10.0,
        "seed": seed,
        "registers": by_key.len(),
        "reads": reads,
        "writes": writes,
        "cas_ok": cas_ok,
        "cas_failed": cas_failed,
        "unknown": unknown,
        "sequential_acked": seq.acked.len(),
        "sequential_unknown": seq.unknown,
        "sequential_failed": seq.failed,
        "watch_windows": watches.windows,
        "watch_events": watches.events,
        "watch_windows_broken": watches.broken,
        "lock_acquired": locks.acquires.len(),
        "lock_holds_confirmed": locks.holds.len(),
        "lock_holds_lost": locks.lost,
        "lock_holds_unconfirmed": locks.unconfirmed,
        "lock_watch_events": locks.watch_events,
        "sessions_ended": sessions.ended.len(),
        "sessions_closed": sessions.ended.iter().filter(|s| s.closed).count(),
        "ephemerals_created": sessions.created,
        "ephemerals_checked_live": sessions.checked,
        "ephemerals_gone_ms_after_last_session": ephemerals_gone_ms,
        "error_codes": sh.errors.lock().expect("lock").iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "faults": faults_done.len(),
        "fault_kinds": kinds_json,
        "converged_ms": converged.map(|d| d.as_millis() as u64),
        "checker_gave_up": gave_up,
        "anomalies": anomalies,
    });
    fs::write(out.join("summary.json"), serde_json::to_string_pretty(&summary)?)?;
    let history = json!({"seed": seed, "faults": faults_done, "registers": by_key, "sequential": seq, "sessions": sessions, "locks": locks});
    fs::write(out.join("history.json"), serde_json::to_string(&history)?)?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    lab.save_logs(&out.join("logs"))?;
    if !anomalies.is_empty() {
        for an in &anomalies {
            eprintln!("ANOMALY: {an}");
        }
        bail!(
            "{} anomalies; report in {} — replay the schedule with --seed {seed} --system {} --nodes {} --seconds {}{}",
            anomalies.len(),
            out.display(),
            format!("{:?}", a.system).to_lowercase(),
            a.nodes,
            a.seconds,
            a.rounds.map(|r| format!(" --rounds {r}")).unwrap_or_default()
        );
    }
    if gave_up > 0 {
        eprintln!("note: the checker gave up on {gave_up} registers (raise --max-steps or lower the load)");
    }
    drop(lab);
    let _ = fs::remove_dir_all(&a.dir);
    Ok(())
}

/// Checks every register's history, on two threads.
fn check_all(by_key: &BTreeMap<String, Vec<Op>>, max_steps: u64) -> Vec<(String, Verdict)> {
    let keys: Vec<(&String, &Vec<Op>)> = by_key.iter().collect();
    let init = Reg { value: 0, version: 0 };
    std::thread::scope(|s| {
        let halves: Vec<_> = keys
            .chunks(keys.len().div_ceil(2).max(1))
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|(k, ops)| ((*k).clone(), linear::check(init, ops, max_steps)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        halves.into_iter().flat_map(|h| h.join().expect("checker thread")).collect()
    })
}
