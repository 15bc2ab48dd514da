//! The AdminServer's commands: ZooKeeper's `/commands/<name>` over HTTP, answered with the
//! JSON keys (and Jackson's layout, [`super::json`]) of ZooKeeper 3.9.
//!
//! Owns: the command table (primary names, aliases, method, whether the server must be
//! serving), dispatch and the early errors (`Unknown command: …`, not serving), the command
//! listing, and every answer's keys, built from plain data the server fills in through
//! [`AdminSource`] (the four-letter words' [`FourLetterSource`] plus what only the HTTP
//! commands report).
//!
//! Must never touch: sockets, clocks, files. `net::admin_http` parses HTTP, calls
//! [`handle`] and writes the [`Response`].
//!
//! Fidelity: `server/tests/admin_http.rs` compares every command's keys with live answers of
//! ZooKeeper 3.8.0 in `server/tests/data/zk-3.8.0-admin/`.

use std::net::SocketAddr;

use serde_json::{json, Map, Value};

use super::fourlw::FourLetterSource;
use super::javafmt::hex;
use super::json::to_jackson_string;
use super::monitor::MetricValue;
use super::report::{BufferStats, ConnectionInfo, ServerMode};
use crate::config::LearnerType;

/// ZooKeeper's answer when a command needs a serving server.
pub const NOT_SERVING: &str = "This ZooKeeper instance is not currently serving requests";

/// HTTP method of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET (and HEAD, answered without a body by the HTTP layer).
    Get,
    /// POST.
    Post,
    /// Anything else.
    Other,
}

/// One HTTP request for the AdminServer, already parsed.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The method.
    pub method: Method,
    /// The URL path (no query).
    pub path: &'a str,
    /// Query parameters in order (ZooKeeper keeps the first value of each).
    pub query: Vec<(String, String)>,
    /// The `Authorization` header.
    pub authorization: Option<&'a str>,
    /// The client's address (the `ip` scheme's id).
    pub remote_ip: Option<std::net::IpAddr>,
    /// Now, in ms on any clock that only goes forward (the rate limits).
    pub now_ms: u64,
    /// The request's body, read only by a command that takes one (`restore`), after its
    /// checks.
    pub body: Option<Body>,
    /// Over HTTPS with a client certificate: its subject (RFC 2253), the `x509` id.
    pub client_subject: Option<&'a str>,
}

/// Reads a request body of at most the given number of bytes (more: [`BodyError::TooLarge`]).
#[derive(Clone)]
pub struct Body(pub std::sync::Arc<dyn Fn(usize) -> Result<Vec<u8>, BodyError> + Send + Sync>);

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Body")
    }
}

/// Why a body could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Longer than allowed.
    TooLarge,
    /// The connection failed or the client sent a malformed body.
    Broken(String),
}

/// What the HTTP layer writes back.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type`, if any (ZooKeeper sets none on the listing).
    pub content_type: Option<&'static str>,
    /// More headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
    /// Instead of `body`: stream this file (a snapshot).
    pub file: Option<std::path::PathBuf>,
}

impl Response {
    /// A response with a body and nothing else.
    pub fn text(status: u16, content_type: &'static str, body: String) -> Response {
        Response { status, content_type: Some(content_type), body, ..Response::default() }
    }

    fn json(status: u16, body: String) -> Response {
        Response::text(status, "application/json", body)
    }

    fn not_found() -> Response {
        Response::text(404, "text/plain", "Not Found\n".into())
    }
}

/// The AdminServer's settings and state that outlive a request (the rate limit, the
/// snapshot being written). Shared by the requests served at once: each command runs without
/// waiting for another, and only one snapshot is written at a time.
#[derive(Debug)]
pub struct AdminState {
    /// `admin.snapshot.enabled`.
    pub snapshot_enabled: bool,
    /// `admin.rateLimiterIntervalInMS`: at most one snapshot per interval.
    pub rate_interval_ms: u64,
    /// When the current interval began and how many were allowed in it (`None`: none yet).
    snapshot_window: std::sync::Mutex<Option<(u64, u32)>>,
    /// A snapshot is being written.
    snapshot_busy: std::sync::atomic::AtomicBool,
    /// `admin.restore.enabled`.
    pub restore_enabled: bool,
    /// `corral.admin.restoreMaxBytes`: the largest snapshot `restore` reads.
    pub restore_max_bytes: usize,
    /// The restore rate limiter's interval (ZooKeeper's own, as the snapshot's).
    restore_window: std::sync::Mutex<Option<(u64, u32)>>,
}

