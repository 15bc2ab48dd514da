//! `corral-bench compare`: corral and Apache ZooKeeper 3.8 side by side on this machine.
//!
//! Each server runs from the same zoo.cfg (fsync on, data on the same disk under `--dir`, the
//! same snapCount, every four-letter word enabled) in a fresh data directory, pinned to one
//! core with `taskset`; this process, which generates the load in-process, pins itself to the
//! other core. Each workload runs against one system and then the other, the order
//! alternating from workload to workload and from round to round, so slow phases of the disk
//! fall on both; with `--rounds N` every figure is the median of N rounds. Ratios are always
//! corral ÷ ZooKeeper, and each figure says which way is better for corral.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::load::{self, LoadArgs};
use crate::scenarios::{self, metric, Better, Metric};
use crate::servers::{own_cpu_seconds, pin_this_thread, Kind, Server, ServerSpec};

/// Options of `corral-bench compare`.
#[derive(Debug, Clone, clap::Args)]
pub struct CompareArgs {
    /// Workloads to run, comma-separated: a (setData 1 KiB), b (create 100 B), c (getData
    /// 1 KiB), d (= d90,d50: mixed reads/writes), e (1×1 latency of each op), f (1M znodes:
    /// RSS, snapshot, restart), g (watch fan-out), t (the tail of sustained setData 1 KiB:
    /// a's load judged by p99.9 and max), x (session-expiry storm), i (1M watches: memory),
    /// h (10M znodes: RSS, snapshot, restart, writes during a snapshot; give ZooKeeper
    /// --zk-jvm-opts=-Xmx8g); t, x, i and h are not in the default set.
    #[arg(long, default_value = "a,b,c,d,e,f,g", value_delimiter = ',')]
    pub workloads: Vec<String>,
    /// Print one JSON object per workload instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also append the JSON objects to this file (the table still goes to stdout).
    #[arg(long)]
    pub jsonl: Option<PathBuf>,
    /// Measured seconds per load workload (a–d) per system; (e) runs each op for half this.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Unmeasured warm-up seconds before each load workload (same load, same server).
    #[arg(long, default_value_t = 3.0)]
    pub warmup: f64,
    /// Rounds; each figure is the median over rounds, systems alternate in each round.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Parent directory of both servers' data (the same disk for both).
    #[arg(long, default_value = "./corral-bench-data")]
    pub dir: PathBuf,
    /// The corral binary.
    #[arg(long, default_value = "target/release/corral")]
    pub corral_bin: PathBuf,
    /// Java class path of Apache ZooKeeper 3.8 (Debian's `zookeeper` package).
    #[arg(long, default_value = "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar")]
    pub zk_classpath: String,
    /// JVM options for ZooKeeper (upstream zkServer.sh's default heap is 1000 MB).
    #[arg(long, default_value = "-Xmx1000m", allow_hyphen_values = true)]
    pub zk_jvm_opts: String,
    /// Measure corral only (for profiling; no ratios).
    #[arg(long)]
    pub skip_zookeeper: bool,
    /// Znodes loaded by (f).
    #[arg(long, default_value_t = 1_000_000)]
    pub znodes: usize,
    /// Znodes loaded by (h).
    #[arg(long, default_value_t = 10_000_000)]
    pub h_znodes: usize,
    /// setData 1 KiB a second in (h)'s probe of writes during a snapshot (8 sessions).
    #[arg(long, default_value_t = 4000)]
    pub probe_rate: u32,
    /// snapCount of both servers (ZooKeeper's default).
    #[arg(long, default_value_t = 100_000)]
    pub snap_count: u64,
    /// ZooKeeper's client port on 127.0.0.1; corral's is the next one.
    #[arg(long, default_value_t = 22181)]
    pub port: u16,
    /// The core the servers are pinned to.
    #[arg(long, default_value_t = 0)]
    pub server_core: usize,
    /// The core the load generator (this process) is pinned to.
    #[arg(long, default_value_t = 1)]
    pub client_core: usize,
    /// Distinct keys of a, c and d.
    #[arg(long, default_value_t = 10_000)]
    pub keyspace: usize,
    /// Watching sessions in (g).
    #[arg(long, default_value_t = 1000)]
    pub watchers: usize,
    /// Sessions of (i).
    #[arg(long, default_value_t = 10_000)]
    pub watch_sessions: usize,
    /// Data watches each (i) session sets.
    #[arg(long, default_value_t = 100)]
    pub watches_per_session: usize,
    /// Sessions that expire at once in (x).
    #[arg(long, default_value_t = 1000)]
    pub storm_sessions: usize,
    /// Measured repetitions of (g).
    #[arg(long, default_value_t = 5)]
    pub fanout_reps: usize,
    /// Keep the servers' data directories at the end.
    #[arg(long)]
    pub keep_data: bool,
    /// Clients over TLS: both servers take TLS on their client port (ZooKeeper with Netty),
    /// the load generator presents a client certificate (key material from --tls-dir).
    #[arg(long)]
    pub tls: bool,
    /// Key material for --tls: keystore.jks, truststore.jks, ca.pem, client-cert.pem,
    /// client-key.pem (password apassword), as server/src/tls/testdata/make.sh makes them.
    #[arg(long, default_value = "server/src/tls/testdata")]
    pub tls_dir: PathBuf,
    /// Three servers of each system instead of one (`corral-bench ensemble`): workloads a, b,
    /// c and `failover` (kill -9 of the leader to the first acknowledged write), and `snap`
    /// (--h-znodes loaded, an emptied follower's SNAP catch-up under --probe-rate writes).
    #[arg(long)]
    pub ensemble: bool,
    /// A zoo.cfg setting for both servers, KEY=VALUE, replacing the common one of that key
    /// (e.g. --cfg forceSync=no --cfg preAllocSize=1048576); repeatable.
    #[arg(long = "cfg")]
    pub cfg: Vec<String>,
}

