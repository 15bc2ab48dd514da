//! The Rust `zookeeper-client` crate (an independent implementation of the client protocol)
//! against a standalone corral on loopback: CRUD and Stat semantics, watches of every kind,
//! multi, ephemerals and sequentials, digest auth and ACLs, and data and sessions surviving a
//! server restart.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use corral_server::db::DbOptions;
use corral_server::pipeline::Settings;
use corral_server::server::{RunningServer, ServerOptions};
use corral_server::tree::PrepareConfig;
use zookeeper_client as zk;

fn settings() -> Settings {
    Settings {
        tick_ms: 200,
        min_session_timeout_ms: 400,
        max_session_timeout_ms: 20_000,
        prepare: PrepareConfig::default(),
        skip_acl: false,
        super_digest: None,
        server_id: 1,
        container_check_ms: 60_000,
        global_outstanding_limit: 1000,
        purge_interval_ms: 0,
        limits: corral_server::limits::Limits::default(),
        read_only_mode: false,
        local_sessions: false,
        local_sessions_upgrading: false,
        sync_enabled: true,
        sasl: None,
        enforce_auth: None,
        config_file: None,
        audit: None,
        slow_request_ms: 0,
    }
}

fn start(dir: &Path, bind: SocketAddr) -> RunningServer {
    let config = corral_server::config::Config::default_standalone();
    RunningServer::start(ServerOptions {
        bind,
        db: DbOptions::new(dir),
        settings: settings(),
        config,
        ensemble: None,
        client_tls: None,
    })
    .expect("server starts")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn open() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())
}

#[test]
fn crud_stats_and_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path(), "127.0.0.1:0".parse().unwrap());
    let addr = server.addr().to_string();
    runtime().block_on(async {
        let c = zk::Client::connect(&addr).await.unwrap();
        let (stat, _) = c.create("/a", b"one", &open()).await.unwrap();
        assert_eq!((stat.version, stat.czxid, stat.mzxid), (0, stat.pzxid, stat.czxid));
        let (data, s) = c.get_data("/a").await.unwrap();
        assert_eq!((data.as_slice(), s), (&b"one"[..], stat));
        let s2 = c.set_data("/a", b"two", Some(0)).await.unwrap();
        assert_eq!(s2.version, 1);
        assert!(s2.mzxid > stat.mzxid);
        assert_eq!(c.set_data("/a", b"x", Some(0)).await.unwrap_err(), zk::Error::BadVersion);
        assert_eq!(c.create("/a", b"", &open()).await.unwrap_err(), zk::Error::NodeExists);
        assert_eq!(c.create("/none/b", b"", &open()).await.unwrap_err(), zk::Error::NoNode);
        assert_eq!(c.check_stat("/missing").await.unwrap(), None);
        c.create("/a/b", b"", &open()).await.unwrap();
        assert_eq!(c.delete("/a", None).await.unwrap_err(), zk::Error::NotEmpty);
        let (children, ps) = c.get_children("/a").await.unwrap();
        assert_eq!(children, vec!["b".to_string()]);
        assert_eq!((ps.num_children, ps.cversion), (1, 1));
        c.delete("/a/b", None).await.unwrap();
        let (_, ps) = c.get_children("/a").await.unwrap();
        assert_eq!(ps.cversion, 2, "client-visible cversion counts creates and deletes");
        // Sequential numbering follows creations only, not deletes.
        let seq = zk::CreateMode::PersistentSequential.with_acls(zk::Acls::anyone_all());
        let (_, n) = c.create("/a/s", b"", &seq).await.unwrap();
        assert_eq!(n.into_i64(), 1, "two creations under /a before it");
        assert_eq!(c.count_descendants_number("/a").await.unwrap(), 1);
        c.sync("/a").await.unwrap();
    });
    server.shutdown().unwrap();
}

#[test]
fn watches_of_every_kind() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path(), "127.0.0.1:0".parse().unwrap());
    let addr = server.addr().to_string();
    runtime().block_on(async {
        let c = zk::Client::connect(&addr).await.unwrap();
        let other = zk::Client::connect(&addr).await.unwrap();
        // exists on a missing node: fired by its creation.
        let (none, w) = c.check_and_watch_stat("/w").await.unwrap();
        assert!(none.is_none());
        let mut recursive = c.watch("/w", zk::AddWatchMode::PersistentRecursive).await.unwrap();
        other.create("/w", b"", &open()).await.unwrap();
        let e = w.changed().await;
        assert_eq!((e.event_type, e.path.as_str()), (zk::EventType::NodeCreated, "/w"));
        assert_eq!(recursive.changed().await.event_type, zk::EventType::NodeCreated);
        // Child and data watches, one-shot.
        let (_, _, cw) = c.get_and_watch_children("/w").await.unwrap();
        other.create("/w/x", b"1", &open()).await.unwrap();
        let e = cw.changed().await;
        assert_eq!((e.event_type, e.path.as_str()), (zk::EventType::NodeChildrenChanged, "/w"));
        let e = recursive.changed().await;
        assert_eq!((e.event_type, e.path.as_str()), (zk::EventType::NodeCreated, "/w/x"));
        let (_, _, dw) = c.get_and_watch_data("/w/x").await.unwrap();
        other.set_data("/w/x", b"2", None).await.unwrap();
        assert_eq!(dw.changed().await.event_type, zk::EventType::NodeDataChanged);
        // The event is delivered before a later read that shows the change returns.
        let (_, _, dw) = c.get_and_watch_data("/w/x").await.unwrap();
        other.set_data("/w/x", b"3", None).await.unwrap();
        let (data, _) = c.get_data("/w/x").await.unwrap();
        if data == b"3" {
            let e = tokio::time::timeout(Duration::from_millis(1), dw.changed()).await;
            assert!(e.is_ok(), "a read showing the change came before its watch event");
        }
        let e = recursive.changed().await;
        assert_eq!(e.event_type, zk::EventType::NodeDataChanged);
    });
    server.shutdown().unwrap();
}

