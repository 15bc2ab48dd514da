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
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::db::{Database, State};
use crate::proto::{
    encode_notification, encode_reply, ConnectResponse, Data, ErrorCode, Id, Jute, OpCode, Request,
    Response, WatcherEvent,
};
pub use crate::replica::Fatal;
use crate::replica::{
    Applied, DurableNotify, Output, Proposal, ProposeError, Replica, ReplicaOptions, Stored,
};
use crate::session::ids::SessionIdGenerator;
use crate::tree::acl::AuthSchemes;
use crate::tree::{DataTree, PrepareConfig};
use crate::watch::{Notification, WatchManager};
use crate::zab::wire::{encode_i32, ForwardedRequest};
use crate::zab::{Command, Event, PeerConfig, Role, Sid, SyncPlan, Zxid};
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
    /// autopurge.purgeInterval in ms (0: never purge).
    pub purge_interval_ms: u64,
    /// The size limits every request, txn and reply is checked against.
    pub limits: crate::limits::Limits,
    /// readonlymode.enabled: an ensemble member cut off from the quorum serves read-only
    /// sessions.
    pub read_only_mode: bool,
    /// localSessionsEnabled: an ensemble member's new sessions are its own (never logged)
    /// until they create an ephemeral.
    pub local_sessions: bool,
    /// localSessionsUpgradingEnabled: a local session creating an ephemeral becomes global
    /// first (otherwise the create fails with EPHEMERALONLOCALSESSION).
    pub local_sessions_upgrading: bool,
    /// syncEnabled: an observer logs the txns it learns (otherwise it only applies them).
    pub sync_enabled: bool,
    /// SASL for clients (a JAAS server section), if configured.
    pub sasl: Option<Arc<crate::sasl::SaslConfig>>,
    /// With enforced authentication (`enforce.auth.*`, `sessionRequireClientSASLAuth`), the
    /// schemes one of which a connection needs an id of before its requests are served.
    pub enforce_auth: Option<Vec<String>>,
    /// With reconfigEnabled, the zoo.cfg this server was started with: an activated
    /// membership is written next to it (`zoo.cfg.dynamic.<version>`) and it is rewritten to
    /// point there, as ZooKeeper does. `None`: nothing is written.
    pub config_file: Option<std::path::PathBuf>,
    /// `audit.enable`: where audit lines go (`None`: no audit log).
    pub audit: Option<Arc<crate::audit::AuditLog>>,
    /// `corral.slowRequestWarningMs` (0: no warnings).
    pub slow_request_ms: u64,
}

impl Settings {
    /// The settings a zoo.cfg implies.
    pub fn from_config(c: &crate::config::Config) -> Settings {
        Settings {
            tick_ms: u64::from(c.tick_time_ms),
            min_session_timeout_ms: c.min_session_timeout_ms as i32,
            max_session_timeout_ms: c.max_session_timeout_ms as i32,
            prepare: PrepareConfig {
                extended_types: c.extended_types_enabled,
                skip_acl: c.skip_acl,
                close_session_txn: c.close_session_txn_enabled,
                reconfig_enabled: c.reconfig_enabled && c.is_distributed(),
                auth_schemes: AuthSchemes { sasl: c.sasl_enabled(), x509: c.x509_enabled() },
                ..PrepareConfig::default()
            },
            skip_acl: c.skip_acl,
            super_digest: c.super_digest.clone(),
            server_id: c.session_server_id(),
            container_check_ms: 60_000,
            global_outstanding_limit: c.global_outstanding_limit as usize,
            purge_interval_ms: if c.test_purge_interval_ms > 0 {
                c.test_purge_interval_ms
            } else {
                u64::from(c.autopurge_purge_interval_hours) * 3_600_000
            },
            limits: crate::limits::Limits::from_config(c),
            read_only_mode: c.read_only_mode_enabled,
            local_sessions: c.local_sessions_enabled && c.is_distributed(),
            local_sessions_upgrading: c.local_sessions_upgrading_enabled,
            sync_enabled: c.sync_enabled,
            sasl: None,
            enforce_auth: c.enforced_auth_schemes(),
            config_file: None,
            audit: None,
            slow_request_ms: c.slow_request_warning_ms,
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
    /// A reply the writer encodes straight into its write buffer, outside every lock the
    /// pipeline takes (a large getData is one copy, from the tree into the socket buffer).
    /// `queued` is the size it was counted at in the connection's queue.
    Reply {
        /// The reply.
        reply: Box<PendingReply>,
        /// Bytes counted for it.
        queued: usize,
    },
    /// Close the connection after what is queued.
    Close,
}

impl Out {
    /// Bytes this item was counted at in its connection's queue.
    pub fn queued_bytes(&self) -> usize {
        match self {
            Out::Frame(f) => f.len(),
            Out::Shared(f) => f.len(),
            Out::Reply { queued, .. } => *queued,
            Out::Close => 0,
        }
    }
}

/// A reply waiting to be encoded by the connection's writer.
#[derive(Debug)]
pub struct PendingReply {
    /// ReplyHeader xid.
    pub xid: i32,
    /// ReplyHeader zxid.
    pub zxid: i64,
    /// ReplyHeader err.
    pub err: ErrorCode,
    /// The body (written only when `err` is Ok).
    pub body: Response,
}

impl PendingReply {
    /// Appends the framed reply to `buf`. A reply whose frame would exceed `max` bytes (more
    /// than a client reads) is replaced by a MARSHALLINGERROR reply with the same xid.
    pub fn encode_into(&self, buf: &mut Vec<u8>, max: usize) {
        let start = buf.len();
        buf.extend_from_slice(&[0u8; 4]);
        crate::proto::ReplyHeader { xid: self.xid, zxid: self.zxid, err: self.err.code() }
            .write(buf);
        if self.err == ErrorCode::Ok {
            self.body.write(buf);
        }
        let len = buf.len() - start - 4;
        if len > max {
            tracing::info!(
                xid = self.xid,
                bytes = len,
                max,
                "reply larger than jute.maxbuffer; answered MARSHALLINGERROR"
            );
            buf.truncate(start);
            encode_reply(buf, self.xid, self.zxid, ErrorCode::MarshallingError, &Response::Empty);
            return;
        }
        buf[start..start + 4].copy_from_slice(&(len as i32).to_be_bytes());
    }
}

/// The bytes a reply is counted at in its connection's queue: its size, near enough (the
/// large parts exactly), without encoding it.
fn reply_size_hint(err: ErrorCode, body: &Response) -> usize {
    const SMALL: usize = 128;
    if err != ErrorCode::Ok {
        return SMALL;
    }
    let names = |v: &[String]| v.iter().map(|n| n.len() + 4).sum::<usize>();
    match body {
        Response::GetData(d) => SMALL + d.data.len(),
        Response::GetChildren(c) => SMALL + names(&c.children),
        Response::GetChildren2(c) => SMALL + names(&c.children),
        Response::GetEphemerals(e) => SMALL + names(&e.ephemerals),
        Response::GetAcl(a) => {
            SMALL + a.acl.iter().map(|x| x.id.id.len() + x.id.scheme.len() + 12).sum::<usize>()
        }
        Response::Multi(rs) => rs
            .iter()
            .map(|r| match r {
                crate::proto::OpResult::GetData { data, .. } => SMALL + data.len(),
                crate::proto::OpResult::GetChildren { children } => SMALL + names(children),
                crate::proto::OpResult::Create { path } => SMALL + path.len(),
                _ => SMALL,
            })
            .sum(),
        Response::Create(c) => SMALL + c.path.len(),
        Response::Create2(c) => SMALL + c.path.len(),
        _ => SMALL,
    }
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
    /// Bytes queued for the writer and not written yet.
    pub queued: AtomicUsize,
    /// Queued bytes past which the connection is closed at once (twice the limit at which
    /// its requests stop being read).
    pub queued_hard_max: usize,
    /// Set to true to close the connection now, dropping what is queued: both of its tasks
    /// watch it.
    pub kill: tokio::sync::watch::Sender<bool>,
    /// Wakes the reader when the writer has written (the queue went down).
    pub drained: tokio::sync::Notify,
    /// The session ended (closed or expired): no further request of this connection runs.
    pub session_ended: AtomicBool,
    /// The connection's reader has stopped: a read still queued in the pipeline is dropped
    /// instead of answered (it would re-add watches after they were removed).
    pub gone: AtomicBool,
}

impl Conn {
    /// A connection's pipeline-side handle; `out` feeds its writer task.
    pub fn new(
        id: u64,
        remote: SocketAddr,
        out: tokio::sync::mpsc::UnboundedSender<Out>,
        established_ms: u64,
        queued_hard_max: usize,
    ) -> Conn {
        let conn = Conn {
            id,
            remote,
            out,
            pending: AtomicUsize::new(0),
            session_id: AtomicI64::new(0),
            timeout_ms: AtomicI64::new(0),
            established_ms,
            stats: ConnStats::default(),
            auth: Mutex::new(Arc::new(vec![Id {
                scheme: "ip".into(),
                id: remote.ip().to_string(),
            }])),
            queued: AtomicUsize::new(0),
            queued_hard_max,
            kill: tokio::sync::watch::Sender::new(false),
            drained: tokio::sync::Notify::new(),
            session_ended: AtomicBool::new(false),
            gone: AtomicBool::new(false),
        };
        conn.stats.lat_min.store(u64::MAX, Ordering::Relaxed);
        conn
    }

    /// Queues an item for the writer, counting its bytes; false if the connection is gone.
    /// An item that takes the queue past its hard limit closes the connection instead: its
    /// client has stopped reading while events kept coming.
    fn push(&self, item: Out) -> bool {
        if *self.kill.borrow() {
            return false;
        }
        let bytes = item.queued_bytes();
        let queued = self.queued.fetch_add(bytes, Ordering::AcqRel) + bytes;
        if queued > self.queued_hard_max {
            self.queued.fetch_sub(bytes, Ordering::AcqRel);
            tracing::info!(
                remote = %self.remote,
                queued,
                max = self.queued_hard_max,
                "a client that does not read its replies; closing its connection"
            );
            self.kill_now();
            return false;
        }
        self.stats.sent.fetch_add(1, Ordering::Relaxed);
        if self.out.send(item).is_err() {
            self.queued.fetch_sub(bytes, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Queues a frame; false if the connection is gone.
    pub fn send(&self, frame: Vec<u8>) -> bool {
        self.push(Out::Frame(frame))
    }

    /// Queues a frame shared with other connections.
    pub fn send_shared(&self, frame: &Arc<[u8]>) -> bool {
        self.push(Out::Shared(frame.clone()))
    }

    /// Queues a reply for the writer to encode.
    pub fn send_reply(&self, xid: i32, zxid: i64, err: ErrorCode, body: Response) -> bool {
        let queued = reply_size_hint(err, &body);
        let reply = Box::new(PendingReply { xid, zxid, err, body });
        self.push(Out::Reply { reply, queued })
    }

    /// Asks the writer to close after what is queued.
    pub fn close(&self) {
        let _ = self.out.send(Out::Close);
    }

    /// Closes the connection now, dropping whatever is queued (a client that does not read
    /// would otherwise hold it open behind its unread bytes).
    pub fn kill_now(&self) {
        self.kill.send_replace(true);
    }

    /// The session ended: no later request of this connection runs, and the connection is
    /// closed now.
    pub fn end_session(&self) {
        self.session_ended.store(true, Ordering::Release);
        self.kill_now();
    }
}

/// Reply latencies in microseconds, from a request's arrival to its reply being queued on
/// its connection: updates (requests that become txns) and reads apart, as ZooKeeper's
/// `updatelatency` and `readlatency` (mntr `*_update_latency_us`, `*_read_latency_us`).
#[derive(Debug, Clone)]
pub struct ReplyTimes {
    /// Updates.
    pub update_us: hdrhistogram::Histogram<u64>,
    /// Everything else answered through the pipeline.
    pub read_us: hdrhistogram::Histogram<u64>,
}

impl Default for ReplyTimes {
    fn default() -> Self {
        let h =
            || hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
        ReplyTimes { update_us: h(), read_us: h() }
    }
}

/// True for the opcodes ZooKeeper counts as updates (its `Request.isQuorum`): those that
/// become txns.
pub fn is_update(op: OpCode) -> bool {
    matches!(
        op,
        OpCode::Create
            | OpCode::Create2
            | OpCode::CreateContainer
            | OpCode::CreateTtl
            | OpCode::Delete
            | OpCode::DeleteContainer
            | OpCode::SetData
            | OpCode::SetAcl
            | OpCode::Multi
            | OpCode::Reconfig
            | OpCode::Check
            | OpCode::CreateSession
            | OpCode::CloseSession
    )
}

/// Server-wide counters (srvr, stat, mntr).
#[derive(Debug)]
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
    /// Reply latency histograms.
    pub times: Mutex<ReplyTimes>,
    /// The transaction log's measurements (flush and append times), once the log is open.
    pub log: std::sync::OnceLock<corral_engine::log::MetricsHandle>,
    /// Sizes of the replies written to clients.
    pub responses: Arc<ResponseSizes>,
    /// Requests slower than `corral.slowRequestWarningMs`, and when to warn of them.
    pub slow: Mutex<crate::admin::warnings::SlowRequests>,
    /// Requests slower than `corral.slowRequestWarningMs` so far.
    pub slow_total: AtomicU64,
    /// ZooKeeper's `ServerMetrics` counters and summaries Corral records (`digest_mismatches_count`
    /// among them).
    pub zk: Arc<crate::admin::server_metrics::ServerMetrics>,
}

/// Last, smallest and largest reply size in bytes (ZooKeeper's client response
/// `BufferStats`): -1 before the first reply.
#[derive(Debug)]
pub struct ResponseSizes {
    last: AtomicI64,
    min: AtomicI64,
    max: AtomicI64,
}

impl Default for ResponseSizes {
    fn default() -> Self {
        Self { last: AtomicI64::new(-1), min: AtomicI64::new(-1), max: AtomicI64::new(-1) }
    }
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            lat_sum: AtomicU64::new(0),
            lat_count: AtomicU64::new(0),
            lat_min: AtomicU64::new(0),
            lat_max: AtomicU64::new(0),
            times: Mutex::new(ReplyTimes::default()),
            log: std::sync::OnceLock::new(),
            responses: Arc::default(),
            slow: Mutex::new(crate::admin::warnings::SlowRequests::new(10_000)),
            slow_total: AtomicU64::new(0),
            zk: Default::default(),
        }
    }
}

impl ResponseSizes {
    /// Records one reply of `bytes`.
    pub fn record(&self, bytes: i64) {
        self.last.store(bytes, Ordering::Relaxed);
        self.max.fetch_max(bytes, Ordering::Relaxed);
        let _ = self.min.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |m| {
            (m < 0 || bytes < m).then_some(bytes)
        });
    }

    /// The figures.
    pub fn get(&self) -> crate::admin::report::BufferStats {
        crate::admin::report::BufferStats {
            last: self.last.load(Ordering::Relaxed),
            min: self.min.load(Ordering::Relaxed),
            max: self.max.load(Ordering::Relaxed),
        }
    }

    /// Back to no samples (srst).
    pub fn reset(&self) {
        for a in [&self.last, &self.min, &self.max] {
            a.store(-1, Ordering::Relaxed);
        }
    }
}

impl Stats {
    /// Records a request's latency.
    pub fn record_latency(&self, ms: u64) {
        self.lat_sum.fetch_add(ms, Ordering::Relaxed);
        self.lat_count.fetch_add(1, Ordering::Relaxed);
        self.lat_min.fetch_min(ms, Ordering::Relaxed);
        self.lat_max.fetch_max(ms, Ordering::Relaxed);
    }

