//! ZooKeeper's `ServerMetrics` (3.8): every counter and summary it reports in `mntr`, the
//! AdminServer's `monitor` and Prometheus, by ZooKeeper's names, in the order a 3.8.0 server
//! prints them — and the registry where Corral records those it measures.
//!
//! Owns: the list of names and kinds ([`ZK_METRICS`]), the registry ([`ServerMetrics`]:
//! counters and summaries fed by the network layer, the pipeline and the database), and the
//! values' rendering into `mntr` entries and Prometheus families ([`ZkValue`]).
//!
//! Which are measured: [`measured`] names them; the others are ZooKeeper stages Corral does
//! not have (its request processors' queues, Netty, the JVM, the response cache, dead-watcher
//! cleaning, request throttling) or ZooKeeper features it does not implement (ensemble
//! authentication, large-request throttling): they are reported as ZooKeeper reports a metric
//! nothing recorded — counters 0, summaries with no samples — so dashboards and alerts that
//! name them find them. docs/operations.md lists both groups.
//!
//! Must never touch: sockets, clocks, files.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

use super::monitor::{summary_entries, summary_entries_with_percentiles, MetricValue, Summary};
use super::prometheus::{Family, Kind, Sample, ZK_QUANTILES};

/// How ZooKeeper reports a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZkKind {
    /// A counter: `name` in `mntr`, a Prometheus counter.
    Counter,
    /// A basic summary (`AvgMinMaxCounter`): `avg_/min_/max_/cnt_/sum_name`; in Prometheus a
    /// summary with the quantile 0.5, `_count` and `_sum`.
    Basic,
    /// An advanced summary (`AvgMinMaxPercentileCounter`): the basic five and
    /// `p50_/p95_/p99_/p999_name`; in Prometheus quantiles 0.5, 0.9 and 0.99 too.
    Advanced,
}

use ZkKind::{Advanced, Basic, Counter};

