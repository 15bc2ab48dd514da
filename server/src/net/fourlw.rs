//! Four-letter words on the client port: the figures behind each word, gathered from the
//! running server. Detection, the whitelist and the exact text are `crate::admin`'s.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;

use crate::admin::fourlw::{execute, FourLetterSource, FourLetterWord};
use crate::admin::monitor::{MetricValue, MonitorStats};
use crate::admin::report::{
    connection_item, last_operation_name, session_item, ConfData, ConfRuntime, ConnectionInfo,
    DirSizes, DumpData, Environment, EnvironmentInfo, ExpiryBucket, ExpiryDump, ServerMode,
    ServerStats, SessionTrackerDump, WatchSummary,
};
use crate::admin::server_metrics::ZkValue;
use crate::admin::{full_version, javafmt::rounded_average};
use crate::pipeline::Shared;

/// Which four-letter word the first bytes of a connection are, if any.
pub fn detect(first: &[u8; 4]) -> Option<FourLetterWord> {
    FourLetterWord::detect(*first)
}

/// The answer to a four-letter word (`stmk_mask`: the 8 bytes that follow `stmk`).
pub fn answer(
    word: FourLetterWord,
    shared: &Shared,
    local: Option<SocketAddr>,
    stmk_mask: Option<i64>,
) -> Vec<u8> {
    let whitelist = shared.config.four_letter_whitelist();
    let mut source = Source { shared, local, on_client_port: true };
    execute(word, &whitelist, &mut source, stmk_mask)
}

/// Whether `stmk`'s argument should be read (only when the word will run).
pub fn wants_mask(word: FourLetterWord, shared: &Shared) -> bool {
    word == FourLetterWord::Stmk && shared.config.four_letter_whitelist().allows(word)
}

/// The live server, as the four-letter words and the AdminServer's commands see it.
pub(crate) struct Source<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) local: Option<SocketAddr>,
    /// Asked on a client connection (a four-letter word), which then counts as one; the
    /// AdminServer's and the metrics endpoint's requests are not client connections.
    pub(crate) on_client_port: bool,
}

fn dir_size(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else { return 0 };
    rd.filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

impl Source<'_> {
    fn latency(&self) -> (i64, f64, i64) {
        let s = &self.shared.stats;
        let count = s.lat_count.load(Ordering::Relaxed);
        let min = s.lat_min.load(Ordering::Relaxed);
        let min = if min == u64::MAX { 0 } else { min as i64 };
        let avg = rounded_average(s.lat_sum.load(Ordering::Relaxed) as i64, count as i64);
        (min, avg, s.lat_max.load(Ordering::Relaxed) as i64)
    }

    /// ZooKeeper's `ServerMetrics`: what the registry recorded, and those Corral takes from
    /// its reply-latency and log histograms (times in ms, as ZooKeeper's).
    pub(crate) fn zk_metrics(&self) -> Vec<(&'static str, ZkValue)> {
        let sh = self.shared;
        let times = sh.stats.times.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut from = vec![
            ("readlatency", ZkValue::of_histogram(&times.read_us, 1000, true)),
            ("updatelatency", ZkValue::of_histogram(&times.update_us, 1000, true)),
        ];
        if let Some(log) = sh.stats.log.get() {
            let l = log.get();
            from.extend([
                // SyncRequestProcessor's fsync, batch, and a request's wait for its flush.
                ("fsynctime", ZkValue::of_histogram(&l.flush_latency_us, 1000, false)),
                ("sync_processor_batch_size", ZkValue::of_histogram(&l.batch_records, 1, false)),
                (
                    "sync_processor_queue_and_flush_time_ms",
                    ZkValue::of_histogram(&l.append_latency_us, 1000, true),
                ),
                (
                    "sync_processor_queue_flush_time_ms",
                    ZkValue::of_histogram(&l.flush_latency_us, 1000, true),
                ),
            ]);
        }
        sh.stats.zk.values(&from)
    }

    pub(crate) fn dirs(&self) -> DirSizes {
        let db = crate::db::DbOptions::new(&self.shared.config.data_dir);
        let mut log = crate::db::DbOptions::new(&self.shared.config.data_log_dir);
        log.data_log_dir = self.shared.config.data_log_dir.clone();
        DirSizes { data_dir_size: dir_size(&db.snap_dir()), log_dir_size: dir_size(&log.log_dir()) }
    }
}