impl AdminState {
    /// ZooKeeper's defaults: snapshots on, one per 5 minutes.
    pub fn new(snapshot_enabled: bool, rate_interval_ms: u64) -> AdminState {
        AdminState {
            snapshot_enabled,
            rate_interval_ms,
            snapshot_window: std::sync::Mutex::new(None),
            snapshot_busy: std::sync::atomic::AtomicBool::new(false),
            restore_enabled: true,
            restore_max_bytes: 1 << 30,
            restore_window: std::sync::Mutex::new(None),
        }
    }

    /// ZooKeeper's `RateLimiter` with a rate of 1: a request is allowed if none was in the
    /// current interval (a new interval begins once the last has passed).
    fn allow_snapshot(&self, now_ms: u64) -> bool {
        self.allow(&self.snapshot_window, now_ms)
    }

    fn allow(&self, window: &std::sync::Mutex<Option<(u64, u32)>>, now_ms: u64) -> bool {
        let mut window = window.lock().unwrap_or_else(|p| p.into_inner());
        match *window {
            Some((start, used)) if now_ms <= start.saturating_add(self.rate_interval_ms) => {
                if used >= 1 {
                    return false;
                }
                *window = Some((start, used + 1));
                true
            }
            _ => {
                *window = Some((now_ms, 1));
                true
            }
        }
    }
}

/// A snapshot written for the `snapshot` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakenSnapshot {
    /// The zxid it is at.
    pub zxid: i64,
    /// The file (ZooKeeper's format).
    pub path: std::path::PathBuf,
    /// Its size in bytes.
    pub size: u64,
}

/// One command of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandDef {
    /// Its primary name (the `command` key of its answers).
    pub primary: &'static str,
    /// Other names it answers to.
    pub aliases: &'static [&'static str],
    /// Answered only while the server serves requests.
    pub server_required: bool,
}

const fn cmd(
    primary: &'static str,
    aliases: &'static [&'static str],
    server_required: bool,
) -> CommandDef {
    CommandDef { primary, aliases, server_required }
}

/// Every command, sorted by primary name (the listing's order). All are GET commands;
/// `snapshot` needs ALL permissions on `/` (an `Authorization` header).
pub const COMMANDS: &[CommandDef] = &[
    cmd("configuration", &["conf", "config"], true),
    cmd("connection_stat_reset", &["crst"], true),
    cmd("connections", &["cons"], true),
    cmd("dirs", &[], true),
    cmd("dump", &[], true),
    cmd("environment", &["env", "envi"], false),
    cmd("get_trace_mask", &["gtmk"], false),
    cmd("hash", &[], true),
    cmd("initial_configuration", &["icfg"], true),
    cmd("is_read_only", &["isro"], true),
    cmd("last_snapshot", &["lsnp"], true),
    cmd("leader", &["lead"], true),
    cmd("monitor", &["mntr"], false),
    cmd("observer_connection_stat_reset", &["orst"], true),
    cmd("observers", &["obsr"], true),
    cmd("restore", &["rest"], true),
    cmd("ruok", &[], true),
    cmd("server_stats", &["srvr"], true),
    cmd("set_trace_mask", &["stmk"], false),
    cmd("snapshot", &["snap"], true),
    cmd("stat_reset", &["srst"], true),
    cmd("stats", &["stat"], true),
    cmd("system_properties", &["sysp"], false),
    cmd("voting_view", &[], true),
    cmd("watch_summary", &["wchs"], true),
    cmd("watches", &["wchc"], true),
    cmd("watches_by_path", &["wchp"], true),
    cmd("zabstate", &[], false),
];

/// The command a name (primary or alias) stands for.
pub fn lookup(name: &str) -> Option<&'static CommandDef> {
    COMMANDS.iter().find(|c| c.primary == name || c.aliases.contains(&name))
}

/// Who leads, for `leader` (quorum mode only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderView {
    /// This server leads.
    pub is_leader: bool,
    /// The leader's id (-1 while none is known).
    pub leader_id: i64,
    /// The leader's quorum host (`""` while unknown).
    pub leader_ip: String,
}

