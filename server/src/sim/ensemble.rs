//! Client workloads against an ensemble of production pipelines, under faults.
//!
//! The replica simulator ([`super::run_seed`]) drives replicas and judges the protocol: what
//! was committed, where, and when it was durable. This one runs the layer above, as a server
//! does: every member is a [`Pipeline::member`] (client connections, forwarding, per-connection
//! order, watches, reads behind writes, the session tracker) over its replica over the
//! production database on the engine's simulated disk. One seed drives an event queue with the
//! network between members (delays, FIFO per connection, partitions, connections broken and
//! sometimes never reported), log flushes (some slow), ticks, crashes that bring each disk back
//! as a reboot finds it, and three clients that connect to a serving member, create sessions,
//! persistent and ephemeral nodes, multis, setData, deletes, watches, syncs and closeSession,
//! and move to another member when theirs goes away.
//!
//! Judged from the clients' side, at the step where it could break:
//! * replies on a connection come in request order, and their zxids never go back;
//! * a read after a sync sees every setData acknowledged (to any client) before the sync was
//!   sent (linearizable reads through sync), and a plain read sees the session's own
//!   acknowledged writes;
//! * a watch fires before its connection sees the new data (a reply showing a newer version
//!   of the watched node while the watch is still armed is a violation);
//! * at the end, after a quiet phase: one established leader, every member serving with the
//!   same last zxid and tree digest; every acknowledged create and multi is on every member, and
//!   no acknowledged delete is undone; a multi is all or nothing everywhere; no ephemeral
//!   belongs to a session that was closed or whose client went away long enough ago to have
//!   expired; acknowledged ephemerals of the clients' current sessions are there; every request
//!   on a live connection has been answered.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Instant;

use corral_engine::io::SimVfs;
use corral_engine::log::FlushStrategy;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::Config;
use crate::db::Database;
use crate::pipeline::{
    answer_locally, behind_client, Conn, Input, ManualClock, NetOut, Out, Pipeline, ReadJob,
    Settings, Shared,
};
use crate::proto::{
    Acl, CreateRequest, Data, DeleteRequest, Id, MultiOp, PathRequest, PathWatchRequest, Request,
    Response, SetDataRequest,
};
use crate::tree::TreeOptions;
use crate::zab::{Command, Event, PeerConfig, Role, Sid};

const TICK_MS: u64 = 100;
const CLIENTS: usize = 3;
const SESSION_TIMEOUT_MS: i32 = 1_000;
/// A client gone this long (ms) has had its session expired by the end of a run.
const EXPIRED_BY_MS: u64 = 3_000;

/// What to simulate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnsembleOptions {
    /// Voting members.
    pub peers: usize,
    /// Observers.
    pub observers: usize,
    /// Simulated time with faults (ms).
    pub fault_ms: u64,
    /// Simulated time without faults after that (ms).
    pub quiet_ms: u64,
    /// Inject faults.
    pub faults: bool,
    /// Print roles, faults and client events to stderr.
    pub trace: bool,
    /// The leader's bound on proposals in flight (`PeerConfig::outstanding_max`).
    pub outstanding_max: usize,
}

impl Default for EnsembleOptions {
    fn default() -> Self {
        EnsembleOptions {
            peers: 3,
            observers: 0,
            fault_ms: 8_000,
            quiet_ms: 6_000,
            faults: true,
            trace: false,
            outstanding_max: PeerConfig::new([1], []).outstanding_max,
        }
    }
}

/// Counts of one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EnsembleCounters {
    /// Leaders established.
    pub leaders: u64,
    pub crashes: u64,
    pub partitions: u64,
    /// Sessions the clients got.
    pub sessions: u64,
    /// Replies the clients got (errors included).
    pub replies: u64,
    /// Writes acknowledged without error.
    pub acked_writes: u64,
    /// Reads after a sync checked against the acknowledged setData versions.
    pub sync_reads: u64,
    /// Watch events the clients got.
    pub watch_events: u64,
    /// Client connections that a member closed or lost.
    pub connections_lost: u64,
    /// Events handled.
    pub steps: u64,
    /// Pipeline batches of more than one network message.
    pub batches: u64,
    /// Sessions resumed on another member after their connection was lost, and resumptions
    /// refused (the session had expired).
    pub resumed: u64,
    pub resume_refused: u64,
    /// Steps after which a leader held clients' or learners' requests (it had
    /// `outstanding_max` proposals in flight).
    pub held_steps: u64,
}

impl EnsembleCounters {
    /// Adds another run's counts.
    pub fn add(&mut self, o: &EnsembleCounters) {
        self.leaders += o.leaders;
        self.crashes += o.crashes;
        self.partitions += o.partitions;
        self.sessions += o.sessions;
        self.replies += o.replies;
        self.acked_writes += o.acked_writes;
        self.sync_reads += o.sync_reads;
        self.watch_events += o.watch_events;
        self.connections_lost += o.connections_lost;
        self.steps += o.steps;
        self.batches += o.batches;
        self.resumed += o.resumed;
        self.resume_refused += o.resume_refused;
        self.held_steps += o.held_steps;
    }
}

/// The outcome of one seed.
#[derive(Debug, Clone)]
pub struct EnsembleReport {
    pub seed: u64,
    pub counters: EnsembleCounters,
    pub violations: Vec<String>,
}

/// Runs one seed; a panic inside (an assertion of the pipeline, the replica or the storage) is
/// reported as a violation.
pub fn run_ensemble_seed(seed: u64, opts: &EnsembleOptions) -> EnsembleReport {
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut w = World::new(seed, opts.clone());
        w.run();
        (w.counters, w.violations)
    }));
    match r {
        Ok((counters, violations)) => EnsembleReport { seed, counters, violations },
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            EnsembleReport {
                seed,
                counters: EnsembleCounters::default(),
                violations: vec![format!("panic: {msg}")],
            }
        }
    }
}

struct Member {
    sid: Sid,
    disk: SimVfs,
    shared: Option<Arc<Shared>>,
    pipeline: Option<Pipeline>,
    durable: Option<mpsc::Receiver<Input>>,
    /// Incarnation: events for an earlier one are dropped.
    inc: u64,
    role: Role,
}

impl Member {
    fn up(&self) -> bool {
        self.pipeline.is_some()
    }
}

