//! Three pipelines as an ensemble — each the production pipeline over a member replica over
//! its own database — wired by an in-memory network that carries their election and quorum
//! traffic in order, driven step by step on a manual clock. Clients on a follower: a session
//! created through it, writes forwarded to the leader and answered when they come back
//! committed (matched by session and cxid), reads that see the client's own writes, a sync,
//! a watch fired by another server's write, and a session the leader expires.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::Instant;

use corral_server::config::Config;
use corral_server::db::{Database, DbOptions};
use corral_server::pipeline::{Conn, Input, ManualClock, NetOut, Out, Pipeline, Settings, Shared};
use corral_server::proto::{
    Acl, CreateRequest, Data, Id, PathRequest, PathWatchRequest, Request, SetDataRequest,
};
use corral_server::tree::TreeOptions;
use corral_server::zab::{Command, Event, PeerConfig, Role, Sid};

const TICK_MS: u64 = 200;

struct Node {
    shared: Arc<Shared>,
    pipeline: Pipeline,
    _durable: mpsc::Receiver<Input>,
}

struct Ensemble {
    clock: Arc<ManualClock>,
    nodes: BTreeMap<Sid, Node>,
    /// Open quorum connections: (low sid, high sid) → id.
    conns: BTreeMap<(Sid, Sid), u64>,
    next_conn: u64,
    _dirs: Vec<tempfile::TempDir>,
}

impl Ensemble {
    fn new(n: u64) -> Ensemble {
        Ensemble::with_config(n, |_| {})
    }

    fn with_config(n: u64, adjust: impl Fn(&mut PeerConfig)) -> Ensemble {
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let mut nodes = BTreeMap::new();
        let mut dirs = Vec::new();
        for id in 1..=n {
            let dir = tempfile::tempdir().unwrap();
            let mut config = Config::default_standalone();
            config.tick_time_ms = TICK_MS as u32;
            config.min_session_timeout_ms = 2 * TICK_MS as u32;
            config.max_session_timeout_ms = 20 * TICK_MS as u32;
            let mut settings = Settings::from_config(&config);
            settings.server_id = id;
            let shared = Arc::new(Shared::with_clock(
                settings,
                config,
                TreeOptions::default(),
                clock.clone(),
            ));
            let mut opts = DbOptions::new(dir.path());
            opts.inline_log = true;
            let (db, state, _) = Database::open(opts).unwrap();
            let mut cfg = PeerConfig::new(1..=n, []);
            cfg.tick_ms = TICK_MS as u32;
            adjust(&mut cfg);
            let (tx, rx) = mpsc::channel();
            let mut pipeline = Pipeline::member(shared.clone(), db, state, tx, cfg, id).unwrap();
            pipeline.begin();
            nodes.insert(id, Node { shared, pipeline, _durable: rx });
            dirs.push(dir);
        }
        Ensemble { clock, nodes, conns: BTreeMap::new(), next_conn: 1, _dirs: dirs }
    }

    fn key(a: Sid, b: Sid) -> (Sid, Sid) {
        (a.min(b), a.max(b))
    }

    /// Carries every message until the network is quiet, flushing every log between rounds.
    fn settle(&mut self) {
        for _ in 0..200 {
            let mut queue: VecDeque<(Sid, NetOut)> = VecDeque::new();
            for (id, n) in self.nodes.iter_mut() {
                n.pipeline.flush_log();
                for o in n.pipeline.take_network() {
                    queue.push_back((*id, o));
                }
            }
            if queue.is_empty() {
                return;
            }
            while let Some((from, o)) = queue.pop_front() {
                self.carry(from, o);
                for (id, n) in self.nodes.iter_mut() {
                    for o in n.pipeline.take_network() {
                        queue.push_back((*id, o));
                    }
                }
            }
        }
        panic!("the network never went quiet");
    }

    /// Carries one message of `from`'s network traffic.
    fn carry(&mut self, from: Sid, o: NetOut) {
        match o {
            NetOut::Command(Command::SendNotification { to, n }) => {
                self.deliver(to, Event::Notification { from, n });
            }
            NetOut::Command(Command::Connect { to }) => {
                let k = Self::key(from, to);
                if !self.conns.contains_key(&k) {
                    let conn = self.next_conn;
                    self.next_conn += 1;
                    self.conns.insert(k, conn);
                    self.deliver(to, Event::Connected { peer: from, conn });
                    self.deliver(from, Event::Connected { peer: to, conn });
                }
            }
            NetOut::Command(Command::Disconnect { peer, conn }) => {
                let k = Self::key(from, peer);
                if let Some(id) = self.conns.get(&k).copied() {
                    if conn.is_none() || conn == Some(id) {
                        self.conns.remove(&k);
                        self.deliver(peer, Event::Disconnected { peer: from, conn: Some(id) });
                    }
                }
            }
            NetOut::Command(Command::Send { to, packet }) => {
                if let Some(conn) = self.conns.get(&Self::key(from, to)).copied() {
                    self.deliver(to, Event::Packet { from, conn, packet });
                }
            }
            NetOut::Snapshot { to, zxid, state } => {
                if let Some(conn) = self.conns.get(&Self::key(from, to)).copied() {
                    let body = corral_server::sim::snap_payload(zxid, &state).expect("a SNAP");
                    self.deliver(to, Event::Snapshot { from, conn, body });
                }
            }
            NetOut::Command(other) => panic!("not network traffic: {other:?}"),
        }
    }