/// One member of the current configuration, for `voting_view`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VotingMember {
    /// Its id.
    pub sid: u64,
    /// Quorum addresses, `host:port`.
    pub server_addresses: Vec<String>,
    /// Election addresses, `host:port`.
    pub election_addresses: Vec<String>,
    /// Client address, `host:port`, or `""`.
    pub client_address: String,
    /// Participant or observer.
    pub learner_type: LearnerType,
}

/// Addresses of one of this server's ports, for `zabstate` (ZooKeeper serialises its
/// `MultipleAddresses` bean).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressSet {
    /// `host:port` for each address.
    pub addresses: Vec<SocketAddr>,
}

/// This server's ZAB state, for `zabstate` (quorum mode only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZabView {
    /// `myid`.
    pub myid: u64,
    /// This server leads.
    pub is_leader: bool,
    /// Its quorum addresses.
    pub quorum_address: AddressSet,
    /// Its election addresses.
    pub election_address: AddressSet,
    /// Its client address, `host:port` (`""` when none).
    pub client_address: String,
    /// It votes.
    pub voting: bool,
    /// Last zxid logged.
    pub last_zxid: i64,
    /// `election`, `discovery`, `synchronization` or `broadcast`.
    pub zabstate: String,
}

/// One connected learner, for `observers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnerView {
    /// The learner's address.
    pub remote: Option<SocketAddr>,
    /// Its id.
    pub sid: u64,
    /// When it connected, ms since the epoch.
    pub established_ms: i64,
    /// Packets queued for it.
    pub queued_packets: i64,
    /// Bytes queued for it.
    pub queued_packets_size: i64,
    /// Packets received from it.
    pub packets_received: i64,
    /// Packets sent to it.
    pub packets_sent: i64,
    /// Requests it forwarded.
    pub requests: i64,
    /// Last zxid sent to it.
    pub last_zxid: i64,
}

/// What only the HTTP commands report, beyond the four-letter words' data.
pub trait AdminSource: FourLetterSource {
    /// Every client connection (the AdminServer's own HTTP connection is not one).
    fn client_connections(&self) -> Vec<ConnectionInfo>;
    /// Client response sizes (`client_response`, and inside `server_stats`).
    fn client_response_sizes(&self) -> BufferStats;
    /// Flushes slower than `fsync.warningthresholdms` so far.
    fn fsync_threshold_exceed_count(&self) -> i64;
    /// Milliseconds since the server started.
    fn uptime_ms(&self) -> i64;
    /// Session expiry buckets: (expiry time in ms, session ids), sorted by time.
    fn session_expiry(&self) -> Vec<(i64, Vec<i64>)>;
    /// The configuration file's text as read at start (`""` without one; `None`, printed as
    /// null, in quorum mode, where ZooKeeper does not keep it).
    fn initial_configuration(&self) -> Option<String>;
    /// The newest snapshot: (zxid, file modification time in seconds), if any.
    fn last_snapshot(&self) -> Option<(i64, i64)>;
    /// Who leads (`None`: standalone).
    fn leader(&self) -> Option<LeaderView>;
    /// The current configuration's members (empty: standalone).
    fn voting_view(&self) -> Vec<VotingMember>;
    /// ZAB state (`None`: standalone).
    fn zab(&self) -> Option<ZabView>;
    /// Synced observers and the observers connected to this server.
    fn observers(&self) -> (i64, Vec<LearnerView>);
    /// `system_properties`: name, value, sorted by name.
    fn system_properties(&self) -> Vec<(String, String)>;
    /// `observer_connection_stat_reset`.
    fn reset_observer_stats(&mut self);
    /// `DigestAuthenticationProvider.superDigest`, if set.
    fn super_digest(&self) -> Option<String>;
    /// Whether `ids` hold permission `perm` (one bit) on `/`, by its ACL (ZooKeeper's
    /// `checkACL`: skipACL, an empty ACL or a super id pass).
    fn root_allows(&self, ids: &[crate::proto::Id], perm: i32) -> bool;
    /// Writes a snapshot of the committed state in ZooKeeper's format.
    fn take_snapshot(&mut self) -> Result<TakenSnapshot, String>;
    /// `Some` when the x509 scheme is registered (`authProvider.N=…X509AuthenticationProvider`),
    /// with `X509AuthenticationProvider.superUser` if set.
    fn x509_super_user(&self) -> Option<Option<String>>;
    /// Makes the snapshot `bytes` (ZooKeeper's format) the server's state; returns the
    /// snapshot's last zxid (ZooKeeper's answer), 0 if it does not say.
    fn restore(&mut self, bytes: &[u8]) -> Result<i64, String>;
}