#[derive(Debug, Clone)]
enum Op {
    Create(String),
    Ephemeral(String),
    Set,
    Delete(String),
    Multi(String, String),
    Watch,
    Sync,
    /// A read of /shared behind a sync; the floor is the highest setData version acknowledged
    /// to anyone when the sync was sent.
    ReadAfterSync(i32),
    Read,
    Close,
}

struct Connection {
    member: usize,
    inc: u64,
    conn: Arc<Conn>,
    rx: tokio::sync::mpsc::UnboundedReceiver<Out>,
}

/// Where a member answers a createSession: the session id and its touch cell, or refused.
type SessionAnswer = tokio::sync::oneshot::Receiver<Option<(i64, Arc<AtomicU64>)>>;

#[derive(Default)]
struct Client {
    conn: Option<Connection>,
    connecting: Option<(Connection, SessionAnswer)>,
    session: Option<i64>,
    touch: Option<Arc<AtomicU64>>,
    pending: BTreeMap<i32, Op>,
    xid: i32,
    last_reply_xid: i32,
    last_zxid: i64,
    /// A watch on /shared armed by a getData that saw this version, not fired yet.
    watch: Option<i32>,
    /// The highest /shared version this session wrote or read.
    seen_version: i32,
    /// Resuming the session on another member: the connection and the member's answer.
    resuming: Option<(Connection, ResumeAnswer)>,
    /// The session to resume when the client connects next (its connection was lost).
    resume: Option<i64>,
}

/// Where a member answers a resumed session: its touch cell, or refused.
type ResumeAnswer = tokio::sync::oneshot::Receiver<Option<Arc<AtomicU64>>>;

enum Ev {
    /// `late`: held back, after its connection closed, until the connection's late moment.
    Net {
        to: Sid,
        inc: u64,
        conn: Option<u64>,
        ev: Event,
        late: bool,
    },
    Flush {
        member: usize,
        inc: u64,
    },
    Tick {
        member: usize,
        inc: u64,
    },
    Client {
        c: usize,
    },
    Fault,
    Restart {
        member: usize,
    },
    Heal,
    Quiet,
}

struct Scheduled {
    at: u64,
    seq: u64,
    ev: Ev,
}
impl PartialEq for Scheduled {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

struct QuorumConn {
    id: u64,
    /// Delivery time of the last message each way (low→high, high→low): FIFO.
    last_at: [u64; 2],
}

struct World {
    opts: EnsembleOptions,
    rng: ChaCha8Rng,
    strategy: FlushStrategy,
    clock: Arc<ManualClock>,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    members: Vec<Member>,
    cfg: PeerConfig,
    conns: BTreeMap<(Sid, Sid), QuorumConn>,
    next_quorum_conn: u64,
    election_last: BTreeMap<(Sid, Sid), u64>,
    groups: Option<Vec<u8>>,
    faults_on: bool,
    quiet_at: u64,
    clients: Vec<Client>,
    next_conn: u64,
    /// Closed connections whose buffered packets stopped being delivered (see
    /// [`World::deliver_late`]).
    late_cut: std::collections::BTreeSet<u64>,
    /// When the buffered packets of other closed connections come through.
    late_at: BTreeMap<u64, u64>,
    /// How many packets of each closed connection are held for their late moment.
    late_held: BTreeMap<u64, usize>,
    made: u64,
    /// Acknowledged creates (persistent and multi halves) not deleted since.
    acked: BTreeSet<String>,
    /// Acknowledged deletes.
    deleted: BTreeSet<String>,
    /// Deletes sent and never answered: the node may or may not be there.
    unsure: BTreeSet<String>,
    multis: Vec<(String, String)>,
    /// Acknowledged ephemerals and their sessions.
    ephemerals: BTreeMap<String, i64>,
    closed: BTreeSet<i64>,
    /// Sessions whose client went away, and when.
    abandoned: BTreeMap<i64, u64>,
    /// The highest setData version of /shared acknowledged to anyone.
    acked_version: i32,
    counters: EnsembleCounters,
    violations: Vec<String>,
}

fn open_acl() -> Vec<Acl> {
    vec![Acl { perms: 31, id: Id { scheme: "world".into(), id: "anyone".into() } }]
}

impl World {
    fn new(seed: u64, opts: EnsembleOptions) -> World {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let strategy =
            if rng.random_bool(0.5) { FlushStrategy::Group } else { FlushStrategy::Direct };
        let voters = 1..=opts.peers as Sid;
        let observers = (opts.peers as Sid + 1)..=((opts.peers + opts.observers) as Sid);
        let mut cfg = PeerConfig::new(voters, observers);
        cfg.tick_ms = TICK_MS as u32;
        cfg.outstanding_max = opts.outstanding_max;
        // A small history window, so that learners coming back are sent SNAPs too.
        cfg.commit_log_count = rng.random_range(20..200);
        let members = (1..=(opts.peers + opts.observers) as Sid)
            .map(|sid| Member {
                sid,
                disk: SimVfs::new(),
                shared: None,
                pipeline: None,
                durable: None,
                inc: 0,
                role: Role::Looking,
            })
            .collect();
        let quiet_at = if opts.faults { opts.fault_ms } else { 0 };
        World {
            opts,
            rng,
            strategy,
            clock: Arc::new(ManualClock::new(1_700_000_000_000)),
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            members,
            cfg,
            conns: BTreeMap::new(),
            next_quorum_conn: 1,
            election_last: BTreeMap::new(),
            groups: None,
            faults_on: false,
            quiet_at,
            clients: (0..CLIENTS).map(|_| Client::default()).collect(),
            next_conn: 1,
            late_cut: std::collections::BTreeSet::new(),
            late_at: BTreeMap::new(),
            late_held: BTreeMap::new(),
            made: 0,
            acked: BTreeSet::new(),
            deleted: BTreeSet::new(),
            unsure: BTreeSet::new(),
            multis: Vec::new(),
            ephemerals: BTreeMap::new(),
            closed: BTreeSet::new(),
            abandoned: BTreeMap::new(),
            acked_version: -1,
            counters: EnsembleCounters::default(),
            violations: Vec::new(),
        }
    }

    fn trace(&self, msg: impl FnOnce() -> String) {
        if self.opts.trace {
            eprintln!("{:>6}ms {}", self.now, msg());
        }
    }

