//! Kerberos (SASL GSSAPI) for clients, against a real MIT KDC the test starts (ci/kdc.sh):
//! the mechanism's two sides in process, then a server with a JAAS `Server` section naming
//! `Krb5LoginModule`, a keytab and a service principal, as ZooKeeper is configured — the
//! client's sasl id, ACLs on it, and the refusals (a garbled ticket, a principal the keytab
//! lacks). Without the Kerberos programs the test is skipped saying so, unless
//! CORRAL_REQUIRE_KERBEROS=1 (ci/test.sh sets it), when their absence fails it.
//!
//! One test function: the Kerberos library reads KRB5_CONFIG from the environment, which is
//! set once, before any other thread of this test binary exists.

mod common;

use std::path::{Path, PathBuf};

use common::raw::*;
use corral_server::config::Config;
use corral_server::sasl::gssapi::{AcceptStep, Acceptor, Initiator};
use corral_server::server::{RunningServer, ServerOptions};

const REALM: &str = "CORRAL.TEST";
const SERVICE: &str = "zookeeper/127.0.0.1";
const AUTH_FAILED: i32 = -115;
const NO_AUTH: i32 = -102;

struct Kdc {
    dir: tempfile::TempDir,
}

impl Kdc {
    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

impl Drop for Kdc {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.path().join("kdc.pid")) {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                // The KDC this test started, by its PID.
                let _ = std::process::Command::new("kill").arg(pid.to_string()).status();
            }
        }
    }
}

