//! The Prometheus endpoint's text: ZooKeeper's metric names and types (as its
//! `PrometheusMetricsProvider` of 3.9 exposes them), plus Corral's own, in the Prometheus text
//! exposition format 0.0.4.
//!
//! Owns: the metric families ([`Family`]) built from the figures the server gathers
//! ([`MonitorStats`] for ZooKeeper's gauges, HDR histograms for summaries, [`ProcessStats`]),
//! and their rendering. ZooKeeper's gauges keep their names and are gauges; its summaries
//! (`fsynctime`, `updatelatency`, `readlatency`, in ms) have the quantiles 0.5, 0.9 and 0.99
//! of ZooKeeper 3.9's advanced summaries plus `_count` and `_sum`. Corral's own figures are
//! prefixed `corral_`.
//!
//! Written here rather than with a metrics crate: Prometheus's Rust clients have no summary
//! type, and ZooKeeper's dashboards query summaries (`{quantile="0.99"}`, `_sum`, `_count`).
//!
//! Must never touch: sockets, clocks, files (values arrive in the structs).

use std::fmt::Write as _;

use super::monitor::{MetricValue, MonitorStats};

/// Prometheus metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A value that goes up and down.
    Gauge,
    /// A count that only goes up (reset by `srst`, as ZooKeeper's are).
    Counter,
    /// Quantiles, `_count` and `_sum`.
    Summary,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
            Kind::Summary => "summary",
        }
    }
}

/// One sample: a name suffix (`""`, `_count`, `_sum`), labels, a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Appended to the family's name.
    pub suffix: &'static str,
    /// Label pairs.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

/// A metric family.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// Its name.
    pub name: String,
    /// `# HELP` text.
    pub help: String,
    /// Its type.
    pub kind: Kind,
    /// Its samples.
    pub samples: Vec<Sample>,
}

impl Family {
    /// A family of one unlabelled sample.
    pub fn single(name: &str, help: &str, kind: Kind, value: f64) -> Family {
        Family {
            name: name.to_string(),
            help: help.to_string(),
            kind,
            samples: vec![Sample { suffix: "", labels: Vec::new(), value }],
        }
    }

    /// A summary of `h`'s samples, each divided by `scale` (1000: µs shown as ms), with the
    /// given quantiles.
    pub fn summary(
        name: &str,
        help: &str,
        h: &hdrhistogram::Histogram<u64>,
        scale: f64,
        quantiles: &[f64],
    ) -> Family {
        let count = h.len();
        let mut samples: Vec<Sample> = quantiles
            .iter()
            .map(|&q| Sample {
                suffix: "",
                labels: vec![("quantile".into(), q.to_string())],
                value: if count == 0 { f64::NAN } else { h.value_at_quantile(q) as f64 / scale },
            })
            .collect();
        samples.push(Sample { suffix: "_count", labels: Vec::new(), value: count as f64 });
        let sum = if count == 0 { 0.0 } else { h.mean() * count as f64 / scale };
        samples.push(Sample { suffix: "_sum", labels: Vec::new(), value: sum });
        Family { name: name.to_string(), help: help.to_string(), kind: Kind::Summary, samples }
    }
}

/// ZooKeeper 3.9's quantiles for its advanced summaries.
pub const ZK_QUANTILES: [f64; 3] = [0.5, 0.9, 0.99];
/// Corral's own summaries add the 99.9th percentile.
pub const CORRAL_QUANTILES: [f64; 4] = [0.5, 0.9, 0.99, 0.999];

/// ZooKeeper's gauges from what `mntr` reports (numbers only; `version`, `server_state` and
/// `peer_state` are text, which ZooKeeper's Prometheus provider does not export either), and
/// the extra entries whose names do not start with `skip_prefixes`.
pub fn gauges(stats: &MonitorStats, skip: impl Fn(&str) -> bool) -> Vec<Family> {
    stats
        .entries()
        .into_iter()
        .filter(|(k, _)| !skip(k))
        .filter_map(|(k, v)| {
            let value = match v {
                MetricValue::Int(n) => n as f64,
                MetricValue::Double(d) => d,
                MetricValue::Text(_) | MetricValue::Null => return None,
            };
            Some(Family::single(&k, &k, Kind::Gauge, value))
        })
        .collect()
}

/// How a process uses the machine (the `process_*` metrics Prometheus clients export).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ProcessStats {
    /// User and system CPU time, seconds.
    pub cpu_seconds: f64,
    /// Open file descriptors.
    pub open_fds: f64,
    /// The descriptor limit.
    pub max_fds: f64,
    /// Resident memory, bytes.
    pub resident_bytes: f64,
    /// Virtual memory, bytes.
    pub virtual_bytes: f64,
    /// Start time, seconds since the epoch.
    pub start_time_seconds: f64,
}

