//! Mixed ensembles: `corral` processes and Apache ZooKeeper 3.8 processes (Debian's
//! `zookeeper` package, started here with its own QuorumPeerMain) in one ensemble on loopback,
//! speaking FastLeaderElection and ZAB to each other.
//!
//! * 1 Corral + 2 ZooKeeper, and 2 Corral + 1 ZooKeeper: a leader of each kind killed with
//!   SIGKILL under a write load; the other kind takes over, the killed server rejoins (DIFF or
//!   TRUNC from a leader of the other kind), and at the end every server holds an identical
//!   tree (data and Stat of every znode) with every acknowledged write;
//! * a server restarted with an empty data directory is sent a SNAP by a leader of the other
//!   kind, both ways;
//! * an observer of each kind behind a leader of the other kind;
//! * a rolling migration under a write load: a ZooKeeper ensemble turned into a Corral one a
//!   server at a time (the first from `corral import-zookeeper` of its data directory, the
//!   others from empty ones), then back to ZooKeeper the same way; nothing acknowledged lost;
//! * TLS between servers (sslQuorum): the leader kills above over TLS, ZooKeeper's rolling
//!   enablement (portUnification, then sslQuorum, then TLS only) under load, and a plaintext
//!   server refused by TLS-only peers.
//!
//! Every wait is bounded; every process is started here and killed by its own handle. The
//! tests skip, saying why, where Apache ZooKeeper is not installed (ci/test.sh installs it).

mod common;

use std::time::Duration;

use common::*;
use zookeeper_client as zk;

const C: (Kind, Role) = (Kind::Corral, Role::Participant);
const Z: (Kind, Role) = (Kind::ZooKeeper, Role::Participant);

/// A mixed-ensemble scenario: `members` configured (`extra` in every zoo.cfg) and started in
/// `order` ([`start_in_order`]), then `f`; on failure every server's last log lines are
/// printed first. Skipped, saying why, without Apache ZooKeeper; one scenario at a time.
fn scenario(
    members: &[(Kind, Role)],
    extra: &str,
    order: &[usize],
    f: impl FnOnce(&mut Ensemble, &tokio::runtime::Runtime),
) {
    if !zookeeper_installed() {
        return;
    }
    let _g = serial();
    let mut e = Ensemble::configure(members, extra);
    let rt = runtime();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        start_in_order(&mut e, order);
        f(&mut e, &rt)
    }));
    if let Err(p) = result {
        e.dump_logs();
        std::panic::resume_unwind(p);
    }
}

/// Starts the servers in `order`: the first two (each once the one before answers on its
/// client port; ZooKeeper starts its election when its client port is up) elect the higher
/// id, as every history is empty, before the others start and follow it.
fn start_in_order(e: &mut Ensemble, order: &[usize]) {
    for (i, id) in order.iter().enumerate() {
        e.server(*id).start();
        let addr = e.server(*id).addr();
        wait_until("the client port answers", Duration::from_secs(60), || {
            !four(&addr, b"srvr").is_empty()
        });
        if i == 1 {
            let leader = e.wait_for_leader(Duration::from_secs(60));
            assert_eq!(leader, order[0].max(order[1]), "the higher id of the first two leads");
        }
    }
}

/// Kills the leader under the load, waits for a new leader and for writes through it, brings
/// the old leader back and waits until it is synced and writes go on. Returns (old, new).
fn kill_leader_under_load(
    e: &mut Ensemble,
    load: &Load,
    expect_new: Option<Kind>,
) -> (usize, usize) {
    let old = e.wait_for_leader(Duration::from_secs(60));
    let n = load.count();
    wait_until("writes before the kill", Duration::from_secs(60), || load.count() >= n + 150);
    e.server(old).kill();
    let new = e.wait_for_leader(Duration::from_secs(60));
    assert_ne!(new, old, "a new leader");
    if let Some(kind) = expect_new {
        assert_eq!(e.server(new).kind, kind, "the survivors are of one kind");
    }
    let n = load.count();
    wait_until("writes after the kill", Duration::from_secs(60), || load.count() >= n + 150);
    let syncs_before = learner_syncs(e.server(old)).len();
    e.server(old).start();
    let addr = e.server(old).addr();
    wait_until("the old leader follows", Duration::from_secs(60), || mode(&addr) == "follower");
    let syncs = learner_syncs(e.server(old));
    assert!(syncs.len() > syncs_before, "the old leader logged its sync: {syncs:?}");
    eprintln!(
        "leader {old} ({:?}) killed; {new} ({:?}) leads; {old} rejoined by {}",
        e.servers[old - 1].kind,
        e.servers[new - 1].kind,
        syncs.last().unwrap()
    );
    let n = load.count();
    wait_until("writes with the old leader back", Duration::from_secs(60), || {
        load.count() >= n + 150
    });
    (old, new)
}

