//! The request pipeline: one thread that sequences writes and applies what the log has made
//! durable (design.md: sequencer → log with group commit → applier). Standalone is an ensemble
//! of one through this same path.
//!
//! * A write is prepared against the *speculative* state (the committed state plus every txn
//!   logged but not yet durable), which gives it its zxid and its deterministic txn (or error
//!   txn); the txn is applied to the speculative state at once and handed to the log. Its reply
//!   and watch triggers are kept with it: each txn is applied exactly once.
//! * The tree is persistent, so a version is an O(1) copy; one is kept at each *boundary*: the
//!   end of each batch of events the thread handles, and wherever a read has to wait behind a
//!   connection's writes. (Keeping one per txn would make every apply copy its whole path.)
//! * When the log reports txns durable, they are committed in zxid order, a boundary at a time:
//!   their kept watch triggers fire, their replies go out, the reads that waited for that
//!   boundary are answered from its version, and the version is published for readers.
//! * Reads are answered by the connection tasks themselves from the published version, unless
//!   the same connection has requests waiting here; then they queue behind them, so each
//!   connection sees its replies in request order and its reads see its own writes.
//! * Watch events are queued to connections and the new version published under one write
//!   lock that readers take for reading: a client sees a watch event before the reply to any
//!   later read that shows the change, as ZooKeeper guarantees.
//!
//! This module touches no sockets: connections are [`Conn`] handles with an outbound queue.

pub mod reads;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::db::{Database, State};
use crate::proto::{
    encode_notification, encode_reply, ConnectResponse, Data, ErrorCode, Id, Jute, OpCode, Request,
    Response, TxnDigest, TxnEntry, TxnHeader, WatcherEvent,
};
use crate::session::ids::{session_password, SessionIdGenerator};
use crate::tree::acl::AuthSchemes;
use crate::tree::prepare::{prepare_close_session, prepare_create_session, prepare_txn};
use crate::tree::{DataTree, PrepareConfig, SessionContext};
use crate::watch::{Notification, WatchManager};
use reads::Asker;

/// Keeper state "SyncConnected", carried by every server-sent event.
const SYNC_CONNECTED: i32 = 3;

/// What the pipeline needs to know of the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// tickTime in ms.
    pub tick_ms: u64,
    /// minSessionTimeout.
    pub min_session_timeout_ms: i32,
    /// maxSessionTimeout.
    pub max_session_timeout_ms: i32,
    /// jute.maxbuffer.
    pub max_buffer: usize,
    /// How writes are judged.
    pub prepare: PrepareConfig,
    /// skipACL.
    pub skip_acl: bool,
    /// DigestAuthenticationProvider.superDigest (`super:<base64 sha1>`).
    pub super_digest: Option<String>,
    /// The server id (1 in standalone).
    pub server_id: u64,
    /// How often the container reaper and TTL expiry run.
    pub container_check_ms: u64,
    /// globalOutstandingLimit.
    pub global_outstanding_limit: usize,
    /// maxClientCnxns (per client IP; 0 = unlimited).
    pub max_client_cnxns: usize,
    /// autopurge.purgeInterval in ms (0: never purge).
    pub purge_interval_ms: u64,
}

impl Settings {
    /// The settings a zoo.cfg implies.
    pub fn from_config(c: &crate::config::Config) -> Settings {
        Settings {
            tick_ms: u64::from(c.tick_time_ms),
            min_session_timeout_ms: c.min_session_timeout_ms as i32,
            max_session_timeout_ms: c.max_session_timeout_ms as i32,
            max_buffer: c.jute_max_buffer as usize,
            prepare: PrepareConfig {
                extended_types: c.extended_types_enabled,
                skip_acl: c.skip_acl,
                close_session_txn: c.close_session_txn_enabled,
                reconfig_enabled: c.reconfig_enabled && c.is_distributed(),
                ..PrepareConfig::default()
            },
            skip_acl: c.skip_acl,
            super_digest: c.super_digest.clone(),
            server_id: c.session_server_id(),
            container_check_ms: 60_000,
            global_outstanding_limit: c.global_outstanding_limit as usize,
            max_client_cnxns: c.max_client_cnxns as usize,
            purge_interval_ms: u64::from(c.autopurge_purge_interval_hours) * 3_600_000,
        }
    }

    /// The negotiated session timeout for a requested one.
    pub fn negotiate_timeout(&self, requested: i32) -> i32 {
        requested.clamp(
            self.min_session_timeout_ms,
            self.max_session_timeout_ms.max(self.min_session_timeout_ms),
        )
    }
}

/// A frame (or the end) for a connection's writer.
#[derive(Debug)]
pub enum Out {
    /// Bytes to write, already framed.
    Frame(Vec<u8>),
    /// A frame shared by many connections (a watch event fanned out): encoded once.
    Shared(Arc<[u8]>),
    /// Close the connection after what is queued.
    Close,
}

