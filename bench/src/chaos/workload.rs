//! The chaos workloads, each recording what its clients asked and were told:
//!
//! * registers: znodes `/chaos/r/g<gen>-k<k>` (a fresh set of keys every `gen_secs`, so each
//!   register's history stays short enough to check), read through `sync` + getData,
//!   written by setData, and compare-and-set by setData with the version last seen;
//! * sequential creates: `/chaos/seq/s-` with PERSISTENT_SEQUENTIAL;
//! * sessions: each creates ephemerals under `/chaos/eph`, checks after a while that they are
//!   still there (through the same live session), then closes or abandons the session; at the
//!   end, once every session has ended and timed out, no ephemeral may be left on any server;
//! * watches: one client writes `/chaos/w` without pause; watchers each hold a persistent
//!   watch on it through one session on one server and, between two reads of its version
//!   (v0, then v1), must receive exactly v1 − v0 data-change events: none missed, none for a
//!   change that did not commit;
//! * a lock as Curator builds it ([`super::lock`]).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use corral_server::proto::{PathRequest, PathWatchRequest, Request, Response};
use rand::{Rng, SeedableRng};

use super::client::{Client, Outcome};
use super::linear::{Call, Op, Reg, Ret};
use crate::zk;

/// BADVERSION.
const BAD_VERSION: i32 = -103;
/// NODEEXISTS.
const NODE_EXISTS: i32 = -110;

/// What every worker shares.
pub struct Shared {
    /// The run's clock.
    pub t0: Instant,
    /// The servers' client addresses.
    pub nodes: Vec<SocketAddr>,
    /// Session timeout asked for, ms.
    pub session_timeout_ms: i32,
    /// Bound on each request.
    pub op_timeout: Duration,
    /// Workers stop here, or when `stop` is set.
    pub until: Instant,
    /// Set when the faults are done (runs of a given number of rounds).
    pub stop: std::sync::atomic::AtomicBool,
    /// Registers per generation.
    pub keys: u32,
    /// Seconds per generation of registers.
    pub gen_secs: u64,
    /// Pause between a worker's operations.
    pub think: Duration,
    /// Register operations: (path, op).
    pub reg: Mutex<Vec<(String, Op)>>,
    /// Sequential creates.
    pub seq: Mutex<SeqLog>,
    /// Error codes answered, by code.
    pub errors: Mutex<BTreeMap<i32, u64>>,
    /// Sessions the session clients ended.
    pub sessions: Mutex<SessionLog>,
    /// Anomalies the clients saw as they happened.
    pub anomalies: Mutex<Vec<String>>,
    /// Watch windows checked, and the events they held.
    pub watches: Mutex<WatchLog>,
    /// What the lock clients saw.
    pub locks: Mutex<super::lock::LockLog>,
}

/// What the watchers checked.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct WatchLog {
    /// Windows (v0 to v1 through one live session) checked.
    pub windows: u64,
    /// Data-change events counted in them.
    pub events: u64,
    /// Windows given up (the session's connection broke or hung).
    pub broken: u64,
}

/// What the session clients did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct SessionLog {
    /// Sessions ended, in order.
    pub ended: Vec<EndedSession>,
    /// Ephemerals acknowledged.
    pub created: u64,
    /// Ephemerals checked present through their live session.
    pub checked: u64,
}

/// A session a session client ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EndedSession {
    /// Its id.
    pub session: i64,
    /// Ephemerals it created, or may have (a create without an answer).
    pub paths: Vec<String>,
    /// When it ended (ns since the run began).
    pub ended: u64,
    /// Closed by closeSession (answered); otherwise abandoned to expire.
    pub closed: bool,
}

/// What the sequential-create clients saw.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct SeqLog {
    /// Names acknowledged, in acknowledgement order.
    pub acked: Vec<String>,
    /// Creates whose outcome is unknown.
    pub unknown: u64,
    /// Creates that failed with an error.
    pub failed: u64,
}

impl Shared {
    /// Nanoseconds since the run began.
    pub fn now(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }

    /// Generations the run can reach.
    pub fn generations(&self) -> u64 {
        self.until.saturating_duration_since(self.t0).as_secs() / self.gen_secs + 1
    }

