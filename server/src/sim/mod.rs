//! The deterministic simulator: an ensemble of [`crate::zab::Peer`]s, each on a simulated disk
//! (the engine's fault-injecting [`corral_engine::io::SimVfs`]), connected by a simulated network,
//! written to by simulated clients, all driven from one seed. Safety is checked at every step
//! ([`check`]); after the fault phase, liveness and the final state are checked.
//!
//! Fault model (see `docs/consensus.md`):
//! * Network: every message is delayed (1–20 ms, sometimes up to 400 ms). Quorum connections are
//!   TCP-like: in order, no loss, no duplication within a connection; a connection breaks on a
//!   partition, a crash or a close, dropping what is in flight, and the other side hears of it
//!   late or never (then only its timeouts notice). Election notifications are per-pair FIFO but
//!   may be dropped or duplicated (QuorumCnxManager re-sends its last message on reconnect).
//!   Partitions split the ensemble in two random groups or isolate one peer, and heal.
//! * Disks: a peer can crash at any event, or in the middle of any disk operation (the disk is
//!   armed to fail after a few more mutations); its disk then comes back as a reboot would find
//!   it (unsynced writes lost or kept at random, the last write possibly torn).
//! * Clients write (creates of unique paths) to any serving peer.
//!
//! Everything is a function of the seed: replay one with `corral-sim --seed S`.

pub mod check;
pub mod ensemble;
pub mod node;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use bytes::Bytes;
use corral_engine::io::sim::Faults;
use corral_engine::io::SimVfs;
use corral_engine::log::FlushStrategy;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::db::{ReceivedSnapshot, SnapReceiver, State};
use crate::proto::{Acl, CreateRequest, Data, Id, Jute, ReconfigRequest, SetDataRequest, Txn};
use crate::replica::{Output, Replica, Stored, OP_CLOSE_SESSION, OP_CREATE_SESSION};
use crate::zab::wire::{encode_i32, ForwardedRequest};
use crate::zab::{
    counter_of, Command, Event, Notification, PacketType, Peer, PeerConfig, QuorumPacket, Role,
    Sid, SyncPlan, Zxid,
};

use check::{hash_bytes, Checker};

/// A server's line in the simulated membership (the addresses are never dialled).
fn server_line(sid: Sid, observer: bool) -> String {
    let role = if observer { "observer" } else { "participant" };
    format!("server.{sid}=127.0.0.1:{}:{}:{role};127.0.0.1:{}", 2000 + sid, 3000 + sid, 4000 + sid)
}

/// Linux errno values the simulated disk fails with.
const EIO: i32 = 5;
const ENOSPC: i32 = 28;
use node::Mirror;

/// What to simulate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimOptions {
    /// Voting peers (3 or 5 in CI).
    pub peers: usize,
    /// Observers.
    pub observers: usize,
    /// Simulated time with faults (ms).
    pub fault_ms: u64,
    /// Simulated time without faults after that (ms): a leader must be established and every
    /// peer caught up by its end.
    pub quiet_ms: u64,
    /// A leader must be established within this long after the faults stop (ms).
    pub liveness_ms: u64,
    /// Bound on simulated events.
    pub max_steps: u64,
    /// Inject faults (off: a clean run).
    pub faults: bool,
    /// Print a trace of roles, syncs, commits and faults to stderr.
    pub trace: bool,
    /// Dynamic reconfiguration: reconfigEnabled, and clients' reconfig requests that move
    /// servers between voting and observing (at least two voters stay).
    pub reconfig: bool,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            peers: 3,
            observers: 0,
            fault_ms: 8_000,
            quiet_ms: 6_000,
            liveness_ms: 4_000,
            max_steps: 3_000_000,
            faults: true,
            trace: false,
            reconfig: false,
        }
    }
}

/// Counts of what happened in a run (summed over seeds by the binary).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub elections: u64,
    pub commits: u64,
    pub crashes: u64,
    pub torn_crashes: u64,
    /// I/O errors armed on a peer's disk (EIO/ENOSPC on a write or an fsync).
    pub io_errors_armed: u64,
    pub partitions: u64,
    pub client_acks: u64,
    pub sync_diff: u64,
    pub sync_trunc: u64,
    pub sync_trunc_diff: u64,
    pub sync_snap: u64,
    /// Syncs of each kind that completed: the learner reached UPTODATE after it.
    pub synced_diff: u64,
    pub synced_trunc: u64,
    pub synced_trunc_diff: u64,
    pub synced_snap: u64,
    pub steps: u64,
    /// Sessions created, expired by the leader, and revalidations answered invalid.
    pub sessions_created: u64,
    pub sessions_expired: u64,
    pub revalidations: u64,
    pub revalidations_refused: u64,
    /// Peers left out at the end because they accepted a higher epoch than the leader's (they
    /// refuse its LEADERINFO, as ZooKeeper's learners do, until leadership changes).
    pub stuck_on_accepted_epoch: u64,
    /// Acknowledgements (a follower's ACK, a leader's own ack counted in a commit) checked
    /// against the simulated disk's durable image: the txn must be on it.
    pub durable_image_checks: u64,
    /// Reconfig txns committed (memberships a leader activated from a txn), and hand-overs
    /// (a peer made leader by a reconfig without an election).
    pub reconfigs: u64,
    pub hand_overs: u64,
}

impl Counters {
    /// Adds another run's counts.
    pub fn add(&mut self, o: &Counters) {
        self.elections += o.elections;
        self.commits += o.commits;
        self.crashes += o.crashes;
        self.torn_crashes += o.torn_crashes;
        self.io_errors_armed += o.io_errors_armed;
        self.partitions += o.partitions;
        self.client_acks += o.client_acks;
        self.sync_diff += o.sync_diff;
        self.sync_trunc += o.sync_trunc;
        self.sync_trunc_diff += o.sync_trunc_diff;
        self.sync_snap += o.sync_snap;
        self.synced_diff += o.synced_diff;
        self.synced_trunc += o.synced_trunc;
        self.synced_trunc_diff += o.synced_trunc_diff;
        self.synced_snap += o.synced_snap;
        self.steps += o.steps;
        self.sessions_created += o.sessions_created;
        self.sessions_expired += o.sessions_expired;
        self.revalidations += o.revalidations;
        self.revalidations_refused += o.revalidations_refused;
        self.stuck_on_accepted_epoch += o.stuck_on_accepted_epoch;
        self.durable_image_checks += o.durable_image_checks;
        self.reconfigs += o.reconfigs;
        self.hand_overs += o.hand_overs;
    }
}

/// The outcome of one seed.
#[derive(Debug, Clone)]
pub struct SeedReport {
    pub seed: u64,
    pub counters: Counters,
    pub violations: Vec<String>,
}

/// The command line that replays one seed.
pub fn replay_command(seed: u64, opts: &SimOptions) -> String {
    let mut cmd = format!(
        "cargo run --release -p corral-server --bin corral-sim -- --seed {seed} --peers {} --observers {}",
        opts.peers, opts.observers
    );
    if opts.fault_ms != SimOptions::default().fault_ms {
        cmd.push_str(&format!(" --fault-ms {}", opts.fault_ms));
    }
    if opts.reconfig {
        cmd.push_str(" --reconfig");
    }
    cmd
}

