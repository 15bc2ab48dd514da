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

#[test]
fn writes_are_audited_as_zookeeper_audits_them() {
    let tmp = tempfile::tempdir().unwrap();
    let audit = tmp.path().join("zookeeper_audit.log");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg = format!(
        "tickTime=2000\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
         audit.enable=true\ncorral.audit.file={}\n",
        tmp.path().join("data").display(),
        audit.display()
    );
    let config = Config::parse_str(&cfg).unwrap();
    let opts = ServerOptions::from_config(&config).unwrap();
    assert!(opts.settings.audit.is_some());
    let server = RunningServer::start(opts).unwrap();
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
    let s = format!("session=0x{:x}\tuser=127.0.0.1,bob\tip=127.0.0.1", session as u64);
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
