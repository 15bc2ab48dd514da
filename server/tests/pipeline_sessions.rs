//! The pipeline driven input by input, without sockets: a session's requests that reach the
//! pipeline after its closeSession (or from a connection it no longer owns) are answered
//! SESSIONEXPIRED and never run — no node of theirs exists, before or after a restart.
//! (Over sockets the connection is closed at once when its session ends, so this check is
//! what stands behind that when a request was already on its way.)

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use corral_server::config::Config;
use corral_server::db::{Database, DbOptions};
use corral_server::pipeline::{Conn, Input, Out, Pipeline, Settings, Shared, Stopped};
use corral_server::proto::{Acl, CreateRequest, Data, ErrorCode, Id, Jute, Request};
use corral_server::tree::TreeOptions;

struct Harness {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Input>,
    thread: std::thread::JoinHandle<Stopped>,
}

fn start(dir: &std::path::Path) -> Harness {
    let config = Config::default_standalone();
    let settings = Settings::from_config(&config);
    let shared = Arc::new(Shared::new(settings, config, TreeOptions::default()));
    let (db, state, _) = Database::open(DbOptions::new(dir)).expect("database");
    let (tx, rx) = mpsc::channel();
    let pipeline = Pipeline::new(shared.clone(), db, state, tx.clone()).expect("pipeline");
    let thread = std::thread::spawn(move || pipeline.run(rx));
    Harness { shared, tx, thread }
}

impl Harness {
    fn stop(self) {
        self.tx.send(Input::Shutdown).unwrap();
        let stopped = self.thread.join().expect("the pipeline thread");
        assert!(stopped.fatal.is_none());
    }
}

/// A connection whose frames the test reads.
fn connection(h: &Harness, id: u64) -> (Arc<Conn>, tokio::sync::mpsc::UnboundedReceiver<Out>) {
    let (out_tx, out_rx) = tokio::sync::mpsc::unbounded_channel();
    let remote: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let conn = Arc::new(Conn::new(id, remote, out_tx, 0, 1 << 20));
    h.shared.conns.lock().unwrap().insert(id, conn.clone());
    (conn, out_rx)
}

fn new_session(h: &Harness, conn: &Arc<Conn>) -> i64 {
    let (done, rx) = tokio::sync::oneshot::channel();
    h.tx.send(Input::CreateSession {
        conn: conn.clone(),
        timeout_ms: 30_000,
        read_only: None,
        done,
    })
    .unwrap();
    rx.blocking_recv().unwrap().expect("session created").0
}

fn request(h: &Harness, conn: &Arc<Conn>, xid: i32, req: Request) {
    conn.pending.fetch_add(1, Ordering::AcqRel);
    h.shared.outstanding.fetch_add(1, Ordering::AcqRel);
    let op = req.opcode();
    let auth = Arc::new(vec![Id { scheme: "ip".into(), id: "127.0.0.1".into() }]);
    h.tx.send(Input::Request { conn: conn.clone(), xid, op, req, auth, received: Instant::now() })
        .unwrap();
}

fn create(path: &str, ephemeral: bool) -> Request {
    Request::Create(CreateRequest {
        path: path.into(),
        data: Data::from(b"x".to_vec()),
        acl: vec![Acl { perms: 31, id: Id { scheme: "world".into(), id: "anyone".into() } }],
        flags: i32::from(ephemeral),
    })
}

/// The first `want` replies (xid, err) that reach the connection (waiting up to 5 s).
fn replies(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Out>, want: usize) -> Vec<(i32, i32)> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    while got.len() < want && Instant::now() < deadline {
        match rx.try_recv() {
            Ok(Out::Reply { reply, .. }) => got.push((reply.xid, reply.err.code())),
            Ok(_) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    got
}

fn node_exists(h: &Harness, path: &str) -> bool {
    h.shared.view.read().unwrap().node(path).is_some()
}

#[test]
fn requests_behind_a_close_session_never_run() {
    let tmp = tempfile::tempdir().unwrap();
    let h = start(tmp.path());
    let (conn, mut rx) = connection(&h, 1);
    let sid = new_session(&h, &conn);
    assert_ne!(sid, 0);
    request(&h, &conn, 1, create("/before", true));
    // closeSession, then a create sent right behind it (in the same batch of the pipeline).
    request(&h, &conn, 2, Request::CloseSession);
    request(&h, &conn, 3, create("/late", true));
    request(&h, &conn, 4, create("/late-persistent", false));
    let got = replies(&mut rx, 4);
    assert_eq!(got[..2], [(1, 0), (2, 0)], "{got:?}");
    let expired = ErrorCode::SessionExpired.code();
    assert!(got[2..].iter().all(|(_, err)| *err == expired), "{got:?}");
    assert!(!node_exists(&h, "/before"), "the closed session's ephemeral is gone");
    assert!(!node_exists(&h, "/late") && !node_exists(&h, "/late-persistent"));
    assert!(conn.session_ended.load(Ordering::Acquire));
    h.stop();

    // Nothing of it after a restart either.
    let h = start(tmp.path());
    assert!(!node_exists(&h, "/late") && !node_exists(&h, "/late-persistent"));
    h.stop();
}

#[test]
fn a_connection_that_lost_its_session_cannot_use_it() {
    let tmp = tempfile::tempdir().unwrap();
    let h = start(tmp.path());
    let (a, mut rx_a) = connection(&h, 1);
    let sid = new_session(&h, &a);
    // The session moves to connection 2 (a reconnect with the right password).
    let (b, mut rx_b) = connection(&h, 2);
    let passwd = {
        // The password the server gave: the first frame on connection a.
        let Ok(Out::Frame(f)) = rx_a.try_recv() else { panic!("a ConnectResponse") };
        let resp = corral_server::proto::ConnectResponse::decode(&f[4..]).unwrap();
        resp.passwd.as_slice().to_vec()
    };
    let (done, done_rx) = tokio::sync::oneshot::channel();
    h.tx.send(Input::Reconnect {
        conn: b.clone(),
        session_id: sid,
        passwd,
        timeout_ms: 30_000,
        read_only: None,
        done,
    })
    .unwrap();
    assert!(done_rx.blocking_recv().unwrap().is_some(), "reconnected");
    // A request still arriving on the old connection does not run.
    request(&h, &a, 7, create("/from-old", false));
    let got = replies(&mut rx_a, 1);
    assert_eq!(got, vec![(7, ErrorCode::SessionExpired.code())]);
    assert!(!node_exists(&h, "/from-old"));
    // The new connection works.
    request(&h, &b, 1, create("/from-new", false));
    assert_eq!(replies(&mut rx_b, 1), vec![(1, 0)]);
    assert!(node_exists(&h, "/from-new"));
    h.stop();
}
