//! The pipeline driven one input at a time, with no thread, no timer and no wall clock: a
//! manual clock, and a log written inline (durable only when the test flushes it). What runs
//! is the production path — the pipeline over a standalone replica (a one-voter ZAB peer,
//! whose session tracker counts in ticks). Everything here is deterministic.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::Instant;

use corral_server::config::Config;
use corral_server::db::{Database, DbOptions};
use corral_server::pipeline::{Conn, Input, ManualClock, Out, Pipeline, Settings, Shared};
use corral_server::proto::{Acl, CreateRequest, Data, ErrorCode, Id, Request};
use corral_server::tree::TreeOptions;

const TICK_MS: u64 = 2_000;

struct Harness {
    shared: Arc<Shared>,
    clock: Arc<ManualClock>,
    pipeline: Pipeline,
    _durable: mpsc::Receiver<Input>,
}

fn start(dir: &std::path::Path) -> Harness {
    start_with(dir, |_, _| {})
}

fn start_with(dir: &std::path::Path, adjust: impl Fn(&mut Settings, &mut DbOptions)) -> Harness {
    let config = Config::default_standalone();
    let mut settings = Settings::from_config(&config);
    assert_eq!(settings.tick_ms, TICK_MS);
    let mut opts = DbOptions::new(dir);
    opts.inline_log = true;
    adjust(&mut settings, &mut opts);
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let shared =
        Arc::new(Shared::with_clock(settings, config, TreeOptions::default(), clock.clone()));
    let (db, state, _) = Database::open(opts).expect("database");
    // The log's own durability reports are redundant here: the test flushes it and the
    // pipeline commits what the flush made durable.
    let (tx, rx) = mpsc::channel();
    let mut pipeline = Pipeline::new(shared.clone(), db, state, tx).expect("pipeline");
    pipeline.begin();
    Harness { shared, clock, pipeline, _durable: rx }
}

impl Harness {
    fn connection(&self, id: u64) -> (Arc<Conn>, tokio::sync::mpsc::UnboundedReceiver<Out>) {
        let (out_tx, out_rx) = tokio::sync::mpsc::unbounded_channel();
        let remote: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let conn = Arc::new(Conn::new(id, remote, out_tx, self.clock_now(), 1 << 20));
        self.shared.conns.lock().unwrap().insert(id, conn.clone());
        (conn, out_rx)
    }

    fn clock_now(&self) -> u64 {
        self.shared.now_ms()
    }

    /// A new session with this timeout; returns its id and its last-touch cell.
    fn new_session(
        &mut self,
        conn: &Arc<Conn>,
        timeout_ms: i32,
    ) -> (i64, Arc<std::sync::atomic::AtomicU64>) {
        let (done, mut rx) = tokio::sync::oneshot::channel();
        self.pipeline.step(Input::CreateSession {
            conn: conn.clone(),
            timeout_ms,
            read_only: None,
            done,
        });
        assert!(rx.try_recv().is_err(), "not created before its txn is durable");
        self.pipeline.flush_log();
        rx.try_recv().expect("created once durable").expect("a session")
    }

    fn request(&mut self, conn: &Arc<Conn>, xid: i32, req: Request) {
        conn.pending.fetch_add(1, Ordering::AcqRel);
        self.shared.outstanding.fetch_add(1, Ordering::AcqRel);
        let op = req.opcode();
        let auth = Arc::new(vec![Id { scheme: "ip".into(), id: "127.0.0.1".into() }]);
        self.pipeline.step(Input::Request {
            conn: conn.clone(),
            xid,
            op,
            req,
            auth,
            received: Instant::now(),
        });
    }

    /// Half a tick passes, and the pipeline's timer fires.
    fn half_tick(&mut self) {
        self.clock.advance(TICK_MS / 2);
        self.pipeline.tick();
    }

    fn exists(&self, path: &str) -> bool {
        self.shared.view.read().unwrap().node(path).is_some()
    }
}

