//! Three corral servers as an ensemble on loopback, in this process, each configured by a
//! zoo.cfg with `server.N` lines and a `myid` file as ZooKeeper's are: they elect a leader
//! over the election transport, sync over the quorum transport, and serve the Rust
//! `zookeeper-client` crate on every server: a write through any server is read through the
//! others after a sync; a server stopped and started again catches up.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use corral_server::config::Config;
use corral_server::server::{RunningServer, ServerOptions};
use zookeeper_client as zk;

/// Ports nothing listens on now (bound, read, released).
fn free_ports(n: usize) -> Vec<u16> {
    let ls: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    ls.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

struct Member {
    dir: std::path::PathBuf,
    server: Option<RunningServer>,
}

fn config_text(dir: &Path, client: u16, servers: &[(u16, u16, u16)], extra: &str) -> String {
    let mut t = format!(
        "tickTime=100\ninitLimit=20\nsyncLimit=10\ndataDir={}\nclientPort={client}\n\
         clientPortAddress=127.0.0.1\ncnxTimeout=1000\n{extra}",
        dir.display()
    );
    for (i, (q, e, c)) in servers.iter().enumerate() {
        t.push_str(&format!("server.{}=127.0.0.1:{q}:{e};127.0.0.1:{c}\n", i + 1));
    }
    t
}

fn start(dir: &Path) -> RunningServer {
    let config = Config::load(&dir.join("zoo.cfg")).expect("zoo.cfg");
    let opts = ServerOptions::from_config(&config).expect("options");
    assert!(opts.ensemble.is_some(), "server.N lines make an ensemble member");
    RunningServer::start(opts).expect("starts")
}

fn ensemble(n: usize, root: &Path, extra: &str) -> Vec<Member> {
    let ports = free_ports(3 * n);
    let servers: Vec<(u16, u16, u16)> =
        (0..n).map(|i| (ports[3 * i], ports[3 * i + 1], ports[3 * i + 2])).collect();
    (0..n)
        .map(|i| {
            let dir = root.join(format!("s{}", i + 1));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("myid"), format!("{}\n", i + 1)).unwrap();
            std::fs::write(dir.join("zoo.cfg"), config_text(&dir, servers[i].2, &servers, extra))
                .unwrap();
            Member { server: Some(start(&dir)), dir }
        })
        .collect()
}

/// Starts `server`'s AdminServer on a free loopback port.
fn admin_on(server: &RunningServer) -> std::net::SocketAddr {
    server
        .start_admin_server(corral_server::net::admin_http::AdminHttpOptions {
            bind: "127.0.0.1:0".parse().unwrap(),
            command_url: "/commands".into(),
            idle_timeout: Duration::from_secs(5),
            tls: None,
        })
        .unwrap()
}

/// `GET /commands/<name>` on an AdminServer, as JSON.
fn admin_get(addr: std::net::SocketAddr, name: &str) -> serde_json::Value {
    let (_, _, body) = common::http::get(addr, &format!("/commands/{name}"), None);
    serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{name}: {e}: {}", String::from_utf8_lossy(&body)))
}

/// ZooKeeper 3.8.0's answer in `role` (tests/data/zk-3.8.0-admin).
fn admin_fixture(role: &str, name: &str) -> serde_json::Value {
    let path =
        format!("{}/tests/data/zk-3.8.0-admin/{role}/{name}.txt", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(&text[text.find("\r\n\r\n").unwrap() + 4..]).unwrap()
}

fn json_keys(v: &serde_json::Value) -> std::collections::BTreeSet<String> {
    v.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn open() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())
}

/// Connects to `addr` once its server serves (it refuses sessions until it has a leader).
async fn connect(addr: &str) -> zk::Client {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut connector = zk::Client::connector();
        connector
            .session_timeout(Duration::from_secs(6))
            .connection_timeout(Duration::from_millis(500));
        match tokio::time::timeout(Duration::from_secs(2), connector.connect(addr)).await {
            Ok(Ok(c)) => return c,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!("no session from {addr} within 20 s: {:?}", other.map(|r| r.err())),
        }
    }
}

/// A four-letter word's answer ("" if the server does not answer).
fn four(addr: &str, word: &[u8; 4]) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else { return String::new() };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(word).is_err() {
        return String::new();
    }
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text
}