/// ZooKeeper 3.8's metrics in the order a 3.8.0 server prints them (its summary sets — per
/// namespace, per learner — left out).
pub const ZK_METRICS: &[(&str, ZkKind)] = &[
    ("proposal_count", Counter),
    ("watch_bytes", Counter),
    ("outstanding_changes_removed", Counter),
    ("throttled_ops", Counter),
    ("stale_requests_dropped", Counter),
    ("large_requests_rejected", Counter),
    ("insecure_admin_count", Counter),
    ("connection_rejected", Counter),
    ("cnxn_closed_without_zk_server_running", Counter),
    ("sessionless_connections_expired", Counter),
    ("looking_count", Counter),
    ("dead_watchers_queued", Counter),
    ("stale_requests", Counter),
    ("connection_drop_count", Counter),
    ("learner_proposal_received_count", Counter),
    ("digest_mismatches_count", Counter),
    ("dead_watchers_cleared", Counter),
    ("response_packet_cache_hits", Counter),
    ("bytes_received_count", Counter),
    ("add_dead_watcher_stall_time", Counter),
    ("request_throttle_wait_count", Counter),
    ("requests_not_forwarded_to_commit_processor", Counter),
    ("response_packet_cache_misses", Counter),
    ("ensemble_auth_success", Counter),
    ("prep_processor_request_queued", Counter),
    ("learner_commit_received_count", Counter),
    ("stale_replies", Counter),
    ("connection_request_count", Counter),
    ("response_bytes", Counter),
    ("ensemble_auth_fail", Counter),
    ("diff_count", Counter),
    ("response_packet_get_children_cache_misses", Counter),
    ("connection_revalidate_count", Counter),
    ("quit_leading_due_to_disloyal_voter", Counter),
    ("snap_count", Counter),
    ("unrecoverable_error_count", Counter),
    ("unsuccessful_handshake", Counter),
    ("commit_count", Counter),
    ("stale_sessions_expired", Counter),
    ("response_packet_get_children_cache_hits", Counter),
    ("sync_processor_request_queued", Counter),
    ("outstanding_changes_queued", Counter),
    ("request_commit_queued", Counter),
    ("ensemble_auth_skip", Counter),
    ("skip_learner_request_to_next_processor_count", Counter),
    ("tls_handshake_exceeded", Counter),
    ("revalidate_count", Counter),
    ("socket_closing_time", Basic),
    ("proposal_process_time", Basic),
    ("leader_unavailable_time", Basic),
    ("node_created_watch_count", Basic),
    ("session_queues_drained", Basic),
    ("write_commit_proc_req_queued", Basic),
    ("connection_token_deficit", Basic),
    ("read_commit_proc_req_queued", Basic),
    ("node_deleted_watch_count", Basic),
    ("startup_txns_load_time", Basic),
    ("sync_processor_queue_size", Basic),
    ("follower_sync_time", Basic),
    ("prep_processor_queue_size", Basic),
    ("fsynctime", Basic),
    ("inflight_snap_count", Basic),
    ("reads_issued_from_session_queue", Basic),
    ("learner_request_processor_queue_size", Basic),
    ("snapshottime", Basic),
    ("unavailable_time", Basic),
    ("startup_txns_loaded", Basic),
    ("reads_after_write_in_session_queue", Basic),
    ("requests_in_session_queue", Basic),
    ("write_commit_proc_issued", Basic),
    ("prep_process_time", Basic),
    ("pending_session_queue_size", Basic),
    ("time_waiting_empty_pool_in_commit_processor_read_ms", Basic),
    ("commit_process_time", Basic),
    ("dbinittime", Basic),
    ("inflight_diff_count", Basic),
    ("netty_queued_buffer_capacity", Basic),
    ("election_time", Basic),
    ("commit_commit_proc_req_queued", Basic),
    ("sync_processor_batch_size", Basic),
    ("node_children_watch_count", Basic),
    ("write_batch_time_in_commit_processor", Basic),
    ("read_commit_proc_issued", Basic),
    ("concurrent_request_processing_in_commit_processor", Basic),
    ("observer_sync_time", Basic),
    ("node_changed_watch_count", Basic),
    ("sync_process_time", Basic),
    ("startup_snap_load_time", Basic),
    ("prep_processor_queue_time_ms", Advanced),
    ("jvm_pause_time_ms", Advanced),
    ("close_session_prep_time", Advanced),
    ("read_commitproc_time_ms", Advanced),
    ("updatelatency", Advanced),
    ("local_write_committed_time_ms", Advanced),
    ("request_throttle_queue_time_ms", Advanced),
    ("readlatency", Advanced),
    ("quorum_ack_latency", Advanced),
    ("om_commit_process_time_ms", Advanced),
    ("read_final_proc_time_ms", Advanced),
    ("commit_propagation_latency", Advanced),
    ("dead_watchers_cleaner_latency", Advanced),
    ("write_final_proc_time_ms", Advanced),
    ("proposal_ack_creation_latency", Advanced),
    ("proposal_latency", Advanced),
    ("om_proposal_process_time_ms", Advanced),
    ("sync_processor_queue_and_flush_time_ms", Advanced),
    ("propagation_latency", Advanced),
    ("server_write_committed_time_ms", Advanced),
    ("sync_processor_queue_time_ms", Advanced),
    ("sync_processor_queue_flush_time_ms", Advanced),
    ("write_commitproc_time_ms", Advanced),
    ("command", Counter),
    ("error", Counter),
];

/// The counters Corral records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum C {
    /// `looking_count`: times this server began an election.
    LookingCount,
    /// `bytes_received_count`: bytes of client frames read (length prefix included).
    BytesReceivedCount,
    /// `response_bytes`: bytes of replies written to clients.
    ResponseBytes,
    /// `watch_bytes`: bytes of watch notifications written to clients.
    WatchBytes,
    /// `connection_request_count`: ConnectRequests received.
    ConnectionRequestCount,
    /// `connection_rejected`: connections refused by `maxCnxns` or `maxClientCnxns`.
    ConnectionRejected,
    /// `unsuccessful_handshake`: TLS handshakes that failed.
    UnsuccessfulHandshake,
    /// `sessionless_connections_expired`: connections closed for sending no ConnectRequest in
    /// time.
    SessionlessConnectionsExpired,
    /// `stale_sessions_expired`: sessions this server's tracker expired.
    StaleSessionsExpired,
    /// `digest_mismatches_count`: txns after which the tree's digest differed from the logged
    /// one.
    DigestMismatchesCount,
    /// `proposal_count` (leader).
    ProposalCount,
    /// `commit_count` (leader).
    CommitCount,
    /// `diff_count` (leader): learners synced by DIFF, TRUNC or TRUNC+DIFF.
    DiffCount,
    /// `snap_count` (leader): learners synced by SNAP.
    SnapCount,
    /// `learner_proposal_received_count` (follower).
    LearnerProposalReceivedCount,
    /// `learner_commit_received_count` (follower, observer).
    LearnerCommitReceivedCount,
    /// `revalidate_count` (leader): REVALIDATE requests of learners.
    RevalidateCount,
    /// `insecure_admin_count`: plain HTTP requests on an AdminServer port that takes HTTPS too.
    InsecureAdminCount,
}

