//! A raw client for the security tests: one request at a time over plain TCP or TLS (rustls,
//! with the key material of server/src/tls/testdata), sessions, replies' error codes, and a
//! DIGEST-MD5 SASL login.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use corral_server::proto::{
    Acl, ConnectRequest, ConnectResponse, CreateRequest, Data, Id, Jute, PathWatchRequest,
    ReplyHeader, Request, SaslToken,
};
use corral_server::sasl::digest::DigestClient;
use rustls::pki_types::ServerName;

/// A file of the test key material.
pub fn testdata(name: &str) -> String {
    format!("{}/src/tls/testdata/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A TLS client configuration trusting the test CA, presenting `cert` (PEM certificate and
/// key files of the test data) or none.
pub fn client_config(cert: Option<(&str, &str)>) -> Arc<rustls::ClientConfig> {
    let files = cert.map(|(c, k)| (testdata(c), testdata(k)));
    corral_server::tls::pem_client_config(
        &testdata("ca.pem"),
        files.as_ref().map(|(c, k)| (c.as_str(), k.as_str())),
    )
    .unwrap()
}

/// Anything a client can talk through.
pub trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

/// A TLS connection (handshake done), presenting `cert` if given.
pub fn tls(addr: SocketAddr, cert: Option<(&str, &str)>) -> std::io::Result<Box<dyn Stream>> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(client_config(cert), name)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(Box::new(s))
}

/// A plain TCP connection.
pub fn plain(addr: SocketAddr) -> Box<dyn Stream> {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    Box::new(tcp)
}

pub fn send(s: &mut dyn Stream, body: &[u8]) -> std::io::Result<()> {
    let mut f = (body.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    s.write_all(&f)?;
    s.flush()
}

pub fn recv(s: &mut dyn Stream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let mut b = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut b)?;
    Ok(b)
}

/// Opens a session; its id.
pub fn session(s: &mut dyn Stream) -> std::io::Result<i64> {
    let req = ConnectRequest {
        protocol_version: 0,
        last_zxid_seen: 0,
        time_out: 10_000,
        session_id: 0,
        passwd: Data::from(vec![0u8; 16]),
        read_only: Some(false),
    };
    send(s, &req.encode())?;
    let r =
        ConnectResponse::decode(&recv(s)?).map_err(|e| std::io::Error::other(format!("{e:?}")))?;
    Ok(r.session_id)
}

/// One request with `xid`; its error code (notifications skipped).
pub fn call(s: &mut dyn Stream, xid: i32, req: &Request) -> i32 {
    s.write_all(&req.encode_frame(xid)).unwrap();
    s.flush().unwrap();
    loop {
        let body = recv(s).unwrap();
        let h = ReplyHeader::decode(&body[..16]).unwrap();
        if h.xid == xid {
            return h.err;
        }
    }
}

/// A session over one stream, numbering its requests.
pub struct Session {
    pub s: Box<dyn Stream>,
    xid: i32,
}

impl Session {
    /// Opens a session over `s`.
    pub fn open(mut s: Box<dyn Stream>) -> Session {
        session(&mut *s).expect("a session");
        Session { s, xid: 0 }
    }

    /// One request: (error code, reply body).
    pub fn call(&mut self, req: &Request) -> (i32, Vec<u8>) {
        self.xid += 1;
        self.s.write_all(&req.encode_frame(self.xid)).unwrap();
        self.s.flush().unwrap();
        loop {
            let b = recv(&mut *self.s).expect("a reply");
            let h = ReplyHeader::decode(&b[..16]).unwrap();
            if h.xid == self.xid {
                return (h.err, b[16..].to_vec());
            }
        }
    }

    /// A request's error code.
    pub fn code(&mut self, req: &Request) -> i32 {
        self.call(req).0
    }

    /// One SASL request: (error code, the token answered, if any).
    pub fn sasl(&mut self, token: &[u8]) -> (i32, Option<Vec<u8>>) {
        let (err, body) =
            self.call(&Request::Sasl(SaslToken { token: Data::from(token.to_vec()) }));
        let t = SaslToken::decode(&body)
            .ok()
            .filter(|t| !t.token.is_null())
            .map(|t| t.token.as_slice().to_vec());
        (err, t)
    }

    /// True once the server has closed the connection (read until EOF or error).
    pub fn closed(&mut self) -> bool {
        let mut buf = [0u8; 64];
        loop {
            match self.s.read(&mut buf) {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    }

    /// A DIGEST-MD5 SASL login (zookeeper / zk-sasl-md5); the server's last error code.
    pub fn sasl_login(&mut self, user: &str, password: &str) -> i32 {
        let mut dc = DigestClient::new(user, password, "zookeeper", "zk-sasl-md5");
        let token = |b: &[u8]| SaslToken::decode(b).ok().map(|t| t.token.as_slice().to_vec());
        let (err, body) = self.call(&Request::Sasl(SaslToken { token: Data::from(Vec::new()) }));
        assert_eq!(err, 0);
        let response = dc.respond(&token(&body).unwrap(), b"cnonce").unwrap();
        let (err, body) = self.call(&Request::Sasl(SaslToken { token: Data::from(response) }));
        if err == 0 {
            dc.finish(&token(&body).unwrap()).expect("rspauth");
        }
        err
    }
}

pub fn acl(perms: i32, scheme: &str, id: &str) -> Acl {
    Acl { perms, id: Id { scheme: scheme.into(), id: id.into() } }
}

pub fn create(path: &str, acl: Vec<Acl>) -> Request {
    Request::Create(CreateRequest {
        path: path.into(),
        data: Data::from(b"v".to_vec()),
        acl,
        flags: 0,
    })
}

pub fn get(path: &str) -> Request {
    Request::GetData(PathWatchRequest { path: path.into(), watch: false })
}
