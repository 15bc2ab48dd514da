//! The workloads of `corral-bench compare` that the pipelined load generator does not cover:
//! (e) one session, one request at a time, latency of each operation; (f) a million znodes
//! loaded, then memory, snapshot size and restart-to-first-read; (g) watch fan-out.
//!
//! Every loop here is bounded by a count and by a deadline, and every address is the server's
//! loopback address.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use corral_server::proto::{DeleteRequest, PathWatchRequest, Request};
use hdrhistogram::Histogram;
use tokio::task::JoinSet;

use crate::servers::{dir_bytes, newest_snapshot, Kind, Server, ServerSpec};
use crate::zk::{self, Incoming, Session};

/// One measured figure: its name (units last), its value, and which way is better.
#[derive(Debug, Clone)]
pub struct Metric {
    /// Name, units last (`p99_us`, `rss_mib`).
    pub name: String,
    /// Value.
    pub value: f64,
    /// Which way is better for the measured system.
    pub better: Better,
}

/// Which way a figure is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// More is better (throughput).
    Higher,
    /// Less is better (latency, CPU, memory, time).
    Lower,
    /// Context only (counts, sizes of inputs).
    Info,
}

impl Better {
    /// As written in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Better::Higher => "higher",
            Better::Lower => "lower",
            Better::Info => "info",
        }
    }
}

