//! SASL for clients (opcode 102) as ZooKeeper 3.8 serves it: DIGEST-MD5 users from a JAAS
//! `Server` section, the `sasl` id and ACL scheme, `superUser`, and the refusals: a wrong
//! password, an unknown user, a garbled token, a step too many — AUTHFAILED and the
//! connection closed, the server serving on. Without a JAAS server section a SASL request is
//! answered OK with no token (ZooKeeper's answer).

mod common;

use std::path::Path;

use common::raw::*;
use corral_server::config::Config;
use corral_server::proto::Request;
use corral_server::server::{RunningServer, ServerOptions};

const SASL_PROVIDER: &str =
    "authProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider\n";
const AUTH_FAILED: i32 = -115;
const NO_AUTH: i32 = -102;

fn start(dir: &Path, jaas: Option<&str>, extra: &str) -> RunningServer {
    let mut text = format!(
        "tickTime=2000\ndataDir={}\nclientPort=2181\n{SASL_PROVIDER}{extra}",
        dir.display()
    );
    if let Some(j) = jaas {
        let f = dir.join("jaas.conf");
        std::fs::write(&f, j).unwrap();
        text.push_str(&format!("java.security.auth.login.config={}\n", f.display()));
    }
    let config = Config::parse_str(&text).expect("config");
    let mut opts = ServerOptions::from_config(&config).expect("options");
    opts.bind = "127.0.0.1:0".parse().unwrap();
    RunningServer::start(opts).expect("server starts")
}

const JAAS: &str = r#"Server {
    org.apache.zookeeper.server.auth.DigestLoginModule required
    user_super="super_secret"
    user_jaasuser="jaas_password";
};"#;

fn connect(server: &RunningServer) -> Session {
    Session::open(plain(server.addr()))
}

fn create_for(path: &str, scheme: &str, id: &str) -> Request {
    create(path, vec![acl(31, scheme, id)])
}

#[test]
fn a_digest_user_gets_its_sasl_id_and_others_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), Some(JAAS), "");
    let mut a = connect(&server);
    assert_eq!(a.sasl_login("jaasuser", "jaas_password"), 0);
    assert_eq!(a.call(&create_for("/1", "sasl", "jaasuser")).0, 0);
    assert_eq!(a.call(&get("/1")).0, 0);
    let mut anon = connect(&server);
    assert_eq!(anon.call(&get("/1")).0, NO_AUTH);
    let mut su = connect(&server);
    assert_eq!(su.sasl_login("super", "super_secret"), 0);
    // As ZooKeeper's SASL provider: the SASL user "super" matches every sasl entry, and
    // only those.
    assert_eq!(su.call(&get("/1")).0, 0, "the sasl user super");
    assert_eq!(a.call(&create_for("/2", "digest", "u:AAAAAAAAAAAAAAAAAAAAAAAAAAA=")).0, 0);
    assert_eq!(su.call(&get("/2")).0, NO_AUTH);
}

#[test]
fn bad_logins_are_refused_and_closed_and_the_server_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), Some(JAAS), "");
    for (user, pw) in [("jaasuser", "wrong"), ("baduser", "x")] {
        let mut c = connect(&server);
        let t = std::time::Instant::now();
        assert_eq!(c.sasl_login(user, pw), AUTH_FAILED, "{user}");
        // A refusal waits out the failed-authentication delay (100 ms) before its answer.
        assert!(t.elapsed() >= std::time::Duration::from_millis(100), "{:?}", t.elapsed());
        assert!(c.closed());
    }
    // A garbled response.
    let mut c = connect(&server);
    assert_eq!(c.sasl(b"").0, 0);
    assert_eq!(c.sasl(&[0xff, 0x00, 0x13]).0, AUTH_FAILED);
    assert!(c.closed());
    // A step too many after a success.
    let mut c = connect(&server);
    assert_eq!(c.sasl_login("jaasuser", "jaas_password"), 0);
    assert_eq!(c.sasl(b"again").0, AUTH_FAILED);
    assert!(c.closed());
    let mut ok = connect(&server);
    assert_eq!(ok.sasl_login("jaasuser", "jaas_password"), 0);
    assert_eq!(ok.call(&get("/")).0, 0);
}

#[test]
fn super_user_and_allow_failed_clients() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), Some(JAAS), "superUser=jaasuser\nallowSaslFailedClients=true\n");
    let mut p = connect(&server);
    assert_eq!(p.call(&create_for("/d", "digest", "u:AAAAAAAAAAAAAAAAAAAAAAAAAAA=")).0, 0);
    let mut su = connect(&server);
    assert_eq!(su.sasl_login("jaasuser", "jaas_password"), 0);
    assert_eq!(su.call(&get("/d")).0, 0, "superUser");
    // allowSaslFailedClients: a failed login is answered OK, no token, connection kept.
    let mut f = connect(&server);
    assert_eq!(f.sasl(b"").0, 0);
    assert_eq!(f.sasl(b"garbage"), (0, None));
    assert_eq!(f.call(&get("/d")).0, NO_AUTH);
}

#[test]
fn without_a_jaas_server_section_sasl_is_answered_ok_with_no_token() {
    for jaas in [None, Some(""), Some("Client { org.apache.zookeeper.server.auth.DigestLoginModule required username=a password=b; };")] {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path(), jaas, "");
        let mut c = connect(&server);
        assert_eq!(c.sasl(b""), (0, None), "{jaas:?}");
        assert_eq!(c.call(&get("/")).0, 0);
        // The sasl scheme is still valid in ACLs (the provider is registered).
        assert_eq!(c.call(&create_for("/s", "sasl", "nobody")).0, 0);
        assert_eq!(c.call(&get("/s")).0, NO_AUTH);
    }
}

#[test]
fn a_kerberos_section_without_keys_another_module_or_a_broken_file_stops_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.keytab");
    let kerberos = format!(
        "Server {{ com.sun.security.auth.module.Krb5LoginModule required useKeyTab=true keyTab=\"{}\" principal=\"zookeeper/h@EX.ORG\"; }};",
        missing.display()
    );
    for (jaas, says) in [
        // Kerberos without a keytab holding the principal's key (or without the library).
        (kerberos.as_str(), "Kerberos"),
        ("Server { com.example.LdapLoginModule required; };", "LdapLoginModule"),
        ("Server { broken", "line 1"),
    ] {
        let f = dir.path().join("jaas.conf");
        std::fs::write(&f, jaas).unwrap();
        let text = format!(
            "tickTime=2000\ndataDir={}\nclientPort=2181\njava.security.auth.login.config={}\n",
            dir.path().display(),
            f.display()
        );
        let config = Config::parse_str(&text).unwrap();
        let e = format!("{:#}", ServerOptions::from_config(&config).unwrap_err());
        assert!(e.contains(says), "{e}");
    }
}

#[test]
fn session_require_client_sasl_auth_closes_unauthenticated_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), Some(JAAS), "sessionRequireClientSASLAuth=true\n");
    let mut anon = connect(&server);
    assert_eq!(anon.call(&get("/")).0, -124, "SESSIONCLOSEDREQUIRESASLAUTH");
    assert!(anon.closed());
    let mut a = connect(&server);
    assert_eq!(a.sasl_login("jaasuser", "jaas_password"), 0);
    assert_eq!(a.call(&get("/")).0, 0);
    assert_eq!(a.call(&Request::Ping).0, 0);
}