/// Why a protected command is refused: (status, error text), as ZooKeeper answers.
fn authorize(req: &Request<'_>, source: &dyn AdminSource) -> Result<(), (u16, &'static str)> {
    let Some(header) = req.authorization else {
        return Err((401, "Auth info is missing for the command"));
    };
    let parts: Vec<&str> = header.split(' ').collect();
    let (scheme, data) = match parts.as_slice() {
        [scheme] => (*scheme, None),
        [scheme, data] => (*scheme, Some(*data)),
        _ => return Err((401, "Not authenticated")),
    };
    let mut ids = Vec::new();
    match (scheme, data) {
        ("digest", Some(text)) => {
            let id = crate::tree::acl::digest_of_auth(text);
            if source.super_digest().as_deref() == Some(id.as_str()) {
                ids.push(crate::proto::Id { scheme: "super".into(), id: String::new() });
            }
            ids.push(crate::proto::Id { scheme: "digest".into(), id });
        }
        ("ip", _) => match req.remote_ip {
            Some(ip) => ids.push(crate::proto::Id { scheme: "ip".into(), id: ip.to_string() }),
            None => return Err((401, "Not authenticated")),
        },
        // ZooKeeper's X509AuthenticationProvider, when registered (authProvider.N): the
        // certificate the TLS handshake checked, by its subject.
        ("x509", _) => match (req.client_subject, source.x509_super_user()) {
            (Some(subject), Some(super_user)) => {
                ids.push(crate::proto::Id { scheme: "x509".into(), id: subject.to_string() });
                if super_user.as_deref() == Some(subject) {
                    ids.push(crate::proto::Id { scheme: "super".into(), id: subject.to_string() });
                }
            }
            _ => return Err((401, "Not authenticated")),
        },
        // Any other scheme authenticates nothing.
        _ => return Err((401, "Not authenticated")),
    }
    // Every permission bit on its own (ZooKeeper 3.9.4's fix of CVE-2025-58457: before it,
    // any one matching bit let ALL through).
    const ALL: i32 = 31;
    for bit in [1, 2, 4, 8, 16] {
        if ALL & bit != 0 && !source.root_allows(&ids, bit) {
            return Err((403, "Not authorized"));
        }
    }
    Ok(())
}

/// `snapshot`: ZooKeeper's checks in its order, then the file (streamed, or not).
fn snapshot(req: &Request<'_>, source: &mut dyn AdminSource, state: &AdminState) -> Response {
    let envelope = |status: u16, headers: Vec<(String, String)>| Response {
        headers,
        ..Response::json(status, finish("snapshot", Map::new()))
    };
    if !state.snapshot_enabled {
        return envelope(503, Vec::new());
    }
    if !state.allow_snapshot(req.now_ms) {
        return envelope(429, Vec::new());
    }
    // One at a time (with no rate limit, two could otherwise write at once): a second
    // request while one is written is refused as the rate limiter would refuse it.
    if state.snapshot_busy.swap(true, std::sync::atomic::Ordering::AcqRel) {
        return envelope(429, Vec::new());
    }
    struct Busy<'a>(&'a std::sync::atomic::AtomicBool);
    impl Drop for Busy<'_> {
        fn drop(&mut self) {
            self.0.store(false, std::sync::atomic::Ordering::Release);
        }
    }
    let _busy = Busy(&state.snapshot_busy);
    let streaming = req
        .query
        .iter()
        .find(|(k, _)| k == "streaming")
        .is_none_or(|(_, v)| v.eq_ignore_ascii_case("true"));
    match source.take_snapshot() {
        Ok(t) if t.size == 0 => envelope(500, Vec::new()),
        Ok(t) => {
            let headers = vec![
                ("last_zxid".to_string(), format!("0x{}", hex(t.zxid))),
                ("snapshot_size".to_string(), t.size.to_string()),
            ];
            if streaming {
                Response {
                    status: 200,
                    content_type: Some("application/octet-stream"),
                    headers,
                    body: String::new(),
                    file: Some(t.path),
                }
            } else {
                envelope(200, headers)
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "the AdminServer's snapshot failed");
            envelope(500, Vec::new())
        }
    }
}

