//! Client workloads through the production pipeline — a standalone server: the pipeline over
//! its one-voter replica over the database — on the engine's simulated disk, driven from a
//! seed: sessions, persistent and ephemeral creates, setData, deletes, multis, watches, sync
//! and closeSession from several clients, interleaved with log flushes, ticks of a manual
//! clock, and crashes that bring the disk back as a reboot would find it.
//!
//! Checked at every recovery and at the end: every acknowledged create exists and every
//! acknowledged delete stays deleted; a multi is all or nothing; an acknowledged closeSession
//! leaves no ephemeral behind; sessions of a crashed incarnation expire (with their ephemerals)
//! once their timeout passes; zxids only grow; and a watch set by getData fires before the
//! reply to a later acknowledged setData of its node reaches anyone.
//!
//! `CORRAL_WORKLOAD_SEEDS=N` runs more seeds; a failure names its seed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Instant;

use corral_engine::io::SimVfs;
use corral_engine::log::FlushStrategy;
use corral_server::config::Config;
use corral_server::db::{Database, DbOptions};
use corral_server::pipeline::{Conn, Input, ManualClock, Out, Pipeline, Settings, Shared};
use corral_server::proto::{
    Acl, CreateRequest, Data, DeleteRequest, Id, MultiOp, PathRequest, PathWatchRequest, Request,
    SetDataRequest,
};
use corral_server::tree::TreeOptions;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const TICK_MS: u64 = 2_000;
const TIMEOUT_MS: i32 = 4_000;
const CLIENTS: usize = 4;

fn db_options(disk: &SimVfs, strategy: FlushStrategy) -> DbOptions {
    let mut o = corral_server::sim::node::db_options(disk, strategy);
    // Snapshots now and then, so recovery starts from one.
    o.snap_count = 40;
    o.snap_size_limit_kb = 4 * 1024 * 1024;
    o
}

#[derive(Debug, Clone)]
enum Op {
    Create(String),
    Ephemeral(String, i64),
    Set,
    Delete(String),
    Multi(String, String),
    Watch,
    Sync,
    Close,
}

struct Client {
    conn: Option<Arc<Conn>>,
    rx: Option<tokio::sync::mpsc::UnboundedReceiver<Out>>,
    session: Option<i64>,
    touch: Option<Arc<AtomicU64>>,
    pending: BTreeMap<i32, Op>,
    xid: i32,
    last_zxid: i64,
    /// A watch on /shared, set by a getData answered at this zxid, not fired yet.
    watch: Option<i64>,
    events: u64,
}

struct World {
    seed: u64,
    rng: ChaCha8Rng,
    disk: SimVfs,
    strategy: FlushStrategy,
    clock: Arc<ManualClock>,
    shared: Arc<Shared>,
    pipeline: Option<Pipeline>,
    _durable: mpsc::Receiver<Input>,
    clients: Vec<Client>,
    next_conn: u64,
    made: u64,
    acked: BTreeSet<String>,
    deleted: BTreeSet<String>,
    multis: Vec<(String, String)>,
    closed: BTreeSet<i64>,
    /// When each create was acknowledged (its zxid), for failure reports.
    acked_at: BTreeMap<String, i64>,
    /// Acknowledged ephemerals and their sessions.
    ephemerals: BTreeMap<String, i64>,
    /// Sessions of earlier incarnations, and when they must be gone by.
    orphaned: BTreeSet<i64>,
    crashes: u64,
    replies: u64,
    events: u64,
}

impl World {
    fn new(seed: u64) -> World {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let strategy =
            if rng.random_bool(0.5) { FlushStrategy::Group } else { FlushStrategy::Direct };
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let disk = SimVfs::new();
        let (shared, pipeline, rx) = open(&disk, strategy, &clock, seed);
        let clients = (0..CLIENTS)
            .map(|_| Client {
                conn: None,
                rx: None,
                session: None,
                touch: None,
                pending: BTreeMap::new(),
                xid: 0,
                last_zxid: 0,
                watch: None,
                events: 0,
            })
            .collect();
        World {
            seed,
            rng,
            disk,
            strategy,
            clock,
            shared,
            pipeline: Some(pipeline),
            _durable: rx,
            clients,
            next_conn: 1,
            made: 0,
            acked: BTreeSet::new(),
            deleted: BTreeSet::new(),
            multis: Vec::new(),
            closed: BTreeSet::new(),
            ephemerals: BTreeMap::new(),
            acked_at: BTreeMap::new(),
            orphaned: BTreeSet::new(),
            crashes: 0,
            replies: 0,
            events: 0,
        }
    }