/// The `process_*` families.
pub fn process_families(p: &ProcessStats) -> Vec<Family> {
    vec![
        Family::single(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            Kind::Counter,
            p.cpu_seconds,
        ),
        Family::single(
            "process_open_fds",
            "Number of open file descriptors.",
            Kind::Gauge,
            p.open_fds,
        ),
        Family::single(
            "process_max_fds",
            "Maximum number of open file descriptors.",
            Kind::Gauge,
            p.max_fds,
        ),
        Family::single(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            Kind::Gauge,
            p.resident_bytes,
        ),
        Family::single(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            Kind::Gauge,
            p.virtual_bytes,
        ),
        Family::single(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            Kind::Gauge,
            p.start_time_seconds,
        ),
    ]
}

/// A value as the Prometheus text format writes it.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else if v == v.trunc() && v.abs() < 1e15 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The exposition text (format 0.0.4) of `families`; a name seen twice is kept once (the
/// first).
pub fn render(families: &[Family]) -> String {
    let mut out = String::new();
    let mut seen = std::collections::HashSet::new();
    for f in families {
        if !seen.insert(f.name.as_str()) {
            continue;
        }
        let help = f.help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(out, "# HELP {} {help}", f.name);
        let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind.as_str());
        for s in &f.samples {
            out.push_str(&f.name);
            out.push_str(s.suffix);
            if !s.labels.is_empty() {
                out.push('{');
                let labels: Vec<String> =
                    s.labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape_label(v))).collect();
                out.push_str(&labels.join(","));
                out.push('}');
            }
            out.push(' ');
            out.push_str(&number(s.value));
            out.push('\n');
        }
    }
    out
}

/// Whether `name` is a valid Prometheus metric name.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::report::ServerMode;

    #[test]
    fn renders_gauges_counters_and_summaries() {
        let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        for us in [100, 200, 300, 400] {
            h.record(us).unwrap();
        }
        let fams = vec![
            Family::single("znode_count", "znode_count", Kind::Gauge, 5.0),
            Family::single("corral_log_appends_total", "Appends.", Kind::Counter, 12.0),
            Family::summary("fsynctime", "fsynctime", &h, 100.0, &ZK_QUANTILES),
            Family::single("znode_count", "twice", Kind::Gauge, 6.0),
        ];
        let text = render(&fams);
        let expect = "\
# HELP znode_count znode_count
# TYPE znode_count gauge
znode_count 5.0
# HELP corral_log_appends_total Appends.
# TYPE corral_log_appends_total counter
corral_log_appends_total 12.0
# HELP fsynctime fsynctime
# TYPE fsynctime summary
fsynctime{quantile=\"0.5\"} 2.0
fsynctime{quantile=\"0.9\"} 4.0
fsynctime{quantile=\"0.99\"} 4.0
fsynctime_count 4.0
fsynctime_sum 10.0
";
        assert_eq!(text, expect);
    }

    #[test]
    fn an_empty_summary_has_nan_quantiles() {
        let h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 1000, 3).unwrap();
        let text = render(&[Family::summary("x", "x", &h, 1.0, &[0.5])]);
        assert!(text.contains("x{quantile=\"0.5\"} NaN\nx_count 0.0\nx_sum 0.0\n"), "{text}");
    }

    #[test]
    fn gauges_skip_text_and_chosen_entries() {
        let mut m = MonitorStats::new("3.8.0-x".into(), ServerMode::Standalone);
        m.znode_count = 7;
        m.peer_state = Some("following - broadcast".into());
        m.extra.push(("p99_x_us".into(), MetricValue::Int(3)));
        let fams = gauges(&m, |k| k.ends_with("_us"));
        let names: Vec<&str> = fams.iter().map(|f| f.name.as_str()).collect();
        assert!(names.contains(&"znode_count"));
        assert!(!names.contains(&"version") && !names.contains(&"peer_state"));
        assert!(!names.contains(&"p99_x_us"));
        assert!(names.iter().all(|n| valid_name(n)), "{names:?}");
        assert!(!valid_name("9x") && !valid_name("a-b") && !valid_name(""));
    }

    #[test]
    fn label_values_and_numbers_are_escaped() {
        let f = Family {
            name: "g".into(),
            help: "two\nlines".into(),
            kind: Kind::Gauge,
            samples: vec![Sample {
                suffix: "",
                labels: vec![("key".into(), "a\"b\\c".into())],
                value: 0.25,
            }],
        };
        assert_eq!(
            render(&[f]),
            "# HELP g two\\nlines\n# TYPE g gauge\ng{key=\"a\\\"b\\\\c\"} 0.25\n"
        );
        assert_eq!(number(1e20), "100000000000000000000");
        assert_eq!(number(f64::INFINITY), "+Inf");
    }
}