/// What a workload runs.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// The pipelined load generator: 8 sessions × 64 outstanding.
    Load { op: &'static str, read_pct: u32, value_bytes: usize },
    /// (e) one session, one request at a time.
    Latency,
    /// (f) a million znodes.
    Million,
    /// (h) ten million znodes, then writes while a snapshot is written.
    TenMillion,
    /// (g) watch fan-out.
    FanOut,
    /// (x) a session-expiry storm.
    ExpiryStorm,
    /// (i) a million watches.
    Watches,
}

#[derive(Debug, Clone, Copy)]
struct Workload {
    key: &'static str,
    title: &'static str,
    shape: Shape,
    /// The issue's bars: (figure, comparison, ratio).
    bars: &'static [(&'static str, Cmp, f64)],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    AtLeast,
    AtMost,
}

const SESSIONS: usize = 8;
const OUTSTANDING: usize = 64;

const WORKLOADS: [Workload; 12] = [
    Workload {
        key: "a",
        title: "setData 1 KiB, 8 sessions × 64 outstanding",
        shape: Shape::Load { op: "set", read_pct: 0, value_bytes: 1024 },
        bars: &[
            ("ops_per_sec", Cmp::AtLeast, 3.0),
            ("p99_us", Cmp::AtMost, 0.5),
            ("cpu_s_per_100k_ops", Cmp::AtMost, 0.25),
        ],
    },
    Workload {
        key: "b",
        title: "create 100 B, 8 sessions × 64 outstanding",
        shape: Shape::Load { op: "create", read_pct: 0, value_bytes: 100 },
        bars: &[("ops_per_sec", Cmp::AtLeast, 3.0)],
    },
    Workload {
        key: "c",
        title: "getData 1 KiB, 8 sessions × 64 outstanding",
        shape: Shape::Load { op: "get", read_pct: 100, value_bytes: 1024 },
        bars: &[("ops_per_sec", Cmp::AtLeast, 1.5), ("cpu_s_per_100k_ops", Cmp::AtMost, 0.25)],
    },
    Workload {
        key: "d90",
        title: "mixed 90% getData / 10% setData 1 KiB, 8 × 64",
        shape: Shape::Load { op: "mixed", read_pct: 90, value_bytes: 1024 },
        bars: &[],
    },
    Workload {
        key: "d50",
        title: "mixed 50% getData / 50% setData 1 KiB, 8 × 64",
        shape: Shape::Load { op: "mixed", read_pct: 50, value_bytes: 1024 },
        bars: &[],
    },
    Workload {
        key: "e",
        title: "1 session × 1 outstanding, 100 B: latency of each op",
        shape: Shape::Latency,
        bars: &[],
    },
    Workload {
        key: "f",
        title: "1M znodes of 100 B: memory, snapshot, restart-to-first-read",
        shape: Shape::Million,
        bars: &[("rss_mib", Cmp::AtMost, 0.2), ("restart_to_first_read_s", Cmp::AtMost, 0.05)],
    },
    Workload {
        key: "h",
        title: "10M znodes of 100 B: memory, snapshot, restart; writes during a snapshot",
        shape: Shape::TenMillion,
        bars: &[("rss_mib", Cmp::AtMost, 0.2), ("restart_to_first_read_s", Cmp::AtMost, 0.05)],
    },
    Workload {
        key: "t",
        title: "tail: sustained setData 1 KiB, 8 × 64 (run it with --seconds 15 or more)",
        shape: Shape::Load { op: "set", read_pct: 0, value_bytes: 1024 },
        bars: &[("p999_us", Cmp::AtMost, 0.5), ("max_us", Cmp::AtMost, 0.5)],
    },
    Workload {
        key: "i",
        title: "1M watches: 10,000 sessions × 100 data watches over 10,000 znodes",
        shape: Shape::Watches,
        bars: &[("watch_mib", Cmp::AtMost, 0.25)],
    },
    Workload {
        key: "x",
        title: "expiry storm: 1,000 sessions expire at once; another session's pings and writes",
        shape: Shape::ExpiryStorm,
        bars: &[],
    },
    Workload {
        key: "g",
        title: "watch fan-out: 1,000 sessions watch one node, one setData",
        shape: Shape::FanOut,
        bars: &[],
    },
];

