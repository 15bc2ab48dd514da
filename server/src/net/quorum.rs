//! The ensemble's transports, in ZooKeeper's formats, on plain threads (a server has a few
//! peers; ZooKeeper too runs a thread or two per peer connection).
//!
//! * **Election** (QuorumCnxManager's protocol, on each member's election port). The side that
//!   opens a connection writes a header: `long protocolVersion` (-65536), `long sid`, `int len`
//!   and `len` bytes of its `host:port` (at most 2048); a first long of 0 or more is a pre-3.5
//!   peer's sid with no more header. Only the larger sid keeps a connection: a smaller sid that
//!   dials closes its connection after the header, and a larger sid that receives one from a
//!   smaller sid closes it and dials back. Messages are `int length` (1..=512 KiB) and a
//!   notification. Each peer has one sender queue holding at most a few notifications (the
//!   oldest go first: a newer vote replaces what an older one said), and connections are
//!   dialled again, with a timeout, whenever there is something to send.
//! * **Quorum** (a stream of jute `QuorumPacket` records, no length prefix). Every member
//!   listens on its quorum port; a learner dials its leader's when its peer says `Connect`.
//!   An accepted connection is known by the FOLLOWERINFO / OBSERVERINFO it must start with
//!   (the learner's sid). After SNAP the leader writes the snapshot body and "BenWasHere" on
//!   the same stream; the reader finds its end by parsing it, up to a size cap. Each
//!   connection has a bounded send queue: a peer that does not read is disconnected rather
//!   than buffered without end.
//!
//! What arrives goes to the pipeline as [`Input::Peer`]; what the pipeline sends comes in
//! through [`QuorumNet::carry`]. Connections are numbered ([`ConnId`]) so that a late report
//! of an old socket cannot be taken for its replacement.

use crate::db::{ReceivedSnapshot, SnapReceiver};
use crate::zxid::Zxid;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use bytes::Bytes;

use crate::pipeline::{Input, NetOut};
use crate::proto::{JuteError, Reader};
use crate::zab::wire::{
    ElectionHello, LearnerInfo, Notification, PacketType, QuorumPacket, PROTOCOL_VERSION,
};
use crate::zab::{Command, ConnId, Event, Sid};

pub use crate::zab::wire::{ELECTION_ADDRESS_MAX, ELECTION_PROTOCOL_V1, ELECTION_PROTOCOL_V2};
/// The largest election message (QuorumCnxManager's PACKETMAXSIZE).
pub const ELECTION_MESSAGE_MAX: usize = 512 * 1024;
/// Notifications queued for one peer at most (ZooKeeper keeps one; a few are harmless).
const ELECTION_QUEUE: usize = 4;
/// Accepted connections (per port) that have not yet sent their header or first packet; more
/// are closed at once. Each waits at most cnxTimeout: whoever opens connections and sends
/// nothing holds at most this many threads.
pub const HANDSHAKES_MAX: usize = 32;

/// Writes a SNAP payload (the snapshot body of `state`, then the signature) onto `w` as it is
/// serialized, through a buffer; reports its progress and size in the log.
fn write_snapshot(w: &mut TcpStream, state: &crate::db::State) -> io::Result<()> {
    struct Counting<'a> {
        w: std::io::BufWriter<&'a mut TcpStream>,
        n: usize,
        next_report: usize,
        started: std::time::Instant,
    }
    impl Write for Counting<'_> {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let k = self.w.write(b)?;
            self.n += k;
            if self.n >= self.next_report {
                tracing::info!(
                    mib = self.n >> 20,
                    secs = self.started.elapsed().as_secs(),
                    "sending the SNAP payload"
                );
                self.next_report += SNAP_PROGRESS_BYTES;
            }
            Ok(k)
        }
        fn flush(&mut self) -> io::Result<()> {
            self.w.flush()
        }
    }
    let mut c = Counting {
        w: std::io::BufWriter::with_capacity(256 << 10, w),
        n: 0,
        next_report: SNAP_PROGRESS_BYTES,
        started: std::time::Instant::now(),
    };
    state.write_body(&mut c)?;
    let mut sig = Vec::new();
    crate::zab::wire::write_snap_payload(&mut sig, &[]);
    c.write_all(&sig)?;
    c.flush()?;
    tracing::info!(bytes = c.n, ms = c.started.elapsed().as_millis() as u64, "SNAP payload sent");
    Ok(())
}

/// [`write_snapshot`] on a thread of its own at a lower priority (nice 10), while this writer
/// waits: serialising a large tree takes a core for seconds, and on a busy host the leader's
/// pipeline, log and the proposals to other learners go first. (The writer thread itself keeps
/// its priority: an unprivileged process could not raise it back.)
fn write_snapshot_at_low_priority(w: &TcpStream, state: &crate::db::State) -> io::Result<()> {
    let mut s = w.try_clone()?;
    at_low_priority("corral-snap-send", move || write_snapshot(&mut s, state))
}

/// Runs `f` on a thread of its own named `name` at a lower priority (nice 10), waiting for it;
/// a panic there is an error here.
fn at_low_priority<T: Send>(name: &str, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    std::thread::scope(|scope| {
        let t = std::thread::Builder::new().name(name.into()).spawn_scoped(scope, || {
            corral_engine::io::lower_thread_priority();
            f()
        })?;
        t.join().unwrap_or_else(|_| Err(io::Error::other(format!("thread {name} panicked"))))
    })
}

/// A SNAP payload being received is reported in the log every this many bytes.
const SNAP_PROGRESS_BYTES: usize = 64 << 20;

/// Where a member listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberAddr {
    /// Its quorum port (the learners' connection to the leader).
    pub quorum: SocketAddr,
    /// Its election port.
    pub election: SocketAddr,
    /// Its host as its `server.N` line names it (quorum Kerberos principals name it).
    pub host: String,
}

