//! Bad input on the client port: oversized, negative, truncated and garbage frames, unknown
//! opcodes, malformed bodies, and clients vanishing mid-request. Each gets ZooKeeper's answer
//! or a clean disconnect; the server never panics or stalls, and a healthy session keeps
//! working throughout.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use corral_server::config::Config;
use corral_server::db::DbOptions;
use corral_server::pipeline::Settings;
use corral_server::proto::{
    ConnectRequest, ConnectResponse, CreateRequest, Data, Jute, ReplyHeader, Request, RequestHeader,
};
use corral_server::server::{RunningServer, ServerOptions};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const MAX_BUFFER: usize = 64 * 1024;

fn start(dir: &Path) -> RunningServer {
    let mut config = Config::default_standalone();
    config.jute_max_buffer = MAX_BUFFER as u32;
    let mut settings = Settings::from_config(&config);
    settings.limits.cnxns_per_address_max = 0;
    let opts = ServerOptions {
        bind: "127.0.0.1:0".parse().unwrap(),
        db: DbOptions::new(dir),
        settings,
        config,
        ensemble: None,
        client_tls: None,
    };
    RunningServer::start(opts).expect("server starts")
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

fn read_frame(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut b = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut b).ok()?;
    Some(b)
}

/// True if the server closed the connection (EOF) within the timeout.
fn closed(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// A raw session: connects and completes the handshake.
struct Raw {
    s: TcpStream,
    xid: i32,
}

impl Raw {
    fn connect(addr: SocketAddr) -> Raw {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let req = ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 0,
            time_out: 10_000,
            session_id: 0,
            passwd: Data::from(vec![0u8; 16]),
            read_only: Some(false),
        };
        s.write_all(&frame(&req.encode())).unwrap();
        let resp = ConnectResponse::decode(&read_frame(&mut s).expect("connect response")).unwrap();
        assert_ne!(resp.session_id, 0);
        Raw { s, xid: 0 }
    }

    fn send(&mut self, req: &Request) -> i32 {
        self.xid += 1;
        self.s.write_all(&req.encode_frame(self.xid)).unwrap();
        self.xid
    }

    fn reply(&mut self) -> ReplyHeader {
        let b = read_frame(&mut self.s).expect("reply");
        ReplyHeader::decode(&b).unwrap()
    }

    fn create(&mut self, path: &str) -> i32 {
        let xid = self.send(&Request::Create(CreateRequest {
            path: path.into(),
            data: Data::from(b"x".to_vec()),
            acl: vec![corral_server::proto::Acl {
                perms: 31,
                id: corral_server::proto::Id { scheme: "world".into(), id: "anyone".into() },
            }],
            flags: 0,
        }));
        let h = self.reply();
        assert_eq!(h.xid, xid);
        h.err
    }
}

#[test]
fn bad_frames_are_refused_and_others_carry_on() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path());
    let addr = server.addr();
    let mut healthy = Raw::connect(addr);
    assert_eq!(healthy.create("/ok0"), 0);

    // 1. A first frame above jute.maxbuffer: closed before anything is read or allocated.
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&((MAX_BUFFER as i32) + 1).to_be_bytes()).unwrap();
    assert!(closed(&mut s), "oversized connect frame must close");
    // 2. A negative length (also the 4lw-style garbage that is no known word).
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&(-5i32).to_be_bytes()).unwrap();
    assert!(closed(&mut s));
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"\xff\xff\xff\xffgarbage").unwrap();
    assert!(closed(&mut s));
    // 3. A connect frame whose body is not a ConnectRequest.
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&frame(b"\x00\x01")).unwrap();
    assert!(closed(&mut s));
    // 4. A truncated connect frame, then the client vanishes.
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&[0, 0, 1, 0, 1, 2, 3]).unwrap();
    drop(s);

    // 5. In a session: an oversized request frame closes that connection only.
    let mut r = Raw::connect(addr);
    r.s.write_all(&(MAX_BUFFER as i32 * 4).to_be_bytes()).unwrap();
    assert!(closed(&mut r.s));
    // 6. An unknown opcode: (xid, -1, UNIMPLEMENTED), then close.
    let mut r = Raw::connect(addr);
    let mut body = Vec::new();
    RequestHeader { xid: 7, op: 999 }.write(&mut body);
    r.s.write_all(&frame(&body)).unwrap();
    let h = r.reply();
    assert_eq!((h.xid, h.zxid, h.err), (7, -1, -6));
    assert!(closed(&mut r.s));
    // 7. A known opcode with a malformed body (create whose path length overruns).
    let mut r = Raw::connect(addr);
    let mut body = Vec::new();
    RequestHeader { xid: 3, op: 1 }.write(&mut body);
    body.extend_from_slice(&1000i32.to_be_bytes());
    body.extend_from_slice(b"/short");
    r.s.write_all(&frame(&body)).unwrap();
    let h = r.reply();
    assert_eq!(h.xid, 3);
    assert_ne!(h.err, 0);
    assert!(closed(&mut r.s));
    // 8. A bare `check` outside multi is refused like an unknown opcode.
    let mut r = Raw::connect(addr);
    let mut body = Vec::new();
    RequestHeader { xid: 4, op: 13 }.write(&mut body);
    body.extend_from_slice(&frame(b"/a")[..]);
    r.s.write_all(&frame(&body)).unwrap();
    assert_eq!(r.reply().err, -6);
    assert!(closed(&mut r.s));

    // The healthy session never noticed.
    assert_eq!(healthy.create("/ok1"), 0);
    server.shutdown().unwrap();
}