/// Runs one seed.
/// Runs one seed. A panic inside the simulation (an assertion of the peer or of the storage)
/// is reported as a violation.
pub fn run_seed(seed: u64, opts: &SimOptions) -> SeedReport {
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut sim = Sim::new(seed, opts.clone());
        sim.run();
        (sim.counters, sim.checker.violations)
    }));
    match r {
        Ok((counters, violations)) => SeedReport { seed, counters, violations },
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            SeedReport {
                seed,
                counters: Counters::default(),
                violations: vec![format!("panic: {msg}")],
            }
        }
    }
}

const TICK_MS: u64 = 100;
const CLIENTS: usize = 3;
const SESSION_TIMEOUT_MS: i32 = 2_000;

/// A simulated client: one session at a time, connected to one peer.
#[derive(Debug, Default, Clone)]
struct Client {
    /// The session, once its createSession has been applied where it was asked for.
    session: Option<i64>,
    /// The peer it talks to.
    server: usize,
    /// A createSession for this id is in flight.
    creating: Option<i64>,
    /// It moved to another peer and waits for the leader's REVALIDATE answer.
    revalidating: bool,
    /// Silent (no pings, no writes) until then: lets its session expire.
    idle_until: u64,
    /// When the pending createSession or REVALIDATE was sent (it may be lost: retried after
    /// a second).
    pending_since: u64,
    sessions_made: i64,
    cxid: i32,
}

/// What a client waits for at a peer.
#[derive(Debug, Clone)]
enum Waiting {
    /// A create of a persistent node: acknowledged writes must survive.
    Persistent(String),
    /// A createSession of this client.
    Session(usize),
    Other,
}

#[derive(Debug, Clone)]
enum Msg {
    Packet(QuorumPacket),
    Snapshot(ReceivedSnapshot),
}

/// The SNAP payload of `state` at `zxid` as a learner's network reader takes it: written in
/// ZooKeeper's format (body, then the signature) and read back in pieces of every size up to
/// 64 KiB, as a socket delivers them.
pub fn snap_payload(zxid: Zxid, state: &State) -> Result<ReceivedSnapshot, String> {
    let mut body = Vec::new();
    state.write_body(&mut body).map_err(|e| e.to_string())?;
    let mut payload = bytes::BytesMut::new();
    crate::zab::wire::write_snap_payload(&mut payload, &body);
    let tree = crate::tree::TreeOptions::default();
    let max = 2 * crate::proto::DEFAULT_MAX_LEN;
    let mut r = SnapReceiver::new(zxid, tree, max, usize::MAX, None).map_err(|e| e.to_string())?;
    // Pieces of a size fixed by the payload's length: deterministic, and different from one
    // payload to the next.
    let piece = 1 + payload.len() % 65_521;
    let (mut buf, mut at) = (Vec::new(), 0);
    while !r.is_complete() && at < payload.len() {
        let n = piece.min(payload.len() - at);
        buf.extend_from_slice(&payload[at..at + n]);
        at += n;
        let used = r.feed(&buf).map_err(|e| e.to_string())?;
        buf.drain(..used);
    }
    if !r.is_complete() || !buf.is_empty() || at != payload.len() {
        return Err("the payload was not taken exactly".into());
    }
    r.finish().map_err(|e| e.to_string())
}

#[derive(Debug, Clone)]
enum Ev {
    Tick {
        node: usize,
        inc: u64,
    },
    Flush {
        node: usize,
        inc: u64,
    },
    Election {
        from: Sid,
        to: Sid,
        n: Notification,
    },
    /// A quorum message on connection `conn`, sent while `to` ran as incarnation `inc`;
    /// `late`: held back, after its connection closed, until the connection's late moment.
    Quorum {
        from: Sid,
        to: Sid,
        inc: u64,
        conn: u64,
        msg: Msg,
        late: bool,
    },
    Connected {
        from: Sid,
        to: Sid,
        conn: u64,
    },
    ConnectFailed {
        from: Sid,
        to: Sid,
        inc: u64,
    },
    Disconnected {
        at: Sid,
        peer: Sid,
        inc: u64,
        conn: u64,
    },
    Restart {
        node: usize,
    },
    Fault,
    Client {
        client: usize,
    },
    ClientPing {
        client: usize,
    },
    Quiet,
}

#[derive(Debug)]
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

#[derive(Debug)]
struct Conn {
    id: u64,
    /// Delivery time of the last message in each direction (low sid → high sid, and back).
    last_at: [u64; 2],
}

#[derive(Debug)]
struct Node {
    sid: Sid,
    up: bool,
    inc: u64,
    disk: SimVfs,
    /// The production replica (peer, database, trees); `None` while the node is down.
    replica: Option<Replica>,
    /// The checker's view of its history.
    mirror: Mirror,
    /// Its role as its outputs have told so far (a commit is the truth only if made by an
    /// established leader at that point of the output stream).
    role: Role,
    /// Tree digests of the txns applied since the last commit point was checked.
    digests: BTreeMap<Zxid, i64>,
    flush_scheduled: bool,
    /// Client writes waiting for their commit here: (session, cxid) → (client, path).
    waiting: BTreeMap<(i64, i32), Waiting>,
    armed: bool,
    /// Txns up to here were already compared with the committed truth on this node.
    commit_mark: Zxid,
    /// Txns up to here were already recorded as committed by this node as leader.
    auth_mark: Zxid,
    /// Processing a NEWLEADER packet now.
    in_newleader: bool,
    /// NEWLEADER was processed; its ack is still to come and must find the log durable up to
    /// here.
    newleader_target: Option<Zxid>,
    /// The sync a leader started with this peer as learner, until the peer is up to date.
    sync_plan: Option<SyncPlan>,
    /// Its configuration: the membership it activated last (kept across crashes, as the
    /// dynamic config file is).
    cfg: PeerConfig,
}

struct Sim {
    seed: u64,
    opts: SimOptions,
    rng: ChaCha8Rng,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    nodes: Vec<Node>,
    strategy: FlushStrategy,
    conns: BTreeMap<(Sid, Sid), Conn>,
    next_conn: u64,
    /// Closed connections whose buffered messages stopped being delivered (see
    /// [`Sim::deliver_late`]).
    late_cut: std::collections::BTreeSet<u64>,
    /// When the buffered messages of other closed connections come through.
    late_at: BTreeMap<u64, u64>,
    /// How many messages of each closed connection are held for their late moment.
    late_held: BTreeMap<u64, usize>,
    election_last: BTreeMap<(Sid, Sid), u64>,
    /// Partition group of each node (equal = reachable), when partitioned.
    groups: Option<Vec<u8>>,
    drop_p: f64,
    dup_p: f64,
    faults_on: bool,
    quiet_at: u64,
    established_after_quiet: Option<u64>,
    clients: Vec<Client>,
    /// Sessions an established leader has closed.
    closed_sessions: std::collections::BTreeSet<i64>,
    counters: Counters,
    checker: Checker,
    /// Acknowledgements seen by `check_on_disk` (every 64th is checked).
    disk_checks: u64,
}