fn create(path: &str, ephemeral: bool) -> Request {
    Request::Create(CreateRequest {
        path: path.into(),
        data: Data::from(b"x".to_vec()),
        acl: vec![Acl { perms: 31, id: Id { scheme: "world".into(), id: "anyone".into() } }],
        flags: i32::from(ephemeral),
    })
}

/// Replies (xid, err, zxid) queued to a connection so far.
fn replies(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Out>) -> Vec<(i32, i32, i64)> {
    let mut got = Vec::new();
    while let Ok(o) = rx.try_recv() {
        if let Out::Reply { reply, .. } = o {
            got.push((reply.xid, reply.err.code(), reply.zxid));
        }
    }
    got
}

#[test]
fn a_write_is_answered_only_once_durable_with_the_next_zxid() {
    let tmp = tempfile::tempdir().unwrap();
    let mut h = start(tmp.path());
    let (conn, mut rx) = h.connection(1);
    let (sid, _) = h.new_session(&conn, 30_000);
    assert_ne!(sid, 0);
    h.request(&conn, 1, create("/a", false));
    h.request(&conn, 2, create("/b", false));
    assert!(replies(&mut rx).is_empty(), "nothing is answered before the log is durable");
    assert!(!h.exists("/a"), "nor visible to readers");
    h.pipeline.flush_log();
    // Standalone zxids go on in epoch 0, as ZooKeeper's: the createSession was 1.
    assert_eq!(replies(&mut rx), vec![(1, 0, 2), (2, 0, 3)]);
    assert!(h.exists("/a") && h.exists("/b"));
    let stopped = h.pipeline.finish();
    assert!(stopped.fatal.is_none());
}

#[test]
fn a_silent_session_expires_after_its_timeout_within_a_tick_and_loses_its_ephemerals() {
    let tmp = tempfile::tempdir().unwrap();
    let mut h = start(tmp.path());
    let (quiet, _quiet_rx) = h.connection(1);
    let (talker, _talker_rx) = h.connection(2);
    let (q, _) = h.new_session(&quiet, 4_000);
    let (t, t_touch) = h.new_session(&talker, 4_000);
    h.request(&quiet, 1, create("/eq", true));
    h.request(&talker, 1, create("/et", true));
    h.pipeline.flush_log();
    assert!(h.exists("/eq") && h.exists("/et"));
    // 4 s is two ticks: alive through them, the quiet one expires by the third.
    let mut expired_at = None;
    for step in 1..=8 {
        h.half_tick();
        // The talker's connection hears from its client every half tick.
        t_touch.store(h.clock_now(), Ordering::Relaxed);
        h.pipeline.flush_log();
        if expired_at.is_none() && !h.exists("/eq") {
            expired_at = Some(step * TICK_MS / 2);
        }
    }
    let at = expired_at.expect("the quiet session expired");
    assert!((4_000..=6_000).contains(&at), "expired {at} ms after its last touch");
    assert!(quiet.session_ended.load(Ordering::Acquire), "its connection is told at once");
    assert!(h.exists("/et"), "the session that keeps talking stays");
    let sessions = h.shared.sessions.lock().unwrap().clone();
    assert!(!sessions.contains_key(&q) && sessions.contains_key(&t));
    assert!(h.pipeline.finish().fatal.is_none());
}

#[test]
fn a_request_of_an_expired_session_is_refused_and_never_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let mut h = start(tmp.path());
    let (conn, mut rx) = h.connection(1);
    let (_, _) = h.new_session(&conn, 4_000);
    for _ in 0..6 {
        h.half_tick();
        h.pipeline.flush_log();
    }
    assert!(conn.session_ended.load(Ordering::Acquire));
    let zxid = h.shared.last_zxid.load(Ordering::Acquire);
    // A create that was already on its way when the session expired: refused before it
    // reaches the replica (SESSIONEXPIRED, on a connection the expiry already closed, so
    // nothing can be written to it any more), no txn, nothing created.
    h.request(&conn, 7, create("/late", false));
    h.pipeline.flush_log();
    assert!(replies(&mut rx).iter().all(|r| r.1 == ErrorCode::SessionExpired.code() || r.0 != 7));
    assert!(!h.exists("/late"));
    assert_eq!(h.shared.last_zxid.load(Ordering::Acquire), zxid, "no txn for it");
    assert_eq!(h.shared.outstanding.load(Ordering::Acquire), 0, "it was answered");
    // The same on a live connection of another session that then closes: the request
    // behind its closeSession gets SESSIONEXPIRED, in order.
    let (other, mut other_rx) = h.connection(2);
    h.new_session(&other, 30_000);
    h.request(&other, 1, Request::CloseSession);
    h.request(&other, 2, create("/behind", false));
    h.pipeline.flush_log();
    let got = replies(&mut other_rx);
    assert_eq!(
        got.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>(),
        vec![(1, 0), (2, ErrorCode::SessionExpired.code())]
    );
    assert!(!h.exists("/behind"));
    assert!(h.pipeline.finish().fatal.is_none());
}