/// The scenario of both kill tests: `first` leads at start (started after the others...
/// see `start_in_order`), is killed under load, a leader of the other kind takes over, is
/// killed in turn, and every server ends with the same tree and every acknowledged write.
fn leaders_of_both_kinds_killed(members: &[(Kind, Role)], order: &[usize], extra: &str) {
    scenario(members, extra, order, |e, rt| {
        let first = e.wait_for_leader(Duration::from_secs(60));
        let first_kind = e.server(first).kind;
        let other = match first_kind {
            Kind::Corral => Kind::ZooKeeper,
            Kind::ZooKeeper => Kind::Corral,
        };
        assert_eq!(
            members.iter().filter(|m| m.0 == first_kind).count(),
            1,
            "the first leader is the only one of its kind: {first} of {members:?}"
        );
        rt.block_on(async {
            let c = connect(&e.hosts(), Duration::from_secs(30)).await;
            c.create("/load", b"", &open()).await.unwrap();
        });
        let load = Load::start(rt, &e.hosts(), 3);
        // The sole server of its kind leads and is killed: the two others are of one kind.
        let (_, second) = kill_leader_under_load(e, &load, Some(other));
        assert_eq!(e.server(second).kind, other);
        // The leader of the other kind is killed in turn (either kind may follow it).
        kill_leader_under_load(e, &load, None);
        let acked = load.finish(rt);
        let znodes = rt.block_on(assert_identical_trees(e, &acked));
        eprintln!("{} writes acknowledged, {znodes} znodes identical on every server", acked.len());
    });
}

#[test]
fn one_corral_two_zookeeper_leaders_of_both_kinds_killed_under_load() {
    // Corral (myid 3) wins the first election (the highest id, all histories empty); killed,
    // a ZooKeeper server leads the Corral server when it comes back.
    leaders_of_both_kinds_killed(&[Z, Z, C], &[3, 1, 2], "");
}

#[test]
fn two_corral_one_zookeeper_leaders_of_both_kinds_killed_under_load() {
    // ZooKeeper (myid 3) is up first and wins; killed, a Corral server leads it back in.
    leaders_of_both_kinds_killed(&[C, C, Z], &[3, 1, 2], "");
}

/// TLS between servers (sslQuorum=true, JKS stores whose certificate names 127.0.0.1): the
/// same kills under load, every election and quorum connection encrypted and both ends'
/// certificates checked, Corral and ZooKeeper dialling and accepting each other.
fn quorum_tls_config() -> String {
    let d = format!("{}/src/tls/testdata", env!("CARGO_MANIFEST_DIR"));
    format!(
        "sslQuorum=true\nssl.quorum.keyStore.location={d}/keystore.jks\n\
         ssl.quorum.keyStore.password=apassword\nssl.quorum.trustStore.location={d}/truststore.jks\n\
         ssl.quorum.trustStore.password=apassword\n"
    )
}

#[test]
fn quorum_tls_one_corral_two_zookeeper_leaders_of_both_kinds_killed_under_load() {
    leaders_of_both_kinds_killed(&[Z, Z, C], &[3, 1, 2], &quorum_tls_config());
}

#[test]
fn quorum_tls_two_corral_one_zookeeper_leaders_of_both_kinds_killed_under_load() {
    leaders_of_both_kinds_killed(&[C, C, Z], &[3, 1, 2], &quorum_tls_config());
}

/// Appends `lines` to server `id`'s zoo.cfg (a later key wins).
fn reconfigure(e: &mut Ensemble, id: usize, lines: &str) {
    let cfg = e.server(id).dir.join("zoo.cfg");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(lines);
    std::fs::write(&cfg, text).unwrap();
}

/// Restarts server `id` and waits until it serves again (following or leading).
fn restart(e: &mut Ensemble, id: usize) {
    e.server(id).kill();
    e.server(id).start();
    let addr = e.server(id).addr();
    wait_until("the restarted server serves", Duration::from_secs(60), || {
        matches!(mode(&addr).as_str(), "follower" | "leader")
    });
}

/// ZooKeeper's documented way to turn on quorum TLS without downtime, on a mixed ensemble
/// under a write load: every server with portUnification=true (dialling plaintext, accepting
/// both), then sslQuorum=true a server at a time (dialling TLS), then portUnification=false a
/// server at a time (TLS only). Nothing acknowledged is lost and the trees end identical.
#[test]
#[ignore = "ZooKeeper 3.8.0 itself loses acknowledged writes under this procedure (1 of 8 runs \
            of a ZooKeeper-only ensemble), see docs/compatibility.md 'Known bugs'; run with \
            --ignored (in a loop)"]
