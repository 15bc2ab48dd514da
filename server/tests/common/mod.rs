//! Ensembles of server processes on loopback for the process-level tests: `corral` and Apache
//! ZooKeeper 3.8 (Debian's `zookeeper` package) members, each started from its own zoo.cfg and
//! myid as an operator would, killed with SIGKILL or stopped with SIGSTOP as machines fail.
//! Every wait is bounded; every process is started here and killed by its own handle.

#![allow(dead_code)] // each test file uses its own part of the harness

pub mod http;
pub mod kdc;
pub mod raw;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zookeeper_client as zk;

/// Apache ZooKeeper's classpath (Debian's packages).
/// ZooKeeper's jar, a logger, and the Netty jars its TLS between servers needs (its quorum
/// port detection and SSL contexts use Netty's classes).
pub const ZK_CLASSPATH: &str = "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar:\
     /usr/share/java/netty-buffer.jar:/usr/share/java/netty-codec.jar:\
     /usr/share/java/netty-common.jar:/usr/share/java/netty-handler.jar:\
     /usr/share/java/netty-resolver.jar:/usr/share/java/netty-transport.jar:\
     /usr/share/java/netty-transport-native-unix-common.jar";

/// Which server a member runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Corral,
    ZooKeeper,
}

/// A member's role in the static configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Participant,
    Observer,
}

impl Role {
    /// As zoo.cfg writes it (`server.N=...:participant`, `peerType=observer`).
    pub fn name(self) -> &'static str {
        match self {
            Role::Participant => "participant",
            Role::Observer => "observer",
        }
    }
}

