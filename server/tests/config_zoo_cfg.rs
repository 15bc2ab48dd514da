//! zoo.cfg parsing: Java Properties syntax against the JDK, every key, ZooKeeper's defaults,
//! server lines, myid, dynamic config files, system properties, errors and warnings.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use corral_server::admin::fourlw::FourLetterWord;
use corral_server::config::{
    parse_properties, Config, ConfigError, ConfigFiles, ConfigWarning, HostPort, LearnerType,
    Location, QuorumAddress, QuorumServer, DEFAULT_STANDALONE_ZOO_CFG,
};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

/// Files served from memory.
#[derive(Default)]
struct MemFiles {
    myid: Option<String>,
    dynamic: HashMap<PathBuf, String>,
}

impl MemFiles {
    fn myid(id: &str) -> MemFiles {
        MemFiles { myid: Some(id.to_string()), dynamic: HashMap::new() }
    }
}

impl ConfigFiles for MemFiles {
    fn read_myid(&self, _data_dir: &Path) -> io::Result<Option<String>> {
        Ok(self.myid.clone())
    }
    fn read_dynamic_config(&self, path: &Path) -> io::Result<String> {
        self.dynamic.get(path).cloned().ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
}

fn parse(text: &str) -> Config {
    Config::parse_str(text).unwrap_or_else(|e| panic!("{e}"))
}

fn err(text: &str) -> ConfigError {
    match Config::parse_str(text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e,
    }
}

#[track_caller]
fn assert_invalid(e: ConfigError, key: &str, value: &str, line: usize) {
    match e {
        ConfigError::InvalidValue { key: k, value: v, location, .. } => {
            assert_eq!((k.as_str(), v.as_str(), location), (key, value, Location::Line(line)));
        }
        other => panic!("expected InvalidValue for {key}, got {other:?}"),
    }
}

/// The JDK's reading of `properties-edge-cases.properties`, printed by
/// `JavaPropertiesReference.java`, is exactly ours.
#[test]
fn properties_syntax_matches_the_jdk() {
    let input = std::fs::read_to_string(data("java/properties-edge-cases.properties")).unwrap();
    let expected = std::fs::read_to_string(data("java/properties-edge-cases.expected")).unwrap();
    let show = |s: &str| -> String {
        s.encode_utf16()
            .map(|u| {
                if u == u16::from(b'\\') || !(0x20..=0x7e).contains(&u) {
                    format!("\\u{u:04x}")
                } else {
                    char::from(u as u8).to_string()
                }
            })
            .collect()
    };
    let mut last = std::collections::BTreeMap::new();
    for p in parse_properties(&input).unwrap() {
        last.insert(p.key, p.value);
    }
    let ours: String = last.iter().map(|(k, v)| format!("{}\t{}\n", show(k), show(v))).collect();
    assert_eq!(ours, expected);
}

#[test]
fn properties_line_numbers() {
    let props = parse_properties("# c\n\na=1\nb=2 \\\n  3\n\r\nc:4\r\n  ! comment\nd 5").unwrap();
    let lines: Vec<(&str, &str, usize)> =
        props.iter().map(|p| (p.key.as_str(), p.value.as_str(), p.line)).collect();
    assert_eq!(lines, [("a", "1", 3), ("b", "2 3", 4), ("c", "4", 7), ("d", "5", 9)]);
}

#[test]
fn malformed_unicode_escape_is_an_error_with_its_line() {
    match Config::parse_str("dataDir=/x\nfoo=\\u12G4\n") {
        Err(ConfigError::MalformedEscape { location }) => assert_eq!(location, Location::Line(2)),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        parse_properties("k=\\u12"),
        Err(ConfigError::MalformedEscape { location: Location::Line(1) })
    ));
}

/// Debian's packaged sample (`/etc/zookeeper/conf_example/zoo.cfg` of zookeeper 3.8.0).
#[test]
fn debian_sample_zoo_cfg() {
    let config = Config::load(&data("debian-zookeeper-3.8.0-zoo.cfg")).unwrap();
    assert_eq!(config.tick_time_ms, 2000);
    assert_eq!(config.init_limit, Some(10));
    assert_eq!(config.sync_limit, Some(5));
    assert_eq!(config.data_dir, PathBuf::from("/tmp/zookeeper"));
    assert_eq!(config.data_log_dir, PathBuf::from("/tmp/zookeeper"));
    assert_eq!(config.client_port, Some(2181));
    assert_eq!(config.client_address, Some(HostPort { host: "0.0.0.0".to_string(), port: 2181 }));
    assert_eq!(config.min_session_timeout_ms, 4000);
    assert_eq!(config.max_session_timeout_ms, 40000);
    assert_eq!(config.connect_to_learner_master_limit, Some(10));
    assert_eq!(config.max_client_cnxns, 60);
    assert!(!config.is_distributed());
    assert_eq!(config.warnings, []);
    assert_eq!(config.four_letter_whitelist().words().collect::<Vec<_>>(), [FourLetterWord::Srvr]);
}