impl Sim {
    fn new(seed: u64, opts: SimOptions) -> Sim {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let voters: Vec<Sid> = (1..=opts.peers as Sid).collect();
        let observers: Vec<Sid> =
            (opts.peers as Sid + 1..=(opts.peers + opts.observers) as Sid).collect();
        let mut cfg = PeerConfig::new(voters, observers);
        cfg.tick_ms = TICK_MS as u32;
        cfg.init_limit = 10;
        cfg.sync_limit = 5;
        cfg.commit_log_count = rng.random_range(4..40);
        cfg.finalize_wait = 2;
        cfg.notification_timeout = 2;
        cfg.notification_timeout_max = 8;
        if opts.reconfig {
            cfg.reconfig_enabled = true;
            let text: String = (1..=(opts.peers + opts.observers) as Sid)
                .map(|sid| server_line(sid, sid > opts.peers as Sid) + "\n")
                .collect();
            cfg.config_text = Bytes::from(text + "version=0");
        }
        let strategy =
            if rng.random_bool(0.5) { FlushStrategy::Group } else { FlushStrategy::Direct };
        let drop_p = if opts.faults { rng.random_range(0.0..0.1) } else { 0.0 };
        let dup_p = if opts.faults { rng.random_range(0.0..0.05) } else { 0.0 };
        let n = opts.peers + opts.observers;
        let nodes = (0..n)
            .map(|i| Node {
                sid: i as Sid + 1,
                up: false,
                inc: 0,
                disk: SimVfs::new(),
                replica: None,
                mirror: Mirror::default(),
                role: Role::Looking,
                digests: BTreeMap::new(),
                flush_scheduled: false,
                waiting: BTreeMap::new(),
                armed: false,
                commit_mark: Zxid::ZERO,
                auth_mark: Zxid::ZERO,
                in_newleader: false,
                newleader_target: None,
                sync_plan: None,
                cfg: cfg.clone(),
            })
            .collect();
        let quiet_at = if opts.faults { opts.fault_ms } else { 0 };
        Sim {
            seed,
            opts,
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes,
            strategy,
            conns: BTreeMap::new(),
            next_conn: 1,
            late_cut: std::collections::BTreeSet::new(),
            late_at: BTreeMap::new(),
            late_held: BTreeMap::new(),
            election_last: BTreeMap::new(),
            groups: None,
            drop_p,
            dup_p,
            faults_on: false,
            quiet_at,
            established_after_quiet: None,
            clients: vec![Client::default(); CLIENTS],
            closed_sessions: std::collections::BTreeSet::new(),
            counters: Counters::default(),
            checker: Checker::default(),
            disk_checks: 0,
        }
    }

    fn trace(&self, msg: impl FnOnce() -> String) {
        if self.opts.trace {
            eprintln!("[{:>6}ms] {}", self.now, msg());
        }
    }