/// Builds a metric.
pub fn metric(name: impl Into<String>, value: f64, better: Better) -> Metric {
    Metric { name: name.into(), value, better }
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds")
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

const SESSION_TIMEOUT_MS: i32 = 40_000;

/// Sends `reqs` on one session keeping up to `window` in flight; returns (ok, errors).
/// Stops early when `stop` says so (checked between batches); fails past `deadline`.
async fn pipelined(
    s: &mut Session,
    reqs: &mut (dyn Iterator<Item = Request> + Send),
    window: usize,
    deadline: Instant,
    stop: &mut (dyn FnMut() -> bool + Send),
) -> Result<(u64, u64)> {
    let (mut ok, mut errors) = (0u64, 0u64);
    let mut inflight: VecDeque<i32> = VecDeque::with_capacity(window);
    let mut buf = Vec::with_capacity(64 << 10);
    let mut exhausted = false;
    loop {
        if !exhausted && stop() {
            exhausted = true;
        }
        buf.clear();
        while !exhausted && inflight.len() < window {
            match reqs.next() {
                Some(r) => inflight.push_back(s.encode(&r, &mut buf)),
                None => exhausted = true,
            }
        }
        if !buf.is_empty() {
            s.write(&buf).await?;
        }
        if inflight.is_empty() {
            return Ok((ok, errors));
        }
        if Instant::now() > deadline {
            bail!("pipelined requests did not finish in time");
        }
        let mut bad = None;
        let read = tokio::time::timeout(
            Duration::from_secs(60),
            s.read_some(|inc| {
                if let Incoming::Reply(h) = inc {
                    match inflight.pop_front() {
                        Some(x) if x == h.xid => {
                            if h.err == 0 {
                                ok += 1
                            } else {
                                errors += 1
                            }
                        }
                        other => bad = Some((other, h.xid)),
                    }
                }
            }),
        )
        .await;
        read.context("no reply for 60 s")??;
        if let Some((want, got)) = bad {
            bail!("reply out of order: expected xid {want:?}, got {got}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// (e) one session, one outstanding request: latency of each operation

/// The operations (e) measures, in the order it runs them (delete removes what create made).
pub const LATENCY_OPS: [&str; 6] = ["create", "set", "get", "exists", "children", "delete"];

/// Runs each operation of (e) for `per_op` (at most `max_ops` times) on one session;
/// returns p50/p99 per op. Nodes are `<root>/n<i>` with `value_bytes` of data.
pub fn latency_each_op(
    server: &Server,
    root: &str,
    per_op: Duration,
    max_ops: u64,
    value_bytes: usize,
) -> Result<Vec<Metric>> {
    let rt = runtime()?;
    let addr = server.addr_string();
    rt.block_on(async {
        let mut s = Session::connect(&addr, SESSION_TIMEOUT_MS).await?;
        s.call(&zk::create(root.to_string(), b"", 0)).await?;
        let value = vec![b'e'; value_bytes];
        let mut out = Vec::new();
        let mut created = 0u64;
        for op in LATENCY_OPS {
            let mut h = hist();
            let t0 = Instant::now();
            let mut i = 0u64;
            let mut errors = 0u64;
            let limit = if op == "delete" { created } else { max_ops };
            while i < limit && t0.elapsed() < per_op {
                // create and delete walk the nodes in order; the others reuse the created ones.
                let n = if op == "create" || op == "delete" { i } else { i % created.max(1) };
                let path = format!("{root}/n{n}");
                let req = match op {
                    "create" => zk::create(path, &value, 0),
                    "set" => zk::set_data(path, &value),
                    "get" => zk::get_data(path, false),
                    "exists" => Request::Exists(PathWatchRequest { path, watch: false }),
                    "children" => Request::GetChildren(PathWatchRequest { path, watch: false }),
                    "delete" => Request::Delete(DeleteRequest { path, version: -1 }),
                    _ => unreachable!("LATENCY_OPS"),
                };
                let t = Instant::now();
                let r = tokio::time::timeout(Duration::from_secs(60), s.call(&req))
                    .await
                    .context("no reply for 60 s")??;
                h.saturating_record(t.elapsed().as_micros().max(1) as u64);
                if r.err != 0 {
                    errors += 1;
                }
                i += 1;
            }
            if op == "create" {
                created = i;
            }
            out.push(metric(
                format!("{op}_p50_us"),
                h.value_at_quantile(0.5) as f64,
                Better::Lower,
            ));
            out.push(metric(
                format!("{op}_p99_us"),
                h.value_at_quantile(0.99) as f64,
                Better::Lower,
            ));
            out.push(metric(format!("{op}_ops"), i as f64, Better::Info));
            if errors > 0 {
                out.push(metric(format!("{op}_errors"), errors as f64, Better::Lower));
            }
        }
        s.close().await;
        Ok(out)
    })
}

// ---------------------------------------------------------------------------------------------
// (f) a million znodes: memory, snapshot size, restart-to-first-read

/// Parents of the (f) znodes: `/app/service-NNN`.
const F_PARENTS: usize = 250;
const F_SESSIONS: usize = 8;
const F_WINDOW: usize = 64;

fn f_path(i: usize) -> String {
    format!("/app/service-{:03}/node-{i:07}", i % F_PARENTS)
}

/// Loads `znodes` znodes of `value_bytes` through pipelined creates (8 sessions × 64
/// outstanding), waits for a snapshot taken after the load, measures memory and files, stops
/// the server, restarts it and measures the time from process start to the first getData.
/// Returns the figures and the restarted server.
pub fn million(
    spec: &ServerSpec,
    mut server: Server,
    znodes: usize,
    value_bytes: usize,
    time_limit: Duration,
) -> Result<(Vec<Metric>, Server)> {
    let rt = runtime()?;
    let addr = server.addr_string();
    let deadline = Instant::now() + time_limit;
    let cpu0 = server.cpu_seconds()?;
    let t0 = Instant::now();
    let errors = load_znodes(&addr, znodes, value_bytes, deadline)?;
    let load_s = t0.elapsed().as_secs_f64();
    let load_cpu = server.cpu_seconds()? - cpu0;
    if errors > 0 {
        bail!("{}: {errors} creates failed while loading", server.kind.name());
    }

    // Both servers snapshot after snapCount/2 + random(snapCount/2) txns, so where the newest
    // snapshot falls relative to the end of the load is chance. To compare like with like, keep
    // writing small setData txns until each has written a snapshot that began after the load,
    // then stop writing: both restart from a snapshot of the whole tree and a short log tail.
    let snap_dir = server.snap_dir();
    let before = newest_snapshot(&snap_dir, true).map(|s| s.0).unwrap_or(0);
    let zxid_after_load = server.last_zxid()?;
    // A trigger that comes while a snapshot is still being written is skipped (by both: "too
    // busy"), and with millions of znodes one takes a while: keep writing until one starts.
    let extra_limit = spec.snap_count.saturating_mul(100).max(10_000);
    let (extra, _) = rt.block_on(async {
        let mut s = Session::connect(&addr, SESSION_TIMEOUT_MS).await?;
        let mut reqs = (0..extra_limit).map(|_| zk::set_data("/app".into(), b"tick"));
        let mut last_check = Instant::now();
        let mut stop = || {
            if last_check.elapsed() < Duration::from_millis(50) {
                return false;
            }
            last_check = Instant::now();
            // A snapshot counts from the moment it starts (corral writes it under a temporary
            // name, ZooKeeper under its final one), so neither runs on far past its trigger.
            newest_snapshot(&snap_dir, true)
                .is_some_and(|(z, _)| z > before && z >= zxid_after_load)
        };
        let r = pipelined(&mut s, &mut reqs, F_WINDOW, deadline, &mut stop).await?;
        s.close().await;
        anyhow::Ok(r)
    })?;
    let snap_seen = Instant::now();
    let (snap_zxid, snap_path, snap_done) = wait_snapshot_complete(&server, before, deadline)?;
    // From when it was seen started (within 50 ms) to when it was last seen growing or renamed
    // into place.
    let snapshot_s = snap_done.saturating_duration_since(snap_seen).as_secs_f64();
    let last_zxid = server.last_zxid()?;
    let node_count = server
        .four_letter("srvr")?
        .lines()
        .find_map(|l| l.strip_prefix("Node count: ").map(|n| n.trim().parse::<f64>()))
        .context("no node count in srvr")??;
    let rss = server.rss_mib()?;
    let peak = server.peak_rss_mib()?;
    let snap_bytes = std::fs::metadata(&snap_path)?.len();
    let data_bytes = dir_bytes(&server.data_dir());

    let stop_s = server.stop(Duration::from_secs(60))?.as_secs_f64();
    let kind = server.kind;
    drop(server);
    let mut server = spec.spawn(kind)?;
    let first =
        server.wait_first_read(&f_path(0), deadline.saturating_duration_since(Instant::now()))?;
    let rss_restarted = server.rss_mib()?;

    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    Ok((
        vec![
            metric("znodes", node_count, Better::Info),
            metric("load_ops_per_sec", znodes as f64 / load_s, Better::Higher),
            metric("load_cpu_s_per_100k_ops", load_cpu / znodes as f64 * 1e5, Better::Lower),
            metric("rss_mib", rss, Better::Lower),
            metric("peak_rss_mib", peak, Better::Lower),
            metric("snapshot_mib", mib(snap_bytes), Better::Lower),
            metric("snapshot_s", snapshot_s, Better::Lower),
            metric("data_dir_mib", mib(data_bytes), Better::Lower),
            metric("txns_after_snapshot", last_zxid.saturating_sub(snap_zxid) as f64, Better::Info),
            metric("settxns_until_snapshot", extra as f64, Better::Info),
            metric("stop_s", stop_s, Better::Lower),
            metric("restart_to_first_read_s", first.as_secs_f64(), Better::Lower),
            metric("rss_after_restart_mib", rss_restarted, Better::Lower),
        ],
        server,
    ))
}

/// Creates `/app`, its 250 parents, and `znodes` znodes of `value_bytes` under them through
/// pipelined creates (8 sessions × 64 outstanding); returns how many failed.
pub fn load_znodes(
    addr: &str,
    znodes: usize,
    value_bytes: usize,
    deadline: Instant,
) -> Result<u64> {
    let rt = runtime()?;
    let addr = addr.to_string();
    rt.block_on(async {
        let mut s = Session::connect(&addr, SESSION_TIMEOUT_MS).await?;
        let mut parents = std::iter::once(zk::create("/app".into(), b"", 0))
            .chain((0..F_PARENTS).map(|p| zk::create(format!("/app/service-{p:03}"), b"", 0)));
        let (_, perr) = pipelined(&mut s, &mut parents, F_WINDOW, deadline, &mut || false).await?;
        s.close().await;
        let mut tasks = JoinSet::new();
        for sess in 0..F_SESSIONS {
            let addr = addr.clone();
            let value = vec![b'f'; value_bytes];
            tasks.spawn(async move {
                let mut s = Session::connect(&addr, SESSION_TIMEOUT_MS).await?;
                let mut reqs = (sess..znodes)
                    .step_by(F_SESSIONS)
                    .map(move |i| zk::create(f_path(i), &value, 0));
                let r = pipelined(&mut s, &mut reqs, F_WINDOW, deadline, &mut || false).await?;
                s.close().await;
                anyhow::Ok(r)
            });
        }
        let mut errors = perr;
        while let Some(r) = tasks.join_next().await {
            errors += r??.1;
        }
        anyhow::Ok(errors)
    })
}

/// Waits until the newest snapshot is newer than `before` and completely written; returns
/// its zxid, path, and when it was done. Corral renames a finished snapshot into place;
/// ZooKeeper writes `snapshot.<zxid>` in place and ends it with a checksum and the path "/" (a
/// 5-byte tail `00 00 00 01 2f`), so for it the file must end that way and stop growing for a
/// second (done: when it last grew).
fn wait_snapshot_complete(
    server: &Server,
    before: u64,
    deadline: Instant,
) -> Result<(u64, std::path::PathBuf, Instant)> {
    let dir = server.snap_dir();
    let mut last_len = None;
    let mut stable_since = Instant::now();
    loop {
        if Instant::now() > deadline {
            bail!("{}: no complete snapshot after the load in time", server.kind.name());
        }
        if let Some((z, p)) = newest_snapshot(&dir, false).filter(|(z, _)| *z > before) {
            match server.kind {
                Kind::Corral => return Ok((z, p, Instant::now())),
                Kind::ZooKeeper => {
                    let len = std::fs::metadata(&p)?.len();
                    if last_len != Some(len) {
                        last_len = Some(len);
                        stable_since = Instant::now();
                    } else if stable_since.elapsed() > Duration::from_secs(1) && ends_sealed(&p)? {
                        return Ok((z, p, stable_since));
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ends_sealed(p: &std::path::Path) -> Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(p)?;
    if f.metadata()?.len() < 5 {
        return Ok(false);
    }
    f.seek(SeekFrom::End(-5))?;
    let mut t = [0u8; 5];
    f.read_exact(&mut t)?;
    Ok(t == [0, 0, 0, 1, b'/'])
}

// ---------------------------------------------------------------------------------------------
// (g) watch fan-out

/// `watchers` sessions each set a data watch on one node; one more session sets its data;
/// the time from sending setData until each watcher has its event. Repeated `reps` times
/// (after one unmeasured repetition); returns p50 and max over repetitions of the time until
/// the last watcher had its event, and the median watcher's time.
pub fn fan_out(
    server: &Server,
    watchers: usize,
    reps: usize,
    time_limit: Duration,
) -> Result<Vec<Metric>> {
    let rt = runtime()?;
    let addr = server.addr_string();
    let deadline = Instant::now() + time_limit;
    let path = "/fanout".to_string();
    rt.block_on(async {
        let mut setter = Session::connect(&addr, SESSION_TIMEOUT_MS).await?;
        setter.call(&zk::create(path.clone(), &[b'g'; 100], 0)).await?;
        let mut sessions = connect_many(&addr, watchers, deadline).await?;
        let mut last_ms = Vec::new();
        let mut median_ms = Vec::new();
        for rep in 0..=reps {
            // Register every watch (pipelined across sessions: send all, then read all).
            let mut xids = Vec::with_capacity(sessions.len());
            for s in sessions.iter_mut() {
                let mut out = Vec::new();
                xids.push(s.encode(&zk::get_data(path.clone(), true), &mut out));
                s.write(&out).await?;
            }
            for (s, xid) in sessions.iter_mut().zip(&xids) {
                let mut got = false;
                while !got {
                    tokio::time::timeout(
                        Duration::from_secs(30),
                        s.read_some(|inc| {
                            if let Incoming::Reply(h) = inc {
                                got |= h.xid == *xid;
                            }
                        }),
                    )
                    .await
                    .context("watch registration timed out")??;
                }
            }
            let mut waiting = JoinSet::new();
            for (i, mut s) in sessions.drain(..).enumerate() {
                waiting.spawn(async move {
                    let mut at = None;
                    while at.is_none() {
                        s.read_some(|inc| {
                            if matches!(inc, Incoming::Event) && at.is_none() {
                                at = Some(Instant::now());
                            }
                        })
                        .await?;
                    }
                    anyhow::Ok((i, s, at.expect("set")))
                });
            }
            // Let every waiting task reach its read before the change.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let mut out = Vec::new();
            let xid = setter.encode(&zk::set_data(path.clone(), &[b'h'; 100]), &mut out);
            let t0 = Instant::now();
            setter.write(&out).await?;
            let mut times = Vec::with_capacity(watchers);
            let mut back: Vec<Option<Session>> = (0..watchers).map(|_| None).collect();
            while let Some(r) = tokio::time::timeout(Duration::from_secs(60), waiting.join_next())
                .await
                .context("watch events did not all arrive within 60 s")?
            {
                let (i, s, at) = r??;
                times.push(at.saturating_duration_since(t0).as_secs_f64() * 1e3);
                back[i] = Some(s);
            }
            sessions = back.into_iter().map(|s| s.expect("every session returned")).collect();
            let mut got = false;
            while !got {
                setter
                    .read_some(|inc| {
                        if let Incoming::Reply(h) = inc {
                            got |= h.xid == xid;
                        }
                    })
                    .await?;
            }
            times.sort_by(f64::total_cmp);
            if rep > 0 {
                last_ms.push(*times.last().expect("watchers > 0"));
                median_ms.push(times[times.len() / 2]);
            }
            if Instant::now() > deadline {
                bail!("fan-out repetitions took too long");
            }
        }
        for s in sessions {
            s.close().await;
        }
        setter.close().await;
        last_ms.sort_by(f64::total_cmp);
        median_ms.sort_by(f64::total_cmp);
        Ok(vec![
            metric("watchers", watchers as f64, Better::Info),
            metric("all_notified_p50_ms", last_ms[last_ms.len() / 2], Better::Lower),
            metric("all_notified_max_ms", *last_ms.last().expect("reps > 0"), Better::Lower),
            metric("median_watcher_p50_ms", median_ms[median_ms.len() / 2], Better::Lower),
        ])
    })
}

/// `n` sessions, connected in waves of 50 (a burst of 1,000 SYNs overflows a listen backlog of
/// 50), before `deadline`.
async fn connect_many(addr: &str, n: usize, deadline: Instant) -> Result<Vec<Session>> {
    let mut sessions = Vec::with_capacity(n);
    while sessions.len() < n {
        let wave = (n - sessions.len()).min(50);
        let mut set = JoinSet::new();
        for _ in 0..wave {
            let addr = addr.to_string();
            set.spawn(async move { Session::connect(&addr, SESSION_TIMEOUT_MS).await });
        }
        while let Some(s) = set.join_next().await {
            sessions.push(s??);
        }
        if Instant::now() > deadline {
            bail!("connecting {n} sessions took too long");
        }
    }
    Ok(sessions)
}

/// `word`'s answer, without blocking the runtime the probes run on.
async fn four_letter_async(addr: &str, word: &str) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
        .await
        .context("4lw connect timed out")??;
    s.write_all(word.as_bytes()).await?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
        .await
        .context("4lw answer timed out")??;
    Ok(out)
}

/// One probe's samples: (when it started, since the probe began; how long it took).
type Samples = Vec<(Duration, Duration)>;

/// A probe: `op` one at a time on its own session until `stop` or the deadline, at most
/// 2,000,000 times.
async fn probe(
    addr: String,
    op: &'static str,
    begin: Instant,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    deadline: Instant,
) -> Result<Samples> {
    let mut s = Session::connect(&addr, SESSION_TIMEOUT_MS).await?;
    let path = "/storm-probe".to_string();
    if op == "set" {
        let _ = s.call(&zk::create(path.clone(), b"p", 0)).await?;
    }
    let mut out = Vec::new();
    for _ in 0..2_000_000 {
        if stop.load(std::sync::atomic::Ordering::Relaxed) || Instant::now() > deadline {
            break;
        }
        let t = Instant::now();
        if op == "set" {
            let h = s.call(&zk::set_data(path.clone(), b"q")).await?;
            if h.err != 0 {
                bail!("setData failed: {}", h.err);
            }
        } else {
            s.ping().await?;
        }
        out.push((t - begin, t.elapsed()));
    }
    Ok(out)
}

/// (x) A session-expiry storm: `sessions` sessions (timeout 4 s, the least tickTime=2000
/// allows), each holding an ephemeral znode, lose their connections at once and expire
/// together, while one more session pings and another sets data, one request at a time.
/// Figures: the probes' latency before the drop (2 s) and during the storm (from the drop to
/// 0.5 s after the last ephemeral is gone, by `mntr`'s `zk_ephemerals_count`), and how long
/// after the drop the last one went.
pub fn expiry_storm(server: &Server, sessions: usize, time_limit: Duration) -> Result<Vec<Metric>> {
    const TIMEOUT_MS: i32 = 4000;
    let rt = runtime()?;
    let addr = server.addr_string();
    let deadline = Instant::now() + time_limit;
    rt.block_on(async {
        let mut setup = Session::connect(&addr, SESSION_TIMEOUT_MS).await?;
        setup.call(&zk::create("/storm".into(), b"", 0)).await?;
        let mut doomed = Vec::with_capacity(sessions);
        while doomed.len() < sessions {
            let wave = (sessions - doomed.len()).min(50);
            let first = doomed.len();
            let mut set = JoinSet::new();
            for i in first..first + wave {
                let addr = addr.clone();
                set.spawn(async move {
                    let mut s = Session::connect(&addr, TIMEOUT_MS).await?;
                    let h = s.call(&zk::create(format!("/storm/e-{i}"), b"e", 1)).await?;
                    if h.err != 0 {
                        bail!("creating an ephemeral failed: {}", h.err);
                    }
                    Ok::<_, anyhow::Error>(s)
                });
            }
            while let Some(s) = set.join_next().await {
                doomed.push(s??);
            }
            if Instant::now() > deadline {
                bail!("connecting {sessions} sessions took too long");
            }
        }
        let ephemerals = |text: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix("zk_ephemerals_count\t"))
                .and_then(|v| v.trim().parse::<usize>().ok())
        };
        let before = ephemerals(&four_letter_async(&addr, "mntr").await?);
        if before != Some(sessions) {
            bail!("expected {sessions} ephemerals before the storm, mntr says {before:?}");
        }
        // The doomed sessions ping (as a client library does) until they are dropped, so that
        // they expire from the drop, together, not one by one from their creation.
        let drop_now = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let keepalive = {
            let drop_now = drop_now.clone();
            tokio::spawn(async move {
                for _ in 0..10_000 {
                    for s in doomed.iter_mut() {
                        if drop_now.load(std::sync::atomic::Ordering::Relaxed) {
                            return Ok(());
                        }
                        s.ping().await?;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Ok::<_, anyhow::Error>(())
            })
        };
        let begin = Instant::now();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let pinger = tokio::spawn(probe(addr.clone(), "ping", begin, stop.clone(), deadline));
        let setter = tokio::spawn(probe(addr.clone(), "set", begin, stop.clone(), deadline));
        tokio::time::sleep(Duration::from_secs(2)).await;
        // Every doomed connection closes at once, without closeSession: the sessions expire.
        drop_now.store(true, std::sync::atomic::Ordering::Relaxed);
        keepalive.await??;
        let dropped = begin.elapsed();
        let mut gone = None;
        for _ in 0..10_000 {
            if Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            if ephemerals(&four_letter_async(&addr, "mntr").await?) == Some(0) {
                gone = Some(begin.elapsed());
                break;
            }
        }
        let Some(gone) = gone else { bail!("the sessions did not expire before the deadline") };
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let pings = pinger.await??;
        let sets = setter.await??;
        let window = |samples: &Samples, from: Duration, to: Duration| {
            let mut h = hist();
            for (at, took) in samples {
                // A request in flight at the window's start counts in it.
                if *at + *took >= from && *at < to {
                    let _ = h.record((took.as_micros() as u64).max(1));
                }
            }
            h
        };
        let storm_end = gone + Duration::from_millis(500);
        let quiet = Duration::from_millis(200);
        let mut m = Vec::new();
        for (name, samples) in [("ping", &pings), ("set", &sets)] {
            let b = window(samples, quiet, dropped);
            let s = window(samples, dropped, storm_end);
            if b.is_empty() || s.is_empty() {
                bail!("the {name} probe has no samples before or during the storm");
            }
            m.push(metric(
                format!("{name}_p99_before_us"),
                b.value_at_quantile(0.99) as f64,
                Better::Info,
            ));
            m.push(metric(format!("{name}_max_before_us"), b.max() as f64, Better::Info));
            m.push(metric(
                format!("{name}_p99_storm_us"),
                s.value_at_quantile(0.99) as f64,
                Better::Lower,
            ));
            m.push(metric(format!("{name}_max_storm_us"), s.max() as f64, Better::Lower));
            m.push(metric(format!("{name}s_in_storm"), s.len() as f64, Better::Info));
        }
        // Each session last pinged up to ~0.8 s before the drop; ZooKeeper rounds expiry up
        // to its next tick.
        m.push(metric("expired_s_after_drop", (gone - dropped).as_secs_f64(), Better::Info));
        m.push(metric("sessions", sessions as f64, Better::Info));
        setup.close().await;
        Ok(m)
    })
}

/// (i) A million watches: `nodes` znodes of 100 B; `sessions` sessions each set a data watch
/// (getData with watch) on `per_session` of them, spread so that every node has about the
/// same number of watchers. Figures: the server's RSS with the sessions connected, after the
/// same reads without watches (what reads leave behind: buffers), then with every watch
/// registered — the last difference is the watches', also per watch; `mntr`'s
/// `zk_watch_count` checks the total.
pub fn watches_memory(
    server: &Server,
    sessions: usize,
    per_session: usize,
    nodes: usize,
    time_limit: Duration,
) -> Result<Vec<Metric>> {
    let rt = runtime()?;
    let addr = server.addr_string();
    let deadline = Instant::now() + time_limit;
    let path = |i: usize| format!("/watched/n-{i:07}");
    rt.block_on(async {
        let mut setup = Session::connect(&addr, SESSION_TIMEOUT_MS).await?;
        setup.call(&zk::create("/watched".into(), b"", 0)).await?;
        let mut creates = (0..nodes).map(|i| zk::create(path(i), &[b'w'; 100], 0));
        let (_, errors) = pipelined(&mut setup, &mut creates, 256, deadline, &mut || false).await?;
        if errors > 0 {
            bail!("{errors} creates failed");
        }
        let mut all = connect_many(&addr, sessions, deadline).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss_sessions = server.rss_mib()?;
        // The same reads twice: without watches (what the reads themselves leave behind:
        // buffers, caches), then with them. The difference is the watches'.
        let mut rss_reads = 0.0;
        for watch in [false, true] {
            for (k, s) in all.iter_mut().enumerate() {
                let start = k * per_session;
                let mut reqs =
                    (0..per_session).map(|j| zk::get_data(path((start + j) % nodes), watch));
                let (_, errors) = pipelined(s, &mut reqs, 100, deadline, &mut || false).await?;
                if errors > 0 {
                    bail!("{errors} reads failed");
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            if !watch {
                rss_reads = server.rss_mib()?;
            }
        }
        let mntr = four_letter_async(&addr, "mntr").await?;
        let count = mntr
            .lines()
            .find_map(|l| l.strip_prefix("zk_watch_count\t"))
            .and_then(|v| v.trim().parse::<usize>().ok());
        let want = sessions * per_session;
        if count != Some(want) {
            bail!("expected {want} watches, mntr's zk_watch_count says {count:?}");
        }
        let rss_watches = server.rss_mib()?;
        let per_watch = (rss_watches - rss_reads) * 1048576.0 / want as f64;
        let m = vec![
            metric("rss_mib", rss_watches, Better::Lower),
            metric("rss_sessions_mib", rss_sessions, Better::Lower),
            metric("reads_mib", rss_reads - rss_sessions, Better::Lower),
            metric("watch_mib", rss_watches - rss_reads, Better::Lower),
            metric("bytes_per_watch", per_watch, Better::Lower),
            metric("watches", want as f64, Better::Info),
        ];
        for s in all {
            drop(s);
        }
        setup.close().await;
        Ok(m)
    })
}

// ---------------------------------------------------------------------------------------------
// (h) writes while a snapshot is written

/// When a server is writing a snapshot, seen from its snapshot directory: corral writes one
/// under a temporary name (`snapshot.<zxid>.<n>.tmp`) and renames it when done; ZooKeeper
/// writes `snapshot.<zxid>` in place, done when it ends sealed and has stopped growing.
struct SnapshotWatch {
    kind: Kind,
    dir: std::path::PathBuf,
    zk_last: Option<(std::path::PathBuf, u64, Instant)>,
}

impl SnapshotWatch {
    fn active(&mut self) -> bool {
        match self.kind {
            Kind::Corral => std::fs::read_dir(&self.dir).is_ok_and(|rd| {
                rd.flatten().any(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            }),
            Kind::ZooKeeper => {
                let Some((_, p)) = newest_snapshot(&self.dir, false) else { return false };
                let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
                let now = Instant::now();
                let changed = match &self.zk_last {
                    Some((lp, ll, _)) => lp != &p || *ll != len,
                    None => false,
                };
                if changed || self.zk_last.is_none() {
                    let at = if changed { now } else { now - Duration::from_secs(3600) };
                    self.zk_last = Some((p.clone(), len, at));
                }
                let grew_lately = self
                    .zk_last
                    .as_ref()
                    .is_some_and(|(_, _, at)| at.elapsed() < Duration::from_millis(200));
                grew_lately || !ends_sealed(&p).unwrap_or(true)
            }
        }
    }
}

/// Paced setData 1 KiB (`rate` a second over 8 sessions, each request timed from when it was
/// sent) while the snapshot directory is watched every 5 ms; runs until at least one whole
/// snapshot and 10 s without one have been seen (at most `time_limit`). Returns write p99.9
/// and max while a snapshot was being written and while none was, and the snapshots' times.
pub fn writes_during_snapshot(
    server: &Server,
    rate: u32,
    time_limit: Duration,
) -> Result<Vec<Metric>> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let addr = server.addr_string();
    let t0 = Instant::now();
    let deadline = t0 + time_limit;
    // (start, end) offsets from t0; the last may still be open.
    type Spans = Arc<Mutex<Vec<(Duration, Option<Duration>)>>>;
    let intervals: Spans = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (intervals, stop) = (intervals.clone(), stop.clone());
        let mut w = SnapshotWatch { kind: server.kind, dir: server.snap_dir(), zk_last: None };
        std::thread::spawn(move || {
            let mut was = false;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let now = w.active();
                let at = t0.elapsed();
                let mut iv = intervals.lock().unwrap();
                if now && !was {
                    iv.push((at, None));
                } else if !now && was {
                    if let Some(last) = iv.last_mut() {
                        last.1 = Some(at);
                    }
                }
                drop(iv);
                was = now;
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    // Enough seen: a finished snapshot, and 10 s outside any.
    let enough = {
        let intervals = intervals.clone();
        move || {
            let iv = intervals.lock().unwrap();
            let done = iv.iter().filter(|(_, e)| e.is_some()).count();
            let busy: Duration =
                iv.iter().map(|(s, e)| e.unwrap_or_else(|| t0.elapsed()).saturating_sub(*s)).sum();
            done >= 1
                && iv.last().is_some_and(|l| l.1.is_some())
                && t0.elapsed().saturating_sub(busy) >= Duration::from_secs(10)
        }
    };
    let ops = paced_writes(&addr, rate, t0, deadline, enough)?;
    stop.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    let iv = intervals.lock().unwrap().clone();
    let end = t0.elapsed();
    let spans: Vec<(u64, u64)> = iv
        .iter()
        .map(|(s, e)| (s.as_micros() as u64, e.unwrap_or(end).as_micros() as u64))
        .collect();
    let (mut during, mut idle) = (hist(), hist());
    for (at, us) in &ops {
        let overlaps = spans.iter().any(|(s, e)| *at <= *e && at + us >= *s);
        let h = if overlaps { &mut during } else { &mut idle };
        h.record((*us).max(1))?;
    }
    if during.is_empty() || idle.is_empty() {
        bail!(
            "{}: no snapshot, or no time without one, in {:.0} s ({} writes, {} snapshots)",
            server.kind.name(),
            end.as_secs_f64(),
            ops.len(),
            spans.len()
        );
    }
    let mut times: Vec<f64> =
        iv.iter().filter_map(|(s, e)| e.map(|e| (e - *s).as_secs_f64())).collect();
    times.sort_by(f64::total_cmp);
    let p999 = |h: &Histogram<u64>| h.value_at_quantile(0.999) as f64;
    Ok(vec![
        metric("probe_writes", ops.len() as f64, Better::Info),
        metric("probe_writes_during_snapshot", during.len() as f64, Better::Info),
        metric("snapshots_during_probe", times.len() as f64, Better::Info),
        metric(
            "probe_snapshot_s",
            times.get(times.len() / 2).copied().unwrap_or(0.0),
            Better::Lower,
        ),
        metric("write_p999_idle_us", p999(&idle), Better::Lower),
        metric("write_p999_during_snapshot_us", p999(&during), Better::Lower),
        metric("write_max_idle_us", idle.max() as f64, Better::Lower),
        metric("write_max_during_snapshot_us", during.max() as f64, Better::Lower),
        metric("snapshot_p999_over_idle", p999(&during) / p999(&idle).max(1.0), Better::Lower),
    ])
}

/// Paced setData 1 KiB to `addr`: `rate` a second over 8 sessions (under `/probe`), each
/// request timed from when it was sent, until `enough()` (asked every 250 ms) or `deadline`.
/// Returns each write's (sent at, µs after `t0`; latency, µs).
pub fn paced_writes(
    addr: &str,
    rate: u32,
    t0: Instant,
    deadline: Instant,
    enough: impl Fn() -> bool + Clone + Send + 'static,
) -> Result<Vec<(u64, u64)>> {
    const PROBE_SESSIONS: usize = 8;
    let rt = runtime()?;
    let addr = addr.to_string();
    rt.block_on(async {
        let mut setup = Session::connect(&addr, SESSION_TIMEOUT_MS).await?;
        let _ = setup.call(&zk::create("/probe".into(), b"", 0)).await?;
        for k in 0..PROBE_SESSIONS {
            let _ = setup.call(&zk::create(format!("/probe/k{k}"), b"", 0)).await?;
        }
        setup.close().await;
        let mut tasks = JoinSet::new();
        let every = Duration::from_secs_f64(PROBE_SESSIONS as f64 / f64::from(rate.max(1)));
        for k in 0..PROBE_SESSIONS {
            let addr = addr.clone();
            let enough = enough.clone();
            tasks.spawn(async move {
                let mut s = Session::connect(&addr, SESSION_TIMEOUT_MS).await?;
                let value = vec![b'h'; 1024];
                let mut tick = tokio::time::interval(every);
                let mut sent: VecDeque<(i32, Instant)> = VecDeque::new();
                let mut ops = Vec::new();
                let mut last_check = Instant::now();
                let mut sending = true;
                while sending || !sent.is_empty() {
                    if Instant::now() > deadline + Duration::from_secs(30) {
                        bail!("replies still missing past the deadline");
                    }
                    tokio::select! {
                        _ = tick.tick(), if sending => {
                            if last_check.elapsed() >= Duration::from_millis(250) {
                                last_check = Instant::now();
                                sending = Instant::now() < deadline && !enough();
                            }
                            if sending && sent.len() < 1000 {
                                let mut out = Vec::new();
                                let xid = s.encode(
                                    &zk::set_data(format!("/probe/k{k}"), &value),
                                    &mut out,
                                );
                                sent.push_back((xid, Instant::now()));
                                s.write(&out).await?;
                            }
                        }
                        r = s.read_some(|inc| {
                            if let Incoming::Reply(h) = inc {
                                if let Some(i) = sent.iter().position(|(x, _)| *x == h.xid) {
                                    let (_, at) = sent.remove(i).expect("found");
                                    let us = at.elapsed().as_micros() as u64;
                                    ops.push(((at - t0).as_micros() as u64, us));
                                }
                            }
                        }) => r?,
                        _ = tokio::time::sleep(Duration::from_millis(250)), if !sending => {}
                    }
                }
                s.close().await;
                anyhow::Ok(ops)
            });
        }
        let mut all = Vec::new();
        while let Some(r) = tasks.join_next().await {
            all.extend(r??);
        }
        anyhow::Ok(all)
    })
}