fn select(names: &[String]) -> Result<Vec<Workload>> {
    let mut out: Vec<Workload> = Vec::new();
    for n in names {
        let n = n.trim();
        let keys: &[&str] = match n {
            "d" => &["d90", "d50"],
            "all" => &["a", "b", "c", "d90", "d50", "e", "f", "g", "t", "x", "i", "h"],
            other => std::slice::from_ref(
                WORKLOADS.iter().find(|w| w.key == other).map(|w| &w.key).with_context(|| {
                    format!(
                        "unknown workload {other:?} (a, b, c, d, d90, d50, e, f, g, h, t, x, i)"
                    )
                })?,
            ),
        };
        for k in keys {
            if !out.iter().any(|w| w.key == *k) {
                out.push(*WORKLOADS.iter().find(|w| w.key == *k).expect("listed"));
            }
        }
    }
    Ok(out)
}

/// One cell's figures, or why it failed.
type CellResult = Result<Vec<Metric>, String>;

/// One cell: a fresh server of `kind`, one workload, figures.
fn run_cell(spec: &ServerSpec, kind: Kind, w: &Workload, a: &CompareArgs) -> Result<Vec<Metric>> {
    spec.fresh(kind)?;
    let mut server = spec.spawn(kind)?;
    server.wait_ready(Duration::from_secs(120))?;
    let figures = match w.shape {
        Shape::Load { op, read_pct, value_bytes } => {
            load_cell(&server, op, read_pct, value_bytes, a)
        }
        Shape::Latency => {
            let per_op = Duration::from_secs_f64((a.seconds / 2.0).max(1.0));
            let warm = Duration::from_secs_f64((a.warmup / 6.0).max(0.2));
            scenarios::latency_each_op(&server, "/lat-warm", warm, 10_000, 100)?;
            let cpu0 = server.cpu_seconds()?;
            let mut m = scenarios::latency_each_op(&server, "/lat", per_op, 200_000, 100)?;
            let cpu = server.cpu_seconds()? - cpu0;
            let ops: f64 = m.iter().filter(|x| x.name.ends_with("_ops")).map(|x| x.value).sum();
            m.push(metric("cpu_s_per_100k_ops", cpu / ops.max(1.0) * 1e5, Better::Lower));
            Ok(m)
        }
        Shape::Million => {
            let (m, restarted) =
                scenarios::million(spec, server, a.znodes, 100, Duration::from_secs(3600))?;
            server = restarted;
            Ok(m)
        }
        Shape::TenMillion => {
            let (mut m, restarted) =
                scenarios::million(spec, server, a.h_znodes, 100, Duration::from_secs(7200))?;
            server = restarted;
            let _ = server.four_letter("srst");
            m.extend(scenarios::writes_during_snapshot(
                &server,
                a.probe_rate,
                Duration::from_secs(600),
            )?);
            m.extend(log_figures(&server));
            Ok(m)
        }
        Shape::FanOut => {
            scenarios::fan_out(&server, a.watchers, a.fanout_reps, Duration::from_secs(600))
        }
        Shape::Watches => scenarios::watches_memory(
            &server,
            a.watch_sessions,
            a.watches_per_session,
            10_000,
            Duration::from_secs(900),
        ),
        Shape::ExpiryStorm => {
            scenarios::expiry_storm(&server, a.storm_sessions, Duration::from_secs(300))
        }
    };
    let stopped = server.stop(Duration::from_secs(30));
    let figures = figures?;
    stopped?;
    Ok(figures)
}