    fn fail(&mut self, msg: String) {
        self.trace(|| format!("VIOLATION {msg}"));
        self.violations.push(format!("t={}ms: {msg}", self.now));
    }

    fn at(&mut self, delay: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled { at: self.now + delay, seq: self.seq, ev }));
    }

    fn idx(sid: Sid) -> usize {
        (sid - 1) as usize
    }

    fn key(a: Sid, b: Sid) -> (Sid, Sid) {
        (a.min(b), a.max(b))
    }

    fn net_delay(&mut self) -> u64 {
        if self.faults_on && self.rng.random_bool(0.02) {
            self.rng.random_range(50..400)
        } else {
            self.rng.random_range(1..=20)
        }
    }

    fn reachable(&self, a: Sid, b: Sid) -> bool {
        let (ia, ib) = (Self::idx(a), Self::idx(b));
        self.members[ia].up()
            && self.members[ib].up()
            && self.groups.as_ref().is_none_or(|g| g[ia] == g[ib])
    }

    fn run(&mut self) {
        for i in 0..self.members.len() {
            self.start(i);
        }
        for c in 0..CLIENTS {
            let d = self.rng.random_range(0..100);
            self.at(d, Ev::Client { c });
        }
        if self.opts.faults {
            self.faults_on = true;
            self.at(300, Ev::Fault);
        }
        let quiet = self.quiet_at;
        self.seq += 1;
        self.queue.push(Reverse(Scheduled { at: quiet, seq: self.seq, ev: Ev::Quiet }));
        let end = self.quiet_at + self.opts.quiet_ms;
        while let Some(Reverse(s)) = self.queue.pop() {
            if s.at > end {
                break;
            }
            if s.at > self.now {
                self.clock.advance(s.at - self.now);
                self.now = s.at;
            }
            self.counters.steps += 1;
            if self.counters.steps > 5_000_000 {
                self.fail("step bound exceeded".into());
                return;
            }
            if let Ev::Net { to, .. } = &s.ev {
                // Messages reaching a member at the same moment are one batch of its pipeline,
                // as a server's pipeline thread takes whatever has queued up.
                let to = *to;
                let mut batch = vec![s.ev];
                while self.queue.peek().is_some_and(|Reverse(n)| {
                    n.at == s.at && matches!(&n.ev, Ev::Net { to: t, .. } if *t == to)
                }) {
                    let Some(Reverse(n)) = self.queue.pop() else { break };
                    batch.push(n.ev);
                }
                if batch.len() > 1 {
                    self.counters.batches += 1;
                }
                self.deliver_batch(to, batch);
                self.drain_clients();
                continue;
            }
            self.handle(s.ev);
            self.drain_clients();
        }
        if end > self.now {
            self.clock.advance(end - self.now);
            self.now = end;
        }
        self.final_checks();
    }

    fn start(&mut self, i: usize) {
        let m = &self.members[i];
        let sid = m.sid;
        let mut config = Config::default_standalone();
        config.tick_time_ms = TICK_MS as u32;
        config.min_session_timeout_ms = 2 * TICK_MS as u32;
        config.max_session_timeout_ms = 20 * TICK_MS as u32;
        let mut settings = Settings::from_config(&config);
        settings.server_id = sid;
        let shared = Arc::new(Shared::with_clock(
            settings,
            config,
            TreeOptions::default(),
            self.clock.clone(),
        ));
        let mut o = super::node::db_options(&m.disk, self.strategy);
        // Snapshots now and then, so recovery and SNAP start from one.
        o.snap_count = 60;
        o.snap_size_limit_kb = 4 * 1024 * 1024;
        let (db, state, _) = match Database::open(o) {
            Ok(x) => x,
            Err(e) => {
                self.fail(format!("member {sid} cannot recover: {e}"));
                return;
            }
        };
        let (tx, rx) = mpsc::channel();
        let mut p = match Pipeline::member(shared.clone(), db, state, tx, self.cfg.clone(), sid) {
            Ok(p) => p,
            Err(e) => {
                self.fail(format!("member {sid} cannot start: {e}"));
                return;
            }
        };
        p.begin();
        let m = &mut self.members[i];
        m.shared = Some(shared);
        m.pipeline = Some(p);
        m.durable = Some(rx);
        m.inc += 1;
        m.role = Role::Looking;
        let inc = m.inc;
        self.trace(|| format!("member {sid} starts"));
        let phase = self.rng.random_range(1..=TICK_MS / 2);
        self.at(phase, Ev::Tick { member: i, inc });
        let f = self.rng.random_range(1..=8);
        self.at(f, Ev::Flush { member: i, inc });
        self.collect(i);
    }

    fn crash(&mut self, i: usize) {
        if !self.members[i].up() {
            return;
        }
        self.counters.crashes += 1;
        let sid = self.members[i].sid;
        self.trace(|| format!("member {sid} crashes"));
        let seed = self.rng.random();
        let m = &mut self.members[i];
        m.disk.crash();
        drop(m.pipeline.take());
        m.shared = None;
        m.durable = None;
        m.disk = m.disk.crash_image(seed);
        m.role = Role::Looking;
        let keys: Vec<(Sid, Sid)> =
            self.conns.keys().filter(|(a, b)| *a == sid || *b == sid).copied().collect();
        for k in keys {
            self.close_conn(k);
        }
        for c in 0..CLIENTS {
            let on_it = self.clients[c].conn.as_ref().is_some_and(|x| x.member == i)
                || self.clients[c].connecting.as_ref().is_some_and(|x| x.0.member == i);
            if on_it {
                self.lose(c, "its member crashed");
            }
        }
        let delay = if self.faults_on { self.rng.random_range(100..2500) } else { 10 };
        self.at(delay, Ev::Restart { member: i });
    }

    /// Closes a quorum connection; each surviving side hears of it after a delay, or (30% of
    /// the time under faults) never, so that only its timeouts notice.
    fn close_conn(&mut self, key: (Sid, Sid)) {
        let Some(c) = self.conns.remove(&key) else { return };
        for (at, peer) in [(key.0, key.1), (key.1, key.0)] {
            let m = &self.members[Self::idx(at)];
            if !m.up() || (self.faults_on && self.rng.random_bool(0.3)) {
                continue;
            }
            let inc = self.members[Self::idx(at)].inc;
            let d = self.net_delay();
            self.at(
                d,
                Ev::Net {
                    to: at,
                    inc,
                    conn: None,
                    ev: Event::Disconnected { peer, conn: Some(c.id) },
                    late: false,
                },
            );
        }
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Net { to, .. } => self.deliver_batch(to, vec![ev]),
            Ev::Flush { member, inc } => {
                if self.members[member].inc != inc || !self.members[member].up() {
                    return;
                }
                if let Some(p) = self.members[member].pipeline.as_mut() {
                    p.flush_log();
                }
                self.after_step(member);
                let next = if self.faults_on && self.rng.random_bool(0.05) {
                    self.rng.random_range(20..150)
                } else {
                    self.rng.random_range(1..=8)
                };
                self.at(next, Ev::Flush { member, inc });
            }
            Ev::Tick { member, inc } => {
                if self.members[member].inc != inc || !self.members[member].up() {
                    return;
                }
                if let Some(p) = self.members[member].pipeline.as_mut() {
                    p.tick();
                }
                self.after_step(member);
                self.at(TICK_MS / 2, Ev::Tick { member, inc });
            }
            Ev::Client { c } => {
                if let Some(t) = &self.clients[c].touch {
                    t.store(self.now, Ordering::Relaxed);
                }
                if self.now + 1_500 < self.quiet_at + self.opts.quiet_ms {
                    self.client_act(c);
                }
                let d = self.rng.random_range(10..120);
                self.at(d, Ev::Client { c });
            }
            Ev::Fault => {
                if self.faults_on {
                    self.inject_fault();
                    let d = self.rng.random_range(200..1200);
                    self.at(d, Ev::Fault);
                }
            }
            Ev::Restart { member } => {
                if !self.members[member].up() {
                    self.start(member);
                }
            }
            Ev::Heal => {
                if self.groups.take().is_some() {
                    self.trace(|| "partition heals".into());
                }
            }
            Ev::Quiet => {
                self.faults_on = false;
                self.groups = None;
                self.trace(|| "quiet".into());
                for i in 0..self.members.len() {
                    if !self.members[i].up() {
                        self.at(10, Ev::Restart { member: i });
                    }
                }
            }
        }
    }

    /// Delivers network events that reach member `to` at one moment, as one pipeline batch.
    fn deliver_batch(&mut self, to: Sid, evs: Vec<Ev>) {
        let i = Self::idx(to);
        let mut inputs = Vec::with_capacity(evs.len());
        for e in evs {
            let Ev::Net { inc, conn, ev, late, .. } = e else { continue };
            let net_to = to;
            if self.members[i].inc != inc || !self.members[i].up() {
                continue;
            }
            if let Some(id) = conn {
                let from = match &ev {
                    Event::Packet { from, .. } | Event::Snapshot { from, .. } => *from,
                    Event::Connected { peer, .. } => *peer,
                    _ => 0,
                };
                if self.conns.get(&Self::key(from, to)).map(|c| c.id) != Some(id) {
                    let data = matches!(ev, Event::Packet { .. } | Event::Snapshot { .. });
                    let Some(at) = (if data { self.deliver_late(id) } else { None }) else {
                        continue;
                    };
                    let held = self.late_held.entry(id).or_insert(0);
                    if late && at <= self.now {
                        *held -= 1;
                    } else if at > self.now || *held > 0 {
                        // Held, in order behind what is held already.
                        *held += 1;
                        self.seq += 1;
                        let ev = Ev::Net { to: net_to, inc, conn, ev, late: true };
                        let at = at.max(self.now);
                        self.queue.push(Reverse(Scheduled { at, seq: self.seq, ev }));
                        continue;
                    }
                    self.trace(|| format!("member {to} still reads closed connection {id}"));
                }
            }
            if self.opts.trace {
                let what = match &ev {
                    Event::Packet { from, packet, .. } => {
                        format!("{:?} {:#x} from {from}", packet.kind, packet.zxid)
                    }
                    Event::Snapshot { from, body, .. } => {
                        format!("snapshot of {} bytes from {from}", body.bytes())
                    }
                    Event::Notification { .. } => String::new(),
                    other => format!("{other:?}"),
                };
                if !what.is_empty() {
                    self.trace(|| format!("member {to} gets {what}"));
                }
            }
            inputs.push(Input::Peer(ev));
        }
        if inputs.is_empty() {
            return;
        }
        let Some(p) = self.members[i].pipeline.as_mut() else { return };
        p.step_batch(inputs);
        self.after_step(i);
    }

    fn inject_fault(&mut self) {
        let n = self.members.len();
        match self.rng.random_range(0..100) {
            0..45 => {
                let i = self.rng.random_range(0..n);
                self.crash(i);
            }
            45..60 => {
                // Crash whoever leads.
                if let Some(i) = (0..n).find(|i| {
                    matches!(self.members[*i].role, Role::Leading { established: true, .. })
                }) {
                    self.crash(i);
                }
            }
            60..90 if self.groups.is_none() => {
                self.counters.partitions += 1;
                let groups: Vec<u8> = if self.rng.random_bool(0.5) {
                    let alone = self.rng.random_range(0..n);
                    (0..n).map(|i| u8::from(i == alone)).collect()
                } else {
                    (0..n).map(|_| self.rng.random_range(0..2)).collect()
                };
                self.trace(|| format!("partition {groups:?}"));
                let keys: Vec<(Sid, Sid)> = self
                    .conns
                    .keys()
                    .filter(|(a, b)| groups[Self::idx(*a)] != groups[Self::idx(*b)])
                    .copied()
                    .collect();
                self.groups = Some(groups);
                for k in keys {
                    self.close_conn(k);
                }
                let d = self.rng.random_range(300..2500);
                self.at(d, Ev::Heal);
            }
            _ => {}
        }
    }

    /// Feeds a member's pipeline one input and carries out what it sends.
    fn step(&mut self, i: usize, input: Input) {
        let Some(p) = self.members[i].pipeline.as_mut() else { return };
        p.step(input);
        self.after_step(i);
    }

    fn after_step(&mut self, i: usize) {
        // What the log reported through its callback (durability), as the server's pipeline
        // thread receives it.
        loop {
            let m = &mut self.members[i];
            let Some(input) = m.durable.as_ref().and_then(|rx| rx.try_recv().ok()) else {
                break;
            };
            let Some(p) = m.pipeline.as_mut() else { break };
            p.step(input);
        }
        let Some(p) = self.members[i].pipeline.as_ref() else { return };
        if let Some(f) = p.failure() {
            // Only an armed disk could fail; none is armed here.
            let msg = format!("member {} stopped: {f}", self.members[i].sid);
            self.fail(msg);
            self.crash(i);
            return;
        }
        if p.stalled() > 0 || p.replica().held() > 0 {
            self.counters.held_steps += 1;
        }
        let role = p.role();
        if role != self.members[i].role {
            let sid = self.members[i].sid;
            if matches!(role, Role::Leading { established: true, .. }) {
                self.counters.leaders += 1;
            }
            self.trace(|| format!("member {sid}: {role:?}"));
            self.members[i].role = role;
        }
        self.collect(i);
    }

    /// Carries a member's network traffic.
    fn collect(&mut self, i: usize) {
        let Some(p) = self.members[i].pipeline.as_mut() else { return };
        let out = p.take_network();
        let from = self.members[i].sid;
        for o in out {
            match o {
                NetOut::Command(Command::SendNotification { to, n }) => {
                    if !self.reachable(from, to) || (self.faults_on && self.rng.random_bool(0.03)) {
                        continue;
                    }
                    let d = self.net_delay();
                    let last = self.election_last.entry((from, to)).or_insert(0);
                    let at = (*last).max(self.now + d);
                    *last = at;
                    let inc = self.members[Self::idx(to)].inc;
                    self.seq += 1;
                    let ev = Ev::Net {
                        to,
                        inc,
                        conn: None,
                        ev: Event::Notification { from, n },
                        late: false,
                    };
                    self.queue.push(Reverse(Scheduled { at, seq: self.seq, ev }));
                }
                NetOut::Command(Command::Connect { to }) => {
                    let k = Self::key(from, to);
                    if self.conns.contains_key(&k) || !self.reachable(from, to) {
                        continue;
                    }
                    let id = self.next_quorum_conn;
                    self.next_quorum_conn += 1;
                    let d = self.net_delay();
                    let at = self.now + d;
                    self.conns.insert(k, QuorumConn { id, last_at: [at, at] });
                    for (side, peer) in [(to, from), (from, to)] {
                        let inc = self.members[Self::idx(side)].inc;
                        self.seq += 1;
                        let ev = Ev::Net {
                            to: side,
                            inc,
                            conn: Some(id),
                            ev: Event::Connected { peer, conn: id },
                            late: false,
                        };
                        self.queue.push(Reverse(Scheduled { at, seq: self.seq, ev }));
                    }
                }
                NetOut::Command(Command::Disconnect { peer, conn }) => {
                    let k = Self::key(from, peer);
                    let Some(c) = self.conns.get(&k) else { continue };
                    if conn.is_some_and(|x| x != c.id) {
                        continue;
                    }
                    let id = c.id;
                    self.conns.remove(&k);
                    if self.members[Self::idx(peer)].up() {
                        let inc = self.members[Self::idx(peer)].inc;
                        let d = self.net_delay();
                        self.at(
                            d,
                            Ev::Net {
                                to: peer,
                                inc,
                                conn: None,
                                ev: Event::Disconnected { peer: from, conn: Some(id) },
                                late: false,
                            },
                        );
                    }
                }
                NetOut::Command(Command::Send { to, packet }) => {
                    self.send_quorum(from, to, |conn| Event::Packet { from, conn, packet });
                }
                NetOut::Snapshot { to, zxid, state } => {
                    // Read back here as the learner's network reader reads it off its socket.
                    match crate::sim::snap_payload(zxid, &state) {
                        Ok(body) => {
                            self.send_quorum(from, to, |conn| Event::Snapshot { from, conn, body })
                        }
                        Err(e) => self.fail(format!("member {from}: a SNAP payload: {e}")),
                    }
                }
                NetOut::Command(other) => {
                    self.fail(format!("member {from} sent {other:?} as network traffic"));
                }
            }
        }
    }

    /// When a packet of connection `id`, closed since it was sent (to the same incarnation of
    /// its receiver, which the caller checked), still arrives: a server's reader goes on
    /// delivering what its socket had buffered after the connection closed, even once a
    /// newer connection with the same peer is up (a reader thread descheduled for a while).
    /// Each closed connection either delivers what was on its way at a moment up to 400 ms
    /// later, or nothing more.
    fn deliver_late(&mut self, id: u64) -> Option<u64> {
        if self.late_cut.contains(&id) {
            return None;
        }
        if let Some(at) = self.late_at.get(&id) {
            return Some(*at);
        }
        if self.rng.random_bool(0.3) {
            self.late_cut.insert(id);
            return None;
        }
        let at = self.now + self.rng.random_range(0..400);
        self.late_at.insert(id, at);
        Some(at)
    }

    fn send_quorum(&mut self, from: Sid, to: Sid, ev: impl FnOnce(u64) -> Event) {
        let k = Self::key(from, to);
        let d = self.net_delay();
        let now = self.now;
        let Some(c) = self.conns.get_mut(&k) else { return };
        let dir = usize::from(from > to);
        let at = c.last_at[dir].max(now + d);
        c.last_at[dir] = at;
        let id = c.id;
        let inc = self.members[Self::idx(to)].inc;
        self.seq += 1;
        let ev = Ev::Net { to, inc, conn: Some(id), ev: ev(id), late: false };
        self.queue.push(Reverse(Scheduled { at, seq: self.seq, ev }));
    }

    fn serving(&self, i: usize) -> bool {
        self.members[i].up()
            && matches!(
                self.members[i].role,
                Role::Leading { established: true, .. }
                    | Role::Following { serving: true, .. }
                    | Role::Observing { serving: true, .. }
            )
    }

    /// A new connection to member `i`, registered as the server's network layer does.
    fn open_conn(&mut self, i: usize) -> Connection {
        let shared = self.members[i].shared.clone().expect("up");
        let (out_tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let remote: SocketAddr = "127.0.0.1:1".parse().expect("an address");
        let id = self.next_conn;
        self.next_conn += 1;
        let conn = Arc::new(Conn::new(id, remote, out_tx, shared.now_ms(), 1 << 24));
        shared.conns.lock().unwrap_or_else(|p| p.into_inner()).insert(id, conn.clone());
        Connection { member: i, inc: self.members[i].inc, conn, rx }
    }

    fn client_act(&mut self, c: usize) {
        if self.clients[c].connecting.is_some() || self.clients[c].resuming.is_some() {
            return;
        }
        if self.clients[c].conn.is_none() {
            // A member behind what the client has seen refuses it (the connection layer's
            // rule), and the client tries another.
            let seen = self.clients[c].last_zxid;
            let candidates: Vec<usize> = (0..self.members.len())
                .filter(|i| self.serving(*i))
                .filter(|i| {
                    self.members[*i].shared.as_ref().is_some_and(|sh| !behind_client(sh, seen))
                })
                .collect();
            if candidates.is_empty() {
                return;
            }
            let i = candidates[self.rng.random_range(0..candidates.len())];
            if let Some(session) = self.clients[c].resume.take() {
                let cn = self.open_conn(i);
                let (done, rx) = tokio::sync::oneshot::channel();
                let conn = cn.conn.clone();
                self.clients[c].resuming = Some((cn, rx));
                self.clients[c].session = Some(session);
                self.trace(|| format!("client {c} resumes {session:#x} on member {}", i + 1));
                self.step(
                    i,
                    Input::Reconnect {
                        conn,
                        session_id: session,
                        passwd: crate::session::ids::session_password(session).to_vec(),
                        timeout_ms: SESSION_TIMEOUT_MS,
                        read_only: None,
                        done,
                    },
                );
                return;
            }
            let cn = self.open_conn(i);
            let (done, rx) = tokio::sync::oneshot::channel();
            let conn = cn.conn.clone();
            self.clients[c].connecting = Some((cn, rx));
            self.step(
                i,
                Input::CreateSession {
                    conn,
                    timeout_ms: SESSION_TIMEOUT_MS,
                    read_only: None,
                    done,
                },
            );
            return;
        }
        self.made += 1;
        let n = self.made;
        let data = Data::from(n.to_be_bytes().to_vec());
        if !self.acked.contains("/shared") {
            // The node every setData, watch and read is about (NODEEXISTS once it is there).
            let r = CreateRequest { path: "/shared".into(), data, acl: open_acl(), flags: 0 };
            self.send(c, Request::Create(r), Op::Create("/shared".into()));
            return;
        }
        let create = |path: &str, flags: i32| CreateRequest {
            path: path.into(),
            data: data.clone(),
            acl: open_acl(),
            flags,
        };
        match self.rng.random_range(0..100) {
            0..25 => {
                let path = format!("/p{c}-{n}");
                self.send(c, Request::Create(create(&path, 0)), Op::Create(path));
            }
            25..35 => {
                let path = format!("/e{c}-{n}");
                self.send(c, Request::Create(create(&path, 1)), Op::Ephemeral(path));
            }
            35..52 => {
                let r = SetDataRequest { path: "/shared".into(), data: data.clone(), version: -1 };
                self.send(c, Request::SetData(r), Op::Set);
            }
            52..58 => {
                let prefix = format!("/p{c}-");
                let mine: Vec<String> =
                    self.acked.iter().filter(|p| p.starts_with(&prefix)).cloned().collect();
                if !mine.is_empty() {
                    let path = mine[self.rng.random_range(0..mine.len())].clone();
                    // Until it is answered, the node may or may not be there.
                    self.acked.remove(&path);
                    self.unsure.insert(path.clone());
                    let r = DeleteRequest { path: path.clone(), version: -1 };
                    self.send(c, Request::Delete(r), Op::Delete(path));
                }
            }
            58..66 => {
                let (a, b) = (format!("/m{c}-{n}-a"), format!("/m{c}-{n}-b"));
                self.multis.push((a.clone(), b.clone()));
                let ops = vec![MultiOp::Create(create(&a, 0)), MultiOp::Create(create(&b, 0))];
                self.send(c, Request::Multi(ops), Op::Multi(a, b));
            }
            66..76 if self.clients[c].watch.is_none() => {
                let r = PathWatchRequest { path: "/shared".into(), watch: true };
                self.send(c, Request::GetData(r), Op::Watch);
            }
            66..88 => {
                let floor = self.acked_version;
                self.send(c, Request::Sync(PathRequest { path: "/shared".into() }), Op::Sync);
                let r = PathWatchRequest { path: "/shared".into(), watch: false };
                self.send(c, Request::GetData(r), Op::ReadAfterSync(floor));
            }
            88..97 => {
                let r = PathWatchRequest { path: "/shared".into(), watch: false };
                self.send(c, Request::GetData(r), Op::Read);
            }
            97..99 => self.send(c, Request::CloseSession, Op::Close),
            _ => {}
        }
    }

    fn send(&mut self, c: usize, req: Request, op: Op) {
        let Some(cn) = self.clients[c].conn.as_ref() else { return };
        let (i, conn) = (cn.member, cn.conn.clone());
        let Some(shared) = self.members[i].shared.clone() else { return };
        let cl = &mut self.clients[c];
        cl.xid += 1;
        let xid = cl.xid;
        cl.pending.insert(xid, op);
        let auth = Arc::new(vec![Id { scheme: "ip".into(), id: "127.0.0.1".into() }]);
        // What the server's connection layer answers itself (a read of an idle connection),
        // it answers here too, by the same function.
        let job = ReadJob { xid, req: &req, auth: &auth, received: Instant::now() };
        if answer_locally(&shared, &conn, job) {
            self.trace(|| {
                format!("client {c}: xid {xid} answered by member {}'s connection layer", i + 1)
            });
            return;
        }
        conn.pending.fetch_add(1, Ordering::AcqRel);
        shared.outstanding.fetch_add(1, Ordering::AcqRel);
        let opcode = req.opcode();
        self.trace(|| format!("client {c}: xid {xid} {opcode:?} to member {}", i + 1));
        self.step(i, Input::Request { conn, xid, op: opcode, req, auth, received: Instant::now() });
    }

    /// The client's connection is gone (closed by its member, or the member crashed): what it
    /// had asked may or may not have been done.
    fn lose(&mut self, c: usize, why: &str) {
        self.lose_with(c, why, true);
    }

    /// The client's connection is gone; `may_resume`: the client may try its session on
    /// another member (not after the member ended the session).
    fn lose_with(&mut self, c: usize, why: &str, may_resume: bool) {
        let resume = may_resume && self.rng.random_bool(0.7);
        let cl = &mut self.clients[c];
        let mut gone = None;
        if let Some(cn) = cl
            .conn
            .take()
            .or_else(|| cl.connecting.take().map(|x| x.0))
            .or_else(|| cl.resuming.take().map(|x| x.0))
        {
            gone = Some((cn.member, cn.inc, cn.conn.id));
        }
        cl.connecting = None;
        cl.resuming = None;
        cl.pending.clear();
        cl.watch = None;
        cl.touch = None;
        cl.last_reply_xid = 0;
        let session = cl.session.take();
        if let Some(s) = session {
            if resume {
                cl.resume = Some(s);
            }
            // Until it is resumed, the session must expire like any other left behind.
            self.abandoned.insert(s, self.now);
        }
        self.counters.connections_lost += 1;
        self.trace(|| format!("client {c} loses its connection ({why})"));
        // The member's network layer reports the closed connection.
        if let Some((i, inc, conn_id)) = gone {
            if self.members[i].inc == inc && self.members[i].up() {
                if let Some(sh) = self.members[i].shared.as_ref() {
                    sh.conns.lock().unwrap_or_else(|p| p.into_inner()).remove(&conn_id);
                }
                self.step(i, Input::ConnClosed { conn_id, session_id: session.unwrap_or(0) });
            }
        }
    }

    fn drain_clients(&mut self) {
        for c in 0..CLIENTS {
            // A session being resumed on another member.
            if let Some((_, rx)) = self.clients[c].resuming.as_mut() {
                match rx.try_recv() {
                    Ok(Some(touch)) => {
                        let (cn, _) = self.clients[c].resuming.take().expect("resuming");
                        self.counters.resumed += 1;
                        let cl = &mut self.clients[c];
                        cl.conn = Some(cn);
                        cl.touch = Some(touch);
                        let s = cl.session.unwrap_or(0);
                        self.abandoned.remove(&s);
                        self.trace(|| format!("client {c}: resumed {s:#x}"));
                    }
                    Ok(None) | Err(tokio::sync::oneshot::error::TryRecvError::Closed) => {
                        self.counters.resume_refused += 1;
                        self.lose_with(c, "resumption refused", false);
                        continue;
                    }
                    Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {}
                }
            }
            // A session being created.
            if let Some((_, rx)) = self.clients[c].connecting.as_mut() {
                match rx.try_recv() {
                    Ok(Some((session, touch))) => {
                        let (cn, _) = self.clients[c].connecting.take().expect("connecting");
                        self.counters.sessions += 1;
                        let cl = &mut self.clients[c];
                        cl.conn = Some(cn);
                        cl.session = Some(session);
                        cl.touch = Some(touch);
                        cl.seen_version = -1;
                        cl.last_zxid = 0;
                        self.trace(|| format!("client {c}: session {session:#x}"));
                    }
                    Ok(None) | Err(tokio::sync::oneshot::error::TryRecvError::Closed) => {
                        self.lose(c, "session refused");
                        continue;
                    }
                    Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {}
                }
            }
            let Some(cn) = self.clients[c].conn.as_mut() else { continue };
            let mut got = Vec::new();
            while let Ok(o) = cn.rx.try_recv() {
                got.push(o);
            }
            let killed = *cn.conn.kill.borrow();
            for o in got {
                if self.clients[c].conn.is_none() {
                    break;
                }
                match o {
                    Out::Reply { reply, .. } => {
                        self.on_reply(c, reply.xid, reply.zxid, reply.err.code(), reply.body)
                    }
                    Out::Frame(f) if f.len() > 8 && f[4..8] == [0xff; 4] => self.on_event(c),
                    Out::Shared(f) if f.len() > 8 && f[4..8] == [0xff; 4] => self.on_event(c),
                    Out::Close => {
                        self.lose(c, "closed by its member");
                        break;
                    }
                    _ => {}
                }
            }
            if killed && self.clients[c].conn.is_some() {
                // The member ended the session (expired or closed): nothing to resume.
                self.lose_with(c, "killed by its member", false);
            }
        }
    }

    fn on_event(&mut self, c: usize) {
        self.counters.watch_events += 1;
        self.clients[c].watch = None;
    }

    fn on_reply(&mut self, c: usize, xid: i32, zxid: i64, err: i32, body: Response) {
        self.counters.replies += 1;
        self.trace(|| {
            let v = match &body {
                Response::Stat(r) => format!(" version {}", r.stat.version),
                Response::GetData(r) => format!(" version {}", r.stat.version),
                _ => String::new(),
            };
            format!("client {c}: reply xid {xid} err {err} zxid {zxid:#x}{v}")
        });
        let cl = &mut self.clients[c];
        let Some(op) = cl.pending.remove(&xid) else {
            let msg = format!("client {c}: a reply to xid {xid}, which it is not waiting for");
            self.fail(msg);
            return;
        };
        if xid <= cl.last_reply_xid {
            let last = cl.last_reply_xid;
            self.fail(format!("client {c}: reply to xid {xid} after the reply to {last}"));
            return;
        }
        let cl = &mut self.clients[c];
        cl.last_reply_xid = xid;
        if zxid >= 0 && zxid < cl.last_zxid {
            let last = cl.last_zxid;
            self.fail(format!(
                "client {c}: zxid went back from {last:#x} to {zxid:#x} (xid {xid})"
            ));
        }
        let cl = &mut self.clients[c];
        cl.last_zxid = cl.last_zxid.max(zxid);
        if err == -110 && matches!(&op, Op::Create(p) if p == "/shared") {
            self.acked.insert("/shared".into());
        }
        if err != 0 {
            if let Op::Delete(p) = &op {
                // Only this delete could have removed a node whose create was acknowledged.
                if err == -101 {
                    self.fail(format!("client {c}: delete of acknowledged {p} found no node"));
                }
            }
            return;
        }
        match op {
            Op::Create(p) => {
                self.counters.acked_writes += 1;
                self.acked.insert(p);
            }
            Op::Ephemeral(p) => {
                self.counters.acked_writes += 1;
                if let Some(s) = self.clients[c].session {
                    self.ephemerals.insert(p, s);
                }
            }
            Op::Delete(p) => {
                self.counters.acked_writes += 1;
                self.unsure.remove(&p);
                self.deleted.insert(p);
            }
            Op::Multi(a, b) => {
                self.counters.acked_writes += 1;
                self.acked.insert(a);
                self.acked.insert(b);
            }
            Op::Set => {
                self.counters.acked_writes += 1;
                if let Response::Stat(s) = body {
                    let v = s.stat.version;
                    self.acked_version = self.acked_version.max(v);
                    let cl = &mut self.clients[c];
                    cl.seen_version = cl.seen_version.max(v);
                }
            }
            Op::Watch | Op::Read | Op::ReadAfterSync(_) => {
                let Response::GetData(r) = body else {
                    self.fail(format!("client {c}: getData answered {body:?}"));
                    return;
                };
                let v = r.stat.version;
                let cl = &mut self.clients[c];
                if let Some(w) = cl.watch {
                    if v > w {
                        self.fail(format!(
                            "client {c}: read version {v} of /shared with its watch (set at version {w}) not fired"
                        ));
                    }
                }
                let cl = &mut self.clients[c];
                if v < cl.seen_version {
                    let seen = cl.seen_version;
                    self.fail(format!(
                        "client {c}: read version {v} of /shared after its session saw {seen}"
                    ));
                }
                if let Op::ReadAfterSync(floor) = op {
                    self.counters.sync_reads += 1;
                    if v < floor {
                        self.fail(format!(
                            "client {c}: read version {v} after a sync, but version {floor} was acknowledged before the sync"
                        ));
                    }
                }
                let cl = &mut self.clients[c];
                cl.seen_version = cl.seen_version.max(v);
                if matches!(op, Op::Watch) {
                    cl.watch = Some(v);
                }
            }
            Op::Sync => {}
            Op::Close => {
                let cl = &mut self.clients[c];
                if let Some(s) = cl.session.take() {
                    self.closed.insert(s);
                }
                // The member closes the connection after the reply.
                cl.pending.clear();
                cl.touch = None;
                cl.watch = None;
                if let Some(cn) = cl.conn.take() {
                    if self.members[cn.member].inc == cn.inc {
                        if let Some(sh) = self.members[cn.member].shared.as_ref() {
                            sh.conns.lock().unwrap_or_else(|p| p.into_inner()).remove(&cn.conn.id);
                        }
                        self.step(
                            cn.member,
                            Input::ConnClosed { conn_id: cn.conn.id, session_id: 0 },
                        );
                    }
                }
            }
        }
    }

    fn final_checks(&mut self) {
        let leaders: Vec<usize> = (0..self.members.len())
            .filter(|i| matches!(self.members[*i].role, Role::Leading { established: true, .. }))
            .collect();
        if leaders.len() != 1 {
            let states: Vec<String> = self
                .members
                .iter()
                .map(|m| match &m.pipeline {
                    Some(p) => {
                        let r = p.replica();
                        format!(
                            "{}: {:?} last {:#x} durable {:#x} (peer: {:#x}) epochs {}/{}",
                            m.sid,
                            m.role,
                            r.peer().last_zxid(),
                            r.durable(),
                            r.peer().last_durable(),
                            r.peer().accepted_epoch(),
                            r.peer().current_epoch()
                        )
                    }
                    None => format!("{}: down", m.sid),
                })
                .collect();
            self.fail(format!("{} established leaders at the end; {states:?}", leaders.len()));
            return;
        }
        let l = leaders[0];
        let Some(lshared) = self.members[l].shared.clone() else { return };
        let lview = lshared.view.read().unwrap_or_else(|p| p.into_inner()).clone();
        let lzxid = lshared.last_zxid.load(Ordering::Acquire);
        for i in 0..self.members.len() {
            let sid = self.members[i].sid;
            if !self.serving(i) {
                let role = self.members[i].role;
                self.fail(format!("member {sid} not serving at the end: {role:?}"));
                continue;
            }
            let shared = self.members[i].shared.clone().expect("up");
            let view = shared.view.read().unwrap_or_else(|p| p.into_inner()).clone();
            let z = shared.last_zxid.load(Ordering::Acquire);
            if z != lzxid || view.digest() != lview.digest() {
                self.fail(format!(
                    "member {sid} ends at {z:#x} (digest {:#x}), the leader at {lzxid:#x} (digest {:#x})",
                    view.digest(),
                    lview.digest()
                ));
            }
            for p in &self.acked {
                if !view.exists(p) {
                    self.violations.push(format!("member {sid} lacks acknowledged {p}"));
                }
            }
            for p in &self.deleted {
                if view.exists(p) && !self.acked.contains(p) {
                    self.violations.push(format!("member {sid}: deleted {p} is back"));
                }
            }
            for (a, b) in &self.multis {
                if view.exists(a) != view.exists(b) {
                    self.violations.push(format!("member {sid} holds half a multi ({a})"));
                }
            }
            for s in view.sessions_with_ephemerals() {
                let current = self.clients.iter().any(|c| c.session == Some(s));
                let gone_at = self.abandoned.get(&s).copied();
                if self.closed.contains(&s) {
                    self.violations
                        .push(format!("member {sid}: closed session {s:#x} keeps ephemerals"));
                } else if !current && gone_at.is_some_and(|t| t + EXPIRED_BY_MS <= self.now) {
                    self.violations.push(format!(
                        "member {sid}: session {s:#x}, gone since {}ms, keeps ephemerals",
                        gone_at.unwrap_or(0)
                    ));
                }
            }
            for (p, s) in &self.ephemerals {
                let current = self.clients.iter().any(|c| c.session == Some(*s));
                if current && !view.exists(p) {
                    self.violations.push(format!(
                        "member {sid}: ephemeral {p} of live session {s:#x} missing"
                    ));
                }
            }
        }
        for (c, cl) in self.clients.iter().enumerate() {
            if cl.conn.is_some() && !cl.pending.is_empty() {
                let xids: Vec<&i32> = cl.pending.keys().collect();
                self.violations.push(format!("client {c}: requests {xids:?} never answered"));
            }
        }
    }
}