    /// Whether workers go on.
    pub fn running(&self) -> bool {
        Instant::now() < self.until && !self.stop.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The register generation of this moment (the last one once the run overstays).
    fn generation(&self) -> u64 {
        (self.t0.elapsed().as_secs() / self.gen_secs).min(self.generations() - 1)
    }

    /// Counts an error code answered.
    pub fn count_error(&self, code: i32) {
        *self.errors.lock().expect("lock").entry(code).or_default() += 1;
    }
}

/// A register's path.
pub fn key_path(gen: u64, k: u32) -> String {
    format!("/chaos/r/g{gen:04}-k{k}")
}

/// Connects to some server, trying each in turn from `first`, until `within`.
pub async fn connect_any(sh: &Shared, first: usize, within: Duration) -> Result<(Client, usize)> {
    let deadline = Instant::now() + within;
    let mut i = first;
    loop {
        let addr = sh.nodes[i % sh.nodes.len()];
        if let Ok(c) = Client::connect(addr, sh.session_timeout_ms, Duration::from_secs(2)).await {
            return Ok((c, i % sh.nodes.len()));
        }
        if Instant::now() > deadline {
            bail!("no server gave a session within {within:?}");
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates the workloads' znodes: /chaos, /chaos/seq and every register of every generation.
pub async fn setup(sh: &Shared) -> Result<()> {
    let (mut c, _) = connect_any(sh, 0, Duration::from_secs(60)).await?;
    let mut paths = vec![
        "/chaos".to_string(),
        "/chaos/r".to_string(),
        "/chaos/seq".to_string(),
        "/chaos/eph".to_string(),
        "/chaos/w".to_string(),
        super::lock::LOCK_DIR.to_string(),
    ];
    for g in 0..sh.generations() {
        for k in 0..sh.keys {
            paths.push(key_path(g, k));
        }
    }
    for p in paths {
        let data: &[u8] = if p.starts_with("/chaos/r/") { b"0" } else { b"" };
        match c.call(&zk::create(p.clone(), data, 0), Duration::from_secs(10)).await {
            Outcome::Answered(0 | NODE_EXISTS, ..) => {}
            other => bail!("setting up {p}: {other:?}"),
        }
    }
    c.close().await;
    Ok(())
}

fn parse_value(data: &[u8]) -> u64 {
    std::str::from_utf8(data).ok().and_then(|s| s.parse().ok()).unwrap_or(u64::MAX)
}

/// The client's connection, or `None` after one attempt to open a session with `node` failed
/// (then `node` is another random server and a short pause has passed).
async fn connected<'a>(
    sh: &Shared,
    client: &'a mut Option<Client>,
    node: &mut usize,
    rng: &mut rand::rngs::StdRng,
) -> Option<&'a mut Client> {
    if client.is_none() {
        match Client::connect(sh.nodes[*node], sh.session_timeout_ms, Duration::from_secs(2)).await
        {
            Ok(c) => *client = Some(c),
            Err(_) => {
                *node = rng.random_range(0..sh.nodes.len());
                tokio::time::sleep(Duration::from_millis(100)).await;
                return None;
            }
        }
    }
    client.as_mut()
}

/// A new session on a random server, or `None` after a failed attempt and a short pause.
pub async fn fresh_session(sh: &Shared, rng: &mut rand::rngs::StdRng) -> Option<(Client, usize)> {
    let node = rng.random_range(0..sh.nodes.len());
    match Client::connect(sh.nodes[node], sh.session_timeout_ms, Duration::from_secs(2)).await {
        Ok(c) => Some((c, node)),
        Err(_) => {
            tokio::time::sleep(Duration::from_millis(100)).await;
            None
        }
    }
}

/// One register client: runs until `sh.until`.
pub async fn register_worker(sh: Arc<Shared>, w: u32, seed: u64) {
    let mut rng =
        rand::rngs::StdRng::seed_from_u64(seed.wrapping_mul(31).wrapping_add(u64::from(w)));
    let n = sh.nodes.len();
    let mut client: Option<Client> = None;
    let mut node = w as usize % n;
    let mut counter = 0u64;
    let mut seen: HashMap<String, i32> = HashMap::new();
    while sh.running() {
        let Some(c) = connected(&sh, &mut client, &mut node, &mut rng).await else { continue };
        let gen = sh.generation();
        let path = key_path(gen, rng.random_range(0..sh.keys));
        let invoke = sh.now();
        let dice = rng.random_range(0..10);
        let mut dead = false;
        let recorded: Option<(Call, Ret)> = if dice < 4 {
            match c.call(&Request::Sync(PathRequest { path: path.clone() }), sh.op_timeout).await {
                Outcome::Answered(0, ..) => {
                    let get =
                        Request::GetData(PathWatchRequest { path: path.clone(), watch: false });
                    match c.call(&get, sh.op_timeout).await {
                        Outcome::Answered(0, Some(Response::GetData(r))) => {
                            seen.insert(path.clone(), r.stat.version);
                            let reg = Reg {
                                value: parse_value(r.data.as_slice()),
                                version: r.stat.version,
                            };
                            Some((Call::Read, Ret::Read(reg)))
                        }
                        Outcome::Answered(err, ..) => {
                            sh.count_error(err);
                            None
                        }
                        Outcome::Unknown => {
                            dead = true;
                            None
                        }
                    }
                }
                Outcome::Answered(err, ..) => {
                    sh.count_error(err);
                    None
                }
                Outcome::Unknown => {
                    dead = true;
                    None
                }
            }
        } else {
            counter += 1;
            let value = (u64::from(w) + 1) << 32 | counter;
            let call = if dice < 7 {
                Call::Write(value)
            } else {
                Call::Cas { expect: seen.get(&path).copied().unwrap_or(0), value }
            };
            let version = match call {
                Call::Cas { expect, .. } => expect,
                _ => -1,
            };
            let req = Request::SetData(corral_server::proto::SetDataRequest {
                path: path.clone(),
                data: value.to_string().into_bytes().into(),
                version,
            });
            let ret = match c.call(&req, sh.op_timeout).await {
                Outcome::Answered(0, Some(Response::Stat(s))) => {
                    seen.insert(path.clone(), s.stat.version);
                    Ret::Written(s.stat.version)
                }
                Outcome::Answered(BAD_VERSION, ..) if version >= 0 => {
                    sh.count_error(BAD_VERSION);
                    Ret::CasFailed
                }
                Outcome::Answered(err, ..) => {
                    // Any other error: counted, and kept as an unknown outcome (sound whatever
                    // the server did).
                    sh.count_error(err);
                    Ret::Unknown
                }
                Outcome::Unknown => {
                    dead = true;
                    Ret::Unknown
                }
            };
            Some((call, ret))
        };
        if let Some((call, ret)) = recorded {
            let complete = (ret != Ret::Unknown).then(|| sh.now());
            sh.reg
                .lock()
                .expect("lock")
                .push((path, Op { process: w, call, ret, invoke, complete }));
        }
        if dead {
            // The connection is gone or hung: drop it (its session expires) and go elsewhere.
            client = None;
            node = rng.random_range(0..n);
        }
        tokio::time::sleep(sh.think.mul_f64(rng.random_range(0.5..1.5))).await;
    }
    if let Some(c) = client {
        c.close().await;
    }
}

/// One sequential-create client: runs until `sh.until`.
pub async fn seq_worker(sh: Arc<Shared>, w: u32, seed: u64) {
    let mut rng =
        rand::rngs::StdRng::seed_from_u64(seed.wrapping_mul(37).wrapping_add(u64::from(w)));
    let n = sh.nodes.len();
    let mut client: Option<Client> = None;
    let mut node = w as usize % n;
    while sh.running() {
        let Some(c) = connected(&sh, &mut client, &mut node, &mut rng).await else { continue };
        let req = zk::create("/chaos/seq/s-".into(), b"", 2);
        match c.call(&req, sh.op_timeout).await {
            Outcome::Answered(0, Some(Response::Create(r))) => {
                sh.seq.lock().expect("lock").acked.push(r.path);
            }
            Outcome::Answered(err, ..) => {
                sh.count_error(err);
                sh.seq.lock().expect("lock").failed += 1;
            }
            Outcome::Unknown => {
                sh.seq.lock().expect("lock").unknown += 1;
                client = None;
                node = rng.random_range(0..n);
            }
        }
        tokio::time::sleep(sh.think.mul_f64(rng.random_range(0.5..1.5))).await;
    }
    if let Some(c) = client {
        c.close().await;
    }
}

/// One session client: sessions one after another, each creating ephemerals, checking them,
/// then closing or abandoning the session. Runs until the run stops.
pub async fn session_worker(sh: Arc<Shared>, w: u32, seed: u64) {
    let mut rng =
        rand::rngs::StdRng::seed_from_u64(seed.wrapping_mul(41).wrapping_add(u64::from(w)));
    let mut counter = 0u64;
    while sh.running() {
        let Some((mut c, node)) = fresh_session(&sh, &mut rng).await else { continue };
        let (mut created, mut maybe) = (Vec::new(), Vec::new());
        let mut dead = false;
        for _ in 0..rng.random_range(1..=3) {
            counter += 1;
            let path = format!("/chaos/eph/w{w}-{counter}");
            match c.call(&zk::create(path.clone(), b"", 1), sh.op_timeout).await {
                Outcome::Answered(0, ..) => created.push(path),
                Outcome::Answered(err, ..) => sh.count_error(err),
                Outcome::Unknown => {
                    maybe.push(path);
                    dead = true;
                    break;
                }
            }
        }
        sh.sessions.lock().expect("lock").created += created.len() as u64;
        if !dead {
            // Held well under a third of the session timeout: the session stays alive without
            // pings.
            let hold = (sh.session_timeout_ms as u64 / 4).min(1500);
            tokio::time::sleep(Duration::from_millis(rng.random_range(100..=hold.max(101)))).await;
            let sync = Request::Sync(PathRequest { path: "/chaos/eph".into() });
            if let Outcome::Answered(0, ..) = c.call(&sync, sh.op_timeout).await {
                for p in &created {
                    let exists =
                        Request::Exists(PathWatchRequest { path: p.clone(), watch: false });
                    match c.call(&exists, sh.op_timeout).await {
                        Outcome::Answered(0, ..) => sh.sessions.lock().expect("lock").checked += 1,
                        Outcome::Answered(-101, ..) => {
                            sh.anomalies.lock().expect("lock").push(format!(
                                "ephemeral {p} of live session 0x{:x} is gone (server {})",
                                c.session_id,
                                node + 1
                            ))
                        }
                        Outcome::Answered(..) => {}
                        Outcome::Unknown => break,
                    }
                }
            }
        }
        let session = c.session_id;
        let closed = rng.random_bool(0.5)
            && matches!(
                c.call(&Request::CloseSession, sh.op_timeout).await,
                Outcome::Answered(0, ..)
            );
        drop(c);
        created.extend(maybe);
        sh.sessions.lock().expect("lock").ended.push(EndedSession {
            session,
            paths: created,
            ended: sh.now(),
            closed,
        });
    }
}

/// Writes /chaos/w without pause (any version), until the run stops.
pub async fn watch_writer(sh: Arc<Shared>, w: u32, seed: u64) {
    let mut rng =
        rand::rngs::StdRng::seed_from_u64(seed.wrapping_mul(43).wrapping_add(u64::from(w)));
    let n = sh.nodes.len();
    let mut client: Option<Client> = None;
    let mut node = rng.random_range(0..n);
    let mut counter = 0u64;
    while sh.running() {
        let Some(c) = connected(&sh, &mut client, &mut node, &mut rng).await else { continue };
        counter += 1;
        let req = Request::SetData(corral_server::proto::SetDataRequest {
            path: "/chaos/w".into(),
            data: counter.to_string().into_bytes().into(),
            version: -1,
        });
        if let Outcome::Unknown = c.call(&req, sh.op_timeout).await {
            client = None;
            node = rng.random_range(0..n);
        }
        tokio::time::sleep(sh.think.mul_f64(rng.random_range(0.5..1.5))).await;
    }
}

/// One watcher: windows one after another, each on a fresh session to a random server.
pub async fn watcher(sh: Arc<Shared>, w: u32, seed: u64) {
    let mut rng =
        rand::rngs::StdRng::seed_from_u64(seed.wrapping_mul(47).wrapping_add(u64::from(w)));
    const DATA_CHANGED: i32 = 3;
    while sh.running() {
        let Some((mut c, node)) = fresh_session(&sh, &mut rng).await else { continue };
        let get = Request::GetData(PathWatchRequest { path: "/chaos/w".into(), watch: false });
        let add = Request::AddWatch(corral_server::proto::AddWatchRequest {
            path: "/chaos/w".into(),
            mode: 0,
        });
        let version = |o: &Outcome| match o {
            Outcome::Answered(0, Some(Response::GetData(d))) => Some(d.stat.version),
            _ => None,
        };
        let window = async {
            let Outcome::Answered(0, ..) = c.call(&add, sh.op_timeout).await else { return None };
            // Events for changes up to v0 arrive before this reply; later ones after it.
            let v0 = version(&c.call(&get, sh.op_timeout).await)?;
            let from = c.events.len();
            let until = Instant::now() + Duration::from_millis(rng.random_range(1000..4000));
            while Instant::now() < until && sh.running() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                // Any request reads what has arrived and keeps the session alive (a ping's
                // reply carries xid -2, not the request's).
                let exists =
                    Request::Exists(PathWatchRequest { path: "/chaos/w".into(), watch: false });
                let Outcome::Answered(..) = c.call(&exists, sh.op_timeout).await else {
                    return None;
                };
            }
            let v1 = version(&c.call(&get, sh.op_timeout).await)?;
            let seen = c.events[from..]
                .iter()
                .filter(|e| e.kind == DATA_CHANGED && e.path == "/chaos/w")
                .count();
            Some((v0, v1, seen, c.events[from..].len()))
        }
        .await;
        match window {
            Some((v0, v1, seen, all)) => {
                let mut log = sh.watches.lock().expect("lock");
                log.windows += 1;
                log.events += seen as u64;
                drop(log);
                if let Some(a) = check_watch_window(v0, v1, seen, all) {
                    sh.anomalies
                        .lock()
                        .expect("lock")
                        .push(format!("watcher on server {}: {a}", node + 1));
                }
            }
            None => sh.watches.lock().expect("lock").broken += 1,
        }
        c.close().await;
    }
}

/// A watch window: between reading version `v0` and version `v1` of the watched node through
/// one live session, `seen` data-change events arrived for it and `all` events in all. Every
/// committed change fires exactly one event, and nothing else may.
pub fn check_watch_window(v0: i32, v1: i32, seen: usize, all: usize) -> Option<String> {
    let expected = i64::from(v1) - i64::from(v0);
    (seen as i64 != expected || all != seen).then(|| {
        format!(
            "versions {v0} to {v1} of /chaos/w but {seen} data-change events ({all} events in all)"
        )
    })
}

/// The ephemerals under /chaos/eph and /chaos/lock on one server (after a `sync`), with
/// their owners.
pub async fn read_ephemerals(
    addr: SocketAddr,
    session_timeout_ms: i32,
) -> Result<Vec<(String, i64)>> {
    let t = Duration::from_secs(10);
    let mut c = Client::connect(addr, session_timeout_ms, Duration::from_secs(3)).await?;
    let r = async {
        let sync = Request::Sync(PathRequest { path: "/chaos".into() });
        let Outcome::Answered(0, ..) = c.call(&sync, t).await else { bail!("sync failed") };
        let mut out = Vec::new();
        for dir in ["/chaos/eph", super::lock::LOCK_DIR] {
            let list = Request::GetChildren(PathWatchRequest { path: dir.into(), watch: false });
            let Outcome::Answered(0, Some(Response::GetChildren(kids))) = c.call(&list, t).await
            else {
                bail!("getChildren {dir} failed")
            };
            for k in kids.children {
                let path = format!("{dir}/{k}");
                let exists = Request::Exists(PathWatchRequest { path: path.clone(), watch: false });
                if let Outcome::Answered(0, Some(Response::Stat(s))) = c.call(&exists, t).await {
                    out.push((path, s.stat.ephemeral_owner));
                }
            }
        }
        Ok(out)
    }
    .await;
    c.close().await;
    r
}

/// What one server holds under /chaos: register path → (value, version), and the
/// sequential children.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tree {
    /// Registers.
    pub registers: BTreeMap<String, Reg>,
    /// Children of /chaos/seq.
    pub seq: Vec<String>,
}