impl Source<'_> {
    /// Every client connection (without the asking connection).
    pub(crate) fn client_connections(&self) -> Vec<ConnectionInfo> {
        let sh = self.shared;
        let conns = sh.conns.lock().unwrap_or_else(|p| p.into_inner());
        conns
            .values()
            .map(|c| {
                let s = &c.stats;
                let count = s.lat_count.load(Ordering::Relaxed) as i64;
                let min = s.lat_min.load(Ordering::Relaxed);
                let mut info =
                    ConnectionInfo::new(Some(c.remote), sh.start_wall_ms + c.established_ms as i64);
                info.outstanding_requests = c.pending.load(Ordering::Relaxed) as i64;
                info.packets_received = s.received.load(Ordering::Relaxed) as i64;
                info.packets_sent = s.sent.load(Ordering::Relaxed) as i64;
                info.session_id = c.session_id.load(Ordering::Relaxed);
                let op = s.last_op.load(Ordering::Relaxed);
                if count > 0 {
                    info.last_operation = last_operation_name(op as i32).to_string();
                }
                info.session_timeout_ms = c.timeout_ms.load(Ordering::Relaxed) as i32;
                info.last_cxid = s.last_cxid.load(Ordering::Relaxed);
                info.last_zxid = s.last_zxid.load(Ordering::Relaxed);
                info.last_response_ms = s.last_response_ms.load(Ordering::Relaxed) as i64;
                info.last_latency_ms = s.last_latency.load(Ordering::Relaxed) as i64;
                info.min_latency_ms = if min == u64::MAX { 0 } else { min as i64 };
                info.avg_latency_ms =
                    if count > 0 { s.lat_sum.load(Ordering::Relaxed) as i64 / count } else { 0 };
                info.max_latency_ms = s.lat_max.load(Ordering::Relaxed) as i64;
                info
            })
            .collect()
    }

    /// The mode the four-letter words report.
    pub(crate) fn mode(&self) -> ServerMode {
        // A standalone server runs as an ensemble of one, which leads.
        if !self.shared.config.is_distributed() {
            return ServerMode::Standalone;
        }
        match self.shared.mode.load(Ordering::Acquire) {
            crate::pipeline::MODE_LEADER => ServerMode::Leader,
            crate::pipeline::MODE_FOLLOWER => ServerMode::Follower,
            crate::pipeline::MODE_OBSERVER => ServerMode::Observer,
            crate::pipeline::MODE_READ_ONLY => ServerMode::ReadOnly,
            _ => ServerMode::Standalone,
        }
    }
}