fn rolling_quorum_tls_enablement_across_kinds_under_load() {
    let members = [C, Z, C];
    let extra = quorum_tls_config().replace("sslQuorum=true\n", "portUnification=true\n");
    scenario(&members, &extra, &[3, 1, 2], |e, rt| {
        e.wait_for_leader(Duration::from_secs(60));
        rt.block_on(async {
            let c = connect(&e.hosts(), Duration::from_secs(30)).await;
            c.create("/load", b"", &open()).await.unwrap();
        });
        let load = Load::start(rt, &e.hosts(), 2);
        for (step, lines) in
            [("sslQuorum", "sslQuorum=true\n"), ("TLS only", "portUnification=false\n")]
        {
            for id in [1, 2, 3] {
                reconfigure(e, id, lines);
                let n = load.count();
                restart(e, id);
                wait_until("writes go on", Duration::from_secs(60), || load.count() >= n + 50);
                eprintln!(
                    "{step}: server {id} ({:?}) restarted; {} writes",
                    e.server(id).kind,
                    load.count()
                );
            }
        }
        e.wait_for_leader(Duration::from_secs(60));
        let acked = load.finish(rt);
        let znodes = rt.block_on(assert_identical_trees(e, &acked));
        eprintln!("{} writes acknowledged, {znodes} znodes identical on every server", acked.len());
    });
}

/// With sslQuorum=true and no portUnification a server refuses a plaintext peer, saying why;
/// the two TLS servers form the quorum without it.
#[test]
fn a_plaintext_server_is_refused_by_tls_only_peers() {
    let members = [C, C, C];
    scenario(&members, "", &[], |e, _rt| {
        for id in [2, 3] {
            reconfigure(e, id, &quorum_tls_config());
        }
        for id in [3, 2, 1] {
            e.server(id).start();
        }
        let (a2, a3) = (e.server(2).addr(), e.server(3).addr());
        wait_until("the TLS servers form a quorum", Duration::from_secs(60), || {
            let (m2, m3) = (mode(&a2), mode(&a3));
            (m2 == "leader" && m3 == "follower") || (m2 == "follower" && m3 == "leader")
        });
        let leader = if mode(&a2) == "leader" { 2 } else { 3 };
        std::thread::sleep(Duration::from_secs(3));
        let plain = e.server(1).addr();
        assert!(!matches!(mode(&plain).as_str(), "follower" | "leader"), "server 1 was let in");
        let log = e.server(leader).log();
        assert!(
            log.contains("refused a connection from a peer") && log.contains("TLS from"),
            "the TLS leader says why it refused the plaintext peer"
        );
    });
}

/// Quorum SASL (DIGEST-MD5, learners and servers required to authenticate) for every
/// member, the JAAS file given as `-Djava.security.auth.login.config` to both kinds; the
/// learner login of `wrong` (if any) has a bad password.
fn quorum_sasl_setup(e: &mut Ensemble, n: usize, wrong: Option<usize>) {
    let root = e.server(1).dir.parent().unwrap().to_path_buf();
    for (name, pw) in [("good", "secret"), ("bad", "guess")] {
        std::fs::write(
            root.join(format!("jaas-{name}.conf")),
            format!(
                "QuorumServer {{ org.apache.zookeeper.server.auth.DigestLoginModule required user_test=\"secret\"; }};\n\
                 QuorumLearner {{ org.apache.zookeeper.server.auth.DigestLoginModule required username=\"test\" password=\"{pw}\"; }};\n"
            ),
        )
        .unwrap();
    }
    for id in 1..=n {
        let name = if Some(id) == wrong { "bad" } else { "good" };
        let jaas = root.join(format!("jaas-{name}.conf"));
        e.server(id).props.push(format!("java.security.auth.login.config={}", jaas.display()));
    }
}

// The digest-mismatch checker: a ZooKeeper mismatch while following (or leading) is
// reported; one logged while the follower shuts down after losing its leader (its CommitProcessor
// racing the reload of its database) is not; Corral's are always.
#[test]
fn the_digest_mismatch_checker_rejects_what_it_must() {
    let zk_following = "x Learner - FOLLOWING - LEADER ELECTION TOOK - 3 MS\n\
        [CommitProcessor:2] WARN DataTree - Message:Digests are not matching. Value is Zxid.\n";
    assert!(common::digest_mismatch_in(Kind::ZooKeeper, zk_following).is_some());
    let zk_shutdown = "x Learner - FOLLOWING - LEADER ELECTION TOOK - 3 MS\n\
        x Learner - Disconnected from leader (with address: /127.0.0.1:1). Sync state: true\n\
        x FileTxnSnapLog - 30 txns loaded in 2 ms\n\
        [CommitProcessor:2] WARN DataTree - Message:Digests are not matching. Value is Zxid.\n\
        [CommitProcessor:2] ERROR DataTree - First digest mismatch on txn: 1,2,3,4,15\n";
    assert_eq!(common::digest_mismatch_in(Kind::ZooKeeper, zk_shutdown), None);
    let zk_after = format!(
        "{zk_shutdown}x Learner - FOLLOWING - LEADER ELECTION TOOK - 9 MS\n\
         [CommitProcessor:2] WARN DataTree - Message:Digests are not matching. Value is Zxid.\n"
    );
    assert!(common::digest_mismatch_in(Kind::ZooKeeper, &zk_after).is_some(), "following again");
    // Loading at startup: mismatches replaying a log that went backwards are not reported;
    // one in a log that did not, or one after the load, is.
    let zk_reload = "[main] INFO FileSnap - Reading snapshot /d/version-2/snapshot.100000000\n\
        [main] ERROR FileTxnSnapLog - 8589934663(highestZxid) > 8589934593(next log) for type 15\n\
        [main] WARN DataTree - Message:Digests are not matching. Value is Zxid. Value:8589934593\n\
        [main] INFO ZKDatabase - Snapshot loaded in 88 ms, highest zxid is 0x200000047\n";
    assert_eq!(common::digest_mismatch_in(Kind::ZooKeeper, zk_reload), None);
    let zk_reload_clean_log = zk_reload.replace("(highestZxid) >", "(highestZxid) =");
    assert!(common::digest_mismatch_in(Kind::ZooKeeper, &zk_reload_clean_log).is_some());
    let zk_unfinished = "[main] INFO FileSnap - Reading snapshot /d/version-2/snapshot.1\n\
        [main] WARN DataTree - Message:Digests are not matching. Value is Zxid. Value:1\n";
    assert!(common::digest_mismatch_in(Kind::ZooKeeper, zk_unfinished).is_some());
    let zk_reload_then = format!("{zk_reload}{}", zk_following.lines().nth(1).unwrap());
    assert!(common::digest_mismatch_in(Kind::ZooKeeper, &zk_reload_then).is_some(), "after it");
    let corral = "Disconnected from leader\nWARN corral_server::db: tree digest mismatch after applying a txn\n";
    assert!(common::digest_mismatch_in(Kind::Corral, corral).is_some());
}