fn load_cell(
    server: &Server,
    op: &str,
    read_pct: u32,
    value_bytes: usize,
    a: &CompareArgs,
) -> Result<Vec<Metric>> {
    let create = op == "create";
    // The warm-up creates the keys (or, for creates, works under its own parent) and warms the
    // server (the JVM's JIT in particular) with the same load; it is not measured.
    let warm = LoadArgs {
        server: server.addr_string(),
        sessions: SESSIONS,
        outstanding: OUTSTANDING,
        op: op.to_string(),
        read_pct,
        value_bytes,
        keyspace: a.keyspace,
        seconds: a.warmup,
        ops: Some(100_000_000),
        warmup: 0.0,
        root: if create { "/bench-warm" } else { "/bench" }.to_string(),
        no_setup: false,
        threads: 1,
        json: false,
        tls_dir: None,
    };
    load::run_load(&warm).context("warm-up")?;
    let measured =
        LoadArgs { seconds: a.seconds, root: "/bench".to_string(), no_setup: !create, ..warm };
    // Both servers clear their latency figures on srst (ZooKeeper: its ServerStats; its
    // fsynctime summary is not cleared, so ZooKeeper's log figure includes the warm-up).
    let _ = server.four_letter("srst");
    let cpu0 = server.cpu_seconds()?;
    let own0 = own_cpu_seconds();
    let r = load::run_load(&measured)?;
    let log_figures = log_figures(server);
    let cpu = server.cpu_seconds()? - cpu0;
    let own = own_cpu_seconds() - own0;
    let mut m = vec![
        metric("ops_per_sec", r.ops_per_sec, Better::Higher),
        metric("p50_us", r.p50_us as f64, Better::Lower),
        metric("p99_us", r.p99_us as f64, Better::Lower),
        metric("p999_us", r.p999_us as f64, Better::Lower),
        metric("max_us", r.max_us as f64, Better::Lower),
        // A tail that is queueing stays within a few times p99; a stall does not.
        metric("p999_over_p99", r.p999_us as f64 / (r.p99_us.max(1) as f64), Better::Lower),
        metric("cpu_s_per_100k_ops", cpu / (r.ops.max(1) as f64) * 1e5, Better::Lower),
        metric("server_cpu_util", cpu / r.seconds, Better::Info),
        // Near 1.0 the load generator's core, not the server, sets the pace.
        metric("client_cpu_util", own / r.seconds, Better::Info),
        metric("peak_rss_mib", server.peak_rss_mib()?, Better::Lower),
    ];
    m.extend(log_figures);
    if r.errors > 0 {
        m.push(metric("errors", r.errors as f64, Better::Lower));
    }
    Ok(m)
}