/// The transports' settings.
#[derive(Debug, Clone)]
pub struct QuorumNetConfig {
    /// This server.
    pub me: Sid,
    /// Every member (this one included), by sid.
    pub members: BTreeMap<Sid, MemberAddr>,
    /// Connect timeout (cnxTimeout), and the time allowed for an election header.
    pub connect_timeout: Duration,
    /// The largest quorum packet accepted (jute.maxbuffer plus room for the header).
    pub packet_bytes_max: usize,
    /// The largest SNAP payload accepted.
    pub snapshot_bytes_max: usize,
    /// Where a received SNAP payload is written as it arrives (the database's snapshot
    /// store); `None`: written when installed.
    pub snapshot_spool: Option<corral_engine::snapshot::SnapshotStore>,
    /// How a received snapshot's tree is built (extended types).
    pub tree: crate::tree::TreeOptions,
    /// Packets queued for one quorum connection at most; past it the connection is closed.
    pub send_queue_max: usize,
    /// Past `send_queue_max` packets, a connection's queue may still hold this many bytes
    /// (bursts of small packets: the proposals made while a SNAP payload goes out, a
    /// learner's acks for them); past both, the connection is closed.
    pub send_backlog_bytes_max: usize,
    /// Listen on every interface (quorumListenOnAllIPs) rather than the member's address.
    pub listen_on_all_ips: bool,
    /// Attempts to bind the election port, a second apart (electionPortBindRetry; 0: no
    /// end).
    pub election_port_bind_retry: u32,
    /// TLS on both ports (sslQuorum, portUnification), if configured.
    pub tls: Option<Arc<super::quorum_tls::QuorumTls>>,
    /// SASL on both ports (quorum.auth.*), if configured.
    pub sasl: Option<Arc<super::quorum_sasl::QuorumSasl>>,
}

/// The running transports.
#[derive(Clone)]
pub struct QuorumNet {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for QuorumNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuorumNet").field("quorum", &self.inner.quorum_addr).finish()
    }
}

struct Inner {
    cfg: QuorumNetConfig,
    /// Where each member listens: `cfg.members`, then every member of each membership
    /// activated since (a reconfig adds servers; removed ones stay, harmlessly).
    members: Mutex<BTreeMap<Sid, MemberAddr>>,
    tx: Mutex<Sender<Input>>,
    /// Election connections by peer.
    election: Mutex<BTreeMap<Sid, Arc<Outbox>>>,
    /// Peers an election connection is being dialled to.
    dialing: Mutex<BTreeSet<Sid>>,
    /// The newest notification for a peer with no election connection yet: sent first on the
    /// connection once there is one (whichever side opens it), so that it is not lost while
    /// the connection is being set up.
    unsent: Mutex<BTreeMap<Sid, Bytes>>,
    /// Quorum connections by number: (peer, outbox).
    quorum: Mutex<BTreeMap<ConnId, (Sid, Arc<Outbox>)>>,
    next_conn: AtomicU64,
    stop: AtomicBool,
    /// Accepted connections still in their handshake: (election port, quorum port).
    handshakes: [std::sync::atomic::AtomicUsize; 2],
    /// Bound addresses (the ports may have been 0 in tests).
    election_addr: SocketAddr,
    quorum_addr: SocketAddr,
}

/// One accepted connection in its handshake (see [`HANDSHAKES_MAX`]); freed when dropped.
struct HandshakeSlot {
    net: QuorumNet,
    which: usize,
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        self.net.inner.handshakes[self.which].fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a connection's writer sends: bytes, or a SNAP payload written from the state as it
/// goes (never the whole body in memory).
enum OutItem {
    Bytes(Bytes),
    Snapshot(Box<crate::db::State>),
}

/// What an [`Outbox`] holds.
#[derive(Default)]
struct Queue {
    items: VecDeque<OutItem>,
    closed: bool,
    /// Bytes of the queued `Bytes` items.
    bytes: usize,
}

/// What a quorum connection carried (ZooKeeper's LearnerHandler figures, for the
/// AdminServer's `observers`).
#[derive(Debug, Default)]
pub struct ConnStats {
    /// Packets written.
    pub packets_sent: AtomicU64,
    /// Packets read.
    pub packets_received: AtomicU64,
    /// REQUEST packets read (a learner's forwarded client requests).
    pub requests: AtomicU64,
    /// The newest zxid of a PROPOSAL, COMMIT or INFORM sent.
    pub last_zxid: std::sync::atomic::AtomicI64,
}

/// One quorum connection as the AdminServer's `observers` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumConnInfo {
    /// The peer.
    pub peer: Sid,
    /// Its address.
    pub remote: Option<SocketAddr>,
    /// When the connection was set up, ms since the epoch.
    pub established_ms: i64,
    /// Packets queued for it, and their bytes.
    pub queued_packets: i64,
    /// Bytes queued for it.
    pub queued_bytes: i64,
    /// Packets sent.
    pub packets_sent: i64,
    /// Packets received.
    pub packets_received: i64,
    /// Requests it forwarded.
    pub requests: i64,
    /// The newest zxid proposed, committed or informed to it.
    pub last_zxid: i64,
}

/// A connection's send queue, drained by its writer thread.
struct Outbox {
    q: Mutex<Queue>,
    ready: Condvar,
    stream: TcpStream,
    stats: ConnStats,
    /// ms since the epoch.
    established_ms: i64,
    /// Messages queued at most, unless they hold no more than `backlog_bytes`: a burst of
    /// small packets — the proposals made while a large SNAP payload goes out (at ten
    /// million znodes, seconds of them), a learner's acks for them once it has the snapshot
    /// — must not close the connection, or the learner starts over with a new SNAP, forever.
    cap: usize,
    backlog_bytes: usize,
    /// Drop the oldest message when full (election) instead of closing (quorum).
    lossy: bool,
}