#[test]
fn defaults() {
    let c = parse("dataDir=/data\n");
    assert_eq!(c.data_dir, PathBuf::from("/data"));
    assert_eq!(c.data_log_dir, PathBuf::from("/data"));
    assert_eq!(c.snap_dir(), PathBuf::from("/data/version-2"));
    assert_eq!(c.log_dir(), PathBuf::from("/data/version-2"));
    assert_eq!(c.tick_time_ms, 3000);
    assert_eq!(c.min_session_timeout_ms, 6000);
    assert_eq!(c.max_session_timeout_ms, 60000);
    assert_eq!(c.client_port, None);
    assert_eq!(c.client_address, None);
    assert_eq!(c.secure_client_port, None);
    assert_eq!(c.client_port_listen_backlog, -1);
    assert_eq!(c.max_client_cnxns, 60);
    assert_eq!(c.max_cnxns, 0);
    assert_eq!(c.global_outstanding_limit, 1000);
    assert_eq!(c.init_limit, None);
    assert_eq!(c.sync_limit, None);
    assert_eq!(c.connect_to_learner_master_limit, None);
    assert_eq!(c.election_alg, 3);
    assert_eq!(c.peer_type, LearnerType::Participant);
    assert!(c.sync_enabled);
    assert!(c.standalone_enabled);
    assert!(!c.reconfig_enabled);
    assert!(!c.quorum_listen_on_all_ips);
    assert_eq!(c.observer_master_port, None);
    assert!(!c.multi_address_enabled);
    assert_eq!(c.cnx_timeout_ms, 5000);
    assert!(c.leader_serves);
    assert!(c.servers.is_empty());
    assert_eq!(c.config_version, 0);
    assert_eq!(c.my_id, None);
    assert!(!c.local_sessions_enabled);
    assert!(!c.local_sessions_upgrading_enabled);
    assert_eq!(c.snap_count, 100_000);
    assert_eq!(c.snap_size_limit_kb, 4_194_304);
    assert_eq!(c.txn_log_size_limit_kb, -1);
    assert_eq!(c.commit_log_count, 500);
    assert_eq!(c.pre_alloc_size_kb, 65_536);
    assert!(c.force_sync);
    assert_eq!(c.fsync_warning_threshold_ms, 1000);
    assert_eq!(c.autopurge_snap_retain_count, 3);
    assert_eq!(c.autopurge_purge_interval_hours, 0);
    assert!(c.digest_enabled);
    assert_eq!(c.snapshot_compression_method, "");
    assert!(c.close_session_txn_enabled);
    assert_eq!(c.jute_max_buffer, 0xfffff);
    assert!(!c.extended_types_enabled);
    assert!(!c.read_only_mode_enabled);
    assert!(!c.skip_acl);
    assert_eq!(c.super_digest, None);
    assert!(c.auth_providers.is_empty());
    assert_eq!(c.four_letter_word_whitelist, None);
    assert!(c.admin_enable_server);
    assert_eq!(c.admin_server_address, "0.0.0.0");
    assert_eq!(c.admin_server_port, 8080);
    assert_eq!(c.session_server_id(), 1);
    assert!(c.warnings.is_empty());
    assert!(c.system_properties.is_empty());
}

