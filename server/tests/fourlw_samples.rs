//! Four-letter words against live ZooKeeper 3.8.0.
//!
//! `tests/data/zk-3.8.0-4lw-samples.txt` (a copy of `shared/zk-3.8.0-4lw-samples.txt`) holds
//! what Apache ZooKeeper 3.8.0 answered to every word on a fresh standalone server. Each test
//! gives `admin::fourlw::execute` the values that server
//! had (the variable parts: counters, addresses, paths, version) and compares bytes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use corral_server::admin::fourlw::{
    execute, FourLetterSource, FourLetterWord, Whitelist, DEFAULT_TRACE_MASK, ZK_NOT_SERVING,
};
use corral_server::admin::monitor::{MetricValue, MonitorStats};
use corral_server::admin::report::{
    BufferStats, ConfData, ConfRuntime, ConnectionInfo, DirSizes, DumpData, Environment,
    EnvironmentInfo, ExpiryDump, ServerMode, ServerStats, SessionTrackerDump, WatchSummary,
};
use corral_server::admin::{full_version, javafmt};
use corral_server::config::Config;

/// The version string of the Debian build the samples come from.
const SAMPLE_VERSION: &str = "3.8.0-${mvngit.commit.id}, built on 2024-12-29 17:54 UTC";

fn samples_text() -> String {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/zk-3.8.0-4lw-samples.txt");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Word → the exact bytes ZooKeeper answered.
fn samples() -> BTreeMap<String, Vec<u8>> {
    let text = samples_text();
    let mut out = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in text.split_inclusive('\n') {
        if let Some(header) = line.strip_prefix("===== ") {
            if let Some((word, body)) = current.take() {
                out.insert(word, multiline_body(&body));
            }
            let header = header.trim_end_matches('\n');
            let (word, rest) = header.split_once(' ').unwrap_or((header, ""));
            if rest.is_empty() {
                current = Some((word.to_string(), String::new()));
            } else {
                out.insert(word.to_string(), python_bytes(rest));
            }
        } else if let Some((_, body)) = current.as_mut() {
            body.push_str(line);
        }
    }
    if let Some((word, body)) = current.take() {
        out.insert(word, multiline_body(&body));
    }
    out
}

/// A multi-line sample is the answer followed by the newline `print` added.
fn multiline_body(body: &str) -> Vec<u8> {
    body.strip_suffix('\n').unwrap_or(body).as_bytes().to_vec()
}

/// Decodes a Python bytes literal `b'...'`.
fn python_bytes(literal: &str) -> Vec<u8> {
    let inner = literal.strip_prefix("b'").and_then(|s| s.strip_suffix('\'')).unwrap();
    let mut out = Vec::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c as u8);
            continue;
        }
        match chars.next().unwrap() {
            'n' => out.push(b'\n'),
            't' => out.push(b'\t'),
            '\\' => out.push(b'\\'),
            '\'' => out.push(b'\''),
            other => panic!("unexpected escape \\{other}"),
        }
    }
    out
}

/// The state of the sampled server.
struct SampledServer {
    serving: bool,
    read_only: bool,
    trace_mask: i64,
    connection_resets: usize,
    server_resets: usize,
    /// `stat` and `cons` were sent on connections from different client ports.
    client: SocketAddr,
    packets_received: i64,
    packets_sent: i64,
    mntr: Vec<(String, String)>,
}

impl SampledServer {
    fn new() -> SampledServer {
        SampledServer {
            serving: true,
            read_only: false,
            trace_mask: DEFAULT_TRACE_MASK,
            connection_resets: 0,
            server_resets: 0,
            client: "127.0.0.1:56016".parse().unwrap(),
            packets_received: 3,
            packets_sent: 2,
            mntr: Vec::new(),
        }
    }
}