/// The `Mode:` line of a server's `srvr` answer ("" if it has none: not serving).
fn mode(addr: &str) -> String {
    let text = four(addr, b"srvr");
    text.lines().find_map(|l| l.strip_prefix("Mode: ")).map(str::to_owned).unwrap_or_default()
}

/// Waits (bounded) until `addr`'s `srvr` mode is one of `want`.
fn wait_mode(addr: &str, want: &[&str], within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let m = mode(addr);
        if want.contains(&m.as_str()) {
            return m;
        }
        assert!(Instant::now() < deadline, "{addr}: mode {m:?}, not one of {want:?} in {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn three_servers_elect_replicate_and_catch_up() {
    let t0 = Instant::now();
    let phase = |what: &str| eprintln!("{:>7.2?} {what}", t0.elapsed());
    let root = tempfile::tempdir().unwrap();
    let mut members = ensemble(3, root.path(), "");
    phase("started");
    let addrs: Vec<String> =
        members.iter().map(|m| m.server.as_ref().unwrap().addr().to_string()).collect();
    runtime().block_on(async {
        let c1 = connect(&addrs[0]).await;
        c1.create("/e", b"one", &open()).await.unwrap();
        for (i, a) in addrs.iter().enumerate() {
            let c = connect(a).await;
            c.sync("/e").await.unwrap();
            let (data, _) = c.get_data("/e").await.unwrap();
            assert_eq!(data, b"one", "server {} after sync", i + 1);
        }
        // Writes through a follower and the leader alike.
        let c3 = connect(&addrs[2]).await;
        for i in 0..50 {
            c3.create(&format!("/e/{i}"), b"", &open()).await.unwrap();
        }
        c1.sync("/e").await.unwrap();
        let (children, _) = c1.get_children("/e").await.unwrap();
        assert_eq!(children.len(), 50);
    });
    phase("replicated");
    // srvr says who leads: one leader, two followers.
    let mut modes: Vec<String> = addrs.iter().map(|a| mode(a)).collect();
    modes.sort();
    assert_eq!(modes, ["follower", "follower", "leader"], "srvr modes");
    // The AdminServer's quorum commands answer with ZooKeeper's keys in each role.
    for (i, m) in members.iter().enumerate() {
        let server = m.server.as_ref().unwrap();
        let admin = admin_on(server);
        let role = mode(&addrs[i]);
        let leads = role == "leader";
        for name in ["leader", "zabstate", "voting_view", "server_stats", "observers"] {
            let ours = admin_get(admin, name);
            let zk = admin_fixture(&role, name);
            assert_eq!(json_keys(&ours), json_keys(&zk), "{role} {name}: {ours}");
            assert_eq!(ours["error"], serde_json::Value::Null, "{role} {name}");
        }
        let lead = admin_get(admin, "leader");
        assert_eq!(lead["is_leader"], leads);
        assert_eq!(lead["leader_ip"], "127.0.0.1");
        let zab = admin_get(admin, "zabstate");
        assert_eq!(zab["myid"], i as u64 + 1);
        assert_eq!(zab["zabstate"], "broadcast", "{zab}");
        assert_eq!(
            json_keys(&zab["quorum_address"]),
            json_keys(&admin_fixture(&role, "zabstate")["quorum_address"])
        );
        let view = admin_get(admin, "voting_view");
        assert_eq!(view["current_config"].as_object().unwrap().len(), 3);
        assert_eq!(
            json_keys(&view["current_config"]["1"]),
            json_keys(&admin_fixture(&role, "voting_view")["current_config"]["1"])
        );
        let srvr = admin_get(admin, "server_stats");
        assert_eq!(srvr["server_stats"]["server_state"], role.as_str());
        assert_eq!(
            json_keys(&srvr["server_stats"]),
            json_keys(&admin_fixture(&role, "server_stats")["server_stats"])
        );
        // restore is a standalone server's: a member refuses it (nothing changes).
        let snapshot = common::http::get(admin, "/commands/snapshot", Some("ip")).2;
        assert!(!snapshot.is_empty());
        let auth = [("Authorization", "ip")];
        let (status, _, _) =
            common::http::request(admin, "POST", "/commands/restore", &auth, &snapshot);
        assert_eq!(status, 500, "{role}: restore in an ensemble");
        let mntr = admin_get(admin, "monitor");
        assert_eq!(
            mntr["peer_state"],
            format!("{} - broadcast", if leads { "leading" } else { "following" })
        );
        // ZooKeeper's quorum metrics: each began LOOKING, was elected or found a leader, and
        // became available; the leader proposed, committed and synced its followers, which
        // received what it proposed (51 creates, a createSession per client at least).
        let int = |k: &str| mntr[k].as_i64().unwrap_or_else(|| panic!("{role} {k}: {mntr}"));
        assert!(int("looking_count") >= 1, "{role}");
        for k in ["cnt_election_time", "cnt_unavailable_time"] {
            assert!(int(k) >= 1, "{role} {k}");
        }
        if leads {
            assert!(int("proposal_count") >= 51 && int("commit_count") >= 51, "{mntr}");
            assert!(int("diff_count") + int("snap_count") >= 2, "two followers synced: {mntr}");
            assert!(int("cnt_leader_unavailable_time") >= 1);
            assert_eq!(int("learner_proposal_received_count"), 0);
        } else {
            assert!(int("learner_proposal_received_count") >= 51, "{mntr}");
            assert!(int("learner_commit_received_count") >= 51, "{mntr}");
            assert!(int("cnt_follower_sync_time") >= 1);
            assert_eq!((int("proposal_count"), int("cnt_leader_unavailable_time")), (0, 0));
        }
    }
    phase("admin commands checked");
    // Server 2 stops; the other two (a quorum) go on; it comes back and catches up.
    members[1].server.take().unwrap().shutdown().unwrap();
    phase("server 2 stopped");
    runtime().block_on(async {
        let c = connect(&addrs[0]).await;
        c.set_data("/e", b"two", None).await.unwrap();
    });
    phase("written without server 2");
    members[1].server = Some(start(&members[1].dir));
    runtime().block_on(async {
        let c = connect(&addrs[1]).await;
        c.sync("/e").await.unwrap();
        let (data, _) = c.get_data("/e").await.unwrap();
        assert_eq!(data, b"two", "the restarted server caught up");
    });
    phase("server 2 caught up");
    // A session moves between servers: resumed on another server with its id and password
    // (the leader revalidates it), its ephemeral kept; a wrong password is refused.
    runtime().block_on(async {
        let c = connect(&addrs[0]).await;
        let eph = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
        c.create("/moving", b"", &eph).await.unwrap();
        // (The first client stays: dropping it would close the session.)
        let session = c.session().clone();
        let id = session.id();
        let mut connector = zk::Client::connector();
        connector.session(session.clone()).session_timeout(Duration::from_secs(6));
        let moved = tokio::time::timeout(Duration::from_secs(10), connector.connect(&addrs[2]))
            .await
            .expect("resumed in time")
            .expect("the session resumes on another server");
        assert_eq!(moved.session_id(), id, "the same session");
        moved.sync("/").await.unwrap();
        let (_, stat) = moved.get_data("/moving").await.unwrap();
        assert_eq!(stat.ephemeral_owner, id.0, "its ephemeral is still its own");
        moved.create("/moving2", b"", &eph).await.unwrap();
        // The old connection is still open: a write on it is refused SESSIONMOVED (the
        // leader knows the session's owner is now server 3), which, as in ZooKeeper, closes
        // that connection instead of answering: its client sees the connection lost.
        let err = c.create("/moving3", b"", &eph).await.unwrap_err();
        assert_eq!(err, zk::Error::ConnectionLoss, "a write from the session's old server");
        assert!(moved.check_stat("/moving3").await.unwrap().is_none());
        drop(c);
    });
    phase("session moved");
    for m in members.iter_mut() {
        if let Some(s) = m.server.take() {
            s.shutdown().unwrap();
        }
    }
}

/// readonlymode.enabled: a member cut off from the quorum serves read-only sessions from what
/// it has (isro says "ro", srvr "Mode: read-only"), refuses writes with NOTREADONLY and
/// clients that did not ask for read-only; when the quorum is back it serves read-write
/// again and closes the read-only connections.
#[test]
fn a_server_cut_off_serves_read_only_clients() {
    let root = tempfile::tempdir().unwrap();
    let mut members =
        ensemble(3, root.path(), "readonlymode.enabled=true\n4lw.commands.whitelist=*\n");
    let addrs: Vec<String> =
        members.iter().map(|m| m.server.as_ref().unwrap().addr().to_string()).collect();
    runtime().block_on(async {
        let c = connect(&addrs[0]).await;
        c.create("/ro", b"before", &open()).await.unwrap();
        // Every member has it before the quorum goes.
        for a in &addrs {
            let c = connect(a).await;
            c.sync("/ro").await.unwrap();
            assert_eq!(c.get_data("/ro").await.unwrap().0, b"before");
        }
    });
    assert_eq!(four(&addrs[0], b"isro"), "rw");
    members[1].server.take().unwrap().shutdown().unwrap();
    members[2].server.take().unwrap().shutdown().unwrap();
    wait_mode(&addrs[0], &["read-only"], Duration::from_secs(20));
    assert_eq!(four(&addrs[0], b"isro"), "ro");
    // As ZooKeeper 3.8 answers in read-only mode (tests/data/fourlw-ensemble/readonly-*).
    let srvr = four(&addrs[0], b"srvr");
    assert_eq!(
        srvr.lines().nth(1),
        Some("READ-ONLY mode; serving only read-only clients"),
        "{srvr}"
    );
    let mntr = four(&addrs[0], b"mntr");
    assert!(mntr.contains("zk_server_state\tread-only\n"), "{mntr}");
    assert!(!mntr.contains("zk_peer_state"), "no peer state in read-only mode: {mntr}");
    runtime().block_on(async {
        let mut connector = zk::Client::connector();
        connector
            .readonly(true)
            .session_timeout(Duration::from_secs(6))
            .connection_timeout(Duration::from_secs(2));
        let ro = tokio::time::timeout(Duration::from_secs(10), connector.connect(&addrs[0]))
            .await
            .expect("a read-only session in time")
            .expect("a read-only session");
        assert_eq!(ro.get_data("/ro").await.unwrap().0, b"before", "reads are served");
        let err = ro.create("/ro/new", b"", &open()).await.unwrap_err();
        assert_eq!(err, zk::Error::NotReadOnly, "writes are refused");
        let err = ro.set_data("/ro", b"x", None).await.unwrap_err();
        assert_eq!(err, zk::Error::NotReadOnly);
        // A client that did not ask for read-only gets no session.
        let mut rw = zk::Client::connector();
        rw.session_timeout(Duration::from_secs(6)).connection_timeout(Duration::from_millis(500));
        let refused = tokio::time::timeout(Duration::from_secs(3), rw.connect(&addrs[0])).await;
        assert!(!matches!(refused, Ok(Ok(_))), "a read-write client is refused in read-only mode");
        drop(ro);
    });
    // The quorum comes back: read-write again.
    members[1].server = Some(start(&members[1].dir));
    members[2].server = Some(start(&members[2].dir));
    wait_mode(&addrs[0], &["leader", "follower"], Duration::from_secs(30));
    assert_eq!(four(&addrs[0], b"isro"), "rw");
    runtime().block_on(async {
        let c = connect(&addrs[0]).await;
        c.set_data("/ro", b"after", None).await.unwrap();
    });
    for m in members.iter_mut() {
        if let Some(s) = m.server.take() {
            s.shutdown().unwrap();
        }
    }
}

/// localSessionsEnabled: a session is its server's own (no txn, unknown to the others) until
/// it creates an ephemeral, when it is upgraded to a global session first
/// (localSessionsUpgradingEnabled) or refused EPHEMERALONLOCALSESSION (without it).
#[test]
fn local_sessions_upgrade_on_ephemeral() {
    for upgrading in [true, false] {
        let root = tempfile::tempdir().unwrap();
        let extra = format!(
            "localSessionsEnabled=true\nlocalSessionsUpgradingEnabled={upgrading}\n\
             4lw.commands.whitelist=*\n"
        );
        let mut members = ensemble(3, root.path(), &extra);
        let addrs: Vec<String> =
            members.iter().map(|m| m.server.as_ref().unwrap().addr().to_string()).collect();
        wait_mode(&addrs[0], &["leader", "follower"], Duration::from_secs(20));
        let follower = addrs
            .iter()
            .find(|a| wait_mode(a, &["leader", "follower"], Duration::from_secs(20)) == "follower")
            .unwrap()
            .clone();
        let other = addrs.iter().find(|a| **a != follower).unwrap().clone();
        runtime().block_on(async {
            let c = connect(&follower).await;
            // A local session writes like any other.
            c.create("/local", b"x", &open()).await.unwrap();
            let mntr = four(&follower, b"mntr");
            assert!(mntr.contains("zk_local_sessions\t1\n"), "{mntr}");
            assert!(mntr.contains("zk_global_sessions\t0\n"), "not logged: {mntr}");
            // Unknown to the leader: it cannot move to another server.
            let mut connector = zk::Client::connector();
            connector.session(c.session().clone()).session_timeout(Duration::from_secs(6));
            let moved =
                tokio::time::timeout(Duration::from_secs(5), connector.connect(&other)).await;
            assert!(!matches!(moved, Ok(Ok(_))), "a local session does not move");
            let eph = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
            let r = c.create("/local/eph", b"", &eph).await;
            if upgrading {
                r.expect("upgraded to a global session, then the ephemeral");
                let mntr = four(&follower, b"mntr");
                assert!(mntr.contains("zk_local_sessions\t0\n"), "{mntr}");
                assert!(mntr.contains("zk_global_sessions\t1\n"), "{mntr}");
                let v = connect(&other).await;
                v.sync("/local").await.unwrap();
                let (_, stat) = v.get_data("/local/eph").await.unwrap();
                assert_eq!(stat.ephemeral_owner, c.session_id().0, "owned by the session");
                // Global now: closing it removes its ephemeral everywhere.
                let id = c.session_id().0;
                drop(c);
                let deadline = Instant::now() + Duration::from_secs(10);
                while v.check_stat("/local/eph").await.unwrap().is_some() {
                    assert!(Instant::now() < deadline, "ephemeral of closed session {id:#x} stays");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            } else {
                // EPHEMERALONLOCALSESSION (-120), which this client has no name for.
                assert_eq!(r.unwrap_err(), zk::Error::UnexpectedErrorCode(-120));
            }
        });
        for m in members.iter_mut() {
            if let Some(s) = m.server.take() {
                s.shutdown().unwrap();
            }
        }
    }
}

/// electionPortBindRetry: a member whose election port is taken tries again a second later;
/// it starts once the port is free, and gives up (an error naming the setting) after that
/// many attempts.
#[test]
fn election_port_bind_is_retried() {
    let root = tempfile::tempdir().unwrap();
    let ports = free_ports(9);
    let servers: Vec<(u16, u16, u16)> =
        (0..3).map(|i| (ports[3 * i], ports[3 * i + 1], ports[3 * i + 2])).collect();
    let dir = root.path().join("s1");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("myid"), "1\n").unwrap();
    let cfg = |retry: u32| {
        config_text(&dir, servers[0].2, &servers, &format!("electionPortBindRetry={retry}\n"))
    };
    let options = || {
        let config = Config::load(&dir.join("zoo.cfg")).expect("zoo.cfg");
        ServerOptions::from_config(&config).expect("options")
    };
    let taken = TcpListener::bind(("127.0.0.1", servers[0].1)).unwrap();
    // Two attempts, the port never free: an error after about a second.
    std::fs::write(dir.join("zoo.cfg"), cfg(2)).unwrap();
    let t = Instant::now();
    let err = RunningServer::start(options()).expect_err("the election port is taken");
    assert!(format!("{err:#}").contains("electionPortBindRetry"), "{err:#}");
    assert!(t.elapsed() >= Duration::from_millis(900), "retried a second later: {:?}", t.elapsed());
    // Freed during the retries: it starts.
    std::fs::write(dir.join("zoo.cfg"), cfg(5)).unwrap();
    let freer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        drop(taken);
    });
    let s = RunningServer::start(options()).expect("starts once the port is free");
    freer.join().unwrap();
    s.shutdown().unwrap();
}

