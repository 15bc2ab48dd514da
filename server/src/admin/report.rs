//! The answers of the four-letter words other than `mntr`, rendered from plain data.
//!
//! Owns: the data structs the server fills in for `srvr`/`stat`, `cons`, `conf`, `envi`, `dirs`,
//! `dump`, `wchs`/`wchc`/`wchp` and `hash`, and their text, byte for byte as ZooKeeper 3.8.0
//! prints it (`ServerStats.toString`, `ServerCnxn.dumpConnectionInfo`,
//! `ZooKeeperServer.dumpConf`, `Environment.list`, `ExpiryQueue.dump`, `WatchManager`, …).
//!
//! Must never touch: sockets, clocks, files. Times arrive as numbers in the structs; order is
//! the caller's (ZooKeeper prints hash-map order, which no client can rely on).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::javafmt::{date_to_string, double_to_string, hex, socket_address};
use crate::config::{Config, LearnerType};

/// What a server is doing, as `srvr` (`Mode:`) and `mntr` (`zk_server_state`) name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerMode {
    /// A single server.
    Standalone,
    /// Quorum leader.
    Leader,
    /// Quorum follower.
    Follower,
    /// Quorum observer.
    Observer,
    /// Cut off from the quorum, serving read-only clients.
    ReadOnly,
}

impl ServerMode {
    /// ZooKeeper's name for the mode.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerMode::Standalone => "standalone",
            ServerMode::Leader => "leader",
            ServerMode::Follower => "follower",
            ServerMode::Observer => "observer",
            ServerMode::ReadOnly => "read-only",
        }
    }
}

/// Last, smallest and largest size of something, -1 before the first sample (ZooKeeper's
/// `BufferStats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferStats {
    /// Most recent size.
    pub last: i64,
    /// Smallest size.
    pub min: i64,
    /// Largest size.
    pub max: i64,
}

impl Default for BufferStats {
    fn default() -> BufferStats {
        BufferStats { last: -1, min: -1, max: -1 }
    }
}

/// The server statistics of `srvr` and `stat` (ZooKeeper's `ServerStats`).
#[derive(Debug, Clone, PartialEq)]
pub struct ServerStats {
    /// Full version string ([`super::full_version`]).
    pub version: String,
    /// Request latency: smallest, in ms (0 before the first request).
    pub min_latency_ms: i64,
    /// Request latency: average in ms, rounded as [`super::javafmt::rounded_average`] does.
    pub avg_latency_ms: f64,
    /// Request latency: largest, in ms.
    pub max_latency_ms: i64,
    /// Packets received from clients (four-letter words included).
    pub packets_received: i64,
    /// Packets sent to clients.
    pub packets_sent: i64,
    /// Client connections alive (this one included).
    pub connections: i64,
    /// Requests received and not yet answered.
    pub outstanding_requests: i64,
    /// Last zxid applied.
    pub last_processed_zxid: i64,
    /// Mode.
    pub mode: ServerMode,
    /// Nodes in the tree (ZooKeeper counts the root twice: 5 on a fresh server).
    pub node_count: i64,
    /// Leader only: proposal sizes in bytes.
    pub proposal_sizes: BufferStats,
}

