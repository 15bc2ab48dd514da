//! Clients over TLS, as ZooKeeper 3.8 serves them: `secureClientPort` (TLS only) and
//! `client.portUnification` (plain and TLS on one port), the `ssl.*` stores of every format,
//! client certificates as `x509` ids (v1 certificates included, as kazoo's harness makes them),
//! the x509 superuser, and bad input: a plaintext client on the TLS port, a TLS client on the
//! plain port, no certificate where one is needed, an untrusted one, a handshake that never
//! finishes — each a clean refusal while the server keeps serving.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use corral_server::config::Config;
use corral_server::proto::{
    Acl, ConnectRequest, ConnectResponse, CreateRequest, Data, Id, Jute, PathWatchRequest,
    ReplyHeader, Request,
};
use corral_server::server::{RunningServer, ServerOptions};
use corral_server::tls::store::{load_key_store, load_trust_store, StoreType};
use rustls::pki_types::{CertificateDer, ServerName};

fn data(name: &str) -> String {
    format!("{}/src/tls/testdata/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A server with `extra` zoo.cfg lines, on free loopback ports (plain, and TLS when
/// secureClientPort is asked for).
fn start(dir: &Path, extra: &str) -> RunningServer {
    let text = format!("tickTime=2000\ndataDir={}\nclientPort=2181\n{extra}", dir.display());
    let config = Config::parse_str(&text).expect("config");
    let mut opts = ServerOptions::from_config(&config).expect("options");
    opts.bind = "127.0.0.1:0".parse().unwrap();
    opts.settings.limits.handshake_ms = 2000;
    if let Some(t) = opts.client_tls.take() {
        let mut t = Arc::into_inner(t).expect("one owner");
        if t.secure_bind.is_some() {
            t.secure_bind = Some("127.0.0.1:0".parse().unwrap());
        }
        opts.client_tls = Some(Arc::new(t));
    }
    RunningServer::start(opts).expect("server starts")
}

fn stores(kind: &str) -> String {
    let (ks, ts) = match kind {
        "jks" => ("keystore.jks", "truststore.jks"),
        "p12" => ("keystore.p12", "truststore.p12"),
        _ => ("keystore-encrypted.pem", "truststore.pem"),
    };
    format!(
        "ssl.keyStore.location={}\nssl.keyStore.password=apassword\n\
         ssl.trustStore.location={}\nssl.trustStore.password=apassword\n",
        data(ks),
        data(ts)
    )
}

/// The client's key and certificate, given to rustls as they are (a v1 certificate too).
#[derive(Debug)]
struct ClientCert(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for ClientCert {
    fn resolve(
        &self,
        _hints: &[&[u8]],
        _schemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

/// A TLS client configuration trusting the test CA, presenting `cert` (a PEM certificate
/// and key) or none.
fn client_config(cert: Option<(&str, &str)>) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(corral_server::tls::provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in load_trust_store(&data("ca.pem"), StoreType::Pem, "").unwrap() {
        roots.add(c).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match cert {
        None => b.with_no_client_auth(),
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> =
                load_trust_store(&data(cert), StoreType::Pem, "").unwrap();
            let pem = format!(
                "{}{}",
                std::fs::read_to_string(data(key)).unwrap(),
                std::fs::read_to_string(data(cert)).unwrap()
            );
            let dir = tempfile::tempdir().unwrap();
            let f = dir.path().join("k.pem");
            std::fs::write(&f, pem).unwrap();
            let material = load_key_store(f.to_str().unwrap(), StoreType::Pem, "").unwrap();
            let key = provider.key_provider.load_private_key(material.key).unwrap();
            let ck = rustls::sign::CertifiedKey::new(chain, key);
            b.with_client_cert_resolver(Arc::new(ClientCert(Arc::new(ck))))
        }
    };
    Arc::new(config)
}

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

fn tls(addr: SocketAddr, cert: Option<(&str, &str)>) -> std::io::Result<Box<dyn Stream>> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(client_config(cert), name)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    // Drive the handshake now, so a refusal shows here.
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(Box::new(s))
}

fn plain(addr: SocketAddr) -> Box<dyn Stream> {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    Box::new(tcp)
}

fn send(s: &mut dyn Stream, body: &[u8]) -> std::io::Result<()> {
    let mut f = (body.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    s.write_all(&f)?;
    s.flush()
}

fn recv(s: &mut dyn Stream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let mut b = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut b)?;
    Ok(b)
}

/// Opens a session; the session id.
fn session(s: &mut dyn Stream) -> std::io::Result<i64> {
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

/// One request; its error code.
fn call(s: &mut dyn Stream, xid: i32, req: &Request) -> i32 {
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

fn create(path: &str, acl: Vec<Acl>) -> Request {
    Request::Create(CreateRequest {
        path: path.into(),
        data: Data::from(b"v".to_vec()),
        acl,
        flags: 0,
    })
}

fn get(path: &str) -> Request {
    Request::GetData(PathWatchRequest { path: path.into(), watch: false })
}

fn acl(scheme: &str, id: &str) -> Vec<Acl> {
    vec![Acl { perms: 31, id: Id { scheme: scheme.into(), id: id.into() } }]
}

/// True if the server closes the connection (or refuses TLS) without serving a session.
fn refused(s: std::io::Result<Box<dyn Stream>>) -> bool {
    match s {
        Err(_) => true,
        Ok(mut s) => session(&mut *s).is_err(),
    }
}

const NO_AUTH: i32 = -102;

#[test]
fn secure_client_port_serves_tls_clients_with_x509_ids_from_every_store_format() {
    for kind in ["jks", "p12", "pem"] {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path(), &format!("secureClientPort=2281\n{}", stores(kind)));
        let secure = server.secure_addr().expect("a TLS listener");
        // A v3 client certificate (the server's own, which allows client auth) and a v1 one.
        let mut a = tls(secure, Some(("server-cert.pem", "server-key.pem"))).unwrap();
        session(&mut *a).unwrap();
        assert_eq!(
            call(&mut *a, 1, &create("/a", acl("x509", "O=Corral,OU=Test,CN=localhost"))),
            0,
            "{kind}"
        );
        assert_eq!(call(&mut *a, 2, &get("/a")), 0);
        let mut b = tls(secure, Some(("client-cert.pem", "client-key.pem"))).unwrap();
        session(&mut *b).unwrap();
        assert_eq!(call(&mut *b, 1, &get("/a")), NO_AUTH, "{kind}: another certificate");
        assert_eq!(call(&mut *b, 2, &create("/b", acl("x509", "CN=client"))), 0);
        assert_eq!(call(&mut *b, 3, &get("/b")), 0);
        // The plain port has no x509 id.
        let mut p = plain(server.addr());
        session(&mut *p).unwrap();
        assert_eq!(call(&mut *p, 1, &get("/a")), NO_AUTH);
        assert_eq!(call(&mut *p, 2, &get("/b")), NO_AUTH);
        // An x509 ACL for an id nobody has is still valid (the scheme is registered).
        assert_eq!(call(&mut *p, 3, &create("/c", acl("x509", "CN=nobody"))), 0);
    }
}

#[test]
fn bad_clients_are_refused_cleanly_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &format!("secureClientPort=2281\n{}", stores("jks")));
    let secure = server.secure_addr().unwrap();
    // No certificate where one is needed (clientAuth defaults to need).
    assert!(refused(tls(secure, None)), "no client certificate");
    // A self-signed certificate no trusted CA vouches for, and a CA certificate as a leaf.
    assert!(refused(tls(secure, Some(("rogue-cert.pem", "rogue-key.pem")))), "untrusted");
    assert!(refused(tls(secure, Some(("ca.pem", "ca-key.pem")))), "a CA certificate as a client");
    // A plaintext ZooKeeper client on the TLS port.
    let mut p = plain(secure);
    assert!(session(&mut *p).is_err(), "plaintext on the TLS port");
    // A TLS client on the plain port (no port unification).
    assert!(refused(tls(server.addr(), Some(("client-cert.pem", "client-key.pem")))));
    // A handshake that never finishes: connect and send nothing; the server closes it.
    let mut idle = TcpStream::connect(secure).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 16];
    assert!(matches!(idle.read(&mut buf), Ok(0) | Err(_)));
    assert!(started.elapsed() < Duration::from_secs(9), "closed after the handshake bound");
    // Garbage after a TLS ClientHello's first byte.
    let mut g = TcpStream::connect(secure).unwrap();
    g.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    g.write_all(&[0x16, 3, 1, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
    let _ = g.read(&mut buf);
    // Through all of it, a good client is served on both ports.
    let mut ok = tls(secure, Some(("client-cert.pem", "client-key.pem"))).unwrap();
    session(&mut *ok).unwrap();
    assert_eq!(call(&mut *ok, 1, &create("/ok", acl("world", "anyone"))), 0);
    let mut p = plain(server.addr());
    session(&mut *p).unwrap();
    assert_eq!(call(&mut *p, 1, &get("/ok")), 0);
}

#[test]
fn port_unification_takes_plain_tls_and_four_letter_words_on_one_port() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        &format!("client.portUnification=true\n4lw.commands.whitelist=ruok\n{}", stores("pem")),
    );
    assert!(server.secure_addr().is_none());
    let port = server.addr();
    let mut t = tls(port, Some(("client-cert.pem", "client-key.pem"))).unwrap();
    session(&mut *t).unwrap();
    assert_eq!(call(&mut *t, 1, &create("/u", acl("x509", "CN=client"))), 0);
    let mut p = plain(port);
    session(&mut *p).unwrap();
    assert_eq!(call(&mut *p, 1, &get("/u")), NO_AUTH);
    let mut w = TcpStream::connect(port).unwrap();
    w.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    w.write_all(b"ruok").unwrap();
    let mut answer = String::new();
    w.read_to_string(&mut answer).unwrap();
    assert_eq!(answer, "imok");
}

#[test]
fn the_x509_superuser_reads_everything_and_want_lets_clients_without_certificates_in() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        &format!(
            "secureClientPort=2281\nssl.clientAuth=want\nX509AuthenticationProvider.superUser=CN=client\n{}",
            stores("jks")
        ),
    );
    let secure = server.secure_addr().unwrap();
    let mut p = plain(server.addr());
    session(&mut *p).unwrap();
    assert_eq!(call(&mut *p, 1, &create("/d", acl("digest", "u:AAAAAAAAAAAAAAAAAAAAAAAAAAA="))), 0);
    assert_eq!(call(&mut *p, 2, &get("/d")), NO_AUTH);
    let mut su = tls(secure, Some(("client-cert.pem", "client-key.pem"))).unwrap();
    session(&mut *su).unwrap();
    assert_eq!(call(&mut *su, 1, &get("/d")), 0, "the x509 superuser");
    let mut other = tls(secure, Some(("server-cert.pem", "server-key.pem"))).unwrap();
    session(&mut *other).unwrap();
    assert_eq!(call(&mut *other, 1, &get("/d")), NO_AUTH);
    // want: a client without a certificate gets a session, and no x509 id.
    let mut anon = tls(secure, None).unwrap();
    session(&mut *anon).unwrap();
    assert_eq!(call(&mut *anon, 1, &get("/d")), NO_AUTH);
}

#[test]
fn unusable_tls_settings_stop_the_server_from_starting_and_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let base = format!(
        "tickTime=2000\ndataDir={}\nclientPort=2181\nsecureClientPort=2281\n",
        dir.path().display()
    );
    for (extra, says) in [
        ("", "keyStore.location"),
        (
            &*format!(
                "ssl.keyStore.location={}\nssl.keyStore.password=wrong\n",
                data("keystore.jks")
            ),
            "password",
        ),
        (&*format!("ssl.keyStore.location={}\n", data("keystore.pem")), "trustStore.location"),
        ("ssl.keyStore.location=/nonexistent/k.jks\n", "/nonexistent/k.jks"),
    ] {
        let config = Config::parse_str(&format!("{base}{extra}")).unwrap();
        let e = format!("{:#}", ServerOptions::from_config(&config).unwrap_err());
        assert!(e.contains(says), "{extra:?}: {e}");
    }
}