/// autopurge: when the interval has passed, the snapshots past snapRetainCount and the log
/// segments none of the kept ones needs are removed — by a thread of the pipeline's own, not
/// on its path — and what is left still recovers every write.
#[test]
fn autopurge_keeps_the_newest_snapshots_and_the_log_they_need() {
    let tmp = tempfile::tempdir().unwrap();
    let opts_of = |o: &mut DbOptions| {
        o.inline_snapshots = true;
        o.snap_count = 10;
        o.snap_retain_count = 3;
    };
    let mut h = start_with(tmp.path(), |s, o| {
        s.purge_interval_ms = 3_600_000;
        opts_of(o);
    });
    let (conn, mut rx) = h.connection(1);
    h.new_session(&conn, 30_000);
    for i in 0..200 {
        h.request(&conn, i + 1, create(&format!("/n{i}"), false));
        h.pipeline.flush_log();
    }
    assert_eq!(replies(&mut rx).len(), 200);
    let count = |d: std::path::PathBuf, prefix: &str| {
        std::fs::read_dir(d)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
            .count()
    };
    let snap_dir = DbOptions::new(tmp.path()).snap_dir();
    let log_dir = DbOptions::new(tmp.path()).log_dir();
    let (snaps, logs) = (count(snap_dir.clone(), "snapshot."), count(log_dir.clone(), "log."));
    assert!(snaps > 3 && logs > 3, "snapshots {snaps} and segments {logs} to purge");
    // Not yet due: nothing goes.
    h.half_tick();
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(count(snap_dir.clone(), "snapshot."), snaps);
    // Due: the purge thread removes them (bounded wait).
    h.clock.advance(3_600_000);
    h.half_tick();
    // Done when the snapshots are down to three, segments went, and nothing is left aside
    // (`*.purge`: renamed, being cut down piece by piece).
    let deadline = Instant::now() + std::time::Duration::from_secs(20);
    let done = || {
        count(snap_dir.clone(), "snapshot.") == 3
            && count(log_dir.clone(), "log.") < logs
            && std::fs::read_dir(&snap_dir)
                .unwrap()
                .chain(std::fs::read_dir(&log_dir).unwrap())
                .flatten()
                .all(|e| !e.file_name().to_string_lossy().ends_with(".purge"))
    };
    while !done() && Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(count(snap_dir.clone(), "snapshot."), 3, "the newest three are kept");
    let logs_after = count(log_dir.clone(), "log.");
    assert!(
        logs_after < logs,
        "segments below the oldest kept snapshot went: {logs} -> {logs_after}"
    );
    // Writes go on after it, and everything recovers from what is left.
    h.request(&conn, 1000, create("/after", false));
    h.pipeline.flush_log();
    assert_eq!(replies(&mut rx).len(), 1);
    let stopped = h.pipeline.finish();
    assert!(stopped.fatal.is_none());
    drop(stopped);
    let mut o = DbOptions::new(tmp.path());
    o.inline_log = true;
    opts_of(&mut o);
    let (_, state, _) = Database::open(o).expect("recovers after the purge");
    for i in 0..200 {
        assert!(state.tree.node(&format!("/n{i}")).is_some(), "/n{i} survived");
    }
    assert!(state.tree.node("/after").is_some());
}
