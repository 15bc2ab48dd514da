//! The AdminServer over HTTP: every command and alias of ZooKeeper 3.8.0 answered with the
//! same JSON keys as a live ZooKeeper answered them (`tests/data/zk-3.8.0-admin/`, captured
//! with the script and configuration in its README), the early errors, the listing, and the
//! idle/method handling.

mod common;

use std::collections::BTreeSet;

use common::http::Answer;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use corral_server::config::Config;
use corral_server::db::DbOptions;
use corral_server::net::admin_http::AdminHttpOptions;
use corral_server::pipeline::Settings;
use corral_server::server::{RunningServer, ServerOptions};
use serde_json::Value;
use zookeeper_client as zk;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/zk-3.8.0-admin");

fn start(dir: &Path) -> (RunningServer, SocketAddr) {
    start_with(dir, |_| {})
}

fn start_with(dir: &Path, edit: impl FnOnce(&mut Config)) -> (RunningServer, SocketAddr) {
    let mut config = Config::default_standalone();
    edit(&mut config);
    config.data_dir = dir.to_path_buf();
    config.data_log_dir = dir.to_path_buf();
    config.initial_text = Some("tickTime=2000\nclientPort=2181\n".into());
    let settings = Settings::from_config(&config);
    let mut db = DbOptions::new(dir);
    db.snap_count = u64::from(config.snap_count);
    let opts = ServerOptions {
        bind: "127.0.0.1:0".parse().unwrap(),
        db,
        settings,
        config,
        ensemble: None,
        client_tls: None,
    };
    let server = RunningServer::start(opts).expect("server starts");
    let admin = server
        .start_admin_server(AdminHttpOptions {
            bind: "127.0.0.1:0".parse().unwrap(),
            command_url: "/commands".into(),
            idle_timeout: Duration::from_secs(5),
            tls: None,
        })
        .expect("admin server starts");
    (server, admin)
}

/// A raw HTTP/1.1 exchange: (status, headers lower-cased, body).
fn http(addr: SocketAddr, method: &str, target: &str) -> (u16, Vec<(String, String)>, String) {
    let (status, headers, body) = common::http::request(addr, method, target, &[], b"");
    (status, headers, String::from_utf8(body).unwrap())
}

/// As [`http`], with an `Authorization` header, the body as bytes.
fn http_raw(addr: SocketAddr, method: &str, target: &str, auth: Option<&str>) -> Answer {
    let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
    common::http::request(addr, method, target, &headers, b"")
}

/// A POST with a body (and an `Authorization` header): (status, body).
fn http_post(addr: SocketAddr, target: &str, auth: Option<&str>, body: &[u8]) -> (u16, String) {
    let mut headers = vec![("Content-Type", "application/octet-stream")];
    headers.extend(auth.map(|a| ("Authorization", a)));
    let (status, _, body) = common::http::request(addr, "POST", target, &headers, body);
    (status, String::from_utf8(body).unwrap())
}

fn get_json(addr: SocketAddr, target: &str) -> Value {
    let (status, headers, body) = http(addr, "GET", target);
    assert_eq!(status, 200, "{target}: {body}");
    assert!(
        headers.iter().any(|(k, v)| k == "content-type" && v == "application/json"),
        "{target}: {headers:?}"
    );
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{target}: {e}: {body}"))
}

/// A fixture's JSON body (after the HTTP head `curl -i` wrote).
fn fixture(role: &str, name: &str) -> Value {
    let text = std::fs::read_to_string(format!("{FIXTURES}/{role}/{name}.txt")).unwrap();
    let body = &text[text
        .find("\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| text.find("\n\n").map(|i| i + 2))
        .unwrap()..];
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{role}/{name}: {e}"))
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default()
}

/// Commands whose keys are not ZooKeeper's by nature, and why.
const KEYS_DIFFER: &[(&str, &str)] = &[
    ("system_properties", "a JVM's properties; Corral lists the zookeeper.* ones it holds"),
    (
        "monitor",
        "ZooKeeper 3.8 also dumps every ServerMetrics counter and summary (about 470 keys); \
         Corral's gauges are checked below, the rest is listed in docs/compatibility.md",
    ),
];

/// Nested objects whose keys must match too: (command, path of keys to the object).
const NESTED: &[(&str, &[&str])] = &[
    ("server_stats", &["server_stats"]),
    ("server_stats", &["server_stats", "client_response_stats"]),
    ("server_stats", &["client_response"]),
    ("stats", &["server_stats"]),
    ("stats", &["client_response"]),
];

fn at<'v>(v: &'v Value, path: &[&str]) -> &'v Value {
    path.iter().fold(v, |v, k| &v[*k])
}

