//! Importing a data directory written by a real Apache ZooKeeper 3.8 (Debian's `zookeeper`
//! package, started by this test): the imported tree serves every znode with the data, Stat and
//! ACL ZooKeeper served for it, and sessions left open in ZooKeeper survive into Corral.
//!
//! The ZooKeeper files are generated here, by running ZooKeeper under a workload with a small
//! snapCount (so that there are several snapshots and logs), not committed by hand.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use corral_server::config::Config;
use corral_server::db::DbOptions;
use corral_server::pipeline::Settings;
use corral_server::server::{RunningServer, ServerOptions};
use zookeeper_client as zk;

const ZK_JAR: &str = "/usr/share/java/zookeeper.jar";

type Snapshot = BTreeMap<String, (Vec<u8>, zk::Stat, Vec<zk::Acl>)>;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct ZooKeeper(Child);

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

fn start_zookeeper(dir: &Path, port: u16) -> ZooKeeper {
    let cfg = dir.join("zoo.cfg");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "tickTime=2000\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
             admin.enableServer=false\nsnapCount=40\nextendedTypesEnabled=true\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("zookeeper.out")).unwrap();
    let child = Command::new("java")
        .args(["-cp", &format!("{ZK_JAR}:/usr/share/java/slf4j-simple.jar")])
        .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
        .arg(&cfg)
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("java starts");
    ZooKeeper(child)
}

async fn connect(addr: &str) -> zk::Client {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match zk::Client::connector().session_timeout(Duration::from_secs(30)).connect(addr).await {
            Ok(c) => return c,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("cannot connect to {addr}: {e}"),
        }
    }
}

/// Every znode reachable from "/" (outside /zookeeper) with its data, Stat and ACL.
async fn walk(c: &zk::Client) -> Snapshot {
    let mut out = BTreeMap::new();
    let mut stack = vec!["/".to_string()];
    while let Some(p) = stack.pop() {
        let (data, stat) = c.get_data(&p).await.unwrap();
        let (acl, _) = c.get_acl(&p).await.unwrap();
        let (children, _) = c.get_children(&p).await.unwrap();
        for ch in children {
            let child = if p == "/" { format!("/{ch}") } else { format!("{p}/{ch}") };
            if child != "/zookeeper" {
                stack.push(child);
            }
        }
        out.insert(p, (data, stat, acl));
    }
    out
}

async fn workload(c: &zk::Client, holder: &zk::Client) {
    let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    let seq = zk::CreateMode::PersistentSequential.with_acls(zk::Acls::anyone_all());
    let eph = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
    let container = zk::CreateMode::Container.with_acls(zk::Acls::anyone_all());
    let ttl = zk::CreateMode::Persistent
        .with_acls(zk::Acls::anyone_all())
        .with_ttl(Duration::from_secs(3600));
    c.create("/app", b"root", &open).await.unwrap();
    for i in 0..60 {
        let p = format!("/app/n{i}");
        c.create(&p, format!("v{i}").as_bytes(), &open).await.unwrap();
        if i % 3 == 0 {
            c.set_data(&p, b"changed", None).await.unwrap();
        }
        if i % 7 == 0 {
            c.delete(&p, None).await.unwrap();
        }
        if i % 5 == 0 {
            c.create("/app/seq-", b"", &seq).await.unwrap();
        }
    }
    c.create("/held", b"", &open).await.unwrap();
    holder.create("/held/eph", b"e", &eph).await.unwrap();
    c.create("/box", b"", &container).await.unwrap();
    c.create("/box/x", b"", &open).await.unwrap();
    c.create("/ttl", b"t", &ttl).await.unwrap();
    c.auth("digest".into(), b"u:p".to_vec()).await.unwrap();
    let creator = zk::CreateMode::Persistent.with_acls(zk::Acls::creator_all());
    c.create("/private", b"p", &creator).await.unwrap();
    c.set_acl("/app", &zk::Acls::anyone_read(), None).await.unwrap();
    let mut m = c.new_multi_writer();
    m.add_create("/multi", b"m", &open).unwrap();
    m.add_set_data("/multi", b"m2", None).unwrap();
    m.commit().await.unwrap();
    // A failed write still takes a zxid and is logged.
    assert!(c.create("/missing/parent", b"", &open).await.is_err());
}