/// `srvr` (`connections` = `None`) or `stat` (the connections in brief form).
pub fn render_stat(stats: &ServerStats, connections: Option<&[ConnectionInfo]>) -> String {
    let mut out = format!("Zookeeper version: {}\n", stats.version);
    if stats.mode == ServerMode::ReadOnly {
        out.push_str("READ-ONLY mode; serving only read-only clients\n");
    }
    if let Some(connections) = connections {
        out.push_str("Clients:\n");
        for c in connections {
            out.push_str(&c.line(true));
            out.push('\n');
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "Latency min/avg/max: {}/{}/{}\n",
        stats.min_latency_ms,
        double_to_string(stats.avg_latency_ms),
        stats.max_latency_ms
    ));
    out.push_str(&format!("Received: {}\n", stats.packets_received));
    out.push_str(&format!("Sent: {}\n", stats.packets_sent));
    out.push_str(&format!("Connections: {}\n", stats.connections));
    out.push_str(&format!("Outstanding: {}\n", stats.outstanding_requests));
    out.push_str(&format!("Zxid: 0x{}\n", hex(stats.last_processed_zxid)));
    out.push_str(&format!("Mode: {}\n", stats.mode.as_str()));
    out.push_str(&format!("Node count: {}\n", stats.node_count));
    if stats.mode == ServerMode::Leader {
        let p = stats.proposal_sizes;
        out.push_str(&format!("Proposal sizes last/min/max: {}/{}/{}\n", p.last, p.min, p.max));
    }
    out
}

/// One client connection, as `stat` (brief) and `cons` (full) print it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The client's address (`None` prints `null`, as for a closed socket).
    pub remote: Option<SocketAddr>,
    /// Java NIO interest ops (1 = reading, 4 = writing, 0 = throttled), printed in hex.
    pub interest_ops: u32,
    /// Requests of this connection not yet answered.
    pub outstanding_requests: i64,
    /// Packets received on this connection.
    pub packets_received: i64,
    /// Packets sent on this connection.
    pub packets_sent: i64,
    /// Session id; 0 before the session exists (then the full form has no session fields).
    pub session_id: i64,
    /// Last operation, as [`last_operation_name`] names it (`NA` before the first).
    pub last_operation: String,
    /// When the connection was established, wall clock ms since the epoch.
    pub established_ms: i64,
    /// Negotiated session timeout.
    pub session_timeout_ms: i32,
    /// Last client xid answered (-1: none; not printed).
    pub last_cxid: i64,
    /// Zxid of the last answer.
    pub last_zxid: i64,
    /// When the last answer was sent (ZooKeeper prints its elapsed-time clock, in ms).
    pub last_response_ms: i64,
    /// Latency of the last request, ms.
    pub last_latency_ms: i64,
    /// Smallest latency, ms (0 before the first request).
    pub min_latency_ms: i64,
    /// Average latency, ms, integer division.
    pub avg_latency_ms: i64,
    /// Largest latency, ms.
    pub max_latency_ms: i64,
}

impl ConnectionInfo {
    /// A fresh connection with ZooKeeper's initial statistics (`ServerCnxn.resetStats`).
    pub fn new(remote: Option<SocketAddr>, established_ms: i64) -> ConnectionInfo {
        ConnectionInfo {
            remote,
            interest_ops: 1,
            outstanding_requests: 0,
            packets_received: 0,
            packets_sent: 0,
            session_id: 0,
            last_operation: "NA".to_string(),
            established_ms,
            session_timeout_ms: 0,
            last_cxid: -1,
            last_zxid: -1,
            last_response_ms: 0,
            last_latency_ms: 0,
            min_latency_ms: 0,
            avg_latency_ms: 0,
            max_latency_ms: 0,
        }
    }

    /// `ServerCnxn.dumpConnectionInfo` (without a newline).
    pub fn line(&self, brief: bool) -> String {
        let ops = if self.interest_ops == 0 {
            "0".to_string()
        } else {
            format!("{:x}", self.interest_ops)
        };
        let mut out = format!(
            " {}[{}](queued={},recved={},sent={}",
            socket_address(self.remote),
            ops,
            self.outstanding_requests,
            self.packets_received,
            self.packets_sent
        );
        if !brief && self.session_id != 0 {
            out.push_str(&format!(
                ",sid=0x{},lop={},est={},to={}",
                hex(self.session_id),
                self.last_operation,
                self.established_ms,
                self.session_timeout_ms
            ));
            if self.last_cxid >= 0 {
                out.push_str(&format!(",lcxid=0x{}", hex(self.last_cxid)));
            }
            out.push_str(&format!(
                ",lzxid=0x{},lresp={},llat={},minlat={},avglat={},maxlat={}",
                hex(self.last_zxid),
                self.last_response_ms,
                self.last_latency_ms,
                self.min_latency_ms,
                self.avg_latency_ms,
                self.max_latency_ms
            ));
        }
        out.push(')');
        out
    }
}

