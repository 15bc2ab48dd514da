//! Quorum and election traffic of a live Apache ZooKeeper 3.8 ensemble, captured by this test
//! and checked against Corral's codecs: every election handshake, notification and quorum
//! packet ZooKeeper sends decodes, and Corral's encoding of what it decoded is byte-identical;
//! the configuration text in notifications and NEWLEADER is what Corral writes for the same
//! zoo.cfg; proposals' txns (with their digests) re-encode exactly; SNAP payloads load.
//!
//! Three ZooKeeper servers are started with zoo.cfg files in which every *other* server's
//! quorum and election addresses are recording proxies in this process (each server listens
//! on its own real ports), so that every connection between them passes through a proxy.
//! The ensemble is driven through elections, DIFF, SNAP, TRUNC, forwarded writes with auth,
//! pings, session moves and a leader's death.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use corral_server::config::Config;
use corral_server::proto::{Reader, TxnEntry, DEFAULT_MAX_LEN};
use corral_server::zab::wire::{
    decode_i32, decode_revalidate, decode_revalidate_reply, decode_touches, encode_i32,
    encode_revalidate, encode_revalidate_reply, encode_touches, read_snap_payload, ElectionHello,
    ForwardedRequest, LearnerInfo, Notification, PacketType, QuorumPacket,
};
use zookeeper_client as zk;

/// One direction of one proxied connection.
#[derive(Debug, Default)]
struct Capture {
    /// "election" or "quorum".
    port: &'static str,
    /// The server whose address the proxy stands for (the side that accepted).
    target: usize,
    /// true: dialler → target; false: target → dialler.
    to_target: bool,
    bytes: Vec<u8>,
}

type Captures = Arc<Mutex<Vec<Arc<Mutex<Capture>>>>>;

/// A proxy on `listener` for server `target`'s port `to`: every connection is relayed, both
/// directions recorded.
fn proxy(listener: TcpListener, to: u16, port: &'static str, target: usize, caps: Captures) {
    std::thread::spawn(move || {
        for inbound in listener.incoming() {
            let Ok(inbound) = inbound else { return };
            let Ok(outbound) = TcpStream::connect(("127.0.0.1", to)) else {
                let _ = inbound.shutdown(Shutdown::Both);
                continue;
            };
            for (from, into, to_target) in [
                (inbound.try_clone().unwrap(), outbound.try_clone().unwrap(), true),
                (outbound.try_clone().unwrap(), inbound.try_clone().unwrap(), false),
            ] {
                let cap = Arc::new(Mutex::new(Capture { port, target, to_target, bytes: vec![] }));
                caps.lock().unwrap().push(cap.clone());
                std::thread::spawn(move || relay(from, into, cap));
            }
        }
    });
}