impl FourLetterSource for SampledServer {
    fn is_serving(&self) -> bool {
        self.serving
    }
    fn is_read_only(&self) -> bool {
        self.read_only
    }
    fn server_stats(&self) -> ServerStats {
        ServerStats {
            version: SAMPLE_VERSION.to_string(),
            min_latency_ms: 0,
            avg_latency_ms: javafmt::rounded_average(0, 0),
            max_latency_ms: 0,
            packets_received: self.packets_received,
            packets_sent: self.packets_sent,
            connections: 1,
            outstanding_requests: 0,
            last_processed_zxid: 0,
            mode: ServerMode::Standalone,
            node_count: 5,
            proposal_sizes: BufferStats::default(),
        }
    }
    fn connections(&self) -> Vec<ConnectionInfo> {
        // The four-letter-word connection itself: one packet (the word) received.
        let mut c = ConnectionInfo::new(Some(self.client), 0);
        c.packets_received = 1;
        vec![c]
    }
    fn conf(&self) -> ConfData {
        let config =
            Config::parse_str("dataDir=/srv/zk/data\nclientPort=21811\ntickTime=2000\n").unwrap();
        ConfData::from_config(
            &config,
            &ConfRuntime {
                client_port: Some(21811),
                secure_client_port: None,
                data_dir_size: 457,
                data_log_size: 457,
                working_dir: PathBuf::from("/srv/zk"),
            },
        )
    }
    fn environment(&self) -> Environment {
        let sample = samples();
        let text = String::from_utf8(sample["envi"].clone()).unwrap();
        let entries = text
            .lines()
            .skip(1)
            .map(|l| {
                let (k, v) = l.split_once('=').unwrap();
                (k.to_string(), v.to_string())
            })
            .collect();
        Environment { entries }
    }
    fn dir_sizes(&self) -> DirSizes {
        DirSizes { data_dir_size: 457, log_dir_size: 457 }
    }
    fn dump(&self) -> DumpData {
        DumpData {
            sessions: SessionTrackerDump::Expiry { local: None, global: ExpiryDump::default() },
            ephemerals: vec![],
            connections: None,
        }
    }
    fn watch_summary(&self) -> WatchSummary {
        WatchSummary { connections: 0, paths: 0, total_watches: 0 }
    }
    fn watches_by_session(&self) -> Vec<(i64, Vec<String>)> {
        vec![]
    }
    fn watches_by_path(&self) -> Vec<(String, Vec<i64>)> {
        vec![]
    }
    fn monitor(&self) -> MonitorStats {
        monitor_from_sample(&self.mntr)
    }
    fn digest_log(&self) -> Vec<(i64, i64)> {
        vec![]
    }
    fn trace_mask(&self) -> i64 {
        self.trace_mask
    }
    fn set_trace_mask(&mut self, mask: i64) {
        self.trace_mask = mask;
    }
    fn reset_connection_stats(&mut self) {
        self.connection_resets += 1;
    }
    fn reset_server_stats(&mut self) {
        self.server_resets += 1;
    }
}