/// Reads /chaos from one server (after a `sync`).
pub async fn read_tree(addr: SocketAddr, session_timeout_ms: i32) -> Result<Tree> {
    let t = Duration::from_secs(10);
    let mut c = Client::connect(addr, session_timeout_ms, Duration::from_secs(3)).await?;
    let r = async {
        let sync = Request::Sync(PathRequest { path: "/chaos".into() });
        let Outcome::Answered(0, ..) = c.call(&sync, t).await else { bail!("sync failed") };
        let children =
            |p: &str| Request::GetChildren(PathWatchRequest { path: p.into(), watch: false });
        let Outcome::Answered(0, Some(Response::GetChildren(keys))) =
            c.call(&children("/chaos/r"), t).await
        else {
            bail!("getChildren /chaos/r failed")
        };
        let mut tree = Tree::default();
        for k in keys.children {
            let path = format!("/chaos/r/{k}");
            let get = Request::GetData(PathWatchRequest { path: path.clone(), watch: false });
            let Outcome::Answered(0, Some(Response::GetData(d))) = c.call(&get, t).await else {
                bail!("getData {path} failed")
            };
            tree.registers.insert(
                path,
                Reg { value: parse_value(d.data.as_slice()), version: d.stat.version },
            );
        }
        let Outcome::Answered(0, Some(Response::GetChildren(seq))) =
            c.call(&children("/chaos/seq"), t).await
        else {
            bail!("getChildren /chaos/seq failed")
        };
        tree.seq = seq.children;
        tree.seq.sort();
        Ok(tree)
    }
    .await;
    c.close().await;
    r
}

