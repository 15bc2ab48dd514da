//! Bad input on the election and quorum ports: an ensemble member closes each bad connection
//! promptly (a wrong header, an unknown server id, an impossible length, a first packet that
//! is not FOLLOWERINFO, silence), holds at most `HANDSHAKES_MAX` connections in their
//! handshake, and afterwards still forms an ensemble and serves writes; its leader refuses a
//! learner speaking the quorum protocol of ZooKeeper before 3.4.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use corral_server::config::Config;
use corral_server::net::quorum::{ELECTION_PROTOCOL_V1, HANDSHAKES_MAX};
use corral_server::server::{RunningServer, ServerOptions};
use corral_server::zab::wire::{LearnerInfo, PacketType, QuorumPacket};
use zookeeper_client as zk;

fn free_ports(n: usize) -> Vec<u16> {
    let ls: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    ls.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

fn start(dir: &Path) -> RunningServer {
    let config = Config::load(&dir.join("zoo.cfg")).expect("zoo.cfg");
    RunningServer::start(ServerOptions::from_config(&config).expect("options")).expect("starts")
}

/// True if the server closes `s` within `within` (EOF or reset), reading whatever it sends.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

fn election_header(version: i64, sid: i64, addr: &[u8], claimed_len: i32) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&version.to_be_bytes());
    h.extend_from_slice(&sid.to_be_bytes());
    h.extend_from_slice(&claimed_len.to_be_bytes());
    h.extend_from_slice(addr);
    h
}

/// Sends `bytes` on a new connection to `addr` and says whether the server closed it promptly.
fn refused(addr: SocketAddr, bytes: &[u8]) -> bool {
    let mut s = TcpStream::connect(addr).unwrap();
    let _ = s.write_all(bytes);
    closed_within(&mut s, Duration::from_secs(3))
}