#[test]
fn every_command_answers_with_zookeepers_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, admin) = start(tmp.path());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let addr = server.addr().to_string();
    let client = rt.block_on(async {
        let c = zk::Client::connect(&addr).await.unwrap();
        let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
        let eph = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
        c.create("/app", b"x", &open).await.unwrap();
        c.create("/app/eph", b"", &eph).await.unwrap();
        let _w = c.get_and_watch_data("/app").await.unwrap();
        let _e = c.check_and_watch_stat("/missing").await.unwrap();
        c
    });
    let names: Vec<String> = std::fs::read_to_string(format!("{FIXTURES}/command-names.txt"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    assert!(names.len() >= 26, "the fixture lists ZooKeeper 3.8's 26 commands: {names:?}");
    let mut checked = 0;
    for name in &names {
        // The reset commands run last in the capture; their answers have no keys of their own.
        let ours = get_json(admin, &format!("/commands/{name}"));
        let zk = fixture("standalone", name);
        assert_eq!(ours["command"], zk["command"], "{name}: the primary name");
        assert_eq!(ours["error"], zk["error"], "{name}: {ours}");
        if let Some((_, why)) = KEYS_DIFFER.iter().find(|(n, _)| n == name) {
            eprintln!("{name}: keys not compared: {why}");
        } else {
            assert_eq!(keys(&ours), keys(&zk), "{name}: top-level keys");
        }
        for (_, path) in NESTED.iter().filter(|(n, _)| n == name) {
            assert_eq!(keys(at(&ours, path)), keys(at(&zk, path)), "{name}: keys of {path:?}");
        }
        checked += 1;
    }
    assert_eq!(checked, names.len());

    // Lists whose entries have keys: a client with a session, an ephemeral and watches.
    let cons = get_json(admin, "/commands/connections");
    let zk_cons = fixture("standalone", "connections");
    assert_eq!(keys(&cons["connections"][0]), keys(&zk_cons["connections"][0]), "{cons}");
    let stat = get_json(admin, "/commands/stats");
    let zk_stat = fixture("standalone", "stats");
    assert_eq!(keys(&stat["connections"][0]), keys(&zk_stat["connections"][0]), "{stat}");
    let session = cons["connections"][0]["session_id"].as_i64().unwrap();
    assert_eq!(session, client.session_id().0, "the client's session");
    let dump = get_json(admin, "/commands/dump");
    assert_eq!(
        dump["session_id_to_ephemeral_paths"][session.to_string()],
        serde_json::json!(["/app/eph"])
    );
    let buckets = dump["expiry_time_to_session_ids"].as_object().unwrap();
    assert!(buckets.values().any(|ids| ids.as_array().unwrap().contains(&session.into())));
    let wchc = get_json(admin, "/commands/watches");
    let mut paths: Vec<&str> = wchc["session_id_to_watched_paths"][session.to_string()]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    paths.sort();
    assert_eq!(paths, ["/app", "/missing"]);
    let wchp = get_json(admin, "/commands/watches_by_path");
    assert_eq!(wchp["path_to_session_ids"]["/app"], serde_json::json!([session]));
    let wchs = get_json(admin, "/commands/watch_summary");
    assert_eq!((wchs["num_connections"].as_i64(), wchs["num_paths"].as_i64()), (Some(1), Some(2)));

    // Figures that track the server (stat_reset ran above): replies were sent, and their
    // sizes recorded.
    rt.block_on(async { client.get_data("/app").await.unwrap() });
    let srvr = get_json(admin, "/commands/srvr");
    assert_eq!(srvr["server_stats"]["server_state"], "standalone");
    assert_eq!(srvr["server_stats"]["num_alive_client_connections"], 1);
    let min = srvr["client_response"]["min_buffer_size"].as_i64().unwrap();
    let max = srvr["client_response"]["max_buffer_size"].as_i64().unwrap();
    assert!(min >= 16 && max >= min, "a reply header alone is 16 bytes: {srvr}");
    assert_eq!(srvr["node_count"], get_json(admin, "/commands/mntr")["znode_count"]);
    assert!(srvr["server_stats"]["log_dir_size"].as_i64().unwrap() > 0, "{srvr}");
    let icfg = get_json(admin, "/commands/icfg");
    assert_eq!(icfg["initial_configuration"], "tickTime=2000\nclientPort=2181\n");

    // monitor: ZooKeeper's gauges are all there, and agree with the four-letter word's.
    let mntr = get_json(admin, "/commands/monitor");
    let zk_mntr = fixture("standalone", "monitor");
    let gauges: Vec<&String> =
        zk_mntr.as_object().unwrap().keys().take_while(|k| *k != "proposal_count").collect();
    assert!(gauges.len() >= 25, "{gauges:?}");
    for g in gauges {
        assert!(mntr.get(g.as_str()).is_some(), "monitor lacks ZooKeeper's {g}");
    }
    drop(client);
    drop(server);
}

/// ZooKeeper's `ServerMetrics`: every counter and summary a ZooKeeper 3.8.0 `monitor` reports
/// (its per-namespace summary sets aside) is there, in its order, and those Corral measures
/// move with the load; `stat_reset` clears them.
#[test]
fn zookeepers_server_metrics_are_reported_and_measured() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, admin) = start(tmp.path());
    let zk: Vec<String> = fixture("standalone", "monitor")
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| !k.contains("per_namespace"))
        .cloned()
        .collect();
    let before = get_json(admin, "/commands/monitor");
    let ours: Vec<&String> = before.as_object().unwrap().keys().collect();
    let shared: Vec<&String> = ours.iter().copied().filter(|k| zk.contains(k)).collect();
    assert_eq!(
        shared.len(),
        zk.len(),
        "missing: {:?}",
        zk.iter().filter(|k| !ours.contains(k)).collect::<Vec<_>>()
    );
    assert!(shared.iter().zip(zk.iter()).all(|(a, b)| *a == b), "ZooKeeper's order");
    assert_eq!(before["cnt_dbinittime"], 1, "the database was opened once");
    assert_eq!(before["cnt_startup_txns_loaded"], 1);
    assert_eq!(before["connection_request_count"], 0);

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let addr = server.addr().to_string();
    rt.block_on(async {
        let c = zk::Client::connect(&addr).await.unwrap();
        let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
        c.create("/m", b"1", &open).await.unwrap();
        let (_, _, watch) = c.get_and_watch_data("/m").await.unwrap();
        c.set_data("/m", b"2", None).await.unwrap();
        watch.changed().await;
        for i in 0..5 {
            c.create(&format!("/m/{i}"), b"", &open).await.unwrap();
        }
    });
    let m = get_json(admin, "/commands/monitor");
    let int = |k: &str| m[k].as_i64().unwrap_or_else(|| panic!("{k}: {}", m[k]));
    assert_eq!(int("connection_request_count"), 1);
    assert!(int("bytes_received_count") > 100, "{}", m["bytes_received_count"]);
    assert!(int("response_bytes") > 100, "{}", m["response_bytes"]);
    assert!(int("watch_bytes") > 16, "one NodeDataChanged: {}", m["watch_bytes"]);
    assert_eq!((int("cnt_node_changed_watch_count"), int("sum_node_changed_watch_count")), (1, 1));
    assert!(int("cnt_fsynctime") >= 1 && int("cnt_sync_processor_batch_size") >= 1);
    assert_eq!(int("sum_sync_processor_batch_size"), 8, "createSession and seven writes logged");
    assert!(int("cnt_updatelatency") >= 7 && int("cnt_readlatency") >= 1);
    assert!(int("p999_updatelatency") >= int("p50_updatelatency"));
    // A standalone server elects nobody, syncs nobody.
    for k in ["looking_count", "cnt_election_time", "diff_count", "snap_count"] {
        assert_eq!(int(k), 0, "{k}");
    }
    // Prometheus sees the same figures with ZooKeeper's types.
    let families = corral_server::net::metrics_http::families(server.shared(), false);
    let family = |n: &str| families.iter().find(|f| f.name == n).unwrap_or_else(|| panic!("{n}"));
    use corral_server::admin::prometheus::Kind;
    assert_eq!(family("connection_request_count").kind, Kind::Counter);
    assert_eq!(family("connection_request_count").samples[0].value, 1.0);
    let fsync = family("fsynctime");
    assert_eq!(fsync.kind, Kind::Summary);
    let labelled = |f: &corral_server::admin::prometheus::Family| {
        f.samples.iter().filter(|s| !s.labels.is_empty()).count()
    };
    assert_eq!(labelled(fsync), 1, "fsynctime is a basic summary: its median only");
    let read = family("readlatency");
    assert_eq!(labelled(read), 3, "an advanced summary's quantiles");
    for f in &families {
        assert_eq!(families.iter().filter(|g| g.name == f.name).count(), 1, "{} twice", f.name);
    }
    // stat_reset clears them, as ZooKeeper's ServerMetrics.resetAll.
    get_json(admin, "/commands/srst");
    let m = get_json(admin, "/commands/monitor");
    for k in ["connection_request_count", "response_bytes", "cnt_fsynctime", "cnt_dbinittime"] {
        assert_eq!(m[k], 0, "{k} after srst");
    }
}

