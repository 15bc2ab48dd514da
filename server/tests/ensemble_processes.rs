//! Ensembles of `corral` processes on loopback, each started from its own zoo.cfg and myid as
//! an operator would, and killed with SIGKILL (or stopped with SIGSTOP) as machines fail:
//!
//! * 3 servers under a write load, the leader killed: a new leader is elected, the old one
//!   rejoins by DIFF, and every acknowledged write is on every server;
//! * a server restarted with an empty data directory catches up by SNAP;
//! * a leader that logged a txn no other server received is truncated (TRUNC) when it
//!   rejoins a leader elected without it;
//! * an observer serves reads and forwards writes;
//! * 5 servers lose the leader and another server and go on.
//! * a server cut off from the other two (stopped with SIGSTOP: connections open, silent)
//!   serves read-only clients, then rejoins read-write.
//!
//! Every wait is bounded; every process is started here and killed by its own handle.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use zookeeper_client as zk;

/// The keys ZooKeeper's mntr has only in an ensemble, for some roles.
const ENSEMBLE_KEYS: &[&str] = &[
    "zk_peer_state",
    "zk_quorum_size",
    "zk_observer_master_id",
    "zk_learners",
    "zk_synced_followers",
    "zk_synced_non_voting_followers",
    "zk_synced_observers",
    "zk_pending_syncs",
    "zk_leader_uptime",
    "zk_last_proposal_size",
    "zk_min_proposal_size",
    "zk_max_proposal_size",
];

/// `mntr` as key → value.
fn mntr_map(text: &str) -> std::collections::BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// A capture of Apache ZooKeeper 3.8's answer (tests/data/fourlw-ensemble/README.md).
fn zk_capture(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/fourlw-ensemble").join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn leader_killed_under_load_no_acknowledged_write_lost() {
    let _g = serial();
    // The history window (commitLogCount) holds what the old leader misses: a DIFF from it.
    let mut e = Ensemble::start(3, 0, "commitLogCount=20000\n");
    let rt = runtime();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let old = e.wait_for_leader(Duration::from_secs(30));
        rt.block_on(async {
            let c = connect(&e.hosts(), Duration::from_secs(20)).await;
            c.create("/load", b"", &open()).await.unwrap();
        });
        let load = Load::start(&rt, &e.hosts(), 4);
        wait_until("writes before the kill", Duration::from_secs(30), || load.count() >= 300);
        let before = load.count();
        let killed_at = Instant::now();
        e.server(old).kill();
        let new = e.wait_for_leader(Duration::from_secs(30));
        assert_ne!(new, old, "a new leader");
        wait_until("writes after the kill", Duration::from_secs(30), || {
            load.count() >= before + 300
        });
        // The old leader comes back as a follower and catches up by DIFF (TRUNC+DIFF if it
        // had logged proposals the others never saw).
        e.server(old).start();
        wait_until("the old leader follows", Duration::from_secs(30), || {
            mode(&e.server(old).addr()) == "follower"
        });
        let n = load.count();
        wait_until("writes with the old leader back", Duration::from_secs(30), || {
            load.count() >= n + 200
        });
        let acked = load.finish(&rt);
        // Failover: from the kill to the first acknowledgement of a write sent after it.
        let first_after = acked
            .iter()
            .filter(|a| a.sent > killed_at)
            .map(|a| a.acked)
            .min()
            .expect("a write after the kill");
        eprintln!(
            "{} writes acknowledged; failover (kill -9 of the leader to the first write sent \
             after it acknowledged): {:?}",
            acked.len(),
            first_after - killed_at
        );
        // The old leader rejoins by DIFF from the new leader's history, unless it had logged
        // proposals nobody else received: then its last txn is of the old epoch and the new
        // leader's next one of the new, and, as ZooKeeper (no TRUNC across an epoch), the new
        // leader sends a SNAP.
        let zxid_after = |line: &str, key: &str| {
            let v = line.split(key).nth(1)?.split_whitespace().next()?;
            u64::from_str_radix(v.trim_start_matches("0x"), 16).ok()
        };
        let old_log = e.server(old).log();
        let rejoined_at = old_log
            .lines()
            .filter(|l| l.contains("database recovered"))
            .nth(1)
            .and_then(|l| zxid_after(l, "last_zxid="))
            .expect("the old leader's recovery after its restart");
        let new_log = e.server(new).log();
        let established_at = new_log
            .lines()
            .filter(|l| l.contains("syncing a learner"))
            .find_map(|l| {
                zxid_after(l, " to=")
                    .or_else(|| zxid_after(l, "truncate_to="))
                    .or_else(|| zxid_after(l, " at="))
            })
            .expect("the new leader's first sync");
        let kinds = sync_kinds(&new_log, old);
        let want = if rejoined_at > established_at { "SNAP" } else { "DIFF" };
        assert_eq!(
            kinds.last().map(String::as_str),
            Some(want),
            "the old leader (last zxid {rejoined_at:#x}; the new leader's history to \
             {established_at:#x}) rejoined by {want}: {kinds:?}"
        );
        // Every acknowledged write is on every server.
        let want: std::collections::BTreeSet<String> =
            acked.iter().map(|a| a.path.trim_start_matches("/load/").to_owned()).collect();
        rt.block_on(async {
            for s in &e.servers {
                let have: std::collections::BTreeSet<String> =
                    children_at(&s.addr(), "/load").await.into_iter().collect();
                let lost: Vec<&String> = want.difference(&have).take(5).collect();
                assert!(lost.is_empty(), "server {} lost acknowledged writes: {lost:?}", s.id);
            }
        });
    }));
    if let Err(p) = result {
        e.dump_logs();
        std::panic::resume_unwind(p);
    }
}