/// `MonitorStats` holding the sample's values: the typed keys from their lines, every other
/// line as an extra entry (integer, double or text as the sample shows it).
fn monitor_from_sample(lines: &[(String, String)]) -> MonitorStats {
    let map: BTreeMap<&str, &str> = lines.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let int = |k: &str| map[k].parse::<i64>().unwrap();
    let double = |k: &str| map[k].parse::<f64>().unwrap();
    assert_eq!(map["server_state"], "standalone");
    let mut m = MonitorStats::new(map["version"].to_string(), ServerMode::Standalone);
    m.ephemerals_count = int("ephemerals_count");
    m.num_alive_connections = int("num_alive_connections");
    m.avg_latency = double("avg_latency");
    m.outstanding_requests = int("outstanding_requests");
    m.znode_count = int("znode_count");
    m.global_sessions = int("global_sessions");
    m.non_mtls_remote_conn_count = int("non_mtls_remote_conn_count");
    m.last_client_response_size = int("last_client_response_size");
    m.packets_sent = int("packets_sent");
    m.packets_received = int("packets_received");
    m.max_client_response_size = int("max_client_response_size");
    m.connection_drop_probability = double("connection_drop_probability");
    m.watch_count = int("watch_count");
    m.auth_failed_count = int("auth_failed_count");
    m.min_latency = int("min_latency");
    m.max_file_descriptor_count = Some(int("max_file_descriptor_count"));
    m.approximate_data_size = int("approximate_data_size");
    m.open_file_descriptor_count = Some(int("open_file_descriptor_count"));
    m.local_sessions = int("local_sessions");
    m.uptime_ms = int("uptime");
    m.max_latency = int("max_latency");
    m.outstanding_tls_handshake = int("outstanding_tls_handshake");
    m.min_client_response_size = int("min_client_response_size");
    m.non_mtls_local_conn_count = int("non_mtls_local_conn_count");
    let typed: Vec<String> = m.entries().into_iter().map(|(k, _)| k).collect();
    for (k, v) in lines {
        if typed.contains(k) {
            continue;
        }
        let value = if let Ok(n) = v.parse::<i64>() {
            MetricValue::Int(n)
        } else if let Ok(d) = v.parse::<f64>() {
            MetricValue::Double(d)
        } else {
            MetricValue::Text(v.clone())
        };
        m.extra.push((k.clone(), value));
    }
    m
}

fn mntr_lines(sample: &[u8]) -> Vec<(String, String)> {
    String::from_utf8(sample.to_vec())
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.split_once('\t').unwrap();
            (k.strip_prefix("zk_").unwrap().to_string(), v.to_string())
        })
        .collect()
}

fn run(server: &mut SampledServer, word: FourLetterWord) -> Vec<u8> {
    execute(word, &Whitelist::all(), server, Some(1))
}

#[track_caller]
fn assert_text(actual: &[u8], expected: &[u8]) {
    assert_eq!(String::from_utf8_lossy(actual), String::from_utf8_lossy(expected));
}

#[test]
fn every_word_matches_the_samples() {
    let sample = samples();
    let mut server = SampledServer::new();
    server.mntr = mntr_lines(&sample["mntr"]);
    let mut compared = 0;
    for word in FourLetterWord::ALL {
        let Some(expected) = sample.get(word.name()) else {
            assert_eq!(word, FourLetterWord::TelnetClose, "no sample for {word}");
            continue;
        };
        // The counters moved between the words of the capture.
        match word {
            FourLetterWord::Srvr => (server.packets_received, server.packets_sent) = (3, 2),
            FourLetterWord::Stat => {
                (server.packets_received, server.packets_sent) = (4, 3);
                server.client = "127.0.0.1:56016".parse().unwrap();
            }
            FourLetterWord::Cons => server.client = "127.0.0.1:56052".parse().unwrap(),
            _ => {}
        }
        assert_text(&run(&mut server, word), expected);
        compared += 1;
    }
    assert_eq!(compared, 18);
    assert_eq!(server.trace_mask, 1, "stmk set the mask");
    assert_eq!((server.connection_resets, server.server_resets), (1, 1));
}

#[test]
fn unknown_word_is_a_length() {
    let sample = samples();
    assert_eq!(sample["xyzw"], b"", "ZooKeeper closes without an answer");
    assert_eq!(FourLetterWord::detect(*b"xyzw"), None);
}

#[test]
fn telnet_close_gets_no_answer() {
    let mut server = SampledServer::new();
    assert_eq!(run(&mut server, FourLetterWord::TelnetClose), b"");
}