const COUNTERS: [(C, &str); 18] = [
    (C::LookingCount, "looking_count"),
    (C::BytesReceivedCount, "bytes_received_count"),
    (C::ResponseBytes, "response_bytes"),
    (C::WatchBytes, "watch_bytes"),
    (C::ConnectionRequestCount, "connection_request_count"),
    (C::ConnectionRejected, "connection_rejected"),
    (C::UnsuccessfulHandshake, "unsuccessful_handshake"),
    (C::SessionlessConnectionsExpired, "sessionless_connections_expired"),
    (C::StaleSessionsExpired, "stale_sessions_expired"),
    (C::DigestMismatchesCount, "digest_mismatches_count"),
    (C::ProposalCount, "proposal_count"),
    (C::CommitCount, "commit_count"),
    (C::DiffCount, "diff_count"),
    (C::SnapCount, "snap_count"),
    (C::LearnerProposalReceivedCount, "learner_proposal_received_count"),
    (C::LearnerCommitReceivedCount, "learner_commit_received_count"),
    (C::RevalidateCount, "revalidate_count"),
    (C::InsecureAdminCount, "insecure_admin_count"),
];

/// The basic summaries Corral records (times in ms, as ZooKeeper's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum S {
    /// `election_time`: from LOOKING until a leader is chosen, ms.
    ElectionTime,
    /// `snapshottime`: writing a snapshot, ms.
    SnapshotTime,
    /// `dbinittime`: recovering the database at start, ms.
    DbInitTime,
    /// `startup_snap_load_time`: loading the newest snapshot at start, ms.
    StartupSnapLoadTime,
    /// `startup_txns_loaded`: txns replayed from the log at start.
    StartupTxnsLoaded,
    /// `startup_txns_load_time`: replaying them, ms.
    StartupTxnsLoadTime,
    /// `follower_sync_time`: a follower's sync with its leader (connected to UPTODATE), ms.
    FollowerSyncTime,
    /// `observer_sync_time`: the same for an observer, ms.
    ObserverSyncTime,
    /// `unavailable_time`: from LOOKING until serving again, ms.
    UnavailableTime,
    /// `leader_unavailable_time`: the same, when serving again as leader, ms.
    LeaderUnavailableTime,
    /// `node_created_watch_count`: watchers a NodeCreated event fired.
    NodeCreatedWatchCount,
    /// `node_deleted_watch_count`.
    NodeDeletedWatchCount,
    /// `node_changed_watch_count`.
    NodeChangedWatchCount,
    /// `node_children_watch_count`.
    NodeChildrenWatchCount,
}

const SUMMARIES: [(S, &str); 14] = [
    (S::ElectionTime, "election_time"),
    (S::SnapshotTime, "snapshottime"),
    (S::DbInitTime, "dbinittime"),
    (S::StartupSnapLoadTime, "startup_snap_load_time"),
    (S::StartupTxnsLoaded, "startup_txns_loaded"),
    (S::StartupTxnsLoadTime, "startup_txns_load_time"),
    (S::FollowerSyncTime, "follower_sync_time"),
    (S::ObserverSyncTime, "observer_sync_time"),
    (S::UnavailableTime, "unavailable_time"),
    (S::LeaderUnavailableTime, "leader_unavailable_time"),
    (S::NodeCreatedWatchCount, "node_created_watch_count"),
    (S::NodeDeletedWatchCount, "node_deleted_watch_count"),
    (S::NodeChangedWatchCount, "node_changed_watch_count"),
    (S::NodeChildrenWatchCount, "node_children_watch_count"),
];

/// Metrics Corral takes from figures it keeps elsewhere (the reply-latency and log
/// histograms), filled in by whoever renders.
pub const FROM_HISTOGRAMS: [&str; 6] = [
    "fsynctime",
    "sync_processor_batch_size",
    "sync_processor_queue_and_flush_time_ms",
    "sync_processor_queue_flush_time_ms",
    "readlatency",
    "updatelatency",
];