/// The server's own account of its log, from `mntr`: the longest log flush (corral's
/// `log_flush_time_us`, ZooKeeper's `fsynctime`, in ms) and, for corral, the longest wait of
/// a txn for its log append and the longest reply. Where a load's max latency comes from.
fn log_figures(server: &Server) -> Vec<Metric> {
    let Ok(text) = server.four_letter("mntr") else { return Vec::new() };
    let get = |k: &str| {
        text.lines().find_map(|l| {
            let (key, v) = l.split_once('\t')?;
            (key == k).then(|| v.trim().parse::<f64>().ok()).flatten()
        })
    };
    let mut m = Vec::new();
    if let Some(v) = get("zk_max_log_flush_time_us").or(get("zk_max_fsynctime").map(|ms| ms * 1e3))
    {
        m.push(metric("log_flush_max_us", v, Better::Lower));
    }
    if let Some(v) = get("zk_p999_log_flush_time_us") {
        m.push(metric("log_flush_p999_us", v, Better::Info));
    }
    if let Some(v) = get("zk_max_log_append_time_us") {
        m.push(metric("log_append_max_us", v, Better::Info));
    }
    if let Some(v) = get("zk_max_update_latency_us") {
        m.push(metric("server_update_max_us", v, Better::Info));
    }
    m
}

/// The medians of several rounds' figures, in the first round's order.
fn medians(rounds: &[Vec<Metric>]) -> Vec<Metric> {
    let Some(first) = rounds.first() else { return Vec::new() };
    let mut names: Vec<&Metric> = first.iter().collect();
    for r in &rounds[1..] {
        for m in r {
            if !names.iter().any(|n| n.name == m.name) {
                names.push(m);
            }
        }
    }
    names
        .into_iter()
        .map(|n| {
            let mut v: Vec<f64> = rounds
                .iter()
                .filter_map(|r| r.iter().find(|m| m.name == n.name).map(|m| m.value))
                .collect();
            v.sort_by(f64::total_cmp);
            // Even counts take the mean of the middle two.
            let mid = v.len() / 2;
            let value =
                if v.len().is_multiple_of(2) { (v[mid - 1] + v[mid]) / 2.0 } else { v[mid] };
            metric(n.name.clone(), value, n.better)
        })
        .collect()
}

