//! `corral-bench load`: N sessions × K outstanding requests, pipelined, against any
//! ZooKeeper-protocol server. Bounded by duration and by operation count; talks only to the
//! address it is given.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::zk::{self, Incoming, Session};

/// Options of `corral-bench load`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// The server (host:port); with several, comma-separated, session i uses the i-th
    /// (round robin) and the keyspace is set up through the first.
    #[arg(long, default_value = "127.0.0.1:2181")]
    pub server: String,
    /// Client sessions.
    #[arg(long, default_value_t = 8)]
    pub sessions: usize,
    /// Requests in flight per session.
    #[arg(long, default_value_t = 64)]
    pub outstanding: usize,
    /// create, create-seq, set, get, exists, children, or mixed.
    #[arg(long, default_value = "set")]
    pub op: String,
    /// For `mixed`: percentage of reads (getData); the rest are setData.
    #[arg(long, default_value_t = 90)]
    pub read_pct: u32,
    /// Bytes of data per create / setData.
    #[arg(long, default_value_t = 1024)]
    pub value_bytes: usize,
    /// Distinct keys read and written by set/get/exists/children/mixed.
    #[arg(long, default_value_t = 10_000)]
    pub keyspace: usize,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Stop after this many measured operations (if sooner than --seconds).
    #[arg(long)]
    pub ops: Option<u64>,
    /// Warm-up seconds (not measured).
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Parent of every znode the load touches.
    #[arg(long, default_value = "/corral-bench")]
    pub root: String,
    /// Skip creating the root and the keys (they already exist).
    #[arg(long)]
    pub no_setup: bool,
    /// Client threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Connect over TLS, with the key material in this directory (ca.pem, client-cert.pem,
    /// client-key.pem; e.g. server/src/tls/testdata).
    #[arg(long)]
    pub tls_dir: Option<std::path::PathBuf>,
}

/// The result of a run.
#[derive(Debug, Clone, Serialize)]
pub struct LoadResult {
    /// Server address.
    pub server: String,
    /// Operation.
    pub op: String,
    /// Sessions.
    pub sessions: usize,
    /// In flight per session.
    pub outstanding: usize,
    /// Value size.
    pub value_bytes: usize,
    /// Measured operations.
    pub ops: u64,
    /// Measured seconds.
    pub seconds: f64,
    /// Throughput.
    pub ops_per_sec: f64,
    /// Latency percentiles, µs.
    pub p50_us: u64,
    /// 90th.
    pub p90_us: u64,
    /// 99th.
    pub p99_us: u64,
    /// 99.9th.
    pub p999_us: u64,
    /// Largest.
    pub max_us: u64,
    /// Replies with a non-zero error code.
    pub errors: u64,
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram")
}

fn key(root: &str, i: usize) -> String {
    format!("{root}/k{i:08}")
}

/// Creates the root and the keyspace (ignoring nodes that exist).
async fn setup(a: &LoadArgs) -> Result<()> {
    let first = a.server.split(',').next().unwrap_or_default();
    let mut s = Session::connect(first, 30_000).await?;
    s.call(&zk::create(a.root.clone(), b"", 0)).await?;
    if matches!(a.op.as_str(), "create" | "create-seq") {
        s.close().await;
        return Ok(());
    }
    let value = vec![b'v'; a.value_bytes];
    let mut i = 0;
    while i < a.keyspace {
        let mut out = Vec::new();
        let n = (a.keyspace - i).min(500);
        for j in 0..n {
            s.encode(&zk::create(key(&a.root, i + j), &value, 0), &mut out);
        }
        s.write(&out).await?;
        let mut left = n;
        while left > 0 {
            s.read_some(|inc| {
                if let Incoming::Reply(_) = inc {
                    left -= 1;
                }
            })
            .await?;
        }
        i += n;
    }
    s.close().await;
    Ok(())
}

struct Phase {
    measuring: AtomicBool,
    stop: AtomicBool,
    measured: AtomicU64,
    limit: Option<u64>,
}