#[test]
fn multi_ephemerals_and_acls() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path(), "127.0.0.1:0".parse().unwrap());
    let addr = server.addr().to_string();
    runtime().block_on(async {
        let c = zk::Client::connect(&addr).await.unwrap();
        // A failing multi changes nothing and reports each op.
        let mut m = c.new_multi_writer();
        m.add_create("/m1", b"", &open()).unwrap();
        m.add_check_version("/nope", 0).unwrap();
        let err = m.commit().await.unwrap_err();
        assert!(
            matches!(
                err,
                zk::MultiWriteError::OperationFailed { index: 1, source: zk::Error::NoNode }
            ),
            "{err:?}"
        );
        assert_eq!(c.check_stat("/m1").await.unwrap(), None);
        let mut m = c.new_multi_writer();
        m.add_create("/m1", b"", &open()).unwrap();
        m.add_set_data("/m1", b"d", Some(0)).unwrap();
        assert_eq!(m.commit().await.unwrap().len(), 2);

        // Ephemeral sequential nodes go with their session.
        let e = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
        let owner = zk::Client::connect(&addr).await.unwrap();
        let (stat, seq) = owner.create("/eph", b"", &e).await.unwrap();
        assert_eq!(stat.ephemeral_owner, owner.session_id().0);
        let path = format!("/eph{seq}");
        assert_eq!(c.list_ephemerals("/").await.unwrap(), Vec::<String>::new());
        assert_eq!(owner.list_ephemerals("/").await.unwrap(), vec![path.clone()]);
        drop(owner);
        let mut gone = false;
        for _ in 0..100 {
            if c.check_stat(&path).await.unwrap().is_none() {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(gone, "the ephemeral went with its closed session");

        // Digest auth and a creator-only ACL.
        let alice = zk::Client::connect(&addr).await.unwrap();
        alice.auth("digest".into(), b"alice:secret".to_vec()).await.unwrap();
        let creator = zk::CreateMode::Persistent.with_acls(zk::Acls::creator_all());
        alice.create("/private", b"s", &creator).await.unwrap();
        assert_eq!(c.get_data("/private").await.unwrap_err(), zk::Error::NoAuth);
        assert_eq!(alice.get_data("/private").await.unwrap().0, b"s");
        let users = alice.list_auth_users().await.unwrap();
        assert!(users.iter().any(|u| u.scheme() == "digest" && u.user() == "alice"), "{users:?}");
    });
    server.shutdown().unwrap();
}

#[test]
fn data_and_sessions_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path(), "127.0.0.1:0".parse().unwrap());
    let addr = server.addr();
    let rt = runtime();
    let (client, eph) = rt.block_on(async {
        let c = zk::Client::connector()
            .session_timeout(Duration::from_secs(10))
            .connect(&addr.to_string())
            .await
            .unwrap();
        c.create("/kept", b"v", &open()).await.unwrap();
        let e = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
        c.create("/kept-eph", b"", &e).await.unwrap();
        (c, "/kept-eph")
    });
    server.shutdown().unwrap();
    // Same address, same data directory: the client reconnects to its session.
    let server = start(tmp.path(), addr);
    rt.block_on(async {
        let mut ok = false;
        for _ in 0..200 {
            if let Ok(Some(_)) = client.check_stat(eph).await {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(ok, "the session and its ephemeral survived the restart");
        assert_eq!(client.get_data("/kept").await.unwrap().0, b"v");
    });
    server.shutdown().unwrap();
}

#[test]
fn a_pipelined_read_sees_its_sessions_earlier_writes_and_not_later_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path(), "127.0.0.1:0".parse().unwrap());
    let addr = server.addr().to_string();
    runtime().block_on(async {
        let c = zk::Client::connect(&addr).await.unwrap();
        c.create("/rw", b"0", &open()).await.unwrap();
        for round in 0..200u32 {
            // Requests are sent in creation order: write, read, write, read, all in flight.
            let v1 = format!("{round}-a");
            let v2 = format!("{round}-b");
            let w1 = c.set_data("/rw", v1.as_bytes(), None);
            let r1 = c.get_data("/rw");
            let w2 = c.set_data("/rw", v2.as_bytes(), None);
            let r2 = c.get_data("/rw");
            let (s1, (d1, st1), s2, (d2, st2)) =
                (w1.await.unwrap(), r1.await.unwrap(), w2.await.unwrap(), r2.await.unwrap());
            assert_eq!(d1, v1.as_bytes(), "round {round}: the read between the writes");
            assert_eq!(st1.mzxid, s1.mzxid);
            assert_eq!(d2, v2.as_bytes(), "round {round}: the read after both");
            assert_eq!(st2.mzxid, s2.mzxid);
        }
    });
    server.shutdown().unwrap();
}
