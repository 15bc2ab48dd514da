//! Dynamic reconfiguration (`reconfig`, reconfigEnabled=true) in an ensemble of `corral`
//! processes on loopback, under a write load:
//!
//! * an observer made a voter, then the leader removed: the leader it designates takes over
//!   without an election, writes go on, and nothing acknowledged is lost;
//! * every member's `/zookeeper/config` is the membership the reconfig answered with;
//! * `zoo.cfg.dynamic.<version>` is written and `zoo.cfg` rewritten to point at it, and a
//!   member killed and restarted from the rewritten files rejoins with the new membership;
//! * a server outside the membership, started first, follows once added;
//! * a whole new membership given at once (non-incremental) makes a voter an observer;
//! * a stale `fromConfig` and a new membership without a synced quorum get ZooKeeper's
//!   errors.
//!
//! Mixed ensembles with Apache ZooKeeper are in mixed_ensemble.rs. Every wait is bounded;
//! every process is started here and killed by its own handle.

mod common;

use std::time::Duration;

use common::*;
use zookeeper_client as zk;

#[test]
fn voters_added_and_the_leader_removed_under_load() {
    let _g = serial();
    // Servers 1-3 vote, 4 observes; 5 is not in their membership: it knows them and itself
    // (as ZooKeeper's guide has a joining server configured), and starts later.
    let c = (Kind::Corral, Role::Participant);
    let mut e = Ensemble::configure(&[c, c, c, (Kind::Corral, Role::Observer), c], RECONFIG_EXTRA);
    for s in &e.servers[..4] {
        let cfg = std::fs::read_to_string(s.dir.join("zoo.cfg")).unwrap();
        let cfg: String =
            cfg.lines().filter(|l| !l.starts_with("server.5=")).map(|l| format!("{l}\n")).collect();
        std::fs::write(s.dir.join("zoo.cfg"), cfg).unwrap();
    }
    for s in &mut e.servers[..4] {
        s.start();
    }
    let rt = runtime();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&mut e, &rt)));
    if let Err(p) = result {
        e.dump_logs();
        std::panic::resume_unwind(p);
    }
}

