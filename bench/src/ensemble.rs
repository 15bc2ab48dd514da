//! `corral-bench ensemble`: three corral servers and three Apache ZooKeeper 3.8 servers side
//! by side on this machine, each ensemble started from the same three zoo.cfg files (loopback
//! ports, fsync on, data on the same disk under `--dir`), every server process pinned to the
//! server core and the load generator to the other, as `compare` does.
//!
//! Workloads (8 sessions × 64 outstanding, spread round robin over the three servers, so
//! two thirds of the writes are forwarded by followers):
//!
//! * `a`: setData 1 KiB; `b`: create 100 B; `c`: getData 1 KiB;
//! * `failover`: kill -9 of the leader, then the time until the first write (a create through
//!   any surviving server, a fresh session each attempt) is acknowledged;
//! * `snap` (not in the default set): `--znodes` znodes of 100 B loaded through the leader;
//!   paced writes to the leader (`--probe-rate` setData 1 KiB a second) for 15 s, then a
//!   follower is killed, its data directory emptied (but for myid) and started again: the
//!   time until it serves as a follower with every znode (SNAP catch-up), and the leader's
//!   write p99.9 during the catch-up against the 15 s before.
//!
//! Each round starts a fresh ensemble of each system (the order alternating), runs the
//! workloads, then the failover; with `--rounds N` every figure is the median of N rounds.
//! Ratios are corral ÷ ZooKeeper.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::load::{self, LoadArgs};
use crate::servers::{pin_this_thread, Kind, Server, ServerSpec};
use crate::zk::{self, Session};

/// Options of `corral-bench ensemble`.
#[derive(Debug, Clone, clap::Args)]
pub struct EnsembleArgs {
    /// Workloads, comma-separated: a (setData 1 KiB), b (create 100 B), c (getData 1 KiB),
    /// failover (kill -9 of the leader to the first acknowledged write), snap (an emptied
    /// follower's SNAP catch-up under paced writes; give ZooKeeper --zk-jvm-opts=-Xmx6g at
    /// 10M znodes).
    #[arg(long, default_value = "a,b,c,failover", value_delimiter = ',')]
    pub workloads: Vec<String>,
    /// Measured seconds per load workload per system.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Unmeasured warm-up seconds before each load workload.
    #[arg(long, default_value_t = 3.0)]
    pub warmup: f64,
    /// Rounds; each figure is the median over rounds, systems alternate in each round.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Parent directory of every server's data (the same disk for all).
    #[arg(long, default_value = "./corral-bench-data")]
    pub dir: PathBuf,
    /// The corral binary.
    #[arg(long, default_value = "target/release/corral")]
    pub corral_bin: PathBuf,
    /// Java class path of Apache ZooKeeper 3.8.
    #[arg(long, default_value = "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar")]
    pub zk_classpath: String,
    /// JVM options for each ZooKeeper server.
    #[arg(long, default_value = "-Xmx1000m", allow_hyphen_values = true)]
    pub zk_jvm_opts: String,
    /// Measure corral only.
    #[arg(long)]
    pub skip_zookeeper: bool,
    /// First of the loopback ports used (each system takes 9 from here: client, quorum and
    /// election port of each server; corral's start 20 above).
    #[arg(long, default_value_t = 24181)]
    pub port: u16,
    /// The core the servers are pinned to.
    #[arg(long, default_value_t = 0)]
    pub server_core: usize,
    /// The core the load generator is pinned to.
    #[arg(long, default_value_t = 1)]
    pub client_core: usize,
    /// Distinct keys of a and c.
    #[arg(long, default_value_t = 10_000)]
    pub keyspace: usize,
    /// Znodes loaded before `snap`.
    #[arg(long, default_value_t = 10_000_000)]
    pub znodes: usize,
    /// setData 1 KiB a second to the leader during `snap` (8 sessions).
    #[arg(long, default_value_t = 4000)]
    pub probe_rate: u32,
    /// Also append one JSON object per figure to this file.
    #[arg(long)]
    pub jsonl: Option<PathBuf>,
    /// A zoo.cfg setting for every server of both systems, KEY=VALUE, replacing the common one
    /// of that key (e.g. --cfg forceSync=no); repeatable.
    #[arg(long = "cfg")]
    pub cfg: Vec<String>,
}