#[test]
fn aliases_errors_listing_and_methods() {
    let tmp = tempfile::tempdir().unwrap();
    let (_server, admin) = start(tmp.path());
    // Every alias answers as its command, with the primary name.
    let aliases = std::fs::read_dir(format!("{FIXTURES}/standalone/aliases")).unwrap();
    let mut n = 0;
    for e in aliases {
        let alias = e.unwrap().file_name().to_string_lossy().trim_end_matches(".txt").to_string();
        let zk = fixture("standalone/aliases", &alias);
        let ours = get_json(admin, &format!("/commands/{alias}"));
        assert_eq!(ours["command"], zk["command"], "{alias}");
        n += 1;
    }
    assert!(n >= 22, "ZooKeeper 3.8's 22 aliases");

    // Early errors: the name as asked, status 200.
    for asked in ["nosuch", "RUOK"] {
        let v = get_json(admin, &format!("/commands/{asked}"));
        assert_eq!(v["command"], asked);
        assert_eq!(v["error"], format!("Unknown command: {asked}"));
        assert_eq!(keys(&v), keys(&fixture("standalone", "_unknown-nosuch")));
    }
    // set_trace_mask: the argument, and ZooKeeper's errors (decimal only).
    let v = get_json(admin, "/commands/stmk?traceMask=5");
    assert_eq!(v["tracemask"], 5);
    assert_eq!(get_json(admin, "/commands/gtmk")["tracemask"], 5);
    let bad = get_json(admin, "/commands/set_trace_mask?traceMask=0x10");
    let zk_bad = fixture("standalone", "_stmk-bad-arg");
    assert_eq!(bad["error"], "setTraceMask requires long traceMask argument, got 0x10");
    assert_eq!(
        serde_json::to_string(&keys(&bad)).unwrap(),
        serde_json::to_string(&keys(&zk_bad)).unwrap()
    );
    let missing = get_json(admin, "/commands/set_trace_mask?tracemask=5");
    assert_eq!(missing["error"], "setTraceMask requires long traceMask argument");
    // The layout is Jackson's: error first when a command reports it, no trailing newline.
    let (_, _, body) = http(admin, "GET", "/commands/leader");
    assert_eq!(
        body,
        "{\n  \"error\" : \"server is not initialized\",\n  \"command\" : \"leader\"\n}"
    );
    let (_, _, body) = http(admin, "GET", "/commands/ruok");
    assert_eq!(body, "{\n  \"command\" : \"ruok\",\n  \"error\" : null\n}");

    // Answers whose values cannot differ are ZooKeeper's byte for byte.
    for name in ["ruok", "observers", "voting_view", "is_read_only", "zabstate", "leader"] {
        let zk = std::fs::read_to_string(format!("{FIXTURES}/standalone/{name}.txt")).unwrap();
        let zk_body = &zk[zk.find("\r\n\r\n").unwrap() + 4..];
        assert_eq!(http(admin, "GET", &format!("/commands/{name}")).2, zk_body, "{name}");
    }

    // The listing: every primary name, sorted, as ZooKeeper lists them.
    let (status, _, body) = http(admin, "GET", "/commands");
    assert_eq!(status, 200);
    let zk_listing =
        std::fs::read_to_string(format!("{FIXTURES}/standalone/_listing.txt")).unwrap();
    let links = |t: &str| {
        t.lines().filter(|l| l.starts_with("<a href")).map(str::to_string).collect::<Vec<_>>()
    };
    // ZooKeeper 3.8's, and the 3.9 commands (restore, snapshot), in order.
    let mut want = links(&zk_listing);
    want.push("<a href=\"/commands/restore\">restore</a>".to_string());
    want.push("<a href=\"/commands/snapshot\">snapshot</a>".to_string());
    want.sort();
    assert_eq!(links(&body), want);
    assert_eq!(http(admin, "GET", "/commands/").2, body);

    // Methods and paths ZooKeeper's servlet refuses.
    assert_eq!(http(admin, "POST", "/commands/ruok").0, 405);
    assert_eq!(http(admin, "TRACE", "/commands/ruok").0, 403);
    assert_eq!(http(admin, "GET", "/").0, 404);
    assert_eq!(http(admin, "GET", "/commandsx").0, 404);
    let (status, _, body) = http(admin, "HEAD", "/commands/ruok");
    assert_eq!((status, body.as_str()), (200, ""));
}