    /// Records a reply: its latency in ms (srvr, mntr's ZooKeeper keys) and in µs (the
    /// update/read histograms).
    pub fn record_reply(&self, elapsed: Duration, update: bool) {
        self.record_latency(elapsed.as_millis() as u64);
        let us = (elapsed.as_micros() as u64).max(1);
        let mut t = self.times.lock().unwrap_or_else(|p| p.into_inner());
        if update {
            t.update_us.saturating_record(us);
        } else {
            t.read_us.saturating_record(us);
        }
    }

    /// Clears them (srst), the log's measurements too.
    pub fn reset(&self) {
        for a in [&self.received, &self.sent, &self.lat_sum, &self.lat_count, &self.lat_max] {
            a.store(0, Ordering::Relaxed);
        }
        self.lat_min.store(u64::MAX, Ordering::Relaxed);
        self.responses.reset();
        *self.times.lock().unwrap_or_else(|p| p.into_inner()) = ReplyTimes::default();
        if let Some(log) = self.log.get() {
            log.reset();
        }
        self.zk.reset();
    }
}

/// A session as the pipeline tracks it.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// Negotiated timeout.
    pub timeout_ms: i32,
    /// Last time the client was heard from, ms since the server started.
    pub last_touch: Arc<AtomicU64>,
    /// The last touch handed to the session tracker.
    pub touch_sent: u64,
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
    /// Wakes connection readers paused by globalOutstandingLimit.
    pub unthrottle: tokio::sync::Notify,
    /// The configuration the server runs with (for `conf`, the 4lw whitelist).
    pub config: crate::config::Config,
    /// When the server started, wall clock ms since the epoch.
    pub start_wall_ms: i64,
    /// The trace mask of `gtmk`/`stmk` (kept for compatibility; it changes no logging).
    pub trace_mask: AtomicI64,
    /// The pipeline's input, once it runs (for the AdminServer's `restore`).
    pub core: std::sync::OnceLock<Sender<Input>>,
    /// An ensemble member's quorum transports (for the AdminServer's `observers`).
    pub quorum_net: std::sync::OnceLock<crate::net::quorum::QuorumNet>,
    /// Failed auth attempts (mntr zk_auth_failed_count).
    pub auth_failed: AtomicU64,
    /// Why the pipeline stopped on its own (storage failed), once it has.
    pub fatal: Mutex<Option<Fatal>>,
    /// Notified (once, with a stored permit) when `fatal` is set.
    pub failed: tokio::sync::Notify,
    /// Where the pipeline and the connections read the time.
    pub clock: Arc<dyn Clock>,
    /// What the server is now ([`MODE_STANDALONE`], [`MODE_NOT_SERVING`], [`MODE_LEADER`],
    /// [`MODE_FOLLOWER`], [`MODE_OBSERVER`]): set by the pipeline when its role changes, read
    /// by the four-letter words.
    pub mode: std::sync::atomic::AtomicU8,
    /// An ensemble member's state for `mntr` (refreshed every tick and at role changes).
    pub ensemble: Mutex<EnsembleReport>,
    /// Global sessions in the committed state (every server's), for `mntr`.
    pub global_sessions: std::sync::atomic::AtomicUsize,
    /// Sessions this server keeps to itself (local and read-only sessions), for `mntr`.
    pub local_sessions: std::sync::atomic::AtomicUsize,
}

/// What `mntr` reports of a member's part in its ensemble.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnsembleReport {
    /// `zk_peer_state`: the server state and the ZAB phase, e.g. `following - broadcast`
    /// (empty standalone).
    pub peer_state: String,
    /// The leader this member follows or observes.
    pub leader: Option<Sid>,
    /// A leader's view of its learners.
    pub leading: Option<crate::zab::LeaderReport>,
    /// Since when this server has led an established epoch (ms since the server started).
    pub leading_since_ms: Option<u64>,
    /// The active membership's text once one was activated (`conf` shows it instead of the
    /// configured one).
    pub membership: Option<String>,
}

/// [`Shared::mode`]: a standalone server.
pub const MODE_STANDALONE: u8 = 0;
/// [`Shared::mode`]: an ensemble member without an established leader (not serving clients).
pub const MODE_NOT_SERVING: u8 = 1;
/// [`Shared::mode`]: the established leader.
pub const MODE_LEADER: u8 = 2;
/// [`Shared::mode`]: a serving follower.
pub const MODE_FOLLOWER: u8 = 3;
/// [`Shared::mode`]: a serving observer.
pub const MODE_OBSERVER: u8 = 4;
/// [`Shared::mode`]: cut off from the quorum, serving read-only sessions
/// (`readonlymode.enabled`).
pub const MODE_READ_ONLY: u8 = 5;

/// How long a member looks for a leader before it serves read-only clients (ZooKeeper's
/// grace period: the larger of this and tickTime).
pub const READ_ONLY_GRACE_MS: u64 = 2000;

/// The time, as the pipeline and the connections see it: the server's clock, or a test's.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Milliseconds since the server started (monotonic): session touches, ticks.
    fn now_ms(&self) -> u64;
    /// Milliseconds since the Unix epoch: txn timestamps (ctime, mtime), TTLs.
    fn wall_ms(&self) -> i64;
}

/// The machine's clocks.
#[derive(Debug)]
pub struct SystemClock {
    start: Instant,
}

impl SystemClock {
    /// Starts counting now.
    pub fn new() -> Self {
        SystemClock { start: Instant::now() }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }
    fn wall_ms(&self) -> i64 {
        wall_ms()
    }
}

/// A clock that moves only when told (tests drive the pipeline step by step with it).
#[derive(Debug)]
pub struct ManualClock {
    now: AtomicU64,
    wall_start: i64,
}

impl ManualClock {
    /// At 0 ms since start, `wall_start` ms since the Unix epoch.
    pub fn new(wall_start: i64) -> Self {
        ManualClock { now: AtomicU64::new(0), wall_start }
    }

    /// Moves it forward.
    pub fn advance(&self, ms: u64) {
        self.now.fetch_add(ms, Ordering::AcqRel);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now.load(Ordering::Acquire)
    }
    fn wall_ms(&self) -> i64 {
        self.wall_start + self.now_ms() as i64
    }
}

impl Shared {
    /// State for a server about to start with these settings and configuration.
    pub fn new(
        settings: Settings,
        config: crate::config::Config,
        tree: crate::tree::TreeOptions,
    ) -> Shared {
        Shared::with_clock(settings, config, tree, Arc::new(SystemClock::new()))
    }

    /// The same, reading the time from `clock`.
    pub fn with_clock(
        settings: Settings,
        config: crate::config::Config,
        tree: crate::tree::TreeOptions,
        clock: Arc<dyn Clock>,
    ) -> Shared {
        let shared = Shared {
            view: RwLock::new(Arc::new(DataTree::new(tree))),
            last_zxid: AtomicI64::new(0),
            watches: Mutex::new(WatchManager::new()),
            conns: Mutex::default(),
            sessions: Mutex::default(),
            outstanding: AtomicUsize::new(0),
            stats: Stats::default(),
            settings,
            unthrottle: tokio::sync::Notify::new(),
            config,
            start_wall_ms: clock.wall_ms() - clock.now_ms() as i64,
            trace_mask: AtomicI64::new(crate::admin::fourlw::DEFAULT_TRACE_MASK),
            core: std::sync::OnceLock::new(),
            quorum_net: std::sync::OnceLock::new(),
            auth_failed: AtomicU64::new(0),
            fatal: Mutex::new(None),
            failed: tokio::sync::Notify::new(),
            clock,
            mode: std::sync::atomic::AtomicU8::new(MODE_STANDALONE),
            ensemble: Mutex::new(EnsembleReport::default()),
            global_sessions: std::sync::atomic::AtomicUsize::new(0),
            local_sessions: std::sync::atomic::AtomicUsize::new(0),
        };
        shared.stats.reset();
        shared
    }

    /// Milliseconds since the server started.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }
}

/// Events the pipeline thread handles.
pub enum Input {
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
        zxid: Zxid,
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
    /// Network news for an ensemble member's replica: an election notification, a quorum
    /// packet, a snapshot body, a quorum connection opened or broken.
    Peer(Event),
    /// The AdminServer's `restore`: make this state the committed one (standalone only).
    Restore {
        /// The restored tree and sessions.
        state: Box<State>,
        /// Told the outcome.
        done: std::sync::mpsc::SyncSender<Result<(), String>>,
    },
    /// Stop: finish what is durable and return.
    Shutdown,
}

/// See [`Input::Restore`].
struct PendingRestore {
    state: Box<State>,
    done: std::sync::mpsc::SyncSender<Result<(), String>>,
    /// Given up (and answered so) if the pipeline is not quiet by then (ms, `now_ms`).
    deadline_ms: u64,
}

/// How long a restore waits for writes in flight and a snapshot being written to finish.
const RESTORE_WAIT_MS: u64 = 30_000;

/// The audit lines of a closeSession's ephemeral deletions, as ZooKeeper's DataTree logs them
/// (on every server that applies it): those its txn lists, then any other, each in the order
/// ZooKeeper's `HashSet` of the session's ephemerals iterates (creation order taken from
/// `before`, the tree before the txn's commit group).
fn ephemeral_deletions(
    log: &crate::audit::AuditLog,
    session: i64,
    txn: &crate::proto::CloseSessionTxn,
    a: &Applied,
    before: &DataTree,
) -> Vec<crate::audit::AuditEvent> {
    use crate::audit::{java_hash_set_order, AuditEvent};
    let deleted: Vec<&str> = a
        .outcome
        .triggers
        .iter()
        .filter(|t| t.event == crate::proto::EventType::NodeDeleted)
        .map(|t| t.path.as_str())
        .collect();
    let in_order = |mut paths: Vec<String>| {
        paths.sort_by_key(|p| before.node(p).map_or(i64::MAX, |n| n.stat.czxid));
        java_hash_set_order(paths)
    };
    let listed = txn.paths_to_delete.clone().unwrap_or_default();
    let rest: Vec<String> =
        deleted.iter().filter(|p| !listed.iter().any(|l| l == *p)).map(|p| p.to_string()).collect();
    let mut out = Vec::new();
    for p in in_order(listed) {
        let done = deleted.contains(&p.as_str());
        out.push(AuditEvent::ephemeral_deleted(&log.server_user, session, &p, done));
    }
    for p in in_order(rest) {
        out.push(AuditEvent::ephemeral_deleted(&log.server_user, session, &p, true));
    }
    out
}

/// Whether a peer in `role` serves clients (an established leader, a synced learner).
fn serves(role: Role) -> bool {
    matches!(
        role,
        Role::Leading { established: true, .. }
            | Role::Following { serving: true, .. }
            | Role::Observing { serving: true, .. }
    )
}

/// See [`Pipeline::timing`].
#[derive(Debug, Default)]
struct RoleTiming {
    looking_since: Option<u64>,
    unavailable_since: Option<u64>,
    sync_since: Option<u64>,
}