#[test]
fn empty_data_dir_catches_up_by_snap() {
    let _g = serial();
    let mut e = Ensemble::start(3, 0, "commitLogCount=100\n");
    let rt = runtime();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let leader = e.wait_for_leader(Duration::from_secs(30));
        let victim = (1..=3).find(|i| *i != leader).unwrap();
        // More txns than the leader's history window (commitLogCount=100).
        rt.block_on(async {
            let c = connect(&e.hosts(), Duration::from_secs(20)).await;
            c.create("/snap", b"", &open()).await.unwrap();
            for i in 0..300 {
                c.create(&format!("/snap/n{i:03}"), b"data", &open()).await.unwrap();
            }
        });
        e.server(victim).kill();
        e.server(victim).wipe_data();
        e.server(victim).start();
        wait_until("the emptied server follows", Duration::from_secs(30), || {
            mode(&e.server(victim).addr()) == "follower"
        });
        let kinds = sync_kinds(&e.server(leader).log(), victim);
        assert_eq!(kinds.last().map(String::as_str), Some("SNAP"), "synced by SNAP: {kinds:?}");
        assert!(e.server(leader).log().contains("sending the SNAP payload"));
        rt.block_on(async {
            let kids = children_at(&e.server(victim).addr(), "/snap").await;
            assert_eq!(kids.len(), 300, "the emptied server has every znode");
        });
        // The payload went to the snapshot directory as it arrived, and became the newest
        // snapshot: no temporary file left, and a restart recovers from it.
        let log = e.server(victim).log();
        let received = log.lines().find(|l| l.contains("SNAP payload received")).unwrap_or("");
        assert!(received.contains("spooled=true"), "{received}");
        let snap_dir = e.server(victim).dir.join("corral-v1/snap");
        let names: Vec<String> = std::fs::read_dir(&snap_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().any(|n| n.starts_with("snapshot.")), "{names:?}");
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
        e.server(victim).kill();
        e.server(victim).start();
        wait_until("the restarted server follows", Duration::from_secs(30), || {
            mode(&e.server(victim).addr()) == "follower"
        });
        rt.block_on(async {
            let kids = children_at(&e.server(victim).addr(), "/snap").await;
            assert_eq!(kids.len(), 300, "every znode after the restart");
        });
    }));
    if let Err(p) = result {
        e.dump_logs();
        std::panic::resume_unwind(p);
    }
}