#[test]
fn an_imported_zookeeper_directory_serves_what_zookeeper_served() {
    if !Path::new(ZK_JAR).exists() {
        eprintln!("SKIPPED: Apache ZooKeeper is not installed ({ZK_JAR}); ci/test.sh installs it");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let zk_port = free_port();
    let zk_addr = format!("127.0.0.1:{zk_port}");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let zookeeper = start_zookeeper(tmp.path(), zk_port);
    let (expected, held_session) = rt.block_on(async {
        let c = connect(&zk_addr).await;
        let holder = connect(&zk_addr).await;
        workload(&c, &holder).await;
        let reader = connect(&zk_addr).await;
        reader.auth("digest".into(), b"u:p".to_vec()).await.unwrap();
        let snap = walk(&reader).await;
        let held = holder.session_id();
        // Keep the holder's session open in ZooKeeper's files: drop without closing it is not
        // possible with this client, so stop the server first.
        std::mem::forget(holder);
        (snap, held)
    });
    drop(zookeeper);
    let v2 = tmp.path().join("data").join("version-2");
    let files: Vec<String> = std::fs::read_dir(&v2)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(files.iter().filter(|f| f.starts_with("snapshot.")).count() >= 2, "{files:?}");
    assert!(files.iter().filter(|f| f.starts_with("log.")).count() >= 2, "{files:?}");

    // inspect reads every one of ZooKeeper's files without complaint.
    for f in &files {
        let path = v2.join(f);
        let text = if f.starts_with("log.") {
            corral_server::tools::inspect_log(&path).unwrap()
        } else {
            corral_server::tools::inspect_snapshot(&path, false).unwrap()
        };
        assert!(!text.contains("INVALID") && !text.contains("MISMATCH"), "{f}:\n{text}");
    }

    let to = tmp.path().join("corral");
    let summary =
        corral_server::tools::import_zookeeper(&tmp.path().join("data"), None, &to, false).unwrap();
    assert!(summary.sessions >= 1, "the held session is imported");
    // A standalone ZooKeeper writes no epoch files: the epochs are the last zxid's (0 for a
    // standalone server that never restarted; ensemble members' files are read).
    let last_epoch = (summary.last_zxid as u64 >> 32) as u32;
    assert_eq!((summary.accepted_epoch, summary.current_epoch), (last_epoch, last_epoch));
    let epoch_file = |name: &str| std::fs::read_to_string(to.join("corral-v1").join(name)).unwrap();
    assert_eq!(epoch_file("currentEpoch"), last_epoch.to_string());
    // A second import into the now non-empty directory is refused.
    assert!(
        corral_server::tools::import_zookeeper(&tmp.path().join("data"), None, &to, false).is_err()
    );

    let mut config = Config::default_standalone();
    config.extended_types_enabled = true;
    let mut db = DbOptions::new(&to);
    db.tree.extended_types = true;
    let settings = Settings::from_config(&config);
    let server = RunningServer::start(ServerOptions {
        bind: "127.0.0.1:0".parse().unwrap(),
        db,
        settings,
        config,
        ensemble: None,
        client_tls: None,
    })
    .unwrap();
    let addr = server.addr().to_string();
    rt.block_on(async {
        let reader = connect(&addr).await;
        reader.auth("digest".into(), b"u:p".to_vec()).await.unwrap();
        let got = walk(&reader).await;
        assert_eq!(got.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>());
        for (path, want) in &expected {
            assert_eq!(&got[path], want, "znode {path}");
        }
        let (_, st, _) = &got["/held/eph"];
        assert_eq!(
            st.ephemeral_owner, held_session.0,
            "the ephemeral's owner is the imported session"
        );
    });
    server.shutdown().unwrap();
}