const SERVERS: usize = 3;

/// One system's three servers.
struct Ensemble {
    kind: Kind,
    servers: Vec<Server>,
    /// 1-based ids, as in zoo.cfg, parallel to `servers`.
    ids: Vec<usize>,
}

fn base_port(a: &EnsembleArgs, kind: Kind) -> u16 {
    match kind {
        Kind::ZooKeeper => a.port,
        Kind::Corral => a.port + 20,
    }
}

fn client_addr(a: &EnsembleArgs, kind: Kind, i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], base_port(a, kind) + 3 * i as u16))
}

fn home(a: &EnsembleArgs, kind: Kind, i: usize) -> PathBuf {
    a.dir.join(format!("corral-bench-ensemble-{}-{}", kind.name(), i + 1))
}

/// The zoo.cfg of server `i` (0-based): the same for both systems but for ports and paths.
fn zoo_cfg(a: &EnsembleArgs, kind: Kind, i: usize) -> String {
    let base = base_port(a, kind);
    let mut t = format!(
        "# written by corral-bench ensemble; the same settings for both systems\n\
         tickTime=2000\ninitLimit=10\nsyncLimit=5\n\
         dataDir={data}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
         forceSync=yes\nmaxClientCnxns=0\n4lw.commands.whitelist=*\n\
         admin.enableServer=false\nautopurge.purgeInterval=0\n",
        data = home(a, kind, i).join("data").display(),
        port = client_addr(a, kind, i).port(),
    );
    for j in 0..SERVERS {
        let p = base + 3 * j as u16;
        t.push_str(&format!("server.{}=127.0.0.1:{}:{}:participant\n", j + 1, p + 1, p + 2));
    }
    t
}

impl Ensemble {
    fn start(a: &EnsembleArgs, spec: &ServerSpec, kind: Kind) -> Result<Ensemble> {
        let mut servers = Vec::new();
        for i in 0..SERVERS {
            let h = home(a, kind, i);
            if h.exists() {
                fs::remove_dir_all(&h).with_context(|| format!("removing {}", h.display()))?;
            }
            fs::create_dir_all(h.join("data"))?;
            fs::write(h.join("data").join("myid"), format!("{}\n", i + 1))?;
            fs::write(h.join("zoo.cfg"), spec.with_extra(zoo_cfg(a, kind, i)))?;
        }
        for i in 0..SERVERS {
            servers.push(spec.spawn_in(
                kind,
                &home(a, kind, i),
                client_addr(a, kind, i),
                "info",
            )?);
        }
        let e = Ensemble { kind, servers, ids: (1..=SERVERS).collect() };
        e.wait_for_leader(Duration::from_secs(120))?;
        Ok(e)
    }

    fn hosts(&self) -> String {
        self.servers.iter().map(|s| s.addr_string()).collect::<Vec<_>>().join(",")
    }