/// A connection that sends nothing is closed after admin.idleTimeout; the server keeps
/// answering others meanwhile.
#[test]
fn idle_connections_are_closed() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = Config::default_standalone();
    config.initial_text = None;
    let settings = Settings::from_config(&config);
    let server = RunningServer::start(ServerOptions {
        bind: "127.0.0.1:0".parse().unwrap(),
        db: DbOptions::new(tmp.path()),
        settings,
        config,
        ensemble: None,
        client_tls: None,
    })
    .unwrap();
    let admin = server
        .start_admin_server(AdminHttpOptions {
            bind: "127.0.0.1:0".parse().unwrap(),
            command_url: "/cmd".into(),
            idle_timeout: Duration::from_millis(300),
            tls: None,
        })
        .unwrap();
    let mut idle = TcpStream::connect(admin).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(get_json(admin, "/cmd/ruok")["command"], "ruok", "admin.commandURL");
    assert_eq!(http(admin, "GET", "/commands/ruok").0, 404);
    let started = std::time::Instant::now();
    let mut buf = [0u8; 64];
    let n = idle.read(&mut buf).unwrap_or(0);
    let _ = idle.write_all(b"x");
    assert!(started.elapsed() < Duration::from_secs(8), "closed within the idle timeout");
    // hyper answers a header timeout with a 408 or just closes: either way the connection ends.
    assert!(n == 0 || String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"));

    // A flood: more idle connections than the limit (64). Those past it are closed at once;
    // the clients' port is not affected; once the idle ones time out, commands are answered
    // again.
    let flood: Vec<TcpStream> = (0..100).map(|_| TcpStream::connect(admin).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(100));
    let mut closed = 0;
    for mut c in flood.iter().skip(64) {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        if c.read(&mut buf).unwrap_or(0) == 0 {
            closed += 1;
        }
    }
    assert!(closed >= 30, "connections past the limit are closed: {closed} of 36");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let addr = server.addr().to_string();
    rt.block_on(async {
        let c = zk::Client::connect(&addr).await.unwrap();
        c.create(
            "/during-flood",
            b"",
            &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()),
        )
        .await
        .unwrap();
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let answered = std::panic::catch_unwind(|| http(admin, "GET", "/cmd/ruok").0 == 200);
        if answered.unwrap_or(false) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "answered again once the flood idles out");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(flood);

    // A large body is not read where no command takes one: refused at once, the connection
    // closed, the server answering on.
    for target in ["/cmd/ruok", "/cmd/restore"] {
        let mut s = TcpStream::connect(admin).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        let len = 512 << 20;
        write!(s, "POST {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n\r\n").unwrap();
        // Far less than the declared length is accepted before the answer.
        let mut sent = 0usize;
        let chunk = vec![0u8; 64 << 10];
        while sent < (8 << 20) {
            match s.write(&chunk) {
                Ok(n) => sent += n,
                Err(_) => break,
            }
        }
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        let head = String::from_utf8_lossy(&answer[..answer.len().min(40)]).to_string();
        let want = if target.ends_with("ruok") { "405" } else { "401" };
        assert!(head.starts_with(&format!("HTTP/1.1 {want}")), "{target}: {head:?}");
    }
    assert_eq!(get_json(admin, "/cmd/ruok")["command"], "ruok");
}