/// `cons`: every connection in full, one per line, then a blank line.
pub fn render_cons(connections: &[ConnectionInfo]) -> String {
    let mut out = String::new();
    for c in connections {
        out.push_str(&c.line(false));
        out.push('\n');
    }
    out.push('\n');
    out
}

/// The name ZooKeeper's `FinalRequestProcessor` records as a connection's last operation
/// (`lop=` in `cons`) for a request opcode; `NA` for anything else.
pub fn last_operation_name(opcode: i32) -> &'static str {
    match opcode {
        11 => "PING",
        -10 => "SESS",
        14 => "MULT",
        22 => "MLTR",
        1 | 15 | 19 | 21 => "CREA",
        2 | 20 => "DELE",
        5 => "SETD",
        16 => "RECO",
        7 => "SETA",
        -11 => "CLOS",
        9 => "SYNC",
        13 => "CHEC",
        3 => "EXIS",
        4 => "GETD",
        101 => "SETW",
        105 => "STW2",
        106 => "ADDW",
        6 => "GETA",
        8 | 12 => "GETC",
        104 => "GETACN",
        17 => "CHKW",
        18 => "REMW",
        107 => "HOMI",
        103 => "GETE",
        _ => "NA",
    }
}

/// What `conf` prints (`ZooKeeperServer.dumpConf`, plus `QuorumZooKeeperServer`'s lines in
/// quorum mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfData {
    /// The listening client port, -1 when none.
    pub client_port: i32,
    /// The listening TLS client port, -1 when none.
    pub secure_client_port: i32,
    /// Absolute path of the snapshot directory (`<dataDir>/version-2`).
    pub data_dir: String,
    /// Bytes in it.
    pub data_dir_size: u64,
    /// Absolute path of the log directory (`<dataLogDir>/version-2`).
    pub data_log_dir: String,
    /// Bytes in it.
    pub data_log_size: u64,
    /// `tickTime`.
    pub tick_time_ms: u32,
    /// `maxClientCnxns`.
    pub max_client_cnxns: u32,
    /// `minSessionTimeout`.
    pub min_session_timeout_ms: u32,
    /// `maxSessionTimeout`.
    pub max_session_timeout_ms: u32,
    /// `clientPortListenBacklog`.
    pub client_port_listen_backlog: i32,
    /// `myid` in quorum mode, 0 standalone.
    pub server_id: u64,
    /// Quorum mode only.
    pub quorum: Option<QuorumConf>,
}

/// The quorum part of `conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumConf {
    /// `initLimit`.
    pub init_limit: u32,
    /// `syncLimit`.
    pub sync_limit: u32,
    /// `electionAlg`.
    pub election_alg: u32,
    /// This server's election ports (one per address group).
    pub election_ports: Vec<u16>,
    /// This server's quorum ports.
    pub quorum_ports: Vec<u16>,
    /// This server's role.
    pub peer_type: LearnerType,
    /// The current membership text ([`Config::quorum_verifier_text`], whose version a running
    /// quorum advances).
    pub membership: String,
}

/// What the running server adds to the configuration for `conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfRuntime {
    /// Port the client listener is bound to (`None`: no listener).
    pub client_port: Option<u16>,
    /// Port the TLS client listener is bound to.
    pub secure_client_port: Option<u16>,
    /// Bytes in the snapshot directory.
    pub data_dir_size: u64,
    /// Bytes in the log directory.
    pub data_log_size: u64,
    /// Directory relative paths are relative to (Java's `getAbsolutePath` uses the process's
    /// working directory).
    pub working_dir: PathBuf,
}