#[test]
fn bad_peers_are_closed_and_the_ensemble_still_forms() {
    let root = tempfile::tempdir().unwrap();
    let ports = free_ports(9);
    let mut servers = String::new();
    for i in 0..3 {
        servers.push_str(&format!(
            "server.{}=127.0.0.1:{}:{};127.0.0.1:{}\n",
            i + 1,
            ports[3 * i],
            ports[3 * i + 1],
            ports[3 * i + 2]
        ));
    }
    let dirs: Vec<_> = (0..3)
        .map(|i| {
            let dir = root.path().join(format!("s{}", i + 1));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("myid"), format!("{}\n", i + 1)).unwrap();
            let cfg = format!(
                "tickTime=100\ninitLimit=20\nsyncLimit=10\ndataDir={}\nclientPort={}\n\
                 clientPortAddress=127.0.0.1\ncnxTimeout=1000\n{servers}",
                dir.display(),
                ports[3 * i + 2]
            );
            std::fs::write(dir.join("zoo.cfg"), cfg).unwrap();
            dir
        })
        .collect();
    // Server 1 alone: it looks for a leader, its ports open.
    let s1 = start(&dirs[0]);
    let quorum: SocketAddr = format!("127.0.0.1:{}", ports[0]).parse().unwrap();
    let election: SocketAddr = format!("127.0.0.1:{}", ports[1]).parse().unwrap();

    // Election port.
    let addr_text = b"127.0.0.1:1";
    assert!(
        refused(election, &election_header(-7, 2, addr_text, addr_text.len() as i32)),
        "bad version"
    );
    assert!(
        refused(election, &election_header(ELECTION_PROTOCOL_V1, 2, b"", 1 << 30)),
        "an address of 1 GiB"
    );
    assert!(
        refused(election, &election_header(ELECTION_PROTOCOL_V1, 2, b"", -5)),
        "a negative length"
    );
    assert!(
        refused(
            election,
            &election_header(ELECTION_PROTOCOL_V1, 99, addr_text, addr_text.len() as i32)
        ),
        "an unknown server id"
    );
    assert!(
        refused(
            election,
            &election_header(ELECTION_PROTOCOL_V1, 1, addr_text, addr_text.len() as i32)
        ),
        "its own id"
    );
    let good = election_header(ELECTION_PROTOCOL_V1, 3, addr_text, addr_text.len() as i32);
    for len in [0i32, -1, 512 * 1024 + 1, i32::MAX] {
        let mut m = good.clone();
        m.extend_from_slice(&len.to_be_bytes());
        assert!(refused(election, &m), "an election message of {len} bytes");
    }
    let mut m = good.clone();
    m.extend_from_slice(&8i32.to_be_bytes());
    m.extend_from_slice(&[0xff; 8]);
    assert!(refused(election, &m), "a notification too short to decode");
    // Silence: closed after cnxTimeout (1 s).
    let mut silent = TcpStream::connect(election).unwrap();
    let t = Instant::now();
    assert!(closed_within(&mut silent, Duration::from_secs(4)), "a silent connection");
    assert!(t.elapsed() >= Duration::from_millis(800), "not before cnxTimeout: {:?}", t.elapsed());

    // Quorum port.
    let ping = QuorumPacket::new(PacketType::Ping, 0).encode();
    assert!(refused(quorum, &ping), "a first packet that is not FOLLOWERINFO");
    let info_v = |sid: i64, protocol_version: i32| {
        let li = LearnerInfo { server_id: sid, protocol_version, config_version: 0 };
        QuorumPacket::with_data(PacketType::FollowerInfo, 0, li.encode()).encode()
    };
    let info = |sid: i64| info_v(sid, 0x10000);
    assert!(refused(quorum, &info(99)), "FOLLOWERINFO from an unknown server");
    // A packet claiming 100 MB of data: refused by its length, not buffered.
    let mut huge = Vec::new();
    huge.extend_from_slice(&(PacketType::FollowerInfo as i32).to_be_bytes());
    huge.extend_from_slice(&0i64.to_be_bytes());
    huge.extend_from_slice(&(100i32 << 20).to_be_bytes());
    huge.extend_from_slice(&[0u8; 4096]);
    assert!(refused(quorum, &huge), "a 100 MB packet");
    assert!(refused(quorum, &[0xff; 64]), "garbage");

    // Connections that send nothing hold at most HANDSHAKES_MAX slots: the rest are closed
    // at once.
    let mut held: Vec<TcpStream> =
        (0..HANDSHAKES_MAX + 8).map(|_| TcpStream::connect(election).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let closed_early = held
        .iter_mut()
        .filter_map(|s| closed_within(s, Duration::from_millis(100)).then_some(()))
        .count();
    assert!(closed_early >= 8, "{closed_early} of {} closed before cnxTimeout", held.len());
    drop(held);

    // The server still works: with servers 2 and 3 it forms an ensemble and serves writes.
    std::thread::sleep(Duration::from_millis(1200));
    let s2 = start(&dirs[1]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let addr = s1.addr().to_string();
        let deadline = Instant::now() + Duration::from_secs(20);
        let c = loop {
            let mut connector = zk::Client::connector();
            connector
                .session_timeout(Duration::from_secs(6))
                .connection_timeout(Duration::from_millis(500));
            match tokio::time::timeout(Duration::from_secs(2), connector.connect(&addr)).await {
                Ok(Ok(c)) => break c,
                _ if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                _ => panic!("server 1 serves no session after the bad peers"),
            }
        };
        let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
        c.create("/after-bad-peers", b"ok", &open).await.unwrap();
    });
    // Servers 1 and 2 form the ensemble (2 leads: the same history, the higher id). A server 3
    // speaking the quorum protocol of ZooKeeper before 3.4 is refused by the leader; the same
    // FOLLOWERINFO with 3.4's version gets its LEADERINFO.
    let leader_quorum: SocketAddr = format!("127.0.0.1:{}", ports[3]).parse().unwrap();
    let mut old = TcpStream::connect(leader_quorum).unwrap();
    old.write_all(&info_v(3, 0)).unwrap();
    old.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut got = Vec::new();
    let r = old.read_to_end(&mut got);
    assert!(r.is_ok() && got.is_empty(), "a pre-3.4 learner is closed unanswered: {r:?} {got:?}");
    let mut current = TcpStream::connect(leader_quorum).unwrap();
    current.write_all(&info_v(3, 0x10000)).unwrap();
    current.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut head = [0u8; 4];
    current.read_exact(&mut head).expect("the leader answers a 3.4+ learner");
    assert_eq!(i32::from_be_bytes(head), PacketType::LeaderInfo as i32);
    drop(current);
    let s3 = start(&dirs[2]);
    for s in [s1, s2, s3] {
        s.shutdown().unwrap();
    }
}