async fn session(
    a: Arc<LoadArgs>,
    idx: usize,
    phase: Arc<Phase>,
    out: Arc<Mutex<(Histogram<u64>, u64, u64)>>,
) -> Result<()> {
    let servers: Vec<&str> = a.server.split(',').collect();
    let mut s = Session::connect(servers[idx % servers.len()], 30_000).await?;
    let mut rng = rand::rngs::SmallRng::seed_from_u64(idx as u64 * 7919 + 1);
    let value = vec![b'x'; a.value_bytes];
    let mut inflight: VecDeque<(i32, Instant, bool)> = VecDeque::with_capacity(a.outstanding);
    let mut h = hist();
    let (mut ops, mut errors) = (0u64, 0u64);
    let mut seq = 0u64;
    let mut buf = Vec::with_capacity(64 << 10);
    loop {
        let stop = phase.stop.load(Ordering::Relaxed);
        if stop && inflight.is_empty() {
            break;
        }
        buf.clear();
        let measuring = phase.measuring.load(Ordering::Relaxed);
        while !stop && inflight.len() < a.outstanding {
            let k = key(&a.root, rng.random_range(0..a.keyspace.max(1)));
            let req =
                match a.op.as_str() {
                    "create" => {
                        seq += 1;
                        zk::create(format!("{}/c{idx}-{seq}", a.root), &value, 0)
                    }
                    "create-seq" => zk::create(format!("{}/s{idx}-", a.root), &value, 2),
                    "set" => zk::set_data(k, &value),
                    "get" => zk::get_data(k, false),
                    "exists" => corral_server::proto::Request::Exists(
                        corral_server::proto::PathWatchRequest { path: k, watch: false },
                    ),
                    "children" => corral_server::proto::Request::GetChildren(
                        corral_server::proto::PathWatchRequest { path: k, watch: false },
                    ),
                    "mixed" => {
                        if rng.random_range(0..100) < a.read_pct {
                            zk::get_data(k, false)
                        } else {
                            zk::set_data(k, &value)
                        }
                    }
                    other => bail!("unknown --op {other}"),
                };
            let xid = s.encode(&req, &mut buf);
            inflight.push_back((xid, Instant::now(), measuring));
        }
        if !buf.is_empty() {
            s.write(&buf).await?;
        }
        let mut bad = None;
        s.read_some(|inc| {
            if let Incoming::Reply(r) = inc {
                match inflight.pop_front() {
                    Some((xid, t, m)) if xid == r.xid => {
                        if m && phase.measuring.load(Ordering::Relaxed) {
                            h.saturating_record(t.elapsed().as_micros().max(1) as u64);
                            ops += 1;
                            if r.err != 0 {
                                errors += 1;
                            }
                            let n = phase.measured.fetch_add(1, Ordering::Relaxed) + 1;
                            if phase.limit.is_some_and(|l| n >= l) {
                                phase.stop.store(true, Ordering::Relaxed);
                            }
                        }
                    }
                    other => bad = Some((other.map(|o| o.0), r.xid)),
                }
            }
        })
        .await?;
        if let Some((want, got)) = bad {
            bail!("reply out of order: expected xid {want:?}, got {got}");
        }
    }
    s.close().await;
    let mut o = out.lock().expect("stats");
    o.0.add(h)?;
    o.1 += ops;
    o.2 += errors;
    Ok(())
}

/// Runs a load and returns its figures.
pub fn run_load(a: &LoadArgs) -> Result<LoadResult> {
    if a.sessions == 0 || a.sessions > 100_000 || a.outstanding == 0 || a.outstanding > 100_000 {
        bail!("--sessions and --outstanding must be in 1..=100000");
    }
    if !(0.0..=3600.0).contains(&a.seconds) || !(0.0..=600.0).contains(&a.warmup) {
        bail!("--seconds must be in [0, 3600] and --warmup in [0, 600]");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.threads.clamp(1, 64))
        .enable_all()
        .build()?;
    let args = Arc::new(a.clone());
    rt.block_on(async move {
        if !args.no_setup {
            setup(&args).await.context("setting up the keyspace")?;
        }
        let phase = Arc::new(Phase {
            measuring: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            measured: AtomicU64::new(0),
            limit: args.ops,
        });
        let out = Arc::new(Mutex::new((hist(), 0u64, 0u64)));
        let mut tasks = Vec::new();
        for i in 0..args.sessions {
            tasks.push(tokio::spawn(session(args.clone(), i, phase.clone(), out.clone())));
        }
        tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
        let t0 = Instant::now();
        phase.measuring.store(true, Ordering::Relaxed);
        let end = t0 + Duration::from_secs_f64(args.seconds);
        while Instant::now() < end && !phase.stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let elapsed = t0.elapsed().as_secs_f64();
        phase.measuring.store(false, Ordering::Relaxed);
        phase.stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.context("session task")??;
        }
        let o = out.lock().expect("stats");
        Ok(LoadResult {
            server: args.server.clone(),
            op: args.op.clone(),
            sessions: args.sessions,
            outstanding: args.outstanding,
            value_bytes: args.value_bytes,
            ops: o.1,
            seconds: elapsed,
            ops_per_sec: o.1 as f64 / elapsed,
            p50_us: o.0.value_at_quantile(0.5),
            p90_us: o.0.value_at_quantile(0.9),
            p99_us: o.0.value_at_quantile(0.99),
            p999_us: o.0.value_at_quantile(0.999),
            max_us: o.0.max(),
            errors: o.2,
        })
    })
}

/// Prints a result as a table row (with a header) or JSON.
pub fn print(r: &LoadResult, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(r)?);
    } else {
        println!(
            "{:<10} {:>8} {:>5} {:>7} {:>10} {:>12} {:>8} {:>8} {:>8} {:>8} {:>7}",
            "op",
            "sessions",
            "out",
            "bytes",
            "ops",
            "ops/s",
            "p50us",
            "p99us",
            "p999us",
            "maxus",
            "errors"
        );
        println!(
            "{:<10} {:>8} {:>5} {:>7} {:>10} {:>12.0} {:>8} {:>8} {:>8} {:>8} {:>7}",
            r.op,
            r.sessions,
            r.outstanding,
            r.value_bytes,
            r.ops,
            r.ops_per_sec,
            r.p50_us,
            r.p99_us,
            r.p999_us,
            r.max_us,
            r.errors
        );
    }
    Ok(())
}

/// `corral-bench load`.
pub fn run(a: LoadArgs) -> Result<()> {
    if let Some(d) = &a.tls_dir {
        crate::zk::use_tls(crate::compare::client_tls(d)?);
    }
    let r = run_load(&a)?;
    print(&r, a.json)
}