#[test]
fn every_key() {
    let text = "\
tickTime=1000
initLimit=7
syncLimit=3
connectToLearnerMasterLimit=9
dataDir=/var/lib/zk
dataLogDir=/fast/zk-log
clientPort=2281
clientPortAddress=10.0.0.5
clientPortListenBacklog=128
maxClientCnxns=0
maxCnxns=500
globalOutstandingLimit=2000
minSessionTimeout=1500
maxSessionTimeout=90000
electionAlg=3
peerType=participant
syncEnabled=false
standaloneEnabled=false
reconfigEnabled=true
quorumListenOnAllIPs=true
observerMasterPort=2191
multiAddress.enabled=true
cnxTimeout=7000
leaderServes=no
localSessionsEnabled=true
localSessionsUpgradingEnabled=TRUE
snapCount=0x1000
snapSizeLimitInKb=-1
txnLogSizeLimitInKb=1024
commitLogCount=250
preAllocSize=1024
forceSync=no
fsync.warningthresholdms=50
autopurge.snapRetainCount=5
autopurge.purgeInterval=24
digest.enabled=false
snapshot.compression.method=gz
closeSessionTxn.enabled=false
jute.maxbuffer=0x200000
extendedTypesEnabled=true
readonlymode.enabled=true
skipACL=yes
DigestAuthenticationProvider.superDigest=super:D/InIHSb7yEEbrWz8b9l71RjZJU=
authProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider
4lw.commands.whitelist=ruok, mntr ,conf
admin.enableServer=false
admin.serverAddress=127.0.0.1
admin.serverPort=9090
server.1=zk1:2888:3888|zk1b:2889:3889;10.0.0.5:2281
server.2=[fd00::2]:2888:3888:participant;[fd00::2]:2282
server.3=zk3:2888:3888
server.4=zk4:2888:3888:observer
group.1=1:2:3
weight.1=1
weight.2=1
weight.3=1
weight.4=0
version=100000000
";
    let c = Config::parse_with(text, &MemFiles::myid(" 1\n")).unwrap();
    assert_eq!(c.tick_time_ms, 1000);
    assert_eq!(c.init_limit, Some(7));
    assert_eq!(c.sync_limit, Some(3));
    assert_eq!(c.connect_to_learner_master_limit, Some(9));
    assert_eq!(c.data_dir, PathBuf::from("/var/lib/zk"));
    assert_eq!(c.data_log_dir, PathBuf::from("/fast/zk-log"));
    assert_eq!(c.log_dir(), PathBuf::from("/fast/zk-log/version-2"));
    assert_eq!(c.client_port, Some(2281));
    assert_eq!(c.client_port_address.as_deref(), Some("10.0.0.5"));
    assert_eq!(c.client_port_listen_backlog, 128);
    assert_eq!(c.max_client_cnxns, 0);
    assert_eq!(c.max_cnxns, 500);
    assert_eq!(c.global_outstanding_limit, 2000);
    assert_eq!(c.min_session_timeout_ms, 1500);
    assert_eq!(c.max_session_timeout_ms, 90000);
    assert_eq!(c.negotiate_session_timeout(100), 1500);
    assert_eq!(c.negotiate_session_timeout(30000), 30000);
    assert_eq!(c.negotiate_session_timeout(i32::MAX), 90000);
    assert_eq!(c.negotiate_session_timeout(-5), 1500);
    assert_eq!(c.election_alg, 3);
    assert_eq!(c.peer_type, LearnerType::Participant);
    assert!(!c.sync_enabled);
    assert!(!c.standalone_enabled);
    assert!(c.reconfig_enabled);
    assert!(c.quorum_listen_on_all_ips);
    assert_eq!(c.observer_master_port, Some(2191));
    assert!(c.multi_address_enabled);
    assert_eq!(c.cnx_timeout_ms, 7000);
    assert!(!c.leader_serves);
    assert!(c.local_sessions_enabled);
    assert!(c.local_sessions_upgrading_enabled);
    assert_eq!(c.snap_count, 4096, "Integer.getInteger decodes hex");
    assert_eq!(c.snap_size_limit_kb, -1);
    assert_eq!(c.txn_log_size_limit_kb, 1024);
    assert_eq!(c.commit_log_count, 250);
    assert_eq!(c.pre_alloc_size_kb, 1024);
    assert!(!c.force_sync);
    assert_eq!(c.fsync_warning_threshold_ms, 50);
    assert_eq!(c.autopurge_snap_retain_count, 5);
    assert_eq!(c.autopurge_purge_interval_hours, 24);
    assert!(!c.digest_enabled);
    assert_eq!(c.snapshot_compression_method, "gz");
    assert!(!c.close_session_txn_enabled);
    assert_eq!(c.jute_max_buffer, 0x200000);
    assert!(c.extended_types_enabled);
    assert!(c.read_only_mode_enabled);
    assert!(c.skip_acl);
    assert_eq!(c.super_digest.as_deref(), Some("super:D/InIHSb7yEEbrWz8b9l71RjZJU="));
    assert_eq!(
        c.auth_providers.get("1").map(String::as_str),
        Some("org.apache.zookeeper.server.auth.SASLAuthenticationProvider")
    );
    assert_eq!(c.four_letter_word_whitelist.as_deref(), Some("ruok, mntr ,conf"));
    let wl = c.four_letter_whitelist();
    for w in [FourLetterWord::Ruok, FourLetterWord::Mntr, FourLetterWord::Conf] {
        assert!(wl.allows(w), "{w}");
    }
    assert!(wl.allows(FourLetterWord::Srvr), "always");
    assert!(wl.allows(FourLetterWord::Isro), "read-only mode adds isro");
    assert!(!wl.allows(FourLetterWord::Dump));
    assert!(!c.admin_enable_server);
    assert_eq!(c.admin_server_address, "127.0.0.1");
    assert_eq!(c.admin_server_port, 9090);

    // Membership.
    assert!(c.is_distributed());
    assert_eq!(c.my_id, Some(1));
    assert_eq!(c.session_server_id(), 1);
    assert_eq!(c.servers.len(), 4);
    assert_eq!(c.participants().count(), 3);
    assert_eq!(c.observers().map(|s| s.id).collect::<Vec<_>>(), [4]);
    let s1 = &c.servers[&1];
    assert_eq!(
        s1.addresses,
        [
            QuorumAddress { host: "zk1".into(), quorum_port: 2888, election_port: 3888 },
            QuorumAddress { host: "zk1b".into(), quorum_port: 2889, election_port: 3889 },
        ]
    );
    assert_eq!(s1.client_address, Some(HostPort { host: "10.0.0.5".into(), port: 2281 }));
    let s2 = &c.servers[&2];
    assert_eq!(s2.addresses[0].host, "fd00::2");
    assert_eq!(s2.client_address, Some(HostPort { host: "fd00::2".into(), port: 2282 }));
    assert_eq!(c.groups[&1], [1, 2, 3]);
    assert_eq!(c.weights[&4], 0);
    assert_eq!(c.config_version, 0x100000000);
    // This server's line has a client address: the static clientPortAddress must agree.
    assert_eq!(c.client_address, Some(HostPort { host: "10.0.0.5".into(), port: 2281 }));
    assert_eq!(
        c.quorum_verifier_text(),
        "server.1=zk1:2888:3888|zk1b:2889:3889:participant;10.0.0.5:2281\n\
         server.2=[fd00::2]:2888:3888:participant;[fd00::2]:2282\n\
         server.3=zk3:2888:3888:participant\n\
         server.4=zk4:2888:3888:observer\n\
         version=100000000"
    );

    // Keys ZooKeeper reads as system properties are recorded under their property names.
    assert_eq!(c.system_properties.get("zookeeper.snapCount").map(String::as_str), Some("0x1000"));
    assert_eq!(c.system_properties.get("jute.maxbuffer").map(String::as_str), Some("0x200000"));
    assert_eq!(c.system_properties.get("zookeeper.tickTime"), None);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn numbers_follow_javas_grammars() {
    // QuorumPeerConfig keys use Integer.parseInt: no hex.
    assert_invalid(err("dataDir=/x\ntickTime=0x10\n"), "tickTime", "0x10", 2);
    // System-property keys use Integer.getInteger (Integer.decode): hex and octal.
    assert_eq!(parse("dataDir=/x\nglobalOutstandingLimit=010\n").global_outstanding_limit, 8);
    assert_eq!(parse("dataDir=/x\nmaxCnxns=#10\n").max_cnxns, 16);
    assert_eq!(parse("dataDir=/x\ntickTime=+500\n").tick_time_ms, 500);
}

#[test]
fn derived_defaults_follow_tick_time() {
    let c = parse("tickTime=100\ndataDir=/x\n");
    assert_eq!((c.min_session_timeout_ms, c.max_session_timeout_ms), (200, 2000));
    let c = parse("tickTime=100\ndataDir=/x\nminSessionTimeout=-1\nmaxSessionTimeout=5000\n");
    assert_eq!((c.min_session_timeout_ms, c.max_session_timeout_ms), (200, 5000));
    let c = parse("dataDir=/x\nclientPort=0\n");
    assert_eq!(c.client_port, None, "clientPort=0 means not set");
}

#[test]
fn invalid_values_name_key_value_and_line() {
    assert_invalid(err("dataDir=/x\n\ntickTime=fast\n"), "tickTime", "fast", 3);
    assert_invalid(err("dataDir=/x\ntickTime=0\n"), "tickTime", "0", 2);
    assert_invalid(err("dataDir=/x\ntickTime=-5\n"), "tickTime", "-5", 2);
    assert_invalid(err("dataDir=/x\nclientPort=70000\n"), "clientPort", "70000", 2);
    assert_invalid(err("dataDir=/x\nmaxClientCnxns=-1\n"), "maxClientCnxns", "-1", 2);
    assert_invalid(err("dataDir=/x\ninitLimit=ten\n"), "initLimit", "ten", 2);
    assert_invalid(err("dataDir=/x\nelectionAlg=1\n"), "electionAlg", "1", 2);
    assert_invalid(err("dataDir=/x\npeerType=leader\n"), "peerType", "leader", 2);
    assert_invalid(err("dataDir=/x\nsyncEnabled=maybe\n"), "syncEnabled", "maybe", 2);
    assert_invalid(err("dataDir=/x\nforceSync=off\n"), "forceSync", "off", 2);
    assert_invalid(err("dataDir=/x\nsnapCount=many\n"), "snapCount", "many", 2);
    assert_invalid(err("dataDir=/x\njute.maxbuffer=0\n"), "jute.maxbuffer", "0", 2);
    assert_invalid(
        err("dataDir=/x\nsnapshot.compression.method=zstd\n"),
        "snapshot.compression.method",
        "zstd",
        2,
    );
    assert_invalid(
        err("dataDir=/x\nDigestAuthenticationProvider.superDigest=nocolon\n"),
        "DigestAuthenticationProvider.superDigest",
        "nocolon",
        2,
    );
    assert_invalid(err("dataDir=/x\nadmin.serverPort=0\n"), "admin.serverPort", "0", 2);
    assert_invalid(err("dataDir=\n"), "dataDir", "", 1);
    // Values are trimmed like ZooKeeper's String.trim() before they are judged.
    assert_invalid(err("dataDir=/x\n  tickTime =  2 000  \n"), "tickTime", "2 000", 2);
    // A continued entry reports its first line.
    assert_invalid(err("dataDir=/x\ntickTime=20\\\n  0x\n"), "tickTime", "200x", 2);
}

#[test]
fn cross_key_errors() {
    assert!(matches!(
        err("tickTime=2000\n"),
        ConfigError::Missing { key: "dataDir", quorum: false }
    ));
    match err("dataDir=/x\nminSessionTimeout=5000\nmaxSessionTimeout=4000\n") {
        ConfigError::Inconsistent { location, .. } => assert_eq!(location, Location::Line(2)),
        other => panic!("{other:?}"),
    }
    match err("dataDir=/x\nclientPortAddress=127.0.0.1\n") {
        ConfigError::Inconsistent { location, .. } => assert_eq!(location, Location::Line(2)),
        other => panic!("{other:?}"),
    }
    let e = err("dataDir=/x\ntickTime=100\nminSessionTimeout=3000\n");
    assert!(e.to_string().contains("must not be larger"), "{e}");
}

#[test]
fn unknown_keys_are_warnings() {
    let c =
        parse("dataDir=/x\nfoo.bar=1\nnot_a_key yes\nmultiAddress.reachabilityCheckTimeoutMs=9\nssl.crl=true\nssl.keyStore.location=/k\nsslQuorum=true\nssl.quorum.keyStore.location=/q\nsslQuorumReloadCertFiles=true\n");
    assert_eq!(
        c.warnings[..2],
        [
            ConfigWarning::UnknownKey { key: "foo.bar".into(), location: Location::Line(2) },
            ConfigWarning::UnknownKey { key: "not_a_key".into(), location: Location::Line(3) },
        ]
    );
    assert!(matches!(
        &c.warnings[2],
        ConfigWarning::Ignored { key, location: Location::Line(4), .. }
            if key == "multiAddress.reachabilityCheckTimeoutMs"
    ));
    assert!(matches!(
        &c.warnings[3],
        ConfigWarning::Ignored { key, location: Location::Line(5), .. } if key == "ssl.crl"
    ));
    // The TLS keys Corral serves are read (ssl.* as system properties), not warned about.
    assert_eq!(c.warnings.len(), 4, "{:?}", c.warnings);
    assert_eq!(c.system_properties["zookeeper.ssl.keyStore.location"], "/k");
    assert_eq!(c.system_properties["zookeeper.ssl.quorum.keyStore.location"], "/q");
    // sslQuorumReloadCertFiles is served (net::quorum_tls), not ignored.
    assert!(c.ssl_quorum_reload_cert_files);
    assert!(c.ssl_quorum);
    assert_eq!(c.system_properties["zookeeper.foo.bar"], "1");
    // Warnings are readable.
    assert_eq!(c.warnings[0].to_string(), "line 2: unknown key foo.bar (ignored)");
}

#[test]
fn duplicate_keys_last_wins() {
    let c = parse("dataDir=/x\ntickTime=1000\ntickTime=2000\n");
    assert_eq!(c.tick_time_ms, 2000);
    assert_eq!(
        c.warnings,
        [ConfigWarning::DuplicateKey {
            key: "tickTime".into(),
            first: Location::Line(2),
            second: Location::Line(3)
        }]
    );
    // A bad value that lost to a later line is not an error, as in Java.
    assert_eq!(parse("dataDir=/x\ntickTime=bad\ntickTime=5\n").tick_time_ms, 5);
}

#[test]
fn small_counts_are_raised_with_a_warning() {
    let c = parse("dataDir=/x\nautopurge.snapRetainCount=1\nsnapCount=1\n");
    assert_eq!(c.autopurge_snap_retain_count, 3);
    assert_eq!(c.snap_count, 2);
    assert!(c
        .warnings
        .contains(&ConfigWarning::SnapRetainCountRaised { value: 1, location: Location::Line(2) }));
    assert!(c
        .warnings
        .contains(&ConfigWarning::SnapCountRaised { value: 1, location: Location::Line(3) }));
    assert_eq!(parse("dataDir=/x\nautopurge.purgeInterval=-3\n").autopurge_purge_interval_hours, 0);
    // The test-only purge interval in milliseconds (benchmarks of purges under load).
    assert_eq!(parse("dataDir=/x\n").test_purge_interval_ms, 0);
    assert_eq!(
        parse("dataDir=/x\ncorral.test.purgeIntervalMs=1500\n").test_purge_interval_ms,
        1500
    );
    assert_invalid(
        err("dataDir=/x\ncorral.test.purgeIntervalMs=-1\n"),
        "corral.test.purgeIntervalMs",
        "-1",
        2,
    );
    // The test-only log strategy (benchmarks compare flush strategies in the server).
    use corral_engine::log::FlushStrategy;
    assert_eq!(parse("dataDir=/x\n").test_log_strategy, None);
    assert_eq!(
        parse("dataDir=/x\ncorral.test.logStrategy=uring-pipe/8\n").test_log_strategy,
        Some((FlushStrategy::UringPipe, 8))
    );
    assert_eq!(
        parse("dataDir=/x\ncorral.test.logStrategy=group\n").test_log_strategy,
        Some((FlushStrategy::Group, 4))
    );
    for bad in ["fast", "uring-pipe/0", "uring-pipe/65", "direct/x"] {
        assert_invalid(
            err(&format!("dataDir=/x\ncorral.test.logStrategy={bad}\n")),
            "corral.test.logStrategy",
            bad,
            2,
        );
    }
}

#[test]
fn whitelist_names_are_checked() {
    let c = parse("dataDir=/x\n4lw.commands.whitelist=ruok,bogus,telnet close,*\n");
    assert_eq!(
        c.warnings,
        [ConfigWarning::UnknownFourLetterWord {
            name: "bogus".into(),
            location: Location::Line(2)
        }]
    );
}

const QUORUM: &str = "\
tickTime=2000
initLimit=10
syncLimit=5
dataDir=/var/zk
clientPort=2181
server.1=zk1:2888:3888
server.2=zk2:2888:3888
server.3=zk3:2888:3888
";

#[test]
fn quorum_needs_myid_init_and_sync_limits() {
    let c = Config::parse_with(QUORUM, &MemFiles::myid("2\n")).unwrap();
    assert!(c.is_distributed());
    assert_eq!(c.my_id, Some(2));
    assert_eq!(c.my_server().unwrap().addresses[0].host, "zk2");
    assert_eq!(c.session_server_id(), 2);
    assert_eq!(c.client_address, Some(HostPort { host: "0.0.0.0".into(), port: 2181 }));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);

    match Config::parse_str(QUORUM) {
        Err(ConfigError::MissingMyId { path }) => assert_eq!(path, PathBuf::from("/var/zk/myid")),
        other => panic!("{other:?}"),
    }
    match Config::parse_with(QUORUM, &MemFiles::myid("two")) {
        Err(ConfigError::InvalidMyId { value, .. }) => assert_eq!(value, "two"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        Config::parse_with(QUORUM, &MemFiles::myid("7")),
        Err(ConfigError::MyIdNotInServers { my_id: 7 })
    ));
    let no_init = QUORUM.replace("initLimit=10\n", "");
    assert!(matches!(
        Config::parse_with(&no_init, &MemFiles::myid("1")),
        Err(ConfigError::Missing { key: "initLimit", quorum: true })
    ));
    let no_sync = QUORUM.replace("syncLimit=5\n", "");
    assert!(matches!(
        Config::parse_with(&no_sync, &MemFiles::myid("1")),
        Err(ConfigError::Missing { key: "syncLimit", quorum: true })
    ));
}