/// syncEnabled=false on an observer: it serves reads and forwards writes like any observer,
/// but logs nothing (its data directory recovers no txn), while a voter logs every one.
#[test]
fn observer_without_sync_logs_nothing() {
    let root = tempfile::tempdir().unwrap();
    let ports = free_ports(12);
    let mut lines = String::new();
    for i in 0..4 {
        let kind = if i < 3 { "participant" } else { "observer" };
        lines.push_str(&format!(
            "server.{}=127.0.0.1:{}:{}:{kind};127.0.0.1:{}\n",
            i + 1,
            ports[3 * i],
            ports[3 * i + 1],
            ports[3 * i + 2]
        ));
    }
    let dirs: Vec<std::path::PathBuf> = (0..4)
        .map(|i| {
            let dir = root.path().join(format!("s{}", i + 1));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("myid"), format!("{}\n", i + 1)).unwrap();
            let own = if i == 3 { "peerType=observer\nsyncEnabled=false\n" } else { "" };
            let cfg = format!(
                "tickTime=100\ninitLimit=20\nsyncLimit=10\ndataDir={}\nclientPort={}\n\
                 clientPortAddress=127.0.0.1\ncnxTimeout=1000\n{own}{lines}",
                dir.display(),
                ports[3 * i + 2]
            );
            std::fs::write(dir.join("zoo.cfg"), cfg).unwrap();
            dir
        })
        .collect();
    let servers: Vec<RunningServer> = dirs.iter().map(|d| start(d)).collect();
    let observer = servers[3].addr().to_string();
    wait_mode(&observer, &["observer"], Duration::from_secs(20));
    runtime().block_on(async {
        let c = connect(&observer).await;
        c.create("/obs", b"", &open()).await.unwrap();
        for i in 0..20 {
            c.create(&format!("/obs/n{i}"), b"x", &open()).await.unwrap();
        }
        let (kids, _) = c.get_children("/obs").await.unwrap();
        assert_eq!(kids.len(), 20, "the observer applied what it did not log");
    });
    // The leader's `observers`: server 4, with what its connection carried (ZooKeeper's
    // LearnerHandler figures and keys); `orst` zeroes the packet counts.
    let leader = servers.iter().position(|s| mode(&s.addr().to_string()) == "leader").unwrap();
    let admin = admin_on(&servers[leader]);
    let obsr = admin_get(admin, "observers");
    assert_eq!(obsr["synced_observers"], 1, "{obsr}");
    let list = obsr["observers"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{obsr}");
    let o = &list[0];
    assert_eq!(json_keys(o), json_keys(&admin_fixture("leader", "observers")["observers"][0]));
    assert_eq!(o["sid"], 4);
    assert!(o["remote_socket_address"].as_str().unwrap().starts_with("/127.0.0.1:"), "{o}");
    assert!(o["requests"].as_i64().unwrap() >= 21, "its client's writes, forwarded: {o}");
    assert!(o["packets_sent"].as_i64().unwrap() >= 21, "INFORMs at least: {o}");
    assert!(o["packets_received"].as_i64().unwrap() >= 21, "{o}");
    let last = servers[leader].shared().last_zxid.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(o["last_zxid"], last, "the newest INFORM: {o}");
    let now_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
            as i64;
    let established = o["established"].as_i64().unwrap();
    assert!((now_ms - 120_000..=now_ms).contains(&established), "{o}");
    admin_get(admin, "orst");
    let o = admin_get(admin, "observers")["observers"][0].clone();
    assert!(o["packets_sent"].as_i64().unwrap() < 5, "reset by orst: {o}");
    let follower = (0..3).find(|i| *i != leader).unwrap();
    let admin_f = admin_on(&servers[follower]);
    assert_eq!(admin_get(admin_f, "observers")["observers"], serde_json::json!([]));
    for s in servers {
        s.shutdown().unwrap();
    }
    let recovered = |dir: &Path| {
        let (_, _, report) =
            corral_server::db::Database::open(corral_server::db::DbOptions::new(dir)).unwrap();
        report.replayed
    };
    assert!(recovered(&dirs[0]) >= 21, "a voter logs every txn");
    assert_eq!(recovered(&dirs[3]), 0, "the observer logged none");
}
