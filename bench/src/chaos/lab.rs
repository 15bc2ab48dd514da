//! The machine-level lab `corral-bench chaos` runs an ensemble in: every server in a network
//! namespace of its own (address `10.77.0.<id>`, a veth into a bridge), its data on a small ext4
//! filesystem of its own (a loop-mounted image), and the tool's clients in a hub namespace
//! holding the bridge (10.77.0.254). Nothing touches the host's own network or disks beyond
//! the directory given; everything is removed when the lab is dropped.
//!
//! Faults are made with the kernel, never by asking a server: SIGKILL / SIGSTOP / SIGCONT to
//! the server's PID; nftables rules in a server's namespace (dropping packets to or from other
//! servers' addresses) for partitions, whole or one-way; `fsfreeze` of a server's filesystem
//! for fsync stalls (writes and flushes block until thawed); a ballast file filling the
//! filesystem for disk full.

use std::fs;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::servers::{four_letter, Kind};

/// The client port every server listens on (each in its own namespace).
pub const CLIENT_PORT: u16 = 2181;

/// Runs a command, failing with its stderr when it fails.
pub fn run(cmd: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd}"))?;
    if !out.status.success() {
        bail!(
            "{cmd} {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn run_stdin(cmd: &str, args: &[&str], input: &str) -> Result<()> {
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {cmd}"))?;
    child.stdin.take().expect("piped").write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("{cmd} {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// How the servers are started.
#[derive(Debug, Clone)]
pub struct LabSpec {
    /// Parent directory of the lab (images, mounts, configs, logs).
    pub dir: PathBuf,
    /// The `corral` binary (absolute).
    pub corral_bin: PathBuf,
    /// Java class path of Apache ZooKeeper 3.8.
    pub zk_classpath: String,
    /// Each server's kind, in id order (ids from 1).
    pub kinds: Vec<Kind>,
    /// tickTime, ms.
    pub tick_ms: u32,
    /// Size of each server's filesystem, MiB.
    pub disk_mib: u32,
    /// Extra zoo.cfg lines for corral servers (e.g. test-only keys).
    pub corral_extra: String,
    /// RUST_LOG of the corral servers.
    pub corral_log: String,
}

/// One server of the lab.
pub struct Node {
    /// Its id (myid), from 1.
    pub id: u32,
    /// Corral or ZooKeeper.
    pub kind: Kind,
    /// Its network namespace.
    pub ns: String,
    /// Its address.
    pub ip: Ipv4Addr,
    home: PathBuf,
    mnt: PathBuf,
    mounted: bool,
    child: Option<Child>,
    /// The PID of the running server.
    pub pid: Option<u32>,
    /// Stopped by SIGSTOP.
    pub paused: bool,
    /// Its filesystem is frozen.
    pub frozen: bool,
    /// A ballast file fills its filesystem.
    pub filled: bool,
    /// The server exited by itself (and how), seen at the last [`Lab::reap`].
    pub exited: Option<String>,
}

impl Node {
    /// Its client address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, CLIENT_PORT))
    }
    fn data(&self) -> PathBuf {
        self.mnt.join("data")
    }
    /// Its server log.
    pub fn log_path(&self) -> PathBuf {
        self.home.join("server.log")
    }
}

/// The lab: namespaces, filesystems and server processes.
pub struct Lab {
    spec: LabSpec,
    hub: String,
    /// The servers, id order.
    pub nodes: Vec<Node>,
    /// Namespaces created (removed on drop).
    namespaces: Vec<String>,
}

fn ip_of(id: u32) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 0, id as u8)
}