    fn at(&mut self, delay: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled { at: self.now + delay, seq: self.seq, ev }));
    }

    fn idx(sid: Sid) -> usize {
        sid as usize - 1
    }

    fn net_delay(&mut self) -> u64 {
        if self.faults_on && self.rng.random_bool(0.02) {
            self.rng.random_range(50..400)
        } else {
            self.rng.random_range(1..20)
        }
    }

    fn reachable(&self, a: Sid, b: Sid) -> bool {
        let (ia, ib) = (Self::idx(a), Self::idx(b));
        self.nodes[ia].up
            && self.nodes[ib].up
            && self.groups.as_ref().is_none_or(|g| g[ia] == g[ib])
    }

    fn run(&mut self) {
        for i in 0..self.nodes.len() {
            self.start_node(i);
        }
        for c in 0..CLIENTS {
            let d = self.rng.random_range(0..100);
            self.at(d, Ev::Client { client: c });
            self.at(d + 50, Ev::ClientPing { client: c });
        }
        if self.opts.faults {
            self.faults_on = true;
            self.at(100, Ev::Fault);
        }
        let quiet = self.quiet_at;
        self.seq += 1;
        self.queue.push(Reverse(Scheduled { at: quiet, seq: self.seq, ev: Ev::Quiet }));
        let end = self.quiet_at + self.opts.quiet_ms;
        while let Some(Reverse(s)) = self.queue.pop() {
            if s.at > end {
                break;
            }
            self.now = s.at;
            self.counters.steps += 1;
            if self.counters.steps > self.opts.max_steps {
                self.checker.fail(self.now, format!("step bound {} exceeded", self.opts.max_steps));
                return;
            }
            self.handle(s.ev);
        }
        self.now = end;
        self.final_checks();
    }

    fn start_node(&mut self, i: usize) {
        let disk = self.nodes[i].disk.clone();
        let sid = self.nodes[i].sid;
        let (replica, out) = match node::open(&disk, self.strategy, self.nodes[i].cfg.clone(), sid)
        {
            Ok(r) => r,
            Err(e) => {
                self.checker.fail(self.now, format!("peer {} cannot recover: {e}", i + 1));
                return;
            }
        };
        let mirror = Mirror::of(&replica);
        self.trace(|| {
            format!(
                "peer {sid} starts: epochs {}/{}, snapshot {:#x}, last {:#x}",
                replica.peer().accepted_epoch(),
                replica.peer().current_epoch(),
                mirror.snapshot_zxid,
                mirror.last_zxid()
            )
        });
        self.checker.history(self.now, sid, "recovery", mirror.snapshot_zxid, &mirror.entries);
        self.checker.recovered(self.now, sid, mirror.last_zxid());
        self.checker.state_at(self.now, sid, replica.applied(), replica.committed().tree.digest());
        let n = &mut self.nodes[i];
        n.commit_mark = mirror.snapshot_zxid;
        n.auth_mark = mirror.snapshot_zxid;
        n.role = replica.peer().role();
        n.replica = Some(replica);
        n.mirror = mirror;
        n.digests.clear();
        n.up = true;
        n.inc += 1;
        n.flush_scheduled = false;
        n.armed = false;
        n.in_newleader = false;
        n.newleader_target = None;
        let inc = n.inc;
        let phase = self.rng.random_range(1..=TICK_MS);
        self.at(phase, Ev::Tick { node: i, inc });
        self.outputs(i, out);
    }

    fn crash(&mut self, i: usize, torn: bool) {
        if !self.nodes[i].up {
            return;
        }
        self.counters.crashes += 1;
        self.trace(|| format!("peer {} crashes{}", i + 1, if torn { " mid-write" } else { "" }));
        if torn {
            self.counters.torn_crashes += 1;
        }
        let seed = self.rng.random();
        let n = &mut self.nodes[i];
        n.up = false;
        n.disk.crash();
        n.disk = n.disk.crash_image(seed);
        n.replica = None;
        n.waiting.clear();
        let sid = n.sid;
        self.break_conns_of(sid);
        let delay = if self.faults_on { self.rng.random_range(100..2500) } else { 10 };
        self.at(delay, Ev::Restart { node: i });
    }

    fn break_conns_of(&mut self, sid: Sid) {
        let keys: Vec<(Sid, Sid)> =
            self.conns.keys().filter(|(a, b)| *a == sid || *b == sid).copied().collect();
        for k in keys {
            self.close_conn(k, None);
        }
    }

    /// Closes a connection; the surviving sides hear of it after a delay, or (sometimes, under
    /// faults) never.
    fn close_conn(&mut self, key: (Sid, Sid), closer: Option<Sid>) {
        let Some(closed) = self.conns.remove(&key) else {
            return;
        };
        for (at, peer) in [(key.0, key.1), (key.1, key.0)] {
            if Some(at) == closer || !self.nodes[Self::idx(at)].up {
                continue;
            }
            if self.faults_on && self.rng.random_bool(0.3) {
                continue;
            }
            let d = self.net_delay();
            let inc = self.nodes[Self::idx(at)].inc;
            self.at(d, Ev::Disconnected { at, peer, inc, conn: closed.id });
        }
    }

    fn conn_key(a: Sid, b: Sid) -> (Sid, Sid) {
        (a.min(b), a.max(b))
    }

    /// When a message of connection `conn`, closed since it was sent, still reaches node `i`:
    /// a server's reader goes on delivering what its socket had buffered after the connection
    /// closed, even once a newer connection with the same peer is up (a reader thread
    /// descheduled for a while), unless the receiving process restarted. Each closed
    /// connection either delivers what was on its way at a moment up to 400 ms later, or
    /// nothing more.
    fn deliver_late(&mut self, i: usize, inc: u64, conn: u64) -> Option<u64> {
        if !self.nodes[i].up || self.nodes[i].inc != inc || self.late_cut.contains(&conn) {
            return None;
        }
        if let Some(at) = self.late_at.get(&conn) {
            return Some(*at);
        }
        if self.rng.random_bool(0.3) {
            self.late_cut.insert(conn);
            return None;
        }
        let at = self.now + self.rng.random_range(0..400);
        self.late_at.insert(conn, at);
        Some(at)
    }

    fn send_quorum(&mut self, from: Sid, to: Sid, msg: Msg) {
        let key = Self::conn_key(from, to);
        let delay = self.net_delay();
        let now = self.now;
        let Some(c) = self.conns.get_mut(&key) else { return };
        let dir = usize::from(from > to);
        let at = c.last_at[dir].max(now + delay);
        c.last_at[dir] = at;
        let conn = c.id;
        let inc = self.nodes[Self::idx(to)].inc;
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            ev: Ev::Quorum { from, to, inc, conn, msg, late: false },
        }));
    }

    fn send_election(&mut self, from: Sid, to: Sid, n: Notification) {
        if !self.reachable(from, to) || self.rng.random_bool(self.drop_p) {
            return;
        }
        let copies = if self.rng.random_bool(self.dup_p) { 2 } else { 1 };
        for _ in 0..copies {
            let delay = self.net_delay();
            let last = self.election_last.entry((from, to)).or_insert(0);
            let at = (*last).max(self.now + delay);
            *last = at;
            self.seq += 1;
            self.queue.push(Reverse(Scheduled {
                at,
                seq: self.seq,
                ev: Ev::Election { from, to, n: n.clone() },
            }));
        }
    }

    fn peer(&self, i: usize) -> Option<&Peer> {
        self.nodes[i].replica.as_ref().map(|r| r.peer())
    }

    /// Feeds an event to a node's replica and carries out its outputs; a storage failure
    /// crashes the node (after the outputs of what it did before).
    fn step_peer(&mut self, i: usize, ev: Event) {
        let now = self.now as i64;
        let Some(r) = self.nodes[i].replica.as_mut() else { return };
        r.set_clock(now);
        let mut out = Vec::new();
        let res = r.step(ev, &mut out);
        self.outputs(i, out);
        if res.is_err() {
            let torn = self.nodes[i].armed;
            self.crash(i, torn);
        }
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Tick { node, inc } => {
                if self.nodes[node].up && self.nodes[node].inc == inc {
                    self.at(TICK_MS, Ev::Tick { node, inc });
                    self.step_peer(node, Event::Tick);
                }
            }
            Ev::Flush { node, inc } => {
                if !(self.nodes[node].up && self.nodes[node].inc == inc) {
                    return;
                }
                self.nodes[node].flush_scheduled = false;
                let mut out = Vec::new();
                let r = self.nodes[node].replica.as_mut().expect("up").flush(&mut out);
                self.outputs(node, out);
                if r.is_err() {
                    let torn = self.nodes[node].armed;
                    self.crash(node, torn);
                }
            }
            Ev::Election { from, to, n } => {
                self.trace(|| {
                    format!(
                        "notification {from} -> {to}: {:?} leader {} zxid {:#x} ee {} pe {}",
                        n.state, n.leader, n.zxid, n.election_epoch, n.peer_epoch
                    )
                });
                if self.reachable(from, to) {
                    self.step_peer(Self::idx(to), Event::Notification { from, n });
                }
            }
            Ev::Quorum { from, to, inc, conn, msg, late } => {
                let key = Self::conn_key(from, to);
                let i = Self::idx(to);
                let current = self.conns.get(&key).map(|c| c.id) == Some(conn);
                if !current {
                    let Some(at) = self.deliver_late(i, inc, conn) else { return };
                    let held = self.late_held.entry(conn).or_insert(0);
                    if late && at <= self.now {
                        *held -= 1;
                    } else if at > self.now || *held > 0 {
                        // Held, in order behind what is held already.
                        *held += 1;
                        self.seq += 1;
                        let ev = Ev::Quorum { from, to, inc, conn, msg, late: true };
                        let at = at.max(self.now);
                        self.queue.push(Reverse(Scheduled { at, seq: self.seq, ev }));
                        return;
                    }
                }
                if !current {
                    self.trace(|| format!("{to} still reads closed connection {conn} from {from}"));
                }
                // (A stale NEWLEADER is nothing the receiver may ack.)
                let newleader =
                    current && matches!(&msg, Msg::Packet(p) if p.kind == PacketType::NewLeader);
                let ev = match msg {
                    Msg::Packet(packet) => Event::Packet { from, conn, packet },
                    Msg::Snapshot(body) => Event::Snapshot { from, conn, body },
                };
                if newleader {
                    self.nodes[i].in_newleader = true;
                    self.nodes[i].newleader_target = None;
                }
                self.step_peer(i, ev);
                if newleader && self.nodes[i].in_newleader && self.nodes[i].up {
                    // Not acked yet: the ack must wait until the synced history is durable.
                    self.nodes[i].in_newleader = false;
                    self.nodes[i].newleader_target = Some(self.nodes[i].mirror.last_zxid());
                }
            }
            Ev::Connected { from, to, conn } => {
                let key = Self::conn_key(from, to);
                if self.conns.get(&key).map(|c| c.id) != Some(conn) {
                    return;
                }
                self.step_peer(Self::idx(to), Event::Connected { peer: from, conn });
                // The acceptor may have refused it already.
                if self.conns.get(&key).map(|c| c.id) == Some(conn) {
                    self.step_peer(Self::idx(from), Event::Connected { peer: to, conn });
                }
            }
            Ev::ConnectFailed { from, to, inc } => {
                let i = Self::idx(from);
                if self.nodes[i].up && self.nodes[i].inc == inc {
                    self.step_peer(i, Event::Disconnected { peer: to, conn: None });
                }
            }
            Ev::Disconnected { at: from, peer: to, inc, conn } => {
                let i = Self::idx(from);
                if self.nodes[i].up && self.nodes[i].inc == inc {
                    self.step_peer(i, Event::Disconnected { peer: to, conn: Some(conn) });
                }
            }
            Ev::Restart { node } => {
                if !self.nodes[node].up {
                    self.start_node(node);
                }
            }
            Ev::Fault => self.inject_fault(),
            Ev::Client { client } => self.client_write(client),
            Ev::ClientPing { client } => self.client_ping(client),
            Ev::Quiet => self.go_quiet(),
        }
    }

    fn inject_fault(&mut self) {
        if !self.faults_on {
            return;
        }
        let next = self.rng.random_range(50..500);
        self.at(next, Ev::Fault);
        let n = self.nodes.len();
        let i = self.rng.random_range(0..n);
        match self.rng.random_range(0..12) {
            0..=2 => self.crash(i, false),
            // Crash in the middle of one of the next disk operations.
            3..=4 if self.nodes[i].up && !self.nodes[i].armed => {
                let m = self.nodes[i].disk.stats().mutations;
                let k = self.rng.random_range(1..12);
                self.nodes[i]
                    .disk
                    .set_faults(Faults { crash_after_ops: Some(m + k), ..Faults::default() });
                self.nodes[i].armed = true;
            }
            5..=6 => {
                self.counters.partitions += 1;
                let groups: Vec<u8> = if self.rng.random_bool(0.5) {
                    (0..n).map(|j| u8::from(j == i)).collect()
                } else {
                    (0..n).map(|_| self.rng.random_range(0..2)).collect()
                };
                let keys: Vec<(Sid, Sid)> = self.conns.keys().copied().collect();
                for (a, b) in keys {
                    if groups[Self::idx(a)] != groups[Self::idx(b)] {
                        self.close_conn((a, b), None);
                    }
                }
                self.trace(|| format!("partition {groups:?}"));
                self.groups = Some(groups);
            }
            7..=9 => {
                if self.groups.is_some() {
                    self.trace(|| "heal".into());
                }
                self.groups = None
            }
            // An I/O error (EIO or ENOSPC) on one of the next writes or fsyncs: the log
            // latches it, the peer stops (storage failure stops a server), and comes back as
            // a reboot finds its disk. A failed fsync drops its file's unsynced writes first,
            // as Linux does.
            10 if self.nodes[i].up && !self.nodes[i].armed => {
                let stats = self.nodes[i].disk.stats();
                let k = self.rng.random_range(1..6);
                let errno = if self.rng.random_bool(0.5) { EIO } else { ENOSPC };
                let faults = if self.rng.random_bool(0.5) {
                    Faults { fail_write: Some((stats.writes + k, errno)), ..Faults::default() }
                } else {
                    Faults { fail_sync: Some((stats.syncs + k, errno)), ..Faults::default() }
                };
                self.trace(|| format!("peer {} will fail an I/O: {faults:?}", i + 1));
                self.nodes[i].disk.set_faults(faults);
                self.nodes[i].armed = true;
                self.counters.io_errors_armed += 1;
            }
            _ => {}
        }
    }

    fn go_quiet(&mut self) {
        self.faults_on = false;
        if self.nodes.iter().any(|n| {
            matches!(
                n.replica.as_ref().map(|r| r.peer().role()),
                Some(Role::Leading { established: true, .. })
            )
        }) {
            self.established_after_quiet = Some(self.now);
        }
        self.groups = None;
        self.drop_p = 0.0;
        self.dup_p = 0.0;
        self.quiet_at = self.now;
        for i in 0..self.nodes.len() {
            self.nodes[i].disk.set_faults(Faults::default());
            self.nodes[i].armed = false;
            if !self.nodes[i].up {
                self.start_node(i);
            }
        }
    }

    fn end_ms(&self) -> u64 {
        if self.opts.faults { self.opts.fault_ms } else { 0 }.max(self.quiet_at)
            + self.opts.quiet_ms
    }

    fn serving(&self, i: usize) -> bool {
        self.peer(i).is_some_and(|p| p.is_serving())
    }

    fn client_ping(&mut self, client: usize) {
        if self.now + 150 < self.end_ms() {
            self.at(150, Ev::ClientPing { client });
        }
        if self.faults_on && self.rng.random_bool(0.01) {
            // The client goes quiet long enough for its session to expire.
            self.clients[client].idle_until = self.now + 3_000;
        }
        let c = self.clients[client].clone();
        if let Some(id) = c.session {
            if !c.revalidating && self.now >= c.idle_until && self.serving(c.server) {
                let ev = Event::TouchSession { session_id: id, timeout: SESSION_TIMEOUT_MS };
                self.step_peer(c.server, ev);
            }
        }
    }

    fn client_write(&mut self, client: usize) {
        let next = self.rng.random_range(10..120);
        // Writes stop a while before the end so that the final state can settle.
        if self.now + next + 1_500 < self.end_ms() {
            self.at(next, Ev::Client { client });
        }
        if self.now < self.clients[client].idle_until {
            return;
        }
        let serving: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.serving(i)).collect();
        if serving.is_empty() {
            return;
        }
        let pick = serving[self.rng.random_range(0..serving.len())];
        let c = self.clients[client].clone();
        let stale = self.now > c.pending_since + 1_000;
        let Some(id) = c.session else {
            if c.creating.is_some() && self.serving(c.server) && !stale {
                return;
            }
            // A new session, asked for at a serving peer (forwarded to the leader).
            let c = &mut self.clients[client];
            c.sessions_made += 1;
            let id = ((client as i64 + 1) << 40) | c.sessions_made;
            c.creating = Some(id);
            c.server = pick;
            c.revalidating = false;
            c.pending_since = self.now;
            self.nodes[pick].waiting.insert((id, 0), Waiting::Session(client));
            let request = ForwardedRequest {
                session_id: id,
                cxid: 0,
                op: OP_CREATE_SESSION,
                body: encode_i32(SESSION_TIMEOUT_MS),
                auth: Vec::new(),
            };
            self.step_peer(pick, Event::ClientRequest { request });
            return;
        };

        if c.revalidating {
            if !self.serving(c.server) || stale {
                self.clients[client].revalidating = false;
            }
            return;
        }
        if !self.serving(c.server) {
            // Move the session to another peer: it asks the leader whether it is still valid.
            self.clients[client].server = pick;
            self.clients[client].revalidating = true;
            self.clients[client].pending_since = self.now;
            self.step_peer(pick, Event::Revalidate { session_id: id, timeout: SESSION_TIMEOUT_MS });
            return;
        }
        if self.closed_sessions.contains(&id) {
            // Its peer closes the connection: the session expired.
            self.clients[client].session = None;
            return;
        }
        let i = c.server;
        self.clients[client].cxid += 1;
        let cxid = self.clients[client].cxid;
        let data = Data::from_slice(&cxid.to_be_bytes());
        // Reconfigs stop well before the writes do: a hand-over starts an epoch, and the final
        // one must commit writes.
        let reconfig = (self.opts.reconfig && cxid % 17 == 0 && self.now + 3_000 < self.end_ms())
            .then(|| self.reconfig_request(i))
            .flatten();
        let (op, body, waiting) = if cxid % 41 == 0 {
            self.clients[client].session = None;
            (OP_CLOSE_SESSION, Bytes::new(), Waiting::Other)
        } else if let Some(r) = reconfig {
            (16, Bytes::from(r.encode()), Waiting::Other)
        } else if cxid % 5 == 0 {
            // A setData on /: every peer's tree changes the same way.
            let r = SetDataRequest { path: "/".into(), data, version: -1 };
            (5, Bytes::from(r.encode()), Waiting::Other)
        } else {
            let ephemeral = cxid % 3 == 0;
            let path = format!("/{}{client}-{id:x}-{cxid}", if ephemeral { "e" } else { "c" });
            let flags = i32::from(ephemeral);
            let r = CreateRequest { path: path.clone(), data, acl: Acl::open_unsafe(), flags };
            let w = if ephemeral { Waiting::Other } else { Waiting::Persistent(path) };
            (1, Bytes::from(r.encode()), w)
        };
        self.nodes[i].waiting.insert((id, cxid), waiting);
        // The super user (reconfig needs WRITE on /zookeeper/config).
        let auth = if op == 16 {
            vec![Id { scheme: "super".into(), id: String::new() }]
        } else {
            Vec::new()
        };
        let request = ForwardedRequest { session_id: id, cxid, op, body, auth };
        self.step_peer(i, Event::ClientRequest { request });
    }

    /// A reconfig: half of them a new membership of random voters (at least two), the others
    /// moving one random server between voting and observing, as judged by the membership
    /// node `i` knows (at least two voters stay; `None` if it would not).
    fn reconfig_request(&mut self, i: usize) -> Option<ReconfigRequest> {
        let n = self.nodes.len() as Sid;
        if self.rng.random_bool(0.5) {
            // A new membership at once: any two or more servers vote (several change at once,
            // where only quorums of both memberships keep commits safe).
            let voters: Vec<Sid> = loop {
                let v: Vec<Sid> = (1..=n).filter(|_| self.rng.random_bool(0.5)).collect();
                if v.len() >= 2 {
                    break v;
                }
            };
            let members: Vec<String> =
                (1..=n).map(|sid| server_line(sid, !voters.contains(&sid))).collect();
            return Some(ReconfigRequest {
                joining_servers: None,
                leaving_servers: None,
                new_members: Some(members.join(",")),
                cur_config_id: -1,
            });
        }
        let target = self.rng.random_range(1..=n);
        let cfg = &self.nodes[i].replica.as_ref()?.peer().config();
        let observer = if cfg.is_voter(target) {
            if cfg.voters.len() <= 2 {
                return None;
            }
            true
        } else {
            false
        };
        Some(ReconfigRequest {
            joining_servers: Some(server_line(target, observer)),
            leaving_servers: None,
            new_members: None,
            cur_config_id: -1,
        })
    }

    /// Carries out a replica's outputs in order.
    fn outputs(&mut self, i: usize, out: Vec<Output>) {
        let sid = self.nodes[i].sid;
        for o in out {
            if !self.nodes[i].up {
                return;
            }
            match o {
                Output::Command(c) => self.command(i, sid, c),
                Output::Snapshot { to, zxid, state } => {
                    self.trace(|| format!("peer {sid} sends SNAP at {zxid:#x} to {to}"));
                    match snap_payload(zxid, &state) {
                        Ok(r) => self.send_quorum(sid, to, Msg::Snapshot(r)),
                        Err(e) => {
                            self.checker.fail(self.now, format!("peer {sid}: a SNAP payload: {e}"))
                        }
                    }
                }
                Output::Applied(a) => self.applied(i, a),
                Output::Stored(s) => self.stored(i, sid, s),
            }
        }
    }

    fn stored(&mut self, i: usize, sid: Sid, s: Stored) {
        let snapshot_zxid =
            self.nodes[i].replica.as_ref().map_or(Zxid::ZERO, |r| r.db().snapshot_zxid());
        match &s {
            Stored::Appended(_) if !self.nodes[i].flush_scheduled => {
                {
                    self.nodes[i].flush_scheduled = true;
                    let inc = self.nodes[i].inc;
                    // Mostly a fast disk; now and then a slow flush (the machine's fdatasync has
                    // slow phases), which widens the window between a txn's append and its
                    // durability that a leader must not count its own ack in.
                    let d = if self.rng.random_bool(0.05) {
                        self.rng.random_range(20..150)
                    } else {
                        self.rng.random_range(1..8)
                    };
                    self.at(d, Ev::Flush { node: i, inc });
                }
            }
            // A crash in the middle of a TRUNC or SNAP install may leave the old history cut
            // after the kept zxid: acknowledgements above it were of uncommitted txns.
            Stored::Truncating(z) | Stored::Installing(z) => {
                // (A SNAP may also go below the learner's own snapshot: a leader-to-be that
                // never established had sent it one of txns the next leader never had.)
                let kept = self.nodes[i].mirror.prev_of(z.next()).min(*z);
                self.checker.history_cut(sid, kept);
            }
            _ => {}
        }
        self.nodes[i].mirror.record(&s, snapshot_zxid);
        let n = &mut self.nodes[i];
        let Some(r) = n.replica.as_ref() else { return };
        match s {
            Stored::Truncated(z) => {
                n.commit_mark = n.commit_mark.min(z);
                n.auth_mark = n.auth_mark.min(z);
                n.digests.retain(|k, _| *k <= z);
                let (applied, digest) = (r.applied(), r.committed().tree.digest());
                let m = &self.nodes[i].mirror;
                self.checker.history(self.now, sid, "TRUNC", m.snapshot_zxid, &m.entries);
                self.checker.state_at(self.now, sid, applied, digest);
            }
            Stored::Installed(z) => {
                n.commit_mark = z;
                n.auth_mark = z;
                n.digests.clear();
                let digest = r.committed().tree.digest();
                self.checker.state_at(self.now, sid, z, digest);
            }
            _ => {}
        }
    }

    fn command(&mut self, i: usize, sid: Sid, c: Command) {
        match c {
            Command::Activate { text, version } => {
                let Some(m) = crate::zab::Membership::parse_bytes(&text) else {
                    self.checker.fail(self.now, format!("peer {sid} activated {text:?}"));
                    return;
                };
                self.trace(|| {
                    format!("peer {sid} activates {version:#x}: voters {:?}", m.voters())
                });
                if self.leading(i) && counter_of(Zxid(version)) != 0 {
                    self.counters.reconfigs += 1;
                }
                self.nodes[i].cfg.adopt(&m, text);
            }
            Command::SendNotification { to, n } => self.send_election(sid, to, n),
            Command::Connect { to } => {
                let key = Self::conn_key(sid, to);
                if self.conns.contains_key(&key) {
                    return;
                }
                let delay = self.net_delay();
                if self.reachable(sid, to) {
                    let id = self.next_conn;
                    self.next_conn += 1;
                    let at = self.now + delay;
                    self.conns.insert(key, Conn { id, last_at: [at, at] });
                    self.at(delay, Ev::Connected { from: sid, to, conn: id });
                } else {
                    let inc = self.nodes[i].inc;
                    self.at(delay, Ev::ConnectFailed { from: sid, to, inc });
                }
            }
            Command::Disconnect { peer, conn } => {
                let key = Self::conn_key(sid, peer);
                // A peer closing a connection that is already gone closes nothing newer.
                if conn.is_none() || self.conns.get(&key).map(|c| c.id) == conn {
                    self.close_conn(key, Some(sid));
                }
            }
            Command::Send { to, packet } => {
                if packet.kind == PacketType::Ack {
                    // Judged against what the simulated disk has made durable, as the log
                    // reported it to the replica.
                    let durable = self.nodes[i].replica.as_ref().expect("up").durable();
                    let last = self.nodes[i].mirror.last_zxid();
                    self.trace(|| {
                        format!(
                            "peer {sid} acks {:#x} to {to} (durable {durable:#x}, last {last:#x})",
                            packet.zxid()
                        )
                    });
                    if counter_of(packet.zxid()) != 0 {
                        self.checker.ack(self.now, sid, packet.zxid(), durable);
                        self.check_on_disk(i, sid, packet.zxid(), "acked");
                    } else if self.nodes[i].in_newleader {
                        // Acking NEWLEADER accepts the synced history: it must be durable.
                        self.nodes[i].in_newleader = false;
                        self.checker.ack(self.now, sid, last, durable);
                    } else if let Some(t) = self.nodes[i].newleader_target.take() {
                        self.checker.ack(self.now, sid, t, durable);
                    }
                }
                self.send_quorum(sid, to, Msg::Packet(packet));
            }
            Command::Commit(z) => self.commit(i, sid, z),
            Command::ExpireSession { session_id } => {
                // The leader's session tracker expired it: propose its closeSession.
                let now = self.now as i64;
                let r = self.nodes[i].replica.as_mut().expect("up");
                let mut out = Vec::new();
                let p = crate::replica::Proposal::CloseSession { session_id, cxid: 0 };
                let res = r.propose(p, now, &mut out);
                self.outputs(i, out);
                if let Err(crate::replica::ProposeError::Fatal(_)) = res {
                    let torn = self.nodes[i].armed;
                    self.crash(i, torn);
                }
            }
            Command::Revalidated { session_id, valid } => {
                if let Some(c) = self.clients.iter_mut().find(|c| c.session == Some(session_id)) {
                    self.counters.revalidations += 1;
                    c.revalidating = false;
                    if !valid {
                        c.session = None;
                        self.counters.revalidations_refused += 1;
                    }
                }
            }
            Command::RoleChanged(role) => {
                self.trace(|| format!("peer {sid} -> {role:?}"));
                let n = &mut self.nodes[i];
                if matches!(role, Role::Leading { epoch: None, .. })
                    && matches!(n.role, Role::Following { .. } | Role::Observing { .. })
                {
                    // Straight from learning to leading: a reconfig's hand-over.
                    self.counters.hand_overs += 1;
                }
                n.role = role;
                if role == Role::Looking {
                    // A sync abandoned before its NEWLEADER was acked: that ack never comes,
                    // and the next leader's NEWLEADER sets its own target.
                    n.newleader_target = None;
                }
                if !matches!(
                    role,
                    Role::Leading { established: true, .. }
                        | Role::Following { serving: true, .. }
                        | Role::Observing { serving: true, .. }
                ) {
                    n.waiting.clear();
                }
            }
            Command::Established { epoch } => {
                self.trace(|| format!("peer {sid} established epoch {epoch}"));
                self.nodes[i].role = Role::Leading { epoch: Some(epoch), established: true };
                self.counters.elections += 1;
                self.checker.established(self.now, epoch, sid);
                // Leader completeness: the new leader holds every txn committed in an
                // earlier epoch.
                let m = &self.nodes[i].mirror;
                self.checker.leader_history(self.now, sid, epoch, m.snapshot_zxid, &m.entries);
                if !self.faults_on
                    && self.established_after_quiet.is_none()
                    && self.now >= self.quiet_at
                {
                    self.established_after_quiet = Some(self.now);
                }
            }
            Command::SyncStarted { plan, learner } => {
                self.trace(|| format!("peer {sid} syncs {learner}: {plan:?}"));
                match plan {
                    SyncPlan::Diff { .. } => self.counters.sync_diff += 1,
                    SyncPlan::Trunc { .. } => self.counters.sync_trunc += 1,
                    SyncPlan::TruncDiff { .. } => self.counters.sync_trunc_diff += 1,
                    SyncPlan::Snap => self.counters.sync_snap += 1,
                }
                if let Some(n) = self.nodes.iter_mut().find(|n| n.sid == learner) {
                    n.sync_plan = Some(plan);
                }
            }
            Command::UpToDate { .. } => {
                // The learner finished the sync its leader planned (counted once done, not
                // when started: a sync cut short by a crash or partition does not count).
                match self.nodes[i].sync_plan.take() {
                    Some(SyncPlan::Diff { .. }) => self.counters.synced_diff += 1,
                    Some(SyncPlan::Trunc { .. }) => self.counters.synced_trunc += 1,
                    Some(SyncPlan::TruncDiff { .. }) => self.counters.synced_trunc_diff += 1,
                    Some(SyncPlan::Snap) => self.counters.synced_snap += 1,
                    None => {}
                }
            }
            _ => {}
        }
    }

    fn leading(&self, i: usize) -> bool {
        matches!(self.nodes[i].role, Role::Leading { established: true, .. })
    }

    /// A txn the replica applied (committed): answers the client that waits for it here.
    fn applied(&mut self, i: usize, a: Box<crate::replica::Applied>) {
        let zxid = Zxid::from_wire(a.entry.header.zxid);
        let id = a.entry.header.client_id;
        let ok = a.outcome.result.is_ok();
        let authoritative = self.leading(i);
        self.nodes[i].digests.insert(zxid, a.digest);
        if authoritative {
            if let Txn::CloseSession(_) = &a.entry.txn {
                self.closed_sessions.insert(id);
                if a.entry.header.cxid == 0 && a.local {
                    self.counters.sessions_expired += 1;
                }
            }
        }
        match self.nodes[i].waiting.remove(&(id, a.entry.header.cxid)) {
            Some(Waiting::Persistent(path)) if ok => {
                self.counters.client_acks += 1;
                self.checker.acked.push((path, zxid));
            }
            Some(Waiting::Session(c)) if ok && self.clients[c].creating == Some(id) => {
                self.counters.sessions_created += 1;
                let c = &mut self.clients[c];
                c.creating = None;
                c.session = Some(id);
                c.server = i;
            }
            _ => {}
        }
    }

    /// The replica's commit point moved to `z`: every txn up to it is committed. An
    /// established leader's commits record the truth; a learner's are compared with it.
    fn commit(&mut self, i: usize, sid: Sid, z: Zxid) {
        let authoritative = self.leading(i);
        let now = self.now;
        if self.opts.trace {
            let m = &self.nodes[i].mirror;
            self.trace(|| format!("peer {sid} commits up to {z:#x} (mark {:#x}, snapshot {:#x}, first entry {:?}){}", self.nodes[i].commit_mark, m.snapshot_zxid, m.entries.keys().next().map(|z| format!("{z:#x}")), if authoritative { " as leader" } else { "" }));
        }
        let n = &mut self.nodes[i];
        let leader_durable = n.replica.as_ref().expect("up").durable();
        let mut self_checks = Vec::new();
        let m = &n.mirror;
        let z = z.min(m.last_zxid());
        let mark = if authoritative { n.auth_mark } else { n.commit_mark };
        if authoritative && n.auth_mark == m.snapshot_zxid {
            self.checker.snapshot_committed(m.snapshot_zxid);
        }
        if z > mark {
            for (zxid, data) in m.entries.range(mark.next()..=z) {
                let prev = m.prev_of(*zxid);
                let digest = n.digests.get(zxid).copied();
                if authoritative {
                    // A commit needs the txn durable on a quorum of voters: those that acked
                    // it (or a later zxid), and the leader itself only if its own log holds it.
                    let voters = &n.cfg.voters;
                    let holders = voters
                        .iter()
                        .filter(|v| {
                            if **v == sid {
                                leader_durable >= *zxid
                            } else {
                                self.checker.acked_of(**v) >= *zxid
                            }
                        })
                        .count();
                    if leader_durable >= *zxid && zxid == &z {
                        // The leader counted its own ack: the txn must really be on its disk.
                        self_checks.push(*zxid);
                    }
                    if 2 * holders <= voters.len() {
                        self.checker.fail(
                            now,
                            format!(
                                "leader {sid} committed {zxid:#x}, durable on only {holders} voters"
                            ),
                        );
                    }
                }
                self.checker.commit(now, sid, *zxid, hash_bytes(data), prev, digest, authoritative);
                if authoritative {
                    self.counters.commits += 1;
                }
            }
            n.commit_mark = n.commit_mark.max(z);
            if authoritative {
                n.auth_mark = z;
            }
        }
        n.digests.retain(|k, _| *k > z);
        for zxid in self_checks {
            self.check_on_disk(i, sid, zxid, "counted its own ack of");
        }
    }

    /// Every 64th time it is asked: checks that `zxid` is on the node's disk as a crash now
    /// would leave it at worst (its durable image: only what was synced), with the content
    /// the node logged — judged on the disk itself, not on what the log reported.
    fn check_on_disk(&mut self, i: usize, sid: Sid, zxid: Zxid, what: &str) {
        self.disk_checks += 1;
        if !self.disk_checks.is_multiple_of(64) {
            return;
        }
        self.counters.durable_image_checks += 1;
        let Some(want) = self.nodes[i].mirror.entries.get(&zxid).cloned() else {
            // At or below its snapshot: on the disk with it.
            return;
        };
        let img = self.nodes[i].disk.durable_image();
        match node::durable_history(&img, self.strategy) {
            Err(e) => self.checker.fail(
                self.now,
                format!("peer {sid}: its disk's durable image does not recover: {e}"),
            ),
            Ok((snapshot, entries)) if zxid > snapshot => match entries.get(&zxid) {
                Some(d) if *d == want => {}
                Some(_) => self.checker.fail(
                    self.now,
                    format!("peer {sid} {what} {zxid:#x}, but its disk holds other content there"),
                ),
                None => self.checker.fail(
                    self.now,
                    format!(
                        "peer {sid} {what} {zxid:#x}, but its disk's durable image ends at {:#x}",
                        entries.keys().next_back().copied().unwrap_or(snapshot)
                    ),
                ),
            },
            Ok(_) => {}
        }
    }

    fn final_checks(&mut self) {
        let now = self.now;
        let Some(est) = self.established_after_quiet else {
            self.checker.fail(
                now,
                format!(
                    "liveness: no leader established within {} ms after the faults stopped",
                    self.opts.quiet_ms
                ),
            );
            return;
        };
        if est - self.quiet_at > self.opts.liveness_ms {
            self.checker.fail(
                now,
                format!(
                    "liveness: leader established only {} ms after the faults stopped",
                    est - self.quiet_at
                ),
            );
        }
        let leader = self.nodes.iter().position(|n| {
            matches!(
                n.replica.as_ref().map(|r| r.peer().role()),
                Some(Role::Leading { established: true, .. })
            )
        });
        let Some(l) = leader else {
            self.checker.fail(now, "liveness: no established leader at the end".into());
            return;
        };
        let leader_epoch = self.peer(l).expect("up").current_epoch();
        let mut serving_voters = 0;
        let lz = self.nodes[l].replica.as_ref().expect("up").applied();
        let ldigest = self.nodes[l].replica.as_ref().expect("up").committed().tree.digest();
        for n in &self.nodes {
            let Some(r) = n.replica.as_ref() else {
                self.checker.fail(now, format!("peer {} is down at the end", n.sid));
                continue;
            };
            let p = r.peer();
            if !p.is_serving() && p.accepted_epoch() > leader_epoch {
                self.counters.stuck_on_accepted_epoch += 1;
                continue;
            }
            if !p.is_serving() {
                self.checker.fail(
                    now,
                    format!("liveness: peer {} is not serving at the end ({:?})", n.sid, p.role()),
                );
                continue;
            }
            if self.nodes[l].cfg.is_voter(n.sid) {
                serving_voters += 1;
            }
            let digest = r.committed().tree.digest();
            if r.applied() != lz || digest != ldigest {
                self.checker.fail(now, format!(
                    "peer {} ended at {:#x} (digest {digest:#x}), leader at {lz:#x} (digest {ldigest:#x})",
                    n.sid,
                    r.applied(),
                ));
            }
            // Every committed txn is on every serving replica (above its snapshot) and applied.
            self.checker.history(now, n.sid, "end", n.mirror.snapshot_zxid, &n.mirror.entries);
            let committed = self.checker.last_committed();
            if r.applied() < committed {
                self.checker.fail(
                    now,
                    format!(
                        "peer {} ended at {:#x}, before the last committed {committed:#x}",
                        n.sid,
                        r.applied()
                    ),
                );
            }
        }
        if 2 * serving_voters <= self.nodes[l].cfg.voters.len() {
            self.checker
                .fail(now, format!("liveness: only {serving_voters} voters serving at the end"));
        }
        let lstate = self.nodes[l].replica.as_ref().expect("up").committed();
        for n in &self.nodes {
            if let Some(r) = n.replica.as_ref() {
                if r.peer().is_serving() && r.committed().sessions != lstate.sessions {
                    self.checker.fail(
                        now,
                        format!("peer {} ended with other sessions than the leader", n.sid),
                    );
                }
            }
        }
        let orphans: Vec<String> = lstate
            .tree
            .sessions_with_ephemerals()
            .into_iter()
            .filter(|o| !lstate.sessions.contains_key(o))
            .map(|o| format!("{o:#x}"))
            .collect();
        if !orphans.is_empty() {
            self.checker.fail(
                now,
                format!("ephemeral nodes of closed sessions remain: {}", orphans.join(", ")),
            );
        }
        let tree = &self.nodes[l].replica.as_ref().expect("up").committed().tree;
        let missing: Vec<String> = self
            .checker
            .acked
            .iter()
            .filter(|(p, _)| !tree.exists(p))
            .map(|(p, z)| format!("{p} ({z:#x})"))
            .take(5)
            .collect();
        if !missing.is_empty() {
            self.checker.fail(
                now,
                format!("acknowledged writes missing from the final state: {}", missing.join(", ")),
            );
        }
        let committed_after_quiet =
            self.checker.last_committed().epoch() >= self.peer(l).expect("up").current_epoch();
        if !committed_after_quiet && self.counters.client_acks > 0 {
            self.checker.fail(now, "liveness: nothing committed in the final epoch".into());
        }
        let _ = self.seed;
    }
}
