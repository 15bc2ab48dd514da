//! The Prometheus endpoint: a scrape is well-formed exposition text, carries ZooKeeper's
//! gauge names (those a live ZooKeeper 3.8.0 reports, `tests/data/zk-3.8.0-admin`) and its
//! summaries, and Corral's own figures move with the load.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use corral_server::config::Config;
use corral_server::db::DbOptions;
use corral_server::net::metrics_http::MetricsHttpOptions;
use corral_server::pipeline::Settings;
use corral_server::server::{RunningServer, ServerOptions};
use zookeeper_client as zk;

/// `GET target`: (status, content type, body).
fn get(addr: SocketAddr, target: &str) -> (u16, String, String) {
    let a = common::http::get(addr, target, None);
    let ctype = common::http::header(&a, "content-type").unwrap_or_default().to_string();
    (a.0, ctype, String::from_utf8(a.2).unwrap())
}

/// A parsed scrape: family → type, and sample (name with labels) → value. Panics on any line
/// the text format does not allow, or a sample before its family's TYPE.
fn parse(text: &str) -> (BTreeMap<String, String>, BTreeMap<String, f64>) {
    let mut types = BTreeMap::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(["gauge", "counter", "summary"].contains(&kind), "{line}");
            assert!(types.insert(name.to_string(), kind.to_string()).is_none(), "twice: {line}");
            continue;
        }
        if line.starts_with("# HELP ") || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("name value");
        let value: f64 = match value {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("a number: {line}")),
        };
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                && !name.starts_with(|c: char| c.is_ascii_digit()),
            "a metric name: {line}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "labels: {line}");
            }
        }
        let family = ["_count", "_sum"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s).filter(|f| types.get(*f).is_some_and(|t| t == "summary"))
            })
            .unwrap_or(name);
        assert!(types.contains_key(family), "a sample before its TYPE: {line}");
        samples.insert(series.to_string(), value);
    }
    (types, samples)
}

#[test]
fn a_scrape_has_zookeepers_names_and_corrals_figures() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = Config::default_standalone();
    config.data_dir = tmp.path().to_path_buf();
    config.data_log_dir = tmp.path().to_path_buf();
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
    let metrics = server
        .start_metrics_server(MetricsHttpOptions {
            bind: "127.0.0.1:0".parse().unwrap(),
            export_process_info: true,
        })
        .unwrap();
    let (status, ctype, before) = get(metrics, "/metrics");
    assert_eq!(status, 200);
    assert_eq!(ctype, "text/plain; version=0.0.4; charset=utf-8");
    let (types, first) = parse(&before);

    // ZooKeeper's gauges, by the names a live ZooKeeper 3.8.0 reports them (its monitor's
    // numeric keys before the ServerMetrics counters begin).
    let fixture = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/zk-3.8.0-admin/standalone/monitor.txt"
    ))
    .unwrap();
    let zk: serde_json::Value =
        serde_json::from_str(&fixture[fixture.find("\r\n\r\n").unwrap() + 4..]).unwrap();
    let zk_gauges: BTreeSet<String> = zk
        .as_object()
        .unwrap()
        .iter()
        .take_while(|(k, _)| *k != "proposal_count")
        .filter(|(_, v)| v.is_number())
        .map(|(k, _)| k.clone())
        .collect();
    assert!(zk_gauges.len() >= 24, "{zk_gauges:?}");
    let missing: Vec<&String> =
        zk_gauges.iter().filter(|g| types.get(*g).map(String::as_str) != Some("gauge")).collect();
    assert!(missing.is_empty(), "ZooKeeper gauges missing or not gauges: {missing:?}");
    for s in ["fsynctime", "updatelatency", "readlatency"] {
        assert_eq!(types.get(s).map(String::as_str), Some("summary"), "ZooKeeper's {s}");
    }
    // Every ServerMetrics metric ZooKeeper 3.8.0's monitor lists (after the gauges; its
    // per-namespace summary sets aside): counters as counters, the rest (avg_/…/sum_ in
    // monitor) as summaries with `_count` and `_sum`, advanced ones with three quantiles.
    let mut zk_metrics: BTreeMap<String, &str> = BTreeMap::new();
    for (k, _) in zk.as_object().unwrap().iter().skip_while(|(k, _)| *k != "proposal_count") {
        if k.contains("per_namespace") {
            continue;
        }
        let base = ["avg_", "min_", "max_", "cnt_", "sum_", "p50_", "p95_", "p99_", "p999_"]
            .iter()
            .find_map(|p| k.strip_prefix(p));
        match base {
            Some(b) => {
                zk_metrics.insert(b.to_string(), "summary");
            }
            None => {
                zk_metrics.insert(k.clone(), "counter");
            }
        }
    }
    assert!(zk_metrics.len() >= 110, "{}", zk_metrics.len());
    for (name, kind) in &zk_metrics {
        assert_eq!(types.get(name).map(String::as_str), Some(*kind), "{name}");
        assert!(first.contains_key(&format!("{name}_count")) || *kind == "counter", "{name}");
    }
    assert!(first.contains_key("readlatency{quantile=\"0.99\"}"), "advanced: three quantiles");
    assert!(first.contains_key("fsynctime{quantile=\"0.5\"}"), "basic: the median");
    assert!(!first.contains_key("fsynctime{quantile=\"0.99\"}"), "basic: the median only");
    // The metrics the alerting rules in ZooKeeper 3.9's documentation (zookeeperMonitor.md,
    // "Alerting with Prometheus") query, but for the JVM's heap (Corral is no JVM: it exports
    // process_resident_memory_bytes instead).
    for name in [
        "znode_count",
        "num_alive_connections",
        "approximate_data_size",
        "watch_count",
        "election_time_count",
        "open_file_descriptor_count",
        "fsynctime_sum",
        "snapshottime_sum",
        "avg_latency",
    ] {
        assert!(first.contains_key(name), "{name}, which ZooKeeper's example alerts query");
    }
    for p in ["process_resident_memory_bytes", "process_virtual_memory_bytes", "process_open_fds"] {
        assert!(first[p] > 0.0, "{p}");
    }
    assert!(first["process_max_fds"] >= first["process_open_fds"]);
    assert!(first["process_cpu_seconds_total"] >= 0.0);
    assert!(first["process_start_time_seconds"] > 1.6e9);

    // Load moves the figures.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let addr = server.addr().to_string();
    rt.block_on(async {
        let c = zk::Client::connect(&addr).await.unwrap();
        let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
        for i in 0..50 {
            c.create(&format!("/m{i}"), &[7u8; 100], &open).await.unwrap();
        }
        for i in 0..20 {
            c.get_data(&format!("/m{i}")).await.unwrap();
        }
    });
    let (_, _, after) = get(metrics, "/metrics");
    let (_, later) = parse(&after);
    assert_eq!(later["znode_count"] - first["znode_count"], 50.0);
    assert!(later["updatelatency_count"] >= 50.0);
    assert!(later["readlatency_count"] >= 20.0);
    assert!(later["corral_log_appends_total"] >= first["corral_log_appends_total"] + 50.0);
    assert!(later["fsynctime_count"] > first["fsynctime_count"]);
    assert!(later["corral_update_latency_us{quantile=\"0.99\"}"] > 0.0);
    assert!(later["corral_resident_bytes_per_znode"] > 0.0);
    assert!(later["packets_received"] > first["packets_received"]);
    assert_eq!(types.get("digest_mismatches_count").map(String::as_str), Some("counter"));
    assert_eq!(later["digest_mismatches_count"], 0.0, "every txn's digest matched");

    // Only /metrics.
    assert_eq!(get(metrics, "/").0, 404);
    assert_eq!(get(metrics, "/metricsx").0, 404);
}