    fn p(&mut self) -> &mut Pipeline {
        self.pipeline.as_mut().expect("running")
    }

    fn connect(&mut self, c: usize) {
        let (out_tx, out_rx) = tokio::sync::mpsc::unbounded_channel();
        let remote: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let id = self.next_conn;
        self.next_conn += 1;
        let conn = Arc::new(Conn::new(id, remote, out_tx, self.shared.now_ms(), 1 << 24));
        self.shared.conns.lock().unwrap().insert(id, conn.clone());
        let (done, mut rx) = tokio::sync::oneshot::channel();
        self.p().step(Input::CreateSession {
            conn: conn.clone(),
            timeout_ms: TIMEOUT_MS,
            read_only: None,
            done,
        });
        self.p().flush_log();
        let (session, touch) = rx.try_recv().expect("answered").expect("a session");
        let cl = &mut self.clients[c];
        cl.conn = Some(conn);
        cl.rx = Some(out_rx);
        cl.session = Some(session);
        cl.touch = Some(touch);
        cl.pending.clear();
        cl.watch = None;
    }

    fn send(&mut self, c: usize, req: Request, op: Op) {
        let cl = &mut self.clients[c];
        let Some(conn) = cl.conn.clone() else { return };
        cl.xid += 1;
        let xid = cl.xid;
        cl.pending.insert(xid, op);
        conn.pending.fetch_add(1, Ordering::AcqRel);
        self.shared.outstanding.fetch_add(1, Ordering::AcqRel);
        let auth = Arc::new(vec![Id { scheme: "ip".into(), id: "127.0.0.1".into() }]);
        let opcode = req.opcode();
        self.p().step(Input::Request {
            conn,
            xid,
            op: opcode,
            req,
            auth,
            received: Instant::now(),
        });
    }

    fn client_op(&mut self, c: usize) {
        if self.clients[c].session.is_none() {
            self.connect(c);
            return;
        }
        self.made += 1;
        let n = self.made;
        let data = Data::from(n.to_be_bytes().to_vec());
        let open = vec![Acl { perms: 31, id: Id { scheme: "world".into(), id: "anyone".into() } }];
        let create = |path: &str, flags: i32| CreateRequest {
            path: path.into(),
            data: data.clone(),
            acl: open.clone(),
            flags,
        };
        match self.rng.random_range(0..100) {
            0..30 => {
                let path = format!("/p{c}-{n}");
                self.send(c, Request::Create(create(&path, 0)), Op::Create(path));
            }
            30..40 => {
                let path = format!("/e{c}-{n}");
                let s = self.clients[c].session.expect("connected");
                self.send(c, Request::Create(create(&path, 1)), Op::Ephemeral(path, s));
            }
            40..55 => {
                let r = SetDataRequest { path: "/shared".into(), data: data.clone(), version: -1 };
                self.send(c, Request::SetData(r), Op::Set);
            }
            55..65 => {
                let mine: Vec<String> = self
                    .acked
                    .iter()
                    .filter(|p| p.starts_with(&format!("/p{c}-")))
                    .cloned()
                    .collect();
                if !mine.is_empty() {
                    let path = mine[self.rng.random_range(0..mine.len())].clone();
                    let r = DeleteRequest { path: path.clone(), version: -1 };
                    self.send(c, Request::Delete(r), Op::Delete(path));
                }
            }
            65..75 => {
                let (a, b) = (format!("/m{c}-{n}-a"), format!("/m{c}-{n}-b"));
                self.multis.push((a.clone(), b.clone()));
                let ops = vec![MultiOp::Create(create(&a, 0)), MultiOp::Create(create(&b, 0))];
                self.send(c, Request::Multi(ops), Op::Multi(a, b));
            }
            75..85 if self.clients[c].watch.is_none() => {
                let r = PathWatchRequest { path: "/shared".into(), watch: true };
                self.send(c, Request::GetData(r), Op::Watch);
            }
            85..93 => self.send(c, Request::Sync(PathRequest { path: "/".into() }), Op::Sync),
            93..95 => self.send(c, Request::CloseSession, Op::Close),
            _ => {}
        }
    }