#[test]
fn leader_with_unacknowledged_txn_is_truncated() {
    let _g = serial();
    let mut e = Ensemble::start(3, 0, "");
    let rt = runtime();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let old = e.wait_for_leader(Duration::from_secs(30));
        let followers: Vec<usize> = (1..=3).filter(|i| *i != old).collect();
        let leader_addr = e.server(old).addr();
        rt.block_on(async {
            // The session comes first: creating one needs a quorum.
            let c = connect(&leader_addr, Duration::from_secs(20)).await;
            c.create("/t", b"", &open()).await.unwrap();
            // The followers stop (their connections stay open, nothing is acknowledged); the
            // leader logs a txn that no quorum will have.
            for f in &followers {
                e.servers[*f - 1].pause();
            }
            let lonely = tokio::time::timeout(
                Duration::from_millis(500),
                c.create("/t/unacknowledged", b"", &open()),
            )
            .await;
            assert!(!matches!(lonely, Ok(Ok(_))), "no quorum, no acknowledgement: {lonely:?}");
        });
        // All three die; the followers never read the proposal waiting in their sockets.
        e.server(old).kill();
        for f in &followers {
            e.server(*f).kill();
            e.server(*f).start();
        }
        let new = e.wait_for_leader(Duration::from_secs(30));
        assert_ne!(new, old);
        // The old leader rejoins before the new epoch has a txn: it is ahead of the leader,
        // which truncates it. (Once the new epoch has txns, the leader's next txn after the
        // old leader's last would be of a newer epoch, and like ZooKeeper it sends a SNAP.)
        e.server(old).start();
        wait_until("the old leader follows", Duration::from_secs(30), || {
            mode(&e.server(old).addr()) == "follower"
        });
        rt.block_on(async {
            let c = connect(&e.server(new).addr(), Duration::from_secs(20)).await;
            c.create("/t/after", b"", &open()).await.unwrap();
        });
        let kinds = sync_kinds(&e.server(new).log(), old);
        assert!(
            kinds.iter().any(|k| k.starts_with("TRUNC")),
            "the old leader was truncated: {kinds:?}"
        );
        rt.block_on(async {
            let kids = children_at(&leader_addr, "/t").await;
            assert_eq!(kids, ["after"], "the unacknowledged txn is gone, the new one there");
        });
    }));
    if let Err(p) = result {
        e.dump_logs();
        std::panic::resume_unwind(p);
    }
}