impl Outbox {
    fn new(stream: TcpStream, cap: usize, lossy: bool) -> Arc<Outbox> {
        Self::with_backlog(stream, cap, 0, lossy)
    }

    fn with_backlog(
        stream: TcpStream,
        cap: usize,
        backlog_bytes: usize,
        lossy: bool,
    ) -> Arc<Outbox> {
        let established_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        Arc::new(Outbox {
            q: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            stream,
            stats: ConnStats::default(),
            established_ms,
            cap,
            backlog_bytes,
            lossy,
        })
    }

    /// Queues a message; false if the connection is closed (or was closed now, being full).
    fn push(&self, m: Bytes) -> bool {
        self.push_item(OutItem::Bytes(m))
    }

    fn push_item(&self, m: OutItem) -> bool {
        let mut q = self.q.lock().unwrap_or_else(|p| p.into_inner());
        if q.closed {
            return false;
        }
        let len = match &m {
            OutItem::Bytes(b) => b.len(),
            OutItem::Snapshot(_) => 0,
        };
        if q.items.len() >= self.cap && q.bytes + len > self.backlog_bytes {
            if self.lossy {
                if let Some(OutItem::Bytes(b)) = q.items.pop_front() {
                    q.bytes -= b.len();
                }
            } else {
                q.closed = true;
                drop(q);
                self.ready.notify_all();
                let _ = self.stream.shutdown(Shutdown::Both);
                return false;
            }
        }
        q.bytes += len;
        q.items.push_back(m);
        drop(q);
        self.ready.notify_all();
        true
    }