/// Quorum SASL with Kerberos sections for every member, as ZooKeeper documents it: each
/// server accepts tickets for `zkquorum/127.0.0.1` and logs in as `learner/127.0.0.1`; the
/// JAAS file and the KDC's krb5.conf given to both kinds as `-D` properties.
fn quorum_kerberos_setup(e: &mut Ensemble, kdc: &common::kdc::Kdc, n: usize) {
    let root = e.server(1).dir.parent().unwrap().to_path_buf();
    let section = |name: &str, principal: &str, keytab: &str| {
        format!(
            "{name} {{\n  com.sun.security.auth.module.Krb5LoginModule required\n  useKeyTab=true\n  keyTab=\"{}\"\n  storeKey=true\n  useTicketCache=false\n  principal=\"{principal}@{KRB_REALM}\";\n}};\n",
            kdc.path(keytab)
        )
    };
    let jaas = root.join("jaas-kerberos.conf");
    std::fs::write(
        &jaas,
        section("QuorumServer", "zkquorum/127.0.0.1", "quorum.keytab")
            + &section("QuorumLearner", "learner/127.0.0.1", "learner.keytab"),
    )
    .unwrap();
    for id in 1..=n {
        let s = e.server(id);
        s.props.push(format!("java.security.auth.login.config={}", jaas.display()));
        s.props.push(format!("java.security.krb5.conf={}", kdc.path("krb5.conf")));
    }
}

const KRB_REALM: &str = "CORRAL.TEST";

/// Quorum SASL with Kerberos between Corral and ZooKeeper servers (the service principal
/// `zkquorum/_HOST`, each peer's host put in): the ensemble forms, a leader killed under load
/// is replaced, nothing acknowledged is lost, and ZooKeeper's log shows Kerberos both ways.
#[test]
fn quorum_kerberos_across_kinds_leader_killed_under_load() {
    let extra = format!("{QUORUM_SASL}quorum.auth.kerberos.servicePrincipal=zkquorum/_HOST\n");
    if !zookeeper_installed() {
        return;
    }
    let Some(kdc) = common::kdc::Kdc::start(
        KRB_REALM,
        &["zkquorum/127.0.0.1:quorum.keytab", "learner/127.0.0.1:learner.keytab"],
    ) else {
        return;
    };
    scenario(&[C, Z, C], &extra, &[], |e, rt| {
        quorum_kerberos_setup(e, &kdc, 3);
        let zk = authenticated_ensemble_survives_a_leader_kill(e, rt);
        assert!(
            zk.contains("learner/127.0.0.1@CORRAL.TEST"),
            "ZooKeeper authenticated a Kerberos learner"
        );
    });
}

/// Starts a [C, Z, C] ensemble whose members authenticate each other, kills its leader under
/// load, checks the trees and every acknowledged write, and that ZooKeeper (server 2)
/// authenticated Corral learners and was authenticated by them; returns ZooKeeper's log.
fn authenticated_ensemble_survives_a_leader_kill(
    e: &mut Ensemble,
    rt: &tokio::runtime::Runtime,
) -> String {
    start_in_order(e, &[3, 1, 2]);
    rt.block_on(async {
        let c = connect(&e.hosts(), Duration::from_secs(30)).await;
        c.create("/load", b"", &open()).await.unwrap();
    });
    let load = Load::start(rt, &e.hosts(), 2);
    kill_leader_under_load(e, &load, None);
    let acked = load.finish(rt);
    let znodes = rt.block_on(assert_identical_trees(e, &acked));
    eprintln!("{} writes acknowledged, {znodes} znodes identical", acked.len());
    let zk = e.server(2).log();
    assert!(
        zk.contains("Successfully completed the authentication using SASL. learner addr")
            && zk.contains("Successfully completed the authentication using SASL. server addr"),
        "ZooKeeper's log shows SASL both ways"
    );
    zk
}