/// Checks the sequential creates against the final children: every acknowledged name is
/// there, no name was acknowledged twice, and the counters run 0..n without a gap. Returns
/// the anomalies found.
pub fn check_seq(log: &SeqLog, children: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let present: std::collections::HashSet<&str> = children.iter().map(String::as_str).collect();
    let mut acked_once = std::collections::HashSet::new();
    let (mut twice, mut missing) = (Vec::new(), Vec::new());
    for name in &log.acked {
        let leaf = name.rsplit('/').next().unwrap_or(name);
        if !acked_once.insert(leaf.to_string()) {
            twice.push(leaf.to_string());
        }
        if !present.contains(leaf) {
            missing.push(leaf.to_string());
        }
    }
    let some = |v: &[String]| {
        let mut t = v.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
        if v.len() > 5 {
            t.push_str(", ...");
        }
        t
    };
    if !twice.is_empty() {
        out.push(format!(
            "{} sequential names acknowledged to two creates: {}",
            twice.len(),
            some(&twice)
        ));
    }
    if !missing.is_empty() {
        out.push(format!(
            "{} acknowledged sequential creates missing: {}",
            missing.len(),
            some(&missing)
        ));
    }
    let mut counters: Vec<i64> =
        children.iter().filter_map(|c| c.strip_prefix("s-").and_then(|d| d.parse().ok())).collect();
    counters.sort_unstable();
    for (i, c) in counters.iter().enumerate() {
        if *c != i as i64 {
            out.push(format!("sequential counters have a gap or repeat: position {i} holds {c}"));
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_check_rejects_missed_spurious_and_foreign_events() {
        assert_eq!(check_watch_window(10, 15, 5, 5), None);
        assert_eq!(check_watch_window(10, 10, 0, 0), None);
        assert!(check_watch_window(10, 15, 4, 4).is_some(), "a change without its event");
        assert!(check_watch_window(10, 15, 6, 6).is_some(), "an event for no committed change");
        assert!(check_watch_window(10, 15, 5, 6).is_some(), "an event of another kind");
        assert!(check_watch_window(15, 10, 0, 0).is_some(), "the version went back");
    }

    #[test]
    fn sequential_check_rejects_loss_duplicates_and_gaps() {
        let names = |v: &[u32]| v.iter().map(|i| format!("s-{i:010}")).collect::<Vec<_>>();
        let log = SeqLog {
            acked: names(&[0, 1, 2]).iter().map(|n| format!("/chaos/seq/{n}")).collect(),
            ..Default::default()
        };
        assert!(check_seq(&log, &names(&[0, 1, 2, 3])).is_empty());
        assert!(check_seq(&log, &names(&[0, 1])).iter().any(|a| a.contains("missing")));
        assert!(check_seq(&log, &names(&[0, 1, 2, 4])).iter().any(|a| a.contains("gap")));
        let mut twice = log.clone();
        twice.acked.push("/chaos/seq/s-0000000001".into());
        assert!(check_seq(&twice, &names(&[0, 1, 2])).iter().any(|a| a.contains("two creates")));
    }
}