impl Lab {
    /// Creates namespaces, bridge, veths and filesystems, and moves this process's network
    /// into the hub namespace. Call before any thread that opens sockets is started (threads
    /// created later inherit the namespace).
    pub fn create(spec: LabSpec) -> Result<Lab> {
        if unsafe { libc::geteuid() } != 0 {
            bail!(
                "chaos needs root: it creates network namespaces, nftables rules and loop mounts"
            );
        }
        let tag = format!("cx{}", std::process::id());
        let hub = format!("{tag}-hub");
        let mut lab =
            Lab { spec: spec.clone(), hub: hub.clone(), nodes: Vec::new(), namespaces: Vec::new() };
        fs::create_dir_all(&spec.dir)?;
        run("ip", &["netns", "add", &hub])?;
        lab.namespaces.push(hub.clone());
        run("ip", &["-n", &hub, "link", "set", "lo", "up"])?;
        run("ip", &["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        run("ip", &["-n", &hub, "addr", "add", "10.77.0.254/24", "dev", "br0"])?;
        run("ip", &["-n", &hub, "link", "set", "br0", "up"])?;
        for (i, kind) in spec.kinds.iter().enumerate() {
            let id = i as u32 + 1;
            let ns = format!("{tag}-n{id}");
            run("ip", &["netns", "add", &ns])?;
            lab.namespaces.push(ns.clone());
            let veth = format!("v{id}");
            run(
                "ip",
                &[
                    "-n", &hub, "link", "add", &veth, "type", "veth", "peer", "name", "eth0",
                    "netns", &ns,
                ],
            )?;
            run("ip", &["-n", &hub, "link", "set", &veth, "master", "br0"])?;
            run("ip", &["-n", &hub, "link", "set", &veth, "up"])?;
            run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
            let cidr = format!("{}/24", ip_of(id));
            run("ip", &["-n", &ns, "addr", "add", &cidr, "dev", "eth0"])?;
            run("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
            let home = spec.dir.join(format!("n{id}"));
            if home.exists() {
                fs::remove_dir_all(&home)?;
            }
            fs::create_dir_all(&home)?;
            let image = home.join("disk.img");
            let mnt = home.join("mnt");
            fs::create_dir_all(&mnt)?;
            run("truncate", &["-s", &format!("{}M", spec.disk_mib), &image.to_string_lossy()])?;
            run("mkfs.ext4", &["-q", "-F", &image.to_string_lossy()])?;
            run("mount", &["-o", "loop", &image.to_string_lossy(), &mnt.to_string_lossy()])?;
            lab.nodes.push(Node {
                id,
                kind: *kind,
                ns,
                ip: ip_of(id),
                home,
                mnt,
                mounted: true,
                child: None,
                pid: None,
                paused: false,
                frozen: false,
                filled: false,
                exited: None,
            });
            lab.write_config(i)?;
        }
        // This process joins the hub: its clients reach every server over the bridge.
        let f = fs::File::open(format!("/run/netns/{hub}"))?;
        // SAFETY: setns on a namespace file this process opened; affects this thread only.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns into {hub}: {}", std::io::Error::last_os_error());
        }
        Ok(lab)
    }

    fn zoo_cfg(&self, i: usize) -> String {
        let n = &self.nodes[i];
        let mut t = format!(
            "# written by corral-bench chaos\n\
             tickTime={tick}\ninitLimit=10\nsyncLimit=5\n\
             dataDir={data}\nclientPort={CLIENT_PORT}\n\
             forceSync=yes\nmaxClientCnxns=0\n4lw.commands.whitelist=*\n\
             admin.enableServer=false\nautopurge.purgeInterval=0\n\
             snapCount=2000\npreAllocSize=8192\n",
            tick = self.spec.tick_ms,
            data = n.data().display(),
        );
        for j in 0..self.spec.kinds.len() as u32 {
            t.push_str(&format!("server.{}={}:2888:3888:participant\n", j + 1, ip_of(j + 1)));
        }
        if n.kind == Kind::Corral {
            t.push_str(&self.spec.corral_extra);
        }
        t
    }

    fn write_config(&self, i: usize) -> Result<()> {
        let n = &self.nodes[i];
        fs::create_dir_all(n.data())?;
        fs::write(n.data().join("myid"), format!("{}\n", n.id))?;
        fs::write(n.home.join("zoo.cfg"), self.zoo_cfg(i))?;
        Ok(())
    }

    /// Starts server `i` (index) in its namespace, if it is not running.
    pub fn start(&mut self, i: usize) -> Result<()> {
        if self.nodes[i].child.is_some() {
            return Ok(());
        }
        let n = &self.nodes[i];
        let log = fs::OpenOptions::new().create(true).append(true).open(n.log_path())?;
        writeln!(&log, "=== corral-bench chaos: starting {} {} ===", n.kind.name(), n.id)?;
        let cfg = n.home.join("zoo.cfg");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &n.ns]);
        match n.kind {
            Kind::Corral => {
                cmd.arg(&self.spec.corral_bin).arg(&cfg).env("RUST_LOG", &self.spec.corral_log);
            }
            Kind::ZooKeeper => {
                cmd.args(["java", "-Xmx512m", "-cp", &self.spec.zk_classpath])
                    .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
                    .arg(&cfg);
            }
        }
        cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).current_dir(&n.home);
        let child = cmd.spawn().context("starting a server")?;
        let n = &mut self.nodes[i];
        n.pid = Some(child.id());
        n.child = Some(child);
        n.exited = None;
        Ok(())
    }

    /// Notes servers that exited by themselves (a storage failure, a crash).
    pub fn reap(&mut self) {
        for n in &mut self.nodes {
            if let Some(c) = n.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    n.exited = Some(status.to_string());
                    n.child = None;
                    n.pid = None;
                    n.paused = false;
                }
            }
        }
    }

    /// SIGKILL.
    pub fn kill(&mut self, i: usize) -> Result<()> {
        let n = &mut self.nodes[i];
        if n.frozen {
            bail!("refusing to kill a server whose filesystem is frozen");
        }
        if let Some(mut c) = n.child.take() {
            c.kill()?;
            c.wait()?;
        }
        n.pid = None;
        n.paused = false;
        Ok(())
    }

    fn signal(&mut self, i: usize, sig: libc::c_int) -> Result<()> {
        if let Some(pid) = self.nodes[i].pid {
            // SAFETY: signalling a child this process spawned and has not reaped.
            if unsafe { libc::kill(pid as libc::pid_t, sig) } != 0 {
                bail!("kill({pid}, {sig}): {}", std::io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// SIGSTOP.
    pub fn pause(&mut self, i: usize) -> Result<()> {
        self.signal(i, libc::SIGSTOP)?;
        self.nodes[i].paused = self.nodes[i].pid.is_some();
        Ok(())
    }

    /// SIGCONT.
    pub fn resume(&mut self, i: usize) -> Result<()> {
        if self.nodes[i].paused {
            self.signal(i, libc::SIGCONT)?;
            self.nodes[i].paused = false;
        }
        Ok(())
    }

    /// Kills server `i`, empties its data directory (keeping myid) and starts it again.
    pub fn wipe(&mut self, i: usize) -> Result<()> {
        self.kill(i)?;
        let data = self.nodes[i].data();
        fs::remove_dir_all(&data)?;
        self.write_config(i)?;
        self.start(i)
    }

    /// Drops every packet between the servers of each directed pair (from, to) (indices):
    /// `from` cannot reach `to`. Replaces any earlier partition.
    pub fn partition(&mut self, blocked: &[(usize, usize)]) -> Result<()> {
        self.heal_network()?;
        for (i, n) in self.nodes.iter().enumerate() {
            let to: Vec<String> = blocked
                .iter()
                .filter(|b| b.0 == i)
                .map(|b| ip_of(b.1 as u32 + 1).to_string())
                .collect();
            let from: Vec<String> = blocked
                .iter()
                .filter(|b| b.1 == i)
                .map(|b| ip_of(b.0 as u32 + 1).to_string())
                .collect();
            if to.is_empty() && from.is_empty() {
                continue;
            }
            let mut script = String::from("table inet chaos {\n");
            script.push_str(
                "  chain out {\n    type filter hook output priority 0; policy accept;\n",
            );
            if !to.is_empty() {
                script.push_str(&format!("    ip daddr {{ {} }} drop\n", to.join(", ")));
            }
            script.push_str(
                "  }\n  chain in {\n    type filter hook input priority 0; policy accept;\n",
            );
            if !from.is_empty() {
                script.push_str(&format!("    ip saddr {{ {} }} drop\n", from.join(", ")));
            }
            script.push_str("  }\n}\n");
            run_stdin("ip", &["netns", "exec", &n.ns, "nft", "-f", "-"], &script)?;
        }
        Ok(())
    }

    /// Removes every partition rule.
    pub fn heal_network(&mut self) -> Result<()> {
        for n in &self.nodes {
            let rules = run("ip", &["netns", "exec", &n.ns, "nft", "list", "tables"])?;
            if rules.contains("inet chaos") {
                run("ip", &["netns", "exec", &n.ns, "nft", "delete", "table", "inet", "chaos"])?;
            }
        }
        Ok(())
    }

    /// Freezes server `i`'s filesystem: its writes and flushes block until [`Lab::thaw`].
    pub fn freeze(&mut self, i: usize) -> Result<()> {
        run("fsfreeze", &["--freeze", &self.nodes[i].mnt.to_string_lossy()])?;
        self.nodes[i].frozen = true;
        Ok(())
    }

    /// Thaws a frozen filesystem.
    pub fn thaw(&mut self, i: usize) -> Result<()> {
        if self.nodes[i].frozen {
            run("fsfreeze", &["--unfreeze", &self.nodes[i].mnt.to_string_lossy()])?;
            self.nodes[i].frozen = false;
        }
        Ok(())
    }

    /// Fills server `i`'s filesystem with a ballast file (all but a few KiB).
    pub fn fill(&mut self, i: usize) -> Result<()> {
        let mnt = self.nodes[i].mnt.clone();
        let avail = run("df", &["--output=avail", "-B1", &mnt.to_string_lossy()])?;
        let bytes: u64 = avail.lines().nth(1).unwrap_or("0").trim().parse().unwrap_or(0);
        let ballast = mnt.join("ballast");
        if bytes > 8192 {
            run("fallocate", &["-l", &(bytes - 4096).to_string(), &ballast.to_string_lossy()])?;
        }
        // Whatever is left, fill with a second file until the kernel says ENOSPC.
        let mut f = fs::OpenOptions::new().create(true).append(true).open(mnt.join("ballast2"))?;
        let block = vec![0u8; 4096];
        while f.write_all(&block).is_ok() {}
        self.nodes[i].filled = true;
        Ok(())
    }

    /// Removes the ballast.
    pub fn unfill(&mut self, i: usize) -> Result<()> {
        if self.nodes[i].filled {
            let mnt = self.nodes[i].mnt.clone();
            let _ = fs::remove_file(mnt.join("ballast"));
            let _ = fs::remove_file(mnt.join("ballast2"));
            self.nodes[i].filled = false;
        }
        Ok(())
    }

    /// Undoes every fault: thaws, removes ballast and partitions, resumes paused servers and
    /// starts servers that are down.
    pub fn heal_all(&mut self) -> Result<()> {
        for i in 0..self.nodes.len() {
            self.thaw(i)?;
            self.unfill(i)?;
        }
        self.heal_network()?;
        self.reap();
        for i in 0..self.nodes.len() {
            self.resume(i)?;
            self.start(i)?;
        }
        Ok(())
    }

    /// `srvr`'s Mode of each server ("" when it does not answer).
    pub fn modes(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| {
                if n.child.is_none() || n.paused {
                    return String::new();
                }
                four_letter(n.addr(), "srvr")
                    .ok()
                    .and_then(|t| {
                        t.lines().find_map(|l| l.strip_prefix("Mode: ")).map(str::to_owned)
                    })
                    .unwrap_or_default()
            })
            .collect()
    }

    /// The index of the leader, when exactly one server says it leads.
    pub fn leader(&self) -> Option<usize> {
        let m = self.modes();
        let leaders: Vec<usize> = (0..m.len()).filter(|&i| m[i] == "leader").collect();
        (leaders.len() == 1).then(|| leaders[0])
    }

    /// Waits (bounded) until every server runs and serves, one leading; returns the wait.
    pub fn wait_formed(&mut self, within: Duration) -> Result<Duration> {
        let t0 = Instant::now();
        loop {
            self.reap();
            let m = self.modes();
            let leaders = m.iter().filter(|x| *x == "leader").count();
            if leaders == 1 && m.iter().all(|x| x == "leader" || x == "follower" || x == "observer")
            {
                return Ok(t0.elapsed());
            }
            if t0.elapsed() > within {
                bail!("the ensemble did not re-form within {within:?}: modes {m:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Keeps the servers' logs: copies them under `to`.
    pub fn save_logs(&self, to: &Path) -> Result<()> {
        fs::create_dir_all(to)?;
        for n in &self.nodes {
            let _ =
                fs::copy(n.log_path(), to.join(format!("server-{}-{}.log", n.id, n.kind.name())));
        }
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            let _ = self.thaw(i);
            let _ = self.resume(i);
            let _ = self.kill(i);
        }
        for n in &mut self.nodes {
            if n.mounted {
                for _ in 0..20 {
                    if run("umount", &[&n.mnt.to_string_lossy()]).is_ok() {
                        n.mounted = false;
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                let _ = fs::remove_file(n.home.join("disk.img"));
            }
        }
        for ns in self.namespaces.iter().rev() {
            let _ = run("ip", &["netns", "del", ns]);
        }
        let _ = &self.hub;
    }
}
