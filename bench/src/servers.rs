//! The server processes `corral-bench compare` measures: Apache ZooKeeper 3.8 (Debian's
//! `zookeeper` package, `QuorumPeerMain` in a JVM) and corral, each started from the same
//! zoo.cfg in a fresh data directory, pinned to one core with `taskset`, watched through
//! `/proc/<pid>` (CPU seconds, RSS), and stopped by its PID (SIGTERM, then SIGKILL).
//!
//! Only processes this module spawned are ever signalled, and only loopback addresses are used.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::zk::{self, Session};

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// corral (this repository's `corral` binary).
    Corral,
    /// Apache ZooKeeper 3.8.
    ZooKeeper,
}

impl Kind {
    /// The name used in tables, JSON and directory names.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Corral => "corral",
            Kind::ZooKeeper => "zookeeper",
        }
    }
}

/// How to start either server.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    /// The `corral` binary.
    pub corral_bin: PathBuf,
    /// Java class path holding ZooKeeper and an slf4j binding.
    pub zk_classpath: String,
    /// JVM options for ZooKeeper (split on whitespace).
    pub zk_jvm_opts: String,
    /// snapCount for both.
    pub snap_count: u64,
    /// The core the server is pinned to.
    pub core: usize,
    /// Parent of the servers' directories.
    pub dir: PathBuf,
    /// Client port of ZooKeeper; corral's is this + 1.
    pub port: u16,
    /// With TLS: the directory of the key material (server/src/tls/testdata): both servers
    /// take TLS clients on their client port (`client.portUnification`, ZooKeeper on Netty,
    /// JKS stores, client certificates required).
    pub tls_dir: Option<PathBuf>,
    /// zoo.cfg settings for both servers that replace (or add to) the common ones, e.g.
    /// `forceSync=no`, `preAllocSize=1048576`.
    pub extra_cfg: Vec<(String, String)>,
}

