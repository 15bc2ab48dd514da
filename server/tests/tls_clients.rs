//! Clients over TLS, as ZooKeeper 3.8 serves them: `secureClientPort` (TLS only) and
//! `client.portUnification` (plain and TLS on one port), the `ssl.*` stores of every format,
//! client certificates as `x509` ids (v1 certificates included, as kazoo's harness makes them),
//! the x509 superuser, and bad input: a plaintext client on the TLS port, a TLS client on the
//! plain port, no certificate where one is needed, an untrusted one, a handshake that never
//! finishes — each a clean refusal while the server keeps serving.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::raw::*;
use corral_server::config::Config;
use corral_server::proto::Acl;
use corral_server::server::{RunningServer, ServerOptions};

fn data(name: &str) -> String {
    testdata(name)
}

/// A server with `extra` zoo.cfg lines, on free loopback ports (plain, and TLS when
/// secureClientPort is asked for).
fn start(dir: &Path, extra: &str) -> RunningServer {
    start_with(dir, &format!("clientPort=2181\n{extra}"))
}

fn start_with(dir: &Path, extra: &str) -> RunningServer {
    let text = format!("tickTime=2000\ndataDir={}\n{extra}", dir.display());
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

/// Every permission for one id.
fn all_to(scheme: &str, id: &str) -> Vec<Acl> {
    vec![acl(31, scheme, id)]
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
            call(&mut *a, 1, &create("/a", all_to("x509", "O=Corral,OU=Test,CN=localhost"))),
            0,
            "{kind}"
        );
        assert_eq!(call(&mut *a, 2, &get("/a")), 0);
        let mut b = tls(secure, Some(("client-cert.pem", "client-key.pem"))).unwrap();
        session(&mut *b).unwrap();
        assert_eq!(call(&mut *b, 1, &get("/a")), NO_AUTH, "{kind}: another certificate");
        assert_eq!(call(&mut *b, 2, &create("/b", all_to("x509", "CN=client"))), 0);
        assert_eq!(call(&mut *b, 3, &get("/b")), 0);
        // The plain port has no x509 id.
        let mut p = plain(server.addr());
        session(&mut *p).unwrap();
        assert_eq!(call(&mut *p, 1, &get("/a")), NO_AUTH);
        assert_eq!(call(&mut *p, 2, &get("/b")), NO_AUTH);
        // An x509 ACL for an id nobody has is still valid (the scheme is registered).
        assert_eq!(call(&mut *p, 3, &create("/c", all_to("x509", "CN=nobody"))), 0);
    }
}

// A secureClientPort and no clientPort, which ZooKeeper accepts: a TLS-only server (its
// address is the TLS one); neither port given is still an error.
#[test]
fn a_server_with_only_a_secure_client_port_serves_tls_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), &format!("secureClientPort=2281\n{}", stores("jks")));
    let secure = server.secure_addr().unwrap();
    assert_eq!(server.addr(), secure);
    let mut c = tls(secure, Some(("client-cert.pem", "client-key.pem"))).unwrap();
    session(&mut *c).unwrap();
    assert_eq!(call(&mut *c, 1, &create("/t", all_to("world", "anyone"))), 0);
    let config =
        Config::parse_str(&format!("tickTime=2000\ndataDir={}\n", dir.path().display())).unwrap();
    let e = format!("{:#}", ServerOptions::from_config(&config).unwrap_err());
    assert!(e.contains("clientPort"), "{e}");
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
    // A certificate from the trusted CA that has expired (X.509 v1, as kazoo's are).
    assert!(refused(tls(secure, Some(("expired-cert.pem", "expired-key.pem")))), "expired");
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
    assert_eq!(call(&mut *ok, 1, &create("/ok", all_to("world", "anyone"))), 0);
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
    assert_eq!(call(&mut *t, 1, &create("/u", all_to("x509", "CN=client"))), 0);
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
    assert_eq!(
        call(&mut *p, 1, &create("/d", all_to("digest", "u:AAAAAAAAAAAAAAAAAAAAAAAAAAA="))),
        0
    );
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