/// The scenarios run one at a time (the machine has few cores; each is several processes).
pub static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Ports nothing listens on now (bound, read, released).
pub fn free_ports(n: usize) -> Vec<u16> {
    let ls: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    ls.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

pub struct Server {
    pub id: usize,
    pub kind: Kind,
    pub dir: PathBuf,
    /// System properties (`name=value`) given at start: `-D` to both kinds.
    pub props: Vec<String>,
    pub client: u16,
    pub child: Option<Child>,
}

impl Server {
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.client)
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "server {} is running", self.id);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .unwrap();
        let mut cmd = match self.kind {
            Kind::Corral => {
                let mut c = Command::new(env!("CARGO_BIN_EXE_corral"));
                // CORRAL_TEST_LOG: the servers' log filter (default info), e.g. debug to chase a
                // failure.
                let filter = std::env::var("CORRAL_TEST_LOG").unwrap_or_else(|_| "info".into());
                for p in &self.props {
                    c.arg("-D").arg(p);
                }
                c.arg(self.dir.join("zoo.cfg")).env("RUST_LOG", filter).env("NO_COLOR", "1");
                c
            }
            Kind::ZooKeeper => {
                let mut c = Command::new("java");
                c.args(["-Xmx256m", "-cp", ZK_CLASSPATH])
                    .args(self.props.iter().map(|p| format!("-D{p}")))
                    .arg(format!("-Dzookeeper.log.dir={}", self.dir.display()))
                    .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
                    .arg(self.dir.join("zoo.cfg"));
                c
            }
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{:?} server {} starts: {e}", self.kind, self.id));
        self.child = Some(child);
    }

    /// Turns a stopped ZooKeeper server into a Corral server over the same data directory,
    /// converted by `corral import-zookeeper` (Corral's files beside ZooKeeper's).
    pub fn import_into_corral(&mut self) {
        assert!(self.child.is_none() && self.kind == Kind::ZooKeeper);
        let out = Command::new(env!("CARGO_BIN_EXE_corral"))
            .arg("import-zookeeper")
            .arg("--from")
            .arg(&self.dir)
            .arg("--to")
            .arg(&self.dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "import: {}", String::from_utf8_lossy(&out.stderr));
        eprintln!("server {}: {}", self.id, String::from_utf8_lossy(&out.stdout).trim());
        // An ensemble member's epochs come over with its data.
        for name in ["acceptedEpoch", "currentEpoch"] {
            let zk = std::fs::read_to_string(self.dir.join("version-2").join(name)).unwrap();
            let ours = std::fs::read_to_string(self.dir.join("corral-v1").join(name)).unwrap();
            assert_eq!(ours.trim(), zk.trim(), "{name}");
        }
        self.kind = Kind::Corral;
    }

    /// Replaces the server by one of the other kind with the same myid, data directory
    /// (emptied: the new server syncs from the leader) and config; it is not started.
    pub fn replace_by(&mut self, kind: Kind) {
        assert!(self.child.is_none(), "server {} is running", self.id);
        self.wipe_data();
        self.kind = kind;
    }

    /// SIGKILL: no shutdown of any kind.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP, and waits (bounded) until every thread of the process is stopped: a signal
    /// is delivered asynchronously, and a thread still running for a moment could read a
    /// packet that the test means it never to see.
    pub fn pause(&self) {
        self.signal("-STOP");
        let pid = self.child.as_ref().expect("running").id();
        let all_stopped = || {
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return false };
            tasks.filter_map(Result::ok).all(|t| {
                std::fs::read_to_string(t.path().join("stat"))
                    .ok()
                    .and_then(|st| {
                        st.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with('T'))
                    })
                    .unwrap_or(false)
            })
        };
        wait_until("the process stopped", Duration::from_secs(5), all_stopped);
    }

    /// SIGCONT.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let ok = Command::new("kill").arg(sig).arg(pid.to_string()).status().unwrap().success();
        assert!(ok, "kill {sig} {pid}");
    }

    pub fn log(&self) -> String {
        // The subscriber colours its output only on a terminal; strip any escapes anyway.
        let raw = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let mut out = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    /// Empties the data directory but for `myid`, the config and the log.
    pub fn wipe_data(&self) {
        for e in std::fs::read_dir(&self.dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if ["myid", "zoo.cfg", "server.log"].contains(&name.as_str()) {
                continue;
            }
            if p.is_dir() {
                std::fs::remove_dir_all(&p).unwrap();
            } else {
                std::fs::remove_file(&p).unwrap();
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            // A stopped process must be continued to die promptly.
            let _ = Command::new("kill").arg("-CONT").arg(c.id().to_string()).status();
        }
        self.kill();
    }
}

pub struct Ensemble {
    pub servers: Vec<Server>,
    _root: tempfile::TempDir,
}

impl Ensemble {
    /// `voters` participants and `observers` observers, all `corral`, started; `extra` is
    /// added to every zoo.cfg.
    pub fn start(voters: usize, observers: usize, extra: &str) -> Ensemble {
        let mut members = vec![(Kind::Corral, Role::Participant); voters];
        members.extend(std::iter::repeat_n((Kind::Corral, Role::Observer), observers));
        Ensemble::start_mixed(&members, extra)
    }

    /// Members of the given kinds and roles (myid 1, 2, ... in order), started; `extra` is
    /// added to every zoo.cfg.
    pub fn start_mixed(members: &[(Kind, Role)], extra: &str) -> Ensemble {
        let mut e = Ensemble::configure(members, extra);
        for s in e.servers.iter_mut() {
            s.start();
        }
        e
    }

    /// Members configured, not started.
    pub fn configure(members: &[(Kind, Role)], extra: &str) -> Ensemble {
        let root = tempfile::tempdir().unwrap();
        let n = members.len();
        let ports = free_ports(3 * n);
        let mut lines = String::new();
        for (i, (_, role)) in members.iter().enumerate() {
            let role = role.name();
            lines.push_str(&format!(
                "server.{}=127.0.0.1:{}:{}:{role};127.0.0.1:{}\n",
                i + 1,
                ports[3 * i],
                ports[3 * i + 1],
                ports[3 * i + 2]
            ));
        }
        let mut servers = Vec::new();
        for (i, (kind, role)) in members.iter().enumerate() {
            let dir = root.path().join(format!("s{}", i + 1));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("myid"), format!("{}\n", i + 1)).unwrap();
            let peer_type = role.name();
            let cfg = format!(
                "tickTime=200\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort={}\n\
                 clientPortAddress=127.0.0.1\ncnxTimeout=1000\nadmin.enableServer=false\n\
                 peerType={peer_type}\n4lw.commands.whitelist=*\n{extra}{lines}",
                dir.display(),
                ports[3 * i + 2],
            );
            std::fs::write(dir.join("zoo.cfg"), cfg).unwrap();
            servers.push(Server {
                id: i + 1,
                kind: *kind,
                dir,
                props: Vec::new(),
                client: ports[3 * i + 2],
                child: None,
            });
        }
        Ensemble { servers, _root: root }
    }

    pub fn server(&mut self, id: usize) -> &mut Server {
        &mut self.servers[id - 1]
    }

    /// Every server's client address, as a connection string.
    pub fn hosts(&self) -> String {
        self.servers.iter().map(Server::addr).collect::<Vec<_>>().join(",")
    }

    /// Waits (bounded) until the running servers agree: one leader, the others following or
    /// observing. Returns the leader's id.
    pub fn wait_for_leader(&self, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            let modes: Vec<(usize, String)> = self
                .servers
                .iter()
                .filter(|s| s.child.is_some())
                .map(|s| (s.id, mode(&s.addr())))
                .collect();
            let leaders: Vec<usize> =
                modes.iter().filter(|(_, m)| m == "leader").map(|(i, _)| *i).collect();
            if leaders.len() == 1
                && modes
                    .iter()
                    .all(|(_, m)| ["leader", "follower", "observer"].contains(&m.as_str()))
            {
                return leaders[0];
            }
            assert!(Instant::now() < deadline, "no agreed leader within {within:?}: {modes:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Prints the end of every server's log, and keeps the whole logs in the target
    /// directory's test scratch space (the path is printed) for the analysis of a failure.
    pub fn dump_logs(&self) {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let keep = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "failed-ensemble-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        if std::fs::create_dir_all(&keep).is_ok() {
            for s in &self.servers {
                let _ = std::fs::write(keep.join(format!("server-{}.log", s.id)), s.log());
            }
            eprintln!("---- the servers' whole logs are kept in {}", keep.display());
        }
        for s in &self.servers {
            let log = s.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("---- server {} (last lines) ----", s.id);
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// A four-letter word's answer ("" if the server does not answer).
pub fn four(addr: &str, word: &[u8; 4]) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else { return String::new() };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    if s.write_all(word).is_err() {
        return String::new();
    }
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text
}

pub fn mode(addr: &str) -> String {
    let text = four(addr, b"srvr");
    text.lines().find_map(|l| l.strip_prefix("Mode: ")).map(str::to_owned).unwrap_or_default()
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

pub fn open() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())
}

/// A session through `hosts` (any of them), retried until `within` passes.
pub async fn connect(hosts: &str, within: Duration) -> zk::Client {
    let deadline = Instant::now() + within;
    loop {
        let mut connector = zk::Client::connector();
        connector
            .session_timeout(Duration::from_secs(8))
            .connection_timeout(Duration::from_millis(1000));
        match tokio::time::timeout(Duration::from_secs(3), connector.connect(hosts)).await {
            Ok(Ok(c)) => return c,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            other => {
                panic!("no session from {hosts} within {within:?}: {:?}", other.map(|r| r.err()))
            }
        }
    }
}

/// Children of `path` as server `addr` has them after a sync.
pub async fn children_at(addr: &str, path: &str) -> Vec<String> {
    let c = connect(addr, Duration::from_secs(20)).await;
    c.sync(path).await.unwrap();
    let (mut kids, _) = c.get_children(path).await.unwrap();
    kids.sort();
    kids
}

/// An acknowledged write: its path, when it was sent and when it was acknowledged.
#[derive(Debug)]
pub struct Acked {
    pub path: String,
    pub sent: Instant,
    pub acked: Instant,
}

/// Writers creating distinct znodes under `/load` until `stop`; returns the acknowledged
/// writes.
pub struct Load {
    acked: Arc<Mutex<Vec<Acked>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(rt: &tokio::runtime::Runtime, hosts: &str, writers: usize) -> Load {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for w in 0..writers {
            let (acked, stop, hosts) = (acked.clone(), stop.clone(), hosts.to_owned());
            tasks.push(rt.spawn(async move {
                let mut client = connect(&hosts, Duration::from_secs(30)).await;
                // Bounded by count and by the stop flag (set by the test within seconds).
                for k in 0..200_000u32 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let path = format!("/load/w{w}-{k:06}");
                    let sent = Instant::now();
                    let r = tokio::time::timeout(
                        Duration::from_secs(10),
                        client.create(&path, &[7u8; 100], &open()),
                    )
                    .await;
                    match r {
                        Ok(Ok(_)) => {
                            acked.lock().unwrap().push(Acked { path, sent, acked: Instant::now() })
                        }
                        Ok(Err(zk::Error::SessionExpired | zk::Error::ClientClosed)) => {
                            client = connect(&hosts, Duration::from_secs(30)).await;
                        }
                        // Connection loss and the like: unknown outcome, not acknowledged.
                        _ => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            }));
        }
        Load { acked, stop, tasks }
    }

    pub fn count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    pub fn finish(self, rt: &tokio::runtime::Runtime) -> Vec<Acked> {
        self.stop.store(true, Ordering::Relaxed);
        rt.block_on(async {
            for t in self.tasks {
                tokio::time::timeout(Duration::from_secs(30), t)
                    .await
                    .expect("writers stop")
                    .unwrap();
            }
        });
        Arc::try_unwrap(self.acked).unwrap().into_inner().unwrap()
    }
}

/// Waits (bounded) until `f` holds.
pub fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The lines of `log` saying the leader synced `learner`, by kind.
pub fn sync_kinds(log: &str, learner: usize) -> Vec<String> {
    let key = format!("learner={learner} kind=\"");
    log.lines()
        .filter(|l| l.contains("syncing a learner"))
        .filter_map(|l| l.split(&key).nth(1))
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

/// How each time a learner was synced, from its own log: "DIFF", "TRUNC" or "SNAP" (a
/// `corral` learner's "synced with the leader" lines, a ZooKeeper learner's "Getting a diff",
/// "Truncating log" and "Getting a snapshot" lines).
pub fn learner_syncs(s: &Server) -> Vec<String> {
    let log = s.log();
    let mut out = Vec::new();
    for l in log.lines() {
        let kind = match s.kind {
            Kind::Corral => l
                .contains("synced with the leader")
                .then(|| l.split("synced_by=\"").nth(1).and_then(|r| r.split('"').next()))
                .flatten(),
            Kind::ZooKeeper if l.contains("Getting a diff from the leader") => Some("DIFF"),
            Kind::ZooKeeper if l.contains("Truncating log to get in sync") => Some("TRUNC"),
            Kind::ZooKeeper if l.contains("Getting a snapshot from leader") => Some("SNAP"),
            Kind::ZooKeeper => None,
        };
        out.extend(kind.map(str::to_owned));
    }
    out
}

/// Znodes by path, with their data and Stat.
pub type Tree = std::collections::BTreeMap<String, (Vec<u8>, zk::Stat)>;

/// Every znode outside /zookeeper with its data and Stat, as server `addr` has it after a sync
/// (read as digest user alice).
pub async fn tree_at(addr: &str) -> Tree {
    let c = connect(addr, Duration::from_secs(20)).await;
    // The user the tests' creator-only ACLs name, so that every znode can be read.
    c.auth("digest".into(), b"alice:secret".to_vec()).await.unwrap();
    c.sync("/").await.unwrap();
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec!["/".to_owned()];
    while let Some(p) = stack.pop() {
        let (data, stat) = c.get_data(&p).await.unwrap();
        let (children, _) = c.get_children(&p).await.unwrap();
        for ch in children {
            let child = if p == "/" { format!("/{ch}") } else { format!("{p}/{ch}") };
            if child != "/zookeeper" {
                stack.push(child);
            }
        }
        out.insert(p, (data, stat));
    }
    out
}

/// Asserts that every running server holds the same tree (data and Stat of every znode outside
/// /zookeeper) and every acknowledged write; returns the number of znodes.
pub async fn assert_identical_trees(e: &Ensemble, acked: &[Acked]) -> usize {
    let mut first: Option<(usize, Tree)> = None;
    for s in e.servers.iter().filter(|s| s.child.is_some()) {
        let tree = tree_at(&s.addr()).await;
        let lost: Vec<&str> =
            acked.iter().map(|a| a.path.as_str()).filter(|p| !tree.contains_key(*p)).collect();
        assert!(
            lost.is_empty(),
            "server {} ({:?}) lost {} acknowledged writes: {:?}",
            s.id,
            s.kind,
            lost.len(),
            &lost[..lost.len().min(5)]
        );
        match &first {
            None => first = Some((s.id, tree)),
            Some((id, want)) => {
                let differ: Vec<&String> = want
                    .keys()
                    .chain(tree.keys())
                    .filter(|k| want.get(*k) != tree.get(*k))
                    .take(3)
                    .collect();
                assert!(
                    differ.is_empty(),
                    "servers {id} and {} ({:?}) differ at {:?}: {:?} vs {:?}",
                    s.id,
                    s.kind,
                    differ,
                    differ.first().map(|k| want.get(*k)),
                    differ.first().map(|k| tree.get(*k))
                );
            }
        }
    }
    assert_no_digest_mismatch(e);
    first.map_or(0, |(_, t)| t.len())
}

/// The log line each kind writes when a txn's tree digest differs from the one computed after
/// applying it (ZooKeeper 3.8's DataTree: "Digests are not matching"; Corral's database).
///
/// A ZooKeeper follower that loses its leader shuts down while its CommitProcessor still
/// applies committed txns, and meanwhile reloads its database from its own log ("N txns
/// loaded"): a mismatch logged in that window, between "Disconnected from leader" and its next
/// role's start, is on an in-memory tree being thrown away (it follows again from its disk),
/// not a divergence, and is not reported. Nor is one logged while ZooKeeper loads its database
/// at startup ("Reading snapshot" … "Snapshot loaded") from a log it reports going backwards
/// ("N(highestZxid) > M(next log)"): its learner logs again, after a DIFF from its last
/// *applied* zxid, txns its log already held, and replaying them twice cannot match the
/// digests logged with them (a ZooKeeper-only ensemble does the same,
/// docs/compatibility.md). Everywhere else one is.
pub fn digest_mismatch_in(kind: Kind, log: &str) -> Option<String> {
    let needles: &[&str] = match kind {
        Kind::Corral => &["tree digest mismatch"],
        Kind::ZooKeeper => &["Digests are not matching", "First digest mismatch"],
    };
    let mut shutting_down = false;
    // While loading: the first mismatch seen, and whether the log went backwards.
    let mut loading: Option<(Option<&str>, bool)> = None;
    for l in log.lines() {
        if kind == Kind::ZooKeeper {
            if l.contains("Disconnected from leader") {
                shutting_down = true;
            } else if l.contains("LEADER ELECTION TOOK") {
                shutting_down = false;
            } else if l.contains("Reading snapshot") {
                loading = Some((None, false));
            } else if l.contains("Snapshot loaded") {
                if let Some((Some(first), false)) = loading {
                    return Some(first.to_owned());
                }
                loading = None;
            }
        }
        let mismatch = needles.iter().any(|n| l.contains(n));
        if let Some((first, backwards)) = &mut loading {
            *backwards |= l.contains("(highestZxid) >") && l.contains("(next log)");
            if mismatch && first.is_none() {
                *first = Some(l);
            }
            continue;
        }
        if !shutting_down && mismatch {
            return Some(l.to_owned());
        }
    }
    loading.and_then(|(first, _)| first).map(str::to_owned)
}

/// Asserts that no server logged a digest mismatch: each checks the digest the leader sent
/// with every txn against its own tree (ZooKeeper's `digest.enabled`, on by default).
pub fn assert_no_digest_mismatch(e: &Ensemble) {
    for s in &e.servers {
        if let Some(line) = digest_mismatch_in(s.kind, &s.log()) {
            panic!("server {} ({:?}) logged a digest mismatch: {line}", s.id, s.kind);
        }
    }
}

/// Whether Apache ZooKeeper is installed (the mixed-ensemble tests skip, saying so, if not).
pub fn zookeeper_installed() -> bool {
    let jar = ZK_CLASSPATH.split(':').next().unwrap();
    let ok = std::path::Path::new(jar).exists()
        && Command::new("java").arg("-version").output().is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIPPED: Apache ZooKeeper 3.8 ({jar}) or java is not installed; ci/test.sh installs them");
    }
    ok
}

// ---------------------------------------------------------------------------------------------
// Dynamic reconfiguration

/// A super user (`super:test`) may write /zookeeper/config.
pub const RECONFIG_EXTRA: &str = "reconfigEnabled=true\n\
    DigestAuthenticationProvider.superDigest=super:D/InIHSb7yEEbrWz8b9l71RjZJU=\n";

/// The `server.N=...` line of each server, as it configured itself (before any reconfig).
pub fn server_lines(e: &Ensemble) -> Vec<String> {
    e.servers
        .iter()
        .map(|s| {
            // Activating the first membership rewrote zoo.cfg; the original is kept.
            let bak = s.dir.join("zoo.cfg.bak");
            let file = if bak.exists() { bak } else { s.dir.join("zoo.cfg") };
            let cfg = std::fs::read_to_string(file).unwrap();
            let key = format!("server.{}=", s.id);
            cfg.lines().find(|l| l.starts_with(&key)).expect("a server line").to_owned()
        })
        .collect()
}

/// Runs a reconfig through `addr` as the super user.
pub async fn reconfig(
    addr: &str,
    joining: &[&str],
    leaving: &[&str],
    from: Option<i64>,
) -> Result<(Vec<u8>, zk::Stat), zk::Error> {
    let c = connect(addr, Duration::from_secs(20)).await;
    c.auth("digest".into(), b"super:test".to_vec()).await.unwrap();
    let update = zk::EnsembleUpdate::Incremental {
        joinings: joining.iter().copied(),
        leavings: leaving.iter().copied(),
    };
    c.update_ensemble(update, from).await
}

/// Runs a non-incremental reconfig (the whole new membership) through `addr` as the super
/// user.
pub async fn reconfig_members(
    addr: &str,
    members: &[&str],
) -> Result<(Vec<u8>, zk::Stat), zk::Error> {
    let c = connect(addr, Duration::from_secs(20)).await;
    c.auth("digest".into(), b"super:test".to_vec()).await.unwrap();
    c.update_ensemble(zk::EnsembleUpdate::New { ensemble: members.iter().copied() }, None).await
}

/// `/zookeeper/config` as server `addr` has it after a sync.
pub async fn config_at(addr: &str) -> Vec<u8> {
    let c = connect(addr, Duration::from_secs(20)).await;
    c.sync("/zookeeper/config").await.unwrap();
    c.get_data("/zookeeper/config").await.unwrap().0
}

/// The version at the end of a membership text.
pub fn version_of(text: &[u8]) -> i64 {
    let t = String::from_utf8_lossy(text);
    let v = t.lines().last().and_then(|l| l.strip_prefix("version=")).expect("a version line");
    i64::from_str_radix(v, 16).unwrap()
}

/// Waits (bounded) until every running server's `/zookeeper/config` is `want`.
pub fn wait_for_config(e: &Ensemble, rt: &tokio::runtime::Runtime, want: &[u8]) {
    for s in e.servers.iter().filter(|s| s.child.is_some()) {
        wait_until(
            &format!("server {} has the new membership", s.id),
            Duration::from_secs(30),
            || rt.block_on(config_at(&s.addr())) == want,
        );
    }
}