/// `restore`: ZooKeeper 3.9's checks after authorization — the switch (503), the rate limit
/// (429) — then the body (a snapshot in ZooKeeper's format, at most `restore_max_bytes`: 413)
/// and the restore (500 if it fails, with the reason in the log, as ZooKeeper answers).
fn restore(req: &Request<'_>, source: &mut dyn AdminSource, state: &AdminState) -> Response {
    let envelope = |status: u16| Response::json(status, finish("restore", Map::new()));
    if !state.restore_enabled {
        return envelope(503);
    }
    if !state.allow(&state.restore_window, req.now_ms) {
        return envelope(429);
    }
    let bytes = match req.body.as_ref().map(|b| (b.0)(state.restore_max_bytes)) {
        None => return envelope(400),
        Some(Ok(bytes)) => bytes,
        Some(Err(BodyError::TooLarge)) => {
            tracing::warn!(
                max = state.restore_max_bytes,
                "the AdminServer's restore refused a snapshot over corral.admin.restoreMaxBytes"
            );
            return envelope(413);
        }
        Some(Err(BodyError::Broken(e))) => {
            tracing::warn!(error = %e, "the AdminServer's restore could not read the snapshot");
            return envelope(400);
        }
    };
    match source.restore(&bytes) {
        Ok(zxid) => {
            let mut m = Map::new();
            m.insert("last_zxid".into(), json!(zxid));
            Response::json(200, finish("restore", m))
        }
        Err(e) => {
            tracing::warn!(error = %e, "the AdminServer's restore failed");
            envelope(500)
        }
    }
}

/// Answers `req`. `command_url` is `admin.commandURL` (default `/commands`).
pub fn handle(
    req: &Request<'_>,
    command_url: &str,
    source: &mut dyn AdminSource,
    state: &AdminState,
) -> Response {
    let base = command_url.trim_end_matches('/');
    let Some(rest) = req.path.strip_prefix(base) else { return Response::not_found() };
    if !(rest.is_empty() || rest.starts_with('/')) {
        return Response::not_found();
    }
    let name = rest.trim_start_matches('/');
    if name.is_empty() {
        return match req.method {
            Method::Get | Method::Post => listing(command_url),
            Method::Other => method_not_allowed(),
        };
    }
    let post = lookup(name).is_some_and(|d| d.primary == "restore");
    if req.method != if post { Method::Post } else { Method::Get } {
        // restore is a POST command, the others GET commands; the servlet refuses other
        // methods.
        return method_not_allowed();
    }
    let Some(def) = lookup(name) else {
        return error_response(name, &format!("Unknown command: {name}"));
    };
    if def.server_required && !source.is_serving() {
        return error_response(name, NOT_SERVING);
    }
    if def.primary == "snapshot" {
        if let Err((status, error)) = authorize(req, source) {
            let mut r = error_response(name, error);
            r.status = status;
            return r;
        }
        return snapshot(req, source, state);
    }
    if def.primary == "restore" {
        if let Err((status, error)) = authorize(req, source) {
            let mut r = error_response(name, error);
            r.status = status;
            return r;
        }
        return restore(req, source, state);
    }
    let param = |k: &str| req.query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let data = match run(def.primary, source, param) {
        Ok(data) => data,
        Err(error) => return error_response_keyed(def.primary, &error),
    };
    Response::json(200, finish(def.primary, data))
}

/// ZooKeeper's listing of `GET /commands`: a link per primary name, each followed by `<br/>`.
fn listing(command_url: &str) -> Response {
    let base = command_url.trim_end_matches('/');
    let mut body = String::new();
    for c in COMMANDS {
        body.push_str(&format!("<a href=\"{base}/{0}\">{0}</a>\n<br/>\n", c.primary));
    }
    Response { status: 200, content_type: None, body, ..Response::default() }
}

fn method_not_allowed() -> Response {
    Response::text(405, "text/plain", "HTTP method not supported by this URL\n".into())
}

/// The JSON envelope: the command's keys, then `command`, then `error` (null).
fn finish(command: &str, mut data: Map<String, Value>) -> String {
    data.insert("command".into(), json!(command));
    data.insert("error".into(), Value::Null);
    to_jackson_string(&data)
}

/// An early error (unknown command, not serving): `command` as requested, then `error`.
fn error_response(name: &str, error: &str) -> Response {
    let mut m = Map::new();
    m.insert("command".into(), json!(name));
    m.insert("error".into(), json!(error));
    Response::json(200, to_jackson_string(&m))
}