impl ConfData {
    /// `conf` for a server running `config`.
    pub fn from_config(config: &Config, runtime: &ConfRuntime) -> ConfData {
        let absolute = |p: &Path| runtime.working_dir.join(p).to_string_lossy().into_owned();
        let quorum = config.is_distributed().then(|| {
            let mine = config.my_server();
            QuorumConf {
                init_limit: config.init_limit.unwrap_or(0),
                sync_limit: config.sync_limit.unwrap_or(0),
                election_alg: config.election_alg,
                election_ports: mine
                    .map(|s| s.addresses.iter().map(|a| a.election_port).collect())
                    .unwrap_or_default(),
                quorum_ports: mine
                    .map(|s| s.addresses.iter().map(|a| a.quorum_port).collect())
                    .unwrap_or_default(),
                peer_type: config.peer_type,
                membership: config.quorum_verifier_text(),
            }
        });
        ConfData {
            client_port: runtime.client_port.map_or(-1, i32::from),
            secure_client_port: runtime.secure_client_port.map_or(-1, i32::from),
            data_dir: absolute(&config.snap_dir()),
            data_dir_size: runtime.data_dir_size,
            data_log_dir: absolute(&config.log_dir()),
            data_log_size: runtime.data_log_size,
            tick_time_ms: config.tick_time_ms,
            max_client_cnxns: config.max_client_cnxns,
            min_session_timeout_ms: config.min_session_timeout_ms,
            max_session_timeout_ms: config.max_session_timeout_ms,
            client_port_listen_backlog: config.client_port_listen_backlog,
            server_id: if quorum.is_some() { config.my_id.unwrap_or(0) } else { 0 },
            quorum,
        }
    }
}

/// `conf`.
pub fn render_conf(conf: &ConfData) -> String {
    let mut out = format!(
        "clientPort={}\nsecureClientPort={}\ndataDir={}\ndataDirSize={}\ndataLogDir={}\n\
         dataLogSize={}\ntickTime={}\nmaxClientCnxns={}\nminSessionTimeout={}\n\
         maxSessionTimeout={}\nclientPortListenBacklog={}\nserverId={}\n",
        conf.client_port,
        conf.secure_client_port,
        conf.data_dir,
        conf.data_dir_size,
        conf.data_log_dir,
        conf.data_log_size,
        conf.tick_time_ms,
        conf.max_client_cnxns,
        conf.min_session_timeout_ms,
        conf.max_session_timeout_ms,
        conf.client_port_listen_backlog,
        conf.server_id
    );
    if let Some(q) = &conf.quorum {
        let join = |ports: &[u16]| ports.iter().map(u16::to_string).collect::<Vec<_>>().join("|");
        out.push_str(&format!(
            "initLimit={}\nsyncLimit={}\nelectionAlg={}\nelectionPort={}\nquorumPort={}\n\
             peerType={}\nmembership: \n{}",
            q.init_limit,
            q.sync_limit,
            q.election_alg,
            join(&q.election_ports),
            join(&q.quorum_ports),
            q.peer_type.ordinal(),
            q.membership
        ));
    }
    out
}

/// What `envi` lists: `key=value` entries in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    /// The entries.
    pub entries: Vec<(String, String)>,
}