/// Every metric of [`ZK_METRICS`] Corral measures.
pub fn measured() -> impl Iterator<Item = &'static str> {
    COUNTERS
        .iter()
        .map(|(_, n)| *n)
        .chain(SUMMARIES.iter().map(|(_, n)| *n))
        .chain(FROM_HISTOGRAMS.iter().copied())
}

/// The registry: counters and summaries, shared by every thread that records.
#[derive(Debug)]
pub struct ServerMetrics {
    counters: [AtomicI64; COUNTERS.len()],
    /// Counters whose totals are kept elsewhere (the replica's), set here, and reported
    /// relative to the total at the last reset.
    bases: [AtomicI64; COUNTERS.len()],
    summaries: Mutex<Vec<(Summary, hdrhistogram::Histogram<u64>)>>,
}

/// A summary's samples: exact count, sum, min and max, and a histogram for its median
/// (2 significant digits: 1%).
fn empty_summaries() -> Vec<(Summary, hdrhistogram::Histogram<u64>)> {
    (0..SUMMARIES.len())
        .map(|_| {
            let h = hdrhistogram::Histogram::new_with_bounds(1, 1 << 40, 2).expect("valid bounds");
            (Summary::default(), h)
        })
        .collect()
}

impl Default for ServerMetrics {
    fn default() -> Self {
        ServerMetrics {
            counters: std::array::from_fn(|_| AtomicI64::new(0)),
            bases: std::array::from_fn(|_| AtomicI64::new(0)),
            summaries: Mutex::new(empty_summaries()),
        }
    }
}

impl ServerMetrics {
    /// Adds `n` to counter `c`.
    pub fn add(&self, c: C, n: i64) {
        self.counters[c as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// Sets counter `c` to a total kept elsewhere (it only grows there).
    pub fn set_total(&self, c: C, total: i64) {
        self.counters[c as usize].store(total, Ordering::Relaxed);
    }

    /// Counter `c` since the last reset.
    pub fn counter(&self, c: C) -> i64 {
        let i = c as usize;
        self.counters[i].load(Ordering::Relaxed) - self.bases[i].load(Ordering::Relaxed)
    }

    /// Records a sample of summary `s`.
    pub fn observe(&self, s: S, value: i64) {
        let mut all = self.summaries.lock().unwrap_or_else(|p| p.into_inner());
        let (summary, h) = &mut all[s as usize];
        summary.add(value);
        h.saturating_record(value.max(0) as u64);
    }

    /// Summary `s`.
    pub fn summary(&self, s: S) -> Summary {
        self.summaries.lock().unwrap_or_else(|p| p.into_inner())[s as usize].0
    }

    /// Clears everything (`srst`, as ZooKeeper's `ServerMetrics.resetAll`).
    pub fn reset(&self) {
        for i in 0..COUNTERS.len() {
            self.bases[i].store(self.counters[i].load(Ordering::Relaxed), Ordering::Relaxed);
        }
        *self.summaries.lock().unwrap_or_else(|p| p.into_inner()) = empty_summaries();
    }

    /// Every metric of [`ZK_METRICS`], in order: recorded here, taken from `extra` (the
    /// [`FROM_HISTOGRAMS`] ones), or empty.
    pub fn values(&self, extra: &[(&str, ZkValue)]) -> Vec<(&'static str, ZkValue)> {
        let summaries: Vec<(Summary, f64)> = self
            .summaries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(s, h)| {
                (*s, if s.count == 0 { f64::NAN } else { h.value_at_quantile(0.5) as f64 })
            })
            .collect();
        ZK_METRICS
            .iter()
            .map(|&(name, kind)| {
                if let Some((_, v)) = extra.iter().find(|(n, _)| *n == name) {
                    return (name, v.clone());
                }
                if let Some((c, _)) = COUNTERS.iter().find(|(_, n)| *n == name) {
                    return (name, ZkValue::Counter(self.counter(*c)));
                }
                if let Some((s, _)) = SUMMARIES.iter().find(|(_, n)| *n == name) {
                    let (summary, median) = summaries[*s as usize];
                    return (name, ZkValue::Summary(summary, median));
                }
                let empty = match kind {
                    Counter => ZkValue::Counter(0),
                    Basic => ZkValue::Summary(Summary::default(), f64::NAN),
                    Advanced => ZkValue::Percentiles(Summary::default(), [0; 4], [f64::NAN; 3]),
                };
                (name, empty)
            })
            .collect()
    }
}

/// A metric's value.
#[derive(Debug, Clone, PartialEq)]
pub enum ZkValue {
    /// A counter.
    Counter(i64),
    /// A basic summary, and its median (for Prometheus).
    Summary(Summary, f64),
    /// An advanced summary: the basic figures, p50, p95, p99 and p999 (`mntr`), and the
    /// quantiles 0.5, 0.9 and 0.99 Prometheus shows (unscaled to whole units: a double).
    Percentiles(Summary, [i64; 4], [f64; 3]),
}

impl ZkValue {
    /// A summary of a histogram's samples divided by `scale` (µs shown as ms: 1000), with
    /// percentiles if `advanced`.
    pub fn of_histogram(h: &hdrhistogram::Histogram<u64>, scale: u64, advanced: bool) -> ZkValue {
        let count = h.len() as i64;
        let scale = scale.max(1);
        let s = if count == 0 {
            Summary::default()
        } else {
            Summary {
                count,
                sum: (h.mean() * count as f64 / scale as f64).round() as i64,
                min: (h.min() / scale) as i64,
                max: (h.max() / scale) as i64,
            }
        };
        if !advanced {
            let median =
                if count == 0 { f64::NAN } else { h.value_at_quantile(0.5) as f64 / scale as f64 };
            return ZkValue::Summary(s, median);
        }
        let q = |x: f64| if count == 0 { 0 } else { (h.value_at_quantile(x) / scale) as i64 };
        let f = |x: f64| {
            if count == 0 {
                f64::NAN
            } else {
                h.value_at_quantile(x) as f64 / scale as f64
            }
        };
        ZkValue::Percentiles(
            s,
            [q(0.5), q(0.95), q(0.99), q(0.999)],
            [f(ZK_QUANTILES[0]), f(ZK_QUANTILES[1]), f(ZK_QUANTILES[2])],
        )
    }