impl FourLetterSource for Source<'_> {
    fn is_serving(&self) -> bool {
        self.shared.mode.load(Ordering::Acquire) != crate::pipeline::MODE_NOT_SERVING
    }

    fn is_read_only(&self) -> bool {
        self.shared.mode.load(Ordering::Acquire) == crate::pipeline::MODE_READ_ONLY
    }

    fn server_stats(&self) -> ServerStats {
        let (min, avg, max) = self.latency();
        let sh = self.shared;
        ServerStats {
            version: full_version(),
            min_latency_ms: min,
            avg_latency_ms: avg,
            max_latency_ms: max,
            packets_received: sh.stats.received.load(Ordering::Relaxed) as i64,
            packets_sent: sh.stats.sent.load(Ordering::Relaxed) as i64,
            // A four-letter word's own connection counts, as in ZooKeeper (an HTTP request's
            // does not).
            connections: sh.conns.lock().map(|c| c.len()).unwrap_or(0) as i64
                + i64::from(self.on_client_port),
            outstanding_requests: sh.outstanding.load(Ordering::Relaxed) as i64,
            last_processed_zxid: sh.last_zxid.load(Ordering::Relaxed),
            mode: self.mode(),
            node_count: sh.view.read().map(|v| v.node_count()).unwrap_or(0) as i64,
            proposal_sizes: {
                let e = sh.ensemble.lock().unwrap_or_else(|p| p.into_inner());
                match e.leading.as_ref().and_then(|l| l.proposal_sizes) {
                    Some((last, min, max)) => crate::admin::report::BufferStats { last, min, max },
                    None => Default::default(),
                }
            },
        }
    }

    fn connections(&self) -> Vec<ConnectionInfo> {
        let mut out = self.client_connections();
        // The four-letter word's own connection is listed too, as ZooKeeper does.
        out.push(ConnectionInfo::new(
            self.local,
            self.shared.start_wall_ms + self.shared.now_ms() as i64,
        ));
        out
    }

    fn conf(&self) -> ConfData {
        let d = self.dirs();
        let runtime = ConfRuntime {
            client_port: self.shared.config.client_port,
            secure_client_port: None,
            data_dir_size: d.data_dir_size,
            data_log_size: d.log_dir_size,
            working_dir: std::env::current_dir().unwrap_or_default(),
        };
        let mut data = ConfData::from_config(&self.shared.config, &runtime);
        let active =
            self.shared.ensemble.lock().unwrap_or_else(|p| p.into_inner()).membership.clone();
        if let (Some(q), Some(m)) = (data.quorum.as_mut(), active) {
            q.membership = m;
        }
        data
    }

    fn environment(&self) -> Environment {
        let var = |k: &str| std::env::var(k).ok();
        let uname =
            std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|s| s.trim().to_owned());
        let host =
            std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|s| s.trim().to_owned());
        Environment::from_info(&EnvironmentInfo {
            zookeeper_version: full_version(),
            host_name: host,
            tmp_dir: Some(std::env::temp_dir().to_string_lossy().into_owned()),
            os_name: Some("Linux".into()),
            os_arch: Some(if cfg!(target_arch = "x86_64") {
                "amd64".into()
            } else {
                std::env::consts::ARCH.into()
            }),
            os_version: uname,
            user_name: var("USER"),
            user_home: var("HOME"),
            user_dir: std::env::current_dir().ok().map(|p| p.to_string_lossy().into_owned()),
            memory_free_mb: None,
            memory_max_mb: None,
            memory_total_mb: None,
            extra: Vec::new(),
        })
    }

    fn dir_sizes(&self) -> DirSizes {
        self.dirs()
    }

    fn dump(&self) -> DumpData {
        let sh = self.shared;
        let sessions = sh.sessions.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let tick = sh.settings.tick_ms.max(1) as i64;
        let mut buckets: std::collections::BTreeMap<i64, Vec<String>> = Default::default();
        for (id, s) in &sessions {
            let last = s.last_touch.load(Ordering::Relaxed) as i64 + sh.start_wall_ms;
            let expire = (last + i64::from(s.timeout_ms)).div_euclid(tick) * tick + tick;
            buckets.entry(expire).or_default().push(session_item(*id));
        }
        let tree = sh.view.read().map(|v| v.clone()).ok();
        let mut ephemerals: Vec<(i64, Vec<String>)> = match &tree {
            Some(t) => {
                t.sessions_with_ephemerals().into_iter().map(|s| (s, t.ephemerals(s))).collect()
            }
            None => Vec::new(),
        };
        ephemerals.sort();
        let conns = sh.conns.lock().unwrap_or_else(|p| p.into_inner());
        let mut cb: std::collections::BTreeMap<i64, Vec<String>> = Default::default();
        for c in conns.values() {
            let at = sh.start_wall_ms
                + c.stats.last_response_ms.load(Ordering::Relaxed).max(c.established_ms) as i64
                + c.timeout_ms.load(Ordering::Relaxed);
            cb.entry(at)
                .or_default()
                .push(connection_item(Some(c.remote), c.session_id.load(Ordering::Relaxed)));
        }
        let to_dump = |m: std::collections::BTreeMap<i64, Vec<String>>| ExpiryDump {
            buckets: m
                .into_iter()
                .map(|(expire_at_ms, items)| ExpiryBucket { expire_at_ms, items })
                .collect(),
        };
        DumpData {
            sessions: SessionTrackerDump::Expiry { local: None, global: to_dump(buckets) },
            ephemerals,
            connections: Some(to_dump(cb)),
        }
    }

    fn watch_summary(&self) -> WatchSummary {
        let w = self.shared.watches.lock().unwrap_or_else(|p| p.into_inner());
        WatchSummary {
            connections: w.watcher_count(),
            paths: w.path_count(),
            total_watches: w.watch_count(),
        }
    }

    fn watches_by_session(&self) -> Vec<(i64, Vec<String>)> {
        let sh = self.shared;
        let by = sh.watches.lock().unwrap_or_else(|p| p.into_inner()).by_connection();
        let conns = sh.conns.lock().unwrap_or_else(|p| p.into_inner());
        by.into_iter()
            .map(|(c, paths)| {
                let sid = conns.get(&c).map(|c| c.session_id.load(Ordering::Relaxed)).unwrap_or(0);
                (sid, paths.into_iter().collect())
            })
            .collect()
    }

    fn watches_by_path(&self) -> Vec<(String, Vec<i64>)> {
        let sh = self.shared;
        let by = sh.watches.lock().unwrap_or_else(|p| p.into_inner()).by_path();
        let conns = sh.conns.lock().unwrap_or_else(|p| p.into_inner());
        by.into_iter()
            .map(|(p, cs)| {
                let sids = cs
                    .into_iter()
                    .map(|c| {
                        conns.get(&c).map(|c| c.session_id.load(Ordering::Relaxed)).unwrap_or(0)
                    })
                    .collect();
                (p, sids)
            })
            .collect()
    }

    fn monitor(&self) -> MonitorStats {
        let sh = self.shared;
        let (min, avg, max) = self.latency();
        let mut m = MonitorStats::new(full_version(), self.mode());
        let tree = sh.view.read().map(|v| v.clone()).ok();
        let w = self.watch_summary();
        m.ephemerals_count = tree.as_ref().map(|t| t.ephemerals_count() as i64).unwrap_or(0);
        m.num_alive_connections =
            sh.conns.lock().map(|c| c.len()).unwrap_or(0) as i64 + i64::from(self.on_client_port);
        m.avg_latency = avg;
        m.min_latency = min;
        m.max_latency = max;
        m.outstanding_requests = sh.outstanding.load(Ordering::Relaxed) as i64;
        m.znode_count = tree.as_ref().map(|t| t.node_count() as i64).unwrap_or(0);
        m.global_sessions = sh.sessions.lock().map(|s| s.len()).unwrap_or(0) as i64;
        m.packets_sent = sh.stats.sent.load(Ordering::Relaxed) as i64;
        m.packets_received = sh.stats.received.load(Ordering::Relaxed) as i64;
        m.watch_count = w.total_watches as i64;
        m.auth_failed_count = sh.auth_failed.load(Ordering::Relaxed) as i64;
        let responses = sh.stats.responses.get();
        m.last_client_response_size = responses.last;
        m.min_client_response_size = responses.min;
        m.max_client_response_size = responses.max;
        m.approximate_data_size = tree.as_ref().map(|t| t.approximate_data_size()).unwrap_or(0);
        m.uptime_ms = sh.now_ms() as i64;
        let fds = std::fs::read_dir("/proc/self/fd").map(|d| d.count() as i64).ok();
        m.open_file_descriptor_count = fds;
        m.max_file_descriptor_count =
            std::fs::read_to_string("/proc/self/limits").ok().and_then(|l| {
                l.lines()
                    .find(|x| x.starts_with("Max open files"))
                    .and_then(|x| x.split_whitespace().nth(3))
                    .and_then(|v| v.parse().ok())
            });
        let mode = sh.mode.load(Ordering::Acquire);
        if sh.config.is_distributed() {
            // An ensemble member: ZooKeeper's quorum keys (none in read-only mode).
            let e = sh.ensemble.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if mode != crate::pipeline::MODE_READ_ONLY {
                m.peer_state = Some(e.peer_state.clone());
                let voters = sh.config.participants().count() as i64;
                m.extra.push(("quorum_size".into(), MetricValue::Int(voters)));
            }
            // Every server's global sessions (ZooKeeper's learners report the whole
            // ensemble's), and this server's own.
            m.global_sessions = sh.global_sessions.load(Ordering::Relaxed) as i64;
            m.local_sessions = sh.local_sessions.load(Ordering::Relaxed) as i64;
            if mode == crate::pipeline::MODE_OBSERVER {
                m.observer_master_id = e.leader.map(|l| l as i64);
            }
            if let (Some(l), crate::pipeline::MODE_LEADER) = (e.leading, mode) {
                let (last, min, max) = l.proposal_sizes.unwrap_or((-1, -1, -1));
                m.leader = Some(crate::admin::monitor::LeaderStats {
                    learners: l.learners as i64,
                    synced_followers: l.synced_followers as i64,
                    synced_non_voting_followers: 0,
                    synced_observers: l.synced_observers as i64,
                    pending_syncs: l.pending_syncs as i64,
                    leader_uptime_ms: e
                        .leading_since_ms
                        .map(|t| sh.now_ms().saturating_sub(t) as i64)
                        .unwrap_or(0),
                    last_proposal_size: last,
                    max_proposal_size: max,
                    min_proposal_size: min,
                });
            }
        }
        m.extra.push(("last_zxid".into(), MetricValue::Int(sh.last_zxid.load(Ordering::Relaxed))));
        // ZooKeeper's ServerMetrics, in its order.
        for (name, v) in self.zk_metrics() {
            m.extra.extend(v.entries(name));
        }
        // Where a request's time goes: the reply latencies, and the log's part of an update's
        // (an append waiting for its batch's write and flush; one write and flush).
        use crate::admin::monitor::histogram_entries;
        let times = sh.stats.times.lock().unwrap_or_else(|p| p.into_inner()).clone();
        m.extra.extend(histogram_entries("update_latency_us", &times.update_us));
        m.extra.extend(histogram_entries("read_latency_us", &times.read_us));
        if let Some(log) = sh.stats.log.get() {
            let l = log.get();
            m.extra.extend(histogram_entries("log_append_time_us", &l.append_latency_us));
            m.extra.extend(histogram_entries("log_flush_time_us", &l.flush_latency_us));
            m.extra.extend(histogram_entries("log_batch_records", &l.batch_records));
        }
        m
    }

    fn digest_log(&self) -> Vec<(i64, i64)> {
        let sh = self.shared;
        let z = sh.last_zxid.load(Ordering::Relaxed);
        sh.view.read().map(|v| vec![(z, v.digest())]).unwrap_or_default()
    }

    fn trace_mask(&self) -> i64 {
        self.shared.trace_mask.load(Ordering::Relaxed)
    }

    fn set_trace_mask(&mut self, mask: i64) {
        self.shared.trace_mask.store(mask, Ordering::Relaxed);
    }

    fn reset_connection_stats(&mut self) {
        for c in self.shared.conns.lock().unwrap_or_else(|p| p.into_inner()).values() {
            let s = &c.stats;
            for a in [&s.received, &s.sent, &s.lat_sum, &s.lat_count, &s.lat_max, &s.last_latency] {
                a.store(0, Ordering::Relaxed);
            }
            s.lat_min.store(u64::MAX, Ordering::Relaxed);
        }
    }

    fn reset_server_stats(&mut self) {
        self.shared.stats.reset();
    }
}