/// An error a command puts in its own answer: `error` first, then `command`.
fn error_response_keyed(command: &str, error: &str) -> Response {
    let mut m = Map::new();
    m.insert("error".into(), json!(error));
    m.insert("command".into(), json!(command));
    Response::json(200, to_jackson_string(&m))
}

fn buffer_stats(b: BufferStats) -> Value {
    json!({ "last_buffer_size": b.last, "min_buffer_size": b.min, "max_buffer_size": b.max })
}

fn remote(addr: Option<SocketAddr>) -> Value {
    match addr {
        Some(a) => json!(a.to_string()),
        None => Value::Null,
    }
}

/// `connections` entries: brief (`stats`) or full (`connections`).
fn connection(c: &ConnectionInfo, brief: bool) -> Value {
    let mut m = Map::new();
    m.insert("remote_socket_address".into(), remote(c.remote));
    m.insert("interest_ops".into(), json!(c.interest_ops));
    m.insert("outstanding_requests".into(), json!(c.outstanding_requests));
    m.insert("packets_received".into(), json!(c.packets_received));
    m.insert("packets_sent".into(), json!(c.packets_sent));
    if !brief && c.session_id != 0 {
        m.insert("session_id".into(), json!(c.session_id));
        m.insert("last_operation".into(), json!(c.last_operation));
        m.insert("established".into(), json!(c.established_ms));
        m.insert("session_timeout".into(), json!(c.session_timeout_ms));
        m.insert("last_cxid".into(), json!(c.last_cxid));
        m.insert("last_zxid".into(), json!(c.last_zxid));
        m.insert("last_response_time".into(), json!(c.last_response_ms));
        m.insert("last_latency".into(), json!(c.last_latency_ms));
        m.insert("min_latency".into(), json!(c.min_latency_ms));
        m.insert("avg_latency".into(), json!(c.avg_latency_ms));
        m.insert("max_latency".into(), json!(c.max_latency_ms));
    }
    Value::Object(m)
}

/// `server_stats` and `stats` keys.
fn server_stats_keys(source: &dyn AdminSource, m: &mut Map<String, Value>) {
    let s = source.server_stats();
    let dirs = source.dir_sizes();
    let responses = source.client_response_sizes();
    let alive = source.client_connections().len();
    m.insert("version".into(), json!(s.version));
    m.insert("read_only".into(), json!(s.mode == ServerMode::ReadOnly));
    m.insert(
        "server_stats".into(),
        json!({
            "packets_sent": s.packets_sent,
            "packets_received": s.packets_received,
            "fsync_threshold_exceed_count": source.fsync_threshold_exceed_count(),
            "client_response_stats": buffer_stats(responses),
            "data_dir_size": dirs.data_dir_size,
            "log_dir_size": dirs.log_dir_size,
            "provider_null": false,
            "server_state": s.mode.as_str(),
            "last_processed_zxid": s.last_processed_zxid,
            "outstanding_requests": s.outstanding_requests,
            "avg_latency": s.avg_latency_ms,
            "max_latency": s.max_latency_ms,
            "min_latency": s.min_latency_ms,
            "num_alive_client_connections": alive,
            "uptime": source.uptime_ms(),
            "auth_failed_count": source.monitor().auth_failed_count,
            "non_mtlsremote_conn_count": 0,
            "non_mtlslocal_conn_count": 0,
        }),
    );
    m.insert("client_response".into(), buffer_stats(responses));
    if s.mode == ServerMode::Leader {
        m.insert("proposal_stats".into(), buffer_stats(s.proposal_sizes));
    }
    m.insert("node_count".into(), json!(s.node_count));
}

fn metric(v: &MetricValue) -> Value {
    match v {
        MetricValue::Int(n) => json!(n),
        MetricValue::Double(d) => json!(d),
        MetricValue::Text(s) => json!(s),
        MetricValue::Null => Value::Null,
    }
}

/// ZooKeeper's `MultipleAddresses` bean, as Jackson writes it.
fn address_set(a: &AddressSet) -> Value {
    let strs: Vec<String> = a.addresses.iter().map(|x| x.to_string()).collect();
    let wildcard: Vec<String> = a
        .addresses
        .iter()
        .map(|x| {
            if x.is_ipv4() {
                format!("0.0.0.0:{}", x.port())
            } else {
                format!("[::]:{}", x.port())
            }
        })
        .collect();
    let ports: Vec<u16> = a.addresses.iter().map(|x| x.port()).collect();
    let hosts: Vec<String> = a.addresses.iter().map(|x| x.ip().to_string()).collect();
    let one = strs.first().cloned().map_or(Value::Null, Value::String);
    json!({
        "empty": a.addresses.is_empty(),
        "all_addresses": strs,
        "all_reachable_addresses": strs,
        "one": one,
        "reachable_address": one,
        "wildcard_addresses": wildcard,
        "all_ports": ports,
        "all_host_strings": hosts,
        "all_reachable_addresses_or_all": strs,
        "reachable_or_one": one,
    })
}

