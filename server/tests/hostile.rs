//! Hostile clients: input that is well formed but built to hurt the server. Each test drives
//! the server over raw sockets (jute frames built with `corral_server::proto`) and checks the
//! contract of `server/src/limits.rs` and its neighbours:
//!
//! 1. a write whose txn would exceed `txn_bytes_max` (jute.maxbuffer + extrasize) is refused
//!    with MARSHALLINGERROR (-5), the connection carries on, and a restart recovers everything
//!    acknowledged;
//! 2. the largest txn the server accepts is one the log can hold: it survives a restart byte
//!    for byte, and a txn 64 bytes larger is refused;
//! 3. a session owning ephemerals whose paths add up to far more than `txn_bytes_max` can be
//!    closed (closeSession) or expire without breaking the log or the server;
//! 4. auth packets are capped in size (`auth_bytes_max`) and in distinct ids per connection
//!    (`auth_ids_max`, the ip id included): AUTHFAILED (-115), then the connection is closed;
//! 5. a client that pipelines thousands of large reads and never reads its socket costs bounded
//!    memory (its requests stop being read at `client_queue_bytes_max`) and is disconnected
//!    after `client_queue_stall_ms`, while a healthy session keeps being answered (this test
//!    measures RSS, so it runs in a child process of its own);
//! 6. a connection must complete its ConnectRequest within `handshake_ms`;
//! 7. `cnxns_max` (maxCnxns) caps connections in total;
//! 8. an expired session's connection is closed promptly, and nothing it sends after expiry
//!    runs (no orphaned ephemerals, also after a restart);
//! 9. session passwords are not ZooKeeper's predictable `Random(id ^ 0xB3415C00)` ones, yet
//!    reconnecting with the real password works (also after a restart);
//! 10. `exists` checks READ permission;
//! 11. security settings Corral cannot honour (enforce.auth without a provider, foreign auth providers)
//!     refuse to start instead of being ignored;
//! 12. a seeded random mix of valid-shaped hostile requests only ever gets error codes that
//!     ZooKeeper defines, replies within jute.maxbuffer, and leaves a server that still serves
//!     and restarts.
//!
//! Everything listens on 127.0.0.1 only, and every loop is bounded in count and in time.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use corral_server::config::Config;
use corral_server::limits::Limits;
use corral_server::pipeline::Settings;
use corral_server::proto::{
    Acl, AddWatchRequest, AuthPacket, CheckVersionRequest, ConnectRequest, ConnectResponse,
    CreateRequest, CreateTxn, Data, DeleteRequest, ErrorCode, GetEphemeralsRequest, Jute, MultiOp,
    OpCode, PathRequest, PathWatchRequest, ReplyHeader, Request, Response, SetAclRequest,
    SetDataRequest, WatcherEvent, WatchesRequest,
};
use corral_server::server::{RunningServer, ServerOptions};
use corral_server::session::ids::session_password;
use corral_server::tree::acl::digest_of_auth;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// jute.maxbuffer of every test server: small, so that limit-sized requests are quick.
const MAX_BUFFER: usize = 64 * 1024;
/// tickTime of every test server.
const TICK_MS: u64 = 200;
/// MARSHALLINGERROR.
const MARSHALLING_ERROR: i32 = -5;
/// NONODE.
const NO_NODE: i32 = -101;
/// NOAUTH.
const NO_AUTH: i32 = -102;
/// SESSIONEXPIRED.
const SESSION_EXPIRED: i32 = -112;
/// AUTHFAILED.
const AUTH_FAILED: i32 = -115;
/// What a logged txn entry holds beyond its record: the TxnHeader (8 + 4 + 8 + 8 + 4 bytes) and
/// the TxnDigest (4 + 8). `txn_bytes_max` bounds header + record + digest.
const TXN_ENTRY_OVERHEAD_BYTES: usize = 32 + 12;
/// Ephemeral create flag.
const EPHEMERAL: i32 = 1;
/// The xids ZooKeeper's clients use for pings and auth packets.
const PING_XID: i32 = -2;
const AUTH_XID: i32 = -4;

// ---------------------------------------------------------------------------------------------
// Servers

/// How a test's server is configured. Kept so a restart on the same directory runs with exactly
/// the same configuration.
#[derive(Clone)]
struct Setup {
    config: Config,
    settings: Settings,
}

impl Setup {
    /// jute.maxbuffer 64 KiB, tickTime 200 ms, session timeouts 1 s to 40 s, no per-address
    /// connection cap; `edit` changes the zoo.cfg values before the settings (and so the
    /// limits, which `Limits::from_config` derives) are computed from them.
    fn new(edit: impl FnOnce(&mut Config)) -> Setup {
        let mut config = Config::default_standalone();
        config.jute_max_buffer = MAX_BUFFER as u32;
        config.tick_time_ms = TICK_MS as u32;
        config.min_session_timeout_ms = 1_000;
        config.max_session_timeout_ms = 40_000;
        // Smaller log preallocation: less disk traffic, same semantics.
        config.pre_alloc_size_kb = 4096;
        edit(&mut config);
        let mut settings = Settings::from_config(&config);
        settings.limits.cnxns_per_address_max = 0;
        Setup { config, settings }
    }

    /// Changes the limits the server will run with.
    fn limits(mut self, edit: impl FnOnce(&mut Limits)) -> Setup {
        edit(&mut self.settings.limits);
        self
    }

    /// Starts a server on `dir` listening on 127.0.0.1 (an ephemeral port), built the way
    /// `corral` builds one from its zoo.cfg (`ServerOptions::from_config`).
    fn start(&self, dir: &Path) -> RunningServer {
        let mut config = self.config.clone();
        config.data_dir = dir.to_path_buf();
        config.data_log_dir = dir.to_path_buf();
        let mut opts = ServerOptions::from_config(&config).expect("server options");
        opts.bind = "127.0.0.1:0".parse().unwrap();
        opts.settings = self.settings.clone();
        RunningServer::start(opts).expect("server starts")
    }
}

/// Resident set size of this process, in bytes (the server runs in-process).
fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS line");
    let kb: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

// ---------------------------------------------------------------------------------------------
// Raw sockets

fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

/// The connection is gone (clean EOF, reset, ...).
fn is_closed(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::UnexpectedEof
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
    )
}

/// A read timed out.
fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// One frame: `Ok(Some(body))`, `Ok(None)` once the server closed the connection, `Err` on a
/// read timeout (or another error).
fn read_frame(s: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match s.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if is_closed(&e) => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = i32::from_be_bytes(len);
    assert!((0..=(64 << 20)).contains(&len), "the server sent a frame of length {len}");
    let mut b = vec![0u8; len as usize];
    match s.read_exact(&mut b) {
        Ok(()) => Ok(Some(b)),
        Err(e) if is_closed(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads and discards until the server closes the connection; the time from `since` at which
/// it did, or `None` if it was still open at `since + within`.
fn closed_within(s: &mut TcpStream, since: Instant, within: Duration) -> Option<Duration> {
    let deadline = since + within;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        s.set_read_timeout(Some(left.min(Duration::from_millis(100)))).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return Some(since.elapsed()),
            Ok(_) => continue,
            Err(e) if is_closed(&e) => return Some(since.elapsed()),
            Err(e) if is_timeout(&e) => continue,
            Err(e) => panic!("reading: {e}"),
        }
    }
}

fn connect_request(timeout_ms: i32, session_id: i64, passwd: &[u8]) -> ConnectRequest {
    ConnectRequest {
        protocol_version: 0,
        last_zxid_seen: 0,
        time_out: timeout_ms,
        session_id,
        passwd: Data::from(passwd.to_vec()),
        read_only: Some(false),
    }
}

/// What became of a ConnectRequest.
enum Handshake {
    /// The server answered (possibly refusing: session id 0 / timeout 0).
    Answered(TcpStream, ConnectResponse),
    /// The server closed the connection without a ConnectResponse.
    Closed(Duration),
    /// Neither within the read timeout.
    Silent,
}

fn handshake(addr: SocketAddr, req: &ConnectRequest) -> Handshake {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).expect("connect to 127.0.0.1");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    if let Err(e) = s.write_all(&frame(&req.encode())) {
        assert!(is_closed(&e), "writing the ConnectRequest: {e}");
        return Handshake::Closed(started.elapsed());
    }
    match read_frame(&mut s) {
        Ok(Some(b)) => {
            let resp = ConnectResponse::decode(&b).expect("a ConnectResponse");
            Handshake::Answered(s, resp)
        }
        Ok(None) => Handshake::Closed(started.elapsed()),
        Err(_) => Handshake::Silent,
    }
}

/// A reply to one request.
#[derive(Debug)]
struct Reply {
    xid: i32,
    err: i32,
    body: Vec<u8>,
}

/// A raw session: a ConnectRequest, then requests as jute frames.
struct Raw {
    s: TcpStream,
    xid: i32,
    session_id: i64,
    passwd: Vec<u8>,
    timeout_ms: i32,
    /// The longest frame the server sent on this connection (without its length prefix).
    max_frame: usize,
}

impl Raw {
    fn connect(addr: SocketAddr) -> Raw {
        Raw::connect_timeout(addr, 30_000)
    }

    /// A new session asking for `timeout_ms`.
    fn connect_timeout(addr: SocketAddr, timeout_ms: i32) -> Raw {
        match handshake(addr, &connect_request(timeout_ms, 0, &[0u8; 16])) {
            Handshake::Answered(s, resp) => {
                assert_ne!(resp.session_id, 0, "a new session gets an id");
                assert!(resp.time_out > 0, "a new session gets a timeout");
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                Raw {
                    s,
                    xid: 0,
                    session_id: resp.session_id,
                    passwd: resp.passwd.as_slice().to_vec(),
                    timeout_ms: resp.time_out,
                    max_frame: 0,
                }
            }
            Handshake::Closed(_) => panic!("the server closed a new connection at the handshake"),
            Handshake::Silent => panic!("no ConnectResponse within 5 s"),
        }
    }