    /// Reads every client's queue and checks what arrived.
    fn drain(&mut self) {
        let mut sets = Vec::new();
        for c in 0..CLIENTS {
            let Some(rx) = self.clients[c].rx.as_mut() else { continue };
            let mut got = Vec::new();
            while let Ok(o) = rx.try_recv() {
                got.push(o);
            }
            for o in got {
                match o {
                    Out::Reply { reply, .. } => {
                        let cl = &mut self.clients[c];
                        let Some(op) = cl.pending.remove(&reply.xid) else { continue };
                        self.replies += 1;
                        assert!(
                            reply.zxid >= cl.last_zxid || reply.zxid < 0,
                            "seed {}: zxid went back from {:#x} to {:#x}",
                            self.seed,
                            cl.last_zxid,
                            reply.zxid
                        );
                        cl.last_zxid = cl.last_zxid.max(reply.zxid);
                        if reply.err.code() != 0 {
                            continue;
                        }
                        match op {
                            Op::Create(p) => {
                                self.acked_at.insert(p.clone(), reply.zxid);
                                self.acked.insert(p);
                            }
                            Op::Delete(p) => {
                                self.acked.remove(&p);
                                self.deleted.insert(p);
                            }
                            Op::Ephemeral(p, s) => {
                                self.ephemerals.insert(p, s);
                            }
                            Op::Multi(a, b) => {
                                self.acked.insert(a);
                                self.acked.insert(b);
                            }
                            Op::Set => sets.push(reply.zxid),
                            Op::Watch => cl.watch = Some(reply.zxid),
                            Op::Close => {
                                if let Some(s) = cl.session.take() {
                                    self.closed.insert(s);
                                }
                                cl.conn = None;
                                cl.watch = None;
                            }
                            Op::Sync => {}
                        }
                    }
                    Out::Frame(f) if f.len() > 8 && f[4..8] == [0xff; 4] => {
                        // A watch notification (xid -1).
                        self.clients[c].events += 1;
                        self.clients[c].watch = None;
                        self.events += 1;
                    }
                    Out::Shared(f) if f.len() > 8 && f[4..8] == [0xff; 4] => {
                        self.clients[c].events += 1;
                        self.clients[c].watch = None;
                        self.events += 1;
                    }
                    _ => {}
                }
            }
        }
        // A setData acknowledged at z fired every watch armed on /shared before z: by the
        // time its reply was queued, the event was queued on the watcher's connection.
        if let Some(z) = sets.into_iter().max() {
            for cl in &self.clients {
                if let (Some(w), Some(conn)) = (cl.watch, &cl.conn) {
                    if w < z && !conn.session_ended.load(Ordering::Acquire) {
                        panic!(
                            "seed {}: a watch set at {w:#x} did not fire for the setData at {z:#x}",
                            self.seed
                        );
                    }
                }
            }
        }
        // Connections whose session ended (expiry) are gone, with the replies they were owed:
        // what they asked may or may not have been done.
        for c in 0..CLIENTS {
            let cl = &self.clients[c];
            if cl.conn.as_ref().is_some_and(|c| c.session_ended.load(Ordering::Acquire)) {
                self.forget(c);
            }
        }
    }

    /// The client's connection is gone: unanswered deletes may have happened.
    fn forget(&mut self, c: usize) {
        let cl = &mut self.clients[c];
        for op in cl.pending.values() {
            if let Op::Delete(p) = op {
                self.acked.remove(p);
            }
        }
        cl.pending.clear();
        cl.conn = None;
        cl.rx = None;
        cl.session = None;
        cl.touch = None;
        cl.watch = None;
    }

    fn half_tick(&mut self) {
        self.clock.advance(TICK_MS / 2);
        let now = self.shared.now_ms();
        for cl in &self.clients {
            if let Some(t) = &cl.touch {
                t.store(now, Ordering::Relaxed);
            }
        }
        self.p().tick();
    }

    fn crash(&mut self) {
        self.crashes += 1;
        let seed = self.rng.random();
        self.disk.crash();
        drop(self.pipeline.take().map(|p| p.finish()));
        self.disk = self.disk.crash_image(seed);
        // A reboot takes time (session ids are made from the clock, as ZooKeeper's are: a
        // restart within the same millisecond could hand out a closed session's id again).
        self.clock.advance(self.rng.random_range(1..=TICK_MS / 2));
        for c in 0..CLIENTS {
            // A delete not acknowledged may or may not have reached the disk.
            if let Some(s) = self.clients[c].session {
                self.orphaned.insert(s);
            }
            self.forget(c);
        }
        let (shared, pipeline, rx) = open(&self.disk, self.strategy, &self.clock, self.seed);
        self.shared = shared;
        self.pipeline = Some(pipeline);
        self._durable = rx;
        self.check_durable("after a crash");
    }

    fn exists(&self, path: &str) -> bool {
        self.shared.view.read().unwrap().node(path).is_some()
    }