#[test]
fn standalone_ignores_myid_problems_and_single_server_lines() {
    let c = Config::parse_with("dataDir=/x\n", &MemFiles::myid("replace this text")).unwrap();
    assert_eq!(c.my_id, None);
    assert_eq!(
        c.warnings,
        [ConfigWarning::InvalidMyIdIgnored { value: "replace this text".into() }]
    );
    let c =
        Config::parse_str("dataDir=/x\nclientPort=2181\nserver.1=localhost:2888:3888\n").unwrap();
    assert!(!c.is_distributed());
    assert_eq!(c.warnings, [ConfigWarning::SingleServerIgnored]);
    // standaloneEnabled=false makes a single server a quorum.
    let single = "dataDir=/x\ninitLimit=5\nsyncLimit=2\nstandaloneEnabled=false\n\
                  server.1=localhost:2888:3888;2181\n";
    let c = Config::parse_with(single, &MemFiles::myid("1")).unwrap();
    assert!(c.is_distributed());
    assert_eq!(c.client_address, Some(HostPort { host: "0.0.0.0".into(), port: 2181 }));
    assert_eq!(c.warnings, [ConfigWarning::NoFailureTolerated { participants: 1 }]);
}

#[test]
fn membership_warnings_and_errors() {
    let two = "dataDir=/x\ninitLimit=5\nsyncLimit=2\nserver.1=a:1:2\nserver.2=b:1:2\n";
    let c = Config::parse_with(two, &MemFiles::myid("1")).unwrap();
    assert_eq!(c.warnings, [ConfigWarning::NoFailureTolerated { participants: 2 }]);
    let four = format!("{two}server.3=c:1:2\nserver.4=d:1:2\n");
    let c = Config::parse_with(&four, &MemFiles::myid("1")).unwrap();
    assert_eq!(c.warnings, [ConfigWarning::EvenParticipants { participants: 4 }]);

    let observers_only = "dataDir=/x\nserver.1=a:1:2:observer\n";
    assert!(matches!(err(observers_only), ConfigError::Inconsistent { .. }));
    let observer_without_quorum = "dataDir=/x\nserver.1=a:1:2\nserver.2=b:1:2:observer\n";
    assert!(matches!(err(observer_without_quorum), ConfigError::Inconsistent { .. }));
    assert!(matches!(
        err("dataDir=/x\nstandaloneEnabled=false\n"),
        ConfigError::Inconsistent { .. }
    ));
}