    /// Sends `req` with the next xid; false if the connection is already gone.
    fn send(&mut self, req: &Request) -> (i32, bool) {
        self.xid += 1;
        let xid = self.xid;
        (xid, self.send_xid(xid, req))
    }

    fn send_xid(&mut self, xid: i32, req: &Request) -> bool {
        match self.s.write_all(&req.encode_frame(xid)) {
            Ok(()) => true,
            Err(e) if is_closed(&e) => false,
            Err(e) => panic!("writing a request: {e}"),
        }
    }

    /// The next reply, watch notifications skipped; `None` once the server closed the
    /// connection. Panics if nothing arrives within the read timeout.
    fn recv(&mut self) -> Option<Reply> {
        loop {
            let b = match read_frame(&mut self.s) {
                Ok(Some(b)) => b,
                Ok(None) => return None,
                Err(e) => panic!("no reply within the read timeout: {e}"),
            };
            self.max_frame = self.max_frame.max(b.len());
            let h = ReplyHeader::decode(&b).expect("a ReplyHeader");
            if h.xid == -1 {
                WatcherEvent::decode(&b[16..]).expect("a notification carries a WatcherEvent");
                continue;
            }
            return Some(Reply { xid: h.xid, err: h.err, body: b[16..].to_vec() });
        }
    }

    /// Sends and waits for the reply (checking its xid); `None` if the server closed instead.
    fn call(&mut self, req: &Request) -> Option<Reply> {
        let (xid, _) = self.send(req);
        let r = self.recv()?;
        assert_eq!(r.xid, xid, "replies come in request order");
        Some(r)
    }

    /// The reply's err; the connection must stay open.
    fn err(&mut self, req: &Request) -> i32 {
        let op = req.opcode();
        match self.call(req) {
            Some(r) => r.err,
            None => panic!("the server closed the connection instead of answering {op:?}"),
        }
    }

    /// An auth packet; the reply's err, or `None` if the server closed without one.
    fn auth(&mut self, scheme: &str, credentials: &[u8]) -> Option<i32> {
        let req = Request::Auth(AuthPacket {
            auth_type: 0,
            scheme: scheme.into(),
            auth: Data::from(credentials.to_vec()),
        });
        self.send_xid(AUTH_XID, &req);
        let r = self.recv()?;
        assert_eq!(r.xid, AUTH_XID);
        Some(r.err)
    }

    fn create(&mut self, path: &str, data: &[u8], acl: Vec<Acl>, flags: i32) -> i32 {
        self.err(&create_req(path, data, acl, flags))
    }

    fn exists(&mut self, path: &str) -> i32 {
        self.err(&Request::Exists(PathWatchRequest { path: path.into(), watch: false }))
    }

    /// getData: err and, when 0, the data.
    fn get_data(&mut self, path: &str) -> (i32, Vec<u8>) {
        let r = self
            .call(&Request::GetData(PathWatchRequest { path: path.into(), watch: false }))
            .expect("getData answered");
        if r.err != 0 {
            return (r.err, Vec::new());
        }
        match Response::decode(OpCode::GetData, &r.body, usize::MAX).expect("GetDataResponse") {
            Response::GetData(d) => (0, d.data.as_slice().to_vec()),
            other => panic!("unexpected getData body {other:?}"),
        }
    }
}

fn create_req(path: &str, data: &[u8], acl: Vec<Acl>, flags: i32) -> Request {
    Request::Create(CreateRequest {
        path: path.into(),
        data: Data::from(data.to_vec()),
        acl,
        flags,
    })
}

fn world() -> Vec<Acl> {
    Acl::open_unsafe()
}