/// The values of ZooKeeper's `envi` keys that mean something for a native process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvironmentInfo {
    /// `zookeeper.version` ([`super::full_version`]).
    pub zookeeper_version: String,
    /// `host.name`.
    pub host_name: Option<String>,
    /// `java.io.tmpdir`: the temporary directory.
    pub tmp_dir: Option<String>,
    /// `os.name` (Java spells Linux `Linux`).
    pub os_name: Option<String>,
    /// `os.arch` (Java spells x86_64 `amd64`).
    pub os_arch: Option<String>,
    /// `os.version`: the kernel release.
    pub os_version: Option<String>,
    /// `user.name`.
    pub user_name: Option<String>,
    /// `user.home`.
    pub user_home: Option<String>,
    /// `user.dir`: the working directory.
    pub user_dir: Option<String>,
    /// `os.memory.free` in MiB (Java: free heap).
    pub memory_free_mb: Option<u64>,
    /// `os.memory.max` in MiB (Java: heap limit).
    pub memory_max_mb: Option<u64>,
    /// `os.memory.total` in MiB (Java: heap size).
    pub memory_total_mb: Option<u64>,
    /// Entries appended after ZooKeeper's (e.g. `corral.version`).
    pub extra: Vec<(String, String)>,
}

/// What ZooKeeper prints for a value it does not have.
pub const NOT_AVAILABLE: &str = "<NA>";

impl EnvironmentInfo {
    /// Only the version known; every other value `<NA>`.
    pub fn new(zookeeper_version: String) -> EnvironmentInfo {
        EnvironmentInfo {
            zookeeper_version,
            host_name: None,
            tmp_dir: None,
            os_name: None,
            os_arch: None,
            os_version: None,
            user_name: None,
            user_home: None,
            user_dir: None,
            memory_free_mb: None,
            memory_max_mb: None,
            memory_total_mb: None,
            extra: Vec::new(),
        }
    }
}

impl Environment {
    /// ZooKeeper's keys in ZooKeeper's order (`Environment.list`), so scripts that read
    /// `envi` find every line they expect. A native process has no JVM: `java.version`,
    /// `java.vendor`, `java.home`, `java.class.path`, `java.library.path` and `java.compiler`
    /// are `<NA>` (ZooKeeper's own placeholder); `java.io.tmpdir` is the temporary directory.
    pub fn from_info(info: &EnvironmentInfo) -> Environment {
        let na = |v: &Option<String>| v.clone().unwrap_or_else(|| NOT_AVAILABLE.to_string());
        let mb = |v: Option<u64>| v.map_or_else(|| NOT_AVAILABLE.to_string(), |n| format!("{n}MB"));
        let mut entries = vec![
            ("zookeeper.version", info.zookeeper_version.clone()),
            ("host.name", na(&info.host_name)),
            ("java.version", NOT_AVAILABLE.to_string()),
            ("java.vendor", NOT_AVAILABLE.to_string()),
            ("java.home", NOT_AVAILABLE.to_string()),
            ("java.class.path", NOT_AVAILABLE.to_string()),
            ("java.library.path", NOT_AVAILABLE.to_string()),
            ("java.io.tmpdir", na(&info.tmp_dir)),
            ("java.compiler", NOT_AVAILABLE.to_string()),
            ("os.name", na(&info.os_name)),
            ("os.arch", na(&info.os_arch)),
            ("os.version", na(&info.os_version)),
            ("user.name", na(&info.user_name)),
            ("user.home", na(&info.user_home)),
            ("user.dir", na(&info.user_dir)),
            ("os.memory.free", mb(info.memory_free_mb)),
            ("os.memory.max", mb(info.memory_max_mb)),
            ("os.memory.total", mb(info.memory_total_mb)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect::<Vec<_>>();
        entries.extend(info.extra.iter().cloned());
        Environment { entries }
    }
}

/// `envi`.
pub fn render_envi(env: &Environment) -> String {
    let mut out = String::from("Environment:\n");
    for (k, v) in &env.entries {
        out.push_str(&format!("{k}={v}\n"));
    }
    out
}

/// What `dirs` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirSizes {
    /// Bytes in the snapshot directory.
    pub data_dir_size: u64,
    /// Bytes in the log directory.
    pub log_dir_size: u64,
}

/// `dirs`.
pub fn render_dirs(dirs: &DirSizes) -> String {
    format!("datadir_size: {}\nlogdir_size: {}\n", dirs.data_dir_size, dirs.log_dir_size)
}

/// Time buckets of sessions or connections (ZooKeeper's `ExpiryQueue`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExpiryDump {
    /// The buckets, empty ones included (printed sorted by time).
    pub buckets: Vec<ExpiryBucket>,
}