#[test]
fn observer_serves_reads_and_forwards_writes() {
    let _g = serial();
    let e = Ensemble::start(3, 1, "");
    let rt = runtime();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        e.wait_for_leader(Duration::from_secs(30));
        let observer = e.servers[3].addr();
        wait_until("the observer serves", Duration::from_secs(30), || {
            mode(&observer) == "observer"
        });
        rt.block_on(async {
            let c = connect(&observer, Duration::from_secs(20)).await;
            c.create("/obs", b"through the observer", &open()).await.unwrap();
            for s in &e.servers[..3] {
                let v = connect(&s.addr(), Duration::from_secs(20)).await;
                v.sync("/obs").await.unwrap();
                assert_eq!(v.get_data("/obs").await.unwrap().0, b"through the observer");
            }
            let v = connect(&e.servers[0].addr(), Duration::from_secs(20)).await;
            v.set_data("/obs", b"through a voter", None).await.unwrap();
            c.sync("/obs").await.unwrap();
            assert_eq!(c.get_data("/obs").await.unwrap().0, b"through a voter");
        });
        // mntr has ZooKeeper 3.8's ensemble keys for each role (the captures of a real
        // 3-participant + 1-observer ZooKeeper ensemble in tests/data/fourlw-ensemble/), with
        // the same values where they do not depend on timing.
        let leader = e.servers.iter().find(|s| mode(&s.addr()) == "leader").unwrap();
        let follower = e.servers[..3].iter().find(|s| mode(&s.addr()) == "follower").unwrap();
        for (role, addr) in [
            ("leader", leader.addr()),
            ("follower", follower.addr()),
            ("observer", observer.clone()),
        ] {
            let ours = mntr_map(&four(&addr, b"mntr"));
            let zk = mntr_map(&zk_capture(&format!("{role}-mntr.txt")));
            for key in ENSEMBLE_KEYS {
                assert_eq!(
                    ours.contains_key(*key),
                    zk.contains_key(*key),
                    "{role}: {key} (ours {:?}, ZooKeeper's {:?})",
                    ours.get(*key),
                    zk.get(*key)
                );
            }
            for key in [
                "zk_server_state",
                "zk_peer_state",
                "zk_quorum_size",
                "zk_synced_followers",
                "zk_synced_observers",
                "zk_learners",
                "zk_observer_master_id",
            ] {
                if key == "zk_observer_master_id" {
                    // The leader's id: ZooKeeper's was 3, ours is whichever leads.
                    continue;
                }
                assert_eq!(ours.get(key), zk.get(key), "{role}: {key}");
            }
        }
        let ours = mntr_map(&four(&observer, b"mntr"));
        assert_eq!(ours.get("zk_observer_master_id"), Some(&leader.id.to_string()));
    }));
    if let Err(p) = result {
        e.dump_logs();
        std::panic::resume_unwind(p);
    }
}

#[test]
fn five_servers_survive_losing_two() {
    let _g = serial();
    let mut e = Ensemble::start(5, 0, "");
    let rt = runtime();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let old = e.wait_for_leader(Duration::from_secs(30));
        rt.block_on(async {
            let c = connect(&e.hosts(), Duration::from_secs(20)).await;
            c.create("/five", b"1", &open()).await.unwrap();
        });
        let other = (1..=5).find(|i| *i != old).unwrap();
        e.server(old).kill();
        e.server(other).kill();
        let new = e.wait_for_leader(Duration::from_secs(30));
        assert!(new != old && new != other);
        rt.block_on(async {
            let c = connect(&e.hosts(), Duration::from_secs(30)).await;
            c.set_data("/five", b"2", None).await.unwrap();
            for s in e.servers.iter().filter(|s| s.child.is_some()) {
                let v = connect(&s.addr(), Duration::from_secs(20)).await;
                v.sync("/five").await.unwrap();
                assert_eq!(v.get_data("/five").await.unwrap().0, b"2", "server {}", s.id);
            }
        });
    }));
    if let Err(p) = result {
        e.dump_logs();
        std::panic::resume_unwind(p);
    }
}