#[test]
fn mntr_keeps_every_always_key() {
    let sample = samples();
    let mut server = SampledServer::new();
    server.mntr = mntr_lines(&sample["mntr"]);
    let text = String::from_utf8(run(&mut server, FourLetterWord::Mntr)).unwrap();
    for key in [
        "zk_version",
        "zk_avg_latency",
        "zk_max_latency",
        "zk_min_latency",
        "zk_packets_received",
        "zk_packets_sent",
        "zk_num_alive_connections",
        "zk_outstanding_requests",
        "zk_server_state",
        "zk_znode_count",
        "zk_watch_count",
        "zk_ephemerals_count",
        "zk_approximate_data_size",
    ] {
        assert!(text.lines().any(|l| l.split('\t').next() == Some(key)), "{key} missing");
    }
}

#[test]
fn not_serving() {
    let mut server = SampledServer::new();
    server.serving = false;
    let not_serving = format!("{ZK_NOT_SERVING}\n");
    for word in FourLetterWord::ALL {
        let answer = String::from_utf8(run(&mut server, word)).unwrap();
        let expected = match word {
            FourLetterWord::Ruok => "imok".to_string(),
            FourLetterWord::Isro => "null".to_string(),
            FourLetterWord::Gtmk => DEFAULT_TRACE_MASK.to_string(),
            FourLetterWord::Stmk => "1".to_string(),
            FourLetterWord::Envi => answer.clone(),
            FourLetterWord::TelnetClose => String::new(),
            FourLetterWord::Hash => ZK_NOT_SERVING.to_string(),
            _ => not_serving.clone(),
        };
        assert_eq!(answer, expected, "{word}");
    }
    assert!(String::from_utf8(run(&mut server, FourLetterWord::Envi))
        .unwrap()
        .starts_with("Environment:\nzookeeper.version="));
    assert_eq!(server.connection_resets + server.server_resets, 0, "nothing reset");
}

#[test]
fn read_only_server() {
    let mut server = SampledServer::new();
    server.read_only = true;
    assert_eq!(run(&mut server, FourLetterWord::Isro), b"ro");
}

#[test]
fn whitelist_refusals() {
    let mut server = SampledServer::new();
    let default = Whitelist::default();
    for word in FourLetterWord::ALL {
        let answer = execute(word, &default, &mut server, Some(7));
        if word == FourLetterWord::Srvr {
            assert!(answer.starts_with(b"Zookeeper version: "));
        } else {
            assert_eq!(
                String::from_utf8(answer).unwrap(),
                format!("{} is not executed because it is not in the whitelist.\n", word.name())
            );
        }
    }
    assert_eq!(server.trace_mask, DEFAULT_TRACE_MASK, "a refused stmk changes nothing");
    let some = Whitelist::parse(Some("ruok,mntr"), true);
    assert_eq!(execute(FourLetterWord::Ruok, &some, &mut server, None), b"imok");
    assert_eq!(execute(FourLetterWord::Isro, &some, &mut server, None), b"rw");
    assert!(execute(FourLetterWord::Conf, &some, &mut server, None).starts_with(b"conf is not"));
}

#[test]
fn stmk_without_its_mask_answers_nothing() {
    let mut server = SampledServer::new();
    assert_eq!(execute(FourLetterWord::Stmk, &Whitelist::all(), &mut server, None), b"");
    assert_eq!(server.trace_mask, DEFAULT_TRACE_MASK);
}

#[test]
fn corral_environment_has_zookeepers_keys_in_order() {
    let sample = String::from_utf8(samples()["envi"].clone()).unwrap();
    let sample_keys: Vec<&str> =
        sample.lines().skip(1).map(|l| l.split_once('=').unwrap().0).collect();
    let mut info = EnvironmentInfo::new(full_version());
    info.memory_free_mb = Some(371);
    let ours = Environment::from_info(&info);
    let keys: Vec<&str> = ours.entries.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, sample_keys);
    assert!(ours.entries.contains(&("os.memory.free".to_string(), "371MB".to_string())));
    // kazoo's server_version(): the zookeeper.version line, then re.match(r"([\d\.]*)").
    let text = corral_server::admin::report::render_envi(&ours);
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("zookeeper.version="))
        .expect("envi has zookeeper.version");
    let digits: String = version.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    assert_eq!(digits, "3.8.0");
}

