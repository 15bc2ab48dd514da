//! `mntr`: the monitoring key/values, as ZooKeeper 3.8.0 prints them.
//!
//! Owns: [`MonitorStats`] (every key monitoring tools rely on, typed), [`MetricValue`] (for
//! any further metric), and the output format: `zk_<key>\t<value>\n`, integers as integers and
//! other numbers as Java doubles (`0.0`), as ZooKeeper's `MonitorCommand` formats them. Also
//! the `_avg/_min/_max/_cnt/_sum` family of a summary metric ([`summary_entries`]).
//!
//! Must never touch: sockets, clocks, files, the server's state (values arrive in the struct).
//!
//! Order: ZooKeeper prints `version` and `server_state` (then `peer_state`, then an observer's
//! `observer_master_id`), then its metrics in hash-map order; clients key on names, not order.
//! This renderer keeps ZooKeeper 3.8.0's observed order for the gauges it has, then the
//! leader's gauges, then the extra entries in the order given.

use super::javafmt::{double_to_string, rounded_average};
use super::report::ServerMode;

/// A metric value, formatted the way ZooKeeper's `MonitorCommand` formats it.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricValue {
    /// A Java `Long`/`Integer`: printed as is.
    Int(i64),
    /// Any other number: printed as a Java double (`0.0`, `1.5`, `1.0E7`).
    Double(f64),
    /// A string.
    Text(String),
    /// Java `null`: printed as `null`.
    Null,
}

impl MetricValue {
    /// The text after the tab.
    pub fn render(&self) -> String {
        match self {
            MetricValue::Int(n) => n.to_string(),
            MetricValue::Double(d) => double_to_string(*d),
            MetricValue::Text(s) => s.clone(),
            MetricValue::Null => "null".to_string(),
        }
    }
}

/// Gauges only a leader reports (3.6+ names).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeaderStats {
    /// `zk_learners`: connected followers and observers.
    pub learners: i64,
    /// `zk_synced_followers`.
    pub synced_followers: i64,
    /// `zk_synced_non_voting_followers`.
    pub synced_non_voting_followers: i64,
    /// `zk_synced_observers`.
    pub synced_observers: i64,
    /// `zk_pending_syncs`.
    pub pending_syncs: i64,
    /// `zk_leader_uptime`, ms.
    pub leader_uptime_ms: i64,
    /// `zk_last_proposal_size` (-1 before the first).
    pub last_proposal_size: i64,
    /// `zk_max_proposal_size`.
    pub max_proposal_size: i64,
    /// `zk_min_proposal_size`.
    pub min_proposal_size: i64,
}