const QUORUM_SASL: &str = "quorum.auth.enableSasl=true\nquorum.auth.learnerRequireSasl=true\n\
                           quorum.auth.serverRequireSasl=true\n";

#[test]
fn quorum_sasl_across_kinds_leader_killed_under_load() {
    scenario(&[C, Z, C], QUORUM_SASL, &[], |e, rt| {
        quorum_sasl_setup(e, 3, None);
        authenticated_ensemble_survives_a_leader_kill(e, rt);
    });
}

#[test]
fn a_server_with_a_wrong_quorum_password_is_refused_by_both_kinds() {
    scenario(&[C, Z, C], QUORUM_SASL, &[], |e, _rt| {
        quorum_sasl_setup(e, 3, Some(1));
        for id in [3, 2, 1] {
            e.server(id).start();
        }
        let (a2, a3) = (e.server(2).addr(), e.server(3).addr());
        wait_until("servers 2 and 3 form a quorum", Duration::from_secs(60), || {
            let (m2, m3) = (mode(&a2), mode(&a3));
            (m2 == "leader" && m3 == "follower") || (m2 == "follower" && m3 == "leader")
        });
        std::thread::sleep(Duration::from_secs(3));
        let a1 = e.server(1).addr();
        assert!(!matches!(mode(&a1).as_str(), "follower" | "leader"), "server 1 was let in");
    });
}

/// A server of `victim_kind` is emptied and restarted while a leader of the other kind leads
/// with more txns than its window (commitLogCount=100; ZooKeeper's txn log sync is off with
/// snapshotSizeFactor=-1): it is sent a SNAP and serves every znode.
fn snap_from_other_kind(members: &[(Kind, Role)], order: &[usize]) {
    scenario(members, "commitLogCount=100\nsnapshotSizeFactor=-1\n", order, |e, rt| {
        let leader = e.wait_for_leader(Duration::from_secs(60));
        let leader_kind = e.server(leader).kind;
        let victim = (1..=members.len())
            .find(|i| e.servers[*i - 1].kind != leader_kind)
            .expect("a server of the other kind");
        rt.block_on(async {
            let c = connect(&e.hosts(), Duration::from_secs(30)).await;
            c.create("/snap", b"", &open()).await.unwrap();
            for i in 0..300 {
                c.create(&format!("/snap/n{i:03}"), format!("v{i}").as_bytes(), &open())
                    .await
                    .unwrap();
            }
            c.set_data("/snap/n007", b"changed", None).await.unwrap();
            c.delete("/snap/n008", None).await.unwrap();
        });
        e.server(victim).kill();
        e.server(victim).wipe_data();
        e.server(victim).start();
        let addr = e.server(victim).addr();
        wait_until("the emptied server follows", Duration::from_secs(60), || {
            mode(&addr) == "follower"
        });
        let syncs = learner_syncs(e.server(victim));
        assert_eq!(syncs.last().map(String::as_str), Some("SNAP"), "synced by SNAP: {syncs:?}");
        rt.block_on(async {
            // A write after the SNAP reaches it too.
            let c = connect(&e.server(leader).addr(), Duration::from_secs(30)).await;
            c.create("/snap/after", b"", &open()).await.unwrap();
            let znodes = assert_identical_trees(e, &[]).await;
            assert!(znodes > 300, "{znodes} znodes");
        });
    });
}

#[test]
fn zookeeper_leader_sends_snap_to_corral() {
    snap_from_other_kind(&[C, Z, Z], &[3, 2, 1]);
}

#[test]
fn corral_leader_sends_snap_to_zookeeper() {
    snap_from_other_kind(&[Z, Z, C], &[3, 1, 2]);
}

/// Waits until server `id` serves as a follower and writes go on through the others.
fn rejoined(e: &mut Ensemble, load: &Load, id: usize) {
    let addr = e.server(id).addr();
    wait_until("the replaced server serves", Duration::from_secs(60), || {
        ["follower", "leader"].contains(&mode(&addr).as_str())
    });
    let n = load.count();
    wait_until("writes go on", Duration::from_secs(60), || load.count() >= n + 100);
}