#[test]
fn the_endpoint_follows_zoo_cfg() {
    let text = "tickTime=2000\ndataDir=/tmp/x\nclientPort=2181\n\
        metricsProvider.className=org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider\n\
        metricsProvider.httpHost=127.0.0.1\nmetricsProvider.httpPort=7123\n\
        metricsProvider.exportJvmInfo=false\n";
    let c = Config::parse_str(text).unwrap();
    let o = MetricsHttpOptions::from_config(&c).unwrap().expect("the provider is Prometheus's");
    assert_eq!(o.bind, "127.0.0.1:7123".parse().unwrap());
    assert!(!o.export_process_info);
    // ZooKeeper's default provider serves nothing; the port defaults to 7000 on 0.0.0.0.
    let c = Config::parse_str("dataDir=/tmp/x\nclientPort=2181\n").unwrap();
    assert!(MetricsHttpOptions::from_config(&c).unwrap().is_none());
    let c = Config::parse_str(
        "dataDir=/tmp/x\nclientPort=2181\n\
         metricsProvider.className=org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider\n",
    )
    .unwrap();
    assert_eq!(
        MetricsHttpOptions::from_config(&c).unwrap().unwrap().bind,
        "0.0.0.0:7000".parse().unwrap()
    );
    // A provider Corral does not have is refused, as ZooKeeper refuses a class it cannot load.
    assert!(Config::parse_str(
        "dataDir=/tmp/x\nclientPort=2181\nmetricsProvider.className=com.example.Nope\n"
    )
    .is_err());
    assert!(Config::parse_str("dataDir=/tmp/x\nclientPort=2181\nmetricsProvider.httpPort=99999\n")
        .is_err());
    // A host name is resolved.
    let c = Config::parse_str(
        "dataDir=/tmp/x\nclientPort=2181\nmetricsProvider.httpHost=localhost\n\
         metricsProvider.className=org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider\n",
    )
    .unwrap();
    assert!(MetricsHttpOptions::from_config(&c).unwrap().unwrap().bind.ip().is_loopback());
}