/// Everything `mntr` prints.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorStats {
    /// `zk_version`.
    pub version: String,
    /// `zk_server_state`.
    pub server_state: ServerMode,
    /// `zk_peer_state` (quorum mode), e.g. `following - broadcast`.
    pub peer_state: Option<String>,
    /// `zk_observer_master_id` (observers).
    pub observer_master_id: Option<i64>,
    /// `zk_ephemerals_count`.
    pub ephemerals_count: i64,
    /// `zk_num_alive_connections`.
    pub num_alive_connections: i64,
    /// `zk_avg_latency` (a double, ms).
    pub avg_latency: f64,
    /// `zk_outstanding_requests`.
    pub outstanding_requests: i64,
    /// `zk_znode_count`.
    pub znode_count: i64,
    /// `zk_global_sessions`.
    pub global_sessions: i64,
    /// `zk_non_mtls_remote_conn_count`.
    pub non_mtls_remote_conn_count: i64,
    /// `zk_last_client_response_size` (-1 before the first response).
    pub last_client_response_size: i64,
    /// `zk_packets_sent`.
    pub packets_sent: i64,
    /// `zk_packets_received`.
    pub packets_received: i64,
    /// `zk_max_client_response_size`.
    pub max_client_response_size: i64,
    /// `zk_connection_drop_probability` (a double).
    pub connection_drop_probability: f64,
    /// `zk_watch_count`.
    pub watch_count: i64,
    /// `zk_auth_failed_count`.
    pub auth_failed_count: i64,
    /// `zk_min_latency`.
    pub min_latency: i64,
    /// `zk_max_file_descriptor_count` (omitted when unknown, as on a non-Unix JVM).
    pub max_file_descriptor_count: Option<i64>,
    /// `zk_approximate_data_size`: bytes of paths and data.
    pub approximate_data_size: i64,
    /// `zk_open_file_descriptor_count` (omitted when unknown).
    pub open_file_descriptor_count: Option<i64>,
    /// `zk_local_sessions`.
    pub local_sessions: i64,
    /// `zk_uptime`, ms.
    pub uptime_ms: i64,
    /// `zk_max_latency`.
    pub max_latency: i64,
    /// `zk_outstanding_tls_handshake`.
    pub outstanding_tls_handshake: i64,
    /// `zk_min_client_response_size`.
    pub min_client_response_size: i64,
    /// `zk_non_mtls_local_conn_count`.
    pub non_mtls_local_conn_count: i64,
    /// Leader-only gauges.
    pub leader: Option<LeaderStats>,
    /// Further metrics, names without the `zk_` prefix, printed in this order.
    pub extra: Vec<(String, MetricValue)>,
}

impl MonitorStats {
    /// A server with nothing to report yet: zeros, -1 response sizes, no extras.
    pub fn new(version: String, server_state: ServerMode) -> MonitorStats {
        MonitorStats {
            version,
            server_state,
            peer_state: None,
            observer_master_id: None,
            ephemerals_count: 0,
            num_alive_connections: 0,
            avg_latency: 0.0,
            outstanding_requests: 0,
            znode_count: 0,
            global_sessions: 0,
            non_mtls_remote_conn_count: 0,
            last_client_response_size: -1,
            packets_sent: 0,
            packets_received: 0,
            max_client_response_size: -1,
            connection_drop_probability: 0.0,
            watch_count: 0,
            auth_failed_count: 0,
            min_latency: 0,
            max_file_descriptor_count: None,
            approximate_data_size: 0,
            open_file_descriptor_count: None,
            local_sessions: 0,
            uptime_ms: 0,
            max_latency: 0,
            outstanding_tls_handshake: 0,
            min_client_response_size: -1,
            non_mtls_local_conn_count: 0,
            leader: None,
            extra: Vec::new(),
        }
    }