/// Polls `exists(path)` from `r` until it answers NONODE; false if it still exists at the
/// deadline.
fn wait_gone(r: &mut Raw, path: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if r.exists(path) == NO_NODE {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Asserts that getData of `path` answers 0 with exactly `expected` (without printing
/// kilobytes of data on failure).
fn assert_data(r: &mut Raw, path: &str, expected: &[u8], what: &str) {
    let (err, got) = r.get_data(path);
    assert_eq!(err, 0, "{what}: getData");
    assert!(
        got == expected,
        "{what}: {} bytes read back, {} written, first difference at {:?}",
        got.len(),
        expected.len(),
        got.iter().zip(expected).position(|(a, b)| a != b)
    );
}

/// Random but reproducible bytes.
fn pattern(seed: u64, n: usize) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut v = vec![0u8; n];
    rng.fill(&mut v[..]);
    v
}

// ---------------------------------------------------------------------------------------------
// 1. Txn too large

/// A create whose txn would exceed `txn_bytes_max` gets MARSHALLINGERROR and is not applied;
/// so does a setACL; the same connection carries on, other sessions carry on, and a restart
/// recovers exactly what was acknowledged.
#[test]
fn txn_too_large_is_refused_and_the_connection_carries_on() {
    let tmp = tempfile::tempdir().unwrap();
    // Txn limit = 64 KiB + 4 KiB: a request frame (at most 64 KiB) can only exceed it when the
    // server adds to it, here by expanding an `auth` ACL entry into the session's digest ids.
    let setup = Setup::new(|c| c.jute_max_buffer_extrasize = Some(4096));
    let limits = setup.settings.limits.clone();
    assert_eq!(limits.request_bytes_max, MAX_BUFFER);
    assert_eq!(limits.txn_bytes_max, MAX_BUFFER + 4096);
    assert_eq!(limits.auth_ids_max, 16);
    let server = setup.start(tmp.path());
    let addr = server.addr();

    // 15 digest ids (with the ip id: auth_ids_max) with user names of ~1000 bytes, each packet
    // under auth_bytes_max.
    let creds: Vec<String> = (0..15).map(|i| format!("{}{i:02}:pw", "u".repeat(990))).collect();
    let mut a = Raw::connect(addr);
    for c in &creds {
        assert!(c.len() <= limits.auth_bytes_max);
        assert_eq!(a.auth("digest", c.as_bytes()), Some(0), "digest auth within the caps");
    }

    // Data near jute.maxbuffer, `auth` entries with different perms (merged per id into ~15 KiB
    // of digest entries): the request fits a frame, the txn does not fit txn_bytes_max.
    let auth_acl: Vec<Acl> =
        [1, 2, 4, 8, 16, 31].iter().map(|&p| Acl::new(p, "auth", "")).collect();
    let big = pattern(1, MAX_BUFFER - 512);
    let req = create_req("/big", &big, auth_acl.clone(), 0);
    assert!(req.encode_frame(0).len() - 4 <= limits.request_bytes_max, "the request frame fits");
    assert_eq!(a.err(&req), MARSHALLING_ERROR, "a create whose txn is too large");
    // The same connection still works.
    assert_eq!(a.create("/small", b"s", world(), 0), 0, "the connection carries on");
    assert_eq!(a.exists("/big"), NO_NODE, "the refused create was not applied");
    // Control: the same data without the ACL expansion is within the txn limit.
    assert_eq!(a.create("/big-world", &big, world(), 0), 0);
    // `auth` ACLs themselves are fine when the txn fits.
    assert_eq!(a.create("/small-auth", b"a", auth_acl.clone(), 0), 0);

    // setACL: a node with a ~56 KiB path is fine; giving it the expanded `auth` ACL makes the
    // setACL txn (path + ~15 KiB of ids) too large.
    let long = format!("/{}", "p".repeat(56_000));
    assert_eq!(a.create(&long, b"", world(), 0), 0, "a long path within the limits");
    let set_acl = Request::SetAcl(SetAclRequest { path: long.clone(), acl: auth_acl, version: -1 });
    assert_eq!(a.err(&set_acl), MARSHALLING_ERROR, "a setACL whose txn is too large");
    let acl = a.call(&Request::GetAcl(PathRequest { path: long.clone() })).expect("getACL");
    assert_eq!(acl.err, 0);
    match Response::decode(OpCode::GetAcl, &acl.body, usize::MAX).unwrap() {
        Response::GetAcl(r) => assert_eq!(r.acl, world(), "the refused setACL was not applied"),
        other => panic!("unexpected getACL body {other:?}"),
    }
    assert_eq!(a.create("/after-setacl", b"", world(), 0), 0, "the connection carries on");

    // A multi whose txn is too large (its ops fit a frame together) changes nothing either.
    let half = pattern(2, 30_000);
    let multi = Request::Multi(vec![
        MultiOp::Create(CreateRequest {
            path: "/m1".into(),
            data: Data::from(half.clone()),
            acl: vec![Acl::new(31, "auth", "")],
            flags: 0,
        }),
        MultiOp::SetData(SetDataRequest {
            path: "/big-world".into(),
            data: Data::from(half),
            version: -1,
        }),
    ]);
    assert!(multi.encode_frame(0).len() - 4 <= limits.request_bytes_max);
    let r = a.call(&multi).expect("the multi is answered");
    assert_ne!(r.err, 0, "a multi whose txn is too large fails (got {r:?})");
    assert!(ErrorCode::from_code(r.err).is_some());
    assert_eq!(a.exists("/m1"), NO_NODE, "the refused multi was not applied");
    assert_data(&mut a, "/big-world", &big, "the refused multi was not applied");
    assert_eq!(a.create("/after-multi", b"", world(), 0), 0, "the connection carries on");

    // Others carry on.
    let mut b = Raw::connect(addr);
    assert_eq!(b.create("/b", b"b", world(), 0), 0);

    // Restart: everything acknowledged is there, nothing refused is.
    drop((a, b));
    server.shutdown().unwrap();
    let server = setup.start(tmp.path());
    let mut c = Raw::connect(server.addr());
    assert_eq!(c.auth("digest", creds[0].as_bytes()), Some(0));
    for p in ["/small", "/small-auth", "/after-setacl", "/after-multi", "/b", long.as_str()] {
        assert_eq!(c.exists(p), 0, "{} survives a restart", &p[..p.len().min(40)]);
    }
    assert_eq!(c.exists("/big"), NO_NODE);
    assert_eq!(c.exists("/m1"), NO_NODE);
    assert_data(&mut c, "/big-world", &big, "after the restart");
    server.shutdown().unwrap();
}

// ---------------------------------------------------------------------------------------------
// 2. The largest accepted txn

/// With jute.maxbuffer.extrasize 0 (txn limit = request limit), creates of decreasing size
/// find the largest accepted txn: it is within `txn_bytes_max` as the log counts it (header,
/// record, digest), one 64 bytes larger was refused with MARSHALLINGERROR, and the accepted
/// data is there byte for byte after a restart.
#[test]
fn largest_accepted_txn_survives_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let setup = Setup::new(|c| c.jute_max_buffer_extrasize = Some(0));
    let limits = setup.settings.limits.clone();
    assert_eq!(limits.request_bytes_max, MAX_BUFFER);
    assert_eq!(limits.txn_bytes_max, MAX_BUFFER);
    let server = setup.start(tmp.path());
    let mut a = Raw::connect(server.addr());

    // One digest id of ~1 KiB: an `auth` ACL entry (24 bytes in the request) becomes ~1 KiB in
    // the txn, so a txn over the limit still comes from a request frame within it, 64 bytes
    // more included.
    let cred = format!("{}:pw", "w".repeat(1000));
    let digest = digest_of_auth(&cred);
    assert_eq!(a.auth("digest", cred.as_bytes()), Some(0));
    let txn_len = |n: usize| {
        let txn = CreateTxn {
            path: "/max".into(),
            data: Data::from(vec![0u8; n]),
            acl: vec![Acl::new(31, "digest", &digest)],
            ephemeral: false,
            parent_c_version: 0,
        };
        txn.encode().len() + TXN_ENTRY_OVERHEAD_BYTES
    };
    let data = pattern(3, MAX_BUFFER);
    let req = |n: usize| create_req("/max", &data[..n], vec![Acl::new(31, "auth", "")], 0);
    // The largest data whose request frame fits.
    let frame_overhead = req(0).encode_frame(0).len() - 4;
    let largest_frame = limits.request_bytes_max - frame_overhead;
    assert!(txn_len(largest_frame) > limits.txn_bytes_max, "the search starts over the limit");

    let mut n = largest_frame;
    let mut refused: Vec<usize> = Vec::new();
    let mut accepted = None;
    for _ in 0..64 {
        let err = a.err(&req(n));
        if err == 0 {
            accepted = Some(n);
            break;
        }
        assert_eq!(
            err,
            MARSHALLING_ERROR,
            "a create with {n} data bytes (txn {} bytes) is refused with MARSHALLINGERROR",
            txn_len(n)
        );
        refused.push(n);
        n -= 64;
    }
    let n = accepted.expect("some create within 4 KiB of the limit is accepted");
    assert_eq!(refused.last(), Some(&(n + 64)), "one 64 bytes larger was refused");
    assert!(
        txn_len(n) <= limits.txn_bytes_max,
        "accepted a txn of {} bytes, over txn_bytes_max {}",
        txn_len(n),
        limits.txn_bytes_max
    );
    assert!(
        txn_len(n + 64) > limits.txn_bytes_max,
        "refused a txn of {} bytes, within txn_bytes_max {}",
        txn_len(n + 64),
        limits.txn_bytes_max
    );
    assert_data(&mut a, "/max", &data[..n], "the largest accepted create");

    drop(a);
    server.shutdown().unwrap();
    let server = setup.start(tmp.path());
    let mut b = Raw::connect(server.addr());
    assert_eq!(b.auth("digest", cred.as_bytes()), Some(0));
    assert_data(&mut b, "/max", &data[..n], "the largest accepted txn after a restart");
    server.shutdown().unwrap();
}

// ---------------------------------------------------------------------------------------------
// 3. Ephemerals whose paths add up to more than a txn

/// 40 ephemerals with names of ~jute.maxbuffer/2 bytes.
fn huge_ephemeral_paths() -> Vec<String> {
    (0..40).map(|i| format!("/e{i:02}{}", "n".repeat(MAX_BUFFER / 2 - 100))).collect()
}

/// closeSession of a session whose ephemerals' paths together are far over `txn_bytes_max`:
/// answered OK, the nodes are gone, the server lives, a restart works.
#[test]
fn close_session_with_huge_ephemerals() {
    let tmp = tempfile::tempdir().unwrap();
    let setup = Setup::new(|_| {});
    let limits = setup.settings.limits.clone();
    let server = setup.start(tmp.path());
    let addr = server.addr();
    let paths = huge_ephemeral_paths();
    let total: usize = paths.iter().map(String::len).sum();
    assert!(total > 8 * limits.txn_bytes_max, "the paths are far over a txn ({total} bytes)");

    let mut a = Raw::connect(addr);
    for p in &paths {
        assert_eq!(a.create(p, b"", world(), EPHEMERAL), 0, "a huge ephemeral");
    }
    let mut b = Raw::connect(addr);
    assert_eq!(b.exists(&paths[0]), 0);

    let r = a.call(&Request::CloseSession).expect("closeSession is answered");
    assert_eq!(r.err, 0, "closeSession succeeds");
    assert!(
        closed_within(&mut a.s, Instant::now(), Duration::from_secs(5)).is_some(),
        "the connection closes after closeSession"
    );
    for p in &paths {
        assert!(wait_gone(&mut b, p, Duration::from_secs(2)), "the session's ephemerals are gone");
    }
    assert_eq!(b.create("/alive", b"", world(), 0), 0, "the server is alive");

    drop(b);
    server.shutdown().unwrap();
    let server = setup.start(tmp.path());
    let mut c = Raw::connect(server.addr());
    for p in &paths {
        assert_eq!(c.exists(p), NO_NODE, "closed ephemerals stay gone after a restart");
    }
    assert_eq!(c.exists("/alive"), 0);
    server.shutdown().unwrap();
}

/// The same session expiring instead (it stops sending, its socket stays open): the server
/// stays alive, the nodes disappear, a restart works.
#[test]
fn expire_session_with_huge_ephemerals() {
    let tmp = tempfile::tempdir().unwrap();
    let setup = Setup::new(|_| {});
    let server = setup.start(tmp.path());
    let addr = server.addr();
    let paths = huge_ephemeral_paths();

    let mut a = Raw::connect_timeout(addr, 4000);
    assert_eq!(a.timeout_ms, 4000);
    for p in &paths {
        assert_eq!(a.create(p, b"", world(), EPHEMERAL), 0);
    }
    let silent_since = Instant::now();
    let mut b = Raw::connect(addr);
    assert_eq!(b.exists(&paths[0]), 0);
    // a sends nothing more; its timeout (4 s) plus a margin.
    assert!(
        wait_gone(&mut b, &paths[0], Duration::from_secs(10)),
        "the expired session's ephemerals disappear"
    );
    assert!(silent_since.elapsed() >= Duration::from_millis(3800), "not before the timeout");
    for p in &paths {
        assert!(wait_gone(&mut b, p, Duration::from_secs(2)));
    }
    assert_eq!(b.create("/alive", b"", world(), 0), 0, "the server is alive");

    drop((a, b));
    server.shutdown().unwrap();
    let server = setup.start(tmp.path());
    let mut c = Raw::connect(server.addr());
    for p in &paths {
        assert_eq!(c.exists(p), NO_NODE, "expired ephemerals stay gone after a restart");
    }
    assert_eq!(c.exists("/alive"), 0);
    server.shutdown().unwrap();
}

// ---------------------------------------------------------------------------------------------
// 4. Auth caps

/// An auth packet over `auth_bytes_max`, or one more distinct id than `auth_ids_max` (the ip id
/// counts), gets AUTHFAILED and the connection is closed; the server keeps serving others.
#[test]
fn auth_packets_are_capped() {
    let tmp = tempfile::tempdir().unwrap();
    let setup = Setup::new(|_| {});
    assert_eq!(setup.settings.limits.auth_ids_max, 16, "the documented default");
    assert_eq!(setup.settings.limits.auth_bytes_max, 1024, "the documented default");
    let server = setup.start(tmp.path());
    let addr = server.addr();
    let mut healthy = Raw::connect(addr);
    assert_eq!(healthy.create("/h", b"", world(), 0), 0);

    // Credentials of exactly auth_bytes_max are fine...
    let mut r = Raw::connect(addr);
    let at_limit = format!("{}:pw", "y".repeat(1024 - 3));
    assert_eq!(at_limit.len(), 1024);
    assert_eq!(r.auth("digest", at_limit.as_bytes()), Some(0));
    assert_eq!(r.exists("/h"), 0);
    // ...one byte more is not.
    let mut r = Raw::connect(addr);
    let over = format!("{}:pw", "x".repeat(1024 - 2));
    assert_eq!(r.auth("digest", over.as_bytes()), Some(AUTH_FAILED), "credentials too long");
    assert!(closed_within(&mut r.s, Instant::now(), Duration::from_secs(5)).is_some());
    // Far more, too.
    let mut r = Raw::connect(addr);
    let huge = format!("{}:pw", "x".repeat(60_000));
    assert_eq!(r.auth("digest", huge.as_bytes()), Some(AUTH_FAILED), "credentials too long");
    assert!(closed_within(&mut r.s, Instant::now(), Duration::from_secs(5)).is_some());

    // 15 distinct digest ids + the ip id = 16 ids: fine. Re-adding ids the connection already
    // holds adds no id. The 16th distinct digest id would make 17: AUTHFAILED, closed.
    let mut r = Raw::connect(addr);
    for i in 0..15 {
        assert_eq!(r.auth("digest", format!("user{i}:pw").as_bytes()), Some(0), "id {i}");
    }
    assert_eq!(r.auth("digest", b"user0:pw"), Some(0), "an id already held is no new id");
    assert_eq!(r.auth("ip", b""), Some(0), "the ip id is already held");
    assert_eq!(r.exists("/h"), 0);
    assert_eq!(r.auth("digest", b"user15:pw"), Some(AUTH_FAILED), "one id over auth_ids_max");
    assert!(closed_within(&mut r.s, Instant::now(), Duration::from_secs(5)).is_some());

    assert_eq!(healthy.create("/h2", b"", world(), 0), 0, "others carry on");
    server.shutdown().unwrap();

    // The caps are the configured ones, not constants.
    let tmp = tempfile::tempdir().unwrap();
    let setup = Setup::new(|_| {}).limits(|l| {
        l.auth_ids_max = 3;
        l.auth_bytes_max = 64;
    });
    let server = setup.start(tmp.path());
    let addr = server.addr();
    let mut r = Raw::connect(addr);
    assert_eq!(r.auth("digest", format!("{}:p", "z".repeat(62)).as_bytes()), Some(0));
    assert_eq!(r.auth("digest", b"second:pw"), Some(0), "ip + 2 digest ids = 3");
    assert_eq!(r.auth("digest", b"third:pw"), Some(AUTH_FAILED), "4 ids > auth_ids_max 3");
    assert!(closed_within(&mut r.s, Instant::now(), Duration::from_secs(5)).is_some());
    let mut r = Raw::connect(addr);
    assert_eq!(r.auth("digest", format!("{}:p", "z".repeat(63)).as_bytes()), Some(AUTH_FAILED));
    assert!(closed_within(&mut r.s, Instant::now(), Duration::from_secs(5)).is_some());
    let mut h = Raw::connect(addr);
    assert_eq!(h.create("/h3", b"", world(), 0), 0, "others carry on");
    server.shutdown().unwrap();
}

// ---------------------------------------------------------------------------------------------
// 5. Backpressure

/// Set in the environment of the child process that runs [`backpressure_child`].
const BACKPRESSURE_CHILD: &str = "CORRAL_HOSTILE_BACKPRESSURE_CHILD";

/// Runs [`backpressure_child`] in a process of its own, so that its RSS measurements see only
/// its own server (the test harness runs other tests' servers on threads of this process).
#[test]
fn backpressure_bounds_memory_and_closes_stalled_readers() {
    let exe = std::env::current_exe().expect("the test binary");
    let out = Command::new(exe)
        .args(["backpressure_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(BACKPRESSURE_CHILD, "1")
        .output()
        .expect("running the child test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "backpressure_child failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "backpressure_child did not run:\n{stdout}\n{stderr}");
}

/// One client pipelines 3000 getData of a 60 KiB node (180 MiB of replies) and never reads:
/// the process's RSS grows by far less than that, the connection is closed after
/// `client_queue_stall_ms` without having been sent everything, and a healthy session is
/// answered throughout.
#[test]
#[ignore = "run in a child process by backpressure_bounds_memory_and_closes_stalled_readers"]
fn backpressure_child() {
    if std::env::var_os(BACKPRESSURE_CHILD).is_none() {
        return;
    }
    const REQUESTS: usize = 3000;
    let tmp = tempfile::tempdir().unwrap();
    let setup = Setup::new(|_| {}).limits(|l| {
        l.client_queue_bytes_max = 1 << 20;
        l.client_queue_stall_ms = 1000;
    });
    let queue_max = setup.settings.limits.client_queue_bytes_max;
    let server = setup.start(tmp.path());
    let addr = server.addr();

    let data = pattern(5, 60 * 1024);
    let mut w = Raw::connect(addr);
    assert_eq!(w.create("/big", &data, world(), 0), 0);
    assert_eq!(w.create("/small", b"s", world(), 0), 0);
    let mut healthy = Raw::connect(addr);
    assert_eq!(healthy.get_data("/small"), (0, b"s".to_vec()));
    let mut hog = Raw::connect(addr);
    std::thread::sleep(Duration::from_millis(300));
    let base = rss_bytes();

    // 3000 getData requests in one write; their replies are never read (until the end).
    let mut batch = Vec::new();
    for xid in 1..=REQUESTS as i32 {
        let req = Request::GetData(PathWatchRequest { path: "/big".into(), watch: false });
        batch.extend_from_slice(&req.encode_frame(xid));
    }
    hog.s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = hog.s.write_all(&batch);
    let started = Instant::now();

    // For 4 s: the healthy session is answered promptly, and RSS stays bounded.
    let mut peak = rss_bytes();
    let mut rounds = 0;
    while started.elapsed() < Duration::from_secs(4) && rounds < 100 {
        rounds += 1;
        let t = Instant::now();
        assert_eq!(healthy.get_data("/small"), (0, b"s".to_vec()));
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "the healthy session waited {:?}",
            t.elapsed()
        );
        peak = peak.max(rss_bytes());
        std::thread::sleep(Duration::from_millis(100));
    }
    let bound = (64 << 20) + 4 * queue_max;
    let grown = peak.saturating_sub(base);
    eprintln!("RSS grew by {} KiB (bound {} KiB)", grown >> 10, bound >> 10);
    assert!(
        grown < bound,
        "RSS grew by {} MiB while a client did not read (bound {} MiB, unbounded: {} MiB)",
        grown >> 20,
        bound >> 20,
        (REQUESTS * data.len()) >> 20
    );

    // The hog was disconnected: what reached its socket buffers reads back, then the end.
    hog.s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let drain_deadline = Instant::now() + Duration::from_secs(10);
    let mut replies = 0;
    let closed = loop {
        if Instant::now() >= drain_deadline {
            break false;
        }
        match read_frame(&mut hog.s) {
            Ok(Some(_)) => replies += 1,
            Ok(None) => break true,
            Err(_) => break false,
        }
    };
    eprintln!("the hog read {replies} replies before the end");
    assert!(closed, "a connection whose client reads nothing is closed after the stall limit");
    assert!(replies < REQUESTS, "the stalled connection was closed, not served to the end");

    assert_eq!(healthy.get_data("/small"), (0, b"s".to_vec()), "the healthy session lives");
    server.shutdown().unwrap();
}

// ---------------------------------------------------------------------------------------------
// 6. Handshake timeout

/// With handshake_ms 500: a connection that sends only the length of a ConnectRequest, one that
/// sends nothing, and one that trickles its ConnectRequest a byte at a time are all closed
/// within ~2 s; a client that completes its handshake in time, and an established session that
/// is quiet for longer than handshake_ms, are not affected.
#[test]
fn handshake_must_complete_in_time() {
    let tmp = tempfile::tempdir().unwrap();
    let setup = Setup::new(|_| {}).limits(|l| l.handshake_ms = 500);
    let server = setup.start(tmp.path());
    let addr = server.addr();

    let connect = frame(&connect_request(10_000, 0, &[0u8; 16]).encode());
    let since = Instant::now();
    let mut length_only = TcpStream::connect(addr).unwrap();
    length_only.write_all(&connect[..4]).unwrap();
    let mut nothing = TcpStream::connect(addr).unwrap();
    let t = closed_within(&mut length_only, since, Duration::from_secs(4));
    assert!(
        t.is_some_and(|t| t < Duration::from_secs(2)),
        "a connection that sent only a length is closed within 2 s (closed after {t:?})"
    );
    let t = closed_within(&mut nothing, since, Duration::from_secs(4));
    assert!(
        t.is_some_and(|t| t < Duration::from_secs(2)),
        "a connection that sent nothing is closed within 2 s (closed after {t:?})"
    );

    // Slowloris: one byte every 150 ms; the deadline is for the whole ConnectRequest.
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let since = Instant::now();
    let mut closed_after = None;
    let mut buf = [0u8; 256];
    for &byte in &connect {
        if slow.write_all(&[byte]).is_err() {
            closed_after = Some(since.elapsed());
            break;
        }
        match slow.read(&mut buf) {
            Ok(0) => {
                closed_after = Some(since.elapsed());
                break;
            }
            Ok(_) => panic!("the trickled ConnectRequest was answered"),
            Err(e) if is_closed(&e) => {
                closed_after = Some(since.elapsed());
                break;
            }
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        closed_after.is_some_and(|t| t < Duration::from_secs(2)),
        "a trickled ConnectRequest is cut off within 2 s (closed after {closed_after:?})"
    );

    // In time: 200 ms to connect is fine.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    s.write_all(&connect).unwrap();
    let resp = ConnectResponse::decode(&read_frame(&mut s).unwrap().expect("answered")).unwrap();
    assert_ne!(resp.session_id, 0);
    // An established session may be quiet for longer than handshake_ms.
    let mut r = Raw::connect(addr);
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(r.exists("/"), 0, "handshake_ms does not apply to established sessions");
    server.shutdown().unwrap();
}

// ---------------------------------------------------------------------------------------------
// 7. maxCnxns

/// cnxns_max 3: three sessions connect, a fourth connection is closed at once without a
/// ConnectResponse; once one of the three is gone a new one gets in (and the count is right
/// again: the next one is refused).
#[test]
fn max_cnxns_caps_connections_in_total() {
    let tmp = tempfile::tempdir().unwrap();
    let setup = Setup::new(|_| {}).limits(|l| l.cnxns_max = 3);
    assert_eq!(setup.settings.limits.cnxns_per_address_max, 0);
    let server = setup.start(tmp.path());
    let addr = server.addr();

    let mut held: Vec<Raw> = (0..3).map(|_| Raw::connect(addr)).collect();
    let refused = |what: &str| match handshake(addr, &connect_request(30_000, 0, &[0u8; 16])) {
        Handshake::Closed(t) => assert!(t < Duration::from_secs(2), "{what}: closed after {t:?}"),
        Handshake::Answered(_, resp) => panic!("{what}: a session over cnxns_max: {resp:?}"),
        Handshake::Silent => panic!("{what}: neither answered nor closed"),
    };
    refused("the fourth connection");
    for r in &mut held {
        assert_eq!(r.exists("/"), 0, "the three sessions carry on");
    }

    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut attempts = 0;
    let again = loop {
        attempts += 1;
        match handshake(addr, &connect_request(30_000, 0, &[0u8; 16])) {
            Handshake::Answered(s, resp) if resp.session_id != 0 => break s,
            _ if Instant::now() < deadline && attempts < 50 => {
                std::thread::sleep(Duration::from_millis(100))
            }
            _ => panic!("no room for a new connection after one of three left"),
        }
    };
    refused("a connection over the limit again");
    drop(again);
    server.shutdown().unwrap();
}

// ---------------------------------------------------------------------------------------------
// 8. Expired sessions

/// What became of a request sent by a session that may have expired.
#[derive(Debug, PartialEq)]
enum Late {
    /// Answered with this err.
    Reply(i32),
    /// The connection was closed instead.
    Closed,
}

fn late_request(r: &mut Raw, req: &Request) -> Late {
    let (xid, _) = r.send(req);
    match r.recv() {
        Some(reply) => {
            assert_eq!(reply.xid, xid);
            Late::Reply(reply.err)
        }
        None => Late::Closed,
    }
}

/// Sessions with a 4 s timeout go silent (socket open, unread). The server closes an expired
/// session's connection promptly, and a create sent after expiry never runs: it is answered
/// SESSIONEXPIRED or meets a closed connection. Sessions that send around the moment of expiry
/// may win or lose the race, but no ephemeral outlives its session, before or after a restart.
#[test]
fn expired_sessions_are_closed_and_their_late_requests_never_run() {
    let tmp = tempfile::tempdir().unwrap();
    let setup = Setup::new(|_| {});
    let server = setup.start(tmp.path());
    let addr = server.addr();
    let mut b = Raw::connect(addr);
    assert_eq!(b.create("/b", b"", world(), 0), 0);

    // A: holds an ephemeral, then is silent; when does the server close its connection?
    let idle = std::thread::spawn(move || {
        let mut a = Raw::connect_timeout(addr, 4000);
        assert_eq!(a.timeout_ms, 4000);
        assert_eq!(a.create("/a-eph", b"", world(), EPHEMERAL), 0);
        let since = Instant::now();
        closed_within(&mut a.s, since, Duration::from_secs(10))
    });
    // L: holds an ephemeral, sleeps 6 s without pinging, then creates /late.
    let late = std::thread::spawn(move || {
        let mut l = Raw::connect_timeout(addr, 4000);
        assert_eq!(l.create("/l-eph", b"", world(), EPHEMERAL), 0);
        std::thread::sleep(Duration::from_secs(6));
        late_request(&mut l, &create_req("/late", b"", world(), EPHEMERAL))
    });
    // Racers: send their create around the moment of expiry.
    let offsets: [i64; 6] = [-200, 0, 100, 200, 400, 800];
    let racers: Vec<_> = offsets
        .iter()
        .enumerate()
        .map(|(k, &offset)| {
            std::thread::spawn(move || {
                let mut r = Raw::connect_timeout(addr, 4000);
                assert_eq!(r.create(&format!("/r{k}-eph"), b"", world(), EPHEMERAL), 0);
                let wait = Duration::from_millis((4000 + offset) as u64);
                std::thread::sleep(wait);
                let got =
                    late_request(&mut r, &create_req(&format!("/late-r{k}"), b"", world(), 1));
                if got == Late::Reply(0) {
                    // The session was still alive: it is closed now, its nodes must go.
                    let bye = late_request(&mut r, &Request::CloseSession);
                    assert!(
                        matches!(bye, Late::Reply(0) | Late::Reply(SESSION_EXPIRED) | Late::Closed),
                        "closeSession: {bye:?}"
                    );
                }
                got
            })
        })
        .collect();

    // B keeps its own session alive meanwhile.
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(7500) {
        assert_eq!(b.exists("/b"), 0);
        std::thread::sleep(Duration::from_millis(250));
    }

    let closed_after = idle.join().unwrap();
    assert!(closed_after.is_some(), "the connection of an expired session is closed by the server");
    let t = closed_after.unwrap();
    eprintln!("the idle expired session's connection was closed {t:?} after its last request");
    assert!(t >= Duration::from_millis(3800), "closed before the session timeout ({t:?})");
    assert!(
        t <= Duration::from_millis(4000 + 5 * TICK_MS + 500),
        "closed {t:?} after the last request: not within the timeout and a few ticks"
    );
    let got = late.join().unwrap();
    assert!(
        matches!(got, Late::Reply(SESSION_EXPIRED) | Late::Closed),
        "a request sent 2 s after expiry must not run: {got:?}"
    );
    let raced: Vec<Late> = racers.into_iter().map(|h| h.join().unwrap()).collect();
    eprintln!("racers: {raced:?}");
    for (k, got) in raced.iter().enumerate() {
        assert!(
            matches!(got, Late::Reply(0) | Late::Reply(SESSION_EXPIRED) | Late::Closed),
            "racer {k} (offset {} ms): {got:?}",
            offsets[k]
        );
    }

    // Give any wrongly executed create time to show up.
    std::thread::sleep(Duration::from_millis(500));
    let mut gone = vec!["/a-eph".to_string(), "/l-eph".into(), "/late".into()];
    for k in 0..offsets.len() {
        gone.push(format!("/r{k}-eph"));
        gone.push(format!("/late-r{k}"));
    }
    for p in &gone {
        assert!(wait_gone(&mut b, p, Duration::from_secs(3)), "{p} outlived its session");
    }

    drop(b);
    server.shutdown().unwrap();
    let server = setup.start(tmp.path());
    let mut c = Raw::connect(server.addr());
    for p in &gone {
        assert_eq!(c.exists(p), NO_NODE, "{p} is back after a restart");
    }
    assert_eq!(c.exists("/b"), 0);
    server.shutdown().unwrap();
}

// ---------------------------------------------------------------------------------------------
// 9. Session passwords

/// A new session's password is not ZooKeeper's `Random(id ^ 0xB3415C00)` (anyone who knows a
/// session id could compute that one and hijack the session); reconnecting with the password
/// the server gave works, with the ZooKeeper-formula password or a wrong one it does not (a
/// ConnectResponse with session id 0 / timeout 0, then close), and failed attempts leave the
/// session alone.
#[test]
fn session_passwords_are_not_predictable() {
    let tmp = tempfile::tempdir().unwrap();
    let setup = Setup::new(|_| {});
    let server = setup.start(tmp.path());
    let addr = server.addr();

    let mut a = Raw::connect(addr);
    let b = Raw::connect(addr);
    assert_eq!(a.passwd.len(), 16);
    let predictable = session_password(a.session_id);
    assert_ne!(a.passwd, predictable.to_vec(), "the password is ZooKeeper's predictable one");
    assert_ne!(b.passwd, session_password(b.session_id).to_vec());
    assert_ne!(a.passwd, b.passwd);
    assert_eq!(a.create("/a-eph", b"", world(), EPHEMERAL), 0);

    let a_id = a.session_id;
    let refused =
        |passwd: &[u8], what: &str| match handshake(addr, &connect_request(30_000, a_id, passwd)) {
            Handshake::Answered(mut s, resp) => {
                assert!(
                    resp.session_id == 0 || resp.time_out == 0,
                    "{what}: reconnect accepted: {resp:?}"
                );
                assert!(
                    closed_within(&mut s, Instant::now(), Duration::from_secs(5)).is_some(),
                    "{what}: the connection is closed after the refusal"
                );
            }
            Handshake::Closed(_) => panic!("{what}: closed without a ConnectResponse"),
            Handshake::Silent => panic!("{what}: no answer"),
        };
    refused(&predictable, "ZooKeeper's formula password");
    refused(&[0u8; 16], "an all-zero password");
    let mut flipped = a.passwd.clone();
    flipped[15] ^= 1;
    refused(&flipped, "a password one bit off");
    refused(&a.passwd[..8], "a truncated password");

    // The real password works (the old connection is replaced), and the session is intact.
    match handshake(addr, &connect_request(30_000, a.session_id, &a.passwd)) {
        Handshake::Answered(s, resp) => {
            assert_eq!(resp.session_id, a.session_id, "reconnected to the same session");
            assert!(resp.time_out > 0);
            let mut again = Raw {
                s,
                xid: 0,
                session_id: resp.session_id,
                passwd: resp.passwd.as_slice().to_vec(),
                timeout_ms: resp.time_out,
                max_frame: 0,
            };
            again.s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            assert_eq!(again.exists("/a-eph"), 0, "the session's ephemeral is still there");
            let (_, sent) = again
                .send(&Request::GetEphemerals(GetEphemeralsRequest { prefix_path: "/".into() }));
            assert!(sent);
            let r = again.recv().expect("getEphemerals answered");
            assert_eq!(r.err, 0);
            match Response::decode(OpCode::GetEphemerals, &r.body, usize::MAX).unwrap() {
                Response::GetEphemerals(e) => assert_eq!(e.ephemerals, vec!["/a-eph".to_string()]),
                other => panic!("unexpected body {other:?}"),
            }
        }
        Handshake::Closed(_) => panic!("reconnect with the right password: closed"),
        Handshake::Silent => panic!("reconnect with the right password: no answer"),
    }
    drop((a, b));
    server.shutdown().unwrap();
}

/// Beyond the brief's list, but ZooKeeper's behaviour: sessions survive a restart, and their
/// clients reconnect with the password they were given. A random password must therefore be
/// one the restarted server still accepts.
#[test]
fn session_passwords_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let setup = Setup::new(|_| {});
    let server = setup.start(tmp.path());
    let mut a = Raw::connect(server.addr());
    assert_eq!(a.create("/a-eph", b"", world(), EPHEMERAL), 0);
    let (id, passwd) = (a.session_id, a.passwd.clone());
    drop(a);
    server.shutdown().unwrap();

    let server = setup.start(tmp.path());
    match handshake(server.addr(), &connect_request(30_000, id, &passwd)) {
        Handshake::Answered(s, resp) => {
            assert_eq!(resp.session_id, id, "the session is resumed after a restart");
            assert!(resp.time_out > 0);
            drop(s);
        }
        Handshake::Closed(_) => panic!("reconnect after a restart: closed"),
        Handshake::Silent => panic!("reconnect after a restart: no answer"),
    }
    match handshake(server.addr(), &connect_request(30_000, id, &session_password(id))) {
        Handshake::Answered(_, resp) => assert!(
            resp.session_id == 0 || resp.time_out == 0,
            "after a restart the ZooKeeper-formula password is still refused: {resp:?}"
        ),
        Handshake::Closed(_) | Handshake::Silent => {
            panic!("a refused reconnect gets a ConnectResponse")
        }
    }
    let mut b = Raw::connect(server.addr());
    assert_eq!(b.exists("/a-eph"), 0, "the resumed session's ephemeral is there");
    server.shutdown().unwrap();
}

// ---------------------------------------------------------------------------------------------
// 10. exists checks READ

/// A node readable only by digest `u:p`: exists and getData from anyone else are NOAUTH (and
/// an exists watch is not set for them); a missing path is NONODE; with auth `u:p` both work.
#[test]
fn exists_checks_read_permission() {
    let tmp = tempfile::tempdir().unwrap();
    let setup = Setup::new(|_| {});
    let server = setup.start(tmp.path());
    let addr = server.addr();
    let digest = digest_of_auth("u:p");

    let mut owner = Raw::connect(addr);
    assert_eq!(owner.create("/secret", b"s", vec![Acl::new(31, "digest", &digest)], 0), 0);

    let mut anon = Raw::connect(addr);
    assert_eq!(anon.exists("/secret"), NO_AUTH, "exists needs READ");
    let watch = Request::Exists(PathWatchRequest { path: "/secret".into(), watch: true });
    assert_eq!(anon.err(&watch), NO_AUTH, "exists with a watch needs READ");
    assert_eq!(anon.exists("/missing"), NO_NODE);
    assert_eq!(anon.get_data("/secret").0, NO_AUTH);

    let mut other = Raw::connect(addr);
    assert_eq!(other.auth("digest", b"v:p"), Some(0));
    assert_eq!(other.exists("/secret"), NO_AUTH, "another user has no READ");

    let mut user = Raw::connect(addr);
    assert_eq!(user.auth("digest", b"u:p"), Some(0));
    assert_eq!(user.exists("/secret"), 0);
    assert_eq!(user.get_data("/secret"), (0, b"s".to_vec()));

    // The refused exists set no watch: deleting the node sends anon no event.
    let del = Request::Delete(DeleteRequest { path: "/secret".into(), version: -1 });
    assert_eq!(user.err(&del), 0);
    anon.s.set_read_timeout(Some(Duration::from_millis(700))).unwrap();
    match read_frame(&mut anon.s) {
        Err(e) if is_timeout(&e) => {}
        Ok(Some(b)) => panic!(
            "a session without READ was told about the node: {:?}",
            ReplyHeader::decode(&b).unwrap()
        ),
        other => panic!("unexpected: {other:?}"),
    }
    anon.s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(anon.exists("/secret"), NO_NODE);
    server.shutdown().unwrap();
}

// ---------------------------------------------------------------------------------------------
// 11. Security settings Corral cannot honour

/// Enforced authentication with no scheme, or a scheme no provider serves, and auth
/// providers other than ZooKeeper's built-in digest, ip, SASL and x509 ones (or an
/// `ssl.authProvider` other than x509) refuse to start, naming what is wrong; those
/// providers, enforcement of served schemes and the keys set to false start.
#[test]
fn unsupported_security_settings_refuse_to_start() {
    const SASL: &str = "org.apache.zookeeper.server.auth.SASLAuthenticationProvider";
    const DIGEST: &str = "org.apache.zookeeper.server.auth.DigestAuthenticationProvider";
    const X509: &str = "org.apache.zookeeper.server.auth.X509AuthenticationProvider";
    let cases: Vec<(String, Option<&str>)> = vec![
        ("sessionRequireClientSASLAuth=true".into(), Some("sasl")),
        ("enforce.auth.enabled=true".into(), Some("enforce.auth.schemes")),
        ("enforce.auth.enabled=true\nenforce.auth.schemes=kerberos".into(), Some("kerberos")),
        ("enforce.auth.enabled=true\nenforce.auth.schemes=x509".into(), Some("x509")),
        ("enforce.auth.enabled=true\nenforce.auth.schemes=digest, ip".into(), None),
        (format!("authProvider.1={X509}"), None),
        (format!("authProvider.1={DIGEST}\nauthProvider.2={X509}"), None),
        ("ssl.authProvider=custom".into(), Some("ssl.authProvider")),
        ("authProvider.x509=com.example.CustomAuth".into(), Some("authProvider")),
        (format!("authProvider.1={SASL}"), None),
        (format!("authProvider.1={DIGEST}\nauthProvider.2={SASL}"), None),
        (format!("authProvider.1={DIGEST}"), None),
        ("sessionRequireClientSASLAuth=false".into(), None),
        ("enforce.auth.enabled=false".into(), None),
    ];
    for (lines, refusal) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let text =
            format!("tickTime=2000\ndataDir={}\nclientPort=2181\n{lines}\n", tmp.path().display());
        let config = Config::parse_str(&text).unwrap_or_else(|e| panic!("{lines}: {e}"));
        let mut opts = ServerOptions::from_config(&config).expect("server options");
        opts.bind = "127.0.0.1:0".parse().unwrap();
        match (RunningServer::start(opts), refusal) {
            (Err(e), Some(key)) => {
                let why = format!("{e:#}");
                assert!(why.contains(key), "{lines}: the refusal names {key}: {why}");
            }
            (Ok(server), Some(_)) => {
                server.shutdown().unwrap();
                panic!("{lines}: the server started");
            }
            (Ok(server), None) => {
                let mut r = Raw::connect(server.addr());
                assert_eq!(r.exists("/"), 0);
                drop(r);
                server.shutdown().unwrap();
            }
            (Err(e), None) => panic!("{lines}: refused to start: {e:#}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 12. A random hostile mix

/// Short node names; the random namespace is the tree under /r.
const NAMES: [&str; 5] = ["a", "b", "c", "d", "e"];

fn random_path(rng: &mut ChaCha8Rng) -> String {
    match rng.random_range(0..100) {
        // Invalid paths: ZooKeeper answers them with error codes.
        0..=2 => ["", "r", "/r/", "/r//a", "/r/./a", "/r/a\u{0}b", "/zookeeper/x"]
            [rng.random_range(0..7usize)]
        .to_string(),
        // Long names (never sequential: that would grow /r's child list without bound).
        3..=5 => {
            format!("/r/{}", ["L".repeat(2000), "M".repeat(8000)][rng.random_range(0..2usize)])
        }
        _ => {
            let mut p = String::from("/r");
            let depth = match rng.random_range(0..100) {
                0..=49 => 1,
                50..=84 => 2,
                _ => 3,
            };
            for _ in 0..depth {
                p.push('/');
                p.push_str(NAMES[rng.random_range(0..NAMES.len())]);
            }
            p
        }
    }
}

fn random_user(rng: &mut ChaCha8Rng) -> String {
    let k = rng.random_range(0..6);
    format!("user{k}:pw{k}")
}

fn random_acl(rng: &mut ChaCha8Rng) -> Vec<Acl> {
    let n = match rng.random_range(0..100) {
        0..=4 => 0,
        5..=69 => 1,
        _ => rng.random_range(2..=4),
    };
    (0..n)
        .map(|_| {
            let perms = if rng.random_bool(0.6) { 31 } else { rng.random_range(0..=31) };
            match rng.random_range(0..100) {
                0..=44 => Acl::new(perms, "world", "anyone"),
                45..=64 => Acl::new(perms, "auth", ""),
                65..=79 => Acl::new(perms, "digest", &digest_of_auth(&random_user(rng))),
                80..=87 => {
                    Acl::new(perms, "ip", ["127.0.0.1", "10.0.0.0/8"][rng.random_range(0..2usize)])
                }
                88..=93 => Acl::new(perms, "digest", "malformed"),
                _ => Acl::new(
                    perms,
                    ["bogus", "world", "ip", "sasl"][rng.random_range(0..4usize)],
                    "x",
                ),
            }
        })
        .collect()
}

fn random_data(rng: &mut ChaCha8Rng, small: bool) -> Vec<u8> {
    let n = match rng.random_range(0..100) {
        _ if small => rng.random_range(0..256),
        0..=69 => rng.random_range(0..100),
        70..=89 => rng.random_range(100..4096),
        // Up to the limits: these replies still fit jute.maxbuffer.
        _ => rng.random_range(4096..=MAX_BUFFER - 1024),
    };
    vec![rng.random::<u8>(); n]
}

fn random_create(rng: &mut ChaCha8Rng, small: bool) -> CreateRequest {
    let path = random_path(rng);
    let mut flags = rng.random_range(0..=3);
    if path.len() > 100 {
        flags &= EPHEMERAL;
    }
    CreateRequest { path, data: Data::from(random_data(rng, small)), acl: random_acl(rng), flags }
}

fn random_version(rng: &mut ChaCha8Rng) -> i32 {
    if rng.random_bool(0.8) {
        -1
    } else {
        rng.random_range(0..3)
    }
}

fn random_multi_op(rng: &mut ChaCha8Rng, small: bool) -> MultiOp {
    match rng.random_range(0..5) {
        0 => MultiOp::Create(random_create(rng, small)),
        1 => MultiOp::Create2(random_create(rng, small)),
        2 => {
            MultiOp::Delete(DeleteRequest { path: random_path(rng), version: random_version(rng) })
        }
        3 => MultiOp::SetData(SetDataRequest {
            path: random_path(rng),
            data: Data::from(random_data(rng, small)),
            version: random_version(rng),
        }),
        _ => MultiOp::Check(CheckVersionRequest {
            path: random_path(rng),
            version: random_version(rng),
        }),
    }
}

/// A random valid-shaped request whose frame is within jute.maxbuffer (oversized ones are
/// regenerated with small data; a ping if that keeps failing).
fn random_request(rng: &mut ChaCha8Rng) -> Request {
    for attempt in 0..8 {
        let small = attempt > 0;
        let pw = |rng: &mut ChaCha8Rng| PathWatchRequest {
            path: random_path(rng),
            watch: rng.random_bool(0.5),
        };
        let req = match rng.random_range(0..100) {
            0..=14 => Request::Create(random_create(rng, small)),
            15..=19 => Request::Create2(random_create(rng, small)),
            20..=21 => Request::CreateContainer(random_create(rng, small)),
            22..=29 => Request::Delete(DeleteRequest {
                path: random_path(rng),
                version: random_version(rng),
            }),
            30..=37 => Request::SetData(SetDataRequest {
                path: random_path(rng),
                data: Data::from(random_data(rng, small)),
                version: random_version(rng),
            }),
            38..=42 => Request::SetAcl(SetAclRequest {
                path: random_path(rng),
                acl: random_acl(rng),
                version: random_version(rng),
            }),
            43..=47 => Request::Exists(pw(rng)),
            48..=52 => Request::GetData(pw(rng)),
            53..=55 => Request::GetChildren(pw(rng)),
            56..=57 => Request::GetChildren2(pw(rng)),
            58..=59 => Request::GetAcl(PathRequest { path: random_path(rng) }),
            60..=67 => Request::Multi(
                (0..rng.random_range(1..=5)).map(|_| random_multi_op(rng, small)).collect(),
            ),
            68..=70 => Request::MultiRead(
                (0..rng.random_range(1..=4))
                    .map(|_| {
                        let r = PathWatchRequest { path: random_path(rng), watch: false };
                        if rng.random_bool(0.5) {
                            MultiOp::GetData(r)
                        } else {
                            MultiOp::GetChildren(r)
                        }
                    })
                    .collect(),
            ),
            71 => Request::Sync(PathRequest { path: random_path(rng) }),
            72 => Request::Ping,
            73 => Request::GetAllChildrenNumber(PathRequest { path: random_path(rng) }),
            74 => Request::GetEphemerals(GetEphemeralsRequest { prefix_path: "/r".into() }),
            75 => Request::AddWatch(AddWatchRequest {
                path: random_path(rng),
                mode: rng.random_range(0..=1),
            }),
            76 => Request::RemoveWatches(WatchesRequest {
                path: random_path(rng),
                watcher_type: rng.random_range(1..=3),
            }),
            77 => Request::CheckWatches(WatchesRequest {
                path: random_path(rng),
                watcher_type: rng.random_range(1..=3),
            }),
            78 => Request::WhoAmI,
            79 => Request::CloseSession,
            _ => {
                let (scheme, auth): (&str, Vec<u8>) = match rng.random_range(0..100) {
                    0..=49 => ("digest", random_user(rng).into_bytes()),
                    // ~900-byte user names: `auth` ACL entries expand by ~1 KiB per id.
                    50..=54 => {
                        let k = rng.random_range(0..3);
                        ("digest", format!("{}{k}:pw", "U".repeat(900)).into_bytes())
                    }
                    55..=69 => ("digest", format!("r{}:x", rng.random::<u32>()).into_bytes()),
                    70..=77 => ("digest", vec![b'l'; rng.random_range(1025..3000)]),
                    78..=87 => ("ip", Vec::new()),
                    88..=94 => {
                        ("digest", (0..rng.random_range(0..40)).map(|_| rng.random()).collect())
                    }
                    _ => ("bogus", b"x".to_vec()),
                };
                Request::Auth(AuthPacket {
                    auth_type: 0,
                    scheme: scheme.into(),
                    auth: Data::from(auth),
                })
            }
        };
        // Some creates and setData filled to just under the request limit: their txns are
        // just under the txn limit or just over it.
        let req = if !small && rng.random_bool(0.25) { fill_to_limit(req, rng) } else { req };
        if req.encode_frame(0).len() - 4 <= MAX_BUFFER {
            return req;
        }
    }
    Request::Ping
}

/// Grows a create's or setData's data until its frame is within 80 bytes of jute.maxbuffer.
fn fill_to_limit(req: Request, rng: &mut ChaCha8Rng) -> Request {
    let body = req.encode_frame(0).len() - 4;
    let target = MAX_BUFFER - rng.random_range(0..80);
    if body >= target {
        return req;
    }
    let grown = |d: &Data| Data::from(vec![0x5a; d.len() + target - body]);
    match req {
        Request::Create(mut c) => {
            c.data = grown(&c.data);
            Request::Create(c)
        }
        Request::Create2(mut c) => {
            c.data = grown(&c.data);
            Request::Create2(c)
        }
        Request::SetData(mut d) => {
            d.data = grown(&d.data);
            Request::SetData(d)
        }
        other => other,
    }
}

/// The xid a ZooKeeper client sends a request with.
fn xid_for(req: &Request, next: &mut i32) -> i32 {
    match req {
        Request::Ping => PING_XID,
        Request::Auth(_) => AUTH_XID,
        _ => {
            *next += 1;
            *next
        }
    }
}

/// Requests after which the server may close the connection: a failed auth, closeSession, and
/// reads whose reply could exceed jute.maxbuffer (refused with an error or a disconnect).
fn may_close(req: &Request) -> bool {
    matches!(
        req,
        Request::Auth(_)
            | Request::CloseSession
            | Request::MultiRead(_)
            | Request::GetChildren(_)
            | Request::GetChildren2(_)
    )
}

/// Several raw sessions send ~2000 random valid-shaped requests (pipelined a few at a time) and
/// read every reply: each carries an err ZooKeeper defines, a successful one decodes, no frame
/// exceeds jute.maxbuffer, connections close only where a client should expect it, nothing is
/// stuck in the pipeline at the end, a healthy session is answered throughout, and a restart on
/// the same directory recovers the tree (walked afterwards) with the healthy session's nodes.
#[test]
fn random_hostile_mix() {
    const SEED: u64 = 0x4057_11E5;
    const REQUESTS: usize = 2000;
    const SESSIONS: usize = 5;
    let tmp = tempfile::tempdir().unwrap();
    // Txn limit = request limit, so that creates and setData near the request limit (and
    // `auth` ACLs expanding to long ids) meet it.
    let setup = Setup::new(|c| c.jute_max_buffer_extrasize = Some(0));
    let server = setup.start(tmp.path());
    let addr = server.addr();
    let started = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);

    let mut healthy = Raw::connect(addr);
    assert_eq!(healthy.create("/r", b"", world(), 0), 0);
    assert_eq!(healthy.create("/healthy", b"h", world(), 0), 0);

    let mut slots: Vec<Option<Raw>> = (0..SESSIONS).map(|_| None).collect();
    let mut codes: std::collections::BTreeMap<i32, usize> = Default::default();
    let mut closes = 0;
    let mut max_frame = 0;
    let mut sent = 0;
    while sent < REQUESTS {
        assert!(started.elapsed() < Duration::from_secs(60), "the random mix took too long");
        let k = rng.random_range(0..SESSIONS);
        let mut r = slots[k].take().unwrap_or_else(|| Raw::connect(addr));
        // A few requests pipelined, then their replies in order.
        let n = rng.random_range(1..=4).min(REQUESTS - sent);
        let mut batch = Vec::new();
        for _ in 0..n {
            let req = random_request(&mut rng);
            let xid = xid_for(&req, &mut r.xid);
            let _ = r.send_xid(xid, &req);
            batch.push((xid, req));
            sent += 1;
        }
        let mut expect_close = false;
        let mut alive = true;
        // Auth packets are answered out of band, as ZooKeeper answers them on receipt (xid -4,
        // possibly before earlier requests' replies); everything else in request order.
        let mut unanswered: std::collections::VecDeque<&(i32, Request)> = batch.iter().collect();
        while !unanswered.is_empty() {
            let Some(reply) = r.recv() else {
                assert!(
                    expect_close || unanswered.iter().any(|(_, req)| may_close(req)),
                    "the server closed the connection on valid {:?} (seed {SEED:#x}, request {sent})",
                    unanswered.iter().map(|(_, req)| req.opcode()).collect::<Vec<_>>()
                );
                closes += 1;
                alive = false;
                break;
            };
            let at = if reply.xid == AUTH_XID {
                unanswered.iter().position(|(_, req)| matches!(req, Request::Auth(_)))
            } else {
                unanswered.iter().position(|(_, req)| !matches!(req, Request::Auth(_)))
            };
            let (xid, req) = unanswered.remove(at.expect("a reply to a request sent")).unwrap();
            assert_eq!(reply.xid, *xid, "replies come in request order");
            assert!(
                ErrorCode::from_code(reply.err).is_some(),
                "{:?} got err {}, which ZooKeeper does not define",
                req.opcode(),
                reply.err
            );
            *codes.entry(reply.err).or_default() += 1;
            match req {
                Request::Auth(_) if reply.err != 0 => {
                    assert_eq!(reply.err, AUTH_FAILED, "a refused auth packet");
                    expect_close = true;
                }
                Request::CloseSession => {
                    assert_eq!(reply.err, 0, "closeSession");
                    expect_close = true;
                }
                Request::Auth(_) => {}
                _ if reply.err == 0 => {
                    let decoded = Response::decode(req.opcode(), &reply.body, MAX_BUFFER);
                    assert!(decoded.is_ok(), "a {:?} reply body: {decoded:?}", req.opcode());
                }
                _ => {}
            }
        }
        max_frame = max_frame.max(r.max_frame);
        if alive && expect_close {
            // What the server announced (AUTHFAILED or closeSession), then the end.
            assert!(
                closed_within(&mut r.s, Instant::now(), Duration::from_secs(5)).is_some(),
                "the connection is closed after AUTHFAILED / closeSession"
            );
            closes += 1;
            alive = false;
        }
        if alive {
            slots[k] = Some(r);
        }
        if sent % 100 < n {
            assert_eq!(healthy.exists("/healthy"), 0, "the healthy session is answered");
        }
    }
    for r in slots.iter().flatten() {
        max_frame = max_frame.max(r.max_frame);
    }
    eprintln!(
        "random mix: {sent} requests in {:?}, {closes} connections closed, codes {codes:?}",
        started.elapsed()
    );
    assert!(max_frame <= MAX_BUFFER, "a reply frame of {max_frame} bytes > jute.maxbuffer");
    assert_eq!(healthy.exists("/healthy"), 0);
    assert_eq!(healthy.create("/healthy-end", b"", world(), 0), 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.shared().outstanding.load(Ordering::Relaxed) > 0 {
        assert!(Instant::now() < deadline, "requests stuck in the pipeline");
        std::thread::sleep(Duration::from_millis(10));
    }

    drop(slots);
    drop(healthy);
    server.shutdown().unwrap();
    let server = setup.start(tmp.path());
    let mut c = Raw::connect(server.addr());
    assert_eq!(c.exists("/healthy"), 0, "the healthy session's node survives a restart");
    assert_eq!(c.exists("/healthy-end"), 0);
    // Walk what recovery rebuilt (bounded): every reply is a defined code.
    let mut todo = vec!["/r".to_string()];
    let mut seen = 0;
    while let Some(p) = todo.pop() {
        seen += 1;
        assert!(seen < 10_000, "the walk is bounded");
        let r = c.call(&Request::GetChildren(PathWatchRequest { path: p.clone(), watch: false }));
        let r = r.expect("getChildren answered after the restart");
        assert!(ErrorCode::from_code(r.err).is_some());
        if r.err == 0 {
            if let Response::GetChildren(ch) =
                Response::decode(OpCode::GetChildren, &r.body, MAX_BUFFER).unwrap()
            {
                todo.extend(ch.children.into_iter().map(|n| format!("{p}/{n}")));
            }
        }
        let e = c.call(&Request::Exists(PathWatchRequest { path: p, watch: false })).unwrap();
        assert!(ErrorCode::from_code(e.err).is_some());
    }
    server.shutdown().unwrap();
}

// ---------------------------------------------------------------------------------------------
// 13. Watches of a closed connection

/// A connection pipelines writes and then reads with watches (which queue behind the writes in
/// the pipeline) and vanishes at once, before its writes commit. The pipeline removes its
/// watches when the connection closes; a read still queued behind its writes must not add them
/// back afterwards. 40 such connections leave no watch behind.
#[test]
fn closed_connections_leave_no_watches() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Setup::new(|_| {}).start(tmp.path());
    let addr = server.addr();
    let mut w = Raw::connect(addr);
    assert_eq!(w.create("/wl", b"x", world(), 0), 0);
    for i in 0..40 {
        let mut r = Raw::connect(addr);
        let mut batch = Vec::new();
        for j in 0..5 {
            let req = create_req(&format!("/wl/n{i}-{j}"), b"y", world(), 0);
            batch.extend_from_slice(&req.encode_frame(j + 1));
        }
        for j in 5..10 {
            let req = Request::GetData(PathWatchRequest { path: "/wl".into(), watch: true });
            batch.extend_from_slice(&req.encode_frame(j + 1));
            let req = Request::GetChildren(PathWatchRequest { path: "/wl".into(), watch: true });
            batch.extend_from_slice(&req.encode_frame(j + 100));
        }
        r.s.write_all(&batch).unwrap();
        let _ = r.s.shutdown(std::net::Shutdown::Both);
        drop(r);
    }
    // Every vanished connection's requests are answered (into the void) and counted down.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.shared().outstanding.load(Ordering::Acquire) > 0
        || server.shared().conns.lock().unwrap().len() > 1
    {
        assert!(Instant::now() < deadline, "the vanished connections' requests are stuck");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The pipeline handles events in order: one more round trip through it, then look.
    assert_eq!(w.create("/wl-after", b"", world(), 0), 0);
    std::thread::sleep(Duration::from_millis(200));
    let left = server.shared().watches.lock().unwrap().watch_count();
    assert_eq!(left, 0, "watches of closed connections were left behind (or re-added)");
    server.shutdown().unwrap();
}

// ---------------------------------------------------------------------------------------------
// 14. Storage failure: the one thing that stops the server, and it says why

/// A failed fsync of the transaction log stops the pipeline: nothing more is acknowledged, the
/// server reports a typed error naming the log (the binary prints it and exits 70), and what
/// was acknowledged before is there after a restart.
#[test]
fn a_failed_fsync_stops_the_server_with_a_reason() {
    use corral_engine::io::sim::Faults;
    use corral_engine::io::SimVfs;
    let tmp = tempfile::tempdir().unwrap();
    let vfs = SimVfs::new();
    let setup = Setup::new(|_| {});
    let start = |vfs: &SimVfs| {
        let mut config = setup.config.clone();
        config.data_dir = tmp.path().to_path_buf();
        config.data_log_dir = tmp.path().to_path_buf();
        let mut opts = ServerOptions::from_config(&config).expect("server options");
        opts.bind = "127.0.0.1:0".parse().unwrap();
        opts.settings = setup.settings.clone();
        opts.db.log.vfs = Some(std::sync::Arc::new(vfs.clone()));
        opts.db.log.prealloc_in_background = false;
        opts.db.log.strategy = corral_engine::log::FlushStrategy::Group;
        RunningServer::start(opts).expect("server starts")
    };
    let server = start(&vfs);
    let mut r = Raw::connect(server.addr());
    assert_eq!(r.create("/before", b"x", world(), 0), 0);
    assert!(server.failure().is_none());
    let syncs = vfs.stats().syncs;
    vfs.set_faults(Faults { fail_sync: Some((syncs + 1, 5)), ..Faults::default() });
    // The write whose flush fails is never acknowledged.
    let (_, sent) = r.send(&create_req("/after", b"y", world(), 0));
    assert!(sent);
    let deadline = Instant::now() + Duration::from_secs(10);
    let fatal = loop {
        if let Some(f) = server.failure() {
            break f;
        }
        assert!(Instant::now() < deadline, "the server did not stop on a failed fsync");
        std::thread::sleep(Duration::from_millis(20));
    };
    let why = fatal.to_string();
    assert!(why.contains("transaction log failed"), "{why}");
    r.s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    if let Ok(Some(b)) = read_frame(&mut r.s) {
        let h = ReplyHeader::decode(&b).unwrap();
        assert_ne!(h.err, 0, "a write whose flush failed was acknowledged");
    }
    let err = server.shutdown().expect_err("shutdown reports the failure");
    assert!(format!("{err:#}").contains("transaction log failed"), "{err:#}");

    // After a reboot, what was acknowledged is there.
    vfs.crash();
    let img = vfs.crash_image(1);
    let server = start(&img);
    let mut r = Raw::connect(server.addr());
    assert_eq!(r.exists("/before"), 0);
    server.shutdown().unwrap();
}

// ---------------------------------------------------------------------------------------------
// 15. Sessions across a restart

/// A session whose client never comes back after a restart is expired (its full timeout
/// counted from the restart, as ZooKeeper does) and its ephemerals removed; one whose client
/// reconnects in time keeps them.
#[test]
fn sessions_not_resumed_after_a_restart_expire_with_their_ephemerals() {
    let tmp = tempfile::tempdir().unwrap();
    let setup = Setup::new(|_| {});
    let server = setup.start(tmp.path());
    let mut gone = Raw::connect_timeout(server.addr(), 1_500);
    assert_eq!(gone.create("/gone-eph", b"", world(), 1), 0);
    let mut back = Raw::connect_timeout(server.addr(), 3_000);
    assert_eq!(back.create("/back-eph", b"", world(), 1), 0);
    let (back_id, back_pw) = (back.session_id, back.passwd.clone());
    drop((gone, back));
    server.shutdown().unwrap();

    let server = setup.start(tmp.path());
    let addr = server.addr();
    let mut watcher = Raw::connect(addr);
    assert_eq!(watcher.exists("/gone-eph"), 0, "restored sessions get their timeout anew");
    // The second client resumes its session at once and keeps it alive with pings.
    let mut back = match handshake(addr, &connect_request(3_000, back_id, &back_pw)) {
        Handshake::Answered(s, resp) => {
            assert_eq!(resp.session_id, back_id, "the session resumes after the restart");
            s
        }
        _ => panic!("reconnecting after the restart failed"),
    };
    back.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut expired = false;
    let mut xid = 0;
    while Instant::now() < deadline {
        xid += 1;
        back.write_all(&Request::Ping.encode_frame(-2)).unwrap();
        let _ = read_frame(&mut back);
        if watcher.exists("/gone-eph") == -101 {
            expired = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(expired, "the session nobody resumed still holds its ephemeral after {xid} rounds");
    assert_eq!(watcher.exists("/back-eph"), 0, "the resumed session keeps its ephemeral");
    drop(back);
    server.shutdown().unwrap();
}