    /// Its `mntr` entries.
    pub fn entries(&self, name: &str) -> Vec<(String, MetricValue)> {
        match self {
            ZkValue::Counter(n) => vec![(name.to_string(), MetricValue::Int(*n))],
            ZkValue::Summary(s, _) => summary_entries(name, s),
            ZkValue::Percentiles(s, [p50, p95, p99, p999], _) => {
                summary_entries_with_percentiles(name, s, *p50, *p95, *p99, *p999)
            }
        }
    }

    /// Its Prometheus family, as ZooKeeper's provider exports it: counters as counters,
    /// summaries with `_count` and `_sum` and the quantile 0.5 (advanced ones 0.5, 0.9 and
    /// 0.99).
    pub fn family(&self, name: &str) -> Family {
        let median;
        let (s, quantiles): (&Summary, &[f64]) = match self {
            ZkValue::Counter(n) => return Family::single(name, name, Kind::Counter, *n as f64),
            ZkValue::Summary(s, m) => {
                median = [*m];
                (s, &median)
            }
            ZkValue::Percentiles(s, _, q) => (s, q),
        };
        let mut samples: Vec<Sample> = Vec::new();
        for (q, v) in ZK_QUANTILES.iter().zip(quantiles.iter()) {
            samples.push(Sample {
                suffix: "",
                labels: vec![("quantile".into(), q.to_string())],
                value: if s.count == 0 { f64::NAN } else { *v },
            });
        }
        samples.push(Sample { suffix: "_count", labels: Vec::new(), value: s.count as f64 });
        samples.push(Sample { suffix: "_sum", labels: Vec::new(), value: s.sum as f64 });
        Family { name: name.to_string(), help: name.to_string(), kind: Kind::Summary, samples }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_zookeepers_and_names_every_measured_metric_once() {
        assert_eq!(ZK_METRICS.len(), 113);
        let mut names: Vec<&str> = ZK_METRICS.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ZK_METRICS.len(), "no name twice");
        for m in measured() {
            assert!(ZK_METRICS.iter().any(|(n, _)| *n == m), "{m} is not ZooKeeper's");
        }
        let mut m: Vec<&str> = measured().collect();
        let n = m.len();
        m.sort_unstable();
        m.dedup();
        assert_eq!(m.len(), n, "measured twice");
        for (i, (c, _)) in COUNTERS.iter().enumerate() {
            assert_eq!(*c as usize, i);
        }
        for (i, (s, _)) in SUMMARIES.iter().enumerate() {
            assert_eq!(*s as usize, i);
        }
        for (_, name) in COUNTERS {
            assert!(ZK_METRICS.contains(&(name, Counter)), "{name} is a counter");
        }
        for (_, name) in SUMMARIES {
            assert!(ZK_METRICS.contains(&(name, Basic)), "{name} is a basic summary");
        }
    }