    fn deliver(&mut self, to: Sid, ev: Event) {
        if let Some(n) = self.nodes.get_mut(&to) {
            n.pipeline.step(Input::Peer(ev));
        }
    }

    fn half_tick(&mut self) {
        self.clock.advance(TICK_MS / 2);
        for n in self.nodes.values_mut() {
            n.pipeline.tick();
        }
        self.settle();
    }

    /// Ticks until one leader is established and every other server serves.
    fn elect(&mut self) -> Sid {
        for _ in 0..200 {
            self.half_tick();
            let roles: Vec<(Sid, Role)> =
                self.nodes.iter().map(|(id, n)| (*id, n.pipeline.role())).collect();
            let leader = roles
                .iter()
                .find(|(_, r)| matches!(r, Role::Leading { established: true, .. }))
                .map(|(id, _)| *id);
            let serving = roles.iter().all(|(_, r)| {
                matches!(
                    r,
                    Role::Leading { established: true, .. } | Role::Following { serving: true, .. }
                )
            });
            if let (Some(l), true) = (leader, serving) {
                return l;
            }
        }
        panic!("no leader");
    }

    fn node(&mut self, id: Sid) -> &mut Node {
        self.nodes.get_mut(&id).unwrap()
    }
}

struct Client {
    server: Sid,
    conn: Arc<Conn>,
    rx: tokio::sync::mpsc::UnboundedReceiver<Out>,
    touch: Arc<std::sync::atomic::AtomicU64>,
    xid: i32,
}