#[test]
fn rolling_migration_zookeeper_to_corral_and_back_under_load() {
    scenario(&[Z, Z, Z], "", &[1, 2, 3], |e, rt| {
        e.wait_for_leader(Duration::from_secs(60));
        rt.block_on(async {
            let c = connect(&e.hosts(), Duration::from_secs(30)).await;
            c.create("/load", b"", &open()).await.unwrap();
        });
        let load = Load::start(rt, &e.hosts(), 3);
        wait_until("writes", Duration::from_secs(60), || load.count() >= 200);
        // ZooKeeper → Corral, one server at a time: the first converts its own data
        // directory (and is synced by DIFF, or TRUNC if it logged a txn not committed), the
        // others start empty (SNAP).
        for id in 1..=3 {
            e.server(id).kill();
            if id == 1 {
                e.server(id).import_into_corral();
            } else {
                e.server(id).replace_by(Kind::Corral);
            }
            e.server(id).start();
            rejoined(e, &load, id);
            let syncs = learner_syncs(e.server(id));
            eprintln!("server {id} is Corral now, synced by {syncs:?}");
            if id == 1 {
                assert_ne!(syncs.last().map(String::as_str), Some("SNAP"), "{syncs:?}");
            }
        }
        assert!(e.servers.iter().all(|s| s.kind == Kind::Corral));
        e.wait_for_leader(Duration::from_secs(60));
        let n = load.count();
        wait_until("writes in the Corral ensemble", Duration::from_secs(60), || {
            load.count() >= n + 200
        });
        // And back: Corral → ZooKeeper, one server at a time, from empty data directories.
        for id in 1..=3 {
            e.server(id).kill();
            e.server(id).replace_by(Kind::ZooKeeper);
            e.server(id).start();
            rejoined(e, &load, id);
            eprintln!(
                "server {id} is ZooKeeper again, synced by {:?}",
                learner_syncs(e.server(id))
            );
        }
        let acked = load.finish(rt);
        let znodes = rt.block_on(assert_identical_trees(e, &acked));
        eprintln!("{} writes acknowledged, {znodes} znodes identical on every server", acked.len());
    });
}

/// A session on `addr`, optionally authenticated as `user`.
async fn session_on(addr: &str, user: Option<&str>) -> zookeeper_client::Client {
    let c = connect(addr, Duration::from_secs(30)).await;
    if let Some(user) = user {
        c.auth("digest".into(), format!("{user}:secret").into_bytes()).await.unwrap();
    }
    c
}

