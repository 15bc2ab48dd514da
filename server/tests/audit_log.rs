//! The audit log: a client's writes become ZooKeeper's audit lines, in order, in the file
//! `corral.audit.file` names.

use std::time::{Duration, Instant};

use corral_server::config::Config;
use corral_server::server::{RunningServer, ServerOptions};
use zookeeper_client as zk;

fn lines_after(path: &std::path::Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The message of a line: after `<date> <time> <LEVEL> audit.Slf4jAuditLogger: `.
fn message(line: &str) -> (&str, &str) {
    let (head, msg) = line.split_once(" audit.Slf4jAuditLogger: ").expect("logback pattern");
    (head.rsplit(' ').next().unwrap(), msg)
}

/// A standalone server on a free loopback port auditing to `<dir>/zookeeper_audit.log`:
/// (server, that file, the server's user).
fn start_audited(dir: &std::path::Path) -> (RunningServer, std::path::PathBuf, String) {
    let audit = dir.join("zookeeper_audit.log");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg = format!(
        "tickTime=2000\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
         audit.enable=true\ncorral.audit.file={}\n",
        dir.join("data").display(),
        audit.display()
    );
    let opts = ServerOptions::from_config(&Config::parse_str(&cfg).unwrap()).unwrap();
    let user = opts.settings.audit.as_ref().expect("audit.enable").server_user.clone();
    (RunningServer::start(opts).unwrap(), audit, user)
}

#[test]
fn writes_are_audited_as_zookeeper_audits_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, audit, _) = start_audited(tmp.path());
    let addr = server.addr().to_string();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let session = rt.block_on(async {
        let c = zk::Client::connect(&addr).await.unwrap();
        c.auth("digest".into(), b"bob:secret".to_vec()).await.unwrap();
        let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
        let seq = zk::CreateMode::PersistentSequential.with_acls(zk::Acls::anyone_all());
        c.create("/a", b"", &open).await.unwrap();
        c.create("/a/n-", b"", &seq).await.unwrap();
        assert!(c.create("/a", b"", &open).await.is_err(), "exists");
        c.set_data("/a", b"x", None).await.unwrap();
        c.set_acl("/a", &zk::Acls::anyone_all(), None).await.unwrap();
        c.get_data("/a").await.unwrap();
        let mut m = c.new_multi_writer();
        m.add_create("/a/m", b"", &open).unwrap();
        m.add_delete("/a/m", None).unwrap();
        m.commit().await.unwrap();
        let mut bad = c.new_multi_writer();
        bad.add_create("/b", b"", &open).unwrap();
        bad.add_delete("/missing", None).unwrap();
        assert!(bad.commit().await.is_err());
        c.delete("/a/n-0000000000", None).await.unwrap();
        c.session_id().0
    });
    drop(server);
    let lines = lines_after(&audit, 9);
    let msgs: Vec<(&str, &str)> = lines.iter().map(|l| message(l)).collect();
    // The users in the order ZooKeeper's connection keeps its ids (a JVM prints this set as
    // [digest:bob:fyVmFCwVbTJYrznoSu1koqYEYF0=, ip:127.0.0.1]).
    let s = format!("session=0x{:x}\tuser=bob,127.0.0.1\tip=127.0.0.1", session as u64);
    let expect = [
        ("INFO", format!("{s}\toperation=create\tznode=/a\tznode_type=persistent\tresult=success")),
        (
            "INFO",
            format!(
                "{s}\toperation=create\tznode=/a/n-0000000000\tznode_type=persistent_sequential\tresult=success"
            ),
        ),
        ("ERROR", format!("{s}\toperation=create\tznode=/a\tznode_type=persistent\tresult=failure")),
        ("INFO", format!("{s}\toperation=setData\tznode=/a\tresult=success")),
        ("INFO", format!("{s}\toperation=setAcl\tznode=/a\tacl=world:anyone:cdrwa\tresult=success")),
        ("INFO", format!("{s}\toperation=create\tznode=/a/m\tznode_type=persistent\tresult=success")),
        ("INFO", format!("{s}\toperation=delete\tznode=/a/m\tresult=success")),
        ("ERROR", format!("{s}\toperation=multiOperation\tresult=failure")),
        ("INFO", format!("{s}\toperation=delete\tznode=/a/n-0000000000\tresult=success")),
    ];
    let got: Vec<(String, String)> =
        msgs.iter().map(|(l, m)| (l.to_string(), m.to_string())).collect();
    let want: Vec<(String, String)> =
        expect.iter().map(|(l, m)| (l.to_string(), m.clone())).collect();
    assert_eq!(got, want, "{lines:#?}");
}