#[test]
fn server_line_syntax() {
    let bad = [
        ("server.1=zk1:2888", "zk1:2888"),
        ("server.1=zk1:2888:2888", "zk1:2888:2888"),
        ("server.1=zk1:2888:3888:voter", "zk1:2888:3888:voter"),
        ("server.1=zk1:2888:3888:observer:x", "zk1:2888:3888:observer:x"),
        ("server.1=zk1:0:3888", "zk1:0:3888"),
        ("server.1=zk1:2888:3888;a:b:2181", "zk1:2888:3888;a:b:2181"),
        ("server.1=zk1:2888:3888;2181;x", "zk1:2888:3888;2181;x"),
        ("server.1=[::1:2888:3888", "[::1:2888:3888"),
        ("server.1=:2888:3888", ":2888:3888"),
        ("server.1=a:1:2|b:1:2", "a:1:2|b:1:2"),
        ("server.x=a:1:2", "a:1:2"),
        ("server.-1=a:1:2", "a:1:2"),
        (
            "multiAddress.enabled=true\nserver.1=a:1:2:observer|b:1:2:participant",
            "a:1:2:observer|b:1:2:participant",
        ),
    ];
    for (line, value) in bad {
        let text = format!("dataDir=/x\n{line}\n");
        let key_line = text.lines().count();
        let key = line.lines().last().unwrap().split('=').next().unwrap();
        assert_invalid(err(&text), key, value, key_line);
    }
    // A trailing ';' is an empty client part, dropped like Java's split drops it.
    let s = QuorumServer::parse(1, "zk1:2888:3888:observer;", Location::Line(1)).unwrap();
    assert_eq!(s.client_address, None);
    assert_eq!(s.learner_type, LearnerType::Observer);
    assert_eq!(s.config_value(), "zk1:2888:3888:observer");
    let s = QuorumServer::parse(1, "zk1:2888:3888:Participant;[::1]:2181", Location::Line(1));
    assert_eq!(s.unwrap().config_value(), "zk1:2888:3888:participant;[::1]:2181");
    // Hosts are sorted in the written-back form, as ZooKeeper sorts them.
    let s = QuorumServer::parse(1, "b:3:4|a:1:2;h:9", Location::Line(1)).unwrap();
    assert_eq!(s.config_value(), "a:1:2|b:3:4:participant;h:9");
}