    fn close(&self) {
        self.q.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
        self.ready.notify_all();
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// The writer: sends what is queued until the connection closes.
    fn run(&self) {
        let mut w = match self.stream.try_clone() {
            Ok(s) => s,
            Err(_) => return self.close(),
        };
        loop {
            let m = {
                let mut q = self.q.lock().unwrap_or_else(|p| p.into_inner());
                loop {
                    if q.closed {
                        return;
                    }
                    if let Some(m) = q.items.pop_front() {
                        if let OutItem::Bytes(b) = &m {
                            q.bytes -= b.len();
                        }
                        break m;
                    }
                    q = self.ready.wait(q).unwrap_or_else(|p| p.into_inner());
                }
            };
            let sent = match m {
                OutItem::Bytes(b) => w.write_all(&b),
                OutItem::Snapshot(state) => write_snapshot_at_low_priority(&w, &state),
            };
            if sent.is_err() {
                return self.close();
            }
            self.stats.packets_sent.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl QuorumNet {
    /// Binds this member's election and quorum ports and starts accepting; what arrives is sent
    /// to the pipeline through `tx`.
    pub fn start(cfg: QuorumNetConfig, tx: Sender<Input>) -> io::Result<QuorumNet> {
        let me = cfg.members.get(&cfg.me).cloned().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("no address for server {}", cfg.me))
        })?;
        let bind = |a: SocketAddr| {
            if cfg.listen_on_all_ips {
                SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), a.port())
            } else {
                a
            }
        };
        // electionPortBindRetry: the election port is tried again a second later (a previous
        // process may still hold it), up to that many attempts (0: without end).
        let mut attempt = 1u32;
        let el = loop {
            match TcpListener::bind(bind(me.election)) {
                Ok(l) => break l,
                Err(e)
                    if cfg.election_port_bind_retry == 0
                        || attempt < cfg.election_port_bind_retry =>
                {
                    tracing::warn!(
                        addr = %bind(me.election),
                        error = %e,
                        attempt,
                        of = cfg.election_port_bind_retry,
                        "cannot bind the election port; retrying in 1 s"
                    );
                    attempt += 1;
                    std::thread::sleep(Duration::from_secs(1));
                }
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!(
                            "binding the election port {} ({attempt} attempts, \
                             electionPortBindRetry): {e}",
                            bind(me.election)
                        ),
                    ))
                }
            }
        };
        let ql = TcpListener::bind(bind(me.quorum))?;
        let inner = Arc::new(Inner {
            election_addr: el.local_addr()?,
            quorum_addr: ql.local_addr()?,
            members: Mutex::new(cfg.members.clone()),
            cfg,
            tx: Mutex::new(tx),
            election: Mutex::new(BTreeMap::new()),
            dialing: Mutex::new(BTreeSet::new()),
            unsent: Mutex::new(BTreeMap::new()),
            quorum: Mutex::new(BTreeMap::new()),
            next_conn: AtomicU64::new(1),
            stop: AtomicBool::new(false),
            handshakes: Default::default(),
        });
        let net = QuorumNet { inner };
        let n = net.clone();
        std::thread::Builder::new()
            .name("corral-election-accept".into())
            .spawn(move || n.accept_election(el))?;
        let n = net.clone();
        std::thread::Builder::new()
            .name("corral-quorum-accept".into())
            .spawn(move || n.accept_quorum(ql))?;
        tracing::info!(
            election = %net.inner.election_addr,
            quorum = %net.inner.quorum_addr,
            "listening for the ensemble"
        );
        Ok(net)
    }

    /// The bound election address.
    pub fn election_addr(&self) -> SocketAddr {
        self.inner.election_addr
    }

    /// The bound quorum address.
    pub fn quorum_addr(&self) -> SocketAddr {
        self.inner.quorum_addr
    }

    /// Stops accepting and closes every connection.
    pub fn stop(&self) {
        self.inner.stop.store(true, Ordering::Release);
        for o in self.inner.election.lock().unwrap_or_else(|p| p.into_inner()).values() {
            o.close();
        }
        for (_, o) in self.inner.quorum.lock().unwrap_or_else(|p| p.into_inner()).values() {
            o.close();
        }
        // Wake the accept loops.
        let _ = TcpStream::connect_timeout(&self.inner.election_addr, Duration::from_millis(100));
        let _ = TcpStream::connect_timeout(&self.inner.quorum_addr, Duration::from_millis(100));
    }

    fn deliver(&self, ev: Event) {
        let _ = self.inner.tx.lock().unwrap_or_else(|p| p.into_inner()).send(Input::Peer(ev));
    }

    /// Every quorum connection's figures (a leader's: one per learner).
    pub fn connections(&self) -> Vec<QuorumConnInfo> {
        let q = self.inner.quorum.lock().unwrap_or_else(|p| p.into_inner());
        q.values()
            .map(|(peer, o)| {
                let (queued_packets, queued_bytes) = {
                    let queue = o.q.lock().unwrap_or_else(|p| p.into_inner());
                    (queue.items.len() as i64, queue.bytes as i64)
                };
                QuorumConnInfo {
                    peer: *peer,
                    remote: o.stream.peer_addr().ok(),
                    established_ms: o.established_ms,
                    queued_packets,
                    queued_bytes,
                    packets_sent: o.stats.packets_sent.load(Ordering::Relaxed) as i64,
                    packets_received: o.stats.packets_received.load(Ordering::Relaxed) as i64,
                    requests: o.stats.requests.load(Ordering::Relaxed) as i64,
                    last_zxid: o.stats.last_zxid.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// Zeroes every quorum connection's packet counts (`orst`).
    pub fn reset_connection_stats(&self) {
        let q = self.inner.quorum.lock().unwrap_or_else(|p| p.into_inner());
        for (_, o) in q.values() {
            o.stats.packets_sent.store(0, Ordering::Relaxed);
            o.stats.packets_received.store(0, Ordering::Relaxed);
            o.stats.requests.store(0, Ordering::Relaxed);
        }
    }

    fn member(&self, sid: Sid) -> Option<MemberAddr> {
        self.inner.members.lock().unwrap_or_else(|p| p.into_inner()).get(&sid).cloned()
    }

    /// Learns where the members of an activated membership listen (`server.N` lines whose
    /// addresses resolve; a member already known keeps its entry if its line does not).
    pub fn add_members(&self, members: BTreeMap<Sid, MemberAddr>) {
        let mut m = self.inner.members.lock().unwrap_or_else(|p| p.into_inner());
        for (sid, addr) in members {
            if m.get(&sid) != Some(&addr) {
                tracing::info!(peer = sid, quorum = %addr.quorum, election = %addr.election, "member address from the active membership");
                m.insert(sid, addr);
            }
        }
    }

    /// The hosts of the members, as their `server.N` lines name them (quorum Kerberos lets
    /// in only principals of these hosts, as ZooKeeper's authzHosts).
    fn member_hosts(&self) -> Vec<String> {
        let m = self.inner.members.lock().unwrap_or_else(|p| p.into_inner());
        m.values().map(|a| a.host.clone()).collect()
    }

    fn stopped(&self) -> bool {
        self.inner.stop.load(Ordering::Acquire)
    }

    /// Carries what the pipeline sends: notifications, quorum packets, SNAP payloads,
    /// connections to open or close. Never blocks on a socket.
    pub fn carry(&self, out: Vec<NetOut>) {
        for o in out {
            match o {
                NetOut::Command(Command::SendNotification { to, n }) => self.notify(to, n),
                NetOut::Command(Command::Connect { to }) => self.connect_quorum(to),
                NetOut::Command(Command::Disconnect { peer, conn }) => {
                    let mut q = self.inner.quorum.lock().unwrap_or_else(|p| p.into_inner());
                    let ids: Vec<ConnId> = q
                        .iter()
                        .filter(|(id, (p, _))| *p == peer && conn.is_none_or(|c| c == **id))
                        .map(|(id, _)| *id)
                        .collect();
                    for id in ids {
                        if let Some((_, o)) = q.remove(&id) {
                            o.close();
                        }
                    }
                }
                NetOut::Command(Command::Activate { text, .. }) => {
                    if let Some(m) = crate::zab::Membership::parse_bytes(&text) {
                        self.add_members(member_addrs(&m));
                    }
                }
                NetOut::Command(Command::Send { to, packet }) => {
                    if matches!(
                        packet.kind,
                        PacketType::Proposal | PacketType::Commit | PacketType::Inform
                    ) {
                        let q = self.inner.quorum.lock().unwrap_or_else(|p| p.into_inner());
                        if let Some((_, (_, o))) = q.iter().rev().find(|(_, (p, _))| *p == to) {
                            o.stats.last_zxid.fetch_max(packet.zxid, Ordering::Relaxed);
                        }
                    }
                    self.send_quorum(to, Bytes::from(packet.encode()));
                }
                NetOut::Snapshot { to, state, .. } => {
                    tracing::info!(peer = to, "sending the SNAP payload");
                    self.send_quorum_item(to, OutItem::Snapshot(state));
                }
                NetOut::Command(other) => {
                    tracing::error!(command = ?other, "not network traffic; ignored");
                }
            }
        }
    }

    fn send_quorum(&self, to: Sid, m: Bytes) {
        self.send_quorum_item(to, OutItem::Bytes(m))
    }

    fn send_quorum_item(&self, to: Sid, m: OutItem) {
        let q = self.inner.quorum.lock().unwrap_or_else(|p| p.into_inner());
        // The newest connection with that peer.
        if let Some((_, (_, o))) = q.iter().rev().find(|(_, (p, _))| *p == to) {
            if !o.push_item(m) {
                tracing::warn!(peer = to, "quorum connection closed (or its send queue full)");
            }
        }
    }

    // ----- election -----

    fn notify(&self, to: Sid, n: Notification) {
        let payload = n.encode();
        let mut m = Vec::with_capacity(4 + payload.len());
        m.extend_from_slice(&(payload.len() as i32).to_be_bytes());
        m.extend_from_slice(&payload);
        let m = Bytes::from(m);
        {
            // Lock order: unsent, then election (adopt_election takes them so too).
            let mut unsent = self.inner.unsent.lock().unwrap_or_else(|p| p.into_inner());
            let mut election = self.inner.election.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(o) = election.get(&to).cloned() {
                if o.push(m.clone()) {
                    return;
                }
                election.remove(&to);
            }
            unsent.insert(to, m);
        }
        self.dial_election(to);
    }

    /// Opens the election connection to `to` (in the background). A smaller sid writes its
    /// header and closes: the larger one dials back.
    fn dial_election(&self, to: Sid) {
        if self.stopped() || to == self.inner.cfg.me {
            return;
        }
        let Some(addr) = self.member(to).map(|m| m.election) else { return };
        if !self.inner.dialing.lock().unwrap_or_else(|p| p.into_inner()).insert(to) {
            return;
        }
        let n = self.clone();
        let spawned =
            std::thread::Builder::new().name("corral-election-dial".into()).spawn(move || {
                let r = n.dial_election_now(to, addr);
                n.inner.dialing.lock().unwrap_or_else(|p| p.into_inner()).remove(&to);
                if let Err(e) = r {
                    tracing::debug!(peer = to, %addr, error = %e, "election connection failed");
                }
            });
        if spawned.is_err() {
            self.inner.dialing.lock().unwrap_or_else(|p| p.into_inner()).remove(&to);
        }
    }

    /// A dialled connection, through TLS when the quorum uses it.
    fn secure_dialled(&self, s: TcpStream, addr: SocketAddr) -> io::Result<TcpStream> {
        match &self.inner.cfg.tls {
            None => Ok(s),
            Some(t) => t.dial(s, addr, self.inner.cfg.connect_timeout),
        }
    }

    /// An accepted connection, through TLS when it is one (or refused when it must be and is
    /// not).
    fn secure_accepted(&self, s: TcpStream) -> io::Result<TcpStream> {
        match &self.inner.cfg.tls {
            None => Ok(s),
            Some(t) => {
                let remote = s.peer_addr()?;
                t.accept(s, remote, self.inner.cfg.connect_timeout)
            }
        }
    }

    fn dial_election_now(&self, to: Sid, addr: SocketAddr) -> io::Result<()> {
        let s = TcpStream::connect_timeout(&addr, self.inner.cfg.connect_timeout)?;
        s.set_nodelay(true)?;
        let mut s = self.secure_dialled(s, addr)?;
        let me = self.inner.cfg.me;
        let my_addr = self.member(me).map(|m| m.election.to_string());
        let hello = ElectionHello {
            protocol: Some(ELECTION_PROTOCOL_V1),
            sid: me as i64,
            address: my_addr.unwrap_or_default(),
        };
        s.write_all(&hello.encode())?;
        if let Some(q) = &self.inner.cfg.sasl {
            let host = self.member(to).map(|m| m.host).unwrap_or_default();
            q.learn(&mut s, &host)?;
        }
        if to > me {
            // The larger sid keeps connections: it will dial us.
            let _ = s.shutdown(Shutdown::Both);
            return Ok(());
        }
        self.adopt_election(to, s)
    }

    /// Takes a handshake slot on listener `which` (0 election, 1 quorum), if one is free.
    fn handshake_slot(&self, which: usize) -> Option<HandshakeSlot> {
        let c = &self.inner.handshakes[which];
        let mut n = c.load(Ordering::Relaxed);
        loop {
            if n >= HANDSHAKES_MAX {
                return None;
            }
            match c.compare_exchange_weak(n, n + 1, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Some(HandshakeSlot { net: self.clone(), which }),
                Err(now) => n = now,
            }
        }
    }

    fn accept_election(&self, l: TcpListener) {
        for s in l.incoming() {
            if self.stopped() {
                return;
            }
            let Ok(s) = s else { continue };
            let Some(slot) = self.handshake_slot(0) else {
                tracing::warn!(
                    max = HANDSHAKES_MAX,
                    "too many election connections in their handshake; closing one"
                );
                continue;
            };
            let n = self.clone();
            let _ =
                std::thread::Builder::new().name("corral-election-in".into()).spawn(move || {
                    if let Err(e) = n.accept_election_one(s, slot) {
                        ELECTION_REFUSALS.log("election", &e);
                    }
                });
        }
    }

    fn accept_election_one(&self, s: TcpStream, slot: HandshakeSlot) -> io::Result<()> {
        let mut s = self.secure_accepted(s)?;
        s.set_read_timeout(Some(self.inner.cfg.connect_timeout))?;
        s.set_nodelay(true)?;
        let sid = ElectionHello::read_from(&mut s)?.sid;
        if let Some(q) = &self.inner.cfg.sasl {
            q.serve(&mut s, self.inner.cfg.connect_timeout, &self.member_hosts())?;
        }
        let sid = sid as Sid;
        if self.member(sid).is_none() || sid == self.inner.cfg.me {
            return Err(bad(format!("election connection from unknown server {sid}")));
        }
        drop(slot);
        s.set_read_timeout(None)?;
        if sid < self.inner.cfg.me {
            // Only the larger sid keeps a connection: close it and dial back.
            let _ = s.shutdown(Shutdown::Both);
            self.dial_election(sid);
            return Ok(());
        }
        self.adopt_election(sid, s)
    }

    /// Makes `s` the election connection with `peer` (replacing an older one) and runs its
    /// reader on this thread.
    fn adopt_election(&self, peer: Sid, s: TcpStream) -> io::Result<()> {
        let out = Outbox::new(s.try_clone()?, ELECTION_QUEUE, true);
        {
            let mut unsent = self.inner.unsent.lock().unwrap_or_else(|p| p.into_inner());
            let mut election = self.inner.election.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(old) = election.insert(peer, out.clone()) {
                old.close();
            }
            if let Some(m) = unsent.remove(&peer) {
                out.push(m);
            }
        }
        let w = out.clone();
        std::thread::Builder::new().name("corral-election-out".into()).spawn(move || w.run())?;
        let r = self.read_election(peer, s);
        out.close();
        let mut map = self.inner.election.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(&peer).is_some_and(|o| Arc::ptr_eq(o, &out)) {
            map.remove(&peer);
        }
        r
    }

    fn read_election(&self, from: Sid, mut s: TcpStream) -> io::Result<()> {
        loop {
            let len = read_i32(&mut s)?;
            if len <= 0 || len as usize > ELECTION_MESSAGE_MAX {
                return Err(bad(format!("election message of {len} bytes from {from}")));
            }
            let mut b = vec![0u8; len as usize];
            s.read_exact(&mut b)?;
            match Notification::decode(&b) {
                Ok(n) => self.deliver(Event::Notification { from, n }),
                Err(e) => return Err(bad(format!("bad notification from {from}: {e}"))),
            }
        }
    }

    // ----- quorum -----

    fn new_conn(&self, peer: Sid, s: &TcpStream) -> io::Result<(ConnId, Arc<Outbox>)> {
        let id = self.inner.next_conn.fetch_add(1, Ordering::Relaxed);
        let out = Outbox::with_backlog(
            s.try_clone()?,
            self.inner.cfg.send_queue_max,
            self.inner.cfg.send_backlog_bytes_max,
            false,
        );
        self.inner.quorum.lock().unwrap_or_else(|p| p.into_inner()).insert(id, (peer, out.clone()));
        let w = out.clone();
        std::thread::Builder::new().name("corral-quorum-out".into()).spawn(move || w.run())?;
        Ok((id, out))
    }

    fn connect_quorum(&self, to: Sid) {
        let Some(addr) = self.member(to).map(|m| m.quorum) else { return };
        let n = self.clone();
        let _ = std::thread::Builder::new().name("corral-quorum-dial".into()).spawn(move || {
            let dialled = TcpStream::connect_timeout(&addr, n.inner.cfg.connect_timeout)
                .and_then(|s| {
                    let _ = s.set_nodelay(true);
                    let mut s = n.secure_dialled(s, addr)?;
                    if let Some(q) = &n.inner.cfg.sasl {
                        let host = n.member(to).map(|m| m.host).unwrap_or_default();
                        q.learn(&mut s, &host)?;
                    }
                    Ok(s)
                });
            match dialled {
                Ok(s) => {
                    match n.new_conn(to, &s) {
                        Ok((id, out)) => {
                            n.deliver(Event::Connected { peer: to, conn: id });
                            n.run_quorum_reader(to, id, out, s, None);
                        }
                        Err(_) => n.deliver(Event::Disconnected { peer: to, conn: None }),
                    }
                }
                Err(e) => {
                    tracing::debug!(peer = to, %addr, error = %e, "connecting to the leader failed");
                    n.deliver(Event::Disconnected { peer: to, conn: None });
                }
            }
        });
    }

    fn accept_quorum(&self, l: TcpListener) {
        for s in l.incoming() {
            if self.stopped() {
                return;
            }
            let Ok(s) = s else { continue };
            let Some(slot) = self.handshake_slot(1) else {
                tracing::warn!(
                    max = HANDSHAKES_MAX,
                    "too many quorum connections in their handshake; closing one"
                );
                continue;
            };
            let n = self.clone();
            let _ = std::thread::Builder::new().name("corral-quorum-in".into()).spawn(move || {
                if let Err(e) = n.accept_quorum_one(s, slot) {
                    QUORUM_REFUSALS.log("quorum", &e);
                }
            });
        }
    }

    fn accept_quorum_one(&self, s: TcpStream, slot: HandshakeSlot) -> io::Result<()> {
        let mut s = self.secure_accepted(s)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(self.inner.cfg.connect_timeout))?;
        if let Some(q) = &self.inner.cfg.sasl {
            q.serve(&mut s, self.inner.cfg.connect_timeout, &self.member_hosts())?;
        }
        let mut rd = PacketReader::new(s.try_clone()?, self.inner.cfg.packet_bytes_max);
        let p = rd.packet()?;
        if !matches!(p.kind, PacketType::FollowerInfo | PacketType::ObserverInfo) {
            return Err(bad(format!("a learner's first packet is {:?}", p.kind)));
        }
        let info = LearnerInfo::decode(p.payload()).map_err(|e| bad(e.to_string()))?;
        let sid = info.server_id as Sid;
        if info.protocol_version < PROTOCOL_VERSION {
            // Before ZooKeeper 3.4 (0x10000) NEWLEADER meant something else; not spoken here.
            return Err(bad(format!(
                "server {sid} speaks quorum protocol version {:#x}, older than ZooKeeper \
                 3.4's {PROTOCOL_VERSION:#x}, which this server does not speak",
                info.protocol_version
            )));
        }
        if self.member(sid).is_none() || sid == self.inner.cfg.me {
            return Err(bad(format!("quorum connection from unknown server {sid}")));
        }
        drop(slot);
        s.set_read_timeout(None)?;
        let (id, out) = self.new_conn(sid, &s)?;
        self.deliver(Event::Connected { peer: sid, conn: id });
        self.deliver(Event::Packet { from: sid, conn: id, packet: p });
        self.run_quorum_reader(sid, id, out, s, Some(rd));
        Ok(())
    }

    fn run_quorum_reader(
        &self,
        peer: Sid,
        id: ConnId,
        out: Arc<Outbox>,
        s: TcpStream,
        rd: Option<PacketReader>,
    ) {
        let mut rd = match rd {
            Some(r) => r,
            None => PacketReader::new(s, self.inner.cfg.packet_bytes_max),
        };
        let why = loop {
            let p = match rd.packet() {
                Ok(p) => p,
                Err(e) => break e,
            };
            let snap = (p.kind == PacketType::Snap).then(|| p.zxid());
            out.stats.packets_received.fetch_add(1, Ordering::Relaxed);
            if p.kind == PacketType::Request {
                out.stats.requests.fetch_add(1, Ordering::Relaxed);
            }
            self.deliver(Event::Packet { from: peer, conn: id, packet: p });
            if let Some(zxid) = snap {
                let cfg = &self.inner.cfg;
                let spool = cfg.snapshot_spool.as_ref();
                // On a thread of its own at a lower priority, as the leader sends it: building
                // a large tree takes a core for seconds, and on a shared host the servers that
                // are serving go first. This reader waits (it keeps its own priority).
                let received = at_low_priority("corral-snap-recv", || {
                    rd.snapshot(zxid, cfg.tree.clone(), cfg.snapshot_bytes_max, spool)
                });
                match received {
                    Ok(body) => self.deliver(Event::Snapshot { from: peer, conn: id, body }),
                    Err(e) => break e,
                }
            }
        };
        tracing::debug!(peer, conn = id, error = %why, "quorum connection closed");
        out.close();
        self.inner.quorum.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        self.deliver(Event::Disconnected { peer, conn: Some(id) });
    }
}

/// Reads jute records from a stream: bytes are buffered and a record is decoded once all of it
/// has arrived (a record's length is only known by decoding it).
struct PacketReader {
    s: TcpStream,
    buf: Vec<u8>,
    pos: usize,
    max: usize,
}

impl PacketReader {
    fn new(s: TcpStream, max: usize) -> PacketReader {
        PacketReader { s, buf: Vec::with_capacity(64 * 1024), pos: 0, max }
    }

    /// Reads more bytes (how many); an error at the end of the stream.
    fn fill(&mut self) -> io::Result<usize> {
        if self.pos > 0 && self.pos >= self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let mut chunk = [0u8; 64 * 1024];
        let n = self.s.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    fn packet(&mut self) -> io::Result<QuorumPacket> {
        loop {
            let avail = &self.buf[self.pos..];
            let r = &mut Reader::with_max_len(avail, self.max);
            match QuorumPacket::read(r) {
                Ok(p) => {
                    self.pos += r.position();
                    return Ok(p);
                }
                Err(JuteError::Truncated { .. }) if avail.len() <= self.max + 64 => {
                    self.fill()?;
                }
                Err(e) => return Err(bad(format!("bad quorum packet: {e}"))),
            }
        }
    }

    /// The SNAP payload that follows a SNAP packet at `zxid`: the snapshot body and its
    /// signature, read record by record as it arrives into the tree it holds (and, with a
    /// spool, into a snapshot file), never whole in memory. An unfinished record is held at
    /// most: one larger than a request could make (`max`, a path and data at most) is refused.
    fn snapshot(
        &mut self,
        zxid: Zxid,
        tree: crate::tree::TreeOptions,
        bytes_max: usize,
        spool: Option<&corral_engine::snapshot::SnapshotStore>,
    ) -> io::Result<ReceivedSnapshot> {
        let mut r = SnapReceiver::new(zxid, tree, self.max, bytes_max, spool)
            .map_err(|e| bad(e.to_string()))?;
        let started = std::time::Instant::now();
        let mut next_report = SNAP_PROGRESS_BYTES as u64;
        let record_max = 2 * self.max + 4096;
        loop {
            let used = r.feed(&self.buf[self.pos..]).map_err(|e| bad(e.to_string()))?;
            self.pos += used;
            if r.is_complete() {
                break;
            }
            if self.buf.len() - self.pos > record_max {
                return Err(bad(format!("a SNAP payload record over {record_max} bytes")));
            }
            if r.taken() >= next_report {
                tracing::info!(
                    mib = r.taken() >> 20,
                    max_mib = bytes_max >> 20,
                    secs = started.elapsed().as_secs(),
                    "receiving the SNAP payload"
                );
                next_report += SNAP_PROGRESS_BYTES as u64;
            }
            self.fill()?;
        }
        let received = r.finish().map_err(|e| bad(e.to_string()))?;
        tracing::info!(
            bytes = received.bytes(),
            ms = started.elapsed().as_millis() as u64,
            spooled = spool.is_some(),
            "SNAP payload received"
        );
        Ok(received)
    }
}

/// Where the servers of a membership listen (those whose addresses resolve).
pub fn member_addrs(m: &crate::zab::Membership) -> BTreeMap<Sid, MemberAddr> {
    use std::net::ToSocketAddrs;
    let mut out = BTreeMap::new();
    for s in m.servers.values() {
        let Some(a) = s.addresses.first() else { continue };
        let host = a.host.trim_start_matches('[').trim_end_matches(']');
        let resolve = |port: u16| (host, port).to_socket_addrs().ok()?.next();
        if let (Some(quorum), Some(election)) = (resolve(a.quorum_port), resolve(a.election_port)) {
            out.insert(s.id, MemberAddr { quorum, election, host: host.to_string() });
        }
    }
    out
}

fn read_i32(s: &mut TcpStream) -> io::Result<i32> {
    let mut b = [0u8; 4];
    s.read_exact(&mut b)?;
    Ok(i32::from_be_bytes(b))
}

/// Why connections to a port were refused, logged without letting a peer flood the log.
struct RefusalLog {
    last_ms: AtomicU64,
    suppressed: AtomicU64,
}

static ELECTION_REFUSALS: RefusalLog =
    RefusalLog { last_ms: AtomicU64::new(0), suppressed: AtomicU64::new(0) };
static QUORUM_REFUSALS: RefusalLog =
    RefusalLog { last_ms: AtomicU64::new(0), suppressed: AtomicU64::new(0) };

impl RefusalLog {
    /// What the peer sent was refused (a protocol version this server does not speak, an
    /// unknown server id, a malformed header): a warning saying why, at most one every 10 s
    /// per port (the ones in between are counted in the next). A connection that failed
    /// (reset, timed out) is only logged at debug.
    fn log(&self, port: &'static str, e: &io::Error) {
        if e.kind() != io::ErrorKind::InvalidData {
            tracing::debug!(port, error = %e, "connection refused");
            return;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let last = self.last_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < 10_000
            || self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let also = self.suppressed.swap(0, Ordering::Relaxed);
        tracing::warn!(port, reason = %e, also_refused_since = also, "refused a connection from a peer");
    }
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Past its packet cap a quorum queue still takes small packets up to its byte budget (a
    /// burst of proposals behind a SNAP payload, a learner's acks after one); past both it
    /// closes the connection. Without the budget, an emptied follower catching up under
    /// writes was dropped after every SNAP and started over.
    #[test]
    fn a_quorum_queue_takes_a_burst_within_its_byte_budget() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let s = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let _peer = l.accept().unwrap();
        let out = Outbox::with_backlog(s, 4, 100, false);
        for _ in 0..10 {
            assert!(out.push(Bytes::from_static(b"12345")), "within the budget");
        }
        assert!(!out.push(Bytes::from(vec![0u8; 60])), "past the cap and the budget");
        assert!(!out.push(Bytes::from_static(b"1")), "closed");
        // Without a budget the cap alone decides.
        let s = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let _peer = l.accept().unwrap();
        let out = Outbox::with_backlog(s, 4, 0, false);
        for _ in 0..4 {
            assert!(out.push(Bytes::from_static(b"12345")));
        }
        assert!(!out.push(Bytes::from_static(b"12345")));
    }

    /// A SNAP payload that arrives in two writes, the second small and the stream then
    /// silent (the leader waits for the NEWLEADER ack): it is parsed when the stream pauses,
    /// not only when the buffer doubles (CI once saw a learner wait out initLimit for it).
    #[test]
    fn a_snap_payload_in_two_small_writes_is_read() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let mut body = Vec::new();
        crate::db::State::new(crate::tree::TreeOptions::default()).write_body(&mut body).unwrap();
        let mut payload = Vec::new();
        crate::zab::wire::write_snap_payload(&mut payload, &body);
        let (first, rest) = payload.split_at(payload.len() / 2);
        let (first, rest) = (first.to_vec(), rest.to_vec());
        let writer = std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(&first).unwrap();
            std::thread::sleep(Duration::from_millis(100));
            s.write_all(&rest).unwrap();
            // Stay open and silent, as a leader waiting for an ack.
            std::thread::sleep(Duration::from_millis(1500));
        });
        let (s, _) = l.accept().unwrap();
        let mut rd = PacketReader::new(s, 1 << 20);
        let t = std::time::Instant::now();
        let got = rd.snapshot(Zxid::ZERO, Default::default(), 1 << 20, None).expect("the payload");
        assert_eq!(got.bytes(), body.len() as u64);
        assert_eq!(got.take().unwrap().state.tree, crate::tree::DataTree::default());
        assert!(t.elapsed() < Duration::from_millis(1000), "read in {:?}", t.elapsed());
        writer.join().unwrap();
    }

    /// A SNAP payload of about 1.2 MB in one write, then a PING every millisecond for three
    /// seconds (a leader under load sends the learner's proposals after it): read as soon as it
    /// has arrived. Waiting for the buffer to double or the stream to pause took until the
    /// trickle ended.
    #[test]
    fn a_snap_payload_followed_by_a_trickle_of_packets_is_read_at_once() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let sessions: Vec<(i64, i32)> = (0..100_000).map(|i| (i, 3000)).collect();
        let sessions_len = sessions.len();
        let mut body = Vec::new();
        crate::tree::zk_snapshot::write_body(
            &mut body,
            &crate::tree::DataTree::default(),
            &sessions,
        )
        .unwrap();
        let mut payload = Vec::new();
        crate::zab::wire::write_snap_payload(&mut payload, &body);
        let writer = std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(&payload).unwrap();
            let ping = QuorumPacket::new(PacketType::Ping, 7).encode();
            let t = std::time::Instant::now();
            while t.elapsed() < Duration::from_secs(3) {
                if s.write_all(&ping).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            // Open and silent a while, so that a reader that waits for a pause still gets it.
            std::thread::sleep(Duration::from_millis(500));
        });
        let (s, _) = l.accept().unwrap();
        let mut rd = PacketReader::new(s, 1 << 20);
        let t = std::time::Instant::now();
        let got = rd.snapshot(Zxid::ZERO, Default::default(), 16 << 20, None).expect("the payload");
        let took = t.elapsed();
        assert_eq!(got.bytes(), body.len() as u64);
        assert_eq!(got.take().unwrap().state.sessions.len(), sessions_len);
        assert!(took < Duration::from_millis(1000), "read in {took:?}");
        assert_eq!(rd.packet().expect("the packets after it").kind, PacketType::Ping);
        writer.join().unwrap();
    }
}