#[test]
fn quorum_conf() {
    let text = "tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir=/var/zk\n\
                server.1=zk1:2888:3888\nserver.2=zk2:2888:3888;2182\n\
                server.3=zk3:2888:3888:observer;[::1]:2183\nserver.4=zk4:2888:3888\n";
    struct Files;
    impl corral_server::config::ConfigFiles for Files {
        fn read_myid(&self, _: &std::path::Path) -> std::io::Result<Option<String>> {
            Ok(Some("2\n".to_string()))
        }
        fn read_dynamic_config(&self, _: &std::path::Path) -> std::io::Result<String> {
            unreachable!()
        }
    }
    let config = Config::parse_with(text, &Files).unwrap();
    let conf = ConfData::from_config(
        &config,
        &ConfRuntime {
            client_port: Some(2182),
            secure_client_port: None,
            data_dir_size: 1,
            data_log_size: 2,
            working_dir: PathBuf::from("/"),
        },
    );
    assert_eq!(
        corral_server::admin::report::render_conf(&conf),
        "clientPort=2182\nsecureClientPort=-1\ndataDir=/var/zk/version-2\ndataDirSize=1\n\
         dataLogDir=/var/zk/version-2\ndataLogSize=2\ntickTime=2000\nmaxClientCnxns=60\n\
         minSessionTimeout=4000\nmaxSessionTimeout=40000\nclientPortListenBacklog=-1\n\
         serverId=2\ninitLimit=10\nsyncLimit=5\nelectionAlg=3\nelectionPort=3888\n\
         quorumPort=2888\npeerType=0\nmembership: \n\
         server.1=zk1:2888:3888:participant\nserver.2=zk2:2888:3888:participant;0.0.0.0:2182\n\
         server.3=zk3:2888:3888:observer;[::1]:2183\nserver.4=zk4:2888:3888:participant\n\
         version=0"
    );
}