    /// Every entry in print order (names without `zk_`).
    pub fn entries(&self) -> Vec<(String, MetricValue)> {
        use MetricValue::{Double, Int, Text};
        let mut out: Vec<(&str, MetricValue)> = vec![
            ("version", Text(self.version.clone())),
            ("server_state", Text(self.server_state.as_str().to_string())),
        ];
        if let Some(peer_state) = &self.peer_state {
            out.push(("peer_state", Text(peer_state.clone())));
        }
        if let Some(id) = self.observer_master_id {
            out.push(("observer_master_id", Int(id)));
        }
        out.extend([
            ("ephemerals_count", Int(self.ephemerals_count)),
            ("num_alive_connections", Int(self.num_alive_connections)),
            ("avg_latency", Double(self.avg_latency)),
            ("outstanding_requests", Int(self.outstanding_requests)),
            ("znode_count", Int(self.znode_count)),
            ("global_sessions", Int(self.global_sessions)),
            ("non_mtls_remote_conn_count", Int(self.non_mtls_remote_conn_count)),
            ("last_client_response_size", Int(self.last_client_response_size)),
            ("packets_sent", Int(self.packets_sent)),
            ("packets_received", Int(self.packets_received)),
            ("max_client_response_size", Int(self.max_client_response_size)),
            ("connection_drop_probability", Double(self.connection_drop_probability)),
            ("watch_count", Int(self.watch_count)),
            ("auth_failed_count", Int(self.auth_failed_count)),
            ("min_latency", Int(self.min_latency)),
        ]);
        if let Some(n) = self.max_file_descriptor_count {
            out.push(("max_file_descriptor_count", Int(n)));
        }
        out.push(("approximate_data_size", Int(self.approximate_data_size)));
        if let Some(n) = self.open_file_descriptor_count {
            out.push(("open_file_descriptor_count", Int(n)));
        }
        out.extend([
            ("local_sessions", Int(self.local_sessions)),
            ("uptime", Int(self.uptime_ms)),
            ("max_latency", Int(self.max_latency)),
            ("outstanding_tls_handshake", Int(self.outstanding_tls_handshake)),
            ("min_client_response_size", Int(self.min_client_response_size)),
            ("non_mtls_local_conn_count", Int(self.non_mtls_local_conn_count)),
        ]);
        if let Some(l) = &self.leader {
            out.extend([
                ("learners", Int(l.learners)),
                ("synced_followers", Int(l.synced_followers)),
                ("synced_non_voting_followers", Int(l.synced_non_voting_followers)),
                ("synced_observers", Int(l.synced_observers)),
                ("pending_syncs", Int(l.pending_syncs)),
                ("leader_uptime", Int(l.leader_uptime_ms)),
                ("last_proposal_size", Int(l.last_proposal_size)),
                ("max_proposal_size", Int(l.max_proposal_size)),
                ("min_proposal_size", Int(l.min_proposal_size)),
            ]);
        }
        let mut entries: Vec<(String, MetricValue)> =
            out.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        entries.extend(self.extra.iter().cloned());
        entries
    }
}

/// `mntr`.
pub fn render_mntr(stats: &MonitorStats) -> String {
    let mut out = String::new();
    for (key, value) in stats.entries() {
        out.push_str("zk_");
        out.push_str(&key);
        out.push('\t');
        out.push_str(&value.render());
        out.push('\n');
    }
    out
}

/// A summary metric's samples (ZooKeeper's `AvgMinMaxCounter`): count, sum, min, max.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    /// Number of samples.
    pub count: i64,
    /// Sum of the samples.
    pub sum: i64,
    /// Smallest sample (ignored when `count` is 0).
    pub min: i64,
    /// Largest sample (ignored when `count` is 0).
    pub max: i64,
}

impl Summary {
    /// Adds a sample.
    pub fn add(&mut self, value: i64) {
        if self.count == 0 {
            self.min = value;
            self.max = value;
        } else {
            self.min = self.min.min(value);
            self.max = self.max.max(value);
        }
        self.count += 1;
        self.sum = self.sum.saturating_add(value);
    }
}

/// The five entries of summary `name`: `avg_<name>` (a double, rounded as ZooKeeper rounds),
/// `min_<name>`, `max_<name>` (0 without samples), `cnt_<name>`, `sum_<name>`.
pub fn summary_entries(name: &str, s: &Summary) -> Vec<(String, MetricValue)> {
    let (min, max) = if s.count == 0 { (0, 0) } else { (s.min, s.max) };
    vec![
        (format!("avg_{name}"), MetricValue::Double(rounded_average(s.sum, s.count))),
        (format!("min_{name}"), MetricValue::Int(min)),
        (format!("max_{name}"), MetricValue::Int(max)),
        (format!("cnt_{name}"), MetricValue::Int(s.count)),
        (format!("sum_{name}"), MetricValue::Int(s.sum)),
    ]
}

/// The nine entries of a summary with percentiles (`SummarySet` with quantiles in ZooKeeper):
/// the five of [`summary_entries`], then `p50_`, `p95_`, `p99_`, `p999_` as given.
pub fn summary_entries_with_percentiles(
    name: &str,
    s: &Summary,
    p50: i64,
    p95: i64,
    p99: i64,
    p999: i64,
) -> Vec<(String, MetricValue)> {
    let mut out = summary_entries(name, s);
    for (q, v) in [("p50", p50), ("p95", p95), ("p99", p99), ("p999", p999)] {
        out.push((format!("{q}_{name}"), MetricValue::Int(v)));
    }
    out
}