impl Client {
    fn connect(e: &mut Ensemble, server: Sid, conn_id: u64, timeout_ms: i32) -> Client {
        let node = e.node(server);
        let (out_tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let remote: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let conn = Arc::new(Conn::new(conn_id, remote, out_tx, node.shared.now_ms(), 1 << 24));
        node.shared.conns.lock().unwrap().insert(conn_id, conn.clone());
        let (done, mut done_rx) = tokio::sync::oneshot::channel();
        node.pipeline.step(Input::CreateSession {
            conn: conn.clone(),
            timeout_ms,
            read_only: None,
            done,
        });
        e.settle();
        let (_, touch) = done_rx.try_recv().expect("answered").expect("a session");
        Client { server, conn, rx, touch, xid: 0 }
    }

    fn send(&mut self, e: &mut Ensemble, req: Request) -> i32 {
        self.xid += 1;
        let node = e.node(self.server);
        self.conn.pending.fetch_add(1, Ordering::AcqRel);
        node.shared.outstanding.fetch_add(1, Ordering::AcqRel);
        let auth = Arc::new(vec![Id { scheme: "ip".into(), id: "127.0.0.1".into() }]);
        let op = req.opcode();
        node.pipeline.step(Input::Request {
            conn: self.conn.clone(),
            xid: self.xid,
            op,
            req,
            auth,
            received: Instant::now(),
        });
        self.xid
    }

    /// Everything queued to the client so far: replies as (xid, err, body bytes as debug text),
    /// and the number of watch events.
    fn take(&mut self) -> (Vec<(i32, i32, String)>, usize) {
        let mut replies = Vec::new();
        let mut events = 0;
        while let Ok(o) = self.rx.try_recv() {
            match o {
                Out::Reply { reply, .. } => {
                    replies.push((reply.xid, reply.err.code(), format!("{:?}", reply.body)))
                }
                Out::Frame(f) if f.len() > 8 && f[4..8] == [0xff; 4] => events += 1,
                Out::Shared(f) if f.len() > 8 && f[4..8] == [0xff; 4] => events += 1,
                Out::Close => panic!("the server closed the connection"),
                _ => {}
            }
        }
        (replies, events)
    }
}

fn create(path: &str, data: &[u8]) -> Request {
    Request::Create(CreateRequest {
        path: path.into(),
        data: Data::from(data.to_vec()),
        acl: vec![Acl { perms: 31, id: Id { scheme: "world".into(), id: "anyone".into() } }],
        flags: 0,
    })
}

#[test]
fn clients_of_a_follower_write_through_the_leader_and_read_their_writes() {
    let mut e = Ensemble::new(3);
    let leader = e.elect();
    let follower = (1..=3).find(|s| *s != leader).unwrap();
    let mut c = Client::connect(&mut e, follower, 1, 30_000);
    let mut l = Client::connect(&mut e, leader, 2, 30_000);

    // A write through the follower, with a read of it pipelined right behind it: the read
    // waits for the write to come back and sees it.
    let w = c.send(&mut e, create("/f", b"from-follower"));
    let r = c.send(&mut e, Request::GetData(PathWatchRequest { path: "/f".into(), watch: false }));
    let (before, _) = c.take();
    assert!(before.is_empty(), "nothing answered before the leader commits: {before:?}");
    e.settle();
    let (got, _) = c.take();
    assert_eq!(got.iter().map(|g| (g.0, g.1)).collect::<Vec<_>>(), vec![(w, 0), (r, 0)], "{got:?}");
    assert!(got[1].2.contains("from-follower"), "the read sees the write: {got:?}");
    for n in e.nodes.values() {
        assert!(n.shared.view.read().unwrap().node("/f").is_some(), "committed everywhere");
    }

    // A watch set on the follower fires for a write made through the leader; a sync through
    // the follower is answered after it, and a read behind the sync sees it.
    let watch =
        c.send(&mut e, Request::GetData(PathWatchRequest { path: "/f".into(), watch: true }));
    e.settle();
    assert_eq!(c.take().0.iter().map(|g| (g.0, g.1)).collect::<Vec<_>>(), vec![(watch, 0)]);
    l.send(
        &mut e,
        Request::SetData(SetDataRequest {
            path: "/f".into(),
            data: Data::from(b"v2".to_vec()),
            version: -1,
        }),
    );
    let s = c.send(&mut e, Request::Sync(PathRequest { path: "/f".into() }));
    let r2 = c.send(&mut e, Request::GetData(PathWatchRequest { path: "/f".into(), watch: false }));
    e.settle();
    let (got, events) = c.take();
    assert_eq!(events, 1, "the watch fired");
    assert_eq!(
        got.iter().map(|g| (g.0, g.1)).collect::<Vec<_>>(),
        vec![(s, 0), (r2, 0)],
        "{got:?}"
    );
    assert!(got[1].2.contains("v2"), "read after sync sees the leader's write: {got:?}");
    assert_eq!(l.take().0.len(), 1, "the leader's client got its reply");

    // The follower's client goes silent: the leader's tracker expires the session (its
    // touches stop reaching the leader), and the follower ends the connection.
    let mut l_touch_ok = true;
    for _ in 0..6 {
        let now = e.node(leader).shared.now_ms();
        l.touch.store(now, Ordering::Relaxed);
        e.half_tick();
        l_touch_ok &= !l.conn.session_ended.load(Ordering::Acquire);
    }
    assert!(l_touch_ok, "a session that keeps talking stays");
    let _ = &c.touch;
    // Timeouts are clamped to 20 ticks (4 s): nothing expired yet; a short session (two
    // ticks) does, once the leader's tracker has not heard of it for two ticks.
    assert!(!c.conn.session_ended.load(Ordering::Acquire));
    let short = Client::connect(&mut e, follower, 3, 400);
    for _ in 0..8 {
        let now = e.node(leader).shared.now_ms();
        l.touch.store(now, Ordering::Relaxed);
        c.touch.store(now, Ordering::Relaxed);
        e.half_tick();
    }
    assert!(short.conn.session_ended.load(Ordering::Acquire), "expired by the leader, ended here");
    assert!(!c.conn.session_ended.load(Ordering::Acquire), "touched through the follower's pings");
}

/// Three servers whose leader keeps at most `outstanding_max` proposals in flight, elected,
/// with a client on the leader (session 1) and one on a follower (session 2).
fn bounded_with_two_clients(outstanding_max: usize) -> (Ensemble, Sid, Sid, Client, Client) {
    let mut e = Ensemble::with_config(3, |cfg| cfg.outstanding_max = outstanding_max);
    let leader = e.elect();
    let follower = (1..=3).find(|s| *s != leader).unwrap();
    let l = Client::connect(&mut e, leader, 1, 30_000);
    let f = Client::connect(&mut e, follower, 2, 30_000);
    (e, leader, follower, l, f)
}

/// A leader with `outstanding_max` proposals in flight (here 2, its log not yet flushed, so no
/// acknowledgement comes) may propose no more: its own clients' requests and the learners'
/// forwarded ones wait, in order, and are proposed as commits make room. None is refused, no
/// connection is closed, and each client's replies come in its request order, a read behind
/// its writes seeing them. (It closed its clients' connections and dropped learners' requests.)
#[test]
fn a_leader_at_its_bound_on_proposals_holds_requests_in_order() {
    let (mut e, leader, follower, mut l, mut f) = bounded_with_two_clients(2);

    let mut sent_l = Vec::new();
    let mut sent_f = Vec::new();
    for i in 0..8 {
        sent_l.push(l.send(&mut e, create(&format!("/l{i}"), b"x")));
        sent_f.push(f.send(&mut e, create(&format!("/f{i}"), b"y")));
    }
    let read =
        l.send(&mut e, Request::GetData(PathWatchRequest { path: "/l7".into(), watch: false }));
    sent_l.push(read);
    assert!(
        e.node(leader).pipeline.stalled() >= 6,
        "the leader holds its clients' requests past its two proposals in flight"
    );
    // The follower's writes reach the leader while it is still at its bound (its log is
    // flushed only as the network settles: two proposals commit at a time).
    let mut held_seen = 0;
    for _ in 0..100 {
        held_seen = held_seen.max(e.node(leader).pipeline.replica().held());
        for o in e.node(follower).pipeline.take_network() {
            if let NetOut::Command(Command::Send { to, packet }) = o {
                let conn = e.conns[&Ensemble::key(follower, to)];
                e.nodes.get_mut(&to).unwrap().pipeline.step(Input::Peer(Event::Packet {
                    from: follower,
                    conn,
                    packet,
                }));
            }
        }
        held_seen = held_seen.max(e.node(leader).pipeline.replica().held());
        if held_seen > 0 {
            break;
        }
    }
    assert!(held_seen > 0, "the leader holds the follower's forwarded writes");
    e.settle();
    let (got_l, _) = l.take();
    let (got_f, _) = f.take();
    assert_eq!(got_l.iter().map(|g| g.0).collect::<Vec<_>>(), sent_l, "{got_l:?}");
    assert_eq!(got_f.iter().map(|g| g.0).collect::<Vec<_>>(), sent_f, "{got_f:?}");
    assert!(got_l.iter().chain(&got_f).all(|g| g.1 == 0), "every request succeeded");
    assert!(got_l.last().unwrap().2.contains("data: \"x\""), "the read sees its write: {got_l:?}");
    assert_eq!(e.node(leader).pipeline.stalled(), 0);
    assert_eq!(e.node(leader).pipeline.replica().held(), 0);
    for n in e.nodes.values() {
        let view = n.shared.view.read().unwrap();
        for i in 0..8 {
            assert!(
                view.node(&format!("/l{i}")).is_some() && view.node(&format!("/f{i}")).is_some()
            );
        }
    }
}

/// A learner that forwards more than the leader may hold (16 × outstanding_max requests
/// waiting for room) has its connection closed; the leader's held queue stays at the bound,
/// and the leader keeps serving: its own client's write is answered once the network settles.
#[test]
fn a_learner_past_the_leaders_held_bound_is_disconnected_and_the_leader_serves_on() {
    let (mut e, leader, follower, mut l, mut f) = bounded_with_two_clients(1);
    // 40 writes through the follower, carried to the leader without flushing its log: one is
    // proposed, 16 are held, the rest are over the bound.
    for i in 0..40 {
        f.send(&mut e, create(&format!("/f{i}"), b"y"));
    }
    let mut disconnected = false;
    let mut held_max = 0;
    for o in e.node(follower).pipeline.take_network() {
        if let NetOut::Command(Command::Send { to, packet }) = o {
            // Once disconnected, what the learner still sent is lost with its connection.
            let Some(conn) = e.conns.get(&Ensemble::key(follower, to)).copied() else { continue };
            let n = e.nodes.get_mut(&to).unwrap();
            n.pipeline.step(Input::Peer(Event::Packet { from: follower, conn, packet }));
            held_max = held_max.max(n.pipeline.replica().held());
            for out in n.pipeline.take_network() {
                disconnected |= matches!(
                    out,
                    NetOut::Command(Command::Disconnect { peer, .. }) if peer == follower
                );
                e.carry(to, out);
            }
        }
    }
    assert_eq!(held_max, 16, "held up to the bound, no further");
    assert!(disconnected, "the learner that sent more was disconnected");
    // The leader serves on: its own client's write is answered (the follower resyncs; its
    // client's connection is closed, as when a leader goes).
    let w = l.send(&mut e, create("/l", b"x"));
    for _ in 0..20 {
        e.half_tick();
    }
    let (got, _) = l.take();
    assert!(got.iter().any(|g| g.0 == w && g.1 == 0), "{got:?}");
    assert!(matches!(e.node(leader).pipeline.role(), Role::Leading { established: true, .. }));
    assert!(e.node(leader).shared.view.read().unwrap().node("/l").is_some());
    drop(f);
}