#[test]
fn client_address_of_the_server_line_must_agree_with_client_port() {
    let text = "dataDir=/x\ninitLimit=5\nsyncLimit=2\nclientPort=2181\n\
                server.1=a:1:2;2182\nserver.2=b:1:2\nserver.3=c:1:2\n";
    assert!(matches!(
        Config::parse_with(text, &MemFiles::myid("1")),
        Err(ConfigError::Inconsistent { location: Location::Line(5), .. })
    ));
    let specific = "dataDir=/x\ninitLimit=5\nsyncLimit=2\nclientPort=2182\n\
                    clientPortAddress=10.0.0.1\nserver.1=a:1:2;10.0.0.2:2182\nserver.2=b:1:2\n\
                    server.3=c:1:2\n";
    assert!(Config::parse_with(specific, &MemFiles::myid("1")).is_err());
    let agreeing = specific.replace("10.0.0.2:2182", "10.0.0.1:2182");
    let c = Config::parse_with(&agreeing, &MemFiles::myid("1")).unwrap();
    assert_eq!(c.client_address, Some(HostPort { host: "10.0.0.1".into(), port: 2182 }));
    // Another server's client port is not ours.
    let c = Config::parse_with(&agreeing, &MemFiles::myid("2")).unwrap();
    assert_eq!(c.client_address, Some(HostPort { host: "10.0.0.1".into(), port: 2182 }));
}