/// Per-connection counters shown by `cons` and `stat`.
#[derive(Debug, Default)]
pub struct ConnStats {
    /// Packets received.
    pub received: AtomicU64,
    /// Packets sent.
    pub sent: AtomicU64,
    /// Last cxid.
    pub last_cxid: AtomicI64,
    /// Last zxid answered.
    pub last_zxid: AtomicI64,
    /// Last opcode (as its code).
    pub last_op: AtomicI64,
    /// Latency sum / count / min / max, in ms.
    pub lat_sum: AtomicU64,
    /// Requests measured.
    pub lat_count: AtomicU64,
    /// Minimum latency.
    pub lat_min: AtomicU64,
    /// Maximum latency.
    pub lat_max: AtomicU64,
    /// When the last response went out, ms since the server started.
    pub last_response_ms: AtomicU64,
    /// Latency of the last request.
    pub last_latency: AtomicU64,
}

/// A client connection, as the pipeline sees it.
#[derive(Debug)]
pub struct Conn {
    /// Server-assigned id; also the watcher id.
    pub id: u64,
    /// Where it comes from.
    pub remote: SocketAddr,
    /// Frames to write.
    pub out: tokio::sync::mpsc::UnboundedSender<Out>,
    /// Requests handed to the pipeline and not answered yet.
    pub pending: AtomicUsize,
    /// The session, once established (0 before).
    pub session_id: AtomicI64,
    /// Negotiated timeout.
    pub timeout_ms: AtomicI64,
    /// When the connection was established, ms since the server started.
    pub established_ms: u64,
    /// Counters.
    pub stats: ConnStats,
    /// The connection's authenticated ids (ip, digest, super), for checking that a watch event
    /// may be delivered.
    pub auth: Mutex<Arc<Vec<Id>>>,
}

impl Conn {
    /// Queues a frame; false if the connection is gone.
    pub fn send(&self, frame: Vec<u8>) -> bool {
        self.stats.sent.fetch_add(1, Ordering::Relaxed);
        self.out.send(Out::Frame(frame)).is_ok()
    }

    /// Queues a frame shared with other connections.
    pub fn send_shared(&self, frame: &Arc<[u8]>) -> bool {
        self.stats.sent.fetch_add(1, Ordering::Relaxed);
        self.out.send(Out::Shared(frame.clone())).is_ok()
    }

    /// Asks the writer to close after what is queued.
    pub fn close(&self) {
        let _ = self.out.send(Out::Close);
    }
}

/// Server-wide counters (srvr, stat, mntr).
#[derive(Debug, Default)]
pub struct Stats {
    /// Packets received.
    pub received: AtomicU64,
    /// Packets sent.
    pub sent: AtomicU64,
    /// Latency sum (ms).
    pub lat_sum: AtomicU64,
    /// Requests measured.
    pub lat_count: AtomicU64,
    /// Minimum latency (ms), u64::MAX before the first.
    pub lat_min: AtomicU64,
    /// Maximum latency (ms).
    pub lat_max: AtomicU64,
}

impl Stats {
    /// Records a request's latency.
    pub fn record_latency(&self, ms: u64) {
        self.lat_sum.fetch_add(ms, Ordering::Relaxed);
        self.lat_count.fetch_add(1, Ordering::Relaxed);
        self.lat_min.fetch_min(ms, Ordering::Relaxed);
        self.lat_max.fetch_max(ms, Ordering::Relaxed);
    }

    /// Clears them (srst).
    pub fn reset(&self) {
        for a in [&self.received, &self.sent, &self.lat_sum, &self.lat_count, &self.lat_max] {
            a.store(0, Ordering::Relaxed);
        }
        self.lat_min.store(u64::MAX, Ordering::Relaxed);
    }
}

/// A session as the pipeline tracks it.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// Negotiated timeout.
    pub timeout_ms: i32,
    /// Last time the client was heard from, ms since the server started.
    pub last_touch: Arc<AtomicU64>,
    /// The connection that owns it, if connected.
    pub conn: Option<u64>,
    /// A closeSession txn is under way.
    pub closing: bool,
}

/// State shared by the pipeline thread and the connection tasks.
#[derive(Debug)]
pub struct Shared {
    /// The published tree version. The pipeline takes it for writing to apply a batch, fire
    /// its watches and publish; readers take it for reading around a read and its reply.
    pub view: RwLock<Arc<DataTree>>,
    /// The zxid of the published version.
    pub last_zxid: AtomicI64,
    /// Watch tables (lock order: `view`, then `watches`).
    pub watches: Mutex<WatchManager>,
    /// Live connections by id.
    pub conns: Mutex<HashMap<u64, Arc<Conn>>>,
    /// Sessions (copy for reporting; the pipeline's own table is authoritative).
    pub sessions: Mutex<HashMap<i64, SessionInfo>>,
    /// Requests handed to the pipeline and not answered (all connections).
    pub outstanding: AtomicUsize,
    /// Counters.
    pub stats: Stats,
    /// Configuration.
    pub settings: Settings,
    /// When the server started.
    pub start: Instant,
    /// Wakes connection readers paused by globalOutstandingLimit.
    pub unthrottle: tokio::sync::Notify,
    /// The configuration the server runs with (for `conf`, the 4lw whitelist).
    pub config: crate::config::Config,
    /// When the server started, wall clock ms since the epoch.
    pub start_wall_ms: i64,
    /// The trace mask of `gtmk`/`stmk` (kept for compatibility; it changes no logging).
    pub trace_mask: AtomicI64,
    /// Failed auth attempts (mntr zk_auth_failed_count).
    pub auth_failed: AtomicU64,
}