/// [`summary_entries_with_percentiles`] of a histogram's samples (its sum is its mean × its
/// count, as exact as the histogram's 3 significant digits).
pub fn histogram_entries(
    name: &str,
    h: &hdrhistogram::Histogram<u64>,
) -> Vec<(String, MetricValue)> {
    super::server_metrics::ZkValue::of_histogram(h, 1, true).entries(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_print_as_summaries_with_percentiles() {
        let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        let show = |h: &hdrhistogram::Histogram<u64>| {
            histogram_entries("x_us", h)
                .iter()
                .map(|(k, v)| format!("{k}={}", v.render()))
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            show(&h),
            "avg_x_us=0.0 min_x_us=0 max_x_us=0 cnt_x_us=0 sum_x_us=0 \
             p50_x_us=0 p95_x_us=0 p99_x_us=0 p999_x_us=0"
        );
        for v in 1..=1000u64 {
            h.record(v).unwrap();
        }
        h.record(50_000).unwrap();
        let text = show(&h);
        for want in [
            "min_x_us=1 ",
            "cnt_x_us=1001 ",
            "p50_x_us=501 ",
            "p99_x_us=991 ",
            "p999_x_us=1000",
            "max_x_us=50015 ",
        ] {
            assert!(text.contains(want), "{want} in {text}");
        }
    }

    #[test]
    fn values_format_like_java() {
        assert_eq!(MetricValue::Int(-1).render(), "-1");
        assert_eq!(MetricValue::Double(0.0).render(), "0.0");
        assert_eq!(MetricValue::Double(2.5).render(), "2.5");
        assert_eq!(
            MetricValue::Text("following - broadcast".into()).render(),
            "following - broadcast"
        );
        assert_eq!(MetricValue::Null.render(), "null");
    }

    #[test]
    fn summaries() {
        let mut s = Summary::default();
        assert_eq!(
            summary_entries("fsynctime", &s)
                .iter()
                .map(|(k, v)| format!("{k}={}", v.render()))
                .collect::<Vec<_>>(),
            [
                "avg_fsynctime=0.0",
                "min_fsynctime=0",
                "max_fsynctime=0",
                "cnt_fsynctime=0",
                "sum_fsynctime=0"
            ]
        );
        s.add(1);
        s.add(2);
        s.add(4);
        let e = summary_entries_with_percentiles("x", &s, 2, 4, 4, 4);
        assert_eq!(e[0], ("avg_x".to_string(), MetricValue::Double(2.3333)));
        assert_eq!(e[1].1, MetricValue::Int(1));
        assert_eq!(e[2].1, MetricValue::Int(4));
        assert_eq!(e[8], ("p999_x".to_string(), MetricValue::Int(4)));
    }

    #[test]
    fn quorum_keys_come_after_version_and_state() {
        let mut m = MonitorStats::new("v".into(), ServerMode::Follower);
        m.peer_state = Some("following - broadcast".into());
        m.leader = None;
        let text = render_mntr(&m);
        assert!(text.starts_with(
            "zk_version\tv\nzk_server_state\tfollower\nzk_peer_state\tfollowing - broadcast\n"
        ));
        assert!(!text.contains("zk_max_file_descriptor_count"));
        let mut leader = MonitorStats::new("v".into(), ServerMode::Leader);
        leader.leader = Some(LeaderStats { last_proposal_size: -1, ..LeaderStats::default() });
        let text = render_mntr(&leader);
        assert!(text.contains("zk_learners\t0\n"));
        assert!(text.contains("zk_last_proposal_size\t-1\n"));
    }
}