#[test]
fn partitioned_server_serves_read_only_then_rejoins() {
    let _g = serial();
    let mut e = Ensemble::start(3, 0, "readonlymode.enabled=true\n");
    let rt = runtime();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let leader = e.wait_for_leader(Duration::from_secs(30));
        let lone = (1..=3).find(|i| *i != leader).unwrap();
        let addr = e.server(lone).addr();
        rt.block_on(async {
            let c = connect(&e.hosts(), Duration::from_secs(20)).await;
            c.create("/ro", b"before", &open()).await.unwrap();
            let v = connect(&addr, Duration::from_secs(20)).await;
            v.sync("/ro").await.unwrap();
        });
        // The other two stop answering (stopped, their connections open and silent: cut off
        // as by a partition): the lone server loses its leader after syncLimit and, 2 s
        // later, serves read-only.
        for i in (1..=3).filter(|i| *i != lone) {
            e.server(i).pause();
        }
        wait_until("read-only mode", Duration::from_secs(30), || mode(&addr) == "read-only");
        assert_eq!(four(&addr, b"isro"), "ro");
        rt.block_on(async {
            let mut connector = zk::Client::connector();
            connector.readonly(true).session_timeout(Duration::from_secs(8));
            let ro = tokio::time::timeout(Duration::from_secs(10), connector.connect(&addr))
                .await
                .expect("in time")
                .expect("a read-only session");
            assert_eq!(ro.get_data("/ro").await.unwrap().0, b"before");
            assert_eq!(ro.set_data("/ro", b"x", None).await.unwrap_err(), zk::Error::NotReadOnly);
        });
        // The partition heals: read-write again, with the writes of the ensemble.
        for i in (1..=3).filter(|i| *i != lone) {
            e.server(i).resume();
        }
        wait_until("back in the ensemble", Duration::from_secs(30), || {
            ["leader", "follower"].contains(&mode(&addr).as_str())
        });
        assert_eq!(four(&addr, b"isro"), "rw");
        rt.block_on(async {
            let c = connect(&addr, Duration::from_secs(20)).await;
            c.set_data("/ro", b"after", None).await.unwrap();
        });
    }));
    if let Err(p) = result {
        e.dump_logs();
        std::panic::resume_unwind(p);
    }
}

#[test]
fn resuming_a_session_on_a_server_without_a_leader_is_not_expired() {
    let _g = serial();
    let mut e = Ensemble::start(3, 0, "");
    let rt = runtime();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let leader = e.wait_for_leader(Duration::from_secs(30));
        let lone = (1..=3).find(|i| *i != leader).unwrap();
        let addr = e.server(lone).addr();
        let session = rt.block_on(async {
            let c = connect(&addr, Duration::from_secs(20)).await;
            c.create("/kept", b"", &open()).await.unwrap();
            let s = c.session().clone();
            std::mem::forget(c); // the session stays open (no closeSession)
            s
        });
        // The others stop: the lone server has no leader to revalidate with.
        for i in (1..=3).filter(|i| *i != lone) {
            e.server(i).pause();
        }
        wait_until("no leader", Duration::from_secs(30), || mode(&addr).is_empty());
        {
            // A ConnectRequest resuming the session (a member's password is ZooKeeper's
            // formula): sent away at once, as ZooKeeper does (the connection closes without a
            // ConnectResponse); neither left waiting nor told that the session expired.
            use std::io::{Read, Write};
            let mut body = Vec::new();
            body.extend_from_slice(&0i32.to_be_bytes()); // protocol version
            body.extend_from_slice(&0i64.to_be_bytes()); // last zxid seen
            body.extend_from_slice(&8000i32.to_be_bytes()); // timeout
            body.extend_from_slice(&session.id().0.to_be_bytes());
            let pw = corral_server::session::ids::session_password(session.id().0);
            body.extend_from_slice(&(pw.len() as i32).to_be_bytes());
            body.extend_from_slice(&pw);
            body.push(0); // not read-only
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(&(body.len() as i32).to_be_bytes()).unwrap();
            s.write_all(&body).unwrap();
            let mut answer = Vec::new();
            let r = s.read_to_end(&mut answer);
            assert!(r.is_ok(), "the connection closes within 5 s: {r:?}");
            assert!(answer.is_empty(), "no ConnectResponse (an expired one): {answer:?}");
        }
        for i in (1..=3).filter(|i| *i != lone) {
            e.server(i).resume();
        }
        wait_until("back with a leader", Duration::from_secs(30), || !mode(&addr).is_empty());
        rt.block_on(async {
            let mut connector = zk::Client::connector();
            connector.session(session.clone()).session_timeout(Duration::from_secs(8));
            let c = tokio::time::timeout(Duration::from_secs(10), connector.connect(&addr))
                .await
                .expect("in time")
                .expect("the session resumes");
            assert_eq!(c.session_id(), session.id());
        });
    }));
    if let Err(p) = result {
        e.dump_logs();
        std::panic::resume_unwind(p);
    }
}