enum Origin {
    None,
    Client {
        conn: Arc<Conn>,
        xid: i32,
        received: Instant,
        /// What the audit log needs of the request (only when `audit.enable` is on).
        audit: Option<Box<crate::audit::AuditRequest>>,
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

/// Network traffic of an ensemble member, for its runtime to carry.
#[derive(Debug)]
pub enum NetOut {
    /// An election notification, a quorum packet, or a quorum connection to open or close
    /// (`zab::Command::SendNotification`, `Send`, `Connect`, `Disconnect`).
    Command(Command),
    /// The SNAP payload for `to`: the state, to be written as a snapshot body in ZooKeeper's
    /// format (then "BenWasHere") straight onto the learner's connection.
    Snapshot {
        /// The learner.
        to: Sid,
        /// The sync point.
        zxid: Zxid,
        /// The state at the sync point (a version of the tree: shared, not copied).
        state: Box<State>,
    },
}

/// An item of a learner's per-connection order. Items are answered from the front only, so
/// replies go out in the order the client sent its requests.
enum Queued {
    /// A forwarded write, answered when it comes back committed; `Some` holds its reply when
    /// it was applied while something before it (a sync) still waited.
    Write(Option<Box<DoneWrite>>),
    /// A forwarded sync, answered once the leader's SYNC came back (`Some`: the commit point
    /// then) and everything committed before that is applied here.
    Sync(WaitingRead, Option<Zxid>),
    /// A read, answered once everything before it is.
    Read(WaitingRead),
}

/// A client resuming a session this server does not hold, until the leader answers.
struct Resume {
    conn: Arc<Conn>,
    timeout_ms: i32,
    read_only: Option<bool>,
    done: tokio::sync::oneshot::Sender<Option<Arc<AtomicU64>>>,
}

/// Refuses a client resuming a session: a connect response with no session (the client
/// reports the session expired), then the connection closes.
fn refuse_resume(
    conn: &Conn,
    read_only: Option<bool>,
    done: tokio::sync::oneshot::Sender<Option<Arc<AtomicU64>>>,
) {
    conn.send(connect_response(0, 0, &[0u8; 16], read_only.map(|_| false)));
    conn.close();
    let _ = done.send(None);
}

/// A resume that cannot be decided now (no leader to revalidate with): the connection closes
/// without an answer, as ZooKeeper closes a connection it cannot serve ("ZooKeeperServer not
/// running"), and the client tries again, here or elsewhere, with its session intact. (An
/// answer with timeout 0 would tell it the session expired.)
fn drop_resume(conn: &Conn, done: tokio::sync::oneshot::Sender<Option<Arc<AtomicU64>>>) {
    conn.close();
    let _ = done.send(None);
}

/// The reply to a learner's forwarded write, held in its connection's order.
struct DoneWrite {
    conn: Arc<Conn>,
    xid: i32,
    zxid: i64,
    err: ErrorCode,
    body: Response,
    op: OpCode,
    received: Instant,
}

/// A read waiting for a boundary (behind its connection's writes).
struct WaitingRead {
    conn: Arc<Conn>,
    xid: i32,
    req: Request,
    auth: Arc<Vec<Id>>,
    received: Instant,
    /// Not a read: a request of a session that had ended, answered SESSIONEXPIRED in its turn.
    expired: bool,
}

/// The pipeline thread's state.
pub struct Pipeline {
    shared: Arc<Shared>,
    /// The replica: a standalone (one-voter) ZAB peer over the database, which sequences,
    /// logs, commits and applies.
    replica: Replica,
    /// The committed version before the commit group being answered (a deleted node's last
    /// ACL comes from it).
    before: DataTree,
    /// The committed state's digest-mismatch count last added to `Stats::digest_mismatches`.
    digest_seen: u64,
    /// When the current election began, when this server stopped serving, when its sync
    /// with a leader began (ms, `Shared::now_ms`): ZooKeeper's election, unavailability and
    /// sync times.
    timing: RoleTiming,
    /// Who waits for each txn this pipeline proposed, by zxid (in zxid order).
    origins: VecDeque<(Zxid, Origin)>,
    /// Per connection: (writes in flight, reads waiting).
    pending: HashMap<u64, (usize, usize)>,
    /// Reads waiting for the boundary at a zxid, in arrival order.
    waiting: std::collections::BTreeMap<i64, Vec<WaitingRead>>,
    sessions: HashMap<i64, SessionInfo>,
    ids: SessionIdGenerator,
    last_reap_ms: u64,
    last_purge_ms: u64,
    /// When the replica's next tick (one tickTime) is due, ms since the server started.
    next_peer_tick_ms: u64,
    /// When the next tick of the election's clock is due (`PeerConfig::election_tick_ms`).
    next_election_tick_ms: u64,
    /// A reusable buffer for the replica's outputs of a proposal.
    scratch: Vec<Output>,
    /// Network traffic for the runtime to carry (ensemble members).
    net: Vec<NetOut>,
    /// A learner's forwarded requests waiting for their txn to come back committed, by
    /// (session, cxid), oldest first.
    forwarded: HashMap<(i64, i32), VecDeque<Origin>>,
    /// A learner's per-connection order: its forwarded writes and syncs, and the reads
    /// queued behind them.
    learner_queue: HashMap<u64, VecDeque<Queued>>,
    /// Clients' inputs that arrived while the leader could not propose (`outstanding_max`
    /// proposals in flight, a hand-over), in arrival order: handled as commits make room.
    /// Bounded by globalOutstandingLimit (the connections stop reading past it) and the
    /// number of connections.
    stalled: VecDeque<Input>,
    /// A restore waiting for the writes in flight and any snapshot being written: clients'
    /// inputs stall meanwhile.
    restoring: Option<PendingRestore>,
    /// The autopurge thread last started.
    purging: Option<std::thread::JoinHandle<()>>,
    /// Sessions the tracker expired while the leader could not propose: their closeSession
    /// is proposed as commits make room (the tracker forgets a session it expired). At most
    /// one per session.
    held_expiries: VecDeque<i64>,
    /// Syncs the leader answered, waiting for the commits before them to be applied here:
    /// (commit point, connection), in commit-point order.
    syncs_applying: VecDeque<(Zxid, u64)>,
    /// A learner's forwarded syncs, by connection, in the order they were sent.
    syncs: VecDeque<u64>,
    /// The newest durable zxid the log reported, told to the replica at the end of a batch.
    durable_seen: Zxid,
    /// Storage failed: the pipeline stops at the end of the batch.
    fatal: Option<Fatal>,
    /// An ensemble member (not standalone): session passwords are ZooKeeper's, and a session
    /// this server does not hold is revalidated with the leader before a client resumes it.
    member: bool,
    /// Clients resuming a session here, waiting for the leader's answer to REVALIDATE.
    revalidating: HashMap<i64, Vec<Resume>>,
    /// Read-only mode (`readonlymode.enabled`).
    ro: ReadOnly,
    /// Local sessions (`localSessionsEnabled`): this server's own, never logged, until one
    /// creates an ephemeral (and is upgraded) or ends.
    local_sessions: std::collections::HashSet<i64>,
}

/// A member's read-only mode: after [`READ_ONLY_GRACE_MS`] (or a tickTime) looking for a
/// leader, it serves clients that ask for read-only sessions from the state it has, until it
/// finds a leader again.
#[derive(Debug, Default)]
struct ReadOnly {
    /// Since when (ms since the server started) the replica has been looking for a leader.
    looking_since: Option<u64>,
    /// Serving read-only sessions now.
    active: bool,
    /// The sessions created in read-only mode: this server's alone (ZooKeeper's local
    /// sessions), never logged; they end with read-only mode.
    local: std::collections::HashSet<i64>,
}

fn wall_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Encodes a ConnectResponse frame. `read_only` is its last field: absent for a client that
/// did not send one, true from a server in read-only mode.
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
        read_only,
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
    schemes: &AuthSchemes,
) {
    let Some(first) = events.first() else { return };
    let frame: Arc<[u8]> = event_frame(first).into();
    for n in events {
        debug_assert!(n.path == first.path && n.event == first.event);
        if let Some(c) = conns.get(&n.watcher) {
            let allowed = skip_acl || {
                let auth = c.auth.lock().unwrap_or_else(|p| p.into_inner()).clone();
                crate::tree::acl::check_acl(acl, 1, &auth, schemes)
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

/// ZooKeeper's rule for a client (re)connecting: a server whose state is older than what the
/// client has seen refuses it ("client must try another server"), so no client ever sees the
/// state go back.
pub fn behind_client(shared: &Shared, last_zxid_seen: i64) -> bool {
    last_zxid_seen > shared.last_zxid.load(Ordering::Acquire)
}

/// The connection layer's fast path: a read of a connection with nothing in the pipeline is
/// answered here, from the published version, under the read lock that orders it with watch
/// events (its reply is encoded later, by the writer, outside the locks). False: the request
/// must go to the pipeline. A `sync` always goes there: it is answered only once every write
/// committed before it is applied here (forwarded to the leader on a learner), which the
/// published version alone cannot tell.
pub fn answer_locally(shared: &Shared, conn: &Arc<Conn>, job: ReadJob<'_>) -> bool {
    if !reads::is_read(job.req)
        || matches!(job.req, Request::Sync(_))
        || conn.pending.load(Ordering::Acquire) != 0
    {
        return false;
    }
    shared.outstanding.fetch_add(1, Ordering::AcqRel);
    let view = shared.view.read().unwrap_or_else(|p| p.into_inner());
    let tree = view.clone();
    let mut w = shared.watches.lock().unwrap_or_else(|p| p.into_inner());
    answer_read(shared, &tree, &mut w, conn, job);
    drop(w);
    drop(view);
    shared.outstanding.fetch_sub(1, Ordering::AcqRel);
    true
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
    let who = Asker {
        session_id: conn.session_id.load(Ordering::Relaxed),
        watcher: conn.id,
        auth,
        schemes: &shared.settings.prepare.auth_schemes,
        skip_acl: shared.settings.skip_acl,
    };
    let outcome = reads::answer(tree, &who, req, watches);
    for n in &outcome.events {
        conn.send(event_frame(n));
    }
    let zxid = shared.last_zxid.load(Ordering::Acquire);
    finish_reply(shared, conn, xid, zxid, outcome.err, outcome.body, req.opcode(), received);
}

/// Answers a request of a session that has ended SESSIONEXPIRED, and closes the connection.
fn answer_session_ended(shared: &Shared, conn: &Conn, xid: i32, op: OpCode, received: Instant) {
    finish_reply(shared, conn, xid, -1, ErrorCode::SessionExpired, Response::Empty, op, received);
    conn.close();
}

#[allow(clippy::too_many_arguments)]
fn finish_reply(
    shared: &Shared,
    conn: &Conn,
    xid: i32,
    zxid: i64,
    err: ErrorCode,
    body: Response,
    op: OpCode,
    received: Instant,
) {
    if err == ErrorCode::SessionMoved {
        // ZooKeeper's FinalRequestProcessor: "session moved is a connection level error":
        // no reply, the connection closes after what is queued (the session lives on, on the
        // server it moved to; the client sees the connection lost).
        conn.close();
        return;
    }
    conn.send_reply(xid, zxid, err, body);
    let elapsed = received.elapsed();
    let ms = elapsed.as_millis() as u64;
    shared.stats.record_reply(elapsed, is_update(op));
    let slow_ms = shared.settings.slow_request_ms;
    if slow_ms > 0 && ms >= slow_ms {
        shared.stats.slow_total.fetch_add(1, Ordering::Relaxed);
        let due = shared.stats.slow.lock().unwrap_or_else(|p| p.into_inner()).note(shared.now_ms());
        if let Some(n) = due {
            tracing::warn!(
                op = ?op,
                ms,
                threshold_ms = slow_ms,
                since_last_warning = n,
                "a request took {ms} ms from its arrival to its reply (corral.slowRequestWarningMs={slow_ms}; {n} such since the last warning)"
            );
        }
    }
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

impl Pipeline {
    /// Builds the pipeline over a recovered database: a standalone replica (a one-voter
    /// ensemble, serving at once, its zxids going on from the log's last). `tx` must send to
    /// the receiver passed to [`Pipeline::run`] (the log reports durability through it).
    pub fn new(
        shared: Arc<Shared>,
        db: Database,
        state: State,
        tx: Sender<Input>,
    ) -> Result<Pipeline, Fatal> {
        Pipeline::build(shared, db, state, tx, None)
    }

    /// Builds the pipeline of an ensemble member (`cfg` names the voters and observers, `id`
    /// is this server): its replica starts LOOKING; the runtime carries its network traffic
    /// ([`Pipeline::take_network`], [`Input::Peer`]). While it is a serving learner, its
    /// clients' writes (and syncs) are forwarded to the leader and answered when the txn
    /// comes back committed, matched by (session, cxid).
    pub fn member(
        shared: Arc<Shared>,
        db: Database,
        state: State,
        tx: Sender<Input>,
        cfg: PeerConfig,
        id: Sid,
    ) -> Result<Pipeline, Fatal> {
        Pipeline::build(shared, db, state, tx, Some((cfg, id)))
    }

    fn build(
        shared: Arc<Shared>,
        db: Database,
        mut state: State,
        tx: Sender<Input>,
        member: Option<(PeerConfig, Sid)>,
    ) -> Result<Pipeline, Fatal> {
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
                    touch_sent: now,
                    conn: None,
                    closing: false,
                },
            );
        }
        let elapsed = shared.clock.wall_ms();
        let mut ids = SessionIdGenerator::new(shared.settings.server_id, elapsed);
        // Never reuse a restored id.
        while sessions.contains_key(&ids.peek()) {
            ids.next_id();
        }
        if let Some((cfg, _)) = &member {
            // ZooKeeper's initConfigInZKDatabase at start (the replica does it after a sync).
            if !cfg.config_text.is_empty() {
                let (text, version) = (cfg.config_text.clone(), cfg.config_version as i64);
                state.tree.set_config_node(&text, version, elapsed);
            }
        }
        *shared.view.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(state.tree.clone());
        shared.last_zxid.store(last, Ordering::Release);
        *shared.sessions.lock().unwrap_or_else(|p| p.into_inner()) = sessions.clone();
        let before = state.tree.clone();
        let settings = &shared.settings;
        let opts = ReplicaOptions {
            prepare: settings.prepare.clone(),
            txn_bytes_max: settings.limits.txn_bytes_max,
            boundary_every_txn: false,
            report_appends_and_commits: false,
            local_sessions: settings.local_sessions,
            // syncEnabled=false: an observer applies what it learns without logging it.
            log_txns: settings.sync_enabled
                || member.as_ref().is_none_or(|(cfg, id)| !cfg.observers.contains(id)),
        };
        let notify: DurableNotify = Arc::new(move |zxid, ok| {
            let _ = tx.send(Input::Durable { zxid, ok });
        });
        let member_flag = member.is_some();
        if member_flag {
            shared.stats.zk.add(crate::admin::server_metrics::C::LookingCount, 1);
        }
        let (replica, out) = match member {
            None => {
                let me = settings.server_id.max(1);
                let mut cfg = PeerConfig::new([me], []);
                cfg.tick_ms = settings.tick_ms.clamp(1, u64::from(u32::MAX)) as u32;
                // Nothing to sync learners from: keep no history window.
                cfg.commit_log_count = 1;
                // globalOutstandingLimit and the connection limits bound what is in flight.
                cfg.outstanding_max = usize::MAX;
                Replica::standalone(cfg, me, db, state, opts, Some(notify))?
            }
            Some((cfg, id)) => {
                shared.mode.store(MODE_NOT_SERVING, Ordering::Release);
                Replica::member(cfg, id, db, state, opts, Some(notify))?
            }
        };
        let mut p = Pipeline {
            shared,
            replica,
            before,
            digest_seen: 0,
            // A member starts LOOKING (ZooKeeper counts that as its first LOOKING too).
            timing: if member_flag {
                RoleTiming {
                    looking_since: Some(now),
                    unavailable_since: Some(now),
                    sync_since: None,
                }
            } else {
                RoleTiming::default()
            },
            origins: VecDeque::new(),
            pending: HashMap::new(),
            waiting: std::collections::BTreeMap::new(),
            sessions,
            ids,
            last_reap_ms: 0,
            last_purge_ms: 0,
            next_peer_tick_ms: 0,
            next_election_tick_ms: 0,
            durable_seen: Zxid::ZERO,
            scratch: Vec::new(),
            net: Vec::new(),
            forwarded: HashMap::new(),
            learner_queue: HashMap::new(),
            stalled: VecDeque::new(),
            restoring: None,
            purging: None,
            held_expiries: VecDeque::new(),
            syncs_applying: VecDeque::new(),
            syncs: VecDeque::new(),
            fatal: None,
            member: member_flag,
            revalidating: HashMap::new(),
            ro: ReadOnly::default(),
            local_sessions: std::collections::HashSet::new(),
        };
        p.next_peer_tick_ms = now + p.shared.settings.tick_ms.max(1);
        p.outputs(out);
        Ok(p)
    }

    /// Closes, through closeSession txns, every session that owns ephemeral nodes but is not
    /// in the session table: ephemerals a dead session left behind (written by an older
    /// version that let a request of an expired session run) are removed at startup.
    fn close_orphan_sessions(&mut self) {
        let committed = self.replica.committed();
        let orphans: Vec<i64> = committed
            .tree
            .sessions_with_ephemerals()
            .into_iter()
            .filter(|id| !committed.sessions.contains_key(id))
            .collect();
        for id in orphans {
            tracing::warn!(
                session = format_args!("{id:#x}"),
                "ephemeral nodes of a session that no longer exists; removing them"
            );
            self.propose(Proposal::Orphans { session_id: id }, Origin::None);
        }
    }

    /// Runs until [`Input::Shutdown`], or until storage fails; returns the database for an
    /// orderly close, and the failure if there was one.
    pub fn run(self, rx: Receiver<Input>) -> Stopped {
        self.run_with(rx, |_| {})
    }

    /// [`Pipeline::run`] for an ensemble member: after each batch, the network traffic it
    /// produced goes to `net` (the transports), in order.
    pub fn run_with(mut self, rx: Receiver<Input>, mut net: impl FnMut(Vec<NetOut>)) -> Stopped {
        self.begin();
        let out = self.take_network();
        if !out.is_empty() {
            net(out);
        }
        let mut tick_ms = self.shared.settings.tick_ms.clamp(10, 60_000) / 2;
        let election_tick_ms = u64::from(self.replica.peer().config().election_tick_ms);
        if election_tick_ms > 0 {
            tick_ms = tick_ms.min(election_tick_ms.max(10));
        }
        let tick = Duration::from_millis(tick_ms);
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
                Err(RecvTimeoutError::Disconnected) => return self.stopped(),
            };
            if first.is_some() {
                trims_left = 5;
            } else if trims_left > 0 {
                trims_left -= 1;
                crate::memory::trim();
            }
            let mut batch: Vec<Input> = first.into_iter().collect();
            while batch.len() < 4096 {
                match rx.try_recv() {
                    Ok(ev) => batch.push(ev),
                    Err(_) => break,
                }
            }
            let mut stop = false;
            for ev in batch {
                match ev {
                    Input::Shutdown => stop = true,
                    ev => self.handle(ev),
                }
            }
            if Instant::now() >= next_tick {
                self.on_tick();
                next_tick = Instant::now() + tick;
            }
            if self.fatal.is_some() {
                // Nothing more is committed or answered: what was acknowledged is durable, and
                // what was not stays unacknowledged.
                return self.stopped();
            }
            self.end_batch();
            let out = self.take_network();
            if !out.is_empty() {
                net(out);
            }
            if stop {
                // Wait (bounded) for what was logged to become durable and be answered.
                let deadline = Instant::now() + Duration::from_secs(10);
                // A member's in-flight txns may never commit (its peers may be stopping too):
                // it waits only for what it logged to be durable.
                let unfinished = |p: &Pipeline| {
                    if p.member {
                        p.replica.durable() < p.replica.peer().last_zxid()
                    } else {
                        p.replica.in_flight() > 0
                    }
                };
                while unfinished(&self) && Instant::now() < deadline {
                    if let Ok(Input::Durable { zxid, ok }) =
                        rx.recv_timeout(Duration::from_millis(50))
                    {
                        self.on_durable(zxid, ok);
                        if self.fatal.is_some() {
                            break;
                        }
                        self.end_batch();
                    }
                }
                return self.stopped();
            }
        }
    }

    fn stopped(self) -> Stopped {
        Stopped { db: self.replica.into_db(), fatal: self.fatal }
    }

    // Driving the pipeline event by event, without its thread (tests; `run` is these in a
    // loop with real time).

    /// What [`Pipeline::run`] does first: removes the ephemerals of sessions that no longer
    /// exist.
    pub fn begin(&mut self) {
        self.close_orphan_sessions();
        self.end_batch();
    }

    /// Handles one input, then ends the batch (commits what can be, publishes).
    pub fn step(&mut self, ev: Input) {
        self.handle(ev);
        if self.fatal.is_none() {
            self.end_batch();
        }
    }

    /// Several inputs as one batch, as [`Pipeline::run`] takes what has queued up: the batch
    /// ends (a boundary, commits applied and answered) only after the last.
    pub fn step_batch(&mut self, evs: impl IntoIterator<Item = Input>) {
        for ev in evs {
            self.handle(ev);
            if self.fatal.is_some() {
                return;
            }
        }
        self.end_batch();
    }

    /// autopurge: which files go is decided here (the log lets go of its old segments), and
    /// a thread of its own removes them and syncs their directories, off the write path. One
    /// at a time: a purge still running when the next is due skips that one.
    fn purge(&mut self) {
        if self.purging.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let job = match self.replica.db().purge_job() {
            Ok(job) => job,
            Err(e) => {
                tracing::warn!(error = %e, "autopurge failed");
                return;
            }
        };
        let spawned = std::thread::Builder::new().name("corral-purge".into()).spawn(move || {
            let started = Instant::now();
            match job.run() {
                Ok(removed) if !removed.is_empty() => tracing::info!(
                    files = removed.len(),
                    ms = started.elapsed().as_millis() as u64,
                    "autopurge removed old snapshots and logs"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "autopurge failed"),
            }
        });
        match spawned {
            Ok(t) => self.purging = Some(t),
            Err(e) => tracing::warn!(error = %e, "autopurge: cannot start its thread"),
        }
    }

    /// Half a tickTime passed on the clock: session ticks, autopurge, the container reaper.
    pub fn tick(&mut self) {
        self.on_tick();
        if self.fatal.is_none() {
            self.end_batch();
        }
    }

    /// With a database whose log is written inline (`DbOptions::inline_log`): writes what was
    /// logged, makes it durable, and commits it.
    pub fn flush_log(&mut self) {
        let mut out = Vec::new();
        let r = self.replica.flush(&mut out);
        self.outputs(out);
        match r {
            Ok(()) => self.end_batch(),
            Err(f) => self.fail(f),
        }
    }

    /// Why the pipeline stopped, if storage failed.
    pub fn failure(&self) -> Option<&Fatal> {
        self.fatal.as_ref()
    }

    /// Ends it: the database back, and the failure if there was one.
    pub fn finish(self) -> Stopped {
        self.stopped()
    }

    /// The end of a batch of inputs: the newest txn becomes a boundary, and everything
    /// committed up to a boundary is answered.
    fn end_batch(&mut self) {
        if self.durable_seen > self.replica.durable() {
            let mut out = Vec::with_capacity(16);
            let r = self.replica.step(Event::Durable { zxid: self.durable_seen }, &mut out);
            self.outputs(out);
            if let Err(f) = r {
                self.fail(f);
                return;
            }
        }
        self.unstall();
        if self.fatal.is_some() {
            return;
        }
        self.replica.mark_boundary();
        let mut out = Vec::new();
        self.replica.apply_committed(&mut out);
        self.outputs(out);
        self.try_restore();
        if self.member {
            let global = self.replica.committed().sessions.len();
            self.shared.global_sessions.store(global, Ordering::Relaxed);
            let local = self.local_sessions.len() + self.ro.local.len();
            self.shared.local_sessions.store(local, Ordering::Relaxed);
        }
    }

    /// Handles one input; a client's waits behind earlier ones while the leader may not
    /// propose. ZooKeeper's leader has no bound on its proposals in flight and queues
    /// without limit; this one holds what its clients sent (their connections stop reading
    /// at globalOutstandingLimit) rather than refusing it.
    fn handle(&mut self, ev: Input) {
        let client = matches!(
            ev,
            Input::Request { .. }
                | Input::FailedWrite { .. }
                | Input::CreateSession { .. }
                | Input::Reconnect { .. }
                | Input::ConnClosed { .. }
        );
        if client && (!self.stalled.is_empty() || self.must_stall()) {
            self.stalled.push_back(ev);
            return;
        }
        let peer = matches!(ev, Input::Peer(_));
        self.dispatch(ev);
        if peer {
            self.unstall();
        }
    }

    /// A leader without room for what one client input may propose (two txns: a local
    /// session's upgrade, then its create) holds clients' inputs.
    fn must_stall(&self) -> bool {
        if self.restoring.is_some() {
            return true;
        }
        let max = self.replica.peer().config().outstanding_max;
        self.replica.proposal_room().is_some_and(|room| room < max.min(2))
    }

    /// A restore asked for: taken once nothing is in flight (clients' inputs stall until
    /// then).
    fn on_restore(
        &mut self,
        state: Box<State>,
        done: std::sync::mpsc::SyncSender<Result<(), String>>,
    ) {
        if self.member {
            let _ = done.send(Err(
                "restore is supported on a standalone server only (docs/operations.md)".into(),
            ));
            return;
        }
        if self.restoring.is_some() {
            let _ = done.send(Err("another restore is under way".into()));
            return;
        }
        let deadline_ms = self.shared.now_ms() + RESTORE_WAIT_MS;
        self.restoring = Some(PendingRestore { state, done, deadline_ms });
        self.try_restore();
    }

    /// Takes a pending restore if the pipeline is quiet, or gives it up past its deadline.
    fn try_restore(&mut self) {
        let Some(r) = &self.restoring else { return };
        let quiet = self.replica.in_flight() == 0 && !self.replica.db().snapshot_in_progress();
        if !quiet {
            if self.shared.now_ms() > r.deadline_ms {
                let r = self.restoring.take().expect("pending");
                let _ = r.done.send(Err(format!(
                    "writes in flight or a snapshot being written did not finish within {} s",
                    RESTORE_WAIT_MS / 1000
                )));
                self.unstall();
            }
            return;
        }
        let PendingRestore { state, done, .. } = self.restoring.take().expect("pending");
        let mut out = Vec::new();
        if let Err(f) = self.replica.restore(*state, &mut out) {
            let _ = done.send(Err(f.to_string()));
            self.fail(f);
            return;
        }
        self.outputs(out);
        // What readers see is the restored tree; connections of sessions it does not have
        // end; the restored sessions are this server's, each with a full timeout to
        // reconnect, as at a start.
        self.republish();
        let now = self.shared.now_ms();
        for (id, timeout) in self.replica.committed().sessions.clone() {
            self.sessions.entry(id).or_insert_with(|| SessionInfo {
                timeout_ms: timeout,
                last_touch: Arc::new(AtomicU64::new(now)),
                touch_sent: now,
                conn: None,
                closing: false,
            });
        }
        self.publish_sessions();
        // Watches were set on the old tree: like ZooKeeper, which restores into a new tree,
        // they are gone. Their clients are told by their connections closing.
        let conns: Vec<Arc<Conn>> =
            self.shared.conns.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        for c in &conns {
            self.shared.watches.lock().unwrap_or_else(|p| p.into_inner()).remove_watcher(c.id);
            c.close();
        }
        tracing::info!(
            zxid = format_args!("{:#x}", self.replica.applied()),
            znodes = self.replica.committed().tree.node_count(),
            sessions = self.replica.committed().sessions.len(),
            closed_connections = conns.len(),
            "restored a snapshot (the AdminServer's restore)"
        );
        let _ = done.send(Ok(()));
        self.unstall();
    }

    /// Handles held expiries and stalled inputs, in order, while the leader may propose.
    fn unstall(&mut self) {
        while self.fatal.is_none() && !self.must_stall() {
            if let Some(id) = self.held_expiries.pop_front() {
                self.propose_expiry(id);
            } else if let Some(ev) = self.stalled.pop_front() {
                self.dispatch(ev);
            } else {
                break;
            }
        }
    }

    /// Clients' inputs waiting for the leader to be able to propose.
    pub fn stalled(&self) -> usize {
        self.stalled.len() + self.held_expiries.len()
    }

    fn dispatch(&mut self, ev: Input) {
        match ev {
            Input::Request { conn, xid, op, req, auth, received } => {
                self.on_request(conn, xid, op, req, auth, received)
            }
            Input::Durable { zxid, ok } => self.on_durable(zxid, ok),
            Input::Restore { state, done } => self.on_restore(state, done),
            Input::FailedWrite { conn, xid, err, received } if !self.leading() => {
                // A learner answers it here, without a txn (the leader would log an error
                // txn for it; see docs/compatibility.md); in read-only mode every write is
                // refused as such, as ZooKeeper's ReadOnlyRequestProcessor does first.
                let err = if self.ro.active { ErrorCode::NotReadOnly } else { err };
                finish_reply(
                    &self.shared,
                    &conn,
                    xid,
                    self.shared.last_zxid.load(Ordering::Acquire),
                    err,
                    Response::Empty,
                    OpCode::Multi,
                    received,
                );
                self.answered(&conn);
            }
            Input::FailedWrite { conn, xid, err, received } => {
                let session_id = conn.session_id.load(Ordering::Relaxed);
                // Only a multi is refused this way: audited as a failed multi.
                let auth = conn.auth.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let audit = self.audit_of(&Request::Multi(Vec::new()), &conn, &auth);
                let origin = Origin::Client { conn: conn.clone(), xid, received, audit };
                if self.propose(Proposal::Failed { session_id, cxid: xid, err }, origin).is_some() {
                    self.queue_write(&conn);
                }
            }
            Input::CreateSession { conn, timeout_ms, read_only, done } if self.ro.active => {
                self.read_only_session(conn, timeout_ms, read_only, done)
            }
            Input::CreateSession { conn, timeout_ms, read_only, done }
                if self.member
                    && self.shared.settings.local_sessions
                    && self.replica.peer().is_serving() =>
            {
                let id = self.new_local_session(&conn, timeout_ms, read_only.map(|_| false), done);
                self.local_sessions.insert(id);
                self.replica.set_local_session(id, true);
            }
            Input::CreateSession { conn, timeout_ms, read_only, done } => {
                let id = self.ids.next_id();
                let timeout = self.shared.settings.negotiate_timeout(timeout_ms);
                conn.timeout_ms.store(i64::from(timeout), Ordering::Relaxed);
                let origin = Origin::NewSession { conn, read_only, done };
                if self.leading() {
                    let p = Proposal::CreateSession { session_id: id, timeout_ms: timeout };
                    self.propose(p, origin);
                } else {
                    let fr = ForwardedRequest {
                        session_id: id,
                        cxid: 0,
                        op: crate::replica::OP_CREATE_SESSION,
                        body: encode_i32(timeout),
                        auth: Vec::new(),
                    };
                    self.forward(fr, origin, None);
                }
            }
            Input::Reconnect { conn, session_id, passwd, timeout_ms, read_only, done } => {
                self.on_reconnect(conn, session_id, passwd, timeout_ms, read_only, done)
            }
            Input::ConnClosed { conn_id, session_id } => {
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
            Input::Peer(ev) => {
                self.replica.set_clock(self.shared.clock.wall_ms());
                let mut out = Vec::new();
                let r = self.replica.step(ev, &mut out);
                self.outputs(out);
                if let Err(f) = r {
                    self.fail(f);
                }
            }
            Input::Shutdown => {}
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
        let held = self.sessions.get(&session_id).map(|s| s.closing);
        if !self.password_ok(session_id, &passwd) || held == Some(true) {
            refuse_resume(&conn, read_only, done);
            return;
        }
        if self.ro.active {
            // Read-only mode: only read-only clients, and a session this server holds or its
            // state knows (a global session, as ZooKeeper's read-only server revalidates it
            // against its database); nothing can be asked of a leader.
            let known =
                held.is_some() || self.replica.committed().sessions.contains_key(&session_id);
            if read_only != Some(true) || !known {
                tracing::info!(
                    session = format_args!("{session_id:#x}"),
                    read_only = read_only == Some(true),
                    "read-only mode: refusing to resume a session"
                );
                refuse_resume(&conn, read_only, done);
                return;
            }
            let timeout = self.shared.settings.negotiate_timeout(timeout_ms);
            if held.is_none() {
                let now = self.shared.now_ms();
                self.sessions.insert(
                    session_id,
                    SessionInfo {
                        timeout_ms: timeout,
                        last_touch: Arc::new(AtomicU64::new(now)),
                        touch_sent: now,
                        conn: None,
                        closing: false,
                    },
                );
            }
            self.resume(conn, session_id, timeout, read_only, done);
            return;
        }
        let local = self.local_sessions.contains(&session_id);
        if held.is_none() || (self.member && !local) {
            if !self.member {
                refuse_resume(&conn, read_only, done);
                return;
            }
            // A global session, held here or not: ask the leader, which tracks every global
            // session, as ZooKeeper's learners do (REVALIDATE). What this server holds may be
            // stale (a close it forwarded may have committed while it was away from the
            // leader, or in the state a SNAP brought). Without a leader to ask (not synced
            // yet), the client is sent away to try again.
            if !self.replica.peer().is_serving() {
                drop_resume(&conn, done);
                return;
            }
            let timeout = self.shared.settings.negotiate_timeout(timeout_ms);
            let first = !self.revalidating.contains_key(&session_id);
            self.revalidating.entry(session_id).or_default().push(Resume {
                conn,
                timeout_ms: timeout,
                read_only,
                done,
            });
            if first {
                let mut out = Vec::new();
                let r = self.replica.step(Event::Revalidate { session_id, timeout }, &mut out);
                self.outputs(out);
                if let Err(f) = r {
                    self.fail(f);
                }
            }
            return;
        }
        let timeout = self.shared.settings.negotiate_timeout(timeout_ms);
        self.resume(conn, session_id, timeout, read_only, done);
    }

    /// The leader answered a REVALIDATE: the clients waiting to resume that session go on or
    /// are refused (session expired).
    fn revalidated(&mut self, session_id: i64, valid: bool) {
        let Some(waiting) = self.revalidating.remove(&session_id) else { return };
        for r in waiting {
            let taken = self.sessions.get(&session_id).is_some_and(|s| s.closing);
            if valid && !taken && !*r.conn.kill.borrow() {
                if !self.sessions.contains_key(&session_id) {
                    let now = self.shared.now_ms();
                    self.sessions.insert(
                        session_id,
                        SessionInfo {
                            timeout_ms: r.timeout_ms,
                            last_touch: Arc::new(AtomicU64::new(now)),
                            touch_sent: now,
                            conn: None,
                            closing: false,
                        },
                    );
                }
                self.resume(r.conn, session_id, r.timeout_ms, r.read_only, r.done);
            } else {
                refuse_resume(&r.conn, r.read_only, r.done);
            }
        }
    }

    /// Attaches `conn` to a session this server holds (closing the connection it had).
    fn resume(
        &mut self,
        conn: Arc<Conn>,
        session_id: i64,
        timeout: i32,
        read_only: Option<bool>,
        done: tokio::sync::oneshot::Sender<Option<Arc<AtomicU64>>>,
    ) {
        let now = self.shared.now_ms();
        let conns = self.shared.conns.lock().unwrap_or_else(|p| p.into_inner());
        let Some(s) = self.sessions.get_mut(&session_id) else {
            drop(conns);
            refuse_resume(&conn, read_only, done);
            return;
        };
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
        let passwd = self.password(session_id);
        conn.send(connect_response(
            timeout,
            session_id,
            &passwd,
            read_only.map(|_| self.ro.active),
        ));
        let _ = done.send(Some(touch));
        self.publish_sessions();
    }

    /// A session's password: ZooKeeper's (derived from the id) in an ensemble, where every
    /// member, Apache ZooKeeper's included, must be able to check it; standalone, an HMAC
    /// under this database's secret (docs/operations.md).
    fn password(&self, session_id: i64) -> [u8; 16] {
        if self.member {
            crate::session::ids::session_password(session_id)
        } else {
            self.replica.db().session_secret().password(session_id)
        }
    }

    fn password_ok(&self, session_id: i64, presented: &[u8]) -> bool {
        if self.member {
            let want = crate::session::ids::session_password(session_id);
            presented.len() == want.len()
                && presented.iter().zip(want.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
        } else {
            self.replica.db().session_secret().verify(session_id, presented)
        }
    }

    /// Publishes the replica's committed state as it is (after TRUNC or SNAP replaced it).
    fn republish(&mut self) {
        self.digest_seen = self.replica.committed().digest_mismatches;
        let tree = self.replica.committed().tree.clone();
        self.shared.last_zxid.store(tree.last_processed_zxid().max(0), Ordering::Release);
        *self.shared.view.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(tree.clone());
        self.before = tree;
        // Sessions the new state no longer has (closed by txns the TRUNC or SNAP covered, or
        // never committed) are no longer this server's: their connections end.
        let committed = &self.replica.committed().sessions;
        let gone: Vec<i64> = self
            .sessions
            .keys()
            .copied()
            .filter(|id| {
                !committed.contains_key(id)
                    && !self.local_sessions.contains(id)
                    && !self.ro.local.contains(id)
            })
            .collect();
        if !gone.is_empty() {
            let conns = self.shared.conns.lock().unwrap_or_else(|p| p.into_inner());
            for id in &gone {
                if let Some(c) = self.sessions.remove(id).and_then(|s| s.conn) {
                    if let Some(c) = conns.get(&c) {
                        c.end_session();
                    }
                }
            }
            drop(conns);
            self.publish_sessions();
        }
    }

    fn publish_sessions(&self) {
        *self.shared.sessions.lock().unwrap_or_else(|p| p.into_inner()) = self.sessions.clone();
    }

    /// The audit record of a client's request, when auditing is on and it is audited.
    fn audit_of(
        &self,
        req: &Request,
        conn: &Conn,
        auth: &[Id],
    ) -> Option<Box<crate::audit::AuditRequest>> {
        self.shared.settings.audit.as_ref()?;
        let session = conn.session_id.load(Ordering::Relaxed);
        crate::audit::AuditRequest::of(req, auth, conn.remote.ip(), session).map(Box::new)
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
        let live =
            self.sessions.get(&session_id).is_some_and(|s| !s.closing && s.conn == Some(conn.id));
        if !live {
            // The session has expired or closed (or moved to another connection): ZooKeeper's
            // PrepRequestProcessor refuses it with SESSIONEXPIRED, and nothing of it runs.
            conn.session_ended.store(true, Ordering::Release);
            if self.pending.get(&conn.id).is_none_or(|(w, r)| *w + *r == 0) {
                answer_session_ended(&self.shared, &conn, xid, req.opcode(), received);
                self.answered(&conn);
            } else {
                // Behind the connection's earlier requests, which are answered first.
                self.wait_behind(WaitingRead { conn, xid, req, auth, received, expired: true });
            }
            return;
        }
        if self.ro.active {
            self.read_only_request(conn, xid, req, auth, received);
            return;
        }
        if self.local_sessions.contains(&session_id) {
            let idle = self.pending.get(&conn.id).is_none_or(|(w, r)| *w + *r == 0);
            if matches!(req, Request::CloseSession) && idle {
                self.close_local_session(&conn, session_id, xid, received);
                return;
            }
            if req.creates_ephemeral() && self.shared.settings.local_sessions_upgrading {
                self.upgrade_local_session(session_id);
            }
        }
        if matches!(req, Request::Sync(_)) && !self.leading() {
            // A learner's sync goes to the leader, and is answered when the leader's answer
            // comes back, after every write the leader committed before it.
            self.forward_sync(WaitingRead { conn, xid, req, auth, received, expired: false });
            return;
        }
        if reads::is_read(&req) {
            let busy = self.pending.get(&conn.id).is_some_and(|(w, r)| *w + *r > 0);
            // A sync on the leader (or standalone) waits until every txn proposed before it
            // is committed and applied here, as ZooKeeper's Leader.processSync waits for the
            // last proposed one: a learner may already have answered a write this server's
            // applied state does not show yet (commits are applied a boundary at a time).
            let sync_waits = matches!(req, Request::Sync(_)) && self.replica.in_flight() > 0;
            if busy || sync_waits {
                // Behind this connection's writes.
                self.wait_behind(WaitingRead { expired: false, conn, xid, req, auth, received });
            } else {
                self.answer_read_now(&conn, ReadJob { xid, req: &req, auth: &auth, received });
                self.answered(&conn);
            }
            return;
        }
        if !self.leading() {
            let origin = if matches!(req, Request::CloseSession) {
                if let Some(s) = self.sessions.get_mut(&session_id) {
                    s.closing = true;
                }
                Origin::Close { conn: Some(conn.clone()), xid: Some(xid) }
            } else {
                let audit = self.audit_of(&req, &conn, &auth);
                Origin::Client { conn: conn.clone(), xid, received, audit }
            };
            let mut body = Vec::new();
            req.write_body(&mut body);
            let fr = ForwardedRequest {
                session_id,
                cxid: xid,
                op: req.opcode().code(),
                body: body.into(),
                auth: auth.to_vec(),
            };
            self.forward(fr, origin, Some(&conn));
            return;
        }
        let audit = self.audit_of(&req, &conn, &auth);
        let origin = Origin::Client { conn: conn.clone(), xid, received, audit };
        let proposed = if !matches!(req, Request::CloseSession)
            && self.member
            && !self.replica.claim_session(session_id)
        {
            // The session moved to another server: ZooKeeper's PrepRequestProcessor answers
            // a request from its old connection SESSIONMOVED (as an error txn).
            let p = Proposal::Failed { session_id, cxid: xid, err: ErrorCode::SessionMoved };
            self.propose(p, origin)
        } else if matches!(req, Request::CloseSession) {
            if let Some(s) = self.sessions.get_mut(&session_id) {
                s.closing = true;
            }
            let origin = Origin::Close { conn: Some(conn.clone()), xid: Some(xid) };
            self.propose(Proposal::CloseSession { session_id, cxid: xid }, origin)
        } else {
            let p = Proposal::Client { session_id, cxid: xid, req: &req, auth: &auth };
            self.propose(p, origin)
        };
        if proposed.is_some() {
            self.queue_write(&conn);
        }
    }

    /// Queues a read behind its connection's earlier requests: at a boundary of the leader's
    /// own proposals (answered from the version right after the newest txn now, which holds
    /// the connection's writes and none of its later ones), or, on a learner, in the
    /// connection's order (answered from the version right after its last forwarded write).
    fn wait_behind(&mut self, r: WaitingRead) {
        self.pending.entry(r.conn.id).or_default().1 += 1;
        if self.leading() {
            let at = self.replica.mark_boundary().to_wire();
            self.waiting.entry(at).or_default().push(r);
        } else {
            self.learner_queue.entry(r.conn.id).or_default().push_back(Queued::Read(r));
        }
    }

    /// A learner forwards a write (or createSession / closeSession) to the leader; `origin`
    /// is answered when the txn comes back committed, matched by (session, cxid). Not
    /// serving: the client's connection is closed (it reconnects elsewhere), as ZooKeeper's.
    fn forward(&mut self, fr: ForwardedRequest, origin: Origin, conn: Option<&Arc<Conn>>) {
        if !self.replica.peer().is_serving() {
            match origin {
                Origin::Client { conn, .. } | Origin::Close { conn: Some(conn), .. } => {
                    conn.close();
                    self.answered(&conn);
                }
                Origin::NewSession { conn, done, .. } => {
                    conn.close();
                    let _ = done.send(None);
                }
                _ => {}
            }
            return;
        }
        let key = (fr.session_id, fr.cxid);
        if let Some(conn) = conn {
            self.queue_write(conn);
            self.learner_queue.entry(conn.id).or_default().push_back(Queued::Write(None));
        }
        self.forwarded.entry(key).or_default().push_back(origin);
        let mut out = Vec::new();
        let r = self.replica.step(Event::ClientRequest { request: fr }, &mut out);
        self.outputs(out);
        if let Err(f) = r {
            self.fail(f);
        }
    }

    /// A learner's sync: forwarded, answered at the leader's SYNC.
    fn forward_sync(&mut self, r: WaitingRead) {
        if !self.replica.peer().is_serving() {
            r.conn.close();
            self.answered(&r.conn);
            return;
        }
        let mut body = Vec::new();
        r.req.write_body(&mut body);
        let fr = ForwardedRequest {
            session_id: r.conn.session_id.load(Ordering::Relaxed),
            cxid: r.xid,
            op: crate::zab::peer::OP_SYNC,
            body: body.into(),
            auth: r.auth.to_vec(),
        };
        let conn_id = r.conn.id;
        self.pending.entry(conn_id).or_default().1 += 1;
        self.learner_queue.entry(conn_id).or_default().push_back(Queued::Sync(r, None));
        self.syncs.push_back(conn_id);
        let mut out = Vec::new();
        let res = self.replica.step(Event::ClientRequest { request: fr }, &mut out);
        self.outputs(out);
        if let Err(f) = res {
            self.fail(f);
        }
    }

    /// Sequences a txn through the replica and remembers who waits for it.
    fn propose(&mut self, p: Proposal<'_>, origin: Origin) -> Option<Zxid> {
        let mut out = std::mem::take(&mut self.scratch);
        let r = self.replica.propose(p, self.shared.clock.wall_ms(), &mut out);
        let z = match r {
            Ok(z) => {
                self.origins.push_back((z, origin));
                Some(z)
            }
            Err(ProposeError::Fatal(f)) => {
                self.fail(f);
                None
            }
            Err(ProposeError::Not(why)) => {
                match origin {
                    Origin::Client { conn, .. } | Origin::Close { conn: Some(conn), .. } => {
                        // Cannot happen standalone (it always leads, with no bound on proposals
                        // of its own), nor for a leader (it holds clients' inputs while it has
                        // no room, see `must_stall`); were it to, the client reconnects.
                        tracing::warn!(reason = %why, "a request could not be sequenced; closing its connection");
                        conn.close();
                    }
                    Origin::NewSession { conn, done, .. } => {
                        conn.close();
                        let _ = done.send(None);
                    }
                    _ => {}
                }
                None
            }
        };
        if out.is_empty() {
            // Nothing to carry out (the usual case: a proposal waits for its log write).
            self.scratch = out;
        } else {
            self.outputs(out);
        }
        z
    }

    fn queue_write(&mut self, conn: &Arc<Conn>) {
        self.pending.entry(conn.id).or_default().0 += 1;
    }

    fn answered(&self, conn: &Conn) {
        conn.pending.fetch_sub(1, Ordering::AcqRel);
        if self.shared.outstanding.fetch_sub(1, Ordering::AcqRel)
            == self.shared.settings.global_outstanding_limit.max(1)
        {
            self.shared.unthrottle.notify_waiters();
        }
    }

    /// The log made txns durable up to `zxid` (reported once per txn): the replica hears of
    /// the newest at the end of the batch.
    fn on_durable(&mut self, zxid: Zxid, ok: bool) {
        if !ok {
            let cause =
                self.replica.db().log().failure().map(|e| e.to_string()).unwrap_or_default();
            self.fail(Fatal::LogFailed { zxid, cause });
            return;
        }
        self.durable_seen = self.durable_seen.max(zxid);
    }

    /// Records the first storage failure: the pipeline stops at the end of this batch, and
    /// tells whoever waits on [`Shared::failed`].
    fn fail(&mut self, f: Fatal) {
        if self.fatal.is_none() {
            tracing::error!("{f}; stopping");
            *self.shared.fatal.lock().unwrap_or_else(|p| p.into_inner()) = Some(f.clone());
            self.shared.failed.notify_one();
            self.fatal = Some(f);
        }
    }

    /// Carries out the replica's outputs: committed txns are answered (a group at a time),
    /// an expiry of the session tracker becomes a closeSession. A standalone replica has no
    /// network to speak to.
    fn outputs(&mut self, out: Vec<Output>) {
        let mut applied = Vec::new();
        for o in out {
            match o {
                Output::Applied(a) => applied.push(a),
                Output::Command(Command::ExpireSession { session_id }) => {
                    self.commit_applied(std::mem::take(&mut applied));
                    self.shared
                        .stats
                        .zk
                        .add(crate::admin::server_metrics::C::StaleSessionsExpired, 1);
                    self.expire(session_id);
                }
                Output::Command(Command::SyncDone) => {
                    self.commit_applied(std::mem::take(&mut applied));
                    self.sync_done();
                }
                Output::Command(Command::Revalidated { session_id, valid }) => {
                    self.commit_applied(std::mem::take(&mut applied));
                    self.revalidated(session_id, valid);
                }
                Output::Stored(Stored::Truncated(_) | Stored::Installed(_)) => {
                    // TRUNC or SNAP replaced the state: what the connection layer reads must
                    // be it, not the state before (which may hold txns the leader dropped).
                    self.commit_applied(std::mem::take(&mut applied));
                    self.republish();
                }
                Output::Command(Command::RoleChanged(role)) => {
                    self.commit_applied(std::mem::take(&mut applied));
                    self.role_changed(role);
                }
                Output::Command(Command::Established { epoch }) => {
                    tracing::info!(epoch, "leading: a quorum acknowledged NEWLEADER");
                }
                Output::Command(Command::UpToDate { epoch, synced_by }) => {
                    tracing::info!(
                        epoch,
                        synced_by,
                        "synced with the leader (UPTODATE): serving clients"
                    );
                }
                Output::Command(Command::ReconfigIgnored { zxid, leader }) => {
                    tracing::warn!(
                        %zxid,
                        leader,
                        "the leader activated a membership changed by reconfig \
                         (COMMITANDACTIVATE) but reconfigEnabled is off here: this server keeps \
                         its configured membership, as ZooKeeper does; set the same \
                         reconfigEnabled on every member (docs/compatibility.md)"
                    );
                }
                Output::Command(Command::Activate { text, version }) => {
                    tracing::info!(
                        "a new membership is active: {}",
                        String::from_utf8_lossy(&text).replace('\n', " ")
                    );
                    if let Some(path) = &self.shared.settings.config_file {
                        if let Err(e) = crate::config::write_dynamic_config(
                            path,
                            self.replica.peer().id(),
                            &text,
                            version,
                        ) {
                            tracing::error!(
                                file = %path.display(),
                                "cannot write the dynamic config file: {e}"
                            );
                        }
                    }
                    self.shared.ensemble.lock().unwrap_or_else(|p| p.into_inner()).membership =
                        Some(String::from_utf8_lossy(&text).into_owned());
                    self.net.push(NetOut::Command(Command::Activate { text, version }));
                }
                Output::Command(Command::SyncStarted { learner, plan }) => {
                    let last = self.replica.peer().last_zxid();
                    let kind = match plan {
                        SyncPlan::Snap => crate::admin::server_metrics::C::SnapCount,
                        _ => crate::admin::server_metrics::C::DiffCount,
                    };
                    self.shared.stats.zk.add(kind, 1);
                    match plan {
                        SyncPlan::Diff { from } => {
                            tracing::info!(learner, kind = "DIFF", %from, to = %last, "syncing a learner")
                        }
                        SyncPlan::TruncDiff { to } => {
                            tracing::info!(learner, kind = "TRUNC+DIFF", truncate_to = %to, to = %last, "syncing a learner")
                        }
                        SyncPlan::Trunc { to } => {
                            tracing::info!(learner, kind = "TRUNC", truncate_to = %to, "syncing a learner")
                        }
                        SyncPlan::Snap => {
                            tracing::info!(learner, kind = "SNAP", at = %last, "syncing a learner")
                        }
                    }
                }
                Output::Command(
                    c @ (Command::SendNotification { .. }
                    | Command::Send { .. }
                    | Command::Connect { .. }
                    | Command::Disconnect { .. }),
                ) => self.net.push(NetOut::Command(c)),
                Output::Snapshot { to, zxid, state } => {
                    self.net.push(NetOut::Snapshot { to, zxid, state: Box::new(state) });
                }
                _ => {}
            }
        }
        self.commit_applied(applied);
        self.drain_applied_syncs();
        self.publish_peer_counters();
    }

    /// ZooKeeper's election, sync and unavailability times, and its LOOKING count.
    fn time_role_change(&mut self, role: Role) {
        use crate::admin::server_metrics::{C, S};
        let now = self.shared.now_ms();
        let m = &self.shared.stats.zk;
        let t = &mut self.timing;
        let serving = serves(role);
        match role {
            Role::Looking => {
                m.add(C::LookingCount, 1);
                t.looking_since = Some(now);
                t.unavailable_since.get_or_insert(now);
                t.sync_since = None;
            }
            // A leader is chosen: ZooKeeper's leader and followers take the election's time
            // (an observer's is not counted).
            Role::Leading { .. } | Role::Following { .. } => {
                if let Some(start) = t.looking_since.take() {
                    m.observe(S::ElectionTime, now.saturating_sub(start) as i64);
                }
            }
            Role::Observing { .. } => t.looking_since = None,
        }
        match role {
            Role::Following { serving: false, .. } | Role::Observing { serving: false, .. } => {
                t.sync_since.get_or_insert(now);
            }
            Role::Following { serving: true, .. } | Role::Observing { serving: true, .. } => {
                if let Some(start) = t.sync_since.take() {
                    let s = if matches!(role, Role::Following { .. }) {
                        S::FollowerSyncTime
                    } else {
                        S::ObserverSyncTime
                    };
                    m.observe(s, now.saturating_sub(start) as i64);
                }
            }
            _ => {}
        }
        if serving {
            if let Some(start) = t.unavailable_since.take() {
                let ms = now.saturating_sub(start) as i64;
                m.observe(S::UnavailableTime, ms);
                if matches!(role, Role::Leading { .. }) {
                    m.observe(S::LeaderUnavailableTime, ms);
                }
            }
        }
    }

    /// The replica's ZAB counters, into ZooKeeper's metrics.
    fn publish_peer_counters(&self) {
        use crate::admin::server_metrics::C;
        let c = self.replica.peer().counters();
        let m = &self.shared.stats.zk;
        m.set_total(C::ProposalCount, c.proposals as i64);
        m.set_total(C::CommitCount, c.commits as i64);
        m.set_total(C::LearnerProposalReceivedCount, c.proposals_received as i64);
        m.set_total(C::LearnerCommitReceivedCount, c.commits_received as i64);
        m.set_total(C::RevalidateCount, c.revalidations as i64);
    }

    /// The replica under the pipeline (for inspection: tests, the simulator, reports).
    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// The network traffic to carry, in order (ensemble members).
    pub fn take_network(&mut self) -> Vec<NetOut> {
        std::mem::take(&mut self.net)
    }

    /// The replica's role.
    pub fn role(&self) -> Role {
        self.replica.peer().role()
    }

    /// Leading an established epoch: this server sequences.
    fn leading(&self) -> bool {
        matches!(self.replica.peer().role(), Role::Leading { established: true, .. })
    }

    /// Publishes the member's ensemble state for `mntr`.
    fn report_ensemble(&self) {
        if !self.member {
            return;
        }
        let peer = self.replica.peer();
        let role = peer.role();
        let state = match role {
            Role::Looking => "looking",
            Role::Leading { .. } => "leading",
            Role::Following { .. } => "following",
            Role::Observing { .. } => "observing",
        };
        let leader = match role {
            Role::Following { leader, .. } | Role::Observing { leader, .. } => Some(leader),
            Role::Leading { .. } => Some(peer.id()),
            Role::Looking => None,
        };
        let report = EnsembleReport {
            peer_state: format!("{state} - {}", peer.zab_phase()),
            leader,
            leading: peer.leader_report(),
            leading_since_ms: None,
            membership: None,
        };
        let mut r = self.shared.ensemble.lock().unwrap_or_else(|p| p.into_inner());
        let since = match role {
            Role::Leading { established: true, .. } => {
                r.leading_since_ms.or(Some(self.shared.now_ms()))
            }
            _ => None,
        };
        let membership = r.membership.take();
        *r = EnsembleReport { leading_since_ms: since, membership, ..report };
    }

    /// Answers a read now, from the committed state.
    fn answer_read_now(&self, conn: &Conn, job: ReadJob<'_>) {
        let mut w = self.shared.watches.lock().unwrap_or_else(|p| p.into_inner());
        answer_read(&self.shared, &self.replica.committed().tree, &mut w, conn, job);
    }

    /// Enters read-only mode once the replica has looked for a leader for the grace period
    /// (`readonlymode.enabled`); in it, expires the read-only sessions not heard from.
    fn read_only_tick(&mut self, now: u64) {
        if !self.member || !self.shared.settings.read_only_mode {
            return;
        }
        if !self.ro.active {
            let grace = READ_ONLY_GRACE_MS.max(self.shared.settings.tick_ms);
            if self.ro.looking_since.is_some_and(|t| now.saturating_sub(t) >= grace) {
                self.ro.active = true;
                self.shared.mode.store(MODE_READ_ONLY, Ordering::Release);
                tracing::info!(
                    last_zxid = %self.replica.applied(),
                    "no quorum: serving read-only clients (readonlymode.enabled)"
                );
            }
        }
    }

    /// Expires the sessions this server keeps to itself (read-only and local sessions) that
    /// were not heard from within their timeout: no txn, their connections close.
    fn expire_local_sessions(&mut self, now: u64) {
        if self.ro.local.is_empty() && self.local_sessions.is_empty() {
            return;
        }
        let expired: Vec<i64> = self
            .ro
            .local
            .iter()
            .chain(self.local_sessions.iter())
            .copied()
            .filter(|id| {
                self.sessions.get(id).is_none_or(|s| {
                    now.saturating_sub(s.last_touch.load(Ordering::Relaxed))
                        > u64::try_from(s.timeout_ms).unwrap_or(0)
                })
            })
            .collect();
        if expired.is_empty() {
            return;
        }
        let conns = self.shared.conns.lock().unwrap_or_else(|p| p.into_inner());
        for id in &expired {
            self.ro.local.remove(id);
            if self.local_sessions.remove(id) {
                self.replica.set_local_session(*id, false);
            }
            if let Some(c) = self.sessions.remove(id).and_then(|s| s.conn) {
                if let Some(c) = conns.get(&c) {
                    c.end_session();
                }
            }
            tracing::info!(session = format_args!("{id:#x}"), "local session expired");
        }
        drop(conns);
        self.publish_sessions();
    }

    /// Read-only mode ends (the replica found a leader): its connections close, and the
    /// sessions it created end with it, as ZooKeeper's read-only server shuts down. Clients
    /// reconnect; a read-only session is unknown to the leader, so it is reported expired.
    fn leave_read_only(&mut self) {
        if !self.ro.active {
            return;
        }
        self.ro.active = false;
        let conns: Vec<Arc<Conn>> =
            self.shared.conns.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        for c in &conns {
            c.close();
        }
        for id in std::mem::take(&mut self.ro.local) {
            self.sessions.remove(&id);
        }
        self.publish_sessions();
        tracing::info!(closed = conns.len(), "leaving read-only mode");
    }

    /// A new session in read-only mode: only for a client that asked for one (ZooKeeper closes
    /// the others' connections), and this server's alone.
    fn read_only_session(
        &mut self,
        conn: Arc<Conn>,
        timeout_ms: i32,
        read_only: Option<bool>,
        done: tokio::sync::oneshot::Sender<Option<(i64, Arc<AtomicU64>)>>,
    ) {
        if read_only != Some(true) {
            tracing::info!(
                remote = %conn.remote,
                "read-only mode: refusing a session request from a not-read-only client"
            );
            conn.close();
            let _ = done.send(None);
            return;
        }
        let id = self.new_local_session(&conn, timeout_ms, Some(true), done);
        self.ro.local.insert(id);
    }

    /// A session this server keeps to itself (read-only mode, or `localSessionsEnabled`):
    /// answered at once, no txn. `read_only` is the ConnectResponse's last field.
    fn new_local_session(
        &mut self,
        conn: &Arc<Conn>,
        timeout_ms: i32,
        read_only: Option<bool>,
        done: tokio::sync::oneshot::Sender<Option<(i64, Arc<AtomicU64>)>>,
    ) -> i64 {
        let id = self.ids.next_id();
        let timeout = self.shared.settings.negotiate_timeout(timeout_ms);
        let now = self.shared.now_ms();
        let touch = Arc::new(AtomicU64::new(now));
        self.sessions.insert(
            id,
            SessionInfo {
                timeout_ms: timeout,
                last_touch: touch.clone(),
                touch_sent: now,
                conn: Some(conn.id),
                closing: false,
            },
        );
        conn.timeout_ms.store(i64::from(timeout), Ordering::Relaxed);
        conn.session_id.store(id, Ordering::Relaxed);
        conn.send(connect_response(timeout, id, &self.password(id), read_only));
        let _ = done.send(Some((id, touch)));
        self.publish_sessions();
        id
    }

    /// A local session closed without a txn (nothing else of its connection is pending).
    fn close_local_session(
        &mut self,
        conn: &Arc<Conn>,
        session_id: i64,
        xid: i32,
        received: Instant,
    ) {
        self.local_sessions.remove(&session_id);
        self.replica.set_local_session(session_id, false);
        self.sessions.remove(&session_id);
        self.publish_sessions();
        let zxid = self.shared.last_zxid.load(Ordering::Acquire);
        let op = OpCode::CloseSession;
        finish_reply(&self.shared, conn, xid, zxid, ErrorCode::Ok, Response::Empty, op, received);
        self.answered(conn);
        conn.close();
    }

    /// A local session creates an ephemeral: it becomes global first (a createSession txn
    /// for its id, ahead of the create on the same path to the leader), as ZooKeeper's
    /// localSessionsUpgradingEnabled does.
    fn upgrade_local_session(&mut self, session_id: i64) {
        self.local_sessions.remove(&session_id);
        self.replica.set_local_session(session_id, false);
        let timeout = self.sessions.get(&session_id).map(|s| s.timeout_ms).unwrap_or(0);
        tracing::debug!(session = format_args!("{session_id:#x}"), "upgrading a local session");
        if self.leading() {
            self.propose(Proposal::CreateSession { session_id, timeout_ms: timeout }, Origin::None);
        } else {
            let fr = ForwardedRequest {
                session_id,
                cxid: 0,
                op: crate::replica::OP_CREATE_SESSION,
                body: encode_i32(timeout),
                auth: Vec::new(),
            };
            self.forward(fr, Origin::None, None);
        }
    }

    /// A request in read-only mode: reads are answered from this server's state; closing a
    /// read-only session ends it; anything else (writes, sync, closing a global session) is
    /// refused with NOTREADONLY, as ZooKeeper's ReadOnlyRequestProcessor does.
    fn read_only_request(
        &mut self,
        conn: Arc<Conn>,
        xid: i32,
        req: Request,
        auth: Arc<Vec<Id>>,
        received: Instant,
    ) {
        let session_id = conn.session_id.load(Ordering::Relaxed);
        let zxid = self.shared.last_zxid.load(Ordering::Acquire);
        if reads::is_read(&req) && !matches!(req, Request::Sync(_)) {
            self.answer_read_now(&conn, ReadJob { xid, req: &req, auth: &auth, received });
        } else if matches!(req, Request::CloseSession) && self.ro.local.remove(&session_id) {
            self.sessions.remove(&session_id);
            self.publish_sessions();
            let op = OpCode::CloseSession;
            finish_reply(
                &self.shared,
                &conn,
                xid,
                zxid,
                ErrorCode::Ok,
                Response::Empty,
                op,
                received,
            );
            conn.close();
        } else {
            let (err, op) = (ErrorCode::NotReadOnly, req.opcode());
            finish_reply(&self.shared, &conn, xid, zxid, err, Response::Empty, op, received);
        }
        self.answered(&conn);
    }

    /// The replica stopped serving (or changed leader): like ZooKeeper, every client
    /// connection is closed; clients reconnect (here or elsewhere) and revalidate. What they
    /// waited for is dropped: a txn proposed or forwarded may still commit, its reply lost
    /// with the connection, as when a connection breaks.
    fn role_changed(&mut self, role: Role) {
        self.time_role_change(role);
        match role {
            Role::Looking => tracing::info!("LOOKING: electing a leader"),
            Role::Leading { epoch, established } => {
                tracing::info!(?epoch, established, "LEADING")
            }
            Role::Following { leader, serving } => tracing::info!(leader, serving, "FOLLOWING"),
            Role::Observing { leader, serving } => tracing::info!(leader, serving, "OBSERVING"),
        }
        if !matches!(role, Role::Leading { established: true, .. }) {
            // Expiries this leader could not propose: the next leader's tracker expires them.
            for id in std::mem::take(&mut self.held_expiries) {
                if let Some(s) = self.sessions.get_mut(&id) {
                    s.closing = false;
                }
            }
        }
        if role == Role::Looking {
            let now = self.shared.now_ms();
            self.ro.looking_since.get_or_insert(now);
        } else {
            self.ro.looking_since = None;
            self.leave_read_only();
        }
        let mode = match role {
            Role::Leading { established: true, .. } => MODE_LEADER,
            Role::Following { serving: true, .. } => MODE_FOLLOWER,
            Role::Observing { serving: true, .. } => MODE_OBSERVER,
            _ if self.ro.active => MODE_READ_ONLY,
            _ => MODE_NOT_SERVING,
        };
        self.shared.mode.store(mode, Ordering::Release);
        self.report_ensemble();
        let serving = serves(role);
        if serving {
            return;
        }
        let conns: Vec<Arc<Conn>> =
            self.shared.conns.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        let dropped = self.origins.len()
            + self.forwarded.values().map(VecDeque::len).sum::<usize>()
            + self.waiting.values().map(Vec::len).sum::<usize>();
        if dropped > 0 || !conns.is_empty() {
            tracing::info!(?role, dropped, "not serving; closing client connections");
        }
        let mut answered = Vec::new();
        for (_, o) in self.origins.drain(..) {
            answered.push(o);
        }
        for (_, q) in self.forwarded.drain() {
            answered.extend(q);
        }
        for o in answered {
            match o {
                Origin::Client { conn, .. } | Origin::Close { conn: Some(conn), .. } => {
                    self.answered(&conn);
                }
                Origin::NewSession { done, .. } => {
                    let _ = done.send(None);
                }
                _ => {}
            }
        }
        let reads: Vec<WaitingRead> =
            std::mem::take(&mut self.waiting).into_values().flatten().collect();
        for r in reads {
            self.answered(&r.conn);
        }
        let queues: Vec<VecDeque<Queued>> = self.learner_queue.drain().map(|(_, q)| q).collect();
        for q in queues {
            for item in q {
                match item {
                    Queued::Sync(r, _) | Queued::Read(r) => self.answered(&r.conn),
                    Queued::Write(Some(d)) => {
                        // Committed, but its reply waited behind a sync: the connection
                        // closes; the client learns the outcome when it reconnects.
                        self.answered(&d.conn);
                        self.write_done(d.conn.id);
                    }
                    Queued::Write(None) => {}
                }
            }
        }
        self.syncs.clear();
        self.syncs_applying.clear();
        for (_, waiting) in std::mem::take(&mut self.revalidating) {
            // The leader that was to answer is gone: not expired, undecided.
            for r in waiting {
                drop_resume(&r.conn, r.done);
            }
        }
        self.pending.clear();
        for c in conns {
            c.close();
        }
        for s in self.sessions.values_mut() {
            s.conn = None;
            // A close in flight was dropped with the proposals: if it never commits, the
            // session is still open, and a later leadership here must be able to expire it.
            s.closing = false;
        }
    }

    /// The leader answered this learner's oldest forwarded sync: it is answered, in its
    /// connection's order, once everything committed before the leader's SYNC (the commit
    /// point now) is applied here. (Commits are applied at boundaries, after the SYNC packet
    /// may have arrived.)
    fn sync_done(&mut self) {
        let Some(conn_id) = self.syncs.pop_front() else { return };
        let point = self.replica.commit_point();
        let marked = self.learner_queue.get_mut(&conn_id).and_then(|q| {
            q.iter_mut().find_map(|item| match item {
                Queued::Sync(_, at @ None) => {
                    *at = Some(point);
                    Some(())
                }
                _ => None,
            })
        });
        if marked.is_none() {
            return;
        }
        let tree = self.replica.committed().tree.clone();
        if Zxid::from_wire(tree.last_processed_zxid()) < point {
            self.syncs_applying.push_back((point, conn_id));
            return;
        }
        let shared = self.shared.clone();
        let mut watches = shared.watches.lock().unwrap_or_else(|p| p.into_inner());
        self.drain_learner(conn_id, &tree, &mut watches);
    }

    /// Connections whose answered syncs waited for commits to be applied: drained from the
    /// committed version, now that it is applied further.
    fn drain_applied_syncs(&mut self) {
        let Some(&(first, _)) = self.syncs_applying.front() else { return };
        let applied = Zxid::from_wire(self.replica.committed().tree.last_processed_zxid());
        if first > applied {
            return;
        }
        let tree = self.replica.committed().tree.clone();
        let shared = self.shared.clone();
        let mut watches = shared.watches.lock().unwrap_or_else(|p| p.into_inner());
        while self.syncs_applying.front().is_some_and(|(z, _)| *z <= applied) {
            let (_, conn_id) = self.syncs_applying.pop_front().expect("non-empty");
            self.drain_learner(conn_id, &tree, &mut watches);
        }
    }

    /// Answers a read that waited, from `tree` (the caller holds the watch tables).
    fn answer_waiting(&mut self, r: WaitingRead, tree: &DataTree, watches: &mut WatchManager) {
        let shared = self.shared.clone();
        if let Some(p) = self.pending.get_mut(&r.conn.id) {
            p.1 = p.1.saturating_sub(1);
        }
        if r.conn.gone.load(Ordering::Acquire) {
            self.answered(&r.conn);
            return;
        }
        if r.expired {
            answer_session_ended(&shared, &r.conn, r.xid, r.req.opcode(), r.received);
        } else {
            let job = ReadJob { xid: r.xid, req: &r.req, auth: &r.auth, received: r.received };
            answer_read(&shared, tree, watches, &r.conn, job);
        }
        self.answered(&r.conn);
    }

    /// Answers what is ready at the front of a learner connection's queue, in order: reads
    /// (from `tree`), syncs whose commit point `tree` has reached, and writes whose replies
    /// waited behind them; stops at the first item not ready.
    fn drain_learner(&mut self, conn_id: u64, tree: &DataTree, watches: &mut WatchManager) {
        let at = Zxid::from_wire(tree.last_processed_zxid());
        loop {
            let item = self.learner_queue.get_mut(&conn_id).and_then(|q| match q.front() {
                Some(Queued::Read(_)) | Some(Queued::Write(Some(_))) => q.pop_front(),
                Some(Queued::Sync(_, Some(z))) if *z <= at => q.pop_front(),
                _ => None,
            });
            match item {
                Some(Queued::Read(r)) | Some(Queued::Sync(r, _)) => {
                    self.answer_waiting(r, tree, watches)
                }
                Some(Queued::Write(Some(d))) => {
                    let d = *d;
                    // The header carries the zxid the server is at when it replies (as
                    // ZooKeeper's lastProcessedZxid): a sync answered before it may have
                    // shown a newer one.
                    finish_reply(
                        &self.shared,
                        &d.conn,
                        d.xid,
                        d.zxid.max(at.to_wire()),
                        d.err,
                        d.body,
                        d.op,
                        d.received,
                    );
                    self.answered(&d.conn);
                    self.write_done(d.conn.id);
                }
                _ => break,
            }
        }
        if self.learner_queue.get(&conn_id).is_some_and(VecDeque::is_empty) {
            self.learner_queue.remove(&conn_id);
        }
    }

    /// The session tracker (the replica's, in ticks) expired a session.
    fn expire(&mut self, id: i64) {
        // The session may be this server's (its connection here) or a learner's: the leader
        // closes it either way; the server that holds its connection ends it at commit.
        match self.sessions.get_mut(&id) {
            Some(s) if s.closing => return,
            Some(s) => s.closing = true,
            None => {}
        }
        tracing::info!(session = format_args!("{id:#x}"), "session expired");
        if self.replica.busy() {
            self.held_expiries.push_back(id);
            return;
        }
        self.propose_expiry(id);
    }

    fn propose_expiry(&mut self, id: i64) {
        let p = Proposal::CloseSession { session_id: id, cxid: 0 };
        if self.propose(p, Origin::Close { conn: None, xid: None }).is_none() {
            if let Some(s) = self.sessions.get_mut(&id) {
                s.closing = false;
            }
        }
    }

    /// Answers committed txns in zxid order: fires their watch triggers, answers writes and
    /// the reads that waited for each boundary, then publishes the newest version.
    // Boxed as the replica hands them out: moving them around costs nothing.
    #[allow(clippy::vec_box)]
    fn commit_applied(&mut self, applied: Vec<Box<Applied>>) {
        if applied.is_empty() {
            return;
        }
        let seen = self.replica.committed().digest_mismatches;
        if seen > self.digest_seen {
            self.shared.stats.zk.add(
                crate::admin::server_metrics::C::DigestMismatchesCount,
                (seen - self.digest_seen) as i64,
            );
        }
        self.digest_seen = seen;
        let shared = self.shared.clone();
        let mut view = shared.view.write().unwrap_or_else(|p| p.into_inner());
        let mut watches = shared.watches.lock().unwrap_or_else(|p| p.into_inner());
        let conns = shared.conns.lock().unwrap_or_else(|p| p.into_inner());
        let mut sessions_changed = false;
        // Audit lines are written after the locks are released: the log may have to wait.
        let mut audited = Vec::new();
        // The version at the end of each txn's group decides who may hear of its changes.
        let mut applied = applied;
        let versions: Vec<Option<DataTree>> =
            applied.iter_mut().map(|a| a.version.take()).collect();
        let mut group_end: Vec<Option<usize>> = vec![None; applied.len()];
        let mut next = None;
        for i in (0..applied.len()).rev() {
            if versions[i].is_some() {
                next = Some(i);
            }
            group_end[i] = next;
        }
        let committed = self.replica.committed().tree.clone();
        for (i, a) in applied.into_iter().enumerate() {
            let a = &*a;
            let after = group_end[i].and_then(|j| versions[j].as_ref()).unwrap_or(&committed);
            let zxid = a.entry.header.zxid;
            let session_id = a.entry.header.client_id;
            while self.origins.front().is_some_and(|(z, _)| z.to_wire() < zxid) {
                // Proposed, then dropped by a role change (never standalone).
                self.origins.pop_front();
            }
            let origin = if a.local {
                match self.origins.front() {
                    Some((z, _)) if z.to_wire() == zxid => self.origins.pop_front().map(|o| o.1),
                    _ => None,
                }
            } else {
                // A learner: forwarded by this server? Matched by (session, cxid).
                let key = (session_id, a.entry.header.cxid);
                let o = self.forwarded.get_mut(&key).and_then(VecDeque::pop_front);
                if self.forwarded.get(&key).is_some_and(VecDeque::is_empty) {
                    self.forwarded.remove(&key);
                }
                o
            };
            shared.last_zxid.store(zxid, Ordering::Release);
            if let (Some(log), crate::proto::Txn::CloseSession(t)) =
                (&shared.settings.audit, &a.entry.txn)
            {
                audited.extend(ephemeral_deletions(log, session_id, t, a, &self.before));
            }
            for t in &a.outcome.triggers {
                let events = watches.trigger(&t.path, t.event);
                if events.is_empty() {
                    continue;
                }
                {
                    use crate::admin::server_metrics::S;
                    use crate::proto::EventType as E;
                    let kind = match t.event {
                        E::NodeCreated => Some(S::NodeCreatedWatchCount),
                        E::NodeDeleted => Some(S::NodeDeletedWatchCount),
                        E::NodeDataChanged => Some(S::NodeChangedWatchCount),
                        E::NodeChildrenChanged => Some(S::NodeChildrenWatchCount),
                        _ => None,
                    };
                    if let Some(kind) = kind {
                        shared.stats.zk.observe(kind, events.len() as i64);
                    }
                }
                // The ACL that decides who may hear of it: a deleted node's last one, else the
                // node's (for NodeChildrenChanged, the parent's: the trigger's path).
                let tree = if t.event == crate::proto::EventType::NodeDeleted {
                    &self.before
                } else {
                    after
                };
                // A node created and deleted within one commit group is in neither version:
                // its parent's ACL decides, and with no parent either, nobody hears of it
                // (failing closed; an empty list would mean "open").
                let parent = crate::tree::path::parent_of(&t.path);
                let acl = tree
                    .node(&t.path)
                    .map(|n| tree.acl_of(n))
                    .or_else(|| after.node(&t.path).map(|n| after.acl_of(n)))
                    .or_else(|| after.node(parent).map(|n| after.acl_of(n)));
                match acl {
                    Some(acl) => deliver_permitted(
                        &conns,
                        &events,
                        &acl,
                        shared.settings.skip_acl,
                        &shared.settings.prepare.auth_schemes,
                    ),
                    None if shared.settings.skip_acl => deliver(&conns, &events),
                    None => {}
                }
            }
            match origin {
                None if matches!(a.entry.txn, crate::proto::Txn::CloseSession(_)) => {
                    // Closed by the leader (expired) or through another server: if its
                    // connection is here, it ends now.
                    if let Some(s) = self.sessions.remove(&session_id) {
                        sessions_changed = true;
                        if let Some(c) = s.conn.and_then(|id| conns.get(&id)) {
                            c.end_session();
                        }
                        if let Some(c) = s.conn {
                            watches.remove_watcher(c);
                        }
                    }
                }
                None | Some(Origin::None) => {}
                Some(Origin::Client { conn, xid, received, audit }) => {
                    let (err, mut body) = a.outcome.result.reply();
                    if let (Some(req), Some(_)) = (audit, &shared.settings.audit) {
                        audited.extend(req.events(&a.entry.txn, err));
                    }
                    if let (crate::proto::Txn::Reconfig(t), 0) = (&a.entry.txn, err) {
                        // FinalRequestProcessor: the new membership and the node's stat.
                        body = crate::proto::Response::GetData(crate::proto::GetDataResponse {
                            data: t.data.clone(),
                            stat: a.outcome.result.stat.clone().unwrap_or_default(),
                        });
                    }
                    let err = ErrorCode::from_code(err).unwrap_or(ErrorCode::SystemError);
                    let op = a.entry.txn.opcode();
                    // A learner answers in the connection's order: if a sync before this
                    // write still waits, the reply waits with it.
                    let mut reply = Some(body);
                    if !a.local {
                        if let Some(q) = self.learner_queue.get_mut(&conn.id) {
                            if matches!(q.front(), Some(Queued::Write(None))) {
                                q.pop_front();
                            } else if let Some(slot) =
                                q.iter_mut().find(|x| matches!(x, Queued::Write(None)))
                            {
                                let body = reply.take().expect("not taken");
                                *slot = Queued::Write(Some(Box::new(DoneWrite {
                                    conn: conn.clone(),
                                    xid,
                                    zxid,
                                    err,
                                    body,
                                    op,
                                    received,
                                })));
                            }
                        }
                    }
                    if let Some(body) = reply {
                        finish_reply(&shared, &conn, xid, zxid, err, body, op, received);
                        self.answered(&conn);
                        self.write_done(conn.id);
                    }
                    if !a.local {
                        // The connection's next requests: reads queued behind this write see
                        // the version right after it.
                        let v = versions[i].as_ref().unwrap_or(&committed);
                        self.drain_learner(conn.id, v, &mut watches);
                    }
                }
                Some(Origin::NewSession { conn, read_only, done }) => {
                    let timeout = conn.timeout_ms.load(Ordering::Relaxed) as i32;
                    let now = shared.now_ms();
                    let touch = Arc::new(AtomicU64::new(now));
                    self.sessions.insert(
                        session_id,
                        SessionInfo {
                            timeout_ms: timeout,
                            last_touch: touch.clone(),
                            touch_sent: now,
                            conn: Some(conn.id),
                            closing: false,
                        },
                    );
                    sessions_changed = true;
                    conn.session_id.store(session_id, Ordering::Relaxed);
                    conn.send(connect_response(
                        timeout,
                        session_id,
                        &self.password(session_id),
                        read_only.map(|_| false),
                    ));
                    let _ = done.send(Some((session_id, touch)));
                }
                Some(Origin::Close { conn, xid }) => {
                    if self.local_sessions.remove(&session_id) {
                        self.replica.set_local_session(session_id, false);
                    }
                    let owner = self.sessions.remove(&session_id).and_then(|s| s.conn);
                    sessions_changed = true;
                    if let (Some(conn), Some(xid)) = (&conn, xid) {
                        finish_reply(
                            &shared,
                            conn,
                            xid,
                            zxid,
                            ErrorCode::Ok,
                            Response::Empty,
                            OpCode::CloseSession,
                            Instant::now(),
                        );
                        self.answered(conn);
                        conn.close();
                        self.pending.remove(&conn.id);
                    } else if let Some(c) = owner.and_then(|id| conns.get(&id)) {
                        // Expired: the connection closes now, even if its client is not
                        // reading; the client learns it when it reconnects.
                        c.end_session();
                    }
                    if let Some(c) = owner {
                        watches.remove_watcher(c);
                    }
                }
            }
            if let Some(v) = &versions[i] {
                // A boundary: this version is now committed; the reads that waited for it see
                // exactly it.
                if let Some(reads) = self.waiting.remove(&zxid) {
                    for r in reads {
                        if r.conn.gone.load(Ordering::Acquire) {
                            // Its connection has gone: answering would re-add its watches.
                            self.answered(&r.conn);
                            continue;
                        }
                        if r.expired {
                            answer_session_ended(
                                &shared,
                                &r.conn,
                                r.xid,
                                r.req.opcode(),
                                r.received,
                            );
                        } else {
                            let job = ReadJob {
                                xid: r.xid,
                                req: &r.req,
                                auth: &r.auth,
                                received: r.received,
                            };
                            answer_read(&shared, v, &mut watches, &r.conn, job);
                        }
                        self.answered(&r.conn);
                        if let Some(p) = self.pending.get_mut(&r.conn.id) {
                            p.1 = p.1.saturating_sub(1);
                        }
                    }
                }
                self.before = v.clone();
            }
        }
        *view = Arc::new(committed);
        drop(conns);
        drop(watches);
        drop(view);
        if let Some(log) = &shared.settings.audit {
            for e in audited {
                log.log(e);
            }
        }
        if sessions_changed {
            self.publish_sessions();
        }
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
        if now >= self.next_peer_tick_ms {
            self.next_peer_tick_ms = now + self.shared.settings.tick_ms.max(1);
            self.peer_tick(now);
        }
        let election_tick_ms = u64::from(self.replica.peer().config().election_tick_ms);
        if self.member && election_tick_ms > 0 && now >= self.next_election_tick_ms {
            self.next_election_tick_ms = now + election_tick_ms;
            let mut out = Vec::new();
            let r = self.replica.step(Event::ElectionTick, &mut out);
            self.outputs(out);
            if let Err(f) = r {
                self.fail(f);
                return;
            }
        }
        self.read_only_tick(now);
        self.expire_local_sessions(now);
        self.report_ensemble();
        // autopurge: keep snapRetainCount snapshots and the log they need.
        let every = self.shared.settings.purge_interval_ms;
        if every > 0 && now.saturating_sub(self.last_purge_ms) >= every {
            self.last_purge_ms = now;
            self.purge();
        }
        // Container reaper and TTL expiry.
        if now.saturating_sub(self.last_reap_ms) >= self.shared.settings.container_check_ms {
            self.last_reap_ms = now;
            self.reap(self.shared.clock.wall_ms());
        }
    }

    /// One tickTime: the sessions heard from since the last tick are touched in the session
    /// tracker, which then expires those past their timeout.
    fn peer_tick(&mut self, _now: u64) {
        let mut events = Vec::new();
        for (id, s) in self.sessions.iter_mut() {
            let t = s.last_touch.load(Ordering::Relaxed);
            let local = self.ro.local.contains(id) || self.local_sessions.contains(id);
            if t != s.touch_sent && !s.closing && !local {
                s.touch_sent = t;
                events.push(Event::TouchSession { session_id: *id, timeout: s.timeout_ms });
            }
        }
        events.push(Event::Tick);
        self.replica.set_clock(self.shared.clock.wall_ms());
        for ev in events {
            let mut out = Vec::new();
            let r = self.replica.step(ev, &mut out);
            self.outputs(out);
            if let Err(f) = r {
                self.fail(f);
                return;
            }
        }
    }

    /// Deletes empty containers that once had children, and TTL nodes past their time with no
    /// children, through deleteContainer txns as ZooKeeper's ContainerManager does.
    fn reap(&mut self, wall: i64) {
        // Only a leader proposes; a learner must not build a speculative state either (it
        // would then apply every txn it receives twice).
        if !matches!(self.replica.peer().role(), Role::Leading { established: true, .. }) {
            return;
        }
        let tree = &self.replica.speculative().tree;
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
            self.propose(Proposal::Server { req: &req }, Origin::None);
        }
    }
}

/// How [`Pipeline::run`] ended: the database (for an orderly close) and, if it stopped on its
/// own, why.
#[derive(Debug)]
pub struct Stopped {
    /// The database.
    pub db: Database,
    /// Set when storage failed.
    pub fatal: Option<Fatal>,
}