/// Clients of members of both kinds, with a leader of `members[2]`'s kind: forwarded writes
/// carry their client's auth (ACLs checked by the leader), watches fire for writes made
/// through the other kind, ephemerals of an observer's session are everywhere and go when it
/// closes, and a session moves between kinds (its old connection answered SESSIONMOVED).
fn clients_across_kinds(members: &[(Kind, Role)]) {
    use zookeeper_client as zk;
    scenario(members, "", &[3, 1, 2, 4, 5], |e, rt| {
        let leader = e.wait_for_leader(Duration::from_secs(60));
        assert_eq!(leader, 3);
        for id in [4, 5] {
            let addr = e.server(id).addr();
            wait_until("the observer serves", Duration::from_secs(60), || {
                mode(&addr) == "observer"
            });
        }
        let of = |kind: Kind, role: Role| -> String {
            let i = members.iter().position(|m| *m == (kind, role)).expect("such a member");
            e.servers[i].addr()
        };
        let pairs = [
            (of(Kind::ZooKeeper, Role::Participant), of(Kind::Corral, Role::Participant)),
            (of(Kind::Corral, Role::Participant), of(Kind::ZooKeeper, Role::Participant)),
            (of(Kind::ZooKeeper, Role::Observer), of(Kind::Corral, Role::Observer)),
            (of(Kind::Corral, Role::Observer), of(Kind::ZooKeeper, Role::Participant)),
        ];
        rt.block_on(async {
            for (n, (x, y)) in pairs.iter().enumerate() {
                // Auth travels with a forwarded write: alice's node, written by alice through
                // the other kind, refused to bob.
                let alice = session_on(x, Some("alice")).await;
                let path = format!("/acl{n}");
                let creator = zk::CreateMode::Persistent.with_acls(zk::Acls::creator_all());
                alice.create(&path, b"a", &creator).await.unwrap();
                let alice_too = session_on(y, Some("alice")).await;
                alice_too.sync(&path).await.unwrap();
                alice_too.set_data(&path, b"b", None).await.unwrap();
                let bob = session_on(y, Some("bob")).await;
                bob.sync(&path).await.unwrap();
                assert_eq!(bob.set_data(&path, b"c", None).await.unwrap_err(), zk::Error::NoAuth);
                assert_eq!(bob.get_data(&path).await.unwrap_err(), zk::Error::NoAuth);
                let (acl, _) = alice.get_acl(&path).await.unwrap();
                assert_eq!(acl.len(), 1, "{acl:?}");

                // A watch set through one kind fires for a write through the other.
                let watched = format!("/watched{n}");
                alice.create(&watched, b"0", &open()).await.unwrap();
                bob.sync(&watched).await.unwrap();
                let (_, _, w) = bob.get_and_watch_data(&watched).await.unwrap();
                alice.set_data(&watched, b"1", None).await.unwrap();
                let ev = tokio::time::timeout(Duration::from_secs(10), w.changed())
                    .await
                    .expect("the watch fires");
                assert_eq!(ev.event_type, zk::EventType::NodeDataChanged);

                // An ephemeral: everywhere while its session lives, gone when it closes.
                let eph = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
                let owner = session_on(x, None).await;
                let ep = format!("/eph{n}");
                owner.create(&ep, b"", &eph).await.unwrap();
                bob.sync(&ep).await.unwrap();
                let (_, st) = bob.get_data(&ep).await.unwrap();
                assert_eq!(st.ephemeral_owner, owner.session_id().0);

                // The session moves to the other kind: its ephemeral stays its own; a write on
                // its old connection is refused SESSIONMOVED, which closes that connection
                // (a connection-level error in ZooKeeper): the client sees it lost.
                let mut connector = zk::Client::connector();
                connector.session(owner.session().clone()).session_timeout(Duration::from_secs(8));
                let moved = tokio::time::timeout(Duration::from_secs(10), connector.connect(y))
                    .await
                    .expect("resumed in time")
                    .expect("the session resumes on the other kind");
                assert_eq!(moved.session_id(), owner.session_id());
                moved.sync(&ep).await.unwrap();
                assert_eq!(
                    moved.get_data(&ep).await.unwrap().1.ephemeral_owner,
                    st.ephemeral_owner
                );
                let err = owner.create(&format!("{ep}-old"), b"", &eph).await.unwrap_err();
                assert_eq!(err, zk::Error::ConnectionLoss, "pair {n}: a write from the old server");
                alice.sync(&ep).await.unwrap();
                assert!(alice.check_stat(&format!("{ep}-old")).await.unwrap().is_none());
                // Dropped, the session closes (or, at worst, expires): the ephemeral goes.
                drop(owner);
                drop(moved);
                let deadline = std::time::Instant::now() + Duration::from_secs(20);
                loop {
                    alice.sync(&ep).await.unwrap();
                    if alice.check_stat(&ep).await.unwrap().is_none() {
                        break;
                    }
                    assert!(std::time::Instant::now() < deadline, "{ep} outlived its session");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            let znodes = assert_identical_trees(e, &[]).await;
            assert!(znodes > 2 * pairs.len());
            // /zookeeper/config: the membership, as every ZooKeeper 3.5+ member has it (the
            // same text, mzxid the config version, data version -1; mtime its own start).
            let mut texts = Vec::new();
            for s in &e.servers {
                let c = connect(&s.addr(), Duration::from_secs(20)).await;
                let (data, stat) = c.get_data("/zookeeper/config").await.unwrap();
                assert_eq!((stat.mzxid, stat.version), (0, -1), "server {} ({:?})", s.id, s.kind);
                texts.push((s.kind, String::from_utf8(data).unwrap()));
            }
            assert!(texts[0].1.contains("server.1=") && texts[0].1.ends_with("version=0"));
            for (kind, t) in &texts {
                assert_eq!(t, &texts[0].1, "{kind:?}'s /zookeeper/config");
            }
        });
    });
}

#[test]
fn clients_across_kinds_with_a_corral_leader() {
    // Corral leads ZooKeeper followers, a ZooKeeper observer and a Corral observer.
    let obs = |k| (k, Role::Observer);
    clients_across_kinds(&[Z, Z, C, obs(Kind::ZooKeeper), obs(Kind::Corral)]);
}

#[test]
fn clients_across_kinds_with_a_zookeeper_leader() {
    // ZooKeeper leads Corral followers, a Corral observer and a ZooKeeper observer.
    let obs = |k| (k, Role::Observer);
    clients_across_kinds(&[C, C, Z, obs(Kind::Corral), obs(Kind::ZooKeeper)]);
}

/// A leader of one kind logs a txn its followers (of the other kind) never receive; all die;
/// the followers elect a leader of their kind, which truncates the old leader when it
/// rejoins (before the new epoch has a txn: after that, both kinds would send a SNAP, as no
/// TRUNC crosses an epoch): the unacknowledged txn is gone everywhere.
fn truncated_by_other_kind(members: &[(Kind, Role)]) {
    scenario(members, "", &[3, 1, 2], |e, rt| {
        let old = e.wait_for_leader(Duration::from_secs(60));
        assert_eq!(old, 3);
        let leader_addr = e.server(old).addr();
        rt.block_on(async {
            let c = connect(&leader_addr, Duration::from_secs(30)).await;
            c.create("/t", b"", &open()).await.unwrap();
            for f in [1, 2] {
                e.server(f).pause();
            }
            let lonely = tokio::time::timeout(
                Duration::from_millis(1000),
                c.create("/t/unacknowledged", b"", &open()),
            )
            .await;
            assert!(!matches!(lonely, Ok(Ok(_))), "no quorum, no acknowledgement: {lonely:?}");
        });
        e.server(old).kill();
        for f in [1, 2] {
            e.server(f).kill();
            e.server(f).start();
        }
        let new = e.wait_for_leader(Duration::from_secs(60));
        assert_ne!(e.servers[new - 1].kind, e.servers[old - 1].kind);
        // Back before the new epoch has a txn: ahead of the new leader, truncated.
        e.server(old).start();
        let addr = e.server(old).addr();
        wait_until("the old leader follows", Duration::from_secs(60), || mode(&addr) == "follower");
        rt.block_on(async {
            let c = connect(&e.server(new).addr(), Duration::from_secs(30)).await;
            c.create("/t/after", b"", &open()).await.unwrap();
        });
        let syncs = learner_syncs(e.server(old));
        assert_eq!(syncs.last().map(String::as_str), Some("TRUNC"), "{syncs:?}");
        rt.block_on(async {
            assert_eq!(children_at(&addr, "/t").await, ["after"]);
            assert_identical_trees(e, &[]).await;
        });
    });
}

#[test]
fn zookeeper_leader_truncates_corral() {
    truncated_by_other_kind(&[Z, Z, C]);
}

#[test]
fn corral_leader_truncates_zookeeper() {
    truncated_by_other_kind(&[C, C, Z]);
}

/// Dynamic reconfiguration across kinds: with a leader of one kind, an observer of the other
/// kind is made a voter (a reconfig sent to a server of the other kind, forwarded), then the
/// leader is removed and hands over to a voter it designates (one that acked), under a write
/// load. Every server ends with
/// the reply's membership in /zookeeper/config, an identical tree and every acknowledged
/// write.
fn reconfig_across_kinds(members: &[(Kind, Role)], order: &[usize]) {
    scenario(members, RECONFIG_EXTRA, order, |e, rt| {
        let leader = e.wait_for_leader(Duration::from_secs(60));
        let leader_kind = e.server(leader).kind;
        let lines = server_lines(e);
        let observer = members.iter().position(|m| m.1 == Role::Observer).unwrap() + 1;
        assert_ne!(e.server(observer).kind, leader_kind);
        let via = (1..=members.len())
            .find(|i| *i != leader && e.servers[*i - 1].kind != leader_kind)
            .expect("a server of the other kind");
        rt.block_on(async {
            let c = connect(&e.hosts(), Duration::from_secs(30)).await;
            c.create("/load", b"", &open()).await.unwrap();
        });
        let load = Load::start(rt, &e.hosts(), 3);
        wait_until("writes", Duration::from_secs(60), || load.count() > 100);

        let voter = lines[observer - 1].replace(":observer;", ":participant;");
        let (data, _) = rt
            .block_on(reconfig(&e.server(via).addr(), &[&voter], &[], None))
            .expect("reconfig through a server of the other kind");
        assert!(String::from_utf8_lossy(&data).contains(&voter));
        wait_for_config(e, rt, &data);
        let addr = e.server(observer).addr();
        wait_until("the observer follows as a voter", Duration::from_secs(60), || {
            mode(&addr) == "follower"
        });

        let n = load.count();
        let removed =
            rt.block_on(reconfig(&e.server(via).addr(), &[], &[&leader.to_string()], None));
        // Out of the membership, the old leader serves no one: it goes.
        e.server(leader).kill();
        let new = e.wait_for_leader(Duration::from_secs(60));
        assert_ne!(new, leader);
        let data = match removed {
            Ok((data, _)) => data,
            // A ZooKeeper follower whose leader changes restarts its follower and drops its
            // clients, perhaps before the reply: the membership is read back instead.
            Err(zk::Error::ConnectionLoss) => rt.block_on(config_at(&e.server(new).addr())),
            Err(err) => panic!("the leader removed: {err:?}"),
        };
        assert!(!String::from_utf8_lossy(&data).contains(&format!("server.{leader}=")));
        eprintln!(
            "reconfig: {leader} ({leader_kind:?}) removed, {new} ({:?}) leads",
            e.server(new).kind
        );
        wait_for_config(e, rt, &data);
        wait_until("writes after the hand-over", Duration::from_secs(60), || {
            load.count() > n + 150
        });
        let acked = load.finish(rt);
        let znodes = rt.block_on(assert_identical_trees(e, &acked));
        eprintln!("{} writes acknowledged, {znodes} znodes identical", acked.len());
    });
}

#[test]
fn zookeeper_leader_reconfigures_corral_members() {
    // ZooKeeper 3 leads; Corral 4 observes, then votes; 3 removed, Corral 1 takes over.
    let obs = (Kind::Corral, Role::Observer);
    reconfig_across_kinds(&[C, C, Z, obs], &[3, 1, 2, 4]);
}

#[test]
fn corral_leader_reconfigures_zookeeper_members() {
    // Corral 3 leads; ZooKeeper 4 observes, then votes; 3 removed, ZooKeeper 1 takes over.
    let obs = (Kind::ZooKeeper, Role::Observer);
    reconfig_across_kinds(&[Z, Z, C, obs], &[3, 1, 2, 4]);
}