/// A second capture, made with one session open (`tests/data/zk-3.8.0-live-session.py`): the
/// full `cons` line of a session, `dump` with session and connection buckets (ZooKeeper's NIO
/// factory) and an ephemeral, and the watch listings. Also the session's password.
#[test]
fn live_session_capture() {
    use corral_server::admin::report::{
        connection_item, render_cons, render_dump, render_stat, render_watches_by_path,
        render_watches_by_session, render_wchs, session_item, ExpiryBucket,
    };
    use corral_server::session::ids::session_password;

    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/zk-3.8.0-live-session.txt");
    let text = std::fs::read_to_string(path).unwrap();
    let mut answers = BTreeMap::new();
    let mut session_line = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("===== ") {
            let (word, literal) = rest.split_once(' ').unwrap();
            answers.insert(word.to_string(), python_bytes(literal));
        } else if let Some(rest) = line.strip_prefix("session ") {
            session_line = Some(rest.to_string());
        }
    }
    let session_line = session_line.unwrap();
    let fields: Vec<&str> = session_line.split(' ').collect();
    let sid = u64::from_str_radix(fields[0], 16).unwrap() as i64;
    let password: String = session_password(sid).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(password, fields[1], "the password ZooKeeper gave session {:x}", sid);
    assert_eq!(sid, 0x100003f21c70000);

    let addr = |port: u16| -> SocketAddr { SocketAddr::from(([127, 0, 0, 1], port)) };
    // The four-letter-word connection: NIO cancels its key, so its interest ops are 0.
    let mut probe = ConnectionInfo::new(Some(addr(43038)), 0);
    probe.interest_ops = 0;
    probe.packets_received = 1;
    let mut client = ConnectionInfo::new(Some(addr(43028)), 1_795_357_587_081);
    client.packets_received = 4;
    client.packets_sent = 4;
    client.session_id = sid;
    client.last_operation = "EXIS".to_string();
    client.session_timeout_ms = 30000;
    client.last_cxid = 3;
    client.last_zxid = 2;
    client.last_response_ms = 4_142_815;
    client.last_latency_ms = 2;
    client.min_latency_ms = 0;
    client.avg_latency_ms = 7;
    client.max_latency_ms = 19;
    assert_text(render_cons(&[probe.clone(), client.clone()]).as_bytes(), &answers["cons"]);

    probe.remote = Some(addr(43050));
    let stats = ServerStats {
        version: SAMPLE_VERSION.to_string(),
        min_latency_ms: 2,
        avg_latency_ms: javafmt::rounded_average(29, 4),
        max_latency_ms: 19,
        packets_received: 6,
        packets_sent: 5,
        connections: 2,
        outstanding_requests: 0,
        last_processed_zxid: 2,
        mode: ServerMode::Standalone,
        node_count: 6,
        proposal_sizes: BufferStats::default(),
    };
    assert_text(render_stat(&stats, Some(&[probe, client])).as_bytes(), &answers["stat"]);

    let dump = DumpData {
        sessions: SessionTrackerDump::Expiry {
            local: None,
            global: ExpiryDump {
                buckets: vec![ExpiryBucket {
                    expire_at_ms: 1_795_357_618_000,
                    items: vec![session_item(sid)],
                }],
            },
        },
        ephemerals: vec![(sid, vec!["/eph".to_string()])],
        connections: Some(ExpiryDump {
            buckets: vec![
                ExpiryBucket {
                    expire_at_ms: 1_795_357_624_000,
                    items: vec![connection_item(Some(addr(43028)), sid)],
                },
                ExpiryBucket {
                    expire_at_ms: 1_795_357_604_000,
                    items: vec![connection_item(Some(addr(43058)), 0)],
                },
            ],
        }),
    };
    assert_text(render_dump(&dump).as_bytes(), &answers["dump"]);

    let summary = WatchSummary { connections: 1, paths: 2, total_watches: 2 };
    assert_text(render_wchs(&summary).as_bytes(), &answers["wchs"]);
    let by_session = [(sid, vec!["/eph".to_string(), "/zookeeper".to_string()])];
    assert_text(render_watches_by_session(&by_session).as_bytes(), &answers["wchc"]);
    let by_path = [("/eph".to_string(), vec![sid]), ("/zookeeper".to_string(), vec![sid])];
    assert_text(render_watches_by_path(&by_path).as_bytes(), &answers["wchp"]);
}

/// What ZooKeeper 3.8.0 answered with `4lw.commands.whitelist=ruok` (checked live): `srvr`
/// still answers, `hash` and the telnet close sequence are known words and so refused by
/// name, and `icfg` (3.9) is not a word at all.
#[test]
fn whitelist_ruok_only_like_live_3_8_0() {
    let whitelist = Whitelist::parse(Some("ruok"), false);
    let mut server = SampledServer::new();
    let mut answer = |bytes: [u8; 4]| -> Option<String> {
        let word = FourLetterWord::detect(bytes)?;
        Some(String::from_utf8(execute(word, &whitelist, &mut server, None)).unwrap())
    };
    assert_eq!(answer(*b"ruok").as_deref(), Some("imok"));
    assert!(answer(*b"srvr").unwrap().starts_with("Zookeeper version: "));
    for (bytes, name) in [
        (*b"hash", "hash"),
        ([0xff, 0xf4, 0xff, 0xfd], "telnet close"),
        (*b"isro", "isro"),
        (*b"stmk", "stmk"),
    ] {
        assert_eq!(
            answer(bytes).unwrap(),
            format!("{name} is not executed because it is not in the whitelist.\n")
        );
    }
    assert_eq!(answer(*b"icfg"), None);
}