/// Parses `KEY=VALUE` settings given on the command line for [`ServerSpec::extra_cfg`].
pub fn parse_cfg(settings: &[String]) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for s in settings {
        let Some((k, v)) = s.split_once('=') else { bail!("--cfg {s:?}: expected KEY=VALUE") };
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty()
            || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
            || v.chars().any(|c| c.is_control())
        {
            bail!("--cfg {s:?}: a key of letters, digits, '.' and '_', a value on one line");
        }
        if ["dataDir", "dataLogDir", "clientPort", "clientPortAddress"].contains(&k) {
            bail!("--cfg {k}: set by corral-bench itself");
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

impl ServerSpec {
    /// The directory of one server: its zoo.cfg, its stdout/stderr, and its `data/`.
    pub fn home(&self, kind: Kind) -> PathBuf {
        self.dir.join(format!("corral-bench-{}", kind.name()))
    }

    /// The loopback address a server listens on.
    pub fn addr(&self, kind: Kind) -> SocketAddr {
        let port = match kind {
            Kind::ZooKeeper => self.port,
            Kind::Corral => self.port + 1,
        };
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// The equivalent zoo.cfg both servers read.
    pub fn zoo_cfg(&self, kind: Kind) -> String {
        let home = self.home(kind);
        let addr = self.addr(kind);
        let base = format!(
            "# written by corral-bench compare; the same settings for both servers\n\
             tickTime=2000\n\
             dataDir={data}\n\
             clientPort={port}\n\
             clientPortAddress=127.0.0.1\n\
             snapCount={snap}\n\
             forceSync=yes\n\
             maxClientCnxns=0\n\
             4lw.commands.whitelist=*\n\
             admin.enableServer=false\n\
             autopurge.purgeInterval=0\n",
            data = home.join("data").display(),
            port = addr.port(),
            snap = self.snap_count,
        ) + &self.tls_cfg();
        self.with_extra(base)
    }

    /// `cfg` with [`ServerSpec::extra_cfg`] applied: a key it names loses its line in `cfg`,
    /// and every setting is appended.
    pub fn with_extra(&self, cfg: String) -> String {
        if self.extra_cfg.is_empty() {
            return cfg;
        }
        let mut out: String = cfg
            .lines()
            .filter(|l| {
                let key = l.split_once('=').map(|(k, _)| k.trim());
                !self.extra_cfg.iter().any(|(k, _)| Some(k.as_str()) == key)
            })
            .map(|l| format!("{l}\n"))
            .collect();
        out.push_str("# --cfg\n");
        for (k, v) in &self.extra_cfg {
            out.push_str(&format!("{k}={v}\n"));
        }
        out
    }

    /// The TLS lines of both zoo.cfg files, if TLS is on.
    fn tls_cfg(&self) -> String {
        let Some(d) = &self.tls_dir else { return String::new() };
        format!(
            "serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory\n\
             client.portUnification=true\n\
             authProvider.x509=org.apache.zookeeper.server.auth.X509AuthenticationProvider\n\
             ssl.keyStore.location={ks}\n\
             ssl.keyStore.password=apassword\n\
             ssl.trustStore.location={ts}\n\
             ssl.trustStore.password=apassword\n",
            ks = d.join("keystore.jks").display(),
            ts = d.join("truststore.jks").display(),
        )
    }

    /// ZooKeeper's class path: with TLS, the Netty jars its TLS needs are added.
    fn zk_classpath(&self) -> String {
        if self.tls_dir.is_none() {
            return self.zk_classpath.clone();
        }
        let netty = [
            "buffer",
            "codec",
            "common",
            "handler",
            "resolver",
            "transport",
            "transport-native-unix-common",
            "transport-native-epoll",
        ]
        .map(|n| format!("/usr/share/java/netty-{n}.jar"))
        .join(":");
        format!("{}:{netty}", self.zk_classpath)
    }

    /// Removes a server's directory (only the one this tool names) and writes a fresh zoo.cfg.
    pub fn fresh(&self, kind: Kind) -> Result<()> {
        let home = self.home(kind);
        if home.exists() {
            fs::remove_dir_all(&home).with_context(|| format!("removing {}", home.display()))?;
            // Freeing gigabytes (a filesystem mounted with `discard` trims them at its next
            // journal commit) must not land in the next measurement: settle it first.
            let _ = std::process::Command::new("sync").status();
        }
        fs::create_dir_all(home.join("data"))?;
        fs::write(home.join("zoo.cfg"), self.zoo_cfg(kind))?;
        Ok(())
    }

    /// Removes both servers' directories.
    pub fn clean(&self) {
        for kind in [Kind::Corral, Kind::ZooKeeper] {
            let _ = fs::remove_dir_all(self.home(kind));
        }
    }

    /// Starts a server on its existing directory (see [`ServerSpec::fresh`]) and returns at
    /// once; [`Server::wait_ready`] waits until it serves.
    pub fn spawn(&self, kind: Kind) -> Result<Server> {
        self.spawn_in(kind, &self.home(kind), self.addr(kind), "warn")
    }

    /// Starts a server from `home`/zoo.cfg (its log in `home`/server.log), listening for
    /// clients on `addr`, logging at `log_level` (corral).
    pub fn spawn_in(
        &self,
        kind: Kind,
        home: &Path,
        addr: SocketAddr,
        log_level: &str,
    ) -> Result<Server> {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            bail!("something already listens on {addr}: refusing to measure a server this tool did not start");
        }
        let cfg = home.join("zoo.cfg");
        let log = fs::OpenOptions::new().create(true).append(true).open(home.join("server.log"))?;
        let mut cmd = Command::new("taskset");
        cmd.arg("-c").arg(self.core.to_string());
        match kind {
            Kind::Corral => {
                cmd.arg(&self.corral_bin).arg(&cfg).env("RUST_LOG", log_level);
            }
            Kind::ZooKeeper => {
                cmd.arg("java");
                cmd.args(self.zk_jvm_opts.split_whitespace());
                cmd.arg("-cp")
                    .arg(self.zk_classpath())
                    .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
                    .arg(&cfg);
            }
        }
        cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).current_dir(home);
        let started = Instant::now();
        let child = cmd.spawn().with_context(|| format!("starting {}", kind.name()))?;
        Ok(Server {
            kind,
            pid: child.id(),
            child: Some(child),
            addr,
            home: home.to_owned(),
            started,
        })
    }
}

/// A running server this tool started.
pub struct Server {
    /// Which one.
    pub kind: Kind,
    /// Its process id (taskset execs the server, so this is the server itself).
    pub pid: u32,
    child: Option<Child>,
    /// Its client address.
    pub addr: SocketAddr,
    home: PathBuf,
    /// When it was spawned.
    pub started: Instant,
}

impl Server {
    /// The address as `host:port`.
    pub fn addr_string(&self) -> String {
        self.addr.to_string()
    }

    /// Its dataDir.
    pub fn data_dir(&self) -> PathBuf {
        self.home.join("data")
    }

    /// The directory its snapshots are written to.
    pub fn snap_dir(&self) -> PathBuf {
        match self.kind {
            Kind::ZooKeeper => self.data_dir().join("version-2"),
            Kind::Corral => self.data_dir().join("corral-v1").join("snap"),
        }
    }

    fn check_alive(&mut self) -> Result<()> {
        if let Some(child) = self.child.as_mut() {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                bail!(
                    "{} exited ({status}) — last lines of {}:\n{}",
                    self.kind.name(),
                    self.home.join("server.log").display(),
                    tail(&self.home.join("server.log"), 20)
                );
            }
        }
        Ok(())
    }

    /// Waits until the server answers `ruok` and serves a getData of `/` (bounded).
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<Duration> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_alive()?;
            if four_letter(self.addr, "ruok").is_ok_and(|r| r == "imok") {
                break;
            }
            if Instant::now() > deadline {
                bail!("{} did not answer ruok within {timeout:?}", self.kind.name());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        self.wait_first_read("/", left.max(Duration::from_secs(1)))
    }

    /// Time from spawn until a getData of `path` first succeeds (bounded).
    ///
    /// A probe (connect, handshake, getData) starts every 25 ms while earlier ones are still
    /// out, so a connection the starting server accepts but leaves hanging cannot hold the
    /// measurement back; the time is taken when the first successful reply arrives.
    pub fn wait_first_read(&mut self, path: &str, timeout: Duration) -> Result<Duration> {
        const PROBES_IN_FLIGHT_MAX: usize = 64;
        let deadline = Instant::now() + timeout;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let addr = self.addr_string();
        rt.block_on(async {
            let mut probes = tokio::task::JoinSet::new();
            let mut tick = tokio::time::interval(Duration::from_millis(25));
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        self.check_alive()?;
                        if Instant::now() > deadline {
                            bail!("{}: no successful getData {path} within {timeout:?}", self.kind.name());
                        }
                        if probes.len() < PROBES_IN_FLIGHT_MAX {
                            probes.spawn(probe_read(addr.clone(), path.to_string()));
                        }
                    }
                    Some(r) = probes.join_next(), if !probes.is_empty() => {
                        if let Ok(Some(at)) = r {
                            return Ok(at.saturating_duration_since(self.started));
                        }
                    }
                }
            }
        })
    }

    /// utime + stime of the server process (all its threads), seconds.
    pub fn cpu_seconds(&self) -> Result<f64> {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid))?;
        // The command name is in parentheses and may hold spaces: count fields after it.
        let rest = &stat[stat.rfind(')').context("bad /proc stat")? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        // Field 3 (state) is f[0]; utime is field 14, stime field 15.
        let utime: u64 = f.get(11).context("utime")?.parse()?;
        let stime: u64 = f.get(12).context("stime")?.parse()?;
        // SAFETY: sysconf has no preconditions.
        let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        Ok((utime + stime) as f64 / tick)
    }

    /// A field of `/proc/<pid>/status` in KiB (VmRSS, VmHWM).
    pub fn status_kib(&self, field: &str) -> Result<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        for line in status.lines() {
            if let Some(v) = line.strip_prefix(field).and_then(|v| v.strip_prefix(':')) {
                return Ok(v.trim().trim_end_matches("kB").trim().parse()?);
            }
        }
        bail!("no {field} in /proc/{}/status", self.pid)
    }

    /// Peak resident set (VmHWM), MiB.
    pub fn peak_rss_mib(&self) -> Result<f64> {
        Ok(self.status_kib("VmHWM")? as f64 / 1024.0)
    }

    /// Resident set now (VmRSS), MiB.
    pub fn rss_mib(&self) -> Result<f64> {
        Ok(self.status_kib("VmRSS")? as f64 / 1024.0)
    }

    /// A four-letter word's answer.
    pub fn four_letter(&self, word: &str) -> Result<String> {
        four_letter(self.addr, word)
    }

    /// The last zxid the server processed (from `srvr`).
    pub fn last_zxid(&self) -> Result<u64> {
        let srvr = self.four_letter("srvr")?;
        let hex = srvr
            .lines()
            .find_map(|l| l.strip_prefix("Zxid: 0x"))
            .with_context(|| format!("no Zxid in srvr: {srvr}"))?;
        Ok(u64::from_str_radix(hex.trim(), 16)?)
    }

    /// SIGKILL, as a machine fails: no shutdown of any kind.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Stops the server: SIGTERM, then SIGKILL after `grace`. Returns how long it took.
    pub fn stop(&mut self, grace: Duration) -> Result<Duration> {
        let t0 = Instant::now();
        let Some(mut child) = self.child.take() else { return Ok(Duration::ZERO) };
        if child.try_wait()?.is_none() {
            // SAFETY: signalling a child this process spawned and has not yet reaped.
            unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + grace;
            while child.try_wait()?.is_none() {
                if Instant::now() > deadline {
                    eprintln!("{} ignored SIGTERM for {grace:?}: SIGKILL", self.kind.name());
                    child.kill()?;
                    child.wait()?;
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(t0.elapsed())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One attempt to read `path`: the instant its successful reply arrived, if it did within 5 s.
async fn probe_read(addr: String, path: String) -> Option<Instant> {
    let attempt = async {
        let mut s = Session::connect(&addr, 30_000).await?;
        let r = s.call(&zk::get_data(path, false)).await?;
        // The session is dropped, not closed: closing would add a write to the measurement.
        anyhow::Ok((r.err == 0).then(Instant::now))
    };
    tokio::time::timeout(Duration::from_secs(5), attempt).await.ok()?.ok()?
}

/// Sends a four-letter word and reads the whole answer.
pub fn four_letter(addr: SocketAddr, word: &str) -> Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(word.as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// The newest `snapshot.<hex zxid>` in a directory: zxid, path. With `started`, also a
/// snapshot still being written under a temporary name (`snapshot.<hex>.tmp`, or corral's
/// `snapshot.<hex>.<n>.tmp`).
pub fn newest_snapshot(dir: &Path, started: bool) -> Option<(u64, PathBuf)> {
    let mut best: Option<(u64, PathBuf)> = None;
    for e in fs::read_dir(dir).ok()?.flatten() {
        let name = e.file_name();
        let Some(mut hex) = name.to_str().and_then(|n| n.strip_prefix("snapshot.")) else {
            continue;
        };
        if started {
            if let Some(t) = hex.strip_suffix(".tmp") {
                hex = t.split('.').next().unwrap_or(t);
            }
        }
        let Ok(zxid) = u64::from_str_radix(hex, 16) else { continue };
        if best.as_ref().is_none_or(|b| zxid > b.0) {
            best = Some((zxid, e.path()));
        }
    }
    best
}

/// Bytes of every file under a directory.
pub fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// CPU seconds (user + system) of this process so far, every thread included.
pub fn own_cpu_seconds() -> f64 {
    // SAFETY: a zeroed rusage is a valid out-parameter for getrusage.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Pins the calling thread (and every thread it starts afterwards) to one core.
pub fn pin_this_thread(core: usize) -> Result<()> {
    if core >= libc::CPU_SETSIZE as usize {
        bail!("core {core} out of range");
    }
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET stays in bounds (checked above);
    // sched_setaffinity reads exactly size_of::<cpu_set_t>() bytes.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        bail!("sched_setaffinity(core {core}): {}", std::io::Error::last_os_error());
    }
    Ok(())
}