/// Starts the KDC, or says why it cannot.
fn start_kdc() -> Option<Kdc> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ci/kdc.sh");
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("bash")
        .arg(&script)
        .arg(dir.path())
        .arg(REALM)
        .arg("client:client.keytab")
        .arg(format!("{SERVICE}:server.keytab"))
        .arg("other/127.0.0.1:other.keytab")
        .output()
        .expect("bash runs");
    let required = std::env::var("CORRAL_REQUIRE_KERBEROS").is_ok_and(|v| v == "1");
    if out.status.code() == Some(3) && !required {
        eprintln!(
            "SKIPPED: the Kerberos programs are not installed ({}); ci/test.sh installs them",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return None;
    }
    assert!(
        out.status.success(),
        "ci/kdc.sh failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(Kdc { dir })
}

fn start_server(
    dir: &Path,
    kdc: &Kdc,
    principal: &str,
    extra: &str,
) -> Result<RunningServer, String> {
    let jaas = dir.join("jaas.conf");
    std::fs::write(
        &jaas,
        format!(
            "Server {{\n  com.sun.security.auth.module.Krb5LoginModule required\n  isInitiator=false\n  useKeyTab=true\n  keyTab=\"{}\"\n  storeKey=true\n  useTicketCache=false\n  principal=\"{principal}\";\n}};\n",
            kdc.path("server.keytab")
        ),
    )
    .unwrap();
    let text = format!(
        "tickTime=2000\ndataDir={}\nclientPort=2181\nauthProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider\njava.security.auth.login.config={}\n{extra}",
        dir.display(),
        jaas.display()
    );
    let config = Config::parse_str(&text).expect("config");
    let mut opts = ServerOptions::from_config(&config).map_err(|e| format!("{e:#}"))?;
    opts.bind = "127.0.0.1:0".parse().unwrap();
    Ok(RunningServer::start(opts).expect("server starts"))
}

/// A client's whole Kerberos exchange over the session: the last reply code.
fn kerberos_login(s: &mut Session, kdc: &Kdc) -> i32 {
    let mut init = Initiator::new(
        &format!("{SERVICE}@{REALM}"),
        Some(&format!("client@{REALM}")),
        Some(&kdc.path("client.keytab")),
    )
    .expect("the client's credentials");
    let mut token = init.start().expect("a first token");
    for _ in 0..6 {
        let (code, reply) = s.sasl(&token);
        if code != 0 || init.is_done() {
            return code;
        }
        match init.step(&reply.unwrap_or_default()).expect("the client's next step") {
            Some(t) => token = t,
            None => return 0,
        }
    }
    panic!("the exchange did not end");
}

#[test]
fn kerberos_for_clients() {
    let Some(kdc) = start_kdc() else { return };
    std::env::set_var("KRB5_CONFIG", kdc.path("krb5.conf"));
    let server_principal = format!("{SERVICE}@{REALM}");

    // The two sides of the mechanism, in process.
    let mut acc = Acceptor::new(Some(&server_principal), Some(&kdc.path("server.keytab")))
        .expect("the server's credentials from its keytab");
    let mut init = Initiator::new(
        &server_principal,
        Some(&format!("client@{REALM}")),
        Some(&kdc.path("client.keytab")),
    )
    .expect("the client's credentials from its keytab");
    let mut to_server = init.start().unwrap();
    let principal = loop {
        match acc.step(&to_server).expect("the server takes the client's token") {
            AcceptStep::Continue(t) => {
                to_server = init.step(&t).unwrap().expect("the client answers");
            }
            AcceptStep::Done { principal } => break principal,
        }
    };
    assert_eq!(principal, format!("client@{REALM}"));
    assert!(init.is_done());
    assert!(acc.step(b"more").is_err(), "an exchange that is over takes nothing more");

    // Refusals: a garbled ticket, and a principal the keytab has no key for.
    let mut acc = Acceptor::new(Some(&server_principal), Some(&kdc.path("server.keytab"))).unwrap();
    let err = acc.step(b"\x60\x10garbage, not a Kerberos token").unwrap_err();
    eprintln!("garbled ticket: {err}");
    let err =
        Acceptor::new(Some(&format!("nobody/127.0.0.1@{REALM}")), Some(&kdc.path("server.keytab")))
            .unwrap_err();
    eprintln!("a principal the keytab lacks: {err}");
    // A ticket for another service is not accepted by this one.
    let mut other = Initiator::new(
        &format!("other/127.0.0.1@{REALM}"),
        Some(&format!("client@{REALM}")),
        Some(&kdc.path("client.keytab")),
    )
    .unwrap();
    let mut acc = Acceptor::new(Some(&server_principal), Some(&kdc.path("server.keytab"))).unwrap();
    let err = acc.step(&other.start().unwrap()).unwrap_err();
    eprintln!("a ticket for another service: {err}");

    // A server whose JAAS Server section is ZooKeeper's Kerberos one.
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), &kdc, &server_principal, "").expect("server options");
    let mut a = Session::open(plain(server.addr()));
    assert_eq!(kerberos_login(&mut a, &kdc), 0, "the client logs in");
    let id = format!("client@{REALM}");
    assert_eq!(a.call(&create("/k", vec![acl(31, "sasl", &id)])).0, 0);
    assert_eq!(a.call(&get("/k")).0, 0);
    let mut anon = Session::open(plain(server.addr()));
    assert_eq!(anon.call(&get("/k")).0, NO_AUTH, "without the ticket");
    // A garbled first token: AUTHFAILED and the connection closed; the server serves on.
    let mut bad = Session::open(plain(server.addr()));
    assert_eq!(bad.sasl(b"\x60\x10not a ticket").0, AUTH_FAILED);
    assert!(bad.closed());
    let mut again = Session::open(plain(server.addr()));
    assert_eq!(kerberos_login(&mut again, &kdc), 0, "a later client still logs in");
    assert_eq!(again.call(&get("/k")).0, 0);
    drop(server);

    // The realm dropped from ids when asked.
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(
        dir.path(),
        &kdc,
        &server_principal,
        "kerberos.removeRealmFromPrincipal=true\n",
    )
    .expect("server options");
    let mut a = Session::open(plain(server.addr()));
    assert_eq!(kerberos_login(&mut a, &kdc), 0);
    assert_eq!(a.call(&create("/r", vec![acl(31, "sasl", "client")])).0, 0);
    assert_eq!(a.call(&get("/r")).0, 0);
    drop(server);

    // A service principal the keytab lacks: the server refuses to start, saying why.
    let dir = tempfile::tempdir().unwrap();
    let Err(err) = start_server(dir.path(), &kdc, &format!("nobody/127.0.0.1@{REALM}"), "") else {
        panic!("a server without a key for its principal started");
    };
    assert!(err.contains("nobody/127.0.0.1"), "{err}");
}