/// The same operations as ZooKeeper 3.8.0 audited in `tests/data/zk-3.8.0-audit/` (its README
/// has the capture script): Corral writes the same lines, in the same order — session ids
/// numbered in order of appearance, the server's user named `SERVER` on both sides (the
/// capture ran as root), serverStart/serverStop left out (the binary writes those).
#[test]
fn the_same_operations_as_zookeeper_give_the_same_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, audit, server_user) = start_audited(tmp.path());
    let addr = server.addr().to_string();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let a = zk::Client::connect(&addr).await.unwrap();
        let with = |mode: zk::CreateMode| mode.with_acls(zk::Acls::anyone_all());
        a.create("/audit", b"x", &with(zk::CreateMode::Persistent)).await.unwrap();
        a.create("/audit/eph", b"", &with(zk::CreateMode::Ephemeral)).await.unwrap();
        a.create("/audit/seq-", b"", &with(zk::CreateMode::PersistentSequential)).await.unwrap();
        a.create("/audit/eseq-", b"", &with(zk::CreateMode::EphemeralSequential)).await.unwrap();
        a.create("/audit/cont", b"", &with(zk::CreateMode::Container)).await.unwrap();
        assert!(a.create("/audit", b"", &with(zk::CreateMode::Persistent)).await.is_err());
        a.set_data("/audit", b"y", None).await.unwrap();
        a.auth("digest".into(), b"bob:pw".to_vec()).await.unwrap();
        let bob = corral_server::tree::acl::digest_id("bob", "pw");
        let acl = [zk::Acl::new(zk::Permission::ALL, zk::AuthId::new("digest", &bob))];
        a.set_acl("/audit/cont", &zk::Acls::new(&acl), None).await.unwrap();
        let mut m = a.new_multi_writer();
        m.add_create("/audit/m1", b"", &with(zk::CreateMode::Persistent)).unwrap();
        m.add_set_data("/audit/m1", b"m", None).unwrap();
        m.add_delete("/audit/m1", None).unwrap();
        m.commit().await.unwrap();
        let mut bad = a.new_multi_writer();
        bad.add_create("/audit/m2", b"", &with(zk::CreateMode::Persistent)).unwrap();
        bad.add_delete("/nonexistent", None).unwrap();
        assert!(bad.commit().await.is_err());
        a.delete("/audit/seq-0000000001", None).await.unwrap();
        let b = zk::Client::connect(&addr).await.unwrap();
        b.create("/audit/b-eph", b"", &with(zk::CreateMode::Ephemeral)).await.unwrap();
        drop(b);
        // Session B's close is audited before session A's.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&audit).unwrap_or_default().contains("/audit/b-eph\tresult")
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(a);
        tokio::time::sleep(Duration::from_millis(300)).await;
    });
    let ours = lines_after(&audit, 17);
    drop(server);
    let fixture = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/zk-3.8.0-audit/audit.txt"
    ))
    .unwrap();
    // Sessions as S1, S2 in order of appearance; the server's user as SERVER.
    let normalize = |lines: Vec<(String, String)>, user: &str| -> Vec<String> {
        let mut sessions: Vec<String> = Vec::new();
        lines
            .into_iter()
            .filter(|(_, m)| !m.contains("operation=serverSt"))
            .map(|(level, m)| {
                let fields: Vec<String> = m
                    .split('\t')
                    .map(|f| match f.split_once('=') {
                        Some(("session", s)) => {
                            if !sessions.iter().any(|x| x == s) {
                                sessions.push(s.to_string());
                            }
                            let n = sessions.iter().position(|x| x == s).unwrap() + 1;
                            format!("session=S{n}")
                        }
                        Some(("user", u)) if u == user => "user=SERVER".to_string(),
                        _ => f.to_string(),
                    })
                    .collect();
                format!("{level} {}", fields.join("\t"))
            })
            .collect()
    };
    let zk_lines: Vec<(String, String)> = fixture
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (level, m) = l.split_once(' ').unwrap();
            (level.to_string(), m.to_string())
        })
        .collect();
    let our_lines: Vec<(String, String)> = ours
        .iter()
        .map(|l| {
            let (level, m) = message(l);
            (level.to_string(), m.to_string())
        })
        .collect();
    let want = normalize(zk_lines, "root");
    let got = normalize(our_lines, &server_user);
    assert_eq!(got.len(), want.len(), "{got:#?}");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w);
    }
}