fn relay(mut from: TcpStream, mut into: TcpStream, cap: Arc<Mutex<Capture>>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                cap.lock().unwrap().bytes.extend_from_slice(&buf[..n]);
                if into.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = into.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

/// What was checked, by packet kind and direction.
#[derive(Debug, Default)]
struct Seen {
    hellos: usize,
    notifications: BTreeMap<String, usize>,
    packets: BTreeMap<String, usize>,
    snaps: usize,
}

/// Checks an election stream: the dialler's hello first (to the target), then length-prefixed
/// notifications; each re-encodes byte for byte, its config text being what Corral writes for
/// the sender's zoo.cfg.
fn check_election(c: &Capture, configs: &BTreeMap<usize, Config>, seen: &mut Seen) {
    let mut r: &[u8] = &c.bytes;
    let sender = if c.to_target {
        if r.is_empty() {
            return;
        }
        let raw = r;
        let hello = ElectionHello::read_from(&mut r).expect("an election hello decodes");
        assert_eq!(hello.encode(), raw[..raw.len() - r.len()], "hello re-encodes exactly");
        assert!(hello.protocol.is_some(), "ZooKeeper 3.8 sends a versioned hello: {hello:?}");
        seen.hellos += 1;
        hello.sid as usize
    } else {
        c.target
    };
    while r.len() >= 4 {
        let len = i32::from_be_bytes(r[..4].try_into().unwrap()) as usize;
        if r.len() < 4 + len {
            break; // cut by a process's death
        }
        let payload = &r[4..4 + len];
        let n = Notification::decode(payload).expect("a notification decodes");
        assert_eq!(&n.encode()[..], payload, "notification re-encodes exactly: {n:?}");
        assert_eq!(
            n.config,
            configs[&sender].quorum_verifier_text().as_bytes(),
            "server {sender}'s config text"
        );
        *seen.notifications.entry(format!("{:?}", n.state)).or_default() += 1;
        r = &r[4 + len..];
    }
}

/// Checks a quorum stream: packets (and the SNAP payload after a SNAP), each re-encoded byte
/// for byte, their data decoded by Corral and re-encoded where it has a codec.
fn check_quorum(c: &Capture, configs: &BTreeMap<usize, Config>, seen: &mut Seen) {
    let buf = &c.bytes[..];
    let mut r = Reader::new(buf);
    loop {
        let at = r.position();
        if at == buf.len() {
            break;
        }
        let p = match QuorumPacket::read(&mut r) {
            Ok(p) => p,
            Err(corral_server::proto::JuteError::Truncated { .. }) => break, // cut by a death
            Err(e) => panic!("a quorum packet at {at} does not decode: {e}"),
        };
        let raw = &buf[at..r.position()];
        assert_eq!(p.encode(), raw, "{:?} re-encodes exactly", p.kind);
        let d = p.payload();
        match (p.kind, c.to_target) {
            (PacketType::FollowerInfo | PacketType::ObserverInfo, true) => {
                let li = LearnerInfo::decode(d).unwrap();
                assert_eq!(&li.encode()[..], &d[..]);
            }
            (PacketType::LeaderInfo, false) | (PacketType::AckEpoch, true) => {
                assert_eq!(encode_i32(decode_i32(d).unwrap()), d);
            }
            (PacketType::Proposal, false) => {
                let e = TxnEntry::decode(d, DEFAULT_MAX_LEN).expect("a proposal's txn decodes");
                assert_eq!(e.encode(), d[..], "txn re-encodes exactly: {e:?}");
                assert!(e.digest.is_some(), "ZooKeeper 3.8 sends digests with proposals");
            }
            (PacketType::NewLeader, false) => {
                assert_eq!(d, configs[&c.target].quorum_verifier_text().as_bytes());
            }
            (PacketType::Ping, true) => {
                assert!(p.data.is_some(), "a learner's PING carries a (possibly empty) buffer");
                assert_eq!(encode_touches(&decode_touches(d).unwrap()), d);
            }
            (PacketType::Ping, false) => assert!(p.data.is_none()),
            (PacketType::Revalidate, true) => {
                let (id, to) = decode_revalidate(d).unwrap();
                assert_eq!(encode_revalidate(id, to), d);
            }
            (PacketType::Revalidate, false) => {
                let (id, valid) = decode_revalidate_reply(d).unwrap();
                assert_eq!(encode_revalidate_reply(id, valid), d);
            }
            (PacketType::Request, true) => {
                let f = ForwardedRequest::from_packet(&p).unwrap();
                assert_eq!(f.to_packet().encode(), raw, "REQUEST re-encodes exactly");
            }
            (PacketType::Snap, false) => {
                let at = r.position();
                let body = read_snap_payload(&mut r, buf).expect("the SNAP payload loads");
                let mut br = Reader::new(body);
                corral_server::tree::zk_snapshot::read_body(&mut br, Default::default())
                    .expect("the snapshot body loads");
                // As a learner's reader takes it: in pieces, ending exactly where it ends.
                let payload = &buf[at..r.position()];
                let zxid = corral_server::zxid::Zxid::from_wire(p.zxid);
                let mut rx = corral_server::db::SnapReceiver::new(
                    zxid,
                    Default::default(),
                    1 << 20,
                    usize::MAX,
                    None,
                )
                .unwrap();
                let mut pending = Vec::new();
                for piece in payload.chunks(777) {
                    pending.extend_from_slice(piece);
                    let used = rx.feed(&pending).expect("the SNAP payload streams");
                    pending.drain(..used);
                }
                assert!(rx.is_complete() && pending.is_empty());
                let got = rx.finish().unwrap().take().unwrap();
                assert_eq!(got.state.tree.last_processed_zxid(), p.zxid);
                seen.snaps += 1;
            }
            _ => {}
        }
        let dir = if c.to_target { "to leader" } else { "from leader" };
        *seen.packets.entry(format!("{:?} {dir}", p.kind)).or_default() += 1;
    }
}

#[test]
fn zookeeper_traffic_decodes_and_reencodes_exactly() {
    if !zookeeper_installed() {
        return;
    }
    let _g = serial();
    let caps: Captures = Arc::default();
    // Each server's real quorum and election ports, and a proxy pair standing for it.
    let real = free_ports(9);
    let mut proxies = Vec::new();
    for i in 0..3 {
        let q = TcpListener::bind("127.0.0.1:0").unwrap();
        let el = TcpListener::bind("127.0.0.1:0").unwrap();
        let ports = (q.local_addr().unwrap().port(), el.local_addr().unwrap().port());
        proxy(q, real[3 * i], "quorum", i + 1, caps.clone());
        proxy(el, real[3 * i + 1], "election", i + 1, caps.clone());
        proxies.push(ports);
    }
    let zoo = [(Kind::ZooKeeper, Role::Participant); 3];
    let mut e = Ensemble::configure(&zoo, "");
    let mut configs = BTreeMap::new();
    for i in 0..3 {
        let s = &mut e.servers[i];
        s.client = real[3 * i + 2];
        let mut lines = String::new();
        for j in 0..3 {
            let (q, el) = if i == j { (real[3 * j], real[3 * j + 1]) } else { proxies[j] };
            lines.push_str(&format!(
                "server.{}=127.0.0.1:{q}:{el}:participant;127.0.0.1:{}\n",
                j + 1,
                real[3 * j + 2]
            ));
        }
        let cfg = format!(
            "tickTime=200\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort={}\n\
             clientPortAddress=127.0.0.1\nadmin.enableServer=false\n4lw.commands.whitelist=*\n\
             commitLogCount=20\nsnapshotSizeFactor=-1\n{lines}",
            s.dir.display(),
            s.client
        );
        std::fs::write(s.dir.join("zoo.cfg"), &cfg).unwrap();
        configs.insert(i + 1, Config::load(&s.dir.join("zoo.cfg")).unwrap());
    }
    let rt = runtime();
    let mut result_e = e;
    let e = &mut result_e;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for s in e.servers.iter_mut() {
            s.start();
        }
        let leader = e.wait_for_leader(Duration::from_secs(60));
        let followers: Vec<usize> = (1..=3).filter(|i| *i != leader).collect();
        let (fa, fb) = (e.server(followers[0]).addr(), e.server(followers[1]).addr());
        rt.block_on(async {
            // Writes through a follower (REQUEST with the client's auth), of every kind.
            let c = connect(&fa, Duration::from_secs(30)).await;
            c.auth("digest".into(), b"alice:secret".to_vec()).await.unwrap();
            let creator = zk::CreateMode::Persistent.with_acls(zk::Acls::creator_all());
            c.create("/w", b"data", &creator).await.unwrap();
            c.set_data("/w", b"more", None).await.unwrap();
            let seq = zk::CreateMode::PersistentSequential.with_acls(zk::Acls::anyone_all());
            for _ in 0..30 {
                c.create("/s-", b"", &seq).await.unwrap();
            }
            let eph = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
            c.create("/e", b"", &eph).await.unwrap();
            c.delete("/w", None).await.unwrap();
            let mut m = c.new_multi_writer();
            m.add_create("/m", b"", &open()).unwrap();
            m.add_set_data("/m", b"x", None).unwrap();
            m.commit().await.unwrap();
            // Pings carry the session's touches; a move to the other follower REVALIDATEs.
            tokio::time::sleep(Duration::from_millis(800)).await;
            let mut connector = zk::Client::connector();
            connector.session(c.session().clone()).session_timeout(Duration::from_secs(8));
            let moved = connector.connect(&fb).await.expect("the session moves");
            moved.sync("/").await.unwrap();
        });
        // A follower behind the window (commitLogCount=20): SNAP.
        let f = followers[0];
        e.server(f).kill();
        e.server(f).wipe_data();
        rt.block_on(async {
            let c = connect(&e.server(leader).addr(), Duration::from_secs(30)).await;
            for i in 0..30 {
                c.create(&format!("/n{i}"), b"", &open()).await.unwrap();
            }
        });
        e.server(f).start();
        let addr = e.server(f).addr();
        wait_until("the emptied follower follows", Duration::from_secs(60), || {
            mode(&addr) == "follower"
        });
        // The leader dies: a new election; it comes back (DIFF or TRUNC).
        e.server(leader).kill();
        e.wait_for_leader(Duration::from_secs(60));
        e.server(leader).start();
        let addr = e.server(leader).addr();
        wait_until("the old leader follows", Duration::from_secs(60), || mode(&addr) == "follower");
        std::thread::sleep(Duration::from_millis(600)); // pings
    }));
    if let Err(p) = outcome {
        e.dump_logs();
        std::panic::resume_unwind(p);
    }
    for s in e.servers.iter_mut() {
        s.kill();
    }
    std::thread::sleep(Duration::from_millis(200));
    let mut seen = Seen::default();
    for cap in caps.lock().unwrap().iter() {
        let c = cap.lock().unwrap();
        match c.port {
            "election" => check_election(&c, &configs, &mut seen),
            _ => check_quorum(&c, &configs, &mut seen),
        }
    }
    eprintln!("{seen:#?}");
    assert!(seen.hellos >= 3, "{seen:?}");
    for state in ["Looking", "Following", "Leading"] {
        assert!(seen.notifications.contains_key(state), "a {state} notification: {seen:?}");
    }
    for kind in [
        "FollowerInfo to leader",
        "LeaderInfo from leader",
        "AckEpoch to leader",
        "Diff from leader",
        "Snap from leader",
        "NewLeader from leader",
        "UpToDate from leader",
        "Proposal from leader",
        "Commit from leader",
        "Ack to leader",
        "Ping from leader",
        "Ping to leader",
        "Request to leader",
        "Revalidate to leader",
        "Revalidate from leader",
    ] {
        assert!(seen.packets.contains_key(kind), "{kind}: {seen:#?}");
    }
    assert!(seen.snaps >= 1);
}