/// A command's own keys (or the error it reports in its answer).
fn run<'p>(
    primary: &str,
    source: &mut dyn AdminSource,
    param: impl Fn(&str) -> Option<&'p str>,
) -> Result<Map<String, Value>, String> {
    let mut m = Map::new();
    match primary {
        "configuration" => {
            let c = source.conf();
            m.insert("client_port".into(), json!(c.client_port));
            m.insert("data_dir".into(), json!(c.data_dir));
            m.insert("data_log_dir".into(), json!(c.data_log_dir));
            m.insert("tick_time".into(), json!(c.tick_time_ms));
            m.insert("max_client_cnxns".into(), json!(c.max_client_cnxns));
            m.insert("min_session_timeout".into(), json!(c.min_session_timeout_ms));
            m.insert("max_session_timeout".into(), json!(c.max_session_timeout_ms));
            m.insert("server_id".into(), json!(c.server_id));
            m.insert("client_port_listen_backlog".into(), json!(c.client_port_listen_backlog));
        }
        "connection_stat_reset" => source.reset_connection_stats(),
        "connections" => {
            let list: Vec<Value> =
                source.client_connections().iter().map(|c| connection(c, false)).collect();
            m.insert("connections".into(), json!(list));
            m.insert("secure_connections".into(), json!([]));
        }
        "dirs" => {
            let d = source.dir_sizes();
            m.insert("datadir_size".into(), json!(d.data_dir_size));
            m.insert("logdir_size".into(), json!(d.log_dir_size));
        }
        "dump" => {
            let mut expiry = Map::new();
            for (at, ids) in source.session_expiry() {
                expiry.insert(at.to_string(), json!(ids));
            }
            let mut eph = Map::new();
            for (sid, paths) in source.dump().ephemerals {
                eph.insert(sid.to_string(), json!(paths));
            }
            m.insert("expiry_time_to_session_ids".into(), Value::Object(expiry));
            m.insert("session_id_to_ephemeral_paths".into(), Value::Object(eph));
        }
        "environment" => {
            for (k, v) in source.environment().entries {
                m.insert(k, json!(v));
            }
        }
        "get_trace_mask" => {
            m.insert("tracemask".into(), json!(source.trace_mask()));
        }
        "hash" => {
            let digests: Vec<Value> = source
                .digest_log()
                .into_iter()
                .map(
                    |(zxid, digest)| json!({ "zxid": zxid, "digest_version": 2, "digest": digest }),
                )
                .collect();
            m.insert("digests".into(), json!(digests));
        }
        "initial_configuration" => {
            m.insert("initial_configuration".into(), json!(source.initial_configuration()));
        }
        "is_read_only" => {
            m.insert("read_only".into(), json!(source.is_read_only()));
        }
        "last_snapshot" => {
            let (zxid, ts) = source.last_snapshot().unwrap_or((-1, -1));
            m.insert("zxid".into(), json!(hex(zxid)));
            m.insert("timestamp".into(), json!(ts));
        }
        "leader" => {
            let Some(l) = source.leader() else {
                return Err("server is not initialized".into());
            };
            m.insert("is_leader".into(), json!(l.is_leader));
            m.insert("leader_id".into(), json!(l.leader_id));
            m.insert("leader_ip".into(), json!(l.leader_ip));
        }
        "monitor" => {
            for (k, v) in source.monitor().entries() {
                m.insert(k, metric(&v));
            }
        }
        "observer_connection_stat_reset" => source.reset_observer_stats(),
        "observers" => {
            let (synced, list) = source.observers();
            let list: Vec<Value> = list
                .iter()
                .map(|o| {
                    json!({
                        "remote_socket_address": o.remote.map(|a| format!("/{a}")),
                        "sid": o.sid,
                        "established": o.established_ms,
                        "queued_packets": o.queued_packets,
                        "queued_packets_size": o.queued_packets_size,
                        "packets_received": o.packets_received,
                        "packets_sent": o.packets_sent,
                        "requests": o.requests,
                        "last_zxid": o.last_zxid,
                    })
                })
                .collect();
            m.insert("synced_observers".into(), json!(synced));
            m.insert("observers".into(), json!(list));
        }
        "ruok" => {}
        "server_stats" => server_stats_keys(source, &mut m),
        "set_trace_mask" => {
            let Some(arg) = param("traceMask") else {
                return Err("setTraceMask requires long traceMask argument".into());
            };
            let Ok(mask) = arg.parse::<i64>() else {
                return Err(format!("setTraceMask requires long traceMask argument, got {arg}"));
            };
            source.set_trace_mask(mask);
            m.insert("tracemask".into(), json!(mask));
        }
        "stat_reset" => source.reset_server_stats(),
        "stats" => {
            server_stats_keys(source, &mut m);
            let list: Vec<Value> =
                source.client_connections().iter().map(|c| connection(c, true)).collect();
            m.insert("connections".into(), json!(list));
            m.insert("secure_connections".into(), json!([]));
        }
        "system_properties" => {
            for (k, v) in source.system_properties() {
                m.insert(k, json!(v));
            }
        }
        "voting_view" => {
            let mut view = Map::new();
            for v in source.voting_view() {
                view.insert(
                    v.sid.to_string(),
                    json!({
                        "server_addresses": v.server_addresses,
                        "election_addresses": v.election_addresses,
                        "client_address": v.client_address,
                        "learner_type": v.learner_type.as_str(),
                    }),
                );
            }
            m.insert("current_config".into(), Value::Object(view));
        }
        "watch_summary" => {
            let w = source.watch_summary();
            m.insert("num_connections".into(), json!(w.connections));
            m.insert("num_paths".into(), json!(w.paths));
            m.insert("num_total_watches".into(), json!(w.total_watches));
        }
        "watches" => {
            let mut by = Map::new();
            for (sid, paths) in source.watches_by_session() {
                by.insert(sid.to_string(), json!(paths));
            }
            m.insert("session_id_to_watched_paths".into(), Value::Object(by));
        }
        "watches_by_path" => {
            let mut by = Map::new();
            for (path, sids) in source.watches_by_path() {
                by.insert(path, json!(sids));
            }
            m.insert("path_to_session_ids".into(), Value::Object(by));
        }
        "zabstate" => match source.zab() {
            Some(z) => {
                m.insert("myid".into(), json!(z.myid));
                m.insert("is_leader".into(), json!(z.is_leader));
                m.insert("quorum_address".into(), address_set(&z.quorum_address));
                m.insert("election_address".into(), address_set(&z.election_address));
                m.insert("client_address".into(), json!(z.client_address));
                m.insert("voting".into(), json!(z.voting));
                m.insert("last_zxid".into(), json!(format!("0x{}", hex(z.last_zxid))));
                m.insert("zab_epoch".into(), json!(z.last_zxid >> 32));
                m.insert("zab_counter".into(), json!(z.last_zxid & 0xffff_ffff));
                m.insert("zabstate".into(), json!(z.zabstate));
            }
            None => {
                m.insert("voting".into(), json!(false));
                m.insert("zabstate".into(), json!(""));
            }
        },
        other => return Err(format!("Unknown command: {other}")),
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_snapshot_per_interval_the_first_allowed() {
        let s = AdminState::new(true, 1000);
        assert!(s.allow_snapshot(5), "the first, at once");
        assert!(!s.allow_snapshot(6));
        assert!(!s.allow_snapshot(1005), "still the same interval");
        assert!(s.allow_snapshot(1006), "a new interval");
        assert!(!s.allow_snapshot(1500));
        let none = AdminState::new(true, 0);
        assert!(none.allow_snapshot(1) && none.allow_snapshot(2));
    }

    #[test]
    fn every_name_finds_its_command() {
        for c in COMMANDS {
            assert_eq!(lookup(c.primary), Some(c));
            for a in c.aliases {
                assert_eq!(lookup(a).map(|d| d.primary), Some(c.primary));
            }
        }
        assert!(lookup("nosuch").is_none());
        let mut sorted: Vec<&str> = COMMANDS.iter().map(|c| c.primary).collect();
        sorted.sort_unstable();
        assert_eq!(sorted, COMMANDS.iter().map(|c| c.primary).collect::<Vec<_>>(), "listed sorted");
    }
}
