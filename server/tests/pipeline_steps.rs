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
    let config = Config::default_standalone();
    let settings = Settings::from_config(&config);
    assert_eq!(settings.tick_ms, TICK_MS);
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let shared =
        Arc::new(Shared::with_clock(settings, config, TreeOptions::default(), clock.clone()));
    let mut opts = DbOptions::new(dir);
    opts.inline_log = true;
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