fn run(e: &mut Ensemble, rt: &tokio::runtime::Runtime) {
    let leader = e.wait_for_leader(Duration::from_secs(60));
    let lines = server_lines(e);
    let first = rt.block_on(config_at(&e.server(1).addr()));
    assert!(String::from_utf8_lossy(&first).contains(":observer;"), "server 4 observes");
    assert_ne!(version_of(&first), 0, "the initial membership gets the first epoch's version");
    rt.block_on(async {
        let c = connect(&e.hosts(), Duration::from_secs(20)).await;
        c.create("/load", b"", &open()).await.unwrap();
    });
    let hosts: Vec<String> = e.servers[..4].iter().map(Server::addr).collect();
    let load = Load::start(rt, &hosts.join(","), 3);
    wait_until("writes are acknowledged", Duration::from_secs(30), || load.count() > 50);

    // The observer becomes a voter; a watch on /zookeeper/config fires.
    let (watching, watch) = rt.block_on(async {
        let c = connect(&e.server(2).addr(), Duration::from_secs(20)).await;
        let (_, _, w) = c.get_and_watch_config().await.unwrap();
        (c, w)
    });
    let voter4 = lines[3].replace(":observer;", ":participant;");
    let (data, stat) =
        rt.block_on(reconfig(&e.server(1).addr(), &[&voter4], &[], None)).expect("reconfig");
    let event = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(20), watch.changed()).await.expect("fired")
    });
    assert_eq!(event.event_type, zk::EventType::NodeDataChanged);
    drop(watching);
    let text = String::from_utf8_lossy(&data).to_string();
    assert!(text.contains(&voter4), "{text}");
    assert_eq!(stat.mzxid, version_of(&data), "the txn's zxid is the version");
    wait_for_config(e, rt, &data);
    wait_until("server 4 follows", Duration::from_secs(30), || {
        mode(&e.server(4).addr()) == "follower"
    });

    // A new server: started first (the members do not know it yet), then added; it learns
    // the membership from the members' notifications and follows.
    e.server(5).start();
    let (data, _) =
        rt.block_on(reconfig(&e.server(3).addr(), &[&lines[4]], &[], None)).expect("reconfig");
    assert!(String::from_utf8_lossy(&data).contains(&lines[4]));
    wait_until("server 5 follows", Duration::from_secs(60), || {
        mode(&e.server(5).addr()) == "follower"
    });
    wait_for_config(e, rt, &data);

    // Errors, as ZooKeeper's: a stale fromConfig; a membership whose voters are not synced
    let stale = rt.block_on(reconfig(&e.server(2).addr(), &[], &["4"], Some(1)));
    assert!(matches!(stale, Err(zk::Error::BadVersion)), "{stale:?}");
    // (five voters that do not exist: 5 of 10 synced, no majority).
    let ghosts: Vec<String> = (6..11)
        .map(|id| format!("server.{id}=127.0.0.1:{id}1:{id}2:participant;127.0.0.1:{id}3"))
        .collect();
    let ghosts: Vec<&str> = ghosts.iter().map(String::as_str).collect();
    let unsynced = rt.block_on(reconfig(&e.server(2).addr(), &ghosts, &[], None));
    assert!(matches!(unsynced, Err(zk::Error::UnexpectedErrorCode(-13))), "{unsynced:?}");

    // The leader leaves: it designates a voter that acked the reconfig, which leads at once.
    let before = load.count();
    let other = if leader == 1 { 2 } else { 1 };
    let leaving = leader.to_string();
    let (data, _) =
        rt.block_on(reconfig(&e.server(other).addr(), &[], &[&leaving], None)).expect("reconfig");
    let text = String::from_utf8_lossy(&data).to_string();
    assert!(!text.contains(&format!("server.{leader}=")), "{text}");
    // The others have the new membership before the leader goes: one that had not yet seen
    // the reconfig's COMMIT when its leader died would rightly go LOOKING (as in ZooKeeper).
    for s in e.servers.iter().filter(|s| s.child.is_some() && s.id != leader) {
        wait_until(
            &format!("server {} has the new membership", s.id),
            Duration::from_secs(30),
            || rt.block_on(config_at(&s.addr())) == data,
        );
    }
    e.server(leader).kill();
    let new_leader = e.wait_for_leader(Duration::from_secs(30));
    assert_ne!(new_leader, leader);
    wait_for_config(e, rt, &data);
    wait_until("writes go on after the hand-over", Duration::from_secs(30), || {
        load.count() > before + 100
    });
    // Handed over, not elected: nobody went LOOKING.
    for s in e.servers[..4].iter().filter(|s| s.child.is_some()) {
        assert!(!s.log().contains(" LOOKING"), "server {} went LOOKING", s.id);
        if s.id == new_leader {
            assert!(s.log().contains("LEADING epoch=Some(2)"), "server {} leads epoch 2", s.id);
        }
    }

    // The files: zoo.cfg.dynamic.<version> with the membership, zoo.cfg pointing at it.
    let s = e.server(new_leader);
    let cfg = std::fs::read_to_string(s.dir.join("zoo.cfg")).unwrap();
    let version = format!("{:x}", version_of(&data));
    assert!(cfg.contains(&format!("zoo.cfg.dynamic.{version}")), "{cfg}");
    assert!(!cfg.lines().any(|l| l.starts_with("server.")), "{cfg}");
    let dynamic =
        std::fs::read_to_string(s.dir.join(format!("zoo.cfg.dynamic.{version}"))).unwrap();
    let mut want: Vec<&str> = text.lines().filter(|l| !l.starts_with("version=")).collect();
    want.sort();
    assert_eq!(dynamic, want.join("\n"));
    assert!(s.dir.join("zoo.cfg.bak").exists());

    // A follower killed and restarted from the rewritten files rejoins.
    let follower = [1, 2, 3, 4, 5].into_iter().find(|i| *i != leader && *i != new_leader).unwrap();
    e.server(follower).kill();
    e.server(follower).start();
    wait_until("the restarted follower rejoins", Duration::from_secs(60), || {
        mode(&e.server(follower).addr()) == "follower"
    });
    assert_eq!(rt.block_on(config_at(&e.server(follower).addr())), data);
    // `conf` ends with the active membership (on a server that has not restarted).
    let conf = four(&e.server(new_leader).addr(), b"conf");
    assert!(conf.trim_end().ends_with(text.trim_end()), "{conf}");

    // A whole new membership at once (non-incremental): server 5 observes.
    let current = String::from_utf8(rt.block_on(config_at(&e.server(new_leader).addr()))).unwrap();
    let members: Vec<String> = current
        .lines()
        .filter(|l| l.starts_with("server."))
        .map(|l| {
            if l.starts_with("server.5=") {
                l.replace(":participant;", ":observer;")
            } else {
                l.to_owned()
            }
        })
        .collect();
    let members: Vec<&str> = members.iter().map(String::as_str).collect();
    let (data, _) =
        rt.block_on(reconfig_members(&e.server(follower).addr(), &members)).expect("reconfig");
    assert!(
        String::from_utf8_lossy(&data).contains(&lines[4].replace(":participant;", ":observer;"))
    );
    wait_for_config(e, rt, &data);
    wait_until("server 5 observes", Duration::from_secs(60), || {
        mode(&e.server(5).addr()) == "observer"
    });
    e.wait_for_leader(Duration::from_secs(60));

    let acked = load.finish(rt);
    let n = rt.block_on(assert_identical_trees(e, &acked));
    eprintln!("{} acknowledged writes, {n} znodes on every remaining server", acked.len());
}
