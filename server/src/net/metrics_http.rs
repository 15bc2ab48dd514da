//! The Prometheus endpoint (`metricsProvider.className=…PrometheusMetricsProvider`,
//! `metricsProvider.httpHost`, `metricsProvider.httpPort`): `GET /metrics` answers the text
//! `crate::admin::prometheus` renders from the live server's figures. Served by the
//! AdminServer's HTTP loop (`super::admin_http::serve_http`), with its limits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use super::admin_http::{serve_http, Responder};
use super::fourlw::Source;
use crate::admin::commands::Response;
use crate::admin::fourlw::FourLetterSource;
use crate::admin::prometheus::{
    gauges, process_families, render, Family, Kind, ProcessStats, CORRAL_QUANTILES,
};
use crate::config::Config;
use crate::pipeline::Shared;

/// The class name that turns the endpoint on (ZooKeeper's provider; only the last part is
/// compared, so a shaded package works too).
pub const PROMETHEUS_PROVIDER: &str = "PrometheusMetricsProvider";

/// Where the endpoint listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsHttpOptions {
    /// `metricsProvider.httpHost`:`metricsProvider.httpPort` (default `0.0.0.0:7000`).
    pub bind: SocketAddr,
    /// `metricsProvider.exportJvmInfo` (default true): the `process_*` metrics.
    pub export_process_info: bool,
}

impl MetricsHttpOptions {
    /// The endpoint `config` asks for, if its metrics provider is Prometheus's.
    pub fn from_config(config: &Config) -> anyhow::Result<Option<MetricsHttpOptions>> {
        let p = &config.metrics_provider;
        if !p.class_name.ends_with(PROMETHEUS_PROVIDER) {
            return Ok(None);
        }
        let host = p.http_host.trim_start_matches('[').trim_end_matches(']');
        let bind = super::admin_http::resolve(host, p.http_port)
            .ok_or_else(|| anyhow::anyhow!("metricsProvider.httpHost {host:?} does not resolve"))?;
        Ok(Some(MetricsHttpOptions { bind, export_process_info: p.export_jvm_info }))
    }
}

/// Binds the endpoint's port (std's listener sets `SO_REUSEADDR` on Unix, as tokio's does).
pub fn bind(opts: &MetricsHttpOptions) -> anyhow::Result<std::net::TcpListener> {
    use anyhow::Context as _;
    std::net::TcpListener::bind(opts.bind)
        .with_context(|| format!("starting the Prometheus endpoint on {}", opts.bind))
}

/// Serves `/metrics` until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    opts: MetricsHttpOptions,
    stop: watch::Receiver<bool>,
) {
    let responder: Responder = Arc::new(move |http| {
        if http.path != "/metrics" {
            return Response::text(404, "text/plain", "Not Found\n".into());
        }
        if http.method != hyper::Method::GET && http.method != hyper::Method::HEAD {
            return Response::text(405, "text/plain", "Method Not Allowed\n".into());
        }
        Response::text(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            render(&families(&shared, opts.export_process_info)),
        )
    });
    serve_http(listener, Duration::from_secs(30), responder, stop, None).await
}

/// The names `mntr` expands its histograms into (`avg_N` … `p999_N`): exported as summaries.
const HISTOGRAMS: [&str; 5] = [
    "update_latency_us",
    "read_latency_us",
    "log_append_time_us",
    "log_flush_time_us",
    "log_batch_records",
];