#[test]
fn peer_type_follows_the_server_line() {
    let text = "dataDir=/x\ninitLimit=5\nsyncLimit=2\npeerType=participant\n\
                server.1=a:1:2\nserver.2=b:1:2\nserver.3=c:1:2\nserver.4=d:1:2:observer\n";
    let c = Config::parse_with(text, &MemFiles::myid("4")).unwrap();
    assert_eq!(c.peer_type, LearnerType::Observer);
    assert!(c.warnings.contains(&ConfigWarning::PeerTypeMismatch {
        peer_type: LearnerType::Participant,
        server_line: LearnerType::Observer
    }));
}

#[test]
fn server_ids_and_extended_types() {
    let text = "dataDir=/x\ninitLimit=5\nsyncLimit=2\nextendedTypesEnabled=true\n\
                server.255=a:1:2\nserver.2=b:1:2\nserver.3=c:1:2\n";
    let e = Config::parse_with(text, &MemFiles::myid("255")).unwrap_err();
    assert!(e.to_string().contains("254"), "{e}");
    let c = Config::parse_with(
        &text.replace("extendedTypesEnabled=true\n", ""),
        &MemFiles::myid("255"),
    )
    .unwrap();
    assert_eq!(c.my_id, Some(255));
    // Turning extended types on later through a system property is checked too.
    let mut c = c;
    assert!(c.apply_system_property("zookeeper.extendedTypesEnabled", "true").is_err());
    assert!(!c.extended_types_enabled, "a failed override changes nothing");
    let big =
        "dataDir=/x\ninitLimit=5\nsyncLimit=2\nserver.300=a:1:2\nserver.2=b:1:2\nserver.3=c:1:2\n";
    let c = Config::parse_with(big, &MemFiles::myid("2")).unwrap();
    assert!(c.warnings.contains(&ConfigWarning::ServerIdAbove255 { id: 300 }));
}

#[test]
fn dynamic_config_file() {
    let static_part = "tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir=/var/zk\n\
                       dynamicConfigFile=/etc/zk/zoo.cfg.dynamic.100000000\n";
    let mut files = MemFiles::myid("3");
    files.dynamic.insert(
        PathBuf::from("/etc/zk/zoo.cfg.dynamic.100000000"),
        "server.1=zk1:2888:3888:participant;0.0.0.0:2181\n\
         server.2=zk2:2888:3888:participant;0.0.0.0:2181\n\
         server.3=zk3:2888:3888:participant;0.0.0.0:2181\n"
            .to_string(),
    );
    let c = Config::parse_with(static_part, &files).unwrap();
    assert_eq!(c.config_version, 0x100000000);
    assert_eq!(c.servers.len(), 3);
    assert_eq!(c.client_address, Some(HostPort { host: "0.0.0.0".into(), port: 2181 }));
    assert!(c.quorum_verifier_text().ends_with("\nversion=100000000"));

    // Server lines must not be in both places.
    let both = format!("{static_part}server.1=zk1:2888:3888\n");
    assert!(matches!(Config::parse_with(&both, &files), Err(ConfigError::Inconsistent { .. })));
    let both_reversed = format!("server.1=zk1:2888:3888\n{static_part}");
    assert!(matches!(
        Config::parse_with(&both_reversed, &files),
        Err(ConfigError::Inconsistent { location: Location::Line(1), .. })
    ));
    // The dynamic file holds membership only, and no version.
    files.dynamic.insert(
        PathBuf::from("/etc/zk/zoo.cfg.dynamic.100000000"),
        "server.1=zk1:2888:3888\nversion=5\n".to_string(),
    );
    assert!(matches!(
        Config::parse_with(static_part, &files),
        Err(ConfigError::Inconsistent { location: Location::DynamicLine(2), .. })
    ));
    files.dynamic.insert(
        PathBuf::from("/etc/zk/zoo.cfg.dynamic.100000000"),
        "server.1=zk1:2888:3888\ntickTime=5\n".to_string(),
    );
    match Config::parse_with(static_part, &files) {
        Err(ConfigError::InvalidValue { key, location, .. }) => {
            assert_eq!((key.as_str(), location), ("tickTime", Location::DynamicLine(2)));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(Config::parse_str(static_part), Err(ConfigError::Io { .. })));
}

#[test]
fn load_reads_myid_from_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    std::fs::create_dir(&data_dir).unwrap();
    std::fs::write(data_dir.join("myid"), "  3 \n").unwrap();
    let cfg = dir.path().join("zoo.cfg");
    std::fs::write(
        &cfg,
        format!("{}dataDir={}\n", QUORUM.replace("dataDir=/var/zk\n", ""), data_dir.display()),
    )
    .unwrap();
    let c = Config::load(&cfg).unwrap();
    assert_eq!(c.my_id, Some(3));
    assert!(c.is_distributed());
    std::fs::remove_file(data_dir.join("myid")).unwrap();
    assert!(matches!(Config::load(&cfg), Err(ConfigError::MissingMyId { .. })));
    assert!(matches!(Config::load(&dir.path().join("missing.cfg")), Err(ConfigError::Io { .. })));
    // Not UTF-8: read as Latin-1, like Java.
    std::fs::write(&cfg, b"dataDir=/d\xe9\n").unwrap();
    assert_eq!(Config::load(&cfg).unwrap().data_dir, PathBuf::from("/d\u{e9}"));
}