    #[test]
    fn values_render_as_zookeeper_does_and_reset() {
        let m = ServerMetrics::default();
        m.add(C::LookingCount, 2);
        m.set_total(C::ProposalCount, 10);
        m.observe(S::ElectionTime, 30);
        m.observe(S::ElectionTime, 10);
        let v = m.values(&[]);
        let get =
            |v: &[(&str, ZkValue)], n: &str| v.iter().find(|(k, _)| *k == n).unwrap().1.clone();
        assert_eq!(get(&v, "looking_count"), ZkValue::Counter(2));
        assert_eq!(get(&v, "proposal_count"), ZkValue::Counter(10));
        let e = get(&v, "election_time").entries("election_time");
        let keys: Vec<&str> = e.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "avg_election_time",
                "min_election_time",
                "max_election_time",
                "cnt_election_time",
                "sum_election_time"
            ]
        );
        assert_eq!(e[0].1, MetricValue::Double(20.0));
        assert_eq!(e[1].1, MetricValue::Int(10));
        assert_eq!(e[4].1, MetricValue::Int(40));
        // Unmeasured: empty, with ZooKeeper's keys.
        assert_eq!(get(&v, "jvm_pause_time_ms").entries("jvm_pause_time_ms").len(), 9);
        assert_eq!(get(&v, "throttled_ops"), ZkValue::Counter(0));
        // srst: counters from zero again, kept totals relative to the reset.
        m.reset();
        m.set_total(C::ProposalCount, 12);
        let v = m.values(&[]);
        assert_eq!(get(&v, "proposal_count"), ZkValue::Counter(2));
        assert_eq!(get(&v, "looking_count"), ZkValue::Counter(0));
        assert!(
            matches!(get(&v, "election_time"), ZkValue::Summary(s, m) if s.count == 0 && m.is_nan())
        );
    }

    #[test]
    fn prometheus_families_have_zookeepers_types() {
        let c = ZkValue::Counter(3).family("looking_count");
        assert_eq!((c.kind, c.samples.len()), (Kind::Counter, 1));
        let s =
            ZkValue::Summary(Summary { count: 2, sum: 5, min: 1, max: 4 }, 1.0).family("fsynctime");
        assert_eq!(s.kind, Kind::Summary);
        let suffixes: Vec<&str> = s.samples.iter().map(|x| x.suffix).collect();
        assert_eq!(suffixes, ["", "_count", "_sum"], "a basic summary has its median");
        assert_eq!(s.samples[0].labels, [("quantile".to_string(), "0.5".to_string())]);
        let p =
            ZkValue::Percentiles(Summary { count: 1, sum: 7, min: 7, max: 7 }, [7; 4], [7.0; 3])
                .family("readlatency");
        assert_eq!(p.samples.len(), 5);
        assert_eq!(p.samples[0].labels, [("quantile".to_string(), "0.5".to_string())]);
        assert_eq!(p.samples[0].value, 7.0);
    }

    #[test]
    fn histograms_scale_to_milliseconds() {
        let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        h.record(1_500).unwrap();
        h.record(4_500).unwrap();
        match ZkValue::of_histogram(&h, 1000, true) {
            ZkValue::Percentiles(s, p, q) => {
                assert_eq!((s.count, s.sum, s.min, s.max), (2, 6, 1, 4));
                assert_eq!(p[3], 4);
                assert!((q[2] - 4.5).abs() < 0.01, "{q:?}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            ZkValue::of_histogram(&hdrhistogram::Histogram::<u64>::new(3).unwrap(), 1000, false),
            ZkValue::Summary(s, m) if s == Summary::default() && m.is_nan()
        ));
    }
}