/// Every family, gathered now.
pub fn families(shared: &Shared, process: bool) -> Vec<Family> {
    let source = Source { shared, local: None, on_client_port: false };
    let monitor = source.monitor();
    // ZooKeeper's ServerMetrics with their types (counters, summaries); the rest of mntr's
    // numbers are gauges.
    let zk = source.zk_metrics();
    let zk_keys: std::collections::HashSet<String> =
        zk.iter().flat_map(|(n, v)| v.entries(n)).map(|(k, _)| k).collect();
    let mut out =
        gauges(&monitor, |k| HISTOGRAMS.iter().any(|h| k.ends_with(h)) || zk_keys.contains(k));
    out.extend(zk.iter().map(|(n, v)| v.family(n)));
    let times = shared.stats.times.lock().unwrap_or_else(|p| p.into_inner()).clone();
    // Corral's, in µs (and records, bytes).
    out.push(Family::summary(
        "corral_update_latency_us",
        "A request that becomes a txn: arrival to reply queued, microseconds.",
        &times.update_us,
        1.0,
        &CORRAL_QUANTILES,
    ));
    out.push(Family::summary(
        "corral_read_latency_us",
        "Any other request answered through the pipeline: arrival to reply queued, microseconds.",
        &times.read_us,
        1.0,
        &CORRAL_QUANTILES,
    ));
    if let Some(log) = shared.stats.log.get() {
        let l = log.get();
        out.push(Family::summary(
            "corral_log_flush_time_us",
            "One batch's write and flush, microseconds.",
            &l.flush_latency_us,
            1.0,
            &CORRAL_QUANTILES,
        ));
        out.push(Family::summary(
            "corral_log_append_time_us",
            "A txn from its append to the log until durable, microseconds.",
            &l.append_latency_us,
            1.0,
            &CORRAL_QUANTILES,
        ));
        out.push(Family::summary(
            "corral_log_batch_records",
            "Txns per batch written.",
            &l.batch_records,
            1.0,
            &CORRAL_QUANTILES,
        ));
        out.push(Family::summary(
            "corral_log_batch_bytes",
            "Bytes per batch written.",
            &l.batch_bytes,
            1.0,
            &CORRAL_QUANTILES,
        ));
        for (name, help, v) in [
            ("corral_log_appends_total", "Txns appended to the log.", l.appends),
            ("corral_log_batches_total", "Batches written.", l.batches),
            ("corral_log_flushes_total", "Flushes (or durable writes) issued.", l.flushes),
            ("corral_log_bytes_total", "Bytes written for txns.", l.bytes),
            (
                "corral_log_slow_flushes_total",
                "Flushes slower than fsync.warningthresholdms.",
                l.slow_flushes,
            ),
        ] {
            out.push(Family::single(name, help, Kind::Counter, v as f64));
        }
    }
    out.push(Family::single(
        "corral_slow_requests_total",
        "Requests answered later than corral.slowRequestWarningMs after they arrived.",
        Kind::Counter,
        shared.stats.slow_total.load(std::sync::atomic::Ordering::Relaxed) as f64,
    ));
    if process {
        let p = process_stats();
        if monitor.znode_count > 0 {
            out.push(Family::single(
                "corral_resident_bytes_per_znode",
                "Resident memory divided by the znodes in the tree.",
                Kind::Gauge,
                p.resident_bytes / monitor.znode_count as f64,
            ));
        }
        out.extend(process_families(&p));
    }
    out
}

/// This process's figures from /proc.
fn process_stats() -> ProcessStats {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    // SAFETY: as above.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as f64;
    let mut p = ProcessStats::default();
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command name (which may hold spaces) in parentheses.
        if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
            let f: Vec<&str> = rest.split_whitespace().collect();
            let num = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
            // rest[0] is field 3 (state): utime 14, stime 15, starttime 22, vsize 23, rss 24.
            p.cpu_seconds = (num(11) + num(12)) / ticks;
            p.virtual_bytes = num(20);
            p.resident_bytes = num(21) * page;
            let boot = std::fs::read_to_string("/proc/stat")
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("btime "))
                        .and_then(|v| v.trim().parse::<f64>().ok())
                })
                .unwrap_or(0.0);
            p.start_time_seconds = boot + num(19) / ticks;
        }
    }
    p.open_fds = std::fs::read_dir("/proc/self/fd").map(|d| d.count() as f64).unwrap_or(0.0);
    p.max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|x| x.starts_with("Max open files"))
                .and_then(|x| x.split_whitespace().nth(3))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0.0);
    p
}