impl Shared {
    /// Milliseconds since the server started.
    pub fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }
}

/// Events the pipeline thread handles.
pub enum Event {
    /// A request that needs the pipeline (a write, or a read queued behind one).
    Request {
        /// From.
        conn: Arc<Conn>,
        /// Its xid.
        xid: i32,
        /// Its opcode.
        op: OpCode,
        /// The request.
        req: Request,
        /// The connection's authenticated ids.
        auth: Arc<Vec<Id>>,
        /// When it was read.
        received: Instant,
    },
    /// A write that failed before it could be prepared (a multi holding a read op): it is
    /// logged as an error txn, which takes a zxid, and answered with `err`.
    FailedWrite {
        /// From.
        conn: Arc<Conn>,
        /// Its xid.
        xid: i32,
        /// The error code.
        err: ErrorCode,
        /// When it was read.
        received: Instant,
    },
    /// The log has made everything up to this zxid durable (or failed).
    Durable {
        /// The zxid.
        zxid: u64,
        /// False if the log failed.
        ok: bool,
    },
    /// A client asks for a new session.
    CreateSession {
        /// The connection.
        conn: Arc<Conn>,
        /// Requested timeout.
        timeout_ms: i32,
        /// Whether the client sent the readOnly byte.
        read_only: Option<bool>,
        /// Told the new session id and its last-touch cell once it is committed.
        done: tokio::sync::oneshot::Sender<Option<(i64, Arc<AtomicU64>)>>,
    },
    /// A client reconnects to an existing session.
    Reconnect {
        /// The connection.
        conn: Arc<Conn>,
        /// Session id.
        session_id: i64,
        /// The password it presented.
        passwd: Vec<u8>,
        /// Requested timeout.
        timeout_ms: i32,
        /// Whether the client sent the readOnly byte.
        read_only: Option<bool>,
        /// Told whether the session is valid, with its last-touch cell.
        done: tokio::sync::oneshot::Sender<Option<Arc<AtomicU64>>>,
    },
    /// A connection went away.
    ConnClosed {
        /// Its id.
        conn_id: u64,
        /// Its session (0 if none).
        session_id: i64,
    },
    /// Stop: finish what is durable and return.
    Shutdown,
}

enum Origin {
    None,
    Client {
        conn: Arc<Conn>,
        xid: i32,
        received: Instant,
    },
    NewSession {
        conn: Arc<Conn>,
        read_only: Option<bool>,
        done: tokio::sync::oneshot::Sender<Option<(i64, Arc<AtomicU64>)>>,
    },
    Close {
        conn: Option<Arc<Conn>>,
        xid: Option<i32>,
    },
}

struct InFlight {
    entry: TxnEntry,
    origin: Origin,
    /// What applying the txn to the speculative tree produced.
    outcome: crate::tree::ApplyOutcome,
    /// At a boundary: the tree right after this txn (committed once it is durable).
    version: Option<DataTree>,
    /// Bytes logged.
    bytes: u64,
}

/// A read waiting for a boundary (behind its connection's writes).
struct WaitingRead {
    conn: Arc<Conn>,
    xid: i32,
    req: Request,
    auth: Arc<Vec<Id>>,
    received: Instant,
}

/// The pipeline thread's state.
pub struct Core {
    shared: Arc<Shared>,
    db: Database,
    spec: State,
    /// The version after the last durable txn, and the global sessions at that point.
    committed: DataTree,
    committed_sessions: std::collections::BTreeMap<i64, i32>,
    next_zxid: i64,
    durable: i64,
    inflight: VecDeque<InFlight>,
    /// Per connection: (writes in flight, reads waiting).
    pending: HashMap<u64, (usize, usize)>,
    /// Reads waiting for the boundary at a zxid, in arrival order.
    waiting: std::collections::BTreeMap<i64, Vec<WaitingRead>>,
    sessions: HashMap<i64, SessionInfo>,
    ids: SessionIdGenerator,
    tx: Sender<Event>,
    last_reap_ms: u64,
    last_purge_ms: u64,
    /// The snapshot trigger fired; the snapshot is taken at the next boundary (a committed
    /// version), which may come in a later batch of durable txns.
    snapshot_due: bool,
}