/// The checks reject what they must: an undecodable packet, a packet whose data is not what
/// Corral would write, and a notification whose config text is not the sender's.
#[test]
fn the_capture_checks_reject_bad_streams() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("zoo.cfg");
    std::fs::write(dir.path().join("myid"), "1\n").unwrap();
    std::fs::write(
        &cfg,
        format!(
            "tickTime=200\ninitLimit=5\nsyncLimit=2\ndataDir={}\nclientPort=2181\n\
             server.1=127.0.0.1:2888:3888\nserver.2=127.0.0.1:2889:3889\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let configs: BTreeMap<usize, Config> = [(1, Config::load(&cfg).unwrap())].into();
    let fails = |c: Capture| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut seen = Seen::default();
            match c.port {
                "election" => check_election(&c, &configs, &mut seen),
                _ => check_quorum(&c, &configs, &mut seen),
            }
        }))
        .is_err()
    };
    let quorum = |bytes: Vec<u8>| Capture { port: "quorum", target: 1, to_target: false, bytes };
    // Packet type 99.
    assert!(fails(quorum([&[0, 0, 0, 99][..], &[0; 8], &[0xff; 8]].concat())));
    // A NEWLEADER whose config text is not server 1's.
    let mut nl = QuorumPacket::with_data(PacketType::NewLeader, 1 << 32, &b"server.1=x"[..]);
    assert!(fails(quorum(nl.encode())));
    nl.data = Some(configs[&1].quorum_verifier_text().into_bytes().into());
    assert!(!fails(quorum(nl.encode())), "the right text passes");
    // A proposal whose txn does not decode.
    assert!(fails(quorum(QuorumPacket::with_data(PacketType::Proposal, 1, vec![1u8; 3]).encode())));
    // A notification from server 1 with another config text.
    let n = Notification {
        state: corral_server::zab::ServerState::Looking,
        leader: 1,
        zxid: 0,
        election_epoch: 1,
        peer_epoch: 0,
        version: 2,
        config: bytes::Bytes::from_static(b"version=0"),
    };
    let msg = |n: &Notification| {
        let p = n.encode();
        [&(p.len() as i32).to_be_bytes()[..], &p].concat()
    };
    let election = |bytes| Capture { port: "election", target: 1, to_target: false, bytes };
    assert!(fails(election(msg(&n))));
    let good = Notification {
        config: configs[&1].quorum_verifier_text().into_bytes().into(),
        ..n.clone()
    };
    assert!(!fails(election(msg(&good))));
}