fn sh(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn machine() -> Value {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    json!({
        "kernel": sh("uname", &["-r"]),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "online_cpus": sh("nproc", &["--all"]),
        "cpu_model": cpu,
        "java": sh("sh", &["-c", "java -version 2>&1 | head -1"]),
    })
}

fn fmt_value(v: f64) -> String {
    if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn bar_verdict(ratio: f64, cmp: Cmp, target: f64) -> (String, bool) {
    let met = match cmp {
        Cmp::AtLeast => ratio >= target,
        Cmp::AtMost => ratio <= target,
    };
    let sign = if cmp == Cmp::AtLeast { "≥" } else { "≤" };
    (format!("{sign} {target}: {}", if met { "met" } else { "NOT met" }), met)
}

/// `corral-bench compare`.
pub fn run(a: CompareArgs) -> Result<()> {
    if a.ensemble {
        let all = ["a", "b", "c", "failover"];
        let default = a.workloads.join(",") == "a,b,c,d,e,f,g";
        let workloads =
            if default { all.iter().map(|w| w.to_string()).collect() } else { a.workloads.clone() };
        return crate::ensemble::run(crate::ensemble::EnsembleArgs {
            workloads,
            seconds: a.seconds,
            warmup: a.warmup,
            rounds: a.rounds,
            dir: a.dir.clone(),
            corral_bin: a.corral_bin.clone(),
            zk_classpath: a.zk_classpath.clone(),
            zk_jvm_opts: a.zk_jvm_opts.clone(),
            skip_zookeeper: a.skip_zookeeper,
            port: a.port.saturating_add(2000),
            server_core: a.server_core,
            client_core: a.client_core,
            keyspace: a.keyspace,
            znodes: a.h_znodes,
            probe_rate: a.probe_rate,
            jsonl: a.jsonl.clone(),
            cfg: a.cfg.clone(),
        });
    }
    let workloads = select(&a.workloads)?;
    if a.rounds == 0 || a.rounds > 20 {
        bail!("--rounds must be in 1..=20");
    }
    if !(1.0..=600.0).contains(&a.seconds) || !(0.0..=120.0).contains(&a.warmup) {
        bail!("--seconds must be in [1, 600] and --warmup in [0, 120]");
    }
    if a.znodes == 0 || a.znodes > 20_000_000 || a.watchers == 0 || a.watchers > 10_000 {
        bail!("--znodes must be in 1..=20000000 and --watchers in 1..=10000");
    }
    if a.h_znodes == 0 || a.h_znodes > 20_000_000 || a.probe_rate == 0 || a.probe_rate > 100_000 {
        bail!("--h-znodes must be in 1..=20000000 and --probe-rate in 1..=100000");
    }
    if a.watch_sessions == 0 || a.watch_sessions > 15_000 || a.watches_per_session == 0 {
        bail!("--watch-sessions must be in 1..=15000 and --watches-per-session above 0");
    }
    if a.watches_per_session > 10_000 {
        bail!("--watches-per-session must be at most 10000 (the znodes watched)");
    }
    if a.storm_sessions == 0 || a.storm_sessions > 10_000 {
        bail!("--storm-sessions must be in 1..=10000");
    }
    if a.fanout_reps == 0 || a.fanout_reps > 100 {
        bail!("--fanout-reps must be in 1..=100");
    }
    if !a.corral_bin.exists() {
        bail!(
            "{} not found: build it (cargo build --release -p corral-server) or pass --corral-bin",
            a.corral_bin.display()
        );
    }
    if a.port == u16::MAX {
        bail!("--port must leave room for corral's port (port + 1)");
    }
    // The load generator's threads inherit this pinning (tokio runtimes are built per run).
    pin_this_thread(a.client_core)?;
    fs::create_dir_all(&a.dir)?;
    let dir = fs::canonicalize(&a.dir)?;
    let tls_dir = if a.tls {
        let d = fs::canonicalize(&a.tls_dir)
            .with_context(|| format!("--tls-dir {}", a.tls_dir.display()))?;
        crate::zk::use_tls(client_tls(&d)?);
        Some(d)
    } else {
        None
    };
    let spec = ServerSpec {
        corral_bin: fs::canonicalize(&a.corral_bin)?,
        zk_classpath: a.zk_classpath.clone(),
        zk_jvm_opts: a.zk_jvm_opts.clone(),
        snap_count: a.snap_count,
        core: a.server_core,
        dir,
        port: a.port,
        tls_dir: tls_dir.clone(),
        extra_cfg: crate::servers::parse_cfg(&a.cfg)?,
    };
    let systems: Vec<Kind> =
        if a.skip_zookeeper { vec![Kind::Corral] } else { vec![Kind::ZooKeeper, Kind::Corral] };
    let started = sh("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]);
    let load_start = loadavg();
    let machine = machine();
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    eprintln!(
        "compare: {} workload(s) × {} system(s) × {} round(s); servers on core {}, load on core {}; load average {load_start}",
        workloads.len(),
        systems.len(),
        a.rounds,
        a.server_core,
        a.client_core
    );

    // results[workload][system] = one entry per round.
    let mut results: Vec<Vec<Vec<CellResult>>> =
        vec![vec![Vec::new(); systems.len()]; workloads.len()];
    for round in 0..a.rounds {
        for (wi, w) in workloads.iter().enumerate() {
            // Alternate who goes first from workload to workload and from round to round.
            let mut order: Vec<usize> = (0..systems.len()).collect();
            if (round + wi) % 2 == 1 {
                order.reverse();
            }
            for si in order {
                let kind = systems[si];
                eprintln!(
                    "round {}/{}: ({}) {} — {}",
                    round + 1,
                    a.rounds,
                    w.key,
                    w.title,
                    kind.name()
                );
                let r = run_cell(&spec, kind, w, &a).map_err(|e| format!("{e:#}"));
                if let Err(e) = &r {
                    eprintln!("  failed: {e}");
                }
                results[wi][si].push(r);
            }
        }
    }
    if !a.keep_data {
        spec.clean();
    }
    let load_end = loadavg();

    let mut jsonl = match &a.jsonl {
        Some(p) => Some(fs::OpenOptions::new().create(true).append(true).open(p)?),
        None => None,
    };
    if !a.json {
        println!(
            "corral-bench compare, {started}; {} round(s), {} s measured per load workload; \
             servers pinned to core {}, load generator to core {}; load average {load_start} at start, {load_end} at end",
            a.rounds, a.seconds, a.server_core, a.client_core
        );
        println!("ratio = corral ÷ ZooKeeper; `better` says which way favours corral (higher: above 1 wins; lower: below 1 wins)");
        println!();
        println!(
            "{:<5} {:<28} {:>12} {:>12} {:>9} {:>7}  issue's bar",
            "", "figure", "corral", "zookeeper", "ratio", "better"
        );
    }
    for (wi, w) in workloads.iter().enumerate() {
        let mut per_system = BTreeMap::new();
        let mut runs = BTreeMap::new();
        let mut errors = BTreeMap::new();
        let mut med: Vec<Vec<Metric>> = Vec::new();
        for (si, kind) in systems.iter().enumerate() {
            let ok: Vec<Vec<Metric>> =
                results[wi][si].iter().filter_map(|r| r.as_ref().ok().cloned()).collect();
            let errs: Vec<&String> =
                results[wi][si].iter().filter_map(|r| r.as_ref().err()).collect();
            let m = medians(&ok);
            per_system.insert(kind.name(), to_obj(&m));
            runs.insert(kind.name(), Value::Array(ok.iter().map(|r| to_obj(r)).collect()));
            if !errs.is_empty() {
                errors.insert(kind.name(), json!(errs));
            }
            med.push(m);
        }
        let corral = &med[systems.iter().position(|k| *k == Kind::Corral).expect("corral")];
        let zk = systems.iter().position(|k| *k == Kind::ZooKeeper).map(|i| &med[i]);
        let mut ratios = serde_json::Map::new();
        let mut better = serde_json::Map::new();
        let mut bars = serde_json::Map::new();
        if !a.json {
            println!("({}) {}", w.key, w.title);
        }
        for m in corral {
            better.insert(m.name.clone(), json!(m.better.name()));
            let z = zk.and_then(|z| z.iter().find(|x| x.name == m.name)).map(|x| x.value);
            let ratio = z.filter(|z| *z > 0.0).map(|z| m.value / z);
            if let Some(r) = ratio {
                ratios.insert(m.name.clone(), json!(r));
            }
            let bar = w.bars.iter().find(|b| b.0 == m.name);
            let verdict = match (bar, ratio) {
                (Some(&(_, cmp, target)), Some(r)) => {
                    let (text, met) = bar_verdict(r, cmp, target);
                    bars.insert(m.name.clone(), json!({"target": format!("{}{}", if cmp == Cmp::AtLeast { ">=" } else { "<=" }, target), "met": met}));
                    text
                }
                _ => String::new(),
            };
            if !a.json {
                println!(
                    "{:<5} {:<28} {:>12} {:>12} {:>9} {:>7}  {}",
                    "",
                    m.name,
                    fmt_value(m.value),
                    z.map(fmt_value).unwrap_or_else(|| "-".into()),
                    ratio.map(|r| format!("{r:.3}×")).unwrap_or_else(|| "-".into()),
                    m.better.name(),
                    verdict
                );
            }
        }
        if !a.json {
            for (k, e) in &errors {
                println!("      {k} failed: {e}");
            }
        }
        let obj = json!({
            "workload": w.key,
            "title": w.title,
            "date": started,
            "command": command,
            "rounds": a.rounds,
            "tls": a.tls,
            "seconds": a.seconds,
            "warmup": a.warmup,
            "snap_count": a.snap_count,
            "cfg": a.cfg,
            "zk_jvm_opts": a.zk_jvm_opts,
            "server_core": a.server_core,
            "client_core": a.client_core,
            "loadavg_start": load_start,
            "loadavg_end": load_end,
            "machine": machine,
            "systems": per_system,
            "ratio": ratios,
            "better": better,
            "bars": bars,
            "runs": runs,
            "errors": errors,
        });
        let line = serde_json::to_string(&obj)?;
        if a.json {
            println!("{line}");
        }
        if let Some(f) = jsonl.as_mut() {
            writeln!(f, "{line}")?;
        }
    }
    Ok(())
}

fn to_obj(m: &[Metric]) -> Value {
    Value::Object(m.iter().map(|x| (x.name.clone(), json!(x.value))).collect())
}

/// The load generator's TLS: trusts `dir`/ca.pem, presents `dir`/client-cert.pem.
pub fn client_tls(dir: &std::path::Path) -> Result<std::sync::Arc<rustls::ClientConfig>> {
    let f = |n: &str| dir.join(n).display().to_string();
    corral_server::tls::pem_client_config(
        &f("ca.pem"),
        Some((&f("client-cert.pem"), &f("client-key.pem"))),
    )
    .context("the load generator's TLS settings")
}