/// One bucket: what expires at one tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiryBucket {
    /// When, wall clock ms since the epoch (printed as a `java.util.Date` in UTC).
    pub expire_at_ms: i64,
    /// The members, already formatted ([`session_item`], [`connection_item`]).
    pub items: Vec<String>,
}

/// A session in a session bucket: `0x<id>`.
pub fn session_item(session_id: i64) -> String {
    format!("0x{}", hex(session_id))
}

/// A connection in a connection bucket (`NIOServerCnxn.toString`).
pub fn connection_item(remote: Option<SocketAddr>, session_id: i64) -> String {
    format!("ip: {} sessionId: 0x{}", socket_address(remote), hex(session_id))
}

fn render_expiry(out: &mut String, dump: &ExpiryDump) {
    let elements: usize = dump.buckets.iter().map(|b| b.items.len()).sum();
    out.push_str(&format!("Sets ({})/({}):\n", dump.buckets.len(), elements));
    let mut buckets: Vec<&ExpiryBucket> = dump.buckets.iter().collect();
    buckets.sort_by_key(|b| b.expire_at_ms);
    for b in buckets {
        out.push_str(&format!("{} expire at {}:\n", b.items.len(), date_to_string(b.expire_at_ms)));
        for item in &b.items {
            out.push_str(&format!("\t{item}\n"));
        }
    }
}

/// The session tracker part of `dump`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionTrackerDump {
    /// Standalone server or quorum leader: expiry buckets (`Session Sets (…)`); with local
    /// sessions enabled the local tracker first.
    Expiry {
        /// Local sessions, when `localSessionsEnabled`.
        local: Option<ExpiryDump>,
        /// Global sessions.
        global: ExpiryDump,
    },
    /// Follower or observer: global sessions with their timeouts (`Global Sessions(n):`).
    Learner {
        /// Local sessions, when `localSessionsEnabled`.
        local: Option<ExpiryDump>,
        /// (session id, timeout ms) of every global session.
        global: Vec<(i64, i32)>,
    },
}

/// What `dump` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpData {
    /// Sessions.
    pub sessions: SessionTrackerDump,
    /// (session id, ephemeral paths) of every session that owns ephemerals.
    pub ephemerals: Vec<(i64, Vec<String>)>,
    /// Connection expiry buckets (ZooKeeper's NIO server prints them; its Netty server, which
    /// made the samples, prints nothing).
    pub connections: Option<ExpiryDump>,
}

/// `dump`.
pub fn render_dump(dump: &DumpData) -> String {
    let mut out = String::from("SessionTracker dump:\n");
    match &dump.sessions {
        SessionTrackerDump::Expiry { local, global } => {
            if let Some(local) = local {
                out.push_str("Local Session ");
                render_expiry(&mut out, local);
                out.push_str("Global ");
            }
            out.push_str("Session ");
            render_expiry(&mut out, global);
        }
        SessionTrackerDump::Learner { local, global } => {
            if let Some(local) = local {
                out.push_str("Local Session ");
                render_expiry(&mut out, local);
            }
            out.push_str(&format!("Global Sessions({}):\n", global.len()));
            let mut sorted = global.clone();
            sorted.sort_by_key(|(id, _)| *id);
            for (id, timeout) in sorted {
                out.push_str(&format!("0x{}\t{}ms\n", hex(id), timeout));
            }
        }
    }
    out.push_str("ephemeral nodes dump:\n");
    out.push_str(&format!("Sessions with Ephemerals ({}):\n", dump.ephemerals.len()));
    for (session, paths) in &dump.ephemerals {
        out.push_str(&format!("0x{}:\n", hex(*session)));
        for p in paths {
            out.push_str(&format!("\t{p}\n"));
        }
    }
    out.push_str("Connections dump:\n");
    if let Some(connections) = &dump.connections {
        out.push_str("Connections ");
        render_expiry(&mut out, connections);
    }
    out
}