fn wall_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Encodes a ConnectResponse frame.
pub fn connect_response(
    timeout: i32,
    session_id: i64,
    passwd: &[u8],
    read_only: Option<bool>,
) -> Vec<u8> {
    let r = ConnectResponse {
        protocol_version: 0,
        time_out: timeout,
        session_id,
        passwd: Data::from(passwd.to_vec()),
        read_only: read_only.map(|_| false),
    };
    let mut body = Vec::new();
    r.write(&mut body);
    let mut frame = Vec::with_capacity(body.len() + 4);
    frame.extend_from_slice(&(body.len() as i32).to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

/// Encodes a reply frame.
pub fn reply_frame(xid: i32, zxid: i64, err: ErrorCode, body: &Response) -> Vec<u8> {
    let mut f = Vec::new();
    encode_reply(&mut f, xid, zxid, err, body);
    f
}

fn event_frame(n: &Notification) -> Vec<u8> {
    let mut f = Vec::new();
    // ZooKeeper up to 3.8 sends zxid -1 with notifications (3.9 sends the txn's zxid); we
    // match 3.8, the reference our differential tests compare against.
    encode_notification(
        &mut f,
        -1,
        &WatcherEvent { event_type: n.event.code(), state: SYNC_CONNECTED, path: n.path.clone() },
    );
    f
}

/// Delivers notifications to their connections.
pub fn deliver(conns: &HashMap<u64, Arc<Conn>>, events: &[Notification]) {
    for n in events {
        if let Some(c) = conns.get(&n.watcher) {
            c.send(event_frame(n));
        }
    }
}

/// Delivers the notifications a change caused, only to connections allowed to READ the node
/// (`acl`: the node's ACL, the deleted node's last ACL, or the parent's for
/// NodeChildrenChanged), as ZooKeeper does since its fix for CVE-2024-23944. A one-shot watch
/// that is not delivered is still consumed. All of `events` are for one path and event type:
/// the frame is encoded once and shared by every connection it goes to.
pub fn deliver_permitted(
    conns: &HashMap<u64, Arc<Conn>>,
    events: &[Notification],
    acl: &[crate::proto::Acl],
    skip_acl: bool,
) {
    let Some(first) = events.first() else { return };
    let frame: Arc<[u8]> = event_frame(first).into();
    let schemes = AuthSchemes::default();
    for n in events {
        debug_assert!(n.path == first.path && n.event == first.event);
        if let Some(c) = conns.get(&n.watcher) {
            let allowed = skip_acl || {
                let auth = c.auth.lock().unwrap_or_else(|p| p.into_inner()).clone();
                crate::tree::acl::check_acl(acl, 1, &auth, &schemes)
            };
            if allowed {
                c.send_shared(&frame);
            }
        }
    }
}

/// A read to answer: its xid, the request, the asker's ids, and when it arrived.
#[derive(Debug, Clone, Copy)]
pub struct ReadJob<'a> {
    /// The request's xid.
    pub xid: i32,
    /// The request.
    pub req: &'a Request,
    /// The connection's authenticated ids.
    pub auth: &'a [Id],
    /// When it was read off the socket.
    pub received: Instant,
}

/// Answers a read (locally or queued) and queues its reply and any events it causes.
pub fn answer_read(
    shared: &Shared,
    tree: &DataTree,
    watches: &mut WatchManager,
    conn: &Conn,
    job: ReadJob<'_>,
) {
    let ReadJob { xid, req, auth, received } = job;
    let schemes = AuthSchemes::default();
    let who = Asker {
        session_id: conn.session_id.load(Ordering::Relaxed),
        watcher: conn.id,
        auth,
        schemes: &schemes,
        skip_acl: shared.settings.skip_acl,
    };
    let outcome = reads::answer(tree, &who, req, watches);
    for n in &outcome.events {
        conn.send(event_frame(n));
    }
    let zxid = shared.last_zxid.load(Ordering::Acquire);
    finish_reply(shared, conn, xid, zxid, outcome.err, &outcome.body, req.opcode(), received);
}

#[allow(clippy::too_many_arguments)]
fn finish_reply(
    shared: &Shared,
    conn: &Conn,
    xid: i32,
    zxid: i64,
    err: ErrorCode,
    body: &Response,
    op: OpCode,
    received: Instant,
) {
    conn.send(reply_frame(xid, zxid, err, body));
    let ms = received.elapsed().as_millis() as u64;
    shared.stats.record_latency(ms);
    shared.stats.sent.fetch_add(1, Ordering::Relaxed);
    let s = &conn.stats;
    s.last_zxid.store(zxid, Ordering::Relaxed);
    s.last_op.store(i64::from(op.code()), Ordering::Relaxed);
    s.lat_sum.fetch_add(ms, Ordering::Relaxed);
    s.lat_count.fetch_add(1, Ordering::Relaxed);
    s.lat_min.fetch_min(ms, Ordering::Relaxed);
    s.lat_max.fetch_max(ms, Ordering::Relaxed);
    s.last_latency.store(ms, Ordering::Relaxed);
    s.last_response_ms.store(shared.now_ms(), Ordering::Relaxed);
}

impl Core {
    /// Builds the pipeline over a recovered database. `tx` must send to the receiver passed to
    /// [`Core::run`].
    pub fn new(shared: Arc<Shared>, db: Database, state: State, tx: Sender<Event>) -> Core {
        let last = state.tree.last_processed_zxid().max(0);
        let mut sessions = HashMap::new();
        let now = shared.now_ms();
        for (id, timeout) in &state.sessions {
            // Sessions restored from disk get a full timeout to reconnect, as in ZooKeeper.
            sessions.insert(
                *id,
                SessionInfo {
                    timeout_ms: *timeout,
                    last_touch: Arc::new(AtomicU64::new(now)),
                    conn: None,
                    closing: false,
                },
            );
        }
        let elapsed = std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let mut ids = SessionIdGenerator::new(shared.settings.server_id, elapsed);
        // Never reuse a restored id.
        while sessions.contains_key(&ids.peek()) {
            ids.next_id();
        }
        *shared.view.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(state.tree.clone());
        shared.last_zxid.store(last, Ordering::Release);
        *shared.sessions.lock().unwrap_or_else(|p| p.into_inner()) = sessions.clone();
        Core {
            shared,
            db,
            committed: state.tree.clone(),
            committed_sessions: state.sessions.clone(),
            spec: state,
            next_zxid: last + 1,
            durable: last,
            inflight: VecDeque::new(),
            pending: HashMap::new(),
            waiting: std::collections::BTreeMap::new(),
            sessions,
            ids,
            tx,
            last_reap_ms: 0,
            last_purge_ms: 0,
            snapshot_due: false,
        }
    }

    /// Runs until [`Event::Shutdown`]; returns the database for an orderly close.
    pub fn run(mut self, rx: Receiver<Event>) -> Database {
        let tick = Duration::from_millis(self.shared.settings.tick_ms.clamp(10, 60_000) / 2);
        let mut next_tick = Instant::now() + tick;
        // Idle ticks left in which to hand freed memory back (see `crate::memory`). Several,
        // because other threads (a snapshot finishing, readers) may still drop their versions
        // of the tree, the pipeline's allocations, after the pipeline went quiet.
        let mut trims_left = 0u32;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            let first = match rx.recv_timeout(wait) {
                Ok(ev) => Some(ev),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return self.db,
            };
            if first.is_some() {
                trims_left = 5;
            } else if trims_left > 0 {
                trims_left -= 1;
                crate::memory::trim();
            }
            let mut batch: Vec<Event> = first.into_iter().collect();
            while batch.len() < 4096 {
                match rx.try_recv() {
                    Ok(ev) => batch.push(ev),
                    Err(_) => break,
                }
            }
            let mut stop = false;
            for ev in batch {
                match ev {
                    Event::Shutdown => stop = true,
                    ev => self.handle(ev),
                }
            }
            if Instant::now() >= next_tick {
                self.on_tick();
                next_tick = Instant::now() + tick;
            }
            self.mark_boundary();
            self.apply_durable();
            if stop {
                // Wait (bounded) for what was logged to become durable and be answered.
                let deadline = Instant::now() + Duration::from_secs(10);
                while !self.inflight.is_empty() && Instant::now() < deadline {
                    if let Ok(Event::Durable { zxid, ok }) =
                        rx.recv_timeout(Duration::from_millis(50))
                    {
                        self.on_durable(zxid, ok);
                        self.apply_durable();
                    }
                }
                return self.db;
            }
        }
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Request { conn, xid, op, req, auth, received } => {
                self.on_request(conn, xid, op, req, auth, received)
            }
            Event::Durable { zxid, ok } => self.on_durable(zxid, ok),
            Event::FailedWrite { conn, xid, err, received } => {
                let session_id = conn.session_id.load(Ordering::Relaxed);
                let zxid = self.next_zxid;
                let txn = crate::proto::Txn::error(err);
                let header = TxnHeader {
                    client_id: session_id,
                    cxid: xid,
                    zxid,
                    time: wall_ms(),
                    op: txn.opcode().code(),
                };
                let z = self.log_entry(
                    header,
                    txn,
                    Origin::Client { conn: conn.clone(), xid, received },
                );
                self.queue_write(&conn, z);
            }
            Event::CreateSession { conn, timeout_ms, read_only, done } => {
                let id = self.ids.next_id();
                let timeout = self.shared.settings.negotiate_timeout(timeout_ms);
                let txn = prepare_create_session(timeout);
                conn.timeout_ms.store(i64::from(timeout), Ordering::Relaxed);
                self.log_txn(id, 0, txn, Origin::NewSession { conn, read_only, done });
            }
            Event::Reconnect { conn, session_id, passwd, timeout_ms, read_only, done } => {
                self.on_reconnect(conn, session_id, passwd, timeout_ms, read_only, done)
            }
            Event::ConnClosed { conn_id, session_id } => {
                self.pending.remove(&conn_id);
                if let Some(s) = self.sessions.get_mut(&session_id) {
                    if s.conn == Some(conn_id) {
                        s.conn = None;
                    }
                }
                self.shared
                    .watches
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove_watcher(conn_id);
            }
            Event::Shutdown => {}
        }
    }

    fn on_reconnect(
        &mut self,
        conn: Arc<Conn>,
        session_id: i64,
        passwd: Vec<u8>,
        timeout_ms: i32,
        read_only: Option<bool>,
        done: tokio::sync::oneshot::Sender<Option<Arc<AtomicU64>>>,
    ) {
        let valid = passwd == session_password(session_id)
            && self.sessions.get(&session_id).is_some_and(|s| !s.closing);
        if !valid {
            conn.send(connect_response(0, 0, &[0u8; 16], read_only));
            conn.close();
            let _ = done.send(None);
            return;
        }
        let timeout = self.shared.settings.negotiate_timeout(timeout_ms);
        let now = self.shared.now_ms();
        let conns = self.shared.conns.lock().unwrap_or_else(|p| p.into_inner());
        let s = self.sessions.get_mut(&session_id).expect("checked");
        if let Some(old) = s.conn.replace(conn.id) {
            if old != conn.id {
                if let Some(c) = conns.get(&old) {
                    c.close();
                }
            }
        }
        drop(conns);
        s.timeout_ms = timeout;
        s.last_touch.store(now, Ordering::Relaxed);
        let touch = s.last_touch.clone();
        conn.session_id.store(session_id, Ordering::Relaxed);
        conn.timeout_ms.store(i64::from(timeout), Ordering::Relaxed);
        conn.send(connect_response(timeout, session_id, &session_password(session_id), read_only));
        let _ = done.send(Some(touch));
        self.publish_sessions();
    }

    fn publish_sessions(&self) {
        *self.shared.sessions.lock().unwrap_or_else(|p| p.into_inner()) = self.sessions.clone();
    }

    fn on_request(
        &mut self,
        conn: Arc<Conn>,
        xid: i32,
        op: OpCode,
        req: Request,
        auth: Arc<Vec<Id>>,
        received: Instant,
    ) {
        let _ = op;
        let session_id = conn.session_id.load(Ordering::Relaxed);
        if reads::is_read(&req) {
            let busy = self.pending.get(&conn.id).is_some_and(|(w, r)| *w + *r > 0);
            if busy {
                // Behind this connection's writes: answered from the version right after the
                // newest txn now, which holds them and none of the connection's later ones.
                let at = self.mark_boundary();
                self.pending.entry(conn.id).or_default().1 += 1;
                self.waiting.entry(at).or_default().push(WaitingRead {
                    conn,
                    xid,
                    req,
                    auth,
                    received,
                });
            } else {
                let mut w = self.shared.watches.lock().unwrap_or_else(|p| p.into_inner());
                answer_read(
                    &self.shared,
                    &self.committed,
                    &mut w,
                    &conn,
                    ReadJob { xid, req: &req, auth: &auth, received },
                );
                drop(w);
                self.answered(&conn);
            }
            return;
        }
        if matches!(req, Request::CloseSession) {
            let txn =
                prepare_close_session(&self.spec.tree, session_id, &self.shared.settings.prepare);
            if let Some(s) = self.sessions.get_mut(&session_id) {
                s.closing = true;
            }
            let zxid = self.log_txn(
                session_id,
                xid,
                txn,
                Origin::Close { conn: Some(conn.clone()), xid: Some(xid) },
            );
            self.queue_write(&conn, zxid);
            return;
        }
        let ctx = SessionContext { session_id, auth: &auth, local_session: false };
        let zxid = self.next_zxid;
        let (header, txn) = prepare_txn(
            &self.spec.tree,
            &ctx,
            &self.shared.settings.prepare,
            &req,
            xid,
            zxid,
            wall_ms(),
        );
        let z = self.log_entry(header, txn, Origin::Client { conn: conn.clone(), xid, received });
        self.queue_write(&conn, z);
    }

    fn queue_write(&mut self, conn: &Arc<Conn>, _zxid: i64) {
        self.pending.entry(conn.id).or_default().0 += 1;
    }

    /// Keeps the speculative version after the newest in-flight txn (a boundary) and returns
    /// that txn's zxid; with nothing in flight, the committed zxid.
    fn mark_boundary(&mut self) -> i64 {
        match self.inflight.back_mut() {
            Some(back) => {
                if back.version.is_none() {
                    back.version = Some(self.spec.tree.clone());
                }
                back.entry.header.zxid
            }
            None => self.durable,
        }
    }

    fn answered(&self, conn: &Conn) {
        conn.pending.fetch_sub(1, Ordering::AcqRel);
        if self.shared.outstanding.fetch_sub(1, Ordering::AcqRel)
            == self.shared.settings.global_outstanding_limit.max(1)
        {
            self.shared.unthrottle.notify_waiters();
        }
    }

    fn log_txn(
        &mut self,
        session_id: i64,
        cxid: i32,
        txn: crate::proto::Txn,
        origin: Origin,
    ) -> i64 {
        let zxid = self.next_zxid;
        let header = TxnHeader {
            client_id: session_id,
            cxid,
            zxid,
            time: wall_ms(),
            op: txn.opcode().code(),
        };
        self.log_entry(header, txn, origin)
    }

    /// Gives a txn its place: applies it to the speculative state and hands it to the log.
    fn log_entry(&mut self, header: TxnHeader, txn: crate::proto::Txn, origin: Origin) -> i64 {
        let zxid = header.zxid;
        debug_assert_eq!(zxid, self.next_zxid);
        self.next_zxid += 1;
        let mut entry = TxnEntry { header, txn, digest: None };
        let outcome = self.spec.apply(&entry);
        entry.digest = Some(TxnDigest { version: 2, tree_digest: self.spec.tree.digest() });
        let tx = self.tx.clone();
        let payload = entry.encode();
        let bytes = payload.len() as u64;
        let r = self.db.log().append_async(
            zxid as u64,
            payload,
            Box::new(move |r| {
                let _ = tx.send(Event::Durable { zxid: zxid as u64, ok: r.is_ok() });
            }),
        );
        if let Err(e) = r {
            fatal(&format!("cannot log txn {zxid:#x}: {e}"));
        }
        self.inflight.push_back(InFlight { entry, origin, outcome, version: None, bytes });
        zxid
    }

    fn on_durable(&mut self, zxid: u64, ok: bool) {
        if !ok {
            let cause = self.db.log().failure().map(|e| e.to_string()).unwrap_or_default();
            fatal(&format!("the transaction log failed at zxid {zxid:#x}: {cause}"));
        }
        self.durable = self.durable.max(zxid as i64);
    }

    /// Commits every durable boundary in order: fires kept watch triggers, answers writes and
    /// the reads that waited for each boundary, then publishes the newest version.
    fn apply_durable(&mut self) {
        // The last boundary that is durable: everything up to it commits now.
        let durable = self.inflight.partition_point(|f| f.entry.header.zxid <= self.durable);
        let Some(end) = self.inflight.range(..durable).rposition(|f| f.version.is_some()) else {
            return;
        };
        let shared = self.shared.clone();
        let mut view = shared.view.write().unwrap_or_else(|p| p.into_inner());
        let mut watches = shared.watches.lock().unwrap_or_else(|p| p.into_inner());
        let conns = shared.conns.lock().unwrap_or_else(|p| p.into_inner());
        let mut sessions_changed = false;
        let mut group_version: Option<DataTree> = None;
        for _ in 0..=end {
            let f = self.inflight.pop_front().expect("counted");
            let zxid = f.entry.header.zxid;
            if group_version.is_none() {
                // The version at the end of this txn's group decides who may hear of its
                // changes (the deleted node's last ACL comes from the committed version).
                group_version = self.inflight_version_from(&f);
            }
            let outcome = f.outcome;
            match &f.entry.txn {
                crate::proto::Txn::CreateSession(t) => {
                    self.committed_sessions.insert(f.entry.header.client_id, t.time_out);
                }
                crate::proto::Txn::CloseSession(_) => {
                    self.committed_sessions.remove(&f.entry.header.client_id);
                }
                _ => {}
            }
            shared.last_zxid.store(zxid, Ordering::Release);
            let after = group_version.as_ref().expect("a group ends at a boundary");
            for t in &outcome.triggers {
                let events = watches.trigger(&t.path, t.event);
                if events.is_empty() {
                    continue;
                }
                // The ACL that decides who may hear of it: a deleted node's last one, else the
                // node's (for NodeChildrenChanged, the parent's: the trigger's path).
                let tree = if t.event == crate::proto::EventType::NodeDeleted {
                    &self.committed
                } else {
                    after
                };
                let acl = tree
                    .node(&t.path)
                    .map(|n| tree.acl_of(n))
                    .unwrap_or_else(|| Arc::from(Vec::new()));
                deliver_permitted(&conns, &events, &acl, shared.settings.skip_acl);
            }
            let session_id = f.entry.header.client_id;
            match f.origin {
                Origin::None => {}
                Origin::Client { conn, xid, received } => {
                    let (err, body) = outcome.result.reply();
                    let err = ErrorCode::from_code(err).unwrap_or(ErrorCode::SystemError);
                    finish_reply(
                        &shared,
                        &conn,
                        xid,
                        zxid,
                        err,
                        &body,
                        f.entry.txn.opcode(),
                        received,
                    );
                    self.answered(&conn);
                    self.write_done(conn.id);
                }
                Origin::NewSession { conn, read_only, done } => {
                    let timeout = conn.timeout_ms.load(Ordering::Relaxed) as i32;
                    let touch = Arc::new(AtomicU64::new(shared.now_ms()));
                    self.sessions.insert(
                        session_id,
                        SessionInfo {
                            timeout_ms: timeout,
                            last_touch: touch.clone(),
                            conn: Some(conn.id),
                            closing: false,
                        },
                    );
                    sessions_changed = true;
                    conn.session_id.store(session_id, Ordering::Relaxed);
                    conn.send(connect_response(
                        timeout,
                        session_id,
                        &session_password(session_id),
                        read_only,
                    ));
                    let _ = done.send(Some((session_id, touch)));
                }
                Origin::Close { conn, xid } => {
                    let owner = self.sessions.remove(&session_id).and_then(|s| s.conn);
                    sessions_changed = true;
                    if let (Some(conn), Some(xid)) = (&conn, xid) {
                        finish_reply(
                            &shared,
                            conn,
                            xid,
                            zxid,
                            ErrorCode::Ok,
                            &Response::Empty,
                            OpCode::CloseSession,
                            Instant::now(),
                        );
                        self.answered(conn);
                        conn.close();
                        self.pending.remove(&conn.id);
                    } else if let Some(c) = owner.and_then(|id| conns.get(&id)) {
                        // Expired: the client learns it when it reconnects.
                        c.close();
                    }
                    if let Some(c) = owner {
                        watches.remove_watcher(c);
                    }
                }
            }
            self.snapshot_due |= self.db.count_applied(f.bytes);
            if let Some(v) = f.version {
                // A boundary: this version is now committed; the reads that waited for it see
                // exactly it.
                self.committed = v;
                group_version = None;
                if let Some(reads) = self.waiting.remove(&zxid) {
                    for r in reads {
                        let job = ReadJob {
                            xid: r.xid,
                            req: &r.req,
                            auth: &r.auth,
                            received: r.received,
                        };
                        answer_read(&shared, &self.committed, &mut watches, &r.conn, job);
                        self.answered(&r.conn);
                        if let Some(p) = self.pending.get_mut(&r.conn.id) {
                            p.1 = p.1.saturating_sub(1);
                        }
                    }
                }
                if self.snapshot_due {
                    self.snapshot_due = false;
                    let state = State {
                        tree: self.committed.clone(),
                        sessions: self.committed_sessions.clone(),
                    };
                    self.db.snapshot_now(zxid as u64, &state);
                }
            }
        }
        *view = Arc::new(self.committed.clone());
        drop(conns);
        drop(watches);
        drop(view);
        if sessions_changed {
            self.publish_sessions();
        }
    }

    /// The version at the end of `f`'s group: its own, or the next boundary's in flight.
    fn inflight_version_from(&self, f: &InFlight) -> Option<DataTree> {
        f.version.clone().or_else(|| self.inflight.iter().find_map(|g| g.version.clone()))
    }

    fn write_done(&mut self, conn_id: u64) {
        if let Some(p) = self.pending.get_mut(&conn_id) {
            p.0 = p.0.saturating_sub(1);
            if p.0 == 0 && p.1 == 0 {
                self.pending.remove(&conn_id);
            }
        }
    }

    fn on_tick(&mut self) {
        let now = self.shared.now_ms();
        // Session expiry: not heard from within the timeout.
        let expired: Vec<i64> = self
            .sessions
            .iter()
            .filter(|(_, s)| {
                !s.closing
                    && now.saturating_sub(s.last_touch.load(Ordering::Relaxed))
                        > s.timeout_ms as u64
            })
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            tracing::info!(session = format_args!("{id:#x}"), "session expired");
            if let Some(s) = self.sessions.get_mut(&id) {
                s.closing = true;
            }
            let txn = prepare_close_session(&self.spec.tree, id, &self.shared.settings.prepare);
            self.log_txn(id, 0, txn, Origin::Close { conn: None, xid: None });
        }
        // autopurge: keep snapRetainCount snapshots and the log they need.
        let every = self.shared.settings.purge_interval_ms;
        if every > 0 && now.saturating_sub(self.last_purge_ms) >= every {
            self.last_purge_ms = now;
            match self.db.purge() {
                Ok(removed) if !removed.is_empty() => {
                    tracing::info!(
                        files = removed.len(),
                        "autopurge removed old snapshots and logs"
                    )
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "autopurge failed"),
            }
        }
        // Container reaper and TTL expiry.
        if now.saturating_sub(self.last_reap_ms) >= self.shared.settings.container_check_ms {
            self.last_reap_ms = now;
            self.reap(wall_ms());
        }
    }

    /// Deletes empty containers that once had children, and TTL nodes past their time with no
    /// children, through deleteContainer txns as ZooKeeper's ContainerManager does.
    fn reap(&mut self, wall: i64) {
        let tree = &self.spec.tree;
        let mut victims = Vec::new();
        for path in tree.containers() {
            if let Some(n) = tree.node(&path) {
                let st = tree.client_stat(n);
                if st.num_children == 0 && st.cversion > 0 {
                    victims.push(path);
                }
            }
        }
        for path in tree.ttls() {
            if let Some(n) = tree.node(&path) {
                let st = tree.client_stat(n);
                let ttl = n.stat.ephemeral_owner & 0x00FF_FFFF_FFFF;
                if st.num_children == 0 && wall > st.mtime + ttl {
                    victims.push(path);
                }
            }
        }
        for path in victims {
            let req = Request::DeleteContainer(crate::proto::DeleteRequest { path, version: -1 });
            let ctx = SessionContext { session_id: 0, auth: &[], local_session: false };
            let zxid = self.next_zxid;
            let (header, txn) = prepare_txn(
                &self.spec.tree,
                &ctx,
                &self.shared.settings.prepare,
                &req,
                0,
                zxid,
                wall,
            );
            if matches!(txn, crate::proto::Txn::Error(_)) {
                continue;
            }
            self.log_entry(header, txn, Origin::None);
        }
    }
}

/// Stops the process after an error that makes further service unsafe (a failed log write).
pub fn fatal(msg: &str) -> ! {
    tracing::error!("{msg}; stopping");
    eprintln!("corral: fatal: {msg}");
    std::process::exit(70)
}