    /// Waits (bounded) until one running server leads and the others follow; its index.
    fn wait_for_leader(&self, within: Duration) -> Result<usize> {
        let deadline = Instant::now() + within;
        loop {
            let modes: Vec<String> = self
                .servers
                .iter()
                .map(|s| {
                    s.four_letter("srvr")
                        .ok()
                        .and_then(|t| {
                            t.lines().find_map(|l| l.strip_prefix("Mode: ")).map(str::to_owned)
                        })
                        .unwrap_or_default()
                })
                .collect();
            let leaders: Vec<usize> = (0..modes.len()).filter(|i| modes[*i] == "leader").collect();
            if leaders.len() == 1 && modes.iter().all(|m| m == "leader" || m == "follower") {
                return Ok(leaders[0]);
            }
            if Instant::now() > deadline {
                bail!("{}: no agreed leader within {within:?}: {modes:?}", self.kind.name());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn cpu_seconds(&self) -> f64 {
        self.servers.iter().filter_map(|s| s.cpu_seconds().ok()).sum()
    }

    fn stop(mut self) {
        for s in &mut self.servers {
            let _ = s.stop(Duration::from_secs(10));
        }
    }
}

/// Kills the leader and returns the time until a create through any other server is
/// acknowledged (bounded by 120 s).
fn failover(e: &mut Ensemble) -> Result<(Duration, usize)> {
    let leader = e.wait_for_leader(Duration::from_secs(60))?;
    let others: Vec<String> =
        (0..e.servers.len()).filter(|i| *i != leader).map(|i| e.servers[i].addr_string()).collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let killed = Instant::now();
    e.servers[leader].kill()?;
    let deadline = killed + Duration::from_secs(120);
    let took = rt.block_on(async {
        let mut attempt = 0u64;
        loop {
            if Instant::now() > deadline {
                bail!("{}: no write acknowledged within 120 s of the leader's kill", e.kind.name());
            }
            attempt += 1;
            let addr = &others[attempt as usize % others.len()];
            let path = format!("/failover-{attempt}");
            let r = tokio::time::timeout(Duration::from_secs(5), async {
                let mut s = Session::connect(addr, 10_000).await?;
                let r = s.call(&zk::create(path, b"", 0)).await?;
                anyhow::Ok(r.err == 0)
            })
            .await;
            if matches!(r, Ok(Ok(true))) {
                return Ok(killed.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })?;
    Ok((took, e.ids[leader]))
}

/// `srvr`'s "Mode:" and "Node count:" of a server (empty, 0 when it does not answer).
fn mode_and_count(s: &Server) -> (String, u64) {
    let t = s.four_letter("srvr").unwrap_or_default();
    let mode = t.lines().find_map(|l| l.strip_prefix("Mode: ")).unwrap_or("").trim().to_owned();
    let count = t
        .lines()
        .find_map(|l| l.strip_prefix("Node count: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    (mode, count)
}

/// Loads `--znodes` znodes through the leader; paced writes to the leader for 15 s; then a
/// follower restarted with an empty data directory catches up (by SNAP: far more txns than
/// any history window) while the paced writes go on, until it serves as a follower with every
/// znode and 2 s more. Returns the catch-up time and the leader's write p99.9 before and
/// during it.
fn snap_catch_up(
    e: &mut Ensemble,
    a: &EnsembleArgs,
    spec: &ServerSpec,
) -> Result<Vec<(&'static str, f64)>> {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let leader = e.wait_for_leader(Duration::from_secs(60))?;
    let victim = (0..e.servers.len()).find(|i| *i != leader).expect("three servers");
    let laddr = e.servers[leader].addr_string();
    let deadline = Instant::now() + Duration::from_secs(7200);
    let t = Instant::now();
    let failed = crate::scenarios::load_znodes(&laddr, a.znodes, 100, deadline)?;
    if failed > 0 {
        bail!("{}: {failed} creates failed while loading", e.kind.name());
    }
    let load_s = t.elapsed().as_secs_f64();
    let (_, leader_count) = mode_and_count(&e.servers[leader]);
    // Let the snapshots the load triggered finish on every server (all share one core), so
    // that "before" is a quiet ensemble: no snapshot file being written (bounded, 300 s).
    let settle = Instant::now() + Duration::from_secs(300);
    while Instant::now() < settle
        && e.servers.iter().any(|s| {
            fs::read_dir(s.snap_dir()).is_ok_and(|rd| {
                rd.flatten().any(|f| {
                    let n = f.file_name().to_string_lossy().into_owned();
                    // corral: a temporary name; ZooKeeper: a snapshot written in the last 2 s.
                    n.ends_with(".tmp")
                        || (n.starts_with("snapshot.")
                            && f.metadata().and_then(|m| m.modified()).is_ok_and(|m| {
                                m.elapsed().unwrap_or_default() < Duration::from_secs(2)
                            }))
                })
            })
        })
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    // Before: 15 s of paced writes.
    let t0 = Instant::now();
    let idle_until = t0 + Duration::from_secs(15);
    let idle = crate::scenarios::paced_writes(&laddr, a.probe_rate, t0, idle_until, move || {
        Instant::now() >= idle_until
    })?;
    // The others' latency figures start afresh: their maxima after the catch-up say where a
    // stall of the leader's writes came from (its log, or the other follower's).
    let other = (0..e.servers.len()).find(|i| *i != leader && *i != victim).expect("three");
    for i in [leader, other] {
        let _ = e.servers[i].four_letter("srst");
    }
    // The follower loses everything and comes back.
    e.servers[victim].kill()?;
    let vhome = home(a, e.kind, victim);
    for entry in fs::read_dir(vhome.join("data"))? {
        let p = entry?.path();
        if p.file_name().is_some_and(|n| n == "myid") {
            continue;
        }
        if p.is_dir() {
            fs::remove_dir_all(&p)?;
        } else {
            fs::remove_file(&p)?;
        }
    }
    let vaddr = client_addr(a, e.kind, victim);
    let t1 = Instant::now();
    e.servers[victim] = spec.spawn_in(e.kind, &vhome, vaddr, "info")?;
    // Caught up: it answers as a follower holding at least the znodes loaded (µs after t1;
    // 0: not yet). Watched from another thread while the writes go on.
    let caught_up = Arc::new(AtomicU64::new(0));
    let watcher = {
        let caught_up = caught_up.clone();
        let victim_pid_addr = vaddr;
        std::thread::spawn(move || {
            let limit = t1 + Duration::from_secs(1200);
            while Instant::now() < limit {
                let t = crate::servers::four_letter(victim_pid_addr, "srvr").unwrap_or_default();
                let follower = t.lines().any(|l| l.trim() == "Mode: follower");
                let count: u64 = t
                    .lines()
                    .find_map(|l| l.strip_prefix("Node count: "))
                    .and_then(|n| n.trim().parse().ok())
                    .unwrap_or(0);
                if follower && count >= leader_count {
                    caught_up.store(t1.elapsed().as_micros().max(1) as u64, Ordering::Release);
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let during = {
        let caught_up = caught_up.clone();
        crate::scenarios::paced_writes(
            &laddr,
            a.probe_rate,
            t1,
            t1 + Duration::from_secs(1200),
            move || {
                let c = caught_up.load(Ordering::Acquire);
                c > 0 && t1.elapsed() > Duration::from_micros(c) + Duration::from_secs(2)
            },
        )?
    };
    let _ = watcher.join();
    let c = caught_up.load(Ordering::Acquire);
    if c == 0 {
        bail!("{}: the emptied follower did not catch up within 1200 s", e.kind.name());
    }
    let catch_up_s = c as f64 / 1e6;
    // Only the writes sent before it had caught up count as during.
    let p999 = |ops: &[(u64, u64)], until: u64| {
        let mut v: Vec<u64> =
            ops.iter().filter(|(at, _)| *at <= until).map(|(_, us)| *us).collect();
        v.sort_unstable();
        v.get(((v.len() as f64) * 0.999) as usize).or(v.last()).copied().unwrap_or(0) as f64
    };
    let max = |ops: &[(u64, u64)], until: u64| {
        ops.iter().filter(|(at, _)| *at <= until).map(|(_, us)| *us).max().unwrap_or(0) as f64
    };
    let before_p999 = p999(&idle, u64::MAX);
    let during_p999 = p999(&during, c);
    let victim_rss = e.servers[victim].rss_mib().unwrap_or(0.0);
    // Where a stall came from: the longest log flush and update of the leader and of the other
    // follower (the quorum the leader's writes wait for) since the reset above.
    let mut stalls: Vec<(&'static str, f64)> = Vec::new();
    for (i, names) in [
        (leader, ["leader_log_flush_max_us", "leader_update_max_us"]),
        (other, ["other_follower_log_flush_max_us", "other_follower_update_max_us"]),
    ] {
        let text = e.servers[i].four_letter("mntr").unwrap_or_default();
        let get = |k: &str| {
            text.lines().find_map(|l| {
                let (key, v) = l.split_once('\t')?;
                (key == k).then(|| v.trim().parse::<f64>().ok()).flatten()
            })
        };
        let flush = get("zk_max_log_flush_time_us").or(get("zk_max_fsynctime").map(|ms| ms * 1e3));
        if let Some(v) = flush {
            stalls.push((names[0], v));
        }
        if let Some(v) = get("zk_max_update_latency_us") {
            stalls.push((names[1], v));
        }
    }
    Ok([
        ("znodes", leader_count as f64),
        ("load_ops_per_sec", a.znodes as f64 / load_s),
        ("catch_up_s", catch_up_s),
        ("leader_write_p999_before_us", before_p999),
        ("leader_write_p999_during_catch_up_us", during_p999),
        ("leader_write_max_before_us", max(&idle, u64::MAX)),
        ("leader_write_max_during_catch_up_us", max(&during, c)),
        ("catch_up_p999_over_before", during_p999 / before_p999.max(1.0)),
        ("writes_during_catch_up", during.iter().filter(|(at, _)| *at <= c).count() as f64),
        ("follower_rss_after_catch_up_mib", victim_rss),
    ]
    .into_iter()
    .chain(stalls)
    .collect())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

/// Runs the comparison and prints the table.
pub fn run(a: EnsembleArgs) -> Result<()> {
    if a.rounds == 0 || a.rounds > 50 {
        bail!("--rounds must be in 1..=50");
    }
    for w in &a.workloads {
        if !["a", "b", "c", "failover", "snap"].contains(&w.as_str()) {
            bail!("unknown workload {w}");
        }
    }
    fs::create_dir_all(&a.dir)?;
    // Each server runs in its own directory: every path it is given must be absolute.
    let mut a = a;
    a.dir = fs::canonicalize(&a.dir).with_context(|| format!("--dir {}", a.dir.display()))?;
    let corral_bin = fs::canonicalize(&a.corral_bin)
        .with_context(|| format!("the corral binary {}", a.corral_bin.display()))?;
    let spec = ServerSpec {
        corral_bin,
        zk_classpath: a.zk_classpath.clone(),
        zk_jvm_opts: a.zk_jvm_opts.clone(),
        snap_count: 100_000,
        core: a.server_core,
        dir: a.dir.clone(),
        port: a.port,
        tls_dir: None,
        extra_cfg: crate::servers::parse_cfg(&a.cfg)?,
    };
    pin_this_thread(a.client_core)?;
    let kinds: Vec<Kind> =
        if a.skip_zookeeper { vec![Kind::Corral] } else { vec![Kind::ZooKeeper, Kind::Corral] };
    // (workload, figure, system) -> values over rounds
    let mut figures: BTreeMap<(String, String, &'static str), Vec<f64>> = BTreeMap::new();
    let mut jsonl = match &a.jsonl {
        Some(p) => Some(fs::OpenOptions::new().create(true).append(true).open(p)?),
        None => None,
    };
    for round in 0..a.rounds {
        let mut order = kinds.clone();
        if round % 2 == 1 {
            order.reverse();
        }
        for &kind in &order {
            eprintln!("round {}: starting three {} servers", round + 1, kind.name());
            let mut e = Ensemble::start(&a, &spec, kind)?;
            for w in a.workloads.iter().filter(|w| *w != "failover" && *w != "snap") {
                let (op, value_bytes) = match w.as_str() {
                    "a" => ("set", 1024),
                    "b" => ("create", 100),
                    _ => ("get", 1024),
                };
                let args = LoadArgs {
                    server: e.hosts(),
                    sessions: 8,
                    outstanding: 64,
                    op: op.into(),
                    read_pct: 0,
                    value_bytes,
                    keyspace: a.keyspace,
                    seconds: a.seconds,
                    ops: None,
                    warmup: a.warmup,
                    root: format!("/bench-{w}"),
                    no_setup: false,
                    threads: 1,
                    json: false,
                    tls_dir: None,
                };
                let cpu0 = e.cpu_seconds();
                let r = load::run_load(&args)
                    .with_context(|| format!("{} workload {w}", kind.name()))?;
                let cpu = e.cpu_seconds() - cpu0;
                // CPU of all three servers over the warm-up and the measured part, per
                // 100k measured operations (the warm-up's share is the same for both).
                let ops_total = r.ops_per_sec * (a.seconds + a.warmup);
                let vals = [
                    ("ops_per_sec", r.ops_per_sec),
                    ("p50_us", r.p50_us as f64),
                    ("p99_us", r.p99_us as f64),
                    ("p999_us", r.p999_us as f64),
                    ("max_us", r.max_us as f64),
                    ("errors", r.errors as f64),
                    ("cpu_s_per_100k_ops", cpu / ops_total.max(1.0) * 100_000.0),
                ];
                for (f, v) in vals {
                    figures.entry((w.clone(), f.into(), kind.name())).or_default().push(v);
                    if let Some(j) = jsonl.as_mut() {
                        writeln!(
                            j,
                            "{}",
                            json!({"bench": "ensemble", "round": round + 1, "system": kind.name(),
                                   "workload": w, "figure": f, "value": v})
                        )?;
                    }
                }
                eprintln!(
                    "  {} {w}: {:.0} ops/s, p99 {} µs, errors {}",
                    kind.name(),
                    r.ops_per_sec,
                    r.p99_us,
                    r.errors
                );
            }
            if a.workloads.iter().any(|w| w == "snap") {
                for (f, v) in snap_catch_up(&mut e, &a, &spec)? {
                    eprintln!("  {} snap: {f} {v:.1}", kind.name());
                    figures.entry(("snap".into(), f.into(), kind.name())).or_default().push(v);
                    if let Some(j) = jsonl.as_mut() {
                        writeln!(
                            j,
                            "{}",
                            json!({"bench": "ensemble", "round": round + 1, "system": kind.name(),
                                   "workload": "snap", "figure": f, "value": v})
                        )?;
                    }
                }
            }
            if a.workloads.iter().any(|w| w == "failover") {
                let (took, leader) = failover(&mut e)?;
                let ms = took.as_secs_f64() * 1000.0;
                eprintln!(
                    "  {} failover: leader {leader} killed, first write after {ms:.0} ms",
                    kind.name()
                );
                figures.entry(("failover".into(), "ms".into(), kind.name())).or_default().push(ms);
                if let Some(j) = jsonl.as_mut() {
                    writeln!(
                        j,
                        "{}",
                        json!({"bench": "ensemble", "round": round + 1, "system": kind.name(),
                               "workload": "failover", "figure": "ms", "value": ms})
                    )?;
                }
            }
            e.stop();
        }
    }
    println!("three servers each, {} round(s), medians; ratio = corral / zookeeper", a.rounds);
    println!(
        "{:<9} {:<20} {:>14} {:>14} {:>8}",
        "workload", "figure", "zookeeper", "corral", "ratio"
    );
    let mut keys: Vec<(String, String)> =
        figures.keys().map(|(w, f, _)| (w.clone(), f.clone())).collect();
    keys.dedup();
    for (w, f) in keys {
        let zk = figures.get(&(w.clone(), f.clone(), "zookeeper")).cloned().map(median);
        let co = figures.get(&(w.clone(), f.clone(), "corral")).cloned().map(median);
        let ratio = match (zk, co) {
            (Some(z), Some(c)) if z != 0.0 => format!("{:.2}", c / z),
            _ => "-".into(),
        };
        let show = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into());
        println!("{:<9} {:<20} {:>14} {:>14} {:>8}", w, f, show(zk), show(co), ratio);
    }
    Ok(())
}