/// `last_snapshot` (`lsnp`): the newest snapshot the database took (in its own store,
/// `<dataDir>/corral-v1/snap`), not only those the `snapshot` command wrote.
#[test]
fn last_snapshot_is_the_databases_newest() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, admin) = start_with(tmp.path(), |c| c.snap_count = 2);
    let lsnp = || -> (i64, i64) {
        let v: Value = serde_json::from_str(&http(admin, "GET", "/commands/lsnp").2).unwrap();
        let zxid = i64::from_str_radix(v["zxid"].as_str().unwrap(), 16).unwrap();
        (zxid, v["timestamp"].as_i64().unwrap())
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let addr = server.addr().to_string();
    rt.block_on(async {
        let c = zk::Client::connect(&addr).await.unwrap();
        let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
        for i in 0..20 {
            c.create(&format!("/n{i}"), b"x", &open).await.unwrap();
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let (zxid, ts) = loop {
        let (zxid, ts) = lsnp();
        if zxid > 0 || std::time::Instant::now() > deadline {
            break (zxid, ts);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(zxid > 0, "no snapshot reported after 20 writes with snapCount=2");
    let file = tmp.path().join("corral-v1/snap").join(format!("snapshot.{zxid:x}"));
    assert!(file.exists(), "{} is the database's", file.display());
    assert!(std::fs::read_dir(tmp.path().join("corral-v1/snap")).unwrap().all(|e| {
        let name = e.unwrap().file_name().into_string().unwrap();
        name.strip_prefix("snapshot.")
            .and_then(|h| i64::from_str_radix(h, 16).ok())
            .is_none_or(|z| z <= zxid)
    }));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
        as i64;
    assert!((now - 120..=now + 1).contains(&ts), "timestamp {ts} is the file's, in seconds");
}

/// An HTTP/1.1 GET over any stream (TLS or plain).
fn get_over(
    s: &mut dyn common::raw::Stream,
    target: &str,
    auth: Option<&str>,
) -> std::io::Result<Answer> {
    let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
    common::http::exchange(s, "GET", target, &headers, b"")
}

/// A server whose AdminServer takes HTTPS as ZooKeeper's does, from zoo.cfg lines `admin`
/// (with the test key material as `ssl.quorum.*`).
fn start_https(dir: &Path, admin: &str) -> (RunningServer, SocketAddr) {
    use common::raw::testdata;
    let text = format!(
        "tickTime=2000\ndataDir={}\nclientPort=2181\n\
         ssl.quorum.keyStore.location={}\nssl.quorum.keyStore.password=apassword\n\
         ssl.quorum.trustStore.location={}\nssl.quorum.trustStore.password=apassword\n\
         authProvider.x509=org.apache.zookeeper.server.auth.X509AuthenticationProvider\n{admin}",
        dir.display(),
        testdata("keystore-encrypted.pem"),
        testdata("truststore.pem"),
    );
    let config = Config::parse_str(&text).expect("config");
    let mut opts = ServerOptions::from_config(&config).expect("options");
    opts.bind = "127.0.0.1:0".parse().unwrap();
    let server = RunningServer::start(opts).expect("server starts");
    let mut admin = AdminHttpOptions::from_config(&config).unwrap().expect("enabled");
    assert!(admin.tls.is_some(), "HTTPS asked for");
    admin.bind = "127.0.0.1:0".parse().unwrap();
    let addr = server.start_admin_server(admin).expect("admin server starts");
    (server, addr)
}

/// HTTPS (ZooKeeper's `admin.forceHttps`, `admin.portUnification`, `admin.needClientAuth`,
/// with the `ssl.quorum.*` stores): TLS answers with `Strict-Transport-Security`; forced, plain
/// HTTP gets nothing; with a client certificate required, a client without one is refused,
/// and `Authorization: x509` authenticates the certificate's subject for `snapshot`; unified,
/// plain HTTP is answered and counted in `insecure_admin_count`.
#[test]
fn https_as_zookeepers_jetty_serves_it() {
    use common::raw::{plain, tls};
    let cert = Some(("client-cert.pem", "client-key.pem"));
    let tmp = tempfile::tempdir().unwrap();
    let (server, admin) = start_https(
        tmp.path(),
        "admin.forceHttps=true\nadmin.needClientAuth=true\nadmin.rateLimiterIntervalInMS=0\n",
    );
    let (status, headers, body) =
        get_over(&mut *tls(admin, cert).unwrap(), "/commands/ruok", None).unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(headers
        .iter()
        .any(|(k, v)| k == "strict-transport-security" && v == "max-age=86400; includeSubDomains"));
    assert!(get_over(&mut *plain(admin), "/commands/ruok", None).is_err(), "HTTPS only");
    let no_cert = tls(admin, None).and_then(|mut s| get_over(&mut *s, "/commands/ruok", None));
    assert!(no_cert.is_err(), "a client certificate is required: {no_cert:?}");
    // Root: ALL to the certificate's subject only.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let addr = server.addr().to_string();
    rt.block_on(async {
        let c = zk::Client::connect(&addr).await.unwrap();
        let only = [zk::Acl::new(zk::Permission::ALL, zk::AuthId::new("x509", "CN=client"))];
        c.set_acl("/", &zk::Acls::new(&only), None).await.unwrap();
    });
    let snap = |auth: &str| {
        get_over(&mut *tls(admin, cert).unwrap(), "/commands/snapshot?streaming=false", Some(auth))
            .unwrap()
            .0
    };
    assert_eq!(snap("digest any:one"), 403);
    assert_eq!(snap("x509"), 200, "the certificate's subject holds ALL on /");
    assert_eq!(snap("x509 ignored"), 200);
    drop(server);

    // Without needClientAuth no certificate is asked for, so x509 authenticates nothing.
    let tmp = tempfile::tempdir().unwrap();
    let (server, admin) = start_https(tmp.path(), "admin.forceHttps=true\n");
    let mut s = tls(admin, None).unwrap();
    assert_eq!(get_over(&mut *s, "/commands/snapshot", Some("x509")).unwrap().0, 401);
    drop(server);

    // Port unification: both, plain requests counted.
    let tmp = tempfile::tempdir().unwrap();
    let (server, admin) = start_https(tmp.path(), "admin.portUnification=true\n");
    let (status, headers, _) = get_over(&mut *plain(admin), "/commands/ruok", None).unwrap();
    assert_eq!(status, 200);
    assert!(!headers.iter().any(|(k, _)| k == "strict-transport-security"));
    assert_eq!(get_over(&mut *tls(admin, None).unwrap(), "/commands/ruok", None).unwrap().0, 200);
    let (_, _, body) =
        get_over(&mut *tls(admin, None).unwrap(), "/commands/monitor", None).unwrap();
    let m: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(m["insecure_admin_count"], 1, "the one plain request");
    drop(server);
}

/// `restore` (ZooKeeper 3.9's POST of a snapshot): the snapshot `snapshot` streamed becomes the
/// server's state at its current zxid — durably (it survives a restart), with later writes
/// numbered on from before the restore — after ZooKeeper's checks, in its order.
#[test]
fn a_streamed_snapshot_restores() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, admin) = start_with(tmp.path(), |c| c.admin_rate_limiter_interval_ms = 0);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let addr = server.addr().to_string();
    let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    rt.block_on(async {
        let c = zk::Client::connect(&addr).await.unwrap();
        c.create("/a", b"before", &open).await.unwrap();
    });
    let (status, headers, snapshot) =
        http_raw(admin, "GET", "/commands/snapshot", Some("digest any:one"));
    assert_eq!(status, 200);
    let snapshot_zxid = headers.iter().find(|(k, _)| k == "last_zxid").unwrap().1.clone();
    let last_before = rt.block_on(async {
        let c = zk::Client::connect(&addr).await.unwrap();
        c.create("/b", b"", &open).await.unwrap();
        c.set_data("/a", b"after", None).await.unwrap().czxid
    });
    let _ = last_before;
    let zxid_before = server.shared().last_zxid.load(std::sync::atomic::Ordering::Relaxed);

    // ZooKeeper's checks first: authorization, the method.
    assert_eq!(http_post(admin, "/commands/restore", None, &snapshot).0, 401);
    assert_eq!(http_raw(admin, "GET", "/commands/restore", Some("digest any:one")).0, 405);
    // Not a snapshot: 500, nothing changed.
    let (status, body) = http_post(admin, "/commands/restore", Some("digest any:one"), b"junk");
    assert_eq!(status, 500, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((v["command"].as_str(), v["error"].is_null()), (Some("restore"), true));
    let mut torn = snapshot.clone();
    let n = torn.len();
    torn[n / 2] ^= 0xff;
    assert_eq!(http_post(admin, "/commands/rest", Some("digest any:one"), &torn).0, 500);
    rt.block_on(async {
        let c = zk::Client::connect(&addr).await.unwrap();
        assert_eq!(c.get_data("/a").await.unwrap().0, b"after");
    });

    // The restore.
    let (status, body) = http_post(admin, "/commands/restore", Some("digest any:one"), &snapshot);
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(format!("0x{:x}", v["last_zxid"].as_i64().unwrap()), snapshot_zxid);
    assert_eq!((v["command"].as_str(), v["error"].is_null()), (Some("restore"), true));
    let after = rt.block_on(async {
        let c = zk::Client::connect(&addr).await.unwrap();
        assert_eq!(c.get_data("/a").await.unwrap().0, b"before", "the snapshot's data");
        assert!(c.check_stat("/b").await.unwrap().is_none(), "/b came after the snapshot");
        c.create("/c", b"", &open).await.unwrap().0.czxid
    });
    assert!(after > zxid_before, "zxids go on from before the restore: {after:#x}");
    drop(server);

    // It is durable: a restart recovers the restored state and what came after it.
    let (server, _admin) = start(tmp.path());
    let addr = server.addr().to_string();
    rt.block_on(async {
        let c = zk::Client::connect(&addr).await.unwrap();
        assert_eq!(c.get_data("/a").await.unwrap().0, b"before");
        assert!(c.check_stat("/b").await.unwrap().is_none());
        assert!(c.check_stat("/c").await.unwrap().is_some());
    });
    drop(server);

    // Switched off: 503; a snapshot larger than corral.admin.restoreMaxBytes: 413; the rate
    // limit: 429 for the second in an interval.
    let tmp = tempfile::tempdir().unwrap();
    let (_server, admin) = start_with(tmp.path(), |c| c.admin_restore_enabled = false);
    assert_eq!(http_post(admin, "/commands/restore", Some("digest any:one"), &snapshot).0, 503);
    let tmp = tempfile::tempdir().unwrap();
    let (_server, admin) = start_with(tmp.path(), |c| {
        c.admin_restore_max_bytes = 100;
        c.admin_rate_limiter_interval_ms = 0;
    });
    assert_eq!(http_post(admin, "/commands/restore", Some("digest any:one"), &snapshot).0, 413);
    let tmp = tempfile::tempdir().unwrap();
    let (_server, admin) = start(tmp.path());
    assert_eq!(http_post(admin, "/commands/restore", Some("digest any:one"), &snapshot).0, 200);
    assert_eq!(http_post(admin, "/commands/restore", Some("digest any:one"), &snapshot).0, 429);
}

/// A restore under a client's write load: it is answered in bounded time, the writer's
/// session (in the snapshot) resumes, and every write acknowledged after the restore's answer
/// is there after a restart, on top of the snapshot's data.
#[test]
fn a_restore_under_load() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, admin) = start_with(tmp.path(), |c| c.admin_rate_limiter_interval_ms = 0);
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let addr = server.addr().to_string();
    let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    let writer = rt.block_on(async {
        let c = zk::Client::connect(&addr).await.unwrap();
        c.create("/base", b"snapshot", &open).await.unwrap();
        c
    });
    let snapshot = http_raw(admin, "GET", "/commands/snapshot", Some("digest any:one")).2;
    // Writes go on (bounded: 3,000 creates or 20 s) while the restore runs.
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(u32, std::time::Instant)>::new()));
    let log = acked.clone();
    let load = rt.spawn(async move {
        let started = std::time::Instant::now();
        let mut i = 0u32;
        while i < 3000 && started.elapsed() < Duration::from_secs(20) {
            let path = format!("/w{i}");
            match writer.create(&path, b"", &open).await {
                Ok(_) | Err(zk::Error::NodeExists) => {
                    log.lock().unwrap().push((i, std::time::Instant::now()));
                    i += 1;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while acked.lock().unwrap().len() < 300 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let (status, body) = http_post(admin, "/commands/restore", Some("digest any:one"), &snapshot);
    assert_eq!(status, 200, "{body}");
    let restored_at = std::time::Instant::now();
    rt.block_on(load).unwrap();
    let acked = acked.lock().unwrap().clone();
    let after: Vec<u32> = acked.iter().filter(|(_, t)| *t > restored_at).map(|(i, _)| *i).collect();
    assert!(!after.is_empty(), "the writer's session resumed after the restore");
    drop(server);
    let (server, _admin) = start(tmp.path());
    let addr = server.addr().to_string();
    rt.block_on(async {
        let c = zk::Client::connect(&addr).await.unwrap();
        assert_eq!(c.get_data("/base").await.unwrap().0, b"snapshot");
        for i in &after {
            assert!(c.check_stat(&format!("/w{i}")).await.unwrap().is_some(), "/w{i} acked after");
        }
        let (children, _) = c.get_children("/").await.unwrap();
        let writes = children.iter().filter(|n| n.starts_with('w')).count();
        assert!(writes >= after.len() && writes < acked.len() + 1, "{writes} of {}", acked.len());
    });
}

/// `snapshot`: ZooKeeper 3.9's checks — an Authorization header, ALL permissions on `/` bit by
/// bit (CVE-2025-58457: a READ entry alone must not let it through), the rate limit, the
/// switch — and the file: a ZooKeeper-format snapshot streamed with its zxid and size in
/// headers, and kept in `<dataDir>/version-2`.
#[test]
fn snapshots_are_streamed_to_those_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, admin) = start_with(tmp.path(), |c| c.admin_rate_limiter_interval_ms = 0);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let addr = server.addr().to_string();
    rt.block_on(async {
        let c = zk::Client::connect(&addr).await.unwrap();
        c.auth("digest".into(), b"bob:pw".to_vec()).await.unwrap();
        let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
        c.create("/app", b"data", &open).await.unwrap();
        // Root: bob may do everything, anyone may read.
        let bob = corral_server::tree::acl::digest_id("bob", "pw");
        let acls = [
            zk::Acl::new(zk::Permission::ALL, zk::AuthId::new("digest", &bob)),
            zk::Acl::new(zk::Permission::READ, zk::AuthId::anyone()),
        ];
        c.set_acl("/", &zk::Acls::new(&acls), None).await.unwrap();
    });
    let v: Value =
        serde_json::from_slice(&http_raw(admin, "GET", "/commands/snapshot", None).2).unwrap();
    assert_eq!(v["error"], "Auth info is missing for the command");
    assert_eq!(http_raw(admin, "GET", "/commands/snapshot", None).0, 401);
    for bad in ["digest", "basic Ym9iOnB3", "digest bob:pw extra", "sasl bob"] {
        let (status, _, body) = http_raw(admin, "GET", "/commands/snapshot", Some(bad));
        assert_eq!(status, 401, "{bad}");
        assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["error"], "Not authenticated");
    }
    // Alice matches only the READ entry: refused (before ZooKeeper 3.9.4 she got through).
    let (status, _, body) = http_raw(admin, "GET", "/commands/snapshot", Some("digest alice:pw"));
    assert_eq!(status, 403);
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["error"], "Not authorized");
    assert_eq!(http_raw(admin, "GET", "/commands/snapshot", Some("ip")).0, 403);
    // Bob gets the snapshot.
    let (status, headers, body) =
        http_raw(admin, "GET", "/commands/snapshot?streaming=true", Some("digest bob:pw"));
    assert_eq!(status, 200);
    let header = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap();
    assert_eq!(header("content-type"), "application/octet-stream");
    assert_eq!(header("snapshot_size"), body.len().to_string());
    let snap = corral_server::tree::zk_snapshot::read_snapshot(&body, Default::default(), None)
        .expect("a ZooKeeper snapshot");
    assert_eq!(header("last_zxid"), format!("0x{:x}", snap.last_processed_zxid.unwrap()));
    let (data, _) = snap.tree.get_data("/app").expect("/app in the snapshot");
    assert_eq!(data.as_slice(), b"data");
    let kept = tmp
        .path()
        .join("version-2")
        .join(format!("snapshot.{:x}", snap.last_processed_zxid.unwrap()));
    assert_eq!(std::fs::read(&kept).unwrap(), body, "kept where ZooKeeper keeps them");
    // streaming=false: the JSON envelope, the headers.
    let (status, headers, body) =
        http_raw(admin, "GET", "/commands/snap?streaming=false", Some("digest bob:pw"));
    assert_eq!(status, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((v["command"].as_str(), v["error"].is_null()), (Some("snapshot"), true));
    assert!(headers.iter().any(|(k, _)| k == "snapshot_size"));
    drop(server);

    // The rate limit: one per interval (the first is allowed).
    let tmp = tempfile::tempdir().unwrap();
    let (server, admin) = start(tmp.path());
    assert_eq!(http_raw(admin, "GET", "/commands/snapshot", Some("digest any:one")).0, 200);
    assert_eq!(http_raw(admin, "GET", "/commands/snapshot", Some("digest any:one")).0, 429);
    drop(server);
    // Switched off.
    let tmp = tempfile::tempdir().unwrap();
    let (_server, admin) = start_with(tmp.path(), |c| c.admin_snapshot_enabled = false);
    assert_eq!(http_raw(admin, "GET", "/commands/snapshot", Some("digest any:one")).0, 503);
}