#[test]
fn clients_vanishing_mid_request_leave_nothing_stuck() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path());
    let addr = server.addr();
    let mut healthy = Raw::connect(addr);
    for i in 0..50 {
        let mut r = Raw::connect(addr);
        // Pipeline writes and reads, then vanish without reading any reply; half the time with
        // a partial frame still unsent.
        for j in 0..20 {
            let path = format!("/v{i}-{j}");
            r.send(&Request::Create(CreateRequest {
                path,
                data: Data::from(vec![1u8; 100]),
                acl: vec![corral_server::proto::Acl {
                    perms: 31,
                    id: corral_server::proto::Id { scheme: "world".into(), id: "anyone".into() },
                }],
                flags: 1,
            }));
        }
        if i % 2 == 0 {
            r.s.write_all(&[0, 0, 0, 50, 0, 0]).unwrap();
        }
        drop(r);
    }
    assert_eq!(healthy.create("/after"), 0, "other sessions carry on");
    let outstanding = server.shared().outstanding.load(std::sync::atomic::Ordering::Relaxed);
    // Requests of vanished clients are still answered (into the void) and counted down.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.shared().outstanding.load(std::sync::atomic::Ordering::Relaxed) > 0 {
        assert!(Instant::now() < deadline, "requests stuck in the pipeline ({outstanding})");
        std::thread::sleep(Duration::from_millis(10));
    }
    server.shutdown().unwrap();
}

#[test]
fn random_garbage_never_takes_the_server_down() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path());
    let addr = server.addr();
    let mut healthy = Raw::connect(addr);
    let mut rng = ChaCha8Rng::seed_from_u64(0xBAD);
    for round in 0..300 {
        let mut s = match TcpStream::connect(addr) {
            Ok(s) => s,
            Err(e) => panic!("round {round}: the server stopped accepting: {e}"),
        };
        let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
        if rng.random_bool(0.5) {
            // A valid handshake, then garbage.
            let req = ConnectRequest {
                protocol_version: 0,
                last_zxid_seen: 0,
                time_out: 4000,
                session_id: 0,
                passwd: Data::from(vec![0u8; 16]),
                read_only: None,
            };
            let _ = s.write_all(&frame(&req.encode()));
        }
        let n = rng.random_range(0..2000);
        let mut junk = vec![0u8; n];
        rng.fill(&mut junk[..]);
        // Sometimes a plausible frame header in front of the junk.
        if rng.random_bool(0.5) && n >= 12 {
            junk[..4].copy_from_slice(&((n as i32) - 4).to_be_bytes());
            junk[8..12].copy_from_slice(&rng.random_range(-12i32..110).to_be_bytes());
        }
        let _ = s.write_all(&junk);
        drop(s);
        if round % 50 == 0 {
            assert_eq!(healthy.create(&format!("/alive{round}")), 0);
        }
    }
    assert_eq!(healthy.create("/still-alive"), 0);
    server.shutdown().unwrap();
}