/// What `wchs` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchSummary {
    /// Connections with at least one watch.
    pub connections: usize,
    /// Watched paths.
    pub paths: usize,
    /// Watches in total.
    pub total_watches: usize,
}

/// `wchs`.
pub fn render_wchs(summary: &WatchSummary) -> String {
    format!(
        "{} connections watching {} paths\nTotal watches:{}\n",
        summary.connections, summary.paths, summary.total_watches
    )
}

/// `wchc`: per session its watched paths, then a blank line.
pub fn render_watches_by_session(watches: &[(i64, Vec<String>)]) -> String {
    let mut out = String::new();
    for (session, paths) in watches {
        out.push_str(&format!("0x{}\n", hex(*session)));
        for p in paths {
            out.push_str(&format!("\t{p}\n"));
        }
    }
    out.push('\n');
    out
}

/// `wchp`: per path the sessions watching it, then a blank line.
pub fn render_watches_by_path(watches: &[(String, Vec<i64>)]) -> String {
    let mut out = String::new();
    for (path, sessions) in watches {
        out.push_str(&format!("{path}\n"));
        for s in sessions {
            out.push_str(&format!("\t0x{}\n", hex(*s)));
        }
    }
    out.push('\n');
    out
}

/// `hash`: `<zxid hex>: <digest>` per entry of the digest history.
pub fn render_hash(digests: &[(i64, i64)]) -> String {
    digests.iter().map(|(zxid, digest)| format!("{}: {}\n", hex(*zxid), digest)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_lines() {
        let addr: SocketAddr = "127.0.0.1:56052".parse().unwrap();
        let mut c = ConnectionInfo::new(Some(addr), 1_700_000_000_000);
        c.packets_received = 1;
        assert_eq!(c.line(true), " /127.0.0.1:56052[1](queued=0,recved=1,sent=0)");
        assert_eq!(c.line(false), c.line(true), "no session: no session fields");
        c.session_id = 0x1000027887b0000;
        c.last_operation = last_operation_name(4).to_string();
        c.session_timeout_ms = 30000;
        c.last_zxid = 0x1f;
        c.last_response_ms = 12345;
        c.last_latency_ms = 2;
        c.min_latency_ms = 1;
        c.avg_latency_ms = 1;
        c.max_latency_ms = 3;
        c.interest_ops = 0;
        assert_eq!(
            c.line(false),
            " /127.0.0.1:56052[0](queued=0,recved=1,sent=0,sid=0x1000027887b0000,lop=GETD,\
             est=1700000000000,to=30000,lzxid=0x1f,lresp=12345,llat=2,minlat=1,avglat=1,maxlat=3)"
        );
        c.last_cxid = 26;
        c.interest_ops = 5;
        assert!(c.line(false).contains(",to=30000,lcxid=0x1a,lzxid=0x1f,"));
        assert!(c.line(false).starts_with(" /127.0.0.1:56052[5]("));
        assert_eq!(render_cons(&[]), "\n");
    }

    #[test]
    fn leader_and_read_only_stat_lines() {
        let mut stats = ServerStats {
            version: "v".to_string(),
            min_latency_ms: 0,
            avg_latency_ms: 0.5,
            max_latency_ms: 1,
            packets_received: 1,
            packets_sent: 0,
            connections: 1,
            outstanding_requests: 0,
            last_processed_zxid: 0x100000003,
            mode: ServerMode::Leader,
            node_count: 5,
            proposal_sizes: BufferStats::default(),
        };
        let leader = render_stat(&stats, None);
        assert!(leader.contains("Latency min/avg/max: 0/0.5/1\n"));
        assert!(leader.contains("Zxid: 0x100000003\n"));
        assert!(leader
            .ends_with("Mode: leader\nNode count: 5\nProposal sizes last/min/max: -1/-1/-1\n"));
        stats.mode = ServerMode::ReadOnly;
        let ro = render_stat(&stats, None);
        assert!(ro
            .starts_with("Zookeeper version: v\nREAD-ONLY mode; serving only read-only clients\n"));
        assert!(ro.ends_with("Mode: read-only\nNode count: 5\n"));
    }

    #[test]
    fn dump_of_a_busy_leader_and_a_follower() {
        let dump = DumpData {
            sessions: SessionTrackerDump::Expiry {
                local: None,
                global: ExpiryDump {
                    buckets: vec![
                        ExpiryBucket {
                            expire_at_ms: 1_668_140_223_000,
                            items: vec![session_item(0x100000d21e00001)],
                        },
                        ExpiryBucket { expire_at_ms: 1_668_140_213_000, items: vec![] },
                    ],
                },
            },
            ephemerals: vec![(
                0x100000d21e00000,
                vec!["/controller".to_string(), "/brokers/ids/0".to_string()],
            )],
            connections: Some(ExpiryDump {
                buckets: vec![ExpiryBucket {
                    expire_at_ms: 1_668_140_223_000,
                    items: vec![connection_item(
                        Some("127.0.0.1:35092".parse().unwrap()),
                        0x100000d21e00000,
                    )],
                }],
            }),
        };
        assert_eq!(
            render_dump(&dump),
            "SessionTracker dump:\nSession Sets (2)/(1):\n\
             0 expire at Fri Nov 11 04:16:53 UTC 2022:\n\
             1 expire at Fri Nov 11 04:17:03 UTC 2022:\n\t0x100000d21e00001\n\
             ephemeral nodes dump:\nSessions with Ephemerals (1):\n0x100000d21e00000:\n\
             \t/controller\n\t/brokers/ids/0\nConnections dump:\nConnections Sets (1)/(1):\n\
             1 expire at Fri Nov 11 04:17:03 UTC 2022:\n\
             \tip: /127.0.0.1:35092 sessionId: 0x100000d21e00000\n"
        );
        let follower = DumpData {
            sessions: SessionTrackerDump::Learner {
                local: Some(ExpiryDump::default()),
                global: vec![(0x300000d42930000, 18000), (0x100000d21e00000, 30000)],
            },
            ephemerals: vec![],
            connections: None,
        };
        assert_eq!(
            render_dump(&follower),
            "SessionTracker dump:\nLocal Session Sets (0)/(0):\nGlobal Sessions(2):\n\
             0x100000d21e00000\t30000ms\n0x300000d42930000\t18000ms\n\
             ephemeral nodes dump:\nSessions with Ephemerals (0):\nConnections dump:\n"
        );
    }

    #[test]
    fn watches_and_hash() {
        assert_eq!(
            render_watches_by_session(&[(0x1f, vec!["/a".to_string(), "/b".to_string()])]),
            "0x1f\n\t/a\n\t/b\n\n"
        );
        assert_eq!(
            render_watches_by_path(&[("/a".to_string(), vec![1, 2])]),
            "/a\n\t0x1\n\t0x2\n\n"
        );
        assert_eq!(
            render_hash(&[(0x100000001, 1234), (0x100000002, -5)]),
            "100000001: 1234\n100000002: -5\n"
        );
        assert_eq!(render_hash(&[]), "");
    }

    #[test]
    fn environment_keeps_zookeepers_keys() {
        let env = Environment::from_info(&EnvironmentInfo::new("3.8.0-corral-x".to_string()));
        let text = render_envi(&env);
        assert!(
            text.starts_with("Environment:\nzookeeper.version=3.8.0-corral-x\nhost.name=<NA>\n")
        );
        assert!(text.ends_with("os.memory.total=<NA>\n"));
        assert_eq!(env.entries.len(), 18);
    }
}