    fn check_durable(&self, when: &str) {
        let seed = self.seed;
        for p in &self.acked {
            assert!(
                self.exists(p),
                "seed {seed}: acknowledged {p} (at {:#x}) missing {when}; the state is at {:#x}, crash {}, strategy {:?}",
                self.acked_at.get(p).copied().unwrap_or(-1),
                self.shared.last_zxid.load(Ordering::Acquire),
                self.crashes,
                self.strategy
            );
        }
        for p in &self.deleted {
            if !self.acked.contains(p) {
                assert!(!self.exists(p), "seed {seed}: deleted {p} is back {when}");
            }
        }
        for (a, b) in &self.multis {
            assert_eq!(self.exists(a), self.exists(b), "seed {seed}: half a multi {when}: {a}");
        }
        let view = self.shared.view.read().unwrap().clone();
        let sessions = self.shared.sessions.lock().unwrap().clone();
        for (p, s) in &self.ephemerals {
            // An acknowledged ephemeral stands while its session does (across a crash too:
            // sessions are restored from the disk, with a full timeout to come back).
            if sessions.contains_key(s) {
                assert!(
                    view.node(p).is_some(),
                    "seed {seed}: ephemeral {p} of live {s:#x} missing {when}"
                );
            } else {
                assert!(
                    view.node(p).is_none(),
                    "seed {seed}: ephemeral {p} of ended {s:#x} remains {when}"
                );
            }
        }
        for s in &self.closed {
            assert!(
                view.ephemerals(*s).is_empty(),
                "seed {seed}: ephemerals of closed session {s:#x} {when}"
            );
        }
    }
}

fn open(
    disk: &SimVfs,
    strategy: FlushStrategy,
    clock: &Arc<ManualClock>,
    seed: u64,
) -> (Arc<Shared>, Pipeline, mpsc::Receiver<Input>) {
    let config = Config::default_standalone();
    let settings = Settings::from_config(&config);
    let shared =
        Arc::new(Shared::with_clock(settings, config, TreeOptions::default(), clock.clone()));
    let (db, state, _) = Database::open(db_options(disk, strategy))
        .unwrap_or_else(|e| panic!("seed {seed}: recovery failed: {e}"));
    let (tx, rx) = mpsc::channel();
    let mut p = Pipeline::new(shared.clone(), db, state, tx).expect("pipeline");
    p.begin();
    (shared, p, rx)
}

fn run(seed: u64) -> (u64, u64, u64, u64) {
    let mut w = World::new(seed);
    // /shared, for setData and watches.
    w.connect(0);
    let open = vec![Acl { perms: 31, id: Id { scheme: "world".into(), id: "anyone".into() } }];
    let r = CreateRequest { path: "/shared".into(), data: Data::empty(), acl: open, flags: 0 };
    w.send(0, Request::Create(r), Op::Create("/shared".into()));
    w.p().flush_log();
    w.drain();
    for _ in 0..500 {
        match w.rng.random_range(0..100) {
            0..55 => {
                let c = w.rng.random_range(0..CLIENTS);
                w.client_op(c);
            }
            55..80 => w.p().flush_log(),
            80..96 => w.half_tick(),
            96..98 => w.crash(),
            _ => {}
        }
        w.drain();
        if w.p().failure().is_some() {
            panic!("seed {seed}: storage failed: {:?}", w.p().failure());
        }
    }
    // Quiet: everything durable; sessions of earlier incarnations expire.
    w.p().flush_log();
    w.drain();
    for _ in 0..8 {
        w.half_tick();
        w.p().flush_log();
        w.drain();
    }
    w.check_durable("at the end");
    let view = w.shared.view.read().unwrap().clone();
    for s in &w.orphaned {
        assert!(
            view.ephemerals(*s).is_empty(),
            "seed {seed}: session {s:#x} of a crashed incarnation kept its ephemerals"
        );
    }
    assert!(
        w.clients.iter().all(|c| c.pending.is_empty() || c.conn.is_none()),
        "seed {seed}: unanswered requests"
    );
    (w.crashes, w.replies, w.events, w.acked.len() as u64)
}

#[test]
fn client_workloads_survive_crashes_through_the_production_pipeline() {
    let seeds: u64 =
        std::env::var("CORRAL_WORKLOAD_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(24);
    let (mut crashes, mut replies, mut events, mut acked) = (0, 0, 0, 0);
    for seed in 0..seeds {
        let (c, r, e, a) = run(seed);
        crashes += c;
        replies += r;
        events += e;
        acked += a;
    }
    eprintln!("{seeds} seeds: {crashes} crashes, {replies} replies, {events} watch events, {acked} acknowledged creates standing");
    assert!(crashes > 0 && replies > 0 && events > 0 && acked > 0);
}