#[test]
fn default_standalone() {
    let c = Config::default_standalone();
    assert_eq!(c, Config::parse_str(DEFAULT_STANDALONE_ZOO_CFG).unwrap());
    assert_eq!(c.client_address, Some(HostPort { host: "127.0.0.1".into(), port: 2181 }));
    assert_eq!(c.data_dir, PathBuf::from("./corral-data"));
    assert_eq!(c.tick_time_ms, 2000);
    assert_eq!((c.min_session_timeout_ms, c.max_session_timeout_ms), (4000, 40000));
    assert_eq!(c.four_letter_whitelist(), corral_server::admin::fourlw::Whitelist::all());
    assert!(!c.is_distributed());
    assert!(c.warnings.is_empty());
}

/// What kazoo's test harness passes: `-Dzookeeper.DigestAuthenticationProvider.superDigest=…`,
/// `-Dzookeeper.extendedTypesEnabled=true`, `-Dzookeeper.4lw.commands.whitelist=*`, and so on.
#[test]
fn system_properties() {
    let mut c = parse("dataDir=/x\n");
    let set = |c: &mut Config, k: &str, v: &str| c.apply_system_property(k, v).unwrap();
    assert_eq!(
        set(
            &mut c,
            "zookeeper.DigestAuthenticationProvider.superDigest",
            "super:D/InIHSb7yEEbrWz8b9l71RjZJU="
        ),
        None
    );
    assert_eq!(c.super_digest.as_deref(), Some("super:D/InIHSb7yEEbrWz8b9l71RjZJU="));
    set(&mut c, "zookeeper.extendedTypesEnabled", "true");
    assert!(c.extended_types_enabled);
    set(&mut c, "zookeeper.4lw.commands.whitelist", "*");
    assert!(c.four_letter_whitelist().allows(FourLetterWord::Dump));
    set(&mut c, "jute.maxbuffer", "4194304");
    assert_eq!(c.jute_max_buffer, 4_194_304);
    set(&mut c, "zookeeper.snapCount", " 200 ");
    assert_eq!(c.snap_count, 200);
    set(&mut c, "readonlymode.enabled", "true");
    assert!(c.four_letter_whitelist().allows(FourLetterWord::Isro));
    set(&mut c, "zookeeper.admin.enableServer", "false");
    assert!(!c.admin_enable_server);
    assert_eq!(c.system_properties["zookeeper.snapCount"], "200");
    assert!(c.warnings.is_empty());

    assert_eq!(
        set(&mut c, "zookeeper.snapCount", "1"),
        Some(ConfigWarning::SnapCountRaised { value: 1, location: Location::SystemProperty })
    );
    assert_eq!(c.snap_count, 2);
    // zoo.cfg-only keys and strangers are reported, not applied.
    assert_eq!(
        set(&mut c, "zookeeper.tickTime", "5"),
        Some(ConfigWarning::NotASystemProperty { name: "zookeeper.tickTime".into() })
    );
    assert_eq!(c.tick_time_ms, 3000);
    assert_eq!(
        set(&mut c, "zookeeper.noSuchThing", "1"),
        Some(ConfigWarning::UnknownSystemProperty { name: "zookeeper.noSuchThing".into() })
    );
    // The JAAS file is a JVM property ZooKeeper reads bare (SASL), kept as given.
    assert_eq!(set(&mut c, "java.security.auth.login.config", "/jaas"), None);
    assert_eq!(c.system_properties["java.security.auth.login.config"], "/jaas");
    assert_eq!(
        set(&mut c, "java.awt.headless", "true"),
        Some(ConfigWarning::UnknownSystemProperty { name: "java.awt.headless".into() })
    );
    assert!(matches!(
        set(
            &mut c,
            "zookeeper.serverCnxnFactory",
            "org.apache.zookeeper.server.NettyServerCnxnFactory"
        ),
        Some(ConfigWarning::Ignored { location: Location::SystemProperty, .. })
    ));
    // Invalid values are errors and change nothing.
    let before = c.clone();
    match c.apply_system_property("zookeeper.snapCount", "lots") {
        Err(ConfigError::InvalidValue { key, value, location, .. }) => {
            assert_eq!(
                (key.as_str(), value.as_str(), location),
                ("snapCount", "lots", Location::SystemProperty)
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c, before);
}

/// `corral -D key=value` for keys ZooKeeper reads only from the file: the file's line is left
/// out, the value used, no duplicate-key warning; property keys are not file keys.
#[test]
fn dash_d_overrides_file_keys() {
    use corral_server::config::file_key;
    assert_eq!(file_key("clientPort"), Some("clientPort"));
    assert_eq!(file_key("zookeeper.dataDir"), Some("dataDir"));
    assert_eq!(file_key("server.3"), Some("server.3"));
    assert_eq!(file_key("zookeeper.snapCount"), None, "a system property");
    assert_eq!(file_key("jute.maxbuffer"), None);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zoo.cfg");
    std::fs::write(&path, "tickTime=2000\ndataDir=/var/lib/x\nclientPort=2181\n").unwrap();
    let overrides = vec![
        ("clientPort".to_string(), "2999".to_string()),
        ("clientPortAddress".to_string(), "127.0.0.1".to_string()),
    ];
    let c = Config::load_with_overrides(Some(&path), &overrides).unwrap();
    assert_eq!(c.client_port, Some(2999));
    assert_eq!(c.client_port_address.as_deref(), Some("127.0.0.1"));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(
        c.initial_text.as_deref(),
        Some("tickTime=2000\ndataDir=/var/lib/x\nclientPort=2181\n")
    );
    // The built-in configuration takes them too; a bad value is the error it would be in
    // the file.
    let c = Config::load_with_overrides(None, &[("clientPort".into(), "3111".into())]).unwrap();
    assert_eq!(c.client_port, Some(3111));
    assert!(Config::load_with_overrides(None, &[("clientPort".into(), "x".into())]).is_err());
}
